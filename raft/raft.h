// Raft: the consensus state machine behind RawNode (internal to raft/).
//
// Role behaviour is a step function per role (follower, pre-candidate/candidate, leader), chosen
// after the term rules common to every role (Raft §5.1, thesis §9.6 pre-vote, §6.2 leases).
// Output accumulates in messages and read states that RawNode hands out in the next Ready; the
// durability bookkeeping (on_persisted) and apply bookkeeping (on_applied) come back through
// RawNode::advance. Nothing here performs I/O or reads a clock; the only randomness is rng_.
// Thread-safety: none.
#pragma once

#include <deque>
#include <string>
#include <vector>

#include "base/random.h"
#include "raft/progress.h"
#include "raft/raft_log.h"
#include "raft/raw_node.h"
#include "raft/read_only.h"

namespace herald::raft {

// Leader-side bound on ReadIndex requests waiting for a quorum or for a current-term commit;
// requests beyond it are dropped (the caller times them out).
inline constexpr std::size_t kMaxPendingReadRequests = 4096;

// Marker in MSG_VOTE.context: the campaign is a leadership transfer, so voters disregard their
// leader lease (thesis §3.10, §4.2.3).
inline constexpr std::string_view kTransferCampaignContext = "herald-transfer";

class Raft {
 public:
  // Precondition: config was validated by RawNode::create; committed/applied are consistent
  // with config.storage.
  Raft(const Config& config, const InitialState& state, Index committed, Index applied);

  void tick();
  [[nodiscard]] Status campaign();
  [[nodiscard]] Status propose(std::string data);
  [[nodiscard]] Status propose_conf_change(const raftpb::ConfChange& change);
  [[nodiscard]] raftpb::ConfState apply_conf_change(const raftpb::ConfChange& change);
  [[nodiscard]] Status step(const raftpb::Message& message);
  void read_index(std::string context);
  void transfer_leadership(NodeId transferee);
  void report_unreachable(NodeId id);
  void report_snapshot(NodeId id, bool success);
  void end_recovery(const RecoveryEvidence& evidence);
  [[nodiscard]] bool recovering() const { return recovering_; }
  void forget_match(NodeId peer);

  // Bookkeeping from RawNode::advance: the Ready's snapshot/entries are durable; its committed
  // entries are applied.
  void on_persisted(const Ready& rd);
  void on_applied(const std::vector<raftpb::Entry>& committed_entries);

  [[nodiscard]] SoftState soft_state() const { return {lead_, role_, term_, reason_}; }
  [[nodiscard]] raftpb::HardState hard_state() const;
  [[nodiscard]] const RaftLog& log() const { return log_; }
  [[nodiscard]] bool has_output() const { return !msgs_.empty() || !read_states_.empty(); }
  [[nodiscard]] std::vector<raftpb::Message> take_messages();
  [[nodiscard]] std::vector<ReadState> take_read_states();
  // See RawNode::heartbeats_now().
  [[nodiscard]] std::vector<raftpb::Message> heartbeats_now();
  [[nodiscard]] NodeStatus status() const;
  void check_invariants() const;

 private:
  enum class CampaignKind : std::uint8_t { kPreElection, kElection, kTransfer };

  // Role transitions.
  void reset(Term term);
  void become_follower(Term term, NodeId leader);
  void become_pre_candidate();
  void become_candidate();
  void become_leader();

  // Time.
  void tick_election();
  void tick_heartbeat();

  // Elections.
  [[nodiscard]] bool promotable() const;
  // False while the log is below Config::vote_floor: no votes granted, no campaign.
  [[nodiscard]] bool above_vote_floor() const;
  // A (last_term, last_index) log at least as up to date as what end_recovery() learned (§5.4.1
  // order); always true for a node that never recovered.
  [[nodiscard]] bool covers_recovery_log(Term last_term, Index last_index) const;
  // Sends `m` unless this node is recovering: the answers a leader counts toward a quorum.
  void send_ack(raftpb::Message m);
  [[nodiscard]] bool has_unapplied_conf_change() const;
  [[nodiscard]] Status hup(CampaignKind kind);
  void start_campaign(CampaignKind kind);
  void on_vote_response(const raftpb::Message& m);
  void handle_vote_request(const raftpb::Message& m);

