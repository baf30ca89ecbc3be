// Deterministic pseudo-random numbers.
//
// Every random choice in Herald (election timeouts, retry jitter, simulated faults) comes from a
// Rng seeded explicitly, so that a simulation replays exactly from its seed. The generator is
// xoshiro256** seeded through splitmix64. Not thread-safe: give each thread or component its own.
#pragma once

#include <array>
#include <cstdint>

namespace herald {

class Rng {
 public:
  explicit Rng(std::uint64_t seed);

  // Uniform over all 64-bit values.
  [[nodiscard]] std::uint64_t next_u64();
  // Uniform in [0, bound). Precondition: bound > 0.
  [[nodiscard]] std::uint64_t uniform(std::uint64_t bound);
  // Uniform in [lo, hi]. Precondition: lo <= hi.
  [[nodiscard]] std::int64_t range(std::int64_t lo, std::int64_t hi);
  // True with probability p (0 <= p <= 1).
  [[nodiscard]] bool chance(double p);
  // Uniform in [0, 1).
  [[nodiscard]] double unit();

 private:
  std::array<std::uint64_t, 4> s_{};
};

// splitmix64: a good 64-bit mixer, used for seeding and for deriving sub-seeds.
[[nodiscard]] std::uint64_t splitmix64(std::uint64_t& state);

}  // namespace herald
