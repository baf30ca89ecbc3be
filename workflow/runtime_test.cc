#include "workflow/runtime.h"

#include <gtest/gtest.h>

#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "rsm/apply_batch.h"
#include "storage/mem_engine.h"
#include "workflow/definition.h"
#include "workflow/engine.h"
#include "workflow/saga.h"

namespace herald::workflow {
namespace {

constexpr char kWorkType[] = "test.work";      // runs activity "work" once, completes with it
constexpr char kSleepType[] = "test.sleep";    // sleeps for <input> ms on a timer, completes
constexpr char kOrphanType[] = "test.orphan";  // runs an activity no handler knows
constexpr char kWorkActivity[] = "work";
constexpr std::int64_t kStartMs = 1'000'000;

workflowpb::ActivityOptions no_retry() {
  workflowpb::ActivityOptions options;
  options.mutable_retry()->set_maximum_attempts(1);
  options.mutable_retry()->add_non_retryable_error_types(kUnknownActivityType);
  return options;
}

// One small type for all three test workflows: the type's name picks its behaviour.
class TestType final : public WorkflowType {
 public:
  explicit TestType(std::string name) : name_(std::move(name)) {}
  [[nodiscard]] std::string_view name() const override { return name_; }
  [[nodiscard]] std::string_view initial_state() const override { return "new"; }
  [[nodiscard]] Decision on_event(std::string_view state, std::string_view data,
                                  const Event& event) const override {
    switch (event.kind) {
      case Event::Kind::kStarted: return start(event.payload);
      case Event::Kind::kActivityCompleted: return {"done", "", {Action::complete(event.payload)}};
      case Event::Kind::kTimerFired: return {"done", "", {Action::complete("woke")}};
      case Event::Kind::kActivityFailed:
        return {"failed", "", {Action::fail(event.error_type, event.error_message)}};
      case Event::Kind::kSignal:
      case Event::Kind::kCancelRequested: break;
    }
    return {std::string(state), std::string(data), {}};
  }

 private:
  [[nodiscard]] Decision start(const std::string& input) const {
    if (name_ == kSleepType) {
      return {"sleeping", "", {Action::start_timer("nap", std::stoll(input))}};
    }
    const char* activity = name_ == kWorkType ? kWorkActivity : "nobody.runs.this";
    return {"working", "", {Action::schedule_activity(activity, "a", input, no_retry())}};
  }

  std::string name_;
};

// Keeps every task it is given; the test decides when (and whether) each one finishes.
class HeldHandler final : public ActivityHandler {
 public:
  struct Held {
    ActivityTask task;
    std::function<void()> heartbeat;
    std::function<void(ActivityOutcome)> done;
  };
  void run(const ActivityTask& task, std::function<void()> heartbeat,
           std::function<void(ActivityOutcome)> done) override {
    held.push_back(Held{task, std::move(heartbeat), std::move(done)});
  }
  std::vector<Held> held;
};

// One replica without raft: proposals queue up, and the test applies them like committed entries.
class Harness {
 public:
  using Handlers = std::map<std::string, ActivityHandler*, std::less<>>;

  // The test types, plus `extra` types; `handlers` join the held "work" handler.
  explicit Harness(std::vector<std::shared_ptr<const WorkflowType>> extra = {},
                   Handlers handlers = {})
      : engine_(&registry_) {
    for (const char* type : {kWorkType, kSleepType, kOrphanType}) {
      extra.push_back(std::make_shared<TestType>(type));
    }
    for (auto& type : extra) {
      EXPECT_TRUE(registry_.add(std::move(type)).ok());
    }
    handlers.emplace(kWorkActivity, &handler);
    runtime_ = std::make_unique<Runtime>(
        &store_, &engine_, std::move(handlers),
        [this](workflowpb::WorkflowCommand command) { proposed.push_back(std::move(command)); });
  }

