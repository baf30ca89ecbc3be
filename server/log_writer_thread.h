// server::ThreadLogWriter: an rsm::LogWriter that runs each raft-log write on a thread of its own,
// so that `herald serve`'s replica applies durable entries while the next round's append and
// fdatasync run (docs/ARCHITECTURE.md, "Apply behind the append").
//
// Thread-safety: start(), done() and wait() are called from one thread (the replica's); the
// write runs on the writer's thread. The destructor waits for a write in flight, then joins.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "base/status.h"
#include "rsm/log_writer.h"

namespace herald::server {

class ThreadLogWriter final : public rsm::LogWriter {
 public:
  ThreadLogWriter();
  ~ThreadLogWriter() override;
  ThreadLogWriter(const ThreadLogWriter&) = delete;
  ThreadLogWriter& operator=(const ThreadLogWriter&) = delete;

  void start(std::function<Status()> write) override;
  [[nodiscard]] bool done() const override;
  [[nodiscard]] Status wait() override;

 private:
  void run();

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::function<Status()> write_;  // guarded by mu_: the write waiting for the thread
  bool in_flight_ = false;         // guarded by mu_: started and not yet waited for
  bool finished_ = false;          // guarded by mu_: the write in flight has returned
  bool stopping_ = false;          // guarded by mu_
  Status result_;                  // guarded by mu_
  std::thread thread_;             // last: starts once the members above exist
};

}  // namespace herald::server
