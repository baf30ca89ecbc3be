// SegmentLog: Herald's raft log as an append-only, checksummed log of segment files on a LogFs
// (storage/log_fs.h), both the raft core's read side (raft::LogStorage) and the write side.
//
// Format (docs/storage-format.md, "Segment log"): numbered segment files of a fixed, preallocated
// size, each a header (magic, version, sequence, capacity) followed by records. A record is
// CRC-32C framed with its length, type, raft index and term, and the offset up to which its
// segment was synced when it was written. Records are written in batches; the last record of a
// batch carries an end mark, and recovery keeps whole batches only, so a batch is atomic.
//
// Write path: save() turns one round of raft output (snapshot point, entries, hard state) into
// ONE batch: one write at the end of the last segment and, when `sync`, one fdatasync. Entries
// whose indexes are already in the log replace the suffix from the first of them (nothing is
// overwritten in place; the later record wins at recovery). A batch that does not fit the last
// segment starts a new one: the full segment is synced first, the new one is written under a
// temporary name with its own start records (the log's last index and term, and the hard state),
// synced, renamed into place, and the directory synced.
//
// Compaction drops whole segments: compact(upto) deletes the oldest segments whose every entry
// is at or below upto, so the log's first index may stay below upto + 1.
//
// Recovery (open): segments are read in order. A record that is damaged, cut short or missing in
// the LAST segment ends the log there when nothing after it proves it was synced: the
// incomplete batch is dropped and the rest of the segment is zeroed (synced) before anything is
// appended. A damaged record in any older segment, or one followed by a valid record written after
// a sync that covered it, is kCorruption: the log never resumes past synced data.
//
// Errors: the LogFs's; kCorruption for damaged or inconsistent data. After a failed write or sync
// the log refuses every later write with the same error (the state of unsynced bytes is unknown);
// reopen to recover. Ownership: the LogFs is borrowed and must outlive the log. Thread-safety:
// none; every call comes from the thread that drives the RawNode.
#pragma once

#include <cstdint>
#include <deque>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "raft/log_storage.h"
#include "raft/types.h"
#include "storage/log_fs.h"
#include "storage/raft_log.h"

