// End to end: webhooks (docs/webhooks.md) from real `herald serve` processes to a receiver this
// test runs on loopback (tests/e2e/webhook_receiver.h). The receiver fails, times out and
// recovers; every event must arrive with a valid signature, its id stable across attempts, and
// none may be lost when the leader is SIGKILLed with deliveries in flight (repeats of an id are
// allowed and counted).
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "client/admin_client.h"
#include "client/herald_client.h"
#include "tests/e2e/cluster.h"
#include "tests/e2e/devices.h"
#include "tests/e2e/webhook_receiver.h"

namespace herald::e2e {
namespace {

namespace json = boost::json;

constexpr std::uint32_t kStartupTimeoutMs = 15'000;
constexpr std::uint32_t kFailoverTimeoutMs = 10'000;
// The node's webhook client gives up on a request after this long ([webhooks] timeout_ms).
constexpr std::int64_t kWebhookTimeoutMs = 1'000;
// Retries back off 1 s, 2 s, 4 s... with full jitter: every event of these tests is through its
// third or fourth attempt well within this.
constexpr std::uint32_t kArrivalTimeoutMs = 45'000;
// The signing secret registered (used as given: not a "whsec_" secret).
constexpr char kSecret[] = "e2e-webhook-secret-0123456789";
constexpr char kConversation[] = "g-hooks";
constexpr std::size_t kMessages = 5;
constexpr std::size_t kFailoverMessages = 6;
constexpr std::int64_t kFailoverRequestTimeoutMs = 20'000;
// A timestamp this far from the test's clock is refused (the receiver's replay window).
constexpr std::int64_t kToleranceS = 300;

// An independent check of the Standard Webhooks signature: HMAC-SHA256 over
// "<id>.<timestamp>.<body>" with the secret's bytes, base64, as "v1,<base64>".
bool signature_valid(const WebhookRequest& r) {
  const std::string content = r.id + "." + r.timestamp + "." + r.body;
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), kSecret, static_cast<int>(std::string_view(kSecret).size()),
       reinterpret_cast<const unsigned char*>(content.data()), content.size(), mac, &mac_len);
  std::string b64(std::size_t{4} * ((std::size_t{mac_len} + 2) / 3), '\0');
  EVP_EncodeBlock(reinterpret_cast<unsigned char*>(b64.data()), mac, static_cast<int>(mac_len));
  const auto now_s = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
  const std::int64_t ts = std::stoll(r.timestamp.empty() ? "0" : r.timestamp);
  return r.signature == "v1," + b64 && ts > now_s - kToleranceS && ts < now_s + kToleranceS;
}

std::string endpoint_body(std::uint16_t port, const std::string& events) {
  return fmt::format(R"({{"url":"http://127.0.0.1:{}/hooks","events":{},"secret":"{}"}})", port,
                     events, kSecret);
}

// The message.sent events a receiver saw answered 2xx, by the seq in their body.
std::map<std::uint64_t, std::string> delivered_sends(const std::vector<WebhookRequest>& requests) {
  std::map<std::uint64_t, std::string> out;
  for (const auto& r : requests) {
    if (r.status < 200 || r.status >= 300 || r.event_type != "message.sent") continue;
    const json::value body = json::parse(r.body);
    out[static_cast<std::uint64_t>(body.at("data").at("seq").as_int64())] = r.id;
  }
  return out;
}

// Alice (connected to node `node`, returned), bob and the group of both.
std::unique_ptr<client::HeraldClient> alice_in_group(Cluster& cluster, std::uint64_t node) {
  const client::AdminClient admin = cluster.admin(node);
  must(admin.create_user("alice", "Alice"), "creating alice");
  must(admin.create_user("bob", "Bob"), "creating bob");
  const DeviceCredentials a_phone = must(provision_device(admin, "alice", "a-phone"), "a-phone");
  must(provision_device(admin, "bob", "b-phone"), "b-phone");
  must(admin.create_conversation({"alice", "group", {"bob"}, kConversation, "hooks"}), "group");
  return must(connect_device(cluster.node(node).client_port, a_phone), "connecting alice");
}

std::string config(std::int64_t timeout_ms = kWebhookTimeoutMs) {
  return fmt::format("[webhooks]\ntimeout_ms = {}\n", timeout_ms);
}

