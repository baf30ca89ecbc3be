// The web chat's static files, served at /chat/ on every node (docs/js-client.md, "The web chat").
//
// The files live in web/chat/ (plain HTML, CSS and an ES module; no build step) beside the
// JavaScript client module clients/js/herald.js, which is served as /chat/herald.js: the page is
// built only on that module. Both are compiled into the binary at build time
// (server/embed_assets.cmake). The page holds no data and no secret: it is served without any
// credential, and signs a device in over the device WebSocket (/v1/ws) with the credentials the
// user gives it. Responses carry a Content-Security-Policy that allows scripts, styles and
// connections only to the serving node.
// Thread-safety: pure functions over immutable data.
#pragma once

#include <span>
#include <string_view>

#include "server/http_server.h"
#include "server/static_site.h"

namespace herald::server {

// The web chat's path; "/chat" redirects to "/chat/", which serves index.html.
inline constexpr std::string_view kChatPath = "/chat";

// Every embedded file (generated at build time).
[[nodiscard]] std::span<const EmbeddedAsset> chat_assets();

// Whether `path` (raw, without the query) is "/chat" or below it.
[[nodiscard]] bool is_chat_path(std::string_view path);

// The answer to `request` on a chat path (serve_site in server/static_site.h).
// Precondition: is_chat_path(request.path).
[[nodiscard]] HttpResponse serve_chat(const HttpRequest& request);

}  // namespace herald::server
