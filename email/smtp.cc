#include "email/smtp.h"

#include <curl/curl.h>
#include <fmt/format.h>
#include <openssl/evp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <set>
#include <utility>

#include "base/assert.h"
#include "base/log.h"
#include "net/curl_provider.h"

namespace herald::email {

using messaging::ProviderResult;

namespace {

constexpr std::size_t kSha256Bytes = 32;
// Hex digits of the hash in a Message-ID (128 bits: unique enough for any number of sends).
constexpr std::size_t kMessageIdHexDigits = 32;
constexpr char kHexDigits[] = "0123456789abcdef";
constexpr char kUpperHexDigits[] = "0123456789ABCDEF";
// RFC 2047: an encoded word is at most 75 bytes; "=?UTF-8?B?" and "?=" leave 63 for base64,
// which is 15 groups of 4 characters carrying 3 bytes each.
constexpr std::size_t kEncodedWordTextBytes = 45;
// RFC 2045: a quoted-printable line is at most 76 characters.
constexpr std::size_t kQpLineChars = 76;
// RFC 5322 recommends lines of at most 78 characters; "Subject: " takes 9 of them.
constexpr std::size_t kSubjectRoomBytes = 78 - 9;
// At shutdown, how long the transfers whose sockets were shut down may take to fail, in
// milliseconds.
constexpr std::int64_t kShutdownDrainMs = 1000;

// The longest prefix of `text` of at most `max_bytes` that does not end inside a UTF-8 sequence.
std::string_view utf8_cut(std::string_view text, std::size_t max_bytes) {
  std::size_t cut = std::min(max_bytes, text.size());
  const auto continues = [&](std::size_t i) {
    return i < text.size() && (static_cast<unsigned char>(text[i]) & 0xc0) == 0x80;
  };
  while (cut > 0 && continues(cut)) {
    --cut;
  }
  return text.substr(0, cut);
}

// `text` cut to `max_bytes` (the marker appended) when longer.
std::string bounded(std::string_view text, std::size_t max_bytes) {
  if (text.size() <= max_bytes) {
    return std::string(text);
  }
  return std::string(utf8_cut(text, max_bytes)) + kSmtpCutMarker;
}

std::string hex_sha256(std::string_view data) {
  std::array<unsigned char, kSha256Bytes> digest{};
  unsigned int size = 0;
  const int ok = EVP_Digest(data.data(), data.size(), digest.data(), &size, EVP_sha256(), nullptr);
  HERALD_ASSERT(ok == 1 && size == kSha256Bytes, "SHA-256 failed");
  std::string out;
  for (const unsigned char byte : digest) {
    out.push_back(kHexDigits[byte >> 4]);
    out.push_back(kHexDigits[byte & 0x0f]);
  }
  return out;
}

std::string base64(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()),
                                static_cast<int>(bytes.size()));
  HERALD_ASSERT(n >= 0, "base64 encoding failed");
  out.resize(static_cast<std::size_t>(n));
  return out;
}

bool printable_ascii(char c) {
  return c >= ' ' && c <= '~';
}

// Control characters (CR and LF above all: they would end the header) become spaces.
std::string without_controls(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < ' ' || c == '\x7f') {
      c = ' ';
    }
  }
  return out;
}

bool needs_encoding(std::string_view text, std::size_t room) {
  return text.size() > room || text.find("=?") != std::string_view::npos ||
         !std::all_of(text.begin(), text.end(), printable_ascii);
}

std::string encoded_words(std::string_view text) {
  std::string out;
  while (!text.empty()) {
    std::string_view chunk = utf8_cut(text, kEncodedWordTextBytes);
    if (chunk.empty()) {
      chunk = text.substr(0, kEncodedWordTextBytes);  // not UTF-8: whole bytes still round-trip
    }
    if (!out.empty()) {
      out += "\r\n ";
    }
    out += "=?UTF-8?B?" + base64(chunk) + "?=";
    text.remove_prefix(chunk.size());
  }
  return out;
}

