#include "client/herald_client.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/json.hpp>
#include <charconv>
#include <chrono>
#include <limits>
#include <map>
#include <utility>

#include "base/assert.h"

namespace herald::client {

namespace json = boost::json;

namespace {

std::int64_t steady_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

Status bad_field(std::string_view key, std::string_view what) {
  return Status::corruption(fmt::format("the server's field \"{}\" is not {}", key, what));
}

Status absent(std::string_view key, bool required) {
  return required ? Status::corruption(fmt::format("the server's answer lacks \"{}\"", key))
                  : Status::ok_status();
}

// The object under `key` parsed with `parse`.
template <typename Parse>
auto read_object(const json::object& o, std::string_view key, Parse parse)
    -> decltype(parse(std::declval<const json::value&>())) {
  const json::value* v = json_field(o, key);
  if (v == nullptr) return absent(key, true);
  return parse(*v);
}

Result<TypingEvent> parse_typing(const json::object& o) {
  TypingEvent e;
  HERALD_RETURN_IF_ERROR(read_json_field(o, "conversation_id", e.conversation_id));
  HERALD_RETURN_IF_ERROR(read_json_field(o, "user_id", e.user_id));
  HERALD_RETURN_IF_ERROR(read_json_field(o, "active", e.active));
  return e;
}

Result<PresenceEvent> parse_presence(const json::object& o) {
  PresenceEvent e;
  HERALD_RETURN_IF_ERROR(read_json_field(o, "user_id", e.user_id));
  HERALD_RETURN_IF_ERROR(read_json_field(o, "online", e.online));
  HERALD_RETURN_IF_ERROR(read_json_field(o, "last_seen_ms", e.last_seen_ms));
  return e;
}

// An ok or error frame.
Result<ServerFrame> parse_answer(json::object o, bool ok) {
  ServerFrame frame;
  frame.is_answer = true;
  const json::value* re = json_field(o, "re");
  if (re != nullptr) {
    if (!re->is_string()) return bad_field("re", "a string or null");
    frame.answer.re = std::string(re->get_string().data(), re->get_string().size());
  }
  if (!ok) {
    std::string code;
    std::string message;
    HERALD_RETURN_IF_ERROR(read_json_field(o, "code", code));
    HERALD_RETURN_IF_ERROR(read_json_field(o, "message", message, /*required=*/false));
    frame.answer.status = status_of_error(code, message);
  }
  frame.fields = std::make_shared<const json::object>(std::move(o));
  return frame;
}

Result<ServerFrame> parse_event(const json::object& o, std::string_view type) {
  ServerFrame frame;
  if (type == "change") {
    HERALD_ASSIGN_OR_RETURN(Change change, read_object(o, "change", parse_change));
    frame.event = std::move(change);
  } else if (type == "typing") {
    HERALD_ASSIGN_OR_RETURN(TypingEvent typing, parse_typing(o));
    frame.event = std::move(typing);
  } else if (type == "presence") {
    HERALD_ASSIGN_OR_RETURN(PresenceEvent presence, parse_presence(o));
    frame.event = std::move(presence);
  } else if (type == "resync_required") {
    ResyncEvent resync;
    HERALD_RETURN_IF_ERROR(read_json_field(o, "cursor", resync.cursor));
    frame.event = resync;
  } else {
    return Status::corruption(fmt::format("unknown server frame type \"{}\"", type));
  }
  return frame;
}

bool is_code_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

}  // namespace

// ------------------------------------------------------------------ JSON readers

const json::value* json_field(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v == nullptr || v->is_null() ? nullptr : v;
}

Status read_json_field(const json::object& o, std::string_view key, std::string& out,
                       bool required) {
  const json::value* v = json_field(o, key);
  if (v == nullptr) return absent(key, required);
  if (!v->is_string()) return bad_field(key, "a string");
  out.assign(v->get_string().data(), v->get_string().size());
  return Status::ok_status();
}

Status read_json_field(const json::object& o, std::string_view key, std::uint64_t& out,
                       bool required) {
  const json::value* v = json_field(o, key);
  if (v == nullptr) return absent(key, required);
  if (v->is_uint64()) {
    out = v->get_uint64();
  } else if (v->is_int64() && v->get_int64() >= 0) {
    out = static_cast<std::uint64_t>(v->get_int64());
  } else {
    return bad_field(key, "a non-negative integer");
  }
  return Status::ok_status();
}

Status read_json_field(const json::object& o, std::string_view key, std::int64_t& out,
                       bool required) {
  const json::value* v = json_field(o, key);
  if (v == nullptr) return absent(key, required);
  if (v->is_int64()) {
    out = v->get_int64();
  } else if (v->is_uint64() && v->get_uint64() <= static_cast<std::uint64_t>(
                                                      std::numeric_limits<std::int64_t>::max())) {
    out = static_cast<std::int64_t>(v->get_uint64());
  } else {
    return bad_field(key, "an integer");
  }
  return Status::ok_status();
}

Status read_json_field(const json::object& o, std::string_view key, bool& out, bool required) {
  const json::value* v = json_field(o, key);
  if (v == nullptr) return absent(key, required);
  if (!v->is_bool()) return bad_field(key, "a boolean");
  out = v->get_bool();
  return Status::ok_status();
}

Status read_json_field(const json::object& o, std::string_view key, std::vector<std::string>& out,
                       bool required) {
  if (json_field(o, key) == nullptr) return absent(key, required);
  out.clear();
  return for_each_json_item(
      o, key,
      [&](const json::value& item) {
        if (!item.is_string()) return bad_field(key, "an array of strings");
        out.emplace_back(item.get_string().data(), item.get_string().size());
        return Status::ok_status();
      },
      required);
}

Result<const json::object*> json_object_of(const json::value& v, std::string_view what) {
  if (!v.is_object()) return Status::corruption(fmt::format("{} is not a JSON object", what));
  return &v.get_object();
}

Status for_each_json_item(const json::object& o, std::string_view key,
                          const std::function<Status(const json::value&)>& each, bool required) {
  const json::value* v = json_field(o, key);
  if (v == nullptr) return absent(key, required);
  if (!v->is_array()) return bad_field(key, "an array");
  for (const json::value& item : v->get_array()) {
    HERALD_RETURN_IF_ERROR(each(item));
  }
  return Status::ok_status();
}

// ------------------------------------------------------------------ codec

Status status_of_error(std::string_view code, std::string_view message) {
  static const std::map<std::string_view, Code, std::less<>> kCodes{
      {"malformed_json", Code::kInvalidArgument},
      {"unknown_type", Code::kInvalidArgument},
      {"missing_field", Code::kInvalidArgument},
      {"wrong_type", Code::kInvalidArgument},
      {"invalid_argument", Code::kInvalidArgument},
      {"too_large", Code::kResourceExhausted},
      {"overloaded", Code::kResourceExhausted},
      {"rate_limited", Code::kResourceExhausted},
      {"resource_exhausted", Code::kResourceExhausted},
      {"not_found", Code::kNotFound},
      {"timeout", Code::kTimeout},
      {"unavailable", Code::kUnavailable},
      {"outcome_unknown", Code::kTimeout},
      {"not_authenticated", Code::kFailedPrecondition},
      {"already_authenticated", Code::kFailedPrecondition},
      {"unauthorized", Code::kFailedPrecondition},
      {"admin_disabled", Code::kFailedPrecondition},
      {"not_member", Code::kFailedPrecondition},
      {"read_beyond_last_seq", Code::kFailedPrecondition},
      {"read_not_member", Code::kFailedPrecondition},
      {"forbidden", Code::kFailedPrecondition},
      {"conflict", Code::kFailedPrecondition},
      {"resync_required", Code::kFailedPrecondition},
  };
  const auto it = kCodes.find(code);
  const Code mapped = it == kCodes.end() ? Code::kIOError : it->second;
  // An empty code would make an error whose code cannot be read back.
  const std::string_view shown = code.empty() ? std::string_view("internal") : code;
  return Status(mapped, fmt::format("{}: {}", shown, message));
}

std::string_view protocol_error_code(const Status& status) {
  const std::string_view message = status.message();
  const std::size_t colon = message.find(": ");
  if (status.ok() || colon == std::string_view::npos || colon == 0) return {};
  const std::string_view code = message.substr(0, colon);
  return std::all_of(code.begin(), code.end(), is_code_char) ? code : std::string_view();
}

std::string encode_request(std::string_view type, std::string_view id, const json::object& fields) {
  HERALD_ASSERT(!fields.contains("type") && !fields.contains("id"),
                "request fields must not carry the envelope");
  json::object frame;
  frame.reserve(fields.size() + 2);
  frame["type"] = type;
  if (!id.empty()) frame["id"] = id;
  for (const auto& entry : fields) {
    frame.emplace(entry.key(), entry.value());
  }
  return json::serialize(frame);
}

Result<ServerFrame> parse_server_frame(std::string_view text) {
  boost::system::error_code ec;
  json::value parsed = json::parse(text, ec);
  if (ec || !parsed.is_object()) {
    return Status::corruption("the server sent a frame that is not a JSON object");
  }
  json::object& o = parsed.get_object();
  std::string type;
  HERALD_RETURN_IF_ERROR(read_json_field(o, "type", type));
  if (type == "ok" || type == "error") return parse_answer(std::move(o), type == "ok");
  return parse_event(o, type);
}

Result<Message> parse_message(const json::value& v) {
  HERALD_ASSIGN_OR_RETURN(const json::object* o, json_object_of(v, "a message"));
  Message m;
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "conversation_id", m.conversation_id));
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "seq", m.seq));
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "kind", m.kind));
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "sender", m.sender));
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "sender_device", m.sender_device));
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "client_message_id", m.client_message_id));
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "time_ms", m.time_ms));
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "body", m.body));
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "edited", m.edited));
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "edited_ms", m.edited_ms));
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "deleted", m.deleted));
  return m;
}

