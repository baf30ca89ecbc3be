// Unit tests of RaftLog: the unstable tail over LogStorage (Raft §5.3 log handling).
#include "raft/raft_log.h"

#include <gtest/gtest.h>

#include "raft/memory_storage.h"

namespace herald::raft {
namespace {

raftpb::Entry entry(Index index, Term term, std::string data = "") {
  raftpb::Entry e;
  e.set_index(index);
  e.set_term(term);
  e.set_data(std::move(data));
  return e;
}

// Storage holds 1..3 at term 1.
struct Fixture {
  Fixture() { EXPECT_TRUE(storage.append({entry(1, 1), entry(2, 1), entry(3, 1)}).ok()); }
  MemoryLogStorage storage;
};

TEST(RaftLogTest, AppendTruncatesConflictingUnstableSuffix) {
  Fixture f;
  RaftLog log(&f.storage, 1, 1);
  const std::vector<raftpb::Entry> tail = {entry(4, 2), entry(5, 2)};
  log.append(tail);
  const std::vector<raftpb::Entry> conflicting = {entry(5, 3), entry(6, 3)};
  log.append(conflicting);
  EXPECT_EQ(log.last_index(), 6u);
  EXPECT_EQ(log.term_or_zero(5), 3u);
  EXPECT_EQ(log.term_or_zero(4), 2u);
}

TEST(RaftLogTest, TruncationBelowUnstableOffsetRereadsFromNewTail) {
  Fixture f;
  RaftLog log(&f.storage, 1, 1);
  const std::vector<raftpb::Entry> conflicting = {entry(3, 2)};
  log.append(conflicting);
  EXPECT_EQ(log.last_index(), 3u);
  EXPECT_EQ(log.term_or_zero(3), 2u);
  EXPECT_EQ(log.term_or_zero(2), 1u);  // still read from storage
  EXPECT_EQ(log.durable_last_index(), 2u);
}

TEST(RaftLogTest, MaybeAppendRejectsMismatchedPrevious) {
  Fixture f;
  RaftLog log(&f.storage, 1, 1);
  const std::vector<raftpb::Entry> ents = {entry(4, 2)};
  EXPECT_FALSE(log.maybe_append(3, 2, 4, ents).has_value());
  ASSERT_EQ(log.maybe_append(3, 1, 4, ents), std::optional<Index>(4));
  EXPECT_EQ(log.committed(), 4u);
}

TEST(RaftLogTest, FindConflictByTermSkipsWholeTerm) {
  Fixture f;
  RaftLog log(&f.storage, 1, 1);
  const std::vector<raftpb::Entry> tail = {entry(4, 3), entry(5, 3), entry(6, 3), entry(7, 4)};
  log.append(tail);
  EXPECT_EQ(log.find_conflict_by_term(7, 2), std::make_pair(Index{3}, Term{1}));
  EXPECT_EQ(log.find_conflict_by_term(7, 3), std::make_pair(Index{6}, Term{3}));
  EXPECT_EQ(log.find_conflict_by_term(7, 5), std::make_pair(Index{7}, Term{4}));
}

TEST(RaftLogTest, SliceSpansStorageAndUnstableWithinByteLimit) {
  Fixture f;
  RaftLog log(&f.storage, 1, 1);
  const std::vector<raftpb::Entry> tail = {entry(4, 1, "aaaa"), entry(5, 1, "bbbb")};
  log.append(tail);
  auto all = log.slice(2, 6, kNoByteLimit);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 4u);
  auto one = log.slice(2, 6, 1);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->size(), 1u);  // at least one entry even over the limit
}

TEST(RaftLogTest, SliceBelowCompactionIsCompacted) {
  Fixture f;
  raftpb::SnapshotMetadata meta;
  meta.set_index(2);
  meta.set_term(1);
  ASSERT_TRUE(f.storage.set_snapshot_metadata(meta).ok());
  ASSERT_TRUE(f.storage.compact(2).ok());
  RaftLog log(&f.storage, 3, 2);
  EXPECT_EQ(log.slice(2, 4, kNoByteLimit).status().code(), Code::kCompacted);
  EXPECT_EQ(log.term_or_zero(2), 1u);  // the compaction point still has a term
}

TEST(RaftLogTest, RestoreSnapshotResetsLog) {
  Fixture f;
  RaftLog log(&f.storage, 1, 1);
  raftpb::SnapshotMetadata meta;
  meta.set_index(10);
  meta.set_term(4);
  log.restore(meta);
  EXPECT_EQ(log.first_index(), 11u);
  EXPECT_EQ(log.last_index(), 10u);
  EXPECT_EQ(log.committed(), 10u);
  EXPECT_EQ(log.applied(), 10u);
  EXPECT_EQ(log.term_or_zero(10), 4u);
  EXPECT_EQ(log.durable_last_index(), 0u);
}

TEST(RaftLogTest, StableToIgnoresRewrittenTail) {
  Fixture f;
  RaftLog log(&f.storage, 1, 1);
  const std::vector<raftpb::Entry> tail = {entry(4, 2)};
  log.append(tail);
  const std::vector<raftpb::Entry> rewrite = {entry(4, 3)};
  log.append(rewrite);
  log.stable_to(4, 2);  // the Ready that carried 4@2 is stale
  EXPECT_EQ(log.unstable_entries().size(), 1u);
  log.stable_to(4, 3);
  EXPECT_TRUE(log.unstable_entries().empty());
}

TEST(RaftLogTest, UpToDateComparesLastTermThenIndex) {
  Fixture f;
  RaftLog log(&f.storage, 1, 1);
  EXPECT_TRUE(log.is_up_to_date(3, 1));
  EXPECT_TRUE(log.is_up_to_date(1, 2));
  EXPECT_FALSE(log.is_up_to_date(2, 1));
}

}  // namespace
}  // namespace herald::raft
