// Tests of carrying a damaged replica's hard state and vote floor over into an empty engine.
#include "rsm/rebuild.h"

#include <gtest/gtest.h>

#include "base/encoding.h"
#include "rsm/node.h"
#include "storage/log_store.h"
#include "storage/mem_engine.h"
#include "storage/mem_log_fs.h"
#include "storage/segment_log.h"

namespace herald::rsm {
namespace {

constexpr raft::Term kTerm = 7;
constexpr raft::NodeId kVote = 3;
constexpr raft::Index kCommit = 12;
constexpr raft::Index kLast = 15;
constexpr std::int64_t kWallMs = 1'000'000;
// The segment size of the segment-log cases: the whole log fits in one.
constexpr std::uint64_t kTestSegmentBytes = std::uint64_t{64} << 10U;

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
  auto floor =
      carry_over_for_rebuild(damaged, nullptr, fresh, "entry 15 fails its checksum", kWallMs);
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
  ASSERT_TRUE(carry_over_for_rebuild(damaged, nullptr, once, "first", kWallMs).ok());
  // Damaged again while its log was still short: the first floor stands.
  storage::MemEngine twice;
  auto floor = carry_over_for_rebuild(once, nullptr, twice, "second", kWallMs + 1);
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
  ASSERT_TRUE(carry_over_for_rebuild(damaged, nullptr, fresh, "r", kWallMs).ok());
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
  EXPECT_EQ(carry_over_for_rebuild(damaged, nullptr, fresh, "r", kWallMs).status().code(),
            Code::kCorruption);
  EXPECT_FALSE(fresh.scan(storage::Space::kMeta, "", "")->valid()) << "nothing written";
}

// The same replica with its raft log in segment files (its engine holds none of it), then a
// batch of the hard state alone. Returns the offset of entry kLast's record in segment 1.
std::uint64_t fill_segments(storage::MemLogFs& fs) {
  auto log = storage::SegmentLog::open(&fs, {.segment_bytes = kTestSegmentBytes});
  EXPECT_TRUE(log.ok());
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
  EXPECT_TRUE((*log)->save(hs, std::nullopt, entries, /*sync=*/true).ok());
  hs.set_commit(kCommit);
  EXPECT_TRUE((*log)->save(hs, std::nullopt, {}, /*sync=*/true).ok());
  const auto scan = storage::scan_segment(fs.contents(storage::segment_name(1)), 1, true);
  EXPECT_TRUE(scan.ok());
  std::uint64_t offset = 0;
  for (const storage::ScannedRecord& r : scan->records) {
    if (r.kind == storage::RecordKind::kEntry && r.index == kLast) offset = r.offset;
  }
  return offset;
}

TEST(RebuildTest, ASegmentLogsHardStateAndHighestIndexSurviveItsDamagedNewestEntry) {
  storage::MemEngine damaged;  // the state space only: the log is in the segment files
  storage::MemLogFs segments;
  const std::uint64_t newest = fill_segments(segments);
  ASSERT_GT(newest, 0U);
  ASSERT_TRUE(segments.corrupt(storage::segment_name(1), newest + storage::kRecordHeaderBytes));
  storage::MemEngine fresh;
  auto floor = carry_over_for_rebuild(damaged, &segments, fresh, "entry 15 is damaged", kWallMs);
  ASSERT_TRUE(floor.ok()) << floor.status().to_string();
  EXPECT_EQ(*floor, kLast);
  auto log = storage::LogStore::open(&fresh);
  ASSERT_TRUE(log.ok()) << log.status().to_string();
  EXPECT_EQ((*log)->hard_state().term(), kTerm);
  EXPECT_EQ((*log)->hard_state().vote(), kVote);
  EXPECT_EQ((*log)->hard_state().commit(), 0U);
  EXPECT_EQ(segments.list()->size(), 1U) << "the segment files are only read";
}

TEST(RebuildTest, ASegmentLogWhoseVoteIsLostCannotBeCarriedOver) {
  storage::MemEngine damaged;
  storage::MemLogFs segments;
  static_cast<void>(fill_segments(segments));
  {
    auto log = storage::SegmentLog::open(&segments, {.segment_bytes = kTestSegmentBytes});
    ASSERT_TRUE(log.ok());
    raftpb::HardState vote;
    vote.set_term(kTerm + 1);
    vote.set_vote(kVote);
    vote.set_commit(kCommit);
    ASSERT_TRUE((*log)->save(vote, std::nullopt, {}, /*sync=*/true).ok());
    raftpb::Entry next;
    next.set_index(kLast + 1);
    next.set_term(kTerm + 1);
    ASSERT_TRUE((*log)->save(std::nullopt, std::nullopt, {next}, /*sync=*/true).ok());
  }
  // The vote's record: the last hard state record.
  const auto scan = storage::scan_segment(segments.contents(storage::segment_name(1)), 1, true);
  ASSERT_TRUE(scan.ok());
  std::uint64_t vote_record = 0;
  for (const storage::ScannedRecord& r : scan->records) {
    if (r.kind == storage::RecordKind::kHardState) vote_record = r.offset;
  }
  ASSERT_TRUE(
      segments.corrupt(storage::segment_name(1), vote_record + storage::kRecordHeaderBytes));
  storage::MemEngine fresh;
  EXPECT_EQ(carry_over_for_rebuild(damaged, &segments, fresh, "r", kWallMs).status().code(),
            Code::kCorruption);
  EXPECT_FALSE(fresh.scan(storage::Space::kMeta, "", "")->valid()) << "nothing written";
}

TEST(RebuildTest, OnlyAnEmptyEngineIsWrittenInto) {
  storage::MemEngine damaged;
  fill(damaged);
  storage::MemEngine used;
  fill(used);
  EXPECT_EQ(carry_over_for_rebuild(damaged, nullptr, used, "r", kWallMs).status().code(),
            Code::kFailedPrecondition);
}

}  // namespace
}  // namespace herald::rsm
