#include "server/replica_rebuild.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "rsm/rebuild.h"
#include "rsm/rsm.pb.h"
#include "server/damage_report.h"
#include "storage/log_store.h"
#include "storage/rocksdb_engine.h"
#include "storage/segment_log.h"
#include "storage/test_util.h"
#include "workflow/keys.h"
#include "workflow/workflow.pb.h"

namespace herald::server {
namespace {

constexpr std::int64_t kNowMs = 1'700'000'000'000;

Status damaged_record() {
  workflowpb::WorkflowRecord record;
  record.set_workflow_id("w");
  std::string raw = workflow::keys::seal(record);
  raw.back() = static_cast<char>(raw.back() ^ 0x01);
  return workflow::keys::open<workflowpb::WorkflowRecord>(raw, "workflow").status();
}

Status undecodable_record() {
  const std::string raw = seal_record("\xff\xff\xff");
  return workflow::keys::open<workflowpb::WorkflowRecord>(raw, "workflow").status();
}

rsmpb::RebuildMark rebuilt_at(std::int64_t wall_ms) {
  rsmpb::RebuildMark mark;
  mark.set_wall_ms(wall_ms);
  mark.set_rebuilds(1);
  return mark;
}

TEST(ReadDamage, OnlyAFailedChecksumIsLocalDamage) {
  EXPECT_TRUE(is_checksum_failure(damaged_record()));
  EXPECT_EQ(undecodable_record().code(), Code::kCorruption);
  EXPECT_FALSE(is_checksum_failure(undecodable_record()));
  EXPECT_TRUE(is_checksum_failure(
      Status::corruption("get: Corruption: block checksum mismatch: stored = 1, computed = 2")));
  EXPECT_FALSE(is_checksum_failure(Status::io_error("checksum file unreadable")));
  EXPECT_FALSE(is_checksum_failure(Status::ok_status()));
}

TEST(ReadDamage, AReplicaWithPeersRebuildsOnAChecksumFailure) {
  EXPECT_TRUE(rebuild_on_read_damage(damaged_record(), 3, std::nullopt, kNowMs));
  EXPECT_TRUE(rebuild_on_read_damage(damaged_record(), 2, std::nullopt, kNowMs));
}

TEST(ReadDamage, TheOnlyReplicaAndUndecodableRecordsDoNotRebuild) {
  EXPECT_FALSE(rebuild_on_read_damage(damaged_record(), 1, std::nullopt, kNowMs));
  EXPECT_FALSE(rebuild_on_read_damage(undecodable_record(), 3, std::nullopt, kNowMs));
}

TEST(ReadDamage, NoSecondRebuildWithinTheIntervalAfterTheLast) {
  EXPECT_FALSE(rebuild_on_read_damage(damaged_record(), 3, rebuilt_at(kNowMs - 60'000), kNowMs));
  EXPECT_FALSE(rebuild_on_read_damage(damaged_record(), 3,
                                      rebuilt_at(kNowMs - kMinRebuildIntervalMs + 1), kNowMs));
  EXPECT_TRUE(rebuild_on_read_damage(damaged_record(), 3,
                                     rebuilt_at(kNowMs - kMinRebuildIntervalMs), kNowMs));
}

TEST(DamageReport, OnlyCorruptionReachesTheInstalledHandler) {
  int calls = 0;
  set_damage_handler([&calls](const Status& s) {
    EXPECT_EQ(s.code(), Code::kCorruption);
    ++calls;
  });
  report_damage(Status::not_found("no such user"));
  report_damage(Status::ok_status());
  report_damage(damaged_record());
  EXPECT_EQ(calls, 1);
  set_damage_handler(nullptr);
  report_damage(damaged_record());  // nobody listens: nothing happens
  EXPECT_EQ(calls, 1);
}

// A data directory whose raft log is in segment files: entries 1..3 of term 5 with a vote for
// replica 2, then commit 3, then entry 4 alone. Returns the offset of the newest hard state
// record (the commit's) in segment 1.
constexpr raft::Index kSegmentLogLast = 4;
constexpr std::uint64_t kTestSegmentBytes = std::uint64_t{64} << 10U;  // the whole log fits in one

std::uint64_t write_segment_log_replica(const std::string& data_dir) {
  {
    auto engine = storage::RocksDbEngine::open(data_dir, storage::RocksDbOptions{});
    EXPECT_TRUE(engine.ok()) << engine.status().to_string();
  }
  auto fs = storage::PosixLogFs::open_dir(data_dir + "/" + kRaftLogDir);
  EXPECT_TRUE(fs.ok());
  auto log = storage::SegmentLog::open(fs->get(), {.segment_bytes = kTestSegmentBytes});
  EXPECT_TRUE(log.ok());
  std::vector<raftpb::Entry> entries;
  for (raft::Index i = 1; i <= kSegmentLogLast; ++i) {
    raftpb::Entry e;
    e.set_index(i);
    e.set_term(5);
    e.set_data("entry");
    entries.push_back(e);
  }
  const std::vector<raftpb::Entry> last{entries.back()};
  entries.pop_back();
  raftpb::HardState hs;
  hs.set_term(5);
  hs.set_vote(2);
  EXPECT_TRUE((*log)->save(hs, std::nullopt, entries, /*sync=*/true).ok());
  hs.set_commit(3);
  EXPECT_TRUE((*log)->save(hs, std::nullopt, {}, /*sync=*/true).ok());
  EXPECT_TRUE((*log)->save(std::nullopt, std::nullopt, last, /*sync=*/true).ok());
  std::string bytes;
  auto file = (*fs)->open(storage::segment_name(1));
  EXPECT_TRUE(file.ok() && (*file)->read(0, (*file)->size(), bytes).ok());
  const auto scan = storage::scan_segment(bytes, 1, /*last=*/true);
  EXPECT_TRUE(scan.ok());
  std::uint64_t newest_hard_state = 0;
  for (const storage::ScannedRecord& r : scan->records) {
    if (r.kind == storage::RecordKind::kHardState) newest_hard_state = r.offset;
  }
  return newest_hard_state;
}

TEST(RebuildDirectory, ASegmentLogReplicaCarriesItsTermVoteAndFloorIntoAStoreWithoutSegments) {
  storage::testing::TempDir tmp;
  const std::string data = tmp.path() + "/data";
  static_cast<void>(write_segment_log_replica(data));
  ASSERT_TRUE(request_rebuild(data, "entry fails its checksum").ok());
  const auto rebuilt = rebuild_if_requested(data, 3, kNowMs);
  ASSERT_TRUE(rebuilt.ok()) << rebuilt.status().to_string();
  EXPECT_TRUE(*rebuilt);

  namespace fs = std::filesystem;
  EXPECT_FALSE(fs::exists(fs::path(data) / kRaftLogDir)) << "the new store starts without segments";
  EXPECT_TRUE(fs::exists(fs::path(data + kDamagedSuffix) / kRaftLogDir / storage::segment_name(1)));
  auto engine = storage::RocksDbEngine::open(data, storage::RocksDbOptions{});
  ASSERT_TRUE(engine.ok()) << engine.status().to_string();
  auto log = storage::LogStore::open(engine->get());
  ASSERT_TRUE(log.ok()) << log.status().to_string();
  EXPECT_EQ((*log)->hard_state().term(), 5U);
  EXPECT_EQ((*log)->hard_state().vote(), 2U);
  EXPECT_EQ((*log)->last_index(), 0U);
  const auto mark = rsm::read_rebuild_mark(**engine);
  ASSERT_TRUE(mark.ok() && mark->has_value());
  EXPECT_EQ((*mark)->vote_floor(), kSegmentLogLast);
}

TEST(RebuildDirectory, ASegmentLogThatHidesTheVoteIsRefusedAndNothingMoves) {
  storage::testing::TempDir tmp;
  const std::string data = tmp.path() + "/data";
  const std::uint64_t newest_hard_state = write_segment_log_replica(data);
  ASSERT_GT(newest_hard_state, 0U);
  // The newest hard state is damaged, and only an entry follows it (which proves it was synced):
  // it may have held a vote that no intact record repeats.
  {
    auto fs = storage::PosixLogFs::open_dir(data + "/" + kRaftLogDir);
    ASSERT_TRUE(fs.ok());
    auto file = (*fs)->open(storage::segment_name(1));
    ASSERT_TRUE(file.ok());
    std::string byte;
    const std::uint64_t at = newest_hard_state + storage::kRecordHeaderBytes;
    ASSERT_TRUE((*file)->read(at, 1, byte).ok());
    byte[0] = static_cast<char>(byte[0] ^ 0x10);
    ASSERT_TRUE((*file)->write(at, byte).ok());
    ASSERT_TRUE((*file)->sync().ok());
  }
  ASSERT_TRUE(request_rebuild(data, "entry fails its checksum").ok());
  const auto rebuilt = rebuild_if_requested(data, 3, kNowMs);
  EXPECT_EQ(rebuilt.status().code(), Code::kCorruption);
  EXPECT_NE(rebuilt.status().message().find("term and vote are unknown"), std::string::npos)
      << rebuilt.status().to_string();
  namespace fs = std::filesystem;
  EXPECT_TRUE(fs::exists(fs::path(data) / kRebuildRequestFile));
  EXPECT_TRUE(fs::exists(fs::path(data) / kRaftLogDir / storage::segment_name(1)));
  EXPECT_FALSE(fs::exists(data + kDamagedSuffix));
}

}  // namespace
}  // namespace herald::server
