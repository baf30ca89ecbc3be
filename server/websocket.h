// WebSocket connections accepted by HttpServer, and the handler interface that drives them.
//
// A WebSocket starts as an HTTP upgrade request on a path registered in
// HttpServerConfig::websocket_paths. The path's WsHandler decides in on_open() whether to accept
// it; an accepted connection carries text messages both ways until it closes, and then the
// handler hears on_close() exactly once. The transport knows nothing of what the messages mean.
//
// Limits (constants in server/http_server.h, configurable per server in HttpServerConfig):
//   - an incoming message larger than kMaxWsMessageBytes closes with 1009 "message too big";
//   - an incoming binary message closes with 1003 (Herald speaks text); invalid UTF-8 in a text
//     message closes with 1007;
//   - more than kMaxWsQueuedBytes of outgoing messages waiting for a slow client closes with 1008
//     "slow consumer", so that one slow client never blocks the others or grows memory unbounded;
//   - a connection that receives nothing for kWsIdleTimeoutMs is closed; it is pinged after
//     kWsPingIntervalMs of silence so that a live client answers in time;
//   - a close handshake that does not complete within kWsCloseTimeoutMs is cut short;
//   - after its close frame the server shuts down its sending side and reads and discards what
//     the client still sends (the rest of an oversize frame) for up to 1 s and 8 MiB
//     (kWsLingerMs, kMaxWsLingerBytes in http_server.cc) before it closes the socket, so that the
//     client reads the close code instead of a connection reset.
//
// Clients must wait for the handshake response before sending frames (RFC 6455 section 4.1);
// bytes sent before it are discarded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "base/status.h"
#include "server/http_server.h"

namespace herald::server {

// Close codes (RFC 6455 section 7.4.1) the server sends.
inline constexpr std::uint16_t kWsCloseNormal = 1000;
inline constexpr std::uint16_t kWsCloseGoingAway = 1001;        // stop()
inline constexpr std::uint16_t kWsCloseUnsupportedData = 1003;  // a binary message
inline constexpr std::uint16_t kWsClosePolicyViolation = 1008;  // a slow consumer
inline constexpr std::uint16_t kWsCloseMessageTooBig = 1009;
inline constexpr std::uint16_t kWsCloseInternalError = 1011;
// Largest close reason a close frame can carry (RFC 6455 section 5.5: 125 bytes of payload).
inline constexpr std::size_t kMaxWsCloseReasonBytes = 123;

// True for the codes an endpoint may send in a close frame: 1000-1003, 1007-1014, 3000-4999.
[[nodiscard]] bool is_sendable_ws_close_code(std::uint16_t code);
// `reason` cut to at most kMaxWsCloseReasonBytes without splitting a UTF-8 sequence.
[[nodiscard]] std::string truncate_ws_close_reason(std::string_view reason);

// One accepted WebSocket. Owned by shared_ptr: the server holds it while the socket is open, the
// handler may hold it as long as it likes (a closed connection only refuses sends). Every method is
// thread-safe and never blocks.
class WsConnection {
 public:
  virtual ~WsConnection() = default;

  // Queues one text message (UTF-8, by contract with the client); messages are written in the
  // order of their send_text calls. Queued before the handshake completes (from on_open), they are
  // written right after it. Errors:
  //   - kFailedPrecondition once the connection is closing or closed (close(), a limit, the
  //     client, stop()); the message is dropped;
  //   - kInvalidArgument when text alone is larger than the queue limit (kMaxWsQueuedBytes); the
  //     message is dropped and the connection carries on;
  //   - kResourceExhausted when queuing it would exceed the queue limit: the client is too slow.
  //     The message and every queued one are dropped, and the connection is closed with 1008
  //     "slow consumer".
  [[nodiscard]] virtual Status send_text(std::string text) = 0;

  // Starts the close handshake: messages already queued are written first, then a close frame
  // with `code` and `reason` (truncated to kMaxWsCloseReasonBytes, UTF-8). on_close follows once
  // the connection has closed. Has no effect when the connection is already closing or closed.
  // Precondition: is_sendable_ws_close_code(code).
  virtual void close(std::uint16_t code, std::string reason) = 0;

  // Bytes queued and not yet written to the socket: what the queue limit bounds.
  [[nodiscard]] virtual std::size_t queued_bytes() const = 0;
  // Runs `fn` once as soon as queued_bytes() is at most `below`: at once on the calling thread
  // when it already is, else on an io thread after a write. Replaces an earlier callback that has
  // not run. Never runs once the connection is closing.
  virtual void when_drained(std::size_t below, std::function<void()> fn) = 0;

  // Unique among the connections of one server, never 0.
  [[nodiscard]] virtual std::uint64_t id() const = 0;
  // The client's address, "ip:port" ("[ip6]:port"), as seen when the connection was accepted.
  [[nodiscard]] virtual const std::string& remote_endpoint() const = 0;
};

// Drives the WebSockets of one path. Calls for one connection never overlap and come in the order
// on_open, on_text*, on_close; calls for different connections may run concurrently on different
// io threads. Every call runs on an io thread and must neither block nor throw; long work is
// posted elsewhere, and the connection may be used from there.
class WsHandler {
 public:
  virtual ~WsHandler() = default;

  // Decides an upgrade request. Return std::nullopt to accept: the handshake follows, and on_close
  // will be called exactly once for `conn`, even if the handshake then fails. Return a response to
  // refuse (e.g. HttpResponse::error(401, ...)); it is sent, the TCP connection closed, `conn`
  // refuses every send and nothing else is called for it. Precondition on a refusal: its status
  // is 400 or above.
  [[nodiscard]] virtual std::optional<HttpResponse> on_open(
      const std::shared_ptr<WsConnection>& conn, const HttpRequest& upgrade_request) = 0;

  // One complete text message, in arrival order. The next message is read only after this
  // returns, so a handler that falls behind slows its own client down (TCP back-pressure).
  virtual void on_text(const std::shared_ptr<WsConnection>& conn, std::string text) = 0;

  // The connection has closed, whoever closed it: every send now fails and nothing else is called
  // for `conn`. Called before HttpServer::stop() returns.
  virtual void on_close(const std::shared_ptr<WsConnection>& conn) = 0;
};

}  // namespace herald::server
