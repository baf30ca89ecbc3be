#include "server/http_server.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <chrono>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "base/assert.h"
#include "base/encoding.h"
#include "server/listener.h"

namespace herald::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using std::chrono::milliseconds;

namespace {

constexpr unsigned kHttp11 = 11;
// After an error response that closes the connection, unread request bytes are drained for at
// most this long (and this many bytes) so that the client reads the response instead of a reset.
constexpr std::uint32_t kLingerMs = 1000;
constexpr std::size_t kMaxLingerBytes = 4 * kMaxRequestBodyBytes;
constexpr std::size_t kDrainChunkBytes = 4096;
// Pause before accepting again after the listener reports an error.
constexpr std::uint32_t kAcceptRetryMs = 100;

std::string to_std(beast::string_view view) {
  return std::string(view.data(), view.size());
}

// Decodes one query-string component: '+' is a space, then percent escapes.
bool decode_query_component(std::string_view raw, std::string& out) {
  std::string spaced(raw);
  std::replace(spaced.begin(), spaced.end(), '+', ' ');
  return percent_decode(spaced, out);
}

// Parses "a=1&b=%20x"; the first occurrence of a key wins. Errors: kInvalidArgument.
Result<std::map<std::string, std::string>> parse_query(std::string_view query) {
  std::map<std::string, std::string> out;
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (part.empty()) continue;
    const std::size_t eq = part.find('=');
    std::string key;
    std::string value;
    if (!decode_query_component(part.substr(0, eq), key) ||
        (eq != std::string_view::npos && !decode_query_component(part.substr(eq + 1), value))) {
      return Status::invalid_argument("malformed percent escape in the query string");
    }
    out.emplace(std::move(key), std::move(value));
  }
  return out;
}

bool is_parse_error(const beast::error_code& ec) {
  return ec.category() == http::make_error_code(http::error::bad_method).category();
}

}  // namespace

std::optional<std::string_view> HttpRequest::header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (beast::iequals(key, beast::string_view(name.data(), name.size()))) {
      return value;
    }
  }
  return std::nullopt;
}

HttpResponse HttpResponse::error(unsigned status, std::string_view code, std::string_view message) {
  boost::json::object detail;
  detail["code"] = boost::json::string_view(code.data(), code.size());
  detail["message"] = boost::json::string_view(message.data(), message.size());
  boost::json::object body;
  body["error"] = std::move(detail);
  return json(status, boost::json::serialize(body));
}

HttpResponse HttpResponse::json(unsigned status, std::string json) {
  HttpResponse response;
  response.status = status;
  response.body = std::move(json);
  return response;
}

Result<std::vector<std::string>> split_path(std::string_view path) {
  if (path.empty() || path.front() != '/') {
    return Status::invalid_argument("path must start with '/'");
  }
  std::vector<std::string> segments;
  std::size_t start = 1;
  while (start < path.size()) {
    std::size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    if (end > start) {
      std::string segment;
      if (!percent_decode(path.substr(start, end - start), segment)) {
        return Status::invalid_argument("malformed percent escape in the path");
      }
      segments.push_back(std::move(segment));
    }
    start = end + 1;
  }
  return segments;
}

// The shared core of a server: connections and outstanding Responders reach it, and a Responder
// keeps it (and so the io_context it posts to) alive.
class HttpServer::Impl : public std::enable_shared_from_this<Impl> {
 public:
  class Connection;

  Impl(HttpServerConfig config, Handler handler)
      : config_(std::move(config)),
        handler_(std::move(handler)),
        work_(asio::make_work_guard(io_)),
        acceptor_(asio::make_strand(io_)),
        accept_retry_timer_(acceptor_.get_executor()) {
    HERALD_ASSERT(handler_ != nullptr, "HttpServer needs a handler");
  }

  [[nodiscard]] Status run(std::size_t io_threads);
  void stop();
  [[nodiscard]] std::uint16_t port() const { return port_; }
  [[nodiscard]] std::size_t open_connections() const {
    std::lock_guard lock(mu_);
    return connections_.size();
  }

