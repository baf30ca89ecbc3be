// Rebuilding a replica in its data directory after its data failed a checksum
// (docs/operations.md, "Damaged data"; the replica-level rules are in rsm/rebuild.h).
//
// The replica that finds damage records a request (a file in the data directory, written
// durably) and restarts; the next start carries the hard state and the vote floor over into a
// new, empty store, keeps the damaged store beside it as `<dir>.damaged` for inspection (one,
// the latest), and opens the new one: the leader then sends it a snapshot or the log. Every step
// can be interrupted by a crash and is finished or redone by the next start.
//
// Thread-safety: call before the node's engine is opened (NodeHost::start does).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/status.h"
#include "rsm/rsm.pb.h"

namespace herald::server {

// A replica whose reads find damage again this soon after its last rebuild is not rebuilt again:
// it was probably rebuilt from a damaged copy, and rebuilding in a loop would not help.
inline constexpr std::int64_t kMinRebuildIntervalMs = 10LL * 60 * 1000;  // 10 minutes

// The request file inside a data directory; it holds the reason as text.
inline constexpr char kRebuildRequestFile[] = "REBUILD-REQUESTED";
// The directory of the raft log's segment files inside a data directory (NodeHostOptions::
// segment_log). A rebuild reads the hard state and the vote floor from it when it holds segments
// and moves it aside with the rest of the damaged store; the new store starts without one.
inline constexpr char kRaftLogDir[] = "raftlog";
// Suffixes of the directories beside the data directory.
inline constexpr char kRebuiltSuffix[] = ".rebuilt";  // the new store, while it is written
inline constexpr char kDamagedSuffix[] = ".damaged";  // the damaged store, kept for inspection

// Durably asks the next start to rebuild the replica in `data_dir`. Errors: kIOError.
[[nodiscard]] Status request_rebuild(const std::string& data_dir, std::string_view reason);

// Finishes an interrupted rebuild, or performs a requested one; returns whether the data
// directory now holds a rebuilt store. `voters` is the cluster's number of voters: the only
// replica has nothing to rebuild from (kFailedPrecondition, nothing changed). Errors also:
// kCorruption when the damaged store cannot be opened, its hard state is damaged, or its segment
// log's damage leaves the term, the vote or the highest index unknown (an operator must replace
// the replica; nothing changed), kIOError.
[[nodiscard]] Result<bool> rebuild_if_requested(const std::string& data_dir, std::size_t voters,
                                                std::int64_t wall_ms);

// Whether `damage` is a failed checksum: bytes that changed on this replica's disk after they
// were written (a sealed record's CRC-32C, a RocksDB block checksum). Such damage is local, so a
// rebuild from the leader repairs it; other kCorruption (a record that does not decode, state
// that contradicts itself) was written that way and is the same on every replica.
[[nodiscard]] bool is_checksum_failure(const Status& damage);

// Whether a read that found `damage` (while serving a client, outside the apply path) makes
// this replica rebuild: only a checksum failure, only with peers (voters >= 2), and not within
// kMinRebuildIntervalMs after the last rebuild (`mark`, nullopt if never rebuilt) at `now_ms`.
[[nodiscard]] bool rebuild_on_read_damage(const Status& damage, std::size_t voters,
                                          const std::optional<rsmpb::RebuildMark>& mark,
                                          std::int64_t now_ms);

}  // namespace herald::server
