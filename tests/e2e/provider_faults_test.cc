// End to end through the real provider clients of one real `herald serve` process, with the
// protocol doubles this test process runs on loopback (push/apns_mock.h, push/fcm_mock.h,
// push/webpush_mock.h, email/smtp_sink.h) answering as the services do, and failing on cue:
//  - APNs answers 503, then 429 with Retry-After, then 200: the delivery timeline shows each
//    attempt, its reason and when the next one is due, the hint is honoured, every retry carries
//    the same apns-id, and the device is pushed once;
//  - one of a user's two offline devices keeps failing: only that device is pushed again;
//  - APNs down until its circuit breaker opens: FCM and the email escalation still deliver at
//    once, no request reaches APNs while the breaker is open, and once APNs recovers every held
//    push is delivered, each exactly once;
//  - APNs answers 410 Unregistered: the device's push target is marked invalid (admin API and the
//    user's change stream), it is not pushed again, and a new token clears the mark;
//  - an FCM push: the OAuth assertion the double verified (RS256) and the data message it got;
//  - a Web Push push: the double verified its VAPID header and decrypted its body with the
//    subscription's private key and auth secret.
// What is read back goes through the admin API's message timeline (docs/api-http.md).
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "client/admin_client.h"
#include "client/herald_client.h"
#include "crypto/base64url.h"
#include "crypto/test_keys.h"
#include "email/smtp_sink.h"
#include "push/apns_mock.h"
#include "push/fcm_mock.h"
#include "push/vapid.h"
#include "push/webpush_mock.h"
#include "tests/e2e/apns_double.h"
#include "tests/e2e/cluster.h"
#include "tests/e2e/devices.h"
#include "tests/e2e/one_node.h"

