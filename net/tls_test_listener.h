// The socket side of Herald's TLS test servers (email/smtp_sink.h, push/h2_server.h): an Asio
// io_context run on a thread of its own, a TLS server context holding a self-signed certificate
// made at start, and an acceptor listening on 127.0.0.1 on a free port. The owner accepts and
// serves connections on io() its own way (coroutines or callbacks); this class has no coroutine,
// so it builds wherever Asio does. Tests and the demo only.
//
// The certificate (P-256, for 127.0.0.1 and localhost, crypto/test_keys.h) is written to a
// temporary PEM file, the client's ca_file, removed by the destructor; the key never leaves the
// process.
//
// Thread-safety: open() and run() on the owner's thread before anything else; stop() and the
// destructor from any thread but the I/O thread; the accessors from anywhere (what they return is
// for the I/O thread, but for port() and ca_file()).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <thread>

#include "base/status.h"

namespace herald::net::testing {

class TlsTestListener {
 public:
  TlsTestListener();
  // stop(), then removes the certificate file.
  ~TlsTestListener();
  TlsTestListener(const TlsTestListener&) = delete;
  TlsTestListener& operator=(const TlsTestListener&) = delete;

  // Makes the certificate for `server_name` (its common name, also in the file's name), installs
  // it and its key in tls(), and listens. kIOError naming `server_name` when OpenSSL or the
  // socket fails. Once.
  [[nodiscard]] Status open(std::string_view server_name);
  // Starts the I/O thread, which runs io() until stop(). Precondition: open() succeeded; once.
  void run();
  // On the I/O thread: closes the acceptor, calls `on_io_thread` (which closes what the owner
  // keeps open) and stops io(); then joins the thread. Idempotent.
  void stop(const std::function<void()>& on_io_thread = {});

  [[nodiscard]] boost::asio::io_context& io() { return io_; }
  [[nodiscard]] boost::asio::ssl::context& tls() { return tls_; }
  [[nodiscard]] boost::asio::ip::tcp::acceptor& acceptor() { return acceptor_; }
  [[nodiscard]] std::uint16_t port() const { return port_; }
  // The PEM file of the self-signed certificate.
  [[nodiscard]] const std::string& ca_file() const { return ca_path_; }

 private:
  // First, so that it is destroyed last: what runs on it holds sockets and timers of its
  // services.
  boost::asio::io_context io_;
  boost::asio::ssl::context tls_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::thread thread_;
  std::string ca_path_;
  std::uint16_t port_ = 0;
};

}  // namespace herald::net::testing
