#include "sim/cluster.h"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <initializer_list>
#include <string_view>

#include "raft/memory_storage.h"
#include "sim/sim_main.h"

namespace herald::sim {
namespace {

raftpb::Entry entry(raft::Term term, raft::Index index, const std::string& data) {
  raftpb::Entry e;
  e.set_term(term);
  e.set_index(index);
  e.set_data(data);
  return e;
}

TEST(SafetyCheckerTest, FlagsDifferentEntriesAppliedAtOneIndex) {
  SafetyChecker checker;
  EXPECT_EQ(checker.on_apply(1, entry(1, 1, "a")), "");
  EXPECT_EQ(checker.on_apply(2, entry(1, 1, "a")), "");
  EXPECT_NE(checker.on_apply(3, entry(1, 1, "b")), "");
}

TEST(SafetyCheckerTest, FlagsAValueSeenAtALaterCopyOfItsCommand) {
  rsmpb::Command command;
  command.set_origin(2);
  command.set_incarnation(1);
  command.set_request_id(77);
  command.mutable_kv_put()->set_key("k");
  command.mutable_kv_put()->set_value("v");
  SafetyChecker checker;
  EXPECT_EQ(checker.on_apply(1, entry(1, 5, command.SerializeAsString())), "");
  EXPECT_EQ(checker.on_apply(1, entry(1, 6, command.SerializeAsString())), "");
  EXPECT_EQ(checker.check_write_revision("v", 5), "");
  EXPECT_NE(checker.check_write_revision("v", 6), "");
  EXPECT_NE(checker.check_write_revision("never written", 5), "");
}

TEST(SafetyCheckerTest, FlagsTwoLeadersInOneTerm) {
  SafetyChecker checker;
  raft::MemoryLogStorage log;
  raft::NodeStatus st;
  st.role = raft::Role::kLeader;
  st.term = 3;
  st.id = 1;
  EXPECT_EQ(checker.on_status(st, log), "");
  EXPECT_EQ(checker.on_status(st, log), "");
  st.id = 2;
  EXPECT_NE(checker.on_status(st, log), "");
}

TEST(SafetyCheckerTest, FlagsLeaderMissingACommittedEntry) {
  SafetyChecker checker;
  EXPECT_EQ(checker.on_apply(1, entry(1, 1, "a")), "");
  EXPECT_EQ(checker.on_apply(1, entry(1, 2, "b")), "");
  raft::MemoryLogStorage log;
  ASSERT_TRUE(log.append({entry(1, 1, "a"), entry(2, 2, "other")}).ok());
  raft::NodeStatus st;
  st.role = raft::Role::kLeader;
  st.term = 3;
  st.id = 2;
  EXPECT_NE(checker.on_status(st, log), "");
}

TEST(SafetyCheckerTest, LogMatchingAcceptsDivergentSuffixOnly) {
  raft::MemoryLogStorage a;
  raft::MemoryLogStorage b;
  ASSERT_TRUE(a.append({entry(1, 1, "x"), entry(1, 2, "y"), entry(2, 3, "p")}).ok());
  ASSERT_TRUE(b.append({entry(1, 1, "x"), entry(1, 2, "y"), entry(3, 3, "q")}).ok());
  EXPECT_EQ(SafetyChecker::check_log_matching(1, a, 2, b, 0), "");
}

TEST(SafetyCheckerTest, LogMatchingFlagsDifferentPrefixUnderAgreement) {
  raft::MemoryLogStorage a;
  raft::MemoryLogStorage b;
  ASSERT_TRUE(a.append({entry(1, 1, "x"), entry(2, 2, "y"), entry(3, 3, "z")}).ok());
  ASSERT_TRUE(b.append({entry(1, 1, "x"), entry(1, 2, "y"), entry(3, 3, "z")}).ok());
  EXPECT_NE(SafetyChecker::check_log_matching(1, a, 2, b, 0), "");
  raft::MemoryLogStorage c;
  ASSERT_TRUE(c.append({entry(1, 1, "x"), entry(2, 2, "other"), entry(3, 3, "z")}).ok());
  EXPECT_NE(SafetyChecker::check_log_matching(1, a, 3, c, 0), "");
}

// Whole-cluster runs, with replica logging silenced.
class SimClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    saved_level_ = spdlog::get_level();
    spdlog::set_level(spdlog::level::off);
  }
  void TearDown() override { spdlog::set_level(saved_level_); }

