#include "messaging/delivery.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "messaging/providers.h"
#include "rsm/apply_batch.h"
#include "storage/mem_engine.h"
#include "workflow/engine.h"
#include "workflow/runtime.h"

namespace herald::messaging {
namespace {

using messagingpb::DeliveryData;
using messagingpb::DeliveryInput;
using workflow::Action;
using workflow::Decision;
using workflow::Event;

constexpr std::int64_t kT0 = 1'700'000'000'000;  // a stamped wall time, ms
constexpr std::int64_t kPushAfterMs = 5'000;
constexpr std::int64_t kEscalateAfterMs = 600'000;

DeliveryInput make_input() {
  DeliveryInput in;
  in.set_conversation_id("c1");
  in.set_seq(7);
  in.set_sender_user_id("alice");
  in.set_sender_device_id("alice-phone");
  in.set_recipient_user_id("bob");
  in.add_device_ids("bob-phone");
  in.add_device_ids("bob-laptop");
  in.set_preview("lunch?");
  in.set_push_after_ms(kPushAfterMs);
  in.set_escalate_after_ms(kEscalateAfterMs);
  in.set_push_enabled(true);
  in.set_email_fallback(true);
  return in;
}

Event started(const DeliveryInput& in) {
  Event e;
  e.kind = Event::Kind::kStarted;
  e.payload = in.SerializeAsString();
  e.time_ms = kT0;
  return e;
}

std::string device_signal(const std::string& device_id, std::int64_t time_ms) {
  messagingpb::DeviceSignal s;
  s.set_device_id(device_id);
  s.set_time_ms(time_ms);
  return s.SerializeAsString();
}

Event signal(std::string name, const std::string& device_id, std::int64_t time_ms = kT0 + 100) {
  Event e;
  e.kind = Event::Kind::kSignal;
  e.name = std::move(name);
  e.payload = device_signal(device_id, time_ms);
  e.time_ms = kT0 + 200;
  return e;
}

Event timer(std::string tag) {
  Event e;
  e.kind = Event::Kind::kTimerFired;
  e.tag = std::move(tag);
  e.time_ms = kT0 + kPushAfterMs;
  return e;
}

Event completed(std::string tag) {
  Event e;
  e.kind = Event::Kind::kActivityCompleted;
  e.tag = std::move(tag);
  return e;
}

Event failed(std::string tag, std::string error_type) {
  Event e;
  e.kind = Event::Kind::kActivityFailed;
  e.tag = std::move(tag);
  e.error_type = std::move(error_type);
  e.error_message = "gone";
  return e;
}

// Plays the engine's part: keeps (state, data) between events, as the workflow record does.
// Version 1 runs are those stored before versions existed: their data has no version.
constexpr std::uint32_t kVersion1 = 0;

class Delivery {
 public:
  // `version`: the rules the run is made to follow (kDeliveryVersion, or kVersion1 to replay a
  // run stored by an earlier Herald).
  explicit Delivery(std::uint32_t version = kDeliveryVersion)
      : type_(make_delivery_type()), state_(type_->initial_state()), version_(version) {}

  Decision on(const Event& event) {
    Decision d = type_->on_event(state_, data_, event);
    state_ = d.state;
    data_ = d.data;
    return d;
  }
  Decision start(const DeliveryInput& in = make_input()) {
    Decision d = on(started(in));
    if (version_ != kDeliveryVersion) {
      DeliveryData data = decoded();
      data.set_version(version_);
      data_ = data.SerializeAsString();
    }
    return d;
  }

  const std::string& state() const { return state_; }
  const std::string& data() const { return data_; }
  DeliveryData decoded() const {
    auto d = decode_delivery_data(data_);
    EXPECT_TRUE(d.has_value());
    return d.value_or(DeliveryData());
  }
  messagingpb::DeviceDeliveryState device(const std::string& id) const {
    const DeliveryData data = decoded();
    for (const auto& device : data.devices()) {
      if (device.device_id() == id) {
        return device.state();
      }
    }
    return messagingpb::DEVICE_DELIVERY_STATE_UNSPECIFIED;
  }