namespace herald::e2e {
namespace {

namespace json = boost::json;
using Steady = std::chrono::steady_clock;

// The shortest email delay a user may choose (messaging/domain.h, kMinEmailDelayMs).
constexpr std::int64_t kEmailDelayMs = 1'000;
// Bound on a push or an escalation email reaching its double after it is due, first attempt.
constexpr std::uint32_t kArrivalWaitMs = 8'000;
// Bound on a push that needs a few retries (1 s, 2 s... with full jitter, and a Retry-After).
constexpr std::uint32_t kRetriedArrivalWaitMs = 15'000;
// How long the test keeps watching for a duplicate after the last expected arrival: past the
// delivery workflow's retry backoff, so that a second send would have shown.
constexpr std::uint32_t kDuplicateWatchMs = 2'000;
// The APNs double's Retry-After on its 429, and in milliseconds.
constexpr std::int64_t kRetryAfterS = 3;
constexpr std::int64_t kRetryAfterMs = kRetryAfterS * 1'000;
// The push retry policy's first interval (messaging/delivery.cc, push_retry_policy: 1 s, full
// jitter): the first retry is due at most this long after the failure.
constexpr std::int64_t kFirstRetryCapMs = 1'000;
// What the node's durable timers (wall clock) and the test's arrival stamps (steady clock) may
// disagree by over a few seconds.
constexpr std::int64_t kClockSlackMs = 100;
// Failures of the pad in the two-device case before the double lets it through: below the
// breaker's threshold (push/guard.h, kBreakerFailureThreshold = 5).
constexpr std::size_t kPadFailures = 2;
// A push or an email counts as prompt when it arrives within this long of being due.
constexpr std::int64_t kPromptMs = 5'000;
// Bound on every held APNs push arriving once APNs recovers: the breaker's cooldown
// (kBreakerCooldownMs, 30 s), the half-open probe, then the retries' backoff.
constexpr std::uint32_t kBreakerRecoveryWaitMs = 75'000;
// After the breaker opened, requests admitted just before it may still be on their way.
constexpr std::uint32_t kInFlightSettleMs = 300;

constexpr int kServiceUnavailable = 503;
constexpr int kTooManyRequests = 429;
constexpr int kGone = 410;
constexpr int kOk = 200;

constexpr char kSmtpUser[] = "herald-e2e";
constexpr char kSmtpPassword[] = "e2e-smtp-password-Qw73";
constexpr char kFrom[] = "herald@e2e.example";
constexpr char kFcmProject[] = "herald-e2e";
constexpr char kFcmClientEmail[] = "pusher@herald-e2e.iam.gserviceaccount.com";
// The smallest RSA key the FCM client accepts (crypto::kMinRsaKeyBits).
constexpr int kFcmKeyBits = 2048;

// One field of a JSON object, or its type's empty value when absent or of another type.
std::string text_of(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string();
}
std::int64_t number_of(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr) return 0;
  if (v->is_int64()) return v->as_int64();
  if (v->is_uint64()) return static_cast<std::int64_t>(v->as_uint64());
  return 0;
}
bool flag_of(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v != nullptr && v->is_bool() && v->as_bool();
}
// The objects of array field `key` of `o` (none when absent).
std::vector<json::object> objects_of(const json::object& o, std::string_view key) {
  std::vector<json::object> out;
  const json::value* v = o.if_contains(key);
  if (v == nullptr || !v->is_array()) return out;
  for (const json::value& item : v->as_array()) {
    if (item.is_object()) out.push_back(item.as_object());
  }
  return out;
}

// The body of GET `target` as a JSON object; nullopt when it cannot be read.
std::optional<json::object> get_object(const client::AdminClient& admin,
                                       const std::string& target) {
  const Result<std::string> body = admin.get(target);
  if (!body.ok()) return std::nullopt;
  boost::system::error_code ec;
  json::value v = json::parse(*body, ec);
  if (ec || !v.is_object()) return std::nullopt;
  return std::move(v.as_object());
}

// `user_id`'s entry of the timeline of message (conversation_id, seq); nullopt when none.
std::optional<json::object> recipient_timeline(const client::AdminClient& admin,
                                               const std::string& conversation_id,
                                               std::uint64_t seq, const std::string& user_id) {
  const std::optional<json::object> timeline =
      get_object(admin, fmt::format("/v1/admin/conversations/{}/messages/{}",
                                    client::encode_path_segment(conversation_id), seq));
  if (!timeline) return std::nullopt;
  for (json::object& r : objects_of(*timeline, "recipients")) {
    if (text_of(r, "user_id") == user_id) return std::move(r);
  }
  return std::nullopt;
}

// One provider call of a push attempt, as the timeline's history lists it.
struct PushCall {
  std::string event_kind;  // activity_completed, activity_retry_scheduled or activity_failed
  std::int64_t attempt = 0;
  std::int64_t time_ms = 0;          // when the attempt's outcome was recorded
  std::int64_t next_attempt_ms = 0;  // when the next attempt is due; 0 when none
  std::string provider;
  std::string device_id;
  std::string status;
  std::string error_type;
  std::string reason;
  std::string provider_id;
  std::int64_t retry_after_ms = 0;
};

// Every call of every push attempt of `user_id`'s delivery of (conversation_id, seq) to
// `device_id`, in history order.
std::vector<PushCall> push_calls(const client::AdminClient& admin,
                                 const std::string& conversation_id, std::uint64_t seq,
                                 const std::string& user_id, const std::string& device_id) {
  std::vector<PushCall> out;
  const std::optional<json::object> r = recipient_timeline(admin, conversation_id, seq, user_id);
  if (!r) return out;
  for (const json::object& e : objects_of(*r, "history")) {
    if (text_of(e, "name") != "messaging.push") continue;
    for (const json::object& a : objects_of(e, "attempts")) {
      if (text_of(a, "device_id") != device_id) continue;
      out.push_back(PushCall{text_of(e, "kind"), number_of(e, "attempt"), number_of(e, "time_ms"),
                             number_of(e, "next_attempt_ms"), text_of(a, "provider"),
                             text_of(a, "device_id"), text_of(a, "status"),
                             text_of(a, "error_type"), text_of(a, "reason"),
                             text_of(a, "provider_id"), number_of(a, "retry_after_ms")});
    }
  }
  return out;
}

// Whether the timeline says `device_id`'s push of (conversation_id, seq) was accepted.
bool push_accepted(const client::AdminClient& admin, const std::string& conversation_id,
                   std::uint64_t seq, const std::string& user_id, const std::string& device_id) {
  const std::optional<json::object> r = recipient_timeline(admin, conversation_id, seq, user_id);
  if (!r) return false;
  for (const json::object& d : objects_of(*r, "devices")) {
    if (text_of(d, "device_id") == device_id) return flag_of(d, "push_accepted");
  }
  return false;
}

// `device_id`'s record as GET /v1/admin/users/{user_id} lists it; nullopt when absent.
std::optional<json::object> device_record(const client::AdminClient& admin,
                                          const std::string& user_id,
                                          const std::string& device_id) {
  const std::optional<json::object> user =
      get_object(admin, "/v1/admin/users/" + client::encode_path_segment(user_id));
  if (!user) return std::nullopt;
  for (json::object& d : objects_of(*user, "devices")) {
    if (text_of(d, "device_id") == device_id) return std::move(d);
  }
  return std::nullopt;
}

bool push_target_invalid(const client::AdminClient& admin, const std::string& user_id,
                         const std::string& device_id) {
  const std::optional<json::object> d = device_record(admin, user_id, device_id);
  return d && flag_of(*d, "push_target_invalid");
}

// The APNs double's requests for message `seq` to `token`, in arrival order.
std::vector<push::testing::ApnsMockRequest> apns_requests(const push::testing::ApnsMock& mock,
                                                          std::uint64_t seq,
                                                          const std::string& token) {
  std::vector<push::testing::ApnsMockRequest> out;
  for (push::testing::ApnsMockRequest& r : mock.requests()) {
    if (r.device_token == token && apns_payload_seq(r.body) == seq) out.push_back(std::move(r));
  }
  return out;
}

std::size_t answered_with(const std::vector<push::testing::ApnsMockRequest>& requests, int status) {
  return static_cast<std::size_t>(
      std::count_if(requests.begin(), requests.end(),
                    [&](const push::testing::ApnsMockRequest& r) { return r.status == status; }));
}

// A 64-digit APNs device token ending in `tag`'s digits.
std::string apns_token(unsigned tag) {
  return fmt::format("{:a>64}", fmt::format("{:x}", tag));
}

// When each request reached the APNs double, stamped on its I/O thread.
class Arrivals {
 public:
  std::function<void(const push::testing::ApnsMockRequest&)> recorder() {
    return [this](const push::testing::ApnsMockRequest& /*request*/) {
      const std::lock_guard lock(mu_);
      at_.push_back(Steady::now());
    };
  }
  [[nodiscard]] std::vector<Steady::time_point> times() const {
    const std::lock_guard lock(mu_);
    return at_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<Steady::time_point> at_;
};

std::int64_t ms_between(Steady::time_point from, Steady::time_point to) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(to - from).count();
}

// An offline device: created through the admin API, never connected, with a push token.
struct OfflineDevice {
  std::string user_id;
  std::string device_id;
  std::string platform;  // "ios", "android", "web"
  std::string provider;  // "apns", "fcm", "webpush"
  std::string token;
};

class ProviderFaults : public OneNodeTest {
 protected:
  void TearDown() override {
    OneNodeTest::TearDown();
    for (const std::string& file : files_) std::remove(file.c_str());
  }

