// Devices signing in with the app's own tokens on a real node ([signin], docs/protocol.md,
// "Signing in with the app's token"): a first sign-in creates the user and the device, refused
// tokens leave the connection able to retry, a token that expires ends the session unless it was
// refreshed, a removed device cannot sign in again, and revoking a user ends its sessions and
// refuses the tokens issued before.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "client/admin_client.h"
#include "client/herald_client.h"
#include "crypto/base64url.h"
#include "crypto/jwt.h"
#include "server/gateway.h"
#include "tests/e2e/cluster.h"
#include "tests/e2e/devices.h"
#include "tests/e2e/one_node.h"

namespace herald::e2e {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using client::HeraldClient;

constexpr char kSecret[] = "the-app-backends-sign-in-secret-0123456789";
constexpr char kAudience[] = "herald-e2e";
// A token's lifetime when the test does not wait for its end.
constexpr std::int64_t kLongLifetimeS = 3'600;

std::int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A token of the app's backend for (user, device), valid until `exp`.
std::string token(const std::string& user, const std::string& device, std::int64_t exp,
                  const std::string& secret = kSecret, const std::string& audience = kAudience) {
  const json::object claims{{"sub", user},    {"device_id", device}, {"aud", audience},
                            {"iat", now_s()}, {"exp", exp},          {"name", "From the app"}};
  return crypto::JwtSigner::hmac(secret).value().sign(claims).value();
}

// A token issued at `iat`, or without "iat" when it is nullopt.
std::string token_issued(const std::string& user, const std::string& device,
                         std::optional<std::int64_t> iat, std::int64_t exp) {
  json::object claims{{"sub", user}, {"device_id", device}, {"aud", kAudience}, {"exp", exp}};
  if (iat) claims["iat"] = *iat;
  return crypto::JwtSigner::hmac(kSecret).value().sign(claims).value();
}

class SignIn : public OneNodeTest {
 protected:
  void SetUp() override {
    secret_file_ = fmt::format("{}/herald-e2e-{}-signin-secret", ::testing::TempDir(), ::getpid());
    std::ofstream(secret_file_) << kSecret << "\n";
    fs::permissions(secret_file_, fs::perms::owner_read | fs::perms::owner_write);
    start_node(
        fmt::format("[signin]\nhs256_secret_file = \"{}\"\naudience = \"{}\"\nclock_skew_s = 0\n",
                    secret_file_, kAudience));
  }
  void TearDown() override {
    OneNodeTest::TearDown();
    std::remove(secret_file_.c_str());
  }

  std::unique_ptr<HeraldClient> socket() {
    return must(HeraldClient::connect("127.0.0.1", port()), "connecting");
  }

