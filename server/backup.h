// Online backup and offline restore of a replica's state (docs/operations.md, "Backup and
// restore"; the format is in docs/storage-format.md, "Backups").
//
// A backup is the state space (storage::Space::kState) of one replica at one applied index: the
// state machines' data and the applied state that says which index and term it covers. The node
// host takes it from a point-in-time engine snapshot after a linearizable read barrier, so it
// holds every write acknowledged before the backup was asked for, and writes it on a thread of its
// own while the replica keeps serving. The raft log, hard state and votes are not in it: they
// belong to one member of one cluster.
//
// A backup directory holds two files:
//   state.chunks  chunks of key/value records, each [u32 BE length][record] where record is a
//                 sealed list of pairs (rsm::decode_snapshot_chunk's format), at most
//                 kBackupChunkBytes of pairs each
//   MANIFEST      one JSON line (format, index, term, records, chunks, data_bytes, data_crc32c,
//                 created_ms), then "crc32c=<8 hex digits of the JSON line>\n"
// Every byte is covered by a checksum: the manifest's line, each chunk, and the whole data file.
//
// Restore turns a backup into the data directory of a new single-voter cluster: the state space
// as it was, the applied state moved to the new membership, and the log starting after the
// backup's index. The new node serves every write the backup holds; more members are then added
// as learners and promoted (herald ctl member add / promote).
//
// Thread-safety: the functions share no state; each may run on any thread.
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"
#include "raft/types.h"
#include "storage/engine.h"

namespace herald::server {

inline constexpr char kBackupManifestFile[] = "MANIFEST";
inline constexpr char kBackupDataFile[] = "state.chunks";
inline constexpr std::uint64_t kBackupFormat = 1;
// Pairs per chunk of the data file, in bytes at most (a single larger pair gets a chunk alone).
inline constexpr std::uint64_t kBackupChunkBytes = 1ULL << 20U;  // 1 MiB
// A chunk longer than this is damage, not data (a pair is bounded by the state machines).
inline constexpr std::uint64_t kMaxBackupChunkBytes = 64ULL << 20U;  // 64 MiB
// A manifest file larger than this is not a manifest.
inline constexpr std::uint64_t kMaxBackupManifestBytes = 4096;

struct BackupInfo {
  std::string dir;
  raft::Index index = 0;  // the applied index the backup covers
  raft::Term term = 0;
  std::uint64_t records = 0;  // key/value pairs, the applied state included
  std::uint64_t chunks = 0;
  std::uint64_t data_bytes = 0;
  std::uint32_t data_crc32c = 0;
  std::int64_t created_ms = 0;
};

// The manifest's bytes for `info`, and back. parse: kCorruption when the checksum line does not
// match or a field is missing; kInvalidArgument for an unknown format.
[[nodiscard]] std::string encode_backup_manifest(const BackupInfo& info);
[[nodiscard]] Result<BackupInfo> parse_backup_manifest(std::string_view text);

// Writes the state space of `view` (a point-in-time engine snapshot) into `dir`, which is created;
// both files are synced. `created_ms` is recorded in the manifest. Errors: kFailedPrecondition
// when `dir` exists and is not empty; kCorruption when a stored value fails its checksum (the
// backup is abandoned, its files removed); kIOError from the file system.
[[nodiscard]] Result<BackupInfo> write_backup(const storage::Reader& view, const std::string& dir,
                                              std::int64_t created_ms);

// Reads the whole backup in `dir` and checks every checksum and count. Errors: kNotFound when a
// file is missing; kCorruption naming what is damaged.
[[nodiscard]] Result<BackupInfo> verify_backup(const std::string& dir);

// Verifies the backup in `dir`, then makes `data_dir` (absent or empty) the data directory of a
// new cluster whose only voter is `node_id`, holding the backup's state at its index. Errors:
// those of verify_backup() (nothing is written then); kInvalidArgument for node id 0;
// kFailedPrecondition when data_dir exists and is not empty; the engine's.
[[nodiscard]] Result<BackupInfo> restore_backup(const std::string& dir, const std::string& data_dir,
                                                raft::NodeId node_id);

}  // namespace herald::server
