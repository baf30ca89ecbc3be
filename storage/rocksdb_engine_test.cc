#include "storage/rocksdb_engine.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <memory>

#include "storage/test_util.h"

namespace herald::storage {
namespace {

using testing::get_or_absent;
using testing::KeyValues;
using testing::scan_all;
using testing::TempDir;

class RocksDbEngineTest : public ::testing::Test {
 protected:
  void SetUp() override { open(); }

  void open() {
    auto engine = RocksDbEngine::open(dir_.path(), RocksDbOptions{});
    ASSERT_TRUE(engine.ok()) << engine.status().to_string();
    engine_ = std::move(engine).value();
  }
  void reopen() {
    engine_.reset();
    open();
  }
  // Writes meta keys k0..k<count-1>, 100 bytes each, one synced batch per key.
  void write_synced_values(int count) {
    for (int i = 0; i < count; ++i) {
      WriteBatch batch;
      batch.put(Space::kMeta, "k" + std::to_string(i), std::string(100, 'v'));
      write(batch, /*sync=*/true);
    }
  }
  void write(const WriteBatch& batch, bool sync = false) {
    const Status s = engine_->write(batch, sync);
    ASSERT_TRUE(s.ok()) << s.to_string();
  }

  TempDir dir_;
  std::unique_ptr<RocksDbEngine> engine_;
};

TEST_F(RocksDbEngineTest, MemoryReportsTheBoundsItIsHeldTo) {
  const EngineMemory empty = engine_->memory();
  EXPECT_EQ(empty.block_cache_capacity, RocksDbOptions{}.block_cache_bytes);
  WriteBatch batch;
  for (int i = 0; i < 1000; ++i) {
    batch.put(Space::kState, "k" + std::to_string(i), std::string(100, 'v'));
  }
  ASSERT_TRUE(engine_->write(batch, /*sync=*/false).ok());
  const EngineMemory written = engine_->memory();
  EXPECT_GT(written.memtable_bytes, empty.memtable_bytes);
  EXPECT_LE(written.block_cache_bytes, written.block_cache_capacity);
}

TEST_F(RocksDbEngineTest, AbsentKeyReadsAsNullopt) {
  const auto value = engine_->get(Space::kState, "nothing");
  ASSERT_TRUE(value.ok());
  EXPECT_FALSE(value->has_value());
}

TEST_F(RocksDbEngineTest, MultiSpaceBatchIsAppliedWhole) {
  WriteBatch batch;
  batch.put(Space::kLog, "l", "1");
  batch.put(Space::kMeta, "m", "2");
  batch.put(Space::kState, "s", "3");
  batch.put(Space::kState, "s", "4");  // later ops in a batch win
  write(batch, /*sync=*/true);
  EXPECT_EQ(get_or_absent(*engine_, Space::kLog, "l"), "1");
  EXPECT_EQ(get_or_absent(*engine_, Space::kMeta, "m"), "2");
  EXPECT_EQ(get_or_absent(*engine_, Space::kState, "s"), "4");
  // Spaces are separate key ranges.
  EXPECT_EQ(get_or_absent(*engine_, Space::kState, "l"), "<absent>");
}

TEST_F(RocksDbEngineTest, SnapshotIsIsolatedFromLaterWrites) {
  WriteBatch before;
  before.put(Space::kState, "a", "old");
  before.put(Space::kState, "b", "kept");
  write(before);
  const std::unique_ptr<Reader> snap = engine_->snapshot();
  WriteBatch after;
  after.put(Space::kState, "a", "new");
  after.del(Space::kState, "b");
  after.put(Space::kState, "c", "added");
  write(after);

  EXPECT_EQ(scan_all(*snap, Space::kState), (KeyValues{{"a", "old"}, {"b", "kept"}}));
  EXPECT_EQ(get_or_absent(*snap, Space::kState, "c"), "<absent>");
  EXPECT_EQ(scan_all(*engine_, Space::kState), (KeyValues{{"a", "new"}, {"c", "added"}}));
}

TEST_F(RocksDbEngineTest, ReopenKeepsSyncedData) {
  WriteBatch batch;
  batch.put(Space::kMeta, "hard_state", "hs");
  batch.put(Space::kLog, "00000001", "entry");
  write(batch, /*sync=*/true);
  reopen();
  EXPECT_EQ(get_or_absent(*engine_, Space::kMeta, "hard_state"), "hs");
  EXPECT_EQ(get_or_absent(*engine_, Space::kLog, "00000001"), "entry");
}

// The newest WAL file of the database in `dir` (empty when there is none).
std::filesystem::path newest_wal(const std::string& dir) {
  std::filesystem::path newest;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() == ".log" &&
        (newest.empty() || entry.path().filename() > newest.filename())) {
      newest = entry.path();
    }
  }
  return newest;
}

