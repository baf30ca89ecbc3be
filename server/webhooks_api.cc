#include "server/webhooks_api.h"

#include <fmt/format.h>
#include <openssl/rand.h>

#include <optional>
#include <utility>

#include "server/messaging_json.h"
#include "webhooks/delivery.h"
#include "webhooks/emitter.h"
#include "webhooks/endpoints.h"
#include "webhooks/signature.h"
#include "workflow/engine.h"
#include "workflow/keys.h"

namespace herald::server {

namespace json = boost::json;

namespace {

// Attempt events listed per webhook delivery in a timeline, at most.
constexpr std::size_t kMaxWebhookTimelineEvents = 100;

HttpResponse error(unsigned status, std::string_view code, std::string_view message) {
  return HttpResponse::error(status, std::string(code), std::string(message));
}

HttpResponse error_of_result(const FrameError& e) {
  if (e.code == "not_found") return error(404, e.code, e.message);
  if (e.code == "resource_exhausted") return error(507, e.code, e.message);
  if (e.code == "unavailable" || e.code == "outcome_unknown") return error(503, e.code, e.message);
  if (e.code == "timeout") return error(504, e.code, e.message);
  if (e.code == "internal") return error(500, e.code, e.message);
  return error(400, e.code, e.message);
}

json::object endpoint_json(const webhookspb::EndpointRecord& e) {
  json::array events;
  for (const auto& name : e.events()) events.emplace_back(name);
  return json::object{{"id", e.endpoint_id()},
                      {"url", e.url()},
                      {"events", std::move(events)},
                      {"disabled", e.disabled()},
                      {"secret_fingerprint", webhooks::fingerprint(e.secret())},
                      {"created_ms", e.created_ms()},
                      {"updated_ms", e.updated_ms()}};
}

rsmpb::Command module_command(const webhookspb::WebhookCommand& c) {
  rsmpb::Command command;
  command.mutable_module()->set_name(webhooks::kModuleName);
  command.mutable_module()->set_payload(c.SerializeAsString());
  return command;
}

std::string generated_secret() {
  std::string key(webhooks::kGeneratedKeyBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(key.data()), static_cast<int>(key.size())) != 1) {
    return {};
  }
  return webhooks::kSecretPrefix + webhooks::base64_encode(key);
}

// Fills `op` from the PUT body; the error to answer, or nullopt.
std::optional<HttpResponse> parse_put(const json::object& body, webhookspb::PutEndpoint& op,
                                      std::string& secret) {
  const auto* url = body.if_contains("url");
  if (url == nullptr || !url->is_string()) {
    return error(400, "invalid_argument", "\"url\" must be a string");
  }
  op.set_url(std::string(url->as_string()));
  const auto* events = body.if_contains("events");
  if (events == nullptr || !events->is_array()) {
    return error(400, "invalid_argument", "\"events\" must be an array of event types");
  }
  for (const auto& e : events->as_array()) {
    if (!e.is_string()) return error(400, "invalid_argument", "an event type is a string");
    op.add_events(std::string(e.as_string()));
  }
  if (const auto* d = body.if_contains("disabled")) {
    if (!d->is_bool()) return error(400, "invalid_argument", "\"disabled\" must be a boolean");
    op.set_disabled(d->as_bool());
  }
  if (const auto* s = body.if_contains("secret")) {
    if (!s->is_string()) return error(400, "invalid_argument", "\"secret\" must be a string");
    secret = std::string(s->as_string());
    if (secret.size() < webhooks::kMinSecretBytes || secret.size() > webhooks::kMaxSecretBytes) {
      return error(400, "invalid_argument",
                   fmt::format("a webhook secret holds {} to {} bytes", webhooks::kMinSecretBytes,
                               webhooks::kMaxSecretBytes));
    }
  } else {
    secret = generated_secret();
    if (secret.empty()) return error(500, "internal", "no randomness for a webhook secret");
  }
  auto key = webhooks::key_of_secret(secret);
  if (!key.ok()) return error(400, "invalid_argument", key.status().message());
  op.set_secret(*std::move(key));
  return std::nullopt;
}

}  // namespace

void WebhooksApi::handle(const std::vector<std::string>& s, const HttpRequest& request,
                         Responder respond) {
  const std::string& m = request.method;
  if (s.size() == 3 && m == "GET") return get({}, std::move(respond));
  if (s.size() == 4 && m == "GET") return get(s[3], std::move(respond));
  if (s.size() == 4 && m == "PUT") return put(s[3], request, std::move(respond));
  if (s.size() == 4 && m == "DELETE") return remove(s[3], std::move(respond));
  respond(error(404, "not_found", "no such admin endpoint"));
}

