// RawNode: Herald's Raft consensus core. Pure and single-threaded: no I/O, no clock, no threads.
//
// Inputs: tick() (logical time), step() (a message from a peer), propose*(), read_index(),
// transfer_leadership(), report_*(). Output: Ready, a batch of work for the caller.
//
// The caller's protocol for each Ready (docs/raft.md, "The caller's duties"):
//   1. rd = ready();
//   2. persist rd.snapshot (install), rd.entries (append, replacing any conflicting suffix) and
//      rd.hard_state — durably (fsync) when rd.must_sync;
//   3. only then send rd.messages;
//   4. apply rd.committed_entries in order (ENTRY_CONF_CHANGE via apply_conf_change());
//      serve rd.read_states once the applied index reaches their index;
//   5. advance(rd).
// The leader counts its own log toward commitment only after advance() (its entries are then
// durable), so an entry is never committed on the strength of an unsynced local write.
//
// Safety properties (checked by check_invariants() and by the simulator): election safety, log
// matching, leader completeness, state machine safety (Raft paper §5.2–§5.4, Figure 3).
//
// Thread-safety: none; one thread drives a RawNode. Ownership: Config::storage is borrowed and
// must outlive the node.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "raft/log_storage.h"
#include "raft/types.h"

namespace herald::raft {

// Bounds and timings, in ticks (the caller decides a tick's length; docs/raft.md) and bytes.
inline constexpr int kDefaultElectionTicks = 10;
inline constexpr int kDefaultHeartbeatTicks = 1;
inline constexpr std::uint64_t kDefaultMaxMsgBytes = 1ULL << 20U;  // 1 MiB
inline constexpr std::size_t kDefaultMaxInflightMsgs = 256;
inline constexpr std::uint64_t kDefaultMaxInflightBytes = 32ULL << 20U;           // 32 MiB
inline constexpr std::uint64_t kDefaultMaxUncommittedBytes = 64ULL << 20U;        // 64 MiB
inline constexpr std::uint64_t kDefaultMaxCommittedBytesPerReady = 16ULL << 20U;  // 16 MiB
inline constexpr std::size_t kDefaultMaxCommittedEntriesPerReady = 1U << 20U;

struct Config {
  NodeId id = kNoNode;
  // A follower that hears nothing from a leader for a randomized timeout in
  // [election_ticks, 2 * election_ticks) starts a (pre-)election.
  int election_ticks = kDefaultElectionTicks;
  int heartbeat_ticks = kDefaultHeartbeatTicks;
  bool pre_vote = true;      // Raft thesis §9.6
  bool check_quorum = true;  // leader steps down without a quorum of recent contact (§6.2)
  std::uint64_t max_msg_bytes = kDefaultMaxMsgBytes;  // entries bytes per MSG_APP
  std::size_t max_inflight_msgs = kDefaultMaxInflightMsgs;
  std::uint64_t max_inflight_bytes = kDefaultMaxInflightBytes;
  // Proposals beyond this many uncommitted bytes at the leader are rejected (flow control).
  std::uint64_t max_uncommitted_bytes = kDefaultMaxUncommittedBytes;
  std::uint64_t max_committed_bytes_per_ready = kDefaultMaxCommittedBytesPerReady;
  // Bounds the apply work of one Ready in entries as well as in bytes (a small command may cost
  // far more to apply than its size suggests); at least one entry is always handed out.
  std::size_t max_committed_entries_per_ready = kDefaultMaxCommittedEntriesPerReady;
  // Highest index already applied to the state machine (entries at or below it are not
  // handed out again as committed_entries).
  Index applied = 0;
  // While the log's last index is below it, this node grants no vote or pre-vote and never
  // campaigns. A replica rebuilt empty after corruption sets it to its old last index: its
  // acknowledgements may have counted toward commits it no longer holds, so its vote must not
  // help elect a leader that lacks them (the majority-intersection argument of §5.4.3 needs
  // every voter's log to be at least what it acknowledged). 0: no floor.
  Index vote_floor = 0;
  // The node restarted on a disk that may have lost writes it had synced (a disk that lies about
  // fsync): it may have forgotten a vote it cast or entries it acknowledged. While recovering it
  // grants no vote or pre-vote, never campaigns, and answers no MSG_APP, MSG_HEARTBEAT or MSG_SNAP
  // (so no leader counts it toward a commit or a read quorum) until end_recovery(). It still
  // appends what leaders send and follows their commit index. false: the node trusts its disk (a
  // brand-new node, or an operator's override). docs/raft.md, "Recovering after a restart".
  bool recovering = false;
  // TEST ONLY: a planted bug, so that a test can show the simulator catches it
  // (docs/reliability.md, "A planted bug"). When set, a leader commits an entry as soon as its own
  // log holds it durably, without waiting for a majority of the voters: it then applies and
  // acknowledges writes that a failure of this one node loses. Only `herald sim --plant-bug
  // commit-without-quorum` sets it; no configuration file and no flag of `herald serve` reaches it.
  bool planted_commit_without_quorum = false;
  // Seed for the randomized election timeout; the only randomness in the core. The node id is
  // mixed in, so nodes given the same seed still draw different timeouts.
  std::uint64_t seed = 0;
  const LogStorage* storage = nullptr;  // borrowed
};

enum class Role : std::uint8_t { kFollower, kPreCandidate, kCandidate, kLeader };
[[nodiscard]] const char* role_name(Role role);

// Why the core last changed its role, term or known leader. Data, not a log line: the core does
// no I/O, and the caller decides what to log (rsm::Node logs every leader change at warn level).
enum class Transition : std::uint8_t {
  kStart,              // the node opened
  kElectionTimeout,    // no message from a leader for `ticks` ticks: a (pre-)campaign began
  kCheckQuorumLost,    // as leader, no contact with a quorum within an election timeout (§6.2)
  kHigherTerm,         // a message of a higher term arrived from `peer`
  kElectionWon,        // a quorum granted its votes
  kElectionLost,       // a quorum refused its (pre-)votes
  kLeaderHeard,        // a leader of the current term (`peer`) was heard from
  kTransferCampaign,   // the leader (`peer`) handed leadership over (MSG_TIMEOUT_NOW)
  kRemovedFromConfig,  // as leader, removed or demoted by a configuration change
  kForcedCampaign,     // the caller asked for a campaign (campaign())
  kRecovered,          // recovery ended on the other voters' reports, at their highest term
};
[[nodiscard]] const char* transition_name(Transition transition);

struct TransitionReason {
  Transition kind = Transition::kStart;
  NodeId peer = kNoNode;  // the leader heard or lost, or the sender of a higher term
  int ticks = 0;          // kElectionTimeout, kCheckQuorumLost: ticks without contact
};

// Role, term and known leader. Equality ignores `reason`: a Ready carries a SoftState only when
// one of the three changed.
struct SoftState {
  NodeId leader = kNoNode;
  Role role = Role::kFollower;
  Term term = 0;
  TransitionReason reason;
  bool operator==(const SoftState& o) const {
    return leader == o.leader && role == o.role && term == o.term;
  }
};
// One line for logs: "election timeout (no message from leader 2 for 13 ticks)".
[[nodiscard]] std::string describe(const TransitionReason& reason);

// A linearizable read point: once applied >= index, a read issued with `context` may be served.
struct ReadState {
  Index index = 0;
  std::string context;
};

// What a recovering node learned from the other voters after it restarted (RawNode::end_recovery).
struct RecoveryEvidence {
  Term max_term = 0;   // the highest current term any of them reported
  Term last_term = 0;  // the most up-to-date durable log any of them reported (§5.4.1 order)
  Index last_index = 0;
};

struct Ready {
  std::optional<SoftState> soft_state;               // set when it changed (not persisted)
  std::optional<raftpb::HardState> hard_state;       // set when it changed; persist
  std::optional<raftpb::SnapshotMetadata> snapshot;  // install before appending entries
  std::vector<raftpb::Entry> entries;            // append; entries[0].index may overwrite a suffix
  std::vector<raftpb::Entry> committed_entries;  // apply in order
  std::vector<raftpb::Message> messages;         // send after persisting
  std::vector<ReadState> read_states;
  bool must_sync = false;  // hard state term/vote or entries changed: fsync before sending
};

// Replication progress of one peer as seen by the leader.
struct PeerProgress {
  NodeId id = kNoNode;
  bool learner = false;
  Index match = 0;
  Index next = 0;
  const char* state = "probe";  // "probe", "replicate" or "snapshot"
  bool recent_active = false;
  std::size_t inflight_msgs = 0;
  std::uint64_t inflight_bytes = 0;
};

struct NodeStatus {
  NodeId id = kNoNode;
  Role role = Role::kFollower;
  Term term = 0;
  NodeId leader = kNoNode;
  NodeId vote = kNoNode;
  Index commit = 0;
  Index applied = 0;
  Index last_index = 0;
  NodeId lead_transferee = kNoNode;
  raftpb::ConfState conf_state;
  std::vector<PeerProgress> progress;  // leader only; includes itself
};

class RawNode {
 public:
  // Restores term, vote, commit and membership from config.storage. kInvalidArgument for a bad
  // config (id 0, heartbeat_ticks >= election_ticks, missing storage, applied > commit).
  [[nodiscard]] static Result<std::unique_ptr<RawNode>> create(const Config& config);
  ~RawNode();
  RawNode(const RawNode&) = delete;
  RawNode& operator=(const RawNode&) = delete;

