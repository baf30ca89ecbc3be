#include "crypto/jwt.h"

#include <gtest/gtest.h>
#include <openssl/hmac.h>

#include <boost/json/serialize.hpp>

#include "crypto/base64url.h"
#include "crypto/test_keys.h"

namespace herald::crypto {
namespace {

namespace json = boost::json;

constexpr std::int64_t kNow = 1'700'000'000;
constexpr std::int64_t kHour = 3600;
// The HS256 secret of most tests.
const std::string& secret() {
  static const std::string kSecret(kMinHmacSecretBytes, 's');
  return kSecret;
}

std::string unb64(std::string_view text) {
  Result<std::string> bytes = base64url_decode(text);
  EXPECT_TRUE(bytes.ok()) << text;
  return bytes.ok() ? *bytes : std::string();
}

// The RFC 7515 Appendix A payload: {"iss":"joe",\r\n "exp":1300819380,\r\n
// "http://example.com/is_root":true}.
constexpr std::string_view kRfcPayload =
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlf"
    "Q";
constexpr std::int64_t kRfcExp = 1300819380;

JwtChecks rfc_checks() {
  return {.now_s = kRfcExp - 1, .issuer = "joe"};
}

JwtChecks checks_at(std::int64_t now_s) {
  return {.now_s = now_s};
}

json::object claims_valid_for_an_hour() {
  return {{"iss", "herald"}, {"sub", "user-1"}, {"iat", kNow}, {"exp", kNow + kHour}};
}

// A token over any header and claims text, signed with HS256 under `secret`; for the malformed
// tokens the signer refuses to produce.
std::string hs256_token(std::string_view header, std::string_view claims,
                        const std::string& key = secret()) {
  std::string input = base64url_encode(header) + "." + base64url_encode(claims);
  unsigned char tag[EVP_MAX_MD_SIZE];
  unsigned int tag_bytes = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), tag, &tag_bytes);
  return input + "." + base64url_encode({reinterpret_cast<const char*>(tag), tag_bytes});
}

JwtVerifier hmac_verifier() {
  Result<JwtVerifier> v = JwtVerifier::hmac(secret());
  EXPECT_TRUE(v.ok());
  return std::move(v).value();
}

// A signer and the verifier of its public half, for each algorithm.
struct KeyPairCase {
  JwtAlgorithm algorithm;
  std::string private_pem;  // empty for HS256
};

std::pair<JwtSigner, JwtVerifier> pair_for(const KeyPairCase& c) {
  if (c.private_pem.empty()) {
    return {*JwtSigner::hmac(secret()), *JwtVerifier::hmac(secret())};
  }
  return {*JwtSigner::from_pem(c.private_pem),
          *JwtVerifier::from_pem(testing::public_pem_of(c.private_pem))};
}

class JwtEachAlgorithm : public ::testing::TestWithParam<JwtAlgorithm> {
 protected:
  KeyPairCase key_case() const {
    switch (GetParam()) {
      case JwtAlgorithm::kEs256: return {GetParam(), testing::ec_private_pem("P-256")};
      case JwtAlgorithm::kRs256: return {GetParam(), testing::rsa_private_pem(kMinRsaKeyBits)};
      case JwtAlgorithm::kHs256: return {GetParam(), ""};
    }
    return {};
  }
};

TEST_P(JwtEachAlgorithm, SignedTokenVerifiesAndReturnsHeaderAndClaims) {
  const auto [signer, verifier] = pair_for(key_case());
  EXPECT_EQ(signer.algorithm(), GetParam());
  EXPECT_EQ(verifier.algorithm(), GetParam());
  const Result<std::string> token = signer.sign(claims_valid_for_an_hour(), {{"kid", "key-7"}});
  ASSERT_TRUE(token.ok()) << token.status().to_string();
  const Result<VerifiedJwt> verified = verifier.verify(*token, checks_at(kNow));
  ASSERT_TRUE(verified.ok()) << verified.status().to_string();
  EXPECT_EQ(verified->header.at("alg").as_string(), jwt_algorithm_name(GetParam()));
  EXPECT_EQ(verified->header.at("typ").as_string(), "JWT");
  EXPECT_EQ(verified->header.at("kid").as_string(), "key-7");
  EXPECT_EQ(verified->claims, claims_valid_for_an_hour());
}

