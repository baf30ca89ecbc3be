// A test double of a Web Push service (RFC 8030): a real HTTP/2 server over TLS on 127.0.0.1
// (push/h2_server.h) that plays the browser's side too, for tests of the Web Push provider
// (push/webpush.h) over real sockets. Tests and `herald serve --demo` (app/demo_doubles.h).
//
// subscribe() makes a subscription as a browser would: a P-256 key pair and a 16-byte auth
// secret, kept by the mock, and the token PushSubscription.toJSON() would give, with the endpoint
// https://127.0.0.1:<port>/push/<id>.
//
// A push (POST /push/<id>) is checked in this order, the first failure answering:
//   the path names a subscription                         else 404
//   Authorization verifies as VAPID for origin() at the clock's time (push/vapid.h), and its
//   token was not refused (refuse_vapid_tokens_seen)      else 401 (www-authenticate: vapid)
//   its k= is the configured VAPID public key             else 403
//   TTL is a decimal number of seconds                    else 400
//   Urgency, when present, is very-low|low|normal|high    else 400
//   Topic, when present, is 1..32 base64url characters    else 400
//   Content-Encoding is aes128gcm                         else 415
//   the body is at most 4,096 bytes                       else 413
//   the body DECRYPTS with the subscription's private key and auth secret (RFC 8291) else 400
// A push that passes is recorded with its plaintext (messages()) and answered 201 with
// location: https://127.0.0.1:<port>/message/<n>, unless a fault mode answers instead: scripted
// answers for the next pushes (fail_next: 5xx, 429 with Retry-After, ...), a fixed answer per
// subscription (answer_subscription: 404, 410, ...), and the server's slow answers, dropped
// connections and GOAWAY after the n-th request of each connection (push/h2_server.h). Every
// request is recorded (requests()) with the check that failed; one left unanswered (dropped, or
// above a GOAWAY's last stream) is recorded with status 0 and never decrypted or delivered.
//
// Thread-safety: every public member may be called from any thread.
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

struct WebPushMockSubscription {
  std::string id;
  std::string endpoint;
  std::string token;  // the subscription JSON: a device's push token
};

struct WebPushMockRequest {
  std::uint64_t connection = 0;  // 1-based, in accept order
  std::int32_t stream_id = 0;
  std::string method;
  std::string path;
  std::map<std::string, std::string> headers;
  std::size_t body_bytes = 0;
  std::string subscription_id;  // the subscription the path names; empty when none
  std::string plaintext;        // the decrypted body, when it got that far
  int status = 0;               // what the mock answered; 0 when it did not (dropped)
  std::string check_failed;     // the check that failed, empty when it passed
};

// A push that passed every check, decrypted.
struct WebPushMockMessage {
  std::string subscription_id;
  std::string plaintext;
  std::int64_t ttl_s = 0;
  std::string urgency;      // empty when absent
  std::string topic;        // empty when absent
  std::string vapid_token;  // the t=
  std::string vapid_audience;
  std::string vapid_subject;
  std::int64_t vapid_expires_s = 0;
};

struct WebPushMockOptions {
  std::string vapid_public_key;   // base64url: the k= every push must carry
  std::int64_t clock_skew_s = 0;  // allowed by the VAPID check
  std::uint32_t max_concurrent_streams = 1000;
  // Called with every push that passed the checks and was accepted, on the mock's I/O thread,
  // without the mock's lock held; empty: not called.
  std::function<void(const WebPushMockMessage&)> on_message;
};

// An answer a fault mode gives instead of 201.
struct WebPushMockFault {
  int status = 500;
  std::optional<std::int64_t> retry_after_s;
  std::string body;
};

class WebPushMock {
 public:
  // kIOError when OpenSSL or the socket fails, kInvalidArgument for a bad public key.
  [[nodiscard]] static Result<std::unique_ptr<WebPushMock>> start(WebPushMockOptions options,
                                                                  const Clock& clock);
  ~WebPushMock();
  WebPushMock(const WebPushMock&) = delete;
  WebPushMock& operator=(const WebPushMock&) = delete;

  [[nodiscard]] std::uint16_t port() const;
  [[nodiscard]] const std::string& ca_file() const;
  // https://127.0.0.1:<port>: the VAPID audience of every subscription.
  [[nodiscard]] std::string origin() const;

  // A new subscription, as a browser makes one. kIOError when OpenSSL fails.
  [[nodiscard]] Result<WebPushMockSubscription> subscribe();

  // The next `count` pushes that pass the checks get `fault`.
  void fail_next(std::size_t count, const WebPushMockFault& fault);
  // Every push to the subscription `id` that passes the checks gets `fault` (404, 410: the
  // subscription is gone).
  void answer_subscription(const std::string& id, const WebPushMockFault& fault);
  // Every VAPID token seen so far is refused from now on (401), as after a key rotation.
  void refuse_vapid_tokens_seen();
  // Server faults: see push/h2_server.h.
  void set_delay_ms(std::int64_t delay_ms);
  void release_held();
  void drop_next_request();
  void goaway_after(std::size_t requests);

  [[nodiscard]] std::vector<WebPushMockRequest> requests() const;
  [[nodiscard]] std::vector<WebPushMockMessage> messages() const;
  [[nodiscard]] std::size_t connections() const;
  // Pushes decided and not yet answered, now and at most so far.
  [[nodiscard]] std::size_t pending() const;
  [[nodiscard]] std::size_t max_pending() const;

  struct Impl;

 private:
  explicit WebPushMock(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace herald::push::testing
