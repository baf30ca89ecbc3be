#include "server/replica_rebuild.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "rsm/rsm.pb.h"
#include "server/damage_report.h"
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

}  // namespace
}  // namespace herald::server
