#include "server/peer_transport.h"

#include <fmt/format.h>
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
#include <optional>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "base/assert.h"
#include "base/encoding.h"
#include "base/random.h"
#include "server/endpoint.h"
#include "server/listener.h"
#include "server/peer_auth.h"

namespace herald::server {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using raft::NodeId;
using std::chrono::milliseconds;

namespace {

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
  std::string frame(kPeerFrameHeaderBytes + payload_bytes, '\0');
  char* payload = frame.data() + kPeerFrameHeaderBytes;
  const bool serialized = envelope.SerializeToArray(payload, static_cast<int>(payload_bytes));
  HERALD_ASSERT(serialized, "PeerEnvelope failed to serialize");
  std::string header;
  put_fixed32_be(header, static_cast<std::uint32_t>(payload_bytes));
  put_fixed32_be(header, crc32c(std::string_view(payload, payload_bytes)));
  frame.replace(0, kPeerFrameHeaderBytes, header);
  return frame;
}

// Full jitter: uniform in [0, min(kReconnectMaxMs, kReconnectInitialMs * 2^attempt)].
std::uint32_t reconnect_delay_ms(unsigned attempt, Rng& rng) {
  const unsigned doublings = std::min(attempt, kMaxBackoffDoublings);
  const std::uint64_t cap =
      std::min<std::uint64_t>(kReconnectMaxMs, std::uint64_t{kReconnectInitialMs} << doublings);
  return static_cast<std::uint32_t>(rng.uniform(cap + 1));
}

// A body that only the handshake may carry.
bool is_handshake(const rsmpb::PeerEnvelope& envelope) {
  return envelope.has_hello() || envelope.has_hello_reply() || envelope.has_hello_proof();
}

// At most one warning per kWarnIntervalMs for one kind of event; the next warning let through
// says how many were held back. io thread only.
class WarnLimiter {
 public:
  template <typename... Args>
  void warn(fmt::format_string<Args...> format, Args&&... args) {
    const auto now = std::chrono::steady_clock::now();
    if (last_ && now - *last_ < milliseconds(kWarnIntervalMs)) {
      ++held_back_;
      return;
    }
    last_ = now;
    const std::string message = fmt::format(format, std::forward<Args>(args)...);
    if (const std::uint64_t held_back = std::exchange(held_back_, 0); held_back > 0) {
      spdlog::warn("{} ({} more like it in the last {} ms)", message, held_back, kWarnIntervalMs);
    } else {
      spdlog::warn("{}", message);
    }
  }

 private:
  std::optional<std::chrono::steady_clock::time_point> last_;
  std::uint64_t held_back_ = 0;
};

struct AtomicCounters {
  std::atomic<std::uint64_t> frames_sent{0};
  std::atomic<std::uint64_t> frames_received{0};
  std::atomic<std::uint64_t> frames_dropped{0};
  std::atomic<std::uint64_t> bad_frames{0};
  std::atomic<std::uint64_t> rejected_hellos{0};
  std::atomic<std::uint64_t> forged_frames{0};
  std::atomic<std::uint64_t> reconnects{0};
  std::atomic<std::uint64_t> connections_accepted{0};
};

}  // namespace

PeerFrameHeader decode_peer_frame_header(std::string_view header) {
  HERALD_ASSERT(header.size() == kPeerFrameHeaderBytes, "a peer frame header has 8 bytes");
  return {.payload_bytes = get_fixed32_be(header), .payload_crc = get_fixed32_be(header.substr(4))};
}

Result<rsmpb::PeerEnvelope> decode_peer_frame_payload(const PeerFrameHeader& header,
                                                      std::string_view payload) {
  if (crc32c(payload) != header.payload_crc) {
    return Status::corruption("CRC mismatch");
  }
  rsmpb::PeerEnvelope envelope;
  if (!envelope.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return Status::corruption("unparsable payload");
  }
  return envelope;
}

