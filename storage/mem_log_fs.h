// MemLogFs: the in-memory LogFs the simulator runs the segment log on, with injectable disk
// faults. It models exactly the LogFs contract (storage/log_fs.h), and nothing kinder:
//
//  - Each file has a durable image and a live one. Writes change the live image at once and are
//    remembered, in order, until the file's next sync(), which makes the live image durable.
//  - crash(rng) is a power loss and restart. Every file keeps its durable image plus the first k
//    of its unsynced writes, k uniform in [0, n]; when k < n the next write is torn with even odds:
//    a random prefix of its bytes (possibly none) lands, the rest stays as it was.
//  - Names: the directory seen by list() and open() changes at once; the durable directory is a
//    copy taken at each sync_dir(). A crash restores the durable directory, so a create, rename
//    or remove not followed by sync_dir() is undone (a removed file comes back with its contents).
//
// Faults beyond a crash: fail_ops(n) makes the next n write() or sync() calls fail with kIOError
// without changing anything; set_full(true) is a disk with no space left: until set_full(false),
// every write(), sync() and create() fails with kResourceExhausted (what PosixLogFs reports for
// ENOSPC) and changes nothing, while reads, list(), open(), rename(), remove() and sync_dir() go
// on (they need no free block); corrupt() flips one bit of a file, in both images, as a damaged
// sector would.
//
// A disk that lies about fsync: once record_history() is on, the file system remembers its last
// kMaxLogFsHistoryOps operations (every write, with whether a sync() of its file covered it, and
// every sync_dir()), and crash_lying(rng) is a power loss that also loses synced operations. The
// whole directory goes back to what it held after the first k remembered operations, k uniform
// over the positions up to the last synced write, so at least one synced write is gone: every
// file holds exactly the writes among those k, and the names are those of the last sync_dir()
// among them. Later operations are all lost, synced or not, in every file at once, as a write
// cache emptied in order would lose them; the log on it thus always reads as it was at some
// earlier moment. A plain crash() ends the remembered history (the image it leaves is the new
// starting point), and corrupt() is not remembered (a later lying crash may undo it).
//
// Ownership: files returned by open() and create() borrow the MemLogFs, which must outlive them;
// after crash() old handles must not be used. Thread-safety: none; deterministic and meant for
// single-threaded use (the simulator).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/random.h"
#include "storage/log_fs.h"

namespace herald::storage {

// What a MemLogFs has done since it was created, for tests and the simulator.
struct MemLogFsCounters {
  std::uint64_t writes = 0;              // successful LogFile::write() calls
  std::uint64_t bytes_written = 0;       // their bytes
  std::uint64_t syncs = 0;               // successful LogFile::sync() calls
  std::uint64_t dir_syncs = 0;           // sync_dir() calls
  std::uint64_t failed_ops = 0;          // writes and syncs rejected by fail_ops()
  std::uint64_t full_ops = 0;            // writes, syncs and creates rejected by a full disk
  std::uint64_t crashes = 0;             // crash() calls
  std::uint64_t lost_writes = 0;         // unsynced writes dropped by crash() (a torn one included)
  std::uint64_t torn_writes = 0;         // writes of which crash() kept only a prefix
  std::uint64_t lying_crashes = 0;       // crash_lying() calls that lost synced writes
  std::uint64_t lost_synced_writes = 0;  // synced writes dropped by crash_lying()
};

// How many of its latest operations (writes and directory syncs) a lying MemLogFs can roll back.
inline constexpr std::size_t kMaxLogFsHistoryOps = 256;

class MemLogFs final : public LogFs {
 public:
  struct FileData {
    std::string durable;
    std::string live;
    std::vector<std::pair<std::uint64_t, std::string>> unsynced;  // {offset, bytes}, in order
    // With record_history(): the durable image before the first remembered write of the file.
    std::string history_base;
  };

  [[nodiscard]] Result<std::vector<std::string>> list() const override;
  [[nodiscard]] Result<std::unique_ptr<LogFile>> open(std::string_view name) override;
  [[nodiscard]] Result<std::unique_ptr<LogFile>> create(std::string_view name,
                                                        std::uint64_t size_bytes) override;
  [[nodiscard]] Status rename(std::string_view from, std::string_view to) override;
  [[nodiscard]] Status remove(std::string_view name) override;
  [[nodiscard]] Status sync_dir() override;

  // Simulates a power loss and restart (see the header comment).
  void crash(Rng& rng);
  // From now on, remembers the latest kMaxLogFsHistoryOps operations, so that crash_lying() can
  // drop synced ones; what was durable before is never lost.
  void record_history();
  // Simulates a power loss on a disk that acknowledged syncs it had not made durable (see the
  // header comment). Returns the number of synced writes lost; 0 (and a plain crash(rng)) when
  // no synced write is remembered.
  std::uint64_t crash_lying(Rng& rng);
  // The next `count` write() or sync() calls fail with kIOError and change nothing.
  void fail_ops(std::uint64_t count) { failures_pending_ = count; }
  // While `full`, write(), sync() and create() fail with kResourceExhausted and change nothing;
  // failures pending from fail_ops() wait until space returns.
  void set_full(bool full) { full_ = full; }
  [[nodiscard]] bool full() const { return full_; }
  // Flips bit `bit` (0..7) of byte `offset` of file `name`, in the live and the durable image.
  // Returns false (and changes nothing) if there is no such file or byte.
  [[nodiscard]] bool corrupt(std::string_view name, std::uint64_t offset, unsigned bit = 0);
  // The live contents of a file (empty if absent), for tests.
  [[nodiscard]] std::string contents(std::string_view name) const;
  // Replaces a file's contents, durably (a file written by another program), for tests and fuzzing.
  void put_durable(std::string_view name, std::string contents);
  // Whether a name is in the durable directory.
  [[nodiscard]] bool durable_name(std::string_view name) const;

  [[nodiscard]] const MemLogFsCounters& counters() const { return counters_; }

  // Used by the files: consumes one pending failure, if any.
  [[nodiscard]] bool take_failure();
  // Used by the files and create(): kResourceExhausted (counted) while the disk is full, else ok.
  [[nodiscard]] Status check_space(std::string_view call, std::string_view name);
  MemLogFsCounters& mutable_counters() { return counters_; }
  // Used by the files: a write or a sync of `file` happened (for record_history()).
  void remember_write(const std::shared_ptr<FileData>& file, std::uint64_t offset,
                      std::string_view bytes);
  void remember_sync(const FileData& file);

 private:
  using Directory = std::map<std::string, std::shared_ptr<FileData>, std::less<>>;
  // One remembered operation: a write of `file`, or (file null) a sync_dir() that made
  // `directory` durable.
  struct HistoryOp {
    std::shared_ptr<FileData> file;
    std::uint64_t offset = 0;
    std::string bytes;
    bool synced = false;  // a later sync() of its file returned
    Directory directory;
  };

  void remember(HistoryOp op);
  // Makes the current durable state the base of a new, empty history.
  void restart_history();

  Directory live_;
  Directory durable_;
  std::uint64_t failures_pending_ = 0;
  bool full_ = false;
  MemLogFsCounters counters_;
  // With record_history(): the durable directory before the first remembered operation, and
  // those operations in order (at most kMaxLogFsHistoryOps; older ones are folded into the bases).
  bool recording_ = false;
  Directory history_base_directory_;
  std::deque<HistoryOp> history_;
};

}  // namespace herald::storage
