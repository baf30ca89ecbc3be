// The transfer loop and the provider requests on it against a real HTTP/2 + TLS server on 127.0.0.1
// (push/h2_server.h, the server the push doubles are built on): each job is one GET through
// libcurl, and the server holds its answers when a test needs transfers that stay running.
#include "net/curl_multi_loop.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "net/curl_provider.h"
#include "push/h2_server.h"

namespace herald::net {
namespace {

using push::testing::H2ServerAnswer;
using push::testing::H2ServerHandler;
using push::testing::H2ServerRequest;
using push::testing::H2TestServer;

// The longest a test waits for anything.
constexpr std::chrono::milliseconds kTestWait{10'000};
// Answers the server holds until release_held(): longer than any test, in milliseconds.
constexpr std::int64_t kHoldMs = 60'000;
// HTTP/2 streams the server allows per connection.
constexpr std::uint32_t kServerStreams = 100;
// A queued job's deadline that passes while the test waits, in milliseconds.
constexpr std::int64_t kShortDeadlineMs = 200;

// Answers 200, except 401 to the first request for /refuse-once.
class Handler final : public H2ServerHandler {
 public:
  H2ServerAnswer decide(const H2ServerRequest& request, std::size_t& /*tag*/) override {
    ++requests;
    H2ServerAnswer answer;
    answer.status = request.path == "/refuse-once" && !refused.exchange(true) ? 401 : 200;
    return answer;
  }
  void unanswered(const H2ServerRequest& /*request*/) override {}
  void answered(std::size_t /*tag*/, const H2ServerAnswer& /*answer*/) override { ++answers; }

  std::atomic<int> requests{0};
  std::atomic<int> answers{0};
  std::atomic<bool> refused{false};
};

// How a job ended, as its callbacks saw it.
struct Outcome {
  bool ended = false;  // ended(); else abandoned()
  CURLcode code = CURLE_OK;
  long http_status = 0;
  CurlAbandon why = CurlAbandon::kStopping;
  std::string message;
};

// One GET of `url`, trusting `ca_file`.
class GetJob final : public CurlJob {
 public:
  GetJob(std::string url, std::string ca_file)
      : url_(std::move(url)),
        ca_file_(std::move(ca_file)),
        future_(promise_.get_future().share()) {}

  Result<CURL*> begin() override {
    ++begins;
    if (refuse_begin_from > 0 && begins >= refuse_begin_from) {
      return Status::unavailable("the test job refuses to begin");
    }
    easy_.reset(curl_easy_init());
    if (!easy_) {
      return Status::unavailable("curl_easy_init failed");
    }
    bool ok = true;
    const auto set = [&](CURLoption option, auto value) {
      ok = ok && curl_easy_setopt(easy_.get(), option, value) == CURLE_OK;
    };
    set(CURLOPT_URL, url_.c_str());
    set(CURLOPT_CAINFO, ca_file_.c_str());
    set(CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS));
    set(CURLOPT_NOSIGNAL, 1L);
    set(CURLOPT_WRITEFUNCTION, &discard);
    if (!ok) {
      return Status::unavailable("curl_easy_setopt failed");
    }
    return easy_.get();
  }

  bool run_again(CURLcode code) override {
    long status = 0;
    if (curl_easy_getinfo(easy_.get(), CURLINFO_RESPONSE_CODE, &status) != CURLE_OK) {
      status = 0;
    }
    return again_on_401 && code == CURLE_OK && status == 401;
  }

  void ended(CURLcode code) override {
    long status = 0;
    if (curl_easy_getinfo(easy_.get(), CURLINFO_RESPONSE_CODE, &status) != CURLE_OK) {
      status = 0;
    }
    promise_.set_value(Outcome{true, code, status, CurlAbandon::kStopping, {}});
  }

  void abandoned(CurlAbandon why, const Status& status) override {
    promise_.set_value(Outcome{false, CURLE_OK, 0, why, status.message()});
  }

  // The outcome; a test failure and a default Outcome when there is none within kTestWait.
  Outcome wait() const {
    if (future_.wait_for(kTestWait) != std::future_status::ready) {
      ADD_FAILURE() << "the job did not end within the deadline";
      return {};
    }
    return future_.get();
  }
  bool over() const {
    return future_.wait_for(std::chrono::milliseconds(0)) == std::future_status::ready;
  }

  std::atomic<int> begins{0};
  int refuse_begin_from = 0;  // the begin() call from which on it fails; 0: never
  bool again_on_401 = false;

 private:
  static std::size_t discard(char* /*data*/, std::size_t size, std::size_t count, void*) {
    return size * count;
  }

  const std::string url_;
  const std::string ca_file_;
  CurlEasyPtr easy_;
  std::promise<Outcome> promise_;
  std::shared_future<Outcome> future_;
};

bool wait_until(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + kTestWait;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

SteadyTime in_ms(std::int64_t ms) {
  return std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
}

class CurlMultiLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<std::unique_ptr<H2TestServer>> server = H2TestServer::start(handler_, kServerStreams);
    ASSERT_TRUE(server.ok()) << server.status().to_string();
    server_ = std::move(server).value();
  }

