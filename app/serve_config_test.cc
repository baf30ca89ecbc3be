#include "app/serve_config.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "server/peer_auth.h"

namespace herald::app {
namespace {

TEST(ServeConfigTest, ParsesPeerList) {
  auto peers = parse_peers("1=127.0.0.1:7401,2=127.0.0.1:7411");
  ASSERT_TRUE(peers.ok());
  EXPECT_EQ(peers->size(), 2U);
  EXPECT_EQ(peers->at(2), "127.0.0.1:7411");
}

TEST(ServeConfigTest, RejectsMalformedPeerItems) {
  EXPECT_EQ(parse_peers("1127.0.0.1:7401").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(parse_peers("0=a:1").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(parse_peers("x=a:1").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(parse_peers("1=a:1,1=b:2").status().code(), Code::kInvalidArgument);
}

TEST(ServeConfigTest, DefaultsMakeASingleNode) {
  ServeConfig config;
  ASSERT_TRUE(finalize(config).ok());
  EXPECT_EQ(config.peers.size(), 1U);
  EXPECT_EQ(config.peers.at(1), "127.0.0.1:7401");
  EXPECT_EQ(config.client, "127.0.0.1:7400");
  EXPECT_EQ(config.data_dir, "./herald-data");
}

TEST(ServeConfigTest, IdMustBeAmongPeers) {
  ServeConfig config;
  config.id = 4;
  config.peers = {{1, "a:1"}, {2, "b:2"}};
  EXPECT_EQ(finalize(config).code(), Code::kInvalidArgument);
}

TEST(ServeConfigTest, LoadsTomlFile) {
  const std::string path = ::testing::TempDir() + "/herald-serve-config.toml";
  {
    std::ofstream out(path);
    out << "id = 2\ndata = \"/var/lib/herald\"\nclient = \"127.0.0.1:9000\"\n"
        << "cluster_secret_file = \"/etc/herald/cluster-secret\"\n"
        << "[peers]\n1 = \"127.0.0.1:9101\"\n2 = \"127.0.0.1:9102\"\n";
  }
  ServeConfig config;
  ASSERT_TRUE(load_toml(path, config).ok());
  EXPECT_EQ(config.id, 2U);
  EXPECT_EQ(config.data_dir, "/var/lib/herald");
  EXPECT_EQ(config.peers.size(), 2U);
  EXPECT_EQ(config.cluster_secret_file, "/etc/herald/cluster-secret");
  ASSERT_TRUE(finalize(config).ok());
  std::remove(path.c_str());
}

// Loads `text` as a TOML file over a default config.
Status load_text(const std::string& text, ServeConfig& config) {
  const std::string path = ::testing::TempDir() + "/herald-devices.toml";
  {
    std::ofstream out(path);
    out << text;
  }
  Status s = load_toml(path, config);
  std::remove(path.c_str());
  return s;
}

TEST(ServeConfigTest, DeviceLimitsLoadFromTheDevicesTable) {
  ServeConfig config;
  EXPECT_EQ(config.device_limits.max_sessions_per_device, server::kMaxSessionsPerDevice);
  ASSERT_TRUE(load_text("[devices]\nrequests_per_s = 2.5\nrequest_burst = 5\n"
                        "auths_per_s_per_address = 0\nmax_connections_per_address = 7\n"
                        "max_sessions_per_device = 2\nauth_deadline_ms = 1500\n"
                        "typing_relay_interval_ms = 100\n",
                        config)
                  .ok());
  const server::GatewayLimits& l = config.device_limits;
  EXPECT_DOUBLE_EQ(l.device_requests.per_second, 2.5);
  EXPECT_EQ(l.device_requests.burst, 5U);
  EXPECT_DOUBLE_EQ(l.address_auths.per_second, 0);
  EXPECT_EQ(l.address_auths.burst, server::kAddressAuthLimit.burst);  // untouched
  EXPECT_EQ(l.max_connections_per_address, 7U);
  EXPECT_EQ(l.max_sessions_per_device, 2U);
  EXPECT_EQ(l.auth_deadline_ms, 1500);
  EXPECT_EQ(l.typing_relay_interval_ms, 100);
  EXPECT_TRUE(finalize(config).ok());
}

TEST(ServeConfigTest, BadDeviceLimitsAreRefusedByName) {
  for (const char* text : {"[devices]\nrequest_burst = -1\n", "[devices]\nrequests_per_s = \"x\"\n",
                           "[devices]\nauth_deadline_ms = 1.5\n"}) {
    ServeConfig config;
    const Status s = load_text(text, config);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << text;
    EXPECT_NE(s.message().find("devices."), std::string::npos) << s.message();
  }
  ServeConfig config;
  ASSERT_TRUE(load_text("[devices]\nrequest_burst = 0\n", config).ok());
  EXPECT_EQ(finalize(config).code(), Code::kInvalidArgument);
  config = ServeConfig();
  ASSERT_TRUE(load_text("[devices]\nmax_sessions_per_device = 0\n", config).ok());
  EXPECT_EQ(finalize(config).code(), Code::kInvalidArgument);
}

TEST(ServeConfigTest, TheFreeSpaceFloorLoadsAndBadValuesAreRefused) {
  ServeConfig config;
  EXPECT_EQ(config.min_free_mb, kDefaultMinFreeMb);
  ASSERT_TRUE(load_text("min_free_mb = 64\n", config).ok());
  EXPECT_EQ(config.min_free_mb, 64U);
  for (const char* text : {"min_free_mb = -1\n", "min_free_mb = \"1G\"\n"}) {
    ServeConfig bad;
    const Status s = load_text(text, bad);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << text;
    EXPECT_NE(s.message().find("min_free_mb"), std::string::npos) << s.message();
  }
  config.min_free_mb = kMaxMinFreeMb + 1;
  EXPECT_EQ(finalize(config).code(), Code::kInvalidArgument);
}

TEST(ServeConfigTest, TheConnectionLimitLoadsAndBadValuesAreRefused) {
  ServeConfig config;
  EXPECT_EQ(config.max_connections, kDefaultMaxConnections);
  ASSERT_TRUE(load_text("max_connections = 60000\n", config).ok());
  EXPECT_EQ(config.max_connections, 60000U);
  ASSERT_TRUE(finalize(config).ok());
  for (const char* text :
       {"max_connections = 0\n", "max_connections = -5\n", "max_connections = \"many\"\n"}) {
    ServeConfig bad;
    const Status s = load_text(text, bad);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << text;
    EXPECT_NE(s.message().find("max_connections"), std::string::npos) << s.message();
  }
  config.max_connections = kMaxMaxConnections + 1;
  EXPECT_EQ(finalize(config).code(), Code::kInvalidArgument);
}

TEST(ServeConfigTest, AFloatOrAStringWhereAnIntegerBelongsIsRefusedByName) {
  for (const char* text : {"id = 1e37\n", "tick_ms = 1e37\n", "tick_ms = \"10\"\n",
                           "election_ticks = 99999999999999\n", "insecure_peers = 1\n",
                           "data = 3\n", "[devices]\nrequest_burst = 1e300\n"}) {
    ServeConfig config;
    const Status s = load_text(text, config);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << text;
  }
}

TEST(ServeConfigTest, BrokenTomlGivesClearError) {
  const std::string path = ::testing::TempDir() + "/herald-broken.toml";
  {
    std::ofstream out(path);
    out << "id = = 2\n";
  }
  ServeConfig config;
  const Status s = load_toml(path, config);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find(path), std::string::npos);
  std::remove(path.c_str());
  EXPECT_EQ(load_toml("/nonexistent/herald.toml", config).code(), Code::kNotFound);
}

TEST(ServeConfigTest, SeveralNodesNeedASecretFileOrInsecurePeers) {
  ServeConfig config;
  config.peers = {{1, "a:1"}, {2, "b:2"}, {3, "c:3"}};
  const Status refused = finalize(config);
  EXPECT_EQ(refused.code(), Code::kInvalidArgument);
  EXPECT_NE(refused.message().find("--cluster-secret-file"), std::string::npos);
  config.insecure_peers = true;
  EXPECT_TRUE(finalize(config).ok());
  config.insecure_peers = false;
  config.cluster_secret_file = "/etc/herald/cluster-secret";
  EXPECT_TRUE(finalize(config).ok());
}

TEST(ServeConfigTest, SecretFileAndInsecurePeersExcludeEachOther) {
  ServeConfig config;
  config.peers = {{1, "a:1"}, {2, "b:2"}};
  config.cluster_secret_file = "/etc/herald/cluster-secret";
  config.insecure_peers = true;
  EXPECT_EQ(finalize(config).code(), Code::kInvalidArgument);
}

TEST(ServeConfigTest, SingleNodeNeedsNoSecret) {
  ServeConfig config;
  config.peers = {{1, "a:1"}};
  EXPECT_TRUE(finalize(config).ok());
}

// Writes `contents` to a fresh file with mode `perms`; returns its path.
std::string write_secret_file(const std::string& name, const std::string& contents,
                              std::filesystem::perms perms) {
  std::string path = ::testing::TempDir() + "/" + name;
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << contents;
  }
  std::filesystem::permissions(path, perms);
  return path;
}

TEST(ServeConfigTest, SecretFileLosesTrailingWhitespaceOnly) {
  using std::filesystem::perms;
  const std::string secret(server::kMinClusterSecretBytes, 'q');
  const std::string path = write_secret_file("herald-secret-ok", " " + secret + "\n",
                                             perms::owner_read | perms::owner_write);
  Result<ClusterSecret> loaded = load_cluster_secret(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().to_string();
  EXPECT_EQ(loaded->bytes, " " + secret);
  EXPECT_FALSE(loaded->readable_by_others);
  std::remove(path.c_str());
}

TEST(ServeConfigTest, ShortSecretIsAClearError) {
  using std::filesystem::perms;
  // The newline does not count towards the length.
  const std::string path = write_secret_file(
      "herald-secret-short", std::string(server::kMinClusterSecretBytes - 1, 'q') + "\n",
      perms::owner_read | perms::owner_write);
  const Status s = load_cluster_secret(path).status();
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find(path), std::string::npos);
  EXPECT_NE(s.message().find("at least"), std::string::npos);
  std::remove(path.c_str());
  EXPECT_EQ(load_cluster_secret("/nonexistent/herald-secret").status().code(), Code::kNotFound);
}

TEST(ServeConfigTest, SecretFileReadableByOthersIsFlagged) {
  using std::filesystem::perms;
  const std::string path =
      write_secret_file("herald-secret-loose", std::string(server::kMinClusterSecretBytes, 'q'),
                        perms::owner_read | perms::owner_write | perms::others_read);
  Result<ClusterSecret> loaded = load_cluster_secret(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().to_string();
  EXPECT_TRUE(loaded->readable_by_others);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace herald::app