Status check_hello(const rsmpb::PeerEnvelope& envelope, std::string_view cluster, NodeId self,
                   const std::function<bool(NodeId)>& is_peer) {
  if (!envelope.has_hello()) {
    return Status::invalid_argument("first frame is not a Hello");
  }
  const rsmpb::Hello& hello = envelope.hello();
  if (hello.cluster() != cluster) {
    return Status::invalid_argument("Hello for cluster '" + hello.cluster() + "'");
  }
  if (!is_peer(hello.from())) {
    return Status::invalid_argument("Hello from unknown node " + std::to_string(hello.from()));
  }
  if (envelope.from() != hello.from() || envelope.to() != self) {
    return Status::invalid_argument(fmt::format("Hello of node {} sent from {} to {}", hello.from(),
                                                envelope.from(), envelope.to()));
  }
  if (hello.nonce().size() != kHandshakeNonceBytes) {
    return Status::invalid_argument(fmt::format("Hello of node {} carries a nonce of {} bytes",
                                                hello.from(), hello.nonce().size()));
  }
  return Status::ok_status();
}

Status check_hello_reply(const rsmpb::PeerEnvelope& envelope, std::string_view secret,
                         const HandshakeTranscript& transcript) {
  if (!envelope.has_hello_reply()) {
    return Status::invalid_argument("the first frame from the acceptor is not a HelloReply");
  }
  const rsmpb::HelloReply& reply = envelope.hello_reply();
  if (reply.from() != transcript.acceptor || envelope.from() != transcript.acceptor ||
      envelope.to() != transcript.caller) {
    return Status::invalid_argument(fmt::format("HelloReply of node {} sent from {} to {}",
                                                reply.from(), envelope.from(), envelope.to()));
  }
  if (reply.nonce().size() != kHandshakeNonceBytes) {
    return Status::invalid_argument(
        fmt::format("HelloReply carries a nonce of {} bytes", reply.nonce().size()));
  }
  HandshakeTranscript both = transcript;
  both.acceptor_nonce = reply.nonce();
  const std::string expected = handshake_proof(HandshakeRole::kAcceptor, secret, both);
  if (!proof_matches(expected, reply.proof())) {
    return Status::invalid_argument("the acceptor failed to prove the cluster secret");
  }
  return Status::ok_status();
}

Status check_hello_proof(const rsmpb::PeerEnvelope& envelope, std::string_view secret,
                         const HandshakeTranscript& transcript) {
  if (!envelope.has_hello_proof()) {
    return Status::invalid_argument(
        fmt::format("node {} sent another frame than its HelloProof", transcript.caller));
  }
  const std::string expected = handshake_proof(HandshakeRole::kCaller, secret, transcript);
  if (!proof_matches(expected, envelope.hello_proof().proof())) {
    return Status::invalid_argument(
        fmt::format("node {} failed to prove the cluster secret", transcript.caller));
  }
  return Status::ok_status();
}

std::string impersonation(const rsmpb::PeerEnvelope& envelope, NodeId peer, NodeId self) {
  const auto mismatch = [&](std::string_view where, NodeId from, NodeId to) -> std::string {
    if (from != peer) return fmt::format("{} claims sender {}", where, from);
    if (to != self) return fmt::format("{} is addressed to node {}", where, to);
    return {};
  };
  std::string why = mismatch("envelope", envelope.from(), envelope.to());
  if (why.empty() && envelope.has_raft()) {
    why = mismatch("raft message", envelope.raft().from(), envelope.raft().to());
  }
  if (why.empty() && envelope.has_chunk() && envelope.chunk().has_snap_message()) {
    const raftpb::Message& snap = envelope.chunk().snap_message();
    why = mismatch("snapshot message", snap.from(), snap.to());
  }
  if (why.empty() && envelope.has_report() && envelope.report().id() != peer) {
    why = fmt::format("report claims node {}", envelope.report().id());
  }
  if (why.empty() && envelope.has_figures() && envelope.figures().id() != peer) {
    why = fmt::format("node figures claim node {}", envelope.figures().id());
  }
  return why;
}

class TcpPeerTransport::Impl {
 public:
  Impl(PeerTransportConfig config, InboundHandler on_inbound);
  [[nodiscard]] Status start();
  void stop();
  [[nodiscard]] std::uint16_t listen_port() const { return listen_port_; }
  [[nodiscard]] Status set_peer_address(NodeId id, std::string address);
  [[nodiscard]] Status add_peer(NodeId id, std::string address);
  bool send(NodeId to, const rsmpb::PeerEnvelope& envelope);
  [[nodiscard]] std::uint64_t queued_bytes(NodeId to) const;
  [[nodiscard]] PeerTransportCounters counters() const;

