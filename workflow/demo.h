// Demo workflow types: the traffic of the quick start and of the process-level tests.
//
// "demo.pipeline": input is the number of steps N (decimal, 1..kMaxDemoSteps; empty = 3). It runs
// activity "demo.effect" for step 1, waits kDemoPauseMs on a durable timer, runs step 2, and so
// on, then completes with result "N". States: "running" (an activity is out), "pausing" (a timer
// is pending), then the run closes. Any activity failure after its retries fails the run.
#pragma once

#include <cstdint>
#include <memory>

#include "workflow/definition.h"

namespace herald::workflow {

inline constexpr char kDemoPipelineType[] = "demo.pipeline";
inline constexpr char kDemoEffectActivity[] = "demo.effect";
inline constexpr std::uint32_t kMaxDemoSteps = 100;
inline constexpr std::int64_t kDemoPauseMs = 20;

[[nodiscard]] std::shared_ptr<const WorkflowType> make_demo_pipeline_type();

}  // namespace herald::workflow
