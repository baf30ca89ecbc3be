#include "server/backup.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "base/encoding.h"
#include "rsm/membership.h"
#include "rsm/node.h"
#include "storage/log_store.h"
#include "storage/rocksdb_engine.h"

namespace herald::server {

namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

constexpr std::string_view kCrcLinePrefix = "crc32c=";

// An open file descriptor, closed on scope exit.
class File {
 public:
  explicit File(int fd) : fd_(fd) {}
  ~File() {
    if (fd_ >= 0) ::close(fd_);
  }
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  [[nodiscard]] int fd() const { return fd_; }

 private:
  int fd_;
};

Status errno_status(std::string_view what, const std::string& path) {
  return Status::io_error(fmt::format("{} {}: {}", what, path, std::strerror(errno)));
}

// Writes `bytes` to a new file at `path` and syncs it.
Status write_file(const std::string& path, std::string_view bytes, int fd) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return errno_status("cannot write", path);
    done += static_cast<std::size_t>(n);
  }
  return Status::ok_status();
}

Status sync_path(const std::string& path, int flags) {
  const File f(::open(path.c_str(), flags | O_CLOEXEC));
  if (f.fd() < 0 || ::fsync(f.fd()) != 0) return errno_status("cannot sync", path);
  return Status::ok_status();
}

// True when `dir` does not exist or is an empty directory.
Result<bool> absent_or_empty(const std::string& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return true;
  if (!fs::is_directory(dir, ec)) return false;
  return fs::is_empty(dir, ec) && !ec;
}

Result<rsmpb::AppliedState> applied_state_of(std::string_view value) {
  std::string_view payload;
  rsmpb::AppliedState state;
  if (!open_record(value, payload) ||
      !state.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return Status::corruption("the applied state fails its checksum");
  }
  return state;
}

// Streams the state space into the data file; fills records, chunks, data_bytes and data_crc32c.
Status write_chunks(const storage::Reader& view, const std::string& path, BackupInfo& info) {
  const File out(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (out.fd() < 0) return errno_status("cannot create", path);
  std::uint32_t crc = 0;
  std::string pairs;
  const auto flush = [&]() -> Status {
    if (pairs.empty()) return Status::ok_status();
    const std::string sealed = seal_record(pairs);
    std::string frame;
    put_fixed32_be(frame, static_cast<std::uint32_t>(sealed.size()));
    frame += sealed;
    HERALD_RETURN_IF_ERROR(write_file(path, frame, out.fd()));
    // The data checksum covers the chunks' checksums and lengths: a CRC of the frame headers
    // and chunk CRCs, chained (order and completeness), computed without rereading the file.
    crc = crc32c(fmt::format("{:08x}{:08x}", crc, crc32c(frame)));
    info.data_bytes += frame.size();
    ++info.chunks;
    pairs.clear();
    return Status::ok_status();
  };
  auto it = view.scan(storage::Space::kState, "", rsm::kStateSpaceEnd);
  for (; it->valid(); it->next()) {
    std::string_view payload;
    if (!open_record(it->value(), payload)) {
      return Status::corruption(
          fmt::format("a stored value fails its checksum ({} bytes of key)", it->key().size()));
    }
    put_fixed32_be(pairs, static_cast<std::uint32_t>(it->key().size()));
    pairs.append(it->key());
    put_fixed32_be(pairs, static_cast<std::uint32_t>(it->value().size()));
    pairs.append(it->value());
    ++info.records;
    if (pairs.size() >= kBackupChunkBytes) HERALD_RETURN_IF_ERROR(flush());
  }
  HERALD_RETURN_IF_ERROR(it->status());
  HERALD_RETURN_IF_ERROR(flush());
  info.data_crc32c = crc;
  if (::fsync(out.fd()) != 0) return errno_status("cannot sync", path);
  return Status::ok_status();
}

// Reads the whole file at `path`, refusing one larger than `max_bytes`.
Result<std::string> read_small_file(const std::string& path, std::uint64_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::not_found(fmt::format("cannot read {}", path));
  std::string text(max_bytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(in.gcount()));
  if (text.size() > max_bytes) {
    return Status::corruption(fmt::format("{} is larger than {} bytes", path, max_bytes));
  }
  return text;
}

// Calls `on_chunk(pairs)` for each chunk of the data file after checking it against `info`.
template <typename OnChunk>
Status read_chunks(const std::string& path, const BackupInfo& info, OnChunk on_chunk) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::not_found(fmt::format("cannot read {}", path));
  std::uint32_t crc = 0;
  std::uint64_t bytes = 0;
  std::uint64_t chunks = 0;
  std::uint64_t records = 0;
  std::string header(4, '\0');
  while (in.read(header.data(), 4)) {
    const std::uint32_t length = get_fixed32_be(header);
    if (length > kMaxBackupChunkBytes || bytes + 4 + length > info.data_bytes) {
      return Status::corruption(fmt::format("chunk {} has a damaged length", chunks));
    }
    std::string frame = header;
    frame.resize(4 + length);
    if (!in.read(frame.data() + 4, length)) {
      return Status::corruption(fmt::format("chunk {} is truncated", chunks));
    }
    auto pairs = rsm::decode_snapshot_chunk(std::string_view(frame).substr(4));
    if (!pairs.ok()) {
      return Status::corruption(
          fmt::format("chunk {} is damaged: {}", chunks, pairs.status().message()));
    }
    for (const rsm::SnapshotRecord& pair : *pairs) {
      std::string_view payload;
      if (!open_record(pair.value, payload)) {
        return Status::corruption(fmt::format("a value in chunk {} fails its checksum", chunks));
      }
    }
    crc = crc32c(fmt::format("{:08x}{:08x}", crc, crc32c(frame)));
    bytes += frame.size();
    records += pairs->size();
    ++chunks;
    HERALD_RETURN_IF_ERROR(on_chunk(*pairs));
  }
  if (in.gcount() != 0) return Status::corruption("the data file ends inside a chunk header");
  if (bytes != info.data_bytes || chunks != info.chunks || records != info.records ||
      crc != info.data_crc32c) {
    return Status::corruption(fmt::format(
        "the data file does not match its manifest ({} bytes, {} chunks, {} records, crc {:08x}; "
        "the manifest says {}, {}, {}, {:08x})",
        bytes, chunks, records, crc, info.data_bytes, info.chunks, info.records, info.data_crc32c));
  }
  return Status::ok_status();
}

}  // namespace

