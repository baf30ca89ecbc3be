#include "server/websocket.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <boost/json/parse.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "server/http_server.h"

namespace herald::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using std::chrono::milliseconds;

constexpr milliseconds kWaitTimeout{10'000};
constexpr std::size_t kFloodMessageBytes = std::size_t{16} * 1024;
constexpr std::size_t kSmallQueueBytes = std::size_t{64} * 1024;
constexpr std::chrono::microseconds kFloodPace{100};
// Loopback socket buffers hold a few MiB; a flood accepted beyond this was not bounded.
constexpr std::size_t kMaxAcceptedFloodBytes = std::size_t{64} * 1024 * 1024;
// Single frames over kMaxWsMessageBytes: the server fails the connection while most of each is
// still arriving, and the client must still read the close frame.
constexpr std::array<std::size_t, 3> kOversizeFrameBytes = {
    std::size_t{300} * 1024, std::size_t{1024} * 1024, std::size_t{4} * 1024 * 1024};
// A text frame under the message limit whose first byte is not UTF-8: the server fails the
// connection with 1007 while the rest of the frame is still arriving.
constexpr std::size_t kInvalidUtf8FrameBytes = std::size_t{200} * 1024;
// Text messages a client sends after its binary one, before it reads the server's close.
constexpr std::size_t kFollowUpMessageBytes = std::size_t{200} * 1024;
// How often a close that races the client's sending is repeated within one test.
constexpr int kCloseRaceRuns = 20;
// Far more than the server drains from a client it has closed.
constexpr std::size_t kFloodFrameBytes = std::size_t{64} * 1024 * 1024;

// The start of a masked text frame whose header announces `payload_bytes`: the header and only
// `sent_bytes` of the payload.
std::string partial_text_frame(std::uint64_t payload_bytes, std::size_t sent_bytes) {
  std::string frame = {'\x81', '\xff'};  // FIN, text; masked, 64-bit length
  for (int shift = 56; shift >= 0; shift -= 8) {
    frame.push_back(static_cast<char>((payload_bytes >> shift) & 0xffU));
  }
  frame.append(4, '\0');  // a zero masking key leaves the payload as sent
  frame.append(sent_bytes, 'p');
  return frame;
}

bool wait_until(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + kWaitTimeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(milliseconds(2));
  }
  return true;
}

tcp::endpoint local(std::uint16_t port) {
  return {asio::ip::make_address("127.0.0.1"), port};
}

// The "code" of a JSON error body, or "" when the body is not one.
std::string error_code_of(const std::string& body) {
  boost::system::error_code ec;
  const boost::json::value value = boost::json::parse(body, ec);
  if (ec || !value.is_object() || !value.as_object().contains("error")) return "";
  return std::string(value.at("error").at("code").as_string());
}

// Sends `raw` on a new connection and reads one HTTP response, all within kWaitTimeout.
http::response<http::string_body> http_exchange(std::uint16_t port, const std::string& raw) {
  asio::io_context io;
  beast::tcp_stream stream(io);
  beast::flat_buffer buffer;
  http::response<http::string_body> response;
  beast::error_code result;
  stream.expires_after(kWaitTimeout);
  stream.async_connect(local(port), [&](const beast::error_code& ec) {
    result = ec;
    if (ec) return;
    asio::async_write(stream, asio::buffer(raw), [&](const beast::error_code& wec, std::size_t) {
      result = wec;
      if (wec) return;
      http::async_read(stream, buffer, response,
                       [&](const beast::error_code& rec, std::size_t) { result = rec; });
    });
  });
  io.run();
  EXPECT_FALSE(result) << result.message();
  return response;  // NOLINT(clang-analyzer-cplusplus.Move): written through a reference only
}

