#include "server/workflow_host.h"

#include <spdlog/spdlog.h>

#include "messaging/delivery.h"
#include "messaging/providers.h"
#include "server/node_metrics.h"
#include "workflow/demo.h"

namespace herald::server {

// "demo.effect": the side effect is a KV key "effects/<idempotency key>" created with
// compare-and-set (must not exist). A second run of the same activity — after a retry or a
// failover — finds the key and succeeds without a second effect.
class WorkflowHost::DemoEffectHandler final : public workflow::ActivityHandler {
 public:
  explicit DemoEffectHandler(ProposeFn propose) : propose_(std::move(propose)) {}

  void run(const workflow::ActivityTask& task, std::function<void()> heartbeat,
           std::function<void(workflow::ActivityOutcome)> done) override {
    rsmpb::Command c;
    auto* put = c.mutable_kv_put();
    put->set_key("effects/" + task.idempotency_key);
    put->set_value(task.input);
    put->set_has_expected_revision(true);
    put->set_expected_revision(0);
    propose_(std::move(c), [done = std::move(done)](Result<rsmpb::CommandResult> r) {
      workflow::ActivityOutcome outcome;
      const auto code = r.ok() ? static_cast<Code>(r->code()) : r.status().code();
      // Created now, or created by an earlier attempt: either way the effect exists once.
      outcome.ok = code == Code::kOk || code == Code::kFailedPrecondition;
      if (!outcome.ok) {
        outcome.error_type = std::string(code_name(code));
        outcome.error_message = r.ok() ? r->message() : r.status().message();
      }
      done(std::move(outcome));
    });
  }

 private:
  ProposeFn propose_;
};

// Runs another handler and counts each attempt's outcome in the node's metrics.
class WorkflowHost::CountingHandler final : public workflow::ActivityHandler {
 public:
  CountingHandler(const std::string& activity, workflow::ActivityHandler* inner,
                  NodeMetrics* metrics)
      : activity_(activity), inner_(inner), metrics_(metrics) {}

  void run(const workflow::ActivityTask& task, std::function<void()> heartbeat,
           std::function<void(workflow::ActivityOutcome)> done) override {
    if (task.attempt > 1) metrics_->activity_retries.with({activity_}).inc();
    if (task.attempt == 1 && activity_ == messaging::kEmailActivity) metrics_->escalations.inc();
    inner_->run(task, std::move(heartbeat),
                [this, done = std::move(done)](workflow::ActivityOutcome outcome) {
                  count(outcome);
                  done(std::move(outcome));
                });
  }

 private:
  void count(const workflow::ActivityOutcome& outcome) {
    const std::string_view result = outcome.ok ? std::string_view("ok") : outcome.error_type;
    metrics_->activity_attempts.with({activity_, result}).inc();
    if (result == messaging::kPushUnregistered || result == messaging::kPushInvalidToken) {
      metrics_->push_tokens_invalidated.inc();
    }
  }

  const std::string activity_;
  workflow::ActivityHandler* inner_;
  NodeMetrics* metrics_;
};

WorkflowHost::WorkflowHost(const storage::Reader* state, const ProposeFn& propose,
                           std::vector<std::shared_ptr<const workflow::WorkflowType>> types,
                           std::map<std::string, workflow::ActivityHandler*, std::less<>> handlers,
                           NodeMetrics* metrics, AttemptOriginFn origin) {
  for (auto type : {workflow::make_demo_pipeline_type(), workflow::make_demo_sleep_type(),
                    workflow::make_demo_inbox_type()}) {
    types.push_back(std::move(type));
  }
  for (auto& type : types) {
    type_names_.emplace_back(type->name());
    const Status added = registry_.add(std::move(type));
    HERALD_ASSERT(added.ok(), "every workflow type registers once");
  }
  engine_ = std::make_unique<workflow::Engine>(&registry_);
  demo_effect_ = std::make_unique<DemoEffectHandler>(propose);
  const bool inserted = handlers.emplace(workflow::kDemoEffectActivity, demo_effect_.get()).second;
  HERALD_ASSERT(inserted, "the demo activity type is built in");
  if (metrics != nullptr) {
    for (auto& [activity, handler] : handlers) {
      counting_.push_back(std::make_unique<CountingHandler>(activity, handler, metrics));
      handler = counting_.back().get();
    }
  }
  runtime_ = std::make_unique<workflow::Runtime>(
      state, engine_.get(), std::move(handlers),
      [propose, origin = std::move(origin)](workflowpb::WorkflowCommand command) {
        if (command.has_report() && origin) {
          const AttemptOrigin who = origin();
          command.mutable_report()->set_node_id(who.node_id);
          command.mutable_report()->set_term(who.term);
        }
        rsmpb::Command c;
        c.mutable_module()->set_name(workflow::kModuleName);
        c.mutable_module()->set_payload(command.SerializeAsString());
        propose(std::move(c), [](const Result<rsmpb::CommandResult>& r) {
          // The runtime re-proposes what did not take effect (timers re-scanned, activities
          // re-dispatched); a lost proposal here only costs time.
          if (!r.ok()) {
            spdlog::debug("workflow runtime proposal failed: {}", r.status().to_string());
          }
        });
      });
}

WorkflowHost::~WorkflowHost() = default;

}  // namespace herald::server