void WebhooksApi::put(const std::string& id, const HttpRequest& request, Responder respond) {
  if (std::string why = webhooks::check_endpoint_id(id); !why.empty()) {
    return respond(error(400, "invalid_argument", why));
  }
  boost::system::error_code ec;
  json::value v = json::parse(request.body, ec);
  if (ec || !v.is_object()) {
    return respond(error(400, "malformed_json", "the body must be one JSON object"));
  }
  webhookspb::WebhookCommand c;
  webhookspb::PutEndpoint& op = *c.mutable_put();
  op.set_endpoint_id(id);
  std::string secret;
  if (auto refused = parse_put(v.as_object(), op, secret)) return respond(*std::move(refused));
  const bool generated = !v.as_object().contains("secret");
  NodeHost* host = host_;
  host_->propose(module_command(c), [host, id, secret, generated, respond = std::move(respond)](
                                        const Result<rsmpb::CommandResult>& r) {
    if (!r.ok()) return respond(error_of_result(frame_error_of(r.status())));
    if (r->code() != 0) return respond(error_of_result(frame_error_of(*r)));
    auto set = webhooks::read_endpoints(host->engine());
    const auto endpoint = set.ok() ? webhooks::find_endpoint(*set, id) : std::nullopt;
    if (!endpoint) return respond(error(500, "internal", "the endpoint is missing after its put"));
    json::object out = endpoint_json(*endpoint);
    if (generated) out["secret"] = secret;  // answered once; never readable again
    respond(HttpResponse::json(200, json::serialize(out)));
  });
}

void WebhooksApi::get(const std::string& id, Responder respond) {
  host_->read([id, respond = std::move(respond)](const Status& s, const storage::Engine& engine) {
    if (!s.ok()) return respond(error_of_result(frame_error_of(s)));
    auto set = webhooks::read_endpoints(engine);
    if (!set.ok()) return respond(error(500, "internal", set.status().to_string()));
    if (id.empty()) {
      json::array all;
      for (const auto& e : set->endpoints()) all.emplace_back(endpoint_json(e));
      return respond(
          HttpResponse::json(200, json::serialize(json::object{{"webhooks", std::move(all)}})));
    }
    const auto endpoint = webhooks::find_endpoint(*set, id);
    if (!endpoint) return respond(error(404, "not_found", "no such webhook endpoint"));
    respond(HttpResponse::json(200, json::serialize(endpoint_json(*endpoint))));
  });
}

void WebhooksApi::remove(const std::string& id, Responder respond) {
  webhookspb::WebhookCommand c;
  c.mutable_delete_()->set_endpoint_id(id);
  host_->propose(module_command(c),
                 [respond = std::move(respond)](const Result<rsmpb::CommandResult>& r) {
                   if (!r.ok()) return respond(error_of_result(frame_error_of(r.status())));
                   if (r->code() != 0) return respond(error_of_result(frame_error_of(*r)));
                   respond(HttpResponse::json(200, "{}"));
                 });
}

namespace {

std::string lower_status(workflowpb::WorkflowStatus status) {
  std::string name = workflowpb::WorkflowStatus_Name(status);
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

json::object webhook_run_json(const storage::Reader& reader, const workflowpb::WorkflowRecord& r) {
  json::object out{
      {"workflow_id", r.workflow_id()}, {"state", r.state()}, {"status", lower_status(r.status())}};
  auto history = workflow::Engine::read_history(reader, r.workflow_id(), r.run_id(), 0,
                                                kMaxWebhookTimelineEvents);
  json::array attempts;
  if (history.ok()) {
    for (const auto& e : *history) {
      if (e.kind() == "started") {
        if (auto in = webhooks::decode_delivery_input(e.payload())) {
          out["endpoint"] = in->endpoint_id();
          out["event_id"] = in->event_id();
          out["event_type"] = in->event_type();
        }
      }
      if (e.kind() != "activity_completed" && e.kind() != "activity_retry_scheduled" &&
          e.kind() != "activity_failed") {
        continue;
      }
      json::object a{{"attempt", e.attempt()}, {"time_ms", e.time_ms()}, {"kind", e.kind()}};
      if (!e.error_type().empty()) a["error_type"] = e.error_type();
      if (!e.error_message().empty()) a["error_message"] = e.error_message();
      if (e.next_attempt_ms() > 0) a["next_attempt_ms"] = e.next_attempt_ms();
      if (e.node_id() > 0) a["node_id"] = e.node_id();
      boost::system::error_code ec;
      json::value details = json::parse(e.details(), ec);
      if (!ec && details.is_object()) {
        for (const auto& [k, v] : details.as_object()) {
          if (k == "status" || k == "latency_ms" || k == "error") a[k] = v;
        }
      }
      attempts.emplace_back(std::move(a));
    }
  }
  out["attempts"] = std::move(attempts);
  if (!r.error_type().empty()) out["error_type"] = r.error_type();
  return out;
}

}  // namespace

json::array webhook_timeline(const storage::Reader& reader, const std::string& conversation_id,
                             std::uint64_t seq) {
  const std::string begin =
      workflow::keys::record_key(webhooks::webhook_message_prefix(conversation_id, seq));
  json::array out;
  auto it = reader.scan(storage::Space::kState, begin, workflow::keys::prefix_end(begin));
  for (; it->valid() && out.size() < kMaxTimelineWebhooks; it->next()) {
    auto record = workflow::keys::open<workflowpb::WorkflowRecord>(it->value(), "workflow");
    if (!record.ok()) continue;
    out.emplace_back(webhook_run_json(reader, *record));
  }
  return out;
}

}  // namespace herald::server
