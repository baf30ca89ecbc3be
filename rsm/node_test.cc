#include "rsm/node.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <set>
#include <utility>

#include "base/encoding.h"
#include "rsm/kv_state_machine.h"
#include "rsm/rebuild.h"
#include "storage/log_store.h"
#include "storage/mem_engine.h"
#include "storage/mem_log_fs.h"
#include "storage/segment_log.h"

namespace herald::rsm {
namespace {

// An in-order, in-process network; links to nodes in `down` drop everything.
class TestNetwork {
 public:
  class Endpoint final : public Transport {
   public:
    Endpoint(TestNetwork* net, raft::NodeId self) : net_(net), self_(self) {}
    bool send(raft::NodeId to, const rsmpb::PeerEnvelope& envelope) override {
      if (net_->down.contains(to) || net_->down.contains(self_) ||
          net_->cut.contains({self_, to})) {
        return true;  // Lost on the wire.
      }
      if (net_->max_queued > 0 && net_->queue.size() >= net_->max_queued) {
        return false;  // The queue is at its bound: refused.
      }
      if (envelope.has_chunk()) {
        ++net_->chunks_sent;
      }
      if (envelope.has_raft() && envelope.raft().type() == raftpb::MSG_HEARTBEAT) {
        ++net_->heartbeats_sent;
      }
      net_->queue.push_back(envelope);
      if (net_->duplicate_proposals && envelope.has_raft() &&
          envelope.raft().type() == raftpb::MSG_PROP) {
        net_->queue.push_back(envelope);
      }
      return true;
    }
    [[nodiscard]] std::uint64_t queued_bytes(raft::NodeId) const override { return 0; }

   private:
    TestNetwork* net_;
    raft::NodeId self_;
  };

  std::deque<rsmpb::PeerEnvelope> queue;
  std::set<raft::NodeId> down;
  std::set<std::pair<raft::NodeId, raft::NodeId>> cut;  // (from, to): one-way loss
  int chunks_sent = 0;
  int heartbeats_sent = 0;
  bool duplicate_proposals = false;
  std::size_t max_queued = 0;  // 0: unbounded; else send() refuses beyond this many messages
};

// Records the time each command is applied at (Command::wall_ms as the state machine sees it).
class WallModule final : public StateMachine {
 public:
  rsmpb::CommandResult apply(raft::Index index, const rsmpb::Command& command,
                             ApplyBatch& batch) override {
    seen.push_back(command.wall_ms());
    if (clock != nullptr) {
      clock->advance_ms(cost_ms);  // a slow command
    }
    return {};
  }
  std::vector<std::int64_t> seen;
  ManualClock* clock = nullptr;
  MonoMs cost_ms = 0;
};

// A LogWriter that runs each write inside wait(), as the simulator's does, and records what the
// replica did between start() and wait(): whether it wrote its state space (applied) and whether
// it sent a follower's acknowledgement (it must not before the write is durable).
class ProbeLogWriter final : public LogWriter {
 public:
  ProbeLogWriter(const storage::MemEngine* engine, const TestNetwork* net, raft::NodeId self)
      : engine_(engine), net_(net), self_(self) {}
  void start(std::function<Status()> write) override {
    ++writes;
    engine_writes_at_start_ = engine_->counters().writes;
    acks_at_start_ = acks_queued();
    inner_.start(std::move(write));
  }
  [[nodiscard]] bool done() const override { return inner_.done(); }
  [[nodiscard]] Status wait() override {
    if (engine_->counters().writes > engine_writes_at_start_) {
      ++applied_meanwhile;
    }
    if (acks_queued() > acks_at_start_) {
      ++acked_before_durable;
    }
    return inner_.wait();
  }
  int writes = 0;
  int applied_meanwhile = 0;
  int acked_before_durable = 0;

 private:
  [[nodiscard]] std::size_t acks_queued() const {
    return static_cast<std::size_t>(
        std::count_if(net_->queue.begin(), net_->queue.end(), [this](const auto& envelope) {
          return envelope.from() == self_ && envelope.has_raft() &&
                 envelope.raft().type() == raftpb::MSG_APP_RESP;
        }));
  }
  const storage::MemEngine* engine_;
  const TestNetwork* net_;
  raft::NodeId self_;
  DeferredLogWriter inner_;
  std::uint64_t engine_writes_at_start_ = 0;
  std::size_t acks_at_start_ = 0;
};

struct Replica {
  Replica() { EXPECT_TRUE(sm.add_module("wall", &wall).ok()); }
  storage::MemEngine engine;
  storage::MemLogFs log_fs;  // the raft log's files, when the test runs on the segment log
  std::unique_ptr<ProbeLogWriter> log_writer;  // LogKind::kSegmentsApplyWhileWriting
  std::unique_ptr<TestNetwork::Endpoint> endpoint;
  KvStateMachine kv;
  WallModule wall;
  StateMachineRouter sm{&kv};
  std::unique_ptr<Node> node;
};

// Where the replicas under test keep their raft log: every NodeTest runs on each. On
// kSegmentsApplyWhileWriting, rounds apply durable entries before their log write runs (a
// ProbeLogWriter: the latest order rsm::LogWriter allows).
enum class LogKind : std::uint8_t { kEngine, kSegments, kSegmentsApplyWhileWriting };
// Small segments, so that tests roll over to new segments and compaction drops some.
inline constexpr std::uint64_t kTestSegmentBytes = std::uint64_t{2} << 10U;  // 2 KiB

std::string log_kind_name(const ::testing::TestParamInfo<LogKind>& info) {
  switch (info.param) {
    case LogKind::kEngine: return "EngineLog";
    case LogKind::kSegments: return "SegmentLog";
    case LogKind::kSegmentsApplyWhileWriting: return "SegmentLogApplyWhileWriting";
  }
  return "unknown";
}

class NodeTest : public ::testing::TestWithParam<LogKind> {
 protected:
  [[nodiscard]] bool on_segments() const { return GetParam() != LogKind::kEngine; }

  // `config` for replica `r`, on the log this test runs on.
  [[nodiscard]] NodeConfig on_log(NodeConfig config, Replica& r) const {
    if (on_segments()) {
      config.log_fs = &r.log_fs;
      config.log_segment_bytes = kTestSegmentBytes;
    }
    if (GetParam() == LogKind::kSegmentsApplyWhileWriting) {
      config.log_writer = r.log_writer.get();
    }
    return config;
  }

  void start(int count, NodeConfig base = {}) {
    for (int i = 1; i <= count; ++i) {
      base.initial_voters.push_back(static_cast<raft::NodeId>(i));
    }
    for (int i = 1; i <= count; ++i) {
      auto r = std::make_unique<Replica>();
      r->endpoint = std::make_unique<TestNetwork::Endpoint>(&net_, i);
      r->log_writer =
          std::make_unique<ProbeLogWriter>(&r->engine, &net_, static_cast<raft::NodeId>(i));
      replicas_.push_back(std::move(r));
    }
    config_ = base;
    for (int i = 1; i <= count; ++i) {
      open(static_cast<raft::NodeId>(i));
    }
  }

  void open(raft::NodeId id) {
    Replica& r = replica(id);
    NodeConfig c = on_log(config_, r);
    c.id = id;
    c.seed = 42;
    auto node = Node::open(c, &r.engine, r.endpoint.get(), &r.sm);
    ASSERT_TRUE(node.ok()) << node.status().to_string();
    r.node = std::move(node).value();
  }

  Replica& replica(raft::NodeId id) { return *replicas_[id - 1]; }

  // See AnEngineLogMovesIntoANewSegmentLogOnOpen.
  void expect_engine_log_moves_into_segments(bool cut_short);

  // The segment files a rebuild of `r` reads its raft log from (null when it is in the engine).
  [[nodiscard]] storage::LogFs* damaged_log(Replica& r) const {
    return on_segments() ? &r.log_fs : nullptr;
  }

  // Three replicas that compact their logs early, snapshots streamed in chunks of `chunk_bytes`;
  // the leader takes 120 writes while a follower is down, so that follower can only catch up
  // from a snapshot. Returns {leader, that follower} (still down); the leader is kNoNode when
  // none was elected.
  std::pair<raft::NodeId, raft::NodeId> leave_a_follower_behind(std::size_t chunk_bytes) {
    NodeConfig base;
    base.compaction_threshold_entries = 40;
    base.log_tail_entries = 5;
    base.snapshot_chunk_bytes = chunk_bytes;
    start(3, base);
    tick_all(40);
    const raft::NodeId lead = leader();
    if (lead == raft::kNoNode) return {raft::kNoNode, raft::kNoNode};
    const raft::NodeId lagging = lead == 3 ? 2 : 3;
    net_.down.insert(lagging);
    for (int i = 0; i < 120; ++i) {
      EXPECT_TRUE(put(lead, "k" + std::to_string(i), std::string(20, 'v')).ok());
    }
    return {lead, lagging};
  }

