#include "push/webpush_mock.h"

#include <fmt/format.h>
#include <openssl/rand.h>

#include <atomic>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <deque>
#include <mutex>
#include <set>
#include <utility>

#include "base/assert.h"
#include "crypto/base64url.h"
#include "crypto/keys.h"
#include "push/h2_server.h"
#include "push/vapid.h"
#include "push/webpush_crypto.h"

namespace herald::push::testing {

namespace {

constexpr char kPushPathPrefix[] = "/push/";
// RFC 8030 section 5.4: a topic is at most 32 characters of the base64url alphabet.
constexpr std::size_t kMaxTopicChars = 32;
constexpr char kBase64UrlChars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

struct Held {
  crypto::PrivateKey ua_private;
  std::string auth_secret;
};

std::string string_claim(const boost::json::object& claims, std::string_view key) {
  const boost::json::value* value = claims.if_contains(key);
  return value != nullptr && value->is_string() ? std::string(value->as_string()) : std::string();
}

bool is_decimal(std::string_view text) {
  return !text.empty() && text.size() <= 18 &&
         text.find_first_not_of("0123456789") == std::string_view::npos;
}

// The t= parameter of a VAPID Authorization value that verified.
std::string token_parameter(std::string_view authorization) {
  const std::size_t start = authorization.find("t=");
  HERALD_ASSERT(start != std::string_view::npos, "a verified VAPID header has t=");
  const std::string_view rest = authorization.substr(start + 2);
  return std::string(rest.substr(0, rest.find_first_of(", ")));
}

H2ServerAnswer plain_answer(int status, std::string body = {}) {
  H2ServerAnswer answer;
  answer.status = status;
  if (!body.empty()) {
    answer.headers.emplace_back("content-type", "text/plain; charset=utf-8");
    answer.body = std::move(body);
  }
  return answer;
}

H2ServerAnswer fault_answer(const WebPushMockFault& fault) {
  H2ServerAnswer answer = plain_answer(fault.status, fault.body);
  if (fault.retry_after_s) {
    answer.headers.emplace_back("retry-after", std::to_string(*fault.retry_after_s));
  }
  return answer;
}

}  // namespace

struct WebPushMock::Impl final : H2ServerHandler {
  Impl(WebPushMockOptions options_in, const Clock& clock_in)
      : options(std::move(options_in)), clock(clock_in) {}

  H2ServerAnswer decide(const H2ServerRequest& request, std::size_t& tag) override;
  void unanswered(const H2ServerRequest& request) override {
    const std::lock_guard lock(mu);
    log.push_back(to_record(request));
  }
  void answered(std::size_t tag, const H2ServerAnswer& answer) override {
    const std::lock_guard lock(mu);
    HERALD_ASSERT(tag < log.size(), "an answered request is logged");
    log[tag].status = answer.status;
  }
  static WebPushMockRequest to_record(const H2ServerRequest& request) {
    WebPushMockRequest record;
    record.connection = request.connection;
    record.stream_id = request.stream_id;
    record.method = request.method;
    record.path = request.path;
    record.headers = request.headers;
    record.body_bytes = request.body.size();
    return record;
  }
  // The answer to a push; `record.check_failed` says why a check failed. Called under mu.
  H2ServerAnswer push(const H2ServerRequest& request, WebPushMockRequest& record);
  // Read by the server's thread, also while the destructor stops the server (`server` is null
  // then): the port is kept apart, set once at start.
  [[nodiscard]] std::string origin() const {
    return fmt::format("https://127.0.0.1:{}", port.load(std::memory_order_acquire));
  }

  const WebPushMockOptions options;
  const Clock& clock;
  std::unique_ptr<H2TestServer> server;
  std::atomic<std::uint16_t> port{0};  // the server's, once started

