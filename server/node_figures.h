// Node figures: what a node measures of itself (recent fsync, commit and apply latency, connected
// devices, leader changes), sent to its peers every kNodeFiguresIntervalMs as a NodeFigures peer
// frame (docs/protocol-peer.md, "Node figures"), so that GET /v1/cluster on any node shows every
// node's own figures (docs/api-http.md).
//
// This file holds the pure parts: the recent-latency window each node keeps, the encoding of its
// figures and the receiver's defensive decoding, and the book of the latest figures per peer.
// The node host (server/node_host.cc) feeds and sends them on its raft thread.
// Thread-safety: none; every class here is used from one thread (the functions are pure).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <utility>

#include "base/clock.h"
#include "base/status.h"
#include "raft/types.h"
#include "rsm/rsm.pb.h"

namespace herald::server {

// A node sends its figures to every other member this often.
inline constexpr MonoMs kNodeFiguresIntervalMs = 1'000;
// Figures received longer ago than this are shown as stale (the sender may be down or cut off).
inline constexpr MonoMs kNodeFiguresStaleMs = 3 * kNodeFiguresIntervalMs;
// The latencies summarize the samples of this recent window...
inline constexpr MonoMs kLatencyWindowMs = 10'000;
// ...and at most this many of them per kind (the newest), which bounds memory and the cost of a
// summary on a busy node.
inline constexpr std::size_t kMaxLatencySamples = 4'096;
// The NodeFigures format version this code writes and reads.
inline constexpr std::uint32_t kNodeFiguresVersion = 1;
// A NodeFigures message (serialized) larger than this is malformed: version 1 needs < 100 bytes.
inline constexpr std::size_t kMaxNodeFiguresBytes = 512;
// Bounds a receiver accepts; beyond them the figures are malformed.
inline constexpr std::uint64_t kMaxFiguresLatencyUs = 3'600ULL * 1'000'000;  // one hour
inline constexpr std::uint64_t kMaxFiguresDevices = 100'000'000;
inline constexpr std::uint64_t kMaxFiguresWindowMs = 3'600'000;  // one hour

// Nearest-rank percentiles of the samples in a window, in microseconds; all 0 when count is 0.
struct LatencySummary {
  std::uint64_t count = 0;
  std::uint64_t p50_us = 0;
  std::uint64_t p99_us = 0;
  std::uint64_t max_us = 0;
  bool operator==(const LatencySummary&) const = default;
};

// The latest samples of one latency, summarized over the last kLatencyWindowMs. Negative samples
// count as 0. Memory: at most kMaxLatencySamples samples.
class RecentLatency {
 public:
  void observe(MonoMs now_ms, std::int64_t micros);
  // Over the samples observed in (now_ms - kLatencyWindowMs, now_ms]; older ones are forgotten.
  [[nodiscard]] LatencySummary summary(MonoMs now_ms);

 private:
  void forget_before(MonoMs now_ms);
  std::deque<std::pair<MonoMs, std::uint64_t>> samples_;  // (time, micros), oldest first
};

// One node's figures, as sent and as decoded.
struct NodeFigures {
  raft::NodeId id = raft::kNoNode;
  MonoMs window_ms = kLatencyWindowMs;
  LatencySummary fsync;
  LatencySummary commit;
  LatencySummary apply;
  std::uint64_t devices = 0;
  std::uint64_t leader_changes = 0;
  bool operator==(const NodeFigures&) const = default;
};

// The message for `figures` (version kNodeFiguresVersion).
[[nodiscard]] rsmpb::NodeFigures encode_node_figures(const NodeFigures& figures);
// The figures of `message`, received from node `from` (the connection's authenticated node).
// Errors (kInvalidArgument, saying what is wrong; the receiver drops the message): a version other
// than kNodeFiguresVersion, more than kMaxNodeFiguresBytes, an id other than `from`, a window of 0
// or above kMaxFiguresWindowMs, a latency whose percentiles are out of order, above
// kMaxFiguresLatencyUs or set without samples, more than kMaxFiguresDevices devices. Any message
// is accepted as input; nothing asserts.
[[nodiscard]] Result<NodeFigures> decode_node_figures(const rsmpb::NodeFigures& message,
                                                      raft::NodeId from);

// The latest figures received from each peer, with when they arrived.
class FiguresBook {
 public:
  struct Entry {
    NodeFigures figures;
    MonoMs received_ms = 0;
  };
  void record(const NodeFigures& figures, MonoMs now_ms);
  // Forgets the peers for which `keep` is false (members that left).
  template <typename Keep>
  void retain(Keep keep) {
    std::erase_if(entries_, [&](const auto& entry) { return !keep(entry.first); });
  }
  [[nodiscard]] const std::map<raft::NodeId, Entry>& entries() const { return entries_; }

 private:
  std::map<raft::NodeId, Entry> entries_;
};

}  // namespace herald::server
