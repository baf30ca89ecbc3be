#include "push/fcm.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/ssl/context.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <chrono>
#include <memory>
#include <utility>
#include <vector>

#include "base/assert.h"
#include "crypto/jwt.h"
#include "push/common.h"
#include "push/h2_client.h"

namespace herald::push {

namespace ssl = boost::asio::ssl;
using messaging::ProviderResult;

namespace {

constexpr char kJwtBearerGrant[] = "urn:ietf:params:oauth:grant-type:jwt-bearer";
constexpr char kUnreservedChars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";
// Largest token_refresh_margin_ms accepted: half the usual one-hour token lifetime.
constexpr std::int64_t kMaxTokenRefreshMarginMs = 30LL * 60 * 1000;
// Deepest JSON accepted from the key file or a response.
constexpr std::size_t kMaxJsonDepth = 16;
// Longest access token accepted from the token endpoint, in bytes (Google's are ~ 1 KiB).
constexpr std::size_t kMaxAccessTokenBytes = 4096;
// Longest provider id (the message's resource name) kept, in bytes.
constexpr std::size_t kMaxMessageNameBytes = 512;

std::optional<boost::json::value> parse_json(std::string_view text) {
  boost::json::parse_options options;
  options.max_depth = kMaxJsonDepth;
  boost::system::error_code ec;
  boost::json::value value = boost::json::parse(text, ec, {}, options);
  if (ec) {
    return std::nullopt;
  }
  return value;
}

std::string string_field(const boost::json::object& object, std::string_view key) {
  const boost::json::value* value = object.if_contains(key);
  return value != nullptr && value->is_string() ? std::string(value->as_string()) : std::string();
}

std::string serialize_message(const messaging::PushRequest& request, std::string_view title,
                              std::string_view body) {
  boost::json::object data;
  data["conversation_id"] = request.conversation_id;
  data["seq"] = std::to_string(request.seq);
  data["title"] = title;
  data["body"] = body;
  data["idempotency_key"] = request.idempotency_key;
  boost::json::object android;
  android["collapse_key"] = collapse_key_for(request.conversation_id);
  android["ttl"] = fmt::format("{}s", kFcmTtlSeconds);
  android["priority"] = "high";
  boost::json::object message;
  message["token"] = request.token;
  message["data"] = std::move(data);
  message["android"] = std::move(android);
  boost::json::object root;
  root["message"] = std::move(message);
  return boost::json::serialize(root);
}

Status check_config(const FcmConfig& config) {
  if (config.host.empty() || config.port == 0) {
    return Status::invalid_argument("FCM: host and port are required");
  }
  if (config.token_refresh_margin_ms < 0 ||
      config.token_refresh_margin_ms > kMaxTokenRefreshMarginMs) {
    return Status::invalid_argument(fmt::format(
        "FCM: token_refresh_margin_ms must be within [0, {}]", kMaxTokenRefreshMarginMs));
  }
  if (config.max_concurrent_streams == 0 ||
      config.max_concurrent_streams > kFcmMaxConcurrentStreams) {
    return Status::invalid_argument(fmt::format(
        "FCM: max_concurrent_streams must be within [1, {}]", kFcmMaxConcurrentStreams));
  }
  if (config.max_queued_requests > kFcmMaxQueuedRequests) {
    return Status::invalid_argument(
        fmt::format("FCM: max_queued_requests must be at most {}", kFcmMaxQueuedRequests));
  }
  if (config.request_timeout_ms <= 0 || config.connect_timeout_ms <= 0) {
    return Status::invalid_argument("FCM: timeouts must be positive");
  }
  return Status::ok_status();
}

// One send, across its attempts (the first, and one more after a 401).
struct FcmSend {
  std::string payload;
  messaging::ProviderDone done;
  std::chrono::steady_clock::time_point deadline;
  bool auth_retry_used = false;
  std::string token;  // the access token of the current attempt
};
using SendPtr = std::shared_ptr<FcmSend>;

}  // namespace

Result<FcmServiceAccount> parse_service_account(std::string_view json) {
  const std::optional<boost::json::value> value = parse_json(json);
  if (!value || !value->is_object()) {
    return Status::invalid_argument("the FCM service-account key is not a JSON object");
  }
  const boost::json::object& object = value->as_object();
  FcmServiceAccount account;
  account.project_id = string_field(object, "project_id");
  account.client_email = string_field(object, "client_email");
  account.private_key = string_field(object, "private_key");
  account.token_uri = string_field(object, "token_uri");
  for (const auto& [name, field] : {std::pair{"project_id", &account.project_id},
                                    std::pair{"client_email", &account.client_email},
                                    std::pair{"private_key", &account.private_key},
                                    std::pair{"token_uri", &account.token_uri}}) {
    if (field->empty()) {
      return Status::invalid_argument(
          fmt::format("the FCM service-account key has no string \"{}\"", name));
    }
  }
  const std::string type = string_field(object, "type");
  if (!type.empty() && type != "service_account") {
    return Status::invalid_argument("the FCM key's \"type\" is not \"service_account\"");
  }
  if (account.project_id.find_first_not_of(
          "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:") !=
      std::string::npos) {
    return Status::invalid_argument("the FCM project_id has characters a project id cannot have");
  }
  return account;
}

Result<HttpsUrl> parse_https_url(std::string_view url) {
  constexpr std::string_view kScheme = "https://";
  if (!url.starts_with(kScheme)) {
    return Status::invalid_argument("not an https URL");
  }
  url.remove_prefix(kScheme.size());
  const std::size_t slash = url.find('/');
  const std::string_view authority = url.substr(0, slash);
  HttpsUrl out;
  out.path = slash == std::string_view::npos ? "/" : std::string(url.substr(slash));
  if (authority.empty() || authority.find('@') != std::string_view::npos ||
      out.path.find_first_of("?# ") != std::string::npos) {
    return Status::invalid_argument(
        "an https URL needs a host and no user info, query or fragment");
  }
  const std::size_t colon = authority.rfind(':');
  out.host = std::string(authority.substr(0, colon));
  if (colon != std::string_view::npos) {
    const std::string_view digits = authority.substr(colon + 1);
    unsigned port = 0;
    for (const char c : digits) {
      port = (c >= '0' && c <= '9' && port <= 65535) ? port * 10 + (c - '0') : 65536;
    }
    if (digits.empty() || port == 0 || port > 65535) {
      return Status::invalid_argument("an https URL's port must be 1 to 65535");
    }
    out.port = static_cast<std::uint16_t>(port);
  }
  if (out.host.empty()) {
    return Status::invalid_argument("an https URL needs a host");
  }
  return out;
}

Status check_fcm_token(std::string_view token) {
  if (token.empty() || token.size() > kFcmMaxDeviceTokenChars) {
    return Status::invalid_argument(
        fmt::format("an FCM token has 1 to {} characters", kFcmMaxDeviceTokenChars));
  }
  const bool allowed = std::all_of(token.begin(), token.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           c == '-' || c == ':' || c == '.';
  });
  if (!allowed) {
    return Status::invalid_argument("an FCM token is letters, digits and _ - : . only");
  }
  return Status::ok_status();
}

