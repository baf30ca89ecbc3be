#include "push/h2_client.h"

#include <fmt/format.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <cstring>
#include <utility>

#include "base/assert.h"
#include "base/log.h"
#include "push/h2_io.h"

namespace herald::push::h2 {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {

constexpr std::uint16_t kHttpsPort = 443;

bool is_ip_address(const std::string& host) {
  boost::system::error_code ec;
  const asio::ip::address address = asio::ip::make_address(host, ec);
  static_cast<void>(address);  // only whether it parsed matters
  return !ec;
}

enum class ConnectionState : std::uint8_t { kConnecting, kReady, kDraining };

}  // namespace

// One request, across its attempts. Owned by the queue or by the stream it is on.
struct Call {
  explicit Call(asio::io_context& io) : timer(io) {}
  Request request;
  ResponseHandler done;
  asio::steady_timer timer;  // the deadline
  bool finished = false;
  std::optional<std::list<std::shared_ptr<Call>>::iterator> queued_at;
  // The current attempt.
  std::size_t body_offset = 0;
  std::int32_t stream_id = -1;
  std::weak_ptr<Connection> connection;  // the one carrying stream_id
  Response response;
};

// One TLS + HTTP/2 connection of a client.
class Connection final : public H2Io {
 public:
  using CallPtr = std::shared_ptr<Call>;

  Connection(Client& client, std::uint64_t id)
      : H2Io(TlsStream(client.io(), client.tls())),
        client_(client),
        id_(id),
        resolver_(client.io()),
        connect_timer_(client.io()) {}

  void connect();
  [[nodiscard]] std::uint64_t id() const { return id_; }
  [[nodiscard]] ConnectionState state() const { return state_; }
  void set_state(ConnectionState state) { state_ = state; }
  [[nodiscard]] std::size_t free_streams() const;
  std::map<std::int32_t, CallPtr>& streams() { return streams_; }
  CallPtr find(std::int32_t stream_id) {
    const auto it = streams_.find(stream_id);
    return it == streams_.end() ? nullptr : it->second;
  }

  static ssize_t read_body(nghttp2_session* session, std::int32_t stream_id, std::uint8_t* buf,
                           std::size_t length, std::uint32_t* data_flags,
                           nghttp2_data_source* source, void* user_data);

 protected:
  void on_input() override { client_.pump(); }
  void on_closed(const std::string& reason) override {
    connect_timer_.cancel();
    client_.connection_closed(*this, reason);
  }

 private:
  std::shared_ptr<Connection> self() {
    return std::static_pointer_cast<Connection>(shared_from_this());
  }
  void handshake();
  Status begin_session();

  static int on_header(nghttp2_session* session, const nghttp2_frame* frame,
                       const std::uint8_t* name, std::size_t name_len, const std::uint8_t* value,
                       std::size_t value_len, std::uint8_t flags, void* user_data);
  static int on_data_chunk(nghttp2_session* session, std::uint8_t flags, std::int32_t stream_id,
                           const std::uint8_t* data, std::size_t len, void* user_data);
  static int on_stream_close(nghttp2_session* session, std::int32_t stream_id,
                             std::uint32_t error_code, void* user_data);
  static int on_frame_recv(nghttp2_session* session, const nghttp2_frame* frame, void* user_data);

