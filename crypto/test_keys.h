// Keys for tests only: generated through OpenSSL directly, so that a test can hold keys the
// production factories refuse (short RSA, other curves, encrypted PEM) as well as good ones.
#pragma once

#include <string>

namespace herald::crypto::testing {

// An unencrypted PKCS#8 PEM of a fresh RSA key of `bits`. Aborts the test binary on failure.
std::string rsa_private_pem(int bits);
// An unencrypted PKCS#8 PEM of a fresh EC key on `curve` (an OpenSSL group name, e.g. "P-384").
std::string ec_private_pem(const char* curve);
// An unencrypted PKCS#8 PEM of a fresh Ed25519 key.
std::string ed25519_private_pem();
// A fresh P-256 key as PKCS#8 PEM encrypted with AES-256-CBC under `password`.
std::string encrypted_p256_pem(const std::string& password);
// The SubjectPublicKeyInfo PEM of the private key in `private_pem`.
std::string public_pem_of(const std::string& private_pem);

// A fresh P-256 key and a certificate for it, self-signed, valid from a minute ago for a day,
// for the names 127.0.0.1 and localhost (subjectAltName) with `common_name` as its subject: what
// a test server on loopback presents. A client trusts it by loading cert_pem as its CA file.
struct SelfSignedCertificate {
  std::string key_pem;   // unencrypted PKCS#8
  std::string cert_pem;  // X.509
};
SelfSignedCertificate self_signed_loopback_certificate(const std::string& common_name);

}  // namespace herald::crypto::testing
