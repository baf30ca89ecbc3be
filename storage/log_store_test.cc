#include "storage/log_store.h"

#include <gtest/gtest.h>

#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "base/encoding.h"
#include "storage/mem_engine.h"
#include "storage/rocksdb_engine.h"
#include "storage/test_util.h"

namespace herald::storage {
namespace {

using testing::get_or_absent;
using testing::TempDir;

// The same LogStore tests run on disk and in simulation. An environment owns one engine and can
// restart it cleanly (every write kept) and damage a stored value.
class RocksDbEnv {
 public:
  RocksDbEnv() { open(); }
  Engine* engine() { return engine_.get(); }
  void restart() {
    engine_.reset();
    open();
  }
  // Rewrites the value under `key` with one bit flipped, as a damaged sector would read back.
  void corrupt(Space space, std::string_view key) {
    std::string value = get_or_absent(*engine_, space, key);
    ASSERT_NE(value, "<absent>");
    value.back() = static_cast<char>(value.back() ^ 0x01);
    WriteBatch batch;
    batch.put(space, key, value);
    ASSERT_TRUE(engine_->write(batch, /*sync=*/true).ok());
  }

 private:
  void open() {
    auto engine = RocksDbEngine::open(dir_.path(), RocksDbOptions{});
    ASSERT_TRUE(engine.ok()) << engine.status().to_string();
    engine_ = std::move(engine).value();
  }

  TempDir dir_;
  std::unique_ptr<RocksDbEngine> engine_;
};

class MemEnv {
 public:
  Engine* engine() { return &engine_; }
  void restart() {}  // a clean restart keeps every write
  void corrupt(Space space, std::string_view key) { ASSERT_TRUE(engine_.corrupt(space, key)); }
  MemEngine& mem() { return engine_; }

 private:
  MemEngine engine_;
};

raftpb::Entry make_entry(raft::Index index, raft::Term term, const std::string& data = "cmd") {
  raftpb::Entry entry;
  entry.set_index(index);
  entry.set_term(term);
  entry.set_data(data + std::to_string(index));
  return entry;
}

// Entries [lo, hi) all in `term`.
std::vector<raftpb::Entry> make_entries(raft::Index lo, raft::Index hi, raft::Term term) {
  std::vector<raftpb::Entry> out;
  for (raft::Index i = lo; i < hi; ++i) {
    out.push_back(make_entry(i, term));
  }
  return out;
}

raftpb::HardState make_hard_state(raft::Term term, raft::NodeId vote, raft::Index commit) {
  raftpb::HardState hs;
  hs.set_term(term);
  hs.set_vote(vote);
  hs.set_commit(commit);
  return hs;
}

raftpb::SnapshotMetadata make_meta(raft::Index index, raft::Term term) {
  raftpb::SnapshotMetadata meta;
  meta.set_index(index);
  meta.set_term(term);
  return meta;
}

std::vector<raft::Index> indexes(const std::vector<raftpb::Entry>& entries) {
  std::vector<raft::Index> out;
  out.reserve(entries.size());
  for (const raftpb::Entry& e : entries) {
    out.push_back(e.index());
  }
  return out;
}

template <typename Env>
class LogStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { open_store(); }

  void open_store(std::uint64_t cache_bytes = kEntryCacheBytes) {
    auto store = LogStore::open(env_.engine(), cache_bytes);
    ASSERT_TRUE(store.ok()) << store.status().to_string();
    store_ = std::move(store).value();
  }
  // Closes the store, restarts the engine cleanly and recovers a new store from it.
  void restart(std::uint64_t cache_bytes = kEntryCacheBytes) {
    store_.reset();
    env_.restart();
    open_store(cache_bytes);
  }
  void append(const std::vector<raftpb::Entry>& entries,
              const std::optional<raftpb::HardState>& hs = std::nullopt) {
    const Status s = store_->save(hs, std::nullopt, entries, /*sync=*/true);
    ASSERT_TRUE(s.ok()) << s.to_string();
  }
  raft::Term term_of(raft::Index i) {
    const auto term = store_->term(i);
    EXPECT_TRUE(term.ok()) << term.status().to_string();
    return term.ok() ? *term : 0;
  }
  std::vector<raft::Index> read(raft::Index lo, raft::Index hi,
                                std::uint64_t max_bytes = UINT64_MAX) {
    const auto entries = store_->entries(lo, hi, max_bytes);
    EXPECT_TRUE(entries.ok()) << entries.status().to_string();
    return entries.ok() ? indexes(*entries) : std::vector<raft::Index>{};
  }

