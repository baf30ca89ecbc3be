// WorkflowScenario: durable workflows and sagas on a simulated Herald cluster, under faults.
//
// It composes a SimCluster (sim/cluster.h: the same replicas, network, disks, fault schedule and
// Raft safety checks as the raft scenario) and gives every replica incarnation the production
// workflow stack: a StateMachineRouter with the KV state machine and a workflow::Engine (demo
// pipeline plus a sequential and a parallel-compensation saga), and a workflow::Runtime installed
// as the node's NodeListener, ticked with the replica's (skewed) wall clock. Runtime proposals
// are queued as simulator events, never proposed inside the node's Ready loop.
//
// Activities run against a simulated external system: seeded latency, retryable failures,
// non-retryable rejections of saga actions, answers lost before or after the side effect, and in
// some seeds one saga whose compensations fail until an operator fixes the system and sends
// "retry" or "resolve". The side effect is recorded in a global idempotency ledger keyed by the
// activity's idempotency key, which dedups by key and counts every attempt.
//
// Checks after every event (besides the cluster's): no FireTimer takes effect with a command time
// before the timer's due time; no idempotency key is shared by two activities and no activity
// takes effect under two keys. At the end (healed and settled): every acknowledged workflow is
// closed or legitimately waiting (a saga in "compensation_failed" the operator left alone); every
// failed or canceled saga is "compensated" (each completed step undone or resolved) or
// "compensation_failed"; histories agree with records (length, last state, closing event, at
// most one outcome per activity, acknowledged signals and cancels present, user timers fired no
// earlier than due); every completed activity's effect is in the ledger; replicas are identical.
//
// Determinism: every choice comes from Rngs derived from the seed. Thread-safety: none.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "sim/cluster.h"
#include "workflow/definition.h"
#include "workflow/runtime.h"

namespace herald::sim {

inline constexpr char kSagaSequentialType[] = "sim.saga_sequential";
inline constexpr char kSagaParallelType[] = "sim.saga_parallel";

struct WorkflowStats {
  std::uint64_t workflows = 0;  // started and acknowledged
  std::uint64_t completed = 0;
  std::uint64_t failed = 0;
  std::uint64_t canceled = 0;
  std::uint64_t compensated = 0;          // sagas closed as "compensated"
  std::uint64_t compensation_failed = 0;  // sagas left waiting for an operator
  std::uint64_t activity_attempts = 0;    // attempts that reached the external system
  std::uint64_t effects = 0;              // distinct idempotency keys applied
  std::uint64_t deduplicated = 0;         // attempts whose key was already applied
  std::uint64_t lost_answers = 0;
  std::uint64_t timers_fired = 0;         // distinct timer fires that took effect
  std::uint64_t early_fires_refused = 0;  // applications refused because not yet due
  std::uint64_t duplicate_starts = 0;     // starts answered with an existing run
  std::uint64_t operator_signals = 0;
};

struct WorkflowRunResult {
  RunResult cluster;
  WorkflowStats workflow;
};

// The options of seed `seed` of the workflow scenario: 3 replicas for odd seeds, 5 for even.
[[nodiscard]] ClusterOptions workflow_cluster_options(std::uint64_t seed, bool verbose);

class WorkflowScenario final : public ClusterScenario {
 public:
  explicit WorkflowScenario(const ClusterOptions& options);
  ~WorkflowScenario() override;
  WorkflowScenario(const WorkflowScenario&) = delete;
  WorkflowScenario& operator=(const WorkflowScenario&) = delete;

  // Runs the whole scenario once.
  [[nodiscard]] WorkflowRunResult run();

  // ClusterScenario.
  [[nodiscard]] rsm::StateMachine* open_replica(raft::NodeId id,
                                                const storage::Reader* state) override;
  void on_replica_up(raft::NodeId id, rsm::Node& node) override;
  void on_replica_down(raft::NodeId id) override;
  void on_tick(raft::NodeId id) override;
  [[nodiscard]] std::string check_after_event() override;
  [[nodiscard]] std::string unsettled() const override;
  [[nodiscard]] std::string final_check() override;

