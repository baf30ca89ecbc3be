#include "push/fcm.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "crypto/jwt.h"
#include "crypto/test_keys.h"
#include "push/common.h"
#include "push/fcm_mock.h"
#include "push/test_support.h"

namespace herald::push {
namespace {

using messaging::ProviderResult;
using messaging::PushRequest;
using std::chrono::milliseconds;
using testing::FcmMock;
using testing::FcmMockError;
using testing::FcmMockMessage;
using testing::FcmMockOptions;
using testing::FcmMockRequest;
using testing::kHoldMs;
using testing::Pending;
using testing::TestClock;
using testing::wait_until;

constexpr char kProject[] = "herald-test";
constexpr char kEmail[] = "herald@herald-test.iam.gserviceaccount.com";
constexpr char kToken[] = "dQw4w9WgXcQ:APA91bH_herald-test-token-0123456789";
constexpr std::int64_t kTokenLifetimeS = 3600;

const std::string& service_account_pem() {
  static const std::string pem = crypto::testing::rsa_private_pem(2048);
  return pem;
}

PushRequest push(const std::string& key, const std::string& token = kToken) {
  return testing::sample_push(key, "android", messaging::kFcmProvider, token);
}

FcmMockError fcm_error(int status, const char* error_status, const char* error_code,
                       std::optional<std::int64_t> retry_after_s = std::nullopt) {
  FcmMockError error;
  error.status = status;
  error.error_status = error_status;
  error.error_code = error_code;
  error.retry_after_s = retry_after_s;
  return error;
}

class FcmTest : public ::testing::Test {
 protected:
  void SetUp() override { start_mock(1000); }

  void start_mock(std::uint32_t max_streams) {
    mock_.reset();
    FcmMockOptions options;
    options.project_id = kProject;
    options.client_email = kEmail;
    options.service_account_public_pem = crypto::testing::public_pem_of(service_account_pem());
    options.token_lifetime_s = kTokenLifetimeS;
    options.max_concurrent_streams = max_streams;
    Result<std::unique_ptr<FcmMock>> mock = FcmMock::start(options, clock_);
    ASSERT_TRUE(mock.ok()) << mock.status().to_string();
    mock_ = std::move(mock).value();
    std::error_code ignored;
    std::filesystem::remove(key_path_, ignored);
    key_path_ = write_key(mock_->token_uri());
  }

  void TearDown() override {
    client_.reset();
    mock_.reset();
    std::error_code ignored;
    std::filesystem::remove(key_path_, ignored);
  }

  static std::string write_key(const std::string& token_uri) {
    static std::atomic<int> counter{0};
    boost::json::object key;
    key["type"] = "service_account";
    key["project_id"] = kProject;
    key["private_key_id"] = "0123abcd";
    key["private_key"] = service_account_pem();
    key["client_email"] = kEmail;
    key["token_uri"] = token_uri;
    std::string path =
        (std::filesystem::temp_directory_path() / ("herald-fcm-test-" + std::to_string(::getpid()) +
                                                   "-" + std::to_string(counter++) + ".json"))
            .string();
    std::ofstream(path) << boost::json::serialize(key);
    return path;
  }

  FcmConfig config() {
    FcmConfig config;
    config.service_account_path = key_path_;
    config.host = "127.0.0.1";
    config.port = mock_->port();
    config.ca_file = mock_->ca_file();
    return config;
  }

  void start_client(const FcmConfig& config) {
    client_ = testing::create_client<FcmClient>(config, clock_);
    ASSERT_NE(client_, nullptr);
  }
  void start_client() { start_client(config()); }
  ProviderResult send_now(const PushRequest& request) {
    return testing::send_and_wait(*client_, request);
  }

  std::vector<FcmMockRequest> requests_of(bool token_requests) const {
    std::vector<FcmMockRequest> out;
    for (FcmMockRequest& r : mock_->requests()) {
      if (r.token_request == token_requests) out.push_back(std::move(r));
    }
    return out;
  }

