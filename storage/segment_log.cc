#include "storage/segment_log.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include "base/encoding.h"

namespace herald::storage {
namespace {

constexpr std::string_view kSegmentMagic = "HRLDSEG\n";
constexpr std::uint8_t kBatchEndBit = 0x80;
constexpr std::uint8_t kKindMask = 0x7F;
// The header's fields before its checksum: magic, version, sequence, capacity.
constexpr std::size_t kSegmentHeaderCheckedBytes = 28;
// New segments are sized in whole pages of this many bytes.
constexpr std::uint64_t kSegmentAlignBytes = 4096;
// The torn tail is zeroed in writes of at most this many bytes: 1 MiB.
constexpr std::uint64_t kZeroChunkBytes = std::uint64_t{1} << 20U;
// Open reads segments a chunk of this many bytes at a time (SegmentBytes).
constexpr std::uint64_t kSegmentReadChunkBytes = std::uint64_t{256} << 10U;
constexpr std::size_t kSeqHexDigits = 16;

// A record's fixed header, decoded.
struct RecordHeader {
  std::uint32_t crc = 0;
  std::uint32_t length = 0;
  std::uint8_t type = 0;
  raft::Index index = 0;
  raft::Term term = 0;
  std::uint64_t synced = 0;
};

// Precondition: in.size() >= kRecordHeaderBytes.
RecordHeader parse_record_header(std::string_view in) {
  RecordHeader h;
  h.crc = get_fixed32_be(in);
  h.length = get_fixed32_be(in.substr(4));
  h.type = static_cast<std::uint8_t>(in[8]);
  h.index = get_fixed64_be(in.substr(9));
  h.term = get_fixed64_be(in.substr(17));
  h.synced = get_fixed64_be(in.substr(25));
  return h;
}

bool known_kind(std::uint8_t type) {
  const std::uint8_t kind = type & kKindMask;
  return kind >= static_cast<std::uint8_t>(RecordKind::kSegmentStart) &&
         kind <= static_cast<std::uint8_t>(RecordKind::kSnapshot);
}

void append_record(std::string& out, RecordKind kind, bool batch_end, raft::Index index,
                   raft::Term term, std::uint64_t synced, std::string_view payload) {
  HERALD_ASSERT(payload.size() <= kMaxRecordPayloadBytes, "record payload over its bound");
  const std::size_t start = out.size();
  put_fixed32_be(out, 0);  // the checksum, filled in below
  put_fixed32_be(out, static_cast<std::uint32_t>(payload.size()));
  out.push_back(
      static_cast<char>(static_cast<std::uint8_t>(kind) | (batch_end ? kBatchEndBit : 0)));
  put_fixed64_be(out, index);
  put_fixed64_be(out, term);
  put_fixed64_be(out, synced);
  out.append(payload);
  std::string crc;
  put_fixed32_be(crc, crc32c(std::string_view(out).substr(start + 4)));
  out.replace(start, 4, crc);
}

std::string encode_segment_header(std::uint64_t seq, std::uint64_t capacity) {
  std::string out(kSegmentMagic);
  put_fixed32_be(out, kSegmentFormatVersion);
  put_fixed64_be(out, seq);
  put_fixed64_be(out, capacity);
  put_fixed32_be(out, crc32c(out));
  return out;
}

bool all_zero(std::string_view bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](char c) { return c == 0; });
}

// One past the last non-zero byte of bytes[from, end), or `from` when they are all zero. Most of
// a segment is its zero tail, so the scan looks at whole words (open reads every segment).
std::uint64_t nonzero_end(std::string_view bytes, std::uint64_t from) {
  constexpr std::uint64_t kWordBytes = sizeof(std::uint64_t);
  constexpr std::uint64_t kBlockWords = 4;
  constexpr std::uint64_t kBlockBytes = kBlockWords * kWordBytes;
  std::uint64_t end = bytes.size();
  while (end - from >= kBlockBytes) {
    std::uint64_t words[kBlockWords];
    std::memcpy(words, bytes.data() + end - kBlockBytes, kBlockBytes);
    if ((words[0] | words[1] | words[2] | words[3]) != 0) {
      break;
    }
    end -= kBlockBytes;
  }
  while (end > from && bytes[end - 1] == 0) {
    --end;
  }
  return end;
}

// The checksum-valid record at `p`, if there is one (its header and payload inside `bytes`).
// `file_offset` is where `p` lies in the segment: no record claims more than the bytes before it
// were synced.
bool valid_record_at(std::string_view bytes, std::uint64_t p, std::uint64_t file_offset,
                     RecordHeader& h) {
  if (bytes.size() - p < kRecordHeaderBytes) return false;
  h = parse_record_header(bytes.substr(p, kRecordHeaderBytes));
  if (!known_kind(h.type) || h.length > bytes.size() - p - kRecordHeaderBytes ||
      h.synced > file_offset) {
    return false;
  }
  return crc32c(bytes.substr(p + 4, kRecordHeaderBytes - 4 + h.length)) == h.crc;
}

// Whether a valid record starting after `after` (and before `end`) was written once the segment
// was synced beyond `batch_start`: then the batch there was durable, and its damage is not a tear.
bool proven_synced(std::string_view bytes, std::uint64_t after, std::uint64_t end,
                   std::uint64_t batch_start) {
  for (std::uint64_t p = after + 1; p < end; ++p) {
    RecordHeader h;
    if (valid_record_at(bytes, p, p, h) && h.synced > batch_start) {
      return true;
    }
  }
  return false;
}

