// The Web Push provider: messaging::PushProvider for browsers, over the Web Push protocol
// (RFC 8030) with VAPID (RFC 8292) and aes128gcm message encryption (RFC 8291). Wire format,
// bounds and the error table: docs/push.md ("Web Push").
//
// A Web Push device's push token is its subscription, PushSubscription.toJSON() of the browser:
//   {"endpoint": "https://push.example.net/...", "expirationTime": null,
//    "keys": {"p256dh": <base64url P-256 point>, "auth": <base64url 16 bytes>}}
// at most messaging::kMaxWebPushTokenBytes. Each send parses it (parse_subscription).
//
// What it sends, per PushRequest:
//   POST <endpoint>                               (HTTP/2 where the push service offers it)
//   ttl: <ttl_s>
//   urgency: high
//   topic: webpush_topic(conversation)            (32 base64url characters)
//   content-encoding: aes128gcm
//   content-type: application/octet-stream
//   authorization: vapid t=<ES256 JWT>, k=<VAPID public key>
//   body = encrypt_webpush(subscription keys, webpush_payload(request), fresh sender secrets)
// The plaintext is one JSON object {"conversation_id", "seq" (decimal string), "title", "body",
// "idempotency_key"}: no standard header carries an idempotency key, so the service worker
// dedupes on the payload's. It draws the notification itself, applying the user's preferences
// (hidden previews among them), as the FCM provider's app does.
//
// VAPID: one token per push service origin, signed with the injected Clock's wall time and reused
// until vapid_refresh_margin_s before it expires. A 401 or 403 answer drops that origin's token
// and the request is sent once more with a new one.
//
// Transfers: libcurl's multi interface on one I/O thread of the provider's own (a
// net::CurlMultiLoop). At most max_concurrent transfers run at once (HTTP/2 streams share a
// connection per push service); at most max_queued more wait, beyond which send() fails at once.
// A request not answered within request_timeout_ms of send() (queueing included) fails with
// kPushUnavailable.
//
// Endpoints: https only, no user info; the address the endpoint's host resolves to must be a
// public one unless allow_private_addresses (a subscription is data from a client: it must not
// make the server post to its own network).
//
// Secrets: the VAPID private key and tokens are never logged nor put in messages.
//
// Thread-safety: send() and stats() may be called from any thread. `done` runs on the provider's
// I/O thread, or on the caller's thread before send() returns when the request fails at once
// (malformed subscription, payload that cannot fit, full queue, provider stopped).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "base/clock.h"
#include "base/status.h"
#include "messaging/providers.h"
#include "net/transfer_stats.h"
#include "push/vapid.h"
#include "push/webpush_crypto.h"

