#include "server/sign_in.h"

#include <fmt/format.h>

#include <boost/json.hpp>
#include <cmath>
#include <utility>

#include "crypto/base64url.h"
#include "crypto/keys.h"
#include "messaging/domain.h"

namespace herald::server {

namespace {

namespace json = boost::json;

// Bytes of each P-256 coordinate in a JWK.
constexpr std::size_t kP256CoordinateBytes = 32;
// The first byte of an uncompressed EC point.
constexpr char kUncompressedPoint = 0x04;
// Nesting accepted in a JWKS document.
constexpr std::size_t kMaxJwksJsonDepth = 6;

// The string member `key` of `o`, or nullopt when absent or not a string.
std::optional<std::string> string_member(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || !v->is_string()) return std::nullopt;
  return std::string(v->as_string());
}

// A user or device id as the messaging domain accepts them: 1..kMaxIdBytes bytes, no ':' and no
// control characters.
bool valid_id(std::string_view id) {
  if (id.empty() || id.size() > messaging::kMaxIdBytes) return false;
  for (const char c : id) {
    if (c == ':' || static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return false;
  }
  return true;
}

Result<crypto::PublicKey> key_of_jwk(const json::object& jwk, std::string_view name) {
  const std::optional<std::string> kty = string_member(jwk, "kty");
  if (kty == "RSA") {
    const std::optional<std::string> n = string_member(jwk, "n");
    const std::optional<std::string> e = string_member(jwk, "e");
    if (!n || !e) {
      return Status::invalid_argument(fmt::format("JWKS key {}: an RSA key needs n and e", name));
    }
    Result<std::string> modulus = crypto::base64url_decode(*n);
    Result<std::string> exponent = crypto::base64url_decode(*e);
    if (!modulus.ok() || !exponent.ok()) {
      return Status::invalid_argument(fmt::format("JWKS key {}: n or e is not base64url", name));
    }
    Result<crypto::PublicKey> key = crypto::PublicKey::from_rsa_numbers(*modulus, *exponent);
    if (!key.ok()) {
      return Status::invalid_argument(fmt::format("JWKS key {}: {}", name, key.status().message()));
    }
    return key;
  }
  if (kty == "EC") {
    if (string_member(jwk, "crv") != "P-256") {
      return Status::invalid_argument(fmt::format("JWKS key {}: only EC keys on P-256", name));
    }
    const std::optional<std::string> x = string_member(jwk, "x");
    const std::optional<std::string> y = string_member(jwk, "y");
    Result<std::string> xb = crypto::base64url_decode(x.value_or(""));
    Result<std::string> yb = crypto::base64url_decode(y.value_or(""));
    if (!x || !y || !xb.ok() || !yb.ok() || xb->size() != kP256CoordinateBytes ||
        yb->size() != kP256CoordinateBytes) {
      return Status::invalid_argument(
          fmt::format("JWKS key {}: x and y must be 32-byte base64url coordinates", name));
    }
    Result<crypto::PublicKey> key =
        crypto::PublicKey::from_p256_point(std::string(1, kUncompressedPoint) + *xb + *yb);
    if (!key.ok()) {
      return Status::invalid_argument(fmt::format("JWKS key {}: {}", name, key.status().message()));
    }
    return key;
  }
  return Status::invalid_argument(
      fmt::format("JWKS key {}: kty {} is not supported (RSA or EC)", name, kty.value_or("?")));
}

// The "kid" of a token's header, or "" when the header has none; kInvalidArgument when the header
// does not decode.
Result<std::string> header_kid(std::string_view token) {
  const std::size_t dot = token.find('.');
  if (dot == std::string_view::npos) {
    return Status::invalid_argument("the token is not a JWT (no '.')");
  }
  Result<std::string> header = crypto::base64url_decode(token.substr(0, dot));
  if (!header.ok()) return Status::invalid_argument("the token's header is not base64url");
  boost::system::error_code ec;
  json::parse_options options;
  options.max_depth = crypto::kMaxJwtJsonDepth;
  const json::value v = json::parse(*header, ec, {}, options);
  if (ec || !v.is_object()) return Status::invalid_argument("the token's header is not JSON");
  const json::value* kid = v.as_object().if_contains("kid");
  if (kid == nullptr) return std::string();
  if (!kid->is_string() || kid->as_string().size() > kMaxJwksKidBytes) {
    return Status::invalid_argument("the token's kid is not a short string");
  }
  return std::string(kid->as_string());
}

}  // namespace

Result<std::map<std::string, crypto::PublicKey, std::less<>>> parse_jwks(
    std::string_view document) {
  if (document.size() > kMaxJwksBytes) {
    return Status::invalid_argument(
        fmt::format("the JWKS document is larger than {} bytes", kMaxJwksBytes));
  }
  boost::system::error_code ec;
  json::parse_options options;
  options.max_depth = kMaxJwksJsonDepth;
  const json::value v = json::parse(document, ec, {}, options);
  const json::value* keys = !ec && v.is_object() ? v.as_object().if_contains("keys") : nullptr;
  if (keys == nullptr || !keys->is_array()) {
    return Status::invalid_argument("the JWKS document is not a JSON object with a keys array");
  }
  std::map<std::string, crypto::PublicKey, std::less<>> out;
  std::size_t index = 0;
  for (const json::value& k : keys->as_array()) {
    ++index;
    if (!k.is_object()) {
      return Status::invalid_argument(fmt::format("JWKS key #{} is not an object", index));
    }
    const json::object& jwk = k.as_object();
    if (const std::optional<std::string> use = string_member(jwk, "use"); use && *use != "sig") {
      continue;  // an encryption key: never a signer
    }
    const std::string kid = string_member(jwk, "kid").value_or("");
    if (kid.size() > kMaxJwksKidBytes) {
      return Status::invalid_argument(fmt::format("JWKS key #{}: its kid is too long", index));
    }
    const std::string name = kid.empty() ? fmt::format("#{}", index) : "\"" + kid + "\"";
    HERALD_ASSIGN_OR_RETURN(crypto::PublicKey key, key_of_jwk(jwk, name));
    if (out.contains(kid)) {
      return Status::invalid_argument(kid.empty()
                                          ? std::string("more than one JWKS key has no kid")
                                          : fmt::format("JWKS kid \"{}\" appears twice", kid));
    }
    if (out.size() >= kMaxJwksKeys) {
      return Status::invalid_argument(
          fmt::format("the JWKS document has more than {} keys", kMaxJwksKeys));
    }
    out.emplace(kid, std::move(key));
  }
  if (out.empty()) return Status::invalid_argument("the JWKS document has no signing key");
  return out;
}

Result<SignInVerifier> SignInVerifier::create(const SignInConfig& config) {
  const int sources = static_cast<int>(!config.hs256_secret.empty()) +
                      static_cast<int>(!config.public_key_pem.empty()) +
                      static_cast<int>(!config.jwks_json.empty());
  if (sources != 1) {
    return Status::invalid_argument(
        "sign-in tokens need exactly one of an HS256 secret, a public key or a JWKS document");
  }
  if (config.clock_skew_s < 0 || config.clock_skew_s > crypto::kMaxJwtClockSkewSeconds) {
    return Status::invalid_argument(fmt::format("the sign-in clock skew must be 0..{} seconds",
                                                crypto::kMaxJwtClockSkewSeconds));
  }
  if (config.device_claim.empty() || config.device_claim.size() > kMaxDeviceClaimNameBytes ||
      config.device_claim == "sub") {
    return Status::invalid_argument(
        fmt::format("the device claim must be a claim name of 1..{} bytes other than sub",
                    kMaxDeviceClaimNameBytes));
  }
  SignInVerifier v;
  v.checks_.audience = config.audience;
  v.checks_.issuer = config.issuer;
  v.checks_.device_claim = config.device_claim;
  v.checks_.clock_skew_s = config.clock_skew_s;
  if (!config.hs256_secret.empty()) {
    Result<crypto::JwtVerifier> hmac = crypto::JwtVerifier::hmac(config.hs256_secret);
    if (!hmac.ok()) {
      return Status::invalid_argument("the sign-in HS256 secret: " + hmac.status().message());
    }
    v.single_ = std::move(hmac).value();
    v.describe_ = "HS256 secret";
  } else if (!config.public_key_pem.empty()) {
    Result<crypto::JwtVerifier> key = crypto::JwtVerifier::from_pem(config.public_key_pem);
    if (!key.ok()) {
      return Status::invalid_argument("the sign-in public key: " + key.status().message());
    }
    v.describe_ = fmt::format("{} key", crypto::jwt_algorithm_name(key->algorithm()));
    v.single_ = std::move(key).value();
  } else {
    HERALD_ASSIGN_OR_RETURN(auto keys, parse_jwks(config.jwks_json));
    for (auto& [kid, key] : keys) {
      v.by_kid_.emplace(kid, crypto::JwtVerifier::from_key(std::move(key)));
    }
    v.describe_ =
        fmt::format("JWKS of {} key{}", v.by_kid_.size(), v.by_kid_.size() == 1 ? "" : "s");
  }
  return v;
}

Result<const crypto::JwtVerifier*> SignInVerifier::verifier_for(std::string_view token) const {
  if (single_) return &*single_;
  HERALD_ASSIGN_OR_RETURN(const std::string kid, header_kid(token));
  if (kid.empty()) {
    if (by_kid_.size() == 1) return &by_kid_.begin()->second;
    return Status::invalid_argument("the token names no kid and the JWKS has several keys");
  }
  const auto it = by_kid_.find(kid);
  if (it == by_kid_.end()) {
    return Status::invalid_argument("the token's kid is not in the JWKS");
  }
  return &it->second;
}

Result<SignedInDevice> SignInVerifier::verify(std::string_view token, std::int64_t now_s) const {
  if (token.size() > crypto::kMaxJwtBytes) {
    return Status::resource_exhausted(
        fmt::format("the token is longer than {} bytes", crypto::kMaxJwtBytes));
  }
  HERALD_ASSIGN_OR_RETURN(const crypto::JwtVerifier* verifier, verifier_for(token));
  crypto::JwtChecks checks;
  checks.now_s = now_s;
  checks.clock_skew_s = checks_.clock_skew_s;
  checks.require_exp = true;
  checks.audience = checks_.audience;
  checks.issuer = checks_.issuer;
  HERALD_ASSIGN_OR_RETURN(crypto::VerifiedJwt jwt, verifier->verify(token, checks));
  SignedInDevice out;
  out.user_id = string_member(jwt.claims, "sub").value_or("");
  if (!valid_id(out.user_id)) {
    return Status::invalid_argument(fmt::format(
        "the token's sub is not a user id (1..{} bytes, no ':')", messaging::kMaxIdBytes));
  }
  out.device_id = string_member(jwt.claims, checks_.device_claim).value_or("");
  if (!valid_id(out.device_id)) {
    return Status::invalid_argument(
        fmt::format("the token's {} claim is not a device id (1..{} bytes, no ':')",
                    checks_.device_claim, messaging::kMaxIdBytes));
  }
  out.platform = string_member(jwt.claims, "platform").value_or(kDefaultSignInPlatform);
  if (out.platform != "ios" && out.platform != "android" && out.platform != "web") {
    return Status::invalid_argument("the token's platform is not ios, android or web");
  }
  out.display_name = string_member(jwt.claims, "name").value_or("");
  if (out.display_name.size() > kMaxSignInNameBytes) out.display_name.clear();
  const json::value* exp = jwt.claims.if_contains("exp");
  // verify() checked "exp" is a NumericDate: an integer, or a finite number within range.
  if (exp != nullptr && exp->is_int64()) {
    out.expires_s = exp->as_int64();
  } else if (exp != nullptr && exp->is_double()) {
    out.expires_s = static_cast<std::int64_t>(std::floor(exp->as_double()));
  }
  if (out.expires_s <= 0) {
    return Status::invalid_argument("the token's exp is not a positive integer");
  }
  // verify() checked that an "iat" present is a NumericDate too.
  if (const json::value* iat = jwt.claims.if_contains("iat"); iat != nullptr && iat->is_int64()) {
    out.issued_at_s = iat->as_int64();
  } else if (iat != nullptr && iat->is_double()) {
    out.issued_at_s = static_cast<std::int64_t>(std::floor(iat->as_double()));
  }
  return out;
}

std::string SignInVerifier::describe() const {
  std::string out = describe_;
  if (checks_.audience) out += fmt::format(", audience {}", *checks_.audience);
  if (checks_.issuer) out += fmt::format(", issuer {}", *checks_.issuer);
  out +=
      fmt::format(", device claim {}, clock skew {} s", checks_.device_claim, checks_.clock_skew_s);
  return out;
}

}  // namespace herald::server
