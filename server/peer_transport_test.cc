#include "server/peer_transport.h"

#include <gtest/gtest.h>

#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/encoding.h"
#include "server/peer_auth.h"

namespace herald::server {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using std::chrono::milliseconds;

constexpr milliseconds kWaitTimeout{10'000};
constexpr char kCluster[] = "test-cluster";
// Two secrets of the minimum length that differ only in their last byte.
std::string secret_ending_in(char last) {
  return std::string(kMinClusterSecretBytes - 1, 'k') + last;
}
std::string good_secret() {
  return secret_ending_in('1');
}
std::string other_secret() {
  return secret_ending_in('2');
}
// A handshake deadline short enough for tests that wait for it.
constexpr std::uint32_t kShortHandshakeMs = 300;

// Polls `done` until it holds or kWaitTimeout passes.
bool wait_until(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + kWaitTimeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(milliseconds(2));
  }
  return true;
}

std::string loopback(std::uint16_t port) {
  return "127.0.0.1:" + std::to_string(port);
}

// A SnapshotAck whose stream_id carries a sequence number the tests check.
rsmpb::PeerEnvelope make_envelope(raft::NodeId from, raft::NodeId to, std::uint64_t seq) {
  rsmpb::PeerEnvelope envelope;
  envelope.set_from(from);
  envelope.set_to(to);
  envelope.mutable_ack()->set_stream_id(seq);
  return envelope;
}

// What one transport received, filled on its io thread.
class Inbox {
 public:
  TcpPeerTransport::InboundHandler handler() {
    return [this](rsmpb::PeerEnvelope&& envelope) {
      std::lock_guard lock(mu_);
      envelopes_.push_back(std::move(envelope));
    };
  }
  std::size_t size() const {
    std::lock_guard lock(mu_);
    return envelopes_.size();
  }
  std::vector<rsmpb::PeerEnvelope> snapshot() const {
    std::lock_guard lock(mu_);
    return envelopes_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<rsmpb::PeerEnvelope> envelopes_;
};

// How a TestNode differs from the default.
struct NodeOptions {
  std::string cluster = kCluster;
  std::string listen = "127.0.0.1:0";
  std::string secret = good_secret();
  bool insecure_peers = false;
  std::uint32_t handshake_timeout_ms = kHelloTimeoutMs;
};

PeerTransportConfig make_config(raft::NodeId id, const std::vector<raft::NodeId>& peer_ids,
                                NodeOptions options) {
  PeerTransportConfig config;
  config.self_id = id;
  config.cluster = std::move(options.cluster);
  config.listen = std::move(options.listen);
  config.cluster_secret = std::move(options.secret);
  config.insecure_peers = options.insecure_peers;
  config.handshake_timeout_ms = options.handshake_timeout_ms;
  config.rng_seed = id;
  for (raft::NodeId peer : peer_ids) {
    config.peers[peer] = "127.0.0.1:1";
  }
  return config;
}

// A transport with its inbox. Peers start with placeholder addresses; connect() fills them in.
struct TestNode {
  TestNode(raft::NodeId id, const std::vector<raft::NodeId>& peer_ids, NodeOptions options = {}) {
    transport = std::make_unique<TcpPeerTransport>(make_config(id, peer_ids, std::move(options)),
                                                   inbox.handler());
    const Status started = transport->start();
    EXPECT_TRUE(started.ok()) << started.to_string();
  }
  void point_at(raft::NodeId peer, const TestNode& other) {
    point_at(peer, other.transport->listen_port());
  }
  void point_at(raft::NodeId peer, std::uint16_t port) {
    const Status status = transport->set_peer_address(peer, loopback(port));
    EXPECT_TRUE(status.ok()) << status.to_string();
  }

