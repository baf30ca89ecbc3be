#include "app/demo.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "app/demo_doubles.h"
#include "messaging/providers.h"

namespace herald::app {
namespace {

TEST(DemoDefaultsTest, FillsTokenAndJournalsInTheDataDirWhenNoneConfigured) {
  ServeConfig config;
  config.data_dir = "/var/lib/herald";
  const DemoSetup setup = apply_demo_defaults(config, "generated");
  EXPECT_TRUE(setup.generated_admin_token);
  EXPECT_TRUE(setup.default_push_journal);
  EXPECT_TRUE(setup.default_email_journal);
  EXPECT_EQ(config.admin_token, "generated");
  EXPECT_EQ(config.push_journal, "/var/lib/herald/push-journal.jsonl");
  EXPECT_EQ(config.email_journal, "/var/lib/herald/email-journal.jsonl");
}

TEST(DemoDefaultsTest, KeepsWhatTheUserConfigured) {
  ServeConfig config;
  config.admin_token = "mine";
  config.push_journal = "push.jsonl";
  config.email_journal = "email.jsonl";
  const DemoSetup setup = apply_demo_defaults(config, "generated");
  EXPECT_FALSE(setup.generated_admin_token);
  EXPECT_FALSE(setup.default_push_journal);
  EXPECT_FALSE(setup.default_email_journal);
  EXPECT_EQ(config.admin_token, "mine");
  EXPECT_EQ(config.push_journal, "push.jsonl");
  EXPECT_EQ(config.email_journal, "email.jsonl");
}

TEST(DemoDefaultsTest, RandomTokensAreHexOfTheNamedLengthAndDiffer) {
  const std::string a = random_admin_token();
  EXPECT_EQ(a.size(), 2 * kDemoAdminTokenBytes);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos) << a;
  EXPECT_NE(a, random_admin_token());
}

TEST(DemoOptionsTest, WildcardListenIsReachedOnTheLoopback) {
  ServeConfig config;
  config.admin_token = "t";
  config.client = "0.0.0.0:7400";
  auto v4 = demo_options(config, 7400, 1);
  ASSERT_TRUE(v4.ok()) << v4.status().to_string();
  EXPECT_EQ(v4->host, "127.0.0.1");
  EXPECT_EQ(v4->port, 7400);
  EXPECT_EQ(v4->admin_token, "t");
  config.client = "[::]:7400";
  auto v6 = demo_options(config, 7400, 1);
  ASSERT_TRUE(v6.ok()) << v6.status().to_string();
  EXPECT_EQ(v6->host, "::1");
}

TEST(DemoOptionsTest, UsesTheBoundPortForAnEphemeralListen) {
  ServeConfig config;
  config.client = "127.0.0.1:0";
  auto options = demo_options(config, 40123, 1);
  ASSERT_TRUE(options.ok()) << options.status().to_string();
  EXPECT_EQ(options->host, "127.0.0.1");
  EXPECT_EQ(options->port, 40123);
}

TEST(DemoOptionsTest, RejectsAListenAddressWithoutPort) {
  ServeConfig config;
  config.client = "localhost";
  EXPECT_EQ(demo_options(config, 7400, 1).status().code(), Code::kInvalidArgument);
}

TEST(DemoDevicesTest, FirstGenerationIsTheLabelItself) {
  EXPECT_EQ(demo_device_id("bob-phone", 1), "bob-phone");
  EXPECT_EQ(demo_device_id("bob-phone", 12), "bob-phone-12");
  EXPECT_EQ(demo_device_generation("bob-phone", "bob-phone"), 1U);
  EXPECT_EQ(demo_device_generation("bob-phone", "bob-phone-12"), 12U);
}

TEST(DemoDevicesTest, OtherIdsAreNotGenerations) {
  for (const char* id : {"bob-tablet", "bob-phone-", "bob-phone-1", "bob-phone-02", "bob-phone-x",
                         "bob-phone-2x", "bob-phonex", "bob"}) {
    EXPECT_FALSE(demo_device_generation("bob-phone", id).has_value()) << id;
  }
}

TEST(DemoDevicesTest, NextGenerationFollowsTheHighestActive) {
  EXPECT_EQ(next_demo_device_generation("bob-phone", {}), 1U);
  EXPECT_EQ(next_demo_device_generation("bob-phone", {"bob-tablet"}), 1U);
  EXPECT_EQ(next_demo_device_generation("bob-phone", {"bob-phone"}), 2U);
  EXPECT_EQ(next_demo_device_generation("bob-phone", {"bob-phone-7", "bob-phone-3", "bob-tablet"}),
            8U);
}

TEST(DemoPushTokens, ApnsTokensAreHexDigitsAndOthersNameTheDevice) {
  EXPECT_EQ(demo_push_token(messaging::kApnsProvider, "bob-phone"), "626f622d70686f6e65");
  EXPECT_EQ(demo_push_token(messaging::kFcmProvider, "carol-phone"), "demo-token-carol-phone");
}

TEST(DemoDoublesLines, PushAndEmailLinesQuoteWhatWasDelivered) {
  const std::string push = describe_demo_apns_push(
      "626f62", R"({"aps":{"alert":{"title":"Alice","body":"lunch?"}}})", "id-1");
  EXPECT_NE(push.find("626f62"), std::string::npos) << push;
  EXPECT_NE(push.find("\"Alice: lunch?\""), std::string::npos) << push;
  EXPECT_NE(push.find("id-1"), std::string::npos) << push;
  const std::string email = describe_demo_email(
      "Date: x\r\nTo: carol@example.com\r\nSubject: You have an unread message in "
      "team\r\n\r\nbody");
  EXPECT_NE(email.find("to carol@example.com:"), std::string::npos) << email;
  EXPECT_NE(email.find("\"You have an unread message in team\""), std::string::npos) << email;
}

TEST(DemoDoublesLines, WebPushLineQuotesTheDecryptedTitleAndBody) {
  const std::string line = describe_demo_webpush(
      "sub-3", R"({"title":"Alice","body":"standup in 5","conversation_id":"team","seq":4})");
  EXPECT_NE(line.find("subscription sub-3"), std::string::npos) << line;
  EXPECT_NE(line.find("\"Alice: standup in 5\""), std::string::npos) << line;
  // A payload that is not JSON still gives a line (empty quotes), never a throw.
  EXPECT_NE(describe_demo_webpush("sub-4", "not json").find("\": \""), std::string::npos);
}

}  // namespace
}  // namespace herald::app
