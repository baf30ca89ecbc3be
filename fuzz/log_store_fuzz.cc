// Fuzz target: recovery of the raft log store from what is on disk (storage/log_store.h,
// docs/storage-format.md).
//
// Builds the Space::kLog and Space::kMeta contents of a storage::MemEngine from the input, a
// sequence of records, each [u8 tag][fields]:
//   tag & 3 == 0: a log entry: [u64 BE index][u16 BE length][value]
//   tag & 3 == 1: the hard state record: [u16 BE length][value]
//   tag & 3 == 2: the compaction point record: [u16 BE length][value]
//   tag & 3 == 3: a log record under any key: [u8 length][key][u16 BE length][value]
// A value is sealed (CRC-32C framed, as LogStore writes it) unless tag & kRawValueBit, so the
// fuzzer reaches the protobuf and range checks behind the checksum. Then opens a LogStore on the
// engine and reads it the way the raft core does: initial state, terms and entries from the first
// to the last index, the snapshot metadata; then appends one entry with save() and opens the
// store again. Asserts: no crash, leak or undefined behaviour, no failed HERALD_ASSERT; errors are
// kCorruption; an opened store keeps the raft::LogStorage contract (first_index() >= 1,
// first_index() <= last_index() + 1, the last entry's term readable, commit <= last index).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/assert.h"
#include "base/encoding.h"
#include "base/status.h"
#include "fuzz/fuzz_input.h"
#include "storage/engine.h"
#include "storage/log_store.h"
#include "storage/mem_engine.h"

namespace {

namespace storage = herald::storage;
using herald::Code;
using herald::Status;
using herald::raft::Index;

constexpr std::uint8_t kTagKindMask = 0x03;
constexpr std::uint8_t kRawValueBit = 0x80;
// A small entry cache, so that reads go to the engine (and its damaged records) early.
constexpr std::uint64_t kEntryCacheBytes = 4096;
// Entries read per input, at most, and the byte budget of each entries() call.
constexpr Index kMaxEntriesRead = 64;
constexpr std::uint64_t kReadBudgetBytes = 1024;

void check_error(const Status& status) {
  HERALD_ASSERT(status.ok() || status.code() == Code::kCorruption,
                "a damaged log is reported as kCorruption");
}

// The engine's contents from the input; written in one synced batch.
void fill_engine(herald::fuzz::FuzzInput& in, storage::MemEngine& engine) {
  storage::WriteBatch batch;
  while (!in.empty()) {
    const std::uint8_t tag = in.u8();
    std::string key;
    storage::Space space = storage::Space::kLog;
    switch (tag & kTagKindMask) {
      case 0: key = storage::log_key(in.u64()); break;
      case 1:
        space = storage::Space::kMeta;
        key = storage::kHardStateKey;
        break;
      case 2:
        space = storage::Space::kMeta;
        key = storage::kTruncatedKey;
        break;
      default: key = in.short_string(); break;
    }
    const std::string_view value = in.long_string();
    batch.put(space, key,
              (tag & kRawValueBit) != 0 ? std::string(value) : herald::seal_record(value));
  }
  HERALD_ASSERT(engine.write(batch, /*sync=*/true).ok(), "MemEngine writes");
}

// Reads the opened store as the raft core would, checking the LogStorage contract.
void read_store(const storage::LogStore& store) {
  const Index first = store.first_index();
  const Index last = store.last_index();
  HERALD_ASSERT(first >= 1, "the compaction point is below the first index");
  HERALD_ASSERT(first - 1 <= last, "first_index() <= last_index() + 1");
  HERALD_ASSERT(store.hard_state().commit() <= last, "commit within the log");
  check_error(store.term(first - 1).status());
  const auto last_term = store.term(last);
  check_error(last_term.status());
  HERALD_ASSERT(last_term.ok(), "the last entry's term is readable after open");
  static_cast<void>(store.initial_state());
  static_cast<void>(store.snapshot_metadata());
  const Index end = first + std::min<Index>(last - first + 1, kMaxEntriesRead);
  for (Index i = first; i < end; ++i) {
    check_error(store.term(i).status());
  }
  if (first < end) {
    const auto entries = store.entries(first, end, kReadBudgetBytes);
    check_error(entries.status());
    if (entries.ok()) {
      HERALD_ASSERT(!entries->empty(), "entries() returns at least one entry");
      for (std::size_t i = 0; i < entries->size(); ++i) {
        HERALD_ASSERT((*entries)[i].index() == first + i, "entries() returns its range in order");
      }
    }
  }
}

// Appends one entry after the last and opens the store again.
void append_and_reopen(storage::LogStore& store, storage::MemEngine& engine) {
  const Index last = store.last_index();
  if (last >= std::numeric_limits<Index>::max() - 1) return;
  herald::raftpb::Entry entry;
  entry.set_index(last + 1);
  entry.set_term(std::max<std::uint64_t>(store.hard_state().term(), 1));
  entry.set_data("appended");
  const Status saved = store.save(std::nullopt, std::nullopt, {entry}, /*sync=*/true);
  HERALD_ASSERT(saved.ok(), "MemEngine writes");
  HERALD_ASSERT(store.last_index() == last + 1, "save() moves the last index");
  const auto reopened = storage::LogStore::open(&engine, kEntryCacheBytes);
  check_error(reopened.status());
  if (reopened.ok()) {
    HERALD_ASSERT((*reopened)->last_index() == last + 1, "the appended entry is the last");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  herald::fuzz::FuzzInput in(data, size);
  storage::MemEngine engine;
  fill_engine(in, engine);
  auto store = storage::LogStore::open(&engine, kEntryCacheBytes);
  check_error(store.status());
  if (!store.ok()) return 0;
  read_store(**store);
  append_and_reopen(**store, engine);
  return 0;
}
