// CurlPoster: the webhook HTTP client — POSTs over libcurl's multi interface on the shared
// transfer loop's I/O thread (net/curl_multi_loop.h), http:// and https:// (TLS verified against
// the system's CAs or a CA file), redirects not followed, HTTP/1.1 or HTTP/2 as negotiated.
//
// Bounds: kMaxConcurrentPosts transfers at once, kMaxQueuedPosts waiting; a request beyond them,
// or still queued at its timeout, fails at once (status 0) and the workflow retries it. Each
// transfer lasts at most options.timeout_ms. The answer's body is read and dropped (at most
// kMaxResponseBytes kept for nothing but draining). Thread-safety: post() from any thread;
// callbacks on the I/O thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/status.h"
#include "webhooks/handler.h"

namespace herald::webhooks {

inline constexpr std::size_t kMaxConcurrentPosts = 16;
inline constexpr std::size_t kMaxQueuedPosts = 4096;
inline constexpr std::int64_t kDefaultPostTimeoutMs = 10'000;
inline constexpr std::int64_t kMaxPostTimeoutMs = 25'000;  // under kWebhookAttemptTimeoutMs
inline constexpr std::int64_t kConnectTimeoutMs = 5'000;

struct CurlPosterOptions {
  std::int64_t timeout_ms = kDefaultPostTimeoutMs;  // one transfer, connect included
  std::string ca_file;  // PEM CA bundle for https endpoints; empty: the system's
};

class CurlPoster final : public Poster {
 public:
  // kIOError when libcurl cannot be set up; kInvalidArgument for a timeout out of
  // [1, kMaxPostTimeoutMs].
  [[nodiscard]] static Result<std::unique_ptr<CurlPoster>> create(CurlPosterOptions options);
  ~CurlPoster() override;
  CurlPoster(const CurlPoster&) = delete;
  CurlPoster& operator=(const CurlPoster&) = delete;

  void post(HttpPost request, std::function<void(HttpPostResult)> done) override;

 private:
  struct Impl;
  explicit CurlPoster(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace herald::webhooks
