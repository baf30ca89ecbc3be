#include "rsm/membership.h"

#include <gtest/gtest.h>

namespace herald::rsm {
namespace {

// Voters 1, 2, 3 led by 1, and learner 4 that holds the leader's whole log.
MembershipView three_voters_and_a_learner() {
  MembershipView view;
  for (const raft::NodeId v : {1, 2, 3}) view.conf.add_voters(v);
  view.conf.add_learners(4);
  view.leader = 1;
  view.leader_last_index = 5'000;
  view.node_match = 5'000;
  return view;
}

MemberChange change(MemberOp op, raft::NodeId node, std::string address = {}) {
  return MemberChange{op, node, std::move(address)};
}

TEST(MemberChangeCheck, AddingANewNodeAsLearnerNeedsItsPeerAddress) {
  const MembershipView view = three_voters_and_a_learner();
  EXPECT_TRUE(check_member_change(view, change(MemberOp::kAddLearner, 5, "10.0.0.5:7401")).ok());
  EXPECT_EQ(check_member_change(view, change(MemberOp::kAddLearner, 5)).code(),
            Code::kInvalidArgument);
  for (const char* bad : {"10.0.0.5", ":7401", "host:0", "host:70000", "host:12ab"}) {
    EXPECT_EQ(check_member_change(view, change(MemberOp::kAddLearner, 5, bad)).code(),
              Code::kInvalidArgument)
        << bad;
  }
  EXPECT_EQ(check_member_change(view, change(MemberOp::kAddLearner, 5,
                                             std::string(kMaxPeerAddressBytes, 'h') + ":1"))
                .code(),
            Code::kInvalidArgument);
}

TEST(MemberChangeCheck, NodeIdZeroIsRefused) {
  EXPECT_EQ(
      check_member_change(three_voters_and_a_learner(), change(MemberOp::kAddLearner, 0, "h:1"))
          .code(),
      Code::kInvalidArgument);
}

TEST(MemberChangeCheck, AddingAMemberAgainIsAlreadyExists) {
  const MembershipView view = three_voters_and_a_learner();
  EXPECT_EQ(check_member_change(view, change(MemberOp::kAddLearner, 2, "h:1")).code(),
            Code::kAlreadyExists);
  EXPECT_EQ(check_member_change(view, change(MemberOp::kAddLearner, 4, "h:1")).code(),
            Code::kAlreadyExists);
}

TEST(MemberChangeCheck, PromotingNeedsACaughtUpLearner) {
  MembershipView view = three_voters_and_a_learner();
  EXPECT_TRUE(check_member_change(view, change(MemberOp::kPromote, 4)).ok());
  EXPECT_EQ(check_member_change(view, change(MemberOp::kPromote, 2)).code(), Code::kAlreadyExists);
  EXPECT_EQ(check_member_change(view, change(MemberOp::kPromote, 9)).code(), Code::kNotFound);
  view.node_match = view.leader_last_index - kMaxPromoteLagEntries;
  EXPECT_TRUE(check_member_change(view, change(MemberOp::kPromote, 4)).ok());
  view.node_match = view.leader_last_index - kMaxPromoteLagEntries - 1;
  EXPECT_EQ(check_member_change(view, change(MemberOp::kPromote, 4)).code(),
            Code::kFailedPrecondition);
  view.node_match.reset();  // the leader has not heard from it at all
  EXPECT_EQ(check_member_change(view, change(MemberOp::kPromote, 4)).code(),
            Code::kFailedPrecondition);
}

TEST(MemberChangeCheck, RemovingTheLeaderAnUnknownNodeOrTheLastVoterIsRefused) {
  MembershipView view = three_voters_and_a_learner();
  EXPECT_TRUE(check_member_change(view, change(MemberOp::kRemove, 2)).ok());
  EXPECT_TRUE(check_member_change(view, change(MemberOp::kRemove, 4)).ok());
  EXPECT_EQ(check_member_change(view, change(MemberOp::kRemove, 1)).code(),
            Code::kFailedPrecondition);
  EXPECT_EQ(check_member_change(view, change(MemberOp::kRemove, 7)).code(), Code::kNotFound);
  view.conf.clear_voters();
  view.conf.add_voters(2);
  view.leader = 2;
  EXPECT_EQ(check_member_change(view, change(MemberOp::kRemove, 2)).code(),
            Code::kFailedPrecondition);
  view.leader = raft::kNoNode;  // even when it does not lead (yet)
  EXPECT_EQ(check_member_change(view, change(MemberOp::kRemove, 2)).code(),
            Code::kFailedPrecondition);
}

TEST(MemberChangeCheck, ConfChangesCarryTheAddressAndCompareByTypeAndNode) {
  const raftpb::ConfChange add = to_conf_change(change(MemberOp::kAddLearner, 5, "h:1"));
  EXPECT_EQ(add.type(), raftpb::CONF_CHANGE_ADD_LEARNER);
  EXPECT_EQ(add.context(), "h:1");
  const raftpb::ConfChange promote = to_conf_change(change(MemberOp::kPromote, 5));
  EXPECT_EQ(promote.type(), raftpb::CONF_CHANGE_ADD_VOTER);
  EXPECT_FALSE(same_conf_change(add, promote));
  EXPECT_TRUE(same_conf_change(promote, to_conf_change(change(MemberOp::kPromote, 5))));
  EXPECT_EQ(to_conf_change(change(MemberOp::kRemove, 5)).type(), raftpb::CONF_CHANGE_REMOVE_NODE);
}

TEST(MemberAddressKey, RoundTripsAndRejectsOtherKeys) {
  EXPECT_EQ(member_of_address_key(member_address_key(42)), 42U);
  EXPECT_FALSE(member_of_address_key("a").has_value());
  EXPECT_FALSE(member_of_address_key("k12345678").has_value());
}

}  // namespace
}  // namespace herald::rsm
