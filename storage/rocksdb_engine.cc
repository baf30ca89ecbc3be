#include "storage/rocksdb_engine.h"

#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/listener.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cstdarg>
#include <cstdio>
#include <string_view>
#include <utility>
#include <vector>

#include "base/assert.h"
#include "storage/wal_check.h"

namespace herald::storage {
namespace {

// Bloom filter density for point lookups in the state column family.
constexpr double kBloomBitsPerKey = 10.0;
// The memtable bloom filter's size as a fraction of write_buffer_size (RocksDB's unit).
constexpr double kMemtableBloomRatio = 0.02;
// Background syncing of table files while they are written, so that a flush or compaction does
// not end with one large fsync.
constexpr std::uint64_t kBytesPerSync = 1 * kMiB;
// Longest line of RocksDB's log passed on to Herald's; the rest of a longer one is cut.
constexpr std::size_t kMaxLogLineBytes = 1024;

constexpr std::array<Space, kSpaceCount> kAllSpaces = {Space::kLog, Space::kMeta, Space::kState};

Status to_status(const rocksdb::Status& s, std::string_view context) {
  if (s.ok()) {
    return Status::ok_status();
  }
  std::string message = std::string(context) + ": " + s.ToString();
  if (s.IsCorruption()) {
    return Status::corruption(std::move(message));
  }
  if (s.IsInvalidArgument()) {
    return Status::invalid_argument(std::move(message));
  }
  if (s.IsNoSpace()) {
    // The file system is full: RocksDB stops taking writes until it is reopened.
    return Status::resource_exhausted(std::move(message));
  }
  return Status::io_error(std::move(message));
}

rocksdb::Slice to_slice(std::string_view s) {
  return {s.data(), s.size()};
}
std::string_view to_view(const rocksdb::Slice& s) {
  return {s.data(), s.size()};
}

// After a background error (a full disk, above all) RocksDB may try to recover on its own: resume
// writes, flush, sync the WAL that failed. Herald does not want that behind its back: the replica
// halts or stops on the error it was returned (server/node_host.h), and a restart recovers from
// the log. RocksDB's own recovery also reuses a WAL writer that saw the error, which its
// assertions refuse (the process aborts).
class NoAutomaticRecovery final : public rocksdb::EventListener {
 public:
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason /*reason*/, rocksdb::Status /*error*/,
                            bool* auto_recovery) override {
    *auto_recovery = false;
  }
};

// RocksDB's own log goes to Herald's log instead of a LOG file in the data directory: on a full
// disk a failed append to that file trips an assertion of RocksDB's (the process aborts) the next
// time RocksDB logs, which it does while reporting the very write that found the disk full. Its
// informational lines (flushes, compactions, statistics) are debug lines here.
class HeraldLogger final : public rocksdb::Logger {
 public:
  HeraldLogger() : rocksdb::Logger(rocksdb::InfoLogLevel::INFO_LEVEL) {}

  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, ap);
  }
  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override {
    if (level < GetInfoLogLevel()) {
      return;
    }
    std::array<char, kMaxLogLineBytes> line{};
    const int n = std::vsnprintf(line.data(), line.size(), format, ap);
    if (n < 0) {
      return;
    }
    const std::string_view text(line.data(),
                                std::min(static_cast<std::size_t>(n), line.size() - 1));
    switch (level) {
      case rocksdb::InfoLogLevel::DEBUG_LEVEL:
      case rocksdb::InfoLogLevel::INFO_LEVEL:
      case rocksdb::InfoLogLevel::HEADER_LEVEL: spdlog::debug("rocksdb: {}", text); break;
      case rocksdb::InfoLogLevel::WARN_LEVEL: spdlog::warn("rocksdb: {}", text); break;
      case rocksdb::InfoLogLevel::ERROR_LEVEL:
      case rocksdb::InfoLogLevel::FATAL_LEVEL:
      case rocksdb::InfoLogLevel::NUM_INFO_LOG_LEVELS: spdlog::error("rocksdb: {}", text); break;
    }
  }
};

