// End to end: a replica whose stored data fails a checksum stops serving, rebuilds itself empty
// and is brought back by the leader, while the cluster keeps serving (docs/operations.md,
// "Damaged data"). Three real nodes; the damage is a flipped bit in one stored record of a
// follower, written while that follower is down.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "client/admin_client.h"
#include "client/herald_client.h"
#include "messaging/keys.h"
#include "storage/rocksdb_engine.h"
#include "tests/e2e/cluster.h"
#include "tests/e2e/devices.h"

namespace herald::e2e {
namespace {

constexpr std::uint32_t kStartupTimeoutMs = 15'000;
// Bound on the damaged follower finding the damage, rebuilding and catching up.
constexpr std::uint32_t kRebuildTimeoutMs = 30'000;
constexpr int kMessagesBefore = 20;

// Flips one bit of the value under `key` in the state space of the (stopped) node's store.
Status damage_record(const std::string& data_dir, const std::string& key) {
  HERALD_ASSIGN_OR_RETURN(auto engine,
                          storage::RocksDbEngine::open(data_dir, storage::RocksDbOptions{}));
  HERALD_ASSIGN_OR_RETURN(auto value, engine->get(storage::Space::kState, key));
  if (!value.has_value() || value->empty()) return Status::not_found("no record to damage");
  value->back() = static_cast<char>(value->back() ^ 0x01);
  storage::WriteBatch batch;
  batch.put(storage::Space::kState, key, *value);
  return engine->write(batch, /*sync=*/true);
}

bool log_says(const Cluster& cluster, std::uint64_t id, const std::string& text) {
  constexpr std::size_t kWholeLog = std::size_t{1} << 24U;
  return cluster.log_tail(id, kWholeLog).find(text) != std::string::npos;
}

// Three nodes, alice and bob in a direct conversation with kMessagesBefore messages.
class Rebuild : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster = must(Cluster::create(3), "creating the cluster");
    must(cluster->start_all(), "starting the nodes");
    lead = must(cluster->leader(kStartupTimeoutMs), "a leader");
    client::AdminClient admin = cluster->admin(lead);
    must(admin.create_user("alice", "alice"), "alice");
    must(admin.create_user("bob", "bob"), "bob");
    a_phone = must(provision_device(admin, "alice", "a-phone"), "a-phone");
    b_phone = must(provision_device(admin, "bob", "b-phone"), "b-phone");
    direct = must(admin.create_conversation({"alice", "direct", {"bob"}, "", ""}), "direct")
                 .conversation_id;
    alice = must(connect_device(cluster->node(lead).client_port, a_phone, std::nullopt),
                 "connecting alice");
    for (int i = 0; i < kMessagesBefore; ++i) {
      must(alice->send(direct, fmt::format("before-{}", i), "hello"), "sending");
    }
  }

  // Waits until node `id` logs that it rebuilt; false at the deadline.
  bool rebuilt_by(std::uint64_t id, std::chrono::steady_clock::time_point deadline) const {
    while (std::chrono::steady_clock::now() < deadline) {
      if (log_says(*cluster, id, "holds a new store")) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(kPollIntervalMs));
    }
    return false;
  }

  // Bob on node `id`, once its history holds `count` messages; nullptr at the deadline.
  std::unique_ptr<client::HeraldClient> bob_with_history(
      std::uint64_t id, std::size_t count, std::chrono::steady_clock::time_point deadline) const {
    while (std::chrono::steady_clock::now() < deadline) {
      auto connected = connect_device(cluster->node(id).client_port, b_phone, std::nullopt);
      if (connected.ok()) {
        auto page = (*connected)->history(direct, std::nullopt, 100);
        if (page.ok() && page->messages.size() == count) return std::move(connected).value();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10 * kPollIntervalMs));
    }
    return nullptr;
  }

  std::unique_ptr<Cluster> cluster;
  std::uint64_t lead = 0;
  DeviceCredentials a_phone;
  DeviceCredentials b_phone;
  std::string direct;
  std::unique_ptr<client::HeraldClient> alice;
};