 private:
  std::shared_ptr<const workflow::WorkflowType> type_;
  std::string state_;
  std::string data_;
  std::uint32_t version_;
};

// The tag of the version 2 push activity of the device at `index`.
std::string push_tag(int index) {
  return std::string(kPushDeviceTagPrefix) + std::to_string(index);
}

// Completes the push activities of both devices of make_input().
Decision complete_pushes(Delivery& w) {
  (void)w.on(completed(push_tag(0)));
  return w.on(completed(push_tag(1)));
}

std::vector<Action> of_kind(const Decision& d, Action::Kind kind) {
  std::vector<Action> out;
  for (const auto& a : d.actions) {
    if (a.kind == kind) {
      out.push_back(a);
    }
  }
  return out;
}

std::vector<std::string> timers_started(const Decision& d) {
  std::vector<std::string> tags;
  for (const auto& a : of_kind(d, Action::Kind::kStartTimer)) {
    tags.push_back(a.tag);
  }
  return tags;
}

std::vector<std::string> timers_canceled(const Decision& d) {
  std::vector<std::string> tags;
  for (const auto& a : of_kind(d, Action::Kind::kCancelTimer)) {
    tags.push_back(a.tag);
  }
  return tags;
}

std::vector<std::string> records(const Decision& d) {
  std::vector<std::string> names;
  for (const auto& a : of_kind(d, Action::Kind::kRecord)) {
    names.push_back(a.name);
  }
  return names;
}

messagingpb::PushTask push_task_of(const Action& a) {
  messagingpb::PushTask task;
  EXPECT_TRUE(task.ParseFromString(a.payload));
  return task;
}

std::vector<std::string> ids(const google::protobuf::RepeatedPtrField<std::string>& field) {
  return {field.begin(), field.end()};
}

void expect_unchanged(const Decision& d, const std::string& state, const std::string& data) {
  EXPECT_EQ(d.state, state);
  EXPECT_EQ(d.data, data);
  EXPECT_TRUE(d.actions.empty());
}

// ---------------------------------------------------------------- start

TEST(DeliveryType, NamesItsTypeAndInitialState) {
  const auto type = make_delivery_type();
  EXPECT_EQ(type->name(), "messaging.delivery");
  EXPECT_EQ(type->initial_state(), "initiated");
}

TEST(DeliveryType, StartStoresWithEveryDevicePendingAndBothTimers) {
  Delivery w;
  const Decision d = w.start();
  EXPECT_EQ(d.state, kDeliveryStored);
  EXPECT_EQ(w.device("bob-phone"), messagingpb::DEVICE_PENDING);
  EXPECT_EQ(w.device("bob-laptop"), messagingpb::DEVICE_PENDING);
  EXPECT_EQ(w.decoded().input().seq(), 7U);
  ASSERT_EQ(d.actions.size(), 2U);
  EXPECT_EQ(d.actions[0].tag, kPushTimer);
  EXPECT_EQ(d.actions[0].delay_ms, kPushAfterMs);
  EXPECT_EQ(d.actions[1].tag, kEscalateTimer);
  EXPECT_EQ(d.actions[1].delay_ms, kEscalateAfterMs);
}

TEST(DeliveryType, NoPushTimerWhenPushIsDisabled) {
  DeliveryInput in = make_input();
  in.set_push_enabled(false);
  Delivery w;
  EXPECT_EQ(timers_started(w.start(in)), std::vector<std::string>{kEscalateTimer});
}

TEST(DeliveryType, NoPushTimerWithoutDevices) {
  DeliveryInput in = make_input();
  in.clear_device_ids();
  Delivery w;
  EXPECT_EQ(timers_started(w.start(in)), std::vector<std::string>{kEscalateTimer});
  EXPECT_EQ(w.state(), kDeliveryStored);
}

TEST(DeliveryType, NoEscalateTimerWhenItsDelayIsZero) {
  DeliveryInput in = make_input();
  in.set_escalate_after_ms(0);
  Delivery w;
  EXPECT_EQ(timers_started(w.start(in)), std::vector<std::string>{kPushTimer});
}

TEST(DeliveryType, DuplicateDeviceIdsAreTrackedOnce) {
  DeliveryInput in = make_input();
  in.add_device_ids("bob-phone");
  Delivery w;
  (void)w.start(in);
  EXPECT_EQ(w.decoded().devices_size(), 2);
}

TEST(DeliveryType, UndecodableInputFailsTheRun) {
  const auto type = make_delivery_type();
  Event e = started(make_input());
  e.payload = "\xff\xff\xff";
  const Decision d = type->on_event(kDeliveryInitiated, "", e);
  ASSERT_EQ(d.actions.size(), 1U);
  EXPECT_EQ(d.actions[0].kind, Action::Kind::kFail);
  EXPECT_EQ(d.actions[0].error_type, kDeliveryCorruptInput);
}

TEST(DeliveryType, InputBreakingABoundFailsTheRun) {
  std::vector<DeliveryInput> bad(6, make_input());
  bad[0].clear_recipient_user_id();
  bad[1].set_push_after_ms(-1);
  bad[2].set_escalate_after_ms(kMaxDeliveryDelayMs + 1);
  for (std::size_t i = 0; i <= kMaxDeliveryDevices; ++i) {
    bad[3].add_device_ids("d" + std::to_string(i));
  }
  bad[4].set_close_after_ms(-1);
  bad[5].set_close_after_ms(kMaxDeliveryLifetimeMs + 1);
  const auto type = make_delivery_type();
  for (const auto& in : bad) {
    const Decision d = type->on_event(kDeliveryInitiated, "", started(in));
    ASSERT_EQ(d.actions.size(), 1U);
    EXPECT_EQ(d.actions[0].kind, Action::Kind::kFail);
    EXPECT_EQ(d.actions[0].error_type, kDeliveryInvalidInput) << d.actions[0].error_message;
  }
}

TEST(DeliveryType, UndecodableDataFailsTheRun) {
  const auto type = make_delivery_type();
  const Decision d = type->on_event(kDeliveryStored, "garbage", timer(kPushTimer));
  ASSERT_EQ(d.actions.size(), 1U);
  EXPECT_EQ(d.actions[0].kind, Action::Kind::kFail);
  EXPECT_EQ(d.actions[0].error_type, kDeliveryCorruptData);
}

// ---------------------------------------------------------------- push

TEST(DeliveryType, Version1RunPushesEveryPendingDeviceInOneActivityWithItsFrozenPolicy) {
  Delivery w(kVersion1);
  (void)w.start();
  const Decision d = w.on(timer(kPushTimer));
  EXPECT_EQ(d.state, kDeliveryPushDispatched);
  ASSERT_EQ(d.actions.size(), 1U);
  const Action& push = d.actions[0];
  EXPECT_EQ(push.kind, Action::Kind::kScheduleActivity);
  EXPECT_EQ(push.activity_type, "messaging.push");
  EXPECT_EQ(push.tag, kPushTag);
  const messagingpb::PushTask task = push_task_of(push);
  EXPECT_EQ(task.user_id(), "bob");
  EXPECT_EQ(ids(task.device_ids()), (std::vector<std::string>{"bob-phone", "bob-laptop"}));
  EXPECT_EQ(task.conversation_id(), "c1");
  EXPECT_EQ(task.seq(), 7U);
  EXPECT_EQ(task.sender_user_id(), "alice");
  EXPECT_EQ(task.preview(), "lunch?");
  const auto& retry = push.options.retry();
  EXPECT_EQ(retry.initial_interval_ms(), 1'000U);
  EXPECT_EQ(retry.backoff_coefficient(), 2.0);
  EXPECT_EQ(retry.maximum_interval_ms(), 60'000U);
  EXPECT_EQ(retry.maximum_attempts(), 8U);
  EXPECT_EQ(ids(retry.non_retryable_error_types()),
            (std::vector<std::string>{"push.unregistered", "push.invalid_token",
                                      "push.payload_too_large", workflow::kUnknownActivityType}));
  EXPECT_EQ(push.options.start_to_close_timeout_ms(), 30'000U);
  EXPECT_EQ(w.device("bob-phone"), messagingpb::DEVICE_PUSHED);
  EXPECT_EQ(w.device("bob-laptop"), messagingpb::DEVICE_PUSHED);
}

TEST(DeliveryType, Version1PushSkipsDevicesThatAreNotPending) {
  // A device is never anything but pending while "stored" (a confirmation leaves that state);
  // the rule is pinned on hand-made data all the same.
  Delivery w(kVersion1);
  (void)w.start();
  DeliveryData data = w.decoded();
  data.mutable_devices(0)->set_state(messagingpb::DEVICE_DELIVERED);
  const auto type = make_delivery_type();
  const Decision d = type->on_event(kDeliveryStored, data.SerializeAsString(), timer(kPushTimer));
  ASSERT_EQ(d.actions.size(), 1U);
  EXPECT_EQ(ids(push_task_of(d.actions[0]).device_ids()), std::vector<std::string>{"bob-laptop"});
}

TEST(DeliveryType, Version1PushCompletedRecordsPushSent) {
  Delivery w(kVersion1);
  (void)w.start();
  (void)w.on(timer(kPushTimer));
  EXPECT_TRUE(w.decoded().push_open());
  const Decision d = w.on(completed(kPushTag));
  EXPECT_EQ(d.state, kDeliveryPushDispatched);
  EXPECT_FALSE(w.decoded().push_open());
  EXPECT_EQ(w.device("bob-phone"), messagingpb::DEVICE_PUSHED);
  EXPECT_EQ(records(d), std::vector<std::string>{"push_sent"});
}

TEST(DeliveryType, Version1PushFailedRecordsTheErrorAndStaysDispatched) {
  Delivery w(kVersion1);
  (void)w.start();
  (void)w.on(timer(kPushTimer));
  Decision d = w.on(failed(kPushTag, kPushUnregistered));
  EXPECT_EQ(d.state, kDeliveryPushDispatched);
  EXPECT_EQ(records(d), std::vector<std::string>{"push_failed"});
  EXPECT_EQ(d.actions[0].payload, "push.unregistered: gone");
  EXPECT_EQ(w.decoded().push_error(), "push.unregistered: gone");
  EXPECT_EQ(w.device("bob-phone"), messagingpb::DEVICE_PENDING);
  // Delivery can still be confirmed.
  d = w.on(signal(kDeliveredSignal, "bob-phone"));
  EXPECT_EQ(d.state, kDeliveryConfirmed);
}

TEST(DeliveryType, PushTimerGivesEachPendingDeviceItsOwnActivityWithTheProviderPolicy) {
  Delivery w;
  (void)w.start();
  EXPECT_EQ(w.decoded().version(), kDeliveryVersion);
  const Decision d = w.on(timer(kPushTimer));
  EXPECT_EQ(d.state, kDeliveryStored) << "nothing reached a device yet";
  const auto pushes = of_kind(d, Action::Kind::kScheduleActivity);
  ASSERT_EQ(pushes.size(), 2U);
  const std::vector<std::string> devices{"bob-phone", "bob-laptop"};
  for (int i = 0; i < 2; ++i) {
    const Action& push = pushes[static_cast<std::size_t>(i)];
    EXPECT_EQ(push.activity_type, "messaging.push");
    EXPECT_EQ(push.tag, push_tag(i));
    const messagingpb::PushTask task = push_task_of(push);
    EXPECT_TRUE(task.per_device());
    EXPECT_EQ(ids(task.device_ids()),
              std::vector<std::string>{devices[static_cast<std::size_t>(i)]});
    EXPECT_EQ(task.user_id(), "bob");
    EXPECT_EQ(task.seq(), 7U);
    EXPECT_EQ(task.preview(), "lunch?");
    const auto& retry = push.options.retry();
    EXPECT_EQ(retry.initial_interval_ms(), 1'000U);
    EXPECT_EQ(retry.maximum_interval_ms(), 60'000U);
    EXPECT_EQ(retry.maximum_attempts(), 0U);
    EXPECT_EQ(retry.maximum_retry_after_ms(), kProviderMaxRetryAfterMs);
    EXPECT_EQ(
        ids(retry.non_retryable_error_types()),
        (std::vector<std::string>{"push.unregistered", "push.invalid_token",
                                  "push.payload_too_large", "push.rejected", "push.no_provider",
                                  "push.no_target", workflow::kUnknownActivityType}));
    EXPECT_EQ(push.options.start_to_close_timeout_ms(), 30'000U);
    EXPECT_EQ(push.options.schedule_to_close_timeout_ms(), kProviderRetryWindowMs);
    EXPECT_EQ(push.options.maximum_refused_wait_ms(), kProviderMaxRefusedWaitMs);
  }
  EXPECT_EQ(w.decoded().pushes_open(), 2U);
  EXPECT_EQ(w.device("bob-phone"), messagingpb::DEVICE_PUSHED);
  EXPECT_EQ(w.device("bob-laptop"), messagingpb::DEVICE_PUSHED);
}

TEST(DeliveryType, TheFirstAcceptedPushMovesTheRunToPushDispatched) {
  Delivery w;
  (void)w.start();
  EXPECT_EQ(w.on(timer(kPushTimer)).state, kDeliveryStored);
  Decision d = w.on(failed(push_tag(1), kPushUnavailable));
  EXPECT_EQ(d.state, kDeliveryStored) << "a failure reached no device";
  d = w.on(completed(push_tag(0)));
  EXPECT_EQ(d.state, kDeliveryPushDispatched);
  EXPECT_EQ(records(d), std::vector<std::string>{"push_sent"});
}

TEST(DeliveryType, WithNoProviderConfiguredTheRunRecordsItAndIsNeverDispatched) {
  Delivery w;
  (void)w.start();
  (void)w.on(timer(kPushTimer));
  // What the handler reports when the router has no provider for the platform, or when a
  // recording provider journaled the push in place of one.
  Event none = failed(push_tag(0), kPushNoProvider);
  none.error_message = "no provider configured for \"apns\"; recorded in the push journal";
  Decision d = w.on(none);
  EXPECT_EQ(records(d), std::vector<std::string>{"push_failed"});
  EXPECT_EQ(of_kind(d, Action::Kind::kRecord).at(0).payload,
            "bob-phone: push.no_provider: no provider configured for \"apns\"; recorded in the "
            "push journal");
  d = w.on(failed(push_tag(1), kPushNoProvider));
  EXPECT_EQ(d.state, kDeliveryStored);
  const DeliveryData data = w.decoded();
  for (const auto& device : data.devices()) {
    EXPECT_FALSE(device.push_accepted()) << device.device_id();
    EXPECT_EQ(device.state(), messagingpb::DEVICE_PENDING) << device.device_id();
  }
  EXPECT_TRUE(of_kind(d, Action::Kind::kScheduleActivity).empty());  // not retried
  // It can still be delivered over a socket, or escalate.
  EXPECT_EQ(w.on(signal(kDeliveredSignal, "bob-laptop")).state, kDeliveryConfirmed);
}

TEST(DeliveryType, Version2RunKeepsEnteringPushDispatchedWhenItSchedules) {
  Delivery v2(2);
  (void)v2.start();
  const Decision d = v2.on(timer(kPushTimer));
  EXPECT_EQ(d.state, kDeliveryPushDispatched);
  const auto pushes = of_kind(d, Action::Kind::kScheduleActivity);
  ASSERT_EQ(pushes.size(), 2U);
  EXPECT_EQ(pushes[0].options.schedule_to_close_timeout_ms(), kProviderRetryWindowMs);
  EXPECT_EQ(pushes[0].options.maximum_refused_wait_ms(), 0U) << "version 2's frozen policy";
  const auto emails = of_kind(v2.on(timer(kEscalateTimer)), Action::Kind::kScheduleActivity);
  ASSERT_EQ(emails.size(), 1U);
  EXPECT_EQ(emails[0].options.maximum_refused_wait_ms(), 0U);
}

TEST(DeliveryType, ADevicesFailedPushLeavesTheOtherDevicesAcceptedPushAlone) {
  Delivery w;
  (void)w.start();
  (void)w.on(timer(kPushTimer));
  Event ok = completed(push_tag(0));
  ok.time_ms = kT0 + 6'000;
  Decision d = w.on(ok);
  EXPECT_EQ(records(d), std::vector<std::string>{"push_sent"});
  EXPECT_EQ(of_kind(d, Action::Kind::kRecord).at(0).payload, "bob-phone");
  d = w.on(failed(push_tag(1), kPushInvalidToken));
  EXPECT_EQ(records(d), std::vector<std::string>{"push_failed"});
  EXPECT_EQ(of_kind(d, Action::Kind::kRecord).at(0).payload,
            "bob-laptop: push.invalid_token: gone");
  EXPECT_TRUE(of_kind(d, Action::Kind::kScheduleActivity).empty());  // nothing is pushed again
  const DeliveryData data = w.decoded();
  EXPECT_TRUE(data.devices(0).push_accepted());
  EXPECT_EQ(data.devices(0).pushed_ms(), kT0 + 6'000);
  EXPECT_EQ(data.devices(0).state(), messagingpb::DEVICE_PUSHED);
  EXPECT_FALSE(data.devices(1).push_accepted());
  EXPECT_EQ(data.devices(1).state(), messagingpb::DEVICE_PENDING);
  EXPECT_EQ(data.devices(1).push_error(), "push.invalid_token: gone");
  EXPECT_EQ(data.pushes_open(), 0U);
  EXPECT_EQ(w.state(), kDeliveryPushDispatched);
}

TEST(DeliveryType, AStalePushTimerNeverPushesADeviceTwice) {
  Delivery w;
  (void)w.start();
  (void)w.on(timer(kPushTimer));
  (void)w.on(completed(push_tag(0)));
  (void)w.on(failed(push_tag(1), kPushUnavailable));
  // A "push" timer fire that was in flight (or replayed) finds every device scheduled once.
  const Decision d = w.on(timer(kPushTimer));
  EXPECT_TRUE(of_kind(d, Action::Kind::kScheduleActivity).empty());
}

TEST(DeliveryType, AReportForAPushTagTheRunNeverScheduledChangesNothing) {
  Delivery w;
  (void)w.start();
  (void)w.on(timer(kPushTimer));
  const std::string state = w.state();
  const std::string data = w.data();
  expect_unchanged(w.on(completed(push_tag(9))), state, data);
  expect_unchanged(w.on(completed("push/x")), state, data);
}

TEST(DeliveryType, ManyDevicesArePushedInSharesWithinTheDecisionBound) {
  DeliveryInput in = make_input();
  in.clear_device_ids();
  const std::size_t devices = kMaxPushActivitiesPerDecision + 5;
  for (std::size_t i = 0; i < devices; ++i) {
    in.add_device_ids("d" + std::to_string(i));
  }
  Delivery w;
  (void)w.start(in);
  Decision d = w.on(timer(kPushTimer));
  EXPECT_EQ(of_kind(d, Action::Kind::kScheduleActivity).size(), kMaxPushActivitiesPerDecision);
  EXPECT_EQ(timers_started(d), std::vector<std::string>{kPushTimer});
  EXPECT_LE(d.actions.size(), workflow::kMaxActionsPerDecision);
  d = w.on(timer(kPushTimer));
  EXPECT_EQ(d.state, kDeliveryStored);
  EXPECT_EQ(of_kind(d, Action::Kind::kScheduleActivity).size(), 5U);
  EXPECT_TRUE(timers_started(d).empty());
  EXPECT_EQ(w.decoded().pushes_open(), devices);
}

TEST(DeliveryType, Version1RunKeepsItsRulesAfterVersion2Exists) {
  Delivery v1(kVersion1);
  (void)v1.start();
  Decision d = v1.on(timer(kPushTimer));
  ASSERT_EQ(of_kind(d, Action::Kind::kScheduleActivity).size(), 1U);
  EXPECT_EQ(of_kind(d, Action::Kind::kScheduleActivity)[0].tag, kPushTag);
  d = v1.on(timer(kEscalateTimer));
  const auto emails = of_kind(d, Action::Kind::kScheduleActivity);
  ASSERT_EQ(emails.size(), 1U);
  EXPECT_EQ(emails[0].options.retry().maximum_attempts(), kProviderRetryMaximumAttempts);
  EXPECT_EQ(emails[0].options.retry().maximum_retry_after_ms(), 0U);
  EXPECT_EQ(emails[0].options.schedule_to_close_timeout_ms(), 0U);
  EXPECT_EQ(v1.decoded().version(), 0U);
}

// ---------------------------------------------------------------- delivered

TEST(DeliveryType, DeliveredConfirmsAndCancelsTheTimers) {
  Delivery w;
  (void)w.start();
  const Decision d = w.on(signal(kDeliveredSignal, "bob-laptop", kT0 + 42));
  EXPECT_EQ(d.state, kDeliveryConfirmed);
  EXPECT_EQ(timers_canceled(d), (std::vector<std::string>{kPushTimer, kEscalateTimer}));
  EXPECT_EQ(w.device("bob-laptop"), messagingpb::DEVICE_DELIVERED);
  EXPECT_EQ(w.device("bob-phone"), messagingpb::DEVICE_PENDING);
  EXPECT_EQ(w.decoded().devices(1).delivered_ms(), kT0 + 42);
}

TEST(DeliveryType, DeliveredAfterThePushConfirms) {
  Delivery w;
  (void)w.start();
  (void)w.on(timer(kPushTimer));
  const Decision d = w.on(signal(kDeliveredSignal, "bob-phone"));
  EXPECT_EQ(d.state, kDeliveryConfirmed);
  EXPECT_EQ(timers_canceled(d), (std::vector<std::string>{kPushTimer, kEscalateTimer}));
  EXPECT_EQ(w.device("bob-phone"), messagingpb::DEVICE_DELIVERED);
  EXPECT_EQ(w.device("bob-laptop"), messagingpb::DEVICE_PUSHED);
}

TEST(DeliveryType, ConfirmedBeforeThePushTimerMeansNoPush) {
  Delivery w;
  (void)w.start();
  (void)w.on(signal(kDeliveredSignal, "bob-phone"));
  const std::string data = w.data();
  // Had the timer's fire been in flight when it was canceled, it changes nothing.
  expect_unchanged(w.on(timer(kPushTimer)), kDeliveryConfirmed, data);
}

TEST(DeliveryType, LaterDeliveriesOnlyUpdateTheirDevice) {
  Delivery w;
  (void)w.start();
  (void)w.on(signal(kDeliveredSignal, "bob-phone"));
  const Decision d = w.on(signal(kDeliveredSignal, "bob-laptop"));
  EXPECT_EQ(d.state, kDeliveryConfirmed);
  EXPECT_TRUE(d.actions.empty());
  EXPECT_EQ(w.device("bob-laptop"), messagingpb::DEVICE_DELIVERED);
}

TEST(DeliveryType, DuplicateSignalsChangeNothing) {
  Delivery w;
  (void)w.start();
  (void)w.on(signal(kDeliveredSignal, "bob-phone", kT0 + 1));
  const std::string data = w.data();
  expect_unchanged(w.on(signal(kDeliveredSignal, "bob-phone", kT0 + 9)), kDeliveryConfirmed, data);
  EXPECT_EQ(w.decoded().devices(0).delivered_ms(), kT0 + 1);
}

TEST(DeliveryType, DeliveredFromAnUnknownDeviceIsRecorded) {
  Delivery w;
  (void)w.start();
  const Decision d = w.on(signal(kDeliveredSignal, "bob-tablet"));
  EXPECT_EQ(d.state, kDeliveryConfirmed);
  EXPECT_EQ(w.device("bob-tablet"), messagingpb::DEVICE_DELIVERED);
  EXPECT_EQ(w.decoded().devices_size(), 3);
}

TEST(DeliveryType, UnknownDevicesBeyondTheBoundAreIgnoredButReadStillCloses) {
  DeliveryInput in = make_input();
  in.clear_device_ids();
  for (std::size_t i = 0; i < kMaxDeliveryDevices; ++i) {
    in.add_device_ids("d" + std::to_string(i));
  }
  Delivery w;
  (void)w.start(in);
  const std::string data = w.data();
  Decision d = w.on(signal(kDeliveredSignal, "one-too-many"));
  EXPECT_EQ(d.state, kDeliveryStored);
  EXPECT_EQ(d.data, data);
  EXPECT_EQ(records(d), std::vector<std::string>{"device_ignored"});
  d = w.on(signal(kReadSignal, "one-too-many"));
  EXPECT_EQ(d.state, kDeliveryReadAcknowledged);
  EXPECT_EQ(d.actions.back().kind, Action::Kind::kComplete);
}

TEST(DeliveryType, SignalWithoutItsOwnTimeUsesTheStampedTime) {
  Delivery w;
  (void)w.start();
  Event e = signal(kDeliveredSignal, "bob-phone", 0);
  e.time_ms = kT0 + 77;
  (void)w.on(e);
  EXPECT_EQ(w.decoded().devices(0).delivered_ms(), kT0 + 77);
}

// ---------------------------------------------------------------- escalation

TEST(DeliveryType, EscalationWithEmailFallbackSendsTheEmail) {
  Delivery w;
  (void)w.start();
  (void)w.on(timer(kPushTimer));
  Decision d = w.on(timer(kEscalateTimer));
  EXPECT_EQ(d.state, kDeliveryStored);
  EXPECT_EQ(records(d), std::vector<std::string>{"escalated"});
  const auto emails = of_kind(d, Action::Kind::kScheduleActivity);
  ASSERT_EQ(emails.size(), 1U);
  EXPECT_EQ(emails[0].activity_type, "messaging.email");
  EXPECT_EQ(emails[0].tag, kEmailTag);
  messagingpb::EmailTask task;
  ASSERT_TRUE(task.ParseFromString(emails[0].payload));
  EXPECT_EQ(task.user_id(), "bob");
  EXPECT_EQ(task.conversation_id(), "c1");
  EXPECT_EQ(task.seq(), 7U);
  EXPECT_EQ(task.sender_user_id(), "alice");
  EXPECT_EQ(task.preview(), "lunch?");
  EXPECT_EQ(ids(emails[0].options.retry().non_retryable_error_types()),
            (std::vector<std::string>{"email.rejected", "email.no_provider",
                                      workflow::kUnknownActivityType}));
  EXPECT_EQ(emails[0].options.retry().maximum_retry_after_ms(), kProviderMaxRetryAfterMs);
  EXPECT_EQ(emails[0].options.maximum_refused_wait_ms(), kProviderMaxRefusedWaitMs);
  EXPECT_TRUE(w.decoded().escalated());
  EXPECT_FALSE(w.decoded().emailed());

  d = w.on(completed(kEmailTag));
  EXPECT_EQ(records(d), std::vector<std::string>{"email_sent"});
  EXPECT_TRUE(w.decoded().emailed());
}

TEST(DeliveryType, EscalationWithoutEmailFallbackOnlyRecords) {
  DeliveryInput in = make_input();
  in.set_email_fallback(false);
  Delivery w;
  (void)w.start(in);
  const Decision d = w.on(timer(kEscalateTimer));
  EXPECT_EQ(d.state, kDeliveryStored);
  ASSERT_EQ(d.actions.size(), 1U);
  EXPECT_EQ(records(d), std::vector<std::string>{"escalated"});
  EXPECT_TRUE(w.decoded().escalated());
}

TEST(DeliveryType, FailedEmailIsRecorded) {
  Delivery w;
  (void)w.start();
  (void)w.on(timer(kEscalateTimer));
  const Decision d = w.on(failed(kEmailTag, kEmailRejected));
  EXPECT_EQ(records(d), std::vector<std::string>{"email_failed"});
  EXPECT_EQ(d.actions[0].payload, "email.rejected: gone");
  EXPECT_FALSE(w.decoded().emailed());
}

TEST(DeliveryType, EscalationAfterConfirmationIsIgnored) {
  Delivery w;
  (void)w.start();
  (void)w.on(signal(kDeliveredSignal, "bob-phone"));
  const std::string data = w.data();
  expect_unchanged(w.on(timer(kEscalateTimer)), kDeliveryConfirmed, data);
}

// ---------------------------------------------------------------- read

// Brings a fresh delivery to `state` through the events that lead there.
void advance_to(Delivery& w, const std::string& state) {
  (void)w.start();
  if (state == kDeliveryPushDispatched) {
    (void)w.on(timer(kPushTimer));
    (void)w.on(completed(push_tag(0)));  // a service accepted one device's push
  } else if (state == kDeliveryConfirmed) {
    (void)w.on(signal(kDeliveredSignal, "bob-laptop"));
  }
  ASSERT_EQ(w.state(), state);
}

TEST(DeliveryType, ReadFromEveryOpenStateCompletesTheRun) {
  for (const char* from : {kDeliveryStored, kDeliveryPushDispatched, kDeliveryConfirmed}) {
    SCOPED_TRACE(from);
    Delivery w;
    advance_to(w, from);
    const Decision d = w.on(signal(kReadSignal, "bob-phone", kT0 + 500));
    EXPECT_EQ(d.state, kDeliveryReadAcknowledged);
    EXPECT_EQ(timers_canceled(d), (std::vector<std::string>{kPushTimer, kEscalateTimer}));
    ASSERT_FALSE(d.actions.empty());
    EXPECT_EQ(d.actions.back().kind, Action::Kind::kComplete);
    EXPECT_EQ(d.actions.back().payload, "bob-phone");
    EXPECT_EQ(w.device("bob-phone"), messagingpb::DEVICE_READ);
    EXPECT_EQ(w.decoded().devices(0).read_ms(), kT0 + 500);
    EXPECT_EQ(w.decoded().devices(0).delivered_ms(), kT0 + 500);  // read implies delivered
  }
}

TEST(DeliveryType, ReadKeepsTheEarlierDeliveryTime) {
  Delivery w;
  (void)w.start();
  (void)w.on(signal(kDeliveredSignal, "bob-phone", kT0 + 10));
  (void)w.on(signal(kReadSignal, "bob-phone", kT0 + 90));
  EXPECT_EQ(w.decoded().devices(0).delivered_ms(), kT0 + 10);
  EXPECT_EQ(w.decoded().devices(0).read_ms(), kT0 + 90);
}

// ---------------------------------------------------------------- lifetime

constexpr std::int64_t kLifetimeMs = 3'600'000;

DeliveryInput with_lifetime() {
  DeliveryInput in = make_input();
  in.set_close_after_ms(kLifetimeMs);
  return in;
}

std::vector<Action> completions(const Decision& d) {
  return of_kind(d, Action::Kind::kComplete);
}

TEST(DeliveryType, StartRunsTheCloseTimerForTheLifetime) {
  Delivery w;
  const Decision d = w.start(with_lifetime());
  EXPECT_EQ(timers_started(d), (std::vector<std::string>{kPushTimer, kEscalateTimer, kCloseTimer}));
  EXPECT_EQ(d.actions[2].delay_ms, kLifetimeMs);
}

TEST(DeliveryType, NoCloseTimerWithoutALifetime) {
  Delivery w;
  const Decision d = w.start();
  EXPECT_EQ(timers_started(d), (std::vector<std::string>{kPushTimer, kEscalateTimer}));
}

TEST(DeliveryType, CloseTimerCompletesADeliveredRunAsUnread) {
  Delivery w;
  (void)w.start(with_lifetime());
  (void)w.on(signal(kDeliveredSignal, "bob-phone"));
  const Decision d = w.on(timer(kCloseTimer));
  EXPECT_EQ(d.state, kDeliveryConfirmed);
  EXPECT_EQ(records(d), std::vector<std::string>{kExpiredRecord});
  EXPECT_EQ(of_kind(d, Action::Kind::kRecord)[0].payload, kExpiredUnread);
  ASSERT_EQ(completions(d).size(), 1U);
  EXPECT_EQ(completions(d)[0].payload, "");  // no reading device
  EXPECT_EQ(w.device("bob-phone"), messagingpb::DEVICE_DELIVERED);
}

TEST(DeliveryType, CloseTimerCompletesAnUnconfirmedRunWithNothingPendingAsUndelivered) {
  DeliveryInput in = with_lifetime();
  in.set_push_enabled(false);
  in.set_escalate_after_ms(0);
  Delivery w;
  (void)w.start(in);
  const Decision d = w.on(timer(kCloseTimer));
  EXPECT_EQ(d.state, kDeliveryStored);
  EXPECT_EQ(of_kind(d, Action::Kind::kRecord).at(0).payload, kExpiredUndelivered);
  EXPECT_EQ(completions(d).size(), 1U);
}

TEST(DeliveryType, ALifetimeShorterThanThePushAndEscalationWaitsForBoth) {
  Delivery w;
  (void)w.start(with_lifetime());
  Decision d = w.on(timer(kCloseTimer));
  EXPECT_EQ(d.state, kDeliveryStored);
  EXPECT_TRUE(completions(d).empty());
  EXPECT_TRUE(w.decoded().close_due());
  d = w.on(timer(kPushTimer));  // still pushes
  EXPECT_EQ(of_kind(d, Action::Kind::kScheduleActivity).size(), 2U);
  d = complete_pushes(w);
  EXPECT_TRUE(completions(d).empty());  // the escalation is still to come
  d = w.on(timer(kEscalateTimer));      // still escalates, and emails
  EXPECT_EQ(of_kind(d, Action::Kind::kScheduleActivity).size(), 1U);
  EXPECT_TRUE(completions(d).empty());
  d = w.on(failed(kEmailTag, kEmailRejected));
  EXPECT_EQ(records(d), (std::vector<std::string>{kEmailFailedRecord, kExpiredRecord}));
  EXPECT_EQ(of_kind(d, Action::Kind::kRecord).at(1).payload, kExpiredUndelivered);
  EXPECT_EQ(completions(d).size(), 1U);
}

TEST(DeliveryType, AConfirmationWhileTheCloseWaitsCompletesAsUnread) {
  Delivery w;
  (void)w.start(with_lifetime());
  (void)w.on(timer(kCloseTimer));
  const Decision d = w.on(signal(kDeliveredSignal, "bob-phone"));
  EXPECT_EQ(d.state, kDeliveryConfirmed);
  EXPECT_EQ(timers_canceled(d), (std::vector<std::string>{kPushTimer, kEscalateTimer}));
  EXPECT_EQ(of_kind(d, Action::Kind::kRecord).at(0).payload, kExpiredUnread);
  EXPECT_EQ(completions(d).size(), 1U);
}

TEST(DeliveryType, CloseWaitsForTheOpenPushAndCompletesWithItsOutcome) {
  DeliveryInput in = with_lifetime();
  in.set_escalate_after_ms(0);
  Delivery w;
  (void)w.start(in);
  (void)w.on(timer(kPushTimer));
  Decision d = w.on(timer(kCloseTimer));
  EXPECT_EQ(d.state, kDeliveryStored);
  EXPECT_TRUE(completions(d).empty());
  EXPECT_TRUE(w.decoded().close_due());
  d = w.on(completed(push_tag(0)));
  EXPECT_TRUE(completions(d).empty());  // the other device's push is still out
  d = w.on(failed(push_tag(1), kPushUnavailable));
  EXPECT_EQ(records(d), (std::vector<std::string>{kPushFailedRecord, kExpiredRecord}));
  EXPECT_EQ(completions(d).size(), 1U);
  EXPECT_EQ(w.decoded().push_error(), "push.unavailable: gone");
}

TEST(DeliveryType, CloseWaitsForTheOpenEmailToo) {
  Delivery w;
  (void)w.start(with_lifetime());
  (void)w.on(timer(kPushTimer));
  (void)w.on(timer(kEscalateTimer));  // schedules the email
  EXPECT_TRUE(completions(w.on(timer(kCloseTimer))).empty());
  Decision d = complete_pushes(w);
  EXPECT_TRUE(completions(d).empty());  // the email is still in flight
  d = w.on(completed(kEmailTag));
  EXPECT_EQ(records(d), (std::vector<std::string>{kEmailSentRecord, kExpiredRecord}));
  EXPECT_EQ(completions(d).size(), 1U);
  EXPECT_TRUE(w.decoded().emailed());
}

TEST(DeliveryType, AReadWhileTheCloseWaitsCompletesAsRead) {
  Delivery w;
  (void)w.start(with_lifetime());
  (void)w.on(timer(kPushTimer));
  (void)w.on(timer(kCloseTimer));
  const Decision d = w.on(signal(kReadSignal, "bob-laptop"));
  EXPECT_EQ(d.state, kDeliveryReadAcknowledged);
  ASSERT_EQ(completions(d).size(), 1U);
  EXPECT_EQ(completions(d)[0].payload, "bob-laptop");
}

// ---------------------------------------------------------------- other events

TEST(DeliveryType, UnknownSignalIsRecordedAndIgnored) {
  Delivery w;
  (void)w.start();
  const std::string data = w.data();
  const Decision d = w.on(signal("poke", "bob-phone"));
  EXPECT_EQ(d.state, kDeliveryStored);
  EXPECT_EQ(d.data, data);
  ASSERT_EQ(d.actions.size(), 1U);
  EXPECT_EQ(d.actions[0].name, "signal_ignored");
  EXPECT_EQ(d.actions[0].payload, "poke");
}

TEST(DeliveryType, MalformedSignalPayloadIsRecordedAndIgnored) {
  Delivery w;
  (void)w.start();
  const std::string data = w.data();
  Event garbage = signal(kDeliveredSignal, "x");
  garbage.payload = "\xff\xff";
  Event no_device = signal(kReadSignal, "");
  Event long_device = signal(kReadSignal, std::string(kMaxDeviceIdBytes + 1, 'd'));
  for (const Event& e : {garbage, no_device, long_device}) {
    const Decision d = w.on(e);
    EXPECT_EQ(d.state, kDeliveryStored);
    EXPECT_EQ(d.data, data);
    EXPECT_EQ(records(d), std::vector<std::string>{"signal_ignored"});
  }
}

TEST(DeliveryType, CancelRequestIsLeftToTheEngine) {
  Delivery w;
  (void)w.start();
  const std::string data = w.data();
  Event cancel;
  cancel.kind = Event::Kind::kCancelRequested;
  cancel.payload = "message deleted";
  expect_unchanged(w.on(cancel), kDeliveryStored, data);
}

TEST(DeliveryType, DecisionsAreDeterministic) {
  Delivery a;
  Delivery b;
  for (Delivery* w : {&a, &b}) {
    (void)w->start();
    (void)w->on(timer(kPushTimer));
    (void)w->on(signal(kDeliveredSignal, "bob-laptop"));
  }
  EXPECT_EQ(a.state(), b.state());
  EXPECT_EQ(a.data(), b.data());
}

TEST(DeliveryIds, PartsAreEscapedSoDistinctPartsNeverCollide) {
  EXPECT_EQ(delivery_workflow_id("c1", 7, "bob"), "delivery/c1/7/bob");
  EXPECT_EQ(compose_workflow_id("x", {"a/b", "c"}), "x/a%2Fb/c");
  EXPECT_NE(compose_workflow_id("x", {"a/b", "c"}), compose_workflow_id("x", {"a", "b/c"}));
  EXPECT_EQ(compose_workflow_id("x", {"100%"}), "x/100%25");
  EXPECT_NE(compose_workflow_id("x", {"%2F"}), compose_workflow_id("x", {"/"}));
}

// ---------------------------------------------------------------- through the real engine

// One replica's workflow module over an in-memory store, without raft: the test applies
// commands as if they were committed, stamped with its own clock.
class DeliveryEngineTest : public ::testing::Test {
 protected:
  DeliveryEngineTest() { EXPECT_TRUE(registry_.add(make_delivery_type()).ok()); }

  rsmpb::CommandResult apply(const workflowpb::WorkflowCommand& wc, std::int64_t wall_ms) {
    rsmpb::Command c;
    c.set_wall_ms(wall_ms);
    c.mutable_module()->set_name(workflow::kModuleName);
    c.mutable_module()->set_payload(wc.SerializeAsString());
    rsm::ApplyBatch batch(&store_);
    rsmpb::CommandResult result = engine_.apply(++index_, c, batch);
    EXPECT_TRUE(store_.write(batch.writes(), false).ok());
    EXPECT_EQ(result.code(), 0U) << result.message();
    return result;
  }

  void start(std::int64_t wall_ms, const DeliveryInput& input = make_input()) {
    workflowpb::WorkflowCommand c;
    c.mutable_start()->set_workflow_id(id_);
    c.mutable_start()->set_type(kDeliveryType);
    c.mutable_start()->set_input(input.SerializeAsString());
    (void)apply(c, wall_ms);
  }

  void signal_device(const std::string& name, const std::string& device, std::int64_t wall_ms) {
    workflowpb::WorkflowCommand c;
    c.mutable_signal()->set_workflow_id(id_);
    c.mutable_signal()->set_name(name);
    c.mutable_signal()->set_payload(device_signal(device, wall_ms));
    (void)apply(c, wall_ms);
  }

  // Fires the timer at its due time; fails the test when it is not there.
  void fire(const std::optional<workflowpb::TimerRecord>& t) {
    ASSERT_TRUE(t.has_value());
    workflowpb::WorkflowCommand c;
    auto* f = c.mutable_fire_timer();
    f->set_workflow_id(t->workflow_id());
    f->set_run_id(t->run_id());
    f->set_timer_id(t->timer_id());
    f->set_due_ms(t->due_ms());
    (void)apply(c, t->due_ms());
  }

  void report(const workflowpb::ActivityRecord& a, bool ok, std::string error_type,
              std::int64_t wall_ms, std::uint64_t retry_after_ms = 0, bool refused = false) {
    workflowpb::WorkflowCommand c;
    c.mutable_report()->set_retry_after_ms(retry_after_ms);
    c.mutable_report()->set_not_dispatched(refused);
    auto* r = c.mutable_report();
    r->set_workflow_id(a.workflow_id());
    r->set_run_id(a.run_id());
    r->set_activity_id(a.activity_id());
    r->set_attempt(a.attempt());
    r->set_ok(ok);
    r->set_error_type(std::move(error_type));
    (void)apply(c, wall_ms);
  }

  // The timer of `kind` (and USER `tag`), if one is stored.
  std::optional<workflowpb::TimerRecord> timer_of(workflowpb::TimerKind kind,
                                                  const std::string& tag = {}) {
    auto timers =
        workflow::Engine::due_timers(store_, std::numeric_limits<std::int64_t>::max(), 100);
    EXPECT_TRUE(timers.ok());
    for (const auto& t : timers.value()) {
      if (t.kind() == kind && t.tag() == tag) {
        return t;
      }
    }
    return std::nullopt;
  }
  std::optional<workflowpb::TimerRecord> user_timer(const std::string& tag) {
    return timer_of(workflowpb::USER, tag);
  }

  std::vector<workflowpb::ActivityRecord> dispatchable() {
    auto d = workflow::Engine::dispatchable_activities(store_, 100);
    EXPECT_TRUE(d.ok());
    return d.ok() ? *d : std::vector<workflowpb::ActivityRecord>();
  }

  workflowpb::WorkflowRecord record() {
    auto r = workflow::Engine::read_workflow(store_, id_);
    EXPECT_TRUE(r.ok() && r->has_value());
    return r.ok() && r->has_value() ? **r : workflowpb::WorkflowRecord();
  }

  // The workflow ids the visibility index lists under `state`.
  std::vector<std::string> listed(const std::string& state) {
    workflow::ListFilter filter;
    filter.type = kDeliveryType;
    filter.state = state;
    auto page = workflow::Engine::list(store_, filter);
    EXPECT_TRUE(page.ok());
    std::vector<std::string> out;
    for (const auto& e : page.ok() ? page->entries : std::vector<workflow::VisibilityEntry>()) {
      out.push_back(e.workflow_id);
    }
    return out;
  }

  std::vector<std::string> history() {
    auto h = workflow::Engine::read_history(store_, id_, 1, 0, workflow::kMaxHistoryEvents);
    EXPECT_TRUE(h.ok());
    std::vector<std::string> kinds;
    for (const auto& e : h.ok() ? *h : std::vector<workflowpb::HistoryEvent>()) {
      kinds.push_back(e.kind() == "state_changed" ? "state:" + e.name() : e.kind());
    }
    return kinds;
  }

  const std::string id_ = delivery_workflow_id("c1", 7, "bob");
  storage::MemEngine store_;
  workflow::Registry registry_;
  workflow::Engine engine_{&registry_};
  raft::Index index_ = 0;
};

TEST_F(DeliveryEngineTest, PushRetriesThenDeliveredThenReadLandInRecordAndIndex) {
  start(kT0);
  EXPECT_EQ(record().state(), kDeliveryStored);
  EXPECT_EQ(listed(kDeliveryStored), std::vector<std::string>{id_});
  ASSERT_TRUE(user_timer(kEscalateTimer).has_value());
  EXPECT_EQ(user_timer(kEscalateTimer)->due_ms(), kT0 + kEscalateAfterMs);

  fire(user_timer(kPushTimer));
  EXPECT_EQ(record().state(), kDeliveryStored) << "scheduled, but nothing reached a device";
  auto push = dispatchable();
  ASSERT_EQ(push.size(), 2U);  // one activity per device
  EXPECT_EQ(push[0].activity_type(), kPushActivity);
  EXPECT_EQ(push[0].tag(), "push/0");
  EXPECT_EQ(push[1].tag(), "push/1");
  EXPECT_NE(push[0].idempotency_key(), push[1].idempotency_key());

  // The laptop's push is accepted; the phone's fails for now and is retried after a jittered
  // backoff of at most 1 s, alone: the laptop is never pushed again.
  report(push[1], true, {}, kT0 + kPushAfterMs + 5);
  EXPECT_EQ(record().state(), kDeliveryPushDispatched);
  EXPECT_TRUE(listed(kDeliveryStored).empty());
  EXPECT_EQ(listed(kDeliveryPushDispatched), std::vector<std::string>{id_});
  report(push[0], false, kPushUnavailable, kT0 + kPushAfterMs + 10);
  EXPECT_TRUE(dispatchable().empty());
  const auto retry = timer_of(workflowpb::ACTIVITY_RETRY);
  ASSERT_TRUE(retry.has_value());
  EXPECT_LE(retry->due_ms(), kT0 + kPushAfterMs + 10 + 1'000);
  fire(retry);
  push = dispatchable();
  ASSERT_EQ(push.size(), 1U);
  EXPECT_EQ(push[0].tag(), "push/0");
  EXPECT_EQ(push[0].attempt(), 2U);
  report(push[0], true, {}, kT0 + kPushAfterMs + 2'000);
  auto pushed = decode_delivery_data(record().data());
  ASSERT_TRUE(pushed.has_value());
  EXPECT_TRUE(pushed->devices(0).push_accepted());
  EXPECT_TRUE(pushed->devices(1).push_accepted());

  signal_device(kDeliveredSignal, "bob-laptop", kT0 + 20'000);
  EXPECT_EQ(record().state(), kDeliveryConfirmed);
  EXPECT_EQ(listed(kDeliveryConfirmed), std::vector<std::string>{id_});
  EXPECT_FALSE(user_timer(kEscalateTimer).has_value());

  signal_device(kReadSignal, "bob-phone", kT0 + 30'000);
  const auto rec = record();
  EXPECT_EQ(rec.status(), workflowpb::COMPLETED);
  EXPECT_EQ(rec.state(), kDeliveryReadAcknowledged);
  EXPECT_EQ(rec.result(), "bob-phone");
  EXPECT_EQ(listed(kDeliveryReadAcknowledged), std::vector<std::string>{id_});
  EXPECT_TRUE(listed(kDeliveryConfirmed).empty());
  const auto data = decode_delivery_data(rec.data());
  ASSERT_TRUE(data.has_value());
  EXPECT_EQ(data->devices(0).state(), messagingpb::DEVICE_READ);
  EXPECT_EQ(data->devices(1).state(), messagingpb::DEVICE_DELIVERED);
  EXPECT_EQ(history(),
            (std::vector<std::string>{"started", "state:stored", "timer_started", "timer_started",
                                      "timer_fired", "activity_scheduled", "activity_scheduled",
                                      "activity_completed", "state:push_dispatched", "push_sent",
                                      "activity_retry_scheduled", "activity_completed", "push_sent",
                                      "signaled", "state:delivery_confirmed", "timer_canceled",
                                      "signaled", "state:read_acknowledged", "completed"}));
}

TEST_F(DeliveryEngineTest, ADeliveredRunNobodyReadsCompletesAtTheEndOfItsLifetime) {
  start(kT0, with_lifetime());
  ASSERT_TRUE(user_timer(kCloseTimer).has_value());
  EXPECT_EQ(user_timer(kCloseTimer)->due_ms(), kT0 + kLifetimeMs);
  signal_device(kDeliveredSignal, "bob-laptop", kT0 + 500);  // before the push
  EXPECT_FALSE(user_timer(kPushTimer).has_value());
  EXPECT_TRUE(user_timer(kCloseTimer).has_value());  // a confirmation keeps the lifetime

  fire(user_timer(kCloseTimer));
  const auto rec = record();
  EXPECT_EQ(rec.status(), workflowpb::COMPLETED);
  EXPECT_EQ(rec.state(), kDeliveryConfirmed);
  EXPECT_EQ(rec.result(), "");
  EXPECT_FALSE(user_timer(kCloseTimer).has_value());
  const auto kinds = history();
  EXPECT_EQ(kinds.back(), "completed");
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), kExpiredRecord), 1);

  // A read after the close finds no open run: the engine answers kNotFound, which the domain and
  // the read-sync saga treat as done.
  workflowpb::WorkflowCommand late;
  late.mutable_signal()->set_workflow_id(id_);
  late.mutable_signal()->set_name(kReadSignal);
  late.mutable_signal()->set_payload(device_signal("bob-phone", kT0 + kLifetimeMs + 1));
  rsmpb::Command c;
  c.set_wall_ms(kT0 + kLifetimeMs + 1);
  c.mutable_module()->set_name(workflow::kModuleName);
  c.mutable_module()->set_payload(late.SerializeAsString());
  rsm::ApplyBatch batch(&store_);
  EXPECT_EQ(engine_.apply(++index_, c, batch).code(), static_cast<std::uint32_t>(Code::kNotFound));
}

TEST_F(DeliveryEngineTest, PermanentPushFailureThenEscalationByEmailThenCancel) {
  start(kT0);
  fire(user_timer(kPushTimer));
  auto push = dispatchable();
  ASSERT_EQ(push.size(), 2U);
  report(push[0], false, kPushUnregistered, kT0 + kPushAfterMs + 10);
  report(push[1], false, kPushRejected, kT0 + kPushAfterMs + 10);
  EXPECT_FALSE(timer_of(workflowpb::ACTIVITY_RETRY).has_value());  // neither is retried
  auto rec = record();
  EXPECT_EQ(rec.status(), workflowpb::RUNNING);
  EXPECT_EQ(rec.state(), kDeliveryStored) << "no push reached a device";
  EXPECT_EQ(decode_delivery_data(rec.data())->push_error(), "push.rejected: ");

  fire(user_timer(kEscalateTimer));
  auto email = dispatchable();
  ASSERT_EQ(email.size(), 1U);
  EXPECT_EQ(email[0].activity_type(), kEmailActivity);
  report(email[0], true, {}, kT0 + kEscalateAfterMs + 100);
  EXPECT_TRUE(decode_delivery_data(record().data())->emailed());

  workflowpb::WorkflowCommand cancel;
  cancel.mutable_cancel()->set_workflow_id(id_);
  cancel.mutable_cancel()->set_reason("message deleted");
  (void)apply(cancel, kT0 + kEscalateAfterMs + 200);
  rec = record();
  EXPECT_EQ(rec.status(), workflowpb::CANCELED);
  EXPECT_EQ(rec.state(), kDeliveryStored);
  EXPECT_TRUE(dispatchable().empty());
  const auto kinds = history();
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), "push_failed"), 2);
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), "escalated"), 1);
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), "email_sent"), 1);
  EXPECT_EQ(kinds.back(), "canceled");
}

// An open circuit breaker answers at once with its remaining open time (push/guard.h).
constexpr std::uint64_t kBreakerOpenMs = 30'000;

TEST_F(DeliveryEngineTest, WhileTheBreakerIsOpenAPushWaitsPastTheRetryWindowAndIsNotDropped) {
  DeliveryInput in = make_input();
  in.set_escalate_after_ms(0);
  start(kT0, in);
  fire(user_timer(kPushTimer));
  auto push = dispatchable();
  ASSERT_EQ(push.size(), 2U);
  report(push[1], true, {}, kT0 + kPushAfterMs + 5);  // the laptop's service is up
  push = dispatchable();
  // The phone's service is down: its breaker refuses every attempt for three retry windows.
  const std::int64_t outage_end_ms = kT0 + 3 * static_cast<std::int64_t>(kProviderRetryWindowMs);
  std::int64_t now = kT0 + kPushAfterMs + 10;
  std::size_t refusals = 0;
  while (now < outage_end_ms) {
    ASSERT_EQ(push.size(), 1U) << "the phone's push is still waiting";
    report(push[0], false, kPushUnavailable, now, kBreakerOpenMs, /*refused=*/true);
    ++refusals;
    const auto retry = timer_of(workflowpb::ACTIVITY_RETRY);
    ASSERT_TRUE(retry.has_value()) << "refusal " << refusals << " dropped the push";
    now = retry->due_ms();
    fire(retry);
    push = dispatchable();
  }
  EXPECT_GT(refusals, 100U);
  ASSERT_EQ(push.size(), 1U);
  report(push[0], true, {}, now + 5);  // the breaker closed: the service took it
  const auto rec = record();
  EXPECT_EQ(rec.state(), kDeliveryPushDispatched);
  const auto data = decode_delivery_data(rec.data());
  ASSERT_TRUE(data.has_value());
  EXPECT_TRUE(data->devices(0).push_accepted());
  EXPECT_TRUE(data->devices(1).push_accepted());
  const auto kinds = history();
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), "push_failed"), 0);
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), "push_sent"), 2);
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), "activity_retry_scheduled"), 1)
      << "the refusals cost the run's history one event";
}