Result<std::string> fcm_payload(const messaging::PushRequest& request) {
  std::string full = serialize_message(request, request.title, request.body);
  if (full.size() <= kFcmMaxPayloadBytes) {
    return full;
  }
  std::optional<std::string> payload = fit_field(
      request.body, kFcmMaxPayloadBytes,
      [&](std::string_view body) { return serialize_message(request, request.title, body); });
  if (!payload) {
    payload = fit_field(request.title, kFcmMaxPayloadBytes, [&](std::string_view title) {
      return serialize_message(request, title, "");
    });
  }
  if (!payload) {
    return Status::resource_exhausted(fmt::format(
        "the FCM message is over {} bytes even with an empty title and body", kFcmMaxPayloadBytes));
  }
  return std::move(*payload);
}

std::string fcm_token_request_body(std::string_view assertion) {
  const auto encode = [](std::string_view text) {
    std::string out;
    for (const char c : text) {
      if (std::string_view(kUnreservedChars).find(c) != std::string_view::npos) {
        out.push_back(c);
      } else {
        out += fmt::format("%{:02X}", static_cast<unsigned char>(c));
      }
    }
    return out;
  };
  return "grant_type=" + encode(kJwtBearerGrant) + "&assertion=" + encode(assertion);
}

FcmError parse_fcm_error(std::string_view body) {
  FcmError error;
  const std::optional<boost::json::value> value = parse_json(body);
  if (!value || !value->is_object()) {
    return error;
  }
  const boost::json::value* inner = value->as_object().if_contains("error");
  if (inner == nullptr || !inner->is_object()) {
    return error;
  }
  const boost::json::object& object = inner->as_object();
  error.status = string_field(object, "status");
  error.message = string_field(object, "message");
  error.names_token = error.message.find("registration token") != std::string::npos;
  const boost::json::value* details = object.if_contains("details");
  if (details == nullptr || !details->is_array()) {
    return error;
  }
  for (const boost::json::value& detail : details->as_array()) {
    if (!detail.is_object()) {
      continue;
    }
    if (const std::string code = string_field(detail.as_object(), "errorCode"); !code.empty()) {
      error.error_code = code;
    }
    const boost::json::value* violations = detail.as_object().if_contains("fieldViolations");
    if (violations == nullptr || !violations->is_array()) {
      continue;
    }
    for (const boost::json::value& violation : violations->as_array()) {
      if (violation.is_object() &&
          string_field(violation.as_object(), "field") == "message.token") {
        error.names_token = true;
      }
    }
  }
  return error;
}

