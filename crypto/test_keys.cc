#include "crypto/test_keys.h"

#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <utility>

#include "base/assert.h"
#include "crypto/openssl_util.h"

namespace herald::crypto::testing {

namespace {

PkeyPtr generate(const char* type, const char* curve, int rsa_bits) {
  const PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  HERALD_ASSERT(ctx != nullptr && EVP_PKEY_keygen_init(ctx.get()) == 1, "keygen init");
  if (curve != nullptr) {
    HERALD_ASSERT(EVP_PKEY_CTX_set_group_name(ctx.get(), curve) == 1, "curve");
  }
  if (rsa_bits > 0) {
    HERALD_ASSERT(EVP_PKEY_CTX_set_rsa_keygen_bits(ctx.get(), rsa_bits) == 1, "rsa bits");
  }
  EVP_PKEY* key = nullptr;
  HERALD_ASSERT(EVP_PKEY_generate(ctx.get(), &key) == 1, "keygen");
  return PkeyPtr(key);
}

std::string pem_of(EVP_PKEY* key, const EVP_CIPHER* cipher, const std::string& password) {
  const BioPtr bio(BIO_new(BIO_s_mem()));
  auto* pass =
      cipher == nullptr
          ? nullptr
          : reinterpret_cast<unsigned char*>(const_cast<char*>(password.data()));  // NOLINT
  HERALD_ASSERT(PEM_write_bio_PrivateKey(bio.get(), key, cipher, pass,
                                         static_cast<int>(password.size()), nullptr, nullptr) == 1,
                "PEM write");
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return {data, static_cast<std::size_t>(size)};
}

// Validity of a self-signed test certificate, in seconds.
constexpr long kCertificateLifetimeSeconds = 24L * 3600;

using X509Ptr = std::unique_ptr<X509, OpensslDeleter<&X509_free>>;
using ExtensionPtr = std::unique_ptr<X509_EXTENSION, OpensslDeleter<&X509_EXTENSION_free>>;

}  // namespace

std::string rsa_private_pem(int bits) {
  return pem_of(generate("RSA", nullptr, bits).get(), nullptr, "");
}

std::string ec_private_pem(const char* curve) {
  return pem_of(generate("EC", curve, 0).get(), nullptr, "");
}

std::string ed25519_private_pem() {
  return pem_of(generate("ED25519", nullptr, 0).get(), nullptr, "");
}

std::string encrypted_p256_pem(const std::string& password) {
  return pem_of(generate("EC", "P-256", 0).get(), EVP_aes_256_cbc(), password);
}

std::string public_pem_of(const std::string& private_pem) {
  const BioPtr in(BIO_new_mem_buf(private_pem.data(), static_cast<int>(private_pem.size())));
  const PkeyPtr key(PEM_read_bio_PrivateKey(in.get(), nullptr, nullptr, nullptr));
  HERALD_ASSERT(key != nullptr, "PEM read");
  const BioPtr out(BIO_new(BIO_s_mem()));
  HERALD_ASSERT(PEM_write_bio_PUBKEY(out.get(), key.get()) == 1, "PEM write");
  char* data = nullptr;
  const long size = BIO_get_mem_data(out.get(), &data);
  return {data, static_cast<std::size_t>(size)};
}

SelfSignedCertificate self_signed_loopback_certificate(const std::string& common_name) {
  const PkeyPtr key = generate("EC", "P-256", 0);
  const X509Ptr cert(X509_new());
  HERALD_ASSERT(cert != nullptr, "X509_new");
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), kCertificateLifetimeSeconds);
  X509_set_pubkey(cert.get(), key.get());
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1,
                             0);
  X509_set_issuer_name(cert.get(), name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert.get(), cert.get(), nullptr, nullptr, 0);
  for (const auto& [nid, value] : {std::pair{NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost"},
                                   std::pair{NID_basic_constraints, "critical,CA:TRUE"}}) {
    const ExtensionPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value));
    HERALD_ASSERT(ext != nullptr && X509_add_ext(cert.get(), ext.get(), -1) == 1,
                  "certificate extension");
  }
  HERALD_ASSERT(X509_sign(cert.get(), key.get(), EVP_sha256()) != 0, "certificate signature");
  const BioPtr out(BIO_new(BIO_s_mem()));
  HERALD_ASSERT(out != nullptr && PEM_write_bio_X509(out.get(), cert.get()) == 1, "PEM write");
  char* data = nullptr;
  const long size = BIO_get_mem_data(out.get(), &data);
  return {pem_of(key.get(), nullptr, ""), std::string(data, static_cast<std::size_t>(size))};
}

}  // namespace herald::crypto::testing
