#include "sim/gateway_world.h"

#include <algorithm>
#include <utility>

#include "base/assert.h"

namespace herald::sim {

// ---- SimGatewayNode ----

SimGatewayNode::SimGatewayNode(const storage::Reader* state, const Clock* clock,
                               SimGatewayHooks hooks)
    : state_(state), clock_(clock), hooks_(std::move(hooks)) {
  HERALD_ASSERT(state_ != nullptr && clock_ != nullptr, "a gateway node reads a state and a clock");
}

void SimGatewayNode::propose(rsmpb::Command command, rsm::ProposeCallback done) {
  hooks_.propose(std::move(command), std::move(done));
}

void SimGatewayNode::read(std::function<void(Status, const storage::Reader&)> done) {
  hooks_.read_barrier(
      [state = state_, done = std::move(done)](const Status& status) { done(status, *state); });
}

void SimGatewayNode::post(std::function<void()> fn) {
  hooks_.post(std::move(fn));
}

void SimGatewayNode::broadcast(std::string kind, std::string payload) {
  hooks_.broadcast(std::move(kind), std::move(payload));
}

void SimGatewayNode::set_change_listener(server::GatewayChangeListener listener) {
  change_listener_ = std::move(listener);
}

void SimGatewayNode::set_ephemeral_listener(server::GatewayEphemeralListener listener) {
  ephemeral_listener_ = std::move(listener);
}

void SimGatewayNode::changes(const std::vector<messaging::ChangeNotice>& notices) {
  if (change_listener_) {
    change_listener_(notices, clock_->wall_ms());
  }
}

void SimGatewayNode::ephemeral(const std::string& kind, const std::string& payload) {
  if (ephemeral_listener_) {
    ephemeral_listener_(kind, payload);
  }
}

// ---- SimWsConnection ----

SimWsConnection::SimWsConnection(SimScheduler schedule, const Clock* clock, Rng* rng,
                                 std::uint64_t id, std::string endpoint, server::WsHandler* gateway,
                                 std::function<bool()> gateway_alive, DeviceSide device)
    : schedule_(std::move(schedule)),
      clock_(clock),
      rng_(rng),
      id_(id),
      endpoint_(std::move(endpoint)),
      gateway_(gateway),
      gateway_alive_(std::move(gateway_alive)),
      device_(std::move(device)) {
  HERALD_ASSERT(id_ != 0, "connection ids are never 0");
}

bool SimWsConnection::open() {
  HERALD_ASSERT(!gateway_open_ && !closing_, "a connection opens once");
  server::HttpRequest upgrade;
  upgrade.method = "GET";
  upgrade.path = "/v1/ws";
  if (!gateway_alive_() || gateway_->on_open(shared_from_this(), upgrade).has_value()) {
    closing_ = true;
    device_gone_ = true;
    return false;
  }
  gateway_open_ = true;
  return true;
}

MonoMs SimWsConnection::next_arrival(MonoMs& last_ms) {
  const MonoMs at =
      std::max(last_ms, clock_->mono_ms() + rng_->range(kMinWsLatencyMs, kMaxWsLatencyMs));
  last_ms = at;
  return at;
}

MonoMs SimWsConnection::next_down_arrival() {
  MonoMs at = next_arrival(last_down_ms_);
  if (at < reading_from_ms_) {
    at = reading_from_ms_;
    last_down_ms_ = at;
  }
  return at;
}

void SimWsConnection::pause_reading(MonoMs until_ms) {
  reading_from_ms_ = std::max(reading_from_ms_, until_ms);
}

void SimWsConnection::client_send(std::string text) {
  if (closing_) {
    return;
  }
  schedule_(next_arrival(last_up_ms_), [self = shared_from_this(), text = std::move(text)] {
    if (self->gateway_open_ && !self->closing_ && self->gateway_alive_()) {
      self->gateway_->on_text(self, text);
    }
  });
}

void SimWsConnection::client_close() {
  device_gone_ = true;
  if (closing_) {
    return;
  }
  closing_ = true;
  drained_ = nullptr;
  schedule_(next_arrival(last_up_ms_),
            [self = shared_from_this()] { self->tell_gateway_closed(); });
}

void SimWsConnection::tell_gateway_closed() {
  if (!gateway_open_) {
    return;
  }
  gateway_open_ = false;
  if (gateway_alive_()) {
    gateway_->on_close(shared_from_this());
  }
}

Status SimWsConnection::send_text(std::string text) {
  if (closing_) {
    return Status::failed_precondition("the connection is closing");
  }
  if (text.size() > max_queued_bytes_) {
    return Status::invalid_argument("the message is larger than the queue");
  }
  if (queued_bytes_ + text.size() > max_queued_bytes_) {
    discard_queued_ = true;  // as the transport does: the queued messages are dropped too
    close(server::kWsClosePolicyViolation, "slow consumer");
    return Status::resource_exhausted("slow consumer");
  }
  const std::size_t bytes = text.size();
  queued_bytes_ += bytes;
  schedule_(next_down_arrival(), [self = shared_from_this(), bytes, text = std::move(text)] {
    self->frame_arrived(bytes, text);
  });
  return Status::ok_status();
}

void SimWsConnection::frame_arrived(std::size_t bytes, const std::string& text) {
  HERALD_ASSERT(queued_bytes_ >= bytes, "a frame leaves the queue once");
  queued_bytes_ -= bytes;
  if (!device_gone_ && !discard_queued_) {
    device_.frame(text);
  }
  if (drained_ && !closing_ && queued_bytes_ <= drain_below_) {
    auto fn = std::move(drained_);
    drained_ = nullptr;
    fn();
  }
}

void SimWsConnection::close(std::uint16_t code, std::string reason) {
  if (closing_) {
    return;
  }
  closing_ = true;
  server_close_code_ = code;
  drained_ = nullptr;
  // After every queued frame: the device reads them, then the close.
  schedule_(next_down_arrival(), [self = shared_from_this(), code, reason = std::move(reason)] {
    if (!self->device_gone_) {
      self->device_gone_ = true;
      self->device_.closed(code, reason);
    }
    self->tell_gateway_closed();
  });
}

void SimWsConnection::when_drained(std::size_t below, std::function<void()> fn) {
  if (closing_) {
    return;
  }
  if (queued_bytes_ <= below) {
    fn();
    return;
  }
  drain_below_ = below;
  drained_ = std::move(fn);
}

}  // namespace herald::sim
