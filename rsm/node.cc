#include "rsm/node.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <iterator>

#include "base/encoding.h"
#include "base/log.h"
#include "rsm/rebuild.h"
#include "rsm/session.h"
#include "storage/log_store.h"
#include "storage/segment_log.h"

namespace herald::rsm {

struct Node::PendingProposal {
  ProposeCallback done;
  int deadline_tick = 0;
  raft::Term term = 0;  // the core's term when it took the proposal
};

struct Node::PendingRead {
  ReadCallback done;
  int deadline_tick = 0;
  raft::Term term = 0;  // the core's term when the ReadIndex request was issued
};

struct Node::OutboundStream {
  std::uint64_t stream_id = 0;
  raft::NodeId to = raft::kNoNode;
  raftpb::Message message;  // the MSG_SNAP, sent with the last chunk
  std::unique_ptr<storage::Reader> view;
  std::unique_ptr<storage::Iterator> it;
  std::uint64_t seq = 0;
  bool finished = false;  // every chunk queued; waiting for the ack
  int deadline_tick = 0;
  // A chunk the transport refused (its queue to the peer was at its bound): it goes first when
  // there is room again. Only the stream's deadline abandons a stream that cannot make progress.
  std::optional<rsmpb::PeerEnvelope> refused;
};

struct Node::InboundStream {
  raft::NodeId from = raft::kNoNode;
  std::uint64_t stream_id = 0;
  std::uint64_t next_seq = 0;
};

namespace {

Result<rsmpb::AppliedState> read_applied_state(const storage::Reader& reader) {
  HERALD_ASSIGN_OR_RETURN(auto raw, reader.get(storage::Space::kState, kAppliedStateKey));
  rsmpb::AppliedState state;
  if (!raw) {
    return Status::not_found("no applied state");
  }
  std::string_view payload;
  if (!open_record(*raw, payload) ||
      !state.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return Status::corruption("applied state record fails its checksum");
  }
  return state;
}

// kFailedPrecondition unless the state space `reader` holds is in kStateFormat. A replica never
// converts a state space: an older one is refused whole, before anything is applied to it.
Status check_state_format(const storage::Reader& reader) {
  HERALD_ASSIGN_OR_RETURN(auto raw, reader.get(storage::Space::kState, kStateFormatKey));
  std::uint32_t format = 1;  // written before the format had a record
  if (raw) {
    std::string_view payload;
    if (!open_record(*raw, payload) || payload.size() != sizeof(std::uint32_t)) {
      return Status::corruption("state format record fails its checksum");
    }
    format = get_fixed32_be(payload);
  }
  if (format != kStateFormat) {
    return Status::failed_precondition(fmt::format(
        "the state space is in format {}, and this Herald reads format {} only "
        "(docs/storage-format.md, \"State format\"): start this replica on an empty data "
        "directory",
        format, kStateFormat));
  }
  return Status::ok_status();
}

std::string encode_state_format() {
  std::string payload;
  put_fixed32_be(payload, kStateFormat);
  return seal_record(payload);
}

std::string encode_applied_state(raft::Index index, raft::Term term, const raftpb::ConfState& conf,
                                 std::int64_t wall_ms_floor,
                                 const std::set<raft::NodeId>& disk_alarms) {
  rsmpb::AppliedState state;
  state.set_index(index);
  state.set_term(term);
  *state.mutable_conf_state() = conf;
  state.set_wall_ms_floor(wall_ms_floor);
  for (const raft::NodeId node : disk_alarms) {
    state.add_disk_alarms(node);
  }
  return seal_record(state.SerializeAsString());
}

// `key` with every byte outside printable ASCII shown as '.', for a log line.
std::string printable(std::string_view key) {
  std::string out(key);
  for (char& c : out) {
    if (c < 0x20 || c > 0x7e) {
      c = '.';
    }
  }
  return out;
}

rsmpb::CommandResult status_result(const Status& status) {
  rsmpb::CommandResult r;
  r.set_code(static_cast<std::uint32_t>(status.code()));
  r.set_message(status.message());
  return r;
}

// Reads, increments and durably stores this replica's incarnation counter, never below `floor`
// (the host's wall clock): a disk that lost the stored counter must not bring back a number an
// earlier run used, whose commands may still be in other replicas' logs.
Result<std::uint64_t> next_incarnation(storage::Engine& engine, std::uint64_t floor) {
  HERALD_ASSIGN_OR_RETURN(auto raw, engine.get(storage::Space::kMeta, kIncarnationKey));
  std::uint64_t previous = 0;
  if (raw) {
    std::string_view payload;
    if (!open_record(*raw, payload) || payload.size() != sizeof(std::uint64_t)) {
      return Status::corruption("incarnation record fails its checksum");
    }
    previous = get_fixed64_be(payload);
  }
  const std::uint64_t next = std::max(previous + 1, floor);
  std::string payload;
  put_fixed64_be(payload, next);
  storage::WriteBatch batch;
  batch.put(storage::Space::kMeta, kIncarnationKey, seal_record(payload));
  HERALD_RETURN_IF_ERROR(engine.write(batch, /*sync=*/true));
  return next;
}

void append_record(std::string& out, std::string_view key, std::string_view value) {
  put_fixed32_be(out, static_cast<std::uint32_t>(key.size()));
  out.append(key);
  put_fixed32_be(out, static_cast<std::uint32_t>(value.size()));
  out.append(value);
}

}  // namespace

storage::SegmentLogOptions segment_log_options(const NodeConfig& config) {
  storage::SegmentLogOptions options;
  if (config.log_segment_bytes != 0) {
    options.segment_bytes = config.log_segment_bytes;
  }
  return options;
}

Node::Node(const NodeConfig& config, storage::Engine* engine, Transport* transport,
           StateMachine* state_machine)
    : config_(config),
      engine_(engine),
      transport_(transport),
      state_machine_(state_machine),
      rng_(config.seed ^ (config.id * 0x9e3779b97f4a7c15ULL)) {}

Node::~Node() = default;

Result<std::unique_ptr<Node>> Node::open(const NodeConfig& config, storage::Engine* engine,
                                         Transport* transport, StateMachine* state_machine) {
  if (config.id == raft::kNoNode) {
    return Status::invalid_argument("node id must be positive");
  }
  HERALD_ASSERT(engine != nullptr && transport != nullptr && state_machine != nullptr,
                "rsm::Node needs an engine, a transport and a state machine");
  std::unique_ptr<Node> node(new Node(config, engine, transport, state_machine));
  HERALD_RETURN_IF_ERROR(node->init());
  return node;
}

Result<bool> Node::bootstrap_if_empty() {
  auto existing = read_applied_state(*engine_);
  if (existing.ok()) {
    return false;
  }
  if (existing.status().code() != Code::kNotFound) {
    return existing.status();
  }
  if (config_.initial_voters.empty() && !config_.join) {
    return Status::invalid_argument("a new replica needs its initial voters");
  }
  raftpb::ConfState conf;
  if (!config_.join) {
    for (const raft::NodeId voter : config_.initial_voters) {
      conf.add_voters(voter);
    }
  }
  storage::WriteBatch batch;
  batch.put(storage::Space::kState, kAppliedStateKey, encode_applied_state(0, 0, conf, 0, {}));
  batch.put(storage::Space::kState, kStateFormatKey, encode_state_format());
  if (config_.join) {
    spdlog::info("replica {} is new and joins a running cluster: it waits for the leader to add it",
                 config_.id);
  } else {
    spdlog::info("bootstrapping a new replica with {} voters", conf.voters_size());
  }
  HERALD_RETURN_IF_ERROR(engine_->write(batch, /*sync=*/true));
  return true;
}

Status Node::init() {
  HERALD_ASSIGN_OR_RETURN(const bool brand_new, bootstrap_if_empty());
  HERALD_RETURN_IF_ERROR(check_state_format(*engine_));
  HERALD_ASSIGN_OR_RETURN(const rsmpb::AppliedState applied, read_applied_state(*engine_));
  HERALD_RETURN_IF_ERROR(open_log());
  applied_ = applied.index();
  applied_term_ = applied.term();
  conf_state_ = applied.conf_state();
  wall_ms_floor_ = applied.wall_ms_floor();
  disk_alarms_ = {applied.disk_alarms().begin(), applied.disk_alarms().end()};
  HERALD_RETURN_IF_ERROR(reconcile_log());
  compacted_upto_ = log_->truncated_index();
  log_->set_conf_state(conf_state_);
  raftpb::SnapshotMetadata meta;
  meta.set_index(applied_);
  meta.set_term(applied_term_);
  *meta.mutable_conf_state() = conf_state_;
  log_->set_snapshot_metadata(meta);

  raft::Config rc;
  rc.id = config_.id;
  rc.election_ticks = config_.election_ticks;
  rc.heartbeat_ticks = config_.heartbeat_ticks;
  rc.applied = applied_;
  rc.max_committed_entries_per_ready = config_.max_apply_entries_per_round;
  HERALD_ASSIGN_OR_RETURN(const auto rebuilt, read_rebuild_mark(*engine_));
  if (rebuilt.has_value()) {
    rc.vote_floor = rebuilt->vote_floor();
    if (log_->last_index() < rc.vote_floor) {
      spdlog::warn(
          "replica {}: rebuilt after damaged data ({}); it grants no vote and never campaigns "
          "until its log reaches index {} (now {})",
          config_.id, rebuilt->reason(), rc.vote_floor, log_->last_index());
    }
  }
  // A restart cannot tell whether the disk lost synced writes: the replica recovers first, unless
  // it is brand new (it never voted nor acknowledged anything), the operator vouches for its
  // disk, or it is the only voter (no one else can tell it anything).
  const bool alone = std::all_of(conf_state_.voters().begin(), conf_state_.voters().end(),
                                 [this](raft::NodeId v) { return v == config_.id; });
  rc.recovering = !brand_new && !config_.trust_disk && !alone;
  if (rc.recovering) {
    spdlog::info(
        "replica {}: restarted; it grants no vote and acknowledges nothing until the other "
        "voters have reported (its disk may have lost synced writes)",
        config_.id);
  }
  rc.planted_commit_without_quorum = config_.planted_commit_without_quorum;
  if (rc.planted_commit_without_quorum) {
    spdlog::warn("replica {}: TEST ONLY: the planted bug commit-without-quorum is on", config_.id);
  }
  rc.seed = rng_.next_u64();
  rc.storage = log_.get();
  HERALD_ASSIGN_OR_RETURN(raft_, raft::RawNode::create(rc));
  soft_state_.term = raft_->status().term;
  // A new incarnation keeps this run's request ids apart from those of earlier runs of this
  // node that may still be in the log.
  HERALD_ASSIGN_OR_RETURN(incarnation_, next_incarnation(*engine_, config_.incarnation_floor));
  next_request_id_ = 1;
  if (conf_state_.voters_size() == 1 && conf_state_.voters(0) == config_.id) {
    // A single voter needs no election timeout to know it is alone.
    HERALD_RETURN_IF_ERROR(raft_->campaign());
  }
  spdlog::info("replica {} open: applied {} term {}, log [{}, {}]", config_.id, applied_,
               applied_term_, log_->first_index(), log_->last_index());
  return Status::ok_status();
}

Status Node::open_log() {
  if (config_.log_fs == nullptr) {
    HERALD_ASSIGN_OR_RETURN(log_, storage::LogStore::open(engine_));
    return Status::ok_status();
  }
  const MonoMs started_ms = config_.clock != nullptr ? config_.clock->mono_ms() : 0;
  HERALD_ASSIGN_OR_RETURN(
      auto segments, config_.opened_segment_log
                         ? config_.opened_segment_log()
                         : storage::SegmentLog::open(config_.log_fs, segment_log_options(config_)));
  const storage::SegmentLogRecovery& recovery = segments->recovery();
  if (config_.clock != nullptr) {
    spdlog::info("replica {}: raft log read: {} segments, {} records ({} ms waited for it)",
                 config_.id, recovery.segments, recovery.records,
                 config_.clock->mono_ms() - started_ms);
  }
  if (recovery.torn_bytes_zeroed > 0) {
    spdlog::warn("replica {}: the raft log ended in a torn batch ({}); {} bytes cleared",
                 config_.id, recovery.torn_reason, recovery.torn_bytes_zeroed);
  }
  HERALD_RETURN_IF_ERROR(adopt_engine_log(*segments));
  log_ = std::move(segments);
  return Status::ok_status();
}

// A segment log beside an engine that holds a log (a data directory written with the log in the
// engine, restored from a backup, which writes its snapshot point there, or rebuilt, which writes
// the carried-over hard state there): the engine's log moves into the segment log, synced, and
// only then leaves the engine. Until it has left, the move is not finished (the replica never ran
// on the segment log, whatever a crash or a failed write left in it), so every open redoes it:
// the copy replaces the segment log's entries from the engine log's first index on, and its hard
// state.
Status Node::adopt_engine_log(storage::SegmentLog& segments) {
  HERALD_ASSIGN_OR_RETURN(const auto stored,
                          engine_->get(storage::Space::kMeta, storage::kHardStateKey));
  if (!stored) {
    return Status::ok_status();
  }
  HERALD_ASSIGN_OR_RETURN(const auto old, storage::LogStore::open(engine_, kAdoptChunkBytes));
  std::optional<raftpb::SnapshotMetadata> start;
  if (old->truncated_index() > 0) {
    start.emplace();
    start->set_index(old->truncated_index());
    start->set_term(old->truncated_term());
  }
  raft::Index next = old->first_index();
  while (next <= old->last_index()) {
    HERALD_ASSIGN_OR_RETURN(auto chunk,
                            old->entries(next, old->last_index() + 1, kAdoptChunkBytes));
    next += chunk.size();
    HERALD_RETURN_IF_ERROR(segments.save(std::nullopt, start, chunk, /*sync=*/false));
    start.reset();
  }
  HERALD_RETURN_IF_ERROR(segments.save(old->hard_state(), start, {}, /*sync=*/true));
  storage::WriteBatch drop;
  drop.delete_range(storage::Space::kLog, "", kStateSpaceEnd);
  drop.del(storage::Space::kMeta, storage::kHardStateKey);
  drop.del(storage::Space::kMeta, storage::kTruncatedKey);
  HERALD_RETURN_IF_ERROR(engine_->write(drop, /*sync=*/true));
  spdlog::info("replica {}: moved the raft log [{}, {}] from the engine into segment files",
               config_.id, old->first_index(), old->last_index());
  return Status::ok_status();
}

// The applied state (in the engine) and the log agree after any crash when both live in the
// engine; with the log in segment files, a crash may keep the latest writes of one store and not
// the other's. Three cases, each made durable before the core sees the log:
//  - applied beyond the compaction point and either beyond the log's last index or on an entry of
//    another term: a snapshot was installed (the state space is written, synced, before the log's
//    snapshot record) and the log's record was lost. The state is the snapshot: the log restarts
//    empty after (applied index, applied term), as the lost record would have made it.
//  - commit below the applied index: the apply write outlived the log's (unsynced) hard state of
//    that round. Applied entries were committed, so commit rises to the applied index.
//  - applied below the compaction point: the log dropped entries the state never applied, which
//    no order of writes allows (compaction syncs the state first): kCorruption.
// A hard state term below the applied term (a log that lost everything) rises to it, without a
// vote; a higher term with no vote is always safe to adopt.
Status Node::reconcile_log() {
  const raft::Index truncated = log_->truncated_index();
  if (applied_ < truncated) {
    return Status::corruption(fmt::format(
        "the raft log is compacted to index {} beyond the applied index {}", truncated, applied_));
  }
  bool lost_snapshot = false;
  if (applied_ > truncated) {
    if (applied_ > log_->last_index()) {
      lost_snapshot = true;
    } else {
      HERALD_ASSIGN_OR_RETURN(const raft::Term term, log_->term(applied_));
      lost_snapshot = term != applied_term_;
    }
  }
  raftpb::HardState hs = log_->hard_state();
  const bool raise_commit = hs.commit() < applied_;
  const bool raise_term = hs.term() < applied_term_;
  if (!lost_snapshot && !raise_commit && !raise_term) {
    return Status::ok_status();
  }
  hs.set_commit(std::max<std::uint64_t>(hs.commit(), applied_));
  if (raise_term) {
    hs.set_term(applied_term_);
    hs.set_vote(raft::kNoNode);
  }
  std::optional<raftpb::SnapshotMetadata> snapshot;
  if (lost_snapshot) {
    spdlog::warn(
        "replica {}: its state is at index {} term {} but its log is [{}, {}]: a snapshot was "
        "installed and the log's record of it was lost; the log restarts after index {}",
        config_.id, applied_, applied_term_, log_->first_index(), log_->last_index(), applied_);
    snapshot.emplace();
    snapshot->set_index(applied_);
    snapshot->set_term(applied_term_);
    *snapshot->mutable_conf_state() = conf_state_;
  }
  return log_->save(hs, snapshot, {}, /*sync=*/true);
}

Status Node::sync_state() {
  storage::WriteBatch batch;
  batch.put(
      storage::Space::kState, kAppliedStateKey,
      encode_applied_state(applied_, applied_term_, conf_state_, wall_ms_floor_, disk_alarms_));
  return engine_->write(batch, /*sync=*/true);
}

void Node::tick() {
  ++now_ticks_;
  raft_->tick();
  if (raft_->recovering()) {
    if (now_ticks_ == 1) {
      broadcast_report();  // the peers answer at once (receive_report)
    }
    maybe_end_recovery();
  }
  keep_followers_alive();
  expire_requests();
  pump_streams();
  for (auto& [id, report] : peer_reports_) {
    ++report.age_ticks;
  }
  if (now_ticks_ % kReportIntervalTicks == 0) {
    broadcast_report();
  }
  if (config_.disk != nullptr && now_ticks_ % kDiskCheckIntervalTicks == 0) {
    check_disk();
  }
}

void Node::check_disk() {
  auto free = config_.disk->free_bytes();
  if (!free.ok()) {
    spdlog::warn("replica {}: cannot measure free disk space: {}", config_.id,
                 free.status().to_string());
    return;
  }
  const std::uint64_t floor = config_.min_free_bytes;
  const bool raised = disk_alarms_.contains(config_.id);
  const bool low = *free < floor;
  const bool recovered = *free >= floor + floor / 100 * kDiskAlarmClearMarginPercent;
  if (disk_alarm_in_flight_ || (raised ? !recovered : !low)) {
    return;
  }
  if (low) {
    spdlog::warn(
        "replica {}: {} bytes free, below the floor of {}: raising the disk alarm "
        "(new content is refused cluster-wide until it clears)",
        config_.id, *free, floor);
  } else {
    spdlog::info("replica {}: {} bytes free again: clearing the disk alarm", config_.id, *free);
  }
  rsmpb::Command command;
  command.set_wall_ms(config_.clock != nullptr ? config_.clock->wall_ms() : 0);
  rsmpb::DiskAlarm& alarm = *command.mutable_disk_alarm();
  alarm.set_node(config_.id);
  alarm.set_raised(!raised);
  alarm.set_free_bytes(*free);
  disk_alarm_in_flight_ = true;
  propose(std::move(command), [this](const Result<rsmpb::CommandResult>& result) {
    // Whatever the outcome, the next check looks again at the applied state.
    disk_alarm_in_flight_ = false;
    if (!result.ok()) {
      spdlog::warn("replica {}: the disk alarm was not recorded yet: {}", config_.id,
                   result.status().to_string());
    }
  });
}

void Node::receive(const rsmpb::PeerEnvelope& envelope) {
  if (envelope.to() != config_.id) {
    return;  // Misrouted; the transport validated the sender already.
  }
  switch (envelope.body_case()) {
    case rsmpb::PeerEnvelope::kRaft: {
      if (envelope.raft().type() == raftpb::MSG_PROP) {
        if (const Status valid = validate_forwarded(envelope.from(), envelope.raft());
            !valid.ok()) {
          spdlog::warn("replica {}: refused a proposal forwarded by node {}: {}", config_.id,
                       envelope.from(), valid.message());
          break;
        }
      }
      const Status s = raft_->step(envelope.raft());
      if (!s.ok()) {
        spdlog::debug("dropped message from {}: {}", envelope.from(), s.to_string());
      }
      break;
    }
    case rsmpb::PeerEnvelope::kChunk: receive_chunk(envelope.from(), envelope.chunk()); break;
    case rsmpb::PeerEnvelope::kAck: receive_ack(envelope.from(), envelope.ack()); break;
    case rsmpb::PeerEnvelope::kReport: receive_report(envelope.from(), envelope.report()); break;
    default: break;
  }
}

Status Node::validate_forwarded(raft::NodeId from, const raftpb::Message& message) {
  if (message.from() != from) {
    return Status::invalid_argument(
        fmt::format("the message names node {} as its sender", message.from()));
  }
  rsmpb::Command command;
  for (const raftpb::Entry& entry : message.entries()) {
    // Membership changes are proposed on the leader itself (rsm::Node forwards none).
    if (entry.type() != raftpb::ENTRY_NORMAL) {
      return Status::invalid_argument("a forwarded entry must be a normal entry");
    }
    if (!command.ParseFromString(entry.data())) {
      return Status::invalid_argument("a forwarded entry must hold a command");
    }
    if (command.origin() != from || command.incarnation() == 0 || command.request_id() == 0) {
      return Status::invalid_argument(fmt::format(
          "a forwarded command must come from its origin with an incarnation and a request id "
          "above 0 (origin {}, incarnation {}, request {})",
          command.origin(), command.incarnation(), command.request_id()));
    }
    if (command.op_case() == rsmpb::Command::OP_NOT_SET) {
      return Status::invalid_argument("a forwarded command must carry an operation");
    }
  }
  return Status::ok_status();
}

void Node::propose(rsmpb::Command command, ProposeCallback done) {
  ++stats_.proposals;
  if (!disk_alarms_.empty() && !command.has_disk_alarm() &&
      !state_machine_->allowed_when_disk_low(command)) {
    // Not proposed: the caller may retry it as new once the alarm clears.
    done(Status::resource_exhausted(fmt::format(
        "{}the disk of node(s) {} is below its free-space floor: new content is refused until "
        "space is freed; reads and deletions still work",
        kDiskAlarmRefusal, fmt::join(disk_alarms_, ", "))));
    ++stats_.proposals_refused;
    return;
  }
  if (proposals_.size() >= kMaxPendingProposals) {
    // Not proposed: the caller may retry it as new once the backlog drains.
    done(Status::unavailable(fmt::format("{} proposals are pending; the bound is {}",
                                         proposals_.size(), kMaxPendingProposals)));
    ++stats_.proposals_refused;
    return;
  }
  const std::uint64_t request_id = next_request_id_++;
  command.set_origin(config_.id);
  command.set_incarnation(incarnation_);
  command.set_request_id(request_id);
  const Status s = raft_->propose(command.SerializeAsString());
  if (!s.ok()) {
    // Refused before reaching the log: not applied, safe to retry as new.
    done(s.code() == Code::kResourceExhausted
             ? Status::unavailable("the leader's uncommitted log is at its bound; retry: " +
                                   s.message())
             : s);
    ++stats_.proposals_refused;
    return;
  }
  auto pending = std::make_unique<PendingProposal>();
  pending->done = std::move(done);
  pending->deadline_tick = now_ticks_ + kRequestTimeoutTicks;
  pending->term = raft_->status().term;
  proposals_.emplace(request_id, std::move(pending));
}

void Node::read_barrier(ReadCallback done) {
  const std::size_t pending = unsent_reads_.size() + reads_awaiting_apply_.size();
  if (pending >= kMaxPendingReads) {
    done(Status::resource_exhausted("too many pending reads"));
    return;
  }
  auto read = std::make_unique<PendingRead>();
  read->done = std::move(done);
  read->deadline_tick = now_ticks_ + kRequestTimeoutTicks;
  unsent_reads_.push_back(std::move(read));
}

void Node::transfer_leadership(raft::NodeId transferee) {
  raft_->transfer_leadership(transferee);
}

void Node::change_membership(const MemberChange& change, MembershipCallback done) {
  const raft::NodeStatus st = raft_->status();
  if (st.role != raft::Role::kLeader) {
    done(Status::not_leader(st.leader == raft::kNoNode
                                ? std::string("no leader is known; retry")
                                : fmt::format("node {} is the leader", st.leader)));
    return;
  }
  if (member_change_.has_value()) {
    done(Status::failed_precondition(fmt::format(
        "a membership change ({} of node {}) is still in progress; retry once it is applied",
        raftpb::ConfChangeType_Name(member_change_->change.type()),
        member_change_->change.node_id())));
    return;
  }
  MembershipView view;
  view.conf = conf_state_;
  view.leader = config_.id;
  view.leader_last_index = st.last_index;
  for (const raft::PeerProgress& p : st.progress) {
    if (p.id == change.node) view.node_match = p.match;
  }
  if (Status s = check_member_change(view, change); !s.ok()) {
    done(std::move(s));
    return;
  }
  const raftpb::ConfChange cc = to_conf_change(change);
  if (Status s = raft_->propose_conf_change(cc); !s.ok()) {
    done(std::move(s));
    return;
  }
  spdlog::warn("replica {}: proposed membership change: {} node {}{}", config_.id,
               member_op_name(change.op), change.node,
               change.peer_address.empty() ? std::string() : " at " + change.peer_address);
  member_change_ =
      PendingMemberChange{cc, std::move(done), now_ticks_ + kRequestTimeoutTicks, st.term};
}

void Node::finish_member_change(const Status& status) {
  if (!member_change_.has_value()) return;
  MembershipCallback done = std::move(member_change_->done);
  member_change_.reset();
  member_change_applied_ = false;
  done(status);
}

void Node::on_soft_state(const raft::SoftState& next) {
  const raft::SoftState previous = soft_state_;
  const bool was_leader = previous.role == raft::Role::kLeader;
  soft_state_ = next;
  const bool leader = next.role == raft::Role::kLeader;
  if (listener_ != nullptr && leader != was_leader) {
    listener_->on_leadership(leader);
  }
  log_transition(previous, next);
  count_transition(previous, next);
  if (next.term == previous.term) {
    // The same term has at most one leader: forwarded proposals and reads in flight to it are
    // still valid even while this replica briefly knows no leader (a pre-vote that lost), and
    // they are answered when they apply, or at their deadline.
    return;
  }
  // A new term: the old leader's uncommitted entries may be lost or may still commit under the
  // new one. Answer the requests made in an older term now, rather than at their deadline, so
  // clients can retry within an election's time — with "outcome unknown" for writes.
  if (member_change_.has_value() && member_change_->term < next.term && !member_change_applied_) {
    finish_member_change(Status::aborted(
        fmt::format("the term changed from {} to {} while the membership change was in flight; "
                    "check the membership (cluster status) before retrying",
                    previous.term, next.term)));
  }
  fail_in_flight(next.term,
                 Status::aborted(fmt::format(
                     "the term changed from {} to {} while the command was in flight; its "
                     "outcome is unknown (retry with the same id)",
                     previous.term, next.term)),
                 Status::unavailable("the leader changed during the read; retry"));
}

void Node::count_transition(const raft::SoftState& previous, const raft::SoftState& next) {
  if (next.role == raft::Role::kCandidate && previous.role != raft::Role::kCandidate) {
    ++stats_.elections;
  }
  if (next.term != previous.term) ++stats_.term_changes;
  if (next.leader != raft::kNoNode && next.leader != previous.leader) ++stats_.leader_changes;
}

void Node::log_transition(const raft::SoftState& previous, const raft::SoftState& next) const {
  if (next.leader == previous.leader && next.term == previous.term) {
    return;  // A role change inside a term without a leader change (e.g. a pre-vote that lost).
  }
  const std::string why = raft::describe(next.reason);
  // Every line carries the new term and leader (0: none known) as fields (base/log.h).
  const log::Field term = log::term(next.term);
  const log::Field leader("leader", next.leader);
  if (previous.term == 0 && previous.leader == raft::kNoNode) {
    log::info({term, leader}, "replica {}: term {}, leader {} ({}): {}", config_.id, next.term,
              next.leader, raft::role_name(next.role), why);
    return;
  }
  if (next.leader == previous.leader) {
    // A term change that kept the leader is still an election somebody started.
    log::warn({term, leader}, "replica {}: term {} -> {}, {} ({}): {}", config_.id, previous.term,
              next.term,
              next.leader == raft::kNoNode ? std::string("no leader known")
                                           : fmt::format("leader {}", next.leader),
              raft::role_name(next.role), why);
    return;
  }
  if (next.leader == raft::kNoNode) {
    log::warn({term, leader}, "replica {}: lost leader {} in term {} ({} now): {}", config_.id,
              previous.leader, previous.term, raft::role_name(next.role), why);
    return;
  }
  if (previous.leader == raft::kNoNode && next.term == previous.term) {
    // The leader of this term heard again after a silence: no leader change happened.
    log::info({term, leader}, "replica {}: leader {} of term {} heard again: {}", config_.id,
              next.leader, next.term, why);
    return;
  }
  log::warn({term, leader},
            "replica {}: leader is now {} in term {} (was {} in term {}; {} now): {}", config_.id,
            next.leader, next.term, previous.leader, previous.term, raft::role_name(next.role),
            why);
}

void Node::keep_followers_alive() {
  if (sends_after_write_ != nullptr && config_.log_writer->done()) {
    send_messages(*sends_after_write_);  // the round's log write is durable
    sends_after_write_ = nullptr;
  }
  if (config_.clock == nullptr || config_.in_round_heartbeat_ms <= 0 ||
      soft_state_.role != raft::Role::kLeader) {
    return;
  }
  const MonoMs now_ms = config_.clock->mono_ms();
  if (now_ms - last_heartbeat_ms_ < config_.in_round_heartbeat_ms) {
    return;
  }
  last_heartbeat_ms_ = now_ms;
  std::vector<raftpb::Message> heartbeats = raft_->heartbeats_now();
  send_messages(heartbeats);
}

void Node::fail_in_flight(raft::Term term, const Status& proposal_status,
                          const Status& read_status) {
  std::vector<ProposeCallback> failed_proposals;
  for (auto it = proposals_.begin(); it != proposals_.end();) {
    if (it->second->term >= term) {
      ++it;
      continue;
    }
    failed_proposals.push_back(std::move(it->second->done));
    it = proposals_.erase(it);
  }
  std::vector<std::unique_ptr<PendingRead>> failed_reads;
  for (auto it = reads_awaiting_index_.begin(); it != reads_awaiting_index_.end();) {
    if (it->second.empty() || it->second.front()->term >= term) {
      ++it;
      continue;
    }
    std::move(it->second.begin(), it->second.end(), std::back_inserter(failed_reads));
    it = reads_awaiting_index_.erase(it);
  }
  // Callbacks last: they may propose or read again.
  for (auto& done : failed_proposals) {
    done(proposal_status);
  }
  for (auto& read : failed_reads) {
    read->done(read_status);
  }
}

void Node::abandon_requests(const Status& proposal_status, const Status& read_status) {
  std::vector<ProposeCallback> proposals;
  for (auto& [request_id, pending] : proposals_) {
    proposals.push_back(std::move(pending->done));
  }
  proposals_.clear();
  std::vector<std::unique_ptr<PendingRead>> reads;
  std::move(unsent_reads_.begin(), unsent_reads_.end(), std::back_inserter(reads));
  unsent_reads_.clear();
  for (auto& [context, group] : reads_awaiting_index_) {
    std::move(group.begin(), group.end(), std::back_inserter(reads));
  }
  reads_awaiting_index_.clear();
  for (auto& [index, read] : reads_awaiting_apply_) {
    reads.push_back(std::move(read));
  }
  reads_awaiting_apply_.clear();
  finish_member_change(proposal_status);
  // Callbacks last: they may propose or read again.
  for (auto& done : proposals) {
    done(proposal_status);
  }
  for (auto& read : reads) {
    read->done(read_status);
  }
}

void Node::issue_read_index() {
  if (unsent_reads_.empty()) {
    return;
  }
  // The core's own view, not soft_state_: that one catches up only when the next Ready is
  // handled, and a read arriving just after an election would be failed for nothing.
  if (raft_->leader() == raft::kNoNode) {
    // The core drops read requests while no leader is known; fail them at once instead.
    auto reads = std::move(unsent_reads_);
    unsent_reads_.clear();
    for (auto& read : reads) {
      read->done(Status::unavailable("no leader is known; retry"));
    }
    return;
  }
  // One ReadIndex round answers every read that arrived since the last one.
  std::string context;
  put_fixed64_be(context, next_read_id_++);
  auto& group = reads_awaiting_index_[context];
  const raft::Term term = raft_->status().term;
  while (!unsent_reads_.empty()) {
    unsent_reads_.front()->term = term;
    group.push_back(std::move(unsent_reads_.front()));
    unsent_reads_.pop_front();
  }
  raft_->read_index(context);
}

bool Node::has_work() const {
  return !unsent_reads_.empty() || raft_->has_ready();
}

Status Node::process() {
  do {
    HERALD_RETURN_IF_ERROR(process_round());
  } while (raft_->has_ready());
  return Status::ok_status();
}

Status Node::process_round() {
  // A damaged log record met by the core, or a damaged state record met by a snapshot stream:
  // nothing more is persisted or sent on its view.
  HERALD_RETURN_IF_ERROR(raft_->storage_fault());
  HERALD_RETURN_IF_ERROR(state_fault_);
  issue_read_index();
  if (raft_->has_ready()) {
    raft::Ready rd = raft_->ready();
    HERALD_RETURN_IF_ERROR(raft_->storage_fault());
    HERALD_RETURN_IF_ERROR(handle_ready(rd));
  }
  pump_streams();
  return state_fault_;
}

bool Node::may_send_before_persist(const raft::Ready& rd) const {
  const raft::Role role = rd.soft_state ? rd.soft_state->role : soft_state_.role;
  if (role != raft::Role::kLeader || rd.snapshot) {
    return false;
  }
  if (rd.hard_state) {
    const raftpb::HardState& durable = log_->hard_state();
    if (rd.hard_state->term() != durable.term() || rd.hard_state->vote() != durable.vote()) {
      return false;
    }
  }
  return true;
}

Status Node::handle_ready(raft::Ready& rd) {
  // A leader whose term and vote are already durable may replicate entries while it writes them
  // itself (Raft thesis §10.2.1): the core counts the leader's own copy toward commitment only
  // after advance(), so its disk write and its followers' run in parallel.
  if (may_send_before_persist(rd)) {
    send_messages(rd.messages);
  }
  if (may_apply_while_persisting(rd)) {
    HERALD_RETURN_IF_ERROR(persist_while_applying(rd));
  } else {
    HERALD_RETURN_IF_ERROR(persist(rd));
    send_messages(rd.messages);
    keep_followers_alive();
    HERALD_RETURN_IF_ERROR(apply(rd.committed_entries));
  }
  handle_read_states(rd.read_states);
  if (rd.soft_state) {
    on_soft_state(*rd.soft_state);
  }
  raft_->advance(rd);
  serve_reads();
  maybe_compact();
  return Status::ok_status();
}

bool Node::may_apply_while_persisting(const raft::Ready& rd) const {
  if (config_.log_writer == nullptr || config_.log_fs == nullptr || rd.snapshot ||
      rd.entries.empty() || rd.committed_entries.empty()) {
    return false;
  }
  // Committed entries below the round's first new entry were written by an earlier round (every
  // round that writes entries syncs them), so applying them never runs ahead of the log.
  if (rd.committed_entries.back().index() >= rd.entries.front().index()) {
    return false;
  }
  // A snapshot stream starts from the applied state (start_stream()): not in the middle of an
  // apply.
  if (std::any_of(rd.messages.begin(), rd.messages.end(), [](const raftpb::Message& message) {
        return message.type() == raftpb::MSG_SNAP;
      })) {
    return false;
  }
  // A membership change is applied to the core and the log (apply_conf_change()).
  return std::none_of(
      rd.committed_entries.begin(), rd.committed_entries.end(),
      [](const raftpb::Entry& entry) { return entry.type() == raftpb::ENTRY_CONF_CHANGE; });
}

Status Node::persist_while_applying(raft::Ready& rd) {
  // The write touches only log_; until wait() nothing on this thread does (apply_entries() reads
  // and writes the state space, the core answers from the entries it still holds unstable).
  std::int64_t sync_us = 0;
  const bool sync = rd.must_sync;
  config_.log_writer->start([this, &rd, &sync_us, sync] {
    const std::int64_t start_us = config_.clock != nullptr ? config_.clock->mono_us() : 0;
    Status saved = log_->save(rd.hard_state, std::nullopt, rd.entries, sync);
    sync_us = config_.clock != nullptr ? config_.clock->mono_us() - start_us : 0;
    return saved;
  });
  sends_after_write_ = &rd.messages;
  std::vector<std::pair<std::uint64_t, rsmpb::CommandResult>> answers;
  const Status applied = apply_entries(rd.committed_entries, answers);
  const std::int64_t wait_start_us = config_.clock != nullptr ? config_.clock->mono_us() : 0;
  const Status written = config_.log_writer->wait();
  sends_after_write_ = nullptr;
  HERALD_RETURN_IF_ERROR(written);
  ++stats_.log_writes_behind_apply;
  stats_.last_log_write_wait_us =
      config_.clock != nullptr ? config_.clock->mono_us() - wait_start_us : 0;
  if (sync) {
    ++stats_.log_syncs;
    stats_.last_log_sync_us = sync_us;
  }
  send_messages(rd.messages);  // what the safe points did not send yet
  HERALD_RETURN_IF_ERROR(applied);
  finish_apply(rd.committed_entries, answers);
  return Status::ok_status();
}

Status Node::persist(const raft::Ready& rd) {
  if (!rd.hard_state && !rd.snapshot && rd.entries.empty()) {
    return Status::ok_status();
  }
  if (rd.snapshot) {
    // The state space first, synced, then the log's snapshot record: a crash between the two
    // leaves a state ahead of the log, which reconcile_log() completes on the next open. The
    // reverse order could leave a log that skips entries the state never applied.
    storage::WriteBatch install;
    HERALD_RETURN_IF_ERROR(build_install_batch(*rd.snapshot, install));
    HERALD_RETURN_IF_ERROR(engine_->write(install, /*sync=*/true));
  }
  const std::int64_t start_us = config_.clock != nullptr ? config_.clock->mono_us() : 0;
  HERALD_RETURN_IF_ERROR(log_->save(rd.hard_state, rd.snapshot, rd.entries, rd.must_sync));
  if (rd.must_sync) {
    ++stats_.log_syncs;
    stats_.last_log_sync_us = config_.clock != nullptr ? config_.clock->mono_us() - start_us : 0;
  }
  if (rd.snapshot) {
    applied_ = rd.snapshot->index();
    applied_term_ = rd.snapshot->term();
    conf_state_ = rd.snapshot->conf_state();
    log_->set_conf_state(conf_state_);
    log_->set_snapshot_metadata(*rd.snapshot);
    staged_snapshot_.reset();
    sessions_.clear();  // The state space was replaced.
    // A leader running an older Herald sends an older state space: this replica stops on it.
    HERALD_RETURN_IF_ERROR(check_state_format(*engine_));
    HERALD_ASSIGN_OR_RETURN(const rsmpb::AppliedState installed, read_applied_state(*engine_));
    wall_ms_floor_ = installed.wall_ms_floor();
    disk_alarms_ = {installed.disk_alarms().begin(), installed.disk_alarms().end()};
    spdlog::info("replica {} installed snapshot at index {} term {}", config_.id, applied_,
                 applied_term_);
    if (listener_ != nullptr) {
      listener_->on_snapshot_installed();
    }
  }
  return Status::ok_status();
}

void Node::send_messages(std::vector<raftpb::Message>& messages) {
  for (auto& message : messages) {
    if (message.type() == raftpb::MSG_SNAP) {
      start_stream(std::move(message));
      continue;
    }
    rsmpb::PeerEnvelope envelope;
    envelope.set_from(config_.id);
    envelope.set_to(message.to());
    *envelope.mutable_raft() = std::move(message);
    if (!transport_->send(envelope.to(), envelope)) {
      raft_->report_unreachable(envelope.to());
    }
  }
  messages.clear();  // Sent (or handed to a stream); a second call sends nothing.
}

Status Node::apply(std::vector<raftpb::Entry>& entries) {
  std::vector<std::pair<std::uint64_t, rsmpb::CommandResult>> answers;
  HERALD_RETURN_IF_ERROR(apply_entries(entries, answers));
  finish_apply(entries, answers);
  return Status::ok_status();
}

Status Node::apply_entries(std::vector<raftpb::Entry>& entries,
                           std::vector<std::pair<std::uint64_t, rsmpb::CommandResult>>& answers) {
  if (entries.empty()) {
    return Status::ok_status();
  }
  ApplyBatch batch(engine_);
  const MonoMs start_ms = config_.clock != nullptr ? config_.clock->mono_ms() : 0;
  const std::int64_t start_us = config_.clock != nullptr ? config_.clock->mono_us() : 0;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const raftpb::Entry& entry = entries[i];
    HERALD_ASSERT(entry.index() == applied_ + 1, "committed entries must apply in order");
    HERALD_RETURN_IF_ERROR(apply_one(entry, batch, answers));
    applied_ = entry.index();
    applied_term_ = entry.term();
    keep_followers_alive();
    if (config_.clock != nullptr && i + 1 < entries.size() &&
        config_.clock->mono_ms() - start_ms >= config_.apply_budget_ms) {
      // The rest waits for the next round; the core hands it out again after advance().
      entries.resize(i + 1);
      break;
    }
  }
  batch.put(
      storage::Space::kState, kAppliedStateKey,
      encode_applied_state(applied_, applied_term_, conf_state_, wall_ms_floor_, disk_alarms_));
  // Not synced: after a crash the log (synced before apply) replays what this write loses.
  if (Status s = engine_->write(batch.writes(), /*sync=*/false); !s.ok()) {
    sessions_.clear();  // It cached records that never reached the engine.
    return s;
  }
  ++stats_.apply_rounds;
  stats_.entries_applied += entries.size();
  const WriteCounts written = batch.counts();
  stats_.state_puts += written.puts;
  stats_.state_deletes += written.deletes;
  stats_.state_write_bytes += written.bytes;
  stats_.last_apply_us = config_.clock != nullptr ? config_.clock->mono_us() - start_us : 0;
  keep_followers_alive();
  return Status::ok_status();
}