Result<Change> parse_change(const json::value& v) {
  HERALD_ASSIGN_OR_RETURN(const json::object* o, json_object_of(v, "a change"));
  Change c;
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "cursor", c.cursor));
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "kind", c.kind));
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "conversation_id", c.conversation_id));
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "seq", c.seq));
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "actor", c.actor));
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "time_ms", c.time_ms));
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "users", c.users, /*required=*/false));
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "role", c.role, /*required=*/false));
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "title", c.title, /*required=*/false));
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "device_id", c.device_id, /*required=*/false));
  if (json_field(*o, "message") != nullptr) {
    HERALD_ASSIGN_OR_RETURN(c.message, read_object(*o, "message", parse_message));
  }
  return c;
}

Result<Conversation> parse_conversation(const json::value& v) {
  HERALD_ASSIGN_OR_RETURN(const json::object* o, json_object_of(v, "a conversation"));
  Conversation c;
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "conversation_id", c.conversation_id));
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "kind", c.kind));
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "title", c.title, /*required=*/false));
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "created_by", c.created_by));
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "created_ms", c.created_ms));
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "last_seq", c.last_seq));
  auto parse_member = [](const json::value& item) -> Result<Member> {
    HERALD_ASSIGN_OR_RETURN(const json::object* m, json_object_of(item, "a member"));
    Member member;
    HERALD_RETURN_IF_ERROR(read_json_field(*m, "user_id", member.user_id));
    HERALD_RETURN_IF_ERROR(read_json_field(*m, "role", member.role));
    HERALD_RETURN_IF_ERROR(read_json_field(*m, "joined_ms", member.joined_ms));
    return member;
  };
  HERALD_ASSIGN_OR_RETURN(c.members, read_json_array<Member>(*o, "members", parse_member));
  return c;
}

