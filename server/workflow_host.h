// WorkflowHost: the workflow engine inside a running node — the "workflow" state-machine module,
// the leader-side Runtime that runs activities and fires timers, and the activity handlers that
// do real work.
//
// NodeHost owns one; it registers engine() with the state-machine router and installs the host
// as the replica's NodeListener. Every method runs on the raft thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "rsm/node.h"
#include "workflow/definition.h"
#include "workflow/engine.h"
#include "workflow/runtime.h"

namespace herald::server {

class NodeHost;
class NodeMetrics;

// Who runs an activity attempt: this node and its current term.
struct AttemptOrigin {
  std::uint64_t node_id = 0;
  std::uint64_t term = 0;
};
using AttemptOriginFn = std::function<AttemptOrigin()>;

class WorkflowHost final : public rsm::NodeListener {
 public:
  using ProposeFn = std::function<void(rsmpb::Command, rsm::ProposeCallback)>;

  // `state` is the replica's engine (borrowed); `propose` submits a command from the raft
  // thread (it must not re-enter the replica's Ready loop: post it). `types` and `handlers`
  // (borrowed) are registered besides the built-in demo types and handler.
  // With `metrics` (borrowed), every activity attempt is counted by type and outcome. With
  // `origin`, every attempt's report names the node and term that ran it (on the raft thread).
  WorkflowHost(const storage::Reader* state, const ProposeFn& propose,
               std::vector<std::shared_ptr<const workflow::WorkflowType>> types = {},
               std::map<std::string, workflow::ActivityHandler*, std::less<>> handlers = {},
               NodeMetrics* metrics = nullptr, AttemptOriginFn origin = {});
  ~WorkflowHost() override;

  [[nodiscard]] workflow::Engine* engine() { return engine_.get(); }
  // The names of every registered workflow type, in registration order.
  [[nodiscard]] const std::vector<std::string>& type_names() const { return type_names_; }
  void tick(std::int64_t now_ms) { runtime_->tick(now_ms); }

  void on_applied() override { runtime_->after_apply(); }
  void on_leadership(bool leader) override { runtime_->on_leadership(leader); }

 private:
  class DemoEffectHandler;
  class CountingHandler;

  workflow::Registry registry_;
  std::vector<std::string> type_names_;
  std::unique_ptr<workflow::Engine> engine_;
  std::unique_ptr<DemoEffectHandler> demo_effect_;
  std::vector<std::unique_ptr<CountingHandler>> counting_;
  std::unique_ptr<workflow::Runtime> runtime_;
};

}  // namespace herald::server
