#include "server/endpoint.h"

#include <charconv>

namespace herald::server {

Result<HostPort> parse_host_port(std::string_view text) {
  const std::size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == text.size()) {
    return Status::invalid_argument("endpoint '" + std::string(text) + "' is not host:port");
  }
  std::string_view host = text.substr(0, colon);
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') {
      return Status::invalid_argument("endpoint '" + std::string(text) + "' has a bad [v6] host");
    }
    host = host.substr(1, host.size() - 2);
  }
  const std::string_view port_text = text.substr(colon + 1);
  unsigned port = 0;
  const auto [end, ec] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535) {
    return Status::invalid_argument("endpoint '" + std::string(text) + "' has a bad port");
  }
  return HostPort{std::string(host), static_cast<std::uint16_t>(port)};
}

}  // namespace herald::server
