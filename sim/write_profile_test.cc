#include "sim/write_profile.h"

#include <gtest/gtest.h>

namespace herald::sim {
namespace {

WriteProfile profile(WriteProfileOptions options) {
  auto p = profile_messaging_writes(options);
  EXPECT_TRUE(p.ok()) << p.status().to_string();
  return p.ok() ? *p : WriteProfile();
}

std::uint64_t kind_writes(const WriteProfile& p) {
  std::uint64_t writes = 0;
  for (const auto& [kind, t] : p.by_kind) writes += t.writes();
  return writes;
}

TEST(WriteProfileTest, CountsAreDeterministic) {
  const WriteProfile a = profile({.messages = 20, .body_bytes = 64, .push_path = false});
  const WriteProfile b = profile({.messages = 20, .body_bytes = 64, .push_path = false});
  EXPECT_EQ(a.total.puts, b.total.puts);
  EXPECT_EQ(a.total.deletes, b.total.deletes);
  EXPECT_EQ(a.total.bytes, b.total.bytes);
  EXPECT_EQ(a.entries, b.entries);
}

TEST(WriteProfileTest, KindsAddUpToTheReplicaCounters) {
  for (const bool push_path : {false, true}) {
    const WriteProfile p = profile({.messages = 10, .body_bytes = 64, .push_path = push_path});
    EXPECT_EQ(kind_writes(p), p.total.writes());
    EXPECT_GT(p.total.writes(), 0U);
  }
}

TEST(WriteProfileTest, TheSocketPathIsASendAndAnAcknowledgement) {
  const WriteProfile p = profile({.messages = 10, .body_bytes = 64, .push_path = false});
  EXPECT_EQ(p.entries, 20U);
  const WriteProfile pushed = profile({.messages = 10, .body_bytes = 64, .push_path = true});
  EXPECT_EQ(pushed.entries, 40U);  // + the "push" timer's fire and the push activity's report
}

TEST(WriteProfileTest, CountsTheReplicasStateReads) {
  const WriteProfile a = profile({.messages = 10, .body_bytes = 64, .push_path = false});
  const WriteProfile b = profile({.messages = 20, .body_bytes = 64, .push_path = false});
  EXPECT_GT(a.reads.gets, 0U);
  // The same messages read the same, so twice the messages read about twice as much (the chat
  // index, the change streams and the queues grow, so not exactly).
  EXPECT_GE(b.reads.gets, 2 * a.reads.gets - a.reads.gets / 4);
  EXPECT_LE(b.reads.gets, 2 * a.reads.gets + a.reads.gets / 4);
  EXPECT_GE(b.reads.steps, a.reads.steps);
}

TEST(WriteProfileTest, ARoundAppliesTheSendsThenTheAcknowledgementsOfItsMessages) {
  const WriteProfile one = profile({.messages = 16, .body_bytes = 64, .round_messages = 1});
  EXPECT_EQ(one.entries, 32U);
  EXPECT_EQ(one.rounds, 32U);
  const WriteProfile batched = profile({.messages = 16, .body_bytes = 64, .round_messages = 8});
  EXPECT_EQ(batched.entries, 32U);
  EXPECT_EQ(batched.rounds, 4U);  // two rounds of sends, two of acknowledgements
  // The applied state is written once per round, not once per entry.
  EXPECT_EQ(batched.by_kind.at("replica applied state").puts, 4U);
  EXPECT_EQ(one.by_kind.at("replica applied state").puts, 32U);
  EXPECT_LT(batched.total.writes(), one.total.writes());
}

TEST(WriteProfileTest, RefusesOptionsOutOfBounds) {
  EXPECT_EQ(profile_messaging_writes({.messages = 0, .body_bytes = 64, .push_path = false})
                .status()
                .code(),
            Code::kInvalidArgument);
  EXPECT_EQ(profile_messaging_writes({.messages = 10, .body_bytes = 64, .round_messages = 0})
                .status()
                .code(),
            Code::kInvalidArgument);
}

}  // namespace
}  // namespace herald::sim