Status check_segment_header(std::string_view bytes, std::uint64_t seq, const std::string& where) {
  if (bytes.size() < kSegmentHeaderBytes) {
    return Status::corruption(where + " is shorter than a segment header");
  }
  if (bytes.substr(0, kSegmentMagic.size()) != kSegmentMagic) {
    return Status::corruption(where + " does not start with the segment magic");
  }
  if (crc32c(bytes.substr(0, kSegmentHeaderCheckedBytes)) !=
      get_fixed32_be(bytes.substr(kSegmentHeaderCheckedBytes))) {
    return Status::corruption(where + " has a damaged header");
  }
  const std::uint32_t version = get_fixed32_be(bytes.substr(8));
  if (version != kSegmentFormatVersion) {
    return Status::corruption(where + " is in segment format " + std::to_string(version) +
                              ", and this Herald reads format " +
                              std::to_string(kSegmentFormatVersion) + " only");
  }
  if (get_fixed64_be(bytes.substr(12)) != seq) {
    return Status::corruption(where + " carries another segment's sequence number");
  }
  if (get_fixed64_be(bytes.substr(20)) != bytes.size()) {
    return Status::corruption(where + " is not the size its header records");
  }
  return Status::ok_status();
}

bool parse_segment_name(std::string_view name, std::uint64_t& seq) {
  if (name.size() != kSeqHexDigits + kSegmentSuffix.size() ||
      name.substr(kSeqHexDigits) != kSegmentSuffix) {
    return false;
  }
  seq = 0;
  for (std::size_t i = 0; i < kSeqHexDigits; ++i) {
    const char c = name[i];
    std::uint64_t digit = 0;
    if (c >= '0' && c <= '9') {
      digit = static_cast<std::uint64_t>(c) - '0';
    } else if (c >= 'a' && c <= 'f') {
      digit = static_cast<std::uint64_t>(c) - 'a' + 10;
    } else {
      return false;
    }
    seq = (seq << 4U) | digit;
  }
  return true;
}

bool is_temp_segment_name(std::string_view name) {
  std::uint64_t seq = 0;
  return name.size() > kSegmentTempSuffix.size() &&
         name.substr(name.size() - kSegmentTempSuffix.size()) == kSegmentTempSuffix &&
         parse_segment_name(name.substr(0, name.size() - kSegmentTempSuffix.size()), seq);
}

// Why a scan stopped at `off` with `pending` records of an unfinished batch.
std::string stop_reason(std::string_view why, bool pending) {
  if (!why.empty()) return std::string(why);
  return pending ? "a batch without its end mark" : "bytes after the last record";
}

// A whole segment file in memory. Most of a segment is its preallocated zero tail, so the bytes
// live in an anonymous mapping, whose pages read as zeros until written: the file is read a chunk
// at a time into a small buffer, and only chunks holding a non-zero byte are copied into the
// mapping. The zero tail then costs neither page allocations nor copies, and written_end() tells
// the scan where it begins, so that no one reads it again (a read of an untouched page of the
// mapping is a page fault, which costs tens of microseconds on some virtual machines).
class SegmentBytes {
 public:
  SegmentBytes() = default;
  SegmentBytes(const SegmentBytes&) = delete;
  SegmentBytes& operator=(const SegmentBytes&) = delete;
  SegmentBytes(SegmentBytes&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)),
        size_(std::exchange(other.size_, 0)),
        written_end_(std::exchange(other.written_end_, 0)) {}
  SegmentBytes& operator=(SegmentBytes&&) = delete;
  ~SegmentBytes() {
    if (data_ != nullptr) ::munmap(data_, size_);
  }

  [[nodiscard]] static Result<SegmentBytes> read(const LogFile& file) {
    SegmentBytes out;
    out.size_ = file.size();
    if (out.size_ == 0) return out;
    void* mapped =
        ::mmap(nullptr, out.size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mapped == MAP_FAILED) {
      return Status::resource_exhausted("no memory to read a raft log segment of " +
                                        std::to_string(out.size_) + " bytes");
    }
    out.data_ = static_cast<char*>(mapped);
    // Fewer page faults for the chunks that hold data: huge pages where the kernel allows them,
    // and each chunk's pages populated by one call before the copy. Both are hints: a kernel
    // without them faults the pages in one at a time, as without the calls.
    static_cast<void>(::madvise(mapped, out.size_, MADV_HUGEPAGE));
    std::string chunk;
    for (std::uint64_t off = 0; off < out.size_; off += kSegmentReadChunkBytes) {
      HERALD_RETURN_IF_ERROR(
          file.read(off, std::min(kSegmentReadChunkBytes, out.size_ - off), chunk));
      if (const std::uint64_t end = nonzero_end(chunk, 0); end != 0) {
        static_cast<void>(::madvise(out.data_ + off, chunk.size(), MADV_POPULATE_WRITE));
        std::memcpy(out.data_ + off, chunk.data(), chunk.size());
        out.written_end_ = off + end;
      }
    }
    return out;
  }

  [[nodiscard]] std::string_view view() const { return {data_, size_}; }
  // One past the last non-zero byte the file held: every byte from here on is zero.
  [[nodiscard]] std::uint64_t written_end() const { return written_end_; }

 private:
  char* data_ = nullptr;
  std::uint64_t size_ = 0;
  std::uint64_t written_end_ = 0;
};

}  // namespace

