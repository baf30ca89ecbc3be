#include "rsm/session.h"

#include <gtest/gtest.h>

#include "storage/mem_engine.h"

namespace herald::rsm {
namespace {

class SessionTest : public ::testing::Test {
 protected:
  Admission admit_id(std::uint64_t id, std::uint64_t incarnation = 7) {
    auto r = table_.admit(batch_, 1, incarnation, id);
    EXPECT_TRUE(r.ok());
    return r.ok() ? *r : Admission::kTooOld;
  }
  storage::MemEngine engine_;
  ApplyBatch batch_{&engine_};
  SessionTable table_;
};

TEST_F(SessionTest, InOrderIdsAreFresh) {
  for (std::uint64_t id = 1; id <= 200; ++id) {
    EXPECT_EQ(admit_id(id), Admission::kFresh) << id;
  }
}

TEST_F(SessionTest, RepeatedIdIsDuplicate) {
  EXPECT_EQ(admit_id(1), Admission::kFresh);
  EXPECT_EQ(admit_id(2), Admission::kFresh);
  EXPECT_EQ(admit_id(2), Admission::kDuplicate);
  EXPECT_EQ(admit_id(1), Admission::kDuplicate);
}

TEST_F(SessionTest, ReorderedWithinWindowIsAdmittedOnce) {
  EXPECT_EQ(admit_id(10), Admission::kFresh);
  EXPECT_EQ(admit_id(5), Admission::kFresh);
  EXPECT_EQ(admit_id(5), Admission::kDuplicate);
  EXPECT_EQ(admit_id(9), Admission::kFresh);
  EXPECT_EQ(admit_id(10), Admission::kDuplicate);
}

TEST_F(SessionTest, OlderThanWindowIsRefused) {
  EXPECT_EQ(admit_id(1), Admission::kFresh);
  EXPECT_EQ(admit_id(1 + kSessionWindowIds + 5), Admission::kFresh);
  EXPECT_EQ(admit_id(2), Admission::kTooOld);
  EXPECT_EQ(admit_id(1), Admission::kTooOld);
}

TEST_F(SessionTest, JumpOfExactlyWindowKeepsOldMaxRemembered) {
  EXPECT_EQ(admit_id(1), Admission::kFresh);
  EXPECT_EQ(admit_id(1 + kSessionWindowIds), Admission::kFresh);
  EXPECT_EQ(admit_id(1), Admission::kDuplicate);
}

TEST_F(SessionTest, ANewIncarnationStartsItsOwnIds) {
  EXPECT_EQ(admit_id(5, 1), Admission::kFresh);
  EXPECT_EQ(admit_id(5, 2), Admission::kFresh);
  EXPECT_EQ(admit_id(5, 2), Admission::kDuplicate);
}

TEST_F(SessionTest, ANewIncarnationRetiresTheOldOnesRecordAndRefusesItsCommands) {
  EXPECT_EQ(admit_id(1, 1), Admission::kFresh);
  EXPECT_EQ(admit_id(2, 1), Admission::kFresh);
  EXPECT_EQ(admit_id(1, 2), Admission::kFresh);
  // A late command of the ended run is refused, never applied: new id or old.
  EXPECT_EQ(admit_id(3, 1), Admission::kTooOld);
  EXPECT_EQ(admit_id(2, 1), Admission::kTooOld);
  ASSERT_TRUE(engine_.write(batch_.writes(), true).ok());
  // One record per origin is left (plus the origin's own), however many runs it had.
  for (std::uint64_t run = 3; run <= 20; ++run) {
    EXPECT_EQ(admit_id(1, run), Admission::kFresh);
  }
  ASSERT_TRUE(engine_.write(batch_.writes(), true).ok());
  std::size_t records = 0;
  for (auto it = engine_.scan(storage::Space::kState, "s", "t"); it->valid(); it->next()) {
    ++records;
  }
  EXPECT_EQ(records, 2U);
  // A restarted replica (nothing cached) judges the same way.
  ApplyBatch fresh(&engine_);
  SessionTable cold;
  auto old = cold.admit(fresh, 1, 19, 7);
  ASSERT_TRUE(old.ok());
  EXPECT_EQ(*old, Admission::kTooOld);
  auto dup = cold.admit(fresh, 1, 20, 1);
  ASSERT_TRUE(dup.ok());
  EXPECT_EQ(*dup, Admission::kDuplicate);
}

TEST_F(SessionTest, SurvivesWriteAndReload) {
  EXPECT_EQ(admit_id(3), Admission::kFresh);
  ASSERT_TRUE(engine_.write(batch_.writes(), true).ok());
  ApplyBatch fresh(&engine_);
  SessionTable cold;  // A restarted replica: nothing cached, the record comes from the engine.
  auto r = cold.admit(fresh, 1, 7, 3);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, Admission::kDuplicate);
}

}  // namespace
TEST_F(SessionTest, ZeroIdsAreInvalidNotFatal) {
  // A forwarded command with request id 0 (or no origin or incarnation) is refused as data, on
  // every replica alike; it must not trip an assertion (the entry would stay in the log).
  auto zero_id = table_.admit(batch_, 1, 7, 0);
  ASSERT_TRUE(zero_id.ok());
  EXPECT_EQ(*zero_id, Admission::kInvalid);
  auto zero_origin = table_.admit(batch_, 0, 7, 1);
  ASSERT_TRUE(zero_origin.ok());
  EXPECT_EQ(*zero_origin, Admission::kInvalid);
  auto zero_incarnation = table_.admit(batch_, 1, 0, 1);
  ASSERT_TRUE(zero_incarnation.ok());
  EXPECT_EQ(*zero_incarnation, Admission::kInvalid);
  EXPECT_EQ(admit_id(1), Admission::kFresh);  // the session itself is untouched
}

}  // namespace herald::rsm
