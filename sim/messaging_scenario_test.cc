#include "sim/messaging_scenario.h"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

namespace herald::sim {
namespace {

class MessagingScenarioTest : public ::testing::TestWithParam<std::uint64_t> {
 protected:
  void SetUp() override { spdlog::set_level(spdlog::level::off); }
};

// Fixed seeds: 3 replicas (odd) and 5 (even), steady and storm fault profiles.
TEST_P(MessagingScenarioTest, SeedPassesEveryCheck) {
  MessagingScenario scenario(messaging_cluster_options(GetParam(), /*verbose=*/false));
  const MessagingRunResult result = scenario.run();
  EXPECT_TRUE(result.cluster.ok) << result.cluster.failure;
  EXPECT_GT(result.messaging.sends, 0U);
  EXPECT_GT(result.messaging.acks, 0U);
  EXPECT_GT(result.messaging.deliveries, 0U);
  EXPECT_GT(result.messaging.changes_received, 0U);
}

INSTANTIATE_TEST_SUITE_P(FixedSeeds, MessagingScenarioTest, ::testing::Values(1, 2, 3, 4));

using MessagingFullDiskTest = MessagingScenarioTest;

// Seeds on which one replica's disk runs out of space (ENOSPC) and the replica halts: every
// messaging check holds (no acknowledged message lost, deliveries and read sync complete) and
// the halted replica rejoins once space returns.
TEST_P(MessagingFullDiskTest, AReplicaHaltedOnAFullDiskLosesNoMessageAndRejoins) {
  MessagingScenario scenario(messaging_cluster_options(GetParam(), /*verbose=*/false));
  const MessagingRunResult result = scenario.run();
  EXPECT_TRUE(result.cluster.ok) << result.cluster.failure;
  EXPECT_EQ(result.cluster.stats.enospc_disks, 1U);
  EXPECT_GT(result.cluster.stats.enospc_halts, 0U) << "no replica halted";
  EXPECT_GT(result.messaging.sends, 0U);
  EXPECT_GT(result.messaging.deliveries, 0U);
}

INSTANTIATE_TEST_SUITE_P(FullDiskSeeds, MessagingFullDiskTest, ::testing::Values(15, 16));

TEST(MessagingScenarioReplayTest, SameSeedSameRun) {
  spdlog::set_level(spdlog::level::off);
  MessagingScenario a(messaging_cluster_options(5, false));
  MessagingScenario b(messaging_cluster_options(5, false));
  const MessagingRunResult ra = a.run();
  const MessagingRunResult rb = b.run();
  EXPECT_EQ(ra.cluster.stats.events, rb.cluster.stats.events);
  EXPECT_EQ(ra.cluster.stats.end_ms, rb.cluster.stats.end_ms);
  EXPECT_EQ(ra.cluster.failure, rb.cluster.failure);
  EXPECT_EQ(ra.messaging.sends, rb.messaging.sends);
  EXPECT_EQ(ra.messaging.changes_received, rb.messaging.changes_received);
  EXPECT_EQ(ra.messaging.pushes, rb.messaging.pushes);
}

}  // namespace
}  // namespace herald::sim
