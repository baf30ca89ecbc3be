// MemoryLogStorage: an in-memory LogStorage with writer methods, for tests and scenario scripts.
//
// Layout: entries_[0] is a sentinel that stands for the compaction point (index and term of the
// last entry covered by the snapshot); real entries follow it. An empty, never-compacted log has
// the sentinel (0, 0), first_index() == 1 and last_index() == 0.
//
// Writers mirror what the caller of RawNode does with a Ready: install a snapshot, append entries
// (replacing a conflicting suffix), persist the hard state. compact() drops a prefix the way a
// caller does after taking a snapshot (set_snapshot_metadata() first: the snapshot must cover the
// compaction point). Errors are Status values; broken internal invariants assert.
// Thread-safety: none.
#pragma once

#include <vector>

#include "raft/log_storage.h"

namespace herald::raft {

class MemoryLogStorage final : public LogStorage {
 public:
  // An empty log whose initial membership is `conf_state`.
  explicit MemoryLogStorage(raftpb::ConfState conf_state = {});

  [[nodiscard]] Result<InitialState> initial_state() const override;
  [[nodiscard]] Result<std::vector<raftpb::Entry>> entries(Index lo, Index hi,
                                                           std::uint64_t max_bytes) const override;
  [[nodiscard]] Result<Term> term(Index i) const override;
  [[nodiscard]] Index first_index() const override;
  [[nodiscard]] Index last_index() const override;
  [[nodiscard]] raftpb::SnapshotMetadata snapshot_metadata() const override;

  // Appends `entries` (consecutive indexes). An entry at an index already present replaces it and
  // everything after it. kInvalidArgument when the batch leaves a gap after last_index() or
  // starts inside the compacted prefix at or below the compaction point.
  [[nodiscard]] Status append(const std::vector<raftpb::Entry>& entries);
  void set_hard_state(const raftpb::HardState& hard_state);
  [[nodiscard]] const raftpb::HardState& hard_state() const { return hard_state_; }
  // Membership reported by initial_state() (the caller records it as it applies changes).
  void set_conf_state(const raftpb::ConfState& conf_state) { conf_state_ = conf_state; }
  // Replaces the whole log by `snapshot`: the log becomes empty after snapshot.index().
  // kFailedPrecondition when `snapshot` is older than the current snapshot.
  [[nodiscard]] Status apply_snapshot(const raftpb::SnapshotMetadata& snapshot);
  // Records that a snapshot covering `snapshot` exists (the log is unchanged).
  // kInvalidArgument when snapshot.index() is beyond last_index() or below the compaction point.
  [[nodiscard]] Status set_snapshot_metadata(const raftpb::SnapshotMetadata& snapshot);
  // Drops entries up to and including `index`. kCompacted when already compacted past it;
  // kInvalidArgument beyond last_index() or beyond the recorded snapshot's index.
  [[nodiscard]] Status compact(Index index);

 private:
  [[nodiscard]] Index offset() const { return entries_.front().index(); }
  void check_invariants() const;

  raftpb::HardState hard_state_;
  raftpb::ConfState conf_state_;
  raftpb::SnapshotMetadata snapshot_;
  std::vector<raftpb::Entry> entries_;  // entries_[0] is the sentinel
};

}  // namespace herald::raft