  std::unique_ptr<CurlMultiLoop> make_loop(CurlMultiLoopOptions options) {
    Result<std::unique_ptr<CurlMultiLoop>> loop = CurlMultiLoop::create(std::move(options));
    EXPECT_TRUE(loop.ok()) << loop.status().to_string();
    return loop.ok() ? std::move(loop).value() : nullptr;
  }

  std::shared_ptr<GetJob> job(const std::string& path = "/") {
    return std::make_shared<GetJob>("https://127.0.0.1:" + std::to_string(server_->port()) + path,
                                    server_->ca_file());
  }

  static CurlMultiLoopOptions bounded(std::size_t max_concurrent, std::size_t max_queued) {
    CurlMultiLoopOptions options;
    options.max_concurrent = max_concurrent;
    options.max_queued = max_queued;
    return options;
  }

  Handler handler_;
  std::unique_ptr<H2TestServer> server_;
};

TEST_F(CurlMultiLoopTest, AJobRunsAndEndsWithItsTransfersResult) {
  auto loop = make_loop(bounded(1, 0));
  ASSERT_NE(loop, nullptr);
  auto get = job();
  ASSERT_EQ(loop->submit(get, in_ms(kTestWait.count())), CurlSubmit::kAccepted);
  const Outcome outcome = get->wait();
  EXPECT_TRUE(outcome.ended);
  EXPECT_EQ(outcome.code, CURLE_OK);
  EXPECT_EQ(outcome.http_status, 200);
  EXPECT_EQ(loop->stats().started, 1U);
}

TEST_F(CurlMultiLoopTest, SubmitRefusesAJobBeyondTheRunningAndQueuedBound) {
  server_->set_delay_ms(kHoldMs);
  auto loop = make_loop(bounded(1, 1));
  ASSERT_NE(loop, nullptr);
  auto first = job();
  auto second = job();
  ASSERT_EQ(loop->submit(first, in_ms(kTestWait.count())), CurlSubmit::kAccepted);
  ASSERT_EQ(loop->submit(second, in_ms(kTestWait.count())), CurlSubmit::kAccepted);
  auto third = job();
  EXPECT_EQ(loop->submit(third, in_ms(kTestWait.count())), CurlSubmit::kFull);
  ASSERT_TRUE(wait_until([&] { return handler_.requests.load() == 1; }));
  EXPECT_EQ(loop->stats().in_flight, 1U);
  EXPECT_EQ(loop->stats().queued, 1U);

  server_->set_delay_ms(0);
  server_->release_held();
  EXPECT_EQ(first->wait().http_status, 200);
  EXPECT_EQ(second->wait().http_status, 200);
  EXPECT_EQ(third->begins.load(), 0);
  EXPECT_FALSE(third->over());  // a refused job is never called back
  // Both are over: their places were free before their outcomes were known.
  auto fourth = job();
  ASSERT_EQ(loop->submit(fourth, in_ms(kTestWait.count())), CurlSubmit::kAccepted);
  EXPECT_EQ(fourth->wait().http_status, 200);
  EXPECT_EQ(loop->stats().max_in_flight, 1U);
  EXPECT_EQ(loop->stats().started, 3U);
}

TEST_F(CurlMultiLoopTest, AJobStillQueuedAtItsDeadlineIsAbandonedAsExpired) {
  server_->set_delay_ms(kHoldMs);
  auto loop = make_loop(bounded(1, 1));
  ASSERT_NE(loop, nullptr);
  auto running = job();
  auto waiting = job();
  ASSERT_EQ(loop->submit(running, in_ms(kTestWait.count())), CurlSubmit::kAccepted);
  ASSERT_EQ(loop->submit(waiting, in_ms(kShortDeadlineMs)), CurlSubmit::kAccepted);

  const Outcome outcome = waiting->wait();
  EXPECT_FALSE(outcome.ended);
  EXPECT_EQ(outcome.why, CurlAbandon::kExpired);
  EXPECT_EQ(waiting->begins.load(), 0);  // it never ran
  EXPECT_FALSE(running->over());
  EXPECT_EQ(loop->stats().queued, 0U);
  EXPECT_EQ(loop->stats().in_flight, 1U);

  server_->release_held();
  EXPECT_EQ(running->wait().http_status, 200);
}

TEST_F(CurlMultiLoopTest, StopAbandonsTheQueuedAndTheRunningJobs) {
  server_->set_delay_ms(kHoldMs);
  std::atomic<int> on_stop_calls{0};
  CurlMultiLoopOptions options = bounded(1, 2);
  options.on_stop = [&] { ++on_stop_calls; };
  auto loop = make_loop(std::move(options));
  ASSERT_NE(loop, nullptr);
  auto running = job();
  auto queued_a = job();
  auto queued_b = job();
  for (const auto& get : {running, queued_a, queued_b}) {
    ASSERT_EQ(loop->submit(get, in_ms(kTestWait.count())), CurlSubmit::kAccepted);
  }
  ASSERT_TRUE(wait_until([&] { return handler_.requests.load() == 1; }));

  loop->stop();
  for (const auto& get : {running, queued_a, queued_b}) {
    ASSERT_TRUE(get->over());  // before stop() returned
    const Outcome outcome = get->wait();
    EXPECT_FALSE(outcome.ended);
    EXPECT_EQ(outcome.why, CurlAbandon::kStopping);
  }
  EXPECT_EQ(queued_a->begins.load(), 0);
  EXPECT_EQ(on_stop_calls.load(), 1);
  EXPECT_EQ(loop->stats().in_flight, 0U);
  EXPECT_EQ(loop->stats().queued, 0U);
  EXPECT_EQ(loop->submit(job(), in_ms(kTestWait.count())), CurlSubmit::kStopped);
  loop->stop();  // idempotent
}

TEST_F(CurlMultiLoopTest, ATransferThatEndsWhileStoppingIsAbandonedNotEnded) {
  server_->set_delay_ms(kHoldMs);
  CurlMultiLoopOptions options = bounded(1, 0);
  // The answer is let go when the loop stops, and arrives within the drain.
  options.on_stop = [this] { server_->release_held(); };
  options.stop_drain_ms = kTestWait.count();
  auto loop = make_loop(std::move(options));
  ASSERT_NE(loop, nullptr);
  auto get = job();
  ASSERT_EQ(loop->submit(get, in_ms(kTestWait.count())), CurlSubmit::kAccepted);
  ASSERT_TRUE(wait_until([&] { return handler_.requests.load() == 1; }));

  loop->stop();
  EXPECT_EQ(handler_.answers.load(), 1);  // the server answered during the drain
  const Outcome outcome = get->wait();
  EXPECT_FALSE(outcome.ended);
  EXPECT_EQ(outcome.why, CurlAbandon::kStopping);
}

TEST_F(CurlMultiLoopTest, AJobThatAsksToRunAgainRunsAtOnceInItsPlace) {
  auto loop = make_loop(bounded(1, 0));
  ASSERT_NE(loop, nullptr);
  auto get = job("/refuse-once");
  get->again_on_401 = true;
  ASSERT_EQ(loop->submit(get, in_ms(kTestWait.count())), CurlSubmit::kAccepted);
  const Outcome outcome = get->wait();
  EXPECT_TRUE(outcome.ended);
  EXPECT_EQ(outcome.http_status, 200);
  EXPECT_EQ(get->begins.load(), 2);
  EXPECT_EQ(handler_.requests.load(), 2);
  EXPECT_EQ(loop->stats().started, 2U);
  // It kept its one place while it ran again, and gave it back at the end.
  auto next = job();
  ASSERT_EQ(loop->submit(next, in_ms(kTestWait.count())), CurlSubmit::kAccepted);
  EXPECT_EQ(next->wait().http_status, 200);
}

TEST_F(CurlMultiLoopTest, AFailedBeginAbandonsTheJobWithItsStatus) {
  auto loop = make_loop(bounded(1, 0));
  ASSERT_NE(loop, nullptr);
  auto refused = job();
  refused->refuse_begin_from = 1;
  ASSERT_EQ(loop->submit(refused, in_ms(kTestWait.count())), CurlSubmit::kAccepted);
  const Outcome outcome = refused->wait();
  EXPECT_FALSE(outcome.ended);
  EXPECT_EQ(outcome.why, CurlAbandon::kBeginFailed);
  EXPECT_EQ(outcome.message, "the test job refuses to begin");
  EXPECT_EQ(loop->stats().started, 0U);
  // Its place is free again.
  auto next = job();
  ASSERT_EQ(loop->submit(next, in_ms(kTestWait.count())), CurlSubmit::kAccepted);
  EXPECT_EQ(next->wait().http_status, 200);
}

TEST_F(CurlMultiLoopTest, AJobThatCannotBeginAgainIsAbandoned) {
  auto loop = make_loop(bounded(1, 0));
  ASSERT_NE(loop, nullptr);
  auto get = job("/refuse-once");
  get->again_on_401 = true;
  get->refuse_begin_from = 2;
  ASSERT_EQ(loop->submit(get, in_ms(kTestWait.count())), CurlSubmit::kAccepted);
  const Outcome outcome = get->wait();
  EXPECT_FALSE(outcome.ended);
  EXPECT_EQ(outcome.why, CurlAbandon::kBeginFailed);
  EXPECT_EQ(loop->stats().started, 1U);
  EXPECT_EQ(loop->stats().in_flight, 0U);
}

// ---------------------------------------------------------------------------------------------
// CurlProvider: the loop's refusals and abandons in a provider's words, each `done` once.

// One GET as a provider request; `done` gets ok and the HTTP status as provider_id.
class GetRequest final : public CurlRequest {
 public:
  GetRequest(CurlProvider& provider, messaging::ProviderDone done, SteadyTime deadline,
             std::string url, std::string ca_file)
      : CurlRequest(provider, std::move(done), deadline),
        url_(std::move(url)),
        ca_file_(std::move(ca_file)) {}

