// NodeHost: runs one rsm::Node for `herald serve` on real disk, real sockets and real time.
//
// Threads: the replica runs on its own thread (the "raft thread": an io_context that ticks the
// node every tick_ms, feeds it peer messages and runs its Ready loop); the peer transport and
// the HTTP server share a network thread. Requests from the network thread are posted to the
// raft thread; several that queue up while a Ready round is busy (usually its fsync) are taken
// by the next round together, which is what makes group commit happen.
//
// Errors: a fatal status from the replica (I/O error, corruption) logs and terminates the
// process: a replica must not continue past a storage failure. A full disk (kResourceExhausted
// from the engine) halts the replica instead and keeps the process up, since a restart would
// fail again: it stops ticking and taking peer messages, refuses requests with kUnavailable and
// reports itself halted in health(). The free-space floor (rsm::NodeConfig::min_free_bytes,
// measured on data_dir) normally refuses new content long before that.
// Thread-safety: every public method may be called from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "base/status.h"
#include "messaging/domain.h"
#include "messaging/providers.h"
#include "rsm/membership.h"
#include "rsm/node.h"
#include "server/backup.h"
#include "server/node_figures.h"
#include "server/node_metrics.h"
#include "storage/rocksdb_engine.h"

namespace herald::webhooks {
class Poster;
}  // namespace herald::webhooks

namespace herald::server {

inline constexpr int kDefaultTickMs = 10;
// A leadership transfer not seen to complete within this long fails with kTimeout.
inline constexpr std::int64_t kTransferTimeoutMs = 5'000;

struct NodeHostOptions {
  rsm::NodeConfig node;
  std::string data_dir;
  // The raft log in segment files under data_dir/kRaftLogDir (server/replica_rebuild.h;
  // storage::SegmentLog; the default) instead of the engine. A data directory whose log is in
  // the engine moves it into segments when opened with them (rsm::Node::adopt_engine_log); one
  // whose log is in segments is refused when opened with the log in the engine.
  bool segment_log = true;
  // With segment_log: a round's log write runs on a thread of its own (ThreadLogWriter) while
  // the replica applies entries already durable (docs/ARCHITECTURE.md, "Apply behind the
  // append"). Off by default: on two cores it measured no faster (docs/benchmarks.md).
  bool apply_while_writing = false;
  std::string cluster_name = "herald";
  std::string peer_listen;  // host:port
  // Every initial voter's peer address, self included (with node.join: the members to reach,
  // self included). Members added later are reached at the address their change carried
  // (rsm/membership.h), kept in the state space; an address given here wins over a stored one.
  std::map<raft::NodeId, std::string> peers;
  // The secret peers prove to each other (PeerTransportConfig::cluster_secret); required with
  // more than one voter unless insecure_peers.
  std::string cluster_secret;
  bool insecure_peers = false;
  int tick_ms = kDefaultTickMs;
  // Where the leader sends push notifications and escalation emails (borrowed; must outlive the
  // host). Null: a recording provider that only keeps the calls in memory.
  messaging::PushProvider* push = nullptr;
  messaging::EmailProvider* email = nullptr;
  // Where the leader posts webhook deliveries (borrowed; must outlive the host). Null: every
  // attempt fails (retried) until a leader with a client runs it (docs/webhooks.md).
  webhooks::Poster* webhook_poster = nullptr;
};

// Runs on the raft thread after each applied batch, with the change-stream entries it appended
// (maybe none), and on each tick with none; `now_ms` is the node's wall clock. After a snapshot
// was installed it gets one notice with an empty user_id: every user's stream may have moved.
using ChangeListener =
    std::function<void(std::vector<messaging::ChangeNotice> changes, std::int64_t now_ms)>;

// Another node's figures as this node last received them (server/node_figures.h).
struct ReceivedFigures {
  NodeFigures figures;
  MonoMs age_ms = 0;  // since they arrived; stale beyond kNodeFiguresStaleMs
};

// A consistent answer for GET /v1/cluster, assembled on the raft thread.
struct ClusterView {
  raft::NodeStatus self;
  std::map<raft::NodeId, rsm::PeerReport> peers;
  NodeFigures figures;                                   // this node's own, as of now
  std::map<raft::NodeId, ReceivedFigures> peer_figures;  // the other members' latest
  storage::EngineMemory memory;                          // this node's storage engine
  std::uint64_t resident_bytes = 0;  // this process's resident set (0 when unknown)
};

// A cheap liveness view for GET /v1/health, read without waiting for the raft thread.
struct HostHealth {
  bool leader_known = false;      // this replica knows a leader (maybe itself)
  std::int64_t raft_idle_ms = 0;  // since the raft thread last finished a handler
  bool halted = false;            // the replica stopped on a full disk (NodeHost: Errors)
  std::string halt_reason;
  std::vector<raft::NodeId> disk_alarms;  // nodes whose disk alarm stands, ascending
};

// Runs on the raft thread for each ephemeral event another node relayed (NodeHost::broadcast).
using EphemeralListener =
    std::function<void(raft::NodeId from, const std::string& kind, const std::string& payload)>;

class NodeHost {
 public:
  // Opens RocksDB in data_dir, starts the transport and the raft thread. With peers, a replica
  // whose data fails a checksum (found now, or requested by an earlier run that found it) is
  // rebuilt empty first (server/replica_rebuild.h); the only replica is not. Errors:
  // kCorruption when the data cannot be opened or rebuilt, the engine's and transport's.
  [[nodiscard]] static Result<std::unique_ptr<NodeHost>> start(const NodeHostOptions& options);
  ~NodeHost();
  NodeHost(const NodeHost&) = delete;
  NodeHost& operator=(const NodeHost&) = delete;

