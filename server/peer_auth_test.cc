#include "server/peer_auth.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace herald::server {
namespace {

// A string of `bytes` copies of `c` that lives until the end of the program.
const std::string& filled(std::size_t bytes, char c) {
  static std::map<std::pair<std::size_t, char>, std::string> strings;
  return strings.try_emplace({bytes, c}, bytes, c).first->second;
}

const std::string& secret() {
  return filled(kMinClusterSecretBytes, 's');
}

HandshakeTranscript base_transcript() {
  return {.cluster = "herald",
          .caller = 1,
          .acceptor = 2,
          .caller_nonce = filled(kHandshakeNonceBytes, 'c'),
          .acceptor_nonce = filled(kHandshakeNonceBytes, 'a')};
}

TEST(PeerAuth, SecretShorterThanTheMinimumIsRefused) {
  EXPECT_FALSE(check_cluster_secret(std::string(kMinClusterSecretBytes - 1, 'x')).ok());
  EXPECT_FALSE(check_cluster_secret("").ok());
  EXPECT_TRUE(check_cluster_secret(secret()).ok());
}

TEST(PeerAuth, NoncesHaveTheirSizeAndDoNotRepeat) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    Result<std::string> nonce = make_handshake_nonce();
    ASSERT_TRUE(nonce.ok()) << nonce.status().to_string();
    EXPECT_EQ(nonce->size(), kHandshakeNonceBytes);
    EXPECT_TRUE(seen.insert(*nonce).second);
  }
}

TEST(PeerAuth, ProofIsDeterministicAndSized) {
  const std::string proof = handshake_proof(HandshakeRole::kCaller, secret(), base_transcript());
  EXPECT_EQ(proof.size(), kHandshakeProofBytes);
  EXPECT_EQ(proof, handshake_proof(HandshakeRole::kCaller, secret(), base_transcript()));
}

// A proof must not be valid for the other role (reflection), another secret, or a transcript
// that differs in any field (replay, impersonation, another cluster).
TEST(PeerAuth, ProofDependsOnRoleSecretAndEveryTranscriptField) {
  const std::string proof = handshake_proof(HandshakeRole::kCaller, secret(), base_transcript());
  EXPECT_NE(proof, handshake_proof(HandshakeRole::kAcceptor, secret(), base_transcript()));
  EXPECT_NE(proof, handshake_proof(HandshakeRole::kCaller, secret() + "x", base_transcript()));
  EXPECT_NE(proof, handshake_proof(HandshakeRole::kCaller, "", base_transcript()));

  const std::string other_nonce(kHandshakeNonceBytes, 'z');
  std::vector<HandshakeTranscript> variants(5, base_transcript());
  variants[0].cluster = "herald2";
  variants[1].caller = 3;
  variants[2].acceptor = 3;
  variants[3].caller_nonce = other_nonce;
  variants[4].acceptor_nonce = other_nonce;
  for (const HandshakeTranscript& variant : variants) {
    EXPECT_NE(proof, handshake_proof(HandshakeRole::kCaller, secret(), variant));
  }
}

// Swapping the ids must change the proof: node 2 calling node 1 is not node 1 calling node 2.
TEST(PeerAuth, ProofDistinguishesSwappedIdsAndShiftedFields) {
  HandshakeTranscript swapped = base_transcript();
  std::swap(swapped.caller, swapped.acceptor);
  EXPECT_NE(handshake_proof(HandshakeRole::kCaller, secret(), base_transcript()),
            handshake_proof(HandshakeRole::kCaller, secret(), swapped));
  // The same bytes split differently between the nonces give another transcript.
  const std::string longer = filled(kHandshakeNonceBytes, 'c') + "a";
  const std::string shorter = filled(kHandshakeNonceBytes - 1, 'a');
  HandshakeTranscript shifted = base_transcript();
  shifted.caller_nonce = longer;
  shifted.acceptor_nonce = shorter;
  EXPECT_NE(handshake_proof(HandshakeRole::kCaller, secret(), base_transcript()),
            handshake_proof(HandshakeRole::kCaller, secret(), shifted));
}

TEST(PeerAuth, ProofMatchesOnlyTheSameBytes) {
  const std::string proof = handshake_proof(HandshakeRole::kCaller, secret(), base_transcript());
  EXPECT_TRUE(proof_matches(proof, proof));
  std::string flipped = proof;
  flipped.back() = static_cast<char>(flipped.back() ^ 1);
  EXPECT_FALSE(proof_matches(proof, flipped));
  EXPECT_FALSE(proof_matches(proof, proof.substr(1)));
  EXPECT_FALSE(proof_matches(proof, ""));
}

}  // namespace
}  // namespace herald::server