  TestClock clock_;
  std::string key_path_;
  std::unique_ptr<FcmMock> mock_;
  std::unique_ptr<FcmClient> client_;
};

// --- pure pieces -------------------------------------------------------------------------------

TEST(FcmFormat, ServiceAccountNeedsItsFourFields) {
  const std::string good =
      R"({"type":"service_account","project_id":"p-1","client_email":"a@b","private_key":"PEM",
          "token_uri":"https://oauth2.googleapis.com/token"})";
  const Result<FcmServiceAccount> account = parse_service_account(good);
  ASSERT_TRUE(account.ok()) << account.status().to_string();
  EXPECT_EQ(account->project_id, "p-1");
  EXPECT_EQ(account->client_email, "a@b");
  EXPECT_EQ(account->private_key, "PEM");
  EXPECT_EQ(account->token_uri, "https://oauth2.googleapis.com/token");
  for (const char* field : {"project_id", "client_email", "private_key", "token_uri"}) {
    boost::json::object json = boost::json::parse(good).as_object();
    json.erase(field);
    const Status status = parse_service_account(boost::json::serialize(json)).status();
    EXPECT_EQ(status.code(), Code::kInvalidArgument) << field;
    EXPECT_NE(status.message().find(field), std::string::npos) << status.message();
  }
  EXPECT_FALSE(parse_service_account("[1]").ok());
  EXPECT_FALSE(parse_service_account(R"({"type":"authorized_user","project_id":"p",
      "client_email":"a","private_key":"k","token_uri":"https://h/t"})")
                   .ok());
  EXPECT_FALSE(parse_service_account(R"({"project_id":"p/../x","client_email":"a",
      "private_key":"k","token_uri":"https://h/t"})")
                   .ok());
}

TEST(FcmFormat, TokenUriIsAnHttpsUrlWithOptionalPort) {
  Result<HttpsUrl> url = parse_https_url("https://oauth2.googleapis.com/token");
  ASSERT_TRUE(url.ok());
  EXPECT_EQ(url->host, "oauth2.googleapis.com");
  EXPECT_EQ(url->port, 443);
  EXPECT_EQ(url->path, "/token");
  url = parse_https_url("https://127.0.0.1:8443");
  ASSERT_TRUE(url.ok());
  EXPECT_EQ(url->port, 8443);
  EXPECT_EQ(url->path, "/");
  EXPECT_FALSE(parse_https_url("http://h/token").ok());
  EXPECT_FALSE(parse_https_url("https://user@h/token").ok());
  EXPECT_FALSE(parse_https_url("https://h:0/token").ok());
  EXPECT_FALSE(parse_https_url("https://h:70000/token").ok());
  EXPECT_FALSE(parse_https_url("https://h/token?x=1").ok());
  EXPECT_FALSE(parse_https_url("https:///token").ok());
}

TEST(FcmFormat, TokenRequestIsFormEncoded) {
  EXPECT_EQ(fcm_token_request_body("a.b-c_d"),
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=a.b-c_d");
  EXPECT_EQ(fcm_token_request_body("a+b/c="),
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-"
            "type%3Ajwt-bearer&assertion=a%2Bb%2Fc%3D");
}

TEST(FcmFormat, DeviceTokenCharactersAndLength) {
  EXPECT_TRUE(check_fcm_token(kToken).ok());
  EXPECT_FALSE(check_fcm_token("").ok());
  EXPECT_FALSE(check_fcm_token("a b").ok());
  EXPECT_FALSE(check_fcm_token("a\"b").ok());
  EXPECT_FALSE(check_fcm_token(std::string(kFcmMaxDeviceTokenChars + 1, 'a')).ok());
}

TEST(FcmFormat, PayloadIsDataOnlyWithStringValues) {
  const Result<std::string> payload = fcm_payload(push("key-1"));
  ASSERT_TRUE(payload.ok());
  EXPECT_EQ(boost::json::parse(*payload), boost::json::parse(R"({"message":{
      "token":"dQw4w9WgXcQ:APA91bH_herald-test-token-0123456789",
      "data":{"conversation_id":"c-42","seq":"7","title":"Ada","body":"hello",
              "idempotency_key":"key-1"},
      "android":{"collapse_key":"c-42","ttl":"86400s","priority":"high"}}})"));
}