void Node::finish_apply(const std::vector<raftpb::Entry>& entries,
                        std::vector<std::pair<std::uint64_t, rsmpb::CommandResult>>& answers) {
  if (entries.empty()) {
    return;
  }
  raftpb::SnapshotMetadata meta;
  meta.set_index(applied_);
  meta.set_term(applied_term_);
  *meta.mutable_conf_state() = conf_state_;
  log_->set_snapshot_metadata(meta);
  if (member_change_applied_) {
    finish_member_change(Status::ok_status());
  }
  for (auto& [request_id, result] : answers) {
    auto it = proposals_.find(request_id);
    if (it == proposals_.end()) {
      continue;  // Timed out already, or proposed by an earlier incarnation.
    }
    auto done = std::move(it->second->done);
    proposals_.erase(it);
    done(std::move(result));
  }
  if (apply_observer_) {
    for (const auto& entry : entries) {
      apply_observer_(entry);
    }
  }
  keep_followers_alive();
  if (listener_ != nullptr) {
    listener_->on_applied();
  }
  keep_followers_alive();
}

Status Node::apply_one(const raftpb::Entry& entry, ApplyBatch& batch,
                       std::vector<std::pair<std::uint64_t, rsmpb::CommandResult>>& answers) {
  if (entry.type() == raftpb::ENTRY_CONF_CHANGE) {
    apply_conf_change(entry, batch);
    return Status::ok_status();
  }
  if (entry.data().empty()) {
    return Status::ok_status();  // The leader's no-op of its term.
  }
  rsmpb::Command command;
  rsmpb::CommandResult result;
  const bool parsed = command.ParseFromString(entry.data());
  if (parsed) {
    // Time never goes backwards in the log, whoever stamped the command (see AppliedState).
    wall_ms_floor_ = std::max(wall_ms_floor_, command.wall_ms());
    command.set_wall_ms(wall_ms_floor_);
  }
  if (!parsed) {
    // Deterministic on every replica: the bytes in the log are what they are.
    result = status_result(Status::invalid_argument("undecodable command"));
  } else {
    auto admission =
        sessions_.admit(batch, command.origin(), command.incarnation(), command.request_id());
    if (!admission.ok()) {
      return admission.status();  // A damaged session record: the replica must stop.
    }
    if (*admission == Admission::kDuplicate) {
      return Status::ok_status();  // Applied (and answered) at its first index.
    }
    if (*admission == Admission::kInvalid) {
      result = status_result(Status::invalid_argument(
          "a command must name its origin, incarnation and a request id above 0"));
    } else if (*admission == Admission::kTooOld) {
      // Not applied, on every replica: the caller may retry it as a new request.
      result = status_result(Status::unavailable("request too old to be applied exactly once"));
    } else {
      HERALD_RETURN_IF_ERROR(apply_command(entry.index(), command, batch, result));
    }
  }
  if (command.origin() == config_.id && command.incarnation() == incarnation_) {
    answers.emplace_back(command.request_id(), std::move(result));
  }
  return Status::ok_status();
}

