// Engine: the ordered key-value store under Herald's log and state, as an interface.
//
// Two implementations run the same code above them: RocksDbEngine (storage/rocksdb_engine.h) on
// disk, and MemEngine (storage/mem_engine.h), the simulator's fault-injecting twin that loses
// unsynced writes on a simulated crash.
//
// Contract:
//  - Keys live in one of a few Spaces (RocksDB column families). Keys are arbitrary bytes and
//    sort bytewise.
//  - write() applies a WriteBatch atomically (all of it or none of it, also across Spaces).
//  - write(batch, sync=true) returns only once that batch and every batch written before it are
//    durable. After a crash, the store holds some prefix of the batches written, which includes
//    at least every batch up to the last synced one.
//  - Reads see every write that returned ok. snapshot() gives a consistent, unchanging view.
// Errors: kIOError from the device or engine; kCorruption when the engine detects damaged data;
// kResourceExhausted when the file system is full (the engine then refuses writes until reopened).
// Thread-safety: write() and reads may be called from different threads.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"

namespace herald::storage {

enum class Space : std::uint8_t {
  kLog = 0,    // raft log entries, keyed by big-endian index
  kMeta = 1,   // raft hard state, truncation point
  kState = 2,  // state machine data and its applied state (written in one batch)
};
inline constexpr int kSpaceCount = 3;
[[nodiscard]] const char* space_name(Space space);

class WriteBatch {
 public:
  enum class OpType : std::uint8_t { kPut, kDelete, kDeleteRange };
  struct Op {
    OpType type;
    Space space;
    std::string key;    // kDeleteRange: begin (inclusive)
    std::string value;  // kDeleteRange: end (exclusive)
  };

  void put(Space space, std::string_view key, std::string_view value);
  void del(Space space, std::string_view key);
  // Deletes every key in [begin, end). Precondition (asserted): begin <= end.
  void delete_range(Space space, std::string_view begin, std::string_view end);
  // Appends all of `other`'s operations after this batch's.
  void append(const WriteBatch& other);
  void clear();
  // Drops every operation after the first `op_count` (a rollback to an earlier size).
  void truncate(std::size_t op_count);
  // Makes operation `index` a put of `value` (kPut) or a delete of its key (kDelete, `value`
  // empty), keeping its space and key, and returns its type and value before. Preconditions
  // (asserted): `index` is in the batch, and neither it nor `type` is a kDeleteRange.
  std::pair<OpType, std::string> replace(std::size_t index, OpType type, std::string value);

  [[nodiscard]] const std::vector<Op>& ops() const { return ops_; }
  [[nodiscard]] bool empty() const { return ops_.empty(); }
  [[nodiscard]] std::size_t byte_size() const { return bytes_; }

 private:
  std::vector<Op> ops_;
  std::size_t bytes_ = 0;
};

// A forward cursor over [begin, end) of one Space. Check status() when valid() turns false.
class Iterator {
 public:
  virtual ~Iterator() = default;
  [[nodiscard]] virtual bool valid() const = 0;
  virtual void next() = 0;
  [[nodiscard]] virtual std::string_view key() const = 0;
  [[nodiscard]] virtual std::string_view value() const = 0;
  [[nodiscard]] virtual Status status() const = 0;
};

// Read operations, shared by the live engine and its snapshots.
class Reader {
 public:
  virtual ~Reader() = default;
  // nullopt when the key is absent.
  [[nodiscard]] virtual Result<std::optional<std::string>> get(Space space,
                                                               std::string_view key) const = 0;
  // Keys in [begin, end); an empty `end` means "to the end of the Space".
  [[nodiscard]] virtual std::unique_ptr<Iterator> scan(Space space, std::string_view begin,
                                                       std::string_view end) const = 0;
};

class Engine : public Reader {
 public:
  [[nodiscard]] virtual Status write(const WriteBatch& batch, bool sync) = 0;
  // A consistent point-in-time view; it stays valid while the engine lives.
  [[nodiscard]] virtual std::unique_ptr<Reader> snapshot() const = 0;
};

}  // namespace herald::storage
