#include "push/apns_mock.h"

#include <fmt/format.h>
#include <openssl/ssl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <chrono>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <list>
#include <mutex>
#include <set>
#include <thread>
#include <utility>

#include "base/assert.h"
#include "crypto/jwt.h"
#include "crypto/test_keys.h"
#include "push/apns.h"
#include "push/h2_io.h"

namespace herald::push::testing {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {

// Largest request body kept, in bytes; larger ones are answered 413 anyway.
constexpr std::size_t kMaxRecordedBodyBytes = std::size_t{64} * 1024;
// Age APNs accepts a provider token for, in seconds.
constexpr std::int64_t kTokenMaxAgeSeconds = 3600;
constexpr std::size_t kUuidChars = 36;

struct Answer {
  int status = 200;
  std::string reason;
  std::optional<std::int64_t> retry_after_s;
};

bool is_uuid(std::string_view id) {
  if (id.size() != kUuidChars) {
    return false;
  }
  for (std::size_t i = 0; i < id.size(); ++i) {
    const char c = id[i];
    const bool hyphen_place = i == 8 || i == 13 || i == 18 || i == 23;
    const bool hex_digit =
        (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    if (hyphen_place ? c != '-' : !hex_digit) {
      return false;
    }
  }
  return true;
}

int select_h2(SSL*, const unsigned char** out, unsigned char* out_len, const unsigned char* in,
              unsigned int in_len, void*) {
  for (unsigned int i = 0; i < in_len; i += 1 + in[i]) {
    if (in[i] == 2 && i + 3 <= in_len && std::memcmp(in + i + 1, "h2", 2) == 0) {
      *out = in + i + 1;
      *out_len = 2;
      return SSL_TLSEXT_ERR_OK;
    }
  }
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

class ServerConnection;

}  // namespace

struct ApnsMock::Impl {
  Impl(ApnsMockOptions options_in, const Clock& clock_in, crypto::JwtVerifier verifier_in)
      : options(std::move(options_in)),
        clock(clock_in),
        verifier(std::move(verifier_in)),
        tls(ssl::context::tls_server),
        acceptor(io) {}

  void accept();
  // The outcome for a request that reached the handler; records it.
  Answer decide(ApnsMockRequest& request);
  [[nodiscard]] std::string check(ApnsMockRequest& request, Answer& answer) const;
  void answered(std::size_t index, const Answer& answer);

  const ApnsMockOptions options;
  const Clock& clock;
  const crypto::JwtVerifier verifier;
  asio::io_context io;
  ssl::context tls;
  tcp::acceptor acceptor;
  std::thread thread;
  std::string ca_path;
  std::uint16_t port = 0;

  mutable std::mutex mu;
  std::deque<Answer> scripted;                  // guarded by mu
  std::map<std::string, Answer> token_answers;  // guarded by mu
  std::int64_t delay_ms = 0;                    // guarded by mu
  bool drop_next = false;                       // guarded by mu
  std::size_t goaway_after = 0;                 // guarded by mu
  std::vector<ApnsMockRequest> log;             // guarded by mu
  std::size_t pending = 0;                      // guarded by mu
  std::size_t max_pending = 0;                  // guarded by mu
  std::size_t connections = 0;                  // guarded by mu

  // I/O thread only.
  std::uint64_t next_connection_id = 1;
  std::list<std::shared_ptr<asio::steady_timer>> held;
  std::set<std::shared_ptr<ServerConnection>> open;
};

namespace {

// One client connection of the mock.
class ServerConnection final : public h2::H2Io {
 public:
  ServerConnection(ApnsMock::Impl& impl, tcp::socket socket, std::uint64_t id)
      : h2::H2Io(h2::TlsStream(std::move(socket), impl.tls)), impl_(impl), id_(id) {}

  void begin();

 protected:
  void on_closed(const std::string&) override;

 private:
  struct StreamState {
    ApnsMockRequest request;
    std::size_t log_index = 0;
    bool awaiting_answer = false;
    std::string response_body;
    std::size_t response_offset = 0;
  };

  std::shared_ptr<ServerConnection> self() {
    return std::static_pointer_cast<ServerConnection>(shared_from_this());
  }
  Status begin_session();
  int on_request(std::int32_t stream_id);
  void answer(std::int32_t stream_id, const Answer& answer);

  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user_data);
  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name,
                       std::size_t name_len, const std::uint8_t* value, std::size_t value_len,
                       std::uint8_t, void* user_data);
  static int on_data_chunk(nghttp2_session*, std::uint8_t, std::int32_t stream_id,
                           const std::uint8_t* data, std::size_t len, void* user_data);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user_data);
  static int on_stream_close(nghttp2_session*, std::int32_t stream_id, std::uint32_t,
                             void* user_data);
  static ssize_t read_body(nghttp2_session*, std::int32_t stream_id, std::uint8_t* buf,
                           std::size_t length, std::uint32_t* data_flags, nghttp2_data_source*,
                           void* user_data);

