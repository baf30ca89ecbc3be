#include "net/curl_multi_loop.h"

#include <algorithm>
#include <atomic>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/assert.h"

namespace herald::net {

namespace {

// How long the I/O thread waits for libcurl's sockets at most before it looks at its queue's
// deadlines again, in milliseconds.
constexpr int kPollMaxMs = 1000;
// While stopping, how long each wait for the running transfers to end is, in milliseconds.
constexpr int kStopPollMs = 10;

struct Queued {
  std::shared_ptr<CurlJob> job;
  SteadyTime deadline;
};

}  // namespace

struct CurlMultiLoop::Impl {
  explicit Impl(CurlMultiLoopOptions options_in) : options(std::move(options_in)) {}
  ~Impl() {
    if (multi != nullptr) {
      curl_multi_cleanup(multi);
    }
  }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  // I/O thread.
  void run();
  // Starts queued jobs while transfers are free; abandons the ones past their deadline.
  void start_queued();
  [[nodiscard]] Status start(const std::shared_ptr<CurlJob>& job);
  // Hands every finished transfer to its job, which may run again (abandoned when stopping).
  void collect_finished();
  void abandon(const std::shared_ptr<CurlJob>& job, CurlAbandon why, const Status& status);
  void shutdown();
  [[nodiscard]] int poll_timeout_ms();

  const CurlMultiLoopOptions options;
  CURLM* multi = nullptr;
  std::thread thread;

  std::mutex mu;
  bool stopped = false;      // guarded by mu
  std::deque<Queued> queue;  // guarded by mu

  // I/O thread only (and the destructor, after the thread is joined).
  std::map<CURL*, std::shared_ptr<CurlJob>> running;
  bool stopping = false;

  std::atomic<std::uint64_t> started{0};
  std::atomic<std::size_t> queued{0};
  std::atomic<std::size_t> in_flight{0};
  std::atomic<std::size_t> max_in_flight{0};
  // Accepted by submit() and not over (queued, starting or running): what the bounds count.
  // Increased only under mu.
  std::atomic<std::size_t> outstanding{0};
};

void CurlMultiLoop::Impl::run() {
  for (;;) {
    {
      const std::lock_guard lock(mu);
      if (stopped) {
        break;
      }
    }
    start_queued();
    int still_running = 0;
    const CURLMcode performed = curl_multi_perform(multi, &still_running);
    HERALD_ASSERT(performed == CURLM_OK, "curl_multi_perform failed");
    collect_finished();
    const CURLMcode polled = curl_multi_poll(multi, nullptr, 0, poll_timeout_ms(), nullptr);
    HERALD_ASSERT(polled == CURLM_OK, "curl_multi_poll failed");
  }
  shutdown();
}

void CurlMultiLoop::Impl::start_queued() {
  const SteadyTime now = std::chrono::steady_clock::now();
  std::vector<std::shared_ptr<CurlJob>> expired;
  std::vector<std::shared_ptr<CurlJob>> to_start;
  {
    const std::lock_guard lock(mu);
    while (!queue.empty() && (queue.front().deadline <= now ||
                              running.size() + to_start.size() < options.max_concurrent)) {
      (queue.front().deadline <= now ? expired : to_start).push_back(std::move(queue.front().job));
      queue.pop_front();
      --queued;
    }
  }
  for (const auto& job : expired) {
    abandon(job, CurlAbandon::kExpired, Status::ok_status());
  }
  for (const auto& job : to_start) {
    if (Status status = start(job); !status.ok()) {
      abandon(job, CurlAbandon::kBeginFailed, status);
    }
  }
}

Status CurlMultiLoop::Impl::start(const std::shared_ptr<CurlJob>& job) {
  Result<CURL*> easy = job->begin();
  if (!easy.ok()) {
    return easy.status();
  }
  HERALD_ASSERT(*easy != nullptr, "a job began without an easy handle");
  if (curl_multi_add_handle(multi, *easy) != CURLM_OK) {
    return Status::unavailable("libcurl could not start the transfer");
  }
  running.emplace(*easy, job);
  ++started;
  const std::size_t now_running = ++in_flight;
  std::size_t seen = max_in_flight.load();
  while (now_running > seen && !max_in_flight.compare_exchange_weak(seen, now_running)) {
  }
  return Status::ok_status();
}

void CurlMultiLoop::Impl::collect_finished() {
  int left = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi, &left)) {
    if (msg->msg != CURLMSG_DONE) {
      continue;
    }
    const auto it = running.find(msg->easy_handle);
    HERALD_ASSERT(it != running.end(), "a finished transfer that is not running");
    const std::shared_ptr<CurlJob> job = it->second;
    const CURLcode code = msg->data.result;  // read before the handle is removed
    const CURLMcode removed = curl_multi_remove_handle(multi, it->first);
    HERALD_ASSERT(removed == CURLM_OK, "curl_multi_remove_handle failed");
    running.erase(it);
    --in_flight;
    if (stopping) {
      abandon(job, CurlAbandon::kStopping, Status::ok_status());
      continue;
    }
    if (job->run_again(code)) {
      if (Status status = start(job); !status.ok()) {
        abandon(job, CurlAbandon::kBeginFailed, status);
      }
      continue;
    }
    --outstanding;
    job->ended(code);
  }
}

