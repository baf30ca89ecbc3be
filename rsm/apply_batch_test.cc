#include "rsm/apply_batch.h"

#include <gtest/gtest.h>

#include "storage/mem_engine.h"

namespace herald::rsm {
namespace {

using storage::Space;

std::optional<std::string> read(const ApplyBatch& batch, std::string_view key) {
  auto v = batch.get(Space::kState, key);
  EXPECT_TRUE(v.ok());
  return v.ok() ? *v : std::nullopt;
}

TEST(ApplyBatchTest, ReadsSeeStagedWritesBeforeTheEngine) {
  storage::MemEngine engine;
  storage::WriteBatch seed;
  seed.put(Space::kState, "a", "old");
  ASSERT_TRUE(engine.write(seed, true).ok());
  ApplyBatch batch(&engine);
  EXPECT_EQ(read(batch, "a"), "old");
  batch.put(Space::kState, "a", "new");
  EXPECT_EQ(read(batch, "a"), "new");
  batch.del(Space::kState, "a");
  EXPECT_EQ(read(batch, "a"), std::nullopt);
}

TEST(ApplyBatchTest, RollbackRestoresReadsAndDropsWrites) {
  storage::MemEngine engine;
  storage::WriteBatch seed;
  seed.put(Space::kState, "a", "engine");
  ASSERT_TRUE(engine.write(seed, true).ok());
  ApplyBatch batch(&engine);
  batch.put(Space::kState, "b", "kept");
  const auto point = batch.savepoint();
  batch.put(Space::kState, "a", "staged");
  batch.del(Space::kState, "b");
  batch.put(Space::kState, "c", "new");
  batch.rollback(point);
  EXPECT_EQ(read(batch, "a"), "engine");
  EXPECT_EQ(read(batch, "b"), "kept");
  EXPECT_EQ(read(batch, "c"), std::nullopt);
  EXPECT_EQ(batch.writes().ops().size(), 1U);
  EXPECT_EQ(batch.writes().byte_size(), 5U);  // "b" + "kept"
}

TEST(ApplyBatchTest, NestedSavepointsRollBackInnermostFirst) {
  storage::MemEngine engine;
  ApplyBatch batch(&engine);
  const auto outer = batch.savepoint();
  batch.put(Space::kState, "x", "1");
  const auto inner = batch.savepoint();
  batch.put(Space::kState, "x", "2");
  batch.rollback(inner);
  EXPECT_EQ(read(batch, "x"), "1");
  batch.rollback(outer);
  EXPECT_EQ(read(batch, "x"), std::nullopt);
  EXPECT_TRUE(batch.writes().empty());
}

}  // namespace
}  // namespace herald::rsm
