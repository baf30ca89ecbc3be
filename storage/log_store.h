// LogStore: Herald's durable raft log on an Engine, both the raft core's read side
// (raft::LogStorage) and the write side the replication loop drives.
//
// Layout (docs/storage-format.md): Space::kLog maps log_key(index) (fixed64 big-endian) to a
// sealed raftpb::Entry; Space::kMeta holds the sealed HardState under "hard_state" and the
// compaction point {index, term} under "truncated". Every record is CRC-32C framed
// (seal_record); a record failing its check is reported as kCorruption and never returned.
//
// Write path: save() turns one round of raft output (snapshot, entries, hard state) plus the
// caller's own operations into ONE atomic engine write; it is the group-commit unit. The
// in-memory view (last index, hard state, entry cache) changes only after the write succeeds, so
// a failed save leaves the store exactly as it was.
//
// Read path: the most recent entries (up to a byte bound) are kept in memory for the leader's
// replication hot path; older ones are read from the engine and checked on every read.
//
// Ownership: the engine is borrowed and must outlive the LogStore. Thread-safety: none; every
// call comes from the thread that drives the RawNode (or is serialized by the caller).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "raft/log_storage.h"
#include "raft/types.h"
#include "storage/engine.h"
#include "storage/raft_log.h"

namespace herald::storage {

// Upper bound on the bytes (Entry::ByteSizeLong) of recent entries kept in memory: 64 MiB.
inline constexpr std::uint64_t kEntryCacheBytes = std::uint64_t{64} << 20U;

// Space::kMeta keys.
inline constexpr std::string_view kHardStateKey = "hard_state";
inline constexpr std::string_view kTruncatedKey = "truncated";

// The Space::kLog key of entry `index`: 8 bytes, big-endian, so keys sort by index.
[[nodiscard]] std::string log_key(raft::Index index);

class LogStore final : public RaftLog {
 public:
  // Reads what a rebuild must keep from a store that may be damaged anywhere but in the hard
  // state: the hard state, and the highest index among the log's keys, the compaction point and
  // the commit index. Entry values are never read. Errors: kCorruption when the hard state is
  // damaged (its term and vote cannot be known, so no rebuild is safe) or a log key is malformed;
  // the engine's errors otherwise.
  [[nodiscard]] static Result<SalvagedLog> salvage(const Reader& reader);

  // Recovers the hard state, the compaction point and the last index from `engine`, verifying
  // the checksums of the hard state, the compaction point and the last entry. An empty engine
  // gives an empty log (first_index() == 1). Errors: kCorruption for a damaged record or an
  // inconsistent log (a gap, a key that is not an index, commit beyond the last entry); the
  // engine's errors otherwise. `entry_cache_bytes` bounds the in-memory entry cache.
  [[nodiscard]] static Result<std::unique_ptr<LogStore>> open(
      Engine* engine, std::uint64_t entry_cache_bytes = kEntryCacheBytes);

  // raft::LogStorage (see raft/log_storage.h for the contract).
  [[nodiscard]] Result<raft::InitialState> initial_state() const override;
  [[nodiscard]] Result<std::vector<raftpb::Entry>> entries(raft::Index lo, raft::Index hi,
                                                           std::uint64_t max_bytes) const override;
  [[nodiscard]] Result<raft::Term> term(raft::Index i) const override;
  [[nodiscard]] raft::Index first_index() const override { return truncated_index_ + 1; }
  [[nodiscard]] raft::Index last_index() const override { return last_index_; }
  [[nodiscard]] raftpb::SnapshotMetadata snapshot_metadata() const override;

  // Persists, in ONE atomic engine write (durable before returning when `sync`):
  //  1. `snapshot`: the whole log is dropped and the compaction point becomes
  //     (snapshot.index, snapshot.term); snapshot_metadata() then returns it. The snapshot's data
  //     is the caller's, typically written through `extra`.
  //  2. `entries`: appended, replacing any existing entries from entries[0].index onwards.
  //  3. `hs`: the new hard state.
  //  4. `extra`: the caller's operations, applied last.
  // Preconditions (asserted): entries have consecutive indexes; entries[0].index is in
  // (compaction index, last index + 1] after the snapshot, if any, is applied; a snapshot does
  // not move the compaction point backwards. Errors: the engine's; on error nothing changed.
  [[nodiscard]] Status save(const std::optional<raftpb::HardState>& hs,
                            const std::optional<raftpb::SnapshotMetadata>& snapshot,
                            const std::vector<raftpb::Entry>& entries, bool sync,
                            const WriteBatch* extra);
  // RaftLog: save() without operations of the caller's.
  [[nodiscard]] Status save(const std::optional<raftpb::HardState>& hs,
                            const std::optional<raftpb::SnapshotMetadata>& snapshot,
                            const std::vector<raftpb::Entry>& entries, bool sync) override {
    return save(hs, snapshot, entries, sync, nullptr);
  }

  // Removes the entries with index <= upto and moves the compaction point there, without a sync
  // (a crash merely leaves more log). A no-op when upto is already compacted. Preconditions
  // (asserted): upto <= last_index() and upto <= snapshot_metadata().index, i.e. the caller has
  // applied up to upto and said so through set_snapshot_metadata(). Errors: the engine's, or
  // kCorruption if the entry at upto cannot be read.
  [[nodiscard]] Status compact(raft::Index upto) override;

  // Tells the store what a snapshot taken now would cover (the caller's applied state).
  // Precondition (asserted): meta.index >= the compaction index.
  void set_snapshot_metadata(const raftpb::SnapshotMetadata& meta) override;
  // The membership returned by initial_state(): the caller keeps it with its applied state
  // (Space::kState) and hands it back here after open().
  void set_conf_state(const raftpb::ConfState& conf_state) override;

  [[nodiscard]] const raftpb::HardState& hard_state() const override { return hard_state_; }
  [[nodiscard]] raft::Index truncated_index() const override { return truncated_index_; }
  [[nodiscard]] raft::Term truncated_term() const override { return truncated_term_; }
  // Bytes currently held by the entry cache (<= the bound given to open()).
  [[nodiscard]] std::uint64_t cached_bytes() const { return cache_bytes_; }

 private:
  struct CachedEntry {
    raftpb::Entry entry;
    std::uint64_t bytes;  // entry.ByteSizeLong()
  };

  LogStore(Engine* engine, std::uint64_t entry_cache_bytes);

  [[nodiscard]] Status recover();
  [[nodiscard]] Result<raft::Index> find_last_index() const;
  [[nodiscard]] Result<raftpb::Entry> read_entry(raft::Index i) const;
  [[nodiscard]] const CachedEntry* cached(raft::Index i) const;
  [[nodiscard]] raft::Index cache_first_index() const;

  void stage_entries(const std::vector<raftpb::Entry>& entries, raft::Index base_truncated,
                     raft::Index base_last, WriteBatch& batch) const;
  void cache_append(const std::vector<raftpb::Entry>& entries);
  void cache_drop_through(raft::Index upto);

  Engine* const engine_;
  const std::uint64_t entry_cache_bytes_max_;

  raftpb::HardState hard_state_;
  raft::Index truncated_index_ = 0;
  raft::Term truncated_term_ = 0;
  raft::Index last_index_ = 0;
  std::optional<raftpb::SnapshotMetadata> snapshot_meta_;
  raftpb::ConfState conf_state_;

  // The most recent entries, contiguous and ending at last_index_ (or empty).
  std::deque<CachedEntry> cache_;
  std::uint64_t cache_bytes_ = 0;
};

}  // namespace herald::storage
