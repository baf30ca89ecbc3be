// Tests of carrying a damaged replica's hard state and vote floor over into an empty engine.
#include "rsm/rebuild.h"

#include <gtest/gtest.h>

#include "base/encoding.h"
#include "rsm/node.h"
#include "storage/log_store.h"
#include "storage/mem_engine.h"

namespace herald::rsm {
namespace {

constexpr raft::Term kTerm = 7;
constexpr raft::NodeId kVote = 3;
constexpr raft::Index kCommit = 12;
constexpr raft::Index kLast = 15;
constexpr std::int64_t kWallMs = 1'000'000;

// A replica's store: entries 1..kLast, commit kCommit, voted for kVote in kTerm.
void fill(storage::MemEngine& engine) {
  auto log = storage::LogStore::open(&engine);
  ASSERT_TRUE(log.ok());
  std::vector<raftpb::Entry> entries;
  for (raft::Index i = 1; i <= kLast; ++i) {
    raftpb::Entry e;
    e.set_index(i);
    e.set_term(kTerm);
    e.set_data("entry");
    entries.push_back(e);
  }
  raftpb::HardState hs;
  hs.set_term(kTerm);
  hs.set_vote(kVote);
  hs.set_commit(kCommit);
  ASSERT_TRUE((*log)->save(hs, std::nullopt, entries, /*sync=*/true).ok());
}

TEST(RebuildTest, TheHardStateAndTheHighestLoggedIndexSurviveDamagedEntries) {
  storage::MemEngine damaged;
  fill(damaged);
  ASSERT_TRUE(damaged.corrupt(storage::Space::kLog, storage::log_key(kLast)));
  ASSERT_TRUE(damaged.corrupt(storage::Space::kLog, storage::log_key(2)));
  storage::MemEngine fresh;
  auto floor = carry_over_for_rebuild(damaged, fresh, "entry 15 fails its checksum", kWallMs);
  ASSERT_TRUE(floor.ok()) << floor.status().to_string();
  EXPECT_EQ(*floor, kLast);

  auto log = storage::LogStore::open(&fresh);
  ASSERT_TRUE(log.ok()) << log.status().to_string();
  EXPECT_EQ((*log)->last_index(), 0U);
  const auto state = (*log)->initial_state();
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(state->hard_state.term(), kTerm);
  EXPECT_EQ(state->hard_state.vote(), kVote);
  EXPECT_EQ(state->hard_state.commit(), 0U);
  const auto mark = read_rebuild_mark(fresh);
  ASSERT_TRUE(mark.ok() && mark->has_value());
  EXPECT_EQ((*mark)->vote_floor(), kLast);
  EXPECT_EQ((*mark)->rebuilds(), 1U);
  EXPECT_EQ((*mark)->reason(), "entry 15 fails its checksum");
  EXPECT_FALSE(fresh.scan(storage::Space::kState, "", "")->valid()) << "no state is carried over";
}

TEST(RebuildTest, ASecondRebuildBeforeCatchingUpKeepsTheHigherFloor) {
  storage::MemEngine damaged;
  fill(damaged);
  storage::MemEngine once;
  ASSERT_TRUE(carry_over_for_rebuild(damaged, once, "first", kWallMs).ok());
  // Damaged again while its log was still short: the first floor stands.
  storage::MemEngine twice;
  auto floor = carry_over_for_rebuild(once, twice, "second", kWallMs + 1);
  ASSERT_TRUE(floor.ok());
  EXPECT_EQ(*floor, kLast);
  const auto mark = read_rebuild_mark(twice);
  ASSERT_TRUE(mark.ok() && mark->has_value());
  EXPECT_EQ((*mark)->rebuilds(), 2U);
}

TEST(RebuildTest, TheIncarnationCounterIsCarriedOver) {
  storage::MemEngine damaged;
  fill(damaged);
  std::string counter;
  put_fixed64_be(counter, 41);
  storage::WriteBatch batch;
  batch.put(storage::Space::kMeta, kIncarnationKey, seal_record(counter));
  ASSERT_TRUE(damaged.write(batch, true).ok());
  storage::MemEngine fresh;
  ASSERT_TRUE(carry_over_for_rebuild(damaged, fresh, "r", kWallMs).ok());
  const auto raw = fresh.get(storage::Space::kMeta, kIncarnationKey);
  ASSERT_TRUE(raw.ok() && raw->has_value());
  std::string_view payload;
  ASSERT_TRUE(open_record(**raw, payload));
  EXPECT_EQ(get_fixed64_be(payload), 41U);
}

TEST(RebuildTest, ADamagedHardStateCannotBeCarriedOver) {
  storage::MemEngine damaged;
  fill(damaged);
  ASSERT_TRUE(damaged.corrupt(storage::Space::kMeta, storage::kHardStateKey));
  storage::MemEngine fresh;
  EXPECT_EQ(carry_over_for_rebuild(damaged, fresh, "r", kWallMs).status().code(),
            Code::kCorruption);
  EXPECT_FALSE(fresh.scan(storage::Space::kMeta, "", "")->valid()) << "nothing written";
}

TEST(RebuildTest, OnlyAnEmptyEngineIsWrittenInto) {
  storage::MemEngine damaged;
  fill(damaged);
  storage::MemEngine used;
  fill(used);
  EXPECT_EQ(carry_over_for_rebuild(damaged, used, "r", kWallMs).status().code(),
            Code::kFailedPrecondition);
}

}  // namespace
}  // namespace herald::rsm
