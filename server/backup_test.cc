#include "server/backup.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "base/encoding.h"
#include "rsm/membership.h"
#include "rsm/node.h"
#include "storage/log_store.h"
#include "storage/mem_engine.h"
#include "storage/rocksdb_engine.h"
#include "storage/test_util.h"

namespace herald::server {
namespace {

namespace fs = std::filesystem;

constexpr raft::Index kIndex = 120;
constexpr raft::Term kTerm = 4;

// A replica's state space at index 120 of term 4, with `pairs` operator keys (values of
// `value_bytes` each), a member address record of node 2 and a disk alarm of node 3.
void fill_state(storage::Engine& engine, int pairs, std::size_t value_bytes = 10) {
  storage::WriteBatch batch;
  rsmpb::AppliedState applied;
  applied.set_index(kIndex);
  applied.set_term(kTerm);
  applied.mutable_conf_state()->add_voters(1);
  applied.mutable_conf_state()->add_voters(2);
  applied.set_wall_ms_floor(77);
  applied.add_disk_alarms(3);
  batch.put(storage::Space::kState, rsm::kAppliedStateKey,
            seal_record(applied.SerializeAsString()));
  for (int i = 0; i < pairs; ++i) {
    batch.put(storage::Space::kState, "k" + std::to_string(i),
              seal_record(std::string(value_bytes, static_cast<char>('a' + i % 26))));
  }
  batch.put(storage::Space::kState, rsm::member_address_key(2), seal_record("10.0.0.2:7401"));
  batch.put(storage::Space::kLog, "not-in-a-backup", "x");
  ASSERT_TRUE(engine.write(batch, true).ok());
}

void flip_byte(const std::string& path, std::uint64_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.get(c);
  f.seekp(static_cast<std::streamoff>(offset));
  f.put(static_cast<char>(c ^ 0x20));
}

TEST(Backup, RoundTripsThroughAFreshDataDirectoryAsANewSingleVoterCluster) {
  storage::testing::TempDir tmp;
  storage::MemEngine source;
  fill_state(source, 3000, 700);  // about 2 MiB: several chunks
  const std::string dir = tmp.path() + "/backup";
  auto written = write_backup(*source.snapshot(), dir, 1234);
  ASSERT_TRUE(written.ok()) << written.status().to_string();
  EXPECT_EQ(written->index, kIndex);
  EXPECT_EQ(written->term, kTerm);
  EXPECT_EQ(written->records, 3002U);  // the pairs, the applied state, the address record
  EXPECT_GT(written->chunks, 1U);
  auto verified = verify_backup(dir);
  ASSERT_TRUE(verified.ok()) << verified.status().to_string();
  EXPECT_EQ(verified->data_crc32c, written->data_crc32c);
  EXPECT_EQ(verified->created_ms, 1234);

  const std::string data = tmp.path() + "/restored";
  auto restored = restore_backup(dir, data, 7);
  ASSERT_TRUE(restored.ok()) << restored.status().to_string();
  auto engine = storage::RocksDbEngine::open(data, storage::RocksDbOptions{});
  ASSERT_TRUE(engine.ok()) << engine.status().to_string();
  auto value = (*engine)->get(storage::Space::kState, "k2999");
  ASSERT_TRUE(value.ok() && value->has_value());
  EXPECT_EQ(**value, seal_record(std::string(700, static_cast<char>('a' + 2999 % 26))));
  auto address = (*engine)->get(storage::Space::kState, rsm::member_address_key(2));
  ASSERT_TRUE(address.ok());
  EXPECT_FALSE(address->has_value()) << "the old cluster's addresses are dropped";
  auto raw = (*engine)->get(storage::Space::kState, rsm::kAppliedStateKey);
  ASSERT_TRUE(raw.ok() && raw->has_value());
  std::string_view payload;
  ASSERT_TRUE(open_record(**raw, payload));
  rsmpb::AppliedState applied;
  ASSERT_TRUE(applied.ParseFromArray(payload.data(), static_cast<int>(payload.size())));
  EXPECT_EQ(applied.index(), kIndex);
  EXPECT_EQ(applied.term(), kTerm);
  EXPECT_EQ(applied.wall_ms_floor(), 77);
  EXPECT_EQ(applied.disk_alarms_size(), 0);
  ASSERT_EQ(applied.conf_state().voters_size(), 1);
  EXPECT_EQ(applied.conf_state().voters(0), 7U);
  auto log = storage::LogStore::open(engine->get());
  ASSERT_TRUE(log.ok()) << log.status().to_string();
  EXPECT_EQ((*log)->first_index(), kIndex + 1);
  EXPECT_EQ((*log)->last_index(), kIndex);
  EXPECT_EQ((*log)->hard_state().term(), kTerm);
  EXPECT_EQ((*log)->hard_state().commit(), kIndex);
}

TEST(Backup, ANonEmptyBackupOrDataDirectoryIsRefused) {
  storage::testing::TempDir tmp;
  storage::MemEngine source;
  fill_state(source, 5);
  const std::string dir = tmp.path() + "/backup";
  ASSERT_TRUE(write_backup(*source.snapshot(), dir, 1).ok());
  EXPECT_EQ(write_backup(*source.snapshot(), dir, 2).status().code(), Code::kFailedPrecondition);
  const std::string data = tmp.path() + "/data";
  fs::create_directories(data);
  std::ofstream(data + "/something") << "x";
  EXPECT_EQ(restore_backup(dir, data, 1).status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(restore_backup(dir, tmp.path() + "/other", 0).status().code(), Code::kInvalidArgument);
}

TEST(Backup, ADamagedDataFileOrManifestIsRefusedAndNothingIsRestored) {
  storage::testing::TempDir tmp;
  storage::MemEngine source;
  fill_state(source, 50);
  const std::string dir = tmp.path() + "/backup";
  auto written = write_backup(*source.snapshot(), dir, 1);
  ASSERT_TRUE(written.ok());
  const std::string data_file = dir + "/" + kBackupDataFile;
  for (const std::uint64_t offset : {std::uint64_t{2}, std::uint64_t{9}, written->data_bytes - 1}) {
    flip_byte(data_file, offset);
    EXPECT_EQ(verify_backup(dir).status().code(), Code::kCorruption) << offset;
    const std::string data = tmp.path() + "/data" + std::to_string(offset);
    EXPECT_EQ(restore_backup(dir, data, 1).status().code(), Code::kCorruption);
    EXPECT_FALSE(fs::exists(data)) << "a refused restore writes nothing";
    flip_byte(data_file, offset);  // repaired
  }
  ASSERT_TRUE(verify_backup(dir).ok());
  // A truncated data file.
  fs::resize_file(data_file, written->data_bytes - 3);
  EXPECT_EQ(verify_backup(dir).status().code(), Code::kCorruption);
  const std::string manifest = dir + "/" + kBackupManifestFile;
  flip_byte(manifest, 12);
  EXPECT_EQ(verify_backup(dir).status().code(), Code::kCorruption);
  fs::remove(manifest);
  EXPECT_EQ(verify_backup(dir).status().code(), Code::kNotFound);
}

TEST(BackupManifest, RoundTripsAndRefusesAnotherFormat) {
  BackupInfo info;
  info.index = 9;
  info.term = 2;
  info.records = 3;
  info.chunks = 1;
  info.data_bytes = 100;
  info.data_crc32c = 0xdeadbeef;
  info.created_ms = 5;
  auto parsed = parse_backup_manifest(encode_backup_manifest(info));
  ASSERT_TRUE(parsed.ok()) << parsed.status().to_string();
  EXPECT_EQ(parsed->data_crc32c, 0xdeadbeefU);
  EXPECT_EQ(parsed->records, 3U);
  std::string other = encode_backup_manifest(info);
  other = other.substr(0, other.find('\n'));
  other.replace(other.find("\"format\":1"), 10, "\"format\":9");
  other += "\ncrc32c=" + fmt::format("{:08x}", crc32c(other)) + "\n";
  EXPECT_EQ(parse_backup_manifest(other).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace herald::server