std::string segment_name(std::uint64_t seq) {
  char buf[kSeqHexDigits + 1];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(seq));
  return std::string(buf) + std::string(kSegmentSuffix);
}

Result<SegmentScan> scan_segment(std::string_view bytes, std::uint64_t seq, bool last,
                                 std::uint64_t zero_from) {
  const std::string where = "raft log segment " + segment_name(seq);
  HERALD_RETURN_IF_ERROR(check_segment_header(bytes, seq, where));
  SegmentScan scan;
  scan.capacity = bytes.size();
  std::vector<ScannedRecord> pending;
  std::uint64_t off = kSegmentHeaderBytes;
  std::uint64_t batch_start = off;
  std::string_view why;
  while (true) {
    if (bytes.size() - off < kRecordHeaderBytes) {
      why = "a record header cut short by the end of the segment";
      break;
    }
    if (all_zero(bytes.substr(off, kRecordHeaderBytes))) {
      break;  // the end of what was written, unless non-zero bytes follow
    }
    RecordHeader h;
    if (!valid_record_at(bytes, off, off, h)) {
      why = "a record that fails its checksum, length or type check";
      break;
    }
    pending.push_back(ScannedRecord{static_cast<RecordKind>(h.type & kKindMask), h.index, h.term,
                                    off, bytes.substr(off + kRecordHeaderBytes, h.length)});
    off += kRecordHeaderBytes + h.length;
    if ((h.type & kBatchEndBit) != 0) {
      scan.records.insert(scan.records.end(), pending.begin(), pending.end());
      pending.clear();
      batch_start = off;
    }
  }
  scan.end_offset = batch_start;
  const std::uint64_t examined_end = std::max(batch_start, std::min(zero_from, bytes.size()));
  scan.dirty_end = nonzero_end(bytes.substr(0, examined_end), batch_start);
  if (scan.dirty_end == batch_start) {
    return scan;  // a clean end: nothing but zeros after the last whole batch
  }
  const std::string reason = stop_reason(why, !pending.empty());
  const std::string at = where + " is damaged at byte " + std::to_string(off) + " (" + reason + ")";
  if (!last) {
    return Status::corruption(at + ", and it is not the newest segment");
  }
  if (proven_synced(bytes, off, scan.dirty_end, batch_start)) {
    return Status::corruption(at + ", and a later record shows that it had been synced");
  }
  scan.torn_reason = reason + " at byte " + std::to_string(off);
  return scan;
}

namespace {

// The first offset at or after `from` where a checksum-valid record starts, if any.
std::optional<std::uint64_t> next_valid_record(std::string_view bytes, std::uint64_t from) {
  for (std::uint64_t p = from; p < bytes.size(); ++p) {
    RecordHeader h;
    if (valid_record_at(bytes, p, p, h)) {
      return p;
    }
  }
  return std::nullopt;
}

// SegmentLog::salvage's pass over the segments, oldest first. It replays what the records say
// about indexes and the hard state, skipping damage instead of stopping at it: after a damaged
// range it resumes at the next checksum-valid record, and the intact records of the damaged
// batch count too (a later record proved it synced). Only a torn tail, which open() would drop,
// is dropped.
class SegmentSalvage {
 public:
  void add_segment(std::string_view bytes, std::uint64_t seq, bool last);
  // Segment `seq` is missing: anything may have been in it.
  void add_missing(std::uint64_t seq);
  [[nodiscard]] Result<SalvagedLog> finish() const;

 private:
  void apply(const RecordHeader& h, std::string_view payload, const std::string& where);
  // Damage from `off` up to the next valid record at or after `search_from` (returned) or, with
  // none, up to `written_end`, the end of the segment's non-zero bytes.
  std::optional<std::uint64_t> skip_damage(std::string_view bytes, std::uint64_t off,
                                           std::uint64_t search_from, std::uint64_t written_end,
                                           const std::string& where);

