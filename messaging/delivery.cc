#include "messaging/delivery.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <utility>
#include <vector>

#include "base/assert.h"
#include "base/log.h"
#include "messaging/providers.h"
#include "workflow/runtime.h"

namespace herald::messaging {

namespace {

using messagingpb::DeliveryData;
using messagingpb::DeliveryInput;
using messagingpb::DeviceDelivery;
using messagingpb::DeviceSignal;
using workflow::Action;
using workflow::Decision;
using workflow::Event;

constexpr char kDeliveryIdPrefix[] = "delivery";
// The versions whose rules began: one push activity per device; "push_dispatched" on an accepted
// push and refused waits outside the retry window (messaging/delivery.h, kDeliveryVersion).
constexpr std::uint32_t kPerDeviceVersion = 2;
constexpr std::uint32_t kDispatchOnAcceptVersion = 3;
static_assert(kDeliveryVersion == kDispatchOnAcceptVersion, "new runs follow the latest rules");

Decision unchanged(std::string_view state, std::string_view data,
                   std::vector<Action> actions = {}) {
  return Decision{std::string(state), std::string(data), std::move(actions)};
}

Decision changed(std::string_view state, const DeliveryData& data,
                 std::vector<Action> actions = {}) {
  return Decision{std::string(state), data.SerializeAsString(), std::move(actions)};
}

Decision fail(std::string_view state, std::string_view data, std::string_view error_type,
              std::string message) {
  return unchanged(state, data, {Action::fail(std::string(error_type), std::move(message))});
}

// A confirmation (or the read that closes the run) makes both timers pointless.
std::vector<Action> cancel_timers() {
  return {Action::cancel_timer(kPushTimer), Action::cancel_timer(kEscalateTimer)};
}

// The backoff shared by every provider policy, with `permanent` and kUnknownActivityType
// non-retryable.
workflowpb::RetryPolicy provider_backoff(std::initializer_list<std::string_view> permanent) {
  workflowpb::RetryPolicy policy;
  policy.set_initial_interval_ms(kProviderRetryInitialIntervalMs);
  policy.set_backoff_coefficient(kProviderRetryBackoffCoefficient);
  policy.set_maximum_interval_ms(kProviderRetryMaximumIntervalMs);
  for (const std::string_view type : permanent) {
    policy.add_non_retryable_error_types(std::string(type));
  }
  policy.add_non_retryable_error_types(workflow::kUnknownActivityType);
  return policy;
}

// Version 1: a count of attempts, no hints, no schedule-to-close. Frozen.
workflowpb::ActivityOptions provider_options_v1(std::initializer_list<std::string_view> permanent) {
  workflowpb::ActivityOptions options;
  *options.mutable_retry() = provider_backoff(permanent);
  options.mutable_retry()->set_maximum_attempts(kProviderRetryMaximumAttempts);
  options.set_start_to_close_timeout_ms(kProviderStartToCloseTimeoutMs);
  return options;
}

// Version 2: unlimited attempts within the retry window, hints honoured.
workflowpb::RetryPolicy provider_retry_policy(std::initializer_list<std::string_view> permanent) {
  workflowpb::RetryPolicy policy = provider_backoff(permanent);
  policy.set_maximum_retry_after_ms(kProviderMaxRetryAfterMs);
  return policy;
}

// Version 2 (frozen): the retry window, every attempt counted against it.
workflowpb::ActivityOptions provider_options_v2(workflowpb::RetryPolicy policy) {
  workflowpb::ActivityOptions options;
  *options.mutable_retry() = std::move(policy);
  options.set_start_to_close_timeout_ms(kProviderStartToCloseTimeoutMs);
  options.set_schedule_to_close_timeout_ms(kProviderRetryWindowMs);
  return options;
}

// Version 3: the retry window, without the waits after refused attempts.
workflowpb::ActivityOptions provider_options(workflowpb::RetryPolicy policy) {
  workflowpb::ActivityOptions options = provider_options_v2(std::move(policy));
  options.set_maximum_refused_wait_ms(kProviderMaxRefusedWaitMs);
  return options;
}

// The device index a version 2 push activity's tag names; nullopt for any other tag.
std::optional<std::size_t> push_device_index(std::string_view tag) {
  if (!tag.starts_with(kPushDeviceTagPrefix)) {
    return std::nullopt;
  }
  const std::string_view digits = tag.substr(std::string_view(kPushDeviceTagPrefix).size());
  std::size_t index = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), index);
  if (ec != std::errc() || end != digits.data() + digits.size() || digits.empty()) {
    return std::nullopt;
  }
  return index;
}

