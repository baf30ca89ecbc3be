// TlsServerContext: the certificate chain and key the client port serves HTTPS and WSS with
// (docs/operations.md, "TLS"), reloadable while connections are open.
//
// A context is built from two PEM files: the certificate chain (the server's certificate first,
// then the intermediates, as a CA hands them out) and the private key of the first certificate.
// Loading refuses a key file that every user of the machine may read, a chain or key that does
// not parse, and a key that does not belong to the certificate. reload() builds a new context from
// the same files and, only when that succeeds, makes it the one new handshakes use; connections
// already open keep the context they started with (each holds it) until they close. A reload that
// fails leaves the current context in place.
//
// Thread-safety: every method may be called from any thread at any time.
// OpenSSL (through Asio's ssl::context) stays in tls.cc and http_server.cc.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "base/status.h"

namespace boost::asio::ssl {
class context;
}  // namespace boost::asio::ssl

namespace herald::server {

// The oldest protocol version a handshake may settle on.
enum class TlsMinVersion : std::uint8_t { kTls12, kTls13 };

// "1.2" or "1.3"; kInvalidArgument otherwise.
[[nodiscard]] Result<TlsMinVersion> parse_tls_min_version(std::string_view text);

// A certificate-chain or key file larger than this is refused (it is not one).
inline constexpr std::size_t kMaxTlsFileBytes = 1024 * 1024;
// A TLS handshake on the client port must complete within this time, or the connection closes.
inline constexpr std::uint32_t kTlsHandshakeTimeoutMs = 10'000;

struct TlsServerFiles {
  std::string cert_file;  // PEM: the server's certificate, then its intermediates
  std::string key_file;   // PEM: the private key of the server's certificate; not world-readable
  TlsMinVersion min_version = TlsMinVersion::kTls12;
};

class TlsServerContext {
 public:
  // Builds the first context from `files`. Errors: kNotFound when a file cannot be read;
  // kFailedPrecondition when the key file is readable by every user; kInvalidArgument when a file
  // is larger than kMaxTlsFileBytes, does not parse, or the key does not match the certificate.
  // Every message names the file, never a key's bytes.
  [[nodiscard]] static Result<std::shared_ptr<TlsServerContext>> load(TlsServerFiles files);

  // Reads the files again and, when they make a valid context, installs it for new handshakes.
  // Errors as load(); on an error the current context stays.
  [[nodiscard]] Status reload();

  // The context new handshakes use. Never null. A connection keeps the pointer it was given.
  [[nodiscard]] std::shared_ptr<boost::asio::ssl::context> current() const;
  // "sha256:<hex>" of the current context's server certificate: what a reload changed.
  [[nodiscard]] std::string fingerprint() const;
  [[nodiscard]] const TlsServerFiles& files() const { return files_; }

  TlsServerContext(TlsServerFiles files, std::shared_ptr<boost::asio::ssl::context> context,
                   std::string fingerprint);

 private:
  const TlsServerFiles files_;
  mutable std::mutex mu_;
  std::shared_ptr<boost::asio::ssl::context> context_;  // guarded by mu_
  std::string fingerprint_;                             // guarded by mu_
};

}  // namespace herald::server
