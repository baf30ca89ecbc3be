// TcpPeerTransport: rsm::Transport over TCP, one outbound connection per peer.
//
// Wire format: docs/protocol-peer.md. Every frame is [u32 BE length][u32 BE crc32c][PeerEnvelope].
// A connection starts with a handshake in which both ends prove, with fresh nonces, that they
// hold the cluster secret (server/peer_auth.h): Hello (caller), HelloReply (acceptor), HelloProof
// (caller). The caller writes nothing else before the acceptor's proof checked, and the acceptor
// delivers nothing before the caller's proof checked. A failed handshake closes the connection
// and counts in rejected_hellos. On an authenticated connection an envelope that claims another
// sender than the authenticated node, or another recipient than this one, is dropped and counted
// in forged_frames. Both are logged at warn level, at most once per kWarnIntervalMs per kind.
//
// Ownership and threads: the transport owns one io thread, started by start() and joined by
// stop(). Inbound envelopes are handed to the inbound handler on that io thread; the handler must
// not block and must not call stop() (it may call send()). send(), queued_bytes() and counters()
// are thread-safe. After stop() returns no handler runs again.
//
// Delivery is best effort, in order per connection. Frames queued for a peer whose connection
// fails are dropped (raft retransmits; a snapshot stream that loses a chunk restarts), and the
// connection is re-established with exponential backoff and full jitter.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "base/status.h"
#include "raft/types.h"
#include "rsm/rsm.pb.h"
#include "rsm/transport.h"
#include "server/peer_auth.h"

namespace herald::server {

// Largest payload (serialized PeerEnvelope) a frame may carry, in either direction.
inline constexpr std::uint32_t kMaxFrameBytes = 16U * 1024 * 1024;
// Bounds on what send() may queue for one peer, counting frames handed to the socket but not yet
// written. A send() that would exceed either bound is refused.
inline constexpr std::size_t kMaxQueuedFramesPerPeer = 8192;
inline constexpr std::uint64_t kMaxQueuedBytesPerPeer = 64ULL * 1024 * 1024;
// Reconnect backoff: attempt n waits uniform[0, min(kReconnectMaxMs, kReconnectInitialMs * 2^n)].
inline constexpr std::uint32_t kReconnectInitialMs = 10;
inline constexpr std::uint32_t kReconnectMaxMs = 1000;
// Default bound on resolving and connecting to a peer.
inline constexpr std::uint32_t kConnectTimeoutMs = 3000;
// Default bound on the whole handshake, from accept (or connect) to a checked proof; a
// connection that has not completed it by then is closed.
inline constexpr std::uint32_t kHelloTimeoutMs = 5000;
// Largest handshake frame (Hello, HelloReply, HelloProof) a transport reads, in bytes.
inline constexpr std::uint32_t kMaxHandshakeFrameBytes = 4096;
// Rate limit of the warnings about failed handshakes and about forged frames (each kind apart).
inline constexpr std::uint32_t kWarnIntervalMs = 10'000;
// Inbound connections beyond this many are closed on accept.
inline constexpr std::size_t kMaxInboundConnections = 256;

// ---- The decoding side of the wire format, without I/O (the transport calls these on what it
// reads; exposed for tests and fuzzing). Thread-safety: pure.

// Every frame starts with [u32 BE payload length][u32 BE crc32c(payload)].
inline constexpr std::size_t kPeerFrameHeaderBytes = 8;

struct PeerFrameHeader {
  std::uint32_t payload_bytes = 0;
  std::uint32_t payload_crc = 0;
};

// Precondition (asserted): header.size() == kPeerFrameHeaderBytes. The length is not checked
// here: the reader compares it with the bound of its stage (kMaxHandshakeFrameBytes before the
// handshake completed, kMaxFrameBytes after).
[[nodiscard]] PeerFrameHeader decode_peer_frame_header(std::string_view header);
// The envelope a frame's payload carries. Errors: kCorruption "CRC mismatch" when `payload` fails
// the header's checksum, kCorruption "unparsable payload" when it is not a PeerEnvelope.
[[nodiscard]] Result<rsmpb::PeerEnvelope> decode_peer_frame_payload(const PeerFrameHeader& header,
                                                                    std::string_view payload);

// The acceptor's check of the first frame of an inbound connection: OK when `envelope` is a Hello
// for `cluster` from a node `is_peer` knows, sent by that node to `self`, with a nonce of
// kHandshakeNonceBytes. kInvalidArgument saying what is wrong otherwise.
[[nodiscard]] Status check_hello(const rsmpb::PeerEnvelope& envelope, std::string_view cluster,
                                 raft::NodeId self,
                                 const std::function<bool(raft::NodeId)>& is_peer);
// The caller's check of the acceptor's answer to its Hello: OK when `envelope` is a HelloReply
// of node `transcript.acceptor` to `transcript.caller` with a nonce of kHandshakeNonceBytes whose
// proof checks against `secret` and the transcript completed with that nonce (the transcript's
// acceptor_nonce is ignored). kInvalidArgument saying what is wrong otherwise.
[[nodiscard]] Status check_hello_reply(const rsmpb::PeerEnvelope& envelope, std::string_view secret,
                                       const HandshakeTranscript& transcript);
// The acceptor's check of the caller's second frame: OK when `envelope` is a HelloProof whose
// proof checks against `secret` and `transcript`. kInvalidArgument saying what is wrong otherwise.
[[nodiscard]] Status check_hello_proof(const rsmpb::PeerEnvelope& envelope, std::string_view secret,
                                       const HandshakeTranscript& transcript);
// Why `envelope`, received on a connection authenticated as node `peer` by node `self`, speaks
// for another node than `peer` or to another node than `self`; empty when it does not. The ids
// inside the body (a raft message, the raft message closing a snapshot stream, a report, node
// figures) must agree with the envelope's.
[[nodiscard]] std::string impersonation(const rsmpb::PeerEnvelope& envelope, raft::NodeId peer,
                                        raft::NodeId self);

struct PeerTransportConfig {
  raft::NodeId self_id = raft::kNoNode;
  std::string cluster;                        // must match the Hello of every inbound connection
  std::string listen = "127.0.0.1:0";         // host:port; port 0 picks an ephemeral port
  std::map<raft::NodeId, std::string> peers;  // id -> "host:port", not including self
  std::uint64_t rng_seed = 1;                 // seeds the reconnect jitter
  std::uint32_t connect_timeout_ms = kConnectTimeoutMs;
  std::uint32_t handshake_timeout_ms = kHelloTimeoutMs;
  // The secret every node of the cluster holds; both ends of a connection prove it. At least
  // kMinClusterSecretBytes. Empty is allowed when there are no peers, or with insecure_peers.
  std::string cluster_secret;
  // With an empty secret, run the handshake anyway (keyed by the empty string): peers are then
  // identified by cluster name and id but not authenticated. Never set it in production.
  bool insecure_peers = false;
};

// Monotonic counters, readable from any thread.
struct PeerTransportCounters {
  std::uint64_t frames_sent = 0;      // frames fully written to a socket (Hello not counted)
  std::uint64_t frames_received = 0;  // frames delivered to the inbound handler
  std::uint64_t frames_dropped = 0;   // refused by send() or lost with a failed connection
  std::uint64_t bad_frames = 0;       // oversize, bad CRC, unparsable or out-of-protocol frames
  // Failed handshakes on either end: wrong cluster, unknown id, a proof that does not check
  // (different secrets, a replayed transcript), or no complete handshake in time.
  std::uint64_t rejected_hellos = 0;
  // Envelopes on an authenticated connection that named another sender than the authenticated
  // node or another recipient than this one; dropped, the connection stays open.
  std::uint64_t forged_frames = 0;
  std::uint64_t reconnects = 0;  // connection attempts after a failure
  std::uint64_t connections_accepted = 0;
};

class TcpPeerTransport final : public rsm::Transport {
 public:
  using InboundHandler = std::function<void(rsmpb::PeerEnvelope&&)>;

