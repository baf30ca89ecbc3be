#include "base/encoding.h"

#include <array>
#include <boost/crc.hpp>
#include <cstring>

#include "base/assert.h"

namespace herald {

// Both append their bytes in one call: keys are built from several of them, and a push_back per
// byte showed in the apply path's profile.
void put_fixed32_be(std::string& out, std::uint32_t v) {
  std::array<char, 4> bytes{};
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    bytes[i] = static_cast<char>((v >> (24U - 8U * i)) & 0xffU);
  }
  out.append(bytes.data(), bytes.size());
}

void put_fixed64_be(std::string& out, std::uint64_t v) {
  std::array<char, 8> bytes{};
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    bytes[i] = static_cast<char>((v >> (56U - 8U * i)) & 0xffU);
  }
  out.append(bytes.data(), bytes.size());
}

std::uint32_t get_fixed32_be(std::string_view in) {
  HERALD_ASSERT(in.size() >= 4, "get_fixed32_be needs 4 bytes");
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) {
    v = (v << 8U) | static_cast<unsigned char>(in[static_cast<std::size_t>(i)]);
  }
  return v;
}

std::uint64_t get_fixed64_be(std::string_view in) {
  HERALD_ASSERT(in.size() >= 8, "get_fixed64_be needs 8 bytes");
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) {
    v = (v << 8U) | static_cast<unsigned char>(in[static_cast<std::size_t>(i)]);
  }
  return v;
}

namespace {

// CRC-32C: polynomial 0x1EDC6F41, reflected, init and final xor 0xFFFFFFFF.
std::uint32_t crc32c_portable(std::string_view data) {
  boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true> crc;
  crc.process_bytes(data.data(), data.size());
  return crc.checksum();
}

#if defined(__x86_64__)
// The same CRC with the SSE 4.2 instruction, eight bytes at a time.
__attribute__((target("sse4.2"))) std::uint32_t crc32c_sse42(std::string_view data) {
  std::uint64_t crc = 0xFFFFFFFFU;
  const char* p = data.data();
  std::size_t n = data.size();
  while (n >= sizeof(std::uint64_t)) {
    std::uint64_t word = 0;
    std::memcpy(&word, p, sizeof(word));
    crc = __builtin_ia32_crc32di(crc, word);
    p += sizeof(word);
    n -= sizeof(word);
  }
  auto crc32 = static_cast<std::uint32_t>(crc);
  while (n > 0) {
    crc32 = __builtin_ia32_crc32qi(crc32, static_cast<unsigned char>(*p));
    ++p;
    --n;
  }
  return crc32 ^ 0xFFFFFFFFU;
}
#endif

}  // namespace

std::uint32_t crc32c(std::string_view data) {
#if defined(__x86_64__)
  static const bool kHasSse42 = __builtin_cpu_supports("sse4.2");
  if (kHasSse42) {
    return crc32c_sse42(data);
  }
#endif
  return crc32c_portable(data);
}

std::string seal_record(std::string_view payload) {
  std::string out;
  out.reserve(payload.size() + 4);
  put_fixed32_be(out, crc32c(payload));
  out.append(payload);
  return out;
}

bool open_record(std::string_view record, std::string_view& payload) {
  if (record.size() < 4) {
    return false;
  }
  const std::string_view body = record.substr(4);
  if (crc32c(body) != get_fixed32_be(record)) {
    return false;
  }
  payload = body;
  return true;
}

namespace {
int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

bool percent_decode(std::string_view in, std::string& out) {
  out.clear();
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out.push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) {
      return false;
    }
    const int hi = hex_value(in[i + 1]);
    const int lo = hex_value(in[i + 2]);
    if (hi < 0 || lo < 0) {
      return false;
    }
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return true;
}

std::string percent_encode(std::string_view in) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : in) {
    const auto u = static_cast<unsigned char>(c);
    const bool unreserved = (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') ||
                            (u >= '0' && u <= '9') || u == '-' || u == '_' || u == '.' || u == '~';
    if (unreserved) {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[u >> 4U]);
      out.push_back(kHex[u & 0xfU]);
    }
  }
  return out;
}

}  // namespace herald