  raftpb::HardState hard_state_;
  raft::Index last_ = 0;   // the log's last index, as replayed (an upper bound after damage)
  raft::Index floor_ = 0;  // the highest index it may have held since
  bool hard_state_unknown_ = false;  // damage after the last intact hard state record
  // Nothing read so far bounds the log's last index: no start, entry or snapshot record yet (the
  // compaction point is unknown), or a missing segment since the last one.
  bool last_unbounded_ = true;
  std::string damage_ = "the raft log has no intact start record";  // the latest damage
};

void SegmentSalvage::add_segment(std::string_view bytes, std::uint64_t seq, bool last) {
  const std::string where = "raft log segment " + segment_name(seq);
  if (bytes.size() <= kSegmentHeaderBytes) {
    add_missing(seq);
    return;
  }
  std::uint64_t off = kSegmentHeaderBytes;
  const std::uint64_t written_end = nonzero_end(bytes, off);  // zeros from here on
  if (!check_segment_header(bytes, seq, where).ok()) {
    // A header is synced before its segment gets its name: damage to it is never a tear.
    const auto next = skip_damage(bytes, off, off, written_end, where + "'s header is damaged");
    if (!next) {
      return;
    }
    off = *next;
  }
  // The records of the batch being read: replayed at its end mark, or when damage after them
  // shows that the batch was synced; dropped with a torn tail.
  std::vector<std::uint64_t> pending;
  const auto replay_pending = [&] {
    for (const std::uint64_t p : pending) {
      const RecordHeader h = parse_record_header(bytes.substr(p, kRecordHeaderBytes));
      apply(h, bytes.substr(p + kRecordHeaderBytes, h.length),
            where + " at byte " + std::to_string(p));
    }
    pending.clear();
  };
  std::uint64_t batch_start = off;
  while (off < written_end) {
    RecordHeader h;
    if (valid_record_at(bytes, off, off, h)) {
      pending.push_back(off);
      off += kRecordHeaderBytes + h.length;
      if ((h.type & kBatchEndBit) != 0) {
        replay_pending();
        batch_start = off;
      }
      continue;
    }
    if (last && !proven_synced(bytes, off, written_end, batch_start)) {
      return;  // what a crash left of an unsynced write: open drops it too
    }
    replay_pending();
    const auto next = skip_damage(bytes, off, off + 1, written_end,
                                  where + " is damaged at byte " + std::to_string(off));
    if (!next) {
      return;
    }
    off = *next;
    batch_start = off;
  }
  if (!last && !pending.empty()) {
    // An older segment was synced whole, so its last batch lost its end to damage: what it held
    // after its intact records is unknown until the next segment's start.
    replay_pending();
    hard_state_unknown_ = true;
    last_unbounded_ = true;
    damage_ = where + " ends in a batch without its end mark";
  }
}

std::optional<std::uint64_t> SegmentSalvage::skip_damage(std::string_view bytes, std::uint64_t off,
                                                         std::uint64_t search_from,
                                                         std::uint64_t written_end,
                                                         const std::string& where) {
  const std::optional<std::uint64_t> next = next_valid_record(bytes, search_from);
  if (next == off || (!next && written_end <= off)) {
    return next;  // nothing lost (a damaged header followed by intact records, or by nothing)
  }
  const std::uint64_t end = next.value_or(written_end);
  // Every record that lay in [off, end) is damaged (an intact one would have been found), and
  // each took at least a record header. One, when the first one's length reaches exactly `end`.
  std::uint64_t records = (end - off + kRecordHeaderBytes - 1) / kRecordHeaderBytes;
  if (next && bytes.size() - off >= kRecordHeaderBytes &&
      off + kRecordHeaderBytes + parse_record_header(bytes.substr(off)).length == *next) {
    records = 1;
  }
  last_ += records;
  floor_ = std::max(floor_, last_);
  hard_state_unknown_ = true;
  damage_ = where;
  return next;
}

void SegmentSalvage::add_missing(std::uint64_t seq) {
  hard_state_unknown_ = true;
  last_unbounded_ = true;
  damage_ = "raft log segment " + segment_name(seq) + " is missing or cut short";
}

void SegmentSalvage::apply(const RecordHeader& h, std::string_view payload,
                           const std::string& where) {
  switch (static_cast<RecordKind>(h.type & kKindMask)) {
    case RecordKind::kSegmentStart:
    case RecordKind::kEntry:
    case RecordKind::kSnapshot:
      // Each sets the log's last index exactly: a segment starts at it, an entry replaces the
      // suffix from its index, a snapshot empties the log after it.
      last_ = h.index;
      last_unbounded_ = false;
      floor_ = std::max(floor_, last_);
      return;
    case RecordKind::kHardState: {
      raftpb::HardState hs;
      if (!hs.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
        hard_state_unknown_ = true;
        damage_ = where + ": a hard state that does not decode";
        return;
      }
      hard_state_ = hs;
      hard_state_unknown_ = false;
      floor_ = std::max<raft::Index>(floor_, hs.commit());
      return;
    }
  }
}

Result<SalvagedLog> SegmentSalvage::finish() const {
  if (last_unbounded_) {
    return Status::corruption(damage_ +
                              ", and nothing after it tells the raft log's last index: how far "
                              "this replica's acknowledgements reached is unknown");
  }
  if (hard_state_unknown_) {
    return Status::corruption(damage_ +
                              ", and no intact hard state follows it: this replica's term and "
                              "vote are unknown");
  }
  return SalvagedLog{hard_state_, std::max<raft::Index>(floor_, hard_state_.commit())};
}

// The sequence numbers of the segment files in `names`, sorted.
std::vector<std::uint64_t> segment_seqs(const std::vector<std::string>& names) {
  std::vector<std::uint64_t> seqs;
  for (const std::string& name : names) {
    std::uint64_t seq = 0;
    if (parse_segment_name(name, seq)) {
      seqs.push_back(seq);
    }
  }
  std::sort(seqs.begin(), seqs.end());
  return seqs;
}

}  // namespace

