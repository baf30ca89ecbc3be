#include "push/apns.h"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <list>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <utility>

#include "base/assert.h"
#include "base/log.h"
#include "base/random.h"
#include "crypto/jwt.h"
#include "push/h2_io.h"

namespace herald::push {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using messaging::ProviderResult;
using tcp = asio::ip::tcp;

namespace {

constexpr std::size_t kSha256Bytes = 32;
constexpr std::size_t kUuidBytes = 16;
// Longest delta-seconds accepted in Retry-After, in digits (more would overflow nothing, but
// such a value is garbage).
constexpr std::size_t kMaxRetryAfterDigits = 10;
constexpr char kHexDigits[] = "0123456789abcdef";

std::array<unsigned char, kSha256Bytes> sha256(std::string_view data) {
  std::array<unsigned char, kSha256Bytes> digest{};
  unsigned int size = 0;
  const int ok = EVP_Digest(data.data(), data.size(), digest.data(), &size, EVP_sha256(), nullptr);
  HERALD_ASSERT(ok == 1 && size == kSha256Bytes, "SHA-256 failed");
  return digest;
}

std::string hex(const unsigned char* data, std::size_t size) {
  std::string out;
  out.reserve(2 * size);
  for (std::size_t i = 0; i < size; ++i) {
    out.push_back(kHexDigits[data[i] >> 4]);
    out.push_back(kHexDigits[data[i] & 0x0f]);
  }
  return out;
}

std::string serialize_payload(const messaging::PushRequest& request, std::string_view title,
                              std::string_view body) {
  boost::json::object alert;
  alert["title"] = title;
  alert["body"] = body;
  boost::json::object aps;
  aps["alert"] = std::move(alert);
  aps["thread-id"] = request.conversation_id;
  boost::json::object herald;
  herald["conversation_id"] = request.conversation_id;
  herald["seq"] = request.seq;
  boost::json::object root;
  root["aps"] = std::move(aps);
  root["herald"] = std::move(herald);
  return boost::json::serialize(root);
}

// The payload build(cut) with the longest cut of `field` (at a UTF-8 boundary, the marker
// appended) that fits in kApnsMaxPayloadBytes; nullopt when not even an empty field fits. The
// payload's size grows with the cut, so a binary search finds it in O(log n) serializations.
std::optional<std::string> fit_field(std::string_view field,
                                     const std::function<std::string(std::string_view)>& build) {
  field = utf8_prefix(field, kApnsMaxPayloadBytes);
  const auto cut = [&](std::size_t bytes) {
    std::string text(utf8_prefix(field, bytes));
    if (!text.empty()) {
      text += kApnsCutMarker;
    }
    return text;
  };
  if (build(cut(0)).size() > kApnsMaxPayloadBytes) {
    return std::nullopt;
  }
  std::size_t lo = 0;
  std::size_t hi = field.size();
  while (lo < hi) {
    const std::size_t mid = lo + (hi - lo + 1) / 2;
    if (build(cut(mid)).size() <= kApnsMaxPayloadBytes) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  std::string payload = build(cut(lo));
  HERALD_ASSERT(payload.size() <= kApnsMaxPayloadBytes, "a fitted payload must fit");
  return payload;
}

Result<std::string> read_file(const std::string& path, std::size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status::io_error(fmt::format("cannot open {}", path));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (!in && !in.eof()) {
    return Status::io_error(fmt::format("cannot read {}", path));
  }
  std::string content = std::move(text).str();
  if (content.size() > max_bytes) {
    return Status::invalid_argument(fmt::format("{} is over {} bytes", path, max_bytes));
  }
  return content;
}

Status check_config(const ApnsConfig& config) {
  if (config.host.empty() || config.port == 0) {
    return Status::invalid_argument("APNs: host and port are required");
  }
  if (config.key_id.empty() || config.team_id.empty() || config.topic.empty()) {
    return Status::invalid_argument("APNs: key_id, team_id and topic are required");
  }
  if (config.token_refresh_ms < kApnsTokenMinRefreshMs ||
      config.token_refresh_ms > kApnsTokenMaxRefreshMs) {
    return Status::invalid_argument(fmt::format("APNs: token_refresh_ms must be within [{}, {}]",
                                                kApnsTokenMinRefreshMs, kApnsTokenMaxRefreshMs));
  }
  if (config.max_concurrent_streams == 0 ||
      config.max_concurrent_streams > kApnsMaxConcurrentStreams) {
    return Status::invalid_argument(fmt::format(
        "APNs: max_concurrent_streams must be within [1, {}]", kApnsMaxConcurrentStreams));
  }
  if (config.max_queued_requests > kApnsMaxQueuedRequests) {
    return Status::invalid_argument(
        fmt::format("APNs: max_queued_requests must be at most {}", kApnsMaxQueuedRequests));
  }
  if (config.request_timeout_ms <= 0 || config.connect_timeout_ms <= 0) {
    return Status::invalid_argument("APNs: timeouts must be positive");
  }
  return Status::ok_status();
}

// Longest apns-id response header kept, in bytes (a UUID is 36).
constexpr std::size_t kMaxResponseApnsIdBytes = 64;

bool is_ip_address(const std::string& host) {
  boost::system::error_code ec;
  const asio::ip::address address = asio::ip::make_address(host, ec);
  static_cast<void>(address);  // only whether it parsed matters
  return !ec;
}

class Connection;

// One request, across its attempts. Owned by the queue or by the stream it is on.
struct Call {
  explicit Call(asio::io_context& io) : timer(io) {}
  std::string path;  // /3/device/<token>
  std::string apns_id;
  std::string collapse_id;
  std::string payload;
  messaging::ProviderDone done;
  asio::steady_timer timer;  // the request timeout
  bool finished = false;
  bool token_retry_used = false;
  std::optional<std::list<std::shared_ptr<Call>>::iterator> queued_at;
  // The current attempt.
  std::string token;  // the provider token it carries
  std::size_t payload_offset = 0;
  std::int32_t stream_id = -1;
  std::weak_ptr<Connection> connection;  // the one carrying stream_id
  int status = 0;
  std::string response_apns_id;
  std::optional<std::int64_t> retry_after_ms;
  std::string response_body;
};
using CallPtr = std::shared_ptr<Call>;

}  // namespace

std::string apns_id_for(std::string_view idempotency_key) {
  std::array<unsigned char, kSha256Bytes> digest =
      sha256(std::string("herald-apns-id:").append(idempotency_key));
  digest[6] = static_cast<unsigned char>((digest[6] & 0x0f) | 0x80);  // version 8
  digest[8] = static_cast<unsigned char>((digest[8] & 0x3f) | 0x80);  // variant 10
  const std::string h = hex(digest.data(), kUuidBytes);
  return fmt::format("{}-{}-{}-{}-{}", h.substr(0, 8), h.substr(8, 4), h.substr(12, 4),
                     h.substr(16, 4), h.substr(20, 12));
}

std::string apns_collapse_id(std::string_view conversation_id) {
  const bool printable = std::all_of(conversation_id.begin(), conversation_id.end(),
                                     [](char c) { return c > ' ' && c < '\x7f'; });
  if (printable && !conversation_id.empty() && conversation_id.size() <= kApnsMaxCollapseIdBytes) {
    return std::string(conversation_id);
  }
  const std::array<unsigned char, kSha256Bytes> digest = sha256(conversation_id);
  return hex(digest.data(), digest.size());
}

std::string_view utf8_prefix(std::string_view text, std::size_t max_bytes) {
  if (text.size() <= max_bytes) {
    return text;
  }
  std::size_t cut = max_bytes;
  // text[cut] is the first byte left out: while it continues a sequence, the cut is inside one.
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xc0) == 0x80) {
    --cut;
  }
  return text.substr(0, cut);
}