std::string encode_backup_manifest(const BackupInfo& info) {
  const json::object o{{"format", kBackupFormat},
                       {"index", info.index},
                       {"term", info.term},
                       {"records", info.records},
                       {"chunks", info.chunks},
                       {"data_bytes", info.data_bytes},
                       {"data_crc32c", info.data_crc32c},
                       {"created_ms", info.created_ms}};
  const std::string line = json::serialize(o);
  return fmt::format("{}\n{}{:08x}\n", line, kCrcLinePrefix, crc32c(line));
}

Result<BackupInfo> parse_backup_manifest(std::string_view text) {
  const std::size_t newline = text.find('\n');
  if (newline == std::string_view::npos) return Status::corruption("the manifest has no lines");
  const std::string_view line = text.substr(0, newline);
  const std::string expected = fmt::format("{}{:08x}\n", kCrcLinePrefix, crc32c(line));
  if (text.substr(newline + 1) != expected) {
    return Status::corruption("the manifest fails its checksum");
  }
  boost::system::error_code ec;
  const json::value v = json::parse(line, ec);
  if (ec || !v.is_object()) return Status::corruption("the manifest is not a JSON object");
  const json::object& o = v.get_object();
  const auto number = [&](std::string_view key) -> Result<std::uint64_t> {
    const json::value* field = o.if_contains(key);
    boost::system::error_code conv;
    const std::uint64_t n = field != nullptr ? field->to_number<std::uint64_t>(conv) : 0;
    if (field == nullptr || conv) {
      return Status::corruption(fmt::format("the manifest lacks '{}'", key));
    }
    return n;
  };
  HERALD_ASSIGN_OR_RETURN(const std::uint64_t format, number("format"));
  if (format != kBackupFormat) {
    return Status::invalid_argument(
        fmt::format("backup format {} is not {}", format, kBackupFormat));
  }
  BackupInfo info;
  HERALD_ASSIGN_OR_RETURN(info.index, number("index"));
  HERALD_ASSIGN_OR_RETURN(info.term, number("term"));
  HERALD_ASSIGN_OR_RETURN(info.records, number("records"));
  HERALD_ASSIGN_OR_RETURN(info.chunks, number("chunks"));
  HERALD_ASSIGN_OR_RETURN(info.data_bytes, number("data_bytes"));
  HERALD_ASSIGN_OR_RETURN(const std::uint64_t crc, number("data_crc32c"));
  HERALD_ASSIGN_OR_RETURN(const std::uint64_t created, number("created_ms"));
  info.data_crc32c = static_cast<std::uint32_t>(crc);
  info.created_ms = static_cast<std::int64_t>(created);
  return info;
}

