// HttpServer: a small HTTP/1.1 server for Herald's APIs (admin, metrics, dashboard).
//
// Connections are keep-alive and strictly sequential: the next request is read only after the
// previous response is written, so pipelined requests are answered in order. Every limit is a
// named constant below; hitting one answers with a JSON error body
//   {"error": {"code": "<snake_code>", "message": "..."}}
// and, when the rest of the stream cannot be trusted, closes the connection.
//
// Ownership and threads: the server owns its io threads (run()) and joins them in stop(). The
// handler runs on an io thread and must neither block nor throw; with several io threads it runs
// concurrently. It answers through the Responder, which may be called from any thread, exactly
// once. A Responder dropped without being called answers 500. A
// Responder called after its connection closed, or after stop(), does nothing.
//
// WebSocket: a GET with "Upgrade: websocket" on a path registered in
// HttpServerConfig::websocket_paths becomes a WebSocket driven by that path's WsHandler (see
// server/websocket.h for the handler's contract and the connection's guarantees). A WebSocket
// upgrade to any other path is answered 404; an upgrade to another protocol is answered 501. Open
// WebSockets count against max_connections like HTTP connections.
// TLS: with HttpServerConfig::tls set, the server speaks HTTPS and WSS only; a client that does not
// complete a TLS handshake within kTlsHandshakeTimeoutMs (server/tls.h) is disconnected.
// Beast stays in http_server.cc, so including this header does not compile it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"

namespace herald::server {

// Largest request body accepted; a larger one is answered 413 and the connection closed.
inline constexpr std::size_t kMaxRequestBodyBytes = 1024 * 1024;
// Largest request line plus headers; a larger one is answered 431 and the connection closed.
inline constexpr std::size_t kMaxRequestHeaderBytes = 16 * 1024;
// A connection with no complete request for this long is closed.
inline constexpr std::uint32_t kIdleReadTimeoutMs = 30'000;
// A response that cannot be written within this time closes the connection.
inline constexpr std::uint32_t kWriteTimeoutMs = 30'000;
// Connections beyond this many are answered 503 and closed.
inline constexpr std::size_t kMaxConnections = 1024;

// Largest incoming WebSocket message (after reassembly of its frames); a larger one closes the
// connection with 1009 "message too big".
inline constexpr std::size_t kMaxWsMessageBytes = 256 * 1024;
// Outgoing WebSocket bytes queued on one connection and not yet written to its socket; a send
// beyond this closes the connection with 1008 "slow consumer" (see WsConnection::send_text).
inline constexpr std::size_t kMaxWsQueuedBytes = 1024 * 1024;
// A WebSocket that receives nothing (no message, no pong) for this long is closed.
inline constexpr std::uint32_t kWsIdleTimeoutMs = 60'000;
// A WebSocket that received nothing for this long is sent a ping, so that a live client answers
// before kWsIdleTimeoutMs passes. Fixed at half the idle timeout (the idle timeout's driver pings
// at its midpoint).
inline constexpr std::uint32_t kWsPingIntervalMs = kWsIdleTimeoutMs / 2;
// The opening handshake (after the upgrade request was read) must complete within this time.
inline constexpr std::uint32_t kWsHandshakeTimeoutMs = 10'000;
// A WebSocket being closed (by its handler, a limit, or stop()) is torn down without ceremony if
// the close handshake has not completed within this time. Bounds how long stop() waits.
inline constexpr std::uint32_t kWsCloseTimeoutMs = 5'000;

struct HttpRequest {
  std::string method;                        // as sent, e.g. "GET"
  std::string path;                          // raw, still percent-encoded, without the query
  std::map<std::string, std::string> query;  // decoded; '+' decodes to a space
  std::vector<std::pair<std::string, std::string>> headers;  // in arrival order
  std::string body;

  // Value of the first header named `name` (case-insensitive), if any.
  [[nodiscard]] std::optional<std::string_view> header(std::string_view name) const;
};

struct HttpResponse {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers

