#include "messaging/host.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <utility>

#include "base/assert.h"
#include "base/log.h"
#include "messaging/delivery.h"
#include "messaging/read_sync.h"

namespace herald::messaging {

namespace {

using workflow::ActivityOutcome;
using Done = std::function<void(ActivityOutcome)>;

// Proposals that did not reach the log (no leader, leadership lost) are worth retrying.
constexpr char kUnavailableError[] = "unavailable";

// ProviderAttempt.status values: the service accepted the call; it refused it or could not be
// reached; nothing was dispatched (no target, no provider); a recording provider journaled the
// call in place of a provider (nothing left the node).
constexpr char kAttemptAccepted[] = "accepted";
constexpr char kAttemptFailed[] = "failed";
constexpr char kAttemptNotSent[] = "not_sent";
constexpr char kAttemptRecorded[] = "recorded";

ActivityOutcome failure(std::string error_type, std::string message) {
  return ActivityOutcome{false, {}, std::move(error_type), std::move(message), 0, {}, false};
}

ActivityOutcome success(std::string output = {}) {
  return ActivityOutcome{true, std::move(output), {}, {}, 0, {}, false};
}

// A provider's failed answer as an activity outcome: its error type (`unavailable` when it gave
// none), its retry hint, and whether a guard refused the call before it reached the service.
ActivityOutcome provider_failure(const ProviderResult& r, std::string_view unavailable) {
  ActivityOutcome outcome =
      failure(r.error_type.empty() ? std::string(unavailable) : r.error_type, r.error_message);
  outcome.retry_after_ms =
      static_cast<std::uint64_t>(std::max<std::int64_t>(0, r.retry_after_ms.value_or(0)));
  outcome.not_dispatched = r.refused;
  return outcome;
}

Status status_of(const rsmpb::CommandResult& result) {
  return result.code() == 0 ? Status() : Status(static_cast<Code>(result.code()), result.message());
}

rsmpb::Command module_command(const messagingpb::MessagingCommand& command) {
  rsmpb::Command c;
  c.mutable_module()->set_name(kModuleName);
  c.mutable_module()->set_payload(command.SerializeAsString());
  return c;
}

// The domain refuses authorization with kFailedPrecondition and this message prefix.
bool is_permission_denied(const rsmpb::CommandResult& result) {
  return static_cast<Code>(result.code()) == Code::kFailedPrecondition &&
         result.message().starts_with("permission denied");
}

}  // namespace

ActivityOutcome outcome_of(const Result<rsmpb::CommandResult>& result) {
  if (!result.ok()) {
    return failure(kUnavailableError, result.status().to_string());
  }
  if (result->code() != 0) {
    return failure(std::string(code_name(static_cast<Code>(result->code()))), result->message());
  }
  return success(result->payload());
}

// Applies workflow commands inside the domain command's batch, through the engine.
class Host::EngineSink final : public WorkflowSink {
 public:
  void bind(workflow::Engine* engine) { engine_ = engine; }
  void set_event_starts(EventStarts starts) { event_starts_ = std::move(starts); }

  Status emit(rsm::ApplyBatch& batch, std::int64_t now_ms, const DomainEvent& event) override {
    if (!event_starts_) {
      return Status::ok_status();
    }
    std::vector<workflowpb::StartWorkflow> starts;
    HERALD_RETURN_IF_ERROR(event_starts_(batch, now_ms, event, starts));
    for (workflowpb::StartWorkflow& start : starts) {
      workflowpb::WorkflowCommand c;
      *c.mutable_start() = std::move(start);
      HERALD_RETURN_IF_ERROR(apply(c, now_ms, batch));
    }
    return Status::ok_status();
  }

  Status start(rsm::ApplyBatch& batch, std::int64_t now_ms, std::string_view workflow_id,
               std::string_view type, std::string input) override {
    workflowpb::WorkflowCommand c;
    auto* start = c.mutable_start();
    start->set_workflow_id(std::string(workflow_id));
    start->set_type(std::string(type));
    start->set_input(std::move(input));
    return apply(c, now_ms, batch);
  }

