#include "sim/workflow_scenario.h"

#include <fmt/format.h>

#include <array>
#include <string_view>
#include <utility>

#include "base/assert.h"
#include "rsm/kv_state_machine.h"
#include "workflow/demo.h"
#include "workflow/engine.h"
#include "workflow/keys.h"
#include "workflow/saga.h"

namespace herald::sim {

namespace {

// ---- Time line ----
constexpr MonoMs kLastStartMs = 7'000;     // clients start workflows in [0, kLastStartMs]
constexpr MonoMs kFaultsEndMs = 8'000;     // final heal
constexpr MonoMs kSettleFromMs = 8'500;    // settle checks begin
constexpr MonoMs kSettleLimitMs = 45'000;  // room for start-to-close timeouts and backoff
constexpr MonoMs kOperatorStartMs = 9'000;
constexpr MonoMs kOperatorPollMs = 250;
constexpr int kMaxOperatorSignals = 6;  // then the operator leaves the saga waiting

// ---- Client traffic ----
constexpr int kWorkflowsPerSeed = 40;
constexpr MonoMs kClientTimeoutMs = 1'500;
constexpr MonoMs kClientRetryMs = 100;
constexpr double kDuplicateStartChance = 0.3;
constexpr double kSignalChance = 0.3;
constexpr double kCancelChance = 0.15;
constexpr MonoMs kMaxSignalDelayMs = 2'000;  // after the workflow's start time
constexpr std::int64_t kMaxPipelineSteps = 3;
constexpr double kPipelineShare = 0.4;  // the rest are sagas, half of them parallel

// ---- The external system ----
constexpr MonoMs kMinActivityLatencyMs = 1;
constexpr MonoMs kMaxActivityLatencyMs = 80;
constexpr double kLostBeforeEffectChance = 0.03;
constexpr double kLostAfterEffectChance = 0.03;
constexpr double kRetryableErrorChance = 0.15;
constexpr double kRejectChance = 0.05;  // saga actions only; not retried
// Seeds where one saga's last action is always rejected and its compensations are broken.
constexpr double kBrokenSagaChance = 0.6;
constexpr double kOperatorRetryShare = 0.4;  // of broken sagas; as much again "resolve"
constexpr double kOperatorResolveShare = 0.4;
constexpr std::int64_t kMaxClockSkewMs = 150;

constexpr char kFlakyError[] = "sim.flaky";
constexpr char kRejectedError[] = "sim.rejected";
constexpr char kBrokenError[] = "sim.broken";
constexpr std::array<const char*, 3> kSagaSteps = {"reserve", "charge", "ship"};

std::string action_type(std::string_view step) {
  return fmt::format("sim.{}", step);
}
std::string compensation_type(std::string_view step) {
  return fmt::format("sim.undo_{}", step);
}

workflowpb::ActivityOptions saga_options(std::uint32_t attempts, bool action) {
  workflowpb::ActivityOptions o;
  o.mutable_retry()->set_initial_interval_ms(50);
  o.mutable_retry()->set_maximum_interval_ms(400);
  o.mutable_retry()->set_maximum_attempts(attempts);
  if (action) {
    o.mutable_retry()->add_non_retryable_error_types(kRejectedError);
  }
  o.set_start_to_close_timeout_ms(300);
  return o;
}

std::shared_ptr<const workflow::WorkflowType> make_sim_saga(std::string name, bool parallel) {
  constexpr std::uint32_t kActionAttempts = 4;
  constexpr std::uint32_t kCompensationAttempts = 3;
  workflow::SagaDefinition def;
  def.name = std::move(name);
  def.parallel_compensation = parallel;
  for (const char* step : kSagaSteps) {
    def.steps.push_back(workflow::SagaStep{step, action_type(step), compensation_type(step),
                                           saga_options(kActionAttempts, true),
                                           saga_options(kCompensationAttempts, false)});
  }
  return workflow::make_saga_type(std::move(def));
}

bool is_saga(std::string_view type) {
  return type == kSagaSequentialType || type == kSagaParallelType;
}

bool is_compensation(std::string_view activity_type) {
  return activity_type.starts_with("sim.undo_");
}

rsmpb::Command module_command(const workflowpb::WorkflowCommand& command, std::int64_t wall_ms) {
  rsmpb::Command c;
  c.set_wall_ms(wall_ms);
  c.mutable_module()->set_name(workflow::kModuleName);
  c.mutable_module()->set_payload(command.SerializeAsString());
  return c;
}

// The record in an applied, successful answer; nullopt for any failure.
std::optional<workflowpb::WorkflowRecord> acked_record(const Result<rsmpb::CommandResult>& r) {
  workflowpb::WorkflowRecord record;
  if (!r.ok() || r->code() != 0 || !record.ParseFromString(r->payload())) {
    return std::nullopt;
  }
  return record;
}

const char* closing_event(workflowpb::WorkflowStatus status) {
  switch (status) {
    case workflowpb::COMPLETED: return "completed";
    case workflowpb::FAILED: return "failed";
    case workflowpb::CANCELED: return "canceled";
    case workflowpb::CONTINUED_AS_NEW: return "continued_as_new";
    default: return nullptr;
  }
}

}  // namespace

ClusterOptions workflow_cluster_options(std::uint64_t seed, bool verbose) {
  ClusterOptions options;
  options.seed = seed;
  options.replicas = seed % 2 == 1 ? 3 : 5;
  options.clients = 0;  // no KV traffic: the workflow clients below drive the cluster
  options.faults_end_ms = kFaultsEndMs;
  options.traffic_end_ms = kSettleFromMs;
  options.settle_limit_ms = kSettleLimitMs;
  options.verbose = verbose;
  return options;
}

// ---- Pieces ----

enum class WorkflowScenario::Fate : std::uint8_t {
  kSucceed,
  kLostBeforeEffect,
  kLostAfterEffect,
  kRetryable,
  kReject,
  kBroken,
};

enum class OperatorAction : std::uint8_t { kNone, kRetry, kResolve };

// One workflow the clients start, and what they were told about it.
struct WorkflowScenario::Planned {
  std::string id;
  std::string type;
  std::string input;
  MonoMs start_ms = 0;
  bool doomed = false;  // its last action is always rejected, so it always compensates
  bool broken = false;  // its compensations fail until the operator fixes the system
  OperatorAction operator_action = OperatorAction::kNone;
  int operator_signals = 0;
  bool operator_done = true;
  bool acked = false;    // a start was answered with the run
  bool created = false;  // a start was answered "created" (not "existed")
  bool start_pending = false;
  bool cancel_acked = false;
  std::vector<std::string> acked_signals;  // payloads
};

// The "workflow" module of a replica: the production engine, with every FireTimer audited.
class WorkflowScenario::CheckedModule final : public rsm::StateMachine {
 public:
  CheckedModule(WorkflowScenario* scenario, raft::NodeId id, workflow::Engine* engine)
      : scenario_(scenario), id_(id), engine_(engine) {}

