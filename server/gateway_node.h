// GatewayNode: the replica a Gateway (server/gateway.h) serves its devices from, as an interface.
//
// The gateway's session, cursor, stream-pump and read-waiter logic only needs these calls of its
// node: propose a command, run a linearizable read, post work to the replica's thread, read the
// applied state, relay an ephemeral event to the other nodes, hear of applied changes, and a
// clock. NodeHost provides them for `herald serve` (server/host_gateway_node.h, real threads and
// sockets); the simulator provides them on simulated time (sim/gateway_world.h), so the same
// gateway code runs in both.
//
// Contract for implementations: every callback (`done` of propose and read, `fn` of post, the
// listeners) runs on one thread, the node's "raft thread", never inside the call that handed it
// over; callbacks of a node that has stopped are dropped, not run. The listeners may be replaced
// or cleared (nullptr) at any time from any thread. Thread-safety: every method may be called
// from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/status.h"
#include "messaging/domain.h"
#include "rsm/node.h"
#include "storage/engine.h"

namespace herald::server {

class NodeMetrics;

// After each applied batch, with the change-stream entries it appended (maybe none), and on each
// tick with none; `now_ms` is the node's wall clock. After a snapshot was installed: one notice
// with an empty user_id (every user's stream may have moved).
using GatewayChangeListener =
    std::function<void(const std::vector<messaging::ChangeNotice>& changes, std::int64_t now_ms)>;
// An ephemeral event (kind, payload) another node relayed with GatewayNode::broadcast.
using GatewayEphemeralListener =
    std::function<void(const std::string& kind, const std::string& payload)>;

class GatewayNode {
 public:
  virtual ~GatewayNode() = default;

  // Proposes `command` (its wall time stamped by the node). `done` gets the applied result or the
  // error rsm::Node::propose documents.
  virtual void propose(rsmpb::Command command, rsm::ProposeCallback done) = 0;
  // `done(status, state)` once a linearizable read of `state` may be served, or with the error.
  virtual void read(std::function<void(Status, const storage::Reader&)> done) = 0;
  // Runs `fn` on the node's thread, later.
  virtual void post(std::function<void()> fn) = 0;
  // The node's applied state, for reads that need no barrier (the node's thread reads it
  // consistently between applies).
  [[nodiscard]] virtual const storage::Reader& state() const = 0;
  // Sends an ephemeral event to every other node, best-effort.
  virtual void broadcast(std::string kind, std::string payload) = 0;
  virtual void set_change_listener(GatewayChangeListener listener) = 0;
  virtual void set_ephemeral_listener(GatewayEphemeralListener listener) = 0;
  // The node's metrics, fed by the gateway.
  [[nodiscard]] virtual NodeMetrics& metrics() = 0;
  // The clock the gateway reads: deadlines on mono_ms, server times and expiries on wall_ms.
  [[nodiscard]] virtual const Clock& clock() const = 0;
};

}  // namespace herald::server
