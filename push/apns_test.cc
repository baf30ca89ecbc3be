#include "push/apns.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <boost/json/parse.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <set>
#include <thread>

#include "crypto/test_keys.h"
#include "push/apns_mock.h"
#include "push/test_support.h"

namespace herald::push {
namespace {

using messaging::ProviderResult;
using messaging::PushRequest;
using std::chrono::milliseconds;
using testing::ApnsMock;
using testing::ApnsMockNotification;
using testing::ApnsMockOptions;
using testing::ApnsMockRequest;
using testing::kHoldMs;
using testing::Pending;
using testing::TestClock;
using testing::wait_until;

constexpr char kKeyId[] = "KEY1234567";
constexpr char kTeamId[] = "TEAM987654";
constexpr char kTopic[] = "org.herald.app";
constexpr char kToken[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

PushRequest push(const std::string& key, const std::string& token = kToken) {
  return testing::sample_push(key, "ios", messaging::kApnsProvider, token);
}

class ApnsTest : public ::testing::Test {
 protected:
  void SetUp() override { start_mock(1000); }

  void start_mock(std::uint32_t max_streams) {
    mock_.reset();
    ApnsMockOptions options;
    options.provider_public_pem = crypto::testing::public_pem_of(key_pem_);
    options.key_id = kKeyId;
    options.team_id = kTeamId;
    options.topic = kTopic;
    options.max_concurrent_streams = max_streams;
    Result<std::unique_ptr<ApnsMock>> mock = ApnsMock::start(options, clock_);
    ASSERT_TRUE(mock.ok()) << mock.status().to_string();
    mock_ = std::move(mock).value();
  }

  void TearDown() override {
    client_.reset();
    mock_.reset();
    std::error_code ignored;
    std::filesystem::remove(key_path_, ignored);
  }

  ApnsConfig config() {
    ApnsConfig config;
    config.host = "127.0.0.1";
    config.port = mock_->port();
    config.ca_file = mock_->ca_file();
    config.key_pem_path = key_path_;
    config.key_id = kKeyId;
    config.team_id = kTeamId;
    config.topic = kTopic;
    return config;
  }

  void start_client(const ApnsConfig& config) {
    client_ = testing::create_client<ApnsClient>(config, clock_);
    ASSERT_NE(client_, nullptr);
  }
  void start_client() { start_client(config()); }
  ProviderResult send_now(const PushRequest& request) {
    return testing::send_and_wait(*client_, request);
  }

  static std::string write_key(const std::string& pem) {
    static std::atomic<int> counter{0};
    std::string path = (std::filesystem::temp_directory_path() /
                        ("herald-apns-test-" + std::to_string(::getpid()) + "-" +
                         std::to_string(counter++) + ".p8"))
                           .string();
    std::ofstream(path) << pem;
    return path;
  }

  TestClock clock_;
  std::string key_pem_ = crypto::testing::ec_private_pem("P-256");
  std::string key_path_ = write_key(key_pem_);
  std::unique_ptr<ApnsMock> mock_;
  std::unique_ptr<ApnsClient> client_;
};

// --- pure pieces -------------------------------------------------------------------------------

TEST(ApnsFormat, ApnsIdIsAStableVersion8UuidPerKey) {
  const std::string id = apns_id_for("delivery/c/1/u:d1:push:1");
  EXPECT_EQ(id, apns_id_for("delivery/c/1/u:d1:push:1"));
  EXPECT_NE(id, apns_id_for("delivery/c/1/u:d1:push:2"));
  ASSERT_EQ(id.size(), 36u);
  EXPECT_EQ(id[8], '-');
  EXPECT_EQ(id[14], '8');                                          // version
  EXPECT_NE(std::string("89ab").find(id[19]), std::string::npos);  // variant
  EXPECT_EQ(id.find_first_not_of("0123456789abcdef-"), std::string::npos);
}

TEST(ApnsFormat, CollapseIdIsTheConversationOrItsHashWhenTooLongOrUnprintable) {
  EXPECT_EQ(apns_collapse_id("c-42"), "c-42");
  const std::string at_bound(kApnsMaxCollapseIdBytes, 'x');
  EXPECT_EQ(apns_collapse_id(at_bound), at_bound);
  const std::string hashed = apns_collapse_id(at_bound + "x");
  EXPECT_EQ(hashed.size(), kApnsMaxCollapseIdBytes);
  EXPECT_NE(hashed, apns_collapse_id(at_bound + "y"));
  EXPECT_EQ(apns_collapse_id("a b").size(), kApnsMaxCollapseIdBytes);
  EXPECT_EQ(apns_collapse_id("a\r\nb").size(), kApnsMaxCollapseIdBytes);
}

TEST(ApnsFormat, Utf8PrefixNeverEndsInsideASequence) {
  EXPECT_EQ(utf8_prefix("abc", 5), "abc");
  EXPECT_EQ(utf8_prefix("abc", 2), "ab");
  EXPECT_EQ(utf8_prefix("a\xc3\xa9", 2), "a");           // é cut after its lead byte
  EXPECT_EQ(utf8_prefix("a\xc3\xa9z", 3), "a\xc3\xa9");  // whole é kept
  EXPECT_EQ(utf8_prefix("\xf0\x9f\x98\x80!", 3), "");    // a 4-byte emoji
  EXPECT_EQ(utf8_prefix("x\xe2\x80\xa6y", 3), "x");      // a 3-byte sequence
}

TEST(ApnsFormat, PayloadCutsABodyFullOfEscapesToFit) {
  PushRequest request = push("k");
  request.body = std::string(5000, '"');  // each becomes \" in JSON: twice the bytes
  const Result<std::string> payload = apns_payload(request);
  ASSERT_TRUE(payload.ok());
  EXPECT_LE(payload->size(), kApnsMaxPayloadBytes);
  EXPECT_GT(payload->size(), kApnsMaxPayloadBytes - 8);
  const boost::json::value json = boost::json::parse(*payload);
  const std::string body(json.at("aps").at("alert").at("body").as_string());
  EXPECT_TRUE(body.ends_with(kApnsCutMarker));
}

TEST(ApnsFormat, PayloadCutsTheTitleWhenAnEmptyBodyIsNotEnough) {
  PushRequest request = push("k");
  request.title = std::string(5000, 't');
  request.body = std::string(5000, 'b');
  const Result<std::string> payload = apns_payload(request);
  ASSERT_TRUE(payload.ok());
  EXPECT_LE(payload->size(), kApnsMaxPayloadBytes);
  const boost::json::value json = boost::json::parse(*payload);
  EXPECT_EQ(json.at("aps").at("alert").at("body").as_string(), "");
  EXPECT_TRUE(
      std::string(json.at("aps").at("alert").at("title").as_string()).ends_with(kApnsCutMarker));
}

TEST(ApnsFormat, PayloadThatCannotFitIsResourceExhausted) {
  PushRequest request = push("k");
  request.conversation_id = std::string(kApnsMaxPayloadBytes, 'c');
  EXPECT_EQ(apns_payload(request).status().code(), Code::kResourceExhausted);
}

TEST(ApnsFormat, RetryAfterTakesDeltaSecondsOnlyAndIsClamped) {
  EXPECT_EQ(parse_retry_after_ms("7"), 7000);
  EXPECT_EQ(parse_retry_after_ms(" 120 "), 120'000);
  EXPECT_EQ(parse_retry_after_ms("999999"), kApnsMaxRetryAfterMs);
  EXPECT_EQ(parse_retry_after_ms("Wed, 21 Oct 2026 07:28:00 GMT"), std::nullopt);
  EXPECT_EQ(parse_retry_after_ms(""), std::nullopt);
  EXPECT_EQ(parse_retry_after_ms("-1"), std::nullopt);
}

TEST(ApnsFormat, DeviceTokenIsHexOfBoundedLength) {
  EXPECT_TRUE(check_device_token(kToken).ok());
  EXPECT_TRUE(check_device_token("ABCDEF01").ok());
  EXPECT_FALSE(check_device_token("").ok());
  EXPECT_FALSE(check_device_token("abc/../x").ok());
  EXPECT_FALSE(check_device_token(std::string(kApnsMaxDeviceTokenChars + 1, 'a')).ok());
}

TEST(ApnsFormat, ResponseMappingTable) {
  struct Case {
    int status;
    const char* reason;
    const char* type;  // "" for success
  };
  const Case cases[] = {
      {200, "", ""},
      {400, "BadDeviceToken", messaging::kPushInvalidToken},
      {400, "DeviceTokenNotForTopic", messaging::kPushInvalidToken},
      {410, "Unregistered", messaging::kPushUnregistered},
      {410, "ExpiredToken", messaging::kPushUnregistered},
      {413, "PayloadTooLarge", messaging::kPushPayloadTooLarge},
      {429, "TooManyRequests", messaging::kPushUnavailable},
      {500, "InternalServerError", messaging::kPushUnavailable},
      {503, "ServiceUnavailable", messaging::kPushUnavailable},
      {403, "ExpiredProviderToken", messaging::kPushUnavailable},
      {403, "InvalidProviderToken", messaging::kPushUnavailable},
      {403, "BadCertificateEnvironment", messaging::kPushRejected},
      {400, "BadTopic", messaging::kPushRejected},
      {405, "MethodNotAllowed", messaging::kPushRejected},
      {302, "", messaging::kPushUnavailable},
  };
  for (const Case& c : cases) {
    const ProviderResult result = map_apns_response(c.status, c.reason, std::nullopt, "id");
    EXPECT_EQ(result.ok, std::string(c.type).empty()) << c.status << " " << c.reason;
    EXPECT_EQ(result.error_type, c.type) << c.status << " " << c.reason;
  }
  EXPECT_EQ(map_apns_response(200, "", std::nullopt, "the-id").provider_id, "the-id");
  EXPECT_EQ(map_apns_response(503, "", 5000, "").retry_after_ms, 5000);
  EXPECT_EQ(map_apns_response(410, "Unregistered", 5000, "").retry_after_ms, std::nullopt);
}

TEST_F(ApnsTest, ConfigurationOutsideTheBoundsIsRefused) {
  ApnsConfig c = config();
  c.token_refresh_ms = kApnsTokenMinRefreshMs - 1;
  EXPECT_EQ(ApnsClient::create(c, clock_).status().code(), Code::kInvalidArgument);
  c = config();
  c.token_refresh_ms = kApnsTokenMaxRefreshMs + 1;
  EXPECT_EQ(ApnsClient::create(c, clock_).status().code(), Code::kInvalidArgument);
  c = config();
  c.max_concurrent_streams = 0;
  EXPECT_EQ(ApnsClient::create(c, clock_).status().code(), Code::kInvalidArgument);
  c = config();
  c.topic.clear();
  EXPECT_EQ(ApnsClient::create(c, clock_).status().code(), Code::kInvalidArgument);
  c = config();
  c.key_pem_path = "/nonexistent/AuthKey.p8";
  EXPECT_EQ(ApnsClient::create(c, clock_).status().code(), Code::kIOError);
  c = config();
  c.key_pem_path = write_key(crypto::testing::rsa_private_pem(2048));
  EXPECT_EQ(ApnsClient::create(c, clock_).status().code(), Code::kInvalidArgument);
  std::filesystem::remove(c.key_pem_path);
}

// --- against the mock --------------------------------------------------------------------------

TEST_F(ApnsTest, SendsTheHeadersAndBodyApnsExpects) {
  start_client();
  const ProviderResult result = send_now(push("key-1"));
  ASSERT_TRUE(result.ok) << result.error_message;
  EXPECT_EQ(result.provider_id, apns_id_for("key-1"));

  const std::vector<ApnsMockRequest> requests = mock_->requests();
  ASSERT_EQ(requests.size(), 1u);
  const ApnsMockRequest& r = requests[0];
  EXPECT_EQ(r.check_failed, "");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.path, std::string("/3/device/") + kToken);
  EXPECT_EQ(r.headers.at("apns-topic"), kTopic);
  EXPECT_EQ(r.headers.at("apns-push-type"), "alert");
  EXPECT_EQ(r.headers.at("apns-priority"), "10");
  EXPECT_EQ(r.headers.at("apns-expiration"),
            std::to_string(clock_.wall_ms() / 1000 + kApnsExpirationSeconds));
  EXPECT_EQ(r.headers.at("apns-collapse-id"), "c-42");
  EXPECT_EQ(r.headers.at("apns-id"), apns_id_for("key-1"));
  EXPECT_EQ(r.headers.at(":authority"), "127.0.0.1:" + std::to_string(mock_->port()));
  EXPECT_EQ(r.jwt_iat, clock_.wall_ms() / 1000);
  EXPECT_EQ(
      boost::json::parse(r.body),
      boost::json::parse(R"({"aps":{"alert":{"title":"Ada","body":"hello"},"thread-id":"c-42"},
                                   "herald":{"conversation_id":"c-42","seq":7}})"));
}

TEST_F(ApnsTest, TokenIsReusedAcrossRequestsAndRefreshedAfterTheInterval) {
  ApnsConfig c = config();
  c.token_refresh_ms = kApnsTokenMinRefreshMs;
  start_client(c);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(send_now(push("k" + std::to_string(i))).ok);
  }
  clock_.advance_ms(kApnsTokenMinRefreshMs - 1);
  ASSERT_TRUE(send_now(push("k3")).ok);
  EXPECT_EQ(client_->stats().tokens_signed, 1u);
  clock_.advance_ms(1);
  ASSERT_TRUE(send_now(push("k4")).ok);
  EXPECT_EQ(client_->stats().tokens_signed, 2u);

  const std::vector<ApnsMockRequest> requests = mock_->requests();
  ASSERT_EQ(requests.size(), 5u);
  for (int i = 1; i < 4; ++i) EXPECT_EQ(requests[i].jwt, requests[0].jwt);
  EXPECT_NE(requests[4].jwt, requests[0].jwt);
  EXPECT_EQ(*requests[4].jwt_iat - *requests[0].jwt_iat, kApnsTokenMinRefreshMs / 1000);
  for (const ApnsMockRequest& r : requests) EXPECT_EQ(r.check_failed, "");
}

TEST_F(ApnsTest, ApnsIdIsStableAcrossARetryOfTheSameKey) {
  start_client();
  mock_->fail_next(1, 503, "ServiceUnavailable");
  const ProviderResult first = send_now(push("same-key"));
  EXPECT_EQ(first.error_type, messaging::kPushUnavailable);
  EXPECT_TRUE(send_now(push("same-key")).ok);
  const std::vector<ApnsMockRequest> requests = mock_->requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].headers.at("apns-id"), requests[1].headers.at("apns-id"));
  EXPECT_EQ(requests[0].headers.at("apns-collapse-id"), requests[1].headers.at("apns-collapse-id"));
}

