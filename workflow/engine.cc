#include "workflow/engine.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <limits>
#include <utility>

#include "workflow/keys.h"
#include "workflow/retry.h"

namespace herald::workflow {

namespace {

using workflowpb::ActivityRecord;
using workflowpb::HistoryChunk;
using workflowpb::HistoryEvent;
using workflowpb::PurgeEntry;
using workflowpb::PurgeQueue;
using workflowpb::TimerRecord;
using workflowpb::TimerRef;
using workflowpb::WorkflowRecord;
using workflowpb::WorkflowSummary;

// Bounds of the engine beyond those in engine.h (docs/workflow.md, "Bounds").
constexpr std::size_t kMaxNameBytes = 256;  // types, states, signal names, tags, record names
constexpr std::size_t kMaxErrorMessageBytes = 4096;  // longer messages are truncated
constexpr std::size_t kMaxOpenActivitiesPerRun = 1000;
constexpr std::size_t kMaxUserTimersPerRun = 1000;
constexpr std::int64_t kMaxDelayMs = static_cast<std::int64_t>(kMaxRetryIntervalMs);
constexpr int kMaxRunsPerCommand = 8;  // continue-as-new chains within one command
constexpr std::size_t kMaxReadLimit = 10'000;

// Engine-chosen error types.
constexpr char kHistoryLimitError[] = "history_limit";
constexpr char kInvalidDecisionError[] = "invalid_decision";
constexpr char kStartToCloseError[] = "timeout.start_to_close";
constexpr char kHeartbeatError[] = "timeout.heartbeat";
constexpr char kScheduleToCloseError[] = "timeout.schedule_to_close";

rsmpb::CommandResult error_result(const Status& status) {
  rsmpb::CommandResult r;
  r.set_code(static_cast<std::uint32_t>(status.code()));
  r.set_message(status.message());
  return r;
}

rsmpb::CommandResult record_result(const WorkflowRecord& record, bool existed) {
  rsmpb::CommandResult r;
  r.set_existed(existed);
  r.set_payload(record.SerializeAsString());
  return r;
}

// Strict UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF), as protobuf checks
// it: every string that goes into a proto `string` field must pass, or the stored record would
// not decode again.
bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80U) {
      ++i;
      continue;
    }
    std::size_t extra = 0;
    unsigned lo = 0x80U;  // the bounds of the second byte
    unsigned hi = 0xBFU;
    if (b >= 0xC2U && b <= 0xDFU) {
      extra = 1;
    } else if (b >= 0xE0U && b <= 0xEFU) {
      extra = 2;
      lo = b == 0xE0U ? 0xA0U : lo;
      hi = b == 0xEDU ? 0x9FU : hi;
    } else if (b >= 0xF0U && b <= 0xF4U) {
      extra = 3;
      lo = b == 0xF0U ? 0x90U : lo;
      hi = b == 0xF4U ? 0x8FU : hi;
    } else {
      return false;
    }
    if (i + extra >= s.size()) {
      return false;
    }
    for (std::size_t k = 1; k <= extra; ++k) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      if (c < (k == 1 ? lo : 0x80U) || c > (k == 1 ? hi : 0xBFU)) {
        return false;
      }
    }
    i += extra + 1;
  }
  return true;
}

Status check_name(std::string_view what, std::string_view value, bool allow_empty = false) {
  if ((value.empty() && !allow_empty) || value.size() > kMaxNameBytes) {
    return Status::invalid_argument(
        fmt::format("{} must have {} to {} bytes", what, allow_empty ? 0 : 1, kMaxNameBytes));
  }
  if (!valid_utf8(value)) {
    return Status::invalid_argument(fmt::format("{} is not valid UTF-8", what));
  }
  return Status::ok_status();
}

Status check_payload(std::string_view what, std::string_view value) {
  if (value.size() > kMaxPayloadBytes) {
    return Status::invalid_argument(
        fmt::format("{} is {} bytes; the bound is {}", what, value.size(), kMaxPayloadBytes));
  }
  return Status::ok_status();
}

Status check_workflow_id(std::string_view id) {
  if (id.empty() || id.size() > kMaxWorkflowIdBytes) {
    return Status::invalid_argument(
        fmt::format("a workflow id must have 1 to {} bytes", kMaxWorkflowIdBytes));
  }
  return Status::ok_status();
}

// Cuts `message` to kMaxErrorMessageBytes at a UTF-8 character boundary.
std::string bounded_message(std::string_view message) {
  if (message.size() <= kMaxErrorMessageBytes) {
    return std::string(message);
  }
  std::size_t end = kMaxErrorMessageBytes;
  while (end > 0 && (static_cast<unsigned char>(message[end]) >> 6U) == 0x2U) {
    --end;
  }
  return std::string(message.substr(0, end));
}

Status check_delay(std::string_view what, std::int64_t delay_ms) {
  if (delay_ms < 0 || delay_ms > kMaxDelayMs) {
    return Status::invalid_argument(
        fmt::format("{} of {} ms is outside [0, {}] ms", what, delay_ms, kMaxDelayMs));
  }
  return Status::ok_status();
}

Status check_activity_options(const workflowpb::ActivityOptions& options) {
  HERALD_RETURN_IF_ERROR(normalize_retry_policy(options.retry()).status());
  for (const std::uint64_t timeout_ms :
       {options.schedule_to_close_timeout_ms(), options.start_to_close_timeout_ms(),
        options.heartbeat_timeout_ms(), options.maximum_refused_wait_ms()}) {
    if (timeout_ms > static_cast<std::uint64_t>(kMaxDelayMs)) {
      return Status::invalid_argument(fmt::format(
          "an activity timeout of {} ms exceeds the bound {} ms", timeout_ms, kMaxDelayMs));
    }
  }
  return Status::ok_status();
}

bool is_closing(Action::Kind kind) {
  return kind == Action::Kind::kComplete || kind == Action::Kind::kFail ||
         kind == Action::Kind::kContinueAsNew;
}

Status check_action(const Action& a) {
  HERALD_RETURN_IF_ERROR(check_payload("an action's payload", a.payload));
  switch (a.kind) {
    case Action::Kind::kScheduleActivity:
      HERALD_RETURN_IF_ERROR(check_name("an activity type", a.activity_type));
      HERALD_RETURN_IF_ERROR(check_name("an activity tag", a.tag, /*allow_empty=*/true));
      return check_activity_options(a.options);
    case Action::Kind::kStartTimer:
      HERALD_RETURN_IF_ERROR(check_name("a timer tag", a.tag));
      return check_delay("a timer delay", a.delay_ms);
    case Action::Kind::kCancelTimer: return check_name("a timer tag", a.tag);
    case Action::Kind::kRecord: return check_name("a record name", a.name);
    case Action::Kind::kFail:
      HERALD_RETURN_IF_ERROR(check_name("an error type", a.error_type));
      return valid_utf8(a.error_message)
                 ? Status::ok_status()
                 : Status::invalid_argument("an error message is not valid UTF-8");
    case Action::Kind::kComplete:
    case Action::Kind::kContinueAsNew: return Status::ok_status();
  }
  return Status::invalid_argument("unknown action kind");
}

HistoryEvent make_event(std::string_view kind, std::string_view name = {},
                        std::string_view payload = {}) {
  HistoryEvent e;
  e.set_kind(std::string(kind));
  e.set_name(std::string(name));
  e.set_payload(std::string(payload));
  return e;
}

// An event for the workflow type; the engine stamps its time when it delivers it.
Event type_event(Event::Kind kind, std::string name = {}, std::string tag = {},
                 std::string payload = {}) {
  Event event;
  event.kind = kind;
  event.name = std::move(name);
  event.tag = std::move(tag);
  event.payload = std::move(payload);
  return event;
}

// The events that tell one attempt's outcome.
bool is_attempt_event(std::string_view kind) {
  return kind == "activity_completed" || kind == "activity_retry_scheduled" ||
         kind == "activity_failed";
}

HistoryEvent activity_event(std::string_view kind, const ActivityRecord& act) {
  HistoryEvent e = make_event(kind, act.activity_type());
  e.set_activity_id(act.activity_id());
  e.set_attempt(act.attempt());
  return e;
}

void erase_timer(google::protobuf::RepeatedPtrField<TimerRef>& timers, std::uint64_t timer_id) {
  const auto it = std::find_if(timers.begin(), timers.end(),
                               [&](const TimerRef& t) { return t.timer_id() == timer_id; });
  if (it != timers.end()) {
    timers.erase(it);
  }
}

// ---------------------------------------------------------------- history

// Decodes the history chunk stored under `key`: at least one event, consecutive seqs, the last
// one named by the key (docs/workflow.md, "Key layout"). kCorruption otherwise.
Result<HistoryChunk> open_chunk(std::string_view key, std::string_view value) {
  HERALD_ASSIGN_OR_RETURN(HistoryChunk chunk, keys::open<HistoryChunk>(value, "history"));
  const auto& events = chunk.events();
  if (events.empty() || key.size() < sizeof(std::uint64_t) ||
      events.rbegin()->seq() != get_fixed64_be(key.substr(key.size() - sizeof(std::uint64_t)))) {
    return Status::corruption("history chunk does not hold the events its key names");
  }
  for (int i = 1; i < events.size(); ++i) {
    if (events[i].seq() != events[i - 1].seq() + 1) {
      return Status::corruption("history chunk's events are not consecutive");
    }
  }
  return chunk;
}

// ---------------------------------------------------------------- retention

template <typename Message>
Result<std::optional<Message>> load(const rsm::ApplyBatch& batch, const std::string& key,
                                    std::string_view what) {
  HERALD_ASSIGN_OR_RETURN(auto raw, batch.get(storage::Space::kState, key));
  return keys::open_optional<Message>(raw, what);
}

std::int64_t closed_retention_ms(const workflowpb::RetentionSettings& settings) {
  return settings.closed_retention_ms() > 0 ? settings.closed_retention_ms()
                                            : kDefaultClosedRetentionMs;
}

// Engine events too frequent to keep in a purged workflow's summary; every other kind (started,
// state changes, final activity failures, cancel requests, closing and recorded events) is a
// milestone.
bool is_milestone(std::string_view kind) {
  static constexpr std::string_view kRoutine[] = {
      "signaled",      "activity_scheduled", "activity_completed", "activity_retry_scheduled",
      "timer_started", "timer_fired",        "timer_canceled"};
  return std::find(std::begin(kRoutine), std::end(kRoutine), kind) == std::end(kRoutine);
}

