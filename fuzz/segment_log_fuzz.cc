// Fuzz target: recovery of the raft segment log from the files on disk (storage/segment_log.h,
// docs/storage-format.md, "Segment log").
//
// The input is the log directory: [u64 BE first][u8 count] then `count` (at most kMaxSegments)
// segment files, each [u16 BE length][bytes], named as segments first, first + 1, ... The seed
// corpus holds real segment files written by SegmentLog (fuzz_make_corpus), so mutations exercise
// the torn-tail and corruption decisions on records whose checksums are otherwise valid. Every file
// is first scanned alone with scan_segment (as the newest and as an older segment); then what a
// rebuild would salvage from them is read (SegmentLog::salvage); then a SegmentLog is opened on
// all of them, read the way the raft core reads it, given one more entry, and opened again.
// Asserts: no crash, leak or undefined behaviour, no failed HERALD_ASSERT; every error is
// kCorruption; a log that opens salvages to its own hard state and at least its last index; an
// opened log keeps the raft::LogStorage contract, and what was appended after recovery survives
// the reopen.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>

#include "base/assert.h"
#include "base/status.h"
#include "fuzz/fuzz_input.h"
#include "storage/mem_log_fs.h"
#include "storage/segment_log.h"

namespace {

namespace storage = herald::storage;
using herald::Code;
using herald::Status;
using herald::raft::Index;

constexpr std::uint8_t kMaxSegments = 4;
// Sequence numbers stay far from overflow when new segments are added after them.
constexpr std::uint64_t kMaxFirstSegment = std::uint64_t{1} << 48U;
// The segment size the seeds were written with; new segments get the same.
constexpr std::uint64_t kFuzzSegmentBytes = 1024;
// Entries read per input, at most, and the byte budget of each entries() call.
constexpr Index kMaxEntriesRead = 64;
constexpr std::uint64_t kReadBudgetBytes = 1024;

void check_error(const Status& status) {
  HERALD_ASSERT(status.ok() || status.code() == Code::kCorruption,
                "a damaged log is reported as kCorruption");
}

void check_scan(std::string_view bytes, std::uint64_t seq) {
  for (const bool last : {false, true}) {
    const auto scan = storage::scan_segment(bytes, seq, last);
    check_error(scan.status());
    if (!scan.ok()) continue;
    HERALD_ASSERT(scan->end_offset <= scan->dirty_end && scan->dirty_end <= bytes.size(),
                  "the scan's offsets lie inside the segment");
    HERALD_ASSERT(last || scan->dirty_end == scan->end_offset, "older segments end cleanly");
    for (const storage::ScannedRecord& r : scan->records) {
      HERALD_ASSERT(r.offset + storage::kRecordHeaderBytes + r.payload.size() <= scan->end_offset,
                    "records end before the scan's end");
    }
  }
}

void read_log(const storage::SegmentLog& log) {
  const Index first = log.first_index();
  const Index last = log.last_index();
  HERALD_ASSERT(first >= 1 && first - 1 <= last, "first_index() <= last_index() + 1");
  HERALD_ASSERT(log.hard_state().commit() <= last, "commit within the log");
  HERALD_ASSERT(log.term(first - 1).ok() && log.term(last).ok(), "edge terms answer");
  const Index end = first + std::min<Index>(last - first + 1, kMaxEntriesRead);
  if (first < end) {
    const auto entries = log.entries(first, end, kReadBudgetBytes);
    check_error(entries.status());
    if (entries.ok()) {
      HERALD_ASSERT(!entries->empty(), "entries() returns at least one entry");
      for (std::size_t i = 0; i < entries->size(); ++i) {
        HERALD_ASSERT((*entries)[i].index() == first + i, "entries() returns its range in order");
      }
    }
  }
}

void append_and_reopen(storage::SegmentLog& log, storage::MemLogFs& fs) {
  const Index last = log.last_index();
  if (last >= std::numeric_limits<Index>::max() - 1) return;
  herald::raftpb::Entry entry;
  entry.set_index(last + 1);
  entry.set_term(std::max<std::uint64_t>(log.hard_state().term(), 1));
  entry.set_data("appended");
  HERALD_ASSERT(log.save(std::nullopt, std::nullopt, {entry}, /*sync=*/true).ok(),
                "MemLogFs writes");
  const auto reopened = storage::SegmentLog::open(&fs, {kFuzzSegmentBytes});
  HERALD_ASSERT(reopened.ok(), "a log that opened and was appended to opens again");
  HERALD_ASSERT((*reopened)->last_index() == last + 1, "the appended entry is the last");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  herald::fuzz::FuzzInput in(data, size);
  storage::MemLogFs fs;
  std::uint64_t first = in.u64();
  if (first == 0 || first > kMaxFirstSegment) first = 1;
  const std::uint8_t count = std::min(in.u8(), kMaxSegments);
  for (std::uint64_t seq = first; seq < first + count; ++seq) {
    const std::string bytes(in.long_string());
    check_scan(bytes, seq);
    fs.put_durable(storage::segment_name(seq), bytes);
  }
  const auto salvaged = storage::SegmentLog::salvage(&fs);
  check_error(salvaged.status());
  auto log = storage::SegmentLog::open(&fs, {kFuzzSegmentBytes});
  check_error(log.status());
  if (!log.ok()) return 0;
  HERALD_ASSERT(salvaged.ok() && salvaged->has_value() == (count > 0),
                "a log that opens can be salvaged");
  if (salvaged->has_value()) {
    HERALD_ASSERT(
        (*salvaged)->hard_state.SerializeAsString() == (*log)->hard_state().SerializeAsString(),
        "the salvaged hard state is the one the log opens with");
    HERALD_ASSERT((*salvaged)->last_index >= (*log)->last_index(),
                  "the salvaged floor covers the log");
  }
  read_log(**log);
  append_and_reopen(**log, fs);
  return 0;
}