TEST_F(ApnsTest, EachApnsErrorMapsToItsErrorType) {
  start_client();
  struct Case {
    std::string token;
    int status;
    const char* reason;
    const char* type;
  };
  const Case cases[] = {
      {"a1", 410, "Unregistered", messaging::kPushUnregistered},
      {"a2", 400, "BadDeviceToken", messaging::kPushInvalidToken},
      {"a3", 400, "DeviceTokenNotForTopic", messaging::kPushInvalidToken},
      {"a4", 413, "PayloadTooLarge", messaging::kPushPayloadTooLarge},
      {"a5", 500, "InternalServerError", messaging::kPushUnavailable},
      {"a6", 503, "ServiceUnavailable", messaging::kPushUnavailable},
      {"a7", 429, "TooManyRequests", messaging::kPushUnavailable},
      {"a8", 400, "BadCollapseId", messaging::kPushRejected},
      {"a9", 403, "BadCertificateEnvironment", messaging::kPushRejected},
  };
  for (const Case& c : cases) mock_->answer_token(c.token, c.status, c.reason);
  for (const Case& c : cases) {
    const ProviderResult result = send_now(push("k-" + c.token, c.token));
    EXPECT_FALSE(result.ok) << c.reason;
    EXPECT_EQ(result.error_type, c.type) << c.reason;
    EXPECT_NE(result.error_message.find(c.reason), std::string::npos) << result.error_message;
  }
  EXPECT_EQ(mock_->connections(), 1u);
}

