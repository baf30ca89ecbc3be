// DiskSpace: the free space of the file system that holds a replica's data, as an interface.
//
// Free space changes outside the process (other writers, an operator freeing files), so it is a
// source of nondeterminism: the server reads the file system (StatvfsDiskSpace), the simulator
// and tests set the figure themselves (ManualDiskSpace).
// Thread-safety: free_bytes() may be called from any thread; ManualDiskSpace::set too.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "base/status.h"

namespace herald::storage {

class DiskSpace {
 public:
  virtual ~DiskSpace() = default;
  // Bytes an unprivileged writer may still use on the file system. kIOError when the operating
  // system cannot tell.
  [[nodiscard]] virtual Result<std::uint64_t> free_bytes() const = 0;
};

// statvfs(3) on `dir`: f_bavail blocks of f_frsize bytes.
class StatvfsDiskSpace final : public DiskSpace {
 public:
  explicit StatvfsDiskSpace(std::string dir) : dir_(std::move(dir)) {}
  [[nodiscard]] Result<std::uint64_t> free_bytes() const override;

 private:
  std::string dir_;
};

// A figure the owner sets: the simulator's full disks and the tests' low ones.
class ManualDiskSpace final : public DiskSpace {
 public:
  explicit ManualDiskSpace(std::uint64_t free_bytes) : free_bytes_(free_bytes) {}
  void set(std::uint64_t free_bytes) { free_bytes_.store(free_bytes); }
  [[nodiscard]] Result<std::uint64_t> free_bytes() const override { return free_bytes_.load(); }

 private:
  std::atomic<std::uint64_t> free_bytes_;
};

}  // namespace herald::storage
