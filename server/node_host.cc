#include "server/node_host.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "base/encoding.h"
#include "base/log.h"
#include "base/process.h"
#include "messaging/host.h"
#include "rsm/kv_state_machine.h"
#include "rsm/rebuild.h"
#include "server/log_writer_thread.h"
#include "server/peer_transport.h"
#include "server/recording_provider.h"
#include "server/replica_rebuild.h"
#include "server/workflow_host.h"
#include "storage/log_fs.h"
#include "storage/rocksdb_engine.h"
#include "storage/segment_log.h"
#include "webhooks/delivery.h"
#include "webhooks/emitter.h"
#include "webhooks/endpoints.h"
#include "webhooks/handler.h"

namespace herald::server {

namespace asio = boost::asio;

// The liveness beacon stands in for a raft thread blocked at most this long (NodeHost::Impl).
inline constexpr MonoMs kBeaconMaxStallMs = 1'000;
// Malformed node figures from peers are logged at most once per this interval.
inline constexpr MonoMs kFiguresWarnIntervalMs = 10'000;

namespace {

// This process's resident set from /proc/self/statm (pages), or 0 where it cannot be read.
std::uint64_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::uint64_t size_pages = 0;
  std::uint64_t resident_pages = 0;
  if (!(statm >> size_pages >> resident_pages)) {
    return 0;
  }
  const long page_bytes = sysconf(_SC_PAGESIZE);
  return page_bytes > 0 ? resident_pages * static_cast<std::uint64_t>(page_bytes) : 0;
}

}  // namespace

// A frame must hold the largest message raft or a snapshot stream builds, with room for the
// envelope: a refused send of an oversize message would be rebuilt and refused forever.
inline constexpr std::uint64_t kEnvelopeOverheadBytes = 64ULL * 1024;
static_assert(kMaxFrameBytes >= raft::kDefaultMaxMsgBytes * 2 + kEnvelopeOverheadBytes,
              "peer frames must hold a full MSG_APP batch (entries may exceed the soft bound)");
static_assert(kMaxFrameBytes >= rsm::kSnapshotChunkBytes + kEnvelopeOverheadBytes,
              "peer frames must hold a snapshot chunk");
static_assert(kMaxQueuedBytesPerPeer >= rsm::kSnapshotWindowBytes + kMaxFrameBytes,
              "a peer queue must hold the snapshot window plus one full frame");

struct NodeHost::Impl {
  NodeHostOptions options;
  SystemClock clock;
  std::unique_ptr<storage::RocksDbEngine> engine;
  std::unique_ptr<storage::PosixLogFs> log_fs;  // the raft log's directory (options.segment_log)
  // Where the segment log's round writes run while the replica applies (outlives the node).
  std::unique_ptr<ThreadLogWriter> log_writer;
  std::unique_ptr<TcpPeerTransport> transport;
  NodeMetrics metrics;
  rsm::KvStateMachine kv;
  rsm::StateMachineRouter router{&kv};
  std::unique_ptr<RecordingPushProvider> default_push;
  std::unique_ptr<RecordingEmailProvider> default_email;
  std::unique_ptr<messaging::Host> messaging;
  webhooks::Endpoints webhook_endpoints;
  webhooks::Emitter webhook_emitter;
  std::unique_ptr<webhooks::PostHandler> webhook_handler;
  std::unique_ptr<WorkflowHost> workflows;
  std::unique_ptr<rsm::Node> node;
  ChangeListener change_listener;        // raft thread only
  EphemeralListener ephemeral_listener;  // raft thread only

  // Every member's peer address, self included: options.peers until the membership is known,
  // then the members of the applied configuration (sync_members()). Read by the beacon thread.
  mutable std::mutex peers_mu;
  std::map<raft::NodeId, std::string> peers;  // guarded by peers_mu
  std::string synced_conf;                    // raft thread: the ConfState last synced, serialized

  struct PendingTransfer {
    raft::NodeId to = raft::kNoNode;
    MonoMs deadline_ms = 0;
    std::function<void(Status)> done;
  };
  std::vector<PendingTransfer> transfers;  // raft thread only

  std::atomic<bool> backup_running{false};
  std::thread backup_thread;  // the last backup's writer; joined by stop() and the next backup