  ApnsMock::Impl& impl_;
  const std::uint64_t id_;
  std::map<std::int32_t, StreamState> streams_;
  std::size_t requests_ = 0;
  std::optional<std::int32_t> goaway_last_stream_;
};

void ServerConnection::begin() {
  stream().async_handshake(ssl::stream_base::server,
                           [self = self()](const boost::system::error_code& ec) {
                             if (ec) {
                               self->close("handshake failed: " + ec.message());
                               return;
                             }
                             const Status status = self->begin_session();
                             if (!status.ok()) {
                               self->close(status.message());
                               return;
                             }
                             {
                               const std::lock_guard lock(self->impl_.mu);
                               ++self->impl_.connections;
                             }
                             self->start();
                           });
}

Status ServerConnection::begin_session() {
  nghttp2_session_callbacks* callbacks = nullptr;
  if (nghttp2_session_callbacks_new(&callbacks) != 0) {
    return Status::io_error("nghttp2 callbacks");
  }
  nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, &on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, &on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, &on_data_chunk);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, &on_frame_recv);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, &on_stream_close);
  nghttp2_session* session = nullptr;
  const int rv = nghttp2_session_server_new(&session, callbacks, this);
  nghttp2_session_callbacks_del(callbacks);
  if (rv != 0) {
    return Status::io_error(nghttp2_strerror(rv));
  }
  adopt_session(session);
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, impl_.options.max_concurrent_streams}};
  if (nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, settings, 1) != 0) {
    return Status::io_error("SETTINGS");
  }
  return Status::ok_status();
}

void ServerConnection::on_closed(const std::string&) {
  std::size_t unanswered = 0;
  for (const auto& [id, state] : streams_) {
    unanswered += state.awaiting_answer ? 1 : 0;
  }
  {
    const std::lock_guard lock(impl_.mu);
    impl_.pending -= unanswered;
  }
  streams_.clear();
  // Posted: the set may be the last owner, and this runs inside the connection's own code.
  asio::post(impl_.io, [self = self()] { self->impl_.open.erase(self); });
}

int ServerConnection::on_begin_headers(nghttp2_session*, const nghttp2_frame* frame,
                                       void* user_data) {
  auto& connection = *static_cast<ServerConnection*>(user_data);
  if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
    StreamState& state = connection.streams_[frame->hd.stream_id];
    state.request.connection = connection.id_;
    state.request.stream_id = frame->hd.stream_id;
  }
  return 0;
}

