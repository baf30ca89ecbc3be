// herald: the single binary. Subcommands:
//   herald serve [--config FILE] [--id N] [--data DIR] [--client HOST:PORT] [--peer HOST:PORT]
//                [--peers 1=HOST:PORT,2=HOST:PORT,...] [--cluster-secret-file FILE]
//                [--insecure-peers] [--demo]
//                [--join]
//   herald sim --scenario raft|workflow|messaging|membership|system|results --seeds N [--seed S]
//              [--random-seeds] [--budget-s T]
//              [--raft-log segments] [--plant-bug NAME]   (--plant-bug: test only)
//   herald --version
//   herald ctl [--node HOST:PORT] [--token TOKEN] [--json] COMMAND ...   (app/ctl.h)
// See docs/operations.md.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "app/ctl.h"
#include "app/serve.h"
#include "app/serve_config.h"
#include "base/process.h"
#include "sim/sim_main.h"

#ifdef HERALD_JEMALLOC
// jemalloc's options, read once before the first allocation (MALLOC_CONF in the environment
// overrides them). Freed dirty pages go back to the system after about a second instead of
// jemalloc's ten, and without the lazy (muzzy) stage: a node's resident memory follows what it
// holds, which keeps an idle connected device under 8 KiB (docs/benchmarks.md, "Plots").
extern "C" {
// NOLINTNEXTLINE(readability-identifier-naming): the name is jemalloc's.
extern const char* const malloc_conf;
const char* const malloc_conf = "dirty_decay_ms:1000,muzzy_decay_ms:0";
}
#endif

namespace {

int run_sim_command(herald::sim::SimOptions options, std::uint64_t seed, bool has_seed) {
  if (has_seed) {
    options.seed = seed;
  }
  return herald::sim::run_sim(options);
}

}  // namespace

