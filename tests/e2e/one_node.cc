#include "tests/e2e/one_node.h"

#include <cstdio>

#include "tests/e2e/devices.h"

namespace herald::e2e {

void OneNodeTest::TearDown() {
  if (HasFailure() && cluster_ != nullptr) {
    std::fprintf(stderr, "---- node 1 log (tail) ----\n%s\n", cluster_->log_tail(1).c_str());
  }
}

void OneNodeTest::start_node(const std::string& toml, std::optional<client::ClientTls> tls) {
  cluster_ = must(Cluster::create(1), "creating the cluster");
  cluster_->set_client_tls(std::move(tls));
  must(cluster_->set_config(toml), "writing the configuration");
  must(cluster_->start_all(), "starting the node");
  must(cluster_->leader(kOneNodeStartupTimeoutMs), "waiting for a leader");
  admin_ = std::make_unique<client::AdminClient>(cluster_->admin(1));
}

}  // namespace herald::e2e
