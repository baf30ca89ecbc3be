// Webhook request signatures (docs/webhooks.md, "Verifying a request"): the Standard Webhooks
// scheme. A request carries three headers:
//   webhook-id:        the event id (the idempotency id, the same on every attempt)
//   webhook-timestamp: the attempt's time, in whole seconds since the Unix epoch
//   webhook-signature: "v1," + base64(HMAC-SHA256(key, id + "." + timestamp + "." + body))
// The key is the endpoint's secret: for a secret of the form "whsec_<base64>" the decoded bytes,
// for any other secret its bytes as given. Pure functions (OpenSSL's HMAC); thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace herald::webhooks {

inline constexpr char kSecretPrefix[] = "whsec_";
inline constexpr char kSignatureVersion[] = "v1";
// Secrets the API accepts, in bytes as given, and the size of a generated key.
inline constexpr std::size_t kMinSecretBytes = 16;
inline constexpr std::size_t kMaxSecretBytes = 256;
inline constexpr std::size_t kGeneratedKeyBytes = 32;
// How far a receiver's clock may be from a request's timestamp before verify() refuses it, in
// seconds (replayed requests older than this are refused).
inline constexpr std::int64_t kDefaultToleranceSeconds = 300;

// The HMAC key of `secret` (see above). kInvalidArgument for a "whsec_" secret whose rest is not
// base64, or a key that is empty.
[[nodiscard]] Result<std::string> key_of_secret(std::string_view secret);

// Standard base64 with padding (RFC 4648 section 4), and its inverse (kInvalidArgument).
[[nodiscard]] std::string base64_encode(std::string_view bytes);
[[nodiscard]] Result<std::string> base64_decode(std::string_view text);

// "v1,<base64 of the HMAC>" of the request. Precondition: `key` is not empty.
[[nodiscard]] std::string sign(std::string_view key, std::string_view id, std::int64_t timestamp_s,
                               std::string_view body);

// Whether `signature_header` (space-separated "v1,<base64>" entries, as several keys may sign
// during a rotation) holds a valid signature of the request by `key`, and the timestamp is within
// `tolerance_s` of `now_s`. The comparison takes constant time.
[[nodiscard]] bool verify(std::string_view key, std::string_view id, std::int64_t timestamp_s,
                          std::string_view body, std::string_view signature_header,
                          std::int64_t now_s, std::int64_t tolerance_s = kDefaultToleranceSeconds);

// A short public fingerprint of a key, shown instead of the secret: "sha256:" + the first 16 hex
// digits of SHA-256(key).
[[nodiscard]] std::string fingerprint(std::string_view key);

}  // namespace herald::webhooks
