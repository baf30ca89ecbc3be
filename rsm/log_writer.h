// rsm::LogWriter: where a replica's raft-log write runs, so that a round's append (one write and
// one fdatasync of the segment log) and the apply of entries that are already durable overlap
// (docs/ARCHITECTURE.md, "Apply behind the append").
//
// The replica hands start() one write at a time and calls wait() exactly once before the next
// start(); in between it applies committed entries on its own thread and polls done() at its
// safe points (to send a follower's acknowledgements as soon as the write is durable). The write
// touches only the raft log; the replica touches the log only after wait() (see rsm::Node).
//
// Implementations: DeferredLogWriter (below; deterministic, for the simulator and tests) and
// server::ThreadLogWriter (a thread of its own, for `herald serve`).
#pragma once

#include <functional>

#include "base/assert.h"
#include "base/status.h"

namespace herald::rsm {

class LogWriter {
 public:
  virtual ~LogWriter() = default;
  // Starts `write`. Precondition: no write is in flight (every start() was waited for).
  virtual void start(std::function<Status()> write) = 0;
  // True once the write in flight has returned; false while it runs (or has not run yet).
  [[nodiscard]] virtual bool done() const = 0;
  // Blocks until the write in flight has returned and yields its status. Precondition: a write
  // is in flight.
  [[nodiscard]] virtual Status wait() = 0;
};

// Runs each write inside wait(), after everything the caller did meanwhile: the latest order
// the contract allows, on the caller's thread. Thread-safety: none.
class DeferredLogWriter final : public LogWriter {
 public:
  void start(std::function<Status()> write) override {
    HERALD_ASSERT(!write_, "one log write at a time");
    write_ = std::move(write);
  }
  [[nodiscard]] bool done() const override { return false; }
  [[nodiscard]] Status wait() override {
    HERALD_ASSERT(static_cast<bool>(write_), "wait() without a write in flight");
    std::function<Status()> write = std::move(write_);
    write_ = nullptr;
    return write();
  }

 private:
  std::function<Status()> write_;
};

}  // namespace herald::rsm
