#include "email/smtp_sink.h"

#include <fmt/format.h>
#include <openssl/evp.h>

#include <algorithm>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <utility>

#include "base/assert.h"
#include "net/tls_test_listener.h"

namespace herald::email::testing {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using asio::awaitable;
using tcp = asio::ip::tcp;

namespace {

// A command or data line, at most, in bytes (RFC 5321 allows 512 and 1000; a client's longer line
// closes the connection).
constexpr std::size_t kMaxLineBytes = std::size_t{64} * 1024;
constexpr char kServerName[] = "herald-smtp-sink";

struct Reply {
  int code = 0;
  std::string text;
};

// Standard base64 with padding, as AUTH uses; nullopt when malformed.
std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) {
    return std::nullopt;
  }
  std::string out(text.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(text.data()),
                                static_cast<int>(text.size()));
  if (n < 0) {
    return std::nullopt;
  }
  // EVP_DecodeBlock counts the padding as zero bytes.
  const auto padding = static_cast<std::size_t>(
      std::count(text.end() - std::min<std::size_t>(2, text.size()), text.end(), '='));
  out.resize(static_cast<std::size_t>(n) - padding);
  return out;
}

std::string upper(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return out;
}

// "<path>" after `prefix` (case-insensitive, e.g. "FROM:"), parameters after it ignored.
std::optional<std::string> parse_path(std::string_view argument, std::string_view prefix) {
  if (argument.size() < prefix.size() || upper(argument.substr(0, prefix.size())) != prefix) {
    return std::nullopt;
  }
  argument.remove_prefix(prefix.size());
  while (!argument.empty() && argument.front() == ' ') {
    argument.remove_prefix(1);
  }
  const std::size_t close = argument.find('>');
  if (argument.empty() || argument.front() != '<' || close == std::string_view::npos) {
    return std::nullopt;
  }
  return std::string(argument.substr(1, close - 1));
}

// The SIZE= parameter of a MAIL command (RFC 1870); 0 when absent or malformed.
std::size_t declared_size(std::string_view argument) {
  const std::string upper_argument = upper(argument);
  const std::size_t at = upper_argument.find(" SIZE=");
  if (at == std::string::npos) {
    return 0;
  }
  std::size_t size = 0;
  for (std::size_t i = at + 6; i < upper_argument.size() && upper_argument[i] >= '0' &&
                               upper_argument[i] <= '9' && size < kMaxLineBytes * 1024;
       ++i) {
    size = size * 10 + static_cast<std::size_t>(upper_argument[i] - '0');
  }
  return size;
}

}  // namespace

struct SmtpSink::Impl {
  explicit Impl(SmtpSinkOptions options_in) : options(std::move(options_in)) {}

  // The scripted answer for `stage`, if one is pending.
  std::optional<Reply> scripted(SmtpStage stage);
  std::int64_t delay() {
    const std::lock_guard lock(mu);
    return delay_ms;
  }
  void note_command(std::string verb) {
    const std::lock_guard lock(mu);
    commands.push_back(std::move(verb));
  }

  // Declared first so that it is destroyed last: the sessions' coroutine frames, destroyed with
  // its io_context, hold sockets and timers of its services.
  net::testing::TlsTestListener listener;
  asio::io_context& io = listener.io();
  const SmtpSinkOptions options;

  mutable std::mutex mu;
  std::map<SmtpStage, std::deque<Reply>> script;  // guarded by mu
  std::int64_t delay_ms = 0;                      // guarded by mu
  std::size_t drops = 0;                          // guarded by mu
  std::vector<SmtpSinkMessage> log;               // guarded by mu
  std::size_t connections = 0;                    // guarded by mu
  std::size_t open = 0;                           // guarded by mu
  std::size_t max_open = 0;                       // guarded by mu
  std::size_t auth_failures = 0;                  // guarded by mu
  std::vector<std::string> commands;              // guarded by mu
};

std::optional<Reply> SmtpSink::Impl::scripted(SmtpStage stage) {
  const std::lock_guard lock(mu);
  auto& pending = script[stage];
  if (pending.empty()) {
    return std::nullopt;
  }
  Reply reply = std::move(pending.front());
  pending.pop_front();
  return reply;
}

namespace {

// One client connection: its socket, TLS once started, and what the client said.
class Session {
 public:
  Session(SmtpSink::Impl& impl, tcp::socket socket, std::uint64_t id)
      : impl_(impl), socket_(std::move(socket)), timer_(impl.io), id_(id) {}

