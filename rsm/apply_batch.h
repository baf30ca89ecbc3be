// ApplyBatch: the writes of a run of committed entries, readable before they reach the engine.
//
// The apply loop applies every committed entry of one Ready into a single ApplyBatch and writes
// it to the engine once (batched apply). A state machine reading a key sees the value staged by
// an earlier entry of the same batch, then the engine's; a scan merges the two the same way.
// Each key is staged once: a later put or delete of a key the batch already writes replaces that
// write in place, so the engine receives one operation per key, the last (the batch is atomic,
// so the final state is the same; writes of different keys commute).
// A point read that reaches the engine is remembered for the rest of the batch, so a key read
// again (a user record, a conversation, settings that every command consults) costs no second
// engine read. Precondition: the base does not change while the batch is in use, until clear().
// Not thread-safe; owned by the apply loop. Neither copyable nor movable (its index refers to its
// own write batch).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
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
  ApplyBatch(const ApplyBatch&) = delete;
  ApplyBatch& operator=(const ApplyBatch&) = delete;

  // Reads through the staged writes to the engine (or what the batch read from it before).
  // nullopt when absent.
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
  // batch (a write that replaced an earlier one in place is restored) and in what get() returns.
  // Savepoints nest; roll back the innermost first.
  struct Savepoint {
    std::size_t ops = 0;
    std::size_t undo = 0;
  };
  [[nodiscard]] Savepoint savepoint() const { return {writes_.ops().size(), undo_.size()}; }
  void rollback(const Savepoint& point);

  [[nodiscard]] const storage::WriteBatch& writes() const { return writes_; }
  // The writes staged now (after any rollback), counted; work O(writes).
  [[nodiscard]] WriteCounts counts() const;
  void clear();

 private:
  // (space, key) of a staged write or of a lookup, for ordering without a copy of the key.
  struct Probe {
    storage::Space space;
    std::string_view key;
    friend bool operator<(const Probe& a, const Probe& b) {
      return a.space != b.space ? a.space < b.space : a.key < b.key;
    }
  };
  // Orders indexes into writes_.ops() by their (space, key), and compares them with a Probe.
  class OpOrder {
   public:
    using is_transparent = void;
    explicit OpOrder(const storage::WriteBatch* writes) : writes_(writes) {}
    bool operator()(std::size_t a, std::size_t b) const { return probe(a) < probe(b); }
    bool operator()(std::size_t a, const Probe& b) const { return probe(a) < b; }
    bool operator()(const Probe& a, std::size_t b) const { return a < probe(b); }

   private:
    [[nodiscard]] Probe probe(std::size_t index) const {
      const storage::WriteBatch::Op& op = writes_->ops()[index];
      return Probe{op.space, op.key};
    }
    const storage::WriteBatch* writes_;  // the owning batch's
  };
  // A key read from the base, and the order of such keys with Probes.
  struct ReadKey {
    storage::Space space;
    std::string key;
  };
  struct ReadOrder {
    using is_transparent = void;
    static Probe probe(const ReadKey& k) { return Probe{k.space, k.key}; }
    static Probe probe(const Probe& p) { return p; }
    bool operator()(const auto& a, const auto& b) const { return probe(a) < probe(b); }
  };
  // One staged write, for rollback(): the operation it appended, or the one it replaced in place
  // with that operation's type and value before.
  struct Undo {
    std::size_t op = 0;
    bool replaced = false;
    storage::WriteBatch::OpType type = storage::WriteBatch::OpType::kPut;
    std::string value;
  };
  void stage(storage::Space space, std::string_view key, storage::WriteBatch::OpType type,
             std::string_view value);

  const storage::Reader* base_;  // borrowed
  storage::WriteBatch writes_;
  // The operation of each key the batch writes (one per key), by (space, key).
  std::set<std::size_t, OpOrder> staged_{OpOrder(&writes_)};
  std::vector<Undo> undo_;
  // What point reads found in the base (nullopt: absent); staged writes hide it.
  mutable std::map<ReadKey, std::optional<std::string>, ReadOrder> base_reads_;
};

}  // namespace herald::rsm
