// Fuzz target: the peer transport's inbound byte stream (server/peer_transport.h,
// docs/protocol-peer.md).
//
// Feeds the bytes as an acceptor reads them from one inbound connection: frames of
// [u32 BE length][u32 BE crc32c][PeerEnvelope], decoded with decode_peer_frame_header and
// decode_peer_frame_payload under the bound of each stage (kMaxHandshakeFrameBytes during the
// handshake, kMaxFrameBytes after), then checked as TcpPeerTransport does: check_hello for the
// first frame, check_hello_proof for the second, impersonation for the rest. Every decoded
// envelope is also checked as a caller would check a HelloReply (check_hello_reply). The nonces
// and the cluster secret are fixed, so the seed corpus carries valid proofs and the fuzzer can
// reach the authenticated stage. Node figures there are decoded as the node host decodes them
// (server/node_figures.h). Asserts: no crash, leak or undefined behaviour; decode errors are
// kCorruption, handshake refusals and malformed figures kInvalidArgument, each with a message, and
// figures that decode encode back to the same figures.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/assert.h"
#include "base/status.h"
#include "fuzz/fuzz_input.h"
#include "fuzz/peer_fixture.h"
#include "server/node_figures.h"
#include "server/peer_transport.h"

namespace {

namespace server = herald::server;
namespace fixture = herald::fuzz::peer;
using herald::Code;
using herald::Status;

enum class Stage { kAwaitHello, kAwaitProof, kAuthenticated };

void check_refusal(const Status& status) {
  HERALD_ASSERT(
      status.ok() || (status.code() == Code::kInvalidArgument && !status.message().empty()),
      "a handshake check refuses with kInvalidArgument and says why");
}

void check_figures(const herald::rsmpb::NodeFigures& message) {
  const herald::Result<server::NodeFigures> figures =
      server::decode_node_figures(message, fixture::kCaller);
  check_refusal(figures.status());
  if (figures.ok()) {
    const herald::Result<server::NodeFigures> again =
        server::decode_node_figures(server::encode_node_figures(*figures), fixture::kCaller);
    HERALD_ASSERT(again.ok() && *again == *figures, "decoded figures encode to the same figures");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  herald::fuzz::FuzzInput in(data, size);
  const server::HandshakeTranscript transcript = fixture::transcript();
  Stage stage = Stage::kAwaitHello;
  while (in.remaining_bytes() >= server::kPeerFrameHeaderBytes) {
    const server::PeerFrameHeader header =
        server::decode_peer_frame_header(in.bytes(server::kPeerFrameHeaderBytes));
    const std::uint32_t max_bytes =
        stage == Stage::kAuthenticated ? server::kMaxFrameBytes : server::kMaxHandshakeFrameBytes;
    if (header.payload_bytes > max_bytes || header.payload_bytes > in.remaining_bytes()) {
      return 0;  // oversize: the connection closes; short: the reader waits for more
    }
    const herald::Result<herald::rsmpb::PeerEnvelope> envelope =
        server::decode_peer_frame_payload(header, in.bytes(header.payload_bytes));
    if (!envelope.ok()) {
      HERALD_ASSERT(envelope.status().code() == Code::kCorruption,
                    "a frame that does not decode is kCorruption");
      return 0;  // bad frame: the connection closes
    }
    check_refusal(server::check_hello_reply(*envelope, fixture::kSecret, transcript));
    switch (stage) {
      case Stage::kAwaitHello: {
        const Status hello =
            server::check_hello(*envelope, fixture::kCluster, fixture::kAcceptor, fixture::is_peer);
        check_refusal(hello);
        if (!hello.ok()) return 0;
        stage = Stage::kAwaitProof;
        break;
      }
      case Stage::kAwaitProof: {
        const Status proof = server::check_hello_proof(*envelope, fixture::kSecret, transcript);
        check_refusal(proof);
        if (!proof.ok()) return 0;
        stage = Stage::kAuthenticated;
        break;
      }
      case Stage::kAuthenticated:
        static_cast<void>(server::impersonation(*envelope, fixture::kCaller, fixture::kAcceptor));
        if (envelope->has_figures()) check_figures(envelope->figures());
        break;
    }
  }
  return 0;
}
