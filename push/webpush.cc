#include "push/webpush.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <cctype>
#include <chrono>
#include <map>
#include <utility>

#include "base/assert.h"
#include "base/log.h"
#include "crypto/base64url.h"
#include "net/curl_provider.h"
#include "push/common.h"

namespace herald::push {

using messaging::ProviderResult;

namespace {

// Deepest JSON accepted in a subscription: the object and its "keys".
constexpr std::size_t kMaxSubscriptionDepth = 4;
constexpr char kTopicPrefix[] = "herald-topic:";
// Bytes of the topic's hash kept: 24 bytes are exactly kWebPushTopicChars base64url characters.
constexpr std::size_t kTopicHashBytes = kWebPushTopicChars / 4 * 3;
constexpr std::size_t kSha256Bytes = 32;
// The longest TTL accepted in the options, in seconds: four weeks (push services cap it lower).
constexpr std::int64_t kMaxTtlSeconds = 28 * kWebPushTtlSeconds;
// Response text quoted in an error message, at most, in bytes.
constexpr std::size_t kQuotedBodyBytes = 200;
// Response headers of interest, and how long a kept value may be.
constexpr std::size_t kMaxRetryAfterChars = 32;

std::string lowercase(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// Printable ASCII only, for quoting a push service's words in a message.
std::string printable(std::string_view text, std::size_t max_bytes) {
  std::string out;
  for (const char c : text.substr(0, max_bytes)) {
    out.push_back(c >= 0x20 && c < 0x7f ? c : ' ');
  }
  return out;
}

bool is_public_v4(const unsigned char* a) {
  const auto in = [&](unsigned first, unsigned second_min, unsigned second_max) {
    return a[0] == first && a[1] >= second_min && a[1] <= second_max;
  };
  return !(a[0] == 0 || a[0] == 10 || a[0] == 127 || a[0] >= 224 ||  // this, private, loop, mc
           in(100, 64, 127) ||                                       // shared address space
           in(169, 254, 254) ||                                      // link-local
           in(172, 16, 31) ||                                        // private
           in(192, 168, 168) ||                                      // private
           (a[0] == 192 && a[1] == 0 && a[2] == 0) ||                // IETF protocol assignments
           in(198, 18, 19));                                         // benchmarking
}

bool is_public_v6(const unsigned char* a) {
  static constexpr unsigned char kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::equal(a, a + 12, kMappedPrefix)) {
    return is_public_v4(a + 12);
  }
  const bool all_zero_but_last = std::all_of(a, a + 15, [](unsigned char b) { return b == 0; });
  if (all_zero_but_last && a[15] <= 1) {
    return false;  // :: and ::1
  }
  return !((a[0] & 0xfeU) == 0xfc ||                    // unique local fc00::/7
           (a[0] == 0xfe && (a[1] & 0xc0U) == 0x80) ||  // link-local fe80::/10
           a[0] == 0xff);                               // multicast
}

bool is_public_sockaddr(const sockaddr* address) {
  if (address->sa_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(address);
    return is_public_v4(reinterpret_cast<const unsigned char*>(&v4->sin_addr));
  }
  if (address->sa_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(address);
    return is_public_v6(reinterpret_cast<const unsigned char*>(&v6->sin6_addr));
  }
  return false;
}

std::string serialize_payload(const messaging::PushRequest& request, std::string_view title,
                              std::string_view body) {
  boost::json::object payload;
  payload["conversation_id"] = request.conversation_id;
  payload["seq"] = std::to_string(request.seq);
  payload["title"] = title;
  payload["body"] = body;
  payload["idempotency_key"] = request.idempotency_key;
  return boost::json::serialize(payload);
}

Status check_options(const WebPushOptions& options) {
  HERALD_RETURN_IF_ERROR(check_vapid_subject(options.vapid_subject));
  if (options.ttl_s < 0 || options.ttl_s > kMaxTtlSeconds) {
    return Status::invalid_argument(
        fmt::format("Web Push: ttl_s must be within [0, {}]", kMaxTtlSeconds));
  }
  if (options.vapid_refresh_margin_s < 0 ||
      options.vapid_lifetime_s <= options.vapid_refresh_margin_s ||
      options.vapid_lifetime_s > kVapidMaxLifetimeSeconds) {
    return Status::invalid_argument(fmt::format(
        "Web Push: vapid_lifetime_s must be within (vapid_refresh_margin_s, {}] and the margin "
        "not negative",
        kVapidMaxLifetimeSeconds));
  }
  if (options.max_concurrent == 0 || options.max_concurrent > kWebPushMaxConcurrent) {
    return Status::invalid_argument(
        fmt::format("Web Push: max_concurrent must be within [1, {}]", kWebPushMaxConcurrent));
  }
  if (options.max_queued > kWebPushMaxQueued) {
    return Status::invalid_argument(
        fmt::format("Web Push: max_queued must be at most {}", kWebPushMaxQueued));
  }
  if (options.request_timeout_ms <= 0 || options.connect_timeout_ms <= 0) {
    return Status::invalid_argument("Web Push: timeouts must be positive");
  }
  return Status::ok_status();
}

}  // namespace

bool is_public_ip(std::string_view ip) {
  const std::string text(ip);
  std::array<unsigned char, sizeof(in6_addr)> bytes{};
  if (inet_pton(AF_INET, text.c_str(), bytes.data()) == 1) {
    return is_public_v4(bytes.data());
  }
  if (inet_pton(AF_INET6, text.c_str(), bytes.data()) == 1) {
    return is_public_v6(bytes.data());
  }
  return false;
}

Result<WebPushSubscription> parse_subscription(std::string_view token) {
  if (token.size() > messaging::kMaxWebPushTokenBytes) {
    return Status::invalid_argument(
        fmt::format("the Web Push subscription has {} bytes; at most {} are accepted", token.size(),
                    messaging::kMaxWebPushTokenBytes));
  }
  boost::json::parse_options parse_options;
  parse_options.max_depth = kMaxSubscriptionDepth;
  boost::system::error_code ec;
  const boost::json::value root = boost::json::parse(token, ec, {}, parse_options);
  if (ec || !root.is_object()) {
    return Status::invalid_argument(
        "the Web Push subscription is not a JSON object (PushSubscription.toJSON())");
  }
  const boost::json::object& object = root.as_object();
  const boost::json::value* endpoint = object.if_contains("endpoint");
  if (endpoint == nullptr || !endpoint->is_string()) {
    return Status::invalid_argument("the Web Push subscription has no string \"endpoint\"");
  }
  std::string endpoint_url(endpoint->as_string());
  if (std::any_of(endpoint_url.begin(), endpoint_url.end(),
                  [](char c) { return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f; })) {
    return Status::invalid_argument("the Web Push endpoint holds a space or a control character");
  }
  if (endpoint_url.find('#') != std::string::npos) {
    return Status::invalid_argument("the Web Push endpoint has a fragment");
  }
  Result<std::string> origin = endpoint_origin(endpoint_url);
  if (!origin.ok()) {
    return Status::invalid_argument("the Web Push endpoint: " + origin.status().message());
  }
  if (!origin->starts_with("https://")) {
    return Status::invalid_argument("the Web Push endpoint is not an https URL");
  }
  const boost::json::value* keys = object.if_contains("keys");
  if (keys == nullptr || !keys->is_object()) {
    return Status::invalid_argument("the Web Push subscription has no \"keys\" object");
  }
  const boost::json::value* p256dh = keys->as_object().if_contains("p256dh");
  const boost::json::value* auth = keys->as_object().if_contains("auth");
  if (p256dh == nullptr || !p256dh->is_string() || auth == nullptr || !auth->is_string()) {
    return Status::invalid_argument(
        "the Web Push subscription's keys need string \"p256dh\" and \"auth\"");
  }
  Result<WebPushSubscriptionKeys> parsed =
      parse_subscription_keys(p256dh->as_string(), auth->as_string());
  if (!parsed.ok()) {
    return Status::invalid_argument("the Web Push subscription's keys: " +
                                    parsed.status().message());
  }
  return WebPushSubscription{std::move(endpoint_url), std::move(origin).value(),
                             std::move(parsed).value()};
}

std::string webpush_topic(std::string_view conversation_id) {
  const std::string input = kTopicPrefix + std::string(conversation_id);
  std::array<unsigned char, kSha256Bytes> digest{};
  unsigned int size = 0;
  const int ok =
      EVP_Digest(input.data(), input.size(), digest.data(), &size, EVP_sha256(), nullptr);
  HERALD_ASSERT(ok == 1 && size == kSha256Bytes, "SHA-256 failed");
  std::string topic = crypto::base64url_encode(
      std::string_view(reinterpret_cast<const char*>(digest.data()), kTopicHashBytes));
  HERALD_ASSERT(topic.size() == kWebPushTopicChars, "a topic has 32 characters");
  return topic;
}

Result<std::string> webpush_payload(const messaging::PushRequest& request) {
  std::string full = serialize_payload(request, request.title, request.body);
  if (full.size() <= kWebPushMaxPlaintextBytes) {
    return full;
  }
  std::optional<std::string> payload = fit_field(
      request.body, kWebPushMaxPlaintextBytes,
      [&](std::string_view body) { return serialize_payload(request, request.title, body); });
  if (!payload) {
    payload = fit_field(request.title, kWebPushMaxPlaintextBytes, [&](std::string_view title) {
      return serialize_payload(request, title, "");
    });
  }
  if (!payload) {
    return Status::resource_exhausted(
        fmt::format("the Web Push payload is over {} bytes even with an empty title and body",
                    kWebPushMaxPlaintextBytes));
  }
  return std::move(*payload);
}

messaging::ProviderResult map_webpush_response(int status,
                                               std::optional<std::int64_t> retry_after_ms,
                                               std::string location, std::string_view body) {
  if (status >= 200 && status < 300) {
    return ProviderResult::success(std::move(location));
  }
  const std::string quoted = printable(body, kQuotedBodyBytes);
  std::string message =
      fmt::format("the push service answered {}{}{}", status, quoted.empty() ? "" : ": ", quoted);
  const auto fail = [&](const char* type) { return ProviderResult::failure(type, message); };
  switch (status) {
    case 404:
    case 410: return fail(messaging::kPushUnregistered);  // the subscription expired or was removed
    case 403:
      // After the VAPID retry: the subscription was made with another applicationServerKey.
      return fail(messaging::kPushInvalidToken);
    case 401: return fail(messaging::kPushUnavailable);  // our token refused twice: retried later
    case 400:
    case 413: return fail(messaging::kPushRejected);
    default: break;
  }
  if (status == 429 || status >= 500) {
    ProviderResult result = fail(messaging::kPushUnavailable);
    result.retry_after_ms = retry_after_ms;
    return result;
  }
  if (status >= 400 && status < 500) {
    return fail(messaging::kPushRejected);
  }
  return fail(messaging::kPushUnavailable);
}

// ---------------------------------------------------------------------------------------------
// The provider's I/O side.

namespace {

using net::SteadyTime;

struct CachedVapid {
  std::string header;
  std::int64_t expires_s = 0;
};

}  // namespace

// One request, from send() to done, across its attempts (the first, and one more after a VAPID
// refusal): a job of the provider's transfer loop (net/curl_provider.h).
struct WebPushCall final : net::CurlRequest {
  WebPushCall(WebPushProvider::Impl* impl_in, messaging::ProviderDone done, SteadyTime deadline,
              WebPushSubscription subscription_in);

