// The fixed handshake of the peer_frame fuzz target and of its seed corpus: one caller, one
// acceptor, fixed nonces and a fixed cluster secret, so that seeds can carry valid proofs.
#pragma once

#include <string_view>

#include "raft/types.h"
#include "server/peer_auth.h"

namespace herald::fuzz::peer {

inline constexpr std::string_view kCluster = "fuzz";
inline constexpr raft::NodeId kCaller = 2;
inline constexpr raft::NodeId kAcceptor = 1;
inline constexpr raft::NodeId kOtherPeer = 3;
// kMinClusterSecretBytes long.
inline constexpr std::string_view kSecret = "0123456789abcdef0123456789abcdef";
// kHandshakeNonceBytes each.
inline constexpr std::string_view kCallerNonce = "CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC";
inline constexpr std::string_view kAcceptorNonce = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
static_assert(kSecret.size() == server::kMinClusterSecretBytes);
static_assert(kCallerNonce.size() == server::kHandshakeNonceBytes);
static_assert(kAcceptorNonce.size() == server::kHandshakeNonceBytes);

// The acceptor knows the caller and one other peer.
inline bool is_peer(raft::NodeId id) {
  return id == kCaller || id == kOtherPeer;
}

inline server::HandshakeTranscript transcript() {
  return {.cluster = kCluster,
          .caller = kCaller,
          .acceptor = kAcceptor,
          .caller_nonce = kCallerNonce,
          .acceptor_nonce = kAcceptorNonce};
}

}  // namespace herald::fuzz::peer
