// Peer authentication: the parts of the peer handshake (docs/protocol-peer.md) that do no I/O.
//
// Both ends of a peer connection hold the same cluster secret. The caller sends a fresh nonce in
// its Hello; the acceptor answers with a fresh nonce of its own and a proof; the caller checks it
// and answers with its own proof. A proof is HMAC-SHA256 keyed by the secret over the transcript
// (the role's label, the cluster name, both node ids, both nonces), so it
//   - shows knowledge of the secret without revealing it;
//   - cannot be replayed on another connection: the other end's nonce is new each time;
//   - cannot be reflected: the two roles use distinct labels;
//   - binds the claimed ids: a proof for caller 2 says nothing about caller 3.
//
// Thread-safety: every function is pure or uses OpenSSL's thread-safe generator.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "base/status.h"
#include "raft/types.h"

namespace herald::server {

// Shortest cluster secret accepted, in bytes (256 bits when the bytes are random).
inline constexpr std::size_t kMinClusterSecretBytes = 32;
// Size of each side's handshake nonce, in bytes.
inline constexpr std::size_t kHandshakeNonceBytes = 32;
// Size of a handshake proof (an HMAC-SHA256 tag), in bytes.
inline constexpr std::size_t kHandshakeProofBytes = 32;

// Whose proof: the acceptor's (in HelloReply) or the caller's (in HelloProof).
enum class HandshakeRole { kAcceptor, kCaller };

// What both proofs of one connection cover. The views must outlive the call.
struct HandshakeTranscript {
  std::string_view cluster;
  raft::NodeId caller = raft::kNoNode;
  raft::NodeId acceptor = raft::kNoNode;
  std::string_view caller_nonce;
  std::string_view acceptor_nonce;
};

// Returns kInvalidArgument, naming the sizes, when `secret` is shorter than
// kMinClusterSecretBytes.
[[nodiscard]] Status check_cluster_secret(std::string_view secret);

// Returns kHandshakeNonceBytes bytes from OpenSSL's CSPRNG; kIOError if it fails.
[[nodiscard]] Result<std::string> make_handshake_nonce();

// Returns the kHandshakeProofBytes proof of `role` over `transcript`, keyed by `secret` (which
// may be empty: the insecure mode, where proofs only check that both ends agree on the rest).
[[nodiscard]] std::string handshake_proof(HandshakeRole role, std::string_view secret,
                                          const HandshakeTranscript& transcript);

// True when `received` equals `expected`. The time taken does not depend on where they differ
// (CRYPTO_memcmp), only on their lengths; a length mismatch is false.
[[nodiscard]] bool proof_matches(std::string_view expected, std::string_view received);

}  // namespace herald::server
