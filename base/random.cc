#include "base/random.h"

#include "base/assert.h"

namespace herald {

std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30U)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27U)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31U);
}

Rng::Rng(std::uint64_t seed) {
  std::uint64_t state = seed;
  for (auto& word : s_) {
    word = splitmix64(state);
  }
}

namespace {
constexpr std::uint64_t rotl(std::uint64_t x, int k) {
  return (x << static_cast<unsigned>(k)) | (x >> static_cast<unsigned>(64 - k));
}
}  // namespace

std::uint64_t Rng::next_u64() {
  const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const std::uint64_t t = s_[1] << 17U;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

std::uint64_t Rng::uniform(std::uint64_t bound) {
  HERALD_ASSERT(bound > 0, "uniform() needs a positive bound");
  // Rejection sampling removes modulo bias.
  const std::uint64_t limit = ~std::uint64_t{0} - (~std::uint64_t{0} % bound);
  std::uint64_t x = next_u64();
  while (x >= limit) {
    x = next_u64();
  }
  return x % bound;
}

std::int64_t Rng::range(std::int64_t lo, std::int64_t hi) {
  HERALD_ASSERT(lo <= hi, "range() needs lo <= hi");
  const auto span = static_cast<std::uint64_t>(hi - lo) + 1;
  if (span == 0) {  // The full 64-bit range.
    return static_cast<std::int64_t>(next_u64());
  }
  return lo + static_cast<std::int64_t>(uniform(span));
}

double Rng::unit() {
  return static_cast<double>(next_u64() >> 11U) * 0x1.0p-53;
}

bool Rng::chance(double p) {
  return unit() < p;
}

}  // namespace herald
