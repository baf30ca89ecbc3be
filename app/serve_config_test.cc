#include "app/serve_config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "server/peer_auth.h"

namespace herald::app {
namespace {

// A path in the test's temporary directory that no other test process uses:
// ctest runs test cases of this binary in parallel, each in its own process.
std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "/" + std::to_string(::getpid()) + "-" + name;
}

TEST(ServeConfigTest, ParsesPeerList) {
  auto peers = parse_peers("1=127.0.0.1:7401,2=127.0.0.1:7411");
  ASSERT_TRUE(peers.ok());
  EXPECT_EQ(peers->size(), 2U);
  EXPECT_EQ(peers->at(2), "127.0.0.1:7411");
}

TEST(ServeConfigTest, RejectsMalformedPeerItems) {
  EXPECT_EQ(parse_peers("1127.0.0.1:7401").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(parse_peers("0=a:1").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(parse_peers("x=a:1").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(parse_peers("1=a:1,1=b:2").status().code(), Code::kInvalidArgument);
}

TEST(ServeConfigTest, DefaultsMakeASingleNode) {
  ServeConfig config;
  ASSERT_TRUE(finalize(config).ok());
  EXPECT_EQ(config.peers.size(), 1U);
  EXPECT_EQ(config.peers.at(1), "127.0.0.1:7401");
  EXPECT_EQ(config.client, "127.0.0.1:7400");
  EXPECT_EQ(config.data_dir, "./herald-data");
}

TEST(ServeConfigTest, IdMustBeAmongPeers) {
  ServeConfig config;
  config.id = 4;
  config.peers = {{1, "a:1"}, {2, "b:2"}};
  EXPECT_EQ(finalize(config).code(), Code::kInvalidArgument);
}

TEST(ServeConfigTest, LoadsTomlFile) {
  const std::string path = temp_path("herald-serve-config.toml");
  {
    std::ofstream out(path);
    out << "id = 2\ndata = \"/var/lib/herald\"\nclient = \"127.0.0.1:9000\"\n"
        << "cluster_secret_file = \"/etc/herald/cluster-secret\"\n"
        << "[peers]\n1 = \"127.0.0.1:9101\"\n2 = \"127.0.0.1:9102\"\n";
  }
  ServeConfig config;
  ASSERT_TRUE(load_toml(path, config).ok());
  EXPECT_EQ(config.id, 2U);
  EXPECT_EQ(config.data_dir, "/var/lib/herald");
  EXPECT_EQ(config.peers.size(), 2U);
  EXPECT_EQ(config.cluster_secret_file, "/etc/herald/cluster-secret");
  ASSERT_TRUE(finalize(config).ok());
  std::remove(path.c_str());
}

// Loads `text` as a TOML file over a default config.
Status load_text(const std::string& text, ServeConfig& config) {
  const std::string path = temp_path("herald-devices.toml");
  {
    std::ofstream out(path);
    out << text;
  }
  Status s = load_toml(path, config);
  std::remove(path.c_str());
  return s;
}

TEST(ServeConfigTest, DeviceLimitsLoadFromTheDevicesTable) {
  ServeConfig config;
  EXPECT_EQ(config.device_limits.max_sessions_per_device, server::kMaxSessionsPerDevice);
  ASSERT_TRUE(load_text("[devices]\nrequests_per_s = 2.5\nrequest_burst = 5\n"
                        "auths_per_s_per_address = 0\nmax_connections_per_address = 7\n"
                        "max_sessions_per_device = 2\nauth_deadline_ms = 1500\n"
                        "typing_relay_interval_ms = 100\n",
                        config)
                  .ok());
  const server::GatewayLimits& l = config.device_limits;
  EXPECT_DOUBLE_EQ(l.device_requests.per_second, 2.5);
  EXPECT_EQ(l.device_requests.burst, 5U);
  EXPECT_DOUBLE_EQ(l.address_auths.per_second, 0);
  EXPECT_EQ(l.address_auths.burst, server::kAddressAuthLimit.burst);  // untouched
  EXPECT_EQ(l.max_connections_per_address, 7U);
  EXPECT_EQ(l.max_sessions_per_device, 2U);
  EXPECT_EQ(l.auth_deadline_ms, 1500);
  EXPECT_EQ(l.typing_relay_interval_ms, 100);
  EXPECT_TRUE(finalize(config).ok());
}

TEST(ServeConfigTest, BadDeviceLimitsAreRefusedByName) {
  for (const char* text : {"[devices]\nrequest_burst = -1\n", "[devices]\nrequests_per_s = \"x\"\n",
                           "[devices]\nauth_deadline_ms = 1.5\n"}) {
    ServeConfig config;
    const Status s = load_text(text, config);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << text;
    EXPECT_NE(s.message().find("devices."), std::string::npos) << s.message();
  }
  ServeConfig config;
  ASSERT_TRUE(load_text("[devices]\nrequest_burst = 0\n", config).ok());
  EXPECT_EQ(finalize(config).code(), Code::kInvalidArgument);
  config = ServeConfig();
  ASSERT_TRUE(load_text("[devices]\nmax_sessions_per_device = 0\n", config).ok());
  EXPECT_EQ(finalize(config).code(), Code::kInvalidArgument);
}

TEST(ServeConfigTest, TheFreeSpaceFloorLoadsAndBadValuesAreRefused) {
  ServeConfig config;
  EXPECT_EQ(config.min_free_mb, kDefaultMinFreeMb);
  ASSERT_TRUE(load_text("min_free_mb = 64\n", config).ok());
  EXPECT_EQ(config.min_free_mb, 64U);
  for (const char* text : {"min_free_mb = -1\n", "min_free_mb = \"1G\"\n"}) {
    ServeConfig bad;
    const Status s = load_text(text, bad);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << text;
    EXPECT_NE(s.message().find("min_free_mb"), std::string::npos) << s.message();
  }
  config.min_free_mb = kMaxMinFreeMb + 1;
  EXPECT_EQ(finalize(config).code(), Code::kInvalidArgument);
}

TEST(ServeConfigTest, TheRaftLogKindLoadsAndUnknownKindsAreRefused) {
  ServeConfig config;
  EXPECT_TRUE(config.segment_log);  // segments by default
  ASSERT_TRUE(load_text("[storage]\nraft_log = \"rocksdb\"\n", config).ok());
  EXPECT_FALSE(config.segment_log);
  ASSERT_TRUE(load_text("[storage]\nraft_log = \"segments\"\n", config).ok());
  EXPECT_TRUE(config.segment_log);
  EXPECT_FALSE(config.apply_while_writing);  // the log write before the apply by default
  ASSERT_TRUE(load_text("[storage]\napply_while_writing = true\n", config).ok());
  EXPECT_TRUE(config.apply_while_writing);
  ServeConfig engine_log;
  const Status refused =
      load_text("[storage]\nraft_log = \"rocksdb\"\napply_while_writing = true\n", engine_log);
  EXPECT_EQ(refused.code(), Code::kInvalidArgument);
  EXPECT_NE(refused.message().find("apply_while_writing"), std::string::npos) << refused.message();
  ServeConfig not_bool;
  EXPECT_EQ(load_text("[storage]\napply_while_writing = 1\n", not_bool).code(),
            Code::kInvalidArgument);
  ServeConfig bad;
  const Status s = load_text("[storage]\nraft_log = \"files\"\n", bad);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("raft_log"), std::string::npos) << s.message();
}

TEST(ServeConfigTest, TheConnectionLimitLoadsAndBadValuesAreRefused) {
  ServeConfig config;
  EXPECT_EQ(config.max_connections, kDefaultMaxConnections);
  ASSERT_TRUE(load_text("max_connections = 60000\n", config).ok());
  EXPECT_EQ(config.max_connections, 60000U);
  ASSERT_TRUE(finalize(config).ok());
  for (const char* text :
       {"max_connections = 0\n", "max_connections = -5\n", "max_connections = \"many\"\n"}) {
    ServeConfig bad;
    const Status s = load_text(text, bad);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << text;
    EXPECT_NE(s.message().find("max_connections"), std::string::npos) << s.message();
  }
  config.max_connections = kMaxMaxConnections + 1;
  EXPECT_EQ(finalize(config).code(), Code::kInvalidArgument);
}

TEST(ServeConfigTest, AFloatOrAStringWhereAnIntegerBelongsIsRefusedByName) {
  for (const char* text : {"id = 1e37\n", "tick_ms = 1e37\n", "tick_ms = \"10\"\n",
                           "election_ticks = 99999999999999\n", "insecure_peers = 1\n",
                           "data = 3\n", "[devices]\nrequest_burst = 1e300\n"}) {
    ServeConfig config;
    const Status s = load_text(text, config);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << text;
  }
}

TEST(ServeConfigTest, LogFormatComesFromTheFileThenTheEnvironmentAndMustBeKnown) {
  ServeConfig config;
  EXPECT_EQ(config.log_format, "text");
  ASSERT_TRUE(load_toml_text("log_format = \"json\"\n", "t.toml", config).ok());
  EXPECT_EQ(config.log_format, "json");
  ASSERT_TRUE(finalize(config).ok());
  const auto env = [](const char* value) {
    return [value](const char* name) -> const char* {
      return std::string_view(name) == kLogFormatEnv ? value : nullptr;
    };
  };
  apply_environment(env("text"), config);
  EXPECT_EQ(config.log_format, "text");
  apply_environment(env(""), config);  // empty: unset
  EXPECT_EQ(config.log_format, "text");
  apply_environment(env("xml"), config);
  const Status s = finalize(config);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("log_format \"xml\""), std::string::npos) << s.message();
  EXPECT_EQ(load_toml_text("log_format = 1\n", "t.toml", config).code(), Code::kInvalidArgument);
}

// The example configuration the package installs (packaging/herald.toml.in), with its install-time
// paths filled in as for the prefix /usr.
std::string example_config() {
  std::ifstream in(HERALD_EXAMPLE_CONFIG);
  std::stringstream text;
  text << in.rdbuf();
  std::string s =
      std::regex_replace(text.str(), std::regex("@HERALD_STATE_DIR@"), "/var/lib/herald");
  return std::regex_replace(s, std::regex("@HERALD_CONFIG_DIR@"), "/etc/herald");
}

TEST(ServeConfigExample, TheInstalledExampleLoadsAsASingleNode) {
  const std::string text = example_config();
  ASSERT_FALSE(text.empty()) << HERALD_EXAMPLE_CONFIG;
  ServeConfig config;
  ASSERT_TRUE(load_toml_text(text, "herald.toml", config).ok());
  EXPECT_EQ(config.data_dir, "/var/lib/herald/data");
  EXPECT_TRUE(finalize(config).ok());
  EXPECT_EQ(config.peers.size(), 1U);
}

TEST(ServeConfigExample, EveryCommentedKeyUncommentedHasAKnownNameAndType) {
  // "# key = value" and "# [table]" lines become settings; explanations ("#   ...") stay comments.
  const std::string text = std::regex_replace(
      example_config(), std::regex("^# (\\[[a-z]+\\]|[a-z_]+ = )", std::regex::multiline), "$1");
  ASSERT_NE(text.find("\n[apns]"), std::string::npos);
  ASSERT_NE(text.find("\nlog_format = \"text\""), std::string::npos);
  ServeConfig config;
  const Status s = load_toml_text(text, "herald.toml", config);
  EXPECT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(config.apns.topic, "com.example.chat");
  EXPECT_EQ(config.device_limits.max_sessions_per_device, 4U);
}

TEST(ServeConfigTest, BrokenTomlGivesClearError) {
  const std::string path = temp_path("herald-broken.toml");
  {
    std::ofstream out(path);
    out << "id = = 2\n";
  }
  ServeConfig config;
  const Status s = load_toml(path, config);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find(path), std::string::npos);
  std::remove(path.c_str());
  EXPECT_EQ(load_toml("/nonexistent/herald.toml", config).code(), Code::kNotFound);
}

TEST(ServeConfigTest, SeveralNodesNeedASecretFileOrInsecurePeers) {
  ServeConfig config;
  config.peers = {{1, "a:1"}, {2, "b:2"}, {3, "c:3"}};
  const Status refused = finalize(config);
  EXPECT_EQ(refused.code(), Code::kInvalidArgument);
  EXPECT_NE(refused.message().find("--cluster-secret-file"), std::string::npos);
  config.insecure_peers = true;
  EXPECT_TRUE(finalize(config).ok());
  config.insecure_peers = false;
  config.cluster_secret_file = "/etc/herald/cluster-secret";
  EXPECT_TRUE(finalize(config).ok());
}

TEST(ServeConfigTest, SecretFileAndInsecurePeersExcludeEachOther) {
  ServeConfig config;
  config.peers = {{1, "a:1"}, {2, "b:2"}};
  config.cluster_secret_file = "/etc/herald/cluster-secret";
  config.insecure_peers = true;
  EXPECT_EQ(finalize(config).code(), Code::kInvalidArgument);
}

TEST(ServeConfigTest, SingleNodeNeedsNoSecret) {
  ServeConfig config;
  config.peers = {{1, "a:1"}};
  EXPECT_TRUE(finalize(config).ok());
}

TEST(ServeConfigTest, JoiningNeedsARunningMemberToJoinAndLoadsFromToml) {
  ServeConfig alone;
  alone.join = true;
  EXPECT_EQ(finalize(alone).code(), Code::kInvalidArgument) << "no member to join";
  ServeConfig config;
  ASSERT_TRUE(load_toml_text("id = 4\njoin = true\ninsecure_peers = true\n"
                             "peers = \"1=a:1,4=d:4\"\n",
                             "test", config)
                  .ok());
  EXPECT_TRUE(config.join);
  EXPECT_TRUE(finalize(config).ok());
  ServeConfig wrong;
  EXPECT_EQ(load_toml_text("join = 1\n", "test", wrong).code(), Code::kInvalidArgument);
}

// Writes `contents` to a fresh file with mode `perms`; returns its path.
std::string write_secret_file(const std::string& name, const std::string& contents,
                              std::filesystem::perms perms) {
  std::string path = temp_path(name);
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << contents;
  }
  std::filesystem::permissions(path, perms);
  return path;
}

