#include "server/dashboard.h"

#include <gtest/gtest.h>

#include <string>

#include "server/operator_gate.h"

namespace herald::server {
namespace {

HttpRequest get(std::string path, std::string method = "GET") {
  HttpRequest r;
  r.method = std::move(method);
  r.path = std::move(path);
  return r;
}

std::string header_of(const HttpResponse& r, std::string_view name) {
  for (const auto& [key, value] : r.headers) {
    if (key == name) return value;
  }
  return {};
}

TEST(DashboardTest, TheRootServesIndexHtmlWithItsPolicy) {
  const HttpResponse r = serve_dashboard(get("/dashboard/"));
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.content_type, "text/html; charset=utf-8");
  EXPECT_NE(r.body.find("<html"), std::string::npos);
  EXPECT_NE(header_of(r, "Content-Security-Policy").find("script-src 'self'"), std::string::npos);
  EXPECT_EQ(header_of(r, "X-Content-Type-Options"), "nosniff");
}

TEST(DashboardTest, ThePathWithoutSlashRedirectsSoRelativeModulesResolve) {
  const HttpResponse r = serve_dashboard(get("/dashboard"));
  EXPECT_EQ(r.status, 301u);
  EXPECT_EQ(header_of(r, "Location"), "/dashboard/");
}

TEST(DashboardTest, EveryAssetIsServedWithItsTypeAndNothingLoadsFromElsewhere) {
  ASSERT_FALSE(dashboard_assets().empty());
  for (const DashboardAsset& asset : dashboard_assets()) {
    const HttpResponse r = serve_dashboard(get("/dashboard/" + std::string(asset.name)));
    EXPECT_EQ(r.status, 200u) << asset.name;
    EXPECT_EQ(r.body, asset.bytes) << asset.name;
    EXPECT_NE(r.content_type, "application/octet-stream") << asset.name;
    // No CDN: the page loads nothing from another origin.
    EXPECT_EQ(r.body.find("https://"), std::string::npos) << asset.name;
    EXPECT_EQ(r.body.find("http://"), std::string::npos) << asset.name;
  }
}

TEST(DashboardTest, HeadAnswersWithoutABody) {
  const HttpResponse r = serve_dashboard(get("/dashboard/app.js", "HEAD"));
  EXPECT_EQ(r.status, 200u);
  EXPECT_TRUE(r.body.empty());
}

TEST(DashboardTest, UnknownFilesAndWritesAreRefused) {
  EXPECT_EQ(serve_dashboard(get("/dashboard/nope.js")).status, 404u);
  EXPECT_EQ(serve_dashboard(get("/dashboard/../etc/passwd")).status, 404u);
  EXPECT_EQ(serve_dashboard(get("/dashboard/", "POST")).status, 405u);
}

TEST(DashboardTest, OnlyTheDashboardPathsAreOpenAtTheGate) {
  const OperatorGate gate("s3cret");
  EXPECT_FALSE(gate.refuse(get("/dashboard")).has_value());
  EXPECT_FALSE(gate.refuse(get("/dashboard/app.js")).has_value());
  for (const char* path : {"/dashboardx", "/dashboard.js", "/v1/dashboard"}) {
    const auto refusal = gate.refuse(get(path));
    ASSERT_TRUE(refusal.has_value()) << path;
    EXPECT_EQ(refusal->status, 401u) << path;
  }
}

}  // namespace
}  // namespace herald::server