// A raw Beast WebSocket client, independent of client/WsClient so that the server is checked
// against a second implementation. Every operation is bounded by kWaitTimeout; one that times
// out breaks the connection and reports beast::error::timeout.
class RawWs {
 public:
  RawWs(std::uint16_t port, const std::string& path) : ws_(io_) {
    handshake_result_ = await(
        [&](const Done& done) { beast::get_lowest_layer(ws_).async_connect(local(port), done); });
    if (handshake_result_) return;
    handshake_result_ =
        await([&](const Done& done) { ws_.async_handshake(response_, "127.0.0.1", path, done); });
  }
  [[nodiscard]] bool open() const { return !handshake_result_; }
  [[nodiscard]] const beast::error_code& handshake_result() const { return handshake_result_; }
  [[nodiscard]] const websocket::response_type& response() const { return response_; }
  // From now on each message is sent as one frame (Beast otherwise splits a large one).
  void send_messages_whole() { ws_.auto_fragment(false); }

  // Writes `bytes` to the socket as they are, outside the WebSocket's framing.
  beast::error_code write_raw(const std::string& bytes) {
    return await([&](const Done& done) {
      asio::async_write(beast::get_lowest_layer(ws_), asio::buffer(bytes),
                        [done](const beast::error_code& ec, std::size_t) { done(ec); });
    });
  }
  beast::error_code write(const std::string& payload, bool binary = false) {
    ws_.binary(binary);
    return await([&](const Done& done) {
      ws_.async_write(asio::buffer(payload),
                      [done](const beast::error_code& ec, std::size_t) { done(ec); });
    });
  }
  // One message into `out`; websocket::error::closed when the server closed (see close_code()).
  beast::error_code read(std::string& out) {
    beast::flat_buffer buffer;
    const beast::error_code ec = await([&](const Done& done) {
      ws_.async_read(buffer, [done](const beast::error_code& rec, std::size_t) { done(rec); });
    });
    out = beast::buffers_to_string(buffer.data());
    return ec;
  }
  // Reads until the server closes; the close code, or 0 when the connection ended otherwise.
  // Stores the messages read on the way in `seen` when given.
  std::uint16_t read_until_closed(std::vector<std::string>* seen = nullptr) {
    for (;;) {
      std::string message;
      const beast::error_code ec = read(message);
      if (ec == websocket::error::closed) return ws_.reason().code;
      if (ec) return 0;
      if (seen != nullptr) seen->push_back(std::move(message));
    }
  }
  // The code of the close frame received, whatever happened after it; 0 when none arrived.
  [[nodiscard]] std::uint16_t received_close_code() const { return ws_.reason().code; }
  [[nodiscard]] std::string close_reason() const {
    return std::string(ws_.reason().reason.data(), ws_.reason().reason.size());
  }
  beast::error_code close(std::uint16_t code) {
    return await([&](const Done& done) { ws_.async_close(websocket::close_reason(code), done); });
  }

 private:
  using Done = std::function<void(const beast::error_code&)>;

  beast::error_code await(const std::function<void(const Done&)>& start) {
    std::optional<beast::error_code> result;
    start([&result](const beast::error_code& ec) { result = ec; });
    io_.restart();
    const auto deadline = std::chrono::steady_clock::now() + kWaitTimeout;
    while (!result.has_value() && io_.run_one_until(deadline) > 0) {
    }
    if (result.has_value()) return *result;
    beast::get_lowest_layer(ws_).close();  // completes the operation, which refers to `result`
    io_.restart();
    while (!result.has_value() && io_.run_one() > 0) {
    }
    return beast::error::timeout;
  }

  asio::io_context io_;
  websocket::stream<beast::tcp_stream> ws_;
  websocket::response_type response_;
  beast::error_code handshake_result_;
};

// Records every call and, unless told otherwise, echoes each text message. Checks that calls for
// one connection never overlap.
class RecordingHandler final : public WsHandler {
 public:
  explicit RecordingHandler(std::optional<HttpResponse> refusal = std::nullopt, bool echo = true)
      : refusal_(std::move(refusal)), echo_(echo) {}