  [[nodiscard]] rsmpb::CommandResult apply(raft::Index index, const rsmpb::Command& command,
                                           rsm::ApplyBatch& batch) override {
    const std::size_t fires_before = engine_->applied_fires().size();
    rsmpb::CommandResult result = engine_->apply(index, command, batch);
    const auto& fires = engine_->applied_fires();
    for (std::size_t i = fires_before; i < fires.size(); ++i) {
      const workflow::AppliedFire& fire = fires[i];
      const std::string key =
          workflow::keys::timer_key(fire.due_ms, fire.workflow_id, fire.run_id, fire.timer_id);
      scenario_->on_fire_timer(id_, command.wall_ms(), fire, index, exists(batch, key), result);
    }
    return result;
  }

 private:
  static bool exists(const rsm::ApplyBatch& batch, std::string_view key) {
    auto raw = batch.get(storage::Space::kState, key);
    return raw.ok() && raw->has_value();
  }

  WorkflowScenario* scenario_;
  raft::NodeId id_;
  workflow::Engine* engine_;
};

// Runs every simulated activity type on one replica incarnation.
class WorkflowScenario::Handler final : public workflow::ActivityHandler {
 public:
  Handler(WorkflowScenario* scenario, raft::NodeId id, std::uint64_t incarnation)
      : scenario_(scenario), id_(id), incarnation_(incarnation) {}

  void run(const workflow::ActivityTask& task, std::function<void()> /*heartbeat*/,
           std::function<void(workflow::ActivityOutcome)> done) override {
    scenario_->run_activity(id_, incarnation_, task, std::move(done));
  }

 private:
  WorkflowScenario* scenario_;
  raft::NodeId id_;
  std::uint64_t incarnation_;
};

// One replica incarnation's workflow stack, as a node host wires it.
struct WorkflowScenario::ReplicaApp final : public rsm::NodeListener {
  std::uint64_t incarnation = 0;
  std::int64_t skew_ms = 0;  // this process's wall clock runs this far off the simulated one
  bool up = false;
  rsm::KvStateMachine kv;
  std::unique_ptr<workflow::Engine> engine;
  std::unique_ptr<CheckedModule> module;
  std::unique_ptr<rsm::StateMachineRouter> router;
  std::unique_ptr<Handler> handler;
  std::unique_ptr<workflow::Runtime> runtime;

