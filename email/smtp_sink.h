// A test double of an SMTP server: a real server on 127.0.0.1 for tests of the SMTP client
// (email/smtp.h) over real sockets. Tests and `herald serve --demo` only (app/demo_doubles.h).
//
// At start it generates a P-256 key and a self-signed certificate for 127.0.0.1 in memory; the
// certificate (public) is written to a temporary file for the client's ca_file. It speaks
// RFC 5321 with the extensions a submission server offers: EHLO (and HELO), STARTTLS (RFC 3207;
// whatever the client sent before the handshake is discarded), AUTH PLAIN and LOGIN (RFC 4954,
// checked against the configured credentials, only over TLS unless allow_plain_auth), MAIL FROM
// (a SIZE= over max_message_bytes, RFC 1870, is answered 552), RCPT TO, DATA (dot-unstuffed,
// RFC 5321 section 4.5.2), RSET, NOOP and QUIT. A connection may carry any number of
// transactions. When credentials are configured, MAIL FROM before a successful AUTH is answered
// 530. Every message accepted (250 after its data) is recorded with its envelope.
//
// Fault modes, set any time from the test thread: the next answers to a command (fail_next),
// slow answers (set_delay_ms), a connection closed in the middle of the data (drop_in_data), and
// STARTTLS not offered (options) or refused (fail_next at kStartTls).
//
// Thread-safety: every public member may be called from any thread; the server runs on its own
// I/O thread, joined by the destructor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"

namespace herald::email::testing {

// The points at which an answer can be scripted.
enum class SmtpStage : std::uint8_t {
  kGreeting,  // the 220 on connect (a 4xx/5xx greeting closes the connection, as RFC 5321 says)
  kEhlo,
  kStartTls,
  kAuth,  // the final answer to AUTH (after the credentials)
  kMail,
  kRcpt,
  kData,     // the answer to the DATA command (354)
  kDataEnd,  // the answer after the data's final "."
};

struct SmtpSinkMessage {
  std::uint64_t connection = 0;  // 1-based, in accept order
  bool tls = false;              // the transaction ran over TLS
  std::string auth_user;         // who authenticated, empty when no one did
  std::string auth_mechanism;
  std::string ehlo_name;
  std::string mail_from;             // the reverse path, without brackets
  std::vector<std::string> rcpt_to;  // the forward paths, without brackets
  std::string data;                  // what followed DATA, unstuffed, without the final "."
};

struct SmtpSinkOptions {
  bool implicit_tls = false;   // TLS from the first byte (the client's tls = "tls")
  bool offer_starttls = true;  // advertise STARTTLS (without implicit_tls)
  // AUTH is offered and required when username is not empty.
  std::string username;
  std::string password;
  std::vector<std::string> auth_mechanisms = {"PLAIN", "LOGIN"};
  bool allow_plain_auth = false;                         // offer AUTH before TLS too
  std::size_t max_message_bytes = std::size_t{1} << 20;  // SIZE; larger data is answered 552
  // Called on the sink's I/O thread with every message accepted, before the 250 goes out, without
  // the sink's lock held; empty: not called.
  std::function<void(const SmtpSinkMessage&)> on_message;
};

class SmtpSink {
 public:
  // Listens on 127.0.0.1 on a free port. kIOError when OpenSSL or the socket fails.
  [[nodiscard]] static Result<std::unique_ptr<SmtpSink>> start(SmtpSinkOptions options = {});
  ~SmtpSink();
  SmtpSink(const SmtpSink&) = delete;
  SmtpSink& operator=(const SmtpSink&) = delete;

  [[nodiscard]] std::uint16_t port() const;
  // The PEM file of the self-signed certificate: the client's ca_file.
  [[nodiscard]] const std::string& ca_file() const;

  // The next `count` times `stage` is reached it is answered `code` and `text` (a 421 or a
  // failed greeting also closes the connection, as a server that shuts down does).
  void fail_next(SmtpStage stage, std::size_t count, int code, const std::string& text);
  // Every answer waits this long first (0: at once).
  void set_delay_ms(std::int64_t delay_ms);
  // The next `count` transactions: the connection is closed when the first line of data
  // arrives, without an answer.
  void drop_in_data(std::size_t count);

  // Every message accepted so far, in order.
  [[nodiscard]] std::vector<SmtpSinkMessage> messages() const;
  [[nodiscard]] std::size_t message_count() const;
  // Connections accepted so far; sessions open now and at most at once.
  [[nodiscard]] std::size_t connections() const;
  [[nodiscard]] std::size_t open_sessions() const;
  [[nodiscard]] std::size_t max_open_sessions() const;
  // AUTH attempts refused (wrong credentials).
  [[nodiscard]] std::size_t auth_failures() const;
  // The verb of every command received, in order ("EHLO", "STARTTLS", "AUTH", "MAIL", ...).
  [[nodiscard]] std::vector<std::string> commands() const;

  struct Impl;

 private:
  explicit SmtpSink(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace herald::email::testing
