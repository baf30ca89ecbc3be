#include "server/messaging_api.h"

#include <fmt/format.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <boost/json.hpp>
#include <charconv>
#include <utility>

#include "messaging/delivery.h"
#include "messaging/domain.h"
#include "messaging/read_sync.h"
#include "server/messaging_json.h"
#include "server/search.h"
#include "server/webhooks_api.h"
#include "workflow/engine.h"

namespace herald::server {

namespace json = boost::json;
using messaging::Domain;

namespace {

// Delivery history events listed per recipient in a timeline, at most.
constexpr std::size_t kMaxTimelineEvents = 200;
// Read positions probed per device for the read-sync saga that covered a message, at most.
constexpr std::uint64_t kMaxReadSagaProbes = 64;

unsigned http_status_of(std::string_view code) {
  if (code == "not_found") return 404;
  if (code == "conflict") return 409;
  if (code == "forbidden" || code == "not_member" || code == "admin_disabled") return 403;
  if (code == "unauthorized") return 401;
  if (code == "too_large") return 413;
  if (code == "rate_limited") return 429;
  if (code == "resource_exhausted") return 507;  // a disk alarm: new content is refused
  if (code == "unavailable" || code == "outcome_unknown") return 503;
  if (code == "timeout") return 504;
  if (code == "internal") return 500;
  return 400;
}

HttpResponse error_of(const FrameError& e) {
  return HttpResponse::error(http_status_of(e.code), e.code, e.message);
}

HttpResponse json_of(unsigned status, const json::object& body) {
  return HttpResponse::json(status, json::serialize(body));
}

std::string hex(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const unsigned char c : bytes) {
    out += fmt::format("{:02x}", c);
  }
  return out;
}

// Parses the body as a JSON object; nullopt after answering the error.
std::optional<json::object> body_object(const HttpRequest& request, Responder& respond) {
  boost::system::error_code ec;
  json::value v = json::parse(request.body, ec);
  if (ec || !v.is_object()) {
    respond(error_of({"malformed_json", "the body must be one JSON object"}));
    return std::nullopt;
  }
  return std::move(v.get_object());
}

rsmpb::Command domain_command(const messagingpb::MessagingCommand& c) {
  rsmpb::Command command;
  command.mutable_module()->set_name(messaging::kModuleName);
  command.mutable_module()->set_payload(c.SerializeAsString());
  return command;
}

std::string_view device_state_name(messagingpb::DeviceDeliveryState state) {
  switch (state) {
    case messagingpb::DEVICE_PENDING: return "pending";
    case messagingpb::DEVICE_PUSHED: return "pushed";
    case messagingpb::DEVICE_DELIVERED: return "delivered";
    case messagingpb::DEVICE_READ: return "read";
    default: return "unknown";
  }
}

std::string lower_status(workflowpb::WorkflowStatus status) {
  std::string name = workflowpb::WorkflowStatus_Name(status);
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

// The provider calls of one push or email attempt (the attempt's history details).
json::array provider_attempts_json(const std::string& details) {
  messagingpb::ProviderAttempts attempts;
  json::array out;
  if (!attempts.ParseFromString(details)) {
    return out;
  }
  for (const auto& a : attempts.attempts()) {
    json::object o{{"provider", a.provider()}, {"status", a.status()}};
    if (!a.device_id().empty()) o["device_id"] = a.device_id();
    if (!a.error_type().empty()) o["error_type"] = a.error_type();
    if (!a.reason().empty()) o["reason"] = a.reason();
    if (!a.provider_id().empty()) o["provider_id"] = a.provider_id();
    if (a.status() != "not_sent") o["latency_ms"] = a.latency_ms();
    if (a.retry_after_ms() > 0) o["retry_after_ms"] = a.retry_after_ms();
    out.emplace_back(std::move(o));
  }
  return out;
}

// One workflow history event as the timeline shows it: the fields every event has, and those of
// an attempt (error, attempt number, next retry, node and term) when set.
json::object history_event_json(const workflowpb::HistoryEvent& e) {
  json::object o{
      {"seq", e.seq()}, {"time_ms", e.time_ms()}, {"kind", e.kind()}, {"name", e.name()}};
  if (!e.error_type().empty()) o["error_type"] = e.error_type();
  if (!e.error_message().empty()) o["error_message"] = e.error_message();
  if (e.attempt() > 0) o["attempt"] = e.attempt();
  if (e.next_attempt_ms() > 0) o["next_attempt_ms"] = e.next_attempt_ms();
  if (e.node_id() > 0) o["node_id"] = e.node_id();
  if (e.term() > 0) o["term"] = e.term();
  return o;
}

// One recipient's delivery workflow as a timeline entry.
json::object recipient_timeline(const storage::Reader& reader, const std::string& workflow_id,
                                const std::string& user_id) {
  json::object out{{"user_id", user_id}, {"workflow_id", workflow_id}};
  auto record = workflow::Engine::read_workflow(reader, workflow_id);
  if (record.ok() && !record->has_value()) {
    // Past the closed-workflow retention only the summary is left: outcome and milestones.
    auto summary = workflow::Engine::read_summary(reader, workflow_id);
    if (summary.ok() && summary->has_value()) {
      const workflowpb::WorkflowSummary& sum = **summary;
      out["state"] = sum.state();
      out["status"] = lower_status(sum.status());
      out["purged"] = true;
      out["closed_ms"] = sum.closed_ms();
      json::array milestones;
      for (const auto& e : sum.milestones()) {
        json::object o{
            {"seq", e.seq()}, {"time_ms", e.time_ms()}, {"kind", e.kind()}, {"name", e.name()}};
        if (!e.error_type().empty()) o["error_type"] = e.error_type();
        milestones.emplace_back(std::move(o));
      }
      out["history"] = std::move(milestones);
      return out;
    }
  }
  if (!record.ok() || !record->has_value()) {
    out["state"] = nullptr;
    return out;
  }
  const workflowpb::WorkflowRecord& r = **record;
  out["state"] = r.state();
  out["status"] = lower_status(r.status());
  if (auto data = messaging::decode_delivery_data(r.data())) {
    json::array devices;
    for (const auto& d : data->devices()) {
      json::object device{{"device_id", d.device_id()},
                          {"state", device_state_name(d.state())},
                          {"delivered_ms", d.delivered_ms()},
                          {"read_ms", d.read_ms()}};
      if (d.push_scheduled()) {
        device["push_accepted"] = d.push_accepted();
        device["pushed_ms"] = d.pushed_ms();
        if (!d.push_error().empty()) device["push_error"] = d.push_error();
      }
      devices.emplace_back(std::move(device));
    }
    out["devices"] = std::move(devices);
    out["escalated"] = data->escalated();
    out["emailed"] = data->emailed();
  }
  json::array history;
  auto events =
      workflow::Engine::read_history(reader, workflow_id, r.run_id(), 0, kMaxTimelineEvents);
  if (events.ok()) {
    for (const auto& e : *events) {
      json::object o = history_event_json(e);
      if (!e.details().empty()) o["attempts"] = provider_attempts_json(e.details());
      history.emplace_back(std::move(o));
    }
  }
  out["history"] = std::move(history);
  return out;
}

// A read-sync saga as a timeline entry: its state and its history (steps, compensations).
json::object read_saga_json(const storage::Reader& reader, const workflowpb::WorkflowRecord& r,
                            const std::string& user_id, const std::string& device_id,
                            std::uint64_t up_to_seq) {
  json::object out{
      {"workflow_id", r.workflow_id()}, {"user_id", user_id}, {"device_id", device_id},
      {"up_to_seq", up_to_seq},         {"state", r.state()}, {"status", lower_status(r.status())}};
  json::array history;
  auto events =
      workflow::Engine::read_history(reader, r.workflow_id(), r.run_id(), 0, kMaxTimelineEvents);
  if (events.ok()) {
    for (const auto& e : *events) {
      json::object o = history_event_json(e);
      if (e.kind() == "compensation_failed" || e.kind() == "resolved_by_operator") {
        o["payload"] = e.payload();
      }
      history.emplace_back(std::move(o));
    }
  }
  out["history"] = std::move(history);
  return out;
}

// The read-sync sagas that first covered message `seq` on each of `user_id`'s devices: for a
// device whose read marker reached `seq`, the saga of the lowest read position at or after it
// (probing at most kMaxReadSagaProbes positions).
void append_read_sagas(const storage::Reader& reader, const std::string& conversation_id,
                       std::uint64_t seq, const std::string& user_id, json::array& out) {
  auto marks = Domain::device_marks(reader, user_id, conversation_id);
  if (!marks.ok()) return;
  for (const auto& mark : *marks) {
    const std::uint64_t last = std::min(mark.read_marker, seq + kMaxReadSagaProbes - 1);
    for (std::uint64_t at = seq; at <= last; ++at) {
      auto record = workflow::Engine::read_workflow(
          reader, messaging::read_sync_workflow_id(user_id, mark.device_id, conversation_id, at));
      if (record.ok() && record->has_value()) {
        out.emplace_back(read_saga_json(reader, **record, user_id, mark.device_id, at));
        break;
      }
    }
  }
}

}  // namespace

MessagingApi::MessagingApi(NodeHost* host) : host_(host) {}

bool MessagingApi::handle(HttpRequest& request, Responder& respond) {
  auto segments = split_path(request.path);
  if (!segments.ok() || segments->size() < 2 || (*segments)[0] != "v1" ||
      (*segments)[1] != "admin") {
    return false;
  }
  route(*segments, request, std::move(respond));
  return true;
}

void MessagingApi::route(const std::vector<std::string>& s, HttpRequest& request,
                         Responder respond) {
  const std::string& m = request.method;
  const std::size_t n = s.size();
  if (n >= 3 && s[2] == "users") {
    if (n == 3 && m == "POST") return create_user(request, std::move(respond));
    if (n == 4 && m == "GET") return get_user(s[3], std::move(respond));
    if (n == 5 && s[4] == "devices" && m == "POST") {
      return create_device(s[3], request, std::move(respond));
    }
    if (n == 5 && s[4] == "preferences" && m == "PUT") {
      return set_preferences(s[3], request, std::move(respond));
    }
    if (n == 5 && s[4] == "revoke" && m == "POST") return revoke_user(s[3], std::move(respond));
    if (n == 6 && s[4] == "devices" && m == "DELETE") {
      return remove_device(s[3], s[5], std::move(respond));
    }
    if (n == 7 && s[4] == "devices" && s[6] == "push" && m == "PUT") {
      return set_push(s[3], s[5], request, std::move(respond));
    }
  } else if (n >= 3 && s[2] == "webhooks") {
    return WebhooksApi(host_).handle(s, request, std::move(respond));
  } else if (n == 3 && s[2] == "search" && m == "GET") {
    return search(request, std::move(respond));
  } else if (n == 3 && s[2] == "retention") {
    if (m == "GET") return get_retention(std::move(respond));
    if (m == "PUT") return set_retention(request, std::move(respond));
  } else if (n >= 3 && s[2] == "conversations") {
    if (n == 3 && m == "POST") return create_conversation(request, std::move(respond));
    if (n == 4 && m == "GET") return get_conversation(s[3], std::move(respond));
    if (n == 5 && s[4] == "messages" && m == "POST") {
      return system_message(s[3], request, std::move(respond));
    }
    if (n == 6 && s[4] == "messages" && m == "GET") {
      std::uint64_t seq = 0;
      const auto [ptr, ec] = std::from_chars(s[5].data(), s[5].data() + s[5].size(), seq);
      if (ec != std::errc() || ptr != s[5].data() + s[5].size()) {
        return respond(error_of({"invalid_argument", "the message seq must be an integer"}));
      }
      return timeline(s[3], seq, std::move(respond));
    }
  }
  respond(error_of({"not_found", "no such admin endpoint"}));
}

namespace {

// Proposes `c` and answers with `on_ok(result)` once it is applied on this node.
void propose(NodeHost* host, const messagingpb::MessagingCommand& c, Responder respond,
             std::function<HttpResponse(const rsmpb::CommandResult&)> on_ok) {
  host->propose(domain_command(c), [respond = std::move(respond), on_ok = std::move(on_ok)](
                                       const Result<rsmpb::CommandResult>& r) {
    if (!r.ok()) return respond(error_of(frame_error_of(r.status())));
    if (r->code() != 0) return respond(error_of(frame_error_of(*r)));
    respond(on_ok(*r));
  });
}

HttpResponse empty_ok(const rsmpb::CommandResult&) {
  return json_of(200, json::object{});
}

}  // namespace

void MessagingApi::create_user(const HttpRequest& request, Responder respond) {
  auto body = body_object(request, respond);
  if (!body) return;
  messagingpb::MessagingCommand c;
  auto* op = c.mutable_create_user();
  std::string user_id;
  std::string name;
  std::string email;
  if (auto e = get_string(*body, "user_id", user_id)) return respond(error_of(*e));
  if (auto e = get_string(*body, "display_name", name, false)) return respond(error_of(*e));
  if (auto e = get_string(*body, "email", email, false)) return respond(error_of(*e));
  op->set_user_id(user_id);
  op->set_display_name(std::move(name));
  op->set_email(std::move(email));
  NodeHost* host = host_;
  propose(host_, c, std::move(respond), [host, user_id](const rsmpb::CommandResult&) {
    auto user = Domain::get_user(host->engine(), user_id);
    if (!user.ok() || !user->has_value()) {
      return error_of({"internal", "the user is missing after its creation"});
    }
    return json_of(201, json::object{{"user", user_json(**user)}});
  });
}

void MessagingApi::get_user(const std::string& user_id, Responder respond) {
  host_->read(
      [user_id, respond = std::move(respond)](const Status& s, const storage::Engine& engine) {
        if (!s.ok()) return respond(error_of(frame_error_of(s)));
        auto user = Domain::get_user(engine, user_id);
        if (!user.ok()) return respond(error_of(frame_error_of(user.status())));
        if (!user->has_value()) return respond(error_of({"not_found", "no such user"}));
        json::array devices;
        for (const auto& id : (*user)->device_ids()) {
          auto device = Domain::get_device(engine, id);
          if (device.ok() && device->has_value()) devices.emplace_back(device_json(**device));
        }
        respond(json_of(200, json::object{{"user", user_json(**user)}, {"devices", devices}}));
      });
}

void MessagingApi::create_device(const std::string& user_id, const HttpRequest& request,
                                 Responder respond) {
  auto body = body_object(request, respond);
  if (!body) return;
  std::string device_id;
  std::string platform;
  if (auto e = get_string(*body, "device_id", device_id)) return respond(error_of(*e));
  if (auto e = get_string(*body, "platform", platform)) return respond(error_of(*e));
  std::string secret(kDeviceSecretBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(secret.data()),
                 static_cast<int>(secret.size())) != 1) {
    return respond(error_of({"internal", "no randomness for the device secret"}));
  }
  const std::string token = hex(secret);
  std::string digest(SHA256_DIGEST_LENGTH, '\0');
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(),
         reinterpret_cast<unsigned char*>(digest.data()));
  messagingpb::MessagingCommand c;
  auto* op = c.mutable_create_device();
  op->set_user_id(user_id);
  op->set_device_id(device_id);
  op->set_platform(std::move(platform));
  op->set_credential_sha256(std::move(digest));
  propose(host_, c, std::move(respond), [device_id, token](const rsmpb::CommandResult&) {
    return json_of(201, json::object{{"device_id", device_id}, {"token", token}});
  });
}

