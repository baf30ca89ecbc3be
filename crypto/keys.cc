#include "crypto/keys.h"

#include <fmt/format.h>
#include <openssl/core_names.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <array>
#include <climits>

#include "crypto/openssl_util.h"

namespace herald::crypto {

namespace {

using SecretBignumPtr = std::unique_ptr<BIGNUM, OpensslDeleter<&BN_clear_free>>;

// Longest curve name OpenSSL reports, in bytes (with room to spare).
constexpr std::size_t kMaxGroupNameBytes = 64;
constexpr unsigned char kUncompressedPointTag = 0x04;
constexpr std::string_view kP256GroupName = SN_X9_62_prime256v1;

std::shared_ptr<evp_pkey_st> share(PkeyPtr key) {
  return {key.release(), OpensslDeleter<&EVP_PKEY_free>()};
}

// Which supported kind `key` is, or why it is not one.
Result<KeyType> classify(EVP_PKEY* key) {
  const int id = EVP_PKEY_get_base_id(key);
  if (id == EVP_PKEY_EC) {
    std::array<char, kMaxGroupNameBytes> group{};
    std::size_t group_bytes = 0;
    if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group.data(), group.size(),
                                       &group_bytes) != 1) {
      return Status::invalid_argument(openssl_error("an EC key without a named curve"));
    }
    const std::string_view name(group.data(), group_bytes);
    if (name != kP256GroupName) {
      return Status::invalid_argument(
          fmt::format("an EC key on curve {}; only P-256 (prime256v1) is supported", name));
    }
    return KeyType::kEcP256;
  }
  if (id == EVP_PKEY_RSA) {
    const int bits = EVP_PKEY_get_bits(key);
    if (bits < kMinRsaKeyBits) {
      return Status::invalid_argument(
          fmt::format("an RSA key of {} bits; at least {} are required", bits, kMinRsaKeyBits));
    }
    return KeyType::kRsa;
  }
  const char* type_name = EVP_PKEY_get0_type_name(key);
  return Status::invalid_argument(
      fmt::format("a key of type {}; only P-256 and RSA keys are supported",
                  type_name == nullptr ? "unknown" : type_name));
}

Status check_pem_size(std::string_view pem) {
  if (pem.size() > kMaxPemBytes) {
    return Status::resource_exhausted(
        fmt::format("a PEM key of {} bytes; at most {} are accepted", pem.size(), kMaxPemBytes));
  }
  return Status::ok_status();
}

BioPtr read_bio(std::string_view text) {
  return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

// Refuses to decrypt: Herald keys are stored unencrypted (access to the file is the control), and
// OpenSSL's default would prompt on the terminal.
int refuse_password(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*u*/) {
  return -1;
}

Result<std::string> drain(BIO* bio) {
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  if (size <= 0 || data == nullptr) {
    return Status::io_error(openssl_error("writing a PEM key"));
  }
  return std::string(data, static_cast<std::size_t>(size));
}

// Builds a key of `type_name` ("EC", "RSA") from `params`; `selection` says which parts.
Result<PkeyPtr> key_from_params(const char* type_name, OSSL_PARAM_BLD* bld, int selection) {
  const ParamsPtr params(OSSL_PARAM_BLD_to_param(bld));
  const PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, type_name, nullptr));
  if (params == nullptr || ctx == nullptr || EVP_PKEY_fromdata_init(ctx.get()) != 1) {
    return Status::io_error(openssl_error("preparing a key import"));
  }
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_fromdata(ctx.get(), &raw, selection, params.get()) != 1) {
    return Status::invalid_argument(openssl_error("the key numbers are not a valid key"));
  }
  return PkeyPtr(raw);
}

}  // namespace

std::string_view key_type_name(KeyType type) {
  switch (type) {
    case KeyType::kEcP256: return "P-256";
    case KeyType::kRsa: return "RSA";
  }
  return "unknown";
}

Result<PublicKey> PublicKey::adopt(evp_pkey_st* owned) {
  HERALD_ASSERT(owned != nullptr, "adopting a null key");
  PkeyPtr key(owned);
  HERALD_ASSIGN_OR_RETURN(const KeyType type, classify(key.get()));
  return PublicKey(share(std::move(key)), type);
}