TEST_F(ApnsTest, RetryAfterIsCarriedInTheResult) {
  start_client();
  mock_->fail_next(1, 429, "TooManyRequests", 7);
  const ProviderResult throttled = send_now(push("k1"));
  EXPECT_EQ(throttled.error_type, messaging::kPushUnavailable);
  EXPECT_EQ(throttled.retry_after_ms, 7000);
  mock_->fail_next(1, 503, "ServiceUnavailable", 30);
  EXPECT_EQ(send_now(push("k2")).retry_after_ms, 30'000);
  mock_->fail_next(1, 500, "InternalServerError");
  EXPECT_EQ(send_now(push("k3")).retry_after_ms, std::nullopt);
}

TEST_F(ApnsTest, ExpiredProviderTokenIsRefreshedOnceAndTheRequestRetried) {
  start_client();
  ASSERT_TRUE(send_now(push("k1")).ok);
  clock_.advance_ms(kApnsTokenMinRefreshMs);
  mock_->fail_next(1, 403, "ExpiredProviderToken");
  const ProviderResult result = send_now(push("k2"));
  EXPECT_TRUE(result.ok) << result.error_message;
  EXPECT_EQ(client_->stats().tokens_signed, 2u);
  const std::vector<ApnsMockRequest> requests = mock_->requests();
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_EQ(requests[1].jwt, requests[0].jwt);
  EXPECT_NE(requests[2].jwt, requests[1].jwt);
  EXPECT_EQ(requests[2].headers.at("apns-id"), requests[1].headers.at("apns-id"));
}

TEST_F(ApnsTest, ProviderTokenRejectedTwiceIsUnavailable) {
  start_client();
  ASSERT_TRUE(send_now(push("k1")).ok);
  clock_.advance_ms(kApnsTokenMinRefreshMs);
  mock_->fail_next(2, 403, "InvalidProviderToken");
  const ProviderResult result = send_now(push("k2"));
  EXPECT_EQ(result.error_type, messaging::kPushUnavailable);
  EXPECT_EQ(mock_->request_count(), 3u);
  EXPECT_EQ(client_->stats().tokens_signed, 2u);
}

TEST_F(ApnsTest, YoungProviderTokenRejectedIsNotRefreshed) {
  start_client();
  mock_->fail_next(1, 403, "ExpiredProviderToken");
  EXPECT_EQ(send_now(push("k1")).error_type, messaging::kPushUnavailable);
  EXPECT_EQ(mock_->request_count(), 1u);
  EXPECT_EQ(client_->stats().tokens_signed, 1u);
}

TEST_F(ApnsTest, TheDoublesDeviceShowsACollapsedOrRepeatedNotificationOnce) {
  start_client();
  PushRequest first = push("key-1");
  PushRequest second = push("key-2");  // the same conversation: the same apns-collapse-id
  PushRequest elsewhere = push("key-3");
  elsewhere.conversation_id = "c-other";
  ASSERT_TRUE(send_now(first).ok);
  ASSERT_TRUE(send_now(second).ok);
  ASSERT_TRUE(send_now(first).ok);  // sent again, as after a failover: the same apns-id
  ASSERT_TRUE(send_now(elsewhere).ok);
  mock_->fail_next(1, 503, "ServiceUnavailable");
  EXPECT_FALSE(send_now(push("key-4")).ok);  // refused: it never reaches the device

  const std::vector<ApnsMockNotification> presented = mock_->presented(kToken);
  ASSERT_EQ(presented.size(), 3u);
  EXPECT_EQ(presented[0].apns_id, apns_id_for("key-1"));
  EXPECT_EQ(presented[0].deliveries, 2u) << "the repeat is the same notification";
  EXPECT_EQ(presented[1].apns_id, apns_id_for("key-2"));
  EXPECT_EQ(presented[1].deliveries, 1u);
  EXPECT_EQ(presented[2].apns_id, apns_id_for("key-3"));
  const std::vector<ApnsMockNotification> tray = mock_->tray(kToken);
  ASSERT_EQ(tray.size(), 2u) << "one notification per conversation";
  EXPECT_EQ(tray[0].apns_id, apns_id_for("key-2")) << "the second replaced the first";
  EXPECT_EQ(tray[1].apns_id, apns_id_for("key-3"));
  EXPECT_NE(tray[0].collapse_id, tray[1].collapse_id);
  EXPECT_TRUE(mock_->presented("0000").empty());
}

TEST_F(ApnsTest, GoawayFinishesAcceptedStreamsAndRetriesTheRestOnANewConnection) {
  start_client();
  mock_->set_delay_ms(kHoldMs);
  mock_->goaway_after(3);
  std::vector<Pending> pending(5);
  for (std::size_t i = 0; i < pending.size(); ++i) {
    client_->send(push("g" + std::to_string(i)), pending[i].done());
  }
  // Streams 1-3 are held; 4 and 5 arrived after the GOAWAY decision and are left unanswered.
  ASSERT_TRUE(wait_until([&] { return mock_->request_count() == 5 && mock_->pending() == 3; }));
  mock_->set_delay_ms(0);
  mock_->release_held();
  std::set<std::string> ids;
  for (Pending& p : pending) {
    const ProviderResult result = p.get();
    EXPECT_TRUE(result.ok) << result.error_message;
    ids.insert(result.provider_id);
  }
  EXPECT_EQ(ids.size(), 5u);
  EXPECT_EQ(mock_->connections(), 2u);
  EXPECT_EQ(client_->stats().connections_opened, 2u);
  EXPECT_EQ(client_->stats().requests_retried, 2u);
  std::map<std::string, int> answered;  // apns-id -> 200s
  for (const ApnsMockRequest& r : mock_->requests()) {
    if (r.status == 200) ++answered[r.headers.at("apns-id")];
  }
  EXPECT_EQ(answered.size(), 5u);
  for (const auto& [id, count] : answered) EXPECT_EQ(count, 1) << id;
  // The drained connection was closed; new requests use the new one.
  mock_->goaway_after(0);
  EXPECT_TRUE(send_now(push("after")).ok);
  EXPECT_EQ(mock_->connections(), 2u);
}

TEST_F(ApnsTest, ManyConcurrentRequestsAreMultiplexedOnOneConnection) {
  constexpr std::size_t kRequests = 200;
  start_client();
  mock_->set_delay_ms(kHoldMs);
  std::vector<Pending> pending(kRequests);
  for (std::size_t i = 0; i < kRequests; ++i) {
    client_->send(push("m" + std::to_string(i)), pending[i].done());
  }
  ASSERT_TRUE(wait_until([&] { return mock_->pending() == kRequests; }));
  EXPECT_EQ(client_->stats().streams_in_flight, kRequests);
  mock_->release_held();
  for (Pending& p : pending) EXPECT_TRUE(p.get().ok);
  EXPECT_EQ(mock_->connections(), 1u);
  EXPECT_EQ(mock_->max_pending(), kRequests);
  EXPECT_EQ(client_->stats().connections_opened, 1u);
}

TEST_F(ApnsTest, ServerStreamLimitBoundsConcurrency) {
  constexpr std::uint32_t kServerLimit = 4;
  constexpr std::size_t kRequests = 12;
  start_mock(kServerLimit);
  start_client();
  mock_->set_delay_ms(kHoldMs);
  std::vector<Pending> pending(kRequests);
  for (std::size_t i = 0; i < kRequests; ++i) {
    client_->send(push("s" + std::to_string(i)), pending[i].done());
  }
  ASSERT_TRUE(wait_until([&] { return mock_->pending() == kServerLimit; }));
  EXPECT_EQ(client_->stats().queued, kRequests - kServerLimit);
  mock_->set_delay_ms(0);
  mock_->release_held();
  for (Pending& p : pending) EXPECT_TRUE(p.get().ok);
  EXPECT_EQ(mock_->max_pending(), kServerLimit);
  EXPECT_EQ(client_->stats().requests_sent, kRequests);  // none refused and resent
  EXPECT_EQ(client_->stats().requests_retried, 0u);
}

TEST_F(ApnsTest, OversizePreviewIsCutAtAUtf8Boundary) {
  start_client();
  PushRequest request = push("big");
  std::string body;
  for (int i = 0; i < 3000; ++i) body += "\xc3\xa9";  // é, 6000 bytes
  request.body = body;
  ASSERT_TRUE(send_now(request).ok);
  const std::vector<ApnsMockRequest> requests = mock_->requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].check_failed, "");
  EXPECT_LE(requests[0].body.size(), kApnsMaxPayloadBytes);
  EXPECT_GT(requests[0].body.size(), kApnsMaxPayloadBytes - 4);
  // boost::json refuses invalid UTF-8: the cut fell between two characters.
  const boost::json::value json = boost::json::parse(requests[0].body);
  const std::string sent(json.at("aps").at("alert").at("body").as_string());
  ASSERT_TRUE(sent.ends_with(kApnsCutMarker));
  const std::string kept = sent.substr(0, sent.size() - std::strlen(kApnsCutMarker));
  EXPECT_EQ(kept.size() % 2, 0u);
  EXPECT_TRUE(body.starts_with(kept));
}