Result<Chat> parse_chat(const json::value& v) {
  HERALD_ASSIGN_OR_RETURN(const json::object* o, json_object_of(v, "a chat"));
  Chat c;
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "conversation_id", c.conversation_id));
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "kind", c.kind));
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "title", c.title, /*required=*/false));
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "activity_ms", c.activity_ms));
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "last_seq", c.last_seq));
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "last_sender", c.last_sender, /*required=*/false));
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "preview", c.preview, /*required=*/false));
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "unread", c.unread));
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "muted", c.muted));
  return c;
}

Result<Prefs> parse_prefs(const json::value& v) {
  HERALD_ASSIGN_OR_RETURN(const json::object* o, json_object_of(v, "preferences"));
  Prefs p;
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "push_enabled", p.push_enabled));
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "email_fallback", p.email_fallback));
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "email_delay_ms", p.email_delay_ms));
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "muted", p.muted));
  HERALD_RETURN_IF_ERROR(read_json_field(*o, "hide_previews", p.hide_previews));
  return p;
}

// ------------------------------------------------------------------ the client

HeraldClient::HeraldClient(std::unique_ptr<WsClient> ws) : ws_(std::move(ws)) {}

HeraldClient::~HeraldClient() = default;

Result<std::unique_ptr<HeraldClient>> HeraldClient::connect(const std::string& host,
                                                            std::uint16_t port,
                                                            std::uint32_t timeout_ms,
                                                            const std::optional<ClientTls>& tls) {
  HERALD_ASSIGN_OR_RETURN(std::unique_ptr<WsClient> ws,
                          WsClient::connect(host, port, kClientSocketPath, {}, timeout_ms, tls));
  return std::unique_ptr<HeraldClient>(new HeraldClient(std::move(ws)));
}

