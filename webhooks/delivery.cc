#include "webhooks/delivery.h"

#include <fmt/format.h>

#include <utility>
#include <vector>

#include "workflow/runtime.h"

namespace herald::webhooks {

namespace {

using workflow::Action;
using workflow::Decision;
using workflow::Event;

class WebhookType final : public workflow::WorkflowType {
 public:
  [[nodiscard]] std::string_view name() const override { return kWebhookType; }
  [[nodiscard]] std::string_view initial_state() const override { return kWebhookInitiated; }

  [[nodiscard]] Decision on_event(std::string_view state, std::string_view data,
                                  const Event& event) const override {
    switch (event.kind) {
      case Event::Kind::kStarted: return started(event.payload);
      case Event::Kind::kActivityCompleted:
        if (state != kWebhookSending || event.tag != kPostTag) break;
        return Decision{
            kWebhookDelivered,
            std::string(data),
            {Action::record(kDeliveredRecord, event.payload), Action::complete(event.payload)}};
      case Event::Kind::kActivityFailed: {
        if (state != kWebhookSending || event.tag != kPostTag) break;
        std::string why = fmt::format("{}: {}", event.error_type, event.error_message);
        return Decision{kWebhookFailedState,
                        std::string(data),
                        {Action::record(kFailedRecord, why), Action::fail(kWebhookFailed, why)}};
      }
      default: break;
    }
    return Decision{std::string(state), std::string(data), {}};
  }

 private:
  static Decision started(const std::string& input) {
    if (!decode_delivery_input(input)) {
      return Decision{kWebhookInitiated,
                      {},
                      {Action::fail(kWebhookCorruptInput, "the webhook input does not decode")}};
    }
    return Decision{
        kWebhookSending,
        {},
        {Action::schedule_activity(kPostActivity, kPostTag, input, webhook_activity_options())}};
  }
};

}  // namespace

workflowpb::ActivityOptions webhook_activity_options() {
  workflowpb::ActivityOptions options;
  auto* retry = options.mutable_retry();
  retry->set_initial_interval_ms(kWebhookRetryInitialMs);
  retry->set_backoff_coefficient(kWebhookRetryCoefficient);
  retry->set_maximum_interval_ms(kWebhookRetryMaximumMs);
  retry->set_maximum_attempts(kWebhookMaxAttempts);
  retry->set_maximum_retry_after_ms(kWebhookMaxRetryAfterMs);
  for (const char* type : {kEndpointGone, kEndpointRemoved, workflow::kUnknownActivityType}) {
    retry->add_non_retryable_error_types(type);
  }
  options.set_schedule_to_close_timeout_ms(kWebhookDeadlineMs);
  options.set_start_to_close_timeout_ms(kWebhookAttemptTimeoutMs);
  return options;
}

std::optional<webhookspb::WebhookDeliveryInput> decode_delivery_input(std::string_view input) {
  webhookspb::WebhookDeliveryInput decoded;
  if (!decoded.ParseFromArray(input.data(), static_cast<int>(input.size())) ||
      decoded.endpoint_id().empty() || decoded.event_id().empty()) {
    return std::nullopt;
  }
  return decoded;
}

std::shared_ptr<const workflow::WorkflowType> make_webhook_type() {
  return std::make_shared<WebhookType>();
}

}  // namespace herald::webhooks