  // Applies `command` stamped with the test clock, writes the batch, then tells the runtime.
  rsmpb::CommandResult apply(const workflowpb::WorkflowCommand& command) {
    rsmpb::Command wrapped;
    wrapped.set_wall_ms(now_ms);
    wrapped.mutable_module()->set_name(kModuleName);
    wrapped.mutable_module()->set_payload(command.SerializeAsString());
    rsm::ApplyBatch batch(&store_);
    rsmpb::CommandResult result = engine_.apply(++index_, wrapped, batch);
    EXPECT_TRUE(store_.write(batch.writes(), false).ok());
    runtime_->after_apply();
    return result;
  }
  void start(const std::string& id, const std::string& type, const std::string& input = "in") {
    workflowpb::WorkflowCommand command;
    command.mutable_start()->set_workflow_id(id);
    command.mutable_start()->set_type(type);
    command.mutable_start()->set_input(input);
    EXPECT_EQ(apply(command).code(), 0U);
  }
  // Applies every queued proposal, including those that applying them causes.
  void apply_proposed() {
    while (!proposed.empty()) {
      const workflowpb::WorkflowCommand command = std::move(proposed.front());
      proposed.pop_front();
      (void)apply(command);
    }
  }
  workflowpb::WorkflowRecord workflow(const std::string& id) const {
    auto record = Engine::read_workflow(store_, id);
    EXPECT_TRUE(record.ok() && record->has_value());
    return record.ok() && record->has_value() ? **record : workflowpb::WorkflowRecord{};
  }
  void tick() { runtime_->tick(now_ms); }
  Runtime& runtime() { return *runtime_; }

  HeldHandler handler;
  std::deque<workflowpb::WorkflowCommand> proposed;

  // The timers of every proposed FireTimers command, in proposal order.
  [[nodiscard]] std::vector<workflowpb::FireTimer> fires() const {
    std::vector<workflowpb::FireTimer> out;
    for (const auto& command : proposed) {
      for (const auto& fire : command.fire_timers().timers()) {
        out.push_back(fire);
      }
    }
    return out;
  }
  std::int64_t now_ms = kStartMs;

