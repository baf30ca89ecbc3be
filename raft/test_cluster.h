// TestCluster: an in-process Raft cluster over MemoryLogStorage, for raft/ tests only.
//
// Each node follows the caller's protocol of raw_node.h exactly: persist a Ready (snapshot,
// entries, hard state), queue its messages on the network, apply committed entries (config
// changes through apply_conf_change), then advance. The state machine is the list of applied
// entries, so state machine safety can be checked by comparing lists. A snapshot's "data" is a
// copy of the applied list, kept in a cluster-wide table keyed by (index, term) — what rsm/
// would stream in chunks.
//
// Bootstrapping: the first add_nodes() call forms the initial voters from a snapshot at index 1,
// term 1 (so every log starts at 2); nodes added later start empty and learn the membership from
// the leader's snapshot. crash() loses everything not yet persisted through a Ready.
// When `trace` is set, every action is described there deterministically (scenario tests).
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "raft/memory_storage.h"
#include "raft/raw_node.h"

namespace herald::raft::testing {

struct ClusterOptions {
  int election_ticks = kDefaultElectionTicks;
  int heartbeat_ticks = kDefaultHeartbeatTicks;
  bool pre_vote = true;
  bool check_quorum = true;
  std::uint64_t max_msg_bytes = kDefaultMaxMsgBytes;
  std::size_t max_inflight_msgs = kDefaultMaxInflightMsgs;
  std::uint64_t max_inflight_bytes = kDefaultMaxInflightBytes;
  std::uint64_t max_uncommitted_bytes = kDefaultMaxUncommittedBytes;
  std::uint64_t seed = 1;
  // Config::planted_commit_without_quorum on every node (test only).
  bool planted_commit_without_quorum = false;
};

struct AppliedEntry {
  Index index = 0;
  Term term = 0;
  std::string data;
  bool operator==(const AppliedEntry&) const = default;
};

[[nodiscard]] std::string describe(const raftpb::Message& m);
[[nodiscard]] std::string describe(const raftpb::Entry& e);
[[nodiscard]] std::string describe(const raftpb::ConfState& cs);

class TestCluster {
 public:
  explicit TestCluster(ClusterOptions options = {}, std::ostream* trace = nullptr);

  // Adds `count` nodes with the next ids; see the bootstrapping rule above.
  void add_nodes(std::size_t count);
  [[nodiscard]] std::vector<NodeId> ids() const;
  [[nodiscard]] bool is_up(NodeId id) const;
  [[nodiscard]] RawNode& node(NodeId id);
  [[nodiscard]] MemoryLogStorage& storage(NodeId id);
  [[nodiscard]] const std::vector<AppliedEntry>& applied(NodeId id) const;

  // Handles one Ready of `id` (if any); returns whether there was one.
  bool process_ready(NodeId id);
  // Steps every queued message addressed to `id` (dropping those across a partition).
  void deliver_to(NodeId id);
  void drop_to(NodeId id);
  // Processes Readies and delivers messages until nothing is left; returns the rounds used.
  std::size_t stabilize(std::size_t max_rounds = 1000);
  void tick(NodeId id, int ticks = 1);
  void tick_all(int ticks = 1);

  // Network faults. partition(side) splits the cluster into `side` and everyone else.
  void partition(const std::set<NodeId>& side);
  void heal();
  [[nodiscard]] bool connected(NodeId a, NodeId b) const;
  [[nodiscard]] std::deque<raftpb::Message>& network() { return network_; }
  // Steps `m` at its recipient, or loses it (partition, node down). Like rsm/, the cluster
  // reports the outcome of every MSG_SNAP "stream" to the sender with report_snapshot().
  void deliver(const raftpb::Message& m);
  void lose(const raftpb::Message& m);

  void crash(NodeId id);
  void restart(NodeId id);
  // Takes a snapshot of `id`'s applied state at `index` (<= applied) and compacts its log.
  void compact(NodeId id, Index index);

  // The leader with the highest term among live nodes, or kNoNode.
  [[nodiscard]] NodeId leader() const;
  void check_invariants() const;

 private:
  struct Node {
    std::unique_ptr<MemoryLogStorage> storage;
    std::unique_ptr<RawNode> raw;
    std::vector<AppliedEntry> applied;  // the state machine; survives crashes (it is durable)
    std::vector<std::pair<Index, raftpb::ConfState>> conf_history;  // applied memberships
  };
  void start(NodeId id);
  void persist(Node& n, NodeId id, const Ready& rd);
  void apply(Node& n, NodeId id, const Ready& rd);
  void trace_ready(NodeId id, const Ready& rd);
  [[nodiscard]] raftpb::ConfState conf_at(const Node& n, Index index) const;
  [[nodiscard]] Node& at(NodeId id);
  [[nodiscard]] const Node& at(NodeId id) const;

  ClusterOptions options_;
  std::ostream* trace_;
  std::map<NodeId, Node> nodes_;
  std::deque<raftpb::Message> network_;
  std::map<NodeId, int> side_;  // partition side per node; empty when healed
  std::map<std::pair<Index, Term>, std::vector<AppliedEntry>> snapshots_;
};

}  // namespace herald::raft::testing
