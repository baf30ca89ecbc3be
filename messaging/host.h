// Host: the messaging domain inside a replica (a node under `herald serve`, or a simulated one) —
// the "messaging" state-machine module, the WorkflowSink that lets a domain command start and
// signal delivery workflows in its own apply batch, and the leader-side activity handlers of the
// delivery workflow
// ("messaging.push", "messaging.email") and of the read-sync saga (docs/messaging.md).
//
// Every handler's effect either goes back through the log (the read-sync steps propose domain
// commands, which are idempotent) or through a provider (push, email), called with the
// activity's idempotency key so that a second run after a failover is recognisable.
//
// The host does no I/O itself: commands leave through `propose`, notifications through the
// providers (real ones under `herald serve`, recording ones in tests and the simulator).
// Wiring (server/node_host.cc, sim/): construct, hand types() and handlers() to the WorkflowHost,
// then bind_engine() with its engine, and register domain() with the router. Thread-safety:
// everything runs on the raft thread. Providers may call back on any thread; the host posts their
// results back through `post`.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/clock.h"
#include "messaging/domain.h"
#include "messaging/providers.h"
#include "rsm/node.h"
#include "storage/engine.h"
#include "workflow/definition.h"
#include "workflow/engine.h"
#include "workflow/runtime.h"

namespace herald::messaging {

// Decides, in apply, which workflows an event starts (webhooks/emitter.h): appends them.
using EventStarts =
    std::function<Status(const rsm::ApplyBatch& state, std::int64_t now_ms,
                         const DomainEvent& event, std::vector<workflowpb::StartWorkflow>& starts)>;

class Host {
 public:
  using ProposeFn = std::function<void(rsmpb::Command, rsm::ProposeCallback)>;
  using PostFn = std::function<void(std::function<void()>)>;

  // `state` (the replica's engine), `push`, `email` and `clock` are borrowed and must outlive the
  // host. `propose` submits a command from the raft thread; `post` runs a function on it later.
  // `clock` times provider calls for the delivery timeline (any thread).
  Host(const storage::Reader* state, ProposeFn propose, PostFn post, PushProvider* push,
       EmailProvider* email, const Clock* clock);
  ~Host();
  Host(const Host&) = delete;
  Host& operator=(const Host&) = delete;

  // The workflow types the domain starts: the delivery workflow and the read-sync saga.
  [[nodiscard]] static std::vector<std::shared_ptr<const workflow::WorkflowType>> types();
  // Handlers by activity type (borrowed from the host).
  [[nodiscard]] std::map<std::string, workflow::ActivityHandler*, std::less<>> handlers();
  // Precondition: called once, before the first command is applied.
  void bind_engine(workflow::Engine* engine);
  // The workflows to start for each event the domain reports (WorkflowSink::emit), applied in the
  // reporting command's batch; unset, events are dropped. Must be deterministic (it runs in
  // apply). Precondition: set before the first command is applied.
  void set_event_starts(EventStarts starts);

  [[nodiscard]] Domain* domain() { return domain_.get(); }

 private:
  class EngineSink;
  class Handler;

  std::unique_ptr<EngineSink> sink_;
  std::unique_ptr<Domain> domain_;
  std::map<std::string, std::unique_ptr<Handler>, std::less<>> handlers_;  // by activity type
};

// ProviderAttempt.reason (and provider ids) kept in a timeline or a device record, at most.
// It bounds the reason an InvalidatePushTarget carries too.
inline constexpr std::size_t kMaxAttemptReasonBytes = kMaxPushInvalidReasonBytes;

// Maps a proposal's outcome to an activity outcome: ok, or a failure whose error type is
// "unavailable" (retryable) for a proposal that did not reach the log, else the result's code
// name. Exposed for tests.
[[nodiscard]] workflow::ActivityOutcome outcome_of(const Result<rsmpb::CommandResult>& result);

}  // namespace herald::messaging
