#include "client/tls.h"

#include <openssl/x509v3.h>

#include <boost/asio/ip/address.hpp>

namespace herald::client {

namespace ssl = boost::asio::ssl;

Result<std::unique_ptr<ssl::context>> make_client_tls_context(const ClientTls& tls) {
  auto context = std::make_unique<ssl::context>(ssl::context::tls_client);
  context->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                       ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  boost::system::error_code ec;
  if (tls.ca_file.empty()) {
    context->set_default_verify_paths(ec);
  } else {
    context->load_verify_file(tls.ca_file, ec);
  }
  if (ec) {
    return Status::invalid_argument("cannot load the CAs " +
                                    (tls.ca_file.empty() ? "of the system" : tls.ca_file) + ": " +
                                    ec.message());
  }
  context->set_verify_mode(ssl::verify_peer);
  return context;
}

Status expect_server_name(SSL* ssl, const std::string& host) {
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  boost::system::error_code ec;
  boost::asio::ip::make_address(host, ec);
  if (!ec) {
    // An IP literal: checked against the certificate's IP addresses; no SNI (RFC 6066 section 3).
    if (X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str()) != 1) {
      return Status::invalid_argument("cannot expect the IP address " + host);
    }
    return Status::ok_status();
  }
  X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  if (X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size()) != 1 ||
      SSL_set_tlsext_host_name(ssl, host.c_str()) != 1) {
    return Status::invalid_argument("cannot expect the host name " + host);
  }
  return Status::ok_status();
}

}  // namespace herald::client
