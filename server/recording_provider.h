// RecordingProvider: a push or email provider that sends nothing — it records every request and
// answers as scripted, and can append each call to a journal file. Tests use it as a double that
// accepts (RecordingAnswer::kAccept). `herald serve` uses it, with a journal, for every platform
// that has no client configured when a journal path is set (RecordingAnswer::kRecordOnly): nothing
// leaves the node, the journal shows what would have, and the delivery timeline says "no provider
// configured" with the attempt's status "recorded", never a dispatch. The interfaces it implements
// are messaging/providers.h's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "messaging/providers.h"

namespace herald::server {

using messaging::EmailProvider;
using messaging::EmailRequest;
using messaging::ProviderDone;
using messaging::ProviderResult;
using messaging::PushProvider;
using messaging::PushRequest;

// Calls kept in memory by a recording provider; later ones are counted (call_count()) and
// journaled but not kept, so a long-running node cannot grow without bound.
inline constexpr std::size_t kMaxRecordedCalls = 100'000;
// A journal file is rotated when the next line would take it past this size: the file becomes
// "<path>.1" (replacing the previous one) and a fresh file starts, so a journal holds at most
// about twice this on disk.
inline constexpr std::uint64_t kMaxJournalBytes = 64ULL * 1024 * 1024;
// Scripted failures pending at most (fail_next()).
inline constexpr std::size_t kMaxScriptedFailures = 100'000;

// What a recording provider answers a call that has no scripted failure.
enum class RecordingAnswer : std::uint8_t {
  // Success, as a service that accepted the call: a test double standing in for a real client.
  kAccept,
  // Not dispatched: ProviderResult::recorded, with error type messaging::kPushNoProvider (or
  // kEmailNoProvider) and a message saying that no provider is configured and the call was
  // recorded. The delivery workflow does not retry it and never counts it as sent.
  kRecordOnly,
};

// A provider that sends nothing: it records every request and answers as its RecordingAnswer
// says, or with the failures scripted by fail_next() (in order, one per call). Requests with the
// same idempotency key are all recorded; distinct_keys() says how many different sends that was.
//
// Optionally it appends every call to a journal file as one JSON line (Boost.JSON, so every
// string is properly escaped): {"kind": "push"|"email", "call": n (1-based, over all calls),
// "ok", "recorded", "error_type", "error_message", then the request's fields by name}, and flushes
// it, so a process-level test can see what a node pushed while it runs. A journal write error does
// not fail the send; journal_status() reports the first one.
//
// done is called synchronously, on the caller's thread, after the provider's lock is released.
// Thread-safety: every member may be called from any thread.
template <typename Request, typename Interface>
class RecordingProvider final : public Interface {
 public:
  // No journal.
  explicit RecordingProvider(RecordingAnswer answer = RecordingAnswer::kAccept);
  ~RecordingProvider() override;
  RecordingProvider(const RecordingProvider&) = delete;
  RecordingProvider& operator=(const RecordingProvider&) = delete;

  // A provider answering `answer` that appends to the journal at `path` (created when missing),
  // rotated at `max_bytes` (see kMaxJournalBytes). kIOError when the file cannot be opened for
  // appending.
  [[nodiscard]] static Result<std::unique_ptr<RecordingProvider>> with_journal(
      const std::string& path, RecordingAnswer answer, std::uint64_t max_bytes = kMaxJournalBytes);

  void send(const Request& request, ProviderDone done) override;

  // The next `calls` calls fail with (error_type, error_message), after any failures already
  // scripted. Precondition (asserted): at most kMaxScriptedFailures pending in all.
  void fail_next(std::size_t calls, const std::string& error_type,
                 const std::string& error_message = {});

  // Every call kept (the first kMaxRecordedCalls), in call order.
  [[nodiscard]] std::vector<Request> calls() const;
  // The idempotency keys of the calls kept.
  [[nodiscard]] std::set<std::string> distinct_keys() const;
  // Every call, kept or not.
  [[nodiscard]] std::uint64_t call_count() const;
  // The first journal write error; ok without a journal or while writes succeed.
  [[nodiscard]] Status journal_status() const;

 private:
  struct Journal;

  // Records `request`, takes the next scripted outcome and journals both. Caller holds mu_.
  ProviderResult record_locked(const Request& request);

  const RecordingAnswer answer_;
  mutable std::mutex mu_;
  std::vector<Request> calls_;         // guarded by mu_
  std::uint64_t call_count_ = 0;       // guarded by mu_
  std::deque<ProviderResult> script_;  // guarded by mu_
  std::unique_ptr<Journal> journal_;   // guarded by mu_; null without a journal
};

using RecordingPushProvider = RecordingProvider<PushRequest, PushProvider>;
using RecordingEmailProvider = RecordingProvider<EmailRequest, EmailProvider>;

extern template class RecordingProvider<PushRequest, PushProvider>;
extern template class RecordingProvider<EmailRequest, EmailProvider>;

}  // namespace herald::server
