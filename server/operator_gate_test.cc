#include "server/operator_gate.h"

#include <gtest/gtest.h>

namespace herald::server {
namespace {

HttpRequest request_to(std::string path, std::string authorization = {}) {
  HttpRequest r;
  r.method = "GET";
  r.path = std::move(path);
  if (!authorization.empty()) r.headers.emplace_back("authorization", std::move(authorization));
  return r;
}

TEST(OperatorGateTest, OperatorPathsWithoutCredentialAreRefusedWithAChallenge) {
  const OperatorGate gate("s3cret");
  for (const char* path : {"/v1/kv/a", "/v1/cluster", "/v1/workflows", "/v1/sagas/x/actions/y",
                           "/v1/admin/users", "/", "/v1/wsx", "/v1/ws/", "/metrics"}) {
    const auto refusal = gate.refuse(request_to(path));
    ASSERT_TRUE(refusal.has_value()) << path;
    EXPECT_EQ(refusal->status, 401u) << path;
    EXPECT_NE(refusal->body.find("\"unauthorized\""), std::string::npos);
    ASSERT_EQ(refusal->headers.size(), 1u);
    EXPECT_EQ(refusal->headers[0].first, "WWW-Authenticate");
  }
}

TEST(OperatorGateTest, WrongOrMalformedCredentialsAreRefused) {
  const OperatorGate gate("s3cret");
  for (const char* auth : {"Bearer s3cre", "Bearer s3cret ", "Bearer S3CRET", "s3cret",
                           "Basic s3cret", "Bearer  s3cret", "bearer s3cret"}) {
    const auto refusal = gate.refuse(request_to("/v1/kv/a", auth));
    ASSERT_TRUE(refusal.has_value()) << auth;
    EXPECT_EQ(refusal->status, 401u) << auth;
  }
}

TEST(OperatorGateTest, TheRightCredentialPasses) {
  const OperatorGate gate("s3cret");
  EXPECT_FALSE(gate.refuse(request_to("/v1/kv/a", "Bearer s3cret")).has_value());
  EXPECT_FALSE(gate.refuse(request_to("/v1/cluster", "Bearer s3cret")).has_value());
  EXPECT_FALSE(gate.refuse(request_to("/metrics", "Bearer s3cret")).has_value());
}

TEST(OperatorGateTest, DeviceSocketAndHealthNeedNoCredential) {
  const OperatorGate gate("s3cret");
  EXPECT_FALSE(gate.refuse(request_to("/v1/ws")).has_value());
  EXPECT_FALSE(gate.refuse(request_to("/v1/health")).has_value());
}

TEST(OperatorGateTest, WithoutATokenEveryOperatorSurfaceIsClosed) {
  const OperatorGate gate("");
  const auto refusal = gate.refuse(request_to("/v1/kv/a", "Bearer "));
  ASSERT_TRUE(refusal.has_value());
  EXPECT_EQ(refusal->status, 403u);
  EXPECT_NE(refusal->body.find("\"admin_disabled\""), std::string::npos);
  EXPECT_FALSE(gate.refuse(request_to("/v1/health")).has_value());
}

}  // namespace
}  // namespace herald::server
