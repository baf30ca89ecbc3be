#include "push/h2_server.h"

#include <openssl/evp.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstring>
#include <list>
#include <mutex>
#include <optional>
#include <set>
#include <utility>

#include "base/assert.h"
#include "crypto/openssl_util.h"
#include "net/tls_test_listener.h"
#include "push/h2_io.h"

namespace herald::push::testing {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {

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

struct H2TestServer::Impl {
  Impl(H2ServerHandler& handler_in, std::uint32_t max_streams)
      : handler(handler_in), max_concurrent_streams(max_streams) {}

  void accept();

  H2ServerHandler& handler;
  const std::uint32_t max_concurrent_streams;
  net::testing::TlsTestListener listener;
  asio::io_context& io = listener.io();

  mutable std::mutex mu;
  std::int64_t delay_ms = 0;     // guarded by mu
  bool drop_next = false;        // guarded by mu
  std::size_t goaway_after = 0;  // guarded by mu
  std::size_t pending = 0;       // guarded by mu
  std::size_t max_pending = 0;   // guarded by mu
  std::size_t connections = 0;   // guarded by mu

  // I/O thread only.
  std::uint64_t next_connection_id = 1;
  std::list<std::shared_ptr<asio::steady_timer>> held;
  std::set<std::shared_ptr<ServerConnection>> open;
};

namespace {

// One client connection of the server.
class ServerConnection final : public h2::H2Io {
 public:
  ServerConnection(H2TestServer::Impl& impl, tcp::socket socket, std::uint64_t id)
      : h2::H2Io(h2::TlsStream(std::move(socket), impl.listener.tls())), impl_(impl), id_(id) {}

  void begin();

 protected:
  void on_closed(const std::string&) override;

 private:
  struct StreamState {
    H2ServerRequest request;
    std::size_t tag = 0;
    bool awaiting_answer = false;
    std::string response_body;
    std::size_t response_offset = 0;
  };

  std::shared_ptr<ServerConnection> self() {
    return std::static_pointer_cast<ServerConnection>(shared_from_this());
  }
  Status begin_session();
  int on_request(std::int32_t stream_id);
  void answer(std::int32_t stream_id, const H2ServerAnswer& answer);

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

  H2TestServer::Impl& impl_;
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
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, impl_.max_concurrent_streams}};
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
  H2ServerRequest& request = it->second.request;
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
        std::min(len, kMaxTestRequestBodyBytes - std::min(body.size(), kMaxTestRequestBodyBytes)));
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
  const H2ServerRequest& request = state.request;
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
    impl_.handler.unanswered(request);  // the client sees it refused
    return 0;
  }
  if (drop) {
    impl_.handler.unanswered(request);
    close("dropped by the test");
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  }
  const H2ServerAnswer outcome = impl_.handler.decide(request, state.tag);
  {
    const std::lock_guard lock(impl_.mu);
    ++impl_.pending;
    impl_.max_pending = std::max(impl_.max_pending, impl_.pending);
  }
  state.awaiting_answer = true;
  ++requests_;
  if (goaway_after > 0 && requests_ == goaway_after) {
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

void ServerConnection::answer(std::int32_t stream_id, const H2ServerAnswer& outcome) {
  const auto it = streams_.find(stream_id);
  if (it == streams_.end() || !it->second.awaiting_answer) {
    return;  // the client reset the stream meanwhile
  }
  StreamState& state = it->second;
  state.awaiting_answer = false;
  {
    const std::lock_guard lock(impl_.mu);
    --impl_.pending;
  }
  impl_.handler.answered(state.tag, outcome);
  if (goaway_last_stream_ == stream_id &&
      nghttp2_submit_goaway(session(), NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_NO_ERROR, nullptr,
                            0) != 0) {
    close("GOAWAY could not be queued");
    return;
  }
  const std::string status = std::to_string(outcome.status);
  std::vector<nghttp2_nv> headers = {h2::header(":status", status)};
  for (const auto& [name, value] : outcome.headers) {
    headers.push_back(h2::header(name, value));
  }
  if (outcome.body.empty()) {
    nghttp2_submit_response(session(), stream_id, headers.data(), headers.size(), nullptr);
    return;
  }
  state.response_body = outcome.body;
  nghttp2_data_provider provider{};
  provider.read_callback = &ServerConnection::read_body;
  nghttp2_submit_response(session(), stream_id, headers.data(), headers.size(), &provider);
}

}  // namespace

void H2TestServer::Impl::accept() {
  listener.acceptor().async_accept([this](const boost::system::error_code& ec, tcp::socket socket) {
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

Result<std::unique_ptr<H2TestServer>> H2TestServer::start(H2ServerHandler& handler,
                                                          std::uint32_t max_concurrent_streams) {
  auto impl = std::make_unique<Impl>(handler, max_concurrent_streams);
  HERALD_RETURN_IF_ERROR(impl->listener.open("herald-test-server"));
  SSL_CTX_set_alpn_select_cb(impl->listener.tls().native_handle(), &select_h2, nullptr);
  impl->accept();
  impl->listener.run();
  return std::unique_ptr<H2TestServer>(new H2TestServer(std::move(impl)));
}

H2TestServer::H2TestServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

H2TestServer::~H2TestServer() {
  impl_->listener.stop([impl = impl_.get()] {
    for (const auto& timer : impl->held) {
      timer->cancel();
    }
    const std::set<std::shared_ptr<ServerConnection>> open = impl->open;
    for (const auto& connection : open) {
      connection->close("the test server is stopping");
    }
  });
}

std::uint16_t H2TestServer::port() const {
  return impl_->listener.port();
}
const std::string& H2TestServer::ca_file() const {
  return impl_->listener.ca_file();
}

void H2TestServer::set_delay_ms(std::int64_t delay_ms) {
  const std::lock_guard lock(impl_->mu);
  impl_->delay_ms = delay_ms;
}

void H2TestServer::release_held() {
  asio::post(impl_->io, [impl = impl_.get()] {
    for (const auto& timer : impl->held) {
      timer->cancel();  // the handler answers at once
    }
  });
}

void H2TestServer::drop_next_request() {
  const std::lock_guard lock(impl_->mu);
  impl_->drop_next = true;
}

void H2TestServer::goaway_after(std::size_t requests) {
  const std::lock_guard lock(impl_->mu);
  impl_->goaway_after = requests;
}

std::size_t H2TestServer::connections() const {
  const std::lock_guard lock(impl_->mu);
  return impl_->connections;
}

std::size_t H2TestServer::pending() const {
  const std::lock_guard lock(impl_->mu);
  return impl_->pending;
}

std::size_t H2TestServer::max_pending() const {
  const std::lock_guard lock(impl_->mu);
  return impl_->max_pending;
}

}  // namespace herald::push::testing