// Puts the run `rec` has just closed at the tail of the purge queue.
Status enqueue_purge(rsm::ApplyBatch& batch, const WorkflowRecord& rec, std::int64_t now_ms) {
  HERALD_ASSIGN_OR_RETURN(auto stored,
                          load<PurgeQueue>(batch, keys::purge_queue_key(), "purge queue"));
  PurgeQueue queue = stored.value_or(PurgeQueue());
  PurgeEntry entry;
  entry.set_workflow_id(rec.workflow_id());
  entry.set_run_id(rec.run_id());
  entry.set_closed_ms(now_ms);
  entry.set_history_length(rec.history_length());
  batch.put(storage::Space::kState, keys::purge_entry_key(queue.tail()), keys::seal(entry));
  queue.set_tail(queue.tail() + 1);
  batch.put(storage::Space::kState, keys::purge_queue_key(), keys::seal(queue));
  return Status::ok_status();
}

// Keeps `event` in `summary` when it is a milestone, while there is room.
void keep_milestone(const HistoryEvent& event, WorkflowSummary& summary) {
  if (!is_milestone(event.kind())) {
    return;
  }
  if (static_cast<std::size_t>(summary.milestones_size()) >= kMaxSummaryMilestones) {
    summary.set_milestones_truncated(true);
    return;
  }
  HistoryEvent* kept = summary.add_milestones();
  kept->set_seq(event.seq());
  kept->set_time_ms(event.time_ms());
  kept->set_kind(event.kind());
  kept->set_name(event.name());
  kept->set_error_type(event.error_type());
}

// Deletes up to `budget` history chunks of `entry`'s run, oldest first, keeping the milestones in
// `summary` when it is given. Each chunk is found by a one-key scan from the next event to purge.
Status purge_history(rsm::ApplyBatch& batch, PurgeEntry& entry, WorkflowSummary* summary,
                     std::size_t& budget) {
  const std::string end =
      keys::prefix_end(keys::run_prefix(keys::kHistorySub, entry.workflow_id(), entry.run_id()));
  while (entry.purged_up_to() < entry.history_length() && budget > 0) {
    const std::uint64_t next = entry.purged_up_to() + 1;
    HERALD_ASSIGN_OR_RETURN(
        auto found,
        batch.scan(storage::Space::kState,
                   keys::history_key(entry.workflow_id(), entry.run_id(), next), end, 1));
    if (found.empty()) {
      return Status::corruption(
          fmt::format("history of workflow \"{}\" run {} ends before event {}", entry.workflow_id(),
                      entry.run_id(), next));
    }
    HERALD_ASSIGN_OR_RETURN(HistoryChunk chunk, open_chunk(found.front().key, found.front().value));
    if (chunk.events(0).seq() != next) {
      return Status::corruption(fmt::format("history of workflow \"{}\" run {} lacks event {}",
                                            entry.workflow_id(), entry.run_id(), next));
    }
    if (summary != nullptr) {
      for (const HistoryEvent& event : chunk.events()) keep_milestone(event, *summary);
    }
    batch.del(storage::Space::kState, found.front().key);
    entry.set_purged_up_to(chunk.events().rbegin()->seq());
    --budget;
  }
  return Status::ok_status();
}

// The first step of purging a workflow's latest run: its record and visibility entry go at once
// and its summary takes their place (milestones follow as the history is deleted).
Status summarize(rsm::ApplyBatch& batch, const WorkflowRecord& record, PurgeEntry& entry) {
  if (record.status() == workflowpb::RUNNING) {
    return Status::corruption(
        fmt::format("workflow \"{}\" is queued for purging while running", entry.workflow_id()));
  }
  WorkflowSummary summary;
  summary.set_workflow_id(record.workflow_id());
  summary.set_type(record.type());
  summary.set_run_id(record.run_id());
  summary.set_status(record.status());
  summary.set_state(record.state());
  summary.set_created_ms(record.created_ms());
  summary.set_closed_ms(entry.closed_ms());
  summary.set_error_type(record.error_type());
  summary.set_history_length(record.history_length());
  batch.del(storage::Space::kState, keys::record_key(record.workflow_id()));
  batch.del(storage::Space::kState,
            keys::visibility_key(record.type(), record.state(), record.state_since_ms(),
                                 record.workflow_id()));
  batch.put(storage::Space::kState, keys::summary_key(record.workflow_id()), keys::seal(summary));
  entry.set_summarized(true);
  return Status::ok_status();
}

// The purged runs kept for their summaries, [summary_head, head), oldest first: once
// `retention`'s summary window has passed since a run's purge (its close plus both windows), its
// summary is deleted when it is still that run's, and so is its entry; at most
// kMaxSummaryExpiriesPerCommand of them. Without a summary window (it was turned off), the kept
// entries are dropped and their summaries stay.
Status expire_summaries(rsm::ApplyBatch& batch, const workflowpb::RetentionSettings& retention,
                        std::int64_t now_ms, PurgeQueue& queue) {
  if (!queue.has_summary_head()) {
    return Status::ok_status();
  }
  const std::int64_t summary_ms = retention.summary_retention_ms();
  const std::int64_t horizon_ms = now_ms - closed_retention_ms(retention) - summary_ms;
  for (std::size_t n = 0; n < kMaxSummaryExpiriesPerCommand && queue.summary_head() < queue.head();
       ++n) {
    const std::string entry_key = keys::purge_entry_key(queue.summary_head());
    HERALD_ASSIGN_OR_RETURN(auto entry, load<PurgeEntry>(batch, entry_key, "purge entry"));
    if (!entry) {
      return Status::corruption(
          fmt::format("kept purge queue entry {} is missing", queue.summary_head()));
    }
    if (summary_ms > 0 && entry->closed_ms() > horizon_ms) {
      break;
    }
    if (summary_ms > 0) {
      const std::string key = keys::summary_key(entry->workflow_id());
      HERALD_ASSIGN_OR_RETURN(auto summary, load<WorkflowSummary>(batch, key, "workflow summary"));
      if (summary && summary->run_id() == entry->run_id()) batch.del(storage::Space::kState, key);
    }
    batch.del(storage::Space::kState, entry_key);
    queue.set_summary_head(queue.summary_head() + 1);
  }
  if (queue.summary_head() == queue.head()) queue.clear_summary_head();
  return Status::ok_status();
}

// Purges the closed runs at the head of the queue whose retention has passed by `now_ms`, deleting
// at most kMaxPurgedHistoryChunksPerCommand history chunks. A run that is its workflow's latest
// loses its record and visibility entry and leaves a WorkflowSummary; an older run (the workflow
// continued as new) loses its history only. A run purged in part carries on in the next command.
Status purge_due(rsm::ApplyBatch& batch, std::int64_t now_ms) {
  HERALD_ASSIGN_OR_RETURN(auto stored_queue,
                          load<PurgeQueue>(batch, keys::purge_queue_key(), "purge queue"));
  if (!stored_queue ||
      (stored_queue->head() == stored_queue->tail() && !stored_queue->has_summary_head())) {
    return Status::ok_status();
  }
  PurgeQueue queue = *stored_queue;
  HERALD_ASSIGN_OR_RETURN(auto settings, load<workflowpb::RetentionSettings>(
                                             batch, keys::settings_key(), "retention settings"));
  const workflowpb::RetentionSettings retention =
      settings.value_or(workflowpb::RetentionSettings());
  const bool keep_summaries = retention.summary_retention_ms() > 0;
  const std::int64_t horizon_ms = now_ms - closed_retention_ms(retention);
  std::size_t budget = kMaxPurgedHistoryChunksPerCommand;
  while (queue.head() < queue.tail() && budget > 0) {
    const std::string entry_key = keys::purge_entry_key(queue.head());
    HERALD_ASSIGN_OR_RETURN(auto stored, load<PurgeEntry>(batch, entry_key, "purge entry"));
    if (!stored) {
      return Status::corruption(fmt::format("purge queue entry {} is missing", queue.head()));
    }
    PurgeEntry entry = std::move(*stored);
    if (entry.closed_ms() > horizon_ms) {
      break;
    }
    if (entry.purged_up_to() == 0 && !entry.summarized()) {
      HERALD_ASSIGN_OR_RETURN(
          auto record,
          load<WorkflowRecord>(batch, keys::record_key(entry.workflow_id()), "workflow"));
      if (record && record->run_id() == entry.run_id()) {
        HERALD_RETURN_IF_ERROR(summarize(batch, *record, entry));
      }
    }
    // The summary collects the run's milestones while it is still this run's.
    std::optional<WorkflowSummary> summary;
    if (entry.summarized()) {
      HERALD_ASSIGN_OR_RETURN(
          summary,
          load<WorkflowSummary>(batch, keys::summary_key(entry.workflow_id()), "workflow summary"));
      if (summary && summary->run_id() != entry.run_id()) summary.reset();
    }
    HERALD_RETURN_IF_ERROR(purge_history(batch, entry, summary ? &*summary : nullptr, budget));
    if (summary) {
      batch.put(storage::Space::kState, keys::summary_key(entry.workflow_id()),
                keys::seal(*summary));
    }
    if (entry.purged_up_to() < entry.history_length()) {
      batch.put(storage::Space::kState, entry_key, keys::seal(entry));
      break;
    }
    if (keep_summaries || queue.has_summary_head()) {
      // The entry stays, as it is stored, until its summary expires (expire_summaries); kept
      // entries stay contiguous, so one kept while the window is off is dropped there.
      if (!queue.has_summary_head()) queue.set_summary_head(queue.head());
    } else {
      batch.del(storage::Space::kState, entry_key);
    }
    queue.set_head(queue.head() + 1);
  }
  HERALD_RETURN_IF_ERROR(expire_summaries(batch, retention, now_ms, queue));
  batch.put(storage::Space::kState, keys::purge_queue_key(), keys::seal(queue));
  return Status::ok_status();
}

