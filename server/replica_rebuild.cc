#include "server/replica_rebuild.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "rsm/rebuild.h"
#include "storage/log_fs.h"
#include "storage/rocksdb_engine.h"

namespace herald::server {

namespace fs = std::filesystem;

namespace {

Status io_error(std::string_view what, const fs::path& path, const std::string& why) {
  return Status::io_error(fmt::format("{} {}: {}", what, path.string(), why));
}

// fsync of a file or directory by path.
Status sync_path(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return io_error("opening", path, std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return io_error("syncing", path, std::strerror(err));
  return Status::ok_status();
}

Status rename_durably(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::rename(from, to, ec);
  if (ec) return io_error("renaming", from, ec.message());
  return sync_path(to.parent_path().empty() ? fs::path(".") : to.parent_path());
}

Status remove_if_present(const fs::path& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) return io_error("removing", path, ec.message());
  return Status::ok_status();
}

std::string read_reason(const fs::path& request) {
  std::ifstream in(request);
  std::stringstream text;
  text << in.rdbuf();
  std::string reason = text.str();
  while (!reason.empty() && (reason.back() == '\n' || reason.back() == '\r')) reason.pop_back();
  return reason;
}

// Writes the new store beside the damaged one; both are closed when this returns. The raft log
// is read from the damaged directory's segment files when it has any, whatever the
// configuration says: they are newer than anything the engine holds. The new store has none: it
// moves its hard state into a new segment log when it opens with one.
Result<raft::Index> write_rebuilt_store(const fs::path& damaged_dir, const fs::path& rebuilt_dir,
                                        const std::string& reason, std::int64_t wall_ms) {
  HERALD_ASSIGN_OR_RETURN(auto damaged,
                          storage::RocksDbEngine::open(damaged_dir, storage::RocksDbOptions{}));
  std::unique_ptr<storage::PosixLogFs> segments;
  std::error_code ec;
  if (fs::is_directory(damaged_dir / kRaftLogDir, ec)) {
    HERALD_ASSIGN_OR_RETURN(segments,
                            storage::PosixLogFs::open_dir((damaged_dir / kRaftLogDir).string()));
  }
  HERALD_ASSIGN_OR_RETURN(auto fresh,
                          storage::RocksDbEngine::open(rebuilt_dir, storage::RocksDbOptions{}));
  return rsm::carry_over_for_rebuild(*damaged, segments.get(), *fresh, reason, wall_ms);
}

}  // namespace

Status request_rebuild(const std::string& data_dir, std::string_view reason) {
  const fs::path dir(data_dir);
  const fs::path request = dir / kRebuildRequestFile;
  const fs::path staged = dir / (std::string(kRebuildRequestFile) + ".tmp");
  {
    std::ofstream out(staged, std::ios::trunc);
    out << reason << '\n';
    if (!out.flush()) return io_error("writing", staged, "write failed");
  }
  HERALD_RETURN_IF_ERROR(sync_path(staged));
  return rename_durably(staged, request);
}

Result<bool> rebuild_if_requested(const std::string& data_dir, std::size_t voters,
                                  std::int64_t wall_ms) {
  // "data/" and "data" name the same directory; the siblings go beside it, not inside.
  std::string base = fs::path(data_dir).lexically_normal().string();
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  const fs::path dir(base);
  const fs::path rebuilt(base + kRebuiltSuffix);
  const fs::path damaged(base + kDamagedSuffix);
  std::error_code ec;
  if (!fs::exists(dir, ec) && fs::exists(rebuilt, ec)) {
    // Interrupted between moving the damaged store aside and moving the new one in.
    HERALD_RETURN_IF_ERROR(rename_durably(rebuilt, dir));
    spdlog::warn("rebuild: finished moving the rebuilt store into {}", dir.string());
    return true;
  }
  const fs::path request = dir / kRebuildRequestFile;
  if (!fs::exists(request, ec)) return false;
  const std::string reason = read_reason(request);
  if (voters < 2) {
    return Status::failed_precondition(fmt::format(
        "{} asks for a rebuild ({}), but this is the cluster's only replica: there is no leader "
        "to rebuild from. Restore the data directory from a backup",
        request.string(), reason));
  }
  spdlog::critical(
      "replica data in {} was found damaged ({}): rebuilding it empty; the leader will send it "
      "a snapshot or the log. The damaged store is kept as {}",
      dir.string(), reason, damaged.string());
  HERALD_RETURN_IF_ERROR(remove_if_present(rebuilt));  // a rebuild interrupted earlier
  HERALD_ASSIGN_OR_RETURN(const raft::Index floor,
                          write_rebuilt_store(dir, rebuilt, reason, wall_ms));
  HERALD_RETURN_IF_ERROR(remove_if_present(damaged));
  HERALD_RETURN_IF_ERROR(rename_durably(dir, damaged));
  HERALD_RETURN_IF_ERROR(rename_durably(rebuilt, dir));
  spdlog::warn("rebuild: {} holds a new store; no vote until its log reaches index {}",
               dir.string(), floor);
  return true;
}

bool is_checksum_failure(const Status& damage) {
  return damage.code() == Code::kCorruption &&
         damage.message().find("checksum") != std::string::npos;
}

bool rebuild_on_read_damage(const Status& damage, std::size_t voters,
                            const std::optional<rsmpb::RebuildMark>& mark, std::int64_t now_ms) {
  if (!is_checksum_failure(damage) || voters < 2) {
    return false;
  }
  return !mark.has_value() || now_ms - mark->wall_ms() >= kMinRebuildIntervalMs;
}

}  // namespace herald::server
