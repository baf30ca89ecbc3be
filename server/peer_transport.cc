#include "server/peer_transport.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <deque>
#include <mutex>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "base/assert.h"
#include "base/encoding.h"
#include "base/random.h"
#include "server/endpoint.h"
#include "server/listener.h"

namespace herald::server {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using raft::NodeId;
using std::chrono::milliseconds;

namespace {

// [u32 BE payload length][u32 BE crc32c(payload)].
constexpr std::size_t kFrameHeaderBytes = 8;
// After a large frame, an inbound connection releases its payload buffer above this size.
constexpr std::size_t kRetainedPayloadBytes = std::size_t{1024} * 1024;
// Pause before accepting again after the listener reports an error (e.g. out of descriptors).
constexpr std::uint32_t kAcceptRetryMs = 100;
// The reconnect backoff doubles at most this many times (kReconnectInitialMs << 16 > any cap).
constexpr unsigned kMaxBackoffDoublings = 16;

// Returns the frame carrying `envelope`, or an empty string when the payload exceeds
// kMaxFrameBytes.
std::string encode_frame(const rsmpb::PeerEnvelope& envelope) {
  const std::size_t payload_bytes = envelope.ByteSizeLong();
  if (payload_bytes > kMaxFrameBytes) {
    return {};
  }
  std::string frame(kFrameHeaderBytes + payload_bytes, '\0');
  char* payload = frame.data() + kFrameHeaderBytes;
  const bool serialized = envelope.SerializeToArray(payload, static_cast<int>(payload_bytes));
  HERALD_ASSERT(serialized, "PeerEnvelope failed to serialize");
  std::string header;
  put_fixed32_be(header, static_cast<std::uint32_t>(payload_bytes));
  put_fixed32_be(header, crc32c(std::string_view(payload, payload_bytes)));
  frame.replace(0, kFrameHeaderBytes, header);
  return frame;
}

// Full jitter: uniform in [0, min(kReconnectMaxMs, kReconnectInitialMs * 2^attempt)].
std::uint32_t reconnect_delay_ms(unsigned attempt, Rng& rng) {
  const unsigned doublings = std::min(attempt, kMaxBackoffDoublings);
  const std::uint64_t cap =
      std::min<std::uint64_t>(kReconnectMaxMs, std::uint64_t{kReconnectInitialMs} << doublings);
  return static_cast<std::uint32_t>(rng.uniform(cap + 1));
}

struct AtomicCounters {
  std::atomic<std::uint64_t> frames_sent{0};
  std::atomic<std::uint64_t> frames_received{0};
  std::atomic<std::uint64_t> frames_dropped{0};
  std::atomic<std::uint64_t> bad_frames{0};
  std::atomic<std::uint64_t> rejected_hellos{0};
  std::atomic<std::uint64_t> reconnects{0};
  std::atomic<std::uint64_t> connections_accepted{0};
};

}  // namespace

class TcpPeerTransport::Impl {
 public:
  Impl(PeerTransportConfig config, InboundHandler on_inbound);
  [[nodiscard]] Status start();
  void stop();
  [[nodiscard]] std::uint16_t listen_port() const { return listen_port_; }
  [[nodiscard]] Status set_peer_address(NodeId id, std::string address);
  bool send(NodeId to, const rsmpb::PeerEnvelope& envelope);
  [[nodiscard]] std::uint64_t queued_bytes(NodeId to) const;
  [[nodiscard]] PeerTransportCounters counters() const;

 private:
  class Inbound;
  enum class LinkState { kIdle, kConnecting, kConnected, kBackoff };