rocksdb::DBOptions make_db_options(const RocksDbOptions& options) {
  rocksdb::DBOptions db;
  db.listeners.push_back(std::make_shared<NoAutomaticRecovery>());
  db.info_log = std::make_shared<HeraldLogger>();
  db.create_if_missing = options.create_if_missing;
  db.create_missing_column_families = true;
  // Verify as much as RocksDB can on open and in the background; a replicated state machine must
  // stop rather than serve damaged data.
  db.paranoid_checks = true;
  // After a crash the WAL may end in a torn record (a write that never completed): replay stops
  // there, and the store holds a prefix of the batches written, which is what Engine promises.
  // A record damaged in the middle is another matter: stopping there would silently roll back
  // synced writes after it (a durable vote, say), so open fails with a corruption error instead.
  // RocksDB reports most such damage; check_wal_files() (storage/wal_check.h), run before the
  // open, catches the two kinds it takes for a torn tail.
  db.wal_recovery_mode = rocksdb::WALRecoveryMode::kTolerateCorruptedTailRecords;
  db.max_background_jobs = options.max_background_jobs;
  db.bytes_per_sync = kBytesPerSync;
  // Restart replays the WAL of every memtable not yet flushed. The meta space is written rarely
  // and would otherwise pin old WAL files; this bound flushes whichever space holds the oldest.
  db.max_total_wal_size = options.max_total_wal_bytes;
  // Serve right after replaying the WAL; the recovered memtables are flushed in the background
  // as usual instead of before open returns.
  db.avoid_flush_during_recovery = true;
  return db;
}

rocksdb::ColumnFamilyOptions make_cf_options(Space space, const RocksDbOptions& options,
                                             const std::shared_ptr<rocksdb::Cache>& cache) {
  rocksdb::ColumnFamilyOptions cf;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = cache;  // block checksums stay on (the default)
  if (space == Space::kLog) {
    // The log is written sequentially and read mostly from the LogStore's cache: a small
    // memtable, and no compression of entries that are usually gone before compaction.
    cf.write_buffer_size = options.log_write_buffer_bytes;
    cf.compression = rocksdb::kNoCompression;
  } else {
    cf.write_buffer_size = options.state_write_buffer_bytes;
    table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(kBloomBitsPerKey));
    // Most point reads ask for keys the memtable does not hold (state written before the last
    // flush, or absent keys such as a fresh dedup record): a bloom filter over the memtable's
    // whole keys answers those without a skiplist search.
    cf.memtable_prefix_bloom_size_ratio = kMemtableBloomRatio;
    cf.memtable_whole_key_filtering = true;
  }
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  return cf;
}

// Cursor over one column family; owns the upper bound its ReadOptions points at.
class RocksIterator final : public Iterator {
 public:
  RocksIterator(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf, const rocksdb::Snapshot* snap,
                std::string_view begin, std::string_view end)
      : upper_bound_(end), upper_bound_slice_(upper_bound_) {
    rocksdb::ReadOptions read;
    read.snapshot = snap;
    if (!upper_bound_.empty()) {
      read.iterate_upper_bound = &upper_bound_slice_;
    }
    it_.reset(db->NewIterator(read, cf));
    it_->Seek(to_slice(begin));
  }
  RocksIterator(const RocksIterator&) = delete;
  RocksIterator& operator=(const RocksIterator&) = delete;

  [[nodiscard]] bool valid() const override { return it_->Valid(); }
  void next() override { it_->Next(); }
  [[nodiscard]] std::string_view key() const override { return to_view(it_->key()); }
  [[nodiscard]] std::string_view value() const override { return to_view(it_->value()); }
  [[nodiscard]] Status status() const override { return to_status(it_->status(), "scan"); }

 private:
  const std::string upper_bound_;
  const rocksdb::Slice upper_bound_slice_;
  std::unique_ptr<rocksdb::Iterator> it_;  // declared last: destroyed before the bound
};