Result<std::optional<SalvagedLog>> SegmentLog::salvage(LogFs* fs) {
  HERALD_ASSIGN_OR_RETURN(const std::vector<std::string> names, fs->list());
  const std::vector<std::uint64_t> seqs = segment_seqs(names);
  if (seqs.empty()) {
    return std::optional<SalvagedLog>();
  }
  SegmentSalvage salvage;
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    if (i > 0) {
      for (std::uint64_t gap = seqs[i - 1] + 1; gap < seqs[i]; ++gap) {
        salvage.add_missing(gap);
      }
    }
    HERALD_ASSIGN_OR_RETURN(const std::unique_ptr<LogFile> file, fs->open(segment_name(seqs[i])));
    HERALD_ASSIGN_OR_RETURN(const SegmentBytes bytes, SegmentBytes::read(*file));
    salvage.add_segment(bytes.view(), seqs[i], i + 1 == seqs.size());
  }
  HERALD_ASSIGN_OR_RETURN(SalvagedLog out, salvage.finish());
  return std::optional<SalvagedLog>(std::move(out));
}

Status remove_segment_files(LogFs* fs) {
  HERALD_ASSIGN_OR_RETURN(const std::vector<std::string> names, fs->list());
  bool removed = false;
  for (const std::string& name : names) {
    std::uint64_t seq = 0;
    if (parse_segment_name(name, seq) || is_temp_segment_name(name)) {
      HERALD_RETURN_IF_ERROR(fs->remove(name));
      removed = true;
    }
  }
  return removed ? fs->sync_dir() : Status::ok_status();
}

// One record of a batch being written.
struct SegmentLog::PendingRecord {
  RecordKind kind;
  raft::Index index;
  raft::Term term;
  std::string payload;
};

Result<std::unique_ptr<SegmentLog>> SegmentLog::open(LogFs* fs, SegmentLogOptions options) {
  HERALD_ASSERT(fs != nullptr, "SegmentLog needs a file system");
  HERALD_ASSERT(options.segment_bytes > kSegmentHeaderBytes + kRecordHeaderBytes,
                "segments must hold at least one record");
  std::unique_ptr<SegmentLog> log(new SegmentLog(fs, options));
  HERALD_RETURN_IF_ERROR(log->recover());
  return log;
}

Status SegmentLog::recover() {
  HERALD_ASSIGN_OR_RETURN(const std::vector<std::string> names, fs_->list());
  std::vector<std::uint64_t> seqs;
  for (const std::string& name : names) {
    std::uint64_t seq = 0;
    if (parse_segment_name(name, seq)) {
      seqs.push_back(seq);
    } else if (is_temp_segment_name(name)) {
      // A segment whose creation a crash interrupted: it never held a record of the log.
      HERALD_RETURN_IF_ERROR(fs_->remove(name));
      ++recovery_.temp_files_removed;
    }
  }
  if (recovery_.temp_files_removed > 0) {
    HERALD_RETURN_IF_ERROR(fs_->sync_dir());
  }
  std::sort(seqs.begin(), seqs.end());
  for (std::size_t i = 1; i < seqs.size(); ++i) {
    if (seqs[i] != seqs[i - 1] + 1) {
      return Status::corruption("raft log segment " + segment_name(seqs[i - 1] + 1) +
                                " is missing");
    }
  }
  if (seqs.empty()) {
    return start_segment(0);
  }
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    HERALD_RETURN_IF_ERROR(replay_segment(seqs[i], i + 1 == seqs.size()));
  }
  // What was read may not be durable: an earlier process (one that halted on a full disk, say)
  // can have written it without a sync, and the page cache survives a process but not a machine.
  // Everything after here treats the records read as synced, so they are made so first.
  HERALD_RETURN_IF_ERROR(segments_.back().file->sync());
  if (hard_state_.commit() > last_index()) {
    return Status::corruption("the raft log's commit index " +
                              std::to_string(hard_state_.commit()) + " is beyond its last entry " +
                              std::to_string(last_index()));
  }
  return Status::ok_status();
}

Status SegmentLog::replay_segment(std::uint64_t seq, bool last) {
  const std::string name = segment_name(seq);
  HERALD_ASSIGN_OR_RETURN(std::unique_ptr<LogFile> file, fs_->open(name));
  HERALD_ASSIGN_OR_RETURN(const SegmentBytes bytes, SegmentBytes::read(*file));
  HERALD_ASSIGN_OR_RETURN(const SegmentScan scan,
                          scan_segment(bytes.view(), seq, last, bytes.written_end()));
  if (scan.records.empty() || scan.records.front().kind != RecordKind::kSegmentStart) {
    return Status::corruption("raft log segment " + name + " has no start record");
  }
  const ScannedRecord& start = scan.records.front();
  if (start.index > kMaxLogStartIndex) {
    return Status::corruption("raft log segment " + name + " starts at an impossible index");
  }
  if (segments_.empty()) {
    apply_snapshot(start.index, start.term);
  } else {
    const Result<raft::Term> prev_term = term(start.index);
    if (start.index != last_index() || !prev_term.ok() || *prev_term != start.term) {
      return Status::corruption("raft log segment " + name + " starts after entry " +
                                std::to_string(start.index) + " of term " +
                                std::to_string(start.term) + ", but the log before it ends at " +
                                std::to_string(last_index()));
    }
  }
  segments_.push_back(Segment{seq, std::move(file), start.index, start.term, 0, false});
  for (std::size_t i = 1; i < scan.records.size(); ++i) {
    HERALD_RETURN_IF_ERROR(replay_record(scan.records[i], seq));
  }
  ++recovery_.segments;
  recovery_.records += scan.records.size();
  if (last) {
    write_offset_ = scan.end_offset;
    synced_offset_ = scan.end_offset;
    if (scan.dirty_end > scan.end_offset) {
      recovery_.torn_reason = scan.torn_reason;
      HERALD_RETURN_IF_ERROR(clear_torn_tail(scan));
    }
  }
  return Status::ok_status();
}