  // Advances logical time by one tick (heartbeats, election timeouts, check-quorum).
  void tick();
  // Starts a (pre-)election now. kFailedPrecondition for a learner or a node not in the config.
  [[nodiscard]] Status campaign();
  // Appends a normal entry if leader, forwards it as MSG_PROP if a follower with a known leader.
  // kNotLeader when no leader is known (dropped), kResourceExhausted past max_uncommitted_bytes,
  // kUnavailable during a leadership transfer.
  [[nodiscard]] Status propose(std::string data);
  // Proposes a membership change (one server at a time; docs/raft.md). kFailedPrecondition while
  // an earlier change is not yet applied.
  [[nodiscard]] Status propose_conf_change(const raftpb::ConfChange& change);
  // Applies a committed ENTRY_CONF_CHANGE to the node's membership; returns the new ConfState.
  [[nodiscard]] raftpb::ConfState apply_conf_change(const raftpb::ConfChange& change);
  // Feeds a message from a peer. kInvalidArgument for a message addressed elsewhere or of a
  // local-only type; stale-term messages are ignored (ok).
  [[nodiscard]] Status step(const raftpb::Message& message);
  // Requests a linearizable read point (ReadIndex, Raft thesis §6.4). The answer arrives as a
  // ReadState with the same context in a later Ready; requests made while no leader is known
  // are dropped (the caller times them out).
  void read_index(std::string context);
  // Asks the leader to hand leadership to `transferee` (thesis §3.10).
  void transfer_leadership(NodeId transferee);
  void report_unreachable(NodeId id);
  // The caller finished (or failed) streaming a snapshot to `id`. Must be called for every
  // MSG_SNAP sent: the peer stays in snapshot state (no appends) until then or until it answers.
  void report_snapshot(NodeId id, bool success);