  Result<CURL*> begin() override {
    easy_.reset(curl_easy_init());
    if (!easy_ || curl_easy_setopt(easy_.get(), CURLOPT_URL, url_.c_str()) != CURLE_OK ||
        curl_easy_setopt(easy_.get(), CURLOPT_CAINFO, ca_file_.c_str()) != CURLE_OK ||
        curl_easy_setopt(easy_.get(), CURLOPT_HTTP_VERSION,
                         static_cast<long>(CURL_HTTP_VERSION_2TLS)) != CURLE_OK) {
      return Status::unavailable("cannot set the GET up");
    }
    return easy_.get();
  }
  void ended(CURLcode code) override {
    long status = 0;
    if (curl_easy_getinfo(easy_.get(), CURLINFO_RESPONSE_CODE, &status) != CURLE_OK) {
      status = 0;
    }
    provider.finish(*this, code == CURLE_OK
                               ? messaging::ProviderResult::success(std::to_string(status))
                               : messaging::ProviderResult::failure("test.failed", "transfer"));
  }
  void release() override {
    ++releases;
    easy_.reset();
  }

  int releases = 0;

 private:
  const std::string url_;
  const std::string ca_file_;
  CurlEasyPtr easy_;
};

// Every outcome a `done` got, by request.
class Outcomes {
 public:
  messaging::ProviderDone done(int id) {
    return [this, id](messaging::ProviderResult result) {
      const std::lock_guard lock(mu_);
      results_.emplace(id, std::move(result));
      ++calls_[id];
    };
  }
  bool wait_for(std::size_t count) {
    return wait_until([&] {
      const std::lock_guard lock(mu_);
      return results_.size() >= count;
    });
  }
  messaging::ProviderResult result(int id) {
    const std::lock_guard lock(mu_);
    return results_.count(id) == 1 ? results_.at(id) : messaging::ProviderResult{};
  }
  int calls(int id) {
    const std::lock_guard lock(mu_);
    return calls_[id];
  }

