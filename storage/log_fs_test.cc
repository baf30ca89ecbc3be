#include "storage/log_fs.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <string>

#include "storage/test_util.h"

namespace herald::storage {
namespace {

using testing::TempDir;

constexpr std::uint64_t kFileBytes = 8192;

std::unique_ptr<PosixLogFs> open_fs(const std::string& dir) {
  auto fs = PosixLogFs::open_dir(dir);
  EXPECT_TRUE(fs.ok()) << fs.status().to_string();
  return std::move(fs).value();
}

TEST(PosixLogFsTest, CreatePreallocatesZeros) {
  TempDir dir;
  const auto fs = open_fs(dir.path() + "/log");
  auto file = fs->create("a", kFileBytes);
  ASSERT_TRUE(file.ok()) << file.status().to_string();
  EXPECT_EQ((*file)->size(), kFileBytes);
  EXPECT_EQ(std::filesystem::file_size(dir.path() + "/log/a"), kFileBytes);
  struct stat st {};
  ASSERT_EQ(::stat((dir.path() + "/log/a").c_str(), &st), 0);
  EXPECT_GE(static_cast<std::uint64_t>(st.st_blocks) * 512, kFileBytes);  // allocated, not sparse
  std::string out;
  ASSERT_TRUE((*file)->read(0, kFileBytes, out).ok());
  EXPECT_EQ(out, std::string(kFileBytes, '\0'));
  EXPECT_EQ(fs->create("a", kFileBytes).status().code(), Code::kAlreadyExists);
}

TEST(PosixLogFsTest, WriteSyncReadBackAfterReopen) {
  TempDir dir;
  const auto fs = open_fs(dir.path());
  {
    auto file = fs->create("a", kFileBytes);
    ASSERT_TRUE(file.ok());
    ASSERT_TRUE((*file)->write(100, "hello").ok());
    ASSERT_TRUE((*file)->sync().ok());
    ASSERT_TRUE(fs->sync_dir().ok());
  }
  auto file = fs->open("a");
  ASSERT_TRUE(file.ok());
  EXPECT_EQ((*file)->size(), kFileBytes);
  std::string out;
  ASSERT_TRUE((*file)->read(100, 5, out).ok());
  EXPECT_EQ(out, "hello");
  EXPECT_EQ((*file)->read(kFileBytes - 2, 3, out).code(), Code::kIOError);
}

TEST(PosixLogFsTest, RenameRemoveAndList) {
  TempDir dir;
  const auto fs = open_fs(dir.path());
  ASSERT_TRUE(fs->create("a.tmp", kFileBytes).ok());
  ASSERT_TRUE(fs->rename("a.tmp", "a").ok());
  ASSERT_TRUE(fs->sync_dir().ok());
  auto names = fs->list();
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, std::vector<std::string>{"a"});
  ASSERT_TRUE(fs->remove("a").ok());
  ASSERT_TRUE(fs->sync_dir().ok());
  EXPECT_TRUE(fs->list()->empty());
  EXPECT_EQ(fs->open("a").status().code(), Code::kNotFound);
  EXPECT_EQ(fs->remove("a").code(), Code::kNotFound);
}

}  // namespace
}  // namespace herald::storage
