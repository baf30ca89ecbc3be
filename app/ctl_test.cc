#include "app/ctl.h"

#include <gtest/gtest.h>

#include <map>

namespace herald::app {
namespace {

CtlEnv env_of(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const char* name) -> const char* {
    const auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}

Result<CtlArgs> parse(const std::vector<std::string>& argv,
                      std::map<std::string, std::string> env = {}) {
  return parse_ctl_args(argv, env_of(std::move(env)));
}

Result<CtlHttpCall> call(const std::vector<std::string>& argv) {
  auto args = parse(argv);
  if (!args.ok()) return args.status();
  return http_call_for(*args);
}

TEST(CtlArgs, FlagsGoAnywhereAndTheEnvironmentGivesDefaults) {
  auto args = parse({"member", "--json", "remove", "--node", "10.0.0.1:7500", "3"},
                    {{"HERALD_ADMIN_TOKEN", "secret"}, {"HERALD_NODE", "h:1"}});
  ASSERT_TRUE(args.ok()) << args.status().to_string();
  EXPECT_TRUE(args->json);
  EXPECT_EQ(args->host, "10.0.0.1");
  EXPECT_EQ(args->port, 7500);
  EXPECT_EQ(args->token, "secret");
  EXPECT_EQ(args->words, (std::vector<std::string>{"member", "remove", "3"}));
  auto from_env = parse({"cluster", "status", "--token=flag"},
                        {{"HERALD_NODE", "h:9"}, {"HERALD_ADMIN_TOKEN", "env"}});
  ASSERT_TRUE(from_env.ok());
  EXPECT_EQ(from_env->host, "h");
  EXPECT_EQ(from_env->port, 9);
  EXPECT_EQ(from_env->token, "flag") << "the flag wins over the environment";
  auto defaults = parse({"cluster", "status"});
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->port, 7400);
  EXPECT_EQ(defaults->timeout_ms, kCtlDefaultTimeoutMs);
}

TEST(CtlArgs, UnknownFlagsMissingValuesAndBadNodesAreUsageErrors) {
  EXPECT_EQ(parse({"cluster", "status", "--verbose"}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(parse({"cluster", "status", "--node"}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(parse({"cluster", "status", "--node", "nohost"}).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(parse({"cluster", "status", "--node", "h:0"}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(parse({"cluster", "status", "--timeout-ms", "0"}).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(parse({"--json"}).status().code(), Code::kInvalidArgument) << "no command";
}

TEST(CtlArgs, AnHttpsNodeOrACaFileMeansTls) {
  auto plain = parse({"cluster", "status", "--node", "10.0.0.1:7400"});
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(plain->https);
  auto url = parse({"cluster", "status", "--node", "https://node-1.example:7400/"});
  ASSERT_TRUE(url.ok()) << url.status().to_string();
  EXPECT_TRUE(url->https);
  EXPECT_EQ(url->host, "node-1.example");
  EXPECT_EQ(url->port, 7400);
  EXPECT_EQ(url->ca_file, "") << "the system's CAs";
  auto with_ca = parse({"cluster", "status", "--ca-file", "/etc/herald/ca.pem", "--node", "h:1"});
  ASSERT_TRUE(with_ca.ok());
  EXPECT_TRUE(with_ca->https) << "a CA file is for a TLS node";
  EXPECT_EQ(with_ca->ca_file, "/etc/herald/ca.pem");
  auto http = parse({"cluster", "status", "--node", "http://h:1"});
  ASSERT_TRUE(http.ok());
  EXPECT_FALSE(http->https);
  EXPECT_EQ(http->host, "h");
  auto from_env = parse({"cluster", "status"},
                        {{"HERALD_NODE", "https://h:2"}, {"HERALD_CA_FILE", "/tmp/ca.pem"}});
  ASSERT_TRUE(from_env.ok());
  EXPECT_TRUE(from_env->https);
  EXPECT_EQ(from_env->port, 2);
  EXPECT_EQ(from_env->ca_file, "/tmp/ca.pem");
  // A later --node replaces the environment's, scheme included.
  auto replaced = parse({"cluster", "status", "--node", "h:3"}, {{"HERALD_NODE", "https://h:2"}});
  ASSERT_TRUE(replaced.ok());
  EXPECT_FALSE(replaced->https);
}

TEST(CtlArgs, ACaFileForAnHttpNodeAndAUrlWithAPathAreUsageErrors) {
  EXPECT_EQ(
      parse({"cluster", "status", "--node", "http://h:1", "--ca-file", "/ca.pem"}).status().code(),
      Code::kInvalidArgument);
  EXPECT_EQ(parse({"cluster", "status", "--node", "https://h:1/v1"}).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(parse({"cluster", "status", "--node", "https://h"}).status().code(),
            Code::kInvalidArgument)
      << "the port is required";
  EXPECT_EQ(parse({"cluster", "status", "--ca-file="}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(parse({"cluster", "status", "--ca-file"}).status().code(), Code::kInvalidArgument);
}

TEST(CtlCommands, MembershipLeadershipAndBackupMapToTheClusterEndpoints) {
  auto add = call({"member", "add", "4", "10.0.0.4:7401"});
  ASSERT_TRUE(add.ok()) << add.status().to_string();
  EXPECT_EQ(add->method, "POST");
  EXPECT_EQ(add->target, "/v1/cluster/members");
  EXPECT_EQ(add->body, R"({"id":4,"peer_address":"10.0.0.4:7401"})");
  auto promote = call({"member", "promote", "4"});
  ASSERT_TRUE(promote.ok());
  EXPECT_EQ(promote->target, "/v1/cluster/members/4/promote");
  auto remove = call({"member", "remove", "2"});
  ASSERT_TRUE(remove.ok());
  EXPECT_EQ(remove->method, "DELETE");
  EXPECT_EQ(remove->target, "/v1/cluster/members/2");
  auto transfer = call({"leader", "transfer", "3"});
  ASSERT_TRUE(transfer.ok());
  EXPECT_EQ(transfer->body, R"({"id":3})");
  for (const char* verb : {"backup", "snapshot"}) {
    auto backup = call({verb, "/var/backups/h1"});
    ASSERT_TRUE(backup.ok());
    EXPECT_EQ(backup->target, "/v1/cluster/backup");
    EXPECT_EQ(backup->body, R"({"dir":"/var/backups/h1"})");
  }
  auto status = call({"cluster", "status"});
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->target, "/v1/cluster");
}

TEST(CtlCommands, BadNodeIdsAndAddressesAndRelativeBackupPathsAreRefused) {
  for (const std::vector<std::string>& bad :
       std::vector<std::vector<std::string>>{{"member", "add", "0", "h:1"},
                                             {"member", "add", "x", "h:1"},
                                             {"member", "add", "4", "nohost"},
                                             {"member", "add", "4"},
                                             {"member", "promote", "-1"},
                                             {"member", "remove"},
                                             {"member", "rename", "4"},
                                             {"leader", "transfer", "1.5"},
                                             {"backup", "relative/dir"},
                                             {"cluster", "status", "extra"},
                                             {"frobnicate"}}) {
    EXPECT_EQ(call(bad).status().code(), Code::kInvalidArgument) << bad.front();
  }
  EXPECT_EQ(call({"restore", "/b"}).status().code(), Code::kNotFound) << "a local command";
  EXPECT_EQ(call({"backup", "verify", "/b"}).status().code(), Code::kNotFound);
}

TEST(CtlCommands, WorkflowsMessagesAndSagasWrapTheExistingApis) {
  auto list =
      call({"workflows", "list", "--type", "demo.pipeline", "--state", "done", "--limit", "5"});
  ASSERT_TRUE(list.ok()) << list.status().to_string();
  EXPECT_EQ(list->target, "/v1/workflows?type=demo.pipeline&state=done&limit=5");
  EXPECT_EQ(call({"workflows", "list"}).status().code(), Code::kInvalidArgument);
  auto show = call({"workflows", "show", "order/7", "--history"});
  ASSERT_TRUE(show.ok());
  EXPECT_EQ(show->target, "/v1/workflows/order%2F7/history");
  auto timeline = call({"message", "timeline", "c1", "12"});
  ASSERT_TRUE(timeline.ok());
  EXPECT_EQ(timeline->target, "/v1/admin/conversations/c1/messages/12");
  EXPECT_EQ(call({"message", "timeline", "c1", "0"}).status().code(), Code::kInvalidArgument);
  auto retry = call({"saga", "retry", "s1"});
  ASSERT_TRUE(retry.ok());
  EXPECT_EQ(retry->method, "POST");
  EXPECT_EQ(retry->target, "/v1/sagas/s1/retry");
  auto resolve = call({"saga", "resolve", "s1"});
  ASSERT_TRUE(resolve.ok());
  EXPECT_EQ(resolve->target, "/v1/sagas/s1/resolve");
}

}  // namespace
}  // namespace herald::app