TEST(ServeConfigTest, SecretFileLosesTrailingWhitespaceOnly) {
  using std::filesystem::perms;
  const std::string secret(server::kMinClusterSecretBytes, 'q');
  const std::string path = write_secret_file("herald-secret-ok", " " + secret + "\n",
                                             perms::owner_read | perms::owner_write);
  Result<ClusterSecret> loaded = load_cluster_secret(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().to_string();
  EXPECT_EQ(loaded->bytes, " " + secret);
  EXPECT_FALSE(loaded->readable_by_others);
  std::remove(path.c_str());
}

TEST(ServeConfigTest, ShortSecretIsAClearError) {
  using std::filesystem::perms;
  // The newline does not count towards the length.
  const std::string path = write_secret_file(
      "herald-secret-short", std::string(server::kMinClusterSecretBytes - 1, 'q') + "\n",
      perms::owner_read | perms::owner_write);
  const Status s = load_cluster_secret(path).status();
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find(path), std::string::npos);
  EXPECT_NE(s.message().find("at least"), std::string::npos);
  std::remove(path.c_str());
  EXPECT_EQ(load_cluster_secret("/nonexistent/herald-secret").status().code(), Code::kNotFound);
}

TEST(ServeConfigTest, SecretFileReadableByOthersIsFlagged) {
  using std::filesystem::perms;
  const std::string path =
      write_secret_file("herald-secret-loose", std::string(server::kMinClusterSecretBytes, 'q'),
                        perms::owner_read | perms::owner_write | perms::others_read);
  Result<ClusterSecret> loaded = load_cluster_secret(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().to_string();
  EXPECT_TRUE(loaded->readable_by_others);
  std::remove(path.c_str());
}

// ---------------------------------------------------------------- providers

constexpr char kProvidersToml[] = R"(
[apns]
key_file = "/etc/herald/apns.p8"
key_id = "ABC123DEFG"
team_id = "TEAM123456"
topic = "com.example.chat"
endpoint = "sandbox"
[fcm]
service_account_file = "/etc/herald/fcm.json"
endpoint = "https://127.0.0.1:8443"
token_endpoint = "https://127.0.0.1:8444"
ca_file = "/tmp/ca.pem"
[smtp]
url = "smtps://mail.example.com"
username = "herald"
password_file = "/etc/herald/smtp-password"
from = "herald@example.com"
)";