messaging::ProviderResult map_fcm_response(int status, const FcmError& error,
                                           std::optional<std::int64_t> retry_after_ms,
                                           std::string name) {
  if (status == 200) {
    return ProviderResult::success(std::move(name));
  }
  const std::string& code = error.error_code.empty() ? error.status : error.error_code;
  std::string message =
      fmt::format("FCM answered {} {}{}{}", status, code.empty() ? "(no error status)" : code,
                  error.message.empty() ? "" : ": ", error.message);
  const auto fail = [&](const char* type) { return ProviderResult::failure(type, message); };
  if (error.error_code == "UNREGISTERED") {
    return fail(messaging::kPushUnregistered);
  }
  if (error.error_code == "SENDER_ID_MISMATCH" || (status == 400 && error.names_token)) {
    return fail(messaging::kPushInvalidToken);
  }
  if (status == 429 || status >= 500) {
    ProviderResult result = fail(messaging::kPushUnavailable);
    result.retry_after_ms = retry_after_ms;
    return result;
  }
  if (status == 401) {
    return fail(messaging::kPushUnavailable);
  }
  if (status >= 400 && status < 500) {
    return fail(messaging::kPushRejected);
  }
  return fail(messaging::kPushUnavailable);
}

// ---------------------------------------------------------------------------------------------
// The client's I/O side. Everything below runs on the I/O thread unless it says otherwise.

struct FcmClient::Impl {
  Impl(FcmConfig config_in, const Clock& clock_in, FcmServiceAccount account_in,
       HttpsUrl token_url_in, crypto::JwtSigner signer_in)
      : config(std::move(config_in)),
        clock(clock_in),
        account(std::move(account_in)),
        token_url(std::move(token_url_in)),
        signer(std::move(signer_in)),
        send_path(fmt::format("/v1/projects/{}/messages:send", account.project_id)),
        tls(ssl::context::tls_client) {}

  // Any thread.
  void send(const messaging::PushRequest& request, messaging::ProviderDone done);

