// SignInVerifier: checks the sign-in tokens an app's own backend issues to its users' devices, so
// that a device may authenticate on the device socket with a JWT instead of a device secret
// (docs/protocol.md, "Signing in with the app's token"; configuration: docs/operations.md,
// "Sign-in tokens").
//
// A token is a JWT (crypto/jwt.h) signed by the app's backend with one of
//  - an HS256 shared secret (at least crypto::kMinHmacSecretBytes),
//  - an RS256 or ES256 key whose public half is configured as a PEM, or
//  - any key of a JWKS document (RFC 7517: "RSA" keys, and "EC" keys on "P-256"), picked by the
//    token header's "kid" (a token without "kid" is accepted only when the set has one key).
// The key decides the algorithm: "alg": "none", an algorithm other than the key's, and an HS256
// token presented where a public key is configured (the algorithm-confusion attack) are refused.
//
// Claims: "sub" is the user id and the device claim (SignInConfig::device_claim, by default
// "device_id") the device id, each 1..messaging::kMaxIdBytes bytes without ':' or control
// characters; "exp" is required; "nbf" and "iat" are checked when present; "aud" and "iss" when
// configured; every time check allows SignInConfig::clock_skew_s of skew. Optional "platform"
// ("ios", "android" or "web"; default "web") and "name" (the display name of a user created by
// the first sign-in, at most kMaxSignInNameBytes) are passed on.
//
// Pure: the time is an argument, nothing here reads a clock or a file. Thread-safety: immutable
// after create(); verify() may run on any number of threads at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "crypto/jwt.h"
#include "messaging/domain.h"

namespace herald::server {

// Default tolerance for the app backend's clock, in seconds.
inline constexpr std::int64_t kDefaultSignInClockSkewS = 60;
// Keys of a JWKS document, at most.
inline constexpr std::size_t kMaxJwksKeys = 32;
// Bytes of a JWKS document, at most.
inline constexpr std::size_t kMaxJwksBytes = 64 * 1024;
// Longest "kid" accepted, in bytes.
inline constexpr std::size_t kMaxJwksKidBytes = 128;
// Longest "name" claim passed on as a display name, in bytes (a longer one is dropped).
inline constexpr std::size_t kMaxSignInNameBytes = messaging::kMaxDisplayNameBytes;
// Longest device-claim name, in bytes.
inline constexpr std::size_t kMaxDeviceClaimNameBytes = 64;
// The device claim when none is configured.
inline constexpr char kDefaultDeviceClaim[] = "device_id";
// The platform of a device created by a token without a "platform" claim.
inline constexpr char kDefaultSignInPlatform[] = "web";

// Exactly one of hs256_secret, public_key_pem and jwks_json is set.
struct SignInConfig {
  std::string hs256_secret;    // the shared secret itself (read from a file by the host)
  std::string public_key_pem;  // SubjectPublicKeyInfo PEM: RS256 (RSA) or ES256 (P-256)
  std::string jwks_json;       // a JWKS document {"keys": [...]}
  std::optional<std::string> audience;
  std::optional<std::string> issuer;
  std::string device_claim = kDefaultDeviceClaim;
  std::int64_t clock_skew_s = kDefaultSignInClockSkewS;  // 0..crypto::kMaxJwtClockSkewSeconds
};

// Who a valid token signs in.
struct SignedInDevice {
  std::string user_id;
  std::string device_id;
  std::string platform;        // "ios", "android" or "web"
  std::string display_name;    // the "name" claim, empty when absent
  std::int64_t expires_s = 0;  // the token's "exp"
  // The token's "iat" (whole seconds), when it has one: a user's revocation refuses the tokens
  // issued before it (docs/protocol.md, "Revocation").
  std::optional<std::int64_t> issued_at_s;
};

class SignInVerifier {
 public:
  // kInvalidArgument for a configuration that does not hold exactly one key source, a bad key,
  // secret or JWKS document (each message names what is wrong), a bad device claim name or skew.
  [[nodiscard]] static Result<SignInVerifier> create(const SignInConfig& config);

  // The device `token` signs in at `now_s` (seconds since the Unix epoch). Errors:
  // kInvalidArgument for a token that is malformed, badly signed, for another audience or issuer,
  // or names no valid user or device; kFailedPrecondition for a well-signed token outside its
  // validity window (expired, not yet valid); kResourceExhausted for an oversize token. Every
  // message says which check failed and never quotes the token.
  [[nodiscard]] Result<SignedInDevice> verify(std::string_view token, std::int64_t now_s) const;

  // "HS256 secret", "RS256 key", "ES256 key" or "JWKS of N keys": for the start-up line.
  [[nodiscard]] std::string describe() const;

 private:
  SignInVerifier() = default;
  [[nodiscard]] Result<const crypto::JwtVerifier*> verifier_for(std::string_view token) const;

  SignInConfig checks_;  // audience, issuer, device claim, skew (no key material kept here)
  std::optional<crypto::JwtVerifier> single_;
  std::map<std::string, crypto::JwtVerifier, std::less<>> by_kid_;
  std::string describe_;
};

// Parses a JWKS document into its keys by "kid" (a key without "kid" gets the empty kid; at most
// one may lack it). Keys whose "use" is present and not "sig" are skipped; "RSA" and "EC" on
// "P-256" are accepted, any other "kty" or curve refused. kInvalidArgument, naming the key.
[[nodiscard]] Result<std::map<std::string, crypto::PublicKey, std::less<>>> parse_jwks(
    std::string_view document);

}  // namespace herald::server