Result<std::optional<std::string>> read_key(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf,
                                            const rocksdb::Snapshot* snap, std::string_view key) {
  rocksdb::ReadOptions read;
  read.snapshot = snap;
  std::string value;
  const rocksdb::Status s = db->Get(read, cf, to_slice(key), &value);
  if (s.IsNotFound()) {
    return std::optional<std::string>();
  }
  HERALD_RETURN_IF_ERROR(to_status(s, "get"));
  return std::optional<std::string>(std::move(value));
}

// A Reader pinned to a RocksDB snapshot, which it releases when destroyed.
class RocksSnapshot final : public Reader {
 public:
  RocksSnapshot(rocksdb::DB* db, std::array<rocksdb::ColumnFamilyHandle*, kSpaceCount> handles)
      : db_(db), handles_(handles), snap_(db->GetSnapshot()) {}
  ~RocksSnapshot() override { db_->ReleaseSnapshot(snap_); }
  RocksSnapshot(const RocksSnapshot&) = delete;
  RocksSnapshot& operator=(const RocksSnapshot&) = delete;

  [[nodiscard]] Result<std::optional<std::string>> get(Space space,
                                                       std::string_view key) const override {
    return read_key(db_, handles_[static_cast<std::size_t>(space)], snap_, key);
  }
  [[nodiscard]] std::unique_ptr<Iterator> scan(Space space, std::string_view begin,
                                               std::string_view end) const override {
    return std::make_unique<RocksIterator>(db_, handles_[static_cast<std::size_t>(space)], snap_,
                                           begin, end);
  }

 private:
  rocksdb::DB* db_;
  std::array<rocksdb::ColumnFamilyHandle*, kSpaceCount> handles_;
  const rocksdb::Snapshot* snap_;
};

}  // namespace

