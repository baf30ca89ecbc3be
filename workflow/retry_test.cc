#include "workflow/retry.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <set>

namespace herald::workflow {
namespace {

workflowpb::RetryPolicy normalized(const workflowpb::RetryPolicy& policy) {
  auto r = normalize_retry_policy(policy);
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  return r.ok() ? *r : workflowpb::RetryPolicy();
}

workflowpb::RetryPolicy policy(std::uint64_t initial, double coefficient, std::uint64_t maximum) {
  workflowpb::RetryPolicy p;
  p.set_initial_interval_ms(initial);
  p.set_backoff_coefficient(coefficient);
  p.set_maximum_interval_ms(maximum);
  return normalized(p);
}

TEST(RetryPolicyTest, DefaultsAreTemporals) {
  const auto p = normalized({});
  EXPECT_EQ(p.initial_interval_ms(), 1000U);
  EXPECT_EQ(p.backoff_coefficient(), 2.0);
  EXPECT_EQ(p.maximum_interval_ms(), 100'000U);
  EXPECT_EQ(p.maximum_attempts(), 0U);
}

TEST(RetryPolicyTest, DefaultMaximumIsHundredTimesInitial) {
  workflowpb::RetryPolicy p;
  p.set_initial_interval_ms(250);
  EXPECT_EQ(normalized(p).maximum_interval_ms(), 25'000U);
}

TEST(RetryPolicyTest, InvalidPoliciesAreRejected) {
  workflowpb::RetryPolicy below_one;
  below_one.set_backoff_coefficient(0.5);
  workflowpb::RetryPolicy not_finite;
  not_finite.set_backoff_coefficient(std::numeric_limits<double>::quiet_NaN());
  workflowpb::RetryPolicy max_below_initial;
  max_below_initial.set_initial_interval_ms(5000);
  max_below_initial.set_maximum_interval_ms(1000);
  workflowpb::RetryPolicy too_long;
  too_long.set_initial_interval_ms(kMaxRetryIntervalMs + 1);
  workflowpb::RetryPolicy empty_type;
  empty_type.add_non_retryable_error_types("");
  for (const auto& p : {below_one, not_finite, max_below_initial, too_long, empty_type}) {
    EXPECT_EQ(normalize_retry_policy(p).status().code(), Code::kInvalidArgument)
        << p.ShortDebugString();
  }
}

TEST(RetryIntervalTest, FollowsTemporalsFormula) {
  const auto p = policy(1000, 2.0, 1'000'000);
  EXPECT_EQ(interval_ms(p, 1), 1000U);
  EXPECT_EQ(interval_ms(p, 2), 2000U);
  EXPECT_EQ(interval_ms(p, 3), 4000U);
  EXPECT_EQ(interval_ms(p, 4), 8000U);
}

TEST(RetryIntervalTest, FractionalCoefficient) {
  const auto p = policy(1000, 1.5, 1'000'000);
  EXPECT_EQ(interval_ms(p, 2), 1500U);
  EXPECT_EQ(interval_ms(p, 3), 2250U);
  EXPECT_EQ(interval_ms(p, 4), 3375U);
}

TEST(RetryIntervalTest, CoefficientOneKeepsTheInitialInterval) {
  const auto p = policy(700, 1.0, 10'000);
  for (std::uint32_t attempt : {1U, 2U, 50U, 4'000'000'000U}) {
    EXPECT_EQ(interval_ms(p, attempt), 700U);
  }
}

TEST(RetryIntervalTest, CappedAtMaximumWithoutOverflow) {
  const auto p = policy(1000, 2.0, 30'000);
  EXPECT_EQ(interval_ms(p, 5), 16'000U);
  EXPECT_EQ(interval_ms(p, 6), 30'000U);
  EXPECT_EQ(interval_ms(p, 1000), 30'000U);
  EXPECT_EQ(interval_ms(p, std::numeric_limits<std::uint32_t>::max()), 30'000U);
  const auto steep = policy(kMaxRetryIntervalMs, 1e300, kMaxRetryIntervalMs);
  EXPECT_EQ(interval_ms(steep, 3), kMaxRetryIntervalMs);
}

TEST(RetryJitterTest, AlwaysWithinZeroAndTheInterval) {
  const auto p = policy(100, 2.0, 5000);
  for (std::uint32_t attempt = 1; attempt <= 20; ++attempt) {
    for (std::uint64_t seed = 0; seed < 200; ++seed) {
      EXPECT_LE(jittered_delay_ms(p, attempt, seed), interval_ms(p, attempt));
    }
  }
  const auto tiny = policy(1, 1.0, 1);
  std::set<std::uint64_t> seen;
  for (std::uint64_t seed = 0; seed < 100; ++seed) {
    seen.insert(jittered_delay_ms(tiny, 1, seed));
  }
  EXPECT_EQ(seen, (std::set<std::uint64_t>{0, 1}));  // both ends of [0, interval] are reachable
}

TEST(RetryJitterTest, DeterministicForTheSameSeed) {
  const auto p = policy(1000, 2.0, 100'000);
  const std::uint64_t seed = retry_seed("order-7", 1, 3, 2);
  EXPECT_EQ(seed, retry_seed("order-7", 1, 3, 2));
  EXPECT_EQ(jittered_delay_ms(p, 2, seed), jittered_delay_ms(p, 2, seed));
}

TEST(RetryJitterTest, VariesAcrossAttemptsAndActivities) {
  const auto p = policy(100'000, 1.0, 100'000);
  std::set<std::uint64_t> delays;
  std::set<std::uint64_t> seeds;
  for (std::uint32_t attempt = 1; attempt <= 16; ++attempt) {
    seeds.insert(retry_seed("order-7", 1, 3, attempt));
    delays.insert(jittered_delay_ms(p, attempt, retry_seed("order-7", 1, 3, attempt)));
  }
  EXPECT_EQ(seeds.size(), 16U);
  EXPECT_GT(delays.size(), 12U);
  EXPECT_NE(retry_seed("order-7", 1, 3, 1), retry_seed("order-7", 1, 4, 1));
  EXPECT_NE(retry_seed("order-7", 1, 3, 1), retry_seed("order-7", 2, 3, 1));
  EXPECT_NE(retry_seed("order-7", 1, 3, 1), retry_seed("order-8", 1, 3, 1));
}

TEST(ShouldRetryTest, NonRetryableErrorTypeStopsRetries) {
  workflowpb::RetryPolicy p;
  p.add_non_retryable_error_types("BadDeviceToken");
  const auto n = normalized(p);
  EXPECT_FALSE(should_retry(n, 1, "BadDeviceToken"));
  EXPECT_TRUE(should_retry(n, 1, "baddevicetoken"));  // matched exactly
  EXPECT_TRUE(should_retry(n, 1, "BadDeviceToken2"));
  EXPECT_TRUE(should_retry(n, 1, "timeout.start_to_close"));
}

TEST(ShouldRetryTest, MaximumAttemptsCountsAttempts) {
  workflowpb::RetryPolicy p;
  p.set_maximum_attempts(3);
  const auto n = normalized(p);
  EXPECT_TRUE(should_retry(n, 1, "x"));
  EXPECT_TRUE(should_retry(n, 2, "x"));
  EXPECT_FALSE(should_retry(n, 3, "x"));  // three attempts made: no fourth
  workflowpb::RetryPolicy once;
  once.set_maximum_attempts(1);
  EXPECT_FALSE(should_retry(normalized(once), 1, "x"));
  EXPECT_TRUE(should_retry(normalized({}), 1'000'000, "x"));  // 0 = unlimited
}

}  // namespace
}  // namespace herald::workflow

namespace herald::workflow {
namespace {

TEST(RetryDelay, AHintWithinThePolicysMaximumIsALowerBound) {
  workflowpb::RetryPolicy p;
  p.set_initial_interval_ms(100);
  p.set_maximum_retry_after_ms(5'000);
  auto policy = normalize_retry_policy(p);
  ASSERT_TRUE(policy.ok());
  EXPECT_EQ(retry_delay_ms(*policy, 1, 7, 2'000), 2'000U);
  EXPECT_EQ(retry_delay_ms(*policy, 1, 7, 50'000), 5'000U);
  EXPECT_EQ(retry_delay_ms(*policy, 1, 7, 0), jittered_delay_ms(*policy, 1, 7));
}

TEST(RetryDelay, APolicyWithoutAMaximumIgnoresHints) {
  auto policy = normalize_retry_policy(workflowpb::RetryPolicy());
  ASSERT_TRUE(policy.ok());
  EXPECT_EQ(retry_delay_ms(*policy, 3, 9, 3'600'000), jittered_delay_ms(*policy, 3, 9));
}

TEST(RetryDelay, AMaximumRetryAfterBeyondTheIntervalBoundIsRefused) {
  workflowpb::RetryPolicy p;
  p.set_maximum_retry_after_ms(kMaxRetryIntervalMs + 1);
  EXPECT_EQ(normalize_retry_policy(p).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace herald::workflow