Result<rsmpb::CommandResult> set_retention(rsm::ApplyBatch& batch,
                                           const workflowpb::SetRetention& op) {
  const std::int64_t ms = op.settings().closed_retention_ms();
  if (ms != 0 && (ms < kMinClosedRetentionMs || ms > kMaxClosedRetentionMs)) {
    return Status::invalid_argument(
        fmt::format("closed_retention_ms = {} is outside [{}, {}] ms (0: default)", ms,
                    kMinClosedRetentionMs, kMaxClosedRetentionMs));
  }
  const std::int64_t summary_ms = op.settings().summary_retention_ms();
  if (summary_ms != 0 &&
      (summary_ms < kMinClosedRetentionMs || summary_ms > kMaxSummaryRetentionMs)) {
    return Status::invalid_argument(
        fmt::format("summary_retention_ms = {} is outside [{}, {}] ms (0: kept forever)",
                    summary_ms, kMinClosedRetentionMs, kMaxSummaryRetentionMs));
  }
  batch.put(storage::Space::kState, keys::settings_key(), keys::seal(op.settings()));
  return rsmpb::CommandResult();
}

// One command's application: the run it touches, loaded once, changed in memory, and written
// back (record and visibility entry together) by save_run(). Not reused across commands.
class Applier {
 public:
  Applier(rsm::ApplyBatch& batch, const Registry& registry, std::int64_t now_ms,
          std::vector<ActivityRef>& dispatchable, std::size_t& closed_runs,
          std::vector<StateEntered>& entered, const TransitionObserver* observer = nullptr,
          std::vector<Transition>* transitions = nullptr)
      : batch_(batch),
        registry_(registry),
        now_ms_(now_ms),
        dispatchable_(dispatchable),
        closed_runs_(closed_runs),
        entered_(entered),
        observer_(observer),
        transitions_(transitions) {}

  Result<rsmpb::CommandResult> start(const workflowpb::StartWorkflow& op);
  Result<rsmpb::CommandResult> signal(const workflowpb::SignalWorkflow& op);
  Result<rsmpb::CommandResult> cancel(const workflowpb::CancelWorkflow& op);
  Result<rsmpb::CommandResult> report(const workflowpb::ReportActivity& op);
  Result<rsmpb::CommandResult> heartbeat(const workflowpb::HeartbeatActivity& op);
  Result<rsmpb::CommandResult> operator_action(const workflowpb::OperatorAction& op);
  // `fired` (optional) is set when the timer existed and fired.
  Result<rsmpb::CommandResult> fire_timer(const workflowpb::FireTimer& op, bool* fired = nullptr);

 private:
  // ---- The run ----
  Result<bool> load_run(std::string_view workflow_id);
  Status require_type();
  Status save_run();
  [[nodiscard]] bool running() const { return rec_.status() == workflowpb::RUNNING; }
  void begin_run(const std::string& input);
  Status close_run(workflowpb::WorkflowStatus status, HistoryEvent event);
  Status close_failed(std::string_view error_type, std::string_view message);
  void append(HistoryEvent event, bool closing = false);
  // Writes the events appended since the last flush as one history chunk of the current run.
  void flush_history();

  // ---- Decisions ----
  Status decide(Event event, bool* acted = nullptr);
  Status check_decision(const Decision& d) const;
  Status apply_decision(Decision d, bool* acted);
  Status apply_action(const Action& a);
  void schedule_activity(const Action& a);
  void start_user_timer(const Action& a);
  void cancel_user_timer(std::string_view tag, bool record);

  // ---- Timers and activities ----
  TimerRef put_timer(workflowpb::TimerKind kind, std::int64_t due_ms, std::string_view tag,
                     std::uint64_t activity_id, std::uint32_t attempt);
  // The stored timer of `ref`, owned by the loaded run.
  [[nodiscard]] TimerRecord timer_record(const TimerRef& ref, std::uint64_t activity_id,
                                         std::uint32_t attempt) const;
  void write_timer(const TimerRef& ref, std::uint64_t activity_id, std::uint32_t attempt);
  void del_timer(const TimerRef& ref);
  Result<std::optional<ActivityRecord>> load_activity(std::uint64_t run_id,
                                                      std::uint64_t activity_id);
  Result<std::optional<ActivityRecord>> load_current_attempt(std::string_view workflow_id,
                                                             std::uint64_t run_id,
                                                             std::uint64_t activity_id,
                                                             std::uint32_t attempt);
  void put_activity(const ActivityRecord& act);
  void drop_activity(const ActivityRecord& act);
  void arm_attempt(ActivityRecord& act);
  void disarm_attempt(ActivityRecord& act);
  Status complete_activity(const ActivityRecord& act, std::string_view output,
                           std::string_view details = {});
  // `retry_after_ms`, `details` and `not_dispatched` come from the attempt's report (none for a
  // timeout).
  Status fail_attempt(ActivityRecord act, std::string_view error_type, std::string_view message,
                      std::uint64_t retry_after_ms = 0, std::string_view details = {},
                      bool not_dispatched = false);
  // Pushes the schedule-to-close deadline of `act` back by the span of an attempt that never
  // reached the service (from its start to `retry_due_ms`), as far as its options allow.
  void extend_for_refusal(ActivityRecord& act, std::int64_t retry_due_ms);
  Status fail_activity(const ActivityRecord& act, std::string_view error_type,
                       std::string_view message, std::string_view details = {});
  Status fire_activity_timer(const TimerRecord& timer);
  Status check_backoff();
  Status retry_now();
  Status fire_user_timer_now(std::string_view tag);

  rsm::ApplyBatch& batch_;
  const Registry& registry_;
  const std::int64_t now_ms_;
  std::vector<ActivityRef>& dispatchable_;
  std::size_t& closed_runs_;
  std::vector<StateEntered>& entered_;
  const TransitionObserver* observer_;    // may be null
  std::vector<Transition>* transitions_;  // for observer_, when it observes the run's type
  std::vector<std::pair<std::string, std::string>> records_;  // Action::record since the save
  std::string named_state_;  // the run's named state as last loaded or saved, for transitions_
  std::optional<std::string> saved_state_;  // the state label as last loaded or saved
  // The report being applied: its attempt events name the node and term that ran the attempt.
  const workflowpb::ReportActivity* report_ = nullptr;

  // The run's state for the metrics (StateEntered::state).
  [[nodiscard]] std::string state_label() const;

  WorkflowRecord rec_;
  const WorkflowType* type_ = nullptr;
  // What the run's visibility entry indexes, as loaded or last saved (nullopt: no entry yet).
  struct Indexed {
    std::uint64_t run_id = 0;
    workflowpb::WorkflowStatus status = workflowpb::RUNNING;
    std::string state;
    std::string key;
  };
  std::optional<Indexed> indexed_;
  void save_visibility();
  bool history_full_ = false;  // an event of this run did not fit: the run fails on save
  std::optional<std::string> continue_input_;
  int runs_begun_ = 0;
  HistoryChunk unflushed_;  // events of the current run appended by this command, not yet staged
};

// ---------------------------------------------------------------- the run

Result<bool> Applier::load_run(std::string_view workflow_id) {
  HERALD_ASSIGN_OR_RETURN(auto raw,
                          batch_.get(storage::Space::kState, keys::record_key(workflow_id)));
  HERALD_ASSIGN_OR_RETURN(auto record, keys::open_optional<WorkflowRecord>(raw, "workflow"));
  if (!record) {
    return false;
  }
  if (record->workflow_id() != workflow_id) {
    return Status::corruption("workflow record is stored under another id");
  }
  rec_ = std::move(*record);
  saved_state_ = state_label();
  named_state_ = rec_.state();
  indexed_ = Indexed{
      rec_.run_id(), rec_.status(), rec_.state(),
      keys::visibility_key(rec_.type(), rec_.state(), rec_.state_since_ms(), rec_.workflow_id())};
  return true;
}

Status Applier::require_type() {
  type_ = registry_.find(rec_.type());
  if (type_ == nullptr) {
    return Status::failed_precondition(
        fmt::format("workflow type \"{}\" is not registered on this replica", rec_.type()));
  }
  return Status::ok_status();
}

Status Applier::save_run() {
  if (history_full_ && running()) {
    HERALD_RETURN_IF_ERROR(
        close_failed(kHistoryLimitError,
                     fmt::format("the run reached {} history events; carry on in a fresh run with "
                                 "continue-as-new",
                                 kMaxHistoryEvents)));
  }
  HERALD_ASSERT(rec_.history_length() <= kMaxHistoryEvents, "history is bounded");
  flush_history();
  rec_.set_updated_ms(now_ms_);
  save_visibility();
  batch_.put(storage::Space::kState, keys::record_key(rec_.workflow_id()), keys::seal(rec_));
  std::string label = state_label();
  const bool moved = label != saved_state_;
  const bool entered = rec_.state() != named_state_;
  if (observer_ != nullptr && transitions_ != nullptr && (entered || !records_.empty()) &&
      observer_->observes(rec_.type())) {
    transitions_->push_back(Transition{rec_.type(), rec_.workflow_id(), rec_.run_id(),
                                       entered ? rec_.state() : std::string(), std::move(records_),
                                       rec_.data()});
  }
  records_.clear();
  named_state_ = rec_.state();
  if (moved) {
    entered_.push_back(StateEntered{rec_.type(), label});
    saved_state_ = std::move(label);
  }
  return Status::ok_status();
}

// The visibility entry moves only when what it indexes changes — the run, its status or its state
// — not on every transition: its key carries the time of that change (state_since_ms), which the
// record keeps so that the next change finds the entry to delete.
void Applier::save_visibility() {
  if (indexed_ && indexed_->run_id == rec_.run_id() && indexed_->status == rec_.status() &&
      indexed_->state == rec_.state()) {
    return;
  }
  rec_.set_state_since_ms(now_ms_);
  std::string key =
      keys::visibility_key(rec_.type(), rec_.state(), rec_.state_since_ms(), rec_.workflow_id());
  if (indexed_ && indexed_->key != key) {
    batch_.del(storage::Space::kState, indexed_->key);
  }
  WorkflowRecord summary;
  summary.set_workflow_id(rec_.workflow_id());
  summary.set_type(rec_.type());
  summary.set_status(rec_.status());
  summary.set_state(rec_.state());
  summary.set_state_since_ms(rec_.state_since_ms());
  batch_.put(storage::Space::kState, key, keys::seal(summary));
  indexed_ = Indexed{rec_.run_id(), rec_.status(), rec_.state(), std::move(key)};
}

