#include "client/ws_client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "server/http_server.h"
#include "server/websocket.h"

namespace herald::client {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using std::chrono::milliseconds;
using ::testing::HasSubstr;

constexpr std::uint32_t kShortTimeoutMs = 300;
constexpr milliseconds kWaitTimeout{10'000};
// Far more than loopback socket buffers hold: a peer that never reads makes a send time out.
constexpr std::size_t kMaxUnreadBytes = std::size_t{256} * 1024 * 1024;
// One message of the flood that makes a send time out.
constexpr std::size_t kUnreadChunkBytes = std::size_t{1024} * 1024;
// Messages over server::kMaxWsMessageBytes; the server closes while most of each is still arriving.
constexpr std::array<std::size_t, 3> kOversizeMessageBytes = {
    server::kMaxWsMessageBytes + 1, std::size_t{1024} * 1024, std::size_t{4} * 1024 * 1024};
// How often a close that races the client's send is repeated within one test.
constexpr int kCloseRaceRuns = 10;

bool wait_until(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + kWaitTimeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(milliseconds(2));
  }
  return true;
}

// Echoes text, except "close-me", which closes with 4001 "asked"; refuses with 401 when a
// refusal is given. Records the upgrade requests and the closes.
class EchoHandler final : public server::WsHandler {
 public:
  explicit EchoHandler(std::optional<server::HttpResponse> refusal = std::nullopt)
      : refusal_(std::move(refusal)) {}

  std::optional<server::HttpResponse> on_open(const std::shared_ptr<server::WsConnection>& conn,
                                              const server::HttpRequest& upgrade_request) override {
    std::lock_guard lock(mu_);
    requests_.push_back(upgrade_request);
    return refusal_;
  }
  void on_text(const std::shared_ptr<server::WsConnection>& conn, std::string text) override {
    if (text == "close-me") {
      conn->close(4001, "asked");
      return;
    }
    const Status status = conn->send_text(std::move(text));
    EXPECT_TRUE(status.ok()) << status.to_string();
  }
  void on_close(const std::shared_ptr<server::WsConnection>& conn) override {
    std::lock_guard lock(mu_);
    ++closed_;
  }

  [[nodiscard]] std::size_t closed() const {
    std::lock_guard lock(mu_);
    return closed_;
  }
  [[nodiscard]] server::HttpRequest request(std::size_t i) const {
    std::lock_guard lock(mu_);
    return requests_.at(i);
  }

 private:
  const std::optional<server::HttpResponse> refusal_;
  mutable std::mutex mu_;
  std::vector<server::HttpRequest> requests_;
  std::size_t closed_ = 0;
};

// A Herald HttpServer with the echo endpoint at /ws and a refusing one at /refuse.
class WsClientTest : public ::testing::Test {
 protected:
  void start(server::HttpServerConfig config = {}) {
    config.websocket_paths = {{"/ws", &echo_}, {"/refuse", &refusing_}};
    server_ = std::make_unique<server::HttpServer>(
        std::move(config), [](server::HttpRequest&&, const server::Responder& respond) {
          respond(server::HttpResponse::error(404, "not_found", "no such route"));
        });
    const Status status = server_->run(1);
    ASSERT_TRUE(status.ok()) << status.to_string();
  }
  std::unique_ptr<WsClient> connect(const std::string& path = "/ws",
                                    WsClient::Headers headers = {}) {
    auto client = WsClient::connect("127.0.0.1", server_->port(), path, std::move(headers));
    EXPECT_TRUE(client.ok()) << client.status().to_string();
    return client.ok() ? std::move(client).value() : nullptr;
  }

  EchoHandler echo_;
  EchoHandler refusing_{server::HttpResponse::error(401, "unauthenticated", "a token please")};
  std::unique_ptr<server::HttpServer> server_;
};

TEST_F(WsClientTest, SendsAndReceivesTextWithCustomHeaders) {
  start();
  auto client = connect("/ws?v=1", {{"X-Device", "phone-7"}});
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->send_text("hello").ok());
  auto reply = client->receive(kWaitTimeout.count());
  ASSERT_TRUE(reply.ok()) << reply.status().to_string();
  EXPECT_EQ(*reply, "hello");
  EXPECT_TRUE(client->is_open());
  EXPECT_FALSE(client->close_code().has_value());
  EXPECT_EQ(echo_.request(0).header("x-device"), "phone-7");
  EXPECT_EQ(echo_.request(0).query.at("v"), "1");
}

