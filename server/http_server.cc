#include "server/http_server.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/compose.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream_base.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/rfc7230.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <chrono>
#include <list>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "base/assert.h"
#include "base/encoding.h"
#include "server/listener.h"
#include "server/tls.h"
#include "server/websocket.h"

namespace herald::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
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
// A WebSocket's read buffer grows to its largest message; above this it is given back after use.
constexpr std::size_t kMaxKeptWsReadBufferBytes = std::size_t{16} * 1024;
// A WebSocket torn down by the server drains what the client still sends for at most this long
// (and this many bytes) before closing its socket; see LingeringTcpStream. The byte budget covers
// the rest of a single frame many times kMaxWsMessageBytes, which a client may have started
// writing before the server's close frame reaches it.
constexpr std::uint32_t kWsLingerMs = 1000;
constexpr std::size_t kMaxWsLingerBytes = 32 * kMaxWsMessageBytes;

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

// True when the Upgrade header asks for WebSocket (possibly among other protocols).
bool asks_for_websocket(const http::request<http::string_body>& request) {
  return http::token_list{request[http::field::upgrade]}.exists("websocket");
}

// The handler's view of `request`; moves its body out. Errors: kInvalidArgument for a malformed
// query string.
Result<HttpRequest> to_http_request(http::request<http::string_body>& request) {
  const beast::string_view target = request.target();
  const std::size_t question = target.find('?');
  HttpRequest out;
  out.method = to_std(request.method_string());
  out.path = to_std(target.substr(0, question));
  if (question != beast::string_view::npos) {
    HERALD_ASSIGN_OR_RETURN(out.query, parse_query(std::string_view(target.data() + question + 1,
                                                                    target.size() - question - 1)));
  }
  for (const auto& field : request) {
    out.headers.emplace_back(to_std(field.name_string()), to_std(field.value()));
  }
  out.body = std::move(request.body());
  return out;
}

// Sets the server's limits on a parser of one request.
void limit_request_parser(http::request_parser<http::string_body>& parser) {
  parser.body_limit(kMaxRequestBodyBytes);
  parser.header_limit(static_cast<std::uint32_t>(kMaxRequestHeaderBytes));
}

std::string body_limit_message() {
  return "request body exceeds " + std::to_string(kMaxRequestBodyBytes) + " bytes";
}

std::string header_limit_message() {
  return "request headers exceed " + std::to_string(kMaxRequestHeaderBytes) + " bytes";
}

// How long, and how many bytes, a lingering close drains (see async_linger_close).
struct LingerBudget {
  std::uint32_t linger_ms = 0;
  std::size_t max_bytes = 0;
};

// The lingering close of async_linger_close(), as an asio composed operation.
class LingerOp {
 public:
  LingerOp(beast::tcp_stream& stream, asio::mutable_buffer buffer, LingerBudget budget)
      : stream_(&stream), buffer_(buffer), budget_(budget) {}

  template <class Self>
  void operator()(Self& self) {
    beast::error_code ignored;  // on an already closed socket, the first read fails
    stream_->socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_->expires_after(milliseconds(budget_.linger_ms));
    drain(self);
  }

  template <class Self>
  void operator()(Self& self, beast::error_code ec, std::size_t bytes) {
    drained_bytes_ += bytes;
    if (!ec && drained_bytes_ <= budget_.max_bytes) {
      drain(self);
      return;
    }
    if (!ec) ec = beast::error::timeout;  // the byte budget ran out
    if (ec == asio::error::eof) ec = {};
    stream_->close();
    self.complete(ec);
  }

 private:
  template <class Self>
  void drain(Self& self) {
    stream_->async_read_some(buffer_, std::move(self));
  }

  beast::tcp_stream* stream_;
  asio::mutable_buffer buffer_;
  LingerBudget budget_;
  std::size_t drained_bytes_ = 0;
};

// Closes `stream` without losing what was last written to it. Closing a socket with unread bytes
// makes the kernel answer with a reset, which destroys data still in flight to the peer (an error
// response, a close frame), so this half-closes the socket (the peer reads a FIN after the data),
// then reads into `buffer` and discards what the peer still sends until it ends its side, for at
// most budget.linger_ms and budget.max_bytes, and only then closes the socket. Calls `handler`
// with no error when the peer ended its side in time, otherwise with the error that ended the
// drain (beast::error::timeout when either budget ran out); the stream is closed either way.
// Closing the stream meanwhile ends the drain at once. Precondition: no read is pending on
// `stream`, and `stream` and `buffer` outlive the operation.
template <class Handler>
void async_linger_close(beast::tcp_stream& stream, asio::mutable_buffer buffer, LingerBudget budget,
                        Handler&& handler) {
  asio::async_compose<Handler, void(beast::error_code)>(LingerOp(stream, buffer, budget), handler,
                                                        stream);
}

