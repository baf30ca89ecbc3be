// TLS on the client port of a real node ([tls], docs/operations.md "TLS"), with self-signed
// certificates made by the test: HTTPS and WSS work, a plaintext client and a client trusting
// another CA fail cleanly, and a certificate replaced and reloaded with SIGHUP while devices keep
// sending reaches new connections without dropping a live one or failing a send. `herald ctl`
// reaches the node over HTTPS trusting the test's CA, and refuses a certificate it does not trust.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <signal.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "app/ctl.h"
#include "client/admin_client.h"
#include "client/herald_client.h"
#include "crypto/test_keys.h"
#include "tests/e2e/cluster.h"
#include "tests/e2e/ctl_runner.h"
#include "tests/e2e/devices.h"
#include "tests/e2e/one_node.h"

namespace herald::e2e {
namespace {

namespace fs = std::filesystem;
namespace asio = boost::asio;
namespace ssl = asio::ssl;
using client::ClientTls;
using client::HeraldClient;

// Devices sending over live WSS connections while the certificate is reloaded.
constexpr int kSenders = 4;
// How long they send before the reload and after a new connection sees the new certificate.
constexpr std::uint32_t kSendBeforeReloadMs = 500;
constexpr std::uint32_t kSendAfterReloadMs = 700;
// Bound on a new connection seeing the reloaded certificate after SIGHUP.
constexpr std::uint32_t kReloadSeenMs = 5'000;
// A client refused by the TLS port must fail within this time, not hang until its timeout.
constexpr std::uint32_t kRefusalBoundMs = 3'000;
// Bound on one probe connection's handshake.
constexpr std::uint32_t kProbeTimeoutMs = 2'000;

void write_file(const std::string& path, const std::string& bytes, fs::perms perms) {
  // Written beside, then renamed over: a reader (the node) sees the old file or the new one.
  const std::string staged = path + ".new";
  std::ofstream(staged, std::ios::binary | std::ios::trunc) << bytes;
  fs::permissions(staged, perms);
  fs::rename(staged, path);
}

// "sha256:<hex>" of a certificate, as the node logs it.
std::string fingerprint_of(X509* cert) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int length = 0;
  if (cert == nullptr || X509_digest(cert, EVP_sha256(), digest.data(), &length) != 1) return "";
  std::string out = "sha256:";
  for (unsigned int i = 0; i < length; ++i) out += fmt::format("{:02x}", digest[i]);
  return out;
}

std::string fingerprint_of_pem(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  std::string out = fingerprint_of(cert);
  X509_free(cert);
  return out;
}

// The fingerprint of the certificate a new TLS connection to 127.0.0.1:`port` is shown (no
// verification: the probe only looks); "" when the handshake fails.
std::string presented_fingerprint(std::uint16_t port) {
  asio::io_context io;
  ssl::context context(ssl::context::tls_client);
  context.set_verify_mode(ssl::verify_none);
  ssl::stream<asio::ip::tcp::socket> stream(io, context);
  boost::system::error_code ec;
  stream.lowest_layer().async_connect(
      asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
      [&](const boost::system::error_code& e) {
        ec = e;
        if (!e) stream.async_handshake(ssl::stream_base::client, [&](auto e2) { ec = e2; });
      });
  io.run_for(std::chrono::milliseconds(kProbeTimeoutMs));
  if (ec || !io.stopped()) return "";
  X509* cert = SSL_get_peer_certificate(stream.native_handle());
  std::string out = fingerprint_of(cert);
  X509_free(cert);
  return out;
}

std::int64_t elapsed_ms(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               since)
      .count();
}