std::string from_header(const SmtpConfig& config) {
  const std::string name = without_controls(bounded(config.from_name, kSmtpMaxFromNameBytes));
  if (name.empty()) {
    return config.from_address;
  }
  if (needs_encoding(name, kSmtpMaxFromNameBytes)) {
    return encoded_words(name) + " <" + config.from_address + ">";
  }
  std::string quoted = "\"";
  for (const char c : name) {
    if (c == '"' || c == '\\') {
      quoted.push_back('\\');
    }
    quoted.push_back(c);
  }
  return quoted + "\" <" + config.from_address + ">";
}

std::string_view domain_of(std::string_view address) {
  const std::size_t at = address.rfind('@');
  return at == std::string_view::npos ? std::string_view() : address.substr(at + 1);
}

bool is_ip_literal_host(std::string_view host) {
  return host.find(':') != std::string_view::npos;
}

// The words of the message, before any encoding.
struct Wording {
  std::string plain;
  std::string html;
};

Wording wording(const messaging::EmailRequest& request, std::string_view subject) {
  const std::string sender = request.sender_user_id.empty() ? "someone" : request.sender_user_id;
  const std::string preview = bounded(request.body, kSmtpMaxPreviewBytes);
  const std::string footer = fmt::format(
      "This message (number {} in {}) has not reached any of your devices yet, so Herald sends "
      "it to you by email.",
      request.seq, request.conversation_id);
  Wording w;
  w.plain = fmt::format("New message from {} in {}:\n\n{}\n\n{}\n", sender, request.conversation_id,
                        preview, footer);
  w.html = fmt::format(
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title></head>\n<body>\n"
      "<p>New message from <strong>{}</strong> in <strong>{}</strong>:</p>\n"
      "<blockquote style=\"white-space: pre-wrap\">{}</blockquote>\n<p>{}</p>\n</body></html>\n",
      html_escape(subject), html_escape(sender), html_escape(request.conversation_id),
      html_escape(preview), html_escape(footer));
  return w;
}

bool address_byte_ok(char c) {
  // Printable ASCII without the characters that would need quoting in a mailbox or a header.
  static constexpr std::string_view kSpecials = "<>()[]\\,;:\"@ ";
  return printable_ascii(c) && kSpecials.find(c) == std::string_view::npos;
}

}  // namespace

Result<SmtpTls> parse_smtp_tls(std::string_view text) {
  if (text == "starttls") {
    return SmtpTls::kStartTls;
  }
  if (text == "tls") {
    return SmtpTls::kImplicit;
  }
  if (text == "none") {
    return SmtpTls::kNone;
  }
  return Status::invalid_argument(
      fmt::format("SMTP: tls must be \"starttls\", \"tls\" or \"none\", not \"{}\"", text));
}

std::string_view smtp_tls_name(SmtpTls tls) {
  switch (tls) {
    case SmtpTls::kStartTls: return "starttls";
    case SmtpTls::kImplicit: return "tls";
    case SmtpTls::kNone: return "none";
  }
  return "unknown";
}

Status check_address(std::string_view address) {
  if (address.empty() || address.size() > kSmtpMaxAddressBytes) {
    return Status::invalid_argument(
        fmt::format("an email address has 3 to {} characters", kSmtpMaxAddressBytes));
  }
  const std::size_t at = address.find('@');
  if (at == 0 || at == std::string_view::npos || at + 1 == address.size() ||
      address.find('@', at + 1) != std::string_view::npos) {
    return Status::invalid_argument("an email address is local-part@domain");
  }
  const std::string_view local = address.substr(0, at);
  const std::string_view domain = address.substr(at + 1);
  if (!std::all_of(local.begin(), local.end(), address_byte_ok) ||
      !std::all_of(domain.begin(), domain.end(), address_byte_ok)) {
    return Status::invalid_argument(
        "an email address is printable ASCII without spaces, quotes or brackets");
  }
  if (domain.front() == '.' || domain.back() == '.' ||
      domain.find("..") != std::string_view::npos) {
    return Status::invalid_argument("an email address's domain has an empty label");
  }
  return Status::ok_status();
}

