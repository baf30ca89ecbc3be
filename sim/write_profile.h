// Write profile: what the production apply path writes to the state space per delivered message,
// counted exactly.
//
// One replica (a single-voter rsm::Node on a MemEngine) runs the production state machines: the
// messaging domain and the workflow engine with the delivery workflow, routed as under
// `herald serve`. Alice sends Bob `messages` messages in a direct conversation; for each one Bob's
// device acknowledges it, as the messaging benchmark's recipients do (bench/messaging.sh). On the
// push path (`push_path`) the socket grace passes first: the "push" timer fires and the push
// activity is reported done before the acknowledgement, as for a device that is not connected.
// Activities are reported by the driver (no provider runs). With `round_messages` = 1 each command
// is applied in its own Ready round; with R > 1 the sends of R messages are proposed together and
// applied in one round, then (on the push path) their timers and activities, then their R
// acknowledgements in one round, as a loaded node batches them. Every figure is a pure function of
// the options: no timing, no randomness.
//
// Counted: every put and delete the applied rounds write to Space::kState (rsm::NodeStats), and
// the same writes by record kind (the first two bytes of the key: "w" "h" is workflow history,
// ...); and what the replica reads from the state space through the engine interface meanwhile:
// point reads, iterators created and iterator steps (the entries an iterator stood on: its first
// position and every next() that landed on one). The set-up (users, devices, the conversation)
// and the driver's own reads (the push path's due timers and activities) are not counted.
// Thread-safety: none; each call builds and drops its own replica.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "base/status.h"

namespace herald::sim {

inline constexpr std::uint64_t kMaxProfiledMessages = 100'000;
inline constexpr std::size_t kMaxProfiledBodyBytes = 64 * 1024;
inline constexpr std::uint64_t kMaxProfiledRoundMessages = 64;

struct WriteProfileOptions {
  std::uint64_t messages = 1000;  // 1..kMaxProfiledMessages
  std::size_t body_bytes = 64;    // 1..kMaxProfiledBodyBytes
  bool push_path = false;
  std::uint64_t round_messages = 1;  // 1..kMaxProfiledRoundMessages; the last round takes the rest
};

struct WriteTally {
  std::uint64_t puts = 0;
  std::uint64_t deletes = 0;
  std::uint64_t bytes = 0;
  [[nodiscard]] std::uint64_t writes() const { return puts + deletes; }
};

// Reads of the state space through the engine interface (storage::Engine::get and scan).
struct ReadTally {
  std::uint64_t gets = 0;
  std::uint64_t iterators = 0;
  std::uint64_t steps = 0;
};

struct WriteProfile {
  std::uint64_t messages = 0;
  std::uint64_t entries = 0;  // log entries applied for them
  std::uint64_t rounds = 0;   // Ready rounds that applied them
  WriteTally total;           // from rsm::NodeStats
  ReadTally reads;
  // By record kind, named for people ("workflow history", "messaging chat index", ...).
  std::map<std::string, WriteTally> by_kind;
};

// kInvalidArgument for options out of bounds; any command that fails is reported as
// kFailedPrecondition (the driver's commands are all valid).
[[nodiscard]] Result<WriteProfile> profile_messaging_writes(const WriteProfileOptions& options);

// A table: writes, bytes and reads per message and per entry, then writes per kind.
[[nodiscard]] std::string format_write_profile(const WriteProfile& profile);

}  // namespace herald::sim
