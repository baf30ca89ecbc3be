// The I/O half of `herald ctl` (app/ctl.h): requests to the node, the local commands, output.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <boost/json.hpp>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>

#include "app/ctl.h"
#include "client/admin_client.h"
#include "server/backup.h"
#include "server/endpoint.h"

namespace herald::app {

namespace json = boost::json;

namespace {

// A failure to report: its protocol code ("not_found", "unreachable", ...), message, exit code
// and, with --json, the body to print.
struct Failure {
  std::string code;
  std::string message;
  int exit_code = kCtlFailed;
  json::value body;
};

int fail(const CtlArgs* args, const Failure& f) {
  std::fprintf(stderr, "herald ctl: %s: %s\n", f.code.c_str(), f.message.c_str());
  if (args != nullptr && args->json) {
    json::value body = f.body;
    if (body.is_null()) {
      body = json::object{{"error", json::object{{"code", f.code}, {"message", f.message}}}};
    }
    std::cout << json::serialize(body) << "\n";
  }
  return f.exit_code;
}

std::string text_of(const json::value* v) {
  if (v == nullptr || v->is_null()) return "-";
  if (v->is_string()) return std::string(v->get_string());
  return json::serialize(*v);
}

const json::value* field(const json::value& v, std::string_view key) {
  return v.is_object() ? v.get_object().if_contains(key) : nullptr;
}

void print_members(const json::value& v) {
  std::cout << "voters: " << text_of(field(v, "voters"))
            << "  learners: " << text_of(field(v, "learners")) << "\n";
}

void print_cluster(const json::value& v) {
  std::cout << fmt::format("node {} sees leader {} in term {}\n", text_of(field(v, "id")),
                           text_of(field(v, "leader")), text_of(field(v, "term")));
  print_members(v);
  const json::value* nodes = field(v, "nodes");
  if (nodes == nullptr || !nodes->is_array()) return;
  for (const json::value& n : nodes->get_array()) {
    std::cout << fmt::format(
        "  node {:<4} {:<14} term {:<6} commit {:<10} applied {:<10}{}\n", text_of(field(n, "id")),
        text_of(field(n, "role")), text_of(field(n, "term")), text_of(field(n, "commit")),
        text_of(field(n, "applied")),
        field(n, "match") != nullptr ? " match " + text_of(field(n, "match")) : std::string());
  }
}

void print_workflows(const json::value& v) {
  const json::value* list = field(v, "workflows");
  if (list != nullptr && list->is_array()) {
    for (const json::value& w : list->get_array()) {
      std::cout << fmt::format("{}  {}  {}  {}\n", text_of(field(w, "id")),
                               text_of(field(w, "type")), text_of(field(w, "status")),
                               text_of(field(w, "state")));
    }
  }
  const json::value* next = field(v, "next_page_token");
  if (next != nullptr && next->is_string() && !next->get_string().empty()) {
    std::cout << "more: next page token " << next->get_string() << "\n";
  }
}

// Prints a successful answer to `args`' command.
void print_answer(const CtlArgs& args, const json::value& v) {
  if (args.json) {
    std::cout << json::serialize(v) << "\n";
    return;
  }
  const std::string& command = args.words.front();
  if (command == "cluster") {
    print_cluster(v);
  } else if (command == "member") {
    print_members(v);
  } else if (command == "leader") {
    std::cout << fmt::format("node {} leads (term {})\n", text_of(field(v, "leader")),
                             text_of(field(v, "term")));
  } else if (command == "backup" || command == "snapshot") {
    std::cout << fmt::format("backup of index {} (term {}) written to {}: {} records, {} bytes\n",
                             text_of(field(v, "index")), text_of(field(v, "term")),
                             text_of(field(v, "dir")), text_of(field(v, "records")),
                             text_of(field(v, "data_bytes")));
  } else if (command == "workflows" && args.words[1] == "list") {
    print_workflows(v);
  } else if (command == "saga") {
    std::cout << fmt::format("saga {}: {} sent\n", args.words[2], args.words[1]);
  } else {
    std::cout << json::serialize(v) << "\n";
  }
}

// A non-2xx answer as a Failure, reading Herald's {"error": {"code", "message"}} body.
Failure failure_of(const client::HttpReply& reply) {
  boost::system::error_code ec;
  json::value body = json::parse(reply.body, ec);
  const json::value* error = ec ? nullptr : field(body, "error");
  if (error == nullptr) {
    return {fmt::format("http_{}", reply.status), reply.body, kCtlFailed, json::value()};
  }
  return {text_of(field(*error, "code")), text_of(field(*error, "message")), kCtlFailed,
          std::move(body)};
}

// Where a follower's not_leader answer says the leader is, if it says.
std::optional<server::HostPort> leader_of(const client::HttpReply& reply) {
  boost::system::error_code ec;
  const json::value body = json::parse(reply.body, ec);
  const json::value* error = ec ? nullptr : field(body, "error");
  const json::value* code = error != nullptr ? field(*error, "code") : nullptr;
  const json::value* address = error != nullptr ? field(*error, "leader_address") : nullptr;
  if (code == nullptr || text_of(code) != "not_leader" || address == nullptr ||
      !address->is_string()) {
    return std::nullopt;
  }
  auto hp = server::parse_host_port(address->get_string());
  return hp.ok() && hp->port != 0 ? std::optional(*std::move(hp)) : std::nullopt;
}

// A request that got no answer as a Failure: TLS refused, or the node unreachable.
Failure failure_of(const CtlArgs& args, const std::string& host, std::uint16_t port,
                   const Status& status) {
  if (args.https && client::is_tls_failure(status)) {
    return {"tls",
            fmt::format("no TLS connection to {}:{}: {} (is the node's certificate signed by {} "
                        "and made for {}, and does the node serve HTTPS?)",
                        host, port, status.message(),
                        args.ca_file.empty() ? "a CA the system trusts" : "a CA in " + args.ca_file,
                        host),
            kCtlTlsFailed, json::value()};
  }
  return {"unreachable", fmt::format("no answer from {}:{}: {}", host, port, status.message()),
          kCtlUnreachable, json::value()};
}

int run_http(const CtlArgs& args, const CtlHttpCall& call) {
  std::string host = args.host;
  std::uint16_t port = args.port;
  std::optional<client::ClientTls> tls;
  if (args.https) tls = client::ClientTls{args.ca_file};
  for (int attempt = 0;; ++attempt) {
    const client::AdminClient admin(host, port, args.token, args.timeout_ms, tls);
    auto reply = admin.request(call.method, call.target, call.body);
    if (!reply.ok()) return fail(&args, failure_of(args, host, port, reply.status()));
    if (reply->status >= 200 && reply->status < 300) {
      boost::system::error_code ec;
      const json::value v = json::parse(reply->body, ec);
      if (ec) return fail(&args, {"bad_answer", "the node's answer is not JSON", kCtlFailed, {}});
      print_answer(args, v);
      return kCtlOk;
    }
    // Membership changes are the leader's: follow a follower's pointer once.
    if (const auto leader = leader_of(*reply); leader.has_value() && attempt == 0) {
      host = leader->host;
      port = leader->port;
      continue;
    }
    return fail(&args, failure_of(*reply));
  }
}

json::object info_json(const server::BackupInfo& info) {
  return json::object{{"dir", info.dir},
                      {"index", info.index},
                      {"term", info.term},
                      {"records", info.records},
                      {"chunks", info.chunks},
                      {"data_bytes", info.data_bytes},
                      {"created_ms", info.created_ms}};
}

int local_failure(const CtlArgs& args, const Status& s) {
  return fail(&args, {std::string(code_name(s.code())), s.message(), kCtlFailed, json::value()});
}

int run_verify(const CtlArgs& args) {
  if (args.words.size() != 3) {
    return fail(&args, {"usage", "herald ctl backup verify DIR", kCtlUsage, {}});
  }
  auto info = server::verify_backup(args.words[2]);
  if (!info.ok()) return local_failure(args, info.status());
  if (args.json) {
    std::cout << json::serialize(info_json(*info)) << "\n";
  } else {
    std::cout << fmt::format("backup in {} is sound: index {} (term {}), {} records, {} bytes\n",
                             info->dir, info->index, info->term, info->records, info->data_bytes);
  }
  return kCtlOk;
}

int run_restore(const CtlArgs& args) {
  const auto data = args.options.find("data");
  const auto id = args.options.find("id");
  if (args.words.size() != 2 || data == args.options.end() || id == args.options.end()) {
    return fail(&args, {"usage", "herald ctl restore DIR --data DATA_DIR --id N", kCtlUsage, {}});
  }
  char* end = nullptr;
  const std::uint64_t node = std::strtoull(id->second.c_str(), &end, 10);
  if (end == id->second.c_str() || *end != '\0' || node == 0) {
    return fail(&args, {"usage", "--id must be a positive integer", kCtlUsage, {}});
  }
  auto info = server::restore_backup(args.words[1], data->second, node);
  if (!info.ok()) return local_failure(args, info.status());
  if (args.json) {
    json::object o = info_json(*info);
    o["data"] = data->second;
    o["id"] = node;
    std::cout << json::serialize(o) << "\n";
  } else {
    std::cout << fmt::format(
        "restored index {} (term {}, {} records) into {} as the only voter, node {}; start it "
        "with: herald serve --id {} --data {} (then add members with herald ctl member add)\n",
        info->index, info->term, info->records, data->second, node, node, data->second);
  }
  return kCtlOk;
}

}  // namespace

int run_ctl(const std::vector<std::string>& argv) {
  for (const std::string& arg : argv) {
    if (arg == "--help" || arg == "-h" || arg == "help") {
      std::cout << kCtlUsageText;
      return kCtlOk;
    }
  }
  auto args = parse_ctl_args(argv, [](const char* name) { return std::getenv(name); });
  if (!args.ok()) {
    std::cerr << kCtlUsageText;
    return fail(nullptr, {"usage", args.status().message(), kCtlUsage, {}});
  }
  if (args->words.front() == "restore") return run_restore(*args);
  if (args->words.front() == "backup" && args->words.size() > 1 && args->words[1] == "verify") {
    return run_verify(*args);
  }
  auto call = http_call_for(*args);
  if (!call.ok()) return fail(&*args, {"usage", call.status().message(), kCtlUsage, {}});
  return run_http(*args, *call);
}

}  // namespace herald::app
