#include "push/fcm_mock.h"

#include <fmt/format.h>

#include <atomic>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <deque>
#include <mutex>
#include <set>
#include <utility>

#include "base/assert.h"
#include "crypto/jwt.h"
#include "push/fcm.h"
#include "push/h2_server.h"

namespace herald::push::testing {

namespace {

// Longest assertion lifetime Google accepts, in seconds.
constexpr std::int64_t kMaxAssertionLifetimeSeconds = 3600;
constexpr char kJwtBearerGrant[] = "urn:ietf:params:oauth:grant-type:jwt-bearer";
constexpr char kFcmErrorType[] = "type.googleapis.com/google.firebase.fcm.v1.FcmError";
constexpr char kBadRequestType[] = "type.googleapis.com/google.rpc.BadRequest";

struct Issued {
  std::int64_t expires_wall_s = 0;
  bool revoked = false;
};

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// application/x-www-form-urlencoded; nullopt when malformed.
std::optional<std::map<std::string, std::string>> parse_form(std::string_view body) {
  std::map<std::string, std::string> fields;
  while (!body.empty()) {
    const std::size_t amp = body.find('&');
    const std::string_view pair = body.substr(0, amp);
    body = amp == std::string_view::npos ? std::string_view() : body.substr(amp + 1);
    const std::size_t eq = pair.find('=');
    if (eq == std::string_view::npos) {
      return std::nullopt;
    }
    std::string decoded[2];
    const std::string_view parts[2] = {pair.substr(0, eq), pair.substr(eq + 1)};
    for (int p = 0; p < 2; ++p) {
      for (std::size_t i = 0; i < parts[p].size(); ++i) {
        const char c = parts[p][i];
        if (c == '+') {
          decoded[p].push_back(' ');
        } else if (c != '%') {
          decoded[p].push_back(c);
        } else if (i + 2 < parts[p].size() && hex_value(parts[p][i + 1]) >= 0 &&
                   hex_value(parts[p][i + 2]) >= 0) {
          decoded[p].push_back(
              static_cast<char>(hex_value(parts[p][i + 1]) * 16 + hex_value(parts[p][i + 2])));
          i += 2;
        } else {
          return std::nullopt;
        }
      }
    }
    fields[decoded[0]] = decoded[1];
  }
  return fields;
}

H2ServerAnswer json_answer(int status, const boost::json::object& body) {
  H2ServerAnswer answer;
  answer.status = status;
  answer.headers.emplace_back("content-type", "application/json; charset=UTF-8");
  answer.body = boost::json::serialize(body);
  return answer;
}

H2ServerAnswer error_answer(const FcmMockError& error) {
  boost::json::object inner;
  inner["code"] = error.status;
  inner["message"] = error.message.empty() ? error.error_status : error.message;
  inner["status"] = error.error_status;
  boost::json::array details;
  if (!error.error_code.empty()) {
    boost::json::object detail;
    detail["@type"] = kFcmErrorType;
    detail["errorCode"] = error.error_code;
    details.push_back(std::move(detail));
  }
  if (!error.field.empty()) {
    boost::json::object violation;
    violation["field"] = error.field;
    violation["description"] = "invalid";
    boost::json::object detail;
    detail["@type"] = kBadRequestType;
    detail["fieldViolations"] = boost::json::array{std::move(violation)};
    details.push_back(std::move(detail));
  }
  if (!details.empty()) {
    inner["details"] = std::move(details);
  }
  boost::json::object body;
  body["error"] = std::move(inner);
  H2ServerAnswer answer = json_answer(error.status, body);
  if (error.retry_after_s) {
    answer.headers.emplace_back("retry-after", std::to_string(*error.retry_after_s));
  }
  return answer;
}

FcmMockError invalid_argument(std::string message) {
  FcmMockError error;
  error.status = 400;
  error.error_status = "INVALID_ARGUMENT";
  error.error_code = "INVALID_ARGUMENT";
  error.message = std::move(message);
  return error;
}

std::string string_at(const boost::json::object& object, std::string_view key) {
  const boost::json::value* value = object.if_contains(key);
  return value != nullptr && value->is_string() ? std::string(value->as_string()) : std::string();
}

// "<digits>s" or "<digits>.<digits>s", as protobuf's Duration in JSON.
bool is_duration(std::string_view text) {
  if (!text.ends_with('s') || text.size() < 2) {
    return false;
  }
  text.remove_suffix(1);
  const std::size_t dot = text.find('.');
  const auto digits = [](std::string_view part) {
    return !part.empty() && part.find_first_not_of("0123456789") == std::string_view::npos;
  };
  return dot == std::string_view::npos
             ? digits(text)
             : digits(text.substr(0, dot)) && digits(text.substr(dot + 1));
}

FcmMockRequest to_record(const H2ServerRequest& request, const std::string& token_path) {
  FcmMockRequest record;
  record.connection = request.connection;
  record.stream_id = request.stream_id;
  record.token_request = request.path == token_path;
  record.method = request.method;
  record.path = request.path;
  record.headers = request.headers;
  record.body = request.body;
  return record;
}

}  // namespace

struct FcmMock::Impl final : H2ServerHandler {
  Impl(FcmMockOptions options_in, const Clock& clock_in, crypto::JwtVerifier verifier_in)
      : options(std::move(options_in)), clock(clock_in), verifier(std::move(verifier_in)) {}

