#include "push/webpush_crypto.h"

#include <fmt/format.h>
#include <openssl/core_names.h>
#include <openssl/rand.h>

#include "base/encoding.h"
#include "crypto/base64url.h"
#include "crypto/openssl_util.h"

namespace herald::push {

namespace {

using crypto::bytes_of;
using crypto::openssl_error;

// RFC 8291 section 3.4 and RFC 8188 section 2.2: the HKDF info strings, each with its final NUL.
constexpr std::string_view kKeyInfoLabel{"WebPush: info\0", 14};
constexpr std::string_view kCekInfo{"Content-Encoding: aes128gcm\0", 28};
constexpr std::string_view kNonceInfo{"Content-Encoding: nonce\0", 24};
// Sizes of the derived values, in bytes.
constexpr std::size_t kIkmBytes = 32;
constexpr std::size_t kCekBytes = 16;
constexpr std::size_t kNonceBytes = 12;
// Offsets in the aes128gcm header.
constexpr std::size_t kRecordSizeOffset = kWebPushSaltBytes;
constexpr std::size_t kKeyIdLengthOffset = kRecordSizeOffset + sizeof(std::uint32_t);
constexpr std::size_t kKeyIdOffset = kKeyIdLengthOffset + 1;
// The delimiter after the plaintext of the last (here: only) record; 0x01 ends any other.
constexpr char kFinalRecordDelimiter = 0x02;
constexpr char kRecordDelimiter = 0x01;

static_assert(kWebPushHeaderBytes == 86);
static_assert(kWebPushMaxPlaintextBytes + 1 + kWebPushTagBytes <= kWebPushRecordSizeBytes,
              "the largest record Herald sends fits the record size it declares");

// HKDF-SHA256 (RFC 5869), extract then expand.
Result<std::string> hkdf_sha256(std::string_view salt, std::string_view ikm, std::string_view info,
                                std::size_t length) {
  const crypto::KdfPtr kdf(EVP_KDF_fetch(nullptr, "HKDF", nullptr));
  const crypto::KdfCtxPtr ctx(kdf == nullptr ? nullptr : EVP_KDF_CTX_new(kdf.get()));
  if (ctx == nullptr) {
    return Status::io_error(openssl_error("fetching HKDF"));
  }
  // OSSL_PARAM wants non-const pointers; HKDF only reads these.
  char digest[] = "SHA256";
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<char*>(ikm.data()),
                                        ikm.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, const_cast<char*>(salt.data()),
                                        salt.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, const_cast<char*>(info.data()),
                                        info.size()),
      OSSL_PARAM_construct_end()};
  std::string out(length, '\0');
  if (EVP_KDF_derive(ctx.get(), bytes_of(out), out.size(), params) != 1) {
    return Status::io_error(openssl_error("HKDF-SHA256"));
  }
  return out;
}

// The ECDH shared secret (the x coordinate of the product, 32 bytes).
Result<std::string> ecdh(const crypto::PrivateKey& own, const crypto::PublicKey& peer) {
  const crypto::PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, own.native(), nullptr));
  std::size_t size = 0;
  if (ctx == nullptr || EVP_PKEY_derive_init(ctx.get()) != 1 ||
      EVP_PKEY_derive_set_peer(ctx.get(), peer.native()) != 1 ||
      EVP_PKEY_derive(ctx.get(), nullptr, &size) != 1) {
    return Status::io_error(openssl_error("preparing ECDH"));
  }
  std::string secret(size, '\0');
  if (EVP_PKEY_derive(ctx.get(), bytes_of(secret), &size) != 1) {
    return Status::io_error(openssl_error("ECDH"));
  }
  secret.resize(size);
  return secret;
}

struct ContentKeys {
  std::string cek;
  std::string nonce;
};