TEST(ServeConfigProviders, NothingConfiguredLeavesEveryProviderOff) {
  ServeConfig config;
  ASSERT_TRUE(load_text("id = 1\n", config).ok());
  ASSERT_TRUE(finalize(config).ok());
  EXPECT_FALSE(config.apns.configured());
  EXPECT_FALSE(config.fcm.configured());
  EXPECT_FALSE(config.smtp.configured());
}

TEST(ServeConfigProviders, SectionsLoadAndMapToTheClientsConfigurations) {
  ServeConfig config;
  ASSERT_TRUE(load_text(kProvidersToml, config).ok());
  ASSERT_TRUE(finalize(config).ok());
  Result<push::ApnsConfig> apns = apns_client_config(config.apns);
  ASSERT_TRUE(apns.ok()) << apns.status().to_string();
  EXPECT_EQ(apns->host, push::kApnsSandboxHost);
  EXPECT_EQ(apns->port, push::kApnsPort);
  EXPECT_EQ(apns->key_pem_path, "/etc/herald/apns.p8");
  EXPECT_EQ(apns->topic, "com.example.chat");
  Result<push::FcmConfig> fcm = fcm_client_config(config.fcm);
  ASSERT_TRUE(fcm.ok()) << fcm.status().to_string();
  EXPECT_EQ(fcm->host, "127.0.0.1");
  EXPECT_EQ(fcm->port, 8443);
  EXPECT_EQ(fcm->token_host, "127.0.0.1");
  EXPECT_EQ(fcm->token_port, 8444);
  EXPECT_EQ(fcm->ca_file, "/tmp/ca.pem");
  Result<email::SmtpConfig> smtp = smtp_client_config(config.smtp);
  ASSERT_TRUE(smtp.ok()) << smtp.status().to_string();
  EXPECT_EQ(smtp->host, "mail.example.com");
  EXPECT_EQ(smtp->port, email::kSmtpImplicitTlsPort);
  EXPECT_EQ(smtp->tls, email::SmtpTls::kImplicit);
  EXPECT_EQ(smtp->username, "herald");
  EXPECT_EQ(smtp->from_address, "herald@example.com");
}