  // I/O thread.
  void with_token(const SendPtr& send);
  void attempt(const SendPtr& send);
  void answered(const SendPtr& send, Result<h2::Response> response);
  void fetch_token();
  void token_answered(MonoMs requested_ms, Result<h2::Response> response);
  Result<std::string> read_token(MonoMs requested_ms, const h2::Response& response);
  void release_waiting(const Status& failure);
  [[nodiscard]] bool token_valid() const {
    return !access_token.empty() &&
           clock.mono_ms() < token_expires_ms - config.token_refresh_margin_ms;
  }
  void shutdown();
  [[nodiscard]] h2::ClientOptions client_options(std::string host, std::uint16_t port) const;

  const FcmConfig config;
  const Clock& clock;
  const FcmServiceAccount account;
  const HttpsUrl token_url;
  const crypto::JwtSigner signer;
  const std::string send_path;
  ssl::context tls;
  h2::IoThread io;
  std::unique_ptr<h2::Client> fcm_http;    // set before the thread starts
  std::unique_ptr<h2::Client> token_only;  // when the token endpoint is another host or port
  h2::Client* token_http = nullptr;        // fcm_http or token_only

  // I/O thread only.
  std::string access_token;
  MonoMs token_expires_ms = 0;
  bool fetching = false;
  std::vector<SendPtr> waiting;  // for a token

  std::atomic<std::uint64_t> tokens_fetched{0};
  std::atomic<std::uint64_t> token_requests{0};
  std::atomic<std::uint64_t> sends_started{0};
  std::atomic<std::uint64_t> auth_retries{0};
  std::atomic<std::size_t> waiting_count{0};
};

void FcmClient::Impl::send(const messaging::PushRequest& request, messaging::ProviderDone done) {
  if (const Status token_ok = check_fcm_token(request.token); !token_ok.ok()) {
    done(ProviderResult::failure(messaging::kPushInvalidToken, token_ok.message()));
    return;
  }
  Result<std::string> payload = fcm_payload(request);
  if (!payload.ok()) {
    done(ProviderResult::failure(messaging::kPushPayloadTooLarge, payload.status().message()));
    return;
  }
  auto call = std::make_shared<FcmSend>();
  call->payload = std::move(payload).value();
  call->done = std::move(done);
  call->deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(config.request_timeout_ms);
  if (!io.post([this, call] { with_token(call); })) {
    call->done(ProviderResult::failure(messaging::kPushUnavailable, "the FCM client is stopped"));
  }
}

void FcmClient::Impl::with_token(const SendPtr& send) {
  if (token_valid()) {
    attempt(send);
    return;
  }
  if (waiting.size() >= config.max_queued_requests) {
    send->done(ProviderResult::failure(
        messaging::kPushUnavailable,
        fmt::format("the FCM queue is full ({} requests wait for an access token)",
                    config.max_queued_requests)));
    return;
  }
  waiting.push_back(send);
  ++waiting_count;
  if (!fetching) {
    fetch_token();
  }
}

void FcmClient::Impl::attempt(const SendPtr& send) {
  send->token = access_token;
  h2::Request request;
  request.path = send_path;
  request.headers = {
      {"authorization", "Bearer " + send->token},
      {"content-type", "application/json; charset=utf-8"},
  };
  request.body = send->payload;
  request.deadline = send->deadline;
  ++sends_started;
  fcm_http->submit(std::move(request), [this, send](Result<h2::Response> response) {
    answered(send, std::move(response));
  });
}

void FcmClient::Impl::answered(const SendPtr& send, Result<h2::Response> response) {
  if (!response.ok()) {
    send->done(ProviderResult::failure(messaging::kPushUnavailable, response.status().message()));
    return;
  }
  if (response->status == 401 && !send->auth_retry_used) {
    send->auth_retry_used = true;
    ++auth_retries;
    if (send->token == access_token) {
      access_token.clear();  // refused: fetch another, unless one has replaced it meanwhile
    }
    with_token(send);
    return;
  }
  std::string name;
  if (response->status == 200) {
    if (const std::optional<boost::json::value> body = parse_json(response->body);
        body && body->is_object()) {
      name = string_field(body->as_object(), "name").substr(0, kMaxMessageNameBytes);
    }
  }
  send->done(map_fcm_response(response->status, parse_fcm_error(response->body),
                              parse_retry_after_ms(response->header("retry-after")),
                              std::move(name)));
}