Result<PublicKey> PublicKey::from_pem(std::string_view pem) {
  HERALD_RETURN_IF_ERROR(check_pem_size(pem));
  const BioPtr bio = read_bio(pem);
  PkeyPtr key(PEM_read_bio_PUBKEY(bio.get(), nullptr, refuse_password, nullptr));
  if (key == nullptr) {
    return Status::invalid_argument(
        openssl_error("not a PEM public key (expected \"BEGIN PUBLIC KEY\")"));
  }
  return adopt(key.release());
}

Result<PublicKey> PublicKey::from_p256_point(std::string_view point) {
  if (point.size() != kP256PointBytes ||
      static_cast<unsigned char>(point[0]) != kUncompressedPointTag) {
    return Status::invalid_argument(
        fmt::format("a P-256 public key is an uncompressed point of {} bytes starting with 0x04; "
                    "got {} bytes",
                    kP256PointBytes, point.size()));
  }
  const ParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (bld == nullptr ||
      OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, kP256GroupName.data(),
                                      0) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                       point.size()) != 1) {
    return Status::io_error(openssl_error("preparing a P-256 point import"));
  }
  HERALD_ASSIGN_OR_RETURN(PkeyPtr key, key_from_params("EC", bld.get(), EVP_PKEY_PUBLIC_KEY));
  // The import decodes the point; the check makes "on the curve" explicit rather than assumed.
  const PkeyCtxPtr check(EVP_PKEY_CTX_new_from_pkey(nullptr, key.get(), nullptr));
  if (check == nullptr || EVP_PKEY_public_check(check.get()) != 1) {
    return Status::invalid_argument(openssl_error("the point is not on the P-256 curve"));
  }
  return adopt(key.release());
}

Result<PublicKey> PublicKey::from_rsa_numbers(std::string_view modulus, std::string_view exponent) {
  if (modulus.empty() || exponent.empty() || modulus.size() > INT_MAX / 2 ||
      exponent.size() > INT_MAX / 2) {
    return Status::invalid_argument("an RSA public key needs a modulus and an exponent");
  }
  const BignumPtr n(BN_bin2bn(bytes_of(modulus), static_cast<int>(modulus.size()), nullptr));
  const BignumPtr e(BN_bin2bn(bytes_of(exponent), static_cast<int>(exponent.size()), nullptr));
  const ParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (n == nullptr || e == nullptr || bld == nullptr ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e.get()) != 1) {
    return Status::io_error(openssl_error("preparing an RSA key import"));
  }
  HERALD_ASSIGN_OR_RETURN(PkeyPtr key, key_from_params("RSA", bld.get(), EVP_PKEY_PUBLIC_KEY));
  return adopt(key.release());
}

Result<std::string> PublicKey::to_pem() const {
  const BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || PEM_write_bio_PUBKEY(bio.get(), key_.get()) != 1) {
    return Status::io_error(openssl_error("writing a PEM public key"));
  }
  return drain(bio.get());
}

Result<std::string> PublicKey::p256_point() const {
  if (type_ != KeyType::kEcP256) {
    return Status::failed_precondition(
        fmt::format("a {} key has no P-256 point", key_type_name(type_)));
  }
  BIGNUM* x_raw = nullptr;
  BIGNUM* y_raw = nullptr;
  const int x_ok = EVP_PKEY_get_bn_param(key_.get(), OSSL_PKEY_PARAM_EC_PUB_X, &x_raw);
  const int y_ok = EVP_PKEY_get_bn_param(key_.get(), OSSL_PKEY_PARAM_EC_PUB_Y, &y_raw);
  const BignumPtr x(x_raw);
  const BignumPtr y(y_raw);
  std::string point(kP256PointBytes, '\0');
  point[0] = static_cast<char>(kUncompressedPointTag);
  if (x_ok != 1 || y_ok != 1 ||
      BN_bn2binpad(x.get(), bytes_of(point) + 1, kP256CoordinateBytes) !=
          static_cast<int>(kP256CoordinateBytes) ||
      BN_bn2binpad(y.get(), bytes_of(point) + 1 + kP256CoordinateBytes, kP256CoordinateBytes) !=
          static_cast<int>(kP256CoordinateBytes)) {
    return Status::io_error(openssl_error("reading a P-256 point"));
  }
  return point;
}

