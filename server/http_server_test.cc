#include "server/http_server.h"

#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/parse.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "base/encoding.h"

namespace herald::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using std::chrono::milliseconds;

constexpr milliseconds kWaitTimeout{10'000};
constexpr milliseconds kResponderDelay{20};

bool wait_until(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + kWaitTimeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(milliseconds(2));
  }
  return true;
}

// The "code" of a JSON error body, or "" when the body is not one.
std::string error_code_of(const std::string& body) {
  boost::system::error_code ec;
  const boost::json::value value = boost::json::parse(body, ec);
  if (ec || !value.is_object() || !value.as_object().contains("error")) return "";
  return std::string(value.at("error").at("code").as_string());
}

// A blocking-style HTTP client whose every operation is bounded by kWaitTimeout.
class Client {
 public:
  explicit Client(std::uint16_t port) : stream_(io_) {
    stream_.expires_after(kWaitTimeout);
    stream_.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
                          [this](const beast::error_code& ec) { connected_ = !ec; });
    run();
  }
  [[nodiscard]] bool connected() const { return connected_; }

  http::response<http::string_body> request(http::verb verb, const std::string& target,
                                            std::string body = "") {
    write_request(verb, target, std::move(body));
    return read_response();
  }
  void write_request(http::verb verb, const std::string& target, std::string body = "") {
    http::request<http::string_body> request{verb, target, 11};
    request.set(http::field::host, "127.0.0.1");
    request.body() = std::move(body);
    request.prepare_payload();
    beast::error_code result;
    stream_.expires_after(kWaitTimeout);
    http::async_write(stream_, request,
                      [&](const beast::error_code& ec, std::size_t) { result = ec; });
    run();
    EXPECT_FALSE(result) << result.message();
  }
  void write_raw(const std::string& bytes) {
    beast::error_code result;
    stream_.expires_after(kWaitTimeout);
    asio::async_write(stream_, asio::buffer(bytes),
                      [&](const beast::error_code& ec, std::size_t) { result = ec; });
    run();
    EXPECT_FALSE(result) << result.message();
  }
  http::response<http::string_body> read_response() {
    http::response<http::string_body> response;
    beast::error_code result;
    stream_.expires_after(kWaitTimeout);
    http::async_read(stream_, buffer_, response,
                     [&](const beast::error_code& ec, std::size_t) { result = ec; });
    run();
    EXPECT_FALSE(result) << result.message();
    // The analyzer follows Beast's operation into a path that moves its own handler state; the
    // message itself is only written through a pointer.
    return response;  // NOLINT(clang-analyzer-cplusplus.Move)
  }
  // True when the server closes the connection (end of stream or reset) within kWaitTimeout.
  bool closed_by_server() {
    http::response<http::string_body> response;
    beast::error_code result;
    stream_.expires_after(kWaitTimeout);
    http::async_read(stream_, buffer_, response,
                     [&](const beast::error_code& ec, std::size_t) { result = ec; });
    run();
    return result && result != beast::error::timeout;
  }

 private:
  void run() {
    io_.restart();
    io_.run();
  }

  asio::io_context io_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  bool connected_ = false;
};

// A key-value handler: PUT /kv/<key> stores the body, GET /kv/<key> returns it, both answered
// from another thread after kResponderDelay; GET /echo answers the decoded query at once; GET
// /drop never answers.
class HttpServerTest : public ::testing::Test {
 protected:
  ~HttpServerTest() override {
    server_.reset();
    std::lock_guard lock(mu_);
    for (std::thread& worker : workers_) worker.join();
  }

  void start(HttpServerConfig config = {}, std::size_t io_threads = 2) {
    server_ = std::make_unique<HttpServer>(std::move(config),
                                           [this](HttpRequest&& request, const Responder& respond) {
                                             handle(std::move(request), respond);
                                           });
    const Status status = server_->run(io_threads);
    ASSERT_TRUE(status.ok()) << status.to_string();
  }

  void handle(HttpRequest&& request, const Responder& respond) {
    Result<std::vector<std::string>> segments = split_path(request.path);
    if (!segments.ok()) {
      respond(HttpResponse::error(400, "bad_request", segments.status().message()));
      return;
    }
    if (segments->size() == 1 && (*segments)[0] == "echo") {
      std::string body;
      for (const auto& [key, value] : request.query)
        body.append(key).append("=").append(value).append(";");
      respond(HttpResponse{
          200, "text/plain", body + std::string(request.header("X-Tag").value_or("")), {}});
      return;
    }
    if (segments->size() == 1 && (*segments)[0] == "drop") return;
    if (segments->size() != 2 || (*segments)[0] != "kv") {
      respond(HttpResponse::error(404, "not_found", "no such route"));
      return;
    }
    respond_later(respond, kv_operation(request.method, (*segments)[1], std::move(request.body)));
  }

  HttpResponse kv_operation(const std::string& method, const std::string& key, std::string body) {
    std::lock_guard lock(mu_);
    if (method == "PUT") {
      kv_[key] = std::move(body);
      return HttpResponse{204, "text/plain", "", {{"X-Key-Hex", hex(key)}}};
    }
    const auto it = kv_.find(key);
    if (it == kv_.end()) return HttpResponse::error(404, "not_found", "no such key");
    return HttpResponse{200, "application/octet-stream", it->second, {}};
  }