  // Serves the connection until QUIT, an error, or a fault that closes it.
  awaitable<void> run();

 private:
  awaitable<std::optional<std::string>> read_line();
  // Sends `lines` (each "code text" or "code-text"), after the configured delay.
  awaitable<bool> reply(std::string lines);  // by value: the coroutine runs later
  awaitable<bool> reply(int code, std::string_view text) {
    return reply(fmt::format("{} {}\r\n", code, text));
  }
  awaitable<bool> start_tls();
  awaitable<bool> ehlo(std::string_view verb, std::string_view argument);
  awaitable<bool> auth(std::string_view argument);
  awaitable<bool> data();
  // One step of an AUTH exchange: the client's decoded answer, taken from `initial` (the
  // command's initial response) when set, else read after a 334 `prompt`. nullopt when the
  // client canceled or sent garbage (answered 501) or the connection is gone.
  awaitable<std::optional<std::string>> auth_step(std::optional<std::string>& initial,
                                                  std::string_view prompt);
  // The (decoded) credentials of an AUTH command; nullopt when the client gave up or broke the
  // exchange (already answered).
  awaitable<std::optional<std::pair<std::string, std::string>>> credentials(
      std::string_view mechanism, std::string_view initial);
  void reset_transaction() {
    mail_from_.reset();
    rcpt_to_.clear();
  }
  [[nodiscard]] bool auth_offered() const {
    return !impl_.options.username.empty() && (tls_ != nullptr || impl_.options.allow_plain_auth);
  }

