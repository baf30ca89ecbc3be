#include "server/chat_page.h"

namespace herald::server {

namespace {

// Scripts, styles and WebSocket connections only to this node ('self' covers ws: and wss: of the
// same host and port); no framing, no plugins.
constexpr char kContentSecurityPolicy[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

}  // namespace

bool is_chat_path(std::string_view path) {
  return is_site_path(kChatPath, path);
}

HttpResponse serve_chat(const HttpRequest& request) {
  return serve_site(request, kChatPath, chat_assets(), kContentSecurityPolicy);
}

}  // namespace herald::server
