#include "net/tls_test_listener.h"

#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/post.hpp>
#include <filesystem>
#include <fstream>
#include <utility>

#include "base/assert.h"
#include "crypto/test_keys.h"

namespace herald::net::testing {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

TlsTestListener::TlsTestListener() : tls_(ssl::context::tls_server), acceptor_(io_) {}

TlsTestListener::~TlsTestListener() {
  stop();
  if (!ca_path_.empty()) {
    std::error_code ignored;
    std::filesystem::remove(ca_path_, ignored);
  }
}

Status TlsTestListener::open(std::string_view server_name) {
  HERALD_ASSERT(ca_path_.empty(), "a test listener opened twice");
  const crypto::testing::SelfSignedCertificate certificate =
      crypto::testing::self_signed_loopback_certificate(std::string(server_name));
  static std::atomic<int> counter{0};
  ca_path_ = (std::filesystem::temp_directory_path() /
              fmt::format("{}-{}-{}.pem", server_name, ::getpid(), counter++))
                 .string();
  std::ofstream(ca_path_) << certificate.cert_pem;
  boost::system::error_code ec;
  tls_.use_certificate_chain(asio::buffer(certificate.cert_pem), ec);
  if (!ec) {
    tls_.use_private_key(asio::buffer(certificate.key_pem), ssl::context::pem, ec);
  }
  if (ec) {
    return Status::io_error(
        fmt::format("{} cannot install its certificate: {}", server_name, ec.message()));
  }
  const tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), 0);
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) {
    acceptor_.bind(endpoint, ec);
  }
  if (!ec) {
    acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    return Status::io_error(fmt::format("{} cannot listen: {}", server_name, ec.message()));
  }
  port_ = acceptor_.local_endpoint().port();
  return Status::ok_status();
}

void TlsTestListener::run() {
  HERALD_ASSERT(port_ != 0 && !thread_.joinable(), "a test listener run before open() or twice");
  thread_ = std::thread([this] { io_.run(); });
}

void TlsTestListener::stop(const std::function<void()>& on_io_thread) {
  if (!thread_.joinable()) {
    return;
  }
  HERALD_ASSERT(thread_.get_id() != std::this_thread::get_id(),
                "a test listener stopped from its own I/O thread");
  asio::post(io_, [this, &on_io_thread] {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    if (on_io_thread) {
      on_io_thread();
    }
    io_.stop();
  });
  thread_.join();
}

}  // namespace herald::net::testing
