// MembershipScenario: operator membership changes on a simulated Herald cluster, under faults.
//
// It composes a SimCluster (sim/cluster.h: the same replicas, network, disks, fault schedule, KV
// clients, Raft safety checks and linearizability check as the raft scenario) that starts with 3
// voters and kMembershipSpares spare node ids, and a MembershipOperator (sim/membership_operator.h)
// that adds, promotes and removes members until the traffic ends and checks, after every event and
// at the end, what membership changes promise. At the end the replicas' states must also agree and
// the clients' history be linearizable (the cluster's checks).
//
// Determinism: every choice comes from Rngs derived from the seed. Thread-safety: none.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "rsm/kv_state_machine.h"
#include "sim/cluster.h"
#include "sim/membership_operator.h"

namespace herald::sim {

// Spare node ids (4 .. 3 + kMembershipSpares) that may join the 3 initial voters.
inline constexpr int kMembershipSpares = 3;

struct MembershipRunResult {
  RunResult cluster;
  MembershipStats membership;
};

// The options of seed `seed` of the membership scenario: 3 voters and kMembershipSpares spares.
[[nodiscard]] ClusterOptions membership_cluster_options(std::uint64_t seed, bool verbose);

class MembershipScenario final : public ClusterScenario {
 public:
  explicit MembershipScenario(const ClusterOptions& options);
  ~MembershipScenario() override;
  MembershipScenario(const MembershipScenario&) = delete;
  MembershipScenario& operator=(const MembershipScenario&) = delete;

  // Runs the whole scenario once.
  [[nodiscard]] MembershipRunResult run();

  // ClusterScenario.
  [[nodiscard]] rsm::StateMachine* open_replica(raft::NodeId id,
                                                const storage::Reader* state) override;
  void on_replica_up(raft::NodeId id, rsm::Node& node) override;
  void on_replica_down(raft::NodeId id) override;
  void on_tick(raft::NodeId id) override;
  [[nodiscard]] std::string check_after_event() override;
  [[nodiscard]] std::string unsettled() const override;
  [[nodiscard]] std::string final_check() override;

 private:
  std::map<raft::NodeId, std::unique_ptr<rsm::KvStateMachine>> machines_;
  // After the state machines: destroyed before them, so no replica outlives them. The operator
  // borrows the cluster and is destroyed first.
  SimCluster cluster_;
  MembershipOperator operator_;
};

}  // namespace herald::sim