  void respond_later(Responder respond, HttpResponse response) {
    std::lock_guard lock(mu_);
    workers_.emplace_back([respond = std::move(respond), response = std::move(response)] {
      std::this_thread::sleep_for(kResponderDelay);
      respond(response);
    });
  }

  static std::string hex(const std::string& bytes) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out;
    for (unsigned char c : bytes) {
      out += kDigits[c >> 4U];
      out += kDigits[c & 15U];
    }
    return out;
  }

  std::uint16_t port() const { return server_->port(); }

  std::unique_ptr<HttpServer> server_;
  std::mutex mu_;
  std::map<std::string, std::string> kv_;
  std::vector<std::thread> workers_;
};

TEST_F(HttpServerTest, PutThenGetWithResponderCalledFromAnotherThread) {
  start();
  Client client(port());
  ASSERT_TRUE(client.connected());
  auto put = client.request(http::verb::put, "/kv/alpha", "value-1");
  EXPECT_EQ(put.result_int(), 204U);
  auto get = client.request(http::verb::get, "/kv/alpha");
  EXPECT_EQ(get.result_int(), 200U);
  EXPECT_EQ(get.body(), "value-1");
  EXPECT_EQ(get[http::field::content_type], "application/octet-stream");
  auto missing = client.request(http::verb::get, "/kv/beta");
  EXPECT_EQ(missing.result_int(), 404U);
  EXPECT_EQ(error_code_of(missing.body()), "not_found");
}

TEST_F(HttpServerTest, KeepAliveServesManyRequestsOnOneConnection) {
  start();
  Client client(port());
  for (int i = 0; i < 200; ++i) {
    auto response = client.request(http::verb::get, "/echo?i=" + std::to_string(i));
    ASSERT_EQ(response.result_int(), 200U);
    EXPECT_EQ(response.body(), "i=" + std::to_string(i) + ";");
    EXPECT_TRUE(response.keep_alive());
  }
  EXPECT_EQ(server_->open_connections(), 1U);
}

