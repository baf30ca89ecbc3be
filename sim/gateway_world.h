// The device gateway in the simulator: what a replica incarnation needs to run the real
// server::Gateway (server/gateway.h), and the WebSocket a simulated device connects to it with.
//
// SimGatewayNode is the GatewayNode (server/gateway_node.h) of one replica incarnation: its
// proposals, read barriers and posts go through hooks the scenario provides, which queue them as
// simulator events (never inside the node's Ready loop) and drop their callbacks once the
// incarnation is gone; the scenario hands it the change notices of each applied batch, one tick
// notice per tick, and the ephemeral events of the other replicas. Its clock is the simulated one,
// with the incarnation's wall-clock skew (which a clock jump may move).
//
// SimWsConnection is one device's WebSocket to one gateway: frames each way arrive after a seeded
// latency, in order; the gateway's outbound queue is counted in bytes and bounded as the real
// transport bounds it (kMaxWsQueuedBytes, or a smaller bound the scenario sets: past it the queued
// frames are dropped and the connection is closed with 1008 "slow consumer"), and drains as the
// device reads, which a slow reader pauses now and then; close() delivers what is
// queued, then the close, then on_close to the gateway, exactly once. A connection whose gateway's
// incarnation is gone calls nothing more on it.
//
// Determinism: every latency comes from the Rng the scenario passes; every callback runs as a
// SimCluster call in time order. Thread-safety: none (the simulator's one thread).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/random.h"
#include "messaging/domain.h"
#include "server/gateway_node.h"
#include "server/node_metrics.h"
#include "server/websocket.h"

namespace herald::sim {

// Runs `fn` at simulated time `at_ms`, in order with every other event (SimCluster::schedule_call).
using SimScheduler = std::function<void(MonoMs at_ms, std::function<void()> fn)>;

// One way of a device connection takes this long, drawn per frame (frames never overtake).
inline constexpr MonoMs kMinWsLatencyMs = 1;
inline constexpr MonoMs kMaxWsLatencyMs = 8;

// Simulated time with a wall clock that runs *skew_ms off the simulated one.
class SkewedClock final : public Clock {
 public:
  // Both borrowed; they must outlive the clock.
  SkewedClock(const Clock* base, const std::int64_t* skew_ms) : base_(base), skew_ms_(skew_ms) {}
  [[nodiscard]] MonoMs mono_ms() const override { return base_->mono_ms(); }
  [[nodiscard]] WallMs wall_ms() const override { return base_->wall_ms() + *skew_ms_; }

 private:
  const Clock* base_;
  const std::int64_t* skew_ms_;
};

// How a SimGatewayNode reaches its replica. Each hook queues its work as a simulator event and
// runs the callback in a later event, or never when the incarnation went down meanwhile.
struct SimGatewayHooks {
  std::function<void(rsmpb::Command, rsm::ProposeCallback)> propose;  // stamps the wall time
  std::function<void(rsm::ReadCallback)> read_barrier;
  std::function<void(std::function<void()>)> post;
  std::function<void(std::string kind, std::string payload)> broadcast;
};

class SimGatewayNode final : public server::GatewayNode {
 public:
  // `state` and `clock` are borrowed and outlive the node.
  SimGatewayNode(const storage::Reader* state, const Clock* clock, SimGatewayHooks hooks);

  void propose(rsmpb::Command command, rsm::ProposeCallback done) override;
  void read(std::function<void(Status, const storage::Reader&)> done) override;
  void post(std::function<void()> fn) override;
  [[nodiscard]] const storage::Reader& state() const override { return *state_; }
  void broadcast(std::string kind, std::string payload) override;
  void set_change_listener(server::GatewayChangeListener listener) override;
  void set_ephemeral_listener(server::GatewayEphemeralListener listener) override;
  [[nodiscard]] server::NodeMetrics& metrics() override { return metrics_; }
  [[nodiscard]] const Clock& clock() const override { return *clock_; }

