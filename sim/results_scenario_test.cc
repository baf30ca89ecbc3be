#include "sim/results_scenario.h"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include "sim/stateless_baseline.h"

namespace herald::sim {
namespace {

class ResultsScenarioTest : public ::testing::TestWithParam<std::uint64_t> {
 protected:
  void SetUp() override { spdlog::set_level(spdlog::level::off); }
};

// Fixed seeds, 3 and 5 replicas: the invariants hold (Herald loses nothing, every design's counts
// agree, the baseline accounts for its jobs), and both designs carried traffic.
TEST_P(ResultsScenarioTest, SeedKeepsEveryInvariant) {
  const ResultsSeed r = run_results_seed(GetParam(), /*verbose=*/false, /*segment_log=*/false);
  EXPECT_EQ(r.failure, "");
  EXPECT_GT(r.herald.messages, 0U);
  EXPECT_EQ(r.herald.lost_messages, 0U);
  EXPECT_GT(r.herald.delivered, 0U);
  EXPECT_GT(r.broker.messages, 0U);
  EXPECT_GT(r.broker_stats.jobs_enqueued, 0U);
  EXPECT_EQ(r.broker_stats.jobs_lost, 0U);  // a broker's queue survives every crash
}

INSTANTIATE_TEST_SUITE_P(FixedSeeds, ResultsScenarioTest, ::testing::Values(1, 2, 3));

TEST(ResultsScenarioReplayTest, SameSeedSameFigures) {
  spdlog::set_level(spdlog::level::off);
  const ResultsSeed a = run_results_seed(5, false, false);
  const ResultsSeed b = run_results_seed(5, false, false);
  EXPECT_EQ(a.herald.push_attempts, b.herald.push_attempts);
  EXPECT_EQ(a.broker.push_attempts, b.broker.push_attempts);
  EXPECT_EQ(a.in_process.lost_messages, b.in_process.lost_messages);
  EXPECT_EQ(a.broker.divergence_total_ms, b.broker.divergence_total_ms);
  EXPECT_EQ(a.broker_stats.end_ms, b.broker_stats.end_ms);
}

// One node; alice's phone a on it from the start, bob's phone b (with a push token) offline.
WorkloadTrace one_message(MonoMs bob_connects_ms) {
  WorkloadTrace trace;
  trace.seed = 7;
  trace.nodes = 1;
  trace.end_ms = bob_connects_ms + 1'000;
  trace.devices = {{"a", "alice", false}, {"b", "bob", true}};
  trace.conversations = {{"c", {"alice", "bob"}}};
  trace.connections = {{0, "a", 1}, {bob_connects_ms, "b", 1}};
  trace.sends = {{100, "a", "c", "m1"}};
  return trace;
}

ResultFigures replay(const WorkloadTrace& trace, bool durable, BaselineStats* stats) {
  ResultsLedger ledger;
  for (const WorkloadTrace::Device& d : trace.devices) {
    ledger.add_device(d.id, d.user_id);
  }
  for (const WorkloadTrace::Conversation& c : trace.conversations) {
    for (const std::string& user : c.member_user_ids) {
      ledger.add_member(c.id, user);
    }
  }
  BaselineOptions options;
  options.durable_queue = durable;
  StatelessBaseline baseline(trace, options, &ledger);
  *stats = baseline.run();
  return ledger.figures(stats->end_ms);
}

TEST(StatelessBaselineTest, AnOfflineRecipientWithATokenIsPushedAfterTheGrace) {
  BaselineStats stats;
  const ResultFigures f = replay(one_message(/*bob_connects_ms=*/8'000), true, &stats);
  EXPECT_EQ(f.messages, 1U);
  EXPECT_GE(f.push_attempts, 1U);
  EXPECT_GE(f.pushes_accepted, 1U);
  EXPECT_EQ(f.lost_messages, 0U);  // bob pulls his inbox when he connects
  EXPECT_EQ(f.delivered, 1U);
  EXPECT_EQ(stats.jobs_enqueued, stats.jobs_done + stats.jobs_dropped);
}

TEST(StatelessBaselineTest, AnInProcessQueueLosesTheJobsOfACrashedNode) {
  // The send is answered by about 110 ms; the worker's next poll is at 200 ms; the node crashes
  // at 150 ms with the inbox jobs still queued in it, and comes back at 400 ms.
  WorkloadTrace trace = one_message(/*bob_connects_ms=*/500);
  trace.processes = {{150, 1, false}, {400, 1, true}};
  trace.connections.push_back({500, "a", 1});
  BaselineStats lost_stats;
  const ResultFigures lost = replay(trace, /*durable=*/false, &lost_stats);
  EXPECT_EQ(lost.messages, 1U);
  EXPECT_EQ(lost.lost_messages, 1U);
  EXPECT_GE(lost_stats.jobs_lost, 2U);  // one inbox job per member
  BaselineStats kept_stats;
  const ResultFigures kept = replay(trace, /*durable=*/true, &kept_stats);
  EXPECT_EQ(kept.messages, 1U);
  EXPECT_EQ(kept.lost_messages, 0U);
  EXPECT_EQ(kept_stats.jobs_lost, 0U);
}

TEST(StatelessBaselineTest, AReadReceiptMissesAnOfflineDeviceForGood) {
  // Bob writes; alice reads it on a while her other phone a2 is offline. a2 then comes online,
  // pulls the message, and is never told it was read.
  WorkloadTrace trace;
  trace.seed = 7;
  trace.nodes = 1;
  trace.end_ms = 6'000;
  trace.devices = {{"a", "alice", false}, {"a2", "alice", false}, {"b", "bob", false}};
  trace.conversations = {{"c", {"alice", "bob"}}};
  trace.connections = {{0, "a", 1}, {0, "b", 1}, {3'000, "a2", 1}};
  trace.sends = {{100, "b", "c", "m1"}};
  trace.reads = {{1'000, "a", "c", 1}};
  BaselineStats stats;
  const ResultFigures f = replay(trace, true, &stats);
  EXPECT_EQ(f.reads, 1U);
  EXPECT_EQ(stats.receipts_missed, 1U);
  EXPECT_EQ(f.lost_messages, 0U);
  EXPECT_EQ(f.diverged_devices, 1U);
  EXPECT_EQ(f.diverged_at_end, 1U);
}

}  // namespace
}  // namespace herald::sim
