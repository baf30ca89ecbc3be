#include "storage/segment_log.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "base/random.h"
#include "storage/mem_log_fs.h"
#include "storage/test_util.h"

namespace herald::storage {
namespace {

using testing::TempDir;

// Small segments, so that a few dozen entries span several of them.
constexpr std::uint64_t kSmallSegmentBytes = 1024;
// The segment size of tests that need no rollover (the full size only costs memory and time).
constexpr std::uint64_t kTestSegmentBytes = std::uint64_t{64} << 10U;
// Seeds of the randomized crash test (HERALD_SEGMENT_LOG_SEEDS overrides, for long runs).
std::uint64_t random_seeds() {
  const char* env = std::getenv("HERALD_SEGMENT_LOG_SEEDS");
  return env != nullptr ? std::strtoull(env, nullptr, 10) : 60;
}

raftpb::Entry make_entry(raft::Index index, raft::Term term) {
  raftpb::Entry entry;
  entry.set_index(index);
  entry.set_term(term);
  entry.set_data("cmd" + std::to_string(index) + "t" + std::to_string(term));
  return entry;
}

std::vector<raftpb::Entry> make_entries(raft::Index lo, raft::Index hi, raft::Term term) {
  std::vector<raftpb::Entry> out;
  for (raft::Index i = lo; i < hi; ++i) out.push_back(make_entry(i, term));
  return out;
}

raftpb::HardState make_hard_state(raft::Term term, raft::NodeId vote, raft::Index commit) {
  raftpb::HardState hs;
  hs.set_term(term);
  hs.set_vote(vote);
  hs.set_commit(commit);
  return hs;
}

std::unique_ptr<SegmentLog> open_log(LogFs& fs, std::uint64_t segment_bytes = kTestSegmentBytes) {
  auto log = SegmentLog::open(&fs, SegmentLogOptions{segment_bytes});
  EXPECT_TRUE(log.ok()) << log.status().to_string();
  return log.ok() ? std::move(log).value() : nullptr;
}

// Entries [lo, hi) in one batch.
void append(SegmentLog& log, raft::Index lo, raft::Index hi, raft::Term term, bool sync = true) {
  ASSERT_TRUE(log.save(std::nullopt, std::nullopt, make_entries(lo, hi, term), sync).ok());
}

// Entries [lo, hi), one batch each.
void append_each(SegmentLog& log, raft::Index lo, raft::Index hi, raft::Term term,
                 bool sync = true) {
  for (raft::Index i = lo; i < hi; ++i) append(log, i, i + 1, term, sync);
}

// Every entry of the log read back, checked against make_entry with the log's own terms.
void expect_readable(const SegmentLog& log) {
  if (log.last_index() < log.first_index()) return;
  const auto got = log.entries(log.first_index(), log.last_index() + 1, UINT64_MAX);
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  ASSERT_EQ(got->size(), log.last_index() - log.first_index() + 1);
  for (const raftpb::Entry& e : *got) {
    EXPECT_EQ(e.data(), make_entry(e.index(), e.term()).data());
    EXPECT_EQ(*log.term(e.index()), e.term());
  }
}

std::vector<std::string> segment_files(const MemLogFs& fs) {
  std::vector<std::string> names = *fs.list();
  std::sort(names.begin(), names.end());
  return names;
}

TEST(SegmentLogTest, EmptyLogStartsWithOneSegment) {
  MemLogFs fs;
  const auto log = open_log(fs, kSegmentBytes);
  EXPECT_EQ(log->first_index(), 1U);
  EXPECT_EQ(log->last_index(), 0U);
  EXPECT_EQ(*log->term(0), 0U);
  EXPECT_EQ(segment_files(fs), std::vector<std::string>{segment_name(1)});
  EXPECT_EQ(fs.contents(segment_name(1)).size(), kSegmentBytes);
}

TEST(SegmentLogTest, AppendReadRestart) {
  MemLogFs fs;
  {
    const auto log = open_log(fs);
    ASSERT_TRUE(
        log->save(make_hard_state(3, 2, 4), std::nullopt, make_entries(1, 6, 3), true).ok());
    expect_readable(*log);
  }
  const auto log = open_log(fs);
  EXPECT_EQ(log->last_index(), 5U);
  EXPECT_EQ(log->hard_state().term(), 3U);
  EXPECT_EQ(log->hard_state().vote(), 2U);
  EXPECT_EQ(log->hard_state().commit(), 4U);
  EXPECT_EQ(*log->term(5), 3U);
  expect_readable(*log);
  EXPECT_EQ(log->recovery().torn_bytes_zeroed, 0U);
}

// A process that stops without a sync (one that halted on a full disk, say) leaves records in
// the page cache; the next process reads them, and a power loss after that must not take them
// back: opening syncs what it read before it trusts it.
TEST(SegmentLogTest, RecordsReadAtOpenAreSyncedBeforeTheyAreTrusted) {
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    MemLogFs fs;
    {
      const auto log = open_log(fs);
      append_each(*log, 1, 6, 1, /*sync=*/false);
    }
    {
      const auto log = open_log(fs);
      ASSERT_EQ(log->last_index(), 5U);
    }
    Rng rng(seed);
    fs.crash(rng);
    const auto log = open_log(fs);
    EXPECT_EQ(log->last_index(), 5U) << "seed " << seed;
    expect_readable(*log);
  }
}

TEST(SegmentLogTest, AppendReadRestartOnDisk) {
  TempDir dir;
  {
    auto fs = PosixLogFs::open_dir(dir.path());
    ASSERT_TRUE(fs.ok());
    const auto log = open_log(**fs, kSmallSegmentBytes);
    ASSERT_TRUE(log->save(make_hard_state(1, 1, 0), std::nullopt, {}, true).ok());
    append_each(*log, 1, 40, 1);
    EXPECT_GT(log->segment_count(), 1U);
  }
  auto fs = PosixLogFs::open_dir(dir.path());
  ASSERT_TRUE(fs.ok());
  const auto log = open_log(**fs, kSmallSegmentBytes);
  EXPECT_EQ(log->last_index(), 39U);
  EXPECT_EQ(log->hard_state().vote(), 1U);
  expect_readable(*log);
}

TEST(SegmentLogTest, TornTailOnDiskIsDroppedAndCleared) {
  TempDir dir;
  std::uint64_t torn_end = 0;
  {
    auto fs = PosixLogFs::open_dir(dir.path());
    ASSERT_TRUE(fs.ok());
    const auto log = open_log(**fs);
    append(*log, 1, 4, 1);
    append(*log, 4, 6, 1, /*sync=*/false);
  }
  // As a crash would leave it: the last bytes of the unsynced batch never reached the disk, and
  // a segment's creation was cut short.
  const std::string path = dir.path() + "/" + segment_name(1);
  {
    std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    torn_end = bytes.find_last_not_of('\0') + 1;
    file.seekp(static_cast<std::streamoff>(torn_end - 5));
    file.write("\0\0\0\0\0", 5);
  }
  std::ofstream(dir.path() + "/" + segment_name(2) + std::string(kSegmentTempSuffix)) << "x";
  auto fs = PosixLogFs::open_dir(dir.path());
  ASSERT_TRUE(fs.ok());
  const auto log = open_log(**fs);
  EXPECT_EQ(log->last_index(), 3U);
  EXPECT_GT(log->recovery().torn_bytes_zeroed, 0U);
  EXPECT_EQ(log->recovery().temp_files_removed, 1U);
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/" + segment_name(2) +
                                       std::string(kSegmentTempSuffix)));
  append(*log, 4, 5, 2);
  const auto reopened = open_log(**fs);
  EXPECT_EQ(reopened->last_index(), 4U);
  EXPECT_EQ(*reopened->term(4), 2U);
  expect_readable(*reopened);
}