  SmtpSink::Impl& impl_;
  tcp::socket socket_;
  std::unique_ptr<ssl::stream<tcp::socket&>> tls_;
  asio::steady_timer timer_;
  const std::uint64_t id_;
  std::string in_;
  std::string ehlo_name_;
  std::string auth_user_;
  std::string auth_mechanism_;
  std::optional<std::string> mail_from_;
  std::vector<std::string> rcpt_to_;
};

awaitable<std::optional<std::string>> Session::read_line() {
  boost::system::error_code ec;
  auto buffer = asio::dynamic_buffer(in_, kMaxLineBytes);
  std::size_t n = 0;
  if (tls_) {
    n = co_await asio::async_read_until(*tls_, buffer, "\r\n",
                                        asio::redirect_error(asio::use_awaitable, ec));
  } else {
    n = co_await asio::async_read_until(socket_, buffer, "\r\n",
                                        asio::redirect_error(asio::use_awaitable, ec));
  }
  if (ec) {
    co_return std::nullopt;
  }
  std::string line = in_.substr(0, n - 2);
  in_.erase(0, n);
  co_return line;
}

awaitable<bool> Session::reply(std::string lines) {
  boost::system::error_code ec;
  if (const std::int64_t delay_ms = impl_.delay(); delay_ms > 0) {
    timer_.expires_after(std::chrono::milliseconds(delay_ms));
    co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  if (tls_) {
    co_await asio::async_write(*tls_, asio::buffer(lines),
                               asio::redirect_error(asio::use_awaitable, ec));
  } else {
    co_await asio::async_write(socket_, asio::buffer(lines),
                               asio::redirect_error(asio::use_awaitable, ec));
  }
  co_return !ec;
}

awaitable<bool> Session::start_tls() {
  tls_ = std::make_unique<ssl::stream<tcp::socket&>>(socket_, impl_.listener.tls());
  in_.clear();  // RFC 3207: nothing the client sent before TLS counts
  boost::system::error_code ec;
  co_await tls_->async_handshake(ssl::stream_base::server,
                                 asio::redirect_error(asio::use_awaitable, ec));
  co_return !ec;
}

awaitable<bool> Session::ehlo(std::string_view verb, std::string_view argument) {
  ehlo_name_ = std::string(argument);
  reset_transaction();
  if (verb == "HELO") {
    co_return co_await reply(250, kServerName);
  }
  std::vector<std::string> lines = {fmt::format("{} greets {}", kServerName, argument),
                                    fmt::format("SIZE {}", impl_.options.max_message_bytes),
                                    "8BITMIME", "ENHANCEDSTATUSCODES"};
  if (!tls_ && impl_.options.offer_starttls) {
    lines.emplace_back("STARTTLS");
  }
  if (auth_offered()) {
    std::string mechanisms = "AUTH";
    for (const std::string& mechanism : impl_.options.auth_mechanisms) {
      mechanisms += " " + mechanism;
    }
    lines.push_back(std::move(mechanisms));
  }
  std::string text;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    text += fmt::format("250{}{}\r\n", i + 1 == lines.size() ? ' ' : '-', lines[i]);
  }
  co_return co_await reply(text);
}

awaitable<std::optional<std::string>> Session::auth_step(std::optional<std::string>& initial,
                                                         std::string_view prompt) {
  std::string encoded;
  if (initial) {
    encoded = std::move(*initial);
    initial.reset();
  } else {
    if (!co_await reply(fmt::format("334 {}\r\n", prompt))) {
      co_return std::nullopt;
    }
    std::optional<std::string> line = co_await read_line();
    if (!line) {
      co_return std::nullopt;
    }
    encoded = std::move(*line);
  }
  // "=" is an empty initial response (RFC 4954 section 4).
  std::optional<std::string> decoded =
      encoded == "=" ? std::optional<std::string>(std::string()) : base64_decode(encoded);
  if (encoded == "*" || !decoded) {
    co_await reply(501, "5.5.2 AUTH canceled or malformed");
    co_return std::nullopt;
  }
  co_return decoded;
}

awaitable<std::optional<std::pair<std::string, std::string>>> Session::credentials(
    std::string_view mechanism, std::string_view initial) {
  std::optional<std::string> pending;
  if (!initial.empty()) {
    pending = std::string(initial);
  }
  if (mechanism == "PLAIN") {
    std::optional<std::string> message = co_await auth_step(pending, "");
    if (!message) {
      co_return std::nullopt;
    }
    // authzid NUL authcid NUL password
    const std::size_t first = message->find('\0');
    const std::size_t second =
        first == std::string::npos ? std::string::npos : message->find('\0', first + 1);
    if (second == std::string::npos) {
      co_await reply(501, "5.5.2 malformed PLAIN credentials");
      co_return std::nullopt;
    }
    co_return std::pair{message->substr(first + 1, second - first - 1),
                        message->substr(second + 1)};
  }
  std::optional<std::string> user = co_await auth_step(pending, "VXNlcm5hbWU6");  // "Username:"
  if (!user) {
    co_return std::nullopt;
  }
  std::optional<std::string> password = co_await auth_step(pending, "UGFzc3dvcmQ6");  // "Password:"
  if (!password) {
    co_return std::nullopt;
  }
  co_return std::pair{std::move(*user), std::move(*password)};
}

awaitable<bool> Session::auth(std::string_view argument) {
  if (!auth_offered() || !auth_user_.empty()) {
    co_return co_await reply(503, "5.5.1 AUTH not available now");
  }
  const std::size_t space = argument.find(' ');
  const std::string mechanism = upper(argument.substr(0, space));
  const std::string_view initial =
      space == std::string_view::npos ? std::string_view() : argument.substr(space + 1);
  const auto& offered = impl_.options.auth_mechanisms;
  if ((mechanism != "PLAIN" && mechanism != "LOGIN") ||
      std::find(offered.begin(), offered.end(), mechanism) == offered.end()) {
    co_return co_await reply(504, "5.5.4 mechanism not supported");
  }
  std::optional<std::pair<std::string, std::string>> given =
      co_await credentials(mechanism, initial);
  if (!given) {
    co_return true;  // answered already, or the connection is gone (the next read says which)
  }
  if (std::optional<Reply> forced = impl_.scripted(SmtpStage::kAuth)) {
    co_return co_await reply(forced->code, forced->text);
  }
  if (given->first != impl_.options.username || given->second != impl_.options.password) {
    {
      const std::lock_guard lock(impl_.mu);
      ++impl_.auth_failures;
    }
    co_return co_await reply(535, "5.7.8 Authentication credentials invalid");
  }
  auth_user_ = given->first;
  auth_mechanism_ = mechanism;
  co_return co_await reply(235, "2.7.0 Authentication successful");
}

awaitable<bool> Session::data() {
  if (!co_await reply(354, "End data with <CR><LF>.<CR><LF>")) {
    co_return false;
  }
  std::string body;
  bool first_line = true;
  for (;;) {
    std::optional<std::string> line = co_await read_line();
    if (!line) {
      co_return false;
    }
    if (first_line) {
      first_line = false;
      const std::lock_guard lock(impl_.mu);
      if (impl_.drops > 0) {
        --impl_.drops;
        co_return false;  // closed in the middle of the data, no answer
      }
    }
    if (*line == ".") {
      break;
    }
    std::string_view text = *line;
    if (!text.empty() && text.front() == '.') {
      text.remove_prefix(1);  // RFC 5321 section 4.5.2: the client doubled a leading dot
    }
    if (body.size() <= impl_.options.max_message_bytes) {
      body.append(text).append("\r\n");
    }
  }
  if (body.size() > impl_.options.max_message_bytes) {
    reset_transaction();
    co_return co_await reply(552, "5.3.4 message too big");
  }
  if (std::optional<Reply> forced = impl_.scripted(SmtpStage::kDataEnd)) {
    reset_transaction();
    co_return co_await reply(forced->code, forced->text);
  }
  std::size_t number = 0;
  SmtpSinkMessage message;
  message.connection = id_;
  message.tls = tls_ != nullptr;
  message.auth_user = auth_user_;
  message.auth_mechanism = auth_mechanism_;
  message.ehlo_name = ehlo_name_;
  message.mail_from = *mail_from_;
  message.rcpt_to = rcpt_to_;
  message.data = std::move(body);
  if (impl_.options.on_message) impl_.options.on_message(message);
  {
    const std::lock_guard lock(impl_.mu);
    impl_.log.push_back(std::move(message));
    number = impl_.log.size();
  }
  reset_transaction();
  co_return co_await reply(250, fmt::format("2.0.0 OK queued as {}", number));
}

awaitable<void> Session::run() {
  if (impl_.options.implicit_tls && !co_await start_tls()) {
    co_return;
  }
  if (std::optional<Reply> forced = impl_.scripted(SmtpStage::kGreeting)) {
    co_await reply(forced->code, forced->text);
    co_return;
  }
  if (!co_await reply(220, fmt::format("{} ESMTP ready", kServerName))) {
    co_return;
  }
  for (;;) {
    std::optional<std::string> line = co_await read_line();
    if (!line) {
      co_return;
    }
    const std::size_t space = line->find(' ');
    const std::string verb = upper(std::string_view(*line).substr(0, space));
    const std::string_view argument =
        space == std::string::npos ? std::string_view() : std::string_view(*line).substr(space + 1);
    impl_.note_command(verb);
    const auto stage_of = [](const std::string& v) -> std::optional<SmtpStage> {
      if (v == "EHLO" || v == "HELO") return SmtpStage::kEhlo;
      if (v == "STARTTLS") return SmtpStage::kStartTls;
      if (v == "MAIL") return SmtpStage::kMail;
      if (v == "RCPT") return SmtpStage::kRcpt;
      if (v == "DATA") return SmtpStage::kData;
      return std::nullopt;
    };
    std::optional<Reply> forced;
    if (const std::optional<SmtpStage> stage = stage_of(verb)) {
      forced = impl_.scripted(*stage);
    }
    bool ok = true;
    if (forced) {
      if (verb == "MAIL" || verb == "RCPT" || verb == "DATA") {
        reset_transaction();
      }
      ok = co_await reply(forced->code, forced->text) && forced->code != 421;
    } else if (verb == "EHLO" || verb == "HELO") {
      ok = co_await ehlo(verb, argument);
    } else if (verb == "STARTTLS") {
      if (tls_ || !impl_.options.offer_starttls) {
        ok = co_await reply(502, "5.5.1 STARTTLS not offered");
      } else {
        ok = co_await reply(220, "2.0.0 Ready to start TLS") && co_await start_tls();
        ehlo_name_.clear();
        auth_user_.clear();
        reset_transaction();
      }
    } else if (verb == "AUTH") {
      ok = co_await auth(argument);
    } else if (verb == "MAIL") {
      std::optional<std::string> from = parse_path(argument, "FROM:");
      if (ehlo_name_.empty()) {
        ok = co_await reply(503, "5.5.1 EHLO first");
      } else if (!impl_.options.username.empty() && auth_user_.empty()) {
        ok = co_await reply(530, "5.7.0 Authentication required");
      } else if (!from) {
        ok = co_await reply(501, "5.5.4 syntax: MAIL FROM:<address>");
      } else if (declared_size(argument) > impl_.options.max_message_bytes) {
        ok = co_await reply(552, "5.3.4 message size exceeds fixed limit");
      } else {
        reset_transaction();
        mail_from_ = std::move(from);
        ok = co_await reply(250, "2.1.0 OK");
      }
    } else if (verb == "RCPT") {
      std::optional<std::string> to = parse_path(argument, "TO:");
      if (!mail_from_) {
        ok = co_await reply(503, "5.5.1 MAIL first");
      } else if (!to) {
        ok = co_await reply(501, "5.5.4 syntax: RCPT TO:<address>");
      } else {
        rcpt_to_.push_back(std::move(*to));
        ok = co_await reply(250, "2.1.5 OK");
      }
    } else if (verb == "DATA") {
      ok = rcpt_to_.empty() ? co_await reply(503, "5.5.1 RCPT first") : co_await data();
    } else if (verb == "RSET") {
      reset_transaction();
      ok = co_await reply(250, "2.0.0 OK");
    } else if (verb == "NOOP") {
      ok = co_await reply(250, "2.0.0 OK");
    } else if (verb == "QUIT") {
      co_await reply(221, "2.0.0 Bye");
      co_return;
    } else {
      ok = co_await reply(502, "5.5.2 command not recognized");
    }
    if (!ok) {
      co_return;
    }
  }
}

// Accepts connections until the acceptor is closed; each runs as its own coroutine.
awaitable<void> accept_loop(SmtpSink::Impl& impl) {
  for (;;) {
    boost::system::error_code ec;
    tcp::socket socket = co_await impl.listener.acceptor().async_accept(
        asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      co_return;
    }
    std::uint64_t id = 0;
    {
      const std::lock_guard lock(impl.mu);
      id = ++impl.connections;
      impl.max_open = std::max(impl.max_open, ++impl.open);
    }
    auto session = std::make_shared<Session>(impl, std::move(socket), id);
    asio::co_spawn(
        impl.io,
        [](std::shared_ptr<Session> owned, SmtpSink::Impl& sink) -> awaitable<void> {
          // The session lives in this frame (a parameter, not a capture) until it ends.
          co_await owned->run();
          const std::lock_guard lock(sink.mu);
          --sink.open;
        }(std::move(session), impl),
        asio::detached);
  }
}

}  // namespace