class TlsE2e : public OneNodeTest {
 protected:
  void SetUp() override {
    dir_ = fmt::format("{}/herald-e2e-tls-{}", ::testing::TempDir(), ::getpid());
    fs::create_directories(dir_);
    first_ = crypto::testing::self_signed_loopback_certificate("herald-e2e-first");
    second_ = crypto::testing::self_signed_loopback_certificate("herald-e2e-second");
    install(first_);
    // The clients trust both certificates, so that a connection verifies before and after the
    // reload; each certificate is its own CA.
    std::ofstream(ca_file()) << first_.cert_pem << second_.cert_pem;
    // The senders of the reload test send as fast as the node answers: no device rate limit.
    start_node(fmt::format("[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n"
                           "[devices]\nrequests_per_s = 0\n",
                           cert_file(), key_file()),
               tls());
  }
  void TearDown() override {
    OneNodeTest::TearDown();
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  [[nodiscard]] std::string cert_file() const { return dir_ + "/cert.pem"; }
  [[nodiscard]] std::string key_file() const { return dir_ + "/key.pem"; }
  [[nodiscard]] std::string ca_file() const { return dir_ + "/ca.pem"; }
  [[nodiscard]] ClientTls tls() const { return ClientTls{ca_file()}; }

  void install(const crypto::testing::SelfSignedCertificate& cert) const {
    write_file(key_file(), cert.key_pem, fs::perms::owner_read | fs::perms::owner_write);
    write_file(cert_file(), cert.cert_pem, fs::perms::owner_read | fs::perms::owner_write);
  }
  void hang_up() const { ASSERT_EQ(::kill(cluster_->node(1).pid, SIGHUP), 0); }

  // A user with one device, connected over WSS.
  std::unique_ptr<HeraldClient> device(const std::string& user) {
    must(admin_->create_user(user), "creating " + user);
    const DeviceCredentials creds = must(provision_device(*admin_, user, user + "-phone"), user);
    return must(connect_device(port(), creds, std::nullopt, tls()), "connecting " + user);
  }

  std::string dir_;
  crypto::testing::SelfSignedCertificate first_;
  crypto::testing::SelfSignedCertificate second_;
};

TEST_F(TlsE2e, HttpsAnswersAndWssDevicesChat) {
  const client::HttpReply health = must(admin_->request("GET", "/v1/health"), "GET /v1/health");
  EXPECT_EQ(health.status, 200U) << health.body;
  EXPECT_EQ(presented_fingerprint(port()), fingerprint_of_pem(first_.cert_pem));

  auto alice = device("alice");
  auto bob = device("bob");
  const std::string direct =
      must(admin_->create_conversation({"alice", "direct", {"bob"}, "", ""}), "a conversation")
          .conversation_id;
  must(alice->send(direct, "a1", "hello over wss"), "alice sends");
  const client::Change got =
      must(wait_for_change(*bob,
                           [&](const client::Change& c) {
                             return c.kind == "message_new" && c.conversation_id == direct;
                           }),
           "bob receives");
  EXPECT_EQ(got.seq, 1U);

  // A URL names the same port.
  auto by_url = must(HeraldClient::connect_url(fmt::format("wss://127.0.0.1:{}", port()), tls()),
                     "connecting by URL");
  EXPECT_FALSE(by_url->close_code().has_value());
}

TEST_F(TlsE2e, APlaintextClientAndAnUntrustingClientFailCleanly) {
  auto started = std::chrono::steady_clock::now();
  const auto plain_ws = HeraldClient::connect("127.0.0.1", port());
  EXPECT_FALSE(plain_ws.ok());
  EXPECT_LT(elapsed_ms(started), kRefusalBoundMs) << plain_ws.status().to_string();

  started = std::chrono::steady_clock::now();
  const client::AdminClient plain_admin("127.0.0.1", port(), kAdminToken);
  const auto plain_http = plain_admin.request("GET", "/v1/health");
  EXPECT_FALSE(plain_http.ok());
  EXPECT_LT(elapsed_ms(started), kRefusalBoundMs) << plain_http.status().to_string();

  // A client that trusts only another certificate refuses the node's.
  const std::string other_ca = dir_ + "/other-ca.pem";
  std::ofstream(other_ca) << crypto::testing::self_signed_loopback_certificate("other").cert_pem;
  const auto untrusting = HeraldClient::connect(
      "127.0.0.1", port(), client::kDefaultConnectTimeoutMs, ClientTls{other_ca});
  ASSERT_FALSE(untrusting.ok());
  EXPECT_EQ(untrusting.status().code(), Code::kIOError);
  EXPECT_NE(untrusting.status().message().find("certificate verify failed"), std::string::npos)
      << untrusting.status().to_string();
  const client::AdminClient untrusting_admin("127.0.0.1", port(), kAdminToken,
                                             client::kDefaultAdminTimeoutMs, ClientTls{other_ca});
  EXPECT_EQ(untrusting_admin.request("GET", "/v1/health").status().code(), Code::kIOError);

  // A DNS name of the certificate passes too (sent as SNI, checked against the certificate).
  const auto by_name = HeraldClient::connect_url(fmt::format("wss://localhost:{}", port()), tls());
  EXPECT_TRUE(by_name.ok()) << by_name.status().to_string();

  // None of it disturbed the node.
  EXPECT_EQ(must(admin_->request("GET", "/v1/health"), "health").status, 200U);
}

TEST_F(TlsE2e, AReloadUnderLoadKeepsLiveConnectionsAndReachesNewOnes) {
  // Pairs of devices in direct conversations; one of each pair sends as fast as it is answered.
  std::vector<std::unique_ptr<HeraldClient>> senders;
  std::vector<std::unique_ptr<HeraldClient>> readers;
  std::vector<std::string> conversations;
  for (int i = 0; i < kSenders; ++i) {
    senders.push_back(device(fmt::format("sender{}", i)));
    readers.push_back(device(fmt::format("reader{}", i)));
    conversations.push_back(
        must(admin_->create_conversation(
                 {fmt::format("sender{}", i), "direct", {fmt::format("reader{}", i)}, "", ""}),
             "a conversation")
            .conversation_id);
  }
  std::atomic<bool> stop{false};
  std::atomic<int> failed_sends{0};
  std::vector<std::atomic<int>> sent(kSenders);
  std::vector<std::string> first_failure(kSenders);
  std::vector<std::thread> threads;
  threads.reserve(kSenders);
  for (int i = 0; i < kSenders; ++i) {
    threads.emplace_back([&, i] {
      for (int n = 0; !stop.load(); ++n) {
        const auto r = senders[i]->send(conversations[i], fmt::format("m{}", n), "under reload");
        if (!r.ok()) {
          if (failed_sends.fetch_add(1) == 0) first_failure[i] = r.status().to_string();
          return;
        }
        sent[i].fetch_add(1);
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(kSendBeforeReloadMs));
  std::vector<int> before_reload;
  before_reload.reserve(sent.size());
  for (const auto& count : sent) before_reload.push_back(count.load());

  install(second_);
  hang_up();
  const std::string second = fingerprint_of_pem(second_.cert_pem);
  EXPECT_TRUE(eventually([&] { return presented_fingerprint(port()) == second; }, kReloadSeenMs))
      << "a new connection still sees " << presented_fingerprint(port());
  // A new device connection verifies the new certificate and works.
  auto late = device("late");
  EXPECT_TRUE(late->ping().ok());

  std::this_thread::sleep_for(std::chrono::milliseconds(kSendAfterReloadMs));
  stop = true;
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failed_sends.load(), 0)
      << first_failure[0] << first_failure[1] << first_failure[2] << first_failure[3];
  for (int i = 0; i < kSenders; ++i) {
    EXPECT_GT(sent[i].load(), before_reload[i]) << "sender " << i << " made no progress";
    EXPECT_TRUE(senders[i]->ping().ok()) << "sender " << i << " lost its connection";
    EXPECT_FALSE(readers[i]->close_code().has_value()) << "reader " << i;
    EXPECT_TRUE(readers[i]->ping().ok()) << "reader " << i << " lost its connection";
  }
}

TEST_F(TlsE2e, AFailedReloadKeepsTheCertificateInUse) {
  const std::string first = fingerprint_of_pem(first_.cert_pem);
  // The second certificate with the first one's key: they do not match.
  write_file(cert_file(), second_.cert_pem, fs::perms::owner_read | fs::perms::owner_write);
  hang_up();
  EXPECT_TRUE(eventually(
      [&] {
        return cluster_->log_tail(1, 4000).find("reloading the certificate failed") !=
               std::string::npos;
      },
      kReloadSeenMs))
      << "no error logged";
  EXPECT_EQ(presented_fingerprint(port()), first);

  // A key every user may read is refused too, even with its own certificate.
  install(second_);
  fs::permissions(key_file(), fs::perms::others_read, fs::perm_options::add);
  hang_up();
  EXPECT_TRUE(eventually(
      [&] {
        return cluster_->log_tail(1, 4000).find("readable by every user") != std::string::npos;
      },
      kReloadSeenMs));
  EXPECT_EQ(presented_fingerprint(port()), first);
  EXPECT_EQ(must(admin_->request("GET", "/v1/health"), "health").status, 200U);
}

TEST_F(TlsE2e, HeraldCtlTrustsTheNodeThroughItsCaFileAndRefusesAnyOtherCertificate) {
  // https://127.0.0.1:PORT --ca-file CA (Cluster::ctl_args with the client TLS set).
  const CtlRun status = ctl(*cluster_, 1, {"cluster", "status", "--json"});
  ASSERT_EQ(status.exit_code, app::kCtlOk) << describe(status);
  EXPECT_EQ(status.json.at("leader").to_number<std::uint64_t>(), 1U);
  // A DNS name the certificate names, given as HOST:PORT: the CA file alone means HTTPS.
  const CtlRun by_name = ctl(
      *cluster_, 1,
      {"cluster", "status", "--node", fmt::format("localhost:{}", port()), "--ca-file", ca_file()});
  ASSERT_EQ(by_name.exit_code, app::kCtlOk) << describe(by_name);
  EXPECT_NE(by_name.out.find("sees leader 1"), std::string::npos) << by_name.out;

  // A CA that did not sign the node's certificate: refused in the handshake, said so.
  const std::string other_ca = dir_ + "/other-ca.pem";
  std::ofstream(other_ca) << crypto::testing::self_signed_loopback_certificate("other").cert_pem;
  const CtlRun wrong = ctl(*cluster_, 1, {"cluster", "status", "--ca-file", other_ca});
  EXPECT_EQ(wrong.exit_code, app::kCtlTlsFailed) << describe(wrong);
  EXPECT_TRUE(wrong.err.starts_with("herald ctl: tls: ")) << wrong.err;
  EXPECT_NE(wrong.err.find("certificate verify failed"), std::string::npos) << wrong.err;
  EXPECT_NE(wrong.err.find(other_ca), std::string::npos) << "names the CA file: " << wrong.err;
  EXPECT_EQ(wrong.out, "");
  // Without a CA file, https:// trusts the system's CAs, which do not know the test's.
  const std::string url = fmt::format("https://127.0.0.1:{}", port());
  const CtlRun system = ctl_argv(*cluster_, {herald_binary(), "ctl", "--token", kAdminToken,
                                             "--node", url, "cluster", "status"});
  EXPECT_EQ(system.exit_code, app::kCtlTlsFailed) << describe(system);
  EXPECT_NE(system.err.find("a CA the system trusts"), std::string::npos) << system.err;
  const CtlRun empty = ctl(*cluster_, 1, {"cluster", "status", "--ca-file="});
  EXPECT_EQ(empty.exit_code, app::kCtlUsage) << "an empty --ca-file is a mistake, not a default";
  // A CA file that does not exist is a TLS failure too, named.
  const CtlRun missing =
      ctl(*cluster_, 1, {"cluster", "status", "--ca-file", dir_ + "/no-such-ca.pem"});
  EXPECT_EQ(missing.exit_code, app::kCtlTlsFailed) << describe(missing);
  EXPECT_NE(missing.err.find("no-such-ca.pem"), std::string::npos) << missing.err;
  // Plain HTTP to the TLS port gets no answer it can read, and says so at once.
  const auto started = std::chrono::steady_clock::now();
  const CtlRun plain =
      ctl_argv(*cluster_, {herald_binary(), "ctl", "--token", kAdminToken, "--node",
                           fmt::format("http://127.0.0.1:{}", port()), "cluster", "status"});
  EXPECT_EQ(plain.exit_code, app::kCtlUnreachable) << describe(plain);
  EXPECT_LT(elapsed_ms(started), kRefusalBoundMs);
  // --ca-file with an http:// node is a contradiction on the command line.
  const CtlRun contradiction = ctl(
      *cluster_, 1, {"cluster", "status", "--node", fmt::format("http://127.0.0.1:{}", port())});
  EXPECT_EQ(contradiction.exit_code, app::kCtlUsage) << describe(contradiction);
  EXPECT_EQ(must(admin_->request("GET", "/v1/health"), "health").status, 200U);
}

}  // namespace
}  // namespace herald::e2e