Result<std::string> apns_payload(const messaging::PushRequest& request) {
  std::string full = serialize_payload(request, request.title, request.body);
  if (full.size() <= kApnsMaxPayloadBytes) {
    return full;
  }
  std::optional<std::string> payload = fit_field(request.body, [&](std::string_view body) {
    return serialize_payload(request, request.title, body);
  });
  if (!payload) {
    payload = fit_field(request.title, [&](std::string_view title) {
      return serialize_payload(request, title, "");
    });
  }
  if (!payload) {
    return Status::resource_exhausted(
        fmt::format("the APNs payload is over {} bytes even with an empty title and body",
                    kApnsMaxPayloadBytes));
  }
  return std::move(*payload);
}

Status check_device_token(std::string_view token) {
  if (token.empty() || token.size() > kApnsMaxDeviceTokenChars) {
    return Status::invalid_argument(
        fmt::format("an APNs device token has 1 to {} hex digits", kApnsMaxDeviceTokenChars));
  }
  const bool all_hex = std::all_of(token.begin(), token.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
  });
  if (!all_hex) {
    return Status::invalid_argument("an APNs device token is hex digits only");
  }
  return Status::ok_status();
}

std::optional<std::int64_t> parse_retry_after_ms(std::string_view value) {
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) {
    value.remove_prefix(1);
  }
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) {
    value.remove_suffix(1);
  }
  if (value.empty() || value.size() > kMaxRetryAfterDigits) {
    return std::nullopt;
  }
  std::int64_t seconds = 0;
  for (const char c : value) {
    if (c < '0' || c > '9') {
      return std::nullopt;  // an HTTP date, or garbage
    }
    seconds = seconds * 10 + (c - '0');
  }
  return std::min(seconds * 1000, kApnsMaxRetryAfterMs);
}

