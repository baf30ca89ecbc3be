// SimCluster: a whole Herald cluster — 3 or 5 replicas and their clients — in one thread, driven
// by one seed.
//
// Each replica is the production stack: rsm::Node + KvStateMachine on a storage::MemEngine (the
// engine belongs to the cluster and survives the replica's crashes), talking over a SimTransport
// of a SimNetwork. Only time (a ManualClock), the network and the disk are simulated.
//
// One simulated time line in milliseconds: every replica ticks every kTickMs (each with its own
// offset), messages arrive when the network says so, clients issue operations, and a fault
// schedule drawn from the seed crashes and restarts replicas (losing unsynced writes), fails
// disk writes, fills disks (the replica halts and is restarted once space returns), partitions
// and heals links, and turns loss, duplication and delay up and down.
// After every event every running replica runs process(), and SafetyChecker verifies Raft's
// safety properties and that every command takes effect at most once. On some seeds one replica's
// disk lies: a crash of it may also lose writes it had synced. At the end every fault is
// healed, the cluster must converge, and the clients' history must be linearizable
// (sim/linearizability.h).
//
// Determinism: every choice comes from Rngs derived from the seed, every container iterated is
// ordered, and nothing reads a real clock, so a seed replays exactly.
// Thread-safety: none.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/random.h"
#include "raft/log_storage.h"
#include "raft/raw_node.h"
#include "rsm/kv_state_machine.h"
#include "rsm/node.h"
#include "sim/linearizability.h"
#include "sim/sim_network.h"
#include "storage/mem_engine.h"
#include "storage/mem_log_fs.h"

