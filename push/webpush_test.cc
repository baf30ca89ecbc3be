#include "push/webpush.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json/parse.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "crypto/base64url.h"
#include "push/common.h"
#include "push/test_support.h"
#include "push/vapid.h"
#include "push/webpush_mock.h"

namespace herald::push {
namespace {

using messaging::kPushInvalidToken;
using messaging::kPushPayloadTooLarge;
using messaging::kPushRejected;
using messaging::kPushUnavailable;
using messaging::kPushUnregistered;
using messaging::ProviderResult;
using testing::kHoldMs;
using testing::Pending;
using testing::TestClock;
using testing::WebPushMock;
using testing::WebPushMockFault;
using testing::WebPushMockMessage;
using testing::WebPushMockOptions;
using testing::WebPushMockRequest;
using testing::WebPushMockSubscription;

constexpr char kSubject[] = "mailto:ops@herald.example";

// A valid subscription token with `endpoint` (keys of the RFC 8291 Appendix A example).
std::string subscription_with(const std::string& endpoint) {
  return R"({"endpoint":")" + endpoint +
         R"(","expirationTime":null,"keys":{"p256dh":"BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4","auth":"BTBZMqHH6r4Tts7J_aSIgg"}})";
}

boost::json::object json_of(const std::string& text) {
  return boost::json::parse(text).as_object();
}

std::string field(const boost::json::object& object, const char* key) {
  return std::string(object.at(key).as_string());
}

// The VAPID key of a test, as the PEM file the provider reads.
class VapidKeyFile {
 public:
  VapidKeyFile() {
    Result<VapidKey> key = VapidKey::generate();
    EXPECT_TRUE(key.ok());
    public_key_ = key->public_key_b64url();
    path_ =
        (std::filesystem::temp_directory_path() /
         ("herald-vapid-" + std::to_string(::getpid()) + "-" + std::to_string(next_++) + ".pem"))
            .string();
    std::ofstream(path_) << *key->private_pem();
  }
  ~VapidKeyFile() {
    std::error_code ignored;
    std::filesystem::remove(path_, ignored);
  }
  VapidKeyFile(const VapidKeyFile&) = delete;
  VapidKeyFile& operator=(const VapidKeyFile&) = delete;
  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] const std::string& public_key() const { return public_key_; }

 private:
  static inline int next_ = 0;
  std::string path_;
  std::string public_key_;
};

class WebPushTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mock_ = start_mock();
    ASSERT_NE(mock_, nullptr);
    Result<WebPushMockSubscription> subscription = mock_->subscribe();
    ASSERT_TRUE(subscription.ok()) << subscription.status().to_string();
    subscription_ = *subscription;
  }

  std::unique_ptr<WebPushMock> start_mock() {
    WebPushMockOptions options;
    options.vapid_public_key = key_.public_key();
    Result<std::unique_ptr<WebPushMock>> mock = WebPushMock::start(options, clock_);
    EXPECT_TRUE(mock.ok()) << mock.status().to_string();
    return mock.ok() ? std::move(mock).value() : nullptr;
  }

  WebPushOptions options() const {
    WebPushOptions options;
    options.vapid_private_key_path = key_.path();
    options.vapid_subject = kSubject;
    options.ca_file = mock_->ca_file();
    options.allow_private_addresses = true;  // the mock listens on 127.0.0.1
    return options;
  }

  std::unique_ptr<WebPushProvider> provider(const WebPushOptions& options) {
    return testing::create_client<WebPushProvider>(options, clock_);
  }

  messaging::PushRequest push(const std::string& key, const std::string& token) const {
    return testing::sample_push(key, "web", messaging::kWebPushProvider, token);
  }
  messaging::PushRequest push(const std::string& key) const {
    return push(key, subscription_.token);
  }

  TestClock clock_;
  VapidKeyFile key_;
  std::unique_ptr<WebPushMock> mock_;
  WebPushMockSubscription subscription_;
};

TEST(WebPushSubscription, ABrowsersSubscriptionParses) {
  const Result<WebPushSubscription> parsed =
      parse_subscription(subscription_with("https://Push.Example.net/wpush/v2/abc"));
  ASSERT_TRUE(parsed.ok()) << parsed.status().to_string();
  EXPECT_EQ(parsed->endpoint, "https://Push.Example.net/wpush/v2/abc");
  EXPECT_EQ(parsed->origin, "https://push.example.net");
  EXPECT_EQ(parsed->keys.auth_secret.size(), kWebPushAuthSecretBytes);
}

