#include "webhooks/emitter.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <functional>
#include <map>
#include <optional>
#include <set>

#include "base/clock.h"
#include "messaging/host.h"
#include "messaging/providers.h"
#include "webhooks/test_harness.h"
#include "workflow/runtime.h"

namespace herald::webhooks {
namespace {

using testing::Harness;
using workflowpb::WorkflowCommand;

constexpr std::int64_t kT0 = 1'000'000;

std::string delivery_id() {
  return messaging::delivery_workflow_id("c1", 7, "bob");
}

WorkflowCommand start_delivery() {
  messagingpb::DeliveryInput in;
  in.set_conversation_id("c1");
  in.set_seq(7);
  in.set_sender_user_id("alice");
  in.set_recipient_user_id("bob");
  in.add_device_ids("bob-phone");
  in.set_escalate_after_ms(60'000);
  WorkflowCommand c;
  c.mutable_start()->set_workflow_id(delivery_id());
  c.mutable_start()->set_type(messaging::kDeliveryType);
  c.mutable_start()->set_input(in.SerializeAsString());
  return c;
}

WorkflowCommand device_signal(const char* name) {
  messagingpb::DeviceSignal s;
  s.set_device_id("bob-phone");
  WorkflowCommand c;
  c.mutable_signal()->set_workflow_id(delivery_id());
  c.mutable_signal()->set_name(name);
  c.mutable_signal()->set_payload(s.SerializeAsString());
  return c;
}

webhookspb::WebhookDeliveryInput input_of(Harness& h, const std::string& run) {
  auto rec = workflow::Engine::read_workflow(h.store_, run);
  EXPECT_TRUE(rec.ok() && rec->has_value());
  auto history = workflow::Engine::read_history(h.store_, run, 1, 0, 1);
  EXPECT_TRUE(history.ok() && !history->empty());
  auto input = decode_delivery_input(history->front().payload());
  EXPECT_TRUE(input.has_value());
  return input.value_or(webhookspb::WebhookDeliveryInput());
}

TEST(EmitterTest, WithoutEndpointsADeliveryWritesExactlyWhatItWroteBefore) {
  Harness observed;
  Harness plain(/*observe=*/false);
  std::int64_t now = kT0;
  for (const WorkflowCommand& c : {start_delivery(), device_signal(messaging::kDeliveredSignal),
                                   device_signal(messaging::kReadSignal)}) {
    ASSERT_EQ(observed.apply(c, now).code(), 0U);
    ASSERT_EQ(plain.apply(c, now).code(), 0U);
    EXPECT_EQ(observed.last_writes_, plain.last_writes_);
    now += 10;
  }
  EXPECT_TRUE(observed.webhook_runs().empty());
}

TEST(EmitterTest, DeliveredAndReadStartOneRunPerSubscribedEndpoint) {
  Harness h;
  ASSERT_EQ(h.put_endpoint("all", {kAllEvents}).code(), 0U);
  ASSERT_EQ(h.put_endpoint("reads", {messaging::kEventMessageRead}).code(), 0U);
  ASSERT_EQ(h.apply(start_delivery(), kT0).code(), 0U);
  EXPECT_TRUE(h.webhook_runs().empty()) << "a delivery's start is no event";
  ASSERT_EQ(h.apply(device_signal(messaging::kDeliveredSignal), kT0 + 10).code(), 0U);
  ASSERT_EQ(h.webhook_runs().size(), 1U);
  ASSERT_EQ(h.apply(device_signal(messaging::kDeliveredSignal), kT0 + 20).code(), 0U);
  EXPECT_EQ(h.webhook_runs().size(), 1U) << "a second acknowledgement is no new event";
  ASSERT_EQ(h.apply(device_signal(messaging::kReadSignal), kT0 + 30).code(), 0U);
  const auto runs = h.webhook_runs();
  ASSERT_EQ(runs.size(), 3U);
  for (const auto& run : runs) {
    EXPECT_TRUE(run.starts_with(webhook_message_prefix("c1", 7))) << run;
  }
  std::map<std::string, int> types;
  for (const auto& run : runs) {
    const auto in = input_of(h, run);
    ++types[in.event_type() + "@" + in.endpoint_id()];
    const auto body = boost::json::parse(in.body()).as_object();
    EXPECT_EQ(std::string(body.at("id").as_string()), in.event_id());
    EXPECT_EQ(std::string(body.at("data").at("user_id").as_string()), "bob");
    EXPECT_EQ(body.at("data").at("seq").as_int64(), 7);
    EXPECT_EQ(std::string(body.at("data").at("device_id").as_string()), "bob-phone");
  }
  EXPECT_EQ(types,
            (std::map<std::string, int>{
                {"message.delivered@all", 1}, {"message.read@all", 1}, {"message.read@reads", 1}}));
}

TEST(EmitterTest, AnEscalationIsAnEvent) {
  Harness h;
  ASSERT_EQ(h.put_endpoint("esc", {messaging::kEventMessageEscalated}).code(), 0U);
  ASSERT_EQ(h.apply(start_delivery(), kT0).code(), 0U);
  auto timers = workflow::Engine::due_timers(h.store_, INT64_MAX, 100);
  ASSERT_TRUE(timers.ok());
  for (const auto& t : *timers) {
    if (t.tag() != messaging::kEscalateTimer) continue;
    WorkflowCommand c;
    c.mutable_fire_timer()->set_workflow_id(t.workflow_id());
    c.mutable_fire_timer()->set_run_id(t.run_id());
    c.mutable_fire_timer()->set_timer_id(t.timer_id());
    c.mutable_fire_timer()->set_due_ms(t.due_ms());
    ASSERT_EQ(h.apply(c, t.due_ms()).code(), 0U);
  }
  const auto runs = h.webhook_runs();
  ASSERT_EQ(runs.size(), 1U);
  EXPECT_EQ(input_of(h, runs[0]).event_type(), messaging::kEventMessageEscalated);
}

TEST(EmitterTest, ADomainEventStartsRunsForItsSubscribersOnly) {
  Harness h;
  ASSERT_EQ(h.put_endpoint("sent", {messaging::kEventMessageSent}).code(), 0U);
  ASSERT_EQ(h.put_endpoint("reads", {messaging::kEventMessageRead}).code(), 0U);
  messaging::DomainEvent event;
  event.type = messaging::kEventMessageSent;
  event.key = "c1/7";
  event.conversation_id = "c1";
  event.seq = 7;
  rsm::ApplyBatch batch(&h.store_);
  std::vector<workflowpb::StartWorkflow> starts;
  ASSERT_TRUE(Emitter::starts_for(batch, kT0, event, starts).ok());
  ASSERT_EQ(starts.size(), 1U);
  EXPECT_EQ(starts[0].workflow_id(), webhook_workflow_id(event, event_id(event), "sent"));
  EXPECT_EQ(starts[0].type(), kWebhookType);
}

TEST(EmitterTest, AnEventIdDependsOnTypeAndKeyOnly) {
  messaging::DomainEvent a;
  a.type = messaging::kEventMessageSent;
  a.key = "c1/7";
  messaging::DomainEvent b = a;
  b.user_id = "someone";
  EXPECT_EQ(event_id(a), event_id(b));
  EXPECT_EQ(event_id(a).size(), 4 + kEventIdHexDigits);
  b.type = messaging::kEventMessageRead;
  EXPECT_NE(event_id(a), event_id(b));
}

// ---- push_token.invalidated: decided by the InvalidatePushTarget command ----

// A push provider that answers every notification with one result, counting the calls.
class AnsweringPush final : public messaging::PushProvider {
 public:
  explicit AnsweringPush(messaging::ProviderResult answer) : answer_(std::move(answer)) {}
  void send(const messaging::PushRequest& /*request*/, messaging::ProviderDone done) override {
    ++calls;
    done(answer_);
  }
  int calls = 0;

 private:
  messaging::ProviderResult answer_;
};

class NoEmail final : public messaging::EmailProvider {
 public:
  void send(const messaging::EmailRequest& /*request*/, messaging::ProviderDone done) override {
    ADD_FAILURE() << "these tests send no email";
    done(messaging::ProviderResult::failure(messaging::kEmailUnavailable, "not in this test"));
  }
};

// The messaging domain on the harness's store and engine, wired to the emitter as a node wires it
// (server/node_host.cc). What its handlers propose is applied at once, one batch per command,
// stamped with now_ms as a node stamps a proposal.
class Messaging {
 public:
  Messaging(Harness& h, messaging::ProviderResult push_answer)
      : h_(h),
        push_(std::move(push_answer)),
        host_(
            &h.store_,
            [this](const rsmpb::Command& command, const rsm::ProposeCallback& done) {
              done(apply(command));
            },
            [](const std::function<void()>& fn) { fn(); }, &push_, &email_, &clock_) {
    host_.bind_engine(&h.engine_);
    host_.set_event_starts(&Emitter::starts_for);
  }

  rsmpb::CommandResult apply(rsmpb::Command command) {
    command.set_wall_ms(now_ms);
    rsm::ApplyBatch batch(&h_.store_);
    rsmpb::CommandResult result = host_.domain()->apply(++h_.index_, command, batch);
    if (result.code() == 0) {
      EXPECT_TRUE(h_.store_.write(batch.writes(), false).ok());
    }
    return result;
  }

  rsmpb::CommandResult apply(const messagingpb::MessagingCommand& op) {
    rsmpb::Command command;
    command.mutable_module()->set_name(messaging::kModuleName);
    command.mutable_module()->set_payload(op.SerializeAsString());
    return apply(command);
  }

  // Bob with his phone, whose APNs token is `token`.
  void bob_with_token(const std::string& token) {
    messagingpb::MessagingCommand user;
    user.mutable_create_user()->set_user_id("bob");
    ASSERT_EQ(apply(user).code(), 0U);
    messagingpb::MessagingCommand device;
    device.mutable_create_device()->set_user_id("bob");
    device.mutable_create_device()->set_device_id("bob-phone");
    device.mutable_create_device()->set_platform("ios");
    device.mutable_create_device()->set_credential_sha256(
        std::string(messaging::kCredentialBytes, 'k'));
    ASSERT_EQ(apply(device).code(), 0U);
    messagingpb::MessagingCommand set;
    set.mutable_set_push_token()->set_user_id("bob");
    set.mutable_set_push_token()->set_device_id("bob-phone");
    set.mutable_set_push_token()->set_push_provider(messaging::kApnsProvider);
    set.mutable_set_push_token()->set_push_token(token);
    ASSERT_EQ(apply(set).code(), 0U);
  }

  // One attempt of a delivery run's push to bob's phone, through the domain's push handler.
  workflow::ActivityOutcome push_to_bob() {
    messagingpb::PushTask task;
    task.set_user_id("bob");
    task.add_device_ids("bob-phone");
    task.set_conversation_id("c1");
    task.set_seq(7);
    task.set_preview("lunch?");
    task.set_per_device(true);
    const workflow::ActivityTask t{delivery_id(),
                                   1,
                                   3,
                                   1,
                                   std::string(messaging::kPushActivity),
                                   task.SerializeAsString(),
                                   delivery_id() + "/1/3"};
    std::optional<workflow::ActivityOutcome> outcome;
    host_.handlers()
        .at(messaging::kPushActivity)
        ->run(
            t, [] {}, [&](workflow::ActivityOutcome o) { outcome = std::move(o); });
    EXPECT_TRUE(outcome.has_value()) << "the handler answers at once";
    return outcome.value_or(workflow::ActivityOutcome{});
  }

  Harness& h_;
  AnsweringPush push_;
  NoEmail email_;
  ManualClock clock_;
  messaging::Host host_;
  std::int64_t now_ms = kT0;
};

messagingpb::MessagingCommand invalidate_bob(const std::string& token) {
  messagingpb::MessagingCommand c;
  auto* op = c.mutable_invalidate_push_target();
  op->set_user_id("bob");
  op->set_device_id("bob-phone");
  op->set_push_provider(messaging::kApnsProvider);
  op->set_push_token(token);
  op->set_error_type(messaging::kPushInvalidToken);
  op->set_reason("400 BadDeviceToken");
  return c;
}

TEST(EmitterTest, APushProviderCallingATokenDeadStartsOnePushTokenInvalidatedDelivery) {
  Harness h;
  ASSERT_EQ(h.put_endpoint("tokens", {messaging::kEventPushTokenInvalidated}).code(), 0U);
  ASSERT_EQ(h.put_endpoint("sent", {messaging::kEventMessageSent}).code(), 0U);
  Messaging m(h, messaging::ProviderResult::failure(messaging::kPushUnregistered,
                                                    "APNs answered 410 Unregistered"));
  m.bob_with_token("tok-1");
  ASSERT_TRUE(h.webhook_runs().empty());

  m.now_ms = kT0 + 500;
  const workflow::ActivityOutcome outcome = m.push_to_bob();
  EXPECT_FALSE(outcome.ok);
  EXPECT_EQ(outcome.error_type, messaging::kPushUnregistered);
  EXPECT_EQ(m.push_.calls, 1);
  auto device = messaging::Domain::get_device(h.store_, "bob-phone");
  ASSERT_TRUE(device.ok() && device->has_value());
  EXPECT_TRUE((*device)->push_target_invalid()) << "the handler proposed InvalidatePushTarget";

  const auto runs = h.webhook_runs();
  ASSERT_EQ(runs.size(), 1U) << "one run, for the one subscribed endpoint";
  EXPECT_TRUE(runs[0].starts_with(webhook_message_prefix("", 0))) << runs[0];
  const webhookspb::WebhookDeliveryInput in = input_of(h, runs[0]);
  EXPECT_EQ(in.endpoint_id(), "tokens");
  EXPECT_EQ(in.event_type(), messaging::kEventPushTokenInvalidated);
  EXPECT_EQ(in.event_ms(), m.now_ms) << "stamped with the deciding command's time";
  const auto body = boost::json::parse(in.body()).as_object();
  EXPECT_EQ(std::string(body.at("id").as_string()), in.event_id());
  EXPECT_EQ(std::string(body.at("type").as_string()), messaging::kEventPushTokenInvalidated);
  EXPECT_EQ(body.at("created_ms").as_int64(), m.now_ms);
  const auto& data = body.at("data").as_object();
  EXPECT_EQ(std::string(data.at("user_id").as_string()), "bob");
  EXPECT_EQ(std::string(data.at("device_id").as_string()), "bob-phone");
  EXPECT_EQ(std::string(data.at("detail").as_string()), messaging::kPushUnregistered);
  EXPECT_FALSE(data.contains("conversation_id")) << "not an event about a message";

  // The target is marked: the next attempt pushes nothing and decides no second event.
  m.now_ms += 1'000;
  EXPECT_EQ(m.push_to_bob().error_type, messaging::kPushNoTarget);
  EXPECT_EQ(m.push_.calls, 1);
  EXPECT_EQ(h.webhook_runs(), runs);
}

TEST(EmitterTest, OnlyTheReportThatMarksTheCurrentTokenInvalidIsAnEvent) {
  Harness h;
  ASSERT_EQ(h.put_endpoint("all", {kAllEvents}).code(), 0U);
  Messaging m(h, messaging::ProviderResult::success());
  m.bob_with_token("tok-2");
  // A report about a token bob has since replaced changes nothing and decides nothing.
  ASSERT_EQ(m.apply(invalidate_bob("tok-1")).code(), 0U);
  EXPECT_TRUE(h.webhook_runs().empty());
  // The current token: the command that marks it starts the delivery in its own batch.
  m.now_ms = kT0 + 20;
  ASSERT_EQ(m.apply(invalidate_bob("tok-2")).code(), 0U);
  const auto runs = h.webhook_runs();
  ASSERT_EQ(runs.size(), 1U);
  const webhookspb::WebhookDeliveryInput in = input_of(h, runs[0]);
  EXPECT_EQ(in.event_type(), messaging::kEventPushTokenInvalidated);
  EXPECT_EQ(std::string(boost::json::parse(in.body()).at("data").at("detail").as_string()),
            messaging::kPushInvalidToken);
  // The same report again (a retransmission) is a no-op: still one delivery.
  m.now_ms = kT0 + 40;
  ASSERT_EQ(m.apply(invalidate_bob("tok-2")).code(), 0U);
  EXPECT_EQ(h.webhook_runs(), runs);
  // A report the domain refuses (an unknown device) writes nothing, deliveries included.
  messagingpb::MessagingCommand unknown = invalidate_bob("tok-2");
  unknown.mutable_invalidate_push_target()->set_device_id("nobody-phone");
  EXPECT_NE(m.apply(unknown).code(), 0U);
  EXPECT_EQ(h.webhook_runs(), runs);
}

// ---- saga.compensation_failed: decided by the report that fails a compensation ----
//
// No leader of a running node can make the read-sync saga's compensation fail (restoring a read
// marker only writes the device's own record, and is allowed under a disk alarm), so the event is
// driven here, on the deterministic engine, by the reports a leader would propose: the marker is
// set, the cursor refuses the read, and the marker's restore fails with a non-retryable error
// (the one every saga step gets, kUnknownActivityType: no leader has a handler for it).

std::string read_sync_id() {
  return messaging::read_sync_workflow_id("bob", "bob-phone", "c1", 7);
}

WorkflowCommand start_read_sync() {
  messagingpb::ReadSyncInput in;
  in.set_user_id("bob");
  in.set_device_id("bob-phone");
  in.set_conversation_id("c1");
  in.set_up_to_seq(7);
  WorkflowCommand c;
  c.mutable_start()->set_workflow_id(read_sync_id());
  c.mutable_start()->set_type(messaging::kReadSyncType);
  c.mutable_start()->set_input(in.SerializeAsString());
  return c;
}

// The report of the read-sync saga's dispatchable activity tagged `tag`: a success with `output`
// when error_type is empty, else a failure.
std::optional<WorkflowCommand> report_of(Harness& h, const std::string& tag,
                                         const std::string& error_type,
                                         const std::string& output = {}) {
  auto activities = workflow::Engine::dispatchable_activities(h.store_, 100);
  EXPECT_TRUE(activities.ok());
  if (!activities.ok()) return std::nullopt;
  for (const workflowpb::ActivityRecord& a : *activities) {
    if (a.workflow_id() != read_sync_id() || a.tag() != tag) continue;
    WorkflowCommand c;
    auto* r = c.mutable_report();
    r->set_workflow_id(a.workflow_id());
    r->set_run_id(a.run_id());
    r->set_activity_id(a.activity_id());
    r->set_attempt(a.attempt());
    r->set_ok(error_type.empty());
    r->set_output(output);
    r->set_error_type(error_type);
    r->set_error_message(error_type.empty() ? "" : "refused in this test");
    return c;
  }
  ADD_FAILURE() << "no dispatchable activity " << tag;
  return std::nullopt;
}

std::string state_of_read_sync(Harness& h) {
  auto rec = workflow::Engine::read_workflow(h.store_, read_sync_id());
  return rec.ok() && rec->has_value() ? (*rec)->state() : std::string();
}

TEST(EmitterTest, AReadSyncSagaWhoseCompensationFailsStartsACompensationFailedDelivery) {
  Harness h;
  ASSERT_EQ(h.put_endpoint("sagas", {messaging::kEventCompensationFailed}).code(), 0U);
  ASSERT_EQ(h.put_endpoint("reads", {messaging::kEventMessageRead}).code(), 0U);
  ASSERT_EQ(h.apply(start_read_sync(), kT0).code(), 0U);
  messagingpb::ReadMarkerResult marks;
  marks.set_previous(3);
  marks.set_marker(7);
  auto set = report_of(h, "action/0", "", marks.SerializeAsString());
  ASSERT_TRUE(set.has_value());
  ASSERT_EQ(h.apply(*set, kT0 + 10).code(), 0U);
  auto advance = report_of(h, "action/1", messaging::kReadBeyondLastSeq);
  ASSERT_TRUE(advance.has_value());
  ASSERT_EQ(h.apply(*advance, kT0 + 20).code(), 0U);
  EXPECT_EQ(state_of_read_sync(h), workflow::kSagaCompensating);
  EXPECT_TRUE(h.webhook_runs().empty()) << "a saga compensating is no event";

  auto restore = report_of(h, "compensation/0", workflow::kUnknownActivityType);
  ASSERT_TRUE(restore.has_value());
  ASSERT_EQ(h.apply(*restore, kT0 + 30).code(), 0U);
  ASSERT_EQ(state_of_read_sync(h), workflow::kSagaCompensationFailed);
  const auto runs = h.webhook_runs();
  ASSERT_EQ(runs.size(), 1U) << "one run, for the one subscribed endpoint";
  EXPECT_TRUE(runs[0].starts_with(webhook_message_prefix("", 0))) << runs[0];
  const webhookspb::WebhookDeliveryInput in = input_of(h, runs[0]);
  EXPECT_EQ(in.endpoint_id(), "sagas");
  EXPECT_EQ(in.event_type(), messaging::kEventCompensationFailed);
  EXPECT_EQ(in.event_ms(), kT0 + 30);
  const auto body = boost::json::parse(in.body()).as_object();
  EXPECT_EQ(std::string(body.at("id").as_string()), in.event_id());
  EXPECT_EQ(std::string(body.at("type").as_string()), messaging::kEventCompensationFailed);
  EXPECT_EQ(std::string(body.at("data").at("detail").as_string()),
            read_sync_id() + ": 0: " + workflow::kUnknownActivityType + ": refused in this test");

  // The operator retries; the compensation fails again later: a second occurrence, a second
  // event with an id of its own.
  WorkflowCommand retry;
  retry.mutable_signal()->set_workflow_id(read_sync_id());
  retry.mutable_signal()->set_name(workflow::kSagaRetrySignal);
  ASSERT_EQ(h.apply(retry, kT0 + 40).code(), 0U);
  EXPECT_EQ(h.webhook_runs(), runs) << "a retry is no event";
  auto again = report_of(h, "compensation/0", workflow::kUnknownActivityType);
  ASSERT_TRUE(again.has_value());
  ASSERT_EQ(h.apply(*again, kT0 + 50).code(), 0U);
  const auto after = h.webhook_runs();
  ASSERT_EQ(after.size(), 2U);
  std::set<std::string> ids;
  for (const auto& run : after) ids.insert(input_of(h, run).event_id());
  EXPECT_EQ(ids.size(), 2U);
}

TEST(EndpointsTest, PutReplacesDeleteRemovesAndBoundsHold) {
  Harness h;
  ASSERT_EQ(h.put_endpoint("a", {messaging::kEventMessageSent}, 5).code(), 0U);
  ASSERT_EQ(h.put_endpoint("a", {kAllEvents}, 9).code(), 0U);
  auto set = read_endpoints(h.store_);
  ASSERT_TRUE(set.ok());
  ASSERT_EQ(set->endpoints_size(), 1);
  EXPECT_EQ(set->endpoints(0).created_ms(), 5);
  EXPECT_EQ(set->endpoints(0).updated_ms(), 9);
  EXPECT_NE(h.put_endpoint("bad id", {kAllEvents}).code(), 0U);
  EXPECT_NE(h.put_endpoint("b", {"message.unknown"}).code(), 0U);
  webhookspb::WebhookCommand bad_url;
  bad_url.mutable_put()->set_endpoint_id("c");
  bad_url.mutable_put()->set_url("ftp://x");
  bad_url.mutable_put()->set_secret("k");
  bad_url.mutable_put()->add_events(kAllEvents);
  EXPECT_NE(h.apply_endpoints(bad_url, 1).code(), 0U);
  for (std::size_t i = 1; i < kMaxEndpoints; ++i) {
    ASSERT_EQ(h.put_endpoint("e" + std::to_string(i), {kAllEvents}).code(), 0U);
  }
  EXPECT_EQ(h.put_endpoint("one-too-many", {kAllEvents}).code(),
            static_cast<std::uint32_t>(Code::kResourceExhausted));
  webhookspb::WebhookCommand del;
  del.mutable_delete_()->set_endpoint_id("a");
  EXPECT_EQ(h.apply_endpoints(del, 1).code(), 0U);
  EXPECT_EQ(h.apply_endpoints(del, 1).code(), static_cast<std::uint32_t>(Code::kNotFound));
}

TEST(EndpointsTest, TheLastDeleteLeavesNothingStored) {
  Harness h;
  ASSERT_EQ(h.put_endpoint("a", {kAllEvents}).code(), 0U);
  webhookspb::WebhookCommand del;
  del.mutable_delete_()->set_endpoint_id("a");
  ASSERT_EQ(h.apply_endpoints(del, 1).code(), 0U);
  auto raw = h.store_.get(storage::Space::kState, endpoints_key());
  ASSERT_TRUE(raw.ok());
  EXPECT_FALSE(raw->has_value());
}

}  // namespace
}  // namespace herald::webhooks
