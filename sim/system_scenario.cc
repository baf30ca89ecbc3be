#include "sim/system_scenario.h"

namespace herald::sim {

ClusterOptions system_cluster_options(std::uint64_t seed, bool verbose) {
  ClusterOptions options = messaging_cluster_options(seed, verbose);
  options.clients = kSystemKvClients;
  options.spares = kSystemSpares;
  options.slow_disks = true;
  return options;
}

MessagingOptions system_messaging_options() {
  return MessagingOptions{
      .gateway = true,
      .min_users = kSystemMinUsers,
      .max_users = kSystemMaxUsers,
      .max_devices_per_user = kSystemMaxDevicesPerUser,
      .provider_faults = true,
      .clock_jumps = true,
      .leadership_transfers = true,
      .membership_changes = true,
      .slow_readers = true,
      .system_checks = true,
  };
}

MessagingRunResult run_system_scenario(const ClusterOptions& options) {
  MessagingScenario scenario(options, system_messaging_options());
  scenario.set_provider_timeout_chance(kSystemProviderTimeoutChance);
  return scenario.run();
}

}  // namespace herald::sim
