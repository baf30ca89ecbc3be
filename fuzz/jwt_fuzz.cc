// Fuzz target: the JWT decoder and verifier (crypto/jwt.h; docs/push.md, "JWT"), as a test double
// of a push service or a sign-in endpoint would meet a token from the network.
//
// The input is one token. It is verified by three verifiers, one per algorithm, holding the
// RFC 7515 Appendix A keys (HS256 A.1, RS256 A.2, ES256 A.3), with the checks those examples
// pass (now before their exp, iss "joe"), and once more by the ES256 verifier with exp not
// required and the age bounded instead (as the APNs double checks) and an audience required.
// Asserts: no crash, leak or undefined behaviour, no failed HERALD_ASSERT; every refusal is one of
// the documented codes (kInvalidArgument, kResourceExhausted, kFailedPrecondition); an accepted
// token names the verifier's algorithm.
#include <boost/json/value.hpp>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "base/assert.h"
#include "base/status.h"
#include "crypto/jwt.h"
#include "crypto/keys.h"
#include "fuzz/push_fixture.h"

namespace {

namespace vectors = herald::fuzz::push_vectors;
using herald::Code;
using herald::crypto::JwtChecks;
using herald::crypto::JwtVerifier;
using herald::crypto::PublicKey;

const std::vector<JwtVerifier>& verifiers() {
  static const std::vector<JwtVerifier> all = [] {
    std::vector<JwtVerifier> v;
    herald::Result<JwtVerifier> hmac = JwtVerifier::hmac(vectors::unb64(vectors::kHmacKey));
    HERALD_ASSERT(hmac.ok(), "the RFC 7515 A.1 key loads");
    v.push_back(std::move(hmac).value());
    herald::Result<PublicKey> rsa = PublicKey::from_rsa_numbers(
        vectors::unb64(vectors::kRsaModulus), vectors::unb64(vectors::kRsaExponent));
    HERALD_ASSERT(rsa.ok(), "the RFC 7515 A.2 key loads");
    v.push_back(JwtVerifier::from_key(std::move(rsa).value()));
    herald::Result<PublicKey> ec = PublicKey::from_p256_point(
        "\x04" + vectors::unb64(vectors::kEcX) + vectors::unb64(vectors::kEcY));
    HERALD_ASSERT(ec.ok(), "the RFC 7515 A.3 key loads");
    v.push_back(JwtVerifier::from_key(std::move(ec).value()));
    return v;
  }();
  return all;
}

void check(const JwtVerifier& verifier, std::string_view token, const JwtChecks& checks) {
  const herald::Result<herald::crypto::VerifiedJwt> verified = verifier.verify(token, checks);
  if (verified.ok()) {
    const boost::json::value* alg = verified->header.if_contains("alg");
    HERALD_ASSERT(alg != nullptr && alg->is_string() &&
                      alg->as_string() == herald::crypto::jwt_algorithm_name(verifier.algorithm()),
                  "an accepted token names the verifier's algorithm");
    return;
  }
  const Code code = verified.status().code();
  HERALD_ASSERT(code == Code::kInvalidArgument || code == Code::kResourceExhausted ||
                    code == Code::kFailedPrecondition,
                "a refused token has a documented code");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view token(reinterpret_cast<const char*>(data), size);
  JwtChecks examples;
  examples.now_s = vectors::kJwtExp - 1;
  examples.issuer = "joe";
  for (const JwtVerifier& verifier : verifiers()) {
    check(verifier, token, examples);
  }
  JwtChecks aged;
  aged.now_s = vectors::kJwtExp;
  aged.clock_skew_s = herald::crypto::kMaxJwtClockSkewSeconds;
  aged.require_exp = false;
  aged.max_age_s = 3600;
  aged.audience = "https://push.example.net";
  check(verifiers().back(), token, aged);
  return 0;
}
