#include "workflow/saga.h"

#include <algorithm>
#include <charconv>
#include <set>
#include <utility>

#include "base/assert.h"
#include "base/encoding.h"
#include "workflow/engine.h"
#include "workflow/retry.h"
#include "workflow/runtime.h"

namespace herald::workflow {

namespace {

static_assert(kMaxSagaSteps + 1 <= kMaxActionsPerDecision,
              "every compensation of a saga and one record must fit in one decision");

// ---- A small length-prefixed binary encoding (all integers big-endian) ----
//
// Saga data, version 1:
//   u8 version | str input | u32 n, str output x n | u8 flags | str error_type |
//   str error_message | u32 m, (u8 status, str error_type, str error_message) x m
// where str = u32 length + bytes, and flags bit 0 = an action is in flight, bit 1 = cancel
// requested, bit 2 = compensating, bit 3 = some compensation resolved by an operator.
// SagaValues: str input | u32 n, str x n.  SagaResult: u8 compensated | SagaValues-style outputs
// (u32 n, str x n) | str error_type | str error_message | u8 resolved_by_operator.

constexpr std::uint8_t kDataVersion = 1;
constexpr std::uint8_t kFlagActionInFlight = 1U << 0U;
constexpr std::uint8_t kFlagCancelRequested = 1U << 1U;
constexpr std::uint8_t kFlagCompensating = 1U << 2U;
constexpr std::uint8_t kFlagResolvedByOperator = 1U << 3U;

constexpr char kActionTagPrefix[] = "action/";
constexpr char kCompensationTagPrefix[] = "compensation/";
constexpr char kCanceledErrorType[] = "canceled";
constexpr char kCorruptDataErrorType[] = "saga.corrupt_data";

void put_u8(std::string& out, std::uint8_t v) {
  out.push_back(static_cast<char>(v));
}

void put_str(std::string& out, std::string_view s) {
  put_fixed32_be(out, static_cast<std::uint32_t>(s.size()));
  out.append(s);
}

void put_strings(std::string& out, const std::vector<std::string>& strings) {
  put_fixed32_be(out, static_cast<std::uint32_t>(strings.size()));
  for (const auto& s : strings) {
    put_str(out, s);
  }
}

// Reads the encoding back; any short or malformed field turns ok() false for good.
class ByteReader {
 public:
  explicit ByteReader(std::string_view in) : in_(in) {}

  std::uint8_t u8() {
    if (!take(1)) {
      return 0;
    }
    const auto v = static_cast<std::uint8_t>(in_[0]);
    in_.remove_prefix(1);
    return v;
  }
  std::uint32_t u32() {
    if (!take(4)) {
      return 0;
    }
    const std::uint32_t v = get_fixed32_be(in_);
    in_.remove_prefix(4);
    return v;
  }
  std::string str() {
    const std::uint32_t size = u32();
    if (!take(size)) {
      return {};
    }
    std::string s(in_.substr(0, size));
    in_.remove_prefix(size);
    return s;
  }
  // A count of items each at least `min_item_bytes` long: rejects counts the input cannot hold.
  std::uint32_t count(std::size_t min_item_bytes) {
    const std::uint32_t n = u32();
    if (ok_ && static_cast<std::uint64_t>(n) * min_item_bytes > in_.size()) {
      ok_ = false;
    }
    return ok_ ? n : 0;
  }
  std::vector<std::string> strings() {
    std::vector<std::string> out(count(4));
    for (auto& s : out) {
      s = str();
    }
    return out;
  }
  [[nodiscard]] bool ok() const { return ok_; }
  [[nodiscard]] bool done() const { return ok_ && in_.empty(); }

 private:
  bool take(std::size_t n) {
    if (ok_ && in_.size() < n) {
      ok_ = false;
    }
    return ok_;
  }