// Flips one byte in the middle of the newest WAL file of `dir`; false when there is none.
bool damage_wal_middle(const std::string& dir) {
  const std::filesystem::path newest = newest_wal(dir);
  if (newest.empty()) return false;
  std::fstream f(newest, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(0, std::ios::end);
  const std::streamoff size = f.tellg();
  if (size < 4096) return false;
  const std::streamoff middle = size / 2;
  f.seekg(middle);
  char byte = 0;
  f.read(&byte, 1);
  byte = static_cast<char>(~byte);
  f.seekp(middle);
  f.write(&byte, 1);
  return f.good();
}

TEST_F(RocksDbEngineTest, WalDamagedInTheMiddleFailsOpenInsteadOfDroppingSyncedWrites) {
  // Synced writes after the damage (a vote, say) must never be silently rolled back.
  write_synced_values(200);
  engine_.reset();
  ASSERT_TRUE(damage_wal_middle(dir_.path()));
  auto reopened = RocksDbEngine::open(dir_.path(), RocksDbOptions{});
  ASSERT_FALSE(reopened.ok()) << "opened on a prefix, dropping synced writes";
  EXPECT_EQ(reopened.status().code(), Code::kCorruption) << reopened.status().to_string();
}

TEST_F(RocksDbEngineTest, WalTornAtItsTailOpensOnThePrefix) {
  // A crash in the middle of the last write leaves a torn record: open replays up to it.
  write_synced_values(50);
  engine_.reset();
  const std::filesystem::path newest = newest_wal(dir_.path());
  ASSERT_FALSE(newest.empty());
  constexpr std::uintmax_t kTornBytes = 20;  // inside the last record (about 120 bytes)
  std::filesystem::resize_file(newest, std::filesystem::file_size(newest) - kTornBytes);
  open();
  EXPECT_EQ(get_or_absent(*engine_, Space::kMeta, "k0"), std::string(100, 'v'));
  EXPECT_EQ(get_or_absent(*engine_, Space::kMeta, "k48"), std::string(100, 'v'));
  EXPECT_EQ(get_or_absent(*engine_, Space::kMeta, "k49"), "<absent>");
}

TEST_F(RocksDbEngineTest, DeleteRangeRemovesHalfOpenRange) {
  WriteBatch fill;
  for (const char* key : {"a", "b", "c", "d"}) {
    fill.put(Space::kLog, key, key);
  }
  write(fill);
  WriteBatch drop;
  drop.delete_range(Space::kLog, "b", "d");
  write(drop);
  EXPECT_EQ(scan_all(*engine_, Space::kLog), (KeyValues{{"a", "a"}, {"d", "d"}}));
}

TEST_F(RocksDbEngineTest, PutAfterDeleteRangeInOneBatchSurvives) {
  WriteBatch fill;
  fill.put(Space::kLog, "b", "old");
  write(fill);
  WriteBatch batch;
  batch.delete_range(Space::kLog, "a", "z");
  batch.put(Space::kLog, "b", "new");
  write(batch);
  EXPECT_EQ(scan_all(*engine_, Space::kLog), (KeyValues{{"b", "new"}}));
}

TEST_F(RocksDbEngineTest, ScanStopsAtUpperBoundAndEmptyEndMeansAll) {
  WriteBatch fill;
  for (const char* key : {"a", "b", "c"}) {
    fill.put(Space::kState, key, key);
  }
  write(fill);
  EXPECT_EQ(scan_all(*engine_, Space::kState, "b", "c"), (KeyValues{{"b", "b"}}));
  EXPECT_EQ(scan_all(*engine_, Space::kState, "b", ""), (KeyValues{{"b", "b"}, {"c", "c"}}));
  EXPECT_TRUE(scan_all(*engine_, Space::kState, "d", "").empty());
}

TEST_F(RocksDbEngineTest, FlushKeepsDataAndSizesAreReported) {
  WriteBatch fill;
  const std::string value(4096, 'x');
  for (int i = 0; i < 64; ++i) {
    fill.put(Space::kState, "key" + std::to_string(i), value);
  }
  write(fill);
  ASSERT_TRUE(engine_->flush().ok());
  const auto bytes = engine_->approximate_bytes(Space::kState, "", "");
  ASSERT_TRUE(bytes.ok()) << bytes.status().to_string();
  EXPECT_GT(*bytes, 0U);
  reopen();
  EXPECT_EQ(get_or_absent(*engine_, Space::kState, "key7"), value);
}

TEST(RocksDbEngineOpenTest, MissingDatabaseWithoutCreateIsInvalidArgument) {
  TempDir dir;
  RocksDbOptions options;
  options.create_if_missing = false;
  const auto engine = RocksDbEngine::open(dir.path() + "/absent", options);
  ASSERT_FALSE(engine.ok());
  EXPECT_EQ(engine.status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace herald::storage
