#include "push/apns_mock.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "base/assert.h"
#include "crypto/jwt.h"
#include "push/apns.h"
#include "push/h2_server.h"

namespace herald::push::testing {

namespace {

// Age APNs accepts a provider token for, in seconds.
constexpr std::int64_t kTokenMaxAgeSeconds = 3600;
constexpr std::size_t kUuidChars = 36;
// Distinct provider tokens whose successful verification is remembered, at most (a client uses
// one at a time; the table is emptied when full).
constexpr std::size_t kMaxVerifiedTokens = 16;

// A token that verified at verified_at_s, and the last second through which every time check of
// verify() passes for it too (before its age or exp runs out).
struct VerifiedToken {
  crypto::VerifiedJwt jwt;
  std::int64_t verified_at_s = 0;
  std::int64_t valid_until_s = 0;
};

struct Answer {
  int status = 200;
  std::string reason;
  std::optional<std::int64_t> retry_after_s;
};

// One device token's notification centre (ApnsMock::presented, ApnsMock::tray).
struct DeviceNotifications {
  std::vector<ApnsMockNotification> presented;    // in arrival order, one per apns-id
  std::map<std::string, std::size_t> by_apns_id;  // apns-id -> index in presented
  std::vector<std::size_t> tray;                  // indexes in presented, oldest first

  // A notification APNs accepted reaches the device.
  void deliver(const std::string& apns_id, const std::string& collapse_id,
               const std::string& body) {
    if (const auto known = by_apns_id.find(apns_id); known != by_apns_id.end()) {
      ++presented[known->second].deliveries;  // the same notification again: shown once
      return;
    }
    const std::string& key = collapse_id.empty() ? apns_id : collapse_id;
    std::erase_if(tray, [&](std::size_t i) {
      const ApnsMockNotification& shown = presented[i];
      return (shown.collapse_id.empty() ? shown.apns_id : shown.collapse_id) == key;
    });
    by_apns_id.emplace(apns_id, presented.size());
    tray.push_back(presented.size());
    presented.push_back(ApnsMockNotification{apns_id, collapse_id, body, 1});
  }
};

bool is_uuid(std::string_view id) {
  if (id.size() != kUuidChars) {
    return false;
  }
  for (std::size_t i = 0; i < id.size(); ++i) {
    const char c = id[i];
    const bool hyphen_place = i == 8 || i == 13 || i == 18 || i == 23;
    const bool hex_digit =
        (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    if (hyphen_place ? c != '-' : !hex_digit) {
      return false;
    }
  }
  return true;
}

ApnsMockRequest to_apns_request(const H2ServerRequest& request) {
  ApnsMockRequest out;
  out.connection = request.connection;
  out.stream_id = request.stream_id;
  out.method = request.method;
  out.path = request.path;
  out.headers = request.headers;
  out.body = request.body;
  const std::string prefix = "/3/device/";
  if (out.path.starts_with(prefix)) {
    out.device_token = out.path.substr(prefix.size());
  }
  return out;
}

}  // namespace

struct ApnsMock::Impl final : H2ServerHandler {
  Impl(ApnsMockOptions options_in, const Clock& clock_in, crypto::JwtVerifier verifier_in)
      : options(std::move(options_in)), clock(clock_in), verifier(std::move(verifier_in)) {}

  H2ServerAnswer decide(const H2ServerRequest& request, std::size_t& tag) override;
  void unanswered(const H2ServerRequest& request) override {
    const std::lock_guard lock(mu);
    ++count;
    if (options.record_requests) {
      log.push_back(to_apns_request(request));
    }
  }
  void answered(std::size_t tag, const H2ServerAnswer& answer) override {
    if (!options.record_requests) {
      return;
    }
    const std::lock_guard lock(mu);
    HERALD_ASSERT(tag < log.size(), "an answered request is logged");
    log[tag].status = answer.status;
  }
  [[nodiscard]] std::string check(ApnsMockRequest& request, Answer& answer) const;
  // verifier.verify(token, checks), remembering tokens that passed: the ES256 signature check
  // dominated the double's CPU. A remembered token is answered without a new signature check
  // only while checks.now_s is within [verified_at_s, valid_until_s], where verify() would pass
  // it again; outside, it is verified afresh.
  [[nodiscard]] Result<crypto::VerifiedJwt> verify_token(const std::string& token,
                                                         const crypto::JwtChecks& checks) const;

  const ApnsMockOptions options;
  const Clock& clock;
  const crypto::JwtVerifier verifier;
  std::unique_ptr<H2TestServer> server;

  mutable std::mutex mu;
  std::deque<Answer> scripted;                  // guarded by mu
  std::map<std::string, Answer> token_answers;  // guarded by mu
  std::vector<ApnsMockRequest> log;             // guarded by mu; when options.record_requests
  std::size_t count = 0;                        // guarded by mu: requests handled
  // By device token; guarded by mu; when options.record_requests.
  std::map<std::string, DeviceNotifications> devices;

