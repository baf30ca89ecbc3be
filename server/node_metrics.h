// NodeMetrics: every metric family a node exposes at GET /metrics (docs/metrics.md lists them
// with their types, units, labels and where each is measured).
//
// NodeHost owns one. The adapters feed it: the gateway (WebSocket connections, frames, errors,
// messaging latencies) and the workflow host (activity attempts) on their hot paths, through the
// references below (relaxed atomics, no lock, no allocation once a label's series exists); the
// node host observes each Ready round's log sync and apply durations. What the pure cores count
// (rsm::NodeStats, workflow::EngineStats) and the replica's status are copied in by collect(), on
// the raft thread, when a scrape asks.
// Thread-safety: every member may be used from any thread; collect() on the raft thread only.
#pragma once

#include <cstdint>
#include <string>

#include "base/metrics.h"
#include "rsm/node.h"
#include "workflow/engine.h"

namespace herald::server {

class NodeMetrics {
  // Declared first: every reference below points into it.
  metrics::Registry registry_;

 public:
  NodeMetrics();
  NodeMetrics(const NodeMetrics&) = delete;
  NodeMetrics& operator=(const NodeMetrics&) = delete;

  // ---- Messaging, observed by the gateway of the node the device is connected to ----
  metrics::Histogram& send_to_stored;       // a `send` frame read -> its command applied here
  metrics::Histogram& stored_to_delivered;  // the message's stored time -> the device's `ack`
  metrics::Histogram& delivered_to_read;    // the device's `ack` -> its `read` of that message

  // ---- WebSocket (the device socket) ----
  metrics::Gauge& ws_connections;
  metrics::Counter& ws_frames_received;
  metrics::Counter& ws_frames_sent;
  metrics::CounterFamily& ws_errors;  // {code}: error frames sent, by protocol error code

  // ---- Workflow activities, counted by the leader that runs them ----
  metrics::CounterFamily& activity_attempts;  // {activity, outcome}: "ok" or the error type
  metrics::CounterFamily& activity_retries;   // {activity}: attempts after the first
  metrics::Counter& escalations;              // first attempts of the escalation email
  metrics::Counter& push_tokens_invalidated;  // push attempts answered "unregistered"/"invalid"

  // ---- Raft, observed by the node host after each round ----
  metrics::Histogram& raft_log_sync;
  metrics::Histogram& raft_apply;
  metrics::Histogram& raft_log_write_wait;  // rounds whose log write ran behind their apply

  // Copies the replica's and the engine's counters and the replica's status in. Raft thread.
  void collect(const rsm::Node& node, const workflow::EngineStats& engine, std::int64_t now_ms,
               const storage::Reader& state);
  // Observes the latest round's durations when the round synced or applied. Raft thread.
  void observe_round(const rsm::NodeStats& stats);
  // The exposition of every family.
  [[nodiscard]] std::string expose() const { return registry_.expose(); }
  [[nodiscard]] metrics::Registry& registry() { return registry_; }

  // Mirrored by collect().
  metrics::Counter& raft_proposals;
  metrics::Counter& raft_proposals_refused;
  metrics::Counter& raft_committed_entries;
  metrics::Counter& raft_elections;
  metrics::Counter& raft_term_changes;
  metrics::Counter& raft_leader_changes;
  metrics::Gauge& raft_term;
  metrics::Gauge& raft_commit_index;
  metrics::Gauge& raft_applied_index;
  metrics::Gauge& raft_log_entries;
  metrics::GaugeFamily& raft_role;               // {role}: 1 for the current role, 0 for the others
  metrics::CounterFamily& workflow_transitions;  // {type, state}
  metrics::CounterFamily& workflow_compensations;  // {type}: runs that began compensating
  metrics::Counter& workflow_timers_fired;
  metrics::Gauge& workflow_timers_due;

 private:
  std::uint64_t seen_log_syncs_ = 0;                // raft thread
  std::uint64_t seen_apply_rounds_ = 0;             // raft thread
  std::uint64_t seen_log_writes_behind_apply_ = 0;  // raft thread
};

// Due timers counted by a scrape, at most (the gauge saturates there).
inline constexpr std::size_t kMaxCountedDueTimers = 10'000;

}  // namespace herald::server
