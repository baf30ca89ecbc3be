// The email provider: messaging::EmailProvider over SMTP (RFC 5321) with libcurl. Message format,
// configuration, bounds and the error table: docs/email.md.
//
// What it sends, per EmailRequest: one SMTP transaction, MAIL FROM:<from_address>, RCPT
// TO:<request.to>, DATA with a MIME message (build_email below):
//   Date, From, To, Subject (RFC 2047 when not plain ASCII), Message-ID (smtp_message_id: the same
//   on every attempt of one send), MIME-Version, Auto-Submitted, and a multipart/alternative body
//   with a text/plain and a text/html part, both UTF-8 and quoted-printable, naming the sender,
//   the conversation and the message's preview.
//
// Transport: TLS by configuration — STARTTLS required (the default: a server that does not offer
// it fails the request, nothing is sent in clear), TLS from the first byte ("smtps"), or none
// (only when configured so). The server's certificate is verified against the system's CAs or
// ca_file, and its name against host. AUTH (libcurl picks PLAIN, LOGIN or a stronger mechanism
// the server offers) when a username is configured.
//
// Concurrency: one I/O thread of the client (a net::CurlMultiLoop) drives every transfer through
// one libcurl multi handle, which keeps idle connections for reuse (at most max_concurrent, each
// for at most kSmtpMaxIdleConnectionSeconds). At most max_concurrent transfers run at once; the
// rest wait in a FIFO of at most max_queued requests, beyond which send() fails at once with
// kEmailUnavailable. A request not answered within request_timeout_ms of send() (queueing
// included) fails with kEmailUnavailable.
//
// Errors (docs/email.md, "Errors"): a 5xx reply is kEmailRejected, permanent, except the
// authentication replies (530, 534, 535, 538) and a refused login, which are configuration
// problems: kEmailUnavailable, so the delivery workflow retries them, with an error logged each
// time. A 4xx reply, a refused or lost connection, a timeout, a failed TLS handshake or a missing
// STARTTLS are kEmailUnavailable. A request that cannot be sent (a malformed recipient address)
// is kEmailRejected before any I/O. A success's provider_id is the Message-ID.
//
// Time: the Date header comes from the injected Clock; timeouts run on the steady clock.
//
// Secrets: the password is handed to libcurl only; it is never logged nor put in error messages.
//
// Thread-safety: send() and stats() may be called from any thread. `done` runs on the client's
// I/O thread, or on the caller's thread before send() returns when the request fails at once
// (malformed request, full queue, client shut down).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/clock.h"
#include "base/status.h"
#include "messaging/providers.h"
#include "net/transfer_stats.h"

