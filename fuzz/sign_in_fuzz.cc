// Fuzz target: sign-in with the app's own tokens (server/sign_in.h; docs/protocol.md, "Signing in
// with the app's token"): the JWKS document an operator configures, and the token a device
// presents on the socket.
//
// The first byte picks what the rest is:
//  - even: a JWKS document, given to parse_jwks() and to SignInVerifier::create() as jwks_json;
//  - odd: a token, verified at a fixed time by three verifiers: an HS256 secret (the RFC 7515 A.1
//    key), a JWKS of the RFC 7515 A.2 RSA key (kid "rsa") and A.3 P-256 key (kid "ec") with an
//    audience and an issuer required, and a JWKS of the P-256 key alone without a kid.
// Asserts: no crash, leak or undefined behaviour, no failed HERALD_ASSERT; every refusal has one of
// the documented codes (kInvalidArgument for a document; kInvalidArgument, kFailedPrecondition or
// kResourceExhausted for a token); a parsed document has at most kMaxJwksKeys keys; a token that
// signs in names a user and a device within the id rules and an expiry after the verification time
// less the skew.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/assert.h"
#include "base/status.h"
#include "fuzz/push_fixture.h"
#include "server/sign_in.h"

namespace {

namespace vectors = herald::fuzz::push_vectors;
using herald::Code;
using herald::server::SignInConfig;
using herald::server::SignInVerifier;

// The time every token is verified at: just before the RFC 7515 examples' exp.
constexpr std::int64_t kNowS = vectors::kJwtExp - 1;

std::string rsa_jwk(std::string_view kid) {
  return R"({"kty":"RSA","kid":")" + std::string(kid) + R"(","n":")" +
         std::string(vectors::kRsaModulus) + R"(","e":")" + std::string(vectors::kRsaExponent) +
         R"("})";
}

std::string ec_jwk(std::string_view kid) {
  std::string key = R"({"kty":"EC","crv":"P-256",)";
  if (!kid.empty()) key += R"("kid":")" + std::string(kid) + R"(",)";
  return key + R"("x":")" + std::string(vectors::kEcX) + R"(","y":")" + std::string(vectors::kEcY) +
         R"("})";
}

SignInVerifier make(const SignInConfig& config, const char* what) {
  herald::Result<SignInVerifier> verifier = SignInVerifier::create(config);
  HERALD_ASSERT(verifier.ok(), what);
  return std::move(verifier).value();
}

const std::vector<SignInVerifier>& verifiers() {
  static const std::vector<SignInVerifier> all = [] {
    std::vector<SignInVerifier> v;
    SignInConfig hmac;
    hmac.hs256_secret = vectors::unb64(vectors::kHmacKey);
    v.push_back(make(hmac, "the RFC 7515 A.1 secret configures a verifier"));
    SignInConfig set;
    set.jwks_json = R"({"keys":[)" + rsa_jwk("rsa") + "," + ec_jwk("ec") + "]}";
    set.audience = "herald-app";
    set.issuer = "joe";
    v.push_back(make(set, "a JWKS of the RFC 7515 A.2 and A.3 keys configures a verifier"));
    SignInConfig single;
    single.jwks_json = R"({"keys":[)" + ec_jwk("") + "]}";
    single.device_claim = "dev";
    v.push_back(make(single, "a JWKS of one key without a kid configures a verifier"));
    return v;
  }();
  return all;
}

bool valid_id(std::string_view id) {
  if (id.empty() || id.size() > herald::messaging::kMaxIdBytes) return false;
  for (const char c : id) {
    if (c == ':' || static_cast<unsigned char>(c) < 0x20 || c == '\x7f') return false;
  }
  return true;
}

void document(std::string_view doc) {
  const auto keys = herald::server::parse_jwks(doc);
  if (keys.ok()) {
    HERALD_ASSERT(keys->size() <= herald::server::kMaxJwksKeys, "a JWKS holds at most its bound");
  } else {
    HERALD_ASSERT(keys.status().code() == Code::kInvalidArgument,
                  "a refused JWKS document is an invalid argument");
  }
  SignInConfig config;
  config.jwks_json = std::string(doc);
  const auto verifier = SignInVerifier::create(config);
  HERALD_ASSERT(verifier.ok() || verifier.status().code() == Code::kInvalidArgument,
                "a refused sign-in configuration is an invalid argument");
}

void token(std::string_view jwt) {
  for (const SignInVerifier& verifier : verifiers()) {
    const auto device = verifier.verify(jwt, kNowS);
    if (device.ok()) {
      HERALD_ASSERT(valid_id(device->user_id) && valid_id(device->device_id),
                    "a signed-in device has a valid user and device id");
      HERALD_ASSERT(device->expires_s >= kNowS - herald::crypto::kMaxJwtClockSkewSeconds,
                    "a signed-in token has not expired");
      HERALD_ASSERT(
          device->platform == "ios" || device->platform == "android" || device->platform == "web",
          "a signed-in device has a known platform");
      continue;
    }
    const Code code = device.status().code();
    HERALD_ASSERT(code == Code::kInvalidArgument || code == Code::kFailedPrecondition ||
                      code == Code::kResourceExhausted,
                  "a refused token has a documented code");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if ((data[0] & 1U) == 0) {
    document(rest);
  } else {
    token(rest);
  }
  return 0;
}