Result<std::unique_ptr<HeraldClient>> HeraldClient::connect_url(std::string_view url,
                                                                const ClientTls& tls,
                                                                std::uint32_t timeout_ms) {
  HERALD_ASSIGN_OR_RETURN(const ServerUrl server, parse_server_url(url));
  return connect(server.host, server.port, timeout_ms,
                 server.tls ? std::optional<ClientTls>(tls) : std::nullopt);
}

Result<ServerUrl> parse_server_url(std::string_view url) {
  ServerUrl out;
  const std::size_t separator = url.find("://");
  const std::string_view scheme = url.substr(0, separator);
  if (separator == std::string_view::npos ||
      (scheme != "ws" && scheme != "wss" && scheme != "http" && scheme != "https")) {
    return Status::invalid_argument("a server URL starts with ws://, wss://, http:// or https://");
  }
  out.tls = scheme == "wss" || scheme == "https";
  std::string_view rest = url.substr(separator + 3);
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find_first_of("/?#@") != std::string_view::npos) {
    return Status::invalid_argument("a server URL names a host and port only");
  }
  std::string_view port_text;
  if (!rest.empty() && rest.front() == '[') {
    const std::size_t close = rest.find(']');
    if (close == std::string_view::npos) {
      return Status::invalid_argument("an IPv6 literal lacks its ']'");
    }
    out.host = std::string(rest.substr(1, close - 1));
    const std::string_view after = rest.substr(close + 1);
    if (!after.empty() && after.front() != ':') {
      return Status::invalid_argument("only a port may follow the host");
    }
    port_text = after.empty() ? after : after.substr(1);
    if (after == ":") return Status::invalid_argument("the port is empty");
  } else {
    const std::size_t colon = rest.find(':');
    out.host = std::string(rest.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = rest.substr(colon + 1);
      if (port_text.empty()) return Status::invalid_argument("the port is empty");
    }
  }
  if (out.host.empty()) return Status::invalid_argument("the server URL names no host");
  out.port = out.tls ? kDefaultTlsPort : kDefaultPlainPort;
  if (!port_text.empty()) {
    unsigned port = 0;
    const auto [ptr, ec] =
        std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc() || ptr != port_text.data() + port_text.size() || port == 0 ||
        port > std::numeric_limits<std::uint16_t>::max()) {
      return Status::invalid_argument("the port is not a number from 1 to 65535");
    }
    out.port = static_cast<std::uint16_t>(port);
  }
  return out;
}

void HeraldClient::set_request_timeout_ms(std::uint32_t timeout_ms) {
  HERALD_ASSERT(timeout_ms > 0, "a request timeout must be positive");
  request_timeout_ms_ = timeout_ms;
}

Status HeraldClient::fail(Status status) {
  HERALD_ASSERT(!status.ok(), "a client ends with an error");
  if (!failed_.has_value()) failed_ = std::move(status);
  return *failed_;
}

