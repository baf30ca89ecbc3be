#include "raft/test_cluster.h"

#include <algorithm>
#include <sstream>

namespace herald::raft::testing {
namespace {

constexpr Index kBootstrapIndex = 1;
constexpr Term kBootstrapTerm = 1;

std::string ids_text(const google::protobuf::RepeatedField<std::uint64_t>& ids) {
  std::string out = "[";
  for (int k = 0; k < ids.size(); ++k) out += (k ? " " : "") + std::to_string(ids[k]);
  return out + "]";
}

const char* conf_change_name(raftpb::ConfChangeType type) {
  switch (type) {
    case raftpb::CONF_CHANGE_ADD_VOTER: return "add-voter";
    case raftpb::CONF_CHANGE_ADD_LEARNER: return "add-learner";
    case raftpb::CONF_CHANGE_REMOVE_NODE: return "remove-node";
    default: return "?";
  }
}

}  // namespace

std::string describe(const raftpb::ConfState& cs) {
  return "voters=" + ids_text(cs.voters()) + " learners=" + ids_text(cs.learners());
}

std::string describe(const raftpb::Entry& e) {
  std::ostringstream out;
  out << e.term() << "/" << e.index();
  if (e.type() == raftpb::ENTRY_CONF_CHANGE) {
    raftpb::ConfChange cc;
    if (cc.ParseFromString(e.data())) {
      out << " conf:" << conf_change_name(cc.type()) << " " << cc.node_id();
    }
  } else {
    out << " \"" << e.data() << "\"";
  }
  return out.str();
}

std::string describe(const raftpb::Message& m) {
  std::ostringstream out;
  std::string type = raftpb::MessageType_Name(m.type());
  if (type.starts_with("MSG_")) type = type.substr(4);
  out << m.from() << "->" << m.to() << " " << type << " term=" << m.term();
  if (m.log_term() != 0) out << " log_term=" << m.log_term();
  if (m.index() != 0) out << " index=" << m.index();
  if (m.commit() != 0) out << " commit=" << m.commit();
  if (m.reject()) out << " REJECT hint=" << m.reject_hint() << " hint_term=" << m.hint_term();
  if (!m.context().empty()) out << " ctx=\"" << m.context() << "\"";
  if (m.transferee() != 0) out << " transferee=" << m.transferee();
  if (m.type() == raftpb::MSG_SNAP) {
    out << " snapshot=" << m.snapshot().term() << "/" << m.snapshot().index() << " "
        << describe(m.snapshot().conf_state());
  }
  if (m.entries_size() > 0) {
    out << " entries=[";
    for (int k = 0; k < m.entries_size(); ++k) out << (k ? ", " : "") << describe(m.entries(k));
    out << "]";
  }
  return out.str();
}

TestCluster::TestCluster(ClusterOptions options, std::ostream* trace)
    : options_(options), trace_(trace) {
  snapshots_[{kBootstrapIndex, kBootstrapTerm}] = {};
}

void TestCluster::add_nodes(std::size_t count) {
  const bool initial = nodes_.empty();
  const NodeId first = initial ? 1 : nodes_.rbegin()->first + 1;
  raftpb::ConfState cs;
  if (initial) {
    for (NodeId id = first; id < first + count; ++id) cs.add_voters(id);
  }
  for (NodeId id = first; id < first + count; ++id) {
    Node& n = nodes_[id];
    n.storage = std::make_unique<MemoryLogStorage>(cs);
    if (initial) {
      raftpb::SnapshotMetadata meta;
      meta.set_index(kBootstrapIndex);
      meta.set_term(kBootstrapTerm);
      *meta.mutable_conf_state() = cs;
      HERALD_ASSERT(n.storage->apply_snapshot(meta).ok(), "bootstrap snapshot");
      raftpb::HardState hs;
      hs.set_term(kBootstrapTerm);
      hs.set_commit(kBootstrapIndex);
      n.storage->set_hard_state(hs);
      n.conf_history.emplace_back(kBootstrapIndex, cs);
    } else {
      n.conf_history.emplace_back(0, cs);
    }
    start(id);
  }
}

void TestCluster::start(NodeId id) {
  Node& n = at(id);
  Config config;
  config.id = id;
  config.election_ticks = options_.election_ticks;
  config.heartbeat_ticks = options_.heartbeat_ticks;
  config.pre_vote = options_.pre_vote;
  config.check_quorum = options_.check_quorum;
  config.max_msg_bytes = options_.max_msg_bytes;
  config.max_inflight_msgs = options_.max_inflight_msgs;
  config.max_inflight_bytes = options_.max_inflight_bytes;
  config.max_uncommitted_bytes = options_.max_uncommitted_bytes;
  config.applied = n.conf_history.back().first;
  if (!n.applied.empty()) config.applied = std::max(config.applied, n.applied.back().index);
  config.seed = options_.seed;
  config.planted_commit_without_quorum = options_.planted_commit_without_quorum;
  config.storage = n.storage.get();
  Result<std::unique_ptr<RawNode>> raw = RawNode::create(config);
  HERALD_ASSERT(raw.ok(), "RawNode::create failed in the test cluster");
  n.raw = std::move(raw).value();
}

std::vector<NodeId> TestCluster::ids() const {
  std::vector<NodeId> out;
  for (const auto& [id, n] : nodes_) out.push_back(id);
  return out;
}

bool TestCluster::is_up(NodeId id) const {
  return at(id).raw != nullptr;
}

RawNode& TestCluster::node(NodeId id) {
  HERALD_ASSERT(is_up(id), "node is down");
  return *at(id).raw;
}

MemoryLogStorage& TestCluster::storage(NodeId id) {
  return *at(id).storage;
}

const std::vector<AppliedEntry>& TestCluster::applied(NodeId id) const {
  return at(id).applied;
}

TestCluster::Node& TestCluster::at(NodeId id) {
  auto it = nodes_.find(id);
  HERALD_ASSERT(it != nodes_.end(), "unknown node");
  return it->second;
}

const TestCluster::Node& TestCluster::at(NodeId id) const {
  auto it = nodes_.find(id);
  HERALD_ASSERT(it != nodes_.end(), "unknown node");
  return it->second;
}

bool TestCluster::process_ready(NodeId id) {
  Node& n = at(id);
  if (!n.raw || !n.raw->has_ready()) return false;
  Ready rd = n.raw->ready();
  trace_ready(id, rd);
  persist(n, id, rd);
  for (const raftpb::Message& m : rd.messages) network_.push_back(m);
  apply(n, id, rd);
  n.raw->advance(rd);
  n.raw->check_invariants();
  return true;
}

void TestCluster::persist(Node& n, NodeId id, const Ready& rd) {
  if (rd.snapshot) {
    const raftpb::SnapshotMetadata& meta = *rd.snapshot;
    HERALD_ASSERT(n.storage->apply_snapshot(meta).ok(), "installing a snapshot failed");
    auto data = snapshots_.find({meta.index(), meta.term()});
    HERALD_ASSERT(data != snapshots_.end(), "snapshot data was never taken");
    n.applied = data->second;
    n.conf_history = {{meta.index(), meta.conf_state()}};
  }
  HERALD_ASSERT(n.storage->append(rd.entries).ok(), "appending entries failed");
  if (rd.hard_state) n.storage->set_hard_state(*rd.hard_state);
}

void TestCluster::apply(Node& n, NodeId id, const Ready& rd) {
  for (const raftpb::Entry& e : rd.committed_entries) {
    const Index applied_index =
        std::max(n.conf_history.back().first, n.applied.empty() ? 0 : n.applied.back().index);
    HERALD_ASSERT(e.index() == applied_index + 1, "committed entries out of order");
    if (e.type() == raftpb::ENTRY_CONF_CHANGE) {
      raftpb::ConfChange cc;
      HERALD_ASSERT(cc.ParseFromString(e.data()), "undecodable config change");
      raftpb::ConfState cs = n.raw->apply_conf_change(cc);
      n.storage->set_conf_state(cs);
      n.conf_history.emplace_back(e.index(), cs);
      if (trace_) *trace_ << "  applied conf: " << describe(cs) << "\n";
    }
    n.applied.push_back({e.index(), e.term(), e.data()});
  }
}

void TestCluster::trace_ready(NodeId id, const Ready& rd) {
  if (!trace_) return;
  std::ostream& out = *trace_;
  out << "> " << id << " handling Ready\n";
  if (rd.soft_state) {
    out << "  soft: role=" << role_name(rd.soft_state->role) << " leader=" << rd.soft_state->leader
        << " term=" << rd.soft_state->term << " (" << describe(rd.soft_state->reason) << ")\n";
  }
  if (rd.hard_state) {
    out << "  hard: term=" << rd.hard_state->term() << " vote=" << rd.hard_state->vote()
        << " commit=" << rd.hard_state->commit() << "\n";
  }
  if (rd.snapshot) {
    out << "  snapshot: " << rd.snapshot->term() << "/" << rd.snapshot->index() << " "
        << describe(rd.snapshot->conf_state()) << "\n";
  }
  for (const raftpb::Entry& e : rd.entries) out << "  entry: " << describe(e) << "\n";
  for (const raftpb::Entry& e : rd.committed_entries) out << "  commit: " << describe(e) << "\n";
  for (const ReadState& rs : rd.read_states) {
    out << "  read-state: index=" << rs.index << " ctx=\"" << rs.context << "\"\n";
  }
  for (const raftpb::Message& m : rd.messages) out << "  send: " << describe(m) << "\n";
}

void TestCluster::deliver_to(NodeId id) {
  std::vector<raftpb::Message> batch;
  std::deque<raftpb::Message> rest;
  for (raftpb::Message& m : network_)
    (m.to() == id ? batch.emplace_back(std::move(m)) : rest.emplace_back(std::move(m)));
  network_ = std::move(rest);
  if (batch.empty()) return;
  if (trace_) *trace_ << "> " << id << " receiving messages\n";
  for (const raftpb::Message& m : batch) deliver(m);
}

void TestCluster::drop_to(NodeId id) {
  std::vector<raftpb::Message> lost;
  std::erase_if(network_, [&](const raftpb::Message& m) {
    if (m.to() == id) lost.push_back(m);
    return m.to() == id;
  });
  for (const raftpb::Message& m : lost) lose(m);
}

void TestCluster::lose(const raftpb::Message& m) {
  if (trace_) *trace_ << "  dropped: " << describe(m) << "\n";
  if (m.type() == raftpb::MSG_SNAP && nodes_.contains(m.from()) && is_up(m.from())) {
    node(m.from()).report_snapshot(m.to(), false);
  }
}

void TestCluster::deliver(const raftpb::Message& m) {
  if (!nodes_.contains(m.to()) || !is_up(m.to()) || !connected(m.from(), m.to())) {
    lose(m);
    return;
  }
  if (trace_) *trace_ << "  " << describe(m) << "\n";
  Status s = at(m.to()).raw->step(m);
  HERALD_ASSERT(s.ok(), "step rejected a message from the cluster");
  at(m.to()).raw->check_invariants();
  if (m.type() == raftpb::MSG_SNAP && is_up(m.from())) {
    node(m.from()).report_snapshot(m.to(), true);
  }
}

std::size_t TestCluster::stabilize(std::size_t max_rounds) {
  for (std::size_t round = 0; round < max_rounds; ++round) {
    bool busy = false;
    for (NodeId id : ids()) busy = process_ready(id) || busy;
    for (NodeId id : ids()) {
      const bool pending = std::any_of(network_.begin(), network_.end(),
                                       [id](const raftpb::Message& m) { return m.to() == id; });
      if (!pending) continue;
      busy = true;
      deliver_to(id);
    }
    if (!busy) return round;
  }
  HERALD_ASSERT(false, "the cluster did not stabilize");
  return max_rounds;
}

void TestCluster::tick(NodeId id, int ticks) {
  for (int k = 0; k < ticks && is_up(id); ++k) node(id).tick();
}

void TestCluster::tick_all(int ticks) {
  for (int k = 0; k < ticks; ++k) {
    for (NodeId id : ids()) tick(id, 1);
  }
}

void TestCluster::partition(const std::set<NodeId>& side) {
  side_.clear();
  for (NodeId id : ids()) side_[id] = side.contains(id) ? 1 : 0;
}

void TestCluster::heal() {
  side_.clear();
}

bool TestCluster::connected(NodeId a, NodeId b) const {
  auto side = [this](NodeId id) {
    auto it = side_.find(id);
    return it == side_.end() ? 0 : it->second;
  };
  return side(a) == side(b);
}

void TestCluster::crash(NodeId id) {
  at(id).raw.reset();
}

void TestCluster::restart(NodeId id) {
  HERALD_ASSERT(!is_up(id), "restarting a live node");
  start(id);
}

raftpb::ConfState TestCluster::conf_at(const Node& n, Index index) const {
  raftpb::ConfState cs;
  for (const auto& [at_index, conf] : n.conf_history) {
    if (at_index <= index) cs = conf;
  }
  return cs;
}

void TestCluster::compact(NodeId id, Index index) {
  Node& n = at(id);
  HERALD_ASSERT(!n.applied.empty() && index <= n.applied.back().index, "compacting unapplied");
  Result<Term> term = n.storage->term(index);
  HERALD_ASSERT(term.ok(), "compacting an unknown index");
  raftpb::SnapshotMetadata meta;
  meta.set_index(index);
  meta.set_term(*term);
  *meta.mutable_conf_state() = conf_at(n, index);
  std::vector<AppliedEntry> data;
  for (const AppliedEntry& e : n.applied) {
    if (e.index <= index) data.push_back(e);
  }
  snapshots_[{index, *term}] = std::move(data);
  HERALD_ASSERT(n.storage->set_snapshot_metadata(meta).ok(), "recording the snapshot failed");
  HERALD_ASSERT(n.storage->compact(index).ok(), "compaction failed");
}

NodeId TestCluster::leader() const {
  NodeId best = kNoNode;
  Term best_term = 0;
  for (const auto& [id, n] : nodes_) {
    if (!n.raw) continue;
    NodeStatus s = n.raw->status();
    if (s.role == Role::kLeader && s.term >= best_term) {
      best = id;
      best_term = s.term;
    }
  }
  return best;
}

void TestCluster::check_invariants() const {
  for (const auto& [id, n] : nodes_) {
    if (n.raw) n.raw->check_invariants();
  }
}

}  // namespace herald::raft::testing