 private:
  class CheckedModule;
  class Handler;
  struct ReplicaApp;
  struct Planned;
  struct LedgerEntry {
    std::string workflow_id;
    std::uint64_t run_id = 0;
    std::uint64_t activity_id = 0;
    std::string activity_type;
    std::uint64_t attempts = 0;  // every attempt that reached the external system
  };
  enum class Fate : std::uint8_t;
  using ResultFn = std::function<void(const Result<rsmpb::CommandResult>&)>;

  // Replicas and the runtime's proposals.
  [[nodiscard]] bool alive(raft::NodeId id, std::uint64_t incarnation) const;
  [[nodiscard]] std::int64_t wall_ms(raft::NodeId id) const;
  void propose_from_runtime(raft::NodeId id, std::uint64_t incarnation,
                            const workflowpb::WorkflowCommand& command);
  void on_fire_timer(raft::NodeId id, std::int64_t wall_ms, const workflow::AppliedFire& fire,
                     raft::Index index, bool still_exists, const rsmpb::CommandResult& result);

  // The simulated external system.
  void run_activity(raft::NodeId id, std::uint64_t incarnation, const workflow::ActivityTask& task,
                    std::function<void(workflow::ActivityOutcome)> done);
  [[nodiscard]] Fate draw_fate(const workflow::ActivityTask& task);
  [[nodiscard]] workflow::ActivityOutcome perform(const workflow::ActivityTask& task, Fate fate);
  void apply_effect(const workflow::ActivityTask& task);

  // Clients and the operator.
  void plan();
  [[nodiscard]] bool send(const workflowpb::WorkflowCommand& command, ResultFn done);
  void finish_request(std::uint64_t request, const Result<rsmpb::CommandResult>& result);
  void try_start(std::size_t index, bool duplicate);
  void on_start_result(std::size_t index, bool duplicate,
                       const Result<rsmpb::CommandResult>& result);
  void send_signal(std::size_t index, bool cancel);
  void on_operator_poll();
  void operator_act(Planned& w, const workflowpb::WorkflowRecord& record);
  [[nodiscard]] const storage::Reader* any_state() const;

  // Final checks.
  [[nodiscard]] std::string check_workflow(const storage::Reader& state, const Planned& w);
  [[nodiscard]] std::string check_history(const Planned& w, const workflowpb::WorkflowRecord& rec,
                                          const std::vector<workflowpb::HistoryEvent>& events);
  [[nodiscard]] std::string check_activities(
      const Planned& w, const workflowpb::WorkflowRecord& rec,
      const std::vector<workflowpb::HistoryEvent>& events) const;
  [[nodiscard]] static std::string check_saga(const workflowpb::WorkflowRecord& rec,
                                              const std::vector<workflowpb::HistoryEvent>& events);
  [[nodiscard]] static std::string check_pipeline_timers(
      const std::vector<workflowpb::HistoryEvent>& events);
  void count_outcome(const Planned& w, const workflowpb::WorkflowRecord& rec);
  void violation(std::string what);

  ClusterOptions options_;
  workflow::Registry registry_;
  Rng plan_rng_;
  Rng activity_rng_;
  Rng skew_rng_;
  std::vector<Planned> planned_;
  std::map<std::string, std::size_t, std::less<>> planned_by_id_;
  std::map<raft::NodeId, std::unique_ptr<ReplicaApp>> apps_;
  std::map<raft::NodeId, const storage::Reader*> states_;  // every replica's engine
  std::map<raft::NodeId, std::uint64_t> incarnations_;
  std::map<std::uint64_t, ResultFn> requests_;  // client requests awaiting an answer
  std::uint64_t next_request_ = 1;
  std::map<std::string, LedgerEntry> ledger_;  // idempotency key -> the effect it applied
  // (workflow id, run id, activity id) -> idempotency keys applied for that activity.
  std::map<std::tuple<std::string, std::uint64_t, std::uint64_t>, std::set<std::string>>
      effects_by_activity_;
  std::set<std::pair<raft::Index, std::string>> fired_;  // (index, timer) that took effect
  std::optional<std::string> violation_;
  WorkflowStats stats_;
  // Last: destroyed first, so no replica outlives the state machines and runtimes above.
  SimCluster cluster_;
};

}  // namespace herald::sim
