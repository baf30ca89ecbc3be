#include "server/tls.h"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <array>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ssl/context.hpp>
#include <filesystem>
#include <fstream>
#include <utility>

#include "base/assert.h"

namespace herald::server {

namespace asio = boost::asio;
namespace ssl = asio::ssl;

namespace {

// The bytes of `path`, which names the configuration key `what`. Errors: kNotFound when it cannot
// be read, kInvalidArgument when it is empty or larger than kMaxTlsFileBytes.
Result<std::string> read_tls_file(const std::string& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in.good()) return Status::not_found(fmt::format("{} {} cannot be read", what, path));
  std::string bytes(kMaxTlsFileBytes + 1, '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (in.bad()) return Status::not_found(fmt::format("{} {} cannot be read", what, path));
  bytes.resize(static_cast<std::size_t>(in.gcount()));
  if (bytes.empty()) return Status::invalid_argument(fmt::format("{} {} is empty", what, path));
  if (bytes.size() > kMaxTlsFileBytes) {
    return Status::invalid_argument(
        fmt::format("{} {} is larger than {} bytes", what, path, kMaxTlsFileBytes));
  }
  return bytes;
}

// A private key every user may read is no longer private: refused, like the other key files.
Status refuse_world_readable(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::perms perms = fs::status(path, ec).permissions();
  if (ec) return Status::not_found(fmt::format("tls.key_file {} cannot be read", path));
  if ((perms & fs::perms::others_read) != fs::perms::none) {
    return Status::failed_precondition(fmt::format(
        "tls.key_file {} is readable by every user; chmod 600 it (or 640 for a group)", path));
  }
  return Status::ok_status();
}

// "sha256:<hex>" of the context's certificate, or "" when it holds none.
std::string certificate_fingerprint(ssl::context& context) {
  X509* cert = SSL_CTX_get0_certificate(context.native_handle());
  if (cert == nullptr) return "";
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int length = 0;
  if (X509_digest(cert, EVP_sha256(), digest.data(), &length) != 1) return "";
  std::string out = "sha256:";
  for (unsigned int i = 0; i < length; ++i) out += fmt::format("{:02x}", digest[i]);
  return out;
}

struct Built {
  std::shared_ptr<ssl::context> context;
  std::string fingerprint;
};

// A server context holding the files' certificate chain and key, for min_version and later.
Result<Built> build_context(const TlsServerFiles& files) {
  HERALD_RETURN_IF_ERROR(refuse_world_readable(files.key_file));
  HERALD_ASSIGN_OR_RETURN(const std::string chain, read_tls_file(files.cert_file, "tls.cert_file"));
  HERALD_ASSIGN_OR_RETURN(std::string key, read_tls_file(files.key_file, "tls.key_file"));
  auto context = std::make_shared<ssl::context>(ssl::context::tls_server);
  context->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                       ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                       ssl::context::single_dh_use);
  const int min_version =
      files.min_version == TlsMinVersion::kTls13 ? TLS1_3_VERSION : TLS1_2_VERSION;
  HERALD_ASSERT(SSL_CTX_set_min_proto_version(context->native_handle(), min_version) == 1,
                "OpenSSL refused a protocol version it defines");
  boost::system::error_code ec;
  context->use_certificate_chain(asio::buffer(chain), ec);
  if (ec) {
    return Status::invalid_argument(fmt::format(
        "tls.cert_file {} is not a PEM certificate chain: {}", files.cert_file, ec.message()));
  }
  context->use_private_key(asio::buffer(key), ssl::context::pem, ec);
  OPENSSL_cleanse(key.data(), key.size());
  if (ec) {
    // OpenSSL checks the key against the certificate here already ("key values mismatch").
    return Status::invalid_argument(
        fmt::format("tls.key_file {} is not a PEM private key of the certificate in tls.cert_file "
                    "{}: {}",
                    files.key_file, files.cert_file, ec.message()));
  }
  if (SSL_CTX_check_private_key(context->native_handle()) != 1) {
    return Status::invalid_argument(
        fmt::format("tls.key_file {} does not belong to the certificate in tls.cert_file {}",
                    files.key_file, files.cert_file));
  }
  std::string fingerprint = certificate_fingerprint(*context);
  return Built{std::move(context), std::move(fingerprint)};
}

}  // namespace

Result<TlsMinVersion> parse_tls_min_version(std::string_view text) {
  if (text == "1.2") return TlsMinVersion::kTls12;
  if (text == "1.3") return TlsMinVersion::kTls13;
  return Status::invalid_argument(
      fmt::format("tls.min_version \"{}\" is neither \"1.2\" nor \"1.3\"", text));
}

TlsServerContext::TlsServerContext(TlsServerFiles files, std::shared_ptr<ssl::context> context,
                                   std::string fingerprint)
    : files_(std::move(files)), context_(std::move(context)), fingerprint_(std::move(fingerprint)) {
  HERALD_ASSERT(context_ != nullptr, "a TLS server context needs a context");
}

Result<std::shared_ptr<TlsServerContext>> TlsServerContext::load(TlsServerFiles files) {
  HERALD_ASSIGN_OR_RETURN(Built built, build_context(files));
  return std::make_shared<TlsServerContext>(std::move(files), std::move(built.context),
                                            std::move(built.fingerprint));
}

Status TlsServerContext::reload() {
  HERALD_ASSIGN_OR_RETURN(Built built, build_context(files_));
  std::shared_ptr<ssl::context> previous;  // released after the lock
  std::lock_guard lock(mu_);
  previous = std::exchange(context_, std::move(built.context));
  fingerprint_ = std::move(built.fingerprint);
  return Status::ok_status();
}

std::shared_ptr<ssl::context> TlsServerContext::current() const {
  std::lock_guard lock(mu_);
  return context_;
}

std::string TlsServerContext::fingerprint() const {
  std::lock_guard lock(mu_);
  return fingerprint_;
}

}  // namespace herald::server
