// The APNs provider: messaging::PushProvider over Apple's HTTP/2 provider API, with token
// (ES256 JWT) authentication. Wire format, bounds and the error table: docs/push.md ("APNs").
//
// What it sends, per PushRequest:
//   POST /3/device/<token>            (one HTTP/2 stream)
//   authorization: bearer <JWT>       ES256, header kid = key id, claims iss = team id, iat
//   apns-topic: <topic>  apns-push-type: alert  apns-priority: 10
//   apns-expiration: <now + kApnsExpirationSeconds, epoch seconds>
//   apns-collapse-id: apns_collapse_id(conversation)   a retry replaces, never adds
//   apns-id: apns_id_for(idempotency key)              the same UUID on every attempt
//   {"aps":{"alert":{"title":..,"body":..},"thread-id":<conversation>},
//    "herald":{"conversation_id":..,"seq":..}}         at most kApnsMaxPayloadBytes
//
// Connection handling: one long-lived HTTP/2 connection to the configured endpoint, opened when
// the first request arrives, owned by one I/O thread of the client. Requests run as concurrent
// streams, at most min(the server's SETTINGS_MAX_CONCURRENT_STREAMS, max_concurrent_streams);
// the rest wait in a FIFO of at most max_queued_requests, beyond which send() fails at once with
// kPushUnavailable. A lost connection is reopened with exponential backoff and full jitter
// (kReconnectInitialMs, kReconnectMaxMs in push/common.h). On
// GOAWAY the streams the server accepted (id <= last-stream-id) finish on the old connection;
// the others, which the server never processed, go back to the head of the queue and are sent
// on a new connection with the same apns-id. A request not answered within request_timeout_ms of
// send() (queueing included) fails with kPushUnavailable.
//
// Token: signed on first use and reused until it is kApnsTokenRefreshMs old (never per request:
// APNs answers 429 TooManyProviderTokenUpdates to a provider that refreshes more than every 20
// minutes). A 403 ExpiredProviderToken / InvalidProviderToken makes the client sign a new token,
// once per token and only if that token is at least kApnsTokenMinRefreshMs old, and retry the
// request once with it; otherwise the request fails with kPushUnavailable.
//
// Time: the token's iat and age and apns-expiration come from the injected Clock (tests advance
// it); timeouts and backoff run on the I/O thread's steady clock.
//
// Secrets: the key PEM and the tokens are never logged nor put in error messages.
//
// Thread-safety: send() and stats() may be called from any thread. `done` runs on the client's
// I/O thread, or on the caller's thread before send() returns when the request fails at once
// (bad token, payload that cannot fit, full queue, client shut down).
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
#include "push/common.h"

