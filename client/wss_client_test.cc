// WsClient and AdminClient over TLS against a Herald HttpServer serving TLS (server/tls.h), with
// self-signed certificates made by the test.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "client/admin_client.h"
#include "client/ws_client.h"
#include "crypto/test_keys.h"
#include "server/http_server.h"
#include "server/tls.h"
#include "server/websocket.h"

namespace herald::client {
namespace {

namespace fs = std::filesystem;
using crypto::testing::self_signed_loopback_certificate;
using crypto::testing::SelfSignedCertificate;

constexpr std::uint32_t kReceiveTimeoutMs = 10'000;
// A client the TLS port refuses fails within this time, well before its own timeout.
constexpr std::int64_t kRefusalBoundMs = 3'000;
// The close code the echo handler closes with when asked.
constexpr std::uint16_t kAskedCloseCode = 4001;

// Echoes text; "close-me" closes with kAskedCloseCode.
class Echo final : public server::WsHandler {
 public:
  std::optional<server::HttpResponse> on_open(const std::shared_ptr<server::WsConnection>&,
                                              const server::HttpRequest&) override {
    return std::nullopt;
  }
  void on_text(const std::shared_ptr<server::WsConnection>& conn, std::string text) override {
    if (text == "close-me") {
      conn->close(kAskedCloseCode, "asked");
      return;
    }
    EXPECT_TRUE(conn->send_text(std::move(text)).ok());
  }
  void on_close(const std::shared_ptr<server::WsConnection>&) override {}
};

class WssClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    dir_ = (fs::temp_directory_path() /
            ("herald-wss-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++)))
               .string();
    fs::create_directories(dir_);
    first_ = self_signed_loopback_certificate("first");
    install(first_);
    write(ca_file(), first_.cert_pem);
    tls_ = server::TlsServerContext::load({cert_file(), key_file(), {}}).value();
    server::HttpServerConfig config;
    config.websocket_paths = {{"/ws", &echo_}};
    config.tls = tls_;
    server_ = std::make_unique<server::HttpServer>(
        std::move(config), [](server::HttpRequest&& request, const server::Responder& respond) {
          respond(server::HttpResponse::json(200, "{\"path\":\"" + request.path + "\"}"));
        });
    ASSERT_TRUE(server_->run(1).ok());
  }
  void TearDown() override {
    server_->stop();
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  [[nodiscard]] std::string cert_file() const { return dir_ + "/cert.pem"; }
  [[nodiscard]] std::string key_file() const { return dir_ + "/key.pem"; }
  [[nodiscard]] std::string ca_file() const { return dir_ + "/ca.pem"; }
  static void write(const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::trunc) << bytes;
    fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write);
  }
  void install(const SelfSignedCertificate& cert) const {
    write(cert_file(), cert.cert_pem);
    write(key_file(), cert.key_pem);
  }
  [[nodiscard]] Result<std::unique_ptr<WsClient>> connect(const std::string& ca) const {
    return WsClient::connect("127.0.0.1", server_->port(), "/ws", {}, kDefaultWsTimeoutMs,
                             ClientTls{ca});
  }
  static std::int64_t ms_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                 start)
        .count();
  }

  std::string dir_;
  SelfSignedCertificate first_;
  Echo echo_;
  std::shared_ptr<server::TlsServerContext> tls_;
  std::unique_ptr<server::HttpServer> server_;
};

TEST_F(WssClientTest, SendsReceivesAndClosesOverTls) {
  auto client = connect(ca_file());
  ASSERT_TRUE(client.ok()) << client.status().to_string();
  ASSERT_TRUE((*client)->send_text("hello over tls").ok());
  EXPECT_EQ((*client)->receive(kReceiveTimeoutMs).value(), "hello over tls");
  // The server's close handshake reaches the client through TLS.
  ASSERT_TRUE((*client)->send_text("close-me").ok());
  EXPECT_EQ((*client)->receive(kReceiveTimeoutMs).status().code(), Code::kAborted);
  EXPECT_EQ((*client)->close_code(), kAskedCloseCode);
}

TEST_F(WssClientTest, AClientCloseCompletesOverTls) {
  auto client = connect(ca_file());
  ASSERT_TRUE(client.ok()) << client.status().to_string();
  EXPECT_TRUE((*client)->close().ok());
  EXPECT_EQ((*client)->close_code(), kWsCloseNormal);
}