messaging::ProviderResult map_apns_response(int status, std::string_view reason,
                                            std::optional<std::int64_t> retry_after_ms,
                                            std::string apns_id) {
  if (status == 200) {
    return ProviderResult::success(std::move(apns_id));
  }
  std::string message =
      fmt::format("APNs answered {} {}", status, reason.empty() ? "(no reason)" : reason);
  const auto fail = [&](const char* type) { return ProviderResult::failure(type, message); };
  if (status == 410) {
    return fail(messaging::kPushUnregistered);
  }
  if (status == 400 && (reason == "BadDeviceToken" || reason == "DeviceTokenNotForTopic")) {
    return fail(messaging::kPushInvalidToken);
  }
  if (status == 413) {
    return fail(messaging::kPushPayloadTooLarge);
  }
  if (status == 429 || status >= 500) {
    ProviderResult result = fail(messaging::kPushUnavailable);
    result.retry_after_ms = retry_after_ms;
    return result;
  }
  if (status == 403 && (reason == "ExpiredProviderToken" || reason == "InvalidProviderToken")) {
    return fail(messaging::kPushUnavailable);
  }
  if (status >= 400 && status < 500) {
    return fail(messaging::kPushRejected);
  }
  return fail(messaging::kPushUnavailable);
}

// ---------------------------------------------------------------------------------------------
// The client's I/O side. Everything below runs on the I/O thread unless it says otherwise.

struct ApnsClient::Impl {
  Impl(ApnsConfig config_in, const Clock& clock_in, crypto::JwtSigner signer_in)
      : config(std::move(config_in)),
        clock(clock_in),
        signer(std::move(signer_in)),
        tls(ssl::context::tls_client),
        work(asio::make_work_guard(io)),
        reconnect_timer(io),
        rng(config.seed) {}

  // Any thread.
  void send(const messaging::PushRequest& request, messaging::ProviderDone done);
  void stop();

  // I/O thread.
  void enqueue(const CallPtr& call);
  void pump();
  void start_stream(Connection& connection, const CallPtr& call);
  void finish(const CallPtr& call, ProviderResult result);
  void requeue_front(const CallPtr& call);
  void time_out(const CallPtr& call);
  void ensure_connection();
  void open_connection();
  void connection_ready(Connection& connection);
  void connection_goaway(Connection& connection);
  // Takes `connection` out of service: no new streams; closed once its streams are done.
  void retire(Connection& connection);
  void close_if_drained(Connection& connection);
  void connection_closed(Connection& connection, const std::string& reason);
  void stream_closed(Connection& connection, const CallPtr& call, std::uint32_t error_code);
  void response_seen() { failures = 0; }
  Result<std::string> current_token();
  bool refresh_after_rejection(const std::string& rejected);
  void shutdown();
  [[nodiscard]] std::string authority() const {
    return config.port == kApnsPort ? config.host : fmt::format("{}:{}", config.host, config.port);
  }