Status SegmentLog::replay_record(const ScannedRecord& record, std::uint64_t seq) {
  const auto where = [&] {
    return "raft log segment " + segment_name(seq) + " at byte " + std::to_string(record.offset);
  };
  switch (record.kind) {
    case RecordKind::kSegmentStart:
      return Status::corruption(where() + ": a segment start record inside the segment");
    case RecordKind::kEntry:
      if (record.index <= truncated_index_ || record.index > last_index() + 1) {
        return Status::corruption(where() + ": entry " + std::to_string(record.index) +
                                  " does not follow the log (" + std::to_string(first_index()) +
                                  ".." + std::to_string(last_index()) + ")");
      }
      apply_entry(record.index, record.term, seq, record.offset,
                  static_cast<std::uint32_t>(record.payload.size()));
      return Status::ok_status();
    case RecordKind::kHardState: {
      raftpb::HardState hs;
      if (!hs.ParseFromArray(record.payload.data(), static_cast<int>(record.payload.size()))) {
        return Status::corruption(where() + ": the hard state does not decode");
      }
      hard_state_ = hs;
      return Status::ok_status();
    }
    case RecordKind::kSnapshot:
      if (record.index > kMaxLogStartIndex) {
        return Status::corruption(where() + ": a snapshot at an impossible index");
      }
      apply_snapshot(record.index, record.term);
      segment_of(seq).has_snapshot = true;
      return Status::ok_status();
  }
  return Status::corruption(where() + ": unknown record kind");
}

Status SegmentLog::clear_torn_tail(const SegmentScan& scan) {
  // What a crash left of an unfinished batch is cleared for good before anything else is written
  // there: otherwise a shorter later batch could leave stale records of it behind its end.
  LogFile& file = *segments_.back().file;
  const std::string zeros(std::min(kZeroChunkBytes, scan.dirty_end - scan.end_offset), '\0');
  for (std::uint64_t off = scan.end_offset; off < scan.dirty_end; off += zeros.size()) {
    const std::uint64_t n = std::min<std::uint64_t>(zeros.size(), scan.dirty_end - off);
    HERALD_RETURN_IF_ERROR(file.write(off, std::string_view(zeros).substr(0, n)));
  }
  HERALD_RETURN_IF_ERROR(file.sync());
  recovery_.torn_bytes_zeroed = scan.dirty_end - scan.end_offset;
  return Status::ok_status();
}

Status SegmentLog::start_segment(std::uint64_t min_capacity) {
  if (!segments_.empty() && synced_offset_ < write_offset_) {
    // A later segment never holds a record while an earlier one may still lose some.
    HERALD_RETURN_IF_ERROR(segments_.back().file->sync());
    synced_offset_ = write_offset_;
  }
  const std::uint64_t seq = segments_.empty() ? 1 : segments_.back().seq + 1;
  const raft::Index start_index = last_index();
  const raft::Term start_term = locations_.empty() ? truncated_term_ : locations_.back().term;
  std::string initial;
  append_record(initial, RecordKind::kSegmentStart, false, start_index, start_term, 0, "");
  append_record(initial, RecordKind::kHardState, true, 0, 0, 0, hard_state_.SerializeAsString());
  const std::uint64_t needed = kSegmentHeaderBytes + initial.size() + min_capacity;
  const std::uint64_t capacity =
      needed <= options_.segment_bytes
          ? options_.segment_bytes
          : (needed + kSegmentAlignBytes - 1) / kSegmentAlignBytes * kSegmentAlignBytes;
  const std::string name = segment_name(seq);
  const std::string temp = name + std::string(kSegmentTempSuffix);
  HERALD_ASSIGN_OR_RETURN(std::unique_ptr<LogFile> file, fs_->create(temp, capacity));
  HERALD_RETURN_IF_ERROR(file->write(0, encode_segment_header(seq, capacity) + initial));
  HERALD_RETURN_IF_ERROR(file->sync());
  HERALD_RETURN_IF_ERROR(fs_->rename(temp, name));
  HERALD_RETURN_IF_ERROR(fs_->sync_dir());
  segments_.push_back(Segment{seq, std::move(file), start_index, start_term, 0, false});
  write_offset_ = kSegmentHeaderBytes + initial.size();
  synced_offset_ = write_offset_;
  return Status::ok_status();
}