// RFC 8291 section 3.4: both sides run this with the same inputs.
Result<ContentKeys> derive_content_keys(std::string_view ecdh_secret, std::string_view auth_secret,
                                        std::string_view ua_point, std::string_view as_point,
                                        std::string_view salt) {
  std::string key_info(kKeyInfoLabel);
  key_info.append(ua_point).append(as_point);
  HERALD_ASSIGN_OR_RETURN(const std::string ikm,
                          hkdf_sha256(auth_secret, ecdh_secret, key_info, kIkmBytes));
  HERALD_ASSIGN_OR_RETURN(std::string cek, hkdf_sha256(salt, ikm, kCekInfo, kCekBytes));
  HERALD_ASSIGN_OR_RETURN(std::string nonce, hkdf_sha256(salt, ikm, kNonceInfo, kNonceBytes));
  return ContentKeys{.cek = std::move(cek), .nonce = std::move(nonce)};
}

// AES-128-GCM of `plaintext`, returned as ciphertext || tag.
Result<std::string> seal(const ContentKeys& keys, std::string_view plaintext) {
  const crypto::CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  std::string out(plaintext.size() + kWebPushTagBytes, '\0');
  int written = 0;
  int final_bytes = 0;
  if (ctx == nullptr ||
      EVP_EncryptInit_ex(ctx.get(), EVP_aes_128_gcm(), nullptr, bytes_of(keys.cek),
                         bytes_of(keys.nonce)) != 1 ||
      EVP_EncryptUpdate(ctx.get(), bytes_of(out), &written, bytes_of(plaintext),
                        static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), bytes_of(out) + written, &final_bytes) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kWebPushTagBytes,
                          bytes_of(out) + plaintext.size()) != 1) {
    return Status::io_error(openssl_error("AES-128-GCM encryption"));
  }
  HERALD_ASSERT(static_cast<std::size_t>(written + final_bytes) == plaintext.size(),
                "GCM is a stream mode");
  return out;
}

// The plaintext of ciphertext || tag, or kInvalidArgument when the tag does not authenticate.
Result<std::string> open(const ContentKeys& keys, std::string_view sealed) {
  HERALD_ASSERT(sealed.size() >= kWebPushTagBytes, "caller checks the record length");
  const std::string_view ciphertext = sealed.substr(0, sealed.size() - kWebPushTagBytes);
  std::string tag(sealed.substr(ciphertext.size()));
  const crypto::CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  std::string out(ciphertext.size(), '\0');
  int written = 0;
  int final_bytes = 0;
  if (ctx == nullptr ||
      EVP_DecryptInit_ex(ctx.get(), EVP_aes_128_gcm(), nullptr, bytes_of(keys.cek),
                         bytes_of(keys.nonce)) != 1 ||
      EVP_DecryptUpdate(ctx.get(), bytes_of(out), &written, bytes_of(ciphertext),
                        static_cast<int>(ciphertext.size())) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kWebPushTagBytes, bytes_of(tag)) != 1) {
    return Status::io_error(openssl_error("AES-128-GCM decryption"));
  }
  if (EVP_DecryptFinal_ex(ctx.get(), bytes_of(out) + written, &final_bytes) != 1) {
    static_cast<void>(openssl_error(""));
    return Status::invalid_argument(
        "the record's authentication tag does not verify: wrong keys or an altered body");
  }
  return out;
}

Status check_secrets(const WebPushSenderSecrets& secrets) {
  if (secrets.ephemeral.type() != crypto::KeyType::kEcP256) {
    return Status::invalid_argument("the ephemeral sender key must be a P-256 key");
  }
  if (secrets.salt.size() != kWebPushSaltBytes) {
    return Status::invalid_argument(fmt::format("the salt has {} bytes; it must have {}",
                                                secrets.salt.size(), kWebPushSaltBytes));
  }
  return Status::ok_status();
}

