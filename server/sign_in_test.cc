#include "server/sign_in.h"

#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>

#include <boost/json.hpp>
#include <functional>
#include <string>

#include "crypto/base64url.h"
#include "crypto/keys.h"
#include "crypto/test_keys.h"

namespace herald::server {
namespace {

namespace json = boost::json;

constexpr std::int64_t kNow = 1'800'000'000;
constexpr char kSecret[] = "an-app-backend-shared-secret-of-40-bytes!";

json::object claims(std::int64_t exp = kNow + 600) {
  return json::object{{"sub", "alice"}, {"device_id", "alice-web"}, {"exp", exp}, {"iat", kNow}};
}

std::string hs256(const json::object& c, const std::string& secret = kSecret) {
  return crypto::JwtSigner::hmac(secret).value().sign(c).value();
}

// The HS256 verifier of kSecret, with `tweak` applied to its configuration.
SignInVerifier hmac_verifier(const std::function<void(SignInConfig&)>& tweak = {}) {
  SignInConfig config;
  config.hs256_secret = kSecret;
  if (tweak) tweak(config);
  return SignInVerifier::create(config).value();
}

// The JWK of a public key, with `kid`.
json::object jwk_of(const crypto::PublicKey& key, const std::string& kid) {
  if (key.type() == crypto::KeyType::kEcP256) {
    const std::string point = key.p256_point().value();
    return json::object{{"kty", "EC"},
                        {"crv", "P-256"},
                        {"kid", kid},
                        {"x", crypto::base64url_encode(point.substr(1, 32))},
                        {"y", crypto::base64url_encode(point.substr(33, 32))}};
  }
  const auto number = [&](const char* name) {
    BIGNUM* bn = nullptr;
    EXPECT_EQ(EVP_PKEY_get_bn_param(key.native(), name, &bn), 1);
    std::string bytes(static_cast<std::size_t>(BN_num_bytes(bn)), '\0');
    BN_bn2bin(bn, reinterpret_cast<unsigned char*>(bytes.data()));
    BN_free(bn);
    return crypto::base64url_encode(bytes);
  };
  return json::object{{"kty", "RSA"},
                      {"kid", kid},
                      {"n", number(OSSL_PKEY_PARAM_RSA_N)},
                      {"e", number(OSSL_PKEY_PARAM_RSA_E)}};
}

TEST(SignIn, ValidHs256TokenSignsInItsUserAndDevice) {
  SignInVerifier v = hmac_verifier();
  json::object c = claims();
  c["platform"] = "ios";
  c["name"] = "Alice";
  Result<SignedInDevice> d = v.verify(hs256(c), kNow);
  ASSERT_TRUE(d.ok()) << d.status().to_string();
  EXPECT_EQ(d->user_id, "alice");
  EXPECT_EQ(d->device_id, "alice-web");
  EXPECT_EQ(d->platform, "ios");
  EXPECT_EQ(d->display_name, "Alice");
  EXPECT_EQ(d->expires_s, kNow + 600);
  // Without a platform claim the device is a web one.
  EXPECT_EQ(v.verify(hs256(claims()), kNow)->platform, "web");
}

TEST(SignIn, ExpiredTokenIsRefusedPastTheSkewAndAcceptedWithinIt) {
  SignInVerifier v = hmac_verifier([](SignInConfig& c) { c.clock_skew_s = 30; });
  const std::string token = hs256(claims(kNow));
  EXPECT_TRUE(v.verify(token, kNow + 29).ok());
  Result<SignedInDevice> late = v.verify(token, kNow + 30);
  EXPECT_EQ(late.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(late.status().message().find("expired"), std::string::npos);
  // Not yet valid: nbf beyond now + skew.
  json::object early = claims();
  early["nbf"] = kNow + 31;
  EXPECT_EQ(v.verify(hs256(early), kNow).status().code(), Code::kFailedPrecondition);
  early["nbf"] = kNow + 30;
  EXPECT_TRUE(v.verify(hs256(early), kNow).ok());
}

TEST(SignIn, TokenWithoutExpIsRefused) {
  json::object c = claims();
  c.erase("exp");
  EXPECT_FALSE(hmac_verifier().verify(hs256(c), kNow).ok());
}

TEST(SignIn, WrongSignatureIsRefused) {
  const std::string other = hs256(claims(), "another-secret-that-is-also-long-enough-x");
  Result<SignedInDevice> d = hmac_verifier().verify(other, kNow);
  EXPECT_EQ(d.status().code(), Code::kInvalidArgument);
  // A token whose claims were edited after signing.
  std::string token = hs256(claims());
  const std::size_t first = token.find('.');
  const std::size_t second = token.find('.', first + 1);
  json::object forged = claims();
  forged["sub"] = "mallory";
  token.replace(first + 1, second - first - 1, crypto::base64url_encode(json::serialize(forged)));
  EXPECT_EQ(hmac_verifier().verify(token, kNow).status().code(), Code::kInvalidArgument);
}

TEST(SignIn, AudienceAndIssuerAreCheckedWhenConfigured) {
  SignInVerifier v = hmac_verifier([](SignInConfig& c) {
    c.audience = "herald";
    c.issuer = "https://app.example";
  });
  json::object c = claims();
  EXPECT_FALSE(v.verify(hs256(c), kNow).ok()) << "no aud, no iss";
  c["aud"] = "another-service";
  c["iss"] = "https://app.example";
  Result<SignedInDevice> wrong_aud = v.verify(hs256(c), kNow);
  EXPECT_EQ(wrong_aud.status().code(), Code::kInvalidArgument);
  EXPECT_NE(wrong_aud.status().message().find("aud"), std::string::npos)
      << wrong_aud.status().message();
  c["aud"] = json::array{"another-service", "herald"};
  EXPECT_TRUE(v.verify(hs256(c), kNow).ok());
  c["iss"] = "https://evil.example";
  EXPECT_FALSE(v.verify(hs256(c), kNow).ok());
}

TEST(SignIn, AlgNoneIsRefused) {
  const std::string header = crypto::base64url_encode(R"({"alg":"none","typ":"JWT"})");
  const std::string body = crypto::base64url_encode(json::serialize(claims()));
  Result<SignedInDevice> d = hmac_verifier().verify(header + "." + body + ".", kNow);
  EXPECT_EQ(d.status().code(), Code::kInvalidArgument);
}

TEST(SignIn, Hs256TokenSignedWithTheRsaPublicKeyIsRefused) {
  // Algorithm confusion: the attacker knows the public key and uses its PEM as an HMAC secret.
  const std::string private_pem = crypto::testing::rsa_private_pem(2048);
  const std::string public_pem = crypto::testing::public_pem_of(private_pem);
  SignInConfig config;
  config.public_key_pem = public_pem;
  SignInVerifier v = SignInVerifier::create(config).value();
  EXPECT_TRUE(
      v.verify(crypto::JwtSigner::from_pem(private_pem).value().sign(claims()).value(), kNow).ok());
  Result<SignedInDevice> d = v.verify(hs256(claims(), public_pem), kNow);
  EXPECT_EQ(d.status().code(), Code::kInvalidArgument);
  EXPECT_NE(d.status().message().find("HS256"), std::string::npos) << d.status().message();
}

TEST(SignIn, Es256PublicKeyVerifiesItsTokens) {
  const std::string private_pem = crypto::testing::ec_private_pem("P-256");
  SignInConfig config;
  config.public_key_pem = crypto::testing::public_pem_of(private_pem);
  SignInVerifier v = SignInVerifier::create(config).value();
  EXPECT_EQ(v.describe().substr(0, 9), "ES256 key");
  const std::string token = crypto::JwtSigner::from_pem(private_pem).value().sign(claims()).value();
  EXPECT_TRUE(v.verify(token, kNow).ok());
  const std::string other = crypto::testing::ec_private_pem("P-256");
  EXPECT_FALSE(
      v.verify(crypto::JwtSigner::from_pem(other).value().sign(claims()).value(), kNow).ok());
}

TEST(SignIn, JwksPicksTheKeyByKid) {
  const std::string ec_pem = crypto::testing::ec_private_pem("P-256");
  const std::string rsa_pem = crypto::testing::rsa_private_pem(2048);
  const crypto::PublicKey ec_public =
      crypto::PublicKey::from_pem(crypto::testing::public_pem_of(ec_pem)).value();
  const crypto::PublicKey rsa_public =
      crypto::PublicKey::from_pem(crypto::testing::public_pem_of(rsa_pem)).value();
  SignInConfig config;
  config.jwks_json = json::serialize(json::object{
      {"keys", json::array{jwk_of(ec_public, "ec-1"), jwk_of(rsa_public, "rsa-1"),
                           json::object{{"kty", "RSA"}, {"use", "enc"}, {"kid", "enc-1"}}}}});
  Result<SignInVerifier> v = SignInVerifier::create(config);
  ASSERT_TRUE(v.ok()) << v.status().to_string();
  EXPECT_EQ(v->describe().substr(0, 14), "JWKS of 2 keys");
  const auto sign = [&](const std::string& pem, const std::string& kid) {
    return crypto::JwtSigner::from_pem(pem).value().sign(claims(), {{"kid", kid}}).value();
  };
  EXPECT_TRUE(v->verify(sign(ec_pem, "ec-1"), kNow).ok());
  EXPECT_TRUE(v->verify(sign(rsa_pem, "rsa-1"), kNow).ok());
  EXPECT_FALSE(v->verify(sign(ec_pem, "rsa-1"), kNow).ok()) << "a kid names another key";
  EXPECT_FALSE(v->verify(sign(ec_pem, "unknown"), kNow).ok());
  // Without a kid, a set of two keys cannot tell which one.
  EXPECT_FALSE(
      v->verify(crypto::JwtSigner::from_pem(ec_pem).value().sign(claims()).value(), kNow).ok());
}

TEST(SignIn, BadJwksDocumentsAreRefusedByName) {
  EXPECT_FALSE(parse_jwks("not json").ok());
  EXPECT_FALSE(parse_jwks(R"({"keys": {}})").ok());
  EXPECT_FALSE(parse_jwks(R"({"keys": []})").ok());
  const Result<std::map<std::string, crypto::PublicKey, std::less<>>> oct =
      parse_jwks(R"({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "s"}]})");
  EXPECT_NE(oct.status().message().find("kty oct"), std::string::npos) << oct.status().message();
  EXPECT_FALSE(
      parse_jwks(R"({"keys": [{"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}]})").ok());
  // A point that is not on the curve.
  const std::string zeros = crypto::base64url_encode(std::string(32, '\0'));
  EXPECT_FALSE(parse_jwks(R"({"keys": [{"kty": "EC", "crv": "P-256", "x": ")" + zeros +
                          R"(", "y": ")" + zeros + R"("}]})")
                   .ok());
}