TEST_F(ApnsTest, FullQueueFailsFast) {
  ApnsConfig c = config();
  c.max_concurrent_streams = 2;
  c.max_queued_requests = 3;
  start_client(c);
  mock_->set_delay_ms(kHoldMs);
  std::vector<Pending> accepted(5);
  client_->send(push("q0"), accepted[0].done());
  client_->send(push("q1"), accepted[1].done());
  ASSERT_TRUE(wait_until([&] { return mock_->pending() == 2; }));
  for (std::size_t i = 2; i < accepted.size(); ++i) {
    client_->send(push("q" + std::to_string(i)), accepted[i].done());
  }
  ASSERT_TRUE(wait_until([&] { return client_->stats().queued == 3; }));
  const auto before = std::chrono::steady_clock::now();
  const ProviderResult refused = send_now(push("q-over"));
  EXPECT_LT(std::chrono::steady_clock::now() - before, milliseconds(1000));
  EXPECT_EQ(refused.error_type, messaging::kPushUnavailable);
  EXPECT_NE(refused.error_message.find("queue is full"), std::string::npos);
  for (Pending& p : accepted) EXPECT_FALSE(p.ready());
  mock_->set_delay_ms(0);
  mock_->release_held();
  for (Pending& p : accepted) EXPECT_TRUE(p.get().ok);
}

