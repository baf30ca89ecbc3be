#include "push/common.h"

#include <fmt/format.h>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <sstream>
#include <utility>

#include "base/assert.h"

namespace herald::push {

namespace {

// Longest delta-seconds accepted in Retry-After, in digits (more would overflow nothing, but
// such a value is garbage).
constexpr std::size_t kMaxRetryAfterDigits = 10;
constexpr std::size_t kSha256Bytes = 32;
constexpr char kHexDigits[] = "0123456789abcdef";

}  // namespace

std::string collapse_key_for(std::string_view conversation_id) {
  const bool printable = std::all_of(conversation_id.begin(), conversation_id.end(),
                                     [](char c) { return c > ' ' && c < '\x7f'; });
  if (printable && !conversation_id.empty() && conversation_id.size() <= kMaxCollapseKeyBytes) {
    return std::string(conversation_id);
  }
  std::array<unsigned char, kSha256Bytes> digest{};
  unsigned int size = 0;
  const int ok = EVP_Digest(conversation_id.data(), conversation_id.size(), digest.data(), &size,
                            EVP_sha256(), nullptr);
  HERALD_ASSERT(ok == 1 && size == kSha256Bytes, "SHA-256 failed");
  std::string out;
  out.reserve(2 * kSha256Bytes);
  for (const unsigned char byte : digest) {
    out.push_back(kHexDigits[byte >> 4]);
    out.push_back(kHexDigits[byte & 0x0f]);
  }
  return out;
}

std::string_view utf8_prefix(std::string_view text, std::size_t max_bytes) {
  if (text.size() <= max_bytes) {
    return text;
  }
  std::size_t cut = max_bytes;
  // text[cut] is the first byte left out: while it continues a sequence, the cut is inside one.
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xc0) == 0x80) {
    --cut;
  }
  return text.substr(0, cut);
}

std::optional<std::string> fit_field(std::string_view field, std::size_t max_bytes,
                                     const std::function<std::string(std::string_view)>& build) {
  field = utf8_prefix(field, max_bytes);
  const auto cut = [&](std::size_t bytes) {
    std::string text(utf8_prefix(field, bytes));
    if (!text.empty()) {
      text += kCutMarker;
    }
    return text;
  };
  if (build(cut(0)).size() > max_bytes) {
    return std::nullopt;
  }
  std::size_t lo = 0;
  std::size_t hi = field.size();
  while (lo < hi) {
    const std::size_t mid = lo + (hi - lo + 1) / 2;
    if (build(cut(mid)).size() <= max_bytes) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  std::string payload = build(cut(lo));
  HERALD_ASSERT(payload.size() <= max_bytes, "a fitted payload must fit");
  return payload;
}

std::optional<std::int64_t> parse_retry_after_ms(std::string_view value) {
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) {
    value.remove_prefix(1);
  }
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) {
    value.remove_suffix(1);
  }
  if (value.empty() || value.size() > kMaxRetryAfterDigits) {
    return std::nullopt;
  }
  std::int64_t seconds = 0;
  for (const char c : value) {
    if (c < '0' || c > '9') {
      return std::nullopt;  // an HTTP date, or garbage
    }
    seconds = seconds * 10 + (c - '0');
  }
  return std::min(seconds * 1000, kMaxRetryAfterMs);
}

Result<std::string> read_small_file(const std::string& path, std::size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status::io_error(fmt::format("cannot open {}", path));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (!in && !in.eof()) {
    return Status::io_error(fmt::format("cannot read {}", path));
  }
  std::string content = std::move(text).str();
  if (content.size() > max_bytes) {
    return Status::invalid_argument(fmt::format("{} is over {} bytes", path, max_bytes));
  }
  return content;
}

}  // namespace herald::push