TEST(Webhooks, EndpointsAreRegisteredListedAndDeletedWithoutShowingTheSecret) {
  auto cluster = must(Cluster::create(1), "creating the cluster");
  must(cluster->start_all(), "starting the node");
  must(cluster->leader(kStartupTimeoutMs), "a leader");
  const client::AdminClient admin = cluster->admin(1);
  auto put =
      must(admin.request("PUT", "/v1/admin/webhooks/ep1", endpoint_body(9, R"(["*"])")), "PUT");
  EXPECT_EQ(put.status, 200) << put.body;
  auto generated =
      must(admin.request("PUT", "/v1/admin/webhooks/ep2",
                         R"({"url":"https://example.com/h","events":["message.read"]})"),
           "PUT without a secret");
  EXPECT_EQ(generated.status, 200) << generated.body;
  EXPECT_TRUE(
      std::string(json::parse(generated.body).at("secret").as_string()).starts_with("whsec_"));
  const std::string list = must(admin.get("/v1/admin/webhooks"), "GET");
  EXPECT_EQ(list.find(kSecret), std::string::npos) << "a GET shows no secret";
  EXPECT_EQ(json::parse(list).at("webhooks").as_array().size(), 2U);
  EXPECT_NE(list.find("secret_fingerprint"), std::string::npos);
  auto bad = must(admin.request("PUT", "/v1/admin/webhooks/ep3",
                                R"({"url":"ftp://x","events":["*"],"secret":"0123456789abcdef"})"),
                  "a bad URL");
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(must(admin.request("DELETE", "/v1/admin/webhooks/ep1"), "DELETE").status, 200);
  EXPECT_EQ(must(admin.request("GET", "/v1/admin/webhooks/ep1"), "GET one").status, 404);
  EXPECT_EQ(must(admin.request("DELETE", "/v1/admin/webhooks/ep1"), "DELETE again").status, 404);
}

// Each event's first two attempts are answered 500, its third hangs past the client's timeout,
// and the fourth is accepted.
TEST(Webhooks, AReceiverThatFailsTimesOutAndRecoversGetsEveryEventSigned) {
  std::mutex mu;
  std::map<std::string, int> seen;  // attempts per event id
  auto receiver = must(WebhookReceiver::start([&](const WebhookRequest& r) {
                         std::lock_guard lock(mu);
                         const int n = ++seen[r.id];
                         return n <= 2 ? 500 : n == 3 ? 0 : 204;
                       }),
                       "starting the receiver");
  auto cluster = must(Cluster::create(1), "creating the cluster");
  must(cluster->set_config(config()), "writing the configuration");
  must(cluster->start_all(), "starting the node");
  must(cluster->leader(kStartupTimeoutMs), "a leader");
  const client::AdminClient admin = cluster->admin(1);
  ASSERT_EQ(must(admin.request("PUT", "/v1/admin/webhooks/backend",
                               endpoint_body(receiver->port(), R"(["message.sent"])")),
                 "registering")
                .status,
            200);
  auto alice = alice_in_group(*cluster, 1);
  for (std::size_t i = 1; i <= kMessages; ++i) {
    must(alice->send(kConversation, fmt::format("m{}", i), fmt::format("hello {}", i)), "send");
  }
  // The hung attempts are released once the client has given up on them.
  std::atomic<bool> done{false};
  std::thread releaser([&] {
    while (!done) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2 * kWebhookTimeoutMs));
      receiver->release_hung();
    }
  });
  const bool all = eventually(
      [&] { return delivered_sends(receiver->requests()).size() == kMessages; }, kArrivalTimeoutMs);
  done = true;
  releaser.join();
  ASSERT_TRUE(all) << delivered_sends(receiver->requests()).size() << " of " << kMessages << "\n"
                   << cluster->log_tail(1);

  const auto requests = receiver->requests();
  std::map<std::string, std::vector<int>> by_id;
  for (const auto& r : requests) {
    EXPECT_TRUE(signature_valid(r)) << r.id << " " << r.signature;
    by_id[r.id].push_back(r.status);
    const json::value body = json::parse(r.body);
    EXPECT_EQ(std::string(body.at("id").as_string()), r.id) << "the body names the event id";
    EXPECT_EQ(std::string(body.at("type").as_string()), "message.sent");
  }
  EXPECT_EQ(by_id.size(), kMessages);
  for (const auto& [id, statuses] : by_id) {
    ASSERT_GE(statuses.size(), 4U) << id;
    EXPECT_EQ(statuses[0], 500);
    EXPECT_EQ(statuses[1], 500);
    EXPECT_EQ(statuses[2], 0) << "the third attempt hung";
    EXPECT_EQ(statuses[3], 204);
  }

  // The timeline of message 1 shows each attempt: two 500s, a transfer timeout, the success.
  const std::string timeline =
      must(admin.get(fmt::format("/v1/admin/conversations/{}/messages/1", kConversation)),
           "the timeline");
  const json::value parsed = json::parse(timeline);
  const json::array& hooks = parsed.at("webhooks").as_array();
  ASSERT_EQ(hooks.size(), 1U) << timeline;
  const json::object& hook = hooks[0].as_object();
  EXPECT_EQ(std::string(hook.at("status").as_string()), "completed");
  EXPECT_EQ(std::string(hook.at("endpoint").as_string()), "backend");
  const json::array& attempts = hook.at("attempts").as_array();
  ASSERT_EQ(attempts.size(), 4U) << timeline;
  EXPECT_EQ(attempts[0].at("status").as_int64(), 500);
  EXPECT_EQ(std::string(attempts[0].at("error_type").as_string()), "webhook.http_error");
  EXPECT_EQ(std::string(attempts[2].at("error_type").as_string()), "webhook.transfer_error");
  EXPECT_EQ(std::string(attempts[3].at("kind").as_string()), "activity_completed");
  EXPECT_EQ(attempts[3].at("status").as_int64(), 204);
}