namespace herald::sim {

// Every replica ticks with this period.
inline constexpr MonoMs kTickMs = 10;
// Small log settings, so that compaction and chunked snapshot streaming happen in a short run.
inline constexpr raft::Index kSimCompactionThresholdEntries = 200;
inline constexpr raft::Index kSimLogTailEntries = 50;
// The segment size of a replica's raft log with ClusterOptions::segment_log: small, so that runs
// roll over to new segments and compaction drops some.
inline constexpr std::uint64_t kSimSegmentBytes = 8ULL << 10U;        // 8 KiB
inline constexpr std::uint64_t kSimSnapshotChunkBytes = 4ULL << 10U;  // 4 KiB

// TEST ONLY: a bug planted on purpose in every replica, so that a test can show that the checks
// catch it (docs/reliability.md, "A planted bug"). Every run has kNone unless `herald sim
// --plant-bug NAME` asks for one; nothing outside sim/ plants anything.
enum class PlantedBug : std::uint8_t {
  kNone,
  // rsm::NodeConfig::planted_commit_without_quorum: a leader commits, applies and acknowledges an
  // entry as soon as its own log holds it, before a majority of the voters does.
  kCommitWithoutQuorum,
};
// The name `--plant-bug` takes: "commit-without-quorum"; "none" for kNone.
[[nodiscard]] std::string_view planted_bug_name(PlantedBug bug);
// The bug called `name` (one of planted_bug_name's), or nullopt for an unknown name.
[[nodiscard]] std::optional<PlantedBug> parse_planted_bug(std::string_view name);

struct ClusterOptions {
  std::uint64_t seed = 1;
  int replicas = 3;  // 3 or 5: the initial voters, node ids 1..replicas
  // Spare node ids replicas+1 .. replicas+spares: replicas that start empty and wait to join
  // (rsm::NodeConfig::join) until a scenario adds them with a membership change. Disk faults
  // (full disks, damaged records, lying disks) only ever hit the initial voters.
  int spares = 0;
  int clients = 6;
  bool faults = true;
  // Whether the network may deliver a message twice. A real TCP peer transport never does; the
  // simulator does by default, to hold the layers above to the weaker contract.
  bool duplicate_messages = true;
  MonoMs faults_end_ms = 9'000;     // no new fault after this; every fault is healed here
  MonoMs traffic_end_ms = 11'000;   // clients start no new operation after this
  MonoMs settle_limit_ms = 25'000;  // the run fails if it has not converged by then
  bool verbose = false;             // print the fault schedule as it happens
  // Replicas keep their raft log in segment files on a storage::MemLogFs (storage::SegmentLog)
  // instead of their engine; a crash drops both stores' unsynced writes together. A damaged log
  // record is then one of a segment file, and a lying disk loses synced writes of the log's
  // files (docs/simulation.md, "Fault model").
  bool segment_log = false;
  // On some seeds (kSlowDiskChance, a random stream of its own) one or two replicas have slow
  // disks until the final heal: every process round of theirs that syncs takes a drawn fsync
  // latency, now and then a stall of a second or more. Until the sync ends the replica processes
  // nothing (its ticks are skipped, messages to it wait), and what it sends after the sync leaves
  // when the sync ends. Off by default, so that the other scenarios' seeds replay as before.
  bool slow_disks = false;
  // TEST ONLY: the bug planted in every replica (kNone: Herald as it ships).
  PlantedBug planted_bug = PlantedBug::kNone;
};

struct RunStats {
  bool storm = false;  // the seed ran the storm fault profile
  std::uint64_t events = 0;
  MonoMs end_ms = 0;
  std::uint64_t acked_writes = 0;  // Put/Delete/CAS with a known outcome
  std::uint64_t acked_reads = 0;
  std::uint64_t unknown_ops = 0;   // writes whose outcome the client never learned
  std::uint64_t rejected_ops = 0;  // refused before being proposed
  std::uint64_t crashes = 0;
  std::uint64_t io_faults = 0;        // replicas stopped by an injected write failure
  std::uint64_t full_disks = 0;       // episodes of a disk below its free-space floor
  std::uint64_t enospc_disks = 0;     // episodes of a disk with no space left (writes fail)
  std::uint64_t enospc_halts = 0;     // replicas halted, or kept from opening, by such a disk
  std::uint64_t damaged_records = 0;  // records damaged on purpose (log entries, applied states)
  std::uint64_t rebuilds = 0;         // replicas rebuilt empty after finding one
  std::uint64_t lying_disks = 0;      // crashes that lost synced writes (a disk that lied)
  std::uint64_t slow_disks = 0;       // replicas with a slow disk (ClusterOptions::slow_disks)
  std::uint64_t slow_syncs = 0;       // process rounds that waited for a slow disk's sync
  std::uint64_t disk_stalls = 0;      // of them, stalls (kMinDiskStallMs or more)
  std::uint64_t partitions = 0;
  std::uint64_t leaders = 0;  // distinct (term, leader) pairs
  std::uint64_t max_compacted_index = 0;
  std::uint64_t linearizability_steps = 0;
  NetworkCounters network;
};

struct RunResult {
  bool ok = true;
  std::string failure;  // set when !ok: the first violation found
  RunStats stats;
};

// An independent random stream's seed for component `salt` of the run `seed`.
[[nodiscard]] std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t salt);

// The identity of a log entry, for comparing entries across replicas cheaply.
struct EntryDigest {
  raft::Term term = 0;
  std::uint64_t hash = 0;  // of the entry's type and data
  bool operator==(const EntryDigest&) const = default;
};
[[nodiscard]] EntryDigest digest_of(const raftpb::Entry& entry);

// Raft's safety properties (Raft paper, Figure 3), checked against what replicas report.
// Each check returns an empty string when the property holds, else a description.
class SafetyChecker {
 public:
  // State machine safety: no two replicas apply different entries at one index. Also records
  // the entry as known committed, and the first index of each command.
  [[nodiscard]] std::string on_apply(raft::NodeId id, const raftpb::Entry& entry);
  // Election safety (at most one leader per term over the whole run) and, the first time `id`
  // is seen leading `status.term`, leader completeness against the entries known committed.
  [[nodiscard]] std::string on_status(const raft::NodeStatus& status, const raft::LogStorage& log);
  // Log matching between two replicas' durable logs, over the last `window` indexes of their
  // overlap (every index when window is 0).
  [[nodiscard]] static std::string check_log_matching(raft::NodeId a, const raft::LogStorage& la,
                                                      raft::NodeId b, const raft::LogStorage& lb,
                                                      raft::Index window);