TEST_F(ApnsTest, DroppedConnectionMidRequestIsUnavailableThenTheNextRequestReconnects) {
  start_client();
  ASSERT_TRUE(send_now(push("before")).ok);
  mock_->drop_next_request();
  const ProviderResult dropped = send_now(push("dropped"));
  EXPECT_EQ(dropped.error_type, messaging::kPushUnavailable);
  EXPECT_NE(dropped.error_message.find("connection was lost"), std::string::npos);
  EXPECT_TRUE(send_now(push("dropped")).ok);
  EXPECT_EQ(mock_->connections(), 2u);
  EXPECT_EQ(client_->stats().connections_opened, 2u);
}

TEST_F(ApnsTest, SlowAnswerTimesOutAndTheConnectionStaysUsable) {
  ApnsConfig c = config();
  c.request_timeout_ms = 200;
  start_client(c);
  mock_->set_delay_ms(kHoldMs);
  const ProviderResult slow = send_now(push("slow"));
  EXPECT_EQ(slow.error_type, messaging::kPushUnavailable);
  EXPECT_NE(slow.error_message.find("no answer"), std::string::npos);
  mock_->set_delay_ms(0);
  EXPECT_TRUE(send_now(push("quick")).ok);
  EXPECT_EQ(mock_->connections(), 1u);
}