  // The replica's listener: the workflow runtime, then the messaging changes.
  class Listener final : public rsm::NodeListener {
   public:
    explicit Listener(Impl* impl) : impl_(impl) {}
    void on_applied() override {
      impl_->sync_members();
      impl_->workflows->on_applied();
      std::vector<messaging::ChangeNotice> changes = impl_->messaging->domain()->take_changes();
      if (impl_->change_listener) {
        impl_->change_listener(std::move(changes), impl_->clock.wall_ms());
      }
    }
    void on_leadership(bool leader) override { impl_->workflows->on_leadership(leader); }
    // Every user's stream may have moved: one notice with an empty user id says so.
    void on_snapshot_installed() override {
      impl_->sync_members();
      if (impl_->change_listener) {
        impl_->change_listener({messaging::ChangeNotice{}}, impl_->clock.wall_ms());
      }
    }

   private:
    Impl* impl_;
  };
  Listener listener{this};

  asio::io_context io{1};
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  asio::steady_timer tick_timer{io};
  std::thread raft_thread;
  bool process_scheduled = false;  // raft thread only
  std::atomic<bool> stopped{false};

  // The liveness beacon: while the raft thread is blocked inside one call (an fsync, a storage
  // write stall, a CPU-starved stretch) for longer than a heartbeat period, and for at most
  // kBeaconMaxStallMs, a leader's beacon thread sends liveness heartbeats for it. A thread
  // blocked longer sends nothing, so followers elect a new leader; a crashed node sends nothing.
  std::thread beacon_thread;
  std::mutex beacon_mu;
  std::condition_variable beacon_cv;
  std::atomic<raft::Term> leader_term{0};   // 0 unless leader; set by the raft thread
  std::atomic<MonoMs> raft_progress_ms{0};  // when the raft thread last finished a handler
  std::atomic<raft::NodeId> known_leader{raft::kNoNode};  // set by the raft thread
  // Set once, by the raft thread, when a storage write found the disk full: the replica stops
  // (see run_process) but the process stays up.
  std::atomic<bool> halted{false};
  std::atomic<bool> damage_logged{false};  // report_damage() logs a damage it leaves alone once
  std::unique_ptr<storage::StatvfsDiskSpace> disk;
  // What health() reports besides the atomics; written by the raft thread when it changes.
  mutable std::mutex health_mu;
  std::string halt_reason;                  // guarded by health_mu
  std::vector<raft::NodeId> disk_alarms;    // guarded by health_mu
  std::set<raft::NodeId> published_alarms;  // raft thread only: what disk_alarms last took

  // Node figures (server/node_figures.h), raft thread only: this node's recent latencies, the
  // latest figures of each other member, and when this node last sent its own.
  RecentLatency fsync_latency;
  RecentLatency commit_latency;
  RecentLatency apply_latency;
  std::uint64_t figures_seen_syncs = 0;
  std::uint64_t figures_seen_applies = 0;
  FiguresBook peer_figures;
  MonoMs figures_sent_ms = 0;
  MonoMs figures_warned_ms = 0;
  std::uint64_t figures_dropped = 0;  // malformed figures received (dropped)

  // The other members' ids (beacon, broadcast). Any thread.
  std::vector<raft::NodeId> other_members() const {
    const std::lock_guard lock(peers_mu);
    std::vector<raft::NodeId> ids;
    for (const auto& [id, address] : peers) {
      if (id != options.node.id) ids.push_back(id);
    }
    return ids;
  }

  // How many members this replica knows, itself included. Any thread.
  std::size_t member_count() const {
    const std::lock_guard lock(peers_mu);
    return peers.size();
  }

  // Where member `id` is reached: the --peers flag's address, else its address record.
  std::optional<std::string> member_address(raft::NodeId id) const {
    if (const auto it = options.peers.find(id); it != options.peers.end()) return it->second;
    auto record = engine->get(storage::Space::kState, rsm::member_address_key(id));
    std::string_view address;
    if (!record.ok() || !record->has_value() || !open_record(**record, address)) {
      return std::nullopt;
    }
    return std::string(address);
  }

  // Raft thread, after each applied batch and snapshot: when the membership changed, the
  // transport learns every new member's address and `peers` becomes the members.
  void sync_members() {
    const raftpb::ConfState& conf = node->conf_state();
    std::string seen = conf.SerializeAsString();
    if (seen == synced_conf || (conf.voters().empty() && conf.learners().empty())) return;
    synced_conf = std::move(seen);
    std::map<raft::NodeId, std::string> members;
    for (const auto* ids : {&conf.voters(), &conf.learners()}) {
      for (const raft::NodeId id : *ids) {
        std::optional<std::string> address = member_address(id);
        if (!address.has_value()) {
          spdlog::warn("replica {}: no peer address is known for member {}", options.node.id, id);
          continue;
        }
        if (id != options.node.id) {
          if (const Status s = transport->add_peer(id, *address); !s.ok()) {
            spdlog::warn("replica {}: cannot reach member {} at {}: {}", options.node.id, id,
                         *address, s.to_string());
            continue;
          }
        }
        members.emplace(id, std::move(*address));
      }
    }
    const std::lock_guard lock(peers_mu);
    peers = std::move(members);
  }

