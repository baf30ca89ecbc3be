#include "tests/e2e/webhook_receiver.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <memory>

namespace herald::e2e {

namespace {

// How often the accept loop looks at the stop flag.
constexpr int kAcceptPollMs = 50;

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\r')) s.remove_suffix(1);
  return std::string(s);
}

// An SSL_CTX serving `tls`'s certificate and key, TLS 1.2 or later.
Result<std::shared_ptr<SSL_CTX>> server_context(const ReceiverTls& tls) {
  std::shared_ptr<SSL_CTX> context(SSL_CTX_new(TLS_server_method()), SSL_CTX_free);
  if (!context) return Status::io_error("SSL_CTX_new");
  std::unique_ptr<BIO, decltype(&BIO_free)> cert_bio(
      BIO_new_mem_buf(tls.cert_pem.data(), static_cast<int>(tls.cert_pem.size())), BIO_free);
  std::unique_ptr<BIO, decltype(&BIO_free)> key_bio(
      BIO_new_mem_buf(tls.key_pem.data(), static_cast<int>(tls.key_pem.size())), BIO_free);
  std::unique_ptr<X509, decltype(&X509_free)> cert(
      cert_bio ? PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr) : nullptr, X509_free);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      key_bio ? PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr) : nullptr,
      EVP_PKEY_free);
  if (!cert || !key || SSL_CTX_set_min_proto_version(context.get(), TLS1_2_VERSION) != 1 ||
      SSL_CTX_use_certificate(context.get(), cert.get()) != 1 ||
      SSL_CTX_use_PrivateKey(context.get(), key.get()) != 1 ||
      SSL_CTX_check_private_key(context.get()) != 1) {
    return Status::invalid_argument("the receiver's certificate or key does not load");
  }
  return context;
}

}  // namespace

// One accepted connection, in plaintext or over TLS (blocking I/O; reads bounded by
// kReceiverReadTimeoutMs each).
class WebhookReceiver::Connection {
 public:
  explicit Connection(int fd) : fd_(fd) {}
  ~Connection() {
    if (ssl_ != nullptr) {
      SSL_shutdown(ssl_);
      SSL_free(ssl_);
    }
    ::close(fd_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // The server side of the TLS handshake; false when the client gave up or it timed out.
  bool accept_tls(SSL_CTX* context) {
    constexpr long kMsPerS = 1000;
    constexpr long kUsPerMs = 1000;
    const timeval timeout{kReceiverReadTimeoutMs / kMsPerS,
                          (kReceiverReadTimeoutMs % kMsPerS) * kUsPerMs};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    ssl_ = SSL_new(context);
    if (ssl_ == nullptr || SSL_set_fd(ssl_, fd_) != 1 || SSL_accept(ssl_) != 1) {
      ERR_clear_error();
      if (ssl_ != nullptr) SSL_free(ssl_);
      ssl_ = nullptr;
      return false;
    }
    return true;
  }

  // Reads into `buffer` until `done(buffer)` or the peer closes or a read times out.
  bool read_until(std::string& buffer, const std::function<bool(const std::string&)>& done) {
    char chunk[4096];
    while (!done(buffer)) {
      if (ssl_ == nullptr || SSL_pending(ssl_) == 0) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, kReceiverReadTimeoutMs) <= 0) return false;
      }
      const ssize_t n = ssl_ != nullptr ? SSL_read(ssl_, chunk, sizeof(chunk))
                                        : ::read(fd_, chunk, sizeof(chunk));
      if (n <= 0) return false;
      buffer.append(chunk, static_cast<std::size_t>(n));
      if (buffer.size() > kMaxReceiverBodyBytes) return false;
    }
    return true;
  }

  void write_all(const std::string& bytes) {
    if (ssl_ != nullptr) {
      (void)SSL_write(ssl_, bytes.data(), static_cast<int>(bytes.size()));
    } else {
      (void)::write(fd_, bytes.data(), bytes.size());
      ::shutdown(fd_, SHUT_WR);
    }
  }

 private:
  int fd_;
  SSL* ssl_ = nullptr;
};

