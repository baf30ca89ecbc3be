#include "email/smtp.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "email/smtp_sink.h"

namespace herald::email {
namespace {

using messaging::EmailRequest;
using messaging::kEmailRejected;
using messaging::kEmailUnavailable;
using messaging::ProviderResult;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::SmtpSink;
using testing::SmtpSinkMessage;
using testing::SmtpSinkOptions;
using testing::SmtpStage;

constexpr char kUser[] = "herald-mailer";
constexpr char kPassword[] = "correct horse battery staple";
// How long a test waits for an outcome at most before it fails.
constexpr auto kWait = std::chrono::seconds(10);

// ---------------------------------------------------------------------------------------------
// Decoding what the client sent, the way a mail reader would.

std::string base64_decode(std::string_view text) {
  std::string out(text.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(text.data()),
                                static_cast<int>(text.size()));
  EXPECT_GE(n, 0);
  std::size_t padding = 0;
  for (std::size_t i = text.size(); i > 0 && text[i - 1] == '='; --i) {
    ++padding;
  }
  out.resize(static_cast<std::size_t>(std::max(n, 0)) - padding);
  return out;
}

std::string qp_decode(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '=') {
      out.push_back(text[i]);
    } else if (text.substr(i + 1, 2) == "\r\n") {
      i += 2;  // soft line break
    } else {
      out.push_back(static_cast<char>(std::stoi(std::string(text.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    }
  }
  return out;
}

// An unstructured header value with its RFC 2047 words decoded and its folds removed.
std::string decode_words(std::string_view value) {
  std::string out;
  while (!value.empty()) {
    const std::size_t start = value.find("=?UTF-8?B?");
    if (start == std::string_view::npos) {
      out.append(value);
      break;
    }
    const std::string_view between = value.substr(0, start);
    if (between.find_first_not_of(" \r\n") != std::string_view::npos) {
      out.append(between);  // whitespace between two encoded words is not text
    }
    const std::size_t end = value.find("?=", start + 10);
    out += base64_decode(value.substr(start + 10, end - start - 10));
    value.remove_prefix(end + 2);
  }
  return out;
}

struct Part {
  std::map<std::string, std::string> headers;  // unfolded, by name as written
  std::string body;
};

Part parse_part(std::string_view text) {
  Part part;
  const std::size_t split = text.find("\r\n\r\n");
  std::string_view head = text.substr(0, split);
  part.body = std::string(text.substr(split + 4));
  std::string name;
  while (!head.empty()) {
    const std::size_t eol = std::min(head.find("\r\n"), head.size());
    const std::string_view line = head.substr(0, eol);
    if (line.front() == ' ' || line.front() == '\t') {
      part.headers[name] += "\r\n" + std::string(line);
    } else {
      const std::size_t colon = line.find(':');
      name = std::string(line.substr(0, colon));
      part.headers[name] = std::string(line.substr(colon + 2));
    }
    head.remove_prefix(std::min(eol + 2, head.size()));
  }
  return part;
}

struct Email {
  Part message;
  std::string plain;  // decoded
  std::string html;   // decoded
};

Email parse_email(const std::string& data) {
  Email email;
  email.message = parse_part(data);
  const std::string& type = email.message.headers["Content-Type"];
  const std::size_t b = type.find("boundary=\"");
  const std::string boundary = "--" + type.substr(b + 10, type.find('"', b + 10) - b - 10);
  std::string_view body = email.message.body;
  std::vector<std::string_view> chunks;
  for (std::size_t at = body.find(boundary); at != std::string_view::npos;) {
    const std::size_t next = body.find(boundary, at + boundary.size());
    if (next == std::string_view::npos) {
      break;
    }
    chunks.push_back(body.substr(at + boundary.size() + 2, next - at - boundary.size() - 4));
    at = next;
  }
  for (const std::string_view chunk : chunks) {
    Part part = parse_part(chunk);
    EXPECT_EQ(part.headers["Content-Transfer-Encoding"], "quoted-printable");
    const std::string decoded = qp_decode(part.body);
    if (part.headers["Content-Type"] == "text/plain; charset=UTF-8") {
      email.plain = decoded;
    } else if (part.headers["Content-Type"] == "text/html; charset=UTF-8") {
      email.html = decoded;
    } else {
      ADD_FAILURE() << "unexpected part " << part.headers["Content-Type"];
    }
  }
  return email;
}

// ---------------------------------------------------------------------------------------------
// Outcomes of sends, gathered from the client's thread.

class Outcomes {
 public:
  messaging::ProviderDone callback(std::size_t index) {
    return [this, index](ProviderResult result) {
      const std::lock_guard lock(mu_);
      results_[index].push_back(std::move(result));
      cv_.notify_all();
    };
  }
  // Waits until `count` sends have answered; false on timeout.
  bool wait(std::size_t count) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, kWait, [&] { return results_.size() >= count; });
  }
  // The only answer of send `index` (the test fails when there are several).
  ProviderResult only(std::size_t index) {
    const std::lock_guard lock(mu_);
    EXPECT_EQ(results_[index].size(), 1U) << "send " << index;
    return results_[index].empty() ? ProviderResult{} : results_[index].front();
  }
  std::size_t answered() {
    const std::lock_guard lock(mu_);
    return results_.size();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::size_t, std::vector<ProviderResult>> results_;
};

EmailRequest request(const std::string& key, const std::string& preview = "see you at 6") {
  EmailRequest r;
  r.idempotency_key = key;
  r.to = "carol@example.org";
  r.subject = "You have an unread message in team";
  r.body = preview;
  r.user_id = "carol";
  r.conversation_id = "team";
  r.seq = 7;
  r.sender_user_id = "alice";
  return r;
}

class SmtpTest : public ::testing::Test {
 protected:
  // STARTTLS offered, AUTH PLAIN and LOGIN with kUser / kPassword.
  static SmtpSinkOptions auth_options() {
    SmtpSinkOptions options;
    options.username = kUser;
    options.password = kPassword;
    return options;
  }
  void start_sink(SmtpSinkOptions options) {
    Result<std::unique_ptr<SmtpSink>> started = SmtpSink::start(std::move(options));
    ASSERT_TRUE(started.ok()) << started.status().to_string();
    sink_ = std::move(started).value();
  }
  void start_sink() { start_sink(auth_options()); }
  [[nodiscard]] SmtpConfig config() const {
    SmtpConfig c;
    c.host = "127.0.0.1";
    c.port = sink_->port();
    c.ca_file = sink_->ca_file();
    c.username = kUser;
    c.password = kPassword;
    c.from_address = "notify@herald.example";
    c.from_name = "Herald";
    c.ehlo_name = "herald.example";
    c.request_timeout_ms = 5'000;
    return c;
  }
  void start_client(const SmtpConfig& c) {
    Result<std::unique_ptr<SmtpClient>> created = SmtpClient::create(c, clock_);
    ASSERT_TRUE(created.ok()) << created.status().to_string();
    client_ = std::move(created).value();
  }
  // Sends `r` and waits for its answer.
  ProviderResult send_one(const EmailRequest& r) {
    Outcomes outcomes;
    client_->send(r, outcomes.callback(0));
    EXPECT_TRUE(outcomes.wait(1));
    return outcomes.only(0);
  }

  ManualClock clock_;
  std::unique_ptr<SmtpSink> sink_;
  std::unique_ptr<SmtpClient> client_;
};

// ---------------------------------------------------------------------------------------------
// The message format, without I/O.

TEST(SmtpFormatTest, MessageIdIsStableForOneKeyAndDistinctBetweenKeys) {
  const std::string id = smtp_message_id("delivery/team/7/carol#email", "notify@herald.example");
  EXPECT_EQ(id, smtp_message_id("delivery/team/7/carol#email", "notify@herald.example"));
  EXPECT_NE(id, smtp_message_id("delivery/team/8/carol#email", "notify@herald.example"));
  EXPECT_THAT(id, ::testing::MatchesRegex("<[0-9a-f]{32}@herald\\.example>"));
  EXPECT_THAT(smtp_message_id("k", "no-domain"), HasSubstr("@herald.invalid>"));
}

TEST(SmtpFormatTest, DateIsRfc5322InUtc) {
  EXPECT_EQ(rfc5322_date(ManualClock::kWallEpochMs), "Thu, 01 Jan 2026 00:00:00 +0000");
  // RFC 5322's example "Fri, 21 Nov 1997 09:55:06 -0600", in UTC.
  EXPECT_EQ(rfc5322_date(880'127'706'999), "Fri, 21 Nov 1997 15:55:06 +0000");
}

TEST(SmtpFormatTest, AsciiSubjectStaysPlainAndOtherTextIsEncodedInWholeCharacters) {
  EXPECT_EQ(encode_header_text("You have an unread message", 69), "You have an unread message");
  // CR and LF would end the header: they become spaces.
  EXPECT_EQ(encode_header_text("a\r\nBcc: x@y", 69), "a  Bcc: x@y");
  const std::string text = "Nouveau message de Zoë dans « café » ☕ — " + std::string(60, 'x');
  const std::string encoded = encode_header_text(text, 69);
  EXPECT_THAT(encoded, HasSubstr("=?UTF-8?B?"));
  EXPECT_EQ(decode_words(encoded), text);
  std::size_t start = 0;
  while (start < encoded.size()) {
    const std::size_t end = std::min(encoded.find("\r\n ", start), encoded.size());
    const std::string word = encoded.substr(start, end - start);
    EXPECT_LE(word.size(), 75U);
    // Each word decodes alone to whole characters: no word ends inside a UTF-8 sequence.
    const std::string alone = decode_words(word);
    EXPECT_NE(static_cast<unsigned char>(alone.back()) & 0xc0, 0xc0U);
    start = end + 3;
  }
  // Text that looks like an encoded word is encoded, so that it is shown as written.
  EXPECT_THAT(encode_header_text("=?UTF-8?B?eA==?=", 69), HasSubstr("=?UTF-8?B?PT9"));
}

TEST(SmtpFormatTest, QuotedPrintableKeepsLinesShortAndRoundTrips) {
  const std::string text = "plain line\n" + std::string(200, 'a') + "\n" +
                           "ends with space \nends with tab\t\r\n= equals =\n" +
                           std::string(40, '\xe2') + "€ü☕ and more words after them\n.dot\n";
  const std::string encoded = quoted_printable(text);
  std::string expected;  // the text with CRLF line breaks
  for (const char c : text) {
    if (c == '\n' && (expected.empty() || expected.back() != '\r')) {
      expected += "\r";
    }
    expected.push_back(c);
  }
  EXPECT_EQ(qp_decode(encoded), expected);
  std::size_t start = 0;
  while (start < encoded.size()) {
    const std::size_t end = std::min(encoded.find("\r\n", start), encoded.size());
    const std::string line = encoded.substr(start, end - start);
    EXPECT_LE(line.size(), 76U) << line;
    EXPECT_TRUE(line.empty() || (line.back() != ' ' && line.back() != '\t')) << line;
    for (const char c : line) {
      EXPECT_TRUE(c >= ' ' && c <= '~') << line;
    }
    start = end + 2;
  }
  EXPECT_THAT(encoded, HasSubstr("=3D equals =3D"));
  EXPECT_THAT(encoded, HasSubstr("ends with space=20\r\n"));
}

TEST(SmtpFormatTest, HtmlEscapeReplacesMarkup) {
  EXPECT_EQ(html_escape("<b>\"hi\" & 'bye'</b>"),
            "&lt;b&gt;&quot;hi&quot; &amp; &#39;bye&#39;&lt;/b&gt;");
}

TEST(SmtpFormatTest, CheckAddressRefusesWhatWouldBreakAHeaderOrAPath) {
  EXPECT_TRUE(check_address("carol+team@mail.example.org").ok());
  for (const std::string bad :
       {"", "carol", "@example.org", "carol@", "a@b@c", "carol@example.org\r\nBcc: x@y",
        "carol smith@example.org", "<carol@example.org>", "carol@example..org", "zoë@example.org",
        "carol@example.org>"}) {
    EXPECT_FALSE(check_address(bad).ok()) << bad;
  }
  EXPECT_FALSE(check_address(std::string(250, 'a') + "@b.org").ok());
}

TEST(SmtpFormatTest, ConfigurationIsCheckedAndTlsModeIsParsed) {
  SmtpConfig good;
  good.host = "smtp.example.org";
  good.from_address = "notify@example.org";
  EXPECT_TRUE(check_smtp_config(good).ok());
  EXPECT_EQ(good.tls, SmtpTls::kStartTls);  // required unless configured otherwise
  const auto refused = [&](auto change) {
    SmtpConfig c = good;
    change(c);
    return !check_smtp_config(c).ok();
  };
  EXPECT_TRUE(refused([](SmtpConfig& c) { c.host.clear(); }));
  EXPECT_TRUE(refused([](SmtpConfig& c) { c.host = "smtp.example.org/x"; }));
  EXPECT_TRUE(refused([](SmtpConfig& c) { c.from_address = "notify"; }));
  EXPECT_TRUE(refused([](SmtpConfig& c) { c.ehlo_name = "bad name"; }));
  EXPECT_TRUE(refused([](SmtpConfig& c) { c.request_timeout_ms = 0; }));
  EXPECT_TRUE(refused([](SmtpConfig& c) { c.max_concurrent = 0; }));
  EXPECT_TRUE(refused([](SmtpConfig& c) { c.max_concurrent = kSmtpMaxConcurrent + 1; }));
  EXPECT_TRUE(refused([](SmtpConfig& c) { c.max_queued = kSmtpMaxQueued + 1; }));
  SmtpConfig secret = good;
  secret.password = "hunter2-secret";
  secret.from_address = "bad";
  EXPECT_THAT(check_smtp_config(secret).message(), Not(HasSubstr("hunter2")));

  EXPECT_EQ(parse_smtp_tls("starttls").value(), SmtpTls::kStartTls);
  EXPECT_EQ(parse_smtp_tls("tls").value(), SmtpTls::kImplicit);
  EXPECT_EQ(parse_smtp_tls("none").value(), SmtpTls::kNone);
  EXPECT_FALSE(parse_smtp_tls("STARTTLS").ok());
  EXPECT_FALSE(parse_smtp_tls("").ok());
  EXPECT_EQ(smtp_tls_name(SmtpTls::kImplicit), "tls");
}

TEST(SmtpFormatTest, FailureTableSeparatesRetryableFromPermanent) {
  const auto type = [](SmtpFailure failure, int code) {
    return map_smtp_failure(failure, code, "server text", "libcurl detail").error_type;
  };
  EXPECT_EQ(type(SmtpFailure::kReply, 421), kEmailUnavailable);
  EXPECT_EQ(type(SmtpFailure::kReply, 451), kEmailUnavailable);
  EXPECT_EQ(type(SmtpFailure::kReply, 452), kEmailUnavailable);
  EXPECT_EQ(type(SmtpFailure::kReply, 550), kEmailRejected);
  EXPECT_EQ(type(SmtpFailure::kReply, 552), kEmailRejected);
  EXPECT_EQ(type(SmtpFailure::kReply, 554), kEmailRejected);
  for (const int auth : {530, 534, 535, 538}) {
    EXPECT_EQ(type(SmtpFailure::kReply, auth), kEmailUnavailable) << auth;
  }
  EXPECT_EQ(type(SmtpFailure::kAuthRefused, 535), kEmailUnavailable);
  EXPECT_EQ(type(SmtpFailure::kStartTlsMissing, 250), kEmailUnavailable);
  EXPECT_EQ(type(SmtpFailure::kTransport, 0), kEmailUnavailable);
  const ProviderResult rejected =
      map_smtp_failure(SmtpFailure::kReply, 550, "5.1.1 no such user", "");
  EXPECT_FALSE(rejected.ok);
  EXPECT_THAT(rejected.error_message, HasSubstr("550 5.1.1 no such user"));
}

TEST(SmtpFormatTest, BuildEmailRefusesAMalformedRecipient) {
  SmtpConfig c;
  c.from_address = "notify@herald.example";
  EmailRequest r = request("k");
  r.to = "carol@example.org\r\nBcc: eve@example.org";
  EXPECT_FALSE(build_email(c, r, 0).ok());
}

// ---------------------------------------------------------------------------------------------
// Over a real SMTP server.

TEST_F(SmtpTest, SendsOneMultipartEmailOverStartTlsWithAuth) {
  start_sink();
  start_client(config());
  const ProviderResult result =
      send_one(request("delivery/team/7/carol#1", "<b>6pm</b> & \"bring\" it"));
  ASSERT_TRUE(result.ok) << result.error_message;
  EXPECT_EQ(result.provider_id,
            smtp_message_id("delivery/team/7/carol#1", "notify@herald.example"));

  const std::vector<SmtpSinkMessage> messages = sink_->messages();
  ASSERT_EQ(messages.size(), 1U);
  const SmtpSinkMessage& m = messages[0];
  EXPECT_TRUE(m.tls);
  EXPECT_EQ(m.auth_user, kUser);
  EXPECT_EQ(m.ehlo_name, "herald.example");
  EXPECT_EQ(m.mail_from, "notify@herald.example");
  EXPECT_EQ(m.rcpt_to, std::vector<std::string>{"carol@example.org"});
  const std::vector<std::string> commands = sink_->commands();
  EXPECT_EQ(std::vector<std::string>(commands.begin(), commands.begin() + 3),
            (std::vector<std::string>{"EHLO", "STARTTLS", "EHLO"}));

  Email email = parse_email(m.data);
  auto& headers = email.message.headers;
  EXPECT_EQ(headers["From"], "\"Herald\" <notify@herald.example>");
  EXPECT_EQ(headers["To"], "carol@example.org");
  EXPECT_EQ(headers["Subject"], "You have an unread message in team");
  EXPECT_EQ(headers["Date"], "Thu, 01 Jan 2026 00:00:00 +0000");
  EXPECT_EQ(headers["Message-ID"], result.provider_id);
  EXPECT_EQ(headers["MIME-Version"], "1.0");
  EXPECT_EQ(headers["Auto-Submitted"], "auto-generated");
  EXPECT_THAT(headers["Content-Type"], HasSubstr("multipart/alternative; boundary="));
  EXPECT_THAT(email.plain, HasSubstr("New message from alice in team:"));
  EXPECT_THAT(email.plain, HasSubstr("<b>6pm</b> & \"bring\" it"));
  EXPECT_THAT(email.plain, HasSubstr("number 7 in team"));
  EXPECT_THAT(email.html, HasSubstr("<strong>alice</strong> in <strong>team</strong>"));
  EXPECT_THAT(email.html, HasSubstr("&lt;b&gt;6pm&lt;/b&gt; &amp; &quot;bring&quot; it"));
  EXPECT_THAT(email.html, Not(HasSubstr("<b>6pm")));
}

TEST_F(SmtpTest, EveryRetryOfOneSendCarriesTheSameMessageId) {
  start_sink();
  start_client(config());
  ASSERT_TRUE(send_one(request("key-1")).ok);
  ASSERT_TRUE(send_one(request("key-1")).ok);
  ASSERT_TRUE(send_one(request("key-2")).ok);
  const std::vector<SmtpSinkMessage> messages = sink_->messages();
  ASSERT_EQ(messages.size(), 3U);
  const std::string first = parse_email(messages[0].data).message.headers["Message-ID"];
  EXPECT_EQ(parse_email(messages[1].data).message.headers["Message-ID"], first);
  EXPECT_NE(parse_email(messages[2].data).message.headers["Message-ID"], first);
  // One connection carried all three transactions.
  EXPECT_EQ(sink_->connections(), 1U);
}

TEST_F(SmtpTest, NonAsciiSubjectAndSenderNameArriveEncoded) {
  start_sink();
  SmtpConfig c = config();
  c.from_name = "Héraut";
  start_client(c);
  EmailRequest r = request("k", "à bientôt ☕");
  r.subject = "Un message non lu dans « café »";
  ASSERT_TRUE(send_one(r).ok);
  ASSERT_EQ(sink_->message_count(), 1U);
  Email email = parse_email(sink_->messages()[0].data);
  const std::string subject = email.message.headers["Subject"];
  EXPECT_THAT(subject, HasSubstr("=?UTF-8?B?"));
  EXPECT_EQ(decode_words(subject), r.subject);
  EXPECT_EQ(decode_words(email.message.headers["From"]), "Héraut <notify@herald.example>");
  EXPECT_THAT(email.plain, HasSubstr("à bientôt ☕"));
  EXPECT_THAT(email.html, HasSubstr("à bientôt ☕"));
}

TEST_F(SmtpTest, APreviewLineStartingWithADotArrivesIntact) {
  start_sink();
  start_client(config());
  ASSERT_TRUE(send_one(request("k", "first\n.second\n..third\n.")).ok);
  ASSERT_EQ(sink_->message_count(), 1U);
  EXPECT_THAT(parse_email(sink_->messages()[0].data).plain,
              HasSubstr("first\r\n.second\r\n..third\r\n.\r\n"));
}

TEST_F(SmtpTest, AuthWorksWithTheLoginMechanism) {
  SmtpSinkOptions options = auth_options();
  options.auth_mechanisms = {"LOGIN"};
  start_sink(std::move(options));
  start_client(config());
  ASSERT_TRUE(send_one(request("k")).ok);
  ASSERT_EQ(sink_->message_count(), 1U);
  EXPECT_EQ(sink_->messages()[0].auth_mechanism, "LOGIN");
  EXPECT_EQ(sink_->messages()[0].auth_user, kUser);
}

TEST_F(SmtpTest, AWrongPasswordIsRetryableAndNeverNamed) {
  start_sink();
  SmtpConfig c = config();
  c.password = "wrong-secret-password";
  start_client(c);
  const ProviderResult result = send_one(request("k"));
  EXPECT_EQ(result.error_type, kEmailUnavailable);
  EXPECT_THAT(result.error_message, HasSubstr("535"));
  EXPECT_THAT(result.error_message, HasSubstr("password"));
  EXPECT_THAT(result.error_message, Not(HasSubstr("wrong-secret-password")));
  EXPECT_EQ(sink_->auth_failures(), 1U);
  EXPECT_EQ(sink_->message_count(), 0U);
}

TEST_F(SmtpTest, MissingCredentialsAreRetryable) {
  start_sink();
  SmtpConfig c = config();
  c.username.clear();
  c.password.clear();
  start_client(c);
  const ProviderResult result = send_one(request("k"));
  EXPECT_EQ(result.error_type, kEmailUnavailable);
  EXPECT_THAT(result.error_message, HasSubstr("530"));
}

TEST_F(SmtpTest, StartTlsRequiredAndNotOfferedSendsNothing) {
  SmtpSinkOptions options = auth_options();
  options.offer_starttls = false;
  options.allow_plain_auth = true;
  start_sink(std::move(options));
  start_client(config());
  const ProviderResult result = send_one(request("k"));
  EXPECT_EQ(result.error_type, kEmailUnavailable);
  EXPECT_THAT(result.error_message, HasSubstr("STARTTLS"));
  const std::vector<std::string> commands = sink_->commands();
  EXPECT_THAT(commands, Not(::testing::Contains("AUTH")));  // the password stayed home
  EXPECT_THAT(commands, Not(::testing::Contains("MAIL")));
  EXPECT_EQ(sink_->message_count(), 0U);
}

TEST_F(SmtpTest, StartTlsRefusedByTheServerIsRetryable) {
  start_sink();
  sink_->fail_next(SmtpStage::kStartTls, 1, 454, "4.7.0 TLS not available due to temporary reason");
  start_client(config());
  const ProviderResult result = send_one(request("k"));
  EXPECT_EQ(result.error_type, kEmailUnavailable);
  EXPECT_THAT(result.error_message, HasSubstr("STARTTLS"));
  EXPECT_EQ(sink_->message_count(), 0U);
  ASSERT_TRUE(send_one(request("k")).ok);  // the next attempt gets TLS
}

TEST_F(SmtpTest, ImplicitTlsSpeaksTlsFromTheFirstByte) {
  SmtpSinkOptions options = auth_options();
  options.implicit_tls = true;
  options.offer_starttls = false;
  start_sink(std::move(options));
  SmtpConfig c = config();
  c.tls = SmtpTls::kImplicit;
  start_client(c);
  ASSERT_TRUE(send_one(request("k")).ok);
  ASSERT_EQ(sink_->message_count(), 1U);
  EXPECT_TRUE(sink_->messages()[0].tls);
}

TEST_F(SmtpTest, NoTlsOnlyWhenConfigured) {
  SmtpSinkOptions options;
  options.offer_starttls = false;
  start_sink(std::move(options));
  SmtpConfig c = config();
  c.tls = SmtpTls::kNone;
  c.username.clear();
  c.password.clear();
  start_client(c);
  ASSERT_TRUE(send_one(request("k")).ok);
  ASSERT_EQ(sink_->message_count(), 1U);
  EXPECT_FALSE(sink_->messages()[0].tls);
}

TEST_F(SmtpTest, AnUntrustedCertificateIsRetryable) {
  start_sink();
  SmtpConfig c = config();
  c.ca_file.clear();  // the system's CAs do not know the sink's certificate
  start_client(c);
  const ProviderResult result = send_one(request("k"));
  EXPECT_EQ(result.error_type, kEmailUnavailable);
  EXPECT_THAT(sink_->commands(), Not(::testing::Contains("AUTH")));
  EXPECT_EQ(sink_->message_count(), 0U);
}

TEST_F(SmtpTest, EachReplyFaultMapsToItsErrorType) {
  struct Case {
    SmtpStage stage;
    int code;
    const char* type;
  };
  // AUTH first: a connection is authenticated once, and some later cases reuse connections.
  const std::vector<Case> cases = {
      {SmtpStage::kAuth, 454, kEmailUnavailable},     {SmtpStage::kGreeting, 554, kEmailRejected},
      {SmtpStage::kGreeting, 421, kEmailUnavailable}, {SmtpStage::kMail, 451, kEmailUnavailable},
      {SmtpStage::kMail, 553, kEmailRejected},        {SmtpStage::kRcpt, 450, kEmailUnavailable},
      {SmtpStage::kRcpt, 550, kEmailRejected},        {SmtpStage::kData, 451, kEmailUnavailable},
      {SmtpStage::kData, 554, kEmailRejected},        {SmtpStage::kDataEnd, 452, kEmailUnavailable},
      {SmtpStage::kDataEnd, 552, kEmailRejected},
  };
  start_sink();
  start_client(config());
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message()
                 << "stage " << static_cast<int>(c.stage) << " code " << c.code);
    sink_->fail_next(c.stage, 1, c.code, "x.y.z scripted answer");
    const ProviderResult result = send_one(request("k"));
    EXPECT_EQ(result.error_type, c.type);
    EXPECT_THAT(result.error_message, HasSubstr(std::to_string(c.code)));
    if (result.error_type == kEmailRejected) {
      EXPECT_THAT(result.error_message, HasSubstr("scripted answer"));
    }
  }
  EXPECT_EQ(sink_->message_count(), 0U);
  ASSERT_TRUE(send_one(request("k")).ok);  // and the client still works
}

TEST_F(SmtpTest, AMessageOverTheServersSizeLimitIsRejected) {
  SmtpSinkOptions options = auth_options();
  options.max_message_bytes = 200;
  start_sink(std::move(options));
  start_client(config());
  const ProviderResult result = send_one(request("k"));
  EXPECT_EQ(result.error_type, kEmailRejected);
  EXPECT_THAT(result.error_message, HasSubstr("552"));
  EXPECT_EQ(sink_->message_count(), 0U);
}

TEST_F(SmtpTest, AConnectionDroppedInTheDataIsRetryable) {
  start_sink();
  sink_->drop_in_data(1);
  start_client(config());
  const ProviderResult result = send_one(request("k"));
  EXPECT_EQ(result.error_type, kEmailUnavailable);
  EXPECT_EQ(sink_->message_count(), 0U);
  ASSERT_TRUE(send_one(request("k")).ok);
  EXPECT_EQ(sink_->connections(), 2U);
}

TEST_F(SmtpTest, ARefusedConnectionIsRetryable) {
  start_sink();
  SmtpConfig c = config();
  sink_.reset();  // nothing listens on its port any more
  start_client(c);
  const ProviderResult result = send_one(request("k"));
  EXPECT_EQ(result.error_type, kEmailUnavailable);
  EXPECT_THAT(result.error_message, HasSubstr("transport"));
}

TEST_F(SmtpTest, ASlowServerTimesOutAsRetryable) {
  start_sink();
  sink_->set_delay_ms(2'000);
  SmtpConfig c = config();
  c.request_timeout_ms = 300;
  start_client(c);
  const auto start = std::chrono::steady_clock::now();
  const ProviderResult result = send_one(request("k"));
  EXPECT_EQ(result.error_type, kEmailUnavailable);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1'500));
}

TEST_F(SmtpTest, AFullQueueFailsFastOnTheCallersThread) {
  start_sink();
  sink_->set_delay_ms(20);
  SmtpConfig c = config();
  c.max_concurrent = 1;
  c.max_queued = 2;
  start_client(c);
  Outcomes outcomes;
  for (std::size_t i = 0; i < 3; ++i) {
    client_->send(request("k" + std::to_string(i)), outcomes.callback(i));
  }
  client_->send(request("k3"), outcomes.callback(3));
  EXPECT_EQ(outcomes.answered(), 1U);  // answered before send() returned
  const ProviderResult refused = outcomes.only(3);
  EXPECT_EQ(refused.error_type, kEmailUnavailable);
  EXPECT_THAT(refused.error_message, HasSubstr("queue is full"));
  ASSERT_TRUE(outcomes.wait(4));
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_TRUE(outcomes.only(i).ok) << i;
  }
  EXPECT_EQ(client_->stats().max_in_flight, 1U);
}

TEST_F(SmtpTest, TransfersRunConcurrentlyUpToTheBound) {
  start_sink();
  sink_->set_delay_ms(20);
  SmtpConfig c = config();
  c.max_concurrent = 3;
  start_client(c);
  Outcomes outcomes;
  constexpr std::size_t kSends = 9;
  for (std::size_t i = 0; i < kSends; ++i) {
    client_->send(request("k" + std::to_string(i)), outcomes.callback(i));
  }
  ASSERT_TRUE(outcomes.wait(kSends));
  for (std::size_t i = 0; i < kSends; ++i) {
    EXPECT_TRUE(outcomes.only(i).ok) << i;
  }
  EXPECT_EQ(sink_->message_count(), kSends);
  EXPECT_EQ(client_->stats().max_in_flight, 3U);
  EXPECT_EQ(sink_->max_open_sessions(), 3U);
  EXPECT_EQ(client_->stats().sent, kSends);
}

TEST_F(SmtpTest, ShutdownWithRequestsInFlightAnswersEachExactlyOnce) {
  start_sink();
  sink_->set_delay_ms(5'000);
  SmtpConfig c = config();
  c.max_concurrent = 2;
  c.request_timeout_ms = 20'000;
  start_client(c);
  Outcomes outcomes;
  constexpr std::size_t kSends = 6;
  for (std::size_t i = 0; i < kSends; ++i) {
    client_->send(request("k" + std::to_string(i)), outcomes.callback(i));
  }
  const auto deadline = std::chrono::steady_clock::now() + kWait;
  while (client_->stats().in_flight < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(client_->stats().in_flight, 2U);
  client_.reset();
  ASSERT_EQ(outcomes.answered(), kSends);
  for (std::size_t i = 0; i < kSends; ++i) {
    const ProviderResult result = outcomes.only(i);
    EXPECT_EQ(result.error_type, kEmailUnavailable) << i;
    EXPECT_THAT(result.error_message, HasSubstr("stopping")) << i;
  }
}

TEST_F(SmtpTest, AMalformedRecipientIsRejectedBeforeAnyConnection) {
  start_sink();
  start_client(config());
  EmailRequest r = request("k");
  r.to = "carol@example.org>\r\nRCPT TO:<eve@example.org";
  Outcomes outcomes;
  client_->send(r, outcomes.callback(0));
  EXPECT_EQ(outcomes.answered(), 1U);
  EXPECT_EQ(outcomes.only(0).error_type, kEmailRejected);
  EXPECT_EQ(sink_->connections(), 0U);
}

}  // namespace
}  // namespace herald::email
