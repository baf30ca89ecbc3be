#include "messaging/host.h"

#include <gtest/gtest.h>

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "messaging/delivery.h"
#include "server/recording_provider.h"
#include "storage/mem_engine.h"

namespace herald::messaging {
namespace {

using messagingpb::MessagingCommand;
using workflow::ActivityOutcome;

constexpr std::int64_t kNowMs = 1'700'000'000'000;

// A push provider that answers each call with the test's function after `latency_ms` on the
// test's clock.
class ScriptedPush final : public PushProvider {
 public:
  using Fn = std::function<ProviderResult(const PushRequest&)>;
  ScriptedPush(ManualClock* clock, Fn fn) : clock_(clock), fn_(std::move(fn)) {}
  void send(const PushRequest& request, ProviderDone done) override {
    calls.push_back(request);
    clock_->advance_ms(latency_ms);
    done(fn_(request));
  }
  std::vector<PushRequest> calls;
  MonoMs latency_ms = 0;

 private:
  ManualClock* clock_;
  Fn fn_;
};

class HostTest : public ::testing::Test {
 protected:
  HostTest()
      : push_(&clock_, [this](const PushRequest& r) { return answer_(r); }),
        host_(
            &store_,
            [this](const rsmpb::Command& command, const rsm::ProposeCallback& done) {
              proposed_.push_back(command);
              done(apply(command));
            },
            [](const std::function<void()>& fn) { fn(); }, &push_, &email_, &clock_) {
    host_.bind_engine(&engine_);
    ok(user("bob"));
    ok(device("bob", "bob-phone"));
    ok(token("bob", "bob-phone", "tok-1"));
  }

  Result<rsmpb::CommandResult> apply(const rsmpb::Command& command) {
    rsm::ApplyBatch batch(&store_);
    rsmpb::CommandResult result = host_.domain()->apply(++index_, command, batch);
    EXPECT_TRUE(store_.write(batch.writes(), false).ok());
    return result;
  }

  void ok(const MessagingCommand& mc) {
    rsmpb::Command c;
    c.set_wall_ms(kNowMs);
    c.mutable_module()->set_name(kModuleName);
    c.mutable_module()->set_payload(mc.SerializeAsString());
    auto r = apply(c);
    ASSERT_TRUE(r.ok() && r->code() == 0) << (r.ok() ? r->message() : r.status().to_string());
  }

  static MessagingCommand user(const std::string& id) {
    MessagingCommand c;
    c.mutable_create_user()->set_user_id(id);
    return c;
  }
  static MessagingCommand device(const std::string& user, const std::string& id) {
    MessagingCommand c;
    c.mutable_create_device()->set_user_id(user);
    c.mutable_create_device()->set_device_id(id);
    c.mutable_create_device()->set_platform("ios");
    c.mutable_create_device()->set_credential_sha256(std::string(kCredentialBytes, 'k'));
    return c;
  }
  static MessagingCommand token(const std::string& user, const std::string& device,
                                const std::string& token) {
    MessagingCommand c;
    auto* t = c.mutable_set_push_token();
    t->set_user_id(user);
    t->set_device_id(device);
    t->set_push_provider(kApnsProvider);
    t->set_push_token(token);
    return c;
  }

  // Runs one attempt of a per-device push for `device_id` and returns its outcome.
  ActivityOutcome push(const std::string& device_id, std::uint32_t attempt = 1) {
    messagingpb::PushTask task;
    task.set_user_id("bob");
    task.add_device_ids(device_id);
    task.set_conversation_id("c1");
    task.set_seq(7);
    task.set_preview("lunch?");
    task.set_per_device(true);
    workflow::ActivityTask t{
        "delivery/c1/7/bob",    1, 3, attempt, std::string(kPushActivity), task.SerializeAsString(),
        "delivery/c1/7/bob/1/3"};
    std::optional<ActivityOutcome> outcome;
    host_.handlers()
        .at(kPushActivity)
        ->run(
            t, [] {}, [&](ActivityOutcome o) { outcome = std::move(o); });
    EXPECT_TRUE(outcome.has_value());
    return outcome.value_or(ActivityOutcome{});
  }