Status HeraldClient::enqueue(Event event) {
  if (events_.size() >= kMaxQueuedEvents) {
    return fail(Status::resource_exhausted(
        fmt::format("more than {} events were received and not popped", kMaxQueuedEvents)));
  }
  events_.push_back(std::move(event));
  return Status::ok_status();
}

Result<std::optional<ServerFrame>> HeraldClient::receive_frame(std::int64_t deadline_ms) {
  if (failed_.has_value()) return *failed_;
  const std::int64_t left_ms = deadline_ms - steady_now_ms();
  if (left_ms <= 0) return Status::timeout("the deadline passed");
  Result<std::string> text = ws_->receive(static_cast<std::uint32_t>(left_ms));
  if (!text.ok()) {
    if (text.status().code() == Code::kTimeout && ws_->is_open()) return text.status();
    return fail(text.status());
  }
  Result<ServerFrame> frame = parse_server_frame(*text);
  if (!frame.ok()) return fail(frame.status());
  if (frame->is_answer) {
    frame->answer.text = std::move(*text);
    return std::optional<ServerFrame>(std::move(*frame));
  }
  HERALD_RETURN_IF_ERROR(enqueue(std::move(*frame->event)));
  return std::optional<ServerFrame>();
}

Result<HeraldClient::Fields> HeraldClient::call(std::string_view type, const json::object& fields,
                                                Fields* error_frame) {
  if (failed_.has_value()) return *failed_;
  const std::string id = fmt::format("c-{}", next_request_++);
  if (Status sent = ws_->send_text(encode_request(type, id, fields)); !sent.ok()) {
    return fail(std::move(sent));
  }
  const std::int64_t deadline_ms = steady_now_ms() + request_timeout_ms_;
  while (true) {
    Result<std::optional<ServerFrame>> frame = receive_frame(deadline_ms);
    if (!frame.ok()) {
      if (frame.status().code() != Code::kTimeout || failed_.has_value()) return frame.status();
      return Status::timeout(fmt::format("no answer to the \"{}\" request {} within {} ms", type,
                                         id, request_timeout_ms_));
    }
    if (!frame->has_value() || (*frame)->answer.re != id) continue;  // an event, or stale
    if (!(*frame)->answer.status.ok()) {
      if (error_frame != nullptr) *error_frame = (*frame)->fields;
      return (*frame)->answer.status;
    }
    return std::move((*frame)->fields);
  }
}

Status HeraldClient::call_simple(std::string_view type, const json::object& fields) {
  return call(type, fields).status();
}

Result<AuthInfo> HeraldClient::auth(const std::string& user_id, const std::string& device_id,
                                    const std::string& token, std::optional<std::uint64_t> since) {
  json::object fields{{"user_id", user_id}, {"device_id", device_id}, {"token", token}};
  if (since.has_value()) fields["since"] = *since;
  return authenticate(fields);
}

Result<AuthInfo> HeraldClient::auth_with_token(const std::string& jwt,
                                               std::optional<std::uint64_t> since) {
  json::object fields{{"jwt", jwt}};
  if (since.has_value()) fields["since"] = *since;
  return authenticate(fields);
}

Result<std::int64_t> HeraldClient::refresh(const std::string& jwt) {
  HERALD_ASSIGN_OR_RETURN(Fields ok, call("refresh", {{"jwt", jwt}}));
  std::int64_t expires_at_ms = 0;
  HERALD_RETURN_IF_ERROR(read_json_field(*ok, "expires_at_ms", expires_at_ms));
  return expires_at_ms;
}

Status HeraldClient::push_register(const std::string& provider, const std::string& token) {
  return call("push.register", {{"provider", provider}, {"token", token}}).status();
}

Result<AuthInfo> HeraldClient::authenticate(const json::object& fields) {
  HERALD_ASSIGN_OR_RETURN(Fields ok, call("auth", fields));
  AuthInfo info;
  HERALD_RETURN_IF_ERROR(read_json_field(*ok, "user_id", info.user_id));
  HERALD_RETURN_IF_ERROR(read_json_field(*ok, "device_id", info.device_id));
  HERALD_RETURN_IF_ERROR(read_json_field(*ok, "server_time_ms", info.server_time_ms));
  HERALD_RETURN_IF_ERROR(read_json_field(*ok, "cursor", info.cursor));
  HERALD_RETURN_IF_ERROR(
      read_json_field(*ok, "resync_required", info.resync_required, /*required=*/false));
  HERALD_RETURN_IF_ERROR(
      read_json_field(*ok, "expires_at_ms", info.expires_at_ms, /*required=*/false));
  return info;
}