TEST_F(HttpServerTest, PipelinedRequestsAreAnsweredInOrder) {
  start();
  Client client(port());
  client.write_raw(
      "PUT /kv/k HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nv1"
      "GET /kv/k HTTP/1.1\r\nHost: h\r\n\r\n"
      "GET /echo?n=3 HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(client.read_response().result_int(), 204U);
  EXPECT_EQ(client.read_response().body(), "v1");
  EXPECT_EQ(client.read_response().body(), "n=3;");
}

TEST_F(HttpServerTest, OversizeBodyIs413AndCloses) {
  start();
  Client client(port());
  auto response =
      client.request(http::verb::put, "/kv/big", std::string(kMaxRequestBodyBytes + 1, 'x'));
  EXPECT_EQ(response.result_int(), 413U);
  EXPECT_EQ(error_code_of(response.body()), "payload_too_large");
  EXPECT_TRUE(client.closed_by_server());
}

TEST_F(HttpServerTest, BodyAtTheLimitIsAccepted) {
  start();
  Client client(port());
  const std::string body(kMaxRequestBodyBytes, 'y');
  EXPECT_EQ(client.request(http::verb::put, "/kv/big", body).result_int(), 204U);
  EXPECT_EQ(client.request(http::verb::get, "/kv/big").body(), body);
}

TEST_F(HttpServerTest, MalformedRequestLineIs400AndCloses) {
  start();
  Client client(port());
  client.write_raw("NOT A VALID REQUEST LINE\r\n\r\n");
  auto response = client.read_response();
  EXPECT_EQ(response.result_int(), 400U);
  EXPECT_EQ(error_code_of(response.body()), "bad_request");
  EXPECT_TRUE(client.closed_by_server());
}

TEST_F(HttpServerTest, OversizeHeadersAre431) {
  start();
  Client client(port());
  client.write_raw("GET /echo HTTP/1.1\r\nX-Big: " + std::string(kMaxRequestHeaderBytes, 'h') +
                   "\r\n\r\n");
  auto response = client.read_response();
  EXPECT_EQ(response.result_int(), 431U);
  EXPECT_EQ(error_code_of(response.body()), "headers_too_large");
  EXPECT_TRUE(client.closed_by_server());
}

TEST_F(HttpServerTest, PercentEncodedSegmentCarriesBinaryBytes) {
  start();
  Client client(port());
  const std::string key("\x00\xff/ %", 5);
  auto put = client.request(http::verb::put, "/kv/" + percent_encode(key), "binary");
  ASSERT_EQ(put.result_int(), 204U);
  EXPECT_EQ(put["X-Key-Hex"], "00ff2f2025");
  EXPECT_EQ(client.request(http::verb::get, "/kv/%00%FF%2F%20%25").body(), "binary");
}

TEST_F(HttpServerTest, BadEscapesAre400) {
  start();
  Client client(port());
  auto bad_path = client.request(http::verb::get, "/kv/%zz");
  EXPECT_EQ(bad_path.result_int(), 400U);
  EXPECT_EQ(error_code_of(bad_path.body()), "bad_request");
  auto bad_query = client.request(http::verb::get, "/echo?a=%4");
  EXPECT_EQ(bad_query.result_int(), 400U);
  EXPECT_EQ(error_code_of(bad_query.body()), "bad_request");
  // Both errors leave the stream intact, so the connection carries on.
  EXPECT_EQ(client.request(http::verb::get, "/echo?a=x+y%2B").body(), "a=x y+;");
}

TEST_F(HttpServerTest, HeadersAreLookedUpCaseInsensitively) {
  start();
  Client client(port());
  client.write_raw("GET /echo HTTP/1.1\r\nHost: h\r\nx-tAg: tagged\r\n\r\n");
  EXPECT_EQ(client.read_response().body(), "tagged");
}

TEST_F(HttpServerTest, DroppedResponderAnswers500) {
  start();
  Client client(port());
  auto response = client.request(http::verb::get, "/drop");
  EXPECT_EQ(response.result_int(), 500U);
  EXPECT_EQ(error_code_of(response.body()), "internal");
}

TEST_F(HttpServerTest, ConnectionLimitAnswers503) {
  HttpServerConfig config;
  config.max_connections = 2;
  start(config);
  Client first(port());
  Client second(port());
  EXPECT_EQ(first.request(http::verb::get, "/echo").result_int(), 200U);
  EXPECT_EQ(second.request(http::verb::get, "/echo").result_int(), 200U);

  {
    Client third(port());
    third.write_request(http::verb::get, "/echo");
    auto refused = third.read_response();
    EXPECT_EQ(refused.result_int(), 503U);
    EXPECT_EQ(error_code_of(refused.body()), "unavailable");
    EXPECT_TRUE(third.closed_by_server());
  }

  ASSERT_TRUE(wait_until([&] { return server_->open_connections() == 2; }));
  EXPECT_EQ(second.request(http::verb::get, "/echo").result_int(), 200U);
}

TEST_F(HttpServerTest, IdleConnectionIsClosed) {
  HttpServerConfig config;
  config.idle_read_timeout_ms = 50;
  start(config);
  Client client(port());
  EXPECT_EQ(client.request(http::verb::get, "/echo").result_int(), 200U);
  EXPECT_TRUE(client.closed_by_server());
  ASSERT_TRUE(wait_until([&] { return server_->open_connections() == 0; }));
}

TEST_F(HttpServerTest, StopWithARequestInFlightDropsTheLateResponse) {
  start();
  Client client(port());
  client.write_request(http::verb::put, "/kv/late", "v");
  ASSERT_TRUE(wait_until([&] {
    std::lock_guard lock(mu_);
    return !workers_.empty();
  }));
  server_->stop();  // the worker answers after this; the Responder must do nothing
  EXPECT_TRUE(client.closed_by_server());
}

TEST(SplitPath, DecodesSegmentsAndDropsEmptyOnes) {
  auto segments = split_path("/kv//a%2Fb/");
  ASSERT_TRUE(segments.ok());
  EXPECT_EQ(*segments, (std::vector<std::string>{"kv", "a/b"}));
  auto root = split_path("/");
  ASSERT_TRUE(root.ok());
  EXPECT_TRUE(root->empty());
}

TEST(SplitPath, RejectsBadEscapesAndRelativePaths) {
  EXPECT_FALSE(split_path("/kv/%").ok());
  EXPECT_FALSE(split_path("/kv/%g0").ok());
  EXPECT_FALSE(split_path("kv").ok());
  EXPECT_FALSE(split_path("").ok());
}

}  // namespace
}  // namespace herald::server

namespace herald::server {
namespace {

TEST(ParseHttpRequestTest, NoBytesAtAllAreAnIncompleteRequest) {
  auto parsed = parse_http_request("");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().code(), Code::kInvalidArgument) << parsed.status().to_string();
}

TEST(ParseHttpRequestTest, ARequestCutInItsHeadersIsIncomplete) {
  auto parsed = parse_http_request("GET /v1/health HTTP/1.1\r\nHost: x");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().code(), Code::kInvalidArgument);
}

TEST(ParseHttpRequestTest, AChunkedBodyCutInItsLastChunkIsIncomplete) {
  auto parsed = parse_http_request(
      "POST /v1/workflows HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().code(), Code::kInvalidArgument) << parsed.status().to_string();
}

TEST(ParseHttpRequestTest, ACompleteChunkedBodyParses) {
  auto parsed = parse_http_request(
      "POST /v1/workflows HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
      "2\r\n{}\r\n0\r\n\r\n");
  ASSERT_TRUE(parsed.ok()) << parsed.status().to_string();
  EXPECT_EQ(parsed->body, "{}");
}

TEST(ParseHttpRequestTest, ACompleteRequestParses) {
  auto parsed = parse_http_request("GET /v1/health?a=1 HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(parsed.ok()) << parsed.status().to_string();
  EXPECT_EQ(parsed->path, "/v1/health");
}

}  // namespace
}  // namespace herald::server