void Node::apply_conf_change(const raftpb::Entry& entry, ApplyBatch& batch) {
  raftpb::ConfChange change;
  if (!change.ParseFromString(entry.data())) {
    spdlog::error("replica {}: undecodable conf change at {}", config_.id, entry.index());
    return;
  }
  conf_state_ = raft_->apply_conf_change(change);
  log_->set_conf_state(conf_state_);
  const std::string key = member_address_key(change.node_id());
  if (change.type() == raftpb::CONF_CHANGE_REMOVE_NODE) {
    batch.del(storage::Space::kState, key);
    // A removed node never clears its own disk alarm: it would refuse new content forever.
    if (disk_alarms_.erase(change.node_id()) > 0) {
      spdlog::warn("replica {}: disk alarm of removed node {} cleared", config_.id,
                   change.node_id());
    }
  } else if (change.type() == raftpb::CONF_CHANGE_ADD_LEARNER && !change.context().empty()) {
    batch.put(storage::Space::kState, key, seal_record(change.context()));
  }
  spdlog::warn("replica {}: membership at index {}: {} node {}; voters [{}], learners [{}]",
               config_.id, entry.index(), raftpb::ConfChangeType_Name(change.type()),
               change.node_id(), fmt::join(conf_state_.voters(), ", "),
               fmt::join(conf_state_.learners(), ", "));
  if (member_change_.has_value() && same_conf_change(member_change_->change, change)) {
    member_change_applied_ = true;  // answered once the batch is written
  }
}

