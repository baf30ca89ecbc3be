#include "webhooks/delivery.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>

#include "webhooks/test_harness.h"
#include "workflow/runtime.h"

namespace herald::webhooks {
namespace {

using testing::Harness;
using workflowpb::WorkflowCommand;

constexpr std::int64_t kT0 = 1'000'000;
constexpr char kRunId[] = "webhook//0/evt_1/ep";

std::string input() {
  webhookspb::WebhookDeliveryInput in;
  in.set_endpoint_id("ep");
  in.set_event_id("evt_1");
  in.set_event_type("message.sent");
  in.set_body(R"({"id":"evt_1"})");
  return in.SerializeAsString();
}

WorkflowCommand start() {
  WorkflowCommand c;
  c.mutable_start()->set_workflow_id(kRunId);
  c.mutable_start()->set_type(kWebhookType);
  c.mutable_start()->set_input(input());
  return c;
}

WorkflowCommand report(const workflowpb::ActivityRecord& a, bool ok, std::string error_type = {},
                       std::uint64_t retry_after_ms = 0) {
  WorkflowCommand c;
  auto* r = c.mutable_report();
  r->set_workflow_id(a.workflow_id());
  r->set_run_id(a.run_id());
  r->set_activity_id(a.activity_id());
  r->set_attempt(a.attempt());
  r->set_ok(ok);
  if (ok) {
    r->set_output("204");
  } else {
    r->set_error_type(std::move(error_type));
    r->set_error_message("the endpoint answered 500");
    r->set_retry_after_ms(retry_after_ms);
  }
  r->set_details(R"({"endpoint":"ep","status":500})");
  return c;
}

workflowpb::ActivityRecord only_activity(Harness& h) {
  auto acts = workflow::Engine::dispatchable_activities(h.store_, 10);
  EXPECT_TRUE(acts.ok());
  EXPECT_EQ(acts->size(), 1U);
  return acts->empty() ? workflowpb::ActivityRecord() : acts->front();
}

// The ACTIVITY_RETRY timer of the run (there is one while the activity backs off).
std::optional<workflowpb::TimerRecord> retry_timer(Harness& h) {
  auto timers = workflow::Engine::due_timers(h.store_, INT64_MAX, 100);
  EXPECT_TRUE(timers.ok());
  for (const auto& t : *timers) {
    if (t.kind() == workflowpb::ACTIVITY_RETRY) return t;
  }
  return std::nullopt;
}

WorkflowCommand fire(const workflowpb::TimerRecord& t) {
  WorkflowCommand c;
  auto* f = c.mutable_fire_timer();
  f->set_workflow_id(t.workflow_id());
  f->set_run_id(t.run_id());
  f->set_timer_id(t.timer_id());
  f->set_due_ms(t.due_ms());
  return c;
}

std::vector<std::string> history(Harness& h) {
  auto events = workflow::Engine::read_history(h.store_, kRunId, 1, 0, 1000);
  EXPECT_TRUE(events.ok());
  std::vector<std::string> kinds;
  for (const auto& e : *events) kinds.push_back(e.kind());
  return kinds;
}

TEST(WebhookDeliveryTest, StartSchedulesOnePostWithTheWebhookPolicy) {
  Harness h;
  ASSERT_EQ(h.apply(start(), kT0).code(), 0U);
  const auto act = only_activity(h);
  EXPECT_EQ(act.activity_type(), kPostActivity);
  EXPECT_EQ(act.input(), input());
  EXPECT_EQ(act.options().retry().maximum_attempts(), kWebhookMaxAttempts);
  EXPECT_EQ(act.options().schedule_to_close_timeout_ms(), kWebhookDeadlineMs);
  EXPECT_EQ(act.idempotency_key(), std::string(kRunId) + "/1/1");
  auto rec = workflow::Engine::read_workflow(h.store_, kRunId);
  ASSERT_TRUE(rec.ok() && rec->has_value());
  EXPECT_EQ((*rec)->state(), kWebhookSending);
}

TEST(WebhookDeliveryTest, A2xxCompletesTheRunDelivered) {
  Harness h;
  ASSERT_EQ(h.apply(start(), kT0).code(), 0U);
  ASSERT_EQ(h.apply(report(only_activity(h), true), kT0 + 10).code(), 0U);
  auto rec = workflow::Engine::read_workflow(h.store_, kRunId);
  EXPECT_EQ((*rec)->status(), workflowpb::COMPLETED);
  EXPECT_EQ((*rec)->state(), kWebhookDelivered);
  EXPECT_EQ((*rec)->result(), "204");
  const auto kinds = history(h);
  EXPECT_NE(std::find(kinds.begin(), kinds.end(), kDeliveredRecord), kinds.end());
}

// Every failed attempt backs off by full jitter within the doubling bound, the same delays on
// every replica, until the attempts run out: the run then fails in its terminal state.
TEST(WebhookDeliveryTest, FailuresBackOffExponentiallyThenFailForGood) {
  Harness a;
  Harness b;  // a second replica applying the same commands
  std::int64_t now = kT0;
  ASSERT_EQ(a.apply(start(), now).code(), 0U);
  ASSERT_EQ(b.apply(start(), now).code(), 0U);
  for (std::uint32_t attempt = 1; attempt <= kWebhookMaxAttempts; ++attempt) {
    const auto act = only_activity(a);
    ASSERT_EQ(act.attempt(), attempt);
    now += 100;
    ASSERT_EQ(a.apply(report(act, false, kHttpError), now).code(), 0U);
    ASSERT_EQ(b.apply(report(act, false, kHttpError), now).code(), 0U);
    const auto timer = retry_timer(a);
    if (attempt == kWebhookMaxAttempts) {
      EXPECT_FALSE(timer.has_value());
      break;
    }
    ASSERT_TRUE(timer.has_value()) << attempt;
    const auto bound =
        std::min<std::uint64_t>(kWebhookRetryInitialMs << (attempt - 1), kWebhookRetryMaximumMs);
    EXPECT_GE(timer->due_ms(), now);
    EXPECT_LE(timer->due_ms(), now + static_cast<std::int64_t>(bound)) << attempt;
    EXPECT_EQ(retry_timer(b)->due_ms(), timer->due_ms()) << "replicas draw the same delay";
    now = timer->due_ms();
    ASSERT_EQ(a.apply(fire(*timer), now).code(), 0U);
    ASSERT_EQ(b.apply(fire(*timer), now).code(), 0U);
  }
  auto rec = workflow::Engine::read_workflow(a.store_, kRunId);
  EXPECT_EQ((*rec)->status(), workflowpb::FAILED);
  EXPECT_EQ((*rec)->state(), kWebhookFailedState);
  EXPECT_EQ((*rec)->error_type(), kWebhookFailed);
  const auto kinds = history(a);
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), "activity_retry_scheduled"),
            kWebhookMaxAttempts - 1);
  EXPECT_NE(std::find(kinds.begin(), kinds.end(), kFailedRecord), kinds.end());
  EXPECT_EQ(a.engine_.stats().transitions.at({kWebhookType, "failed"}), 1U);
}