std::string Applier::state_label() const {
  if (running()) return rec_.state();
  std::string status = workflowpb::WorkflowStatus_Name(rec_.status());
  std::transform(status.begin(), status.end(), status.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return status;
}

// Resets the record to a fresh run (run_id + 1) and records its "started" event.
void Applier::begin_run(const std::string& input) {
  HERALD_ASSERT(type_ != nullptr, "a run needs its type");
  flush_history();  // the closing events of the run before, under its own run id
  rec_.set_run_id(rec_.run_id() + 1);
  rec_.set_status(workflowpb::RUNNING);
  rec_.set_state(std::string(type_->initial_state()));
  rec_.clear_data();
  rec_.clear_result();
  rec_.clear_error_type();
  rec_.clear_error_message();
  rec_.set_created_ms(now_ms_);
  rec_.set_history_length(0);
  rec_.set_next_activity_id(1);
  rec_.set_next_timer_id(1);
  rec_.set_cancel_requested(false);
  rec_.clear_open_activity_ids();
  rec_.clear_user_timers();
  history_full_ = false;
  ++runs_begun_;
  append(make_event("started", {}, input));
}

void Applier::append(HistoryEvent event, bool closing) {
  HERALD_ASSERT(running(), "only a running run records events");
  // The last slot is kept for the closing event, so a full history can still say how it ended.
  if (history_full_ || (!closing && rec_.history_length() + 1 >= kMaxHistoryEvents)) {
    history_full_ = true;
    if (!closing) {
      return;
    }
  }
  const std::uint64_t seq = rec_.history_length() + 1;
  if (report_ != nullptr && is_attempt_event(event.kind()) &&
      event.activity_id() == report_->activity_id()) {
    event.set_node_id(report_->node_id());
    event.set_term(report_->term());
  }
  event.set_seq(seq);
  event.set_time_ms(now_ms_);
  *unflushed_.add_events() = std::move(event);
  rec_.set_history_length(seq);
}

void Applier::flush_history() {
  if (unflushed_.events().empty()) {
    return;
  }
  HERALD_ASSERT(unflushed_.events().rbegin()->seq() == rec_.history_length(),
                "the unflushed events end the run's history");
  batch_.put(storage::Space::kState,
             keys::history_key(rec_.workflow_id(), rec_.run_id(), rec_.history_length()),
             keys::seal(unflushed_));
  unflushed_.Clear();
}

// Closes the run: every open activity and timer of it goes, then the closing event is recorded.
Status Applier::close_run(workflowpb::WorkflowStatus status, HistoryEvent event) {
  HERALD_ASSERT(running() && status != workflowpb::RUNNING, "only a running run closes");
  const std::vector<std::uint64_t> open(rec_.open_activity_ids().begin(),
                                        rec_.open_activity_ids().end());
  for (const std::uint64_t activity_id : open) {
    HERALD_ASSIGN_OR_RETURN(auto act, load_activity(rec_.run_id(), activity_id));
    if (!act) {
      return Status::corruption(fmt::format("open activity {} of workflow \"{}\" has no record",
                                            activity_id, rec_.workflow_id()));
    }
    drop_activity(*act);
  }
  for (const TimerRef& timer : rec_.user_timers()) {
    del_timer(timer);
  }
  rec_.clear_user_timers();
  append(std::move(event), /*closing=*/true);
  rec_.set_status(status);
  ++closed_runs_;
  return enqueue_purge(batch_, rec_, now_ms_);
}

Status Applier::close_failed(std::string_view error_type, std::string_view message) {
  HistoryEvent event = make_event("failed");
  event.set_error_type(std::string(error_type));
  event.set_error_message(bounded_message(message));
  rec_.set_error_type(event.error_type());
  rec_.set_error_message(event.error_message());
  return close_run(workflowpb::FAILED, std::move(event));
}

// ---------------------------------------------------------------- decisions

// Hands `event` to the type and applies its decision; then, while the decision continued as new,
// starts the next run and hands it kStarted. `acted` (optional) tells whether the first decision
// acted: changed the state or returned an action.
Status Applier::decide(Event event, bool* acted) {
  while (running() && !history_full_) {
    event.time_ms = now_ms_;
    Decision decision = type_->on_event(rec_.state(), rec_.data(), event);
    HERALD_RETURN_IF_ERROR(apply_decision(std::move(decision), acted));
    if (!continue_input_) {
      break;
    }
    std::string input = std::move(*continue_input_);
    continue_input_.reset();
    begin_run(input);
    event = type_event(Event::Kind::kStarted, {}, {}, std::move(input));
    acted = nullptr;
  }
  return Status::ok_status();
}

Status Applier::check_decision(const Decision& d) const {
  HERALD_RETURN_IF_ERROR(check_name("the state", d.state));
  HERALD_RETURN_IF_ERROR(check_payload("the data", d.data));
  if (d.actions.size() > kMaxActionsPerDecision) {
    return Status::invalid_argument(fmt::format("{} actions; the bound per decision is {}",
                                                d.actions.size(), kMaxActionsPerDecision));
  }
  std::size_t activities = rec_.open_activity_ids_size();
  std::size_t timers = rec_.user_timers_size();
  for (std::size_t i = 0; i < d.actions.size(); ++i) {
    const Action& a = d.actions[i];
    HERALD_RETURN_IF_ERROR(check_action(a));
    if (is_closing(a.kind) && i + 1 != d.actions.size()) {
      return Status::invalid_argument("a closing action must be the decision's last");
    }
    activities += a.kind == Action::Kind::kScheduleActivity ? 1 : 0;
    timers += a.kind == Action::Kind::kStartTimer ? 1 : 0;
    if (a.kind == Action::Kind::kContinueAsNew && runs_begun_ >= kMaxRunsPerCommand) {
      return Status::invalid_argument(
          fmt::format("more than {} runs begun by one command", kMaxRunsPerCommand));
    }
  }
  if (activities > kMaxOpenActivitiesPerRun || timers > kMaxUserTimersPerRun) {
    return Status::invalid_argument(
        fmt::format("a run may have {} open activities and {} user timers at most",
                    kMaxOpenActivitiesPerRun, kMaxUserTimersPerRun));
  }
  return Status::ok_status();
}

Status Applier::apply_decision(Decision d, bool* acted) {
  if (Status invalid = check_decision(d); !invalid.ok()) {
    return close_failed(kInvalidDecisionError, invalid.message());
  }
  if (acted != nullptr) {
    *acted = !d.actions.empty() || d.state != rec_.state();
  }
  if (d.state != rec_.state()) {
    append(make_event("state_changed", d.state));
    rec_.set_state(std::move(d.state));
  }
  rec_.set_data(std::move(d.data));
  for (const Action& action : d.actions) {
    if (!running() || history_full_) {
      break;
    }
    HERALD_RETURN_IF_ERROR(apply_action(action));
  }
  return Status::ok_status();
}

Status Applier::apply_action(const Action& a) {
  switch (a.kind) {
    case Action::Kind::kScheduleActivity: schedule_activity(a); return Status::ok_status();
    case Action::Kind::kStartTimer: start_user_timer(a); return Status::ok_status();
    case Action::Kind::kCancelTimer:
      cancel_user_timer(a.tag, /*record=*/true);
      return Status::ok_status();
    case Action::Kind::kRecord:
      append(make_event(a.name, a.name, a.payload));
      if (observer_ != nullptr) records_.emplace_back(a.name, a.payload);
      break;
    case Action::Kind::kComplete:
      rec_.set_result(a.payload);
      return close_run(workflowpb::COMPLETED, make_event("completed", {}, a.payload));
    case Action::Kind::kFail: return close_failed(a.error_type, a.error_message);
    case Action::Kind::kContinueAsNew:
      continue_input_ = a.payload;
      return close_run(workflowpb::CONTINUED_AS_NEW, make_event("continued_as_new", {}, a.payload));
  }
  return Status::ok_status();
}

void Applier::schedule_activity(const Action& a) {
  ActivityRecord act;
  act.set_workflow_id(rec_.workflow_id());
  act.set_run_id(rec_.run_id());
  act.set_activity_id(rec_.next_activity_id());
  act.set_activity_type(a.activity_type);
  act.set_tag(a.tag);
  act.set_input(a.payload);
  *act.mutable_options() = a.options;
  auto policy = normalize_retry_policy(a.options.retry());
  HERALD_ASSERT(policy.ok(), "a checked decision has valid retry policies");
  *act.mutable_options()->mutable_retry() = std::move(policy).value();
  act.set_attempt(1);
  act.set_scheduled_ms(now_ms_);
  act.set_idempotency_key(
      fmt::format("{}/{}/{}", rec_.workflow_id(), rec_.run_id(), act.activity_id()));
  append(activity_event("activity_scheduled", act));
  if (history_full_) {
    return;
  }
  rec_.set_next_activity_id(act.activity_id() + 1);
  rec_.add_open_activity_ids(act.activity_id());
  if (const auto s2c = static_cast<std::int64_t>(a.options.schedule_to_close_timeout_ms());
      s2c > 0) {
    *act.add_timers() =
        put_timer(workflowpb::SCHEDULE_TO_CLOSE, now_ms_ + s2c, {}, act.activity_id(), 0);
  }
  arm_attempt(act);
  put_activity(act);
}

void Applier::start_user_timer(const Action& a) {
  cancel_user_timer(a.tag, /*record=*/false);  // a running tag restarts: its old timer goes
  append(make_event("timer_started", a.tag));
  if (history_full_) {
    return;
  }
  *rec_.add_user_timers() = put_timer(workflowpb::USER, now_ms_ + a.delay_ms, a.tag, 0, 0);
}

// Removes the USER timer `tag` if it runs (recording "timer_canceled" when `record`).
void Applier::cancel_user_timer(std::string_view tag, bool record) {
  auto& timers = *rec_.mutable_user_timers();
  const auto it =
      std::find_if(timers.begin(), timers.end(), [&](const TimerRef& t) { return t.tag() == tag; });
  if (it == timers.end()) {
    return;
  }
  del_timer(*it);
  timers.erase(it);
  if (record) {
    append(make_event("timer_canceled", tag));
  }
}

// ---------------------------------------------------------------- timers and activities

TimerRef Applier::put_timer(workflowpb::TimerKind kind, std::int64_t due_ms, std::string_view tag,
                            std::uint64_t activity_id, std::uint32_t attempt) {
  TimerRef ref;
  ref.set_timer_id(rec_.next_timer_id());
  ref.set_due_ms(due_ms);
  ref.set_kind(kind);
  ref.set_tag(std::string(tag));
  rec_.set_next_timer_id(ref.timer_id() + 1);
  write_timer(ref, activity_id, attempt);
  return ref;
}

TimerRecord Applier::timer_record(const TimerRef& ref, std::uint64_t activity_id,
                                  std::uint32_t attempt) const {
  TimerRecord timer;
  timer.set_workflow_id(rec_.workflow_id());
  timer.set_run_id(rec_.run_id());
  timer.set_timer_id(ref.timer_id());
  timer.set_due_ms(ref.due_ms());
  timer.set_kind(ref.kind());
  timer.set_tag(ref.tag());
  timer.set_activity_id(activity_id);
  timer.set_attempt(attempt);
  return timer;
}

void Applier::write_timer(const TimerRef& ref, std::uint64_t activity_id, std::uint32_t attempt) {
  const TimerRecord timer = timer_record(ref, activity_id, attempt);
  batch_.put(storage::Space::kState,
             keys::timer_key(ref.due_ms(), rec_.workflow_id(), rec_.run_id(), ref.timer_id()),
             keys::seal(timer));
}

void Applier::del_timer(const TimerRef& ref) {
  batch_.del(storage::Space::kState,
             keys::timer_key(ref.due_ms(), rec_.workflow_id(), rec_.run_id(), ref.timer_id()));
}

Result<std::optional<ActivityRecord>> Applier::load_activity(std::uint64_t run_id,
                                                             std::uint64_t activity_id) {
  HERALD_ASSIGN_OR_RETURN(auto raw,
                          batch_.get(storage::Space::kState,
                                     keys::activity_key(rec_.workflow_id(), run_id, activity_id)));
  return keys::open_optional<ActivityRecord>(raw, "activity");
}

// The activity when (workflow, run, activity, attempt) names its current, dispatched attempt of a
// running run (loaded into rec_); nullopt when the reference is stale.
Result<std::optional<ActivityRecord>> Applier::load_current_attempt(std::string_view workflow_id,
                                                                    std::uint64_t run_id,
                                                                    std::uint64_t activity_id,
                                                                    std::uint32_t attempt) {
  HERALD_ASSIGN_OR_RETURN(const bool found, load_run(workflow_id));
  if (!found || !running() || rec_.run_id() != run_id) {
    return std::optional<ActivityRecord>();
  }
  HERALD_ASSIGN_OR_RETURN(auto act, load_activity(run_id, activity_id));
  if (!act || act->phase() != workflowpb::DISPATCHABLE || act->attempt() != attempt) {
    return std::optional<ActivityRecord>();
  }
  return act;
}

void Applier::put_activity(const ActivityRecord& act) {
  batch_.put(storage::Space::kState,
             keys::activity_key(act.workflow_id(), act.run_id(), act.activity_id()),
             keys::seal(act));
}

void Applier::drop_activity(const ActivityRecord& act) {
  for (const TimerRef& timer : act.timers()) {
    del_timer(timer);
  }
  batch_.del(storage::Space::kState,
             keys::dispatch_key(act.workflow_id(), act.run_id(), act.activity_id()));
  batch_.del(storage::Space::kState,
             keys::activity_key(act.workflow_id(), act.run_id(), act.activity_id()));
  auto& open = *rec_.mutable_open_activity_ids();
  const auto it = std::find(open.begin(), open.end(), act.activity_id());
  HERALD_ASSERT(it != open.end(), "a live activity is listed as open by its run");
  open.erase(it);
}

// Makes the activity's current attempt dispatchable now, with its per-attempt timeouts.
void Applier::arm_attempt(ActivityRecord& act) {
  act.set_phase(workflowpb::DISPATCHABLE);
  act.set_attempt_started_ms(now_ms_);
  act.set_last_heartbeat_ms(0);
  const auto& options = act.options();
  if (const auto s2c = static_cast<std::int64_t>(options.start_to_close_timeout_ms()); s2c > 0) {
    *act.add_timers() =
        put_timer(workflowpb::START_TO_CLOSE, now_ms_ + s2c, {}, act.activity_id(), act.attempt());
  }
  if (const auto hb = static_cast<std::int64_t>(options.heartbeat_timeout_ms()); hb > 0) {
    *act.add_timers() =
        put_timer(workflowpb::HEARTBEAT, now_ms_ + hb, {}, act.activity_id(), act.attempt());
  }
  const std::string activity_key =
      keys::activity_key(act.workflow_id(), act.run_id(), act.activity_id());
  batch_.put(storage::Space::kState,
             keys::dispatch_key(act.workflow_id(), act.run_id(), act.activity_id()),
             seal_record(activity_key));
  dispatchable_.push_back(
      ActivityRef{act.workflow_id(), act.run_id(), act.activity_id(), act.attempt()});
}

// Ends the current attempt: its timeouts and its dispatch index entry go.
void Applier::disarm_attempt(ActivityRecord& act) {
  auto& timers = *act.mutable_timers();
  for (auto it = timers.begin(); it != timers.end();) {
    if (it->kind() == workflowpb::START_TO_CLOSE || it->kind() == workflowpb::HEARTBEAT) {
      del_timer(*it);
      it = timers.erase(it);
    } else {
      ++it;
    }
  }
  batch_.del(storage::Space::kState,
             keys::dispatch_key(act.workflow_id(), act.run_id(), act.activity_id()));
}

Status Applier::complete_activity(const ActivityRecord& act, std::string_view output,
                                  std::string_view details) {
  drop_activity(act);
  HistoryEvent completed = activity_event("activity_completed", act);
  completed.set_details(std::string(details));
  append(std::move(completed));
  Event event = type_event(Event::Kind::kActivityCompleted, {}, act.tag(), std::string(output));
  event.activity_id = act.activity_id();
  event.attempt = act.attempt();
  return decide(std::move(event));
}

// A failed attempt: retried after a jittered backoff when its policy allows and the retry would
// begin before the schedule-to-close deadline, else the activity fails with this error.
Status Applier::fail_attempt(ActivityRecord act, std::string_view error_type,
                             std::string_view message, std::uint64_t retry_after_ms,
                             std::string_view details, bool not_dispatched) {
  disarm_attempt(act);
  act.set_last_error_type(std::string(error_type));
  act.set_last_error_message(bounded_message(message));
  const auto& policy = act.options().retry();
  if (should_retry(policy, act.attempt(), error_type)) {
    const std::uint64_t seed =
        retry_seed(act.workflow_id(), act.run_id(), act.activity_id(), act.attempt());
    const auto due_ms = now_ms_ + static_cast<std::int64_t>(
                                      retry_delay_ms(policy, act.attempt(), seed, retry_after_ms));
    const auto s2c = static_cast<std::int64_t>(act.options().schedule_to_close_timeout_ms());
    // Only an activity whose options bound refused waits treats refusals apart.
    const bool refused = not_dispatched && act.options().maximum_refused_wait_ms() > 0;
    if (refused && s2c > 0) {
      extend_for_refusal(act, due_ms);
    }
    if (s2c == 0 || due_ms < act.scheduled_ms() + s2c + act.refused_wait_ms()) {
      // A refusal after a refusal is counted, not recorded: the streak's first event stands.
      const bool in_history = !refused || act.refused_in_a_row() == 0;
      act.set_refused_in_a_row(refused ? act.refused_in_a_row() + 1 : 0);
      if (in_history) {
        HistoryEvent event = activity_event("activity_retry_scheduled", act);
        event.set_error_type(act.last_error_type());
        event.set_error_message(act.last_error_message());
        event.set_details(std::string(details));
        event.set_next_attempt_ms(due_ms);
        append(std::move(event));
      }
      act.set_phase(workflowpb::BACKOFF);
      *act.add_timers() =
          put_timer(workflowpb::ACTIVITY_RETRY, due_ms, {}, act.activity_id(), act.attempt());
      put_activity(act);
      return Status::ok_status();
    }
  }
  return fail_activity(act, act.last_error_type(), act.last_error_message(), details);
}

void Applier::extend_for_refusal(ActivityRecord& act, std::int64_t retry_due_ms) {
  const auto allowed = static_cast<std::int64_t>(act.options().maximum_refused_wait_ms());
  const std::int64_t span_ms = std::max<std::int64_t>(0, retry_due_ms - act.attempt_started_ms());
  const std::int64_t grant_ms =
      std::min(span_ms, std::max<std::int64_t>(0, allowed - act.refused_wait_ms()));
  if (grant_ms == 0) {
    return;
  }
  act.set_refused_wait_ms(act.refused_wait_ms() + grant_ms);
  HERALD_ASSERT(act.refused_wait_ms() <= allowed, "refusals extend a window within their bound");
  for (TimerRef& timer : *act.mutable_timers()) {
    if (timer.kind() == workflowpb::SCHEDULE_TO_CLOSE) {
      // The timer keeps its id and moves to its new due time, as a heartbeat's timer does.
      del_timer(timer);
      timer.set_due_ms(timer.due_ms() + grant_ms);
      write_timer(timer, act.activity_id(), 0);
    }
  }
}

Status Applier::fail_activity(const ActivityRecord& act, std::string_view error_type,
                              std::string_view message, std::string_view details) {
  drop_activity(act);
  HistoryEvent recorded = activity_event("activity_failed", act);
  recorded.set_error_type(std::string(error_type));
  recorded.set_error_message(bounded_message(message));
  recorded.set_details(std::string(details));
  append(recorded);
  Event event = type_event(Event::Kind::kActivityFailed, {}, act.tag());
  event.error_type = recorded.error_type();
  event.error_message = recorded.error_message();
  event.activity_id = act.activity_id();
  event.attempt = act.attempt();
  return decide(std::move(event));
}

// An activity's timer fired. Its activity exists, and a per-attempt timer guards the current
// attempt: every path that ends an attempt or an activity deletes its timers in the same batch,
// so anything else is damaged state.
Status Applier::fire_activity_timer(const TimerRecord& timer) {
  HERALD_ASSIGN_OR_RETURN(auto act, load_activity(timer.run_id(), timer.activity_id()));
  const bool retry = timer.kind() == workflowpb::ACTIVITY_RETRY;
  const bool per_attempt =
      timer.kind() == workflowpb::START_TO_CLOSE || timer.kind() == workflowpb::HEARTBEAT;
  if (!act || (retry && act->phase() != workflowpb::BACKOFF) ||
      (per_attempt &&
       (act->phase() != workflowpb::DISPATCHABLE || act->attempt() != timer.attempt()))) {
    return Status::corruption(fmt::format("timer {} of workflow \"{}\" outlived what it guards",
                                          timer.timer_id(), timer.workflow_id()));
  }
  erase_timer(*act->mutable_timers(), timer.timer_id());
  switch (timer.kind()) {
    case workflowpb::ACTIVITY_RETRY:
      act->set_attempt(act->attempt() + 1);
      arm_attempt(*act);
      put_activity(*act);
      return Status::ok_status();
    case workflowpb::START_TO_CLOSE:
    case workflowpb::HEARTBEAT:
      return fail_attempt(
          std::move(*act),
          timer.kind() == workflowpb::START_TO_CLOSE ? kStartToCloseError : kHeartbeatError,
          fmt::format("attempt {} timed out", timer.attempt()));
    case workflowpb::SCHEDULE_TO_CLOSE:
      return fail_activity(*act, kScheduleToCloseError,
                           fmt::format("the activity ran out of its schedule-to-close timeout "
                                       "after {} attempt(s)",
                                       act->attempt()));
    default: return Status::corruption("activity timer of an unknown kind");
  }
}

// ---------------------------------------------------------------- commands

Result<rsmpb::CommandResult> Applier::start(const workflowpb::StartWorkflow& op) {
  HERALD_RETURN_IF_ERROR(check_workflow_id(op.workflow_id()));
  HERALD_RETURN_IF_ERROR(check_name("a workflow type", op.type()));
  HERALD_RETURN_IF_ERROR(check_payload("the start input", op.input()));
  HERALD_ASSIGN_OR_RETURN(const bool found, load_run(op.workflow_id()));
  if (found) {
    return record_result(rec_, /*existed=*/true);  // dedup by id, open or closed
  }
  type_ = registry_.find(op.type());
  if (type_ == nullptr) {
    return Status::invalid_argument(fmt::format("unknown workflow type \"{}\"", op.type()));
  }
  rec_.set_workflow_id(op.workflow_id());
  rec_.set_type(op.type());
  // A purged workflow's id starts over after its last run, so no idempotency key comes back.
  HERALD_ASSIGN_OR_RETURN(auto raw_summary,
                          batch_.get(storage::Space::kState, keys::summary_key(op.workflow_id())));
  HERALD_ASSIGN_OR_RETURN(auto summary,
                          keys::open_optional<WorkflowSummary>(raw_summary, "workflow summary"));
  rec_.set_run_id(summary ? summary->run_id() : 0);
  begin_run(op.input());
  HERALD_RETURN_IF_ERROR(decide(type_event(Event::Kind::kStarted, {}, {}, op.input())));
  HERALD_RETURN_IF_ERROR(save_run());
  return record_result(rec_, /*existed=*/false);
}

Result<rsmpb::CommandResult> Applier::signal(const workflowpb::SignalWorkflow& op) {
  HERALD_RETURN_IF_ERROR(check_workflow_id(op.workflow_id()));
  HERALD_RETURN_IF_ERROR(check_name("a signal name", op.name()));
  HERALD_RETURN_IF_ERROR(check_payload("the signal payload", op.payload()));
  HERALD_ASSIGN_OR_RETURN(const bool found, load_run(op.workflow_id()));
  if (!found || !running()) {
    return Status::not_found(fmt::format("no running workflow \"{}\"", op.workflow_id()));
  }
  HERALD_RETURN_IF_ERROR(require_type());
  append(make_event("signaled", op.name(), op.payload()));
  HERALD_RETURN_IF_ERROR(decide(type_event(Event::Kind::kSignal, op.name(), {}, op.payload())));
  HERALD_RETURN_IF_ERROR(save_run());
  return record_result(rec_, /*existed=*/true);
}

Result<rsmpb::CommandResult> Applier::cancel(const workflowpb::CancelWorkflow& op) {
  HERALD_RETURN_IF_ERROR(check_workflow_id(op.workflow_id()));
  HERALD_RETURN_IF_ERROR(check_payload("the cancel reason", op.reason()));
  if (!valid_utf8(op.reason())) {
    return Status::invalid_argument("the cancel reason is not valid UTF-8");
  }
  HERALD_ASSIGN_OR_RETURN(const bool found, load_run(op.workflow_id()));
  if (!found || !running()) {
    return Status::not_found(fmt::format("no running workflow \"{}\"", op.workflow_id()));
  }
  if (rec_.cancel_requested()) {
    return record_result(rec_, /*existed=*/true);  // asked before: nothing new to deliver
  }
  HERALD_RETURN_IF_ERROR(require_type());
  rec_.set_cancel_requested(true);
  append(make_event("cancel_requested", {}, op.reason()));
  bool acted = false;
  HERALD_RETURN_IF_ERROR(
      decide(type_event(Event::Kind::kCancelRequested, {}, {}, op.reason()), &acted));
  if (running() && !history_full_ && !acted) {
    HERALD_RETURN_IF_ERROR(
        close_run(workflowpb::CANCELED, make_event("canceled", {}, op.reason())));
  }
  HERALD_RETURN_IF_ERROR(save_run());
  return record_result(rec_, /*existed=*/true);
}

Result<rsmpb::CommandResult> Applier::report(const workflowpb::ReportActivity& op) {
  HERALD_RETURN_IF_ERROR(check_workflow_id(op.workflow_id()));
  HERALD_RETURN_IF_ERROR(check_payload("the activity output", op.output()));
  if (op.details().size() > kMaxAttemptDetailsBytes) {
    return Status::invalid_argument(fmt::format("attempt details of {} bytes; the bound is {}",
                                                op.details().size(), kMaxAttemptDetailsBytes));
  }
  HERALD_RETURN_IF_ERROR(check_name("an error type", op.error_type(), /*allow_empty=*/true));
  if (!valid_utf8(op.error_message())) {
    return Status::invalid_argument("the error message is not valid UTF-8");
  }
  HERALD_ASSIGN_OR_RETURN(auto act, load_current_attempt(op.workflow_id(), op.run_id(),
                                                         op.activity_id(), op.attempt()));
  if (!act) {
    return rsmpb::CommandResult();  // stale attempt or finished activity: no effect
  }
  HERALD_RETURN_IF_ERROR(require_type());
  report_ = &op;
  if (op.ok()) {
    HERALD_RETURN_IF_ERROR(complete_activity(*act, op.output(), op.details()));
  } else {
    HERALD_RETURN_IF_ERROR(fail_attempt(std::move(*act), op.error_type(), op.error_message(),
                                        op.retry_after_ms(), op.details(), op.not_dispatched()));
  }
  HERALD_RETURN_IF_ERROR(save_run());
  return rsmpb::CommandResult();
}

Result<rsmpb::CommandResult> Applier::heartbeat(const workflowpb::HeartbeatActivity& op) {
  HERALD_RETURN_IF_ERROR(check_workflow_id(op.workflow_id()));
  HERALD_ASSIGN_OR_RETURN(auto act, load_current_attempt(op.workflow_id(), op.run_id(),
                                                         op.activity_id(), op.attempt()));
  if (!act) {
    return rsmpb::CommandResult();
  }
  act->set_last_heartbeat_ms(now_ms_);
  for (TimerRef& timer : *act->mutable_timers()) {
    if (timer.kind() == workflowpb::HEARTBEAT) {
      // The timer keeps its id and moves to its new due time: the run's record is untouched.
      del_timer(timer);
      timer.set_due_ms(now_ms_ + static_cast<std::int64_t>(act->options().heartbeat_timeout_ms()));
      write_timer(timer, act->activity_id(), act->attempt());
    }
  }
  put_activity(*act);
  return rsmpb::CommandResult();
}

// kFailedPrecondition unless some activity of the loaded run waits out a retry backoff.
Status Applier::check_backoff() {
  for (const std::uint64_t activity_id : rec_.open_activity_ids()) {
    HERALD_ASSIGN_OR_RETURN(auto act, load_activity(rec_.run_id(), activity_id));
    if (act && act->phase() == workflowpb::BACKOFF) return Status::ok_status();
  }
  return Status::failed_precondition(
      fmt::format("no activity of workflow \"{}\" waits for a retry", rec_.workflow_id()));
}

// Every activity of the loaded run that waits out a retry backoff: its retry timer fires now.
Status Applier::retry_now() {
  const std::vector<std::uint64_t> open(rec_.open_activity_ids().begin(),
                                        rec_.open_activity_ids().end());
  bool any = false;
  for (const std::uint64_t activity_id : open) {
    HERALD_ASSIGN_OR_RETURN(auto act, load_activity(rec_.run_id(), activity_id));
    if (!act || act->phase() != workflowpb::BACKOFF) continue;
    for (const TimerRef& ref : act->timers()) {
      if (ref.kind() != workflowpb::ACTIVITY_RETRY) continue;
      const TimerRecord timer = timer_record(ref, activity_id, act->attempt());
      del_timer(ref);
      HERALD_RETURN_IF_ERROR(fire_activity_timer(timer));
      any = true;
      break;
    }
  }
  return any ? Status::ok_status()
             : Status::corruption(
                   fmt::format("an activity of workflow \"{}\" in backoff has no retry timer",
                               rec_.workflow_id()));
}

// The loaded run's USER timer `tag` fires now.
Status Applier::fire_user_timer_now(std::string_view tag) {
  const auto& timers = rec_.user_timers();
  const auto it =
      std::find_if(timers.begin(), timers.end(), [&](const TimerRef& t) { return t.tag() == tag; });
  HERALD_ASSERT(it != timers.end(), "checked before the action was recorded");
  del_timer(*it);
  erase_timer(*rec_.mutable_user_timers(), it->timer_id());  // `it` is not used after this
  append(make_event("timer_fired", tag));
  return decide(type_event(Event::Kind::kTimerFired, {}, std::string(tag)));
}

Result<rsmpb::CommandResult> Applier::operator_action(const workflowpb::OperatorAction& op) {
  HERALD_RETURN_IF_ERROR(check_workflow_id(op.workflow_id()));
  HERALD_RETURN_IF_ERROR(check_name("an operator action", op.action()));
  HERALD_RETURN_IF_ERROR(check_name("the operator", op.actor()));
  HERALD_RETURN_IF_ERROR(check_name("the action's name", op.name(), /*allow_empty=*/true));
  HERALD_RETURN_IF_ERROR(check_payload("the reason", op.reason()));
  if (!valid_utf8(op.reason())) {
    return Status::invalid_argument("the reason is not valid UTF-8");
  }
  const std::string& action = op.action();
  if (action != "retry_now" && action != "fire_timer" && action != "cancel" && action != "signal") {
    return Status::invalid_argument(fmt::format("unknown operator action \"{}\"", action));
  }
  HERALD_ASSIGN_OR_RETURN(const bool found, load_run(op.workflow_id()));
  if (!found || !running()) {
    return Status::not_found(fmt::format("no running workflow \"{}\"", op.workflow_id()));
  }
  HERALD_RETURN_IF_ERROR(require_type());
  if (action == "signal") {
    HERALD_RETURN_IF_ERROR(check_name("a signal name", op.name()));
  } else if (action == "retry_now") {
    HERALD_RETURN_IF_ERROR(check_backoff());
  } else if (action == "fire_timer") {
    const auto& timers = rec_.user_timers();
    if (std::none_of(timers.begin(), timers.end(),
                     [&](const TimerRef& t) { return t.tag() == op.name(); })) {
      return Status::failed_precondition(fmt::format("workflow \"{}\" has no running timer \"{}\"",
                                                     rec_.workflow_id(), op.name()));
    }
  }
  // Recorded first, so the effects that follow (and a closing event) come after it.
  append(make_event("operator_action", action, fmt::format("{}: {}", op.actor(), op.reason())));
  if (action == "cancel" || action == "signal") {
    HERALD_RETURN_IF_ERROR(save_run());
    if (action == "cancel") {
      workflowpb::CancelWorkflow cancel_op;
      cancel_op.set_workflow_id(op.workflow_id());
      cancel_op.set_reason(op.reason());
      return cancel(cancel_op);
    }
    workflowpb::SignalWorkflow signal_op;
    signal_op.set_workflow_id(op.workflow_id());
    signal_op.set_name(op.name());
    signal_op.set_payload(op.reason());
    return signal(signal_op);
  }
  HERALD_RETURN_IF_ERROR(action == "retry_now" ? retry_now() : fire_user_timer_now(op.name()));
  HERALD_RETURN_IF_ERROR(save_run());
  return record_result(rec_, /*existed=*/true);
}

Result<rsmpb::CommandResult> Applier::fire_timer(const workflowpb::FireTimer& op, bool* fired) {
  HERALD_RETURN_IF_ERROR(check_workflow_id(op.workflow_id()));
  if (now_ms_ < op.due_ms()) {
    return Status::failed_precondition(
        fmt::format("timer is due at {} ms; the command's time is {} ms", op.due_ms(), now_ms_));
  }
  const std::string key =
      keys::timer_key(op.due_ms(), op.workflow_id(), op.run_id(), op.timer_id());
  HERALD_ASSIGN_OR_RETURN(auto raw, batch_.get(storage::Space::kState, key));
  HERALD_ASSIGN_OR_RETURN(auto timer, keys::open_optional<TimerRecord>(raw, "timer"));
  if (!timer) {
    return rsmpb::CommandResult();  // fired or canceled before: no effect
  }
  HERALD_ASSIGN_OR_RETURN(const bool found, load_run(op.workflow_id()));
  if (!found || !running() || rec_.run_id() != op.run_id()) {
    return Status::corruption(
        fmt::format("a timer outlived its run of workflow \"{}\"", op.workflow_id()));
  }
  HERALD_RETURN_IF_ERROR(require_type());
  batch_.del(storage::Space::kState, key);
  if (timer->kind() == workflowpb::USER) {
    erase_timer(*rec_.mutable_user_timers(), timer->timer_id());
    append(make_event("timer_fired", timer->tag()));
    HERALD_RETURN_IF_ERROR(decide(type_event(Event::Kind::kTimerFired, {}, timer->tag())));
  } else {
    HERALD_RETURN_IF_ERROR(fire_activity_timer(*timer));
  }
  HERALD_RETURN_IF_ERROR(save_run());
  if (fired != nullptr) {
    *fired = true;
  }
  return rsmpb::CommandResult();
}

Result<rsmpb::CommandResult> apply_command(Applier& applier, const workflowpb::WorkflowCommand& c) {
  switch (c.op_case()) {
    case workflowpb::WorkflowCommand::kStart: return applier.start(c.start());
    case workflowpb::WorkflowCommand::kSignal: return applier.signal(c.signal());
    case workflowpb::WorkflowCommand::kCancel: return applier.cancel(c.cancel());
    case workflowpb::WorkflowCommand::kReport: return applier.report(c.report());
    case workflowpb::WorkflowCommand::kHeartbeat: return applier.heartbeat(c.heartbeat());
    case workflowpb::WorkflowCommand::kOperatorAction:
      return applier.operator_action(c.operator_action());
    case workflowpb::WorkflowCommand::kFireTimer: return applier.fire_timer(c.fire_timer());
    case workflowpb::WorkflowCommand::kFireTimers:
      return Status::invalid_argument("FireTimers is applied timer by timer");
    case workflowpb::WorkflowCommand::kPurgeClosed:
    case workflowpb::WorkflowCommand::kSetRetention:
      return Status::invalid_argument("retention commands are applied by the engine");
    default: return Status::invalid_argument("a workflow command needs an operation");
  }
}

}  // namespace

