#include "sim/sim_network.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace herald::sim {
namespace {

rsmpb::PeerEnvelope report_envelope(raft::NodeId from, raft::NodeId to, std::uint64_t tag) {
  rsmpb::PeerEnvelope envelope;
  envelope.set_from(from);
  envelope.set_to(to);
  envelope.mutable_report()->set_commit(tag);
  return envelope;
}

// Sends `count` tagged messages 1 -> 2, one per millisecond, and returns the delivery trace.
std::vector<std::string> trace_of(std::uint64_t seed, const NetworkFaults& faults, int count) {
  ManualClock clock;
  SimNetwork network(seed, &clock);
  SimTransport& t1 = network.add_node(1);
  network.add_node(2);
  network.set_faults(faults);
  std::vector<std::string> trace;
  for (int i = 0; i < count; ++i) {
    EXPECT_TRUE(t1.send(2, report_envelope(1, 2, static_cast<std::uint64_t>(i))));
    clock.advance_ms(1);
    while (auto d = network.pop_due(clock.mono_ms())) {
      trace.push_back(std::to_string(d->deliver_ms) + ":" +
                      std::to_string(d->envelope.report().commit()));
    }
  }
  while (auto next = network.next_delivery_ms()) {
    clock.set_ms(std::max(clock.mono_ms(), *next));
    while (auto d = network.pop_due(clock.mono_ms())) {
      trace.push_back(std::to_string(d->deliver_ms) + ":" +
                      std::to_string(d->envelope.report().commit()));
    }
  }
  return trace;
}

TEST(SimNetworkTest, DeliversInOrderWithFixedDelay) {
  NetworkFaults faults;
  faults.min_delay_ms = 3;
  faults.max_delay_ms = 3;
  const auto trace = trace_of(7, faults, 5);
  ASSERT_EQ(trace.size(), 5U);
  EXPECT_EQ(trace.front(), "3:0");
  EXPECT_EQ(trace.back(), "7:4");
}

// A sender's extra delay (a slow disk's sync it waits for) is added to the link's delay of what it
// sends while the delay is in force, and to nothing else: the other direction and later sends
// keep the link's own delay, and the random stream draws the same.
TEST(SimNetworkTest, ASendersExtraDelayHoldsOnlyItsOwnMessages) {
  ManualClock clock;
  SimNetwork network(5, &clock);
  SimTransport& t1 = network.add_node(1);
  SimTransport& t2 = network.add_node(2);
  NetworkFaults faults;
  faults.min_delay_ms = 3;
  faults.max_delay_ms = 3;
  network.set_faults(faults);
  MonoMs extra = 40;
  network.set_send_delay(1, [&extra] { return extra; });
  ASSERT_TRUE(t1.send(2, report_envelope(1, 2, 1)));
  ASSERT_TRUE(t2.send(1, report_envelope(2, 1, 2)));
  extra = 0;
  ASSERT_TRUE(t1.send(2, report_envelope(1, 2, 3)));
  std::vector<std::string> trace;
  while (auto next = network.next_delivery_ms()) {
    clock.set_ms(std::max(clock.mono_ms(), *next));
    while (auto d = network.pop_due(clock.mono_ms())) {
      trace.push_back(std::to_string(d->deliver_ms) + ":" +
                      std::to_string(d->envelope.report().commit()));
    }
  }
  EXPECT_EQ(trace, (std::vector<std::string>{"3:2", "3:3", "43:1"}));
}

// Snapshot chunks ride one connection in production: on one link they never overtake each other,
// however the delays are drawn, while other messages still may.
TEST(SimNetworkTest, SnapshotChunksOfALinkArriveInOrder) {
  ManualClock clock;
  SimNetwork network(11, &clock);
  SimTransport& t1 = network.add_node(1);
  network.add_node(2);
  NetworkFaults faults;
  faults.max_delay_ms = 50;
  network.set_faults(faults);
  constexpr std::uint64_t kChunks = 40;
  for (std::uint64_t seq = 0; seq < kChunks; ++seq) {
    rsmpb::PeerEnvelope envelope;
    envelope.set_from(1);
    envelope.set_to(2);
    envelope.mutable_chunk()->set_seq(seq);
    ASSERT_TRUE(t1.send(2, envelope));
  }
  std::vector<std::uint64_t> seqs;
  while (auto next = network.next_delivery_ms()) {
    clock.set_ms(std::max(clock.mono_ms(), *next));
    while (auto d = network.pop_due(clock.mono_ms())) {
      seqs.push_back(d->envelope.chunk().seq());
    }
  }
  ASSERT_EQ(seqs.size(), kChunks);
  EXPECT_TRUE(std::is_sorted(seqs.begin(), seqs.end()));
}

TEST(SimNetworkTest, SameSeedSameTrace) {
  NetworkFaults faults;
  faults.loss = 0.2;
  faults.duplicate = 0.1;
  faults.max_delay_ms = 40;
  EXPECT_EQ(trace_of(42, faults, 500), trace_of(42, faults, 500));
  EXPECT_NE(trace_of(42, faults, 500), trace_of(43, faults, 500));
}

TEST(SimNetworkTest, LossDuplicationAndReorderingHappen) {
  NetworkFaults faults;
  faults.loss = 0.2;
  faults.duplicate = 0.2;
  faults.max_delay_ms = 40;
  ManualClock clock;
  SimNetwork network(5, &clock);
  SimTransport& t1 = network.add_node(1);
  network.add_node(2);
  network.set_faults(faults);
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(t1.send(2, report_envelope(1, 2, static_cast<std::uint64_t>(i))));
  }
  clock.advance_ms(100);
  std::vector<std::uint64_t> tags;
  while (auto d = network.pop_due(clock.mono_ms())) {
    tags.push_back(d->envelope.report().commit());
  }
  const NetworkCounters& c = network.counters();
  EXPECT_GT(c.lost, 100U);
  EXPECT_GT(c.duplicated, 100U);
  EXPECT_EQ(tags.size(), 1000 - c.lost + c.duplicated);
  EXPECT_FALSE(std::is_sorted(tags.begin(), tags.end()));
  EXPECT_EQ(network.queued_bytes(1, 2), 0U);
}