void MessagingApi::set_push(const std::string& user_id, const std::string& device_id,
                            const HttpRequest& request, Responder respond) {
  auto body = body_object(request, respond);
  if (!body) return;
  std::string provider;
  std::string token;
  if (auto e = get_string(*body, "provider", provider)) return respond(error_of(*e));
  if (auto e = get_string(*body, "token", token, false)) return respond(error_of(*e));
  messagingpb::MessagingCommand c;
  auto* op = c.mutable_set_push_token();
  op->set_user_id(user_id);
  op->set_device_id(device_id);
  op->set_push_provider(std::move(provider));
  op->set_push_token(std::move(token));
  propose(host_, c, std::move(respond), empty_ok);
}

void MessagingApi::remove_device(const std::string& user_id, const std::string& device_id,
                                 Responder respond) {
  messagingpb::MessagingCommand c;
  auto* op = c.mutable_remove_device();
  op->set_user_id(user_id);
  op->set_device_id(device_id);
  propose(host_, c, std::move(respond), empty_ok);
}

void MessagingApi::revoke_user(const std::string& user_id, Responder respond) {
  messagingpb::MessagingCommand c;
  c.mutable_revoke_user()->set_user_id(user_id);
  propose(host_, c, std::move(respond), [](const rsmpb::CommandResult& r) {
    messagingpb::RevokeResult revoked;
    if (!revoked.ParseFromString(r.payload())) {
      return error_of({"internal", "the revocation result does not decode"});
    }
    return json_of(200, json::object{{"revoked_at_ms", revoked.revoked_at_ms()}});
  });
}

