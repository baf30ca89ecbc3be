#include "app/serve_config.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

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
        << "[peers]\n1 = \"127.0.0.1:9101\"\n2 = \"127.0.0.1:9102\"\n";
  }
  ServeConfig config;
  ASSERT_TRUE(load_toml(path, config).ok());
  EXPECT_EQ(config.id, 2U);
  EXPECT_EQ(config.data_dir, "/var/lib/herald");
  EXPECT_EQ(config.peers.size(), 2U);
  ASSERT_TRUE(finalize(config).ok());
  std::remove(path.c_str());
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

}  // namespace
}  // namespace herald::app
