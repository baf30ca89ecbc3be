#include "storage/rocksdb_engine.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "storage/test_util.h"
#include "storage/wal_check.h"

namespace herald::storage {
namespace {

using testing::get_or_absent;
using testing::KeyValues;
using testing::newest_wal;
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

// RocksDB's WAL format (the LevelDB log format without recycling): 32 KiB blocks of physical
// records, each a 7-byte header (masked CRC-32C of type and payload: 4 bytes; payload length: 2
// bytes, little-endian; type: 1 byte) and the payload. A block's last bytes too short for a header
// are zero padding. The tests parse it to damage a chosen byte of a chosen record.
constexpr std::uintmax_t kWalHeaderBytes = 7;
constexpr std::uintmax_t kWalLengthOffset = 4;  // in the header, after the checksum
constexpr std::uint8_t kWalFullType = 1;        // a record holding one whole write batch

struct WalRecord {
  std::uintmax_t offset = 0;  // of the header in the file
  std::uintmax_t payload_bytes = 0;
  std::uint8_t type = 0;

  [[nodiscard]] std::uintmax_t payload_middle() const {
    return offset + kWalHeaderBytes + payload_bytes / 2;
  }
};

std::string read_whole_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The complete physical records of the WAL file at `path`, in file order.
std::vector<WalRecord> wal_records(const std::filesystem::path& path) {
  const std::string bytes = read_whole_file(path);
  std::vector<WalRecord> records;
  std::uintmax_t pos = 0;
  while (pos + kWalHeaderBytes <= bytes.size()) {
    const std::uintmax_t block_left = kWalBlockBytes - pos % kWalBlockBytes;
    if (block_left < kWalHeaderBytes) {
      pos += block_left;  // the block's zero padding
      continue;
    }
    const auto byte_at = [&](std::uintmax_t i) { return static_cast<std::uint8_t>(bytes[i]); };
    WalRecord record;
    record.offset = pos;
    record.payload_bytes = byte_at(pos + kWalLengthOffset) +
                           (std::uintmax_t{byte_at(pos + kWalLengthOffset + 1)} << 8U);
    record.type = byte_at(pos + kWalHeaderBytes - 1);
    if (pos + kWalHeaderBytes + record.payload_bytes > bytes.size()) {
      break;  // a torn record
    }
    records.push_back(record);
    pos += kWalHeaderBytes + record.payload_bytes;
  }
  return records;
}

// How many table files (flushed memtables) the database in `dir` has.
int table_file_count(const std::string& dir) {
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    count += entry.path().extension() == ".sst" ? 1 : 0;
  }
  return count;
}

// Inverts the byte at `offset` of the file at `path`.
void flip_byte(const std::filesystem::path& path, std::uintmax_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  const auto pos = static_cast<std::streamoff>(offset);
  f.seekg(pos);
  char byte = 0;
  f.read(&byte, 1);
  byte = static_cast<char>(~byte);
  f.seekp(pos);
  f.write(&byte, 1);
  ASSERT_TRUE(f.good()) << "cannot damage " << path << " at " << offset;
}

// Overwrites `count` bytes at `offset` of the file at `path` with zeros.
void zero_bytes(const std::filesystem::path& path, std::uintmax_t offset, std::uintmax_t count) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(static_cast<std::streamoff>(offset));
  const std::string zeros(count, '\0');
  f.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
  ASSERT_TRUE(f.good()) << "cannot zero " << path << " at " << offset;
}

// Synced batches whose only durable copy is the WAL, for the damage tests below.
class RocksDbWalDamageTest : public RocksDbEngineTest {
 public:
  // Enough one-record batches for "early" and "late" to be far apart, few enough to stay in one
  // WAL block (about 130 bytes each) and far below a memtable, so nothing is flushed.
  static constexpr int kBatches = 200;
  static constexpr std::uintmax_t kValueBytes = 100;  // write_synced_values()

 protected:
  // Writes kBatches synced batches and closes the engine. Closing does not flush memtables (with
  // the WAL on, RocksDB flushes at close only for writes that skipped it), so the batches live
  // only in the WAL: this checks there is no table file, and one whole record per batch.
  void SetUp() override {
    RocksDbEngineTest::SetUp();
    write_synced_values(kBatches);
    engine_.reset();
    ASSERT_EQ(table_file_count(dir_.path()), 0) << "the memtables were flushed at close";
    wal_ = newest_wal(dir_.path());
    ASSERT_FALSE(wal_.empty());
    ASSERT_GE(std::filesystem::file_size(wal_), kBatches * kValueBytes);
    records_ = wal_records(wal_);
    ASSERT_EQ(records_.size(), static_cast<std::size_t>(kBatches));
    for (const WalRecord& record : records_) {
      ASSERT_EQ(record.type, kWalFullType) << "at offset " << record.offset;
      ASSERT_GT(record.payload_bytes, kValueBytes);
    }
  }

  // Reopens, expecting the open to fail with kCorruption rather than serve a prefix, and the
  // message to name the WAL file and the damaged record's offset.
  void expect_open_fails_with_corruption(const WalRecord& damaged) {
    auto reopened = RocksDbEngine::open(dir_.path(), RocksDbOptions{});
    ASSERT_FALSE(reopened.ok()) << "opened on a prefix, dropping synced writes after the damage";
    const std::string message = reopened.status().to_string();
    EXPECT_EQ(reopened.status().code(), Code::kCorruption) << message;
    EXPECT_NE(message.find("write-ahead log " + wal_.string()), std::string::npos) << message;
    EXPECT_NE(message.find("damaged at byte " + std::to_string(damaged.offset) + " "),
              std::string::npos)
        << message;
  }

