#include "storage/mem_engine.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "base/encoding.h"
#include "storage/test_util.h"

namespace herald::storage {
namespace {

using testing::get_or_absent;
using testing::KeyValues;
using testing::scan_all;

// Enough seeds that every prefix length of a handful of batches shows up.
constexpr std::uint64_t kCrashSeeds = 200;

WriteBatch put_batch(Space space, const std::string& key, const std::string& value) {
  WriteBatch batch;
  batch.put(space, key, value);
  return batch;
}

void must_write(MemEngine& engine, const WriteBatch& batch, bool sync) {
  const Status s = engine.write(batch, sync);
  ASSERT_TRUE(s.ok()) << s.to_string();
}

TEST(MemEngineTest, ReadsSeeUnsyncedWrites) {
  MemEngine engine;
  must_write(engine, put_batch(Space::kState, "k", "v"), /*sync=*/false);
  EXPECT_EQ(get_or_absent(engine, Space::kState, "k"), "v");
  EXPECT_EQ(engine.unsynced_batches(), 1U);
}

TEST(MemEngineTest, CrashLosesUnsyncedWrites) {
  bool lost = false;
  bool kept = false;
  for (std::uint64_t seed = 0; seed < kCrashSeeds; ++seed) {
    MemEngine engine;
    must_write(engine, put_batch(Space::kState, "k", "v"), /*sync=*/false);
    Rng rng(seed);
    engine.crash(rng);
    const std::string value = get_or_absent(engine, Space::kState, "k");
    lost = lost || value == "<absent>";
    kept = kept || value == "v";
    EXPECT_EQ(engine.unsynced_batches(), 0U);
  }
  EXPECT_TRUE(lost) << "some crash must lose the unsynced write";
  EXPECT_TRUE(kept) << "some crash may keep it, as a WAL that reached the disk would";
}

TEST(MemEngineTest, CrashKeepsSyncedPrefix) {
  for (std::uint64_t seed = 0; seed < kCrashSeeds; ++seed) {
    MemEngine engine;
    must_write(engine, put_batch(Space::kState, "a", "1"), /*sync=*/false);
    must_write(engine, put_batch(Space::kState, "b", "2"), /*sync=*/true);  // syncs "a" too
    must_write(engine, put_batch(Space::kState, "c", "3"), /*sync=*/false);
    Rng rng(seed);
    engine.crash(rng);
    EXPECT_EQ(get_or_absent(engine, Space::kState, "a"), "1");
    EXPECT_EQ(get_or_absent(engine, Space::kState, "b"), "2");
  }
}

TEST(MemEngineTest, CrashKeepsPrefixNotHoles) {
  constexpr int kBatches = 5;
  std::set<int> survivors_seen;
  for (std::uint64_t seed = 0; seed < kCrashSeeds; ++seed) {
    MemEngine engine;
    for (int i = 0; i < kBatches; ++i) {
      must_write(engine, put_batch(Space::kLog, std::to_string(i), "x"), /*sync=*/false);
    }
    Rng rng(seed);
    engine.crash(rng);
    const KeyValues left = scan_all(engine, Space::kLog);
    // Keys "0".."4" sort like the batches were written: what survives is "0".."k-1".
    for (std::size_t i = 0; i < left.size(); ++i) {
      EXPECT_EQ(left[i].first, std::to_string(i)) << "seed " << seed << ": a hole in the prefix";
    }
    survivors_seen.insert(static_cast<int>(left.size()));
  }
  EXPECT_EQ(survivors_seen.size(), static_cast<std::size_t>(kBatches + 1));
}

TEST(MemEngineTest, ALyingCrashLosesSyncedWritesAsASuffixNeverBeforeTheRecording) {
  constexpr int kBatches = 4;
  std::set<std::size_t> survivors_seen;
  for (std::uint64_t seed = 0; seed < kCrashSeeds; ++seed) {
    MemEngine engine;
    must_write(engine, put_batch(Space::kLog, "a", "x"), /*sync=*/true);  // before recording
    engine.record_history();
    for (int i = 0; i < kBatches; ++i) {
      must_write(engine, put_batch(Space::kLog, "b" + std::to_string(i), "x"), /*sync=*/true);
    }
    Rng rng(seed);
    const std::uint64_t lost = engine.crash_lying(rng);
    const KeyValues left = scan_all(engine, Space::kLog);
    ASSERT_FALSE(left.empty());
    EXPECT_EQ(left[0].first, "a") << "a write from before record_history() was lost";
    for (std::size_t i = 1; i < left.size(); ++i) {
      EXPECT_EQ(left[i].first, "b" + std::to_string(i - 1)) << "seed " << seed << ": a hole";
    }
    EXPECT_GE(lost, 1U);
    EXPECT_EQ(left.size() - 1 + lost, static_cast<std::size_t>(kBatches));
    survivors_seen.insert(left.size() - 1);
    EXPECT_EQ(engine.counters().lost_synced_batches, lost);
  }
  // Anything from none to all but the last synced write survives.
  EXPECT_EQ(survivors_seen.size(), static_cast<std::size_t>(kBatches));
}

TEST(MemEngineTest, ALyingCrashWithNoSyncedWriteRememberedIsAPlainCrash) {
  MemEngine engine;
  must_write(engine, put_batch(Space::kLog, "a", "x"), /*sync=*/true);
  engine.record_history();
  Rng rng(1);
  EXPECT_EQ(engine.crash_lying(rng), 0U);
  EXPECT_EQ(get_or_absent(engine, Space::kLog, "a"), "x");
}

TEST(MemEngineTest, CrashSurvivorsStayDurable) {
  for (std::uint64_t seed = 0; seed < kCrashSeeds; ++seed) {
    MemEngine engine;
    must_write(engine, put_batch(Space::kState, "k", "v"), /*sync=*/false);
    Rng rng(seed);
    engine.crash(rng);
    const std::string after_first = get_or_absent(engine, Space::kState, "k");
    engine.crash(rng);  // nothing written in between: nothing more may be lost
    EXPECT_EQ(get_or_absent(engine, Space::kState, "k"), after_first);
  }
}

TEST(MemEngineTest, CrashIsDeterministicForASeed) {
  auto survivors = [](std::uint64_t seed) {
    MemEngine engine;
    for (int i = 0; i < 8; ++i) {
      must_write(engine, put_batch(Space::kLog, std::to_string(i), "x"), /*sync=*/false);
    }
    Rng rng(seed);
    engine.crash(rng);
    return scan_all(engine, Space::kLog).size();
  };
  for (std::uint64_t seed = 0; seed < 20; ++seed) {
    EXPECT_EQ(survivors(seed), survivors(seed));
  }
}

TEST(MemEngineTest, FailWritesRejectsAndChangesNothing) {
  MemEngine engine;
  engine.fail_writes(2);
  for (int i = 0; i < 2; ++i) {
    const Status s = engine.write(put_batch(Space::kState, "k", "v"), /*sync=*/true);
    EXPECT_EQ(s.code(), Code::kIOError);
  }
  EXPECT_EQ(get_or_absent(engine, Space::kState, "k"), "<absent>");
  EXPECT_EQ(engine.unsynced_batches(), 0U);
  must_write(engine, put_batch(Space::kState, "k", "v"), /*sync=*/false);
  EXPECT_EQ(get_or_absent(engine, Space::kState, "k"), "v");
  EXPECT_EQ(engine.counters().failed_writes, 2U);
  EXPECT_EQ(engine.counters().writes, 1U);
}

TEST(MemEngineTest, AFullDiskRefusesEveryWriteWithResourceExhaustedAndChangesNothing) {
  MemEngine engine;
  must_write(engine, put_batch(Space::kState, "k", "before"), /*sync=*/true);
  engine.set_full(true);
  WriteBatch deletion;
  deletion.del(Space::kState, "k");
  EXPECT_EQ(engine.write(put_batch(Space::kState, "k", "after"), /*sync=*/true).code(),
            Code::kResourceExhausted);
  EXPECT_EQ(engine.write(put_batch(Space::kLog, "e", "entry"), /*sync=*/false).code(),
            Code::kResourceExhausted);
  // A deletion is a write too: a store with a write-ahead log needs room to record it.
  EXPECT_EQ(engine.write(deletion, /*sync=*/true).code(), Code::kResourceExhausted);
  // Reads and snapshots go on and see the store as it was.
  EXPECT_EQ(get_or_absent(engine, Space::kState, "k"), "before");
  EXPECT_EQ(get_or_absent(engine, Space::kLog, "e"), "<absent>");
  EXPECT_EQ(get_or_absent(*engine.snapshot(), Space::kState, "k"), "before");
  EXPECT_EQ(engine.unsynced_batches(), 0U);
  EXPECT_EQ(engine.counters().full_writes, 3U);
  EXPECT_EQ(engine.counters().writes, 1U);
  // Space returns: writes are taken again.
  engine.set_full(false);
  must_write(engine, put_batch(Space::kState, "k", "after"), /*sync=*/true);
  EXPECT_EQ(get_or_absent(engine, Space::kState, "k"), "after");
}

TEST(MemEngineTest, InjectedFailuresWaitWhileTheDiskIsFull) {
  MemEngine engine;
  engine.fail_writes(1);
  engine.set_full(true);
  EXPECT_EQ(engine.write(put_batch(Space::kState, "k", "v"), /*sync=*/true).code(),
            Code::kResourceExhausted);
  engine.set_full(false);
  EXPECT_EQ(engine.write(put_batch(Space::kState, "k", "v"), /*sync=*/true).code(), Code::kIOError);
  must_write(engine, put_batch(Space::kState, "k", "v"), /*sync=*/true);
  EXPECT_EQ(engine.counters().failed_writes, 1U);
  EXPECT_EQ(engine.counters().full_writes, 1U);
}

TEST(MemEngineTest, ACrashWhileTheDiskIsFullKeepsWhatWasSynced) {
  MemEngine engine;
  must_write(engine, put_batch(Space::kState, "a", "synced"), /*sync=*/true);
  engine.set_full(true);
  EXPECT_FALSE(engine.write(put_batch(Space::kState, "b", "refused"), /*sync=*/true).ok());
  Rng rng(1);
  engine.crash(rng);
  EXPECT_EQ(get_or_absent(engine, Space::kState, "a"), "synced");
  EXPECT_EQ(get_or_absent(engine, Space::kState, "b"), "<absent>");
  EXPECT_TRUE(engine.full()) << "a restart does not free the disk";
}

TEST(MemEngineTest, CorruptFlipsABitThatSurvivesACrash) {
  MemEngine engine;
  must_write(engine, put_batch(Space::kLog, "e", seal_record("payload")), /*sync=*/true);
  ASSERT_TRUE(engine.corrupt(Space::kLog, "e"));
  std::string_view payload;
  EXPECT_FALSE(open_record(get_or_absent(engine, Space::kLog, "e"), payload));
  Rng rng(1);
  engine.crash(rng);
  EXPECT_FALSE(open_record(get_or_absent(engine, Space::kLog, "e"), payload));
}

TEST(MemEngineTest, CorruptAbsentKeyReturnsFalse) {
  MemEngine engine;
  EXPECT_FALSE(engine.corrupt(Space::kLog, "missing"));
}

TEST(MemEngineTest, SnapshotAndIteratorAreCopyOnWrite) {
  MemEngine engine;
  must_write(engine, put_batch(Space::kState, "a", "old"), /*sync=*/false);
  const std::unique_ptr<Reader> snap = engine.snapshot();
  const std::unique_ptr<Iterator> it = engine.scan(Space::kState, "", "");
  WriteBatch change;
  change.put(Space::kState, "a", "new");
  change.put(Space::kState, "b", "added");
  must_write(engine, change, /*sync=*/false);

  EXPECT_EQ(scan_all(*snap, Space::kState), (KeyValues{{"a", "old"}}));
  ASSERT_TRUE(it->valid());
  EXPECT_EQ(it->value(), "old");
  it->next();
  EXPECT_FALSE(it->valid());
  EXPECT_EQ(scan_all(engine, Space::kState), (KeyValues{{"a", "new"}, {"b", "added"}}));
}

TEST(MemEngineTest, DeleteRangeRemovesHalfOpenRange) {
  MemEngine engine;
  WriteBatch fill;
  for (const char* key : {"a", "b", "c", "d"}) {
    fill.put(Space::kLog, key, key);
  }
  fill.delete_range(Space::kLog, "b", "d");
  must_write(engine, fill, /*sync=*/false);
  EXPECT_EQ(scan_all(engine, Space::kLog), (KeyValues{{"a", "a"}, {"d", "d"}}));
  EXPECT_EQ(scan_all(engine, Space::kLog, "b", "e"), (KeyValues{{"d", "d"}}));
}

TEST(MemEngineTest, CountersTrackWritesSyncsAndBytes) {
  MemEngine engine;
  must_write(engine, put_batch(Space::kState, "k", "vv"), /*sync=*/false);
  must_write(engine, put_batch(Space::kState, "k", "vvvv"), /*sync=*/true);
  EXPECT_EQ(engine.counters().writes, 2U);
  EXPECT_EQ(engine.counters().syncs, 1U);
  EXPECT_EQ(engine.counters().bytes_written, 3U + 5U);
  must_write(engine, put_batch(Space::kState, "x", "y"), /*sync=*/false);
  Rng rng(0);
  engine.crash(rng);
  EXPECT_EQ(engine.counters().crashes, 1U);
  EXPECT_LE(engine.counters().lost_batches, 1U);
}

}  // namespace
}  // namespace herald::storage
