// End to end: webhooks (docs/webhooks.md) from real `herald serve` processes to a receiver this
// test runs on loopback (tests/e2e/webhook_receiver.h). An endpoint subscribed to every event
// ("*") gets, for each message of a group, message.sent, message.delivered and message.read (the
// recipient acknowledges, then reads) and message.escalated (a member without devices whose email
// delay is a second), each under its documented id. The receiver fails, times out and recovers;
// every event must arrive with a valid signature, its id stable across attempts, and none may be
// lost when the leader is SIGKILLed with deliveries in flight (repeats of an id are allowed, with
// the same body, and counted). A push token the APNs double calls dead reaches the backend as
// push_token.invalidated. An HTTPS endpoint whose CA the node trusts through [webhooks] ca_file
// gets signed deliveries; one whose certificate the node does not trust gets none, and its
// delivery is retried until it is trusted.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>

#include "base/clock.h"
#include "client/admin_client.h"
#include "client/herald_client.h"
#include "crypto/test_keys.h"
#include "tests/e2e/apns_double.h"
#include "tests/e2e/cluster.h"
#include "tests/e2e/devices.h"
#include "tests/e2e/webhook_receiver.h"
#include "webhooks/curl_poster.h"

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
// The event types one message of the group below produces (docs/webhooks.md, "Events").
constexpr std::array<std::string_view, 4> kMessageEventTypes = {
    "message.sent", "message.delivered", "message.read", "message.escalated"};
// Every event of the failover test waits in the node's webhook client at the kill: at most
// kMaxConcurrentPosts requests are in flight at once.
constexpr std::size_t kFailoverMessages = 3;
static_assert(kFailoverMessages * kMessageEventTypes.size() <= webhooks::kMaxConcurrentPosts);
constexpr std::int64_t kFailoverRequestTimeoutMs = 20'000;
// Carol's email delay: the shortest a user may choose (messaging/domain.h, kMinEmailDelayMs). She
// has no device, so every message escalates for her this long after it is stored.
constexpr std::int64_t kEscalationDelayMs = 1'000;
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

