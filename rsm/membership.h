// Membership changes an operator asks for (docs/operations.md, "Membership"), checked before they
// reach the raft core, and the member address records they leave in the state space.
//
// The raft core changes membership one server at a time (docs/raft.md, "Membership changes"):
// add a learner, promote a learner to voter, remove a member. check_member_change() refuses, with
// a message an operator can act on, what the core would refuse later or what would hurt the
// cluster: an unknown node, a node that is already what it would become, removing the leader
// (transfer leadership first), removing the last voter, promoting a learner that has not caught up.
//
// A member's peer address travels in ConfChange.context and is kept, when the change applies, as a
// record of the state space ("n" fixed64-be(id), docs/storage-format.md): snapshots carry it to
// new members, and a restarted node finds the addresses of members added after its flags were
// written. Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/status.h"
#include "raft/types.h"

namespace herald::rsm {

// A peer address ("host:port") longer than this is refused.
inline constexpr std::size_t kMaxPeerAddressBytes = 255;
// A learner may be promoted only once its log is at most this many entries behind the leader's;
// a voter further behind would make commits wait for it (Raft thesis §4.2.1).
inline constexpr raft::Index kMaxPromoteLagEntries = 1'000;
// Prefix of the member address records in storage::Space::kState.
inline constexpr char kMemberAddressPrefix = 'n';

enum class MemberOp : std::uint8_t { kAddLearner, kPromote, kRemove };
[[nodiscard]] const char* member_op_name(MemberOp op);

struct MemberChange {
  MemberOp op = MemberOp::kAddLearner;
  raft::NodeId node = raft::kNoNode;
  std::string peer_address;  // kAddLearner only: where the other members reach it
};

// What check_member_change() needs to know about the cluster, as the leader sees it.
struct MembershipView {
  raftpb::ConfState conf;
  raft::NodeId leader = raft::kNoNode;
  raft::Index leader_last_index = 0;
  // The leader's match index for the node being promoted; nullopt when it has none.
  std::optional<raft::Index> node_match;
};

// OK when `change` may be proposed now. Errors: kInvalidArgument (node id 0, a missing or
// malformed peer address, an address longer than kMaxPeerAddressBytes); kNotFound (promote or
// remove a node that is not a member); kAlreadyExists (add a member, promote a voter);
// kFailedPrecondition (remove the leader, remove the last voter, promote a learner more than
// kMaxPromoteLagEntries behind).
[[nodiscard]] Status check_member_change(const MembershipView& view, const MemberChange& change);

// The ConfChange that carries `change` (the address in its context).
[[nodiscard]] raftpb::ConfChange to_conf_change(const MemberChange& change);

// Whether `a` and `b` change the same node the same way (type and node id).
[[nodiscard]] bool same_conf_change(const raftpb::ConfChange& a, const raftpb::ConfChange& b);

// The key of node `id`'s address record: kMemberAddressPrefix fixed64-be(id).
[[nodiscard]] std::string member_address_key(raft::NodeId id);
// The node id of a member address key; nullopt for another key.
[[nodiscard]] std::optional<raft::NodeId> member_of_address_key(std::string_view key);

}  // namespace herald::rsm