  std::string secret_file_;
};

TEST_F(SignIn, FirstSignInCreatesTheUserAndDeviceWhichThenChats) {
  must(admin_->create_user("alice", "Alice"), "creating alice");
  const DeviceCredentials a_phone = must(provision_device(*admin_, "alice", "a-phone"), "a-phone");

  auto dana = socket();
  const client::AuthInfo info = must(
      dana->auth_with_token(token("dana", "dana-web", now_s() + kLongLifetimeS)), "signing in");
  EXPECT_EQ(info.user_id, "dana");
  EXPECT_EQ(info.device_id, "dana-web");
  EXPECT_GT(info.expires_at_ms, 0);
  const client::UserInfo user = must(admin_->get_user("dana"), "dana, created by the sign-in");
  EXPECT_EQ(user.display_name, "From the app");
  ASSERT_EQ(user.devices.size(), 1U);
  EXPECT_EQ(user.devices[0].device_id, "dana-web");
  EXPECT_EQ(user.devices[0].platform, "web");

  const std::string direct =
      must(admin_->create_conversation({"alice", "direct", {"dana"}, "", ""}),
           "the direct conversation")
          .conversation_id;
  auto alice = must(connect_device(port(), a_phone), "alice");
  must(dana->send(direct, "d1", "hello from the web"), "dana sends");
  const client::Change got =
      must(wait_for_change(*alice,
                           [&](const client::Change& c) {
                             return c.kind == "message_new" && c.conversation_id == direct;
                           }),
           "alice receives");
  EXPECT_EQ(got.seq, 1U);

  // The device registers its push target over the socket.
  must(dana->push_register("webpush", R"({"endpoint":"https://push.example.net/s/1","keys":{}})"),
       "registering a push target");
  const client::UserInfo pushed = must(admin_->get_user("dana"), "dana");
  ASSERT_EQ(pushed.devices.size(), 1U);
  EXPECT_EQ(pushed.devices[0].push_provider, "webpush");
  EXPECT_EQ(client::protocol_error_code(dana->push_register("carrier-pigeon", "x")),
            "invalid_argument");

  // A second sign-in of the same device (another tab, a new token) finds it and creates nothing.
  auto again = socket();
  must(again->auth_with_token(token("dana", "dana-web", now_s() + kLongLifetimeS)), "again");
  EXPECT_EQ(must(admin_->get_user("dana"), "dana").devices.size(), 1U);
}

TEST_F(SignIn, RefusedTokensLeaveTheConnectionAbleToRetryUntilTheThirdFailure) {
  auto device = socket();
  const auto code = [&](const std::string& jwt) {
    return std::string(client::protocol_error_code(device->auth_with_token(jwt).status()));
  };
  EXPECT_EQ(code(token("erin", "erin-web", now_s() - 5)), "unauthorized") << "expired";
  EXPECT_EQ(code(token("erin", "erin-web", now_s() + 60, "another-secret-of-sufficient-length!!")),
            "unauthorized")
      << "wrong signature";
  // The third failure closes the connection.
  EXPECT_EQ(code(token("erin", "erin-web", now_s() + 60, kSecret, "another-service")),
            "unauthorized")
      << "wrong audience";
  EXPECT_EQ(close_code_within(*device, kChangeWaitMs), 1008);
  EXPECT_EQ(admin_->get_user("erin").status().code(), Code::kNotFound) << "nothing was created";

  // alg none, then a valid token on the same connection.
  auto retry = socket();
  const std::string none =
      crypto::base64url_encode(R"({"alg":"none","typ":"JWT"})") + "." +
      crypto::base64url_encode(json::serialize(json::object{
          {"sub", "erin"}, {"device_id", "erin-web"}, {"aud", kAudience}, {"exp", now_s() + 60}})) +
      ".";
  EXPECT_EQ(client::protocol_error_code(retry->auth_with_token(none).status()), "unauthorized");
  must(retry->auth_with_token(token("erin", "erin-web", now_s() + 60)), "a valid token");
  EXPECT_TRUE(retry->ping().ok());
}

TEST_F(SignIn, AnExpiringTokenEndsTheSessionUnlessRefreshed) {
  // Whole seconds: "exp" is in seconds.
  const std::int64_t start = now_s();
  auto refreshed = socket();
  auto left_alone = socket();
  must(refreshed->auth_with_token(token("fred", "fred-web", start + 2)), "fred signs in");
  must(left_alone->auth_with_token(token("fred", "fred-tab", start + 2)), "fred's tab signs in");
  // A token of another device does not refresh this one.
  EXPECT_EQ(client::protocol_error_code(
                refreshed->refresh(token("fred", "fred-tab", start + 60)).status()),
            "unauthorized");
  const std::int64_t until =
      must(refreshed->refresh(token("fred", "fred-web", start + 60)), "refreshing");
  EXPECT_EQ(until, (start + 60) * 1000);
  // The unrefreshed session is closed once its token expires; the refreshed one stays.
  EXPECT_EQ(close_code_within(*left_alone, 5'000), server::kCloseTokenExpired);
  EXPECT_TRUE(refreshed->ping().ok());
  EXPECT_FALSE(refreshed->close_code().has_value());
}

TEST_F(SignIn, ARemovedDeviceIsClosedAndCannotSignInAgain) {
  auto device = socket();
  must(device->auth_with_token(token("gina", "gina-web", now_s() + kLongLifetimeS)), "signing in");
  must(admin_->request("DELETE", "/v1/admin/users/gina/devices/gina-web"), "removing gina-web");
  EXPECT_EQ(close_code_within(*device, kChangeWaitMs), server::kCloseDeviceRemoved);
  auto again = socket();
  EXPECT_EQ(
      client::protocol_error_code(
          again->auth_with_token(token("gina", "gina-web", now_s() + kLongLifetimeS)).status()),
      "unauthorized");
}

TEST_F(SignIn, RevokingAUserEndsItsSessionsAndRefusesOlderTokens) {
  // One device with a secret, one signed in with a token, and a bystander.
  must(admin_->create_user("hank", "Hank"), "creating hank");
  const DeviceCredentials phone = must(provision_device(*admin_, "hank", "hank-phone"), "phone");
  auto by_secret = must(connect_device(port(), phone), "hank-phone");
  auto by_token = socket();
  const std::string old_token = token("hank", "hank-web", now_s() + kLongLifetimeS);
  must(by_token->auth_with_token(old_token), "hank-web signs in");
  must(admin_->create_user("ivy"), "creating ivy");
  const DeviceCredentials ivy = must(provision_device(*admin_, "ivy", "ivy-phone"), "ivy-phone");
  auto bystander = must(connect_device(port(), ivy), "ivy connects");

  const auto revoked_at = std::chrono::steady_clock::now();
  const std::int64_t stamp_ms = must(admin_->revoke_user("hank"), "revoking hank");
  EXPECT_EQ(close_code_within(*by_secret, kChangeWaitMs), server::kCloseUserRevoked);
  EXPECT_EQ(close_code_within(*by_token, kChangeWaitMs), server::kCloseUserRevoked);
  EXPECT_LT(std::chrono::steady_clock::now() - revoked_at,
            std::chrono::milliseconds(kChangeWaitMs));
  EXPECT_TRUE(bystander->ping().ok());
  EXPECT_FALSE(bystander->close_code().has_value());

  // The device secret no longer works; neither do tokens issued before the stamp, or without iat.
  EXPECT_EQ(client::protocol_error_code(connect_device(port(), phone).status()), "unauthorized");
  const auto refused = [&](const std::string& jwt) {
    return std::string(client::protocol_error_code(socket()->auth_with_token(jwt).status()));
  };
  EXPECT_EQ(refused(old_token), "unauthorized");
  EXPECT_EQ(refused(token_issued("hank", "hank-web", std::nullopt, now_s() + kLongLifetimeS)),
            "unauthorized");
  EXPECT_EQ(
      refused(token_issued("hank", "hank-phone", stamp_ms / 1000 - 1, now_s() + kLongLifetimeS)),
      "unauthorized");

  // A token issued from the stamp's next whole second on signs in again, on either device (the
  // clock skew is 0 here: wait until that second has come).
  const std::int64_t fresh_iat = stamp_ms / 1000 + 1;
  while (now_s() < fresh_iat) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto again = socket();
  must(again->auth_with_token(token_issued("hank", "hank-web", fresh_iat, now_s() + 60)),
       "a fresh token");
  EXPECT_TRUE(again->ping().ok());
  auto phone_again = socket();
  must(phone_again->auth_with_token(token_issued("hank", "hank-phone", fresh_iat, now_s() + 60)),
       "a fresh token for the phone");
  // A refresh with a token from before the revocation is refused; a fresh one is taken.
  EXPECT_EQ(client::protocol_error_code(again->refresh(old_token).status()), "unauthorized");
  must(again->refresh(token_issued("hank", "hank-web", fresh_iat, now_s() + 120)), "refreshing");
  EXPECT_FALSE(again->close_code().has_value());
}

}  // namespace
}  // namespace herald::e2e