void append_escaped(std::string& out, std::string_view part) {
  for (const char c : part) {
    if (c == '%') {
      out += "%25";
    } else if (c == '/') {
      out += "%2F";
    } else {
      out.push_back(c);
    }
  }
}

bool valid_device_id(std::string_view id) {
  return !id.empty() && id.size() <= kMaxDeviceIdBytes;
}

bool valid_delay(std::int64_t delay_ms) {
  return delay_ms >= 0 && delay_ms <= kMaxDeliveryDelayMs;
}

DeviceDelivery* find_device(DeliveryData& d, std::string_view device_id) {
  for (auto& device : *d.mutable_devices()) {
    if (device.device_id() == device_id) {
      return &device;
    }
  }
  return nullptr;
}

// The device's entry; a new one (pending) when it is unknown and the bound allows, else nullptr.
DeviceDelivery* find_or_add_device(DeliveryData& d, std::string_view device_id) {
  if (DeviceDelivery* device = find_device(d, device_id); device != nullptr) {
    return device;
  }
  if (static_cast<std::size_t>(d.devices_size()) >= kMaxDeliveryDevices) {
    return nullptr;
  }
  DeviceDelivery* device = d.add_devices();
  device->set_device_id(std::string(device_id));
  device->set_state(messagingpb::DEVICE_PENDING);
  return device;
}

bool is_open(std::string_view state) {
  return state == kDeliveryStored || state == kDeliveryPushDispatched ||
         state == kDeliveryConfirmed;
}

bool is_unconfirmed(std::string_view state) {
  return state == kDeliveryStored || state == kDeliveryPushDispatched;
}

messagingpb::PushTask push_task(const DeliveryInput& in, std::vector<std::string> device_ids) {
  messagingpb::PushTask task;
  task.set_user_id(in.recipient_user_id());
  for (auto& id : device_ids) {
    task.add_device_ids(std::move(id));
  }
  task.set_conversation_id(in.conversation_id());
  task.set_seq(in.seq());
  task.set_sender_user_id(in.sender_user_id());
  task.set_preview(in.preview());
  return task;
}

messagingpb::EmailTask email_task(const DeliveryInput& in) {
  messagingpb::EmailTask task;
  task.set_user_id(in.recipient_user_id());
  task.set_conversation_id(in.conversation_id());
  task.set_seq(in.seq());
  task.set_sender_user_id(in.sender_user_id());
  task.set_preview(in.preview());
  return task;
}

// A decoded "delivered" or "read" signal, or why it is ignored.
struct ParsedSignal {
  std::string device_id;
  std::int64_t time_ms = 0;
  std::string problem;  // non-empty: ignore the signal
};

ParsedSignal parse_signal(const Event& event) {
  DeviceSignal signal;
  if (!signal.ParseFromString(event.payload)) {
    return {{}, 0, "the payload is not a DeviceSignal"};
  }
  if (!valid_device_id(signal.device_id())) {
    return {{}, 0, fmt::format("the device id must have 1 to {} bytes", kMaxDeviceIdBytes)};
  }
  // The device's own time when it sent one, else the command's stamped time.
  const std::int64_t time_ms = signal.time_ms() > 0 ? signal.time_ms() : event.time_ms;
  return {signal.device_id(), time_ms, {}};
}

class DeliveryType final : public workflow::WorkflowType {
 public:
  [[nodiscard]] std::string_view name() const override { return kDeliveryType; }
  [[nodiscard]] std::string_view initial_state() const override { return kDeliveryInitiated; }

  [[nodiscard]] Decision on_event(std::string_view state, std::string_view data,
                                  const Event& event) const override {
    Decision decision = decide(state, data, event);
    if (log::enabled(spdlog::level::debug)) {
      log_decision(state, decision, event);
    }
    return decision;
  }

