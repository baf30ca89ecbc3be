#include "raft/progress.h"

#include <algorithm>
#include <functional>
#include <vector>

#include "base/assert.h"

namespace herald::raft {

Inflights::Inflights(std::size_t max_msgs, std::uint64_t max_bytes)
    : max_msgs_(max_msgs), max_bytes_(max_bytes) {
  HERALD_ASSERT(max_msgs_ > 0, "inflight message bound must be positive");
  HERALD_ASSERT(max_bytes_ > 0, "inflight byte bound must be positive");
}

void Inflights::add(Index last_index, std::uint64_t bytes) {
  HERALD_ASSERT(!full(), "adding to full inflights");
  HERALD_ASSERT(records_.empty() || records_.back().last_index < last_index,
                "inflight messages must be added in index order");
  records_.push_back({last_index, bytes});
  bytes_ += bytes;
}

void Inflights::free_le(Index index) {
  while (!records_.empty() && records_.front().last_index <= index) {
    bytes_ -= records_.front().bytes;
    records_.pop_front();
  }
}

void Inflights::free_first_one() {
  if (records_.empty()) return;
  bytes_ -= records_.front().bytes;
  records_.pop_front();
}

void Inflights::reset() {
  records_.clear();
  bytes_ = 0;
}

bool Inflights::full() const {
  return records_.size() >= max_msgs_ || bytes_ >= max_bytes_;
}

std::uint64_t Inflights::bytes_budget() const {
  return bytes_ >= max_bytes_ ? 0 : max_bytes_ - bytes_;
}

void Inflights::check_invariants() const {
  HERALD_ASSERT(records_.size() <= max_msgs_, "more inflight messages than the bound");
  std::uint64_t before_newest = 0;
  for (std::size_t k = 0; k + 1 < records_.size(); ++k) before_newest += records_[k].bytes;
  HERALD_ASSERT(records_.empty() || before_newest < max_bytes_,
                "a message was sent while the inflight byte bound was reached");
}

const char* progress_state_name(ProgressState state) {
  switch (state) {
    case ProgressState::kProbe: return "probe";
    case ProgressState::kReplicate: return "replicate";
    case ProgressState::kSnapshot: return "snapshot";
  }
  return "unknown";
}

Progress::Progress(Index next_index, std::size_t max_inflight_msgs,
                   std::uint64_t max_inflight_bytes, bool is_learner)
    : next(next_index), learner(is_learner), inflights(max_inflight_msgs, max_inflight_bytes) {}

void Progress::become_probe() {
  // Leaving snapshot state: the follower has at least the snapshot once it succeeded.
  next = state == ProgressState::kSnapshot ? std::max(match + 1, pending_snapshot + 1) : match + 1;
  state = ProgressState::kProbe;
  pending_snapshot = 0;
  probe_sent = false;
  inflights.reset();
}

void Progress::forget_match() {
  match = 0;
  probe_sent = false;
  if (state == ProgressState::kReplicate) {
    state = ProgressState::kProbe;
    inflights.reset();
  }
}

void Progress::regress_to(Index last_index) {
  HERALD_ASSERT(last_index < match, "regressing forwards");
  match = last_index;
  state = ProgressState::kReplicate;  // leave snapshot state without its next-index rule
  become_probe();
}

void Progress::become_replicate() {
  state = ProgressState::kReplicate;
  next = match + 1;
  pending_snapshot = 0;
  probe_sent = false;
  inflights.reset();
}

void Progress::become_snapshot(Index snapshot_index) {
  state = ProgressState::kSnapshot;
  pending_snapshot = snapshot_index;
  probe_sent = false;
  inflights.reset();
}

bool Progress::maybe_update(Index index) {
  const bool updated = match < index;
  if (updated) {
    match = index;
    probe_sent = false;
  }
  next = std::max(next, index + 1);
  return updated;
}

bool Progress::maybe_decr_to(Index rejected, Index probe_hint) {
  if (state == ProgressState::kReplicate) {
    // Stale unless it rejects something beyond what we know matches; restart from match.
    if (rejected <= match) return false;
    next = match + 1;
    return true;
  }
  // Probe (or snapshot): only the answer to the outstanding probe counts.
  if (next == 0 || next - 1 != rejected) return false;
  next = std::max(std::min(rejected, probe_hint + 1), match + 1);
  probe_sent = false;
  return true;
}

void Progress::sent_entries(std::size_t count, Index last_index, std::uint64_t bytes) {
  switch (state) {
    case ProgressState::kReplicate:
      if (count > 0) {
        HERALD_ASSERT(last_index + 1 > next, "pipelined send does not advance next");
        next = last_index + 1;
        inflights.add(last_index, bytes);
      }
      break;
    case ProgressState::kProbe: probe_sent = true; break;
    case ProgressState::kSnapshot: HERALD_ASSERT(false, "MSG_APP sent to a peer in snapshot state");
  }
}

bool Progress::paused() const {
  switch (state) {
    case ProgressState::kProbe: return probe_sent;
    case ProgressState::kReplicate: return inflights.full();
    case ProgressState::kSnapshot: return true;
  }
  return true;
}

void Progress::check_invariants() const {
  HERALD_ASSERT(next > match, "next must be beyond match");
  HERALD_ASSERT(state == ProgressState::kReplicate || inflights.count() == 0,
                "only replicate state keeps inflight messages");
  inflights.check_invariants();
}

ProgressTracker::ProgressTracker(std::size_t max_inflight_msgs, std::uint64_t max_inflight_bytes)
    : max_inflight_msgs_(max_inflight_msgs), max_inflight_bytes_(max_inflight_bytes) {}

void ProgressTracker::set_config(const raftpb::ConfState& conf_state, Index next_index) {
  voters_ = {conf_state.voters().begin(), conf_state.voters().end()};
  learners_ = {conf_state.learners().begin(), conf_state.learners().end()};
  for (NodeId id : voters_) {
    HERALD_ASSERT(id != kNoNode && !learners_.contains(id), "a node is voter and learner");
  }
  std::erase_if(progress_, [&](const auto& kv) {
    return !voters_.contains(kv.first) && !learners_.contains(kv.first);
  });
  auto ensure = [&](NodeId id, bool learner) {
    auto it = progress_.find(id);
    if (it == progress_.end()) {
      it = progress_
               .emplace(id, Progress(next_index, max_inflight_msgs_, max_inflight_bytes_, learner))
               .first;
      it->second.recent_active = true;  // a new member gets an election timeout to respond
    }
    it->second.learner = learner;
  };
  for (NodeId id : voters_) ensure(id, false);
  for (NodeId id : learners_) ensure(id, true);
}

raftpb::ConfState ProgressTracker::conf_state() const {
  raftpb::ConfState cs;
  for (NodeId id : voters_) cs.add_voters(id);
  for (NodeId id : learners_) cs.add_learners(id);
  return cs;
}

Progress& ProgressTracker::at(NodeId id) {
  auto it = progress_.find(id);
  HERALD_ASSERT(it != progress_.end(), "no progress for a member");
  return it->second;
}

const Progress& ProgressTracker::at(NodeId id) const {
  auto it = progress_.find(id);
  HERALD_ASSERT(it != progress_.end(), "no progress for a member");
  return it->second;
}

Progress* ProgressTracker::find(NodeId id) {
  auto it = progress_.find(id);
  return it == progress_.end() ? nullptr : &it->second;
}

void ProgressTracker::reset_progress(Index next_index) {
  for (auto& [id, pr] : progress_) {
    const bool learner = pr.learner;
    pr = Progress(next_index, max_inflight_msgs_, max_inflight_bytes_, learner);
  }
}

Index ProgressTracker::quorum_match() const {
  if (voters_.empty()) return 0;
  std::vector<Index> matches;
  matches.reserve(voters_.size());
  for (NodeId id : voters_) matches.push_back(at(id).match);
  std::sort(matches.begin(), matches.end(), std::greater<>());
  return matches[quorum() - 1];
}

bool ProgressTracker::quorum_active(NodeId self) const {
  std::size_t active = 0;
  for (NodeId id : voters_) {
    if (id == self || at(id).recent_active) ++active;
  }
  return active >= quorum();
}

void ProgressTracker::reset_recent_active(NodeId self) {
  for (auto& [id, pr] : progress_) pr.recent_active = id == self;
}

bool ProgressTracker::is_quorum(const std::set<NodeId>& ids) const {
  std::size_t n = 0;
  for (NodeId id : ids) n += voters_.contains(id) ? 1 : 0;
  return n >= quorum();
}

void ProgressTracker::record_vote(NodeId id, bool granted) {
  votes_.try_emplace(id, granted);
}

VoteResult ProgressTracker::tally() const {
  std::size_t granted = 0;
  std::size_t rejected = 0;
  for (NodeId id : voters_) {
    auto it = votes_.find(id);
    if (it == votes_.end()) continue;
    (it->second ? granted : rejected) += 1;
  }
  if (granted >= quorum()) return VoteResult::kWon;
  if (rejected + quorum() > voters_.size()) return VoteResult::kLost;
  return VoteResult::kPending;
}

}  // namespace herald::raft
