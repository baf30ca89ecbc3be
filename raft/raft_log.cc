#include "raft/raft_log.h"

#include <algorithm>

namespace herald::raft {

std::uint64_t entry_bytes(const raftpb::Entry& entry) {
  return entry.ByteSizeLong();
}

RaftLog::RaftLog(const LogStorage* storage, Index committed, Index applied)
    : storage_(storage),
      unstable_offset_(storage->last_index() + 1),
      committed_(committed),
      applied_(applied) {
  HERALD_ASSERT(applied_ <= committed_, "applied beyond committed");
  HERALD_ASSERT(committed_ <= storage->last_index(), "committed beyond the stored log");
  HERALD_ASSERT(applied_ + 1 >= storage->first_index(), "applied below the compaction point");
}

Index RaftLog::first_index() const {
  if (unstable_snapshot_) return unstable_snapshot_->index() + 1;
  return storage().first_index();
}

Index RaftLog::last_index() const {
  if (!unstable_entries_.empty()) return unstable_offset_ + unstable_entries_.size() - 1;
  if (unstable_snapshot_) return unstable_snapshot_->index();
  return storage().last_index();
}

Term RaftLog::last_term() const {
  Result<Term> t = term(last_index());
  HERALD_ASSERT(t.ok(), "the last entry has no term");
  return *t;
}

std::optional<Term> RaftLog::unstable_term(Index i) const {
  if (i >= unstable_offset_ && i - unstable_offset_ < unstable_entries_.size()) {
    return unstable_entries_[i - unstable_offset_].term();
  }
  if (unstable_snapshot_ && unstable_snapshot_->index() == i) return unstable_snapshot_->term();
  return std::nullopt;
}

Result<Term> RaftLog::term(Index i) const {
  if (i + 1 < first_index()) return Status::compacted("term below the first index");
  if (i > last_index()) return Status::unavailable("term beyond the last index");
  if (std::optional<Term> t = unstable_term(i)) return *t;
  HERALD_ASSERT(i < unstable_offset_, "unstable position without a term");
  Result<Term> stored = storage().term(i);
  if (!stored.ok()) note_fault(stored.status());
  return stored;
}

void RaftLog::note_fault(const Status& status) const {
  const Code code = status.code();
  if (code == Code::kCompacted || code == Code::kUnavailable || !fault_.ok()) return;
  fault_ = status;
}

Term RaftLog::term_or_zero(Index i) const {
  Result<Term> t = term(i);
  return t.ok() ? *t : 0;
}

bool RaftLog::match_term(Index i, Term t) const {
  Result<Term> ours = term(i);
  return ours.ok() && *ours == t;
}

bool RaftLog::is_up_to_date(Index last_index, Term last_term) const {
  const Term our_last_term = this->last_term();
  return last_term > our_last_term ||
         (last_term == our_last_term && last_index >= this->last_index());
}

std::optional<Index> RaftLog::maybe_append(Index index, Term log_term, Index committed,
                                           std::span<const raftpb::Entry> entries) {
  if (!match_term(index, log_term)) return std::nullopt;
  const Index last_new = index + entries.size();
  const Index conflict = find_conflict(entries);
  if (conflict != 0) {
    HERALD_ASSERT(conflict > committed_, "a committed entry conflicts with the leader's log");
    append(entries.subspan(conflict - (index + 1)));
  }
  commit_to(std::min(committed, last_new));
  return last_new;
}

Index RaftLog::append(std::span<const raftpb::Entry> entries) {
  if (entries.empty()) return last_index();
  HERALD_ASSERT(entries.front().index() > committed_, "append would overwrite committed entries");
  truncate_and_append(entries);
  return last_index();
}

void RaftLog::truncate_and_append(std::span<const raftpb::Entry> entries) {
  const Index after = entries.front().index();
  HERALD_ASSERT(after <= last_index() + 1, "append leaves a gap in the log");
  HERALD_ASSERT(!unstable_snapshot_ || after > unstable_snapshot_->index(),
                "append overwrites the pending snapshot");
  if (after <= unstable_offset_) {
    // Replaces the whole unstable tail (and, once persisted, a suffix of storage).
    unstable_offset_ = after;
    unstable_entries_.clear();
  } else {
    unstable_entries_.resize(after - unstable_offset_);
  }
  unstable_entries_.insert(unstable_entries_.end(), entries.begin(), entries.end());
}

Index RaftLog::find_conflict(std::span<const raftpb::Entry> entries) const {
  for (const raftpb::Entry& e : entries) {
    if (!match_term(e.index(), e.term())) return e.index();
  }
  return 0;
}

std::pair<Index, Term> RaftLog::find_conflict_by_term(Index index, Term term) const {
  for (;;) {
    Result<Term> ours = this->term(index);
    if (!ours.ok()) return {index, 0};
    if (*ours <= term || index == 0) return {index, *ours};
    --index;
  }
}

Result<std::vector<raftpb::Entry>> RaftLog::slice(Index lo, Index hi,
                                                  std::uint64_t max_bytes) const {
  if (lo < first_index()) return Status::compacted("slice below the first index");
  HERALD_ASSERT(lo <= hi && hi <= last_index() + 1, "slice out of bounds");
  std::vector<raftpb::Entry> out;
  if (lo < unstable_offset_) {
    const Index stored_hi = std::min(hi, unstable_offset_);
    Result<std::vector<raftpb::Entry>> stored = storage().entries(lo, stored_hi, max_bytes);
    if (!stored.ok()) {
      note_fault(stored.status());
      return stored.status();
    }
    out = std::move(stored).value();
    HERALD_ASSERT(!out.empty() && out.front().index() == lo, "storage returned a wrong range");
    if (out.size() < stored_hi - lo) return out;  // the byte limit was reached
  }
  std::uint64_t total_bytes = 0;
  for (const raftpb::Entry& e : out) total_bytes += entry_bytes(e);
  for (Index i = std::max(lo, unstable_offset_); i < hi; ++i) {
    const raftpb::Entry& e = unstable_entries_[i - unstable_offset_];
    const std::uint64_t size = entry_bytes(e);
    if (!out.empty() && total_bytes + size > max_bytes) break;
    total_bytes += size;
    out.push_back(e);
  }
  return out;
}

void RaftLog::commit_to(Index index) {
  if (index <= committed_) return;
  HERALD_ASSERT(index <= last_index(), "commit beyond the last index");
  committed_ = index;
}

bool RaftLog::maybe_commit(Index index, Term term) {
  if (index <= committed_ || term_or_zero(index) != term) return false;
  commit_to(index);
  return true;
}

void RaftLog::applied_to(Index index) {
  if (index <= applied_) return;
  HERALD_ASSERT(index <= committed_, "applied beyond committed");
  applied_ = index;
}

std::vector<raftpb::Entry> RaftLog::next_committed_entries(std::uint64_t max_bytes) const {
  const Index lo = std::max(applied_ + 1, first_index());
  if (lo > committed_) return {};
  Result<std::vector<raftpb::Entry>> entries = slice(lo, committed_ + 1, max_bytes);
  if (!entries.ok()) {
    HERALD_ASSERT(!fault_.ok(), "committed but unapplied entries were compacted");
    return {};  // unreadable: fault() says why, and the caller stops
  }
  return std::move(entries).value();
}

bool RaftLog::has_next_committed_entries() const {
  return committed_ >= std::max(applied_ + 1, first_index());
}

void RaftLog::stable_to(Index index, Term term) {
  std::optional<Term> t = unstable_term(index);
  // A mismatch means the tail was truncated and rewritten since that Ready: keep it unstable.
  if (!t || *t != term || index < unstable_offset_) return;
  unstable_entries_.erase(
      unstable_entries_.begin(),
      unstable_entries_.begin() + static_cast<std::ptrdiff_t>(index + 1 - unstable_offset_));
  unstable_offset_ = index + 1;
}

void RaftLog::stable_snap_to(Index index) {
  if (unstable_snapshot_ && unstable_snapshot_->index() == index) unstable_snapshot_.reset();
}

void RaftLog::restore(const raftpb::SnapshotMetadata& snapshot) {
  HERALD_ASSERT(snapshot.index() > committed_, "restoring a snapshot older than the commit");
  unstable_snapshot_ = snapshot;
  unstable_entries_.clear();
  unstable_offset_ = snapshot.index() + 1;
  committed_ = snapshot.index();
  applied_ = snapshot.index();
}

Index RaftLog::durable_last_index() const {
  if (unstable_snapshot_) return 0;
  return unstable_offset_ - 1;
}

void RaftLog::check_invariants() const {
  HERALD_ASSERT(applied_ <= committed_, "applied beyond committed");
  HERALD_ASSERT(committed_ <= last_index(), "committed beyond the last index");
  HERALD_ASSERT(first_index() <= last_index() + 1, "first index beyond last index + 1");
  if (!unstable_snapshot_) {
    HERALD_ASSERT(unstable_offset_ <= storage().last_index() + 1, "unstable offset past storage");
    HERALD_ASSERT(applied_ + 1 >= first_index(), "unapplied entries were compacted");
  }
}

}  // namespace herald::raft