 private:
  std::mutex mu_;
  std::map<int, messaging::ProviderResult> results_;
  std::map<int, int> calls_;
};

CurlProviderWords test_words() {
  CurlProviderWords words;
  words.error_type = "test.unavailable";
  words.stopped = "test: stopped";
  words.full = "test: full";
  words.expired = "test: expired";
  words.stopping = "test: stopping";
  return words;
}

class CurlProviderTest : public CurlMultiLoopTest {
 protected:
  std::shared_ptr<GetRequest> request(CurlProvider& provider, int id, std::int64_t deadline_ms) {
    return std::make_shared<GetRequest>(
        provider, outcomes_.done(id), in_ms(deadline_ms),
        "https://127.0.0.1:" + std::to_string(server_->port()) + "/", server_->ca_file());
  }

  Outcomes outcomes_;
};

TEST_F(CurlProviderTest, TheLoopsFailuresUseTheProvidersWordsAndEachDoneRunsOnce) {
  server_->set_delay_ms(kHoldMs);
  Result<std::unique_ptr<CurlProvider>> created = CurlProvider::create(bounded(1, 1), test_words());
  ASSERT_TRUE(created.ok()) << created.status().to_string();
  CurlProvider& provider = **created;
  const auto running = request(provider, 1, kTestWait.count());
  provider.submit(running);
  ASSERT_TRUE(wait_until([&] { return handler_.requests.load() == 1; }));
  provider.submit(request(provider, 2, kShortDeadlineMs));  // expires in the queue
  ASSERT_TRUE(outcomes_.wait_for(1));
  provider.submit(request(provider, 3, kTestWait.count()));  // queued
  provider.submit(request(provider, 4, kTestWait.count()));  // beyond the bound: refused at once
  EXPECT_EQ(outcomes_.result(4).error_message, "test: full");
  provider.fail_now(outcomes_.done(5), "test.rejected", "test: malformed");

  provider.stop();  // the running and the queued one
  provider.submit(request(provider, 6, kTestWait.count()));
  ASSERT_TRUE(outcomes_.wait_for(6));
  const std::map<int, std::string> expected = {{1, "test: stopping"},  {2, "test: expired"},
                                               {3, "test: stopping"},  {4, "test: full"},
                                               {5, "test: malformed"}, {6, "test: stopped"}};
  for (const auto& [id, message] : expected) {
    const messaging::ProviderResult result = outcomes_.result(id);
    EXPECT_FALSE(result.ok) << id;
    EXPECT_EQ(result.error_type, id == 5 ? "test.rejected" : "test.unavailable") << id;
    EXPECT_EQ(result.error_message, message) << id;
    EXPECT_EQ(outcomes_.calls(id), 1) << id;
  }
  EXPECT_EQ(running->releases, 1);
  const ProviderStats stats = provider.stats();
  EXPECT_EQ(stats.sent, 0U);
  EXPECT_EQ(stats.failed, 6U);
  EXPECT_EQ(stats.started, 1U);
}

TEST_F(CurlProviderTest, AFinishedRequestIsCountedAsSent) {
  Result<std::unique_ptr<CurlProvider>> created = CurlProvider::create(bounded(1, 0), test_words());
  ASSERT_TRUE(created.ok()) << created.status().to_string();
  CurlProvider& provider = **created;
  provider.submit(request(provider, 1, kTestWait.count()));
  ASSERT_TRUE(outcomes_.wait_for(1));
  EXPECT_TRUE(outcomes_.result(1).ok);
  EXPECT_EQ(outcomes_.result(1).provider_id, "200");
  EXPECT_EQ(provider.stats().sent, 1U);
  EXPECT_EQ(provider.stats().failed, 0U);
}

}  // namespace
}  // namespace herald::net
