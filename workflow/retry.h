// Retry: Temporal's retry policy for activities, plus seeded full jitter.
//
// interval(n) = min(initial * coefficient^(n-1), maximum) for attempt n >= 1 (so the first retry
// waits about `initial`); the delay actually used is uniform in [0, interval(n)], drawn from a
// seed derived from (workflow id, run id, activity id, attempt), so every replica that applies
// the same failure draws the same delay. Everything here is pure and deterministic: the power is
// computed by repeated IEEE multiplication, never by the math library, whose rounding may differ
// between hosts. Thread-safety: plain functions over values.
#pragma once

#include <cstdint>
#include <string_view>

#include "base/status.h"
#include "workflow/workflow.pb.h"

namespace herald::workflow {

inline constexpr std::uint64_t kDefaultInitialIntervalMs = 1000;
inline constexpr double kDefaultBackoffCoefficient = 2.0;
// The default maximum interval is this many times the initial interval.
inline constexpr std::uint64_t kDefaultMaximumIntervalFactor = 100;
// No interval (initial or maximum) may exceed this: it keeps due times far from overflow.
inline constexpr std::uint64_t kMaxRetryIntervalMs = 365ULL * 24 * 3600 * 1000;
inline constexpr std::size_t kMaxNonRetryableErrorTypes = 64;
inline constexpr std::size_t kMaxErrorTypeBytes = 256;

// The policy with Temporal's defaults filled in (initial 1000 ms, coefficient 2.0, maximum
// 100 x initial, unlimited attempts). kInvalidArgument when the coefficient is below 1 or not
// finite, the maximum is below the initial interval, an interval or
// maximum_retry_after_ms exceeds kMaxRetryIntervalMs, the non-retryable list is longer than
// kMaxNonRetryableErrorTypes or holds an empty or over-long (kMaxErrorTypeBytes) type.
[[nodiscard]] Result<workflowpb::RetryPolicy> normalize_retry_policy(
    const workflowpb::RetryPolicy& policy);

// min(initial * coefficient^(attempt-1), maximum), without overflow.
// Preconditions (asserted): `policy` is normalized; attempt >= 1.
[[nodiscard]] std::uint64_t interval_ms(const workflowpb::RetryPolicy& policy,
                                        std::uint32_t attempt);

// Uniform in [0, interval_ms(policy, attempt)], a pure function of its arguments.
[[nodiscard]] std::uint64_t jittered_delay_ms(const workflowpb::RetryPolicy& policy,
                                              std::uint32_t attempt, std::uint64_t seed);

// The jitter seed of one attempt: FNV-1a over the workflow id, mixed with the run id, the
// activity id and the attempt through splitmix64.
[[nodiscard]] std::uint64_t retry_seed(std::string_view workflow_id, std::uint64_t run_id,
                                       std::uint64_t activity_id, std::uint32_t attempt);

// The delay before the retry of failed attempt `attempt`: jittered_delay_ms(), held back to at
// least min(retry_after_ms, policy.maximum_retry_after_ms) when the failure gave a hint
// (retry_after_ms > 0) and the policy honours hints (maximum_retry_after_ms > 0).
// Preconditions as jittered_delay_ms().
[[nodiscard]] std::uint64_t retry_delay_ms(const workflowpb::RetryPolicy& policy,
                                           std::uint32_t attempt, std::uint64_t seed,
                                           std::uint64_t retry_after_ms);

// Whether attempt number `attempts_made` (1-based: the attempts made so far, the failed one
// included) may be followed by another: false for a non-retryable error type (matched exactly)
// and once maximum_attempts (0 = unlimited) attempts have been made.
[[nodiscard]] bool should_retry(const workflowpb::RetryPolicy& policy, std::uint32_t attempts_made,
                                std::string_view error_type);

}  // namespace herald::workflow