TEST_F(WssClientTest, AnOversizeMessageIsAnsweredWithItsCloseCodeOverTls) {
  auto client = connect(ca_file());
  ASSERT_TRUE(client.ok()) << client.status().to_string();
  const Status sent = (*client)->send_text(std::string(server::kMaxWsMessageBytes + 1, 'x'));
  (void)sent;  // the server may close before the whole message is written
  const auto reply = (*client)->receive(kReceiveTimeoutMs);
  EXPECT_FALSE(reply.ok());
  EXPECT_EQ((*client)->close_code(), server::kWsCloseMessageTooBig) << reply.status().to_string();
}

TEST_F(WssClientTest, HttpsRequestsAreAnswered) {
  const AdminClient admin("127.0.0.1", server_->port(), "", kDefaultAdminTimeoutMs,
                          ClientTls{ca_file()});
  const auto reply = admin.request("GET", "/v1/health");
  ASSERT_TRUE(reply.ok()) << reply.status().to_string();
  EXPECT_EQ(reply->status, 200U);
  EXPECT_EQ(reply->body, "{\"path\":\"/v1/health\"}");
}

TEST_F(WssClientTest, AnotherCaFailsVerification) {
  const std::string other = dir_ + "/other.pem";
  write(other, self_signed_loopback_certificate("other").cert_pem);
  const auto client = connect(other);
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), Code::kIOError);
  EXPECT_NE(client.status().message().find("certificate verify failed"), std::string::npos)
      << client.status().to_string();
  const AdminClient admin("127.0.0.1", server_->port(), "", kDefaultAdminTimeoutMs,
                          ClientTls{other});
  EXPECT_EQ(admin.request("GET", "/").status().code(), Code::kIOError);
}

TEST_F(WssClientTest, AMissingCaFileIsAnInvalidArgument) {
  EXPECT_EQ(connect(dir_ + "/absent.pem").status().code(), Code::kInvalidArgument);
}

TEST_F(WssClientTest, APlaintextClientFailsQuickly) {
  const auto start = std::chrono::steady_clock::now();
  const auto client = WsClient::connect("127.0.0.1", server_->port(), "/ws");
  EXPECT_FALSE(client.ok());
  EXPECT_LT(ms_since(start), kRefusalBoundMs) << client.status().to_string();
  const AdminClient admin("127.0.0.1", server_->port(), "");
  EXPECT_FALSE(admin.request("GET", "/").ok());
  EXPECT_LT(ms_since(start), 2 * kRefusalBoundMs);
  // The server let go of both connections (it closes them on its own strand, a moment later).
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(kRefusalBoundMs);
  while (server_->open_connections() != 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(server_->open_connections(), 0U);
}

TEST_F(WssClientTest, AReloadReachesNewConnectionsAndKeepsOpenOnes) {
  auto before = connect(ca_file());
  ASSERT_TRUE(before.ok()) << before.status().to_string();
  const SelfSignedCertificate second = self_signed_loopback_certificate("second");
  install(second);
  ASSERT_TRUE(tls_->reload().ok());
  // The open connection carries on with the certificate it was accepted with.
  ASSERT_TRUE((*before)->send_text("still here").ok());
  EXPECT_EQ((*before)->receive(kReceiveTimeoutMs).value(), "still here");
  // A new one is shown the second certificate: trusting only the first fails, the second works.
  EXPECT_EQ(connect(ca_file()).status().code(), Code::kIOError);
  const std::string second_ca = dir_ + "/second.pem";
  write(second_ca, second.cert_pem);
  auto after = connect(second_ca);
  ASSERT_TRUE(after.ok()) << after.status().to_string();
  ASSERT_TRUE((*after)->send_text("new").ok());
  EXPECT_EQ((*after)->receive(kReceiveTimeoutMs).value(), "new");
}

// Over TLS the client does not yet read the 1001 of a stopping server: its connection ends after
// the server's close timeout with 1006 (see docs/operations.md, "TLS"). What is pinned here is that
// stop() ends a TLS WebSocket within that bound.
TEST_F(WssClientTest, StopEndsTlsWebSockets) {
  auto client = connect(ca_file());
  ASSERT_TRUE(client.ok()) << client.status().to_string();
  server_->stop();
  EXPECT_FALSE((*client)->receive(kReceiveTimeoutMs).ok());
  EXPECT_TRUE((*client)->close_code().has_value());
  EXPECT_FALSE((*client)->is_open());
}

}  // namespace
}  // namespace herald::client
