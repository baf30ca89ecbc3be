#include "webhooks/emitter.h"

#include <fmt/format.h>
#include <openssl/sha.h>

#include <algorithm>
#include <array>
#include <boost/json.hpp>

#include "messaging/delivery.h"
#include "messaging/read_sync.h"
#include "webhooks/delivery.h"
#include "webhooks/endpoints.h"
#include "workflow/saga.h"

namespace herald::webhooks {

namespace {

namespace json = boost::json;
using messaging::DomainEvent;

// The delivery workflow's transitions that are events, as a DomainEvent (type empty: none).
DomainEvent delivery_event(const workflow::Transition& t) {
  DomainEvent event;
  const bool escalated = std::any_of(t.records.begin(), t.records.end(), [](const auto& r) {
    return r.first == messaging::kEscalatedRecord;
  });
  if (t.entered == messaging::kDeliveryConfirmed) {
    event.type = messaging::kEventMessageDelivered;
  } else if (t.entered == messaging::kDeliveryReadAcknowledged) {
    event.type = messaging::kEventMessageRead;
  } else if (escalated) {
    event.type = messaging::kEventMessageEscalated;
  }
  return event;
}

// Fills in the message and recipient of a delivery event from the run's data.
void describe_delivery(const workflow::Transition& t, DomainEvent& event) {
  const auto data = messaging::decode_delivery_data(t.data);
  if (!data) {
    event.key = t.workflow_id;  // never written by the type; still a stable key
    return;
  }
  const auto& input = data->input();
  event.conversation_id = input.conversation_id();
  event.seq = input.seq();
  event.sender_user_id = input.sender_user_id();
  event.user_id = input.recipient_user_id();
  event.key =
      fmt::format("{}/{}/{}", input.conversation_id(), input.seq(), input.recipient_user_id());
  const auto wanted = event.type == messaging::kEventMessageRead ? messagingpb::DEVICE_READ
                                                                 : messagingpb::DEVICE_DELIVERED;
  for (int i = 0; i < data->devices_size() && i < input.device_ids_size(); ++i) {
    if (data->devices(i).state() == wanted) {
      event.device_id = data->devices(i).device_id();
      break;
    }
  }
}

}  // namespace

std::string event_id(const DomainEvent& event) {
  std::string content = event.type;
  content.push_back('\0');
  content += event.key;
  std::array<unsigned char, SHA256_DIGEST_LENGTH> digest{};
  SHA256(reinterpret_cast<const unsigned char*>(content.data()), content.size(), digest.data());
  std::string id = "evt_";
  for (std::size_t i = 0; i < kEventIdHexDigits / 2; ++i) {
    id += fmt::format("{:02x}", digest[i]);
  }
  return id;
}

std::string event_body(const DomainEvent& event, std::string_view id, std::int64_t created_ms) {
  json::object data;
  auto add = [&data](std::string_view name, const std::string& value) {
    if (!value.empty()) data[name] = value;
  };
  add("conversation_id", event.conversation_id);
  if (event.seq != 0) data["seq"] = event.seq;
  add("sender_user_id", event.sender_user_id);
  add("user_id", event.user_id);
  add("device_id", event.device_id);
  add("detail", event.detail);
  return json::serialize(json::object{
      {"id", id}, {"type", event.type}, {"created_ms", created_ms}, {"data", std::move(data)}});
}

std::string webhook_message_prefix(std::string_view conversation_id, std::uint64_t seq) {
  return fmt::format("{}/{}/{}/", kWorkflowIdPrefix, conversation_id, seq);
}

std::string webhook_workflow_id(const DomainEvent& event, std::string_view event_id,
                                std::string_view endpoint_id) {
  // Conversation ids hold no '/' (messaging/domain.h) and endpoint ids only [A-Za-z0-9_-].
  return fmt::format("{}{}/{}", webhook_message_prefix(event.conversation_id, event.seq), event_id,
                     endpoint_id);
}

Status Emitter::starts_for(const rsm::ApplyBatch& state, std::int64_t now_ms,
                           const DomainEvent& event,
                           std::vector<workflowpb::StartWorkflow>& starts) {
  HERALD_ASSIGN_OR_RETURN(const webhookspb::EndpointSet set, read_endpoints(state));
  std::string id;
  std::string body;
  for (const webhookspb::EndpointRecord& endpoint : set.endpoints()) {
    if (!subscribes(endpoint, event.type)) {
      continue;
    }
    if (id.empty()) {
      id = event_id(event);
      body = event_body(event, id, now_ms);
    }
    webhookspb::WebhookDeliveryInput input;
    input.set_endpoint_id(endpoint.endpoint_id());
    input.set_event_id(id);
    input.set_event_type(event.type);
    input.set_event_ms(now_ms);
    input.set_body(body);
    input.set_conversation_id(event.conversation_id);
    input.set_seq(event.seq);
    workflowpb::StartWorkflow& start = starts.emplace_back();
    start.set_workflow_id(webhook_workflow_id(event, id, endpoint.endpoint_id()));
    start.set_type(kWebhookType);
    start.set_input(input.SerializeAsString());
  }
  return Status::ok_status();
}

bool Emitter::observes(std::string_view type) const {
  return type == messaging::kDeliveryType || type == messaging::kReadSyncType;
}

Status Emitter::observe(const rsm::ApplyBatch& state, std::int64_t now_ms,
                        const workflow::Transition& transition,
                        std::vector<workflowpb::StartWorkflow>& starts) {
  DomainEvent event;
  if (transition.type == messaging::kDeliveryType) {
    event = delivery_event(transition);
    if (event.type.empty()) return Status::ok_status();
    describe_delivery(transition, event);
  } else if (transition.entered == workflow::kSagaCompensationFailed) {
    event.type = messaging::kEventCompensationFailed;
    event.key = fmt::format("{}/{}/{}", transition.workflow_id, transition.run_id, now_ms);
    event.detail = transition.workflow_id;
    for (const auto& [name, payload] : transition.records) {
      if (name == workflow::kSagaCompensationFailed) event.detail += ": " + payload;
    }
  } else {
    return Status::ok_status();
  }
  return starts_for(state, now_ms, event, starts);
}

}  // namespace herald::webhooks
