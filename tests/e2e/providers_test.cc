// End to end through the real provider clients: one real `herald serve` process configured
// ([smtp], [apns]; docs/operations.md, "Push and email") to reach a test double this test process
// runs on loopback (email/smtp_sink.h, push/apns_mock.h): the node's SMTP client speaks SMTP with
// STARTTLS and AUTH to the sink, its APNs client HTTP/2 over TLS with an ES256 token to the mock.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "client/admin_client.h"
#include "client/herald_client.h"
#include "email/smtp_sink.h"
#include "push/apns_mock.h"
#include "tests/e2e/apns_double.h"
#include "tests/e2e/cluster.h"
#include "tests/e2e/devices.h"
#include "tests/e2e/one_node.h"

namespace herald::e2e {
namespace {

// Bound on a fresh node electing itself and serving.
constexpr std::uint32_t kStartupTimeoutMs = 15'000;
// The shortest email delay a user may choose (messaging/domain.h, kMinEmailDelayMs).
constexpr std::int64_t kEmailDelayMs = 1'000;
// Bound on an escalation email or a push arriving at its double after it is due.
constexpr std::uint32_t kArrivalWaitMs = 8'000;
// How long the test keeps watching for a duplicate after the first arrival: past the delivery
// workflow's retry backoff, so that a second send would have shown.
constexpr std::uint32_t kDuplicateWatchMs = 2'000;

constexpr char kSmtpUser[] = "herald-e2e";
constexpr char kSmtpPassword[] = "e2e-smtp-password-Zq81";
constexpr char kFrom[] = "herald@e2e.example";
constexpr char kCarolEmail[] = "carol@example.com";
constexpr char kGroupId[] = "g-alice-carol";
constexpr char kBobApnsToken[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

// `data` without quoted-printable soft line breaks, so that a phrase cut by one is found whole.
std::string without_soft_breaks(std::string data) {
  for (std::size_t at = data.find("=\r\n"); at != std::string::npos; at = data.find("=\r\n", at)) {
    data.erase(at, 3);
  }
  return data;
}

class Providers : public OneNodeTest {
 protected:
  [[nodiscard]] std::string whole_log() const { return cluster_->log_tail(1, 1U << 24U); }

  // Alice (connected, returned) and bob, whose phone never connects and has an APNs token, in
  // their direct conversation (its id returned).
  std::pair<std::unique_ptr<client::HeraldClient>, std::string> alice_and_offline_bob() {
    must(admin_->create_user("alice", "Alice"), "creating alice");
    must(admin_->create_user("bob", "Bob"), "creating bob");
    const DeviceCredentials a_phone =
        must(provision_device(*admin_, "alice", "a-phone"), "a-phone");
    must(provision_device(*admin_, "bob", "b-phone"), "b-phone");  // offline: never connected
    must(admin_->set_push_token("bob", "b-phone", "apns", kBobApnsToken), "bob's push token");
    std::string direct = must(admin_->create_conversation({"alice", "direct", {"bob"}, "", ""}),
                              "the direct conversation")
                             .conversation_id;
    return {must(connect_device(port(), a_phone), "connecting a-phone"), std::move(direct)};
  }
};

TEST_F(Providers, EscalationEmailGoesThroughSmtpExactlyOnceAfterTheDelay) {
  email::testing::SmtpSinkOptions options;
  options.username = kSmtpUser;
  options.password = kSmtpPassword;
  auto sink = must(email::testing::SmtpSink::start(options), "starting the SMTP sink");
  const std::string password_file =
      private_file("smtp-password", std::string(kSmtpPassword) + "\n");
  start_node(
      fmt::format("[smtp]\nurl = \"smtp://127.0.0.1:{}\"\ntls = \"starttls\"\nusername = \"{}\"\n"
                  "password_file = \"{}\"\nfrom = \"{}\"\nca_file = \"{}\"\n",
                  sink->port(), kSmtpUser, password_file, kFrom, sink->ca_file()));

  must(admin_->create_user("alice", "Alice"), "creating alice");
  must(admin_->create_user("carol", "Carol", kCarolEmail), "creating carol");
  const client::HttpReply preferences =
      must(admin_->request(
               "PUT", "/v1/admin/users/carol/preferences",
               fmt::format(R"({{"email_fallback": true, "email_delay_ms": {}}})", kEmailDelayMs)),
           "carol's email fallback");
  ASSERT_EQ(preferences.status / 100, 2) << preferences.body;
  const DeviceCredentials a_phone = must(provision_device(*admin_, "alice", "a-phone"), "a-phone");
  must(provision_device(*admin_, "carol", "c-phone"), "c-phone");  // never connected
  must(admin_->create_conversation({"alice", "group", {"carol"}, kGroupId, "alice and carol"}),
       "the group");
  auto alice = must(connect_device(port(), a_phone), "connecting a-phone");

  const auto sent_at = std::chrono::steady_clock::now();
  must(alice->send(kGroupId, "m1", "the quarterly numbers are in"), "sending");
  ASSERT_TRUE(eventually([&] { return sink->message_count() >= 1; }, kArrivalWaitMs))
      << "no email reached the sink";
  const auto elapsed_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::steady_clock::now() - sent_at)
                              .count();
  EXPECT_GE(elapsed_ms, kEmailDelayMs) << "the email went out before the escalation delay";
  std::this_thread::sleep_for(std::chrono::milliseconds(kDuplicateWatchMs));

  const std::vector<email::testing::SmtpSinkMessage> messages = sink->messages();
  ASSERT_EQ(messages.size(), 1U);
  const email::testing::SmtpSinkMessage& m = messages[0];
  EXPECT_TRUE(m.tls) << "STARTTLS was required";
  EXPECT_EQ(m.auth_user, kSmtpUser);
  EXPECT_EQ(m.mail_from, kFrom);
  EXPECT_EQ(m.rcpt_to, std::vector<std::string>{kCarolEmail});
  EXPECT_NE(m.data.find(fmt::format("\r\nTo: {}\r\n", kCarolEmail)), std::string::npos) << m.data;
  EXPECT_NE(m.data.find(fmt::format("<{}>", kFrom)), std::string::npos) << m.data;
  EXPECT_NE(m.data.find(kGroupId), std::string::npos) << m.data;
  EXPECT_NE(without_soft_breaks(m.data).find("the quarterly numbers are in"), std::string::npos)
      << m.data;
  EXPECT_NE(m.data.find("\r\nMessage-ID: <"), std::string::npos) << m.data;

  const std::string log = whole_log();
  EXPECT_NE(log.find(fmt::format("escalation emails go to SMTP server 127.0.0.1:{}", sink->port())),
            std::string::npos);
  EXPECT_EQ(log.find(kSmtpPassword), std::string::npos) << "the SMTP password was logged";
  EXPECT_NE(log.find("push: apns notifications go to the recording provider"), std::string::npos)
      << "a platform without a client says so at start";
  std::remove(password_file.c_str());
}

TEST_F(Providers, OfflineDeviceGetsExactlyOneApnsPushWithTheTopic) {
  SystemClock clock;
  const ApnsDouble apns(clock, "apns.p8");
  push::testing::ApnsMock* mock = apns.mock.get();
  start_node(apns.toml());

  auto setup = alice_and_offline_bob();
  auto alice = std::move(setup.first);
  const std::string direct = setup.second;  // a plain variable: lambdas capture it
  must(alice->send(direct, "m1", "ship it"), "sending");

  ASSERT_TRUE(eventually([&] { return mock->request_count() >= 1; }, kArrivalWaitMs))
      << "no push reached the APNs mock";
  std::this_thread::sleep_for(std::chrono::milliseconds(kDuplicateWatchMs));
  const std::vector<push::testing::ApnsMockRequest> requests = mock->requests();
  ASSERT_EQ(requests.size(), 1U);
  const push::testing::ApnsMockRequest& r = requests[0];
  EXPECT_EQ(r.status, 200) << r.check_failed;
  EXPECT_EQ(r.check_failed, "");
  EXPECT_EQ(r.device_token, kBobApnsToken);
  EXPECT_EQ(r.headers.at("apns-topic"), kApnsTopic);
  EXPECT_NE(r.body.find("ship it"), std::string::npos) << r.body;
  EXPECT_TRUE(
      eventually([&] { return !delivery_state(*admin_, direct, 1, "bob").empty(); }, 2'000));

  const std::string log = whole_log();
  EXPECT_NE(
      log.find(fmt::format("push: apns notifications go to https://127.0.0.1:{}", mock->port())),
      std::string::npos);
  EXPECT_EQ(log.find("PRIVATE KEY"), std::string::npos) << "key material was logged";
  EXPECT_EQ(log.find(r.jwt), std::string::npos) << "the provider token was logged";
}

TEST_F(Providers, WithoutAProviderTheTimelineSaysSoAndNothingIsDispatched) {
  cluster_ = must(Cluster::create(1), "creating the cluster");
  cluster_->set_push_journal(false);
  must(cluster_->start_all(), "starting the node");
  must(cluster_->leader(kStartupTimeoutMs), "waiting for a leader");
  admin_ = std::make_unique<client::AdminClient>(cluster_->admin(1));
  auto setup = alice_and_offline_bob();
  auto alice = std::move(setup.first);
  const std::string direct = setup.second;  // a plain variable: lambdas capture it
  must(alice->send(direct, "m1", "anyone there?"), "sending");

  // The push is due after the socket grace; its attempt fails at once, and is not retried.
  bool failed = false;
  bool no_provider = false;
  bool sent = false;
  ASSERT_TRUE(eventually(
      [&] {
        const Result<client::MessageTimeline> t = admin_->timeline(direct, 1);
        const client::RecipientTimeline* bob = t.ok() ? t->recipient("bob") : nullptr;
        if (bob == nullptr) return false;
        for (const client::TimelineEvent& e : bob->history) {
          failed = failed || e.name == "push_failed";
          no_provider = no_provider || e.error_type == "push.no_provider";
          sent = sent || e.name == "push_sent";
        }
        return failed;
      },
      kArrivalWaitMs))
      << "no failed push in bob's timeline";
  EXPECT_TRUE(no_provider) << "the attempt's error is push.no_provider";
  EXPECT_FALSE(sent) << "a push was recorded as sent without any provider";
  const std::string log = whole_log();
  EXPECT_NE(log.find("push: no provider configured for apns"), std::string::npos);
  EXPECT_NE(log.find("email: no SMTP server configured"), std::string::npos);
  EXPECT_EQ(log.find("go to the recording provider"), std::string::npos);
}

// ---- A leader failover with pushes in flight ----
//
// Three nodes, each configured with the APNs double, so whichever node leads pushes through it.
// Bob's and carol's two devices each are offline with APNs tokens; alice, connected to a
// follower, writes to their group. What is checked, per (message, device):
//  - a push whose success the cluster had recorded (history `push_sent`) before the leader was
//    killed is never sent again by the next leader;
//  - a push the killed leader had sent without its outcome recorded (held by the double, its
//    answer lost with the process) is sent again by the next leader exactly once, with the same
//    `apns-id` (derived from the attempt's idempotency key) and collapse id, so the provider and
//    the device can take it for the same notification;
//  - every device ends with a push the double accepted;
//  - every device presents each message exactly once: the double's model of the device takes a
//    notification whose apns-id it already received for that same notification, and its tray
//    holds one notification per conversation (apns-collapse-id).
// The re-send on the wire is the most a sender can promise to a provider with no idempotent send;
// what the device shows is once (docs/push.md, "Across a leader failover").

constexpr std::size_t kFailoverNodes = 3;
// Messages whose pushes settle before the kill, and messages whose pushes are in flight at it.
constexpr std::uint64_t kSettledMessages = 4;
constexpr std::uint64_t kInFlightMessages = 4;
// How long the double holds its answers while the leader is killed: longer than the wait for
// every in-flight push to arrive, so that none is answered before the kill.
constexpr std::int64_t kHoldMs = 20'000;
// Bound on a new leader after the kill, and on the next leader's pushes.
constexpr std::uint32_t kFailoverTimeoutMs = 15'000;
constexpr std::uint32_t kRepushWaitMs = 20'000;
constexpr char kFailoverGroup[] = "g-failover";

struct PushedDevice {
  std::string user_id;
  std::string device_id;
  std::string token;
};

// The `herald.seq` of an APNs body (push/apns.cc), or 0.
std::uint64_t seq_of(const std::string& body) {
  boost::system::error_code ec;
  const boost::json::value v = boost::json::parse(body, ec);
  if (ec || !v.is_object()) return 0;
  const boost::json::object* herald = v.as_object().if_contains("herald") != nullptr
                                          ? v.as_object().at("herald").if_object()
                                          : nullptr;
  if (herald == nullptr || !herald->contains("seq") || !herald->at("seq").is_int64()) return 0;
  return static_cast<std::uint64_t>(herald->at("seq").as_int64());
}

// `push_sent` records in the timeline of `user_id` for message `seq`.
std::size_t pushes_recorded(const client::AdminClient& admin, std::uint64_t seq,
                            const std::string& user_id) {
  const Result<client::MessageTimeline> timeline = admin.timeline(kFailoverGroup, seq);
  if (!timeline.ok()) return 0;
  const client::RecipientTimeline* r = timeline.value().recipient(user_id);
  if (r == nullptr) return 0;
  return static_cast<std::size_t>(
      std::count_if(r->history.begin(), r->history.end(),
                    [](const client::TimelineEvent& e) { return e.name == "push_sent"; }));
}

TEST(PushFailover, LeaderKillWithPushesInFlightPushesEveryDeviceAndRepeatsNoRecordedPush) {
  SystemClock clock;
  const ApnsDouble apns(clock, "failover-apns.p8");
  push::testing::ApnsMock* mock = apns.mock.get();
  auto cluster = must(Cluster::create(kFailoverNodes), "creating the cluster");
  must(cluster->set_config(apns.toml()), "writing the configuration");
  must(cluster->start_all(), "starting the nodes");
  const std::uint64_t leader = must(cluster->leader(kStartupTimeoutMs), "the first leader");
  const std::uint64_t follower = cluster->other_live_node(leader);
  const client::AdminClient admin = cluster->admin(follower);  // forwarded to the leader

  must(admin.create_user("alice", "Alice"), "creating alice");
  const DeviceCredentials a_phone = must(provision_device(admin, "alice", "a-phone"), "a-phone");
  const std::vector<PushedDevice> devices = {
      {"bob", "b-phone", std::string(64, 'b')},
      {"bob", "b-pad", std::string(63, 'b') + "1"},
      {"carol", "c-phone", std::string(64, 'c')},
      {"carol", "c-pad", std::string(63, 'c') + "1"},
  };
  must(admin.create_user("bob", "Bob"), "creating bob");
  must(admin.create_user("carol", "Carol"), "creating carol");
  for (const PushedDevice& d : devices) {
    must(provision_device(admin, d.user_id, d.device_id), "a recipient device");  // never online
    must(admin.set_push_token(d.user_id, d.device_id, "apns", d.token), "a push token");
  }
  must(admin.create_conversation({"alice", "group", {"bob", "carol"}, kFailoverGroup, "failover"}),
       "the group");
  auto alice = must(connect_device(cluster->node(follower).client_port, a_phone), "alice");

  // Settled: every push answered and its success recorded while the first leader lives.
  for (std::uint64_t i = 1; i <= kSettledMessages; ++i) {
    must(alice->send(kFailoverGroup, fmt::format("settled-{}", i), fmt::format("settled {}", i)),
         "a settled message");
  }
  ASSERT_TRUE(eventually(
      [&] {
        for (std::uint64_t seq = 1; seq <= kSettledMessages; ++seq) {
          if (pushes_recorded(admin, seq, "bob") < 2 || pushes_recorded(admin, seq, "carol") < 2) {
            return false;
          }
        }
        return true;
      },
      kArrivalWaitMs * 2))
      << "the settled pushes were not recorded";

  // In flight: the double holds every answer; the leader dies with the pushes sent.
  mock->set_delay_ms(kHoldMs);
  for (std::uint64_t i = 1; i <= kInFlightMessages; ++i) {
    must(alice->send(kFailoverGroup, fmt::format("inflight-{}", i), fmt::format("in flight {}", i)),
         "an in-flight message");
  }
  const std::size_t in_flight = kInFlightMessages * devices.size();
  ASSERT_TRUE(eventually([&] { return mock->pending() >= in_flight; }, kArrivalWaitMs * 2))
      << "only " << mock->pending() << " pushes reached the double before the kill";
  const std::size_t requests_before_kill = mock->request_count();
  cluster->kill(leader);
  mock->set_delay_ms(0);
  mock->release_held();  // answers to a dead connection: the outcome is lost with the leader
  const std::uint64_t next = must(cluster->leader(kFailoverTimeoutMs), "the next leader");
  ASSERT_NE(next, leader);

  ASSERT_TRUE(eventually(
      [&] {
        for (std::uint64_t seq = kSettledMessages + 1; seq <= kSettledMessages + kInFlightMessages;
             ++seq) {
          if (pushes_recorded(admin, seq, "bob") < 2 || pushes_recorded(admin, seq, "carol") < 2) {
            return false;
          }
        }
        return true;
      },
      kRepushWaitMs))
      << "the next leader did not record every in-flight push";
  std::this_thread::sleep_for(std::chrono::milliseconds(kDuplicateWatchMs));

  // (seq, token) -> its requests, in arrival order, with their index.
  std::map<std::pair<std::uint64_t, std::string>, std::vector<std::size_t>> by_pair;
  const std::vector<push::testing::ApnsMockRequest> requests = mock->requests();
  for (std::size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ(requests[i].check_failed, "") << "request " << i;
    const std::uint64_t seq = seq_of(requests[i].body);
    ASSERT_NE(seq, 0U) << requests[i].body;
    by_pair[{seq, requests[i].device_token}].push_back(i);
  }
  std::size_t repeated = 0;
  for (std::uint64_t seq = 1; seq <= kSettledMessages + kInFlightMessages; ++seq) {
    for (const PushedDevice& d : devices) {
      const auto it = by_pair.find({seq, d.token});
      ASSERT_NE(it, by_pair.end()) << "seq " << seq << " never pushed to " << d.device_id;
      const std::vector<std::size_t>& sent = it->second;
      const std::string& apns_id = requests[sent.front()].headers.at("apns-id");
      std::size_t accepted = 0;
      std::size_t after_kill = 0;
      for (const std::size_t i : sent) {
        EXPECT_EQ(requests[i].headers.at("apns-id"), apns_id) << "seq " << seq << d.device_id;
        EXPECT_EQ(requests[i].headers.at("apns-collapse-id"),
                  requests[sent.front()].headers.at("apns-collapse-id"));
        if (requests[i].status == 200) ++accepted;
        if (i >= requests_before_kill) ++after_kill;
      }
      EXPECT_GE(accepted, 1U) << "seq " << seq << " to " << d.device_id;
      if (seq <= kSettledMessages) {
        EXPECT_EQ(sent.size(), 1U)
            << "a recorded push of seq " << seq << " to " << d.device_id << " was sent again";
      } else {
        EXPECT_LE(after_kill, 1U) << "seq " << seq << " to " << d.device_id
                                  << " was pushed more than once by the next leader";
        EXPECT_LE(sent.size(), 2U);
        repeated += sent.size() - 1;
      }
    }
  }
  // Every in-flight push was held at the kill, so the next leader sent each once more.
  EXPECT_EQ(repeated, in_flight);

  // What each device shows: the re-sent push carries the apns-id of the one the device already
  // has, so it is that notification again, not a second one (push/apns_mock.h, "Devices").
  std::size_t repeats_absorbed = 0;
  for (const PushedDevice& d : devices) {
    std::map<std::uint64_t, std::size_t> shown;  // seq -> notifications presented for it
    for (const push::testing::ApnsMockNotification& n : mock->presented(d.token)) {
      ++shown[seq_of(n.body)];
      repeats_absorbed += n.deliveries - 1;
    }
    for (std::uint64_t seq = 1; seq <= kSettledMessages + kInFlightMessages; ++seq) {
      EXPECT_EQ(shown[seq], 1U) << d.device_id << " shows message " << seq << " " << shown[seq]
                                << " times";
    }
    EXPECT_EQ(mock->tray(d.token).size(), 1U)
        << d.device_id << ": one conversation, one notification in its tray";
  }
  EXPECT_EQ(repeats_absorbed, repeated);
  std::printf(
      "leader %lu killed with %zu pushes in flight; leader %lu re-sent %zu of them; every device "
      "showed each of the %lu messages once\n",
      static_cast<unsigned long>(leader), in_flight, static_cast<unsigned long>(next), repeated,
      static_cast<unsigned long>(kSettledMessages + kInFlightMessages));
  if (HasFailure()) {
    std::fprintf(stderr, "---- node %lu log (tail) ----\n%s\n", static_cast<unsigned long>(next),
                 cluster->log_tail(next).c_str());
  }
}

}  // namespace
}  // namespace herald::e2e