  Env env_;
  std::unique_ptr<LogStore> store_;
};

class EngineNames {
 public:
  template <typename T>
  static std::string GetName(int) {
    return std::is_same_v<T, RocksDbEnv> ? "RocksDb" : "Mem";
  }
};
using Engines = ::testing::Types<RocksDbEnv, MemEnv>;
TYPED_TEST_SUITE(LogStoreTest, Engines, EngineNames);

TYPED_TEST(LogStoreTest, EmptyLogStartsAtOne) {
  EXPECT_EQ(this->store_->first_index(), 1U);
  EXPECT_EQ(this->store_->last_index(), 0U);
  EXPECT_EQ(this->term_of(0), 0U);
  EXPECT_TRUE(this->read(1, 1).empty());
  EXPECT_EQ(this->store_->term(1).status().code(), Code::kUnavailable);
}

TYPED_TEST(LogStoreTest, AppendThenReadEntriesAndTerms) {
  this->append(make_entries(1, 4, 1));
  this->append(make_entries(4, 6, 2));
  EXPECT_EQ(this->store_->last_index(), 5U);
  EXPECT_EQ(this->read(1, 6), (std::vector<raft::Index>{1, 2, 3, 4, 5}));
  EXPECT_EQ(this->term_of(3), 1U);
  EXPECT_EQ(this->term_of(4), 2U);
  const auto entries = this->store_->entries(2, 3, UINT64_MAX);
  ASSERT_TRUE(entries.ok());
  EXPECT_EQ((*entries)[0].data(), "cmd2");
  EXPECT_EQ(this->store_->entries(1, 7, UINT64_MAX).status().code(), Code::kUnavailable);
  EXPECT_EQ(this->store_->term(6).status().code(), Code::kUnavailable);
}

TYPED_TEST(LogStoreTest, ConflictingAppendTruncatesSuffix) {
  this->append(make_entries(1, 6, 1));
  this->append(make_entries(3, 5, 2));  // replaces 3..5 with 3..4 of term 2
  EXPECT_EQ(this->store_->last_index(), 4U);
  EXPECT_EQ(this->term_of(2), 1U);
  EXPECT_EQ(this->term_of(3), 2U);
  EXPECT_EQ(this->store_->term(5).status().code(), Code::kUnavailable);
  this->restart();  // the old entry 5 must not come back from the engine
  EXPECT_EQ(this->store_->last_index(), 4U);
  EXPECT_EQ(this->term_of(4), 2U);
  EXPECT_EQ(this->read(1, 5), (std::vector<raft::Index>{1, 2, 3, 4}));
}

TYPED_TEST(LogStoreTest, CompactKeepsTermAtTruncationPoint) {
  this->append(make_entries(1, 11, 3));
  this->store_->set_snapshot_metadata(make_meta(7, 3));
  ASSERT_TRUE(this->store_->compact(6).ok());
  EXPECT_EQ(this->store_->first_index(), 7U);
  EXPECT_EQ(this->store_->truncated_index(), 6U);
  EXPECT_EQ(this->term_of(6), 3U);
  EXPECT_EQ(this->store_->term(5).status().code(), Code::kCompacted);
  EXPECT_EQ(this->store_->entries(6, 8, UINT64_MAX).status().code(), Code::kCompacted);
  EXPECT_EQ(this->read(7, 11), (std::vector<raft::Index>{7, 8, 9, 10}));
  ASSERT_TRUE(this->store_->compact(4).ok());  // already compacted: a no-op
  EXPECT_EQ(this->store_->first_index(), 7U);

  this->restart();
  EXPECT_EQ(this->store_->first_index(), 7U);
  EXPECT_EQ(this->store_->last_index(), 10U);
  EXPECT_EQ(this->term_of(6), 3U);
  EXPECT_EQ(this->read(7, 11), (std::vector<raft::Index>{7, 8, 9, 10}));
}

TYPED_TEST(LogStoreTest, CompactWholeLogLeavesItEmpty) {
  this->append(make_entries(1, 4, 2));
  this->store_->set_snapshot_metadata(make_meta(3, 2));
  ASSERT_TRUE(this->store_->compact(3).ok());
  EXPECT_EQ(this->store_->first_index(), 4U);
  EXPECT_EQ(this->store_->last_index(), 3U);
  this->restart();
  EXPECT_EQ(this->store_->first_index(), 4U);
  EXPECT_EQ(this->store_->last_index(), 3U);
  EXPECT_EQ(this->term_of(3), 2U);
  this->append(make_entries(4, 5, 2));
  EXPECT_EQ(this->read(4, 5), (std::vector<raft::Index>{4}));
}

TYPED_TEST(LogStoreTest, ReopenRecoversLastIndexAndHardState) {
  this->append(make_entries(1, 1001, 4), make_hard_state(4, 2, 900));
  this->restart();
  EXPECT_EQ(this->store_->first_index(), 1U);
  EXPECT_EQ(this->store_->last_index(), 1000U);
  EXPECT_EQ(this->store_->hard_state().term(), 4U);
  EXPECT_EQ(this->store_->hard_state().vote(), 2U);
  EXPECT_EQ(this->store_->hard_state().commit(), 900U);
  const auto initial = this->store_->initial_state();
  ASSERT_TRUE(initial.ok());
  EXPECT_EQ(initial->hard_state.commit(), 900U);
  EXPECT_EQ(this->term_of(1000), 4U);
}

TYPED_TEST(LogStoreTest, SnapshotInstallResetsLog) {
  this->append(make_entries(1, 6, 1));
  raftpb::SnapshotMetadata snap = make_meta(20, 4);
  snap.mutable_conf_state()->add_voters(1);
  ASSERT_TRUE(this->store_->save(make_hard_state(4, 0, 20), snap, {}, /*sync=*/true).ok());
  EXPECT_EQ(this->store_->first_index(), 21U);
  EXPECT_EQ(this->store_->last_index(), 20U);
  EXPECT_EQ(this->term_of(20), 4U);
  EXPECT_EQ(this->store_->term(5).status().code(), Code::kCompacted);
  EXPECT_EQ(this->store_->snapshot_metadata().index(), 20U);
  EXPECT_EQ(this->store_->snapshot_metadata().conf_state().voters_size(), 1);
  this->append(make_entries(21, 23, 4));

  this->restart();
  EXPECT_EQ(this->store_->first_index(), 21U);
  EXPECT_EQ(this->store_->last_index(), 22U);
  EXPECT_EQ(this->term_of(20), 4U);
  EXPECT_EQ(this->read(21, 23), (std::vector<raft::Index>{21, 22}));
}

TYPED_TEST(LogStoreTest, SnapshotBehindLastIndexStillDropsWholeLog) {
  this->append(make_entries(1, 11, 1));
  const std::vector<raftpb::Entry> next = make_entries(4, 6, 2);
  ASSERT_TRUE(this->store_->save(std::nullopt, make_meta(3, 1), next, /*sync=*/true).ok());
  EXPECT_EQ(this->store_->first_index(), 4U);
  EXPECT_EQ(this->store_->last_index(), 5U);
  this->restart();
  EXPECT_EQ(this->store_->last_index(), 5U);
  EXPECT_EQ(this->term_of(5), 2U);
}

TYPED_TEST(LogStoreTest, EntriesMaxBytesReturnsAtLeastOne) {
  const std::vector<raftpb::Entry> all = make_entries(1, 6, 1);
  this->append(all);
  const std::uint64_t one = all[0].ByteSizeLong();
  for (int pass = 0; pass < 2; ++pass) {  // from the cache, then from the engine
    EXPECT_EQ(this->read(1, 6, 0), (std::vector<raft::Index>{1}));
    EXPECT_EQ(this->read(1, 6, one), (std::vector<raft::Index>{1}));
    EXPECT_EQ(this->read(1, 6, 2 * one), (std::vector<raft::Index>{1, 2}));
    EXPECT_EQ(this->read(1, 6, 2 * one + 1), (std::vector<raft::Index>{1, 2}));
    EXPECT_EQ(this->read(2, 6, 3 * one), (std::vector<raft::Index>{2, 3, 4}));
    this->restart();
  }
}

TYPED_TEST(LogStoreTest, SmallCacheFallsBackToEngine) {
  const std::vector<raftpb::Entry> all = make_entries(1, 21, 1);
  const std::uint64_t bound = 3 * all[0].ByteSizeLong();
  this->restart(bound);
  this->append(all);
  EXPECT_LE(this->store_->cached_bytes(), bound);
  EXPECT_GT(this->store_->cached_bytes(), 0U);
  std::vector<raft::Index> expected;
  for (raft::Index i = 1; i <= 20; ++i) {
    expected.push_back(i);
  }
  EXPECT_EQ(this->read(1, 21), expected);  // spans engine and cache
  EXPECT_EQ(this->read(19, 21, 0), (std::vector<raft::Index>{19}));
  EXPECT_EQ(this->read(5, 21, 2 * all[0].ByteSizeLong()), (std::vector<raft::Index>{5, 6}));
  EXPECT_EQ(this->term_of(2), 1U);
}

TYPED_TEST(LogStoreTest, CorruptEntryIsDetectedNotApplied) {
  this->append(make_entries(1, 6, 1));
  this->env_.corrupt(Space::kLog, log_key(3));
  this->restart();  // an empty cache: reads go to the engine
  EXPECT_EQ(this->store_->entries(1, 6, UINT64_MAX).status().code(), Code::kCorruption);
  EXPECT_EQ(this->store_->entries(3, 4, UINT64_MAX).status().code(), Code::kCorruption);
  EXPECT_EQ(this->store_->term(3).status().code(), Code::kCorruption);
  EXPECT_EQ(this->read(4, 6), (std::vector<raft::Index>{4, 5}));  // its neighbours are fine
}

TYPED_TEST(LogStoreTest, CorruptLastEntryFailsOpen) {
  this->append(make_entries(1, 6, 1));
  this->store_.reset();
  this->env_.corrupt(Space::kLog, log_key(5));
  const auto store = LogStore::open(this->env_.engine());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), Code::kCorruption);
}

