#include "push/apns.h"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/ssl/context.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <chrono>
#include <memory>
#include <utility>

#include "base/assert.h"
#include "crypto/jwt.h"
#include "push/h2_client.h"

namespace herald::push {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using messaging::ProviderResult;

namespace {

constexpr std::size_t kSha256Bytes = 32;
constexpr std::size_t kUuidBytes = 16;
constexpr char kHexDigits[] = "0123456789abcdef";

std::array<unsigned char, kSha256Bytes> sha256(std::string_view data) {
  std::array<unsigned char, kSha256Bytes> digest{};
  unsigned int size = 0;
  const int ok = EVP_Digest(data.data(), data.size(), digest.data(), &size, EVP_sha256(), nullptr);
  HERALD_ASSERT(ok == 1 && size == kSha256Bytes, "SHA-256 failed");
  return digest;
}

std::string hex(const unsigned char* data, std::size_t size) {
  std::string out;
  out.reserve(2 * size);
  for (std::size_t i = 0; i < size; ++i) {
    out.push_back(kHexDigits[data[i] >> 4]);
    out.push_back(kHexDigits[data[i] & 0x0f]);
  }
  return out;
}

std::string serialize_payload(const messaging::PushRequest& request, std::string_view title,
                              std::string_view body) {
  boost::json::object alert;
  alert["title"] = title;
  alert["body"] = body;
  boost::json::object aps;
  aps["alert"] = std::move(alert);
  aps["thread-id"] = request.conversation_id;
  boost::json::object herald;
  herald["conversation_id"] = request.conversation_id;
  herald["seq"] = request.seq;
  boost::json::object root;
  root["aps"] = std::move(aps);
  root["herald"] = std::move(herald);
  return boost::json::serialize(root);
}

Status check_config(const ApnsConfig& config) {
  if (config.host.empty() || config.port == 0) {
    return Status::invalid_argument("APNs: host and port are required");
  }
  if (config.key_id.empty() || config.team_id.empty() || config.topic.empty()) {
    return Status::invalid_argument("APNs: key_id, team_id and topic are required");
  }
  if (config.token_refresh_ms < kApnsTokenMinRefreshMs ||
      config.token_refresh_ms > kApnsTokenMaxRefreshMs) {
    return Status::invalid_argument(fmt::format("APNs: token_refresh_ms must be within [{}, {}]",
                                                kApnsTokenMinRefreshMs, kApnsTokenMaxRefreshMs));
  }
  if (config.max_concurrent_streams == 0 ||
      config.max_concurrent_streams > kApnsMaxConcurrentStreams) {
    return Status::invalid_argument(fmt::format(
        "APNs: max_concurrent_streams must be within [1, {}]", kApnsMaxConcurrentStreams));
  }
  if (config.max_queued_requests > kApnsMaxQueuedRequests) {
    return Status::invalid_argument(
        fmt::format("APNs: max_queued_requests must be at most {}", kApnsMaxQueuedRequests));
  }
  if (config.request_timeout_ms <= 0 || config.connect_timeout_ms <= 0) {
    return Status::invalid_argument("APNs: timeouts must be positive");
  }
  return Status::ok_status();
}

// Longest apns-id response header kept, in bytes (a UUID is 36).
constexpr std::size_t kMaxResponseApnsIdBytes = 64;

// One send, across its attempts (the first, and one more after a rejected provider token).
struct ApnsSend {
  std::string path;  // /3/device/<token>
  std::string apns_id;
  std::string collapse_id;
  std::string payload;
  messaging::ProviderDone done;
  std::chrono::steady_clock::time_point deadline;
  bool token_retry_used = false;
  std::string token;  // the provider token of the current attempt
};
using SendPtr = std::shared_ptr<ApnsSend>;

}  // namespace

std::string apns_id_for(std::string_view idempotency_key) {
  std::array<unsigned char, kSha256Bytes> digest =
      sha256(std::string("herald-apns-id:").append(idempotency_key));
  digest[6] = static_cast<unsigned char>((digest[6] & 0x0f) | 0x80);  // version 8
  digest[8] = static_cast<unsigned char>((digest[8] & 0x3f) | 0x80);  // variant 10
  const std::string h = hex(digest.data(), kUuidBytes);
  return fmt::format("{}-{}-{}-{}-{}", h.substr(0, 8), h.substr(8, 4), h.substr(12, 4),
                     h.substr(16, 4), h.substr(20, 12));
}

std::string apns_collapse_id(std::string_view conversation_id) {
  return collapse_key_for(conversation_id);
}

Result<std::string> apns_payload(const messaging::PushRequest& request) {
  std::string full = serialize_payload(request, request.title, request.body);
  if (full.size() <= kApnsMaxPayloadBytes) {
    return full;
  }
  std::optional<std::string> payload = fit_field(
      request.body, kApnsMaxPayloadBytes,
      [&](std::string_view body) { return serialize_payload(request, request.title, body); });
  if (!payload) {
    payload = fit_field(request.title, kApnsMaxPayloadBytes, [&](std::string_view title) {
      return serialize_payload(request, title, "");
    });
  }
  if (!payload) {
    return Status::resource_exhausted(
        fmt::format("the APNs payload is over {} bytes even with an empty title and body",
                    kApnsMaxPayloadBytes));
  }
  return std::move(*payload);
}

Status check_device_token(std::string_view token) {
  if (token.empty() || token.size() > kApnsMaxDeviceTokenChars) {
    return Status::invalid_argument(
        fmt::format("an APNs device token has 1 to {} hex digits", kApnsMaxDeviceTokenChars));
  }
  const bool all_hex = std::all_of(token.begin(), token.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
  });
  if (!all_hex) {
    return Status::invalid_argument("an APNs device token is hex digits only");
  }
  return Status::ok_status();
}

