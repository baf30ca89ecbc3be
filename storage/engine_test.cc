#include "storage/engine.h"

#include <gtest/gtest.h>

#include <string>

namespace herald::storage {
namespace {

using OpType = WriteBatch::OpType;

TEST(WriteBatchTest, RecordsOpsInOrder) {
  WriteBatch batch;
  EXPECT_TRUE(batch.empty());
  batch.put(Space::kState, "k", "v");
  batch.del(Space::kMeta, "gone");
  batch.delete_range(Space::kLog, "a", "c");
  ASSERT_EQ(batch.ops().size(), 3U);
  EXPECT_EQ(batch.ops()[0].type, OpType::kPut);
  EXPECT_EQ(batch.ops()[0].space, Space::kState);
  EXPECT_EQ(batch.ops()[0].key, "k");
  EXPECT_EQ(batch.ops()[0].value, "v");
  EXPECT_EQ(batch.ops()[1].type, OpType::kDelete);
  EXPECT_EQ(batch.ops()[1].key, "gone");
  EXPECT_EQ(batch.ops()[2].type, OpType::kDeleteRange);
  EXPECT_EQ(batch.ops()[2].key, "a");
  EXPECT_EQ(batch.ops()[2].value, "c");
  EXPECT_FALSE(batch.empty());
}

TEST(WriteBatchTest, ByteSizeCountsKeysAndValues) {
  WriteBatch batch;
  batch.put(Space::kState, "key", "value");    // 8
  batch.del(Space::kState, "ab");              // 2
  batch.delete_range(Space::kLog, "x", "yz");  // 3
  EXPECT_EQ(batch.byte_size(), 13U);
}

TEST(WriteBatchTest, AppendKeepsOrderAndAddsSizes) {
  WriteBatch first;
  first.put(Space::kLog, "1", "a");
  WriteBatch second;
  second.put(Space::kState, "2", "bb");
  second.del(Space::kMeta, "3");
  first.append(second);
  ASSERT_EQ(first.ops().size(), 3U);
  EXPECT_EQ(first.ops()[0].key, "1");
  EXPECT_EQ(first.ops()[1].key, "2");
  EXPECT_EQ(first.ops()[2].key, "3");
  EXPECT_EQ(first.byte_size(), 2U + 3U + 1U);
  EXPECT_EQ(second.ops().size(), 2U);  // the source is untouched
}

TEST(WriteBatchTest, ClearEmptiesOpsAndSize) {
  WriteBatch batch;
  batch.put(Space::kState, "k", "v");
  batch.clear();
  EXPECT_TRUE(batch.empty());
  EXPECT_EQ(batch.byte_size(), 0U);
}

TEST(WriteBatchTest, KeysAndValuesMayHoldZeroBytes) {
  WriteBatch batch;
  const std::string key("a\0b", 3);
  batch.put(Space::kState, key, std::string(2, '\0'));
  EXPECT_EQ(batch.ops()[0].key.size(), 3U);
  EXPECT_EQ(batch.ops()[0].value.size(), 2U);
}

TEST(SpaceNameTest, NamesMatchColumnFamilies) {
  EXPECT_STREQ(space_name(Space::kLog), "log");
  EXPECT_STREQ(space_name(Space::kMeta), "meta");
  EXPECT_STREQ(space_name(Space::kState), "state");
}

}  // namespace
}  // namespace herald::storage
