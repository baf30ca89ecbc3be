// ApplyBatch: the writes of a run of committed entries, readable before they reach the engine.
//
// The apply loop applies every committed entry of one Ready into a single ApplyBatch and writes
// it to the engine once (batched apply). A state machine reading a key sees the value staged by
// an earlier entry of the same batch, then the engine's; a scan merges the two the same way.
// Not thread-safe; owned by the apply loop.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"
#include "storage/engine.h"

namespace herald::rsm {

// What a batch writes to the engine: point puts, deletes (a range delete counts as one) and the
// bytes of their keys and values (storage::WriteBatch::byte_size()).
struct WriteCounts {
  std::uint64_t puts = 0;
  std::uint64_t deletes = 0;
  std::uint64_t bytes = 0;
};

class ApplyBatch {
 public:
  explicit ApplyBatch(const storage::Reader* base) : base_(base) {}

  // Reads through the staged writes to the engine. nullopt when absent.
  [[nodiscard]] Result<std::optional<std::string>> get(storage::Space space,
                                                       std::string_view key) const;
  void put(storage::Space space, std::string_view key, std::string_view value);
  void del(storage::Space space, std::string_view key);

  struct Entry {
    std::string key;
    std::string value;
  };
  // The first `limit` live keys of [begin, end) in key order (an empty `end`: to the end of the
  // Space), as get() would read each: staged puts over the engine's values, staged deletes hiding
  // the engine's keys. Fewer than `limit` entries means the range holds no more. Work: the
  // entries returned plus the staged deletes of the range passed over (at most the batch's
  // writes), so a caller bounds it with `limit`. kIOError or kCorruption from the engine.
  [[nodiscard]] Result<std::vector<Entry>> scan(storage::Space space, std::string_view begin,
                                                std::string_view end, std::size_t limit) const;

  // A point to roll back to: rollback() undoes every put and del made after it, in the write
  // batch and in what get() returns. Savepoints nest; roll back the innermost first.
  struct Savepoint {
    std::size_t ops = 0;
    std::size_t undo = 0;
  };
  [[nodiscard]] Savepoint savepoint() const { return {writes_.ops().size(), undo_.size()}; }
  void rollback(const Savepoint& point);

  [[nodiscard]] const storage::WriteBatch& writes() const { return writes_; }
  // The writes staged now (after any rollback), counted; work O(writes).
  [[nodiscard]] WriteCounts counts() const;
  [[nodiscard]] storage::WriteBatch& mutable_writes() { return writes_; }
  void clear();

 private:
  const storage::Reader* base_;  // borrowed
  storage::WriteBatch writes_;
  // Latest staged value per (space, key); nullopt marks a staged delete.
  using OverlayKey = std::pair<storage::Space, std::string>;
  // nullopt: absent from the overlay (read through to the base).
  using OverlayValue = std::optional<std::optional<std::string>>;
  void stage(storage::Space space, std::string_view key, std::optional<std::string> value);

  std::map<OverlayKey, std::optional<std::string>, std::less<>> overlay_;
  // The overlay entry each staged write replaced, in order, for rollback().
  std::vector<std::pair<OverlayKey, OverlayValue>> undo_;
};

}  // namespace herald::rsm