TEST_F(WsClientTest, HostNameIsResolved) {
  start();
  auto client = WsClient::connect("localhost", server_->port(), "/ws");
  ASSERT_TRUE(client.ok()) << client.status().to_string();
  ASSERT_TRUE((*client)->send_text("by name").ok());
  EXPECT_EQ((*client)->receive(kWaitTimeout.count()).value(), "by name");
}

TEST_F(WsClientTest, ReceiveTimesOutAndTheConnectionStaysUsable) {
  start();
  auto client = connect();
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(client->receive(kShortTimeoutMs).status().code(), Code::kTimeout);
  ASSERT_TRUE(client->send_text("later").ok());
  auto reply = client->receive(kWaitTimeout.count());
  ASSERT_TRUE(reply.ok()) << reply.status().to_string();
  EXPECT_EQ(*reply, "later");
}

TEST_F(WsClientTest, AWaitingReceiveAnswersPingsSoTheServerKeepsTheConnection) {
  server::HttpServerConfig config;
  config.ws_idle_timeout_ms = 100;
  start(std::move(config));
  auto client = connect();
  ASSERT_NE(client, nullptr);
  // Several idle timeouts pass while receive() waits and answers the server's pings.
  EXPECT_EQ(client->receive(kShortTimeoutMs * 2).status().code(), Code::kTimeout);
  EXPECT_EQ(echo_.closed(), 0U);
  ASSERT_TRUE(client->send_text("alive").ok());
  EXPECT_EQ(client->receive(kWaitTimeout.count()).value(), "alive");
}

TEST_F(WsClientTest, ServerCloseIsReportedWithCodeAndReason) {
  start();
  auto client = connect();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->send_text("close-me").ok());
  auto ended = client->receive(kWaitTimeout.count());
  EXPECT_EQ(ended.status().code(), Code::kAborted);
  EXPECT_THAT(ended.status().message(), HasSubstr("4001"));
  EXPECT_EQ(client->close_code(), 4001);
  EXPECT_EQ(client->close_reason(), "asked");
  EXPECT_FALSE(client->is_open());
  // Every later call fails; receive() keeps reporting how the connection ended.
  EXPECT_EQ(client->receive(kShortTimeoutMs).status().code(), Code::kAborted);
  EXPECT_EQ(client->send_text("late").code(), Code::kFailedPrecondition);
  EXPECT_EQ(client->close().code(), Code::kFailedPrecondition);
}

TEST_F(WsClientTest, ServerCloseReachesAReceiveThatTimedOutBefore) {
  start();
  auto client = connect();
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(client->receive(kShortTimeoutMs).status().code(), Code::kTimeout);
  ASSERT_TRUE(client->send_text("close-me").ok());
  EXPECT_EQ(client->receive(kWaitTimeout.count()).status().code(), Code::kAborted);
  EXPECT_EQ(client->close_code(), 4001);
}

TEST_F(WsClientTest, ServerStopWhileReceivingIsReportedAsGoingAway) {
  start();
  auto client = connect();
  ASSERT_NE(client, nullptr);
  std::thread stopper([&] {
    ASSERT_TRUE(wait_until([&] { return server_->open_connections() == 1; }));
    server_->stop();
  });
  EXPECT_EQ(client->receive(kWaitTimeout.count()).status().code(), Code::kAborted);
  EXPECT_EQ(client->close_code(), server::kWsCloseGoingAway);
  stopper.join();
  EXPECT_EQ(echo_.closed(), 1U);
}