 private:
  [[nodiscard]] static Decision decide(std::string_view state, std::string_view data,
                                       const Event& event) {
    if (event.kind == Event::Kind::kStarted) {
      return state == kDeliveryInitiated ? start(event) : unchanged(state, data);
    }
    std::optional<DeliveryData> d = decode_delivery_data(data);
    if (!d.has_value()) {
      return fail(state, data, kDeliveryCorruptData, "the delivery data cannot be decoded");
    }
    switch (event.kind) {
      case Event::Kind::kSignal: return on_signal(state, data, std::move(*d), event);
      case Event::Kind::kTimerFired: return on_timer(state, data, std::move(*d), event);
      case Event::Kind::kActivityCompleted:
      case Event::Kind::kActivityFailed: return on_activity(state, data, std::move(*d), event);
      case Event::Kind::kCancelRequested:  // no decision: the engine cancels the run
      case Event::Kind::kStarted: break;
    }
    return unchanged(state, data);
  }

  // One debug line per event, with the message's and the workflow's ids as fields (base/log.h):
  // the event, the state before and after, and the actions taken. Output only: it reads the
  // decision, never changes it.
  static void log_decision(std::string_view before, const Decision& decision, const Event& event) {
    const std::optional<DeliveryData> d = decode_delivery_data(decision.data);
    if (!d.has_value()) {
      return;  // a run that failed on its input: the engine logs nothing more useful
    }
    const DeliveryInput& in = d->input();
    std::string device_id;
    std::string what(workflow::event_kind_name(event.kind));
    if (event.kind == Event::Kind::kSignal) {
      what += " " + event.name;
      device_id = parse_signal(event).device_id;
    } else if (event.kind == Event::Kind::kTimerFired ||
               event.kind == Event::Kind::kActivityCompleted ||
               event.kind == Event::Kind::kActivityFailed) {
      what += " " + event.tag;
      const auto index = push_device_index(event.tag);
      if (index && *index < static_cast<std::size_t>(d->devices_size())) {
        device_id = d->devices(static_cast<int>(*index)).device_id();
      }
    }
    std::string actions;
    for (const Action& a : decision.actions) {
      switch (a.kind) {
        case Action::Kind::kScheduleActivity: actions += " schedule " + a.activity_type; break;
        case Action::Kind::kStartTimer: actions += " timer " + a.tag; break;
        case Action::Kind::kCancelTimer: actions += " cancel " + a.tag; break;
        case Action::Kind::kRecord: actions += " record " + a.name; break;
        case Action::Kind::kComplete: actions += " complete"; break;
        case Action::Kind::kFail: actions += " fail " + a.error_type; break;
        case Action::Kind::kContinueAsNew: actions += " continue"; break;
      }
    }
    const std::string id =
        delivery_workflow_id(in.conversation_id(), in.seq(), in.recipient_user_id());
    log::debug({log::conversation(in.conversation_id()), log::seq(in.seq()), log::workflow(id),
                log::user(in.recipient_user_id()), log::device(device_id)},
               "delivery {}#{} to {}: {} in {} -> {}{}", in.conversation_id(), in.seq(),
               in.recipient_user_id(), what, before, decision.state,
               actions.empty() ? std::string() : ";" + actions);
  }

  static Decision start(const Event& event) {
    DeliveryInput in;
    if (!in.ParseFromString(event.payload)) {
      return fail(kDeliveryInitiated, "", kDeliveryCorruptInput,
                  "the start input is not a DeliveryInput");
    }
    if (std::string problem = check_delivery_input(in); !problem.empty()) {
      return fail(kDeliveryInitiated, "", kDeliveryInvalidInput, std::move(problem));
    }
    DeliveryData d;
    d.set_version(kDeliveryVersion);
    for (const auto& id : in.device_ids()) {
      (void)find_or_add_device(d, id);  // within the bound: checked above
    }
    std::vector<Action> actions;
    if (in.push_enabled() && d.devices_size() > 0) {
      actions.push_back(Action::start_timer(kPushTimer, in.push_after_ms()));
      d.set_push_timer_pending(true);
    }
    if (in.escalate_after_ms() > 0) {
      actions.push_back(Action::start_timer(kEscalateTimer, in.escalate_after_ms()));
      d.set_escalate_timer_pending(true);
    }
    if (in.close_after_ms() > 0) {
      actions.push_back(Action::start_timer(kCloseTimer, in.close_after_ms()));
    }
    *d.mutable_input() = std::move(in);
    return changed(kDeliveryStored, d, std::move(actions));
  }

