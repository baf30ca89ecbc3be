#include "server/chat_page.h"

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

TEST(ChatPageTest, TheRootServesIndexHtmlWithItsPolicy) {
  const HttpResponse r = serve_chat(get("/chat/"));
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.content_type, "text/html; charset=utf-8");
  EXPECT_NE(r.body.find("<html"), std::string::npos);
  EXPECT_NE(header_of(r, "Content-Security-Policy").find("connect-src 'self'"), std::string::npos);
}

TEST(ChatPageTest, TheClientModuleIsServedBesideThePage) {
  const HttpResponse r = serve_chat(get("/chat/herald.js"));
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.content_type, "text/javascript; charset=utf-8");
  EXPECT_NE(r.body.find("export class HeraldClient"), std::string::npos);
}

TEST(ChatPageTest, ThePathWithoutSlashRedirects) {
  const HttpResponse r = serve_chat(get("/chat"));
  EXPECT_EQ(r.status, 301u);
  EXPECT_EQ(header_of(r, "Location"), "/chat/");
}

TEST(ChatPageTest, EveryAssetHasAKnownTypeAndNothingLoadsFromElsewhere) {
  ASSERT_FALSE(chat_assets().empty());
  for (const EmbeddedAsset& asset : chat_assets()) {
    const HttpResponse r = serve_chat(get("/chat/" + std::string(asset.name)));
    EXPECT_EQ(r.status, 200u) << asset.name;
    EXPECT_NE(r.content_type, "application/octet-stream") << asset.name;
    EXPECT_EQ(r.body.find("https://"), std::string::npos) << asset.name;
    EXPECT_EQ(r.body.find("http://"), std::string::npos) << asset.name;
  }
}

TEST(ChatPageTest, UnknownFilesAndWritesAreRefused) {
  EXPECT_EQ(serve_chat(get("/chat/nope.js")).status, 404u);
  EXPECT_EQ(serve_chat(get("/chat/../v1/kv/x")).status, 404u);
  EXPECT_EQ(serve_chat(get("/chat/", "POST")).status, 405u);
}

TEST(ChatPageTest, OnlyTheChatPathsAreOpenAtTheGate) {
  const OperatorGate gate("s3cret");
  EXPECT_FALSE(gate.refuse(get("/chat")).has_value());
  EXPECT_FALSE(gate.refuse(get("/chat/herald.js")).has_value());
  for (const char* path : {"/chatx", "/chat.js", "/v1/chat"}) {
    const auto refusal = gate.refuse(get(path));
    ASSERT_TRUE(refusal.has_value()) << path;
    EXPECT_EQ(refusal->status, 401u) << path;
  }
}

}  // namespace
}  // namespace herald::server