Status Node::apply_command(raft::Index index, const rsmpb::Command& command, ApplyBatch& batch,
                           rsmpb::CommandResult& result) {
  // The session record stays (the command was applied: a copy must not run again); the
  // command's own writes are undone when it fails, so a failed command has no effect.
  if (command.has_disk_alarm()) {
    const rsmpb::DiskAlarm& alarm = command.disk_alarm();
    const bool member = std::find(conf_state_.voters().begin(), conf_state_.voters().end(),
                                  alarm.node()) != conf_state_.voters().end() ||
                        std::find(conf_state_.learners().begin(), conf_state_.learners().end(),
                                  alarm.node()) != conf_state_.learners().end();
    if (alarm.node() != command.origin()) {
      result = status_result(Status::invalid_argument("a node reports only its own disk"));
    } else if (alarm.raised() && !member) {
      // A removed node still running could raise an alarm no member would ever clear.
      result = status_result(Status::failed_precondition(
          fmt::format("node {} is not a member: its disk alarm is ignored", alarm.node())));
    } else if (alarm.raised()) {
      disk_alarms_.insert(alarm.node());
      spdlog::warn("replica {}: disk alarm raised by node {} ({} bytes free)", config_.id,
                   alarm.node(), alarm.free_bytes());
    } else if (disk_alarms_.erase(alarm.node()) > 0) {
      spdlog::info("replica {}: disk alarm of node {} cleared ({} bytes free)", config_.id,
                   alarm.node(), alarm.free_bytes());
    }
    return Status::ok_status();
  }
  const ApplyBatch::Savepoint before = batch.savepoint();
  result = state_machine_->apply(index, command, batch);
  const auto code = static_cast<Code>(result.code());
  if (code == Code::kCorruption || code == Code::kIOError) {
    return {code, fmt::format("applying entry {}: {}", index, result.message())};
  }
  if (code != Code::kOk) {
    batch.rollback(before);
  }
  return Status::ok_status();
}

