// Fuzz target: the configuration of `herald serve` (app/serve_config.h).
//
// Feeds the bytes as the text of a --config TOML file to load_toml_text (what load_toml runs on
// the file's bytes), then runs finalize() over the loaded configuration, and feeds the same bytes
// to parse_peers as a --peers value. Asserts: no crash, leak, exception or undefined behaviour;
// refusals are kInvalidArgument with a message; a finalized configuration lists its own id among
// its peers and has sane timings; parsed peers have positive ids.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "app/serve_config.h"
#include "base/assert.h"
#include "base/status.h"

namespace {

using herald::Code;
using herald::Status;

void check_refusal(const Status& status) {
  HERALD_ASSERT(
      status.ok() || (status.code() == Code::kInvalidArgument && !status.message().empty()),
      "a bad configuration is kInvalidArgument with a message");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  herald::app::ServeConfig config;
  const Status loaded = herald::app::load_toml_text(text, "fuzz.toml", config);
  check_refusal(loaded);
  if (loaded.ok()) {
    const Status finalized = herald::app::finalize(config);
    check_refusal(finalized);
    if (finalized.ok()) {
      HERALD_ASSERT(config.peers.contains(config.id), "a node is among its peers");
      HERALD_ASSERT(config.tick_ms > 0 && config.heartbeat_ticks > 0 &&
                        config.election_ticks > config.heartbeat_ticks,
                    "finalize() checks the timings");
    }
  }
  const auto peers = herald::app::parse_peers(text);
  check_refusal(peers.status());
  if (peers.ok()) {
    for (const auto& [id, address] : *peers) {
      HERALD_ASSERT(id > 0 && !address.empty(), "a peer has a positive id and an address");
    }
  }
  return 0;
}