TEST(ServeConfigProviders, ApnsEndpointIsProductionSandboxOrAnHttpsUrl) {
  ApnsSettings apns;
  apns.key_file = "k.p8";
  apns.key_id = "K";
  apns.team_id = "T";
  apns.topic = "t";
  EXPECT_EQ(apns_client_config(apns)->host, push::kApnsProductionHost);
  apns.endpoint = "production";
  EXPECT_EQ(apns_client_config(apns)->host, push::kApnsProductionHost);
  apns.endpoint = "https://127.0.0.1:9443";
  ASSERT_TRUE(apns_client_config(apns).ok());
  EXPECT_EQ(apns_client_config(apns)->port, 9443);
  for (const char* bad : {"staging", "http://127.0.0.1:9443", "https://h:0", "https://h/3/x"}) {
    apns.endpoint = bad;
    const Status s = apns_client_config(apns).status();
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find("apns.endpoint"), std::string::npos) << s.message();
  }
}

TEST(ServeConfigProviders, AnIncompleteSectionIsRefusedNamingTheMissingKey) {
  ServeConfig config;
  ASSERT_TRUE(
      load_text("[apns]\nkey_file = \"k.p8\"\nkey_id = \"K\"\nteam_id = \"T\"\n", config).ok());
  Status s = finalize(config);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("apns.topic"), std::string::npos) << s.message();

  ServeConfig fcm;
  ASSERT_TRUE(load_text("[fcm]\nendpoint = \"https://127.0.0.1:1\"\n", fcm).ok());
  s = finalize(fcm);
  EXPECT_NE(s.message().find("fcm.service_account_file"), std::string::npos) << s.message();

  ServeConfig smtp;
  ASSERT_TRUE(load_text("[smtp]\nhost = \"mail.example.com\"\n", smtp).ok());
  s = finalize(smtp);
  EXPECT_NE(s.message().find("smtp.from"), std::string::npos) << s.message();
}

TEST(ServeConfigProviders, UnknownKeysAndAnInlinePasswordAreRefused) {
  ServeConfig config;
  Status s = load_text("[apns]\nkeyfile = \"k.p8\"\n", config);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("apns.keyfile"), std::string::npos) << s.message();
  s = load_text("[smtp]\nhost = \"h\"\npassword = \"hunter2-secret\"\n", config);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("password_file"), std::string::npos) << s.message();
  EXPECT_EQ(s.message().find("hunter2-secret"), std::string::npos) << s.message();
  EXPECT_EQ(load_text("apns = 3\n", config).code(), Code::kInvalidArgument);
  EXPECT_EQ(load_text("[smtp]\nport = 70000\n", config).code(), Code::kInvalidArgument);
  EXPECT_EQ(load_text("[fcm]\nca_file = 1\n", config).code(), Code::kInvalidArgument);
}

