// rsm::Node: one replica of Herald's replicated state machine.
//
// It drives the raft core (raft/raw_node.h) through the caller's protocol: persist (group commit:
// one RaftLog::save, one fsync, for everything that arrived since the last round), then send,
// then apply (batched: one engine write per round), then advance. A leader whose term and vote
// are already durable sends before persisting (Raft thesis §10.2.1; see handle_ready()). It answers
// proposals when it applies them, serves linearizable read barriers through ReadIndex, streams
// snapshots to lagging followers in bounded chunks, installs snapshots it receives, and compacts
// the log.
//
// Its raft log is a storage::LogStore on the engine, or a storage::SegmentLog on a LogFs of its
// own (NodeConfig::log_fs): two stores that a crash may leave at different points, which init()
// reconciles (docs/storage-format.md, "Where the raft log lives").
//
// It does no I/O of its own beyond its borrowed Engine, LogFs and Transport, reads no clock (the
// caller stamps Command::wall_ms and calls tick() at a fixed period) and starts no threads (a
// borrowed LogWriter decides where a round's log write runs), so the same code runs under
// `herald serve` and inside the deterministic simulator.
//
// Thread-safety: none; one thread calls every method. Callbacks run on that thread, inside
// process() or tick(), exactly once each.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/clock.h"
#include "base/random.h"
#include "base/status.h"
#include "raft/raw_node.h"
#include "rsm/log_writer.h"
#include "rsm/membership.h"
#include "rsm/rsm.pb.h"
#include "rsm/session.h"
#include "rsm/state_machine.h"
#include "rsm/transport.h"
#include "storage/disk_space.h"
#include "storage/engine.h"
#include "storage/log_fs.h"
#include "storage/raft_log.h"
#include "storage/segment_log.h"