  [[nodiscard]] Result<CURL*> begin() override;
  [[nodiscard]] bool run_again(CURLcode code) override;
  void ended(CURLcode code) override;
  void release() override {
    easy.reset();
    headers.reset();
  }

  WebPushProvider::Impl* impl = nullptr;
  WebPushSubscription subscription;
  std::string plaintext;
  std::string topic;
  bool vapid_retry_used = false;
  // The current attempt.
  std::string body;           // encrypted
  std::string authorization;  // the VAPID header value sent
  net::CurlEasyPtr easy;
  net::CurlSlistPtr headers;
  std::string location;
  std::string retry_after;
  std::string response_body;
  bool address_refused = false;
  std::array<char, CURL_ERROR_SIZE> error{};
};

namespace {

std::size_t read_header(char* buffer, std::size_t size, std::size_t count, void* user) {
  auto& call = *static_cast<WebPushCall*>(user);
  std::string_view line(buffer, size * count);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) {
    line.remove_suffix(1);
  }
  if (line.starts_with("HTTP/")) {  // a new response (after an interim one): start over
    call.location.clear();
    call.retry_after.clear();
    return size * count;
  }
  const std::size_t colon = line.find(':');
  if (colon == std::string_view::npos) {
    return size * count;
  }
  const std::string name = lowercase(line.substr(0, colon));
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) {
    value.remove_prefix(1);
  }
  if (name == "location") {
    call.location = printable(value, kWebPushMaxLocationBytes);
  } else if (name == "retry-after") {
    call.retry_after = std::string(value.substr(0, kMaxRetryAfterChars));
  }
  return size * count;
}

