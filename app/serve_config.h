// ServeConfig: everything `herald serve` needs, from flags or a TOML file (--config FILE).
//
// TOML keys mirror the flags (docs/operations.md):
//   id = 1
//   data = "./herald-data"
//   client = "127.0.0.1:7400"
//   peer = "127.0.0.1:7401"
//   peers = "1=127.0.0.1:7401,2=127.0.0.1:7411,3=127.0.0.1:7421"   # or a table { 1 = "..." }
//   cluster = "herald"
//   log_level = "info"
//   tick_ms = 10
//   election_ticks = 6
//   heartbeat_ticks = 2
//   admin_token = "..."            # the messaging admin API's credential; empty disables it
//   push_journal = "push.jsonl"    # record push notifications as JSON lines (no APNs/FCM yet)
//   email_journal = "email.jsonl"  # record escalation emails as JSON lines
//   cluster_secret_file = "/etc/herald/cluster-secret"  # the secret peers prove to each other
//   insecure_peers = false         # true: several nodes without a secret (not authenticated)
//   min_free_mb = 1024             # free-space floor of the data disk (docs/operations.md)
//   max_connections = 100000       # open client connections (HTTP and WebSocket) at most
//   [devices]                      # limits on device connections (docs/protocol.md, "Limits")
//   requests_per_s = 100           # per device, after auth; 0: unlimited
//   request_burst = 400
//   auths_per_s_per_address = 50   # auth frames per client IP; 0: unlimited
//   auth_burst_per_address = 500
//   max_connections_per_address = 1024   # 0: unlimited
//   max_sessions_per_device = 4
//   auth_deadline_ms = 10000
//   typing_relay_interval_ms = 2000
//   stalled_reader_ms = 30000      # a stream paused on a full queue this long closes (1008)
// Flags given on the command line override the file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "base/status.h"
#include "server/gateway.h"

namespace herald::app {

inline constexpr std::uint64_t kDefaultMinFreeMb = 1024;
// The largest floor accepted (1 PiB in MiB): a bigger figure is a typo, not a disk.
inline constexpr std::uint64_t kMaxMinFreeMb = 1ULL << 30U;
// Open client connections at most, by default: a node holds 50,000 connected devices with room
// to spare. Each needs a file descriptor; `herald serve` raises its descriptor limit to fit
// (docs/operations.md, "Connections").
inline constexpr std::size_t kDefaultMaxConnections = 100'000;
// The largest max_connections accepted: beyond it a figure is a typo (the kernel's own ceiling on
// descriptors per process, fs.nr_open, defaults to 1,048,576).
inline constexpr std::size_t kMaxMaxConnections = 1'000'000;

struct ServeConfig {
  std::uint64_t id = 1;
  std::string data_dir = "./herald-data";
  std::string client = "127.0.0.1:7400";
  std::string peer = "127.0.0.1:7401";
  std::map<std::uint64_t, std::string> peers;  // empty: a single node made of just this one
  std::string cluster = "herald";
  std::string log_level = "info";
  int tick_ms = 10;
  int election_ticks = 6;
  int heartbeat_ticks = 2;
  std::string admin_token;    // empty: the admin API answers 403
  std::string push_journal;   // empty: pushes are kept in memory only
  std::string email_journal;  // empty: emails are kept in memory only
  // The file holding the cluster secret (docs/operations.md). Required with more than one voter
  // unless insecure_peers; a single node needs none.
  std::string cluster_secret_file;
  bool insecure_peers = false;
  // Below this much free space on the data disk (MiB), the cluster refuses new content.
  std::uint64_t min_free_mb = kDefaultMinFreeMb;
  std::size_t max_connections = kDefaultMaxConnections;  // 1..kMaxMaxConnections
  server::GatewayLimits device_limits;
};

// The cluster secret read from its file, and whether the file's mode lets others than its owner
// read it (worth a warning, not a refusal).
struct ClusterSecret {
  std::string bytes;
  bool readable_by_others = false;
};

// Parses "1=host:port,2=host:port". kInvalidArgument names the offending item.
[[nodiscard]] Result<std::map<std::uint64_t, std::string>> parse_peers(const std::string& spec);
// Loads a TOML file over `config`. kInvalidArgument / kNotFound with the file's error.
[[nodiscard]] Status load_toml(const std::string& path, ServeConfig& config);
// Loads TOML text over `config`, as load_toml() does with a file's bytes; `source` names the text
// in errors. kInvalidArgument for text that is not TOML or a key of the wrong type or range. Any
// bytes are accepted as input; never throws.
[[nodiscard]] Status load_toml_text(std::string_view text, const std::string& source,
                                    ServeConfig& config);
// Checks the combination (id among peers, sane timings, a secret file or insecure_peers with
// more than one voter, not both). Fills peers for a single node.
[[nodiscard]] Status finalize(ServeConfig& config);
// Reads the secret from `path`: the file's bytes, without trailing whitespace (so that a line
// written by `base64` works). Errors: kNotFound when the file cannot be read; kInvalidArgument,
// naming the file, when it is larger than kMaxClusterSecretFileBytes or the secret is shorter
// than server::kMinClusterSecretBytes.
[[nodiscard]] Result<ClusterSecret> load_cluster_secret(const std::string& path);

// A secret file larger than this is refused (it is not a secret file).
inline constexpr std::size_t kMaxClusterSecretFileBytes = 4096;

}  // namespace herald::app
