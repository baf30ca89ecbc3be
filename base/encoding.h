// Byte encodings shared by the storage formats and the wire (see docs/storage-format.md).
//
// Fixed-width integers are big-endian so that encoded keys sort in numeric order. CRC-32C
// (Castagnoli) protects every stored record and every peer frame.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace herald {

void put_fixed32_be(std::string& out, std::uint32_t v);
void put_fixed64_be(std::string& out, std::uint64_t v);
// Precondition: in.size() >= 4 (resp. 8). Reads from the front of `in`.
[[nodiscard]] std::uint32_t get_fixed32_be(std::string_view in);
[[nodiscard]] std::uint64_t get_fixed64_be(std::string_view in);

[[nodiscard]] std::uint32_t crc32c(std::string_view data);

// Record framing used for stored values: [crc32c(payload) u32 BE][payload].
[[nodiscard]] std::string seal_record(std::string_view payload);
// Returns false (and leaves `payload` untouched) when the record is short or fails its checksum.
[[nodiscard]] bool open_record(std::string_view record, std::string_view& payload);

// Percent-decoding for URL path segments; false on a malformed escape.
[[nodiscard]] bool percent_decode(std::string_view in, std::string& out);
[[nodiscard]] std::string percent_encode(std::string_view in);

}  // namespace herald