TEST(ServeConfigProviders, SmtpServerTlsAndPortCombine) {
  SmtpSettings smtp;
  smtp.host = "mail.example.com";
  smtp.from = "herald@example.com";
  Result<email::SmtpConfig> config = smtp_client_config(smtp);
  ASSERT_TRUE(config.ok()) << config.status().to_string();
  EXPECT_EQ(config->tls, email::SmtpTls::kStartTls);
  EXPECT_EQ(config->port, email::kSmtpSubmissionPort);
  EXPECT_TRUE(config->username.empty());
  smtp.tls = "none";
  EXPECT_EQ(smtp_client_config(smtp)->port, kSmtpRelayPort);
  smtp.tls = "implicit";
  EXPECT_EQ(smtp_client_config(smtp)->port, email::kSmtpImplicitTlsPort);
  smtp.port = 2525;
  EXPECT_EQ(smtp_client_config(smtp)->port, 2525);
  smtp.tls = "ssl";
  EXPECT_NE(smtp_client_config(smtp).status().message().find("smtp.tls"), std::string::npos);

  SmtpSettings url;
  url.url = "smtp://127.0.0.1:2525";
  url.tls = "none";
  url.from = "h@example.com";
  ASSERT_TRUE(smtp_client_config(url).ok());
  EXPECT_EQ(smtp_client_config(url)->port, 2525);
  EXPECT_EQ(smtp_client_config(url)->tls, email::SmtpTls::kNone);
  url.host = "other";
  EXPECT_EQ(smtp_client_config(url).status().code(), Code::kInvalidArgument);
  url.host.clear();
  url.url = "smtps://127.0.0.1";
  url.tls = "starttls";
  EXPECT_EQ(smtp_client_config(url).status().code(), Code::kInvalidArgument);
  url.url = "imap://127.0.0.1";
  EXPECT_NE(smtp_client_config(url).status().message().find("smtp.url"), std::string::npos);
}

TEST(ServeConfigProviders, SmtpUserAndPasswordComeTogetherAndOnce) {
  SmtpSettings smtp;
  smtp.host = "h";
  smtp.username = "herald";
  smtp.from = "herald@example.com";
  Status s = smtp_client_config(smtp).status();
  EXPECT_NE(s.message().find(kSmtpPasswordEnv), std::string::npos) << s.message();
  smtp.password = "from-the-environment";
  EXPECT_TRUE(smtp_client_config(smtp).ok());
  smtp.password_file = "/etc/herald/smtp-password";
  s = smtp_client_config(smtp).status();
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_EQ(s.message().find("from-the-environment"), std::string::npos);
  smtp.password.clear();
  smtp.username.clear();
  EXPECT_EQ(smtp_client_config(smtp).status().code(), Code::kInvalidArgument);
}

TEST(ServeConfigProviders, EnvironmentOverridesTheFilesKeyPathsAndGivesThePassword) {
  ServeConfig config;
  ASSERT_TRUE(load_text(kProvidersToml, config).ok());
  const std::map<std::string, std::string> env{{kApnsKeyFileEnv, "/run/secrets/apns.p8"},
                                               {kFcmServiceAccountFileEnv, ""},
                                               {kSmtpPasswordEnv, "s3cret"}};
  apply_environment(
      [&](const char* name) -> const char* {
        const auto it = env.find(name);
        return it == env.end() ? nullptr : it->second.c_str();
      },
      config);
  EXPECT_EQ(config.apns.key_file, "/run/secrets/apns.p8");
  EXPECT_EQ(config.fcm.service_account_file, "/etc/herald/fcm.json");  // empty: unset
  EXPECT_EQ(config.smtp.password, "s3cret");
  // The file names a password file too: given twice.
  EXPECT_EQ(finalize(config).code(), Code::kInvalidArgument);
}

// An EnvLookup over `env`.
EnvLookup lookup(const std::map<std::string, std::string>& env) {
  return [&env](const char* name) -> const char* {
    const auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  };
}

TEST(ServeConfigProviders, EveryProviderKeyComesFromTheEnvironmentOrAFlag) {
  ServeConfig config;
  const std::map<std::string, std::string> env{
      {"HERALD_APNS_KEY_ID", "ENVKEY1234"},
      {"HERALD_APNS_TEAM_ID", "ENVTEAM123"},
      {"HERALD_APNS_TOPIC", "com.example.env"},
      {"HERALD_APNS_ENDPOINT", "https://127.0.0.1:7443"},
      {"HERALD_FCM_ENDPOINT", "https://127.0.0.1:7444"},
      {"HERALD_FCM_TOKEN_ENDPOINT", "https://127.0.0.1:7445"},
      {"HERALD_WEBPUSH_SUBJECT", "mailto:env@example.com"},
      {"HERALD_SMTP_URL", "smtp://127.0.0.1:2525"},
      {"HERALD_SMTP_USERNAME", "env-user"},
      {"HERALD_SMTP_FROM", "env@example.com"}};
  ASSERT_EQ(env.size(), kProviderSettingNames.size());
  for (const ProviderSettingName& name : kProviderSettingNames) {
    EXPECT_TRUE(env.contains(name.env)) << name.env << " is named in the table";
    EXPECT_TRUE(name.flag.starts_with("--")) << name.flag;
  }
  apply_environment(lookup(env), config);
  EXPECT_EQ(config.apns.key_id, "ENVKEY1234");
  EXPECT_EQ(config.apns.team_id, "ENVTEAM123");
  EXPECT_EQ(config.apns.topic, "com.example.env");
  EXPECT_EQ(config.apns.endpoint, "https://127.0.0.1:7443");
  EXPECT_EQ(config.fcm.endpoint, "https://127.0.0.1:7444");
  EXPECT_EQ(config.fcm.token_endpoint, "https://127.0.0.1:7445");
  EXPECT_EQ(config.webpush.subject, "mailto:env@example.com");
  EXPECT_EQ(config.smtp.url, "smtp://127.0.0.1:2525");
  EXPECT_EQ(config.smtp.username, "env-user");
  EXPECT_EQ(config.smtp.from, "env@example.com");

  std::vector<std::pair<std::string, std::string>> flags;
  flags.reserve(kProviderSettingNames.size());
  for (const ProviderSettingName& name : kProviderSettingNames) {
    flags.emplace_back(std::string(name.key), "flag:" + std::string(name.key));
  }
  ASSERT_TRUE(apply_provider_flags(flags, config).ok());
  EXPECT_EQ(config.apns.key_id, "flag:apns.key_id");
  EXPECT_EQ(config.apns.team_id, "flag:apns.team_id");
  EXPECT_EQ(config.apns.topic, "flag:apns.topic");
  EXPECT_EQ(config.apns.endpoint, "flag:apns.endpoint");
  EXPECT_EQ(config.fcm.endpoint, "flag:fcm.endpoint");
  EXPECT_EQ(config.fcm.token_endpoint, "flag:fcm.token_endpoint");
  EXPECT_EQ(config.webpush.subject, "flag:webpush.subject");
  EXPECT_EQ(config.smtp.url, "flag:smtp.url");
  EXPECT_EQ(config.smtp.username, "flag:smtp.username");
  EXPECT_EQ(config.smtp.from, "flag:smtp.from");
}

