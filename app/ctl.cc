#include "app/ctl.h"

#include <fmt/format.h>

#include <boost/json.hpp>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <set>
#include <string_view>

#include "client/admin_client.h"
#include "server/backup.h"
#include "server/endpoint.h"

namespace herald::app {

namespace json = boost::json;

namespace {

// Flags that take a value, and the options they fill.
const std::set<std::string, std::less<>>& valued_options() {
  static const std::set<std::string, std::less<>> options{"type", "state", "limit", "data", "id"};
  return options;
}

Result<std::uint64_t> parse_positive(std::string_view text, std::string_view what) {
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value == 0) {
    return Status::invalid_argument(
        fmt::format("{} must be a positive integer, not '{}'", what, text));
  }
  return value;
}

constexpr std::string_view kHttpsScheme = "https://";
constexpr std::string_view kHttpScheme = "http://";

// What --node said about TLS: nothing (HOST:PORT), http:// or https://.
enum class NodeScheme { kNone, kHttp, kHttps };

// Applies --node: [http[s]://]HOST:PORT[/].
Status apply_node(std::string_view value, CtlArgs& args, NodeScheme& scheme) {
  scheme = NodeScheme::kNone;
  if (value.starts_with(kHttpsScheme)) {
    scheme = NodeScheme::kHttps;
    value.remove_prefix(kHttpsScheme.size());
  } else if (value.starts_with(kHttpScheme)) {
    scheme = NodeScheme::kHttp;
    value.remove_prefix(kHttpScheme.size());
  }
  if (scheme != NodeScheme::kNone && value.ends_with('/')) value.remove_suffix(1);
  if (value.find('/') != std::string_view::npos) {
    return Status::invalid_argument("--node is [http[s]://]HOST:PORT, without a path");
  }
  HERALD_ASSIGN_OR_RETURN(server::HostPort hp, server::parse_host_port(std::string(value)));
  if (hp.port == 0) return Status::invalid_argument("--node needs a port");
  args.host = std::move(hp.host);
  args.port = hp.port;
  return Status::ok_status();
}

// Applies one flag (`name` without its dashes) and its value to `args`.
Status apply_flag(std::string_view name, const std::string& value, CtlArgs& args,
                  NodeScheme& scheme) {
  if (name == "node") {
    HERALD_RETURN_IF_ERROR(apply_node(value, args, scheme));
  } else if (name == "ca-file") {
    if (value.empty()) return Status::invalid_argument("--ca-file needs a file");
    args.ca_file = value;
  } else if (name == "token") {
    args.token = value;
  } else if (name == "timeout-ms") {
    HERALD_ASSIGN_OR_RETURN(const std::uint64_t ms, parse_positive(value, "--timeout-ms"));
    if (ms > kCtlMaxTimeoutMs) {
      return Status::invalid_argument(fmt::format("--timeout-ms is at most {}", kCtlMaxTimeoutMs));
    }
    args.timeout_ms = static_cast<std::uint32_t>(ms);
  } else {
    args.options[std::string(name)] = value;
  }
  return Status::ok_status();
}

bool takes_value(std::string_view name) {
  return name == "node" || name == "ca-file" || name == "token" || name == "timeout-ms" ||
         valued_options().contains(name);
}

std::string segment(std::string_view text) {
  return client::encode_path_segment(text);
}

// The words after the command's two (or one) words must be exactly `count`.
Status expect_words(const CtlArgs& args, std::size_t count, std::string_view usage) {
  if (args.words.size() != count) {
    return Status::invalid_argument(fmt::format("usage: herald ctl {}", usage));
  }
  return Status::ok_status();
}

Result<CtlHttpCall> member_call(const CtlArgs& args) {
  const std::string& verb = args.words.size() > 1 ? args.words[1] : std::string();
  if (verb == "add") {
    HERALD_RETURN_IF_ERROR(expect_words(args, 4, "member add ID PEER_ADDRESS"));
    HERALD_ASSIGN_OR_RETURN(const std::uint64_t id, parse_positive(args.words[2], "the node id"));
    HERALD_RETURN_IF_ERROR(server::parse_host_port(args.words[3]).status());
    return CtlHttpCall{"POST", "/v1/cluster/members",
                       json::serialize(json::object{{"id", id}, {"peer_address", args.words[3]}})};
  }
  if (verb == "promote" || verb == "remove") {
    HERALD_RETURN_IF_ERROR(expect_words(args, 3, fmt::format("member {} ID", verb)));
    HERALD_ASSIGN_OR_RETURN(const std::uint64_t id, parse_positive(args.words[2], "the node id"));
    if (verb == "promote") {
      return CtlHttpCall{"POST", fmt::format("/v1/cluster/members/{}/promote", id), {}};
    }
    return CtlHttpCall{"DELETE", fmt::format("/v1/cluster/members/{}", id), {}};
  }
  return Status::invalid_argument("usage: herald ctl member add|promote|remove ...");
}

Result<CtlHttpCall> workflows_call(const CtlArgs& args) {
  const std::string& verb = args.words.size() > 1 ? args.words[1] : std::string();
  if (verb == "list") {
    HERALD_RETURN_IF_ERROR(expect_words(args, 2, "workflows list --type T [--state S]"));
    const auto type = args.options.find("type");
    if (type == args.options.end()) return Status::invalid_argument("workflows list needs --type");
    std::string target = "/v1/workflows?type=" + segment(type->second);
    if (const auto state = args.options.find("state"); state != args.options.end()) {
      target += "&state=" + segment(state->second);
    }
    if (const auto limit = args.options.find("limit"); limit != args.options.end()) {
      HERALD_ASSIGN_OR_RETURN(const std::uint64_t n, parse_positive(limit->second, "--limit"));
      target += fmt::format("&limit={}", n);
    }
    return CtlHttpCall{"GET", target, {}};
  }
  if (verb == "show") {
    HERALD_RETURN_IF_ERROR(expect_words(args, 3, "workflows show ID [--history]"));
    return CtlHttpCall{
        "GET",
        fmt::format("/v1/workflows/{}{}", segment(args.words[2]), args.history ? "/history" : ""),
        {}};
  }
  return Status::invalid_argument("usage: herald ctl workflows list|show ...");
}

}  // namespace

