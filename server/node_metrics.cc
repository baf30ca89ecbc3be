#include "server/node_metrics.h"

#include <array>

#include "workflow/saga.h"

namespace herald::server {

namespace {

constexpr double kMicrosPerSecond = 1e6;

constexpr std::array<raft::Role, 4> kRoles = {raft::Role::kFollower, raft::Role::kPreCandidate,
                                              raft::Role::kCandidate, raft::Role::kLeader};

}  // namespace

NodeMetrics::NodeMetrics()
    : send_to_stored(registry_.histogram(
          "herald_messaging_send_stored_seconds",
          "From a device's send frame read by this node's gateway to its command applied on this "
          "node (the message is stored and replicated).",
          metrics::kFastLatencyBucketsSeconds)),
      stored_to_delivered(registry_.histogram(
          "herald_messaging_stored_delivered_seconds",
          "From a message's stored time (the time stamped in the log) to the recipient device's "
          "ack of it applied, observed by the gateway the device is connected to.",
          metrics::kHumanLatencyBucketsSeconds)),
      delivered_to_read(registry_.histogram(
          "herald_messaging_delivered_read_seconds",
          "From a device's ack of a message to the same connection's read of it, observed by the "
          "gateway the device is connected to.",
          metrics::kHumanLatencyBucketsSeconds)),
      ws_connections(registry_.gauge("herald_ws_connections",
                                     "Open device WebSocket connections on this node.")),
      ws_frames_received(registry_.counter("herald_ws_frames_received_total",
                                           "Text frames received from devices.")),
      ws_frames_sent(
          registry_.counter("herald_ws_frames_sent_total", "Text frames queued to devices.")),
      ws_errors(registry_.counter_family("herald_ws_errors_total",
                                         "Error frames sent to devices, by protocol error code.",
                                         {"code"})),
      activity_attempts(registry_.counter_family(
          "herald_workflow_activity_attempts_total",
          "Activity attempts this node ran as leader, by activity type (the provider: "
          "messaging.push, messaging.email, ...) and outcome (ok, or the error type).",
          {"activity", "outcome"})),
      activity_retries(registry_.counter_family(
          "herald_workflow_activity_retries_total",
          "Activity attempts after the first (retries), by activity type.", {"activity"})),
      escalations(registry_.counter(
          "herald_messaging_escalations_total",
          "Escalation emails started: first attempts of messaging.email run by this node.")),
      push_tokens_invalidated(registry_.counter(
          "herald_push_tokens_invalidated_total",
          "Push attempts a provider answered with push.unregistered or push.invalid_token.")),
      raft_log_sync(registry_.histogram(
          "herald_raft_log_sync_seconds",
          "Duration of a Ready round's durable log write (one fsync covering every entry and the "
          "hard state of the round).",
          metrics::kFastLatencyBucketsSeconds)),
      raft_apply(registry_.histogram(
          "herald_raft_apply_seconds",
          "Duration of a Ready round's apply: committed entries through the state machines and "
          "their batch written.",
          metrics::kFastLatencyBucketsSeconds)),
      raft_log_write_wait(registry_.histogram(
          "herald_raft_log_write_wait_seconds",
          "Rounds whose log write ran while they applied (count), and how long the replica then "
          "waited for the write after its apply (sum: the part of the log writes the apply did "
          "not hide).",
          metrics::kFastLatencyBucketsSeconds)),
      raft_proposals(registry_.counter("herald_raft_proposals_total",
                                       "Commands proposed through this replica.")),
      raft_proposals_refused(registry_.counter(
          "herald_raft_proposals_refused_total",
          "Proposals answered at once without reaching the log (bounds, disk alarm, no leader).")),
      raft_committed_entries(registry_.counter("herald_raft_committed_entries_total",
                                               "Committed log entries this replica applied.")),
      raft_elections(registry_.counter("herald_raft_elections_total",
                                       "Elections this replica started (it became candidate).")),
      raft_term_changes(
          registry_.counter("herald_raft_term_changes_total", "Term changes this replica saw.")),
      raft_leader_changes(
          registry_.counter("herald_raft_leader_changes_total",
                            "Times this replica learned of a new leader (itself included).")),
      raft_term(registry_.gauge("herald_raft_term", "The replica's current term.")),
      raft_commit_index(
          registry_.gauge("herald_raft_commit_index", "Highest log index known committed.")),
      raft_applied_index(
          registry_.gauge("herald_raft_applied_index", "Highest log index applied here.")),
      raft_log_entries(registry_.gauge(
          "herald_raft_log_entries",
          "Entries in this replica's log (after compaction: last index - first index + 1).")),
      raft_role(registry_.gauge_family(
          "herald_raft_role", "1 for this replica's current role, 0 for the others.", {"role"})),
      workflow_transitions(registry_.counter_family(
          "herald_workflow_transitions_total",
          "Workflow runs entering a state, by type and state (a closed run: its status).",
          {"type", "state"})),
      workflow_compensations(registry_.counter_family("herald_workflow_compensations_total",
                                                      "Saga runs that began compensating, by type.",
                                                      {"type"})),
      workflow_timers_fired(registry_.counter("herald_workflow_timers_fired_total",
                                              "Durable workflow timers fired (applied).")),
      workflow_timers_due(registry_.gauge(
          "herald_workflow_timers_due",
          "Timers due and not yet fired, as of the scrape (counted up to 10000).")) {
  for (const raft::Role role : kRoles) {
    static_cast<void>(raft_role.with({raft::role_name(role)}));
  }
}

void NodeMetrics::collect(const rsm::Node& node, const workflow::EngineStats& engine,
                          std::int64_t now_ms, const storage::Reader& state) {
  const rsm::NodeStats& s = node.stats();
  raft_proposals.mirror(s.proposals);
  raft_proposals_refused.mirror(s.proposals_refused);
  raft_committed_entries.mirror(s.entries_applied);
  raft_elections.mirror(s.elections);
  raft_term_changes.mirror(s.term_changes);
  raft_leader_changes.mirror(s.leader_changes);
  const raft::NodeStatus status = node.status();
  raft_term.set(static_cast<double>(status.term));
  raft_commit_index.set(static_cast<double>(status.commit));
  raft_applied_index.set(static_cast<double>(node.applied_index()));
  const raft::LogStorage& log = node.log();
  raft_log_entries.set(static_cast<double>(log.last_index() + 1 - log.first_index()));
  for (const raft::Role role : kRoles) {
    raft_role.with({raft::role_name(role)}).set(role == status.role ? 1 : 0);
  }
  for (const auto& [entered, count] : engine.transitions) {
    workflow_transitions.with({entered.type, entered.state}).mirror(count);
    if (entered.state == workflow::kSagaCompensating) {
      workflow_compensations.with({entered.type}).mirror(count);
    }
  }
  workflow_timers_fired.mirror(engine.timers_fired);
  auto due = workflow::Engine::due_timers(state, now_ms, kMaxCountedDueTimers);
  if (due.ok()) workflow_timers_due.set(static_cast<double>(due->size()));
}

void NodeMetrics::observe_round(const rsm::NodeStats& stats) {
  if (stats.log_syncs != seen_log_syncs_) {
    seen_log_syncs_ = stats.log_syncs;
    raft_log_sync.observe(static_cast<double>(stats.last_log_sync_us) / kMicrosPerSecond);
  }
  if (stats.apply_rounds != seen_apply_rounds_) {
    seen_apply_rounds_ = stats.apply_rounds;
    raft_apply.observe(static_cast<double>(stats.last_apply_us) / kMicrosPerSecond);
  }
  if (stats.log_writes_behind_apply != seen_log_writes_behind_apply_) {
    seen_log_writes_behind_apply_ = stats.log_writes_behind_apply;
    raft_log_write_wait.observe(static_cast<double>(stats.last_log_write_wait_us) /
                                kMicrosPerSecond);
  }
}

}  // namespace herald::server
