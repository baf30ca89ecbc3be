// The "webhook.post" activity handler and the HTTP client interface it posts through
// (docs/webhooks.md, "Delivery" and "Verifying a request").
//
// An attempt reads its endpoint from the replica's applied state (URL and key: the key never
// leaves the state or enters a workflow's input or history), signs the run's body with the
// attempt's timestamp, and posts it. Outcomes: 2xx completes (output: the status); 410 fails
// with kEndpointGone and a deleted or disabled endpoint with kEndpointRemoved (both final); any
// other status fails with kHttpError (a 429's or 503's Retry-After passed on as the retry hint),
// a transfer that failed or timed out with kTransferError (both retried by the engine). Every
// attempt's details (JSON: endpoint, status, latency_ms, error) go to its history event.
//
// The same event id goes out on every attempt, across leaders: receivers deduplicate on it.
// Thread-safety: run() on the raft thread; the Poster calls back on any thread and the handler
// posts the outcome back through `post`.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "storage/engine.h"
#include "workflow/runtime.h"

namespace herald::webhooks {

struct HttpPost {
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

struct HttpPostResult {
  long status = 0;                  // the HTTP status; 0 when the transfer failed
  std::string error;                // why the transfer failed (status 0)
  std::int64_t retry_after_ms = 0;  // the answer's Retry-After, 0 when none
  std::int64_t latency_ms = 0;
};

// Posts requests; `done` is called exactly once, on any thread. Thread-safety: post() from any
// thread.
class Poster {
 public:
  virtual ~Poster() = default;
  virtual void post(HttpPost request, std::function<void(HttpPostResult)> done) = 0;
};

// Request headers set on every attempt.
inline constexpr char kHeaderId[] = "webhook-id";
inline constexpr char kHeaderTimestamp[] = "webhook-timestamp";
inline constexpr char kHeaderSignature[] = "webhook-signature";
inline constexpr char kHeaderEventType[] = "herald-event-type";
inline constexpr char kHeaderAttempt[] = "herald-attempt";

class PostHandler final : public workflow::ActivityHandler {
 public:
  using PostFn = std::function<void(std::function<void()>)>;
  // `state`, `poster` (may be null: every attempt fails, retryable) and `clock` are borrowed.
  PostHandler(const storage::Reader* state, Poster* poster, const Clock* clock, PostFn post);

  void run(const workflow::ActivityTask& task, std::function<void()> heartbeat,
           std::function<void(workflow::ActivityOutcome)> done) override;

 private:
  const storage::Reader* state_;
  Poster* poster_;
  const Clock* clock_;
  PostFn post_;
};

// The outcome of an attempt answered with `result` (exposed for tests).
[[nodiscard]] workflow::ActivityOutcome outcome_of_post(std::string_view endpoint_id,
                                                        const HttpPostResult& result);

}  // namespace herald::webhooks
