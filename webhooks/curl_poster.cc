#include "webhooks/curl_poster.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <chrono>

#include "net/curl_multi_loop.h"

namespace herald::webhooks {

namespace {

using Steady = std::chrono::steady_clock;

// Retry-After as delay-seconds (RFC 9110 §10.2.3), at most a day; an HTTP date is ignored.
constexpr std::int64_t kMaxRetryAfterSeconds = 86'400;

std::int64_t elapsed_ms(Steady::time_point since) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Steady::now() - since).count();
}

class PostJob final : public net::CurlJob {
 public:
  PostJob(HttpPost request, std::function<void(HttpPostResult)> done,
          const CurlPosterOptions& options)
      : request_(std::move(request)), done_(std::move(done)), options_(options) {}

  Result<CURL*> begin() override {
    easy_.reset(curl_easy_init());
    curl_slist* headers = nullptr;
    for (const auto& [name, value] : request_.headers) {
      curl_slist* appended = curl_slist_append(headers, fmt::format("{}: {}", name, value).c_str());
      if (appended == nullptr) {
        curl_slist_free_all(headers);
        return Status::unavailable("libcurl could not set up a transfer (out of memory)");
      }
      headers = appended;
    }
    headers_.reset(curl_slist_append(headers, "Expect:"));
    if (!easy_ || !headers_) {
      return Status::unavailable("libcurl could not set up a transfer (out of memory)");
    }
    CURL* easy = easy_.get();
    bool ok = true;
    const auto set = [&](CURLoption option, auto value) {
      ok = ok && curl_easy_setopt(easy, option, value) == CURLE_OK;
    };
    set(CURLOPT_URL, request_.url.c_str());
    set(CURLOPT_PROTOCOLS_STR, "http,https");
    set(CURLOPT_FOLLOWLOCATION, 0L);
    set(CURLOPT_NOSIGNAL, 1L);
    set(CURLOPT_ERRORBUFFER, error_.data());
    if (!options_.ca_file.empty()) set(CURLOPT_CAINFO, options_.ca_file.c_str());
    set(CURLOPT_POST, 1L);
    set(CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request_.body.size()));
    set(CURLOPT_POSTFIELDS, request_.body.data());  // not copied: the job keeps it
    set(CURLOPT_HTTPHEADER, headers_.get());
    set(CURLOPT_HEADERFUNCTION, &PostJob::read_header);
    set(CURLOPT_HEADERDATA, this);
    set(CURLOPT_WRITEFUNCTION, &PostJob::read_body);
    set(CURLOPT_WRITEDATA, this);
    set(CURLOPT_CONNECTTIMEOUT_MS,
        static_cast<long>(std::min(kConnectTimeoutMs, options_.timeout_ms)));
    set(CURLOPT_TIMEOUT_MS, static_cast<long>(options_.timeout_ms));
    if (!ok) {
      return Status::unavailable("libcurl refused an option");
    }
    started_ = Steady::now();
    return easy;
  }

  void ended(CURLcode code) override {
    HttpPostResult result;
    result.latency_ms = elapsed_ms(started_);
    if (code == CURLE_OK) {
      long status = 0;
      curl_easy_getinfo(easy_.get(), CURLINFO_RESPONSE_CODE, &status);
      result.status = status;
      result.retry_after_ms = retry_after_s_ * 1000;
    } else {
      result.error = error_[0] != '\0' ? std::string(error_.data()) : curl_easy_strerror(code);
    }
    finish(std::move(result));
  }

  void abandoned(net::CurlAbandon why, const Status& status) override {
    HttpPostResult result;
    result.error = why == net::CurlAbandon::kExpired    ? "queued past its timeout"
                   : why == net::CurlAbandon::kStopping ? "the node is stopping"
                                                        : status.to_string();
    finish(std::move(result));
  }

 private:
  void finish(HttpPostResult result) {
    headers_.reset();
    easy_.reset();
    auto done = std::move(done_);
    done(std::move(result));
  }

  static std::size_t read_header(char* buffer, std::size_t size, std::size_t count, void* user) {
    auto& job = *static_cast<PostJob*>(user);
    std::string_view line(buffer, size * count);
    constexpr std::string_view kRetryAfter = "retry-after:";
    if (line.size() > kRetryAfter.size() &&
        std::equal(kRetryAfter.begin(), kRetryAfter.end(), line.begin(), [](char a, char b) {
          return a == std::tolower(static_cast<unsigned char>(b));
        })) {
      std::string_view value = line.substr(kRetryAfter.size());
      while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
      std::int64_t seconds = 0;
      const auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
      if (ec == std::errc() && seconds >= 0) {
        job.retry_after_s_ = std::min(seconds, kMaxRetryAfterSeconds);
      }
    }
    return size * count;
  }

  static std::size_t read_body(char* /*buffer*/, std::size_t size, std::size_t count,
                               void* /*user*/) {
    return size * count;  // the answer's body means nothing to Herald
  }

  HttpPost request_;
  std::function<void(HttpPostResult)> done_;
  const CurlPosterOptions& options_;
  net::CurlEasyPtr easy_;
  net::CurlSlistPtr headers_;
  std::array<char, CURL_ERROR_SIZE> error_{};
  std::int64_t retry_after_s_ = 0;
  Steady::time_point started_;
};

}  // namespace

struct CurlPoster::Impl {
  CurlPosterOptions options;
  std::unique_ptr<net::CurlMultiLoop> loop;
};

Result<std::unique_ptr<CurlPoster>> CurlPoster::create(CurlPosterOptions options) {
  if (options.timeout_ms < 1 || options.timeout_ms > kMaxPostTimeoutMs) {
    return Status::invalid_argument(
        fmt::format("a webhook timeout is 1 to {} ms", kMaxPostTimeoutMs));
  }
  net::CurlMultiLoopOptions loop_options;
  loop_options.max_concurrent = kMaxConcurrentPosts;
  loop_options.max_queued = kMaxQueuedPosts;
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  HERALD_ASSIGN_OR_RETURN(impl->loop, net::CurlMultiLoop::create(std::move(loop_options)));
  return std::unique_ptr<CurlPoster>(new CurlPoster(std::move(impl)));
}

CurlPoster::CurlPoster(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

CurlPoster::~CurlPoster() {
  impl_->loop->stop();
}

void CurlPoster::post(HttpPost request, std::function<void(HttpPostResult)> done) {
  auto job = std::make_shared<PostJob>(std::move(request), done, impl_->options);
  const auto deadline = Steady::now() + std::chrono::milliseconds(impl_->options.timeout_ms);
  const net::CurlSubmit submitted = impl_->loop->submit(job, deadline);
  if (submitted != net::CurlSubmit::kAccepted) {
    HttpPostResult result;
    result.error = submitted == net::CurlSubmit::kFull ? "too many webhook requests outstanding"
                                                       : "the webhook client is stopped";
    done(std::move(result));
  }
}

}  // namespace herald::webhooks
