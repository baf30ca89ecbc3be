#include "server/operator_gate.h"

#include <openssl/crypto.h>

#include <utility>

#include "server/chat_page.h"
#include "server/dashboard.h"

namespace herald::server {

OperatorGate::OperatorGate(std::string admin_token)
    : expected_(admin_token.empty() ? std::string() : "Bearer " + std::move(admin_token)) {}

bool OperatorGate::is_public(const HttpRequest& request) {
  return request.path == kDeviceSocketPath || request.path == kHealthPath ||
         is_dashboard_path(request.path) || is_chat_path(request.path);
}

std::optional<HttpResponse> OperatorGate::refuse(const HttpRequest& request) const {
  if (is_public(request)) return std::nullopt;
  if (expected_.empty()) {
    return HttpResponse::error(403, "admin_disabled",
                               "this node was started without an admin token, so its operator "
                               "APIs are closed");
  }
  const auto given = request.header("Authorization");
  if (given && given->size() == expected_.size() &&
      CRYPTO_memcmp(given->data(), expected_.data(), expected_.size()) == 0) {
    return std::nullopt;
  }
  HttpResponse r = HttpResponse::error(401, "unauthorized", "a valid admin token is required");
  r.headers.emplace_back("WWW-Authenticate", R"(Bearer realm="herald")");
  return r;
}

}  // namespace herald::server