  // When set, a replica whose process() fails is stopped and its status kept in faults_.
  bool tolerate_faults_ = false;
  std::vector<Status> faults_;

  // Delivers messages and processes every node until the network is quiet.
  void settle() {
    for (int round = 0; round < 10'000; ++round) {
      for (auto& r : replicas_) {
        if (r->node) {
          const Status processed = r->node->process();
          if (tolerate_faults_ && !processed.ok()) {
            faults_.push_back(processed);  // the host stops a replica that faults
            net_.down.insert(r->node->status().id);
            r->node.reset();
            continue;
          }
          ASSERT_TRUE(processed.ok()) << processed.to_string();
        }
      }
      if (net_.queue.empty()) {
        return;
      }
      auto env = std::move(net_.queue.front());
      net_.queue.pop_front();
      Replica& to = replica(env.to());
      if (to.node && !net_.down.contains(env.to())) {
        to.node->receive(env);
      }
    }
    FAIL() << "network did not settle";
  }

  void tick_all(int ticks) {
    for (int t = 0; t < ticks; ++t) {
      for (auto& r : replicas_) {
        if (r->node) {
          r->node->tick();
        }
      }
      settle();
    }
  }

  // Starts three replicas and ticks until one leads; returns the leader (kNoNode on failure).
  raft::NodeId start_three(const NodeConfig& base = {}) {
    start(3, base);
    tick_all(40);
    return leader();
  }

  raft::NodeId leader() {
    for (auto& r : replicas_) {
      if (r->node && r->node->status().role == raft::Role::kLeader) {
        return r->node->status().id;
      }
    }
    return raft::kNoNode;
  }

  Result<rsmpb::CommandResult> put(raft::NodeId at, const std::string& key,
                                   const std::string& value) {
    rsmpb::Command c;
    c.mutable_kv_put()->set_key(key);
    c.mutable_kv_put()->set_value(value);
    return run(at, c);
  }

  // Proposes `c` at `at` and ticks until it is answered.
  Result<rsmpb::CommandResult> run(raft::NodeId at, const rsmpb::Command& c) {
    std::optional<Result<rsmpb::CommandResult>> out;
    replica(at).node->propose(c, [&](Result<rsmpb::CommandResult> r) { out = std::move(r); });
    for (int i = 0; i < 100 && !out; ++i) {
      tick_all(1);
    }
    if (!out) {
      return Status::timeout("no answer");
    }
    return std::move(*out);
  }

  std::optional<std::string> read(raft::NodeId at, const std::string& key) {
    auto v = KvStateMachine::read(replica(at).node->engine(), key);
    EXPECT_TRUE(v.ok());
    if (!v.ok() || !v->has_value()) {
      return std::nullopt;
    }
    return (*v)->value();
  }

  TestNetwork net_;
  std::vector<std::unique_ptr<Replica>> replicas_;
  NodeConfig config_;
};

TEST_P(NodeTest, SingleNodeElectsItselfAndAppliesProposals) {
  start(1);
  tick_all(30);
  ASSERT_EQ(leader(), 1U);
  auto r = put(1, "a", "1");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->code(), 0U);
  EXPECT_EQ(read(1, "a"), "1");
}

TEST_P(NodeTest, StatsCountProposalsAppliedEntriesElectionsAndSyncs) {
  const raft::NodeId lead = start_three();
  ASSERT_NE(lead, raft::kNoNode);
  const NodeStats before = replica(lead).node->stats();
  EXPECT_GE(before.elections, 1U);
  EXPECT_GE(before.term_changes, 1U);
  EXPECT_EQ(before.leader_changes, 1U);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(put(lead, "k" + std::to_string(i), "v").ok());
  }
  const NodeStats after = replica(lead).node->stats();
  EXPECT_EQ(after.proposals - before.proposals, 5U);
  EXPECT_EQ(after.proposals_refused, 0U);
  EXPECT_GE(after.entries_applied - before.entries_applied, 5U);
  EXPECT_GT(after.log_syncs, before.log_syncs);
  EXPECT_GT(after.apply_rounds, before.apply_rounds);
  // A follower saw the same leader once and applied the same entries.
  const raft::NodeId follower = lead == 1 ? 2 : 1;
  EXPECT_EQ(replica(follower).node->stats().leader_changes, 1U);
  EXPECT_EQ(replica(follower).node->stats().proposals, 0U);
}

// The planted bug of docs/reliability.md ("A planted bug") is off unless the simulator asks.
TEST(NodeConfigTest, PlantedCommitWithoutQuorumIsOffByDefault) {
  EXPECT_FALSE(NodeConfig{}.planted_commit_without_quorum);
}

// With the planted bug the leader answers a write that neither follower holds: the durability bug
// the simulator must catch. Without it the same write is never answered as applied.
TEST_P(NodeTest, PlantedCommitWithoutQuorumAnswersAWriteNoFollowerHolds) {
  for (const bool planted : {false, true}) {
    replicas_.clear();
    net_ = TestNetwork{};
    NodeConfig base;
    base.planted_commit_without_quorum = planted;
    const raft::NodeId lead = start_three(base);
    ASSERT_NE(lead, raft::kNoNode);
    for (raft::NodeId id = 1; id <= 3; ++id) {
      if (id != lead) {
        net_.down.insert(id);  // the followers hear nothing more
      }
    }
    const raft::Index last = replica(lead).node->status().last_index;
    const Result<rsmpb::CommandResult> answer = put(lead, "a", "1");
    const bool applied = answer.ok() && answer->code() == 0;
    EXPECT_EQ(applied, planted) << (answer.ok() ? answer->message() : answer.status().to_string());
    for (raft::NodeId id = 1; id <= 3; ++id) {
      if (id != lead) {
        EXPECT_EQ(replica(id).node->status().last_index, last);
      }
    }
  }
}

TEST_P(NodeTest, ReadBarrierCompletesAfterApply) {
  start(1);
  tick_all(30);
  ASSERT_TRUE(put(1, "a", "1").ok());
  std::optional<Status> done;
  replica(1).node->read_barrier([&](const Status& s) { done = s; });
  tick_all(2);
  ASSERT_TRUE(done.has_value());
  EXPECT_TRUE(done->ok());
}

TEST_P(NodeTest, RestartRecoversAppliedStateWithoutReplayingTwice) {
  start(1);
  tick_all(30);
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(put(1, "k" + std::to_string(i), std::to_string(i)).ok());
  }
  const raft::Index applied = replica(1).node->applied_index();
  replica(1).node.reset();
  open(1);
  EXPECT_EQ(replica(1).node->applied_index(), applied);
  tick_all(30);
  auto r = put(1, "k0", "again");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(read(1, "k0"), "again");
  EXPECT_EQ(read(1, "k19"), "19");
}

// Reopens replica 1 on its engine after its state format record was replaced by `record` (or
// removed, when nullopt) and returns the open's status.
Status reopen_with_format(Replica& r, const NodeConfig& config,
                          const std::optional<std::string>& record) {
  r.node.reset();
  storage::WriteBatch batch;
  if (record) {
    batch.put(storage::Space::kState, kStateFormatKey, *record);
  } else {
    batch.del(storage::Space::kState, kStateFormatKey);
  }
  EXPECT_TRUE(r.engine.write(batch, true).ok());
  NodeConfig c = config;
  c.id = 1;
  return Node::open(c, &r.engine, r.endpoint.get(), &r.sm).status();
}

TEST_P(NodeTest, AStateSpaceOfAnotherFormatIsRefusedOnOpen) {
  start(1);
  tick_all(30);
  ASSERT_TRUE(put(1, "a", "1").ok());
  // A new replica records the format it writes.
  auto stored = replica(1).engine.get(storage::Space::kState, kStateFormatKey);
  ASSERT_TRUE(stored.ok() && stored->has_value());
  std::string_view stored_payload;
  ASSERT_TRUE(open_record(**stored, stored_payload));
  EXPECT_EQ(get_fixed32_be(stored_payload), kStateFormat);
  // Format 1: written before the format had a record.
  const Status older = reopen_with_format(replica(1), on_log(config_, replica(1)), std::nullopt);
  EXPECT_EQ(older.code(), Code::kFailedPrecondition);
  EXPECT_NE(older.message().find("format 1"), std::string::npos) << older.to_string();
  std::string payload;
  put_fixed32_be(payload, kStateFormat + 1);
  const Status newer =
      reopen_with_format(replica(1), on_log(config_, replica(1)), seal_record(payload));
  EXPECT_EQ(newer.code(), Code::kFailedPrecondition);
  std::string current;
  put_fixed32_be(current, kStateFormat);
  EXPECT_TRUE(
      reopen_with_format(replica(1), on_log(config_, replica(1)), seal_record(current)).ok());
  EXPECT_EQ(reopen_with_format(replica(1), on_log(config_, replica(1)), "junk").code(),
            Code::kCorruption);
}

