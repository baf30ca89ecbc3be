// Engine: Herald's durable workflow engine, applied through the replicated log.
//
// The engine is the "workflow" module of the replicated state machine (rsm::StateMachine). It
// applies WorkflowCommands (workflow/workflow.proto) deterministically on every replica and keeps
// every piece of workflow state in the state space, written in the command's apply batch:
// workflow records, bounded per-run histories, activity records (the outbox the leader runs),
// durable timers indexed by due time, and a visibility index that is always exactly as current
// as the records (same batch: no lag). Key layout and state diagrams: docs/workflow.md.
//
// Semantics (Temporal's, embedded):
//  - StartWorkflow with an id that exists returns the existing run (dedup) with existed = true.
//  - Signals are delivered in commit order; a signal to a closed or unknown run is kNotFound.
//  - Activities: scheduled by a Decision, dispatched by the leader's Runtime, reported back by
//    ReportActivity. A failed attempt is retried per its RetryPolicy (full jitter from a seed
//    derived from (workflow id, run id, activity id, attempt), so every replica draws the same
//    delay) through a durable ACTIVITY_RETRY timer; non-retryable error types, exhausted
//    attempts and schedule-to-close expiry deliver kActivityFailed to the workflow. A failure's
//    retry hint (ReportActivity.retry_after_ms) holds the retry back at least that long, as far as
//    the policy's maximum_retry_after_ms allows; the history event of each attempt keeps the
//    handler's details and, for a retry, when the next attempt is due. Reports for
//    a stale attempt or a finished activity are ignored (ok, no effect): each attempt's outcome
//    takes effect at most once.
//  - Refused attempts: a failure reported not_dispatched (it never reached the outside service,
//    e.g. an open circuit breaker refused it) of an activity whose options set
//    maximum_refused_wait_ms pushes that activity's schedule-to-close deadline back by the
//    attempt's span (from becoming dispatchable to its retry's due time), up to that bound in
//    all, and only the first refusal of a streak is recorded in history (the others are counted
//    in ActivityRecord.refused_in_a_row). maximum_attempts still counts every attempt.
//  - Timeouts are durable timers: START_TO_CLOSE and HEARTBEAT fail the attempt with error type
//    "timeout.start_to_close" / "timeout.heartbeat" (retryable); SCHEDULE_TO_CLOSE fails the
//    activity with "timeout.schedule_to_close" (not retried).
//  - FireTimer applies only if the timer still exists and command.wall_ms >= due_ms (else it is
//    refused with kFailedPrecondition): no timer fires early, none fires twice. FireTimers
//    applies up to kMaxTimersPerFireCommand of them in one command, each on its own: a refused
//    one is skipped and the others take effect.
//  - CancelWorkflow delivers kCancelRequested; the type decides (it may complete compensation
//    first). A type that ignores it is canceled by the engine.
//  - Retention: a closed run enters a purge queue; once its retention (SetRetention, default
//    kDefaultClosedRetentionMs) has passed, its history is deleted and, when it is the workflow's
//    latest run, its record and visibility entry too, leaving a WorkflowSummary (read_summary).
//    A later start under the same id begins after the purged run id, so idempotency keys are
//    never reused — while the summary is kept. With a summary retention (a domain whose ids
//    never come back, such as a message's deliveries), the summary is deleted that long after
//    the purge, and a start under the same id after that begins at run 1 again.
//  - History: each run keeps at most kMaxHistoryEvents events. An event that would exceed it
//    fails the run with error type "history_limit" and a message naming continue-as-new, the way
//    to carry on with a fresh history (same workflow id, run_id + 1).
// Thread-safety: apply() runs on the replica's apply thread; the static readers may run on any
// thread against any storage::Reader.
#pragma once

#include <compare>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"
#include "rsm/state_machine.h"
#include "storage/engine.h"
#include "workflow/definition.h"
#include "workflow/workflow.pb.h"

