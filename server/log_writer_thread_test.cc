#include "server/log_writer_thread.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace herald::server {
namespace {

TEST(ThreadLogWriterTest, TheWriteRunsOnAnotherThreadAndWaitYieldsItsStatus) {
  ThreadLogWriter writer;
  const std::thread::id caller = std::this_thread::get_id();
  std::atomic<bool> release{false};
  std::thread::id ran_on;
  writer.start([&] {
    ran_on = std::this_thread::get_id();
    while (!release.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return Status::io_error("disk gone");
  });
  // The caller goes on while the write runs: the write is not done until it is released.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(writer.done());
  release.store(true);
  const Status status = writer.wait();
  EXPECT_EQ(status.code(), Code::kIOError);
  EXPECT_NE(ran_on, caller);
}

TEST(ThreadLogWriterTest, DoneTurnsTrueOnceTheWriteReturnedAndEachWriteIsWaitedForOnce) {
  ThreadLogWriter writer;
  for (int round = 0; round < 100; ++round) {
    int written = 0;
    writer.start([&written, round] {
      written = round + 1;
      return Status::ok_status();
    });
    while (!writer.done()) {
      std::this_thread::yield();
    }
    EXPECT_TRUE(writer.wait().ok());
    EXPECT_EQ(written, round + 1);  // the write's effects are visible after wait()
  }
}

TEST(ThreadLogWriterTest, DestroyingTheWriterFinishesAWriteStillInFlight) {
  std::atomic<bool> ran{false};
  {
    ThreadLogWriter writer;
    writer.start([&ran] {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      ran.store(true);
      return Status::ok_status();
    });
  }
  EXPECT_TRUE(ran.load());
}

}  // namespace
}  // namespace herald::server
