#include "webhooks/handler.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/json.hpp>
#include <memory>

#include "base/assert.h"
#include "webhooks/delivery.h"
#include "webhooks/endpoints.h"
#include "webhooks/signature.h"

namespace herald::webhooks {

namespace {

namespace json = boost::json;
using workflow::ActivityOutcome;

// An endpoint's error text kept in an attempt's details, at most.
constexpr std::size_t kMaxErrorBytes = 512;
constexpr long kHttpGone = 410;

ActivityOutcome failure(std::string type, std::string message, std::string details = {}) {
  ActivityOutcome out;
  out.error_type = std::move(type);
  out.error_message = std::move(message);
  out.details = std::move(details);
  return out;
}

std::string details_of(std::string_view endpoint_id, const HttpPostResult& r) {
  json::object d{{"endpoint", endpoint_id}, {"latency_ms", r.latency_ms}};
  if (r.status != 0) d["status"] = r.status;
  if (!r.error.empty()) d["error"] = r.error.substr(0, kMaxErrorBytes);
  return json::serialize(d);
}

}  // namespace

ActivityOutcome outcome_of_post(std::string_view endpoint_id, const HttpPostResult& result) {
  std::string details = details_of(endpoint_id, result);
  if (result.status >= 200 && result.status < 300) {
    ActivityOutcome out;
    out.ok = true;
    out.output = std::to_string(result.status);
    out.details = std::move(details);
    return out;
  }
  if (result.status == kHttpGone) {
    return failure(kEndpointGone, "the endpoint answered 410 Gone", std::move(details));
  }
  if (result.status != 0) {
    ActivityOutcome out = failure(
        kHttpError, fmt::format("the endpoint answered {}", result.status), std::move(details));
    out.retry_after_ms =
        static_cast<std::uint64_t>(std::max<std::int64_t>(0, result.retry_after_ms));
    return out;
  }
  return failure(kTransferError, result.error.substr(0, kMaxErrorBytes), std::move(details));
}

PostHandler::PostHandler(const storage::Reader* state, Poster* poster, const Clock* clock,
                         PostFn post)
    : state_(state), poster_(poster), clock_(clock), post_(std::move(post)) {
  HERALD_ASSERT(state_ != nullptr && clock_ != nullptr && post_, "the webhook handler's parts");
}

void PostHandler::run(const workflow::ActivityTask& task, std::function<void()> /*heartbeat*/,
                      std::function<void(ActivityOutcome)> done) {
  const auto input = decode_delivery_input(task.input);
  if (!input) {
    done(failure(kWebhookCorruptInput, "the webhook input does not decode"));
    return;
  }
  auto endpoints = read_endpoints(*state_);
  if (!endpoints.ok()) {
    done(failure(kTransferError, endpoints.status().to_string()));
    return;
  }
  const auto endpoint = find_endpoint(*endpoints, input->endpoint_id());
  if (!endpoint || endpoint->disabled()) {
    done(
        failure(kEndpointRemoved, fmt::format("webhook endpoint \"{}\" is {}", input->endpoint_id(),
                                              endpoint ? "disabled" : "deleted")));
    return;
  }
  if (poster_ == nullptr) {
    done(failure(kTransferError, "this node has no webhook HTTP client"));
    return;
  }
  const std::int64_t timestamp_s = clock_->wall_ms() / 1000;
  HttpPost request;
  request.url = endpoint->url();
  request.body = input->body();
  request.headers = {
      {"content-type", "application/json"},
      {kHeaderId, input->event_id()},
      {kHeaderTimestamp, std::to_string(timestamp_s)},
      {kHeaderSignature, sign(endpoint->secret(), input->event_id(), timestamp_s, input->body())},
      {kHeaderEventType, input->event_type()},
      {kHeaderAttempt, std::to_string(task.attempt)},
  };
  poster_->post(std::move(request), [post = post_, endpoint_id = input->endpoint_id(),
                                     done = std::move(done)](HttpPostResult result) mutable {
    post([endpoint_id = std::move(endpoint_id), result = std::move(result),
          done = std::move(done)] { done(outcome_of_post(endpoint_id, result)); });
  });
}

}  // namespace herald::webhooks
