#include "workflow/retry.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "base/random.h"

namespace herald::workflow {

namespace {

constexpr std::uint64_t kFnvOffsetBasis = 0xcbf29ce484222325ULL;
constexpr std::uint64_t kFnvPrime = 0x100000001b3ULL;

std::uint64_t fnv1a64(std::string_view bytes) {
  std::uint64_t h = kFnvOffsetBasis;
  for (const char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= kFnvPrime;
  }
  return h;
}

// base^exponent by squaring: only IEEE multiplications, so every host computes the same bits.
// Overflow saturates to +infinity, which callers compare against the cap.
double power(double base, std::uint64_t exponent) {
  double result = 1.0;
  while (exponent != 0) {
    if ((exponent & 1U) != 0) {
      result *= base;
    }
    base *= base;
    exponent >>= 1U;
  }
  return result;
}

Status validate_error_types(const workflowpb::RetryPolicy& policy) {
  if (static_cast<std::size_t>(policy.non_retryable_error_types_size()) >
      kMaxNonRetryableErrorTypes) {
    return Status::invalid_argument(fmt::format("{} non-retryable error types; the bound is {}",
                                                policy.non_retryable_error_types_size(),
                                                kMaxNonRetryableErrorTypes));
  }
  for (const auto& type : policy.non_retryable_error_types()) {
    if (type.empty() || type.size() > kMaxErrorTypeBytes) {
      return Status::invalid_argument(
          fmt::format("a non-retryable error type must have 1 to {} bytes", kMaxErrorTypeBytes));
    }
  }
  return Status::ok_status();
}

}  // namespace

Result<workflowpb::RetryPolicy> normalize_retry_policy(const workflowpb::RetryPolicy& policy) {
  workflowpb::RetryPolicy out = policy;
  if (out.initial_interval_ms() == 0) {
    out.set_initial_interval_ms(kDefaultInitialIntervalMs);
  }
  if (out.backoff_coefficient() == 0.0) {
    out.set_backoff_coefficient(kDefaultBackoffCoefficient);
  }
  if (!std::isfinite(out.backoff_coefficient()) || out.backoff_coefficient() < 1.0) {
    return Status::invalid_argument(
        fmt::format("backoff coefficient {} must be >= 1", out.backoff_coefficient()));
  }
  if (out.initial_interval_ms() > kMaxRetryIntervalMs) {
    return Status::invalid_argument(fmt::format("initial interval {} ms exceeds the bound {} ms",
                                                out.initial_interval_ms(), kMaxRetryIntervalMs));
  }
  if (out.maximum_interval_ms() == 0) {
    out.set_maximum_interval_ms(
        std::min(out.initial_interval_ms() * kDefaultMaximumIntervalFactor, kMaxRetryIntervalMs));
  }
  if (out.maximum_interval_ms() < out.initial_interval_ms()) {
    return Status::invalid_argument(
        fmt::format("maximum interval {} ms is below the initial interval {} ms",
                    out.maximum_interval_ms(), out.initial_interval_ms()));
  }
  if (out.maximum_interval_ms() > kMaxRetryIntervalMs) {
    return Status::invalid_argument(fmt::format("maximum interval {} ms exceeds the bound {} ms",
                                                out.maximum_interval_ms(), kMaxRetryIntervalMs));
  }
  if (out.maximum_retry_after_ms() > kMaxRetryIntervalMs) {
    return Status::invalid_argument(fmt::format("maximum retry-after {} ms exceeds the bound {} ms",
                                                out.maximum_retry_after_ms(), kMaxRetryIntervalMs));
  }
  HERALD_RETURN_IF_ERROR(validate_error_types(out));
  return out;
}

std::uint64_t interval_ms(const workflowpb::RetryPolicy& policy, std::uint32_t attempt) {
  HERALD_ASSERT(attempt >= 1, "attempts are 1-based");
  HERALD_ASSERT(policy.initial_interval_ms() > 0 &&
                    policy.maximum_interval_ms() >= policy.initial_interval_ms() &&
                    policy.backoff_coefficient() >= 1.0,
                "interval_ms() needs a normalized policy");
  const double maximum = static_cast<double>(policy.maximum_interval_ms());
  const double interval = static_cast<double>(policy.initial_interval_ms()) *
                          power(policy.backoff_coefficient(), attempt - 1U);
  if (!(interval < maximum)) {
    return policy.maximum_interval_ms();
  }
  return static_cast<std::uint64_t>(interval);
}

std::uint64_t jittered_delay_ms(const workflowpb::RetryPolicy& policy, std::uint32_t attempt,
                                std::uint64_t seed) {
  const std::uint64_t interval = interval_ms(policy, attempt);
  HERALD_ASSERT(interval <= kMaxRetryIntervalMs, "a normalized interval is bounded");
  Rng rng(seed);
  return rng.uniform(interval + 1);
}

std::uint64_t retry_delay_ms(const workflowpb::RetryPolicy& policy, std::uint32_t attempt,
                             std::uint64_t seed, std::uint64_t retry_after_ms) {
  const std::uint64_t jittered = jittered_delay_ms(policy, attempt, seed);
  const std::uint64_t hint = std::min(retry_after_ms, policy.maximum_retry_after_ms());
  return std::max(jittered, hint);
}

std::uint64_t retry_seed(std::string_view workflow_id, std::uint64_t run_id,
                         std::uint64_t activity_id, std::uint32_t attempt) {
  std::uint64_t seed = fnv1a64(workflow_id);
  for (const std::uint64_t part : {run_id, activity_id, std::uint64_t{attempt}}) {
    std::uint64_t state = seed ^ part;
    seed = splitmix64(state);
  }
  return seed;
}

bool should_retry(const workflowpb::RetryPolicy& policy, std::uint32_t attempts_made,
                  std::string_view error_type) {
  for (const auto& type : policy.non_retryable_error_types()) {
    if (type == error_type) {
      return false;
    }
  }
  return policy.maximum_attempts() == 0 || attempts_made < policy.maximum_attempts();
}

}  // namespace herald::workflow