// Open reads a segment a chunk at a time and copies only chunks with data: entries spanning
// several chunks and a stray byte in the last chunk of a large segment are all seen on disk.
TEST(SegmentLogTest, ALargeSegmentOnDiskIsReadWholeChunkByChunk) {
  constexpr std::uint64_t kLargeSegmentBytes = std::uint64_t{4} << 20U;
  constexpr std::size_t kBigPayloadBytes = 300'000;  // more than one read chunk
  TempDir dir;
  {
    auto fs = PosixLogFs::open_dir(dir.path());
    ASSERT_TRUE(fs.ok());
    const auto log = open_log(**fs, kLargeSegmentBytes);
    std::vector<raftpb::Entry> big;
    for (raft::Index i = 1; i <= 3; ++i) {
      big.push_back(make_entry(i, 1));
      big.back().set_data(std::string(kBigPayloadBytes, static_cast<char>('a' + i)));
    }
    ASSERT_TRUE(log->save(make_hard_state(1, 1, 3), std::nullopt, big, true).ok());
  }
  auto fs = PosixLogFs::open_dir(dir.path());
  ASSERT_TRUE(fs.ok());
  {
    const auto log = open_log(**fs, kLargeSegmentBytes);
    ASSERT_EQ(log->last_index(), 3U);
    const auto got = log->entries(1, 4, UINT64_MAX);
    ASSERT_TRUE(got.ok()) << got.status().to_string();
    for (const raftpb::Entry& e : *got) {
      EXPECT_EQ(e.data(), std::string(kBigPayloadBytes, static_cast<char>('a' + e.index())));
    }
    EXPECT_EQ(log->recovery().torn_bytes_zeroed, 0U);
  }
  // A byte a torn write left at the very end of the file: the tail is dirty up to there.
  const std::string path = dir.path() + "/" + segment_name(1);
  const auto size = static_cast<std::uint64_t>(std::filesystem::file_size(path));
  {
    std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(static_cast<std::streamoff>(size - 1));
    file.write("\x07", 1);
  }
  {
    const auto log = open_log(**fs, kLargeSegmentBytes);
    EXPECT_EQ(log->last_index(), 3U);
    EXPECT_GT(log->recovery().torn_bytes_zeroed, size - 3 * kBigPayloadBytes - 4096);
  }
  const auto reopened = open_log(**fs, kLargeSegmentBytes);
  EXPECT_EQ(reopened->recovery().torn_bytes_zeroed, 0U) << "the tail was cleared and synced";
}

TEST(SegmentLogTest, EntriesHonourTheByteBudget) {
  MemLogFs fs;
  const auto log = open_log(fs);
  append(*log, 1, 11, 1);
  const std::uint64_t one = make_entry(1, 1).ByteSizeLong();
  auto got = log->entries(1, 11, one * 3);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->size(), 3U);
  got = log->entries(1, 11, 0);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->size(), 1U);  // at least one
  EXPECT_EQ(log->entries(0, 2, 100).status().code(), Code::kCompacted);
  EXPECT_EQ(log->entries(1, 12, 100).status().code(), Code::kUnavailable);
  EXPECT_EQ(log->term(11).status().code(), Code::kUnavailable);
}

TEST(SegmentLogTest, ConflictingAppendReplacesTheSuffix) {
  MemLogFs fs;
  {
    const auto log = open_log(fs);
    append(*log, 1, 11, 1);
    append(*log, 6, 8, 2);  // a new leader's entries from 6 on: 8..10 must go
    EXPECT_EQ(log->last_index(), 7U);
    EXPECT_EQ(*log->term(5), 1U);
    EXPECT_EQ(*log->term(6), 2U);
    expect_readable(*log);
  }
  const auto log = open_log(fs);
  EXPECT_EQ(log->last_index(), 7U);
  EXPECT_EQ(*log->term(7), 2U);
  expect_readable(*log);
  append(*log, 8, 9, 2);
  EXPECT_EQ(log->last_index(), 8U);
}

