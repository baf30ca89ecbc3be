// Cluster: real `herald serve` processes on 127.0.0.1 for end-to-end tests.
//
// A cluster of N nodes gets free client and peer ports, a temporary root directory with one data
// directory, log file and push journal per node, and the messaging admin token. Nodes are started
// with fork + exec of the herald binary (herald_binary(), set by the test's main), killed with
// SIGKILL (a crash: the data directory stays), restarted on the same data, or stopped with
// SIGTERM. Every child is also bound to the test process with PR_SET_PDEATHSIG, so a crashed test
// leaves no node behind.
//
// Ownership: the Cluster owns its processes and its directory. The destructor kills every live
// node and removes the directory, unless HERALD_E2E_KEEP is set in the environment (then it
// prints where the logs are). Thread-safety: none; one thread drives a cluster.
// Errors: kIOError when a process or a file cannot be made; kTimeout when a bounded wait ends.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "client/admin_client.h"

namespace herald::e2e {

// The admin token every node of a test cluster is started with.
inline constexpr char kAdminToken[] = "e2e-admin-token";
// Bound on one GET /v1/cluster while looking for the leader.
inline constexpr std::uint32_t kClusterProbeTimeoutMs = 1'000;
// Pause between two probes of the cluster or of a child's exit.
inline constexpr std::uint32_t kPollIntervalMs = 20;
// Bound on a SIGTERM'd node's exit; it is SIGKILLed after it.
inline constexpr std::uint32_t kStopTimeoutMs = 10'000;
// Nodes per test cluster, at most.
inline constexpr std::size_t kMaxNodes = 7;
// Random bytes behind a test cluster's secret (written as twice as many hex digits).
inline constexpr std::size_t kSecretBytes = 32;

// The herald binary the nodes run (from the test's command line or HERALD_BINARY).
void set_herald_binary(std::string path);
[[nodiscard]] const std::string& herald_binary();

// One push notification as a node's push journal recorded it.
struct PushRecord {
  std::string user_id;
  std::string device_id;
  std::string conversation_id;
  std::uint64_t seq = 0;
  std::string idempotency_key;
  bool ok = false;
};

class Cluster {
 public:
  struct Node {
    std::uint64_t id = 0;
    std::uint16_t client_port = 0;
    std::uint16_t peer_port = 0;
    std::string data_dir;
    std::string log_path;
    std::string push_journal;
    std::string secret_file;  // --cluster-secret-file; empty: started without one
    pid_t pid = -1;           // -1 while not running
  };

  // A fresh random cluster secret.
  [[nodiscard]] static std::string random_secret();
  // Prepares `size` nodes (1..kMaxNodes) without starting them, all holding one fresh secret.
  [[nodiscard]] static Result<std::unique_ptr<Cluster>> create(std::size_t size);
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  // From its next start on, node `id` uses `secret` as its cluster secret instead of the
  // cluster's (written to a file of its own); an empty `secret` starts it without any.
  [[nodiscard]] Status set_secret(std::uint64_t id, const std::string& secret);
  // Only nodes 1..count bootstrap the cluster (their --peers lists just them); every node above
  // starts with --join and --peers listing all nodes, and waits until an operator adds it
  // (herald ctl member add). Default: every node is an initial member.
  void set_initial_members(std::size_t count);
  // The arguments `herald ctl` needs to reach node `id` with the operator credential (over HTTPS,
  // trusting set_client_tls()'s CAs, when it is set).
  [[nodiscard]] std::vector<std::string> ctl_args(std::uint64_t id) const;
  // The root directory of the cluster's files (for backups and other scratch files).
  [[nodiscard]] const std::string& root() const { return root_; }

  // From their next start on, every node reads `toml` as its --config file (flags still override
  // it). Empty: no config file.
  [[nodiscard]] Status set_config(const std::string& toml);

  // How the test's admin clients and probes reach the client ports: over HTTPS trusting `tls`'s
  // CAs (for nodes whose configuration has [tls]), or in plaintext (nullopt, the default).
  void set_client_tls(std::optional<client::ClientTls> tls) { client_tls_ = std::move(tls); }
  // From their next start on, nodes run without a push journal: platforms without a client then
  // have no provider (push.no_provider) instead of the recording provider.
  void set_push_journal(bool on) { push_journal_ = on; }

  // Starts every node that is not running.
  [[nodiscard]] Status start_all();
  // Starts node `id` on its data directory. Precondition: it is not running.
  [[nodiscard]] Status start(std::uint64_t id);
  // SIGKILL, and waits for the process to be gone. Does nothing when it is not running.
  void kill(std::uint64_t id);
  // SIGTERM, and waits up to kStopTimeoutMs for a clean exit (SIGKILL after it). kTimeout when it
  // had to be killed, kIOError when it exited with a non-zero status.
  [[nodiscard]] Status stop(std::uint64_t id);
  // Waits up to `timeout_ms` for node `id` to exit on its own and returns its exit status (-1
  // when a signal ended it); kTimeout while it still runs, kInvalidArgument when it is not
  // running.
  [[nodiscard]] Result<int> exit_status(std::uint64_t id, std::uint32_t timeout_ms);
  // True while node `id`'s process runs (a node that exited on its own is reaped here).
  [[nodiscard]] bool alive(std::uint64_t id);

  // The id of the leader every live node reports, once they agree on a live one within
  // `timeout_ms`; kTimeout otherwise.
  [[nodiscard]] Result<std::uint64_t> leader(std::uint32_t timeout_ms);
  // The raft term each node reports (GET /v1/cluster), in id order; 0 for a node that does not
  // answer.
  [[nodiscard]] std::vector<std::uint64_t> terms() const;
  // A live node other than `id` (the lowest id), or 0 when there is none.
  [[nodiscard]] std::uint64_t other_live_node(std::uint64_t id);

  [[nodiscard]] const Node& node(std::uint64_t id) const;
  [[nodiscard]] std::size_t size() const { return nodes_.size(); }
  // An admin client of node `id`.
  [[nodiscard]] client::AdminClient admin(std::uint64_t id) const;
  // An admin client of the node on `client_port` for probes: kClusterProbeTimeoutMs.
  [[nodiscard]] client::AdminClient prober(std::uint16_t client_port) const;
  // The pushes node `id` journaled so far, in order. A line that does not parse is an error.
  [[nodiscard]] Result<std::vector<PushRecord>> pushes(std::uint64_t id) const;
  // The last `bytes` of node `id`'s log, for failure messages.
  [[nodiscard]] std::string log_tail(std::uint64_t id, std::size_t bytes = 2000) const;

 private:
  Cluster() = default;
  Node& mutable_node(std::uint64_t id);
  // "1=127.0.0.1:p1,2=127.0.0.1:p2,..." for the first `count` nodes.
  [[nodiscard]] std::string peers_spec(std::size_t count) const;
  // Writes `secret` to `path`, readable by its owner only.
  [[nodiscard]] static Status write_secret_file(const std::string& path, const std::string& secret);
  // The leader node `id` reports; 0 when none is known or the node does not answer.
  [[nodiscard]] std::uint64_t reported_leader(std::uint64_t id) const;

  std::string root_;
  std::string config_file_;  // empty: none
  std::optional<client::ClientTls> client_tls_;
  bool push_journal_ = true;
  std::size_t initial_members_ = kMaxNodes;
  std::vector<Node> nodes_;  // nodes_[i].id == i + 1
};

}  // namespace herald::e2e
