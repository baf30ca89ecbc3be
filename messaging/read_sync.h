// The read-sync saga: device A of a user read a conversation up to a sequence number; every other
// party learns of it. Type "messaging.read_sync", declared with workflow::make_saga_type
// (workflow/saga.h), so it is durable, resumable and compensates as every saga does.
//
// Input: a serialized messagingpb::ReadSyncInput. Steps, in order (action / compensation; the
// saga tags them "action/<i>" and "compensation/<i>"):
//   0. "record_marker"     "messaging.read_marker.set" records device A's read marker; its
//                          output is the previous marker (an encoding the handler chooses; the
//                          restore handler gets it back as outputs[0]).
//                          / "messaging.read_marker.restore" puts the previous marker back.
//   1. "advance_cursor"    "messaging.read_cursor.advance" advances the user's read cursor for
//                          the conversation in the replicated state; fails non-retryably with
//                          kReadBeyondLastSeq or kReadNotMember.
//                          / "messaging.read_cursor.keep", a no-op its handler completes at once.
//                          The cursor is monotonic (it only ever moves to max(cursor, seq)) and
//                          moves only when the step completes. Moving it back would undo reads
//                          the user made on other devices in the meantime and could make read
//                          messages unread; and the only step after it cannot fail for a
//                          transient reason. So a completed advance stands.
//   2. "publish_receipts"  "messaging.read_receipts.publish" signals "read" to the delivery
//                          workflows (messaging/delivery.h) and appends read receipts for the
//                          senders and the user's other devices. Unlimited attempts: it must not
//                          fail for transient reasons, and its effects are idempotent (a
//                          delivery workflow already closed answers kNotFound, which counts as
//                          done; receipts are keyed by the idempotency key).
//                          / "messaging.read_receipts.keep", a no-op.
//
// Every activity's input is workflow::encode_saga_values({ReadSyncInput, earlier outputs}); use
// decode_read_sync_step() in the handlers. Each handler must be idempotent per its activity's
// idempotency key (workflow/runtime.h).
//
// When the saga closes, the device is told read_sync_outcome(): ok, or the error type and message
// of the step that failed (after step 0 was compensated). Thread-safety: plain functions and an
// immutable type.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "messaging/delivery.pb.h"
#include "workflow/definition.h"
#include "workflow/saga.h"
#include "workflow/workflow.pb.h"

namespace herald::messaging {

inline constexpr char kReadSyncType[] = "messaging.read_sync";

// Step names (workflow::SagaStep::name), in order.
inline constexpr char kRecordMarkerStep[] = "record_marker";
inline constexpr char kAdvanceCursorStep[] = "advance_cursor";
inline constexpr char kPublishReceiptsStep[] = "publish_receipts";

// Activity types.
inline constexpr char kReadMarkerSetActivity[] = "messaging.read_marker.set";
inline constexpr char kReadMarkerRestoreActivity[] = "messaging.read_marker.restore";
inline constexpr char kReadCursorAdvanceActivity[] = "messaging.read_cursor.advance";
inline constexpr char kReadCursorKeepActivity[] = "messaging.read_cursor.keep";
inline constexpr char kReadReceiptsPublishActivity[] = "messaging.read_receipts.publish";
inline constexpr char kReadReceiptsKeepActivity[] = "messaging.read_receipts.keep";

// Error types "messaging.read_cursor.advance" fails with; neither is retried.
inline constexpr char kReadBeyondLastSeq[] = "read.beyond_last_seq";  // up_to_seq > last seq
inline constexpr char kReadNotMember[] = "read.not_member";  // the user left the conversation

// The error type read_sync_outcome() reports for a saga that failed or was canceled outside its
// steps (its data did not decode, an operator canceled it).
inline constexpr char kReadSyncAborted[] = "read.aborted";

// Retry of the marker and cursor steps: 200 ms, 400 ms, ... capped at 10 s, 5 attempts, 10 s per
// attempt. Compensations: the same intervals, 20 attempts. Publishing: the same intervals capped
// at kReadPublishMaximumIntervalMs, unlimited attempts.
inline constexpr std::uint64_t kReadRetryInitialIntervalMs = 200;
inline constexpr double kReadRetryBackoffCoefficient = 2.0;
inline constexpr std::uint64_t kReadRetryMaximumIntervalMs = 10'000;
inline constexpr std::uint32_t kReadStepMaximumAttempts = 5;
inline constexpr std::uint32_t kReadCompensationMaximumAttempts = 20;
inline constexpr std::uint64_t kReadPublishMaximumIntervalMs = 30'000;
inline constexpr std::uint64_t kReadStepStartToCloseTimeoutMs = 10'000;

// The saga's declaration (steps, activity types, options), as make_read_sync_type() uses it.
[[nodiscard]] workflow::SagaDefinition read_sync_definition();
[[nodiscard]] std::shared_ptr<const workflow::WorkflowType> make_read_sync_type();

// "read_sync/<conversation_id>/<user_id>/<device_id>/<seq>" (parts escaped as by
// compose_workflow_id, messaging/delivery.h): one saga per read position of one device, so a
// repeated read report starts nothing new (the engine dedups by id).
[[nodiscard]] std::string read_sync_workflow_id(std::string_view user_id,
                                                std::string_view device_id,
                                                std::string_view conversation_id,
                                                std::uint64_t seq);

// What a step's handler receives: the saga input and the outputs of the earlier steps (for a
// compensation, its own action's output included).
struct ReadSyncStep {
  messagingpb::ReadSyncInput input;
  std::vector<std::string> outputs;
};

// kInvalidArgument when `activity_input` is not a read-sync step input.
[[nodiscard]] Result<ReadSyncStep> decode_read_sync_step(std::string_view activity_input);

// What device A is told when its read-sync saga closed.
struct ReadSyncOutcome {
  bool ok = false;
  std::string error_type;  // when !ok: the failed step's error type, or kReadSyncAborted
  std::string error_message;

  friend bool operator==(const ReadSyncOutcome&, const ReadSyncOutcome&) = default;
};

// From a saga's result (WorkflowRecord.result of a COMPLETED run): ok when every step completed,
// else the error of the step that failed. kCorruption when `saga_result` does not decode.
[[nodiscard]] Result<ReadSyncOutcome> decode_read_sync_outcome(std::string_view saga_result);

// From the saga's record: COMPLETED as above; FAILED or CANCELED as kReadSyncAborted with the
// record's error. kFailedPrecondition while the saga runs (also in "compensation_failed", where
// it waits for an operator); kInvalidArgument for a record of another type.
[[nodiscard]] Result<ReadSyncOutcome> read_sync_outcome(const workflowpb::WorkflowRecord& record);

}  // namespace herald::messaging