TEST(WebPushSubscription, MalformedTokensAreRefusedWithAClearError) {
  const std::string good_keys =
      R"("keys":{"p256dh":"BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4","auth":"BTBZMqHH6r4Tts7J_aSIgg"})";
  const struct {
    std::string token;
    const char* says;
  } cases[] = {
      {"", "not a JSON object"},
      {"apns-token-1234", "not a JSON object"},
      {"[]", "not a JSON object"},
      {"{" + good_keys + "}", "no string \"endpoint\""},
      {R"({"endpoint":42,)" + good_keys + "}", "no string \"endpoint\""},
      {subscription_with("http://push.example.net/x"), "not an https URL"},
      {subscription_with("ftp://push.example.net/x"), "scheme"},
      {subscription_with("https://user@push.example.net/x"), "user info"},
      {subscription_with("https://push.example.net/x#frag"), "fragment"},
      {subscription_with("https://push.example.net/a b"), "space or a control character"},
      {subscription_with("https:///x"), "endpoint"},
      {subscription_with("https://push.example.net/" + std::string(kMaxPushEndpointBytes, 'a')),
       "at most"},
      {R"({"endpoint":"https://push.example.net/x"})", "no \"keys\" object"},
      {R"({"endpoint":"https://push.example.net/x","keys":{"auth":"BTBZMqHH6r4Tts7J_aSIgg"}})",
       "\"p256dh\" and \"auth\""},
      {R"({"endpoint":"https://push.example.net/x","keys":{"p256dh":"AAAA","auth":"BTBZMqHH6r4Tts7J_aSIgg"}})",
       "keys:"},
      {R"({"endpoint":"https://push.example.net/x","keys":{"p256dh":"BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4","auth":"AAAA"}})",
       "keys:"},
      {std::string(messaging::kMaxWebPushTokenBytes + 1, ' '), "at most"},
  };
  for (const auto& c : cases) {
    const Result<WebPushSubscription> parsed = parse_subscription(c.token);
    ASSERT_FALSE(parsed.ok()) << c.token;
    EXPECT_EQ(parsed.status().code(), Code::kInvalidArgument) << c.token;
    EXPECT_NE(parsed.status().message().find(c.says), std::string::npos)
        << c.token << " -> " << parsed.status().message();
  }
}

TEST(WebPushSubscription, PrivateAndReservedAddressesAreNotPublic) {
  for (const char* ip :
       {"127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "169.254.169.254",
        "100.64.0.1", "0.0.0.0", "224.0.0.1", "::1", "::", "fd00::1", "fe80::1", "ff02::1",
        "::ffff:10.0.0.1", "::ffff:127.0.0.1", "push.example.net"}) {
    EXPECT_FALSE(is_public_ip(ip)) << ip;
  }
  for (const char* ip :
       {"8.8.8.8", "172.32.0.1", "192.169.0.1", "2001:4860:4860::8888", "::ffff:8.8.8.8"}) {
    EXPECT_TRUE(is_public_ip(ip)) << ip;
  }
}

TEST(WebPushTopic, IsThirtyTwoBase64UrlCharactersPerConversation) {
  const std::string topic = webpush_topic("direct:alice:bob");
  EXPECT_EQ(topic.size(), kWebPushTopicChars);
  EXPECT_EQ(
      topic.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
      std::string::npos);
  EXPECT_EQ(topic, webpush_topic("direct:alice:bob"));
  EXPECT_NE(topic, webpush_topic("direct:alice:carol"));
  EXPECT_EQ(webpush_topic("").size(), kWebPushTopicChars);
}

TEST(WebPushPayload, AnOversizePreviewIsCutAtAUtf8Boundary) {
  messaging::PushRequest request = testing::sample_push("k-1", "web", "webpush", "");
  std::string body;
  while (body.size() < 2 * kWebPushMaxPlaintextBytes) {
    body += "\xc3\xa9";  // é, two bytes
  }
  request.body = body;
  const Result<std::string> payload = webpush_payload(request);
  ASSERT_TRUE(payload.ok()) << payload.status().to_string();
  EXPECT_LE(payload->size(), kWebPushMaxPlaintextBytes);
  const boost::json::object object = json_of(*payload);  // still valid JSON, so valid UTF-8
  const std::string cut = field(object, "body");
  ASSERT_TRUE(cut.ends_with(kCutMarker));
  const std::string kept = cut.substr(0, cut.size() - std::string_view(kCutMarker).size());
  EXPECT_EQ(kept.size() % 2, 0U);  // whole characters only
  EXPECT_EQ(body.substr(0, kept.size()), kept);
  // The longest cut: one more character would not fit.
  EXPECT_GT(payload->size() + 2, kWebPushMaxPlaintextBytes - 2);
  EXPECT_EQ(field(object, "idempotency_key"), "k-1");
  EXPECT_EQ(field(object, "title"), "Ada");

  request.body.clear();
  request.idempotency_key = std::string(kWebPushMaxPlaintextBytes, 'k');
  const Result<std::string> too_large = webpush_payload(request);
  ASSERT_FALSE(too_large.ok());
  EXPECT_EQ(too_large.status().code(), Code::kResourceExhausted);
}

TEST(WebPushResponse, EachStatusMapsToItsOutcome) {
  const ProviderResult created = map_webpush_response(201, std::nullopt, "https://p/m/1", "");
  EXPECT_TRUE(created.ok);
  EXPECT_EQ(created.provider_id, "https://p/m/1");
  EXPECT_TRUE(map_webpush_response(202, std::nullopt, "", "").ok);
  const struct {
    int status;
    const char* type;
  } cases[] = {{404, kPushUnregistered}, {410, kPushUnregistered}, {400, kPushRejected},
               {413, kPushRejected},     {403, kPushInvalidToken}, {401, kPushUnavailable},
               {415, kPushRejected},     {429, kPushUnavailable},  {500, kPushUnavailable},
               {503, kPushUnavailable},  {301, kPushUnavailable}};
  for (const auto& c : cases) {
    const ProviderResult result = map_webpush_response(c.status, 7000, "", "why\nnot");
    EXPECT_FALSE(result.ok) << c.status;
    EXPECT_EQ(result.error_type, c.type) << c.status;
    EXPECT_NE(result.error_message.find(std::to_string(c.status)), std::string::npos);
    EXPECT_EQ(result.error_message.find('\n'), std::string::npos);
    const bool hinted = c.status == 429 || c.status >= 500;
    EXPECT_EQ(result.retry_after_ms, hinted ? std::optional<std::int64_t>(7000) : std::nullopt)
        << c.status;
  }
}

TEST_F(WebPushTest, APushCarriesTheHeadersAndDecryptsAtTheBrowser) {
  auto client = provider(options());
  ASSERT_NE(client, nullptr);
  const ProviderResult result = testing::send_and_wait(*client, push("key-1"));
  ASSERT_TRUE(result.ok) << result.error_type << ": " << result.error_message;
  EXPECT_TRUE(result.provider_id.starts_with(mock_->origin() + "/message/")) << result.provider_id;

  const auto requests = mock_->requests();
  ASSERT_EQ(requests.size(), 1U);
  EXPECT_EQ(requests[0].path, "/push/" + subscription_.id);
  EXPECT_EQ(requests[0].headers.at("content-encoding"), "aes128gcm");
  EXPECT_EQ(requests[0].headers.at("content-type"), "application/octet-stream");
  EXPECT_TRUE(requests[0].headers.at("authorization").starts_with("vapid t="));
  EXPECT_LE(requests[0].body_bytes, kWebPushMaxBodyBytes);

  const auto messages = mock_->messages();
  ASSERT_EQ(messages.size(), 1U);
  const auto& m = messages[0];
  EXPECT_EQ(m.ttl_s, kWebPushTtlSeconds);
  EXPECT_EQ(m.urgency, "high");
  EXPECT_EQ(m.topic, webpush_topic("c-42"));
  EXPECT_EQ(m.vapid_audience, mock_->origin());
  EXPECT_EQ(m.vapid_subject, kSubject);
  EXPECT_EQ(m.vapid_expires_s, clock_.wall_ms() / 1000 + kVapidDefaultLifetimeSeconds);
  const boost::json::object payload = json_of(m.plaintext);
  EXPECT_EQ(field(payload, "conversation_id"), "c-42");
  EXPECT_EQ(field(payload, "seq"), "7");
  EXPECT_EQ(field(payload, "title"), "Ada");
  EXPECT_EQ(field(payload, "body"), "hello");
  EXPECT_EQ(field(payload, "idempotency_key"), "key-1");
  EXPECT_EQ(payload.size(), 5U);
}

TEST_F(WebPushTest, TheTtlOptionIsSent) {
  WebPushOptions o = options();
  o.ttl_s = 60;
  auto client = provider(o);
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(testing::send_and_wait(*client, push("key-1")).ok);
  ASSERT_EQ(mock_->messages().size(), 1U);
  EXPECT_EQ(mock_->messages()[0].ttl_s, 60);
}

TEST_F(WebPushTest, TheVapidTokenIsReusedPerOriginUntilShortlyBeforeItExpires) {
  auto client = provider(options());
  ASSERT_NE(client, nullptr);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(testing::send_and_wait(*client, push("key-" + std::to_string(i))).ok);
  }
  EXPECT_EQ(client->stats().vapid_tokens_signed, 1U);
  auto messages = mock_->messages();
  ASSERT_EQ(messages.size(), 3U);
  EXPECT_EQ(messages[1].vapid_token, messages[0].vapid_token);
  EXPECT_EQ(messages[2].vapid_token, messages[0].vapid_token);

  // One second before the refresh margin: still the same token.
  const std::int64_t reuse_ms =
      (kVapidDefaultLifetimeSeconds - kWebPushVapidRefreshMarginSeconds) * 1000;
  clock_.advance_ms(reuse_ms - 1000);
  ASSERT_TRUE(testing::send_and_wait(*client, push("key-3")).ok);
  EXPECT_EQ(client->stats().vapid_tokens_signed, 1U);
  // At the margin: a new one.
  clock_.advance_ms(1000);
  ASSERT_TRUE(testing::send_and_wait(*client, push("key-4")).ok);
  EXPECT_EQ(client->stats().vapid_tokens_signed, 2U);
  messages = mock_->messages();
  ASSERT_EQ(messages.size(), 5U);
  EXPECT_EQ(messages[3].vapid_token, messages[0].vapid_token);
  EXPECT_NE(messages[4].vapid_token, messages[0].vapid_token);

  // Another push service (another origin) gets a token of its own, from the same provider.
  std::unique_ptr<WebPushMock> other = start_mock();
  ASSERT_NE(other, nullptr);
  Result<WebPushMockSubscription> there = other->subscribe();
  ASSERT_TRUE(there.ok());
  const std::string bundle = key_.path() + ".cas";
  {
    std::ofstream out(bundle);
    out << std::ifstream(mock_->ca_file()).rdbuf();
    out << std::ifstream(other->ca_file()).rdbuf();
  }
  WebPushOptions o = options();
  o.ca_file = bundle;
  auto both = provider(o);
  ASSERT_NE(both, nullptr);
  ASSERT_TRUE(testing::send_and_wait(*both, push("key-5", there->token)).ok);
  ASSERT_TRUE(testing::send_and_wait(*both, push("key-6")).ok);
  ASSERT_TRUE(testing::send_and_wait(*both, push("key-7", there->token)).ok);
  EXPECT_EQ(both->stats().vapid_tokens_signed, 2U);
  const auto there_messages = other->messages();
  ASSERT_EQ(there_messages.size(), 2U);
  EXPECT_EQ(there_messages[0].vapid_audience, other->origin());
  EXPECT_EQ(there_messages[1].vapid_token, there_messages[0].vapid_token);
  EXPECT_EQ(mock_->messages().back().vapid_audience, mock_->origin());
  both.reset();
  std::filesystem::remove(bundle);  // libcurl reads it when it connects
}