  // Expects batches k0..k<present-1> and no later one.
  void expect_prefix(int present) {
    for (int i = 0; i < kBatches; ++i) {
      const std::string key = "k" + std::to_string(i);
      const std::string expected = i < present ? std::string(kValueBytes, 'v') : "<absent>";
      ASSERT_EQ(get_or_absent(*engine_, Space::kMeta, key), expected) << key;
    }
  }

  std::filesystem::path wal_;
  std::vector<WalRecord> records_;
};

constexpr int kEarly = RocksDbWalDamageTest::kBatches / 4;

TEST_F(RocksDbWalDamageTest, PayloadDamagedBeforeLaterRecordsFailsOpenWithCorruption) {
  // Synced writes after the damage (a vote, say) must never be silently rolled back.
  ASSERT_NO_FATAL_FAILURE(flip_byte(wal_, records_[kEarly].payload_middle()));
  ASSERT_NO_FATAL_FAILURE(expect_open_fails_with_corruption(records_[kEarly]));
  // A failed open changes nothing on disk that would let a second attempt succeed.
  ASSERT_NO_FATAL_FAILURE(expect_open_fails_with_corruption(records_[kEarly]));
}

TEST_F(RocksDbWalDamageTest, ChecksumDamagedBeforeLaterRecordsFailsOpenWithCorruption) {
  ASSERT_NO_FATAL_FAILURE(flip_byte(wal_, records_[kEarly].offset));
  ASSERT_NO_FATAL_FAILURE(expect_open_fails_with_corruption(records_[kEarly]));
}

TEST_F(RocksDbWalDamageTest, LengthRunningPastTheFileBeforeLaterRecordsFailsOpenWithCorruption) {
  // The length's high byte: the record now claims to run past the end of the file, as a torn one
  // would. RocksDB 7.8 alone ends the replay there without an error (the file is one block).
  ASSERT_NO_FATAL_FAILURE(flip_byte(wal_, records_[kEarly].offset + kWalLengthOffset + 1));
  ASSERT_NO_FATAL_FAILURE(expect_open_fails_with_corruption(records_[kEarly]));
}

TEST_F(RocksDbWalDamageTest, LengthShortenedBeforeLaterRecordsFailsOpenWithCorruption) {
  ASSERT_NO_FATAL_FAILURE(flip_byte(wal_, records_[kEarly].offset + kWalLengthOffset));
  ASSERT_NO_FATAL_FAILURE(expect_open_fails_with_corruption(records_[kEarly]));
}

TEST_F(RocksDbWalDamageTest, TypeDamagedBeforeLaterRecordsFailsOpenWithCorruption) {
  ASSERT_NO_FATAL_FAILURE(flip_byte(wal_, records_[kEarly].offset + kWalHeaderBytes - 1));
  ASSERT_NO_FATAL_FAILURE(expect_open_fails_with_corruption(records_[kEarly]));
}

TEST_F(RocksDbWalDamageTest, HeaderZeroedBeforeLaterRecordsFailsOpenWithCorruption) {
  // A zeroed header reads as an unwritten tail: RocksDB 7.8 alone skips the rest of the block
  // without an error (and would resume in the next one, leaving a hole).
  ASSERT_NO_FATAL_FAILURE(zero_bytes(wal_, records_[kEarly].offset, kWalHeaderBytes));
  ASSERT_NO_FATAL_FAILURE(expect_open_fails_with_corruption(records_[kEarly]));
}

TEST_F(RocksDbWalDamageTest, LastRecordFailingItsChecksumFailsOpenWithCorruption) {
  // A whole last record is not torn: it may be a synced batch, so it is not dropped either.
  ASSERT_NO_FATAL_FAILURE(flip_byte(wal_, records_.back().payload_middle()));
  ASSERT_NO_FATAL_FAILURE(expect_open_fails_with_corruption(records_.back()));
}

TEST_F(RocksDbWalDamageTest, TornInsideItsLastRecordOpensWithEveryEarlierBatch) {
  // A crash in the middle of the last write leaves a torn record: open replays up to it.
  std::filesystem::resize_file(wal_, records_.back().payload_middle());
  open();
  expect_prefix(kBatches - 1);
}

TEST_F(RocksDbWalDamageTest, TornInsideItsLastHeaderOpensWithEveryEarlierBatch) {
  std::filesystem::resize_file(wal_, records_.back().offset + kWalLengthOffset);
  open();
  expect_prefix(kBatches - 1);
}

TEST_F(RocksDbWalDamageTest, TornToZerosAtItsTailOpensWithEveryEarlierBatch) {
  // A file system may show a write that never reached the disk as zeros.
  constexpr std::uintmax_t kZeroTailBytes = 100;
  std::filesystem::resize_file(wal_, records_.back().offset);
  std::filesystem::resize_file(wal_, records_.back().offset + kZeroTailBytes);
  open();
  expect_prefix(kBatches - 1);
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