  void on_applied() override { runtime->after_apply(); }
  void on_leadership(bool leader) override { runtime->on_leadership(leader); }
};

// ---- Set-up ----

WorkflowScenario::WorkflowScenario(const ClusterOptions& options)
    : options_(options),
      plan_rng_(derive_seed(options.seed, 11)),
      activity_rng_(derive_seed(options.seed, 12)),
      skew_rng_(derive_seed(options.seed, 13)),
      cluster_(options, this) {
  for (auto type : {workflow::make_demo_pipeline_type(), make_sim_saga(kSagaSequentialType, false),
                    make_sim_saga(kSagaParallelType, true)}) {
    const Status added = registry_.add(std::move(type));
    HERALD_ASSERT(added.ok(), "each workflow type registers once");
  }
}

WorkflowScenario::~WorkflowScenario() = default;

rsm::StateMachine* WorkflowScenario::open_replica(raft::NodeId id, const storage::Reader* state) {
  states_[id] = state;
  auto app = std::make_unique<ReplicaApp>();
  app->incarnation = ++incarnations_[id];
  app->skew_ms = skew_rng_.range(-kMaxClockSkewMs, kMaxClockSkewMs);
  app->engine = std::make_unique<workflow::Engine>(&registry_);
  app->module = std::make_unique<CheckedModule>(this, id, app->engine.get());
  app->router = std::make_unique<rsm::StateMachineRouter>(&app->kv);
  const Status added = app->router->add_module(workflow::kModuleName, app->module.get());
  HERALD_ASSERT(added.ok(), "one workflow module per router");
  app->handler = std::make_unique<Handler>(this, id, app->incarnation);
  std::map<std::string, workflow::ActivityHandler*, std::less<>> handlers{
      {workflow::kDemoEffectActivity, app->handler.get()}};
  for (const char* step : kSagaSteps) {
    handlers.emplace(action_type(step), app->handler.get());
    handlers.emplace(compensation_type(step), app->handler.get());
  }
  const std::uint64_t incarnation = app->incarnation;
  app->runtime = std::make_unique<workflow::Runtime>(
      state, app->engine.get(), std::move(handlers),
      [this, id, incarnation](const workflowpb::WorkflowCommand& command) {
        // Never inside the node's Ready loop: the proposal leaves in the next step.
        cluster_.schedule_call(cluster_.clock().mono_ms(), [this, id, incarnation, command] {
          propose_from_runtime(id, incarnation, command);
        });
      });
  rsm::StateMachine* router = app->router.get();
  apps_[id] = std::move(app);
  return router;
}

void WorkflowScenario::on_replica_up(raft::NodeId id, rsm::Node& node) {
  ReplicaApp& app = *apps_.at(id);
  app.up = true;
  node.set_listener(&app);
}

void WorkflowScenario::on_replica_down(raft::NodeId id) {
  apps_.erase(id);
}

void WorkflowScenario::on_tick(raft::NodeId id) {
  auto it = apps_.find(id);
  if (it != apps_.end() && it->second->up) {
    it->second->runtime->tick(wall_ms(id));
  }
}

bool WorkflowScenario::alive(raft::NodeId id, std::uint64_t incarnation) const {
  auto it = apps_.find(id);
  return it != apps_.end() && it->second->up && it->second->incarnation == incarnation;
}

std::int64_t WorkflowScenario::wall_ms(raft::NodeId id) const {
  auto it = apps_.find(id);
  const std::int64_t skew = it == apps_.end() ? 0 : it->second->skew_ms;
  return cluster_.clock().wall_ms() + skew;
}

void WorkflowScenario::propose_from_runtime(raft::NodeId id, std::uint64_t incarnation,
                                            const workflowpb::WorkflowCommand& command) {
  if (!alive(id, incarnation)) {
    return;  // the process that asked is gone
  }
  // The runtime re-proposes whatever does not take effect, so the answer is not needed.
  cluster_.node(id)->propose(module_command(command, wall_ms(id)),
                             [](const Result<rsmpb::CommandResult>&) {});
}

void WorkflowScenario::on_fire_timer(raft::NodeId id, std::int64_t wall_ms,
                                     const workflow::AppliedFire& fire, raft::Index index,
                                     bool still_exists, const rsmpb::CommandResult& result) {
  const bool took_effect = fire.fired && result.code() == 0;
  if (took_effect && wall_ms < fire.due_ms) {
    violation(fmt::format(
        "timer fired early: replica {} applied the fire of {}/{}/{} at index {} with command "
        "time {} ms, before its due time {} ms",
        id, fire.workflow_id, fire.run_id, fire.timer_id, index, wall_ms, fire.due_ms));
  }
  if (took_effect && still_exists) {
    violation(fmt::format("timer {}/{}/{} survived its firing at index {} on replica {}",
                          fire.workflow_id, fire.run_id, fire.timer_id, index, id));
  }
  const std::string key = fmt::format("{}/{}/{}", fire.workflow_id, fire.run_id, fire.timer_id);
  if (took_effect && fired_.insert({index, key}).second) {
    ++stats_.timers_fired;
  }
  if (!fire.fired && still_exists && wall_ms < fire.due_ms) {
    ++stats_.early_fires_refused;
  }
}

void WorkflowScenario::violation(std::string what) {
  if (!violation_) {
    violation_ = std::move(what);
  }
}

std::string WorkflowScenario::check_after_event() {
  return violation_.value_or("");
}

// ---- The simulated external system ----

void WorkflowScenario::run_activity(raft::NodeId id, std::uint64_t incarnation,
                                    const workflow::ActivityTask& task,
                                    std::function<void(workflow::ActivityOutcome)> done) {
  const Fate fate = draw_fate(task);
  const MonoMs at = cluster_.clock().mono_ms() +
                    activity_rng_.range(kMinActivityLatencyMs, kMaxActivityLatencyMs);
  cluster_.schedule_call(at, [this, id, incarnation, task, fate, done = std::move(done)] {
    // The external system acts whether or not the replica that called it is still there.
    workflow::ActivityOutcome outcome = perform(task, fate);
    if (fate == Fate::kLostBeforeEffect || fate == Fate::kLostAfterEffect) {
      ++stats_.lost_answers;
      return;  // the answer never arrives: the start-to-close timeout decides
    }
    if (alive(id, incarnation)) {
      done(std::move(outcome));
    }
  });
}

WorkflowScenario::Fate WorkflowScenario::draw_fate(const workflow::ActivityTask& task) {
  const auto it = planned_by_id_.find(task.workflow_id);
  HERALD_ASSERT(it != planned_by_id_.end(), "activities belong to planned workflows");
  const bool compensation = is_compensation(task.activity_type);
  const double roll = activity_rng_.unit();  // drawn for every attempt, so the stream is stable
  const Planned& w = planned_[it->second];
  if (compensation && w.broken) {
    return Fate::kBroken;
  }
  if (w.doomed && task.activity_type == action_type(kSagaSteps.back())) {
    return Fate::kReject;
  }
  double edge = kLostBeforeEffectChance;
  if (roll < edge) return Fate::kLostBeforeEffect;
  edge += kLostAfterEffectChance;
  if (roll < edge) return Fate::kLostAfterEffect;
  edge += kRetryableErrorChance;
  if (roll < edge) return Fate::kRetryable;
  edge += kRejectChance;
  const bool saga_action = !compensation && task.activity_type != workflow::kDemoEffectActivity;
  if (roll < edge && saga_action) return Fate::kReject;
  return Fate::kSucceed;
}

workflow::ActivityOutcome WorkflowScenario::perform(const workflow::ActivityTask& task, Fate fate) {
  ++stats_.activity_attempts;
  ledger_.try_emplace(task.idempotency_key);  // counted below, effect or not
  ++ledger_[task.idempotency_key].attempts;
  workflow::ActivityOutcome outcome;
  switch (fate) {
    case Fate::kSucceed:
    case Fate::kLostAfterEffect:
      apply_effect(task);
      outcome.ok = true;
      outcome.output = fmt::format("{}@{}", task.activity_type, task.idempotency_key);
      return outcome;
    case Fate::kLostBeforeEffect: return outcome;
    case Fate::kRetryable: outcome.error_type = kFlakyError; break;
    case Fate::kReject: outcome.error_type = kRejectedError; break;
    case Fate::kBroken: outcome.error_type = kBrokenError; break;
  }
  outcome.error_message = fmt::format("attempt {} of {}", task.attempt, task.idempotency_key);
  return outcome;
}

// The external system dedups by idempotency key. The checks: a key names one activity (the
// engine's "<workflow>/<run>/<activity>"), and one activity applies under one key only.
void WorkflowScenario::apply_effect(const workflow::ActivityTask& task) {
  LedgerEntry& entry = ledger_[task.idempotency_key];
  const std::string expected_key =
      fmt::format("{}/{}/{}", task.workflow_id, task.run_id, task.activity_id);
  if (task.idempotency_key != expected_key) {
    violation(fmt::format("activity {} carries idempotency key \"{}\"", expected_key,
                          task.idempotency_key));
  }
  if (!entry.activity_type.empty()) {
    ++stats_.deduplicated;
    if (entry.activity_type != task.activity_type || entry.workflow_id != task.workflow_id) {
      violation(fmt::format("idempotency key \"{}\" is used by {} and {}", task.idempotency_key,
                            entry.activity_type, task.activity_type));
    }
    return;
  }
  entry.workflow_id = task.workflow_id;
  entry.run_id = task.run_id;
  entry.activity_id = task.activity_id;
  entry.activity_type = task.activity_type;
  ++stats_.effects;
  auto& keys = effects_by_activity_[{task.workflow_id, task.run_id, task.activity_id}];
  keys.insert(task.idempotency_key);
  if (keys.size() > 1) {
    violation(fmt::format("activity {} took effect {} times, under keys {} and {}", expected_key,
                          keys.size(), *keys.begin(), *keys.rbegin()));
  }
}

// ---- Clients ----

void WorkflowScenario::plan() {
  const bool broken_seed = plan_rng_.chance(kBrokenSagaChance);
  std::optional<std::size_t> broken;
  for (int i = 0; i < kWorkflowsPerSeed; ++i) {
    Planned w;
    w.id = fmt::format("wf-{}", i);
    w.start_ms = plan_rng_.range(0, kLastStartMs);
    if (plan_rng_.chance(kPipelineShare)) {
      w.type = workflow::kDemoPipelineType;
      w.input = std::to_string(plan_rng_.range(1, kMaxPipelineSteps));
    } else {
      w.type = plan_rng_.chance(0.5) ? kSagaSequentialType : kSagaParallelType;
      w.input = fmt::format("order-{}", i);
      if (broken_seed && !broken) {
        broken = planned_.size();
      }
    }
    planned_by_id_.emplace(w.id, planned_.size());
    planned_.push_back(std::move(w));
  }
  if (broken) {
    Planned& w = planned_[*broken];
    w.doomed = true;
    w.broken = true;
    const double roll = plan_rng_.unit();
    w.operator_action = roll < kOperatorRetryShare ? OperatorAction::kRetry
                        : roll < kOperatorRetryShare + kOperatorResolveShare
                            ? OperatorAction::kResolve
                            : OperatorAction::kNone;
    w.operator_done = w.operator_action == OperatorAction::kNone;
    cluster_.log_event(fmt::format("{}: compensations broken, operator action {}", w.id,
                                   static_cast<int>(w.operator_action)));
  }
  for (std::size_t i = 0; i < planned_.size(); ++i) {
    const MonoMs start = planned_[i].start_ms;
    cluster_.schedule_call(start, [this, i] { try_start(i, false); });
    if (plan_rng_.chance(kSignalChance)) {
      const MonoMs at = start + plan_rng_.range(0, kMaxSignalDelayMs);
      cluster_.schedule_call(at, [this, i] { send_signal(i, false); });
    }
    if (plan_rng_.chance(kCancelChance)) {
      const MonoMs at = start + plan_rng_.range(0, kMaxSignalDelayMs);
      cluster_.schedule_call(at, [this, i] { send_signal(i, true); });
    }
  }
  cluster_.schedule_call(kOperatorStartMs, [this] { on_operator_poll(); });
}

bool WorkflowScenario::send(const workflowpb::WorkflowCommand& command, ResultFn done) {
  const std::vector<raft::NodeId> ids = cluster_.up_ids();
  if (ids.empty()) {
    return false;
  }
  const raft::NodeId id = ids[plan_rng_.uniform(ids.size())];
  const std::uint64_t request = next_request_++;
  requests_.emplace(request, std::move(done));
  cluster_.schedule_call(cluster_.clock().mono_ms() + kClientTimeoutMs, [this, request] {
    finish_request(request, Status::timeout("the client gave up waiting"));
  });
  // Clients stamp the simulated wall clock itself.
  cluster_.node(id)->propose(module_command(command, cluster_.clock().wall_ms()),
                             [this, request](const Result<rsmpb::CommandResult>& result) {
                               finish_request(request, result);
                             });
  return true;
}

void WorkflowScenario::finish_request(std::uint64_t request,
                                      const Result<rsmpb::CommandResult>& result) {
  auto it = requests_.find(request);
  if (it == requests_.end()) {
    return;  // answered already (or timed out)
  }
  const ResultFn done = std::move(it->second);
  requests_.erase(it);
  done(result);
}

void WorkflowScenario::try_start(std::size_t index, bool duplicate) {
  Planned& w = planned_[index];
  if (!duplicate) {
    w.start_pending = true;
  }
  workflowpb::WorkflowCommand command;
  command.mutable_start()->set_workflow_id(w.id);
  command.mutable_start()->set_type(w.type);
  command.mutable_start()->set_input(w.input);
  const bool sent = send(command, [this, index, duplicate](const auto& result) {
    on_start_result(index, duplicate, result);
  });
  if (!sent && !duplicate) {
    cluster_.schedule_call(cluster_.clock().mono_ms() + kClientRetryMs,
                           [this, index] { try_start(index, false); });
  }
}

void WorkflowScenario::on_start_result(std::size_t index, bool duplicate,
                                       const Result<rsmpb::CommandResult>& result) {
  Planned& w = planned_[index];
  const std::optional<workflowpb::WorkflowRecord> record = acked_record(result);
  if (!record) {
    if (!duplicate) {  // the same id again: at most one run is ever created
      cluster_.schedule_call(cluster_.clock().mono_ms() + kClientRetryMs,
                             [this, index] { try_start(index, false); });
    }
    return;
  }
  if (record->workflow_id() != w.id || record->type() != w.type || record->run_id() != 1) {
    violation(fmt::format("start of {} answered with run {} of {} ({})", w.id, record->run_id(),
                          record->workflow_id(), record->type()));
  }
  if (!result->existed() && w.created) {
    violation(fmt::format("workflow {} was created twice: dedup by id failed", w.id));
  }
  w.created = w.created || !result->existed();
  stats_.duplicate_starts += result->existed() ? 1 : 0;
  if (duplicate || w.acked) {
    return;
  }
  w.acked = true;
  w.start_pending = false;
  ++stats_.workflows;
  if (plan_rng_.chance(kDuplicateStartChance)) {
    const MonoMs at = cluster_.clock().mono_ms() + plan_rng_.range(0, kMaxSignalDelayMs);
    cluster_.schedule_call(at, [this, index] { try_start(index, true); });
  }
}

void WorkflowScenario::send_signal(std::size_t index, bool cancel) {
  Planned& w = planned_[index];
  if (!w.acked) {
    return;  // not known to exist yet: the client skips it
  }
  workflowpb::WorkflowCommand command;
  const std::string payload = fmt::format("{}-{}", cancel ? "cancel" : "poke", next_request_);
  if (cancel) {
    command.mutable_cancel()->set_workflow_id(w.id);
    command.mutable_cancel()->set_reason(payload);
  } else {
    command.mutable_signal()->set_workflow_id(w.id);
    command.mutable_signal()->set_name("poke");
    command.mutable_signal()->set_payload(payload);
  }
  static_cast<void>(send(command, [this, index, cancel, payload](const auto& result) {
    if (!acked_record(result)) {
      return;  // closed already, or unknown: nothing to expect
    }
    if (cancel) {
      planned_[index].cancel_acked = true;
    } else {
      planned_[index].acked_signals.push_back(payload);
    }
  }));
}

// ---- The operator ----

const storage::Reader* WorkflowScenario::any_state() const {
  const raft::NodeId leader = cluster_.leader_hint();
  if (leader != raft::kNoNode) {
    return states_.at(leader);
  }
  const std::vector<raft::NodeId> ids = cluster_.up_ids();
  return ids.empty() ? nullptr : states_.at(ids.front());
}

void WorkflowScenario::on_operator_poll() {
  bool more = false;
  const storage::Reader* state = any_state();
  for (Planned& w : planned_) {
    if (state != nullptr && w.acked && !w.operator_done) {
      auto record = workflow::Engine::read_workflow(*state, w.id);
      if (record.ok() && record->has_value()) {
        operator_act(w, **record);
      }
    }
    more = more || !w.operator_done;
  }
  if (more) {
    cluster_.schedule_call(cluster_.clock().mono_ms() + kOperatorPollMs,
                           [this] { on_operator_poll(); });
  }
}

void WorkflowScenario::operator_act(Planned& w, const workflowpb::WorkflowRecord& record) {
  if (record.status() != workflowpb::RUNNING) {
    w.operator_done = true;
    return;
  }
  if (record.state() != workflow::kSagaCompensationFailed) {
    return;  // still working, or a stale replica's view: look again later
  }
  if (w.operator_signals >= kMaxOperatorSignals) {
    w.operator_done = true;  // the operator leaves it waiting
    return;
  }
  w.broken = false;  // the operator repairs the external system first
  ++w.operator_signals;
  ++stats_.operator_signals;
  const bool retry = w.operator_action == OperatorAction::kRetry;
  cluster_.log_event(fmt::format("operator: {} {}", retry ? "retry" : "resolve", w.id));
  workflowpb::WorkflowCommand command;
  command.mutable_signal()->set_workflow_id(w.id);
  command.mutable_signal()->set_name(retry ? workflow::kSagaRetrySignal
                                           : workflow::kSagaResolveSignal);
  command.mutable_signal()->set_payload(fmt::format("operator {}", w.operator_signals));
  static_cast<void>(send(command, [](const auto&) {}));
}

// ---- Settling and final checks ----

std::string WorkflowScenario::unsettled() const {
  if (!requests_.empty()) {
    return fmt::format("{} client requests unanswered", requests_.size());
  }
  const storage::Reader* state = any_state();
  if (state == nullptr) {
    return "no replica runs";
  }
  for (const Planned& w : planned_) {
    if (!w.acked || !w.operator_done) {
      return fmt::format("{}: {}", w.id, !w.acked ? "start not acknowledged" : "operator busy");
    }
    auto record = workflow::Engine::read_workflow(*state, w.id);
    if (!record.ok() || !record->has_value()) {
      return fmt::format("{}: no record on the leader", w.id);
    }
    const workflowpb::WorkflowRecord& r = **record;
    if (r.status() == workflowpb::RUNNING && r.state() != workflow::kSagaCompensationFailed) {
      return fmt::format("{} ({}) is running in state \"{}\"", w.id, w.type, r.state());
    }
  }
  return {};
}

std::string WorkflowScenario::final_check() {
  if (violation_) {
    return *violation_;
  }
  const storage::Reader* state = any_state();
  HERALD_ASSERT(state != nullptr, "the final checks run on a converged cluster");
  for (const Planned& w : planned_) {
    std::string problem = check_workflow(*state, w);
    if (!problem.empty()) {
      return fmt::format("workflow {} ({}): {}", w.id, w.type, problem);
    }
  }
  return violation_.value_or("");
}

std::string WorkflowScenario::check_workflow(const storage::Reader& state, const Planned& w) {
  auto record = workflow::Engine::read_workflow(state, w.id);
  if (!record.ok() || !record->has_value()) {
    return "acknowledged but has no record";
  }
  const workflowpb::WorkflowRecord& rec = **record;
  auto events = workflow::Engine::read_history(
      state, w.id, rec.run_id(), 0, static_cast<std::size_t>(workflow::kMaxHistoryEvents));
  if (!events.ok()) {
    return "history unreadable: " + events.status().to_string();
  }
  if (rec.status() == workflowpb::RUNNING &&
      !(is_saga(w.type) && rec.state() == workflow::kSagaCompensationFailed)) {
    return fmt::format("still running in state \"{}\"", rec.state());
  }
  if (w.cancel_acked && !rec.cancel_requested()) {
    return "an acknowledged cancel is not on the record";
  }
  count_outcome(w, rec);
  std::string problem = check_history(w, rec, *events);
  if (problem.empty()) {
    problem = check_activities(w, rec, *events);
  }
  if (problem.empty()) {
    problem = is_saga(w.type) ? check_saga(rec, *events) : check_pipeline_timers(*events);
  }
  return problem;
}

void WorkflowScenario::count_outcome(const Planned& w, const workflowpb::WorkflowRecord& rec) {
  stats_.completed += rec.status() == workflowpb::COMPLETED ? 1 : 0;
  stats_.failed += rec.status() == workflowpb::FAILED ? 1 : 0;
  stats_.canceled += rec.status() == workflowpb::CANCELED ? 1 : 0;
  if (is_saga(w.type)) {
    stats_.compensated += rec.state() == workflow::kSagaCompensated ? 1 : 0;
    stats_.compensation_failed += rec.state() == workflow::kSagaCompensationFailed ? 1 : 0;
  }
}

std::string WorkflowScenario::check_history(const Planned& w, const workflowpb::WorkflowRecord& rec,
                                            const std::vector<workflowpb::HistoryEvent>& events) {
  if (events.size() != rec.history_length()) {
    return fmt::format("history_length {} but {} history events", rec.history_length(),
                       events.size());
  }
  std::optional<std::string> last_state;
  std::set<std::string> signals;
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (events[i].seq() != i + 1) {
      return fmt::format("history event {} has seq {}", i + 1, events[i].seq());
    }
    if (events[i].kind() == "state_changed") {
      last_state = events[i].name();
    }
    if (events[i].kind() == "signaled") {
      signals.insert(events[i].payload());
    }
  }
  if (last_state && *last_state != rec.state()) {
    return fmt::format("last state_changed is \"{}\" but the record is in \"{}\"", *last_state,
                       rec.state());
  }
  if (const char* closing = closing_event(rec.status());
      closing != nullptr && (events.empty() || events.back().kind() != closing)) {
    return fmt::format("closed as {} but the history ends with \"{}\"", closing,
                       events.empty() ? "" : events.back().kind());
  }
  for (const std::string& payload : w.acked_signals) {
    if (!signals.contains(payload)) {
      return fmt::format("acknowledged signal \"{}\" is not in the history", payload);
    }
  }
  return {};
}

