// libcurl's multi interface on an I/O thread of its own, shared by the adapters that reach their
// servers with libcurl (email/smtp.cc, push/webpush.cc). The loop owns the thread, the multi
// handle and a FIFO of jobs; each job owns its easy handle and says what a transfer is and what
// its outcome means (CurlJob). Included by .cc files only: libcurl stays out of the providers'
// headers.
//
// Bounds: at most max_concurrent transfers run at once; at most max_queued more jobs wait, in
// submit() order. A job counts against the sum from submit() until it is over, and its place is
// free before its ended() or abandoned() runs (so whoever learns its outcome from there can
// submit again); submit() refuses a job beyond the sum (kFull) without calling it back. A job
// still queued at its deadline is abandoned (kExpired) without running; the deadline of a
// running transfer is the job's to enforce (CURLOPT_TIMEOUT_MS). A job may run again when its
// transfer ends (run_again(), e.g. a request repeated with fresh credentials): it keeps its place
// and does not queue.
//
// Stopping: stop() abandons the queued jobs (kStopping), calls options.on_stop on the I/O thread,
// lets the running transfers end for up to options.stop_drain_ms (those that do are abandoned
// too, whatever their result), removes the rest (kStopping) and joins the thread. Removing a
// running transfer ends it as libcurl does: an HTTP stream is reset, but an upload such as SMTP's
// DATA is completed first, which is why the SMTP client shuts its sockets in on_stop.
//
// Thread-safety: submit() and stats() may be called from any thread, the I/O thread included
// (a job's callback); stop() from any thread but the I/O thread. Every CurlJob member runs on the
// I/O thread.
#pragma once

#include <curl/curl.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "base/status.h"
#include "net/transfer_stats.h"

namespace herald::net {

using SteadyTime = std::chrono::steady_clock::time_point;

struct CurlEasyFree {
  void operator()(CURL* easy) const { curl_easy_cleanup(easy); }
};
struct CurlSlistFree {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};
using CurlEasyPtr = std::unique_ptr<CURL, CurlEasyFree>;
using CurlSlistPtr = std::unique_ptr<curl_slist, CurlSlistFree>;

// Why a job is over without a transfer's result.
enum class CurlAbandon : std::uint8_t {
  kExpired,      // its deadline passed while it waited in the queue; it never ran
  kStopping,     // the loop stopped while the job was queued or running
  kBeginFailed,  // begin() failed (at the start or to run again); the status says why
};

// One unit of work of the loop: a transfer, possibly run again. Every member runs on the I/O
// thread. Exactly one of ended() and abandoned() is called, once, for a job the loop accepted.
class CurlJob {
 public:
  virtual ~CurlJob() = default;
  // Sets a transfer up and returns its easy handle, which the job owns and keeps alive until its
  // ended() or abandoned() returns. An error abandons the job (kBeginFailed, with that status).
  [[nodiscard]] virtual Result<CURL*> begin() = 0;
  // The transfer ended with `code`; its handle is out of the multi handle and may still be read
  // (curl_easy_getinfo). True runs the job again at once: begin() is called anew (a failure
  // abandons the job, kBeginFailed), neither queued nor refused by the bounds. Asked first, before
  // ended(), and not while the loop stops.
  [[nodiscard]] virtual bool run_again(CURLcode code) { return false; }
  // The transfer ended with `code` (as above) and the job is over.
  virtual void ended(CURLcode code) = 0;
  // The job is over without a result of its transfer (see CurlAbandon); `status` is begin()'s
  // error for kBeginFailed, OK otherwise.
  virtual void abandoned(CurlAbandon why, const Status& status) = 0;
};

struct CurlMultiLoopOptions {
  std::size_t max_concurrent = 1;  // transfers running at once; >= 1
  std::size_t max_queued = 0;      // jobs waiting for a transfer beyond those
  long max_connections = 0;        // CURLMOPT_MAXCONNECTS: connections kept; 0 is libcurl's choice
  bool multiplex = false;          // CURLMOPT_PIPELINING = CURLPIPE_MULTIPLEX (HTTP/2 streams)
  // When stopping, after the queued jobs are abandoned, on the I/O thread; may be empty.
  std::function<void()> on_stop;
  // When stopping, how long the running transfers may take to end before they are removed, in
  // milliseconds (0: removed at once).
  std::int64_t stop_drain_ms = 0;
};

enum class CurlSubmit : std::uint8_t {
  kAccepted,  // queued: the job will be ended or abandoned on the I/O thread
  kStopped,   // the loop is stopped; the job is not called back
  kFull,      // max_concurrent + max_queued jobs are outstanding; the job is not called back
};

class CurlMultiLoop {
 public:
  // Initializes libcurl once per process, creates the multi handle and starts the I/O thread.
  // kIOError when libcurl cannot be set up. Precondition: max_concurrent >= 1.
  [[nodiscard]] static Result<std::unique_ptr<CurlMultiLoop>> create(CurlMultiLoopOptions options);
  // Stops (see stop()), then closes the connections kept for reuse.
  ~CurlMultiLoop();
  CurlMultiLoop(const CurlMultiLoop&) = delete;
  CurlMultiLoop& operator=(const CurlMultiLoop&) = delete;

  // Queues `job` to start once a transfer is free, unless still queued at `deadline`.
  [[nodiscard]] CurlSubmit submit(std::shared_ptr<CurlJob> job, SteadyTime deadline);
  // Ends every job as the top of this file says and joins the I/O thread; later submit() calls
  // are refused (kStopped). Idempotent. Precondition: not on the I/O thread.
  void stop();

  [[nodiscard]] TransferStats stats() const;

  struct Impl;

 private:
  explicit CurlMultiLoop(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace herald::net
