// End to end through the real provider clients: one real `herald serve` process configured
// ([smtp], [apns]; docs/operations.md, "Push and email") to reach a test double this test process
// runs on loopback (email/smtp_sink.h, push/apns_mock.h): the node's SMTP client speaks SMTP with
// STARTTLS and AUTH to the sink, its APNs client HTTP/2 over TLS with an ES256 token to the mock.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "client/admin_client.h"
#include "client/herald_client.h"
#include "crypto/test_keys.h"
#include "email/smtp_sink.h"
#include "push/apns_mock.h"
#include "tests/e2e/cluster.h"
#include "tests/e2e/devices.h"

namespace herald::e2e {
namespace {

namespace fs = std::filesystem;

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
constexpr char kKeyId[] = "E2EKEY0001";
constexpr char kTeamId[] = "E2ETEAM001";
constexpr char kTopic[] = "org.herald.e2e";
constexpr char kBobApnsToken[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

// `bytes` written to a fresh file of mode 0600 under the test's temporary directory.
std::string private_file(const std::string& name, const std::string& bytes) {
  std::string path = fmt::format("{}/herald-e2e-{}-{}", ::testing::TempDir(), ::getpid(), name);
  std::remove(path.c_str());
  std::ofstream(path, std::ios::binary) << bytes;
  fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write);
  return path;
}

// `data` without quoted-printable soft line breaks, so that a phrase cut by one is found whole.
std::string without_soft_breaks(std::string data) {
  for (std::size_t at = data.find("=\r\n"); at != std::string::npos; at = data.find("=\r\n", at)) {
    data.erase(at, 3);
  }
  return data;
}

class Providers : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure() && cluster_ != nullptr) {
      std::fprintf(stderr, "---- node 1 log (tail) ----\n%s\n", cluster_->log_tail(1).c_str());
    }
  }

  // Starts one node with `toml` as its configuration file and waits until it serves.
  void start_node(const std::string& toml) {
    cluster_ = must(Cluster::create(1), "creating the cluster");
    must(cluster_->set_config(toml), "writing the configuration");
    must(cluster_->start_all(), "starting the node");
    must(cluster_->leader(kStartupTimeoutMs), "waiting for a leader");
    admin_ = std::make_unique<client::AdminClient>(cluster_->admin(1));
  }

  [[nodiscard]] std::string whole_log() const { return cluster_->log_tail(1, 1U << 24U); }

  std::unique_ptr<Cluster> cluster_;
  std::unique_ptr<client::AdminClient> admin_;
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
  auto alice = must(connect_device(cluster_->node(1).client_port, a_phone), "connecting a-phone");

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
  const std::string key_pem = crypto::testing::ec_private_pem("P-256");
  push::testing::ApnsMockOptions options;
  options.provider_public_pem = crypto::testing::public_pem_of(key_pem);
  options.key_id = kKeyId;
  options.team_id = kTeamId;
  options.topic = kTopic;
  auto mock = must(push::testing::ApnsMock::start(options, clock), "starting the APNs mock");
  const std::string key_file = private_file("apns.p8", key_pem);
  start_node(
      fmt::format("[apns]\nkey_file = \"{}\"\nkey_id = \"{}\"\nteam_id = \"{}\"\ntopic = \"{}\"\n"
                  "endpoint = \"https://127.0.0.1:{}\"\nca_file = \"{}\"\n",
                  key_file, kKeyId, kTeamId, kTopic, mock->port(), mock->ca_file()));

  must(admin_->create_user("alice", "Alice"), "creating alice");
  must(admin_->create_user("bob", "Bob"), "creating bob");
  const DeviceCredentials a_phone = must(provision_device(*admin_, "alice", "a-phone"), "a-phone");
  must(provision_device(*admin_, "bob", "b-phone"), "b-phone");  // offline: never connected
  must(admin_->set_push_token("bob", "b-phone", "apns", kBobApnsToken), "bob's push token");
  const std::string direct = must(admin_->create_conversation({"alice", "direct", {"bob"}, "", ""}),
                                  "the direct conversation")
                                 .conversation_id;
  auto alice = must(connect_device(cluster_->node(1).client_port, a_phone), "connecting a-phone");
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
  EXPECT_EQ(r.headers.at("apns-topic"), kTopic);
  EXPECT_NE(r.body.find("ship it"), std::string::npos) << r.body;
  EXPECT_TRUE(
      eventually([&] { return !delivery_state(*admin_, direct, 1, "bob").empty(); }, 2'000));

  const std::string log = whole_log();
  EXPECT_NE(
      log.find(fmt::format("push: apns notifications go to https://127.0.0.1:{}", mock->port())),
      std::string::npos);
  EXPECT_EQ(log.find("PRIVATE KEY"), std::string::npos) << "key material was logged";
  EXPECT_EQ(log.find(r.jwt), std::string::npos) << "the provider token was logged";
  std::remove(key_file.c_str());
}

}  // namespace
}  // namespace herald::e2e