TEST_P(JwtEachAlgorithm, AnotherKeyOfTheSameKindIsRefused) {
  const auto [signer, verifier_a] = pair_for(key_case());
  const auto [other_signer, verifier_b] =
      pair_for(GetParam() == JwtAlgorithm::kHs256 ? KeyPairCase{} : key_case());
  const Result<std::string> token = signer.sign(claims_valid_for_an_hour());
  ASSERT_TRUE(token.ok());
  if (GetParam() == JwtAlgorithm::kHs256) {
    const Result<JwtVerifier> other = JwtVerifier::hmac(std::string(kMinHmacSecretBytes, 't'));
    ASSERT_TRUE(other.ok());
    EXPECT_FALSE(other->verify(*token, checks_at(kNow)).ok());
    return;
  }
  const Result<VerifiedJwt> verified = verifier_b.verify(*token, checks_at(kNow));
  ASSERT_FALSE(verified.ok());
  EXPECT_EQ(verified.status().code(), Code::kInvalidArgument);
  EXPECT_NE(verified.status().message().find("signature does not verify"), std::string::npos);
}

TEST_P(JwtEachAlgorithm, TamperedClaimsAreRefused) {
  const auto [signer, verifier] = pair_for(key_case());
  const Result<std::string> token = signer.sign(claims_valid_for_an_hour());
  ASSERT_TRUE(token.ok());
  json::object forged = claims_valid_for_an_hour();
  forged["sub"] = "admin";
  const std::size_t first = token->find('.');
  const std::size_t second = token->find('.', first + 1);
  const std::string tampered = token->substr(0, first + 1) +
                               base64url_encode(json::serialize(forged)) + token->substr(second);
  const Result<VerifiedJwt> verified = verifier.verify(tampered, checks_at(kNow));
  ASSERT_FALSE(verified.ok());
  EXPECT_NE(verified.status().message().find("signature does not verify"), std::string::npos);
}

TEST_P(JwtEachAlgorithm, TamperedSignatureIsRefused) {
  const auto [signer, verifier] = pair_for(key_case());
  const Result<std::string> token = signer.sign(claims_valid_for_an_hour());
  ASSERT_TRUE(token.ok());
  const std::size_t dot = token->rfind('.');
  std::string signature = unb64(token->substr(dot + 1));
  signature[signature.size() / 2] = static_cast<char>(signature[signature.size() / 2] ^ 0x40);
  const std::string tampered = token->substr(0, dot + 1) + base64url_encode(signature);
  EXPECT_FALSE(verifier.verify(tampered, checks_at(kNow)).ok());
}

INSTANTIATE_TEST_SUITE_P(Algorithms, JwtEachAlgorithm,
                         ::testing::Values(JwtAlgorithm::kEs256, JwtAlgorithm::kRs256,
                                           JwtAlgorithm::kHs256),
                         [](const auto& info) {
                           return std::string(jwt_algorithm_name(info.param));
                         });

TEST(Jwt, Rfc7515AppendixA1Hs256VectorVerifies) {
  const Result<JwtVerifier> verifier = JwtVerifier::hmac(unb64(
      "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"));
  ASSERT_TRUE(verifier.ok());
  const std::string token = std::string("eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.") +
                            std::string(kRfcPayload) +
                            ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
  const Result<VerifiedJwt> verified = verifier->verify(token, rfc_checks());
  ASSERT_TRUE(verified.ok()) << verified.status().to_string();
  EXPECT_EQ(verified->claims.at("exp").as_int64(), kRfcExp);
  EXPECT_TRUE(verified->claims.at("http://example.com/is_root").as_bool());
}

TEST(Jwt, Rfc7515AppendixA2Rs256VectorVerifies) {
  const Result<PublicKey> key = PublicKey::from_rsa_numbers(
      unb64("ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1"
            "Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpa"
            "SHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4"
            "LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ"),
      unb64("AQAB"));
  ASSERT_TRUE(key.ok());
  const JwtVerifier verifier = JwtVerifier::from_key(*key);
  EXPECT_EQ(verifier.algorithm(), JwtAlgorithm::kRs256);
  const std::string token = std::string("eyJhbGciOiJSUzI1NiJ9.") + std::string(kRfcPayload) +
                            ".cC4hiUPoj9Eetdgtv3hF80EGrhuB__"
                            "dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5"
                            "jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_"
                            "nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1"
                            "L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-"
                            "eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYE"
                            "UipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";
  const Result<VerifiedJwt> verified = verifier.verify(token, rfc_checks());
  ASSERT_TRUE(verified.ok()) << verified.status().to_string();
  EXPECT_EQ(verified->claims.at("iss").as_string(), "joe");
}