Result<CtlArgs> parse_ctl_args(const std::vector<std::string>& argv, const CtlEnv& env) {
  CtlArgs args;
  NodeScheme scheme = NodeScheme::kNone;
  if (const char* node = env(kCtlNodeEnv); node != nullptr && *node != '\0') {
    HERALD_RETURN_IF_ERROR(apply_flag("node", node, args, scheme));
  }
  if (const char* token = env(kCtlTokenEnv); token != nullptr) args.token = token;
  if (const char* ca_file = env(kCtlCaFileEnv); ca_file != nullptr) args.ca_file = ca_file;
  for (std::size_t i = 0; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    if (!arg.starts_with("--")) {
      args.words.push_back(arg);
      continue;
    }
    std::string_view name = std::string_view(arg).substr(2);
    if (name == "json") {
      args.json = true;
    } else if (name == "history") {
      args.history = true;
    } else if (const std::size_t eq = name.find('='); eq != std::string_view::npos) {
      if (!takes_value(name.substr(0, eq))) {
        return Status::invalid_argument(fmt::format("unknown flag --{}", name.substr(0, eq)));
      }
      HERALD_RETURN_IF_ERROR(
          apply_flag(name.substr(0, eq), std::string(name.substr(eq + 1)), args, scheme));
    } else if (takes_value(name)) {
      if (i + 1 >= argv.size())
        return Status::invalid_argument(fmt::format("--{} needs a value", name));
      HERALD_RETURN_IF_ERROR(apply_flag(name, argv[++i], args, scheme));
    } else {
      return Status::invalid_argument(fmt::format("unknown flag --{}", name));
    }
  }
  if (args.words.empty()) return Status::invalid_argument("no command given");
  // A CA file is for a TLS node: it makes a HOST:PORT node https, and contradicts http://.
  if (scheme == NodeScheme::kHttp && !args.ca_file.empty()) {
    return Status::invalid_argument(
        "--ca-file (or HERALD_CA_FILE) is for a node that serves HTTPS, but --node says http://");
  }
  args.https = scheme == NodeScheme::kHttps || !args.ca_file.empty();
  return args;
}

Result<CtlHttpCall> http_call_for(const CtlArgs& args) {
  const std::string& command = args.words.front();
  const std::string& verb = args.words.size() > 1 ? args.words[1] : std::string();
  if (command == "cluster" && verb == "status") {
    HERALD_RETURN_IF_ERROR(expect_words(args, 2, "cluster status"));
    return CtlHttpCall{"GET", "/v1/cluster", {}};
  }
  if (command == "member") return member_call(args);
  if (command == "leader" && verb == "transfer") {
    HERALD_RETURN_IF_ERROR(expect_words(args, 3, "leader transfer ID"));
    HERALD_ASSIGN_OR_RETURN(const std::uint64_t id, parse_positive(args.words[2], "the node id"));
    return CtlHttpCall{"POST", "/v1/cluster/leader", json::serialize(json::object{{"id", id}})};
  }
  if (command == "restore" || (command == "backup" && verb == "verify")) {
    return Status::not_found("a local command");
  }
  if (command == "backup" || command == "snapshot") {
    HERALD_RETURN_IF_ERROR(expect_words(args, 2, fmt::format("{} DIR", command)));
    if (!verb.starts_with('/')) {
      return Status::invalid_argument(
          "the backup directory is a path on the node's machine and must be absolute");
    }
    return CtlHttpCall{"POST", "/v1/cluster/backup", json::serialize(json::object{{"dir", verb}})};
  }
  if (command == "workflows") return workflows_call(args);
  if (command == "message" && verb == "timeline") {
    HERALD_RETURN_IF_ERROR(expect_words(args, 4, "message timeline CONVERSATION SEQ"));
    HERALD_ASSIGN_OR_RETURN(const std::uint64_t seq, parse_positive(args.words[3], "SEQ"));
    return CtlHttpCall{
        "GET",
        fmt::format("/v1/admin/conversations/{}/messages/{}", segment(args.words[2]), seq),
        {}};
  }
  if (command == "saga" && (verb == "retry" || verb == "resolve")) {
    HERALD_RETURN_IF_ERROR(expect_words(args, 3, fmt::format("saga {} ID", verb)));
    return CtlHttpCall{"POST", fmt::format("/v1/sagas/{}/{}", segment(args.words[2]), verb), {}};
  }
  return Status::invalid_argument(
      fmt::format("unknown command '{}{}{}'", command, verb.empty() ? "" : " ", verb));
}

}  // namespace herald::app