int ServerConnection::on_header(nghttp2_session*, const nghttp2_frame* frame,
                                const std::uint8_t* name, std::size_t name_len,
                                const std::uint8_t* value, std::size_t value_len, std::uint8_t,
                                void* user_data) {
  auto& connection = *static_cast<ServerConnection*>(user_data);
  const auto it = connection.streams_.find(frame->hd.stream_id);
  if (it == connection.streams_.end()) {
    return 0;
  }
  ApnsMockRequest& request = it->second.request;
  std::string key(reinterpret_cast<const char*>(name), name_len);
  std::string text(reinterpret_cast<const char*>(value), value_len);
  if (key == ":method") {
    request.method = std::move(text);
  } else if (key == ":path") {
    request.path = std::move(text);
  } else {
    request.headers[std::move(key)] = std::move(text);
  }
  return 0;
}

int ServerConnection::on_data_chunk(nghttp2_session*, std::uint8_t, std::int32_t stream_id,
                                    const std::uint8_t* data, std::size_t len, void* user_data) {
  auto& connection = *static_cast<ServerConnection*>(user_data);
  const auto it = connection.streams_.find(stream_id);
  if (it != connection.streams_.end()) {
    std::string& body = it->second.request.body;
    body.append(
        reinterpret_cast<const char*>(data),
        std::min(len, kMaxRecordedBodyBytes - std::min(body.size(), kMaxRecordedBodyBytes)));
  }
  return 0;
}

int ServerConnection::on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
  auto& connection = *static_cast<ServerConnection*>(user_data);
  const bool request_end = (frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
                           (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (request_end && connection.streams_.contains(frame->hd.stream_id)) {
    return connection.on_request(frame->hd.stream_id);
  }
  return 0;
}

int ServerConnection::on_stream_close(nghttp2_session*, std::int32_t stream_id, std::uint32_t,
                                      void* user_data) {
  auto& connection = *static_cast<ServerConnection*>(user_data);
  const auto it = connection.streams_.find(stream_id);
  if (it != connection.streams_.end()) {
    if (it->second.awaiting_answer) {
      const std::lock_guard lock(connection.impl_.mu);
      --connection.impl_.pending;
    }
    connection.streams_.erase(it);
  }
  return 0;
}

ssize_t ServerConnection::read_body(nghttp2_session*, std::int32_t stream_id, std::uint8_t* buf,
                                    std::size_t length, std::uint32_t* data_flags,
                                    nghttp2_data_source*, void* user_data) {
  auto& connection = *static_cast<ServerConnection*>(user_data);
  const auto it = connection.streams_.find(stream_id);
  if (it == connection.streams_.end()) {
    *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return 0;
  }
  StreamState& state = it->second;
  const std::size_t n = std::min(length, state.response_body.size() - state.response_offset);
  std::copy_n(state.response_body.data() + state.response_offset, n, buf);
  state.response_offset += n;
  if (state.response_offset == state.response_body.size()) {
    *data_flags |= NGHTTP2_DATA_FLAG_EOF;
  }
  return static_cast<ssize_t>(n);
}

int ServerConnection::on_request(std::int32_t stream_id) {
  StreamState& state = streams_.at(stream_id);
  ApnsMockRequest& request = state.request;
  const std::string prefix = "/3/device/";
  if (request.path.starts_with(prefix)) {
    request.device_token = request.path.substr(prefix.size());
  }
  bool drop = false;
  std::size_t goaway_after = 0;
  std::int64_t delay_ms = 0;
  {
    const std::lock_guard lock(impl_.mu);
    drop = std::exchange(impl_.drop_next, false);
    goaway_after = impl_.goaway_after;
    delay_ms = impl_.delay_ms;
  }
  if (goaway_last_stream_ && stream_id > *goaway_last_stream_) {
    const std::lock_guard lock(impl_.mu);
    impl_.log.push_back(request);  // left unanswered: the client sees it refused
    return 0;
  }
  if (drop) {
    {
      const std::lock_guard lock(impl_.mu);
      impl_.log.push_back(request);
    }
    close("dropped by the test");
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  }
  const Answer outcome = impl_.decide(request);
  {
    const std::lock_guard lock(impl_.mu);
    state.log_index = impl_.log.size();
    impl_.log.push_back(request);
    ++impl_.pending;
    impl_.max_pending = std::max(impl_.max_pending, impl_.pending);
  }
  state.awaiting_answer = true;
  if (goaway_after > 0 && ++requests_ == goaway_after) {
    // Decided now, sent with this request's answer: requests arriving meanwhile on higher
    // streams are left unanswered, as a server that is going away would.
    goaway_last_stream_ = stream_id;
  }
  if (delay_ms == 0) {
    answer(stream_id, outcome);
    return 0;
  }
  auto timer = std::make_shared<asio::steady_timer>(impl_.io);
  timer->expires_after(std::chrono::milliseconds(delay_ms));
  impl_.held.push_back(timer);
  timer->async_wait([self = self(), stream_id, outcome, timer](const boost::system::error_code&) {
    self->impl_.held.remove(timer);
    if (!self->closed()) {
      self->answer(stream_id, outcome);
      self->flush();
    }
  });
  return 0;
}

void ServerConnection::answer(std::int32_t stream_id, const Answer& outcome) {
  const auto it = streams_.find(stream_id);
  if (it == streams_.end() || !it->second.awaiting_answer) {
    return;  // the client reset the stream meanwhile
  }
  StreamState& state = it->second;
  state.awaiting_answer = false;
  {
    const std::lock_guard lock(impl_.mu);
    --impl_.pending;
    impl_.answered(state.log_index, outcome);
  }
  if (goaway_last_stream_ == stream_id &&
      nghttp2_submit_goaway(session(), NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_NO_ERROR, nullptr,
                            0) != 0) {
    close("GOAWAY could not be queued");
    return;
  }
  const std::string status = std::to_string(outcome.status);
  const std::string apns_id = state.request.headers.contains("apns-id")
                                  ? state.request.headers.at("apns-id")
                                  : std::string("00000000-0000-0000-0000-000000000000");
  const std::string retry_after =
      outcome.retry_after_s ? std::to_string(*outcome.retry_after_s) : std::string();
  std::vector<nghttp2_nv> headers = {h2::header(":status", status), h2::header("apns-id", apns_id)};
  if (outcome.retry_after_s) {
    headers.push_back(h2::header("retry-after", retry_after));
  }
  if (outcome.status == 200) {
    nghttp2_submit_response(session(), stream_id, headers.data(), headers.size(), nullptr);
    return;
  }
  boost::json::object body;
  body["reason"] = outcome.reason;
  state.response_body = boost::json::serialize(body);
  headers.push_back(h2::header("content-type", "application/json"));
  nghttp2_data_provider provider{};
  provider.read_callback = &ServerConnection::read_body;
  nghttp2_submit_response(session(), stream_id, headers.data(), headers.size(), &provider);
}

}  // namespace

