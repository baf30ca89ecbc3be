// WebhookReceiver: the app backend's side of Herald's webhooks in the end-to-end tests — a real
// HTTP/1.1 server on 127.0.0.1 (POSIX sockets, one thread per connection) that records every
// request with its webhook headers and answers as the test decides per request: a status, or no
// answer at all until released (a hang, which the node's client times out). Each answer closes
// its connection. Thread-safety: every member may be called from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"

namespace herald::e2e {

// A request body read at most (webhook bodies are small).
inline constexpr std::size_t kMaxReceiverBodyBytes = 1U << 20U;
// How long a connection may take to send its request before it is dropped.
inline constexpr int kReceiverReadTimeoutMs = 5'000;

struct WebhookRequest {
  std::string id;          // webhook-id
  std::string timestamp;   // webhook-timestamp
  std::string signature;   // webhook-signature
  std::string event_type;  // herald-event-type
  std::string body;
  int status = 0;  // what the receiver answered; 0: hung, no answer
};

class WebhookReceiver {
 public:
  // The answer to a request: an HTTP status, or 0 to hang until release_hung() or stop.
  using Decide = std::function<int(const WebhookRequest&)>;

  // Listens on 127.0.0.1, a free port. kIOError when it cannot.
  [[nodiscard]] static Result<std::unique_ptr<WebhookReceiver>> start(Decide decide);
  ~WebhookReceiver();
  WebhookReceiver(const WebhookReceiver&) = delete;
  WebhookReceiver& operator=(const WebhookReceiver&) = delete;

  [[nodiscard]] std::uint16_t port() const { return port_; }
  void set_decide(Decide decide);
  // Closes every hung connection without an answer (the requests stay recorded, status 0).
  void release_hung();
  [[nodiscard]] std::vector<WebhookRequest> requests() const;
  [[nodiscard]] std::size_t hung() const;

 private:
  WebhookReceiver() = default;
  void accept_loop();
  void serve(int fd);

  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  mutable std::mutex mu_;
  std::condition_variable released_cv_;
  std::uint64_t release_generation_ = 0;  // GUARDED_BY(mu_)
  std::size_t hung_ = 0;                  // GUARDED_BY(mu_)
  Decide decide_;                         // GUARDED_BY(mu_)
  std::vector<WebhookRequest> requests_;  // GUARDED_BY(mu_)
  std::vector<std::thread> connections_;  // GUARDED_BY(mu_)
  std::thread acceptor_;
};

}  // namespace herald::e2e