TEST_P(NodeTest, FollowerForwardsProposalAndAnswersWhenItApplies) {
  start(3);
  tick_all(40);
  const raft::NodeId lead = leader();
  ASSERT_NE(lead, raft::kNoNode);
  const raft::NodeId follower = lead == 1 ? 2 : 1;
  auto r = put(follower, "x", "y");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->code(), 0U);
  tick_all(5);
  for (raft::NodeId id = 1; id <= 3; ++id) {
    EXPECT_EQ(read(id, "x"), "y") << "node " << id;
  }
}

TEST_P(NodeTest, DuplicatedForwardedProposalIsAppliedOnce) {
  start(3);
  tick_all(40);
  const raft::NodeId lead = leader();
  ASSERT_NE(lead, raft::kNoNode);
  const raft::NodeId follower = lead == 1 ? 2 : 1;
  net_.duplicate_proposals = true;
  auto r = put(follower, "x", "y");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  tick_all(5);
  // Both copies were committed; only the first changed the key.
  auto v = KvStateMachine::read(replica(lead).node->engine(), "x");
  ASSERT_TRUE(v.ok() && v->has_value());
  EXPECT_EQ((*v)->revision(), r->revision());
  EXPECT_GT(replica(lead).node->applied_index(), r->revision());
}

TEST_P(NodeTest, LaggingFollowerCatchesUpFromSnapshotInChunks) {
  const auto [lead, lagging] = leave_a_follower_behind(256);
  ASSERT_NE(lead, raft::kNoNode);
  EXPECT_GT(replica(lead).node->log().first_index(), 50U) << "the log was compacted";
  net_.down.erase(lagging);
  tick_all(100);
  EXPECT_GT(net_.chunks_sent, 1);
  EXPECT_EQ(replica(lagging).node->applied_index(), replica(lead).node->applied_index());
  EXPECT_EQ(read(lagging, "k0"), std::string(20, 'v'));
  EXPECT_EQ(read(lagging, "k119"), std::string(20, 'v'));
  // And it keeps working as a follower after the install.
  ASSERT_TRUE(put(lead, "after", "1").ok());
  tick_all(5);
  EXPECT_EQ(read(lagging, "after"), "1");
}

// A transport that refuses sends at a small bound (backpressure) must only delay a snapshot stream
// of many more chunks than the bound, not abandon it on every attempt.
TEST_P(NodeTest, SnapshotStreamWaitsOutARefusingTransport) {
  const auto [lead, lagging] = leave_a_follower_behind(64);
  ASSERT_NE(lead, raft::kNoNode);
  net_.max_queued = 4;  // far fewer than the snapshot's chunks
  net_.down.erase(lagging);
  tick_all(200);
  EXPECT_GT(net_.chunks_sent, 20);
  EXPECT_EQ(replica(lagging).node->applied_index(), replica(lead).node->applied_index());
  EXPECT_EQ(read(lagging, "k119"), std::string(20, 'v'));
}

// A leader never sends a state record that fails its checksum: its snapshot stream stops and it
// reports the damage as it reports a damaged log record (its host rebuilds it).
TEST_P(NodeTest, ALeaderWithADamagedStateRecordNeverStreamsItAndReportsTheDamage) {
  const auto [lead, lagging] = leave_a_follower_behind(256);
  ASSERT_NE(lead, raft::kNoNode);
  std::string damaged_key;
  for (auto it = replica(lead).engine.scan(storage::Space::kState, "", ""); it->valid();
       it->next()) {
    if (it->key().ends_with("k7")) damaged_key = std::string(it->key());
  }
  ASSERT_FALSE(damaged_key.empty());
  ASSERT_TRUE(replica(lead).engine.corrupt(storage::Space::kState, damaged_key));
  tolerate_faults_ = true;
  net_.down.erase(lagging);
  tick_all(20);
  ASSERT_EQ(faults_.size(), 1U);
  EXPECT_EQ(faults_[0].code(), Code::kCorruption);
  EXPECT_NE(faults_[0].message().find("fails its checksum"), std::string::npos)
      << faults_[0].to_string();
  EXPECT_EQ(replica(lead).node, nullptr);
  // The other two elect a leader, whose sound copy brings the lagging follower up to date.
  tick_all(100);
  EXPECT_EQ(faults_.size(), 1U);
  EXPECT_EQ(read(lagging, "k7"), std::string(20, 'v'));
  EXPECT_EQ(read(lagging, "k119"), std::string(20, 'v'));
}

TEST(SnapshotChunk, AChunkCarryingADamagedStateRecordIsRefused) {
  const auto chunk = [](std::string_view value) {
    std::string payload;
    put_fixed32_be(payload, 1);
    payload += "k";
    put_fixed32_be(payload, static_cast<std::uint32_t>(value.size()));
    payload += value;
    return seal_record(payload);
  };
  const std::string sealed = seal_record("value");
  auto records = decode_snapshot_chunk(chunk(sealed));
  ASSERT_TRUE(records.ok()) << records.status().to_string();
  EXPECT_EQ(records->size(), 1U);
  std::string damaged = sealed;
  damaged.back() = static_cast<char>(damaged.back() ^ 0x01);
  EXPECT_EQ(decode_snapshot_chunk(chunk(damaged)).status().code(), Code::kCorruption);
}

}  // namespace
}  // namespace herald::rsm

