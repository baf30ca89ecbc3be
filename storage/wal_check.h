// WAL framing check: finds the damage to RocksDB's write-ahead log that its recovery would take
// for a torn tail and replay silently past.
//
// Why: RocksDbEngine recovers with WALRecoveryMode::kTolerateCorruptedTailRecords, which fails the
// open on a checksum mismatch but, in RocksDB 7.8, treats two kinds of damage as the end of the
// log and opens on what came before: a record whose length field was damaged so that it runs
// past the end of the file (when it sits in the file's last 32 KiB block), and a record header
// zeroed to length 0 and type 0 (the rest of its block is then skipped, and replay resumes in the
// next block). Either drops synced batches without an error (a durable raft vote among them), so
// the engine runs this check before RocksDB opens the database, and refuses to open instead.
//
// The format (docs/storage-format.md, "Write-ahead log"): 32 KiB blocks of physical records, each
// a 7-byte header (masked CRC-32C of type and payload: 4 bytes; payload length: 2 bytes,
// little-endian; type: 1 byte) then the payload. A record never crosses a block; a block's last
// bytes too short for a header are zero padding. Herald never turns on WAL recycling, whose
// records have a longer header: such a record would fail its checksum here.
//
// What passes: every record whole and matching its checksum, then at most one torn record at the
// end of the file (a header or payload cut short, or a zeroed header followed only by zeros),
// which is what a crash during a write leaves. Anything else is kCorruption naming the file and
// the byte offset of the damaged record.
// Errors: kIOError when a file cannot be read. Thread-safety: none needed (no shared state).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "base/status.h"

namespace herald::storage {

inline constexpr std::uint64_t kWalBlockBytes = 32 * 1024;

// Checks one WAL file's bytes, fed block by block in file order (a record never crosses a block,
// so memory stays at one block whatever the file's size).
class WalFramingCheck {
 public:
  // `name` only labels error messages.
  explicit WalFramingCheck(std::string name) : name_(std::move(name)) {}

  // Checks the next block; `block` is shorter than kWalBlockBytes only at the end of the file.
  [[nodiscard]] Status add_block(std::string_view block);

 private:
  [[nodiscard]] Status damaged(std::uint64_t offset, std::string_view what) const;
  [[nodiscard]] Status expect_zeros(std::string_view bytes, std::uint64_t offset) const;

  std::string name_;
  std::uint64_t block_offset_ = 0;  // of the next block in the file
  bool ended_ = false;              // a block shorter than kWalBlockBytes was seen
  // The offset of a header zeroed to length 0 and type 0, once seen: only zeros may follow it.
  std::optional<std::uint64_t> zeroed_header_offset_;
};

// Checks every WAL file (NNNNNN.log) in the database directory `dir`; ok when there is none.
[[nodiscard]] Status check_wal_files(const std::string& dir);

}  // namespace herald::storage
