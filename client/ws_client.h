// WsClient: a small blocking WebSocket client (RFC 6455, optionally over TLS, no compression) for
// tests, benchmarks and tools that speak to Herald's WebSocket endpoints.
//
// Every call blocks for at most its timeout: connect() for the timeout it is given, receive() for
// its own, and send_text(), send_binary() and close() for the timeout given to connect(). The
// client is not thread-safe: use it from one thread at a time. It runs no thread of its own, so it
// answers the server's pings only while one of its calls is running; a client that makes no call
// for longer than the server's idle timeout is closed by the server.
//
// Once the connection has ended (a close handshake, a network error, a timed-out send), every
// call fails: receive() reports how it ended, every time; the other calls kFailedPrecondition.
// Beast stays in ws_client.cc, so including this header does not compile it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"

namespace herald::client {

// Default bound on connect(), and on the sends and the close of the connection it opens.
inline constexpr std::uint32_t kDefaultWsTimeoutMs = 10'000;
// Largest incoming message; a larger one ends the connection (the client sends 1009).
inline constexpr std::size_t kMaxWsClientMessageBytes = 16 * 1024 * 1024;
// Close codes (RFC 6455 section 7.4.1) the client uses.
inline constexpr std::uint16_t kWsCloseNormal = 1000;
// Reported by close_code() when the connection ended without a close frame; never sent.
inline constexpr std::uint16_t kWsCloseAbnormal = 1006;

// TLS for a client connection (wss://, https://): the server's certificate must chain to one of
// the CAs and name the host connected to (a DNS name, or an IP address for an IP literal).
struct ClientTls {
  std::string ca_file;  // PEM CAs to trust; empty: the system's
};

class WsClient {
 public:
  using Headers = std::vector<std::pair<std::string, std::string>>;
  class Impl;  // in ws_client.cc

  // Connects to host:port (an IP literal, or a name resolved by the system resolver, whose own
  // timeouts bound it) and opens a WebSocket on `path` (with its query, e.g. "/v1/ws?x=1"), with
  // `headers` added to the upgrade request. Errors: kTimeout when `timeout_ms` passes; kIOError
  // when the TCP connection fails; for an upgrade the server refuses, an error whose message names
  // the HTTP status and carries the response body: kNotFound for 404, kUnavailable for 503,
  // kFailedPrecondition otherwise (e.g. 401). With `tls`, the connection is WSS: a TLS handshake
  // after the TCP connection, bounded by the same timeout; a certificate that does not verify, or
  // a server that does not speak TLS, fails with kIOError; kInvalidArgument when the CA file
  // cannot be loaded.
  [[nodiscard]] static Result<std::unique_ptr<WsClient>> connect(
      const std::string& host, std::uint16_t port, const std::string& path, Headers headers = {},
      std::uint32_t timeout_ms = kDefaultWsTimeoutMs,
      const std::optional<ClientTls>& tls = std::nullopt);

  // Drops the TCP connection without a close handshake (the server sees 1006); call close()
  // first for a clean close.
  ~WsClient();
  WsClient(const WsClient&) = delete;
  WsClient& operator=(const WsClient&) = delete;

  // Sends one text message. Errors: kFailedPrecondition when the connection had ended before;
  // kTimeout when the message could not be written in time (the connection then ends: a
  // half-written frame cannot be taken back); when the connection ends during the send, how it
  // ended, as receive() reports it.
  [[nodiscard]] Status send_text(std::string_view text);
  // Sends one binary message; errors as send_text(). Herald's server closes with 1003 on one,
  // which is what tests use it for.
  [[nodiscard]] Status send_binary(std::string_view bytes);

  // The next message from the server (text or binary, as bytes), waiting at most `timeout_ms`.
  // Errors:
  //   - kTimeout when none arrives in time; the connection stays usable, and a message arriving
  //     later is returned by the next call;
  //   - once the connection has ended, how it ended, on this call and every later one: kAborted
  //     for a close handshake, with close_code() and close_reason() set (the message names both);
  //     kResourceExhausted (close_code() 1009) for an incoming message over
  //     kMaxWsClientMessageBytes; kIOError (kWsCloseAbnormal) for a network failure; or the error
  //     of the send or close that ended it.
  [[nodiscard]] Result<std::string> receive(std::uint32_t timeout_ms);

  // Closes with `code` and `reason` and waits for the server's close frame; messages still
  // arriving are discarded. Errors: kFailedPrecondition when the connection has already ended;
  // kTimeout when the server does not answer in time (the connection is dropped anyway).
  [[nodiscard]] Status close(std::uint16_t code = kWsCloseNormal, std::string_view reason = "");

  // True until the connection ends.
  [[nodiscard]] bool is_open() const;
  // The code of the close frame that ended the connection (the server's, or for a close() the
  // server's answer), kWsCloseAbnormal when it ended without one, nullopt while open.
  [[nodiscard]] std::optional<std::uint16_t> close_code() const;
  // The reason in that close frame ("" when none).
  [[nodiscard]] const std::string& close_reason() const;

 private:
  explicit WsClient(std::unique_ptr<Impl> impl);

  std::unique_ptr<Impl> impl_;
};

}  // namespace herald::client