void FcmClient::Impl::fetch_token() {
  HERALD_ASSERT(!fetching, "one token fetch at a time");
  const std::int64_t now_s = clock.wall_ms() / 1000;
  boost::json::object claims;
  claims["iss"] = account.client_email;
  claims["scope"] = kFcmScope;
  claims["aud"] = account.token_uri;
  claims["iat"] = now_s;
  claims["exp"] = now_s + kFcmAssertionLifetimeSeconds;
  Result<std::string> assertion = signer.sign(claims);
  if (!assertion.ok()) {
    release_waiting(Status::unavailable("cannot sign the FCM token assertion: " +
                                        assertion.status().message()));
    return;
  }
  h2::Request request;
  request.path = token_url.path;
  request.headers = {{"content-type", "application/x-www-form-urlencoded"}};
  request.body = fcm_token_request_body(*assertion);
  request.deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(config.request_timeout_ms);
  fetching = true;
  ++token_requests;
  token_http->submit(
      std::move(request),
      [this, requested_ms = clock.mono_ms()](Result<h2::Response> response) {
        token_answered(requested_ms, std::move(response));
      },
      /*urgent=*/true);
}

void FcmClient::Impl::token_answered(MonoMs requested_ms, Result<h2::Response> response) {
  fetching = false;
  Result<std::string> token =
      response.ok() ? read_token(requested_ms, *response) : Result<std::string>(response.status());
  if (!token.ok()) {
    release_waiting(
        Status::unavailable("cannot get an FCM access token: " + token.status().message()));
    return;
  }
  access_token = std::move(token).value();
  ++tokens_fetched;
  release_waiting(Status::ok_status());
}

Result<std::string> FcmClient::Impl::read_token(MonoMs requested_ms, const h2::Response& response) {
  const std::optional<boost::json::value> body = parse_json(response.body);
  const boost::json::object* object = body && body->is_object() ? &body->as_object() : nullptr;
  if (response.status != 200) {
    // OAuth errors: {"error": "invalid_grant", "error_description": ...}; neither is secret.
    const std::string error = object != nullptr ? string_field(*object, "error") : "";
    return Status::unavailable(fmt::format("the token endpoint answered {} {}", response.status,
                                           error.empty() ? "(no error)" : error));
  }
  const boost::json::value* expires_in =
      object != nullptr ? object->if_contains("expires_in") : nullptr;
  std::string token = object != nullptr ? string_field(*object, "access_token") : "";
  if (token.empty() || token.size() > kMaxAccessTokenBytes || expires_in == nullptr ||
      !expires_in->is_int64() || expires_in->as_int64() <= 0) {
    return Status::unavailable("the token endpoint's answer has no access_token and expires_in");
  }
  const std::int64_t lifetime_s = std::min(expires_in->as_int64(), kFcmMaxTokenLifetimeSeconds);
  // Counted from when it was asked for: the token cannot expire later than that reckons.
  token_expires_ms = requested_ms + lifetime_s * 1000;
  return token;
}

void FcmClient::Impl::release_waiting(const Status& failure) {
  std::vector<SendPtr> released;
  released.swap(waiting);
  waiting_count -= released.size();
  for (const SendPtr& send : released) {
    if (failure.ok()) {
      // With the new token, even one already inside its refresh margin (a lifetime shorter than
      // the margin): the waiters use it once rather than loop fetching.
      attempt(send);
    } else {
      send->done(ProviderResult::failure(messaging::kPushUnavailable, failure.message()));
    }
  }
}

void FcmClient::Impl::shutdown() {
  fcm_http->shutdown();
  if (token_only) {
    token_only->shutdown();
  }
  // A fetch in flight has failed above and released its waiters; none can remain.
  release_waiting(Status::unavailable("the FCM client is stopping"));
}

