#include "client/ws_client.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/beast/websocket/error.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <chrono>
#include <functional>

#include "base/assert.h"
#include "client/tls.h"

namespace herald::client {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

// Once the socket is closed, pending operations complete at once; waiting longer than this for
// them would mean a bug.
constexpr std::uint32_t kDrainMs = 1000;
constexpr unsigned kHttpNotFound = 404;
constexpr unsigned kHttpServiceUnavailable = 503;

// The Host header for host:port; an IPv6 literal gets brackets.
std::string host_header(const std::string& host, std::uint16_t port) {
  const bool ipv6 = host.find(':') != std::string::npos;
  return (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

// The error for an upgrade the server answered with something other than 101.
Status refused(const websocket::response_type& response) {
  const unsigned status = response.result_int();
  std::string message =
      "upgrade refused with HTTP " + std::to_string(status) + ": " + std::string(response.body());
  if (status == kHttpNotFound) return Status::not_found(std::move(message));
  if (status == kHttpServiceUnavailable) return Status::unavailable(std::move(message));
  return Status::failed_precondition(std::move(message));
}

}  // namespace

using TlsStream = beast::ssl_stream<beast::tcp_stream>;

// The connection's interface; StreamImpl drives it over plaintext TCP or TLS.
class WsClient::Impl {
 public:
  virtual ~Impl() = default;
  [[nodiscard]] virtual Status connect(const std::string& host, std::uint16_t port,
                                       const std::string& path, Headers headers) = 0;
  [[nodiscard]] virtual Status send(std::string_view payload, bool binary) = 0;
  [[nodiscard]] virtual Result<std::string> receive(std::uint32_t timeout_ms) = 0;
  [[nodiscard]] virtual Status close(std::uint16_t code, std::string_view reason) = 0;
  [[nodiscard]] virtual bool is_open() const = 0;
  [[nodiscard]] virtual std::optional<std::uint16_t> close_code() const = 0;
  [[nodiscard]] virtual const std::string& close_reason() const = 0;
};

namespace {

// The connection, driven by an io_context that runs only inside calls. Completion handlers touch
// members only, so that an operation outliving the call that started it (a read after a receive
// timed out) is harmless. `NextLayer` is beast::tcp_stream or TlsStream; `tls` is the TLS
// context of the latter (null for the former), which the stream uses until it is destroyed.
template <class NextLayer>
class StreamImpl final : public WsClient::Impl {
 public:
  using Headers = WsClient::Headers;
  static constexpr bool kTls = std::is_same_v<NextLayer, TlsStream>;

  StreamImpl(std::uint32_t timeout_ms, std::unique_ptr<ssl::context> tls)
      : timeout_ms_(timeout_ms), tls_(std::move(tls)), ws_(make_ws(io_, tls_.get())) {}
  ~StreamImpl() override { tear_down(); }
  StreamImpl(const StreamImpl&) = delete;
  StreamImpl& operator=(const StreamImpl&) = delete;

  [[nodiscard]] Status connect(const std::string& host, std::uint16_t port, const std::string& path,
                               Headers headers) override;
  [[nodiscard]] Status send(std::string_view payload, bool binary) override;
  [[nodiscard]] Result<std::string> receive(std::uint32_t timeout_ms) override;
  [[nodiscard]] Status close(std::uint16_t code, std::string_view reason) override;

  [[nodiscard]] bool is_open() const override { return !ended_.has_value(); }
  [[nodiscard]] std::optional<std::uint16_t> close_code() const override { return close_code_; }
  [[nodiscard]] const std::string& close_reason() const override { return close_reason_; }

 private:
  static websocket::stream<NextLayer> make_ws(asio::io_context& io, ssl::context* tls) {
    if constexpr (kTls) {
      return websocket::stream<NextLayer>(io, *tls);
    } else {
      return websocket::stream<NextLayer>(io);
    }
  }
  // TLS only: the handshake, checking the certificate against the CAs and `host`.
  [[nodiscard]] Status tls_handshake(const std::string& host, Clock::time_point deadline);
  [[nodiscard]] Result<std::vector<tcp::endpoint>> resolve(const std::string& host,
                                                           std::uint16_t port,
                                                           Clock::time_point deadline);
  [[nodiscard]] Status connect_tcp(const std::vector<tcp::endpoint>& endpoints,
                                   Clock::time_point deadline);
  [[nodiscard]] Status handshake(const std::string& host, const std::string& path, Headers headers,
                                 Clock::time_point deadline);
  [[nodiscard]] Clock::time_point deadline_after(std::uint32_t timeout_ms) const {
    return Clock::now() + milliseconds(timeout_ms);
  }
  // Runs the io_context until `done` holds (true) or the deadline passes (false).
  [[nodiscard]] bool run_until(const std::function<bool()>& done, Clock::time_point deadline);
  [[nodiscard]] Status ended_status() const {
    return Status::failed_precondition("the WebSocket has ended: " + ended_->message());
  }
  // Ends the connection with `status`, unless it has ended already; returns how it ended.
  Status end(Status status, std::uint16_t close_code, std::string reason = "");
  // Ends the connection after `ec` failed an operation, reading the close frame if one came.
  Status end_after(const beast::error_code& ec);
  // Closes the socket and lets every pending operation complete.
  void tear_down();

  const std::uint32_t timeout_ms_;
  asio::io_context io_;  // first: destroyed last
  const std::unique_ptr<ssl::context> tls_;
  websocket::stream<NextLayer> ws_;
  websocket::response_type handshake_response_;
  beast::flat_buffer read_buffer_;
  std::string outgoing_;
  // The outcome of each kind of operation, once complete; the flags say one is in flight.
  std::optional<beast::error_code> op_result_;  // connect, handshake, close
  std::optional<beast::error_code> read_result_;
  std::optional<beast::error_code> write_result_;
  bool op_pending_ = false;
  bool read_pending_ = false;
  bool write_pending_ = false;
  std::optional<Status> ended_;
  std::optional<std::uint16_t> close_code_;
  std::string close_reason_;
};

template <class NextLayer>
bool StreamImpl<NextLayer>::run_until(const std::function<bool()>& done,
                                      Clock::time_point deadline) {
  while (!done()) {
    if (Clock::now() >= deadline) return false;
    if (io_.stopped()) io_.restart();
    const std::size_t ran = io_.run_one_until(deadline);
    HERALD_ASSERT(ran > 0 || !io_.stopped() || done(), "waiting for an operation never started");
  }
  return true;
}

template <class NextLayer>
Status StreamImpl<NextLayer>::connect(const std::string& host, std::uint16_t port,
                                      const std::string& path, Headers headers) {
  const Clock::time_point deadline = deadline_after(timeout_ms_);
  HERALD_ASSIGN_OR_RETURN(const std::vector<tcp::endpoint> endpoints,
                          resolve(host, port, deadline));
  HERALD_RETURN_IF_ERROR(connect_tcp(endpoints, deadline));
  if constexpr (kTls) {
    HERALD_RETURN_IF_ERROR(tls_handshake(host, deadline));
  }
  return handshake(host_header(host, port), path, std::move(headers), deadline);
}

template <class NextLayer>
Result<std::vector<tcp::endpoint>> StreamImpl<NextLayer>::resolve(const std::string& host,
                                                                  std::uint16_t port,
                                                                  Clock::time_point deadline) {
  beast::error_code ec;
  const asio::ip::address address = asio::ip::make_address(host, ec);
  if (!ec) return std::vector<tcp::endpoint>{tcp::endpoint(address, port)};
  // Shared with the handler: after a timeout it completes whenever the system resolver returns.
  struct Resolution {
    std::optional<beast::error_code> ec;
    std::vector<tcp::endpoint> endpoints;
  };
  auto resolution = std::make_shared<Resolution>();
  tcp::resolver resolver(io_);
  resolver.async_resolve(
      host, std::to_string(port),
      [resolution](const beast::error_code& result, const tcp::resolver::results_type& results) {
        resolution->ec = result;
        for (const auto& entry : results) resolution->endpoints.push_back(entry.endpoint());
      });
  if (!run_until([&] { return resolution->ec.has_value(); }, deadline)) {
    resolver.cancel();
    return Status::timeout("resolving " + host + " took longer than " +
                           std::to_string(timeout_ms_) + " ms");
  }
  if (*resolution->ec || resolution->endpoints.empty()) {
    return Status::io_error("cannot resolve " + host + ": " + resolution->ec->message());
  }
  return std::move(resolution->endpoints);
}

template <class NextLayer>
Status StreamImpl<NextLayer>::connect_tcp(const std::vector<tcp::endpoint>& endpoints,
                                          Clock::time_point deadline) {
  beast::tcp_stream& stream = beast::get_lowest_layer(ws_);
  stream.expires_at(deadline);
  op_result_.reset();
  op_pending_ = true;
  stream.async_connect(endpoints, [this](const beast::error_code& ec, const tcp::endpoint&) {
    op_pending_ = false;
    op_result_ = ec;
  });
  const bool done = run_until([this] { return op_result_.has_value(); }, deadline);
  if (!done || *op_result_ == beast::error::timeout) {
    return end(
        Status::timeout("connecting took longer than " + std::to_string(timeout_ms_) + " ms"),
        kWsCloseAbnormal);
  }
  if (*op_result_) {
    return end(Status::io_error("cannot connect: " + op_result_->message()), kWsCloseAbnormal);
  }
  stream.expires_never();        // from here on the WebSocket's own timeouts apply
  beast::error_code nodelay_ec;  // requests are small and latency-bound: no Nagle delay
  stream.socket().set_option(tcp::no_delay(true), nodelay_ec);
  return Status::ok_status();
}

template <class NextLayer>
Status StreamImpl<NextLayer>::tls_handshake(const std::string& host, Clock::time_point deadline) {
  if constexpr (kTls) {
    NextLayer& tls = ws_.next_layer();
    if (Status s = expect_server_name(tls.native_handle(), host); !s.ok()) {
      return end(std::move(s), kWsCloseAbnormal);
    }
    beast::get_lowest_layer(ws_).expires_at(deadline);
    op_result_.reset();
    op_pending_ = true;
    tls.async_handshake(ssl::stream_base::client, [this](const beast::error_code& ec) {
      op_pending_ = false;
      op_result_ = ec;
    });
    const bool done = run_until([this] { return op_result_.has_value(); }, deadline);
    beast::get_lowest_layer(ws_).expires_never();
    if (!done || *op_result_ == beast::error::timeout) {
      return end(Status::timeout("the TLS handshake took longer than " +
                                 std::to_string(timeout_ms_) + " ms"),
                 kWsCloseAbnormal);
    }
    if (*op_result_) {
      return end(Status::io_error("the TLS handshake failed: " + op_result_->message()),
                 kWsCloseAbnormal);
    }
  }
  return Status::ok_status();
}

template <class NextLayer>
Status StreamImpl<NextLayer>::handshake(const std::string& host, const std::string& path,
                                        Headers headers, Clock::time_point deadline) {
  // The handshake timeout also bounds a close handshake later.
  ws_.set_option(websocket::stream_base::timeout{
      milliseconds(timeout_ms_), websocket::stream_base::none(), /*keep_alive_pings=*/false});
  ws_.set_option(websocket::stream_base::decorator(
      [headers = std::move(headers)](websocket::request_type& request) {
        request.set(http::field::user_agent, "herald-ws-client");
        for (const auto& [name, value] : headers) request.insert(name, value);
      }));
  ws_.read_message_max(kMaxWsClientMessageBytes);
  op_result_.reset();
  op_pending_ = true;
  ws_.async_handshake(handshake_response_, host, path, [this](const beast::error_code& ec) {
    op_pending_ = false;
    op_result_ = ec;
  });
  if (!run_until([this] { return op_result_.has_value(); }, deadline)) {
    return end(
        Status::timeout("the handshake took longer than " + std::to_string(timeout_ms_) + " ms"),
        kWsCloseAbnormal);
  }
  if (*op_result_ == websocket::error::upgrade_declined) {
    return end(refused(handshake_response_), kWsCloseAbnormal);
  }
  if (*op_result_) {
    return end(Status::io_error("the handshake failed: " + op_result_->message()),
               kWsCloseAbnormal);
  }
  return Status::ok_status();
}

template <class NextLayer>
Status StreamImpl<NextLayer>::send(std::string_view payload, bool binary) {
  if (ended_.has_value()) return ended_status();
  outgoing_.assign(payload);
  ws_.binary(binary);
  write_result_.reset();
  write_pending_ = true;
  ws_.async_write(asio::buffer(outgoing_), [this](const beast::error_code& ec, std::size_t) {
    write_pending_ = false;
    write_result_ = ec;
  });
  if (!run_until([this] { return write_result_.has_value(); }, deadline_after(timeout_ms_))) {
    return end(Status::timeout("a send took longer than " + std::to_string(timeout_ms_) + " ms"),
               kWsCloseAbnormal);
  }
  if (*write_result_) return end_after(*write_result_);
  return Status::ok_status();
}

template <class NextLayer>
Result<std::string> StreamImpl<NextLayer>::receive(std::uint32_t timeout_ms) {
  if (ended_.has_value()) return *ended_;
  if (!read_pending_ && !read_result_.has_value()) {
    read_pending_ = true;
    // Always true; stated because the static analyzer otherwise follows Beast's read into a
    // path with an empty executor.
    HERALD_ASSERT(ws_.get_executor() != nullptr, "the stream has no executor");
    ws_.async_read(read_buffer_, [this](const beast::error_code& ec, std::size_t) {
      read_pending_ = false;
      read_result_ = ec;
    });
  }
  if (!run_until([this] { return read_result_.has_value(); }, deadline_after(timeout_ms))) {
    return Status::timeout("no message within " + std::to_string(timeout_ms) + " ms");
  }
  const beast::error_code ec = *read_result_;
  read_result_.reset();
  if (ec) return end_after(ec);
  std::string message = beast::buffers_to_string(read_buffer_.data());
  read_buffer_.clear();
  return message;
}

template <class NextLayer>
Status StreamImpl<NextLayer>::close(std::uint16_t code, std::string_view reason) {
  if (ended_.has_value()) return ended_status();
  op_result_.reset();
  op_pending_ = true;
  ws_.async_close(websocket::close_reason(static_cast<websocket::close_code>(code), reason),
                  [this](const beast::error_code& ec) {
                    op_pending_ = false;
                    op_result_ = ec;
                  });
  // A read still pending from an earlier receive() takes part in the close handshake.
  if (!run_until([this] { return op_result_.has_value() && !read_pending_; },
                 deadline_after(timeout_ms_))) {
    return end(Status::timeout("the server did not answer the close within " +
                               std::to_string(timeout_ms_) + " ms"),
               kWsCloseAbnormal);
  }
  const beast::error_code ec = *op_result_;
  // Records the server's answering close frame, which later calls report.
  end_after(websocket::error::closed).ignore();
  if (ec) return Status::io_error("the close handshake failed: " + ec.message());
  return Status::ok_status();
}

template <class NextLayer>
Status StreamImpl<NextLayer>::end(Status status, std::uint16_t close_code, std::string reason) {
  if (!ended_.has_value()) {
    ended_ = std::move(status);
    close_code_ = close_code;
    close_reason_ = std::move(reason);
    tear_down();
  }
  return *ended_;
}

template <class NextLayer>
Status StreamImpl<NextLayer>::end_after(const beast::error_code& ec) {
  const websocket::close_reason& frame = ws_.reason();
  if (ec == websocket::error::closed && frame.code != websocket::close_code::none) {
    std::string reason(frame.reason.data(), frame.reason.size());
    const std::uint16_t code = frame.code;
    return end(Status::aborted("closed with code " + std::to_string(code) +
                               (reason.empty() ? "" : " (" + reason + ")")),
               code, std::move(reason));
  }
  if (ec == websocket::error::message_too_big) {
    return end(Status::resource_exhausted("a message exceeded " +
                                          std::to_string(kMaxWsClientMessageBytes) + " bytes"),
               websocket::close_code::too_big);
  }
  return end(Status::io_error("the connection failed: " + ec.message()), kWsCloseAbnormal);
}

template <class NextLayer>
void StreamImpl<NextLayer>::tear_down() {
  // Turning both timeouts off cancels the WebSocket's timer; closing the socket completes the rest.
  ws_.set_option(websocket::stream_base::timeout{websocket::stream_base::none(),
                                                 websocket::stream_base::none(), false});
  beast::get_lowest_layer(ws_).close();
  const bool drained =
      run_until([this] { return !op_pending_ && !read_pending_ && !write_pending_; },
                deadline_after(kDrainMs));
  HERALD_ASSERT(drained, "operations still pending after the socket was closed");
}

}  // namespace

WsClient::WsClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

WsClient::~WsClient() = default;

Result<std::unique_ptr<WsClient>> WsClient::connect(const std::string& host, std::uint16_t port,
                                                    const std::string& path, Headers headers,
                                                    std::uint32_t timeout_ms,
                                                    const std::optional<ClientTls>& tls) {
  std::unique_ptr<Impl> impl;
  if (tls.has_value()) {
    HERALD_ASSIGN_OR_RETURN(std::unique_ptr<ssl::context> context, make_client_tls_context(*tls));
    impl = std::make_unique<StreamImpl<TlsStream>>(timeout_ms, std::move(context));
  } else {
    impl = std::make_unique<StreamImpl<beast::tcp_stream>>(timeout_ms, nullptr);
  }
  HERALD_RETURN_IF_ERROR(impl->connect(host, port, path, std::move(headers)));
  return std::unique_ptr<WsClient>(new WsClient(std::move(impl)));
}

Status WsClient::send_text(std::string_view text) {
  return impl_->send(text, /*binary=*/false);
}

Status WsClient::send_binary(std::string_view bytes) {
  return impl_->send(bytes, /*binary=*/true);
}

Result<std::string> WsClient::receive(std::uint32_t timeout_ms) {
  return impl_->receive(timeout_ms);
}

Status WsClient::close(std::uint16_t code, std::string_view reason) {
  return impl_->close(code, reason);
}

bool WsClient::is_open() const {
  return impl_->is_open();
}

std::optional<std::uint16_t> WsClient::close_code() const {
  return impl_->close_code();
}

const std::string& WsClient::close_reason() const {
  return impl_->close_reason();
}

}  // namespace herald::client
