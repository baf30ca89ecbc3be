// Push and email providers: the outside services the delivery workflow's activities call.
//
// The leader's "messaging.push" and "messaging.email" activity handlers turn a PushTask or an
// EmailTask (messaging/delivery.proto) into requests and hand them to a provider. A provider is an
// adapter that does I/O; it is never called from a state machine's apply path, so the determinism
// rule of messaging/ does not reach it.
//
// Contract of send():
//  - `done` is called exactly once per send(), with the outcome; possibly before send() returns,
//    possibly later on another thread. The caller posts the outcome back to its own thread
//    (workflow::Runtime requires callbacks on the replica's thread).
//  - A request carries an idempotency key, the same for every attempt of one activity (across
//    retries and leaders). A real provider passes it on where the service supports it (APNs: the
//    apns-id is derived from it, and the apns-collapse-id from the conversation, so a retried
//    send replaces its notification instead of adding one; FCM: the message's data carries it
//    and the collapse key is per conversation; Web Push: the encrypted payload carries it, as no
//    header for it exists, and the Topic is per conversation; the email's Message-ID) so that a
//    retried send does not notify twice.
//  - A failure's error_type is one of the constants below when one fits. The non-retryable ones
//    are listed in the delivery workflow's retry policies (messaging/delivery.h); any other
//    error type is retried.
//
// Only the interfaces live here: the APNs, FCM, Web Push and SMTP clients live with the other
// adapters (push/, email/), and so does the recording provider (server/recording_provider.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"

namespace herald::messaging {

// Push platforms, PushRequest::provider.
inline constexpr char kApnsProvider[] = "apns";
inline constexpr char kFcmProvider[] = "fcm";
// Web Push (RFC 8030): the push token is the browser's subscription as
// PushSubscription.toJSON() gives it, {"endpoint": "https://...", "keys": {"p256dh": ...,
// "auth": ...}} (push/webpush.h parses it; docs/push.md, "Web Push").
inline constexpr char kWebPushProvider[] = "webpush";

// Longest push token a kWebPushProvider device may register, in bytes: an endpoint of at most
// push::kMaxPushEndpointBytes (2,048) plus the keys (about 110 bytes of base64url), member names,
// an "expirationTime" and whitespace, with room to spare. Other providers' tokens are bounded by
// kMaxPushTokenBytes (messaging/domain.h).
inline constexpr std::size_t kMaxWebPushTokenBytes = 3072;

// Error types providers report.
inline constexpr char kPushUnavailable[] = "push.unavailable";    // retryable: try again later
inline constexpr char kPushUnregistered[] = "push.unregistered";  // the token is gone for good
inline constexpr char kPushInvalidToken[] = "push.invalid_token";
inline constexpr char kPushPayloadTooLarge[] = "push.payload_too_large";
// The service refused this request for a reason no retry of the same request can fix (APNs: a
// 4xx other than the ones above, e.g. BadTopic, TopicDisallowed, BadCertificateEnvironment); the
// message names the status and the service's reason. Often an operator's configuration error.
// Non-retryable for delivery runs of version 2 (messaging/delivery.h); version 1 runs retry it.
inline constexpr char kPushRejected[] = "push.rejected";
// No provider is configured on this node for the request's platform (PushRequest::provider):
// nothing was dispatched. Non-retryable for version 2 runs: configuration does not change
// between attempts; the node logs which platforms have no provider when it starts.
inline constexpr char kPushNoProvider[] = "push.no_provider";
// The device cannot be pushed: removed, no push token registered, or its push target was marked
// invalid after a permanent token error (until a new token is registered). Nothing was
// dispatched. Non-retryable for version 2 runs.
inline constexpr char kPushNoTarget[] = "push.no_target";
inline constexpr char kEmailUnavailable[] = "email.unavailable";  // retryable
inline constexpr char kEmailRejected[] = "email.rejected";        // the server refused it for good
// No email provider is configured on this node; non-retryable for version 2 runs.
inline constexpr char kEmailNoProvider[] = "email.no_provider";

struct PushRequest {
  std::string idempotency_key;
  std::string user_id;
  std::string device_id;
  std::string platform;  // the device's platform, e.g. "ios", "android", "web"
  std::string provider;  // kApnsProvider, kFcmProvider or kWebPushProvider
  std::string token;     // the device's push token at that provider (Web Push: the subscription)
  std::string conversation_id;
  std::uint64_t seq = 0;
  std::string title;
  std::string body;
  // The activity attempt this request belongs to, 1-based (a guard counts retries against its
  // retry budget; push/guard.h).
  std::uint32_t attempt = 1;

  friend bool operator==(const PushRequest&, const PushRequest&) = default;
};

struct EmailRequest {
  std::string idempotency_key;
  std::string to;  // the recipient's address
  std::string subject;
  std::string body;
  std::string user_id;
  std::string conversation_id;
  std::uint64_t seq = 0;
  std::string sender_user_id;  // who wrote the message; empty when unknown
  std::uint32_t attempt = 1;   // as PushRequest::attempt

  friend bool operator==(const EmailRequest&, const EmailRequest&) = default;
};

struct ProviderResult {
  bool ok = false;
  std::string error_type;  // when !ok
  std::string error_message;
  // When ok: the service's id for what it accepted (APNs: the apns-id response header), for logs
  // and support requests; empty when the service gives none.
  std::string provider_id;
  // When !ok and the service said when to come back (HTTP Retry-After, or a circuit breaker's
  // remaining open time), in milliseconds from the failure. The delivery workflow's next attempt
  // waits at least this long (version 2 runs; bounded by kProviderMaxRetryAfterMs,
  // messaging/delivery.h).
  std::optional<std::int64_t> retry_after_ms;
  // When !ok: the call never reached the service — a guard refused it (an open circuit breaker,
  // the concurrency bound, the retry budget; push/guard.h). The delivery workflow's attempt
  // reports it as not dispatched, and the wait it causes does not use up the activity's retry
  // window (messaging/delivery.h, kProviderMaxRefusedWaitMs).
  bool refused = false;
  // When !ok: nothing left the node, the call was written to a journal instead (a recording
  // provider standing in for a platform with no client configured, server/recording_provider.h).
  // The error type is kPushNoProvider / kEmailNoProvider, and the timeline's attempt says
  // "recorded", never "accepted".
  bool recorded = false;

  [[nodiscard]] static ProviderResult success(std::string provider_id = {}) {
    ProviderResult result;
    result.ok = true;
    result.provider_id = std::move(provider_id);
    return result;
  }
  [[nodiscard]] static ProviderResult failure(std::string error_type, std::string error_message) {
    ProviderResult result;
    result.error_type = std::move(error_type);
    result.error_message = std::move(error_message);
    return result;
  }
  friend bool operator==(const ProviderResult&, const ProviderResult&) = default;
};

using ProviderDone = std::function<void(ProviderResult)>;

class PushProvider {
 public:
  virtual ~PushProvider() = default;
  // Sends one notification to one device; see the contract above.
  virtual void send(const PushRequest& request, ProviderDone done) = 0;
};

class EmailProvider {
 public:
  virtual ~EmailProvider() = default;
  // Sends one email; see the contract above.
  virtual void send(const EmailRequest& request, ProviderDone done) = 0;
};

}  // namespace herald::messaging
