// Unit tests of the Raft core through RawNode, named for the case they pin. Section numbers
// refer to the Raft paper (§5.x) and Ongaro's thesis (thesis §x).
#include "raft/raw_node.h"

#include <gtest/gtest.h>

#include <sstream>

#include "raft/test_cluster.h"

namespace herald::raft {
namespace {

using testing::ClusterOptions;
using testing::TestCluster;

// Ticks that guarantee a randomized election timeout expires.
constexpr int kTicksToElect = 2 * kDefaultElectionTicks;

std::size_t count_lines(const std::string& text, const std::string& a, const std::string& b = "") {
  std::istringstream in(text);
  std::size_t n = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.find(a) != std::string::npos && line.find(b) != std::string::npos) ++n;
  }
  return n;
}

std::size_t count_msgs(TestCluster& c, raftpb::MessageType type, NodeId to) {
  std::size_t n = 0;
  for (const raftpb::Message& m : c.network()) {
    if (m.type() == type && m.to() == to) ++n;
  }
  return n;
}

// A cluster of `n` voters where node 1 was elected and everything settled.
std::unique_ptr<TestCluster> elected(std::size_t n, ClusterOptions options = {},
                                     std::ostream* trace = nullptr) {
  auto c = std::make_unique<TestCluster>(options, trace);
  c->add_nodes(n);
  EXPECT_TRUE(c->node(1).campaign().ok());
  c->stabilize();
  EXPECT_EQ(c->leader(), 1u);
  return c;
}

// Ticks live nodes one tick at a time, settling in between, until a leader emerges.
NodeId tick_until_leader(TestCluster& c) {
  for (int k = 0; k < 20 * kTicksToElect && c.leader() == kNoNode; ++k) {
    c.tick_all();
    c.stabilize();
  }
  return c.leader();
}

raftpb::ConfChange conf_change(raftpb::ConfChangeType type, NodeId id) {
  raftpb::ConfChange cc;
  cc.set_type(type);
  cc.set_node_id(id);
  return cc;
}

TEST(RawNodeTest, HeartbeatsNowComeFromTheLeaderOnlyAndWhileAReadyIsOutstanding) {
  auto c = elected(3);
  // A follower has none to send.
  EXPECT_TRUE(c->node(2).heartbeats_now().empty());
  // The leader builds one per peer even in the middle of a Ready (a long round).
  ASSERT_TRUE(c->node(1).propose("x").ok());
  ASSERT_TRUE(c->node(1).has_ready());
  Ready rd = c->node(1).ready();
  std::vector<raftpb::Message> beats = c->node(1).heartbeats_now();
  ASSERT_EQ(beats.size(), 2u);
  for (const raftpb::Message& m : beats) {
    EXPECT_EQ(m.type(), raftpb::MSG_HEARTBEAT);
    EXPECT_EQ(m.from(), 1u);
    EXPECT_EQ(m.term(), c->node(1).status().term);
    EXPECT_LE(m.commit(), c->node(1).status().commit);
  }
  c->node(1).advance(rd);
  // They were handed out, not also queued for the next Ready.
  Ready next = c->node(1).ready();
  for (const raftpb::Message& m : next.messages) {
    EXPECT_NE(m.type(), raftpb::MSG_HEARTBEAT);
  }
  c->node(1).advance(next);
}

TEST(RawNodeTest, LivenessHeartbeatKeepsAFollowerFromCampaigning) {
  auto c = elected(3);
  const Term term = c->node(1).status().term;
  // Node 2 hears nothing but liveness heartbeats for several election timeouts.
  for (int t = 0; t < 4 * kTicksToElect; ++t) {
    c->node(2).tick();
    ASSERT_TRUE(c->node(2).step(RawNode::liveness_heartbeat(1, 2, term)).ok());
  }
  EXPECT_EQ(c->node(2).status().role, Role::kFollower);
  EXPECT_EQ(c->node(2).status().leader, 1u);
  EXPECT_EQ(c->node(2).status().term, term);
  // Without them it campaigns.
  for (int t = 0; t < 4 * kTicksToElect; ++t) c->node(2).tick();
  EXPECT_NE(c->node(2).status().role, Role::kFollower);
}

