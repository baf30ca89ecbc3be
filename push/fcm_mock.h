// A test double of FCM: one real HTTP/2 server over TLS on 127.0.0.1 (push/h2_server.h) that
// serves both Google's OAuth2 token endpoint and FCM's HTTP v1 messages:send, for tests of the
// FCM client (push/fcm.h) over real sockets. Tests and `herald serve --demo` only
// (app/demo_doubles.h).
//
// Token endpoint (POST <token_path>): the form body must be
// grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>, the JWT must verify
// with the service account's public key (RS256 only) and carry iss = client_email,
// aud = token_uri(), scope = the firebase.messaging scope, exp in the future and at most an hour
// after iat; else 400 {"error":"invalid_grant"} (415/400 invalid_request for a bad content type or
// form). A good assertion gets {"access_token": <opaque, new each time>, "expires_in":
// token_lifetime_s, "token_type": "Bearer"}.
//
// messages:send (POST /v1/projects/<project_id>/messages:send): the bearer token must be one the
// mock issued, unexpired by the injected clock and not revoked (else 401 UNAUTHENTICATED); the
// body at most 4096 bytes and shaped as FCM wants: {"message": {"token": non-empty string,
// "data": an object of string values, "android": {"collapse_key": string, "ttl": "<n>s",
// "priority": "high"|"normal"}}}, nothing else in "message" but "notification" (else 400
// INVALID_ARGUMENT). A message that passes is recorded (messages()) and answered 200
// {"name": "projects/<id>/messages/<n>"}, unless a fault mode says otherwise.
//
// Every request is recorded (requests()), with the check that failed. Fault modes, set any time
// from the test thread: scripted FCM errors for the next sends (fail_next_sends) or token
// requests (fail_next_tokens), fixed errors per device token (answer_token), revoking every
// token issued so far (revoke_tokens), and the server's slow answers, dropped connections and
// GOAWAY.
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

struct FcmMockRequest {
  std::uint64_t connection = 0;  // 1-based, in accept order
  std::int32_t stream_id = 0;
  bool token_request = false;  // to the token endpoint, else to messages:send (or elsewhere)
  std::string method;
  std::string path;
  std::map<std::string, std::string> headers;
  std::string body;
  std::string credential;    // the assertion (token endpoint) or the bearer token (send)
  int status = 0;            // what the mock answered; 0 when it did not (dropped, or above GOAWAY)
  std::string error;         // the answer's error status / code, empty for 200
  std::string check_failed;  // the check that failed, empty when it passed
};

// An accepted message, decoded.
struct FcmMockMessage {
  std::string device_token;
  std::map<std::string, std::string> data;
  std::string collapse_key;
  std::string ttl;
  std::string priority;
  bool has_notification = false;
  std::string access_token;  // the bearer it came with
};

struct FcmMockOptions {
  std::string project_id;
  std::string client_email;
  std::string service_account_public_pem;  // verifies the assertions
  std::string token_path = "/token";
  std::int64_t token_lifetime_s = 3600;  // expires_in of the tokens issued
  std::uint32_t max_concurrent_streams = 1000;
  // Called on the mock's I/O thread with every message accepted (answered 200), without the
  // mock's lock held; empty: not called.
  std::function<void(const FcmMockMessage&)> on_message;
};

// An FCM error answer.
struct FcmMockError {
  int status = 500;
  std::string error_status;  // error.status, e.g. "UNAVAILABLE"
  std::string error_code;    // details[].errorCode, e.g. "UNREGISTERED"; none when empty
  std::optional<std::int64_t> retry_after_s;
  std::string message;  // error.message
  std::string field;    // a BadRequest field violation, e.g. "message.token"; none if empty
};

class FcmMock {
 public:
  // kIOError when OpenSSL or the socket fails, kInvalidArgument for a bad public key.
  [[nodiscard]] static Result<std::unique_ptr<FcmMock>> start(FcmMockOptions options,
                                                              const Clock& clock);
  ~FcmMock();
  FcmMock(const FcmMock&) = delete;
  FcmMock& operator=(const FcmMock&) = delete;

  [[nodiscard]] std::uint16_t port() const;
  [[nodiscard]] const std::string& ca_file() const;
  // https://127.0.0.1:<port><token_path>: the service account's token_uri.
  [[nodiscard]] std::string token_uri() const;

  // The next `count` sends that pass the checks get `error`.
  void fail_next_sends(std::size_t count, const FcmMockError& error);
  // The next `count` good token requests get `status` with {"error": error}.
  void fail_next_tokens(std::size_t count, int status, const std::string& error);
  // Every send to `device_token` that passes the checks gets `error`.
  void answer_token(const std::string& device_token, const FcmMockError& error);
  // Every access token issued so far is refused from now on (401), as after a key rotation.
  void revoke_tokens();
  // Server faults: see push/h2_server.h.
  void set_delay_ms(std::int64_t delay_ms);
  void release_held();
  void drop_next_request();
  void goaway_after(std::size_t requests);

  [[nodiscard]] std::vector<FcmMockRequest> requests() const;
  [[nodiscard]] std::vector<FcmMockMessage> messages() const;
  [[nodiscard]] std::size_t tokens_issued() const;
  [[nodiscard]] std::size_t connections() const;
  [[nodiscard]] std::size_t pending() const;
  [[nodiscard]] std::size_t max_pending() const;

  struct Impl;

 private:
  explicit FcmMock(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace herald::push::testing