TEST(ServeConfigProviders, TheFileThenTheEnvironmentThenFlagsTakePrecedence) {
  // `herald serve` applies them in this order (app/serve.cc, resolve): each overrides the last.
  ServeConfig config;
  ASSERT_TRUE(load_text(kProvidersToml, config).ok());
  EXPECT_EQ(config.apns.topic, "com.example.chat");
  const std::map<std::string, std::string> env{{"HERALD_APNS_TOPIC", "com.example.env"},
                                               {"HERALD_SMTP_FROM", ""}};
  apply_environment(lookup(env), config);
  EXPECT_EQ(config.apns.topic, "com.example.env");
  EXPECT_EQ(config.smtp.from, "herald@example.com") << "an empty variable counts as unset";
  EXPECT_EQ(config.apns.key_id, "ABC123DEFG") << "a variable not set leaves the file's";
  ASSERT_TRUE(apply_provider_flags({{"apns.topic", "com.example.flag"}}, config).ok());
  EXPECT_EQ(config.apns.topic, "com.example.flag");
  const Status unknown = apply_provider_flags({{"apns.key_file", "/tmp/k.p8"}}, config);
  EXPECT_EQ(unknown.code(), Code::kInvalidArgument) << "key files have their own flags";
  EXPECT_NE(unknown.message().find("apns.key_file"), std::string::npos) << unknown.message();
}

TEST(ServeConfigProviders, AnSmtpUrlWithUserInfoIsRefusedWithoutEchoingIt) {
  SmtpSettings smtp;
  smtp.url = "smtp://herald:hunter2-in-url@mail.example.com:587";
  smtp.from = "herald@example.com";
  const auto config = smtp_client_config(smtp);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), Code::kInvalidArgument);
  EXPECT_NE(config.status().message().find("user info"), std::string::npos);
  EXPECT_EQ(config.status().message().find("hunter2-in-url"), std::string::npos)
      << config.status().message();
}

TEST(ServeConfigProviders, TheEnvironmentsPasswordNeverReachesAStartupLine) {
  ServeConfig config;
  ASSERT_TRUE(load_text(R"(
[smtp]
url = "smtp://mail.example.com:587"
username = "herald"
from = "herald@example.com"
)",
                        config)
                  .ok());
  const std::map<std::string, std::string> env{{kSmtpPasswordEnv, "Pw-from-the-environment-77"},
                                               {"HERALD_SMTP_USERNAME", "herald-env"}};
  apply_environment(lookup(env), config);
  ASSERT_TRUE(finalize(config).ok());
  const auto smtp = smtp_client_config(config.smtp);
  ASSERT_TRUE(smtp.ok()) << smtp.status().to_string();
  EXPECT_EQ(smtp->password, "Pw-from-the-environment-77") << "the client gets it";
  const std::string line = describe_smtp(*smtp);
  EXPECT_NE(line.find("AUTH as herald-env"), std::string::npos) << line;
  EXPECT_EQ(line.find("Pw-from-the-environment-77"), std::string::npos) << line;
}

TEST(ServeConfigProviders, StartupLinesNameEndpointsNeverSecrets) {
  ApnsSettings apns;
  apns.key_file = "/k/apns.p8";
  apns.key_id = "KEYID12345";
  apns.team_id = "TEAM123456";
  apns.topic = "com.example.chat";
  apns.endpoint = "https://127.0.0.1:9443";
  const std::string a = describe_apns(*apns_client_config(apns));
  EXPECT_NE(a.find("https://127.0.0.1:9443"), std::string::npos) << a;
  EXPECT_NE(a.find("com.example.chat"), std::string::npos) << a;
  SmtpSettings smtp;
  smtp.host = "mail.example.com";
  smtp.username = "herald";
  smtp.password = "hunter2-pw";
  smtp.from = "herald@example.com";
  const std::string m = describe_smtp(*smtp_client_config(smtp));
  EXPECT_NE(m.find("mail.example.com:587"), std::string::npos) << m;
  EXPECT_NE(m.find("starttls"), std::string::npos) << m;
  EXPECT_EQ(m.find("hunter2-pw"), std::string::npos) << m;
  FcmSettings fcm;
  fcm.service_account_file = "/k/fcm.json";
  const std::string f = describe_fcm(*fcm_client_config(fcm));
  EXPECT_NE(f.find("https://fcm.googleapis.com:443"), std::string::npos) << f;
}

