#include "rsm/kv_state_machine.h"

#include <gtest/gtest.h>

#include "storage/mem_engine.h"

namespace herald::rsm {
namespace {

rsmpb::Command put_command(std::string key, std::string value) {
  rsmpb::Command c;
  c.mutable_kv_put()->set_key(std::move(key));
  c.mutable_kv_put()->set_value(std::move(value));
  return c;
}

class KvStateMachineTest : public ::testing::Test {
 protected:
  storage::MemEngine engine_;
  KvStateMachine sm_;
};

TEST_F(KvStateMachineTest, PutSetsRevisionToLogIndex) {
  ApplyBatch batch(&engine_);
  const auto r = sm_.apply(7, put_command("a", "1"), batch);
  EXPECT_EQ(r.code(), 0U);
  EXPECT_EQ(r.revision(), 7U);
  ASSERT_TRUE(engine_.write(batch.writes(), false).ok());
  auto v = KvStateMachine::read(engine_, "a");
  ASSERT_TRUE(v.ok());
  ASSERT_TRUE(v->has_value());
  EXPECT_EQ((*v)->value(), "1");
  EXPECT_EQ((*v)->revision(), 7U);
}

TEST_F(KvStateMachineTest, LaterEntryInSameBatchSeesEarlierWrite) {
  ApplyBatch batch(&engine_);
  ASSERT_EQ(sm_.apply(3, put_command("a", "1"), batch).code(), 0U);
  auto cas = put_command("a", "2");
  cas.mutable_kv_put()->set_has_expected_revision(true);
  cas.mutable_kv_put()->set_expected_revision(3);
  const auto r = sm_.apply(4, cas, batch);
  EXPECT_EQ(r.code(), 0U);
  EXPECT_EQ(r.revision(), 4U);
}

TEST_F(KvStateMachineTest, CompareAndSetWithWrongRevisionFails) {
  ApplyBatch batch(&engine_);
  ASSERT_EQ(sm_.apply(3, put_command("a", "1"), batch).code(), 0U);
  auto cas = put_command("a", "2");
  cas.mutable_kv_put()->set_has_expected_revision(true);
  cas.mutable_kv_put()->set_expected_revision(0);  // "must not exist"
  const auto r = sm_.apply(4, cas, batch);
  EXPECT_EQ(r.code(), static_cast<std::uint32_t>(Code::kFailedPrecondition));
  EXPECT_EQ(r.current_revision(), 3U);
}

TEST_F(KvStateMachineTest, DeleteReportsWhetherKeyExisted) {
  ApplyBatch batch(&engine_);
  rsmpb::Command del;
  del.mutable_kv_delete()->set_key("a");
  EXPECT_FALSE(sm_.apply(1, del, batch).existed());
  ASSERT_EQ(sm_.apply(2, put_command("a", "1"), batch).code(), 0U);
  EXPECT_TRUE(sm_.apply(3, del, batch).existed());
  auto v = batch.get(storage::Space::kState, KvStateMachine::state_key("a"));
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v->has_value());
}

TEST_F(KvStateMachineTest, OversizeValueIsRejectedDeterministically) {
  ApplyBatch batch(&engine_);
  const auto r = sm_.apply(1, put_command("a", std::string(kMaxKvValueBytes + 1, 'x')), batch);
  EXPECT_EQ(r.code(), static_cast<std::uint32_t>(Code::kInvalidArgument));
  EXPECT_TRUE(batch.writes().empty());
}

TEST_F(KvStateMachineTest, CorruptRecordIsReportedNotServed) {
  ApplyBatch batch(&engine_);
  ASSERT_EQ(sm_.apply(1, put_command("a", "1"), batch).code(), 0U);
  ASSERT_TRUE(engine_.write(batch.writes(), true).ok());
  ASSERT_TRUE(engine_.corrupt(storage::Space::kState, KvStateMachine::state_key("a")));
  auto v = KvStateMachine::read(engine_, "a");
  EXPECT_EQ(v.status().code(), Code::kCorruption);
}

}  // namespace
}  // namespace herald::rsm
