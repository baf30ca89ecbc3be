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

TEST(Rebuild, ADamagedFollowerRebuildsFromTheLeaderWhileTheClusterServes) {
  auto cluster = must(Cluster::create(3), "creating the cluster");
  must(cluster->start_all(), "starting the nodes");
  const std::uint64_t lead = must(cluster->leader(kStartupTimeoutMs), "a leader");
  client::AdminClient admin = cluster->admin(lead);
  must(admin.create_user("alice", "alice"), "alice");
  must(admin.create_user("bob", "bob"), "bob");
  const DeviceCredentials a_phone = must(provision_device(admin, "alice", "a-phone"), "a-phone");
  const DeviceCredentials b_phone = must(provision_device(admin, "bob", "b-phone"), "b-phone");
  const std::string direct =
      must(admin.create_conversation({"alice", "direct", {"bob"}, "", ""}), "direct")
          .conversation_id;
  auto alice = must(connect_device(cluster->node(lead).client_port, a_phone, std::nullopt),
                    "connecting alice");
  for (int i = 0; i < kMessagesBefore; ++i) {
    must(alice->send(direct, fmt::format("before-{}", i), "hello"), "sending");
  }

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
  bool rebuilt = false;
  while (!rebuilt && std::chrono::steady_clock::now() < deadline) {
    rebuilt = log_says(*cluster, damaged, "holds a new store");
    if (!rebuilt) std::this_thread::sleep_for(std::chrono::milliseconds(kPollIntervalMs));
  }
  ASSERT_TRUE(rebuilt) << cluster->log_tail(damaged);
  EXPECT_TRUE(log_says(*cluster, damaged, "found damaged data"));
  EXPECT_TRUE(cluster->alive(damaged)) << "it restarts in place, it does not exit";
  EXPECT_TRUE(std::filesystem::exists(cluster->node(damaged).data_dir + ".damaged"));

  // Served by the rebuilt replica itself (a linearizable read there): every message is back.
  std::unique_ptr<client::HeraldClient> bob;
  while (std::chrono::steady_clock::now() < deadline) {
    auto connected = connect_device(cluster->node(damaged).client_port, b_phone, std::nullopt);
    if (connected.ok()) {
      auto page = (*connected)->history(direct, std::nullopt, 100);
      if (page.ok() && page->messages.size() == std::size_t{2} * kMessagesBefore) {
        bob = std::move(connected).value();
        break;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10 * kPollIntervalMs));
  }
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

}  // namespace
}  // namespace herald::e2e
