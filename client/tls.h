// TLS for the client/ connections (wss://, https://). Internal: include only from .cc files, so
// that users of the public headers do not compile Asio's SSL.
#pragma once

#include <openssl/ssl.h>

#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <string>

#include "base/status.h"
#include "client/ws_client.h"

namespace herald::client {

// A client context that verifies the server's certificate chain against `tls.ca_file` (the
// system's CAs when it is empty), for TLS 1.2 and later. kInvalidArgument naming the file when
// the CAs cannot be loaded.
[[nodiscard]] Result<std::unique_ptr<boost::asio::ssl::context>> make_client_tls_context(
    const ClientTls& tls);

// Sets up `ssl` (not yet handshaken) to connect to `host`: the certificate must name it, as a DNS
// name or, for an IP literal, as an IP address; a name is also sent as SNI. kInvalidArgument when
// OpenSSL refuses the name.
[[nodiscard]] Status expect_server_name(SSL* ssl, const std::string& host);

}  // namespace herald::client
