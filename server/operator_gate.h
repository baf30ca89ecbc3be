// OperatorGate: the one place that decides which HTTP requests on the client port reach an
// operator surface (docs/api-http.md, "Authentication").
//
// Open to anyone who reaches the port:
//   GET /v1/ws      the device WebSocket (it authenticates with its own `auth` frame)
//   GET /v1/health  liveness for load balancers; reveals nothing about the cluster
//   /dashboard/...  the dashboard's static files (server/dashboard.h): no data, no secret; the
//                   page calls the operator APIs with the token the operator types
//   /chat/...       the web chat's static files (server/chat_page.h): no data, no secret; the
//                   page signs a device in over /v1/ws with the credentials the user gives it
// Everything else — the KV API, workflows, sagas, the cluster view, messaging administration,
// the metrics at /metrics —
// requires the operator credential, "Authorization: Bearer <admin_token>", compared in constant
// time. Without it the answer is 401 `unauthorized` (with a WWW-Authenticate challenge); a node
// started without an admin token answers 403 `admin_disabled`, so an operator surface is never
// open by default.
// Thread-safety: const methods from any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "server/http_server.h"

namespace herald::server {

// Paths served without the operator credential.
inline constexpr std::string_view kDeviceSocketPath = "/v1/ws";
inline constexpr std::string_view kHealthPath = "/v1/health";
// The Prometheus scrape path (docs/metrics.md): an operator surface, so it needs the credential;
// Prometheus sends it with `authorization: {type: Bearer, credentials: ...}` in its scrape config.
inline constexpr std::string_view kMetricsPath = "/metrics";

class OperatorGate {
 public:
  // An empty `admin_token` closes every operator surface.
  explicit OperatorGate(std::string admin_token);

  // Whether `request` is meant for everyone (the device socket, the health probe).
  [[nodiscard]] static bool is_public(const HttpRequest& request);
  // Nullopt when `request` may proceed; otherwise the refusal to answer it with.
  [[nodiscard]] std::optional<HttpResponse> refuse(const HttpRequest& request) const;

 private:
  std::string expected_;  // "Bearer <token>"; empty when no token is configured
};

}  // namespace herald::server