void ApnsMock::Impl::accept() {
  acceptor.async_accept([this](const boost::system::error_code& ec, tcp::socket socket) {
    if (ec) {
      return;  // the acceptor was closed
    }
    auto connection =
        std::make_shared<ServerConnection>(*this, std::move(socket), next_connection_id++);
    open.insert(connection);
    connection->begin();
    accept();
  });
}

std::string ApnsMock::Impl::check(ApnsMockRequest& request, Answer& answer) const {
  const auto fail = [&](int status, const char* reason, std::string why) {
    answer = Answer{status, reason, std::nullopt};
    return why;
  };
  if (request.method != "POST") {
    return fail(405, "MethodNotAllowed", "method " + request.method);
  }
  if (request.device_token.empty() || !check_device_token(request.device_token).ok()) {
    return fail(404, "BadPath", "path " + request.path);
  }
  const std::string& authorization = request.headers["authorization"];
  if (!authorization.starts_with("bearer ")) {
    return fail(403, "MissingProviderToken", "no bearer token");
  }
  request.jwt = authorization.substr(std::strlen("bearer "));
  crypto::JwtChecks checks;
  checks.now_s = clock.wall_ms() / 1000;
  checks.require_exp = false;
  checks.max_age_s = kTokenMaxAgeSeconds;
  checks.issuer = options.team_id;
  const Result<crypto::VerifiedJwt> jwt = verifier.verify(request.jwt, checks);
  if (!jwt.ok()) {
    return jwt.status().code() == Code::kFailedPrecondition
               ? fail(403, "ExpiredProviderToken", jwt.status().to_string())
               : fail(403, "InvalidProviderToken", jwt.status().to_string());
  }
  if (const boost::json::value* iat = jwt->claims.if_contains("iat");
      iat != nullptr && iat->is_int64()) {
    request.jwt_iat = iat->as_int64();
  }
  const boost::json::value* kid = jwt->header.if_contains("kid");
  if (kid == nullptr || !kid->is_string() || kid->as_string() != options.key_id) {
    return fail(403, "InvalidProviderToken", "kid");
  }
  const std::map<std::string, std::string>& h = request.headers;
  const auto header = [&](const char* name) {
    const auto it = h.find(name);
    return it == h.end() ? std::string() : it->second;
  };
  if (header("apns-topic") != options.topic) {
    return fail(400, "BadTopic", "apns-topic " + header("apns-topic"));
  }
  if (header("apns-push-type") != "alert") {
    return fail(400, "InvalidPushType", "apns-push-type " + header("apns-push-type"));
  }
  const std::string priority = header("apns-priority");
  if (priority != "10" && priority != "5" && priority != "1") {
    return fail(400, "BadPriority", "apns-priority " + priority);
  }
  const std::string expiration = header("apns-expiration");
  if (expiration.empty() || expiration.find_first_not_of("0123456789") != std::string::npos) {
    return fail(400, "BadExpirationDate", "apns-expiration " + expiration);
  }
  if (header("apns-collapse-id").size() > kApnsMaxCollapseIdBytes) {
    return fail(400, "BadCollapseId", "apns-collapse-id");
  }
  if (!is_uuid(header("apns-id"))) {
    return fail(400, "BadMessageId", "apns-id " + header("apns-id"));
  }
  if (request.body.size() > kApnsMaxPayloadBytes) {
    return fail(413, "PayloadTooLarge", fmt::format("{} bytes", request.body.size()));
  }
  boost::system::error_code ec;
  const boost::json::value body = boost::json::parse(request.body, ec);
  if (ec || !body.is_object() || !body.as_object().contains("aps")) {
    return fail(400, request.body.empty() ? "PayloadEmpty" : "BadPayload", "body");
  }
  return {};
}