TYPED_TEST(LogStoreTest, AKeyAtTheLargestIndexFailsOpenInsteadOfLooping) {
  this->append(make_entries(1, 3, 1));
  this->store_.reset();
  WriteBatch damage;
  damage.put(Space::kLog, log_key(std::numeric_limits<raft::Index>::max()), "x");
  ASSERT_TRUE(this->env_.engine()->write(damage, /*sync=*/true).ok());
  const auto store = LogStore::open(this->env_.engine());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), Code::kCorruption);
}

TYPED_TEST(LogStoreTest, ACompactionPointBeyondAnyLogFailsOpen) {
  this->append(make_entries(1, 3, 1));
  this->store_.reset();
  std::string payload;
  put_fixed64_be(payload, std::numeric_limits<raft::Index>::max());
  put_fixed64_be(payload, 1);
  WriteBatch damage;
  damage.put(Space::kMeta, kTruncatedKey, seal_record(payload));
  ASSERT_TRUE(this->env_.engine()->write(damage, /*sync=*/true).ok());
  const auto store = LogStore::open(this->env_.engine());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), Code::kCorruption);
}

TYPED_TEST(LogStoreTest, CorruptHardStateFailsOpen) {
  this->append(make_entries(1, 2, 1), make_hard_state(1, 1, 1));
  this->store_.reset();
  this->env_.corrupt(Space::kMeta, kHardStateKey);
  const auto store = LogStore::open(this->env_.engine());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), Code::kCorruption);
}

