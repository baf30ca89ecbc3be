// AdminClient: a blocking HTTP/1.1 client for a node's messaging administration API
// (docs/api-http.md, "Messaging administration") and its other plain HTTP endpoints
// (GET /v1/cluster), for tests, benchmarks and tools.
//
// Every request opens its own TCP connection (with TLS, its own TLS session) to host:port (so a
// restarted node needs no reconnection logic), sends the admin token as "Authorization: Bearer
// <token>", and is bounded as a whole (resolve, connect, write, read) by the client's timeout.
//
// Errors. A non-2xx answer with Herald's JSON error body {"error": {"code", "message"}} becomes
// status_of_error(code, message) (client/herald_client.h): its message starts with "<code>: " and
// protocol_error_code() reads it back; a non-2xx answer without that body becomes
// "http_<status>: <body>" with kIOError. The client's own errors: kTimeout when the request did
// not complete in time (a write may still have taken effect), kIOError when the connection failed,
// kCorruption when a 2xx body is not the documented JSON, kResourceExhausted when a response is
// larger than kMaxAdminResponseBytes.
// Thread-safety: the client holds only its configuration, so calls may run on several threads at
// once; each call is blocking.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "client/herald_client.h"
#include "client/ws_client.h"

namespace herald::client {

// Default bound on one whole request.
inline constexpr std::uint32_t kDefaultAdminTimeoutMs = 5'000;
// Largest response body read.
inline constexpr std::size_t kMaxAdminResponseBytes = 8 * 1024 * 1024;

// A response as received.
struct HttpReply {
  unsigned status = 0;
  std::string body;
};

struct DeviceInfo {
  std::string device_id;
  std::string platform;
  std::string push_provider;
  bool has_push_token = false;
  std::int64_t created_ms = 0;
};

// GET /v1/admin/users/{user_id}.
struct UserInfo {
  std::string user_id;
  std::string display_name;
  std::string email;
  std::int64_t created_ms = 0;
  std::vector<DeviceInfo> devices;
};

// One event of a delivery workflow's history.
struct TimelineEvent {
  std::uint64_t seq = 0;
  std::int64_t time_ms = 0;
  std::string kind;  // "started", "signaled", "timer_fired", "state_changed", ...
  std::string name;  // signal name, activity type, timer tag or state
  std::string error_type;
  std::string error_message;
};

// One device's delivery state in a recipient's workflow.
struct DeviceDelivery {
  std::string device_id;
  std::string state;  // "pending", "pushed", "delivered" or "read"
  std::int64_t delivered_ms = 0;
  std::int64_t read_ms = 0;
};

// One recipient's delivery workflow. `state` is empty when the workflow does not exist.
struct RecipientTimeline {
  std::string user_id;
  std::string workflow_id;
  std::string state;   // "stored", "push_dispatched", "delivery_confirmed", "read_acknowledged"...
  std::string status;  // "running", "completed", ...
  std::vector<DeviceDelivery> devices;
  bool escalated = false;
  bool emailed = false;
  std::vector<TimelineEvent> history;
};

// GET /v1/admin/conversations/{id}/messages/{seq}.
struct MessageTimeline {
  Message message;
  std::vector<RecipientTimeline> recipients;

  // The recipient's timeline, or nullptr.
  [[nodiscard]] const RecipientTimeline* recipient(std::string_view user_id) const;
};

// POST /v1/admin/conversations. A direct conversation has exactly one member besides the
// creator; a group needs its id.
struct AdminConversation {
  std::string creator;
  std::string kind = "group";  // "direct" or "group"
  std::vector<std::string> members;
  std::string conversation_id;
  std::string title;
};

class AdminClient {
 public:
  // `host` is an IP literal or a name; `token` the node's --admin-token. Precondition (asserted):
  // timeout_ms > 0.
  // With `tls`, requests go over HTTPS, the server's certificate checked as ClientTls says (a
  // certificate that does not verify fails the request with kIOError).
  AdminClient(std::string host, std::uint16_t port, std::string token,
              std::uint32_t timeout_ms = kDefaultAdminTimeoutMs,
              std::optional<ClientTls> tls = std::nullopt);

  // Any request, any answer: the status and body as received. `body` non-empty is sent as
  // application/json. Errors: only the client's own (see the file comment).
  [[nodiscard]] Result<HttpReply> request(std::string_view method, const std::string& target,
                                          const std::string& body = {}) const;
  // GET `target`: the body of a 2xx answer, else its error.
  [[nodiscard]] Result<std::string> get(const std::string& target) const;

  [[nodiscard]] Status create_user(const std::string& user_id, const std::string& display_name = {},
                                   const std::string& email = {}) const;
  [[nodiscard]] Result<UserInfo> get_user(const std::string& user_id) const;
  // Returns the device's secret token (shown once).
  [[nodiscard]] Result<std::string> create_device(const std::string& user_id,
                                                  const std::string& device_id,
                                                  const std::string& platform = "ios") const;
  // POST /v1/admin/users/{user_id}/revoke: the user's live sessions end, device secrets stop
  // working, and sign-in tokens issued before the returned stamp (ms) are refused.
  [[nodiscard]] Result<std::int64_t> revoke_user(const std::string& user_id) const;
  // `provider` "apns", "fcm", "webpush" (the token is the subscription JSON), or "" to clear the
  // token.
  [[nodiscard]] Status set_push_token(const std::string& user_id, const std::string& device_id,
                                      const std::string& provider, const std::string& token) const;
  [[nodiscard]] Result<Conversation> create_conversation(const AdminConversation& spec) const;
  // A system message, delivered to every member.
  [[nodiscard]] Result<SendResult> system_message(const std::string& conversation_id,
                                                  const std::string& body,
                                                  const std::string& client_message_id) const;
  [[nodiscard]] Result<MessageTimeline> timeline(const std::string& conversation_id,
                                                 std::uint64_t seq) const;

 private:
  // request() whose non-2xx answers become errors; returns the body.
  [[nodiscard]] Result<std::string> checked(std::string_view method, const std::string& target,
                                            const std::string& body = {}) const;

  std::string host_;
  std::uint16_t port_;
  std::string token_;
  std::uint32_t timeout_ms_;
  std::optional<ClientTls> tls_;
};

// Parsers of the admin API's JSON bodies (exposed for tests). kCorruption names the first
// missing or mistyped field.
[[nodiscard]] Result<UserInfo> parse_user_info(std::string_view body);
[[nodiscard]] Result<MessageTimeline> parse_timeline(std::string_view body);
// The Status of a non-2xx answer (see the file comment).
[[nodiscard]] Status status_of_reply(const HttpReply& reply);
// True when request() failed in TLS, before anything was sent: the CA file did not load
// (kInvalidArgument), or the handshake failed (kIOError: the server's certificate did not verify
// or did not name the host, or the server does not speak TLS).
[[nodiscard]] bool is_tls_failure(const Status& status);

// Percent-encodes one path segment (RFC 3986 unreserved characters pass as they are).
[[nodiscard]] std::string encode_path_segment(std::string_view segment);

}  // namespace herald::client