Status check_smtp_config(const SmtpConfig& config) {
  const bool host_ok =
      !config.host.empty() && std::all_of(config.host.begin(), config.host.end(), [](char c) {
        return printable_ascii(c) && c != ' ' && c != '/' && c != '@' && c != '[' && c != ']';
      });
  if (!host_ok || config.port == 0) {
    return Status::invalid_argument("SMTP: host (a name or an IP address) and port are required");
  }
  if (Status address = check_address(config.from_address); !address.ok()) {
    return Status::invalid_argument("SMTP: from_address: " + address.message());
  }
  const bool ehlo_ok = std::all_of(config.ehlo_name.begin(), config.ehlo_name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.';
  });
  if (!ehlo_ok) {
    return Status::invalid_argument("SMTP: ehlo_name is a host name (letters, digits, '-', '.')");
  }
  if (config.connect_timeout_ms <= 0 || config.request_timeout_ms <= 0) {
    return Status::invalid_argument("SMTP: timeouts must be positive");
  }
  if (config.max_concurrent == 0 || config.max_concurrent > kSmtpMaxConcurrent) {
    return Status::invalid_argument(
        fmt::format("SMTP: max_concurrent must be within [1, {}]", kSmtpMaxConcurrent));
  }
  if (config.max_queued > kSmtpMaxQueued) {
    return Status::invalid_argument(
        fmt::format("SMTP: max_queued must be at most {}", kSmtpMaxQueued));
  }
  return Status::ok_status();
}

std::string smtp_message_id(std::string_view idempotency_key, std::string_view from_address) {
  const std::string digest = hex_sha256(std::string("herald-email:").append(idempotency_key))
                                 .substr(0, kMessageIdHexDigits);
  std::string_view domain = domain_of(from_address);
  if (domain.empty() || !check_address(from_address).ok()) {
    domain = kSmtpFallbackIdDomain;
  }
  return fmt::format("<{}@{}>", digest, domain);
}

std::string rfc5322_date(WallMs wall_ms) {
  using namespace std::chrono;  // NOLINT(google-build-using-namespace): calendar types
  static constexpr std::array<const char*, 7> kDays = {"Sun", "Mon", "Tue", "Wed",
                                                       "Thu", "Fri", "Sat"};
  static constexpr std::array<const char*, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const sys_time<milliseconds> time{milliseconds{wall_ms}};
  const sys_days day = floor<days>(time);
  const year_month_day date{day};
  const hh_mm_ss clock_time{floor<seconds>(time - day)};
  return fmt::format("{}, {:02} {} {:04} {:02}:{:02}:{:02} +0000", kDays[weekday{day}.c_encoding()],
                     static_cast<unsigned>(date.day()),
                     kMonths[static_cast<unsigned>(date.month()) - 1],
                     static_cast<int>(date.year()), clock_time.hours().count(),
                     clock_time.minutes().count(), clock_time.seconds().count());
}

std::string encode_header_text(std::string_view text, std::size_t room) {
  const std::string clean = without_controls(text);
  return needs_encoding(clean, room) ? encoded_words(clean) : clean;
}

std::string quoted_printable(std::string_view text) {
  std::string out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t end = std::min(text.find('\n', start), text.size());
    std::string_view line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    std::size_t column = 0;
    for (std::size_t i = 0; i < line.size(); ++i) {
      const char c = line[i];
      const bool last = i + 1 == line.size();
      const bool literal =
          (printable_ascii(c) && c != '=' && !(last && c == ' ')) || (c == '\t' && !last);
      const std::size_t width = literal ? 1 : 3;
      // A soft break ("=") must still fit after anything that is not the line's end.
      if (column + width > (last ? kQpLineChars : kQpLineChars - 1)) {
        out += "=\r\n";
        column = 0;
      }
      if (literal) {
        out.push_back(c);
      } else {
        const auto byte = static_cast<unsigned char>(c);
        out.push_back('=');
        out.push_back(kUpperHexDigits[byte >> 4]);
        out.push_back(kUpperHexDigits[byte & 0x0f]);
      }
      column += width;
    }
    if (end == text.size()) {
      break;
    }
    out += "\r\n";
    start = end + 1;
  }
  return out;
}

std::string html_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