  static Decision on_signal(std::string_view state, std::string_view data, DeliveryData d,
                            const Event& event) {
    if (event.name != kDeliveredSignal && event.name != kReadSignal) {
      return unchanged(state, data, {Action::record(kSignalIgnoredRecord, event.name)});
    }
    const ParsedSignal signal = parse_signal(event);
    if (!signal.problem.empty()) {
      return unchanged(state, data,
                       {Action::record(kSignalIgnoredRecord, event.name + ": " + signal.problem)});
    }
    if (!is_open(state)) {
      return unchanged(state, data);
    }
    DeviceDelivery* device = find_or_add_device(d, signal.device_id);
    return event.name == kReadSignal ? on_read(d, device, signal)
                                     : on_delivered(state, data, d, device, signal);
  }

  static Decision on_delivered(std::string_view state, std::string_view data, DeliveryData& d,
                               DeviceDelivery* device, const ParsedSignal& signal) {
    if (device == nullptr) {
      return unchanged(state, data, {Action::record(kDeviceIgnoredRecord, signal.device_id)});
    }
    if (device->state() == messagingpb::DEVICE_DELIVERED ||
        device->state() == messagingpb::DEVICE_READ) {
      return unchanged(state, data);  // a duplicate
    }
    device->set_state(messagingpb::DEVICE_DELIVERED);
    device->set_delivered_ms(signal.time_ms);
    if (is_unconfirmed(state)) {
      d.set_push_timer_pending(false);
      d.set_escalate_timer_pending(false);
      return settle(kDeliveryConfirmed, d, cancel_timers());
    }
    return changed(state, d);
  }

  // Read implies delivered. The read closes the run even when the device cannot be tracked.
  static Decision on_read(DeliveryData& d, DeviceDelivery* device, const ParsedSignal& signal) {
    std::vector<Action> actions = cancel_timers();
    if (device == nullptr) {
      actions.push_back(Action::record(kDeviceIgnoredRecord, signal.device_id));
    } else {
      if (device->delivered_ms() == 0) {
        device->set_delivered_ms(signal.time_ms);
      }
      device->set_state(messagingpb::DEVICE_READ);
      device->set_read_ms(signal.time_ms);
    }
    actions.push_back(Action::complete(signal.device_id));
    return changed(kDeliveryReadAcknowledged, d, std::move(actions));
  }

  static Decision on_timer(std::string_view state, std::string_view data, DeliveryData d,
                           const Event& event) {
    if (event.tag == kPushTimer && state == kDeliveryStored) {
      d.set_push_timer_pending(false);
      return per_device(d) ? dispatch_device_pushes(state, std::move(d))
                           : dispatch_push(state, std::move(d));
    }
    if (event.tag == kPushTimer && state == kDeliveryPushDispatched && per_device(d)) {
      d.set_push_timer_pending(false);  // the next share of a large dispatch
      return dispatch_device_pushes(state, std::move(d));
    }
    if (event.tag == kEscalateTimer && is_unconfirmed(state)) {
      d.set_escalate_timer_pending(false);
      return escalate(state, std::move(d));
    }
    if (event.tag == kCloseTimer && is_open(state)) {
      d.set_close_due(true);
      return settle(state, d, {});
    }
    return unchanged(state, data);  // a timer made stale by a confirmation
  }

  // A push or escalation timer still to fire, or a push or email attempt in flight.
  static bool work_pending(const DeliveryData& d) {
    return d.push_timer_pending() || d.escalate_timer_pending() || d.push_open() ||
           d.pushes_open() > 0 || d.email_open();
  }

  // Version 2 rules: one push activity per device.
  static bool per_device(const DeliveryData& d) { return d.version() >= kPerDeviceVersion; }
  // Version 3 rules: "push_dispatched" once a service accepted a push; refused waits are free.
  static bool dispatch_on_accept(const DeliveryData& d) {
    return d.version() >= kDispatchOnAcceptVersion;
  }
  // The options of a push or email activity scheduled by a run of `d`'s version (2 or later).
  static workflowpb::ActivityOptions push_options(const DeliveryData& d) {
    return dispatch_on_accept(d) ? push_activity_options() : push_activity_options_v2();
  }
  static workflowpb::ActivityOptions email_options(const DeliveryData& d) {
    if (!per_device(d)) return email_activity_options_v1();
    return dispatch_on_accept(d) ? email_activity_options() : email_activity_options_v2();
  }

  // The decision for `d` in `state` with `actions`; once the lifetime is over (close_due) and no
  // work is pending, the run completes where it stands: history "expired", an empty result.
  static Decision settle(std::string_view state, const DeliveryData& d,
                         std::vector<Action> actions) {
    if (d.close_due() && is_open(state) && !work_pending(d)) {
      actions.push_back(Action::record(
          kExpiredRecord, state == kDeliveryConfirmed ? kExpiredUnread : kExpiredUndelivered));
      actions.push_back(Action::complete(""));
    }
    return changed(state, d, std::move(actions));
  }