Status SegmentLog::save(const std::optional<raftpb::HardState>& hs,
                        const std::optional<raftpb::SnapshotMetadata>& snapshot,
                        const std::vector<raftpb::Entry>& entries, bool sync) {
  if (!failure_.ok()) {
    return failure_;
  }
  raft::Index base_truncated = truncated_index_;
  raft::Index base_last = last_index();
  std::vector<PendingRecord> records;
  if (snapshot) {
    HERALD_ASSERT(snapshot->index() >= truncated_index_, "snapshot behind the compaction point");
    records.push_back(
        PendingRecord{RecordKind::kSnapshot, snapshot->index(), snapshot->term(), ""});
    base_truncated = snapshot->index();
    base_last = snapshot->index();
  }
  if (!entries.empty()) {
    const raft::Index first = entries.front().index();
    HERALD_ASSERT(first > base_truncated, "appending at or below the compaction point");
    HERALD_ASSERT(first <= base_last + 1, "appending would leave a gap in the log");
  }
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const raftpb::Entry& entry = entries[i];
    HERALD_ASSERT(entry.index() == entries.front().index() + i,
                  "entries must have consecutive indexes");
    records.push_back(
        PendingRecord{RecordKind::kEntry, entry.index(), entry.term(), entry.SerializeAsString()});
  }
  if (hs) {
    records.push_back(PendingRecord{RecordKind::kHardState, 0, 0, hs->SerializeAsString()});
  }
  if (records.empty()) {
    // Nothing to write, but a sync still makes every earlier batch durable.
    return sync ? sync_tail() : Status::ok_status();
  }
  HERALD_RETURN_IF_ERROR(write_batch(records, sync));
  if (snapshot) {
    snapshot_meta_ = *snapshot;
  }
  if (hs) {
    hard_state_ = *hs;
  }
  return Status::ok_status();
}

Status SegmentLog::write_batch(const std::vector<PendingRecord>& records, bool sync) {
  std::uint64_t size = 0;
  for (const PendingRecord& r : records) {
    size += kRecordHeaderBytes + r.payload.size();
  }
  if (write_offset_ + size > segments_.back().file->size()) {
    const Status started = start_segment(size);
    if (!started.ok()) {
      return fail(started);
    }
  }
  Segment& segment = segments_.back();
  std::string buf;
  buf.reserve(size);
  std::vector<std::uint64_t> offsets;
  offsets.reserve(records.size());
  for (std::size_t i = 0; i < records.size(); ++i) {
    const PendingRecord& r = records[i];
    offsets.push_back(write_offset_ + buf.size());
    append_record(buf, r.kind, i + 1 == records.size(), r.index, r.term, synced_offset_, r.payload);
  }
  Status written = segment.file->write(write_offset_, buf);
  if (written.ok() && sync) {
    written = segment.file->sync();
  }
  if (!written.ok()) {
    return fail(written);
  }
  write_offset_ += buf.size();
  if (sync) {
    synced_offset_ = write_offset_;
  }
  for (std::size_t i = 0; i < records.size(); ++i) {
    const PendingRecord& r = records[i];
    if (r.kind == RecordKind::kSnapshot) {
      apply_snapshot(r.index, r.term);
      segment.has_snapshot = true;
    } else if (r.kind == RecordKind::kEntry) {
      apply_entry(r.index, r.term, segment.seq, offsets[i],
                  static_cast<std::uint32_t>(r.payload.size()));
    }
  }
  return Status::ok_status();
}

Status SegmentLog::sync_tail() {
  if (synced_offset_ == write_offset_) {
    return Status::ok_status();
  }
  const Status synced = segments_.back().file->sync();
  if (!synced.ok()) {
    return fail(synced);
  }
  synced_offset_ = write_offset_;
  return Status::ok_status();
}

void SegmentLog::apply_entry(raft::Index index, raft::Term term, std::uint64_t seq,
                             std::uint64_t offset, std::uint32_t length) {
  HERALD_ASSERT(index > truncated_index_ && index <= last_index() + 1, "entry outside the log");
  while (last_index() >= index) {
    locations_.pop_back();
  }
  locations_.push_back(Location{seq, offset, length, term});
  Segment& segment = segment_of(seq);
  if (segment.min_entry_index == 0 || index < segment.min_entry_index) {
    segment.min_entry_index = index;
  }
}

void SegmentLog::apply_snapshot(raft::Index index, raft::Term term) {
  truncated_index_ = index;
  truncated_term_ = term;
  locations_.clear();
}

SegmentLog::Segment& SegmentLog::segment_of(std::uint64_t seq) {
  HERALD_ASSERT(!segments_.empty() && seq >= segments_.front().seq &&
                    seq - segments_.front().seq < segments_.size(),
                "segment not in the log");
  return segments_[seq - segments_.front().seq];
}

const SegmentLog::Segment& SegmentLog::segment_of(std::uint64_t seq) const {
  return const_cast<SegmentLog*>(this)->segment_of(
      seq);  // NOLINT(cppcoreguidelines-pro-type-const-cast)
}

Status SegmentLog::fail(Status status) {
  failure_ = status;
  return status;
}

Status SegmentLog::compact(raft::Index upto) {
  HERALD_ASSERT(upto <= last_index(), "compacting beyond the last index");
  HERALD_ASSERT(upto <= snapshot_metadata().index(), "compacting beyond the applied state");
  // Segment k may become the first when every segment from k on starts at or below upto and
  // holds no entry at or below its start (so replaying from it alone gives the same log).
  std::size_t keep_from = 0;
  raft::Index min_entry_after = 0;  // lowest entry index in segments [j, end); 0: none
  std::vector<raft::Index> suffix_min(segments_.size(), 0);
  for (std::size_t j = segments_.size(); j-- > 0;) {
    const raft::Index m = segments_[j].min_entry_index;
    if (m != 0 && (min_entry_after == 0 || m < min_entry_after)) {
      min_entry_after = m;
    }
    suffix_min[j] = min_entry_after;
  }
  for (std::size_t j = 1; j < segments_.size(); ++j) {
    const Segment& s = segments_[j];
    if (s.start_index > upto || (suffix_min[j] != 0 && suffix_min[j] <= s.start_index)) {
      break;
    }
    keep_from = j;
  }
  for (std::size_t k = 0; k < keep_from; ++k) {
    HERALD_RETURN_IF_ERROR(fs_->remove(segment_name(segments_.front().seq)));
    segments_.pop_front();
    drop_to_first_segment();
  }
  if (keep_from > 0) {
    HERALD_RETURN_IF_ERROR(fs_->sync_dir());
  }
  return Status::ok_status();
}