std::string endpoint_body(std::uint16_t port, const std::string& events,
                          std::string_view scheme = "http") {
  return fmt::format(R"({{"url":"{}://127.0.0.1:{}/hooks","events":{},"secret":"{}"}})", scheme,
                     port, events, kSecret);
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

// ---- Every event of a message ----

// One event the receiver must get: its type, the message's seq and the user it is about (the
// recipient; empty for message.sent).
struct ExpectedEvent {
  std::string type;
  std::uint64_t seq = 0;
  std::string user_id;
};

// Hex digits of SHA-256 in an event id (docs/webhooks.md, "Ids").
constexpr std::size_t kEventIdHexDigits = 32;

// The documented event id: "evt_" and the first kEventIdHexDigits hex digits of
// SHA-256(type NUL key).
std::string documented_event_id(std::string_view type, const std::string& key) {
  std::string content(type);
  content.push_back('\0');
  content += key;
  std::array<unsigned char, SHA256_DIGEST_LENGTH> digest{};
  SHA256(reinterpret_cast<const unsigned char*>(content.data()), content.size(), digest.data());
  std::string id = "evt_";
  for (std::size_t i = 0; i < kEventIdHexDigits / 2; ++i) id += fmt::format("{:02x}", digest.at(i));
  return id;
}

// By id, the events messages 1..count of kConversation (sent by alice's phone) produce: sent;
// delivered to and read by bob (his phone acknowledges, then reads); escalated for carol.
std::map<std::string, ExpectedEvent> expected_message_events(std::size_t count) {
  std::map<std::string, ExpectedEvent> out;
  for (std::uint64_t seq = 1; seq <= count; ++seq) {
    for (const std::string_view type : kMessageEventTypes) {
      ExpectedEvent e{std::string(type), seq, ""};
      if (type == "message.delivered" || type == "message.read") e.user_id = "bob";
      if (type == "message.escalated") e.user_id = "carol";
      const std::string key = e.user_id.empty()
                                  ? fmt::format("{}/{}", kConversation, seq)
                                  : fmt::format("{}/{}/{}", kConversation, seq, e.user_id);
      out.emplace(documented_event_id(type, key), std::move(e));
    }
  }
  return out;
}

std::string string_at(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string("<absent>");
}

// Checks each request against `expected`: its id is one of them, its type and body describe that
// event, its signature verifies, and every attempt under one id carries the same body (a repeat
// is the same event, at least once).
void expect_requests_match(const std::vector<WebhookRequest>& requests,
                           const std::map<std::string, ExpectedEvent>& expected) {
  std::map<std::string, std::string> first_body;
  for (const WebhookRequest& r : requests) {
    const auto it = expected.find(r.id);
    if (it == expected.end()) {
      ADD_FAILURE() << "an event not expected: " << r.id << " " << r.body;
      continue;
    }
    const ExpectedEvent& e = it->second;
    EXPECT_TRUE(signature_valid(r)) << r.id << " " << r.signature;
    EXPECT_EQ(r.event_type, e.type) << r.id;
    EXPECT_EQ(first_body.emplace(r.id, r.body).first->second, r.body)
        << "a repeat of " << r.id << " carries another body";
    const json::object body = json::parse(r.body).as_object();
    EXPECT_EQ(string_at(body, "id"), r.id) << "the body names the event id";
    EXPECT_EQ(string_at(body, "type"), e.type);
    const json::object& data = body.at("data").as_object();
    EXPECT_EQ(string_at(data, "conversation_id"), kConversation) << r.body;
    EXPECT_EQ(data.at("seq").to_number<std::uint64_t>(), e.seq) << r.body;
    EXPECT_EQ(string_at(data, "sender_user_id"), "alice") << r.body;
    if (e.type == "message.sent") {
      EXPECT_EQ(string_at(data, "device_id"), "a-phone") << r.body;
      EXPECT_FALSE(data.contains("user_id")) << r.body;
    } else {
      EXPECT_EQ(string_at(data, "user_id"), e.user_id) << r.body;
      EXPECT_EQ(string_at(data, "device_id"), e.user_id == "bob" ? "b-phone" : "<absent>")
          << r.body;
    }
  }
}

// The ids of the requests answered 2xx.
std::set<std::string> accepted_ids(const std::vector<WebhookRequest>& requests) {
  std::set<std::string> out;
  for (const WebhookRequest& r : requests) {
    if (r.status >= 200 && r.status < 300) out.insert(r.id);
  }
  return out;
}

// The devices of the group every event comes from.
struct GroupDevices {
  std::unique_ptr<client::HeraldClient> alice;
  std::unique_ptr<client::HeraldClient> bob;
};

// Alice, bob and carol in kConversation: alice's and bob's phones connected to node `node`;
// carol has no device and an email delay of kEscalationDelayMs.
GroupDevices everyone_in_group(Cluster& cluster, std::uint64_t node) {
  const client::AdminClient admin = cluster.admin(node);
  must(admin.create_user("alice", "Alice"), "creating alice");
  must(admin.create_user("bob", "Bob"), "creating bob");
  must(admin.create_user("carol", "Carol"), "creating carol");
  const client::HttpReply preferences =
      must(admin.request("PUT", "/v1/admin/users/carol/preferences",
                         fmt::format(R"({{"email_delay_ms": {}}})", kEscalationDelayMs)),
           "carol's email delay");
  if (preferences.status / 100 != 2) {
    throw std::runtime_error("carol's email delay: " + preferences.body);
  }
  const DeviceCredentials a_phone = must(provision_device(admin, "alice", "a-phone"), "a-phone");
  const DeviceCredentials b_phone = must(provision_device(admin, "bob", "b-phone"), "b-phone");
  must(admin.create_conversation({"alice", "group", {"bob", "carol"}, kConversation, "hooks"}),
       "the group");
  const std::uint16_t port = cluster.node(node).client_port;
  return {must(connect_device(port, a_phone), "connecting alice"),
          must(connect_device(port, b_phone), "connecting bob")};
}

// Alice sends messages 1..count; bob's phone receives them and acknowledges them (each delivery
// is confirmed), then reads them.
void send_then_acknowledge_and_read(GroupDevices& group, const client::AdminClient& admin,
                                    std::size_t count) {
  for (std::size_t i = 1; i <= count; ++i) {
    must(group.alice->send(kConversation, fmt::format("m{}", i), fmt::format("hello {}", i)),
         "send");
  }
  must(wait_for_change(*group.bob,
                       [&](const client::Change& c) {
                         return c.kind == "message_new" && c.conversation_id == kConversation &&
                                c.seq == count;
                       }),
       "bob receiving the last message");
  must(group.bob->ack(kConversation, count), "bob acknowledging");
  const bool confirmed = eventually(
      [&] {
        for (std::uint64_t seq = 1; seq <= count; ++seq) {
          if (delivery_state(admin, kConversation, seq, "bob") != "delivery_confirmed") {
            return false;
          }
        }
        return true;
      },
      kChangeWaitMs);
  if (!confirmed) throw std::runtime_error("bob's deliveries were not confirmed");
  must(group.bob->read(kConversation, count), "bob reading");
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

// The [webhooks] table trusting the CAs in `ca_file` for https endpoints.
std::string config_trusting(const std::string& ca_file) {
  return fmt::format("{}ca_file = \"{}\"\n", config(), ca_file);
}

// Writes `pem` to `name` in the cluster's directory; returns the path.
std::string ca_file_in(const Cluster& cluster, const std::string& name, const std::string& pem) {
  std::string path = fmt::format("{}/{}", cluster.root(), name);
  std::ofstream(path, std::ios::binary) << pem;
  return path;
}

// Starts the one node of `cluster` with `toml` and registers `endpoint` as "backend".
void start_with_endpoint(Cluster& cluster, const std::string& toml, const std::string& endpoint) {
  must(cluster.set_config(toml), "writing the configuration");
  must(cluster.start_all(), "starting the node");
  must(cluster.leader(kStartupTimeoutMs), "a leader");
  const client::HttpReply put =
      must(cluster.admin(1).request("PUT", "/v1/admin/webhooks/backend", endpoint), "registering");
  ASSERT_EQ(put.status, 200U) << put.body;
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
// and the fourth is accepted. The endpoint takes every event: each message's sent, delivered,
// read and escalated events all go through the four attempts.
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
  start_with_endpoint(*cluster, config(), endpoint_body(receiver->port(), R"(["*"])"));
  const client::AdminClient admin = cluster->admin(1);
  GroupDevices group = everyone_in_group(*cluster, 1);
  send_then_acknowledge_and_read(group, admin, kMessages);
  const std::map<std::string, ExpectedEvent> expected = expected_message_events(kMessages);
  // The hung attempts are released once the client has given up on them.
  std::atomic<bool> done{false};
  std::thread releaser([&] {
    while (!done) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2 * kWebhookTimeoutMs));
      receiver->release_hung();
    }
  });
  const bool all =
      eventually([&] { return accepted_ids(receiver->requests()).size() == expected.size(); },
                 kArrivalTimeoutMs);
  done = true;
  releaser.join();
  ASSERT_TRUE(all) << accepted_ids(receiver->requests()).size() << " of " << expected.size() << "\n"
                   << cluster->log_tail(1);

  const auto requests = receiver->requests();
  expect_requests_match(requests, expected);
  std::map<std::string, std::vector<int>> by_id;
  for (const auto& r : requests) by_id[r.id].push_back(r.status);
  EXPECT_EQ(by_id.size(), expected.size()) << "one id per event";
  for (const auto& [id, statuses] : by_id) {
    ASSERT_GE(statuses.size(), 4U) << id;
    EXPECT_EQ(statuses[0], 500);
    EXPECT_EQ(statuses[1], 500);
    EXPECT_EQ(statuses[2], 0) << "the third attempt hung";
    EXPECT_EQ(statuses[3], 204);
  }

  // The timeline of message 1 shows each of its events' attempts: two 500s, a transfer timeout,
  // the success.
  const std::string timeline =
      must(admin.get(fmt::format("/v1/admin/conversations/{}/messages/1", kConversation)),
           "the timeline");
  const json::value parsed = json::parse(timeline);
  const json::array& hooks = parsed.at("webhooks").as_array();
  std::set<std::string> types;
  for (const json::value& h : hooks) {
    const json::object& hook = h.as_object();
    const std::string type = string_at(hook, "event_type");
    types.insert(type);
    EXPECT_EQ(string_at(hook, "status"), "completed") << type;
    EXPECT_EQ(string_at(hook, "endpoint"), "backend") << type;
    const json::array& attempts = hook.at("attempts").as_array();
    ASSERT_EQ(attempts.size(), 4U) << timeline;
    EXPECT_EQ(attempts[0].at("status").as_int64(), 500) << type;
    EXPECT_EQ(string_at(attempts[0].as_object(), "error_type"), "webhook.http_error") << type;
    EXPECT_EQ(string_at(attempts[2].as_object(), "error_type"), "webhook.transfer_error") << type;
    EXPECT_EQ(string_at(attempts[3].as_object(), "kind"), "activity_completed") << type;
    EXPECT_EQ(attempts[3].at("status").as_int64(), 204) << type;
  }
  std::set<std::string> all_types;
  for (const std::string_view type : kMessageEventTypes) all_types.emplace(type);
  EXPECT_EQ(types, all_types) << timeline;
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
  // Other events of the message (bob's delivery escalating) may be failing by now too; each
  // event reaches the receiver once, however it ended.
  const std::vector<WebhookRequest> requests = receiver->requests();
  std::map<std::string, int> attempts_by_id;
  for (const WebhookRequest& r : requests) ++attempts_by_id[r.id];
  EXPECT_EQ(attempts_by_id[std::string(hook.at("event_id").as_string())], 1);
  for (const auto& [id, n] : attempts_by_id) EXPECT_EQ(n, 1) << id << " was retried after 410";
  const std::string metrics = must(admin.get("/metrics"), "scraping");
  const std::string failed =
      R"(herald_workflow_transitions_total{type="webhook.delivery",state="failed"} )";
  const std::size_t at = metrics.find(failed);
  ASSERT_NE(at, std::string::npos) << metrics.substr(0, 4000);
  const double failed_count = std::stod(metrics.substr(at + failed.size()));
  EXPECT_GE(failed_count, 1.0);
  EXPECT_LE(failed_count, static_cast<double>(attempts_by_id.size()))
      << "a delivery failed that never reached the receiver";
}

