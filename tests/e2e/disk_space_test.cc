// End to end, on a real `herald serve` process and its real disk.
//
// DiskSpace: the node's data directory sits on a small tmpfs of its own (mount(2), so these tests
// need root; they skip without it). Below the free-space floor the cluster refuses new content
// with `resource_exhausted` while reads, deletions and acknowledgements go on, and takes it again
// once space is freed; on a disk that truly fills, the replica halts with the process up and
// loses nothing it acknowledged.
//
// DiskFloor: the same refusal without root, on whatever disk holds the test's directory: the
// node restarts with its floor (`min_free_mb`, docs/operations.md) set far above that disk's free
// space, so its disk alarm stands as on a nearly full disk; a restart with a low floor lifts it.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "client/admin_client.h"
#include "client/herald_client.h"
#include "tests/e2e/cluster.h"
#include "tests/e2e/devices.h"

namespace herald::e2e {
namespace {

using client::HeraldClient;

constexpr std::uint32_t kStartupTimeoutMs = 15'000;
constexpr std::uint64_t kMiB = 1ULL << 20U;
constexpr std::uint64_t kDiskMiB = 256;         // the tmpfs under the node's data directory
constexpr std::size_t kBodyBytes = 60'000;      // below the 64 KiB body bound
constexpr int kMaxSends = 3'000;                // ends the fill loops if nothing refuses
constexpr std::uint32_t kAlarmWaitMs = 10'000;  // several disk checks (1 s each)
// DiskFloor's floor lies this far above the disk's free space, so that nothing another process
// frees during the test can lift it: 1 TiB.
constexpr std::uint64_t kFloorHeadroomMiB = 1ULL << 20U;
// The floor DiskFloor restarts with to lift the alarm: any disk the test runs on has this free.
constexpr std::uint64_t kLowFloorMiB = 1;
// How long a node refusing new content is watched for an exit (a crash loop would show).
constexpr std::uint32_t kStaysUpMs = 3'000;

std::uint64_t free_bytes(const std::string& dir) {
  std::error_code ec;
  const auto space = std::filesystem::space(dir, ec);
  return ec ? 0 : static_cast<std::uint64_t>(space.available);
}

// Writes a file of zeros until only `leave_bytes` stay free on `dir`'s file system.
void fill_until(const std::string& dir, const std::string& path, std::uint64_t leave_bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::app);
  const std::string chunk(kMiB, '\0');
  while (free_bytes(dir) > leave_bytes + kMiB && out.write(chunk.data(), chunk.size())) {
    out.flush();
  }
}

// One node with alice (one device), bob and their conversation, driven through the client.
class DiskNode : public ::testing::Test {
 protected:
  void create_cluster() {
    cluster_ = must(Cluster::create(1), "creating the cluster");
    dir_ = cluster_->node(1).data_dir;
    std::filesystem::create_directories(dir_);
  }

  // Prints the node's log after a failure and kills the node.
  void kill_node() {
    if (HasFailure() && cluster_ != nullptr) {
      std::fprintf(stderr, "---- node 1 log (tail) ----\n%s\n", cluster_->log_tail(1).c_str());
    }
    if (cluster_ != nullptr) {
      cluster_->kill(1);
    }
  }

  // Writes `toml` (top-level keys) as the node's config, without a device request rate limit.
  void configure(const std::string& toml) {
    must(cluster_->set_config(toml + "[devices]\nrequests_per_s = 0\n"), "writing the config");
  }

  // Starts the node with `toml` as its config, with alice (one device), bob and their
  // conversation.
  void start(const std::string& toml) {
    configure(toml);
    must(cluster_->start_all(), "starting the node");
    must(cluster_->leader(kStartupTimeoutMs), "waiting for a leader");
    admin_ = std::make_unique<client::AdminClient>(cluster_->admin(1));
    must(admin_->create_user("alice", "alice"), "alice");
    must(admin_->create_user("bob", "bob"), "bob");
    phone_ = must(provision_device(*admin_, "alice", "a-phone"), "a-phone");
    direct_ = must(admin_->create_conversation({"alice", "direct", {"bob"}, "", ""}), "direct")
                  .conversation_id;
    device_ = must(connect_device(cluster_->node(1).client_port, phone_), "connecting");
  }

