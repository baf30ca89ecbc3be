#include "rsm/membership.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>

#include "base/encoding.h"

namespace herald::rsm {

namespace {

bool contains(const google::protobuf::RepeatedField<std::uint64_t>& ids, raft::NodeId id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

// "host:port" with a non-empty host and a port in 1..65535.
Status check_peer_address(std::string_view address) {
  if (address.empty()) {
    return Status::invalid_argument("a new member needs its peer address (host:port)");
  }
  if (address.size() > kMaxPeerAddressBytes) {
    return Status::invalid_argument(
        fmt::format("peer address longer than {} bytes", kMaxPeerAddressBytes));
  }
  const std::size_t colon = address.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return Status::invalid_argument(fmt::format("peer address '{}' is not host:port", address));
  }
  const std::string_view port = address.substr(colon + 1);
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535) {
    return Status::invalid_argument(
        fmt::format("peer address '{}' has no port in 1..65535", address));
  }
  return Status::ok_status();
}

}  // namespace

const char* member_op_name(MemberOp op) {
  switch (op) {
    case MemberOp::kAddLearner: return "add";
    case MemberOp::kPromote: return "promote";
    case MemberOp::kRemove: return "remove";
  }
  return "unknown";
}

Status check_member_change(const MembershipView& view, const MemberChange& change) {
  const raft::NodeId node = change.node;
  if (node == raft::kNoNode) return Status::invalid_argument("node ids are positive");
  const bool voter = contains(view.conf.voters(), node);
  const bool learner = contains(view.conf.learners(), node);
  switch (change.op) {
    case MemberOp::kAddLearner:
      if (voter || learner) {
        return Status::already_exists(
            fmt::format("node {} is already a {}", node, voter ? "voter" : "learner"));
      }
      return check_peer_address(change.peer_address);
    case MemberOp::kPromote:
      if (voter) return Status::already_exists(fmt::format("node {} is already a voter", node));
      if (!learner) {
        return Status::not_found(
            fmt::format("node {} is not a member; add it as a learner first", node));
      }
      if (view.node_match.value_or(0) + kMaxPromoteLagEntries < view.leader_last_index) {
        return Status::failed_precondition(fmt::format(
            "learner {} has {} of the leader's {} entries; promote it once it is within {} of "
            "the leader",
            node, view.node_match.value_or(0), view.leader_last_index, kMaxPromoteLagEntries));
      }
      return Status::ok_status();
    case MemberOp::kRemove:
      if (!voter && !learner)
        return Status::not_found(fmt::format("node {} is not a member", node));
      if (node == view.leader) {
        return Status::failed_precondition(
            fmt::format("node {} is the leader; transfer leadership to another voter first", node));
      }
      if (voter && view.conf.voters_size() == 1) {
        return Status::failed_precondition(
            fmt::format("node {} is the last voter; a cluster needs one", node));
      }
      return Status::ok_status();
  }
  return Status::invalid_argument("unknown membership change");
}

raftpb::ConfChange to_conf_change(const MemberChange& change) {
  raftpb::ConfChange cc;
  cc.set_node_id(change.node);
  switch (change.op) {
    case MemberOp::kAddLearner:
      cc.set_type(raftpb::CONF_CHANGE_ADD_LEARNER);
      cc.set_context(change.peer_address);
      break;
    case MemberOp::kPromote: cc.set_type(raftpb::CONF_CHANGE_ADD_VOTER); break;
    case MemberOp::kRemove: cc.set_type(raftpb::CONF_CHANGE_REMOVE_NODE); break;
  }
  return cc;
}

bool same_conf_change(const raftpb::ConfChange& a, const raftpb::ConfChange& b) {
  return a.type() == b.type() && a.node_id() == b.node_id();
}

std::string member_address_key(raft::NodeId id) {
  std::string key(1, kMemberAddressPrefix);
  put_fixed64_be(key, id);
  return key;
}

std::optional<raft::NodeId> member_of_address_key(std::string_view key) {
  if (key.size() != 1 + sizeof(std::uint64_t) || key[0] != kMemberAddressPrefix) {
    return std::nullopt;
  }
  return get_fixed64_be(key.substr(1));
}

}  // namespace herald::rsm
