#include "server/node_figures.h"

#include <gtest/gtest.h>

#include <string>

namespace herald::server {
namespace {

NodeFigures sample_figures() {
  NodeFigures f;
  f.id = 2;
  f.window_ms = kLatencyWindowMs;
  f.fsync = {40, 900, 2'500, 3'000};
  f.commit = {12, 4'000, 9'000, 9'500};
  f.apply = {40, 150, 700, 1'200};
  f.devices = 17;
  f.leader_changes = 3;
  return f;
}

// What a receiver makes of `message` after it went over the wire.
Result<NodeFigures> round_trip(const rsmpb::NodeFigures& message, raft::NodeId from) {
  rsmpb::NodeFigures parsed;
  EXPECT_TRUE(parsed.ParseFromString(message.SerializeAsString()));
  return decode_node_figures(parsed, from);
}

TEST(NodeFiguresTest, EncodedFiguresDecodeToTheSame) {
  const NodeFigures f = sample_figures();
  const rsmpb::NodeFigures m = encode_node_figures(f);
  EXPECT_EQ(m.version(), kNodeFiguresVersion);
  EXPECT_LE(m.ByteSizeLong(), kMaxNodeFiguresBytes);
  auto decoded = round_trip(m, 2);
  ASSERT_TRUE(decoded.ok()) << decoded.status().to_string();
  EXPECT_EQ(*decoded, f);
}

TEST(NodeFiguresTest, FiguresWithoutSamplesDecode) {
  NodeFigures f;
  f.id = 3;
  auto decoded = round_trip(encode_node_figures(f), 3);
  ASSERT_TRUE(decoded.ok()) << decoded.status().to_string();
  EXPECT_EQ(decoded->fsync.count, 0U);
  EXPECT_EQ(decoded->devices, 0U);
}

TEST(NodeFiguresTest, FiguresOfAnotherNodeThanTheSenderAreRefused) {
  auto decoded = round_trip(encode_node_figures(sample_figures()), 3);
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), Code::kInvalidArgument);
  EXPECT_NE(decoded.status().message().find("sent by node 3"), std::string::npos);
}

TEST(NodeFiguresTest, AnUnknownOrMissingVersionIsRefused) {
  rsmpb::NodeFigures m = encode_node_figures(sample_figures());
  m.set_version(kNodeFiguresVersion + 1);
  EXPECT_EQ(round_trip(m, 2).status().code(), Code::kInvalidArgument);
  m.clear_version();
  EXPECT_EQ(round_trip(m, 2).status().code(), Code::kInvalidArgument);
}

TEST(NodeFiguresTest, OversizeFiguresAreRefused) {
  rsmpb::NodeFigures m = encode_node_figures(sample_figures());
  // Unknown fields a newer sender might add still count towards the bound.
  m.GetReflection()->MutableUnknownFields(&m)->AddLengthDelimited(
      1000, std::string(kMaxNodeFiguresBytes, 'x'));
  auto decoded = round_trip(m, 2);
  ASSERT_FALSE(decoded.ok());
  EXPECT_NE(decoded.status().message().find("bytes"), std::string::npos);
}

TEST(NodeFiguresTest, PercentilesOutOfOrderAreRefused) {
  rsmpb::NodeFigures m = encode_node_figures(sample_figures());
  m.mutable_commit()->set_p50_us(10'000);  // above its p99
  auto decoded = round_trip(m, 2);
  ASSERT_FALSE(decoded.ok());
  EXPECT_NE(decoded.status().message().find("commit"), std::string::npos);
}

TEST(NodeFiguresTest, PercentilesWithoutSamplesAreRefused) {
  rsmpb::NodeFigures m = encode_node_figures(sample_figures());
  m.mutable_apply()->set_count(0);
  EXPECT_EQ(round_trip(m, 2).status().code(), Code::kInvalidArgument);
}

TEST(NodeFiguresTest, FiguresBeyondTheirBoundsAreRefused) {
  rsmpb::NodeFigures latency = encode_node_figures(sample_figures());
  latency.mutable_fsync()->set_max_us(kMaxFiguresLatencyUs + 1);
  EXPECT_FALSE(round_trip(latency, 2).ok());
  rsmpb::NodeFigures devices = encode_node_figures(sample_figures());
  devices.set_devices(kMaxFiguresDevices + 1);
  EXPECT_FALSE(round_trip(devices, 2).ok());
  rsmpb::NodeFigures no_window = encode_node_figures(sample_figures());
  no_window.set_window_ms(0);
  EXPECT_FALSE(round_trip(no_window, 2).ok());
  rsmpb::NodeFigures long_window = encode_node_figures(sample_figures());
  long_window.set_window_ms(kMaxFiguresWindowMs + 1);
  EXPECT_FALSE(round_trip(long_window, 2).ok());
}

TEST(NodeFiguresTest, RecentLatencyGivesNearestRankPercentiles) {
  RecentLatency latency;
  for (int i = 1; i <= 200; ++i) latency.observe(1'000, std::int64_t{i} * 10);
  const LatencySummary s = latency.summary(1'000);
  EXPECT_EQ(s.count, 200U);
  EXPECT_EQ(s.p50_us, 1'000U);  // the 100th of 200
  EXPECT_EQ(s.p99_us, 1'980U);  // the 198th
  EXPECT_EQ(s.max_us, 2'000U);
}

TEST(NodeFiguresTest, RecentLatencyForgetsSamplesOlderThanTheWindow) {
  RecentLatency latency;
  latency.observe(0, 50'000);
  latency.observe(kLatencyWindowMs / 2, 100);
  EXPECT_EQ(latency.summary(kLatencyWindowMs / 2).max_us, 50'000U);
  const LatencySummary later = latency.summary(kLatencyWindowMs);
  EXPECT_EQ(later.count, 1U);
  EXPECT_EQ(later.max_us, 100U);
  EXPECT_EQ(latency.summary(kLatencyWindowMs * 2).count, 0U);
}

TEST(NodeFiguresTest, RecentLatencyKeepsOnlyTheNewestSamples) {
  RecentLatency latency;
  latency.observe(0, 1'000'000);
  for (std::size_t i = 0; i < kMaxLatencySamples; ++i) latency.observe(1, 10);
  const LatencySummary s = latency.summary(1);
  EXPECT_EQ(s.count, kMaxLatencySamples);
  EXPECT_EQ(s.max_us, 10U);  // the oldest, slow sample was dropped
}

TEST(NodeFiguresTest, NegativeSamplesCountAsZero) {
  RecentLatency latency;
  latency.observe(5, -40);
  EXPECT_EQ(latency.summary(5), (LatencySummary{1, 0, 0, 0}));
}

TEST(NodeFiguresTest, TheBookKeepsTheLatestFiguresPerPeerAndForgetsFormerMembers) {
  FiguresBook book;
  NodeFigures two = sample_figures();
  book.record(two, 100);
  two.devices = 1;
  book.record(two, 1'100);
  NodeFigures three = sample_figures();
  three.id = 3;
  book.record(three, 900);
  ASSERT_EQ(book.entries().size(), 2U);
  EXPECT_EQ(book.entries().at(2).figures.devices, 1U);
  EXPECT_EQ(book.entries().at(2).received_ms, 1'100);
  book.retain([](raft::NodeId id) { return id == 3; });
  ASSERT_EQ(book.entries().size(), 1U);
  EXPECT_TRUE(book.entries().contains(3));
}

}  // namespace
}  // namespace herald::server
