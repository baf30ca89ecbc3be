// LogStorage: the raft core's read-only view of the durable log (the caller owns the writes).
//
// The core never writes storage. The caller (rsm/) persists what Ready hands it and then calls
// RawNode::advance(); from then on those entries must be readable here. Implementations: the
// RocksDB-backed and the simulated store in storage/log_store.h, and MemoryLogStorage for tests.
//
// Positions: entries in [first_index(), last_index()] are readable. first_index() - 1 is the
// compaction point; term(first_index() - 1) still answers. An empty log has first_index() ==
// last_index() + 1. snapshot_metadata() describes the state a snapshot sent to a lagging
// follower would cover: its index is >= first_index() - 1.
//
// Errors: kCompacted for positions below first_index() - 1; kUnavailable beyond last_index();
// kCorruption when a stored record fails its checksum (the caller must stop the node).
// Thread-safety: called only from the thread that drives the RawNode.
#pragma once

#include <vector>

#include "base/status.h"
#include "raft/types.h"

namespace herald::raft {

struct InitialState {
  raftpb::HardState hard_state;
  raftpb::ConfState conf_state;  // membership as of the applied index (or the snapshot)
};

class LogStorage {
 public:
  virtual ~LogStorage() = default;

  [[nodiscard]] virtual Result<InitialState> initial_state() const = 0;
  // Entries in [lo, hi). Returns at least one entry when lo < hi, even if it alone exceeds
  // max_bytes; otherwise stops before the total size (ByteSizeLong of each) exceeds max_bytes.
  [[nodiscard]] virtual Result<std::vector<raftpb::Entry>> entries(
      Index lo, Index hi, std::uint64_t max_bytes) const = 0;
  [[nodiscard]] virtual Result<Term> term(Index i) const = 0;
  [[nodiscard]] virtual Index first_index() const = 0;
  [[nodiscard]] virtual Index last_index() const = 0;
  [[nodiscard]] virtual raftpb::SnapshotMetadata snapshot_metadata() const = 0;
};

}  // namespace herald::raft
