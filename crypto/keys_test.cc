#include "crypto/keys.h"

#include <gtest/gtest.h>

#include "crypto/base64url.h"
#include "crypto/test_keys.h"

namespace herald::crypto {
namespace {

std::string unb64(std::string_view text) {
  Result<std::string> bytes = base64url_decode(text);
  EXPECT_TRUE(bytes.ok()) << text;
  return bytes.ok() ? *bytes : std::string();
}

TEST(Keys, GeneratedP256KeyRoundTripsThroughPkcs8Pem) {
  const Result<PrivateKey> key = PrivateKey::generate_p256();
  ASSERT_TRUE(key.ok());
  const Result<std::string> pem = key->to_pem();
  ASSERT_TRUE(pem.ok());
  EXPECT_EQ(pem->rfind("-----BEGIN PRIVATE KEY-----", 0), 0U);
  const Result<PrivateKey> again = PrivateKey::from_pem(*pem);
  ASSERT_TRUE(again.ok()) << again.status().to_string();
  EXPECT_EQ(again->type(), KeyType::kEcP256);
  const Result<PublicKey> a = key->public_key();
  const Result<PublicKey> b = again->public_key();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a->p256_point(), *b->p256_point());
}

TEST(Keys, PublicKeyPemRoundTripsAndKeepsThePoint) {
  const Result<PrivateKey> key = PrivateKey::generate_p256();
  ASSERT_TRUE(key.ok());
  const Result<PublicKey> pub = key->public_key();
  ASSERT_TRUE(pub.ok());
  const Result<std::string> pem = pub->to_pem();
  ASSERT_TRUE(pem.ok());
  EXPECT_EQ(pem->rfind("-----BEGIN PUBLIC KEY-----", 0), 0U);
  const Result<PublicKey> again = PublicKey::from_pem(*pem);
  ASSERT_TRUE(again.ok());
  const Result<std::string> point = again->p256_point();
  ASSERT_TRUE(point.ok());
  EXPECT_EQ(point->size(), kP256PointBytes);
  EXPECT_EQ((*point)[0], '\x04');
  EXPECT_EQ(*point, *pub->p256_point());
  const Result<PublicKey> from_point = PublicKey::from_p256_point(*point);
  ASSERT_TRUE(from_point.ok());
  EXPECT_EQ(*from_point->to_pem(), *pem);
}

TEST(Keys, ScalarDerivesThePublicPointOfRfc8291AppendixA) {
  // RFC 8291 Appendix A: the application server's key pair.
  const Result<PrivateKey> key =
      PrivateKey::from_p256_scalar(unb64("yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"));
  ASSERT_TRUE(key.ok()) << key.status().to_string();
  const Result<PublicKey> pub = key->public_key();
  ASSERT_TRUE(pub.ok());
  EXPECT_EQ(
      base64url_encode(*pub->p256_point()),
      "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8");
}

TEST(Keys, ScalarOutsideTheGroupIsRefused) {
  EXPECT_FALSE(PrivateKey::from_p256_scalar(std::string(kP256ScalarBytes, '\0')).ok());
  EXPECT_FALSE(PrivateKey::from_p256_scalar(std::string(kP256ScalarBytes, '\xff')).ok());
  EXPECT_FALSE(PrivateKey::from_p256_scalar(std::string(kP256ScalarBytes - 1, '\x01')).ok());
}

TEST(Keys, PointOffTheCurveIsRefused) {
  const Result<PrivateKey> key = PrivateKey::generate_p256();
  ASSERT_TRUE(key.ok());
  std::string point = *key->public_key()->p256_point();
  point.back() = static_cast<char>(point.back() ^ 1);
  const Result<PublicKey> bad = PublicKey::from_p256_point(point);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
}

TEST(Keys, CompressedOrShortPointsAreRefused) {
  const Result<PrivateKey> key = PrivateKey::generate_p256();
  ASSERT_TRUE(key.ok());
  std::string point = *key->public_key()->p256_point();
  EXPECT_FALSE(PublicKey::from_p256_point(point.substr(0, kP256PointBytes - 1)).ok());
  point[0] = '\x02';
  EXPECT_FALSE(PublicKey::from_p256_point(point.substr(0, 1 + kP256CoordinateBytes)).ok());
  EXPECT_FALSE(PublicKey::from_p256_point(point).ok());
}

TEST(Keys, RsaKeyIsAcceptedAndHasNoP256Point) {
  const std::string pem = testing::rsa_private_pem(kMinRsaKeyBits);
  const Result<PrivateKey> key = PrivateKey::from_pem(pem);
  ASSERT_TRUE(key.ok()) << key.status().to_string();
  EXPECT_EQ(key->type(), KeyType::kRsa);
  const Result<PublicKey> pub = PublicKey::from_pem(testing::public_pem_of(pem));
  ASSERT_TRUE(pub.ok());
  EXPECT_EQ(pub->type(), KeyType::kRsa);
  EXPECT_EQ(pub->p256_point().status().code(), Code::kFailedPrecondition);
}

TEST(Keys, RsaShorterThanTheMinimumIsRefused) {
  const Result<PrivateKey> key = PrivateKey::from_pem(testing::rsa_private_pem(1024));
  ASSERT_FALSE(key.ok());
  EXPECT_NE(key.status().message().find("1024 bits"), std::string::npos);
}

TEST(Keys, OtherCurvesAndKeyTypesAreRefused) {
  const Result<PrivateKey> p384 = PrivateKey::from_pem(testing::ec_private_pem("P-384"));
  ASSERT_FALSE(p384.ok());
  EXPECT_NE(p384.status().message().find("only P-256"), std::string::npos);
  const Result<PrivateKey> ed = PrivateKey::from_pem(testing::ed25519_private_pem());
  ASSERT_FALSE(ed.ok());
  EXPECT_NE(ed.status().message().find("only P-256 and RSA"), std::string::npos);
}

TEST(Keys, EncryptedPemIsRefusedWithoutPrompting) {
  const Result<PrivateKey> key = PrivateKey::from_pem(testing::encrypted_p256_pem("password"));
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.status().code(), Code::kInvalidArgument);
}

TEST(Keys, GarbageAndOversizePemAreRefused) {
  EXPECT_FALSE(PrivateKey::from_pem("").ok());
  EXPECT_FALSE(
      PrivateKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").ok());
  EXPECT_FALSE(PublicKey::from_pem("not a key").ok());
  // A private key is not a public key, and the other way round.
  const std::string pem = testing::ec_private_pem("P-256");
  EXPECT_FALSE(PublicKey::from_pem(pem).ok());
  EXPECT_FALSE(PrivateKey::from_pem(testing::public_pem_of(pem)).ok());
  const Result<PrivateKey> big = PrivateKey::from_pem(std::string(kMaxPemBytes + 1, 'A'));
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().code(), Code::kResourceExhausted);
}

TEST(Keys, RsaNumbersBuildTheKeyOfRfc7517AppendixA1) {
  // RFC 7515 A.2 / RFC 7517: the modulus is 2048 bits.
  const Result<PublicKey> key = PublicKey::from_rsa_numbers(
      unb64("ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1"
            "Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpa"
            "SHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4"
            "LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ"),
      unb64("AQAB"));
  ASSERT_TRUE(key.ok()) << key.status().to_string();
  EXPECT_EQ(key->type(), KeyType::kRsa);
  EXPECT_FALSE(PublicKey::from_rsa_numbers(std::string(64, '\x01'), unb64("AQAB")).ok());
  EXPECT_FALSE(PublicKey::from_rsa_numbers("", unb64("AQAB")).ok());
}

}  // namespace
}  // namespace herald::crypto