Result<std::unique_ptr<WebhookReceiver>> WebhookReceiver::start(Decide decide,
                                                                std::optional<ReceiverTls> tls) {
  std::unique_ptr<WebhookReceiver> r(new WebhookReceiver());
  r->decide_ = std::move(decide);
  if (tls.has_value()) {
    HERALD_ASSIGN_OR_RETURN(r->tls_, server_context(*tls));
  }
  r->listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (r->listen_fd_ < 0) return Status::io_error("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (::bind(r->listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(r->listen_fd_, 128) != 0 ||
      ::getsockname(r->listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return Status::io_error("bind/listen on 127.0.0.1");
  }
  r->port_ = ntohs(addr.sin_port);
  r->acceptor_ = std::thread([raw = r.get()] { raw->accept_loop(); });
  return r;
}

WebhookReceiver::~WebhookReceiver() {
  stopping_ = true;
  release_hung();
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<std::thread> connections;
  {
    std::lock_guard lock(mu_);
    connections.swap(connections_);
  }
  for (auto& t : connections) t.join();
  if (listen_fd_ >= 0) ::close(listen_fd_);
}

void WebhookReceiver::set_decide(Decide decide) {
  std::lock_guard lock(mu_);
  decide_ = std::move(decide);
}

void WebhookReceiver::release_hung() {
  std::lock_guard lock(mu_);
  ++release_generation_;
  released_cv_.notify_all();
}

std::vector<WebhookRequest> WebhookReceiver::requests() const {
  std::lock_guard lock(mu_);
  return requests_;
}

std::size_t WebhookReceiver::hung() const {
  std::lock_guard lock(mu_);
  return hung_;
}

std::size_t WebhookReceiver::tls_failures() const {
  std::lock_guard lock(mu_);
  return tls_failures_;
}

void WebhookReceiver::accept_loop() {
  while (!stopping_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, kAcceptPollMs) <= 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    std::lock_guard lock(mu_);
    connections_.emplace_back([this, fd] { serve(fd); });
  }
}

void WebhookReceiver::serve(int fd) {
  Connection connection(fd);
  if (tls_ && !connection.accept_tls(tls_.get())) {
    std::lock_guard lock(mu_);
    ++tls_failures_;
    return;
  }
  exchange(connection);
}

void WebhookReceiver::exchange(Connection& connection) {
  std::string buffer;
  const bool head = connection.read_until(
      buffer, [](const std::string& b) { return b.find("\r\n\r\n") != std::string::npos; });
  if (!head) return;
  const std::size_t head_end = buffer.find("\r\n\r\n");
  WebhookRequest request;
  std::size_t content_length = 0;
  std::size_t pos = buffer.find("\r\n") + 2;  // past the request line
  while (pos < head_end) {
    const std::size_t eol = buffer.find("\r\n", pos);
    const std::string_view line(buffer.data() + pos, eol - pos);
    const std::size_t colon = line.find(':');
    if (colon != std::string_view::npos) {
      const std::string name = lower(std::string(line.substr(0, colon)));
      const std::string value = trim(line.substr(colon + 1));
      if (name == "content-length") content_length = std::stoul(value);
      if (name == "webhook-id") request.id = value;
      if (name == "webhook-timestamp") request.timestamp = value;
      if (name == "webhook-signature") request.signature = value;
      if (name == "herald-event-type") request.event_type = value;
    }
    pos = eol + 2;
  }
  const std::size_t body_start = head_end + 4;
  if (!connection.read_until(
          buffer, [&](const std::string& b) { return b.size() >= body_start + content_length; })) {
    return;
  }
  request.body = buffer.substr(body_start, content_length);
  std::unique_lock lock(mu_);
  request.status = decide_(request);
  requests_.push_back(request);
  if (request.status == 0) {
    ++hung_;
    const std::uint64_t generation = release_generation_;
    released_cv_.wait(lock, [&] { return release_generation_ != generation || stopping_; });
    --hung_;
    return;
  }
  lock.unlock();
  connection.write_all(
      fmt::format("HTTP/1.1 {} Webhook Test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                  request.status));
}

}  // namespace herald::e2e
