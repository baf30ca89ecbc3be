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
// Flags given on the command line override the file.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "base/status.h"

namespace herald::app {

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
};

// Parses "1=host:port,2=host:port". kInvalidArgument names the offending item.
[[nodiscard]] Result<std::map<std::uint64_t, std::string>> parse_peers(const std::string& spec);
// Loads a TOML file over `config`. kInvalidArgument / kNotFound with the file's error.
[[nodiscard]] Status load_toml(const std::string& path, ServeConfig& config);
// Checks the combination (id among peers, sane timings). Fills peers for a single node.
[[nodiscard]] Status finalize(ServeConfig& config);

}  // namespace herald::app
