#include "crypto/base64url.h"

#include <gtest/gtest.h>

#include "base/random.h"

namespace herald::crypto {
namespace {

TEST(Base64url, Rfc4648TestVectorsWithoutPadding) {
  // RFC 4648 section 10, with the '=' padding removed.
  const std::pair<std::string, std::string> vectors[] = {
      {"", ""},           {"f", "Zg"},          {"fo", "Zm8"},         {"foo", "Zm9v"},
      {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}};
  for (const auto& [bytes, text] : vectors) {
    EXPECT_EQ(base64url_encode(bytes), text);
    const Result<std::string> decoded = base64url_decode(text);
    ASSERT_TRUE(decoded.ok()) << text;
    EXPECT_EQ(*decoded, bytes);
  }
}

TEST(Base64url, UsesTheUrlSafeAlphabet) {
  // Standard base64 would give "+/8=".
  EXPECT_EQ(base64url_encode("\xfb\xff"), "-_8");
  const Result<std::string> decoded = base64url_decode("-_8");
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, "\xfb\xff");
}

TEST(Base64url, EveryLengthRoundTrips) {
  Rng rng(7);
  for (std::size_t length = 0; length < 70; ++length) {
    std::string bytes;
    for (std::size_t i = 0; i < length; ++i) {
      bytes.push_back(static_cast<char>(rng.uniform(256)));
    }
    const std::string text = base64url_encode(bytes);
    EXPECT_EQ(text.find('='), std::string::npos);
    const Result<std::string> decoded = base64url_decode(text);
    ASSERT_TRUE(decoded.ok()) << length;
    EXPECT_EQ(*decoded, bytes);
  }
}

TEST(Base64url, PaddingIsRefused) {
  EXPECT_FALSE(base64url_decode("Zg==").ok());
  EXPECT_FALSE(base64url_decode("Zm8=").ok());
}

TEST(Base64url, TheStandardAlphabetAndWhitespaceAreRefused) {
  EXPECT_FALSE(base64url_decode("+/8").ok());
  EXPECT_FALSE(base64url_decode("Zm9v\nYmFy").ok());
  EXPECT_FALSE(base64url_decode("Zm9v YmFy").ok());
  const Result<std::string> bad = base64url_decode(std::string("Zm\0v", 4));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("offset 2"), std::string::npos);
}

TEST(Base64url, ALengthOfOneModuloFourIsRefused) {
  EXPECT_FALSE(base64url_decode("Z").ok());
  EXPECT_FALSE(base64url_decode("Zm9vY").ok());
}

TEST(Base64url, NonZeroBitsAfterTheLastByteAreRefused) {
  // "Zg" and "Zh" would both decode to "f" if the spare bits were ignored.
  EXPECT_TRUE(base64url_decode("Zg").ok());
  EXPECT_FALSE(base64url_decode("Zh").ok());
  EXPECT_FALSE(base64url_decode("Zm9").ok());
}

}  // namespace
}  // namespace herald::crypto