  // Precondition: config.self_id != kNoNode and is not a key of config.peers; handler is set.
  TcpPeerTransport(PeerTransportConfig config, InboundHandler on_inbound);
  // Calls stop().
  ~TcpPeerTransport() override;
  TcpPeerTransport(const TcpPeerTransport&) = delete;
  TcpPeerTransport& operator=(const TcpPeerTransport&) = delete;

  // Validates the endpoints and the secret, binds the listener and starts the io thread. Call at
  // most once. Errors: kInvalidArgument for a malformed endpoint, a secret shorter than
  // kMinClusterSecretBytes, or peers without a secret and without insecure_peers; kIOError when
  // binding fails.
  [[nodiscard]] Status start();
  // Closes the listener and every connection, cancels timers and joins the io thread. Idempotent;
  // the transport cannot be started again. Must not be called from the inbound handler.
  void stop();

  // The bound listening port (useful with port 0). Precondition: start() succeeded.
  [[nodiscard]] std::uint16_t listen_port() const;

  // Changes where peer `id` is reached ("host:port"); used from the next connection attempt on,
  // the current connection is kept. Thread-safe. Errors: kNotFound for an id not configured as a
  // peer, kInvalidArgument for a malformed address.
  [[nodiscard]] Status set_peer_address(raft::NodeId id, std::string address);
  // Adds peer `id` at `address` ("host:port"), or changes its address when it is known already:
  // a member added to the cluster while the transport runs. From then on send() reaches it and
  // its inbound connections are accepted. Thread-safe. Errors: kInvalidArgument for this node's
  // own id, id 0 or a malformed address.
  [[nodiscard]] Status add_peer(raft::NodeId id, std::string address);

  // Queues `envelope` for `to`. Returns false, dropping it, when `to` is unknown, its queue is at
  // a bound, the envelope exceeds kMaxFrameBytes, or the transport is not running.
  // Precondition: envelope.from() == self id, envelope.to() == to, and the body is set and is not
  // a handshake message.
  bool send(raft::NodeId to, const rsmpb::PeerEnvelope& envelope) override;
  [[nodiscard]] std::uint64_t queued_bytes(raft::NodeId to) const override;

  [[nodiscard]] PeerTransportCounters counters() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace herald::server
