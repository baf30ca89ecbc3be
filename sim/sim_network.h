// SimNetwork: the simulated network that Herald's replicas talk over inside the simulator.
//
// Every node gets a SimTransport (an rsm::Transport). A message sent through it is serialized
// (as the real peer transport does) and put in flight with a delivery time; the simulator pops
// messages in (deliver_ms, sequence) order and hands them to the destination replica. Every
// decision — loss, duplication, delay (and with it reordering) — is drawn from one Rng seeded by
// the caller, so the same seed and the same calls give the same trace, bit for bit.
//
// Fault model:
//  - loss: each message is dropped with probability NetworkFaults::loss;
//  - duplication: each surviving message is delivered twice with probability duplicate (the
//    copies get independent delays);
//  - delay: uniform in [min_delay_ms, max_delay_ms], so messages on one link may overtake each
//    other — except snapshot chunks, which never overtake an earlier chunk of their link (the
//    peer transport streams them over one connection, and a receiver restarts a stream that
//    arrives out of order);
//  - partitions: any set of cut directed links (from -> to); a message on a cut link is dropped
//    when sent and, if the cut happens while it is in flight, when it would be delivered;
//  - node down: messages to or from a down node are dropped, including those in flight.
// Bounds: each directed link holds at most LinkBounds::max_messages messages and max_bytes bytes
// in flight; send() beyond either returns false (rsm::Transport's "queue at its bound").
//
// Ownership: the network owns the transports; the clock is borrowed and must outlive it.
// Thread-safety: none; the simulator is single-threaded.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/random.h"
#include "raft/types.h"
#include "rsm/rsm.pb.h"
#include "rsm/transport.h"

namespace herald::sim {

// Default bounds of one directed link (messages and serialized bytes in flight). The byte bound
// must exceed the largest single message (raft's max_msg_bytes plus a snapshot chunk's
// overhead), or that message can never be sent.
inline constexpr std::size_t kMaxLinkMessages = 8'192;
inline constexpr std::uint64_t kMaxLinkBytes = 16ULL << 20U;  // 16 MiB

struct LinkBounds {
  std::size_t max_messages = kMaxLinkMessages;
  std::uint64_t max_bytes = kMaxLinkBytes;
};
// Default one-way latency bounds.
inline constexpr MonoMs kDefaultMinDelayMs = 1;
inline constexpr MonoMs kDefaultMaxDelayMs = 5;

// The network's current misbehaviour. Probabilities are in [0, 1]; 0 <= min <= max delay.
struct NetworkFaults {
  double loss = 0.0;
  double duplicate = 0.0;
  MonoMs min_delay_ms = kDefaultMinDelayMs;
  MonoMs max_delay_ms = kDefaultMaxDelayMs;
};

// What happened to the messages handed to the network so far.
struct NetworkCounters {
  std::uint64_t sent = 0;        // send() calls accepted (including those then lost)
  std::uint64_t rejected = 0;    // send() calls refused: link at its bound or unknown peer
  std::uint64_t lost = 0;        // dropped by the loss probability
  std::uint64_t duplicated = 0;  // extra copies put in flight
  std::uint64_t cut = 0;         // dropped by a partition or a down node
  std::uint64_t delivered = 0;
  std::uint64_t snapshot_chunks = 0;  // delivered SnapshotChunk envelopes
  std::uint64_t max_chunk_seq = 0;    // highest chunk seq delivered (>0: multi-chunk streams)
};

// A message popped for delivery: `envelope` as `from` handed it to its transport for `to`.
struct Delivery {
  MonoMs deliver_ms = 0;
  raft::NodeId from = raft::kNoNode;
  raft::NodeId to = raft::kNoNode;
  rsmpb::PeerEnvelope envelope;
};

class SimNetwork;

// One node's endpoint. Created by SimNetwork::add_node and owned by the network.
class SimTransport final : public rsm::Transport {
 public:
  SimTransport(SimNetwork* network, raft::NodeId self) : network_(network), self_(self) {}
  // Puts `envelope` in flight to `to` (see SimNetwork). False when the link is at its bound or
  // `to` is not a node of the network.
  bool send(raft::NodeId to, const rsmpb::PeerEnvelope& envelope) override;
  // Serialized bytes in flight from this node to `to`.
  [[nodiscard]] std::uint64_t queued_bytes(raft::NodeId to) const override;