  std::optional<HttpResponse> on_open(const std::shared_ptr<WsConnection>& conn,
                                      const HttpRequest& upgrade_request) override {
    std::lock_guard lock(mu_);
    opened_.push_back(conn);
    requests_.push_back(upgrade_request);
    return refusal_;
  }
  void on_text(const std::shared_ptr<WsConnection>& conn, std::string text) override {
    EXPECT_FALSE(in_on_text_.exchange(true)) << "on_text calls overlap";
    if (echo_) {
      const Status status = conn->send_text(text);
      EXPECT_TRUE(status.ok()) << status.to_string();
    }
    {
      std::lock_guard lock(mu_);
      texts_.push_back(std::move(text));
    }
    in_on_text_ = false;
  }
  void on_close(const std::shared_ptr<WsConnection>& conn) override {
    std::lock_guard lock(mu_);
    closed_ids_.push_back(conn->id());
  }

  [[nodiscard]] std::size_t opened() const {
    std::lock_guard lock(mu_);
    return opened_.size();
  }
  [[nodiscard]] std::size_t closed() const {
    std::lock_guard lock(mu_);
    return closed_ids_.size();
  }
  [[nodiscard]] std::shared_ptr<WsConnection> connection(std::size_t i) const {
    std::lock_guard lock(mu_);
    return opened_.at(i);
  }
  [[nodiscard]] HttpRequest request(std::size_t i) const {
    std::lock_guard lock(mu_);
    return requests_.at(i);
  }
  [[nodiscard]] std::vector<std::string> texts() const {
    std::lock_guard lock(mu_);
    return texts_;
  }
  [[nodiscard]] std::vector<std::uint64_t> closed_ids() const {
    std::lock_guard lock(mu_);
    return closed_ids_;
  }

 private:
  const std::optional<HttpResponse> refusal_;
  const bool echo_;
  std::atomic<bool> in_on_text_{false};
  mutable std::mutex mu_;
  std::vector<std::shared_ptr<WsConnection>> opened_;
  std::vector<HttpRequest> requests_;
  std::vector<std::string> texts_;
  std::vector<std::uint64_t> closed_ids_;
};

// A server with an echoing WebSocket endpoint at /ws, a silent one at /quiet, one that refuses
// with 401 at /refuse, and plain HTTP everywhere else answered "plain <path>".
class WebSocketTest : public ::testing::Test {
 protected:
  void start(HttpServerConfig config = {}) {
    config.websocket_paths = {{"/ws", &echo_}, {"/quiet", &quiet_}, {"/refuse", &refusing_}};
    server_ = std::make_unique<HttpServer>(
        std::move(config), [](HttpRequest&& request, const Responder& respond) {
          respond(HttpResponse{200, "text/plain", "plain " + request.path, {}});
        });
    const Status status = server_->run(2);
    ASSERT_TRUE(status.ok()) << status.to_string();
  }
  [[nodiscard]] std::uint16_t port() const { return server_->port(); }
  // The connection the handler saw open as its i-th, once it has.
  static std::shared_ptr<WsConnection> opened(const RecordingHandler& handler, std::size_t i) {
    EXPECT_TRUE(wait_until([&] { return handler.opened() > i; }));
    return handler.connection(i);
  }

  // Declared before the server: handlers must outlive it.
  RecordingHandler echo_;
  RecordingHandler quiet_{std::nullopt, /*echo=*/false};
  RecordingHandler refusing_{HttpResponse::error(401, "unauthenticated", "a token is required")};
  std::unique_ptr<HttpServer> server_;
};

TEST_F(WebSocketTest, EchoRoundTrip) {
  start();
  RawWs ws(port(), "/ws?device=d1");
  ASSERT_TRUE(ws.open()) << ws.handshake_result().message();
  EXPECT_EQ(ws.response().result_int(), 101U);
  EXPECT_EQ(ws.response()[http::field::server], "herald");
  ASSERT_FALSE(ws.write("hello"));
  std::string reply;
  ASSERT_FALSE(ws.read(reply));
  EXPECT_EQ(reply, "hello");

  const HttpRequest request = echo_.request(0);
  EXPECT_EQ(request.path, "/ws");
  EXPECT_EQ(request.query.at("device"), "d1");
  EXPECT_TRUE(request.header("Sec-WebSocket-Key").has_value());
  EXPECT_EQ(server_->open_connections(), 1U);
}