namespace herald::email {

// The submission port (RFC 6409), STARTTLS; and the port of TLS from the first byte (RFC 8314).
inline constexpr std::uint16_t kSmtpSubmissionPort = 587;
inline constexpr std::uint16_t kSmtpImplicitTlsPort = 465;

// Transfers running at once, at most (and the default), and idle connections kept for reuse.
inline constexpr std::size_t kSmtpMaxConcurrent = 64;
inline constexpr std::size_t kSmtpDefaultConcurrent = 4;
// Requests waiting for a transfer, at most (and the default); beyond it send() fails fast.
inline constexpr std::size_t kSmtpMaxQueued = 10'000;
inline constexpr std::size_t kSmtpDefaultQueued = 1'000;
// From send() to the server's answer to the message, queueing included. Under the delivery
// workflow's 30 s start-to-close timeout, so an attempt ends before the workflow gives up on it.
inline constexpr std::int64_t kSmtpRequestTimeoutMs = 20'000;
// From starting to connect to the TCP connection being up.
inline constexpr std::int64_t kSmtpConnectTimeoutMs = 10'000;
// An idle connection kept for reuse is closed after this long, in seconds (servers drop idle
// clients after a few minutes; RFC 5321 section 4.5.3.2.7 says at least 5).
inline constexpr long kSmtpMaxIdleConnectionSeconds = 30;
// The preview put in the email, at most, in bytes (cut at a UTF-8 boundary, kSmtpCutMarker
// appended).
inline constexpr std::size_t kSmtpMaxPreviewBytes = std::size_t{16} * 1024;
// The subject, at most, in bytes (cut the same way).
inline constexpr std::size_t kSmtpMaxSubjectBytes = 512;
// The display name of the sender, at most, in bytes.
inline constexpr std::size_t kSmtpMaxFromNameBytes = 128;
// The server's reply text kept for an error message, at most, in bytes.
inline constexpr std::size_t kSmtpMaxReplyTextBytes = 512;
// An address (local@domain), at most, in bytes (RFC 5321 section 4.5.3.1: 64 + 1 + 255, and a
// path of 256 including the brackets).
inline constexpr std::size_t kSmtpMaxAddressBytes = 254;
// U+2026 HORIZONTAL ELLIPSIS, appended to a cut subject or preview.
inline constexpr char kSmtpCutMarker[] = "\u2026";
// The Message-ID's domain when the from address has none usable.
inline constexpr char kSmtpFallbackIdDomain[] = "herald.invalid";

enum class SmtpTls : std::uint8_t {
  kStartTls,  // plain TCP, then STARTTLS, required: refused when the server does not offer it
  kImplicit,  // TLS from the first byte ("smtps", usually port 465)
  kNone,      // no TLS at all: only for a relay on a trusted network, and only when configured
};

// "starttls", "tls" or "none" (the configuration's words). kInvalidArgument otherwise.
[[nodiscard]] Result<SmtpTls> parse_smtp_tls(std::string_view text);
[[nodiscard]] std::string_view smtp_tls_name(SmtpTls tls);

struct SmtpConfig {
  std::string host;  // the server's name (checked against its certificate) or IP address
  std::uint16_t port = kSmtpSubmissionPort;
  SmtpTls tls = SmtpTls::kStartTls;
  // PEM file of the CAs to trust instead of the system's (tests: the sink's self-signed
  // certificate). Empty: the system's default CAs.
  std::string ca_file;
  // AUTH credentials; no AUTH when username is empty. The password is a secret.
  std::string username;
  std::string password;
  std::string from_address;          // the envelope sender and the From address; required
  std::string from_name = "Herald";  // the From display name; may be empty
  // The name the client gives in EHLO; empty: the local host name (libcurl's default).
  std::string ehlo_name;
  std::int64_t connect_timeout_ms = kSmtpConnectTimeoutMs;  // > 0
  std::int64_t request_timeout_ms = kSmtpRequestTimeoutMs;  // > 0
  std::size_t max_concurrent = kSmtpDefaultConcurrent;      // 1..kSmtpMaxConcurrent
  std::size_t max_queued = kSmtpDefaultQueued;              // 0..kSmtpMaxQueued
};

// OK when `config` can be used: host and from_address present and well formed, timeouts
// positive, bounds within the limits above. kInvalidArgument naming the field otherwise (never
// the password).
[[nodiscard]] Status check_smtp_config(const SmtpConfig& config);

// OK when `address` is a plain mailbox local@domain of printable ASCII, at most
// kSmtpMaxAddressBytes, with no characters that would need quoting (so it is safe in a header
// and an SMTP path); kInvalidArgument otherwise.
[[nodiscard]] Status check_address(std::string_view address);

// The Message-ID for an idempotency key, brackets included: "<" + the first 32 hex digits of
// SHA-256("herald-email:" + key) + "@" + the domain of from_address (kSmtpFallbackIdDomain when
// it has none) + ">". Every attempt of one send carries the same id.
[[nodiscard]] std::string smtp_message_id(std::string_view idempotency_key,
                                          std::string_view from_address);

// The RFC 5322 date-time of `wall_ms` in UTC: "Thu, 01 Jan 2026 00:00:00 +0000".
[[nodiscard]] std::string rfc5322_date(WallMs wall_ms);

// `text` as an unstructured header value: itself when it is printable ASCII, holds no "=?" and
// fits `room` bytes; else RFC 2047 encoded words (UTF-8, base64), each at most 75 bytes and
// holding whole characters, separated by CRLF SP (folded). Control characters become spaces.
[[nodiscard]] std::string encode_header_text(std::string_view text, std::size_t room);

// Quoted-printable (RFC 2045 section 6.7) of UTF-8 text: line breaks (LF or CRLF) become CRLF;
// '=', bytes outside printable ASCII and whitespace before a line break are =XX; lines are cut
// with soft breaks so that none is longer than 76 characters.
[[nodiscard]] std::string quoted_printable(std::string_view text);

// `text` with & < > " ' as HTML character references.
[[nodiscard]] std::string html_escape(std::string_view text);

// The whole message for `request` (headers and body, CRLF line ends), as sent after DATA.
// kInvalidArgument when request.to is not a usable address (check_address).
[[nodiscard]] Result<std::string> build_email(const SmtpConfig& config,
                                              const messaging::EmailRequest& request,
                                              WallMs now_ms);

// How a failed SMTP transaction ended, as the client classifies libcurl's outcome.
enum class SmtpFailure : std::uint8_t {
  kReply,            // the server answered a command with reply_code (4xx or 5xx)
  kAuthRefused,      // the login failed (or no mechanism in common)
  kStartTlsMissing,  // STARTTLS required, and the server did not offer it or refused it
  kTransport,        // connection refused or lost, timeout, TLS failure, garbled reply
};

// The provider outcome of a failure (the table in docs/email.md). `reply_text` is the server's
// last reply without its code; `detail` libcurl's description. Neither may hold a secret.
[[nodiscard]] messaging::ProviderResult map_smtp_failure(SmtpFailure failure, int reply_code,
                                                         std::string_view reply_text,
                                                         std::string_view detail);

// Counters, for tests and metrics: transfers (started, queued, in_flight, max_in_flight) and
// outcomes (sent: accepted by the server; failed: every failure, fast ones included).
using SmtpStats = net::ProviderStats;

class SmtpClient final : public messaging::EmailProvider {
 public:
  // Checks the configuration and starts the I/O thread (no connection yet). kInvalidArgument for
  // a bad configuration, kIOError when libcurl cannot be set up. `clock` must outlive the client.
  [[nodiscard]] static Result<std::unique_ptr<SmtpClient>> create(SmtpConfig config,
                                                                  const Clock& clock);
  // Fails every request not yet answered with kEmailUnavailable, closes the connections, and
  // joins the I/O thread. Precondition: not called from a `done` callback (that runs on the I/O
  // thread).
  ~SmtpClient() override;
  SmtpClient(const SmtpClient&) = delete;
  SmtpClient& operator=(const SmtpClient&) = delete;

  // See the top of this file and messaging/providers.h.
  void send(const messaging::EmailRequest& request, messaging::ProviderDone done) override;

  [[nodiscard]] SmtpStats stats() const;

  struct Impl;

 private:
  explicit SmtpClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace herald::email
