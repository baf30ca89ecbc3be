#include "rsm/apply_batch.h"

#include <gtest/gtest.h>

#include <memory>

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

TEST(ApplyBatchTest, CountsWhatIsWrittenAfterARollback) {
  storage::MemEngine engine;
  ApplyBatch batch(&engine);
  batch.put(Space::kState, "a", "12345");
  batch.del(Space::kState, "b");
  const auto point = batch.savepoint();
  batch.put(Space::kState, "c", "undone");
  batch.rollback(point);
  const WriteCounts counts = batch.counts();
  EXPECT_EQ(counts.puts, 1U);
  EXPECT_EQ(counts.deletes, 1U);
  EXPECT_EQ(counts.bytes, 7U);  // "a" + "12345" + "b"
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

TEST(ApplyBatchTest, AWriteOfAKeyTheBatchWritesReplacesItsOperation) {
  storage::MemEngine engine;
  ApplyBatch batch(&engine);
  batch.put(Space::kState, "a", "1");
  batch.put(Space::kState, "b", "2");
  batch.put(Space::kMeta, "a", "other space");
  batch.put(Space::kState, "a", "333");
  batch.del(Space::kState, "b");
  const auto& ops = batch.writes().ops();
  ASSERT_EQ(ops.size(), 3U);  // one per (space, key), in the order each key was first written
  EXPECT_EQ(ops[0].type, storage::WriteBatch::OpType::kPut);
  EXPECT_EQ(ops[0].value, "333");
  EXPECT_EQ(ops[1].type, storage::WriteBatch::OpType::kDelete);
  EXPECT_EQ(ops[1].key, "b");
  EXPECT_EQ(ops[2].value, "other space");
  EXPECT_EQ(batch.writes().byte_size(), 1U + 3U + 1U + 1U + 11U);
  EXPECT_EQ(read(batch, "a"), "333");
  EXPECT_EQ(read(batch, "b"), std::nullopt);
  // The engine ends as the batch's writes in their original order would leave it.
  ASSERT_TRUE(engine.write(batch.writes(), true).ok());
  EXPECT_EQ(*engine.get(Space::kState, "a"), "333");
  EXPECT_EQ(*engine.get(Space::kState, "b"), std::nullopt);
}

TEST(ApplyBatchTest, RollbackRestoresAnOperationReplacedAfterTheSavepoint) {
  storage::MemEngine engine;
  ApplyBatch batch(&engine);
  batch.put(Space::kState, "a", "before");
  const auto point = batch.savepoint();
  batch.put(Space::kState, "a", "after");
  batch.put(Space::kState, "n", "new");
  batch.del(Space::kState, "a");
  batch.put(Space::kState, "n", "newer");
  batch.rollback(point);
  ASSERT_EQ(batch.writes().ops().size(), 1U);
  EXPECT_EQ(batch.writes().ops()[0].type, storage::WriteBatch::OpType::kPut);
  EXPECT_EQ(batch.writes().byte_size(), 7U);  // "a" + "before"
  EXPECT_EQ(read(batch, "a"), "before");
  EXPECT_EQ(read(batch, "n"), std::nullopt);
  batch.put(Space::kState, "n", "again");  // a key rolled back is staged afresh
  EXPECT_EQ(batch.writes().ops().size(), 2U);
  EXPECT_EQ(read(batch, "n"), "again");
}

// A reader that counts its point reads.
class CountingReader final : public storage::Reader {
 public:
  explicit CountingReader(const storage::Reader* inner) : inner_(inner) {}
  [[nodiscard]] Result<std::optional<std::string>> get(Space space,
                                                       std::string_view key) const override {
    ++gets;
    return inner_->get(space, key);
  }
  [[nodiscard]] std::unique_ptr<storage::Iterator> scan(Space space, std::string_view begin,
                                                        std::string_view end) const override {
    return inner_->scan(space, begin, end);
  }
  mutable int gets = 0;

 private:
  const storage::Reader* inner_;
};

// An engine holding "a" = "engine", read through a CountingReader by an ApplyBatch.
class ApplyBatchReadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    storage::WriteBatch seed;
    seed.put(Space::kState, "a", "engine");
    ASSERT_TRUE(engine.write(seed, true).ok());
  }
  storage::MemEngine engine;
  CountingReader reader{&engine};
  ApplyBatch batch{&reader};
};

TEST_F(ApplyBatchReadTest, AKeyIsReadFromTheEngineOncePerBatch) {
  EXPECT_EQ(read(batch, "a"), "engine");
  EXPECT_EQ(read(batch, "a"), "engine");
  EXPECT_EQ(read(batch, "absent"), std::nullopt);
  EXPECT_EQ(read(batch, "absent"), std::nullopt);
  EXPECT_EQ(reader.gets, 2);                // "a" and "absent", once each
  batch.put(Space::kState, "a", "staged");  // a staged write hides what was read
  EXPECT_EQ(read(batch, "a"), "staged");
  batch.clear();  // a new batch reads the engine afresh
  EXPECT_EQ(read(batch, "a"), "engine");
  EXPECT_EQ(reader.gets, 3);
}