  // The scenario's side, each in an event of its own: an applied batch's notices (or none, for a
  // tick), and an ephemeral event another replica broadcast.
  void changes(const std::vector<messaging::ChangeNotice>& notices);
  void ephemeral(const std::string& kind, const std::string& payload);

 private:
  const storage::Reader* state_;
  const Clock* clock_;
  SimGatewayHooks hooks_;
  server::NodeMetrics metrics_;
  server::GatewayChangeListener change_listener_;
  server::GatewayEphemeralListener ephemeral_listener_;
};

class SimWsConnection final : public server::WsConnection,
                              public std::enable_shared_from_this<SimWsConnection> {
 public:
  // What the device side hears: a text frame, and the server's close once it arrives.
  struct DeviceSide {
    std::function<void(const std::string& text)> frame;
    std::function<void(std::uint16_t code, const std::string& reason)> closed;
  };

  // `clock`, `rng` and `gateway` are borrowed; `gateway_alive` says whether the gateway's
  // incarnation still runs (nothing is called on it once it does not).
  SimWsConnection(SimScheduler schedule, const Clock* clock, Rng* rng, std::uint64_t id,
                  std::string endpoint, server::WsHandler* gateway,
                  std::function<bool()> gateway_alive, DeviceSide device);

  // The device's side. open(): the upgrade; false when the gateway refused it.
  [[nodiscard]] bool open();
  // The device sends a text frame (dropped once the connection is closing).
  void client_send(std::string text);
  // The device goes away: frames still on their way to it are dropped, the gateway hears the
  // close after the latency.
  void client_close();
  // The device reads nothing before `until_ms` (a slow reader): frames the gateway sends meanwhile
  // arrive, and leave the queue, only then. Nothing is drawn for it.
  void pause_reading(MonoMs until_ms);
  // Bounds the gateway's outbound queue at `bytes` instead of kMaxWsQueuedBytes; call before
  // open().
  void set_queue_limit(std::size_t bytes) { max_queued_bytes_ = bytes; }
  // The code the gateway (or the queue bound) closed the connection with; 0 while it did not,
  // whether or not the close reached the device yet.
  [[nodiscard]] std::uint16_t server_close_code() const { return server_close_code_; }

  // server::WsConnection, the gateway's side.
  [[nodiscard]] Status send_text(std::string text) override;
  void close(std::uint16_t code, std::string reason) override;
  [[nodiscard]] std::size_t queued_bytes() const override { return queued_bytes_; }
  void when_drained(std::size_t below, std::function<void()> fn) override;
  [[nodiscard]] std::uint64_t id() const override { return id_; }
  [[nodiscard]] const std::string& remote_endpoint() const override { return endpoint_; }

 private:
  // When the next frame in one direction arrives: after the latency, never before the previous.
  [[nodiscard]] MonoMs next_arrival(MonoMs& last_ms);
  // The next frame to the device: after the latency and any pause of its reading.
  [[nodiscard]] MonoMs next_down_arrival();
  void frame_arrived(std::size_t bytes, const std::string& text);
  void tell_gateway_closed();

  SimScheduler schedule_;
  const Clock* clock_;
  Rng* rng_;
  const std::uint64_t id_;
  const std::string endpoint_;
  server::WsHandler* gateway_;
  std::function<bool()> gateway_alive_;
  DeviceSide device_;
  bool closing_ = false;         // close() or client_close() ran: sends are refused
  bool device_gone_ = false;     // the device closed, or heard the server's close
  bool gateway_open_ = false;    // accepted, and on_close not called yet
  bool discard_queued_ = false;  // closed as a slow consumer: what is queued never arrives
  std::size_t queued_bytes_ = 0;
  std::size_t max_queued_bytes_ = server::kMaxWsQueuedBytes;
  std::uint16_t server_close_code_ = 0;
  MonoMs reading_from_ms_ = 0;  // pause_reading
  MonoMs last_down_ms_ = 0;     // arrival of the last frame to the device
  MonoMs last_up_ms_ = 0;       // arrival of the last frame to the gateway
  std::size_t drain_below_ = 0;
  std::function<void()> drained_;
};

}  // namespace herald::sim
