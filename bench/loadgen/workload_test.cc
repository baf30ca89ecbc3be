#include "bench/loadgen/workload.h"

#include <gtest/gtest.h>

namespace herald::bench {
namespace {

TEST(Body, RoundTripsItsHeaderAtTheRequestedSize) {
  const std::string body = encode_body(31, 123456789, 987654321012345, 64);
  EXPECT_EQ(body.size(), 64u);
  const auto h = decode_body(body);
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->sender, 31);
  EXPECT_EQ(h->seq, 123456789u);
  EXPECT_EQ(h->sent_ns, 987654321012345);
}

TEST(Body, LargestHeaderFitsTheSmallestBody) {
  const std::string body =
      encode_body(kMaxPairs, UINT64_MAX, std::numeric_limits<std::int64_t>::max(), kMinBodyBytes);
  EXPECT_EQ(body.size(), kMinBodyBytes);
  EXPECT_TRUE(decode_body(body).has_value());
}

TEST(Body, ForeignTextIsNotAHeader) {
  EXPECT_FALSE(decode_body("").has_value());
  EXPECT_FALSE(decode_body("hello").has_value());
  EXPECT_FALSE(decode_body("1:2:3").has_value());  // no '|'
  EXPECT_FALSE(decode_body("1:x:3|").has_value());
}

TEST(Quantile, PicksTheNearestRank) {
  std::vector<std::uint32_t> v;
  for (std::uint32_t i = 1; i <= 1000; ++i) v.push_back(1001 - i);
  EXPECT_EQ(quantile(v, 0.5), 501u);
  EXPECT_EQ(quantile(v, 0.99), 990u);
  EXPECT_EQ(quantile(v, 0.999), 999u);
  std::vector<std::uint32_t> empty;
  EXPECT_EQ(quantile(empty, 0.5), 0u);
}

TEST(Endpoint, ParsesHostAndPort) {
  auto e = parse_endpoint("127.0.0.1:4222");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->host, "127.0.0.1");
  EXPECT_EQ(e->port, 4222);
  EXPECT_FALSE(parse_endpoint("127.0.0.1").ok());
  EXPECT_FALSE(parse_endpoint("h:0").ok());
  EXPECT_FALSE(parse_endpoint("h:70000").ok());
  EXPECT_FALSE(parse_endpoint(":80").ok());
}

TEST(RunClock, CountsOnlyInsideTheWindow) {
  RunClock clock(1);
  ThreadStats stats;
  record_receipt(stats, clock, encode_body(0, 0, now_ns(), 64));  // warm-up
  clock.begin_window();
  record_receipt(stats, clock, encode_body(0, 1, now_ns(), 64));
  clock.end_window();
  record_receipt(stats, clock, encode_body(0, 2, now_ns(), 64));
  record_receipt(stats, clock, "garbage");
  EXPECT_EQ(stats.received, 3u);
  EXPECT_EQ(stats.received_in_window, 1u);
  EXPECT_EQ(stats.latency_us.size(), 1u);
  EXPECT_EQ(stats.errors["receive:malformed_body"], 1u);
}

}  // namespace
}  // namespace herald::bench
