// Keys: where the workflow engine's records live in the state space (docs/workflow.md, "Key
// layout"), and the sealed-record codec they are stored with.
//
// Every key starts with kKeyPrefix ("w"), then a one-byte sub-prefix naming the record kind.
// Variable-length strings inside keys use an order-preserving, prefix-free encoding (each 0x00
// byte becomes 0x00 0xFF; the string ends with 0x00 0x01), so keys sort by their fields in
// order. Times are fixed64 big-endian with the sign bit flipped, so negative times sort first.
// Internal to the engine; exposed for its tests. Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/encoding.h"
#include "base/status.h"

namespace herald::workflow::keys {

inline constexpr char kKeyPrefix = 'w';
inline constexpr char kRecordSub = 'r';      // "w" "r" workflow-id -> WorkflowRecord
inline constexpr char kHistorySub = 'h';     // "w" "h" id run last-seq -> HistoryChunk
inline constexpr char kActivitySub = 'a';    // "w" "a" id run activity -> ActivityRecord
inline constexpr char kDispatchSub = 'd';    // "w" "d" id run activity -> sealed activity key
inline constexpr char kTimerSub = 't';       // "w" "t" due id run timer -> TimerRecord
inline constexpr char kVisibilitySub = 'v';  // "w" "v" type state since id -> summary
inline constexpr char kSettingsSub = 'g';    // "w" "g" -> RetentionSettings
inline constexpr char kPurgeQueueSub = 'Q';  // "w" "Q" -> PurgeQueue
inline constexpr char kPurgeEntrySub = 'q';  // "w" "q" n -> PurgeEntry
inline constexpr char kSummarySub = 's';     // "w" "s" workflow-id -> WorkflowSummary

// Appends `s` in the order-preserving, prefix-free string encoding.
void put_string(std::string& out, std::string_view s);
// Appends `ms` as fixed64 big-endian with its sign bit flipped.
void put_time(std::string& out, std::int64_t ms);

[[nodiscard]] std::string record_key(std::string_view workflow_id);
// "w" sub id run: the prefix of one run's keys of kind `sub`.
[[nodiscard]] std::string run_prefix(char sub, std::string_view workflow_id, std::uint64_t run_id);
// The key of the history chunk whose last event is `last_seq`. A run's chunks sort by their events,
// so the chunk holding event s is the first key at or above history_key(id, run, s).
[[nodiscard]] std::string history_key(std::string_view workflow_id, std::uint64_t run_id,
                                      std::uint64_t last_seq);
[[nodiscard]] std::string activity_key(std::string_view workflow_id, std::uint64_t run_id,
                                       std::uint64_t activity_id);
[[nodiscard]] std::string dispatch_key(std::string_view workflow_id, std::uint64_t run_id,
                                       std::uint64_t activity_id);
[[nodiscard]] std::string timer_key(std::int64_t due_ms, std::string_view workflow_id,
                                    std::uint64_t run_id, std::uint64_t timer_id);
// "w" "t" due: every timer due strictly before `due_ms` sorts below it.
[[nodiscard]] std::string timer_bound(std::int64_t due_ms);
[[nodiscard]] std::string visibility_prefix(std::string_view type,
                                            const std::optional<std::string>& state);
// `state_since_ms`: when the run entered the state and status the entry indexes.
[[nodiscard]] std::string visibility_key(std::string_view type, std::string_view state,
                                         std::int64_t state_since_ms, std::string_view workflow_id);
[[nodiscard]] std::string settings_key();
[[nodiscard]] std::string purge_queue_key();
[[nodiscard]] std::string purge_entry_key(std::uint64_t n);
[[nodiscard]] std::string summary_key(std::string_view workflow_id);
// "w" sub: the prefix of every key of kind `sub`.
[[nodiscard]] std::string sub_prefix(char sub);
// The smallest key above every key that starts with `prefix`. Precondition: `prefix` holds a
// byte below 0xFF (every prefix here starts with "w").
[[nodiscard]] std::string prefix_end(std::string_view prefix);

// Lowercase hex, for page tokens.
[[nodiscard]] std::string hex_encode(std::string_view bytes);
[[nodiscard]] bool hex_decode(std::string_view hex, std::string& out);

// Sealed protobuf records: [crc32c][serialized message].
template <typename Message>
[[nodiscard]] std::string seal(const Message& message) {
  return seal_record(message.SerializeAsString());
}

// kCorruption naming `what` when `raw` fails its checksum ("... record fails its checksum": the
// bytes changed after they were written, so this copy is damaged) or does not decode ("... record
// does not decode": it was written that way, so every replica holds the same).
template <typename Message>
[[nodiscard]] Result<Message> open(std::string_view raw, std::string_view what) {
  std::string_view payload;
  if (!open_record(raw, payload)) {
    return Status::corruption(std::string(what) + " record fails its checksum");
  }
  Message message;
  if (!message.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return Status::corruption(std::string(what) + " record does not decode");
  }
  return message;
}

template <typename Message>
[[nodiscard]] Result<std::optional<Message>> open_optional(const std::optional<std::string>& raw,
                                                           std::string_view what) {
  if (!raw) {
    return std::optional<Message>();
  }
  HERALD_ASSIGN_OR_RETURN(Message message, open<Message>(*raw, what));
  return std::optional<Message>(std::move(message));
}

}  // namespace herald::workflow::keys
