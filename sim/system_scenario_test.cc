#include "sim/system_scenario.h"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

namespace herald::sim {
namespace {

class SystemScenarioTest : public ::testing::TestWithParam<std::uint64_t> {
 protected:
  void SetUp() override { spdlog::set_level(spdlog::level::off); }
};

// The devices really went through the gateway, and every fault of the system ran.
TEST_P(SystemScenarioTest, DevicesTalkThroughTheGatewayUnderEveryFault) {
  const MessagingRunResult r =
      run_system_scenario(system_cluster_options(GetParam(), /*verbose=*/false));
  ASSERT_TRUE(r.cluster.ok) << r.cluster.failure;
  EXPECT_GE(r.messaging.users, static_cast<std::uint64_t>(kSystemMinUsers));
  EXPECT_GT(r.messaging.frames_sent, 0U);
  EXPECT_GT(r.messaging.frames_received, r.messaging.changes_received);
  EXPECT_GT(r.messaging.changes_received, 0U);
  EXPECT_GT(r.messaging.sends, 0U);
  EXPECT_GT(r.messaging.acks, 0U);
  EXPECT_GT(r.messaging.reads, 0U);
  EXPECT_GT(r.messaging.deliveries, 0U);
  EXPECT_GT(r.messaging.pushes, 0U);
  EXPECT_GT(r.messaging.clock_jumps, 0U);
  EXPECT_GT(r.messaging.transfers, 0U);
  EXPECT_GT(r.messaging.rate_limited_calls, 0U);
  EXPECT_GT(r.cluster.stats.crashes + r.cluster.stats.partitions, 0U);
}

INSTANTIATE_TEST_SUITE_P(FixedSeeds, SystemScenarioTest, ::testing::Values(1, 4));

// The faults that the messaging scenario does not have ran beside the devices: membership changes
// committed (a spare joined), slow disks' syncs, devices that stopped reading, and the gateway's
// closes of connections that did not read.
TEST(SystemScenarioFaultsTest, MembershipChangesSlowDisksAndSlowReadersRun) {
  spdlog::set_level(spdlog::level::off);
  MessagingStats sum;
  std::uint64_t slow_syncs = 0;
  for (const std::uint64_t seed : {7, 10}) {
    const MessagingRunResult r = run_system_scenario(system_cluster_options(seed, false));
    ASSERT_TRUE(r.cluster.ok) << "seed " << seed << ": " << r.cluster.failure;
    sum.membership.added += r.messaging.membership.added;
    sum.membership.committed += r.messaging.membership.committed;
    sum.read_pauses += r.messaging.read_pauses;
    sum.slow_consumer_closes += r.messaging.slow_consumer_closes;
    slow_syncs += r.cluster.stats.slow_syncs;
  }
  EXPECT_GT(sum.membership.added, 0U);
  EXPECT_GT(sum.membership.committed, 1U);
  EXPECT_GT(slow_syncs, 0U);
  EXPECT_GT(sum.read_pauses, 0U);
  EXPECT_GT(sum.slow_consumer_closes, 0U);
}

TEST(SystemScenarioReplayTest, SameSeedSameRun) {
  spdlog::set_level(spdlog::level::off);
  const MessagingRunResult a = run_system_scenario(system_cluster_options(3, false));
  const MessagingRunResult b = run_system_scenario(system_cluster_options(3, false));
  EXPECT_EQ(a.cluster.stats.events, b.cluster.stats.events);
  EXPECT_EQ(a.cluster.stats.end_ms, b.cluster.stats.end_ms);
  EXPECT_EQ(a.cluster.failure, b.cluster.failure);
  EXPECT_EQ(a.messaging.frames_sent, b.messaging.frames_sent);
  EXPECT_EQ(a.messaging.frames_received, b.messaging.frames_received);
  EXPECT_EQ(a.messaging.pushes_received, b.messaging.pushes_received);
}

}  // namespace
}  // namespace herald::sim
