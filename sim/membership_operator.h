// MembershipOperator: an operator who changes a simulated cluster's membership under faults, and
// the checks of what membership changes promise. The membership scenario
// (sim/membership_scenario.h) runs it on the KV state machine; the system scenario
// (sim/system_scenario.h) beside devices, workflows and every other fault.
//
// The cluster starts with its initial voters and ClusterOptions::spares spare node ids, which run
// from the start as empty replicas that wait to join (rsm::NodeConfig::join). From start() until
// `stop_ms` the operator, driven by its own random stream, asks the leader it believes in for one
// change at a time (rsm::Node::change_membership): add a spare as a learner (it catches up from the
// log or a snapshot), promote a learner, remove a learner or a voter other than the leader, never
// below kMinVoters voters nor above kMaxVoters. It does not wait for an answer before asking
// again, so the core's "one change in flight" refusals are exercised too, and it asks now and then
// a replica that is not the leader. A removed node is never added again: once every remaining
// member applied its removal the operator stops its process after a random delay (until then it
// runs, as a forgotten process would), and it is never restarted.
//
// Checks after every event (check_after_event):
//   - a replica that is not a voter in the membership it applied (a learner, a spare, a removed
//     node that applied its removal) never campaigns nor leads;
//   - two replicas that applied the same index applied the same membership;
//   - a leader's log holds at most one config change beyond its applied index (at most one change
//     in flight).
// At the end (final_check, healed and settled): every member of the leader's membership runs and
// applied the same membership, which is the initial one with every committed change applied in
// order; every acknowledged change is committed at or below the index at which it was
// acknowledged; no removed node is a member again.
//
// What the core does with a removed node that has not applied its own removal (it was cut off
// when the change committed): it still believes it is a voter and may campaign. Pre-vote keeps
// its term unchanged unless a majority of its stale membership would vote for it, and members
// that hear from a leader ignore it; the operator counts such campaigns (zombie_campaigns) and
// checks only what the core promises, that a node which applied its removal never campaigns.
//
// Determinism: every choice comes from the Rng seeded at construction. Thread-safety: none.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "base/random.h"
#include "rsm/membership.h"
#include "sim/cluster.h"

namespace herald::sim {

// The operator keeps at least this many voters, and adds none beyond kMaxVoters.
inline constexpr int kMinVoters = 3;
inline constexpr int kMaxVoters = 5;

struct MembershipStats {
  std::uint64_t asked = 0;  // changes the operator asked for
  std::uint64_t added = 0;  // acknowledged changes, by kind
  std::uint64_t promoted = 0;
  std::uint64_t removed = 0;
  std::uint64_t refused = 0;    // refused before being proposed (in flight, not leader, lagging)
  std::uint64_t unknown = 0;    // aborted or timed out: the outcome is unknown
  std::uint64_t committed = 0;  // config changes committed
  std::uint64_t retired = 0;    // removed replicas the operator stopped
  std::uint64_t zombie_campaigns = 0;  // events at which a removed node was (pre-)candidate
};

class MembershipOperator {
 public:
  // `cluster` (borrowed) must outlive the operator's use; it is not touched before start().
  MembershipOperator(SimCluster& cluster, std::uint64_t rng_seed, MonoMs stop_ms);
  MembershipOperator(const MembershipOperator&) = delete;
  MembershipOperator& operator=(const MembershipOperator&) = delete;

  // Schedules the first request at `first_ms`.
  void start(MonoMs first_ms);

  // The scenario forwards these ClusterScenario hooks.
  void on_replica_down(raft::NodeId id);
  [[nodiscard]] std::string check_after_event();
  [[nodiscard]] std::string unsettled() const;
  [[nodiscard]] std::string final_check() const;

  // Whether replica `id` was ever removed by a committed change (it serves nothing for good once
  // it applied that change).
  [[nodiscard]] bool removed(raft::NodeId id) const { return retiring_.contains(id); }
  [[nodiscard]] const MembershipStats& stats() const { return stats_; }

 private:
  // A change the operator saw acknowledged, and the acknowledging replica's applied index then.
  struct Acked {
    rsm::MemberChange change;
    raft::Index applied = 0;
  };

  void on_operator();
  // The change to ask for next, given the membership the leader applied; nullopt for none.
  [[nodiscard]] std::optional<rsm::MemberChange> pick_change(const raftpb::ConfState& conf,
                                                             raft::NodeId leader);
  void on_answer(raft::NodeId asked, const rsm::MemberChange& change, const Status& status);
  // Schedules the stop of every replica whose removal every remaining member applied.
  void retire_removed();
  [[nodiscard]] std::string check_roles(raft::NodeId id, const rsm::Node& node);
  [[nodiscard]] std::string check_applied_membership(raft::NodeId id, const rsm::Node& node);
  [[nodiscard]] std::string check_in_flight(raft::NodeId id, const rsm::Node& node);
  // The initial membership with every committed change applied in index order.
  [[nodiscard]] raftpb::ConfState expected_membership() const;

  SimCluster& cluster_;
  Rng rng_;
  MonoMs stop_ms_;
  std::set<raft::NodeId> retiring_;  // removed replicas whose stop is scheduled or done
  std::map<raft::NodeId, raft::Index> removed_at_;  // committed removals not yet known to all
  std::size_t pending_retires_ = 0;
  std::vector<Acked> acked_;
  // The membership first seen applied at each index (serialized ConfState).
  std::map<raft::Index, std::string> membership_at_;
  std::map<raft::NodeId, raft::Index> checked_applied_;  // last applied index checked, per replica
  // Per replica: the (from, last index) its in-flight check last ran at.
  std::map<raft::NodeId, std::pair<raft::Index, raft::Index>> checked_log_;
  raft::Index max_commit_seen_ = 0;  // the highest commit index any replica has shown
  std::set<std::pair<raft::NodeId, raft::Term>> zombie_terms_;  // removed nodes' campaigns
  MembershipStats stats_;
};

}  // namespace herald::sim
