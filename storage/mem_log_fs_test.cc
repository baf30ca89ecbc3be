#include "storage/mem_log_fs.h"

#include <gtest/gtest.h>

#include <string>

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

}  // namespace
}  // namespace herald::storage