TEST(SegmentLogTest, ConflictAcrossSegmentsReplacesTheSuffix) {
  MemLogFs fs;
  {
    const auto log = open_log(fs, kSmallSegmentBytes);
    append_each(*log, 1, 60, 1);
    ASSERT_GT(log->segment_count(), 2U);
    append(*log, 3, 5, 2);  // conflicts with entries held by older segments
  }
  const auto log = open_log(fs, kSmallSegmentBytes);
  EXPECT_EQ(log->last_index(), 4U);
  EXPECT_EQ(*log->term(3), 2U);
  EXPECT_EQ(*log->term(2), 1U);
  expect_readable(*log);
}

TEST(SegmentLogTest, SegmentRollover) {
  MemLogFs fs;
  {
    const auto log = open_log(fs, kSmallSegmentBytes);
    for (raft::Index i = 1; i <= 60; ++i) {
      ASSERT_TRUE(
          log->save(make_hard_state(1, 1, i - 1), std::nullopt, {make_entry(i, 1)}, true).ok());
    }
    EXPECT_GT(log->segment_count(), 3U);
  }
  const std::vector<std::string> names = segment_files(fs);
  for (std::size_t i = 0; i < names.size(); ++i) {
    EXPECT_EQ(names[i], segment_name(i + 1));
    EXPECT_EQ(fs.contents(names[i]).size(), kSmallSegmentBytes);  // preallocated
  }
  const auto log = open_log(fs, kSmallSegmentBytes);
  EXPECT_EQ(log->last_index(), 60U);
  EXPECT_EQ(log->hard_state().commit(), 59U);
  expect_readable(*log);
  // What the node reports as its log's size (GET /v1/cluster): every segment file, preallocated.
  EXPECT_EQ(log->file_bytes(), log->segment_count() * kSmallSegmentBytes);
}

TEST(SegmentLogTest, BatchLargerThanASegmentGetsItsOwn) {
  MemLogFs fs;
  {
    const auto log = open_log(fs, kSmallSegmentBytes);
    raftpb::Entry big = make_entry(1, 1);
    big.set_data(std::string(3 * kSmallSegmentBytes, 'x'));
    ASSERT_TRUE(log->save(std::nullopt, std::nullopt, {big}, true).ok());
    append(*log, 2, 4, 1);
  }
  const auto log = open_log(fs, kSmallSegmentBytes);
  EXPECT_EQ(log->last_index(), 3U);
  const auto got = log->entries(1, 2, UINT64_MAX);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ((*got)[0].data().size(), 3 * kSmallSegmentBytes);
}

TEST(SegmentLogTest, CompactionDeletesWholeSegments) {
  MemLogFs fs;
  {
    const auto log = open_log(fs, kSmallSegmentBytes);
    ASSERT_TRUE(log->save(make_hard_state(4, 3, 0), std::nullopt, {}, true).ok());
    append_each(*log, 1, 80, 4);
    const std::size_t before = log->segment_count();
    raftpb::SnapshotMetadata applied;
    applied.set_index(50);
    applied.set_term(4);
    log->set_snapshot_metadata(applied);
    ASSERT_TRUE(log->compact(50).ok());
    EXPECT_LT(log->segment_count(), before);
    EXPECT_GT(log->first_index(), 1U);
    EXPECT_LE(log->first_index(), 51U);  // whole segments only: some entries <= 50 may stay
    EXPECT_EQ(*log->term(log->first_index() - 1), 4U);
    EXPECT_EQ(log->term(log->first_index() - 2).status().code(), Code::kCompacted);
    EXPECT_EQ(segment_files(fs).size(), log->segment_count());
    expect_readable(*log);
  }
  const auto log = open_log(fs, kSmallSegmentBytes);
  EXPECT_GT(log->first_index(), 1U);
  EXPECT_EQ(log->last_index(), 79U);
  EXPECT_EQ(log->hard_state().vote(), 3U);  // the hard state's record went with its segment
  expect_readable(*log);
}

TEST(SegmentLogTest, CompactionNeverDeletesTheLastSegment) {
  MemLogFs fs;
  const auto log = open_log(fs);
  append(*log, 1, 20, 1);
  raftpb::SnapshotMetadata applied;
  applied.set_index(19);
  applied.set_term(1);
  log->set_snapshot_metadata(applied);
  ASSERT_TRUE(log->compact(19).ok());
  EXPECT_EQ(log->segment_count(), 1U);
  EXPECT_EQ(log->first_index(), 1U);
}

TEST(SegmentLogTest, CompactionKeepsSegmentsAConflictReachesInto) {
  MemLogFs fs;
  const auto log = open_log(fs, kSmallSegmentBytes);
  append_each(*log, 1, 40, 1);
  append(*log, 5, 6, 2);  // written into the last segment, below every later segment's start
  append_each(*log, 6, 40, 2);
  raftpb::SnapshotMetadata applied;
  applied.set_index(30);
  applied.set_term(2);
  log->set_snapshot_metadata(applied);
  ASSERT_TRUE(log->compact(30).ok());
  EXPECT_LE(log->first_index(), 5U);
  expect_readable(*log);
  const auto reopened = open_log(fs, kSmallSegmentBytes);
  EXPECT_EQ(reopened->first_index(), log->first_index());
  EXPECT_EQ(*reopened->term(5), 2U);
  expect_readable(*reopened);
}