TEST(Jwt, Rfc7515AppendixA3Es256VectorVerifies) {
  const Result<PublicKey> key =
      PublicKey::from_p256_point("\x04" + unb64("f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU") +
                                 unb64("x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"));
  ASSERT_TRUE(key.ok());
  const JwtVerifier verifier = JwtVerifier::from_key(*key);
  EXPECT_EQ(verifier.algorithm(), JwtAlgorithm::kEs256);
  const std::string token =
      std::string("eyJhbGciOiJFUzI1NiJ9.") + std::string(kRfcPayload) +
      ".DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
  const Result<VerifiedJwt> verified = verifier.verify(token, rfc_checks());
  ASSERT_TRUE(verified.ok()) << verified.status().to_string();
  // The same vector, once past its exp, is refused for that reason alone.
  const Result<VerifiedJwt> late = verifier.verify(token, {.now_s = kRfcExp, .issuer = "joe"});
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(late.status().message().find("expired at 1300819380"), std::string::npos);
}

TEST(Jwt, Es256SignatureIsExactly64RawBytes) {
  const Result<JwtSigner> signer = JwtSigner::from_pem(testing::ec_private_pem("P-256"));
  ASSERT_TRUE(signer.ok());
  // DER signatures vary between 70 and 72 bytes; r || s never does.
  for (int i = 0; i < 32; ++i) {
    const Result<std::string> token = signer->sign({{"n", i}});
    ASSERT_TRUE(token.ok());
    EXPECT_EQ(unb64(token->substr(token->rfind('.') + 1)).size(), kEs256SignatureBytes);
  }
}

TEST(Jwt, Es256SignatureOfAnotherLengthIsRefused) {
  const std::string pem = testing::ec_private_pem("P-256");
  const Result<JwtSigner> signer = JwtSigner::from_pem(pem);
  const Result<JwtVerifier> verifier = JwtVerifier::from_pem(testing::public_pem_of(pem));
  ASSERT_TRUE(signer.ok() && verifier.ok());
  const Result<std::string> token = signer->sign(claims_valid_for_an_hour());
  ASSERT_TRUE(token.ok());
  const std::size_t dot = token->rfind('.');
  const std::string signature = unb64(token->substr(dot + 1));
  const Result<VerifiedJwt> longer = verifier->verify(
      token->substr(0, dot + 1) + base64url_encode(signature + '\0'), checks_at(kNow));
  ASSERT_FALSE(longer.ok());
  EXPECT_NE(longer.status().message().find("has 64 bytes"), std::string::npos);
}

TEST(Jwt, AlgNoneIsRefused) {
  const std::string claims = json::serialize(claims_valid_for_an_hour());
  const std::string unsigned_token =
      base64url_encode(R"({"alg":"none"})") + "." + base64url_encode(claims) + ".";
  const Result<VerifiedJwt> verified = hmac_verifier().verify(unsigned_token, checks_at(kNow));
  ASSERT_FALSE(verified.ok());
  EXPECT_EQ(verified.status().code(), Code::kInvalidArgument);
  EXPECT_NE(verified.status().message().find("alg \"none\""), std::string::npos);
  // Nor with a valid HS256 signature appended.
  EXPECT_FALSE(
      hmac_verifier().verify(hs256_token(R"({"alg":"none"})", claims), checks_at(kNow)).ok());
}

TEST(Jwt, Hs256SignedWithTheRsaPublicKeyAsSecretIsRefused) {
  // The algorithm-confusion attack: the public key is public, so an attacker can HMAC with it.
  const std::string public_pem = testing::public_pem_of(testing::rsa_private_pem(kMinRsaKeyBits));
  const Result<JwtSigner> attacker = JwtSigner::hmac(public_pem);
  ASSERT_TRUE(attacker.ok());
  const Result<std::string> forged = attacker->sign(claims_valid_for_an_hour());
  ASSERT_TRUE(forged.ok());
  const Result<JwtVerifier> verifier = JwtVerifier::from_pem(public_pem);
  ASSERT_TRUE(verifier.ok());
  const Result<VerifiedJwt> verified = verifier->verify(*forged, checks_at(kNow));
  ASSERT_FALSE(verified.ok());
  EXPECT_NE(verified.status().message().find("alg is \"HS256\"; this key verifies only RS256"),
            std::string::npos);
}