namespace herald::workflow {

inline constexpr char kModuleName[] = "workflow";
inline constexpr std::uint64_t kMaxHistoryEvents = 10'000;
inline constexpr std::size_t kMaxWorkflowIdBytes = 256;
inline constexpr std::size_t kMaxPayloadBytes = 256 * 1024;
inline constexpr std::size_t kMaxActionsPerDecision = 64;
// ReportActivity.details (what a handler keeps about one attempt in its history event), at most.
inline constexpr std::size_t kMaxAttemptDetailsBytes = 4 * 1024;
// Timers one FireTimers command may carry.
inline constexpr std::size_t kMaxTimersPerFireCommand = 512;

// Retention of closed runs (docs/workflow.md, "Retention"): a closed run's history, and the record
// of a workflow whose latest run closed, are purged this long after the run closed.
inline constexpr std::int64_t kDefaultClosedRetentionMs = 7LL * 24 * 3600 * 1000;  // 7 days
inline constexpr std::int64_t kMinClosedRetentionMs = 1'000;
inline constexpr std::int64_t kMaxClosedRetentionMs = 10LL * 365 * 24 * 3600 * 1000;  // 10 years
// History chunks (the events one command appended to a run, stored as one value) one command
// deletes at most while purging (a command that closes a run purges as well as PurgeClosed does,
// so purging keeps pace with closing).
inline constexpr std::size_t kMaxPurgedHistoryChunksPerCommand = 64;
// Summary retention (RetentionSettings.summary_retention_ms; 0, the default, keeps summaries):
// at most this long, and summaries one command deletes at most. Each purged run adds one, and
// every command that purges also expires, so expiry keeps pace with purging.
inline constexpr std::int64_t kMaxSummaryRetentionMs = kMaxClosedRetentionMs;
inline constexpr std::size_t kMaxSummaryExpiriesPerCommand = 8;
// Milestones a purged workflow's summary keeps at most.
inline constexpr std::size_t kMaxSummaryMilestones = 32;

// An activity the leader should run now (a hint; the records are the truth).
struct ActivityRef {
  std::string workflow_id;
  std::uint64_t run_id = 0;
  std::uint64_t activity_id = 0;
  std::uint32_t attempt = 0;
};

// A timer fire that was applied: fired, found its timer gone, or refused (not due yet).
struct AppliedFire {
  std::string workflow_id;
  std::uint64_t run_id = 0;
  std::uint64_t timer_id = 0;
  std::int64_t due_ms = 0;
  bool fired = false;  // the timer existed and fired (if its command as a whole succeeded)
};

// A page of due timers and where the next page starts.
struct DueTimerPage {
  std::vector<workflowpb::TimerRecord> timers;  // due order
  std::string next_cursor;                      // opaque; pass back to continue after these
};

struct VisibilityEntry {
  std::string workflow_id;
  std::string type;
  workflowpb::WorkflowStatus status = workflowpb::RUNNING;
  std::string state;
  std::int64_t state_since_ms = 0;  // when the run entered this state and status
};

struct ListFilter {
  std::string type;                  // required
  std::optional<std::string> state;  // a named state, or all
  std::size_t limit = 100;
  std::string page_token;  // from the previous page's next_page_token
};

struct ListPage {
  std::vector<VisibilityEntry> entries;  // ordered by (state, state_since_ms, workflow_id)
  std::string next_page_token;           // empty on the last page
};

// A workflow type entering a state: a named state while the run is RUNNING, else the run's
// closing status in lower case ("completed", "failed", "canceled", ...).
struct StateEntered {
  std::string type;
  std::string state;
  auto operator<=>(const StateEntered&) const = default;
};

// What this replica's engine applied since it opened, as plain numbers for the node's metrics
// (docs/metrics.md). Counted only for commands whose result was ok; every replica counts the same.
struct EngineStats {
  std::map<StateEntered, std::uint64_t> transitions;  // bounded by the types' states
  std::uint64_t timers_fired = 0;                     // timers that existed and fired
};

// What one command did to a run of an observed type (see TransitionObserver).
struct Transition {
  std::string type;
  std::string workflow_id;
  std::uint64_t run_id = 0;
  // The named state the run entered (a run that closes keeps its last named state: a closing
  // decision that moves it reports it here); empty when the command left the run in its state.
  std::string entered;
  // The Action::record events the command appended, in order: (name, payload).
  std::vector<std::pair<std::string, std::string>> records;
  std::string data;  // the run's data after the command
};

// Sees, inside the command's apply, what commands do to runs of the types it observes, and may
// start workflows in the same batch in answer (webhook deliveries, webhooks/emitter.h). Called on
// the apply thread, after a command whose result is ok, once per run it changed, in order; every
// replica makes the same calls. An error fails the command (and is rolled back with it). Runs the
// observer's starts begin are not observed.
class TransitionObserver {
 public:
  virtual ~TransitionObserver() = default;
  // Pure and cheap: whether transitions of `type` are of interest (no other is collected).
  [[nodiscard]] virtual bool observes(std::string_view type) const = 0;
  // Appends to `starts` the workflows to start for `transition`; `state` is the command's batch.
  [[nodiscard]] virtual Status observe(const rsm::ApplyBatch& state, std::int64_t now_ms,
                                       const Transition& transition,
                                       std::vector<workflowpb::StartWorkflow>& starts) = 0;
};

class Engine final : public rsm::StateMachine {
 public:
  explicit Engine(const Registry* registry) : registry_(registry) {}

  // Borrowed; nullptr (the default) observes nothing. Precondition: set before the first apply.
  void set_observer(TransitionObserver* observer) { observer_ = observer; }