namespace herald::rsm {
namespace {

// A MSG_PROP envelope from `from` to `to` carrying one entry.
rsmpb::PeerEnvelope forwarded(raft::NodeId from, raft::NodeId to, const raftpb::Entry& entry) {
  rsmpb::PeerEnvelope env;
  env.set_from(from);
  env.set_to(to);
  raftpb::Message* m = env.mutable_raft();
  m->set_type(raftpb::MSG_PROP);
  m->set_from(from);
  m->set_to(to);
  *m->add_entries() = entry;
  return env;
}

raftpb::Entry command_entry(std::uint64_t origin, std::uint64_t incarnation,
                            std::uint64_t request_id) {
  rsmpb::Command c;
  c.set_origin(origin);
  c.set_incarnation(incarnation);
  c.set_request_id(request_id);
  c.mutable_kv_put()->set_key("forged");
  c.mutable_kv_put()->set_value("x");
  raftpb::Entry e;
  e.set_data(c.SerializeAsString());
  return e;
}

TEST_P(NodeTest, ForgedForwardedProposalsAreRefusedAndNoReplicaStops) {
  const raft::NodeId lead = start_three();
  ASSERT_NE(lead, raft::kNoNode);
  const raft::NodeId peer = lead == 1 ? 2 : 1;
  const raft::Index before = replica(lead).node->status().last_index;
  // Request id 0 (once enough to stop every replica), another node's session, no incarnation,
  // a membership change, and bytes that are no command at all.
  net_.queue.push_back(forwarded(peer, lead, command_entry(peer, 9, 0)));
  net_.queue.push_back(forwarded(peer, lead, command_entry(lead, 9, 5)));
  net_.queue.push_back(forwarded(peer, lead, command_entry(peer, 0, 5)));
  raftpb::Entry conf;
  conf.set_type(raftpb::ENTRY_CONF_CHANGE);
  raftpb::ConfChange change;
  change.set_type(raftpb::CONF_CHANGE_REMOVE_NODE);
  change.set_node_id(lead);
  conf.set_data(change.SerializeAsString());
  net_.queue.push_back(forwarded(peer, lead, conf));
  raftpb::Entry junk;
  junk.set_data("\xff\xff not a command");
  net_.queue.push_back(forwarded(peer, lead, junk));
  tick_all(5);
  EXPECT_EQ(replica(lead).node->status().last_index, before) << "a forged entry reached the log";
  EXPECT_EQ(read(lead, "forged"), std::nullopt);
  // The cluster goes on serving, through the same follower too.
  auto r = put(peer, "after", "ok");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->code(), 0U);
}

TEST_P(NodeTest, PreVoteLostWithinATermDoesNotFailInFlightProposals) {
  const raft::NodeId lead = start_three();
  ASSERT_NE(lead, raft::kNoNode);
  const raft::NodeId follower = lead == 1 ? 2 : 1;
  const raft::Term term = replica(lead).node->status().term;
  // The follower stops hearing the leader, but its forwarded proposal still reaches it.
  net_.cut.insert({lead, follower});
  rsmpb::Command c;
  c.mutable_kv_put()->set_key("k");
  c.mutable_kv_put()->set_value("v");
  std::optional<Result<rsmpb::CommandResult>> out;
  replica(follower).node->propose(c, [&](Result<rsmpb::CommandResult> r) { out = std::move(r); });
  tick_all(60);  // its election timeout passes: it loses sight of the leader, its pre-vote fails
  EXPECT_NE(replica(follower).node->status().role, raft::Role::kFollower);
  EXPECT_FALSE(out.has_value()) << "answered while the leader of its term still held it: "
                                << out->status().to_string();
  net_.cut.clear();
  for (int i = 0; i < 50 && !out; ++i) {
    tick_all(1);
  }
  ASSERT_TRUE(out.has_value());
  ASSERT_TRUE(out->ok()) << out->status().to_string();
  EXPECT_EQ((*out)->code(), 0U);
  EXPECT_EQ(replica(lead).node->status().term, term) << "no election was needed";
  EXPECT_EQ(read(follower, "k"), "v");
}

TEST_P(NodeTest, AppliedTimeNeverGoesBackwardsAcrossLeadersAndRestarts) {
  const raft::NodeId first = start_three();
  ASSERT_NE(first, raft::kNoNode);
  rsmpb::Command c;
  c.mutable_module()->set_name("wall");
  c.set_wall_ms(5'000);
  ASSERT_TRUE(run(first, c).ok());
  // The next leader's clock runs 4 s behind the first one's.
  net_.down.insert(first);
  tick_all(60);
  const raft::NodeId second = leader();
  ASSERT_NE(second, raft::kNoNode);
  ASSERT_NE(second, first);
  c.set_wall_ms(1'000);
  ASSERT_TRUE(run(second, c).ok());
  c.set_wall_ms(6'000);
  ASSERT_TRUE(run(second, c).ok());
  EXPECT_EQ(replica(second).wall.seen, (std::vector<std::int64_t>{5'000, 5'000, 6'000}));
  // The floor is durable: a restarted replica keeps it. (The first leader is back, so that the
  // restarted replica hears every voter and ends its recovery.)
  net_.down.erase(first);
  replica(second).node.reset();
  open(second);
  tick_all(60);
  c.set_wall_ms(2'000);
  ASSERT_TRUE(run(leader(), c).ok());
  tick_all(5);
  EXPECT_EQ(replica(second).wall.seen.back(), 6'000);
}

TEST_P(NodeTest, ALowDiskOnOneNodeRefusesNewContentEverywhereUntilSpaceIsFreed) {
  constexpr std::uint64_t kFloor = 1'000;
  storage::ManualDiskSpace plenty(10 * kFloor);
  storage::ManualDiskSpace low(10 * kFloor);
  NodeConfig base;
  base.min_free_bytes = kFloor;
  base.disk = &plenty;
  start(3, base);
  // Node 3 measures its own disk.
  config_.disk = &low;
  replica(3).node.reset();
  open(3);
  tick_all(40);
  const raft::NodeId leader_id = leader();
  ASSERT_NE(leader_id, raft::kNoNode);
  ASSERT_TRUE(put(leader_id, "a", "1").ok());

  low.set(kFloor - 1);
  tick_all(kDiskCheckIntervalTicks + 5);
  for (raft::NodeId id = 1; id <= 3; ++id) {
    EXPECT_EQ(replica(id).node->disk_alarms(), std::set<raft::NodeId>{3}) << "replica " << id;
  }
  // New content is refused at every node, before it reaches the log; deletions and reads work.
  for (raft::NodeId id = 1; id <= 3; ++id) {
    auto refused = put(id, "b", "2");
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.status().code(), Code::kResourceExhausted) << refused.status().to_string();
  }
  rsmpb::Command del;
  del.mutable_kv_delete()->set_key("a");
  auto deleted = run(leader_id, del);
  ASSERT_TRUE(deleted.ok()) << deleted.status().to_string();
  EXPECT_EQ(deleted->code(), 0U);
  EXPECT_EQ(read(leader_id, "a"), std::nullopt);

  // The alarm is applied state: a restarted replica still refuses.
  replica(1).node.reset();
  open(1);
  tick_all(40);
  EXPECT_EQ(replica(1).node->disk_alarms(), std::set<raft::NodeId>{3});

  // Free space just above the floor is not enough to clear it (no flapping); the margin is.
  low.set(kFloor + 1);
  tick_all(kDiskCheckIntervalTicks + 5);
  EXPECT_EQ(replica(leader()).node->disk_alarms(), std::set<raft::NodeId>{3});
  low.set(2 * kFloor);
  tick_all(kDiskCheckIntervalTicks + 5);
  for (raft::NodeId id = 1; id <= 3; ++id) {
    EXPECT_TRUE(replica(id).node->disk_alarms().empty()) << "replica " << id;
  }
  auto accepted = put(leader(), "b", "2");
  ASSERT_TRUE(accepted.ok()) << accepted.status().to_string();
  EXPECT_EQ(accepted->code(), 0U);
}

TEST_P(NodeTest, ANodeCannotRaiseTheDiskAlarmOfAnother) {
  start(1);
  tick_all(30);
  rsmpb::Command c;
  c.mutable_disk_alarm()->set_node(7);
  c.mutable_disk_alarm()->set_raised(true);
  auto r = run(1, c);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(static_cast<Code>(r->code()), Code::kInvalidArgument);
  EXPECT_TRUE(replica(1).node->disk_alarms().empty());
}

class RecordingListener final : public NodeListener {
 public:
  void on_applied() override { ++applied; }
  void on_leadership(bool leader) override { leadership.push_back(leader); }
  int applied = 0;
  std::vector<bool> leadership;
};

// With a LogWriter, a round that appends new entries applies the committed ones that earlier
// rounds made durable before its own write completes, on the leader and on the followers; a
// follower's acknowledgement still leaves only once the entries it acknowledges are durable, and
// every write is applied once, everywhere.
TEST_P(NodeTest, ARoundAppliesDurableEntriesWhileItsLogWriteRunsAndAcknowledgesOnlyAfterIt) {
  if (GetParam() != LogKind::kSegmentsApplyWhileWriting) {
    GTEST_SKIP() << "only replicas with a LogWriter overlap the two";
  }
  const raft::NodeId lead = start_three();
  ASSERT_NE(lead, raft::kNoNode);
  constexpr int kWrites = 300;
  int answered = 0;
  // Proposals keep arriving while earlier ones commit: rounds then carry both new entries and
  // committed ones, as under load.
  for (int i = 0; i < kWrites; ++i) {
    rsmpb::Command c;
    c.mutable_kv_put()->set_key("k" + std::to_string(i));
    c.mutable_kv_put()->set_value("v" + std::to_string(i));
    replica(lead).node->propose(c, [&answered](Result<rsmpb::CommandResult> r) {
      EXPECT_TRUE(r.ok() && r->code() == 0);
      ++answered;
    });
    for (auto& r : replicas_) {
      ASSERT_TRUE(r->node->process().ok());
    }
    for (int m = 0; m < 4 && !net_.queue.empty(); ++m) {
      auto env = std::move(net_.queue.front());
      net_.queue.pop_front();
      replica(env.to()).node->receive(env);
    }
  }
  tick_all(20);
  EXPECT_EQ(answered, kWrites);
  for (raft::NodeId id = 1; id <= 3; ++id) {
    const ProbeLogWriter& probe = *replica(id).log_writer;
    EXPECT_GT(probe.applied_meanwhile, 0) << "replica " << id << " never overlapped the two";
    EXPECT_EQ(replica(id).node->stats().log_writes_behind_apply,
              static_cast<std::uint64_t>(probe.writes))
        << "replica " << id << ": every write through the LogWriter overlapped an apply";
    EXPECT_EQ(probe.acked_before_durable, 0) << "replica " << id;
    EXPECT_EQ(replica(id).node->applied_index(), replica(lead).node->applied_index());
    for (int i = 0; i < kWrites; ++i) {
      ASSERT_EQ(read(id, "k" + std::to_string(i)), "v" + std::to_string(i)) << "replica " << id;
    }
  }
}

TEST_P(NodeTest, BusyLeaderHeartbeatsInsideALongRoundAndStopsApplyingAtItsBudget) {
  ManualClock clock;
  NodeConfig base;
  base.clock = &clock;
  base.in_round_heartbeat_ms = 20;
  base.apply_budget_ms = 25;
  const raft::NodeId lead = start_three(base);
  ASSERT_NE(lead, raft::kNoNode);
  for (auto& r : replicas_) {
    r->wall.clock = &clock;
    r->wall.cost_ms = 10;  // every command takes 10 ms to apply
  }
  RecordingListener listener;
  replica(lead).node->set_listener(&listener);
  rsmpb::Command c;
  c.mutable_module()->set_name("wall");
  int answered = 0;
  for (int i = 0; i < 6; ++i) {
    replica(lead).node->propose(c, [&](const Result<rsmpb::CommandResult>& r) {
      EXPECT_TRUE(r.ok());
      ++answered;
    });
  }
  net_.heartbeats_sent = 0;
  settle();  // no tick: any heartbeat comes from inside a round
  EXPECT_EQ(answered, 6);
  EXPECT_GT(net_.heartbeats_sent, 0) << "followers heard nothing while the leader applied";
  // 60 ms of apply work in 25 ms rounds: at least three rounds on the leader.
  EXPECT_GE(listener.applied, 3);
  replica(lead).node->set_listener(nullptr);
}

TEST_P(NodeTest, ListenerHearsLeadershipAndApplies) {
  start(1);
  RecordingListener listener;
  replica(1).node->set_listener(&listener);
  tick_all(5);
  ASSERT_TRUE(replica(1).node->is_leader());
  EXPECT_EQ(listener.leadership, std::vector<bool>{true});
  const int before = listener.applied;
  ASSERT_TRUE(put(1, "a", "1").ok());
  EXPECT_GT(listener.applied, before);
}

class EchoModule final : public StateMachine {
 public:
  rsmpb::CommandResult apply(raft::Index index, const rsmpb::Command& command,
                             ApplyBatch& batch) override {
    rsmpb::CommandResult r;
    r.set_payload("echo:" + command.module().payload());
    return r;
  }
};

TEST(StateMachineRouterTest, RoutesModulesAndRefusesUnknownOnes) {
  storage::MemEngine engine;
  ApplyBatch batch(&engine);
  KvStateMachine kv;
  EchoModule echo;
  StateMachineRouter router(&kv);
  ASSERT_TRUE(router.add_module("echo", &echo).ok());
  EXPECT_EQ(router.add_module("echo", &echo).code(), Code::kAlreadyExists);
  rsmpb::Command c;
  c.mutable_module()->set_name("echo");
  c.mutable_module()->set_payload("x");
  EXPECT_EQ(router.apply(1, c, batch).payload(), "echo:x");
  c.mutable_module()->set_name("nope");
  EXPECT_EQ(router.apply(2, c, batch).code(), static_cast<std::uint32_t>(Code::kInvalidArgument));
  rsmpb::Command put;
  put.mutable_kv_put()->set_key("k");
  put.mutable_kv_put()->set_value("v");
  EXPECT_EQ(router.apply(3, put, batch).revision(), 3U);
}

}  // namespace
}  // namespace herald::rsm

namespace herald::rsm {
namespace {

// Writes a key, then fails (or reports corruption) when the payload says so.
class HalfDoneModule final : public StateMachine {
 public:
  rsmpb::CommandResult apply(raft::Index index, const rsmpb::Command& command,
                             ApplyBatch& batch) override {
    batch.put(storage::Space::kState, "m" + command.module().payload(), "written");
    rsmpb::CommandResult r;
    if (command.module().payload() == "fail") {
      r.set_code(static_cast<std::uint32_t>(Code::kInvalidArgument));
    } else if (command.module().payload() == "corrupt") {
      r.set_code(static_cast<std::uint32_t>(Code::kCorruption));
      r.set_message("record fails its checksum");
    }
    return r;
  }
};

class RoutedNodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(router_.add_module("half", &module_).ok());
    NodeConfig c;
    c.id = 1;
    c.initial_voters = {1};
    auto node = Node::open(c, &engine_, &endpoint_, &router_);
    ASSERT_TRUE(node.ok());
    node_ = std::move(node).value();
    ASSERT_TRUE(node_->process().ok());
  }

  Status propose(const std::string& payload, std::optional<Result<rsmpb::CommandResult>>& out) {
    rsmpb::Command c;
    c.mutable_module()->set_name("half");
    c.mutable_module()->set_payload(payload);
    node_->propose(c, [&out](Result<rsmpb::CommandResult> r) { out = std::move(r); });
    return node_->process();
  }

  storage::MemEngine engine_;
  TestNetwork net_;
  TestNetwork::Endpoint endpoint_{&net_, 1};
  KvStateMachine kv_;
  HalfDoneModule module_;
  StateMachineRouter router_{&kv_};
  std::unique_ptr<Node> node_;
};

TEST_F(RoutedNodeTest, FailedCommandLeavesNoWrites) {
  std::optional<Result<rsmpb::CommandResult>> out;
  ASSERT_TRUE(propose("fail", out).ok());
  ASSERT_TRUE(out.has_value() && out->ok());
  EXPECT_EQ((*out)->code(), static_cast<std::uint32_t>(Code::kInvalidArgument));
  auto v = engine_.get(storage::Space::kState, "mfail");
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v->has_value());
  ASSERT_TRUE(propose("ok", out).ok());
  v = engine_.get(storage::Space::kState, "mok");
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->has_value());
}

TEST_F(RoutedNodeTest, CorruptionReportedByAModuleStopsTheReplica) {
  std::optional<Result<rsmpb::CommandResult>> out;
  const Status s = propose("corrupt", out);
  EXPECT_EQ(s.code(), Code::kCorruption);
  auto v = engine_.get(storage::Space::kState, "mcorrupt");
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v->has_value()) << "nothing of the failed batch reached the engine";
}

}  // namespace
}  // namespace herald::rsm

namespace herald::rsm {
namespace {

// A follower whose data failed a checksum is rebuilt empty (rebuild.h) and brought back by the
// leader: through a snapshot when the leader compacted its log, with nothing lost; until its log
// is back at its old last index it casts no vote, and afterwards it helps elect as before.
TEST_P(NodeTest, ADamagedFollowerRebuiltEmptyCatchesUpFromTheLeaderAndVotesAgain) {
  NodeConfig base;
  base.compaction_threshold_entries = 8;
  base.log_tail_entries = 2;
  const raft::NodeId lead = start_three(base);
  ASSERT_NE(lead, raft::kNoNode);
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(put(lead, "k" + std::to_string(i), "v" + std::to_string(i)).ok());
  }
  const raft::NodeId damaged = lead == 3 ? 2 : 3;
  Replica& old = replica(damaged);
  const raft::Index old_last = old.node->status().last_index;
  old.node.reset();
  auto rebuilt = std::make_unique<Replica>();
  rebuilt->endpoint = std::make_unique<TestNetwork::Endpoint>(&net_, damaged);
  auto floor =
      carry_over_for_rebuild(old.engine, damaged_log(old), rebuilt->engine, "test damage", 0);
  ASSERT_TRUE(floor.ok()) << floor.status().to_string();
  EXPECT_EQ(*floor, old_last);
  replicas_[damaged - 1] = std::move(rebuilt);
  open(damaged);
  EXPECT_EQ(replica(damaged).node->status().last_index, 0U);