  // A private file (tests/e2e/apns_double.h) removed when the test ends.
  std::string scratch_file(const std::string& name, const std::string& bytes) {
    files_.push_back(private_file(name, bytes));
    return files_.back();
  }

  // Creates user alice and connects her phone.
  std::unique_ptr<client::HeraldClient> connected_alice() {
    must(admin_->create_user("alice", "Alice"), "creating alice");
    const DeviceCredentials phone = must(provision_device(*admin_, "alice", "a-phone"), "a-phone");
    return must(connect_device(port(), phone), "connecting a-phone");
  }

  // Creates each device (its user must exist) and registers its push token.
  void add_offline(const std::vector<OfflineDevice>& devices) {
    for (const OfflineDevice& d : devices) {
      must(admin_->create_device(d.user_id, d.device_id, d.platform), "an offline device");
      must(admin_->set_push_token(d.user_id, d.device_id, d.provider, d.token), "a push token");
    }
  }

  // The direct conversation of alice and `user_id`.
  std::string direct_with(const std::string& user_id) {
    return must(admin_->create_conversation({"alice", "direct", {user_id}, "", ""}),
                "a direct conversation")
        .conversation_id;
  }

  void set_email_fallback(const std::string& user_id) {
    const client::HttpReply reply =
        must(admin_->request(
                 "PUT", "/v1/admin/users/" + user_id + "/preferences",
                 fmt::format(R"({{"email_fallback": true, "email_delay_ms": {}}})", kEmailDelayMs)),
             "email fallback");
    ASSERT_EQ(reply.status / 100, 2) << reply.body;
  }

  [[nodiscard]] std::string whole_log() const { return cluster_->log_tail(1, 1U << 24U); }

  // An SMTP sink requiring STARTTLS and AUTH, and the [smtp] table that reaches it.
  std::pair<std::unique_ptr<email::testing::SmtpSink>, std::string> smtp_double() {
    email::testing::SmtpSinkOptions options;
    options.username = kSmtpUser;
    options.password = kSmtpPassword;
    auto sink = must(email::testing::SmtpSink::start(options), "starting the SMTP sink");
    const std::string password_file =
        scratch_file("faults-smtp-password", std::string(kSmtpPassword) + "\n");
    std::string toml = fmt::format(
        "[smtp]\nurl = \"smtp://127.0.0.1:{}\"\ntls = \"starttls\"\nusername = \"{}\"\n"
        "password_file = \"{}\"\nfrom = \"{}\"\nca_file = \"{}\"\n",
        sink->port(), kSmtpUser, password_file, kFrom, sink->ca_file());
    return {std::move(sink), std::move(toml)};
  }

  // An FCM double verifying assertions signed by a fresh RSA key, and the [fcm] table (with the
  // service-account file holding that key) that reaches it.
  std::pair<std::unique_ptr<push::testing::FcmMock>, std::string> fcm_double(const Clock& clock) {
    const std::string key_pem = crypto::testing::rsa_private_pem(kFcmKeyBits);
    push::testing::FcmMockOptions options;
    options.project_id = kFcmProject;
    options.client_email = kFcmClientEmail;
    options.service_account_public_pem = crypto::testing::public_pem_of(key_pem);
    auto mock = must(push::testing::FcmMock::start(std::move(options), clock), "the FCM mock");
    const json::object account{{"type", "service_account"},
                               {"project_id", kFcmProject},
                               {"private_key", key_pem},
                               {"client_email", kFcmClientEmail},
                               {"token_uri", mock->token_uri()}};
    const std::string account_file =
        scratch_file("faults-fcm-service-account.json", json::serialize(account));
    std::string toml = fmt::format(
        "[fcm]\nservice_account_file = \"{}\"\nendpoint = \"https://127.0.0.1:{}\"\n"
        "ca_file = \"{}\"\n",
        account_file, mock->port(), mock->ca_file());
    return {std::move(mock), std::move(toml)};
  }

