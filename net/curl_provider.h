// What the providers built on the transfer loop (net/curl_multi_loop.h) share: email::SmtpClient
// and push::WebPushProvider. A provider request (CurlRequest) is a job of the loop that ends in
// the request's messaging::ProviderDone exactly once; CurlProvider runs the loop, fails the
// requests the loop refuses or abandons with the provider's own words, and counts the outcomes.
// Included by .cc files only, as the loop's header.
//
// Thread-safety: as the loop. fail_now(), submit() and stats() from any thread; finish() and
// every CurlRequest member on the I/O thread; stop() from any thread but the I/O thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "base/status.h"
#include "messaging/providers.h"
#include "net/curl_multi_loop.h"
#include "net/transfer_stats.h"

namespace herald::net {

// A provider's words for the failures the loop decides, all of type error_type (the provider's
// "unavailable"). Each is a whole error message.
struct CurlProviderWords {
  std::string error_type;
  std::string stopped;   // send() after the provider stopped
  std::string full;      // send() with max_concurrent + max_queued requests outstanding
  std::string expired;   // a request still queued at its deadline
  std::string stopping;  // a request queued or running when the provider stops
};

class CurlProvider;

// One request of a provider, from send() to `done`. The subclass is the transfer: begin() and
// ended() as CurlJob says, ended() calling CurlProvider::finish().
class CurlRequest : public CurlJob {
 public:
  CurlRequest(CurlProvider& provider, messaging::ProviderDone done, SteadyTime deadline);

  // Fails the request with the provider's words for `why` (kBeginFailed: the status's message).
  void abandoned(CurlAbandon why, const Status& status) final;

  CurlProvider& provider;
  const SteadyTime deadline;  // from send(), queueing included

 protected:
  // Frees what the transfer holds (its easy handle, lists) before `done` runs.
  virtual void release() = 0;

 private:
  friend class CurlProvider;
  messaging::ProviderDone done_;
};

class CurlProvider {
 public:
  // Starts the loop (CurlMultiLoop::create). kIOError when libcurl cannot be set up.
  [[nodiscard]] static Result<std::unique_ptr<CurlProvider>> create(CurlMultiLoopOptions options,
                                                                    CurlProviderWords words);
  // Stops the loop.
  ~CurlProvider();
  CurlProvider(const CurlProvider&) = delete;
  CurlProvider& operator=(const CurlProvider&) = delete;

  // Fails `done` at once, on the caller's thread, counted as failed: a request refused before it
  // is queued.
  void fail_now(const messaging::ProviderDone& done, std::string type, std::string message);
  // Queues `request` until its deadline; when the loop refuses it (stopped, full), its `done`
  // fails at once on the caller's thread with the provider's words.
  void submit(const std::shared_ptr<CurlRequest>& request);
  // I/O thread: releases the request's transfer, counts `result` and hands it to `done`.
  // Precondition: the request has not finished yet.
  void finish(CurlRequest& request, messaging::ProviderResult result);
  // Stops the loop: every request not finished fails (CurlMultiLoop::stop). Idempotent.
  void stop();

  [[nodiscard]] const CurlProviderWords& words() const { return words_; }
  [[nodiscard]] ProviderStats stats() const;

 private:
  CurlProvider(std::unique_ptr<CurlMultiLoop> loop, CurlProviderWords words);

  const CurlProviderWords words_;
  std::atomic<std::uint64_t> sent_{0};
  std::atomic<std::uint64_t> failed_{0};
  std::unique_ptr<CurlMultiLoop> loop_;
};

}  // namespace herald::net