// The HTTP status of the response the transfer got; 0 when there was none.
long response_status(CURL* easy) {
  long status = 0;
  if (curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK) {
    status = 0;
  }
  return status;
}

std::size_t read_body(char* buffer, std::size_t size, std::size_t count, void* user) {
  auto& call = *static_cast<WebPushCall*>(user);
  const std::size_t room = kWebPushMaxResponseBodyBytes - call.response_body.size();
  call.response_body.append(buffer, std::min(room, size * count));
  return size * count;
}

}  // namespace

struct WebPushProvider::Impl {
  Impl(WebPushOptions options_in, const Clock& clock_in, VapidKey key_in)
      : options(std::move(options_in)), clock(clock_in), key(std::move(key_in)) {}

  // Any thread.
  void send(const messaging::PushRequest& request, messaging::ProviderDone done);

  // I/O thread.
  Status start(WebPushCall& call);
  Status set_options(WebPushCall& call);
  Result<std::string> vapid_for(const WebPushSubscription& subscription);
  // True when the push service refused the first attempt's VAPID token (401 or 403): that token
  // is dropped, so that the attempt to follow signs a new one.
  bool vapid_refused(WebPushCall& call, CURLcode code);
  void complete(WebPushCall& call, CURLcode code);
  static curl_socket_t open_socket(void* call, curlsocktype purpose, curl_sockaddr* address);

