#include "sim/sim_main.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string_view>

#include "sim/cluster.h"
#include "sim/workflow_scenario.h"

namespace herald::sim {

namespace {

constexpr char kRaftScenario[] = "raft";
constexpr char kWorkflowScenario[] = "workflow";

// What to print if a seed aborts the process (a failed HERALD_ASSERT in any layer): the seed, so
// that it can be replayed. Formatted before each run; written from the signal handler.
std::array<char, 256> g_abort_message{};
std::size_t g_abort_message_len = 0;

extern "C" void on_abort_signal(int signal_number) {
  // Only async-signal-safe calls here.
  const ssize_t written = write(STDOUT_FILENO, g_abort_message.data(), g_abort_message_len);
  static_cast<void>(written);
  std::signal(signal_number, SIG_DFL);
  std::raise(signal_number);
}

void arm_abort_message(std::string_view scenario, std::uint64_t seed) {
  const std::string message = fmt::format(
      "sim: seed {} FAILED: the process aborted (see the assertion above)\n"
      "replay: herald sim --scenario {} --seed {}\n",
      seed, scenario, seed);
  g_abort_message_len = std::min(message.size(), g_abort_message.size());
  std::memcpy(g_abort_message.data(), message.data(), g_abort_message_len);
}

ClusterOptions raft_options(std::uint64_t seed, bool verbose) {
  ClusterOptions options;
  options.seed = seed;
  options.replicas = seed % 2 == 1 ? 3 : 5;
  options.verbose = verbose;
  return options;
}

void print_stats(std::uint64_t seed, int replicas, const RunStats& s) {
  fmt::print(
      "sim: seed {} ok: {} replicas, {} faults, {} events, {} ms simulated, {} writes and {} "
      "reads acknowledged, {} unknown, {} rejected, {} crashes, {} disk faults, {} partitions, "
      "{} leaders, compacted to {}, {} snapshot chunks (max seq {}), network {} delivered {} "
      "lost {} duplicated {} cut {} refused, {} linearizability steps\n",
      seed, replicas, s.storm ? "storm" : "steady", s.events, s.end_ms, s.acked_writes,
      s.acked_reads, s.unknown_ops, s.rejected_ops, s.crashes, s.io_faults, s.partitions, s.leaders,
      s.max_compacted_index, s.network.snapshot_chunks, s.network.max_chunk_seq,
      s.network.delivered, s.network.lost, s.network.duplicated, s.network.cut, s.network.rejected,
      s.linearizability_steps);
}

void print_workflow_stats(std::uint64_t seed, const WorkflowStats& s) {
  fmt::print(
      "sim: seed {} workflows: {} started ({} duplicate starts), {} completed, {} failed, {} "
      "canceled, {} compensated, {} waiting in compensation_failed; {} activity attempts, {} "
      "effects, {} deduplicated, {} answers lost; {} timers fired, {} early fires refused; {} "
      "operator signals\n",
      seed, s.workflows, s.duplicate_starts, s.completed, s.failed, s.canceled, s.compensated,
      s.compensation_failed, s.activity_attempts, s.effects, s.deduplicated, s.lost_answers,
      s.timers_fired, s.early_fires_refused, s.operator_signals);
}

// Runs one seed of `scenario` (known); true when it passed.
bool run_seed(std::string_view scenario, std::uint64_t seed, bool verbose) {
  arm_abort_message(scenario, seed);
  const bool workflow = scenario == kWorkflowScenario;
  const ClusterOptions options =
      workflow ? workflow_cluster_options(seed, verbose) : raft_options(seed, verbose);
  if (verbose) {
    fmt::print("sim: seed {}: {} replicas\n", seed, options.replicas);
  }
  RunResult result;
  std::optional<WorkflowStats> workflow_stats;
  if (workflow) {
    WorkflowScenario run(options);
    const WorkflowRunResult r = run.run();
    result = r.cluster;
    workflow_stats = r.workflow;
  } else {
    SimCluster cluster(options);
    result = cluster.run();
  }
  if (!result.ok) {
    fmt::print("sim: seed {} FAILED: {}\nreplay: herald sim --scenario {} --seed {}\n", seed,
               result.failure, scenario, seed);
  } else if (verbose) {
    print_stats(seed, options.replicas, result.stats);
    if (workflow_stats) {
      print_workflow_stats(seed, *workflow_stats);
    }
  }
  std::fflush(stdout);
  return result.ok;
}

}  // namespace

int run_sim(const SimOptions& opts) {
  if (opts.scenario != kRaftScenario && opts.scenario != kWorkflowScenario) {
    fmt::print(stderr, "sim: unknown scenario '{}' (known scenarios: {}, {})\n", opts.scenario,
               kRaftScenario, kWorkflowScenario);
    return 2;
  }
  if (!opts.seed && opts.seeds < 1) {
    fmt::print(stderr, "sim: --seeds must be at least 1 (got {})\n", opts.seeds);
    return 2;
  }
  const spdlog::level::level_enum saved_level = spdlog::get_level();
  spdlog::set_level(opts.verbose ? spdlog::level::warn : spdlog::level::off);
  auto* const saved_handler = std::signal(SIGABRT, on_abort_signal);
  int passed = 0;
  int failed = 0;
  const std::uint64_t first = opts.seed.value_or(1);
  const std::uint64_t last = opts.seed.value_or(static_cast<std::uint64_t>(opts.seeds));
  for (std::uint64_t seed = first; seed <= last; ++seed) {
    ++(run_seed(opts.scenario, seed, opts.verbose) ? passed : failed);
  }
  std::signal(SIGABRT, saved_handler);
  spdlog::set_level(saved_level);
  fmt::print("sim: {} passed, {} failed\n", passed, failed);
  std::fflush(stdout);
  return failed > 0 ? 1 : 0;
}

}  // namespace herald::sim