 private:
  class Inbound;
  enum class LinkState { kIdle, kConnecting, kHandshaking, kConnected, kBackoff };

  // The outbound link to one peer. The queue fields are guarded by Impl::mu_; everything else is
  // touched only on the io thread. `generation` changes whenever a connection is dropped, so that
  // completions of an earlier connection recognise themselves as stale.
  struct Outbound {
    Outbound(asio::io_context& io, NodeId peer_id, std::string peer_address)
        : id(peer_id), address(std::move(peer_address)), socket(io), resolver(io), timer(io) {}
    const NodeId id;
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
    std::string hello_frame;     // this connection's Hello
    std::string caller_nonce;    // the nonce in hello_frame
    std::string proof_frame;     // this connection's HelloProof, written first once connected
    bool proof_pending = false;  // proof_frame is still to be written
    std::array<char, kPeerFrameHeaderBytes> reply_header{};
    std::string reply_payload;
    bool writing = false;
    std::vector<std::string> in_flight;
    tcp::socket socket;
    tcp::resolver resolver;
    asio::steady_timer timer;  // connect timeout, then reconnect backoff
    std::array<char, 1> probe{};
  };

  // The link to `id`, or null; the pointer stays valid while the transport lives.
  [[nodiscard]] Outbound* find_outbound(NodeId id) const;
  bool has_queued(Outbound& peer);
  void flush(Outbound& peer);
  void connect(Outbound& peer);
  void on_connected(Outbound& peer, std::uint64_t generation, const error_code& ec);
  void read_reply(Outbound& peer);
  void on_reply(Outbound& peer, std::uint64_t generation, const error_code& ec);
  [[nodiscard]] Status check_reply(const Outbound& peer, const rsmpb::PeerEnvelope& envelope) const;
  void handshake_failed(Outbound& peer, std::string_view reason);
  void watch_for_close(Outbound& peer);
  void on_written(Outbound& peer, std::uint64_t generation, const error_code& ec);
  void drop_connection(Outbound& peer, std::string_view reason);
  void accept();
  void shutdown_all();
  [[nodiscard]] HandshakeTranscript transcript(NodeId caller, NodeId acceptor,
                                               std::string_view caller_nonce,
                                               std::string_view acceptor_nonce) const {
    return {.cluster = config_.cluster,
            .caller = caller,
            .acceptor = acceptor,
            .caller_nonce = caller_nonce,
            .acceptor_nonce = acceptor_nonce};
  }

  const PeerTransportConfig config_;
  const InboundHandler on_inbound_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  tcp::acceptor acceptor_;
  asio::steady_timer accept_retry_timer_;
  // Guarded by mu_ (add_peer() adds links while the transport runs); a link, once added, stays.
  std::map<NodeId, std::unique_ptr<Outbound>> outbound_;
  std::map<std::uint64_t, std::weak_ptr<Inbound>> inbound_;  // io thread only
  std::uint64_t next_inbound_id_ = 0;                        // io thread only
  Rng rng_;                                                  // io thread only
  bool stopping_ = false;                                    // io thread only
  WarnLimiter handshake_warnings_;                           // io thread only
  WarnLimiter forgery_warnings_;                             // io thread only
  mutable std::mutex mu_;
  std::atomic<bool> running_{false};
  std::thread thread_;
  std::uint16_t listen_port_ = 0;
  AtomicCounters counters_;
};

// One accepted connection: runs the acceptor's side of the handshake, then reads frames until an
// error, a bad frame or shutdown. Lives as long as an operation of its own is pending;
// Impl::inbound_ only observes it.
class TcpPeerTransport::Impl::Inbound : public std::enable_shared_from_this<Inbound> {
 public:
  Inbound(Impl& transport, tcp::socket socket, std::uint64_t id)
      : t_(transport), socket_(std::move(socket)), hello_timer_(t_.io_), id_(id) {
    error_code ec;
    const tcp::endpoint remote = socket_.remote_endpoint(ec);
    remote_ = ec ? "unknown" : remote.address().to_string() + ":" + std::to_string(remote.port());
  }

  void start() {
    hello_timer_.expires_after(milliseconds(t_.config_.handshake_timeout_ms));
    hello_timer_.async_wait([self = shared_from_this()](const error_code& ec) {
      if (ec || self->t_.stopping_ || self->closed_ || self->stage_ == Stage::kAuthenticated) {
        return;
      }
      self->reject(
          fmt::format("no complete handshake within {} ms", self->t_.config_.handshake_timeout_ms));
    });
    read_header();
  }