namespace herald::push {

inline constexpr char kApnsProductionHost[] = "api.push.apple.com";
inline constexpr char kApnsSandboxHost[] = "api.sandbox.push.apple.com";
inline constexpr std::uint16_t kApnsPort = 443;

// Largest payload APNs accepts for a regular remote notification, in bytes.
inline constexpr std::size_t kApnsMaxPayloadBytes = 4096;
// Longest apns-collapse-id APNs accepts, in bytes.
inline constexpr std::size_t kApnsMaxCollapseIdBytes = kMaxCollapseKeyBytes;
// Longest device token accepted, in hex characters (tokens are 64 today; Apple says they may
// grow, so this leaves room).
inline constexpr std::size_t kApnsMaxDeviceTokenChars = 200;
// Appended to a preview cut to fit the payload (push/common.h).
inline constexpr const char* kApnsCutMarker = kCutMarker;
// How long APNs keeps trying to reach an offline device, in seconds (apns-expiration = now +
// this). A day, like Matrix's pushers, so stale notifications are not shown much later.
inline constexpr std::int64_t kApnsExpirationSeconds = 24 * 3600;

// Provider-token lifetime. Apple refuses tokens older than an hour and answers 429
// TooManyProviderTokenUpdates to refreshes more frequent than every 20 minutes.
inline constexpr std::int64_t kApnsTokenMinRefreshMs = 20LL * 60 * 1000;
inline constexpr std::int64_t kApnsTokenMaxRefreshMs = 50LL * 60 * 1000;
inline constexpr std::int64_t kApnsTokenRefreshMs = 40LL * 60 * 1000;  // the default

// Concurrent streams on the connection, at most (the server's own limit applies too).
inline constexpr std::uint32_t kApnsMaxConcurrentStreams = 1000;
// Requests waiting for a stream, at most; beyond it send() fails fast with kPushUnavailable.
inline constexpr std::size_t kApnsMaxQueuedRequests = 10'000;
// From send() to the response, queueing and reconnecting included.
inline constexpr std::int64_t kApnsRequestTimeoutMs = 10'000;
// From starting to connect to the server's SETTINGS frame (TCP, TLS, HTTP/2 preface).
inline constexpr std::int64_t kApnsConnectTimeoutMs = 10'000;
// Largest Retry-After honoured, in milliseconds (push/common.h).
inline constexpr std::int64_t kApnsMaxRetryAfterMs = kMaxRetryAfterMs;
// Response body kept for the reason, at most, in bytes (APNs sends a small JSON object).
inline constexpr std::size_t kApnsMaxResponseBodyBytes = 4096;

struct ApnsConfig {
  std::string host = kApnsProductionHost;  // or kApnsSandboxHost; any host for tests
  std::uint16_t port = kApnsPort;
  // PEM file of the CAs to trust instead of the system's (tests: the double's self-signed
  // certificate). Empty: the system's default CAs.
  std::string ca_file;
  std::string key_pem_path;  // the .p8 signing key (PKCS#8 PEM, P-256); secret
  std::string key_id;        // the key's 10-character id: the JWT header's kid
  std::string team_id;       // the developer team: the JWT's iss
  std::string topic;         // the app's bundle id: apns-topic
  std::int64_t token_refresh_ms = kApnsTokenRefreshMs;               // within [min, max] above
  std::uint32_t max_concurrent_streams = kApnsMaxConcurrentStreams;  // 1..kApnsMax...
  std::size_t max_queued_requests = kApnsMaxQueuedRequests;          // 0..kApnsMax...
  std::int64_t request_timeout_ms = kApnsRequestTimeoutMs;           // > 0
  std::int64_t connect_timeout_ms = kApnsConnectTimeoutMs;           // > 0
  std::uint64_t seed = 1;  // the reconnect jitter's random seed
};

// The apns-id for an idempotency key: a UUID (RFC 9562 version 8, lower-case hex) made of the
// first 16 bytes of SHA-256("herald-apns-id:" + key), so every attempt of one send carries the
// same id.
[[nodiscard]] std::string apns_id_for(std::string_view idempotency_key);

// The apns-collapse-id for a conversation: the id itself when it has at most
// kApnsMaxCollapseIdBytes printable ASCII bytes, else the 64 hex digits of its SHA-256.
[[nodiscard]] std::string apns_collapse_id(std::string_view conversation_id);

// The JSON payload for `request` (shape above), at most kApnsMaxPayloadBytes: when too long, the
// body is cut at a UTF-8 boundary and kApnsCutMarker appended; if the payload still does not
// fit with an empty body, the title is cut the same way. kResourceExhausted when even that does
// not fit (a huge conversation id).
[[nodiscard]] Result<std::string> apns_payload(const messaging::PushRequest& request);

// OK when `token` is 1..kApnsMaxDeviceTokenChars hex digits (what goes into the path).
[[nodiscard]] Status check_device_token(std::string_view token);

// The outcome of one final response (the 403 token retry is decided before this): see the
// table in docs/push.md. `reason` is the response body's "reason"; `apns_id` its apns-id header.
[[nodiscard]] messaging::ProviderResult map_apns_response(
    int status, std::string_view reason, std::optional<std::int64_t> retry_after_ms,
    std::string apns_id);

// Counters, for tests and metrics.
struct ApnsStats {
  std::uint64_t connections_opened = 0;  // TLS + HTTP/2 established
  std::uint64_t tokens_signed = 0;
  std::uint64_t requests_sent = 0;     // streams opened, retries included
  std::uint64_t requests_retried = 0;  // refused by GOAWAY / REFUSED_STREAM, or 403 token retry
  std::uint32_t streams_in_flight = 0;
  std::size_t queued = 0;
};

class ApnsClient final : public messaging::PushProvider {
 public:
  // Reads and parses the signing key, checks the configuration, and starts the I/O thread (no
  // connection yet). kInvalidArgument for a bad configuration or key, kIOError when the key file
  // or CA file cannot be read. `clock` must outlive the client.
  [[nodiscard]] static Result<std::unique_ptr<ApnsClient>> create(ApnsConfig config,
                                                                  const Clock& clock);
  // Fails every request not yet answered with kPushUnavailable, closes the connection, and joins
  // the I/O thread. Precondition: not called from a `done` callback (that runs on the I/O thread).
  ~ApnsClient() override;
  ApnsClient(const ApnsClient&) = delete;
  ApnsClient& operator=(const ApnsClient&) = delete;

  // See the top of this file and messaging/providers.h.
  void send(const messaging::PushRequest& request, messaging::ProviderDone done) override;

  [[nodiscard]] ApnsStats stats() const;

  struct Impl;

 private:
  explicit ApnsClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace herald::push