namespace herald::storage {

// The size of a segment file, preallocated when it is created: 64 MiB. A batch larger than a
// segment gets a segment of its own, as large as it needs.
inline constexpr std::uint64_t kSegmentBytes = std::uint64_t{64} << 20U;
// The fixed parts of the format, in bytes.
inline constexpr std::uint64_t kSegmentHeaderBytes = 32;
inline constexpr std::uint64_t kRecordHeaderBytes = 33;
// The largest payload one record may carry: 256 MiB (the length field is 32 bits).
inline constexpr std::uint64_t kMaxRecordPayloadBytes = std::uint64_t{256} << 20U;
inline constexpr std::uint32_t kSegmentFormatVersion = 1;
// The highest compaction point a start or snapshot record may carry (2^62), so that indexes after
// it never overflow; a record beyond it is kCorruption.
inline constexpr raft::Index kMaxLogStartIndex = raft::Index{1} << 62U;
// Segment files are named by their sequence number: 16 lowercase hex digits and this suffix.
inline constexpr std::string_view kSegmentSuffix = ".seg";
// A segment being created carries this suffix after kSegmentSuffix until it is complete.
inline constexpr std::string_view kSegmentTempSuffix = ".tmp";

// The record kinds (the low 7 bits of the type byte; the high bit marks the end of a batch).
enum class RecordKind : std::uint8_t {
  kSegmentStart = 1,  // index, term: the log's last entry when the segment was started
  kEntry = 2,         // index, term of the entry; payload: raftpb::Entry
  kHardState = 3,     // payload: raftpb::HardState
  kSnapshot = 4,      // index, term: the log restarts empty after this point
};

// One record as the recovery scanner found it. `payload` points into the scanned bytes.
struct ScannedRecord {
  RecordKind kind;
  raft::Index index;
  raft::Term term;
  std::uint64_t offset;  // of its header, within the segment
  std::string_view payload;
};

// What scanning one segment's bytes found.
struct SegmentScan {
  std::uint64_t capacity = 0;          // from the header (== the file's size)
  std::vector<ScannedRecord> records;  // whole batches only, in order
  std::uint64_t end_offset = 0;        // where the next record goes
  std::uint64_t dirty_end = 0;         // > end_offset: a torn tail's bytes reach up to here
  std::string torn_reason;             // why the tail was cut (empty when clean)
};

// Scans the bytes of segment `seq` (pure; also the fuzz target's entry point). `last`: it is the
// newest segment, where a torn tail is expected after a crash. Errors: kCorruption for a bad
// header, a damaged record in an older segment, or one in the last segment that a later valid
// record proves was synced. `zero_from`: every byte at or after it is known to be zero (the
// caller read them), so the search for the end of the written bytes starts there, not at the
// end of the segment's preallocated tail.
[[nodiscard]] Result<SegmentScan> scan_segment(
    std::string_view bytes, std::uint64_t seq, bool last,
    std::uint64_t zero_from = std::numeric_limits<std::uint64_t>::max());
// The file name of segment `seq`.
[[nodiscard]] std::string segment_name(std::uint64_t seq);

// Removes every segment file of `fs` (finished or being created), then syncs the directory; other
// files stay. For a replica rebuilt empty. Errors: the LogFs's (files removed before an error stay
// removed).
[[nodiscard]] Status remove_segment_files(LogFs* fs);

struct SegmentLogOptions {
  std::uint64_t segment_bytes = kSegmentBytes;  // the preallocated size of a new segment
};

// What open() found and did, for logs and tests.
struct SegmentLogRecovery {
  std::uint64_t segments = 0;           // segment files read
  std::uint64_t records = 0;            // records replayed
  std::uint64_t torn_bytes_zeroed = 0;  // bytes of a torn tail cleared (0 after a clean stop)
  std::uint64_t temp_files_removed = 0;
  std::string torn_reason;  // why the last segment's tail was cut, if it was
};

class SegmentLog final : public RaftLog {
 public:
  // Recovers the log from `fs` (creating the first segment of an empty log), as described above.
  [[nodiscard]] static Result<std::unique_ptr<SegmentLog>> open(LogFs* fs,
                                                                SegmentLogOptions options = {});

  // Reads what a rebuild must keep from the segment log in `fs`, which may be damaged anywhere
  // (docs/storage-format.md, "Rebuilding a damaged replica"): the newest intact hard state, and
  // the highest index the log may have held. Unlike open(), it skips damage: after a damaged
  // range it resumes at the next checksum-valid record, and counts the range as holding as many
  // new entries as it has room for record headers (one when the damaged record's length leads
  // exactly to the next valid one). A damaged tail of the newest segment that open() would drop
  // as torn is dropped here too. Reads only, never writes. Returns nullopt when `fs` holds no
  // segment. Errors: kCorruption when the hard state is unknown (no intact, decodable hard state
  // record after some damage) or the last index is unbounded (a missing segment, or damage before
  // the first intact start, entry or snapshot record after it); the LogFs's errors.
  [[nodiscard]] static Result<std::optional<SalvagedLog>> salvage(LogFs* fs);

  // raft::LogStorage (see raft/log_storage.h for the contract).
  [[nodiscard]] Result<raft::InitialState> initial_state() const override;
  [[nodiscard]] Result<std::vector<raftpb::Entry>> entries(raft::Index lo, raft::Index hi,
                                                           std::uint64_t max_bytes) const override;
  [[nodiscard]] Result<raft::Term> term(raft::Index i) const override;
  [[nodiscard]] raft::Index first_index() const override { return truncated_index_ + 1; }
  [[nodiscard]] raft::Index last_index() const override {
    return truncated_index_ + locations_.size();
  }
  [[nodiscard]] raftpb::SnapshotMetadata snapshot_metadata() const override;

  // Persists one batch, durable before returning when `sync` (together with every earlier one;
  // a sync with nothing to write still makes the earlier ones durable):
  //  1. `snapshot`: the log restarts empty after (snapshot.index, snapshot.term).
  //  2. `entries`: appended, replacing any existing entries from entries[0].index onwards.
  //  3. `hs`: the new hard state.
  // Preconditions (asserted): as LogStore::save. Errors: the LogFs's; on error the in-memory view
  // is unchanged and the log refuses later writes.
  [[nodiscard]] Status save(const std::optional<raftpb::HardState>& hs,
                            const std::optional<raftpb::SnapshotMetadata>& snapshot,
                            const std::vector<raftpb::Entry>& entries, bool sync) override;

