// Runtime: the leader-side half of the workflow engine — it runs activities and fires timers.
//
// Only the leader's Runtime acts; followers' Runtimes stay idle. Every effect goes back through
// the log: an activity's outcome as ReportActivity, a due timer as FireTimer. When a replica
// becomes leader it at once dispatches every DISPATCHABLE activity and fires every overdue timer
// in due-time order, so work in flight at a failover resumes (an activity may then run twice;
// its handler makes that harmless with the idempotency key).
//
// The Runtime does no I/O itself: handlers do theirs and call back; time arrives through tick();
// commands leave through the ProposeFn. So the same code runs under `herald serve` and in the
// simulator. Thread-safety: none; everything runs on the replica's thread, and handlers must
// invoke their callbacks on it (post back).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "rsm/rsm.pb.h"
#include "storage/engine.h"
#include "workflow/engine.h"

namespace herald::workflow {

// Timers proposed per tick at most (the rest next tick, still in due order).
inline constexpr std::size_t kMaxTimersPerTick = 1024;
// Timer fires proposed and not yet applied, at most (flow control toward the log). Every read
// and command waits behind the fires committed before it: 2,048 is about 60 ms of apply on the
// reference machine, enough to keep the apply busy between ticks (8,192 drained no faster, and
// made reads during a backlog of overdue timers wait about 270 ms).
inline constexpr std::size_t kMaxTimerFiresInFlight = 2048;
// How often the due-timer scan starts over from the earliest due timer.
inline constexpr std::int64_t kTimerRescanIntervalMs = 1'000;
inline constexpr std::size_t kMaxActivitiesInFlight = 16384;
// A FireTimer or ReportActivity not seen applied this long after it was proposed counts as lost:
// the timer is fired again, the activity attempt run again.
inline constexpr std::int64_t kResendAfterMs = 5'000;
// The leader re-reads every DISPATCHABLE activity this often, so none is stranded by a lost hint.
inline constexpr std::int64_t kActivityRescanIntervalMs = 1'000;
// How often the leader checks whether the oldest closed run is due for purging, and proposes one
// PurgeClosed (kMaxPurgedHistoryChunksPerCommand history chunks) when it is; closing runs purge as
// they go too.
inline constexpr std::int64_t kPurgeCheckIntervalMs = 200;
// The error type reported for an activity whose type has no handler on this leader. By
// convention it is listed among a policy's non_retryable_error_types (sagas add it themselves).
inline constexpr char kUnknownActivityType[] = "unknown_activity_type";

struct ActivityTask {
  std::string workflow_id;
  std::uint64_t run_id = 0;
  std::uint64_t activity_id = 0;
  std::uint32_t attempt = 0;
  std::string activity_type;
  std::string input;
  std::string idempotency_key;  // the same for every attempt of this activity
};

struct ActivityOutcome {
  bool ok = false;
  std::string output;
  std::string error_type;  // matched against the retry policy's non-retryable types
  std::string error_message;
  // A failure's hint: do not try again before this many ms have passed (0 = no hint). The
  // activity's RetryPolicy.maximum_retry_after_ms bounds how much of it the engine honours.
  std::uint64_t retry_after_ms = 0;
  // Kept in the attempt's history event (at most kMaxAttemptDetailsBytes; longer details are
  // dropped, not truncated, since they are usually an encoded message).
  std::string details;
  // A failure that never reached the outside service (refused before dispatch, e.g. by an open
  // circuit breaker): ReportActivity.not_dispatched. The wait until the retry does not use up the
  // activity's schedule-to-close window, up to its ActivityOptions.maximum_refused_wait_ms.
  bool not_dispatched = false;
};

class ActivityHandler {
 public:
  virtual ~ActivityHandler() = default;
  // Runs one attempt and calls `done` exactly once; may call `heartbeat` meanwhile. Its side
  // effect must take effect at most once per task.idempotency_key, across attempts and leaders.
  virtual void run(const ActivityTask& task, std::function<void()> heartbeat,
                   std::function<void(ActivityOutcome)> done) = 0;
};

// Submits a workflow command to the replicated log (the caller stamps the time).
using ProposeFn = std::function<void(workflowpb::WorkflowCommand)>;

class Runtime {
 public:
  // `state` is the replica's applied state (borrowed); handlers by activity type (borrowed).
  // The Runtime must outlive every callback it has handed to a handler.
  Runtime(const storage::Reader* state, Engine* engine,
          std::map<std::string, ActivityHandler*, std::less<>> handlers, ProposeFn propose);

  // The replica gained (true) or lost (false) leadership.
  void on_leadership(bool leader);
  // After each applied batch: dispatch what became dispatchable (leader only).
  void after_apply();
  // Fires due timers, in due order, by the leader's clock, and proposes purging closed runs
  // whose retention has passed.
  void tick(std::int64_t now_ms);

 private:
  void dispatch_hint(const ActivityRef& ref);
  void start(const workflowpb::ActivityRecord& record);
  void heartbeat(std::uint64_t epoch, const std::string& key, const ActivityRef& ref);
  void finish(std::uint64_t epoch, const std::string& key, const ActivityRef& ref,
              ActivityOutcome outcome);
  void rescan_activities();
  void fire_due_timers(std::int64_t now_ms);
  void propose_due_purge(std::int64_t now_ms);

  const storage::Reader* state_;
  Engine* engine_;
  std::map<std::string, ActivityHandler*, std::less<>> handlers_;
  ProposeFn propose_;
  bool leader_ = false;
  std::uint64_t epoch_ = 0;        // bumped on every leadership change; stale callbacks are dropped
  std::set<std::string> running_;  // activity attempts in flight here
  // Proposed and not yet seen applied, with the time proposed (kResendAfterMs).
  std::map<std::string, std::int64_t> timers_sent_;   // FireTimer
  std::map<std::string, std::int64_t> reports_sent_;  // ReportActivity, by attempt key
  std::int64_t last_now_ms_ = 0;                      // the latest tick() time
  std::int64_t last_rescan_ms_ = 0;
  std::int64_t last_purge_check_ms_ = 0;
  std::string timer_cursor_;  // where the next due-timer scan continues (empty: from the start)
  std::int64_t last_timer_rescan_ms_ = 0;
  bool rescan_needed_ = false;  // a hint was skipped (in-flight bound, read error)
};

}  // namespace herald::workflow
