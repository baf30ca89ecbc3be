// RaftLog: the write side of a replica's durable raft log, as one interface with two
// implementations chosen by configuration (docs/storage-format.md, "Where the raft log lives"):
//
//  - LogStore (storage/log_store.h): the log in the Engine's Space::kLog and Space::kMeta, on the
//    same store as the state space;
//  - SegmentLog (storage/segment_log.h): the log in its own segment files on a LogFs, apart from
//    the state space.
//
// Both persist one round of raft output (snapshot point, entries, hard state) as one atomic,
// optionally synced write; both drop applied entries on compact(); both hold the hard state
// (term, vote, commit). Neither holds the applied state: the caller keeps it (with the
// membership) in its state space and hands it back through set_snapshot_metadata() and
// set_conf_state() after opening.
//
// Errors, ownership and thread-safety: as each implementation states.
#pragma once

#include <optional>
#include <vector>

#include "base/status.h"
#include "raft/log_storage.h"
#include "raft/types.h"

namespace herald::storage {

// What a replica rebuilding after corruption carries over from its damaged log (see
// LogStore::salvage and SegmentLog::salvage).
struct SalvagedLog {
  raftpb::HardState hard_state;  // term and vote must survive; commit is the old one
  raft::Index last_index = 0;    // the highest index the log held (or committed, or compacted)
};

class RaftLog : public raft::LogStorage {
 public:
  // Persists, atomically (durable before returning when `sync`): `snapshot` (the log restarts
  // empty after it), then `entries` (replacing any existing suffix from entries[0].index), then
  // `hs`. Preconditions (asserted): entries are consecutive and entries[0].index is in
  // (compaction index, last index + 1] once the snapshot, if any, is applied; a snapshot never
  // moves the compaction point backwards. On error the in-memory view is unchanged.
  [[nodiscard]] virtual Status save(const std::optional<raftpb::HardState>& hs,
                                    const std::optional<raftpb::SnapshotMetadata>& snapshot,
                                    const std::vector<raftpb::Entry>& entries, bool sync) = 0;
  // Drops entries with index <= upto (all of them or, for the segment log, the whole segments
  // they fill), never syncing anything the caller has not made durable first. Preconditions
  // (asserted): upto <= last_index() and upto <= snapshot_metadata().index.
  [[nodiscard]] virtual Status compact(raft::Index upto) = 0;
  // What a snapshot taken now would cover (the caller's applied state).
  virtual void set_snapshot_metadata(const raftpb::SnapshotMetadata& meta) = 0;
  // The membership initial_state() returns, kept by the caller with its applied state.
  virtual void set_conf_state(const raftpb::ConfState& conf_state) = 0;
  // The durable hard state (as of the last successful save).
  [[nodiscard]] virtual const raftpb::HardState& hard_state() const = 0;
  // The compaction point: entries up to it are gone; term(truncated_index()) still answers.
  [[nodiscard]] virtual raft::Index truncated_index() const = 0;
  [[nodiscard]] virtual raft::Term truncated_term() const = 0;
};

}  // namespace herald::storage