  const ApnsConfig config;
  const Clock& clock;
  const crypto::JwtSigner signer;
  asio::io_context io;
  ssl::context tls;
  asio::executor_work_guard<asio::io_context::executor_type> work;
  std::thread thread;

  std::mutex mu;         // orders send()'s posts against stop()'s
  bool stopped = false;  // guarded by mu

  // I/O thread only.
  std::list<CallPtr> queue;
  std::shared_ptr<Connection> active;  // connecting or ready; null when none
  std::set<std::shared_ptr<Connection>> draining;
  asio::steady_timer reconnect_timer;
  bool reconnect_armed = false;
  int failures = 0;  // consecutive connection failures since the last response
  Rng rng;
  std::uint64_t next_connection_id = 1;
  std::string token;
  MonoMs token_issued_ms = 0;

  std::atomic<std::uint64_t> connections_opened{0};
  std::atomic<std::uint64_t> tokens_signed{0};
  std::atomic<std::uint64_t> requests_sent{0};
  std::atomic<std::uint64_t> requests_retried{0};
  std::atomic<std::uint32_t> streams_in_flight{0};
  std::atomic<std::size_t> queued{0};
};

namespace {

enum class ConnectionState : std::uint8_t { kConnecting, kReady, kDraining };

// One TLS + HTTP/2 connection of the client.
class Connection final : public h2::H2Io {
 public:
  Connection(ApnsClient::Impl& impl, std::uint64_t id)
      : h2::H2Io(h2::TlsStream(impl.io, impl.tls)),
        impl_(impl),
        id_(id),
        resolver_(impl.io),
        connect_timer_(impl.io) {}

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

  static int on_header(nghttp2_session* session, const nghttp2_frame* frame,
                       const std::uint8_t* name, std::size_t name_len, const std::uint8_t* value,
                       std::size_t value_len, std::uint8_t flags, void* user_data);
  static int on_data_chunk(nghttp2_session* session, std::uint8_t flags, std::int32_t stream_id,
                           const std::uint8_t* data, std::size_t len, void* user_data);
  static int on_stream_close(nghttp2_session* session, std::int32_t stream_id,
                             std::uint32_t error_code, void* user_data);
  static int on_frame_recv(nghttp2_session* session, const nghttp2_frame* frame, void* user_data);
  static ssize_t read_payload(nghttp2_session* session, std::int32_t stream_id, std::uint8_t* buf,
                              std::size_t length, std::uint32_t* data_flags,
                              nghttp2_data_source* source, void* user_data);

 protected:
  void on_input() override { impl_.pump(); }
  void on_closed(const std::string& reason) override {
    connect_timer_.cancel();
    impl_.connection_closed(*this, reason);
  }

 private:
  std::shared_ptr<Connection> self() {
    return std::static_pointer_cast<Connection>(shared_from_this());
  }
  void handshake();
  Status begin_session();