  void close() {
    closed_ = true;
    error_code ignored;
    socket_.close(ignored);
    hello_timer_.cancel();
    t_.inbound_.erase(id_);
  }

 private:
  // Hello expected, then HelloProof, then any other envelope.
  enum class Stage { kAwaitHello, kAwaitProof, kAuthenticated };

  void read_header() {
    asio::async_read(socket_, asio::buffer(header_),
                     [self = shared_from_this()](const error_code& ec, std::size_t /*bytes*/) {
                       self->on_header(ec);
                     });
  }

  void on_header(const error_code& ec) {
    if (t_.stopping_ || closed_) return;
    if (ec) {
      if (stage_ != Stage::kAuthenticated) {
        reject(closed_during_handshake(ec));
        return;
      }
      spdlog::debug("peer transport {}: inbound {} closed: {}", t_.config_.self_id, remote_,
                    ec.message());
      close();
      return;
    }
    const std::uint32_t length =
        decode_peer_frame_header(std::string_view(header_.data(), header_.size())).payload_bytes;
    const std::uint32_t max_length =
        stage_ == Stage::kAuthenticated ? kMaxFrameBytes : kMaxHandshakeFrameBytes;
    if (length > max_length) {
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
    if (t_.stopping_ || closed_) return;
    if (ec) {
      if (stage_ != Stage::kAuthenticated) {
        reject(closed_during_handshake(ec));
      } else {
        close();
      }
      return;
    }
    Result<rsmpb::PeerEnvelope> decoded = decode_peer_frame_payload(
        decode_peer_frame_header(std::string_view(header_.data(), header_.size())), payload_);
    if (!decoded.ok()) {
      bad_frame(decoded.status().message());
      return;
    }
    rsmpb::PeerEnvelope envelope = std::move(decoded).value();
    if (payload_.capacity() > kRetainedPayloadBytes) {
      std::string().swap(payload_);
    }
    bool keep_reading = false;
    switch (stage_) {
      case Stage::kAwaitHello: keep_reading = accept_hello(envelope); break;
      case Stage::kAwaitProof: keep_reading = accept_proof(envelope); break;
      case Stage::kAuthenticated: keep_reading = deliver(std::move(envelope)); break;
    }
    if (keep_reading) {
      read_header();
    }
  }

  // Returns false (having closed the connection) unless `envelope` is a Hello from a known peer
  // of this cluster, addressed to this node; then answers with a HelloReply.
  bool accept_hello(const rsmpb::PeerEnvelope& envelope) {
    const Status checked =
        check_hello(envelope, t_.config_.cluster, t_.config_.self_id,
                    [this](NodeId id) { return t_.find_outbound(id) != nullptr; });
    if (!checked.ok()) {
      reject(checked.message());
      return false;
    }
    const rsmpb::Hello& hello = envelope.hello();
    Result<std::string> nonce = make_handshake_nonce();
    if (!nonce.ok()) {
      reject(nonce.status().to_string());
      return false;
    }
    claimed_ = hello.from();
    caller_nonce_ = hello.nonce();
    acceptor_nonce_ = *std::move(nonce);
    rsmpb::PeerEnvelope reply;
    reply.set_from(t_.config_.self_id);
    reply.set_to(claimed_);
    rsmpb::HelloReply* body = reply.mutable_hello_reply();
    body->set_from(t_.config_.self_id);
    body->set_nonce(acceptor_nonce_);
    body->set_proof(
        handshake_proof(HandshakeRole::kAcceptor, t_.config_.cluster_secret, transcript()));
    reply_frame_ = encode_frame(reply);
    stage_ = Stage::kAwaitProof;
    // A failed write shows up as a failed read too, which closes the connection.
    asio::async_write(socket_, asio::buffer(reply_frame_),
                      [self = shared_from_this()](const error_code& /*ec*/, std::size_t /*n*/) {});
    return true;
  }

  // Returns false (having closed the connection) unless `envelope` is the caller's HelloProof and
  // the proof checks; then the connection is authenticated as the node of the Hello.
  bool accept_proof(const rsmpb::PeerEnvelope& envelope) {
    const Status checked = check_hello_proof(envelope, t_.config_.cluster_secret, transcript());
    if (!checked.ok()) {
      reject(checked.message());
      return false;
    }
    peer_ = claimed_;
    stage_ = Stage::kAuthenticated;
    hello_timer_.cancel();
    spdlog::info("peer transport {}: authenticated node {} from {}", t_.config_.self_id, peer_,
                 remote_);
    return true;
  }

  // Why the connection ended before the handshake completed. A caller that closes after the
  // HelloReply most likely holds another secret (it found the reply's proof wrong).
  [[nodiscard]] std::string closed_during_handshake(const error_code& ec) const {
    if (stage_ == Stage::kAwaitProof) {
      return fmt::format(
          "node {} closed the connection in the handshake, after the HelloReply ({}): does it "
          "hold another cluster secret?",
          claimed_, ec.message());
    }
    return "closed during the handshake: " + ec.message();
  }

  [[nodiscard]] HandshakeTranscript transcript() const {
    return t_.transcript(claimed_, t_.config_.self_id, caller_nonce_, acceptor_nonce_);
  }

  // Returns false (having closed the connection) when `envelope` breaks the protocol. An
  // envelope that speaks for another node is dropped, but the connection is kept: the peer did
  // authenticate, and closing would only make it reconnect.
  bool deliver(rsmpb::PeerEnvelope&& envelope) {
    if (envelope.body_case() == rsmpb::PeerEnvelope::BODY_NOT_SET || is_handshake(envelope)) {
      bad_frame("envelope without a body, or a handshake message after the handshake");
      return false;
    }
    if (const std::string why = impersonation(envelope, peer_, t_.config_.self_id); !why.empty()) {
      t_.counters_.forged_frames.fetch_add(1, std::memory_order_relaxed);
      t_.forgery_warnings_.warn("peer transport {}: dropped a frame of node {} from {}: {}",
                                t_.config_.self_id, peer_, remote_, why);
      return true;
    }
    t_.counters_.frames_received.fetch_add(1, std::memory_order_relaxed);
    t_.on_inbound_(std::move(envelope));
    return true;
  }

  // Before the handshake completed anyone may be at the other end, so the warning is rate
  // limited along with the failed handshakes; an authenticated peer's bad frame always shows.
  void bad_frame(const std::string& why) {
    t_.counters_.bad_frames.fetch_add(1, std::memory_order_relaxed);
    if (stage_ == Stage::kAuthenticated) {
      spdlog::warn("peer transport {}: closing inbound {} (node {}): {}", t_.config_.self_id,
                   remote_, peer_, why);
    } else {
      t_.handshake_warnings_.warn("peer transport {}: closing unauthenticated inbound {}: {}",
                                  t_.config_.self_id, remote_, why);
    }
    close();
  }

  void reject(const std::string& why) {
    t_.counters_.rejected_hellos.fetch_add(1, std::memory_order_relaxed);
    t_.handshake_warnings_.warn("peer transport {}: rejecting inbound {}: {}", t_.config_.self_id,
                                remote_, why);
    close();
  }

  Impl& t_;
  tcp::socket socket_;
  asio::steady_timer hello_timer_;
  const std::uint64_t id_;
  std::string remote_;
  std::array<char, kPeerFrameHeaderBytes> header_{};
  std::string payload_;
  Stage stage_ = Stage::kAwaitHello;
  bool closed_ = false;
  NodeId claimed_ = raft::kNoNode;  // the id the Hello named, not yet proven
  std::string caller_nonce_;
  std::string acceptor_nonce_;
  std::string reply_frame_;      // the HelloReply, kept alive while it is written
  NodeId peer_ = raft::kNoNode;  // set once the caller's proof checked
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
    outbound_.emplace(id, std::make_unique<Outbound>(io_, id, address));
  }
}

