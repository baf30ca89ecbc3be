// `herald serve`: a node with its HTTP API, until SIGTERM or SIGINT; with --demo, also demo
// traffic against it (app/demo.h).
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "app/serve_config.h"

namespace herald::app {

// Command-line values; an unset one leaves the config file's (or the default) value.
struct ServeFlags {
  std::string config_file;
  std::optional<std::uint64_t> id;
  std::optional<std::string> data_dir;
  std::optional<std::string> client;
  std::optional<std::string> peer;
  std::optional<std::string> peers;
  std::optional<std::string> cluster;
  std::optional<std::string> log_level;
  std::optional<std::string> log_format;
  std::optional<int> election_ticks;
  std::optional<int> heartbeat_ticks;
  std::optional<int> tick_ms;
  std::optional<std::string> admin_token;
  std::optional<std::string> push_journal;
  std::optional<std::string> email_journal;
  std::optional<std::string> cluster_secret_file;
  // The providers' secret files ([apns] key_file, [fcm] service_account_file, [webpush]
  // vapid_key_file, [smtp] password_file); the other provider keys come from the configuration
  // file.
  std::optional<std::string> apns_key_file;
  std::optional<std::string> fcm_service_account_file;
  std::optional<std::string> webpush_vapid_key_file;
  std::optional<std::string> smtp_password_file;
  // The other provider keys given by flags (kProviderSettingNames): (TOML key, value), in the
  // order given.
  std::vector<std::pair<std::string, std::string>> provider_settings;
  std::optional<std::uint64_t> min_free_mb;
  std::optional<std::size_t> max_connections;
  // Let a cluster of several nodes run without a cluster secret (peers not authenticated).
  bool insecure_peers = false;
  // A brand-new node joining a running cluster (ServeConfig::join).
  bool join = false;
  // Run demo traffic against the node (app/demo.h); generates an admin token and journals in the
  // data directory when none are configured. Single node only.
  bool demo = false;
};

// Runs a node until a termination signal. Returns the process exit code; configuration errors
// are printed to stderr with exit code 2.
[[nodiscard]] int run_serve(const ServeFlags& flags);

}  // namespace herald::app
