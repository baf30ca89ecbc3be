#include "push/guard.h"

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace herald::push {
namespace {

using messaging::ProviderDone;
using messaging::ProviderResult;
using messaging::PushRequest;

// A provider whose answers the test gives later, one call at a time.
class HeldPush final : public messaging::PushProvider {
 public:
  void send(const PushRequest& request, ProviderDone done) override {
    requests.push_back(request);
    pending.push_back(std::move(done));
  }
  // Answers the oldest call still held.
  void answer(ProviderResult r) {
    ASSERT_FALSE(pending.empty());
    ProviderDone done = std::move(pending.front());
    pending.erase(pending.begin());
    done(std::move(r));
  }
  std::vector<PushRequest> requests;
  std::vector<ProviderDone> pending;
};

PushRequest request(std::string provider = messaging::kApnsProvider, std::uint32_t attempt = 1) {
  PushRequest r;
  r.device_id = "d1";
  r.provider = std::move(provider);
  r.attempt = attempt;
  return r;
}

ProviderResult unavailable() {
  return ProviderResult::failure(messaging::kPushUnavailable, "503");
}

// Sends one request through `guard` and returns its answer if it came at once (an answer given
// later lands in a slot of its own).
std::optional<ProviderResult> send(messaging::PushProvider& guard,
                                   const PushRequest& r = request()) {
  auto out = std::make_shared<std::optional<ProviderResult>>();
  guard.send(r, [out](ProviderResult result) { *out = std::move(result); });
  return *out;
}

class GuardTest : public ::testing::Test {
 protected:
  GuardOptions options() const {
    GuardOptions o;
    o.failure_threshold = 3;
    o.cooldown_ms = 10'000;
    return o;
  }
  // Makes `threshold` calls fail with a retryable error, which opens the breaker.
  void trip() {
    for (std::uint32_t i = 0; i < options().failure_threshold; ++i) {
      ASSERT_FALSE(send(guard_).has_value());
      inner_.answer(unavailable());
    }
  }

  ManualClock clock_{5'000};
  HeldPush inner_;
  PushGuard guard_{"apns", &inner_, &clock_, messaging::kPushUnavailable, options()};
};

TEST_F(GuardTest, TheBreakerOpensAfterConsecutiveRetryableFailuresAndFailsFastWithItsOpenTime) {
  trip();
  EXPECT_EQ(guard_.stats().state, BreakerState::kOpen);
  clock_.advance_ms(4'000);
  const auto refused = send(guard_);
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->error_type, messaging::kPushUnavailable);
  EXPECT_EQ(refused->retry_after_ms, 6'000);
  EXPECT_TRUE(refused->refused) << "a refusal says the service never saw the call";
  EXPECT_EQ(inner_.requests.size(), 3U);  // never reached the service
  EXPECT_EQ(guard_.stats().refused_open, 1U);
}

TEST_F(GuardTest, TheServicesOwnFailureIsNotARefusal) {
  auto answered = std::make_shared<std::optional<ProviderResult>>();
  guard_.send(request(), [answered](ProviderResult r) { *answered = std::move(r); });
  inner_.answer(unavailable());
  ASSERT_TRUE(answered->has_value());
  EXPECT_FALSE((*answered)->refused) << "the service saw it: its window runs";
}

TEST_F(GuardTest, PermanentAnswersAndSuccessesResetTheFailureCount) {
  for (int round = 0; round < 3; ++round) {
    (void)send(guard_);
    inner_.answer(unavailable());
    (void)send(guard_);
    inner_.answer(unavailable());
    (void)send(guard_);
    inner_.answer(ProviderResult::failure(messaging::kPushUnregistered, "410"));
  }
  EXPECT_EQ(guard_.stats().state, BreakerState::kClosed);
}

TEST_F(GuardTest, AfterTheCooldownOneProbeGoesThroughAndItsSuccessClosesTheBreaker) {
  trip();
  clock_.advance_ms(10'000);
  EXPECT_FALSE(send(guard_).has_value());  // the probe
  EXPECT_EQ(guard_.stats().state, BreakerState::kHalfOpen);
  const auto second = send(guard_);  // while the probe is out
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->retry_after_ms, kBusyRetryAfterMs);
  inner_.answer(ProviderResult::success());
  EXPECT_EQ(guard_.stats().state, BreakerState::kClosed);
  EXPECT_FALSE(send(guard_).has_value());
}

TEST_F(GuardTest, AFailedProbeOpensTheBreakerForAnotherCooldown) {
  trip();
  clock_.advance_ms(10'000);
  EXPECT_FALSE(send(guard_).has_value());
  inner_.answer(unavailable());
  EXPECT_EQ(guard_.stats().state, BreakerState::kOpen);
  EXPECT_EQ(guard_.stats().times_opened, 2U);
  const auto refused = send(guard_);
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->retry_after_ms, 10'000);
}

TEST(GuardBounds, CallsBeyondTheConcurrencyBoundFailFast) {
  ManualClock clock;
  HeldPush inner;
  GuardOptions o;
  o.max_in_flight = 2;
  PushGuard guard("fcm", &inner, &clock, messaging::kPushUnavailable, o);
  EXPECT_FALSE(send(guard).has_value());
  EXPECT_FALSE(send(guard).has_value());
  const auto refused = send(guard);
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->retry_after_ms, kBusyRetryAfterMs);
  EXPECT_TRUE(refused->refused);
  EXPECT_EQ(guard.stats().refused_busy, 1U);
  inner.answer(ProviderResult::success());
  EXPECT_FALSE(send(guard).has_value());  // room again
}

TEST(GuardBounds, RetriesBeyondTheBudgetFailFastWhileFirstAttemptsPass) {
  ManualClock clock;
  HeldPush inner;
  GuardOptions o;
  o.retry_budget_max = 2;
  o.retry_budget_ratio = 0;
  o.retry_budget_per_second = 1;
  PushGuard guard("apns", &inner, &clock, messaging::kPushUnavailable, o);
  EXPECT_FALSE(send(guard, request(messaging::kApnsProvider, 2)).has_value());
  EXPECT_FALSE(send(guard, request(messaging::kApnsProvider, 3)).has_value());
  const auto refused = send(guard, request(messaging::kApnsProvider, 2));
  ASSERT_TRUE(refused.has_value());
  EXPECT_TRUE(refused->refused);
  EXPECT_EQ(guard.stats().refused_budget, 1U);
  EXPECT_FALSE(send(guard, request(messaging::kApnsProvider, 1)).has_value());
  clock.advance_ms(1'000);  // one token back
  EXPECT_FALSE(send(guard, request(messaging::kApnsProvider, 2)).has_value());
}

TEST(PushRouting, EachPlatformHasItsOwnGuardSoAnOpenApnsBreakerLeavesFcmAlone) {
  ManualClock clock;
  HeldPush apns;
  HeldPush fcm;
  GuardOptions o;
  o.failure_threshold = 1;
  PushGuard apns_guard("apns", &apns, &clock, messaging::kPushUnavailable, o);
  PushGuard fcm_guard("fcm", &fcm, &clock, messaging::kPushUnavailable, o);
  PushRouter router(
      {{messaging::kApnsProvider, &apns_guard}, {messaging::kFcmProvider, &fcm_guard}});
  EXPECT_FALSE(send(router, request(messaging::kApnsProvider)).has_value());
  apns.answer(unavailable());
  EXPECT_TRUE(send(router, request(messaging::kApnsProvider)).has_value());  // open
  EXPECT_FALSE(send(router, request(messaging::kFcmProvider)).has_value());
  ASSERT_EQ(fcm.requests.size(), 1U);
  fcm.answer(ProviderResult::success());
  EXPECT_EQ(fcm_guard.stats().state, BreakerState::kClosed);
}

TEST(PushRouting, APlatformWithoutAProviderFailsWithNoProviderAndIsNamedAtStart) {
  HeldPush fcm;
  PushRouter router({{messaging::kFcmProvider, &fcm}});
  const auto answer = send(router, request(messaging::kApnsProvider));
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(answer->error_type, messaging::kPushNoProvider);
  EXPECT_EQ(answer->error_message, "no provider configured for \"apns\"");
  EXPECT_TRUE(fcm.requests.empty());
  EXPECT_EQ(router.unconfigured({"apns", "fcm", "webpush"}),
            (std::vector<std::string>{"apns", "webpush"}));
}

}  // namespace
}  // namespace herald::push