  H2ServerAnswer decide(const H2ServerRequest& request, std::size_t& tag) override;
  void unanswered(const H2ServerRequest& request) override {
    const std::lock_guard lock(mu);
    log.push_back(to_record(request, options.token_path));
  }
  void answered(std::size_t tag, const H2ServerAnswer& answer) override {
    const std::lock_guard lock(mu);
    HERALD_ASSERT(tag < log.size(), "an answered request is logged");
    log[tag].status = answer.status;
  }
  // Each returns the answer; `record.check_failed` says why a check failed. Called under mu.
  H2ServerAnswer token_endpoint(FcmMockRequest& record);
  H2ServerAnswer messages_send(FcmMockRequest& record);
  // The message's decoded form, or the reason it is malformed.
  std::string decode_message(const std::string& body, FcmMockMessage& message) const;
  // Read by the server's thread, also while the destructor stops the server (`server` is null
  // then): the port is kept apart, set once at start.
  [[nodiscard]] std::string token_uri() const {
    return fmt::format("https://127.0.0.1:{}{}", port.load(std::memory_order_acquire),
                       options.token_path);
  }

  const FcmMockOptions options;
  const Clock& clock;
  const crypto::JwtVerifier verifier;
  std::unique_ptr<H2TestServer> server;
  std::atomic<std::uint16_t> port{0};  // the server's, once started

