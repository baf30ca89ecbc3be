// The FCM provider: messaging::PushProvider over Firebase Cloud Messaging's HTTP v1 API, with an
// OAuth2 access token obtained from a service-account key. Wire format, bounds and the error
// table: docs/push.md ("FCM").
//
// What it sends, per PushRequest:
//   POST /v1/projects/<project_id>/messages:send     (one HTTP/2 stream)
//   authorization: Bearer <access token>
//   {"message":{"token":<device token>,
//               "data":{"conversation_id":..,"seq":"<seq>","title":..,"body":..,
//                       "idempotency_key":..},                  string values only
//               "android":{"collapse_key":collapse_key_for(conversation),
//                          "ttl":"<kFcmTtlSeconds>s","priority":"high"}}}
//   at most kFcmMaxPayloadBytes in all. A data-only message: the app renders the notification.
//
// Access token: an RS256 JWT assertion {iss: client_email, scope: kFcmScope, aud: token_uri,
// iat: now, exp: now + kFcmAssertionLifetimeSeconds} signed with the key's private_key is posted
// to token_uri (grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer); the answer's
// access_token is cached for its expires_in, less token_refresh_margin_ms. One fetch at a time:
// requests that find no valid token wait for it (at most max_queued_requests of them) and fail
// with kPushUnavailable when it fails. A 401 from messages:send drops the token it carried, and
// the request is sent once more with a new one.
//
// Connections: one long-lived HTTP/2 connection per endpoint (push/h2_client.h: bounded streams
// and queue, reconnect with backoff, GOAWAY, deadlines); the token endpoint shares the FCM
// connection when both are the same host and port. A request not answered within
// request_timeout_ms of send() (waiting for a token included) fails with kPushUnavailable.
//
// Time: iat/exp and the token's expiry come from the injected Clock (tests advance it); timeouts
// and backoff run on the I/O thread's steady clock.
//
// Secrets: the private key, assertions and access tokens are never logged nor put in messages.
//
// Thread-safety: send() and stats() may be called from any thread. `done` runs on the client's
// I/O thread, or on the caller's thread before send() returns when the request fails at once
// (bad token, payload that cannot fit, client shut down).
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