 private:
  storage::MemEngine store_;
  Registry registry_;
  Engine engine_;
  raft::Index index_ = 0;
  std::unique_ptr<Runtime> runtime_;
};

ActivityOutcome success(std::string output) {
  return ActivityOutcome{true, std::move(output), {}, {}, 0, {}, false};
}

TEST(Runtime, ActivityIsDispatchedOnceAndItsResultReported) {
  Harness h;
  h.runtime().on_leadership(true);
  h.start("w1", kWorkType, "payload");
  ASSERT_EQ(h.handler.held.size(), 1U);
  const ActivityTask& task = h.handler.held[0].task;
  EXPECT_EQ(task.workflow_id, "w1");
  EXPECT_EQ(task.activity_type, kWorkActivity);
  EXPECT_EQ(task.input, "payload");
  EXPECT_EQ(task.attempt, 1U);
  EXPECT_FALSE(task.idempotency_key.empty());
  // Rescans while it runs do not run it again.
  h.now_ms += kActivityRescanIntervalMs * 3;
  h.tick();
  h.runtime().after_apply();
  EXPECT_EQ(h.handler.held.size(), 1U);

  h.handler.held[0].heartbeat();
  ASSERT_EQ(h.proposed.size(), 1U);
  EXPECT_TRUE(h.proposed.front().has_heartbeat());
  h.handler.held[0].done(success("result"));
  ASSERT_EQ(h.proposed.size(), 2U);
  EXPECT_TRUE(h.proposed.back().has_report());
  EXPECT_TRUE(h.proposed.back().report().ok());
  h.apply_proposed();
  EXPECT_EQ(h.workflow("w1").status(), workflowpb::COMPLETED);
  EXPECT_EQ(h.workflow("w1").result(), "result");
  h.now_ms += kActivityRescanIntervalMs * 3;
  h.tick();
  EXPECT_EQ(h.handler.held.size(), 1U);
  EXPECT_TRUE(h.proposed.empty());
}

TEST(Runtime, AFailuresHintAndNotDispatchedReachTheReport) {
  Harness h;
  h.runtime().on_leadership(true);
  h.start("w1", kWorkType);
  ASSERT_EQ(h.handler.held.size(), 1U);
  ActivityOutcome refused{false, {}, "unavailable", "circuit open", 30'000, {}, true};
  h.handler.held[0].done(std::move(refused));
  ASSERT_EQ(h.proposed.size(), 1U);
  const workflowpb::ReportActivity& report = h.proposed.front().report();
  EXPECT_FALSE(report.ok());
  EXPECT_EQ(report.error_type(), "unavailable");
  EXPECT_EQ(report.retry_after_ms(), 30'000U);
  EXPECT_TRUE(report.not_dispatched());
}

TEST(Runtime, NewLeaderRedispatchesInFlightActivities) {
  Harness h;
  h.runtime().on_leadership(true);
  h.start("w1", kWorkType);
  h.start("w2", kWorkType);
  ASSERT_EQ(h.handler.held.size(), 2U);
  h.runtime().on_leadership(false);
  h.runtime().on_leadership(true);
  ASSERT_EQ(h.handler.held.size(), 4U);
  // The same attempts run again, under the same idempotency keys.
  EXPECT_EQ(h.handler.held[2].task.idempotency_key, h.handler.held[0].task.idempotency_key);
  EXPECT_EQ(h.handler.held[3].task.idempotency_key, h.handler.held[1].task.idempotency_key);
  EXPECT_EQ(h.handler.held[2].task.attempt, h.handler.held[0].task.attempt);
}

TEST(Runtime, StaleEpochCallbackIsDropped) {
  Harness h;
  h.runtime().on_leadership(true);
  h.start("w1", kWorkType);
  h.runtime().on_leadership(false);
  h.handler.held[0].heartbeat();
  h.handler.held[0].done(success("old"));
  EXPECT_TRUE(h.proposed.empty());  // a follower proposes nothing

  h.runtime().on_leadership(true);
  ASSERT_EQ(h.handler.held.size(), 2U);
  h.handler.held[0].done(success("old"));
  EXPECT_TRUE(h.proposed.empty());  // the earlier epoch's outcome is lost on purpose
  h.handler.held[1].done(success("new"));
  h.apply_proposed();
  EXPECT_EQ(h.workflow("w1").result(), "new");
}

TEST(Runtime, UnknownActivityTypeIsReportedAsNonRetryableFailure) {
  Harness h;
  h.runtime().on_leadership(true);
  h.start("w1", kOrphanType);
  ASSERT_EQ(h.proposed.size(), 1U);
  EXPECT_EQ(h.proposed.front().report().error_type(), kUnknownActivityType);
  h.apply_proposed();
  EXPECT_EQ(h.workflow("w1").status(), workflowpb::FAILED);
  EXPECT_EQ(h.workflow("w1").error_type(), kUnknownActivityType);
}

TEST(Runtime, LostReportIsRunAgainAfterResendInterval) {
  Harness h;
  h.runtime().on_leadership(true);
  h.tick();
  h.start("w1", kWorkType);
  h.handler.held[0].done(success("lost"));
  h.proposed.clear();  // the proposal never commits
  h.now_ms += kActivityRescanIntervalMs;
  h.tick();
  EXPECT_EQ(h.handler.held.size(), 1U);  // not yet: the report may still commit
  h.now_ms += kResendAfterMs;
  h.tick();
  ASSERT_EQ(h.handler.held.size(), 2U);
  h.handler.held[1].done(success("again"));
  h.apply_proposed();
  EXPECT_EQ(h.workflow("w1").result(), "again");
}

TEST(Runtime, OverdueTimersFireAtOnceOnGainingLeadershipInDueOrder) {
  Harness h;
  h.start("late", kSleepType, "300");
  h.start("early", kSleepType, "100");
  h.start("middle", kSleepType, "200");
  h.now_ms += 1'000;
  h.tick();  // a follower: nothing fires
  EXPECT_TRUE(h.proposed.empty());

  h.runtime().on_leadership(true);
  ASSERT_EQ(h.fires().size(), 3U);
  EXPECT_EQ(h.fires()[0].workflow_id(), "early");
  EXPECT_EQ(h.fires()[1].workflow_id(), "middle");
  EXPECT_EQ(h.fires()[2].workflow_id(), "late");
  h.apply_proposed();
  for (const char* id : {"early", "middle", "late"}) {
    EXPECT_EQ(h.workflow(id).status(), workflowpb::COMPLETED) << id;
  }
}

TEST(Runtime, TimerIsNotProposedBeforeItIsDueNorTwice) {
  Harness h;
  h.runtime().on_leadership(true);
  h.start("w1", kSleepType, "100");
  h.now_ms += 99;
  h.tick();
  EXPECT_TRUE(h.proposed.empty());
  h.now_ms += 1;
  h.tick();
  ASSERT_EQ(h.fires().size(), 1U);
  EXPECT_EQ(h.fires()[0].due_ms(), kStartMs + 100);
  h.tick();
  EXPECT_EQ(h.fires().size(), 1U);  // in flight: not proposed again
  h.apply_proposed();
  h.tick();
  EXPECT_TRUE(h.proposed.empty());
  EXPECT_EQ(h.workflow("w1").status(), workflowpb::COMPLETED);
}

TEST(Runtime, LostFireTimerIsProposedAgainAfterResendInterval) {
  Harness h;
  h.runtime().on_leadership(true);
  h.start("w1", kSleepType, "100");
  h.now_ms += 100;
  h.tick();
  ASSERT_EQ(h.fires().size(), 1U);
  h.proposed.clear();  // lost
  h.now_ms += kResendAfterMs;
  h.tick();
  ASSERT_EQ(h.fires().size(), 1U);
  h.apply_proposed();
  EXPECT_EQ(h.workflow("w1").status(), workflowpb::COMPLETED);
}

TEST(Runtime, BacklogOfTimersIsFiredPastThoseInFlightUpToTheBound) {
  Harness h;
  const std::size_t count = kMaxTimerFiresInFlight + kMaxTimersPerTick / 2;
  for (std::size_t i = 0; i < count; ++i) {
    h.start("t" + std::to_string(i), kSleepType, "100");
  }
  h.now_ms += 100;
  h.tick();  // as a follower: only the clock is noted
  h.runtime().on_leadership(true);
  EXPECT_EQ(h.fires().size(), kMaxTimersPerTick);
  h.tick();  // the next batch, without waiting for the first to apply
  EXPECT_EQ(h.fires().size(), 2 * kMaxTimersPerTick);
  h.tick();  // the bound on fires in flight holds
  EXPECT_EQ(h.fires().size(), kMaxTimerFiresInFlight);
  h.apply_proposed();  // applied fires leave the in-flight set
  h.tick();
  EXPECT_EQ(h.fires().size(), count - kMaxTimerFiresInFlight);
  h.apply_proposed();
  h.tick();
  EXPECT_TRUE(h.proposed.empty());
  EXPECT_EQ(h.workflow("t0").status(), workflowpb::COMPLETED);
  EXPECT_EQ(h.workflow("t" + std::to_string(count - 1)).status(), workflowpb::COMPLETED);
}

TEST(Runtime, TimerDueBeforeTheCursorIsFoundByTheNextRescan) {
  Harness h;
  h.runtime().on_leadership(true);
  h.start("later", kSleepType, "100");
  h.now_ms += 100;
  h.tick();
  ASSERT_EQ(h.fires().size(), 1U);
  h.apply_proposed();
  h.start("already-due", kSleepType, "0");  // due now, before nothing of the cursor
  h.now_ms += kTimerRescanIntervalMs;
  h.tick();
  ASSERT_EQ(h.fires().size(), 1U);
  EXPECT_EQ(h.fires()[0].workflow_id(), "already-due");
}

TEST(Runtime, FollowerRuntimeDoesNothing) {
  Harness h;
  h.start("w1", kWorkType);
  h.start("w2", kSleepType, "10");
  h.now_ms += 60'000;
  h.tick();
  h.runtime().after_apply();
  EXPECT_TRUE(h.handler.held.empty());
  EXPECT_TRUE(h.proposed.empty());
}

// Finishes every task at once with the outcome `script` picks, logging "<type>" per run.
class ScriptedHandler final : public ActivityHandler {
 public:
  using Script = std::function<ActivityOutcome(const ActivityTask&)>;
  ScriptedHandler(std::vector<std::string>* log, Script script)
      : log_(log), script_(std::move(script)) {}
  void run(const ActivityTask& task, std::function<void()> heartbeat,
           std::function<void(ActivityOutcome)> done) override {
    log_->push_back(task.activity_type);
    done(script_(task));
  }

 private:
  std::vector<std::string>* log_;
  Script script_;
};

// A three-step saga run through the engine and the runtime: "do.ship" always fails
// (non-retryable), and "undo.reserve" fails as often as `undo_reserve_failures` says.
class SagaRun {
 public:
  explicit SagaRun(int undo_reserve_failures)
      : failures_left_(undo_reserve_failures),
        handler_(&log, [this](const ActivityTask& task) { return outcome(task); }) {
    SagaDefinition def;
    def.name = "test.order";
    for (const char* step : {"reserve", "charge", "ship"}) {
      SagaStep s;
      s.name = step;
      s.action_type = std::string("do.") + step;
      s.compensation_type = std::string("undo.") + step;
      s.action_options.mutable_retry()->add_non_retryable_error_types("declined");
      s.compensation_options.mutable_retry()->set_maximum_attempts(1);
      def.steps.push_back(std::move(s));
    }
    Harness::Handlers handlers;
    for (const char* type :
         {"do.reserve", "do.charge", "do.ship", "undo.reserve", "undo.charge", "undo.ship"}) {
      handlers.emplace(type, &handler_);
    }
    harness = std::make_unique<Harness>(
        std::vector<std::shared_ptr<const WorkflowType>>{make_saga_type(std::move(def))},
        std::move(handlers));
    harness->runtime().on_leadership(true);
  }

  std::vector<std::string> log;
  std::unique_ptr<Harness> harness;

 private:
  ActivityOutcome outcome(const ActivityTask& task) {
    if (task.activity_type == "do.ship") {
      return ActivityOutcome{false, {}, "declined", "no carrier", 0, {}, false};
    }
    if (task.activity_type == "undo.reserve" && failures_left_ > 0) {
      --failures_left_;
      return ActivityOutcome{false, {}, "stock_down", "stock service down", 0, {}, false};
    }
    return success("ok:" + task.activity_type);
  }

  int failures_left_;
  ScriptedHandler handler_;
};

TEST(RuntimeSaga, FailedStepIsCompensatedInReverseThroughEngineAndRuntime) {
  SagaRun run(0);
  run.harness->start("order-1", "test.order", "order");
  run.harness->apply_proposed();
  EXPECT_EQ(run.log, (std::vector<std::string>{"do.reserve", "do.charge", "do.ship", "undo.charge",
                                               "undo.reserve"}));
  const workflowpb::WorkflowRecord record = run.harness->workflow("order-1");
  EXPECT_EQ(record.status(), workflowpb::COMPLETED);
  EXPECT_EQ(record.state(), kSagaCompensated);
  const auto result = decode_saga_result(record.result());
  ASSERT_TRUE(result.has_value());
  EXPECT_TRUE(result->compensated);
  EXPECT_EQ(result->error_type, "declined");
}

TEST(RuntimeSaga, FailedCompensationWaitsForOperatorRetry) {
  SagaRun run(1);
  run.harness->start("order-1", "test.order", "order");
  run.harness->apply_proposed();
  workflowpb::WorkflowRecord record = run.harness->workflow("order-1");
  EXPECT_EQ(record.status(), workflowpb::RUNNING);
  EXPECT_EQ(record.state(), kSagaCompensationFailed);

  workflowpb::WorkflowCommand retry;
  retry.mutable_signal()->set_workflow_id("order-1");
  retry.mutable_signal()->set_name(kSagaRetrySignal);
  EXPECT_EQ(run.harness->apply(retry).code(), 0U);
  run.harness->apply_proposed();
  record = run.harness->workflow("order-1");
  EXPECT_EQ(record.status(), workflowpb::COMPLETED);
  EXPECT_EQ(record.state(), kSagaCompensated);
  EXPECT_EQ(run.log.back(), "undo.reserve");
}

}  // namespace
}  // namespace herald::workflow