  static ClusterOptions options_for(std::uint64_t seed) {
    ClusterOptions options;
    options.seed = seed;
    options.replicas = seed % 2 == 1 ? 3 : 5;
    return options;
  }

 private:
  spdlog::level::level_enum saved_level_ = spdlog::level::info;
};

TEST_F(SimClusterTest, FaultFreeRunCompactsAndPasses) {
  ClusterOptions options = options_for(11);
  options.faults = false;
  const RunResult result = SimCluster(options).run();
  EXPECT_TRUE(result.ok) << result.failure;
  EXPECT_GT(result.stats.acked_writes, 100U);
  EXPECT_EQ(result.stats.unknown_ops, 0U);
  EXPECT_GT(result.stats.max_compacted_index, 0U);
}

TEST_F(SimClusterTest, SameSeedSameRun) {
  ClusterOptions options = options_for(3);
  options.duplicate_messages = false;  // so that the whole run is compared
  const RunResult a = SimCluster(options).run();
  const RunResult b = SimCluster(options).run();
  EXPECT_TRUE(a.ok) << a.failure;
  EXPECT_EQ(a.ok, b.ok);
  EXPECT_EQ(a.failure, b.failure);
  EXPECT_EQ(a.stats.events, b.stats.events);
  EXPECT_EQ(a.stats.end_ms, b.stats.end_ms);
  EXPECT_EQ(a.stats.acked_writes, b.stats.acked_writes);
  EXPECT_EQ(a.stats.network.delivered, b.stats.network.delivered);
}

// Runs `seeds` and returns how many snapshot chunks were delivered in all.
std::uint64_t expect_seeds_pass(std::initializer_list<std::uint64_t> seeds, bool duplicate) {
  std::uint64_t snapshot_chunks = 0;
  for (const std::uint64_t seed : seeds) {
    ClusterOptions options;
    options.seed = seed;
    options.replicas = seed % 2 == 1 ? 3 : 5;
    options.duplicate_messages = duplicate;
    const RunResult result = SimCluster(options).run();
    EXPECT_TRUE(result.ok) << "seed " << seed << ": " << result.failure;
    EXPECT_GT(result.stats.acked_writes, 0U) << "seed " << seed;
    snapshot_chunks += result.stats.network.snapshot_chunks;
  }
  return snapshot_chunks;
}

// Crashes, disk faults, partitions, loss and delay; the network does not duplicate.
TEST_F(SimClusterTest, FixedSeedsPassWithoutDuplication) {
  EXPECT_GT(expect_seeds_pass({1, 2, 3, 4, 5, 6, 7, 8}, /*duplicate=*/false), 0U)
      << "no lagging replica was sent a snapshot";
}

// The full fault model: a duplicated forwarded proposal is committed twice but takes effect once.
TEST_F(SimClusterTest, FixedSeedsPassWithDuplication) {
  expect_seeds_pass({1, 2, 3, 5, 6, 7}, /*duplicate=*/true);
}

// Seeds whose lying replica loses synced writes in a crash (3 and 5 replicas): every check still
// holds, because restarted replicas recover before they vote or acknowledge.
TEST_F(SimClusterTest, ALyingDiskOnAMinorityKeepsEveryCheck) {
  for (const std::uint64_t seed : {1, 18, 52, 65}) {
    const RunResult result = SimCluster(options_for(seed)).run();
    EXPECT_TRUE(result.ok) << "seed " << seed << ": " << result.failure;
    EXPECT_GT(result.stats.lying_disks, 0U) << "seed " << seed << " lost no synced write";
  }
}

