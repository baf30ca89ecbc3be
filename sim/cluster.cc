#include "sim/cluster.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdio>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>

#include "base/assert.h"
#include "rsm/rebuild.h"
#include "storage/log_store.h"
#include "storage/segment_log.h"

namespace herald::sim {

namespace {

// ---- Workload shape ----
// Few keys, so that clients contend and the linearizability search stays decided.
constexpr int kKeyCount = 6;
constexpr double kReadFraction = 0.35;
constexpr double kDeleteFraction = 0.15;  // of writes
constexpr double kCasFraction = 0.35;     // of writes
// Values carry padding so that the state spans several snapshot chunks.
constexpr std::int64_t kMaxValuePaddingBytes = 5'000;
constexpr MonoMs kMaxThinkMs = 20;
constexpr MonoMs kNoReplicaRetryMs = 50;
// A client gives up waiting after this long; the operation's outcome is then unknown.
constexpr MonoMs kClientTimeoutMs = 1'000;

// ---- Fault schedule ----
constexpr MonoMs kFirstFaultMs = 300;
constexpr MonoMs kMinDownMs = 50;
constexpr MonoMs kMaxDownMs = 3'500;  // long enough to fall behind the compaction point
constexpr MonoMs kMinPartitionMs = 200;
constexpr MonoMs kMaxPartitionMs = 3'500;
constexpr MonoMs kIoFaultRestartMs = 200;
// Full disks: on this share of seeds, one replica's free space falls below its floor for a while,
// drawn from a random stream of its own (derive_seed salt 6) so that the rest of the schedule
// stays each seed's as before.
constexpr double kFullDiskChance = 0.3;
constexpr MonoMs kMinFullDiskMs = 300;
constexpr MonoMs kMaxFullDiskMs = 3'000;
// Damaged records: on this share of seeds, one replica finds a stored record damaged (its log's
// newest durable entry, or its applied state) when it next starts, drawn from a stream of its
// own (derive_seed salt 7). It must rebuild from the leader (rsm/rebuild.h) while the others
// serve, with every safety check still holding.
constexpr double kDamageChance = 0.3;
constexpr MonoMs kDamageRestartMs = 100;
constexpr std::uint64_t kDamageSalt = 7;
// With the raft log in segment files, the damaged record is the newest entry record whose damage
// the next open finds and after which a hard state survives (SimCluster::damage_segment_log);
// at most this many entry records are tried, newest first, before the applied state is damaged
// instead.
constexpr std::size_t kMaxDamageCandidates = 64;
// Segment file names: this many hex digits of the sequence number, then kSegmentSuffix.
constexpr std::size_t kSegmentNameHexDigits = 16;
// A disk that lies about fsync: on this share of seeds one replica (chosen from a stream of its
// own, salt 8; never the damaged one, and none on a 3-replica seed that has a damaged one) loses,
// at each crash with kLieChance, a suffix of the writes it had synced
// (storage::MemEngine::crash_lying; with the raft log in segment files, MemLogFs::crash_lying of
// the log's files, while the engine crashes as an honest disk: the two stores have no common
// order of writes to lose a suffix of). Restarted replicas must recover (docs/raft.md,
// "Recovering after a restart") so that every check still holds.
constexpr double kLyingDiskChance = 0.3;
constexpr double kLieChance = 0.5;
constexpr std::uint64_t kLyingDiskSalt = 8;
constexpr std::uint64_t kLieSalt = 9;
// Disks with no space left (ENOSPC): on this share of seeds, one initial voter's disk fills for
// a while, drawn from a stream of its own (salt 10) so that the rest of each seed's schedule stays
// as before. Every write of its engine and of its log files fails with kResourceExhausted
// (MemEngine::set_full, MemLogFs::set_full) and its free space reads 0; reads and file removals
// go on. The replica halts on the first refused write as `herald serve` does: it stops taking
// part and loses nothing (no power loss), is never restarted while the disk is full, and the
// operator restarts it once space returns; it must then hold what it held durably.
constexpr double kEnospcChance = 0.3;
constexpr MonoMs kMinEnospcMs = 200;
constexpr MonoMs kMaxEnospcMs = 3'000;
constexpr std::uint64_t kEnospcSalt = 10;
constexpr std::uint64_t kSimDiskFreeBytes = 1ULL << 30U;
constexpr std::uint64_t kSimMinFreeBytes = 64ULL << 20U;
// With ClusterOptions::slow_disks: the chance that a seed has slow disks, and then that a second
// replica has one too. A slow disk's sync takes [kMinSlowSyncMs, kMaxSlowSyncMs], and with
// kDiskStallChance a stall of [kMinDiskStallMs, kMaxDiskStallMs] (a disk flushing its cache, a
// cloud volume throttled), long enough to cost a leader its term.
constexpr double kSlowDiskChance = 0.6;
constexpr double kSecondSlowDiskChance = 0.3;
constexpr MonoMs kMinSlowSyncMs = 2;
constexpr MonoMs kMaxSlowSyncMs = 50;
constexpr double kDiskStallChance = 0.01;
constexpr MonoMs kMinDiskStallMs = 200;
constexpr MonoMs kMaxDiskStallMs = 1'500;
constexpr std::uint64_t kSlowDiskSalt = 11;
constexpr std::uint64_t kSlowLatencySalt = 12;
constexpr double kTargetLeaderChance = 0.5;
// In a random-links partition, each directed link is cut with this probability.
constexpr double kRandomLinkCutChance = 0.3;

enum class PartitionMode : std::uint8_t {
  kIsolate,      // the target is cut off both ways
  kOneWay,       // the target hears the others, but nothing it sends arrives
  kMinority,     // with 5 replicas, the target and one more are cut off from the other three
  kRandomLinks,  // an arbitrary set of directed links is cut
};
constexpr std::uint64_t kPartitionModes = 4;

const char* partition_mode_name(PartitionMode mode) {
  switch (mode) {
    case PartitionMode::kIsolate: return "isolate";
    case PartitionMode::kOneWay: return "one-way";
    case PartitionMode::kMinority: return "minority";
    case PartitionMode::kRandomLinks: return "random links";
  }
  return "?";
}

enum class FaultKind : std::uint8_t { kCrash, kPartition, kHeal, kWeather, kDisk, kTransfer };
// Relative weights of the fault kinds, in FaultKind order.
constexpr std::array<std::uint64_t, 6> kFaultWeights = {30, 20, 15, 20, 8, 7};

FaultKind pick_fault_kind(Rng& rng) {
  std::uint64_t total = 0;
  for (const std::uint64_t w : kFaultWeights) {
    total += w;
  }
  std::uint64_t roll = rng.uniform(total);
  for (std::size_t kind = 0; kind < kFaultWeights.size(); ++kind) {
    if (roll < kFaultWeights[kind]) {
      return static_cast<FaultKind>(kind);
    }
    roll -= kFaultWeights[kind];
  }
  HERALD_ASSERT(false, "the weights cover every roll");
  return FaultKind::kHeal;
}

// How hard a seed is hit: the gap between faults and the chance to impair a majority.
struct FaultProfile {
  const char* name;
  MonoMs min_gap_ms;
  MonoMs max_gap_ms;
  double majority_chance;
};
constexpr FaultProfile kSteadyProfile{"steady", 150, 1'200, 0.05};
constexpr FaultProfile kStormProfile{"storm", 40, 300, 0.2};
// Share of seeds run under the storm profile.
constexpr double kStormChance = 0.3;
// Share of seeds whose links hold only a few messages, so that sends are refused under load.
constexpr double kTightLinksChance = 0.2;
constexpr std::size_t kTightLinkMessages = 16;

// ---- Checks ----
constexpr MonoMs kSettleCheckPeriodMs = 100;
constexpr std::uint64_t kFullLogCheckEveryEvents = 2'000;
constexpr raft::Index kLogCheckWindowEntries = 4;
constexpr std::uint64_t kReadPageBytes = 1ULL << 20U;

LinkBounds link_bounds_for(std::uint64_t seed) {
  LinkBounds bounds;
  Rng rng(derive_seed(seed, 5));
  if (rng.chance(kTightLinksChance)) {
    bounds.max_messages = kTightLinkMessages;
  }
  return bounds;
}

// Every entry of `log` in [lo, hi), read in pages.
Result<std::vector<raftpb::Entry>> read_entries(const raft::LogStorage& log, raft::Index lo,
                                                raft::Index hi) {
  std::vector<raftpb::Entry> out;
  while (lo < hi) {
    HERALD_ASSIGN_OR_RETURN(auto page, log.entries(lo, hi, kReadPageBytes));
    HERALD_ASSERT(!page.empty(), "entries() returns at least one entry when lo < hi");
    lo += page.size();
    for (auto& e : page) {
      out.push_back(std::move(e));
    }
  }
  return out;
}

// Term and digest of index i, from `entries` (starting at `first`) or, below it, from term().
struct IndexView {
  const raft::LogStorage* log;
  const std::vector<raftpb::Entry>* entries;
  raft::Index first;  // index of entries->front()

  [[nodiscard]] Result<EntryDigest> at(raft::Index i) const {
    if (i >= first && i - first < entries->size()) {
      return digest_of((*entries)[i - first]);
    }
    HERALD_ASSIGN_OR_RETURN(const raft::Term term, log->term(i));
    return EntryDigest{term, 0};  // data unknown: compared by term only
  }
};

bool same_entry(const EntryDigest& a, const EntryDigest& b) {
  return a.term == b.term && (a.hash == 0 || b.hash == 0 || a.hash == b.hash);
}

}  // namespace

namespace {
constexpr std::string_view kNoPlantedBug = "none";
constexpr std::string_view kCommitWithoutQuorumName = "commit-without-quorum";
}  // namespace

std::string_view planted_bug_name(PlantedBug bug) {
  switch (bug) {
    case PlantedBug::kNone: return kNoPlantedBug;
    case PlantedBug::kCommitWithoutQuorum: return kCommitWithoutQuorumName;
  }
  HERALD_ASSERT(false, "unknown planted bug");
  return {};
}

std::optional<PlantedBug> parse_planted_bug(std::string_view name) {
  for (const PlantedBug bug : {PlantedBug::kNone, PlantedBug::kCommitWithoutQuorum}) {
    if (name == planted_bug_name(bug)) {
      return bug;
    }
  }
  return std::nullopt;
}

std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t salt) {
  std::uint64_t state = seed ^ (salt * 0xd1b54a32d192ed03ULL);
  return splitmix64(state);
}

EntryDigest digest_of(const raftpb::Entry& entry) {
  // std::hash of bytes is a fixed function of the bytes (no per-process salt in libstdc++), so
  // digests are reproducible; it only has to tell different entries apart.
  const std::uint64_t data_hash = std::hash<std::string_view>{}(entry.data());
  const std::uint64_t hash = data_hash ^ (static_cast<std::uint64_t>(entry.type()) << 56U);
  return EntryDigest{entry.term(), hash == 0 ? 1 : hash};  // 0 means "data unknown"
}

// ---- SafetyChecker ----

std::string SafetyChecker::on_apply(raft::NodeId id, const raftpb::Entry& entry) {
  const EntryDigest digest = digest_of(entry);
  auto [it, inserted] = committed_.emplace(entry.index(), digest);
  if (inserted) {
    record_command(entry);
    if (entry.type() == raftpb::ENTRY_CONF_CHANGE) {
      raftpb::ConfChange change;
      if (change.ParseFromString(entry.data())) conf_changes_.emplace(entry.index(), change);
    }
    return {};
  }
  if (it->second == digest) {
    return {};
  }
  return fmt::format(
      "state machine safety: replica {} applied index {} (term {}, hash {:016x}) but index {} "
      "was applied before as (term {}, hash {:016x})",
      id, entry.index(), digest.term, digest.hash, entry.index(), it->second.term, it->second.hash);
}

void SafetyChecker::record_command(const raftpb::Entry& entry) {
  rsmpb::Command command;
  if (entry.type() != raftpb::ENTRY_NORMAL || entry.data().empty() ||
      !command.ParseFromString(entry.data()) || !command.has_kv_put()) {
    return;
  }
  // Indexes are first observed in increasing order (a replica applies in order, and a snapshot
  // only holds what some replica applied), so this is the command's first commit.
  const auto [unused, fresh] = commands_.emplace(
      CommandName{command.origin(), command.incarnation(), command.request_id()}, entry.index());
  if (fresh) {
    first_write_of_value_.emplace(value_hash(command.kv_put().value()), entry.index());
  }
}

std::string SafetyChecker::check_write_revision(std::string_view value,
                                                std::uint64_t revision) const {
  auto it = first_write_of_value_.find(value_hash(value));
  if (it == first_write_of_value_.end()) {
    return fmt::format("a value was seen at revision {} but no committed command wrote it",
                       revision);
  }
  if (it->second == revision) {
    return {};
  }
  return fmt::format(
      "exactly once: a value was seen at revision {}, but the command that wrote it was first "
      "committed at index {}: a copy of the command took effect again",
      revision, it->second);
}

std::uint64_t SafetyChecker::value_hash(std::string_view value) {
  return std::hash<std::string_view>{}(value);
}

std::string SafetyChecker::on_status(const raft::NodeStatus& status, const raft::LogStorage& log) {
  if (status.role != raft::Role::kLeader) {
    return {};
  }
  auto [it, inserted] = leaders_.emplace(status.term, status.id);
  if (!inserted) {
    if (it->second == status.id) {
      return {};
    }
    return fmt::format("election safety: term {} has two leaders, {} and {}", status.term,
                       it->second, status.id);
  }
  return check_leader_completeness(status.id, status.term, log);
}

std::string SafetyChecker::check_leader_completeness(raft::NodeId id, raft::Term term,
                                                     const raft::LogStorage& log) const {
  if (committed_.empty()) {
    return {};
  }
  const raft::Index last_committed = committed_.rbegin()->first;
  if (log.last_index() < last_committed) {
    return fmt::format(
        "leader completeness: replica {} leads term {} with last index {}, but index {} is "
        "committed",
        id, term, log.last_index(), last_committed);
  }
  const raft::Index lo = std::max(log.first_index(), committed_.begin()->first);
  auto entries = read_entries(log, lo, last_committed + 1);
  if (!entries.ok()) {
    return fmt::format("leader {} cannot read its log [{}, {}]: {}", id, lo, last_committed,
                       entries.status().to_string());
  }
  const IndexView view{&log, &*entries, lo};
  for (auto it = committed_.lower_bound(log.first_index() - 1); it != committed_.end(); ++it) {
    auto mine = view.at(it->first);
    if (!mine.ok() || !same_entry(*mine, it->second)) {
      return fmt::format(
          "leader completeness: replica {} leads term {} but its entry {} is not the committed "
          "one (term {})",
          id, term, it->first, it->second.term);
    }
  }
  return {};
}

std::string SafetyChecker::check_log_matching(raft::NodeId a, const raft::LogStorage& la,
                                              raft::NodeId b, const raft::LogStorage& lb,
                                              raft::Index window) {
  const raft::Index hi = std::min(la.last_index(), lb.last_index());
  const raft::Index lo = std::max(la.first_index(), lb.first_index()) - 1;
  if (hi <= lo) {
    return {};  // No entry in common to compare.
  }
  const raft::Index from = window == 0 || hi - lo < window ? lo : hi - window + 1;
  const raft::Index fetch_lo = std::max(from, lo + 1);
  auto ea = read_entries(la, fetch_lo, hi + 1);
  auto eb = read_entries(lb, fetch_lo, hi + 1);
  if (!ea.ok() || !eb.ok()) {
    return fmt::format("log matching: cannot read [{}, {}] of replicas {} and {}", fetch_lo, hi, a,
                       b);
  }
  const IndexView va{&la, &*ea, fetch_lo};
  const IndexView vb{&lb, &*eb, fetch_lo};
  std::optional<raft::Index> matched;
  for (raft::Index i = hi + 1; i-- > from;) {
    auto da = va.at(i);
    auto db = vb.at(i);
    if (!da.ok() || !db.ok()) {
      return fmt::format("log matching: replicas {} and {} cannot answer term({})", a, b, i);
    }
    if (da->term == db->term && !same_entry(*da, *db)) {
      return fmt::format(
          "log matching: replicas {} and {} hold different entries of term {} at "
          "index {}",
          a, b, da->term, i);
    }
    if (da->term == db->term) {
      matched = matched.value_or(i);
    } else if (matched) {
      return fmt::format(
          "log matching: replicas {} and {} agree at index {} but differ at index {} (terms {} "
          "and {})",
          a, b, *matched, i, da->term, db->term);
    }
  }
  return {};
}

raft::Index SafetyChecker::max_committed() const {
  return committed_.empty() ? 0 : committed_.rbegin()->first;
}

// ---- SimCluster: replicas and clients ----

struct SimCluster::Replica {
  raft::NodeId id = raft::kNoNode;
  storage::MemEngine engine;
  SimTransport* transport = nullptr;  // owned by the network
  rsm::KvStateMachine state_machine;
  std::unique_ptr<rsm::Node> node;  // null while down
  std::uint64_t incarnation = 0;
  std::uint64_t failed_writes_seen = 0;  // injected failures (engine and log) accounted for
  storage::MemLogFs log_fs;              // the raft log's files (ClusterOptions::segment_log)
  // With the segment log, each round's log write runs after the apply it overlaps in
  // `herald serve`: the latest order rsm::LogWriter allows.
  rsm::DeferredLogWriter log_writer;
  storage::ManualDiskSpace disk{kSimDiskFreeBytes};
  bool below_floor = false;  // a disk-alarm episode holds: free space reads below the floor
  bool no_space = false;     // an ENOSPC episode holds: every write of its stores fails
  bool halted = false;       // stopped by a write its full disk refused; waits for space
  std::uint64_t full_refusals_seen = 0;  // writes refused for want of space, accounted for
  // When it halted: its durable hard state, and the newest committed index its durable log held
  // with that entry's term (check_halt_mark).
  struct HaltMark {
    raftpb::HardState hard_state;
    raft::Index committed = 0;
    raft::Term committed_term = 0;
  };
  std::optional<HaltMark> halt_mark;
  bool damaged = false;  // a record of its store was damaged on purpose and not yet found
  bool lies = false;     // its disk may lose synced writes when it crashes
  bool retired = false;  // stopped for good by the operator (a removed member)
  // A slow disk (ClusterOptions::slow_disks): the replica's thread is in a sync until
  // busy_until_ms; deliveries to it wait in `held`. During a round, round_syncs is the sync count
  // before it and round_latency_ms the latency a sync in it takes.
  bool slow = false;
  MonoMs busy_until_ms = 0;
  std::vector<rsmpb::PeerEnvelope> held;
  bool in_round = false;
  std::uint64_t round_syncs = 0;
  MonoMs round_latency_ms = 0;
  // What the log looked like at the last log check: (first, last, term of last).
  std::tuple<raft::Index, raft::Index, raft::Term> log_mark{0, 0, 0};
};

struct SimCluster::Client {
  struct Seen {
    std::uint64_t revision = 0;  // 0: the key was absent
    std::optional<std::string> value;
  };
  int index = 0;
  bool pending = false;
  bool issuing = false;     // inside the propose()/read_barrier() call
  std::uint64_t token = 0;  // identifies the pending operation
  raft::NodeId node = raft::kNoNode;
  std::size_t slot = 0;  // the pending operation's position in the history
  std::uint64_t next_value = 0;
  std::map<std::string, Seen> seen;  // the last state this client learned of each key
};

SimCluster::SimCluster(const ClusterOptions& options, ClusterScenario* scenario)
    : options_(options),
      scenario_(scenario),
      fault_rng_(derive_seed(options.seed, 1)),
      client_rng_(derive_seed(options.seed, 2)),
      crash_rng_(derive_seed(options.seed, 3)),
      lie_rng_(derive_seed(options.seed, kLieSalt)),
      slow_rng_(derive_seed(options.seed, kSlowLatencySalt)),
      network_(derive_seed(options.seed, 4), &clock_, link_bounds_for(options.seed)),
      storm_(fault_rng_.chance(kStormChance)) {
  HERALD_ASSERT(options.replicas == 3 || options.replicas == 5, "a cluster has 3 or 5 replicas");
  HERALD_ASSERT(options.spares >= 0, "a negative number of spares");
  for (int i = 1; i <= options.replicas + options.spares; ++i) {
    auto r = std::make_unique<Replica>();
    r->id = static_cast<raft::NodeId>(i);
    r->transport = &network_.add_node(r->id);
    replicas_.emplace(r->id, std::move(r));
  }
  for (int i = 0; i < options.clients; ++i) {
    auto c = std::make_unique<Client>();
    c->index = i;
    clients_.push_back(std::move(c));
  }
}

SimCluster::~SimCluster() = default;

void SimCluster::fail(std::string reason) {
  if (!failure_) {
    failure_ = fmt::format("t={}ms: {}", clock_.mono_ms(), reason);
  }
}

void SimCluster::log_event(const std::string& what) const {
  if (options_.verbose) {
    std::printf("  [%8lld ms] %s\n", static_cast<long long>(clock_.mono_ms()), what.c_str());
  }
}

void SimCluster::schedule(MonoMs at_ms, const Event& event) {
  events_.emplace(EventKey{at_ms, next_event_sequence_++}, event);
}

SimCluster::Replica& SimCluster::replica(raft::NodeId id) {
  auto it = replicas_.find(id);
  HERALD_ASSERT(it != replicas_.end(), "unknown replica");
  return *it->second;
}

std::vector<raft::NodeId> SimCluster::up_ids() const {
  std::vector<raft::NodeId> ids;
  for (const auto& [id, r] : replicas_) {
    if (r->node) {
      ids.push_back(id);
    }
  }
  return ids;
}

std::set<raft::NodeId> SimCluster::leader_members() const {
  std::set<raft::NodeId> members;
  const raft::NodeId leader = leader_hint();
  if (leader == raft::kNoNode) {
    return members;
  }
  const raftpb::ConfState& conf = replicas_.at(leader)->node->conf_state();
  members.insert(conf.voters().begin(), conf.voters().end());
  members.insert(conf.learners().begin(), conf.learners().end());
  return members;
}

void SimCluster::retire_replica(raft::NodeId id) {
  Replica& r = replica(id);
  if (r.retired) {
    return;
  }
  r.retired = true;
  log_event(fmt::format("the operator stops removed replica {} for good", id));
  if (!r.node) {
    return;  // down already; its restart will not happen
  }
  abandon_ops_on(id);
  r.node.reset();
  if (scenario_ != nullptr) {
    scenario_->on_replica_down(id);
  }
  network_.set_up(id, false);
}

bool SimCluster::retired(raft::NodeId id) const {
  return replicas_.at(id)->retired;
}

raft::NodeId SimCluster::leader_hint() const {
  for (const auto& [id, r] : replicas_) {
    if (r->node && r->node->status().role == raft::Role::kLeader) {
      return id;
    }
  }
  return raft::kNoNode;
}

// ---- Replica life cycle ----

Status SimCluster::open_replica(Replica& r) {
  ++r.incarnation;
  // A sync the previous incarnation was in ended with its process; what waited for it is lost.
  r.busy_until_ms = 0;
  r.held.clear();
  rsm::NodeConfig config;
  config.id = r.id;
  for (raft::NodeId id = 1; id <= static_cast<raft::NodeId>(options_.replicas); ++id) {
    config.initial_voters.push_back(id);
  }
  // A spare starts empty and waits for the leader to add it.
  config.join = r.id > static_cast<raft::NodeId>(options_.replicas);
  // A fresh seed per incarnation, as a restarted process would draw.
  config.seed = derive_seed(options_.seed, (r.id << 32U) + r.incarnation);
  config.compaction_threshold_entries = kSimCompactionThresholdEntries;
  config.log_tail_entries = kSimLogTailEntries;
  config.snapshot_chunk_bytes = kSimSnapshotChunkBytes;
  if (options_.segment_log) {
    config.log_fs = &r.log_fs;
    config.log_segment_bytes = kSimSegmentBytes;
    config.log_writer = &r.log_writer;
  }
  config.disk = &r.disk;
  config.min_free_bytes = kSimMinFreeBytes;
  // As `herald serve` does: the wall clock keeps incarnations rising whatever the disk lost.
  config.incarnation_floor = static_cast<std::uint64_t>(clock_.wall_ms());
  // The strict recovery rule: a restarted replica waits for every voter's report (the majority
  // fallback is only safe with high probability, docs/raft.md).
  config.recovery_fallback_ticks = 0;
  // Only a replica whose disk lies recovers after a restart; the others run with the operator's
  // "trust my disk". With every restart recovering, a replica rebuilt after damage can take with
  // it the log that a recovering peer was told to wait for, and a 3-replica cluster then has no
  // electable candidate (seed 493; docs/raft.md, "Recovering after a restart").
  config.trust_disk = !r.lies;
  config.planted_commit_without_quorum = options_.planted_bug == PlantedBug::kCommitWithoutQuorum;
  rsm::StateMachine* state_machine =
      scenario_ != nullptr ? scenario_->open_replica(r.id, &r.engine) : &r.state_machine;
  HERALD_ASSIGN_OR_RETURN(r.node, rsm::Node::open(config, &r.engine, r.transport, state_machine));
  const raft::NodeId id = r.id;
  r.node->set_apply_observer([this, id](const raftpb::Entry& entry) {
    std::string violation = safety_.on_apply(id, entry);
    if (!violation.empty()) {
      fail(std::move(violation));
    }
  });
  if (scenario_ != nullptr) {
    scenario_->on_replica_up(id, *r.node);
  }
  return Status::ok_status();
}

void SimCluster::start_replica(Replica& r) {
  const Status s = open_replica(r);
  if (!s.ok()) {
    r.node.reset();
    if (s.code() == Code::kIOError && take_injected_failure(r)) {
      log_event(fmt::format("replica {} failed to open (injected): {}", r.id, s.to_string()));
      schedule(clock_.mono_ms() + kIoFaultRestartMs,
               Event{EventKind::kRestart, r.id, -1, r.incarnation});
      return;
    }
    if (s.code() == Code::kCorruption && r.damaged) {
      rebuild_replica(r, s);
      return;
    }
    if (s.code() == Code::kResourceExhausted && take_full_refusal(r)) {
      // As `herald serve` would: it does not exit to be restarted in a loop on the same disk.
      ++stats_.enospc_halts;
      r.halted = true;
      log_event(fmt::format("replica {} cannot open on its full disk ({}): it waits for space",
                            r.id, s.to_string()));
      return;
    }
    fail(fmt::format("replica {} failed to open: {}", r.id, s.to_string()));
    return;
  }
  check_halt_mark(r);
  network_.set_up(r.id, true);
  const MonoMs first_tick = clock_.mono_ms() + 1 + static_cast<MonoMs>(fault_rng_.uniform(kTickMs));
  schedule(first_tick, Event{EventKind::kTick, r.id, -1, r.incarnation});
}

void SimCluster::crash_replica(Replica& r, MonoMs down_for_ms) {
  HERALD_ASSERT(r.node != nullptr, "only a running replica can crash");
  abandon_ops_on(r.id);
  r.node.reset();
  if (scenario_ != nullptr) {
    scenario_->on_replica_down(r.id);
  }
  network_.set_up(r.id, false);
  crash_stores(r);
  ++stats_.crashes;
  schedule(clock_.mono_ms() + down_for_ms, Event{EventKind::kRestart, r.id, -1, r.incarnation});
}

void SimCluster::crash_stores(Replica& r) {
  const bool lie = r.lies && lie_rng_.chance(kLieChance);
  std::uint64_t lost = 0;
  if (options_.segment_log) {
    // One power loss: the log's files lose their unsynced writes with the engine's. A lying disk
    // loses synced writes of the log's files; the state space keeps its synced writes (see
    // kLyingDiskChance).
    r.engine.crash(crash_rng_);
    if (lie) {
      lost = r.log_fs.crash_lying(lie_rng_);
    } else {
      r.log_fs.crash(crash_rng_);
    }
  } else if (lie) {
    lost = r.engine.crash_lying(lie_rng_);
  } else {
    r.engine.crash(crash_rng_);
  }
  if (lost > 0) {
    ++stats_.lying_disks;
    log_event(
        fmt::format("replica {}: its disk lied: {} synced writes lost in the crash", r.id, lost));
  }
}

void SimCluster::on_tick(const Event& event) {
  Replica& r = replica(event.node);
  if (!r.node || event.generation != r.incarnation) {
    return;  // The tick chain of a crashed incarnation ends here.
  }
  if (r.busy_until_ms <= clock_.mono_ms()) {
    r.node->tick();  // A replica in a slow sync misses its ticks, as its blocked thread would.
  }
  if (scenario_ != nullptr) {
    scenario_->on_tick(r.id);
  }
  schedule(clock_.mono_ms() + kTickMs, event);
}

void SimCluster::on_restart(const Event& event) {
  Replica& r = replica(event.node);
  if (r.node || r.retired || event.generation != r.incarnation) {
    return;  // Restarted already (the final heal restarts everyone), or stopped for good.
  }
  log_event(fmt::format("restart replica {}", r.id));
  start_replica(r);
}

bool SimCluster::take_injected_failure(Replica& r) {
  const std::uint64_t failed = r.engine.counters().failed_writes + r.log_fs.counters().failed_ops;
  if (failed <= r.failed_writes_seen) {
    return false;
  }
  r.failed_writes_seen = failed;
  return true;
}

bool SimCluster::take_full_refusal(Replica& r) {
  const std::uint64_t refused = r.engine.counters().full_writes + r.log_fs.counters().full_ops;
  if (refused <= r.full_refusals_seen) {
    return false;
  }
  r.full_refusals_seen = refused;
  return true;
}

void SimCluster::halt_replica(Replica& r, const Status& cause) {
  HERALD_ASSERT(r.node != nullptr, "only a running replica halts");
  ++stats_.enospc_halts;
  log_event(fmt::format("replica {} halts: its disk is full ({})", r.id, cause.to_string()));
  const raft::LogStorage& log = r.node->log();
  auto initial = log.initial_state();
  if (!initial.ok()) {
    fail(fmt::format("replica {}: its log has no hard state: {}", r.id,
                     initial.status().to_string()));
    return;
  }
  Replica::HaltMark mark;
  mark.hard_state = initial->hard_state;
  mark.committed = std::min<raft::Index>(initial->hard_state.commit(), log.last_index());
  if (mark.committed + 1 >= log.first_index()) {
    auto term = log.term(mark.committed);
    mark.committed_term = term.ok() ? *term : 0;
  }
  r.halt_mark = mark;
  // In flight requests: their outcome is unknown (the host answers them so).
  abandon_ops_on(r.id);
  r.node.reset();
  if (scenario_ != nullptr) {
    scenario_->on_replica_down(r.id);
  }
  network_.set_up(r.id, false);
  r.halted = true;  // no crash: its stores keep everything, unsynced writes included
}

void SimCluster::check_halt_mark(Replica& r) {
  if (!r.halt_mark) {
    return;
  }
  const Replica::HaltMark mark = *r.halt_mark;
  r.halt_mark.reset();
  const raft::LogStorage& log = r.node->log();
  auto initial = log.initial_state();
  if (!initial.ok()) {
    fail(fmt::format("replica {} reopened after its halt without a hard state: {}", r.id,
                     initial.status().to_string()));
    return;
  }
  const raftpb::HardState& now = initial->hard_state;
  const raftpb::HardState& then = mark.hard_state;
  // A failed write may have left part of itself behind (a torn round), never less than before.
  const bool kept_vote =
      now.term() > then.term() ||
      (now.term() == then.term() && (then.vote() == 0 || now.vote() == then.vote()));
  if (!kept_vote) {
    fail(fmt::format(
        "full disk: replica {} halted with term {} vote {} but reopened with term {} vote {}", r.id,
        then.term(), then.vote(), now.term(), now.vote()));
    return;
  }
  if (mark.committed_term == 0 || mark.committed + 1 < log.first_index()) {
    return;  // nothing committed to compare, or compacted by the reopen
  }
  auto term = log.term(mark.committed);
  if (log.last_index() < mark.committed || !term.ok() || *term != mark.committed_term) {
    fail(fmt::format(
        "full disk: replica {} held committed index {} (term {}) when it halted, but not after "
        "it reopened (last index {})",
        r.id, mark.committed, mark.committed_term, log.last_index()));
  }
}

void SimCluster::handle_process_error(Replica& r, const Status& status) {
  if (status.code() == Code::kResourceExhausted && take_full_refusal(r)) {
    halt_replica(r, status);
    return;
  }
  if (status.code() == Code::kIOError && take_injected_failure(r)) {
    // An injected disk failure: the replica must stop; it restarts like a crashed process.
    ++stats_.io_faults;
    log_event(fmt::format("replica {} stopped by an injected write failure", r.id));
    crash_replica(r, kIoFaultRestartMs);
    return;
  }
  if (status.code() == Code::kCorruption && r.damaged) {
    abandon_ops_on(r.id);
    r.node.reset();
    if (scenario_ != nullptr) {
      scenario_->on_replica_down(r.id);
    }
    network_.set_up(r.id, false);
    rebuild_replica(r, status);
    return;
  }
  fail(fmt::format("replica {}: process() failed: {}", r.id, status.to_string()));
}

void SimCluster::rebuild_replica(Replica& r, const Status& cause) {
  HERALD_ASSERT(r.node == nullptr, "rebuilding a running replica");
  log_event(fmt::format("replica {} found its damaged record ({}): rebuilding it empty", r.id,
                        cause.to_string()));
  storage::MemEngine fresh;
  storage::LogFs* const segments = options_.segment_log ? &r.log_fs : nullptr;
  auto floor =
      rsm::carry_over_for_rebuild(r.engine, segments, fresh, cause.to_string(), clock_.wall_ms());
  if (!floor.ok()) {
    fail(fmt::format("replica {}: rebuild failed: {}", r.id, floor.status().to_string()));
    return;
  }
  // The engine is replaced in place (the scenario holds it): everything goes, then the records
  // carried over are written back, synced.
  storage::WriteBatch batch;
  for (const storage::Space space :
       {storage::Space::kLog, storage::Space::kMeta, storage::Space::kState}) {
    batch.delete_range(space, "", rsm::kStateSpaceEnd);  // every key of every space sorts below
    for (auto it = fresh.scan(space, "", ""); it->valid(); it->next()) {
      batch.put(space, it->key(), it->value());
    }
  }
  const Status wiped = r.engine.write(batch, /*sync=*/true);
  if (wiped.code() == Code::kIOError && take_injected_failure(r)) {
    // An injected write failure: nothing was written; the next start finds the damage again.
    log_event(fmt::format("replica {}: the rebuild's write failed (injected)", r.id));
    schedule(clock_.mono_ms() + kIoFaultRestartMs,
             Event{EventKind::kRestart, r.id, -1, r.incarnation});
    return;
  }
  if (wiped.code() == Code::kResourceExhausted && take_full_refusal(r)) {
    // Nothing was written; the start once space returns finds the damage again.
    ++stats_.enospc_halts;
    r.halted = true;
    log_event(fmt::format("replica {}: the rebuild waits for space on its full disk", r.id));
    return;
  }
  if (!wiped.ok()) {
    fail(fmt::format("replica {}: rebuild write failed: {}", r.id, wiped.to_string()));
    return;
  }
  if (segments != nullptr) {
    // Only once the carried-over hard state is durable in the engine: the next open moves it
    // into a new segment log (rsm::Node's adoption of an engine log).
    const Status dropped = storage::remove_segment_files(segments);
    if (!dropped.ok()) {
      fail(fmt::format("replica {}: removing its segment files failed: {}", r.id,
                       dropped.to_string()));
      return;
    }
  }
  r.damaged = false;
  ++stats_.rebuilds;
  schedule(clock_.mono_ms() + kDamageRestartMs,
           Event{EventKind::kRestart, r.id, -1, r.incarnation});
}

void SimCluster::plan_lying_disk() {
  Rng rng(derive_seed(options_.seed, kLyingDiskSalt));
  if (!rng.chance(kLyingDiskChance)) {
    return;
  }
  const auto voters = static_cast<std::size_t>(options_.replicas);
  auto target = static_cast<raft::NodeId>(1 + rng.uniform(voters));
  if (damage_target_ != raft::kNoNode) {
    // Bad disks stay a minority: with 3 replicas a damaged one is already the one bad disk
    // allowed (a liar beside it could lose, with the rebuilt one, the only two copies of a
    // commit); with 5 the liar is another replica (a rollback could also bring a damaged record
    // back after its rebuild).
    if ((voters - 1) / 2 < 2) {
      return;
    }
    if (target == damage_target_) {
      target = target % voters + 1;
    }
  }
  Replica& r = replica(target);
  r.lies = true;
  // From its first open on: losing the bootstrap itself would make it a brand-new replica,
  // which is an operator's mistake (a new disk under an old id), not a lying disk.
  if (options_.segment_log) {
    r.log_fs.record_history();
  } else {
    r.engine.record_history();
  }
  log_event(fmt::format("replica {}: its disk lies about fsync", target));
}

void SimCluster::plan_slow_disks() {
  if (!options_.slow_disks) {
    return;
  }
  Rng rng(derive_seed(options_.seed, kSlowDiskSalt));
  if (!rng.chance(kSlowDiskChance)) {
    return;
  }
  const int count = rng.chance(kSecondSlowDiskChance) ? 2 : 1;
  std::vector<raft::NodeId> ids;
  for (const auto& [id, r] : replicas_) {
    ids.push_back(id);
  }
  for (int i = 0; i < count && !ids.empty(); ++i) {
    const std::size_t pick = rng.uniform(ids.size());
    Replica& r = replica(ids[pick]);
    ids.erase(ids.begin() + static_cast<std::ptrdiff_t>(pick));
    r.slow = true;
    ++stats_.slow_disks;
    // What a slow replica sends in a round after its sync leaves when the sync ends; what it
    // sends before (a leader's appends sent while it writes, docs/raft.md) leaves at once.
    network_.set_send_delay(r.id, [this, &r]() -> MonoMs {
      return r.slow && r.in_round && syncs_of(r) > r.round_syncs ? r.round_latency_ms : 0;
    });
    log_event(fmt::format("replica {} has a slow disk", r.id));
  }
}

void SimCluster::plan_damage() {
  Rng rng(derive_seed(options_.seed, kDamageSalt));
  if (!rng.chance(kDamageChance)) {
    return;
  }
  const auto target =
      static_cast<raft::NodeId>(1 + rng.uniform(static_cast<std::uint64_t>(options_.replicas)));
  const MonoMs at = rng.range(kFirstFaultMs, options_.faults_end_ms);
  const bool in_log = rng.chance(0.5);
  damage_target_ = target;
  schedule_call(at, [this, target, in_log] {
    Replica& r = replica(target);
    if (!r.node || r.damaged) {
      return;  // down already: the damage would go unseen until a restart anyway
    }
    const raft::Index last = r.node->log().last_index();
    const raft::Index first = r.node->log().first_index();
    crash_replica(r, kDamageRestartMs);
    // The record damaged is one the next start reads: the newest log entry still stored after
    // the crash, or the applied state.
    bool hit = false;
    if (in_log && options_.segment_log) {
      hit = damage_segment_log(r);
    } else if (in_log && last >= first) {
      for (raft::Index i = last; i >= first && !hit; --i) {
        hit = r.engine.corrupt(storage::Space::kLog, storage::log_key(i));
      }
    }
    if (!hit) {
      hit = r.engine.corrupt(storage::Space::kState, rsm::kAppliedStateKey);
    }
    if (hit) {
      r.damaged = true;
      ++stats_.damaged_records;
      log_event(fmt::format("replica {}: a stored {} is damaged", target,
                            in_log ? "log entry" : "applied state"));
    }
  });
}

bool SimCluster::damage_segment_log(Replica& r) {
  auto listed = r.log_fs.list();
  HERALD_ASSERT(listed.ok(), "a MemLogFs always lists its files");
  std::vector<std::pair<std::uint64_t, std::string>> segments;  // (seq, name), newest first
  for (const std::string& name : *listed) {
    if (name.size() == kSegmentNameHexDigits + storage::kSegmentSuffix.size() &&
        name.ends_with(storage::kSegmentSuffix)) {
      segments.emplace_back(std::stoull(name.substr(0, kSegmentNameHexDigits), nullptr, 16), name);
    }
  }
  std::sort(segments.rbegin(), segments.rend());
  std::size_t tried = 0;
  for (std::size_t k = 0; k < segments.size(); ++k) {
    const auto& [seq, name] = segments[k];
    const bool last = k == 0;
    const std::string bytes = r.log_fs.contents(name);
    const auto scan = storage::scan_segment(bytes, seq, last);
    if (!scan.ok()) {
      continue;
    }
    for (auto it = scan->records.rbegin(); it != scan->records.rend(); ++it) {
      if (it->kind != storage::RecordKind::kEntry) {
        continue;
      }
      if (++tried > kMaxDamageCandidates) {
        return false;
      }
      const std::uint64_t byte = it->offset + storage::kRecordHeaderBytes + it->payload.size() / 2;
      const bool flipped = r.log_fs.corrupt(name, byte);
      HERALD_ASSERT(flipped, "an entry record lies inside its segment");
      const bool found = !storage::scan_segment(r.log_fs.contents(name), seq, last).ok();
      if (found && storage::SegmentLog::salvage(&r.log_fs).ok()) {
        return true;
      }
      const bool restored = r.log_fs.corrupt(name, byte);  // the same bit again
      HERALD_ASSERT(restored, "an entry record lies inside its segment");
    }
  }
  return false;
}

// ---- Event loop ----

bool SimCluster::step() {
  const std::optional<MonoMs> net_ms = network_.next_delivery_ms();
  const bool timer_first = !events_.empty() && (!net_ms || events_.begin()->first.first <= *net_ms);
  if (events_.empty() && !net_ms) {
    return false;
  }
  if (timer_first) {
    auto it = events_.begin();
    const Event event = it->second;
    clock_.set_ms(it->first.first);
    events_.erase(it);
    dispatch(event);
  } else {
    clock_.set_ms(*net_ms);
    if (auto delivery = network_.pop_due(*net_ms)) {
      deliver(*delivery);
    }
  }
  process_all();
  check_all();
  ++stats_.events;
  return true;
}

void SimCluster::dispatch(const Event& event) {
  switch (event.kind) {
    case EventKind::kTick: on_tick(event); break;
    case EventKind::kRestart: on_restart(event); break;
    case EventKind::kClientOp: on_client_op(event.client); break;
    case EventKind::kClientTimeout: on_client_timeout(event); break;
    case EventKind::kFault: on_fault(); break;
    case EventKind::kHeal: on_heal(event); break;
    case EventKind::kSettleCheck: on_settle_check(); break;
    case EventKind::kCall: on_call(event); break;
  }
}

void SimCluster::schedule_call(MonoMs at_ms, std::function<void()> call) {
  const std::uint64_t name = next_call_++;
  calls_.emplace(name, std::move(call));
  schedule(std::max(at_ms, clock_.mono_ms()), Event{EventKind::kCall, raft::kNoNode, -1, name});
}

void SimCluster::on_call(const Event& event) {
  auto it = calls_.find(event.generation);
  HERALD_ASSERT(it != calls_.end(), "every scheduled call runs once");
  const std::function<void()> call = std::move(it->second);
  calls_.erase(it);
  call();
}

rsm::Node* SimCluster::node(raft::NodeId id) {
  return replica(id).node.get();
}

const rsm::Node* SimCluster::node(raft::NodeId id) const {
  auto it = replicas_.find(id);
  HERALD_ASSERT(it != replicas_.end(), "a replica of the cluster");
  return it->second->node.get();
}

void SimCluster::deliver(const Delivery& delivery) {
  Replica& r = replica(delivery.to);  // the link's end, whatever the envelope claims
  if (!r.node) {
    return;
  }
  if (r.busy_until_ms > clock_.mono_ms()) {
    r.held.push_back(delivery.envelope);  // its thread is in a sync
    return;
  }
  r.node->receive(delivery.envelope);
}

void SimCluster::process_all() {
  for (auto& [id, r] : replicas_) {
    if (r->node) {
      process_replica(*r);
    }
  }
}

std::uint64_t SimCluster::syncs_of(const Replica& r) {
  return r.engine.counters().syncs + r.log_fs.counters().syncs + r.log_fs.counters().dir_syncs;
}

void SimCluster::process_replica(Replica& r) {
  const MonoMs now = clock_.mono_ms();
  if (r.busy_until_ms > now) {
    return;
  }
  if (!r.held.empty()) {
    std::vector<rsmpb::PeerEnvelope> held;
    held.swap(r.held);
    for (const rsmpb::PeerEnvelope& envelope : held) {
      r.node->receive(envelope);
    }
  }
  if (r.slow) {
    r.in_round = true;
    r.round_syncs = syncs_of(r);
    const bool stall = slow_rng_.chance(kDiskStallChance);
    r.round_latency_ms = stall ? slow_rng_.range(kMinDiskStallMs, kMaxDiskStallMs)
                               : slow_rng_.range(kMinSlowSyncMs, kMaxSlowSyncMs);
  }
  const Status s = r.node->process();
  if (r.slow) {
    r.in_round = false;
    if (syncs_of(r) > r.round_syncs) {
      ++stats_.slow_syncs;
      if (r.round_latency_ms >= kMinDiskStallMs) {
        ++stats_.disk_stalls;
        log_event(fmt::format("replica {}: its disk stalls for {} ms", r.id, r.round_latency_ms));
      }
      r.busy_until_ms = now + r.round_latency_ms;
      schedule_call(r.busy_until_ms, [] {});  // the sync ends: process_all runs then
    }
  }
  if (!s.ok()) {
    handle_process_error(r, s);
  }
}

void SimCluster::check_all() {
  if (failure_) {
    return;
  }
  for (auto& [id, r] : replicas_) {
    if (!r->node) {
      continue;
    }
    std::string violation = safety_.on_status(r->node->status(), r->node->log());
    if (!violation.empty()) {
      fail(std::move(violation));
      return;
    }
  }
  for (const auto& [value, revision] : revision_checks_) {
    std::string violation = safety_.check_write_revision(value, revision);
    if (!violation.empty()) {
      fail(std::move(violation));
      return;
    }
  }
  revision_checks_.clear();
  stats_.leaders = safety_.leaders_seen();
  check_logs(stats_.events % kFullLogCheckEveryEvents == 0);
  if (scenario_ != nullptr && !failure_) {
    std::string violation = scenario_->check_after_event();
    if (!violation.empty()) {
      fail(std::move(violation));
    }
  }
}

void SimCluster::check_logs(bool full) {
  std::vector<Replica*> up;
  std::vector<bool> changed;
  for (auto& [id, r] : replicas_) {
    if (!r->node) {
      continue;
    }
    const raft::LogStorage& log = r->node->log();
    const raft::Index last = log.last_index();
    auto term = log.term(last);
    const decltype(r->log_mark) mark{log.first_index(), last, term.ok() ? *term : 0};
    changed.push_back(full || mark != r->log_mark);
    r->log_mark = mark;
    stats_.max_compacted_index = std::max(stats_.max_compacted_index, log.first_index() - 1);
    up.push_back(r.get());
  }
  for (std::size_t i = 0; i < up.size(); ++i) {
    for (std::size_t j = i + 1; j < up.size(); ++j) {
      if (!changed[i] && !changed[j]) {
        continue;
      }
      std::string violation =
          SafetyChecker::check_log_matching(up[i]->id, up[i]->node->log(), up[j]->id,
                                            up[j]->node->log(), full ? 0 : kLogCheckWindowEntries);
      if (!violation.empty()) {
        fail(std::move(violation));
        return;
      }
    }
  }
}

// ---- Faults ----

std::size_t SimCluster::impaired_count() const {
  std::set<raft::NodeId> impaired;
  for (const auto& [id, r] : replicas_) {
    if (!r->node && !r->retired) {
      impaired.insert(id);
    }
  }
  for (const auto& [id, r] : replicas_) {
    for (const auto& [other, unused] : replicas_) {
      if (network_.is_cut(id, other) && other != id) {
        impaired.insert(id);
      }
    }
  }
  return impaired.size();
}

raft::NodeId SimCluster::pick_target() {
  const raft::NodeId leader = leader_hint();
  if (leader != raft::kNoNode && fault_rng_.chance(kTargetLeaderChance)) {
    return leader;
  }
  return 1 + fault_rng_.uniform(replicas_.size());
}

void SimCluster::on_fault() {
  const MonoMs now = clock_.mono_ms();
  if (now >= options_.faults_end_ms) {
    return;
  }
  const FaultProfile& profile = storm_ ? kStormProfile : kSteadyProfile;
  schedule(now + fault_rng_.range(profile.min_gap_ms, profile.max_gap_ms),
           Event{EventKind::kFault});
  const raft::NodeId target = pick_target();
  // Of the initial voters: with spares, the membership may be smaller than the replicas.
  const std::size_t minority = (static_cast<std::size_t>(options_.replicas) - 1) / 2;
  const bool may_impair = impaired_count() < minority || fault_rng_.chance(profile.majority_chance);
  switch (pick_fault_kind(fault_rng_)) {
    case FaultKind::kCrash:
      if (may_impair && replica(target).node) {
        fault_crash(target);
      }
      break;
    case FaultKind::kPartition:
      if (may_impair) {
        fault_partition(target);
      }
      break;
    case FaultKind::kHeal:
      log_event("heal partitions");
      network_.heal_all();
      break;
    case FaultKind::kWeather: fault_weather(); break;
    case FaultKind::kDisk: fault_disk(target); break;
    case FaultKind::kTransfer:
      if (Replica& r = replica(target); r.node) {
        const raft::NodeId to = 1 + fault_rng_.uniform(replicas_.size());
        log_event(fmt::format("ask replica {} to transfer leadership to {}", target, to));
        r.node->transfer_leadership(to);
      }
      break;
  }
}

void SimCluster::fault_crash(raft::NodeId target) {
  const MonoMs down_ms = fault_rng_.range(kMinDownMs, kMaxDownMs);
  log_event(fmt::format("crash replica {} for {} ms", target, down_ms));
  crash_replica(replica(target), down_ms);
}

void SimCluster::fault_partition(raft::NodeId target) {
  network_.heal_all();
  const auto mode = static_cast<PartitionMode>(fault_rng_.uniform(kPartitionModes));
  std::set<raft::NodeId> side{target};
  if (mode == PartitionMode::kMinority && replicas_.size() == 5) {
    side.insert(1 + (target + fault_rng_.uniform(4)) % 5);  // a second replica, not the target
  }
  for (const auto& [a, unused_a] : replicas_) {
    for (const auto& [b, unused_b] : replicas_) {
      if (a == b) {
        continue;
      }
      const bool crosses = side.contains(a) != side.contains(b);
      switch (mode) {
        case PartitionMode::kIsolate:
        case PartitionMode::kMinority:
          if (crosses) network_.cut(a, b);
          break;
        case PartitionMode::kOneWay:  // the side hears the others but cannot answer
          if (crosses && side.contains(a)) network_.cut(a, b);
          break;
        case PartitionMode::kRandomLinks:
          if (fault_rng_.chance(kRandomLinkCutChance)) network_.cut(a, b);
          break;
      }
    }
  }
  ++stats_.partitions;
  const MonoMs heal_ms = fault_rng_.range(kMinPartitionMs, kMaxPartitionMs);
  log_event(fmt::format("partition ({}) around replica {} for {} ms", partition_mode_name(mode),
                        target, heal_ms));
  schedule(clock_.mono_ms() + heal_ms,
           Event{EventKind::kHeal, raft::kNoNode, -1, ++partition_episode_});
}

void SimCluster::fault_weather() {
  static constexpr double kLoss[] = {0.0, 0.01, 0.05, 0.2};
  static constexpr double kDuplicate[] = {0.0, 0.01, 0.05};
  static constexpr MonoMs kMaxDelay[] = {kDefaultMaxDelayMs, 20, 60, 150};
  NetworkFaults f;
  f.loss = kLoss[fault_rng_.uniform(std::size(kLoss))];
  f.duplicate = kDuplicate[fault_rng_.uniform(std::size(kDuplicate))];
  if (!options_.duplicate_messages) {
    f.duplicate = 0.0;  // The draw above still happens, so the rest of the schedule is the same.
  }
  f.max_delay_ms = kMaxDelay[fault_rng_.uniform(std::size(kMaxDelay))];
  log_event(fmt::format("network: loss {} duplicate {} delay [{}, {}] ms", f.loss, f.duplicate,
                        f.min_delay_ms, f.max_delay_ms));
  network_.set_faults(f);
}

void SimCluster::fault_disk(raft::NodeId target) {
  const auto count = static_cast<std::uint64_t>(fault_rng_.range(1, 2));
  log_event(fmt::format("replica {}: the next {} disk writes fail", target, count));
  replica(target).engine.fail_writes(count);
  if (options_.segment_log) {
    replica(target).log_fs.fail_ops(count);  // the log is on the same failing disk
  }
}

void SimCluster::plan_full_disk() {
  Rng rng(derive_seed(options_.seed, 6));
  if (!rng.chance(kFullDiskChance)) {
    return;
  }
  const auto target =
      static_cast<raft::NodeId>(1 + rng.uniform(static_cast<std::uint64_t>(options_.replicas)));
  const MonoMs length = rng.range(kMinFullDiskMs, kMaxFullDiskMs);
  const MonoMs start = rng.range(kFirstFaultMs, options_.faults_end_ms - length);
  schedule_call(start, [this, target, length] {
    log_event(fmt::format("replica {}: the disk is below its free-space floor for {} ms", target,
                          length));
    ++stats_.full_disks;
    replica(target).below_floor = true;
    update_disk_figure(replica(target));
    schedule_call(clock_.mono_ms() + length, [this, target] {
      log_event(fmt::format("replica {}: disk space freed", target));
      replica(target).below_floor = false;
      update_disk_figure(replica(target));
    });
  });
}

void SimCluster::update_disk_figure(Replica& r) {
  r.disk.set(r.no_space ? 0 : r.below_floor ? kSimMinFreeBytes - 1 : kSimDiskFreeBytes);
}

void SimCluster::plan_enospc() {
  Rng rng(derive_seed(options_.seed, kEnospcSalt));
  if (!rng.chance(kEnospcChance)) {
    return;
  }
  const auto target =
      static_cast<raft::NodeId>(1 + rng.uniform(static_cast<std::uint64_t>(options_.replicas)));
  const MonoMs length = rng.range(kMinEnospcMs, kMaxEnospcMs);
  const MonoMs start = rng.range(kFirstFaultMs, options_.faults_end_ms - length);
  schedule_call(start, [this, target, length] {
    Replica& r = replica(target);
    if (r.retired) {
      return;  // removed from the cluster: its disk no longer matters
    }
    log_event(
        fmt::format("replica {}: its disk is full for {} ms: every write fails", target, length));
    ++stats_.enospc_disks;
    r.no_space = true;
    r.engine.set_full(true);
    r.log_fs.set_full(true);
    update_disk_figure(r);
    schedule_call(clock_.mono_ms() + length, [this, target] { free_disk(replica(target)); });
  });
}

void SimCluster::free_disk(Replica& r) {
  if (!r.no_space) {
    return;  // freed already (the final heal)
  }
  log_event(fmt::format("replica {}: space returns on its disk", r.id));
  r.no_space = false;
  r.engine.set_full(false);
  r.log_fs.set_full(false);
  update_disk_figure(r);
  if (r.halted) {
    r.halted = false;
    if (!r.node && !r.retired) {
      log_event(fmt::format("the operator restarts replica {}", r.id));
      start_replica(r);
    }
  }
}

void SimCluster::on_heal(const Event& event) {
  if (event.generation == 0) {
    heal_everything();
  } else if (event.generation == partition_episode_) {
    log_event("heal partitions");
    network_.heal_all();
  }
}

void SimCluster::heal_everything() {
  log_event("final heal: restart every replica, heal every link, calm network");
  network_.heal_all();
  network_.set_faults(NetworkFaults{});
  for (auto& [id, r] : replicas_) {
    // Every disk has room again; a replica halted on a full one starts below with the others.
    r->no_space = false;
    r->below_floor = false;
    r->halted = false;
    r->slow = false;  // a sync already under way still ends at its time
    r->engine.set_full(false);
    r->log_fs.set_full(false);
    update_disk_figure(*r);
    if (!r->node && !r->retired) {
      start_replica(*r);
    }
  }
}

// ---- Clients ----

void SimCluster::on_client_op(int client_index) {
  Client& c = *clients_[client_index];
  const MonoMs now = clock_.mono_ms();
  if (c.pending || now >= options_.traffic_end_ms) {
    return;
  }
  const std::vector<raft::NodeId> ids = up_ids();
  if (ids.empty()) {
    schedule(now + kNoReplicaRetryMs, Event{EventKind::kClientOp, raft::kNoNode, client_index});
    return;
  }
  Replica& r = replica(ids[client_rng_.uniform(ids.size())]);
  c.pending = true;
  ++c.token;
  c.node = r.id;
  c.slot = history_.size();
  const Event timeout{EventKind::kClientTimeout, raft::kNoNode, client_index, c.token};
  if (client_rng_.chance(kReadFraction)) {
    issue_read(c, r);
  } else {
    issue_write(c, r);
  }
  if (c.pending && c.token == timeout.generation) {
    schedule(now + kClientTimeoutMs, timeout);
  }
}

void SimCluster::on_client_timeout(const Event& event) {
  Client& c = *clients_[event.client];
  if (c.pending && c.token == event.generation) {
    finish_op(c, /*keep=*/true, /*known=*/false);  // It may still be applied later.
  }
}

void SimCluster::issue_write(Client& c, Replica& r) {
  const std::string key = fmt::format("k{}", client_rng_.uniform(kKeyCount));
  const auto padding = static_cast<std::size_t>(client_rng_.range(0, kMaxValuePaddingBytes));
  std::string value = fmt::format("c{}.{}|", c.index, c.next_value++) + std::string(padding, '.');
  const MonoMs now = clock_.mono_ms();
  rsmpb::Command command;
  command.set_wall_ms(clock_.wall_ms());
  const double roll = client_rng_.unit();
  if (roll < kDeleteFraction) {
    command.mutable_kv_delete()->set_key(key);
    history_.push_back(KvOp::del(c.index, now, kUnknownReturnTime, key));
  } else if (roll < kDeleteFraction + kCasFraction) {
    const Client::Seen seen = c.seen[key];
    auto* put = command.mutable_kv_put();
    put->set_key(key);
    put->set_value(value);
    put->set_has_expected_revision(true);
    put->set_expected_revision(seen.revision);
    history_.push_back(KvOp::cas(c.index, now, kUnknownReturnTime, key, seen.value, value, false));
  } else {
    command.mutable_kv_put()->set_key(key);
    command.mutable_kv_put()->set_value(value);
    history_.push_back(KvOp::put(c.index, now, kUnknownReturnTime, key, value));
  }
  history_kept_.push_back(true);
  const int index = c.index;
  const std::uint64_t token = c.token;
  c.issuing = true;
  r.node->propose(std::move(command),
                  [this, index, token](const Result<rsmpb::CommandResult>& result) {
                    complete_write(index, token, clients_[index]->issuing, result);
                  });
  c.issuing = false;
}

void SimCluster::complete_write(int client_index, std::uint64_t token, bool sync,
                                const Result<rsmpb::CommandResult>& result) {
  Client& c = *clients_[client_index];
  if (!c.pending || c.token != token) {
    return;
  }
  if (!result.ok()) {
    // Refused before it was proposed: it never happened. Otherwise it may still happen.
    finish_op(c, /*keep=*/!sync, /*known=*/false);
    return;
  }
  KvOp& op = history_[c.slot];
  const auto code = static_cast<Code>(result->code());
  if (code == Code::kAborted) {
    finish_op(c, /*keep=*/false, /*known=*/false);  // Refused at apply: it took no effect.
    return;
  }
  const bool cas_refused = op.kind == KvOpKind::kCas && code == Code::kFailedPrecondition;
  if (code != Code::kOk && !cas_refused) {
    fail(fmt::format("client {}: unexpected result {} ({}) for {}", client_index, result->code(),
                     result->message(), describe_op(op)));
    return;
  }
  op.return_time = clock_.mono_ms();
  op.cas_ok = op.kind == KvOpKind::kCas && code == Code::kOk;
  const bool now_absent =
      op.kind == KvOpKind::kDelete || (cas_refused && result->current_revision() == 0);
  if (now_absent) {
    c.seen[op.key] = Client::Seen{};
  } else if (code == Code::kOk) {
    c.seen[op.key] = Client::Seen{result->revision(), op.value};
    expect_first_write(op.value, result->revision());
  }
  finish_op(c, /*keep=*/true, /*known=*/true);
}

void SimCluster::issue_read(Client& c, Replica& r) {
  const std::string key = fmt::format("k{}", client_rng_.uniform(kKeyCount));
  history_.push_back(KvOp::get(c.index, clock_.mono_ms(), kUnknownReturnTime, key, std::nullopt));
  history_kept_.push_back(true);
  const int index = c.index;
  const std::uint64_t token = c.token;
  c.issuing = true;
  r.node->read_barrier([this, index, token](const Status& status) {
    complete_read(index, token, clients_[index]->issuing, status);
  });
  c.issuing = false;
}

void SimCluster::complete_read(int client_index, std::uint64_t token, bool sync,
                               const Status& status) {
  Client& c = *clients_[client_index];
  if (!c.pending || c.token != token) {
    return;
  }
  if (!status.ok()) {
    finish_op(c, /*keep=*/!sync, /*known=*/false);
    return;
  }
  KvOp& op = history_[c.slot];
  auto value = rsm::KvStateMachine::read(replica(c.node).node->engine(), op.key);
  if (!value.ok()) {
    fail(fmt::format("client {}: read of {} failed: {}", client_index, op.key,
                     value.status().to_string()));
    return;
  }
  op.return_time = clock_.mono_ms();
  if (*value) {
    expect_first_write((*value)->value(), (*value)->revision());
    op.observed = (*value)->value();
    c.seen[op.key] = Client::Seen{(*value)->revision(), (*value)->value()};
  } else {
    c.seen[op.key] = Client::Seen{};
  }
  finish_op(c, /*keep=*/true, /*known=*/true);
}

void SimCluster::expect_first_write(std::string_view value, std::uint64_t revision) {
  // Checked after the event: a replica answers its clients before its apply observer runs.
  revision_checks_.emplace_back(std::string(value), revision);
}

void SimCluster::finish_op(Client& c, bool keep, bool known) {
  const bool write = history_[c.slot].kind != KvOpKind::kGet;
  if (!keep) {
    history_kept_[c.slot] = false;
    ++stats_.rejected_ops;
  } else if (!known && write) {
    ++stats_.unknown_ops;
  } else if (known) {
    ++(write ? stats_.acked_writes : stats_.acked_reads);
  }
  c.pending = false;
  const MonoMs next = clock_.mono_ms() + static_cast<MonoMs>(client_rng_.uniform(kMaxThinkMs + 1));
  schedule(next, Event{EventKind::kClientOp, raft::kNoNode, c.index});
}

void SimCluster::abandon_ops_on(raft::NodeId id) {
  for (auto& c : clients_) {
    if (c->pending && c->node == id) {
      finish_op(*c, /*keep=*/true, /*known=*/false);  // It may have been committed.
    }
  }
}

// ---- Settling and final checks ----

void SimCluster::on_settle_check() {
  if (converged()) {
    settled_ = true;
    return;
  }
  schedule(clock_.mono_ms() + kSettleCheckPeriodMs, Event{EventKind::kSettleCheck});
}

std::string SimCluster::describe_replicas() const {
  std::string out;
  for (const auto& [id, r] : replicas_) {
    if (!out.empty()) {
      out += "; ";
    }
    if (!r->node) {
      out += fmt::format("replica {} down", id);
      continue;
    }
    const raft::NodeStatus st = r->node->status();
    out += fmt::format("replica {}: term {} {} commit {} applied {} log [{}, {}]", id, st.term,
                       st.role == raft::Role::kLeader ? "leader" : "not leader", st.commit,
                       r->node->applied_index(), r->node->log().first_index(),
                       r->node->log().last_index());
  }
  return out;
}

bool SimCluster::converged() const {
  for (const auto& c : clients_) {
    if (c->pending) {
      return false;
    }
  }
  // Every member the leader knows must run and have applied what it committed; other replicas
  // (spares not added, removed ones) take no part.
  const std::set<raft::NodeId> members = leader_members();
  if (members.empty()) {
    return false;
  }
  std::optional<raft::Index> applied;
  for (const raft::NodeId id : members) {
    const Replica* r = replicas_.at(id).get();
    if (!r->node) {
      return false;
    }
    const raft::NodeStatus st = r->node->status();
    if (st.commit != r->node->applied_index() || applied.value_or(st.commit) != st.commit) {
      return false;
    }
    applied = st.commit;
    if (!r->node->disk_alarms().empty()) {
      return false;  // Freed disks clear their alarms within a check interval.
    }
  }
  if (applied.value_or(0) < safety_.max_committed()) {
    return false;
  }
  return scenario_ == nullptr || scenario_->unsettled().empty();
}

void SimCluster::final_checks() {
  check_logs(/*full=*/true);
  std::optional<std::vector<std::pair<std::string, std::string>>> reference;
  raft::NodeId reference_id = raft::kNoNode;
  for (const raft::NodeId id : leader_members()) {
    const Replica* r = replicas_.at(id).get();
    std::vector<std::pair<std::string, std::string>> contents;
    auto it = r->node->engine().scan(storage::Space::kState, "", "");
    for (; it->valid(); it->next()) {
      contents.emplace_back(std::string(it->key()), std::string(it->value()));
    }
    if (!it->status().ok()) {
      fail(fmt::format("replica {}: state scan failed: {}", id, it->status().to_string()));
      return;
    }
    if (!reference) {
      reference = std::move(contents);
      reference_id = id;
    } else if (contents != *reference) {
      fail(fmt::format("convergence: replicas {} and {} hold different state ({} and {} keys)",
                       reference_id, id, reference->size(), contents.size()));
      return;
    }
  }
  if (options_.clients > 0) {
    if (stats_.acked_writes == 0) {
      fail("no write was acknowledged: the cluster made no progress");
      return;
    }
    check_history();
  }
  if (scenario_ != nullptr && !failure_) {
    std::string violation = scenario_->final_check();
    if (!violation.empty()) {
      fail(std::move(violation));
    }
  }
}

void SimCluster::check_history() {
  std::vector<KvOp> kept;
  for (std::size_t i = 0; i < history_.size(); ++i) {
    if (history_kept_[i]) {
      kept.push_back(history_[i]);
    }
  }
  const CheckResult result = check_kv_history(kept);
  stats_.linearizability_steps = static_cast<std::uint64_t>(result.search_steps);
  if (result.verdict == CheckResult::kIllegal) {
    if (options_.verbose) {
      std::printf("  history of key \"%s\":\n", result.illegal_key.c_str());
      for (const KvOp& op : kept) {
        if (op.key == result.illegal_key) {
          std::printf("    %s\n", describe_op(op).c_str());
        }
      }
    }
    fail("linearizability: " + result.explanation);
  } else if (result.verdict == CheckResult::kUnknown) {
    fail("linearizability undecided: " + result.explanation);
  }
}

RunResult SimCluster::run() {
  for (auto& [id, r] : replicas_) {
    start_replica(*r);
  }
  for (int i = 0; i < options_.clients; ++i) {
    schedule(static_cast<MonoMs>(client_rng_.uniform(kMaxThinkMs + 1)),
             Event{EventKind::kClientOp, raft::kNoNode, i});
  }
  if (options_.faults) {
    log_event(fmt::format("fault profile: {}", storm_ ? kStormProfile.name : kSteadyProfile.name));
    schedule(kFirstFaultMs, Event{EventKind::kFault});
    plan_full_disk();
    plan_enospc();
    plan_damage();
    plan_lying_disk();
    plan_slow_disks();
  }
  schedule(options_.faults_end_ms, Event{EventKind::kHeal, raft::kNoNode, -1, 0});
  schedule(options_.traffic_end_ms, Event{EventKind::kSettleCheck});
  while (!failure_ && !settled_) {
    if (clock_.mono_ms() > options_.settle_limit_ms) {
      const std::string waiting = scenario_ != nullptr ? scenario_->unsettled() : "";
      fail(waiting.empty()
               ? "the cluster did not converge after the final heal (" + describe_replicas() + ")"
               : "the run did not settle after the final heal: " + waiting);
      break;
    }
    if (!step()) {
      fail("nothing left to simulate");
    }
  }
  if (!failure_) {
    final_checks();
  }
  stats_.storm = storm_;
  stats_.end_ms = clock_.mono_ms();
  stats_.network = network_.counters();
  RunResult result;
  result.ok = !failure_;
  result.failure = failure_.value_or("");
  result.stats = stats_;
  return result;
}

}  // namespace herald::sim