TEST_F(WebSocketTest, ManyMessagesKeepTheirOrderBothWays) {
  start();
  RawWs ws(port(), "/ws");
  ASSERT_TRUE(ws.open());
  constexpr int kMessages = 500;
  for (int i = 0; i < kMessages; ++i) ASSERT_FALSE(ws.write("up-" + std::to_string(i)));
  for (int i = 0; i < kMessages; ++i) {
    std::string reply;
    ASSERT_FALSE(ws.read(reply));
    ASSERT_EQ(reply, "up-" + std::to_string(i));
  }

  const std::shared_ptr<WsConnection> conn = opened(echo_, 0);
  std::thread producer([&] {
    for (int i = 0; i < kMessages; ++i) {
      const Status status = conn->send_text("down-" + std::to_string(i));
      EXPECT_TRUE(status.ok()) << status.to_string();
    }
  });
  for (int i = 0; i < kMessages; ++i) {
    std::string message;
    ASSERT_FALSE(ws.read(message));
    ASSERT_EQ(message, "down-" + std::to_string(i));
  }
  producer.join();
}

TEST_F(WebSocketTest, MessageAtTheLimitIsAccepted) {
  start();
  RawWs ws(port(), "/ws");
  ASSERT_TRUE(ws.open());
  const std::string big(kMaxWsMessageBytes, 'm');
  ASSERT_FALSE(ws.write(big));
  std::string reply;
  ASSERT_FALSE(ws.read(reply));
  EXPECT_EQ(reply, big);
}

TEST_F(WebSocketTest, OversizeMessageClosesWith1009AndOthersCarryOn) {
  start();
  RawWs bystander(port(), "/ws");
  RawWs ws(port(), "/ws");
  ASSERT_TRUE(bystander.open());
  ASSERT_TRUE(ws.open());
  ASSERT_FALSE(ws.write(std::string(kMaxWsMessageBytes + 1, 'x')));
  EXPECT_EQ(ws.read_until_closed(), kWsCloseMessageTooBig);
  ASSERT_TRUE(wait_until([&] { return echo_.closed() == 1; }));

  ASSERT_FALSE(bystander.write("still here"));
  std::string reply;
  ASSERT_FALSE(bystander.read(reply));
  EXPECT_EQ(reply, "still here");
  RawWs newcomer(port(), "/ws");
  EXPECT_TRUE(newcomer.open());
}

TEST_F(WebSocketTest, OversizeFramesAlwaysReachTheClientAs1009AndOthersCarryOn) {
  start();
  RawWs bystander(port(), "/ws");
  ASSERT_TRUE(bystander.open());
  std::size_t closed_by_server = 0;
  for (const std::size_t frame_bytes : kOversizeFrameBytes) {
    const std::string payload(frame_bytes, 'x');
    for (int run = 0; run < kCloseRaceRuns; ++run) {
      RawWs ws(port(), "/ws");
      ASSERT_TRUE(ws.open());
      ws.send_messages_whole();
      // The server drains the rest of the frame, so the client's own write completes too.
      const beast::error_code written = ws.write(payload);
      EXPECT_FALSE(written) << frame_bytes << " bytes, run " << run << ": " << written.message();
      EXPECT_EQ(ws.read_until_closed(), kWsCloseMessageTooBig)
          << frame_bytes << " bytes, run " << run;
      ++closed_by_server;
    }
  }
  ASSERT_TRUE(wait_until([&] { return echo_.closed() == closed_by_server; }));
  EXPECT_TRUE(echo_.texts().empty());

  ASSERT_FALSE(bystander.write("still here"));
  std::string reply;
  ASSERT_FALSE(bystander.read(reply));
  EXPECT_EQ(reply, "still here");
  ASSERT_TRUE(wait_until([&] { return server_->open_connections() == 1; }));
}