// The leader dies while every delivery of every event (each message sent, delivered, read and
// escalated) waits for the receiver's answer; the next leader runs the attempts again with the
// same ids. Nothing is lost; repeats are counted.
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
                               endpoint_body(receiver->port(), R"(["*"])")),
                 "registering")
                .status,
            200);
  GroupDevices group = everyone_in_group(*cluster, follower);
  send_then_acknowledge_and_read(group, admin, kFailoverMessages);
  const std::map<std::string, ExpectedEvent> expected = expected_message_events(kFailoverMessages);
  ASSERT_TRUE(eventually([&] { return receiver->hung() >= expected.size(); }, kArrivalTimeoutMs))
      << "only " << receiver->hung() << " of " << expected.size()
      << " deliveries reached the receiver before the kill";
  cluster->kill(leader);
  receiver->set_decide([](const WebhookRequest&) { return 200; });
  receiver->release_hung();
  const std::uint64_t next = must(cluster->leader(kFailoverTimeoutMs), "the next leader");
  ASSERT_NE(next, leader);
  ASSERT_TRUE(
      eventually([&] { return accepted_ids(receiver->requests()).size() == expected.size(); },
                 kArrivalTimeoutMs))
      << accepted_ids(receiver->requests()).size() << " of " << expected.size() << "\n"
      << cluster->log_tail(next);

  const std::vector<WebhookRequest> requests = receiver->requests();
  expect_requests_match(requests, expected);
  std::map<std::string, std::size_t> arrivals;
  for (const auto& r : requests) ++arrivals[r.id];
  EXPECT_EQ(arrivals.size(), expected.size()) << "one id per event, across leaders";
  std::size_t repeated = 0;
  for (const auto& [id, n] : arrivals) {
    EXPECT_GE(n, 2U) << id << " was in flight at the kill and must have run again";
    repeated += n - 1;
  }
  std::printf("leader %lu killed with %zu webhook deliveries in flight; %zu repeats by id\n",
              static_cast<unsigned long>(leader), expected.size(), repeated);
}

