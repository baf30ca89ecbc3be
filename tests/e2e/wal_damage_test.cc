// End to end: a node whose write-ahead log was damaged in the middle while it was down refuses to
// start, with one critical log line that says what is damaged and what the operator does, and a
// non-zero exit (docs/operations.md, "A damaged data directory").
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "client/admin_client.h"
#include "storage/test_util.h"
#include "tests/e2e/cluster.h"
#include "tests/e2e/devices.h"

namespace herald::e2e {
namespace {

constexpr std::uint32_t kStartupTimeoutMs = 15'000;
// Bound on a node reading its data directory and giving up.
constexpr std::uint32_t kRefusalTimeoutMs = 15'000;
// Each user is one committed raft entry, fsynced in the WAL: enough records around the middle.
constexpr int kUsers = 20;
// app/serve.cc: kExitDamagedData.
constexpr int kExitDamagedData = 3;
// RocksDB's WAL blocks end in up to 6 bytes of zero padding that no check reads.
constexpr std::uintmax_t kWalBlockBytes = std::uintmax_t{32} * 1024;
constexpr std::uintmax_t kWalPaddingBytes = 6;

using storage::testing::newest_wal;

TEST(WalDamage, DamageInTheMiddleOfTheWalStopsTheNodeWithACriticalLine) {
  auto cluster = must(Cluster::create(1), "creating the cluster");
  must(cluster->start_all(), "starting the node");
  must(cluster->leader(kStartupTimeoutMs), "waiting for a leader");
  client::AdminClient admin = cluster->admin(1);
  for (int i = 0; i < kUsers; ++i) {
    const std::string user = "user" + std::to_string(i);
    must(admin.create_user(user, user), "creating a user");
  }
  cluster->kill(1);  // a crash: the writes stay in the WAL, not yet flushed to tables

  const std::filesystem::path wal = newest_wal(cluster->node(1).data_dir);
  ASSERT_FALSE(wal.empty());
  std::uintmax_t middle = std::filesystem::file_size(wal) / 2;
  if (middle % kWalBlockBytes >= kWalBlockBytes - kWalPaddingBytes) {
    middle -= kWalPaddingBytes;  // into the block's last record rather than its padding
  }
  {
    std::fstream f(wal, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(middle));
    char byte = 0;
    f.read(&byte, 1);
    byte = static_cast<char>(~byte);
    f.seekp(static_cast<std::streamoff>(middle));
    f.write(&byte, 1);
    ASSERT_TRUE(f.good());
  }

  must(cluster->start(1), "restarting the node");
  const int exit_code = must(cluster->exit_status(1, kRefusalTimeoutMs), "waiting for the refusal");
  EXPECT_EQ(exit_code, kExitDamagedData) << cluster->log_tail(1);
  constexpr std::size_t kWholeLog = std::size_t{1} << 24U;
  const std::string log = cluster->log_tail(1, kWholeLog);
  EXPECT_NE(log.find("refuses to start"), std::string::npos) << cluster->log_tail(1);
  EXPECT_NE(log.find("write-ahead log " + wal.string() + " is damaged"), std::string::npos)
      << cluster->log_tail(1);
  EXPECT_NE(log.find("remove the member"), std::string::npos) << cluster->log_tail(1);
}

}  // namespace
}  // namespace herald::e2e