TEST_F(DeliveryEngineTest, TheServicesOwnFailuresUseUpTheRetryWindow) {
  DeliveryInput in = make_input();
  in.set_escalate_after_ms(0);
  start(kT0, in);
  fire(user_timer(kPushTimer));
  auto push = dispatchable();
  ASSERT_EQ(push.size(), 2U);
  report(push[1], true, {}, kT0 + kPushAfterMs + 5);
  push = dispatchable();
  // The service itself answers 503 with Retry-After: 30 s, for more than the window.
  std::int64_t now = kT0 + kPushAfterMs + 10;
  std::size_t attempts = 0;
  while (!push.empty()) {
    report(push[0], false, kPushUnavailable, now, kBreakerOpenMs);
    ++attempts;
    const auto retry = timer_of(workflowpb::ACTIVITY_RETRY);
    if (!retry.has_value()) break;
    now = retry->due_ms();
    fire(retry);
    push = dispatchable();
  }
  EXPECT_LE(now, kT0 + kPushAfterMs + static_cast<std::int64_t>(kProviderRetryWindowMs));
  EXPECT_GT(attempts, 10U);
  const auto kinds = history();
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), "push_failed"), 1);
  EXPECT_EQ(decode_delivery_data(record().data())->devices(0).state(), messagingpb::DEVICE_PENDING);
}

