// LogFs: the small file system the segment log (storage/segment_log.h) runs on, as an interface.
//
// Two implementations run the same log code: PosixLogFs (below) on one real directory, and
// MemLogFs (storage/mem_log_fs.h), the simulator's fault-injecting twin.
//
// Contract (what the segment log may rely on, and no more):
//  - A directory of flat files named by the caller. create() makes a new file of `size_bytes`
//    zero bytes, allocated up front, so that later writes inside it never change its size.
//  - LogFile::write() is visible to reads at once, but durable only after a later sync() of that
//    file returns. A crash may keep any prefix of the writes made since the last sync, and the
//    last write kept may be torn (only a prefix of its bytes reached the disk); bytes never
//    written read as zeros.
//  - Names are durable only after sync_dir(): a crash may undo any create(), rename() or
//    remove() made since the last sync_dir() returned. A file's synced contents survive with it.
// Errors: kIOError from the operating system (with the call and path), kResourceExhausted when
// the disk is full, kNotFound when open() names no file. After a failed write() or sync() the
// state of the file's unsynced bytes is unknown: the caller must stop writing to it.
// Thread-safety: a LogFs and its files are used from one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace herald::storage {

class LogFile {
 public:
  virtual ~LogFile() = default;
  // Writes `data` at `offset`. Precondition: offset + data.size() <= size().
  [[nodiscard]] virtual Status write(std::uint64_t offset, std::string_view data) = 0;
  // Reads `length` bytes at `offset` into `out` (replacing its contents). kIOError when the range
  // runs past the end of the file.
  [[nodiscard]] virtual Status read(std::uint64_t offset, std::uint64_t length,
                                    std::string& out) const = 0;
  // Makes every write to this file durable (fdatasync).
  [[nodiscard]] virtual Status sync() = 0;
  [[nodiscard]] virtual std::uint64_t size() const = 0;
};

class LogFs {
 public:
  virtual ~LogFs() = default;
  // The names of the files in the directory, in no particular order.
  [[nodiscard]] virtual Result<std::vector<std::string>> list() const = 0;
  // Opens an existing file for reading and writing.
  [[nodiscard]] virtual Result<std::unique_ptr<LogFile>> open(std::string_view name) = 0;
  // Creates a new file of `size_bytes` zeros (preallocated). kAlreadyExists if the name exists.
  [[nodiscard]] virtual Result<std::unique_ptr<LogFile>> create(std::string_view name,
                                                                std::uint64_t size_bytes) = 0;
  // Renames `from` to `to`, replacing `to` if it exists.
  [[nodiscard]] virtual Status rename(std::string_view from, std::string_view to) = 0;
  // Removes a file. Open handles to it stay usable.
  [[nodiscard]] virtual Status remove(std::string_view name) = 0;
  // Makes every create, rename and remove so far durable (fsync of the directory).
  [[nodiscard]] virtual Status sync_dir() = 0;
};

// The real file system: one directory, created (with its parents) if absent. Files are
// preallocated with fallocate (falling back to ftruncate where the file system has none), written
// with pwrite, synced with fdatasync; sync_dir() fsyncs the directory.
class PosixLogFs final : public LogFs {
 public:
  [[nodiscard]] static Result<std::unique_ptr<PosixLogFs>> open_dir(const std::string& dir);

  [[nodiscard]] Result<std::vector<std::string>> list() const override;
  [[nodiscard]] Result<std::unique_ptr<LogFile>> open(std::string_view name) override;
  [[nodiscard]] Result<std::unique_ptr<LogFile>> create(std::string_view name,
                                                        std::uint64_t size_bytes) override;
  [[nodiscard]] Status rename(std::string_view from, std::string_view to) override;
  [[nodiscard]] Status remove(std::string_view name) override;
  [[nodiscard]] Status sync_dir() override;

  [[nodiscard]] const std::string& dir() const { return dir_; }

 private:
  explicit PosixLogFs(std::string dir) : dir_(std::move(dir)) {}
  [[nodiscard]] std::string path(std::string_view name) const;

  std::string dir_;
};

}  // namespace herald::storage
