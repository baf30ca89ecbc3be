// Unit tests of leader-side flow control and quorum arithmetic (etcd-style Progress).
#include "raft/progress.h"

#include <gtest/gtest.h>

namespace herald::raft {
namespace {

TEST(InflightsTest, FullByMessageCount) {
  Inflights in(2, 1000);
  in.add(1, 10);
  EXPECT_FALSE(in.full());
  in.add(2, 10);
  EXPECT_TRUE(in.full());
  in.free_le(1);
  EXPECT_FALSE(in.full());
  in.check_invariants();
}

TEST(InflightsTest, FullByBytes) {
  Inflights in(10, 100);
  in.add(1, 60);
  EXPECT_EQ(in.bytes_budget(), 40u);
  in.add(2, 60);  // allowed: the bound was not reached before it
  EXPECT_TRUE(in.full());
  EXPECT_EQ(in.bytes_budget(), 0u);
  in.check_invariants();
  in.free_first_one();
  EXPECT_EQ(in.bytes(), 60u);
}

TEST(ProgressTest, ProbeAllowsOneMessageInFlight) {
  Progress pr(5, 10, 1000, false);
  EXPECT_FALSE(pr.paused());
  pr.sent_entries(3, 7, 30);
  EXPECT_TRUE(pr.paused());
  EXPECT_EQ(pr.next, 5u);  // probing does not advance next optimistically
}

TEST(ProgressTest, ReplicatePipelinesUntilInflightsFull) {
  Progress pr(5, 2, 1000, false);
  pr.match = 4;
  pr.become_replicate();
  pr.sent_entries(2, 6, 20);
  EXPECT_EQ(pr.next, 7u);
  EXPECT_FALSE(pr.paused());
  pr.sent_entries(1, 7, 10);
  EXPECT_TRUE(pr.paused());
  EXPECT_TRUE(pr.maybe_update(6));
  pr.inflights.free_le(6);
  EXPECT_FALSE(pr.paused());
}

TEST(ProgressTest, MaybeDecrToUsesHintInProbe) {
  Progress pr(11, 10, 1000, false);
  EXPECT_TRUE(pr.maybe_decr_to(10, 4));
  EXPECT_EQ(pr.next, 5u);
  EXPECT_FALSE(pr.maybe_decr_to(10, 4));  // stale: next - 1 is 4 now
}

TEST(ProgressTest, StaleRejectionIgnoredInReplicate) {
  Progress pr(1, 10, 1000, false);
  pr.match = 8;
  pr.become_replicate();
  EXPECT_FALSE(pr.maybe_decr_to(7, 3));
  EXPECT_TRUE(pr.maybe_decr_to(12, 3));
  EXPECT_EQ(pr.next, 9u);
}

TEST(ProgressTrackerTest, QuorumMatchIgnoresLearners) {
  ProgressTracker t(10, 1000);
  raftpb::ConfState cs;
  for (NodeId id : {1, 2, 3}) cs.add_voters(id);
  cs.add_learners(4);
  t.set_config(cs, 1);
  t.at(1).match = 5;
  t.at(2).match = 3;
  t.at(3).match = 1;
  t.at(4).match = 9;
  EXPECT_EQ(t.quorum_match(), 3u);
}

TEST(ProgressTrackerTest, TallyLostWhenMajorityRejects) {
  ProgressTracker t(10, 1000);
  raftpb::ConfState cs;
  for (NodeId id : {1, 2, 3}) cs.add_voters(id);
  t.set_config(cs, 1);
  t.record_vote(1, true);
  EXPECT_EQ(t.tally(), VoteResult::kPending);
  t.record_vote(2, false);
  t.record_vote(3, false);
  EXPECT_EQ(t.tally(), VoteResult::kLost);
}

}  // namespace
}  // namespace herald::raft