  // Ends recovery (Config::recovering) on what the other voters reported after this node
  // restarted. The node adopts evidence.max_term if it is higher than its own (as a follower,
  // without a vote); from then on it grants a (pre-)vote only for a term above max_term — it may
  // have voted in any term up to there and forgotten it — and only to a candidate whose log is at
  // least as up to date as the evidence's log, which holds every committed entry this node may
  // have acknowledged and lost; it campaigns only once its own log is that up to date. A no-op
  // when not recovering.
  void end_recovery(const RecoveryEvidence& evidence);
  [[nodiscard]] bool recovering() const;
  // On a leader: `peer` restarted, and its disk may have lost what it acknowledged before; its
  // match index is forgotten (it probes again from its next index). A no-op elsewhere.
  void forget_match(NodeId peer);

  // False while a Ready is outstanding (ready() returned it and advance() was not yet called).
  [[nodiscard]] bool has_ready() const;
  // On a leader: a heartbeat for every peer, to send at once, outside any Ready (empty on other
  // roles). May be called while a Ready is outstanding: heartbeats carry no entries and a commit
  // index the follower is known to hold, so they depend on no unpersisted state. Resets the
  // heartbeat period. This lets a caller whose Ready work takes longer than a heartbeat period
  // keep its followers' election timers satisfied.
  [[nodiscard]] std::vector<raftpb::Message> heartbeats_now();
  // A heartbeat that says only "the leader of `term` is alive": commit 0, no context, so it
  // depends on no state but the term, and a thread other than the one driving the RawNode may
  // build and send it while the leader's thread is blocked (a long fsync, a storage write stall).
  // A follower of `term` resets its election timer and answers; anyone else treats it like any
  // message of that term.
  [[nodiscard]] static raftpb::Message liveness_heartbeat(NodeId from, NodeId to, Term term);
  // Precondition (asserted): the previous Ready, if any, was advanced. Messages in a Ready depend
  // only on state persisted by that Ready or earlier ones.
  [[nodiscard]] Ready ready();
  // Precondition: `rd` is the last Ready returned and steps 2–4 of the protocol are done.
  void advance(const Ready& rd);

  [[nodiscard]] NodeStatus status() const;
  // The leader the core knows now (kNoNode: none), which a Ready's soft_state reports later.
  [[nodiscard]] NodeId leader() const;
  // The first failure of the log storage besides "compacted" and "unavailable" (RaftLog::fault):
  // once it is not ok, the caller stops driving this node and does not act on the Ready it may
  // hold (the node's view of its log is unreliable).
  [[nodiscard]] const Status& storage_fault() const;
  // Asserts the core's internal invariants (commit <= last index, leader's own progress, ...).
  void check_invariants() const;

 private:
  struct Impl;
  explicit RawNode(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace herald::raft