void MessagingApi::set_preferences(const std::string& user_id, const HttpRequest& request,
                                   Responder respond) {
  auto body = body_object(request, respond);
  if (!body) return;
  std::string conversation_id;
  std::optional<bool> push_enabled;
  std::optional<bool> email_fallback;
  std::optional<bool> muted;
  std::optional<bool> hide_previews;
  std::optional<std::int64_t> delay_ms;
  if (auto e = get_string(*body, "conversation_id", conversation_id, false)) {
    return respond(error_of(*e));
  }
  if (auto e = get_bool(*body, "push_enabled", push_enabled)) return respond(error_of(*e));
  if (auto e = get_bool(*body, "email_fallback", email_fallback)) return respond(error_of(*e));
  if (auto e = get_bool(*body, "muted", muted)) return respond(error_of(*e));
  if (auto e = get_bool(*body, "hide_previews", hide_previews)) return respond(error_of(*e));
  if (auto e = get_i64(*body, "email_delay_ms", delay_ms)) return respond(error_of(*e));
  messagingpb::MessagingCommand c;
  auto* op = c.mutable_set_preferences();
  op->set_user_id(user_id);
  op->set_conversation_id(std::move(conversation_id));
  if (push_enabled) op->set_push_enabled(*push_enabled);
  if (email_fallback) op->set_email_fallback(*email_fallback);
  if (muted) op->set_muted(*muted);
  if (hide_previews) op->set_hide_previews(*hide_previews);
  if (delay_ms) op->set_email_delay_ms(*delay_ms);
  propose(host_, c, std::move(respond), empty_ok);
}