TEST_F(WebPushTest, ARefusedVapidTokenIsReplacedOnceAndTheSendRetried) {
  auto client = provider(options());
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(testing::send_and_wait(*client, push("key-1")).ok);
  mock_->refuse_vapid_tokens_seen();
  const ProviderResult result = testing::send_and_wait(*client, push("key-2"));
  ASSERT_TRUE(result.ok) << result.error_message;
  const WebPushStats stats = client->stats();
  EXPECT_EQ(stats.vapid_retries, 1U);
  EXPECT_EQ(stats.vapid_tokens_signed, 2U);
  const auto requests = mock_->requests();
  ASSERT_EQ(requests.size(), 3U);
  EXPECT_EQ(requests[1].status, 401);
  EXPECT_EQ(requests[2].status, 201);
  // Each attempt was encrypted afresh and carried the idempotency key.
  EXPECT_EQ(field(json_of(requests[2].plaintext), "idempotency_key"), "key-2");
}

TEST_F(WebPushTest, AnotherVapidKeyThanTheSubscriptionsIsAnInvalidToken) {
  VapidKeyFile other_key;
  WebPushOptions o = options();
  o.vapid_private_key_path = other_key.path();
  auto client = provider(o);
  ASSERT_NE(client, nullptr);
  const ProviderResult result = testing::send_and_wait(*client, push("key-1"));
  EXPECT_EQ(result.error_type, kPushInvalidToken) << result.error_message;
  EXPECT_EQ(client->stats().vapid_retries, 1U);
  EXPECT_EQ(mock_->requests().size(), 2U);
  EXPECT_TRUE(mock_->messages().empty());
}

