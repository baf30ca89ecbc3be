#include "sim/sim_network.h"

#include <algorithm>
#include <utility>

#include "base/assert.h"

namespace herald::sim {

bool SimTransport::send(raft::NodeId to, const rsmpb::PeerEnvelope& envelope) {
  return network_->send(self_, to, envelope);
}

std::uint64_t SimTransport::queued_bytes(raft::NodeId to) const {
  return network_->queued_bytes(self_, to);
}

SimNetwork::SimNetwork(std::uint64_t seed, const Clock* clock, LinkBounds bounds)
    : rng_(seed), clock_(clock), bounds_(bounds) {
  HERALD_ASSERT(clock != nullptr, "the simulated network needs a clock");
  HERALD_ASSERT(bounds.max_messages > 0 && bounds.max_bytes > 0, "a link must carry something");
}

SimTransport& SimNetwork::add_node(raft::NodeId id) {
  HERALD_ASSERT(id != raft::kNoNode && !transports_.contains(id), "node ids must be new");
  auto [it, inserted] = transports_.emplace(id, std::make_unique<SimTransport>(this, id));
  return *it->second;
}

void SimNetwork::set_faults(const NetworkFaults& faults) {
  HERALD_ASSERT(faults.loss >= 0.0 && faults.loss <= 1.0, "loss is a probability");
  HERALD_ASSERT(faults.duplicate >= 0.0 && faults.duplicate <= 1.0, "duplicate is a probability");
  HERALD_ASSERT(faults.min_delay_ms >= 0 && faults.min_delay_ms <= faults.max_delay_ms,
                "delay bounds must be ordered");
  faults_ = faults;
}

void SimNetwork::cut(raft::NodeId from, raft::NodeId to) {
  cuts_.emplace(from, to);
}

void SimNetwork::cut_both(raft::NodeId a, raft::NodeId b) {
  cut(a, b);
  cut(b, a);
}

void SimNetwork::heal_all() {
  cuts_.clear();
}

bool SimNetwork::is_cut(raft::NodeId from, raft::NodeId to) const {
  return cuts_.contains({from, to});
}

void SimNetwork::set_up(raft::NodeId id, bool up) {
  HERALD_ASSERT(transports_.contains(id), "unknown node");
  if (up) {
    down_.erase(id);
    return;
  }
  down_.insert(id);
  // A crashed process loses its socket buffers, and nothing reaches it any more.
  for (auto it = flights_.begin(); it != flights_.end();) {
    auto next = std::next(it);
    if (it->second.from == id || it->second.to == id) {
      ++counters_.cut;
      drop_flight(it);
    }
    it = next;
  }
}

bool SimNetwork::is_up(raft::NodeId id) const {
  return !down_.contains(id);
}

bool SimNetwork::blocked(raft::NodeId from, raft::NodeId to) const {
  return down_.contains(from) || down_.contains(to) || is_cut(from, to);
}

std::uint64_t SimNetwork::queued_bytes(raft::NodeId from, raft::NodeId to) const {
  auto it = loads_.find({from, to});
  return it == loads_.end() ? 0 : it->second.bytes;
}

bool SimNetwork::send(raft::NodeId from, raft::NodeId to, const rsmpb::PeerEnvelope& envelope) {
  if (!transports_.contains(to) || to == from) {
    ++counters_.rejected;
    return false;
  }
  const std::string bytes = envelope.SerializeAsString();
  const LinkLoad& load = loads_[{from, to}];
  if (load.messages >= bounds_.max_messages || load.bytes + bytes.size() > bounds_.max_bytes) {
    ++counters_.rejected;
    return false;
  }
  ++counters_.sent;
  if (blocked(from, to)) {
    ++counters_.cut;  // The sender cannot tell: a cut link looks like a slow one.
    return true;
  }
  if (rng_.chance(faults_.loss)) {
    ++counters_.lost;
    return true;
  }
  const bool in_order = envelope.has_chunk();
  enqueue(from, to, bytes, in_order);
  if (rng_.chance(faults_.duplicate)) {
    ++counters_.duplicated;
    enqueue(from, to, bytes, in_order);
  }
  return true;
}

void SimNetwork::set_send_delay(raft::NodeId from, SendDelayFn extra) {
  send_delays_[from] = std::move(extra);
}

void SimNetwork::enqueue(raft::NodeId from, raft::NodeId to, const std::string& bytes,
                         bool in_order) {
  const MonoMs delay_ms = rng_.range(faults_.min_delay_ms, faults_.max_delay_ms);
  MonoMs deliver_ms = clock_->mono_ms() + delay_ms;
  if (auto extra = send_delays_.find(from); extra != send_delays_.end() && extra->second) {
    deliver_ms += extra->second();
  }
  if (in_order) {
    // Not before the link's previous chunk; an equal time keeps send order by sequence number.
    MonoMs& last = last_chunk_ms_[{from, to}];
    deliver_ms = std::max(deliver_ms, last);
    last = deliver_ms;
  }
  const FlightKey key{deliver_ms, next_sequence_++};
  flights_.emplace(key, Flight{from, to, bytes});
  LinkLoad& load = loads_[{from, to}];
  ++load.messages;
  load.bytes += bytes.size();
}

void SimNetwork::drop_flight(std::map<FlightKey, Flight>::iterator it) {
  LinkLoad& load = loads_[{it->second.from, it->second.to}];
  HERALD_ASSERT(load.messages > 0 && load.bytes >= it->second.bytes.size(),
                "link accounting must cover every flight");
  --load.messages;
  load.bytes -= it->second.bytes.size();
  flights_.erase(it);
}

std::optional<MonoMs> SimNetwork::next_delivery_ms() const {
  if (flights_.empty()) {
    return std::nullopt;
  }
  return flights_.begin()->first.first;
}

std::optional<Delivery> SimNetwork::pop_due(MonoMs now_ms) {
  while (!flights_.empty() && flights_.begin()->first.first <= now_ms) {
    auto it = flights_.begin();
    const raft::NodeId from = it->second.from;
    const raft::NodeId to = it->second.to;
    Delivery delivery;
    delivery.deliver_ms = it->first.first;
    delivery.from = from;
    delivery.to = to;
    const bool parsed = delivery.envelope.ParseFromString(it->second.bytes);
    HERALD_ASSERT(parsed, "a serialized envelope must parse");
    drop_flight(it);
    if (blocked(from, to)) {
      ++counters_.cut;
      continue;
    }
    count_delivery(delivery.envelope);
    return delivery;
  }
  return std::nullopt;
}

void SimNetwork::count_delivery(const rsmpb::PeerEnvelope& envelope) {
  ++counters_.delivered;
  if (envelope.has_chunk()) {
    ++counters_.snapshot_chunks;
    counters_.max_chunk_seq = std::max(counters_.max_chunk_seq, envelope.chunk().seq());
  }
}

}  // namespace herald::sim
