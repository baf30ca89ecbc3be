#include "sim/membership_scenario.h"

#include <memory>

namespace herald::sim {

namespace {

constexpr MonoMs kFirstChangeMs = 200;
constexpr std::uint64_t kOperatorSalt = 21;

}  // namespace

ClusterOptions membership_cluster_options(std::uint64_t seed, bool verbose) {
  ClusterOptions options;
  options.seed = seed;
  options.replicas = kMinVoters;
  options.spares = kMembershipSpares;
  options.verbose = verbose;
  return options;
}

MembershipScenario::MembershipScenario(const ClusterOptions& options)
    : cluster_(options, this),
      operator_(cluster_, derive_seed(options.seed, kOperatorSalt), options.traffic_end_ms) {}

MembershipScenario::~MembershipScenario() = default;

rsm::StateMachine* MembershipScenario::open_replica(raft::NodeId id,
                                                    const storage::Reader* /*state*/) {
  auto& machine = machines_[id];
  machine = std::make_unique<rsm::KvStateMachine>();
  return machine.get();
}

void MembershipScenario::on_replica_up(raft::NodeId /*id*/, rsm::Node& /*node*/) {}

void MembershipScenario::on_replica_down(raft::NodeId id) {
  operator_.on_replica_down(id);
}

void MembershipScenario::on_tick(raft::NodeId /*id*/) {}

std::string MembershipScenario::check_after_event() {
  return operator_.check_after_event();
}

std::string MembershipScenario::unsettled() const {
  return operator_.unsettled();
}

std::string MembershipScenario::final_check() {
  return operator_.final_check();
}

MembershipRunResult MembershipScenario::run() {
  operator_.start(kFirstChangeMs);
  MembershipRunResult result;
  result.cluster = cluster_.run();
  result.membership = operator_.stats();
  return result;
}

}  // namespace herald::sim