TEST(ServeConfigProviders, PasswordFileIsReadWithoutItsLineBreak) {
  using std::filesystem::perms;
  const std::string path = write_secret_file("herald-smtp-password", "pass word\n",
                                             perms::owner_read | perms::owner_write);
  Result<std::string> password = read_smtp_password(path);
  ASSERT_TRUE(password.ok()) << password.status().to_string();
  EXPECT_EQ(*password, "pass word");
  EXPECT_EQ(secret_file_readable_by_others(path, "smtp.password_file").value(), false);
  std::remove(path.c_str());

  const std::string empty = write_secret_file("herald-smtp-empty", "\n", perms::owner_read);
  EXPECT_EQ(read_smtp_password(empty).status().code(), Code::kInvalidArgument);
  std::remove(empty.c_str());
  const Status missing = read_smtp_password("/nonexistent/smtp-password").status();
  EXPECT_EQ(missing.code(), Code::kNotFound);
  EXPECT_NE(missing.message().find("/nonexistent/smtp-password"), std::string::npos);
}

TEST(ServeConfigProviders, KeyFileChecksSayMissingAndWorldReadable) {
  using std::filesystem::perms;
  const std::string loose = write_secret_file(
      "herald-apns-loose", "-----BEGIN PRIVATE KEY-----\n",
      perms::owner_read | perms::owner_write | perms::group_read | perms::others_read);
  EXPECT_EQ(secret_file_readable_by_others(loose, "apns.key_file").value(), true);
  std::remove(loose.c_str());
  const Status s = secret_file_readable_by_others("/nonexistent/a.p8", "apns.key_file").status();
  EXPECT_EQ(s.code(), Code::kNotFound);
  EXPECT_NE(s.message().find("apns.key_file /nonexistent/a.p8"), std::string::npos);
}

TEST(ServeConfigProviders, WebPushSectionLoadsNeedsKeyAndContactAndRefusesUnknownKeys) {
  ServeConfig config;
  ASSERT_TRUE(load_text("id = 1\n", config).ok());
  EXPECT_FALSE(config.webpush.configured());

  ServeConfig full;
  ASSERT_TRUE(load_text("[webpush]\nvapid_key_file = \"/etc/herald/vapid.pem\"\n"
                        "subject = \"mailto:ops@example.com\"\nca_file = \"/tmp/ca.pem\"\n",
                        full)
                  .ok());
  ASSERT_TRUE(finalize(full).ok());
  Result<push::WebPushOptions> options = webpush_client_config(full.webpush);
  ASSERT_TRUE(options.ok()) << options.status().to_string();
  EXPECT_EQ(options->vapid_private_key_path, "/etc/herald/vapid.pem");
  EXPECT_EQ(options->vapid_subject, "mailto:ops@example.com");
  EXPECT_EQ(options->ca_file, "/tmp/ca.pem");
  EXPECT_FALSE(options->allow_private_addresses);  // endpoints are device input

  ServeConfig no_key;
  ASSERT_TRUE(load_text("[webpush]\nsubject = \"mailto:ops@example.com\"\n", no_key).ok());
  Status s = finalize(no_key);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("webpush.vapid_key_file"), std::string::npos) << s.message();

  ServeConfig bad_subject;
  ASSERT_TRUE(
      load_text("[webpush]\nvapid_key_file = \"k.pem\"\nsubject = \"ops\"\n", bad_subject).ok());
  s = finalize(bad_subject);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("webpush.subject"), std::string::npos) << s.message();

  s = load_text("[webpush]\nvapid_key = \"k.pem\"\n", config);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("webpush.vapid_key"), std::string::npos) << s.message();
  // Only the demo's double on loopback lifts the private-address refusal; no file can.
  s = load_text("[webpush]\nallow_private_addresses = true\n", config);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("webpush.allow_private_addresses"), std::string::npos) << s.message();

  ServeConfig env_config;
  ASSERT_TRUE(load_text("[webpush]\nvapid_key_file = \"k.pem\"\nsubject = \"https://x.example\"\n",
                        env_config)
                  .ok());
  apply_environment(
      [](const char* name) -> const char* {
        return std::string_view(name) == kWebPushVapidKeyFileEnv ? "/run/secrets/vapid.pem"
                                                                 : nullptr;
      },
      env_config);
  EXPECT_EQ(env_config.webpush.vapid_key_file, "/run/secrets/vapid.pem");
}

TEST(ServeConfigProviders, OnlyTheTestVariableSetToOneLetsWebPushReachPrivateAddresses) {
  const auto with = [](const char* value) {
    ServeConfig config;
    EXPECT_TRUE(
        load_text("[webpush]\nvapid_key_file = \"k.pem\"\nsubject = \"mailto:ops@x.example\"\n",
                  config)
            .ok());
    apply_environment(
        [value](const char* name) -> const char* {
          return std::string_view(name) == kWebPushAllowPrivateAddressesEnv ? value : nullptr;
        },
        config);
    EXPECT_TRUE(finalize(config).ok());
    Result<push::WebPushOptions> options = webpush_client_config(config.webpush);
    EXPECT_TRUE(options.ok()) << options.status().to_string();
    return options.ok() && options->allow_private_addresses;
  };
  EXPECT_FALSE(with(nullptr));
  EXPECT_FALSE(with(""));
  EXPECT_FALSE(with("0"));
  EXPECT_FALSE(with("true"));
  EXPECT_TRUE(with("1"));
}

