// VAPID (RFC 8292): how an application server identifies itself to a Web Push service.
//
// Every push request carries
//   Authorization: vapid t=<JWT>, k=<base64url uncompressed P-256 public key>
// where the JWT is ES256 with {"typ":"JWT","alg":"ES256"} and the claims
//   aud = the push endpoint's origin (scheme://host[:port]),
//   exp = at most 24 hours ahead,
//   sub = a contact for the operator ("mailto:" or "https:" URI, from configuration).
// The push service checks the signature with k, and, when the subscription was made with an
// applicationServerKey, that k is that key.
//
// Where the key comes from: the operator generates one P-256 key pair once (VapidKey::generate,
// stored as PKCS#8 PEM); browsers subscribe with its public key (public_key_b64url()); losing or
// changing it invalidates every subscription. Format and bounds: docs/push.md.
//
// Time is an argument: nothing here reads a clock. Thread-safety: VapidKey is immutable; the
// functions are pure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "base/status.h"
#include "crypto/jwt.h"
#include "crypto/keys.h"

namespace herald::push {

// Longest lifetime of a VAPID token, in seconds (RFC 8292 section 2: exp no more than 24 hours
// after the request).
inline constexpr std::int64_t kVapidMaxLifetimeSeconds = 24 * 3600;
// Lifetime Herald gives its tokens, in seconds: half the maximum, so that a sender's clock ahead
// of the push service's by up to 12 hours is still accepted.
inline constexpr std::int64_t kVapidDefaultLifetimeSeconds = 12 * 3600;
// Longest push endpoint URL accepted, in bytes.
inline constexpr std::size_t kMaxPushEndpointBytes = 2048;
// Longest VAPID contact ("sub") accepted, in bytes.
inline constexpr std::size_t kMaxVapidSubjectBytes = 256;
// Longest Authorization header value accepted by the verifier, in bytes.
inline constexpr std::size_t kMaxVapidHeaderBytes = crypto::kMaxJwtBytes + 256;

// The origin of an http or https URL (RFC 6454): lower-case scheme and host, the port only when
// it is not the scheme's default. kInvalidArgument for another scheme, user info, an empty or
// malformed host, a bad port; kResourceExhausted over kMaxPushEndpointBytes.
// Example: "https://Push.Example.net:443/wpush/v2/abc" -> "https://push.example.net".
[[nodiscard]] Result<std::string> endpoint_origin(std::string_view endpoint);

// kInvalidArgument unless `subject` is a "mailto:" or "https:" URI of at most
// kMaxVapidSubjectBytes without control characters.
[[nodiscard]] Status check_vapid_subject(std::string_view subject);

class VapidKey {
 public:
  // From the operator's PEM private key; kInvalidArgument unless it is a P-256 key.
  [[nodiscard]] static Result<VapidKey> from_pem(std::string_view private_pem);
  // A new key pair from OpenSSL's CSPRNG, for an operator setting up Web Push.
  [[nodiscard]] static Result<VapidKey> generate();

  // The private key as unencrypted PKCS#8 PEM, to store as a secret.
  [[nodiscard]] Result<std::string> private_pem() const { return key_.to_pem(); }
  // The public key as base64url of the uncompressed point: the k= parameter and the
  // applicationServerKey browsers subscribe with.
  [[nodiscard]] const std::string& public_key_b64url() const { return public_b64url_; }

  // The Authorization header value for a request to `endpoint` at `now_s` (seconds since the
  // epoch): "vapid t=<jwt>, k=<key>" with aud = endpoint_origin(endpoint), exp = now_s +
  // lifetime_s and sub = `subject`. kInvalidArgument for a bad endpoint or subject, or a
  // lifetime outside (0, kVapidMaxLifetimeSeconds].
  [[nodiscard]] Result<std::string> authorization(
      std::string_view endpoint, std::string_view subject, std::int64_t now_s,
      std::int64_t lifetime_s = kVapidDefaultLifetimeSeconds) const;

 private:
  VapidKey(crypto::PrivateKey key, std::string public_b64url)
      : key_(std::move(key)), public_b64url_(std::move(public_b64url)) {}
  static Result<VapidKey> from_key(crypto::PrivateKey key);
  crypto::PrivateKey key_;
  std::string public_b64url_;
};

// What a push service learns from a valid header.
struct VerifiedVapid {
  std::string public_key_b64url;  // k=
  crypto::VerifiedJwt jwt;
};

// The push service's side, for test doubles: parses `header_value` ("vapid t=..., k=...",
// parameters in either order), verifies the token with the k= key (ES256 only) and checks that
// aud is `origin`, exp is present, not passed and at most kVapidMaxLifetimeSeconds ahead (each
// with `clock_skew_s`, at most crypto::kMaxJwtClockSkewSeconds). Errors as crypto::JwtVerifier::
// verify, plus kInvalidArgument for a header that is not of that shape.
[[nodiscard]] Result<VerifiedVapid> verify_vapid_authorization(std::string_view header_value,
                                                               std::string_view origin,
                                                               std::int64_t now_s,
                                                               std::int64_t clock_skew_s);

}  // namespace herald::push