  std::string_view in_;
  bool ok_ = true;
};

// ---- The saga's own data ----

enum class CompensationStatus : std::uint8_t {
  kPending = 0,    // not scheduled yet
  kScheduled = 1,  // its activity is out
  kDone = 2,
  kFailed = 3,    // failed after its retry policy; waits for an operator
  kResolved = 4,  // an operator fixed it by hand
};
constexpr std::uint8_t kMaxCompensationStatus = 4;

struct Compensation {
  CompensationStatus status = CompensationStatus::kPending;
  std::string error_type;
  std::string error_message;
};

struct SagaData {
  std::string input;
  std::vector<std::string> outputs;  // of the steps whose action completed, in step order
  bool action_in_flight = false;     // the action of step outputs.size() is scheduled
  bool cancel_requested = false;
  bool compensating = false;
  bool resolved_by_operator = false;
  std::string error_type;  // why the saga compensates
  std::string error_message;
  std::vector<Compensation> compensations;  // one per completed step once compensating
};

std::string encode_data(const SagaData& d) {
  std::string out;
  put_u8(out, kDataVersion);
  put_str(out, d.input);
  put_strings(out, d.outputs);
  std::uint8_t flags = 0;
  flags |= d.action_in_flight ? kFlagActionInFlight : 0U;
  flags |= d.cancel_requested ? kFlagCancelRequested : 0U;
  flags |= d.compensating ? kFlagCompensating : 0U;
  flags |= d.resolved_by_operator ? kFlagResolvedByOperator : 0U;
  put_u8(out, flags);
  put_str(out, d.error_type);
  put_str(out, d.error_message);
  put_fixed32_be(out, static_cast<std::uint32_t>(d.compensations.size()));
  for (const auto& c : d.compensations) {
    put_u8(out, static_cast<std::uint8_t>(c.status));
    put_str(out, c.error_type);
    put_str(out, c.error_message);
  }
  return out;
}

std::optional<SagaData> decode_data(std::string_view bytes) {
  ByteReader r(bytes);
  SagaData d;
  if (r.u8() != kDataVersion) {
    return std::nullopt;
  }
  d.input = r.str();
  d.outputs = r.strings();
  const std::uint8_t flags = r.u8();
  d.action_in_flight = (flags & kFlagActionInFlight) != 0;
  d.cancel_requested = (flags & kFlagCancelRequested) != 0;
  d.compensating = (flags & kFlagCompensating) != 0;
  d.resolved_by_operator = (flags & kFlagResolvedByOperator) != 0;
  d.error_type = r.str();
  d.error_message = r.str();
  d.compensations.resize(r.count(9));
  for (auto& c : d.compensations) {
    const std::uint8_t status = r.u8();
    if (status > kMaxCompensationStatus) {
      return std::nullopt;
    }
    c.status = static_cast<CompensationStatus>(status);
    c.error_type = r.str();
    c.error_message = r.str();
  }
  // Only a compensating saga has compensations, one per completed step, and no action out.
  const bool consistent = !(d.compensating && d.action_in_flight) &&
                          d.compensations.size() == (d.compensating ? d.outputs.size() : 0);
  if (!r.done() || !consistent) {
    return std::nullopt;
  }
  return d;
}

// ---- Activity tags: "action/<step>" and "compensation/<step>" ----

std::string tag_for(std::string_view prefix, std::size_t step) {
  return std::string(prefix) + std::to_string(step);
}

// The step named by `tag` when it starts with `prefix`.
std::optional<std::size_t> step_of(std::string_view tag, std::string_view prefix) {
  if (!tag.starts_with(prefix)) {
    return std::nullopt;
  }
  tag.remove_prefix(prefix.size());
  std::size_t step = 0;
  const auto [ptr, ec] = std::from_chars(tag.data(), tag.data() + tag.size(), step);
  if (ec != std::errc() || ptr != tag.data() + tag.size()) {
    return std::nullopt;
  }
  return step;
}

// The options the saga schedules with: the declared ones, kUnknownActivityType non-retryable.
workflowpb::ActivityOptions with_unknown_type_non_retryable(workflowpb::ActivityOptions options) {
  const auto& types = options.retry().non_retryable_error_types();
  if (std::find(types.begin(), types.end(), kUnknownActivityType) == types.end()) {
    HERALD_ASSERT(static_cast<std::size_t>(types.size()) < kMaxNonRetryableErrorTypes,
                  "no room to make unknown_activity_type non-retryable");
    options.mutable_retry()->add_non_retryable_error_types(kUnknownActivityType);
  }
  return options;
}

void check_definition(const SagaDefinition& def) {
  HERALD_ASSERT(!def.name.empty(), "a saga needs a name");
  HERALD_ASSERT(!def.steps.empty() && def.steps.size() <= kMaxSagaSteps,
                "a saga has 1..kMaxSagaSteps steps");
  std::set<std::string_view> names;
  for (const auto& step : def.steps) {
    HERALD_ASSERT(!step.name.empty(), "a saga step needs a name");
    HERALD_ASSERT(!step.action_type.empty() && !step.compensation_type.empty(),
                  "a saga step needs an action and a compensation activity type");
    HERALD_ASSERT(names.insert(step.name).second, "saga step names must be unique");
  }
}

bool all_undone(const SagaData& d) {
  return std::all_of(d.compensations.begin(), d.compensations.end(), [](const Compensation& c) {
    return c.status == CompensationStatus::kDone || c.status == CompensationStatus::kResolved;
  });
}

bool any_with(const SagaData& d, CompensationStatus status) {
  return std::any_of(d.compensations.begin(), d.compensations.end(),
                     [status](const Compensation& c) { return c.status == status; });
}

class SagaType final : public WorkflowType {
 public:
  explicit SagaType(SagaDefinition def) : def_(std::move(def)) {
    check_definition(def_);
    for (auto& step : def_.steps) {
      step.action_options = with_unknown_type_non_retryable(step.action_options);
      step.compensation_options = with_unknown_type_non_retryable(step.compensation_options);
    }
  }

