// Fuzz target: the device gateway's request frames (GET /v1/ws, docs/protocol.md).
//
// Feeds the bytes of one WebSocket text frame to server::parse_request_frame, the parse the
// gateway runs before any work (Boost.JSON with max_depth = kMaxJsonDepth, one object, "id",
// "type"), then runs the per-field readers of server/messaging_json.h over the frame with every
// field name the gateway's handlers read, and the role and kind parsers over their strings. The
// same bytes are also decoded as the payload of a typing and of a presence event relayed by
// another node (server::parse_relayed_event). Asserts: no crash, leak or undefined behaviour; a
// refused frame names a protocol error code; an accepted frame has a "type" string and an "id" that
// is null or a string of at most kMaxRequestIdBytes; a field reader either fills its output or
// names the field's error.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/assert.h"
#include "messaging/domain.h"
#include "server/gateway.h"
#include "server/messaging_json.h"

namespace {

using herald::server::FieldResult;
using herald::server::RequestFrame;

// The fields the gateway's handlers read, by the reader they use (server/gateway.cc).
constexpr std::string_view kStringFields[] = {"body",
                                              "client_message_id",
                                              "conversation_id",
                                              "device_id",
                                              "kind",
                                              "page",
                                              "role",
                                              "title",
                                              "token",
                                              "user_id"};
constexpr std::string_view kU64Fields[] = {"limit", "seq", "since"};
constexpr std::string_view kBoolFields[] = {"active", "email_fallback", "muted", "push_enabled"};
constexpr std::string_view kI64Fields[] = {"email_delay_ms"};
constexpr std::string_view kStringListFields[] = {"members"};

void check_error(const FieldResult& error) {
  if (error.has_value()) {
    HERALD_ASSERT(!error->code.empty() && !error->message.empty(),
                  "a field error names its code and the field");
  }
}

void read_fields(const boost::json::object& frame) {
  for (const std::string_view field : kStringFields) {
    for (const bool required : {true, false}) {
      std::string out;
      check_error(herald::server::get_string(frame, field, out, required));
    }
  }
  std::string role;
  if (!herald::server::get_string(frame, "role", role)) {
    static_cast<void>(herald::server::parse_role(role));
  }
  std::string kind;
  if (!herald::server::get_string(frame, "kind", kind)) {
    static_cast<void>(herald::server::parse_kind(kind));
  }
  for (const std::string_view field : kU64Fields) {
    for (const bool required : {true, false}) {
      std::uint64_t out = 0;
      check_error(herald::server::get_u64(frame, field, out, required));
    }
  }
  for (const std::string_view field : kBoolFields) {
    std::optional<bool> out;
    check_error(herald::server::get_bool(frame, field, out));
  }
  for (const std::string_view field : kI64Fields) {
    std::optional<std::int64_t> out;
    check_error(herald::server::get_i64(frame, field, out));
  }
  for (const std::string_view field : kStringListFields) {
    std::vector<std::string> out;
    const FieldResult error =
        herald::server::get_strings(frame, field, out, herald::messaging::kMaxMembersPerCommand);
    check_error(error);
    HERALD_ASSERT(out.size() <= herald::messaging::kMaxMembersPerCommand,
                  "get_strings keeps to its bound");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  for (const std::string_view kind : {"typing", "presence"}) {
    const auto event = herald::server::parse_relayed_event(kind, text);
    HERALD_ASSERT(!event.has_value() || event->typing == (kind == "typing"),
                  "a relayed event is of the kind it was sent as");
  }
  const RequestFrame frame = herald::server::parse_request_frame(text);
  if (frame.error.has_value()) {
    HERALD_ASSERT(!frame.error->code.empty(), "a refused frame names a protocol error code");
    return 0;
  }
  HERALD_ASSERT(
      frame.id.is_null() || (frame.id.is_string() &&
                             frame.id.get_string().size() <= herald::server::kMaxRequestIdBytes),
      "an accepted frame's id is null or a short string");
  HERALD_ASSERT(frame.fields.contains("type"), "an accepted frame has a type");
  read_fields(frame.fields);
  return 0;
}
