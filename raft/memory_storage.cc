#include "raft/memory_storage.h"

#include <string>

namespace herald::raft {

MemoryLogStorage::MemoryLogStorage(raftpb::ConfState conf_state)
    : conf_state_(std::move(conf_state)) {
  entries_.emplace_back();  // sentinel (0, 0)
  *snapshot_.mutable_conf_state() = conf_state_;
}

Result<InitialState> MemoryLogStorage::initial_state() const {
  InitialState state;
  state.hard_state = hard_state_;
  state.conf_state = conf_state_;
  return state;
}

Result<std::vector<raftpb::Entry>> MemoryLogStorage::entries(Index lo, Index hi,
                                                             std::uint64_t max_bytes) const {
  if (lo <= offset()) return Status::compacted("entries below the first index");
  if (hi > last_index() + 1) return Status::unavailable("entries beyond the last index");
  HERALD_ASSERT(lo <= hi, "entries: lo > hi");
  std::vector<raftpb::Entry> out;
  std::uint64_t total_bytes = 0;
  for (Index i = lo; i < hi; ++i) {
    const raftpb::Entry& e = entries_[i - offset()];
    const std::uint64_t size = e.ByteSizeLong();
    if (!out.empty() && total_bytes + size > max_bytes) break;
    total_bytes += size;
    out.push_back(e);
  }
  return out;
}

Result<Term> MemoryLogStorage::term(Index i) const {
  if (i < offset()) return Status::compacted("term below the compaction point");
  if (i > last_index()) return Status::unavailable("term beyond the last index");
  return entries_[i - offset()].term();
}

Index MemoryLogStorage::first_index() const {
  return offset() + 1;
}

Index MemoryLogStorage::last_index() const {
  return offset() + entries_.size() - 1;
}

raftpb::SnapshotMetadata MemoryLogStorage::snapshot_metadata() const {
  return snapshot_;
}

Status MemoryLogStorage::append(const std::vector<raftpb::Entry>& entries) {
  if (entries.empty()) return Status::ok_status();
  const Index first_new = entries.front().index();
  if (first_new <= offset()) return Status::invalid_argument("append into the compacted prefix");
  if (first_new > last_index() + 1) return Status::invalid_argument("append leaves a gap");
  for (std::size_t k = 1; k < entries.size(); ++k) {
    HERALD_ASSERT(entries[k].index() == entries[k - 1].index() + 1, "non-consecutive append");
  }
  entries_.resize(first_new - offset());  // drop the conflicting suffix, if any
  entries_.insert(entries_.end(), entries.begin(), entries.end());
  check_invariants();
  return Status::ok_status();
}

void MemoryLogStorage::set_hard_state(const raftpb::HardState& hard_state) {
  HERALD_ASSERT(hard_state.term() >= hard_state_.term(), "hard state term went backwards");
  hard_state_ = hard_state;
}

Status MemoryLogStorage::apply_snapshot(const raftpb::SnapshotMetadata& snapshot) {
  if (snapshot.index() < snapshot_.index()) {
    return Status::failed_precondition("snapshot older than the current one");
  }
  snapshot_ = snapshot;
  conf_state_ = snapshot.conf_state();
  entries_.clear();
  raftpb::Entry sentinel;
  sentinel.set_index(snapshot.index());
  sentinel.set_term(snapshot.term());
  entries_.push_back(sentinel);
  check_invariants();
  return Status::ok_status();
}

Status MemoryLogStorage::set_snapshot_metadata(const raftpb::SnapshotMetadata& snapshot) {
  if (snapshot.index() > last_index()) {
    return Status::invalid_argument("snapshot beyond the last index");
  }
  if (snapshot.index() < offset()) {
    return Status::invalid_argument("snapshot below the compaction point");
  }
  snapshot_ = snapshot;
  return Status::ok_status();
}

Status MemoryLogStorage::compact(Index index) {
  if (index <= offset()) return Status::compacted("already compacted");
  if (index > last_index()) return Status::invalid_argument("compact beyond the last index");
  if (index > snapshot_.index()) {
    return Status::invalid_argument("compact beyond the recorded snapshot");
  }
  const std::size_t drop = index - offset();
  raftpb::Entry sentinel;
  sentinel.set_index(index);
  sentinel.set_term(entries_[drop].term());
  entries_.erase(entries_.begin(), entries_.begin() + static_cast<std::ptrdiff_t>(drop));
  entries_.front() = sentinel;
  check_invariants();
  return Status::ok_status();
}

void MemoryLogStorage::check_invariants() const {
  HERALD_ASSERT(!entries_.empty(), "storage lost its sentinel");
  HERALD_ASSERT(snapshot_.index() + 1 >= first_index(), "snapshot does not cover compaction");
}

}  // namespace herald::raft