TEST_F(WebPushTest, ServiceErrorsMapWithTheirRetryHints) {
  auto client = provider(options());
  ASSERT_NE(client, nullptr);
  const struct {
    WebPushMockFault fault;
    const char* type;
    std::optional<std::int64_t> retry_after_ms;
  } cases[] = {
      {{429, 30, "slow down"}, kPushUnavailable, 30'000},
      {{503, 5, ""}, kPushUnavailable, 5'000},
      {{500, std::nullopt, ""}, kPushUnavailable, std::nullopt},
      {{400, std::nullopt, "bad request"}, kPushRejected, std::nullopt},
      {{413, std::nullopt, ""}, kPushRejected, std::nullopt},
      {{404, std::nullopt, ""}, kPushUnregistered, std::nullopt},
      {{410, std::nullopt, ""}, kPushUnregistered, std::nullopt},
  };
  int n = 0;
  for (const auto& c : cases) {
    mock_->fail_next(1, c.fault);
    const ProviderResult result =
        testing::send_and_wait(*client, push("key-" + std::to_string(n++)));
    EXPECT_FALSE(result.ok);
    EXPECT_EQ(result.error_type, c.type) << c.fault.status;
    EXPECT_EQ(result.retry_after_ms, c.retry_after_ms) << c.fault.status;
    EXPECT_NE(result.error_message.find(std::to_string(c.fault.status)), std::string::npos)
        << result.error_message;
  }
  // Every attempt reached the service encrypted correctly and carried its key.
  const auto requests = mock_->requests();
  ASSERT_EQ(requests.size(), std::size(cases));
  for (std::size_t i = 0; i < requests.size(); ++i) {
    EXPECT_TRUE(requests[i].check_failed.empty()) << requests[i].check_failed;
    EXPECT_EQ(field(json_of(requests[i].plaintext), "idempotency_key"), "key-" + std::to_string(i));
  }
}

TEST_F(WebPushTest, AGoneSubscriptionIsUnregisteredAndOthersStillWork) {
  auto client = provider(options());
  ASSERT_NE(client, nullptr);
  Result<WebPushMockSubscription> other = mock_->subscribe();
  ASSERT_TRUE(other.ok());
  mock_->answer_subscription(subscription_.id, {410, std::nullopt, "subscription expired"});
  for (int i = 0; i < 2; ++i) {
    const ProviderResult result = testing::send_and_wait(*client, push("key-1"));
    EXPECT_EQ(result.error_type, kPushUnregistered);
    EXPECT_NE(result.error_message.find("410"), std::string::npos);
  }
  EXPECT_TRUE(testing::send_and_wait(*client, push("key-2", other->token)).ok);
}

TEST_F(WebPushTest, AnOversizePreviewArrivesCutAndDecrypts) {
  auto client = provider(options());
  ASSERT_NE(client, nullptr);
  messaging::PushRequest request = push("key-1");
  request.body = std::string(6000, 'x') + "\xe2\x82\xac";
  ASSERT_TRUE(testing::send_and_wait(*client, request).ok);
  ASSERT_EQ(mock_->messages().size(), 1U);
  const std::string plaintext = mock_->messages()[0].plaintext;
  EXPECT_LE(plaintext.size(), kWebPushMaxPlaintextBytes);
  EXPECT_TRUE(field(json_of(plaintext), "body").ends_with(kCutMarker));
}

TEST_F(WebPushTest, AMalformedTokenOrPayloadFailsWithoutARequest) {
  auto client = provider(options());
  ASSERT_NE(client, nullptr);
  ProviderResult result = testing::send_and_wait(*client, push("key-1", "not json"));
  EXPECT_EQ(result.error_type, kPushInvalidToken);
  EXPECT_NE(result.error_message.find("not a JSON object"), std::string::npos);
  messaging::PushRequest request = push(std::string(kWebPushMaxPlaintextBytes, 'k'));
  result = testing::send_and_wait(*client, request);
  EXPECT_EQ(result.error_type, kPushPayloadTooLarge);
  EXPECT_TRUE(mock_->requests().empty());
  EXPECT_EQ(client->stats().started, 0U);
}

TEST_F(WebPushTest, APrivateAddressIsRefusedUnlessAllowed) {
  WebPushOptions o = options();
  o.allow_private_addresses = false;
  auto client = provider(o);
  ASSERT_NE(client, nullptr);
  const ProviderResult result = testing::send_and_wait(*client, push("key-1"));
  EXPECT_EQ(result.error_type, kPushRejected) << result.error_message;
  EXPECT_NE(result.error_message.find("private address"), std::string::npos);
  EXPECT_GE(client->stats().addresses_refused, 1U);
  EXPECT_EQ(client->stats().connections_opened, 0U);
  EXPECT_TRUE(mock_->requests().empty());
}

TEST_F(WebPushTest, ConcurrentSendsShareOneHttp2Connection) {
  auto client = provider(options());
  ASSERT_NE(client, nullptr);
  mock_->set_delay_ms(50);
  constexpr int kSends = 40;
  std::vector<Pending> pending(kSends);
  for (int i = 0; i < kSends; ++i) {
    client->send(push("key-" + std::to_string(i)), pending[i].done());
  }
  for (auto& p : pending) {
    const ProviderResult result = p.get();
    EXPECT_TRUE(result.ok) << result.error_message;
  }
  EXPECT_EQ(mock_->messages().size(), static_cast<std::size_t>(kSends));
  EXPECT_EQ(mock_->connections(), 1U);
  EXPECT_EQ(client->stats().connections_opened, 1U);
  EXPECT_GT(mock_->max_pending(), 1U);  // multiplexed, not one after another
  EXPECT_EQ(client->stats().vapid_tokens_signed, 1U);
}

TEST_F(WebPushTest, ASlowAnswerTimesOutAsUnavailable) {
  WebPushOptions o = options();
  o.request_timeout_ms = 300;
  auto client = provider(o);
  ASSERT_NE(client, nullptr);
  mock_->set_delay_ms(kHoldMs);
  const auto started = std::chrono::steady_clock::now();
  const ProviderResult result = testing::send_and_wait(*client, push("key-1"));
  EXPECT_EQ(result.error_type, kPushUnavailable);
  EXPECT_NE(result.error_message.find("no answer"), std::string::npos) << result.error_message;
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
  mock_->set_delay_ms(0);
  mock_->release_held();
}

TEST_F(WebPushTest, ADroppedConnectionIsRetryableAndTheNextSendReconnects) {
  auto client = provider(options());
  ASSERT_NE(client, nullptr);
  mock_->drop_next_request();
  const ProviderResult dropped = testing::send_and_wait(*client, push("key-1"));
  EXPECT_EQ(dropped.error_type, kPushUnavailable) << dropped.error_message;
  EXPECT_TRUE(testing::send_and_wait(*client, push("key-1")).ok);
  EXPECT_EQ(mock_->connections(), 2U);
}

TEST_F(WebPushTest, RequestsRefusedByGoawayAreResentAndDeliveredOnce) {
  auto client = provider(options());
  ASSERT_NE(client, nullptr);
  mock_->set_delay_ms(kHoldMs);
  mock_->goaway_after(3);
  std::vector<Pending> pending(5);
  for (std::size_t i = 0; i < pending.size(); ++i) {
    client->send(push("g" + std::to_string(i)), pending[i].done());
  }
  // Streams 1-3 are held; 4 and 5 arrived after the GOAWAY decision and are left unanswered.
  ASSERT_TRUE(testing::wait_until([&] {
    return mock_->requests().size() == 5 && mock_->pending() == 3;
  })) << mock_->requests().size()
      << " requests, " << mock_->pending() << " pending";
  mock_->set_delay_ms(0);
  mock_->release_held();
  for (Pending& p : pending) {
    const ProviderResult result = p.get();
    EXPECT_TRUE(result.ok) << result.error_message;
  }
  // libcurl resends each refused stream on a fresh connection of its own.
  const std::size_t connections = mock_->connections();
  EXPECT_GE(connections, 2U) << "the refused streams went on a new connection";
  std::map<std::string, int> delivered;  // plaintext (it carries the idempotency key) -> pushes
  for (const WebPushMockMessage& m : mock_->messages()) ++delivered[m.plaintext];
  EXPECT_EQ(delivered.size(), 5U);
  for (const auto& [plaintext, count] : delivered) EXPECT_EQ(count, 1) << plaintext;
  std::size_t unanswered = 0;
  for (const WebPushMockRequest& r : mock_->requests()) unanswered += r.status == 0 ? 1 : 0;
  EXPECT_EQ(unanswered, 2U);
  // The drained connection is done with; new pushes use a connection already open.
  mock_->goaway_after(0);
  EXPECT_TRUE(testing::send_and_wait(*client, push("after")).ok);
  EXPECT_EQ(mock_->connections(), connections);
}

TEST_F(WebPushTest, AFullQueueFailsFast) {
  WebPushOptions o = options();
  o.max_concurrent = 1;
  o.max_queued = 1;
  auto client = provider(o);
  ASSERT_NE(client, nullptr);
  mock_->set_delay_ms(kHoldMs);
  Pending first;
  Pending second;
  client->send(push("key-1"), first.done());
  client->send(push("key-2"), second.done());
  const ProviderResult third = testing::send_and_wait(*client, push("key-3"));
  EXPECT_EQ(third.error_type, kPushUnavailable);
  EXPECT_NE(third.error_message.find("queue is full"), std::string::npos);
  mock_->set_delay_ms(0);
  mock_->release_held();
  EXPECT_TRUE(first.get().ok);
  EXPECT_TRUE(second.get().ok);
  EXPECT_EQ(client->stats().max_in_flight, 1U);
}

TEST_F(WebPushTest, StoppingFailsTheRequestsInFlight) {
  auto client = provider(options());
  ASSERT_NE(client, nullptr);
  mock_->set_delay_ms(kHoldMs);
  Pending pending;
  client->send(push("key-1"), pending.done());
  ASSERT_TRUE(testing::wait_until([&] { return client->stats().in_flight == 1; }));
  client.reset();
  const ProviderResult result = pending.get();
  EXPECT_EQ(result.error_type, kPushUnavailable);
  EXPECT_NE(result.error_message.find("stopping"), std::string::npos);
  mock_->release_held();
}

TEST_F(WebPushTest, ABadConfigurationIsRefused) {
  WebPushOptions o = options();
  o.vapid_subject = "ops@herald.example";
  EXPECT_EQ(WebPushProvider::create(o, clock_).status().code(), Code::kInvalidArgument);
  o = options();
  o.max_concurrent = 0;
  EXPECT_EQ(WebPushProvider::create(o, clock_).status().code(), Code::kInvalidArgument);
  o = options();
  o.vapid_lifetime_s = kVapidMaxLifetimeSeconds + 1;
  EXPECT_EQ(WebPushProvider::create(o, clock_).status().code(), Code::kInvalidArgument);
  o = options();
  o.vapid_private_key_path = "/nonexistent/vapid.pem";
  EXPECT_EQ(WebPushProvider::create(o, clock_).status().code(), Code::kIOError);
}

}  // namespace
}  // namespace herald::push
