// Endpoints: the "webhooks" state-machine module — the endpoints the app's backend registered,
// the events each receives, and their signing secrets, replicated like every other state so that
// every replica decides alike which events are delivered where (docs/webhooks.md).
//
// Commands (webhookspb::WebhookCommand): PutEndpoint creates or replaces an endpoint (its
// created_ms is kept on replace); DeleteEndpoint removes one (deliveries already started run on
// and fail with kEndpointGone at their next attempt). All endpoints live in one record under
// key "h" "e", bounded by kMaxEndpoints.
// Errors: kInvalidArgument (an id, URL, secret or event name out of bounds or malformed),
// kNotFound (deleting an unknown endpoint), kResourceExhausted (kMaxEndpoints), kCorruption.
// Thread-safety: apply() on the apply thread; read_endpoints() on any thread, any reader.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/status.h"
#include "rsm/apply_batch.h"
#include "rsm/state_machine.h"
#include "storage/engine.h"
#include "webhooks/webhooks.pb.h"

namespace herald::webhooks {

inline constexpr char kModuleName[] = "webhooks";
inline constexpr std::size_t kMaxEndpoints = 16;
inline constexpr std::size_t kMaxEndpointIdBytes = 32;  // [A-Za-z0-9_-]
inline constexpr std::size_t kMaxUrlBytes = 2048;
inline constexpr std::size_t kMaxEventsPerEndpoint = 16;
// The event name that subscribes to every event type.
inline constexpr char kAllEvents[] = "*";

// The key of the endpoint set in Space::kState.
[[nodiscard]] std::string endpoints_key();

// Empty when acceptable, else why not.
[[nodiscard]] std::string check_endpoint_id(std::string_view id);
[[nodiscard]] std::string check_url(std::string_view url);
[[nodiscard]] std::string check_event_name(std::string_view name);

// Whether `endpoint` receives events of `type` (enabled, and subscribed to it or to "*").
[[nodiscard]] bool subscribes(const webhookspb::EndpointRecord& endpoint, std::string_view type);

// The endpoint set decoded from the stored value (nullopt: none stored); kCorruption.
[[nodiscard]] Result<webhookspb::EndpointSet> decode_endpoints(
    const std::optional<std::string>& raw);

// Reads the set through any reader with get(Space, key) (a storage::Reader or an ApplyBatch).
template <typename Reader>
[[nodiscard]] Result<webhookspb::EndpointSet> read_endpoints(const Reader& reader) {
  HERALD_ASSIGN_OR_RETURN(auto raw, reader.get(storage::Space::kState, endpoints_key()));
  return decode_endpoints(raw);
}

// One endpoint, or nullopt.
[[nodiscard]] std::optional<webhookspb::EndpointRecord> find_endpoint(
    const webhookspb::EndpointSet& set, std::string_view endpoint_id);

class Endpoints final : public rsm::StateMachine {
 public:
  [[nodiscard]] rsmpb::CommandResult apply(raft::Index index, const rsmpb::Command& command,
                                           rsm::ApplyBatch& batch) override;
  // Deleting an endpoint frees space; registering one does not.
  [[nodiscard]] bool allowed_when_disk_low(const rsmpb::Command& command) const override;
};

}  // namespace herald::webhooks
