// The delivery workflow: one durable workflow per (message, recipient user), type
// "messaging.delivery".
//
// The messaging domain starts it with a serialized messagingpb::DeliveryInput in the same apply
// batch that stores the message, and signals it when a device acknowledges ("delivered") or reads
// ("read") the message. The workflow decides when to push, when to escalate by email, and when the
// message counts as delivered and read; the leader's activity handlers do the pushing and the
// mailing (messaging/providers.h). State diagram and history records: docs/messaging.md,
// "Delivery workflow".
//
// Named states, in order:
//   "initiated"           the run exists; its kStarted event has not been decided yet.
//   "stored"              the message is stored; every device is pending. Timer "push" (the
//                         grace for delivery over a live socket) runs when push is enabled and
//                         there are devices; timer "escalate" runs when escalate_after_ms > 0;
//                         timer "close" (the run's lifetime) when close_after_ms > 0. Version 3
//                         runs stay here while their push activities are in flight.
//   "push_dispatched"     version 3: a push service accepted a push to one of the devices.
//                         Versions 1 and 2: "push" fired and push activities were scheduled.
//   "delivery_confirmed"  some device acknowledged: the timers are canceled.
//   "read_acknowledged"   some device read it: the run completes (result = that device's id).
//
// Transitions (every other event changes nothing):
//  - signal "delivered" (DeviceSignal): the device becomes DEVICE_DELIVERED (an unknown device is
//    added: the user may have added it after the message); the first one moves "stored" or
//    "push_dispatched" to "delivery_confirmed" and cancels timers "push" and "escalate". A device
//    already delivered or read changes nothing (duplicate signals are harmless).
//  - signal "read" (DeviceSignal), in any open state: the device becomes DEVICE_READ (read
//    implies delivered), the timers are canceled and the run completes in "read_acknowledged"
//    with the reading device's id as its result.
//  - timer "push" in "stored" (versions 2 and 3): one activity "messaging.push" per device still
//    pending (tag kPushDeviceTagPrefix + index, a PushTask with per_device), which becomes
//    DEVICE_PUSHED; at most kMaxPushActivitiesPerDecision per decision, the rest after a
//    zero-delay "push" timer. Version 3 (kDeliveryVersion) stays in "stored": nothing has reached
//    a device yet; version 2 enters "push_dispatched". Each device is given one push activity per
//    run. A completion marks that device push_accepted and records "push_sent" (payload: the
//    device); in version 3 the first one moves "stored" to "push_dispatched". A failure
//    (non-retryable — push.no_provider among them, also for a push a recording provider
//    journaled — or the retry window is over) sets its push_error and data.push_error, puts it
//    back to DEVICE_PENDING and records "push_failed"; the other devices and the state stay.
//    Version 1 runs (stored before versions): one activity for every pending device under
//    kPushTag, with the version 1 policies, entering "push_dispatched"; its failure puts them all
//    back.
//  - timer "escalate" before confirmation: records "escalated", sets data.escalated and, when
//    input.email_fallback, schedules activity "messaging.email" with an EmailTask. Its completion
//    sets data.emailed and records "email_sent"; its failure records "email_failed".
//  - timer "close" in an open state: the run has lived its lifetime unread; data.close_due is set.
//    The run completes as soon as no work is pending — no "push" or "escalate" timer still to
//    fire, no push or email attempt in flight (data.push_timer_pending, escalate_timer_pending,
//    push_open, email_open) — at once or after the event that ends the last of it, so the
//    lifetime never cuts a push, an escalation or an attempt short: history records "expired"
//    (payload "unread" in "delivery_confirmed", else "undelivered") and the run completes in its
//    state with an empty result.
//  - a cancel request (e.g. the message was deleted or expired): the type adds nothing, so the
//    engine closes the run as CANCELED and drops its timers and open activities
//    (workflow/engine.h).
//  - an unknown signal, or a signal whose payload is not a DeviceSignal with a device id of
//    1..kMaxDeviceIdBytes bytes: history records "signal_ignored" (payload: the signal name and
//    why); state and data are unchanged.
//  - a start input that does not decode fails the run with kDeliveryCorruptInput; one that
//    decodes but breaks a bound (check_delivery_input) with kDeliveryInvalidInput; data that does
//    not decode (never written by this type) with kDeliveryCorruptData.
//
// on_event() is pure and deterministic (workflow/definition.h): times come from the signal's
// time_ms or the event's stamped time. Thread-safety: the type is immutable.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "messaging/delivery.pb.h"
#include "workflow/definition.h"
#include "workflow/workflow.pb.h"

