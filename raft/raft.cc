#include "raft/raft.h"

#include <algorithm>
#include <iterator>
#include <utility>

namespace herald::raft {
namespace {

using raftpb::Entry;
using raftpb::Message;
using raftpb::MessageType;

// Requests a follower relays for its local caller; they carry no term (like etcd's local
// messages) so a stale one can never disturb the receiver's term.
bool is_termless(MessageType type) {
  return type == raftpb::MSG_PROP || type == raftpb::MSG_READ_INDEX ||
         type == raftpb::MSG_TRANSFER_LEADER;
}

bool is_vote_family(MessageType type) {
  return type == raftpb::MSG_VOTE || type == raftpb::MSG_VOTE_RESP ||
         type == raftpb::MSG_PRE_VOTE || type == raftpb::MSG_PRE_VOTE_RESP;
}

bool carries_leader(MessageType type) {
  return type == raftpb::MSG_APP || type == raftpb::MSG_HEARTBEAT || type == raftpb::MSG_SNAP;
}

std::uint64_t payload_bytes(const std::vector<Entry>& entries) {
  std::uint64_t total = 0;
  for (const Entry& e : entries) total += e.data().size();
  return total;
}

std::uint64_t seed_for(const Config& config) {
  // Mix the node id in so that nodes given the same seed still draw different timeouts.
  std::uint64_t state = config.seed ^ (config.id * 0x9E3779B97F4A7C15ULL);
  return splitmix64(state);
}

Message make_message(MessageType type, NodeId to) {
  Message m;
  m.set_type(type);
  m.set_to(to);
  return m;
}

}  // namespace

Raft::Raft(const Config& config, const InitialState& state, Index committed, Index applied)
    : config_(config),
      id_(config.id),
      log_(config.storage, committed, applied),
      tracker_(config.max_inflight_msgs, config.max_inflight_bytes),
      rng_(seed_for(config)),
      recovering_(config.recovering) {
  tracker_.set_config(state.conf_state, log_.last_index() + 1);
  become_follower(state.hard_state.term(), kNoNode);
  vote_ = state.hard_state.vote();
  HERALD_ASSERT(term_ == state.hard_state.term(), "restored term mismatch");
}

raftpb::HardState Raft::hard_state() const {
  raftpb::HardState hs;
  hs.set_term(term_);
  hs.set_vote(vote_);
  hs.set_commit(log_.committed());
  return hs;
}

std::vector<Message> Raft::take_messages() {
  return std::exchange(msgs_, {});
}

std::vector<ReadState> Raft::take_read_states() {
  return std::exchange(read_states_, {});
}

// ---------------------------------------------------------------------------------------------
// Role transitions

void Raft::reset(Term term) {
  if (term_ != term) {
    HERALD_ASSERT(term > term_, "term went backwards");
    term_ = term;
    vote_ = kNoNode;
  }
  lead_ = kNoNode;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  randomized_election_timeout_ =
      config_.election_ticks +
      static_cast<int>(rng_.uniform(static_cast<std::uint64_t>(config_.election_ticks)));
  abort_transfer();
  tracker_.reset_votes();
  tracker_.reset_progress(log_.last_index() + 1);
  pending_conf_index_ = 0;
  uncommitted_bytes_ = 0;
  read_only_.clear();
  waiting_reads_.clear();
}

void Raft::become_follower(Term term, NodeId leader) {
  reset(term);
  lead_ = leader;
  role_ = Role::kFollower;
}

void Raft::become_pre_candidate() {
  HERALD_ASSERT(role_ != Role::kLeader, "leader cannot become pre-candidate");
  // Term and vote stay untouched: a pre-election must not disturb anyone (thesis §9.6).
  tracker_.reset_votes();
  lead_ = kNoNode;
  role_ = Role::kPreCandidate;
}

void Raft::become_candidate() {
  HERALD_ASSERT(role_ != Role::kLeader, "leader cannot become candidate");
  reset(term_ + 1);
  vote_ = id_;
  role_ = Role::kCandidate;
}

void Raft::become_leader() {
  HERALD_ASSERT(role_ == Role::kCandidate, "only a candidate becomes leader");
  note(Transition::kElectionWon);
  reset(term_);
  lead_ = id_;
  role_ = Role::kLeader;
  Progress& self = tracker_.at(id_);
  self.match = log_.durable_last_index();
  self.become_replicate();
  self.next = log_.last_index() + 1;
  // Any config change in the log may be unapplied: wait for it before accepting another.
  pending_conf_index_ = log_.last_index();
  // The empty entry commits the previous terms' entries (Raft §5.4.2, §8).
  append_entries({Entry()});
}

// ---------------------------------------------------------------------------------------------
// Time

void Raft::tick() {
  if (role_ == Role::kLeader) {
    tick_heartbeat();
  } else {
    tick_election();
  }
}

void Raft::tick_election() {
  ++election_elapsed_;
  if (!promotable() || election_elapsed_ < randomized_election_timeout_) return;
  note(Transition::kElectionTimeout, lead_, election_elapsed_);
  election_elapsed_ = 0;
  // A refusal (pending config change or snapshot) is retried at the next timeout.
  hup(config_.pre_vote ? CampaignKind::kPreElection : CampaignKind::kElection).ignore();
}

void Raft::tick_heartbeat() {
  HERALD_ASSERT(role_ == Role::kLeader, "heartbeat tick on a non-leader");
  ++heartbeat_elapsed_;
  ++election_elapsed_;
  if (election_elapsed_ >= config_.election_ticks) {
    election_elapsed_ = 0;
    if (config_.check_quorum) {
      if (!tracker_.quorum_active(id_)) {
        note(Transition::kCheckQuorumLost, kNoNode, config_.election_ticks);
        become_follower(term_, kNoNode);  // §6.2: no quorum contact within a timeout
        return;
      }
      tracker_.reset_recent_active(id_);
    }
    abort_transfer();  // a transfer that did not finish within an election timeout
  }
  if (heartbeat_elapsed_ >= config_.heartbeat_ticks) {
    heartbeat_elapsed_ = 0;
    bcast_heartbeat(read_only_.last_context());
  }
}

// ---------------------------------------------------------------------------------------------
// Elections

bool Raft::promotable() const {
  // A campaign votes for itself at term_ + 1: never in a term it may have voted in and forgotten.
  return tracker_.is_voter(id_) && !log_.unstable_snapshot().has_value() && above_vote_floor() &&
         !recovering_ && term_ + 1 >= vote_term_floor_ &&
         covers_recovery_log(log_.last_term(), log_.last_index());
}

bool Raft::covers_recovery_log(Term last_term, Index last_index) const {
  return last_term > recovery_last_term_ ||
         (last_term == recovery_last_term_ && last_index >= recovery_last_index_);
}

bool Raft::above_vote_floor() const {
  return log_.last_index() >= config_.vote_floor;
}

bool Raft::has_unapplied_conf_change() const {
  if (!log_.has_next_committed_entries()) return false;
  Result<std::vector<Entry>> entries = log_.slice(std::max(log_.applied() + 1, log_.first_index()),
                                                  log_.committed() + 1, kNoByteLimit);
  if (!entries.ok()) return true;  // unreadable (a storage fault): assume one, do not campaign
  return std::any_of(entries->begin(), entries->end(),
                     [](const Entry& e) { return e.type() == raftpb::ENTRY_CONF_CHANGE; });
}

Status Raft::hup(CampaignKind kind) {
  if (role_ == Role::kLeader) return Status::ok_status();
  if (!promotable()) {
    return Status::failed_precondition("not a voter (or a snapshot is pending)");
  }
  // Campaigning under a stale membership could form a quorum that misses the committed one.
  if (has_unapplied_conf_change()) {
    return Status::failed_precondition("committed config changes are not applied yet");
  }
  start_campaign(kind);
  return Status::ok_status();
}

Status Raft::campaign() {
  note(Transition::kForcedCampaign);
  return hup(config_.pre_vote ? CampaignKind::kPreElection : CampaignKind::kElection);
}

void Raft::start_campaign(CampaignKind kind) {
  const bool pre = kind == CampaignKind::kPreElection;
  if (pre) {
    become_pre_candidate();
  } else {
    become_candidate();
  }
  // A pre-vote asks "would you vote for me at the next term?" without incrementing ours.
  const Term vote_term = pre ? term_ + 1 : term_;
  tracker_.record_vote(id_, true);
  if (tracker_.tally() == VoteResult::kWon) {  // a single voter
    if (pre) {
      start_campaign(CampaignKind::kElection);
    } else {
      become_leader();
      bcast_append();
    }
    return;
  }
  for (NodeId voter : tracker_.voters()) {
    if (voter == id_) continue;
    Message m = make_message(pre ? raftpb::MSG_PRE_VOTE : raftpb::MSG_VOTE, voter);
    m.set_term(vote_term);
    m.set_index(log_.last_index());
    m.set_log_term(log_.last_term());
    if (kind == CampaignKind::kTransfer) m.set_context(std::string(kTransferCampaignContext));
    send(std::move(m));
  }
}

void Raft::on_vote_response(const Message& m) {
  const MessageType expected =
      role_ == Role::kPreCandidate ? raftpb::MSG_PRE_VOTE_RESP : raftpb::MSG_VOTE_RESP;
  if (m.type() != expected) return;
  tracker_.record_vote(m.from(), !m.reject());
  switch (tracker_.tally()) {
    case VoteResult::kWon:
      if (role_ == Role::kPreCandidate) {
        start_campaign(CampaignKind::kElection);
      } else {
        become_leader();
        bcast_append();
      }
      break;
    case VoteResult::kLost:
      note(Transition::kElectionLost);
      become_follower(term_, kNoNode);
      break;
    case VoteResult::kPending: break;
  }
}

void Raft::handle_vote_request(const Message& m) {
  const bool pre = m.type() == raftpb::MSG_PRE_VOTE;
  // Repeat a vote already cast, vote if free and leaderless, or grant a pre-vote for a future
  // term. Learners answer too: they may have been promoted without knowing it yet.
  const bool can_vote =
      vote_ == m.from() || (vote_ == kNoNode && lead_ == kNoNode) || (pre && m.term() > term_);
  Message resp = make_message(pre ? raftpb::MSG_PRE_VOTE_RESP : raftpb::MSG_VOTE_RESP, m.from());
  // After a restart on a disk that may lie, no vote until recovery ended, never in a term it may
  // have voted in before, and only for a log holding what it may have acknowledged and lost.
  const bool recovered =
      !recovering_ && m.term() >= vote_term_floor_ && covers_recovery_log(m.log_term(), m.index());
  if (can_vote && recovered && above_vote_floor() && log_.is_up_to_date(m.index(), m.log_term())) {
    resp.set_term(m.term());
    if (!pre) {
      election_elapsed_ = 0;
      vote_ = m.from();  // persisted by the same Ready that carries the response
    }
  } else {
    // A node still at term 0 (a recovering one that restarted before any election) has no term
    // to reject with; silence is a rejection too.
    if (term_ == 0) return;
    resp.set_term(term_);
    resp.set_reject(true);
  }
  send(std::move(resp));
}

// ---------------------------------------------------------------------------------------------
// Step: validation and term rules

Status Raft::step(const Message& m) {
  if (m.to() != id_) return Status::invalid_argument("message addressed to another node");
  if (m.from() == kNoNode || m.from() == id_) {
    return Status::invalid_argument("message without a valid sender");
  }
  if (m.type() == raftpb::MSG_NONE || !raftpb::MessageType_IsValid(m.type())) {
    return Status::invalid_argument("message of an unknown type");
  }
  if (!is_termless(m.type())) {
    if (m.term() == 0) return Status::invalid_argument("message without a term");
    if (m.term() > term_ && !on_higher_term(m)) return Status::ok_status();
    if (m.term() < term_) {
      on_lower_term(m);
      return Status::ok_status();
    }
  }
  if (m.type() == raftpb::MSG_VOTE || m.type() == raftpb::MSG_PRE_VOTE) {
    handle_vote_request(m);
    return Status::ok_status();
  }
  switch (role_) {
    case Role::kFollower: step_follower(m); break;
    case Role::kPreCandidate:
    case Role::kCandidate: step_candidate(m); break;
    case Role::kLeader: step_leader(m); break;
  }
  return Status::ok_status();
}

bool Raft::on_higher_term(const Message& m) {
  if (m.type() == raftpb::MSG_VOTE || m.type() == raftpb::MSG_PRE_VOTE) {
    // Leader stickiness: while we hear from a live leader, a higher-term (pre-)vote comes from
    // a disruptive node and is ignored — unless it is a leadership transfer.
    const bool forced = m.context() == kTransferCampaignContext;
    const bool in_lease =
        config_.check_quorum && lead_ != kNoNode && election_elapsed_ < config_.election_ticks;
    if (!forced && in_lease) return false;
  }
  if (m.type() == raftpb::MSG_PRE_VOTE) return true;  // pre-votes never change our term
  // A granted pre-vote carries the term we would campaign at; the real vote will raise it.
  if (m.type() == raftpb::MSG_PRE_VOTE_RESP && !m.reject()) return true;
  note(Transition::kHigherTerm, m.from());
  become_follower(m.term(), carries_leader(m.type()) ? m.from() : kNoNode);
  HERALD_ASSERT(term_ == m.term(), "stepping down did not adopt the higher term");
  return true;
}

void Raft::on_lower_term(const Message& m) {
  if ((config_.check_quorum || config_.pre_vote) &&
      (m.type() == raftpb::MSG_HEARTBEAT || m.type() == raftpb::MSG_APP)) {
    // Tell a stale leader about our term. With pre-vote or check-quorum a node partitioned at a
    // higher term could otherwise never learn of the newer leader nor make it step down.
    send(make_message(raftpb::MSG_APP_RESP, m.from()));
  } else if (m.type() == raftpb::MSG_PRE_VOTE) {
    Message resp = make_message(raftpb::MSG_PRE_VOTE_RESP, m.from());
    resp.set_term(term_);
    resp.set_reject(true);
    send(std::move(resp));
  }
  // Everything else from an older term is ignored.
}

// ---------------------------------------------------------------------------------------------
// Role step functions

void Raft::step_follower(const Message& m) {
  switch (m.type()) {
    case raftpb::MSG_APP:
    case raftpb::MSG_HEARTBEAT:
    case raftpb::MSG_SNAP:
      election_elapsed_ = 0;
      if (lead_ != m.from()) note(Transition::kLeaderHeard, m.from());
      lead_ = m.from();
      if (m.type() == raftpb::MSG_APP) handle_append(m);
      if (m.type() == raftpb::MSG_HEARTBEAT) handle_heartbeat(m);
      if (m.type() == raftpb::MSG_SNAP) handle_snapshot(m);
      break;
    case raftpb::MSG_TRANSFER_LEADER:
      if (lead_ != kNoNode) {
        Message forward = m;
        forward.set_to(lead_);
        send(std::move(forward));
      }
      break;
    case raftpb::MSG_TIMEOUT_NOW:
      // The leader hands over: campaign at once, skipping pre-vote (thesis §3.10).
      note(Transition::kTransferCampaign, m.from());
      hup(CampaignKind::kTransfer).ignore();  // a learner or a lagging applier stays put
      break;
    case raftpb::MSG_READ_INDEX_RESP: read_states_.push_back({m.index(), m.context()}); break;
    default: break;  // MSG_PROP from a peer is not relayed: proposals go straight to the leader.
  }
}

void Raft::step_candidate(const Message& m) {
  switch (m.type()) {
    case raftpb::MSG_APP:
    case raftpb::MSG_HEARTBEAT:
    case raftpb::MSG_SNAP:
      // A leader exists at our term (a pre-candidate's term is still the old one).
      note(Transition::kLeaderHeard, m.from());
      become_follower(m.term(), m.from());
      step_follower(m);
      break;
    case raftpb::MSG_VOTE_RESP:
    case raftpb::MSG_PRE_VOTE_RESP: on_vote_response(m); break;
    case raftpb::MSG_READ_INDEX_RESP:
      // A pre-candidate is still in the term of the leader that answered: the read point that
      // leader confirmed stays valid whatever our role now (thesis §6.4).
      read_states_.push_back({m.index(), m.context()});
      break;
    default: break;
  }
}

void Raft::step_leader(const Message& m) {
  switch (m.type()) {
    case raftpb::MSG_PROP:
      if (m.entries_size() > 0) {
        // A refused forwarded proposal is dropped; the proposer times out and retries.
        propose_entries({m.entries().begin(), m.entries().end()}).ignore();
      }
      break;
    case raftpb::MSG_APP_RESP: handle_append_response(m); break;
    case raftpb::MSG_HEARTBEAT_RESP: handle_heartbeat_response(m); break;
    case raftpb::MSG_TRANSFER_LEADER: start_transfer(m.transferee()); break;
    case raftpb::MSG_READ_INDEX: leader_read_index(m.from(), m.context()); break;
    default: break;
  }
}

// ---------------------------------------------------------------------------------------------
// Follower side of replication

void Raft::handle_append(const Message& m) {
  Message resp = make_message(raftpb::MSG_APP_RESP, m.from());
  if (m.index() < log_.committed()) {
    resp.set_index(log_.committed());  // already have (and committed) everything up to here
    send_ack(std::move(resp));
    return;
  }
  const std::vector<Entry> entries(m.entries().begin(), m.entries().end());
  if (std::optional<Index> last_new =
          log_.maybe_append(m.index(), m.log_term(), m.commit(), entries)) {
    resp.set_index(*last_new);
    send_ack(std::move(resp));
    return;
  }
  // Fast back-off: point the leader at the last entry whose term is <= the probe's term, so it
  // skips our whole conflicting term in one round trip.
  const Index hint = std::min(m.index(), log_.last_index());
  const auto [hint_index, hint_term] = log_.find_conflict_by_term(hint, m.log_term());
  resp.set_index(m.index());
  resp.set_reject(true);
  resp.set_reject_hint(hint_index);
  resp.set_hint_term(hint_term);
  resp.set_log_lost(!above_vote_floor());
  send_ack(std::move(resp));
}

void Raft::handle_heartbeat(const Message& m) {
  // The leader never sends more than it knows we hold. A commit beyond our log means our disk
  // lost synced entries or the sender is faulty: not something a peer's message may stop this
  // replica for. Nothing is committed on its strength; appends repair the log.
  if (m.commit() <= log_.last_index()) log_.commit_to(m.commit());
  Message resp = make_message(raftpb::MSG_HEARTBEAT_RESP, m.from());
  resp.set_context(m.context());
  send_ack(std::move(resp));
}

void Raft::handle_snapshot(const Message& m) {
  Message resp = make_message(raftpb::MSG_APP_RESP, m.from());
  resp.set_index(restore(m.snapshot()) ? log_.last_index() : log_.committed());
  send_ack(std::move(resp));
}

bool Raft::restore(const raftpb::SnapshotMetadata& snapshot) {
  HERALD_ASSERT(role_ == Role::kFollower, "only a follower restores a snapshot");
  if (snapshot.index() <= log_.committed()) return false;
  // The snapshot's membership may predate our own addition (a joining node's first snapshot);
  // that is fine: the leader tracks us, and we are not promotable until we apply our addition.
  const raftpb::ConfState& cs = snapshot.conf_state();
  if (log_.match_term(snapshot.index(), snapshot.term())) {
    log_.commit_to(snapshot.index());  // we already have the entries: just fast-forward
    return false;
  }
  log_.restore(snapshot);
  tracker_.set_config(cs, log_.last_index() + 1);
  HERALD_ASSERT(log_.last_index() == snapshot.index(), "restore left entries behind");
  return true;
}

// ---------------------------------------------------------------------------------------------
// Proposals

Status Raft::propose(std::string data) {
  Entry entry;
  entry.set_data(std::move(data));
  return propose_entry(std::move(entry));
}

Status Raft::propose_conf_change(const raftpb::ConfChange& change) {
  if (change.node_id() == kNoNode) return Status::invalid_argument("config change without node");
  Entry entry;
  entry.set_type(raftpb::ENTRY_CONF_CHANGE);
  entry.set_data(change.SerializeAsString());
  return propose_entry(std::move(entry));
}

Status Raft::propose_entry(Entry entry) {
  if (role_ == Role::kLeader) return propose_entries({std::move(entry)});
  if (role_ == Role::kFollower && lead_ != kNoNode) {
    Message m = make_message(raftpb::MSG_PROP, lead_);
    *m.add_entries() = std::move(entry);
    send(std::move(m));
    return Status::ok_status();
  }
  return Status::not_leader("no known leader");
}

Status Raft::check_conf_change(const Entry& entry, Index index) const {
  if (pending_conf_index_ > log_.applied()) {
    return Status::failed_precondition("an earlier config change is not applied yet");
  }
  raftpb::ConfChange change;
  if (!change.ParseFromString(entry.data())) {
    return Status::invalid_argument("undecodable config change");
  }
  const bool removes_last_voter = change.type() != raftpb::CONF_CHANGE_ADD_VOTER &&
                                  tracker_.voters().size() == 1 &&
                                  tracker_.is_voter(change.node_id());
  if (removes_last_voter) return Status::invalid_argument("would remove the last voter");
  HERALD_ASSERT(index > log_.last_index(), "config change index inside the log");
  return Status::ok_status();
}

Status Raft::propose_entries(std::vector<Entry> entries) {
  HERALD_ASSERT(role_ == Role::kLeader, "only the leader appends proposals");
  if (lead_transferee_ != kNoNode) {
    return Status::unavailable("leadership transfer in progress");
  }
  const std::uint64_t bytes = payload_bytes(entries);
  if (uncommitted_bytes_ > 0 && bytes > 0 &&
      uncommitted_bytes_ + bytes > config_.max_uncommitted_bytes) {
    return Status::resource_exhausted("too many uncommitted bytes at the leader");
  }
  for (std::size_t k = 0; k < entries.size(); ++k) {
    if (entries[k].type() != raftpb::ENTRY_CONF_CHANGE) continue;
    const Index index = log_.last_index() + 1 + k;
    HERALD_RETURN_IF_ERROR(check_conf_change(entries[k], index));
    pending_conf_index_ = index;  // one change at a time: the next waits until this applies
  }
  append_entries(std::move(entries));
  uncommitted_bytes_ += bytes;
  bcast_append();
  return Status::ok_status();
}

void Raft::append_entries(std::vector<Entry> entries) {
  HERALD_ASSERT(role_ == Role::kLeader, "only the leader appends its own entries");
  const Index last = log_.last_index();
  for (std::size_t k = 0; k < entries.size(); ++k) {
    entries[k].set_term(term_);
    entries[k].set_index(last + 1 + k);
  }
  const Index new_last = log_.append(entries);
  // The leader's own match moves only when advance() reports the entries durable.
  tracker_.at(id_).next = new_last + 1;
  HERALD_ASSERT(new_last == last + entries.size(), "leader append lost entries");
}

// ---------------------------------------------------------------------------------------------
// Leader side of replication

bool Raft::maybe_send_append(NodeId to, bool send_if_empty) {
  Progress& pr = tracker_.at(to);
  if (pr.paused()) return false;
  const Index prev = pr.next - 1;
  // The initial membership is not in the log: every initial member starts with it as its state
  // at index 0. A peer that needs the log from its first entry may not hold that state (a member
  // added later starts empty), so once there is a snapshot it starts from one, which carries the
  // membership (docs/raft.md, "Membership changes").
  if (prev == 0 && pr.match == 0 && config_.storage->snapshot_metadata().index() > 0) {
    return send_snapshot(to, pr);
  }
  Result<Term> prev_term = log_.term(prev);
  if (!prev_term.ok()) {
    const Code code = prev_term.status().code();
    HERALD_ASSERT(code != Code::kUnavailable, "next index beyond our log");
    if (code != Code::kCompacted) return false;  // a storage fault: the log reports it
    return send_snapshot(to, pr);
  }
  std::uint64_t budget = config_.max_msg_bytes;
  if (pr.state == ProgressState::kReplicate) {
    budget = std::min(budget, pr.inflights.bytes_budget());
  }
  std::vector<Entry> entries;
  if (pr.next <= log_.last_index()) {
    Result<std::vector<Entry>> read = log_.slice(pr.next, log_.last_index() + 1, budget);
    if (!read.ok()) {
      if (read.status().code() != Code::kCompacted) return false;  // a storage fault
      return send_snapshot(to, pr);                                // compacted underneath us
    }
    entries = std::move(read).value();
  }
  if (entries.empty() && !send_if_empty) return false;
  Message m = make_message(raftpb::MSG_APP, to);
  m.set_index(prev);
  m.set_log_term(*prev_term);
  m.set_commit(log_.committed());
  std::uint64_t bytes = 0;
  for (Entry& e : entries) {
    bytes += entry_bytes(e);
    *m.add_entries() = std::move(e);
  }
  pr.sent_entries(entries.size(), prev + entries.size(), bytes);
  send(std::move(m));
  return true;
}

bool Raft::send_snapshot(NodeId to, Progress& pr) {
  // Streaming a snapshot is expensive: not to a peer that has not answered recently.
  if (!pr.recent_active) return false;
  raftpb::SnapshotMetadata meta = config_.storage->snapshot_metadata();
  HERALD_ASSERT(meta.index() > 0 && meta.index() + 1 >= log_.first_index(),
                "storage snapshot does not cover its compaction point");
  Message m = make_message(raftpb::MSG_SNAP, to);
  *m.mutable_snapshot() = meta;
  pr.become_snapshot(meta.index());
  send(std::move(m));
  return true;
}

void Raft::bcast_append() {
  for (const auto& [id, pr] : tracker_.progress()) {
    if (id != id_) maybe_send_append(id, true);
  }
}

std::vector<Message> Raft::heartbeats_now() {
  std::vector<Message> out;
  if (role_ != Role::kLeader) return out;
  heartbeat_elapsed_ = 0;
  const std::size_t queued = msgs_.size();
  bcast_heartbeat(read_only_.last_context());
  out.assign(std::make_move_iterator(msgs_.begin() + static_cast<std::ptrdiff_t>(queued)),
             std::make_move_iterator(msgs_.end()));
  msgs_.resize(queued);
  return out;
}

void Raft::bcast_heartbeat(const std::string& context) {
  for (const auto& [id, pr] : tracker_.progress()) {
    if (id == id_) continue;
    Message m = make_message(raftpb::MSG_HEARTBEAT, id);
    // Never more than the follower is known to hold: it may lag behind our commit.
    m.set_commit(std::min(pr.match, log_.committed()));
    m.set_context(context);
    send(std::move(m));
  }
}

void Raft::handle_append_response(const Message& m) {
  Progress* pr = tracker_.find(m.from());
  if (pr == nullptr) return;
  pr->recent_active = true;
  if (m.reject()) {
    handle_append_rejection(m, *pr);
    return;
  }
  const bool was_paused = pr->paused();
  const bool probe_matched = pr->match == m.index() && pr->state == ProgressState::kProbe;
  if (!pr->maybe_update(m.index()) && !probe_matched) return;
  if (pr->state == ProgressState::kProbe) {
    pr->become_replicate();
  } else if (pr->state == ProgressState::kSnapshot && pr->match + 1 >= log_.first_index()) {
    pr->become_probe();  // caught up from the snapshot: stream from the log again
    pr->become_replicate();
  } else if (pr->state == ProgressState::kReplicate) {
    pr->inflights.free_le(m.index());
  }
  if (maybe_commit()) {
    bcast_append();
  } else if (was_paused) {
    maybe_send_append(m.from(), true);  // it missed the commit index while paused
  }
  while (maybe_send_append(m.from(), false)) {
  }
  if (m.from() == lead_transferee_ && pr->match == log_.last_index()) {
    send_timeout_now(m.from());
  }
}

void Raft::handle_append_rejection(const Message& m, Progress& pr) {
  Index probe_hint = m.reject_hint();
  if (m.hint_term() > 0) {
    probe_hint = log_.find_conflict_by_term(m.reject_hint(), m.hint_term()).first;
  }
  if (m.log_lost() && m.reject_hint() < pr.match) {
    // The follower was rebuilt empty and no longer holds what it acknowledged. Lowering match
    // only delays commits (the commit index never moves back); a stale such rejection is
    // repaired by the next probe's answer.
    pr.regress_to(m.reject_hint());
    maybe_send_append(m.from(), true);
    return;
  }
  if (!pr.maybe_decr_to(m.index(), probe_hint)) return;  // stale rejection
  if (pr.state == ProgressState::kReplicate) pr.become_probe();
  maybe_send_append(m.from(), true);
}

void Raft::handle_heartbeat_response(const Message& m) {
  Progress* pr = tracker_.find(m.from());
  if (pr == nullptr) return;
  pr->recent_active = true;
  pr->probe_sent = false;
  // The oldest MSG_APP may be lost: let one more through so a gap gets detected and repaired.
  if (pr->state == ProgressState::kReplicate && pr->inflights.full()) {
    pr->inflights.free_first_one();
  }
  if (pr->match < log_.last_index()) maybe_send_append(m.from(), true);
  if (m.context().empty()) return;
  const std::set<NodeId>* acks = read_only_.ack(m.context(), m.from());
  if (acks == nullptr || !tracker_.is_quorum(*acks)) return;
  for (ReadRequest& request : read_only_.release_through(m.context())) {
    respond_read(request.from, request.index, std::move(request.context));
  }
}

bool Raft::maybe_commit() {
  // Only a current-term entry is committed by counting replicas (Raft §5.4.2). The planted bug
  // (a test-only switch, Config::planted_commit_without_quorum) counts the leader alone.
  const Index replicated =
      config_.planted_commit_without_quorum ? tracker_.at(id_).match : tracker_.quorum_match();
  if (!log_.maybe_commit(replicated, term_)) return false;
  release_waiting_reads();
  return true;
}

// ---------------------------------------------------------------------------------------------
// Membership

raftpb::ConfState Raft::apply_conf_change(const raftpb::ConfChange& change) {
  raftpb::ConfState cs = tracker_.conf_state();
  const NodeId node = change.node_id();
  auto drop = [node](google::protobuf::RepeatedField<std::uint64_t>* ids) {
    ids->erase(std::remove(ids->begin(), ids->end(), node), ids->end());
  };
  drop(cs.mutable_voters());
  drop(cs.mutable_learners());
  switch (change.type()) {
    case raftpb::CONF_CHANGE_ADD_VOTER: cs.add_voters(node); break;
    case raftpb::CONF_CHANGE_ADD_LEARNER: cs.add_learners(node); break;
    default: break;  // CONF_CHANGE_REMOVE_NODE
  }
  tracker_.set_config(cs, log_.last_index() + 1);
  on_config_changed();
  return tracker_.conf_state();
}

void Raft::on_config_changed() {
  if (role_ != Role::kLeader) return;
  if (!tracker_.is_voter(id_)) {
    // Removed (or demoted): pass on the latest commit index, then step down (thesis §4.2.2).
    bcast_append();
    note(Transition::kRemovedFromConfig);
    become_follower(term_, kNoNode);
    return;
  }
  // The quorum changed: commitment may advance; new members start probing.
  if (maybe_commit()) {
    bcast_append();
  } else {
    for (const auto& [id, pr] : tracker_.progress()) {
      if (id != id_) maybe_send_append(id, false);
    }
  }
  if (lead_transferee_ != kNoNode && !tracker_.is_voter(lead_transferee_)) abort_transfer();
}

// ---------------------------------------------------------------------------------------------
// ReadIndex (thesis §6.4)

bool Raft::committed_in_current_term() const {
  return log_.term_or_zero(log_.committed()) == term_;
}

void Raft::read_index(std::string context) {
  if (role_ == Role::kLeader) {
    leader_read_index(id_, std::move(context));
  } else if (lead_ != kNoNode) {
    Message m = make_message(raftpb::MSG_READ_INDEX, lead_);
    m.set_context(std::move(context));
    send(std::move(m));
  }
  // No known leader: dropped; the caller times the read out.
}

void Raft::leader_read_index(NodeId from, std::string context) {
  HERALD_ASSERT(role_ == Role::kLeader, "read index served by a non-leader");
  if (!committed_in_current_term()) {
    // Until our no-op commits we do not know the latest committed index.
    if (waiting_reads_.size() < kMaxPendingReadRequests) {
      waiting_reads_.push_back({from, std::move(context)});
    }
    return;
  }
  if (tracker_.voters().size() == 1) {
    respond_read(from, log_.committed(), std::move(context));
    return;
  }
  if (read_only_.size() >= kMaxPendingReadRequests) return;
  const std::string heartbeat_context =
      read_only_.add(log_.committed(), from, std::move(context), id_);
  bcast_heartbeat(heartbeat_context);
}

void Raft::respond_read(NodeId to, Index index, std::string context) {
  if (to == id_) {
    read_states_.push_back({index, std::move(context)});
    return;
  }
  Message m = make_message(raftpb::MSG_READ_INDEX_RESP, to);
  m.set_index(index);
  m.set_context(std::move(context));
  send(std::move(m));
}

void Raft::release_waiting_reads() {
  if (waiting_reads_.empty() || !committed_in_current_term()) return;
  std::deque<WaitingRead> waiting = std::exchange(waiting_reads_, {});
  for (WaitingRead& read : waiting) leader_read_index(read.from, std::move(read.context));
}

// ---------------------------------------------------------------------------------------------
// Leadership transfer (thesis §3.10)

void Raft::transfer_leadership(NodeId transferee) {
  if (role_ == Role::kLeader) {
    start_transfer(transferee);
  } else if (lead_ != kNoNode) {
    Message m = make_message(raftpb::MSG_TRANSFER_LEADER, lead_);
    m.set_transferee(transferee);
    send(std::move(m));
  }
}

void Raft::start_transfer(NodeId transferee) {
  HERALD_ASSERT(role_ == Role::kLeader, "only a leader transfers leadership");
  if (!tracker_.is_voter(transferee)) return;  // learners and strangers cannot lead
  if (lead_transferee_ == transferee) return;  // already under way
  abort_transfer();
  if (transferee == id_) return;  // already the leader
  election_elapsed_ = 0;          // the transfer is aborted after one election timeout
  lead_transferee_ = transferee;
  if (tracker_.at(transferee).match == log_.last_index()) {
    send_timeout_now(transferee);
  } else {
    maybe_send_append(transferee, true);
  }
}

void Raft::send_timeout_now(NodeId to) {
  HERALD_ASSERT(tracker_.at(to).match == log_.last_index(), "transferee is not up to date");
  send(make_message(raftpb::MSG_TIMEOUT_NOW, to));
}

// ---------------------------------------------------------------------------------------------
// Caller reports

void Raft::report_unreachable(NodeId id) {
  if (role_ != Role::kLeader) return;
  Progress* pr = tracker_.find(id);
  if (pr != nullptr && pr->state == ProgressState::kReplicate) pr->become_probe();
}

void Raft::end_recovery(const RecoveryEvidence& evidence) {
  if (!recovering_) return;
  recovering_ = false;
  if (evidence.max_term > term_) {
    note(Transition::kRecovered);
    become_follower(evidence.max_term, kNoNode);
  }
  vote_term_floor_ = evidence.max_term + 1;
  recovery_last_term_ = evidence.last_term;
  recovery_last_index_ = evidence.last_index;
}

void Raft::forget_match(NodeId peer) {
  if (role_ != Role::kLeader || peer == id_) return;
  Progress* pr = tracker_.find(peer);
  if (pr != nullptr) pr->forget_match();
}

void Raft::send_ack(Message m) {
  if (!recovering_) send(std::move(m));
}

void Raft::report_snapshot(NodeId id, bool success) {
  if (role_ != Role::kLeader) return;
  Progress* pr = tracker_.find(id);
  if (pr == nullptr || pr->state != ProgressState::kSnapshot) return;
  if (!success) pr->pending_snapshot = 0;  // probe from what is known to match
  pr->become_probe();
  // Wait for the follower's answer (or a heartbeat response) before probing.
  pr->probe_sent = true;
}

void Raft::on_persisted(const Ready& rd) {
  if (rd.snapshot) log_.stable_snap_to(rd.snapshot->index());
  if (!rd.entries.empty()) log_.stable_to(rd.entries.back().index(), rd.entries.back().term());
  if (role_ != Role::kLeader) return;
  // The leader's own log now counts toward the commit quorum.
  if (tracker_.at(id_).maybe_update(log_.durable_last_index()) && maybe_commit()) {
    bcast_append();
  }
}

void Raft::on_applied(const std::vector<Entry>& committed_entries) {
  if (committed_entries.empty()) return;
  log_.applied_to(committed_entries.back().index());
  if (role_ == Role::kLeader) {
    uncommitted_bytes_ -= std::min(uncommitted_bytes_, payload_bytes(committed_entries));
  }
}

// ---------------------------------------------------------------------------------------------
// Output, status, invariants

void Raft::send(Message m) {
  HERALD_ASSERT(m.to() != kNoNode && m.to() != id_, "message to nobody or to ourselves");
  m.set_from(id_);
  if (is_termless(m.type())) {
    m.set_term(0);
  } else if (!is_vote_family(m.type())) {
    m.set_term(term_);
  }
  HERALD_ASSERT(is_termless(m.type()) || m.term() != 0, "message without a term");
  msgs_.push_back(std::move(m));
}

NodeStatus Raft::status() const {
  NodeStatus s;
  s.id = id_;
  s.role = role_;
  s.term = term_;
  s.leader = lead_;
  s.vote = vote_;
  s.commit = log_.committed();
  s.applied = log_.applied();
  s.last_index = log_.last_index();
  s.lead_transferee = lead_transferee_;
  s.conf_state = tracker_.conf_state();
  if (role_ != Role::kLeader) return s;
  for (const auto& [id, pr] : tracker_.progress()) {
    s.progress.push_back({id, pr.learner, pr.match, pr.next, progress_state_name(pr.state),
                          pr.recent_active, pr.inflights.count(), pr.inflights.bytes()});
  }
  return s;
}

void Raft::check_invariants() const {
  log_.check_invariants();
  HERALD_ASSERT(role_ != Role::kCandidate || vote_ == id_, "candidate did not vote for itself");
  HERALD_ASSERT(role_ == Role::kLeader || (lead_transferee_ == kNoNode && read_only_.size() == 0 &&
                                           waiting_reads_.empty()),
                "leader-only state on a non-leader");
  if (role_ != Role::kLeader) return;
  HERALD_ASSERT(lead_ == id_, "leader does not know it leads");
  HERALD_ASSERT(tracker_.is_voter(id_), "leader is not a voter");
  HERALD_ASSERT(!log_.unstable_snapshot(), "leader with a pending snapshot");
  HERALD_ASSERT(tracker_.at(id_).match == log_.durable_last_index(),
                "leader's own match is not its durable last index");
  for (const auto& [id, pr] : tracker_.progress()) {
    pr.check_invariants();
    HERALD_ASSERT(pr.match <= log_.last_index(), "a follower matches beyond the leader's log");
    HERALD_ASSERT(pr.next <= log_.last_index() + 1, "next index beyond the leader's log");
  }
}

}  // namespace herald::raft