TEST_F(DeliveryEngineTest, AProvidersRetryAfterHoldsTheDevicesNextAttemptBackDurably) {
  start(kT0);
  fire(user_timer(kPushTimer));
  auto push = dispatchable();
  ASSERT_EQ(push.size(), 2U);
  const std::int64_t failed_ms = kT0 + kPushAfterMs + 10;
  report(push[0], false, kPushUnavailable, failed_ms, /*retry_after_ms=*/120'000);
  const auto retry = timer_of(workflowpb::ACTIVITY_RETRY);
  ASSERT_TRUE(retry.has_value());
  EXPECT_EQ(retry->due_ms(), failed_ms + 120'000);  // the jittered backoff is at most 1 s
  // A hint beyond the bound counts as the bound.
  report(push[1], false, kPushUnavailable, failed_ms, /*retry_after_ms=*/24 * 3'600'000ULL);
  std::vector<std::int64_t> due;
  auto timers = workflow::Engine::due_timers(store_, std::numeric_limits<std::int64_t>::max(), 100);
  ASSERT_TRUE(timers.ok());
  for (const auto& t : *timers) {
    if (t.kind() == workflowpb::ACTIVITY_RETRY) {
      due.push_back(t.due_ms());
    }
  }
  EXPECT_EQ(due, (std::vector<std::int64_t>{
                     failed_ms + 120'000,
                     failed_ms + static_cast<std::int64_t>(kProviderMaxRetryAfterMs)}));
}

}  // namespace
}  // namespace herald::messaging