  // The outbound link to one peer. The queue fields are guarded by Impl::mu_; everything else is
  // touched only on the io thread. `generation` changes whenever a connection is dropped, so that
  // completions of an earlier connection recognise themselves as stale.
  struct Outbound {
    Outbound(asio::io_context& io, NodeId peer_id, std::string peer_address)
        : id(peer_id), address(std::move(peer_address)), socket(io), resolver(io), timer(io) {}
    const NodeId id;
    std::string hello_frame;  // built by the constructor of Impl
    // Guarded by mu_.
    std::string address;  // "host:port"
    std::deque<std::string> queue;
    std::uint64_t queued_bytes = 0;  // queue plus in_flight
    std::size_t in_flight_frames = 0;
    bool flush_posted = false;
    // io thread only.
    LinkState state = LinkState::kIdle;
    std::uint64_t generation = 0;
    unsigned failed_attempts = 0;
    bool hello_pending = false;
    bool writing = false;
    std::vector<std::string> in_flight;
    tcp::socket socket;
    tcp::resolver resolver;
    asio::steady_timer timer;  // connect timeout, then reconnect backoff
    std::array<char, 1> probe{};
  };

  bool has_queued(Outbound& peer);
  void flush(Outbound& peer);
  void connect(Outbound& peer);
  void on_connected(Outbound& peer, std::uint64_t generation, const error_code& ec);
  void watch_for_close(Outbound& peer);
  void on_written(Outbound& peer, std::uint64_t generation, const error_code& ec);
  void drop_connection(Outbound& peer, std::string_view reason);
  void accept();
  void shutdown_all();

  const PeerTransportConfig config_;
  const InboundHandler on_inbound_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  tcp::acceptor acceptor_;
  asio::steady_timer accept_retry_timer_;
  std::map<NodeId, std::unique_ptr<Outbound>> outbound_;     // keys fixed at construction
  std::map<std::uint64_t, std::weak_ptr<Inbound>> inbound_;  // io thread only
  std::uint64_t next_inbound_id_ = 0;                        // io thread only
  Rng rng_;                                                  // io thread only
  bool stopping_ = false;                                    // io thread only
  mutable std::mutex mu_;
  std::atomic<bool> running_{false};
  std::thread thread_;
  std::uint16_t listen_port_ = 0;
  AtomicCounters counters_;
};

// One accepted connection: reads frames until an error, a bad frame or shutdown. Lives as long
// as an operation of its own is pending; Impl::inbound_ only observes it.
class TcpPeerTransport::Impl::Inbound : public std::enable_shared_from_this<Inbound> {
 public:
  Inbound(Impl& transport, tcp::socket socket, std::uint64_t id)
      : t_(transport), socket_(std::move(socket)), hello_timer_(t_.io_), id_(id) {
    error_code ec;
    const tcp::endpoint remote = socket_.remote_endpoint(ec);
    remote_ = ec ? "unknown" : remote.address().to_string() + ":" + std::to_string(remote.port());
  }

  void start() {
    hello_timer_.expires_after(milliseconds(kHelloTimeoutMs));
    hello_timer_.async_wait([self = shared_from_this()](const error_code& ec) {
      if (ec || self->t_.stopping_ || self->peer_ != raft::kNoNode) return;
      self->reject("no Hello within the timeout");
    });
    read_header();
  }

  void close() {
    error_code ignored;
    socket_.close(ignored);
    hello_timer_.cancel();
    t_.inbound_.erase(id_);
  }

 private:
  void read_header() {
    asio::async_read(socket_, asio::buffer(header_),
                     [self = shared_from_this()](const error_code& ec, std::size_t /*bytes*/) {
                       self->on_header(ec);
                     });
  }

  void on_header(const error_code& ec) {
    if (t_.stopping_) return;
    if (ec) {
      spdlog::debug("peer transport {}: inbound {} closed: {}", t_.config_.self_id, remote_,
                    ec.message());
      close();
      return;
    }
    const std::uint32_t length = get_fixed32_be(std::string_view(header_.data(), 4));
    if (length > kMaxFrameBytes) {
      bad_frame("oversize frame of " + std::to_string(length) + " bytes");
      return;
    }
    payload_.resize(length);
    asio::async_read(socket_, asio::buffer(payload_),
                     [self = shared_from_this()](const error_code& read_ec, std::size_t /*bytes*/) {
                       self->on_payload(read_ec);
                     });
  }

