#include "server/peer_auth.h"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <array>

#include "base/assert.h"
#include "base/encoding.h"

namespace herald::server {

namespace {

// Distinct per role so that a proof made by one side is never valid as the other side's.
constexpr std::string_view kAcceptorLabel = "herald peer handshake v1: acceptor";
constexpr std::string_view kCallerLabel = "herald peer handshake v1: caller";

// Appends `field` with a u32 BE length prefix, so that the encoding of a transcript is
// unambiguous (no two transcripts share their bytes).
void put_field(std::string& out, std::string_view field) {
  put_fixed32_be(out, static_cast<std::uint32_t>(field.size()));
  out.append(field);
}

}  // namespace

Status check_cluster_secret(std::string_view secret) {
  if (secret.size() < kMinClusterSecretBytes) {
    return Status::invalid_argument(
        fmt::format("the cluster secret has {} bytes; at least {} are required", secret.size(),
                    kMinClusterSecretBytes));
  }
  return Status::ok_status();
}

Result<std::string> make_handshake_nonce() {
  std::string nonce(kHandshakeNonceBytes, '\0');
  // NOLINTNEXTLINE(bugprone-suspicious-stringview-data-usage): the size is the string's own.
  if (RAND_bytes(reinterpret_cast<unsigned char*>(nonce.data()), static_cast<int>(nonce.size())) !=
      1) {
    return Status::io_error("the random generator failed to produce a handshake nonce");
  }
  return nonce;
}

std::string handshake_proof(HandshakeRole role, std::string_view secret,
                            const HandshakeTranscript& transcript) {
  std::string message;
  put_field(message, role == HandshakeRole::kAcceptor ? kAcceptorLabel : kCallerLabel);
  put_field(message, transcript.cluster);
  put_fixed64_be(message, transcript.caller);
  put_fixed64_be(message, transcript.acceptor);
  put_field(message, transcript.caller_nonce);
  put_field(message, transcript.acceptor_nonce);

  std::array<unsigned char, EVP_MAX_MD_SIZE> tag{};
  unsigned int tag_bytes = 0;
  // An empty key is passed as a non-null pointer: HMAC() treats a null key as "reuse the last".
  static constexpr unsigned char kEmpty = 0;
  const void* key = secret.empty() ? static_cast<const void*>(&kEmpty) : secret.data();
  const unsigned char* done = HMAC(EVP_sha256(), key, static_cast<int>(secret.size()),
                                   reinterpret_cast<const unsigned char*>(message.data()),
                                   message.size(), tag.data(), &tag_bytes);
  HERALD_ASSERT(done != nullptr && tag_bytes == kHandshakeProofBytes, "HMAC-SHA256 failed");
  return {reinterpret_cast<const char*>(tag.data()), tag_bytes};
}

bool proof_matches(std::string_view expected, std::string_view received) {
  if (expected.size() != received.size()) {
    return false;
  }
  return CRYPTO_memcmp(expected.data(), received.data(), expected.size()) == 0;
}

}  // namespace herald::server