namespace herald::rsm {

// A proposal or read not answered within this many ticks fails with kTimeout.
inline constexpr int kRequestTimeoutTicks = 500;
inline constexpr std::size_t kMaxPendingProposals = 1 << 16;
inline constexpr std::size_t kMaxPendingReads = 1 << 16;
// Compact the log once it holds this many applied entries, keeping a tail for slow followers.
inline constexpr raft::Index kCompactionThresholdEntries = 20'000;
inline constexpr raft::Index kLogTailEntries = 5'000;
inline constexpr std::uint64_t kSnapshotChunkBytes = 1ULL << 20U;   // 1 MiB
inline constexpr std::uint64_t kSnapshotWindowBytes = 4ULL << 20U;  // queued per peer
inline constexpr int kSnapshotAckTimeoutTicks = 1'000;
inline constexpr int kReportIntervalTicks = 10;
// Committed entries applied by one Ready round, at most. A round runs on the replica's only
// thread: bounding its apply work bounds how long ticks (heartbeats) and inbound messages wait
// behind it, so a saturated leader still heartbeats and a saturated follower still answers.
inline constexpr std::size_t kMaxApplyEntriesPerRound = 1024;
// With a clock, a round also stops applying once this much time has passed (the rest follows in
// the next round): apply cost per entry varies by orders of magnitude between commands.
inline constexpr MonoMs kApplyBudgetMs = 25;
// Disk space (NodeConfig::disk): new content is refused cluster-wide while any node's free space
// is below its floor (docs/operations.md, "Disk space").
inline constexpr std::uint64_t kDefaultMinFreeBytes = 1ULL << 30U;  // 1 GiB
inline constexpr int kDiskCheckIntervalTicks = 100;
// A raised alarm clears once free space is this much (percent of the floor) above the floor, so
// a disk hovering at the floor does not flap.
inline constexpr std::uint64_t kDiskAlarmClearMarginPercent = 10;
// A restarted replica that has heard from a majority of the voters, but not from all of them,
// ends its recovery on the majority's reports after this many ticks (docs/raft.md, "Recovering
// after a restart": safe only with high probability).
inline constexpr int kRecoveryFallbackTicks = 20 * raft::kDefaultElectionTicks;
// A log moved from the engine into a new segment log (Node::adopt_engine_log) is read and
// written in batches of at most this many bytes of entries: 4 MiB.
inline constexpr std::uint64_t kAdoptChunkBytes = std::uint64_t{4} << 20U;

// The message of every refusal for a standing disk alarm starts with this, so that the API layers
// can tell it from other bounds (it maps to `resource_exhausted` on the WebSocket and to 507).
inline constexpr std::string_view kDiskAlarmRefusal = "disk alarm: ";
[[nodiscard]] inline bool is_disk_alarm_refusal(const Status& status) {
  return status.code() == Code::kResourceExhausted &&
         status.message().starts_with(kDiskAlarmRefusal);
}

// One key/value record of a snapshot chunk; the views point into the chunk's data.
struct SnapshotRecord {
  std::string_view key;
  std::string_view value;
};

// The records a snapshot chunk's data (rsmpb::SnapshotChunk::data) carries: a sealed record
// (base/encoding.h) whose payload is ([u32 BE key bytes][key][u32 BE value bytes][value])*.
// Errors: kCorruption when the checksum fails or a record is truncated. Thread-safety: pure.
[[nodiscard]] Result<std::vector<SnapshotRecord>> decode_snapshot_chunk(std::string_view data);

struct NodeConfig {
  raft::NodeId id = raft::kNoNode;
  // The initial voters; used only when the engine holds no state yet.
  std::vector<raft::NodeId> initial_voters;
  // A brand-new replica that joins a running cluster: with an empty engine it starts with no
  // membership at all (initial_voters is ignored) and waits for the leader, which adds it as a
  // learner (Node::change_membership) and sends it the log or a snapshot.
  bool join = false;
  int election_ticks = raft::kDefaultElectionTicks;
  int heartbeat_ticks = raft::kDefaultHeartbeatTicks;
  std::uint64_t seed = 0;
  raft::Index compaction_threshold_entries = kCompactionThresholdEntries;
  raft::Index log_tail_entries = kLogTailEntries;
  std::uint64_t snapshot_chunk_bytes = kSnapshotChunkBytes;
  std::size_t max_apply_entries_per_round = kMaxApplyEntriesPerRound;
  // Borrowed; when set, bounds each round's apply work to apply_budget_ms. Unset in the
  // simulator, where apply takes no simulated time.
  const Clock* clock = nullptr;
  MonoMs apply_budget_ms = kApplyBudgetMs;
  // With a clock: while a round runs (disk write, apply, listeners), a leader sends heartbeats at
  // this period from safe points inside it, so followers never wait for the round to end. 0 (or
  // no clock) leaves heartbeats to tick().
  MonoMs in_round_heartbeat_ms = 0;
  std::string client_address;  // advertised in NodeReport
  // Borrowed; when set, the node measures its free space every kDiskCheckIntervalTicks and
  // raises (or clears) its replicated DiskAlarm when it crosses min_free_bytes.
  const storage::DiskSpace* disk = nullptr;
  std::uint64_t min_free_bytes = kDefaultMinFreeBytes;
  // The incarnation counter never goes below this: the host passes its wall clock in
  // milliseconds, so that a disk that lost the stored counter (a lying fsync) cannot make the
  // replica reuse request ids of an earlier run. 0: the stored counter alone.
  std::uint64_t incarnation_floor = 0;
  // The operator vouches that this disk never lost a synced write: the replica skips recovery
  // and votes at once after a restart (docs/raft.md, "Recovering after a restart").
  bool trust_disk = false;
  // Ticks after which recovery may end on a majority's reports (kRecoveryFallbackTicks); 0: only
  // on every voter's.
  int recovery_fallback_ticks = kRecoveryFallbackTicks;
  // Where the raft log lives. nullptr: in the engine (storage::LogStore). Otherwise (borrowed) a
  // storage::SegmentLog on this LogFs, with segments of log_segment_bytes.
  storage::LogFs* log_fs = nullptr;
  std::uint64_t log_segment_bytes = 0;  // 0: storage::kSegmentBytes
  // When set (with log_fs), init() takes the segment log from here instead of opening it: a host
  // opens it on another thread while the engine opens (both read their files whole), and this
  // waits for it. It must have opened log_fs with segment_log_options().
  std::function<Result<std::unique_ptr<storage::SegmentLog>>()> opened_segment_log;
  // Borrowed; with log_fs, where a round's log write runs when the round also applies entries
  // that are already durable: the two then overlap (apply behind the append, see
  // handle_ready()). nullptr: every round writes, then applies.
  LogWriter* log_writer = nullptr;
  // TEST ONLY, off in every deployment: raft::Config::planted_commit_without_quorum, a planted bug
  // (the leader commits, applies and answers a proposal once its own log holds it, before a
  // majority does) that the simulator must catch (docs/reliability.md, "A planted bug"). Only
  // `herald sim --plant-bug` sets it; server/ never does.
  bool planted_commit_without_quorum = false;
};

// The options a replica with this configuration opens its segment log with.
[[nodiscard]] storage::SegmentLogOptions segment_log_options(const NodeConfig& config);

using ProposeCallback = std::function<void(Result<rsmpb::CommandResult>)>;
using ReadCallback = std::function<void(Status)>;
using MembershipCallback = std::function<void(Status)>;
// Observes every applied entry, after its batch is written (simulator invariants, metrics).
using ApplyObserver = std::function<void(const raftpb::Entry&)>;

// Hooks for layers that act only on the leader (the workflow runtime). Called on the node's
// thread, inside process(); a listener may call propose() and read_barrier().
class NodeListener {
 public:
  virtual ~NodeListener() = default;
  // After each batch of committed entries is applied and written.
  virtual void on_applied() {}
  // This replica became leader (true) or stopped being leader (false).
  virtual void on_leadership(bool leader) {}
  // The state space was replaced by a snapshot from the leader (any state read before is stale).
  virtual void on_snapshot_installed() {}
};

// What this replica did since it opened, as plain numbers for the node host's metrics
// (docs/metrics.md): the node counts on its own thread and the host reads them there (stats()).
struct NodeStats {
  std::uint64_t proposals = 0;          // commands handed to the core by propose()
  std::uint64_t proposals_refused = 0;  // answered at once, without reaching the log
  std::uint64_t entries_applied = 0;    // committed entries applied (commands, config, no-ops)
  std::uint64_t elections = 0;          // campaigns started: this replica became a candidate
  std::uint64_t term_changes = 0;
  std::uint64_t leader_changes = 0;  // the known leader became another node (not "none")
  // Log writes with a disk sync (one per Ready round that persisted durably) and the duration of
  // the latest, with NodeConfig::clock (0 without one).
  std::uint64_t log_syncs = 0;
  std::int64_t last_log_sync_us = 0;
  // Rounds that applied entries, and the latest one's duration (state machines and batch write).
  std::uint64_t apply_rounds = 0;
  std::int64_t last_apply_us = 0;
  // Rounds whose log write ran while they applied (NodeConfig::log_writer), and how long the
  // latest one's thread then waited for the write after its apply (0: the apply hid it).
  std::uint64_t log_writes_behind_apply = 0;
  std::int64_t last_log_write_wait_us = 0;
  // What the applied rounds wrote to the engine (every state machine's writes, the session
  // records and the applied state; rsm::WriteCounts): deterministic, so that the write cost of a
  // workload can be profiled exactly (sim/write_profile.h).
  std::uint64_t state_puts = 0;
  std::uint64_t state_deletes = 0;
  std::uint64_t state_write_bytes = 0;
};

struct PeerReport {
  rsmpb::NodeReport report;
  int age_ticks = 0;
};

class Node {
 public:
  // Opens the replica on `engine` (recovering log, hard state and applied state, or bootstrapping
  // `initial_voters` on an empty engine). Borrowed pointers must outlive the Node.
  [[nodiscard]] static Result<std::unique_ptr<Node>> open(const NodeConfig& config,
                                                          storage::Engine* engine,
                                                          Transport* transport,
                                                          StateMachine* state_machine);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  void tick();
  void receive(const rsmpb::PeerEnvelope& envelope);
  // Proposes `command` (origin, incarnation and request_id are filled in). `done` gets the
  // applied result, or an error that says whether the command can have taken effect:
  //   not applied (safe to retry as new): kNotLeader (no leader known), kUnavailable (a bound on
  //   pending proposals or uncommitted bytes; or, as an applied result, a request too old for
  //   the exactly-once window), kResourceExhausted (a disk alarm stands, see disk_alarms(), and
  //   the state machine does not allow the command then: StateMachine::allowed_when_disk_low);
  //   outcome unknown (it may still be applied): kAborted (the term changed while it was in
  //   flight) or kTimeout (no answer within kRequestTimeoutTicks).
  // A brief loss of the leader within one term (a pre-vote that lost) fails nothing: the
  // proposal is answered when it applies.
  void propose(rsmpb::Command command, ProposeCallback done);
  // Linearizable read barrier: `done(ok)` once this replica has applied everything committed
  // before the call; then reads of engine() are linearizable. Otherwise kUnavailable (no leader,
  // or it changed), kTimeout or kResourceExhausted; a failed read may simply be retried.
  void read_barrier(ReadCallback done);
  void transfer_leadership(raft::NodeId transferee);
  // Proposes a membership change (rsm/membership.h) on the leader. `done(ok)` once the change is
  // applied on this replica (the new membership is then in force here); otherwise kNotLeader
  // (this replica is not the leader), kFailedPrecondition (a change is still in flight, or
  // check_member_change() refused it), the other refusals of check_member_change(), kAborted
  // (the term changed: the outcome is unknown) or kTimeout (no answer in kRequestTimeoutTicks).
  void change_membership(const MemberChange& change, MembershipCallback done);
  // Answers every proposal in flight with `proposal_status` and every pending read with
  // `read_status` (a replica that stops taking part, e.g. on a full disk).
  void abandon_requests(const Status& proposal_status, const Status& read_status);
  // Runs the Ready loop until the core has nothing more to do. A non-ok status (I/O failure,
  // corruption) is fatal: the replica must stop.
  [[nodiscard]] Status process();
  // One Ready round only (at most max_apply_entries_per_round entries applied): a caller that
  // shares its thread with timers and I/O calls this and comes back while has_work(), so that
  // nothing waits behind a long backlog. Errors as process().
  [[nodiscard]] Status process_round();
  // True when the core has work for process().
  [[nodiscard]] bool has_work() const;

