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
#include <thread>
#include <vector>

#include "base/encoding.h"

namespace herald::server {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using std::chrono::milliseconds;

constexpr milliseconds kWaitTimeout{10'000};
constexpr char kCluster[] = "test-cluster";

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

// A transport with its inbox. Peers start with placeholder addresses; connect() fills them in.
struct TestNode {
  TestNode(raft::NodeId id, const std::vector<raft::NodeId>& peer_ids,
           std::string cluster = kCluster, std::string listen = "127.0.0.1:0") {
    PeerTransportConfig config;
    config.self_id = id;
    config.cluster = std::move(cluster);
    config.listen = std::move(listen);
    config.rng_seed = id;
    for (raft::NodeId peer : peer_ids) {
      config.peers[peer] = "127.0.0.1:1";
    }
    transport = std::make_unique<TcpPeerTransport>(std::move(config), inbox.handler());
    const Status started = transport->start();
    EXPECT_TRUE(started.ok()) << started.to_string();
  }
  void point_at(raft::NodeId peer, const TestNode& other) {
    const Status status =
        transport->set_peer_address(peer, loopback(other.transport->listen_port()));
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
}

TEST(TcpPeerTransport, ReconnectsAfterReceiverRestarts) {
  TestNode a(1, {2});
  auto b = std::make_unique<TestNode>(2, std::vector<raft::NodeId>{1});
  a.point_at(2, *b);
  ASSERT_TRUE(a.transport->send(2, make_envelope(1, 2, 0)));
  ASSERT_TRUE(wait_until([&] { return b->inbox.size() == 1; }));

  const std::uint16_t port = b->transport->listen_port();
  b.reset();
  b = std::make_unique<TestNode>(2, std::vector<raft::NodeId>{1}, kCluster, loopback(port));
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

// A raw client that speaks (or breaks) the frame format.
class RawPeer {
 public:
  explicit RawPeer(std::uint16_t port) : socket_(io_) {
    socket_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  }
  void write(const std::string& bytes) { asio::write(socket_, asio::buffer(bytes)); }
  void write_frame(const std::string& payload) {
    std::string frame;
    put_fixed32_be(frame, static_cast<std::uint32_t>(payload.size()));
    put_fixed32_be(frame, crc32c(payload));
    write(frame + payload);
  }
  void write_hello(raft::NodeId from, const std::string& cluster) {
    rsmpb::PeerEnvelope hello;
    hello.set_from(from);
    hello.mutable_hello()->set_from(from);
    hello.mutable_hello()->set_cluster(cluster);
    write_frame(hello.SerializeAsString());
  }
  // True when the transport closes the connection within kWaitTimeout.
  bool closed_by_peer() {
    std::array<char, 256> buffer{};
    bool closed = false;
    std::function<void()> read_more = [&] {
      socket_.async_read_some(asio::buffer(buffer), [&](const auto& ec, std::size_t) {
        if (ec) {
          closed = true;
        } else {
          read_more();
        }
      });
    };
    read_more();
    io_.run_for(kWaitTimeout);
    return closed;
  }

 private:
  asio::io_context io_;
  tcp::socket socket_;
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
  raw.write_hello(3, kCluster);
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
  raw.write_hello(3, kCluster);
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
  raw.write_hello(3, kCluster);
  raw.write_frame("\xff\xff\xff\xff\xff");  // a valid CRC over bytes that are no protobuf
  EXPECT_TRUE(raw.closed_by_peer());
  EXPECT_EQ(a_.transport->counters().bad_frames, 1U);
  expect_good_peer_still_delivers();
}

TEST_F(BadInputTest, EnvelopeFromAnotherNodeThanTheHelloIsRejected) {
  RawPeer raw(port());
  raw.write_hello(3, kCluster);
  raw.write_frame(make_envelope(2, 1, 7).SerializeAsString());
  EXPECT_TRUE(raw.closed_by_peer());
  EXPECT_EQ(a_.transport->counters().bad_frames, 1U);
  expect_good_peer_still_delivers();
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

TEST(TcpPeerTransport, TransportOfAnotherClusterIsNeverDelivered) {
  TestNode a(1, {2});
  TestNode stranger(2, {1}, "other-cluster");
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