  // Sends bodies of kBodyBytes until one is refused (or kMaxSends); returns the refusal.
  Status send_until_refused() {
    const std::string body(kBodyBytes, 'x');
    for (int i = 0; i < kMaxSends; ++i) {
      auto sent = device_->send(direct_, fmt::format("m{}", next_id_++), body);
      if (!sent.ok()) return sent.status();
      acknowledged_.push_back(sent->seq);
    }
    return Status::ok_status();
  }

  client::HttpReply health() { return must(admin_->request("GET", "/v1/health"), "health"); }

  // Under the disk alarm: the admin API refuses new content with 507, and the history still
  // shows the newest acknowledged message.
  void expect_new_content_refused_and_history_readable() {
    const auto created = must(admin_->request("POST", "/v1/admin/users", R"({"user_id":"carol"})"),
                              "creating carol");
    EXPECT_EQ(created.status, 507U) << created.body;
    auto newest = device_->history(direct_, std::nullopt, 1);
    ASSERT_TRUE(newest.ok()) << newest.status().to_string();
    ASSERT_EQ(newest->messages.size(), 1U);
    EXPECT_EQ(newest->messages[0].seq, acknowledged_.back());
  }

  // Connects alice's phone again after a restart; the node may still be electing itself.
  void reconnect() {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(kStartupTimeoutMs);
    auto reconnected = connect_device(cluster_->node(1).client_port, phone_);
    while (!reconnected.ok() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      reconnected = connect_device(cluster_->node(1).client_port, phone_);
    }
    device_ = must(std::move(reconnected), "reconnecting");
  }

  std::unique_ptr<Cluster> cluster_;
  std::string dir_;
  std::unique_ptr<client::AdminClient> admin_;
  DeviceCredentials phone_;
  std::string direct_;
  std::unique_ptr<HeraldClient> device_;
  int next_id_ = 0;
  std::vector<std::uint64_t> acknowledged_;
};

class DiskSpace : public DiskNode {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "mounting a tmpfs needs root";
    }
    create_cluster();
    const std::string options = fmt::format("size={}m", kDiskMiB);
    if (::mount("tmpfs", dir_.c_str(), "tmpfs", 0, options.c_str()) != 0) {
      GTEST_SKIP() << "cannot mount a tmpfs: " << std::strerror(errno);
    }
    mounted_ = true;
    filler_ = dir_ + "/filler";
  }

  void TearDown() override {
    kill_node();
    if (mounted_ && ::umount2(dir_.c_str(), MNT_DETACH) != 0) {
      std::fprintf(stderr, "umount %s: %s\n", dir_.c_str(), std::strerror(errno));
    }
    cluster_.reset();
  }

  std::string filler_;
  bool mounted_ = false;
};

class DiskFloor : public DiskNode {
 protected:
  void SetUp() override { create_cluster(); }
  void TearDown() override {
    kill_node();
    cluster_.reset();
  }

  // Stops the node cleanly and starts it again on its data with `toml` as its config.
  void restart(const std::string& toml) {
    device_.reset();
    must(cluster_->stop(1), "stopping the node");
    configure(toml);
    must(cluster_->start(1), "restarting the node");
    must(cluster_->leader(kStartupTimeoutMs), "waiting for a leader after the restart");
    admin_ = std::make_unique<client::AdminClient>(cluster_->admin(1));
    reconnect();
  }
};