TEST(SegmentLogTest, SnapshotRestartsTheLog) {
  MemLogFs fs;
  {
    const auto log = open_log(fs, kSmallSegmentBytes);
    append_each(*log, 1, 30, 1);
    raftpb::SnapshotMetadata snap;
    snap.set_index(100);
    snap.set_term(5);
    ASSERT_TRUE(log->save(make_hard_state(5, 0, 100), snap, {}, true).ok());
    EXPECT_EQ(log->first_index(), 101U);
    EXPECT_EQ(log->last_index(), 100U);
    EXPECT_EQ(log->snapshot_metadata().index(), 100U);
    append_each(*log, 101, 140, 5);
    ASSERT_TRUE(log->compact(100).ok());
    EXPECT_EQ(log->first_index(), 101U);
  }
  const auto log = open_log(fs, kSmallSegmentBytes);
  EXPECT_EQ(log->first_index(), 101U);
  EXPECT_EQ(*log->term(100), 5U);
  EXPECT_EQ(log->last_index(), 139U);
  expect_readable(*log);
}

// The log of one segment after batch A (entries 1..3, synced) and after batch B (4..6, hard
// state), for cutting B anywhere.
struct TwoBatches {
  std::string after_a;
  std::string after_b;
  std::uint64_t b_begin = 0;  // first byte of B
  std::uint64_t b_end = 0;
};

TwoBatches write_two_batches() {
  MemLogFs fs;
  const auto log = open_log(fs, kSmallSegmentBytes);
  append(*log, 1, 4, 1);
  TwoBatches out;
  out.after_a = fs.contents(segment_name(1));
  EXPECT_TRUE(log->save(make_hard_state(1, 1, 3), std::nullopt, make_entries(4, 7, 1), false).ok());
  out.after_b = fs.contents(segment_name(1));
  EXPECT_EQ(log->segment_count(), 1U);
  std::uint64_t i = 0;
  while (out.after_a[i] == out.after_b[i]) ++i;
  out.b_begin = i;
  std::uint64_t j = out.after_b.size();
  while (out.after_a[j - 1] == out.after_b[j - 1]) --j;
  out.b_end = j;
  return out;
}

TEST(SegmentLogTest, TornTailAtEveryByteOffset) {
  const TwoBatches b = write_two_batches();
  ASSERT_LT(b.b_begin, b.b_end);
  for (std::uint64_t cut = b.b_begin; cut <= b.b_end; ++cut) {
    SCOPED_TRACE("cut at byte " + std::to_string(cut));
    std::string image = b.after_a;
    image.replace(b.b_begin, cut - b.b_begin, b.after_b, b.b_begin, cut - b.b_begin);
    MemLogFs fs;
    fs.put_durable(segment_name(1), image);
    const auto log = open_log(fs, kSmallSegmentBytes);
    ASSERT_NE(log, nullptr);
    const bool whole = cut == b.b_end;
    EXPECT_EQ(log->last_index(), whole ? 6U : 3U);
    EXPECT_EQ(log->hard_state().commit(), whole ? 3U : 0U);
    EXPECT_EQ(log->recovery().torn_bytes_zeroed == 0, whole || cut == b.b_begin);
    // The cleared tail takes new records, and nothing of the torn batch comes back.
    append(*log, log->last_index() + 1, log->last_index() + 2, 2);
    const auto reopened = open_log(fs, kSmallSegmentBytes);
    ASSERT_NE(reopened, nullptr);
    EXPECT_EQ(reopened->last_index(), whole ? 7U : 4U);
    EXPECT_EQ(*reopened->term(reopened->last_index()), 2U);
    expect_readable(*reopened);
  }
}

TEST(SegmentLogTest, FlippedBitInTheMiddleIsRefused) {
  MemLogFs fs;
  std::string before;
  {
    const auto log = open_log(fs);
    append(*log, 1, 4, 1);
    before = fs.contents(segment_name(1));
    append(*log, 4, 7, 1);  // written after the first batch was synced: it proves that sync
  }
  // The first byte that differs from the empty segment's is in the first batch's first record.
  const std::string empty_log = [] {
    MemLogFs empty;
    static_cast<void>(open_log(empty));
    return empty.contents(segment_name(1));
  }();
  std::uint64_t first_record = 0;
  while (empty_log[first_record] == before[first_record]) ++first_record;
  for (const std::uint64_t offset : {first_record + 1, first_record + 9, first_record + 40}) {
    MemLogFs damaged;
    damaged.put_durable(segment_name(1), fs.contents(segment_name(1)));
    ASSERT_TRUE(damaged.corrupt(segment_name(1), offset, 3));
    const auto log = SegmentLog::open(&damaged, SegmentLogOptions{kTestSegmentBytes});
    EXPECT_EQ(log.status().code(), Code::kCorruption) << "byte " << offset;
  }
}

TEST(SegmentLogTest, DamageInAnOlderSegmentIsRefused) {
  MemLogFs fs;
  {
    const auto log = open_log(fs, kSmallSegmentBytes);
    append_each(*log, 1, 40, 1, /*sync=*/false);  // unsynced batches; the rollover syncs them
    ASSERT_GT(log->segment_count(), 1U);
  }
  ASSERT_TRUE(fs.corrupt(segment_name(1), kSegmentHeaderBytes + 100));
  EXPECT_EQ(SegmentLog::open(&fs, SegmentLogOptions{kSmallSegmentBytes}).status().code(),
            Code::kCorruption);
}

TEST(SegmentLogTest, DamagedSegmentHeaderIsRefused) {
  MemLogFs fs;
  static_cast<void>(open_log(fs));
  ASSERT_TRUE(fs.corrupt(segment_name(1), 12));
  EXPECT_EQ(SegmentLog::open(&fs, SegmentLogOptions{kTestSegmentBytes}).status().code(),
            Code::kCorruption);
}

// The documented limit: damage to the newest batch, when nothing was written after it, cannot be
// told from a write a crash cut short, so that batch is dropped like a torn one.
TEST(SegmentLogTest, DamageInTheNewestBatchReadsAsATornTail) {
  const TwoBatches b = write_two_batches();
  MemLogFs fs;
  fs.put_durable(segment_name(1), b.after_b);
  ASSERT_TRUE(fs.corrupt(segment_name(1), b.b_end - 1));
  const auto log = open_log(fs, kSmallSegmentBytes);
  EXPECT_EQ(log->last_index(), 3U);
  EXPECT_FALSE(log->recovery().torn_reason.empty());
}