  // rsm::StateMachine. `command` carries module "workflow" and a serialized WorkflowCommand.
  // The CommandResult's payload is a serialized workflowpb::WorkflowRecord for start, signal and
  // cancel (the run as it is after the command).
  [[nodiscard]] rsmpb::CommandResult apply(raft::Index index, const rsmpb::Command& command,
                                           rsm::ApplyBatch& batch) override;
  // The progress of runs already started (activity reports and heartbeats, timers, cancels),
  // purges, retention settings, and starts of types that settle stored state
  // (WorkflowType::starts_when_disk_low); other starts and signals are refused.
  [[nodiscard]] bool allowed_when_disk_low(const rsmpb::Command& command) const override;
  // Applies one workflow command at time `now_ms` inside another module's command, in its batch
  // (a domain command that stores a message starts its delivery workflows this way, atomically).
  // Same results as apply(); on a non-ok result the caller must roll back its whole command.
  [[nodiscard]] rsmpb::CommandResult apply_command(const workflowpb::WorkflowCommand& command,
                                                   std::int64_t now_ms, rsm::ApplyBatch& batch);

  // Activities that became dispatchable in the commands applied since the last call.
  [[nodiscard]] std::vector<ActivityRef> take_dispatchable();
  // Timer fires applied since the last call, whatever their outcome, in application order.
  [[nodiscard]] std::vector<AppliedFire> take_applied_fires();
  // The same list without taking it (for observers that audit fires, like the simulator).
  [[nodiscard]] const std::vector<AppliedFire>& applied_fires() const { return applied_fires_; }
  // Read on the apply thread.
  [[nodiscard]] const EngineStats& stats() const { return stats_; }

  // ---- Reads of applied state ----
  [[nodiscard]] static Result<std::optional<workflowpb::WorkflowRecord>> read_workflow(
      const storage::Reader& reader, std::string_view workflow_id);
  // What stays of a purged workflow; nullopt when none of its runs was purged.
  [[nodiscard]] static Result<std::optional<workflowpb::WorkflowSummary>> read_summary(
      const storage::Reader& reader, std::string_view workflow_id);
  // The engine's retention settings, defaults filled in.
  [[nodiscard]] static Result<workflowpb::RetentionSettings> read_retention(
      const storage::Reader& reader);
  // When the purge queue next has work: the oldest closed run waiting becomes due (its close
  // time plus the retention) or the oldest kept summary expires (plus the summary retention),
  // whichever comes first; nullopt when there is neither. The leader proposes PurgeClosed from
  // then on.
  [[nodiscard]] static Result<std::optional<std::int64_t>> next_purge_due_ms(
      const storage::Reader& reader);
  [[nodiscard]] static Result<std::vector<workflowpb::HistoryEvent>> read_history(
      const storage::Reader& reader, std::string_view workflow_id, std::uint64_t run_id,
      std::uint64_t after_seq, std::size_t limit);
  [[nodiscard]] static Result<ListPage> list(const storage::Reader& reader,
                                             const ListFilter& filter);
  [[nodiscard]] static Result<std::optional<workflowpb::ActivityRecord>> read_activity(
      const storage::Reader& reader, const ActivityRef& ref);
  // Timers with due_ms <= now_ms, in due order, at most `limit`.
  [[nodiscard]] static Result<std::vector<workflowpb::TimerRecord>> due_timers(
      const storage::Reader& reader, std::int64_t now_ms, std::size_t limit);
  // Timers with due_ms <= now_ms after `cursor` (empty: from the first), in due order.
  [[nodiscard]] static Result<DueTimerPage> due_timers_after(const storage::Reader& reader,
                                                             std::int64_t now_ms,
                                                             std::string_view cursor,
                                                             std::size_t limit);
  // Every DISPATCHABLE activity (a new leader resumes them all), at most `limit` after `after`.
  [[nodiscard]] static Result<std::vector<workflowpb::ActivityRecord>> dispatchable_activities(
      const storage::Reader& reader, std::size_t limit);

 private:
  [[nodiscard]] rsmpb::CommandResult fire_timers(const workflowpb::FireTimers& op,
                                                 std::int64_t now_ms, rsm::ApplyBatch& batch);
  // Applies one timer fire in `batch` and notes it in applied_fires_.
  [[nodiscard]] Result<rsmpb::CommandResult> fire_one(const workflowpb::FireTimer& fire,
                                                      std::int64_t now_ms, rsm::ApplyBatch& batch);

  // Hands the transitions collected by the command to the observer and starts what it asks.
  [[nodiscard]] Status notify_observer(std::int64_t now_ms, rsm::ApplyBatch& batch);

  const Registry* registry_;                // borrowed
  TransitionObserver* observer_ = nullptr;  // borrowed
  std::vector<Transition> transitions_;     // by the command being applied, for observer_
  std::size_t closed_runs_ = 0;             // runs closed by the command being applied
  std::vector<ActivityRef> dispatchable_;
  std::vector<AppliedFire> applied_fires_;
  std::vector<StateEntered> entered_;  // by the command being applied
  EngineStats stats_;
};

}  // namespace herald::workflow
