#include "rsm/rebuild.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <string>

#include "base/encoding.h"
#include "rsm/node.h"
#include "storage/log_store.h"
#include "storage/segment_log.h"

namespace herald::rsm {

namespace {

// The incarnation counter of the damaged store. A damaged counter is replaced by the wall clock
// in milliseconds, far above any count of restarts, so request ids stay apart from earlier runs.
Result<std::uint64_t> salvage_incarnation(const storage::Reader& damaged, std::int64_t wall_ms) {
  HERALD_ASSIGN_OR_RETURN(auto raw, damaged.get(storage::Space::kMeta, kIncarnationKey));
  if (!raw) return std::uint64_t{0};
  std::string_view payload;
  if (!open_record(*raw, payload) || payload.size() != sizeof(std::uint64_t)) {
    return static_cast<std::uint64_t>(std::max<std::int64_t>(wall_ms, 0));
  }
  return get_fixed64_be(payload);
}

// The raft log's hard state and highest index: from the segment files when there are any and
// the engine holds no hard state (the log moved there: Node::adopt_engine_log drops the engine's
// copy only once the segment log holds it), else from the engine.
Result<storage::SalvagedLog> salvage_log(const storage::Reader& damaged,
                                         storage::LogFs* damaged_log) {
  if (damaged_log != nullptr) {
    HERALD_ASSIGN_OR_RETURN(const auto engine_log,
                            damaged.get(storage::Space::kMeta, storage::kHardStateKey));
    if (!engine_log.has_value()) {
      HERALD_ASSIGN_OR_RETURN(auto from_segments, storage::SegmentLog::salvage(damaged_log));
      if (from_segments.has_value()) {
        return *std::move(from_segments);
      }
    }
  }
  return storage::LogStore::salvage(damaged);
}

bool is_empty(const storage::Reader& reader) {
  for (const storage::Space space :
       {storage::Space::kLog, storage::Space::kMeta, storage::Space::kState}) {
    if (reader.scan(space, "", "")->valid()) return false;
  }
  return true;
}

}  // namespace

Result<std::optional<rsmpb::RebuildMark>> read_rebuild_mark(const storage::Reader& reader) {
  HERALD_ASSIGN_OR_RETURN(auto raw, reader.get(storage::Space::kMeta, kRebuildMarkKey));
  if (!raw) return std::optional<rsmpb::RebuildMark>();
  std::string_view payload;
  rsmpb::RebuildMark mark;
  if (!open_record(*raw, payload) ||
      !mark.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return Status::corruption("rebuild mark fails its checksum");
  }
  return std::optional<rsmpb::RebuildMark>(std::move(mark));
}

Result<raft::Index> carry_over_for_rebuild(const storage::Reader& damaged,
                                           storage::LogFs* damaged_log, storage::Engine& fresh,
                                           std::string_view reason, std::int64_t wall_ms) {
  if (!is_empty(fresh)) {
    return Status::failed_precondition("a rebuild needs an empty engine to write into");
  }
  HERALD_ASSIGN_OR_RETURN(const storage::SalvagedLog log, salvage_log(damaged, damaged_log));
  HERALD_ASSIGN_OR_RETURN(const std::uint64_t incarnation, salvage_incarnation(damaged, wall_ms));
  // An earlier rebuild whose replica had not caught up yet keeps its (higher) floor. A damaged
  // mark only loses that history: the salvaged index is still a floor.
  auto previous = read_rebuild_mark(damaged);
  rsmpb::RebuildMark mark;
  if (previous.ok() && previous->has_value()) mark = **previous;
  mark.set_vote_floor(std::max<std::uint64_t>(mark.vote_floor(), log.last_index));
  mark.set_wall_ms(wall_ms);
  mark.set_reason(std::string(reason));
  mark.set_rebuilds(mark.rebuilds() + 1);

  raftpb::HardState hs = log.hard_state;
  hs.set_commit(0);  // the log is empty: nothing is known committed until the leader says so
  storage::WriteBatch batch;
  batch.put(storage::Space::kMeta, storage::kHardStateKey, seal_record(hs.SerializeAsString()));
  std::string counter;
  put_fixed64_be(counter, incarnation);
  batch.put(storage::Space::kMeta, kIncarnationKey, seal_record(counter));
  batch.put(storage::Space::kMeta, kRebuildMarkKey, seal_record(mark.SerializeAsString()));
  HERALD_RETURN_IF_ERROR(fresh.write(batch, /*sync=*/true));
  spdlog::warn(
      "rebuild: carried over term {} and vote {}; no vote or campaign until the log reaches "
      "index {} again (rebuild {} of this replica)",
      hs.term(), hs.vote(), mark.vote_floor(), mark.rebuilds());
  return mark.vote_floor();
}

}  // namespace herald::rsm
