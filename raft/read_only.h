// ReadOnlyQueue: the leader's outstanding ReadIndex requests (Raft thesis §6.4).
//
// Each request records the commit index when it arrived and the peers that acknowledged a
// heartbeat sent after it. The heartbeat carries a context that names the request (a sequence
// number assigned here), so callers' contexts may repeat without confusing acknowledgements.
// Once a quorum acknowledged request R, R and every older request are released: those older
// requests' indexes were recorded before leadership was confirmed for R.
// Thread-safety: none.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "raft/types.h"

namespace herald::raft {

struct ReadRequest {
  std::uint64_t seq = 0;
  Index index = 0;
  NodeId from = kNoNode;
  std::string context;  // the requester's context, returned in its ReadState
  std::set<NodeId> acks;
};

class ReadOnlyQueue {
 public:
  // Queues a request (acknowledged by `self`) and returns the heartbeat context naming it.
  [[nodiscard]] std::string add(Index index, NodeId from, std::string context, NodeId self);
  // Records `from`'s acknowledgement of the request named by `heartbeat_context`; returns that
  // request's acknowledgements, or nullptr when it is unknown (already released or foreign).
  const std::set<NodeId>* ack(const std::string& heartbeat_context, NodeId from);
  // Removes and returns every request up to and including the one named by heartbeat_context.
  [[nodiscard]] std::vector<ReadRequest> release_through(const std::string& heartbeat_context);
  // Heartbeat context of the newest request, or "" when none is pending.
  [[nodiscard]] std::string last_context() const;
  [[nodiscard]] std::size_t size() const { return queue_.size(); }
  void clear() { queue_.clear(); }

 private:
  [[nodiscard]] static std::optional<std::uint64_t> parse(const std::string& heartbeat_context);
  [[nodiscard]] static std::string format(std::uint64_t seq);
  ReadRequest* find(std::uint64_t seq);

  std::deque<ReadRequest> queue_;  // ascending seq
  std::uint64_t next_seq_ = 1;
};

}  // namespace herald::raft
