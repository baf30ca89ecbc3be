// Dashboard: the operator dashboard's static files, served at /dashboard/ on every node
// (docs/dashboard.md).
//
// The files live in web/dashboard/ (plain HTML, CSS and ES modules; no build step) and are
// compiled into the binary at build time (server/embed_assets.cmake), so every node serves the
// same page without an installed directory. The page itself holds no data and no secret: it is
// served without the operator credential (like the health probe), and every call it makes goes
// to the operator APIs with the token the operator types, so it shows exactly what the API
// allows. Responses carry a Content-Security-Policy that allows scripts, styles and requests
// only from the serving node.
// Thread-safety: pure functions over immutable data.
#pragma once

#include <span>
#include <string_view>

#include "server/http_server.h"
#include "server/static_site.h"

namespace herald::server {

// The dashboard's path; "/dashboard" redirects to "/dashboard/", which serves index.html.
inline constexpr std::string_view kDashboardPath = "/dashboard";

// A file under web/dashboard/, e.g. "app.js".
using DashboardAsset = EmbeddedAsset;

// Every embedded file, sorted by name (generated at build time).
[[nodiscard]] std::span<const DashboardAsset> dashboard_assets();

// Whether `path` (raw, without the query) is "/dashboard" or below it.
[[nodiscard]] bool is_dashboard_path(std::string_view path);

// The answer to `request` on a dashboard path (serve_site in server/static_site.h): GET or HEAD
// of an embedded file, 301 from "/dashboard" to "/dashboard/", 404 for an unknown file, 405 for
// other methods.
// Precondition: is_dashboard_path(request.path).
[[nodiscard]] HttpResponse serve_dashboard(const HttpRequest& request);

}  // namespace herald::server
