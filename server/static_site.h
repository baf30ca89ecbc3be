// Static sites embedded in the binary: the operator dashboard (server/dashboard.h) and the web
// chat (server/chat_page.h). Their files are compiled in at build time by
// server/embed_assets.cmake, so every node serves the same pages without an installed directory.
// Thread-safety: pure functions over immutable data.
#pragma once

#include <span>
#include <string_view>

#include "server/http_server.h"

namespace herald::server {

struct EmbeddedAsset {
  std::string_view name;  // file name under the site's directory, e.g. "app.js"
  std::string_view content_type;
  std::string_view bytes;
};

// The content security policy of Herald's own pages (the dashboard, the web chat): scripts, styles
// and connections (API calls, and WebSockets: 'self' covers ws: and wss: of the same host and
// port) only to this node; no framing, no plugins.
inline constexpr std::string_view kSiteContentSecurityPolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

// Whether `path` (raw, without the query) is `base` (e.g. "/dashboard") or below it.
[[nodiscard]] bool is_site_path(std::string_view base, std::string_view path);

// The answer to `request` on the site at `base`: GET or HEAD of one of `assets` (HEAD without a
// body; "base/" serves index.html), 301 from `base` to `base/`, 404 for an unknown file, 405 for
// other methods. Every file is sent with `content_security_policy`, nosniff, no referrer, and
// no-cache (files change with the binary). Precondition: is_site_path(base, request.path).
[[nodiscard]] HttpResponse serve_site(const HttpRequest& request, std::string_view base,
                                      std::span<const EmbeddedAsset> assets,
                                      std::string_view content_security_policy);

}  // namespace herald::server