TEST_F(ApplyBatchReadTest, RollbackUncoversWhatWasReadFromTheEngine) {
  EXPECT_EQ(read(batch, "a"), "engine");
  const auto point = batch.savepoint();
  batch.del(Space::kState, "a");
  EXPECT_EQ(read(batch, "a"), std::nullopt);
  batch.rollback(point);
  EXPECT_EQ(read(batch, "a"), "engine");
  EXPECT_EQ(reader.gets, 1);
}

std::vector<std::string> scanned(const ApplyBatch& batch, std::string_view begin,
                                 std::string_view end, std::size_t limit) {
  auto entries = batch.scan(Space::kState, begin, end, limit);
  EXPECT_TRUE(entries.ok());
  std::vector<std::string> out;
  if (!entries.ok()) return out;
  for (const auto& e : *entries) out.push_back(e.key + "=" + e.value);
  return out;
}

using Strings = std::vector<std::string>;

TEST(ApplyBatchTest, ScanMergesStagedWritesOverTheEngineInKeyOrder) {
  storage::MemEngine engine;
  storage::WriteBatch seed;
  for (const char* k : {"a", "c", "e"}) seed.put(Space::kState, k, "old");
  ASSERT_TRUE(engine.write(seed, true).ok());
  ApplyBatch batch(&engine);
  batch.put(Space::kState, "b", "new");
  batch.put(Space::kState, "c", "new");  // replaces the engine's value
  batch.put(Space::kState, "f", "new");
  EXPECT_EQ(scanned(batch, "", "", 10), (Strings{"a=old", "b=new", "c=new", "e=old", "f=new"}));
}

TEST(ApplyBatchTest, ScanSkipsKeysDeletedInTheBatch) {
  storage::MemEngine engine;
  storage::WriteBatch seed;
  for (const char* k : {"a", "b", "c"}) seed.put(Space::kState, k, "old");
  ASSERT_TRUE(engine.write(seed, true).ok());
  ApplyBatch batch(&engine);
  batch.del(Space::kState, "a");
  batch.put(Space::kState, "x", "new");
  batch.del(Space::kState, "x");  // staged, then deleted: never in the engine
  EXPECT_EQ(scanned(batch, "", "", 10), (Strings{"b=old", "c=old"}));
  // The limit counts live keys: the hidden "a" does not use it up.
  EXPECT_EQ(scanned(batch, "", "", 1), (Strings{"b=old"}));
}

TEST(ApplyBatchTest, ScanStopsAtTheLimitAndTheRangeEnd) {
  storage::MemEngine engine;
  storage::WriteBatch seed;
  for (const char* k : {"a1", "a3", "b1"}) seed.put(Space::kState, k, "old");
  ASSERT_TRUE(engine.write(seed, true).ok());
  ApplyBatch batch(&engine);
  batch.put(Space::kState, "a2", "new");
  batch.put(Space::kState, "a9", "new");
  batch.put(Space::kState, "b0", "new");  // at the end bound: outside
  EXPECT_EQ(scanned(batch, "a", "b", 2), (Strings{"a1=old", "a2=new"}));
  EXPECT_EQ(scanned(batch, "a2", "b", 10), (Strings{"a2=new", "a3=old", "a9=new"}));
  EXPECT_EQ(scanned(batch, "a", "b", 0), Strings{});
}

TEST(ApplyBatchTest, ScanKeepsToItsSpace) {
  storage::MemEngine engine;
  storage::WriteBatch seed;
  seed.put(Space::kMeta, "a", "meta");
  ASSERT_TRUE(engine.write(seed, true).ok());
  ApplyBatch batch(&engine);
  batch.put(Space::kMeta, "b", "meta");
  batch.put(Space::kState, "c", "state");
  EXPECT_EQ(scanned(batch, "", "", 10), (Strings{"c=state"}));
}

TEST(ApplyBatchTest, ScanAfterRollbackSeesTheEngineAgain) {
  storage::MemEngine engine;
  storage::WriteBatch seed;
  seed.put(Space::kState, "a", "old");
  ASSERT_TRUE(engine.write(seed, true).ok());
  ApplyBatch batch(&engine);
  const auto point = batch.savepoint();
  batch.del(Space::kState, "a");
  batch.put(Space::kState, "b", "new");
  batch.rollback(point);
  EXPECT_EQ(scanned(batch, "", "", 10), (Strings{"a=old"}));
}

}  // namespace
}  // namespace herald::rsm