  Status signal(rsm::ApplyBatch& batch, std::int64_t now_ms, std::string_view workflow_id,
                std::string_view name, std::string payload) override {
    workflowpb::WorkflowCommand c;
    auto* signal = c.mutable_signal();
    signal->set_workflow_id(std::string(workflow_id));
    signal->set_name(std::string(name));
    signal->set_payload(std::move(payload));
    return apply(c, now_ms, batch);
  }

  Status cancel(rsm::ApplyBatch& batch, std::int64_t now_ms, std::string_view workflow_id,
                std::string_view reason) override {
    workflowpb::WorkflowCommand c;
    auto* cancel = c.mutable_cancel();
    cancel->set_workflow_id(std::string(workflow_id));
    cancel->set_reason(std::string(reason));
    return apply(c, now_ms, batch);
  }

 private:
  Status apply(const workflowpb::WorkflowCommand& c, std::int64_t now_ms, rsm::ApplyBatch& batch) {
    HERALD_ASSERT(engine_ != nullptr, "the messaging host's engine is bound before any apply");
    return status_of(engine_->apply_command(c, now_ms, batch));
  }

  workflow::Engine* engine_ = nullptr;
  EventStarts event_starts_;
};

// One activity type's handler: a function of the task.
class Host::Handler final : public workflow::ActivityHandler {
 public:
  using Fn = std::function<void(const workflow::ActivityTask&, Done)>;
  explicit Handler(Fn fn) : fn_(std::move(fn)) {}

  void run(const workflow::ActivityTask& task, std::function<void()> /*heartbeat*/,
           Done done) override {
    fn_(task, std::move(done));
  }

 private:
  Fn fn_;
};

namespace {

// The leader-side work of every messaging activity. Runs on the raft thread.
class Activities {
 public:
  Activities(const storage::Reader* state, Host::ProposeFn propose, Host::PostFn post,
             PushProvider* push, EmailProvider* email, const Clock* clock)
      : state_(state),
        propose_(std::move(propose)),
        post_(std::move(post)),
        push_(push),
        email_(email),
        clock_(clock) {}

  void push(const workflow::ActivityTask& task, Done done);
  void email(const workflow::ActivityTask& task, Done done);
  void set_marker(const workflow::ActivityTask& task, Done done);
  void restore_marker(const workflow::ActivityTask& task, Done done);
  void advance_cursor(const workflow::ActivityTask& task, Done done);
  void publish_receipts(const workflow::ActivityTask& task, Done done);

 private:
  void propose(const messagingpb::MessagingCommand& command, rsm::ProposeCallback done) {
    propose_(module_command(command), std::move(done));
  }
  void publish_from(messagingpb::PublishReadReceipts op, Done done);

  // One device of a push task: its request, or why none is sent; then the provider's answer.
  struct DevicePush {
    PushRequest request;
    std::string not_sent;  // non-empty: nothing is dispatched, for this reason
    std::optional<ProviderResult> result;
    messagingpb::ProviderAttempt attempt;  // what the timeline shows
  };
  struct PushGather {
    std::string workflow_id;  // the delivery the pushes are for (log lines name it)
    bool per_device = false;
    std::vector<DevicePush> pushes;
    std::size_t pending = 0;  // answers still to come
    Done done;
  };
  [[nodiscard]] Result<std::vector<DevicePush>> plan_pushes(
      const workflow::ActivityTask& task, const messagingpb::PushTask& push_task) const;
  static void record_answer(messagingpb::ProviderAttempt& attempt, const ProviderResult& r,
                            MonoMs latency_ms);
  static void log_push_answer(std::string_view workflow_id, const PushRequest& request,
                              const ProviderResult& r, MonoMs latency_ms);
  void invalidate_then_finish(const std::shared_ptr<PushGather>& gather, std::size_t from);
  static void finish_push(const std::shared_ptr<PushGather>& gather);
  [[nodiscard]] static ActivityOutcome device_outcome(const std::vector<DevicePush>& pushes);
  [[nodiscard]] static ActivityOutcome combined_outcome(const std::vector<DevicePush>& pushes);

