// herald_write_profile: prints what the production apply path writes to the state space per
// delivered message (sim/write_profile.h): writes (puts + deletes) and bytes per message and per
// log entry, the state reads (point reads, iterators, iterator steps) per message, then writes per
// record kind. Deterministic counts, not timings: any machine prints the same.
//
// Usage: herald_write_profile [--messages N] [--body-bytes B] [--push-path] [--round-messages R]
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "sim/write_profile.h"

int main(int argc, char** argv) {
  herald::sim::WriteProfileOptions options;
  CLI::App app{"Herald's state writes per delivered message"};
  app.add_option("--messages", options.messages, "messages to send and acknowledge")
      ->check(CLI::Range(std::uint64_t{1}, herald::sim::kMaxProfiledMessages));
  app.add_option("--body-bytes", options.body_bytes, "bytes of each message body")
      ->check(CLI::Range(std::size_t{1}, herald::sim::kMaxProfiledBodyBytes));
  app.add_flag("--push-path", options.push_path,
               "let the push timer fire and report the push before each acknowledgement");
  app.add_option("--round-messages", options.round_messages,
                 "messages whose sends (then acknowledgements) are applied in one round")
      ->check(CLI::Range(std::uint64_t{1}, herald::sim::kMaxProfiledRoundMessages));
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);  // the replica's start-up lines are not the profile's
  auto profile = herald::sim::profile_messaging_writes(options);
  if (!profile.ok()) {
    fmt::print(stderr, "herald_write_profile: {}\n", profile.status().to_string());
    return 1;
  }
  fmt::print("{}", herald::sim::format_write_profile(*profile));
  return 0;
}