  Client& client_;
  const std::uint64_t id_;
  ConnectionState state_ = ConnectionState::kConnecting;
  tcp::resolver resolver_;
  asio::steady_timer connect_timer_;
  std::map<std::int32_t, CallPtr> streams_;  // open streams and the calls on them
};

void Connection::connect() {
  const ClientOptions& options = client_.options();
  connect_timer_.expires_after(std::chrono::milliseconds(options.connect_timeout_ms));
  connect_timer_.async_wait([self = self()](const boost::system::error_code& ec) {
    if (!ec && self->state_ == ConnectionState::kConnecting) {
      self->close("connect timed out");
    }
  });
  resolver_.async_resolve(
      options.host, std::to_string(options.port),
      [self = self()](const boost::system::error_code& ec,
                      const tcp::resolver::results_type& endpoints) {
        if (self->closed()) {
          return;
        }
        if (ec) {
          self->close(fmt::format("cannot resolve the {} host: {}", self->client_.options().service,
                                  ec.message()));
          return;
        }
        asio::async_connect(
            self->stream().lowest_layer(), endpoints,
            [self](const boost::system::error_code& connect_ec, const tcp::endpoint&) {
              if (self->closed()) {
                return;
              }
              if (connect_ec) {
                self->close("cannot connect: " + connect_ec.message());
                return;
              }
              self->handshake();
            });
      });
}

void Connection::handshake() {
  const std::string& host = client_.options().host;
  if (!is_ip_address(host)) {
    // SNI; OpenSSL copies the name.
    SSL_set_tlsext_host_name(stream().native_handle(), host.c_str());
  }
  stream().set_verify_mode(ssl::verify_peer);
  stream().set_verify_callback(ssl::host_name_verification(host));
  stream().async_handshake(ssl::stream_base::client,
                           [self = self()](const boost::system::error_code& ec) {
                             if (self->closed()) {
                               return;
                             }
                             if (ec) {
                               self->close("TLS handshake failed: " + ec.message());
                               return;
                             }
                             const Status status = self->begin_session();
                             if (!status.ok()) {
                               self->close(status.message());
                               return;
                             }
                             self->start();
                           });
}

Status Connection::begin_session() {
  const unsigned char* alpn = nullptr;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(stream().native_handle(), &alpn, &alpn_len);
  if (alpn_len != 2 || std::memcmp(alpn, "h2", 2) != 0) {
    return Status::unavailable("the server did not select HTTP/2 (ALPN h2)");
  }
  nghttp2_session_callbacks* callbacks = nullptr;
  if (nghttp2_session_callbacks_new(&callbacks) != 0) {
    return Status::unavailable("out of memory for HTTP/2 callbacks");
  }
  nghttp2_session_callbacks_set_on_header_callback(callbacks, &Connection::on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, &Connection::on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, &Connection::on_stream_close);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, &Connection::on_frame_recv);
  nghttp2_session* session = nullptr;
  const int rv = nghttp2_session_client_new(&session, callbacks, this);
  nghttp2_session_callbacks_del(callbacks);
  if (rv != 0) {
    return Status::unavailable(std::string("HTTP/2 session: ") + nghttp2_strerror(rv));
  }
  adopt_session(session);
  // No RFC 7540 priorities: nghttp2 then schedules DATA round-robin (RFC 9218 scheduler). With
  // the dependency-tree scheduler, a request body cut short by the server's connection window
  // waited for the rest until the connection went quiet (seconds under load).
  const nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                             {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1}};
  if (nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, settings, std::size(settings)) != 0) {
    return Status::unavailable("HTTP/2 SETTINGS could not be queued");
  }
  return Status::ok_status();
}

std::size_t Connection::free_streams() const {
  if (state_ != ConnectionState::kReady || closed()) {
    return 0;
  }
  const std::uint32_t remote =
      nghttp2_session_get_remote_settings(session(), NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
  const std::size_t limit = std::min(remote, client_.options().max_concurrent_streams);
  return streams_.size() >= limit ? 0 : limit - streams_.size();
}

int Connection::on_header(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name,
                          std::size_t name_len, const std::uint8_t* value, std::size_t value_len,
                          std::uint8_t, void* user_data) {
  auto& connection = *static_cast<Connection*>(user_data);
  if (frame->hd.type != NGHTTP2_HEADERS) {
    return 0;
  }
  const CallPtr call = connection.find(frame->hd.stream_id);
  if (!call) {
    return 0;
  }
  const std::string_view key(reinterpret_cast<const char*>(name), name_len);
  const std::string_view text(reinterpret_cast<const char*>(value), value_len);
  Response& response = call->response;
  if (key == ":status") {
    int status = 0;
    for (const char c : text) {
      status = (c >= '0' && c <= '9' && status < 1000) ? status * 10 + (c - '0') : 1000;
    }
    response.status = status < 1000 ? status : 0;
  } else if (!key.starts_with(':') && response.headers.size() < kMaxResponseHeaders) {
    response.headers[std::string(key)] = std::string(text.substr(0, kMaxResponseHeaderBytes));
  }
  return 0;
}

int Connection::on_data_chunk(nghttp2_session*, std::uint8_t, std::int32_t stream_id,
                              const std::uint8_t* data, std::size_t len, void* user_data) {
  auto& connection = *static_cast<Connection*>(user_data);
  const CallPtr call = connection.find(stream_id);
  if (call) {
    std::string& body = call->response.body;
    const std::size_t room = connection.client_.options().max_response_body_bytes - body.size();
    body.append(reinterpret_cast<const char*>(data), std::min(len, room));
  }
  return 0;
}

int Connection::on_stream_close(nghttp2_session*, std::int32_t stream_id, std::uint32_t error_code,
                                void* user_data) {
  auto& connection = *static_cast<Connection*>(user_data);
  const auto it = connection.streams_.find(stream_id);
  if (it == connection.streams_.end()) {
    return 0;
  }
  const CallPtr call = it->second;
  connection.streams_.erase(it);
  connection.client_.stream_ended();
  connection.client_.stream_closed(connection, call, error_code);
  return 0;
}

int Connection::on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
  auto& connection = *static_cast<Connection*>(user_data);
  if (frame->hd.type == NGHTTP2_SETTINGS && (frame->hd.flags & NGHTTP2_FLAG_ACK) == 0 &&
      connection.state_ == ConnectionState::kConnecting) {
    connection.connect_timer_.cancel();
    connection.state_ = ConnectionState::kReady;
    connection.client_.connection_ready(connection);
  } else if (frame->hd.type == NGHTTP2_GOAWAY) {
    // nghttp2 has already closed the streams above last-stream-id with REFUSED_STREAM.
    connection.client_.connection_goaway(connection);
  }
  return 0;
}

