#include "webhooks/emitter.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <map>

#include "webhooks/test_harness.h"

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
