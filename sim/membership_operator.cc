#include "sim/membership_operator.h"

#include <fmt/format.h>

#include <algorithm>
#include <utility>

#include "base/assert.h"

namespace herald::sim {

namespace {

// ---- The operator ----
constexpr MonoMs kFirstChangeMs = 200;
constexpr MonoMs kMinChangeGapMs = 80;
constexpr MonoMs kMaxChangeGapMs = 600;
// Share of requests sent to a replica the operator picks at random instead of the leader.
constexpr double kAskAnyReplicaChance = 0.1;
// Share of learners removed instead of promoted.
constexpr double kRemoveLearnerChance = 0.2;
// With no learner: share of requests that remove a voter when adding a spare is possible too.
constexpr double kRemoveVoterChance = 0.4;
// A removed replica keeps running up to this long before the operator stops it.
constexpr MonoMs kMaxRetireDelayMs = 1'500;
// Entries read per page by the in-flight check.
constexpr std::uint64_t kReadPageBytes = 1ULL << 20U;

bool contains(const google::protobuf::RepeatedField<std::uint64_t>& ids, raft::NodeId id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

// "voters [1, 2, 3] learners [4]", ids sorted: the same membership always reads the same.
std::string describe(const raftpb::ConfState& conf) {
  std::vector<raft::NodeId> voters(conf.voters().begin(), conf.voters().end());
  std::vector<raft::NodeId> learners(conf.learners().begin(), conf.learners().end());
  std::sort(voters.begin(), voters.end());
  std::sort(learners.begin(), learners.end());
  return fmt::format("voters [{}] learners [{}]", fmt::join(voters, ", "),
                     fmt::join(learners, ", "));
}

void erase_id(google::protobuf::RepeatedField<std::uint64_t>& ids, raft::NodeId id) {
  ids.erase(std::remove(ids.begin(), ids.end(), id), ids.end());
}

rsm::MemberOp op_of(const raftpb::ConfChange& change) {
  switch (change.type()) {
    case raftpb::CONF_CHANGE_ADD_LEARNER: return rsm::MemberOp::kAddLearner;
    case raftpb::CONF_CHANGE_ADD_VOTER: return rsm::MemberOp::kPromote;
    default: return rsm::MemberOp::kRemove;
  }
}

}  // namespace

MembershipOperator::MembershipOperator(SimCluster& cluster, std::uint64_t rng_seed, MonoMs stop_ms)
    : cluster_(cluster), rng_(rng_seed), stop_ms_(stop_ms) {}

void MembershipOperator::start(MonoMs first_ms) {
  cluster_.schedule_call(first_ms, [this] { on_operator(); });
}

void MembershipOperator::on_replica_down(raft::NodeId id) {
  checked_applied_.erase(id);
  checked_log_.erase(id);
}

// ---- The operator ----

void MembershipOperator::on_operator() {
  const MonoMs now = cluster_.clock().mono_ms();
  if (now >= stop_ms_) {
    return;
  }
  cluster_.schedule_call(now + rng_.range(kMinChangeGapMs, kMaxChangeGapMs),
                         [this] { on_operator(); });
  const raft::NodeId leader = cluster_.leader_hint();
  if (leader == raft::kNoNode) {
    return;
  }
  const std::optional<rsm::MemberChange> change =
      pick_change(cluster_.node(leader)->conf_state(), leader);
  if (!change) {
    return;
  }
  raft::NodeId asked = leader;
  if (rng_.chance(kAskAnyReplicaChance)) {
    const std::vector<raft::NodeId> up = cluster_.up_ids();
    asked = up[rng_.uniform(up.size())];
  }
  ++stats_.asked;
  cluster_.log_event(fmt::format("operator: {} node {} (asking replica {})",
                                 rsm::member_op_name(change->op), change->node, asked));
  cluster_.node(asked)->change_membership(
      *change, [this, asked, c = *change](const Status& status) { on_answer(asked, c, status); });
}

std::optional<rsm::MemberChange> MembershipOperator::pick_change(const raftpb::ConfState& conf,
                                                                 raft::NodeId leader) {
  rsm::MemberChange change;
  if (!conf.learners().empty()) {
    change.node = conf.learners(static_cast<int>(rng_.uniform(conf.learners_size())));
    const bool full = conf.voters_size() >= kMaxVoters;
    change.op = full || rng_.chance(kRemoveLearnerChance) ? rsm::MemberOp::kRemove
                                                          : rsm::MemberOp::kPromote;
    return change;
  }
  std::vector<raft::NodeId> spares;  // never a member so far
  const ClusterOptions& options = cluster_.options();
  const raft::NodeId first_spare = static_cast<raft::NodeId>(options.replicas) + 1;
  for (raft::NodeId id = first_spare; id < first_spare + options.spares; ++id) {
    if (!contains(conf.voters(), id) && !retiring_.contains(id) && !cluster_.retired(id)) {
      spares.push_back(id);
    }
  }
  std::vector<raft::NodeId> removable;
  for (const raft::NodeId id : conf.voters()) {
    if (id != leader) removable.push_back(id);
  }
  const bool may_add = !spares.empty() && conf.voters_size() < kMaxVoters;
  const bool may_remove = conf.voters_size() > kMinVoters;
  if (may_remove && (!may_add || rng_.chance(kRemoveVoterChance))) {
    change.op = rsm::MemberOp::kRemove;
    change.node = removable[rng_.uniform(removable.size())];
    return change;
  }
  if (!may_add) {
    return std::nullopt;
  }
  change.op = rsm::MemberOp::kAddLearner;
  change.node = spares[rng_.uniform(spares.size())];
  change.peer_address = fmt::format("10.0.0.{}:7401", change.node);
  return change;
}

void MembershipOperator::on_answer(raft::NodeId asked, const rsm::MemberChange& change,
                                   const Status& status) {
  cluster_.log_event(fmt::format("operator: {} node {} answered by replica {}: {}",
                                 rsm::member_op_name(change.op), change.node, asked,
                                 status.to_string()));
  if (status.ok()) {
    const rsm::Node* node = cluster_.node(asked);
    HERALD_ASSERT(node != nullptr, "a replica answers while it runs");
    acked_.push_back(Acked{change, node->applied_index()});
    switch (change.op) {
      case rsm::MemberOp::kAddLearner: ++stats_.added; break;
      case rsm::MemberOp::kPromote: ++stats_.promoted; break;
      case rsm::MemberOp::kRemove: ++stats_.removed; break;
    }
    return;
  }
  switch (status.code()) {
    case Code::kInvalidArgument:
      // Every change the operator asks for is well formed.
      cluster_.report_violation(fmt::format("membership: {} node {} refused as invalid: {}",
                                            rsm::member_op_name(change.op), change.node,
                                            status.to_string()));
      break;
    case Code::kAborted:
    case Code::kTimeout:
    case Code::kUnavailable: ++stats_.unknown; break;
    default: ++stats_.refused; break;
  }
}

void MembershipOperator::retire_removed() {
  const auto& changes = cluster_.safety().conf_changes();
  if (changes.size() != stats_.committed) {
    stats_.committed = changes.size();
    std::map<raft::NodeId, std::pair<raft::Index, raftpb::ConfChangeType>> last;
    for (const auto& [index, change] : changes) {
      last[change.node_id()] = {index, change.type()};
    }
    for (const auto& [id, change] : last) {
      if (change.second == raftpb::CONF_CHANGE_REMOVE_NODE && !retiring_.contains(id)) {
        retiring_.insert(id);
        removed_at_.emplace(id, change.first);
        ++pending_retires_;
      }
    }
  }
  // The operator stops a removed node once every remaining member applied its removal (cluster
  // status shows each member's applied index). Before that, members that have not applied it
  // still count the removed node in their quorum: stopping it early, a second fault (say the
  // leader's log damaged) leaves them short of votes for good.
  if (removed_at_.empty()) {
    return;
  }
  const std::set<raft::NodeId> members = cluster_.leader_members();
  for (auto it = removed_at_.begin(); it != removed_at_.end();) {
    const raft::Index index = it->second;
    const bool known = !members.empty() && std::all_of(members.begin(), members.end(), [&](auto m) {
      const rsm::Node* node = cluster_.node(m);
      return node != nullptr && node->applied_index() >= index;
    });
    if (!known) {
      ++it;
      continue;
    }
    const raft::NodeId id = it->first;
    it = removed_at_.erase(it);
    const MonoMs at = cluster_.clock().mono_ms() + rng_.range(0, kMaxRetireDelayMs);
    cluster_.schedule_call(at, [this, id] {
      cluster_.retire_replica(id);
      ++stats_.retired;
      --pending_retires_;
    });
  }
}

// ---- Checks ----

std::string MembershipOperator::check_after_event() {
  retire_removed();
  for (const raft::NodeId id : cluster_.up_ids()) {
    const rsm::Node& node = *cluster_.node(id);
    for (std::string violation :
         {check_roles(id, node), check_applied_membership(id, node), check_in_flight(id, node)}) {
      if (!violation.empty()) {
        return violation;
      }
    }
  }
  return {};
}

std::string MembershipOperator::check_roles(raft::NodeId id, const rsm::Node& node) {
  const raft::NodeStatus st = node.status();
  max_commit_seen_ = std::max(max_commit_seen_, st.commit);
  if (st.role == raft::Role::kFollower) {
    return {};
  }
  if (retiring_.contains(id)) {
    zombie_terms_.emplace(id, st.term);
    stats_.zombie_campaigns = zombie_terms_.size();
  }
  if (contains(node.conf_state().voters(), id)) {
    return {};
  }
  return fmt::format(
      "membership: replica {} is {} in term {} but is no voter in the membership it applied at "
      "index {} ({})",
      id, raft::role_name(st.role), st.term, node.applied_index(), describe(node.conf_state()));
}

std::string MembershipOperator::check_applied_membership(raft::NodeId id, const rsm::Node& node) {
  const raft::Index applied = node.applied_index();
  auto [checked, fresh] = checked_applied_.try_emplace(id, applied);
  if ((!fresh && checked->second == applied) || applied == 0) {
    return {};  // At index 0 a spare has no membership yet and an initial voter its bootstrap.
  }
  checked->second = applied;
  std::string mine = describe(node.conf_state());
  const auto [seen, first] = membership_at_.try_emplace(applied, mine);
  if (first || seen->second == mine) {
    return {};
  }
  return fmt::format(
      "membership: replica {} applied index {} with {}, another replica applied it with {}", id,
      applied, mine, seen->second);
}

std::string MembershipOperator::check_in_flight(raft::NodeId id, const rsm::Node& node) {
  const raft::LogStorage& log = node.log();
  const raft::Index last = log.last_index();
  const raft::Index from = std::max(max_commit_seen_, log.first_index() - 1);
  auto [checked, fresh] = checked_log_.try_emplace(id, from, last);
  if (!fresh && checked->second == std::pair{from, last}) {
    return {};
  }
  checked->second = {from, last};
  // A leader proposes a change only once it applied the previous one, so beyond the highest
  // commit index any replica has shown, no log holds two config changes.
  std::vector<raft::Index> changes;
  for (raft::Index lo = from + 1; lo <= last;) {
    auto page = log.entries(lo, last + 1, kReadPageBytes);
    if (!page.ok()) {
      return fmt::format("replica {}: cannot read its log [{}, {}]: {}", id, lo, last,
                         page.status().to_string());
    }
    HERALD_ASSERT(!page->empty(), "entries() returns at least one entry when lo <= last");
    for (const raftpb::Entry& e : *page) {
      if (e.type() == raftpb::ENTRY_CONF_CHANGE) changes.push_back(e.index());
    }
    lo += page->size();
  }
  if (changes.size() <= 1) {
    return {};
  }
  return fmt::format(
      "membership: replica {} holds config changes at indexes {} beyond commit index {}: more "
      "than one change in flight",
      id, fmt::join(changes, ", "), from);
}

raftpb::ConfState MembershipOperator::expected_membership() const {
  raftpb::ConfState conf;
  for (raft::NodeId id = 1; id <= static_cast<raft::NodeId>(cluster_.options().replicas); ++id) {
    conf.add_voters(id);
  }
  for (const auto& [index, change] : cluster_.safety().conf_changes()) {
    const raft::NodeId id = change.node_id();
    erase_id(*conf.mutable_voters(), id);
    erase_id(*conf.mutable_learners(), id);
    if (change.type() == raftpb::CONF_CHANGE_ADD_VOTER) conf.add_voters(id);
    if (change.type() == raftpb::CONF_CHANGE_ADD_LEARNER) conf.add_learners(id);
  }
  return conf;
}

std::string MembershipOperator::unsettled() const {
  if (pending_retires_ > 0) {
    return fmt::format("{} removed replicas still to be stopped", pending_retires_);
  }
  return {};
}

std::string MembershipOperator::final_check() const {
  const std::string expected = describe(expected_membership());
  const std::set<raft::NodeId> members = cluster_.leader_members();
  for (const raft::NodeId id : members) {
    const rsm::Node* node = cluster_.node(id);
    if (node == nullptr) {
      return fmt::format("membership: member {} is not running at the end", id);
    }
    if (describe(node->conf_state()) != expected) {
      return fmt::format(
          "membership: member {} applied {}, but the committed changes make {} (applied index "
          "{})",
          id, describe(node->conf_state()), expected, node->applied_index());
    }
  }
  const auto& committed = cluster_.safety().conf_changes();
  for (const Acked& a : acked_) {
    const raftpb::ConfChange wanted = rsm::to_conf_change(a.change);
    const bool found = std::any_of(committed.begin(), committed.end(), [&](const auto& entry) {
      return entry.first <= a.applied && rsm::same_conf_change(entry.second, wanted);
    });
    if (!found) {
      return fmt::format(
          "membership: {} node {} was acknowledged at applied index {} but no such change is "
          "committed at or below it",
          rsm::member_op_name(a.change.op), a.change.node, a.applied);
    }
  }
  for (const auto& [index, change] : committed) {
    if (op_of(change) == rsm::MemberOp::kRemove && members.contains(change.node_id())) {
      return fmt::format("membership: node {} removed at index {} is a member again",
                         change.node_id(), index);
    }
  }
  return {};
}

}  // namespace herald::sim