Result<std::unique_ptr<SmtpSink>> SmtpSink::start(SmtpSinkOptions options) {
  auto impl = std::make_shared<Impl>(std::move(options));
  HERALD_RETURN_IF_ERROR(impl->listener.open(kServerName));
  asio::co_spawn(impl->io, accept_loop(*impl), asio::detached);
  impl->listener.run();
  return std::unique_ptr<SmtpSink>(new SmtpSink(std::move(impl)));
}

SmtpSink::SmtpSink(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

SmtpSink::~SmtpSink() {
  impl_->listener.stop();
}

std::uint16_t SmtpSink::port() const {
  return impl_->listener.port();
}

const std::string& SmtpSink::ca_file() const {
  return impl_->listener.ca_file();
}

void SmtpSink::fail_next(SmtpStage stage, std::size_t count, int code, const std::string& text) {
  const std::lock_guard lock(impl_->mu);
  for (std::size_t i = 0; i < count; ++i) {
    impl_->script[stage].push_back(Reply{code, text});
  }
}

void SmtpSink::set_delay_ms(std::int64_t delay_ms) {
  const std::lock_guard lock(impl_->mu);
  impl_->delay_ms = delay_ms;
}

void SmtpSink::drop_in_data(std::size_t count) {
  const std::lock_guard lock(impl_->mu);
  impl_->drops += count;
}

std::vector<SmtpSinkMessage> SmtpSink::messages() const {
  const std::lock_guard lock(impl_->mu);
  return impl_->log;
}

std::size_t SmtpSink::message_count() const {
  const std::lock_guard lock(impl_->mu);
  return impl_->log.size();
}

std::size_t SmtpSink::connections() const {
  const std::lock_guard lock(impl_->mu);
  return impl_->connections;
}

std::size_t SmtpSink::open_sessions() const {
  const std::lock_guard lock(impl_->mu);
  return impl_->open;
}

std::size_t SmtpSink::max_open_sessions() const {
  const std::lock_guard lock(impl_->mu);
  return impl_->max_open;
}

std::size_t SmtpSink::auth_failures() const {
  const std::lock_guard lock(impl_->mu);
  return impl_->auth_failures;
}

std::vector<std::string> SmtpSink::commands() const {
  const std::lock_guard lock(impl_->mu);
  return impl_->commands;
}

}  // namespace herald::email::testing