void SegmentLog::drop_to_first_segment() {
  // The log replayed from the new first segment: unchanged if a snapshot record in it or later
  // resets the log anyway; otherwise it starts after the segment's start point.
  const bool reset_later = std::any_of(segments_.begin(), segments_.end(),
                                       [](const Segment& s) { return s.has_snapshot; });
  const Segment& first = segments_.front();
  if (reset_later || first.start_index <= truncated_index_) {
    return;
  }
  HERALD_ASSERT(first.start_index <= last_index(), "a segment starts beyond the log");
  HERALD_ASSERT(locations_[first.start_index - first_index()].term == first.start_term,
                "a segment's start term matches the log");
  const raft::Index drop = first.start_index - truncated_index_;
  locations_.erase(locations_.begin(), locations_.begin() + static_cast<std::ptrdiff_t>(drop));
  truncated_index_ = first.start_index;
  truncated_term_ = first.start_term;
}

std::uint64_t SegmentLog::file_bytes() const {
  std::uint64_t bytes = 0;
  for (const Segment& segment : segments_) {
    bytes += segment.file->size();
  }
  return bytes;
}

Result<raft::InitialState> SegmentLog::initial_state() const {
  return raft::InitialState{hard_state_, conf_state_};
}

raftpb::SnapshotMetadata SegmentLog::snapshot_metadata() const {
  if (snapshot_meta_.has_value() && snapshot_meta_->index() >= truncated_index_) {
    return *snapshot_meta_;
  }
  raftpb::SnapshotMetadata meta;
  meta.set_index(truncated_index_);
  meta.set_term(truncated_term_);
  return meta;
}

void SegmentLog::set_snapshot_metadata(const raftpb::SnapshotMetadata& meta) {
  HERALD_ASSERT(meta.index() >= truncated_index_, "snapshot metadata below the compaction point");
  snapshot_meta_ = meta;
}

Result<raft::Term> SegmentLog::term(raft::Index i) const {
  if (i == truncated_index_) {
    return truncated_term_;
  }
  if (i < truncated_index_) {
    return Status::compacted("term of compacted index " + std::to_string(i));
  }
  if (i > last_index()) {
    return Status::unavailable("term beyond last index: " + std::to_string(i));
  }
  return locations_[i - first_index()].term;
}

Result<raftpb::Entry> SegmentLog::read_entry(raft::Index i) const {
  const Location& loc = locations_[i - first_index()];
  const Segment& segment = segment_of(loc.seq);
  std::string buf;
  HERALD_RETURN_IF_ERROR(segment.file->read(loc.offset, kRecordHeaderBytes + loc.length, buf));
  const auto damaged = [&](std::string_view why) {
    return Status::corruption("raft log entry " + std::to_string(i) + " in segment " +
                              segment_name(loc.seq) + " at byte " + std::to_string(loc.offset) +
                              " is damaged (" + std::string(why) + ")");
  };
  RecordHeader h;
  if (!valid_record_at(buf, 0, loc.offset, h) || h.length != loc.length) {
    return damaged("checksum");
  }
  if ((h.type & kKindMask) != static_cast<std::uint8_t>(RecordKind::kEntry) || h.index != i ||
      h.term != loc.term) {
    return damaged("not this entry's record");
  }
  raftpb::Entry entry;
  if (!entry.ParseFromArray(buf.data() + kRecordHeaderBytes, static_cast<int>(loc.length)) ||
      entry.index() != i || entry.term() != loc.term) {
    return damaged("payload");
  }
  return entry;
}

Result<std::vector<raftpb::Entry>> SegmentLog::entries(raft::Index lo, raft::Index hi,
                                                       std::uint64_t max_bytes) const {
  HERALD_ASSERT(lo <= hi, "entries() needs lo <= hi");
  if (lo <= truncated_index_) {
    return Status::compacted("entries from compacted index " + std::to_string(lo));
  }
  if (hi > last_index() + 1) {
    return Status::unavailable("entries up to " + std::to_string(hi) + " beyond last index " +
                               std::to_string(last_index()));
  }
  std::vector<raftpb::Entry> out;
  std::uint64_t total = 0;
  for (raft::Index i = lo; i < hi; ++i) {
    HERALD_ASSIGN_OR_RETURN(raftpb::Entry entry, read_entry(i));
    const std::uint64_t bytes = entry.ByteSizeLong();
    if (!out.empty() && total + bytes > max_bytes) {
      break;
    }
    total += bytes;
    out.push_back(std::move(entry));
  }
  return out;
}

}  // namespace herald::storage