messaging::ProviderResult map_apns_response(int status, std::string_view reason,
                                            std::optional<std::int64_t> retry_after_ms,
                                            std::string apns_id) {
  if (status == 200) {
    return ProviderResult::success(std::move(apns_id));
  }
  std::string message =
      fmt::format("APNs answered {} {}", status, reason.empty() ? "(no reason)" : reason);
  const auto fail = [&](const char* type) { return ProviderResult::failure(type, message); };
  if (status == 410) {
    return fail(messaging::kPushUnregistered);
  }
  if (status == 400 && (reason == "BadDeviceToken" || reason == "DeviceTokenNotForTopic")) {
    return fail(messaging::kPushInvalidToken);
  }
  if (status == 413) {
    return fail(messaging::kPushPayloadTooLarge);
  }
  if (status == 429 || status >= 500) {
    ProviderResult result = fail(messaging::kPushUnavailable);
    result.retry_after_ms = retry_after_ms;
    return result;
  }
  if (status == 403 && (reason == "ExpiredProviderToken" || reason == "InvalidProviderToken")) {
    return fail(messaging::kPushUnavailable);
  }
  if (status >= 400 && status < 500) {
    return fail(messaging::kPushRejected);
  }
  return fail(messaging::kPushUnavailable);
}

// ---------------------------------------------------------------------------------------------
// The client's I/O side. Everything below runs on the I/O thread unless it says otherwise.

struct ApnsClient::Impl {
  Impl(ApnsConfig config_in, const Clock& clock_in, crypto::JwtSigner signer_in)
      : config(std::move(config_in)),
        clock(clock_in),
        signer(std::move(signer_in)),
        tls(ssl::context::tls_client) {}

  // Any thread.
  void send(const messaging::PushRequest& request, messaging::ProviderDone done);

  // I/O thread.
  void attempt(const SendPtr& send, bool urgent);
  void answered(const SendPtr& send, Result<h2::Response> response);
  Result<std::string> current_token();
  bool refresh_after_rejection(const std::string& rejected);

  const ApnsConfig config;
  const Clock& clock;
  const crypto::JwtSigner signer;
  ssl::context tls;
  h2::IoThread io;
  std::unique_ptr<h2::Client> http;  // set before the thread starts

  // I/O thread only.
  std::string token;
  MonoMs token_issued_ms = 0;

  std::atomic<std::uint64_t> tokens_signed{0};
  std::atomic<std::uint64_t> token_retries{0};
};

void ApnsClient::Impl::send(const messaging::PushRequest& request, messaging::ProviderDone done) {
  if (const Status token_ok = check_device_token(request.token); !token_ok.ok()) {
    done(ProviderResult::failure(messaging::kPushInvalidToken, token_ok.message()));
    return;
  }
  Result<std::string> payload = apns_payload(request);
  if (!payload.ok()) {
    done(ProviderResult::failure(messaging::kPushPayloadTooLarge, payload.status().message()));
    return;
  }
  auto call = std::make_shared<ApnsSend>();
  call->path = "/3/device/" + request.token;
  call->apns_id = apns_id_for(request.idempotency_key);
  call->collapse_id = apns_collapse_id(request.conversation_id);
  call->payload = std::move(payload).value();
  call->done = std::move(done);
  call->deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(config.request_timeout_ms);
  if (!io.post([this, call] { attempt(call, false); })) {
    call->done(ProviderResult::failure(messaging::kPushUnavailable, "the APNs client is stopped"));
  }
}

void ApnsClient::Impl::attempt(const SendPtr& send, bool urgent) {
  Result<std::string> bearer = current_token();
  if (!bearer.ok()) {
    send->done(ProviderResult::failure(
        messaging::kPushUnavailable,
        "cannot sign the APNs provider token: " + bearer.status().message()));
    return;
  }
  send->token = std::move(bearer).value();
  h2::Request request;
  request.path = send->path;
  request.headers = {
      {"authorization", "bearer " + send->token},
      {"apns-topic", config.topic},
      {"apns-push-type", "alert"},
      {"apns-priority", "10"},
      {"apns-expiration", std::to_string(clock.wall_ms() / 1000 + kApnsExpirationSeconds)},
      {"apns-collapse-id", send->collapse_id},
      {"apns-id", send->apns_id},
      {"content-type", "application/json"},
  };
  request.body = send->payload;
  request.deadline = send->deadline;
  http->submit(
      std::move(request),
      [this, send](Result<h2::Response> response) { answered(send, std::move(response)); }, urgent);
}