  // Used by connections and responders.
  [[nodiscard]] const Handler& handler() const { return handler_; }
  [[nodiscard]] const HttpServerConfig& config() const { return config_; }
  void unregister(Connection* connection) {
    std::lock_guard lock(mu_);
    connections_.erase(connection);
  }
  // Hands `response` to the connection's strand unless the connection or the server is gone.
  void post_response(const std::weak_ptr<Connection>& connection, HttpResponse response);
  [[nodiscard]] Responder make_responder(const std::shared_ptr<Connection>& connection);

 private:
  void accept();
  void on_accept(const beast::error_code& ec, tcp::socket socket);

  const HttpServerConfig config_;
  const Handler handler_;
  mutable std::mutex mu_;
  bool stopping_ = false;                                                   // guarded by mu_
  std::unordered_map<Connection*, std::weak_ptr<Connection>> connections_;  // guarded by mu_
  // Declared after the state above: destroying the io_context destroys pending handlers, whose
  // connections unregister themselves.
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  tcp::acceptor acceptor_;
  asio::steady_timer accept_retry_timer_;  // on the acceptor's strand
  std::vector<std::thread> threads_;
  std::uint16_t port_ = 0;
};

// One client connection, driven on its own strand: read a request, hand it to the handler, wait
// for the Responder, write the response, repeat. The request/response cycle is the place where
// a WebSocket upgrade will take over the stream (see handle_upgrade()).
class HttpServer::Impl::Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(Impl& server, tcp::socket socket) : server_(server), stream_(std::move(socket)) {}
  ~Connection() { server_.unregister(this); }

  // Starts reading requests.
  void start() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read_request(); });
  }
  // Answers 503 and closes: the server is at its connection limit.
  void start_rejecting() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] {
      self->write_error(503, "unavailable", "too many connections", /*close_after=*/true);
    });
  }
  // Closes from any thread; a pending Responder then does nothing.
  void close() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] { self->close_now(); });
  }
  // On the strand: writes the handler's response.
  void respond(HttpResponse response) {
    awaiting_response_.reset();
    if (closed_) return;
    write(std::move(response), /*close_after=*/!keep_alive_);
  }
  [[nodiscard]] auto executor() { return stream_.get_executor(); }

 private:
  void read_request();
  void on_read(const beast::error_code& ec);
  void dispatch_request(http::request<http::string_body>&& request);
  void handle_upgrade();
  void write(HttpResponse response, bool close_after);
  void write_error(unsigned status, std::string_view code, std::string_view message,
                   bool close_after) {
    write(HttpResponse::error(status, code, message), close_after);
  }
  void linger_close();
  void drain();
  void close_now();

  Impl& server_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  // Keeps the connection alive while the handler holds the Responder.
  std::shared_ptr<Connection> awaiting_response_;
  unsigned version_ = kHttp11;
  bool keep_alive_ = false;
  bool closed_ = false;
  std::size_t lingered_bytes_ = 0;
  std::array<char, kDrainChunkBytes> drain_buffer_{};
};

void HttpServer::Impl::Connection::read_request() {
  parser_.emplace();
  parser_->body_limit(kMaxRequestBodyBytes);
  parser_->header_limit(static_cast<std::uint32_t>(kMaxRequestHeaderBytes));
  stream_.expires_after(milliseconds(server_.config().idle_read_timeout_ms));
  http::async_read(
      stream_, buffer_, *parser_,
      [self = shared_from_this()](const beast::error_code& ec, std::size_t) { self->on_read(ec); });
}

void HttpServer::Impl::Connection::on_read(const beast::error_code& ec) {
  stream_.expires_never();
  if (closed_) return;
  if (ec == http::error::body_limit) {
    write_error(413, "payload_too_large",
                "request body exceeds " + std::to_string(kMaxRequestBodyBytes) + " bytes", true);
  } else if (ec == http::error::header_limit) {
    write_error(431, "headers_too_large",
                "request headers exceed " + std::to_string(kMaxRequestHeaderBytes) + " bytes",
                true);
  } else if (ec && is_parse_error(ec) && ec != http::error::end_of_stream &&
             ec != http::error::partial_message) {
    write_error(400, "bad_request", "malformed request: " + ec.message(), true);
  } else if (ec) {
    close_now();  // end of stream, idle timeout, reset, or shutdown
  } else {
    dispatch_request(parser_->release());
  }
}

