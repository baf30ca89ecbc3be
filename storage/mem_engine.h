// MemEngine: the in-memory Engine the simulator runs Herald on, with injectable disk faults.
//
// It models exactly what RocksDB's write-ahead log guarantees: a write is visible at once, but
// durable only once a later (or its own) write with sync=true returns. It keeps two images of the
// store: the live view that reads see, and the durable image. Batches written without sync since
// the last sync are remembered in order; crash() throws the live view away and rebuilds it from
// the durable image plus a random prefix of those batches (possibly none, possibly all), never a
// later batch without every earlier one.
//
// Faults: fail_writes(n) makes the next n writes fail with kIOError without changing anything;
// set_full(true) is a disk with no space left: until set_full(false), every write fails with
// kResourceExhausted (what RocksDbEngine reports for ENOSPC) and changes nothing, while reads,
// snapshots and crashes go on as before; corrupt() flips a bit in a stored value (in the live view
// and in the durable image), as a damaged disk sector would. A disk that lies about fsync: once
// record_history() is on, the engine remembers its last kMaxHistoryBatches writes, and
// crash_lying() loses synced writes too — it rolls the store back to what it held after some
// earlier write, before the last sync.
//
// Snapshots and iterators share the image they were taken from (copy-on-write): a write while
// one is alive copies the live view first, so they never observe later writes.
// Thread-safety: none. MemEngine is deterministic and meant for single-threaded use (the
// simulator); unlike RocksDbEngine it must not be shared between threads.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/random.h"
#include "storage/engine.h"

namespace herald::storage {

// What MemEngine has done since it was created, for tests and benchmarks.
struct MemEngineCounters {
  std::uint64_t writes = 0;               // successful write() calls
  std::uint64_t syncs = 0;                // successful write() calls with sync=true
  std::uint64_t bytes_written = 0;        // sum of WriteBatch::byte_size() of successful writes
  std::uint64_t failed_writes = 0;        // writes rejected by fail_writes()
  std::uint64_t full_writes = 0;          // writes rejected because the disk was full
  std::uint64_t crashes = 0;              // crash() calls
  std::uint64_t lost_batches = 0;         // unsynced batches dropped by crash()
  std::uint64_t lost_synced_batches = 0;  // synced batches dropped by crash_lying()
};

// How many of its latest writes a lying MemEngine can roll back.
inline constexpr std::size_t kMaxHistoryBatches = 256;

class MemEngine final : public Engine {
 public:
  MemEngine();

  [[nodiscard]] Result<std::optional<std::string>> get(Space space,
                                                       std::string_view key) const override;
  [[nodiscard]] std::unique_ptr<Iterator> scan(Space space, std::string_view begin,
                                               std::string_view end) const override;
  // Fails with kResourceExhausted while the disk is full (set_full), else with kIOError while
  // fail_writes() has failures pending; a failed write changes nothing.
  [[nodiscard]] Status write(const WriteBatch& batch, bool sync) override;
  [[nodiscard]] std::unique_ptr<Reader> snapshot() const override;

  // Simulates a power loss and restart: the live view becomes the durable image plus the first k
  // unsynced batches, k uniform in [0, unsynced_batches()]. What survives is durable afterwards.
  void crash(Rng& rng);
  // From now on, remembers the latest kMaxHistoryBatches writes, so that crash_lying() can drop
  // synced ones; what was written before is never lost.
  void record_history();
  // Simulates a power loss on a disk that acknowledged syncs it had not made durable: the store
  // becomes what it held after the first k remembered writes, k uniform over the positions before
  // the last synced one, so at least one synced write is lost. Returns the number of synced writes
  // lost; 0 (and a plain crash(rng)) when no synced write is remembered.
  std::uint64_t crash_lying(Rng& rng);
  // The next `count` writes fail with kIOError and change nothing.
  void fail_writes(std::uint64_t count);
  // While `full`, every write fails with kResourceExhausted and changes nothing (a disk with no
  // space left); failures pending from fail_writes() wait until space returns.
  void set_full(bool full) { full_ = full; }
  [[nodiscard]] bool full() const { return full_; }
  // Flips one bit of the value stored under `key`, in the live view and, when it holds the same
  // value, in the durable image. Returns false (and changes nothing) if the key is absent or its
  // value is empty.
  [[nodiscard]] bool corrupt(Space space, std::string_view key);

  [[nodiscard]] const MemEngineCounters& counters() const { return counters_; }
  // Batches written since the last sync, which a crash may lose.
  [[nodiscard]] std::size_t unsynced_batches() const { return unsynced_.size(); }

  // One Space: keys in bytewise order.
  using Table = std::map<std::string, std::string, std::less<>>;
  using Image = std::array<Table, kSpaceCount>;

 private:
  // The live image, copied first if a snapshot or iterator still shares it.
  Image& mutable_live();

  std::shared_ptr<Image> live_;
  Image durable_;
  std::vector<WriteBatch> unsynced_;
  // With record_history(): the store before the first remembered write, and those writes in
  // order (each with whether it was synced).
  bool recording_ = false;
  Image history_base_;
  std::vector<std::pair<WriteBatch, bool>> history_;
  std::uint64_t failures_pending_ = 0;
  bool full_ = false;
  MemEngineCounters counters_;
};

}  // namespace herald::storage
