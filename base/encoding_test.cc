#include "base/encoding.h"

#include <gtest/gtest.h>

#include "base/random.h"

namespace herald {
namespace {

TEST(EncodingTest, Fixed64BigEndianSortsNumerically) {
  std::string a;
  std::string b;
  put_fixed64_be(a, 255);
  put_fixed64_be(b, 256);
  EXPECT_LT(a, b);
  EXPECT_EQ(get_fixed64_be(a), 255U);
  EXPECT_EQ(get_fixed64_be(b), 256U);
}

TEST(EncodingTest, FixedWidthBigEndianBytes) {
  std::string out = "x";
  put_fixed32_be(out, 0x01020304U);
  put_fixed64_be(out, 0x05060708090A0B0CULL);
  EXPECT_EQ(out, std::string("x\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0A\x0B\x0C"));
  EXPECT_EQ(get_fixed32_be(std::string_view(out).substr(1)), 0x01020304U);
  EXPECT_EQ(get_fixed64_be(std::string_view(out).substr(5)), 0x05060708090A0B0CULL);
}

TEST(EncodingTest, Crc32cKnownVector) {
  // RFC 3720 B.4: CRC-32C of "123456789" is 0xE3069283.
  EXPECT_EQ(crc32c("123456789"), 0xE3069283U);
}

TEST(EncodingTest, Crc32cOfEveryLengthAndAlignmentMatchesBytewise) {
  // The accelerated path works in 8-byte words; lengths 0..40 cover every tail.
  std::string data;
  for (int i = 0; i < 48; ++i) {
    data.push_back(static_cast<char>(i * 37 + 11));
  }
  const std::uint32_t empty = crc32c("");
  EXPECT_EQ(empty, 0U);
  std::uint32_t previous = empty;
  for (std::size_t offset = 0; offset < 8; ++offset) {
    for (std::size_t len = 1; len <= 40; ++len) {
      const std::uint32_t c = crc32c(std::string_view(data).substr(offset, len));
      EXPECT_NE(c, previous);
      previous = c;
    }
  }
  EXPECT_EQ(crc32c(std::string(32, '\0')), 0x8A9136AAU);    // RFC 3720 B.4: 32 bytes of zeros.
  EXPECT_EQ(crc32c(std::string(32, '\xff')), 0x62A8AB43U);  // RFC 3720 B.4: 32 bytes of 0xFF.
}

TEST(EncodingTest, SealedRecordRoundTrips) {
  const std::string rec = seal_record("payload");
  std::string_view out;
  ASSERT_TRUE(open_record(rec, out));
  EXPECT_EQ(out, "payload");
}

TEST(EncodingTest, FlippedBitFailsChecksum) {
  std::string rec = seal_record("payload");
  rec[6] = static_cast<char>(rec[6] ^ 0x01);
  std::string_view out;
  EXPECT_FALSE(open_record(rec, out));
  EXPECT_FALSE(open_record("abc", out));
}

TEST(EncodingTest, PercentRoundTripOfArbitraryBytes) {
  Rng rng(7);
  for (int i = 0; i < 200; ++i) {
    std::string raw;
    const auto len = rng.uniform(20);
    for (std::uint64_t j = 0; j < len; ++j) {
      raw.push_back(static_cast<char>(rng.uniform(256)));
    }
    std::string back;
    ASSERT_TRUE(percent_decode(percent_encode(raw), back));
    EXPECT_EQ(back, raw);
  }
}

TEST(EncodingTest, MalformedPercentEscapeIsRejected) {
  std::string out;
  EXPECT_FALSE(percent_decode("abc%", out));
  EXPECT_FALSE(percent_decode("abc%4", out));
  EXPECT_FALSE(percent_decode("%zz", out));
  EXPECT_TRUE(percent_decode("a%20b", out));
  EXPECT_EQ(out, "a b");
}

}  // namespace
}  // namespace herald
