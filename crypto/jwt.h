// JSON Web Tokens in the JWS compact serialization (RFC 7519, RFC 7515): signing and verifying
// with ES256, RS256 and HS256 (RFC 7518 section 3).
//
// Herald signs APNs provider tokens (ES256, header kid, claims iss and iat), the FCM OAuth
// assertion (RS256), VAPID tokens (ES256, push/vapid.h) and will sign app sign-in
// tokens; the test doubles of those services verify them. Format and bounds: docs/push.md.
//
// The key decides the algorithm. A signer or verifier is built from one key, and that key's kind
// fixes the only algorithm it uses: a P-256 key means ES256, an RSA key RS256, an HMAC secret
// HS256. A token whose header names any other algorithm ("none", or HS256 presented to an RSA
// verifier: the algorithm-confusion attack) is refused before any signature check.
//
// Time is an argument: nothing here reads a clock, so verification is deterministic.
//
// Errors of verify():
//  - kResourceExhausted: the token is longer than kMaxJwtBytes.
//  - kInvalidArgument: the token is malformed (segments, base64url, JSON), names the wrong
//    algorithm, carries "crit", has a bad signature, or fails the aud/iss checks.
//  - kFailedPrecondition: the token is well-signed but outside its validity window now (expired,
//    not yet valid, issued in the future, older than the allowed age) or lacks a required exp.
// Every message says which check failed.
//
// Thread-safety: JwtSigner and JwtVerifier are immutable after construction; any number of
// threads may use one at once.
#pragma once

#include <boost/json/object.hpp>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "base/status.h"
#include "crypto/keys.h"

namespace herald::crypto {

// Longest token accepted by verify(), in bytes. An RS256 token with a 4096-bit key and a few
// hundred bytes of claims is about 1.2 KiB.
inline constexpr std::size_t kMaxJwtBytes = 8 * 1024;
// Deepest JSON nesting accepted in a token's header or claims.
inline constexpr std::size_t kMaxJwtJsonDepth = 8;
// Shortest HS256 secret accepted, in bytes (RFC 7518 section 3.2: at least the hash size).
inline constexpr std::size_t kMinHmacSecretBytes = 32;
// Size of an ES256 signature in a JWS: the raw r || s, each a 32-byte big-endian integer (not
// the DER that OpenSSL produces).
inline constexpr std::size_t kEs256SignatureBytes = 64;
// Largest clock skew a verifier may allow, in seconds.
inline constexpr std::int64_t kMaxJwtClockSkewSeconds = 300;

enum class JwtAlgorithm : std::uint8_t { kEs256, kRs256, kHs256 };

// The JWS "alg" value: "ES256", "RS256" or "HS256".
[[nodiscard]] std::string_view jwt_algorithm_name(JwtAlgorithm algorithm);

class JwtSigner {
 public:
  // From a PEM private key (keys.h): ES256 for P-256, RS256 for RSA.
  [[nodiscard]] static Result<JwtSigner> from_pem(std::string_view private_pem);
  [[nodiscard]] static JwtSigner from_key(PrivateKey key);
  // HS256 with `secret` (at least kMinHmacSecretBytes).
  [[nodiscard]] static Result<JwtSigner> hmac(std::string_view secret);

  [[nodiscard]] JwtAlgorithm algorithm() const { return algorithm_; }

  // Returns header.claims.signature. The header is {"alg": <this signer's>, "typ": "JWT"}
  // followed by `header_fields` (e.g. "kid"); `header_fields` may not set "alg" or "typ"
  // (kInvalidArgument). Members keep their order, so equal inputs give equal tokens (ES256
  // signatures are randomized; RS256 and HS256 are not). kIOError if OpenSSL fails.
  [[nodiscard]] Result<std::string> sign(const boost::json::object& claims,
                                         const boost::json::object& header_fields = {}) const;

 private:
  JwtSigner(JwtAlgorithm algorithm, std::variant<PrivateKey, std::string> key)
      : algorithm_(algorithm), key_(std::move(key)) {}
  JwtAlgorithm algorithm_;
  std::variant<PrivateKey, std::string> key_;
};

// What verify() checks besides the signature. Times are seconds since the Unix epoch.
struct JwtChecks {
  std::int64_t now_s = 0;
  // Tolerance for the issuer's clock, applied to exp, nbf, iat and max_age_s; 0 to
  // kMaxJwtClockSkewSeconds.
  std::int64_t clock_skew_s = 0;
  // Refuse a token without "exp". APNs provider tokens carry only "iat": their verifier turns
  // this off and bounds the age with max_age_s instead.
  bool require_exp = true;
  // When set, "iat" is required and the token is refused once now > iat + max_age_s + skew.
  std::optional<std::int64_t> max_age_s = std::nullopt;
  // When set, "aud" must be this string or an array containing it.
  std::optional<std::string> audience = std::nullopt;
  // When set, "iss" must equal it.
  std::optional<std::string> issuer = std::nullopt;
};

struct VerifiedJwt {
  boost::json::object header;
  boost::json::object claims;
};

class JwtVerifier {
 public:
  // From a PEM public key (keys.h): accepts only ES256 for P-256, only RS256 for RSA.
  [[nodiscard]] static Result<JwtVerifier> from_pem(std::string_view public_pem);
  [[nodiscard]] static JwtVerifier from_key(PublicKey key);
  // Accepts only HS256 with `secret` (at least kMinHmacSecretBytes).
  [[nodiscard]] static Result<JwtVerifier> hmac(std::string_view secret);

  [[nodiscard]] JwtAlgorithm algorithm() const { return algorithm_; }

  // Returns the decoded header and claims when `token` is well-formed, names this verifier's
  // algorithm, carries a valid signature and passes `checks`. Errors: see the top of this file.
  // Precondition: 0 <= checks.clock_skew_s <= kMaxJwtClockSkewSeconds.
  [[nodiscard]] Result<VerifiedJwt> verify(std::string_view token, const JwtChecks& checks) const;

 private:
  JwtVerifier(JwtAlgorithm algorithm, std::variant<PublicKey, std::string> key)
      : algorithm_(algorithm), key_(std::move(key)) {}
  [[nodiscard]] Status check_signature(std::string_view signing_input,
                                       std::string_view signature) const;
  JwtAlgorithm algorithm_;
  std::variant<PublicKey, std::string> key_;
};

}  // namespace herald::crypto