TEST_F(ApnsTest, UnreachableServerIsUnavailableWithinTheRequestTimeout) {
  ApnsConfig c = config();
  c.request_timeout_ms = 300;
  c.ca_file.clear();  // the mock's file goes with it
  mock_.reset();      // nothing listens on the port any more
  start_client(c);
  const ProviderResult result = send_now(push("k"));
  EXPECT_EQ(result.error_type, messaging::kPushUnavailable);
  EXPECT_EQ(client_->stats().connections_opened, 0u);
}

TEST_F(ApnsTest, BadDeviceTokenFailsWithoutARequest) {
  start_client();
  const ProviderResult result = send_now(push("k", "not/hex"));
  EXPECT_EQ(result.error_type, messaging::kPushInvalidToken);
  EXPECT_EQ(mock_->request_count(), 0u);
}

TEST_F(ApnsTest, StoppingTheClientAnswersEveryPendingRequest) {
  start_client();
  mock_->set_delay_ms(kHoldMs);
  Pending in_flight;
  client_->send(push("k"), in_flight.done());
  ASSERT_TRUE(wait_until([&] { return mock_->pending() == 1; }));
  client_.reset();
  EXPECT_EQ(in_flight.get().error_type, messaging::kPushUnavailable);
}

}  // namespace
}  // namespace herald::push
