// Search: the dashboard's one search box (docs/api-http.md, "Search"). One query, no syntax: it
// is tried as each kind of id Herald has, and every kind that matches is returned —
//   a message:      "<conversation> <seq>", "<conversation>/<seq>" or "<conversation>#<seq>"
//   a conversation: its id (with its newest message seqs)
//   a user:         its id (with its devices and most recent conversations)
//   a device:       its id (with its owner)
//   a workflow:     its id; a delivery or read-sync workflow also names its message
// Every lookup is a point read (or one short scan of a user's chat index), so a query costs
// the same whatever the size of the state. Thread-safety: pure functions of their arguments.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "storage/engine.h"

namespace herald::server {

// Longest query accepted.
inline constexpr std::size_t kMaxSearchQueryBytes = 1024;
// Conversations listed with a user, and message seqs listed with a conversation, at most.
inline constexpr std::size_t kSearchRecentConversations = 20;
inline constexpr std::size_t kSearchRecentMessages = 20;

struct MessageRef {
  std::string conversation_id;
  std::uint64_t seq = 0;
  friend bool operator==(const MessageRef&, const MessageRef&) = default;
};

// The message a query names as "<conversation><sep><seq>" with sep one of ' ', '/', '#' (the
// last one in the query); nullopt when it names none (no separator, an empty conversation, a seq
// that is not a positive decimal number).
[[nodiscard]] std::optional<MessageRef> parse_message_query(std::string_view query);

// The parts of a composed workflow id ("prefix/part/part...", each part with '%' and '/'
// percent-escaped: messaging/delivery.h, compose_workflow_id), unescaped; nullopt when a part
// holds a malformed escape.
[[nodiscard]] std::optional<std::vector<std::string>> split_workflow_id(std::string_view id);

// The message a delivery ("delivery/<conversation>/<seq>/<user>") or read-sync
// ("read_sync/<conversation>/<user>/<device>/<seq>") workflow id belongs to.
[[nodiscard]] std::optional<MessageRef> message_of_workflow(std::string_view workflow_id);

// Every match of `query` (surrounding spaces ignored), each {"kind": "message" | "conversation" |
// "user" | "device" | "workflow", ...}. kInvalidArgument for an empty or oversized query; the
// readers' errors otherwise.
[[nodiscard]] Result<boost::json::array> search(const storage::Reader& reader,
                                                std::string_view query);

}  // namespace herald::server