  Inbox inbox;
  std::unique_ptr<TcpPeerTransport> transport;
};

// Checks that `inbox` holds, from each sender, sequence numbers 0..count-1 in order.
void expect_in_order(const Inbox& inbox, raft::NodeId self, std::uint64_t count) {
  std::map<raft::NodeId, std::uint64_t> next;
  for (const rsmpb::PeerEnvelope& envelope : inbox.snapshot()) {
    EXPECT_EQ(envelope.to(), self);
    EXPECT_EQ(envelope.ack().stream_id(), next[envelope.from()]++) << "from " << envelope.from();
  }
  for (const auto& [from, received] : next) {
    EXPECT_EQ(received, count) << "from " << from;
  }
}

TEST(TcpPeerTransport, ThreeNodesExchangeEnvelopesInOrder) {
  constexpr std::uint64_t kPerPair = 500;
  TestNode a(1, {2, 3}), b(2, {1, 3}), c(3, {1, 2});
  const std::vector<std::pair<TestNode*, raft::NodeId>> nodes = {{&a, 1}, {&b, 2}, {&c, 3}};
  for (const auto& [from, from_id] : nodes) {
    for (const auto& [to, to_id] : nodes) {
      if (from != to) from->point_at(to_id, *to);
    }
  }
  for (std::uint64_t seq = 0; seq < kPerPair; ++seq) {
    for (const auto& [from, from_id] : nodes) {
      for (const auto& [to, to_id] : nodes) {
        if (from != to) {
          ASSERT_TRUE(from->transport->send(to_id, make_envelope(from_id, to_id, seq)));
        }
      }
    }
  }
  ASSERT_TRUE(wait_until([&] {
    return a.inbox.size() == 2 * kPerPair && b.inbox.size() == 2 * kPerPair &&
           c.inbox.size() == 2 * kPerPair;
  }));
  expect_in_order(a.inbox, 1, kPerPair);
  expect_in_order(b.inbox, 2, kPerPair);
  expect_in_order(c.inbox, 3, kPerPair);
  ASSERT_TRUE(wait_until([&] { return a.transport->queued_bytes(2) == 0; }));
  EXPECT_EQ(a.transport->counters().frames_sent, 2 * kPerPair);
  EXPECT_EQ(b.transport->counters().frames_received, 2 * kPerPair);
  EXPECT_EQ(a.transport->counters().bad_frames, 0U);
  for (const TestNode* node : {&a, &b, &c}) {
    EXPECT_EQ(node->transport->counters().rejected_hellos, 0U);
    EXPECT_EQ(node->transport->counters().forged_frames, 0U);
  }
}

TEST(TcpPeerTransport, APeerAddedWhileRunningIsReachedAndAcceptedBothWays) {
  TestNode a(1, {2}), b(2, {1}), c(3, {1, 2});
  a.point_at(2, b);
  c.point_at(1, a);
  c.point_at(2, b);
  // Unknown to a until added: its connection is refused, and a cannot address it.
  EXPECT_FALSE(a.transport->send(3, make_envelope(1, 3, 0)));
  ASSERT_TRUE(c.transport->send(1, make_envelope(3, 1, 0)));
  ASSERT_TRUE(wait_until([&] { return a.transport->counters().rejected_hellos >= 1; }));
  EXPECT_EQ(a.inbox.size(), 0U);

  ASSERT_TRUE(a.transport->add_peer(3, loopback(c.transport->listen_port())).ok());
  ASSERT_TRUE(a.transport->send(3, make_envelope(1, 3, 0)));
  ASSERT_TRUE(wait_until([&] { return c.inbox.size() == 1; }));
  std::uint64_t seq = 1;  // c's link backs off after the refusal: resend until one arrives
  ASSERT_TRUE(wait_until([&] {
    static_cast<void>(c.transport->send(1, make_envelope(3, 1, seq++)));
    std::this_thread::sleep_for(milliseconds(5));
    return a.inbox.size() >= 1;
  }));
  EXPECT_EQ(a.transport->add_peer(1, "127.0.0.1:9").code(), Code::kInvalidArgument) << "self";
  EXPECT_EQ(a.transport->add_peer(4, "no-port").code(), Code::kInvalidArgument);
  EXPECT_TRUE(a.transport->add_peer(3, "127.0.0.1:9").ok()) << "a known peer moves";
}

TEST(TcpPeerTransport, ReconnectsAfterReceiverRestarts) {
  TestNode a(1, {2});
  auto b = std::make_unique<TestNode>(2, std::vector<raft::NodeId>{1});
  a.point_at(2, *b);
  ASSERT_TRUE(a.transport->send(2, make_envelope(1, 2, 0)));
  ASSERT_TRUE(wait_until([&] { return b->inbox.size() == 1; }));

  const std::uint16_t port = b->transport->listen_port();
  b.reset();
  b = std::make_unique<TestNode>(2, std::vector<raft::NodeId>{1},
                                 NodeOptions{.listen = loopback(port)});
  ASSERT_EQ(b->transport->listen_port(), port);
  // Frames sent while the link is down may be lost; raft would retransmit, and so does the test.
  std::uint64_t seq = 1;
  ASSERT_TRUE(wait_until([&] {
    static_cast<void>(a.transport->send(2, make_envelope(1, 2, seq++)));
    std::this_thread::sleep_for(milliseconds(5));
    return b->inbox.size() > 0;
  }));
  EXPECT_GE(a.transport->counters().reconnects, 1U);
}

TEST(TcpPeerTransport, SendRefusesUnknownPeerAndFullQueue) {
  // A listener that never accepts: the kernel completes the handshake, nobody reads, so writes
  // stall once the socket buffers fill and the queue grows to its bound.
  asio::io_context io;
  tcp::acceptor silent(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  TestNode a(1, {2});
  ASSERT_TRUE(a.transport->set_peer_address(2, loopback(silent.local_endpoint().port())).ok());
  EXPECT_FALSE(a.transport->send(7, make_envelope(1, 7, 0)));

  constexpr std::size_t kChunkBytes = std::size_t{1024} * 1024;
  rsmpb::PeerEnvelope chunk;
  chunk.set_from(1);
  chunk.set_to(2);
  chunk.mutable_chunk()->set_data(std::string(kChunkBytes, 'x'));
  bool refused = false;
  for (int i = 0; i < 1000 && !refused; ++i) {
    refused = !a.transport->send(2, chunk);
  }
  EXPECT_TRUE(refused);
  EXPECT_LE(a.transport->queued_bytes(2), kMaxQueuedBytesPerPeer);
  EXPECT_GT(a.transport->queued_bytes(2), kMaxQueuedBytesPerPeer - 2 * kChunkBytes);
  EXPECT_GE(a.transport->counters().frames_dropped, 2U);
}

// One end of a peer connection driven by the test: speaks (or breaks) the frame format and the
// handshake by hand. Every byte written is also kept, so that a test can replay it.
class RawPeer {
 public:
  // Connects to a transport listening on `port`.
  explicit RawPeer(std::uint16_t port) : socket_(io_) {
    socket_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  }
  // Accepts one connection on `listener` (a fake acceptor).
  explicit RawPeer(tcp::acceptor& listener) : socket_(io_) { listener.accept(socket_); }

  void write(const std::string& bytes) {
    written_ += bytes;
    asio::write(socket_, asio::buffer(bytes));
  }
  void write_frame(const std::string& payload) {
    std::string frame;
    put_fixed32_be(frame, static_cast<std::uint32_t>(payload.size()));
    put_fixed32_be(frame, crc32c(payload));
    write(frame + payload);
  }
  void write_envelope(const rsmpb::PeerEnvelope& envelope) {
    write_frame(envelope.SerializeAsString());
  }
  // Writes a Hello of node `from` to node 1 with a fresh nonce.
  void write_hello(raft::NodeId from, const std::string& cluster) {
    caller_nonce_ = std::string(kHandshakeNonceBytes, static_cast<char>('0' + hellos_++));
    rsmpb::PeerEnvelope hello;
    hello.set_from(from);
    hello.set_to(1);
    hello.mutable_hello()->set_from(from);
    hello.mutable_hello()->set_cluster(cluster);
    hello.mutable_hello()->set_nonce(caller_nonce_);
    write_envelope(hello);
  }
  // Reads one frame within kWaitTimeout; nullopt on timeout, end of stream or a bad frame.
  std::optional<rsmpb::PeerEnvelope> read_envelope() {
    std::array<char, 8> header{};
    std::string payload;
    bool done = false;
    bool ok = false;
    asio::async_read(socket_, asio::buffer(header), [&](const auto& ec, std::size_t) {
      if (ec) {
        done = true;
        return;
      }
      payload.resize(get_fixed32_be(std::string_view(header.data(), 4)));
      asio::async_read(socket_, asio::buffer(payload), [&](const auto& read_ec, std::size_t) {
        done = true;
        ok = !read_ec && crc32c(payload) == get_fixed32_be(std::string_view(header.data() + 4, 4));
      });
    });
    io_.restart();
    io_.run_for(kWaitTimeout);
    rsmpb::PeerEnvelope envelope;
    if (!done || !ok || !envelope.ParseFromString(payload)) return std::nullopt;
    return envelope;
  }
  // The caller's side of the handshake as node `from` towards node 1: Hello, then the reply,
  // then a HelloProof keyed by `secret` (whether or not the reply's proof checked under it).
  // Returns whether the acceptor's proof checked under `secret`.
  bool handshake(raft::NodeId from, const std::string& secret) {
    write_hello(from, kCluster);
    const std::optional<rsmpb::PeerEnvelope> reply = read_envelope();
    if (!reply || !reply->has_hello_reply()) return false;
    const HandshakeTranscript transcript{.cluster = kCluster,
                                         .caller = from,
                                         .acceptor = 1,
                                         .caller_nonce = caller_nonce_,
                                         .acceptor_nonce = reply->hello_reply().nonce()};
    rsmpb::PeerEnvelope proof;
    proof.set_from(from);
    proof.set_to(1);
    proof.mutable_hello_proof()->set_proof(
        handshake_proof(HandshakeRole::kCaller, secret, transcript));
    write_envelope(proof);
    return proof_matches(handshake_proof(HandshakeRole::kAcceptor, secret, transcript),
                         reply->hello_reply().proof());
  }
  // True when the other end closes the connection within kWaitTimeout; the bytes it sent before
  // are appended to `received`.
  bool closed_by_peer(std::string* received = nullptr) {
    std::array<char, 256> buffer{};
    bool closed = false;
    std::function<void()> read_more = [&] {
      socket_.async_read_some(asio::buffer(buffer), [&](const auto& ec, std::size_t n) {
        if (ec) {
          closed = true;
        } else {
          if (received != nullptr) received->append(buffer.data(), n);
          read_more();
        }
      });
    };
    read_more();
    io_.restart();
    io_.run_for(kWaitTimeout);
    return closed;
  }
  const std::string& written() const { return written_; }

 private:
  asio::io_context io_;
  tcp::socket socket_;
  std::string written_;
  std::string caller_nonce_;
  int hellos_ = 0;
};

// The receiving node 1 knows peers 2 (a real transport) and 3 (played by a raw socket).
class BadInputTest : public ::testing::Test {
 protected:
  BadInputTest() : a_(1, {2, 3}), b_(2, {1}) { b_.point_at(1, a_); }

  void expect_good_peer_still_delivers() {
    ASSERT_TRUE(b_.transport->send(1, make_envelope(2, 1, 42)));
    ASSERT_TRUE(wait_until([&] { return a_.inbox.size() == 1; }));
    EXPECT_EQ(a_.inbox.snapshot()[0].ack().stream_id(), 42U);
  }
  std::uint16_t port() const { return a_.transport->listen_port(); }

  TestNode a_;
  TestNode b_;
};

TEST_F(BadInputTest, GarbageBytesCloseTheConnection) {
  RawPeer raw(port());
  raw.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");  // reads as an oversize length
  EXPECT_TRUE(raw.closed_by_peer());
  EXPECT_EQ(a_.transport->counters().bad_frames, 1U);
  expect_good_peer_still_delivers();
}

TEST_F(BadInputTest, OversizeLengthClosesWithoutReadingThePayload) {
  RawPeer raw(port());
  ASSERT_TRUE(raw.handshake(3, good_secret()));
  std::string header;
  put_fixed32_be(header, kMaxFrameBytes + 1);
  put_fixed32_be(header, 0);
  raw.write(header);
  EXPECT_TRUE(raw.closed_by_peer());
  EXPECT_EQ(a_.transport->counters().bad_frames, 1U);
  expect_good_peer_still_delivers();
}

TEST_F(BadInputTest, BadCrcClosesWithoutDelivering) {
  RawPeer raw(port());
  ASSERT_TRUE(raw.handshake(3, good_secret()));
  const std::string payload = make_envelope(3, 1, 7).SerializeAsString();
  std::string frame;
  put_fixed32_be(frame, static_cast<std::uint32_t>(payload.size()));
  put_fixed32_be(frame, crc32c(payload) ^ 1U);
  raw.write(frame + payload);
  EXPECT_TRUE(raw.closed_by_peer());
  EXPECT_EQ(a_.transport->counters().bad_frames, 1U);
  expect_good_peer_still_delivers();
}

TEST_F(BadInputTest, UnparsablePayloadClosesWithoutDelivering) {
  RawPeer raw(port());
  ASSERT_TRUE(raw.handshake(3, good_secret()));
  raw.write_frame("\xff\xff\xff\xff\xff");  // a valid CRC over bytes that are no protobuf
  EXPECT_TRUE(raw.closed_by_peer());
  EXPECT_EQ(a_.transport->counters().bad_frames, 1U);
  expect_good_peer_still_delivers();
}

// Node 3, authenticated, tries to speak for node 2 (in the envelope, or only inside the raft
// message, the report or the node figures) and to address node 2: each frame is dropped and
// counted, and the connection keeps carrying node 3's own frames.
TEST_F(BadInputTest, ForgedSenderOnAnAuthenticatedConnectionIsDroppedAndCounted) {
  RawPeer raw(port());
  ASSERT_TRUE(raw.handshake(3, good_secret()));
  raw.write_envelope(make_envelope(2, 1, 1));  // another sender
  raw.write_envelope(make_envelope(3, 2, 2));  // another recipient
  rsmpb::PeerEnvelope raft_forgery;
  raft_forgery.set_from(3);
  raft_forgery.set_to(1);
  raft_forgery.mutable_raft()->set_from(2);
  raft_forgery.mutable_raft()->set_to(1);
  raw.write_envelope(raft_forgery);
  rsmpb::PeerEnvelope report_forgery;
  report_forgery.set_from(3);
  report_forgery.set_to(1);
  report_forgery.mutable_report()->set_id(2);
  raw.write_envelope(report_forgery);
  rsmpb::PeerEnvelope figures_forgery;
  figures_forgery.set_from(3);
  figures_forgery.set_to(1);
  figures_forgery.mutable_figures()->set_version(1);
  figures_forgery.mutable_figures()->set_id(2);
  raw.write_envelope(figures_forgery);
  raw.write_envelope(make_envelope(3, 1, 5));  // its own: delivered
  ASSERT_TRUE(wait_until([&] { return a_.inbox.size() == 1; }));
  const rsmpb::PeerEnvelope delivered = a_.inbox.snapshot()[0];
  EXPECT_EQ(delivered.from(), 3U);
  EXPECT_EQ(delivered.ack().stream_id(), 5U);
  EXPECT_EQ(a_.transport->counters().forged_frames, 5U);
  EXPECT_EQ(a_.transport->counters().frames_received, 1U);
  EXPECT_EQ(a_.transport->counters().bad_frames, 0U);
}

TEST_F(BadInputTest, CallerWithTheWrongSecretIsRejected) {
  RawPeer raw(port());
  EXPECT_FALSE(raw.handshake(3, other_secret()));  // the acceptor's proof does not check either
  raw.write_envelope(make_envelope(3, 1, 7));
  EXPECT_TRUE(raw.closed_by_peer());
  EXPECT_EQ(a_.transport->counters().rejected_hellos, 1U);
  EXPECT_EQ(a_.transport->counters().frames_received, 0U);
  expect_good_peer_still_delivers();
}

// An eavesdropper who recorded every byte node 3 sent on a good connection replays them on a
// new one: the acceptor's fresh nonce makes the recorded proof worthless.
TEST_F(BadInputTest, ReplayedHandshakeTranscriptIsRejected) {
  std::string recorded;
  {
    RawPeer original(port());
    ASSERT_TRUE(original.handshake(3, good_secret()));
    original.write_envelope(make_envelope(3, 1, 1));
    ASSERT_TRUE(wait_until([&] { return a_.inbox.size() == 1; }));
    recorded = original.written();
  }
  RawPeer replay(port());
  replay.write(recorded);
  EXPECT_TRUE(replay.closed_by_peer());
  EXPECT_EQ(a_.transport->counters().rejected_hellos, 1U);
  EXPECT_EQ(a_.inbox.size(), 1U);
}

TEST_F(BadInputTest, WrongClusterHelloIsRejected) {
  RawPeer raw(port());
  raw.write_hello(3, "other-cluster");
  raw.write_frame(make_envelope(3, 1, 7).SerializeAsString());
  EXPECT_TRUE(raw.closed_by_peer());
  EXPECT_EQ(a_.transport->counters().rejected_hellos, 1U);
  expect_good_peer_still_delivers();
}

TEST_F(BadInputTest, UnknownNodeHelloIsRejected) {
  RawPeer raw(port());
  raw.write_hello(9, kCluster);
  EXPECT_TRUE(raw.closed_by_peer());
  EXPECT_EQ(a_.transport->counters().rejected_hellos, 1U);
  expect_good_peer_still_delivers();
}

TEST_F(BadInputTest, FirstFrameMustBeHello) {
  RawPeer raw(port());
  raw.write_frame(make_envelope(3, 1, 7).SerializeAsString());
  EXPECT_TRUE(raw.closed_by_peer());
  EXPECT_EQ(a_.transport->counters().rejected_hellos, 1U);
  expect_good_peer_still_delivers();
}

TEST_F(BadInputTest, EnvelopeInPlaceOfTheProofIsRejected) {
  RawPeer raw(port());
  raw.write_hello(3, kCluster);
  ASSERT_TRUE(raw.read_envelope().has_value());
  raw.write_envelope(make_envelope(3, 1, 7));
  EXPECT_TRUE(raw.closed_by_peer());
  EXPECT_EQ(a_.transport->counters().rejected_hellos, 1U);
  EXPECT_EQ(a_.inbox.size(), 0U);
}

// Connections that stop before the end of the handshake are closed at its deadline, not before.
TEST(TcpPeerTransport, PeerWithoutHandshakeIsClosedAfterTheDeadline) {
  TestNode a(1, {3}, {.handshake_timeout_ms = kShortHandshakeMs});
  const auto start = std::chrono::steady_clock::now();
  RawPeer silent(a.transport->listen_port());
  RawPeer hello_only(a.transport->listen_port());
  hello_only.write_hello(3, kCluster);
  EXPECT_TRUE(silent.closed_by_peer());
  EXPECT_TRUE(hello_only.closed_by_peer());
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(kShortHandshakeMs));
  EXPECT_EQ(a.transport->counters().rejected_hellos, 2U);
}

// Two transports whose secrets differ: neither accepts the other in either direction, and
// neither writes an envelope on a connection whose acceptor did not prove the secret.
TEST(TcpPeerTransport, TransportsWithDifferentSecretsNeverConnect) {
  TestNode a(1, {2});
  TestNode b(2, {1}, {.secret = other_secret()});
  a.point_at(2, b);
  b.point_at(1, a);
  ASSERT_TRUE(wait_until([&] {
    static_cast<void>(a.transport->send(2, make_envelope(1, 2, 0)));
    static_cast<void>(b.transport->send(1, make_envelope(2, 1, 0)));
    std::this_thread::sleep_for(milliseconds(5));
    return a.transport->counters().rejected_hellos >= 2 &&
           b.transport->counters().rejected_hellos >= 2;
  }));
  EXPECT_EQ(a.inbox.size(), 0U);
  EXPECT_EQ(b.inbox.size(), 0U);
  EXPECT_EQ(a.transport->counters().frames_sent, 0U);
  EXPECT_EQ(b.transport->counters().frames_sent, 0U);
}

// A fake acceptor that answers the Hello with a proof made under another secret: the caller
// closes without writing anything after its Hello.
TEST(TcpPeerTransport, AcceptorWithTheWrongSecretGetsNothingButTheHello) {
  asio::io_context io;
  tcp::acceptor listener(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  TestNode a(1, {2});
  a.point_at(2, listener.local_endpoint().port());
  ASSERT_TRUE(a.transport->send(2, make_envelope(1, 2, 0)));
  RawPeer fake(listener);
  const std::optional<rsmpb::PeerEnvelope> hello = fake.read_envelope();
  ASSERT_TRUE(hello.has_value() && hello->has_hello());
  EXPECT_EQ(hello->hello().nonce().size(), kHandshakeNonceBytes);
  const std::string nonce(kHandshakeNonceBytes, 'n');
  rsmpb::PeerEnvelope reply;
  reply.set_from(2);
  reply.set_to(1);
  reply.mutable_hello_reply()->set_from(2);
  reply.mutable_hello_reply()->set_nonce(nonce);
  reply.mutable_hello_reply()->set_proof(handshake_proof(HandshakeRole::kAcceptor, other_secret(),
                                                         {.cluster = kCluster,
                                                          .caller = 1,
                                                          .acceptor = 2,
                                                          .caller_nonce = hello->hello().nonce(),
                                                          .acceptor_nonce = nonce}));
  fake.write_envelope(reply);
  std::string after_hello;
  EXPECT_TRUE(fake.closed_by_peer(&after_hello));
  EXPECT_EQ(after_hello, "");
  EXPECT_GE(a.transport->counters().rejected_hellos, 1U);
  EXPECT_EQ(a.transport->counters().frames_sent, 0U);
}

TEST(TcpPeerTransport, PeersWithoutASecretNeedInsecurePeers) {
  Inbox inbox;
  TcpPeerTransport no_secret(make_config(1, {2}, {.secret = ""}), inbox.handler());
  EXPECT_EQ(no_secret.start().code(), Code::kInvalidArgument);
  TcpPeerTransport short_secret(make_config(1, {2}, {.secret = good_secret().substr(1)}),
                                inbox.handler());
  EXPECT_EQ(short_secret.start().code(), Code::kInvalidArgument);
  TcpPeerTransport alone(make_config(1, {}, {.secret = ""}), inbox.handler());
  EXPECT_TRUE(alone.start().ok());
}

TEST(TcpPeerTransport, InsecurePeersDeliverToEachOtherButNotToASecuredNode) {
  TestNode a(1, {2, 3}, {.secret = "", .insecure_peers = true});
  TestNode b(2, {1}, {.secret = "", .insecure_peers = true});
  TestNode c(3, {1});
  b.point_at(1, a);
  c.point_at(1, a);
  ASSERT_TRUE(b.transport->send(1, make_envelope(2, 1, 0)));
  ASSERT_TRUE(wait_until([&] { return a.inbox.size() == 1; }));
  ASSERT_TRUE(wait_until([&] {
    static_cast<void>(c.transport->send(1, make_envelope(3, 1, 0)));
    std::this_thread::sleep_for(milliseconds(5));
    return c.transport->counters().rejected_hellos >= 1;
  }));
  EXPECT_EQ(a.inbox.size(), 1U);
  EXPECT_EQ(a.inbox.snapshot()[0].from(), 2U);
}

TEST(TcpPeerTransport, TransportOfAnotherClusterIsNeverDelivered) {
  TestNode a(1, {2});
  TestNode stranger(2, {1}, {.cluster = "other-cluster"});
  stranger.point_at(1, a);
  ASSERT_TRUE(stranger.transport->send(1, make_envelope(2, 1, 0)));
  ASSERT_TRUE(wait_until([&] { return a.transport->counters().rejected_hellos >= 1; }));
  EXPECT_EQ(a.inbox.size(), 0U);
}

TEST(TcpPeerTransport, StopIsIdempotentAndRefusesLaterSends) {
  TestNode a(1, {2});
  a.transport->stop();
  a.transport->stop();
  EXPECT_FALSE(a.transport->send(2, make_envelope(1, 2, 0)));
}

}  // namespace
}  // namespace herald::server