Result<std::unique_ptr<RocksDbEngine>> RocksDbEngine::open(const std::string& dir,
                                                           const RocksDbOptions& options) {
  HERALD_RETURN_IF_ERROR(check_wal_files(dir));
  const auto cache = rocksdb::NewLRUCache(options.block_cache_bytes);
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  descriptors.emplace_back(rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions());
  for (const Space space : kAllSpaces) {
    descriptors.emplace_back(space_name(space), make_cf_options(space, options, cache));
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw_db = nullptr;
  const rocksdb::Status s =
      rocksdb::DB::Open(make_db_options(options), dir, descriptors, &handles, &raw_db);
  HERALD_RETURN_IF_ERROR(to_status(s, "open " + dir));
  HERALD_ASSERT(handles.size() == descriptors.size(), "one handle per column family");
  Handles spaces{};
  for (std::size_t i = 0; i < spaces.size(); ++i) {
    spaces[i] = handles[i + 1];
  }
  return std::unique_ptr<RocksDbEngine>(
      new RocksDbEngine(std::unique_ptr<rocksdb::DB>(raw_db), handles[0], spaces, cache));
}

RocksDbEngine::RocksDbEngine(std::unique_ptr<rocksdb::DB> db,
                             rocksdb::ColumnFamilyHandle* default_cf, const Handles& handles,
                             std::shared_ptr<rocksdb::Cache> cache)
    : db_(std::move(db)), default_cf_(default_cf), handles_(handles), cache_(std::move(cache)) {}

RocksDbEngine::~RocksDbEngine() {
  for (rocksdb::ColumnFamilyHandle* cf : handles_) {
    // Destroying a handle of an open database cannot fail in a way worth reporting at shutdown.
    db_->DestroyColumnFamilyHandle(cf).PermitUncheckedError();
  }
  db_->DestroyColumnFamilyHandle(default_cf_).PermitUncheckedError();
  // Close() syncs nothing beyond what was written; unsynced writes keep their crash semantics.
  db_->Close().PermitUncheckedError();
}

rocksdb::ColumnFamilyHandle* RocksDbEngine::handle(Space space) const {
  const auto i = static_cast<std::size_t>(space);
  HERALD_ASSERT(i < handles_.size(), "unknown Space");
  return handles_[i];
}

Result<std::optional<std::string>> RocksDbEngine::get(Space space, std::string_view key) const {
  return read_key(db_.get(), handle(space), nullptr, key);
}

std::unique_ptr<Iterator> RocksDbEngine::scan(Space space, std::string_view begin,
                                              std::string_view end) const {
  return std::make_unique<RocksIterator>(db_.get(), handle(space), nullptr, begin, end);
}

std::unique_ptr<Reader> RocksDbEngine::snapshot() const {
  return std::make_unique<RocksSnapshot>(db_.get(), handles_);
}

Status RocksDbEngine::write(const WriteBatch& batch, bool sync) {
  rocksdb::WriteBatch rb;
  for (const WriteBatch::Op& op : batch.ops()) {
    rocksdb::ColumnFamilyHandle* cf = handle(op.space);
    rocksdb::Status s;
    switch (op.type) {
      case WriteBatch::OpType::kPut: s = rb.Put(cf, op.key, op.value); break;
      case WriteBatch::OpType::kDelete: s = rb.Delete(cf, op.key); break;
      case WriteBatch::OpType::kDeleteRange: s = rb.DeleteRange(cf, op.key, op.value); break;
    }
    HERALD_RETURN_IF_ERROR(to_status(s, "batch"));
  }
  rocksdb::WriteOptions write;
  write.sync = sync;
  return to_status(db_->Write(write, &rb), "write");
}

Status RocksDbEngine::flush() {
  rocksdb::FlushOptions options;
  options.wait = true;
  const std::vector<rocksdb::ColumnFamilyHandle*> all(handles_.begin(), handles_.end());
  return to_status(db_->Flush(options, all), "flush");
}

Result<std::uint64_t> RocksDbEngine::approximate_bytes(Space space, std::string_view begin,
                                                       std::string_view end) const {
  // An empty end means "to the end": a long run of 0xff bytes sorts after every key Herald
  // writes (log keys are 8 bytes, meta and state keys are short names), which is close enough
  // for an estimate.
  constexpr std::size_t kEndSentinelBytes = 64;
  const std::string end_key =
      end.empty() ? std::string(kEndSentinelBytes, '\xff') : std::string(end);
  rocksdb::SizeApproximationOptions options;
  options.include_memtables = true;
  options.include_files = true;
  const rocksdb::Range range(to_slice(begin), to_slice(end_key));
  std::uint64_t bytes = 0;
  HERALD_RETURN_IF_ERROR(to_status(
      db_->GetApproximateSizes(options, handle(space), &range, 1, &bytes), "approximate sizes"));
  return bytes;
}

EngineMemory RocksDbEngine::memory() const {
  EngineMemory m;
  m.block_cache_bytes = cache_->GetUsage();
  m.block_cache_capacity = cache_->GetCapacity();
  // An unknown property leaves the figure at 0: these are estimates for operators.
  std::uint64_t value = 0;
  if (db_->GetAggregatedIntProperty(rocksdb::DB::Properties::kCurSizeAllMemTables, &value)) {
    m.memtable_bytes = value;
  }
  if (db_->GetAggregatedIntProperty(rocksdb::DB::Properties::kEstimateTableReadersMem, &value)) {
    m.table_readers_bytes = value;
  }
  const auto live_bytes = [this](Space space) {
    std::uint64_t total = 0;
    std::uint64_t part = 0;
    for (const auto& property : {rocksdb::DB::Properties::kEstimateLiveDataSize,
                                 rocksdb::DB::Properties::kCurSizeAllMemTables}) {
      if (db_->GetIntProperty(handle(space), property, &part)) total += part;
    }
    return total;
  };
  m.state_bytes = live_bytes(Space::kState);
  m.log_bytes = live_bytes(Space::kLog);
  return m;
}

}  // namespace herald::storage
