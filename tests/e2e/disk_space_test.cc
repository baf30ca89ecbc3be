// End to end: a node whose data directory sits on a small tmpfs of its own (mount(2), so these
// tests need root; they skip without it). Below the free-space floor the cluster refuses new
// content with `resource_exhausted` while reads, deletions and acknowledgements go on, and takes
// it again once space is freed; on a disk that truly fills, the replica halts with the process up
// and loses nothing it acknowledged.
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

class DiskSpace : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "mounting a tmpfs needs root";
    }
    cluster_ = must(Cluster::create(1), "creating the cluster");
    dir_ = cluster_->node(1).data_dir;
    std::filesystem::create_directories(dir_);
    const std::string options = fmt::format("size={}m", kDiskMiB);
    if (::mount("tmpfs", dir_.c_str(), "tmpfs", 0, options.c_str()) != 0) {
      GTEST_SKIP() << "cannot mount a tmpfs: " << std::strerror(errno);
    }
    mounted_ = true;
    filler_ = dir_ + "/filler";
  }

  void TearDown() override {
    if (HasFailure() && cluster_ != nullptr) {
      std::fprintf(stderr, "---- node 1 log (tail) ----\n%s\n", cluster_->log_tail(1).c_str());
    }
    if (cluster_ != nullptr) {
      cluster_->kill(1);
    }
    if (mounted_ && ::umount2(dir_.c_str(), MNT_DETACH) != 0) {
      std::fprintf(stderr, "umount %s: %s\n", dir_.c_str(), std::strerror(errno));
    }
    cluster_.reset();
  }

  // Starts the node with `toml` (top-level keys) as its config, without a device request rate
  // limit, with alice (one device), bob and their conversation.
  void start(const std::string& toml) {
    must(cluster_->set_config(toml + "[devices]\nrequests_per_s = 0\n"), "writing the config");
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

  std::unique_ptr<Cluster> cluster_;
  std::string dir_;
  std::string filler_;
  bool mounted_ = false;
  std::unique_ptr<client::AdminClient> admin_;
  DeviceCredentials phone_;
  std::string direct_;
  std::unique_ptr<HeraldClient> device_;
  int next_id_ = 0;
  std::vector<std::uint64_t> acknowledged_;
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
  // The admin API refuses new content with 507.
  const auto created =
      must(admin_->request("POST", "/v1/admin/users", R"({"user_id":"carol"})"), "creating carol");
  EXPECT_EQ(created.status, 507U) << created.body;

  // Reads, acknowledgements and deletions go on.
  auto newest = device_->history(direct_, std::nullopt, 1);
  ASSERT_TRUE(newest.ok()) << newest.status().to_string();
  ASSERT_EQ(newest->messages.size(), 1U);
  EXPECT_EQ(newest->messages[0].seq, acknowledged_.back());
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

  // Freed and restarted, it has every acknowledged message.
  device_.reset();
  cluster_->kill(1);
  std::filesystem::remove(filler_);
  must(cluster_->start(1), "restarting");
  must(cluster_->leader(kStartupTimeoutMs), "waiting for a leader after the restart");
  // The restarted node may still be electing itself: retry the connection for a while.
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(kStartupTimeoutMs);
  auto reconnected = connect_device(cluster_->node(1).client_port, phone_);
  while (!reconnected.ok() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    reconnected = connect_device(cluster_->node(1).client_port, phone_);
  }
  device_ = must(std::move(reconnected), "reconnecting");
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

}  // namespace
}  // namespace herald::e2e