void CurlMultiLoop::Impl::abandon(const std::shared_ptr<CurlJob>& job, CurlAbandon why,
                                  const Status& status) {
  --outstanding;
  job->abandoned(why, status);
}

void CurlMultiLoop::Impl::shutdown() {
  stopping = true;
  std::deque<Queued> waiting;
  {
    const std::lock_guard lock(mu);
    waiting.swap(queue);
    queued = 0;
  }
  for (const Queued& entry : waiting) {
    abandon(entry.job, CurlAbandon::kStopping, Status::ok_status());
  }
  if (options.on_stop) {
    options.on_stop();
  }
  const SteadyTime deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(options.stop_drain_ms);
  while (!running.empty() && std::chrono::steady_clock::now() < deadline) {
    int still_running = 0;
    const CURLMcode performed = curl_multi_perform(multi, &still_running);
    HERALD_ASSERT(performed == CURLM_OK, "curl_multi_perform failed");
    collect_finished();
    if (!running.empty()) {
      const CURLMcode polled = curl_multi_poll(multi, nullptr, 0, kStopPollMs, nullptr);
      HERALD_ASSERT(polled == CURLM_OK, "curl_multi_poll failed");
    }
  }
  std::map<CURL*, std::shared_ptr<CurlJob>> left;
  left.swap(running);
  for (auto& [easy, job] : left) {
    const CURLMcode removed = curl_multi_remove_handle(multi, easy);
    HERALD_ASSERT(removed == CURLM_OK, "curl_multi_remove_handle failed");
    --in_flight;
    abandon(job, CurlAbandon::kStopping, Status::ok_status());
  }
}

int CurlMultiLoop::Impl::poll_timeout_ms() {
  const std::lock_guard lock(mu);
  if (queue.empty()) {
    return kPollMaxMs;
  }
  if (running.size() < options.max_concurrent) {
    return 0;  // a transfer is free: start the next job at once
  }
  const auto until_deadline = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  queue.front().deadline - std::chrono::steady_clock::now())
                                  .count();
  return static_cast<int>(std::clamp<std::int64_t>(until_deadline + 1, 0, kPollMaxMs));
}

Result<std::unique_ptr<CurlMultiLoop>> CurlMultiLoop::create(CurlMultiLoopOptions options) {
  HERALD_ASSERT(options.max_concurrent >= 1, "a transfer loop needs at least one transfer");
  static std::once_flag global_init;
  static CURLcode global_status = CURLE_OK;
  std::call_once(global_init, [] { global_status = curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (global_status != CURLE_OK) {
    return Status::io_error(std::string("libcurl: ") + curl_easy_strerror(global_status));
  }
  auto impl = std::make_unique<Impl>(std::move(options));
  impl->multi = curl_multi_init();
  if (impl->multi == nullptr) {
    return Status::io_error("libcurl: cannot create a multi handle");
  }
  if ((impl->options.multiplex &&
       curl_multi_setopt(impl->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX) != CURLM_OK) ||
      (impl->options.max_connections > 0 &&
       curl_multi_setopt(impl->multi, CURLMOPT_MAXCONNECTS, impl->options.max_connections) !=
           CURLM_OK)) {
    return Status::io_error("libcurl: cannot set up the multi handle");
  }
  Impl& running = *impl;
  running.thread = std::thread([&running] { running.run(); });
  return std::unique_ptr<CurlMultiLoop>(new CurlMultiLoop(std::move(impl)));
}

CurlMultiLoop::CurlMultiLoop(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

CurlMultiLoop::~CurlMultiLoop() {
  stop();
}

CurlSubmit CurlMultiLoop::submit(std::shared_ptr<CurlJob> job, SteadyTime deadline) {
  Impl& impl = *impl_;
  {
    const std::lock_guard lock(impl.mu);
    if (impl.stopped) {
      return CurlSubmit::kStopped;
    }
    if (impl.outstanding.load() >= impl.options.max_concurrent + impl.options.max_queued) {
      return CurlSubmit::kFull;
    }
    impl.queue.push_back(Queued{std::move(job), deadline});
    ++impl.queued;
    ++impl.outstanding;
  }
  curl_multi_wakeup(impl.multi);
  return CurlSubmit::kAccepted;
}

void CurlMultiLoop::stop() {
  Impl& impl = *impl_;
  {
    const std::lock_guard lock(impl.mu);
    impl.stopped = true;
  }
  curl_multi_wakeup(impl.multi);
  if (impl.thread.joinable()) {
    HERALD_ASSERT(impl.thread.get_id() != std::this_thread::get_id(),
                  "a transfer loop stopped from its own I/O thread");
    impl.thread.join();
  }
}

TransferStats CurlMultiLoop::stats() const {
  TransferStats stats;
  stats.started = impl_->started.load();
  stats.queued = impl_->queued.load();
  stats.in_flight = impl_->in_flight.load();
  stats.max_in_flight = impl_->max_in_flight.load();
  return stats;
}

}  // namespace herald::net