  // Deletes the oldest segments holding only entries <= upto (never the last segment), then
  // syncs the directory. Preconditions (asserted): upto <= last_index() and upto <=
  // snapshot_metadata().index. Errors: the LogFs's; segments removed before an error stay removed.
  [[nodiscard]] Status compact(raft::Index upto) override;

  // As LogStore: what a snapshot taken now would cover, and the membership initial_state() gives.
  void set_snapshot_metadata(const raftpb::SnapshotMetadata& meta) override;
  void set_conf_state(const raftpb::ConfState& conf_state) override { conf_state_ = conf_state; }

  [[nodiscard]] const raftpb::HardState& hard_state() const override { return hard_state_; }
  [[nodiscard]] raft::Index truncated_index() const override { return truncated_index_; }
  [[nodiscard]] raft::Term truncated_term() const override { return truncated_term_; }
  [[nodiscard]] std::size_t segment_count() const { return segments_.size(); }
  // The bytes its segment files take (each file's size, preallocation included).
  [[nodiscard]] std::uint64_t file_bytes() const;
  [[nodiscard]] std::uint64_t first_segment_seq() const { return segments_.front().seq; }
  [[nodiscard]] const SegmentLogRecovery& recovery() const { return recovery_; }

 private:
  struct Segment {
    std::uint64_t seq = 0;
    std::unique_ptr<LogFile> file;
    raft::Index start_index = 0;  // the log's last index when the segment was started
    raft::Term start_term = 0;
    raft::Index min_entry_index = 0;  // the lowest index of an entry record in it; 0: none
    bool has_snapshot = false;        // it holds a snapshot record (which resets the log)
  };
  struct Location {
    std::uint64_t seq;     // the segment holding the entry
    std::uint64_t offset;  // of the record's header
    std::uint32_t length;  // of its payload
    raft::Term term;
  };
  struct PendingRecord;

  SegmentLog(LogFs* fs, SegmentLogOptions options) : fs_(fs), options_(options) {}

  [[nodiscard]] Status recover();
  [[nodiscard]] Status replay_segment(std::uint64_t seq, bool last);
  [[nodiscard]] Status replay_record(const ScannedRecord& record, std::uint64_t seq);
  [[nodiscard]] Status clear_torn_tail(const SegmentScan& scan);
  [[nodiscard]] Status start_segment(std::uint64_t min_capacity);
  [[nodiscard]] Status write_batch(const std::vector<PendingRecord>& records, bool sync);
  // Syncs the newest segment if it holds unsynced batches.
  [[nodiscard]] Status sync_tail();
  void apply_entry(raft::Index index, raft::Term term, std::uint64_t seq, std::uint64_t offset,
                   std::uint32_t length);
  void apply_snapshot(raft::Index index, raft::Term term);
  // After the first segment was removed: the log as replaying the segments left would give it.
  void drop_to_first_segment();
  [[nodiscard]] Segment& segment_of(std::uint64_t seq);
  [[nodiscard]] const Segment& segment_of(std::uint64_t seq) const;
  [[nodiscard]] Result<raftpb::Entry> read_entry(raft::Index i) const;
  [[nodiscard]] Status fail(Status status);

  LogFs* const fs_;
  const SegmentLogOptions options_;

  raftpb::HardState hard_state_;
  raft::Index truncated_index_ = 0;
  raft::Term truncated_term_ = 0;
  std::optional<raftpb::SnapshotMetadata> snapshot_meta_;
  raftpb::ConfState conf_state_;

  std::deque<Segment> segments_;  // consecutive sequence numbers, oldest first
  // Where each entry in [first_index(), last_index()] lives.
  std::deque<Location> locations_;
  std::uint64_t write_offset_ = 0;   // in the last segment: where the next record goes
  std::uint64_t synced_offset_ = 0;  // in the last segment: bytes known durable
  Status failure_;                   // not ok once a write or sync has failed
  SegmentLogRecovery recovery_;
};

}  // namespace herald::storage
