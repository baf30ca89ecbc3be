#include "storage/wal_check.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <vector>

#include "base/assert.h"
#include "base/encoding.h"

namespace herald::storage {
namespace {

constexpr std::uint64_t kHeaderBytes = 7;
constexpr std::uint64_t kLengthOffset = 4;  // in the header, after the checksum
constexpr std::uint64_t kTypeOffset = 6;    // the checksum covers the type byte and the payload
constexpr std::uint32_t kCrcMaskDelta = 0xa282ead8U;  // RocksDB's (and LevelDB's) CRC mask
constexpr std::uint32_t kCrcMaskRotateBits = 15;

std::uint32_t unmask_crc(std::uint32_t masked) {
  const std::uint32_t rotated = masked - kCrcMaskDelta;
  return (rotated >> (32U - kCrcMaskRotateBits)) | (rotated << kCrcMaskRotateBits);
}

std::uint8_t byte_at(std::string_view bytes, std::uint64_t i) {
  return static_cast<std::uint8_t>(bytes[i]);
}

std::uint32_t get_fixed32_le(std::string_view bytes) {
  std::uint32_t v = 0;
  for (std::uint64_t i = 4; i-- > 0;) {
    v = (v << 8U) | byte_at(bytes, i);
  }
  return v;
}

}  // namespace

Status WalFramingCheck::damaged(std::uint64_t offset, std::string_view what) const {
  return Status::corruption("write-ahead log " + name_ + " is damaged at byte " +
                            std::to_string(offset) + " (" + std::string(what) +
                            "): replay would stop there and drop the synced writes after it");
}

Status WalFramingCheck::expect_zeros(std::string_view bytes, std::uint64_t offset) const {
  const auto nonzero = std::find_if(bytes.begin(), bytes.end(), [](char c) { return c != 0; });
  if (nonzero == bytes.end()) {
    return Status::ok_status();
  }
  HERALD_ASSERT(zeroed_header_offset_.has_value(), "zeros are expected after a zeroed header");
  return damaged(*zeroed_header_offset_,
                 "a zeroed record header with data at byte " +
                     std::to_string(offset + static_cast<std::uint64_t>(nonzero - bytes.begin())) +
                     " after it");
}

Status WalFramingCheck::add_block(std::string_view block) {
  HERALD_ASSERT(block.size() <= kWalBlockBytes, "one block at a time");
  HERALD_ASSERT(!ended_, "only the file's last block is shorter than a full block");
  const std::uint64_t base = block_offset_;
  block_offset_ += block.size();
  ended_ = block.size() < kWalBlockBytes;
  if (zeroed_header_offset_.has_value()) {
    return expect_zeros(block, base);
  }
  std::uint64_t pos = 0;
  while (block.size() - pos >= kHeaderBytes) {
    const std::string_view header = block.substr(pos, kHeaderBytes);
    const std::uint64_t length =
        byte_at(header, kLengthOffset) | (std::uint64_t{byte_at(header, kLengthOffset + 1)} << 8U);
    const std::uint8_t type = byte_at(header, kTypeOffset);
    if (type == 0 && length == 0) {
      // What an unwritten (preallocated or torn) tail reads as; RocksDB skips the rest of the
      // block, so anything but zeros after it would be skipped silently.
      zeroed_header_offset_ = base + pos;
      return expect_zeros(block.substr(pos + kHeaderBytes), base + pos + kHeaderBytes);
    }
    if (pos + kHeaderBytes + length > kWalBlockBytes) {
      return damaged(base + pos,
                     "its length runs past its 32 KiB block, which no record written does");
    }
    if (pos + kHeaderBytes + length > block.size()) {
      // Cut short by the end of the file (only the last block is short): a torn last record.
      return Status::ok_status();
    }
    const std::uint32_t stored = unmask_crc(get_fixed32_le(header));
    if (crc32c(block.substr(pos + kTypeOffset, kHeaderBytes - kTypeOffset + length)) != stored) {
      return damaged(base + pos, "it fails its checksum");
    }
    pos += kHeaderBytes + length;
  }
  // What is left is a full block's zero padding, or a header cut short at the end of the file;
  // RocksDB ignores both.
  return Status::ok_status();
}

namespace {

Status check_wal_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status::io_error("cannot read write-ahead log " + path.string());
  }
  WalFramingCheck check(path.string());
  std::vector<char> block(kWalBlockBytes);
  while (true) {
    in.read(block.data(), static_cast<std::streamsize>(block.size()));
    const auto got = static_cast<std::size_t>(in.gcount());
    if (in.bad()) {
      return Status::io_error("cannot read write-ahead log " + path.string());
    }
    // A file that is a whole number of blocks ends with an empty read, which checks nothing.
    if (got == 0) {
      return Status::ok_status();
    }
    HERALD_RETURN_IF_ERROR(check.add_block(std::string_view(block.data(), got)));
    if (got < block.size()) {
      return Status::ok_status();
    }
  }
}

bool is_wal_file(const std::filesystem::directory_entry& entry) {
  const std::string stem = entry.path().stem().string();
  return entry.is_regular_file() && entry.path().extension() == ".log" && !stem.empty() &&
         std::all_of(stem.begin(), stem.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

Status check_wal_files(const std::string& dir) {
  std::error_code error;
  if (!std::filesystem::is_directory(dir, error)) {
    return Status::ok_status();  // a new database: RocksDB creates the directory
  }
  std::vector<std::filesystem::path> wals;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    if (is_wal_file(entry)) {
      wals.push_back(entry.path());
    }
  }
  if (error) {
    return Status::io_error("cannot list " + dir + ": " + error.message());
  }
  std::sort(wals.begin(), wals.end());
  for (const auto& wal : wals) {
    HERALD_RETURN_IF_ERROR(check_wal_file(wal));
  }
  return Status::ok_status();
}

}  // namespace herald::storage
