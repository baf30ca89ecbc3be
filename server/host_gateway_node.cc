#include "server/host_gateway_node.h"

#include <utility>
#include <vector>

#include "base/assert.h"

namespace herald::server {

HostGatewayNode::HostGatewayNode(NodeHost* host) : host_(host) {
  HERALD_ASSERT(host != nullptr, "the gateway's node needs a host");
}

void HostGatewayNode::propose(rsmpb::Command command, rsm::ProposeCallback done) {
  host_->propose(std::move(command), std::move(done));
}

void HostGatewayNode::read(std::function<void(Status, const storage::Reader&)> done) {
  host_->read([done = std::move(done)](const Status& status, const storage::Engine& engine) {
    done(status, engine);
  });
}

void HostGatewayNode::post(std::function<void()> fn) {
  host_->post(std::move(fn));
}

const storage::Reader& HostGatewayNode::state() const {
  return host_->engine();
}

void HostGatewayNode::broadcast(std::string kind, std::string payload) {
  host_->broadcast(std::move(kind), std::move(payload));
}

void HostGatewayNode::set_change_listener(GatewayChangeListener listener) {
  if (!listener) {
    host_->set_change_listener(nullptr);
    return;
  }
  host_->set_change_listener(
      [listener = std::move(listener)](const std::vector<messaging::ChangeNotice>& changes,
                                       std::int64_t now_ms) { listener(changes, now_ms); });
}

void HostGatewayNode::set_ephemeral_listener(GatewayEphemeralListener listener) {
  if (!listener) {
    host_->set_ephemeral_listener(nullptr);
    return;
  }
  host_->set_ephemeral_listener(
      [listener = std::move(listener)](raft::NodeId /*from*/, const std::string& kind,
                                       const std::string& payload) { listener(kind, payload); });
}

NodeMetrics& HostGatewayNode::metrics() {
  return host_->metrics();
}

const Clock& HostGatewayNode::clock() const {
  return clock_;
}

}  // namespace herald::server
