#include "crypto/test_keys.h"

#include <openssl/pem.h>
#include <openssl/rsa.h>

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

}  // namespace herald::crypto::testing
