#include "app/serve.h"

#include <signal.h>
#include <spdlog/spdlog.h>

#include <cstdio>

#include "base/log.h"
#include "server/http_server.h"
#include "server/kv_api.h"
#include "server/node_host.h"
#include "server/workflow_api.h"

namespace herald::app {

namespace {

constexpr int kExitConfig = 2;
constexpr int kExitRuntime = 1;
constexpr std::size_t kHttpIoThreads = 1;

Result<ServeConfig> resolve(const ServeFlags& flags) {
  ServeConfig config;
  if (!flags.config_file.empty()) {
    HERALD_RETURN_IF_ERROR(load_toml(flags.config_file, config));
  }
  if (flags.id) config.id = *flags.id;
  if (flags.data_dir) config.data_dir = *flags.data_dir;
  if (flags.client) config.client = *flags.client;
  if (flags.peer) config.peer = *flags.peer;
  if (flags.cluster) config.cluster = *flags.cluster;
  if (flags.log_level) config.log_level = *flags.log_level;
  if (flags.election_ticks) config.election_ticks = *flags.election_ticks;
  if (flags.heartbeat_ticks) config.heartbeat_ticks = *flags.heartbeat_ticks;
  if (flags.tick_ms) config.tick_ms = *flags.tick_ms;
  if (flags.peers) {
    HERALD_ASSIGN_OR_RETURN(config.peers, parse_peers(*flags.peers));
  }
  HERALD_RETURN_IF_ERROR(finalize(config));
  return config;
}

server::NodeHostOptions host_options(const ServeConfig& config) {
  server::NodeHostOptions o;
  o.node.id = config.id;
  for (const auto& [id, address] : config.peers) {
    o.node.initial_voters.push_back(id);
  }
  o.node.election_ticks = config.election_ticks;
  o.node.heartbeat_ticks = config.heartbeat_ticks;
  o.node.client_address = config.client;
  o.data_dir = config.data_dir;
  o.cluster_name = config.cluster;
  o.peer_listen = config.peer;
  o.peers = config.peers;
  o.tick_ms = config.tick_ms;
  return o;
}

// Blocks SIGTERM and SIGINT in every thread (call before starting any) and returns the set.
sigset_t block_termination_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

}  // namespace

int run_serve(const ServeFlags& flags) {
  auto config = resolve(flags);
  if (!config.ok()) {
    std::fprintf(stderr, "herald serve: %s\n", config.status().to_string().c_str());
    return kExitConfig;
  }
  init_logging(config->log_level, config->id);
  const sigset_t signals = block_termination_signals();

  auto host = server::NodeHost::start(host_options(*config));
  if (!host.ok()) {
    spdlog::critical("cannot start node {}: {}", config->id, host.status().to_string());
    return kExitRuntime;
  }
  server::KvApi kv_api(host->get());
  server::WorkflowApi workflow_api(host->get());
  server::HttpServerConfig http_config;
  http_config.listen = config->client;
  server::HttpServer http(http_config, [&kv_api, &workflow_api](server::HttpRequest&& request,
                                                                server::Responder respond) {
    if (!workflow_api.handle(request, respond)) {
      kv_api.handle(std::move(request), std::move(respond));
    }
  });
  if (const Status s = http.run(kHttpIoThreads); !s.ok()) {
    spdlog::critical("cannot serve clients on {}: {}", config->client, s.to_string());
    (*host)->stop();
    return kExitRuntime;
  }
  spdlog::info("node {} serving clients on {} and peers on {}, data in {}", config->id,
               config->client, config->peer, config->data_dir);

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  spdlog::info("signal {} received: shutting down", signal_number);
  http.stop();
  (*host)->stop();
  return 0;
}

}  // namespace herald::app