namespace herald::push {

// How long the push service keeps a message for an offline browser, in seconds (the TTL header).
// A day, as APNs and FCM.
inline constexpr std::int64_t kWebPushTtlSeconds = 24 * 3600;
// Length of the Topic header, in base64url characters: RFC 8030 section 5.4's maximum.
inline constexpr std::size_t kWebPushTopicChars = 32;
// A cached VAPID token is replaced this long before it expires, in seconds.
inline constexpr std::int64_t kWebPushVapidRefreshMarginSeconds = 3600;
// Push service origins whose VAPID token is cached, at most; beyond, the oldest is dropped.
inline constexpr std::size_t kWebPushMaxCachedOrigins = 256;
// Transfers running at once, at most.
inline constexpr std::size_t kWebPushMaxConcurrent = 1000;
// Requests waiting for a transfer, at most; beyond, send() fails fast with kPushUnavailable.
inline constexpr std::size_t kWebPushMaxQueued = 10'000;
// From send() to the response, queueing included.
inline constexpr std::int64_t kWebPushRequestTimeoutMs = 10'000;
// From starting to connect to a push service to a ready TLS connection.
inline constexpr std::int64_t kWebPushConnectTimeoutMs = 10'000;
// Response body kept, at most, in bytes (error descriptions).
inline constexpr std::size_t kWebPushMaxResponseBodyBytes = 4096;
// Longest Location (the message's resource, the provider id) kept, in bytes.
inline constexpr std::size_t kWebPushMaxLocationBytes = 512;
// The token bound leaves room for a maximal endpoint besides the keys (~ 110 bytes).
static_assert(kMaxPushEndpointBytes + 512 <= messaging::kMaxWebPushTokenBytes,
              "a subscription with a maximal endpoint fits a Web Push token");

// A subscription, parsed and checked.
struct WebPushSubscription {
  std::string endpoint;  // https://host[:port]/path
  std::string origin;    // endpoint_origin(endpoint): the VAPID audience
  WebPushSubscriptionKeys keys;
};

// Whether `ip` (an IPv4 or IPv6 literal) is a public unicast address: not loopback, private
// (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7), link-local, unspecified, multicast or
// reserved; an IPv4-mapped IPv6 address is judged as its IPv4 address. False for a non-literal.
[[nodiscard]] bool is_public_ip(std::string_view ip);

// Parses a subscription token (the shape above). kInvalidArgument, naming what is wrong, unless
// it is a JSON object of at most messaging::kMaxWebPushTokenBytes with a string "endpoint" that
// is an https URL without user info or fragment, of at most kMaxPushEndpointBytes, and an
// object "keys" whose "p256dh" and "auth" parse_subscription_keys() accepts. Other members
// ("expirationTime") are ignored. Never echoes the keys.
[[nodiscard]] Result<WebPushSubscription> parse_subscription(std::string_view token);

// The Topic of a conversation's pushes: the first 24 bytes of SHA-256("herald-topic:" +
// conversation_id) in base64url, kWebPushTopicChars characters. A newer message of the
// conversation replaces an undelivered older one at the push service.
[[nodiscard]] std::string webpush_topic(std::string_view conversation_id);

// The plaintext of `request`'s push (shape above), at most kWebPushMaxPlaintextBytes: when too
// long, the body is cut at a UTF-8 boundary and kCutMarker appended; if it still does not fit
// with an empty body, the title is cut the same way. kResourceExhausted when even that does not
// fit.
[[nodiscard]] Result<std::string> webpush_payload(const messaging::PushRequest& request);

// The outcome of one final response (the VAPID retry is decided before this): see the table in
// docs/push.md. `location` is the Location header, `body` the response body (for the message).
[[nodiscard]] messaging::ProviderResult map_webpush_response(
    int status, std::optional<std::int64_t> retry_after_ms, std::string location,
    std::string_view body);

struct WebPushOptions {
  // The operator's VAPID key (PKCS#8 PEM, P-256; push/vapid.h); secret.
  std::string vapid_private_key_path;
  // The VAPID contact ("sub"): a mailto: or https: URI.
  std::string vapid_subject;
  // PEM file of the CAs to trust instead of the system's (tests: the double's certificate).
  std::string ca_file;
  // Lets endpoints resolve to loopback, private and link-local addresses (tests; off in
  // production).
  bool allow_private_addresses = false;
  std::int64_t ttl_s = kWebPushTtlSeconds;                       // [0, kWebPushTtlSeconds * 28]
  std::int64_t vapid_lifetime_s = kVapidDefaultLifetimeSeconds;  // (margin, max lifetime]
  std::int64_t vapid_refresh_margin_s = kWebPushVapidRefreshMarginSeconds;  // >= 0
  std::size_t max_concurrent = 100;                            // 1..kWebPushMaxConcurrent
  std::size_t max_queued = kWebPushMaxQueued;                  // 0..kWebPushMaxQueued
  std::int64_t request_timeout_ms = kWebPushRequestTimeoutMs;  // > 0
  std::int64_t connect_timeout_ms = kWebPushConnectTimeoutMs;  // > 0
};

// Counters, for tests and metrics: transfers (started counts the VAPID retries too, queued,
// in_flight, max_in_flight), outcomes (sent: answered with success; failed: whatever the reason)
// and the provider's own.
struct WebPushStats : net::ProviderStats {
  std::uint64_t vapid_tokens_signed = 0;
  std::uint64_t vapid_retries = 0;       // sends repeated after a 401/403
  std::uint64_t connections_opened = 0;  // sockets opened to push services
  std::uint64_t addresses_refused = 0;   // connections refused: a private address
};

class WebPushProvider final : public messaging::PushProvider {
 public:
  using Options = WebPushOptions;

  // Reads the VAPID key, checks the options and starts the I/O thread (no connection yet).
  // kInvalidArgument for a bad option or key, kIOError when the key file cannot be read or
  // libcurl cannot start. `clock` must outlive the provider.
  [[nodiscard]] static Result<std::unique_ptr<WebPushProvider>> create(Options options,
                                                                       const Clock& clock);
  // Fails every request not yet answered with kPushUnavailable and joins the I/O thread.
  // Precondition: not called from a `done` callback.
  ~WebPushProvider() override;
  WebPushProvider(const WebPushProvider&) = delete;
  WebPushProvider& operator=(const WebPushProvider&) = delete;

  // See the top of this file and messaging/providers.h.
  void send(const messaging::PushRequest& request, messaging::ProviderDone done) override;

  [[nodiscard]] WebPushStats stats() const;
  // The VAPID public key (base64url): the applicationServerKey browsers subscribe with.
  [[nodiscard]] const std::string& vapid_public_key() const;

  struct Impl;

 private:
  explicit WebPushProvider(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace herald::push
