#include "raft/raw_node.h"

#include <algorithm>
#include <string>

#include "raft/raft.h"

namespace herald::raft {
namespace {

bool same_hard_state(const raftpb::HardState& a, const raftpb::HardState& b) {
  return a.term() == b.term() && a.vote() == b.vote() && a.commit() == b.commit();
}

Status validate(const Config& config) {
  if (config.id == kNoNode) return Status::invalid_argument("node id must be positive");
  if (config.storage == nullptr) return Status::invalid_argument("missing log storage");
  if (config.heartbeat_ticks <= 0 || config.election_ticks <= config.heartbeat_ticks) {
    return Status::invalid_argument("need 0 < heartbeat_ticks < election_ticks");
  }
  if (config.max_msg_bytes == 0 || config.max_inflight_msgs == 0 ||
      config.max_inflight_bytes == 0 || config.max_uncommitted_bytes == 0 ||
      config.max_committed_bytes_per_ready == 0 || config.max_committed_entries_per_ready == 0) {
    return Status::invalid_argument("every bound must be positive");
  }
  return Status::ok_status();
}

}  // namespace

const char* role_name(Role role) {
  switch (role) {
    case Role::kFollower: return "follower";
    case Role::kPreCandidate: return "pre-candidate";
    case Role::kCandidate: return "candidate";
    case Role::kLeader: return "leader";
  }
  return "unknown";
}

const char* transition_name(Transition transition) {
  switch (transition) {
    case Transition::kStart: return "start";
    case Transition::kElectionTimeout: return "election timeout";
    case Transition::kCheckQuorumLost: return "check-quorum lost";
    case Transition::kHigherTerm: return "higher term";
    case Transition::kElectionWon: return "election won";
    case Transition::kElectionLost: return "election lost";
    case Transition::kLeaderHeard: return "leader heard";
    case Transition::kTransferCampaign: return "leadership transfer";
    case Transition::kRemovedFromConfig: return "removed from the configuration";
    case Transition::kForcedCampaign: return "campaign requested";
    case Transition::kRecovered: return "recovered after a restart";
  }
  return "unknown";
}

std::string describe(const TransitionReason& reason) {
  std::string out = transition_name(reason.kind);
  const std::string peer = std::to_string(reason.peer);
  const std::string ticks = std::to_string(reason.ticks);
  switch (reason.kind) {
    case Transition::kElectionTimeout:
      out += reason.peer == kNoNode
                 ? " (no leader heard for " + ticks + " ticks)"
                 : " (no message from leader " + peer + " for " + ticks + " ticks)";
      break;
    case Transition::kCheckQuorumLost:
      out += " (no contact with a quorum for " + ticks + " ticks)";
      break;
    case Transition::kHigherTerm:
    case Transition::kLeaderHeard:
    case Transition::kTransferCampaign: out += " (from node " + peer + ")"; break;
    default: break;
  }
  return out;
}

struct RawNode::Impl {
  Impl(const Config& config, const InitialState& state, Index committed, Index applied)
      : raft(config, state, committed, applied),
        max_committed_bytes_per_ready(config.max_committed_bytes_per_ready),
        max_committed_entries_per_ready(config.max_committed_entries_per_ready),
        prev_soft(raft.soft_state()),
        prev_hard(state.hard_state) {}