void MessagingApi::create_conversation(const HttpRequest& request, Responder respond) {
  auto body = body_object(request, respond);
  if (!body) return;
  std::string creator;
  std::string kind_name;
  std::string id;
  std::string title;
  std::vector<std::string> members;
  if (auto e = get_string(*body, "creator", creator)) return respond(error_of(*e));
  if (auto e = get_string(*body, "kind", kind_name)) return respond(error_of(*e));
  if (auto e = get_string(*body, "conversation_id", id, false)) return respond(error_of(*e));
  if (auto e = get_string(*body, "title", title, false)) return respond(error_of(*e));
  if (auto e = get_strings(*body, "members", members, messaging::kMaxMembersPerCommand)) {
    return respond(error_of(*e));
  }
  const auto kind = parse_kind(kind_name);
  if (!kind) return respond(error_of({"wrong_type", "\"kind\" must be \"direct\" or \"group\""}));
  if (*kind == messagingpb::DIRECT && (members.size() != 1 || members[0] == creator)) {
    return respond(error_of({"invalid_argument", "a direct conversation has one other member"}));
  }
  if (*kind == messagingpb::GROUP && id.empty()) {
    return respond(error_of({"missing_field", "a group needs a \"conversation_id\""}));
  }
  const std::string conversation_id =
      *kind == messagingpb::DIRECT ? messaging::direct_conversation_id(creator, members[0]) : id;
  messagingpb::MessagingCommand c;
  auto* op = c.mutable_create_conversation();
  op->set_user_id(creator);
  op->set_kind(*kind);
  if (*kind == messagingpb::GROUP) {
    op->set_conversation_id(id);
    op->set_title(std::move(title));
  }
  for (auto& member : members) op->add_member_user_ids(std::move(member));
  NodeHost* host = host_;
  propose(host_, c, std::move(respond), [host, conversation_id](const rsmpb::CommandResult&) {
    auto conv = Domain::get_conversation(host->engine(), conversation_id);
    if (!conv.ok() || !conv->has_value()) {
      return error_of({"internal", "the conversation is missing after its creation"});
    }
    return json_of(201, json::object{{"conversation", conversation_json(**conv)}});
  });
}

