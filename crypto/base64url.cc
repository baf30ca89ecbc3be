#include "crypto/base64url.h"

#include <fmt/format.h>

#include <array>
#include <cstdint>

namespace herald::crypto {

namespace {

constexpr std::string_view kAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
constexpr std::uint8_t kInvalid = 0xFF;
constexpr std::size_t kBitsPerChar = 6;
constexpr std::size_t kBitsPerByte = 8;
constexpr std::uint32_t kSixBitMask = 0x3F;
constexpr std::uint32_t kByteMask = 0xFF;

constexpr std::array<std::uint8_t, 256> make_reverse_table() {
  std::array<std::uint8_t, 256> table{};
  for (auto& entry : table) {
    entry = kInvalid;
  }
  for (std::size_t i = 0; i < kAlphabet.size(); ++i) {
    table[static_cast<unsigned char>(kAlphabet[i])] = static_cast<std::uint8_t>(i);
  }
  return table;
}

constexpr std::array<std::uint8_t, 256> kReverse = make_reverse_table();

}  // namespace

std::string base64url_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() * kBitsPerByte + kBitsPerChar - 1) / kBitsPerChar);
  std::uint32_t acc = 0;
  std::size_t bits = 0;
  for (const char c : bytes) {
    acc = (acc << kBitsPerByte) | static_cast<unsigned char>(c);
    bits += kBitsPerByte;
    while (bits >= kBitsPerChar) {
      bits -= kBitsPerChar;
      out.push_back(kAlphabet[(acc >> bits) & kSixBitMask]);
    }
  }
  if (bits > 0) {
    out.push_back(kAlphabet[(acc << (kBitsPerChar - bits)) & kSixBitMask]);
  }
  return out;
}

Result<std::string> base64url_decode(std::string_view text) {
  // Four characters carry three bytes; a lone trailing character carries no whole byte.
  if (text.size() % 4 == 1) {
    return Status::invalid_argument(
        fmt::format("base64url text of {} characters is truncated", text.size()));
  }
  std::string out;
  out.reserve(text.size() * kBitsPerChar / kBitsPerByte);
  std::uint32_t acc = 0;
  std::size_t bits = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const std::uint8_t v = kReverse[static_cast<unsigned char>(text[i])];
    if (v == kInvalid) {
      return Status::invalid_argument(fmt::format(
          "base64url text has a character outside the URL-safe alphabet at offset {}", i));
    }
    acc = ((acc << kBitsPerChar) | v) & 0xFFFFFF;
    bits += kBitsPerChar;
    if (bits >= kBitsPerByte) {
      bits -= kBitsPerByte;
      out.push_back(static_cast<char>((acc >> bits) & kByteMask));
    }
  }
  // The leftover bits of the last character must be zero: otherwise two texts would decode to
  // the same bytes.
  if ((acc & ((1U << bits) - 1)) != 0) {
    return Status::invalid_argument("base64url text has non-zero bits after its last byte");
  }
  return out;
}

}  // namespace herald::crypto
