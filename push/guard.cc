#include "push/guard.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>
#include <utility>

#include "base/assert.h"

namespace herald::push {

namespace {

constexpr double kMsPerSecond = 1000.0;

}  // namespace

std::string_view breaker_state_name(BreakerState state) {
  switch (state) {
    case BreakerState::kClosed: return "closed";
    case BreakerState::kOpen: return "open";
    case BreakerState::kHalfOpen: return "half-open";
  }
  return "unknown";
}

template <typename Request, typename Interface>
Guard<Request, Interface>::Guard(std::string name, Interface* inner, const Clock* clock,
                                 std::string unavailable_error_type, GuardOptions options)
    : name_(std::move(name)),
      inner_(inner),
      clock_(clock),
      unavailable_(std::move(unavailable_error_type)),
      options_(options) {
  HERALD_ASSERT(inner_ != nullptr && clock_ != nullptr, "a guard wraps a provider and a clock");
  HERALD_ASSERT(options_.max_in_flight > 0 && options_.failure_threshold > 0 &&
                    options_.cooldown_ms > 0 && options_.retry_budget_ratio >= 0 &&
                    options_.retry_budget_per_second >= 0 && options_.retry_budget_max >= 0,
                "guard options within sense");
  budget_ = options_.retry_budget_max;
  budget_refilled_ms_ = clock_->mono_ms();
}

template <typename Request, typename Interface>
messaging::ProviderResult Guard<Request, Interface>::refusal(std::string message,
                                                             std::int64_t retry_after_ms) const {
  messaging::ProviderResult r =
      messaging::ProviderResult::failure(unavailable_, std::move(message));
  r.retry_after_ms = std::max<std::int64_t>(retry_after_ms, 1);
  r.refused = true;  // the service never saw it: the workflow's window does not run meanwhile
  return r;
}

template <typename Request, typename Interface>
void Guard<Request, Interface>::refill_locked(MonoMs now_ms) {
  const MonoMs elapsed_ms = std::max<MonoMs>(0, now_ms - budget_refilled_ms_);
  budget_refilled_ms_ = now_ms;
  budget_ = std::min(
      options_.retry_budget_max,
      budget_ + options_.retry_budget_per_second * static_cast<double>(elapsed_ms) / kMsPerSecond);
}

template <typename Request, typename Interface>
std::optional<messaging::ProviderResult> Guard<Request, Interface>::admit_locked(
    const Request& request, MonoMs now_ms) {
  if (state_ == BreakerState::kOpen && now_ms >= open_until_ms_) {
    state_ = BreakerState::kHalfOpen;
    probe_out_ = false;
  }
  if (state_ == BreakerState::kOpen) {
    ++stats_.refused_open;
    return refusal(fmt::format("{}: circuit open for another {} ms after {} consecutive failures",
                               name_, open_until_ms_ - now_ms, consecutive_failures_),
                   open_until_ms_ - now_ms);
  }
  if (state_ == BreakerState::kHalfOpen && probe_out_) {
    ++stats_.refused_open;
    return refusal(fmt::format("{}: circuit half-open, its probe is out", name_),
                   kBusyRetryAfterMs);
  }
  if (stats_.in_flight >= options_.max_in_flight) {
    ++stats_.refused_busy;
    return refusal(fmt::format("{}: {} calls in flight, the bound", name_, stats_.in_flight),
                   kBusyRetryAfterMs);
  }
  refill_locked(now_ms);
  if (request.attempt > 1) {
    if (budget_ < 1.0) {
      ++stats_.refused_budget;
      return refusal(fmt::format("{}: the retry budget is spent", name_), kBusyRetryAfterMs);
    }
    budget_ -= 1.0;
  } else {
    budget_ = std::min(options_.retry_budget_max, budget_ + options_.retry_budget_ratio);
  }
  return std::nullopt;
}

template <typename Request, typename Interface>
void Guard<Request, Interface>::send(const Request& request, messaging::ProviderDone done) {
  bool probe = false;
  std::optional<messaging::ProviderResult> refused;
  {
    std::lock_guard lock(mu_);
    refused = admit_locked(request, clock_->mono_ms());
    if (!refused) {
      probe = state_ == BreakerState::kHalfOpen;
      probe_out_ = probe_out_ || probe;
      ++stats_.in_flight;
      ++stats_.sent;
    }
  }
  if (refused) {
    done(std::move(*refused));  // outside the lock: done may call back into the guard
    return;
  }
  inner_->send(request, [this, probe, done = std::move(done)](messaging::ProviderResult r) {
    on_answer(r, probe);
    done(std::move(r));
  });
}

template <typename Request, typename Interface>
void Guard<Request, Interface>::on_answer(const messaging::ProviderResult& result, bool probe) {
  const bool retryable_failure =
      !result.ok && (result.error_type.empty() || result.error_type == unavailable_);
  std::lock_guard lock(mu_);
  --stats_.in_flight;
  if (probe) {
    probe_out_ = false;
  }
  if (!retryable_failure) {
    consecutive_failures_ = 0;
    if (probe && state_ == BreakerState::kHalfOpen) {
      state_ = BreakerState::kClosed;
      SPDLOG_INFO("{}: circuit closed, the probe was answered", name_);
    }
    return;
  }
  ++consecutive_failures_;
  const bool reopen = probe && state_ == BreakerState::kHalfOpen;
  const bool trip =
      state_ == BreakerState::kClosed && consecutive_failures_ >= options_.failure_threshold;
  if (reopen || trip) {
    state_ = BreakerState::kOpen;
    open_until_ms_ = clock_->mono_ms() + options_.cooldown_ms;
    ++stats_.times_opened;
    SPDLOG_WARN("{}: circuit open for {} ms after {} consecutive failures (last: {})", name_,
                options_.cooldown_ms, consecutive_failures_, result.error_message);
  }
}

template <typename Request, typename Interface>
GuardStats Guard<Request, Interface>::stats() const {
  std::lock_guard lock(mu_);
  GuardStats s = stats_;
  s.state = state_;
  return s;
}

template class Guard<messaging::PushRequest, messaging::PushProvider>;
template class Guard<messaging::EmailRequest, messaging::EmailProvider>;

PushRouter::PushRouter(std::map<std::string, messaging::PushProvider*, std::less<>> providers)
    : providers_(std::move(providers)) {
  for (const auto& [name, provider] : providers_) {
    HERALD_ASSERT(provider != nullptr, "a configured push provider exists");
  }
}

void PushRouter::send(const messaging::PushRequest& request, messaging::ProviderDone done) {
  const auto it = providers_.find(request.provider);
  if (it == providers_.end()) {
    done(messaging::ProviderResult::failure(
        messaging::kPushNoProvider,
        fmt::format("no provider configured for \"{}\"", request.provider)));
    return;
  }
  it->second->send(request, std::move(done));
}

std::vector<std::string> PushRouter::unconfigured(const std::vector<std::string>& platforms) const {
  std::vector<std::string> out;
  for (const std::string& name : platforms) {
    if (!providers_.contains(name)) {
      out.push_back(name);
    }
  }
  return out;
}

}  // namespace herald::push