  // Stops ticking, fails pending requests with kAborted, closes the transport and the engine.
  void stop();

  // Stamps the command's wall time and proposes it. `done` runs on the raft thread.
  void propose(rsmpb::Command command, rsm::ProposeCallback done);
  // `done(status, engine)` runs on the raft thread once a linearizable read may be served.
  void read(std::function<void(Status, const storage::Engine&)> done);
  // Runs `fn` on the raft thread with a consistent view of the replica.
  void inspect(std::function<void(const ClusterView&)> fn);
  // Installs the listener for applied changes (replacing any earlier one). Thread-safe.
  void set_change_listener(ChangeListener listener);
  // Runs `fn` on the raft thread.
  void post(std::function<void()> fn);

  // The operator's membership change (rsm::Node::change_membership: the same answers). `done`
  // runs on the raft thread once the change is applied here, or with the refusal.
  void change_membership(const rsm::MemberChange& change, std::function<void(Status)> done);
  // Hands leadership to voter `transferee` (relayed to the leader when this replica is not it).
  // `done(ok)` once this replica sees `transferee` lead; kNotFound when it is not a voter,
  // kUnavailable when no leader is known, kTimeout after kTransferTimeoutMs. Runs on the raft
  // thread.
  void transfer_leadership(raft::NodeId transferee, std::function<void(Status)> done);
  // An online backup into `dir` on this node's disk (server/backup.h): after a linearizable read
  // barrier, from a point-in-time snapshot of the state, written on a thread of its own while
  // the replica serves. `done` runs on that thread. kFailedPrecondition while another backup
  // runs, and write_backup()'s errors.
  void backup(std::string dir, std::function<void(Result<BackupInfo>)> done);
  // A read outside the apply path found `damage` in this replica's stored data. On a checksum
  // failure the replica stops serving and rebuilds as when the apply path finds damage, unless
  // it is the only voter or was rebuilt less than kMinRebuildIntervalMs ago
  // (server/replica_rebuild.h); otherwise the damage is logged once. Thread-safe.
  void report_damage(const Status& damage);
  // Sends an ephemeral event to every other voter, best-effort (a peer that is down or whose
  // queue is full misses it). Thread-safe.
  void broadcast(std::string kind, std::string payload);
  // Installs the listener for ephemeral events from other nodes (replacing any). Thread-safe.
  void set_ephemeral_listener(EphemeralListener listener);

  // Thread-safe and non-blocking.
  [[nodiscard]] HostHealth health() const;

  // The node's metrics (docs/metrics.md); adapters feed them from any thread.
  [[nodiscard]] NodeMetrics& metrics();
  // `done(text)` gets the Prometheus exposition of every metric, with the replica's counters and
  // status copied in on the raft thread (after the current round); it runs there.
  void scrape(std::function<void(std::string)> done);

  // The engine, for stale reads (RocksDB reads are thread-safe).
  [[nodiscard]] const storage::Engine& engine() const;
  [[nodiscard]] raft::NodeId id() const;
  // The names of the registered workflow types (fixed at start).
  [[nodiscard]] const std::vector<std::string>& workflow_types() const;

 private:
  struct Impl;
  [[nodiscard]] static Result<std::unique_ptr<NodeHost>> start_replica(
      const NodeHostOptions& options);
  explicit NodeHost(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace herald::server