  [[nodiscard]] raft::NodeStatus status() const;
  [[nodiscard]] raft::Index applied_index() const { return applied_; }
  [[nodiscard]] raft::Term applied_term() const { return applied_term_; }
  // The membership in force on this replica (as of its applied state).
  [[nodiscard]] const raftpb::ConfState& conf_state() const { return conf_state_; }
  [[nodiscard]] const storage::Engine& engine() const { return *engine_; }
  // The durable log as the core sees it (simulator invariant checks).
  [[nodiscard]] const raft::LogStorage& log() const;
  [[nodiscard]] const std::map<raft::NodeId, PeerReport>& peer_reports() const {
    return peer_reports_;
  }
  void set_apply_observer(ApplyObserver observer) { apply_observer_ = std::move(observer); }
  // Borrowed; nullptr removes it.
  void set_listener(NodeListener* listener) { listener_ = listener; }
  [[nodiscard]] bool is_leader() const { return soft_state_.role == raft::Role::kLeader; }
  // The nodes whose disk alarm stands, as of the applied state.
  [[nodiscard]] const std::set<raft::NodeId>& disk_alarms() const { return disk_alarms_; }
  [[nodiscard]] const NodeStats& stats() const { return stats_; }
  // True after a restart until the other voters have reported (docs/raft.md, "Recovering after a
  // restart"): until then this replica grants no vote and acknowledges nothing.
  [[nodiscard]] bool recovering() const { return raft_->recovering(); }
  [[nodiscard]] std::uint64_t incarnation() const { return incarnation_; }

