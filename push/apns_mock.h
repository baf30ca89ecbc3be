// A test double of APNs: a real HTTP/2 server over TLS on 127.0.0.1, for tests of the APNs client
// (push/apns.h) over real sockets. Tests and `herald serve --demo` only (app/demo_doubles.h).
//
// At start it generates a P-256 key and a self-signed certificate for 127.0.0.1 in memory; the
// certificate (public) is written to a temporary file for the client's ca_file, the key never
// leaves the process. It accepts any number of connections (ALPN h2 only) and answers each
// request the way APNs would, after checking it:
//  - POST /3/device/<hex token>; else 405 MethodNotAllowed / 404 BadPath;
//  - authorization: bearer <JWT> that verifies with the provider's public key (ES256,
//    require_exp off, max_age_s 3600, iss = team id) and header kid = key id; else 403
//    InvalidProviderToken (ExpiredProviderToken when only the age is wrong);
//  - apns-topic = the topic (400 BadTopic), apns-push-type alert (400 InvalidPushType),
//    apns-priority 10/5/1 (400 BadPriority), apns-expiration digits (400 BadExpirationDate),
//    apns-collapse-id at most 64 bytes (400 BadCollapseId), apns-id a lower-case UUID (400
//    BadMessageId);
//  - a JSON object body with "aps" (400 PayloadEmpty / BadPayload) of at most 4096 bytes (413
//    PayloadTooLarge).
// A request that passes gets 200 with its apns-id echoed, unless a fault mode says otherwise.
// A token that verified is remembered (at most 16) and accepted again without a new signature
// check while every time check would still pass it; the answers are those of a fresh check.
// Every request that reached the handler is recorded (requests()), with the check that failed.
//
// Devices: each request answered 200 reaches its device token's notification centre, modelled
// as APNs documents apns-collapse-id and apns-id: a notification whose apns-collapse-id equals
// that of one in the tray replaces it there (the tray shows one notification per collapse id), and
// a notification whose apns-id the device already received is that same notification again: it
// is counted (deliveries) but not presented a second time. presented() lists what a device
// presented, in order; tray() what it shows now. A request's answer may be lost (held, then its
// connection gone) after it reached the device, as with the real service.
//
// Fault modes, set any time from the test thread: scripted answers for the next requests
// (fail_next), fixed answers per device token (answer_token), slow answers (delay_ms; held
// answers are released at once by release_held), a connection dropped when a request arrives
// (drop_next_request), GOAWAY after N requests on each connection (goaway_after).
//
// Time for the JWT checks comes from the injected Clock, the same one the client uses.
// Thread-safety: every public member may be called from any thread; the server runs on its own
// I/O thread, joined by the destructor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/status.h"

namespace herald::push::testing {

struct ApnsMockRequest {
  std::uint64_t connection = 0;  // 1-based, in accept order
  std::int32_t stream_id = 0;
  std::string method;
  std::string path;
  std::string device_token;
  std::map<std::string, std::string> headers;  // every regular header, by lower-case name
  std::string body;
  std::string jwt;  // the bearer token
  std::optional<std::int64_t> jwt_iat;
  int status = 0;            // what the mock answered; 0 when it did not (dropped, or above GOAWAY)
  std::string reason;        // the answer's reason, empty for 200
  std::string check_failed;  // the check that failed, empty when it passed
};

// One notification on a device (ApnsMock::presented, ApnsMock::tray).
struct ApnsMockNotification {
  std::string apns_id;
  std::string collapse_id;  // empty when the request had none
  std::string body;         // the JSON payload
  // Requests that delivered it: more than 1 when a request with the same apns-id came again (the
  // device took it for the notification it already had).
  std::size_t deliveries = 1;
};

struct ApnsMockOptions {
  std::string provider_public_pem;  // verifies the provider tokens
  std::string key_id;
  std::string team_id;
  std::string topic;
  std::uint32_t max_concurrent_streams = 1000;  // advertised in SETTINGS
  // Called on the mock's I/O thread with every request that reached the handler, once its answer
  // is decided (status and reason filled in), without the mock's lock held; empty: not called.
  std::function<void(const ApnsMockRequest&)> on_request;
  // Keep every request for requests() and every device's notifications for presented() and
  // tray(). Off (benchmarks sending millions): those are empty and only request_count() counts.
  bool record_requests = true;
};

class ApnsMock {
 public:
  // Listens on 127.0.0.1 on a free port. kIOError when OpenSSL or the socket fails,
  // kInvalidArgument for a bad public key.
  [[nodiscard]] static Result<std::unique_ptr<ApnsMock>> start(ApnsMockOptions options,
                                                               const Clock& clock);
  ~ApnsMock();
  ApnsMock(const ApnsMock&) = delete;
  ApnsMock& operator=(const ApnsMock&) = delete;

  [[nodiscard]] std::uint16_t port() const;
  // The PEM file of the self-signed certificate: the client's ca_file.
  [[nodiscard]] const std::string& ca_file() const;

  // The next `count` requests that pass the checks are answered (status, reason), with
  // Retry-After: retry_after_s when given.
  void fail_next(std::size_t count, int status, const std::string& reason,
                 std::optional<std::int64_t> retry_after_s = std::nullopt);
  // Every request for `device_token` that passes the checks is answered (status, reason).
  void answer_token(const std::string& device_token, int status, const std::string& reason);
  // Answers wait this long (0: at once). Changing it does not move answers already waiting.
  void set_delay_ms(std::int64_t delay_ms);
  // Every answer waiting for its delay is sent now.
  void release_held();
  // The next request makes the mock close its connection without answering.
  void drop_next_request();
  // Each connection sends GOAWAY(last-stream-id = the stream of its n-th request) with the
  // answer to its n-th request (so after any delay); requests on higher streams are left
  // unanswered (the client sees them refused). 0 turns it off.
  void goaway_after(std::size_t requests);

  // Every request handled so far, in arrival order (empty unless record_requests).
  [[nodiscard]] std::vector<ApnsMockRequest> requests() const;
  // The notifications `device_token` presented, in the order they arrived, each once: a request
  // whose apns-id the device had received before adds to that notification's deliveries instead
  // (empty unless record_requests).
  [[nodiscard]] std::vector<ApnsMockNotification> presented(const std::string& device_token) const;
  // What `device_token`'s notification centre shows now: for each apns-collapse-id (or apns-id,
  // for a notification without one) the latest notification presented under it, oldest first.
  [[nodiscard]] std::vector<ApnsMockNotification> tray(const std::string& device_token) const;
  [[nodiscard]] std::size_t request_count() const;
  // Connections accepted (TLS and HTTP/2 established).
  [[nodiscard]] std::size_t connections() const;
  // Requests received and not yet answered, now and at most so far.
  [[nodiscard]] std::size_t pending() const;
  [[nodiscard]] std::size_t max_pending() const;

  struct Impl;

 private:
  explicit ApnsMock(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace herald::push::testing