TEST(Jwt, Hs256SignedWithTheEcPublicKeyAsSecretIsRefused) {
  const std::string public_pem = testing::public_pem_of(testing::ec_private_pem("P-256"));
  const Result<std::string> forged = JwtSigner::hmac(public_pem)->sign(claims_valid_for_an_hour());
  ASSERT_TRUE(forged.ok());
  const Result<VerifiedJwt> verified =
      JwtVerifier::from_pem(public_pem)->verify(*forged, checks_at(kNow));
  ASSERT_FALSE(verified.ok());
  EXPECT_NE(verified.status().message().find("verifies only ES256"), std::string::npos);
}

TEST(Jwt, AnotherAsymmetricAlgorithmIsRefused) {
  const Result<JwtSigner> es = JwtSigner::from_pem(testing::ec_private_pem("P-256"));
  ASSERT_TRUE(es.ok());
  const Result<std::string> token = es->sign(claims_valid_for_an_hour());
  const Result<JwtVerifier> rs =
      JwtVerifier::from_pem(testing::public_pem_of(testing::rsa_private_pem(kMinRsaKeyBits)));
  ASSERT_TRUE(token.ok() && rs.ok());
  const Result<VerifiedJwt> verified = rs->verify(*token, checks_at(kNow));
  ASSERT_FALSE(verified.ok());
  EXPECT_NE(verified.status().message().find("alg is \"ES256\""), std::string::npos);
}

TEST(Jwt, ExpiredTokenIsRefused) {
  const Result<std::string> token = JwtSigner::hmac(secret())->sign(claims_valid_for_an_hour());
  ASSERT_TRUE(token.ok());
  EXPECT_TRUE(hmac_verifier().verify(*token, checks_at(kNow + kHour - 1)).ok());
  const Result<VerifiedJwt> late = hmac_verifier().verify(*token, checks_at(kNow + kHour));
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(late.status().message().find("expired"), std::string::npos);
}

TEST(Jwt, ExpiryWithinTheClockSkewIsAccepted) {
  const Result<std::string> token = JwtSigner::hmac(secret())->sign(claims_valid_for_an_hour());
  ASSERT_TRUE(token.ok());
  const JwtChecks skewed{.now_s = kNow + kHour + 59, .clock_skew_s = 60};
  EXPECT_TRUE(hmac_verifier().verify(*token, skewed).ok());
  const JwtChecks beyond{.now_s = kNow + kHour + 60, .clock_skew_s = 60};
  EXPECT_EQ(hmac_verifier().verify(*token, beyond).status().code(), Code::kFailedPrecondition);
}

