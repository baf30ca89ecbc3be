#include "server/static_site.h"

#include <algorithm>
#include <string>

#include "base/assert.h"

namespace herald::server {

bool is_site_path(std::string_view base, std::string_view path) {
  if (!path.starts_with(base)) return false;
  const std::string_view rest = path.substr(base.size());
  return rest.empty() || rest.front() == '/';
}

HttpResponse serve_site(const HttpRequest& request, std::string_view base,
                        std::span<const EmbeddedAsset> assets,
                        std::string_view content_security_policy) {
  HERALD_ASSERT(is_site_path(base, request.path), "a path of the site");
  if (request.method != "GET" && request.method != "HEAD") {
    HttpResponse r = HttpResponse::error(405, "method_not_allowed", "static files are read-only");
    r.headers.emplace_back("Allow", "GET, HEAD");
    return r;
  }
  std::string_view name = request.path.substr(base.size());
  if (name.empty()) {
    HttpResponse r;
    r.status = 301;
    r.content_type = "text/plain; charset=utf-8";
    r.headers.emplace_back("Location", std::string(base) + "/");
    return r;
  }
  name.remove_prefix(1);  // the '/'
  if (name.empty()) name = "index.html";
  const auto it = std::find_if(assets.begin(), assets.end(),
                               [&](const EmbeddedAsset& a) { return a.name == name; });
  if (it == assets.end()) return HttpResponse::error(404, "not_found", "no such file");
  HttpResponse r;
  r.content_type = std::string(it->content_type);
  if (request.method == "GET") r.body = std::string(it->bytes);
  r.headers.emplace_back("Content-Security-Policy", std::string(content_security_policy));
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  r.headers.emplace_back("Referrer-Policy", "no-referrer");
  // Files change with the binary: the browser revalidates rather than running an old page.
  r.headers.emplace_back("Cache-Control", "no-cache");
  return r;
}

}  // namespace herald::server
