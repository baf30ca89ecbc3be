#include "sim/workflow_scenario.h"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

namespace herald::sim {
namespace {

class WorkflowScenarioTest : public ::testing::TestWithParam<std::uint64_t> {
 protected:
  void SetUp() override { spdlog::set_level(spdlog::level::off); }
};

// Fixed seeds: 3 replicas (odd) and 5 (even), seeds where a saga's compensations are broken and
// the operator retries, resolves or leaves it waiting.
TEST_P(WorkflowScenarioTest, SeedPassesEveryCheck) {
  WorkflowScenario scenario(workflow_cluster_options(GetParam(), /*verbose=*/false));
  const WorkflowRunResult result = scenario.run();
  EXPECT_TRUE(result.cluster.ok) << result.cluster.failure;
  EXPECT_EQ(result.workflow.workflows, 40U) << "every planned workflow was acknowledged";
  EXPECT_GT(result.workflow.effects, 0U);
  EXPECT_GT(result.workflow.timers_fired, 0U);
}

INSTANTIATE_TEST_SUITE_P(FixedSeeds, WorkflowScenarioTest, ::testing::Values(1, 2, 7, 29, 41, 96));

TEST(WorkflowScenarioReplayTest, SameSeedSameRun) {
  spdlog::set_level(spdlog::level::off);
  WorkflowScenario a(workflow_cluster_options(5, false));
  WorkflowScenario b(workflow_cluster_options(5, false));
  const WorkflowRunResult ra = a.run();
  const WorkflowRunResult rb = b.run();
  EXPECT_EQ(ra.cluster.stats.events, rb.cluster.stats.events);
  EXPECT_EQ(ra.cluster.stats.end_ms, rb.cluster.stats.end_ms);
  EXPECT_EQ(ra.workflow.activity_attempts, rb.workflow.activity_attempts);
  EXPECT_EQ(ra.workflow.timers_fired, rb.workflow.timers_fired);
}

}  // namespace
}  // namespace herald::sim