  // Term rules common to every role; false means the message is dropped.
  [[nodiscard]] bool on_higher_term(const raftpb::Message& m);
  void on_lower_term(const raftpb::Message& m);

  // Role step functions.
  void step_follower(const raftpb::Message& m);
  void step_candidate(const raftpb::Message& m);
  void step_leader(const raftpb::Message& m);

  // Follower side of replication.
  void handle_append(const raftpb::Message& m);
  void handle_heartbeat(const raftpb::Message& m);
  void handle_snapshot(const raftpb::Message& m);
  [[nodiscard]] bool restore(const raftpb::SnapshotMetadata& snapshot);

  // Leader side of replication.
  [[nodiscard]] Status propose_entries(std::vector<raftpb::Entry> entries);
  [[nodiscard]] Status propose_entry(raftpb::Entry entry);
  [[nodiscard]] Status check_conf_change(const raftpb::Entry& entry, Index index) const;
  void append_entries(std::vector<raftpb::Entry> entries);
  bool maybe_send_append(NodeId to, bool send_if_empty);
  bool send_snapshot(NodeId to, Progress& pr);
  void bcast_append();
  void bcast_heartbeat(const std::string& context);
  void handle_append_response(const raftpb::Message& m);
  void handle_append_rejection(const raftpb::Message& m, Progress& pr);
  void handle_heartbeat_response(const raftpb::Message& m);
  bool maybe_commit();
  void on_config_changed();

  // ReadIndex.
  [[nodiscard]] bool committed_in_current_term() const;
  void leader_read_index(NodeId from, std::string context);
  void respond_read(NodeId to, Index index, std::string context);
  void release_waiting_reads();

  // Leadership transfer.
  void start_transfer(NodeId transferee);
  void abort_transfer() { lead_transferee_ = kNoNode; }
  // Records why the next role, term or leader change happens (reported in SoftState).
  void note(Transition kind, NodeId peer = kNoNode, int ticks = 0) {
    reason_ = {kind, peer, ticks};
  }
  void send_timeout_now(NodeId to);

  void send(raftpb::Message m);

  Config config_;
  NodeId id_;
  RaftLog log_;
  ProgressTracker tracker_;
  Rng rng_;

  Term term_ = 0;
  NodeId vote_ = kNoNode;
  NodeId lead_ = kNoNode;
  Role role_ = Role::kFollower;
  TransitionReason reason_;
  int election_elapsed_ = 0;   // ticks since the last leader contact (leader: since last check)
  int heartbeat_elapsed_ = 0;  // leader: ticks since the last heartbeat broadcast
  int randomized_election_timeout_ = 0;
  NodeId lead_transferee_ = kNoNode;
  // Config::recovering until end_recovery(); then (pre-)votes only for terms at or above
  // vote_term_floor_, to candidates whose log covers (recovery_last_term_, recovery_last_index_).
  bool recovering_ = false;
  Term vote_term_floor_ = 0;
  Term recovery_last_term_ = 0;
  Index recovery_last_index_ = 0;
  Index pending_conf_index_ = 0;         // leader: index of the last proposed config change
  std::uint64_t uncommitted_bytes_ = 0;  // leader: payload bytes proposed and not yet applied

  struct WaitingRead {
    NodeId from;
    std::string context;
  };
  ReadOnlyQueue read_only_;
  std::deque<WaitingRead> waiting_reads_;  // until an entry of the current term commits

  std::vector<raftpb::Message> msgs_;
  std::vector<ReadState> read_states_;
};

}  // namespace herald::raft