  mutable std::mutex verified_mu;
  mutable std::map<std::string, VerifiedToken> verified;  // guarded by verified_mu
};

Result<crypto::VerifiedJwt> ApnsMock::Impl::verify_token(const std::string& token,
                                                         const crypto::JwtChecks& checks) const {
  {
    const std::lock_guard lock(verified_mu);
    const auto it = verified.find(token);
    if (it != verified.end() && checks.now_s >= it->second.verified_at_s &&
        checks.now_s <= it->second.valid_until_s) {
      return it->second.jwt;
    }
  }
  Result<crypto::VerifiedJwt> jwt = verifier.verify(token, checks);
  if (!jwt.ok() || !checks.max_age_s || checks.clock_skew_s != 0) {
    return jwt;
  }
  const boost::json::value* iat = jwt->claims.if_contains("iat");
  const boost::json::value* exp = jwt->claims.if_contains("exp");
  const boost::json::value* nbf = jwt->claims.if_contains("nbf");
  if (iat == nullptr || !iat->is_int64() || (exp != nullptr && !exp->is_int64()) ||
      (nbf != nullptr && !nbf->is_int64())) {
    return jwt;  // only plain integer times are remembered
  }
  VerifiedToken entry{*jwt, checks.now_s, iat->as_int64() + *checks.max_age_s};
  if (exp != nullptr) {
    entry.valid_until_s = std::min(entry.valid_until_s, exp->as_int64() - 1);
  }
  const std::lock_guard lock(verified_mu);
  if (verified.size() >= kMaxVerifiedTokens) {
    verified.clear();
  }
  verified.insert_or_assign(token, std::move(entry));
  return jwt;
}

std::string ApnsMock::Impl::check(ApnsMockRequest& request, Answer& answer) const {
  const auto fail = [&](int status, const char* reason, std::string why) {
    answer = Answer{status, reason, std::nullopt};
    return why;
  };
  if (request.method != "POST") {
    return fail(405, "MethodNotAllowed", "method " + request.method);
  }
  if (request.device_token.empty() || !check_device_token(request.device_token).ok()) {
    return fail(404, "BadPath", "path " + request.path);
  }
  const std::string& authorization = request.headers["authorization"];
  if (!authorization.starts_with("bearer ")) {
    return fail(403, "MissingProviderToken", "no bearer token");
  }
  request.jwt = authorization.substr(std::strlen("bearer "));
  crypto::JwtChecks checks;
  checks.now_s = clock.wall_ms() / 1000;
  checks.require_exp = false;
  checks.max_age_s = kTokenMaxAgeSeconds;
  checks.issuer = options.team_id;
  const Result<crypto::VerifiedJwt> jwt = verify_token(request.jwt, checks);
  if (!jwt.ok()) {
    return jwt.status().code() == Code::kFailedPrecondition
               ? fail(403, "ExpiredProviderToken", jwt.status().to_string())
               : fail(403, "InvalidProviderToken", jwt.status().to_string());
  }
  if (const boost::json::value* iat = jwt->claims.if_contains("iat");
      iat != nullptr && iat->is_int64()) {
    request.jwt_iat = iat->as_int64();
  }
  const boost::json::value* kid = jwt->header.if_contains("kid");
  if (kid == nullptr || !kid->is_string() || kid->as_string() != options.key_id) {
    return fail(403, "InvalidProviderToken", "kid");
  }
  const std::map<std::string, std::string>& h = request.headers;
  const auto header = [&](const char* name) {
    const auto it = h.find(name);
    return it == h.end() ? std::string() : it->second;
  };
  if (header("apns-topic") != options.topic) {
    return fail(400, "BadTopic", "apns-topic " + header("apns-topic"));
  }
  if (header("apns-push-type") != "alert") {
    return fail(400, "InvalidPushType", "apns-push-type " + header("apns-push-type"));
  }
  const std::string priority = header("apns-priority");
  if (priority != "10" && priority != "5" && priority != "1") {
    return fail(400, "BadPriority", "apns-priority " + priority);
  }
  const std::string expiration = header("apns-expiration");
  if (expiration.empty() || expiration.find_first_not_of("0123456789") != std::string::npos) {
    return fail(400, "BadExpirationDate", "apns-expiration " + expiration);
  }
  if (header("apns-collapse-id").size() > kApnsMaxCollapseIdBytes) {
    return fail(400, "BadCollapseId", "apns-collapse-id");
  }
  if (!is_uuid(header("apns-id"))) {
    return fail(400, "BadMessageId", "apns-id " + header("apns-id"));
  }
  if (request.body.size() > kApnsMaxPayloadBytes) {
    return fail(413, "PayloadTooLarge", fmt::format("{} bytes", request.body.size()));
  }
  boost::system::error_code ec;
  const boost::json::value body = boost::json::parse(request.body, ec);
  if (ec || !body.is_object() || !body.as_object().contains("aps")) {
    return fail(400, request.body.empty() ? "PayloadEmpty" : "BadPayload", "body");
  }
  return {};
}

H2ServerAnswer ApnsMock::Impl::decide(const H2ServerRequest& raw, std::size_t& tag) {
  ApnsMockRequest request = to_apns_request(raw);
  Answer answer;
  request.check_failed = check(request, answer);
  {
    const std::lock_guard lock(mu);
    if (request.check_failed.empty()) {
      if (!scripted.empty()) {
        answer = scripted.front();
        scripted.pop_front();
      } else if (const auto it = token_answers.find(request.device_token);
                 it != token_answers.end()) {
        answer = it->second;
      }
    }
    request.reason = answer.reason;
    ++count;
    tag = log.size();
    if (options.record_requests) {
      if (answer.status == 200) {
        const auto header = [&](const char* name) {
          const auto it = request.headers.find(name);
          return it == request.headers.end() ? std::string() : it->second;
        };
        devices[request.device_token].deliver(header("apns-id"), header("apns-collapse-id"),
                                              request.body);
      }
      log.push_back(request);
    }
  }
  if (options.on_request) {
    request.status = answer.status;
    options.on_request(request);
  }

  H2ServerAnswer out;
  out.status = answer.status;
  const auto apns_id = request.headers.find("apns-id");
  out.headers.emplace_back("apns-id", apns_id != request.headers.end()
                                          ? apns_id->second
                                          : std::string("00000000-0000-0000-0000-000000000000"));
  if (answer.retry_after_s) {
    out.headers.emplace_back("retry-after", std::to_string(*answer.retry_after_s));
  }
  if (answer.status != 200) {
    boost::json::object body;
    body["reason"] = answer.reason;
    out.body = boost::json::serialize(body);
    out.headers.emplace_back("content-type", "application/json");
  }
  return out;
}

Result<std::unique_ptr<ApnsMock>> ApnsMock::start(ApnsMockOptions options, const Clock& clock) {
  HERALD_ASSIGN_OR_RETURN(crypto::JwtVerifier verifier,
                          crypto::JwtVerifier::from_pem(options.provider_public_pem));
  auto impl = std::make_unique<Impl>(std::move(options), clock, std::move(verifier));
  HERALD_ASSIGN_OR_RETURN(impl->server,
                          H2TestServer::start(*impl, impl->options.max_concurrent_streams));
  return std::unique_ptr<ApnsMock>(new ApnsMock(std::move(impl)));
}

ApnsMock::ApnsMock(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ApnsMock::~ApnsMock() {
  impl_->server.reset();  // joins the server's thread before the handler goes
}

std::uint16_t ApnsMock::port() const {
  return impl_->server->port();
}
const std::string& ApnsMock::ca_file() const {
  return impl_->server->ca_file();
}

void ApnsMock::fail_next(std::size_t count, int status, const std::string& reason,
                         std::optional<std::int64_t> retry_after_s) {
  const std::lock_guard lock(impl_->mu);
  for (std::size_t i = 0; i < count; ++i) {
    impl_->scripted.push_back(Answer{status, reason, retry_after_s});
  }
}

void ApnsMock::answer_token(const std::string& device_token, int status,
                            const std::string& reason) {
  const std::lock_guard lock(impl_->mu);
  impl_->token_answers[device_token] = Answer{status, reason, std::nullopt};
}

void ApnsMock::set_delay_ms(std::int64_t delay_ms) {
  impl_->server->set_delay_ms(delay_ms);
}
void ApnsMock::release_held() {
  impl_->server->release_held();
}
void ApnsMock::drop_next_request() {
  impl_->server->drop_next_request();
}
void ApnsMock::goaway_after(std::size_t requests) {
  impl_->server->goaway_after(requests);
}

std::vector<ApnsMockRequest> ApnsMock::requests() const {
  const std::lock_guard lock(impl_->mu);
  return impl_->log;
}

std::vector<ApnsMockNotification> ApnsMock::presented(const std::string& device_token) const {
  const std::lock_guard lock(impl_->mu);
  const auto it = impl_->devices.find(device_token);
  return it == impl_->devices.end() ? std::vector<ApnsMockNotification>() : it->second.presented;
}

std::vector<ApnsMockNotification> ApnsMock::tray(const std::string& device_token) const {
  const std::lock_guard lock(impl_->mu);
  std::vector<ApnsMockNotification> shown;
  if (const auto it = impl_->devices.find(device_token); it != impl_->devices.end()) {
    for (const std::size_t i : it->second.tray) {
      shown.push_back(it->second.presented[i]);
    }
  }
  return shown;
}

std::size_t ApnsMock::request_count() const {
  const std::lock_guard lock(impl_->mu);
  return impl_->count;
}

std::size_t ApnsMock::connections() const {
  return impl_->server->connections();
}
std::size_t ApnsMock::pending() const {
  return impl_->server->pending();
}
std::size_t ApnsMock::max_pending() const {
  return impl_->server->max_pending();
}

}  // namespace herald::push::testing