// ---- push_token.invalidated from a real push provider ----

constexpr char kTokensGroup[] = "g-tokens";
// Bound on the pushes to offline devices (due after the socket grace) and their consequences.
constexpr std::uint32_t kPushWaitMs = 15'000;
// After the timeline shows a push refused for want of a target, how long the test keeps watching
// for a webhook event that must not come.
constexpr std::uint32_t kNoEventWatchMs = 2'000;

// The push_token.invalidated events a receiver answered 2xx, by device id, as their bodies.
std::map<std::string, json::object> invalidations(const std::vector<WebhookRequest>& requests) {
  std::map<std::string, json::object> out;
  for (const auto& r : requests) {
    if (r.status < 200 || r.status >= 300 || r.event_type != "push_token.invalidated") continue;
    const json::object body = json::parse(r.body).as_object();
    out[std::string(body.at("data").at("device_id").as_string())] = body;
  }
  return out;
}

// Bob's phone and carol's phone are offline with APNs tokens the double calls dead, one as
// Unregistered (410), one as BadDeviceToken (400). The first message's pushes mark both tokens
// invalid, and each marking reaches the backend once as push_token.invalidated.
TEST(WebhooksEvents, TokensTheApnsServiceCallsDeadReachTheBackendAsPushTokenInvalidated) {
  const std::string bob_token(64, 'b');
  const std::string carol_token(64, 'c');
  auto receiver = must(WebhookReceiver::start([](const WebhookRequest&) { return 204; }),
                       "starting the receiver");
  SystemClock clock;
  const ApnsDouble apns(clock, "webhooks-apns.p8");
  apns.mock->answer_token(bob_token, 410, "Unregistered");
  apns.mock->answer_token(carol_token, 400, "BadDeviceToken");
  auto cluster = must(Cluster::create(1), "creating the cluster");
  start_with_endpoint(*cluster, config() + apns.toml(),
                      endpoint_body(receiver->port(), R"(["push_token.invalidated"])"));
  const client::AdminClient admin = cluster->admin(1);
  must(admin.create_user("alice", "Alice"), "creating alice");
  const DeviceCredentials a_phone = must(provision_device(admin, "alice", "a-phone"), "a-phone");
  for (const auto& [user, token] : {std::pair{"bob", bob_token}, {"carol", carol_token}}) {
    must(admin.create_user(user), "creating a recipient");
    const std::string device = std::string(user).substr(0, 1) + "-phone";
    must(provision_device(admin, user, device), "a recipient's phone");  // never connected
    must(admin.set_push_token(user, device, "apns", token), "its push token");
  }
  must(admin.create_conversation({"alice", "group", {"bob", "carol"}, kTokensGroup, "tokens"}),
       "the group");
  auto alice = must(connect_device(cluster->node(1).client_port, a_phone), "connecting alice");
  must(alice->send(kTokensGroup, "m1", "are you there?"), "sending");

  ASSERT_TRUE(
      eventually([&] { return invalidations(receiver->requests()).size() == 2; }, kPushWaitMs))
      << invalidations(receiver->requests()).size() << " of 2 events; the double saw "
      << apns.mock->request_count() << " pushes\n"
      << cluster->log_tail(1);
  const auto events = invalidations(receiver->requests());
  const std::map<std::string, std::pair<std::string, std::string>> expected{
      {"b-phone", {"bob", "push.unregistered"}}, {"c-phone", {"carol", "push.invalid_token"}}};
  for (const auto& [device, owner_and_detail] : expected) {
    ASSERT_TRUE(events.contains(device)) << device;
    const json::object& data = events.at(device).at("data").as_object();
    EXPECT_EQ(std::string(data.at("user_id").as_string()), owner_and_detail.first);
    EXPECT_EQ(std::string(data.at("detail").as_string()), owner_and_detail.second);
    EXPECT_FALSE(data.contains("conversation_id")) << "not an event about a message";
  }
  for (const auto& r : receiver->requests()) {
    EXPECT_TRUE(signature_valid(r)) << r.id;
    EXPECT_EQ(r.event_type, "push_token.invalidated") << "the endpoint subscribed to nothing else";
  }
  std::map<std::string, int> answers;  // by token: what the double answered
  for (const auto& r : apns.mock->requests()) answers[r.device_token] = r.status;
  EXPECT_EQ(answers[bob_token], 410);
  EXPECT_EQ(answers[carol_token], 400);

  // The tokens are marked: the next message is not pushed to them, and no second event comes.
  must(alice->send(kTokensGroup, "m2", "hello?"), "sending again");
  ASSERT_TRUE(eventually(
      [&] {
        const Result<client::MessageTimeline> t = admin.timeline(kTokensGroup, 2);
        const client::RecipientTimeline* bob = t.ok() ? t->recipient("bob") : nullptr;
        if (bob == nullptr) return false;
        return std::any_of(bob->history.begin(), bob->history.end(),
                           [](const auto& e) { return e.error_type == "push.no_target"; });
      },
      kPushWaitMs))
      << "message 2's push to bob was not refused for want of a target";
  std::this_thread::sleep_for(std::chrono::milliseconds(kNoEventWatchMs));
  std::set<std::string> ids;
  for (const auto& r : receiver->requests()) ids.insert(r.id);
  EXPECT_EQ(ids.size(), 2U) << "one event per token marked, none for a push not made";
}