  [[nodiscard]] std::string_view name() const override { return def_.name; }
  [[nodiscard]] std::string_view initial_state() const override { return kSagaRunning; }
  [[nodiscard]] bool starts_when_disk_low() const override { return def_.starts_when_disk_low; }

  [[nodiscard]] Decision on_event(std::string_view state, std::string_view data,
                                  const Event& event) const override {
    if (state == kSagaCompleted || state == kSagaCompensated) {
      return unchanged(state, data);  // closed: nothing more to decide
    }
    if (event.kind == Event::Kind::kStarted) {
      return data.empty() ? start(event.payload) : unchanged(state, data);
    }
    std::optional<SagaData> d = decode_data(data);
    if (!d.has_value() || !open_and_well_formed(*d)) {
      return Decision{std::string(state),
                      std::string(data),
                      {Action::fail(kCorruptDataErrorType, "the saga's data cannot be decoded")}};
    }
    switch (event.kind) {
      case Event::Kind::kActivityCompleted:
      case Event::Kind::kActivityFailed: return on_activity(state, data, std::move(*d), event);
      case Event::Kind::kSignal: return on_signal(state, data, std::move(*d), event);
      case Event::Kind::kCancelRequested: return on_cancel(state, data, std::move(*d), event);
      case Event::Kind::kStarted:
      case Event::Kind::kTimerFired: break;  // the saga starts no timers
    }
    return unchanged(state, data);
  }

 private:
  // An open saga waits for exactly one action or compensates, within the declared steps.
  [[nodiscard]] bool open_and_well_formed(const SagaData& d) const {
    const std::size_t started = d.outputs.size() + (d.action_in_flight ? 1 : 0);
    return d.compensating != d.action_in_flight && started <= def_.steps.size();
  }

  static Decision unchanged(std::string_view state, std::string_view data,
                            std::vector<Action> actions = {}) {
    return Decision{std::string(state), std::string(data), std::move(actions)};
  }

  [[nodiscard]] std::string values_through(const SagaData& d, std::size_t count) const {
    HERALD_ASSERT(count <= d.outputs.size(), "values of steps that have not completed");
    return encode_saga_values(SagaValues{
        d.input, std::vector<std::string>(d.outputs.begin(),
                                          d.outputs.begin() + static_cast<std::ptrdiff_t>(count))});
  }

