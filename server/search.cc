#include "server/search.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>

#include "messaging/delivery.h"
#include "messaging/domain.h"
#include "messaging/read_sync.h"
#include "server/messaging_json.h"
#include "workflow/engine.h"

namespace herald::server {

namespace json = boost::json;

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front())) != 0) {
    s.remove_prefix(1);
  }
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())) != 0) {
    s.remove_suffix(1);
  }
  return s;
}

std::optional<std::uint64_t> positive_number(std::string_view s) {
  std::uint64_t v = 0;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || ptr != s.data() + s.size() || v == 0) return std::nullopt;
  return v;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

std::string lower_status(workflowpb::WorkflowStatus status) {
  std::string name = workflowpb::WorkflowStatus_Name(status);
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return name;
}

json::object message_ref_json(const MessageRef& ref) {
  return json::object{{"conversation_id", ref.conversation_id}, {"seq", ref.seq}};
}

Status find_message(const storage::Reader& reader, std::string_view query, json::array& out) {
  const auto ref = parse_message_query(query);
  if (!ref) return Status::ok_status();
  HERALD_ASSIGN_OR_RETURN(auto message,
                          messaging::Domain::get_message(reader, ref->conversation_id, ref->seq));
  if (!message) return Status::ok_status();
  json::object o = message_ref_json(*ref);
  o["kind"] = "message";
  o["message"] = message_json(*message);
  out.emplace_back(std::move(o));
  return Status::ok_status();
}

Status find_conversation(const storage::Reader& reader, std::string_view id, json::array& out) {
  HERALD_ASSIGN_OR_RETURN(auto conv, messaging::Domain::get_conversation(reader, id));
  if (!conv) return Status::ok_status();
  json::array seqs;
  for (std::uint64_t seq = conv->last_seq();
       seq > conv->expired_up_to() && seqs.size() < kSearchRecentMessages; --seq) {
    seqs.emplace_back(seq);
  }
  out.emplace_back(json::object{{"kind", "conversation"},
                                {"conversation", conversation_json(*conv)},
                                {"recent_seqs", std::move(seqs)}});
  return Status::ok_status();
}

Status find_user(const storage::Reader& reader, std::string_view id, json::array& out) {
  HERALD_ASSIGN_OR_RETURN(auto user, messaging::Domain::get_user(reader, id));
  if (!user) return Status::ok_status();
  json::array devices;
  for (const auto& device_id : user->device_ids()) {
    HERALD_ASSIGN_OR_RETURN(auto device, messaging::Domain::get_device(reader, device_id));
    if (device) devices.emplace_back(device_json(*device));
  }
  HERALD_ASSIGN_OR_RETURN(
      auto chats, messaging::Domain::chat_index(reader, id, kSearchRecentConversations, {}));
  json::array conversations;
  for (const auto& chat : chats.entries) conversations.emplace_back(chat_json(chat));
  out.emplace_back(json::object{{"kind", "user"},
                                {"user", user_json(*user)},
                                {"devices", std::move(devices)},
                                {"conversations", std::move(conversations)}});
  return Status::ok_status();
}

Status find_device(const storage::Reader& reader, std::string_view id, json::array& out) {
  HERALD_ASSIGN_OR_RETURN(auto device, messaging::Domain::get_device(reader, id));
  if (!device) return Status::ok_status();
  out.emplace_back(json::object{
      {"kind", "device"}, {"device", device_json(*device)}, {"user_id", device->user_id()}});
  return Status::ok_status();
}

Status find_workflow(const storage::Reader& reader, std::string_view id, json::array& out) {
  HERALD_ASSIGN_OR_RETURN(auto record, workflow::Engine::read_workflow(reader, id));
  json::object o{{"kind", "workflow"}, {"id", std::string(id)}};
  if (record) {
    o["type"] = record->type();
    o["status"] = lower_status(record->status());
    o["state"] = record->state();
    o["updated_ms"] = record->updated_ms();
  } else {
    HERALD_ASSIGN_OR_RETURN(auto summary, workflow::Engine::read_summary(reader, id));
    if (!summary) return Status::ok_status();
    o["type"] = summary->type();
    o["status"] = lower_status(summary->status());
    o["state"] = summary->state();
    o["updated_ms"] = summary->closed_ms();
    o["purged"] = true;
  }
  if (const auto ref = message_of_workflow(id)) o["message"] = message_ref_json(*ref);
  out.emplace_back(std::move(o));
  return Status::ok_status();
}

}  // namespace

std::optional<MessageRef> parse_message_query(std::string_view query) {
  const std::size_t cut = query.find_last_of(" /#");
  if (cut == std::string_view::npos || cut == 0) return std::nullopt;
  const std::string_view conversation = trim(query.substr(0, cut));
  const auto seq = positive_number(trim(query.substr(cut + 1)));
  if (conversation.empty() || !seq) return std::nullopt;
  return MessageRef{std::string(conversation), *seq};
}

std::optional<std::vector<std::string>> split_workflow_id(std::string_view id) {
  std::vector<std::string> parts(1);
  for (std::size_t i = 0; i < id.size(); ++i) {
    if (id[i] == '/') {
      parts.emplace_back();
    } else if (id[i] == '%') {
      if (i + 2 >= id.size()) return std::nullopt;
      const int hi = hex_digit(id[i + 1]);
      const int lo = hex_digit(id[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      parts.back().push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      parts.back().push_back(id[i]);
    }
  }
  return parts;
}

std::optional<MessageRef> message_of_workflow(std::string_view workflow_id) {
  const auto parts = split_workflow_id(workflow_id);
  if (!parts) return std::nullopt;
  const std::vector<std::string>& p = *parts;
  if (p.size() == 4 && p[0] == "delivery") {
    if (const auto seq = positive_number(p[2])) return MessageRef{p[1], *seq};
  }
  if (p.size() == 5 && p[0] == "read_sync") {
    if (const auto seq = positive_number(p[4])) return MessageRef{p[1], *seq};
  }
  return std::nullopt;
}

Result<json::array> search(const storage::Reader& reader, std::string_view query) {
  query = trim(query);
  if (query.empty() || query.size() > kMaxSearchQueryBytes) {
    return Status::invalid_argument(fmt::format("a query has 1 to {} bytes", kMaxSearchQueryBytes));
  }
  json::array out;
  HERALD_RETURN_IF_ERROR(find_message(reader, query, out));
  HERALD_RETURN_IF_ERROR(find_conversation(reader, query, out));
  HERALD_RETURN_IF_ERROR(find_user(reader, query, out));
  HERALD_RETURN_IF_ERROR(find_device(reader, query, out));
  HERALD_RETURN_IF_ERROR(find_workflow(reader, query, out));
  return out;
}

}  // namespace herald::server