// At most one outcome per activity, and every completed activity's effect is in the ledger.
std::string WorkflowScenario::check_activities(
    const Planned& w, const workflowpb::WorkflowRecord& rec,
    const std::vector<workflowpb::HistoryEvent>& events) const {
  std::map<std::uint64_t, int> outcomes;
  for (const auto& e : events) {
    if (e.kind() != "activity_completed" && e.kind() != "activity_failed") {
      continue;
    }
    if (++outcomes[e.activity_id()] > 1) {
      return fmt::format("activity {} has two outcomes in the history", e.activity_id());
    }
    const std::string key = fmt::format("{}/{}/{}", w.id, rec.run_id(), e.activity_id());
    if (e.kind() == "activity_completed") {
      auto it = ledger_.find(key);
      if (it == ledger_.end() || it->second.activity_type.empty()) {
        return fmt::format("activity {} ({}) completed but its effect is not in the ledger", key,
                           e.name());
      }
      if (it->second.activity_type != e.name()) {
        return fmt::format("activity {} completed as {} but the ledger holds {}", key, e.name(),
                           it->second.activity_type);
      }
    }
  }
  return {};
}

// A saga ends completed (every action, no compensation), compensated (every completed action
// undone or resolved by the operator) or waiting in compensation_failed; a failed or canceled
// saga never ends "completed".
std::string WorkflowScenario::check_saga(const workflowpb::WorkflowRecord& rec,
                                         const std::vector<workflowpb::HistoryEvent>& events) {
  std::set<std::string> done;  // completed activity types
  bool failed = false;
  bool resolved = false;
  for (const auto& e : events) {
    if (e.kind() == "activity_completed") {
      done.insert(e.name());
    }
    failed = failed || (e.kind() == "activity_failed" && !is_compensation(e.name())) ||
             e.kind() == "cancel_requested";
    resolved = resolved || e.kind() == "resolved_by_operator";
  }
  const std::string& state = rec.state();
  if (failed && state != workflow::kSagaCompensated && state != workflow::kSagaCompensationFailed) {
    return fmt::format("failed or canceled, but ends in \"{}\"", state);
  }
  if ((state == workflow::kSagaCompensated || state == workflow::kSagaCompleted) &&
      rec.status() != workflowpb::COMPLETED) {
    return fmt::format("in \"{}\" with status {}", state, static_cast<int>(rec.status()));
  }
  for (const char* step : kSagaSteps) {
    const bool acted = done.contains(action_type(step));
    const bool undone = done.contains(compensation_type(step));
    if (undone && !acted) {
      return fmt::format("step {} compensated but its action never completed", step);
    }
    if (state == workflow::kSagaCompleted && (!acted || undone)) {
      return fmt::format("completed, but step {} is {}", step, acted ? "undone" : "not done");
    }
    if (state == workflow::kSagaCompensated && acted && !undone && !resolved) {
      return fmt::format("compensated, but step {} was neither undone nor resolved", step);
    }
  }
  return {};
}

// Each "pause" timer fired no earlier than kDemoPauseMs after it started (command times).
std::string WorkflowScenario::check_pipeline_timers(
    const std::vector<workflowpb::HistoryEvent>& events) {
  const workflowpb::HistoryEvent* started = nullptr;  // the timer running, if any
  for (const auto& e : events) {
    if (e.kind() == "timer_started") {
      started = &e;
    } else if (e.kind() == "timer_fired") {
      if (started == nullptr) {
        return fmt::format("timer \"{}\" fired at {} ms but none was running", e.name(),
                           e.time_ms());
      }
      if (e.time_ms() < started->time_ms() + workflow::kDemoPauseMs) {
        return fmt::format("timer \"{}\" started at {} ms fired early, at {} ms", e.name(),
                           started->time_ms(), e.time_ms());
      }
      started = nullptr;
    }
  }
  return {};
}

WorkflowRunResult WorkflowScenario::run() {
  plan();
  WorkflowRunResult result;
  result.cluster = cluster_.run();
  result.workflow = stats_;
  return result;
}

}  // namespace herald::sim