namespace {
json::object retention_json(const messagingpb::RetentionSettings& r,
                            const workflowpb::RetentionSettings& w) {
  return json::object{{"dedup_window_ms", r.dedup_window_ms()},
                      {"change_retention_ms", r.change_retention_ms()},
                      {"message_retention_ms", r.message_retention_ms()},
                      {"delivery_lifetime_ms", r.delivery_lifetime_ms()},
                      {"closed_workflow_ms", w.closed_retention_ms()},
                      {"workflow_summary_ms", w.summary_retention_ms()}};
}
}  // namespace

void MessagingApi::get_retention(Responder respond) {
  host_->read([respond = std::move(respond)](const Status& s, const storage::Engine& engine) {
    if (!s.ok()) return respond(error_of(frame_error_of(s)));
    auto settings = Domain::retention(engine);
    if (!settings.ok()) return respond(error_of(frame_error_of(settings.status())));
    auto workflows = workflow::Engine::read_retention(engine);
    if (!workflows.ok()) return respond(error_of(frame_error_of(workflows.status())));
    respond(json_of(200, retention_json(*settings, *workflows)));
  });
}

void MessagingApi::set_retention(const HttpRequest& request, Responder respond) {
  auto body = body_object(request, respond);
  if (!body) return;
  std::optional<std::int64_t> dedup_ms;
  std::optional<std::int64_t> change_ms;
  if (auto e = get_i64(*body, "dedup_window_ms", dedup_ms)) return respond(error_of(*e));
  if (auto e = get_i64(*body, "change_retention_ms", change_ms)) return respond(error_of(*e));
  std::optional<std::int64_t> message_ms;
  if (auto e = get_i64(*body, "message_retention_ms", message_ms)) return respond(error_of(*e));
  std::optional<std::int64_t> lifetime_ms;
  if (auto e = get_i64(*body, "delivery_lifetime_ms", lifetime_ms)) return respond(error_of(*e));
  std::optional<std::int64_t> closed_ms;
  if (auto e = get_i64(*body, "closed_workflow_ms", closed_ms)) return respond(error_of(*e));
  if (closed_ms && *closed_ms != 0 &&
      (*closed_ms < workflow::kMinClosedRetentionMs ||
       *closed_ms > workflow::kMaxClosedRetentionMs)) {
    return respond(
        error_of({"invalid_argument",
                  fmt::format("closed_workflow_ms is outside [{}, {}] ms (0: default)",
                              workflow::kMinClosedRetentionMs, workflow::kMaxClosedRetentionMs)}));
  }
  std::optional<std::int64_t> summary_ms;
  if (auto e = get_i64(*body, "workflow_summary_ms", summary_ms)) return respond(error_of(*e));
  if (summary_ms && *summary_ms != 0 &&
      (*summary_ms < workflow::kMinClosedRetentionMs ||
       *summary_ms > workflow::kMaxSummaryRetentionMs)) {
    return respond(
        error_of({"invalid_argument",
                  fmt::format("workflow_summary_ms is outside [{}, {}] ms (0: kept forever)",
                              workflow::kMinClosedRetentionMs, workflow::kMaxSummaryRetentionMs)}));
  }
  messagingpb::MessagingCommand c;
  auto* settings = c.mutable_set_retention()->mutable_settings();
  settings->set_dedup_window_ms(dedup_ms.value_or(0));
  settings->set_change_retention_ms(change_ms.value_or(0));
  settings->set_message_retention_ms(message_ms.value_or(0));
  settings->set_delivery_lifetime_ms(lifetime_ms.value_or(0));
  // The messaging settings first, then the engine's: each is its own command, and a failed
  // second one is reported (a retry sets both again).
  NodeHost* host = host_;
  // The engine's two windows are set together: one given alone resets the other to its default.
  host_->propose(domain_command(c), [host, closed_ms, summary_ms, respond = std::move(respond)](
                                        const Result<rsmpb::CommandResult>& r) mutable {
    if (!r.ok()) return respond(error_of(frame_error_of(r.status())));
    if (r->code() != 0) return respond(error_of(frame_error_of(*r)));
    if (!closed_ms && !summary_ms) return respond(json_of(200, json::object{}));
    workflowpb::WorkflowCommand wc;
    auto* engine_settings = wc.mutable_set_retention()->mutable_settings();
    engine_settings->set_closed_retention_ms(closed_ms.value_or(0));
    engine_settings->set_summary_retention_ms(summary_ms.value_or(0));
    rsmpb::Command command;
    command.mutable_module()->set_name(workflow::kModuleName);
    command.mutable_module()->set_payload(wc.SerializeAsString());
    host->propose(std::move(command),
                  [respond = std::move(respond)](const Result<rsmpb::CommandResult>& w) {
                    if (!w.ok()) return respond(error_of(frame_error_of(w.status())));
                    if (w->code() != 0) return respond(error_of(frame_error_of(*w)));
                    respond(json_of(200, json::object{}));
                  });
  });
}

