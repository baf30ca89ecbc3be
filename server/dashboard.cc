#include "server/dashboard.h"

namespace herald::server {

namespace {

// Scripts, styles and API calls only from this node; no framing, no plugins.
constexpr char kContentSecurityPolicy[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

}  // namespace

bool is_dashboard_path(std::string_view path) {
  return is_site_path(kDashboardPath, path);
}

HttpResponse serve_dashboard(const HttpRequest& request) {
  return serve_site(request, kDashboardPath, dashboard_assets(), kContentSecurityPolicy);
}

}  // namespace herald::server