Result<std::string> build_email(const SmtpConfig& config, const messaging::EmailRequest& request,
                                WallMs now_ms) {
  if (Status to = check_address(request.to); !to.ok()) {
    return Status::invalid_argument("the recipient address is not usable: " + to.message());
  }
  const std::string id = smtp_message_id(request.idempotency_key, config.from_address);
  // "=_" never occurs in quoted-printable text, so no part can contain the boundary.
  const std::string boundary = "=_herald_" + id.substr(1, kMessageIdHexDigits);
  const std::string subject = without_controls(bounded(request.subject, kSmtpMaxSubjectBytes));
  const Wording words = wording(request, subject);
  std::string message;
  message += "Date: " + rfc5322_date(now_ms) + "\r\n";
  message += "From: " + from_header(config) + "\r\n";
  message += "To: " + request.to + "\r\n";
  message += "Subject: " + encode_header_text(subject, kSubjectRoomBytes) + "\r\n";
  message += "Message-ID: " + id + "\r\n";
  message += "MIME-Version: 1.0\r\n";
  message += "Auto-Submitted: auto-generated\r\n";
  message += "Content-Type: multipart/alternative; boundary=\"" + boundary + "\"\r\n";
  message += "\r\n";
  for (const auto& [type, text] :
       {std::pair{"text/plain", &words.plain}, std::pair{"text/html", &words.html}}) {
    message += "--" + boundary + "\r\n";
    message += fmt::format("Content-Type: {}; charset=UTF-8\r\n", type);
    message += "Content-Transfer-Encoding: quoted-printable\r\n\r\n";
    message += quoted_printable(*text) + "\r\n";
  }
  message += "--" + boundary + "--\r\n";
  return message;
}

messaging::ProviderResult map_smtp_failure(SmtpFailure failure, int reply_code,
                                           std::string_view reply_text, std::string_view detail) {
  const std::string reply = reply_text.empty() ? std::to_string(reply_code)
                                               : fmt::format("{} {}", reply_code, reply_text);
  switch (failure) {
    case SmtpFailure::kAuthRefused:
      return ProviderResult::failure(
          messaging::kEmailUnavailable,
          fmt::format("the SMTP server refused the login ({}): check the SMTP username and "
                      "password",
                      reply_code >= 400 ? reply : std::string(detail)));
    case SmtpFailure::kStartTlsMissing:
      return ProviderResult::failure(
          messaging::kEmailUnavailable,
          fmt::format("the SMTP server does not offer STARTTLS, which the configuration requires "
                      "(tls = \"starttls\"): {}",
                      reply_code >= 400 ? reply : std::string(detail)));
    case SmtpFailure::kTransport:
      return ProviderResult::failure(messaging::kEmailUnavailable,
                                     fmt::format("SMTP transport failure: {}", detail));
    case SmtpFailure::kReply: break;
  }
  if (reply_code == 530 || reply_code == 534 || reply_code == 535 || reply_code == 538) {
    return ProviderResult::failure(
        messaging::kEmailUnavailable,
        fmt::format("the SMTP server wants other credentials ({}): check the SMTP username and "
                    "password",
                    reply));
  }
  if (reply_code >= 500 && reply_code < 600) {
    return ProviderResult::failure(messaging::kEmailRejected,
                                   fmt::format("the SMTP server refused the email: {}", reply));
  }
  return ProviderResult::failure(messaging::kEmailUnavailable,
                                 fmt::format("the SMTP server answered {}", reply));
}

// ---------------------------------------------------------------------------------------------
// The client's I/O side: every request is a job of one transfer loop (net/curl_provider.h).

namespace {

using net::SteadyTime;

// One request, from send() to done: one SMTP transaction.
struct Call final : net::CurlRequest {
  Call(SmtpClient::Impl& impl_in, messaging::ProviderDone done, SteadyTime deadline);

  // Sets the transaction up (the transfer's options).
  [[nodiscard]] Result<CURL*> begin() override;
  // Maps libcurl's outcome and the server's last reply to the result (docs/email.md, "Errors").
  void ended(CURLcode code) override;
  void release() override {
    easy.reset();
    recipients.reset();
  }