void Node::handle_read_states(const std::vector<raft::ReadState>& read_states) {
  for (const auto& rs : read_states) {
    auto it = reads_awaiting_index_.find(rs.context);
    if (it == reads_awaiting_index_.end()) {
      continue;
    }
    for (auto& read : it->second) {
      reads_awaiting_apply_.emplace(rs.index, std::move(read));
    }
    reads_awaiting_index_.erase(it);
  }
}

void Node::serve_reads() {
  while (!reads_awaiting_apply_.empty() && reads_awaiting_apply_.begin()->first <= applied_) {
    auto read = std::move(reads_awaiting_apply_.begin()->second);
    reads_awaiting_apply_.erase(reads_awaiting_apply_.begin());
    read->done(Status::ok_status());
  }
}

void Node::expire_requests() {
  const Status timeout = Status::timeout("no answer from the cluster in time");
  if (member_change_.has_value() && member_change_->deadline_tick <= now_ticks_) {
    finish_member_change(timeout);
  }
  for (auto it = proposals_.begin(); it != proposals_.end();) {
    if (it->second->deadline_tick > now_ticks_) {
      ++it;
      continue;
    }
    auto done = std::move(it->second->done);
    it = proposals_.erase(it);
    done(timeout);
  }
  for (auto it = reads_awaiting_index_.begin(); it != reads_awaiting_index_.end();) {
    auto& group = it->second;
    if (group.empty() || group.front()->deadline_tick > now_ticks_) {
      ++it;
      continue;
    }
    for (auto& read : group) {
      read->done(timeout);
    }
    it = reads_awaiting_index_.erase(it);
  }
  for (auto it = reads_awaiting_apply_.begin(); it != reads_awaiting_apply_.end();) {
    if (it->second->deadline_tick > now_ticks_) {
      ++it;
      continue;
    }
    it->second->done(timeout);
    it = reads_awaiting_apply_.erase(it);
  }
}