Result<SendResult> HeraldClient::send(const std::string& conversation_id,
                                      const std::string& client_message_id,
                                      const std::string& body) {
  HERALD_ASSIGN_OR_RETURN(Fields ok, call("send", {{"conversation_id", conversation_id},
                                                   {"client_message_id", client_message_id},
                                                   {"body", body}}));
  SendResult sent;
  HERALD_RETURN_IF_ERROR(read_json_field(*ok, "seq", sent.seq));
  HERALD_RETURN_IF_ERROR(read_json_field(*ok, "existed", sent.existed));
  HERALD_RETURN_IF_ERROR(read_json_field(*ok, "server_time_ms", sent.server_time_ms));
  return sent;
}

Status HeraldClient::edit(const std::string& conversation_id, std::uint64_t seq,
                          const std::string& body) {
  return call_simple("edit", {{"conversation_id", conversation_id}, {"seq", seq}, {"body", body}});
}

Status HeraldClient::remove(const std::string& conversation_id, std::uint64_t seq) {
  return call_simple("delete", {{"conversation_id", conversation_id}, {"seq", seq}});
}

Result<std::uint64_t> HeraldClient::ack(const std::string& conversation_id, std::uint64_t seq) {
  HERALD_ASSIGN_OR_RETURN(Fields ok,
                          call("ack", {{"conversation_id", conversation_id}, {"seq", seq}}));
  std::uint64_t acked = 0;
  HERALD_RETURN_IF_ERROR(read_json_field(*ok, "acked_up_to", acked));
  return acked;
}

Result<ReadResult> HeraldClient::read(const std::string& conversation_id, std::uint64_t seq) {
  HERALD_ASSIGN_OR_RETURN(Fields ok,
                          call("read", {{"conversation_id", conversation_id}, {"seq", seq}}));
  ReadResult result;
  HERALD_RETURN_IF_ERROR(read_json_field(*ok, "saga_id", result.saga_id));
  HERALD_RETURN_IF_ERROR(read_json_field(*ok, "cursor", result.cursor));
  return result;
}

Result<SyncResult> HeraldClient::sync(std::uint64_t since, std::optional<std::uint64_t> limit) {
  json::object fields{{"since", since}};
  if (limit.has_value()) fields["limit"] = *limit;
  Fields error;
  auto answer = call("sync", fields, &error);
  SyncResult result;
  if (!answer.ok()) {
    if (protocol_error_code(answer.status()) != "resync_required" || error == nullptr) {
      return answer.status();
    }
    result.resync_required = true;
    HERALD_RETURN_IF_ERROR(read_json_field(*error, "cursor", result.cursor));
    return result;
  }
  const Fields& ok = *answer;
  HERALD_ASSIGN_OR_RETURN(result.changes, read_json_array<Change>(*ok, "changes", parse_change));
  HERALD_RETURN_IF_ERROR(read_json_field(*ok, "cursor", result.cursor));
  HERALD_RETURN_IF_ERROR(read_json_field(*ok, "has_more", result.has_more));
  return result;
}

Result<HistoryResult> HeraldClient::history(const std::string& conversation_id,
                                            std::optional<std::uint64_t> before_seq,
                                            std::optional<std::uint64_t> limit) {
  json::object fields{{"conversation_id", conversation_id}};
  if (before_seq.has_value()) fields["before_seq"] = *before_seq;
  if (limit.has_value()) fields["limit"] = *limit;
  HERALD_ASSIGN_OR_RETURN(Fields ok, call("history", fields));
  HistoryResult result;
  HERALD_ASSIGN_OR_RETURN(result.messages,
                          read_json_array<Message>(*ok, "messages", parse_message));
  HERALD_RETURN_IF_ERROR(read_json_field(*ok, "next_before", result.next_before));
  return result;
}