TEST_F(WsClientTest, BinaryMessageIsClosedWith1003ByTheServer) {
  start();
  auto client = connect();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->send_binary(std::string("\x00\x01", 2)).ok());
  EXPECT_EQ(client->receive(kWaitTimeout.count()).status().code(), Code::kAborted);
  EXPECT_EQ(client->close_code(), server::kWsCloseUnsupportedData);
}

TEST_F(WsClientTest, OversizeMessageIsClosedWith1009ByTheServer) {
  start();
  for (const std::size_t message_bytes : kOversizeMessageBytes) {
    const std::string message(message_bytes, 'x');
    for (int run = 0; run < kCloseRaceRuns; ++run) {
      auto client = connect();
      ASSERT_NE(client, nullptr);
      // The server closes while the message is still arriving and drains the rest, so the send
      // completes and the close frame is read after it.
      const Status sent = client->send_text(message);
      EXPECT_TRUE(sent.ok()) << message_bytes << " bytes, run " << run << ": " << sent.to_string();
      EXPECT_EQ(client->receive(kWaitTimeout.count()).status().code(), Code::kAborted);
      EXPECT_EQ(client->close_code(), server::kWsCloseMessageTooBig)
          << message_bytes << " bytes, run " << run;
    }
  }
}

TEST_F(WsClientTest, CloseCompletesTheHandshake) {
  start();
  auto client = connect();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->close(server::kWsCloseNormal, "bye").ok());
  EXPECT_FALSE(client->is_open());
  EXPECT_EQ(client->close_code(), server::kWsCloseNormal);
  EXPECT_EQ(client->send_text("late").code(), Code::kFailedPrecondition);
  ASSERT_TRUE(wait_until([&] { return echo_.closed() == 1; }));
}

TEST_F(WsClientTest, RefusedUpgradeReportsTheHttpStatusAndBody) {
  start();
  auto refused = WsClient::connect("127.0.0.1", server_->port(), "/refuse");
  EXPECT_EQ(refused.status().code(), Code::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("HTTP 401"));
  EXPECT_THAT(refused.status().message(), HasSubstr("unauthenticated"));
  auto missing = WsClient::connect("127.0.0.1", server_->port(), "/nowhere");
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
}

TEST(WsClient, ConnectToAClosedPortFails) {
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const std::uint16_t port = acceptor.local_endpoint().port();
  acceptor.close();
  auto client = WsClient::connect("127.0.0.1", port, "/ws", {}, kShortTimeoutMs);
  EXPECT_EQ(client.status().code(), Code::kIOError) << client.status().to_string();
}

TEST(WsClient, ConnectTimesOutWhenTheServerNeverAnswers) {
  // The kernel completes the TCP handshake from the backlog; nobody answers the upgrade.
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const auto started = std::chrono::steady_clock::now();
  auto client =
      WsClient::connect("127.0.0.1", acceptor.local_endpoint().port(), "/ws", {}, kShortTimeoutMs);
  EXPECT_EQ(client.status().code(), Code::kTimeout) << client.status().to_string();
  EXPECT_LT(std::chrono::steady_clock::now() - started, kWaitTimeout);
}

TEST(WsClient, SendTimesOutWhenThePeerNeverReads) {
  // A bare Beast server that completes the handshake and then never reads.
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  std::promise<void> done;
  std::thread peer([&] {
    websocket::stream<tcp::socket> ws(acceptor.accept());
    ws.accept();
    done.get_future().wait();
  });
  auto client =
      WsClient::connect("127.0.0.1", acceptor.local_endpoint().port(), "/ws", {}, kShortTimeoutMs);
  ASSERT_TRUE(client.ok()) << client.status().to_string();
  const std::string chunk(kUnreadChunkBytes, 'z');
  Status sent;
  for (std::size_t total = 0; sent.ok() && total < kMaxUnreadBytes; total += chunk.size()) {
    sent = (*client)->send_text(chunk);
  }
  EXPECT_EQ(sent.code(), Code::kTimeout) << sent.to_string();
  EXPECT_FALSE((*client)->is_open());
  EXPECT_EQ((*client)->close_code(), kWsCloseAbnormal);
  done.set_value();
  peer.join();
}

}  // namespace
}  // namespace herald::client