rsmpb::CommandResult Engine::apply(raft::Index /*index*/, const rsmpb::Command& command,
                                   rsm::ApplyBatch& batch) {
  if (command.op_case() != rsmpb::Command::kModule || command.module().name() != kModuleName) {
    return error_result(Status::invalid_argument("not a workflow command"));
  }
  workflowpb::WorkflowCommand wc;
  const std::string& payload = command.module().payload();
  if (!wc.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return error_result(Status::invalid_argument("workflow command does not decode"));
  }
  return apply_command(wc, command.wall_ms(), batch);
}

bool Engine::allowed_when_disk_low(const rsmpb::Command& command) const {
  workflowpb::WorkflowCommand wc;
  const std::string& payload = command.module().payload();
  if (!wc.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return false;
  }
  switch (wc.op_case()) {
    case workflowpb::WorkflowCommand::kStart: {
      const WorkflowType* type = registry_->find(wc.start().type());
      return type != nullptr && type->starts_when_disk_low();
    }
    case workflowpb::WorkflowCommand::kCancel:
    case workflowpb::WorkflowCommand::kReport:
    case workflowpb::WorkflowCommand::kHeartbeat:
    case workflowpb::WorkflowCommand::kFireTimer:
    case workflowpb::WorkflowCommand::kFireTimers:
    case workflowpb::WorkflowCommand::kPurgeClosed:
    case workflowpb::WorkflowCommand::kSetRetention:
    case workflowpb::WorkflowCommand::kOperatorAction: return true;
    default: return false;
  }
}