  SmtpClient::Impl& impl;
  std::string message;  // what follows DATA
  std::string message_id;
  std::string to;
  // While the transfer runs.
  net::CurlEasyPtr easy;
  net::CurlSlistPtr recipients;
  std::size_t read_offset = 0;
  std::string reply_lines;  // the reply being received, joined
  // The last error reply (4xx or 5xx): its code and text. A later success (but for QUIT's 221,
  // which follows a failure) clears it.
  int error_code = 0;
  std::string error_text;
  std::array<char, CURL_ERROR_SIZE> error{};
};

std::size_t read_message(char* buffer, std::size_t size, std::size_t count, void* user) {
  auto& call = *static_cast<Call*>(user);
  const std::size_t n = std::min(size * count, call.message.size() - call.read_offset);
  std::copy_n(call.message.data() + call.read_offset, n, buffer);
  call.read_offset += n;
  return n;
}

// libcurl hands every reply line of the server to the header callback.
std::size_t read_reply_line(char* buffer, std::size_t size, std::size_t count, void* user) {
  auto& call = *static_cast<Call*>(user);
  std::string_view line(buffer, size * count);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) {
    line.remove_suffix(1);
  }
  const bool final_line = line.size() < 4 || line[3] != '-';
  if (line.size() > 4) {
    if (!call.reply_lines.empty()) {
      call.reply_lines.push_back(' ');
    }
    call.reply_lines += without_controls(line.substr(4));
    if (call.reply_lines.size() > kSmtpMaxReplyTextBytes) {
      call.reply_lines = std::string(utf8_cut(call.reply_lines, kSmtpMaxReplyTextBytes));
    }
  }
  if (final_line) {
    int code = 0;
    for (std::size_t i = 0; i < 3 && i < line.size(); ++i) {
      code = line[i] >= '0' && line[i] <= '9' ? code * 10 + (line[i] - '0') : -1000;
    }
    if (code >= 400 && code < 600) {
      call.error_code = code;
      call.error_text = std::move(call.reply_lines);
    } else if (code != 221) {
      call.error_code = 0;
      call.error_text.clear();
    }
    call.reply_lines.clear();
  }
  return size * count;
}

std::string smtp_url(const SmtpConfig& config) {
  const std::string host = is_ip_literal_host(config.host) ? "[" + config.host + "]" : config.host;
  return fmt::format("{}://{}:{}/{}", config.tls == SmtpTls::kImplicit ? "smtps" : "smtp", host,
                     config.port, config.ehlo_name);
}

}  // namespace

struct SmtpClient::Impl {
  Impl(SmtpConfig config_in, const Clock& clock_in)
      : config(std::move(config_in)), clock(clock_in), url(smtp_url(config)) {}

  // Any thread.
  void send(const messaging::EmailRequest& request, messaging::ProviderDone done);

  // I/O thread. When the loop stops: shuts every socket down, so that the transfers on them fail
  // rather than end their data (libcurl completes an upload it is made to remove).
  void shut_sockets();
  // libcurl's socket callbacks: every socket of the client is known, so that shut_sockets can
  // end the transfers on them.
  static curl_socket_t open_socket(void* impl, curlsocktype purpose, curl_sockaddr* address);
  static int close_socket(void* impl, curl_socket_t socket);

  const SmtpConfig config;
  const Clock& clock;
  const std::string url;

  // I/O thread only (and the loop's destructor, which closes the idle connections).
  std::set<curl_socket_t> sockets;  // open sockets, connected or not

  // Last, so that it is destroyed first: its cached connections close through close_socket.
  std::unique_ptr<net::CurlProvider> transfers;
};

Call::Call(SmtpClient::Impl& impl_in, messaging::ProviderDone done, SteadyTime deadline)
    : net::CurlRequest(*impl_in.transfers, std::move(done), deadline), impl(impl_in) {}

void SmtpClient::Impl::send(const messaging::EmailRequest& request, messaging::ProviderDone done) {
  Result<std::string> message = build_email(config, request, clock.wall_ms());
  if (!message.ok()) {
    transfers->fail_now(done, messaging::kEmailRejected, message.status().message());
    return;
  }
  auto call = std::make_shared<Call>(
      *this, std::move(done),
      std::chrono::steady_clock::now() + std::chrono::milliseconds(config.request_timeout_ms));
  call->message = std::move(message).value();
  call->message_id = smtp_message_id(request.idempotency_key, config.from_address);
  call->to = "<" + request.to + ">";
  transfers->submit(call);
}

