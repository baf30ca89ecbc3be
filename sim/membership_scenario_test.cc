#include "sim/membership_scenario.h"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

namespace herald::sim {
namespace {

class MembershipScenarioTest : public ::testing::TestWithParam<std::uint64_t> {
 protected:
  void SetUp() override { spdlog::set_level(spdlog::level::off); }
};

// Fixed seeds, steady and storm fault profiles: every check holds and the membership changed.
TEST_P(MembershipScenarioTest, SeedPassesEveryCheck) {
  MembershipScenario scenario(membership_cluster_options(GetParam(), /*verbose=*/false));
  const MembershipRunResult result = scenario.run();
  EXPECT_TRUE(result.cluster.ok) << result.cluster.failure;
  EXPECT_GT(result.membership.added, 0U);
  EXPECT_GT(result.membership.committed, 1U);
  EXPECT_GT(result.cluster.stats.acked_writes, 0U);
}

INSTANTIATE_TEST_SUITE_P(FixedSeeds, MembershipScenarioTest, ::testing::Values(1, 2, 3, 4));

TEST(MembershipScenarioReplayTest, SameSeedSameRun) {
  spdlog::set_level(spdlog::level::off);
  MembershipScenario a(membership_cluster_options(6, false));
  MembershipScenario b(membership_cluster_options(6, false));
  const MembershipRunResult ra = a.run();
  const MembershipRunResult rb = b.run();
  EXPECT_EQ(ra.cluster.stats.events, rb.cluster.stats.events);
  EXPECT_EQ(ra.cluster.stats.end_ms, rb.cluster.stats.end_ms);
  EXPECT_EQ(ra.cluster.failure, rb.cluster.failure);
  EXPECT_EQ(ra.membership.asked, rb.membership.asked);
  EXPECT_EQ(ra.membership.committed, rb.membership.committed);
}

}  // namespace
}  // namespace herald::sim
