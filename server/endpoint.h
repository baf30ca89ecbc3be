// Endpoint parsing shared by the peer transport and the HTTP server.
//
// Thread-safety: pure functions on values.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace herald::server {

struct HostPort {
  std::string host;  // a name or an IP literal, without IPv6 brackets
  std::uint16_t port = 0;
};

// Parses "host:port" or "[v6]:port". The port must be decimal in [0, 65535]; 0 asks the operating
// system for an ephemeral port when listening. Errors: kInvalidArgument naming the input.
[[nodiscard]] Result<HostPort> parse_host_port(std::string_view text);

}  // namespace herald::server