  [[nodiscard]] Action schedule_action(SagaData& d) const {
    const std::size_t step = d.outputs.size();
    HERALD_ASSERT(step < def_.steps.size(), "no step left to run");
    d.action_in_flight = true;
    return Action::schedule_activity(def_.steps[step].action_type, tag_for(kActionTagPrefix, step),
                                     values_through(d, step), def_.steps[step].action_options);
  }

  [[nodiscard]] Action schedule_compensation(SagaData& d, std::size_t step) const {
    HERALD_ASSERT(d.compensations[step].status == CompensationStatus::kPending,
                  "only a pending compensation is scheduled");
    d.compensations[step] = Compensation{CompensationStatus::kScheduled, {}, {}};
    return Action::schedule_activity(
        def_.steps[step].compensation_type, tag_for(kCompensationTagPrefix, step),
        values_through(d, step + 1), def_.steps[step].compensation_options);
  }

  [[nodiscard]] Decision start(std::string_view input) const {
    SagaData d;
    d.input = std::string(input);
    std::vector<Action> actions;
    actions.push_back(schedule_action(d));
    return Decision{kSagaRunning, encode_data(d), std::move(actions)};
  }

  [[nodiscard]] Decision on_activity(std::string_view state, std::string_view data, SagaData d,
                                     const Event& event) const {
    if (const auto step = step_of(event.tag, kActionTagPrefix); step.has_value()) {
      if (!d.action_in_flight || *step != d.outputs.size()) {
        return unchanged(state, data);  // not the action in flight: a stale outcome
      }
      return on_action_outcome(std::move(d), event);
    }
    if (const auto step = step_of(event.tag, kCompensationTagPrefix); step.has_value()) {
      if (!d.compensating || *step >= d.compensations.size() ||
          d.compensations[*step].status != CompensationStatus::kScheduled) {
        return unchanged(state, data);
      }
      return on_compensation_outcome(std::move(d), *step, event);
    }
    return unchanged(state, data);
  }

  [[nodiscard]] Decision on_action_outcome(SagaData d, const Event& event) const {
    d.action_in_flight = false;
    std::vector<Action> actions;
    if (event.kind == Event::Kind::kActivityCompleted) {
      d.outputs.push_back(event.payload);
      if (!d.cancel_requested && d.outputs.size() == def_.steps.size()) {
        SagaResult result;
        result.outputs = d.outputs;
        return Decision{
            kSagaCompleted, encode_data(d), {Action::complete(encode_saga_result(result))}};
      }
      if (!d.cancel_requested) {
        actions.push_back(schedule_action(d));
        return settle(std::move(d), std::move(actions));
      }
    } else if (!d.cancel_requested) {
      d.error_type = event.error_type;
      d.error_message = event.error_message;
    }
    d.compensating = true;
    d.compensations.assign(d.outputs.size(), Compensation{});
    return settle(std::move(d), std::move(actions));
  }

  [[nodiscard]] Decision on_compensation_outcome(SagaData d, std::size_t step,
                                                 const Event& event) const {
    std::vector<Action> actions;
    if (event.kind == Event::Kind::kActivityCompleted) {
      d.compensations[step] = Compensation{CompensationStatus::kDone, {}, {}};
    } else {
      d.compensations[step] =
          Compensation{CompensationStatus::kFailed, event.error_type, event.error_message};
      actions.push_back(Action::record(
          kSagaCompensationFailed,
          std::to_string(step) + ": " + event.error_type + ": " + event.error_message));
    }
    return settle(std::move(d), std::move(actions));
  }

  [[nodiscard]] Decision on_signal(std::string_view state, std::string_view data, SagaData d,
                                   const Event& event) const {
    const bool retry = event.name == kSagaRetrySignal;
    const bool resolve = event.name == kSagaResolveSignal;
    if (state != kSagaCompensationFailed || !(retry || resolve)) {
      return unchanged(state, data, {Action::record("signal_ignored", event.name)});
    }
    std::vector<Action> actions;
    for (auto& c : d.compensations) {
      if (c.status == CompensationStatus::kFailed) {
        c = Compensation{
            retry ? CompensationStatus::kPending : CompensationStatus::kResolved, {}, {}};
      }
    }
    if (resolve) {
      d.resolved_by_operator = true;
      actions.push_back(Action::record("resolved_by_operator", event.payload));
    }
    return settle(std::move(d), std::move(actions));
  }

