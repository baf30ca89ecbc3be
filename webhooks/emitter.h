// Emitter: decides, inside the apply of the command that caused it, which webhook deliveries an
// event starts (docs/webhooks.md, "Events"). It is deterministic like the state machines it
// serves: it reads the endpoint set from the command's batch and the event, nothing else, so
// every replica starts the same runs.
//
// Events come from two places: the messaging domain reports message.sent and
// push_token.invalidated (messaging::WorkflowSink::emit, through messaging::Host), and, as a
// workflow::TransitionObserver, the emitter watches the delivery workflow ("message.delivered"
// when a run enters "delivery_confirmed", "message.read" when it enters "read_acknowledged",
// "message.escalated" on its "escalated" record) and the read-sync saga
// ("saga.compensation_failed" when a run enters "compensation_failed").
//
// For each endpoint subscribed to the event's type, one "webhook.delivery" run starts with id
// webhook_workflow_id(); with no endpoint subscribed nothing is written (the only cost is one
// read of the endpoint set). A run id that already exists is not started again (the engine's
// dedup), so an event decided twice is delivered once per endpoint.
// Thread-safety: stateless; the apply thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "messaging/domain.h"
#include "rsm/apply_batch.h"
#include "workflow/engine.h"

namespace herald::webhooks {

inline constexpr char kWorkflowIdPrefix[] = "webhook";
// Hex digits of SHA-256 in an event id ("evt_" + these).
inline constexpr std::size_t kEventIdHexDigits = 32;

// "evt_" + the first kEventIdHexDigits hex digits of SHA-256(type "\0" key): the idempotency id,
// the same wherever and whenever the event is decided.
[[nodiscard]] std::string event_id(const messaging::DomainEvent& event);
// The JSON body delivered: {"id", "type", "created_ms", "data": {the event's non-empty fields}}.
[[nodiscard]] std::string event_body(const messaging::DomainEvent& event, std::string_view id,
                                     std::int64_t created_ms);
// "webhook/<conversation>/<seq>/<event id>/<endpoint>" (conversation empty and seq 0 for events
// not about a message), so a message's deliveries share webhook_message_prefix().
[[nodiscard]] std::string webhook_workflow_id(const messaging::DomainEvent& event,
                                              std::string_view event_id,
                                              std::string_view endpoint_id);
[[nodiscard]] std::string webhook_message_prefix(std::string_view conversation_id,
                                                 std::uint64_t seq);

class Emitter final : public workflow::TransitionObserver {
 public:
  // Appends the runs `event` starts (messaging::Host::set_event_starts).
  [[nodiscard]] static Status starts_for(const rsm::ApplyBatch& state, std::int64_t now_ms,
                                         const messaging::DomainEvent& event,
                                         std::vector<workflowpb::StartWorkflow>& starts);

  // workflow::TransitionObserver.
  [[nodiscard]] bool observes(std::string_view type) const override;
  [[nodiscard]] Status observe(const rsm::ApplyBatch& state, std::int64_t now_ms,
                               const workflow::Transition& transition,
                               std::vector<workflowpb::StartWorkflow>& starts) override;
};

}  // namespace herald::webhooks