namespace herald::push {

inline constexpr char kFcmHost[] = "fcm.googleapis.com";
inline constexpr std::uint16_t kFcmPort = 443;
inline constexpr char kFcmScope[] = "https://www.googleapis.com/auth/firebase.messaging";

// Largest request body sent, in bytes: FCM's 4 KiB data limit, applied to the whole message so
// that the check is ours, not the service's.
inline constexpr std::size_t kFcmMaxPayloadBytes = 4096;
// Longest device (registration) token accepted, in characters; tokens are about 160 today.
inline constexpr std::size_t kFcmMaxDeviceTokenChars = 1024;
// How long FCM keeps a message for an offline device, in seconds (android.ttl). A day, as APNs.
inline constexpr std::int64_t kFcmTtlSeconds = 24 * 3600;
// Lifetime of the OAuth2 JWT assertion, in seconds (Google accepts at most an hour).
inline constexpr std::int64_t kFcmAssertionLifetimeSeconds = 3600;
// A cached access token is replaced this long before it expires, in milliseconds.
inline constexpr std::int64_t kFcmTokenRefreshMarginMs = 5LL * 60 * 1000;
// Largest expires_in accepted from the token endpoint, in seconds; longer is clamped.
inline constexpr std::int64_t kFcmMaxTokenLifetimeSeconds = 24 * 3600;
// Largest service-account key file read, in bytes (a real one is about 2.3 KiB).
inline constexpr std::size_t kFcmMaxServiceAccountBytes = 16 * 1024;
// Concurrent streams per connection, at most (the server's own limit applies too).
inline constexpr std::uint32_t kFcmMaxConcurrentStreams = 1000;
// Requests waiting for a stream (per connection) or for a token, at most; beyond, send() fails
// fast with kPushUnavailable.
inline constexpr std::size_t kFcmMaxQueuedRequests = 10'000;
// From send() to the response, token fetch, queueing and reconnecting included.
inline constexpr std::int64_t kFcmRequestTimeoutMs = 10'000;
// From starting to connect to the server's SETTINGS frame (TCP, TLS, HTTP/2 preface).
inline constexpr std::int64_t kFcmConnectTimeoutMs = 10'000;
// Response body kept, at most, in bytes (error objects with details, token answers).
inline constexpr std::size_t kFcmMaxResponseBodyBytes = 16 * 1024;

struct FcmConfig {
  // The service-account key JSON (project_id, client_email, private_key, token_uri); secret.
  std::string service_account_path;
  std::string host = kFcmHost;  // any host for tests
  std::uint16_t port = kFcmPort;
  // Where to connect for the token endpoint instead of token_uri's host and port (tests); the
  // assertion's aud and the request path stay those of token_uri. Empty / 0: token_uri's.
  std::string token_host;
  std::uint16_t token_port = 0;
  // PEM file of the CAs to trust instead of the system's (tests: the double's certificate).
  std::string ca_file;
  std::int64_t token_refresh_margin_ms = kFcmTokenRefreshMarginMs;  // [0, 30 min]
  std::uint32_t max_concurrent_streams = kFcmMaxConcurrentStreams;  // 1..kFcmMax...
  std::size_t max_queued_requests = kFcmMaxQueuedRequests;          // 0..kFcmMax...
  std::int64_t request_timeout_ms = kFcmRequestTimeoutMs;           // > 0
  std::int64_t connect_timeout_ms = kFcmConnectTimeoutMs;           // > 0
  std::uint64_t seed = 1;  // the reconnect jitter's random seed
};

// The fields Herald reads from a service-account key file.
struct FcmServiceAccount {
  std::string project_id;
  std::string client_email;
  std::string private_key;  // PKCS#8 PEM, RSA; secret
  std::string token_uri;    // https://host[:port]/path
};

// Parses a service-account key file's JSON. kInvalidArgument naming the missing or malformed
// field (never echoing the key).
[[nodiscard]] Result<FcmServiceAccount> parse_service_account(std::string_view json);

// An https URL split into what a request needs.
struct HttpsUrl {
  std::string host;
  std::uint16_t port = 443;
  std::string path;  // "/" when the URL has none
};
// kInvalidArgument unless `url` is https://host[:port][/path] with no user info, query or
// fragment.
[[nodiscard]] Result<HttpsUrl> parse_https_url(std::string_view url);

// OK when `token` is 1..kFcmMaxDeviceTokenChars of [A-Za-z0-9_:.-] (what FCM tokens are made of).
[[nodiscard]] Status check_fcm_token(std::string_view token);

// The messages:send body for `request` (shape above), at most kFcmMaxPayloadBytes: when too long,
// the body is cut at a UTF-8 boundary and kCutMarker appended; if it still does not fit with an
// empty body, the title is cut the same way. kResourceExhausted when even that does not fit.
[[nodiscard]] Result<std::string> fcm_payload(const messaging::PushRequest& request);

// The application/x-www-form-urlencoded body of the token request for `assertion`.
[[nodiscard]] std::string fcm_token_request_body(std::string_view assertion);

// What an FCM error body ({"error":{"code","message","status","details":[...]}}) says.
struct FcmError {
  std::string status;        // error.status, e.g. "NOT_FOUND", "INVALID_ARGUMENT"
  std::string error_code;    // FCM's own code from details[].errorCode, e.g. "UNREGISTERED"
  std::string message;       // error.message
  bool names_token = false;  // a field violation or the message is about message.token
};
// Whatever of the above `body` holds; empty fields when it is not an FCM error object.
[[nodiscard]] FcmError parse_fcm_error(std::string_view body);

// The outcome of one final response (the 401 retry is decided before this): see the table in
// docs/push.md. `name` is the success body's "name".
[[nodiscard]] messaging::ProviderResult map_fcm_response(int status, const FcmError& error,
                                                         std::optional<std::int64_t> retry_after_ms,
                                                         std::string name);

// Counters, for tests and metrics.
struct FcmStats {
  std::uint64_t connections_opened = 0;  // to both endpoints
  std::uint64_t tokens_fetched = 0;      // access tokens received
  std::uint64_t token_requests = 0;      // token requests sent, failed ones included
  std::uint64_t sends_started = 0;       // messages:send requests submitted, retries included
  std::uint64_t auth_retries = 0;        // sends repeated after a 401
  std::uint64_t requests_retried = 0;    // refused by GOAWAY / REFUSED_STREAM and resent
  std::uint32_t streams_in_flight = 0;
  std::size_t queued = 0;  // waiting for a stream
  std::size_t waiting_for_token = 0;
};

class FcmClient final : public messaging::PushProvider {
 public:
  // Reads and parses the service-account key, checks the configuration, and starts the I/O
  // thread (no connection yet). kInvalidArgument for a bad configuration or key, kIOError when
  // the key file or CA file cannot be read. `clock` must outlive the client.
  [[nodiscard]] static Result<std::unique_ptr<FcmClient>> create(FcmConfig config,
                                                                 const Clock& clock);
  // Fails every request not yet answered with kPushUnavailable, closes the connections, and
  // joins the I/O thread. Precondition: not called from a `done` callback.
  ~FcmClient() override;
  FcmClient(const FcmClient&) = delete;
  FcmClient& operator=(const FcmClient&) = delete;

  // See the top of this file and messaging/providers.h.
  void send(const messaging::PushRequest& request, messaging::ProviderDone done) override;

  [[nodiscard]] FcmStats stats() const;

  struct Impl;

 private:
  explicit FcmClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace herald::push
