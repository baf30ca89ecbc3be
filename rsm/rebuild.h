// Rebuilding a replica whose stored data failed a checksum (docs/storage-format.md, "Rebuilding
// a damaged replica"). Such a replica cannot trust its state or its log, and replaying them would
// fail again (or, worse, apply damage), so it starts over empty and is brought back by the
// leader, with a snapshot or the log. Two things must survive the wipe:
//
//  - the hard state's term and vote, so that it never votes twice in one term;
//  - a vote floor: the highest index its damaged log held. Its acknowledgements may have made
//    entries up to there committed; until its log is back at that index it grants no vote and
//    never campaigns (raft::Config::vote_floor), so no leader lacking those entries can be
//    elected with its help.
//
// Only a replica with peers can rebuild: the only replica of a cluster has no one to rebuild
// from and must be restored by an operator. A damaged hard state cannot be carried over either.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "base/status.h"
#include "raft/types.h"
#include "rsm/rsm.pb.h"
#include "storage/engine.h"
#include "storage/log_fs.h"

namespace herald::rsm {

// Writes into `fresh` (an empty engine) what the rebuilt replica keeps from `damaged` and its
// raft log: the hard state with its commit reset to 0, the incarnation counter, and a RebuildMark
// whose vote floor is the larger of the salvaged last index and any earlier floor. One synced
// write. The raft log is read from `damaged_log`'s segment files when it holds any and the engine
// holds no hard state (storage::SegmentLog::salvage), else from the engine (a log not yet moved
// into segment files; storage::LogStore::salvage);
// `damaged_log` is null for a replica whose log is in its engine. It is only read: the caller
// removes the segment files once `fresh` is durable, and the next open moves the hard state from
// `fresh` into a new segment log. Returns the vote floor. Errors: kCorruption when the hard state
// is damaged or unknown, or the segment log's last index cannot be bounded (nothing can be
// carried over safely); kFailedPrecondition when `fresh` is not empty; the stores' errors.
[[nodiscard]] Result<raft::Index> carry_over_for_rebuild(const storage::Reader& damaged,
                                                         storage::LogFs* damaged_log,
                                                         storage::Engine& fresh,
                                                         std::string_view reason,
                                                         std::int64_t wall_ms);

// The replica's RebuildMark, or nullopt if it was never rebuilt. kCorruption if it is damaged.
[[nodiscard]] Result<std::optional<rsmpb::RebuildMark>> read_rebuild_mark(
    const storage::Reader& reader);

}  // namespace herald::rsm
