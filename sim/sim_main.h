// run_sim: the entry point of `herald sim`, Herald's deterministic simulation runs.
//
// Scenario "raft": for each seed, a SimCluster (sim/cluster.h) of 3 replicas (odd seeds) or 5
// (even seeds) runs client traffic under a fault schedule drawn from the seed, checking Raft's
// safety properties after every event, convergence at the end and the linearizability of the
// clients' history. Seeds 1..opts.seeds are run, or only opts.seed when it is set.
//
// Scenario "workflow": for each seed, a WorkflowScenario (sim/workflow_scenario.h) runs workflows
// and sagas with flaky activities on the same simulated cluster and faults, with the same seeds,
// replica counts and output contract.
//
// Scenario "messaging": for each seed, a MessagingScenario (sim/messaging_scenario.h) runs the
// messaging domain — users, devices coming and going, sends, acknowledgements, delivery workflows
// and read-sync sagas — on the same simulated cluster and faults, with the same seeds, replica
// counts and output contract.
//
// Scenario "results": for each seed, the messaging scenario as above, then the stateless-queue
// baseline replaying its traffic and faults (sim/results_scenario.h); after the seeds, a table of
// both designs' figures over the passing seeds (docs/results.md).
//
// Output (stdout): for each failing seed
//   sim: seed S FAILED: <reason>
//   replay: herald sim --scenario <scenario> --seed S
// then the summary line `sim: N passed, M failed`. With verbose, every seed's statistics and
// the fault schedule as it unfolds. A seed replays exactly: same seed, same run.
//
// With raft_log "segments", every scenario runs with the replicas' raft logs in segment files; a
// failing seed's replay line then carries --raft-log segments.
//
// TEST ONLY: with plant_bug other than "none", every replica runs with that bug planted
// (sim::PlantedBug; docs/reliability.md, "A planted bug"), and seeds are expected to fail; a
// failing seed's replay line then carries --plant-bug NAME.
//
// Returns 0 when every seed passed, 1 when some failed, 2 for an unknown scenario or bad options.
// Thread-safety: runs on the calling thread; not reentrant (it sets the global log level).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "sim/cluster.h"

namespace herald::sim {

struct SimOptions {
  std::string scenario = "raft";
  int seeds = 100;
  std::optional<std::uint64_t> seed;  // run only this seed
  bool verbose = false;
  // Where the replicas keep their raft log: "rocksdb" (in the engine) or "segments" (segment
  // files on a simulated file system; ClusterOptions::segment_log).
  std::string raft_log = "rocksdb";
  // TEST ONLY: the bug planted in every replica, by name (sim::parse_planted_bug); "none" runs
  // Herald as it ships.
  std::string plant_bug = "none";
  // Run --seeds fresh seeds drawn at random (printed before they run) instead of 1..--seeds.
  bool random_seeds = false;
  // Start no new seed once this many seconds of real time have passed (--seeds bounds the run
  // too); unset: no bound.
  std::optional<double> budget_s;
};

[[nodiscard]] int run_sim(const SimOptions& opts);

// The known scenarios' names: "raft", "workflow", "messaging", "membership", "system".
[[nodiscard]] bool is_known_scenario(std::string_view scenario);
// The cluster options `herald sim` runs seed `seed` of the known `scenario` with.
[[nodiscard]] ClusterOptions scenario_cluster_options(std::string_view scenario, std::uint64_t seed,
                                                      bool verbose);
// Runs one seed of the known `scenario` with `options` (as `herald sim` does, without printing).
[[nodiscard]] RunResult run_scenario_seed(std::string_view scenario, const ClusterOptions& options);

}  // namespace herald::sim