 private:
  struct PendingProposal;
  struct PendingRead;
  struct PendingMemberChange {
    raftpb::ConfChange change;
    MembershipCallback done;
    int deadline_tick = 0;
    raft::Term term = 0;
  };
  struct OutboundStream;
  struct InboundStream;

  Node(const NodeConfig& config, storage::Engine* engine, Transport* transport,
       StateMachine* state_machine);
  [[nodiscard]] Status init();
  [[nodiscard]] Status open_log();
  [[nodiscard]] Status adopt_engine_log(storage::SegmentLog& segments);
  // Brings the log in line with the applied state read from the engine (see the .cc).
  [[nodiscard]] Status reconcile_log();
  // Makes every state space write so far durable (one synced write of the applied state).
  [[nodiscard]] Status sync_state();
  // Checks a MSG_PROP from peer `from` as the leader checks its own proposals: normal entries
  // only, each a decodable command of `from`'s own session (origin, incarnation, request id > 0).
  [[nodiscard]] static Status validate_forwarded(raft::NodeId from, const raftpb::Message& message);
  // True when it bootstrapped (the engine was empty: a brand-new replica).
  [[nodiscard]] Result<bool> bootstrap_if_empty();
  [[nodiscard]] Status handle_ready(raft::Ready& rd);
  [[nodiscard]] bool may_send_before_persist(const raft::Ready& rd) const;
  [[nodiscard]] Status persist(const raft::Ready& rd);
  // True when the round's log write may run on config_.log_writer while its committed entries
  // apply: a segment log, new entries and no snapshot to write, and committed entries that are
  // all durable already (below the round's first new entry), none a membership change, and no
  // snapshot stream to start.
  [[nodiscard]] bool may_apply_while_persisting(const raft::Ready& rd) const;
  // The round's log write on config_.log_writer, the apply of its committed entries meanwhile;
  // rd.messages go out as soon as the write is durable (at the apply's safe points or after it).
  [[nodiscard]] Status persist_while_applying(raft::Ready& rd);
  void send_messages(std::vector<raftpb::Message>& messages);
  // Applies `entries` in order, stopping early when the round's time budget is spent: on return
  // `entries` holds exactly the prefix that was applied (and is reported to the core).
  [[nodiscard]] Status apply(std::vector<raftpb::Entry>& entries);
  // apply()'s two halves: the state machines and the batch write (no call on log_, so a log
  // write may run meanwhile), then what follows it (the log's snapshot point, answers, observer
  // and listener: after the log write).
  [[nodiscard]] Status apply_entries(
      std::vector<raftpb::Entry>& entries,
      std::vector<std::pair<std::uint64_t, rsmpb::CommandResult>>& answers);
  void finish_apply(const std::vector<raftpb::Entry>& entries,
                    std::vector<std::pair<std::uint64_t, rsmpb::CommandResult>>& answers);
  [[nodiscard]] Status apply_one(
      const raftpb::Entry& entry, ApplyBatch& batch,
      std::vector<std::pair<std::uint64_t, rsmpb::CommandResult>>& answers);
  [[nodiscard]] Status apply_command(raft::Index index, const rsmpb::Command& command,
                                     ApplyBatch& batch, rsmpb::CommandResult& result);
  void on_soft_state(const raft::SoftState& next);
  // A safe point of a long round: sends heartbeats when in_round_heartbeat_ms has passed, and
  // the round's messages held for its log write once that write is durable.
  void keep_followers_alive();
  void log_transition(const raft::SoftState& previous, const raft::SoftState& next) const;
  void count_transition(const raft::SoftState& previous, const raft::SoftState& next);
  // A committed config change: the new membership, and its member address record in `batch`.
  void apply_conf_change(const raftpb::Entry& entry, ApplyBatch& batch);
  // Answers the pending membership change with `status` (no-op when there is none).
  void finish_member_change(const Status& status);
  // Answers the proposals and reads in flight that were made before `term`.
  void fail_in_flight(raft::Term term, const Status& proposal_status, const Status& read_status);
  void handle_read_states(const std::vector<raft::ReadState>& read_states);
  void serve_reads();
  void issue_read_index();
  void expire_requests();
  void maybe_compact();
  void broadcast_report();
  [[nodiscard]] rsmpb::PeerEnvelope make_report() const;
  // A peer's report: forgets the match of a peer that restarted, feeds recovery.
  void receive_report(raft::NodeId from, const rsmpb::NodeReport& report);
  // Ends recovery once every other voter (or, after recovery_fallback_ticks, a majority) of
  // recovery_voters() has reported since this replica started.
  void maybe_end_recovery();
  // The voters a recovering replica waits for: those of the newest membership applied among its
  // own and the reports received since it started (its own may have rolled back).
  [[nodiscard]] std::vector<raft::NodeId> recovery_voters() const;
  // Measures free space and proposes a DiskAlarm when this node crosses its floor.
  void check_disk();

