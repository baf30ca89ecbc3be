#include "messaging/host.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <utility>

#include "base/assert.h"
#include "messaging/delivery.h"
#include "messaging/read_sync.h"

namespace herald::messaging {

namespace {

using workflow::ActivityOutcome;
using Done = std::function<void(ActivityOutcome)>;

// Proposals that did not reach the log (no leader, leadership lost) are worth retrying.
constexpr char kUnavailableError[] = "unavailable";

ActivityOutcome failure(std::string error_type, std::string message) {
  return ActivityOutcome{false, {}, std::move(error_type), std::move(message), 0, {}};
}

ActivityOutcome success(std::string output = {}) {
  return ActivityOutcome{true, std::move(output), {}, {}, 0, {}};
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
             PushProvider* push, EmailProvider* email)
      : state_(state),
        propose_(std::move(propose)),
        post_(std::move(post)),
        push_(push),
        email_(email) {}

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
  // The push requests for `task`'s devices that can be reached (a token is registered).
  [[nodiscard]] Result<std::vector<PushRequest>> push_requests(
      const workflow::ActivityTask& task, const messagingpb::PushTask& push_task) const;

  const storage::Reader* state_;
  Host::ProposeFn propose_;
  Host::PostFn post_;
  PushProvider* push_;
  EmailProvider* email_;
};

Result<std::vector<PushRequest>> Activities::push_requests(
    const workflow::ActivityTask& task, const messagingpb::PushTask& push_task) const {
  std::vector<PushRequest> requests;
  for (const std::string& device_id : push_task.device_ids()) {
    HERALD_ASSIGN_OR_RETURN(auto device, Domain::get_device(*state_, device_id));
    if (!device || device->push_token().empty() || device->user_id() != push_task.user_id()) {
      continue;  // removed, or never registered for push: nothing to notify
    }
    PushRequest r;
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
    requests.push_back(std::move(r));
  }
  return requests;
}

// Pushes to every reachable device at once. The attempt succeeds when every notification was
// accepted, or when the only failures are permanent (a dead token) and some device was reached;
// a retryable failure fails the attempt, so the whole push is retried with backoff.
void Activities::push(const workflow::ActivityTask& task, Done done) {
  messagingpb::PushTask push_task;
  if (!push_task.ParseFromString(task.input)) {
    done(failure(kPushPayloadTooLarge, "the push task does not decode"));
    return;
  }
  auto requests = push_requests(task, push_task);
  if (!requests.ok()) {
    done(failure(kUnavailableError, requests.status().to_string()));
    return;
  }
  if (requests->empty()) {
    done(success("no device to notify"));
    return;
  }
  struct Gather {
    std::size_t pending = 0;
    std::size_t sent = 0;
    std::optional<ProviderResult> retryable;
    std::optional<ProviderResult> permanent;
    Done done;
  };
  auto gather = std::make_shared<Gather>();
  gather->pending = requests->size();
  gather->done = std::move(done);
  for (const auto& request : *requests) {
    push_->send(request, [this, gather](ProviderResult r) {
      post_([gather, r = std::move(r)]() mutable {
        if (r.ok) {
          ++gather->sent;
        } else if (r.error_type == kPushUnavailable || r.error_type.empty()) {
          gather->retryable = std::move(r);
        } else {
          gather->permanent = std::move(r);
        }
        if (--gather->pending > 0) {
          return;
        }
        if (gather->retryable) {
          gather->done(failure(gather->retryable->error_type.empty()
                                   ? std::string(kPushUnavailable)
                                   : gather->retryable->error_type,
                               gather->retryable->error_message));
        } else if (gather->permanent && gather->sent == 0) {
          gather->done(failure(gather->permanent->error_type, gather->permanent->error_message));
        } else {
          gather->done(success(fmt::format("pushed to {} device(s)", gather->sent)));
        }
      });
    });
  }
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
  email_->send(request, [this, done = std::move(done)](ProviderResult r) mutable {
    post_([r = std::move(r), done = std::move(done)] {
      done(r.ok
               ? success("sent")
               : failure(r.error_type.empty() ? kEmailUnavailable : r.error_type, r.error_message));
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
           EmailProvider* email)
    : sink_(std::make_unique<EngineSink>()), domain_(std::make_unique<Domain>(sink_.get())) {
  HERALD_ASSERT(state != nullptr && push != nullptr && email != nullptr,
                "the messaging host needs state and providers");
  auto activities =
      std::make_shared<Activities>(state, std::move(propose), std::move(post), push, email);
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

void Host::bind_engine(workflow::Engine* engine) {
  HERALD_ASSERT(engine != nullptr, "bind a real engine");
  sink_->bind(engine);
}

}  // namespace herald::messaging
