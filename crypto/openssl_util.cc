#include "crypto/openssl_util.h"

#include <openssl/err.h>

#include <array>

namespace herald::crypto {

std::string openssl_error(std::string_view what) {
  // The most recent error is the most specific one; the older ones say where it was met.
  const unsigned long code = ERR_peek_last_error();
  ERR_clear_error();
  std::string out(what);
  if (code != 0) {
    constexpr std::size_t kReasonBytes = 256;
    std::array<char, kReasonBytes> reason{};
    ERR_error_string_n(code, reason.data(), reason.size());
    out.append(": ").append(reason.data());
  }
  return out;
}

}  // namespace herald::crypto