  [[nodiscard]] Decision on_cancel(std::string_view state, std::string_view data, SagaData d,
                                   const Event& event) const {
    if (state != kSagaRunning || d.cancel_requested || !d.action_in_flight) {
      return unchanged(state, data, {Action::record("cancel_ignored", event.payload)});
    }
    d.cancel_requested = true;
    d.error_type = kCanceledErrorType;
    d.error_message = event.payload;
    return settle(std::move(d), {Action::record("cancel_accepted", event.payload)});
  }

  // Schedules what may run now, then names the state the data implies; closes the run as
  // "compensated" once every completed step is undone.
  [[nodiscard]] Decision settle(SagaData d, std::vector<Action> actions) const {
    if (!d.compensating) {
      HERALD_ASSERT(d.action_in_flight, "a running saga always has an action in flight");
      const char* state = d.cancel_requested ? kSagaCompensating : kSagaRunning;
      return Decision{state, encode_data(d), std::move(actions)};
    }
    schedule_compensations(d, actions);
    if (all_undone(d)) {
      SagaResult result{true, d.outputs, d.error_type, d.error_message, d.resolved_by_operator};
      actions.push_back(Action::complete(encode_saga_result(result)));
      return Decision{kSagaCompensated, encode_data(d), std::move(actions)};
    }
    const bool failed = any_with(d, CompensationStatus::kFailed);
    return Decision{failed ? kSagaCompensationFailed : kSagaCompensating, encode_data(d),
                    std::move(actions)};
  }

  // Parallel: every pending compensation. Sequential: the highest pending step, once nothing is
  // out and nothing waits for an operator (reverse order, one at a time).
  void schedule_compensations(SagaData& d, std::vector<Action>& actions) const {
    if (!def_.parallel_compensation &&
        (any_with(d, CompensationStatus::kScheduled) || any_with(d, CompensationStatus::kFailed))) {
      return;
    }
    for (std::size_t i = d.compensations.size(); i-- > 0;) {
      if (d.compensations[i].status == CompensationStatus::kPending) {
        actions.push_back(schedule_compensation(d, i));
        if (!def_.parallel_compensation) {
          return;
        }
      }
    }
  }

  SagaDefinition def_;
};

}  // namespace

std::string encode_saga_values(const SagaValues& values) {
  std::string out;
  put_str(out, values.input);
  put_strings(out, values.outputs);
  return out;
}

std::optional<SagaValues> decode_saga_values(std::string_view bytes) {
  ByteReader r(bytes);
  SagaValues v;
  v.input = r.str();
  v.outputs = r.strings();
  if (!r.done()) {
    return std::nullopt;
  }
  return v;
}

std::string encode_saga_result(const SagaResult& result) {
  std::string out;
  put_u8(out, result.compensated ? 1 : 0);
  put_strings(out, result.outputs);
  put_str(out, result.error_type);
  put_str(out, result.error_message);
  put_u8(out, result.resolved_by_operator ? 1 : 0);
  return out;
}

std::optional<SagaResult> decode_saga_result(std::string_view bytes) {
  ByteReader r(bytes);
  SagaResult result;
  const std::uint8_t compensated = r.u8();
  result.outputs = r.strings();
  result.error_type = r.str();
  result.error_message = r.str();
  const std::uint8_t resolved = r.u8();
  if (!r.done() || compensated > 1 || resolved > 1) {
    return std::nullopt;
  }
  result.compensated = compensated == 1;
  result.resolved_by_operator = resolved == 1;
  return result;
}

std::shared_ptr<const WorkflowType> make_saga_type(SagaDefinition def) {
  return std::make_shared<SagaType>(std::move(def));
}

}  // namespace herald::workflow