  static Decision dispatch_push(std::string_view state, DeliveryData d) {
    std::vector<std::string> pending;
    for (auto& device : *d.mutable_devices()) {
      if (device.state() == messagingpb::DEVICE_PENDING) {
        pending.push_back(device.device_id());
        device.set_state(messagingpb::DEVICE_PUSHED);
      }
    }
    if (pending.empty()) {
      return settle(state, d, {});
    }
    const std::string task = push_task(d.input(), std::move(pending)).SerializeAsString();
    d.set_push_open(true);
    return changed(
        kDeliveryPushDispatched, d,
        {Action::schedule_activity(kPushActivity, kPushTag, task, push_activity_options_v1())});
  }

  // Version 2: one activity per pending device not pushed yet in this run, each under its own
  // idempotency key, retried on its own, so a device whose push was accepted is never pushed
  // again. At most kMaxPushActivitiesPerDecision at once; a zero-delay "push" timer brings the
  // rest.
  static Decision dispatch_device_pushes(std::string_view state, DeliveryData d) {
    std::vector<Action> actions;
    const DeliveryInput& in = d.input();
    for (int i = 0; i < d.devices_size(); ++i) {
      DeviceDelivery& device = *d.mutable_devices(i);
      if (device.state() != messagingpb::DEVICE_PENDING || device.push_scheduled()) {
        continue;
      }
      if (actions.size() == kMaxPushActivitiesPerDecision) {
        actions.push_back(Action::start_timer(kPushTimer, 0));
        d.set_push_timer_pending(true);
        break;
      }
      device.set_push_scheduled(true);
      device.set_state(messagingpb::DEVICE_PUSHED);
      d.set_pushes_open(d.pushes_open() + 1);
      messagingpb::PushTask task = push_task(in, {device.device_id()});
      task.set_per_device(true);
      actions.push_back(Action::schedule_activity(kPushActivity,
                                                  fmt::format("{}{}", kPushDeviceTagPrefix, i),
                                                  task.SerializeAsString(), push_options(d)));
    }
    if (d.pushes_open() == 0 || dispatch_on_accept(d)) {
      return settle(state, d, std::move(actions));  // version 3: nothing reached a device yet
    }
    return changed(kDeliveryPushDispatched, d, std::move(actions));
  }

  static Decision escalate(std::string_view state, DeliveryData d) {
    d.set_escalated(true);
    std::vector<Action> actions{Action::record(kEscalatedRecord)};
    if (d.input().email_fallback()) {
      d.set_email_open(true);
      actions.push_back(Action::schedule_activity(
          kEmailActivity, kEmailTag, email_task(d.input()).SerializeAsString(), email_options(d)));
    }
    return settle(state, d, std::move(actions));
  }

  // Version 2: one device's push activity finished.
  static void on_device_push(DeliveryData& d, DeviceDelivery& device, bool ok,
                             const std::string& error, std::int64_t time_ms,
                             std::vector<Action>& actions) {
    if (ok) {
      device.set_push_accepted(true);
      device.set_pushed_ms(time_ms);
      actions.push_back(Action::record(kPushSentRecord, device.device_id()));
      return;
    }
    device.set_push_error(error);
    d.set_push_error(error);
    if (device.state() == messagingpb::DEVICE_PUSHED) {
      device.set_state(messagingpb::DEVICE_PENDING);  // no notification reached it
    }
    actions.push_back(Action::record(kPushFailedRecord, device.device_id() + ": " + error));
  }