h2::ClientOptions FcmClient::Impl::client_options(std::string host, std::uint16_t port) const {
  h2::ClientOptions options;
  options.service = "FCM";
  options.host = std::move(host);
  options.port = port;
  options.max_concurrent_streams = config.max_concurrent_streams;
  options.max_queued_requests = config.max_queued_requests;
  options.connect_timeout_ms = config.connect_timeout_ms;
  options.max_response_body_bytes = kFcmMaxResponseBodyBytes;
  options.seed = config.seed;
  return options;
}

Result<std::unique_ptr<FcmClient>> FcmClient::create(FcmConfig config, const Clock& clock) {
  HERALD_RETURN_IF_ERROR(check_config(config));
  HERALD_ASSIGN_OR_RETURN(const std::string key_json,
                          read_small_file(config.service_account_path, kFcmMaxServiceAccountBytes));
  HERALD_ASSIGN_OR_RETURN(FcmServiceAccount account, parse_service_account(key_json));
  Result<HttpsUrl> token_url = parse_https_url(account.token_uri);
  if (!token_url.ok()) {
    return Status::invalid_argument("FCM: the key's token_uri: " + token_url.status().message());
  }
  HERALD_ASSIGN_OR_RETURN(crypto::JwtSigner signer,
                          crypto::JwtSigner::from_pem(account.private_key));
  if (signer.algorithm() != crypto::JwtAlgorithm::kRs256) {
    return Status::invalid_argument("the FCM service-account key must be an RSA key (RS256)");
  }
  const std::string token_host = config.token_host.empty() ? token_url->host : config.token_host;
  const std::uint16_t token_port = config.token_port == 0 ? token_url->port : config.token_port;
  auto impl = std::make_unique<Impl>(std::move(config), clock, std::move(account),
                                     std::move(token_url).value(), std::move(signer));
  if (const Status tls = h2::configure_client_tls(impl->tls, impl->config.ca_file); !tls.ok()) {
    return Status(tls.code(), "FCM: " + tls.message());
  }
  impl->fcm_http = std::make_unique<h2::Client>(
      impl->io.io(), impl->tls, impl->client_options(impl->config.host, impl->config.port));
  impl->token_http = impl->fcm_http.get();
  if (token_host != impl->config.host || token_port != impl->config.port) {
    impl->token_only = std::make_unique<h2::Client>(impl->io.io(), impl->tls,
                                                    impl->client_options(token_host, token_port));
    impl->token_http = impl->token_only.get();
  }
  impl->io.start();
  return std::unique_ptr<FcmClient>(new FcmClient(std::move(impl)));
}

FcmClient::FcmClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

FcmClient::~FcmClient() {
  impl_->io.stop([impl = impl_.get()] { impl->shutdown(); });
}

void FcmClient::send(const messaging::PushRequest& request, messaging::ProviderDone done) {
  impl_->send(request, std::move(done));
}

FcmStats FcmClient::stats() const {
  h2::ClientStats http = impl_->fcm_http->stats();
  if (impl_->token_only) {
    const h2::ClientStats token = impl_->token_only->stats();
    http.connections_opened += token.connections_opened;
    http.requests_retried += token.requests_retried;
    http.streams_in_flight += token.streams_in_flight;
    http.queued += token.queued;
  }
  FcmStats stats;
  stats.connections_opened = http.connections_opened;
  stats.tokens_fetched = impl_->tokens_fetched.load();
  stats.token_requests = impl_->token_requests.load();
  stats.sends_started = impl_->sends_started.load();
  stats.auth_retries = impl_->auth_retries.load();
  stats.requests_retried = http.requests_retried;
  stats.streams_in_flight = http.streams_in_flight;
  stats.queued = http.queued;
  stats.waiting_for_token = impl_->waiting_count.load();
  return stats;
}

}  // namespace herald::push