void HttpServer::Impl::Connection::dispatch_request(http::request<http::string_body>&& request) {
  version_ = request.version();
  keep_alive_ = request.keep_alive();
  if (!request[http::field::upgrade].empty()) {
    handle_upgrade();
    return;
  }
  const beast::string_view target = request.target();
  const std::size_t question = target.find('?');
  HttpRequest out;
  out.method = to_std(request.method_string());
  out.path = to_std(target.substr(0, question));
  if (question != beast::string_view::npos) {
    Result<std::map<std::string, std::string>> query =
        parse_query(std::string_view(target.data() + question + 1, target.size() - question - 1));
    if (!query.ok()) {
      write_error(400, "bad_request", query.status().message(), !keep_alive_);
      return;
    }
    out.query = std::move(query).value();
  }
  for (const auto& field : request) {
    out.headers.emplace_back(to_std(field.name_string()), to_std(field.value()));
  }
  out.body = std::move(request.body());
  awaiting_response_ = shared_from_this();
  server_.handler()(std::move(out), server_.make_responder(awaiting_response_));
}

// The WebSocket gateway will take over stream_ and buffer_ here; until then upgrades are refused.
void HttpServer::Impl::Connection::handle_upgrade() {
  write_error(501, "not_implemented", "protocol upgrades are not supported", true);
}

void HttpServer::Impl::Connection::write(HttpResponse response, bool close_after) {
  auto message = std::make_shared<http::response<http::string_body>>();
  message->version(version_);
  message->result(response.status);
  message->set(http::field::server, "herald");
  message->set(http::field::content_type, response.content_type);
  for (const auto& [name, value] : response.headers) {
    message->insert(name, value);
  }
  message->keep_alive(!close_after);
  message->body() = std::move(response.body);
  message->prepare_payload();
  stream_.expires_after(milliseconds(kWriteTimeoutMs));
  http::async_write(
      stream_, *message,
      [self = shared_from_this(), message, close_after](const beast::error_code& ec, std::size_t) {
        self->stream_.expires_never();
        if (ec || self->closed_) {
          self->close_now();
        } else if (close_after) {
          self->linger_close();
        } else {
          self->read_request();
        }
      });
}

// Half-closes, then drains what the client is still sending (bounded in time and bytes), so that
// closing with unread data does not reset the connection before the client reads the response.
void HttpServer::Impl::Connection::linger_close() {
  beast::error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  stream_.expires_after(milliseconds(kLingerMs));
  drain();
}

void HttpServer::Impl::Connection::drain() {
  stream_.async_read_some(asio::buffer(drain_buffer_),
                          [self = shared_from_this()](const beast::error_code& ec, std::size_t n) {
                            self->lingered_bytes_ += n;
                            if (ec || self->closed_ || self->lingered_bytes_ > kMaxLingerBytes) {
                              self->close_now();
                            } else {
                              self->drain();
                            }
                          });
}

void HttpServer::Impl::Connection::close_now() {
  awaiting_response_.reset();
  if (closed_) return;
  closed_ = true;
  beast::error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
  stream_.close();
}

// Shared by every copy of one Responder: answers exactly once, or 500 when dropped unanswered.
namespace {
class PendingResponse {
 public:
  using Post = std::function<void(HttpResponse)>;
  explicit PendingResponse(Post post) : post_(std::move(post)) {}
  ~PendingResponse() {
    if (!answered_.exchange(true)) {
      post_(HttpResponse::error(500, "internal", "the request was dropped unanswered"));
    }
  }
  PendingResponse(const PendingResponse&) = delete;
  PendingResponse& operator=(const PendingResponse&) = delete;
  void answer(HttpResponse response) {
    HERALD_ASSERT(!answered_.exchange(true), "a Responder was called twice");
    post_(std::move(response));
  }

 private:
  Post post_;
  std::atomic<bool> answered_{false};
};
}  // namespace