  static Decision on_activity(std::string_view state, std::string_view data, DeliveryData d,
                              const Event& event) {
    const bool ok = event.kind == Event::Kind::kActivityCompleted;
    const std::string error = event.error_type + ": " + event.error_message;
    std::vector<Action> actions;
    if (const auto index = push_device_index(event.tag); index && per_device(d)) {
      if (*index >= static_cast<std::size_t>(d.devices_size()) || d.pushes_open() == 0) {
        return unchanged(state, data);  // never scheduled by this run
      }
      d.set_pushes_open(d.pushes_open() - 1);
      on_device_push(d, *d.mutable_devices(static_cast<int>(*index)), ok, error, event.time_ms,
                     actions);
      if (ok && state == kDeliveryStored && dispatch_on_accept(d)) {
        return settle(kDeliveryPushDispatched, d, std::move(actions));  // a service took it
      }
    } else if (event.tag == kPushTag) {
      d.set_push_open(false);
      if (ok) {
        actions.push_back(Action::record(kPushSentRecord));
      } else {
        d.set_push_error(error);
        for (auto& device : *d.mutable_devices()) {
          if (device.state() == messagingpb::DEVICE_PUSHED) {
            device.set_state(messagingpb::DEVICE_PENDING);  // no notification reached it
          }
        }
        actions.push_back(Action::record(kPushFailedRecord, error));
      }
    } else if (event.tag == kEmailTag) {
      d.set_email_open(false);
      d.set_emailed(d.emailed() || ok);
      actions.push_back(ok ? Action::record(kEmailSentRecord)
                           : Action::record(kEmailFailedRecord, error));
    } else {
      return unchanged(state, data);
    }
    return settle(state, d, std::move(actions));
  }
};

}  // namespace

workflowpb::RetryPolicy push_retry_policy() {
  return provider_retry_policy({kPushUnregistered, kPushInvalidToken, kPushPayloadTooLarge,
                                kPushRejected, kPushNoProvider, kPushNoTarget});
}

workflowpb::RetryPolicy email_retry_policy() {
  return provider_retry_policy({kEmailRejected, kEmailNoProvider});
}

workflowpb::ActivityOptions push_activity_options() {
  return provider_options(push_retry_policy());
}

workflowpb::ActivityOptions email_activity_options() {
  return provider_options(email_retry_policy());
}

workflowpb::ActivityOptions push_activity_options_v2() {
  return provider_options_v2(push_retry_policy());
}

workflowpb::ActivityOptions email_activity_options_v2() {
  return provider_options_v2(email_retry_policy());
}

workflowpb::ActivityOptions push_activity_options_v1() {
  return provider_options_v1({kPushUnregistered, kPushInvalidToken, kPushPayloadTooLarge});
}

workflowpb::ActivityOptions email_activity_options_v1() {
  return provider_options_v1({kEmailRejected});
}

std::string compose_workflow_id(std::string_view prefix,
                                std::initializer_list<std::string_view> parts) {
  HERALD_ASSERT(!prefix.empty() && prefix.find('/') == std::string_view::npos,
                "a workflow id prefix is one non-empty segment");
  std::string id(prefix);
  for (const std::string_view part : parts) {
    id.push_back('/');
    append_escaped(id, part);
  }
  return id;
}

std::string delivery_workflow_id(std::string_view conversation_id, std::uint64_t seq,
                                 std::string_view recipient_user_id) {
  return compose_workflow_id(kDeliveryIdPrefix,
                             {conversation_id, std::to_string(seq), recipient_user_id});
}

std::string check_delivery_input(const DeliveryInput& input) {
  // A system message (admin API) has no sender; every other delivery names one.
  if (input.recipient_user_id().empty() || input.conversation_id().empty()) {
    return "a delivery needs a recipient user and a conversation";
  }
  if (static_cast<std::size_t>(input.device_ids_size()) > kMaxDeliveryDevices) {
    return fmt::format("{} devices; the bound is {}", input.device_ids_size(), kMaxDeliveryDevices);
  }
  if (!std::all_of(input.device_ids().begin(), input.device_ids().end(),
                   [](const std::string& id) { return valid_device_id(id); })) {
    return fmt::format("every device id must have 1 to {} bytes", kMaxDeviceIdBytes);
  }
  if (!valid_delay(input.push_after_ms()) || !valid_delay(input.escalate_after_ms())) {
    return fmt::format("push_after_ms and escalate_after_ms must be within [0, {}] ms",
                       kMaxDeliveryDelayMs);
  }
  if (input.close_after_ms() < 0 || input.close_after_ms() > kMaxDeliveryLifetimeMs) {
    return fmt::format("close_after_ms must be within [0, {}] ms", kMaxDeliveryLifetimeMs);
  }
  return {};
}

std::optional<DeliveryData> decode_delivery_data(std::string_view data) {
  DeliveryData d;
  if (!d.ParseFromArray(data.data(), static_cast<int>(data.size())) || !d.has_input()) {
    return std::nullopt;
  }
  return d;
}

std::shared_ptr<const workflow::WorkflowType> make_delivery_type() {
  return std::make_shared<DeliveryType>();
}

}  // namespace herald::messaging
