#include "workflow/runtime.h"

#include <fmt/format.h>

#include <utility>
#include <vector>

#include "base/assert.h"
#include "base/log.h"

namespace herald::workflow {

namespace {

// Dispatchable activities read per rescan. Engine::dispatchable_activities has no cursor, so a
// rescan reads the first page only; a page shorter than this is known to be complete. Activities
// beyond it are found by later rescans, as the ones before them finish.
constexpr std::size_t kActivityScanPageSize = 4096;

// "<workflow_id>/<run_id>/<activity_id>/<attempt>": one attempt of one activity. The numbers are
// read from the right, so a workflow id containing '/' cannot make two keys collide.
std::string attempt_key(std::string_view workflow_id, std::uint64_t run_id,
                        std::uint64_t activity_id, std::uint32_t attempt) {
  std::string key(workflow_id);
  key += '/' + std::to_string(run_id) + '/' + std::to_string(activity_id) + '/' +
         std::to_string(attempt);
  return key;
}

std::string attempt_key(const workflowpb::ActivityRecord& r) {
  return attempt_key(r.workflow_id(), r.run_id(), r.activity_id(), r.attempt());
}

// Names one timer's fire proposal.
std::string fire_key(std::int64_t due_ms, std::string_view workflow_id, std::uint64_t run_id,
                     std::uint64_t timer_id) {
  return fmt::format("{}/{}/{}/{}", due_ms, workflow_id, run_id, timer_id);
}

std::string timer_key(const workflowpb::TimerRecord& t) {
  return fire_key(t.due_ms(), t.workflow_id(), t.run_id(), t.timer_id());
}

// Forgets proposals older than kResendAfterMs: they were lost, so they may be proposed again.
void expire(std::map<std::string, std::int64_t>& sent, std::int64_t now_ms) {
  std::erase_if(sent,
                [now_ms](const auto& entry) { return now_ms - entry.second >= kResendAfterMs; });
}

// Forgets proposals whose subject a complete scan no longer lists: they were applied.
void forget_absent(std::map<std::string, std::int64_t>& sent, const std::set<std::string>& live) {
  std::erase_if(sent, [&live](const auto& entry) { return !live.contains(entry.first); });
}

}  // namespace

Runtime::Runtime(const storage::Reader* state, Engine* engine,
                 std::map<std::string, ActivityHandler*, std::less<>> handlers, ProposeFn propose)
    : state_(state), engine_(engine), handlers_(std::move(handlers)), propose_(std::move(propose)) {
  HERALD_ASSERT(state_ != nullptr && engine_ != nullptr, "the runtime needs state and engine");
  HERALD_ASSERT(propose_ != nullptr, "the runtime needs a propose function");
  for (const auto& [type, handler] : handlers_) {
    HERALD_ASSERT(handler != nullptr, "a registered activity handler is null");
  }
}

void Runtime::on_leadership(bool leader) {
  // Whatever the last epoch had in flight is forgotten: its callbacks are dropped, and the next
  // leader (maybe this replica again) runs those attempts again from the records.
  ++epoch_;
  leader_ = leader;
  running_.clear();
  timers_sent_.clear();
  reports_sent_.clear();
  rescan_needed_ = false;
  timer_cursor_.clear();
  last_timer_rescan_ms_ = last_now_ms_;
  if (!leader_) {
    return;
  }
  rescan_activities();
  fire_due_timers(last_now_ms_);
}

void Runtime::after_apply() {
  // Followers drain the hints too, so that they do not pile up; a new leader rescans instead.
  const std::vector<ActivityRef> refs = engine_->take_dispatchable();
  for (const AppliedFire& fire : engine_->take_applied_fires()) {
    timers_sent_.erase(fire_key(fire.due_ms, fire.workflow_id, fire.run_id, fire.timer_id));
  }
  if (!leader_) {
    return;
  }
  for (const auto& ref : refs) {
    dispatch_hint(ref);
  }
}

void Runtime::tick(std::int64_t now_ms) {
  last_now_ms_ = now_ms;
  if (!leader_) {
    return;
  }
  expire(timers_sent_, now_ms);
  expire(reports_sent_, now_ms);
  fire_due_timers(now_ms);
  const bool rescan_due = now_ms - last_rescan_ms_ >= kActivityRescanIntervalMs || rescan_needed_;
  if (rescan_due && running_.size() < kMaxActivitiesInFlight) {
    rescan_activities();
  }
  if (now_ms - last_purge_check_ms_ >= kPurgeCheckIntervalMs) {
    last_purge_check_ms_ = now_ms;
    propose_due_purge(now_ms);
  }
}

void Runtime::propose_due_purge(std::int64_t now_ms) {
  auto due = Engine::next_purge_due_ms(*state_);
  if (!due.ok()) {
    SPDLOG_WARN("workflow runtime: reading the purge queue failed: {}", due.status().to_string());
    return;
  }
  if (due->has_value() && **due <= now_ms) {
    workflowpb::WorkflowCommand command;
    command.mutable_purge_closed();
    propose_(std::move(command));
  }
}

void Runtime::dispatch_hint(const ActivityRef& ref) {
  const std::string key = attempt_key(ref.workflow_id, ref.run_id, ref.activity_id, ref.attempt);
  if (running_.contains(key) || reports_sent_.contains(key)) {
    return;
  }
  if (running_.size() >= kMaxActivitiesInFlight) {
    rescan_needed_ = true;  // a later tick finds it again
    return;
  }
  auto record = Engine::read_activity(*state_, ref);
  if (!record.ok()) {
    SPDLOG_WARN("workflow runtime: reading activity {} failed: {}", key,
                record.status().to_string());
    rescan_needed_ = true;
    return;
  }
  // Gone (already reported) or moved on to another attempt or phase: nothing to run.
  if (record->has_value() && (*record)->attempt() == ref.attempt &&
      (*record)->phase() == workflowpb::DISPATCHABLE) {
    start(**record);
  }
}

void Runtime::start(const workflowpb::ActivityRecord& record) {
  HERALD_ASSERT(leader_, "only the leader runs activities");
  HERALD_ASSERT(running_.size() < kMaxActivitiesInFlight, "in-flight activities over the bound");
  const std::string key = attempt_key(record);
  const ActivityRef ref{record.workflow_id(), record.run_id(), record.activity_id(),
                        record.attempt()};
  const bool inserted = running_.insert(key).second;
  HERALD_ASSERT(inserted, "an activity attempt started twice in one epoch");
  const auto handler = handlers_.find(record.activity_type());
  if (handler == handlers_.end()) {
    finish(epoch_, key, ref,
           ActivityOutcome{false,
                           {},
                           kUnknownActivityType,
                           "no handler for activity type '" + record.activity_type() + "'",
                           0,
                           {},
                           false});
    return;
  }
  const ActivityTask task{record.workflow_id(),    record.run_id(),        record.activity_id(),
                          record.attempt(),        record.activity_type(), record.input(),
                          record.idempotency_key()};
  const std::uint64_t epoch = epoch_;
  handler->second->run(
      task, [this, epoch, key, ref] { heartbeat(epoch, key, ref); },
      [this, epoch, key, ref](ActivityOutcome outcome) {
        finish(epoch, key, ref, std::move(outcome));
      });
}

void Runtime::heartbeat(std::uint64_t epoch, const std::string& key, const ActivityRef& ref) {
  if (epoch != epoch_ || !running_.contains(key)) {
    return;  // from an earlier epoch, or after the attempt finished
  }
  workflowpb::WorkflowCommand command;
  auto* hb = command.mutable_heartbeat();
  hb->set_workflow_id(ref.workflow_id);
  hb->set_run_id(ref.run_id);
  hb->set_activity_id(ref.activity_id);
  hb->set_attempt(ref.attempt);
  propose_(std::move(command));
}

void Runtime::finish(std::uint64_t epoch, const std::string& key, const ActivityRef& ref,
                     ActivityOutcome outcome) {
  if (epoch != epoch_ || running_.erase(key) == 0) {
    return;  // a stale epoch's outcome is lost on purpose; the attempt runs again
  }
  reports_sent_[key] = last_now_ms_;
  workflowpb::WorkflowCommand command;
  auto* report = command.mutable_report();
  report->set_workflow_id(ref.workflow_id);
  report->set_run_id(ref.run_id);
  report->set_activity_id(ref.activity_id);
  report->set_attempt(ref.attempt);
  report->set_ok(outcome.ok);
  report->set_output(std::move(outcome.output));
  report->set_error_type(std::move(outcome.error_type));
  report->set_error_message(std::move(outcome.error_message));
  report->set_retry_after_ms(outcome.retry_after_ms);
  report->set_not_dispatched(outcome.not_dispatched);
  if (outcome.details.size() <= kMaxAttemptDetailsBytes) {
    report->set_details(std::move(outcome.details));
  }
  propose_(std::move(command));
}

void Runtime::rescan_activities() {
  last_rescan_ms_ = last_now_ms_;
  rescan_needed_ = false;
  auto records = Engine::dispatchable_activities(*state_, kActivityScanPageSize);
  if (!records.ok()) {
    SPDLOG_WARN("workflow runtime: scanning dispatchable activities failed: {}",
                records.status().to_string());
    rescan_needed_ = true;
    return;
  }
  std::set<std::string> live;
  for (const auto& record : *records) {
    const std::string key = attempt_key(record);
    live.insert(key);
    if (running_.contains(key) || reports_sent_.contains(key)) {
      continue;
    }
    if (running_.size() >= kMaxActivitiesInFlight) {
      rescan_needed_ = true;
      break;
    }
    start(record);
  }
  if (records->size() < kActivityScanPageSize && !rescan_needed_) {
    forget_absent(reports_sent_, live);  // the scan was complete: absent reports were applied
  }
}

void Runtime::fire_due_timers(std::int64_t now_ms) {
  // The scan continues from where the last one stopped, so timers whose fires are in flight
  // (they stay in the index until applied) are not read again each tick. It starts over from
  // the first due timer once per kTimerRescanIntervalMs, which finds any timer due earlier than
  // the cursor (one created already due) and re-proposes lost fires once they expire.
  if (now_ms - last_timer_rescan_ms_ >= kTimerRescanIntervalMs) {
    timer_cursor_.clear();
    last_timer_rescan_ms_ = now_ms;
  }
  const std::size_t in_flight = timers_sent_.size();
  if (in_flight >= kMaxTimerFiresInFlight) {
    return;
  }
  const std::size_t budget = std::min(kMaxTimersPerTick, kMaxTimerFiresInFlight - in_flight);
  // From the start, fires in flight are listed again: read past them.
  const std::size_t limit = budget + (timer_cursor_.empty() ? in_flight : 0);
  auto page = Engine::due_timers_after(*state_, now_ms, timer_cursor_, limit);
  if (!page.ok()) {
    SPDLOG_WARN("workflow runtime: scanning due timers failed: {}", page.status().to_string());
    return;
  }
  timer_cursor_ = std::move(page->next_cursor);
  // Due timers leave in batches of up to kMaxTimersPerFireCommand, in due order: a backlog
  // costs one log entry per batch.
  workflowpb::WorkflowCommand command;
  for (const auto& timer : page->timers) {
    if (!timers_sent_.emplace(timer_key(timer), now_ms).second) {
      continue;  // proposed already and not applied yet
    }
    auto* fire = command.mutable_fire_timers()->add_timers();
    fire->set_workflow_id(timer.workflow_id());
    fire->set_run_id(timer.run_id());
    fire->set_timer_id(timer.timer_id());
    fire->set_due_ms(timer.due_ms());
    if (static_cast<std::size_t>(command.fire_timers().timers_size()) == kMaxTimersPerFireCommand) {
      propose_(std::exchange(command, {}));
    }
  }
  if (command.has_fire_timers()) {
    propose_(std::move(command));
  }
}

}  // namespace herald::workflow
