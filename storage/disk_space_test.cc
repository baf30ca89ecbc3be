#include "storage/disk_space.h"

#include <gtest/gtest.h>

namespace herald::storage {
namespace {

TEST(DiskSpaceTest, StatvfsReportsSomeFreeSpaceForAnExistingDirectory) {
  StatvfsDiskSpace disk("/tmp");
  auto free = disk.free_bytes();
  ASSERT_TRUE(free.ok()) << free.status().to_string();
  EXPECT_GT(*free, 0U);
}

TEST(DiskSpaceTest, StatvfsOnAMissingDirectoryIsAnIoError) {
  StatvfsDiskSpace disk("/nonexistent/herald-data");
  auto free = disk.free_bytes();
  ASSERT_FALSE(free.ok());
  EXPECT_EQ(free.status().code(), Code::kIOError);
}

TEST(DiskSpaceTest, ManualReportsWhatWasSet) {
  ManualDiskSpace disk(10);
  EXPECT_EQ(*disk.free_bytes(), 10U);
  disk.set(3);
  EXPECT_EQ(*disk.free_bytes(), 3U);
}

}  // namespace
}  // namespace herald::storage