  static messagingpb::ProviderAttempt only_attempt(const ActivityOutcome& outcome) {
    messagingpb::ProviderAttempts details;
    EXPECT_TRUE(details.ParseFromString(outcome.details));
    EXPECT_EQ(details.attempts_size(), 1);
    return details.attempts_size() == 1 ? details.attempts(0) : messagingpb::ProviderAttempt();
  }

  messagingpb::DeviceRecord stored_device(const std::string& id) {
    auto d = Domain::get_device(store_, id);
    EXPECT_TRUE(d.ok() && d->has_value());
    return d.ok() && d->has_value() ? **d : messagingpb::DeviceRecord();
  }

  ManualClock clock_{1'000};
  std::function<ProviderResult(const PushRequest&)> answer_ = [](const PushRequest&) {
    return ProviderResult::success("apns-id-1");
  };
  storage::MemEngine store_;
  workflow::Registry registry_;
  workflow::Engine engine_{&registry_};
  ScriptedPush push_;
  server::RecordingEmailProvider email_;
  Host host_;
  raft::Index index_ = 0;
  std::vector<rsmpb::Command> proposed_;
};

TEST_F(HostTest, APerDeviceAttemptCarriesItsKeyAndAttemptAndReportsProviderIdAndLatency) {
  push_.latency_ms = 42;
  const ActivityOutcome outcome = push("bob-phone", 3);
  EXPECT_TRUE(outcome.ok);
  ASSERT_EQ(push_.calls.size(), 1U);
  EXPECT_EQ(push_.calls[0].idempotency_key, "delivery/c1/7/bob/1/3/bob-phone");
  EXPECT_EQ(push_.calls[0].attempt, 3U);
  EXPECT_EQ(push_.calls[0].token, "tok-1");
  const auto attempt = only_attempt(outcome);
  EXPECT_EQ(attempt.device_id(), "bob-phone");
  EXPECT_EQ(attempt.provider(), kApnsProvider);
  EXPECT_EQ(attempt.status(), "accepted");
  EXPECT_EQ(attempt.provider_id(), "apns-id-1");
  EXPECT_EQ(attempt.latency_ms(), 42);
}

TEST_F(HostTest, AProvidersRetryAfterIsCarriedIntoTheOutcome) {
  answer_ = [](const PushRequest&) {
    ProviderResult r = ProviderResult::failure(kPushUnavailable, "APNs answered 429");
    r.retry_after_ms = 30'000;
    return r;
  };
  const ActivityOutcome outcome = push("bob-phone");
  EXPECT_FALSE(outcome.ok);
  EXPECT_EQ(outcome.error_type, kPushUnavailable);
  EXPECT_EQ(outcome.retry_after_ms, 30'000U);
  EXPECT_EQ(only_attempt(outcome).retry_after_ms(), 30'000);
  EXPECT_EQ(only_attempt(outcome).reason(), "APNs answered 429");
}

TEST_F(HostTest, APermanentTokenErrorMarksTheTargetInvalidBeforeTheAttemptReports) {
  answer_ = [](const PushRequest&) {
    return ProviderResult::failure(kPushUnregistered, "APNs answered 410 Unregistered");
  };
  const ActivityOutcome outcome = push("bob-phone");
  EXPECT_EQ(outcome.error_type, kPushUnregistered);
  ASSERT_EQ(proposed_.size(), 1U);
  const auto device = stored_device("bob-phone");
  EXPECT_TRUE(device.push_target_invalid());
  EXPECT_EQ(device.push_invalid_error_type(), kPushUnregistered);
  EXPECT_EQ(device.push_invalid_reason(), "APNs answered 410 Unregistered");
}

TEST_F(HostTest, AnInvalidTargetIsNotPushedUntilANewTokenIsRegistered) {
  answer_ = [](const PushRequest&) {
    return ProviderResult::failure(kPushInvalidToken, "APNs answered 400 BadDeviceToken");
  };
  (void)push("bob-phone");
  ASSERT_EQ(push_.calls.size(), 1U);
  const ActivityOutcome skipped = push("bob-phone");
  EXPECT_EQ(push_.calls.size(), 1U);  // nothing dispatched
  EXPECT_EQ(skipped.error_type, kPushNoTarget);
  EXPECT_EQ(only_attempt(skipped).status(), "not_sent");

  ok(token("bob", "bob-phone", "tok-2"));
  answer_ = [](const PushRequest&) { return ProviderResult::success(); };
  EXPECT_TRUE(push("bob-phone").ok);
  ASSERT_EQ(push_.calls.size(), 2U);
  EXPECT_EQ(push_.calls[1].token, "tok-2");
}

TEST_F(HostTest, ADeviceWithoutATokenFailsItsPerDeviceTaskAsNoTarget) {
  ok(device("bob", "bob-laptop"));
  const ActivityOutcome outcome = push("bob-laptop");
  EXPECT_FALSE(outcome.ok);
  EXPECT_EQ(outcome.error_type, kPushNoTarget);
  EXPECT_TRUE(push_.calls.empty());
}

TEST_F(HostTest, APlatformWithoutAProviderIsRecordedAsNotSentAndNotRetried) {
  answer_ = [](const PushRequest& r) {
    return ProviderResult::failure(kPushNoProvider,
                                   "no provider configured for \"" + r.provider + "\"");
  };
  const ActivityOutcome outcome = push("bob-phone");
  EXPECT_EQ(outcome.error_type, kPushNoProvider);
  const auto attempt = only_attempt(outcome);
  EXPECT_EQ(attempt.status(), "not_sent");
  EXPECT_EQ(attempt.reason(), "no provider configured for \"apns\"");
  bool listed = false;
  const workflowpb::RetryPolicy policy = push_retry_policy();
  for (const auto& type : policy.non_retryable_error_types()) {
    listed = listed || type == kPushNoProvider;
  }
  EXPECT_TRUE(listed);
}

TEST_F(HostTest, APushARecordingProviderJournaledIsRecordedNeverAccepted) {
  server::RecordingPushProvider recorder(server::RecordingAnswer::kRecordOnly);
  answer_ = [&recorder](const PushRequest& r) {
    ProviderResult out;
    recorder.send(r, [&out](ProviderResult answer) { out = std::move(answer); });
    return out;
  };
  const ActivityOutcome outcome = push("bob-phone");
  EXPECT_FALSE(outcome.ok) << "a journaled push was not dispatched";
  EXPECT_EQ(outcome.error_type, kPushNoProvider);
  EXPECT_FALSE(outcome.not_dispatched) << "not a refusal to wait out: nothing will take it";
  const auto attempt = only_attempt(outcome);
  EXPECT_EQ(attempt.status(), "recorded");
  EXPECT_EQ(attempt.error_type(), kPushNoProvider);
  EXPECT_NE(attempt.reason().find("no provider configured"), std::string::npos) << attempt.reason();
  EXPECT_EQ(recorder.call_count(), 1U);
}

TEST_F(HostTest, AGuardsRefusalIsReportedAsNotDispatchedWithItsHint) {
  answer_ = [](const PushRequest&) {
    ProviderResult r =
        ProviderResult::failure(kPushUnavailable, "apns: circuit open for another 20000 ms");
    r.retry_after_ms = 20'000;
    r.refused = true;
    return r;
  };
  const ActivityOutcome outcome = push("bob-phone");
  EXPECT_FALSE(outcome.ok);
  EXPECT_EQ(outcome.error_type, kPushUnavailable);
  EXPECT_TRUE(outcome.not_dispatched);
  EXPECT_EQ(outcome.retry_after_ms, 20'000U);
  EXPECT_EQ(only_attempt(outcome).status(), "failed");
}

}  // namespace
}  // namespace herald::messaging