 private:
  std::vector<std::string> files_;
};

TEST_F(ProviderFaults, ApnsRetriesHonourRetryAfterWithOneApnsIdAndOneSuccessfulPush) {
  SystemClock clock;
  Arrivals arrivals;  // outlives the double, whose I/O thread stamps it
  const ApnsDouble apns(clock, "faults-retry-apns.p8", arrivals.recorder());
  push::testing::ApnsMock* mock = apns.mock.get();
  mock->fail_next(1, kServiceUnavailable, "ServiceUnavailable");
  mock->fail_next(1, kTooManyRequests, "TooManyRequests", kRetryAfterS);
  start_node(apns.toml());

  auto alice = connected_alice();
  must(admin_->create_user("bob", "Bob"), "creating bob");
  const std::string token = apns_token(1);
  add_offline({{"bob", "b-phone", "ios", "apns", token}});
  const std::string direct = direct_with("bob");
  must(alice->send(direct, "m1", "third time lucky"), "sending");

  ASSERT_TRUE(eventually([&] { return push_accepted(*admin_, direct, 1, "bob", "b-phone"); },
                         kRetriedArrivalWaitMs))
      << "the push was not accepted after its retries";
  std::this_thread::sleep_for(std::chrono::milliseconds(kDuplicateWatchMs));

  // The double saw three requests: 503, 429, 200, one notification throughout.
  const std::vector<push::testing::ApnsMockRequest> requests = mock->requests();
  ASSERT_EQ(requests.size(), 3U);
  const std::vector<int> statuses = {kServiceUnavailable, kTooManyRequests, kOk};
  for (std::size_t i = 0; i < requests.size(); ++i) {
    const push::testing::ApnsMockRequest& r = requests[i];
    EXPECT_EQ(r.check_failed, "") << "request " << i;
    EXPECT_EQ(r.status, statuses[i]) << "request " << i;
    EXPECT_EQ(r.device_token, token);
    EXPECT_EQ(apns_payload_seq(r.body), 1U) << r.body;
    EXPECT_EQ(r.headers.at("apns-id"), requests[0].headers.at("apns-id")) << "request " << i;
    EXPECT_EQ(r.headers.at("apns-collapse-id"), requests[0].headers.at("apns-collapse-id"));
  }
  const std::vector<Steady::time_point> at = arrivals.times();
  ASSERT_EQ(at.size(), 3U);
  EXPECT_GE(ms_between(at[1], at[2]), kRetryAfterMs - kClockSlackMs)
      << "the retry after the 429 did not wait its Retry-After";

  // The timeline: two retries scheduled with their reasons and due times, then the success.
  const std::vector<PushCall> calls = push_calls(*admin_, direct, 1, "bob", "b-phone");
  ASSERT_EQ(calls.size(), 3U);
  const PushCall& first = calls[0];
  EXPECT_EQ(first.event_kind, "activity_retry_scheduled");
  EXPECT_EQ(first.attempt, 1);
  EXPECT_EQ(first.provider, "apns");
  EXPECT_EQ(first.status, "failed");
  EXPECT_EQ(first.error_type, "push.unavailable");
  EXPECT_NE(first.reason.find("503 ServiceUnavailable"), std::string::npos) << first.reason;
  EXPECT_GE(first.next_attempt_ms, first.time_ms);
  EXPECT_LE(first.next_attempt_ms - first.time_ms, kFirstRetryCapMs);
  const PushCall& second = calls[1];
  EXPECT_EQ(second.event_kind, "activity_retry_scheduled");
  EXPECT_EQ(second.attempt, 2);
  EXPECT_EQ(second.status, "failed");
  EXPECT_EQ(second.error_type, "push.unavailable");
  EXPECT_NE(second.reason.find("429 TooManyRequests"), std::string::npos) << second.reason;
  EXPECT_EQ(second.retry_after_ms, kRetryAfterMs);
  EXPECT_GE(second.next_attempt_ms - second.time_ms, kRetryAfterMs)
      << "the next attempt was scheduled before the Retry-After";
  const PushCall& third = calls[2];
  EXPECT_EQ(third.event_kind, "activity_completed");
  EXPECT_EQ(third.attempt, 3);
  EXPECT_EQ(third.error_type, "");
  EXPECT_EQ(third.provider_id, requests[2].headers.at("apns-id"));
  EXPECT_GE(third.time_ms, second.next_attempt_ms);
}

TEST_F(ProviderFaults, OfTwoOfflineDevicesOnlyTheFailingOneIsPushedAgain) {
  SystemClock clock;
  const ApnsDouble apns(clock, "faults-two-apns.p8");
  push::testing::ApnsMock* mock = apns.mock.get();
  const std::string phone_token = apns_token(1);
  const std::string pad_token = apns_token(2);
  mock->answer_token(pad_token, kServiceUnavailable, "ServiceUnavailable");
  start_node(apns.toml());

  auto alice = connected_alice();
  must(admin_->create_user("bob", "Bob"), "creating bob");
  add_offline(
      {{"bob", "b-phone", "ios", "apns", phone_token}, {"bob", "b-pad", "ios", "apns", pad_token}});
  const std::string direct = direct_with("bob");
  must(alice->send(direct, "m1", "on both screens"), "sending");

  ASSERT_TRUE(eventually([&] { return apns_requests(*mock, 1, pad_token).size() >= kPadFailures; },
                         kRetriedArrivalWaitMs))
      << "the pad was not retried";
  mock->answer_token(pad_token, kOk, "");  // the pad's service recovers
  ASSERT_TRUE(eventually(
      [&] {
        return push_accepted(*admin_, direct, 1, "bob", "b-pad") &&
               push_accepted(*admin_, direct, 1, "bob", "b-phone");
      },
      kRetriedArrivalWaitMs))
      << "the two devices were not both pushed";
  std::this_thread::sleep_for(std::chrono::milliseconds(kDuplicateWatchMs));

  const std::vector<push::testing::ApnsMockRequest> phone = apns_requests(*mock, 1, phone_token);
  const std::vector<push::testing::ApnsMockRequest> pad = apns_requests(*mock, 1, pad_token);
  ASSERT_EQ(phone.size(), 1U) << "the device whose push succeeded was pushed again";
  EXPECT_EQ(phone[0].status, kOk);
  EXPECT_EQ(mock->request_count(), phone.size() + pad.size());
  ASSERT_GE(pad.size(), kPadFailures + 1);
  EXPECT_EQ(answered_with(pad, kOk), 1U);
  EXPECT_EQ(pad.back().status, kOk) << "the pad was pushed again after its success";
  for (const push::testing::ApnsMockRequest& r : pad) {
    EXPECT_EQ(r.check_failed, "");
    EXPECT_EQ(r.headers.at("apns-id"), pad[0].headers.at("apns-id"));
  }
  EXPECT_NE(pad[0].headers.at("apns-id"), phone[0].headers.at("apns-id"))
      << "two devices' pushes carry one apns-id";

  const std::vector<PushCall> phone_calls = push_calls(*admin_, direct, 1, "bob", "b-phone");
  ASSERT_EQ(phone_calls.size(), 1U);
  EXPECT_EQ(phone_calls[0].event_kind, "activity_completed");
  const std::vector<PushCall> pad_calls = push_calls(*admin_, direct, 1, "bob", "b-pad");
  ASSERT_EQ(pad_calls.size(), pad.size());
  for (std::size_t i = 0; i + 1 < pad_calls.size(); ++i) {
    EXPECT_EQ(pad_calls[i].event_kind, "activity_retry_scheduled") << "attempt " << i + 1;
    EXPECT_EQ(pad_calls[i].error_type, "push.unavailable");
  }
  EXPECT_EQ(pad_calls.back().event_kind, "activity_completed");
}

// ---- Breaker isolation ----

constexpr char kIsolationGroup[] = "g-isolation";
constexpr char kErinEmail[] = "erin@example.com";

// The FCM double's accepted messages of `seq`.
std::size_t fcm_messages_of(const push::testing::FcmMock& mock, std::uint64_t seq) {
  const std::vector<push::testing::FcmMockMessage> messages = mock.messages();
  return static_cast<std::size_t>(
      std::count_if(messages.begin(), messages.end(), [&](const push::testing::FcmMockMessage& m) {
        const auto it = m.data.find("seq");
        return it != m.data.end() && it->second == std::to_string(seq);
      }));
}

// Whether every device's push of message `seq` has an attempt the open APNs breaker refused.
bool refused_by_breaker(const client::AdminClient& admin, std::uint64_t seq,
                        const std::vector<OfflineDevice>& devices) {
  return std::all_of(devices.begin(), devices.end(), [&](const OfflineDevice& d) {
    const std::vector<PushCall> calls =
        push_calls(admin, kIsolationGroup, seq, d.user_id, d.device_id);
    return std::any_of(calls.begin(), calls.end(), [](const PushCall& c) {
      return c.reason.find("circuit open") != std::string::npos;
    });
  });
}

// Each device got message `seq` accepted exactly once, every request of it with one apns-id, and
// the timeline records it as pushed.
void expect_pushed_once(const client::AdminClient& admin, const push::testing::ApnsMock& mock,
                        std::uint64_t seq, const std::vector<OfflineDevice>& devices) {
  for (const OfflineDevice& d : devices) {
    const std::vector<push::testing::ApnsMockRequest> sent = apns_requests(mock, seq, d.token);
    EXPECT_EQ(answered_with(sent, kOk), 1U) << "seq " << seq << " to " << d.device_id;
    for (const push::testing::ApnsMockRequest& r : sent) {
      EXPECT_EQ(r.check_failed, "");
      EXPECT_EQ(r.headers.at("apns-id"), sent.front().headers.at("apns-id"));
    }
    EXPECT_TRUE(eventually(
        [&] { return push_accepted(admin, kIsolationGroup, seq, d.user_id, d.device_id); },
        kChangeWaitMs))
        << "seq " << seq << " to " << d.device_id << " is not recorded as pushed";
  }
}

TEST_F(ProviderFaults, ApnsBreakerOpenLeavesFcmAndEmailPromptAndRecoveryDeliversEveryHeldPush) {
  SystemClock clock;
  const ApnsDouble apns(clock, "faults-isolation-apns.p8");
  push::testing::ApnsMock* mock = apns.mock.get();
  const auto fcm_setup = fcm_double(clock);
  push::testing::FcmMock* fcm = fcm_setup.first.get();
  const auto smtp_setup = smtp_double();
  email::testing::SmtpSink* sink = smtp_setup.first.get();
  // Five APNs devices: their first attempts alone open the breaker (kBreakerFailureThreshold).
  std::vector<OfflineDevice> apple;
  for (const char* id : {"b-phone", "b-pad", "b-watch"}) {
    apple.push_back({"bob", id, "ios", "apns", apns_token(static_cast<unsigned>(apple.size()))});
  }
  for (const char* id : {"d-phone", "d-pad"}) {
    apple.push_back({"dan", id, "ios", "apns", apns_token(static_cast<unsigned>(apple.size()))});
  }
  for (const OfflineDevice& d : apple) {
    mock->answer_token(d.token, kServiceUnavailable, "ServiceUnavailable");
  }
  start_node(apns.toml() + fcm_setup.second + smtp_setup.second);

  auto alice = connected_alice();
  for (const char* user : {"bob", "carol", "dan"}) {
    must(admin_->create_user(user, user), "creating a recipient");
  }
  must(admin_->create_user("erin", "Erin", kErinEmail), "creating erin");
  set_email_fallback("erin");
  add_offline(apple);
  const std::string carol_token = "carol-fcm:APA91b-e2e";
  add_offline({{"carol", "c-phone", "android", "fcm", carol_token}});
  must(admin_->create_device("erin", "e-phone", "ios"), "erin's phone, without a token");
  must(admin_->create_conversation(
           {"alice", "group", {"bob", "carol", "dan", "erin"}, kIsolationGroup, "isolation"}),
       "the group");

  // APNs fails every push of message 1 until its breaker opens; FCM and email deliver it.
  must(alice->send(kIsolationGroup, "m1", "apns is down"), "sending m1");
  ASSERT_TRUE(eventually(
      [&] { return whole_log().find("apns: circuit open") != std::string::npos; }, kArrivalWaitMs))
      << "the APNs breaker did not open";
  ASSERT_TRUE(eventually(
      [&] { return fcm_messages_of(*fcm, 1) >= 1 && sink->message_count() >= 1; }, kArrivalWaitMs))
      << "message 1 did not reach FCM and the escalation email";
  std::this_thread::sleep_for(std::chrono::milliseconds(kInFlightSettleMs));
  const std::size_t apns_requests_at_open = mock->request_count();

  // While it is open, message 2 reaches FCM and the escalation email at once.
  const Steady::time_point sent = Steady::now();
  must(alice->send(kIsolationGroup, "m2", "android and email carry on"), "sending m2");
  ASSERT_TRUE(eventually([&] { return fcm_messages_of(*fcm, 2) >= 1; }, kArrivalWaitMs))
      << "FCM did not get message 2 while the APNs breaker was open";
  const std::int64_t fcm_ms = ms_between(sent, Steady::now());
  ASSERT_TRUE(eventually([&] { return sink->message_count() >= 2; }, kArrivalWaitMs))
      << "the escalation email of message 2 did not arrive";
  const std::int64_t email_ms = ms_between(sent, Steady::now());
  EXPECT_LE(fcm_ms, kPromptMs);
  EXPECT_LE(email_ms, kEmailDelayMs + kPromptMs);
  // Message 2's APNs pushes were refused by the open breaker, without reaching APNs.
  ASSERT_TRUE(eventually([&] { return refused_by_breaker(*admin_, 2, apple); }, kArrivalWaitMs))
      << "message 2's APNs pushes were not refused by the open breaker";
  EXPECT_EQ(mock->request_count(), apns_requests_at_open)
      << "requests reached APNs while its breaker was open";
  std::printf("with the APNs breaker open: FCM push after %lld ms, email after %lld ms\n",
              static_cast<long long>(fcm_ms), static_cast<long long>(email_ms));

  // APNs recovers: after the cooldown every held push of both messages goes out once.
  for (const OfflineDevice& d : apple) mock->answer_token(d.token, kOk, "");
  ASSERT_TRUE(eventually(
      [&] {
        for (const std::uint64_t seq : {1U, 2U}) {
          for (const OfflineDevice& d : apple) {
            if (answered_with(apns_requests(*mock, seq, d.token), kOk) == 0) return false;
          }
        }
        return true;
      },
      kBreakerRecoveryWaitMs))
      << "a held APNs push was not delivered after the recovery";
  std::this_thread::sleep_for(std::chrono::milliseconds(kDuplicateWatchMs));

  for (const std::uint64_t seq : {1U, 2U}) {
    expect_pushed_once(*admin_, *mock, seq, apple);
    EXPECT_EQ(fcm_messages_of(*fcm, seq), 1U) << "seq " << seq;
  }
  EXPECT_EQ(sink->message_count(), 2U);
  EXPECT_NE(whole_log().find("apns: circuit closed"), std::string::npos);
}

// ---- Token invalidation and re-registration ----

TEST_F(ProviderFaults, UnregisteredTokenStopsPushesUntilANewTokenIsRegistered) {
  SystemClock clock;
  const ApnsDouble apns(clock, "faults-gone-apns.p8");
  push::testing::ApnsMock* mock = apns.mock.get();
  const std::string old_token = apns_token(1);
  const std::string new_token = apns_token(2);
  mock->answer_token(old_token, kGone, "Unregistered");
  start_node(apns.toml());

  auto alice = connected_alice();
  must(admin_->create_user("bob", "Bob"), "creating bob");
  add_offline({{"bob", "b-phone", "ios", "apns", old_token}});
  // Bob's laptop has no push token; it connects only to read bob's change stream.
  const DeviceCredentials laptop = must(provision_device(*admin_, "bob", "b-laptop"), "b-laptop");
  const std::string direct = direct_with("bob");

  must(alice->send(direct, "m1", "anyone home?"), "sending m1");
  ASSERT_TRUE(
      eventually([&] { return push_target_invalid(*admin_, "bob", "b-phone"); }, kArrivalWaitMs))
      << "the 410 did not mark the push target invalid";
  const std::optional<json::object> record = device_record(*admin_, "bob", "b-phone");
  ASSERT_TRUE(record.has_value());
  const json::object& marked = record.value();
  EXPECT_EQ(text_of(marked, "push_invalid_error_type"), "push.unregistered");
  EXPECT_NE(text_of(marked, "push_invalid_reason").find("410 Unregistered"), std::string::npos)
      << json::serialize(marked);
  EXPECT_GT(number_of(marked, "push_invalid_ms"), 0);
  const std::vector<PushCall> m1 = push_calls(*admin_, direct, 1, "bob", "b-phone");
  ASSERT_EQ(m1.size(), 1U) << "a push answered 410 was retried";
  EXPECT_EQ(m1[0].event_kind, "activity_failed");
  EXPECT_EQ(m1[0].error_type, "push.unregistered");
  {
    auto reader = must(connect_device(port(), laptop, 0), "connecting b-laptop");
    const client::Change change =
        must(wait_for_change(*reader,
                             [](const client::Change& c) {
                               return c.kind == "push_target_invalid" && c.device_id == "b-phone";
                             }),
             "the push_target_invalid change");
    EXPECT_EQ(change.title, "push.unregistered");
  }  // the laptop goes offline again, so that bob's next messages are pushed

  must(alice->send(direct, "m2", "still there?"), "sending m2");
  ASSERT_TRUE(eventually([&] { return !push_calls(*admin_, direct, 2, "bob", "b-phone").empty(); },
                         kArrivalWaitMs))
      << "message 2's push attempt did not run";
  const std::vector<PushCall> m2 = push_calls(*admin_, direct, 2, "bob", "b-phone");
  ASSERT_FALSE(m2.empty());
  EXPECT_EQ(m2[0].error_type, "push.no_target");
  EXPECT_NE(m2[0].reason.find("invalid"), std::string::npos) << m2[0].reason;
  EXPECT_EQ(mock->request_count(), 1U) << "the invalid token was pushed again";

  must(admin_->set_push_token("bob", "b-phone", "apns", new_token), "the new token");
  EXPECT_FALSE(push_target_invalid(*admin_, "bob", "b-phone"))
      << "registering a new token did not clear the mark";
  must(alice->send(direct, "m3", "welcome back"), "sending m3");
  ASSERT_TRUE(eventually([&] { return push_accepted(*admin_, direct, 3, "bob", "b-phone"); },
                         kArrivalWaitMs))
      << "message 3 was not pushed to the new token";
  std::this_thread::sleep_for(std::chrono::milliseconds(kDuplicateWatchMs));
  const std::vector<push::testing::ApnsMockRequest> to_new = apns_requests(*mock, 3, new_token);
  ASSERT_EQ(to_new.size(), 1U);
  EXPECT_EQ(to_new[0].status, kOk);
  EXPECT_EQ(to_new[0].check_failed, "");
  EXPECT_EQ(mock->request_count(), 2U) << "the old token was pushed, or a push repeated";
}

// ---- FCM through a node ----

TEST_F(ProviderFaults, FcmPushCarriesAVerifiedRs256AssertionAndTheDataMessage) {
  SystemClock clock;
  const auto fcm_setup = fcm_double(clock);
  push::testing::FcmMock* fcm = fcm_setup.first.get();
  start_node(fcm_setup.second);

  auto alice = connected_alice();
  must(admin_->create_user("carol", "Carol"), "creating carol");
  const std::string token = "carol-fcm:APA91b-e2e";
  add_offline({{"carol", "c-phone", "android", "fcm", token}});
  const std::string direct = direct_with("carol");
  must(alice->send(direct, "m1", "hello android"), "sending");

  ASSERT_TRUE(eventually([&] { return !fcm->messages().empty(); }, kArrivalWaitMs))
      << "no push reached the FCM mock";
  std::this_thread::sleep_for(std::chrono::milliseconds(kDuplicateWatchMs));

  const std::vector<push::testing::FcmMockMessage> messages = fcm->messages();
  ASSERT_EQ(messages.size(), 1U);
  const push::testing::FcmMockMessage& m = messages[0];
  EXPECT_EQ(m.device_token, token);
  EXPECT_EQ(m.data.at("conversation_id"), direct);
  EXPECT_EQ(m.data.at("seq"), "1");
  EXPECT_EQ(m.data.at("title"), "alice");
  EXPECT_EQ(m.data.at("body"), "hello android");
  EXPECT_FALSE(m.data.at("idempotency_key").empty());
  EXPECT_EQ(m.collapse_key, direct);
  EXPECT_EQ(m.ttl, "86400s");
  EXPECT_EQ(m.priority, "high");
  EXPECT_FALSE(m.has_notification) << "a data message only";

  std::vector<push::testing::FcmMockRequest> token_requests;
  std::vector<push::testing::FcmMockRequest> sends;
  for (const push::testing::FcmMockRequest& r : fcm->requests()) {
    (r.token_request ? token_requests : sends).push_back(r);
  }
  ASSERT_EQ(token_requests.size(), 1U) << "one access token serves the sends";
  const push::testing::FcmMockRequest& t = token_requests[0];
  EXPECT_EQ(t.check_failed, "") << "the mock refused the assertion";
  EXPECT_EQ(t.status, kOk);
  EXPECT_EQ(t.headers.at("content-type"), "application/x-www-form-urlencoded");
  const std::string header_b64 = t.credential.substr(0, t.credential.find('.'));
  const std::string header = must(crypto::base64url_decode(header_b64), "the assertion's header");
  EXPECT_NE(header.find(R"("alg":"RS256")"), std::string::npos) << header;
  ASSERT_EQ(sends.size(), 1U);
  const push::testing::FcmMockRequest& s = sends[0];
  EXPECT_EQ(s.check_failed, "");
  EXPECT_EQ(s.status, kOk);
  EXPECT_EQ(s.path, fmt::format("/v1/projects/{}/messages:send", kFcmProject));
  EXPECT_EQ(s.credential, m.access_token);
  EXPECT_FALSE(m.access_token.empty());

  const std::vector<PushCall> calls = push_calls(*admin_, direct, 1, "carol", "c-phone");
  ASSERT_EQ(calls.size(), 1U);
  EXPECT_EQ(calls[0].event_kind, "activity_completed");
  EXPECT_EQ(calls[0].provider, "fcm");
  EXPECT_EQ(calls[0].provider_id.rfind(fmt::format("projects/{}/messages/", kFcmProject), 0), 0U)
      << calls[0].provider_id;
  const std::string log = whole_log();
  EXPECT_NE(
      log.find(fmt::format("push: fcm notifications go to https://127.0.0.1:{}", fcm->port())),
      std::string::npos);
  EXPECT_EQ(log.find("PRIVATE KEY"), std::string::npos) << "key material was logged";
  EXPECT_EQ(log.find(m.access_token), std::string::npos) << "the access token was logged";
}

// ---- Web Push through a node ----

// app/serve_config.h, kWebPushAllowPrivateAddressesEnv: lets the node reach the double on
// 127.0.0.1 (a subscription's endpoint must otherwise resolve to a public address).
constexpr char kAllowPrivateAddressesEnv[] = "HERALD_WEBPUSH_ALLOW_PRIVATE_ADDRESSES";
constexpr char kVapidSubject[] = "mailto:ops@herald-e2e.example";
// The Web Push provider's TTL and topic length (push/webpush.h).
constexpr std::int64_t kWebPushTtlS = 86'400;
constexpr std::size_t kWebPushTopicChars = 32;
constexpr int kCreated = 201;

// Sets an environment variable for the node processes this scope starts; restores its absence.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) { ::setenv(name, value, 1); }
  ~ScopedEnv() { ::unsetenv(name_); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
};

TEST_F(ProviderFaults, WebPushBodyDecryptsWithTheSubscriptionKeysAndCarriesTheMessage) {
  SystemClock clock;
  const push::VapidKey vapid = must(push::VapidKey::generate(), "a VAPID key");
  push::testing::WebPushMockOptions options;
  options.vapid_public_key = vapid.public_key_b64url();
  auto mock = must(push::testing::WebPushMock::start(std::move(options), clock), "the mock");
  const push::testing::WebPushMockSubscription subscription =
      must(mock->subscribe(), "a browser's subscription");
  const std::string key_file =
      scratch_file("faults-vapid.pem", must(vapid.private_pem(), "the VAPID key's PEM"));
  {
    const ScopedEnv allow(kAllowPrivateAddressesEnv, "1");
    start_node(
        fmt::format("[webpush]\nvapid_key_file = \"{}\"\nsubject = \"{}\"\nca_file = \"{}\"\n",
                    key_file, kVapidSubject, mock->ca_file()));
  }

  auto alice = connected_alice();
  must(admin_->create_user("dave", "Dave"), "creating dave");
  add_offline({{"dave", "d-browser", "web", "webpush", subscription.token}});
  const std::string direct = direct_with("dave");
  must(alice->send(direct, "m1", "hello browser"), "sending");

  ASSERT_TRUE(eventually([&] { return !mock->messages().empty(); }, kArrivalWaitMs))
      << "no push reached the Web Push mock";
  std::this_thread::sleep_for(std::chrono::milliseconds(kDuplicateWatchMs));

  const std::vector<push::testing::WebPushMockMessage> messages = mock->messages();
  ASSERT_EQ(messages.size(), 1U);
  const push::testing::WebPushMockMessage& m = messages[0];
  EXPECT_EQ(m.subscription_id, subscription.id);
  EXPECT_EQ(m.ttl_s, kWebPushTtlS);
  EXPECT_EQ(m.urgency, "high");
  EXPECT_EQ(m.topic.size(), kWebPushTopicChars);
  EXPECT_EQ(m.vapid_audience, mock->origin());
  EXPECT_EQ(m.vapid_subject, kVapidSubject);
  boost::system::error_code ec;
  const json::value payload = json::parse(m.plaintext, ec);
  ASSERT_FALSE(ec) << m.plaintext;
  ASSERT_TRUE(payload.is_object()) << m.plaintext;
  const json::object& p = payload.as_object();
  EXPECT_EQ(text_of(p, "conversation_id"), direct);
  EXPECT_EQ(text_of(p, "seq"), "1");
  EXPECT_EQ(text_of(p, "title"), "alice");
  EXPECT_EQ(text_of(p, "body"), "hello browser");
  EXPECT_FALSE(text_of(p, "idempotency_key").empty()) << m.plaintext;

  const std::vector<push::testing::WebPushMockRequest> requests = mock->requests();
  ASSERT_EQ(requests.size(), 1U);
  const push::testing::WebPushMockRequest& r = requests[0];
  EXPECT_EQ(r.check_failed, "");
  EXPECT_EQ(r.status, kCreated);
  EXPECT_EQ(r.headers.at("content-encoding"), "aes128gcm");
  EXPECT_EQ(r.plaintext, m.plaintext);
  EXPECT_GT(r.body_bytes, m.plaintext.size()) << "the body is the plaintext encrypted";

  const std::vector<PushCall> calls = push_calls(*admin_, direct, 1, "dave", "d-browser");
  ASSERT_EQ(calls.size(), 1U);
  EXPECT_EQ(calls[0].event_kind, "activity_completed");
  EXPECT_EQ(calls[0].provider, "webpush");
  EXPECT_EQ(calls[0].provider_id.rfind(mock->origin() + "/message/", 0), 0U)
      << calls[0].provider_id;
  const std::string log = whole_log();
  EXPECT_NE(log.find(vapid.public_key_b64url()), std::string::npos)
      << "the start-up line names the applicationServerKey";
  EXPECT_NE(log.find("private addresses allowed"), std::string::npos);
  EXPECT_EQ(log.find("PRIVATE KEY"), std::string::npos) << "key material was logged";
}

}  // namespace
}  // namespace herald::e2e
