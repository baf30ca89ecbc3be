// `herald ctl`: the operator's command line against a running node's HTTP API
// (docs/operations.md, "herald ctl"; the endpoints are in docs/api-http.md).
//
//   herald ctl [--node [http[s]://]HOST:PORT] [--ca-file FILE] [--token TOKEN] [--json]
//              [--timeout-ms N] COMMAND
//     cluster status
//     member add ID PEER_ADDRESS | member promote ID | member remove ID
//     leader transfer ID
//     backup DIR            (alias: snapshot DIR) an online backup, on the node's disk
//     backup verify DIR     checks a backup's checksums, locally
//     restore DIR --data DATA_DIR --id N   makes DATA_DIR a new one-node cluster, locally
//     workflows list --type T [--state S] [--limit N] | workflows show ID [--history]
//     message timeline CONVERSATION SEQ
//     saga retry ID | saga resolve ID
//
// --node defaults to $HERALD_NODE, else 127.0.0.1:7400; --token to $HERALD_ADMIN_TOKEN (the
// node's --admin-token); --ca-file to $HERALD_CA_FILE. A node whose client port serves HTTPS
// ([tls]) is named https://HOST:PORT, or given with --ca-file (the CAs to trust instead of the
// system's); its certificate must then verify and name HOST. Flags may come anywhere on the line.
// With --json every command prints one JSON value on stdout; otherwise a short human summary.
// Errors go to stderr as one line, "herald ctl: <code>: <message>", with the exit codes below.
//
// Parsing and the HTTP request each command makes are pure (parse_ctl_args, http_call_for), so
// they are unit-tested without a node; run_ctl() does the I/O. Thread-safety: none needed.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "base/status.h"

namespace herald::app {

// Exit codes of `herald ctl`.
inline constexpr int kCtlOk = 0;
inline constexpr int kCtlFailed = 1;       // the node (or a local restore) refused or failed
inline constexpr int kCtlUsage = 2;        // the command line is wrong
inline constexpr int kCtlUnreachable = 3;  // no answer from the node (connection, timeout)
// TLS failed: the node's certificate was refused (not from a trusted CA, not for the host named,
// or the node does not speak TLS), or the CA file does not load. Nothing was sent.
inline constexpr int kCtlTlsFailed = 4;

inline constexpr char kCtlDefaultNode[] = "127.0.0.1:7400";
inline constexpr char kCtlNodeEnv[] = "HERALD_NODE";
inline constexpr char kCtlTokenEnv[] = "HERALD_ADMIN_TOKEN";
inline constexpr char kCtlCaFileEnv[] = "HERALD_CA_FILE";
// Bound on one request, by default. A membership change or a backup may take a while: the node
// answers once it is applied (or written).
inline constexpr std::uint32_t kCtlDefaultTimeoutMs = 30'000;
inline constexpr std::uint32_t kCtlMaxTimeoutMs = 3'600'000;

inline constexpr char kCtlUsageText[] =
    "usage: herald ctl [--node [http[s]://]HOST:PORT] [--ca-file FILE] [--token TOKEN] [--json]\n"
    "                  [--timeout-ms N] COMMAND\n"
    "  cluster status\n"
    "  member add ID PEER_ADDRESS | member promote ID | member remove ID\n"
    "  leader transfer ID\n"
    "  backup DIR | snapshot DIR | backup verify DIR\n"
    "  restore DIR --data DATA_DIR --id N\n"
    "  workflows list --type T [--state S] [--limit N] | workflows show ID [--history]\n"
    "  message timeline CONVERSATION SEQ\n"
    "  saga retry ID | saga resolve ID\n";

struct CtlArgs {
  std::string host = "127.0.0.1";
  std::uint16_t port = 7400;
  bool https = false;   // the node's client port serves HTTPS
  std::string ca_file;  // with https: the CAs to trust; empty: the system's
  std::string token;
  bool json = false;
  std::uint32_t timeout_ms = kCtlDefaultTimeoutMs;
  std::vector<std::string> words;  // the command and its positional arguments
  std::map<std::string, std::string, std::less<>>
      options;           // --type, --state, --limit, --data, --id
  bool history = false;  // workflows show --history
};

// One HTTP request a command makes.
struct CtlHttpCall {
  std::string method;
  std::string target;
  std::string body;
};

// Reads an environment variable (std::getenv in production; a map in tests).
using CtlEnv = std::function<const char*(const char*)>;

// Parses the arguments after `ctl`. kInvalidArgument with a message for the user: an unknown
// flag, a flag without its value, a malformed --node or --timeout-ms, --ca-file with an http://
// node.
[[nodiscard]] Result<CtlArgs> parse_ctl_args(const std::vector<std::string>& argv,
                                             const CtlEnv& env);
// The request an HTTP command makes. kInvalidArgument for an unknown command or wrong arguments
// (a node id that is not a positive integer, a missing --type, ...); kNotFound for the local
// commands (restore, backup verify), which make none.
[[nodiscard]] Result<CtlHttpCall> http_call_for(const CtlArgs& args);

// Runs `herald ctl` with the arguments after `ctl`; returns the exit code.
[[nodiscard]] int run_ctl(const std::vector<std::string>& argv);

}  // namespace herald::app