// The transport under a server WebSocket: a TCP stream whose WebSocket teardown lingers.
//
// Beast ends every WebSocket connection it closes (after the close handshake, or right after the
// close frame when a limit fails the connection with 1009 or 1007) with a teardown of the
// transport, which it finds by argument-dependent lookup. Boost 1.81's teardown for TCP stops
// reading after the first read that follows a wait, so it closes a socket the client is still
// sending on (the rest of an oversize frame, say) and the client sees a reset (1006) instead of
// the close frame. The teardown of this stream (async_teardown below) is async_linger_close()
// with kWsLingerMs and kMaxWsLingerBytes. Only the asynchronous teardown is replaced: the server
// makes no synchronous WebSocket call. Everything else is the tcp_stream's.
class LingeringTcpStream : public beast::tcp_stream {
 public:
  explicit LingeringTcpStream(beast::tcp_stream&& stream) : beast::tcp_stream(std::move(stream)) {}

  // Where the teardown reads what it discards: allocated at the teardown, so that an open
  // WebSocket does not carry it (it would be a third of an idle connection's memory).
  [[nodiscard]] asio::mutable_buffer drain_buffer() {
    if (drain_buffer_ == nullptr) {
      drain_buffer_ = std::make_unique<char[]>(kDrainChunkBytes);
    }
    return {drain_buffer_.get(), kDrainChunkBytes};
  }

 private:
  std::unique_ptr<char[]> drain_buffer_;
};

// Beast's customization point; more specialized than Beast's own overloads, so lookup picks it for
// a LingeringTcpStream. Only the server role is supported: a client's teardown reads before it
// half-closes.
template <class TeardownHandler>
void async_teardown(beast::role_type role, LingeringTcpStream& stream, TeardownHandler&& handler) {
  HERALD_ASSERT(role == beast::role_type::server, "LingeringTcpStream is for servers only");
  async_linger_close(stream, stream.drain_buffer(), {kWsLingerMs, kMaxWsLingerBytes},
                     std::forward<TeardownHandler>(handler));
}

// A TLS connection of the client port: OpenSSL over a lingering TCP stream, so that a WebSocket
// torn down after its TLS close (Beast's TLS teardown ends with the next layer's) lingers too.
using TlsStream = beast::ssl_stream<LingeringTcpStream>;
// A plaintext connection is a bare TCP stream until it becomes a WebSocket.
using PlainStream = beast::tcp_stream;

// The transport a WebSocket grown from a connection over `Stream` runs on.
template <class Stream>
struct WsTransport {
  using type = TlsStream;
};
template <>
struct WsTransport<PlainStream> {
  using type = LingeringTcpStream;
};

// True for the TLS stream type.
template <class Stream>
inline constexpr bool is_tls_stream = std::is_same_v<Stream, TlsStream>;