TEST_F(WebSocketTest, AClientStalledMidFrameGets1009AndIsDroppedAfterTheLinger) {
  start();
  RawWs ws(port(), "/ws");
  ASSERT_TRUE(ws.open());
  // Announces a frame over the limit, sends a little of it, then neither sends nor closes.
  ASSERT_FALSE(ws.write_raw(partial_text_frame(kMaxWsMessageBytes + 1, 1024)));
  const auto started = std::chrono::steady_clock::now();
  ASSERT_TRUE(wait_until([&] { return echo_.closed() == 1; }));
  EXPECT_LT(std::chrono::steady_clock::now() - started, milliseconds(kWsCloseTimeoutMs));
  EXPECT_EQ(server_->open_connections(), 0U);
  // The server's socket is gone by now, so the client's answer to the close frame may be reset.
  ws.read_until_closed();
  EXPECT_EQ(ws.received_close_code(), kWsCloseMessageTooBig);
}

TEST_F(WebSocketTest, AClientThatKeepsSendingIsCutOffAfterTheLingerBudget) {
  start();
  RawWs bystander(port(), "/ws");
  RawWs ws(port(), "/ws");
  ASSERT_TRUE(bystander.open());
  ASSERT_TRUE(ws.open());
  ws.send_messages_whole();
  EXPECT_TRUE(ws.write(std::string(kFloodFrameBytes, 'f')));  // the server stops draining
  ASSERT_TRUE(wait_until([&] { return echo_.closed() == 1; }));

  ASSERT_FALSE(bystander.write("still here"));
  std::string reply;
  ASSERT_FALSE(bystander.read(reply));
  EXPECT_EQ(reply, "still here");
}

TEST_F(WebSocketTest, InvalidUtf8EarlyInALargeFrameAlwaysReachesTheClientAs1007) {
  start();
  std::string payload(kInvalidUtf8FrameBytes, 'u');
  payload.front() = '\xff';
  for (int run = 0; run < kCloseRaceRuns; ++run) {
    RawWs ws(port(), "/ws");
    ASSERT_TRUE(ws.open());
    ws.send_messages_whole();
    const beast::error_code written = ws.write(payload);
    EXPECT_FALSE(written) << "run " << run << ": " << written.message();
    EXPECT_EQ(ws.read_until_closed(), 1007) << "run " << run;
  }
  ASSERT_TRUE(wait_until([&] { return echo_.closed() == kCloseRaceRuns; }));
}

TEST_F(WebSocketTest, BinaryMessageFollowedByMoreMessagesStillReachesTheClientAs1003) {
  start();
  const std::string follow_up(kFollowUpMessageBytes, 'f');
  for (int run = 0; run < kCloseRaceRuns; ++run) {
    RawWs ws(port(), "/ws");
    ASSERT_TRUE(ws.open());
    ws.send_messages_whole();
    ASSERT_FALSE(ws.write("\x01\x02", /*binary=*/true));
    // Written before the client reads anything, so they cross the server's close frame.
    for (int i = 0; i < 3; ++i) {
      const beast::error_code written = ws.write(follow_up);
      EXPECT_FALSE(written) << "run " << run << ": " << written.message();
    }
    EXPECT_EQ(ws.read_until_closed(), kWsCloseUnsupportedData) << "run " << run;
  }
  ASSERT_TRUE(wait_until([&] { return echo_.closed() == kCloseRaceRuns; }));
  EXPECT_TRUE(echo_.texts().empty());
}

TEST_F(WebSocketTest, BinaryMessageClosesWith1003) {
  start();
  RawWs ws(port(), "/ws");
  ASSERT_TRUE(ws.open());
  ASSERT_FALSE(ws.write("\x01\x02", /*binary=*/true));
  EXPECT_EQ(ws.read_until_closed(), kWsCloseUnsupportedData);
  ASSERT_TRUE(wait_until([&] { return echo_.closed() == 1; }));
  EXPECT_TRUE(echo_.texts().empty());
}

TEST_F(WebSocketTest, InvalidUtf8ClosesWith1007) {
  start();
  RawWs ws(port(), "/ws");
  ASSERT_TRUE(ws.open());
  ASSERT_FALSE(ws.write("bad \xff byte"));
  EXPECT_EQ(ws.read_until_closed(), 1007);
  ASSERT_TRUE(wait_until([&] { return echo_.closed() == 1; }));
}