  // Raft thread: answers the leadership transfers that completed or ran out of time.
  void check_transfers() {
    if (transfers.empty()) return;
    const raft::NodeId leader = known_leader.load();
    const MonoMs now = clock.mono_ms();
    std::vector<std::pair<std::function<void(Status)>, Status>> answers;
    std::erase_if(transfers, [&](PendingTransfer& t) {
      if (leader == t.to) {
        answers.emplace_back(std::move(t.done), Status::ok_status());
        return true;
      }
      if (now >= t.deadline_ms) {
        answers.emplace_back(
            std::move(t.done),
            Status::timeout(fmt::format("node {} did not take over within {} ms (the leader is {})",
                                        t.to, kTransferTimeoutMs, leader)));
        return true;
      }
      return false;
    });
    for (auto& [done, status] : answers) done(status);
  }

  // Raft thread: records progress and whether this replica leads, after each handler.
  void publish_progress() {
    const raft::NodeStatus st = node->status();
    set_log_term(st.term);  // every JSON log line of this process carries it (base/log.h)
    leader_term.store(st.role == raft::Role::kLeader ? st.term : 0);
    known_leader.store(st.leader);
    raft_progress_ms.store(clock.mono_ms());
    if (node->disk_alarms() != published_alarms) {
      published_alarms = node->disk_alarms();
      const std::lock_guard lock(health_mu);
      disk_alarms.assign(published_alarms.begin(), published_alarms.end());
    }
  }

  // Raft thread. The disk is full: a storage write failed and RocksDB refuses writes until it is
  // reopened. Exiting would only crash-loop under a supervisor (the disk is still full at the
  // next start), so the replica stops taking part: no ticks, no peer messages, every request
  // refused. Its data stays as last written; the rest of the cluster elects without it.
  void halt(const Status& cause) {
    halted.store(true);
    leader_term.store(0);  // the beacon must not speak for a replica that stopped
    tick_timer.cancel();
    {
      const std::lock_guard lock(health_mu);
      halt_reason = cause.to_string();
    }
    spdlog::critical(
        "replica {} halts: the disk is full ({}). The process stays up and answers "
        "/v1/health with 503; free space on the data disk, then restart it",
        options.node.id, cause.to_string());
    spdlog::default_logger()->flush();
    // A proposal in flight may or may not be in the log: its outcome is unknown.
    node->abandon_requests(Status::aborted("this replica halted on a full disk; the outcome is "
                                           "unknown"),
                           Status::unavailable("this replica halted on a full disk"));
  }

  // Raft thread. Stored data failed a checksum: this replica stops serving at once (nothing
  // more is persisted, sent or answered), asks for a rebuild and restarts in place; the next
  // start rebuilds it empty and the leader brings it back (server/replica_rebuild.h).
  [[noreturn]] void rebuild_and_restart(const Status& cause) {
    leader_term.store(0);  // the beacon must not speak for it either
    spdlog::critical(
        "replica {} found damaged data ({}): it stops serving and restarts to rebuild from the "
        "leader",
        options.node.id, cause.to_string());
    const Status requested = request_rebuild(options.data_dir, cause.to_string());
    if (!requested.ok()) {
      spdlog::critical("replica {}: cannot record the rebuild request: {}", options.node.id,
                       requested.to_string());
    }
    spdlog::default_logger()->flush();
    restart_process();
  }

  void run_beacon() {
    const auto period = std::chrono::milliseconds(
        static_cast<std::int64_t>(options.node.heartbeat_ticks) * options.tick_ms);
    std::unique_lock lock(beacon_mu);
    while (!beacon_cv.wait_for(lock, period, [this] { return stopped.load(); })) {
      const raft::Term term = leader_term.load();
      const MonoMs stalled_ms = clock.mono_ms() - raft_progress_ms.load();
      if (term == 0 || stalled_ms < period.count() || stalled_ms > kBeaconMaxStallMs) {
        continue;
      }
      for (const raft::NodeId id : other_members()) {
        rsmpb::PeerEnvelope envelope;
        envelope.set_from(options.node.id);
        envelope.set_to(id);
        *envelope.mutable_raft() = raft::RawNode::liveness_heartbeat(options.node.id, id, term);
        if (!transport->send(id, envelope)) {
          spdlog::debug("liveness heartbeat to node {} dropped", id);
        }
      }
    }
  }

