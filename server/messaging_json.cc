#include "server/messaging_json.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <limits>

#include "rsm/node.h"
#include "server/damage_report.h"

namespace herald::server {

namespace json = boost::json;

namespace {

std::string lower(std::string_view name) {
  std::string out(name);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string_view kind_name(messagingpb::ConversationKind kind) {
  switch (kind) {
    case messagingpb::DIRECT: return "direct";
    case messagingpb::GROUP: return "group";
    default: return "unknown";
  }
}

json::array strings_json(const google::protobuf::RepeatedPtrField<std::string>& items) {
  json::array out;
  for (const auto& s : items) {
    out.emplace_back(s);
  }
  return out;
}

FrameError missing(std::string_view field) {
  return FrameError{"missing_field", fmt::format("the field \"{}\" is required", field)};
}

FrameError wrong(std::string_view field, std::string_view what) {
  return FrameError{"wrong_type", fmt::format("the field \"{}\" must be {}", field, what)};
}

}  // namespace

FrameError frame_error_of(const Status& status) {
  report_damage(status);
  const std::string& m = status.message();
  switch (status.code()) {
    case Code::kNotFound: return {"not_found", m};
    case Code::kInvalidArgument: return {"invalid_argument", m};
    case Code::kAlreadyExists: return {"conflict", m};
    case Code::kResourceExhausted:
      return {rsm::is_disk_alarm_refusal(status) ? "resource_exhausted" : "too_large", m};
    case Code::kFailedPrecondition:
      if (m.starts_with("permission denied")) {
        return {m.find("is not a member") != std::string::npos ? "not_member" : "forbidden", m};
      }
      return {"conflict", m};
    case Code::kTimeout: return {"timeout", m};
    // Not applied: safe to retry, even as a new request.
    case Code::kUnavailable:
    case Code::kNotLeader: return {"unavailable", m};
    // In flight when the term changed: it may or may not have been applied.
    case Code::kAborted: return {"outcome_unknown", m};
    default: return {"internal", status.to_string()};
  }
}

FrameError frame_error_of(const rsmpb::CommandResult& result) {
  return frame_error_of(Status(static_cast<Code>(result.code()), result.message()));
}

json::object message_json(const messagingpb::MessageRecord& m) {
  return json::object{
      {"conversation_id", m.conversation_id()},
      {"seq", m.seq()},
      {"kind", m.kind() == messagingpb::SYSTEM_MESSAGE ? "system" : "user"},
      {"sender", m.sender_user_id()},
      {"sender_device", m.sender_device_id()},
      {"client_message_id", m.client_message_id()},
      {"time_ms", m.wall_ms()},
      {"body", m.body()},
      {"edited", m.edited()},
      {"edited_ms", m.edited_ms()},
      {"deleted", m.deleted()},
  };
}

json::object conversation_json(const messagingpb::ConversationRecord& c) {
  json::array members;
  for (const auto& member : c.members()) {
    members.emplace_back(json::object{{"user_id", member.user_id()},
                                      {"role", role_name(member.role())},
                                      {"joined_ms", member.joined_ms()}});
  }
  return json::object{
      {"conversation_id", c.conversation_id()},
      {"kind", kind_name(c.kind())},
      {"title", c.title()},
      {"created_by", c.created_by()},
      {"created_ms", c.created_ms()},
      {"last_seq", c.last_seq()},
      {"members", std::move(members)},
  };
}

json::object change_json(const messagingpb::SyncEntry& entry) {
  const messagingpb::ChangeRecord& c = entry.change();
  json::object out{
      {"cursor", c.change_seq()},
      {"kind", lower(messagingpb::ChangeKind_Name(c.kind()))},
      {"conversation_id", c.conversation_id()},
      {"seq", c.seq()},
      {"actor", c.actor_user_id()},
      {"time_ms", c.time_ms()},
  };
  if (entry.has_message()) {
    out["message"] = message_json(entry.message());
  }
  if (c.user_ids_size() > 0) {
    out["users"] = strings_json(c.user_ids());
  }
  if (c.role() != messagingpb::ROLE_UNSPECIFIED) {
    out["role"] = role_name(c.role());
  }
  if (!c.title().empty()) {
    out["title"] = c.title();
  }
  if (!c.device_id().empty()) {
    out["device_id"] = c.device_id();
  }
  return out;
}

json::object chat_json(const messaging::ChatSummary& chat) {
  return json::object{
      {"conversation_id", chat.entry.conversation_id()},
      {"kind", kind_name(chat.kind)},
      {"title", chat.title},
      {"activity_ms", chat.entry.activity_ms()},
      {"last_seq", chat.entry.last_seq()},
      {"last_sender", chat.entry.last_sender_user_id()},
      {"preview", chat.entry.preview()},
      {"unread", chat.unread},
      {"muted", chat.muted},
  };
}

json::object prefs_json(const messaging::EffectivePreferences& prefs) {
  return json::object{
      {"push_enabled", prefs.push_enabled},     {"email_fallback", prefs.email_fallback},
      {"email_delay_ms", prefs.email_delay_ms}, {"muted", prefs.muted},
      {"hide_previews", prefs.hide_previews},
  };
}

json::object user_json(const messagingpb::UserRecord& user) {
  return json::object{
      {"user_id", user.user_id()},
      {"display_name", user.display_name()},
      {"email", user.email()},
      {"created_ms", user.created_ms()},
      {"devices", strings_json(user.device_ids())},
  };
}

json::object device_json(const messagingpb::DeviceRecord& device) {
  json::object out{
      {"device_id", device.device_id()},
      {"platform", device.platform()},
      {"push_provider", device.push_provider()},
      {"has_push_token", !device.push_token().empty()},
      {"created_ms", device.created_ms()},
      {"push_target_invalid", device.push_target_invalid()},
  };
  if (device.push_target_invalid()) {
    out["push_invalid_error_type"] = device.push_invalid_error_type();
    out["push_invalid_reason"] = device.push_invalid_reason();
    out["push_invalid_ms"] = device.push_invalid_ms();
  }
  return out;
}

std::string_view role_name(messagingpb::Role role) {
  switch (role) {
    case messagingpb::OWNER: return "owner";
    case messagingpb::ADMIN: return "admin";
    case messagingpb::MEMBER: return "member";
    default: return "none";
  }
}

std::optional<messagingpb::Role> parse_role(std::string_view name) {
  if (name == "owner") return messagingpb::OWNER;
  if (name == "admin") return messagingpb::ADMIN;
  if (name == "member") return messagingpb::MEMBER;
  return std::nullopt;
}

std::optional<messagingpb::ConversationKind> parse_kind(std::string_view name) {
  if (name == "direct") return messagingpb::DIRECT;
  if (name == "group") return messagingpb::GROUP;
  return std::nullopt;
}

FieldResult get_string(const json::object& o, std::string_view field, std::string& out,
                       bool required) {
  const json::value* v = o.if_contains(field);
  if (v == nullptr || v->is_null()) {
    return required ? FieldResult(missing(field)) : std::nullopt;
  }
  if (!v->is_string()) {
    return wrong(field, "a string");
  }
  out = std::string(v->get_string());
  return std::nullopt;
}

FieldResult get_u64(const json::object& o, std::string_view field, std::uint64_t& out,
                    bool required) {
  const json::value* v = o.if_contains(field);
  if (v == nullptr || v->is_null()) {
    return required ? FieldResult(missing(field)) : std::nullopt;
  }
  if (v->is_uint64()) {
    out = v->get_uint64();
    return std::nullopt;
  }
  if (v->is_int64() && v->get_int64() >= 0) {
    out = static_cast<std::uint64_t>(v->get_int64());
    return std::nullopt;
  }
  return wrong(field, "a non-negative integer");
}

FieldResult get_bool(const json::object& o, std::string_view field, std::optional<bool>& out) {
  const json::value* v = o.if_contains(field);
  if (v == nullptr || v->is_null()) {
    return std::nullopt;
  }
  if (!v->is_bool()) {
    return wrong(field, "a boolean");
  }
  out = v->get_bool();
  return std::nullopt;
}

FieldResult get_i64(const json::object& o, std::string_view field,
                    std::optional<std::int64_t>& out) {
  const json::value* v = o.if_contains(field);
  if (v == nullptr || v->is_null()) {
    return std::nullopt;
  }
  if (v->is_int64()) {
    out = v->get_int64();
    return std::nullopt;
  }
  if (v->is_uint64() &&
      v->get_uint64() <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    out = static_cast<std::int64_t>(v->get_uint64());
    return std::nullopt;
  }
  return wrong(field, "an integer");
}

FieldResult get_strings(const json::object& o, std::string_view field,
                        std::vector<std::string>& out, std::size_t max_items) {
  const json::value* v = o.if_contains(field);
  if (v == nullptr || v->is_null()) {
    return std::nullopt;
  }
  if (!v->is_array()) {
    return wrong(field, "an array of strings");
  }
  const json::array& a = v->get_array();
  if (a.size() > max_items) {
    return FrameError{"too_large",
                      fmt::format("the field \"{}\" holds at most {} items", field, max_items)};
  }
  for (const json::value& item : a) {
    if (!item.is_string()) {
      return wrong(field, "an array of strings");
    }
    out.emplace_back(item.get_string());
  }
  return std::nullopt;
}

}  // namespace herald::server
