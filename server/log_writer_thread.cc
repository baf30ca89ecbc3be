#include "server/log_writer_thread.h"

#include <utility>

#include "base/assert.h"

namespace herald::server {

ThreadLogWriter::ThreadLogWriter() : thread_([this] { run(); }) {}

ThreadLogWriter::~ThreadLogWriter() {
  {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return !write_; });
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void ThreadLogWriter::start(std::function<Status()> write) {
  {
    const std::scoped_lock lock(mu_);
    HERALD_ASSERT(!in_flight_, "one log write at a time");
    write_ = std::move(write);
    in_flight_ = true;
    finished_ = false;
  }
  cv_.notify_all();
}

bool ThreadLogWriter::done() const {
  const std::scoped_lock lock(mu_);
  return finished_;
}

Status ThreadLogWriter::wait() {
  std::unique_lock lock(mu_);
  HERALD_ASSERT(in_flight_, "wait() without a write in flight");
  cv_.wait(lock, [this] { return finished_; });
  in_flight_ = false;
  finished_ = false;
  return std::exchange(result_, Status::ok_status());
}

void ThreadLogWriter::run() {
  std::unique_lock lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return stopping_ || static_cast<bool>(write_); });
    if (!write_) {
      return;  // stopping, nothing left to write
    }
    std::function<Status()> write = std::move(write_);
    write_ = nullptr;
    lock.unlock();
    Status status = write();
    lock.lock();
    result_ = std::move(status);
    finished_ = true;
    cv_.notify_all();
  }
}

}  // namespace herald::server