void ApnsClient::Impl::answered(const SendPtr& send, Result<h2::Response> response) {
  if (!response.ok()) {
    send->done(ProviderResult::failure(messaging::kPushUnavailable, response.status().message()));
    return;
  }
  std::string reason;
  boost::system::error_code ec;
  const boost::json::value body = boost::json::parse(response->body, ec);
  if (!ec && body.is_object()) {
    if (const boost::json::value* r = body.as_object().if_contains("reason");
        r != nullptr && r->is_string()) {
      reason = std::string(r->as_string());
    }
  }
  const bool token_rejected = response->status == 403 && (reason == "ExpiredProviderToken" ||
                                                          reason == "InvalidProviderToken");
  if (token_rejected && !send->token_retry_used && refresh_after_rejection(send->token)) {
    send->token_retry_used = true;
    ++token_retries;
    attempt(send, true);
    return;
  }
  send->done(map_apns_response(response->status, reason,
                               parse_retry_after_ms(response->header("retry-after")),
                               response->header("apns-id").substr(0, kMaxResponseApnsIdBytes)));
}

Result<std::string> ApnsClient::Impl::current_token() {
  const MonoMs now = clock.mono_ms();
  if (!token.empty() && now - token_issued_ms < config.token_refresh_ms) {
    return token;
  }
  boost::json::object claims;
  claims["iss"] = config.team_id;
  claims["iat"] = clock.wall_ms() / 1000;
  boost::json::object header;
  header["kid"] = config.key_id;
  HERALD_ASSIGN_OR_RETURN(token, signer.sign(claims, header));
  token_issued_ms = now;
  ++tokens_signed;
  return token;
}

bool ApnsClient::Impl::refresh_after_rejection(const std::string& rejected) {
  if (rejected != token) {
    return true;  // already replaced since that request was sent
  }
  if (clock.mono_ms() - token_issued_ms < kApnsTokenMinRefreshMs) {
    return false;  // a fresh token is no better, and refreshing now would be throttled
  }
  token.clear();
  return true;
}

Result<std::unique_ptr<ApnsClient>> ApnsClient::create(ApnsConfig config, const Clock& clock) {
  HERALD_RETURN_IF_ERROR(check_config(config));
  HERALD_ASSIGN_OR_RETURN(const std::string key_pem,
                          read_small_file(config.key_pem_path, crypto::kMaxPemBytes));
  HERALD_ASSIGN_OR_RETURN(crypto::JwtSigner signer, crypto::JwtSigner::from_pem(key_pem));
  if (signer.algorithm() != crypto::JwtAlgorithm::kEs256) {
    return Status::invalid_argument("the APNs signing key must be a P-256 key (ES256)");
  }
  auto impl = std::make_unique<Impl>(std::move(config), clock, std::move(signer));
  if (const Status tls = h2::configure_client_tls(impl->tls, impl->config.ca_file); !tls.ok()) {
    return Status(tls.code(), "APNs: " + tls.message());
  }
  h2::ClientOptions options;
  options.service = "APNs";
  options.host = impl->config.host;
  options.port = impl->config.port;
  options.max_concurrent_streams = impl->config.max_concurrent_streams;
  options.max_queued_requests = impl->config.max_queued_requests;
  options.connect_timeout_ms = impl->config.connect_timeout_ms;
  options.max_response_body_bytes = kApnsMaxResponseBodyBytes;
  options.seed = impl->config.seed;
  impl->http = std::make_unique<h2::Client>(impl->io.io(), impl->tls, std::move(options));
  impl->io.start();
  return std::unique_ptr<ApnsClient>(new ApnsClient(std::move(impl)));
}

ApnsClient::ApnsClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ApnsClient::~ApnsClient() {
  impl_->io.stop([impl = impl_.get()] { impl->http->shutdown(); });
}

void ApnsClient::send(const messaging::PushRequest& request, messaging::ProviderDone done) {
  impl_->send(request, std::move(done));
}

ApnsStats ApnsClient::stats() const {
  const h2::ClientStats http = impl_->http->stats();
  ApnsStats stats;
  stats.connections_opened = http.connections_opened;
  stats.tokens_signed = impl_->tokens_signed.load();
  stats.requests_sent = http.requests_sent;
  stats.requests_retried = http.requests_retried + impl_->token_retries.load();
  stats.streams_in_flight = http.streams_in_flight;
  stats.queued = http.queued;
  return stats;
}

}  // namespace herald::push