rsmpb::CommandResult Engine::apply_command(const workflowpb::WorkflowCommand& command,
                                           std::int64_t now_ms, rsm::ApplyBatch& batch) {
  HERALD_ASSERT(registry_ != nullptr, "the engine needs a registry");
  closed_runs_ = 0;
  rsmpb::CommandResult result = [&]() -> rsmpb::CommandResult {
    if (command.has_fire_timers()) {
      return fire_timers(command.fire_timers(), now_ms, batch);
    }
    auto applied = [&]() -> Result<rsmpb::CommandResult> {
      if (command.has_fire_timer()) {
        return fire_one(command.fire_timer(), now_ms, batch);
      }
      if (command.has_set_retention()) {
        return set_retention(batch, command.set_retention());
      }
      if (command.has_purge_closed()) {
        HERALD_RETURN_IF_ERROR(purge_due(batch, now_ms));
        return rsmpb::CommandResult();
      }
      Applier applier(batch, *registry_, now_ms, dispatchable_, closed_runs_, entered_, observer_,
                      &transitions_);
      return herald::workflow::apply_command(applier, command);
    }();
    return applied.ok() ? std::move(applied).value() : error_result(applied.status());
  }();
  if (result.code() == 0 && !transitions_.empty()) {
    if (Status observed = notify_observer(now_ms, batch); !observed.ok()) {
      entered_.clear();
      return error_result(observed);
    }
  }
  transitions_.clear();
  // A command that closed a run purges as well, so purging keeps pace with closing.
  if (result.code() == 0 && closed_runs_ > 0) {
    if (Status purged = purge_due(batch, now_ms); !purged.ok()) {
      entered_.clear();
      return error_result(purged);
    }
  }
  if (result.code() == 0) {
    for (const StateEntered& e : entered_) ++stats_.transitions[e];
  }
  entered_.clear();
  return result;
}

