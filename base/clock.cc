#include "base/clock.h"

#include <chrono>

#include "base/assert.h"

namespace herald {

MonoMs SystemClock::mono_ms() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::int64_t SystemClock::mono_us() const {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

WallMs SystemClock::wall_ms() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void ManualClock::advance_ms(MonoMs delta_ms) {
  HERALD_ASSERT(delta_ms >= 0, "a monotonic clock cannot go back");
  now_ms_ += delta_ms;
}

void ManualClock::set_ms(MonoMs now_ms) {
  HERALD_ASSERT(now_ms >= now_ms_, "a monotonic clock cannot go back");
  now_ms_ = now_ms;
}

}  // namespace herald
