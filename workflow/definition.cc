#include "workflow/definition.h"

#include <fmt/format.h>

#include <utility>

namespace herald::workflow {

std::string_view event_kind_name(Event::Kind kind) {
  switch (kind) {
    case Event::Kind::kStarted: return "started";
    case Event::Kind::kSignal: return "signaled";
    case Event::Kind::kActivityCompleted: return "activity_completed";
    case Event::Kind::kActivityFailed: return "activity_failed";
    case Event::Kind::kTimerFired: return "timer_fired";
    case Event::Kind::kCancelRequested: return "cancel_requested";
  }
  return "unknown";
}

Action Action::schedule_activity(std::string activity_type, std::string tag, std::string input,
                                 workflowpb::ActivityOptions options) {
  Action a;
  a.kind = Kind::kScheduleActivity;
  a.activity_type = std::move(activity_type);
  a.tag = std::move(tag);
  a.payload = std::move(input);
  a.options = std::move(options);
  return a;
}

Action Action::start_timer(std::string tag, std::int64_t delay_ms) {
  Action a;
  a.kind = Kind::kStartTimer;
  a.tag = std::move(tag);
  a.delay_ms = delay_ms;
  return a;
}

Action Action::cancel_timer(std::string tag) {
  Action a;
  a.kind = Kind::kCancelTimer;
  a.tag = std::move(tag);
  return a;
}

Action Action::record(std::string name, std::string payload) {
  Action a;
  a.kind = Kind::kRecord;
  a.name = std::move(name);
  a.payload = std::move(payload);
  return a;
}

Action Action::complete(std::string result) {
  Action a;
  a.kind = Kind::kComplete;
  a.payload = std::move(result);
  return a;
}

Action Action::fail(std::string error_type, std::string error_message) {
  Action a;
  a.kind = Kind::kFail;
  a.error_type = std::move(error_type);
  a.error_message = std::move(error_message);
  return a;
}

Action Action::continue_as_new(std::string input) {
  Action a;
  a.kind = Kind::kContinueAsNew;
  a.payload = std::move(input);
  return a;
}

Status Registry::add(std::shared_ptr<const WorkflowType> type) {
  HERALD_ASSERT(type != nullptr, "a registered workflow type must exist");
  std::string name(type->name());
  if (name.empty()) {
    return Status::invalid_argument("a workflow type needs a name");
  }
  if (types_.contains(name)) {
    return Status::already_exists(fmt::format("workflow type \"{}\" is registered twice", name));
  }
  types_.emplace(std::move(name), std::move(type));
  return Status::ok_status();
}

const WorkflowType* Registry::find(std::string_view name) const {
  const auto it = types_.find(name);
  return it == types_.end() ? nullptr : it->second.get();
}

}  // namespace herald::workflow
