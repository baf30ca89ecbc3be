#include "webhooks/signature.h"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <array>
#include <vector>

#include "base/assert.h"

namespace herald::webhooks {

namespace {

// Hex digits of the SHA-256 a fingerprint shows.
constexpr std::size_t kFingerprintHexDigits = 16;

std::string hmac_sha256(std::string_view key, std::string_view data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
  unsigned int length = 0;
  const unsigned char* out =
      HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac.data(), &length);
  HERALD_ASSERT(out != nullptr && length == SHA256_DIGEST_LENGTH, "HMAC-SHA256 cannot fail");
  return {reinterpret_cast<const char*>(mac.data()), length};
}

}  // namespace

std::string base64_encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()),
                                static_cast<int>(bytes.size()));
  HERALD_ASSERT(n >= 0 && static_cast<std::size_t>(n) == out.size(), "base64 length");
  return out;
}

Result<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) {
    return Status::invalid_argument("base64 text is not a multiple of 4 characters");
  }
  std::string out(3 * (text.size() / 4), '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(text.data()),
                                static_cast<int>(text.size()));
  if (n < 0) {
    return Status::invalid_argument("not base64");
  }
  // EVP_DecodeBlock keeps the bytes the padding stands for (as zeros): drop them.
  std::size_t padding = 0;
  for (std::size_t i = text.size(); i > 0 && text[i - 1] == '=' && padding < 2; --i) ++padding;
  out.resize(static_cast<std::size_t>(n) - padding);
  return out;
}

Result<std::string> key_of_secret(std::string_view secret) {
  std::string key;
  if (secret.starts_with(kSecretPrefix)) {
    HERALD_ASSIGN_OR_RETURN(key,
                            base64_decode(secret.substr(std::string_view(kSecretPrefix).size())));
  } else {
    key = std::string(secret);
  }
  if (key.empty()) {
    return Status::invalid_argument("a webhook secret must not be empty");
  }
  return key;
}

std::string sign(std::string_view key, std::string_view id, std::int64_t timestamp_s,
                 std::string_view body) {
  HERALD_ASSERT(!key.empty(), "a signature needs a key");
  std::string content = fmt::format("{}.{}.", id, timestamp_s);
  content.append(body);
  return fmt::format("{},{}", kSignatureVersion, base64_encode(hmac_sha256(key, content)));
}

bool verify(std::string_view key, std::string_view id, std::int64_t timestamp_s,
            std::string_view body, std::string_view signature_header, std::int64_t now_s,
            std::int64_t tolerance_s) {
  if (key.empty() || timestamp_s < now_s - tolerance_s || timestamp_s > now_s + tolerance_s) {
    return false;
  }
  const std::string expected = sign(key, id, timestamp_s, body);
  bool found = false;
  std::size_t pos = 0;
  while (pos <= signature_header.size()) {
    std::size_t end = signature_header.find(' ', pos);
    if (end == std::string_view::npos) end = signature_header.size();
    const std::string_view entry = signature_header.substr(pos, end - pos);
    // Every entry is compared, in constant time each, whatever matched before.
    if (entry.size() == expected.size() &&
        CRYPTO_memcmp(entry.data(), expected.data(), expected.size()) == 0) {
      found = true;
    }
    pos = end + 1;
  }
  return found;
}

std::string fingerprint(std::string_view key) {
  std::array<unsigned char, SHA256_DIGEST_LENGTH> digest{};
  SHA256(reinterpret_cast<const unsigned char*>(key.data()), key.size(), digest.data());
  std::string hex;
  for (std::size_t i = 0; i < kFingerprintHexDigits / 2; ++i) {
    hex += fmt::format("{:02x}", digest[i]);
  }
  return "sha256:" + hex;
}

}  // namespace herald::webhooks