void Node::maybe_compact() {
  // The segment log drops whole segments only, so its first index may stay below what was asked:
  // the threshold counts from the last compaction asked for, not from the first index.
  const raft::Index first = std::max(log_->first_index(), compacted_upto_ + 1);
  if (applied_ < first || applied_ - first + 1 < config_.compaction_threshold_entries ||
      applied_ <= config_.log_tail_entries) {
    return;
  }
  const raft::Index upto = applied_ - config_.log_tail_entries;
  compacted_upto_ = upto;
  Status s = Status::ok_status();
  if (config_.log_fs != nullptr) {
    // The state space's apply writes are not synced, and the log is another store: the state must
    // be durable up to `upto` before the log drops entries a crash would need to replay.
    s = sync_state();
  }
  if (s.ok()) {
    s = log_->compact(upto);
  }
  if (!s.ok()) {
    spdlog::warn("replica {}: log compaction to {} failed: {}", config_.id, upto, s.to_string());
  }
}

void Node::receive_report(raft::NodeId from, const rsmpb::NodeReport& report) {
  auto& entry = peer_reports_[from];
  entry.report = report;
  entry.age_ticks = 0;
  const auto [known, first] = peer_incarnations_.try_emplace(from, report.incarnation());
  if (!first && report.incarnation() < known->second) {
    return;  // from an earlier run of the peer, delivered late
  }
  if (first || report.incarnation() > known->second) {
    known->second = report.incarnation();
    // A peer restarted (or is new to this run): what it acknowledged to this leader may be gone.
    raft_->forget_match(from);
    // Answer at once, naming its new incarnation, so that it ends its recovery within a round
    // trip instead of a report interval.
    rsmpb::PeerEnvelope answer = make_report();
    answer.set_to(from);
    transport_->send(from, answer);
  }
  if (!raft_->recovering()) {
    return;
  }
  const bool after_my_start = std::any_of(
      report.heard().begin(), report.heard().end(), [this](const rsmpb::PeerIncarnation& h) {
        return h.id() == config_.id && h.incarnation() == incarnation_;
      });
  if (after_my_start) {
    recovery_reports_[from] = report;
    maybe_end_recovery();
  }
}