  Raft raft;
  std::uint64_t max_committed_bytes_per_ready;
  std::size_t max_committed_entries_per_ready;
  SoftState prev_soft;
  raftpb::HardState prev_hard;  // the last hard state handed out (or restored)
  bool awaiting_advance = false;
};

Result<std::unique_ptr<RawNode>> RawNode::create(const Config& config) {
  HERALD_RETURN_IF_ERROR(validate(config));
  HERALD_ASSIGN_OR_RETURN(InitialState state, config.storage->initial_state());
  const Index first = config.storage->first_index();
  const Index last = config.storage->last_index();
  // A snapshot-restored store implies everything up to the compaction point is committed and
  // applied (the state machine was restored from that snapshot).
  const Index committed = std::max(state.hard_state.commit(), first - 1);
  const Index applied = std::max(config.applied, first - 1);
  if (committed > last) return Status::invalid_argument("hard state commit beyond the log");
  if (applied > committed) return Status::invalid_argument("applied beyond the commit index");
  auto impl = std::make_unique<Impl>(config, state, committed, applied);
  impl->raft.check_invariants();
  return std::unique_ptr<RawNode>(new RawNode(std::move(impl)));
}

RawNode::RawNode(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RawNode::~RawNode() = default;

void RawNode::tick() {
  impl_->raft.tick();
}
Status RawNode::campaign() {
  return impl_->raft.campaign();
}
Status RawNode::propose(std::string data) {
  return impl_->raft.propose(std::move(data));
}
Status RawNode::propose_conf_change(const raftpb::ConfChange& change) {
  return impl_->raft.propose_conf_change(change);
}
raftpb::ConfState RawNode::apply_conf_change(const raftpb::ConfChange& change) {
  return impl_->raft.apply_conf_change(change);
}
Status RawNode::step(const raftpb::Message& message) {
  return impl_->raft.step(message);
}
void RawNode::read_index(std::string context) {
  impl_->raft.read_index(std::move(context));
}
void RawNode::transfer_leadership(NodeId transferee) {
  impl_->raft.transfer_leadership(transferee);
}
void RawNode::report_unreachable(NodeId id) {
  impl_->raft.report_unreachable(id);
}
void RawNode::report_snapshot(NodeId id, bool success) {
  impl_->raft.report_snapshot(id, success);
}
void RawNode::end_recovery(const RecoveryEvidence& evidence) {
  impl_->raft.end_recovery(evidence);
}
bool RawNode::recovering() const {
  return impl_->raft.recovering();
}
void RawNode::forget_match(NodeId peer) {
  impl_->raft.forget_match(peer);
}

bool RawNode::has_ready() const {
  const Impl& s = *impl_;
  if (s.awaiting_advance) return false;
  const RaftLog& log = s.raft.log();
  return !(s.raft.soft_state() == s.prev_soft) ||
         !same_hard_state(s.raft.hard_state(), s.prev_hard) || log.unstable_snapshot() ||
         !log.unstable_entries().empty() || log.has_next_committed_entries() || s.raft.has_output();
}

Ready RawNode::ready() {
  Impl& s = *impl_;
  HERALD_ASSERT(!s.awaiting_advance, "ready() called before advance() of the previous Ready");
  Ready rd;
  const SoftState soft = s.raft.soft_state();
  if (!(soft == s.prev_soft)) rd.soft_state = s.prev_soft = soft;
  const raftpb::HardState hard = s.raft.hard_state();
  if (!same_hard_state(hard, s.prev_hard)) {
    rd.must_sync = hard.term() != s.prev_hard.term() || hard.vote() != s.prev_hard.vote();
    rd.hard_state = s.prev_hard = hard;
  }
  const RaftLog& log = s.raft.log();
  rd.snapshot = log.unstable_snapshot();
  rd.entries = log.unstable_entries();
  rd.committed_entries = log.next_committed_entries(s.max_committed_bytes_per_ready);
  if (rd.committed_entries.size() > s.max_committed_entries_per_ready) {
    rd.committed_entries.resize(s.max_committed_entries_per_ready);
  }
  rd.messages = s.raft.take_messages();
  rd.read_states = s.raft.take_read_states();
  rd.must_sync = rd.must_sync || rd.snapshot.has_value() || !rd.entries.empty();
  s.awaiting_advance = true;
  return rd;
}

void RawNode::advance(const Ready& rd) {
  Impl& s = *impl_;
  HERALD_ASSERT(s.awaiting_advance, "advance() without an outstanding Ready");
  s.awaiting_advance = false;
  s.raft.on_persisted(rd);
  s.raft.on_applied(rd.committed_entries);
}

raftpb::Message RawNode::liveness_heartbeat(NodeId from, NodeId to, Term term) {
  raftpb::Message m;
  m.set_type(raftpb::MSG_HEARTBEAT);
  m.set_from(from);
  m.set_to(to);
  m.set_term(term);
  m.set_commit(0);
  return m;
}

std::vector<raftpb::Message> RawNode::heartbeats_now() {
  return impl_->raft.heartbeats_now();
}

NodeStatus RawNode::status() const {
  return impl_->raft.status();
}

NodeId RawNode::leader() const {
  return impl_->raft.soft_state().leader;
}

const Status& RawNode::storage_fault() const {
  return impl_->raft.log().fault();
}

void RawNode::check_invariants() const {
  impl_->raft.check_invariants();
}

}  // namespace herald::raft
