#include "storage/log_fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <utility>

namespace herald::storage {
namespace {

Status errno_status(std::string_view call, const std::string& path, int err) {
  std::string message = std::string(call) + " " + path + ": " + std::strerror(err);
  if (err == ENOSPC || err == EDQUOT) {
    return Status::resource_exhausted(std::move(message));
  }
  if (err == ENOENT) {
    return Status::not_found(std::move(message));
  }
  if (err == EEXIST) {
    return Status::already_exists(std::move(message));
  }
  return Status::io_error(std::move(message));
}

// One open file descriptor, closed when the object dies.
class PosixLogFile final : public LogFile {
 public:
  PosixLogFile(int fd, std::string path, std::uint64_t size)
      : fd_(fd), path_(std::move(path)), size_(size) {}
  ~PosixLogFile() override { ::close(fd_); }
  PosixLogFile(const PosixLogFile&) = delete;
  PosixLogFile& operator=(const PosixLogFile&) = delete;

  Status write(std::uint64_t offset, std::string_view data) override {
    HERALD_ASSERT(offset + data.size() <= size_, "writes stay inside the preallocated file");
    while (!data.empty()) {
      const ssize_t n = ::pwrite(fd_, data.data(), data.size(), static_cast<off_t>(offset));
      if (n < 0) {
        if (errno == EINTR) continue;
        return errno_status("pwrite", path_, errno);
      }
      data.remove_prefix(static_cast<std::size_t>(n));
      offset += static_cast<std::uint64_t>(n);
    }
    return Status::ok_status();
  }

  Status read(std::uint64_t offset, std::uint64_t length, std::string& out) const override {
    if (offset > size_ || length > size_ - offset) {
      return Status::io_error("read past the end of " + path_);
    }
    out.resize(length);
    std::uint64_t done = 0;
    while (done < length) {
      const ssize_t n =
          ::pread(fd_, out.data() + done, length - done, static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return errno_status("pread", path_, errno);
      }
      if (n == 0) {
        return Status::io_error("short read of " + path_);
      }
      done += static_cast<std::uint64_t>(n);
    }
    return Status::ok_status();
  }

  Status sync() override {
    if (::fdatasync(fd_) != 0) {
      return errno_status("fdatasync", path_, errno);
    }
    return Status::ok_status();
  }

  std::uint64_t size() const override { return size_; }

 private:
  int fd_;
  std::string path_;
  std::uint64_t size_;
};

}  // namespace

Result<std::unique_ptr<PosixLogFs>> PosixLogFs::open_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return Status::io_error("create directory " + dir + ": " + ec.message());
  }
  return std::unique_ptr<PosixLogFs>(new PosixLogFs(dir));
}

std::string PosixLogFs::path(std::string_view name) const {
  HERALD_ASSERT(!name.empty() && name.find('/') == std::string_view::npos,
                "log file names are plain names");
  return dir_ + "/" + std::string(name);
}

Result<std::vector<std::string>> PosixLogFs::list() const {
  DIR* d = ::opendir(dir_.c_str());
  if (d == nullptr) {
    return errno_status("opendir", dir_, errno);
  }
  std::vector<std::string> names;
  errno = 0;
  while (const dirent* e = ::readdir(d)) {
    const std::string_view name = e->d_name;
    if (name != "." && name != "..") {
      names.emplace_back(name);
    }
  }
  const int err = errno;
  ::closedir(d);
  if (err != 0) {
    return errno_status("readdir", dir_, err);
  }
  return names;
}

Result<std::unique_ptr<LogFile>> PosixLogFs::open(std::string_view name) {
  const std::string p = path(name);
  const int fd = ::open(p.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    return errno_status("open", p, errno);
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return errno_status("fstat", p, err);
  }
  return std::unique_ptr<LogFile>(
      std::make_unique<PosixLogFile>(fd, p, static_cast<std::uint64_t>(st.st_size)));
}

Result<std::unique_ptr<LogFile>> PosixLogFs::create(std::string_view name,
                                                    std::uint64_t size_bytes) {
  const std::string p = path(name);
  const int fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    return errno_status("open", p, errno);
  }
  // Allocating every block now keeps later appends from changing the file's size, so fdatasync
  // writes the data alone, and a full disk shows here rather than in the middle of a round.
  int rc = ::fallocate(fd, 0, 0, static_cast<off_t>(size_bytes));
  if (rc != 0 && (errno == EOPNOTSUPP || errno == ENOSYS)) {
    rc = ::ftruncate(fd, static_cast<off_t>(size_bytes));
  }
  if (rc != 0) {
    const int err = errno;
    ::close(fd);
    ::unlink(p.c_str());
    return errno_status("fallocate", p, err);
  }
  return std::unique_ptr<LogFile>(std::make_unique<PosixLogFile>(fd, p, size_bytes));
}

Status PosixLogFs::rename(std::string_view from, std::string_view to) {
  const std::string a = path(from);
  const std::string b = path(to);
  if (::rename(a.c_str(), b.c_str()) != 0) {
    return errno_status("rename", a, errno);
  }
  return Status::ok_status();
}

Status PosixLogFs::remove(std::string_view name) {
  const std::string p = path(name);
  if (::unlink(p.c_str()) != 0) {
    return errno_status("unlink", p, errno);
  }
  return Status::ok_status();
}

Status PosixLogFs::sync_dir() {
  const int fd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return errno_status("open", dir_, errno);
  }
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) {
    return errno_status("fsync", dir_, err);
  }
  return Status::ok_status();
}

}  // namespace herald::storage
