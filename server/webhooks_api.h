// WebhooksApi: the webhook endpoints of the messaging administration API (docs/api-http.md,
// "Webhooks"; docs/webhooks.md), behind the operator credential like the rest of /v1/admin:
//   PUT    /v1/admin/webhooks/{id}   register or replace an endpoint: {"url", "events",
//                                    "secret"?, "disabled"?}; without a secret one is generated
//                                    ("whsec_" + base64 of 32 random bytes) and answered once
//   GET    /v1/admin/webhooks        every endpoint
//   GET    /v1/admin/webhooks/{id}   one endpoint
//   DELETE /v1/admin/webhooks/{id}
// An endpoint is shown without its secret: its key's fingerprint (webhooks::fingerprint) instead.
// Writes are "webhooks" module commands proposed through the node; reads follow a linearizable
// read barrier. Also builds the "webhooks" part of a message's timeline. Thread-safety: handle()
// from any thread.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "server/http_server.h"
#include "server/node_host.h"
#include "storage/engine.h"

namespace herald::server {

// Webhook deliveries listed in one message's timeline, at most.
inline constexpr std::size_t kMaxTimelineWebhooks = 64;

class WebhooksApi {
 public:
  // `host` is borrowed.
  explicit WebhooksApi(NodeHost* host) : host_(host) {}
  // `s` is the split path, starting "v1", "admin", "webhooks". Answers every request.
  void handle(const std::vector<std::string>& s, const HttpRequest& request, Responder respond);

 private:
  void put(const std::string& id, const HttpRequest& request, Responder respond);
  void get(const std::string& id, Responder respond);  // empty id: every endpoint
  void remove(const std::string& id, Responder respond);

  NodeHost* host_;
};

// The webhook deliveries of message (conversation_id, seq): for each, its endpoint, event,
// status, state and every attempt (time, attempt number, error, HTTP status and latency, node).
[[nodiscard]] boost::json::array webhook_timeline(const storage::Reader& reader,
                                                  const std::string& conversation_id,
                                                  std::uint64_t seq);

}  // namespace herald::server