Result<PrivateKey> PrivateKey::from_pem(std::string_view pem) {
  HERALD_RETURN_IF_ERROR(check_pem_size(pem));
  const BioPtr bio = read_bio(pem);
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, refuse_password, nullptr));
  if (key == nullptr) {
    return Status::invalid_argument(openssl_error(
        "not an unencrypted PEM private key (expected \"BEGIN PRIVATE KEY\", PKCS#8)"));
  }
  HERALD_ASSIGN_OR_RETURN(const KeyType type, classify(key.get()));
  return PrivateKey(share(std::move(key)), type);
}

Result<PrivateKey> PrivateKey::from_p256_scalar(std::string_view scalar) {
  if (scalar.size() != kP256ScalarBytes) {
    return Status::invalid_argument(fmt::format("a P-256 private scalar has {} bytes; got {}",
                                                kP256ScalarBytes, scalar.size()));
  }
  const SecretBignumPtr d(BN_bin2bn(bytes_of(scalar), static_cast<int>(scalar.size()), nullptr));
  const EcGroupPtr group(EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1));
  const BnCtxPtr bn_ctx(BN_CTX_new());
  if (d == nullptr || group == nullptr || bn_ctx == nullptr) {
    return Status::io_error(openssl_error("preparing a P-256 scalar import"));
  }
  if (BN_is_zero(d.get()) || BN_cmp(d.get(), EC_GROUP_get0_order(group.get())) >= 0) {
    return Status::invalid_argument("a P-256 private scalar must lie in [1, order - 1]");
  }
  // OpenSSL 3.0 does not derive the public point on import, so compute it: Q = d * G.
  const EcPointPtr q(EC_POINT_new(group.get()));
  std::string point(kP256PointBytes, '\0');
  if (q == nullptr ||
      EC_POINT_mul(group.get(), q.get(), d.get(), nullptr, nullptr, bn_ctx.get()) != 1 ||
      EC_POINT_point2oct(group.get(), q.get(), POINT_CONVERSION_UNCOMPRESSED, bytes_of(point),
                         point.size(), bn_ctx.get()) != kP256PointBytes) {
    return Status::io_error(openssl_error("computing a P-256 public point"));
  }
  const ParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (bld == nullptr ||
      OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, kP256GroupName.data(),
                                      0) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_PRIV_KEY, d.get()) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                       point.size()) != 1) {
    return Status::io_error(openssl_error("preparing a P-256 key import"));
  }
  HERALD_ASSIGN_OR_RETURN(PkeyPtr key, key_from_params("EC", bld.get(), EVP_PKEY_KEYPAIR));
  return PrivateKey(share(std::move(key)), KeyType::kEcP256);
}

Result<PrivateKey> PrivateKey::generate_p256() {
  const PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  EVP_PKEY* raw = nullptr;
  if (ctx == nullptr || EVP_PKEY_keygen_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_group_name(ctx.get(), kP256GroupName.data()) != 1 ||
      EVP_PKEY_generate(ctx.get(), &raw) != 1) {
    return Status::io_error(openssl_error("generating a P-256 key"));
  }
  return PrivateKey(share(PkeyPtr(raw)), KeyType::kEcP256);
}

Result<std::string> PrivateKey::to_pem() const {
  const BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr ||
      PEM_write_bio_PrivateKey(bio.get(), key_.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return Status::io_error(openssl_error("writing a PEM private key"));
  }
  return drain(bio.get());
}

Result<PublicKey> PrivateKey::public_key() const {
  // A round trip through SubjectPublicKeyInfo DER leaves exactly the public half.
  unsigned char* der = nullptr;
  const int der_bytes = i2d_PUBKEY(key_.get(), &der);
  if (der_bytes <= 0) {
    return Status::io_error(openssl_error("extracting a public key"));
  }
  const unsigned char* cursor = der;
  PkeyPtr key(d2i_PUBKEY(nullptr, &cursor, der_bytes));
  OPENSSL_free(der);
  if (key == nullptr) {
    return Status::io_error(openssl_error("extracting a public key"));
  }
  return PublicKey::adopt(key.release());
}

}  // namespace herald::crypto
