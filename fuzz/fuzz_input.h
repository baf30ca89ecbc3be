// FuzzInput: a cursor over one fuzz input, for targets whose input is a sequence of records
// rather than one decoder's bytes. Every read is total: past the end it yields zeros and empty
// strings, so any input is a valid sequence (a short input is simply a short one).
// Thread-safety: none; one per input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace herald::fuzz {

class FuzzInput {
 public:
  FuzzInput(const std::uint8_t* data, std::size_t size)
      : rest_(reinterpret_cast<const char*>(data), size) {}

  [[nodiscard]] bool empty() const { return rest_.empty(); }
  [[nodiscard]] std::size_t remaining_bytes() const { return rest_.size(); }

  [[nodiscard]] std::uint8_t u8() {
    if (rest_.empty()) return 0;
    const auto v = static_cast<std::uint8_t>(rest_.front());
    rest_.remove_prefix(1);
    return v;
  }
  // Big-endian, as Herald's encodings.
  [[nodiscard]] std::uint16_t u16() {
    const std::uint16_t hi = u8();
    return static_cast<std::uint16_t>((hi << 8U) | u8());
  }
  [[nodiscard]] std::uint64_t u64() {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8U) | u8();
    return v;
  }
  // The next `n` bytes, or fewer at the end of the input.
  [[nodiscard]] std::string_view bytes(std::size_t n) {
    const std::string_view out = rest_.substr(0, n);
    rest_.remove_prefix(out.size());
    return out;
  }
  // A string prefixed with its u8 length.
  [[nodiscard]] std::string_view short_string() { return bytes(u8()); }
  // A string prefixed with its u16 length.
  [[nodiscard]] std::string_view long_string() { return bytes(u16()); }
  // Everything left.
  [[nodiscard]] std::string_view rest() { return bytes(rest_.size()); }

 private:
  std::string_view rest_;
};

}  // namespace herald::fuzz