int main(int argc, char** argv) {
  herald::remember_command_line(argc, argv);
  if (argc >= 2 && std::string_view(argv[1]) == "ctl") {
    // The operator CLI parses its own arguments (flags anywhere on the line).
    return herald::app::run_ctl(std::vector<std::string>(argv + 2, argv + argc));
  }
  CLI::App app{"Herald: a fault-tolerant messaging backend"};
  app.set_version_flag("--version", std::string("herald ") + HERALD_VERSION);
  app.require_subcommand(0, 1);

  herald::app::ServeFlags serve_flags;
  CLI::App* serve = app.add_subcommand("serve", "Run a Herald node");
  serve->add_option("--config", serve_flags.config_file, "TOML configuration file");
  serve->add_option("--id", serve_flags.id, "This node's id (positive)");
  serve->add_option("--data", serve_flags.data_dir, "Data directory");
  serve->add_option("--client", serve_flags.client, "HTTP and WebSocket listen address");
  serve->add_option("--peer", serve_flags.peer, "Peer transport listen address");
  serve->add_option("--peers", serve_flags.peers, "Initial voters: 1=HOST:PORT,2=HOST:PORT,...");
  serve->add_option("--cluster", serve_flags.cluster, "Cluster name (peers must agree)");
  serve->add_option("--log-level", serve_flags.log_level, "trace|debug|info|warn|error");
  serve->add_option("--log-format", serve_flags.log_format,
                    "text (default) or json: one JSON object per line (also HERALD_LOG_FORMAT)");
  serve->add_option("--election-ticks", serve_flags.election_ticks, "Election timeout in ticks");
  serve->add_option("--heartbeat-ticks", serve_flags.heartbeat_ticks, "Heartbeat in ticks");
  serve->add_option("--tick-ms", serve_flags.tick_ms, "Tick length in milliseconds");
  serve->add_option("--admin-token", serve_flags.admin_token,
                    "Credential of the messaging admin API (also HERALD_ADMIN_TOKEN)");
  serve->add_option("--push-journal", serve_flags.push_journal,
                    "Record push notifications to this file, one JSON object per line");
  serve->add_option("--email-journal", serve_flags.email_journal,
                    "Record escalation emails to this file, one JSON object per line");
  serve->add_option("--cluster-secret-file", serve_flags.cluster_secret_file,
                    "File holding the secret peers prove to each other; needed with several "
                    "nodes (also HERALD_CLUSTER_SECRET_FILE)");
  serve->add_option("--apns-key-file", serve_flags.apns_key_file,
                    "The APNs .p8 signing key; the other [apns] keys come from --config (also "
                    "HERALD_APNS_KEY_FILE)");
  serve->add_option("--fcm-service-account-file", serve_flags.fcm_service_account_file,
                    "The FCM service account's key file (also HERALD_FCM_SERVICE_ACCOUNT_FILE)");
  serve->add_option("--webpush-vapid-key-file", serve_flags.webpush_vapid_key_file,
                    "The Web Push VAPID private key; the other [webpush] keys come from --config "
                    "(also HERALD_WEBPUSH_VAPID_KEY_FILE)");
  serve->add_option("--smtp-password-file", serve_flags.smtp_password_file,
                    "File holding the SMTP password (also HERALD_SMTP_PASSWORD_FILE, or the "
                    "password itself in HERALD_SMTP_PASSWORD)");
  for (const herald::app::ProviderSettingName& name : herald::app::kProviderSettingNames) {
    serve->add_option_function<std::string>(
        std::string(name.flag),
        [&serve_flags, key = std::string(name.key)](const std::string& value) {
          serve_flags.provider_settings.emplace_back(key, value);
        },
        fmt::format("[{}] {} (also {})", name.key.substr(0, name.key.find('.')),
                    name.key.substr(name.key.find('.') + 1), name.env));
  }
  serve->add_option("--max-connections", serve_flags.max_connections,
                    "Open client connections (HTTP and WebSocket) at most");
  serve->add_option("--min-free-mb", serve_flags.min_free_mb,
                    "Free-space floor of the data disk in MiB: below it the cluster refuses new "
                    "content (default 1024)");
  serve->add_flag("--join", serve_flags.join,
                  "A new node joining a running cluster: --peers names running members; an "
                  "operator then adds it (herald ctl member add)");
  serve->add_flag("--insecure-peers", serve_flags.insecure_peers,
                  "Run several nodes without a cluster secret: peers are not authenticated");
  serve->add_flag("--demo", serve_flags.demo,
                  "Drive demo traffic (users alice, bob, carol, dave) against this node (one node "
                  "of a cluster)");

  herald::sim::SimOptions sim_options;
  std::uint64_t seed = 0;
  CLI::App* sim = app.add_subcommand("sim", "Run the deterministic simulator");
  sim->add_option("--scenario", sim_options.scenario,
                  "Scenario: raft, workflow, messaging, membership, system or results");
  sim->add_option("--seeds", sim_options.seeds, "Number of seeds to run (1..N)");
  CLI::Option* seed_option = sim->add_option("--seed", seed, "Run exactly this seed");
  sim->add_flag("--random-seeds", sim_options.random_seeds,
                "Run --seeds fresh random seeds (printed first) instead of 1..--seeds");
  double budget_s = 0;
  CLI::Option* budget_option = sim->add_option(
      "--budget-s", budget_s, "Start no new seed after this many seconds (for hour-long runs)");
  sim->add_flag("--verbose", sim_options.verbose, "Print a trace of the run");
  sim->add_option("--raft-log", sim_options.raft_log,
                  "Where replicas keep their raft log: rocksdb (default) or segments");
  // A sim-only flag: `herald serve` has no way to plant a bug (docs/reliability.md).
  sim->add_option("--plant-bug", sim_options.plant_bug,
                  "TEST ONLY: plant a bug in every replica to show the checks catch it: "
                  "commit-without-quorum (default none)");

  CLI11_PARSE(app, argc, argv);

  if (*sim) {
    if (budget_option->count() > 0) {
      sim_options.budget_s = budget_s;
    }
    return run_sim_command(sim_options, seed, seed_option->count() > 0);
  }
  // With no subcommand, `herald` serves with the defaults (a single node).
  return herald::app::run_serve(serve_flags);
}
