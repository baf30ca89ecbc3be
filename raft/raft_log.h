// RaftLog: the core's view of its log — durable entries in LogStorage followed by an unstable
// tail (an unstable snapshot and/or entries the caller has not persisted yet).
//
// Positions: [first_index(), last_index()] are readable; term(first_index() - 1) answers too.
// Entries below unstable_offset() are durable and read from storage; entries at or above it live
// in memory until stable_to() (called from RawNode::advance) says the caller persisted them.
// An unstable snapshot replaces the whole log until stable_snap_to().
//
// Contract: committed() <= last_index(), applied() <= committed(); entries at or below
// committed() are never truncated (asserted). Storage errors other than kCompacted and
// kUnavailable are fatal (asserted): the caller must stop a node whose log is corrupt.
// Thread-safety: none.
#pragma once

#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "raft/log_storage.h"

namespace herald::raft {

// Size of an entry as counted against every byte bound of the core (same measure as LogStorage).
[[nodiscard]] std::uint64_t entry_bytes(const raftpb::Entry& entry);

inline constexpr std::uint64_t kNoByteLimit = ~std::uint64_t{0};

class RaftLog {
 public:
  // Precondition: first_index() - 1 <= applied <= committed <= storage->last_index().
  RaftLog(const LogStorage* storage, Index committed, Index applied);

  [[nodiscard]] Index first_index() const;
  [[nodiscard]] Index last_index() const;
  [[nodiscard]] Term last_term() const;
  // kCompacted below first_index() - 1, kUnavailable beyond last_index().
  [[nodiscard]] Result<Term> term(Index i) const;
  // term(i), or 0 when i is out of range.
  [[nodiscard]] Term term_or_zero(Index i) const;
  [[nodiscard]] bool match_term(Index i, Term t) const;
  // Raft §5.4.1: is a log ending at (last_index, last_term) at least as up-to-date as ours?
  [[nodiscard]] bool is_up_to_date(Index last_index, Term last_term) const;

  // Follower side of MSG_APP: when our entry at `index` has term `log_term`, appends `entries`
  // (truncating a conflicting suffix), commits up to min(committed, last new index) and returns
  // the last new index; otherwise nullopt.
  [[nodiscard]] std::optional<Index> maybe_append(Index index, Term log_term, Index committed,
                                                  std::span<const raftpb::Entry> entries);
  // Appends entries that follow or overwrite the unstable tail; returns the new last index.
  Index append(std::span<const raftpb::Entry> entries);
  // Largest index <= `index` whose term is <= `term`, with that term (etcd's findConflictByTerm).
  // Used on both sides of the fast back-off: the answer skips a whole conflicting term.
  [[nodiscard]] std::pair<Index, Term> find_conflict_by_term(Index index, Term term) const;

  // Entries in [lo, hi), at most max_bytes (but at least one when lo < hi).
  [[nodiscard]] Result<std::vector<raftpb::Entry>> slice(Index lo, Index hi,
                                                         std::uint64_t max_bytes) const;

  [[nodiscard]] Index committed() const { return committed_; }
  [[nodiscard]] Index applied() const { return applied_; }
  void commit_to(Index index);
  // Commits `index` when it is beyond committed() and its term is `term` (Raft §5.4.2).
  bool maybe_commit(Index index, Term term);
  void applied_to(Index index);
  // Committed entries not yet applied, starting after applied(), at most max_bytes.
  [[nodiscard]] std::vector<raftpb::Entry> next_committed_entries(std::uint64_t max_bytes) const;
  [[nodiscard]] bool has_next_committed_entries() const;

  // Durability bookkeeping, driven by RawNode::advance().
  void stable_to(Index index, Term term);
  void stable_snap_to(Index index);
  // Replaces the log by a snapshot: committed = applied = snapshot index.
  void restore(const raftpb::SnapshotMetadata& snapshot);
  [[nodiscard]] const std::optional<raftpb::SnapshotMetadata>& unstable_snapshot() const {
    return unstable_snapshot_;
  }
  [[nodiscard]] const std::vector<raftpb::Entry>& unstable_entries() const {
    return unstable_entries_;
  }
  [[nodiscard]] Index unstable_offset() const { return unstable_offset_; }
  // Last index known durable and part of this log (0 while an unstable snapshot is pending).
  [[nodiscard]] Index durable_last_index() const;

  void check_invariants() const;

  // The first storage failure other than "compacted" or "unavailable" (a damaged record, an I/O
  // error) met by any read; ok while there was none. Reads that fail so answer as if the entry
  // were unknown, which is always safe for a moment; the caller must stop the node once this is
  // set, before it persists or sends anything more (rsm::Node checks it before every Ready).
  [[nodiscard]] const Status& fault() const { return fault_; }

 private:
  void note_fault(const Status& status) const;
  // First index whose entry conflicts with (or extends) the log, or 0 when all match.
  [[nodiscard]] Index find_conflict(std::span<const raftpb::Entry> entries) const;
  void truncate_and_append(std::span<const raftpb::Entry> entries);
  [[nodiscard]] std::optional<Term> unstable_term(Index i) const;
  [[nodiscard]] const LogStorage& storage() const { return *storage_; }

  const LogStorage* storage_;
  std::optional<raftpb::SnapshotMetadata> unstable_snapshot_;
  std::vector<raftpb::Entry> unstable_entries_;
  Index unstable_offset_;  // index of unstable_entries_[0] (or where it would be)
  Index committed_;
  Index applied_;
  mutable Status fault_;  // set by const reads (see fault())
};

}  // namespace herald::raft