namespace herald::messaging {

inline constexpr char kDeliveryType[] = "messaging.delivery";

// Named states.
inline constexpr char kDeliveryInitiated[] = "initiated";
inline constexpr char kDeliveryStored[] = "stored";
inline constexpr char kDeliveryPushDispatched[] = "push_dispatched";
inline constexpr char kDeliveryConfirmed[] = "delivery_confirmed";
inline constexpr char kDeliveryReadAcknowledged[] = "read_acknowledged";

// Signals (payload: a serialized messagingpb::DeviceSignal).
inline constexpr char kDeliveredSignal[] = "delivered";
inline constexpr char kReadSignal[] = "read";
// The cancel reason in a delivery's history when its message is deleted (the run closes canceled).
inline constexpr char kMessageDeletedReason[] = "message_deleted";
// The cancel reason when its message expires under the message retention (docs/messaging.md,
// "Retention").
inline constexpr char kMessageExpiredReason[] = "message_expired";

// USER timer tags.
inline constexpr char kPushTimer[] = "push";
inline constexpr char kEscalateTimer[] = "escalate";
inline constexpr char kCloseTimer[] = "close";

// Activity types (the handlers' names) and the tags the workflow schedules them under.
inline constexpr char kPushActivity[] = "messaging.push";    // input: messagingpb::PushTask
inline constexpr char kEmailActivity[] = "messaging.email";  // input: messagingpb::EmailTask
// Version 1 runs push every device in one activity under kPushTag; version 2 runs give each
// device its own activity, tagged kPushDeviceTagPrefix + the device's index in
// DeliveryData.devices.
inline constexpr char kPushTag[] = "push";
inline constexpr char kPushDeviceTagPrefix[] = "push/";
inline constexpr char kEmailTag[] = "email";

// History records this type adds (Action::record).
inline constexpr char kPushSentRecord[] = "push_sent";
inline constexpr char kPushFailedRecord[] = "push_failed";
inline constexpr char kEscalatedRecord[] = "escalated";
inline constexpr char kEmailSentRecord[] = "email_sent";
inline constexpr char kEmailFailedRecord[] = "email_failed";
inline constexpr char kSignalIgnoredRecord[] = "signal_ignored";
// The run lived its lifetime without a read; payload kExpiredUnread or kExpiredUndelivered.
inline constexpr char kExpiredRecord[] = "expired";
inline constexpr char kExpiredUnread[] = "unread";
inline constexpr char kExpiredUndelivered[] = "undelivered";
// A "delivered" or "read" signal from an unknown device when kMaxDeliveryDevices are tracked.
inline constexpr char kDeviceIgnoredRecord[] = "device_ignored";

// The decision rules a new run follows. A run keeps the version it started with until it closes,
// so a run stored by an earlier Herald decides as it always did (0 and 1 are version 1).
// Version 3: "push_dispatched" only once a service accepted a push; attempts refused before
// reaching the service do not use up the retry window (kProviderMaxRefusedWaitMs).
inline constexpr std::uint32_t kDeliveryVersion = 3;
// Version 2: per-device push activities one decision schedules at most (the engine allows
// workflow::kMaxActionsPerDecision actions); the rest follow through a zero-delay "push" timer.
inline constexpr std::size_t kMaxPushActivitiesPerDecision = 32;

// Error types the run fails with.
inline constexpr char kDeliveryCorruptInput[] = "delivery.corrupt_input";
inline constexpr char kDeliveryInvalidInput[] = "delivery.invalid_input";
inline constexpr char kDeliveryCorruptData[] = "delivery.corrupt_data";

// Bounds. Devices tracked per delivery (the input's and those that signal later together); the
// domain's devices-per-user bound must not exceed it.
inline constexpr std::size_t kMaxDeliveryDevices = 128;
inline constexpr std::size_t kMaxDeviceIdBytes = 256;
// Bound of push_after_ms and escalate_after_ms.
inline constexpr std::int64_t kMaxDeliveryDelayMs = 30LL * 24 * 3600 * 1000;  // 30 days
// Bound of close_after_ms (the run's lifetime).
inline constexpr std::int64_t kMaxDeliveryLifetimeMs = 3650LL * 24 * 3600 * 1000;  // 10 years

// The retry policy of the provider activities (push and email): exponential backoff with full
// jitter, 1 s, 2 s, 4 s, ... capped at 60 s, 30 s per attempt.
inline constexpr std::uint64_t kProviderRetryInitialIntervalMs = 1'000;
inline constexpr double kProviderRetryBackoffCoefficient = 2.0;
inline constexpr std::uint64_t kProviderRetryMaximumIntervalMs = 60'000;
inline constexpr std::uint64_t kProviderStartToCloseTimeoutMs = 30'000;
// Version 1: at most 8 attempts.
inline constexpr std::uint32_t kProviderRetryMaximumAttempts = 8;
// Version 2: attempts are bounded by time instead (schedule-to-close), since an attempt refused
// at once by an open circuit breaker, or held back by a Retry-After, costs the service nothing;
// a notification more than an hour late is not worth sending (the email escalation covers it).
inline constexpr std::uint64_t kProviderRetryWindowMs = 3'600'000;  // 1 h
// Version 2: a provider's retry hint (ProviderResult::retry_after_ms, e.g. APNs' or FCM's
// Retry-After, or the remaining open time of a circuit breaker) holds the next attempt back at
// most this long (workflowpb::RetryPolicy.maximum_retry_after_ms).
inline constexpr std::uint64_t kProviderMaxRetryAfterMs = 900'000;  // 15 min
// Version 3: the time attempts spend waiting after a guard refused them before they reached the
// service (ProviderResult::refused: an open circuit breaker, the concurrency bound, the retry
// budget) does not count against kProviderRetryWindowMs, up to this much in all per activity
// (workflowpb::ActivityOptions.maximum_refused_wait_ms). So while a breaker stays open the
// attempts wait durably in their workflows and none is dropped; the window measures only time
// spent on attempts the service saw (its own 429 and 5xx answers count: an hour of those is an
// outage the email escalation covers). The bound keeps an activity finite if a service never
// comes back.
inline constexpr std::uint64_t kProviderMaxRefusedWaitMs = 7ULL * 24 * 3600 * 1000;  // 7 days

// The push policy of version 2 and 3 runs: the provider policy above with every push error type
// that no retry of the same request can fix non-retryable — kPushUnregistered, kPushInvalidToken,
// kPushPayloadTooLarge, kPushRejected, kPushNoProvider, kPushNoTarget (messaging/providers.h) —
// and workflow::kUnknownActivityType; unlimited attempts within kProviderRetryWindowMs; retry
// hints honoured up to kProviderMaxRetryAfterMs.
[[nodiscard]] workflowpb::RetryPolicy push_retry_policy();
// The email policy of version 2 and 3 runs: kEmailRejected, kEmailNoProvider and
// workflow::kUnknownActivityType non-retryable; attempts and hints as for push.
[[nodiscard]] workflowpb::RetryPolicy email_retry_policy();
// The options version 3 runs schedule "messaging.push" / "messaging.email" with: the policies
// above, kProviderStartToCloseTimeoutMs, schedule-to-close kProviderRetryWindowMs and refused
// waits up to kProviderMaxRefusedWaitMs.
[[nodiscard]] workflowpb::ActivityOptions push_activity_options();
[[nodiscard]] workflowpb::ActivityOptions email_activity_options();
// Version 2 (frozen): as version 3 without refused waits (a refused attempt uses up the window).
[[nodiscard]] workflowpb::ActivityOptions push_activity_options_v2();
[[nodiscard]] workflowpb::ActivityOptions email_activity_options_v2();
// Version 1 (frozen: runs started before version 2 keep scheduling with these): at most
// kProviderRetryMaximumAttempts attempts, no retry hints, no schedule-to-close; push
// non-retryable kPushUnregistered, kPushInvalidToken, kPushPayloadTooLarge; email
// kEmailRejected; both workflow::kUnknownActivityType.
[[nodiscard]] workflowpb::ActivityOptions push_activity_options_v1();
[[nodiscard]] workflowpb::ActivityOptions email_activity_options_v1();

// "<prefix>/<part>/<part>..." with '%' and '/' in each part percent-escaped ("%25", "%2F"), so
// distinct parts never compose the same id. The engine refuses ids over
// workflow::kMaxWorkflowIdBytes; the domain's id bounds keep composed ids under it.
[[nodiscard]] std::string compose_workflow_id(std::string_view prefix,
                                              std::initializer_list<std::string_view> parts);

// The id of the delivery workflow of message (conversation_id, seq) to recipient_user_id:
// "delivery/<conversation_id>/<seq>/<recipient_user_id>" (escaped as above). The conversation
// comes first: a delivery lives in its conversation's shard.
[[nodiscard]] std::string delivery_workflow_id(std::string_view conversation_id, std::uint64_t seq,
                                               std::string_view recipient_user_id);

// Empty when `input` is acceptable, else why not: a recipient user, conversation and sender;
// at most kMaxDeliveryDevices device ids, each of 1..kMaxDeviceIdBytes bytes; delays within
// [0, kMaxDeliveryDelayMs]; close_after_ms within [0, kMaxDeliveryLifetimeMs].
[[nodiscard]] std::string check_delivery_input(const messagingpb::DeliveryInput& input);

// The data of a delivery run (WorkflowRecord.data); nullopt when it does not decode.
[[nodiscard]] std::optional<messagingpb::DeliveryData> decode_delivery_data(std::string_view data);

[[nodiscard]] std::shared_ptr<const workflow::WorkflowType> make_delivery_type();

}  // namespace herald::messaging
