// Isolation per provider: a guard around one PushProvider or EmailProvider, and a router that
// sends each push to the provider configured for its platform.
//
// A Guard wraps one provider (one service: APNs, FCM, Web Push, SMTP) with three limits, so that a
// failing service cannot take the others down with it (docs/push.md, "Isolation"):
//  - a concurrency bound: at most max_in_flight calls outstanding; beyond it a call fails at once;
//  - a circuit breaker: after failure_threshold consecutive retryable failures the breaker opens
//    and every call fails at once for cooldown_ms; then one call is let through as a probe
//    (half-open): its success (or any answer that is not a retryable failure) closes the breaker,
//    its retryable failure opens it for another cool-down;
//  - a retry budget: a call whose request is a retry (attempt > 1) spends one token; tokens come
//    from first attempts (retry_budget_ratio each) and from time (retry_budget_per_second), up to
//    retry_budget_max; a retry with no token fails at once.
// A call refused by a limit never reaches the service: it fails with the guard's unavailable error
// type (push.unavailable / email.unavailable, so the workflow retries it), ProviderResult::refused
// set, and retry_after_ms = the time until the limit may let it through (the breaker's remaining
// open time, or kBusyRetryAfterMs). The delivery workflow honours the hint, and a refused attempt
// is reported as not dispatched, so the wait does not use up the activity's retry window: refused
// attempts wait durably in their workflows and nothing is dropped while the breaker is open
// (messaging/delivery.h, kProviderMaxRefusedWaitMs).
//
// Retryable failures, for the breaker, are the ones the workflow retries: the unavailable error
// type or an empty one. Permanent answers (a dead token, a rejected request) show the service is
// up and count as successes.
//
// Thread-safety: send() may be called from any thread; the inner provider's completion may run on
// any thread (or inside send()). No lock is held while calling the inner provider or `done`.
// The inner provider and the clock are borrowed and must outlive the guard; the guard must outlive
// every call's completion.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "messaging/providers.h"

namespace herald::push {

// Calls one provider may have outstanding at once.
inline constexpr std::size_t kGuardMaxInFlight = 1'000;
// Consecutive retryable failures that open a breaker.
inline constexpr std::uint32_t kBreakerFailureThreshold = 5;
// How long an open breaker refuses every call before it lets one probe through, in ms.
inline constexpr std::int64_t kBreakerCooldownMs = 30'000;
// The retry hint of a call refused by the concurrency bound, the retry budget or a half-open
// breaker whose probe is out, in ms.
inline constexpr std::int64_t kBusyRetryAfterMs = 1'000;
// Retry budget: tokens a first attempt adds, tokens added per second whatever the traffic, and
// the most tokens kept (a burst of retries after a quiet spell).
inline constexpr double kRetryBudgetRatio = 0.2;
inline constexpr double kRetryBudgetPerSecond = 10.0;
inline constexpr double kRetryBudgetMax = 100.0;

struct GuardOptions {
  std::size_t max_in_flight = kGuardMaxInFlight;
  std::uint32_t failure_threshold = kBreakerFailureThreshold;
  std::int64_t cooldown_ms = kBreakerCooldownMs;
  double retry_budget_ratio = kRetryBudgetRatio;
  double retry_budget_per_second = kRetryBudgetPerSecond;
  double retry_budget_max = kRetryBudgetMax;
};

enum class BreakerState : std::uint8_t { kClosed, kOpen, kHalfOpen };

[[nodiscard]] std::string_view breaker_state_name(BreakerState state);

// Counters since the guard was made (for logs and tests).
struct GuardStats {
  BreakerState state = BreakerState::kClosed;
  std::size_t in_flight = 0;
  std::uint64_t sent = 0;            // calls passed to the provider
  std::uint64_t refused_open = 0;    // by the breaker (open, or half-open with its probe out)
  std::uint64_t refused_busy = 0;    // by the concurrency bound
  std::uint64_t refused_budget = 0;  // by the retry budget
  std::uint64_t times_opened = 0;
};

template <typename Request, typename Interface>
class Guard final : public Interface {
 public:
  // `name` names the service in refusals and logs (e.g. "apns"); `unavailable_error_type` is the
  // retryable error type of its kind (messaging::kPushUnavailable or kEmailUnavailable).
  // Preconditions (asserted): inner and clock non-null, options within sense (max_in_flight and
  // failure_threshold > 0, cooldown_ms > 0, budget values >= 0).
  Guard(std::string name, Interface* inner, const Clock* clock, std::string unavailable_error_type,
        GuardOptions options = {});
  Guard(const Guard&) = delete;
  Guard& operator=(const Guard&) = delete;

  void send(const Request& request, messaging::ProviderDone done) override;

  [[nodiscard]] GuardStats stats() const;

 private:
  // Why a call is refused, or empty when it may go: decided and accounted under mu_.
  [[nodiscard]] std::optional<messaging::ProviderResult> admit_locked(const Request& request,
                                                                      MonoMs now_ms);
  void refill_locked(MonoMs now_ms);
  void on_answer(const messaging::ProviderResult& result, bool probe);
  [[nodiscard]] messaging::ProviderResult refusal(std::string message,
                                                  std::int64_t retry_after_ms) const;

  const std::string name_;
  Interface* const inner_;
  const Clock* const clock_;
  const std::string unavailable_;
  const GuardOptions options_;

  mutable std::mutex mu_;
  BreakerState state_ = BreakerState::kClosed;  // guarded by mu_
  std::uint32_t consecutive_failures_ = 0;      // guarded by mu_
  MonoMs open_until_ms_ = 0;                    // guarded by mu_; while kOpen
  bool probe_out_ = false;                      // guarded by mu_; while kHalfOpen
  double budget_ = 0;                           // guarded by mu_; retry tokens
  MonoMs budget_refilled_ms_ = 0;               // guarded by mu_
  GuardStats stats_;                            // guarded by mu_ (state mirrored on read)
};

using PushGuard = Guard<messaging::PushRequest, messaging::PushProvider>;
using EmailGuard = Guard<messaging::EmailRequest, messaging::EmailProvider>;

extern template class Guard<messaging::PushRequest, messaging::PushProvider>;
extern template class Guard<messaging::EmailRequest, messaging::EmailProvider>;

// Sends each push to the provider configured for PushRequest::provider ("apns", "fcm", ...).
// A request for a provider name with none configured fails at once with
// messaging::kPushNoProvider ("no provider configured for <name>"): nothing is dispatched, and the
// delivery timeline says so. Providers are borrowed and must outlive the router.
// Thread-safety: immutable after construction; send() from any thread.
class PushRouter final : public messaging::PushProvider {
 public:
  explicit PushRouter(std::map<std::string, messaging::PushProvider*, std::less<>> providers);

  void send(const messaging::PushRequest& request, messaging::ProviderDone done) override;

  // The names among `platforms` with no provider configured, in the order given (the node logs
  // them at start).
  [[nodiscard]] std::vector<std::string> unconfigured(
      const std::vector<std::string>& platforms) const;

 private:
  std::map<std::string, messaging::PushProvider*, std::less<>> providers_;
};

}  // namespace herald::push
