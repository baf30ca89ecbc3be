// WebhookReceiver: the app backend's side of Herald's webhooks in the end-to-end tests — a real
// HTTP/1.1 server on 127.0.0.1 (POSIX sockets, one thread per connection) that records every
// request with its webhook headers and answers as the test decides per request: a status, or no
// answer at all until released (a hang, which the node's client times out). Each answer closes
// its connection. Optionally HTTPS: each connection is TLS (OpenSSL, TLS 1.2 or later) with the
// certificate and key the test gives, typically crypto::testing::self_signed_loopback_certificate;
// a client that gives up in the handshake (it does not trust the certificate) is counted and
// never reaches the request recording. Thread-safety: every member may be called from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"

struct ssl_ctx_st;  // OpenSSL's SSL_CTX

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

// The certificate an HTTPS receiver presents (PEM), and its private key (PEM, unencrypted).
struct ReceiverTls {
  std::string cert_pem;
  std::string key_pem;
};

class WebhookReceiver {
 public:
  // The answer to a request: an HTTP status, or 0 to hang until release_hung() or stop.
  using Decide = std::function<int(const WebhookRequest&)>;

  // Listens on 127.0.0.1, a free port; with `tls`, speaks HTTPS. kIOError when it cannot listen,
  // kInvalidArgument when the certificate or key does not load.
  [[nodiscard]] static Result<std::unique_ptr<WebhookReceiver>> start(
      Decide decide, std::optional<ReceiverTls> tls = std::nullopt);
  ~WebhookReceiver();
  WebhookReceiver(const WebhookReceiver&) = delete;
  WebhookReceiver& operator=(const WebhookReceiver&) = delete;

  [[nodiscard]] std::uint16_t port() const { return port_; }
  void set_decide(Decide decide);
  // Closes every hung connection without an answer (the requests stay recorded, status 0).
  void release_hung();
  [[nodiscard]] std::vector<WebhookRequest> requests() const;
  [[nodiscard]] std::size_t hung() const;
  // HTTPS only: connections whose TLS handshake failed (the client refused the certificate).
  [[nodiscard]] std::size_t tls_failures() const;

 private:
  WebhookReceiver() = default;
  void accept_loop();
  void serve(int fd);
  class Connection;  // a plaintext or TLS connection (webhook_receiver.cc)
  // Reads the request on `connection`, records it and answers it as decide_ says.
  void exchange(Connection& connection);

  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  mutable std::mutex mu_;
  std::condition_variable released_cv_;
  std::uint64_t release_generation_ = 0;  // GUARDED_BY(mu_)
  std::size_t hung_ = 0;                  // GUARDED_BY(mu_)
  std::size_t tls_failures_ = 0;          // GUARDED_BY(mu_)
  Decide decide_;                         // GUARDED_BY(mu_)
  std::vector<WebhookRequest> requests_;  // GUARDED_BY(mu_)
  std::vector<std::thread> connections_;  // GUARDED_BY(mu_)
  std::thread acceptor_;
  std::shared_ptr<ssl_ctx_st> tls_;  // set when serving HTTPS
};

}  // namespace herald::e2e