Answer ApnsMock::Impl::decide(ApnsMockRequest& request) {
  Answer answer;
  request.check_failed = check(request, answer);
  if (!request.check_failed.empty()) {
    return answer;
  }
  const std::lock_guard lock(mu);
  if (!scripted.empty()) {
    answer = scripted.front();
    scripted.pop_front();
  } else if (const auto it = token_answers.find(request.device_token); it != token_answers.end()) {
    answer = it->second;
  }
  return answer;
}

void ApnsMock::Impl::answered(std::size_t index, const Answer& answer) {
  HERALD_ASSERT(index < log.size(), "an answered request is logged");
  log[index].status = answer.status;
  log[index].reason = answer.reason;
}

Result<std::unique_ptr<ApnsMock>> ApnsMock::start(ApnsMockOptions options, const Clock& clock) {
  HERALD_ASSIGN_OR_RETURN(crypto::JwtVerifier verifier,
                          crypto::JwtVerifier::from_pem(options.provider_public_pem));
  auto impl = std::make_unique<Impl>(std::move(options), clock, std::move(verifier));
  const crypto::testing::SelfSignedCertificate certificate =
      crypto::testing::self_signed_loopback_certificate("herald-apns-mock");
  static std::atomic<int> counter{0};
  impl->ca_path = (std::filesystem::temp_directory_path() /
                   fmt::format("herald-apns-mock-{}-{}.pem", ::getpid(), counter++))
                      .string();
  std::ofstream(impl->ca_path) << certificate.cert_pem;
  boost::system::error_code ec;
  impl->tls.use_certificate_chain(asio::buffer(certificate.cert_pem), ec);
  if (!ec) {
    impl->tls.use_private_key(asio::buffer(certificate.key_pem), ssl::context::pem, ec);
  }
  if (ec) {
    return Status::io_error("cannot install the mock's certificate: " + ec.message());
  }
  SSL_CTX_set_alpn_select_cb(impl->tls.native_handle(), &select_h2, nullptr);
  const tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), 0);
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) {
    impl->acceptor.bind(endpoint, ec);
  }
  if (!ec) {
    impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    return Status::io_error("the mock cannot listen: " + ec.message());
  }
  impl->port = impl->acceptor.local_endpoint().port();
  impl->accept();
  Impl& running = *impl;
  running.thread = std::thread([&running] { running.io.run(); });
  return std::unique_ptr<ApnsMock>(new ApnsMock(std::move(impl)));
}

