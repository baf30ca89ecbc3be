#include "storage/disk_space.h"

#include <fmt/format.h>
#include <sys/statvfs.h>

#include <cerrno>
#include <cstring>

namespace herald::storage {

Result<std::uint64_t> StatvfsDiskSpace::free_bytes() const {
  struct statvfs fs {};
  if (::statvfs(dir_.c_str(), &fs) != 0) {
    return Status::io_error(fmt::format("statvfs {}: {}", dir_, std::strerror(errno)));
  }
  return static_cast<std::uint64_t>(fs.f_bavail) * static_cast<std::uint64_t>(fs.f_frsize);
}

}  // namespace herald::storage