TEST(RawNodeTest, HeartbeatCommitBeyondTheLogIsIgnoredNotFatal) {
  auto c = elected(3);
  const Term term = c->node(1).status().term;
  const Index last = c->node(2).status().last_index;
  raftpb::Message m = RawNode::liveness_heartbeat(1, 2, term);
  m.set_commit(last + 1'000);
  ASSERT_TRUE(c->node(2).step(m).ok());
  EXPECT_LE(c->node(2).status().commit, last);
  EXPECT_EQ(c->node(2).status().leader, 1u);
}

TEST(RawNodeTest, CreateRejectsInvalidConfig) {
  MemoryLogStorage storage;
  Config config;
  config.storage = &storage;
  EXPECT_EQ(RawNode::create(config).status().code(), Code::kInvalidArgument);  // id 0
  config.id = 1;
  config.heartbeat_ticks = config.election_ticks;
  EXPECT_EQ(RawNode::create(config).status().code(), Code::kInvalidArgument);
  config.heartbeat_ticks = 1;
  config.applied = 5;
  EXPECT_EQ(RawNode::create(config).status().code(), Code::kInvalidArgument);
  config.applied = 0;
  config.storage = nullptr;
  EXPECT_EQ(RawNode::create(config).status().code(), Code::kInvalidArgument);
}

// §5.2: a follower times out after a randomized timeout in [election, 2 * election).
TEST(RawNodeTest, ElectionTimeoutIsRandomizedWithinBounds) {
  std::set<int> seen;
  for (std::uint64_t seed = 0; seed < 40; ++seed) {
    ClusterOptions options;
    options.seed = seed;
    TestCluster c(options);
    c.add_nodes(3);
    int ticks = 0;
    while (c.node(1).status().role == Role::kFollower) {
      c.tick(1);
      ++ticks;
      ASSERT_LT(ticks, 2 * kDefaultElectionTicks) << "seed " << seed;
    }
    EXPECT_GE(ticks, kDefaultElectionTicks);
    seen.insert(ticks);
  }
  EXPECT_GT(seen.size(), 3u);
}

TEST(RawNodeTest, SingleVoterElectsItselfAndCommits) {
  TestCluster c;
  c.add_nodes(1);
  ASSERT_TRUE(c.node(1).campaign().ok());
  c.stabilize();
  EXPECT_EQ(c.leader(), 1u);
  ASSERT_TRUE(c.node(1).propose("x").ok());
  c.stabilize();
  ASSERT_FALSE(c.applied(1).empty());
  EXPECT_EQ(c.applied(1).back().data, "x");
}

// Thesis §9.6: a pre-candidate does not increment its term, so a partitioned node cannot
// disrupt the cluster when it rejoins.
TEST(RawNodeTest, PreVoteDoesNotBumpTerm) {
  auto c = elected(3);
  const Term term = c->node(1).status().term;
  c->partition({3});
  for (int k = 0; k < 5 * kTicksToElect; ++k) {
    c->tick(3);
    c->stabilize();
  }
  EXPECT_EQ(c->node(3).status().term, term);
  EXPECT_EQ(c->node(3).status().role, Role::kPreCandidate);
  c->heal();
  c->tick(1);
  c->stabilize();
  EXPECT_EQ(c->leader(), 1u);
  EXPECT_EQ(c->node(1).status().term, term);
  EXPECT_EQ(c->node(3).status().leader, 1u);
}

// Leader stickiness (thesis §4.2.3): a follower that hears from its leader ignores (pre-)votes.
TEST(RawNodeTest, FollowerWithLiveLeaderIgnoresPreVote) {
  auto c = elected(3);
  raftpb::Message m;
  m.set_type(raftpb::MSG_PRE_VOTE);
  m.set_from(3);
  m.set_to(2);
  m.set_term(c->node(2).status().term + 1);
  m.set_index(100);
  m.set_log_term(100);
  ASSERT_TRUE(c->node(2).step(m).ok());
  Ready rd = c->node(2).ready();
  EXPECT_TRUE(rd.messages.empty());
  c->node(2).advance(rd);
}

// §6.2 (check-quorum): a leader that hears from no quorum within an election timeout steps down.
TEST(RawNodeTest, CheckQuorumLeaderStepsDown) {
  auto c = elected(3);
  c->partition({1});
  for (int k = 0; k < 2 * kDefaultElectionTicks; ++k) {
    c->tick(1);
    c->stabilize();
  }
  EXPECT_EQ(c->node(1).status().role, Role::kFollower);
  EXPECT_EQ(c->node(1).status().leader, kNoNode);
}

TEST(RawNodeTest, LeaderWithQuorumContactStaysLeader) {
  auto c = elected(3);
  c->crash(3);
  for (int k = 0; k < 5 * kDefaultElectionTicks; ++k) {
    c->tick(1);
    c->stabilize();
  }
  EXPECT_EQ(c->leader(), 1u);
}

// §5.3: entries reach every follower and commit once a majority stores them.
TEST(RawNodeTest, ReplicatesAndCommitsOnMajority) {
  auto c = elected(3);
  c->crash(3);
  ASSERT_TRUE(c->node(1).propose("a").ok());
  ASSERT_TRUE(c->node(2).propose("b").ok());  // forwarded to the leader
  c->stabilize();
  ASSERT_GE(c->applied(2).size(), 2u);
  EXPECT_EQ(c->applied(2)[c->applied(2).size() - 2].data, "a");
  EXPECT_EQ(c->applied(2).back().data, "b");
  c->restart(3);
  c->tick(1);
  c->stabilize();
  EXPECT_EQ(c->applied(3), c->applied(1));
}

TEST(RawNodeTest, ProposeWithoutLeaderIsNotLeader) {
  TestCluster c;
  c.add_nodes(3);
  EXPECT_EQ(c.node(2).propose("x").code(), Code::kNotLeader);
}

raftpb::Message app_resp(NodeId from, NodeId to, Term term, Index index) {
  raftpb::Message m;
  m.set_type(raftpb::MSG_APP_RESP);
  m.set_from(from);
  m.set_to(to);
  m.set_term(term);
  m.set_index(index);
  return m;
}

// §5.4.2 (Figure 8): an old-term entry stored on a majority is not committed by counting.
TEST(RawNodeTest, CommitOnlyCountsCurrentTermEntries) {
  ClusterOptions options;
  options.pre_vote = false;
  options.check_quorum = false;
  auto c = elected(3, options);
  ASSERT_TRUE(c->node(1).propose("old").ok());
  c->process_ready(1);
  c->deliver_to(2);
  c->drop_to(3);
  c->process_ready(2);
  c->drop_to(1);  // node 1 never learns that node 2 stores entry 3 (term 2)
  ASSERT_TRUE(c->node(2).campaign().ok());
  c->process_ready(2);
  c->deliver_to(1);
  c->drop_to(3);
  c->process_ready(1);
  c->deliver_to(2);
  ASSERT_EQ(c->node(2).status().role, Role::kLeader);
  c->process_ready(2);  // its term-3 entry 4 is now durable locally
  c->drop_to(1);
  c->drop_to(3);
  const Term term = c->node(2).status().term;
  const Index commit_before = c->node(2).status().commit;
  ASSERT_TRUE(c->node(2).step(app_resp(1, 2, term, 3)).ok());
  EXPECT_EQ(c->node(2).status().commit, commit_before);  // entry 3 is on {1, 2} but is term 2
  ASSERT_TRUE(c->node(2).step(app_resp(1, 2, term, 4)).ok());
  EXPECT_EQ(c->node(2).status().commit, 4u);  // entry 4 commits, and entry 3 with it
}

// Persistence contract: the leader's own log counts toward the quorum only after advance().
TEST(RawNodeTest, LeaderCountsOwnLogOnlyAfterAdvance) {
  auto c = elected(3);
  ASSERT_TRUE(c->node(1).propose("x").ok());
  Ready rd = c->node(1).ready();
  ASSERT_EQ(rd.entries.size(), 1u);
  const Index index = rd.entries[0].index();
  ASSERT_TRUE(c->storage(1).append(rd.entries).ok());
  ASSERT_TRUE(c->node(1).step(app_resp(2, 1, c->node(1).status().term, index)).ok());
  EXPECT_LT(c->node(1).status().commit, index);  // {2} alone is not a quorum of 3
  c->node(1).advance(rd);
  EXPECT_EQ(c->node(1).status().commit, index);
  c->node(1).check_invariants();
}

// The planted bug of docs/reliability.md ("A planted bug") is off unless a test asks for it.
TEST(RawNodeTest, PlantedCommitWithoutQuorumIsOffByDefault) {
  EXPECT_FALSE(Config{}.planted_commit_without_quorum);
  EXPECT_FALSE(ClusterOptions{}.planted_commit_without_quorum);
}

// With the planted bug a leader of three commits an entry that no follower holds (the
// acknowledgement the simulator must catch); without it the same leader waits for a majority.
TEST(RawNodeTest, PlantedCommitWithoutQuorumCommitsWhatOnlyTheLeaderHolds) {
  for (const bool planted : {false, true}) {
    ClusterOptions options;
    options.planted_commit_without_quorum = planted;
    auto c = elected(3, options);
    ASSERT_TRUE(c->node(1).propose("x").ok());
    Ready rd = c->node(1).ready();
    ASSERT_EQ(rd.entries.size(), 1u);
    const Index index = rd.entries[0].index();
    ASSERT_TRUE(c->storage(1).append(rd.entries).ok());
    c->node(1).advance(rd);  // no follower ever hears of the entry
    if (planted) {
      EXPECT_EQ(c->node(1).status().commit, index);
    } else {
      EXPECT_LT(c->node(1).status().commit, index);
    }
    c->node(1).check_invariants();
  }
}

TEST(RawNodeTest, SingleVoterCommitsOnlyAfterAdvance) {
  TestCluster c;
  c.add_nodes(1);
  ASSERT_TRUE(c.node(1).campaign().ok());
  Ready rd = c.node(1).ready();
  ASSERT_EQ(rd.entries.size(), 1u);
  EXPECT_TRUE(rd.committed_entries.empty());
  ASSERT_TRUE(c.storage(1).append(rd.entries).ok());
  c.node(1).advance(rd);
  EXPECT_EQ(c.node(1).status().commit, rd.entries[0].index());
}

TEST(RawNodeTest, InflightBytesBoundStopsReplication) {
  ClusterOptions options;
  options.max_inflight_bytes = 100;
  auto c = elected(2, options);
  for (int k = 0; k < 10; ++k) {
    ASSERT_TRUE(c->node(1).propose(std::string(40, 'x')).ok());
    c->process_ready(1);
  }
  // 2 messages of ~46 bytes stay under the bound; the third reaches it; then nothing more.
  EXPECT_EQ(count_msgs(*c, raftpb::MSG_APP, 2), 3u);
  const PeerProgress p = c->node(1).status().progress.at(1);
  EXPECT_EQ(p.inflight_msgs, 3u);
  EXPECT_GE(p.inflight_bytes, 100u);
  c->stabilize();  // acknowledgements free the window and the rest flows
  EXPECT_EQ(c->applied(2).back().index, c->applied(1).back().index);
}

TEST(RawNodeTest, InflightMessageBoundStopsReplication) {
  ClusterOptions options;
  options.max_inflight_msgs = 2;
  auto c = elected(2, options);
  for (int k = 0; k < 5; ++k) {
    ASSERT_TRUE(c->node(1).propose("x").ok());
    c->process_ready(1);
  }
  EXPECT_EQ(count_msgs(*c, raftpb::MSG_APP, 2), 2u);
  EXPECT_EQ(c->node(1).status().progress.at(1).inflight_msgs, 2u);
}

TEST(RawNodeTest, ProbeStateSendsOneMessageInFlight) {
  auto c = elected(2);
  c->node(1).report_unreachable(2);
  EXPECT_STREQ(c->node(1).status().progress.at(1).state, "probe");
  for (int k = 0; k < 3; ++k) {
    ASSERT_TRUE(c->node(1).propose("x").ok());
    c->process_ready(1);
  }
  EXPECT_EQ(count_msgs(*c, raftpb::MSG_APP, 2), 1u);
}

// Batching: a lagging follower catches up in MSG_APPs bounded by max_msg_bytes.
TEST(RawNodeTest, CatchUpIsBatchedByMaxMsgBytes) {
  ClusterOptions options;
  options.max_msg_bytes = 100;
  std::ostringstream trace;
  auto c = elected(3, options, &trace);
  c->crash(3);
  for (int k = 0; k < 6; ++k) ASSERT_TRUE(c->node(1).propose(std::string(40, 'y')).ok());
  c->stabilize();
  c->restart(3);
  trace.str("");
  c->tick(1);
  c->stabilize();
  EXPECT_EQ(c->applied(3), c->applied(1));
  EXPECT_GE(count_lines(trace.str(), "send: 1->3 APP", "entries=["), 3u);
}

TEST(RawNodeTest, SnapshotSentWhenFollowerBehindCompaction) {
  std::ostringstream trace;
  auto c = elected(3, {}, &trace);
  c->crash(3);
  for (const char* v : {"a", "b", "c"}) ASSERT_TRUE(c->node(1).propose(v).ok());
  c->stabilize();
  c->compact(1, c->applied(1).back().index);
  c->restart(3);
  trace.str("");
  c->tick(1);
  c->stabilize();
  EXPECT_EQ(count_lines(trace.str(), "send: 1->3 SNAP"), 1u);
  EXPECT_EQ(c->applied(3), c->applied(1));
  EXPECT_STREQ(c->node(1).status().progress.at(2).state, "replicate");
}

TEST(RawNodeTest, FailedSnapshotReportReturnsPeerToProbe) {
  auto c = elected(3);
  c->crash(3);
  ASSERT_TRUE(c->node(1).propose("a").ok());
  c->stabilize();
  c->compact(1, c->applied(1).back().index);
  c->restart(3);
  c->tick(1);
  for (int k = 0; k < 4 && count_msgs(*c, raftpb::MSG_SNAP, 3) == 0; ++k) {
    c->process_ready(1);
    if (count_msgs(*c, raftpb::MSG_SNAP, 3) > 0) break;
    c->deliver_to(3);
    c->process_ready(3);
    c->deliver_to(1);
  }
  ASSERT_STREQ(c->node(1).status().progress.at(2).state, "snapshot");
  c->drop_to(3);  // the stream failed: the cluster reports report_snapshot(3, false)
  EXPECT_STREQ(c->node(1).status().progress.at(2).state, "probe");
}

TEST(RawNodeTest, LearnerDoesNotVote) {
  std::ostringstream trace;
  auto c = elected(3, {}, &trace);
  c->add_nodes(1);
  ASSERT_TRUE(c->node(1).propose_conf_change(conf_change(raftpb::CONF_CHANGE_ADD_LEARNER, 4)).ok());
  c->stabilize();
  c->tick(1);
  c->stabilize();
  EXPECT_EQ(c->applied(4), c->applied(1));  // learners receive replication
  EXPECT_EQ(c->node(4).campaign().code(), Code::kFailedPrecondition);
  c->tick(4, 10 * kDefaultElectionTicks);
  EXPECT_EQ(c->node(4).status().role, Role::kFollower);
  // Candidates do not ask learners, and the learner does not count toward any quorum.
  trace.str("");
  c->crash(1);
  tick_until_leader(*c);
  EXPECT_EQ(count_lines(trace.str(), "->4 PRE_VOTE"), 0u);
  EXPECT_EQ(count_lines(trace.str(), "->4 VOTE"), 0u);
  const NodeId leader = c->leader();
  ASSERT_TRUE(leader == 2 || leader == 3);
  c->crash(leader == 2 ? 3 : 2);
  const Index commit = c->node(leader).status().commit;
  ASSERT_TRUE(c->node(leader).propose("needs-a-voter").ok());
  c->stabilize();
  EXPECT_EQ(c->node(leader).status().commit, commit);  // leader + learner is no quorum
}

TEST(RawNodeTest, LearnerPromotedToVoterCountsTowardQuorum) {
  auto c = elected(3);
  c->add_nodes(1);
  ASSERT_TRUE(c->node(1).propose_conf_change(conf_change(raftpb::CONF_CHANGE_ADD_LEARNER, 4)).ok());
  c->stabilize();
  ASSERT_TRUE(c->node(1).propose_conf_change(conf_change(raftpb::CONF_CHANGE_ADD_VOTER, 4)).ok());
  c->stabilize();
  c->tick(1);
  c->stabilize();
  EXPECT_EQ(c->node(1).status().conf_state.voters_size(), 4);
  c->crash(2);
  const Index commit = c->node(1).status().commit;
  ASSERT_TRUE(c->node(1).propose("3-of-4").ok());
  c->stabilize();
  EXPECT_GT(c->node(1).status().commit, commit);
}

TEST(RawNodeTest, ConfChangeRejectedWhilePreviousUnapplied) {
  auto c = elected(3);
  ASSERT_TRUE(c->node(1).propose_conf_change(conf_change(raftpb::CONF_CHANGE_ADD_LEARNER, 4)).ok());
  EXPECT_EQ(c->node(1).propose_conf_change(conf_change(raftpb::CONF_CHANGE_ADD_LEARNER, 5)).code(),
            Code::kFailedPrecondition);
  c->stabilize();
  EXPECT_TRUE(c->node(1).propose_conf_change(conf_change(raftpb::CONF_CHANGE_ADD_LEARNER, 5)).ok());
}

TEST(RawNodeTest, RemovedLeaderStepsDown) {
  auto c = elected(3);
  ASSERT_TRUE(c->node(1).propose_conf_change(conf_change(raftpb::CONF_CHANGE_REMOVE_NODE, 1)).ok());
  c->stabilize();
  EXPECT_EQ(c->node(1).status().role, Role::kFollower);
  EXPECT_EQ(c->node(1).campaign().code(), Code::kFailedPrecondition);
  const NodeId leader = tick_until_leader(*c);
  EXPECT_TRUE(leader == 2 || leader == 3);
}

TEST(RawNodeTest, TransferLeadershipToUpToDateFollower) {
  auto c = elected(3);
  const Term term = c->node(1).status().term;
  c->node(1).transfer_leadership(2);
  c->stabilize();
  EXPECT_EQ(c->leader(), 2u);
  EXPECT_EQ(c->node(2).status().term, term + 1);
}

TEST(RawNodeTest, TransferLeadershipBlocksProposalsUntilAborted) {
  auto c = elected(3);
  c->crash(3);
  c->node(1).transfer_leadership(3);
  EXPECT_EQ(c->node(1).status().lead_transferee, 3u);
  EXPECT_EQ(c->node(1).propose("x").code(), Code::kUnavailable);
  for (int k = 0; k < kDefaultElectionTicks; ++k) {
    c->tick(1);
    c->stabilize();
  }
  EXPECT_EQ(c->node(1).status().lead_transferee, kNoNode);
  EXPECT_TRUE(c->node(1).propose("x").ok());
}

TEST(RawNodeTest, TransferLeadershipForwardedByFollower) {
  auto c = elected(3);
  c->node(2).transfer_leadership(3);
  c->stabilize();
  EXPECT_EQ(c->leader(), 3u);
}

TEST(RawNodeTest, TransferLeadershipToLearnerIsIgnored) {
  auto c = elected(3);
  c->add_nodes(1);
  ASSERT_TRUE(c->node(1).propose_conf_change(conf_change(raftpb::CONF_CHANGE_ADD_LEARNER, 4)).ok());
  c->stabilize();
  c->node(1).transfer_leadership(4);
  EXPECT_EQ(c->node(1).status().lead_transferee, kNoNode);
}

TEST(RawNodeTest, ReadIndexWaitsForCurrentTermCommit) {
  TestCluster c;
  c.add_nodes(1);
  ASSERT_TRUE(c.node(1).campaign().ok());  // leader at once; its empty entry is not durable yet
  c.node(1).read_index("r");
  Ready rd = c.node(1).ready();
  EXPECT_TRUE(rd.read_states.empty());
  ASSERT_TRUE(c.storage(1).append(rd.entries).ok());
  c.node(1).advance(rd);
  rd = c.node(1).ready();
  ASSERT_EQ(rd.read_states.size(), 1u);
  EXPECT_EQ(rd.read_states[0].context, "r");
  EXPECT_EQ(rd.read_states[0].index, c.node(1).status().commit);
  c.node(1).advance(rd);
}

TEST(RawNodeTest, ReadIndexNeedsQuorumHeartbeatAcks) {
  std::ostringstream trace;
  auto c = elected(3, {}, &trace);
  c->crash(2);
  c->crash(3);
  trace.str("");
  c->node(1).read_index("r");
  c->stabilize();
  EXPECT_EQ(count_lines(trace.str(), "read-state:"), 0u);  // no quorum of acks
  c->restart(2);
  c->node(1).read_index("r2");
  c->stabilize();
  // Once a quorum confirms leadership for r2, r (queued earlier) is answered as well.
  EXPECT_EQ(count_lines(trace.str(), "read-state:", "ctx=\"r\""), 1u);
  EXPECT_EQ(count_lines(trace.str(), "read-state:", "ctx=\"r2\""), 1u);
}

TEST(RawNodeTest, FollowerReadIndexIsForwarded) {
  auto c = elected(3);
  c->node(3).read_index("f");
  c->process_ready(3);
  c->deliver_to(1);
  c->process_ready(1);
  c->deliver_to(2);
  c->deliver_to(3);
  c->process_ready(2);
  c->process_ready(3);
  c->deliver_to(1);
  c->process_ready(1);
  c->deliver_to(3);
  Ready rd = c->node(3).ready();
  ASSERT_EQ(rd.read_states.size(), 1u);
  EXPECT_EQ(rd.read_states[0].context, "f");
  EXPECT_EQ(rd.read_states[0].index, c->node(1).status().commit);
  c->node(3).advance(rd);
}

TEST(RawNodeTest, UncommittedBytesBoundRejectsProposals) {
  ClusterOptions options;
  options.max_uncommitted_bytes = 100;
  auto c = elected(3, options);
  c->crash(2);
  c->crash(3);
  EXPECT_TRUE(c->node(1).propose(std::string(60, 'a')).ok());
  EXPECT_EQ(c->node(1).propose(std::string(60, 'b')).code(), Code::kResourceExhausted);
}

TEST(RawNodeTest, HeartbeatCommitIsCappedByMatch) {
  auto c = elected(3);
  c->crash(3);
  ASSERT_TRUE(c->node(1).propose("x").ok());
  c->stabilize();
  c->restart(3);
  c->tick(1);
  Ready rd = c->node(1).ready();
  for (const raftpb::Message& m : rd.messages) {
    if (m.type() == raftpb::MSG_HEARTBEAT && m.to() == 3) {
      EXPECT_LT(m.commit(), c->node(1).status().commit);
    }
  }
  c->node(1).advance(rd);
}

TEST(RawNodeTest, LowerTermAppendIsAnsweredWithCurrentTerm) {
  auto c = elected(3);
  raftpb::Message m;
  m.set_type(raftpb::MSG_APP);
  m.set_from(3);
  m.set_to(2);
  m.set_term(1);
  ASSERT_TRUE(c->node(2).step(m).ok());
  Ready rd = c->node(2).ready();
  ASSERT_EQ(rd.messages.size(), 1u);
  EXPECT_EQ(rd.messages[0].type(), raftpb::MSG_APP_RESP);
  EXPECT_EQ(rd.messages[0].term(), c->node(2).status().term);
  c->node(2).advance(rd);
}

TEST(RawNodeTest, StepRejectsMisaddressedMessage) {
  auto c = elected(3);
  raftpb::Message m = app_resp(3, 1, 2, 2);
  m.set_to(4);
  EXPECT_EQ(c->node(2).step(m).code(), Code::kInvalidArgument);
}

TEST(RawNodeTest, CrashLosesUnpersistedEntriesOnly) {
  auto c = elected(3);
  ASSERT_TRUE(c->node(1).propose("lost").ok());  // never handed out in a Ready
  c->crash(1);
  c->restart(1);
  EXPECT_EQ(c->node(1).status().last_index, c->storage(1).last_index());
  EXPECT_EQ(c->node(1).status().term, c->storage(1).hard_state().term());
}

}  // namespace
}  // namespace herald::raft