Result<HistoryAfterResult> HeraldClient::history_after(const std::string& conversation_id,
                                                       std::uint64_t after_seq,
                                                       std::optional<std::uint64_t> limit) {
  json::object fields{{"conversation_id", conversation_id}, {"after_seq", after_seq}};
  if (limit.has_value()) fields["limit"] = *limit;
  HERALD_ASSIGN_OR_RETURN(Fields ok, call("history", fields));
  HistoryAfterResult result;
  HERALD_ASSIGN_OR_RETURN(result.messages,
                          read_json_array<Message>(*ok, "messages", parse_message));
  HERALD_RETURN_IF_ERROR(read_json_field(*ok, "next_after", result.next_after));
  HERALD_RETURN_IF_ERROR(read_json_field(*ok, "has_more", result.has_more));
  return result;
}

Result<ChatsResult> HeraldClient::chats(std::optional<std::uint64_t> limit,
                                        const std::optional<std::string>& page) {
  json::object fields;
  if (limit.has_value()) fields["limit"] = *limit;
  if (page.has_value()) fields["page"] = *page;
  HERALD_ASSIGN_OR_RETURN(Fields ok, call("chats", fields));
  ChatsResult result;
  HERALD_ASSIGN_OR_RETURN(result.chats, read_json_array<Chat>(*ok, "chats", parse_chat));
  std::string next;
  HERALD_RETURN_IF_ERROR(read_json_field(*ok, "next_page", next, /*required=*/false));
  if (json_field(*ok, "next_page") != nullptr) result.next_page = std::move(next);
  return result;
}

Result<Conversation> HeraldClient::conversation_create(const NewConversation& spec) {
  json::array members;
  for (const std::string& m : spec.members) members.emplace_back(m);
  json::object fields{{"kind", spec.kind}, {"members", std::move(members)}};
  if (!spec.title.empty()) fields["title"] = spec.title;
  if (!spec.conversation_id.empty()) fields["conversation_id"] = spec.conversation_id;
  HERALD_ASSIGN_OR_RETURN(Fields ok, call("conversation.create", fields));
  return read_object(*ok, "conversation", parse_conversation);
}

Result<Conversation> HeraldClient::conversation_get(const std::string& conversation_id) {
  HERALD_ASSIGN_OR_RETURN(Fields ok,
                          call("conversation.get", {{"conversation_id", conversation_id}}));
  return read_object(*ok, "conversation", parse_conversation);
}

Status HeraldClient::conversation_rename(const std::string& conversation_id,
                                         const std::string& title) {
  return call_simple("conversation.rename",
                     {{"conversation_id", conversation_id}, {"title", title}});
}

Status HeraldClient::members_add(const std::string& conversation_id,
                                 const std::vector<std::string>& members) {
  json::array list;
  for (const std::string& m : members) list.emplace_back(m);
  return call_simple("members.add",
                     {{"conversation_id", conversation_id}, {"members", std::move(list)}});
}

Status HeraldClient::members_remove(const std::string& conversation_id,
                                    const std::string& user_id) {
  return call_simple("members.remove",
                     {{"conversation_id", conversation_id}, {"user_id", user_id}});
}

Status HeraldClient::members_role(const std::string& conversation_id, const std::string& user_id,
                                  const std::string& role) {
  return call_simple("members.role",
                     {{"conversation_id", conversation_id}, {"user_id", user_id}, {"role", role}});
}

Status HeraldClient::leave(const std::string& conversation_id) {
  return call_simple("conversation.leave", {{"conversation_id", conversation_id}});
}

Result<Prefs> HeraldClient::prefs_get(const std::optional<std::string>& conversation_id) {
  json::object fields;
  if (conversation_id.has_value()) fields["conversation_id"] = *conversation_id;
  HERALD_ASSIGN_OR_RETURN(Fields ok, call("prefs.get", fields));
  return read_object(*ok, "prefs", parse_prefs);
}

