// JSON shapes of the messaging domain, shared by the WebSocket gateway (docs/protocol.md) and the
// admin HTTP API (docs/api-http.md): records to JSON objects, request fields out of JSON objects
// with the protocol's error codes, and domain refusals to protocol error codes.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "messaging/domain.h"
#include "messaging/messaging.pb.h"
#include "workflow/workflow.pb.h"

namespace herald::server {

// A refusal to send back: a protocol error code (docs/protocol.md, "Errors") and a message.
struct FrameError {
  std::string code;
  std::string message;
};

// The protocol error code for a status from the domain or the replica: not_found, forbidden,
// not_member, conflict, invalid_argument, too_large, unavailable, timeout or internal.
[[nodiscard]] FrameError frame_error_of(const Status& status);
// The same for a command's result (code != 0).
[[nodiscard]] FrameError frame_error_of(const rsmpb::CommandResult& result);

[[nodiscard]] boost::json::object message_json(const messagingpb::MessageRecord& m);
[[nodiscard]] boost::json::object conversation_json(const messagingpb::ConversationRecord& c);
[[nodiscard]] boost::json::object change_json(const messagingpb::SyncEntry& entry);
[[nodiscard]] boost::json::object chat_json(const messaging::ChatSummary& chat);
[[nodiscard]] boost::json::object prefs_json(const messaging::EffectivePreferences& prefs);
[[nodiscard]] boost::json::object user_json(const messagingpb::UserRecord& user);
[[nodiscard]] boost::json::object device_json(const messagingpb::DeviceRecord& device);
[[nodiscard]] std::string_view role_name(messagingpb::Role role);
[[nodiscard]] std::optional<messagingpb::Role> parse_role(std::string_view name);
[[nodiscard]] std::optional<messagingpb::ConversationKind> parse_kind(std::string_view name);

// ---- Reading request fields. Each returns the value or the protocol's error for the field:
// missing_field when absent (and required), wrong_type when of another JSON type or out of range.
using FieldResult = std::optional<FrameError>;

[[nodiscard]] FieldResult get_string(const boost::json::object& o, std::string_view field,
                                     std::string& out, bool required = true);
[[nodiscard]] FieldResult get_u64(const boost::json::object& o, std::string_view field,
                                  std::uint64_t& out, bool required = true);
[[nodiscard]] FieldResult get_bool(const boost::json::object& o, std::string_view field,
                                   std::optional<bool>& out);
[[nodiscard]] FieldResult get_i64(const boost::json::object& o, std::string_view field,
                                  std::optional<std::int64_t>& out);
[[nodiscard]] FieldResult get_strings(const boost::json::object& o, std::string_view field,
                                      std::vector<std::string>& out, std::size_t max_items);

}  // namespace herald::server
