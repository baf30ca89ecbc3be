#include "base/log.h"

#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <string>

namespace herald {

void init_logging(std::string_view level, std::uint64_t node_id) {
  auto logger = spdlog::stderr_color_mt(fmt::format("n{}", node_id));
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%L%$ [%n] %v");
  spdlog::set_default_logger(logger);
  auto parsed = spdlog::level::from_str(std::string(level));
  if (parsed == spdlog::level::off && level != "off") {
    parsed = spdlog::level::info;
  }
  spdlog::set_level(parsed);
}

}  // namespace herald
