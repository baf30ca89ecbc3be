// OpenSSL plumbing shared by the .cc files of crypto/ and push/: owning pointers for OpenSSL
// objects and the text of OpenSSL's last error. Not part of any public header, so that code which
// includes crypto/*.h does not see OpenSSL.
//
// Thread-safety: OpenSSL's error queue is per thread; openssl_error() reads and clears the
// calling thread's queue.
#pragma once

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/param_build.h>

#include <memory>
#include <string>
#include <string_view>

namespace herald::crypto {

template <auto kFree>
struct OpensslDeleter {
  template <typename T>
  void operator()(T* p) const {
    kFree(p);
  }
};

using BioPtr = std::unique_ptr<BIO, OpensslDeleter<&BIO_free_all>>;
using BignumPtr = std::unique_ptr<BIGNUM, OpensslDeleter<&BN_free>>;
using BnCtxPtr = std::unique_ptr<BN_CTX, OpensslDeleter<&BN_CTX_free>>;
using EcGroupPtr = std::unique_ptr<EC_GROUP, OpensslDeleter<&EC_GROUP_free>>;
using EcPointPtr = std::unique_ptr<EC_POINT, OpensslDeleter<&EC_POINT_free>>;
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, OpensslDeleter<&ECDSA_SIG_free>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, OpensslDeleter<&EVP_PKEY_free>>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, OpensslDeleter<&EVP_PKEY_CTX_free>>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, OpensslDeleter<&EVP_MD_CTX_free>>;
using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, OpensslDeleter<&EVP_CIPHER_CTX_free>>;
using KdfPtr = std::unique_ptr<EVP_KDF, OpensslDeleter<&EVP_KDF_free>>;
using KdfCtxPtr = std::unique_ptr<EVP_KDF_CTX, OpensslDeleter<&EVP_KDF_CTX_free>>;
using ParamBldPtr = std::unique_ptr<OSSL_PARAM_BLD, OpensslDeleter<&OSSL_PARAM_BLD_free>>;
using ParamsPtr = std::unique_ptr<OSSL_PARAM, OpensslDeleter<&OSSL_PARAM_free>>;

// "<what>: <OpenSSL's reason for the most recent error>" (or "<what>" when the queue is empty).
// Clears the calling thread's error queue, so that a later failure does not report a stale one.
[[nodiscard]] std::string openssl_error(std::string_view what);

// Views of byte strings as OpenSSL's unsigned char buffers.
inline const unsigned char* bytes_of(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}
inline unsigned char* bytes_of(std::string& s) {
  return reinterpret_cast<unsigned char*>(s.data());
}

}  // namespace herald::crypto