Result<BackupInfo> write_backup(const storage::Reader& view, const std::string& dir,
                                std::int64_t created_ms) {
  HERALD_ASSIGN_OR_RETURN(const bool usable, absent_or_empty(dir));
  if (!usable) {
    return Status::failed_precondition(
        fmt::format("backup directory {} exists and is not empty", dir));
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::io_error(fmt::format("cannot create {}: {}", dir, ec.message()));
  HERALD_ASSIGN_OR_RETURN(auto applied, view.get(storage::Space::kState, rsm::kAppliedStateKey));
  if (!applied) return Status::not_found("the replica has no applied state yet");
  HERALD_ASSIGN_OR_RETURN(const rsmpb::AppliedState state, applied_state_of(*applied));
  BackupInfo info;
  info.dir = dir;
  info.index = state.index();
  info.term = state.term();
  info.created_ms = created_ms;
  const std::string data_path = dir + "/" + kBackupDataFile;
  const std::string manifest_path = dir + "/" + kBackupManifestFile;
  Status written = write_chunks(view, data_path, info);
  if (written.ok()) {
    const File out(::open(manifest_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    written = out.fd() < 0 ? errno_status("cannot create", manifest_path)
                           : write_file(manifest_path, encode_backup_manifest(info), out.fd());
    if (written.ok() && ::fsync(out.fd()) != 0)
      written = errno_status("cannot sync", manifest_path);
  }
  if (written.ok()) written = sync_path(dir, O_RDONLY | O_DIRECTORY);
  if (!written.ok()) {
    fs::remove(manifest_path, ec);  // a backup without its manifest is never taken for one
    fs::remove(data_path, ec);
    return written;
  }
  return info;
}

Result<BackupInfo> verify_backup(const std::string& dir) {
  HERALD_ASSIGN_OR_RETURN(const std::string text, read_small_file(dir + "/" + kBackupManifestFile,
                                                                  kMaxBackupManifestBytes));
  HERALD_ASSIGN_OR_RETURN(BackupInfo info, parse_backup_manifest(text));
  info.dir = dir;
  bool has_applied_state = false;
  HERALD_RETURN_IF_ERROR(read_chunks(dir + "/" + kBackupDataFile, info,
                                     [&](const std::vector<rsm::SnapshotRecord>& pairs) {
                                       for (const auto& pair : pairs) {
                                         if (pair.key == rsm::kAppliedStateKey) {
                                           has_applied_state = true;
                                         }
                                       }
                                       return Status::ok_status();
                                     }));
  if (!has_applied_state) return Status::corruption("the backup holds no applied state");
  return info;
}

Result<BackupInfo> restore_backup(const std::string& dir, const std::string& data_dir,
                                  raft::NodeId node_id) {
  if (node_id == raft::kNoNode) return Status::invalid_argument("node ids are positive");
  HERALD_ASSIGN_OR_RETURN(const BackupInfo info, verify_backup(dir));
  HERALD_ASSIGN_OR_RETURN(const bool usable, absent_or_empty(data_dir));
  if (!usable) {
    return Status::failed_precondition(
        fmt::format("data directory {} exists and is not empty; restore into a new one", data_dir));
  }
  std::error_code ec;
  fs::create_directories(data_dir, ec);
  if (ec) return Status::io_error(fmt::format("cannot create {}: {}", data_dir, ec.message()));
  HERALD_ASSIGN_OR_RETURN(auto engine,
                          storage::RocksDbEngine::open(data_dir, storage::RocksDbOptions{}));
  rsmpb::AppliedState applied;
  HERALD_RETURN_IF_ERROR(
      read_chunks(dir + "/" + kBackupDataFile, info,
                  [&](const std::vector<rsm::SnapshotRecord>& pairs) -> Status {
                    storage::WriteBatch batch;
                    for (const auto& pair : pairs) {
                      if (pair.key == rsm::kAppliedStateKey) {
                        HERALD_ASSIGN_OR_RETURN(applied, applied_state_of(pair.value));
                      } else if (!rsm::member_of_address_key(pair.key).has_value()) {
                        // The old members' addresses belong to the old cluster.
                        batch.put(storage::Space::kState, pair.key, pair.value);
                      }
                    }
                    return engine->write(batch, /*sync=*/false);
                  }));
  // The new cluster: this node alone, at the backup's index; no disk alarm of the old one stands.
  raftpb::ConfState conf;
  conf.add_voters(node_id);
  *applied.mutable_conf_state() = conf;
  applied.clear_disk_alarms();
  storage::WriteBatch state;
  state.put(storage::Space::kState, rsm::kAppliedStateKey,
            seal_record(applied.SerializeAsString()));
  HERALD_ASSIGN_OR_RETURN(auto log, storage::LogStore::open(engine.get()));
  raftpb::HardState hs;
  hs.set_term(applied.term());
  hs.set_commit(applied.index());
  raftpb::SnapshotMetadata meta;
  meta.set_index(applied.index());
  meta.set_term(applied.term());
  *meta.mutable_conf_state() = conf;
  HERALD_RETURN_IF_ERROR(log->save(hs, meta, {}, /*sync=*/true, &state));
  return info;
}

}  // namespace herald::server