TEST(Webhooks, AnEndpointGoneFailsTheDeliveryVisiblyInTheTimelineAndMetrics) {
  auto receiver = must(WebhookReceiver::start([](const WebhookRequest&) { return 410; }),
                       "starting the receiver");
  auto cluster = must(Cluster::create(1), "creating the cluster");
  must(cluster->set_config(config()), "writing the configuration");
  must(cluster->start_all(), "starting the node");
  must(cluster->leader(kStartupTimeoutMs), "a leader");
  const client::AdminClient admin = cluster->admin(1);
  ASSERT_EQ(must(admin.request("PUT", "/v1/admin/webhooks/gone",
                               endpoint_body(receiver->port(), R"(["*"])")),
                 "registering")
                .status,
            200);
  auto alice = alice_in_group(*cluster, 1);
  must(alice->send(kConversation, "m1", "hello"), "send");
  const std::string target = fmt::format("/v1/admin/conversations/{}/messages/1", kConversation);
  ASSERT_TRUE(eventually(
      [&] {
        auto t = admin.get(target);
        if (!t.ok()) return false;
        const json::value v = json::parse(*t);
        const json::array& hooks = v.at("webhooks").as_array();
        return !hooks.empty() && hooks[0].at("status") == "failed";
      },
      kArrivalTimeoutMs))
      << must(admin.get(target), "the timeline");
  const json::object hook =
      json::parse(must(admin.get(target), "the timeline")).at("webhooks").as_array()[0].as_object();
  EXPECT_EQ(std::string(hook.at("error_type").as_string()), "webhook.failed");
  EXPECT_EQ(hook.at("attempts").as_array().size(), 1U) << "410 is not retried";
  EXPECT_EQ(receiver->requests().size(), 1U);
  const std::string metrics = must(admin.get("/metrics"), "scraping");
  const std::string failed =
      R"(herald_workflow_transitions_total{type="webhook.delivery",state="failed"} )";
  const std::size_t at = metrics.find(failed);
  ASSERT_NE(at, std::string::npos) << metrics.substr(0, 4000);
  EXPECT_EQ(std::stod(metrics.substr(at + failed.size())), 1.0);
}

// The leader dies while every delivery waits for the receiver's answer; the next leader runs the
// attempts again with the same ids. Nothing is lost; repeats are counted.
TEST(WebhooksFailover, LeaderKillWithDeliveriesInFlightLosesNoEvent) {
  auto receiver = must(WebhookReceiver::start([](const WebhookRequest&) { return 0; }),
                       "starting the receiver");
  auto cluster = must(Cluster::create(3), "creating the cluster");
  // Long enough that every attempt still waits for its answer when the leader dies.
  must(cluster->set_config(config(kFailoverRequestTimeoutMs)), "writing the configuration");
  must(cluster->start_all(), "starting the nodes");
  const std::uint64_t leader = must(cluster->leader(kStartupTimeoutMs), "the first leader");
  const std::uint64_t follower = cluster->other_live_node(leader);
  const client::AdminClient admin = cluster->admin(follower);
  ASSERT_EQ(must(admin.request("PUT", "/v1/admin/webhooks/backend",
                               endpoint_body(receiver->port(), R"(["message.sent"])")),
                 "registering")
                .status,
            200);
  auto alice = alice_in_group(*cluster, follower);
  for (std::size_t i = 1; i <= kFailoverMessages; ++i) {
    must(alice->send(kConversation, fmt::format("m{}", i), fmt::format("hello {}", i)), "send");
  }
  ASSERT_TRUE(eventually([&] { return receiver->hung() >= kFailoverMessages; }, kArrivalTimeoutMs))
      << "only " << receiver->hung() << " deliveries reached the receiver before the kill";
  cluster->kill(leader);
  receiver->set_decide([](const WebhookRequest&) { return 200; });
  receiver->release_hung();
  const std::uint64_t next = must(cluster->leader(kFailoverTimeoutMs), "the next leader");
  ASSERT_NE(next, leader);
  ASSERT_TRUE(
      eventually([&] { return delivered_sends(receiver->requests()).size() == kFailoverMessages; },
                 kArrivalTimeoutMs))
      << delivered_sends(receiver->requests()).size() << " of " << kFailoverMessages << "\n"
      << cluster->log_tail(next);

  std::map<std::string, std::size_t> arrivals;
  for (const auto& r : receiver->requests()) {
    EXPECT_TRUE(signature_valid(r)) << r.id;
    ++arrivals[r.id];
  }
  EXPECT_EQ(arrivals.size(), kFailoverMessages) << "one id per event, across leaders";
  std::size_t repeated = 0;
  for (const auto& [id, n] : arrivals) repeated += n - 1;
  EXPECT_GE(repeated, kFailoverMessages) << "every in-flight delivery ran again";
  std::printf("leader %lu killed with %zu webhook deliveries in flight; %zu repeats by id\n",
              static_cast<unsigned long>(leader), kFailoverMessages, repeated);
}

}  // namespace
}  // namespace herald::e2e