ApnsMock::ApnsMock(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ApnsMock::~ApnsMock() {
  asio::post(impl_->io, [impl = impl_.get()] {
    boost::system::error_code ignored;
    impl->acceptor.close(ignored);
    for (const auto& timer : impl->held) {
      timer->cancel();
    }
    const std::set<std::shared_ptr<ServerConnection>> open = impl->open;
    for (const auto& connection : open) {
      connection->close("the mock is stopping");
    }
    impl->io.stop();
  });
  impl_->thread.join();
  std::error_code ignored;
  std::filesystem::remove(impl_->ca_path, ignored);
}

std::uint16_t ApnsMock::port() const {
  return impl_->port;
}
const std::string& ApnsMock::ca_file() const {
  return impl_->ca_path;
}

void ApnsMock::fail_next(std::size_t count, int status, const std::string& reason,
                         std::optional<std::int64_t> retry_after_s) {
  const std::lock_guard lock(impl_->mu);
  for (std::size_t i = 0; i < count; ++i) {
    impl_->scripted.push_back(Answer{status, reason, retry_after_s});
  }
}

void ApnsMock::answer_token(const std::string& device_token, int status,
                            const std::string& reason) {
  const std::lock_guard lock(impl_->mu);
  impl_->token_answers[device_token] = Answer{status, reason, std::nullopt};
}

void ApnsMock::set_delay_ms(std::int64_t delay_ms) {
  const std::lock_guard lock(impl_->mu);
  impl_->delay_ms = delay_ms;
}

void ApnsMock::release_held() {
  asio::post(impl_->io, [impl = impl_.get()] {
    for (const auto& timer : impl->held) {
      timer->cancel();  // the handler answers at once
    }
  });
}

void ApnsMock::drop_next_request() {
  const std::lock_guard lock(impl_->mu);
  impl_->drop_next = true;
}

void ApnsMock::goaway_after(std::size_t requests) {
  const std::lock_guard lock(impl_->mu);
  impl_->goaway_after = requests;
}

std::vector<ApnsMockRequest> ApnsMock::requests() const {
  const std::lock_guard lock(impl_->mu);
  return impl_->log;
}

std::size_t ApnsMock::request_count() const {
  const std::lock_guard lock(impl_->mu);
  return impl_->log.size();
}

std::size_t ApnsMock::connections() const {
  const std::lock_guard lock(impl_->mu);
  return impl_->connections;
}

std::size_t ApnsMock::pending() const {
  const std::lock_guard lock(impl_->mu);
  return impl_->pending;
}

std::size_t ApnsMock::max_pending() const {
  const std::lock_guard lock(impl_->mu);
  return impl_->max_pending;
}

}  // namespace herald::push::testing
