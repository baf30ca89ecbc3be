// Demo workflow types: the traffic of the quick start and of the process-level tests.
//
// "demo.pipeline": input is the number of steps N (decimal, 1..kMaxDemoSteps; empty = 3). It runs
// activity "demo.effect" for step 1, waits kDemoPauseMs on a durable timer, runs step 2, and so
// on, then completes with result "N". States: "running" (an activity is out), "pausing" (a timer
// is pending), then the run closes. Any activity failure after its retries fails the run.
//
// "demo.sleep": one durable USER timer, then done. Input "D" (decimal ms, 0..kMaxDemoSleepMs)
// sleeps D ms from the start's stamped time; input "@T" sleeps until wall time T (ms since the
// epoch; a T already past fires at once), so many workflows started over a while can share one
// due time. States: "sleeping" (the timer "wake" is pending), then "done" and the run completes
// with result "woke". A bad input fails the run (error type "invalid_input").
//
// "demo.inbox": a long-lived workflow that counts signals. It starts in state "even" with data
// "0"; every signal adds one to the count (data, decimal) and flips the state between "even" and
// "odd", so each signal is a visible state transition. A cancel request completes the run with
// the count as result. It never closes by itself; the history limit bounds it to
// kMaxHistoryEvents - 3 signals per run.
#pragma once

#include <cstdint>
#include <memory>

#include "workflow/definition.h"

namespace herald::workflow {

inline constexpr char kDemoPipelineType[] = "demo.pipeline";
inline constexpr char kDemoEffectActivity[] = "demo.effect";
inline constexpr std::uint32_t kMaxDemoSteps = 100;
inline constexpr std::int64_t kDemoPauseMs = 20;

inline constexpr char kDemoSleepType[] = "demo.sleep";
inline constexpr char kDemoSleepTimer[] = "wake";
inline constexpr std::int64_t kMaxDemoSleepMs = 7LL * 24 * 3600 * 1000;  // a week

inline constexpr char kDemoInboxType[] = "demo.inbox";

[[nodiscard]] std::shared_ptr<const WorkflowType> make_demo_pipeline_type();
[[nodiscard]] std::shared_ptr<const WorkflowType> make_demo_sleep_type();
[[nodiscard]] std::shared_ptr<const WorkflowType> make_demo_inbox_type();

}  // namespace herald::workflow
