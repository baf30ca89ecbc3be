#include "webhooks/endpoints.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>

#include "base/encoding.h"
#include "messaging/domain.h"
#include "webhooks/signature.h"

namespace herald::webhooks {

namespace {

using webhookspb::EndpointRecord;
using webhookspb::EndpointSet;

constexpr std::array<std::string_view, 7> kEventNames = {
    kAllEvents,
    messaging::kEventMessageSent,
    messaging::kEventMessageDelivered,
    messaging::kEventMessageRead,
    messaging::kEventMessageEscalated,
    messaging::kEventPushTokenInvalidated,
    messaging::kEventCompensationFailed,
};

rsmpb::CommandResult error_result(const Status& status) {
  rsmpb::CommandResult r;
  r.set_code(static_cast<std::uint32_t>(status.code()));
  r.set_message(status.message());
  return r;
}

Status check(std::string_view why) {
  return why.empty() ? Status::ok_status() : Status::invalid_argument(std::string(why));
}

void save(rsm::ApplyBatch& batch, const EndpointSet& set) {
  if (set.endpoints().empty()) {
    batch.del(storage::Space::kState, endpoints_key());  // no webhooks: nothing stored
    return;
  }
  batch.put(storage::Space::kState, endpoints_key(), seal_record(set.SerializeAsString()));
}

Status put_endpoint(rsm::ApplyBatch& batch, const webhookspb::PutEndpoint& op,
                    std::int64_t now_ms) {
  HERALD_RETURN_IF_ERROR(check(check_endpoint_id(op.endpoint_id())));
  HERALD_RETURN_IF_ERROR(check(check_url(op.url())));
  if (op.secret().empty() || op.secret().size() > kMaxSecretBytes) {
    return Status::invalid_argument(
        fmt::format("a webhook key holds 1 to {} bytes", kMaxSecretBytes));
  }
  if (op.events().empty() || static_cast<std::size_t>(op.events_size()) > kMaxEventsPerEndpoint) {
    return Status::invalid_argument(
        fmt::format("an endpoint subscribes to 1 to {} event types", kMaxEventsPerEndpoint));
  }
  for (const std::string& name : op.events()) {
    HERALD_RETURN_IF_ERROR(check(check_event_name(name)));
  }
  HERALD_ASSIGN_OR_RETURN(EndpointSet set, read_endpoints(batch));
  auto* endpoints = set.mutable_endpoints();
  auto it = std::find_if(endpoints->begin(), endpoints->end(), [&](const EndpointRecord& e) {
    return e.endpoint_id() == op.endpoint_id();
  });
  if (it == endpoints->end()) {
    if (static_cast<std::size_t>(endpoints->size()) >= kMaxEndpoints) {
      return Status::resource_exhausted(
          fmt::format("at most {} webhook endpoints may be registered", kMaxEndpoints));
    }
    EndpointRecord* added = endpoints->Add();
    added->set_endpoint_id(op.endpoint_id());
    added->set_created_ms(now_ms);
    std::sort(endpoints->begin(), endpoints->end(),
              [](const EndpointRecord& a, const EndpointRecord& b) {
                return a.endpoint_id() < b.endpoint_id();
              });
    it = std::find_if(endpoints->begin(), endpoints->end(),
                      [&](const EndpointRecord& e) { return e.endpoint_id() == op.endpoint_id(); });
  }
  it->set_url(op.url());
  it->set_secret(op.secret());
  *it->mutable_events() = op.events();
  it->set_disabled(op.disabled());
  it->set_updated_ms(now_ms);
  save(batch, set);
  return Status::ok_status();
}

Status delete_endpoint(rsm::ApplyBatch& batch, const webhookspb::DeleteEndpoint& op) {
  HERALD_ASSIGN_OR_RETURN(EndpointSet set, read_endpoints(batch));
  auto* endpoints = set.mutable_endpoints();
  auto it = std::find_if(endpoints->begin(), endpoints->end(), [&](const EndpointRecord& e) {
    return e.endpoint_id() == op.endpoint_id();
  });
  if (it == endpoints->end()) {
    return Status::not_found(fmt::format("no webhook endpoint \"{}\"", op.endpoint_id()));
  }
  endpoints->erase(it);
  save(batch, set);
  return Status::ok_status();
}

}  // namespace

std::string endpoints_key() {
  return "he";
}

std::string check_endpoint_id(std::string_view id) {
  if (id.empty() || id.size() > kMaxEndpointIdBytes) {
    return fmt::format("an endpoint id holds 1 to {} bytes", kMaxEndpointIdBytes);
  }
  const bool ok = std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
  return ok ? std::string() : "an endpoint id holds only letters, digits, '_' and '-'";
}

std::string check_url(std::string_view url) {
  if (url.size() > kMaxUrlBytes) {
    return fmt::format("a webhook URL holds at most {} bytes", kMaxUrlBytes);
  }
  if (!url.starts_with("http://") && !url.starts_with("https://")) {
    return "a webhook URL starts with http:// or https://";
  }
  const bool printable = std::all_of(url.begin(), url.end(), [](char c) {
    return static_cast<unsigned char>(c) > 0x20 && static_cast<unsigned char>(c) < 0x7F;
  });
  const std::size_t host = url.find("://") + 3;
  if (!printable || host >= url.size() || url[host] == '/') {
    return "a webhook URL is printable ASCII without spaces and names a host";
  }
  return {};
}

std::string check_event_name(std::string_view name) {
  if (std::find(kEventNames.begin(), kEventNames.end(), name) != kEventNames.end()) {
    return {};
  }
  return fmt::format("unknown event type \"{}\"", name.substr(0, 64));
}

bool subscribes(const EndpointRecord& endpoint, std::string_view type) {
  if (endpoint.disabled()) {
    return false;
  }
  return std::any_of(endpoint.events().begin(), endpoint.events().end(),
                     [&](const std::string& e) { return e == kAllEvents || e == type; });
}

Result<EndpointSet> decode_endpoints(const std::optional<std::string>& raw) {
  EndpointSet set;
  if (!raw) {
    return set;
  }
  std::string_view payload;
  if (!open_record(*raw, payload)) {
    return Status::corruption("webhook endpoints record fails its checksum");
  }
  if (!set.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return Status::corruption("webhook endpoints record does not decode");
  }
  return set;
}

std::optional<EndpointRecord> find_endpoint(const EndpointSet& set, std::string_view endpoint_id) {
  for (const EndpointRecord& e : set.endpoints()) {
    if (e.endpoint_id() == endpoint_id) return e;
  }
  return std::nullopt;
}

rsmpb::CommandResult Endpoints::apply(raft::Index /*index*/, const rsmpb::Command& command,
                                      rsm::ApplyBatch& batch) {
  webhookspb::WebhookCommand c;
  const std::string& payload = command.module().payload();
  if (!c.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return error_result(Status::invalid_argument("webhook command does not decode"));
  }
  Status status;
  switch (c.op_case()) {
    case webhookspb::WebhookCommand::kPut:
      status = put_endpoint(batch, c.put(), command.wall_ms());
      break;
    case webhookspb::WebhookCommand::kDelete: status = delete_endpoint(batch, c.delete_()); break;
    default: status = Status::invalid_argument("a webhook command needs an operation");
  }
  return status.ok() ? rsmpb::CommandResult() : error_result(status);
}

bool Endpoints::allowed_when_disk_low(const rsmpb::Command& command) const {
  webhookspb::WebhookCommand c;
  const std::string& payload = command.module().payload();
  return c.ParseFromArray(payload.data(), static_cast<int>(payload.size())) && c.has_delete_();
}

}  // namespace herald::webhooks
