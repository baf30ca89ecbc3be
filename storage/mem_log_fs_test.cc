#include "storage/mem_log_fs.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "base/random.h"

namespace herald::storage {
namespace {

constexpr std::uint64_t kFileBytes = 64;

std::unique_ptr<LogFile> create_durably(MemLogFs& fs, const std::string& name) {
  auto file = fs.create(name, kFileBytes);
  EXPECT_TRUE(file.ok()) << file.status().to_string();
  EXPECT_TRUE(fs.sync_dir().ok());
  return std::move(file).value();
}

TEST(MemLogFsTest, CreatedFileIsPreallocatedWithZeros) {
  MemLogFs fs;
  auto file = create_durably(fs, "a");
  EXPECT_EQ(file->size(), kFileBytes);
  EXPECT_EQ(fs.contents("a"), std::string(kFileBytes, '\0'));
  EXPECT_EQ(fs.create("a", kFileBytes).status().code(), Code::kAlreadyExists);
}

TEST(MemLogFsTest, CrashKeepsSyncedWrites) {
  MemLogFs fs;
  auto file = create_durably(fs, "a");
  ASSERT_TRUE(file->write(0, "synced").ok());
  ASSERT_TRUE(file->sync().ok());
  Rng rng(1);
  fs.crash(rng);
  EXPECT_EQ(fs.contents("a").substr(0, 6), "synced");
}

TEST(MemLogFsTest, CrashKeepsAPrefixOfUnsyncedWritesPossiblyTorn) {
  // Three unsynced writes: every crash must leave a prefix of them, the last one possibly cut.
  bool saw_none = false;
  bool saw_all = false;
  bool saw_torn = false;
  for (std::uint64_t seed = 0; seed < 200; ++seed) {
    MemLogFs fs;
    auto file = create_durably(fs, "a");
    ASSERT_TRUE(file->write(0, "AAAA").ok());
    ASSERT_TRUE(file->write(4, "BBBB").ok());
    ASSERT_TRUE(file->write(8, "CCCC").ok());
    Rng rng(seed);
    fs.crash(rng);
    const std::string got = fs.contents("a").substr(0, 12);
    const std::string full = "AAAABBBBCCCC";
    std::size_t kept = 0;
    while (kept < full.size() && got[kept] == full[kept]) ++kept;
    EXPECT_EQ(got.substr(kept), std::string(12 - kept, '\0')) << "seed " << seed;
    saw_none |= kept == 0;
    saw_all |= kept == full.size();
    saw_torn |= kept % 4 != 0;
  }
  EXPECT_TRUE(saw_none);
  EXPECT_TRUE(saw_all);
  EXPECT_TRUE(saw_torn);
}

TEST(MemLogFsTest, CreateWithoutDirectorySyncIsLostInACrash) {
  MemLogFs fs;
  auto file = fs.create("a", kFileBytes);
  ASSERT_TRUE(file.ok());
  ASSERT_TRUE((*file)->sync().ok());  // the data, not the name
  EXPECT_FALSE(fs.durable_name("a"));
  Rng rng(1);
  fs.crash(rng);
  EXPECT_TRUE(fs.list()->empty());
}

TEST(MemLogFsTest, RenameAndRemoveWithoutDirectorySyncAreUndone) {
  MemLogFs fs;
  auto file = create_durably(fs, "a");
  ASSERT_TRUE(file->write(0, "data").ok());
  ASSERT_TRUE(file->sync().ok());
  ASSERT_TRUE(fs.rename("a", "b").ok());
  Rng rng(1);
  fs.crash(rng);
  EXPECT_EQ(fs.contents("a").substr(0, 4), "data");
  EXPECT_EQ(fs.open("b").status().code(), Code::kNotFound);
  ASSERT_TRUE(fs.remove("a").ok());
  fs.crash(rng);
  EXPECT_EQ(fs.contents("a").substr(0, 4), "data");
  ASSERT_TRUE(fs.remove("a").ok());
  ASSERT_TRUE(fs.sync_dir().ok());
  fs.crash(rng);
  EXPECT_TRUE(fs.list()->empty());
}

TEST(MemLogFsTest, FailedOperationsChangeNothing) {
  MemLogFs fs;
  auto file = create_durably(fs, "a");
  fs.fail_ops(2);
  EXPECT_EQ(file->write(0, "x").code(), Code::kIOError);
  EXPECT_EQ(file->sync().code(), Code::kIOError);
  EXPECT_EQ(fs.contents("a"), std::string(kFileBytes, '\0'));
  EXPECT_TRUE(file->write(0, "x").ok());
  EXPECT_EQ(fs.counters().failed_ops, 2U);
}

TEST(MemLogFsTest, AFullDiskRefusesWritesSyncsAndCreatesButNotReadsOrRemovals) {
  MemLogFs fs;
  auto file = create_durably(fs, "a");
  ASSERT_TRUE(file->write(0, "kept").ok());
  auto other = create_durably(fs, "b");
  fs.set_full(true);
  EXPECT_EQ(file->write(4, "refused").code(), Code::kResourceExhausted);
  EXPECT_EQ(file->sync().code(), Code::kResourceExhausted);
  EXPECT_EQ(fs.create("c", kFileBytes).status().code(), Code::kResourceExhausted);
  EXPECT_FALSE(fs.durable_name("c"));
  EXPECT_EQ(fs.list()->size(), 2U);
  // Nothing changed: the unsynced write is still unsynced (a crash may drop it).
  EXPECT_EQ(fs.contents("a").substr(0, 11), std::string("kept") + std::string(7, '\0'));
  std::string out;
  ASSERT_TRUE(file->read(0, 4, out).ok());
  EXPECT_EQ(out, "kept");
  // What frees space, or needs no new block, still works.
  EXPECT_TRUE(fs.rename("b", "d").ok());
  EXPECT_TRUE(fs.remove("d").ok());
  EXPECT_TRUE(fs.sync_dir().ok());
  EXPECT_TRUE(fs.open("a").ok());
  EXPECT_EQ(fs.counters().full_ops, 3U);
  // Space returns.
  fs.set_full(false);
  EXPECT_TRUE(file->write(4, "taken").ok());
  EXPECT_TRUE(file->sync().ok());
  EXPECT_TRUE(fs.create("c", kFileBytes).ok());
  other.reset();
}

TEST(MemLogFsTest, InjectedFailuresWaitWhileTheDiskIsFull) {
  MemLogFs fs;
  auto file = create_durably(fs, "a");
  fs.fail_ops(1);
  fs.set_full(true);
  EXPECT_EQ(file->write(0, "x").code(), Code::kResourceExhausted);
  fs.set_full(false);
  EXPECT_EQ(file->write(0, "x").code(), Code::kIOError);
  EXPECT_TRUE(file->write(0, "x").ok());
  EXPECT_EQ(fs.counters().failed_ops, 1U);
  EXPECT_EQ(fs.counters().full_ops, 1U);
}

TEST(MemLogFsTest, CorruptFlipsOneBitInBothImages) {
  MemLogFs fs;
  auto file = create_durably(fs, "a");
  ASSERT_TRUE(fs.corrupt("a", 3, 1));
  EXPECT_EQ(fs.contents("a")[3], 0x02);
  Rng rng(1);
  fs.crash(rng);
  EXPECT_EQ(fs.contents("a")[3], 0x02);
  EXPECT_FALSE(fs.corrupt("a", kFileBytes));
  EXPECT_FALSE(fs.corrupt("missing", 0));
}

TEST(MemLogFsTest, ReadPastTheEndIsAnError) {
  MemLogFs fs;
  auto file = create_durably(fs, "a");
  std::string out;
  EXPECT_EQ(file->read(kFileBytes - 1, 2, out).code(), Code::kIOError);
  EXPECT_TRUE(file->read(kFileBytes - 1, 1, out).ok());
}

// Every file's name and contents, as reads see them.
std::map<std::string, std::string> image_of(const MemLogFs& fs) {
  std::map<std::string, std::string> out;
  const std::vector<std::string> names = *fs.list();
  for (const std::string& name : names) out[name] = fs.contents(name);
  return out;
}

TEST(MemLogFsTest, LyingCrashLosesASyncedWriteAndKeepsAnEarlierMoment) {
  // Writes and directory syncs to two files; after each, the image a lying crash may go back to.
  bool saw_empty = false;
  bool saw_middle = false;
  for (std::uint64_t seed = 0; seed < 100; ++seed) {
    MemLogFs fs;
    fs.record_history();
    std::vector<std::map<std::string, std::string>> moments{image_of(fs)};
    auto a = fs.create("a", kFileBytes);
    ASSERT_TRUE(a.ok());
    ASSERT_TRUE(fs.sync_dir().ok());
    moments.push_back(image_of(fs));
    ASSERT_TRUE((*a)->write(0, "one").ok());
    moments.push_back(image_of(fs));
    ASSERT_TRUE((*a)->sync().ok());
    auto b = fs.create("b", kFileBytes);
    ASSERT_TRUE(b.ok());
    ASSERT_TRUE(fs.sync_dir().ok());
    moments.push_back(image_of(fs));
    ASSERT_TRUE((*b)->write(0, "two").ok());
    moments.push_back(image_of(fs));
    ASSERT_TRUE((*a)->write(3, "three").ok());
    moments.push_back(image_of(fs));
    ASSERT_TRUE((*a)->sync().ok());
    ASSERT_TRUE((*b)->sync().ok());
    const std::map<std::string, std::string> synced = image_of(fs);

    Rng rng(seed);
    const std::uint64_t lost = fs.crash_lying(rng);
    EXPECT_GT(lost, 0U) << "seed " << seed;
    const std::map<std::string, std::string> after = image_of(fs);
    EXPECT_NE(after, synced) << "seed " << seed;
    // Exactly the state after some earlier operation: never a later write without the earlier.
    bool earlier = false;
    for (std::size_t i = 0; i + 1 < moments.size(); ++i) earlier |= after == moments[i];
    EXPECT_TRUE(earlier) << "seed " << seed;
    saw_empty |= after.empty();
    saw_middle |= after.contains("b") && after.at("b").starts_with("two");
    EXPECT_EQ(fs.counters().lost_synced_writes, lost);
    EXPECT_EQ(fs.counters().lying_crashes, 1U);
  }
  EXPECT_TRUE(saw_empty);
  EXPECT_TRUE(saw_middle);
}

TEST(MemLogFsTest, LyingCrashWithNothingSyncedIsAPlainCrash) {
  MemLogFs fs;
  auto a = create_durably(fs, "a");
  ASSERT_TRUE(a->write(0, "kept").ok());
  ASSERT_TRUE(a->sync().ok());
  fs.record_history();  // what was durable before is never lost
  ASSERT_TRUE(a->write(4, "maybe").ok());
  Rng rng(3);
  EXPECT_EQ(fs.crash_lying(rng), 0U);
  EXPECT_EQ(fs.contents("a").substr(0, 4), "kept");
  EXPECT_EQ(fs.counters().lying_crashes, 0U);
  EXPECT_EQ(fs.counters().crashes, 1U);
}

TEST(MemLogFsTest, APlainCrashEndsTheHistoryALyingCrashCanUndo) {
  for (std::uint64_t seed = 0; seed < 20; ++seed) {
    MemLogFs fs;
    fs.record_history();
    auto a = create_durably(fs, "a");
    ASSERT_TRUE(a->write(0, "before").ok());
    ASSERT_TRUE(a->sync().ok());
    Rng rng(seed);
    fs.crash(rng);
    auto reopened = fs.open("a");
    ASSERT_TRUE(reopened.ok());
    ASSERT_TRUE((*reopened)->write(6, "after").ok());
    ASSERT_TRUE((*reopened)->sync().ok());
    EXPECT_EQ(fs.crash_lying(rng), 1U);
    EXPECT_EQ(fs.contents("a").substr(0, 11), std::string("before") + std::string(5, '\0'));
  }
}

TEST(MemLogFsTest, LyingCrashNeverLosesWritesOlderThanTheHistoryBound) {
  MemLogFs fs;
  fs.record_history();
  auto a = create_durably(fs, "a");
  ASSERT_TRUE(a->write(0, "X").ok());
  ASSERT_TRUE(a->sync().ok());
  for (std::size_t i = 0; i < kMaxLogFsHistoryOps; ++i) {
    ASSERT_TRUE(a->write(1 + i % (kFileBytes - 1), "y").ok());
    ASSERT_TRUE(a->sync().ok());
  }
  for (std::uint64_t seed = 0; seed < 20; ++seed) {
    Rng rng(seed);
    static_cast<void>(fs.crash_lying(rng));
    ASSERT_EQ(fs.list()->size(), 1U);
    EXPECT_EQ(fs.contents("a")[0], 'X') << "seed " << seed;
  }
}

}  // namespace
}  // namespace herald::storage