Result<rsmpb::CommandResult> Engine::fire_one(const workflowpb::FireTimer& fire,
                                              std::int64_t now_ms, rsm::ApplyBatch& batch) {
  applied_fires_.push_back(
      AppliedFire{fire.workflow_id(), fire.run_id(), fire.timer_id(), fire.due_ms(), false});
  Applier applier(batch, *registry_, now_ms, dispatchable_, closed_runs_, entered_, observer_,
                  &transitions_);
  bool fired = false;
  auto result = applier.fire_timer(fire, &fired);
  applied_fires_.back().fired = result.ok() && fired;
  if (applied_fires_.back().fired) ++stats_.timers_fired;
  return result;
}

rsmpb::CommandResult Engine::fire_timers(const workflowpb::FireTimers& op, std::int64_t now_ms,
                                         rsm::ApplyBatch& batch) {
  if (op.timers_size() == 0 ||
      static_cast<std::size_t>(op.timers_size()) > kMaxTimersPerFireCommand) {
    return error_result(
        Status::invalid_argument(fmt::format("a FireTimers command carries 1 to {} timers, not {}",
                                             kMaxTimersPerFireCommand, op.timers_size())));
  }
  // Each timer is its own unit: one refused (not due yet, by this command's time) is undone and
  // skipped; stored state that does not decode stops the whole command, and with it the replica.
  for (const workflowpb::FireTimer& fire : op.timers()) {
    const rsm::ApplyBatch::Savepoint point = batch.savepoint();
    const std::size_t hints = dispatchable_.size();
    const std::size_t observed = transitions_.size();
    auto result = fire_one(fire, now_ms, batch);
    if (result.ok()) {
      continue;
    }
    const Status& status = result.status();
    if (status.code() == Code::kCorruption || status.code() == Code::kIOError) {
      return error_result(status);
    }
    batch.rollback(point);
    dispatchable_.resize(hints);
    transitions_.resize(observed);
  }
  return rsmpb::CommandResult();
}