  // Exactly once: a value (unique per write) that a client sees at `revision`, in a Put answer
  // or a read, must carry the index of the first commit of the command that wrote it.
  [[nodiscard]] std::string check_write_revision(std::string_view value,
                                                 std::uint64_t revision) const;

  [[nodiscard]] std::size_t leaders_seen() const { return leaders_.size(); }
  // Every committed config change, by index (as replicas applied them).
  [[nodiscard]] const std::map<raft::Index, raftpb::ConfChange>& conf_changes() const {
    return conf_changes_;
  }
  [[nodiscard]] raft::Index max_committed() const;

 private:
  [[nodiscard]] std::string check_leader_completeness(raft::NodeId id, raft::Term term,
                                                      const raft::LogStorage& log) const;

  // (origin, incarnation, request_id): the name of a proposed command.
  using CommandName = std::tuple<raft::NodeId, std::uint64_t, std::uint64_t>;
  void record_command(const raftpb::Entry& entry);
  [[nodiscard]] static std::uint64_t value_hash(std::string_view value);

  std::map<raft::Index, EntryDigest> committed_;
  std::map<raft::Index, raftpb::ConfChange> conf_changes_;
  // The first index at which each command was committed. The network may duplicate a forwarded
  // proposal, and raft then commits it twice; only the first copy may take effect.
  std::map<CommandName, raft::Index> commands_;
  // Hash of each value written by a Put or compare-and-set -> the first index of its command.
  std::map<std::uint64_t, raft::Index> first_write_of_value_;
  std::map<raft::Term, raft::NodeId> leaders_;
};

// ClusterScenario: what a scenario adds to the replicas of a SimCluster (state machine modules,
// leader-side services, their own traffic and checks). The cluster calls it on its one thread;
// every hook must be deterministic. Scenarios schedule their own work with
// SimCluster::schedule_call and report violations with SimCluster::report_violation.
class ClusterScenario {
 public:
  virtual ~ClusterScenario() = default;
  // Replica `id` is opening a new incarnation on `state` (its engine, borrowed for the
  // incarnation). Returns the state machine it applies to, owned by the scenario and kept alive
  // until on_replica_down(id) or the next open_replica(id).
  [[nodiscard]] virtual rsm::StateMachine* open_replica(raft::NodeId id,
                                                        const storage::Reader* state) = 0;
  // The incarnation opened: `node` runs until on_replica_down(id) (install listeners here).
  virtual void on_replica_up(raft::NodeId id, rsm::Node& node) = 0;
  // The replica crashed or stopped; its Node is already destroyed.
  virtual void on_replica_down(raft::NodeId id) = 0;
  // Replica `id` ticked (every kTickMs while it runs).
  virtual void on_tick(raft::NodeId id) = 0;
  // After every event, once the cluster's own checks passed: a violation, or empty.
  [[nodiscard]] virtual std::string check_after_event() = 0;
  // Empty when the scenario's work is done; otherwise what it is still waiting for. The run
  // settles only when the cluster converged and this is empty.
  [[nodiscard]] virtual std::string unsettled() const = 0;
  // After the cluster's final checks passed (every replica running and converged).
  [[nodiscard]] virtual std::string final_check() = 0;
};

class SimCluster {
 public:
  // `scenario` (borrowed, optional) replaces the plain KV state machine of every replica; with
  // options.clients == 0 the KV traffic, its progress check and linearizability check are off.
  explicit SimCluster(const ClusterOptions& options, ClusterScenario* scenario = nullptr);
  ~SimCluster();
  SimCluster(const SimCluster&) = delete;
  SimCluster& operator=(const SimCluster&) = delete;