  void on_payload(const error_code& ec) {
    if (t_.stopping_) return;
    if (ec) {
      close();
      return;
    }
    if (crc32c(payload_) != get_fixed32_be(std::string_view(header_.data() + 4, 4))) {
      bad_frame("CRC mismatch");
      return;
    }
    rsmpb::PeerEnvelope envelope;
    if (!envelope.ParseFromString(payload_)) {
      bad_frame("unparsable payload");
      return;
    }
    if (payload_.capacity() > kRetainedPayloadBytes) {
      std::string().swap(payload_);
    }
    if (peer_ == raft::kNoNode ? !accept_hello(envelope) : !deliver(std::move(envelope))) {
      return;
    }
    read_header();
  }

  // Returns false (having closed the connection) unless `envelope` is a Hello from a known peer
  // of this cluster.
  bool accept_hello(const rsmpb::PeerEnvelope& envelope) {
    if (!envelope.has_hello()) {
      reject("first frame is not a Hello");
      return false;
    }
    const rsmpb::Hello& hello = envelope.hello();
    if (hello.cluster() != t_.config_.cluster) {
      reject("Hello for cluster '" + hello.cluster() + "'");
      return false;
    }
    if (!t_.outbound_.contains(hello.from())) {
      reject("Hello from unknown node " + std::to_string(hello.from()));
      return false;
    }
    peer_ = hello.from();
    hello_timer_.cancel();
    spdlog::info("peer transport {}: accepted node {} from {}", t_.config_.self_id, peer_, remote_);
    return true;
  }

  // Returns false (having closed the connection) when `envelope` breaks the protocol.
  bool deliver(rsmpb::PeerEnvelope&& envelope) {
    const bool has_body = envelope.body_case() != rsmpb::PeerEnvelope::BODY_NOT_SET;
    if (envelope.from() != peer_ || envelope.to() != t_.config_.self_id || !has_body ||
        envelope.has_hello()) {
      bad_frame("envelope out of protocol (from " + std::to_string(envelope.from()) + " to " +
                std::to_string(envelope.to()) + ")");
      return false;
    }
    t_.counters_.frames_received.fetch_add(1, std::memory_order_relaxed);
    t_.on_inbound_(std::move(envelope));
    return true;
  }

  void bad_frame(const std::string& why) {
    t_.counters_.bad_frames.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("peer transport {}: closing inbound {} (node {}): {}", t_.config_.self_id, remote_,
                 peer_, why);
    close();
  }

  void reject(const std::string& why) {
    t_.counters_.rejected_hellos.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("peer transport {}: rejecting inbound {}: {}", t_.config_.self_id, remote_, why);
    close();
  }