TYPED_TEST(LogStoreTest, SaveWithExtraOpsIsOneWrite) {
  WriteBatch extra;
  extra.put(Space::kState, "applied", "7");
  ASSERT_TRUE(this->store_
                  ->save(make_hard_state(2, 1, 1), std::nullopt, make_entries(1, 3, 2),
                         /*sync=*/true, &extra)
                  .ok());
  this->restart();
  EXPECT_EQ(this->store_->last_index(), 2U);
  EXPECT_EQ(this->store_->hard_state().term(), 2U);
  EXPECT_EQ(get_or_absent(*this->env_.engine(), Space::kState, "applied"), "7");
}

TYPED_TEST(LogStoreTest, SnapshotMetadataDefaultsToTruncationPoint) {
  this->append(make_entries(1, 6, 2));
  EXPECT_EQ(this->store_->snapshot_metadata().index(), 0U);
  raftpb::SnapshotMetadata applied = make_meta(4, 2);
  applied.mutable_conf_state()->add_voters(3);
  this->store_->set_snapshot_metadata(applied);
  EXPECT_EQ(this->store_->snapshot_metadata().index(), 4U);
  EXPECT_EQ(this->store_->snapshot_metadata().conf_state().voters(0), 3U);
  ASSERT_TRUE(this->store_->compact(4).ok());
  this->restart();  // the caller re-supplies its applied state after open
  EXPECT_EQ(this->store_->snapshot_metadata().index(), 4U);
  EXPECT_EQ(this->store_->snapshot_metadata().term(), 2U);
}

