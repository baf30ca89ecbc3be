// OneNodeTest: the fixture of end-to-end tests that run one real node (tests/e2e/cluster.h) with a
// configuration file of their own. start_node() starts it and waits until it leads; admin_ is
// then its admin client (over HTTPS when the test gives client TLS). When a test failed, the tail
// of the node's log is printed as the test ends. Subclasses that override TearDown() call
// OneNodeTest::TearDown() first. Thread-safety: the test's thread.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "client/admin_client.h"
#include "client/ws_client.h"
#include "tests/e2e/cluster.h"

namespace herald::e2e {

// Bound on a fresh one-node cluster electing its node and serving.
inline constexpr std::uint32_t kOneNodeStartupTimeoutMs = 15'000;

class OneNodeTest : public ::testing::Test {
 protected:
  void TearDown() override;

  // Starts one node reading `toml` as its --config file; the test's clients reach it over HTTPS
  // trusting `tls`'s CAs when given (for a configuration with [tls]). Fails the test binary when
  // the node does not start or lead in time.
  void start_node(const std::string& toml, std::optional<client::ClientTls> tls = std::nullopt);

  // The node's client port.
  [[nodiscard]] std::uint16_t port() const { return cluster_->node(1).client_port; }

  std::unique_ptr<Cluster> cluster_;
  std::unique_ptr<client::AdminClient> admin_;
};

}  // namespace herald::e2e