Responder HttpServer::Impl::make_responder(const std::shared_ptr<Connection>& connection) {
  auto pending = std::make_shared<PendingResponse>(
      [server = shared_from_this(), weak = std::weak_ptr<Connection>(connection)](
          HttpResponse response) { server->post_response(weak, std::move(response)); });
  return [pending](HttpResponse response) { pending->answer(std::move(response)); };
}

void HttpServer::Impl::post_response(const std::weak_ptr<Connection>& weak, HttpResponse response) {
  std::shared_ptr<Connection> connection;  // released after the lock: its destructor takes mu_
  std::lock_guard lock(mu_);
  if (stopping_ || !(connection = weak.lock())) return;
  asio::post(connection->executor(), [connection, response = std::move(response)]() mutable {
    connection->respond(std::move(response));
  });
}

Status HttpServer::Impl::run(std::size_t io_threads) {
  HERALD_ASSERT(io_threads >= 1, "HttpServer needs at least one io thread");
  HERALD_ASSERT(threads_.empty(), "HttpServer::run() called twice");
  HERALD_RETURN_IF_ERROR(open_acceptor(acceptor_, config_.listen));
  port_ = acceptor_.local_endpoint().port();
  spdlog::info("http server listening on port {} with {} io threads", port_, io_threads);
  asio::dispatch(acceptor_.get_executor(), [self = shared_from_this()] { self->accept(); });
  for (std::size_t i = 0; i < io_threads; ++i) {
    threads_.emplace_back([this] { io_.run(); });
  }
  return Status::ok_status();
}

void HttpServer::Impl::stop() {
  std::vector<std::shared_ptr<Connection>> open;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    for (auto& [raw, weak] : connections_) {
      if (auto connection = weak.lock()) open.push_back(std::move(connection));
    }
  }
  for (const auto& thread : threads_) {
    HERALD_ASSERT(thread.get_id() != std::this_thread::get_id(), "stop() from an io thread");
  }
  asio::post(acceptor_.get_executor(), [this] {
    beast::error_code ignored;
    acceptor_.close(ignored);
    accept_retry_timer_.cancel();
  });
  for (const auto& connection : open) {
    connection->close();
  }
  open.clear();  // before joining: the io threads may hold the last references
  work_.reset();
  for (std::thread& thread : threads_) {
    thread.join();
  }
}

void HttpServer::Impl::accept() {
  acceptor_.async_accept(
      asio::make_strand(io_),
      [self = shared_from_this()](const beast::error_code& ec, tcp::socket socket) {
        self->on_accept(ec, std::move(socket));
      });
}

void HttpServer::Impl::on_accept(const beast::error_code& ec, tcp::socket socket) {
  if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
  if (ec) {
    // Out of descriptors, typically: pause instead of spinning on the error.
    spdlog::warn("http server: accept failed: {}", ec.message());
    accept_retry_timer_.expires_after(milliseconds(kAcceptRetryMs));
    accept_retry_timer_.async_wait([self = shared_from_this()](const beast::error_code& timer_ec) {
      if (!timer_ec && self->acceptor_.is_open()) self->accept();
    });
    return;
  }
  auto connection = std::make_shared<Connection>(*this, std::move(socket));
  bool over_limit = false;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    over_limit = connections_.size() >= config_.max_connections;
    connections_.emplace(connection.get(), connection);
  }
  if (over_limit) {
    spdlog::warn("http server: refusing a connection, {} open", config_.max_connections);
    connection->start_rejecting();
  } else {
    connection->start();
  }
  accept();
}

HttpServer::HttpServer(HttpServerConfig config, Handler handler)
    : impl_(std::make_shared<Impl>(std::move(config), std::move(handler))) {}

HttpServer::~HttpServer() {
  stop();
}

Status HttpServer::run(std::size_t io_threads) {
  return impl_->run(io_threads);
}

void HttpServer::stop() {
  impl_->stop();
}

std::uint16_t HttpServer::port() const {
  return impl_->port();
}

std::size_t HttpServer::open_connections() const {
  return impl_->open_connections();
}

}  // namespace herald::server