TEST(SegmentLogTest, MissingSegmentIsRefused) {
  MemLogFs fs;
  {
    const auto log = open_log(fs, kSmallSegmentBytes);
    append_each(*log, 1, 60, 1);
    ASSERT_GT(log->segment_count(), 2U);
  }
  ASSERT_TRUE(fs.remove(segment_name(2)).ok());
  const auto log = SegmentLog::open(&fs, SegmentLogOptions{kSmallSegmentBytes});
  EXPECT_EQ(log.status().code(), Code::kCorruption);
  EXPECT_NE(log.status().message().find("missing"), std::string::npos);
}

TEST(SegmentLogTest, UnsyncedAppendsLostInAnyPrefix) {
  // Batches of three entries each; after a crash the log ends at a batch boundary, at or after
  // the last synced batch.
  std::vector<int> seen(6, 0);
  for (std::uint64_t seed = 0; seed < 300; ++seed) {
    MemLogFs fs;
    {
      const auto log = open_log(fs, kSmallSegmentBytes);
      append(*log, 1, 4, 1);  // synced
      for (raft::Index lo = 4; lo < 16; lo += 3) append(*log, lo, lo + 3, 1, /*sync=*/false);
    }
    Rng rng(seed);
    fs.crash(rng);
    const auto log = open_log(fs, kSmallSegmentBytes);
    ASSERT_NE(log, nullptr) << "seed " << seed;
    const raft::Index last = log->last_index();
    ASSERT_GE(last, 3U) << "seed " << seed;
    ASSERT_EQ(last % 3, 0U) << "a batch was torn apart, seed " << seed;
    ++seen[last / 3];
    expect_readable(*log);
  }
  for (std::size_t i = 1; i < seen.size(); ++i) {
    EXPECT_GT(seen[i], 0) << "no crash kept " << i << " batches";
  }
}

TEST(SegmentLogTest, SyncedAppendsSurviveEveryCrash) {
  for (std::uint64_t seed = 0; seed < 100; ++seed) {
    MemLogFs fs;
    {
      const auto log = open_log(fs, kSmallSegmentBytes);
      for (raft::Index lo = 1; lo < 60; lo += 3) {
        ASSERT_TRUE(log->save(make_hard_state(2, 1, lo - 1), std::nullopt,
                              make_entries(lo, lo + 3, 2), true)
                        .ok());
      }
    }
    Rng rng(seed);
    fs.crash(rng);
    const auto log = open_log(fs, kSmallSegmentBytes);
    ASSERT_NE(log, nullptr);
    EXPECT_EQ(log->last_index(), 60U);
    EXPECT_EQ(log->hard_state().commit(), 57U);
  }
}

TEST(SegmentLogTest, NewSegmentsAndDeletionsAreMadeDurableWithTheDirectory) {
  MemLogFs fs;
  const auto log = open_log(fs, kSmallSegmentBytes);
  const std::uint64_t dir_syncs = fs.counters().dir_syncs;
  append_each(*log, 1, 60, 1);
  ASSERT_GT(log->segment_count(), 2U);
  EXPECT_GE(fs.counters().dir_syncs, dir_syncs + log->segment_count() - 1);
  for (const std::string& name : segment_files(fs)) {
    EXPECT_TRUE(fs.durable_name(name)) << name;
  }
  raftpb::SnapshotMetadata applied;
  applied.set_index(59);
  applied.set_term(1);
  log->set_snapshot_metadata(applied);
  ASSERT_TRUE(log->compact(59).ok());
  EXPECT_FALSE(fs.durable_name(segment_name(1)));
  Rng rng(7);
  fs.crash(rng);
  const auto reopened = open_log(fs, kSmallSegmentBytes);
  EXPECT_EQ(reopened->first_index(), log->first_index());
  EXPECT_EQ(reopened->last_index(), 59U);
}

TEST(SegmentLogTest, UnfinishedSegmentIsRemovedAtOpen) {
  MemLogFs fs;
  {
    const auto log = open_log(fs);
    append(*log, 1, 3, 1);
  }
  fs.put_durable(segment_name(2) + std::string(kSegmentTempSuffix), std::string(100, 'x'));
  const auto log = open_log(fs);
  EXPECT_EQ(log->recovery().temp_files_removed, 1U);
  EXPECT_EQ(segment_files(fs), std::vector<std::string>{segment_name(1)});
  EXPECT_EQ(log->last_index(), 2U);
}

TEST(SegmentLogTest, FailedWriteStopsTheLogUntilReopened) {
  MemLogFs fs;
  {
    const auto log = open_log(fs);
    append(*log, 1, 3, 1);
    fs.fail_ops(1);
    EXPECT_EQ(log->save(std::nullopt, std::nullopt, {make_entry(3, 1)}, true).code(),
              Code::kIOError);
    EXPECT_EQ(log->last_index(), 2U);  // unchanged
    EXPECT_EQ(log->save(std::nullopt, std::nullopt, {make_entry(3, 1)}, true).code(),
              Code::kIOError);
  }
  const auto log = open_log(fs);
  EXPECT_EQ(log->last_index(), 2U);
  append(*log, 3, 4, 1);
  EXPECT_EQ(log->last_index(), 3U);
}

TEST(SegmentLogTest, FailedSyncStopsTheLog) {
  MemLogFs fs;
  const auto log = open_log(fs);
  fs.fail_ops(0);
  ASSERT_TRUE(log->save(std::nullopt, std::nullopt, {make_entry(1, 1)}, false).ok());
  fs.fail_ops(1);
  EXPECT_EQ(log->save(make_hard_state(1, 1, 0), std::nullopt, {}, true).code(), Code::kIOError);
  EXPECT_EQ(log->hard_state().vote(), 0U);
  EXPECT_EQ(log->save(make_hard_state(1, 1, 0), std::nullopt, {}, true).code(), Code::kIOError);
}

