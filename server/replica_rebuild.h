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
#include <string>
#include <string_view>

#include "base/status.h"

namespace herald::server {

// The request file inside a data directory; it holds the reason as text.
inline constexpr char kRebuildRequestFile[] = "REBUILD-REQUESTED";
// Suffixes of the directories beside the data directory.
inline constexpr char kRebuiltSuffix[] = ".rebuilt";  // the new store, while it is written
inline constexpr char kDamagedSuffix[] = ".damaged";  // the damaged store, kept for inspection

// Durably asks the next start to rebuild the replica in `data_dir`. Errors: kIOError.
[[nodiscard]] Status request_rebuild(const std::string& data_dir, std::string_view reason);

// Finishes an interrupted rebuild, or performs a requested one; returns whether the data
// directory now holds a rebuilt store. `voters` is the cluster's number of voters: the only
// replica has nothing to rebuild from (kFailedPrecondition, nothing changed). Errors also:
// kCorruption when the damaged store cannot be opened or its hard state is damaged (an
// operator must replace the replica), kIOError.
[[nodiscard]] Result<bool> rebuild_if_requested(const std::string& data_dir, std::size_t voters,
                                                std::int64_t wall_ms);

}  // namespace herald::server
