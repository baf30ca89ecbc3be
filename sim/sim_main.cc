#include "sim/sim_main.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "base/assert.h"
#include "base/clock.h"
#include "sim/cluster.h"
#include "sim/membership_scenario.h"
#include "sim/messaging_scenario.h"
#include "sim/results_scenario.h"
#include "sim/system_scenario.h"
#include "sim/workflow_scenario.h"

namespace herald::sim {

namespace {

constexpr char kRaftScenario[] = "raft";
constexpr char kWorkflowScenario[] = "workflow";
constexpr char kMessagingScenario[] = "messaging";
constexpr char kMembershipScenario[] = "membership";
constexpr char kResultsScenario[] = "results";
constexpr char kSystemScenario[] = "system";
constexpr double kMsPerSecond = 1000.0;
constexpr double kMsPerHour = 3'600'000.0;

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

// What every seed of one run shares besides the scenario.
struct RunFlags {
  bool verbose = false;
  bool segment_log = false;
  PlantedBug planted_bug = PlantedBug::kNone;
};

// The flags a replay line needs to run the same replicas as this run.
std::string replay_flags(const RunFlags& flags) {
  std::string out = flags.segment_log ? " --raft-log segments" : "";
  if (flags.planted_bug != PlantedBug::kNone) {
    out += fmt::format(" --plant-bug {}", planted_bug_name(flags.planted_bug));
  }
  return out;
}

void arm_abort_message(std::string_view scenario, std::uint64_t seed, const RunFlags& flags) {
  const std::string message = fmt::format(
      "sim: seed {} FAILED: the process aborted (see the assertion above)\n"
      "replay: herald sim --scenario {} --seed {}{}\n",
      seed, scenario, seed, replay_flags(flags));
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
      "reads acknowledged, {} unknown, {} rejected, {} crashes, {} disk faults, {} full disks, {} "
      "disks out of space ({} halts), {} damaged records, {} rebuilds, {} lying disks, {} "
      "partitions, "
      "{} leaders, compacted to {}, {} snapshot chunks (max seq {}), network {} delivered {} "
      "lost {} duplicated {} cut {} refused, {} linearizability steps, {} slow disks ({} slow "
      "syncs, {} stalls)\n",
      seed, replicas, s.storm ? "storm" : "steady", s.events, s.end_ms, s.acked_writes,
      s.acked_reads, s.unknown_ops, s.rejected_ops, s.crashes, s.io_faults, s.full_disks,
      s.enospc_disks, s.enospc_halts, s.damaged_records, s.rebuilds, s.lying_disks, s.partitions,
      s.leaders, s.max_compacted_index, s.network.snapshot_chunks, s.network.max_chunk_seq,
      s.network.delivered, s.network.lost, s.network.duplicated, s.network.cut, s.network.rejected,
      s.linearizability_steps, s.slow_disks, s.slow_syncs, s.disk_stalls);
}

std::string workflow_stats_line(std::uint64_t seed, const WorkflowStats& s) {
  return fmt::format(
      "sim: seed {} workflows: {} started ({} duplicate starts), {} completed, {} failed, {} "
      "canceled, {} compensated, {} waiting in compensation_failed; {} activity attempts, {} "
      "effects, {} deduplicated, {} answers lost; {} timers fired, {} early fires refused; {} "
      "operator signals\n",
      seed, s.workflows, s.duplicate_starts, s.completed, s.failed, s.canceled, s.compensated,
      s.compensation_failed, s.activity_attempts, s.effects, s.deduplicated, s.lost_answers,
      s.timers_fired, s.early_fires_refused, s.operator_signals);
}

std::string messaging_stats_line(std::uint64_t seed, const MessagingStats& s) {
  return fmt::format(
      "sim: seed {} messaging: {} users, {} devices; {} sends acknowledged ({} retransmissions, "
      "{} answered as existing), {} deletes, {} acknowledgements; {} reads: {} completed, {} "
      "beyond the last seq, {} not a member, {} compensated after transient failures; {} changes "
      "received, {} connects, {} dropped connections, {} snapshot catch-ups; {} pushes ({} "
      "failed), {} emails ({} failed); {} deliveries: {} confirmed, {} read, {} expired (lifetime "
      "{} ms)\n",
      seed, s.users, s.devices, s.sends, s.retransmissions, s.existed_answers, s.deletes, s.acks,
      s.reads, s.reads_completed, s.reads_beyond, s.reads_not_member, s.reads_transient,
      s.changes_received, s.connects, s.dropped_connections, s.snapshot_catch_ups, s.pushes,
      s.push_failures, s.emails, s.email_failures, s.deliveries, s.deliveries_confirmed,
      s.deliveries_read, s.deliveries_expired, s.delivery_lifetime_ms);
}

std::string system_stats_line(std::uint64_t seed, const MessagingStats& s) {
  return fmt::format(
      "sim: seed {} system: {} frames sent, {} received, {} typing/presence, {} sessions closed by "
      "the gateway, {} reads answered timeout; {} pushes received, {} answered 429, {} permanent "
      "token errors ({} tokens died); {} clock jumps, {} leadership transfers asked; {} reading "
      "pauses, {} slow-consumer closes\n",
      seed, s.frames_sent, s.frames_received, s.ephemeral_frames, s.server_closes, s.read_timeouts,
      s.pushes_received, s.rate_limited_calls, s.permanent_token_errors, s.dead_tokens,
      s.clock_jumps, s.transfers, s.read_pauses, s.slow_consumer_closes);
}

std::string membership_stats_line(std::uint64_t seed, const MembershipStats& s) {
  return fmt::format(
      "sim: seed {} membership: {} changes asked, {} added, {} promoted, {} removed acknowledged, "
      "{} refused, {} unknown; {} committed; {} removed replicas stopped; {} campaigns of removed "
      "replicas\n",
      seed, s.asked, s.added, s.promoted, s.removed, s.refused, s.unknown, s.committed, s.retired,
      s.zombie_campaigns);
}

struct SeedResult {
  RunResult cluster;
  std::string scenario_stats;  // the scenario's own statistics line, if it has one
};

// Runs one seed of `scenario` (known) with `options`.
SeedResult run_scenario(std::string_view scenario, const ClusterOptions& options) {
  if (scenario == kWorkflowScenario) {
    WorkflowScenario run(options);
    const WorkflowRunResult r = run.run();
    return {r.cluster, workflow_stats_line(options.seed, r.workflow)};
  }
  if (scenario == kMessagingScenario) {
    MessagingScenario run(options);
    const MessagingRunResult r = run.run();
    return {r.cluster, messaging_stats_line(options.seed, r.messaging)};
  }
  if (scenario == kSystemScenario) {
    const MessagingRunResult r = run_system_scenario(options);
    return {r.cluster, messaging_stats_line(options.seed, r.messaging) +
                           system_stats_line(options.seed, r.messaging) +
                           membership_stats_line(options.seed, r.messaging.membership)};
  }
  if (scenario == kMembershipScenario) {
    MembershipScenario run(options);
    const MembershipRunResult r = run.run();
    return {r.cluster, membership_stats_line(options.seed, r.membership)};
  }
  SimCluster cluster(options);
  return {cluster.run(), {}};
}

// Seeds run and simulated time, for the closing line.
struct RunTotals {
  std::uint64_t seeds = 0;
  std::int64_t simulated_ms = 0;
};

// Runs one seed of `scenario` (known); true when it passed.
bool run_seed(std::string_view scenario, std::uint64_t seed, const RunFlags& flags,
              RunTotals& totals) {
  arm_abort_message(scenario, seed, flags);
  ClusterOptions options = scenario_cluster_options(scenario, seed, flags.verbose);
  options.segment_log = flags.segment_log;
  options.planted_bug = flags.planted_bug;
  if (flags.verbose) {
    fmt::print("sim: seed {}: {} replicas\n", seed, options.replicas);
  }
  const SeedResult run = run_scenario(scenario, options);
  const RunResult& result = run.cluster;
  ++totals.seeds;
  totals.simulated_ms += result.stats.end_ms;
  if (!result.ok) {
    fmt::print("sim: seed {} FAILED: {}\nreplay: herald sim --scenario {} --seed {}{}\n", seed,
               result.failure, scenario, seed, replay_flags(flags));
  } else if (flags.verbose) {
    print_stats(seed, options.replicas, result.stats);
    fmt::print("{}", run.scenario_stats);
  }
  std::fflush(stdout);
  return result.ok;
}

// Runs seed `seed` of the results scenario, adding a passing seed to `totals`; true when it
// passed.
bool run_results(std::uint64_t seed, bool verbose, bool segment_log, ResultsTotals& totals) {
  const RunFlags flags{.verbose = verbose, .segment_log = segment_log};
  arm_abort_message(kResultsScenario, seed, flags);
  const ResultsSeed r = run_results_seed(seed, verbose, segment_log);
  if (!r.failure.empty()) {
    fmt::print("sim: seed {} FAILED: {}\nreplay: herald sim --scenario {} --seed {}{}\n", seed,
               r.failure, kResultsScenario, seed, replay_flags(flags));
  } else {
    totals.add(r);
    if (verbose) {
      print_stats(seed, r.replicas, r.herald_run.stats);
      fmt::print("{}", results_seed_line(r));
    }
  }
  std::fflush(stdout);
  return r.failure.empty();
}

// The seeds a run goes through: --seed alone; --random-seeds draws --seeds fresh ones (printed
// first, so that a failure replays); else 1..--seeds.
std::vector<std::uint64_t> seeds_to_run(const SimOptions& opts) {
  if (opts.seed) {
    return {*opts.seed};
  }
  std::vector<std::uint64_t> seeds;
  std::random_device entropy;
  std::mt19937_64 draw((static_cast<std::uint64_t>(entropy()) << 32U) | entropy());
  constexpr std::uint64_t kMaxRandomSeed = 1'000'000'000;  // short enough to type back
  for (int i = 1; i <= opts.seeds; ++i) {
    seeds.push_back(opts.random_seeds ? 1 + draw() % kMaxRandomSeed
                                      : static_cast<std::uint64_t>(i));
  }
  if (opts.random_seeds) {
    fmt::print("sim: random seeds:");
    for (const std::uint64_t seed : seeds) {
      fmt::print(" {}", seed);
    }
    fmt::print("\n");
    std::fflush(stdout);
  }
  return seeds;
}

}  // namespace