  ASSERT_TRUE(put(lead, "after", "rebuild").ok());
  tick_all(20);
  EXPECT_GE(replica(damaged).node->status().last_index, old_last);
  for (int i = 0; i < 30; ++i) {
    EXPECT_EQ(read(damaged, "k" + std::to_string(i)), "v" + std::to_string(i));
  }
  EXPECT_EQ(read(damaged, "after"), "rebuild");

  // With the leader gone, the rebuilt replica and the third one elect a new leader.
  net_.down.insert(lead);
  replica(lead).node.reset();
  tick_all(60);
  const raft::NodeId next = leader();
  ASSERT_NE(next, raft::kNoNode);
  EXPECT_NE(next, lead);
  ASSERT_TRUE(put(next, "later", "ok").ok());
  EXPECT_EQ(read(damaged, "later"), "ok");
}

}  // namespace
}  // namespace herald::rsm

namespace herald::rsm {
namespace {

// The case the vote floor exists for (rebuild.h): entries committed by the leader and one
// follower; the follower is rebuilt empty while the leader is down and the third replica, which
// never got them, asks for votes. Granting would elect a leader without committed entries.
TEST_P(NodeTest, ARebuiltReplicaDoesNotHelpElectALeaderThatLacksWhatItAcknowledged) {
  const raft::NodeId lead = start_three();
  ASSERT_NE(lead, raft::kNoNode);
  const raft::NodeId behind = lead == 1 ? 2 : 1;
  const raft::NodeId rebuilt_id = 6 - lead - behind;
  net_.down.insert(behind);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(put(lead, "committed-" + std::to_string(i), "yes").ok());
  }
  // The leader stops; the follower that acknowledged everything is rebuilt empty.
  net_.down.insert(lead);
  replica(lead).node.reset();
  Replica& old = replica(rebuilt_id);
  old.node.reset();
  auto fresh = std::make_unique<Replica>();
  fresh->endpoint = std::make_unique<TestNetwork::Endpoint>(&net_, rebuilt_id);
  ASSERT_TRUE(
      carry_over_for_rebuild(old.engine, damaged_log(old), fresh->engine, "test damage", 0).ok());
  replicas_[rebuilt_id - 1] = std::move(fresh);
  open(rebuilt_id);
  net_.down.erase(behind);
  tick_all(200);
  EXPECT_EQ(leader(), raft::kNoNode) << "only a leader holding the committed entries may win";