Status TcpPeerTransport::Impl::start() {
  HERALD_ASSERT(!thread_.joinable() && !stopping_, "peer transport started twice");
  for (const auto& [id, address] : config_.peers) {
    HERALD_RETURN_IF_ERROR(parse_host_port(address).status());
  }
  if (!config_.cluster_secret.empty()) {
    HERALD_RETURN_IF_ERROR(check_cluster_secret(config_.cluster_secret));
  } else if (!config_.peers.empty() && !config_.insecure_peers) {
    return Status::invalid_argument(
        "a transport with peers needs a cluster secret (or, explicitly, insecure_peers)");
  } else if (!config_.peers.empty()) {
    spdlog::warn("peer transport {}: no cluster secret: peers are not authenticated",
                 config_.self_id);
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
  std::vector<Outbound*> peers;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, peer] : outbound_) peers.push_back(peer.get());
  }
  for (Outbound* peer : peers) {
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
  HERALD_ASSERT(envelope.from() == config_.self_id && envelope.to() == to &&
                    envelope.body_case() != rsmpb::PeerEnvelope::BODY_NOT_SET &&
                    !is_handshake(envelope),
                "send() needs from == self, to == destination and a body outside the handshake");
  Outbound* const found = find_outbound(to);
  std::string frame = found == nullptr || !running_ ? std::string() : encode_frame(envelope);
  if (frame.empty()) {
    counters_.frames_dropped.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  Outbound& peer = *found;
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

TcpPeerTransport::Impl::Outbound* TcpPeerTransport::Impl::find_outbound(NodeId id) const {
  std::lock_guard lock(mu_);
  const auto it = outbound_.find(id);
  return it == outbound_.end() ? nullptr : it->second.get();
}

Status TcpPeerTransport::Impl::set_peer_address(NodeId id, std::string address) {
  Outbound* const peer = find_outbound(id);
  if (peer == nullptr) {
    return Status::not_found("node " + std::to_string(id) + " is not a configured peer");
  }
  HERALD_RETURN_IF_ERROR(parse_host_port(address).status());
  std::lock_guard lock(mu_);
  peer->address = std::move(address);
  return Status::ok_status();
}

Status TcpPeerTransport::Impl::add_peer(NodeId id, std::string address) {
  if (id == raft::kNoNode || id == config_.self_id) {
    return Status::invalid_argument("a peer is another node, with a positive id");
  }
  HERALD_RETURN_IF_ERROR(parse_host_port(address).status());
  std::lock_guard lock(mu_);
  auto& peer = outbound_[id];
  if (peer == nullptr) {
    peer = std::make_unique<Outbound>(io_, id, std::move(address));
  } else {
    peer->address = std::move(address);
  }
  return Status::ok_status();
}

std::uint64_t TcpPeerTransport::Impl::queued_bytes(NodeId to) const {
  Outbound* const peer = find_outbound(to);
  if (peer == nullptr) {
    return 0;
  }
  std::lock_guard lock(mu_);
  return peer->queued_bytes;
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
      .forged_frames = load(counters_.forged_frames),
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
  if (std::exchange(peer.proof_pending, false)) {
    buffers.push_back(asio::buffer(peer.proof_frame));
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

// Starts the caller's side of the handshake: writes a Hello with a fresh nonce and waits, within
// handshake_timeout_ms, for the acceptor's HelloReply. Nothing else is written before it checks.
void TcpPeerTransport::Impl::on_connected(Outbound& peer, std::uint64_t generation,
                                          const error_code& ec) {
  if (stopping_ || generation != peer.generation) return;
  if (ec) {
    drop_connection(peer, "connect: " + ec.message());
    return;
  }
  Result<std::string> nonce = make_handshake_nonce();
  if (!nonce.ok()) {
    drop_connection(peer, nonce.status().to_string());
    return;
  }
  error_code ignored;
  peer.socket.set_option(tcp::no_delay(true), ignored);
  peer.state = LinkState::kHandshaking;
  peer.caller_nonce = *std::move(nonce);
  rsmpb::PeerEnvelope hello;
  hello.set_from(config_.self_id);
  hello.set_to(peer.id);
  hello.mutable_hello()->set_from(config_.self_id);
  hello.mutable_hello()->set_cluster(config_.cluster);
  hello.mutable_hello()->set_nonce(peer.caller_nonce);
  peer.hello_frame = encode_frame(hello);
  peer.timer.expires_after(milliseconds(config_.handshake_timeout_ms));
  peer.timer.async_wait([this, &peer, generation](const error_code& timer_ec) {
    if (timer_ec || stopping_ || generation != peer.generation ||
        peer.state != LinkState::kHandshaking) {
      return;
    }
    handshake_failed(peer, fmt::format("no HelloReply within {} ms", config_.handshake_timeout_ms));
  });
  peer.writing = true;
  asio::async_write(peer.socket, asio::buffer(peer.hello_frame),
                    [this, &peer, generation](const error_code& write_ec, std::size_t /*bytes*/) {
                      peer.writing = false;
                      if (stopping_ || generation != peer.generation) return;
                      if (write_ec) {
                        drop_connection(peer, "write: " + write_ec.message());
                        return;
                      }
                      flush(peer);  // the reply may have checked while the Hello was written
                    });
  read_reply(peer);
}

void TcpPeerTransport::Impl::read_reply(Outbound& peer) {
  const std::uint64_t generation = peer.generation;
  asio::async_read(peer.socket, asio::buffer(peer.reply_header),
                   [this, &peer, generation](const error_code& ec, std::size_t /*bytes*/) {
                     if (stopping_ || generation != peer.generation) return;
                     if (ec) {
                       on_reply(peer, generation, ec);
                       return;
                     }
                     const std::uint32_t length =
                         decode_peer_frame_header(
                             std::string_view(peer.reply_header.data(), peer.reply_header.size()))
                             .payload_bytes;
                     if (length > kMaxHandshakeFrameBytes) {
                       handshake_failed(peer, fmt::format("HelloReply of {} bytes", length));
                       return;
                     }
                     peer.reply_payload.resize(length);
                     asio::async_read(
                         peer.socket, asio::buffer(peer.reply_payload),
                         [this, &peer, generation](const error_code& read_ec, std::size_t /*n*/) {
                           on_reply(peer, generation, read_ec);
                         });
                   });
}

// Checks the acceptor's HelloReply; when it proves the secret, queues this side's HelloProof
// ahead of every queued frame and opens the link for them.
void TcpPeerTransport::Impl::on_reply(Outbound& peer, std::uint64_t generation,
                                      const error_code& ec) {
  if (stopping_ || generation != peer.generation) return;
  if (ec) {
    handshake_failed(peer, "closed during the handshake: " + ec.message());
    return;
  }
  Result<rsmpb::PeerEnvelope> decoded =
      decode_peer_frame_payload(decode_peer_frame_header(std::string_view(
                                    peer.reply_header.data(), peer.reply_header.size())),
                                peer.reply_payload);
  if (!decoded.ok()) {
    handshake_failed(peer, "malformed HelloReply");
    return;
  }
  const rsmpb::PeerEnvelope envelope = std::move(decoded).value();
  if (const Status checked = check_reply(peer, envelope); !checked.ok()) {
    handshake_failed(peer, checked.message());
    return;
  }
  const HandshakeTranscript both =
      transcript(config_.self_id, peer.id, peer.caller_nonce, envelope.hello_reply().nonce());
  rsmpb::PeerEnvelope proof;
  proof.set_from(config_.self_id);
  proof.set_to(peer.id);
  proof.mutable_hello_proof()->set_proof(
      handshake_proof(HandshakeRole::kCaller, config_.cluster_secret, both));
  peer.proof_frame = encode_frame(proof);
  peer.proof_pending = true;
  peer.timer.cancel();
  peer.state = LinkState::kConnected;
  peer.failed_attempts = 0;
  spdlog::info("peer transport {}: connected to node {}, authenticated", config_.self_id, peer.id);
  watch_for_close(peer);
  flush(peer);
}

// OK when `envelope` is a HelloReply of `peer` whose proof checks against this connection's
// Hello; otherwise kInvalidArgument saying what is wrong.
Status TcpPeerTransport::Impl::check_reply(const Outbound& peer,
                                           const rsmpb::PeerEnvelope& envelope) const {
  return check_hello_reply(envelope, config_.cluster_secret,
                           transcript(config_.self_id, peer.id, peer.caller_nonce, {}));
}

void TcpPeerTransport::Impl::handshake_failed(Outbound& peer, std::string_view reason) {
  counters_.rejected_hellos.fetch_add(1, std::memory_order_relaxed);
  handshake_warnings_.warn("peer transport {}: handshake with node {} failed: {}", config_.self_id,
                           peer.id, reason);
  drop_connection(peer, reason);
}

// After the handshake an acceptor never writes, so a completed read means the connection is gone
// (or the peer broke the protocol): either way it is dropped.
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
  peer.proof_pending = false;
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

Status TcpPeerTransport::add_peer(NodeId id, std::string address) {
  return impl_->add_peer(id, std::move(address));
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
