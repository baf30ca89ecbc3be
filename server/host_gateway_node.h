// HostGatewayNode: a NodeHost seen as the GatewayNode (server/gateway_node.h) a Gateway serves its
// devices from, for `herald serve`: proposals, reads and posts go to the host's raft thread, the
// clock is the system's.
// Lifetime: borrows the host, which must outlive it; destroy the Gateway first.
// Thread-safety: as NodeHost's, every method from any thread.
#pragma once

#include <functional>
#include <string>

#include "base/clock.h"
#include "server/gateway_node.h"
#include "server/node_host.h"

namespace herald::server {

class HostGatewayNode final : public GatewayNode {
 public:
  // Precondition (asserted): host != nullptr.
  explicit HostGatewayNode(NodeHost* host);

  void propose(rsmpb::Command command, rsm::ProposeCallback done) override;
  void read(std::function<void(Status, const storage::Reader&)> done) override;
  void post(std::function<void()> fn) override;
  [[nodiscard]] const storage::Reader& state() const override;
  void broadcast(std::string kind, std::string payload) override;
  void set_change_listener(GatewayChangeListener listener) override;
  void set_ephemeral_listener(GatewayEphemeralListener listener) override;
  [[nodiscard]] NodeMetrics& metrics() override;
  [[nodiscard]] const Clock& clock() const override;

 private:
  NodeHost* host_;
  SystemClock clock_;
};

}  // namespace herald::server
