#include "server/listener.h"

#include <string>

#include "server/endpoint.h"

namespace herald::server {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

Status open_acceptor(tcp::acceptor& acceptor, std::string_view listen) {
  HERALD_ASSIGN_OR_RETURN(const HostPort host_port, parse_host_port(listen));
  boost::system::error_code ec;
  const asio::ip::address address = asio::ip::make_address(host_port.host, ec);
  if (ec) {
    return Status::invalid_argument("listen host '" + host_port.host + "' is not an IP address");
  }
  const tcp::endpoint endpoint(address, host_port.port);
  const auto fail = [&](const char* step) {
    return Status::io_error(std::string(step) + " " + std::string(listen) + ": " + ec.message());
  };
  if (acceptor.open(endpoint.protocol(), ec); ec) return fail("open");
  if (acceptor.set_option(tcp::acceptor::reuse_address(true), ec); ec) return fail("setsockopt");
  if (acceptor.bind(endpoint, ec); ec) return fail("bind");
  if (acceptor.listen(asio::socket_base::max_listen_connections, ec); ec) return fail("listen");
  return Status::ok_status();
}

}  // namespace herald::server