ssize_t Connection::read_body(nghttp2_session*, std::int32_t, std::uint8_t* buf, std::size_t length,
                              std::uint32_t* data_flags, nghttp2_data_source* source, void*) {
  auto& call = *static_cast<Call*>(source->ptr);
  const std::string& body = call.request.body;
  const std::size_t n = std::min(length, body.size() - call.body_offset);
  std::copy_n(body.data() + call.body_offset, n, buf);
  call.body_offset += n;
  if (call.body_offset == body.size()) {
    *data_flags |= NGHTTP2_DATA_FLAG_EOF;
  }
  return static_cast<ssize_t>(n);
}

// ---------------------------------------------------------------------------------------------

std::string Response::header(const std::string& name) const {
  const auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

Status configure_client_tls(ssl::context& tls, const std::string& ca_file) {
  boost::system::error_code ec;
  tls.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                      ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1,
                  ec);
  if (!ca_file.empty()) {
    tls.load_verify_file(ca_file, ec);
  } else {
    tls.set_default_verify_paths(ec);
  }
  if (ec) {
    return Status::io_error("cannot load the trusted CAs: " + ec.message());
  }
  static constexpr unsigned char kAlpnH2[] = {2, 'h', '2'};
  if (SSL_CTX_set_alpn_protos(tls.native_handle(), kAlpnH2, sizeof(kAlpnH2)) != 0) {
    return Status::io_error("cannot set ALPN");
  }
  return Status::ok_status();
}

IoThread::IoThread() : work_(asio::make_work_guard(io_)) {}

IoThread::~IoThread() {
  stop([] {});
}

void IoThread::start() {
  HERALD_ASSERT(!thread_.joinable(), "an I/O thread starts once");
  thread_ = std::thread([this] { io_.run(); });
}

bool IoThread::post(std::function<void()> fn) {
  const std::lock_guard lock(mu_);
  if (stopped_) {
    return false;
  }
  asio::post(io_, std::move(fn));
  return true;
}

void IoThread::stop(const std::function<void()>& last) {
  {
    const std::lock_guard lock(mu_);
    if (stopped_) {
      return;
    }
    stopped_ = true;
    asio::post(io_, [this, last] {
      last();
      io_.stop();
    });
  }
  work_.reset();
  if (thread_.joinable()) {
    thread_.join();
  }
}

Client::Client(asio::io_context& io, ssl::context& tls, ClientOptions options)
    : io_(io),
      tls_(tls),
      options_(std::move(options)),
      authority_(options_.port == kHttpsPort ? options_.host
                                             : fmt::format("{}:{}", options_.host, options_.port)),
      reconnect_timer_(io),
      rng_(options_.seed) {
  HERALD_ASSERT(options_.max_concurrent_streams > 0 && options_.connect_timeout_ms > 0,
                "HTTP/2 client bounds must be positive");
}

Client::~Client() = default;

