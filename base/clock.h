// Time as an interface, so that the simulator can drive it.
//
// Deterministic layers (raft/, workflow state machines) never read a Clock: time reaches them as
// ticks or as values stamped into commands. Adapters (server/, rsm/ hosts) read it through this
// interface; sim/ supplies a manual clock. Implementations must be safe to call from any thread.
#pragma once

#include <cstdint>

namespace herald {

// Milliseconds on a monotonic clock with an arbitrary epoch.
using MonoMs = std::int64_t;
// Milliseconds since the Unix epoch (wall clock; may jump).
using WallMs = std::int64_t;

class Clock {
 public:
  virtual ~Clock() = default;
  [[nodiscard]] virtual MonoMs mono_ms() const = 0;
  [[nodiscard]] virtual WallMs wall_ms() const = 0;
  // Microseconds on the same monotonic clock, for durations too short for mono_ms() (a disk
  // sync). Clocks without a finer source answer mono_ms() * 1000.
  [[nodiscard]] virtual std::int64_t mono_us() const { return mono_ms() * 1000; }
};

// The process's real clocks (steady_clock and system_clock).
class SystemClock final : public Clock {
 public:
  [[nodiscard]] MonoMs mono_ms() const override;
  [[nodiscard]] WallMs wall_ms() const override;
  [[nodiscard]] std::int64_t mono_us() const override;
};

// A clock that moves only when told to. Not thread-safe; used by the single-threaded simulator.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(MonoMs start_ms = 0) : now_ms_(start_ms) {}
  [[nodiscard]] MonoMs mono_ms() const override { return now_ms_; }
  // The simulated wall clock starts at a fixed, recognisable epoch (2026-01-01T00:00:00Z).
  [[nodiscard]] WallMs wall_ms() const override { return kWallEpochMs + now_ms_; }
  void advance_ms(MonoMs delta_ms);
  void set_ms(MonoMs now_ms);

  static constexpr WallMs kWallEpochMs = 1'767'225'600'000;

 private:
  MonoMs now_ms_;
};

}  // namespace herald