  // The old leader returns: it wins with the lagging replica's vote, and nothing is lost.
  net_.down.erase(lead);
  open(lead);
  tick_all(200);
  const raft::NodeId next = leader();
  ASSERT_NE(next, raft::kNoNode);
  for (const raft::NodeId id : {lead, behind, rebuilt_id}) {
    for (int i = 0; i < 5; ++i) {
      EXPECT_EQ(read(id, "committed-" + std::to_string(i)), "yes") << "replica " << id;
    }
  }
}

}  // namespace
}  // namespace herald::rsm

namespace herald::rsm {
namespace {

class RecoveryTest : public NodeTest {
 protected:
  // Crashes replica `id` (its engine keeps what it holds) and opens it again.
  void restart(raft::NodeId id) {
    replica(id).node.reset();
    open(id);
  }
};

TEST_P(RecoveryTest, ABrandNewReplicaNeedsNoRecoveryButARestartedOneDoes) {
  const raft::NodeId lead = start_three();
  ASSERT_NE(lead, raft::kNoNode);
  const raft::NodeId f = lead == 1 ? 2 : 1;
  EXPECT_FALSE(replica(f).node->recovering());
  restart(f);
  EXPECT_TRUE(replica(f).node->recovering());
}

TEST_P(RecoveryTest, ARestartedReplicaRecoversOnceEveryOtherVoterReported) {
  const raft::NodeId lead = start_three();
  ASSERT_NE(lead, raft::kNoNode);
  const raft::NodeId f = lead == 1 ? 2 : 1;
  restart(f);
  ASSERT_TRUE(replica(f).node->recovering());
  // Its first tick sends a report; both peers answer at once, naming its new incarnation.
  tick_all(1);
  EXPECT_FALSE(replica(f).node->recovering());
  EXPECT_TRUE(put(f, "k", "v").ok());
}

TEST_P(RecoveryTest, WithAVoterDownRecoveryWaitsForTheMajorityFallback) {
  NodeConfig base;
  base.recovery_fallback_ticks = 100;
  const raft::NodeId lead = start_three(base);
  ASSERT_NE(lead, raft::kNoNode);
  const raft::NodeId f = lead == 1 ? 2 : 1;
  const raft::NodeId other = 6 - lead - f;
  net_.down.insert(other);
  restart(f);
  tick_all(90);
  EXPECT_TRUE(replica(f).node->recovering());
  tick_all(20);
  EXPECT_FALSE(replica(f).node->recovering());
  EXPECT_TRUE(put(lead, "k", "v").ok());  // the leader and f are a majority again
}

TEST_P(RecoveryTest, WithoutTheFallbackASilentVoterKeepsARestartedReplicaRecovering) {
  NodeConfig base;
  base.recovery_fallback_ticks = 0;
  const raft::NodeId lead = start_three(base);
  ASSERT_NE(lead, raft::kNoNode);
  const raft::NodeId f = lead == 1 ? 2 : 1;
  net_.down.insert(6 - lead - f);
  restart(f);
  tick_all(300);
  EXPECT_TRUE(replica(f).node->recovering());
}

TEST_P(RecoveryTest, TrustDiskSkipsRecovery) {
  NodeConfig base;
  base.trust_disk = true;
  const raft::NodeId lead = start_three(base);
  ASSERT_NE(lead, raft::kNoNode);
  const raft::NodeId f = lead == 1 ? 2 : 1;
  restart(f);
  EXPECT_FALSE(replica(f).node->recovering());
}

TEST_P(RecoveryTest, TheIncarnationNeverGoesBelowItsFloorNorBackwards) {
  NodeConfig base;
  base.incarnation_floor = 5'000;
  start(1, base);
  EXPECT_EQ(replica(1).node->incarnation(), 5'000u);
  config_.incarnation_floor = 10;  // a clock set back: the stored counter still rises
  restart(1);
  EXPECT_EQ(replica(1).node->incarnation(), 5'001u);
  // A disk that lost the stored counter: the floor alone keeps request ids of earlier runs
  // unused.
  storage::WriteBatch wipe;
  wipe.del(storage::Space::kMeta, kIncarnationKey);
  ASSERT_TRUE(replica(1).engine.write(wipe, true).ok());
  config_.incarnation_floor = 6'000;
  restart(1);
  EXPECT_EQ(replica(1).node->incarnation(), 6'000u);
}

// Membership through rsm::Node (docs/operations.md, "Membership"): a new replica joins as a
// learner, catches up, is promoted; another voter is removed; the leader refuses a second change
// while one is in flight and refuses to remove itself.
class MembershipTest : public NodeTest {
 protected:
  // Adds replica `id` (the next one) to the network, opened as a joining replica.
  void open_joining(raft::NodeId id) {
    auto r = std::make_unique<Replica>();
    r->endpoint = std::make_unique<TestNetwork::Endpoint>(&net_, id);
    replicas_.push_back(std::move(r));
    Replica& joined = replica(id);
    NodeConfig c = on_log(config_, joined);
    c.id = id;
    c.seed = 42;
    c.join = true;
    auto node = Node::open(c, &joined.engine, joined.endpoint.get(), &joined.sm);
    ASSERT_TRUE(node.ok()) << node.status().to_string();
    joined.node = std::move(node).value();
  }

  // Asks `at` for `change` and ticks until it is answered.
  Status change_at(raft::NodeId at, const MemberChange& change) {
    std::optional<Status> out;
    replica(at).node->change_membership(change, [&](Status s) { out = std::move(s); });
    for (int i = 0; i < 200 && !out; ++i) tick_all(1);
    return out.value_or(Status::timeout("no answer"));
  }
};

TEST_P(MembershipTest, AJoiningReplicaIsAddedAsLearnerPromotedAndAnotherVoterRemoved) {
  const raft::NodeId lead = start_three();
  ASSERT_NE(lead, raft::kNoNode);
  ASSERT_TRUE(put(lead, "before", "1").ok());
  open_joining(4);
  EXPECT_TRUE(replica(4).node->conf_state().voters().empty());

  ASSERT_TRUE(change_at(lead, {MemberOp::kAddLearner, 4, "127.0.0.1:7441"}).ok());
  tick_all(20);
  // It learned the initial voters too (they are not in the log: it started from a snapshot).
  EXPECT_EQ(replica(4).node->conf_state().SerializeAsString(),
            replica(lead).node->conf_state().SerializeAsString());
  EXPECT_EQ(replica(4).node->conf_state().voters_size(), 3);
  EXPECT_EQ(replica(4).node->conf_state().learners_size(), 1);
  EXPECT_EQ(read(4, "before"), "1");
  // The address record travels with the state, to every replica.
  for (const raft::NodeId id : {1, 2, 3, 4}) {
    auto rec = replica(id).node->engine().get(storage::Space::kState, member_address_key(4));
    ASSERT_TRUE(rec.ok() && rec->has_value()) << id;
    std::string_view address;
    ASSERT_TRUE(open_record(**rec, address));
    EXPECT_EQ(address, "127.0.0.1:7441");
  }

  ASSERT_TRUE(change_at(lead, {MemberOp::kPromote, 4, {}}).ok());
  tick_all(5);
  EXPECT_EQ(replica(4).node->conf_state().voters_size(), 4);
  const raft::NodeId removed = lead == 3 ? 2 : 3;
  ASSERT_TRUE(change_at(lead, {MemberOp::kRemove, removed, {}}).ok());
  const raftpb::ConfState& conf = replica(lead).node->conf_state();
  EXPECT_EQ(conf.voters_size(), 3);
  EXPECT_EQ(conf.learners_size(), 0);
  EXPECT_EQ(std::count(conf.voters().begin(), conf.voters().end(), removed), 0);
  auto rec = replica(lead).node->engine().get(storage::Space::kState, member_address_key(removed));
  ASSERT_TRUE(rec.ok());
  EXPECT_FALSE(rec->has_value());

  // The cluster without `removed` still commits, and the new voter has it.
  net_.down.insert(removed);
  ASSERT_TRUE(put(lead, "after", "2").ok());
  tick_all(5);
  EXPECT_EQ(read(4, "after"), "2");
}

// A removed node never clears its own disk alarm; left in the applied state, it would refuse new
// content cluster-wide forever. Removing the node clears it, and a non-member raises none.
TEST_P(MembershipTest, RemovingANodeClearsItsDiskAlarmAndANonMemberRaisesNone) {
  constexpr std::uint64_t kFloor = 1'000;
  storage::ManualDiskSpace plenty(10 * kFloor);
  storage::ManualDiskSpace low(10 * kFloor);
  NodeConfig base;
  base.min_free_bytes = kFloor;
  base.disk = &plenty;
  start(3, base);
  config_.disk = &low;  // node 3 measures its own disk
  replica(3).node.reset();
  open(3);
  tick_all(40);
  low.set(kFloor - 1);
  tick_all(kDiskCheckIntervalTicks + 5);
  raft::NodeId lead = leader();
  ASSERT_NE(lead, raft::kNoNode);
  EXPECT_EQ(replica(lead).node->disk_alarms(), std::set<raft::NodeId>{3});
  if (lead == 3) {
    replica(3).node->transfer_leadership(1);
    tick_all(20);
    lead = leader();
    ASSERT_NE(lead, 3U);
  }

  ASSERT_TRUE(change_at(lead, {MemberOp::kRemove, 3, {}}).ok());
  tick_all(5);
  for (const raft::NodeId id : {1, 2}) {
    EXPECT_TRUE(replica(id).node->disk_alarms().empty()) << "replica " << id;
  }
  auto accepted = put(lead, "b", "2");
  ASSERT_TRUE(accepted.ok()) << accepted.status().to_string();
  EXPECT_EQ(accepted->code(), 0U);

  // Node 3 still runs on its low disk and, no longer seeing its alarm applied, raises it again
  // through the leader it knew: the members ignore it.
  tick_all(3 * kDiskCheckIntervalTicks);
  for (const raft::NodeId id : {1, 2}) {
    EXPECT_TRUE(replica(id).node->disk_alarms().empty()) << "replica " << id;
  }
  EXPECT_GT(replica(3).node->stats().proposals, 0U);
}

// A replica that restarts with an applied membership older than the cluster's (it was cut off,
// or its disk lost the change) must not wait for the report of a voter removed since: that
// node's process is gone. It waits for the voters of the newest membership its peers report.
TEST_P(MembershipTest, ARecoveringReplicaWaitsForTheCurrentVotersNotARemovedOne) {
  NodeConfig base;
  base.recovery_fallback_ticks = 0;  // no majority fallback: only the rule itself can end it
  const raft::NodeId lead = start_three(base);
  ASSERT_NE(lead, raft::kNoNode);
  const raft::NodeId f = lead == 1 ? 2 : 1;
  const raft::NodeId gone = 6 - lead - f;
  net_.down.insert(f);
  ASSERT_TRUE(change_at(lead, {MemberOp::kRemove, gone, {}}).ok());
  replica(gone).node.reset();  // the operator stops the removed node
  net_.down.insert(gone);
  // f restarts with its old membership, which still counts `gone` as a voter.
  replica(f).node.reset();
  open(f);
  net_.down.erase(f);
  ASSERT_TRUE(replica(f).node->recovering());
  EXPECT_EQ(replica(f).node->conf_state().voters_size(), 3);
  tick_all(50);
  EXPECT_FALSE(replica(f).node->recovering());
  // The two remaining voters commit again, and f applied its peer's removal.
  ASSERT_TRUE(put(lead, "after", "1").ok());
  tick_all(5);
  EXPECT_EQ(replica(f).node->conf_state().voters_size(), 2);
  EXPECT_EQ(read(f, "after"), "1");
}

TEST_P(MembershipTest, TheLeaderRefusesASecondChangeInFlightRemovingItselfAndNonLeadersRefuseAll) {
  const raft::NodeId lead = start_three();
  ASSERT_NE(lead, raft::kNoNode);
  std::optional<Status> first;
  std::optional<Status> second;
  replica(lead).node->change_membership({MemberOp::kAddLearner, 4, "127.0.0.1:7441"},
                                        [&](Status s) { first = std::move(s); });
  replica(lead).node->change_membership({MemberOp::kAddLearner, 5, "127.0.0.1:7451"},
                                        [&](Status s) { second = std::move(s); });
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->code(), Code::kFailedPrecondition) << second->to_string();
  for (int i = 0; i < 50 && !first; ++i) tick_all(1);
  ASSERT_TRUE(first.has_value());
  EXPECT_TRUE(first->ok()) << first->to_string();

  EXPECT_EQ(change_at(lead, {MemberOp::kRemove, lead, {}}).code(), Code::kFailedPrecondition);
  EXPECT_EQ(change_at(lead, {MemberOp::kRemove, 9, {}}).code(), Code::kNotFound);
  const raft::NodeId follower = lead == 1 ? 2 : 1;
  EXPECT_EQ(change_at(follower, {MemberOp::kRemove, 4, {}}).code(), Code::kNotLeader);
}

// A crash loses the unsynced writes of the state space and of the log (each its own store on the
// segment log) at any point, compactions included: every acknowledged write survives, and the
// replica reopens on what is left.
TEST_P(NodeTest, CrashesLosingUnsyncedWritesOfBothStoresKeepEveryAcknowledgedWrite) {
  NodeConfig base;
  base.compaction_threshold_entries = 40;
  base.log_tail_entries = 5;
  start(1, base);
  tick_all(30);
  Rng rng(7);
  int written = 0;
  for (int round = 0; round < 6; ++round) {
    for (int i = 0; i < 60; ++i, ++written) {
      ASSERT_TRUE(put(1, "k" + std::to_string(written), std::string(100, 'v')).ok());
    }
    replica(1).node.reset();
    replica(1).engine.crash(rng);
    replica(1).log_fs.crash(rng);
    open(1);
    tick_all(30);
    ASSERT_EQ(leader(), 1U);
    for (int i = 0; i < written; ++i) {
      ASSERT_EQ(read(1, "k" + std::to_string(i)), std::string(100, 'v')) << "key " << i;
    }
  }
  if (on_segments()) {
    EXPECT_GT(replica(1).node->log().first_index(), 1U) << "compaction dropped no segment";
  }
}

// The snapshot install writes the state space (synced) before the log's snapshot record; a crash
// between the two leaves a state beyond the log's end. Here the follower's state space is
// replaced by the leader's (as the install would) and its log is left behind: on open the state
// counts as the snapshot, the log restarts after it, and the follower catches up from there.
TEST_P(NodeTest, AStateAheadOfTheLogCountsAsAnInstalledSnapshotWhoseLogRecordWasLost) {
  const auto [lead, lagging] = leave_a_follower_behind(kSnapshotChunkBytes);
  ASSERT_NE(lead, raft::kNoNode);
  Replica& behind = replica(lagging);
  const raft::Index log_last = behind.node->log().last_index();
  behind.node.reset();
  storage::WriteBatch install;
  install.delete_range(storage::Space::kState, "", kStateSpaceEnd);
  for (auto it = replica(lead).engine.scan(storage::Space::kState, "", ""); it->valid();
       it->next()) {
    install.put(storage::Space::kState, it->key(), it->value());
  }
  ASSERT_TRUE(behind.engine.write(install, /*sync=*/true).ok());
  const raft::Index applied = replica(lead).node->applied_index();
  ASSERT_GT(applied, log_last);

  open(lagging);
  const raft::LogStorage& log = replica(lagging).node->log();
  EXPECT_EQ(replica(lagging).node->applied_index(), applied);
  EXPECT_EQ(log.first_index(), applied + 1);
  EXPECT_EQ(log.last_index(), applied);
  EXPECT_EQ(log.snapshot_metadata().index(), applied);
  auto term = log.term(applied);
  ASSERT_TRUE(term.ok()) << term.status().to_string();
  EXPECT_EQ(*term, replica(lead).node->applied_term());
  auto initial = log.initial_state();
  ASSERT_TRUE(initial.ok());
  EXPECT_GE(initial->hard_state.commit(), applied);

  // Durable: a second open finds the log already in line.
  replica(lagging).node.reset();
  open(lagging);
  EXPECT_EQ(replica(lagging).node->log().first_index(), applied + 1);

  net_.down.erase(lagging);
  ASSERT_TRUE(put(lead, "after", "install").ok());
  tick_all(20);
  for (int i = 0; i < 120; ++i) {
    EXPECT_EQ(read(lagging, "k" + std::to_string(i)), std::string(20, 'v'));
  }
  EXPECT_EQ(read(lagging, "after"), "install");
}

// A log compacted beyond the applied state cannot be replayed: the open refuses it.
TEST_P(NodeTest, ALogCompactedBeyondTheAppliedStateIsRefusedOnOpen) {
  start(1);
  tick_all(30);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(put(1, "k" + std::to_string(i), "v").ok());
  }
  Replica& r = replica(1);
  const raft::Index applied = r.node->applied_index();
  r.node.reset();
  // Roll the applied state back to the bootstrap's, as a lost state space would.
  storage::WriteBatch rollback;
  raftpb::ConfState conf;
  conf.add_voters(1);
  rsmpb::AppliedState state;
  *state.mutable_conf_state() = conf;
  rollback.put(storage::Space::kState, kAppliedStateKey, seal_record(state.SerializeAsString()));
  ASSERT_TRUE(r.engine.write(rollback, true).ok());
  // And compact the log past it.
  {
    NodeConfig c = on_log(config_, r);
    std::unique_ptr<storage::RaftLog> log;
    if (c.log_fs != nullptr) {
      auto opened = storage::SegmentLog::open(c.log_fs, {.segment_bytes = kTestSegmentBytes});
      ASSERT_TRUE(opened.ok());
      log = std::move(opened).value();
    } else {
      auto opened = storage::LogStore::open(&r.engine);
      ASSERT_TRUE(opened.ok());
      log = std::move(opened).value();
    }
    raftpb::SnapshotMetadata meta;
    meta.set_index(applied);
    meta.set_term(*log->term(applied));
    *meta.mutable_conf_state() = conf;
    ASSERT_TRUE(log->save(std::nullopt, meta, {}, /*sync=*/true).ok());
  }
  NodeConfig c = on_log(config_, r);
  c.id = 1;
  const Status opened = Node::open(c, &r.engine, r.endpoint.get(), &r.sm).status();
  EXPECT_EQ(opened.code(), Code::kCorruption) << opened.to_string();
}

void NodeTest::expect_engine_log_moves_into_segments(bool cut_short) {
  start(1);
  tick_all(30);
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(put(1, "k" + std::to_string(i), "v").ok());
  }
  Replica& r = replica(1);
  const raft::Index last = r.node->log().last_index();
  const raft::NodeStatus before = r.node->status();
  r.node.reset();
  if (cut_short) {
    // What a crash leaves after the segment log was created and before the moved hard state was
    // synced into it: an empty segment log beside the engine's log.
    auto made = storage::SegmentLog::open(&r.log_fs, {.segment_bytes = kTestSegmentBytes});
    ASSERT_TRUE(made.ok()) << made.status().to_string();
  }
  NodeConfig c = config_;
  c.id = 1;
  c.log_fs = &r.log_fs;
  c.log_segment_bytes = kTestSegmentBytes;
  auto node = Node::open(c, &r.engine, r.endpoint.get(), &r.sm);
  ASSERT_TRUE(node.ok()) << node.status().to_string();
  r.node = std::move(node).value();
  EXPECT_EQ(r.node->log().last_index(), last);
  // The durable hard state came along (the open's own campaign is not persisted yet).
  auto moved = r.node->log().initial_state();
  ASSERT_TRUE(moved.ok());
  EXPECT_EQ(moved->hard_state.term(), before.term);
  EXPECT_EQ(moved->hard_state.vote(), before.vote);
  EXPECT_FALSE(r.engine.scan(storage::Space::kLog, "", "")->valid()) << "the engine keeps a log";
  auto stale = r.engine.get(storage::Space::kMeta, storage::kHardStateKey);
  ASSERT_TRUE(stale.ok());
  EXPECT_FALSE(stale->has_value());
  config_ = c;  // from now on, every open uses the segment log
  tick_all(30);
  ASSERT_TRUE(put(1, "after", "move").ok());
  r.node.reset();
  open(1);
  tick_all(30);
  EXPECT_EQ(read(1, "k19"), "v");
  EXPECT_EQ(read(1, "after"), "move");
}

// A replica whose log was in the engine (or restored from a backup, which writes it there)
// opened with a segment log: the log moves into segment files and leaves the engine.
TEST_P(NodeTest, AnEngineLogMovesIntoANewSegmentLogOnOpen) {
  if (on_segments()) {
    GTEST_SKIP() << "the case starts on the engine log itself";
  }
  expect_engine_log_moves_into_segments(/*cut_short=*/false);
}

// The same move, cut short by a crash or a failed write before the hard state reached the
// segment log: the engine still holds the log, so the next open moves it again. (A rebuilt
// replica's carried-over term and vote take this path.)
TEST_P(NodeTest, AnEngineLogMoveCutShortIsRedoneOnTheNextOpen) {
  if (on_segments()) {
    GTEST_SKIP() << "the case starts on the engine log itself";
  }
  expect_engine_log_moves_into_segments(/*cut_short=*/true);
}

// A disk with no space left under one replica: every write of its engine and of its log files
// fails with kResourceExhausted (what RocksDB and the segment files report for ENOSPC).
class FullDiskTest : public NodeTest {
 protected:
  // Fills `id`'s disk, proposes through `proposer`, and checks that `id` stops with
  // kResourceExhausted (no assertion, no answer it could not persist) while the other two go on;
  // then frees the disk, reopens `id` on what it held, and checks that it catches up.
  void expect_halt_and_recovery(raft::NodeId id, raft::NodeId proposer) {
    Replica& full = replica(id);
    full.engine.set_full(true);
    full.log_fs.set_full(true);
    tolerate_faults_ = true;
    std::optional<Result<rsmpb::CommandResult>> answer;
    rsmpb::Command during;
    during.mutable_kv_put()->set_key("during");
    during.mutable_kv_put()->set_value("2");
    replica(proposer).node->propose(during,
                                    [&](Result<rsmpb::CommandResult> r) { answer = std::move(r); });
    tick_all(5);
    ASSERT_EQ(faults_.size(), 1U);
    EXPECT_EQ(faults_[0].code(), Code::kResourceExhausted) << faults_[0].to_string();
    EXPECT_EQ(full.node, nullptr);
    if (proposer == id) {
      // Its host abandons what was in flight (outcome unknown); it never reports a success.
      EXPECT_FALSE(answer.has_value() && answer->ok());
    }
    // The other two keep (or elect) a leader and take writes.
    tick_all(100);
    const raft::NodeId lead = leader();
    ASSERT_NE(lead, raft::kNoNode);
    ASSERT_NE(lead, id);
    const auto after = put(lead, "after", "3");
    ASSERT_TRUE(after.ok()) << after.status().to_string();
    EXPECT_EQ(after->code(), 0U) << after->message();
    // Space returns: it reopens on what it held (its host restarts it) and catches up.
    full.engine.set_full(false);
    full.log_fs.set_full(false);
    net_.down.erase(id);
    open(id);
    tick_all(100);
    EXPECT_EQ(faults_.size(), 1U);
    EXPECT_EQ(read(id, "before"), "1");
    EXPECT_EQ(read(id, "after"), "3");
    EXPECT_EQ(replica(id).node->applied_index(), replica(lead).node->applied_index());
    EXPECT_GT(full.engine.counters().full_writes + full.log_fs.counters().full_ops, 0U);
  }
};

TEST_P(FullDiskTest, ALeaderWhoseDiskFillsStopsWithoutAcknowledgingAndCatchesUpOnceSpaceReturns) {
  const raft::NodeId lead = start_three();
  ASSERT_NE(lead, raft::kNoNode);
  ASSERT_TRUE(put(lead, "before", "1").ok());
  expect_halt_and_recovery(lead, lead);
}

TEST_P(FullDiskTest, AFollowerWhoseDiskFillsStopsWhileTheOthersCommitAndCatchesUpOnceSpaceReturns) {
  const raft::NodeId lead = start_three();
  ASSERT_NE(lead, raft::kNoNode);
  ASSERT_TRUE(put(lead, "before", "1").ok());
  expect_halt_and_recovery(lead == 1 ? 2 : 1, lead);
}

// Every LogKind, for the suites below.
auto every_log_kind() {
  return ::testing::Values(LogKind::kEngine, LogKind::kSegments,
                           LogKind::kSegmentsApplyWhileWriting);
}
INSTANTIATE_TEST_SUITE_P(EveryLog, NodeTest, every_log_kind(), log_kind_name);
INSTANTIATE_TEST_SUITE_P(EveryLog, RecoveryTest, every_log_kind(), log_kind_name);
INSTANTIATE_TEST_SUITE_P(EveryLog, MembershipTest, every_log_kind(), log_kind_name);
INSTANTIATE_TEST_SUITE_P(EveryLog, FullDiskTest, every_log_kind(), log_kind_name);

}  // namespace
}  // namespace herald::rsm