void Client::submit(Request request, ResponseHandler done, bool urgent) {
  auto call = std::make_shared<Call>(io_);
  call->request = std::move(request);
  call->done = std::move(done);
  if (stopping_) {
    finish(call, Status::unavailable(fmt::format("the {} client is stopping", options_.service)));
    return;
  }
  // Posted: submit() may be called from a handler that runs inside an nghttp2 callback, where
  // the session must not send.
  asio::post(io_, [this, call, urgent] { enqueue(call, urgent); });
}

void Client::enqueue(const CallPtr& call, bool urgent) {
  if (stopping_) {
    finish(call, Status::unavailable(fmt::format("the {} client is stopping", options_.service)));
    return;
  }
  call->timer.expires_at(call->request.deadline);
  call->timer.async_wait([this, call](const boost::system::error_code& ec) {
    if (!ec) {
      time_out(call);
    }
  });
  call->queued_at = queue_.insert(urgent ? queue_.begin() : queue_.end(), call);
  ++queued_;
  pump();
  if (call->queued_at && queue_.size() > options_.max_queued_requests) {
    finish(call,
           Status::unavailable(fmt::format("the {} queue is full ({} requests wait for a stream)",
                                           options_.service, options_.max_queued_requests)));
  }
}

void Client::pump() {
  if (!active_ || active_->state() != ConnectionState::kReady) {
    ensure_connection();
    return;
  }
  std::size_t free = active_->free_streams();
  while (free > 0 && !queue_.empty()) {
    const CallPtr call = queue_.front();
    queue_.pop_front();
    --queued_;
    call->queued_at.reset();
    start_stream(*active_, call);
    --free;
  }
  active_->flush();
}

void Client::start_stream(Connection& connection, const CallPtr& call) {
  call->body_offset = 0;
  call->response = Response{};
  const Request& request = call->request;
  const std::string content_length = std::to_string(request.body.size());
  std::vector<nghttp2_nv> headers = {
      header(":method", "POST"),
      header(":scheme", "https"),
      header(":authority", authority_),
      header(":path", request.path),
  };
  for (const auto& [name, value] : request.headers) {
    headers.push_back(header(name, value));
  }
  headers.push_back(header("content-length", content_length));
  nghttp2_data_provider body{};
  body.source.ptr = call.get();
  body.read_callback = &Connection::read_body;
  const std::int32_t stream_id = nghttp2_submit_request(
      connection.session(), nullptr, headers.data(), headers.size(), &body, nullptr);
  if (stream_id < 0) {
    // Stream ids exhausted (after 2^30 requests) or out of memory: a fresh connection fixes it.
    requeue_front(call);
    retire(connection);
    return;
  }
  call->stream_id = stream_id;
  call->connection = std::static_pointer_cast<Connection>(connection.shared_from_this());
  connection.streams()[stream_id] = call;
  ++streams_in_flight_;
  ++requests_sent_;
}

void Client::finish(const CallPtr& call, Result<Response> result) {
  if (call->finished) {
    return;
  }
  call->finished = true;
  call->timer.cancel();
  if (call->queued_at) {
    queue_.erase(*call->queued_at);
    call->queued_at.reset();
    --queued_;
  }
  ResponseHandler done = std::move(call->done);
  done(std::move(result));
}

void Client::requeue_front(const CallPtr& call) {
  ++requests_retried_;
  call->stream_id = -1;
  call->queued_at = queue_.insert(queue_.begin(), call);
  ++queued_;
}

void Client::time_out(const CallPtr& call) {
  if (call->finished) {
    return;
  }
  const bool on_stream = !call->queued_at;
  finish(call, Status::unavailable(fmt::format("no answer from {} before the request's deadline",
                                               options_.service)));
  const std::shared_ptr<Connection> connection = call->connection.lock();
  if (on_stream && connection && !connection->closed() &&
      connection->find(call->stream_id) == call) {
    // Cancel the stream. It stays in its connection's map (and the body alive for nghttp2)
    // until nghttp2 reports it closed.
    if (nghttp2_submit_rst_stream(connection->session(), NGHTTP2_FLAG_NONE, call->stream_id,
                                  NGHTTP2_CANCEL) == 0) {
      connection->flush();
    }
  }
}