TEST_F(Rebuild, ADamagedFollowerRebuildsFromTheLeaderWhileTheClusterServes) {
  // The follower goes down and comes back with its conversation record damaged; nothing reads
  // the record while it opens.
  const std::uint64_t damaged = cluster->other_live_node(lead);
  cluster->kill(damaged);
  ASSERT_TRUE(
      damage_record(cluster->node(damaged).data_dir, messaging::keys::conversation_key(direct))
          .ok());
  must(cluster->start(damaged), "restarting the damaged follower");

  // The next send makes every replica read the record: the damaged one finds the damage,
  // rebuilds in place and catches up, while the leader goes on answering.
  for (int i = 0; i < kMessagesBefore; ++i) {
    must(alice->send(direct, fmt::format("after-{}", i), "still here"), "sending meanwhile");
  }
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(kRebuildTimeoutMs);
  ASSERT_TRUE(rebuilt_by(damaged, deadline)) << cluster->log_tail(damaged);
  EXPECT_TRUE(log_says(*cluster, damaged, "found damaged data"));
  EXPECT_TRUE(cluster->alive(damaged)) << "it restarts in place, it does not exit";
  EXPECT_TRUE(std::filesystem::exists(cluster->node(damaged).data_dir + ".damaged"));

  // Served by the rebuilt replica itself (a linearizable read there): every message is back.
  const auto bob = bob_with_history(damaged, std::size_t{2} * kMessagesBefore, deadline);
  ASSERT_NE(bob, nullptr) << cluster->log_tail(damaged);
  const auto page = must(bob->history(direct, std::nullopt, 100), "history on the rebuilt node");
  EXPECT_EQ(page.messages.front().seq, static_cast<std::uint64_t>(2 * kMessagesBefore));
  EXPECT_EQ(page.messages.back().seq, 1U);

  // It takes part again: with the leader gone, the other two elect and serve.
  cluster->kill(lead);
  const std::uint64_t next = must(cluster->leader(kStartupTimeoutMs), "a new leader");
  EXPECT_NE(next, lead);
  auto again = must(connect_device(cluster->node(damaged).client_port, b_phone, std::nullopt),
                    "connecting to the rebuilt node");
  must(again->send(direct, "after-failover", "and on"), "sending after the failover");
}

TEST_F(Rebuild, AFollowerWhoseReadFindsDamageRebuildsToo) {
  // A message record only reads touch (history), damaged while the follower is down.
  const std::uint64_t damaged = cluster->other_live_node(lead);
  cluster->kill(damaged);
  ASSERT_TRUE(
      damage_record(cluster->node(damaged).data_dir, messaging::keys::message_key(direct, 5)).ok());
  must(cluster->start(damaged), "restarting the damaged follower");
  must(alice->send(direct, "after", "the follower applies this without reading message 5"),
       "sending");

  // Bob's history there reads message 5: the read fails, and the replica rebuilds.
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(kRebuildTimeoutMs);
  while (!log_says(*cluster, damaged, "found damaged data") &&
         std::chrono::steady_clock::now() < deadline) {
    auto bob = connect_device(cluster->node(damaged).client_port, b_phone, std::nullopt);
    if (bob.ok()) {
      auto page = (*bob)->history(direct, std::nullopt, 100);
      EXPECT_FALSE(page.ok() && page->messages.size() != std::size_t{kMessagesBefore} + 1)
          << "a damaged history is never served";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10 * kPollIntervalMs));
  }
  ASSERT_TRUE(rebuilt_by(damaged, deadline)) << cluster->log_tail(damaged);
  EXPECT_TRUE(log_says(*cluster, damaged, "message record fails its checksum"));
  const auto bob = bob_with_history(damaged, std::size_t{kMessagesBefore} + 1, deadline);
  ASSERT_NE(bob, nullptr) << cluster->log_tail(damaged);
}

}  // namespace
}  // namespace herald::e2e
