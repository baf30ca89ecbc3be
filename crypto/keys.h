// Asymmetric keys for Herald's signatures and key agreement: P-256 (ES256, ECDH for Web Push,
// VAPID) and RSA (RS256, the FCM service account).
//
// Where keys come from: an APNs signing key (.p8) and an FCM service account's "private_key" are
// PKCS#8 PEM ("BEGIN PRIVATE KEY"); a VAPID key is a P-256 key Herald generates (generate_p256)
// and stores as PKCS#8 PEM; a Web Push subscription's p256dh is a raw uncompressed P-256 point;
// verifiers take SubjectPublicKeyInfo PEM ("BEGIN PUBLIC KEY") or raw public numbers (JWK).
//
// Contract: a PublicKey or PrivateKey always holds a usable key of a supported kind (P-256 or RSA
// of at least kMinRsaKeyBits); every factory checks that and returns kInvalidArgument otherwise,
// with OpenSSL's reason appended. Encrypted PEM is refused rather than prompting for a password.
// Keys are immutable once built: copies share the key, and one key may be used from many threads
// at once (OpenSSL 3 keys are safe for concurrent reads).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "base/status.h"

struct evp_pkey_st;  // OpenSSL's EVP_PKEY, kept out of this header.

namespace herald::crypto {

// Largest PEM text accepted, in bytes; a 4096-bit RSA private key is about 3.3 KiB.
inline constexpr std::size_t kMaxPemBytes = 16 * 1024;
// Smallest RSA modulus accepted, in bits (RFC 7518 section 3.3 requires 2048 for RS256).
inline constexpr int kMinRsaKeyBits = 2048;
// Size of a P-256 private scalar, in bytes.
inline constexpr std::size_t kP256ScalarBytes = 32;
// Size of one P-256 affine coordinate, in bytes.
inline constexpr std::size_t kP256CoordinateBytes = 32;
// Size of an uncompressed P-256 point (0x04 || X || Y), in bytes.
inline constexpr std::size_t kP256PointBytes = 1 + 2 * kP256CoordinateBytes;

enum class KeyType : std::uint8_t { kEcP256, kRsa };

// "P-256" or "RSA".
[[nodiscard]] std::string_view key_type_name(KeyType type);

class PublicKey {
 public:
  // A SubjectPublicKeyInfo PEM ("BEGIN PUBLIC KEY") of a P-256 or RSA key.
  [[nodiscard]] static Result<PublicKey> from_pem(std::string_view pem);
  // An uncompressed P-256 point of kP256PointBytes bytes; refused unless it lies on the curve.
  [[nodiscard]] static Result<PublicKey> from_p256_point(std::string_view point);
  // An RSA public key from its big-endian modulus and exponent (a JWK's "n" and "e").
  [[nodiscard]] static Result<PublicKey> from_rsa_numbers(std::string_view modulus,
                                                          std::string_view exponent);

  [[nodiscard]] KeyType type() const { return type_; }
  // SubjectPublicKeyInfo PEM.
  [[nodiscard]] Result<std::string> to_pem() const;
  // The uncompressed point (kP256PointBytes); kFailedPrecondition for an RSA key.
  [[nodiscard]] Result<std::string> p256_point() const;
  // The OpenSSL key, for the .cc files of crypto/ and push/. Never null.
  [[nodiscard]] evp_pkey_st* native() const { return key_.get(); }

 private:
  PublicKey(std::shared_ptr<evp_pkey_st> key, KeyType type) : key_(std::move(key)), type_(type) {}
  // Takes ownership of `owned` (never null) and checks that it is a supported kind.
  static Result<PublicKey> adopt(evp_pkey_st* owned);
  friend class PrivateKey;
  std::shared_ptr<evp_pkey_st> key_;
  KeyType type_;
};

class PrivateKey {
 public:
  // An unencrypted PEM private key of a P-256 or RSA key: PKCS#8 ("BEGIN PRIVATE KEY", what
  // APNs and FCM hand out) or the traditional "BEGIN EC PRIVATE KEY" / "BEGIN RSA PRIVATE KEY".
  [[nodiscard]] static Result<PrivateKey> from_pem(std::string_view pem);
  // A P-256 key from its big-endian private scalar of kP256ScalarBytes (a JWK's "d"); refused
  // unless 0 < d < the group order.
  [[nodiscard]] static Result<PrivateKey> from_p256_scalar(std::string_view scalar);
  // A fresh P-256 key from OpenSSL's CSPRNG; kIOError if it fails.
  [[nodiscard]] static Result<PrivateKey> generate_p256();

  [[nodiscard]] KeyType type() const { return type_; }
  // Unencrypted PKCS#8 PEM ("BEGIN PRIVATE KEY"). The text is secret: callers store it as such.
  [[nodiscard]] Result<std::string> to_pem() const;
  // The matching public key.
  [[nodiscard]] Result<PublicKey> public_key() const;
  // The OpenSSL key, for the .cc files of crypto/ and push/. Never null.
  [[nodiscard]] evp_pkey_st* native() const { return key_.get(); }

 private:
  PrivateKey(std::shared_ptr<evp_pkey_st> key, KeyType type) : key_(std::move(key)), type_(type) {}
  std::shared_ptr<evp_pkey_st> key_;
  KeyType type_;
};

}  // namespace herald::crypto
