// The webhook delivery workflow: one durable run per (event, endpoint), type "webhook.delivery"
// (docs/webhooks.md, "Delivery"). The emitter (webhooks/emitter.h) starts it, in the batch of
// the command that decided the event, with a serialized webhookspb::WebhookDeliveryInput.
//
// Named states:
//   "initiated"  the run exists; kStarted is not decided yet.
//   "sending"    activity "webhook.post" (tag "post", input = the run's input) runs, retried by the
//                engine per webhook_activity_options(): exponential backoff with full jitter from
//                kWebhookRetryInitialMs doubling up to kWebhookRetryMaximumMs, at most
//                kWebhookMaxAttempts attempts within kWebhookDeadlineMs; every attempt is a
//                history event (activity_retry_scheduled / activity_completed / activity_failed)
//                with the handler's details (status, latency, error), shown by the timeline.
//   "delivered"  an attempt was answered 2xx: history records "webhook_delivered" (payload: the
//                HTTP status) and the run completes with that status as its result.
//   "failed"     the activity failed for good (attempts or deadline exhausted, or a
//                non-retryable error: kEndpointGone, kEndpointRemoved): history records
//                "webhook_failed" (payload "<error_type>: <message>") and the run fails with
//                error type kWebhookFailed: the terminal failed state, counted by
//                herald_workflow_transitions_total{type="webhook.delivery",state="failed"}.
// A cancel request adds nothing (the engine cancels the run). A start input that does not decode
// fails the run at once with kWebhookCorruptInput.
//
// on_event() is pure and deterministic (workflow/definition.h). Thread-safety: immutable.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "webhooks/webhooks.pb.h"
#include "workflow/definition.h"
#include "workflow/workflow.pb.h"

namespace herald::webhooks {

inline constexpr char kWebhookType[] = "webhook.delivery";
inline constexpr char kWebhookInitiated[] = "initiated";
inline constexpr char kWebhookSending[] = "sending";
inline constexpr char kWebhookDelivered[] = "delivered";
inline constexpr char kWebhookFailedState[] = "failed";

inline constexpr char kPostActivity[] = "webhook.post";
inline constexpr char kPostTag[] = "post";
inline constexpr char kDeliveredRecord[] = "webhook_delivered";
inline constexpr char kFailedRecord[] = "webhook_failed";

// Error types. The handler's: the endpoint answered 410 Gone, or was deleted since the event.
inline constexpr char kEndpointGone[] = "webhook.gone";
inline constexpr char kEndpointRemoved[] = "webhook.endpoint_removed";
// Any other non-2xx answer, and a transfer that failed or timed out: retried.
inline constexpr char kHttpError[] = "webhook.http_error";
inline constexpr char kTransferError[] = "webhook.transfer_error";
// The run's.
inline constexpr char kWebhookFailed[] = "webhook.failed";
inline constexpr char kWebhookCorruptInput[] = "webhook.corrupt_input";

// The retry policy: 1 s, 2 s, 4 s, ... capped at 10 min, full jitter; 12 attempts within 24 h;
// an endpoint's Retry-After honoured up to 10 min; 30 s per attempt (the HTTP client's own
// timeout is shorter, serve's --webhook-timeout-ms).
inline constexpr std::uint64_t kWebhookRetryInitialMs = 1'000;
inline constexpr double kWebhookRetryCoefficient = 2.0;
inline constexpr std::uint64_t kWebhookRetryMaximumMs = 600'000;
inline constexpr std::uint32_t kWebhookMaxAttempts = 12;
inline constexpr std::uint64_t kWebhookDeadlineMs = 24ULL * 3600 * 1000;
inline constexpr std::uint64_t kWebhookMaxRetryAfterMs = 600'000;
inline constexpr std::uint64_t kWebhookAttemptTimeoutMs = 30'000;

// The options "webhook.post" is scheduled with (above; kEndpointGone, kEndpointRemoved and
// workflow::kUnknownActivityType non-retryable).
[[nodiscard]] workflowpb::ActivityOptions webhook_activity_options();

[[nodiscard]] std::optional<webhookspb::WebhookDeliveryInput> decode_delivery_input(
    std::string_view input);

[[nodiscard]] std::shared_ptr<const workflow::WorkflowType> make_webhook_type();

}  // namespace herald::webhooks