// The observer's starts are applied after the command's own work, in the same batch; they are
// not observed in turn (transitions_ is cleared first), so an observer cannot loop.
Status Engine::notify_observer(std::int64_t now_ms, rsm::ApplyBatch& batch) {
  std::vector<Transition> transitions = std::move(transitions_);
  transitions_.clear();
  std::vector<workflowpb::StartWorkflow> starts;
  for (const Transition& t : transitions) {
    HERALD_RETURN_IF_ERROR(observer_->observe(batch, now_ms, t, starts));
  }
  for (const workflowpb::StartWorkflow& start : starts) {
    Applier applier(batch, *registry_, now_ms, dispatchable_, closed_runs_, entered_);
    HERALD_ASSIGN_OR_RETURN(rsmpb::CommandResult started, applier.start(start));
    if (started.code() != 0) {
      return Status(static_cast<Code>(started.code()), started.message());
    }
  }
  return Status::ok_status();
}

std::vector<ActivityRef> Engine::take_dispatchable() {
  return std::exchange(dispatchable_, {});
}

std::vector<AppliedFire> Engine::take_applied_fires() {
  return std::exchange(applied_fires_, {});
}

Result<std::optional<WorkflowRecord>> Engine::read_workflow(const storage::Reader& reader,
                                                            std::string_view workflow_id) {
  HERALD_ASSIGN_OR_RETURN(auto raw,
                          reader.get(storage::Space::kState, keys::record_key(workflow_id)));
  return keys::open_optional<WorkflowRecord>(raw, "workflow");
}

Result<std::optional<WorkflowSummary>> Engine::read_summary(const storage::Reader& reader,
                                                            std::string_view workflow_id) {
  HERALD_ASSIGN_OR_RETURN(auto raw,
                          reader.get(storage::Space::kState, keys::summary_key(workflow_id)));
  return keys::open_optional<WorkflowSummary>(raw, "workflow summary");
}

Result<workflowpb::RetentionSettings> Engine::read_retention(const storage::Reader& reader) {
  HERALD_ASSIGN_OR_RETURN(auto raw, reader.get(storage::Space::kState, keys::settings_key()));
  HERALD_ASSIGN_OR_RETURN(auto stored,
                          keys::open_optional<workflowpb::RetentionSettings>(raw, "retention"));
  workflowpb::RetentionSettings settings = stored.value_or(workflowpb::RetentionSettings());
  settings.set_closed_retention_ms(closed_retention_ms(settings));
  return settings;
}

Result<std::optional<std::int64_t>> Engine::next_purge_due_ms(const storage::Reader& reader) {
  HERALD_ASSIGN_OR_RETURN(auto raw, reader.get(storage::Space::kState, keys::purge_queue_key()));
  HERALD_ASSIGN_OR_RETURN(auto queue, keys::open_optional<PurgeQueue>(raw, "purge queue"));
  if (!queue) {
    return std::optional<std::int64_t>();
  }
  HERALD_ASSIGN_OR_RETURN(const workflowpb::RetentionSettings settings, read_retention(reader));
  // The close time of the entry at `slot`.
  const auto closed_at = [&reader](std::uint64_t slot) -> Result<std::int64_t> {
    HERALD_ASSIGN_OR_RETURN(auto raw,
                            reader.get(storage::Space::kState, keys::purge_entry_key(slot)));
    HERALD_ASSIGN_OR_RETURN(auto entry, keys::open_optional<PurgeEntry>(raw, "purge entry"));
    if (!entry) {
      return Status::corruption(fmt::format("purge queue entry {} is missing", slot));
    }
    return entry->closed_ms();
  };
  std::optional<std::int64_t> due;
  if (queue->head() < queue->tail()) {
    HERALD_ASSIGN_OR_RETURN(const std::int64_t closed_ms, closed_at(queue->head()));
    due = closed_ms + settings.closed_retention_ms();
  }
  if (queue->has_summary_head() && queue->summary_head() < queue->head()) {
    HERALD_ASSIGN_OR_RETURN(const std::int64_t closed_ms, closed_at(queue->summary_head()));
    const std::int64_t expiry_ms =
        closed_ms + settings.closed_retention_ms() + settings.summary_retention_ms();
    due = due ? std::min(*due, expiry_ms) : expiry_ms;
  }
  return due;
}

Result<std::vector<HistoryEvent>> Engine::read_history(const storage::Reader& reader,
                                                       std::string_view workflow_id,
                                                       std::uint64_t run_id,
                                                       std::uint64_t after_seq, std::size_t limit) {
  const std::string prefix = keys::run_prefix(keys::kHistorySub, workflow_id, run_id);
  std::vector<HistoryEvent> out;
  if (after_seq == std::numeric_limits<std::uint64_t>::max()) {
    return out;
  }
  limit = std::min(limit, kMaxReadLimit);
  // The first chunk may begin before after_seq + 1; its earlier events are skipped.
  auto it =
      reader.scan(storage::Space::kState, keys::history_key(workflow_id, run_id, after_seq + 1),
                  keys::prefix_end(prefix));
  for (; it->valid() && out.size() < limit; it->next()) {
    HERALD_ASSIGN_OR_RETURN(HistoryChunk chunk, open_chunk(it->key(), it->value()));
    for (HistoryEvent& event : *chunk.mutable_events()) {
      if (event.seq() > after_seq && out.size() < limit) out.push_back(std::move(event));
    }
  }
  HERALD_RETURN_IF_ERROR(it->status());
  return out;
}

Result<ListPage> Engine::list(const storage::Reader& reader, const ListFilter& filter) {
  HERALD_RETURN_IF_ERROR(check_name("the type to list", filter.type));
  const std::string prefix = keys::visibility_prefix(filter.type, filter.state);
  std::string begin = prefix;
  if (!filter.page_token.empty()) {
    if (!keys::hex_decode(filter.page_token, begin) || !begin.starts_with(prefix)) {
      return Status::invalid_argument("the page token does not belong to this listing");
    }
    begin.push_back('\0');  // the smallest key after the previous page's last
  }
  const std::size_t limit = std::clamp<std::size_t>(filter.limit, 1, kMaxReadLimit);
  ListPage page;
  auto it = reader.scan(storage::Space::kState, begin, keys::prefix_end(prefix));
  std::string last_key;
  for (; it->valid() && page.entries.size() < limit; it->next()) {
    HERALD_ASSIGN_OR_RETURN(auto summary, keys::open<WorkflowRecord>(it->value(), "visibility"));
    page.entries.push_back(VisibilityEntry{summary.workflow_id(), summary.type(), summary.status(),
                                           summary.state(), summary.state_since_ms()});
    last_key = std::string(it->key());
  }
  HERALD_RETURN_IF_ERROR(it->status());
  if (it->valid()) {
    page.next_page_token = keys::hex_encode(last_key);
  }
  return page;
}

Result<std::optional<ActivityRecord>> Engine::read_activity(const storage::Reader& reader,
                                                            const ActivityRef& ref) {
  HERALD_ASSIGN_OR_RETURN(
      auto raw, reader.get(storage::Space::kState,
                           keys::activity_key(ref.workflow_id, ref.run_id, ref.activity_id)));
  return keys::open_optional<ActivityRecord>(raw, "activity");
}

Result<std::vector<TimerRecord>> Engine::due_timers(const storage::Reader& reader,
                                                    std::int64_t now_ms, std::size_t limit) {
  HERALD_ASSIGN_OR_RETURN(DueTimerPage page, due_timers_after(reader, now_ms, {}, limit));
  return std::move(page.timers);
}

Result<DueTimerPage> Engine::due_timers_after(const storage::Reader& reader, std::int64_t now_ms,
                                              std::string_view cursor, std::size_t limit) {
  const std::string prefix = keys::sub_prefix(keys::kTimerSub);
  const std::string end = now_ms == std::numeric_limits<std::int64_t>::max()
                              ? keys::prefix_end(prefix)
                              : keys::timer_bound(now_ms + 1);
  const std::string begin = cursor.empty() ? prefix : std::string(cursor);
  DueTimerPage page;
  auto it = reader.scan(storage::Space::kState, begin, end);
  for (; it->valid() && page.timers.size() < std::min(limit, kMaxReadLimit); it->next()) {
    HERALD_ASSIGN_OR_RETURN(TimerRecord timer, keys::open<TimerRecord>(it->value(), "timer"));
    page.timers.push_back(std::move(timer));
    page.next_cursor = std::string(it->key()) + '\0';  // the least key after this one
  }
  HERALD_RETURN_IF_ERROR(it->status());
  if (page.timers.empty()) {
    page.next_cursor = begin;
  }
  return page;
}

Result<std::vector<ActivityRecord>> Engine::dispatchable_activities(const storage::Reader& reader,
                                                                    std::size_t limit) {
  const std::string prefix = keys::sub_prefix(keys::kDispatchSub);
  std::vector<ActivityRecord> out;
  auto it = reader.scan(storage::Space::kState, prefix, keys::prefix_end(prefix));
  for (; it->valid() && out.size() < std::min(limit, kMaxReadLimit); it->next()) {
    std::string_view activity_key;
    if (!open_record(it->value(), activity_key)) {
      return Status::corruption("dispatch index record fails its checksum");
    }
    HERALD_ASSIGN_OR_RETURN(auto raw, reader.get(storage::Space::kState, activity_key));
    HERALD_ASSIGN_OR_RETURN(auto act, keys::open_optional<ActivityRecord>(raw, "activity"));
    if (!act || act->phase() != workflowpb::DISPATCHABLE) {
      return Status::corruption("the dispatch index names an activity that is not dispatchable");
    }
    out.push_back(std::move(*act));
  }
  HERALD_RETURN_IF_ERROR(it->status());
  return out;
}

}  // namespace herald::workflow
