#include "server/endpoint.h"

#include <gtest/gtest.h>

namespace herald::server {
namespace {

TEST(ParseHostPort, AcceptsHostAndPort) {
  auto hp = parse_host_port("127.0.0.1:8080");
  ASSERT_TRUE(hp.ok());
  EXPECT_EQ(hp->host, "127.0.0.1");
  EXPECT_EQ(hp->port, 8080);
}

TEST(ParseHostPort, AcceptsBracketedV6AndPortZero) {
  auto hp = parse_host_port("[::1]:0");
  ASSERT_TRUE(hp.ok());
  EXPECT_EQ(hp->host, "::1");
  EXPECT_EQ(hp->port, 0);
}

TEST(ParseHostPort, RejectsMissingOrBadPort) {
  EXPECT_FALSE(parse_host_port("localhost").ok());
  EXPECT_FALSE(parse_host_port("localhost:").ok());
  EXPECT_FALSE(parse_host_port(":80").ok());
  EXPECT_FALSE(parse_host_port("host:65536").ok());
  EXPECT_FALSE(parse_host_port("host:8o").ok());
  EXPECT_FALSE(parse_host_port("[::1:80").ok());
}

}  // namespace
}  // namespace herald::server