  // Snapshot streaming (leader side and follower side).
  void start_stream(raftpb::Message message);
  void pump_streams();
  [[nodiscard]] bool pump_stream(OutboundStream& stream);
  void receive_chunk(raft::NodeId from, const rsmpb::SnapshotChunk& chunk);
  [[nodiscard]] Status stage_chunk(const rsmpb::SnapshotChunk& chunk);
  [[nodiscard]] Status build_install_batch(const raftpb::SnapshotMetadata& meta,
                                           storage::WriteBatch& batch);
  void send_ack(raft::NodeId to, std::uint64_t stream_id, bool ok);
  void receive_ack(raft::NodeId from, const rsmpb::SnapshotAck& ack);

  NodeConfig config_;
  storage::Engine* engine_;
  Transport* transport_;
  StateMachine* state_machine_;
  std::unique_ptr<storage::RaftLog> log_;
  std::unique_ptr<raft::RawNode> raft_;
  Rng rng_;

  raft::Index applied_ = 0;
  raft::Term applied_term_ = 0;
  // The last index maybe_compact() asked the log to drop (the segment log may keep more).
  raft::Index compacted_upto_ = 0;
  std::int64_t wall_ms_floor_ = 0;      // AppliedState.wall_ms_floor as of applied_
  std::set<raft::NodeId> disk_alarms_;  // AppliedState.disk_alarms as of applied_
  bool disk_alarm_in_flight_ = false;   // this node's DiskAlarm is proposed and not yet answered
  MonoMs last_heartbeat_ms_ = 0;        // keep_followers_alive()
  // While persist_while_applying() runs: the messages that wait for its log write.
  std::vector<raftpb::Message>* sends_after_write_ = nullptr;
  raftpb::ConfState conf_state_;
  raft::SoftState soft_state_;

