// Exactly-once admission of replicated commands.
//
// A command is named by (origin, incarnation, request_id). The network may deliver a forwarded
// proposal twice, and raft would then commit it twice; every replica runs admit() before applying
// a command and so skips the second copy identically. Per (origin, incarnation) the state space
// keeps the highest id applied and a bitmap of the kSessionWindowIds ids below it, so commands
// of one origin may commit out of order by up to that many ids. An older id cannot be judged and
// is refused (kTooOld): the caller reports a definite failure, never a second application.
// Stored under Space::kState key "s" + fixed64(origin) + fixed64(incarnation) (see
// docs/storage-format.md).
//
// Compaction: an incarnation is one run of the origin's process, numbered upwards. The first
// command of a newer incarnation deletes the previous incarnation's record and records the new
// one as the origin's latest (key "s" + fixed64(origin) + fixed64(0)); a command of an older
// incarnation is refused as kTooOld (the process that proposed it has ended; its client never
// got an answer). So the table holds one record per origin, however often nodes restart.
#pragma once

#include <cstdint>
#include <map>
#include <utility>

#include "base/status.h"
#include "rsm/apply_batch.h"
#include "rsm/rsm.pb.h"

namespace herald::rsm {

inline constexpr std::uint64_t kSessionWindowIds = 64;

// kInvalid: the command does not name a session (origin, incarnation or request id is 0); it
// can only come from a faulty or hostile proposer and is refused on every replica alike.
enum class Admission : std::uint8_t { kFresh, kDuplicate, kTooOld, kInvalid };

inline constexpr std::size_t kMaxCachedSessions = 4096;

// The admission filter, with a write-through cache of session records in front of the engine.
// The cache holds what the state space holds once the apply batch is written; the owner must
// clear() it whenever the state space changes behind its back (a snapshot install) or an apply
// batch fails to be written. Not thread-safe; owned by the apply loop.
class SessionTable {
 public:
  // Decides whether request `id` of the session is new and, if so, records it in `batch`.
  // Errors: kCorruption when the session record fails its checksum.
  [[nodiscard]] Result<Admission> admit(ApplyBatch& batch, std::uint64_t origin,
                                        std::uint64_t incarnation, std::uint64_t id);
  void clear() {
    cache_.clear();
    latest_.clear();
  }

 private:
  // Checks `incarnation` against the origin's latest; a newer one replaces the latest in `batch`.
  [[nodiscard]] Result<bool> current(ApplyBatch& batch, std::uint64_t origin,
                                     std::uint64_t incarnation);

  std::map<std::pair<std::uint64_t, std::uint64_t>, rsmpb::SessionRecord> cache_;
  std::map<std::uint64_t, std::uint64_t> latest_;  // origin -> latest incarnation
};

}  // namespace herald::rsm
