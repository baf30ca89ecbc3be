// Listening-socket setup shared by the server/ adapters. Internal: include only from .cc files,
// so that users of the public headers do not compile Asio.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <string_view>

#include "base/status.h"

namespace herald::server {

// Opens, binds (with SO_REUSEADDR) and listens `acceptor` on `listen` ("ip:port"; port 0 picks an
// ephemeral port). Errors: kInvalidArgument for a malformed endpoint or a host that is not an IP
// literal, kIOError when the operating system refuses.
[[nodiscard]] Status open_acceptor(boost::asio::ip::tcp::acceptor& acceptor,
                                   std::string_view listen);

}  // namespace herald::server