  ApnsClient::Impl& impl_;
  const std::uint64_t id_;
  ConnectionState state_ = ConnectionState::kConnecting;
  tcp::resolver resolver_;
  asio::steady_timer connect_timer_;
  std::map<std::int32_t, CallPtr> streams_;  // open streams and the calls on them
};

void Connection::connect() {
  connect_timer_.expires_after(std::chrono::milliseconds(impl_.config.connect_timeout_ms));
  connect_timer_.async_wait([self = self()](const boost::system::error_code& ec) {
    if (!ec && self->state_ == ConnectionState::kConnecting) {
      self->close("connect timed out");
    }
  });
  resolver_.async_resolve(
      impl_.config.host, std::to_string(impl_.config.port),
      [self = self()](const boost::system::error_code& ec,
                      const tcp::resolver::results_type& endpoints) {
        if (self->closed()) {
          return;
        }
        if (ec) {
          self->close("cannot resolve the APNs host: " + ec.message());
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
  const std::string& host = impl_.config.host;
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
  const nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};
  if (nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, settings, 1) != 0) {
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
  const std::size_t limit = std::min(remote, impl_.config.max_concurrent_streams);
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
  if (key == ":status") {
    int status = 0;
    for (const char c : text) {
      status = (c >= '0' && c <= '9' && status < 1000) ? status * 10 + (c - '0') : 1000;
    }
    call->status = status < 1000 ? status : 0;
  } else if (key == "apns-id") {
    call->response_apns_id = std::string(text.substr(0, kMaxResponseApnsIdBytes));
  } else if (key == "retry-after") {
    call->retry_after_ms = parse_retry_after_ms(text);
  }
  return 0;
}

int Connection::on_data_chunk(nghttp2_session*, std::uint8_t, std::int32_t stream_id,
                              const std::uint8_t* data, std::size_t len, void* user_data) {
  auto& connection = *static_cast<Connection*>(user_data);
  const CallPtr call = connection.find(stream_id);
  if (call) {
    const std::size_t room = kApnsMaxResponseBodyBytes - call->response_body.size();
    call->response_body.append(reinterpret_cast<const char*>(data), std::min(len, room));
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
  --connection.impl_.streams_in_flight;
  connection.impl_.stream_closed(connection, call, error_code);
  return 0;
}

int Connection::on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
  auto& connection = *static_cast<Connection*>(user_data);
  if (frame->hd.type == NGHTTP2_SETTINGS && (frame->hd.flags & NGHTTP2_FLAG_ACK) == 0 &&
      connection.state_ == ConnectionState::kConnecting) {
    connection.connect_timer_.cancel();
    connection.state_ = ConnectionState::kReady;
    connection.impl_.connection_ready(connection);
  } else if (frame->hd.type == NGHTTP2_GOAWAY) {
    // nghttp2 has already closed the streams above last-stream-id with REFUSED_STREAM.
    connection.impl_.connection_goaway(connection);
  }
  return 0;
}

ssize_t Connection::read_payload(nghttp2_session*, std::int32_t, std::uint8_t* buf,
                                 std::size_t length, std::uint32_t* data_flags,
                                 nghttp2_data_source* source, void*) {
  auto& call = *static_cast<Call*>(source->ptr);
  const std::size_t n = std::min(length, call.payload.size() - call.payload_offset);
  std::copy_n(call.payload.data() + call.payload_offset, n, buf);
  call.payload_offset += n;
  if (call.payload_offset == call.payload.size()) {
    *data_flags |= NGHTTP2_DATA_FLAG_EOF;
  }
  return static_cast<ssize_t>(n);
}

}  // namespace

void ApnsClient::Impl::send(const messaging::PushRequest& request, messaging::ProviderDone done) {
  if (const Status token_ok = check_device_token(request.token); !token_ok.ok()) {
    done(ProviderResult::failure(messaging::kPushInvalidToken, token_ok.message()));
    return;
  }
  Result<std::string> payload = apns_payload(request);
  if (!payload.ok()) {
    done(ProviderResult::failure(messaging::kPushPayloadTooLarge, payload.status().message()));
    return;
  }
  auto call = std::make_shared<Call>(io);
  call->path = "/3/device/" + request.token;
  call->apns_id = apns_id_for(request.idempotency_key);
  call->collapse_id = apns_collapse_id(request.conversation_id);
  call->payload = std::move(payload).value();
  call->done = std::move(done);
  std::unique_lock lock(mu);
  if (stopped) {
    lock.unlock();
    call->done(ProviderResult::failure(messaging::kPushUnavailable, "the APNs client is stopped"));
    return;
  }
  asio::post(io, [this, call] { enqueue(call); });
}

void ApnsClient::Impl::enqueue(const CallPtr& call) {
  call->timer.expires_after(std::chrono::milliseconds(config.request_timeout_ms));
  call->timer.async_wait([this, call](const boost::system::error_code& ec) {
    if (!ec) {
      time_out(call);
    }
  });
  call->queued_at = queue.insert(queue.end(), call);
  ++queued;
  pump();
  if (call->queued_at && queue.size() > config.max_queued_requests) {
    finish(call, ProviderResult::failure(
                     messaging::kPushUnavailable,
                     fmt::format("the APNs queue is full ({} requests wait for a stream)",
                                 config.max_queued_requests)));
  }
}

void ApnsClient::Impl::pump() {
  if (!active || active->state() != ConnectionState::kReady) {
    ensure_connection();
    return;
  }
  std::size_t free = active->free_streams();
  while (free > 0 && !queue.empty()) {
    const CallPtr call = queue.front();
    queue.pop_front();
    --queued;
    call->queued_at.reset();
    start_stream(*active, call);
    --free;
  }
  active->flush();
}

void ApnsClient::Impl::start_stream(Connection& connection, const CallPtr& call) {
  Result<std::string> bearer = current_token();
  if (!bearer.ok()) {
    finish(call, ProviderResult::failure(
                     messaging::kPushUnavailable,
                     "cannot sign the APNs provider token: " + bearer.status().message()));
    return;
  }
  call->token = std::move(bearer).value();
  call->payload_offset = 0;
  call->status = 0;
  call->response_apns_id.clear();
  call->retry_after_ms.reset();
  call->response_body.clear();
  const std::string authorization = "bearer " + call->token;
  const std::string authority_text = authority();
  const std::string expiration = std::to_string(clock.wall_ms() / 1000 + kApnsExpirationSeconds);
  const std::string content_length = std::to_string(call->payload.size());
  const std::array<nghttp2_nv, 13> headers = {
      h2::header(":method", "POST"),
      h2::header(":scheme", "https"),
      h2::header(":authority", authority_text),
      h2::header(":path", call->path),
      h2::header("authorization", authorization),
      h2::header("apns-topic", config.topic),
      h2::header("apns-push-type", "alert"),
      h2::header("apns-priority", "10"),
      h2::header("apns-expiration", expiration),
      h2::header("apns-collapse-id", call->collapse_id),
      h2::header("apns-id", call->apns_id),
      h2::header("content-type", "application/json"),
      h2::header("content-length", content_length),
  };
  nghttp2_data_provider body{};
  body.source.ptr = call.get();
  body.read_callback = &Connection::read_payload;
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
  ++streams_in_flight;
  ++requests_sent;
}

void ApnsClient::Impl::finish(const CallPtr& call, ProviderResult result) {
  if (call->finished) {
    return;
  }
  call->finished = true;
  call->timer.cancel();
  if (call->queued_at) {
    queue.erase(*call->queued_at);
    call->queued_at.reset();
    --queued;
  }
  messaging::ProviderDone done = std::move(call->done);
  done(std::move(result));
}

void ApnsClient::Impl::requeue_front(const CallPtr& call) {
  ++requests_retried;
  call->stream_id = -1;
  call->queued_at = queue.insert(queue.begin(), call);
  ++queued;
}

void ApnsClient::Impl::time_out(const CallPtr& call) {
  if (call->finished) {
    return;
  }
  const bool on_stream = !call->queued_at;
  finish(call, ProviderResult::failure(
                   messaging::kPushUnavailable,
                   fmt::format("no answer from APNs within {} ms", config.request_timeout_ms)));
  const std::shared_ptr<Connection> connection = call->connection.lock();
  if (on_stream && connection && !connection->closed() &&
      connection->find(call->stream_id) == call) {
    // Cancel the stream. It stays in its connection's map (and the payload alive for nghttp2)
    // until nghttp2 reports it closed.
    if (nghttp2_submit_rst_stream(connection->session(), NGHTTP2_FLAG_NONE, call->stream_id,
                                  NGHTTP2_CANCEL) == 0) {
      connection->flush();
    }
  }
}

void ApnsClient::Impl::ensure_connection() {
  if (active || queue.empty() || reconnect_armed) {
    return;
  }
  if (failures == 0) {
    open_connection();
    return;
  }
  const int doublings = std::min(failures - 1, 20);
  const std::int64_t cap = std::min(kApnsReconnectMaxMs, kApnsReconnectInitialMs << doublings);
  const std::int64_t delay_ms = rng.range(0, cap);
  reconnect_armed = true;
  reconnect_timer.expires_after(std::chrono::milliseconds(delay_ms));
  reconnect_timer.async_wait([this](const boost::system::error_code& ec) {
    reconnect_armed = false;
    if (!ec && !active && !queue.empty()) {
      open_connection();
    }
  });
}

void ApnsClient::Impl::open_connection() {
  active = std::make_shared<Connection>(*this, next_connection_id++);
  active->connect();
}

void ApnsClient::Impl::connection_ready(Connection& connection) {
  ++connections_opened;
  spdlog::debug("apns: connection {} to {} is up", connection.id(), authority());
  // The queue is pumped by on_input() once nghttp2 has processed the rest of this input.
}

void ApnsClient::Impl::connection_goaway(Connection& connection) {
  spdlog::info("apns: connection {} received GOAWAY; {} streams finish on it", connection.id(),
               connection.streams().size());
  retire(connection);
}

void ApnsClient::Impl::retire(Connection& connection) {
  connection.set_state(ConnectionState::kDraining);
  if (active.get() == &connection) {
    draining.insert(active);
    active.reset();
  }
  close_if_drained(connection);
}

void ApnsClient::Impl::close_if_drained(Connection& connection) {
  if (connection.state() == ConnectionState::kDraining && connection.streams().empty()) {
    // Posted: this may run inside an nghttp2 callback, where the session must not send.
    asio::post(io, [drained = std::static_pointer_cast<Connection>(connection.shared_from_this())] {
      drained->close_gracefully();
    });
  }
}

void ApnsClient::Impl::connection_closed(Connection& connection, const std::string& reason) {
  // In-flight requests: the server may or may not have processed them; the caller retries with
  // the same apns-id.
  std::map<std::int32_t, CallPtr> lost;
  lost.swap(connection.streams());
  streams_in_flight -= static_cast<std::uint32_t>(lost.size());
  for (auto& [stream_id, call] : lost) {
    finish(call, ProviderResult::failure(messaging::kPushUnavailable,
                                         "the APNs connection was lost: " + reason));
  }
  if (active.get() == &connection) {
    ++failures;
    spdlog::info("apns: connection {} closed: {}", connection.id(), reason);
    active.reset();
  } else {
    for (auto it = draining.begin(); it != draining.end(); ++it) {
      if (it->get() == &connection) {
        draining.erase(it);
        break;
      }
    }
  }
  ensure_connection();
}

void ApnsClient::Impl::stream_closed(Connection& connection, const CallPtr& call,
                                     std::uint32_t error_code) {
  if (call->status != 0) {
    response_seen();
  }
  if (!call->finished) {
    if (error_code == NGHTTP2_REFUSED_STREAM) {
      // Never processed by the server (above GOAWAY's last-stream-id, or refused): send again.
      requeue_front(call);
    } else if (call->status == 0) {
      finish(call, ProviderResult::failure(messaging::kPushUnavailable,
                                           fmt::format("the APNs stream was reset: {}",
                                                       nghttp2_http2_strerror(error_code))));
    } else {
      std::string reason;
      boost::system::error_code ec;
      const boost::json::value body = boost::json::parse(call->response_body, ec);
      if (!ec && body.is_object()) {
        if (const boost::json::value* r = body.as_object().if_contains("reason");
            r != nullptr && r->is_string()) {
          reason = std::string(r->as_string());
        }
      }
      const bool token_rejected = call->status == 403 && (reason == "ExpiredProviderToken" ||
                                                          reason == "InvalidProviderToken");
      if (token_rejected && !call->token_retry_used && refresh_after_rejection(call->token)) {
        call->token_retry_used = true;
        requeue_front(call);
      } else {
        finish(call, map_apns_response(call->status, reason, call->retry_after_ms,
                                       call->response_apns_id));
      }
    }
  }
  close_if_drained(connection);
}

Result<std::string> ApnsClient::Impl::current_token() {
  const MonoMs now = clock.mono_ms();
  if (!token.empty() && now - token_issued_ms < config.token_refresh_ms) {
    return token;
  }
  boost::json::object claims;
  claims["iss"] = config.team_id;
  claims["iat"] = clock.wall_ms() / 1000;
  boost::json::object header;
  header["kid"] = config.key_id;
  HERALD_ASSIGN_OR_RETURN(token, signer.sign(claims, header));
  token_issued_ms = now;
  ++tokens_signed;
  return token;
}

bool ApnsClient::Impl::refresh_after_rejection(const std::string& rejected) {
  if (rejected != token) {
    return true;  // already replaced since that request was sent
  }
  if (clock.mono_ms() - token_issued_ms < kApnsTokenMinRefreshMs) {
    return false;  // a fresh token is no better, and refreshing now would be throttled
  }
  token.clear();
  return true;
}

void ApnsClient::Impl::shutdown() {
  while (!queue.empty()) {
    finish(queue.front(),
           ProviderResult::failure(messaging::kPushUnavailable, "the APNs client is stopping"));
  }
  reconnect_timer.cancel();
  std::vector<std::shared_ptr<Connection>> connections(draining.begin(), draining.end());
  if (active) {
    connections.push_back(active);
  }
  for (const auto& connection : connections) {
    connection->close("the APNs client is stopping");
  }
  io.stop();
}

void ApnsClient::Impl::stop() {
  {
    const std::lock_guard lock(mu);
    stopped = true;
    asio::post(io, [this] { shutdown(); });
  }
  work.reset();
  if (thread.joinable()) {
    thread.join();
  }
}

Result<std::unique_ptr<ApnsClient>> ApnsClient::create(ApnsConfig config, const Clock& clock) {
  HERALD_RETURN_IF_ERROR(check_config(config));
  HERALD_ASSIGN_OR_RETURN(const std::string key_pem,
                          read_file(config.key_pem_path, crypto::kMaxPemBytes));
  HERALD_ASSIGN_OR_RETURN(crypto::JwtSigner signer, crypto::JwtSigner::from_pem(key_pem));
  if (signer.algorithm() != crypto::JwtAlgorithm::kEs256) {
    return Status::invalid_argument("the APNs signing key must be a P-256 key (ES256)");
  }
  auto impl = std::make_unique<Impl>(std::move(config), clock, std::move(signer));
  boost::system::error_code ec;
  impl->tls.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                            ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                            ssl::context::no_tlsv1_1,
                        ec);
  if (!impl->config.ca_file.empty()) {
    impl->tls.load_verify_file(impl->config.ca_file, ec);
  } else {
    impl->tls.set_default_verify_paths(ec);
  }
  if (ec) {
    return Status::io_error("APNs: cannot load the trusted CAs: " + ec.message());
  }
  static constexpr unsigned char kAlpnH2[] = {2, 'h', '2'};
  if (SSL_CTX_set_alpn_protos(impl->tls.native_handle(), kAlpnH2, sizeof(kAlpnH2)) != 0) {
    return Status::io_error("APNs: cannot set ALPN");
  }
  Impl& running = *impl;
  running.thread = std::thread([&running] { running.io.run(); });
  return std::unique_ptr<ApnsClient>(new ApnsClient(std::move(impl)));
}

ApnsClient::ApnsClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ApnsClient::~ApnsClient() {
  impl_->stop();
}

void ApnsClient::send(const messaging::PushRequest& request, messaging::ProviderDone done) {
  impl_->send(request, std::move(done));
}

ApnsStats ApnsClient::stats() const {
  ApnsStats stats;
  stats.connections_opened = impl_->connections_opened.load();
  stats.tokens_signed = impl_->tokens_signed.load();
  stats.requests_sent = impl_->requests_sent.load();
  stats.requests_retried = impl_->requests_retried.load();
  stats.streams_in_flight = impl_->streams_in_flight.load();
  stats.queued = impl_->queued.load();
  return stats;
}

}  // namespace herald::push