// What a log shows: its bounds, hard state and every entry's term.
struct LogView {
  raft::Index first = 0;
  raft::Index last = 0;
  std::string hard_state;
  std::vector<raft::Term> terms;  // terms[i - first] for i in [first, last]

  static LogView of(const SegmentLog& log) {
    LogView v{log.first_index(), log.last_index(), log.hard_state().SerializeAsString(), {}};
    for (raft::Index i = v.first; i <= v.last; ++i) v.terms.push_back(*log.term(i));
    return v;
  }
  // Whether `got` (a log reopened after a crash) shows this state: same last index and hard
  // state, and the same term for every entry both hold (compaction may have moved `got`'s start).
  [[nodiscard]] bool matches(const LogView& got) const {
    if (got.last != last || got.hard_state != hard_state || got.first < first) return false;
    for (raft::Index i = got.first; i <= got.last; ++i) {
      if (got.terms[i - got.first] != terms[i - first]) return false;
    }
    return true;
  }
};

// One random round on `log`, as the raft core would ask for it: a compaction (returns nullopt), or
// one batch of appends, conflicting appends, a hard state and a snapshot, synced or not (returns
// whether it was synced).
std::optional<bool> random_round(SegmentLog& log, Rng& rng, raft::Term& term) {
  const bool sync = rng.chance(0.5);
  const std::uint64_t what = rng.uniform(10);
  if (what == 0 && log.last_index() > log.first_index()) {
    const raft::Index upto = log.first_index() + rng.uniform(log.last_index() - log.first_index());
    raftpb::SnapshotMetadata applied;
    applied.set_index(upto);
    applied.set_term(*log.term(upto));
    log.set_snapshot_metadata(applied);
    EXPECT_TRUE(log.compact(upto).ok());
    return std::nullopt;  // no batch; deletions are synced with the directory
  }
  std::optional<raftpb::SnapshotMetadata> snap;
  raft::Index from = log.last_index() + 1;
  if (what == 1) {
    snap.emplace();
    snap->set_index(log.last_index() + 1 + rng.uniform(5));
    snap->set_term(++term);
    from = snap->index() + 1;
  } else if (what <= 3 && log.last_index() >= log.first_index()) {
    ++term;  // a new leader overwrites part of the tail
    from = log.last_index() + 1 - rng.uniform(log.last_index() - log.first_index() + 1);
    // Never below the commit index: committed entries are never replaced.
    from = std::max({from, log.first_index(), log.hard_state().commit() + 1});
  }
  const auto entries = make_entries(from, from + rng.uniform(4), term);
  std::optional<raftpb::HardState> hs;
  if (rng.chance(0.5)) {
    const raft::Index last =
        entries.empty() ? (snap ? snap->index() : log.last_index()) : entries.back().index();
    hs = make_hard_state(term, rng.uniform(3), std::min(last, log.hard_state().commit() + 1));
  }
  EXPECT_TRUE(log.save(hs, snap, entries, sync).ok());
  return sync;
}

TEST(SegmentLogTest, RandomRoundsAndCrashesKeepEverySyncedBatch) {
  // Random rounds (appends, conflicting appends, hard states, snapshots, compaction, synced or
  // not), then a crash: the reopened log must show the state after some round at or after the
  // last synced one, never a mix. Then the same log goes on from there.
  for (std::uint64_t seed = 0; seed < random_seeds(); ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Rng rng(seed);
    MemLogFs fs;
    raft::Term term = 1;
    for (int life = 0; life < 4; ++life) {
      const auto log = open_log(fs, kSmallSegmentBytes);
      ASSERT_NE(log, nullptr);
      std::vector<LogView> states{LogView::of(*log)};
      std::size_t synced = 0;  // states[synced] is the newest durable one
      for (int round = 0; round < 40; ++round) {
        const std::optional<bool> batch = random_round(*log, rng, term);
        if (!batch) continue;
        states.push_back(LogView::of(*log));
        if (*batch) synced = states.size() - 1;
      }
      fs.crash(rng);
      const auto reopened = open_log(fs, kSmallSegmentBytes);
      ASSERT_NE(reopened, nullptr);
      const LogView got = LogView::of(*reopened);
      bool found = false;
      for (std::size_t i = synced; i < states.size() && !found; ++i) found = states[i].matches(got);
      ASSERT_TRUE(found) << "life " << life << ": reopened at " << got.first << ".." << got.last
                         << ", the last synced round left " << states[synced].first << ".."
                         << states[synced].last;
      expect_readable(*reopened);
    }
  }
}

TEST(SegmentLogTest, ALyingCrashLeavesTheLogAsAnEarlierRoundLeftIt) {
  // A disk that lies about fsync loses synced rounds too, but in order: the reopened log is the
  // log after some earlier round (segments made and deleted on the way included), never a mix,
  // so that the replica on it can recover.
  std::uint64_t lying = 0;
  for (std::uint64_t seed = 0; seed < random_seeds(); ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Rng rng(seed);
    MemLogFs fs;
    fs.record_history();
    raft::Term term = 1;
    // Every state so far: a later lying crash may go back past an earlier one's point.
    std::vector<LogView> states;
    for (int life = 0; life < 3; ++life) {
      const auto log = open_log(fs, kSmallSegmentBytes);
      ASSERT_NE(log, nullptr);
      states.push_back(LogView::of(*log));
      for (int round = 0; round < 40; ++round) {
        static_cast<void>(random_round(*log, rng, term));
        states.push_back(LogView::of(*log));
      }
      lying += fs.crash_lying(rng) > 0 ? 1 : 0;
      const auto reopened = open_log(fs, kSmallSegmentBytes);
      ASSERT_NE(reopened, nullptr);
      const LogView got = LogView::of(*reopened);
      bool found = false;
      for (std::size_t i = 0; i < states.size() && !found; ++i) found = states[i].matches(got);
      ASSERT_TRUE(found) << "life " << life << ": reopened at " << got.first << ".." << got.last;
      expect_readable(*reopened);
    }
  }
  EXPECT_GT(lying, random_seeds());  // most crashes found a synced write to lose
}

