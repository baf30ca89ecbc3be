// RocksDbEngine: the on-disk Engine, one RocksDB column family per Space.
//
// Layout: the column families "log", "meta" and "state" (plus RocksDB's mandatory "default",
// unused) live in one database directory and share one write-ahead log, so a WriteBatch spanning
// several Spaces is atomic. Missing column families are created on open.
//
// Durability: write(batch, sync=true) fsyncs the write-ahead log before returning, which also
// makes every earlier write durable. Unsynced writes may be lost on power failure; recovery uses
// point-in-time WAL recovery, so what survives is always a prefix of the batches written (see
// docs/storage-format.md).
//
// Ownership: the engine owns the database; Readers from snapshot() and Iterators from scan() must
// be destroyed before the engine. Thread-safety: every method may be called from any thread.
// Errors: RocksDB's Corruption maps to kCorruption, IOError to kIOError, InvalidArgument to
// kInvalidArgument, anything else to kIOError.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "storage/engine.h"

namespace rocksdb {
class ColumnFamilyHandle;
class Cache;
class DB;
}  // namespace rocksdb

namespace herald::storage {

inline constexpr std::size_t kMiB = std::size_t{1} << 20U;

struct RocksDbOptions {
  // Fails with kInvalidArgument when false and `dir` holds no database.
  bool create_if_missing = true;
  // Memtable size of the log column family: raft entries are short-lived (appended, applied,
  // compacted away), so a small buffer keeps memory and recovery replay short.
  std::size_t log_write_buffer_bytes = 16 * kMiB;
  // Memtable size of the state and meta column families.
  std::size_t state_write_buffer_bytes = 32 * kMiB;
  // Bound on the WAL kept for unflushed memtables, which a restart must replay: it bounds
  // restart time after a crash (replay costs about 25 ms per MiB on the reference machine, so 4
  // MiB keeps a restart's first timer fire near 200 ms; 2 MiB cost the messaging path 5-18 %
  // more CPU per message in flushes, 8 MiB doubles the worst replay). docs/benchmarks.md,
  // "Workflow crash recovery".
  std::size_t max_total_wal_bytes = 4 * kMiB;
  // Block cache shared by all column families.
  std::size_t block_cache_bytes = 128 * kMiB;
  // Flush and compaction threads.
  int max_background_jobs = 2;
};

// Where RocksDB's memory goes; every figure is bounded by RocksDbOptions (block cache capacity;
// write buffers per column family, at most two each while one flushes).
struct EngineMemory {
  std::uint64_t block_cache_bytes = 0;     // in use
  std::uint64_t block_cache_capacity = 0;  // RocksDbOptions::block_cache_bytes
  std::uint64_t memtable_bytes = 0;        // active and immutable memtables, every column family
  // Index and filter blocks of open table files, held outside the cache: they grow with the
  // data stored (charging them to the cache measured a 5x worse p99 under load).
  std::uint64_t table_readers_bytes = 0;
  // Estimated live data of the state space (what a snapshot streams) and of the raft log: table
  // files' live data plus memtables, before compression is undone.
  std::uint64_t state_bytes = 0;
  std::uint64_t log_bytes = 0;
};

class RocksDbEngine final : public Engine {
 public:
  // Opens (or creates) the database in `dir`, replaying its write-ahead log. A torn last record
  // (a crash during a write) is dropped; any other damage to the log, or to the database's other
  // files, fails with kCorruption saying what is damaged, rather than open on a prefix that lacks
  // synced writes.
  [[nodiscard]] static Result<std::unique_ptr<RocksDbEngine>> open(const std::string& dir,
                                                                   const RocksDbOptions& options);
  ~RocksDbEngine() override;
  RocksDbEngine(const RocksDbEngine&) = delete;
  RocksDbEngine& operator=(const RocksDbEngine&) = delete;

  [[nodiscard]] Result<std::optional<std::string>> get(Space space,
                                                       std::string_view key) const override;
  [[nodiscard]] std::unique_ptr<Iterator> scan(Space space, std::string_view begin,
                                               std::string_view end) const override;
  [[nodiscard]] Status write(const WriteBatch& batch, bool sync) override;
  [[nodiscard]] std::unique_ptr<Reader> snapshot() const override;

  // Flushes every column family's memtable to table files (and so shortens the next recovery).
  [[nodiscard]] Status flush();
  // Approximate on-disk plus in-memory bytes of the keys in [begin, end) of `space`; cheap
  // (no data is read). An empty `end` means "to the end of the Space".
  [[nodiscard]] Result<std::uint64_t> approximate_bytes(Space space, std::string_view begin,
                                                        std::string_view end) const;
  // Current memory use; cheap (reads counters). Thread-safe.
  [[nodiscard]] EngineMemory memory() const;

 private:
  using Handles = std::array<rocksdb::ColumnFamilyHandle*, kSpaceCount>;

  RocksDbEngine(std::unique_ptr<rocksdb::DB> db, rocksdb::ColumnFamilyHandle* default_cf,
                const Handles& handles, std::shared_ptr<rocksdb::Cache> cache);
  [[nodiscard]] rocksdb::ColumnFamilyHandle* handle(Space space) const;

  std::unique_ptr<rocksdb::DB> db_;
  rocksdb::ColumnFamilyHandle* default_cf_;  // owned; destroyed before db_
  Handles handles_;                          // owned; destroyed before db_
  std::shared_ptr<rocksdb::Cache> cache_;    // the block cache shared by every column family
};

}  // namespace herald::storage