TEST(SimNetworkTest, OneWayCutDropsOnlyThatDirection) {
  ManualClock clock;
  SimNetwork network(1, &clock);
  SimTransport& t1 = network.add_node(1);
  SimTransport& t2 = network.add_node(2);
  network.cut(1, 2);
  EXPECT_TRUE(t1.send(2, report_envelope(1, 2, 1)));  // a cut link looks like a slow one
  EXPECT_TRUE(t2.send(1, report_envelope(2, 1, 2)));
  clock.advance_ms(kDefaultMaxDelayMs);
  auto d = network.pop_due(clock.mono_ms());
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->envelope.to(), 1U);
  EXPECT_FALSE(network.pop_due(clock.mono_ms()).has_value());
  EXPECT_EQ(network.counters().cut, 1U);
}

TEST(SimNetworkTest, CutWhileInFlightDropsOnDelivery) {
  ManualClock clock;
  SimNetwork network(1, &clock);
  SimTransport& t1 = network.add_node(1);
  network.add_node(2);
  ASSERT_TRUE(t1.send(2, report_envelope(1, 2, 1)));
  EXPECT_GT(t1.queued_bytes(2), 0U);
  network.cut_both(1, 2);
  clock.advance_ms(kDefaultMaxDelayMs);
  EXPECT_FALSE(network.pop_due(clock.mono_ms()).has_value());
  EXPECT_EQ(t1.queued_bytes(2), 0U);
  network.heal_all();
  ASSERT_TRUE(t1.send(2, report_envelope(1, 2, 2)));
  clock.advance_ms(kDefaultMaxDelayMs);
  EXPECT_TRUE(network.pop_due(clock.mono_ms()).has_value());
}

TEST(SimNetworkTest, DownNodeLosesItsMessagesInFlight) {
  ManualClock clock;
  SimNetwork network(1, &clock);
  SimTransport& t1 = network.add_node(1);
  SimTransport& t2 = network.add_node(2);
  ASSERT_TRUE(t1.send(2, report_envelope(1, 2, 1)));
  ASSERT_TRUE(t2.send(1, report_envelope(2, 1, 2)));
  network.set_up(2, false);
  EXPECT_EQ(network.in_flight(), 0U);
  EXPECT_EQ(t1.queued_bytes(2), 0U);
  EXPECT_TRUE(t1.send(2, report_envelope(1, 2, 3)));
  EXPECT_EQ(network.in_flight(), 0U);
  network.set_up(2, true);
  EXPECT_TRUE(t1.send(2, report_envelope(1, 2, 4)));
  EXPECT_EQ(network.in_flight(), 1U);
}

TEST(SimNetworkTest, RejectsUnknownPeerAndFullLink) {
  ManualClock clock;
  SimNetwork network(1, &clock, LinkBounds{.max_messages = 4, .max_bytes = kMaxLinkBytes});
  SimTransport& t1 = network.add_node(1);
  network.add_node(2);
  EXPECT_FALSE(t1.send(3, report_envelope(1, 3, 0)));
  for (std::uint64_t i = 0; i < 4; ++i) {
    ASSERT_TRUE(t1.send(2, report_envelope(1, 2, i)));
  }
  EXPECT_FALSE(t1.send(2, report_envelope(1, 2, 0)));
  EXPECT_EQ(network.counters().rejected, 2U);
  clock.advance_ms(kDefaultMaxDelayMs);
  ASSERT_TRUE(network.pop_due(clock.mono_ms()).has_value());
  EXPECT_TRUE(t1.send(2, report_envelope(1, 2, 5)));  // room again
}

TEST(SimNetworkTest, ByteBoundCountsSerializedBytes) {
  ManualClock clock;
  const std::uint64_t one = report_envelope(1, 2, 1).ByteSizeLong();
  SimNetwork network(1, &clock, LinkBounds{.max_messages = 100, .max_bytes = 2 * one});
  SimTransport& t1 = network.add_node(1);
  network.add_node(2);
  ASSERT_TRUE(t1.send(2, report_envelope(1, 2, 1)));
  ASSERT_TRUE(t1.send(2, report_envelope(1, 2, 2)));
  EXPECT_EQ(t1.queued_bytes(2), 2 * one);
  EXPECT_FALSE(t1.send(2, report_envelope(1, 2, 3)));
}

}  // namespace
}  // namespace herald::sim