// The offset of entry `index`'s record in segment `seq` of `fs` (0 when it has none).
std::uint64_t entry_offset(const MemLogFs& fs, std::uint64_t seq, raft::Index index) {
  const std::string bytes = fs.contents(segment_name(seq));
  const auto scan = scan_segment(bytes, seq, /*last=*/true);
  EXPECT_TRUE(scan.ok()) << scan.status().to_string();
  std::uint64_t offset = 0;
  for (const ScannedRecord& r : scan->records) {
    if (r.kind == RecordKind::kEntry && r.index == index) offset = r.offset;
  }
  return offset;
}

// Entries 1..5 with a hard state, then a batch of the hard state alone (which proves the first
// batch was synced), all in one segment.
void write_five_and_a_commit(MemLogFs& fs) {
  const auto log = open_log(fs);
  ASSERT_TRUE(log->save(make_hard_state(2, 3, 2), std::nullopt, make_entries(1, 6, 2), true).ok());
  ASSERT_TRUE(log->save(make_hard_state(2, 3, 4), std::nullopt, {}, true).ok());
}

TEST(SegmentLogSalvageTest, AnIntactLogGivesItsHardStateAndLastIndex) {
  MemLogFs fs;
  {
    const auto log = open_log(fs, kSmallSegmentBytes);
    append_each(*log, 1, 40, 2);
    ASSERT_TRUE(log->save(make_hard_state(4, 1, 30), std::nullopt, {}, true).ok());
    ASSERT_GT(log->segment_count(), 1U);
  }
  const auto salvaged = SegmentLog::salvage(&fs);
  ASSERT_TRUE(salvaged.ok()) << salvaged.status().to_string();
  ASSERT_TRUE(salvaged->has_value());
  EXPECT_EQ((*salvaged)->hard_state.term(), 4U);
  EXPECT_EQ((*salvaged)->hard_state.vote(), 1U);
  EXPECT_EQ((*salvaged)->last_index, 39U);
}

TEST(SegmentLogSalvageTest, NoSegmentGivesNothing) {
  MemLogFs fs;
  fs.put_durable("unrelated", "x");
  const auto salvaged = SegmentLog::salvage(&fs);
  ASSERT_TRUE(salvaged.ok());
  EXPECT_FALSE(salvaged->has_value());
}

TEST(SegmentLogSalvageTest, ADamagedEntryIsSkippedAndStillCountsTowardTheLastIndex) {
  MemLogFs fs;
  write_five_and_a_commit(fs);
  const std::uint64_t fifth = entry_offset(fs, 1, 5);
  ASSERT_GT(fifth, 0U);
  // A bit of its payload (its length still leads to the next record), then one of its length.
  for (const std::uint64_t byte : {fifth + kRecordHeaderBytes + 2, fifth + 6}) {
    SCOPED_TRACE("byte " + std::to_string(byte));
    MemLogFs damaged;
    damaged.put_durable(segment_name(1), fs.contents(segment_name(1)));
    ASSERT_TRUE(damaged.corrupt(segment_name(1), byte, 2));
    ASSERT_EQ(SegmentLog::open(&damaged).status().code(), Code::kCorruption);
    const auto salvaged = SegmentLog::salvage(&damaged);
    ASSERT_TRUE(salvaged.ok()) << salvaged.status().to_string();
    ASSERT_TRUE(salvaged->has_value());
    EXPECT_EQ((*salvaged)->hard_state.term(), 2U);
    EXPECT_EQ((*salvaged)->hard_state.vote(), 3U);
    EXPECT_EQ((*salvaged)->hard_state.commit(), 4U);
    EXPECT_GE((*salvaged)->last_index, 5U) << "the damaged entry may have been acknowledged";
  }
}

TEST(SegmentLogSalvageTest, DamageWithNoIntactHardStateAfterItIsRefused) {
  MemLogFs fs;
  {
    const auto log = open_log(fs);
    ASSERT_TRUE(
        log->save(make_hard_state(1, 1, 0), std::nullopt, make_entries(1, 3, 1), true).ok());
    ASSERT_TRUE(log->save(make_hard_state(2, 2, 0), std::nullopt, {}, true).ok());  // a new vote
    append(*log, 3, 5, 2);  // entries alone prove the vote was synced
  }
  // The second batch is the vote alone: its record follows entry 2's.
  const std::uint64_t second = entry_offset(fs, 1, 3);
  ASSERT_GT(second, kRecordHeaderBytes);
  ASSERT_TRUE(fs.corrupt(segment_name(1), second - 3));  // inside the vote's payload
  const auto salvaged = SegmentLog::salvage(&fs);
  EXPECT_EQ(salvaged.status().code(), Code::kCorruption);
  EXPECT_NE(salvaged.status().message().find("term and vote are unknown"), std::string::npos)
      << salvaged.status().to_string();
}

TEST(SegmentLogSalvageTest, DamageInAnOlderSegmentIsSettledByTheNextSegmentsStart) {
  MemLogFs fs;
  {
    const auto log = open_log(fs, kSmallSegmentBytes);
    for (raft::Index i = 1; i < 40; ++i) {
      ASSERT_TRUE(
          log->save(make_hard_state(3, 2, i - 1), std::nullopt, make_entries(i, i + 1, 3), true)
              .ok());
    }
    ASSERT_GT(log->segment_count(), 2U);
  }
  ASSERT_TRUE(fs.corrupt(segment_name(1), kSegmentHeaderBytes + 200));
  ASSERT_TRUE(fs.corrupt(segment_name(2), 5));  // its header too
  ASSERT_EQ(SegmentLog::open(&fs, SegmentLogOptions{kSmallSegmentBytes}).status().code(),
            Code::kCorruption);
  const auto salvaged = SegmentLog::salvage(&fs);
  ASSERT_TRUE(salvaged.ok()) << salvaged.status().to_string();
  ASSERT_TRUE(salvaged->has_value());
  EXPECT_EQ((*salvaged)->hard_state.term(), 3U);
  EXPECT_EQ((*salvaged)->hard_state.commit(), 38U);
  EXPECT_EQ((*salvaged)->last_index, 39U);
}