namespace herald::raft {
namespace {

// A replica rebuilt empty after corruption: voters {1, 2, 3}, term 5, its log at the bootstrap
// point, and a vote floor at index 10 (its last index before the rebuild).
struct RebuiltReplica {
  static constexpr Index kFloor = 10;
  static constexpr Term kTerm = 5;
  MemoryLogStorage storage;
  std::unique_ptr<RawNode> node;

  RebuiltReplica() {
    raftpb::ConfState cs;
    for (NodeId id : {1, 2, 3}) cs.add_voters(id);
    storage.set_conf_state(cs);
    raftpb::SnapshotMetadata meta;
    meta.set_index(1);
    meta.set_term(1);
    *meta.mutable_conf_state() = cs;
    EXPECT_TRUE(storage.apply_snapshot(meta).ok());
    raftpb::HardState hs;
    hs.set_term(kTerm);
    hs.set_commit(1);
    storage.set_hard_state(hs);
    Config config;
    config.id = 2;
    config.applied = 1;
    config.vote_floor = kFloor;
    config.storage = &storage;
    node = std::move(RawNode::create(config)).value();
  }

  // Steps a (pre-)vote request of node 3 at the next term with a log ending at (index, 1) and
  // returns whether it was granted.
  bool grants(raftpb::MessageType type, Index index) {
    raftpb::Message m;
    m.set_type(type);
    m.set_from(3);
    m.set_to(2);
    m.set_term(kTerm + 1);
    m.set_index(index);
    m.set_log_term(1);
    EXPECT_TRUE(node->step(m).ok());
    Ready rd = node->ready();
    bool granted = false;
    for (const raftpb::Message& out : rd.messages) {
      if (out.to() == 3) granted = !out.reject();
    }
    node->advance(rd);
    return granted;
  }
};

TEST(RawNodeTest, AReplicaBelowItsVoteFloorGrantsNoVoteAndNeverCampaigns) {
  RebuiltReplica r;
  EXPECT_FALSE(r.grants(raftpb::MSG_PRE_VOTE, 1));
  EXPECT_FALSE(r.grants(raftpb::MSG_VOTE, 1));
  // Even a candidate whose log is far ahead: granting would still count this replica's lost
  // acknowledgements for nothing, so the floor alone decides.
  EXPECT_FALSE(r.grants(raftpb::MSG_VOTE, 100));
  EXPECT_FALSE(r.node->campaign().ok());
  for (int k = 0; k < 5 * kTicksToElect; ++k) {
    r.node->tick();
    Ready rd = r.node->ready();
    for (const raftpb::Message& m : rd.messages) {
      EXPECT_NE(m.type(), raftpb::MSG_VOTE);
      EXPECT_NE(m.type(), raftpb::MSG_PRE_VOTE);
    }
    r.node->advance(rd);
  }
  EXPECT_EQ(r.node->status().role, Role::kFollower);
}

TEST(RawNodeTest, AReplicaThatReachedItsVoteFloorVotesAgain) {
  RebuiltReplica r;
  std::vector<raftpb::Entry> entries;
  for (Index i = 2; i <= RebuiltReplica::kFloor; ++i) {
    raftpb::Entry e;
    e.set_index(i);
    e.set_term(1);
    entries.push_back(e);
  }
  ASSERT_TRUE(r.storage.append(entries).ok());
  r.node = std::move(RawNode::create([&r] {
             Config config;
             config.id = 2;
             config.applied = 1;
             config.vote_floor = RebuiltReplica::kFloor;
             config.storage = &r.storage;
             return config;
           }()))
               .value();
  EXPECT_TRUE(r.grants(raftpb::MSG_VOTE, RebuiltReplica::kFloor));
}

}  // namespace
}  // namespace herald::raft