TEST_F(DiskSpace, BelowTheFloorNewContentIsRefusedReadsAndDeletionsWorkAndFreeingSpaceLiftsIt) {
  constexpr std::uint64_t kFloorMiB = 64;
  start(fmt::format("min_free_mb = {}\n", kFloorMiB));
  // About 20 MiB above the floor: a few hundred large messages cross it.
  fill_until(dir_, filler_, (kFloorMiB + 20) * kMiB);
  const Status refused = send_until_refused();
  ASSERT_FALSE(refused.ok()) << "nothing was refused after " << kMaxSends << " sends";
  EXPECT_EQ(client::protocol_error_code(refused), "resource_exhausted") << refused.to_string();
  ASSERT_GT(acknowledged_.size(), 10U);
  EXPECT_GT(free_bytes(dir_), 0U) << "the floor must act before the disk is full";

  const client::HttpReply h = health();
  EXPECT_EQ(h.status, 200U) << h.body;
  EXPECT_NE(h.body.find("\"disk_alarms\":[1]"), std::string::npos) << h.body;
  // The admin API refuses new content with 507; reads, acknowledgements and deletions go on.
  expect_new_content_refused_and_history_readable();
  EXPECT_TRUE(device_->remove(direct_, acknowledged_.front()).ok());
  auto read = device_->read(direct_, acknowledged_.back());
  EXPECT_TRUE(read.ok()) << read.status().to_string();

  // Space freed: the alarm clears and new content is taken again.
  std::filesystem::remove(filler_);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kAlarmWaitMs);
  Result<client::SendResult> again = Status::unavailable("not tried");
  while (std::chrono::steady_clock::now() < deadline) {
    again = device_->send(direct_, "after-free", "hello again");
    if (again.ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_TRUE(again.ok()) << again.status().to_string();
  EXPECT_EQ(health().body.find("disk_alarms"), std::string::npos);
}

TEST_F(DiskSpace, AFullDiskHaltsTheReplicaWithTheProcessUpAndLosesNothingAcknowledged) {
  // No floor: the disk fills for real and RocksDB reports ENOSPC.
  start("min_free_mb = 0\n");
  fill_until(dir_, filler_, 24 * kMiB);
  const Status failed = send_until_refused();
  ASSERT_FALSE(failed.ok()) << "the disk never filled after " << kMaxSends << " sends";
  ASSERT_GT(acknowledged_.size(), 10U);

  // The process stays up (no crash loop) and says why it stopped.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  ASSERT_TRUE(cluster_->alive(1)) << "the node exited on a full disk";
  const client::HttpReply h = health();
  EXPECT_EQ(h.status, 503U) << h.body;
  EXPECT_NE(h.body.find("\"halted\""), std::string::npos) << h.body;
  EXPECT_NE(cluster_->log_tail(1, 8000).find("halts: the disk is full"), std::string::npos);

  // Restarted while the disk is still full, it stays up (a service manager's restart is no
  // crash loop): either waiting to open its store or open and halted again.
  device_.reset();
  cluster_->kill(1);
  fill_until(dir_, filler_, 0);
  must(cluster_->start(1), "restarting on the full disk");
  std::this_thread::sleep_for(std::chrono::seconds(3));
  ASSERT_TRUE(cluster_->alive(1)) << "the node exited when started on a full disk:\n"
                                  << cluster_->log_tail(1, 4000);

  // Freed, it opens (or is restarted), and it has every acknowledged message.
  std::filesystem::remove(filler_);
  if (cluster_->log_tail(1, 8000).find("halts: the disk is full") != std::string::npos) {
    cluster_->kill(1);
    must(cluster_->start(1), "restarting");
  }
  must(cluster_->leader(kStartupTimeoutMs), "waiting for a leader after the restart");
  reconnect();
  std::vector<std::uint64_t> stored;
  std::optional<std::uint64_t> before;
  do {
    auto page = device_->history(direct_, before);
    ASSERT_TRUE(page.ok()) << page.status().to_string();
    for (const client::Message& m : page->messages) {
      if (m.body.size() == kBodyBytes) stored.push_back(m.seq);
    }
    before = page->next_before;
  } while (*before != 0);
  for (const std::uint64_t seq : acknowledged_) {
    EXPECT_NE(std::find(stored.begin(), stored.end(), seq), stored.end())
        << "acknowledged message " << seq << " is lost";
  }
  EXPECT_TRUE(device_->send(direct_, "after-restart", "hello").ok());
}

TEST_F(DiskFloor,
       AFloorAboveTheFreeSpaceRefusesNewContentKeepsReadsAndDeletionsAndLiftsWhenLowered) {
  start(fmt::format("min_free_mb = {}\n", kLowFloorMiB));
  constexpr int kMessages = 3;
  for (int i = 0; i < kMessages; ++i) {
    const auto sent =
        must(device_->send(direct_, fmt::format("m{}", next_id_++), "before"), "send");
    acknowledged_.push_back(sent.seq);
  }

  // The floor far above what this disk has free: the node finds itself below it at its first
  // disk check and raises its alarm, as on a disk that is nearly full.
  const std::uint64_t free_mib = free_bytes(dir_) / kMiB;
  ASSERT_GT(free_mib, kLowFloorMiB) << "the disk under " << dir_ << " is full";
  const std::uint64_t floor_mib = free_mib + kFloorHeadroomMiB;
  restart(fmt::format("min_free_mb = {}\n", floor_mib));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kAlarmWaitMs);
  Result<client::SendResult> refused = Status::unavailable("not tried");
  while (std::chrono::steady_clock::now() < deadline) {
    refused = device_->send(direct_, fmt::format("m{}", next_id_++), "refused");
    if (!refused.ok()) break;
    acknowledged_.push_back(refused->seq);  // taken before the first check
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_FALSE(refused.ok()) << "nothing was refused within " << kAlarmWaitMs << " ms";
  EXPECT_EQ(client::protocol_error_code(refused.status()), "resource_exhausted")
      << refused.status().to_string();
  EXPECT_NE(cluster_->log_tail(1, 8000).find("raising the disk alarm"), std::string::npos);
  // The admin API refuses new content with 507; reads, read receipts and deletions go on.
  expect_new_content_refused_and_history_readable();
  auto read = device_->read(direct_, acknowledged_.back());
  EXPECT_TRUE(read.ok()) << read.status().to_string();
  const Status removed = device_->remove(direct_, acknowledged_.front());
  EXPECT_TRUE(removed.ok()) << removed.to_string();

  // The process stays up and healthy (refusing is not halting), and keeps refusing.
  std::this_thread::sleep_for(std::chrono::milliseconds(kStaysUpMs));
  ASSERT_TRUE(cluster_->alive(1)) << "the node exited below its floor";
  const client::HttpReply h = health();
  EXPECT_EQ(h.status, 200U) << h.body;
  EXPECT_NE(h.body.find("\"disk_alarms\":[1]"), std::string::npos) << h.body;
  EXPECT_FALSE(device_->send(direct_, fmt::format("m{}", next_id_++), "still refused").ok());

  // Restarted with a low floor: the alarm clears at the first disk check and sends are taken.
  restart(fmt::format("min_free_mb = {}\n", kLowFloorMiB));
  const auto lifted = std::chrono::steady_clock::now() + std::chrono::milliseconds(kAlarmWaitMs);
  Result<client::SendResult> again = Status::unavailable("not tried");
  while (std::chrono::steady_clock::now() < lifted) {
    again = device_->send(direct_, "after-lowering", "hello again");
    if (again.ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_TRUE(again.ok()) << again.status().to_string();
  EXPECT_EQ(health().body.find("disk_alarms"), std::string::npos);
  // Everything acknowledged is there, but the message deleted during the alarm.
  auto page = device_->history(direct_, std::nullopt);
  ASSERT_TRUE(page.ok()) << page.status().to_string();
  std::vector<std::uint64_t> stored;
  for (const client::Message& m : page->messages) {
    stored.push_back(m.seq);
    if (m.seq == acknowledged_.front()) {
      EXPECT_TRUE(m.deleted) << "message " << m.seq << " was deleted during the alarm";
    }
  }
  for (std::size_t i = 1; i < acknowledged_.size(); ++i) {
    EXPECT_NE(std::find(stored.begin(), stored.end(), acknowledged_[i]), stored.end())
        << "acknowledged message " << acknowledged_[i] << " is lost";
  }
}

}  // namespace
}  // namespace herald::e2e
