// Randomized network test: 3- and 5-node clusters over MemoryLogStorage with message loss,
// reordering, duplication, partitions, crash-restarts (crash = lose what no Ready persisted) and
// log compaction, driven from a seed. After every step it checks Raft's safety properties
// (Raft paper Figure 3): election safety, log matching, leader completeness and state machine
// safety; after the faults stop it checks that the healed cluster commits new proposals.
#include <gtest/gtest.h>

#include <map>

#include "base/random.h"
#include "raft/test_cluster.h"

namespace herald::raft {
namespace {

using testing::AppliedEntry;
using testing::TestCluster;

constexpr int kStepsPerSeed = 3000;
constexpr int kLogCheckEverySteps = 25;
constexpr int kMaxHealRounds = 200;
constexpr std::uint64_t kSeedsThreeNodes = 400;
constexpr std::uint64_t kSeedsFiveNodes = 250;

class SafetyChecker {
 public:
  explicit SafetyChecker(TestCluster& cluster) : c_(cluster) {}

  void check_every_step() {
    check_election_safety();
    check_state_machine_safety();
  }

  void check_logs() {
    check_log_matching();
    check_leader_completeness();
  }

 private:
  // At most one leader per term, ever.
  void check_election_safety() {
    for (NodeId id : c_.ids()) {
      if (!c_.is_up(id)) continue;
      const NodeStatus s = c_.node(id).status();
      if (s.role != Role::kLeader) continue;
      auto [it, inserted] = leaders_.try_emplace(s.term, id);
      ASSERT_EQ(it->second, id) << "two leaders in term " << s.term;
    }
  }

  // No two nodes apply different entries at an index.
  void check_state_machine_safety() {
    for (NodeId id : c_.ids()) {
      const std::vector<AppliedEntry>& applied = c_.applied(id);
      std::size_t& checked = checked_[id];
      if (checked > applied.size()) checked = 0;  // replaced by a snapshot
      for (; checked < applied.size(); ++checked) {
        const AppliedEntry& e = applied[checked];
        auto [it, inserted] = committed_.try_emplace(e.index, e);
        ASSERT_EQ(it->second, e) << "node " << id << " applied a different entry at " << e.index;
      }
    }
  }

  // Two logs with an entry of the same index and term agree on every earlier entry.
  void check_log_matching() {
    const std::vector<NodeId> ids = c_.ids();
    for (std::size_t a = 0; a < ids.size(); ++a) {
      for (std::size_t b = a + 1; b < ids.size(); ++b) check_pair(ids[a], ids[b]);
    }
  }

  void check_pair(NodeId a, NodeId b) {
    MemoryLogStorage& la = c_.storage(a);
    MemoryLogStorage& lb = c_.storage(b);
    const Index lo = std::max(la.first_index(), lb.first_index());
    const Index hi = std::min(la.last_index(), lb.last_index());
    if (lo > hi) return;
    auto ea = la.entries(lo, hi + 1, ~std::uint64_t{0});
    auto eb = lb.entries(lo, hi + 1, ~std::uint64_t{0});
    ASSERT_TRUE(ea.ok() && eb.ok());
    bool matched = false;
    for (std::size_t k = ea->size(); k-- > 0;) {
      const raftpb::Entry& x = (*ea)[k];
      const raftpb::Entry& y = (*eb)[k];
      matched = matched || x.term() == y.term();
      if (matched) {
        ASSERT_EQ(x.term(), y.term()) << "log matching broken at " << x.index();
        ASSERT_EQ(x.data(), y.data()) << "log matching broken at " << x.index();
      }
    }
  }

  // Every leader's log holds every entry committed in an earlier (or its own) term.
  void check_leader_completeness() {
    for (NodeId id : c_.ids()) {
      if (!c_.is_up(id)) continue;
      const NodeStatus s = c_.node(id).status();
      if (s.role != Role::kLeader) continue;
      MemoryLogStorage& log = c_.storage(id);
      for (const auto& [index, e] : committed_) {
        if (e.term > s.term) continue;
        ASSERT_LE(index, s.last_index) << "leader " << id << " misses committed " << index;
        if (index < log.first_index() || index > log.last_index()) continue;
        Result<Term> t = log.term(index);
        ASSERT_TRUE(t.ok());
        ASSERT_EQ(*t, e.term) << "leader " << id << " lost committed entry " << index;
      }
    }
  }

  TestCluster& c_;
  std::map<Term, NodeId> leaders_;
  std::map<Index, AppliedEntry> committed_;
  std::map<NodeId, std::size_t> checked_;
};

class Chaos {
 public:
  Chaos(TestCluster& cluster, std::uint64_t seed) : c_(cluster), rng_(seed) {}