bool is_known_scenario(std::string_view scenario) {
  return scenario == kRaftScenario || scenario == kWorkflowScenario ||
         scenario == kMessagingScenario || scenario == kMembershipScenario ||
         scenario == kSystemScenario;
}

ClusterOptions scenario_cluster_options(std::string_view scenario, std::uint64_t seed,
                                        bool verbose) {
  HERALD_ASSERT(is_known_scenario(scenario), "cluster options of an unknown scenario");
  if (scenario == kWorkflowScenario) {
    return workflow_cluster_options(seed, verbose);
  }
  if (scenario == kMessagingScenario) {
    return messaging_cluster_options(seed, verbose);
  }
  if (scenario == kMembershipScenario) {
    return membership_cluster_options(seed, verbose);
  }
  if (scenario == kSystemScenario) {
    return system_cluster_options(seed, verbose);
  }
  return raft_options(seed, verbose);
}

RunResult run_scenario_seed(std::string_view scenario, const ClusterOptions& options) {
  HERALD_ASSERT(is_known_scenario(scenario), "a seed of an unknown scenario");
  return run_scenario(scenario, options).cluster;
}

int run_sim(const SimOptions& opts) {
  if (!is_known_scenario(opts.scenario) && opts.scenario != kResultsScenario) {
    fmt::print(stderr, "sim: unknown scenario '{}' (known scenarios: {}, {}, {}, {}, {}, {})\n",
               opts.scenario, kRaftScenario, kWorkflowScenario, kMessagingScenario,
               kMembershipScenario, kSystemScenario, kResultsScenario);
    return 2;
  }
  if (opts.raft_log != "rocksdb" && opts.raft_log != "segments") {
    fmt::print(stderr, "sim: unknown raft log '{}' (rocksdb or segments)\n", opts.raft_log);
    return 2;
  }
  const std::optional<PlantedBug> planted = parse_planted_bug(opts.plant_bug);
  if (!planted) {
    fmt::print(stderr, "sim: unknown planted bug '{}' ({} or {})\n", opts.plant_bug,
               planted_bug_name(PlantedBug::kNone),
               planted_bug_name(PlantedBug::kCommitWithoutQuorum));
    return 2;
  }
  if (!opts.seed && opts.seeds < 1) {
    fmt::print(stderr, "sim: --seeds must be at least 1 (got {})\n", opts.seeds);
    return 2;
  }
  if (opts.budget_s && *opts.budget_s <= 0) {
    fmt::print(stderr, "sim: --budget-s must be positive (got {})\n", *opts.budget_s);
    return 2;
  }
  if (*planted != PlantedBug::kNone) {
    fmt::print(stderr,
               "sim: TEST ONLY: every replica runs with the planted bug {}; seeds are expected to "
               "fail\n",
               planted_bug_name(*planted));
  }
  const RunFlags flags{
      .verbose = opts.verbose, .segment_log = opts.raft_log == "segments", .planted_bug = *planted};
  const spdlog::level::level_enum saved_level = spdlog::get_level();
  spdlog::set_level(opts.verbose ? (std::getenv("HERALD_SIM_INFO") != nullptr ? spdlog::level::info
                                                                              : spdlog::level::warn)
                                 : spdlog::level::off);
  auto* const saved_handler = std::signal(SIGABRT, on_abort_signal);
  int passed = 0;
  int failed = 0;
  const bool segment_log = opts.raft_log == "segments";
  ResultsTotals totals;
  RunTotals run_totals;
  const SystemClock wall;
  const MonoMs started_ms = wall.mono_ms();
  for (const std::uint64_t seed : seeds_to_run(opts)) {
    if (opts.budget_s &&
        static_cast<double>(wall.mono_ms() - started_ms) >= *opts.budget_s * kMsPerSecond) {
      fmt::print("sim: the budget of {} s is spent: no more seeds\n", *opts.budget_s);
      break;
    }
    const bool ok = opts.scenario == kResultsScenario
                        ? run_results(seed, opts.verbose, segment_log, totals)
                        : run_seed(opts.scenario, seed, flags, run_totals);
    ++(ok ? passed : failed);
  }
  if (opts.scenario == kResultsScenario) {
    fmt::print("{}", results_table(totals));
  }
  std::signal(SIGABRT, saved_handler);
  spdlog::set_level(saved_level);
  if (run_totals.seeds > 0) {
    fmt::print("sim: {} seeds, {:.3f} simulated hours, in {:.1f} s\n", run_totals.seeds,
               static_cast<double>(run_totals.simulated_ms) / kMsPerHour,
               static_cast<double>(wall.mono_ms() - started_ms) / kMsPerSecond);
  }
  fmt::print("sim: {} passed, {} failed\n", passed, failed);
  std::fflush(stdout);
  return failed > 0 ? 1 : 0;
}

}  // namespace herald::sim
