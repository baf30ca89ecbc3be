#include "server/dashboard.h"

namespace herald::server {

bool is_dashboard_path(std::string_view path) {
  return is_site_path(kDashboardPath, path);
}

HttpResponse serve_dashboard(const HttpRequest& request) {
  return serve_site(request, kDashboardPath, dashboard_assets(), kSiteContentSecurityPolicy);
}

}  // namespace herald::server