// Strips RFC 8188 padding from a decrypted final record: trailing zeros, then the delimiter.
Result<std::string> unpad(std::string record) {
  const std::size_t delimiter = record.find_last_not_of('\0');
  if (delimiter == std::string::npos) {
    return Status::invalid_argument("the record has no padding delimiter (all zero)");
  }
  if (record[delimiter] == kRecordDelimiter) {
    return Status::invalid_argument(
        "the record's delimiter 0x01 marks a record that is not the last; Web Push sends one");
  }
  if (record[delimiter] != kFinalRecordDelimiter) {
    return Status::invalid_argument(
        fmt::format("the record's padding delimiter is 0x{:02x}; the last record ends with 0x02",
                    static_cast<unsigned char>(record[delimiter])));
  }
  record.resize(delimiter);
  return record;
}

}  // namespace

Result<WebPushSubscriptionKeys> parse_subscription_keys(std::string_view p256dh_b64url,
                                                        std::string_view auth_b64url) {
  Result<std::string> point = crypto::base64url_decode(p256dh_b64url);
  if (!point.ok()) {
    return Status::invalid_argument("p256dh: " + point.status().message());
  }
  Result<crypto::PublicKey> key = crypto::PublicKey::from_p256_point(*point);
  if (!key.ok()) {
    return Status::invalid_argument("p256dh: " + key.status().message());
  }
  Result<std::string> auth = crypto::base64url_decode(auth_b64url);
  if (!auth.ok()) {
    return Status::invalid_argument("auth: " + auth.status().message());
  }
  if (auth->size() != kWebPushAuthSecretBytes) {
    return Status::invalid_argument(fmt::format("auth: the secret has {} bytes; it must have {}",
                                                auth->size(), kWebPushAuthSecretBytes));
  }
  return WebPushSubscriptionKeys{.ua_public = std::move(key).value(),
                                 .ua_point = std::move(point).value(),
                                 .auth_secret = std::move(auth).value()};
}

Result<WebPushSenderSecrets> fresh_sender_secrets() {
  HERALD_ASSIGN_OR_RETURN(crypto::PrivateKey ephemeral, crypto::PrivateKey::generate_p256());
  std::string salt(kWebPushSaltBytes, '\0');
  if (RAND_bytes(bytes_of(salt), static_cast<int>(salt.size())) != 1) {
    return Status::io_error(openssl_error("the random generator failed to produce a salt"));
  }
  return WebPushSenderSecrets{.ephemeral = std::move(ephemeral), .salt = std::move(salt)};
}

Result<std::string> encrypt_webpush(const WebPushSubscriptionKeys& subscription,
                                    std::string_view plaintext,
                                    const WebPushSenderSecrets& secrets) {
  if (plaintext.size() > kWebPushMaxPlaintextBytes) {
    return Status::resource_exhausted(
        fmt::format("a Web Push plaintext has {} bytes; at most {} fit a {}-byte body",
                    plaintext.size(), kWebPushMaxPlaintextBytes, kWebPushMaxBodyBytes));
  }
  std::string record(plaintext);
  record.push_back(kFinalRecordDelimiter);
  return encrypt_webpush_record(subscription, record, secrets);
}

Result<std::string> encrypt_webpush_record(const WebPushSubscriptionKeys& subscription,
                                           std::string_view record,
                                           const WebPushSenderSecrets& secrets) {
  if (record.size() > kWebPushMaxPlaintextBytes + 1) {
    return Status::resource_exhausted(fmt::format("a Web Push record has {} bytes; at most {}",
                                                  record.size(), kWebPushMaxPlaintextBytes + 1));
  }
  HERALD_RETURN_IF_ERROR(check_secrets(secrets));
  HERALD_ASSIGN_OR_RETURN(const crypto::PublicKey as_public, secrets.ephemeral.public_key());
  HERALD_ASSIGN_OR_RETURN(const std::string as_point, as_public.p256_point());
  HERALD_ASSIGN_OR_RETURN(const std::string shared,
                          ecdh(secrets.ephemeral, subscription.ua_public));
  HERALD_ASSIGN_OR_RETURN(const ContentKeys keys,
                          derive_content_keys(shared, subscription.auth_secret,
                                              subscription.ua_point, as_point, secrets.salt));
  HERALD_ASSIGN_OR_RETURN(const std::string sealed, seal(keys, record));
  std::string body = secrets.salt;
  put_fixed32_be(body, kWebPushRecordSizeBytes);
  body.push_back(static_cast<char>(crypto::kP256PointBytes));
  body.append(as_point);
  HERALD_ASSERT(body.size() == kWebPushHeaderBytes, "aes128gcm header layout");
  body.append(sealed);
  HERALD_ASSERT(body.size() <= kWebPushMaxBodyBytes, "the bounds above keep the body in bounds");
  return body;
}