 private:
  SimNetwork* network_;  // borrowed: the network owns this transport
  raft::NodeId self_;
};

class SimNetwork {
 public:
  SimNetwork(std::uint64_t seed, const Clock* clock, LinkBounds bounds = {});
  SimNetwork(const SimNetwork&) = delete;
  SimNetwork& operator=(const SimNetwork&) = delete;

  // Registers node `id` (up) and returns its transport, valid while the network lives.
  // Precondition: `id` is new and not raft::kNoNode.
  SimTransport& add_node(raft::NodeId id);

  void set_faults(const NetworkFaults& faults);

  // `extra` (may be empty) names, at each send from node `from`, how much later than the link's
  // delay the message leaves: a replica whose disk is slow sends what follows a sync only once the
  // sync ends. It must be deterministic; it draws nothing from the network's random stream.
  using SendDelayFn = std::function<MonoMs()>;
  void set_send_delay(raft::NodeId from, SendDelayFn extra);
  [[nodiscard]] const NetworkFaults& faults() const { return faults_; }

  // Cuts (or restores) the directed link from -> to.
  void cut(raft::NodeId from, raft::NodeId to);
  void cut_both(raft::NodeId a, raft::NodeId b);
  void heal_all();
  [[nodiscard]] bool is_cut(raft::NodeId from, raft::NodeId to) const;
  [[nodiscard]] bool any_cut() const { return !cuts_.empty(); }

  // A down node sends and receives nothing; going down drops its messages in flight.
  void set_up(raft::NodeId id, bool up);
  [[nodiscard]] bool is_up(raft::NodeId id) const;

  // The delivery time of the next message in flight, if any.
  [[nodiscard]] std::optional<MonoMs> next_delivery_ms() const;
  // Removes and returns the next message if it is due at `now_ms`; messages that a partition or
  // a down node now blocks are dropped on the way.
  [[nodiscard]] std::optional<Delivery> pop_due(MonoMs now_ms);

  [[nodiscard]] std::uint64_t queued_bytes(raft::NodeId from, raft::NodeId to) const;
  [[nodiscard]] std::size_t in_flight() const { return flights_.size(); }
  [[nodiscard]] const NetworkCounters& counters() const { return counters_; }

 private:
  friend class SimTransport;
  using Link = std::pair<raft::NodeId, raft::NodeId>;
  struct Flight {
    raft::NodeId from = raft::kNoNode;
    raft::NodeId to = raft::kNoNode;
    std::string bytes;  // the serialized PeerEnvelope
  };
  struct LinkLoad {
    std::size_t messages = 0;
    std::uint64_t bytes = 0;
  };
  // Flights are ordered by (deliver_ms, sequence number): a total, reproducible order.
  using FlightKey = std::pair<MonoMs, std::uint64_t>;

  bool send(raft::NodeId from, raft::NodeId to, const rsmpb::PeerEnvelope& envelope);
  void enqueue(raft::NodeId from, raft::NodeId to, const std::string& bytes, bool in_order);
  void drop_flight(std::map<FlightKey, Flight>::iterator it);
  [[nodiscard]] bool blocked(raft::NodeId from, raft::NodeId to) const;
  void count_delivery(const rsmpb::PeerEnvelope& envelope);

  Rng rng_;
  const Clock* clock_;  // borrowed
  const LinkBounds bounds_;
  NetworkFaults faults_;
  std::map<raft::NodeId, std::unique_ptr<SimTransport>> transports_;
  std::set<raft::NodeId> down_;
  std::set<Link> cuts_;
  std::map<FlightKey, Flight> flights_;
  std::map<Link, LinkLoad> loads_;
  // Per link, the delivery time of the last snapshot chunk put in flight.
  std::map<Link, MonoMs> last_chunk_ms_;
  std::map<raft::NodeId, SendDelayFn> send_delays_;
  std::uint64_t next_sequence_ = 0;
  NetworkCounters counters_;
};

}  // namespace herald::sim