  void step(int n) {
    const std::uint64_t roll = rng_.uniform(1000);
    const std::vector<NodeId> ids = c_.ids();
    const NodeId node = ids[rng_.uniform(ids.size())];
    if (roll < 250) {
      c_.tick(node);
    } else if (roll < 500) {
      c_.process_ready(node);
    } else if (roll < 850) {
      deliver_random();
    } else if (roll < 930) {
      if (c_.is_up(node)) c_.node(node).propose("v" + std::to_string(n)).ignore();  // may fail
    } else if (roll < 945) {
      partition_randomly(ids);
    } else if (roll < 965) {
      c_.heal();
    } else if (roll < 975) {
      if (c_.is_up(node)) c_.crash(node);
    } else if (roll < 990) {
      if (!c_.is_up(node)) c_.restart(node);
    } else {
      compact_randomly(node);
    }
  }

 private:
  void deliver_random() {
    auto& net = c_.network();
    if (net.empty()) return;
    const std::size_t k = rng_.uniform(net.size());  // any order: reordering
    raftpb::Message m = net[k];
    if (rng_.chance(0.03)) {
      net.push_back(m);  // duplicate
    }
    net.erase(net.begin() + static_cast<std::ptrdiff_t>(k));
    if (rng_.chance(0.1)) {
      c_.lose(m);
      return;
    }
    c_.deliver(m);
  }

  void partition_randomly(const std::vector<NodeId>& ids) {
    std::set<NodeId> side;
    for (NodeId id : ids) {
      if (rng_.chance(0.4)) side.insert(id);
    }
    c_.partition(side);
  }

  void compact_randomly(NodeId node) {
    const std::vector<AppliedEntry>& applied = c_.applied(node);
    MemoryLogStorage& log = c_.storage(node);
    if (applied.empty() || applied.back().index < log.first_index()) return;
    const Index lo = log.first_index();
    const Index index = lo + rng_.uniform(applied.back().index - lo + 1);
    c_.compact(node, index);
  }

  TestCluster& c_;
  Rng rng_;
};

// Heals everything and checks that the cluster elects a leader and commits a new entry.
void expect_progress_after_heal(TestCluster& c, SafetyChecker& checker) {
  c.heal();
  for (NodeId id : c.ids()) {
    if (!c.is_up(id)) c.restart(id);
  }
  const std::string marker = "after-heal";
  for (int round = 0; round < kMaxHealRounds; ++round) {
    c.tick_all();
    c.stabilize();
    checker.check_every_step();
    const NodeId leader = c.leader();
    if (leader != kNoNode && round % 10 == 0) c.node(leader).propose(marker).ignore();
    bool everywhere = true;
    for (NodeId id : c.ids()) {
      const auto& applied = c.applied(id);
      everywhere = everywhere && !applied.empty() && applied.back().data == marker;
    }
    if (everywhere) return;
  }
  std::string states;
  for (NodeId id : c.ids()) {
    const NodeStatus s = c.node(id).status();
    states += " [" + std::to_string(id) + " " + role_name(s.role) + " t" + std::to_string(s.term) +
              " lead " + std::to_string(s.leader) + " last " + std::to_string(s.last_index) +
              " commit " + std::to_string(s.commit) + " applied " + std::to_string(s.applied) + "]";
    for (const PeerProgress& p : s.progress) {
      states += " {" + std::to_string(p.id) + " " + p.state + " m" + std::to_string(p.match) +
                " n" + std::to_string(p.next) + " inflight " + std::to_string(p.inflight_msgs) +
                "}";
    }
  }
  ADD_FAILURE() << "no progress after the network healed:" << states;
}

void run_seed(std::size_t nodes, std::uint64_t seed) {
  testing::ClusterOptions options;
  options.seed = seed;
  options.max_inflight_msgs = 4;  // small bounds exercise flow control
  options.max_msg_bytes = 64;
  TestCluster c(options);
  c.add_nodes(nodes);
  SafetyChecker checker(c);
  Chaos chaos(c, seed * 7919 + nodes);
  for (int n = 0; n < kStepsPerSeed; ++n) {
    chaos.step(n);
    checker.check_every_step();
    if (n % kLogCheckEverySteps == 0) checker.check_logs();
    if (::testing::Test::HasFatalFailure()) return;
  }
  checker.check_logs();
  expect_progress_after_heal(c, checker);
  checker.check_logs();
}

TEST(RandomClusterTest, ThreeNodesStaySafeAndRecover) {
  for (std::uint64_t seed = 1; seed <= kSeedsThreeNodes; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    run_seed(3, seed);
    if (HasFailure()) return;
  }
}

TEST(RandomClusterTest, FiveNodesStaySafeAndRecover) {
  for (std::uint64_t seed = 1; seed <= kSeedsFiveNodes; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    run_seed(5, seed);
    if (HasFailure()) return;
  }
}

}  // namespace
}  // namespace herald::raft