TEST(WebhookDeliveryTest, GoneFailsAtTheFirstAttempt) {
  Harness h;
  ASSERT_EQ(h.apply(start(), kT0).code(), 0U);
  ASSERT_EQ(h.apply(report(only_activity(h), false, kEndpointGone), kT0 + 10).code(), 0U);
  auto rec = workflow::Engine::read_workflow(h.store_, kRunId);
  EXPECT_EQ((*rec)->status(), workflowpb::FAILED);
  EXPECT_FALSE(retry_timer(h).has_value());
}

TEST(WebhookDeliveryTest, ARetryAfterHoldsTheNextAttemptBack) {
  Harness h;
  ASSERT_EQ(h.apply(start(), kT0).code(), 0U);
  ASSERT_EQ(h.apply(report(only_activity(h), false, kHttpError, 5'000), kT0).code(), 0U);
  const auto timer = retry_timer(h);
  ASSERT_TRUE(timer.has_value());
  EXPECT_GE(timer->due_ms(), kT0 + 5'000);
}

TEST(WebhookDeliveryTest, AnInputThatDoesNotDecodeFailsTheRun) {
  Harness h;
  WorkflowCommand c = start();
  c.mutable_start()->set_input("\xff\xff");
  ASSERT_EQ(h.apply(c, kT0).code(), 0U);
  auto rec = workflow::Engine::read_workflow(h.store_, kRunId);
  EXPECT_EQ((*rec)->status(), workflowpb::FAILED);
  EXPECT_EQ((*rec)->error_type(), kWebhookCorruptInput);
}

}  // namespace
}  // namespace herald::webhooks
