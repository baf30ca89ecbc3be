#include "server/rate_limiter.h"

#include <algorithm>
#include <cmath>

#include "base/assert.h"

namespace herald::server {

namespace {
constexpr double kMsPerSecond = 1000.0;
// Rounding slack for wait_ms: a wait computed as 1.0000001 ms is 1 ms, not 2.
constexpr double kWaitRoundingMs = 1e-6;
}  // namespace

TokenBucket::TokenBucket(const RateLimit& limit, std::int64_t now_ms)
    : tokens_(limit.burst), updated_ms_(now_ms) {}

double TokenBucket::level(const RateLimit& limit, std::int64_t now_ms) const {
  const double elapsed_s =
      static_cast<double>(std::max<std::int64_t>(0, now_ms - updated_ms_)) / kMsPerSecond;
  return std::min<double>(limit.burst, tokens_ + elapsed_s * limit.per_second);
}

bool TokenBucket::take(const RateLimit& limit, std::int64_t now_ms) {
  const double now_level = level(limit, now_ms);
  if (now_level < 1.0) return false;
  tokens_ = now_level - 1.0;
  updated_ms_ = std::max(updated_ms_, now_ms);
  return true;
}

std::int64_t TokenBucket::wait_ms(const RateLimit& limit, std::int64_t now_ms) const {
  const double missing = 1.0 - level(limit, now_ms);
  if (missing <= 0) return 0;
  return static_cast<std::int64_t>(
      std::ceil(missing / limit.per_second * kMsPerSecond - kWaitRoundingMs));
}

bool TokenBucket::full(const RateLimit& limit, std::int64_t now_ms) const {
  return level(limit, now_ms) >= limit.burst;
}

KeyedLimiter::KeyedLimiter(RateLimit limit, std::size_t max_keys)
    : limit_(limit), max_keys_(max_keys) {
  HERALD_ASSERT(max_keys >= 1, "a keyed limiter holds at least one key");
  HERALD_ASSERT(limit.per_second <= 0 || limit.burst >= 1, "an enabled limit needs a burst");
}

bool KeyedLimiter::take(std::string_view key, std::int64_t now_ms) {
  if (limit_.per_second <= 0) return true;
  auto it = buckets_.find(std::string(key));
  if (it == buckets_.end()) {
    if (buckets_.size() >= max_keys_) make_room(now_ms);
    it = buckets_.emplace(std::string(key), TokenBucket(limit_, now_ms)).first;
  }
  return it->second.take(limit_, now_ms);
}

std::int64_t KeyedLimiter::wait_ms(std::string_view key, std::int64_t now_ms) const {
  if (limit_.per_second <= 0) return 0;
  const auto it = buckets_.find(std::string(key));
  return it == buckets_.end() ? 0 : it->second.wait_ms(limit_, now_ms);
}

void KeyedLimiter::make_room(std::int64_t now_ms) {
  std::erase_if(buckets_, [&](const auto& entry) { return entry.second.full(limit_, now_ms); });
  if (buckets_.size() >= max_keys_) buckets_.erase(buckets_.begin());
}

}  // namespace herald::server
