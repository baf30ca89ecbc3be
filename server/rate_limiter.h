// Token buckets for the gateway's rate limits (docs/protocol.md, "Limits").
//
// TokenBucket holds up to `burst` tokens and gains `per_second` tokens each second; a request takes
// one. KeyedLimiter keeps one bucket per key (a device id, a client address) and forgets buckets
// that have refilled, so it holds at most `max_keys` of them whatever the keys a client invents.
// Pure: time is a parameter (monotonic milliseconds), so tests and the simulator drive it.
// Thread-safety: none; the owner serializes calls.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

namespace herald::server {

struct RateLimit {
  double per_second = 0;    // sustained rate; 0 disables the limit
  std::uint32_t burst = 0;  // tokens available at once; at least 1 when the limit is enabled
};

class TokenBucket {
 public:
  // A full bucket at `now_ms`.
  TokenBucket(const RateLimit& limit, std::int64_t now_ms);

  // Takes one token if there is one. Otherwise returns false and leaves the bucket unchanged.
  [[nodiscard]] bool take(const RateLimit& limit, std::int64_t now_ms);
  // Milliseconds until take() can succeed (0 when it can now).
  [[nodiscard]] std::int64_t wait_ms(const RateLimit& limit, std::int64_t now_ms) const;
  // Whether the bucket has refilled to its burst by `now_ms` (then forgetting it changes nothing).
  [[nodiscard]] bool full(const RateLimit& limit, std::int64_t now_ms) const;

 private:
  [[nodiscard]] double level(const RateLimit& limit, std::int64_t now_ms) const;

  double tokens_;
  std::int64_t updated_ms_;
};

class KeyedLimiter {
 public:
  // Precondition (asserted): max_keys >= 1; an enabled limit has burst >= 1.
  KeyedLimiter(RateLimit limit, std::size_t max_keys);

  // Takes one token from `key`'s bucket. When the limit is disabled, always true.
  [[nodiscard]] bool take(std::string_view key, std::int64_t now_ms);
  // Milliseconds until `key` may take a token.
  [[nodiscard]] std::int64_t wait_ms(std::string_view key, std::int64_t now_ms) const;
  [[nodiscard]] std::size_t keys() const { return buckets_.size(); }
  [[nodiscard]] const RateLimit& limit() const { return limit_; }

 private:
  // Makes room for one more key: drops refilled buckets, then (still full) an arbitrary one,
  // which only ever gives that key a fresh burst.
  void make_room(std::int64_t now_ms);

  RateLimit limit_;
  std::size_t max_keys_;
  std::unordered_map<std::string, TokenBucket> buckets_;
};

}  // namespace herald::server
