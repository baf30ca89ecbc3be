// The planted bug is caught within the seeds CI runs (docs/reliability.md, "A planted bug").
//
// Every replica runs with PlantedBug::kCommitWithoutQuorum: a leader commits, applies and
// acknowledges a write as soon as its own log holds it, before a majority does. For each scenario
// below, the seeds CI runs are tried in order with the bug planted until one fails; the test
// asserts that one does, that its failure is a check that an acknowledged write was lost or
// contradicted, and that the same seed passes without the bug. The first failing seed is printed
// with its replay line. Registered as the ctest sim.planted_bug_is_caught (tests/CMakeLists.txt).
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "sim/cluster.h"
#include "sim/sim_main.h"

namespace herald::sim {
namespace {

// The seed ranges of CI's simulator runs (tests/CMakeLists.txt: sim.raft_500_seeds,
// sim.messaging_200_seeds and sim.system_fixed_seeds run seeds 1..N).
constexpr std::uint64_t kCiRaftSeeds = 500;
constexpr std::uint64_t kCiMessagingSeeds = 200;
// sim.system_fixed_seeds runs seeds 1..kCiSystemSeeds.
constexpr std::uint64_t kCiSystemSeeds = 12;

// The checks whose failure says that a write the cluster acknowledged is gone or contradicted:
// a new leader lacks an applied entry, two replicas applied different entries at one index, the
// clients' history is not linearizable, or an acknowledged message is missing or replaced.
constexpr std::array<std::string_view, 5> kLostWriteChecks = {
    "leader completeness:", "state machine safety:", "linearizability:", "acknowledged message",
    "was acknowledged there"};

bool names_a_lost_write(std::string_view failure) {
  for (const std::string_view check : kLostWriteChecks) {
    if (failure.find(check) != std::string_view::npos) {
      return true;
    }
  }
  return false;
}

struct Caught {
  std::uint64_t seed = 0;
  std::string failure;
};

RunResult run_seed(std::string_view scenario, std::uint64_t seed, PlantedBug bug) {
  ClusterOptions options = scenario_cluster_options(scenario, seed, /*verbose=*/false);
  options.planted_bug = bug;
  return run_scenario_seed(scenario, options);
}

// The first of seeds 1..seeds of `scenario` that fails with `bug` planted, if any.
std::optional<Caught> first_failing_seed(std::string_view scenario, std::uint64_t seeds,
                                         PlantedBug bug) {
  for (std::uint64_t seed = 1; seed <= seeds; ++seed) {
    RunResult result = run_seed(scenario, seed, bug);
    if (!result.ok) {
      return Caught{seed, std::move(result.failure)};
    }
  }
  return std::nullopt;
}

class PlantedBugTest : public ::testing::Test {
 protected:
  void SetUp() override {
    saved_level_ = spdlog::get_level();
    spdlog::set_level(spdlog::level::off);
  }
  void TearDown() override { spdlog::set_level(saved_level_); }

  static void expect_caught(std::string_view scenario, std::uint64_t ci_seeds) {
    const PlantedBug bug = PlantedBug::kCommitWithoutQuorum;
    const std::optional<Caught> caught = first_failing_seed(scenario, ci_seeds, bug);
    ASSERT_TRUE(caught.has_value()) << "the planted bug " << planted_bug_name(bug)
                                    << " survived all " << ci_seeds << " seeds of " << scenario;
    fmt::print(
        "planted bug {} caught in scenario {} by seed {}: {}\nreplay: herald sim --scenario {} "
        "--seed {} --plant-bug {}\n",
        planted_bug_name(bug), scenario, caught->seed, caught->failure, scenario, caught->seed,
        planted_bug_name(bug));
    std::fflush(stdout);
    EXPECT_TRUE(names_a_lost_write(caught->failure))
        << "seed " << caught->seed << " failed on another check: " << caught->failure;
    // The bug, not the seed, made it fail.
    const RunResult clean = run_seed(scenario, caught->seed, PlantedBug::kNone);
    EXPECT_TRUE(clean.ok) << "seed " << caught->seed
                          << " fails without the bug too: " << clean.failure;
  }

 private:
  spdlog::level::level_enum saved_level_ = spdlog::level::info;
};

TEST_F(PlantedBugTest, CommitWithoutQuorumIsCaughtWithinTheRaftSeeds) {
  expect_caught("raft", kCiRaftSeeds);
}

// The acknowledged thing is a chat message here: SendMessage answered with its seq.
TEST_F(PlantedBugTest, CommitWithoutQuorumIsCaughtWithinTheMessagingSeeds) {
  expect_caught("messaging", kCiMessagingSeeds);
}

// Here the message is sent and acknowledged through the gateway (a `send` answered `ok`).
TEST_F(PlantedBugTest, CommitWithoutQuorumIsCaughtWithinTheSystemSeeds) {
  expect_caught("system", kCiSystemSeeds);
}

}  // namespace
}  // namespace herald::sim