// Seeds on which one replica's disk runs out of space (ENOSPC) and the replica halts, with the raft
// log in the engine and in segment files, 3 and 5 replicas: no assertion trips on the refused
// writes, every check holds, the halted replica reopens with the hard state and committed log it
// held, and the run converges with it once space returns.
TEST_F(SimClusterTest, AReplicaWhoseDiskFillsHaltsLosesNothingAndRejoinsOnceSpaceReturns) {
  struct Case {
    std::uint64_t seed;
    bool segment_log;
  };
  for (const Case c : {Case{2, false}, Case{3, false}, Case{14, true}, Case{15, true}}) {
    ClusterOptions options = options_for(c.seed);
    options.segment_log = c.segment_log;
    const RunResult result = SimCluster(options).run();
    EXPECT_TRUE(result.ok) << "seed " << c.seed << ": " << result.failure;
    EXPECT_EQ(result.stats.enospc_disks, 1U) << "seed " << c.seed;
    EXPECT_GT(result.stats.enospc_halts, 0U) << "seed " << c.seed << ": no replica halted";
  }
}

// Slow disks (ClusterOptions::slow_disks): replicas whose syncs take milliseconds, sometimes a
// stall of a second or more, process nothing meanwhile and send late; every check still holds.
TEST_F(SimClusterTest, SlowDisksAndTheirStallsKeepEveryCheck) {
  std::uint64_t stalls = 0;
  for (const std::uint64_t seed : {2, 7, 8, 10, 12}) {
    ClusterOptions options = options_for(seed);
    options.slow_disks = true;
    options.segment_log = seed % 3 == 0;
    const RunResult result = SimCluster(options).run();
    EXPECT_TRUE(result.ok) << "seed " << seed << ": " << result.failure;
    EXPECT_GT(result.stats.slow_disks, 0U) << "seed " << seed;
    EXPECT_GT(result.stats.slow_syncs, 0U) << "seed " << seed;
    stalls += result.stats.disk_stalls;
  }
  EXPECT_GT(stalls, 0U);
}

// The planted bug (docs/reliability.md, "A planted bug") is off unless `--plant-bug` asks: in the
// options of every scenario's seeds, in run_sim's options and in the replicas' configuration.
TEST(PlantedBugOptionsTest, IsOffByDefault) {
  EXPECT_EQ(ClusterOptions{}.planted_bug, PlantedBug::kNone);
  EXPECT_EQ(parse_planted_bug(SimOptions{}.plant_bug), PlantedBug::kNone);
  EXPECT_FALSE(rsm::NodeConfig{}.planted_commit_without_quorum);
  EXPECT_FALSE(raft::Config{}.planted_commit_without_quorum);
  for (const std::string_view scenario : {"raft", "workflow", "messaging", "membership"}) {
    for (const std::uint64_t seed : {1, 2}) {
      EXPECT_EQ(scenario_cluster_options(scenario, seed, false).planted_bug, PlantedBug::kNone)
          << scenario << " seed " << seed;
    }
  }
}

TEST(PlantedBugOptionsTest, NamesRoundTripAndUnknownNamesAreRefused) {
  for (const PlantedBug bug : {PlantedBug::kNone, PlantedBug::kCommitWithoutQuorum}) {
    EXPECT_EQ(parse_planted_bug(planted_bug_name(bug)), bug);
  }
  EXPECT_EQ(planted_bug_name(PlantedBug::kCommitWithoutQuorum), "commit-without-quorum");
  EXPECT_FALSE(parse_planted_bug("no-such-bug").has_value());
  EXPECT_FALSE(parse_planted_bug("").has_value());
  SimOptions options;
  options.seed = 1;
  options.plant_bug = "no-such-bug";
  EXPECT_EQ(run_sim(options), 2);
}

TEST(RunSimTest, UnknownScenarioIsAnError) {
  SimOptions options;
  options.scenario = "no-such-scenario";
  EXPECT_EQ(run_sim(options), 2);
}

TEST(RunSimTest, RunsOnlyTheGivenSeed) {
  SimOptions options;
  options.seed = 4;
  options.seeds = 1'000;
  testing::internal::CaptureStdout();
  EXPECT_EQ(run_sim(options), 0);
  const std::string out = testing::internal::GetCapturedStdout();
  EXPECT_TRUE(out.starts_with("sim: 1 seeds, ")) << out;
  EXPECT_TRUE(out.ends_with("\nsim: 1 passed, 0 failed\n")) << out;
}

}  // namespace
}  // namespace herald::sim
