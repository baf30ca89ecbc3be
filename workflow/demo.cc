#include "workflow/demo.h"

#include <charconv>
#include <string>
#include <string_view>

namespace herald::workflow {

namespace {

struct Progress {
  std::uint32_t step = 0;   // the step running or last completed
  std::uint32_t steps = 0;  // N
};

Progress decode(std::string_view data) {
  Progress p;
  const auto slash = data.find('/');
  if (slash == std::string_view::npos) {
    return p;
  }
  std::from_chars(data.data(), data.data() + slash, p.step);
  std::from_chars(data.data() + slash + 1, data.data() + data.size(), p.steps);
  return p;
}

std::string encode(const Progress& p) {
  return std::to_string(p.step) + "/" + std::to_string(p.steps);
}

workflowpb::ActivityOptions effect_options() {
  workflowpb::ActivityOptions o;
  o.mutable_retry()->set_initial_interval_ms(100);
  o.mutable_retry()->set_maximum_interval_ms(2000);
  o.mutable_retry()->set_maximum_attempts(20);
  o.set_start_to_close_timeout_ms(5000);
  return o;
}

Decision run_step(Progress p) {
  Decision d{"running", encode(p), {}};
  d.actions.push_back(Action::schedule_activity(kDemoEffectActivity,
                                                "step-" + std::to_string(p.step),
                                                std::to_string(p.step), effect_options()));
  return d;
}

class DemoPipeline final : public WorkflowType {
 public:
  [[nodiscard]] std::string_view name() const override { return kDemoPipelineType; }
  [[nodiscard]] std::string_view initial_state() const override { return "running"; }

  [[nodiscard]] Decision on_event(std::string_view state, std::string_view data,
                                  const Event& event) const override {
    Progress p = decode(data);
    switch (event.kind) {
      case Event::Kind::kStarted: return start(event.payload);
      case Event::Kind::kActivityCompleted:
        if (p.step >= p.steps) {
          return Decision{"completed", encode(p), {Action::complete(std::to_string(p.steps))}};
        }
        return Decision{"pausing", encode(p), {Action::start_timer("pause", kDemoPauseMs)}};
      case Event::Kind::kTimerFired: ++p.step; return run_step(p);
      case Event::Kind::kActivityFailed:
        return Decision{"failed", encode(p), {Action::fail(event.error_type, event.error_message)}};
      case Event::Kind::kCancelRequested:
        return Decision{"canceled", encode(p), {Action::fail("canceled", event.payload)}};
      case Event::Kind::kSignal: break;
    }
    return Decision{std::string(state), std::string(data), {}};
  }

 private:
  static Decision start(std::string_view input) {
    std::uint32_t steps = 3;
    if (!input.empty()) {
      const auto [ptr, ec] = std::from_chars(input.data(), input.data() + input.size(), steps);
      if (ec != std::errc() || ptr != input.data() + input.size() || steps == 0 ||
          steps > kMaxDemoSteps) {
        return Decision{"failed", "", {Action::fail("invalid_input", "steps must be 1..100")}};
      }
    }
    return run_step(Progress{1, steps});
  }
};

// Parses a whole decimal string into `out`; false for empty, signs, junk or overflow.
bool parse_int(std::string_view s, std::int64_t& out) {
  if (s.empty() || s.front() == '-' || s.front() == '+') {
    return false;
  }
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

class DemoSleep final : public WorkflowType {
 public:
  [[nodiscard]] std::string_view name() const override { return kDemoSleepType; }
  [[nodiscard]] std::string_view initial_state() const override { return "sleeping"; }

  [[nodiscard]] Decision on_event(std::string_view state, std::string_view data,
                                  const Event& event) const override {
    switch (event.kind) {
      case Event::Kind::kStarted: return start(event);
      case Event::Kind::kTimerFired:
        if (event.tag == kDemoSleepTimer) {
          return Decision{"done", std::string(data), {Action::complete("woke")}};
        }
        break;
      case Event::Kind::kCancelRequested:
        return Decision{"canceled", std::string(data), {Action::fail("canceled", event.payload)}};
      case Event::Kind::kSignal:
      case Event::Kind::kActivityCompleted:
      case Event::Kind::kActivityFailed: break;
    }
    return Decision{std::string(state), std::string(data), {}};
  }

 private:
  static Decision start(const Event& event) {
    std::string_view input = event.payload;
    const bool absolute = !input.empty() && input.front() == '@';
    if (absolute) {
      input.remove_prefix(1);
    }
    std::int64_t v = 0;
    std::int64_t delay = 0;
    bool ok = parse_int(input, v);
    if (ok && absolute) {
      delay = v > event.time_ms ? v - event.time_ms : 0;
    } else if (ok) {
      delay = v;
    }
    if (!ok || delay > kMaxDemoSleepMs) {
      return Decision{
          "failed",
          "",
          {Action::fail("invalid_input", "input must be a delay in ms (0..a week) or @<wall ms>")}};
    }
    return Decision{
        "sleeping", std::string(event.payload), {Action::start_timer(kDemoSleepTimer, delay)}};
  }
};

class DemoInbox final : public WorkflowType {
 public:
  [[nodiscard]] std::string_view name() const override { return kDemoInboxType; }
  [[nodiscard]] std::string_view initial_state() const override { return "even"; }

  [[nodiscard]] Decision on_event(std::string_view state, std::string_view data,
                                  const Event& event) const override {
    switch (event.kind) {
      case Event::Kind::kStarted: return Decision{"even", "0", {}};
      case Event::Kind::kSignal: {
        std::int64_t count = 0;
        if (!parse_int(data, count)) {
          count = 0;  // unreachable for data this type wrote; restart the count
        }
        ++count;
        return Decision{count % 2 == 0 ? "even" : "odd", std::to_string(count), {}};
      }
      case Event::Kind::kCancelRequested:
        return Decision{"closed", std::string(data), {Action::complete(std::string(data))}};
      case Event::Kind::kActivityCompleted:
      case Event::Kind::kActivityFailed:
      case Event::Kind::kTimerFired: break;
    }
    return Decision{std::string(state), std::string(data), {}};
  }
};

}  // namespace

std::shared_ptr<const WorkflowType> make_demo_pipeline_type() {
  return std::make_shared<DemoPipeline>();
}

std::shared_ptr<const WorkflowType> make_demo_sleep_type() {
  return std::make_shared<DemoSleep>();
}

std::shared_ptr<const WorkflowType> make_demo_inbox_type() {
  return std::make_shared<DemoInbox>();
}

}  // namespace herald::workflow
