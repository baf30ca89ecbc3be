// How a workflow type is declared: a pure state machine over events, emitting actions.
//
// A WorkflowType is C++ code registered in every replica's Registry under its name. The engine
// (workflow/engine.h) calls on_event() while it applies a committed command; the returned
// Decision is applied in the same write batch: new state and data, history events, and the
// actions' effects (activities to dispatch, timers to start or cancel, closing the run).
//
// Determinism contract: on_event() must be a pure function of (state, data, event). It must not
// read a clock (use Event::time_ms, the proposer's stamped time), a random source, global state,
// a file or the network; it must not throw. Every replica makes the same decision.
// Thread-safety: types are immutable after registration and may be shared.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "workflow/workflow.pb.h"

namespace herald::workflow {

struct Event {
  enum class Kind : std::uint8_t {
    kStarted,            // payload = start input
    kSignal,             // name = signal name, payload = signal payload
    kActivityCompleted,  // tag = activity tag, payload = output
    kActivityFailed,     // tag, error_type, error_message: retries are exhausted or not allowed
    kTimerFired,         // tag = timer tag
    kCancelRequested,    // payload = reason
  };
  Kind kind = Kind::kStarted;
  std::string name;
  std::string tag;
  std::string payload;
  std::string error_type;
  std::string error_message;
  std::int64_t time_ms = 0;  // the applied command's stamped time
  std::uint64_t activity_id = 0;
  std::uint32_t attempt = 0;
};

[[nodiscard]] std::string_view event_kind_name(Event::Kind kind);

struct Action {
  enum class Kind : std::uint8_t {
    kScheduleActivity,  // activity_type, tag, input, options
    kStartTimer,        // tag, delay_ms (a tag already running is restarted)
    kCancelTimer,       // tag
    kRecord,            // name, payload: an extra history event (e.g. "escalated")
    kComplete,          // payload = result
    kFail,              // error_type, error_message
    kContinueAsNew,     // payload = input of the new run
  };
  Kind kind = Kind::kRecord;
  std::string activity_type;
  std::string tag;
  std::string name;
  std::string payload;
  std::string error_type;
  std::string error_message;
  std::int64_t delay_ms = 0;
  workflowpb::ActivityOptions options;

  [[nodiscard]] static Action schedule_activity(std::string activity_type, std::string tag,
                                                std::string input,
                                                workflowpb::ActivityOptions options);
  [[nodiscard]] static Action start_timer(std::string tag, std::int64_t delay_ms);
  [[nodiscard]] static Action cancel_timer(std::string tag);
  [[nodiscard]] static Action record(std::string name, std::string payload = {});
  [[nodiscard]] static Action complete(std::string result = {});
  [[nodiscard]] static Action fail(std::string error_type, std::string error_message);
  [[nodiscard]] static Action continue_as_new(std::string input);
};

struct Decision {
  std::string state;  // the named state after the event (may be unchanged)
  std::string data;   // the type's data after the event
  std::vector<Action> actions;
};

class WorkflowType {
 public:
  virtual ~WorkflowType() = default;
  [[nodiscard]] virtual std::string_view name() const = 0;
  // The named state a new run starts in (before its kStarted event).
  [[nodiscard]] virtual std::string_view initial_state() const = 0;
  // The transition for `event` in (`state`, `data`). See the determinism contract above.
  [[nodiscard]] virtual Decision on_event(std::string_view state, std::string_view data,
                                          const Event& event) const = 0;
  // True for a type whose runs only settle state already stored (a read-sync saga): it may
  // still start while a disk alarm refuses new content (rsm::StateMachine::allowed_when_disk_low).
  [[nodiscard]] virtual bool starts_when_disk_low() const { return false; }
};

// The workflow types a replica knows, by name. Every replica must register the same types.
class Registry {
 public:
  // kAlreadyExists for a second type with the same name.
  [[nodiscard]] Status add(std::shared_ptr<const WorkflowType> type);
  // nullptr when unknown.
  [[nodiscard]] const WorkflowType* find(std::string_view name) const;

 private:
  std::map<std::string, std::shared_ptr<const WorkflowType>, std::less<>> types_;
};

}  // namespace herald::workflow
