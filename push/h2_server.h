// An HTTP/2 server over TLS on 127.0.0.1 for the test doubles of push services (push/apns_mock.h,
// push/fcm_mock.h). Tests only; not a public header of push/.
//
// At start it generates a P-256 key and a self-signed certificate for 127.0.0.1 / localhost in
// memory; the certificate (public) is written to a temporary file for the client's ca_file, the
// key never leaves the process. It accepts any number of connections (ALPN h2 only), gathers each
// request (headers and a body of at most kMaxTestRequestBodyBytes) and asks the handler for the
// answer once the request has ended.
//
// Fault modes, set any time from any thread: slow answers (set_delay_ms; held answers are
// released at once by release_held), a connection dropped when a request arrives
// (drop_next_request), GOAWAY after the n-th request of each connection (goaway_after).
//
// Thread-safety: every public member may be called from any thread; the server runs on its own
// I/O thread, joined by the destructor. The handler's members run on that thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"

namespace herald::push::testing {

// Largest request body kept, in bytes; the rest is dropped.
inline constexpr std::size_t kMaxTestRequestBodyBytes = std::size_t{64} * 1024;

struct H2ServerRequest {
  std::uint64_t connection = 0;  // 1-based, in accept order
  std::int32_t stream_id = 0;
  std::string method;
  std::string path;
  std::map<std::string, std::string> headers;  // every regular header, by lower-case name
  std::string body;
};

struct H2ServerAnswer {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;  // lower-case names
  std::string body;                                          // none when empty
};

class H2ServerHandler {
 public:
  virtual ~H2ServerHandler() = default;
  // A request the server will answer (after the delay in force): its answer, and in `tag` a value
  // handed back to answered().
  virtual H2ServerAnswer decide(const H2ServerRequest& request, std::size_t& tag) = 0;
  // A request left unanswered: dropped with its connection, or above a GOAWAY's last stream.
  virtual void unanswered(const H2ServerRequest& request) = 0;
  // The answer decided with `tag` is being sent (not called when the client reset the stream).
  virtual void answered(std::size_t tag, const H2ServerAnswer& answer) = 0;
};

class H2TestServer {
 public:
  // Listens on 127.0.0.1 on a free port, advertising `max_concurrent_streams` in SETTINGS.
  // `handler` must outlive the server. kIOError when OpenSSL or the socket fails.
  [[nodiscard]] static Result<std::unique_ptr<H2TestServer>> start(
      H2ServerHandler& handler, std::uint32_t max_concurrent_streams);
  ~H2TestServer();
  H2TestServer(const H2TestServer&) = delete;
  H2TestServer& operator=(const H2TestServer&) = delete;

  [[nodiscard]] std::uint16_t port() const;
  // The PEM file of the self-signed certificate: the client's ca_file.
  [[nodiscard]] const std::string& ca_file() const;

  // Answers wait this long (0: at once). Changing it does not move answers already waiting.
  void set_delay_ms(std::int64_t delay_ms);
  // Every answer waiting for its delay is sent now.
  void release_held();
  // The next request makes the server close its connection without answering.
  void drop_next_request();
  // Each connection sends GOAWAY(last-stream-id = the stream of its n-th request) with the
  // answer to its n-th request (so after any delay); requests on higher streams are left
  // unanswered (the client sees them refused). 0 turns it off.
  void goaway_after(std::size_t requests);

  // Connections accepted (TLS and HTTP/2 established).
  [[nodiscard]] std::size_t connections() const;
  // Requests decided and not yet answered, now and at most so far.
  [[nodiscard]] std::size_t pending() const;
  [[nodiscard]] std::size_t max_pending() const;

  struct Impl;

 private:
  explicit H2TestServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace herald::push::testing
