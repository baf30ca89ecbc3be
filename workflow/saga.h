// Saga: a workflow type that runs ordered steps and, when one fails, undoes the completed ones.
//
// A saga is declared as ordered steps, each an action activity and the compensation activity that
// undoes it. make_saga_type() turns the declaration into a WorkflowType (workflow/definition.h),
// so a saga is durable, replicated and resumable like any workflow: every fact it needs lives in
// its data, which says for every step whether its action completed and whether its compensation
// is pending, scheduled, done, failed or resolved by an operator. A replica that takes over in
// the middle of a (parallel) compensation therefore continues exactly where the last one stopped.
//
// Named states (visible to operators in the visibility index):
//   "running"              step i's action is scheduled; steps 0..i-1 completed.
//   "compensating"         undoing completed steps, or (after a cancel request) waiting for the
//                          action in flight to finish first.
//   "compensation_failed"  a compensation failed after its retry policy; the run stays RUNNING
//                          and waits for an operator signal ("retry" or "resolve").
//   "completed"            every action completed; the run is COMPLETED.
//   "compensated"          the saga failed or was canceled and every completed step was undone
//                          (or resolved by an operator); the run is COMPLETED as well, with a
//                          SagaResult whose `compensated` is true. A run status FAILED is kept
//                          for a saga whose own data is unreadable ("saga.corrupt_data").
//
// Rules:
//  - Step i's action input is encode_saga_values({saga input, outputs of steps 0..i-1}).
//  - When step i's action fails (kActivityFailed: its retry policy is exhausted or the error is
//    non-retryable), the completed steps 0..i-1 are compensated; step i itself is not (it did
//    not complete), as in Temporal's saga. Compensation of step j gets
//    encode_saga_values({saga input, outputs of steps 0..j}) (its own action's output included).
//  - Order: one at a time in reverse step order, or all at once when parallel_compensation.
//  - A compensation that fails after its own retry policy is recorded in history as
//    "compensation_failed" (payload "<step>: <error_type>: <error_message>") and the saga enters
//    "compensation_failed". Sequential: nothing further is scheduled. Parallel: compensations
//    already scheduled keep running and are accounted for as they finish.
//  - Operator signals, only in "compensation_failed": "retry" schedules every failed
//    compensation again and continues; "resolve" marks every failed compensation as fixed by
//    hand (history: "resolved_by_operator", payload = the signal payload) and continues with
//    the compensations still to do, finishing as "compensated" when none remain. Any other
//    signal, and these signals in any other state, are ignored: state and data are unchanged and
//    history records "signal_ignored" (payload = the signal name).
//  - Cancellation while "running" is accepted (history: "cancel_accepted"): the engine cannot
//    recall an activity that is running, so the saga moves to "compensating" and waits for the
//    outcome of the action in flight (bounded by its options' timeouts); if it completed, that
//    step is compensated too. Then every completed step is compensated as above. A cancel request
//    while compensating is ignored (history: "cancel_ignored"): the saga is already undoing.
//  - The saga's data, and every later step's input, carry every earlier output: together they
//    must stay within the engine's kMaxPayloadBytes, or the engine fails the run.
//  - Every action's and compensation's retry policy gets kUnknownActivityType (runtime.h) added
//    to its non-retryable error types, so an activity type no leader can run fails at once.
//
// on_event() is pure and deterministic (definition.h). Thread-safety: the type is immutable.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "workflow/definition.h"
#include "workflow/workflow.pb.h"

namespace herald::workflow {

inline constexpr char kSagaRunning[] = "running";
inline constexpr char kSagaCompensating[] = "compensating";
inline constexpr char kSagaCompensationFailed[] = "compensation_failed";
inline constexpr char kSagaCompleted[] = "completed";
inline constexpr char kSagaCompensated[] = "compensated";

inline constexpr char kSagaRetrySignal[] = "retry";
inline constexpr char kSagaResolveSignal[] = "resolve";

// Bounds, checked by make_saga_type() (a declaration is code: violations are asserted). A
// parallel compensation of every step, plus one history record, fits in one Decision.
inline constexpr std::size_t kMaxSagaSteps = 32;

struct SagaStep {
  std::string name;  // for operators and docs; unique within the saga
  std::string action_type;
  std::string compensation_type;
  workflowpb::ActivityOptions action_options;
  workflowpb::ActivityOptions compensation_options;
};

struct SagaDefinition {
  std::string name;             // the workflow type's name
  std::vector<SagaStep> steps;  // 1..kMaxSagaSteps
  bool parallel_compensation = false;
  bool starts_when_disk_low = false;  // WorkflowType::starts_when_disk_low
};

// What an action or a compensation receives: the saga input and the outputs of earlier steps.
struct SagaValues {
  std::string input;
  std::vector<std::string> outputs;

  friend bool operator==(const SagaValues&, const SagaValues&) = default;
};

// The result of a completed run.
struct SagaResult {
  bool compensated = false;          // false: every step completed
  std::vector<std::string> outputs;  // the outputs of the steps that completed
  // compensated: why. A failed action's error, or error_type "canceled" with the cancel reason.
  std::string error_type;
  std::string error_message;
  bool resolved_by_operator = false;  // some compensation was resolved by hand

  friend bool operator==(const SagaResult&, const SagaResult&) = default;
};

[[nodiscard]] std::string encode_saga_values(const SagaValues& values);
// nullopt when `bytes` is not an encoded SagaValues.
[[nodiscard]] std::optional<SagaValues> decode_saga_values(std::string_view bytes);
[[nodiscard]] std::string encode_saga_result(const SagaResult& result);
[[nodiscard]] std::optional<SagaResult> decode_saga_result(std::string_view bytes);

// Preconditions (asserted): a non-empty name, 1..kMaxSagaSteps steps, each with a unique
// non-empty name and non-empty activity types.
[[nodiscard]] std::shared_ptr<const WorkflowType> make_saga_type(SagaDefinition def);

}  // namespace herald::workflow