namespace herald::raft {
namespace {

// A replica restarted on a disk that may have lost synced writes: voters {1, 2, 3}, term 5, its
// log at the bootstrap point (index 1, term 1), recovering (Config::recovering).
struct RestartedReplica {
  static constexpr Term kTerm = 5;
  MemoryLogStorage storage;
  std::unique_ptr<RawNode> node;

  RestartedReplica() {
    raftpb::ConfState cs;
    for (NodeId id : {1, 2, 3}) cs.add_voters(id);
    storage.set_conf_state(cs);
    raftpb::SnapshotMetadata meta;
    meta.set_index(1);
    meta.set_term(1);
    *meta.mutable_conf_state() = cs;
    EXPECT_TRUE(storage.apply_snapshot(meta).ok());
    raftpb::HardState hs;
    hs.set_term(kTerm);
    hs.set_commit(1);
    storage.set_hard_state(hs);
    Config config;
    config.id = 2;
    config.applied = 1;
    config.recovering = true;
    config.storage = &storage;
    node = std::move(RawNode::create(config)).value();
  }

  // Steps `m` (from node 3 or 1 to node 2), persists the Ready, and returns what node 2 sent.
  std::vector<raftpb::Message> step(raftpb::Message m) {
    m.set_to(2);
    EXPECT_TRUE(node->step(m).ok());
    return drain();
  }
  std::vector<raftpb::Message> drain() {
    std::vector<raftpb::Message> out;
    while (node->has_ready()) {
      Ready rd = node->ready();
      if (rd.hard_state) storage.set_hard_state(*rd.hard_state);
      if (!rd.entries.empty()) {
        EXPECT_TRUE(storage.append(rd.entries).ok());
      }
      out.insert(out.end(), rd.messages.begin(), rd.messages.end());
      node->advance(rd);
    }
    return out;
  }
  // Whether node 2 grants a (pre-)vote of node 3 at `term` for a log ending at (index, log_term).
  bool grants(raftpb::MessageType type, Term term, Index index, Term log_term) {
    raftpb::Message m;
    m.set_type(type);
    m.set_from(3);
    m.set_term(term);
    m.set_index(index);
    m.set_log_term(log_term);
    bool granted = false;
    for (const raftpb::Message& out : step(m)) {
      if (out.to() == 3) granted = !out.reject();
    }
    return granted;
  }
  // Node 1, leader of `term`, appends one entry after (1, 1) and heartbeats.
  std::vector<raftpb::Message> append_and_heartbeat(Term term) {
    raftpb::Message app;
    app.set_type(raftpb::MSG_APP);
    app.set_from(1);
    app.set_term(term);
    app.set_index(1);
    app.set_log_term(1);
    app.set_commit(1);
    raftpb::Entry& e = *app.add_entries();
    e.set_index(2);
    e.set_term(term);
    std::vector<raftpb::Message> out = step(app);
    raftpb::Message hb;
    hb.set_type(raftpb::MSG_HEARTBEAT);
    hb.set_from(1);
    hb.set_term(term);
    hb.set_commit(1);
    for (raftpb::Message& m : step(hb)) out.push_back(std::move(m));
    return out;
  }
};

TEST(RawNodeTest, ARecoveringReplicaGrantsNoVoteAcknowledgesNothingAndNeverCampaigns) {
  RestartedReplica r;
  EXPECT_FALSE(r.grants(raftpb::MSG_PRE_VOTE, RestartedReplica::kTerm + 1, 100, 4));
  EXPECT_FALSE(r.grants(raftpb::MSG_VOTE, RestartedReplica::kTerm + 1, 100, 4));
  EXPECT_FALSE(r.node->campaign().ok());
  // It appends what a leader sends, but answers neither the append nor the heartbeat: a stale
  // leader of a term it may have moved past must not count it toward a commit or a read.
  EXPECT_TRUE(r.append_and_heartbeat(RestartedReplica::kTerm + 1).empty());
  EXPECT_EQ(r.storage.last_index(), 2u);
  for (int k = 0; k < 5 * kTicksToElect; ++k) {
    r.node->tick();
    for (const raftpb::Message& m : r.drain()) {
      EXPECT_NE(m.type(), raftpb::MSG_VOTE);
      EXPECT_NE(m.type(), raftpb::MSG_PRE_VOTE);
    }
  }
  EXPECT_TRUE(r.node->recovering());
  EXPECT_EQ(r.node->status().role, Role::kFollower);
}

TEST(RawNodeTest, RecoveryAdoptsTheHighestReportedTermAndNeverVotesInIt) {
  RestartedReplica r;
  constexpr Term kReported = RestartedReplica::kTerm + 3;
  r.node->end_recovery(RecoveryEvidence{kReported, 1, 1});
  r.drain();
  EXPECT_FALSE(r.node->recovering());
  EXPECT_EQ(r.node->status().term, kReported);
  EXPECT_EQ(r.storage.hard_state().term(), kReported);
  // It may have voted in kReported before its disk lost the vote: no vote in that term.
  EXPECT_FALSE(r.grants(raftpb::MSG_VOTE, kReported, 1, 1));
  EXPECT_TRUE(r.grants(raftpb::MSG_PRE_VOTE, kReported + 1, 1, 1));
  EXPECT_TRUE(r.grants(raftpb::MSG_VOTE, kReported + 1, 1, 1));
  // And it acknowledges again.
  std::size_t acks = 0;
  for (const raftpb::Message& m : r.append_and_heartbeat(kReported + 1)) {
    acks += m.type() == raftpb::MSG_APP_RESP || m.type() == raftpb::MSG_HEARTBEAT_RESP ? 1 : 0;
  }
  EXPECT_EQ(acks, 2u);
}

TEST(RawNodeTest, ARecoveredReplicaVotesOnlyForALogCoveringTheReportedOne) {
  RestartedReplica r;
  // Another voter reported a log ending at (index 20, term 3): it holds every committed entry
  // this replica may have acknowledged and lost.
  r.node->end_recovery(RecoveryEvidence{RestartedReplica::kTerm, 3, 20});
  r.drain();
  constexpr Term kNext = RestartedReplica::kTerm + 1;
  EXPECT_FALSE(r.grants(raftpb::MSG_VOTE, kNext, 50, 2));  // longer, but of an older term
  EXPECT_FALSE(r.grants(raftpb::MSG_VOTE, kNext, 19, 3));
  EXPECT_TRUE(r.grants(raftpb::MSG_VOTE, kNext, 20, 3));
  // Its own log (1, 1) does not cover it: it must not lead.
  EXPECT_FALSE(r.node->campaign().ok());
}

TEST(RawNodeTest, ALeaderForgetsTheMatchOfAPeerThatRestarted) {
  auto c = elected(3);
  ASSERT_TRUE(c->node(1).propose("x").ok());
  c->stabilize();
  auto match_of = [&c](NodeId peer) {
    for (const PeerProgress& p : c->node(1).status().progress) {
      if (p.id == peer) return p.match;
    }
    return Index{0};
  };
  const Index before = match_of(2);
  ASSERT_GT(before, 0u);
  c->node(1).forget_match(2);
  EXPECT_EQ(match_of(2), 0u);
  // The next heartbeat round probes it again and its answers restore the match.
  c->tick(1, kDefaultHeartbeatTicks);
  c->stabilize();
  EXPECT_EQ(match_of(2), before);
}

}  // namespace
}  // namespace herald::raft