TEST(FcmFormat, PayloadCutsTheBodyThenTheTitle) {
  PushRequest request = push("k");
  request.body = std::string(5000, '"');  // each becomes \" in JSON: twice the bytes
  Result<std::string> payload = fcm_payload(request);
  ASSERT_TRUE(payload.ok());
  EXPECT_LE(payload->size(), kFcmMaxPayloadBytes);
  EXPECT_GT(payload->size(), kFcmMaxPayloadBytes - 8);
  boost::json::value json = boost::json::parse(*payload);
  EXPECT_TRUE(
      std::string(json.at("message").at("data").at("body").as_string()).ends_with(kCutMarker));

  request.title = std::string(5000, 't');
  payload = fcm_payload(request);
  ASSERT_TRUE(payload.ok());
  json = boost::json::parse(*payload);
  EXPECT_EQ(json.at("message").at("data").at("body").as_string(), "");
  EXPECT_TRUE(
      std::string(json.at("message").at("data").at("title").as_string()).ends_with(kCutMarker));

  request.conversation_id = std::string(kFcmMaxPayloadBytes, 'c');
  EXPECT_EQ(fcm_payload(request).status().code(), Code::kResourceExhausted);
}

TEST(FcmFormat, ErrorBodyGivesStatusCodeAndTokenField) {
  const FcmError error =
      parse_fcm_error(R"({"error":{"code":404,"message":"Requested entity was not found.",
      "status":"NOT_FOUND","details":[{"@type":
      "type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}})");
  EXPECT_EQ(error.status, "NOT_FOUND");
  EXPECT_EQ(error.error_code, "UNREGISTERED");
  EXPECT_FALSE(error.names_token);
  EXPECT_TRUE(parse_fcm_error(R"({"error":{"code":400,"status":"INVALID_ARGUMENT","details":[
      {"@type":"type.googleapis.com/google.rpc.BadRequest",
       "fieldViolations":[{"field":"message.token"}]}]}})")
                  .names_token);
  EXPECT_TRUE(parse_fcm_error(R"({"error":{"code":400,"status":"INVALID_ARGUMENT",
      "message":"The registration token is not a valid FCM registration token"}})")
                  .names_token);
  const FcmError garbage = parse_fcm_error("<html>bad gateway</html>");
  EXPECT_EQ(garbage.status, "");
  EXPECT_EQ(garbage.error_code, "");
}

