// End to end on three real `herald serve` processes: the peers' cluster secret
// (docs/protocol-peer.md, "Handshake"). A node holding another secret never joins; a node of a
// multi-node cluster started without a secret refuses to start.
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>

#include "tests/e2e/cluster.h"
#include "tests/e2e/devices.h"

namespace herald::e2e {
namespace {

// Bound on a leader among the nodes that share the secret.
constexpr std::uint32_t kStartupTimeoutMs = 15'000;
// Bound on the failed handshakes showing in the logs, and on a node refusing to start.
constexpr std::uint32_t kRefusalTimeoutMs = 15'000;
// Enough to read a test node's whole log.
constexpr std::size_t kWholeLogBytes = std::size_t{16} * 1024 * 1024;

bool log_contains(const Cluster& cluster, std::uint64_t id, const std::string& text) {
  return cluster.log_tail(id, kWholeLogBytes).find(text) != std::string::npos;
}

// Node 3 holds another secret than nodes 1 and 2: handshakes between them fail on both sides,
// node 3 never authenticates a peer, and nodes 1 and 2 form the cluster on their own.
TEST(PeerAuthE2e, NodeWithAnotherSecretNeverJoins) {
  auto created = Cluster::create(3);
  ASSERT_TRUE(created.ok()) << created.status().to_string();
  Cluster& cluster = **created;
  ASSERT_TRUE(cluster.set_secret(3, Cluster::random_secret()).ok());
  ASSERT_TRUE(cluster.start_all().ok());
  // As a caller a node finds the acceptor's proof wrong; as an acceptor it sees the caller give
  // up after the HelloReply. Either warning may come first; the rest are rate limited.
  const auto warned = [&](std::uint64_t id) {
    return log_contains(cluster, id, "failed to prove the cluster secret") ||
           log_contains(cluster, id, "does it hold another cluster secret?");
  };
  for (const std::uint64_t id : {1, 3}) {
    EXPECT_TRUE(eventually([&] { return warned(id); }, kRefusalTimeoutMs)) << cluster.log_tail(id);
  }
  EXPECT_TRUE(
      eventually([&] { return log_contains(cluster, 1, "authenticated"); }, kStartupTimeoutMs))
      << "nodes 1 and 2 authenticate each other\n"
      << cluster.log_tail(1);
  EXPECT_FALSE(log_contains(cluster, 3, "authenticated")) << cluster.log_tail(3);
  cluster.kill(3);
  const Result<std::uint64_t> leader = cluster.leader(kStartupTimeoutMs);
  ASSERT_TRUE(leader.ok()) << leader.status().to_string() << "\n" << cluster.log_tail(1);
  EXPECT_NE(*leader, 3U);
}

TEST(PeerAuthE2e, NodeOfSeveralWithoutASecretRefusesToStart) {
  auto created = Cluster::create(3);
  ASSERT_TRUE(created.ok()) << created.status().to_string();
  Cluster& cluster = **created;
  ASSERT_TRUE(cluster.set_secret(1, "").ok());
  ASSERT_TRUE(cluster.start(1).ok());
  EXPECT_TRUE(eventually([&] { return !cluster.alive(1); }, kRefusalTimeoutMs))
      << "a node of three without a secret must not run";
  EXPECT_TRUE(log_contains(cluster, 1, "--cluster-secret-file")) << cluster.log_tail(1);
  EXPECT_TRUE(cluster.set_secret(1, "too short").ok());
  ASSERT_TRUE(cluster.start(1).ok());
  EXPECT_TRUE(eventually([&] { return !cluster.alive(1); }, kRefusalTimeoutMs))
      << "a node with a short secret must not run";
  EXPECT_TRUE(log_contains(cluster, 1, "at least 32 are required")) << cluster.log_tail(1);
}

}  // namespace
}  // namespace herald::e2e