void MessagingApi::get_conversation(const std::string& id, Responder respond) {
  host_->read([id, respond = std::move(respond)](const Status& s, const storage::Engine& engine) {
    if (!s.ok()) return respond(error_of(frame_error_of(s)));
    auto conv = Domain::get_conversation(engine, id);
    if (!conv.ok()) return respond(error_of(frame_error_of(conv.status())));
    if (!conv->has_value()) return respond(error_of({"not_found", "no such conversation"}));
    respond(json_of(200, json::object{{"conversation", conversation_json(**conv)}}));
  });
}

void MessagingApi::system_message(const std::string& id, const HttpRequest& request,
                                  Responder respond) {
  auto body = body_object(request, respond);
  if (!body) return;
  std::string text;
  std::string client_id;
  if (auto e = get_string(*body, "body", text)) return respond(error_of(*e));
  if (auto e = get_string(*body, "client_message_id", client_id)) return respond(error_of(*e));
  if (text.size() > messaging::kMaxMessageBodyBytes) {
    return respond(error_of({"too_large", "the body is too large"}));
  }
  messagingpb::MessagingCommand c;
  auto* op = c.mutable_send_message();
  op->set_conversation_id(id);
  op->set_client_message_id(std::move(client_id));
  op->set_body(std::move(text));
  propose(host_, c, std::move(respond), [](const rsmpb::CommandResult& r) {
    messagingpb::SendResult sent;
    if (!sent.ParseFromString(r.payload())) {
      return error_of({"internal", "the send result does not decode"});
    }
    return json_of(200, json::object{{"seq", sent.seq()}, {"existed", r.existed()}});
  });
}