TEST(FcmFormat, ResponseMappingTable) {
  struct Case {
    int status;
    const char* error_status;
    const char* error_code;
    bool names_token;
    const char* type;  // "" for success
  };
  const Case cases[] = {
      {200, "", "", false, ""},
      {404, "NOT_FOUND", "UNREGISTERED", false, messaging::kPushUnregistered},
      {400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", true, messaging::kPushInvalidToken},
      {400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", false, messaging::kPushRejected},
      {403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH", false, messaging::kPushInvalidToken},
      {403, "PERMISSION_DENIED", "THIRD_PARTY_AUTH_ERROR", false, messaging::kPushRejected},
      {404, "NOT_FOUND", "", false, messaging::kPushRejected},
      {429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", false, messaging::kPushUnavailable},
      {500, "INTERNAL", "INTERNAL", false, messaging::kPushUnavailable},
      {503, "UNAVAILABLE", "UNAVAILABLE", false, messaging::kPushUnavailable},
      {401, "UNAUTHENTICATED", "", false, messaging::kPushUnavailable},
      {302, "", "", false, messaging::kPushUnavailable},
  };
  for (const Case& c : cases) {
    FcmError error;
    error.status = c.error_status;
    error.error_code = c.error_code;
    error.names_token = c.names_token;
    const ProviderResult result = map_fcm_response(c.status, error, std::nullopt, "n");
    EXPECT_EQ(result.ok, std::string(c.type).empty()) << c.status << " " << c.error_code;
    EXPECT_EQ(result.error_type, c.type) << c.status << " " << c.error_code;
  }
  EXPECT_EQ(map_fcm_response(200, {}, std::nullopt, "projects/p/messages/1").provider_id,
            "projects/p/messages/1");
  FcmError quota;
  quota.error_code = "QUOTA_EXCEEDED";
  EXPECT_EQ(map_fcm_response(429, quota, 60'000, "").retry_after_ms, 60'000);
  EXPECT_NE(map_fcm_response(429, quota, 60'000, "").error_message.find("QUOTA_EXCEEDED"),
            std::string::npos);
  FcmError gone;
  gone.error_code = "UNREGISTERED";
  EXPECT_EQ(map_fcm_response(404, gone, 5000, "").retry_after_ms, std::nullopt);
}

TEST_F(FcmTest, ConfigurationAndKeyAreChecked) {
  FcmConfig c = config();
  c.max_concurrent_streams = 0;
  EXPECT_EQ(FcmClient::create(c, clock_).status().code(), Code::kInvalidArgument);
  c = config();
  c.token_refresh_margin_ms = -1;
  EXPECT_EQ(FcmClient::create(c, clock_).status().code(), Code::kInvalidArgument);
  c = config();
  c.service_account_path = "/nonexistent/key.json";
  EXPECT_EQ(FcmClient::create(c, clock_).status().code(), Code::kIOError);
  c = config();
  const std::string ec_key = (std::filesystem::temp_directory_path() /
                              ("herald-fcm-ec-" + std::to_string(::getpid()) + ".json"))
                                 .string();
  boost::json::object key = boost::json::parse(R"({"project_id":"p","client_email":"a",
      "token_uri":"https://127.0.0.1/token"})")
                                .as_object();
  key["private_key"] = crypto::testing::ec_private_pem("P-256");
  std::ofstream(ec_key) << boost::json::serialize(key);
  c.service_account_path = ec_key;
  EXPECT_EQ(FcmClient::create(c, clock_).status().code(), Code::kInvalidArgument);
  std::filesystem::remove(ec_key);
}

// --- against the mock --------------------------------------------------------------------------

TEST_F(FcmTest, SendsTheAssertionAndTheMessageFcmExpects) {
  start_client();
  const ProviderResult result = send_now(push("key-1"));
  ASSERT_TRUE(result.ok) << result.error_message;
  EXPECT_EQ(result.provider_id, std::string("projects/") + kProject + "/messages/1");

  const std::vector<FcmMockRequest> token_requests = requests_of(true);
  ASSERT_EQ(token_requests.size(), 1u);
  EXPECT_EQ(token_requests[0].check_failed, "");
  EXPECT_EQ(token_requests[0].status, 200);
  // The mock verified the signature, iss, aud and exp; the claims are as documented.
  const Result<crypto::JwtVerifier> verifier =
      crypto::JwtVerifier::from_pem(crypto::testing::public_pem_of(service_account_pem()));
  ASSERT_TRUE(verifier.ok());
  crypto::JwtChecks checks;
  checks.now_s = clock_.wall_ms() / 1000;
  const Result<crypto::VerifiedJwt> jwt = verifier->verify(token_requests[0].credential, checks);
  ASSERT_TRUE(jwt.ok()) << jwt.status().to_string();
  EXPECT_EQ(jwt->header.at("alg").as_string(), "RS256");
  EXPECT_EQ(jwt->claims.at("iss").as_string(), kEmail);
  EXPECT_EQ(jwt->claims.at("scope").as_string(), kFcmScope);
  EXPECT_EQ(jwt->claims.at("aud").as_string(), mock_->token_uri());
  EXPECT_EQ(jwt->claims.at("iat").as_int64(), clock_.wall_ms() / 1000);
  EXPECT_EQ(jwt->claims.at("exp").as_int64(),
            clock_.wall_ms() / 1000 + kFcmAssertionLifetimeSeconds);

  const std::vector<FcmMockRequest> sends = requests_of(false);
  ASSERT_EQ(sends.size(), 1u);
  EXPECT_EQ(sends[0].check_failed, "");
  EXPECT_EQ(sends[0].path, std::string("/v1/projects/") + kProject + "/messages:send");
  EXPECT_EQ(sends[0].headers.at(":authority"), "127.0.0.1:" + std::to_string(mock_->port()));
  const std::vector<FcmMockMessage> messages = mock_->messages();
  ASSERT_EQ(messages.size(), 1u);
  const FcmMockMessage& m = messages[0];
  EXPECT_EQ(m.device_token, kToken);
  const std::map<std::string, std::string> data = {{"conversation_id", "c-42"},
                                                   {"seq", "7"},
                                                   {"title", "Ada"},
                                                   {"body", "hello"},
                                                   {"idempotency_key", "key-1"}};
  EXPECT_EQ(m.data, data);
  EXPECT_EQ(m.collapse_key, "c-42");
  EXPECT_EQ(m.ttl, "86400s");
  EXPECT_EQ(m.priority, "high");
  EXPECT_FALSE(m.has_notification);
  EXPECT_EQ(mock_->connections(), 1u);  // the token endpoint shares the connection
}

TEST_F(FcmTest, AccessTokenIsFetchedOnceForManyConcurrentSends) {
  constexpr std::size_t kSends = 100;
  start_client();
  std::vector<Pending> pending(kSends);
  for (std::size_t i = 0; i < kSends; ++i) {
    client_->send(push("m" + std::to_string(i)), pending[i].done());
  }
  for (Pending& p : pending) EXPECT_TRUE(p.get().ok);
  EXPECT_EQ(mock_->tokens_issued(), 1u);
  EXPECT_EQ(client_->stats().token_requests, 1u);
  EXPECT_EQ(mock_->messages().size(), kSends);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(send_now(push("after" + std::to_string(i))).ok);
  EXPECT_EQ(mock_->tokens_issued(), 1u);
  EXPECT_EQ(mock_->connections(), 1u);
}

TEST_F(FcmTest, AccessTokenIsRefreshedTheMarginBeforeItExpires) {
  start_client();
  ASSERT_TRUE(send_now(push("k0")).ok);
  clock_.advance_ms(kTokenLifetimeS * 1000 - kFcmTokenRefreshMarginMs - 1);
  ASSERT_TRUE(send_now(push("k1")).ok);
  EXPECT_EQ(mock_->tokens_issued(), 1u);
  clock_.advance_ms(1);
  ASSERT_TRUE(send_now(push("k2")).ok);
  EXPECT_EQ(mock_->tokens_issued(), 2u);
  EXPECT_EQ(client_->stats().tokens_fetched, 2u);
  const std::vector<FcmMockMessage> messages = mock_->messages();
  ASSERT_EQ(messages.size(), 3u);
  EXPECT_EQ(messages[0].access_token, messages[1].access_token);
  EXPECT_NE(messages[2].access_token, messages[1].access_token);
  EXPECT_EQ(client_->stats().auth_retries, 0u);  // never sent an expired token
}

TEST_F(FcmTest, RefusedAccessTokenIsReplacedOnceAndTheSendRetried) {
  start_client();
  ASSERT_TRUE(send_now(push("k0")).ok);
  mock_->revoke_tokens();
  const ProviderResult result = send_now(push("k1"));
  EXPECT_TRUE(result.ok) << result.error_message;
  EXPECT_EQ(client_->stats().auth_retries, 1u);
  EXPECT_EQ(mock_->tokens_issued(), 2u);
  const std::vector<FcmMockRequest> requests = mock_->requests();
  ASSERT_EQ(requests.size(), 5u);  // token, send, send (401), token, send
  EXPECT_EQ(requests[2].status, 401);
  EXPECT_EQ(requests[2].error, "UNAUTHENTICATED");
  EXPECT_TRUE(requests[3].token_request);
  EXPECT_EQ(requests[4].status, 200);
  EXPECT_EQ(requests[4].body, requests[2].body);
}

TEST_F(FcmTest, SecondUnauthorizedAnswerIsUnavailable) {
  start_client();
  mock_->fail_next_sends(2, fcm_error(401, "UNAUTHENTICATED", ""));
  const ProviderResult result = send_now(push("k"));
  EXPECT_EQ(result.error_type, messaging::kPushUnavailable);
  EXPECT_NE(result.error_message.find("401"), std::string::npos) << result.error_message;
  EXPECT_EQ(client_->stats().auth_retries, 1u);
  EXPECT_EQ(mock_->tokens_issued(), 2u);
  EXPECT_EQ(requests_of(false).size(), 2u);
}

TEST_F(FcmTest, EachFcmErrorMapsToItsErrorType) {
  start_client();
  FcmMockError bad_token = fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT");
  bad_token.field = "message.token";
  struct Case {
    std::string token;
    FcmMockError error;
    const char* type;
    std::optional<std::int64_t> retry_after_ms;
  };
  const Case cases[] = {
      {"t1", fcm_error(404, "NOT_FOUND", "UNREGISTERED"), messaging::kPushUnregistered, {}},
      {"t2", bad_token, messaging::kPushInvalidToken, {}},
      {"t3", fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT"), messaging::kPushRejected, {}},
      {"t4",
       fcm_error(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH"),
       messaging::kPushInvalidToken,
       {}},
      {"t5", fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", 60),
       messaging::kPushUnavailable, 60'000},
      {"t6", fcm_error(500, "INTERNAL", "INTERNAL"), messaging::kPushUnavailable, {}},
      {"t7", fcm_error(503, "UNAVAILABLE", "UNAVAILABLE", 5), messaging::kPushUnavailable, 5000},
  };
  for (const Case& c : cases) mock_->answer_token(c.token, c.error);
  for (const Case& c : cases) {
    const ProviderResult result = send_now(push("k-" + c.token, c.token));
    EXPECT_FALSE(result.ok) << c.token;
    EXPECT_EQ(result.error_type, c.type) << c.token << " " << result.error_message;
    EXPECT_EQ(result.retry_after_ms, c.retry_after_ms) << c.token;
    EXPECT_NE(result.error_message.find(c.error.error_code), std::string::npos)
        << result.error_message;
  }
  EXPECT_EQ(mock_->connections(), 1u);
  EXPECT_EQ(mock_->tokens_issued(), 1u);
}

TEST_F(FcmTest, FailedTokenFetchFailsTheWaitingSendsAndTheNextSendFetchesAgain) {
  start_client();
  mock_->fail_next_tokens(1, 400, "invalid_grant");
  const ProviderResult failed = send_now(push("k1"));
  EXPECT_EQ(failed.error_type, messaging::kPushUnavailable);
  EXPECT_NE(failed.error_message.find("invalid_grant"), std::string::npos);
  EXPECT_EQ(requests_of(false).size(), 0u);
  EXPECT_TRUE(send_now(push("k2")).ok);
  EXPECT_EQ(client_->stats().token_requests, 2u);
}

TEST_F(FcmTest, BadDeviceTokenFailsWithoutARequest) {
  start_client();
  EXPECT_EQ(send_now(push("k", "not a token")).error_type, messaging::kPushInvalidToken);
  EXPECT_EQ(mock_->requests().size(), 0u);
}

TEST_F(FcmTest, OversizePreviewIsCutAtAUtf8Boundary) {
  start_client();
  PushRequest request = push("big");
  std::string body;
  for (int i = 0; i < 3000; ++i) body += "\xc3\xa9";  // é, 6000 bytes
  request.body = body;
  ASSERT_TRUE(send_now(request).ok);
  const std::vector<FcmMockRequest> sends = requests_of(false);
  ASSERT_EQ(sends.size(), 1u);
  EXPECT_EQ(sends[0].check_failed, "");
  EXPECT_LE(sends[0].body.size(), kFcmMaxPayloadBytes);
  EXPECT_GT(sends[0].body.size(), kFcmMaxPayloadBytes - 4);
  const std::string sent = mock_->messages().at(0).data.at("body");
  ASSERT_TRUE(sent.ends_with(kCutMarker));
  const std::string kept = sent.substr(0, sent.size() - std::strlen(kCutMarker));
  EXPECT_EQ(kept.size() % 2, 0u);
  EXPECT_TRUE(body.starts_with(kept));
}

TEST_F(FcmTest, FullQueueFailsFast) {
  FcmConfig c = config();
  c.max_concurrent_streams = 2;
  c.max_queued_requests = 3;
  start_client(c);
  ASSERT_TRUE(send_now(push("warm")).ok);  // the token is in hand
  mock_->set_delay_ms(kHoldMs);
  std::vector<Pending> accepted(5);
  for (std::size_t i = 0; i < accepted.size(); ++i) {
    client_->send(push("q" + std::to_string(i)), accepted[i].done());
  }
  ASSERT_TRUE(wait_until([&] { return mock_->pending() == 2 && client_->stats().queued == 3; }));
  const ProviderResult refused = send_now(push("q-over"));
  EXPECT_EQ(refused.error_type, messaging::kPushUnavailable);
  EXPECT_NE(refused.error_message.find("queue is full"), std::string::npos);
  for (Pending& p : accepted) EXPECT_FALSE(p.ready());
  mock_->set_delay_ms(0);
  mock_->release_held();
  for (Pending& p : accepted) EXPECT_TRUE(p.get().ok);
}

TEST_F(FcmTest, GoawayFinishesAcceptedStreamsAndResendsTheRestOnANewConnection) {
  start_client();
  ASSERT_TRUE(send_now(push("warm")).ok);  // request 2 of connection 1
  mock_->set_delay_ms(kHoldMs);
  mock_->goaway_after(4);  // the second of the sends below
  std::vector<Pending> pending(4);
  for (std::size_t i = 0; i < pending.size(); ++i) {
    client_->send(push("g" + std::to_string(i)), pending[i].done());
  }
  const bool settled =
      wait_until([&] { return mock_->requests().size() == 6 && mock_->pending() == 2; });
  ASSERT_TRUE(settled) << mock_->requests().size() << " requests, " << mock_->pending()
                       << " pending";
  mock_->set_delay_ms(0);
  mock_->release_held();
  for (Pending& p : pending) {
    const ProviderResult result = p.get();
    EXPECT_TRUE(result.ok) << result.error_message;
  }
  EXPECT_EQ(mock_->connections(), 2u);
  EXPECT_EQ(client_->stats().requests_retried, 2u);
  std::map<std::string, int> delivered;  // idempotency key -> accepted
  for (const FcmMockMessage& m : mock_->messages()) ++delivered[m.data.at("idempotency_key")];
  EXPECT_EQ(delivered.size(), 5u);
  for (const auto& [key, count] : delivered) EXPECT_EQ(count, 1) << key;
  EXPECT_EQ(mock_->tokens_issued(), 1u);  // the token outlives the connection
}

TEST_F(FcmTest, DroppedConnectionIsUnavailableThenTheNextSendReconnects) {
  start_client();
  ASSERT_TRUE(send_now(push("before")).ok);
  mock_->drop_next_request();
  const ProviderResult dropped = send_now(push("dropped"));
  EXPECT_EQ(dropped.error_type, messaging::kPushUnavailable);
  EXPECT_NE(dropped.error_message.find("connection was lost"), std::string::npos);
  EXPECT_TRUE(send_now(push("dropped")).ok);
  EXPECT_EQ(mock_->connections(), 2u);
}

TEST_F(FcmTest, SlowAnswerTimesOut) {
  FcmConfig c = config();
  c.request_timeout_ms = 200;
  start_client(c);
  ASSERT_TRUE(send_now(push("warm")).ok);
  mock_->set_delay_ms(kHoldMs);
  const ProviderResult slow = send_now(push("slow"));
  EXPECT_EQ(slow.error_type, messaging::kPushUnavailable);
  EXPECT_NE(slow.error_message.find("no answer"), std::string::npos);
  mock_->set_delay_ms(0);
  EXPECT_TRUE(send_now(push("quick")).ok);
  EXPECT_EQ(mock_->connections(), 1u);
}

TEST_F(FcmTest, SeparateTokenHostGetsItsOwnConnection) {
  FcmConfig c = config();
  c.token_host = "localhost";  // the same mock under another name: another endpoint
  start_client(c);
  ASSERT_TRUE(send_now(push("k1")).ok);
  ASSERT_TRUE(send_now(push("k2")).ok);
  EXPECT_EQ(mock_->connections(), 2u);
  EXPECT_EQ(client_->stats().connections_opened, 2u);
  EXPECT_EQ(requests_of(true).at(0).headers.at(":authority"),
            "localhost:" + std::to_string(mock_->port()));
}

TEST_F(FcmTest, StoppingTheClientAnswersSendsInFlightAndWaitingForAToken) {
  start_client();
  mock_->set_delay_ms(kHoldMs);
  std::vector<Pending> waiting(3);
  for (std::size_t i = 0; i < waiting.size(); ++i) {
    client_->send(push("w" + std::to_string(i)), waiting[i].done());
  }
  ASSERT_TRUE(wait_until([&] { return mock_->pending() == 1; }));  // the token request
  EXPECT_EQ(client_->stats().waiting_for_token, 3u);
  client_.reset();
  for (Pending& p : waiting) EXPECT_EQ(p.get().error_type, messaging::kPushUnavailable);
}

}  // namespace
}  // namespace herald::push