  const WebPushOptions options;
  const Clock& clock;
  const VapidKey key;

  // I/O thread only.
  std::map<std::string, CachedVapid> vapid_cache;  // by origin

  std::atomic<std::uint64_t> vapid_signed{0};
  std::atomic<std::uint64_t> vapid_retries{0};
  std::atomic<std::uint64_t> connections_opened{0};
  std::atomic<std::uint64_t> addresses_refused{0};
  // Last, so that it is destroyed first.
  std::unique_ptr<net::CurlProvider> transfers;
};

WebPushCall::WebPushCall(WebPushProvider::Impl* impl_in, messaging::ProviderDone done,
                         SteadyTime deadline, WebPushSubscription subscription_in)
    : net::CurlRequest(*impl_in->transfers, std::move(done), deadline),
      impl(impl_in),
      subscription(std::move(subscription_in)) {}

void WebPushProvider::Impl::send(const messaging::PushRequest& request,
                                 messaging::ProviderDone done) {
  Result<WebPushSubscription> subscription = parse_subscription(request.token);
  if (!subscription.ok()) {
    transfers->fail_now(done, messaging::kPushInvalidToken, subscription.status().message());
    return;
  }
  Result<std::string> plaintext = webpush_payload(request);
  if (!plaintext.ok()) {
    transfers->fail_now(done, messaging::kPushPayloadTooLarge, plaintext.status().message());
    return;
  }
  auto call = std::make_shared<WebPushCall>(
      this, std::move(done),
      std::chrono::steady_clock::now() + std::chrono::milliseconds(options.request_timeout_ms),
      std::move(subscription).value());
  call->plaintext = std::move(plaintext).value();
  call->topic = webpush_topic(request.conversation_id);
  transfers->submit(call);
}

Result<CURL*> WebPushCall::begin() {
  HERALD_RETURN_IF_ERROR(impl->start(*this));
  return easy.get();
}

bool WebPushCall::run_again(CURLcode code) {
  return impl->vapid_refused(*this, code);
}

void WebPushCall::ended(CURLcode code) {
  impl->complete(*this, code);
}

Result<std::string> WebPushProvider::Impl::vapid_for(const WebPushSubscription& subscription) {
  const std::int64_t now_s = clock.wall_ms() / 1000;
  if (const auto it = vapid_cache.find(subscription.origin);
      it != vapid_cache.end() && now_s < it->second.expires_s - options.vapid_refresh_margin_s) {
    return it->second.header;
  }
  HERALD_ASSIGN_OR_RETURN(std::string header,
                          key.authorization(subscription.endpoint, options.vapid_subject, now_s,
                                            options.vapid_lifetime_s));
  ++vapid_signed;
  if (vapid_cache.size() >= kWebPushMaxCachedOrigins &&
      !vapid_cache.contains(subscription.origin)) {
    const auto oldest = std::min_element(
        vapid_cache.begin(), vapid_cache.end(),
        [](const auto& a, const auto& b) { return a.second.expires_s < b.second.expires_s; });
    vapid_cache.erase(oldest);
  }
  vapid_cache[subscription.origin] = CachedVapid{header, now_s + options.vapid_lifetime_s};
  return header;
}

