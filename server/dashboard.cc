#include "server/dashboard.h"

#include <algorithm>
#include <string>

#include "base/assert.h"

namespace herald::server {

namespace {

// Scripts, styles and API calls only from this node; no framing, no plugins.
constexpr char kContentSecurityPolicy[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const DashboardAsset* find_asset(std::string_view name) {
  const auto assets = dashboard_assets();
  const auto it = std::find_if(assets.begin(), assets.end(),
                               [&](const DashboardAsset& a) { return a.name == name; });
  return it == assets.end() ? nullptr : &*it;
}

}  // namespace

bool is_dashboard_path(std::string_view path) {
  if (!path.starts_with(kDashboardPath)) return false;
  const std::string_view rest = path.substr(kDashboardPath.size());
  return rest.empty() || rest.front() == '/';
}

HttpResponse serve_dashboard(const HttpRequest& request) {
  HERALD_ASSERT(is_dashboard_path(request.path), "a dashboard path");
  if (request.method != "GET" && request.method != "HEAD") {
    HttpResponse r = HttpResponse::error(405, "method_not_allowed", "the dashboard is read-only");
    r.headers.emplace_back("Allow", "GET, HEAD");
    return r;
  }
  std::string_view name = request.path.substr(kDashboardPath.size());
  if (name.empty()) {
    HttpResponse r;
    r.status = 301;
    r.content_type = "text/plain; charset=utf-8";
    r.headers.emplace_back("Location", std::string(kDashboardPath) + "/");
    return r;
  }
  name.remove_prefix(1);  // the '/'
  if (name.empty()) name = "index.html";
  const DashboardAsset* asset = find_asset(name);
  if (asset == nullptr) {
    return HttpResponse::error(404, "not_found", "no such dashboard file");
  }
  HttpResponse r;
  r.content_type = std::string(asset->content_type);
  if (request.method == "GET") r.body = std::string(asset->bytes);
  r.headers.emplace_back("Content-Security-Policy", kContentSecurityPolicy);
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  r.headers.emplace_back("Referrer-Policy", "no-referrer");
  // Files change with the binary: the browser revalidates rather than running an old page.
  r.headers.emplace_back("Cache-Control", "no-cache");
  return r;
}

}  // namespace herald::server