  mutable std::mutex mu;
  std::deque<FcmMockError> scripted_sends;                  // guarded by mu
  std::deque<std::pair<int, std::string>> scripted_tokens;  // guarded by mu
  std::map<std::string, FcmMockError> token_answers;        // guarded by mu
  std::map<std::string, Issued> issued;                     // guarded by mu
  std::vector<FcmMockRequest> log;                          // guarded by mu
  std::vector<FcmMockMessage> accepted;                     // guarded by mu
  std::uint64_t next_message = 1;                           // guarded by mu
};

H2ServerAnswer FcmMock::Impl::decide(const H2ServerRequest& request, std::size_t& tag) {
  FcmMockRequest record = to_record(request, options.token_path);
  H2ServerAnswer answer;
  std::optional<FcmMockMessage> accepted_now;
  {
    const std::lock_guard lock(mu);
    const std::size_t accepted_before = accepted.size();
    if (record.method != "POST") {
      record.check_failed = "method " + record.method;
      answer = json_answer(405, {{"error", "method not allowed"}});
    } else if (record.token_request) {
      answer = token_endpoint(record);
    } else {
      answer = messages_send(record);
    }
    tag = log.size();
    log.push_back(std::move(record));
    if (accepted.size() > accepted_before && options.on_message) {
      accepted_now = accepted.back();
    }
  }
  if (accepted_now) options.on_message(*accepted_now);
  return answer;
}

H2ServerAnswer FcmMock::Impl::token_endpoint(FcmMockRequest& record) {
  const auto oauth_error = [&](int status, const char* error, std::string why) {
    record.error = error;
    record.check_failed = std::move(why);
    return json_answer(status, {{"error", error}, {"error_description", record.check_failed}});
  };
  if (!record.headers["content-type"].starts_with("application/x-www-form-urlencoded")) {
    return oauth_error(400, "invalid_request", "content-type " + record.headers["content-type"]);
  }
  const std::optional<std::map<std::string, std::string>> form = parse_form(record.body);
  if (!form || !form->contains("grant_type") || !form->contains("assertion")) {
    return oauth_error(400, "invalid_request", "form");
  }
  if (form->at("grant_type") != kJwtBearerGrant) {
    return oauth_error(400, "unsupported_grant_type", "grant_type " + form->at("grant_type"));
  }
  record.credential = form->at("assertion");
  crypto::JwtChecks checks;
  checks.now_s = clock.wall_ms() / 1000;
  checks.audience = token_uri();
  checks.issuer = options.client_email;
  const Result<crypto::VerifiedJwt> jwt = verifier.verify(record.credential, checks);
  if (!jwt.ok()) {
    return oauth_error(400, "invalid_grant", jwt.status().to_string());
  }
  if (string_at(jwt->claims, "scope") != kFcmScope) {
    return oauth_error(400, "invalid_scope", "scope " + string_at(jwt->claims, "scope"));
  }
  const boost::json::value* iat = jwt->claims.if_contains("iat");
  const boost::json::value* exp = jwt->claims.if_contains("exp");
  if (iat == nullptr || exp == nullptr || !iat->is_int64() || !exp->is_int64() ||
      exp->as_int64() - iat->as_int64() > kMaxAssertionLifetimeSeconds) {
    return oauth_error(400, "invalid_grant", "iat/exp");
  }
  if (!scripted_tokens.empty()) {
    const auto [status, error] = scripted_tokens.front();
    scripted_tokens.pop_front();
    record.error = error;
    return json_answer(status, {{"error", error}});
  }
  const std::string token = fmt::format("ya29.herald-mock-{}", issued.size() + 1);
  issued[token] = Issued{clock.wall_ms() / 1000 + options.token_lifetime_s, false};
  return json_answer(200, {{"access_token", token},
                           {"expires_in", options.token_lifetime_s},
                           {"token_type", "Bearer"}});
}

H2ServerAnswer FcmMock::Impl::messages_send(FcmMockRequest& record) {
  const auto fail = [&](const FcmMockError& error, std::string why) {
    record.error = error.error_code.empty() ? error.error_status : error.error_code;
    record.check_failed = std::move(why);
    return error_answer(error);
  };
  if (record.path != fmt::format("/v1/projects/{}/messages:send", options.project_id)) {
    FcmMockError error;
    error.status = 404;
    error.error_status = "NOT_FOUND";
    return fail(error, "path " + record.path);
  }
  const std::string& authorization = record.headers["authorization"];
  record.credential = authorization.starts_with("Bearer ") ? authorization.substr(7) : "";
  const auto it = issued.find(record.credential);
  if (it == issued.end() || it->second.revoked ||
      clock.wall_ms() / 1000 >= it->second.expires_wall_s) {
    FcmMockError error;
    error.status = 401;
    error.error_status = "UNAUTHENTICATED";
    error.message = "Request had invalid authentication credentials.";
    return fail(error, it == issued.end() ? "bearer unknown" : "bearer expired or revoked");
  }
  if (!record.headers["content-type"].starts_with("application/json")) {
    return fail(invalid_argument("content-type"), "content-type");
  }
  if (record.body.size() > kFcmMaxPayloadBytes) {
    return fail(invalid_argument("Message is too big"),
                fmt::format("{} bytes", record.body.size()));
  }
  FcmMockMessage message;
  if (std::string why = decode_message(record.body, message); !why.empty()) {
    return fail(invalid_argument(why), why);
  }
  message.access_token = record.credential;
  std::optional<FcmMockError> scripted;
  if (!scripted_sends.empty()) {
    scripted = scripted_sends.front();
    scripted_sends.pop_front();
  } else if (const auto answer = token_answers.find(message.device_token);
             answer != token_answers.end()) {
    scripted = answer->second;
  }
  if (scripted) {
    record.error = scripted->error_code.empty() ? scripted->error_status : scripted->error_code;
    return error_answer(*scripted);
  }
  accepted.push_back(std::move(message));
  return json_answer(
      200, {{"name", fmt::format("projects/{}/messages/{}", options.project_id, next_message++)}});
}

std::string FcmMock::Impl::decode_message(const std::string& body, FcmMockMessage& message) const {
  boost::system::error_code ec;
  const boost::json::value root = boost::json::parse(body, ec);
  if (ec || !root.is_object() || !root.as_object().contains("message") ||
      !root.at("message").is_object()) {
    return "no message object";
  }
  const boost::json::object& m = root.at("message").as_object();
  for (const auto& [key, value] : m) {
    if (key != "token" && key != "data" && key != "android" && key != "notification") {
      return fmt::format("unexpected field message.{}", std::string_view(key));
    }
  }
  message.device_token = string_at(m, "token");
  if (message.device_token.empty()) {
    return "message.token";
  }
  message.has_notification = m.contains("notification");
  if (const boost::json::value* data = m.if_contains("data"); data != nullptr) {
    if (!data->is_object()) {
      return "message.data is not an object";
    }
    for (const auto& [key, value] : data->as_object()) {
      if (!value.is_string()) {
        return fmt::format("message.data.{} is not a string", std::string_view(key));
      }
      message.data[std::string(key)] = std::string(value.as_string());
    }
  }
  const boost::json::value* android = m.if_contains("android");
  if (android == nullptr || !android->is_object()) {
    return "message.android";
  }
  message.collapse_key = string_at(android->as_object(), "collapse_key");
  message.ttl = string_at(android->as_object(), "ttl");
  message.priority = string_at(android->as_object(), "priority");
  if (!is_duration(message.ttl)) {
    return "message.android.ttl " + message.ttl;
  }
  if (message.priority != "high" && message.priority != "normal") {
    return "message.android.priority " + message.priority;
  }
  return {};
}

Result<std::unique_ptr<FcmMock>> FcmMock::start(FcmMockOptions options, const Clock& clock) {
  HERALD_ASSIGN_OR_RETURN(crypto::JwtVerifier verifier,
                          crypto::JwtVerifier::from_pem(options.service_account_public_pem));
  if (verifier.algorithm() != crypto::JwtAlgorithm::kRs256) {
    return Status::invalid_argument("the FCM mock verifies RS256 assertions: an RSA key");
  }
  auto impl = std::make_unique<Impl>(std::move(options), clock, std::move(verifier));
  HERALD_ASSIGN_OR_RETURN(impl->server,
                          H2TestServer::start(*impl, impl->options.max_concurrent_streams));
  impl->port.store(impl->server->port(), std::memory_order_release);
  return std::unique_ptr<FcmMock>(new FcmMock(std::move(impl)));
}

FcmMock::FcmMock(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

FcmMock::~FcmMock() {
  impl_->server.reset();  // joins the server's thread before the handler goes
}

std::uint16_t FcmMock::port() const {
  return impl_->server->port();
}
const std::string& FcmMock::ca_file() const {
  return impl_->server->ca_file();
}
std::string FcmMock::token_uri() const {
  return impl_->token_uri();
}

void FcmMock::fail_next_sends(std::size_t count, const FcmMockError& error) {
  const std::lock_guard lock(impl_->mu);
  impl_->scripted_sends.insert(impl_->scripted_sends.end(), count, error);
}

void FcmMock::fail_next_tokens(std::size_t count, int status, const std::string& error) {
  const std::lock_guard lock(impl_->mu);
  impl_->scripted_tokens.insert(impl_->scripted_tokens.end(), count, {status, error});
}

void FcmMock::answer_token(const std::string& device_token, const FcmMockError& error) {
  const std::lock_guard lock(impl_->mu);
  impl_->token_answers[device_token] = error;
}

void FcmMock::revoke_tokens() {
  const std::lock_guard lock(impl_->mu);
  for (auto& [token, issued] : impl_->issued) {
    issued.revoked = true;
  }
}

void FcmMock::set_delay_ms(std::int64_t delay_ms) {
  impl_->server->set_delay_ms(delay_ms);
}
void FcmMock::release_held() {
  impl_->server->release_held();
}
void FcmMock::drop_next_request() {
  impl_->server->drop_next_request();
}
void FcmMock::goaway_after(std::size_t requests) {
  impl_->server->goaway_after(requests);
}

std::vector<FcmMockRequest> FcmMock::requests() const {
  const std::lock_guard lock(impl_->mu);
  return impl_->log;
}
std::vector<FcmMockMessage> FcmMock::messages() const {
  const std::lock_guard lock(impl_->mu);
  return impl_->accepted;
}
std::size_t FcmMock::tokens_issued() const {
  const std::lock_guard lock(impl_->mu);
  return impl_->issued.size();
}
std::size_t FcmMock::connections() const {
  return impl_->server->connections();
}
std::size_t FcmMock::pending() const {
  return impl_->server->pending();
}
std::size_t FcmMock::max_pending() const {
  return impl_->server->max_pending();
}

}  // namespace herald::push::testing