TEST(Jwt, NotYetValidTokenIsRefusedOutsideTheSkew) {
  const Result<std::string> token =
      JwtSigner::hmac(secret())->sign({{"nbf", kNow + 100}, {"exp", kNow + kHour}});
  ASSERT_TRUE(token.ok());
  const Result<VerifiedJwt> early = hmac_verifier().verify(*token, checks_at(kNow));
  ASSERT_FALSE(early.ok());
  EXPECT_EQ(early.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(early.status().message().find("not valid before"), std::string::npos);
  EXPECT_TRUE(hmac_verifier().verify(*token, {.now_s = kNow, .clock_skew_s = 100}).ok());
  EXPECT_TRUE(hmac_verifier().verify(*token, checks_at(kNow + 100)).ok());
}

TEST(Jwt, TokenIssuedInTheFutureIsRefused) {
  const Result<std::string> token =
      JwtSigner::hmac(secret())->sign({{"iat", kNow + 120}, {"exp", kNow + kHour}});
  ASSERT_TRUE(token.ok());
  const Result<VerifiedJwt> verified =
      hmac_verifier().verify(*token, {.now_s = kNow, .clock_skew_s = 60});
  ASSERT_FALSE(verified.ok());
  EXPECT_NE(verified.status().message().find("issued in the future"), std::string::npos);
  EXPECT_TRUE(hmac_verifier().verify(*token, {.now_s = kNow, .clock_skew_s = 120}).ok());
}

TEST(Jwt, MissingExpIsRefusedUnlessTheVerifierBoundsTheAgeInstead) {
  // An APNs provider token: {iss, iat}, valid for an hour after iat.
  const Result<std::string> token =
      JwtSigner::hmac(secret())->sign({{"iss", "TEAM123456"}, {"iat", kNow}});
  ASSERT_TRUE(token.ok());
  const Result<VerifiedJwt> strict = hmac_verifier().verify(*token, checks_at(kNow));
  ASSERT_FALSE(strict.ok());
  EXPECT_NE(strict.status().message().find("no \"exp\""), std::string::npos);
  const JwtChecks apns{.now_s = kNow + kHour, .require_exp = false, .max_age_s = kHour};
  EXPECT_TRUE(hmac_verifier().verify(*token, apns).ok());
  JwtChecks stale = apns;
  stale.now_s = kNow + kHour + 1;
  const Result<VerifiedJwt> old = hmac_verifier().verify(*token, stale);
  ASSERT_FALSE(old.ok());
  EXPECT_EQ(old.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(old.status().message().find("more than 3600 s before now"), std::string::npos);
  // Bounding the age needs an iat.
  const Result<std::string> no_iat = JwtSigner::hmac(secret())->sign({{"iss", "TEAM123456"}});
  ASSERT_TRUE(no_iat.ok());
  EXPECT_FALSE(hmac_verifier().verify(*no_iat, apns).ok());
}

TEST(Jwt, NonNumericTimeClaimIsRefused) {
  const Result<std::string> token =
      JwtSigner::hmac(secret())->sign({{"exp", std::to_string(kNow + kHour)}});
  ASSERT_TRUE(token.ok());
  const Result<VerifiedJwt> verified = hmac_verifier().verify(*token, checks_at(kNow));
  ASSERT_FALSE(verified.ok());
  EXPECT_NE(verified.status().message().find("not a NumericDate"), std::string::npos);
}

TEST(Jwt, AudienceMustMatchAsStringOrArrayMember) {
  json::object claims = claims_valid_for_an_hour();
  claims["aud"] = "https://push.example.net";
  const Result<std::string> token = JwtSigner::hmac(secret())->sign(claims);
  ASSERT_TRUE(token.ok());
  JwtChecks checks = checks_at(kNow);
  checks.audience = "https://push.example.net";
  EXPECT_TRUE(hmac_verifier().verify(*token, checks).ok());
  checks.audience = "https://other.example.net";
  const Result<VerifiedJwt> wrong = hmac_verifier().verify(*token, checks);
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), Code::kInvalidArgument);
  EXPECT_NE(wrong.status().message().find("audience"), std::string::npos);

  claims["aud"] = json::array{"https://a.example", "https://other.example.net"};
  const Result<std::string> many = JwtSigner::hmac(secret())->sign(claims);
  ASSERT_TRUE(many.ok());
  EXPECT_TRUE(hmac_verifier().verify(*many, checks).ok());

  const Result<std::string> none = JwtSigner::hmac(secret())->sign(claims_valid_for_an_hour());
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(hmac_verifier().verify(*none, checks).ok());
}

TEST(Jwt, IssuerMustMatch) {
  const Result<std::string> token = JwtSigner::hmac(secret())->sign(claims_valid_for_an_hour());
  ASSERT_TRUE(token.ok());
  JwtChecks checks = checks_at(kNow);
  checks.issuer = "herald";
  EXPECT_TRUE(hmac_verifier().verify(*token, checks).ok());
  checks.issuer = "mallory";
  const Result<VerifiedJwt> wrong = hmac_verifier().verify(*token, checks);
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("issuer is \"herald\""), std::string::npos);
}

TEST(Jwt, OversizeTokenIsRefusedAndNeverSigned) {
  json::object claims = claims_valid_for_an_hour();
  claims["padding"] = std::string(kMaxJwtBytes, 'x');
  const Result<std::string> signed_token = JwtSigner::hmac(secret())->sign(claims);
  ASSERT_FALSE(signed_token.ok());
  EXPECT_EQ(signed_token.status().code(), Code::kResourceExhausted);
  const std::string token = hs256_token(R"({"alg":"HS256"})", json::serialize(claims));
  const Result<VerifiedJwt> verified = hmac_verifier().verify(token, checks_at(kNow));
  ASSERT_FALSE(verified.ok());
  EXPECT_EQ(verified.status().code(), Code::kResourceExhausted);
}