Result<std::string> decrypt_webpush(std::string_view body, const crypto::PrivateKey& ua_private,
                                    std::string_view auth_secret) {
  if (body.size() > kWebPushMaxBodyBytes) {
    return Status::resource_exhausted(
        fmt::format("a Web Push body has {} bytes; at most {} are accepted", body.size(),
                    kWebPushMaxBodyBytes));
  }
  if (auth_secret.size() != kWebPushAuthSecretBytes ||
      ua_private.type() != crypto::KeyType::kEcP256) {
    return Status::invalid_argument("the receiver needs a P-256 key and a 16-byte auth secret");
  }
  if (body.size() < kKeyIdOffset ||
      body.size() < kKeyIdOffset + static_cast<unsigned char>(body[kKeyIdLengthOffset])) {
    return Status::invalid_argument(
        fmt::format("the aes128gcm header is truncated: the body has {} bytes", body.size()));
  }
  const std::size_t key_id_bytes = static_cast<unsigned char>(body[kKeyIdLengthOffset]);
  if (key_id_bytes != crypto::kP256PointBytes) {
    return Status::invalid_argument(
        fmt::format("the key id has {} bytes; Web Push puts the sender's {}-byte public key there",
                    key_id_bytes, crypto::kP256PointBytes));
  }
  const std::string_view salt = body.substr(0, kWebPushSaltBytes);
  const std::uint32_t record_size = get_fixed32_be(body.substr(kRecordSizeOffset));
  const std::string_view as_point = body.substr(kKeyIdOffset, key_id_bytes);
  const std::string_view record = body.substr(kWebPushHeaderBytes);
  if (record_size < kWebPushMinRecordSizeBytes) {
    return Status::invalid_argument(
        fmt::format("the declared record size {} is below the minimum {}", record_size,
                    kWebPushMinRecordSizeBytes));
  }
  if (record.size() > record_size) {
    return Status::invalid_argument(fmt::format(
        "the record has {} bytes, more than the declared record size {}; Web Push sends one record",
        record.size(), record_size));
  }
  if (record.size() < 1 + kWebPushTagBytes) {
    return Status::invalid_argument(
        fmt::format("the record is truncated: {} bytes, at least {} are needed", record.size(),
                    1 + kWebPushTagBytes));
  }
  Result<crypto::PublicKey> as_public = crypto::PublicKey::from_p256_point(as_point);
  if (!as_public.ok()) {
    return Status::invalid_argument("the key id: " + as_public.status().message());
  }
  HERALD_ASSIGN_OR_RETURN(const crypto::PublicKey ua_public, ua_private.public_key());
  HERALD_ASSIGN_OR_RETURN(const std::string ua_point, ua_public.p256_point());
  HERALD_ASSIGN_OR_RETURN(const std::string shared, ecdh(ua_private, *as_public));
  HERALD_ASSIGN_OR_RETURN(const ContentKeys keys,
                          derive_content_keys(shared, auth_secret, ua_point, as_point, salt));
  HERALD_ASSIGN_OR_RETURN(std::string padded, open(keys, record));
  return unpad(std::move(padded));
}

}  // namespace herald::push