  // Runs the whole scenario: traffic and faults, healing, settling, final checks.
  [[nodiscard]] RunResult run();

  // ---- For a ClusterScenario ----
  // Runs `call` at simulated time `at_ms` (at the earliest in the next step), in order with every
  // other event; checks run after it like after any event.
  void schedule_call(MonoMs at_ms, std::function<void()> call);
  // Fails the run (the first violation is kept).
  void report_violation(std::string reason) { fail(std::move(reason)); }
  [[nodiscard]] const ManualClock& clock() const { return clock_; }
  [[nodiscard]] const ClusterOptions& options() const { return options_; }
  // The running replica `id`, or nullptr while it is down.
  [[nodiscard]] rsm::Node* node(raft::NodeId id);
  [[nodiscard]] const rsm::Node* node(raft::NodeId id) const;
  [[nodiscard]] std::vector<raft::NodeId> up_ids() const;
  [[nodiscard]] raft::NodeId leader_hint() const;
  // The members (voters and learners) in force on the leader, or empty when no leader runs.
  [[nodiscard]] std::set<raft::NodeId> leader_members() const;
  // The operator stops replica `id` for good (a removed member's process): it goes down without
  // losing anything and is never restarted, not even by the final heal.
  void retire_replica(raft::NodeId id);
  [[nodiscard]] bool retired(raft::NodeId id) const;
  [[nodiscard]] const SafetyChecker& safety() const { return safety_; }
  void log_event(const std::string& what) const;

 private:
  struct Replica;
  struct Client;
  enum class EventKind : std::uint8_t {
    kTick,
    kRestart,
    kClientOp,
    kClientTimeout,
    kFault,
    kHeal,
    kSettleCheck,
    kCall,  // a scenario's scheduled call; generation names it
  };
  struct Event {
    EventKind kind = EventKind::kTick;
    raft::NodeId node = raft::kNoNode;
    int client = -1;
    // The replica incarnation, partition episode or client operation it belongs to.
    std::uint64_t generation = 0;
  };
  using EventKey = std::pair<MonoMs, std::uint64_t>;

  // Setup and the event loop.
  void schedule(MonoMs at_ms, const Event& event);
  [[nodiscard]] bool step();
  void dispatch(const Event& event);
  void deliver(const Delivery& delivery);
  void process_all();
  void check_all();
  void fail(std::string reason);

  // Replica life cycle.
  [[nodiscard]] Replica& replica(raft::NodeId id);
  [[nodiscard]] Status open_replica(Replica& r);
  void start_replica(Replica& r);
  void crash_replica(Replica& r, MonoMs down_for_ms);
  // The power loss of a crash: every store of `r` loses its unsynced writes, and on a lying disk
  // (sometimes) synced ones.
  void crash_stores(Replica& r);
  void on_tick(const Event& event);
  void on_restart(const Event& event);
  void handle_process_error(Replica& r, const Status& status);
  // The replica's disk is full: it stops taking part as `herald serve` halts (server/node_host.h),
  // without losing anything (the process and its files stay), until space returns.
  void halt_replica(Replica& r, const Status& cause);
  // After a halted replica reopened: it holds the hard state and the committed log it held
  // durably when it halted.
  void check_halt_mark(Replica& r);
  // True (and the failure counted as seen) when `r`'s stores rejected a write by injection since
  // the last call: a kIOError then is the injected fault, not a bug.
  [[nodiscard]] bool take_injected_failure(Replica& r);
  // True (and the refusal counted as seen) when `r`'s stores refused a write for want of space
  // since the last call: a kResourceExhausted then is the full disk, not a bug.
  [[nodiscard]] bool take_full_refusal(Replica& r);
  void on_call(const Event& event);

