// The results scenario: Herald's messaging against the stateless-queue design it replaces, on the
// same seeds, traffic and faults, measured the same way (docs/results.md).
//
// For each seed it runs the messaging scenario (sim/messaging_scenario.h) — every one of its checks
// still applies — with provider timeouts added (kResultsProviderTimeoutChance) and an observer
// that feeds a ResultsLedger (sim/results_ledger.h)
// and records the run as a WorkloadTrace: the world, the devices' connections, sends and reads,
// the replicas' crashes and restarts, and the seed's loss rate between nodes. It then replays the
// trace through the baseline (sim/stateless_baseline.h) twice, once with a broker's queue that
// survives crashes and once with an in-process queue per node, each into a ledger of its own.
//
// Units of delivery work, for the time from a crash to the first resumed delivery: on Herald's
// side a delivery workflow whose push the crashed replica incarnation had sent and not seen
// answered (the leader runs every activity; a new leader runs the attempt again); on the
// baseline's, the jobs the crashed worker held (and, with an in-process queue, every job queued
// in it).
//
// Invariants a seed must keep (else it fails, with a replay line): the messaging scenario's own
// checks; Herald loses no message and leaves no device's read state behind at the end; every
// design's counts are consistent (ResultFigures::check_consistent); the baseline accounts for
// every job it enqueued (done, dropped, lost or left); every design saw the same crashes; the
// baseline accepted no message Herald's run did not.
//
// Thread-safety: none; a run is single-threaded and deterministic per seed.
#pragma once

#include <cstdint>
#include <string>

#include "sim/cluster.h"
#include "sim/results_ledger.h"
#include "sim/stateless_baseline.h"

namespace herald::sim {

// The share of push and email calls that time out in this scenario (both designs): answered with
// a transient failure after kSimProviderTimeoutMs, longer than the baseline's visibility timeout.
inline constexpr double kResultsProviderTimeoutChance = 0.05;

struct ResultsSeed {
  std::uint64_t seed = 0;
  int replicas = 0;
  RunResult herald_run;  // the messaging scenario's verdict and statistics
  ResultFigures herald;
  ResultFigures broker;      // the baseline with a broker's queue
  ResultFigures in_process;  // the baseline with an in-process queue per node
  BaselineStats broker_stats;
  BaselineStats in_process_stats;
  std::string failure;  // empty when every invariant held
};

// Runs seed `seed` of the results scenario. segment_log: as ClusterOptions::segment_log.
[[nodiscard]] ResultsSeed run_results_seed(std::uint64_t seed, bool verbose, bool segment_log);

// Passing seeds, summed.
struct ResultsTotals {
  std::uint64_t seeds = 0;
  ResultFigures herald;
  ResultFigures broker;
  ResultFigures in_process;
  BaselineStats broker_stats;
  BaselineStats in_process_stats;
  void add(const ResultsSeed& seed);
};

// One line of a seed's figures, for verbose runs.
[[nodiscard]] std::string results_seed_line(const ResultsSeed& seed);
// The side-by-side table (Markdown) of the totals, with the baseline's own counters below it.
[[nodiscard]] std::string results_table(const ResultsTotals& totals);

}  // namespace herald::sim