void Node::maybe_end_recovery() {
  if (!raft_->recovering()) {
    return;
  }
  raft::RecoveryEvidence evidence;
  evidence.max_term = raft_->status().term;
  std::size_t others = 0;
  std::size_t heard = 0;
  for (const raft::NodeId voter : recovery_voters()) {
    if (voter == config_.id) {
      continue;
    }
    ++others;
    const auto it = recovery_reports_.find(voter);
    if (it == recovery_reports_.end()) {
      continue;
    }
    ++heard;
    const rsmpb::NodeReport& r = it->second;
    evidence.max_term = std::max<raft::Term>(evidence.max_term, r.term());
    if (r.durable_last_term() > evidence.last_term ||
        (r.durable_last_term() == evidence.last_term &&
         r.durable_last_index() > evidence.last_index)) {
      evidence.last_term = r.durable_last_term();
      evidence.last_index = r.durable_last_index();
    }
  }
  const std::size_t majority = (others + 1) / 2 + 1;  // of every voter, this one included
  const bool waited = config_.recovery_fallback_ticks > 0 &&
                      now_ticks_ - recovery_started_tick_ >= config_.recovery_fallback_ticks;
  if (heard < others && !(waited && heard + 1 >= majority)) {
    return;
  }
  if (heard < others) {
    spdlog::warn(
        "replica {}: recovery ends on {} of {} other voters' reports after {} ticks (term {}, "
        "log ({}, {})); a vote it forgot may be known only to the silent ones",
        config_.id, heard, others, now_ticks_ - recovery_started_tick_, evidence.max_term,
        evidence.last_term, evidence.last_index);
  } else {
    spdlog::info("replica {}: recovered on every voter's report: term {}, log ({}, {})", config_.id,
                 evidence.max_term, evidence.last_term, evidence.last_index);
  }
  raft_->end_recovery(evidence);
  recovery_reports_.clear();
}

std::vector<raft::NodeId> Node::recovery_voters() const {
  // The membership this replica applied may be older than the cluster's: its disk may have lost
  // the application of later changes. Waiting for a voter removed since, whose process may be
  // gone, would never end; so it waits for the voters of the newest membership applied among its
  // own and those of the reports received since it restarted.
  raft::Index newest = applied_;
  const google::protobuf::RepeatedField<std::uint64_t>* voters = &conf_state_.voters();
  for (const auto& [from, report] : recovery_reports_) {
    if (report.applied() > newest && report.voters_size() > 0) {
      newest = report.applied();
      voters = &report.voters();
    }
  }
  return {voters->begin(), voters->end()};
}

rsmpb::PeerEnvelope Node::make_report() const {
  const raft::NodeStatus st = raft_->status();
  rsmpb::PeerEnvelope envelope;
  envelope.set_from(config_.id);
  auto* report = envelope.mutable_report();
  report->set_id(config_.id);
  report->set_role(raft::role_name(st.role));
  report->set_term(st.term);
  report->set_leader(st.leader);
  report->set_commit(st.commit);
  report->set_applied(applied_);
  report->set_last_index(st.last_index);
  report->set_client_address(config_.client_address);
  report->set_incarnation(incarnation_);
  const raft::Index durable_last = log_->last_index();
  auto durable_term = log_->term(durable_last);
  report->set_durable_last_index(durable_last);
  report->set_durable_last_term(durable_term.ok() ? *durable_term : 0);
  *report->mutable_voters() = conf_state_.voters();
  for (const auto& [peer, incarnation] : peer_incarnations_) {
    rsmpb::PeerIncarnation& h = *report->add_heard();
    h.set_id(peer);
    h.set_incarnation(incarnation);
  }
  return envelope;
}

void Node::broadcast_report() {
  rsmpb::PeerEnvelope envelope = make_report();
  for (const raft::NodeId peer : conf_state_.voters()) {
    if (peer != config_.id) {
      envelope.set_to(peer);
      transport_->send(peer, envelope);
    }
  }
  for (const raft::NodeId peer : conf_state_.learners()) {
    envelope.set_to(peer);
    transport_->send(peer, envelope);
  }
}

const raft::LogStorage& Node::log() const {
  return *log_;
}