  // Runs on the raft thread: one Ready round, then again behind whatever was posted meanwhile
  // (ticks, inbound heartbeats and votes), so a backlog of work never delays them by more than
  // a round. A failure here is fatal.
  void run_process() {
    process_scheduled = false;
    if (halted.load()) {
      return;
    }
    const Status s = node->process_round();
    if (s.code() == Code::kResourceExhausted) {
      halt(s);
      return;
    }
    if (s.code() == Code::kCorruption && member_count() > 1) {
      rebuild_and_restart(s);
    }
    if (!s.ok()) {
      spdlog::critical("replica {} stops: {}", options.node.id, s.to_string());
      spdlog::default_logger()->flush();
      std::_Exit(EXIT_FAILURE);
    }
    metrics.observe_round(node->stats());
    observe_figures();
    publish_progress();
    check_transfers();
    if (node->has_work()) {
      schedule_process();
    }
  }

  // Coalesces work: everything posted before the scheduled round joins it.
  void schedule_process() {
    if (!process_scheduled) {
      process_scheduled = true;
      asio::post(io, [this] { run_process(); });
    }
  }

  void arm_tick() {
    tick_timer.expires_after(std::chrono::milliseconds(options.tick_ms));
    tick_timer.async_wait([this](const boost::system::error_code& ec) {
      if (ec || stopped.load() || halted.load()) {
        return;
      }
      node->tick();
      publish_progress();
      check_transfers();
      maybe_send_figures();
      workflows->tick(clock.wall_ms());
      if (change_listener) {
        change_listener({}, clock.wall_ms());
      }
      publish_progress();
      schedule_process();
      arm_tick();
    });
  }

  // Stamps and proposes `command` on the raft thread, after the current Ready round. A command
  // that applies counts its time from here in the commit latency of the node figures.
  void post_propose(rsmpb::Command command, rsm::ProposeCallback done) {
    command.set_wall_ms(clock.wall_ms());
    const std::int64_t start_us = clock.mono_us();
    asio::post(io, [this, start_us, command = std::move(command),
                    done = std::move(done)]() mutable {
      if (halted.load()) {
        done(Status::unavailable("this replica halted on a full disk; try another node"));
        return;
      }
      node->propose(std::move(command),
                    [this, start_us, done = std::move(done)](Result<rsmpb::CommandResult> result) {
                      if (result.ok()) {
                        commit_latency.observe(clock.mono_ms(), clock.mono_us() - start_us);
                      }
                      done(std::move(result));
                    });
      schedule_process();
    });
  }

  // Raft thread, after each round: the round's log sync and apply durations, when it had them.
  void observe_figures() {
    const rsm::NodeStats& s = node->stats();
    const MonoMs now = clock.mono_ms();
    if (s.log_syncs != figures_seen_syncs) {
      figures_seen_syncs = s.log_syncs;
      fsync_latency.observe(now, s.last_log_sync_us);
    }
    if (s.apply_rounds != figures_seen_applies) {
      figures_seen_applies = s.apply_rounds;
      apply_latency.observe(now, s.last_apply_us);
    }
  }

  // Raft thread: this node's figures as of now.
  NodeFigures own_figures() {
    const MonoMs now = clock.mono_ms();
    NodeFigures f;
    f.id = options.node.id;
    f.window_ms = kLatencyWindowMs;
    f.fsync = fsync_latency.summary(now);
    f.commit = commit_latency.summary(now);
    f.apply = apply_latency.summary(now);
    const double devices = metrics.ws_connections.value();
    f.devices = devices > 0 ? static_cast<std::uint64_t>(devices) : 0;
    f.leader_changes = node->stats().leader_changes;
    return f;
  }

  // Raft thread, on each tick: every kNodeFiguresIntervalMs, sends this node's figures to every
  // other member (best effort, like an ephemeral event) and forgets former members' figures.
  void maybe_send_figures() {
    const MonoMs now = clock.mono_ms();
    if (figures_sent_ms != 0 && now - figures_sent_ms < kNodeFiguresIntervalMs) return;
    figures_sent_ms = now;
    const std::vector<raft::NodeId> others = other_members();
    peer_figures.retain([&](raft::NodeId id) {
      return std::find(others.begin(), others.end(), id) != others.end();
    });
    rsmpb::PeerEnvelope envelope;
    envelope.set_from(options.node.id);
    *envelope.mutable_figures() = encode_node_figures(own_figures());
    for (const raft::NodeId id : others) {
      envelope.set_to(id);
      if (!transport->send(id, envelope)) {
        spdlog::debug("node figures to node {} dropped", id);
      }
    }
  }

