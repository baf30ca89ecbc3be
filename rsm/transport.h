// Transport: how the replicated state machine reaches its peers.
//
// server/peer_transport.h implements it over TCP; sim/ implements it with a simulated network
// that loses, duplicates, reorders and delays. Delivery is best effort: raft retransmits, and a
// snapshot stream that loses a chunk is abandoned and restarted.
// Thread-safety: implementations must accept send() from the thread that drives rsm::Node.
#pragma once

#include <cstdint>

#include "raft/types.h"
#include "rsm/rsm.pb.h"

namespace herald::rsm {

class Transport {
 public:
  virtual ~Transport() = default;
  // Queues `envelope` for peer `to`. Returns false, dropping it, when that peer's queue is at
  // its bound or the peer is unknown.
  virtual bool send(raft::NodeId to, const rsmpb::PeerEnvelope& envelope) = 0;
  // Bytes queued for `to` and not yet written to the connection (snapshot flow control).
  [[nodiscard]] virtual std::uint64_t queued_bytes(raft::NodeId to) const = 0;
};

}  // namespace herald::rsm