Result<Prefs> HeraldClient::prefs_set(const std::optional<std::string>& conversation_id,
                                      const PrefsUpdate& update) {
  json::object fields;
  if (conversation_id.has_value()) fields["conversation_id"] = *conversation_id;
  if (update.push_enabled.has_value()) fields["push_enabled"] = *update.push_enabled;
  if (update.email_fallback.has_value()) fields["email_fallback"] = *update.email_fallback;
  if (update.email_delay_ms.has_value()) fields["email_delay_ms"] = *update.email_delay_ms;
  if (update.muted.has_value()) fields["muted"] = *update.muted;
  if (update.hide_previews.has_value()) fields["hide_previews"] = *update.hide_previews;
  HERALD_ASSIGN_OR_RETURN(Fields ok, call("prefs.set", fields));
  return read_object(*ok, "prefs", parse_prefs);
}

Status HeraldClient::typing(const std::string& conversation_id, bool active) {
  return call_simple("typing", {{"conversation_id", conversation_id}, {"active", active}});
}

Result<std::int64_t> HeraldClient::ping() {
  HERALD_ASSIGN_OR_RETURN(Fields ok, call("ping", {}));
  std::int64_t server_time_ms = 0;
  HERALD_RETURN_IF_ERROR(read_json_field(*ok, "server_time_ms", server_time_ms));
  return server_time_ms;
}

// ------------------------------------------------------------------ events and raw frames

template <typename Pick>
Result<Event> HeraldClient::next_matching(std::uint32_t timeout_ms, Pick pick) {
  if (const auto it = std::find_if(events_.begin(), events_.end(), pick); it != events_.end()) {
    Event event = std::move(*it);
    events_.erase(it);
    return event;
  }
  const std::int64_t deadline_ms = steady_now_ms() + timeout_ms;
  while (true) {
    Result<std::optional<ServerFrame>> frame = receive_frame(deadline_ms);
    if (!frame.ok()) {
      if (frame.status().code() != Code::kTimeout || failed_.has_value()) return frame.status();
      return Status::timeout(fmt::format("no event within {} ms", timeout_ms));
    }
    if (frame->has_value() || !pick(events_.back())) continue;  // a stale answer, or skipped
    Event event = std::move(events_.back());
    events_.pop_back();
    return event;
  }
}

Result<Event> HeraldClient::next_event(std::uint32_t timeout_ms) {
  return next_matching(timeout_ms, [](const Event&) { return true; });
}

Result<Change> HeraldClient::next_change(std::uint32_t timeout_ms) {
  HERALD_ASSIGN_OR_RETURN(Event event, next_matching(timeout_ms, [](const Event& e) {
                            return std::holds_alternative<Change>(e);
                          }));
  return std::get<Change>(std::move(event));
}

Result<Answer> HeraldClient::next_answer(std::uint32_t timeout_ms) {
  const std::int64_t deadline_ms = steady_now_ms() + timeout_ms;
  while (true) {
    Result<std::optional<ServerFrame>> frame = receive_frame(deadline_ms);
    if (!frame.ok()) {
      if (frame.status().code() != Code::kTimeout || failed_.has_value()) return frame.status();
      return Status::timeout(fmt::format("no answer within {} ms", timeout_ms));
    }
    if (frame->has_value()) return std::move((*frame)->answer);
  }
}

Status HeraldClient::send_raw(std::string_view text) {
  if (failed_.has_value()) return *failed_;
  if (Status sent = ws_->send_text(text); !sent.ok()) return fail(std::move(sent));
  return Status::ok_status();
}

Status HeraldClient::send_binary(std::string_view bytes) {
  if (failed_.has_value()) return *failed_;
  if (Status sent = ws_->send_binary(bytes); !sent.ok()) return fail(std::move(sent));
  return Status::ok_status();
}

Result<std::string> HeraldClient::receive_raw(std::uint32_t timeout_ms) {
  if (failed_.has_value()) return *failed_;
  Result<std::string> text = ws_->receive(timeout_ms);
  if (!text.ok() && !(text.status().code() == Code::kTimeout && ws_->is_open())) {
    return fail(text.status());
  }
  return text;
}

Status HeraldClient::close() {
  return ws_->close();
}

bool HeraldClient::is_open() const {
  return !failed_.has_value() && ws_->is_open();
}

std::optional<std::uint16_t> HeraldClient::close_code() const {
  return ws_->close_code();
}

}  // namespace herald::client
