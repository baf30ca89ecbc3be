#include "push/vapid.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <regex>

#include "crypto/base64url.h"
#include "crypto/test_keys.h"

namespace herald::push {
namespace {

constexpr std::int64_t kNow = 1'700'000'000;
constexpr std::string_view kEndpoint = "https://push.example.net/wpush/v2/gAAAAABk";
constexpr std::string_view kOrigin = "https://push.example.net";
constexpr std::string_view kSubject = "mailto:ops@herald.example";

VapidKey fresh_key() {
  Result<VapidKey> key = VapidKey::generate();
  EXPECT_TRUE(key.ok());
  return std::move(key).value();
}

std::string header_for(const VapidKey& key, std::int64_t now_s = kNow) {
  Result<std::string> header = key.authorization(kEndpoint, kSubject, now_s);
  EXPECT_TRUE(header.ok()) << header.status().to_string();
  return header.ok() ? *header : std::string();
}

TEST(Vapid, EndpointOriginKeepsSchemeHostAndAnyNonDefaultPort) {
  const std::pair<std::string_view, std::string_view> cases[] = {
      {"https://fcm.googleapis.com/fcm/send/abc:def", "https://fcm.googleapis.com"},
      {"https://Updates.Push.Services.Mozilla.com:443/wpush/v2/x",
       "https://updates.push.services.mozilla.com"},
      {"HTTPS://web.push.apple.com?token=1", "https://web.push.apple.com"},
      {"https://web.push.apple.com#frag", "https://web.push.apple.com"},
      {"http://127.0.0.1:8080/push/1", "http://127.0.0.1:8080"},
      {"http://localhost:80/push", "http://localhost"},
      {"https://push.example.net:80/", "https://push.example.net:80"},
      {"https://[::1]:8443/p", "https://[::1]:8443"},
      {"https://[2001:DB8::1]/p", "https://[2001:db8::1]"},
  };
  for (const auto& [endpoint, origin] : cases) {
    const Result<std::string> got = endpoint_origin(endpoint);
    ASSERT_TRUE(got.ok()) << endpoint << ": " << got.status().to_string();
    EXPECT_EQ(*got, origin) << endpoint;
  }
}

TEST(Vapid, EndpointOriginRefusesWhatIsNotAnHttpUrl) {
  for (const std::string_view endpoint :
       {"", "push.example.net/x", "ftp://push.example.net/x", "https://", "https:///x",
        "https://user:pw@push.example.net/x", "https://push.example.net:0/",
        "https://push.example.net:65536/", "https://push.example.net:/", "https://push example/",
        "https://push.example.net:44x/", "https://[::1/x", "https://[]/x", "https://[::1]x/"}) {
    const Result<std::string> got = endpoint_origin(endpoint);
    ASSERT_FALSE(got.ok()) << endpoint;
    EXPECT_EQ(got.status().code(), Code::kInvalidArgument) << endpoint;
  }
  const std::string huge = "https://push.example.net/" + std::string(kMaxPushEndpointBytes, 'x');
  EXPECT_EQ(endpoint_origin(huge).status().code(), Code::kResourceExhausted);
}

TEST(Vapid, AuthorizationHasTheVapidShapeAndTheUncompressedKey) {
  const VapidKey key = fresh_key();
  const std::string header = header_for(key);
  static const std::regex kShape(
      "vapid t=[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+, k=([A-Za-z0-9_-]+)");
  std::smatch match;
  ASSERT_TRUE(std::regex_match(header, match, kShape)) << header;
  EXPECT_EQ(match[1].str(), key.public_key_b64url());
  const Result<std::string> point = crypto::base64url_decode(key.public_key_b64url());
  ASSERT_TRUE(point.ok());
  EXPECT_EQ(point->size(), crypto::kP256PointBytes);
  EXPECT_EQ((*point)[0], '\x04');
}

TEST(Vapid, TokenVerifiesWithTheKKeyAndNamesTheEndpointOrigin) {
  const VapidKey key = fresh_key();
  const Result<VerifiedVapid> verified =
      verify_vapid_authorization(header_for(key), kOrigin, kNow, 0);
  ASSERT_TRUE(verified.ok()) << verified.status().to_string();
  EXPECT_EQ(verified->public_key_b64url, key.public_key_b64url());
  EXPECT_EQ(verified->jwt.header.at("alg").as_string(), "ES256");
  EXPECT_EQ(verified->jwt.header.at("typ").as_string(), "JWT");
  EXPECT_EQ(verified->jwt.claims.at("aud").as_string(), kOrigin);
  EXPECT_EQ(verified->jwt.claims.at("sub").as_string(), kSubject);
  EXPECT_EQ(verified->jwt.claims.at("exp").as_int64(), kNow + kVapidDefaultLifetimeSeconds);

  // The same token, checked independently with the k= key as a plain ES256 verifier.
  const std::string header = header_for(key);
  const std::string token = header.substr(8, header.find(',') - 8);
  const Result<crypto::PublicKey> k =
      crypto::PublicKey::from_p256_point(*crypto::base64url_decode(key.public_key_b64url()));
  ASSERT_TRUE(k.ok());
  const crypto::JwtChecks checks{.now_s = kNow, .audience = std::string(kOrigin)};
  EXPECT_TRUE(crypto::JwtVerifier::from_key(*k).verify(token, checks).ok());
}

TEST(Vapid, TokenForAnotherOriginIsRefused) {
  const Result<VerifiedVapid> verified =
      verify_vapid_authorization(header_for(fresh_key()), "https://other.example.net", kNow, 0);
  ASSERT_FALSE(verified.ok());
  EXPECT_NE(verified.status().message().find("audience"), std::string::npos);
}

TEST(Vapid, KOfAnotherKeyIsRefused) {
  const std::string header = header_for(fresh_key());
  const std::string swapped =
      header.substr(0, header.find("k=") + 2) + fresh_key().public_key_b64url();
  const Result<VerifiedVapid> verified = verify_vapid_authorization(swapped, kOrigin, kNow, 0);
  ASSERT_FALSE(verified.ok());
  EXPECT_NE(verified.status().message().find("signature does not verify"), std::string::npos);
}

TEST(Vapid, LifetimeIsBoundedWhenSigningAndWhenVerifying) {
  const VapidKey key = fresh_key();
  EXPECT_TRUE(key.authorization(kEndpoint, kSubject, kNow, kVapidMaxLifetimeSeconds).ok());
  EXPECT_FALSE(key.authorization(kEndpoint, kSubject, kNow, kVapidMaxLifetimeSeconds + 1).ok());
  EXPECT_FALSE(key.authorization(kEndpoint, kSubject, kNow, 0).ok());

  // A token made elsewhere with exp two days ahead.
  const Result<std::string> pem = key.private_pem();
  ASSERT_TRUE(pem.ok());
  const Result<crypto::JwtSigner> signer = crypto::JwtSigner::from_pem(*pem);
  ASSERT_TRUE(signer.ok());
  const Result<std::string> token = signer->sign(
      {{"aud", kOrigin}, {"exp", kNow + 2 * kVapidMaxLifetimeSeconds}, {"sub", kSubject}});
  ASSERT_TRUE(token.ok());
  const Result<VerifiedVapid> verified = verify_vapid_authorization(
      "vapid t=" + *token + ", k=" + key.public_key_b64url(), kOrigin, kNow, 0);
  ASSERT_FALSE(verified.ok());
  EXPECT_EQ(verified.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(verified.status().message().find("more than 86400 s after now"), std::string::npos);
}

TEST(Vapid, ExpiredTokenIsRefused) {
  const std::string header = header_for(fresh_key());
  const Result<VerifiedVapid> verified =
      verify_vapid_authorization(header, kOrigin, kNow + kVapidDefaultLifetimeSeconds, 0);
  ASSERT_FALSE(verified.ok());
  EXPECT_EQ(verified.status().code(), Code::kFailedPrecondition);
}

TEST(Vapid, SubjectMustBeAMailtoOrHttpsUri) {
  EXPECT_TRUE(check_vapid_subject("mailto:ops@herald.example").ok());
  EXPECT_TRUE(check_vapid_subject("https://herald.example/contact").ok());
  for (const std::string_view bad : {"", "ops@herald.example", "mailto:", "http://herald.example",
                                     "https://", "mailto:ops@herald.example\r\nX: y"}) {
    EXPECT_FALSE(check_vapid_subject(bad).ok()) << bad;
  }
  EXPECT_FALSE(check_vapid_subject("mailto:" + std::string(kMaxVapidSubjectBytes, 'a')).ok());
  EXPECT_FALSE(fresh_key().authorization(kEndpoint, "ops@herald.example", kNow).ok());
}

TEST(Vapid, KeyRoundTripsThroughPemAndKeepsItsPublicKey) {
  const VapidKey key = fresh_key();
  const Result<std::string> pem = key.private_pem();
  ASSERT_TRUE(pem.ok());
  EXPECT_EQ(pem->rfind("-----BEGIN PRIVATE KEY-----", 0), 0U);
  const Result<VapidKey> again = VapidKey::from_pem(*pem);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->public_key_b64url(), key.public_key_b64url());
  EXPECT_NE(fresh_key().public_key_b64url(), key.public_key_b64url());
}

TEST(Vapid, HeaderParametersParseInEitherOrderAndMalformedHeadersAreRefused) {
  const VapidKey key = fresh_key();
  const std::string header = header_for(key);
  const std::size_t comma = header.find(',');
  const std::string t = header.substr(6, comma - 6);
  const std::string k = header.substr(comma + 2);
  EXPECT_TRUE(verify_vapid_authorization("Vapid " + k + ",  " + t, kOrigin, kNow, 0).ok());
  for (const std::string& bad :
       {std::string(), fmt::format("Bearer {}", t.substr(2)), fmt::format("vapid {}", t),
        fmt::format("vapid {}", k), fmt::format("vapid{}, {}", t, k),
        fmt::format("vapid {}, {}, {}", t, t, k), fmt::format("vapid {}, k=AAAA", t),
        fmt::format("vapid {}, k=+/8=", t), fmt::format("vapid {}, {}, x=1", t, k),
        fmt::format("vapid {}, {}, junk", t, k)}) {
    const Result<VerifiedVapid> verified = verify_vapid_authorization(bad, kOrigin, kNow, 0);
    ASSERT_FALSE(verified.ok()) << bad;
    EXPECT_EQ(verified.status().code(), Code::kInvalidArgument) << bad;
  }
  const std::string huge = "vapid t=" + std::string(kMaxVapidHeaderBytes, 'a') + ", " + k;
  EXPECT_EQ(verify_vapid_authorization(huge, kOrigin, kNow, 0).status().code(),
            Code::kResourceExhausted);
}

TEST(Vapid, RsaKeyIsNotAVapidKey) {
  EXPECT_TRUE(VapidKey::from_pem(crypto::testing::ec_private_pem("P-256")).ok());
  const Result<VapidKey> rsa =
      VapidKey::from_pem(crypto::testing::rsa_private_pem(crypto::kMinRsaKeyBits));
  ASSERT_FALSE(rsa.ok());
  EXPECT_NE(rsa.status().message().find("P-256 key; this one is RSA"), std::string::npos);
  EXPECT_FALSE(VapidKey::from_pem("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n").ok());
}

}  // namespace
}  // namespace herald::push