TEST(Jwt, MalformedBase64urlIsRefused) {
  const std::string good = hs256_token(R"({"alg":"HS256"})", R"({"exp":1800000000})");
  ASSERT_TRUE(hmac_verifier().verify(good, checks_at(kNow)).ok());
  const std::size_t dot = good.find('.');
  // Standard base64 characters, padding and whitespace are all refused, in any segment.
  for (const std::string& bad :
       {good.substr(0, dot) + "=" + good.substr(dot), "+" + good.substr(1),
        good.substr(0, dot + 1) + " " + good.substr(dot + 1), good + "="}) {
    const Result<VerifiedJwt> verified = hmac_verifier().verify(bad, checks_at(kNow));
    ASSERT_FALSE(verified.ok()) << bad;
    EXPECT_EQ(verified.status().code(), Code::kInvalidArgument) << bad;
  }
  const Result<VerifiedJwt> padded = hmac_verifier().verify(good + "=", checks_at(kNow));
  EXPECT_NE(padded.status().message().find("signature"), std::string::npos);
}

TEST(Jwt, WrongSegmentCountIsRefused) {
  const std::string good = hs256_token(R"({"alg":"HS256"})", R"({"exp":1800000000})");
  for (const std::string& bad : {std::string(), std::string("abc"), good.substr(0, good.rfind('.')),
                                 good + ".e30", "." + good.substr(good.find('.'))}) {
    const Result<VerifiedJwt> verified = hmac_verifier().verify(bad, checks_at(kNow));
    ASSERT_FALSE(verified.ok()) << bad;
    EXPECT_EQ(verified.status().code(), Code::kInvalidArgument);
  }
}

TEST(Jwt, HeaderOrClaimsThatAreNotJsonObjectsAreRefused) {
  EXPECT_FALSE(hmac_verifier().verify(hs256_token("not json", "{}"), checks_at(kNow)).ok());
  EXPECT_FALSE(
      hmac_verifier().verify(hs256_token(R"({"alg":"HS256"})", "[1,2]"), checks_at(kNow)).ok());
  EXPECT_FALSE(
      hmac_verifier().verify(hs256_token(R"({"alg":"HS256"})", "{\"exp\":"), checks_at(kNow)).ok());
  EXPECT_FALSE(hmac_verifier().verify(hs256_token(R"({"alg":5})", "{}"), checks_at(kNow)).ok());
  std::string deep = R"({"exp":1800000000,"a":)";
  for (std::size_t i = 0; i < kMaxJwtJsonDepth; ++i) {
    deep += "[";
  }
  deep += std::string(kMaxJwtJsonDepth, ']') + "}";
  const Result<VerifiedJwt> verified =
      hmac_verifier().verify(hs256_token(R"({"alg":"HS256"})", deep), checks_at(kNow));
  ASSERT_FALSE(verified.ok());
  EXPECT_NE(verified.status().message().find("nests deeper"), std::string::npos);
}

TEST(Jwt, CriticalHeaderExtensionsAreRefused) {
  const std::string token =
      hs256_token(R"({"alg":"HS256","crit":["exp"],"exp":1})", R"({"exp":1800000000})");
  const Result<VerifiedJwt> verified = hmac_verifier().verify(token, checks_at(kNow));
  ASSERT_FALSE(verified.ok());
  EXPECT_NE(verified.status().message().find("crit"), std::string::npos);
}

TEST(Jwt, ShortHmacSecretIsRefused) {
  EXPECT_FALSE(JwtSigner::hmac(std::string(kMinHmacSecretBytes - 1, 's')).ok());
  EXPECT_FALSE(JwtVerifier::hmac("").ok());
}

TEST(Jwt, HeaderFieldsCannotOverrideTheAlgorithm) {
  const Result<std::string> token =
      JwtSigner::hmac(secret())->sign(claims_valid_for_an_hour(), {{"alg", "none"}});
  ASSERT_FALSE(token.ok());
  EXPECT_EQ(token.status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace herald::crypto