Result<CURL*> Call::begin() {
  easy.reset(curl_easy_init());
  recipients.reset(curl_slist_append(nullptr, to.c_str()));
  if (!easy || !recipients) {
    return Status::unavailable("libcurl could not set up a transfer (out of memory)");
  }
  const auto remaining_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                deadline - std::chrono::steady_clock::now())
                                .count();
  CURL* handle = easy.get();
  const std::string from = "<" + impl.config.from_address + ">";
  bool ok = true;
  const auto set = [&](CURLoption option, auto value) {
    ok = ok && curl_easy_setopt(handle, option, value) == CURLE_OK;
  };
  set(CURLOPT_URL, impl.url.c_str());
  set(CURLOPT_PROTOCOLS_STR, "smtp,smtps");
  set(CURLOPT_NOSIGNAL, 1L);
  set(CURLOPT_ERRORBUFFER, error.data());
  const curl_usessl use_ssl =
      impl.config.tls == SmtpTls::kStartTls ? CURLUSESSL_ALL : CURLUSESSL_NONE;
  set(CURLOPT_USE_SSL, static_cast<long>(use_ssl));
  set(CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2));
  if (!impl.config.ca_file.empty()) {
    set(CURLOPT_CAINFO, impl.config.ca_file.c_str());
  }
  if (!impl.config.username.empty()) {
    set(CURLOPT_USERNAME, impl.config.username.c_str());
    set(CURLOPT_PASSWORD, impl.config.password.c_str());
  }
  set(CURLOPT_MAIL_FROM, from.c_str());  // copied by libcurl
  set(CURLOPT_MAIL_RCPT, recipients.get());
  set(CURLOPT_UPLOAD, 1L);
  // Announced as SIZE= in MAIL FROM when the server offers SIZE, so it can refuse early.
  set(CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(message.size()));
  set(CURLOPT_READFUNCTION, &read_message);
  set(CURLOPT_READDATA, this);
  set(CURLOPT_HEADERFUNCTION, &read_reply_line);
  set(CURLOPT_HEADERDATA, this);
  set(CURLOPT_CONNECTTIMEOUT_MS,
      static_cast<long>(
          std::min(impl.config.connect_timeout_ms, std::max<std::int64_t>(remaining_ms, 1))));
  set(CURLOPT_TIMEOUT_MS, static_cast<long>(std::max<std::int64_t>(remaining_ms, 1)));
  set(CURLOPT_MAXAGE_CONN, kSmtpMaxIdleConnectionSeconds);
  // Bounds each wait for a reply outside the transfer's own timeout (a QUIT at shutdown).
  set(CURLOPT_SERVER_RESPONSE_TIMEOUT,
      static_cast<long>((impl.config.request_timeout_ms + 999) / 1000));
  set(CURLOPT_OPENSOCKETFUNCTION, &SmtpClient::Impl::open_socket);
  set(CURLOPT_OPENSOCKETDATA, &impl);
  set(CURLOPT_CLOSESOCKETFUNCTION, &SmtpClient::Impl::close_socket);
  set(CURLOPT_CLOSESOCKETDATA, &impl);
  if (!ok) {
    return Status::unavailable("libcurl refused an SMTP option (built without SMTP or TLS?)");
  }
  return handle;
}

