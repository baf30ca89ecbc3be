#include "messaging/read_sync.h"

#include <fmt/format.h>

#include <utility>

#include "messaging/delivery.h"

namespace herald::messaging {

namespace {

constexpr char kReadSyncIdPrefix[] = "read_sync";

workflowpb::ActivityOptions read_options(std::uint32_t maximum_attempts,
                                         std::uint64_t maximum_interval_ms) {
  workflowpb::ActivityOptions options;
  auto* retry = options.mutable_retry();
  retry->set_initial_interval_ms(kReadRetryInitialIntervalMs);
  retry->set_backoff_coefficient(kReadRetryBackoffCoefficient);
  retry->set_maximum_interval_ms(maximum_interval_ms);
  retry->set_maximum_attempts(maximum_attempts);
  options.set_start_to_close_timeout_ms(kReadStepStartToCloseTimeoutMs);
  return options;
}

workflowpb::ActivityOptions step_options() {
  return read_options(kReadStepMaximumAttempts, kReadRetryMaximumIntervalMs);
}

workflowpb::ActivityOptions compensation_options() {
  return read_options(kReadCompensationMaximumAttempts, kReadRetryMaximumIntervalMs);
}

workflow::SagaStep make_step(std::string name, std::string action, std::string compensation,
                             workflowpb::ActivityOptions action_options) {
  return workflow::SagaStep{std::move(name), std::move(action), std::move(compensation),
                            std::move(action_options), compensation_options()};
}

ReadSyncOutcome aborted(const workflowpb::WorkflowRecord& record) {
  return ReadSyncOutcome{false, kReadSyncAborted,
                         fmt::format("{}: {}", record.error_type(), record.error_message())};
}

}  // namespace

workflow::SagaDefinition read_sync_definition() {
  workflowpb::ActivityOptions advance = step_options();
  advance.mutable_retry()->add_non_retryable_error_types(kReadBeyondLastSeq);
  advance.mutable_retry()->add_non_retryable_error_types(kReadNotMember);
  // A device of a user who is not (or no longer) a member is refused at the first step already.
  workflowpb::ActivityOptions record = step_options();
  record.mutable_retry()->add_non_retryable_error_types(kReadNotMember);
  workflow::SagaDefinition def;
  def.name = kReadSyncType;
  def.steps.push_back(make_step(kRecordMarkerStep, kReadMarkerSetActivity,
                                kReadMarkerRestoreActivity, std::move(record)));
  def.steps.push_back(make_step(kAdvanceCursorStep, kReadCursorAdvanceActivity,
                                kReadCursorKeepActivity, std::move(advance)));
  def.steps.push_back(
      make_step(kPublishReceiptsStep, kReadReceiptsPublishActivity, kReadReceiptsKeepActivity,
                read_options(/*maximum_attempts=*/0, kReadPublishMaximumIntervalMs)));
  return def;
}

std::shared_ptr<const workflow::WorkflowType> make_read_sync_type() {
  workflow::SagaDefinition def = read_sync_definition();
  // A read settles messages already stored: readers keep marking read while a disk alarm stands.
  def.starts_when_disk_low = true;
  return workflow::make_saga_type(std::move(def));
}

std::string read_sync_workflow_id(std::string_view user_id, std::string_view device_id,
                                  std::string_view conversation_id, std::uint64_t seq) {
  return compose_workflow_id(kReadSyncIdPrefix,
                             {conversation_id, user_id, device_id, std::to_string(seq)});
}

Result<ReadSyncStep> decode_read_sync_step(std::string_view activity_input) {
  std::optional<workflow::SagaValues> values = workflow::decode_saga_values(activity_input);
  ReadSyncStep decoded;
  if (!values.has_value() ||
      !decoded.input.ParseFromArray(values->input.data(), static_cast<int>(values->input.size()))) {
    return Status::invalid_argument("the activity input is not a read-sync step input");
  }
  decoded.outputs = std::move(values->outputs);
  return decoded;
}

Result<ReadSyncOutcome> decode_read_sync_outcome(std::string_view saga_result) {
  const std::optional<workflow::SagaResult> result = workflow::decode_saga_result(saga_result);
  if (!result.has_value()) {
    return Status::corruption("the read-sync result cannot be decoded");
  }
  if (!result->compensated) {
    return ReadSyncOutcome{true, {}, {}};
  }
  return ReadSyncOutcome{false, result->error_type, result->error_message};
}

Result<ReadSyncOutcome> read_sync_outcome(const workflowpb::WorkflowRecord& record) {
  if (record.type() != kReadSyncType) {
    return Status::invalid_argument(fmt::format(
        "workflow \"{}\" is a {}, not a {}", record.workflow_id(), record.type(), kReadSyncType));
  }
  switch (record.status()) {
    case workflowpb::COMPLETED: return decode_read_sync_outcome(record.result());
    case workflowpb::FAILED:
    case workflowpb::CANCELED: return aborted(record);
    default: break;
  }
  return Status::failed_precondition(fmt::format(
      "read-sync saga \"{}\" has not closed (state \"{}\")", record.workflow_id(), record.state()));
}

}  // namespace herald::messaging