// "ip:port", or "[ip6]:port".
std::string endpoint_string(const tcp::endpoint& endpoint) {
  const std::string address = endpoint.address().to_string();
  return (endpoint.address().is_v6() ? "[" + address + "]" : address) + ":" +
         std::to_string(endpoint.port());
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

Result<HttpRequest> parse_http_request(std::string_view bytes) {
  http::request_parser<http::string_body> parser;
  limit_request_parser(parser);
  parser.eager(true);
  beast::error_code ec;
  while (!ec && !parser.is_done()) {
    std::size_t used = 0;
    if (!bytes.empty()) {
      used = parser.put(asio::buffer(bytes.data(), bytes.size()), ec);
      bytes.remove_prefix(used);
    }
    if (ec == http::error::need_more || (!ec && used == 0 && !parser.is_done())) {
      // The parser wants more than what is left, and nothing more will come: the stream ends
      // here. (Offering the same bytes again breaks Beast's contract for need_more, and
      // put_eof() requires that the parser has seen some of the message.)
      ec = {};
      if (parser.got_some()) parser.put_eof(ec);
      if (!ec && !parser.is_done()) ec = http::error::partial_message;
    }
  }
  if (ec == http::error::body_limit) return Status::resource_exhausted(body_limit_message());
  if (ec == http::error::header_limit) return Status::resource_exhausted(header_limit_message());
  if (ec) return Status::invalid_argument("malformed request: " + ec.message());
  http::request<http::string_body> request = parser.release();
  return to_http_request(request);
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
// or a WebSocket session keeps it (and so the io_context it posts to) alive.
class HttpServer::Impl : public std::enable_shared_from_this<Impl> {
 public:
  class Tracked;
  class Answerable;
  template <class Stream>
  class Connection;
  template <class Stream>
  class WsSession;

  Impl(HttpServerConfig config, Handler handler)
      : config_(std::move(config)),
        tls_(config_.tls),
        handler_(std::move(handler)),
        work_(asio::make_work_guard(io_)),
        acceptor_(asio::make_strand(io_)),
        accept_retry_timer_(acceptor_.get_executor()) {
    HERALD_ASSERT(handler_ != nullptr, "HttpServer needs a handler");
    for (const auto& [path, ws_handler] : config_.websocket_paths) {
      HERALD_ASSERT(ws_handler != nullptr, "a WebSocket path needs a handler");
    }
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
  void unregister(Tracked* connection) {
    std::lock_guard lock(mu_);
    connections_.erase(connection);
  }
  // The handler of WebSocket upgrades on `path`, or nullptr when the path takes none.
  [[nodiscard]] WsHandler* websocket_handler(const std::string& path) const {
    const auto it = config_.websocket_paths.find(path);
    return it == config_.websocket_paths.end() ? nullptr : it->second;
  }
  [[nodiscard]] std::uint64_t next_websocket_id() { return ++last_websocket_id_; }
  // Moves the registration of `from` (an upgraded connection) to `to`, which then counts against
  // the limit instead. False when stop() has begun: `to` is registered but stop() may have missed
  // it, so the caller shuts it down.
  [[nodiscard]] bool adopt(Tracked* from, const std::shared_ptr<Tracked>& to) {
    std::lock_guard lock(mu_);
    connections_.erase(from);
    connections_.emplace(to.get(), to);
    return !stopping_;
  }
  // Hands `response` to the connection's strand unless the connection or the server is gone.
  void post_response(const std::weak_ptr<Answerable>& connection, HttpResponse response);
  [[nodiscard]] Responder make_responder(const std::shared_ptr<Answerable>& connection);

 private:
  void accept();
  void on_accept(const beast::error_code& ec, tcp::socket socket);
  // Registers and starts `connection`; false when stop() has begun (it is dropped unstarted).
  template <class Stream>
  bool start_connection(const std::shared_ptr<Connection<Stream>>& connection);

  const HttpServerConfig config_;
  // Null for a plaintext server; else where each new connection takes its TLS context.
  const std::shared_ptr<TlsServerContext> tls_;
  const Handler handler_;
  mutable std::mutex mu_;
  bool stopping_ = false;                                             // guarded by mu_
  std::unordered_map<Tracked*, std::weak_ptr<Tracked>> connections_;  // guarded by mu_
  std::atomic<std::uint64_t> last_websocket_id_{0};
  // Declared after the state above: destroying the io_context destroys pending handlers, whose
  // connections unregister themselves.
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  tcp::acceptor acceptor_;
  asio::steady_timer accept_retry_timer_;  // on the acceptor's strand
  std::vector<std::thread> threads_;
  std::uint16_t port_ = 0;
};

// A connection the server tracks: it counts against max_connections and stop() shuts it down.
class HttpServer::Impl::Tracked {
 public:
  virtual ~Tracked() = default;
  // Closes from any thread.
  virtual void shut_down() = 0;
};

// A connection the handler answers through a Responder.
class HttpServer::Impl::Answerable : public Tracked {
 public:
  // Any thread: hands `response` to the connection's strand.
  virtual void post_answer(HttpResponse response) = 0;
};

// One client connection, driven on its own strand: read a request, hand it to the handler, wait
// for the Responder, write the response, repeat. A WebSocket upgrade hands the stream over to a
// WsSession (see handle_upgrade()).
template <class Stream>
class HttpServer::Impl::Connection final : public Answerable,
                                           public std::enable_shared_from_this<Connection<Stream>> {
 public:
  // `tls` is the context of a TLS connection (null for a plaintext one); the connection and the
  // WebSocket it may become hold it until they close.
  Connection(Impl& server, tcp::socket socket, std::shared_ptr<ssl::context> tls)
      : server_(server),
        tls_(std::move(tls)),
        stream_(make_stream(std::move(socket), tls_.get())) {}
  ~Connection() override { server_.unregister(this); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Starts reading requests (after the TLS handshake, on a TLS connection).
  void start() {
    asio::dispatch(stream_.get_executor(), [self = this->shared_from_this()] {
      self->after_handshake([self] { self->read_request(); });
    });
  }
  // Answers 503 and closes: the server is at its connection limit.
  void start_rejecting() {
    asio::dispatch(stream_.get_executor(), [self = this->shared_from_this()] {
      self->after_handshake([self] {
        self->write_error(503, "unavailable", "too many connections", /*close_after=*/true);
      });
    });
  }
  // Closes from any thread; a pending Responder then does nothing.
  void shut_down() override {
    asio::post(stream_.get_executor(), [self = this->shared_from_this()] { self->close_now(); });
  }
  void post_answer(HttpResponse response) override {
    asio::post(stream_.get_executor(),
               [self = this->shared_from_this(), response = std::move(response)]() mutable {
                 self->respond(std::move(response));
               });
  }
  // On the strand: writes the handler's response.
  void respond(HttpResponse response) {
    awaiting_response_.reset();
    if (closed_) return;
    write(std::move(response), /*close_after=*/!keep_alive_);
  }

 private:
  static Stream make_stream(tcp::socket&& socket, ssl::context* tls) {
    if constexpr (is_tls_stream<Stream>) {
      HERALD_ASSERT(tls != nullptr, "a TLS connection without a TLS context");
      return Stream(beast::tcp_stream(std::move(socket)), *tls);
    } else {
      HERALD_ASSERT(tls == nullptr, "a plaintext connection with a TLS context");
      return Stream(std::move(socket));
    }
  }
  [[nodiscard]] auto& lowest() { return beast::get_lowest_layer(stream_); }
  [[nodiscard]] const auto& lowest() const { return beast::get_lowest_layer(stream_); }
  // On the strand: runs `next` at once on a plaintext connection, after a successful server
  // handshake (bounded by kTlsHandshakeTimeoutMs) on a TLS one; a failed handshake closes.
  template <class Next>
  void after_handshake(Next next);
  void read_request();
  void on_read(const beast::error_code& ec);
  void dispatch_request(http::request<http::string_body>&& request);
  void handle_upgrade(const http::request<http::string_body>& request, HttpRequest&& upgrade);
  [[nodiscard]] std::string remote_endpoint() const;
  void write(HttpResponse response, bool close_after);
  void write_error(unsigned status, std::string_view code, std::string_view message,
                   bool close_after) {
    write(HttpResponse::error(status, code, message), close_after);
  }
  void linger_close();
  void close_now();

  Impl& server_;
  const std::shared_ptr<ssl::context> tls_;
  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  // Keeps the connection alive while the handler holds the Responder.
  std::shared_ptr<Connection> awaiting_response_;
  unsigned version_ = kHttp11;
  bool keep_alive_ = false;
  bool closed_ = false;
  std::array<char, kDrainChunkBytes> drain_buffer_{};
};

// One WebSocket, grown from a Connection's upgrade request and driven on that connection's strand.
// On the strand run the reader (read a message, hand it to on_text, read the next), the writer
// (pump(): write queued messages one at a time, then the close frame once a close was requested)
// and the close deadline; finish() ends all three and calls on_close. The outbound queue and the
// phase are the only state other threads touch (send_text, close, shut_down), under mu_.
//
// The session keeps the server's core (and so its io_context) alive: the handler may hold the
// session after the server is gone, and the session's I/O objects must die before the io_context.
template <class Stream>
class HttpServer::Impl::WsSession final : public Tracked,
                                          public WsConnection,
                                          public std::enable_shared_from_this<WsSession<Stream>> {
 public:
  WsSession(std::shared_ptr<Impl> server, WsHandler& handler, const asio::any_io_executor& strand,
            std::string remote_endpoint, std::shared_ptr<ssl::context> tls)
      : server_(std::move(server)),
        tls_(std::move(tls)),
        handler_(handler),
        strand_(strand),
        id_(server_->next_websocket_id()),
        remote_endpoint_(std::move(remote_endpoint)),
        max_message_bytes_(server_->config().ws_max_message_bytes),
        max_queued_bytes_(server_->config().ws_max_queued_bytes),
        idle_timeout_ms_(server_->config().ws_idle_timeout_ms),
        close_deadline_(strand) {}
  ~WsSession() override = default;
  WsSession(const WsSession&) = delete;
  WsSession& operator=(const WsSession&) = delete;

  // On the strand, once on_open accepted: takes over the stream and answers the handshake.
  void start(Stream&& stream, const http::request<http::string_body>& request);
  // On the strand, when on_open refused: the session never opens and never calls the handler.
  void refuse() {
    finished_ = true;
    std::lock_guard lock(mu_);
    phase_ = Phase::kClosed;
    drop_queue();
  }

  [[nodiscard]] Status send_text(std::string text) override;
  void close(std::uint16_t code, std::string reason) override;
  [[nodiscard]] std::uint64_t id() const override { return id_; }
  [[nodiscard]] const std::string& remote_endpoint() const override { return remote_endpoint_; }
  [[nodiscard]] std::size_t queued_bytes() const override {
    std::lock_guard lock(mu_);
    return queued_bytes_ + writing_bytes_;
  }
  void when_drained(std::size_t below, std::function<void()> fn) override {
    {
      std::lock_guard lock(mu_);
      if (phase_ != Phase::kOpen) return;
      if (queued_bytes_ + writing_bytes_ > below) {
        drain_below_ = below;
        drain_fn_ = std::move(fn);
        return;
      }
      drain_fn_ = nullptr;
    }
    fn();
  }
  // stop(): closes with 1001 at once, dropping what is queued.
  void shut_down() override {
    if (!enter_closing(/*drop=*/true)) return;
    post_close({kWsCloseGoingAway, "server shutting down", /*flush=*/false});
  }

 private:
  enum class Phase : std::uint8_t { kOpen, kClosing, kClosed };
  struct CloseRequest {
    std::uint16_t code = kWsCloseNormal;
    std::string reason;
    bool flush = true;  // write the queued messages before the close frame
  };

  // Any thread. Moves an open session to kClosing; with `drop`, also a closing one, and empties
  // the queue. False when there is nothing to do.
  bool enter_closing(bool drop) {
    std::lock_guard lock(mu_);
    if (phase_ == Phase::kClosed || (phase_ == Phase::kClosing && !drop)) return false;
    phase_ = Phase::kClosing;
    if (drop) drop_queue();
    return true;
  }
  void drop_queue() {  // mu_ held
    queue_.clear();
    queued_bytes_ = 0;
    drain_fn_ = nullptr;  // a closing connection drains nothing more
  }
  void post_close(CloseRequest request) {
    asio::post(strand_, [self = this->shared_from_this(), request = std::move(request)]() mutable {
      self->request_close(std::move(request));
    });
  }

  void on_handshake(const beast::error_code& ec);
  void read_next();
  void on_read(const beast::error_code& ec);
  void request_close(CloseRequest request);
  void pump();
  void write(std::string message);
  void on_write(const beast::error_code& ec);
  void send_close_frame();
  void on_close_frame_done();
  void finish();

  const std::shared_ptr<Impl> server_;       // first: destroyed last
  const std::shared_ptr<ssl::context> tls_;  // the TLS connection's context; null for plaintext
  WsHandler& handler_;
  const asio::any_io_executor strand_;
  const std::uint64_t id_;
  const std::string remote_endpoint_;
  const std::size_t max_message_bytes_;
  const std::size_t max_queued_bytes_;
  const std::uint32_t idle_timeout_ms_;

  mutable std::mutex mu_;
  Phase phase_ = Phase::kOpen;  // guarded by mu_
  // guarded by mu_. A list, not a deque: empty, it holds no memory (a deque keeps a 512-byte
  // block), and an idle connection's queue is empty.
  std::list<std::string> queue_;
  std::size_t queued_bytes_ = 0;    // guarded by mu_: the bytes in queue_
  std::size_t writing_bytes_ = 0;   // guarded by mu_: the message being written
  bool pump_posted_ = false;        // guarded by mu_
  std::function<void()> drain_fn_;  // guarded by mu_: when_drained()'s callback, until it runs
  std::size_t drain_below_ = 0;     // guarded by mu_

  // The strand's state.
  std::optional<websocket::stream<typename WsTransport<Stream>::type>> ws_;
  beast::flat_buffer read_buffer_;
  std::string writing_;
  asio::steady_timer close_deadline_;
  std::optional<CloseRequest> close_request_;
  bool handshake_done_ = false;
  bool write_in_flight_ = false;
  bool close_in_flight_ = false;
  bool reading_done_ = false;  // no read is pending, and none will start
  bool finished_ = false;
};

template <class Stream>
template <class Next>
void HttpServer::Impl::Connection<Stream>::after_handshake(Next next) {
  if constexpr (is_tls_stream<Stream>) {
    lowest().expires_after(milliseconds(kTlsHandshakeTimeoutMs));
    stream_.async_handshake(
        ssl::stream_base::server,
        [self = this->shared_from_this(), next = std::move(next)](const beast::error_code& ec) {
          self->lowest().expires_never();
          if (self->closed_) return;
          if (ec) {
            // A plaintext client, a client that distrusts the certificate, a scanner: not the
            // server's trouble, so not a warning.
            spdlog::debug("http server: TLS handshake with {} failed: {}", self->remote_endpoint(),
                          ec.message());
            self->close_now();
            return;
          }
          next();
        });
  } else {
    next();
  }
}

template <class Stream>
void HttpServer::Impl::Connection<Stream>::read_request() {
  parser_.emplace();
  limit_request_parser(*parser_);
  lowest().expires_after(milliseconds(server_.config().idle_read_timeout_ms));
  http::async_read(stream_, buffer_, *parser_,
                   [self = this->shared_from_this()](const beast::error_code& ec, std::size_t) {
                     self->on_read(ec);
                   });
}

template <class Stream>
void HttpServer::Impl::Connection<Stream>::on_read(const beast::error_code& ec) {
  lowest().expires_never();
  if (closed_) return;
  if (ec == http::error::body_limit) {
    write_error(413, "payload_too_large", body_limit_message(), true);
  } else if (ec == http::error::header_limit) {
    write_error(431, "headers_too_large", header_limit_message(), true);
  } else if (ec && is_parse_error(ec) && ec != http::error::end_of_stream &&
             ec != http::error::partial_message) {
    write_error(400, "bad_request", "malformed request: " + ec.message(), true);
  } else if (ec) {
    close_now();  // end of stream, idle timeout, reset, or shutdown
  } else {
    dispatch_request(parser_->release());
  }
}

template <class Stream>
void HttpServer::Impl::Connection<Stream>::dispatch_request(
    http::request<http::string_body>&& request) {
  version_ = request.version();
  keep_alive_ = request.keep_alive();
  const bool upgrade = !request[http::field::upgrade].empty();
  if (upgrade && !asks_for_websocket(request)) {
    write_error(501, "not_implemented", "only WebSocket upgrades are supported", true);
    return;
  }
  Result<HttpRequest> out = to_http_request(request);
  if (!out.ok()) {
    write_error(400, "bad_request", out.status().message(), upgrade || !keep_alive_);
    return;
  }
  if (upgrade) {
    handle_upgrade(request, std::move(out).value());
    return;
  }
  awaiting_response_ = this->shared_from_this();
  server_.handler()(std::move(out).value(), server_.make_responder(awaiting_response_));
}

// A WebSocket upgrade: the path's handler decides, and an accepted upgrade hands stream_ to a
// WsSession, which answers the handshake. Every refusal closes the connection.
template <class Stream>
void HttpServer::Impl::Connection<Stream>::handle_upgrade(
    const http::request<http::string_body>& request, HttpRequest&& upgrade) {
  WsHandler* handler = server_.websocket_handler(upgrade.path);
  if (handler == nullptr) {
    write_error(404, "not_found", "no WebSocket endpoint at this path", true);
    return;
  }
  if (!websocket::is_upgrade(request)) {
    write_error(400, "bad_request", "malformed WebSocket upgrade request", true);
    return;
  }
  auto session = std::make_shared<WsSession<Stream>>(
      server_.shared_from_this(), *handler, stream_.get_executor(), remote_endpoint(), tls_);
  std::optional<HttpResponse> refusal = handler->on_open(session, upgrade);
  if (refusal.has_value()) {
    HERALD_ASSERT(refusal->status >= 400, "a refused WebSocket upgrade needs an error status");
    session->refuse();
    write(std::move(*refusal), /*close_after=*/true);
    return;
  }
  const bool adopted = server_.adopt(this, session);
  closed_ = true;  // stream_ now belongs to the session
  session->start(std::move(stream_), request);
  if (!adopted) session->shut_down();
}

template <class Stream>
std::string HttpServer::Impl::Connection<Stream>::remote_endpoint() const {
  beast::error_code ec;
  const tcp::endpoint endpoint = lowest().socket().remote_endpoint(ec);
  return ec ? std::string("unknown") : endpoint_string(endpoint);
}

template <class Stream>
void HttpServer::Impl::Connection<Stream>::write(HttpResponse response, bool close_after) {
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
  lowest().expires_after(milliseconds(kWriteTimeoutMs));
  http::async_write(stream_, *message,
                    [self = this->shared_from_this(), message, close_after](
                        const beast::error_code& ec, std::size_t) {
                      self->lowest().expires_never();
                      if (ec || self->closed_) {
                        self->close_now();
                      } else if (close_after) {
                        self->linger_close();
                      } else {
                        self->read_request();
                      }
                    });
}

// Drains what the client is still sending (bounded in time and bytes) before closing, so that the
// client reads the response instead of a reset.
template <class Stream>
void HttpServer::Impl::Connection<Stream>::linger_close() {
  async_linger_close(
      lowest(), asio::buffer(drain_buffer_), {kLingerMs, kMaxLingerBytes},
      [self = this->shared_from_this()](const beast::error_code&) { self->close_now(); });
}

template <class Stream>
void HttpServer::Impl::Connection<Stream>::close_now() {
  awaiting_response_.reset();
  if (closed_) return;
  closed_ = true;
  beast::error_code ignored;
  lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
  lowest().close();
}

template <class Stream>
void HttpServer::Impl::WsSession<Stream>::start(Stream&& stream,
                                                const http::request<http::string_body>& request) {
  ws_.emplace(std::move(stream));
  // The WebSocket's own timeouts replace the TCP stream's (Beast requires one or the other).
  beast::get_lowest_layer(*ws_).expires_never();
  ws_->set_option(websocket::stream_base::timeout{milliseconds(kWsHandshakeTimeoutMs),
                                                  milliseconds(idle_timeout_ms_),
                                                  /*keep_alive_pings=*/true});
  ws_->set_option(websocket::stream_base::decorator(
      [](websocket::response_type& response) { response.set(http::field::server, "herald"); }));
  ws_->read_message_max(max_message_bytes_);
  ws_->text(true);
  ws_->async_accept(request, [self = this->shared_from_this()](const beast::error_code& ec) {
    self->on_handshake(ec);
  });
}

template <class Stream>
Status HttpServer::Impl::WsSession<Stream>::send_text(std::string text) {
  {
    std::lock_guard lock(mu_);
    if (phase_ != Phase::kOpen) return Status::failed_precondition("the WebSocket is closed");
    if (text.size() > max_queued_bytes_) {
      return Status::invalid_argument("a message of " + std::to_string(text.size()) +
                                      " bytes exceeds the send queue of " +
                                      std::to_string(max_queued_bytes_) + " bytes");
    }
    if (queued_bytes_ + writing_bytes_ + text.size() <= max_queued_bytes_) {
      queued_bytes_ += text.size();
      queue_.push_back(std::move(text));
      if (!std::exchange(pump_posted_, true)) {
        asio::post(strand_, [self = this->shared_from_this()] { self->pump(); });
      }
      return Status::ok_status();
    }
    phase_ = Phase::kClosing;
    drop_queue();
  }
  spdlog::warn("websocket {} ({}): closing a slow consumer", id_, remote_endpoint_);
  post_close({kWsClosePolicyViolation, "slow consumer", /*flush=*/false});
  return Status::resource_exhausted("the client reads too slowly: more than " +
                                    std::to_string(max_queued_bytes_) + " bytes queued");
}

template <class Stream>
void HttpServer::Impl::WsSession<Stream>::close(std::uint16_t code, std::string reason) {
  HERALD_ASSERT(is_sendable_ws_close_code(code), "not a close code an endpoint may send");
  if (!enter_closing(/*drop=*/false)) return;
  post_close({code, truncate_ws_close_reason(reason), /*flush=*/true});
}

template <class Stream>
void HttpServer::Impl::WsSession<Stream>::on_handshake(const beast::error_code& ec) {
  if (finished_) return;
  if (ec) {
    spdlog::debug("websocket {} ({}): handshake failed: {}", id_, remote_endpoint_, ec.message());
    finish();
    return;
  }
  handshake_done_ = true;
  read_next();
  pump();
}

template <class Stream>
void HttpServer::Impl::WsSession<Stream>::read_next() {
  ws_->async_read(read_buffer_,
                  [self = this->shared_from_this()](const beast::error_code& ec, std::size_t) {
                    self->on_read(ec);
                  });
}

template <class Stream>
void HttpServer::Impl::WsSession<Stream>::on_read(const beast::error_code& ec) {
  if (finished_) return;
  if (ec) {
    // The client closed, a limit was hit (Beast has sent 1009 or 1007 and lingered), the idle
    // timeout passed or the socket failed. A close handshake of ours in flight finishes the session
    // itself.
    reading_done_ = true;
    if (!close_in_flight_) finish();
    return;
  }
  if (ws_->got_binary()) {
    reading_done_ = true;  // the close handshake reads what still arrives
    read_buffer_.clear();
    enter_closing(/*drop=*/true);  // false when already closing: the close below still applies
    request_close({kWsCloseUnsupportedData, "binary messages are not supported", /*flush=*/false});
    return;
  }
  std::string text = beast::buffers_to_string(read_buffer_.data());
  read_buffer_.clear();
  if (read_buffer_.capacity() > kMaxKeptWsReadBufferBytes) read_buffer_.shrink_to_fit();
  handler_.on_text(this->shared_from_this(), std::move(text));
  read_next();
}

// On the strand. The first request wins; a later one can only stop the flushing.
template <class Stream>
void HttpServer::Impl::WsSession<Stream>::request_close(CloseRequest request) {
  if (finished_) return;
  if (close_request_.has_value()) {
    close_request_->flush = close_request_->flush && request.flush;
  } else {
    close_request_ = std::move(request);
    close_deadline_.expires_after(milliseconds(kWsCloseTimeoutMs));
    close_deadline_.async_wait([self = this->shared_from_this()](const beast::error_code& ec) {
      if (!ec) self->finish();
    });
  }
  pump();
}

// On the strand: starts the next write, or the close frame once nothing is left to write.
template <class Stream>
void HttpServer::Impl::WsSession<Stream>::pump() {
  std::optional<std::string> next;
  {
    std::lock_guard lock(mu_);
    pump_posted_ = false;
    if (finished_ || !handshake_done_ || write_in_flight_ || close_in_flight_) return;
    const bool may_write = !close_request_.has_value() || close_request_->flush;
    if (may_write && !queue_.empty()) {
      next = std::move(queue_.front());
      queue_.pop_front();
      queued_bytes_ -= next->size();
      writing_bytes_ = next->size();
    }
  }
  if (next.has_value()) {
    write(std::move(*next));
  } else if (close_request_.has_value()) {
    send_close_frame();
  }
}

template <class Stream>
void HttpServer::Impl::WsSession<Stream>::write(std::string message) {
  writing_ = std::move(message);
  write_in_flight_ = true;
  ws_->async_write(asio::buffer(writing_),
                   [self = this->shared_from_this()](const beast::error_code& ec, std::size_t) {
                     self->on_write(ec);
                   });
}

template <class Stream>
void HttpServer::Impl::WsSession<Stream>::on_write(const beast::error_code& ec) {
  write_in_flight_ = false;
  writing_ = std::string();  // give the memory back: queued bytes are the bound
  std::function<void()> drained;
  {
    std::lock_guard lock(mu_);
    writing_bytes_ = 0;
    if (drain_fn_ && phase_ == Phase::kOpen && queued_bytes_ <= drain_below_) {
      drained = std::exchange(drain_fn_, nullptr);
    }
  }
  if (drained) drained();
  if (finished_) return;
  if (ec) {
    finish();  // the socket is broken
    return;
  }
  pump();
}

template <class Stream>
void HttpServer::Impl::WsSession<Stream>::send_close_frame() {
  close_in_flight_ = true;
  ws_->async_close(
      websocket::close_reason(static_cast<websocket::close_code>(close_request_->code),
                              close_request_->reason),
      [self = this->shared_from_this()](const beast::error_code&) { self->on_close_frame_done(); });
}

template <class Stream>
void HttpServer::Impl::WsSession<Stream>::on_close_frame_done() {
  close_in_flight_ = false;
  if (finished_) return;
  // Beast has torn the socket down, so a read still pending completes at once and finishes.
  if (reading_done_) finish();
}

// On the strand, exactly once for an accepted session: closes the socket, stops the timers,
// leaves the server's count and tells the handler. Operations still pending complete with
// errors and find finished_ set.
template <class Stream>
void HttpServer::Impl::WsSession<Stream>::finish() {
  if (finished_) return;
  finished_ = true;
  close_deadline_.cancel();
  if (ws_.has_value()) {
    // Turning both timeouts off cancels Beast's timer, which would otherwise hold the io_context.
    ws_->set_option(websocket::stream_base::timeout{websocket::stream_base::none(),
                                                    websocket::stream_base::none(), false});
    beast::get_lowest_layer(*ws_).close();
  }
  {
    std::lock_guard lock(mu_);
    phase_ = Phase::kClosed;
    drop_queue();
  }
  server_->unregister(this);
  handler_.on_close(this->shared_from_this());
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

Responder HttpServer::Impl::make_responder(const std::shared_ptr<Answerable>& connection) {
  auto pending = std::make_shared<PendingResponse>(
      [server = shared_from_this(), weak = std::weak_ptr<Answerable>(connection)](
          HttpResponse response) { server->post_response(weak, std::move(response)); });
  return [pending](HttpResponse response) { pending->answer(std::move(response)); };
}

void HttpServer::Impl::post_response(const std::weak_ptr<Answerable>& weak, HttpResponse response) {
  std::shared_ptr<Answerable> connection;  // released after the lock: its destructor takes mu_
  std::lock_guard lock(mu_);
  if (stopping_ || !(connection = weak.lock())) return;
  connection->post_answer(std::move(response));
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
  std::vector<std::shared_ptr<Tracked>> open;
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
    connection->shut_down();
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
  // Answers and events are small and latency-bound: send them now, not after the client's ACK.
  beast::error_code nodelay_ec;
  socket.set_option(tcp::no_delay(true), nodelay_ec);
  // Each connection takes the TLS context current at its accept: a reload changes only later ones.
  const bool keep_accepting = tls_ != nullptr
                                  ? start_connection(std::make_shared<Connection<TlsStream>>(
                                        *this, std::move(socket), tls_->current()))
                                  : start_connection(std::make_shared<Connection<PlainStream>>(
                                        *this, std::move(socket), nullptr));
  if (keep_accepting) accept();
}

template <class Stream>
bool HttpServer::Impl::start_connection(const std::shared_ptr<Connection<Stream>>& connection) {
  bool over_limit = false;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return false;
    over_limit = connections_.size() >= config_.max_connections;
    connections_.emplace(connection.get(), connection);
  }
  if (over_limit) {
    spdlog::warn("http server: refusing a connection, {} open", config_.max_connections);
    connection->start_rejecting();
  } else {
    connection->start();
  }
  return true;
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