void MessagingApi::search(const HttpRequest& request, Responder respond) {
  const auto q = request.query.find("q");
  if (q == request.query.end()) {
    return respond(error_of({"missing_field", "the query parameter q is required"}));
  }
  host_->read([query = q->second, respond = std::move(respond)](const Status& s,
                                                                const storage::Engine& engine) {
    if (!s.ok()) return respond(error_of(frame_error_of(s)));
    auto results = server::search(engine, query);
    if (!results.ok()) return respond(error_of(frame_error_of(results.status())));
    respond(json_of(200, json::object{{"query", query}, {"results", std::move(*results)}}));
  });
}

void MessagingApi::timeline(const std::string& id, std::uint64_t seq, Responder respond) {
  host_->read([id, seq, respond = std::move(respond)](const Status& s,
                                                      const storage::Engine& engine) {
    if (!s.ok()) return respond(error_of(frame_error_of(s)));
    auto message = Domain::get_message(engine, id, seq);
    auto conv = Domain::get_conversation(engine, id);
    if (!message.ok() || !conv.ok()) {
      return respond(error_of({"internal", "reading the message failed"}));
    }
    if (!message->has_value() || !conv->has_value()) {
      return respond(error_of({"not_found", "no such message"}));
    }
    json::array recipients;
    json::array reads;
    for (const auto& member : (*conv)->members()) {
      if (member.user_id() == (*message)->sender_user_id()) continue;
      recipients.emplace_back(recipient_timeline(
          engine, messaging::delivery_workflow_id(id, seq, member.user_id()), member.user_id()));
      append_read_sagas(engine, id, seq, member.user_id(), reads);
    }
    respond(json_of(200, json::object{{"message", message_json(**message)},
                                      {"recipients", std::move(recipients)},
                                      {"reads", std::move(reads)},
                                      {"webhooks", webhook_timeline(engine, id, seq)}}));
  });
}

}  // namespace herald::server