  // Raft thread: figures another member sent. Malformed ones are dropped, counted and logged.
  void receive_figures(raft::NodeId from, const rsmpb::NodeFigures& message) {
    Result<NodeFigures> figures = decode_node_figures(message, from);
    const MonoMs now = clock.mono_ms();
    if (figures.ok()) {
      peer_figures.record(*figures, now);
      return;
    }
    ++figures_dropped;
    if (figures_warned_ms == 0 || now - figures_warned_ms >= kFiguresWarnIntervalMs) {
      figures_warned_ms = now;
      spdlog::warn("replica {}: dropped malformed node figures from node {} ({} so far): {}",
                   options.node.id, from, figures_dropped, figures.status().message());
    }
  }

  void on_inbound(rsmpb::PeerEnvelope&& envelope) {
    asio::post(io, [this, env = std::move(envelope)] {
      if (halted.load()) {
        return;
      }
      if (env.has_ephemeral()) {
        if (ephemeral_listener) {
          ephemeral_listener(env.from(), env.ephemeral().kind(), env.ephemeral().payload());
        }
        return;
      }
      if (env.has_figures()) {
        receive_figures(env.from(), env.figures());
        return;
      }
      node->receive(env);
      schedule_process();
    });
  }
};

NodeHost::NodeHost(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

NodeHost::~NodeHost() {
  stop();
}

namespace {

// The raft log's directory with options.segment_log (nullptr without). A data directory whose log
// is in segment files is refused when the engine is asked to hold the log: the engine's copy, if
// any, is older than the segments (docs/storage-format.md, "Where the raft log lives").
Result<std::unique_ptr<storage::PosixLogFs>> open_raft_log_dir(const NodeHostOptions& options) {
  const std::filesystem::path dir = std::filesystem::path(options.data_dir) / kRaftLogDir;
  if (options.segment_log) {
    return storage::PosixLogFs::open_dir(dir.string());
  }
  std::error_code ec;
  if (std::filesystem::exists(dir, ec) && !std::filesystem::is_empty(dir, ec)) {
    return Status::failed_precondition(
        fmt::format("{} holds this replica's raft log in segment files: set [storage] raft_log = "
                    "\"segments\"",
                    dir.string()));
  }
  return std::unique_ptr<storage::PosixLogFs>();
}

}  // namespace

Result<std::unique_ptr<NodeHost>> NodeHost::start(const NodeHostOptions& options) {
  const std::size_t voters = options.peers.size();
  HERALD_RETURN_IF_ERROR(
      rebuild_if_requested(options.data_dir, voters, SystemClock().wall_ms()).status());
  auto host = start_replica(options);
  if (host.ok() || host.status().code() != Code::kCorruption || voters < 2) {
    return host;
  }
  // Damage found while opening the replica (its applied state, its log): rebuild it now.
  spdlog::critical("replica {} found damaged data while opening ({}): rebuilding it",
                   options.node.id, host.status().to_string());
  HERALD_RETURN_IF_ERROR(request_rebuild(options.data_dir, host.status().to_string()));
  HERALD_RETURN_IF_ERROR(
      rebuild_if_requested(options.data_dir, voters, SystemClock().wall_ms()).status());
  return start_replica(options);
}

Result<std::unique_ptr<NodeHost>> NodeHost::start_replica(const NodeHostOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  HERALD_ASSIGN_OR_RETURN(impl->log_fs, open_raft_log_dir(options));
  // Both stores read their files at open (the engine replays its WAL, the segment log checks
  // every record): the segment log opens on a thread of its own meanwhile, and the replica waits
  // for it when it needs it. The open makes only the repairs any open makes (a torn tail cleared,
  // an unfinished segment removed), so it may run before the engine's own checks. The future is
  // waited for before log_fs dies on every path (it is declared after impl, and its last holder,
  // the replica's configuration, dies before impl).
  std::shared_ptr<std::future<Result<std::unique_ptr<storage::SegmentLog>>>> segment_log;
  if (impl->log_fs) {
    segment_log = std::make_shared<std::future<Result<std::unique_ptr<storage::SegmentLog>>>>(
        std::async(std::launch::async, &storage::SegmentLog::open, impl->log_fs.get(),
                   rsm::segment_log_options(options.node)));
  }
  HERALD_ASSIGN_OR_RETURN(
      impl->engine, storage::RocksDbEngine::open(options.data_dir, storage::RocksDbOptions{}));
  PeerTransportConfig tc;
  tc.self_id = options.node.id;
  tc.cluster = options.cluster_name;
  tc.listen = options.peer_listen;
  tc.cluster_secret = options.cluster_secret;
  tc.insecure_peers = options.insecure_peers;
  for (const auto& [id, address] : options.peers) {
    if (id != options.node.id) {
      tc.peers.emplace(id, address);
    }
  }
  tc.rng_seed = std::random_device{}();
  Impl* raw = impl.get();
  impl->transport = std::make_unique<TcpPeerTransport>(
      tc, [raw](rsmpb::PeerEnvelope&& env) { raw->on_inbound(std::move(env)); });
  rsm::NodeConfig nc = options.node;
  nc.log_fs = impl->log_fs.get();
  if (segment_log) {
    nc.opened_segment_log = [segment_log] { return segment_log->get(); };
  }
  if (nc.log_fs != nullptr && options.apply_while_writing) {
    impl->log_writer = std::make_unique<ThreadLogWriter>();
    nc.log_writer = impl->log_writer.get();
  }
  if (nc.disk == nullptr) {
    impl->disk = std::make_unique<storage::StatvfsDiskSpace>(options.data_dir);
    nc.disk = impl->disk.get();
  }
  // Bounds each round's apply work in time and keeps followers hearing from a busy leader
  // (docs/ARCHITECTURE.md, "Liveness under load").
  nc.clock = &impl->clock;
  if (nc.incarnation_floor == 0) {
    // Incarnations keep rising even if the disk lost the stored counter (docs/raft.md,
    // "Recovering after a restart").
    nc.incarnation_floor = static_cast<std::uint64_t>(impl->clock.wall_ms());
  }
  nc.in_round_heartbeat_ms = static_cast<MonoMs>(options.node.heartbeat_ticks) * options.tick_ms;
  if (nc.seed == 0) {
    nc.seed = (static_cast<std::uint64_t>(std::random_device{}()) << 32U) ^
              static_cast<std::uint64_t>(impl->clock.wall_ms());
  }
  auto propose = [raw](rsmpb::Command c, rsm::ProposeCallback done) {
    raw->post_propose(std::move(c), std::move(done));
  };
  messaging::PushProvider* push = options.push;
  messaging::EmailProvider* email = options.email;
  if (push == nullptr) {
    impl->default_push = std::make_unique<RecordingPushProvider>();
    push = impl->default_push.get();
  }
  if (email == nullptr) {
    impl->default_email = std::make_unique<RecordingEmailProvider>();
    email = impl->default_email.get();
  }
  impl->messaging = std::make_unique<messaging::Host>(
      impl->engine.get(), propose,
      [raw](std::function<void()> fn) { asio::post(raw->io, std::move(fn)); }, push, email,
      &impl->clock);
  // Webhooks (docs/webhooks.md): the endpoints module, the delivery type and its handler, and
  // the emitter that starts deliveries in the apply of the commands that decide events.
  impl->webhook_handler = std::make_unique<webhooks::PostHandler>(
      impl->engine.get(), options.webhook_poster, &impl->clock,
      [raw](std::function<void()> fn) { asio::post(raw->io, std::move(fn)); });
  auto types = messaging::Host::types();
  types.push_back(webhooks::make_webhook_type());
  auto handlers = impl->messaging->handlers();
  handlers.emplace(webhooks::kPostActivity, impl->webhook_handler.get());
  impl->workflows = std::make_unique<WorkflowHost>(
      impl->engine.get(), propose, std::move(types), std::move(handlers), &impl->metrics, [raw] {
        return AttemptOrigin{raw->node->status().id, raw->node->status().term};
      });
  impl->messaging->bind_engine(impl->workflows->engine());
  impl->messaging->set_event_starts(&webhooks::Emitter::starts_for);
  impl->workflows->engine()->set_observer(&impl->webhook_emitter);
  HERALD_RETURN_IF_ERROR(impl->router.add_module(workflow::kModuleName, impl->workflows->engine()));
  HERALD_RETURN_IF_ERROR(
      impl->router.add_module(messaging::kModuleName, impl->messaging->domain()));
  HERALD_RETURN_IF_ERROR(impl->router.add_module(webhooks::kModuleName, &impl->webhook_endpoints));
  HERALD_ASSIGN_OR_RETURN(
      impl->node, rsm::Node::open(nc, impl->engine.get(), impl->transport.get(), &impl->router));
  impl->peers = options.peers;
  impl->sync_members();  // members added after the flags were written
  impl->node->set_listener(&impl->listener);
  HERALD_RETURN_IF_ERROR(impl->transport->start());
  impl->arm_tick();
  // The first round runs before any request: a single voter elected itself while opening, and
  // requests must see that (a read before the round would find no leader yet).
  impl->schedule_process();
  impl->publish_progress();
  impl->raft_thread = std::thread([raw] { raw->io.run(); });
  impl->beacon_thread = std::thread([raw] { raw->run_beacon(); });
  return std::unique_ptr<NodeHost>(new NodeHost(std::move(impl)));
}

void NodeHost::stop() {
  if (!impl_ || impl_->stopped.exchange(true)) {
    return;
  }
  asio::post(impl_->io, [this] { impl_->tick_timer.cancel(); });
  impl_->work.reset();
  impl_->io.stop();
  if (impl_->raft_thread.joinable()) {
    impl_->raft_thread.join();
  }
  {
    std::lock_guard lock(impl_->beacon_mu);  // the beacon waits on stopped under this lock
  }
  impl_->beacon_cv.notify_all();
  if (impl_->beacon_thread.joinable()) {
    impl_->beacon_thread.join();
  }
  impl_->transport->stop();
  if (impl_->backup_thread.joinable()) {
    impl_->backup_thread.join();  // it reads an engine snapshot
  }
  impl_->node.reset();
  impl_->log_fs.reset();
  impl_->engine.reset();
  spdlog::info("replica {} stopped", impl_->options.node.id);
}

void NodeHost::propose(rsmpb::Command command, rsm::ProposeCallback done) {
  impl_->post_propose(std::move(command), std::move(done));
}

void NodeHost::read(std::function<void(Status, const storage::Engine&)> done) {
  asio::post(impl_->io, [this, done = std::move(done)]() mutable {
    const storage::Engine* engine = impl_->engine.get();
    if (impl_->halted.load()) {
      done(Status::unavailable("this replica halted on a full disk; try another node"), *engine);
      return;
    }
    impl_->node->read_barrier(
        [engine, done = std::move(done)](Status s) { done(std::move(s), *engine); });
    impl_->schedule_process();
  });
}

void NodeHost::inspect(std::function<void(const ClusterView&)> fn) {
  asio::post(impl_->io, [this, fn = std::move(fn)] {
    ClusterView view;
    view.self = impl_->node->status();
    view.peers = impl_->node->peer_reports();
    view.figures = impl_->own_figures();
    const MonoMs now = impl_->clock.mono_ms();
    for (const auto& [id, entry] : impl_->peer_figures.entries()) {
      view.peer_figures.emplace(id, ReceivedFigures{entry.figures, now - entry.received_ms});
    }
    view.memory = impl_->engine->memory();
    // With the segment log the raft log is not in the engine: its files' size stands for it.
    if (const auto* segments = dynamic_cast<const storage::SegmentLog*>(&impl_->node->log())) {
      view.memory.log_bytes += segments->file_bytes();
    }
    view.resident_bytes = resident_bytes();
    fn(view);
  });
}

void NodeHost::set_change_listener(ChangeListener listener) {
  asio::post(impl_->io, [this, listener = std::move(listener)]() mutable {
    impl_->change_listener = std::move(listener);
  });
}

void NodeHost::report_damage(const Status& damage) {
  asio::post(impl_->io, [this, damage] {
    Impl& i = *impl_;
    auto mark = rsm::read_rebuild_mark(*i.engine);
    const std::optional<rsmpb::RebuildMark> last =
        mark.ok() ? *std::move(mark) : std::optional<rsmpb::RebuildMark>();
    if (rebuild_on_read_damage(damage, i.member_count(), last, SystemClock().wall_ms())) {
      i.rebuild_and_restart(damage);
    }
    if (!i.damage_logged.exchange(true)) {
      spdlog::critical(
          "replica {} found damaged data while serving a read ({}) and does not rebuild: {}",
          i.options.node.id, damage.to_string(),
          !is_checksum_failure(damage) ? "it is not a checksum failure, so every replica holds "
                                         "the same record"
          : i.member_count() < 2       ? "it is the only replica"
                                       : "it was rebuilt less than 10 minutes ago, perhaps from "
                                         "a damaged copy; check the leader's data");
    }
  });
}

void NodeHost::post(std::function<void()> fn) {
  asio::post(impl_->io, std::move(fn));
}

void NodeHost::change_membership(const rsm::MemberChange& change,
                                 std::function<void(Status)> done) {
  asio::post(impl_->io, [this, change, done = std::move(done)]() mutable {
    if (impl_->halted.load()) {
      done(Status::unavailable("this replica halted on a full disk; try another node"));
      return;
    }
    impl_->node->change_membership(change, std::move(done));
    impl_->schedule_process();
  });
}

void NodeHost::transfer_leadership(raft::NodeId transferee, std::function<void(Status)> done) {
  asio::post(impl_->io, [this, transferee, done = std::move(done)]() mutable {
    Impl& i = *impl_;
    const auto& voters = i.node->conf_state().voters();
    if (std::find(voters.begin(), voters.end(), transferee) == voters.end()) {
      done(Status::not_found(fmt::format("node {} is not a voter", transferee)));
      return;
    }
    const raft::NodeId leader = i.node->status().leader;
    if (leader == transferee) {
      done(Status::ok_status());
      return;
    }
    if (leader == raft::kNoNode || i.halted.load()) {
      done(Status::unavailable("no leader is known; retry"));
      return;
    }
    spdlog::warn("replica {}: leadership transfer from node {} to node {} requested",
                 i.options.node.id, leader, transferee);
    i.node->transfer_leadership(transferee);
    i.transfers.push_back({transferee, i.clock.mono_ms() + kTransferTimeoutMs, std::move(done)});
    i.schedule_process();
  });
}

void NodeHost::backup(std::string dir, std::function<void(Result<BackupInfo>)> done) {
  if (impl_->backup_running.exchange(true)) {
    done(Status::failed_precondition("a backup of this node is already running"));
    return;
  }
  asio::post(impl_->io, [this, dir = std::move(dir), done = std::move(done)]() mutable {
    Impl& i = *impl_;
    i.node->read_barrier([&i, dir, done](const Status& s) {
      if (!s.ok()) {
        i.backup_running.store(false);
        done(s);
        return;
      }
      // Everything acknowledged before the request is applied here now: the snapshot holds it.
      std::unique_ptr<storage::Reader> view = i.engine->snapshot();
      if (i.backup_thread.joinable()) i.backup_thread.join();  // finished: backup_running was off
      spdlog::info("replica {}: backing up applied index {} into {}", i.options.node.id,
                   i.node->applied_index(), dir);
      i.backup_thread = std::thread([&i, view = std::move(view), dir, done] {
        Result<BackupInfo> written = write_backup(*view, dir, i.clock.wall_ms());
        if (written.ok()) {
          spdlog::info("replica {}: backup of index {} written to {}: {} records, {} bytes",
                       i.options.node.id, written->index, dir, written->records,
                       written->data_bytes);
        } else {
          spdlog::error("replica {}: backup into {} failed: {}", i.options.node.id, dir,
                        written.status().to_string());
        }
        i.backup_running.store(false);
        done(std::move(written));
      });
    });
    i.schedule_process();
  });
}

void NodeHost::broadcast(std::string kind, std::string payload) {
  asio::post(impl_->io, [this, kind = std::move(kind), payload = std::move(payload)] {
    for (const raft::NodeId id : impl_->other_members()) {
      rsmpb::PeerEnvelope envelope;
      envelope.set_from(impl_->options.node.id);
      envelope.set_to(id);
      envelope.mutable_ephemeral()->set_kind(kind);
      envelope.mutable_ephemeral()->set_payload(payload);
      if (!impl_->transport->send(id, envelope)) {
        spdlog::debug("ephemeral {} to node {} dropped", kind, id);
      }
    }
  });
}

void NodeHost::set_ephemeral_listener(EphemeralListener listener) {
  asio::post(impl_->io, [this, listener = std::move(listener)]() mutable {
    impl_->ephemeral_listener = std::move(listener);
  });
}

const storage::Engine& NodeHost::engine() const {
  return *impl_->engine;
}

HostHealth NodeHost::health() const {
  HostHealth h;
  h.leader_known = impl_->known_leader.load() != raft::kNoNode;
  h.raft_idle_ms = impl_->clock.mono_ms() - impl_->raft_progress_ms.load();
  h.halted = impl_->halted.load();
  const std::lock_guard lock(impl_->health_mu);
  h.halt_reason = impl_->halt_reason;
  h.disk_alarms = impl_->disk_alarms;
  return h;
}

NodeMetrics& NodeHost::metrics() {
  return impl_->metrics;
}

void NodeHost::scrape(std::function<void(std::string)> done) {
  asio::post(impl_->io, [this, done = std::move(done)] {
    Impl& i = *impl_;
    i.metrics.collect(*i.node, i.workflows->engine()->stats(), i.clock.wall_ms(), *i.engine);
    done(i.metrics.expose());
  });
}

raft::NodeId NodeHost::id() const {
  return impl_->options.node.id;
}

const std::vector<std::string>& NodeHost::workflow_types() const {
  return impl_->workflows->type_names();
}

}  // namespace herald::server
