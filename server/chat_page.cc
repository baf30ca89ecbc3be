#include "server/chat_page.h"

namespace herald::server {

bool is_chat_path(std::string_view path) {
  return is_site_path(kChatPath, path);
}

HttpResponse serve_chat(const HttpRequest& request) {
  return serve_site(request, kChatPath, chat_assets(), kSiteContentSecurityPolicy);
}

}  // namespace herald::server