// ---- HTTPS endpoints ----

// Bound on the node's attempts at an endpoint it does not trust: the first and a retry (the
// backoff before it is at most 1 s, then 2 s).
constexpr std::uint32_t kRefusedAttemptsWaitMs = 15'000;
constexpr std::size_t kHttpsMessages = 3;

// The timeline of message `seq` of kConversation: its one webhook delivery.
json::object delivery_in_timeline(const client::AdminClient& admin, std::uint64_t seq) {
  const std::string timeline =
      must(admin.get(fmt::format("/v1/admin/conversations/{}/messages/{}", kConversation, seq)),
           "the timeline");
  const json::value parsed = json::parse(timeline);
  const json::array& hooks = parsed.at("webhooks").as_array();
  EXPECT_EQ(hooks.size(), 1U) << timeline;
  return hooks.empty() ? json::object() : hooks[0].as_object();
}

// The receiver serves HTTPS with a certificate of its own; the node trusts it through
// [webhooks] ca_file and delivers every event there, signed.
TEST(WebhooksTls, AnHttpsEndpointTrustedThroughCaFileGetsSignedDeliveries) {
  const auto cert = crypto::testing::self_signed_loopback_certificate("herald-e2e-receiver");
  auto receiver = must(WebhookReceiver::start([](const WebhookRequest&) { return 200; },
                                              ReceiverTls{cert.cert_pem, cert.key_pem}),
                       "starting the HTTPS receiver");
  auto cluster = must(Cluster::create(1), "creating the cluster");
  const std::string ca = ca_file_in(*cluster, "receiver-ca.pem", cert.cert_pem);
  start_with_endpoint(*cluster, config_trusting(ca),
                      endpoint_body(receiver->port(), R"(["message.sent"])", "https"));
  auto alice = alice_in_group(*cluster, 1);
  for (std::size_t i = 1; i <= kHttpsMessages; ++i) {
    must(alice->send(kConversation, fmt::format("m{}", i), fmt::format("hello {}", i)), "send");
  }
  ASSERT_TRUE(
      eventually([&] { return delivered_sends(receiver->requests()).size() == kHttpsMessages; },
                 kArrivalTimeoutMs))
      << delivered_sends(receiver->requests()).size() << " of " << kHttpsMessages << "; "
      << receiver->tls_failures() << " handshakes refused\n"
      << cluster->log_tail(1);
  // A first attempt slower than the delivery timeout on a loaded machine is sent again with the
  // same event id (at least once): every request is one of the sends, none refused by TLS.
  std::set<std::string> event_ids;
  for (const auto& r : receiver->requests()) {
    EXPECT_TRUE(signature_valid(r)) << r.id << " " << r.signature;
    event_ids.insert(r.id);
  }
  EXPECT_EQ(event_ids.size(), kHttpsMessages) << "one event id per message, however many attempts";
  EXPECT_EQ(receiver->tls_failures(), 0U);
  const json::object hook = delivery_in_timeline(cluster->admin(1), 1);
  EXPECT_EQ(hook.at("status"), "completed");
}

