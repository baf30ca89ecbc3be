// What the provider tests share: a clock the test moves, waiting with a deadline, and the outcome
// of one send. Tests only.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "base/clock.h"
#include "base/status.h"
#include "messaging/providers.h"

namespace herald::push::testing {

// The longest a test waits for anything.
inline constexpr std::chrono::milliseconds kTestWait{10'000};

// A clock both a client and its test double read, moved by the test thread.
class TestClock final : public Clock {
 public:
  [[nodiscard]] MonoMs mono_ms() const override { return now_ms_.load(); }
  [[nodiscard]] WallMs wall_ms() const override { return kWallEpochMs + now_ms_.load(); }
  void advance_ms(MonoMs delta_ms) { now_ms_ += delta_ms; }

  static constexpr WallMs kWallEpochMs = 1'767'225'600'000;  // 2026-01-01T00:00:00Z

 private:
  std::atomic<MonoMs> now_ms_{0};
};

// Polls `done` every millisecond; false when it is still false after kTestWait.
inline bool wait_until(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + kTestWait;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// The outcome of one send, awaited with a deadline.
class Pending {
 public:
  Pending() : promise_(std::make_shared<std::promise<messaging::ProviderResult>>()) {
    future_ = promise_->get_future();
  }
  messaging::ProviderDone done() {
    return [promise = promise_](messaging::ProviderResult result) {
      promise->set_value(std::move(result));
    };
  }
  messaging::ProviderResult get() {
    if (future_.wait_for(kTestWait) != std::future_status::ready) {
      ADD_FAILURE() << "no outcome within the deadline";
      return messaging::ProviderResult::failure("test.timeout", "");
    }
    return future_.get();
  }
  bool ready() {
    return future_.wait_for(std::chrono::milliseconds(0)) == std::future_status::ready;
  }

 private:
  std::shared_ptr<std::promise<messaging::ProviderResult>> promise_;
  std::future<messaging::ProviderResult> future_;
};

// Answers a double holds until release_held(): longer than any test, in milliseconds.
inline constexpr std::int64_t kHoldMs = 60'000;

// A push from Ada in conversation c-42 (seq 7, body "hello") to device d1 of user u1.
inline messaging::PushRequest sample_push(const std::string& key, const char* platform,
                                          const char* provider, const std::string& token) {
  messaging::PushRequest request;
  request.idempotency_key = key;
  request.user_id = "u1";
  request.device_id = "d1";
  request.platform = platform;
  request.provider = provider;
  request.token = token;
  request.conversation_id = "c-42";
  request.seq = 7;
  request.title = "Ada";
  request.body = "hello";
  return request;
}

// The outcome of provider.send(request), awaited.
inline messaging::ProviderResult send_and_wait(messaging::PushProvider& provider,
                                               const messaging::PushRequest& request) {
  Pending pending;
  provider.send(request, pending.done());
  return pending.get();
}

// Client::create(config, clock), or null with a test failure.
template <typename Client, typename Config>
std::unique_ptr<Client> create_client(const Config& config, const Clock& clock) {
  Result<std::unique_ptr<Client>> client = Client::create(config, clock);
  EXPECT_TRUE(client.ok()) << client.status().to_string();
  return client.ok() ? std::move(client).value() : nullptr;
}

}  // namespace herald::push::testing