TEST(SignIn, ClaimsThatNameNoValidUserOrDeviceAreRefused) {
  SignInVerifier v = hmac_verifier();
  json::object c = claims();
  c["sub"] = "direct:alice";
  EXPECT_FALSE(v.verify(hs256(c), kNow).ok()) << "':' is reserved";
  c["sub"] = "";
  EXPECT_FALSE(v.verify(hs256(c), kNow).ok());
  c["sub"] = std::string(65, 'a');
  EXPECT_FALSE(v.verify(hs256(c), kNow).ok());
  c = claims();
  c.erase("device_id");
  EXPECT_FALSE(v.verify(hs256(c), kNow).ok());
  c = claims();
  c["platform"] = "symbian";
  EXPECT_FALSE(v.verify(hs256(c), kNow).ok());
  // Another device claim name, as configured.
  SignInVerifier did = hmac_verifier([](SignInConfig& c) { c.device_claim = "did"; });
  c = claims();
  c["did"] = "tablet";
  EXPECT_EQ(did.verify(hs256(c), kNow)->device_id, "tablet");
}

TEST(SignIn, ConfigurationNeedsExactlyOneKeySource) {
  EXPECT_FALSE(SignInVerifier::create({}).ok());
  SignInConfig two;
  two.hs256_secret = kSecret;
  two.public_key_pem = crypto::testing::public_pem_of(crypto::testing::ec_private_pem("P-256"));
  EXPECT_FALSE(SignInVerifier::create(two).ok());
  SignInConfig short_secret;
  short_secret.hs256_secret = "short";
  EXPECT_FALSE(SignInVerifier::create(short_secret).ok());
  SignInConfig skew;
  skew.hs256_secret = kSecret;
  skew.clock_skew_s = crypto::kMaxJwtClockSkewSeconds + 1;
  EXPECT_FALSE(SignInVerifier::create(skew).ok());
  SignInConfig sub_claim;
  sub_claim.hs256_secret = kSecret;
  sub_claim.device_claim = "sub";
  EXPECT_FALSE(SignInVerifier::create(sub_claim).ok());
}

TEST(SignIn, OversizeTokenIsRefusedBeforeParsing) {
  EXPECT_EQ(
      hmac_verifier().verify(std::string(crypto::kMaxJwtBytes + 1, 'a'), kNow).status().code(),
      Code::kResourceExhausted);
}

}  // namespace
}  // namespace herald::server