// The node trusts another CA than the one that made the receiver's certificate: it refuses the
// certificate in the handshake, sends nothing, and retries; once it is restarted trusting the
// receiver's CA, the same event (same id) is delivered.
TEST(WebhooksTls, AnEndpointWithAnUntrustedCertificateIsRetriedNeverDeliveredInsecurely) {
  const auto cert = crypto::testing::self_signed_loopback_certificate("herald-e2e-receiver");
  const auto other = crypto::testing::self_signed_loopback_certificate("herald-e2e-other-ca");
  auto receiver = must(WebhookReceiver::start([](const WebhookRequest&) { return 200; },
                                              ReceiverTls{cert.cert_pem, cert.key_pem}),
                       "starting the HTTPS receiver");
  auto cluster = must(Cluster::create(1), "creating the cluster");
  const std::string wrong_ca = ca_file_in(*cluster, "other-ca.pem", other.cert_pem);
  const std::string right_ca = ca_file_in(*cluster, "receiver-ca.pem", cert.cert_pem);
  start_with_endpoint(*cluster, config_trusting(wrong_ca),
                      endpoint_body(receiver->port(), R"(["message.sent"])", "https"));
  auto alice = alice_in_group(*cluster, 1);
  must(alice->send(kConversation, "m1", "hello"), "send");

  ASSERT_TRUE(eventually([&] { return receiver->tls_failures() >= 2; }, kRefusedAttemptsWaitMs))
      << receiver->tls_failures() << " handshakes refused\n"
      << cluster->log_tail(1);
  EXPECT_TRUE(receiver->requests().empty()) << "a request reached an endpoint not trusted";
  const client::AdminClient admin = cluster->admin(1);
  ASSERT_TRUE(eventually(
      [&] { return delivery_in_timeline(admin, 1).at("attempts").as_array().size() >= 2; },
      kRefusedAttemptsWaitMs));
  const json::object hook = delivery_in_timeline(admin, 1);
  EXPECT_EQ(hook.at("status"), "running") << "still retried";
  for (const json::value& attempt : hook.at("attempts").as_array()) {
    EXPECT_EQ(attempt.at("error_type"), "webhook.transfer_error") << json::serialize(attempt);
    EXPECT_NE(json::serialize(attempt).find("certificate"), std::string::npos)
        << "the attempt says why: " << json::serialize(attempt);
  }

  // Trusted from the next start on: the pending delivery goes through, under its event's id.
  cluster->kill(1);
  must(cluster->set_config(config_trusting(right_ca)), "trusting the receiver's CA");
  must(cluster->start(1), "restarting the node");
  must(cluster->leader(kStartupTimeoutMs), "a leader again");
  ASSERT_TRUE(eventually([&] { return delivered_sends(receiver->requests()).size() == 1; },
                         kArrivalTimeoutMs))
      << cluster->log_tail(1);
  const WebhookRequest delivered = receiver->requests().front();
  EXPECT_TRUE(signature_valid(delivered));
  EXPECT_EQ(json::parse(delivered.body).at("data").at("seq").as_int64(), 1);
  EXPECT_EQ(std::string(hook.at("event_id").as_string()), delivered.id)
      << "the event retried is the one delivered";
}

}  // namespace
}  // namespace herald::e2e
