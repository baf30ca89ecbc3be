// An HTTP/2 client for one endpoint (host and port) over TLS: the connection handling the push
// providers share (push/apns.cc, push/fcm.cc). Not a public header of push/; docs/push.md
// ("Connection") describes the behaviour.
//
// One long-lived connection, opened when the first request arrives and ready once the server's
// SETTINGS frame is in. Requests run as concurrent streams, at most min(the server's
// SETTINGS_MAX_CONCURRENT_STREAMS, max_concurrent_streams); the rest wait in a FIFO of at most
// max_queued_requests, beyond which a request fails at once. A lost connection is reopened on
// demand with exponential backoff and full jitter. On GOAWAY the streams the server accepted
// (id <= last-stream-id) finish on the old connection; the others, which the server never
// processed, go back to the head of the queue and are sent on a new connection. A request not
// answered by its deadline (queueing and reconnecting included) is reset and fails.
//
// Failures reach the handler as kUnavailable with a message naming the service: "... queue is
// full ...", "... connection was lost: ...", "no answer from <service> ...", "... stream was
// reset ...", "... is stopping". A response of any status is a success of the transport.
//
// Threading: the owner runs `io` on one thread; every member except stats() must be called on
// that thread, and handlers run there, never inside submit(). The client must be destroyed after
// the io_context has stopped running (or on its thread after shutdown()).
#pragma once

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/random.h"
#include "base/status.h"
#include "push/common.h"

namespace herald::push::h2 {

// Response headers kept per response, at most; further ones are ignored.
inline constexpr std::size_t kMaxResponseHeaders = 64;
// Longest response header value kept, in bytes; longer ones are cut.
inline constexpr std::size_t kMaxResponseHeaderBytes = 1024;

struct ClientOptions {
  std::string service;  // "APNs", "FCM": in messages and logs
  std::string host;
  std::uint16_t port = 443;
  std::uint32_t max_concurrent_streams = 100;  // >= 1
  std::size_t max_queued_requests = 1000;
  std::int64_t connect_timeout_ms = 10'000;  // TCP, TLS and the server's SETTINGS; > 0
  std::size_t max_response_body_bytes = 4096;
  std::uint64_t seed = 1;  // the reconnect jitter's random seed
};

struct Request {
  std::string path;  // :method is POST, :scheme https, :authority the endpoint
  std::vector<std::pair<std::string, std::string>> headers;  // lower-case names
  std::string body;
  std::chrono::steady_clock::time_point deadline;
};

struct Response {
  int status = 0;
  std::map<std::string, std::string> headers;  // regular headers by lower-case name
  std::string body;                            // at most max_response_body_bytes
  // The header's value, or "" when absent.
  [[nodiscard]] std::string header(const std::string& name) const;
};

using ResponseHandler = std::function<void(Result<Response>)>;

// Counters, readable from any thread.
struct ClientStats {
  std::uint64_t connections_opened = 0;  // TLS + HTTP/2 established
  std::uint64_t requests_sent = 0;       // streams opened, resends included
  std::uint64_t requests_retried = 0;    // refused by GOAWAY / REFUSED_STREAM and resent
  std::uint32_t streams_in_flight = 0;
  std::size_t queued = 0;
};

// A TLS client context for HTTP/2: TLS 1.2 or later, ALPN h2, trusting the CAs in `ca_file` (PEM)
// or the system's when empty. kIOError when the CAs cannot be loaded.
[[nodiscard]] Status configure_client_tls(boost::asio::ssl::context& tls,
                                          const std::string& ca_file);

// The I/O thread a provider runs its clients on: an io_context, kept running while there is
// nothing to do, and the thread that runs it.
// Thread-safety: post() and stop() may be called from any thread but the I/O thread itself.
class IoThread {
 public:
  IoThread();
  // stop() unless it has run. Precondition: not called on the I/O thread.
  ~IoThread();
  IoThread(const IoThread&) = delete;
  IoThread& operator=(const IoThread&) = delete;

  void start();
  [[nodiscard]] boost::asio::io_context& io() { return io_; }
  // Runs `fn` on the I/O thread. False, and `fn` not run, once stop() has begun: everything
  // posted before that runs before stop()'s `last`.
  [[nodiscard]] bool post(std::function<void()> fn);
  // Runs `last` on the I/O thread after everything already posted, then stops the io_context
  // (handlers still pending are dropped) and joins the thread. Idempotent.
  void stop(const std::function<void()>& last);

 private:
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::thread thread_;
  std::mutex mu_;         // orders post() against stop()
  bool stopped_ = false;  // guarded by mu_
};

class Connection;
struct Call;

class Client {
 public:
  // `tls` (configured by configure_client_tls) and `io` must outlive the client.
  Client(boost::asio::io_context& io, boost::asio::ssl::context& tls, ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Queues `request` (at the head of the queue when `urgent`); `done` is called exactly once,
  // later, with the response or a kUnavailable failure. After shutdown() it fails at once.
  void submit(Request request, ResponseHandler done, bool urgent = false);
  // Fails every request not yet answered with kUnavailable ("<service> ... is stopping") and closes
  // the connections. Later submits fail.
  void shutdown();

  [[nodiscard]] ClientStats stats() const;
  [[nodiscard]] const ClientOptions& options() const { return options_; }
  // host, or host:port when the port is not 443: the :authority header.
  [[nodiscard]] const std::string& authority() const { return authority_; }

  // For the connections (I/O thread).
  void pump();
  void connection_ready(Connection& connection);
  void connection_goaway(Connection& connection);
  void connection_closed(Connection& connection, const std::string& reason);
  void stream_closed(Connection& connection, const std::shared_ptr<Call>& call,
                     std::uint32_t error_code);
  [[nodiscard]] boost::asio::io_context& io() { return io_; }
  [[nodiscard]] boost::asio::ssl::context& tls() { return tls_; }
  void stream_ended() { --streams_in_flight_; }

 private:
  using CallPtr = std::shared_ptr<Call>;
  void enqueue(const CallPtr& call, bool urgent);
  void start_stream(Connection& connection, const CallPtr& call);
  void finish(const CallPtr& call, Result<Response> result);
  void requeue_front(const CallPtr& call);
  void time_out(const CallPtr& call);
  void ensure_connection();
  // Takes `connection` out of service: no new streams; closed once its streams are done.
  void retire(Connection& connection);
  void close_if_drained(Connection& connection);

  boost::asio::io_context& io_;
  boost::asio::ssl::context& tls_;
  const ClientOptions options_;
  const std::string authority_;
  bool stopping_ = false;
  std::list<CallPtr> queue_;
  std::shared_ptr<Connection> active_;  // connecting or ready; null when none
  std::set<std::shared_ptr<Connection>> draining_;
  boost::asio::steady_timer reconnect_timer_;
  bool reconnect_armed_ = false;
  int failures_ = 0;  // consecutive connection failures since the last response
  Rng rng_;
  std::uint64_t next_connection_id_ = 1;

  std::atomic<std::uint64_t> connections_opened_{0};
  std::atomic<std::uint64_t> requests_sent_{0};
  std::atomic<std::uint64_t> requests_retried_{0};
  std::atomic<std::uint32_t> streams_in_flight_{0};
  std::atomic<std::size_t> queued_{0};
};

}  // namespace herald::push::h2