void Client::ensure_connection() {
  if (active_ || queue_.empty() || reconnect_armed_ || stopping_) {
    return;
  }
  if (failures_ == 0) {
    active_ = std::make_shared<Connection>(*this, next_connection_id_++);
    active_->connect();
    return;
  }
  const int doublings = std::min(failures_ - 1, 20);
  const std::int64_t cap = std::min(kReconnectMaxMs, kReconnectInitialMs << doublings);
  const std::int64_t delay_ms = rng_.range(0, cap);
  reconnect_armed_ = true;
  reconnect_timer_.expires_after(std::chrono::milliseconds(delay_ms));
  reconnect_timer_.async_wait([this](const boost::system::error_code& ec) {
    reconnect_armed_ = false;
    if (!ec && !active_ && !queue_.empty() && !stopping_) {
      active_ = std::make_shared<Connection>(*this, next_connection_id_++);
      active_->connect();
    }
  });
}

void Client::connection_ready(Connection& connection) {
  ++connections_opened_;
  spdlog::debug("{}: connection {} to {} is up", options_.service, connection.id(), authority_);
  // The queue is pumped by on_input() once nghttp2 has processed the rest of this input.
}

void Client::connection_goaway(Connection& connection) {
  spdlog::info("{}: connection {} received GOAWAY; {} streams finish on it", options_.service,
               connection.id(), connection.streams().size());
  retire(connection);
}

void Client::retire(Connection& connection) {
  connection.set_state(ConnectionState::kDraining);
  if (active_.get() == &connection) {
    draining_.insert(active_);
    active_.reset();
  }
  close_if_drained(connection);
}

void Client::close_if_drained(Connection& connection) {
  if (connection.state() == ConnectionState::kDraining && connection.streams().empty()) {
    // Posted: this may run inside an nghttp2 callback, where the session must not send.
    asio::post(io_, [drained = std::static_pointer_cast<Connection>(
                         connection.shared_from_this())] { drained->close_gracefully(); });
  }
}

void Client::connection_closed(Connection& connection, const std::string& reason) {
  // In-flight requests: the server may or may not have processed them; the caller decides.
  std::map<std::int32_t, CallPtr> lost;
  lost.swap(connection.streams());
  streams_in_flight_ -= static_cast<std::uint32_t>(lost.size());
  for (auto& [stream_id, call] : lost) {
    finish(call, Status::unavailable(
                     fmt::format("the {} connection was lost: {}", options_.service, reason)));
  }
  if (active_.get() == &connection) {
    ++failures_;
    spdlog::info("{}: connection {} closed: {}", options_.service, connection.id(), reason);
    active_.reset();
  } else {
    for (auto it = draining_.begin(); it != draining_.end(); ++it) {
      if (it->get() == &connection) {
        draining_.erase(it);
        break;
      }
    }
  }
  ensure_connection();
}

void Client::stream_closed(Connection& connection, const CallPtr& call, std::uint32_t error_code) {
  if (call->response.status != 0) {
    failures_ = 0;  // the server answers: the connection works
  }
  if (!call->finished) {
    if (error_code == NGHTTP2_REFUSED_STREAM) {
      // Never processed by the server (above GOAWAY's last-stream-id, or refused): send again.
      requeue_front(call);
    } else if (call->response.status == 0) {
      finish(call, Status::unavailable(fmt::format("the {} stream was reset: {}", options_.service,
                                                   nghttp2_http2_strerror(error_code))));
    } else {
      finish(call, std::move(call->response));
    }
  }
  close_if_drained(connection);
}

void Client::shutdown() {
  stopping_ = true;
  const Status stopping =
      Status::unavailable(fmt::format("the {} client is stopping", options_.service));
  while (!queue_.empty()) {
    finish(queue_.front(), stopping);
  }
  reconnect_timer_.cancel();
  std::vector<std::shared_ptr<Connection>> connections(draining_.begin(), draining_.end());
  if (active_) {
    connections.push_back(active_);
  }
  for (const auto& connection : connections) {
    connection->close(stopping.message());
  }
}

ClientStats Client::stats() const {
  ClientStats stats;
  stats.connections_opened = connections_opened_.load();
  stats.requests_sent = requests_sent_.load();
  stats.requests_retried = requests_retried_.load();
  stats.streams_in_flight = streams_in_flight_.load();
  stats.queued = queued_.load();
  return stats;
}

}  // namespace herald::push::h2