TEST_F(WebSocketTest, UpgradeToAnUnregisteredPathIs404) {
  start();
  RawWs ws(port(), "/elsewhere");
  EXPECT_EQ(ws.handshake_result(), websocket::error::upgrade_declined);
  EXPECT_EQ(ws.response().result_int(), 404U);
  EXPECT_EQ(error_code_of(ws.response().body()), "not_found");
  EXPECT_EQ(echo_.opened(), 0U);
}

TEST_F(WebSocketTest, OtherProtocolUpgradeIs501) {
  start();
  auto response = http_exchange(
      port(), "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n");
  EXPECT_EQ(response.result_int(), 501U);
  EXPECT_EQ(error_code_of(response.body()), "not_implemented");
}

TEST_F(WebSocketTest, MalformedWebSocketUpgradeIs400) {
  start();
  auto response = http_exchange(port(),
                                "POST /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n"
                                "Upgrade: websocket\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(response.result_int(), 400U);
  EXPECT_EQ(error_code_of(response.body()), "bad_request");
  EXPECT_EQ(echo_.opened(), 0U);
}

TEST_F(WebSocketTest, RefusedUpgradeAnswersTheHandlersResponse) {
  start();
  {
    RawWs ws(port(), "/refuse");
    EXPECT_EQ(ws.handshake_result(), websocket::error::upgrade_declined);
    EXPECT_EQ(ws.response().result_int(), 401U);
    EXPECT_EQ(error_code_of(ws.response().body()), "unauthenticated");
  }
  const std::shared_ptr<WsConnection> conn = opened(refusing_, 0);
  EXPECT_EQ(conn->send_text("x").code(), Code::kFailedPrecondition);
  ASSERT_TRUE(wait_until([&] { return server_->open_connections() == 0; }));
  EXPECT_EQ(refusing_.closed(), 0U);
}

TEST_F(WebSocketTest, SlowConsumerIsClosedWith1008AndMemoryStaysBounded) {
  HttpServerConfig config;
  config.ws_max_queued_bytes = kSmallQueueBytes;
  start(std::move(config));
  RawWs ws(port(), "/quiet");
  ASSERT_TRUE(ws.open());
  const std::shared_ptr<WsConnection> conn = opened(quiet_, 0);

  // The client reads nothing until the server gives up on it. The producer is paced, so the
  // socket buffers fill before the queue does: the queue bound stops a consumer that stalls, not
  // only a burst.
  const std::string chunk(kFloodMessageBytes, 'f');
  std::size_t accepted_bytes = 0;
  Status refused;
  while (accepted_bytes <= kMaxAcceptedFloodBytes) {
    refused = conn->send_text(chunk);
    if (!refused.ok()) break;
    accepted_bytes += chunk.size();
    std::this_thread::sleep_for(kFloodPace);
  }
  // At least the queue's worth was accepted (usually more: the socket takes some before it
  // stalls, unless the io thread was not scheduled while the producer ran).
  EXPECT_GE(accepted_bytes, kSmallQueueBytes);
  EXPECT_EQ(refused.code(), Code::kResourceExhausted) << refused.to_string();
  EXPECT_LE(accepted_bytes, kMaxAcceptedFloodBytes);
  EXPECT_EQ(conn->send_text(chunk).code(), Code::kFailedPrecondition);

  std::vector<std::string> seen;
  EXPECT_EQ(ws.read_until_closed(&seen), kWsClosePolicyViolation);
  EXPECT_EQ(ws.close_reason(), "slow consumer");
  EXPECT_LE(seen.size() * kFloodMessageBytes, accepted_bytes);
  ASSERT_TRUE(wait_until([&] { return quiet_.closed() == 1; }));
}

TEST_F(WebSocketTest, OneMessageLargerThanTheQueueIsRefusedAndTheConnectionCarriesOn) {
  HttpServerConfig config;
  config.ws_max_queued_bytes = kSmallQueueBytes;
  start(std::move(config));
  RawWs ws(port(), "/ws");
  ASSERT_TRUE(ws.open());
  const std::shared_ptr<WsConnection> conn = opened(echo_, 0);
  EXPECT_EQ(conn->send_text(std::string(kSmallQueueBytes + 1, 'q')).code(), Code::kInvalidArgument);
  ASSERT_FALSE(ws.write("after"));
  std::string reply;
  ASSERT_FALSE(ws.read(reply));
  EXPECT_EQ(reply, "after");
}

TEST_F(WebSocketTest, QueuedMessagesAreWrittenBeforeTheCloseFrame) {
  start();
  RawWs ws(port(), "/quiet");
  ASSERT_TRUE(ws.open());
  const std::shared_ptr<WsConnection> conn = opened(quiet_, 0);
  ASSERT_TRUE(conn->send_text("first").ok());
  ASSERT_TRUE(conn->send_text("second").ok());
  conn->close(4000, "done");
  std::vector<std::string> seen;
  EXPECT_EQ(ws.read_until_closed(&seen), 4000);
  EXPECT_EQ(ws.close_reason(), "done");
  EXPECT_EQ(seen, (std::vector<std::string>{"first", "second"}));
  ASSERT_TRUE(wait_until([&] { return quiet_.closed() == 1; }));
}

TEST_F(WebSocketTest, SendTextAfterCloseFails) {
  start();
  RawWs closed_by_server(port(), "/quiet");
  RawWs closed_by_client(port(), "/quiet");
  ASSERT_TRUE(closed_by_server.open());
  ASSERT_TRUE(closed_by_client.open());
  const std::shared_ptr<WsConnection> first = opened(quiet_, 0);
  const std::shared_ptr<WsConnection> second = opened(quiet_, 1);

  first->close(kWsCloseNormal, "bye");
  EXPECT_EQ(first->send_text("late").code(), Code::kFailedPrecondition);
  first->close(kWsCloseNormal, "twice has no effect");
  EXPECT_EQ(closed_by_server.read_until_closed(), kWsCloseNormal);
  EXPECT_EQ(closed_by_server.close_reason(), "bye");

  ASSERT_FALSE(closed_by_client.close(kWsCloseNormal));
  ASSERT_TRUE(wait_until([&] { return quiet_.closed() == 2; }));
  EXPECT_EQ(second->send_text("late").code(), Code::kFailedPrecondition);
  // Each closed once; in either order (the server-closed one lingers until its client lets go).
  std::vector<std::uint64_t> closed = quiet_.closed_ids();
  std::sort(closed.begin(), closed.end());
  std::vector<std::uint64_t> expected{first->id(), second->id()};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(closed, expected);
}

TEST_F(WebSocketTest, StopClosesEveryWebSocketWith1001AndCallsOnCloseForEach) {
  start();
  std::vector<std::unique_ptr<RawWs>> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(std::make_unique<RawWs>(port(), "/ws"));
    ASSERT_TRUE(clients.back()->open());
  }
  ASSERT_TRUE(wait_until([&] { return echo_.opened() == 3; }));
  // Each client reads on its own thread, as a live client would, and so answers the close.
  std::vector<std::uint16_t> codes(clients.size());
  std::vector<std::thread> readers;
  for (std::size_t i = 0; i < clients.size(); ++i) {
    readers.emplace_back([&, i] { codes[i] = clients[i]->read_until_closed(); });
  }
  const auto started = std::chrono::steady_clock::now();
  server_->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - started, milliseconds(kWsCloseTimeoutMs));
  EXPECT_EQ(echo_.closed(), 3U);  // before stop() returned
  EXPECT_EQ(echo_.connection(0)->send_text("late").code(), Code::kFailedPrecondition);
  for (std::thread& reader : readers) reader.join();
  EXPECT_EQ(codes, std::vector<std::uint16_t>(clients.size(), kWsCloseGoingAway));
}