raft::NodeStatus Node::status() const {
  raft::NodeStatus st = raft_->status();
  st.applied = applied_;
  return st;
}

// ---- Snapshot streaming ----

void Node::start_stream(raftpb::Message message) {
  const raft::NodeId to = message.to();
  if (out_streams_.contains(to)) {
    return;  // A stream is already under way; its ack reports to the core.
  }
  auto stream = std::make_unique<OutboundStream>();
  stream->stream_id = next_stream_id_++;
  stream->to = to;
  stream->view = engine_->snapshot();
  auto applied = read_applied_state(*stream->view);
  if (!applied.ok()) {
    spdlog::error("replica {}: cannot snapshot for {}: {}", config_.id, to,
                  applied.status().to_string());
    raft_->report_snapshot(to, false);
    return;
  }
  // The view may be newer than the metadata the core asked for; send what the view holds.
  auto* meta = message.mutable_snapshot();
  meta->set_index(applied->index());
  meta->set_term(applied->term());
  *meta->mutable_conf_state() = applied->conf_state();
  stream->message = std::move(message);
  stream->it = stream->view->scan(storage::Space::kState, "", "");
  stream->deadline_tick = now_ticks_ + kSnapshotAckTimeoutTicks;
  spdlog::info("replica {}: streaming snapshot at {} to {}", config_.id, meta->index(), to);
  out_streams_.emplace(to, std::move(stream));
}

void Node::pump_streams() {
  for (auto it = out_streams_.begin(); it != out_streams_.end();) {
    OutboundStream& stream = *it->second;
    const bool expired = stream.deadline_tick <= now_ticks_;
    if (expired || !pump_stream(stream)) {
      spdlog::warn("replica {}: snapshot stream to {} abandoned", config_.id, stream.to);
      raft_->report_snapshot(stream.to, false);
      it = out_streams_.erase(it);
      continue;
    }
    ++it;
  }
}

bool Node::pump_stream(OutboundStream& stream) {
  if (stream.refused) {
    if (!transport_->send(stream.to, *stream.refused)) {
      return true;  // still no room: try again on the next pump
    }
    stream.refused.reset();
  }
  while (!stream.finished && transport_->queued_bytes(stream.to) < kSnapshotWindowBytes) {
    std::string data;
    while (stream.it->valid() && data.size() < config_.snapshot_chunk_bytes) {
      // Every state value is a sealed record: a damaged one is never sent.
      std::string_view payload;
      if (!open_record(stream.it->value(), payload)) {
        state_fault_ = Status::corruption(
            fmt::format("snapshot for replica {}: the state record under key \"{}\" fails its "
                        "checksum",
                        stream.to, printable(stream.it->key())));
        return false;
      }
      append_record(data, stream.it->key(), stream.it->value());
      stream.it->next();
    }
    if (!stream.it->status().ok()) {
      return false;
    }
    rsmpb::PeerEnvelope envelope;
    envelope.set_from(config_.id);
    envelope.set_to(stream.to);
    auto* chunk = envelope.mutable_chunk();
    chunk->set_stream_id(stream.stream_id);
    chunk->set_seq(stream.seq++);
    *chunk->mutable_metadata() = stream.message.snapshot();
    chunk->set_data(seal_record(data));
    stream.finished = !stream.it->valid();
    if (stream.finished) {
      chunk->set_last(true);
      *chunk->mutable_snap_message() = stream.message;
    }
    if (!transport_->send(stream.to, envelope)) {
      stream.refused = std::move(envelope);
      return true;
    }
  }
  return true;
}

void Node::send_ack(raft::NodeId to, std::uint64_t stream_id, bool ok) {
  rsmpb::PeerEnvelope envelope;
  envelope.set_from(config_.id);
  envelope.set_to(to);
  envelope.mutable_ack()->set_stream_id(stream_id);
  envelope.mutable_ack()->set_ok(ok);
  transport_->send(to, envelope);
}

void Node::receive_ack(raft::NodeId from, const rsmpb::SnapshotAck& ack) {
  auto it = out_streams_.find(from);
  if (it == out_streams_.end() || it->second->stream_id != ack.stream_id()) {
    return;
  }
  raft_->report_snapshot(from, ack.ok());
  out_streams_.erase(it);
}

void Node::receive_chunk(raft::NodeId from, const rsmpb::SnapshotChunk& chunk) {
  if (chunk.seq() == 0) {
    in_stream_ = std::make_unique<InboundStream>();
    in_stream_->from = from;
    in_stream_->stream_id = chunk.stream_id();
    staged_snapshot_.reset();
    sessions_.clear();  // The state space was replaced.
  }
  if (!in_stream_ || in_stream_->from != from || in_stream_->stream_id != chunk.stream_id() ||
      in_stream_->next_seq != chunk.seq()) {
    send_ack(from, chunk.stream_id(), false);
    in_stream_.reset();
    return;
  }
  const Status s = stage_chunk(chunk);
  if (!s.ok()) {
    spdlog::warn("replica {}: snapshot chunk from {} rejected: {}", config_.id, from,
                 s.to_string());
    send_ack(from, chunk.stream_id(), false);
    in_stream_.reset();
    return;
  }
  ++in_stream_->next_seq;
  if (!chunk.last()) {
    return;
  }
  staged_snapshot_ = chunk.metadata();
  const Status step = raft_->step(chunk.snap_message());
  send_ack(from, chunk.stream_id(), step.ok());
  in_stream_.reset();
}

Result<std::vector<SnapshotRecord>> decode_snapshot_chunk(std::string_view data) {
  std::string_view payload;
  if (!open_record(data, payload)) {
    return Status::corruption("snapshot chunk fails its checksum");
  }
  std::vector<SnapshotRecord> records;
  while (!payload.empty()) {
    if (payload.size() < 4) {
      return Status::corruption("truncated snapshot record");
    }
    const std::uint32_t key_len = get_fixed32_be(payload);
    if (payload.size() < 8ULL + key_len) {
      return Status::corruption("truncated snapshot record");
    }
    const std::string_view key = payload.substr(4, key_len);
    const std::uint32_t value_len = get_fixed32_be(payload.substr(4 + key_len));
    if (payload.size() < 8ULL + key_len + value_len) {
      return Status::corruption("truncated snapshot record");
    }
    const std::string_view value = payload.substr(8 + key_len, value_len);
    std::string_view sealed_payload;
    if (!open_record(value, sealed_payload)) {  // damaged on the sender's disk
      return Status::corruption("a state record in the snapshot fails its checksum");
    }
    records.push_back({key, value});
    payload.remove_prefix(8 + key_len + value_len);
  }
  return records;
}

Status Node::stage_chunk(const rsmpb::SnapshotChunk& chunk) {
  HERALD_ASSIGN_OR_RETURN(const std::vector<SnapshotRecord> records,
                          decode_snapshot_chunk(chunk.data()));
  storage::WriteBatch batch;
  if (chunk.seq() == 0) {
    batch.delete_range(storage::Space::kMeta, kSnapshotStagePrefix, kSnapshotStageEnd);
  }
  for (const SnapshotRecord& record : records) {
    batch.put(storage::Space::kMeta, std::string(kSnapshotStagePrefix) + std::string(record.key),
              record.value);
  }
  return engine_->write(batch, /*sync=*/false);
}

Status Node::build_install_batch(const raftpb::SnapshotMetadata& meta, storage::WriteBatch& batch) {
  if (!staged_snapshot_ || staged_snapshot_->index() != meta.index()) {
    return Status::failed_precondition(
        fmt::format("the core installs snapshot {} but none is staged", meta.index()));
  }
  batch.delete_range(storage::Space::kState, "", kStateSpaceEnd);
  const std::size_t prefix_len = std::string_view(kSnapshotStagePrefix).size();
  auto it = engine_->scan(storage::Space::kMeta, kSnapshotStagePrefix, kSnapshotStageEnd);
  for (; it->valid(); it->next()) {
    batch.put(storage::Space::kState, it->key().substr(prefix_len), it->value());
  }
  HERALD_RETURN_IF_ERROR(it->status());
  batch.delete_range(storage::Space::kMeta, kSnapshotStagePrefix, kSnapshotStageEnd);
  return Status::ok_status();
}

}  // namespace herald::rsm
