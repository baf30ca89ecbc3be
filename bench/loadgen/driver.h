// A Driver runs the workload of bench/loadgen/workload.h against one system. The runner (main.cc)
// calls prepare() once, then run_sender(i) and run_recipient(j) each on its own thread, one thread
// per connection, and joins them.
//
// Contract of the load loops, the same for every system so the client-side work is equal:
// - run_sender keeps Options::window sends in flight on its one connection until
//   RunClock::stopping(), each an encode_body() of Options::body_bytes; an answer frees a slot and
//   is counted (ThreadStats::count_send_ok or count_error("send", code)). It then collects the
//   answers still due until none is left or RunClock::drain_over().
// - run_recipient receives on its one connection while RunClock::keep_receiving(), calls
//   record_receipt() on each message and acknowledges each message on its own (no cumulative
//   acknowledgements).
// - A connection that fails ends its loop with count_error("connection", reason).
// Waits inside the loops are at most kPollMs.
#pragma once

#include <memory>

#include "base/status.h"
#include "bench/loadgen/workload.h"

namespace herald::bench {

class Driver {
 public:
  virtual ~Driver() = default;
  // Creates what the workload needs on the server (accounts, conversations, streams,
  // subscriptions) and opens every connection; nothing is sent yet. Errors: the first failure.
  [[nodiscard]] virtual Status prepare() = 0;
  virtual void run_sender(int index, const RunClock& clock, ThreadStats& stats) = 0;
  virtual void run_recipient(int index, const RunClock& clock, ThreadStats& stats) = 0;
};

// Each factory keeps a copy of the options. The NATS and Mosquitto drivers exist when their
// client libraries were found at build time; otherwise these return kFailedPrecondition.
[[nodiscard]] std::unique_ptr<Driver> make_herald_driver(const Options& options);
[[nodiscard]] Result<std::unique_ptr<Driver>> make_nats_driver(const Options& options);
[[nodiscard]] Result<std::unique_ptr<Driver>> make_mosquitto_driver(const Options& options);

}  // namespace herald::bench
