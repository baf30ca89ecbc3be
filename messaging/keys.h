// Keys: where the messaging domain's records live in the state space (docs/messaging.md, "Key
// layout"), and the sealed-record codec they are stored with.
//
// Every key starts with kKeyPrefix ("m"), then a one-byte sub-prefix naming the record kind.
// Strings inside keys use the workflow engine's order-preserving, prefix-free encoding
// (workflow/keys.h: each 0x00 byte becomes 0x00 0xFF; the string ends with 0x00 0x01), sequence
// numbers are fixed64 big-endian, so keys sort by their fields in order. The chat index sorts by
// recency: the time with its sign bit flipped, then every bit inverted, so the most recent entry
// has the smallest key. Every record is the apply path's point read, except the chat index and the
// change streams, which the readers scan by user prefix, and a removed device's marks, which the
// apply path deletes in bounded scans (rsm::ApplyBatch::scan).
// Internal to the domain; exposed for its tests. Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "workflow/keys.h"

namespace herald::messaging::keys {

inline constexpr char kKeyPrefix = 'm';
inline constexpr char kUserSub = 'u';          // "m" "u" user -> UserRecord
inline constexpr char kDeviceSub = 'd';        // "m" "d" device -> DeviceRecord
inline constexpr char kConversationSub = 'c';  // "m" "c" conversation -> ConversationRecord
inline constexpr char kMessageSub = 'm';       // "m" "m" conversation seq -> MessageRecord
inline constexpr char kDedupSub = 'i';         // "m" "i" conversation device client-id -> SendDedup
inline constexpr char kMemberSub = 'p';        // "m" "p" user conversation -> MemberState
inline constexpr char kMarksSub = 'v';         // "m" "v" user device conversation -> DeviceMarks
inline constexpr char kChatSub = 'x';          // "m" "x" user recency conversation -> ChatEntry
inline constexpr char kChangeSub = 's';        // "m" "s" user change-seq -> ChangeRecord
inline constexpr char kRetentionSub = 'g';     // "m" "g" -> RetentionSettings
inline constexpr char kDedupQueueSub = 'h';    // "m" "h" -> DedupQueue
inline constexpr char kDedupExpirySub = 'q';   // "m" "q" n -> DedupExpiry
inline constexpr char kDeviceQueueSub = 'k';   // "m" "k" -> DeviceQueue
inline constexpr char kDeviceExpirySub = 'r';  // "m" "r" n -> DeviceExpiry
inline constexpr char kMessageQueueSub = 'e';  // "m" "e" -> MessageQueue
inline constexpr char kMessageExpirySub = 't';  // "m" "t" n -> MessageExpiry
inline constexpr char kStreamQueueSub = 'a';    // "m" "a" -> StreamQueue
inline constexpr char kStreamTrimSub = 'b';     // "m" "b" n -> StreamTrim

[[nodiscard]] std::string user_key(std::string_view user_id);
[[nodiscard]] std::string device_key(std::string_view device_id);
[[nodiscard]] std::string conversation_key(std::string_view conversation_id);
[[nodiscard]] std::string message_key(std::string_view conversation_id, std::uint64_t seq);
[[nodiscard]] std::string dedup_key(std::string_view conversation_id, std::string_view device_id,
                                    std::string_view client_message_id);
[[nodiscard]] std::string member_key(std::string_view user_id, std::string_view conversation_id);
[[nodiscard]] std::string marks_key(std::string_view user_id, std::string_view device_id,
                                    std::string_view conversation_id);
[[nodiscard]] std::string chat_key(std::string_view user_id, std::int64_t activity_ms,
                                   std::string_view conversation_id);
[[nodiscard]] std::string change_key(std::string_view user_id, std::uint64_t change_seq);
[[nodiscard]] std::string retention_key();
[[nodiscard]] std::string dedup_queue_key();
[[nodiscard]] std::string dedup_expiry_key(std::uint64_t n);
[[nodiscard]] std::string device_queue_key();
[[nodiscard]] std::string device_expiry_key(std::uint64_t n);
[[nodiscard]] std::string message_queue_key();
[[nodiscard]] std::string message_expiry_key(std::uint64_t n);
[[nodiscard]] std::string stream_queue_key();
[[nodiscard]] std::string stream_trim_key(std::uint64_t n);
// "m" "v" str(user) str(device): the prefix of one device's marks in every conversation.
[[nodiscard]] std::string device_marks_prefix(std::string_view user_id, std::string_view device_id);

// "m" sub str(user): the prefix of one user's chat index (kChatSub) or change stream (kChangeSub).
[[nodiscard]] std::string user_prefix(char sub, std::string_view user_id);

// Sealed protobuf records and their decoding: the workflow engine's codec (kCorruption naming the
// record kind when a record fails its checksum or does not decode).
using workflow::keys::hex_decode;
using workflow::keys::hex_encode;
using workflow::keys::open;
using workflow::keys::open_optional;
using workflow::keys::prefix_end;
using workflow::keys::seal;

}  // namespace herald::messaging::keys
