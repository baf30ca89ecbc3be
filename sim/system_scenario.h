// The system scenario (`herald sim --scenario system`): the whole of Herald in the simulator,
// with its devices going through the real device gateway, under every fault the simulator has.
//
// It is the messaging scenario (sim/messaging_scenario.h) with every MessagingOptions turned on:
//  - 3 replicas on odd seeds, 5 on even ones, each incarnation running the production stack (the
//    replica, the workflow engine and runtime, the messaging domain and host) and the server's
//    own Gateway (server/gateway.h) on a SimGatewayNode (sim/gateway_world.h);
//  - kSystemMinUsers..kSystemMaxUsers users with up to kSystemMaxDevicesPerUser devices each
//    (dozens of devices), each device a WebSocket client of the gateway of a random running
//    replica, speaking the JSON frames of docs/protocol.md: `auth` with `since`, `send`, `ack`,
//    `delete`, `read`; the live change stream as `change` frames;
//  - slow readers: devices that stop reading a while, against small flow-control bounds
//    (MessagingOptions::slow_readers), so that the gateway's stream pauses and its slow-consumer
//    closes run;
//  - flaky push and email providers: transient failures, timeouts (kSystemProviderTimeoutChance),
//    429 with a Retry-After, and push tokens that die (push.unregistered, push.invalid_token);
//  - SimCluster's faults at once (crashes and restarts losing unsynced writes, lying disks,
//    failed writes, full disks, damaged records and rebuilds, slow disks with stalls, partitions
//    including one-way ones, message loss, duplication, reordering and delay, leadership
//    transfers), plus jumps of the proposers' wall clocks, more leadership transfers and
//    membership changes (kSystemSpares spare nodes to add; sim/membership_operator.h), asked by
//    an operator;
//  - kSystemKvClients of the cluster's KV clients beside the devices (Put, Delete, compare-and-set
//    and linearizable reads of the key-value metadata store, on random replicas), whose history
//    must be linearizable (sim/linearizability.h);
//  - the messaging scenario's checks, the push invariants and "nothing stuck"
//    (MessagingOptions::system_checks), and the membership operator's checks.
// Thread-safety: none; determinism: as the messaging scenario's.
#pragma once

#include <cstdint>

#include "sim/cluster.h"
#include "sim/messaging_scenario.h"

namespace herald::sim {

inline constexpr std::int64_t kSystemMinUsers = 6;
inline constexpr std::int64_t kSystemMaxUsers = 10;
inline constexpr std::int64_t kSystemMaxDevicesPerUser = 4;
// KV clients (SimCluster's) running beside the devices: their history is checked for
// linearizability.
inline constexpr int kSystemKvClients = 4;
// Spare node ids the membership operator may add (beside the 3 or 5 initial voters).
inline constexpr int kSystemSpares = 2;
// The share of provider calls that time out (MessagingScenario::set_provider_timeout_chance).
inline constexpr double kSystemProviderTimeoutChance = 0.05;

// The cluster options of seed `seed`: the messaging scenario's, with kSystemKvClients clients,
// kSystemSpares spares and slow disks.
[[nodiscard]] ClusterOptions system_cluster_options(std::uint64_t seed, bool verbose);
// Everything on.
[[nodiscard]] MessagingOptions system_messaging_options();

// Runs seed `options.seed` of the system scenario.
[[nodiscard]] MessagingRunResult run_system_scenario(const ClusterOptions& options);

}  // namespace herald::sim