void Call::ended(CURLcode code) {
  if (code == CURLE_OK) {
    provider.finish(*this, ProviderResult::success(message_id));
    return;
  }
  long reply = 0;
  if (curl_easy_getinfo(easy.get(), CURLINFO_RESPONSE_CODE, &reply) != CURLE_OK) {
    reply = 0;
  }
  const std::string detail = error[0] != '\0'
                                 ? fmt::format("{} ({})", curl_easy_strerror(code), error.data())
                                 : std::string(curl_easy_strerror(code));
  // Failures of the connection itself, whatever the server said before.
  const bool transport = code == CURLE_OPERATION_TIMEDOUT || code == CURLE_COULDNT_CONNECT ||
                         code == CURLE_COULDNT_RESOLVE_HOST || code == CURLE_SSL_CONNECT_ERROR ||
                         code == CURLE_PEER_FAILED_VERIFICATION || code == CURLE_GOT_NOTHING;
  SmtpFailure failure = SmtpFailure::kTransport;
  if (transport) {
    failure = SmtpFailure::kTransport;
  } else if (code == CURLE_LOGIN_DENIED) {
    failure = SmtpFailure::kAuthRefused;
  } else if (code == CURLE_USE_SSL_FAILED) {
    failure = SmtpFailure::kStartTlsMissing;
  } else if (reply >= 400 && reply < 600) {
    failure = SmtpFailure::kReply;
  }
  const std::string_view text =
      error_code == reply ? std::string_view(error_text) : std::string_view();
  ProviderResult result = map_smtp_failure(failure, static_cast<int>(reply), text, detail);
  if (failure == SmtpFailure::kAuthRefused || failure == SmtpFailure::kStartTlsMissing ||
      (failure == SmtpFailure::kReply && result.error_type == messaging::kEmailUnavailable &&
       reply >= 500)) {
    // A configuration problem: every email waits (and is retried) until an operator fixes it.
    spdlog::error("smtp: {} — emails wait and are retried until this is fixed",
                  result.error_message);
  } else {
    spdlog::warn("smtp: email {} failed: {}", message_id, result.error_message);
  }
  provider.finish(*this, std::move(result));
}

void SmtpClient::Impl::shut_sockets() {
  // A transfer removed while it runs would be ended by libcurl as if it were complete: it sends
  // the end of the data (".") and waits for the reply, which could deliver a cut message. So the
  // transfers are made to fail first, by shutting their sockets down (idle connections too, so
  // that closing them does not wait for QUIT's reply), and the loop collects them as failures.
  for (const curl_socket_t socket : sockets) {
    ::shutdown(socket, SHUT_RDWR);
  }
}

curl_socket_t SmtpClient::Impl::open_socket(void* impl, curlsocktype, curl_sockaddr* address) {
  const curl_socket_t socket =
      ::socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
  if (socket != CURL_SOCKET_BAD) {
    static_cast<Impl*>(impl)->sockets.insert(socket);
  }
  return socket;
}

int SmtpClient::Impl::close_socket(void* impl, curl_socket_t socket) {
  static_cast<Impl*>(impl)->sockets.erase(socket);
  return ::close(socket);
}

Result<std::unique_ptr<SmtpClient>> SmtpClient::create(SmtpConfig config, const Clock& clock) {
  HERALD_RETURN_IF_ERROR(check_smtp_config(config));
  if (config.tls == SmtpTls::kNone) {
    spdlog::warn("smtp: TLS is off (tls = \"none\"): emails{} cross the network in clear to {}",
                 config.username.empty() ? "" : " and the SMTP password", config.host);
  }
  auto impl = std::make_unique<Impl>(std::move(config), clock);
  Impl& client = *impl;
  net::CurlMultiLoopOptions options;
  options.max_concurrent = client.config.max_concurrent;
  options.max_queued = client.config.max_queued;
  options.max_connections = static_cast<long>(client.config.max_concurrent);
  options.on_stop = [&client] { client.shut_sockets(); };
  options.stop_drain_ms = kShutdownDrainMs;
  net::CurlProviderWords words;
  words.error_type = messaging::kEmailUnavailable;
  words.stopped = "the SMTP client is stopped";
  words.full = fmt::format("the SMTP queue is full ({} emails wait for a connection)",
                           client.config.max_queued);
  words.expired = fmt::format("no connection to the SMTP server was free within {} ms",
                              client.config.request_timeout_ms);
  words.stopping = "the SMTP client is stopping";
  HERALD_ASSIGN_OR_RETURN(client.transfers,
                          net::CurlProvider::create(std::move(options), std::move(words)));
  return std::unique_ptr<SmtpClient>(new SmtpClient(std::move(impl)));
}

SmtpClient::SmtpClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

SmtpClient::~SmtpClient() {
  impl_->transfers->stop();
}

void SmtpClient::send(const messaging::EmailRequest& request, messaging::ProviderDone done) {
  impl_->send(request, std::move(done));
}

SmtpStats SmtpClient::stats() const {
  return impl_->transfers->stats();
}

}  // namespace herald::email
