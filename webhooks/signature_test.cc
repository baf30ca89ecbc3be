#include "webhooks/signature.h"

#include <gtest/gtest.h>

namespace herald::webhooks {
namespace {

// Computed once outside Herald, with
//   printf 'msg_1.1700000000.{"a":1}' |
//     openssl dgst -sha256 -hmac 'test-secret-0123456789' -binary | base64
constexpr char kVectorKey[] = "test-secret-0123456789";
constexpr char kVectorSignature[] = "v1,ejoQzE/TImEcA/FC5ytYqR3cdqCks6mARgAZD391JFI=";
constexpr std::int64_t kVectorTime = 1'700'000'000;

TEST(SignatureTest, MatchesAVectorComputedWithOpenSslDgst) {
  EXPECT_EQ(sign(kVectorKey, "msg_1", kVectorTime, R"({"a":1})"), kVectorSignature);
}

TEST(SignatureTest, VerifiesItsOwnSignatureAndRefusesAnyChangedPart) {
  const std::string sig = sign(kVectorKey, "msg_1", kVectorTime, R"({"a":1})");
  EXPECT_TRUE(verify(kVectorKey, "msg_1", kVectorTime, R"({"a":1})", sig, kVectorTime));
  EXPECT_FALSE(verify(kVectorKey, "msg_2", kVectorTime, R"({"a":1})", sig, kVectorTime));
  EXPECT_FALSE(verify(kVectorKey, "msg_1", kVectorTime + 1, R"({"a":1})", sig, kVectorTime));
  EXPECT_FALSE(verify(kVectorKey, "msg_1", kVectorTime, R"({"a":2})", sig, kVectorTime));
  EXPECT_FALSE(verify("another-key-0123456", "msg_1", kVectorTime, R"({"a":1})", sig, kVectorTime));
}

TEST(SignatureTest, AcceptsAnyOfSeveralSignaturesDuringARotation) {
  const std::string sig = sign(kVectorKey, "msg_1", kVectorTime, "{}");
  const std::string header = "v1,AAAA " + sig;
  EXPECT_TRUE(verify(kVectorKey, "msg_1", kVectorTime, "{}", header, kVectorTime));
}

TEST(SignatureTest, RefusesATimestampOutsideTheTolerance) {
  const std::string sig = sign(kVectorKey, "msg_1", kVectorTime, "{}");
  EXPECT_TRUE(
      verify(kVectorKey, "msg_1", kVectorTime, "{}", sig, kVectorTime + kDefaultToleranceSeconds));
  EXPECT_FALSE(verify(kVectorKey, "msg_1", kVectorTime, "{}", sig,
                      kVectorTime + kDefaultToleranceSeconds + 1));
  EXPECT_FALSE(verify(kVectorKey, "msg_1", kVectorTime, "{}", sig,
                      kVectorTime - kDefaultToleranceSeconds - 1));
}

TEST(SignatureTest, AWhsecSecretIsItsDecodedBytes) {
  auto key = key_of_secret("whsec_aGVsbG8gd2ViaG9va3M=");
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(*key, "hello webhooks");
  EXPECT_EQ(*key_of_secret("plain-secret"), "plain-secret");
  EXPECT_FALSE(key_of_secret("whsec_not*base64").ok());
  EXPECT_FALSE(key_of_secret("").ok());
}

TEST(SignatureTest, Base64RoundTripsEveryPaddingLength) {
  for (const std::string bytes : {"", "a", "ab", "abc", "abcd"}) {
    auto decoded = base64_decode(base64_encode(bytes));
    ASSERT_TRUE(decoded.ok()) << bytes;
    EXPECT_EQ(*decoded, bytes);
  }
  EXPECT_EQ(base64_encode("ab"), "YWI=");
}

TEST(SignatureTest, AFingerprintShowsNoSecretAndTellsKeysApart) {
  const std::string f = fingerprint(kVectorKey);
  EXPECT_TRUE(f.starts_with("sha256:"));
  EXPECT_EQ(f.size(), std::string_view("sha256:").size() + 16);
  EXPECT_EQ(f.find(kVectorKey), std::string::npos);
  EXPECT_NE(f, fingerprint("another-key"));
}

}  // namespace
}  // namespace herald::webhooks