Status WebPushProvider::Impl::start(WebPushCall& call) {
  // Fresh secrets for every attempt: a sender key and salt are never used twice.
  Result<WebPushSenderSecrets> secrets = fresh_sender_secrets();
  if (!secrets.ok()) {
    return Status::unavailable("cannot draw Web Push sender secrets: " +
                               secrets.status().message());
  }
  Result<std::string> body = encrypt_webpush(call.subscription.keys, call.plaintext, *secrets);
  if (!body.ok()) {
    return Status::unavailable("cannot encrypt the Web Push message: " + body.status().message());
  }
  call.body = std::move(body).value();
  Result<std::string> authorization = vapid_for(call.subscription);
  if (!authorization.ok()) {
    return Status::unavailable("cannot sign the VAPID token: " + authorization.status().message());
  }
  call.authorization = std::move(authorization).value();
  call.location.clear();
  call.retry_after.clear();
  call.response_body.clear();
  call.address_refused = false;
  call.error[0] = '\0';
  return set_options(call);
}

Status WebPushProvider::Impl::set_options(WebPushCall& call) {
  call.easy.reset(curl_easy_init());
  curl_slist* headers = nullptr;
  for (const std::string& header :
       {fmt::format("TTL: {}", options.ttl_s), std::string("Urgency: high"), "Topic: " + call.topic,
        std::string("Content-Encoding: aes128gcm"),
        std::string("Content-Type: application/octet-stream"),
        "Authorization: " + call.authorization,
        std::string("Expect:")}) {  // no 100-continue round trip over HTTP/1.1
    curl_slist* appended = curl_slist_append(headers, header.c_str());
    if (appended == nullptr) {
      curl_slist_free_all(headers);
      headers = nullptr;
      break;
    }
    headers = appended;
  }
  call.headers.reset(headers);
  if (!call.easy || !call.headers) {
    return Status::unavailable("libcurl could not set up a transfer (out of memory)");
  }
  const auto remaining_ms =
      std::max<std::int64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                 call.deadline - std::chrono::steady_clock::now())
                                 .count(),
                             1);
  CURL* easy = call.easy.get();
  bool ok = true;
  const auto set = [&](CURLoption option, auto value) {
    ok = ok && curl_easy_setopt(easy, option, value) == CURLE_OK;
  };
  set(CURLOPT_URL, call.subscription.endpoint.c_str());
  set(CURLOPT_PROTOCOLS_STR, "https");
  set(CURLOPT_FOLLOWLOCATION, 0L);
  set(CURLOPT_NOSIGNAL, 1L);
  set(CURLOPT_ERRORBUFFER, call.error.data());
  set(CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS));
  // Wait for a connection being opened to the same host to say whether it multiplexes, rather
  // than opening one per request.
  set(CURLOPT_PIPEWAIT, 1L);
  set(CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2));
  if (!options.ca_file.empty()) {
    set(CURLOPT_CAINFO, options.ca_file.c_str());
  }
  set(CURLOPT_POST, 1L);
  set(CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(call.body.size()));
  set(CURLOPT_POSTFIELDS, call.body.data());  // not copied: the call keeps it
  set(CURLOPT_HTTPHEADER, call.headers.get());
  set(CURLOPT_HEADERFUNCTION, &read_header);
  set(CURLOPT_HEADERDATA, &call);
  set(CURLOPT_WRITEFUNCTION, &read_body);
  set(CURLOPT_WRITEDATA, &call);
  set(CURLOPT_CONNECTTIMEOUT_MS,
      static_cast<long>(std::min(options.connect_timeout_ms, remaining_ms)));
  set(CURLOPT_TIMEOUT_MS, static_cast<long>(remaining_ms));
  set(CURLOPT_OPENSOCKETFUNCTION, &Impl::open_socket);
  set(CURLOPT_OPENSOCKETDATA, &call);
  if (!ok) {
    return Status::unavailable("libcurl refused an option (built without HTTPS or HTTP/2?)");
  }
  return Status::ok_status();
}

bool WebPushProvider::Impl::vapid_refused(WebPushCall& call, CURLcode code) {
  if (code != CURLE_OK || call.vapid_retry_used) {
    return false;
  }
  const long status = response_status(call.easy.get());
  if (status != 401 && status != 403) {
    return false;
  }
  // The push service refused the VAPID token: sign a new one and try once more.
  call.vapid_retry_used = true;
  ++vapid_retries;
  if (const auto it = vapid_cache.find(call.subscription.origin);
      it != vapid_cache.end() && it->second.header == call.authorization) {
    vapid_cache.erase(it);
  }
  return true;
}