TEST_F(WebSocketTest, StopDropsAClientThatDoesNotAnswerTheClose) {
  start();
  RawWs ws(port(), "/ws");  // reads nothing while the server stops
  ASSERT_TRUE(ws.open());
  ASSERT_TRUE(wait_until([&] { return echo_.opened() == 1; }));
  server_->stop();
  EXPECT_EQ(echo_.closed(), 1U);
}

TEST_F(WebSocketTest, AConnectionHeldPastTheServerOnlyRefusesSends) {
  start();
  RawWs ws(port(), "/ws");
  ASSERT_TRUE(ws.open());
  std::shared_ptr<WsConnection> conn = opened(echo_, 0);
  server_.reset();
  EXPECT_EQ(conn->send_text("late").code(), Code::kFailedPrecondition);
  conn->close(kWsCloseNormal, "late");
  EXPECT_EQ(echo_.closed(), 1U);
  conn.reset();  // the handler still holds it; the server's core goes with the last holder
}

TEST_F(WebSocketTest, PlainHttpStillWorksOnTheSamePort) {
  start();
  RawWs ws(port(), "/ws");
  ASSERT_TRUE(ws.open());
  auto response = http_exchange(port(), "GET /status HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(response.result_int(), 200U);
  EXPECT_EQ(response.body(), "plain /status");
  ASSERT_FALSE(ws.write("ping"));
  std::string reply;
  ASSERT_FALSE(ws.read(reply));
  EXPECT_EQ(reply, "ping");
}

TEST_F(WebSocketTest, WebSocketsCountAgainstTheConnectionLimit) {
  HttpServerConfig config;
  config.max_connections = 2;
  start(std::move(config));
  RawWs first(port(), "/ws");
  auto second = std::make_unique<RawWs>(port(), "/ws");
  ASSERT_TRUE(first.open());
  ASSERT_TRUE(second->open());
  auto refused = http_exchange(port(), "GET /x HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(refused.result_int(), 503U);

  ASSERT_FALSE(second->close(kWsCloseNormal));
  second.reset();
  ASSERT_TRUE(wait_until([&] { return server_->open_connections() == 1; }));
  EXPECT_EQ(http_exchange(port(), "GET /x HTTP/1.1\r\nHost: h\r\n\r\n").result_int(), 200U);
}

TEST_F(WebSocketTest, SilentClientIsClosedAfterTheIdleTimeout) {
  HttpServerConfig config;
  config.ws_idle_timeout_ms = 200;
  start(std::move(config));
  RawWs ws(port(), "/ws");  // never reads, so never answers the server's ping
  ASSERT_TRUE(ws.open());
  ASSERT_TRUE(wait_until([&] { return echo_.closed() == 1; }));
  ASSERT_TRUE(wait_until([&] { return server_->open_connections() == 0; }));
}

TEST_F(WebSocketTest, ConnectionsHaveUniqueIdsAndTheirRemoteEndpoint) {
  start();
  RawWs a(port(), "/ws");
  RawWs b(port(), "/ws");
  ASSERT_TRUE(a.open());
  ASSERT_TRUE(b.open());
  const auto first = opened(echo_, 0);
  const auto second = opened(echo_, 1);
  EXPECT_NE(first->id(), 0U);
  EXPECT_NE(first->id(), second->id());
  EXPECT_EQ(first->remote_endpoint().rfind("127.0.0.1:", 0), 0U) << first->remote_endpoint();
}

TEST(WsCloseCode, SendableCodesFollowRfc6455) {
  for (const std::uint16_t code : {1000, 1001, 1003, 1007, 1008, 1009, 1011, 3000, 4999}) {
    EXPECT_TRUE(is_sendable_ws_close_code(code)) << code;
  }
  for (const std::uint16_t code : {0, 999, 1004, 1005, 1006, 1015, 2999, 5000}) {
    EXPECT_FALSE(is_sendable_ws_close_code(code)) << code;
  }
}

TEST(WsCloseReason, TruncationKeepsUtf8SequencesWhole) {
  EXPECT_EQ(truncate_ws_close_reason("short"), "short");
  const std::string ascii(kMaxWsCloseReasonBytes + 10, 'a');
  EXPECT_EQ(truncate_ws_close_reason(ascii).size(), kMaxWsCloseReasonBytes);
  // "é" is two bytes; 122 ASCII bytes put one across the limit, so it is dropped whole.
  const std::string split = std::string(kMaxWsCloseReasonBytes - 1, 'a') + "\xc3\xa9" + "tail";
  EXPECT_EQ(truncate_ws_close_reason(split), std::string(kMaxWsCloseReasonBytes - 1, 'a'));
}

}  // namespace
}  // namespace herald::server