  // Faults.
  void on_fault();
  void on_heal(const Event& event);
  [[nodiscard]] std::size_t impaired_count() const;
  void fault_crash(raft::NodeId target);
  void fault_partition(raft::NodeId target);
  void fault_weather();
  void fault_disk(raft::NodeId target);
  // On some seeds, one episode of a disk below its free-space floor (the disk alarm).
  void plan_full_disk();
  // On some seeds, one episode of a disk with no space left: every write of the replica's engine
  // and log files fails with kResourceExhausted (see kEnospcChance).
  void plan_enospc();
  // Space returns on `r`'s disk: writes are taken again, and a replica halted on it restarts.
  void free_disk(Replica& r);
  // Sets `r`'s free-space figure from the disk episodes in force.
  static void update_disk_figure(Replica& r);
  // On some seeds, damages a record one replica reads when it next starts (see kDamageChance).
  void plan_damage();
  // Flips a bit of the newest entry record of `r`'s segment log (down) whose damage its next open
  // finds, and after which a rebuild still knows its hard state; false when none was found.
  [[nodiscard]] bool damage_segment_log(Replica& r);
  // On some seeds, one replica (never the damaged one) has a disk that lies about fsync: some of
  // its crashes also lose writes it had synced (see kLyingDiskChance).
  void plan_lying_disk();
  // With ClusterOptions::slow_disks, on some seeds one or two replicas get slow disks.
  void plan_slow_disks();
  // Runs one replica's process(); on a slow disk, a round that synced keeps it busy.
  void process_replica(Replica& r);
  [[nodiscard]] static std::uint64_t syncs_of(const Replica& r);
  // Rebuilds a stopped replica whose damage was found, as server/replica_rebuild.h does on disk,
  // and restarts it.
  void rebuild_replica(Replica& r, const Status& cause);
  void heal_everything();
  [[nodiscard]] raft::NodeId pick_target();

  // Clients.
  void on_client_op(int client_index);
  void on_client_timeout(const Event& event);
  void issue_write(Client& c, Replica& r);
  void issue_read(Client& c, Replica& r);
  void complete_write(int client_index, std::uint64_t token, bool sync,
                      const Result<rsmpb::CommandResult>& result);
  void complete_read(int client_index, std::uint64_t token, bool sync, const Status& status);
  void expect_first_write(std::string_view value, std::uint64_t revision);
  void finish_op(Client& c, bool keep, bool known);
  void abandon_ops_on(raft::NodeId id);

  // Checks.
  void check_logs(bool full);
  void on_settle_check();
  [[nodiscard]] bool converged() const;
  // Each replica's role, commit and applied index and log bounds, for a failure message.
  [[nodiscard]] std::string describe_replicas() const;
  void final_checks();
  void check_history();

  ClusterOptions options_;
  ClusterScenario* scenario_;                             // borrowed; may be null
  std::map<std::uint64_t, std::function<void()>> calls_;  // by the generation of their kCall
  std::uint64_t next_call_ = 0;
  ManualClock clock_;
  Rng fault_rng_;
  Rng client_rng_;
  Rng crash_rng_;
  Rng lie_rng_;
  Rng slow_rng_;  // slow disks' latencies (ClusterOptions::slow_disks only)
  raft::NodeId damage_target_ = raft::kNoNode;
  SimNetwork network_;
  std::map<raft::NodeId, std::unique_ptr<Replica>> replicas_;
  std::vector<std::unique_ptr<Client>> clients_;
  std::map<EventKey, Event> events_;
  std::uint64_t next_event_sequence_ = 0;
  const bool storm_;  // this seed runs the storm fault profile
  std::uint64_t partition_episode_ = 0;
  bool settled_ = false;

  SafetyChecker safety_;
  std::vector<KvOp> history_;
  std::vector<bool> history_kept_;
  // (value, revision) pairs clients saw during the current event, for SafetyChecker.
  std::vector<std::pair<std::string, std::uint64_t>> revision_checks_;
  std::optional<std::string> failure_;
  RunStats stats_;
};

}  // namespace herald::sim