void WebPushProvider::Impl::complete(WebPushCall& call, CURLcode code) {
  if (code != CURLE_OK) {
    if (call.address_refused) {
      call.provider.finish(
          call, ProviderResult::failure(
                    messaging::kPushRejected,
                    fmt::format("the Web Push endpoint's host {} resolves to a private address",
                                call.subscription.origin)));
      return;
    }
    const std::string detail =
        call.error[0] != '\0' ? fmt::format("{} ({})", curl_easy_strerror(code), call.error.data())
                              : std::string(curl_easy_strerror(code));
    call.provider.finish(
        call, ProviderResult::failure(messaging::kPushUnavailable,
                                      fmt::format("no answer from the push service {}: {}",
                                                  call.subscription.origin, detail)));
    return;
  }
  ProviderResult result = map_webpush_response(static_cast<int>(response_status(call.easy.get())),
                                               parse_retry_after_ms(call.retry_after),
                                               std::move(call.location), call.response_body);
  if (!result.ok) {
    result.error_message += fmt::format(" ({})", call.subscription.origin);
  }
  call.provider.finish(call, std::move(result));
}

curl_socket_t WebPushProvider::Impl::open_socket(void* call_ptr, curlsocktype /*purpose*/,
                                                 curl_sockaddr* address) {
  auto& call = *static_cast<WebPushCall*>(call_ptr);
  Impl& impl = *call.impl;
  if (!impl.options.allow_private_addresses && !is_public_sockaddr(&address->addr)) {
    call.address_refused = true;
    ++impl.addresses_refused;
    return CURL_SOCKET_BAD;
  }
  const curl_socket_t socket =
      ::socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
  if (socket != CURL_SOCKET_BAD) {
    ++impl.connections_opened;
  }
  return socket;
}

Result<std::unique_ptr<WebPushProvider>> WebPushProvider::create(Options options,
                                                                 const Clock& clock) {
  HERALD_RETURN_IF_ERROR(check_options(options));
  HERALD_ASSIGN_OR_RETURN(const std::string pem,
                          read_small_file(options.vapid_private_key_path, crypto::kMaxPemBytes));
  Result<VapidKey> key = VapidKey::from_pem(pem);
  if (!key.ok()) {
    return Status(key.status().code(), "Web Push: the VAPID key: " + key.status().message());
  }
  if (options.allow_private_addresses) {
    spdlog::warn("webpush: endpoints may resolve to private addresses (a test setting)");
  }
  auto impl = std::make_unique<Impl>(std::move(options), clock, std::move(key).value());
  net::CurlMultiLoopOptions loop_options;
  loop_options.max_concurrent = impl->options.max_concurrent;
  loop_options.max_queued = impl->options.max_queued;
  loop_options.max_connections = static_cast<long>(kWebPushMaxCachedOrigins);
  loop_options.multiplex = true;
  // An HTTP transfer removed while it runs is abandoned (its stream reset): the push service may
  // or may not have taken the message, which the retry's idempotency key covers. So no draining.
  loop_options.stop_drain_ms = 0;
  net::CurlProviderWords words;
  words.error_type = messaging::kPushUnavailable;
  words.stopped = "the Web Push provider is stopped";
  words.full = fmt::format("the Web Push queue is full ({} requests wait for a transfer)",
                           impl->options.max_queued);
  words.expired =
      fmt::format("no Web Push transfer was free within {} ms", impl->options.request_timeout_ms);
  words.stopping = "the Web Push provider is stopping";
  HERALD_ASSIGN_OR_RETURN(impl->transfers,
                          net::CurlProvider::create(std::move(loop_options), std::move(words)));
  return std::unique_ptr<WebPushProvider>(new WebPushProvider(std::move(impl)));
}

WebPushProvider::WebPushProvider(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

WebPushProvider::~WebPushProvider() {
  impl_->transfers->stop();
}

void WebPushProvider::send(const messaging::PushRequest& request, messaging::ProviderDone done) {
  impl_->send(request, std::move(done));
}

const std::string& WebPushProvider::vapid_public_key() const {
  return impl_->key.public_key_b64url();
}

WebPushStats WebPushProvider::stats() const {
  WebPushStats stats;
  static_cast<net::ProviderStats&>(stats) = impl_->transfers->stats();
  stats.vapid_tokens_signed = impl_->vapid_signed.load();
  stats.vapid_retries = impl_->vapid_retries.load();
  stats.connections_opened = impl_->connections_opened.load();
  stats.addresses_refused = impl_->addresses_refused.load();
  return stats;
}

}  // namespace herald::push