  mutable std::mutex mu;
  std::map<std::string, Held> subscriptions;                 // guarded by mu
  std::deque<WebPushMockFault> scripted;                     // guarded by mu
  std::map<std::string, WebPushMockFault> per_subscription;  // guarded by mu
  std::set<std::string> seen_tokens;                         // Authorization values; guarded by mu
  std::set<std::string> refused_tokens;                      // Authorization values; guarded by mu
  std::vector<WebPushMockRequest> log;                       // guarded by mu
  std::vector<WebPushMockMessage> accepted;                  // guarded by mu
  std::uint64_t next_message = 1;                            // guarded by mu
};

H2ServerAnswer WebPushMock::Impl::decide(const H2ServerRequest& request, std::size_t& tag) {
  WebPushMockRequest record = to_record(request);
  H2ServerAnswer answer;
  std::optional<WebPushMockMessage> delivered;
  {
    const std::lock_guard lock(mu);
    const std::size_t accepted_before = accepted.size();
    if (record.method != "POST") {
      record.check_failed = "method " + record.method;
      answer = plain_answer(405);
    } else {
      answer = push(request, record);
    }
    tag = log.size();
    log.push_back(std::move(record));
    if (options.on_message && accepted.size() > accepted_before) delivered = accepted.back();
  }
  if (delivered.has_value()) options.on_message(*delivered);
  return answer;
}

H2ServerAnswer WebPushMock::Impl::push(const H2ServerRequest& request, WebPushMockRequest& record) {
  const auto refuse = [&](int status, std::string why) {
    record.check_failed = why;
    return plain_answer(status, std::move(why));
  };
  if (record.path.starts_with(kPushPathPrefix)) {
    record.subscription_id = record.path.substr(std::string_view(kPushPathPrefix).size());
  }
  const auto held = subscriptions.find(record.subscription_id);
  if (held == subscriptions.end()) {
    return refuse(404, "no subscription at " + record.path);
  }
  const std::string authorization =
      request.headers.contains("authorization") ? request.headers.at("authorization") : "";
  const Result<VerifiedVapid> vapid = verify_vapid_authorization(
      authorization, origin(), clock.wall_ms() / 1000, options.clock_skew_s);
  if (!vapid.ok() || refused_tokens.contains(authorization)) {
    H2ServerAnswer answer =
        refuse(401, vapid.ok() ? "VAPID token refused" : "VAPID: " + vapid.status().to_string());
    answer.headers.emplace_back("www-authenticate", "vapid");
    return answer;
  }
  seen_tokens.insert(authorization);
  if (vapid->public_key_b64url != options.vapid_public_key) {
    return refuse(403, "the VAPID key is not the subscription's applicationServerKey");
  }
  const auto header = [&](const char* name) {
    const auto it = request.headers.find(name);
    return it == request.headers.end() ? std::string() : it->second;
  };
  WebPushMockMessage message;
  message.subscription_id = record.subscription_id;
  const std::string ttl = header("ttl");
  if (!is_decimal(ttl)) {
    return refuse(400, "TTL \"" + ttl + "\"");
  }
  message.ttl_s = std::stoll(ttl);
  message.urgency = header("urgency");
  if (!message.urgency.empty() && message.urgency != "very-low" && message.urgency != "low" &&
      message.urgency != "normal" && message.urgency != "high") {
    return refuse(400, "Urgency \"" + message.urgency + "\"");
  }
  message.topic = header("topic");
  if (request.headers.contains("topic") &&
      (message.topic.empty() || message.topic.size() > kMaxTopicChars ||
       message.topic.find_first_not_of(kBase64UrlChars) != std::string::npos)) {
    return refuse(400, "Topic \"" + message.topic + "\"");
  }
  if (header("content-encoding") != "aes128gcm") {
    return refuse(415, "Content-Encoding \"" + header("content-encoding") + "\"");
  }
  if (request.body.size() > kWebPushMaxBodyBytes) {
    return refuse(413, fmt::format("{} bytes", request.body.size()));
  }
  Result<std::string> plaintext =
      decrypt_webpush(request.body, held->second.ua_private, held->second.auth_secret);
  if (!plaintext.ok()) {
    return refuse(400, "decryption: " + plaintext.status().to_string());
  }
  message.plaintext = std::move(plaintext).value();
  record.plaintext = message.plaintext;
  message.vapid_token = token_parameter(authorization);
  message.vapid_audience = string_claim(vapid->jwt.claims, "aud");
  message.vapid_subject = string_claim(vapid->jwt.claims, "sub");
  if (const boost::json::value* exp = vapid->jwt.claims.if_contains("exp");
      exp != nullptr && exp->is_int64()) {
    message.vapid_expires_s = exp->as_int64();
  }
  std::optional<WebPushMockFault> fault;
  if (!scripted.empty()) {
    fault = scripted.front();
    scripted.pop_front();
  } else if (const auto it = per_subscription.find(record.subscription_id);
             it != per_subscription.end()) {
    fault = it->second;
  }
  if (fault) {
    return fault_answer(*fault);
  }
  accepted.push_back(std::move(message));
  H2ServerAnswer answer = plain_answer(201);
  answer.headers.emplace_back("location", fmt::format("{}/message/{}", origin(), next_message++));
  return answer;
}

Result<std::unique_ptr<WebPushMock>> WebPushMock::start(WebPushMockOptions options,
                                                        const Clock& clock) {
  if (!crypto::base64url_decode(options.vapid_public_key).ok()) {
    return Status::invalid_argument("the Web Push mock needs the VAPID public key in base64url");
  }
  auto impl = std::make_unique<Impl>(std::move(options), clock);
  HERALD_ASSIGN_OR_RETURN(impl->server,
                          H2TestServer::start(*impl, impl->options.max_concurrent_streams));
  impl->port.store(impl->server->port(), std::memory_order_release);
  return std::unique_ptr<WebPushMock>(new WebPushMock(std::move(impl)));
}

WebPushMock::WebPushMock(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

WebPushMock::~WebPushMock() {
  impl_->server.reset();  // joins the server's thread before the handler goes
}

std::uint16_t WebPushMock::port() const {
  return impl_->server->port();
}
const std::string& WebPushMock::ca_file() const {
  return impl_->server->ca_file();
}
std::string WebPushMock::origin() const {
  return impl_->origin();
}

Result<WebPushMockSubscription> WebPushMock::subscribe() {
  HERALD_ASSIGN_OR_RETURN(crypto::PrivateKey ua_private, crypto::PrivateKey::generate_p256());
  HERALD_ASSIGN_OR_RETURN(const crypto::PublicKey ua_public, ua_private.public_key());
  HERALD_ASSIGN_OR_RETURN(const std::string point, ua_public.p256_point());
  std::string auth(kWebPushAuthSecretBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(auth.data()), static_cast<int>(auth.size())) !=
      1) {
    return Status::io_error("no randomness for the auth secret");
  }
  const std::lock_guard lock(impl_->mu);
  WebPushMockSubscription subscription;
  subscription.id = fmt::format("s{}", impl_->subscriptions.size() + 1);
  subscription.endpoint = fmt::format("{}{}{}", impl_->origin(), kPushPathPrefix, subscription.id);
  boost::json::object keys{{"p256dh", crypto::base64url_encode(point)},
                           {"auth", crypto::base64url_encode(auth)}};
  boost::json::object token{
      {"endpoint", subscription.endpoint}, {"expirationTime", nullptr}, {"keys", std::move(keys)}};
  subscription.token = boost::json::serialize(token);
  impl_->subscriptions.emplace(subscription.id, Held{std::move(ua_private), std::move(auth)});
  return subscription;
}

void WebPushMock::fail_next(std::size_t count, const WebPushMockFault& fault) {
  const std::lock_guard lock(impl_->mu);
  impl_->scripted.insert(impl_->scripted.end(), count, fault);
}

void WebPushMock::answer_subscription(const std::string& id, const WebPushMockFault& fault) {
  const std::lock_guard lock(impl_->mu);
  impl_->per_subscription[id] = fault;
}

void WebPushMock::refuse_vapid_tokens_seen() {
  const std::lock_guard lock(impl_->mu);
  impl_->refused_tokens.insert(impl_->seen_tokens.begin(), impl_->seen_tokens.end());
}

void WebPushMock::set_delay_ms(std::int64_t delay_ms) {
  impl_->server->set_delay_ms(delay_ms);
}
void WebPushMock::release_held() {
  impl_->server->release_held();
}
void WebPushMock::drop_next_request() {
  impl_->server->drop_next_request();
}
void WebPushMock::goaway_after(std::size_t requests) {
  impl_->server->goaway_after(requests);
}

std::vector<WebPushMockRequest> WebPushMock::requests() const {
  const std::lock_guard lock(impl_->mu);
  return impl_->log;
}
std::vector<WebPushMockMessage> WebPushMock::messages() const {
  const std::lock_guard lock(impl_->mu);
  return impl_->accepted;
}
std::size_t WebPushMock::connections() const {
  return impl_->server->connections();
}
std::size_t WebPushMock::pending() const {
  return impl_->server->pending();
}
std::size_t WebPushMock::max_pending() const {
  return impl_->server->max_pending();
}

}  // namespace herald::push::testing