TYPED_TEST(LogStoreTest, InitialStateCarriesCallersConfState) {
  raftpb::ConfState conf;
  conf.add_voters(1);
  conf.add_learners(4);
  this->store_->set_conf_state(conf);
  const auto initial = this->store_->initial_state();
  ASSERT_TRUE(initial.ok());
  EXPECT_EQ(initial->conf_state.voters_size(), 1);
  EXPECT_EQ(initial->conf_state.learners(0), 4U);
}

// Simulation-only cases: injected failures and crashes.
using LogStoreSimTest = LogStoreTest<MemEnv>;

TEST_F(LogStoreSimTest, FailedSaveChangesNothing) {
  append(make_entries(1, 3, 1), make_hard_state(1, 1, 1));
  env_.mem().fail_writes(1);
  WriteBatch extra;
  extra.put(Space::kState, "applied", "2");
  const Status s =
      store_->save(make_hard_state(2, 2, 2), std::nullopt, make_entries(3, 5, 2), true, &extra);
  EXPECT_EQ(s.code(), Code::kIOError);
  EXPECT_EQ(store_->last_index(), 2U);
  EXPECT_EQ(store_->hard_state().term(), 1U);
  EXPECT_EQ(get_or_absent(*env_.engine(), Space::kState, "applied"), "<absent>");
  EXPECT_EQ(store_->term(3).status().code(), Code::kUnavailable);
}

TEST_F(LogStoreSimTest, CrashBeforeSyncLosesTailKeepsHardStateConsistent) {
  constexpr std::uint64_t kSeeds = 64;
  bool lost = false;
  bool kept = false;
  for (std::uint64_t seed = 0; seed < kSeeds; ++seed) {
    MemEngine engine;
    auto store = LogStore::open(&engine);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)
                    ->save(make_hard_state(1, 1, 3), std::nullopt, make_entries(1, 4, 1),
                           /*sync=*/true)
                    .ok());
    ASSERT_TRUE((*store)
                    ->save(make_hard_state(2, 2, 6), std::nullopt, make_entries(4, 7, 2),
                           /*sync=*/false)
                    .ok());
    Rng rng(seed);
    engine.crash(rng);
    auto recovered = LogStore::open(&engine);
    ASSERT_TRUE(recovered.ok()) << recovered.status().to_string();
    const LogStore& log = **recovered;
    if (log.last_index() == 3U) {
      lost = true;
      EXPECT_EQ(log.hard_state().term(), 1U);  // the hard state of the synced save
      EXPECT_EQ(log.hard_state().commit(), 3U);
    } else {
      kept = true;
      EXPECT_EQ(log.last_index(), 6U);
      EXPECT_EQ(log.hard_state().term(), 2U);
      EXPECT_EQ(log.hard_state().vote(), 2U);
    }
  }
  EXPECT_TRUE(lost);
  EXPECT_TRUE(kept);
}

using LogStoreDeathTest = LogStoreTest<MemEnv>;

TEST_F(LogStoreDeathTest, AppendLeavingAGapAsserts) {
  append(make_entries(1, 3, 1));
  EXPECT_DEATH(static_cast<void>(store_->save(std::nullopt, std::nullopt, make_entries(5, 6, 1),
                                              /*sync=*/true)),
               "gap");
}

TEST_F(LogStoreDeathTest, CompactBeyondAppliedStateAsserts) {
  append(make_entries(1, 6, 1));
  EXPECT_DEATH(static_cast<void>(store_->compact(3)), "applied");
}

}  // namespace
}  // namespace herald::storage