  const storage::Reader* state_;
  Host::ProposeFn propose_;
  Host::PostFn post_;
  PushProvider* push_;
  EmailProvider* email_;
  const Clock* clock_;
};

// A reason kept in a timeline or a device record: at most kMaxAttemptReasonBytes, cut at a UTF-8
// character boundary.
std::string bounded_reason(std::string_view reason) {
  if (reason.size() <= kMaxAttemptReasonBytes) {
    return std::string(reason);
  }
  std::size_t cut = kMaxAttemptReasonBytes;
  while (cut > 0 && (static_cast<unsigned char>(reason[cut]) & 0xC0U) == 0x80U) {
    --cut;  // a continuation byte: the character started earlier
  }
  return std::string(reason.substr(0, cut));
}

// A provider's answer in a log line: "accepted", "recorded, <message>" or "failed, <error type>:
// <message>" (an answer without an error type counts as `unavailable`).
std::string answer_text(const ProviderResult& r, std::string_view unavailable) {
  if (r.ok) return "accepted";
  if (r.recorded) return fmt::format("recorded, not sent: {}", r.error_message);
  return fmt::format("failed, {}: {}", r.error_type.empty() ? unavailable : r.error_type,
                     r.error_message);
}

bool is_permanent_token_error(std::string_view error_type) {
  return error_type == kPushUnregistered || error_type == kPushInvalidToken;
}

Result<std::vector<Activities::DevicePush>> Activities::plan_pushes(
    const workflow::ActivityTask& task, const messagingpb::PushTask& push_task) const {
  std::vector<DevicePush> plan;
  for (const std::string& device_id : push_task.device_ids()) {
    HERALD_ASSIGN_OR_RETURN(auto device, Domain::get_device(*state_, device_id));
    DevicePush p;
    p.attempt.set_device_id(device_id);
    if (!device || device->user_id() != push_task.user_id()) {
      p.not_sent = "the device was removed";
    } else if (device->push_token().empty()) {
      p.not_sent = "the device has no push token";
    } else if (device->push_target_invalid()) {
      p.not_sent = fmt::format(
          "the device's push target is invalid ({}) until it registers a "
          "new token",
          device->push_invalid_error_type());
    }
    if (device) {
      p.attempt.set_provider(device->push_provider());
    }
    if (p.not_sent.empty()) {
      PushRequest& r = p.request;
      r.idempotency_key = task.idempotency_key + "/" + device_id;
      r.user_id = push_task.user_id();
      r.device_id = device_id;
      r.platform = device->platform();
      r.provider = device->push_provider();
      r.token = device->push_token();
      r.conversation_id = push_task.conversation_id();
      r.seq = push_task.seq();
      r.title = push_task.sender_user_id().empty() ? "Herald" : push_task.sender_user_id();
      r.body = push_task.preview();
      r.attempt = task.attempt;
    } else {
      p.attempt.set_status(kAttemptNotSent);
      p.attempt.set_error_type(kPushNoTarget);
      p.attempt.set_reason(p.not_sent);
    }
    plan.push_back(std::move(p));
  }
  return plan;
}

// Sends every planned push at once; `finish` runs on the raft thread once all have answered.
void Activities::push(const workflow::ActivityTask& task, Done done) {
  messagingpb::PushTask push_task;
  if (!push_task.ParseFromString(task.input)) {
    done(failure(kPushPayloadTooLarge, "the push task does not decode"));
    return;
  }
  auto plan = plan_pushes(task, push_task);
  if (!plan.ok()) {
    done(failure(kUnavailableError, plan.status().to_string()));
    return;
  }
  auto gather = std::make_shared<PushGather>();
  gather->workflow_id = task.workflow_id;
  gather->per_device = push_task.per_device();
  gather->pushes = std::move(plan).value();
  gather->done = std::move(done);
  for (const DevicePush& p : gather->pushes) {
    gather->pending += p.not_sent.empty() ? 1 : 0;
    if (!p.not_sent.empty()) {
      log::info({log::conversation(push_task.conversation_id()), log::seq(push_task.seq()),
                 log::workflow(task.workflow_id), log::user(push_task.user_id()),
                 log::device(p.attempt.device_id())},
                "push for {}#{} to device {}/{} not sent: {}", push_task.conversation_id(),
                push_task.seq(), push_task.user_id(), p.attempt.device_id(), p.not_sent);
    }
  }
  if (gather->pending == 0) {
    finish_push(gather);
    return;
  }
  for (std::size_t i = 0; i < gather->pushes.size(); ++i) {
    if (!gather->pushes[i].not_sent.empty()) {
      continue;
    }
    const MonoMs sent_ms = clock_->mono_ms();
    push_->send(gather->pushes[i].request, [this, gather, i, sent_ms](ProviderResult r) {
      const MonoMs latency_ms = clock_->mono_ms() - sent_ms;
      post_([this, gather, i, latency_ms, r = std::move(r)]() mutable {
        log_push_answer(gather->workflow_id, gather->pushes[i].request, r, latency_ms);
        record_answer(gather->pushes[i].attempt, r, latency_ms);
        gather->pushes[i].result = std::move(r);
        if (--gather->pending == 0) {
          invalidate_then_finish(gather, 0);
        }
      });
    });
  }
}

// A push the provider took at debug level, one it refused at info: the message's, workflow's and
// device's ids as fields (base/log.h).
void Activities::log_push_answer(std::string_view workflow_id, const PushRequest& request,
                                 const ProviderResult& r, MonoMs latency_ms) {
  const auto level = r.ok ? spdlog::level::debug : spdlog::level::info;
  log::write(level,
             {log::conversation(request.conversation_id), log::seq(request.seq),
              log::workflow(workflow_id), log::user(request.user_id),
              log::device(request.device_id), log::Field("attempt", request.attempt)},
             "push for {}#{} to device {}/{} ({}, attempt {}): {} after {} ms",
             request.conversation_id, request.seq, request.user_id, request.device_id,
             request.provider, request.attempt, answer_text(r, kPushUnavailable), latency_ms);
}

void Activities::record_answer(messagingpb::ProviderAttempt& attempt, const ProviderResult& r,
                               MonoMs latency_ms) {
  attempt.set_status(r.ok ? kAttemptAccepted : kAttemptFailed);
  attempt.set_latency_ms(latency_ms);
  if (r.ok) {
    attempt.set_provider_id(bounded_reason(r.provider_id));
    return;
  }
  if (r.recorded) {
    attempt.set_status(kAttemptRecorded);  // journaled in place of a provider: never "accepted"
  } else if (r.error_type == kPushNoProvider || r.error_type == kEmailNoProvider) {
    attempt.set_status(kAttemptNotSent);  // refused before any dispatch: say so, not "failed"
  }
  attempt.set_error_type(r.error_type.empty() ? kPushUnavailable : r.error_type);
  attempt.set_reason(bounded_reason(r.error_message));
  attempt.set_retry_after_ms(r.retry_after_ms.value_or(0));
}

// A permanent token error marks the device's push target invalid, through the log, before the
// attempt reports: one device at a time from `from`, whatever each proposal's outcome (a lost one
// is proposed again by the next push that meets the same token).
void Activities::invalidate_then_finish(const std::shared_ptr<PushGather>& gather,
                                        std::size_t from) {
  for (std::size_t i = from; i < gather->pushes.size(); ++i) {
    const DevicePush& p = gather->pushes[i];
    if (!p.result || p.result->ok || !is_permanent_token_error(p.result->error_type)) {
      continue;
    }
    messagingpb::MessagingCommand c;
    auto* op = c.mutable_invalidate_push_target();
    op->set_user_id(p.request.user_id);
    op->set_device_id(p.request.device_id);
    op->set_push_provider(p.request.provider);
    op->set_push_token(p.request.token);
    op->set_error_type(bounded_reason(p.result->error_type));
    op->set_reason(bounded_reason(p.result->error_message));
    propose(c, [this, gather, i](const Result<rsmpb::CommandResult>& r) {
      if (!r.ok() || r->code() != 0) {
        SPDLOG_WARN("marking the push target of device {} invalid failed: {}",
                    gather->pushes[i].request.device_id,
                    r.ok() ? r->message() : r.status().to_string());
      }
      invalidate_then_finish(gather, i + 1);
    });
    return;
  }
  finish_push(gather);
}

void Activities::finish_push(const std::shared_ptr<PushGather>& gather) {
  messagingpb::ProviderAttempts details;
  for (const DevicePush& p : gather->pushes) {
    *details.add_attempts() = p.attempt;
  }
  std::string encoded = details.SerializeAsString();
  while (encoded.size() > workflow::kMaxAttemptDetailsBytes && details.attempts_size() > 0) {
    details.mutable_attempts()->RemoveLast();  // a version 1 task over many devices
    encoded = details.SerializeAsString();
  }
  ActivityOutcome outcome =
      gather->per_device ? device_outcome(gather->pushes) : combined_outcome(gather->pushes);
  outcome.details = std::move(encoded);
  gather->done(std::move(outcome));
}

// Version 2: the task's one device decides.
ActivityOutcome Activities::device_outcome(const std::vector<DevicePush>& pushes) {
  if (pushes.size() != 1) {
    return failure(kPushNoTarget, fmt::format("a per-device task names {} devices", pushes.size()));
  }
  const DevicePush& p = pushes.front();
  if (!p.not_sent.empty()) {
    return failure(kPushNoTarget, p.not_sent);
  }
  HERALD_ASSERT(p.result.has_value(), "every sent push has its answer");
  if (p.result->ok) {
    return success(p.result->provider_id.empty() ? "pushed" : p.result->provider_id);
  }
  return provider_failure(*p.result, kPushUnavailable);
}

// Version 1: the attempt succeeds when every notification was accepted, or when the only
// failures are permanent (a dead token) and some device was reached; a retryable failure fails
// the attempt, so the whole push is retried with backoff. Devices with nothing to push to are
// passed over.
ActivityOutcome Activities::combined_outcome(const std::vector<DevicePush>& pushes) {
  std::size_t sent = 0;
  const ProviderResult* retryable = nullptr;
  const ProviderResult* permanent = nullptr;
  for (const DevicePush& p : pushes) {
    if (!p.result) {
      continue;
    }
    if (p.result->ok) {
      ++sent;
    } else if (p.result->error_type == kPushUnavailable || p.result->error_type.empty()) {
      retryable = &*p.result;
    } else {
      permanent = &*p.result;
    }
  }
  if (retryable != nullptr) {
    return failure(kPushUnavailable, retryable->error_message);
  }
  if (permanent != nullptr && sent == 0) {
    return failure(permanent->error_type, permanent->error_message);
  }
  if (sent == 0) {
    return success("no device to notify");
  }
  return success(fmt::format("pushed to {} device(s)", sent));
}

void Activities::email(const workflow::ActivityTask& task, Done done) {
  messagingpb::EmailTask email_task;
  if (!email_task.ParseFromString(task.input)) {
    done(failure(kEmailRejected, "the email task does not decode"));
    return;
  }
  auto user = Domain::get_user(*state_, email_task.user_id());
  if (!user.ok()) {
    done(failure(kUnavailableError, user.status().to_string()));
    return;
  }
  if (!*user || (*user)->email().empty()) {
    done(failure(kEmailRejected, "the user has no email address"));
    return;
  }
  EmailRequest request;
  request.idempotency_key = task.idempotency_key;
  request.to = (*user)->email();
  request.subject = fmt::format("You have an unread message in {}", email_task.conversation_id());
  request.body = email_task.preview();
  request.user_id = email_task.user_id();
  request.conversation_id = email_task.conversation_id();
  request.seq = email_task.seq();
  request.sender_user_id = email_task.sender_user_id();
  request.attempt = task.attempt;
  const MonoMs sent_ms = clock_->mono_ms();
  email_->send(request, [this, sent_ms, request, workflow_id = task.workflow_id,
                         done = std::move(done)](ProviderResult r) mutable {
    const MonoMs latency_ms = clock_->mono_ms() - sent_ms;
    post_([r = std::move(r), latency_ms, request = std::move(request),
           workflow_id = std::move(workflow_id), done = std::move(done)] {
      log::write(r.ok ? spdlog::level::debug : spdlog::level::info,
                 {log::conversation(request.conversation_id), log::seq(request.seq),
                  log::workflow(workflow_id), log::user(request.user_id),
                  log::Field("attempt", request.attempt)},
                 "escalation email for {}#{} to {} (attempt {}): {} after {} ms",
                 request.conversation_id, request.seq, request.user_id, request.attempt,
                 answer_text(r, kEmailUnavailable), latency_ms);
      messagingpb::ProviderAttempts details;
      messagingpb::ProviderAttempt* attempt = details.add_attempts();
      attempt->set_provider("email");
      record_answer(*attempt, r, latency_ms);
      if (!r.ok && r.error_type.empty()) {
        attempt->set_error_type(kEmailUnavailable);
      }
      ActivityOutcome outcome = r.ok ? success("sent") : provider_failure(r, kEmailUnavailable);
      outcome.details = details.SerializeAsString();
      done(std::move(outcome));
    });
  });
}

void Activities::set_marker(const workflow::ActivityTask& task, Done done) {
  auto step = decode_read_sync_step(task.input);
  if (!step.ok()) {
    done(failure(kReadNotMember, step.status().to_string()));
    return;
  }
  messagingpb::MessagingCommand c;
  auto* op = c.mutable_set_read_marker();
  op->set_user_id(step->input.user_id());
  op->set_device_id(step->input.device_id());
  op->set_conversation_id(step->input.conversation_id());
  op->set_seq(step->input.up_to_seq());
  op->set_idempotency_key(task.idempotency_key);
  propose(c, [done = std::move(done)](const Result<rsmpb::CommandResult>& r) {
    if (r.ok() && r->code() != 0 &&
        (is_permission_denied(*r) || static_cast<Code>(r->code()) == Code::kNotFound)) {
      done(failure(kReadNotMember, r->message()));
      return;
    }
    done(outcome_of(r));  // the output is the ReadMarkerResult the restore needs
  });
}

void Activities::restore_marker(const workflow::ActivityTask& task, Done done) {
  auto step = decode_read_sync_step(task.input);
  messagingpb::ReadMarkerResult marks;
  if (!step.ok() || step->outputs.empty() || !marks.ParseFromString(step->outputs.front())) {
    done(failure("read.bad_input", "the restore step's input does not decode"));
    return;
  }
  messagingpb::MessagingCommand c;
  auto* op = c.mutable_restore_read_marker();
  op->set_user_id(step->input.user_id());
  op->set_device_id(step->input.device_id());
  op->set_conversation_id(step->input.conversation_id());
  op->set_previous(marks.previous());
  op->set_marker(marks.marker());
  propose(c,
          [done = std::move(done)](const Result<rsmpb::CommandResult>& r) { done(outcome_of(r)); });
}

void Activities::advance_cursor(const workflow::ActivityTask& task, Done done) {
  auto step = decode_read_sync_step(task.input);
  if (!step.ok()) {
    done(failure(kReadNotMember, step.status().to_string()));
    return;
  }
  messagingpb::MessagingCommand c;
  auto* op = c.mutable_advance_read_cursor();
  op->set_user_id(step->input.user_id());
  op->set_conversation_id(step->input.conversation_id());
  op->set_seq(step->input.up_to_seq());
  op->set_device_id(step->input.device_id());
  propose(c, [done = std::move(done)](const Result<rsmpb::CommandResult>& r) {
    if (r.ok() && r->code() != 0) {
      const auto code = static_cast<Code>(r->code());
      if (is_permission_denied(*r) || code == Code::kNotFound) {
        done(failure(kReadNotMember, r->message()));
        return;
      }
      if (code == Code::kFailedPrecondition) {
        done(failure(kReadBeyondLastSeq, r->message()));
        return;
      }
    }
    done(outcome_of(r));
  });
}

void Activities::publish_receipts(const workflow::ActivityTask& task, Done done) {
  auto step = decode_read_sync_step(task.input);
  if (!step.ok()) {
    done(failure("read.bad_input", step.status().to_string()));
    return;
  }
  messagingpb::PublishReadReceipts op;
  op.set_user_id(step->input.user_id());
  op.set_conversation_id(step->input.conversation_id());
  op.set_up_to_seq(step->input.up_to_seq());
  op.set_device_id(step->input.device_id());
  publish_from(std::move(op), std::move(done));
}

// PublishReadReceipts handles a bounded run of messages per command: repeat until complete.
void Activities::publish_from(messagingpb::PublishReadReceipts op, Done done) {
  messagingpb::MessagingCommand c;
  *c.mutable_publish_read_receipts() = op;
  propose(c, [this, op, done = std::move(done)](const Result<rsmpb::CommandResult>& r) mutable {
    messagingpb::ReceiptResult receipt;
    if (!r.ok() || r->code() != 0 || !receipt.ParseFromString(r->payload())) {
      done(outcome_of(r).ok ? failure("read.bad_result", "the receipt result does not decode")
                            : outcome_of(r));
      return;
    }
    if (receipt.complete()) {
      done(success(std::to_string(receipt.receipted_up_to())));
      return;
    }
    publish_from(std::move(op), std::move(done));
  });
}

}  // namespace

Host::Host(const storage::Reader* state, ProposeFn propose, PostFn post, PushProvider* push,
           EmailProvider* email, const Clock* clock)
    : sink_(std::make_unique<EngineSink>()), domain_(std::make_unique<Domain>(sink_.get())) {
  HERALD_ASSERT(state != nullptr && push != nullptr && email != nullptr && clock != nullptr,
                "the messaging host needs state, providers and a clock");
  auto activities =
      std::make_shared<Activities>(state, std::move(propose), std::move(post), push, email, clock);
  auto bind = [activities](void (Activities::*fn)(const workflow::ActivityTask&, Done)) {
    return std::make_unique<Handler>(
        [activities, fn](const workflow::ActivityTask& task, Done done) {
          ((*activities).*fn)(task, std::move(done));
        });
  };
  auto keep = [] {
    return std::make_unique<Handler>(
        [](const workflow::ActivityTask&, const Done& done) { done(success("kept")); });
  };
  handlers_.emplace(kPushActivity, bind(&Activities::push));
  handlers_.emplace(kEmailActivity, bind(&Activities::email));
  handlers_.emplace(kReadMarkerSetActivity, bind(&Activities::set_marker));
  handlers_.emplace(kReadMarkerRestoreActivity, bind(&Activities::restore_marker));
  handlers_.emplace(kReadCursorAdvanceActivity, bind(&Activities::advance_cursor));
  handlers_.emplace(kReadCursorKeepActivity, keep());
  handlers_.emplace(kReadReceiptsPublishActivity, bind(&Activities::publish_receipts));
  handlers_.emplace(kReadReceiptsKeepActivity, keep());
}

Host::~Host() = default;

std::vector<std::shared_ptr<const workflow::WorkflowType>> Host::types() {
  return {make_delivery_type(), make_read_sync_type()};
}

std::map<std::string, workflow::ActivityHandler*, std::less<>> Host::handlers() {
  std::map<std::string, workflow::ActivityHandler*, std::less<>> out;
  for (const auto& [type, handler] : handlers_) {
    out.emplace(type, handler.get());
  }
  return out;
}

void Host::set_event_starts(EventStarts starts) {
  sink_->set_event_starts(std::move(starts));
}

void Host::bind_engine(workflow::Engine* engine) {
  HERALD_ASSERT(engine != nullptr, "bind a real engine");
  sink_->bind(engine);
}

}  // namespace herald::messaging