  SessionTable sessions_;
  std::uint64_t incarnation_ = 0;
  std::uint64_t next_request_id_ = 1;
  std::uint64_t next_read_id_ = 1;
  std::unordered_map<std::uint64_t, std::unique_ptr<PendingProposal>> proposals_;
  std::optional<PendingMemberChange> member_change_;
  bool member_change_applied_ = false;  // the pending change applied in this round
  std::deque<std::unique_ptr<PendingRead>> unsent_reads_;
  std::map<std::string, std::vector<std::unique_ptr<PendingRead>>> reads_awaiting_index_;
  std::multimap<raft::Index, std::unique_ptr<PendingRead>> reads_awaiting_apply_;
  int now_ticks_ = 0;

  std::map<raft::NodeId, std::unique_ptr<OutboundStream>> out_streams_;
  // A state record that failed its checksum while this replica streamed a snapshot: its applied
  // state is damaged, and process_round() reports it as it reports a damaged log record.
  Status state_fault_;
  std::unique_ptr<InboundStream> in_stream_;
  std::optional<raftpb::SnapshotMetadata> staged_snapshot_;
  std::uint64_t next_stream_id_ = 1;

  std::map<raft::NodeId, PeerReport> peer_reports_;
  // Recovery: the latest incarnation reported by each peer, and the reports of the voters sent
  // after this replica started (they name its incarnation).
  std::map<raft::NodeId, std::uint64_t> peer_incarnations_;
  std::map<raft::NodeId, rsmpb::NodeReport> recovery_reports_;
  int recovery_started_tick_ = 0;
  ApplyObserver apply_observer_;
  NodeListener* listener_ = nullptr;
  NodeStats stats_;
};

// Keys of the node's own records in the engine (docs/storage-format.md).
inline constexpr char kAppliedStateKey[] = "a";
// The layout version of the state space (docs/storage-format.md, "State format"), stored under
// kStateFormatKey when a replica bootstraps and carried by every snapshot. Format 1 (stores
// written before the key existed: no key beside an applied state) kept one workflow history
// event per key and rewrote visibility entries on every transition.
inline constexpr char kStateFormatKey[] = "f";
inline constexpr std::uint32_t kStateFormat = 2;
inline constexpr char kIncarnationKey[] = "incarnation";  // Space::kMeta
inline constexpr char kRebuildMarkKey[] = "rebuild";      // Space::kMeta (rebuild.h)
inline constexpr char kSnapshotStagePrefix[] = "snapstage/";
inline constexpr char kSnapshotStageEnd[] = "snapstage0";  // '/' + 1
// Every key of Space::kState sorts below this bound.
inline constexpr char kStateSpaceEnd[] = "\xff";

}  // namespace herald::rsm