TEST(SegmentLogSalvageTest, AMissingSegmentIsSettledByTheNextOneAndTheLastOneCannotBe) {
  MemLogFs fs;
  {
    const auto log = open_log(fs, kSmallSegmentBytes);
    append_each(*log, 1, 60, 1);
    ASSERT_TRUE(log->save(make_hard_state(1, 1, 50), std::nullopt, {}, true).ok());
    ASSERT_GT(log->segment_count(), 2U);
  }
  ASSERT_TRUE(fs.remove(segment_name(2)).ok());
  const auto salvaged = SegmentLog::salvage(&fs);
  ASSERT_TRUE(salvaged.ok()) << salvaged.status().to_string();
  ASSERT_TRUE(salvaged->has_value());
  EXPECT_EQ((*salvaged)->last_index, 59U);
  EXPECT_EQ((*salvaged)->hard_state.commit(), 50U);
  // The first segment's start record damaged: the compaction point, and so how far the log
  // reached, is unknown until a later start, entry or snapshot record.
  MemLogFs lone;
  {
    const auto log = open_log(lone);
    ASSERT_TRUE(log->save(make_hard_state(1, 1, 0), std::nullopt, {}, true).ok());
  }
  ASSERT_TRUE(lone.corrupt(segment_name(1), kSegmentHeaderBytes + 10));
  EXPECT_EQ(SegmentLog::salvage(&lone).status().code(), Code::kCorruption);
}

TEST(SegmentLogSalvageTest, ATornTailIsDroppedAsOpenDropsIt) {
  const TwoBatches b = write_two_batches();
  std::string image = b.after_b;
  image.replace(b.b_end - 10, 10, std::string(10, '\0'));  // the end of batch B never landed
  MemLogFs fs;
  fs.put_durable(segment_name(1), image);
  const auto salvaged = SegmentLog::salvage(&fs);
  ASSERT_TRUE(salvaged.ok()) << salvaged.status().to_string();
  ASSERT_TRUE(salvaged->has_value());
  EXPECT_EQ((*salvaged)->last_index, 3U);
  EXPECT_EQ((*salvaged)->hard_state.term(), 0U);
}

TEST(SegmentLogTest, RemoveSegmentFilesLeavesOtherFilesAndSyncsTheDirectory) {
  MemLogFs fs;
  {
    const auto log = open_log(fs, kSmallSegmentBytes);
    append_each(*log, 1, 30, 1);
  }
  fs.put_durable(segment_name(9) + std::string(kSegmentTempSuffix), "half made");
  fs.put_durable("notes", "kept");
  ASSERT_TRUE(remove_segment_files(&fs).ok());
  EXPECT_EQ(segment_files(fs), std::vector<std::string>{"notes"});
  EXPECT_FALSE(fs.durable_name(segment_name(1)));
  const auto reopened = open_log(fs, kSmallSegmentBytes);
  EXPECT_EQ(reopened->last_index(), 0U);
}

TEST(SegmentLogTest, ScanOfAnEmptySegmentIsClean) {
  MemLogFs fs;
  static_cast<void>(open_log(fs));
  const std::string bytes = fs.contents(segment_name(1));
  const auto scan = scan_segment(bytes, 1, /*last=*/false);
  ASSERT_TRUE(scan.ok()) << scan.status().to_string();
  EXPECT_EQ(scan->records.size(), 2U);  // the start record and the hard state
  EXPECT_EQ(scan->records[0].kind, RecordKind::kSegmentStart);
  EXPECT_EQ(scan->dirty_end, scan->end_offset);
  EXPECT_EQ(scan_segment(bytes, 2, false).status().code(), Code::kCorruption);  // wrong number
}

// Open finds the zero tail's end a word block at a time: a stray byte anywhere in it, at any
// alignment and at the very ends, still marks the tail dirty up to that byte.
TEST(SegmentLogTest, AStrayByteAnywhereInTheZeroTailIsFound) {
  MemLogFs fs;
  static_cast<void>(open_log(fs));
  const std::string clean = fs.contents(segment_name(1));
  const auto clean_scan = scan_segment(clean, 1, /*last=*/true);
  ASSERT_TRUE(clean_scan.ok()) << clean_scan.status().to_string();
  const std::uint64_t end = clean_scan->end_offset;
  std::vector<std::uint64_t> positions = {end, end + 1, end + 7, end + 31, end + 32, end + 33};
  for (std::uint64_t p = clean.size() - 70; p < clean.size(); ++p) positions.push_back(p);
  positions.push_back(clean.size() / 2 + 3);
  for (const std::uint64_t p : positions) {
    std::string bytes = clean;
    bytes[p] = '\x01';
    const auto scan = scan_segment(bytes, 1, /*last=*/true);
    ASSERT_TRUE(scan.ok()) << p << ": " << scan.status().to_string();
    EXPECT_EQ(scan->end_offset, end) << p;
    EXPECT_EQ(scan->dirty_end, p + 1) << p;
    EXPECT_FALSE(scan->torn_reason.empty()) << p;
    // In an older segment the same byte is damage, not a tear.
    EXPECT_EQ(scan_segment(bytes, 1, /*last=*/false).status().code(), Code::kCorruption) << p;
  }
}

}  // namespace
}  // namespace herald::storage
