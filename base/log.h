// Logging: spdlog behind one setup call, so every layer logs the same way.
//
// Deterministic layers may log (logging is output, not input), but must never branch on it.
// Thread-safe: the default spdlog logger is used from every thread.
#pragma once

#include <spdlog/spdlog.h>

#include <string_view>

namespace herald {

// Sets the global log level from a name ("trace", "debug", "info", "warn", "error", "off") and a
// pattern that starts every line with the node id. Unknown level names fall back to "info".
void init_logging(std::string_view level, std::uint64_t node_id);

}  // namespace herald
