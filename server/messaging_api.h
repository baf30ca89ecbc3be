// MessagingApi: the messaging administration HTTP API (docs/api-http.md, "Messaging
// administration") — users, devices and their credentials and push tokens, preferences,
// conversations, system messages and a message's delivery timeline. OperatorGate checks the
// admin token before handle() is called.
//
// Device secrets are generated here (32 random bytes, hex) and only their SHA-256 goes into the
// log. Writes are domain commands proposed through the node; reads follow a linearizable read
// barrier. Thread-safety: handle() from any thread.
#pragma once

#include <string>
#include <vector>

#include "server/http_server.h"
#include "server/node_host.h"

namespace herald::server {

// Bytes of randomness in a device secret.
inline constexpr std::size_t kDeviceSecretBytes = 32;
// Largest admin token accepted in configuration.
inline constexpr std::size_t kMaxAdminTokenBytes = 256;

class MessagingApi {
 public:
  // `host` is borrowed.
  explicit MessagingApi(NodeHost* host);
  // True when the path belongs to this API (and the request was answered).
  bool handle(HttpRequest& request, Responder& respond);

 private:
  void route(const std::vector<std::string>& s, HttpRequest& request, Responder respond);
  void create_user(const HttpRequest& request, Responder respond);
  void get_user(const std::string& user_id, Responder respond);
  void create_device(const std::string& user_id, const HttpRequest& request, Responder respond);
  void set_push(const std::string& user_id, const std::string& device_id,
                const HttpRequest& request, Responder respond);
  void remove_device(const std::string& user_id, const std::string& device_id, Responder respond);
  // POST /v1/admin/users/{user}/revoke: RevokeUser; answers {"revoked_at_ms": N}.
  void revoke_user(const std::string& user_id, Responder respond);
  void set_preferences(const std::string& user_id, const HttpRequest& request, Responder respond);
  void create_conversation(const HttpRequest& request, Responder respond);
  void get_retention(Responder respond);
  void set_retention(const HttpRequest& request, Responder respond);
  void get_conversation(const std::string& id, Responder respond);
  void system_message(const std::string& id, const HttpRequest& request, Responder respond);
  void timeline(const std::string& id, std::uint64_t seq, Responder respond);
  void search(const HttpRequest& request, Responder respond);

  NodeHost* host_;
};

}  // namespace herald::server