  Impl& t_;
  tcp::socket socket_;
  asio::steady_timer hello_timer_;
  const std::uint64_t id_;
  std::string remote_;
  std::array<char, kFrameHeaderBytes> header_{};
  std::string payload_;
  NodeId peer_ = raft::kNoNode;  // set by a valid Hello
};

TcpPeerTransport::Impl::Impl(PeerTransportConfig config, InboundHandler on_inbound)
    : config_(std::move(config)),
      on_inbound_(std::move(on_inbound)),
      work_(asio::make_work_guard(io_)),
      acceptor_(io_),
      accept_retry_timer_(io_),
      rng_(config_.rng_seed) {
  HERALD_ASSERT(config_.self_id != raft::kNoNode, "peer transport needs a self id");
  HERALD_ASSERT(!config_.peers.contains(config_.self_id), "peers must not include self");
  HERALD_ASSERT(on_inbound_ != nullptr, "peer transport needs an inbound handler");
  for (const auto& [id, address] : config_.peers) {
    auto peer = std::make_unique<Outbound>(io_, id, address);
    rsmpb::PeerEnvelope hello;
    hello.set_from(config_.self_id);
    hello.set_to(id);
    hello.mutable_hello()->set_from(config_.self_id);
    hello.mutable_hello()->set_cluster(config_.cluster);
    peer->hello_frame = encode_frame(hello);
    outbound_.emplace(id, std::move(peer));
  }
}

Status TcpPeerTransport::Impl::start() {
  HERALD_ASSERT(!thread_.joinable() && !stopping_, "peer transport started twice");
  for (const auto& [id, address] : config_.peers) {
    HERALD_RETURN_IF_ERROR(parse_host_port(address).status());
  }
  HERALD_RETURN_IF_ERROR(open_acceptor(acceptor_, config_.listen));
  listen_port_ = acceptor_.local_endpoint().port();
  spdlog::info("peer transport {}: listening on port {} for cluster '{}'", config_.self_id,
               listen_port_, config_.cluster);
  running_ = true;
  accept();
  thread_ = std::thread([this] { io_.run(); });
  return Status::ok_status();
}

void TcpPeerTransport::Impl::stop() {
  running_ = false;
  if (!thread_.joinable()) {
    return;
  }
  HERALD_ASSERT(std::this_thread::get_id() != thread_.get_id(),
                "stop() called from the transport's io thread");
  asio::post(io_, [this] { shutdown_all(); });
  work_.reset();
  thread_.join();
}

void TcpPeerTransport::Impl::shutdown_all() {
  stopping_ = true;
  error_code ignored;
  acceptor_.close(ignored);
  accept_retry_timer_.cancel();
  for (auto& [id, peer] : outbound_) {
    peer->socket.close(ignored);
    peer->resolver.cancel();
    peer->timer.cancel();
  }
  auto inbound = std::move(inbound_);
  inbound_.clear();
  for (auto& [id, weak] : inbound) {
    if (auto connection = weak.lock()) {
      connection->close();
    }
  }
}

bool TcpPeerTransport::Impl::send(NodeId to, const rsmpb::PeerEnvelope& envelope) {
  HERALD_ASSERT(envelope.from() == config_.self_id && envelope.to() == to && !envelope.has_hello(),
                "send() needs from == self, to == destination and a non-Hello body");
  const auto it = outbound_.find(to);
  std::string frame = it == outbound_.end() || !running_ ? std::string() : encode_frame(envelope);
  if (frame.empty()) {
    counters_.frames_dropped.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  Outbound& peer = *it->second;
  bool post_flush = false;
  {
    std::lock_guard lock(mu_);
    if (peer.queue.size() + peer.in_flight_frames >= kMaxQueuedFramesPerPeer ||
        peer.queued_bytes + frame.size() > kMaxQueuedBytesPerPeer) {
      counters_.frames_dropped.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    peer.queued_bytes += frame.size();
    peer.queue.push_back(std::move(frame));
    post_flush = !std::exchange(peer.flush_posted, true);
  }
  if (post_flush) {
    asio::post(io_, [this, &peer] {
      {
        std::lock_guard lock(mu_);
        peer.flush_posted = false;
      }
      flush(peer);
    });
  }
  return true;
}

Status TcpPeerTransport::Impl::set_peer_address(NodeId id, std::string address) {
  const auto it = outbound_.find(id);
  if (it == outbound_.end()) {
    return Status::not_found("node " + std::to_string(id) + " is not a configured peer");
  }
  HERALD_RETURN_IF_ERROR(parse_host_port(address).status());
  std::lock_guard lock(mu_);
  it->second->address = std::move(address);
  return Status::ok_status();
}

std::uint64_t TcpPeerTransport::Impl::queued_bytes(NodeId to) const {
  const auto it = outbound_.find(to);
  if (it == outbound_.end()) {
    return 0;
  }
  std::lock_guard lock(mu_);
  return it->second->queued_bytes;
}

PeerTransportCounters TcpPeerTransport::Impl::counters() const {
  const auto load = [](const std::atomic<std::uint64_t>& c) {
    return c.load(std::memory_order_relaxed);
  };
  return PeerTransportCounters{
      .frames_sent = load(counters_.frames_sent),
      .frames_received = load(counters_.frames_received),
      .frames_dropped = load(counters_.frames_dropped),
      .bad_frames = load(counters_.bad_frames),
      .rejected_hellos = load(counters_.rejected_hellos),
      .reconnects = load(counters_.reconnects),
      .connections_accepted = load(counters_.connections_accepted),
  };
}

bool TcpPeerTransport::Impl::has_queued(Outbound& peer) {
  std::lock_guard lock(mu_);
  return !peer.queue.empty();
}

// Writes everything queued for `peer` in one gather write, connecting first when idle.
void TcpPeerTransport::Impl::flush(Outbound& peer) {
  if (stopping_) return;
  if (peer.state == LinkState::kIdle && has_queued(peer)) {
    connect(peer);
    return;
  }
  if (peer.state != LinkState::kConnected || peer.writing) return;
  std::vector<asio::const_buffer> buffers;
  if (std::exchange(peer.hello_pending, false)) {
    buffers.push_back(asio::buffer(peer.hello_frame));
  }
  {
    std::lock_guard lock(mu_);
    peer.in_flight_frames = peer.queue.size();
    for (std::string& frame : peer.queue) {
      peer.in_flight.push_back(std::move(frame));
    }
    peer.queue.clear();
  }
  for (const std::string& frame : peer.in_flight) {
    buffers.push_back(asio::buffer(frame));
  }
  if (buffers.empty()) return;
  peer.writing = true;
  asio::async_write(
      peer.socket, buffers,
      [this, &peer, generation = peer.generation](const error_code& ec, std::size_t /*bytes*/) {
        on_written(peer, generation, ec);
      });
}

void TcpPeerTransport::Impl::on_written(Outbound& peer, std::uint64_t generation,
                                        const error_code& ec) {
  peer.writing = false;
  const std::uint64_t frames = peer.in_flight.size();
  std::uint64_t bytes = 0;
  for (const std::string& frame : peer.in_flight) {
    bytes += frame.size();
  }
  peer.in_flight.clear();
  {
    std::lock_guard lock(mu_);
    peer.queued_bytes -= bytes;
    peer.in_flight_frames = 0;
  }
  (ec ? counters_.frames_dropped : counters_.frames_sent)
      .fetch_add(frames, std::memory_order_relaxed);
  if (stopping_) return;
  if (ec && generation == peer.generation) {
    drop_connection(peer, "write: " + ec.message());
    return;
  }
  flush(peer);
}

void TcpPeerTransport::Impl::connect(Outbound& peer) {
  peer.state = LinkState::kConnecting;
  if (peer.failed_attempts > 0) {
    counters_.reconnects.fetch_add(1, std::memory_order_relaxed);
  }
  const std::uint64_t generation = peer.generation;
  std::string address;
  {
    std::lock_guard lock(mu_);
    address = peer.address;
  }
  Result<HostPort> endpoint = parse_host_port(address);
  HERALD_ASSERT(endpoint.ok(), "peer addresses are validated before use");
  peer.timer.expires_after(milliseconds(config_.connect_timeout_ms));
  peer.timer.async_wait([this, &peer, generation](const error_code& ec) {
    if (ec || stopping_ || generation != peer.generation || peer.state != LinkState::kConnecting) {
      return;
    }
    drop_connection(peer, "connect timeout");
  });
  peer.resolver.async_resolve(
      endpoint->host, std::to_string(endpoint->port),
      [this, &peer, generation](const error_code& ec, const tcp::resolver::results_type& results) {
        if (stopping_ || generation != peer.generation) return;
        if (ec) {
          drop_connection(peer, "resolve: " + ec.message());
          return;
        }
        asio::async_connect(peer.socket, results,
                            [this, &peer, generation](const error_code& connect_ec,
                                                      const tcp::endpoint& /*endpoint*/) {
                              on_connected(peer, generation, connect_ec);
                            });
      });
}

void TcpPeerTransport::Impl::on_connected(Outbound& peer, std::uint64_t generation,
                                          const error_code& ec) {
  if (stopping_ || generation != peer.generation) return;
  if (ec) {
    drop_connection(peer, "connect: " + ec.message());
    return;
  }
  peer.timer.cancel();
  error_code ignored;
  peer.socket.set_option(tcp::no_delay(true), ignored);
  peer.state = LinkState::kConnected;
  peer.failed_attempts = 0;
  peer.hello_pending = true;
  spdlog::info("peer transport {}: connected to node {}", config_.self_id, peer.id);
  watch_for_close(peer);
  flush(peer);
}

// Peers never write on a connection they accepted, so a completed read means the connection is
// gone (or the peer broke the protocol): either way it is dropped.
void TcpPeerTransport::Impl::watch_for_close(Outbound& peer) {
  peer.socket.async_read_some(
      asio::buffer(peer.probe),
      [this, &peer, generation = peer.generation](const error_code& ec, std::size_t /*bytes*/) {
        if (stopping_ || generation != peer.generation) return;
        drop_connection(peer, ec ? ec.message() : "unexpected bytes from the peer");
      });
}

// Closes the connection, drops the queued frames and schedules a reconnect with backoff. The
// reconnect happens only once something is queued again: links are connected lazily.
void TcpPeerTransport::Impl::drop_connection(Outbound& peer, std::string_view reason) {
  if (peer.state == LinkState::kConnected) {
    spdlog::warn("peer transport {}: connection to node {} lost: {}", config_.self_id, peer.id,
                 reason);
  } else {
    spdlog::debug("peer transport {}: cannot reach node {}: {}", config_.self_id, peer.id, reason);
  }
  error_code ignored;
  peer.socket.close(ignored);
  peer.resolver.cancel();
  ++peer.generation;
  {
    std::lock_guard lock(mu_);
    for (const std::string& frame : peer.queue) {
      peer.queued_bytes -= frame.size();
    }
    counters_.frames_dropped.fetch_add(peer.queue.size(), std::memory_order_relaxed);
    peer.queue.clear();
  }
  peer.state = LinkState::kBackoff;
  const std::uint32_t delay_ms = reconnect_delay_ms(peer.failed_attempts++, rng_);
  peer.timer.expires_after(milliseconds(delay_ms));
  peer.timer.async_wait([this, &peer, generation = peer.generation](const error_code& ec) {
    if (ec || stopping_ || generation != peer.generation) return;
    peer.state = LinkState::kIdle;
    flush(peer);
  });
}

void TcpPeerTransport::Impl::accept() {
  acceptor_.async_accept([this](const error_code& ec, tcp::socket socket) {
    if (stopping_) return;
    if (ec) {
      spdlog::warn("peer transport {}: accept failed: {}", config_.self_id, ec.message());
      accept_retry_timer_.expires_after(milliseconds(kAcceptRetryMs));
      accept_retry_timer_.async_wait([this](const error_code& timer_ec) {
        if (!timer_ec && !stopping_) accept();
      });
      return;
    }
    if (inbound_.size() >= kMaxInboundConnections) {
      spdlog::warn("peer transport {}: refusing inbound connection: {} already open",
                   config_.self_id, inbound_.size());
    } else {
      counters_.connections_accepted.fetch_add(1, std::memory_order_relaxed);
      error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      const std::uint64_t id = next_inbound_id_++;
      auto connection = std::make_shared<Inbound>(*this, std::move(socket), id);
      inbound_.emplace(id, connection);
      connection->start();
    }
    accept();
  });
}

TcpPeerTransport::TcpPeerTransport(PeerTransportConfig config, InboundHandler on_inbound)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(on_inbound))) {}

TcpPeerTransport::~TcpPeerTransport() {
  stop();
}

Status TcpPeerTransport::start() {
  return impl_->start();
}

void TcpPeerTransport::stop() {
  impl_->stop();
}

std::uint16_t TcpPeerTransport::listen_port() const {
  return impl_->listen_port();
}

Status TcpPeerTransport::set_peer_address(NodeId id, std::string address) {
  return impl_->set_peer_address(id, std::move(address));
}

bool TcpPeerTransport::send(NodeId to, const rsmpb::PeerEnvelope& envelope) {
  return impl_->send(to, envelope);
}

std::uint64_t TcpPeerTransport::queued_bytes(NodeId to) const {
  return impl_->queued_bytes(to);
}

PeerTransportCounters TcpPeerTransport::counters() const {
  return impl_->counters();
}

}  // namespace herald::server