TEST(ServeConfigTls, WithoutTheSectionTheClientPortIsPlaintext) {
  ServeConfig config;
  ASSERT_TRUE(load_text("id = 1\n", config).ok());
  EXPECT_FALSE(config.tls.configured());
  EXPECT_TRUE(finalize(config).ok());
}

TEST(ServeConfigTls, ReadsTheFilesAndTheMinimumVersion) {
  ServeConfig config;
  ASSERT_TRUE(load_text("[tls]\ncert_file = \"/etc/herald/tls/chain.pem\"\n"
                        "key_file = \"/etc/herald/tls/key.pem\"\nmin_version = \"1.3\"\n",
                        config)
                  .ok());
  EXPECT_TRUE(config.tls.configured());
  ASSERT_TRUE(finalize(config).ok());
  const auto files = tls_server_files(config.tls);
  ASSERT_TRUE(files.ok()) << files.status().to_string();
  EXPECT_EQ(files->cert_file, "/etc/herald/tls/chain.pem");
  EXPECT_EQ(files->key_file, "/etc/herald/tls/key.pem");
  EXPECT_EQ(files->min_version, server::TlsMinVersion::kTls13);
}

TEST(ServeConfigTls, TheMinimumVersionDefaultsToTwelve) {
  ServeConfig config;
  ASSERT_TRUE(load_text("[tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n", config).ok());
  EXPECT_EQ(tls_server_files(config.tls).value().min_version, server::TlsMinVersion::kTls12);
}

TEST(ServeConfigTls, NeedsBothFilesAndAKnownVersion) {
  for (const char* text : {"[tls]\ncert_file = \"c.pem\"\n", "[tls]\nkey_file = \"k.pem\"\n",
                           "[tls]\nmin_version = \"1.3\"\n",
                           "[tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n"
                           "min_version = \"1.1\"\n"}) {
    ServeConfig config;
    ASSERT_TRUE(load_text(text, config).ok()) << text;
    const Status s = finalize(config);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << text;
    EXPECT_NE(s.message().find("tls"), std::string::npos) << s.to_string();
  }
}

TEST(ServeConfigTls, RefusesAnUnknownKeyAndAWrongType) {
  ServeConfig config;
  const Status typo = load_text("[tls]\ncert_fle = \"c.pem\"\n", config);
  EXPECT_EQ(typo.code(), Code::kInvalidArgument);
  EXPECT_NE(typo.message().find("tls.cert_fle"), std::string::npos) << typo.to_string();
  EXPECT_EQ(load_text("[tls]\ncert_file = 3\n", config).code(), Code::kInvalidArgument);
  EXPECT_EQ(load_text("tls = \"on\"\n", config).code(), Code::kInvalidArgument);
}

TEST(ServeConfigWebhooks, TimeoutIsBoundedAndTheCaFileKept) {
  ServeConfig defaults;
  ASSERT_TRUE(load_text("id = 1\n", defaults).ok());
  EXPECT_EQ(defaults.webhooks.timeout_ms, 10'000);
  EXPECT_EQ(defaults.webhooks.ca_file, "");

  ServeConfig set;
  ASSERT_TRUE(
      load_text("[webhooks]\ntimeout_ms = 1500\nca_file = \"/etc/herald/ca.pem\"\n", set).ok());
  EXPECT_EQ(set.webhooks.timeout_ms, 1'500);
  EXPECT_EQ(set.webhooks.ca_file, "/etc/herald/ca.pem");

  ServeConfig config;
  EXPECT_EQ(load_text("[webhooks]\ntimeout_ms = 0\n", config).code(), Code::kInvalidArgument);
  EXPECT_EQ(load_text("[webhooks]\ntimeout_ms = 25001\n", config).code(), Code::kInvalidArgument);
  EXPECT_EQ(load_text("[webhooks]\nurl = \"http://x\"\n", config).code(), Code::kInvalidArgument);
}

TEST(ServeConfigSignIn, SectionNeedsExactlyOneKeyFileAndBoundsTheSkew) {
  ServeConfig none;
  ASSERT_TRUE(load_text("id = 1\n", none).ok());
  EXPECT_FALSE(none.signin.configured());

  ServeConfig full;
  ASSERT_TRUE(load_text("[signin]\nhs256_secret_file = \"/etc/herald/s\"\naudience = \"herald\"\n"
                        "issuer = \"https://app.example\"\ndevice_claim = \"did\"\n"
                        "clock_skew_s = 30\n",
                        full)
                  .ok());
  EXPECT_TRUE(full.signin.configured());
  EXPECT_EQ(full.signin.hs256_secret_file, "/etc/herald/s");
  EXPECT_EQ(full.signin.audience, "herald");
  EXPECT_EQ(full.signin.issuer, "https://app.example");
  EXPECT_EQ(full.signin.device_claim, "did");
  EXPECT_EQ(full.signin.clock_skew_s, 30);

  ServeConfig config;
  Status s = load_text("[signin]\naudience = \"herald\"\n", config);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("exactly one"), std::string::npos) << s.message();
  s = load_text("[signin]\nhs256_secret_file = \"a\"\njwks_file = \"b\"\n", config);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  s = load_text("[signin]\njwks_file = \"b\"\nclock_skew_s = 301\n", config);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("signin.clock_skew_s"), std::string::npos) << s.message();
  s = load_text("[signin]\njwks_file = \"b\"\nsecret = \"inline\"\n", config);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("signin.secret"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace herald::app