  // A response with the JSON error body for `code` (lower_snake) and `message`.
  [[nodiscard]] static HttpResponse error(unsigned status, std::string_view code,
                                          std::string_view message);
  // A JSON response; `json` must already be serialized JSON.
  [[nodiscard]] static HttpResponse json(unsigned status, std::string json);
};

using Responder = std::function<void(HttpResponse)>;
using Handler = std::function<void(HttpRequest&&, Responder)>;

// Splits a raw path ("/kv/a%2Fb/") into percent-decoded segments ({"kv", "a/b"}); empty
// segments are dropped and decoded segments may hold any bytes. Errors: kInvalidArgument for a
// path that does not start with '/' or has a malformed escape (answer it with 400).
[[nodiscard]] Result<std::vector<std::string>> split_path(std::string_view path);

// Parses `bytes` the way a connection reads one request: Beast's HTTP/1.x parser with the
// server's limits (kMaxRequestBodyBytes, kMaxRequestHeaderBytes), then the handler's view of it
// (path, decoded query, headers in order, body). The request ends where `bytes` end; bytes after
// a complete request are ignored. Errors: kResourceExhausted when the headers or the body exceed
// their limit (the server answers 431 / 413), kInvalidArgument for a malformed or incomplete
// request or a malformed query string (400). Never throws. Used by tests and fuzzing; the server
// applies the same parser settings and conversion to what it reads from a socket.
[[nodiscard]] Result<HttpRequest> parse_http_request(std::string_view bytes);

class WsHandler;         // server/websocket.h
class TlsServerContext;  // server/tls.h

struct HttpServerConfig {
  std::string listen = "127.0.0.1:0";  // ip:port; port 0 picks an ephemeral port
  std::size_t max_connections = kMaxConnections;
  std::uint32_t idle_read_timeout_ms = kIdleReadTimeoutMs;
  // Paths (raw, as HttpRequest::path, matched exactly) that accept WebSocket upgrades, each with
  // its handler. Handlers are not owned: each must be non-null and outlive the server's stop().
  std::map<std::string, WsHandler*> websocket_paths;
  std::size_t ws_max_message_bytes = kMaxWsMessageBytes;
  std::size_t ws_max_queued_bytes = kMaxWsQueuedBytes;
  // Also sets the ping interval, which is always half of it.
  std::uint32_t ws_idle_timeout_ms = kWsIdleTimeoutMs;
  // Null: plaintext HTTP and WebSocket. Set: every connection starts with a TLS handshake (HTTPS
  // and WSS) using the context's current certificate, taken when the connection is accepted, so
  // a TlsServerContext::reload() changes the certificate of later connections only.
  std::shared_ptr<TlsServerContext> tls;
};

class HttpServer {
 public:
  // Precondition: handler is set.
  HttpServer(HttpServerConfig config, Handler handler);
  // Calls stop().
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds the listener, starts accepting, spawns `io_threads` io threads and returns. Call at
  // most once. Precondition: io_threads >= 1. Errors: kInvalidArgument for a malformed listen
  // endpoint, kIOError when binding fails.
  [[nodiscard]] Status run(std::size_t io_threads = 1);
  // Closes the listener and every connection and joins the io threads; no handler runs after it
  // returns. Every open WebSocket is closed with 1001 "going away" (a client that does not answer
  // the close is dropped after kWsCloseTimeoutMs), and WsHandler::on_close has been called for
  // each of them when stop() returns. Idempotent; the server cannot be run again. Must not be
  // called from an io thread.
  void stop();

  // The bound port (useful with port 0). Precondition: run() succeeded.
  [[nodiscard]] std::uint16_t port() const;
  // Connections currently open, HTTP and WebSocket (thread-safe).
  [[nodiscard]] std::size_t open_connections() const;

 private:
  class Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace herald::server
