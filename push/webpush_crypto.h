// Web Push message encryption: RFC 8291 over the "aes128gcm" content coding of RFC 8188.
//
// A browser's push subscription carries two keys: p256dh, the user agent's P-256 public key, and
// auth, a 16-byte secret. To send, the application server makes an ephemeral P-256 key and a
// random 16-byte salt, agrees a secret with p256dh (ECDH), derives a content key and nonce with
// HKDF-SHA256 (RFC 8291 section 3.4) and sends one AES-128-GCM record:
//
//   body   = salt(16) || rs(4, big-endian) || idlen(1) = 65 || keyid = sender public key(65)
//            || AES-128-GCM(plaintext || 0x02 || 0x00*) || tag(16)
//
// The layout and bounds are in docs/push.md. Randomness enters only through
// WebPushSenderSecrets, so a fixed key and salt reproduce a body byte for byte (the RFC 8291
// Appendix A example is a test). decrypt_webpush() is the user agent's side, for the Web Push
// test double.
//
// Errors: kInvalidArgument for malformed keys or bodies (each message says which check failed),
// kResourceExhausted when a named bound is exceeded, kIOError when OpenSSL fails.
// Thread-safety: pure functions over immutable keys.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"
#include "crypto/keys.h"

namespace herald::push {

// Size of a subscription's auth secret, in bytes (RFC 8291 section 3.2).
inline constexpr std::size_t kWebPushAuthSecretBytes = 16;
// Size of the salt in the aes128gcm header, in bytes (RFC 8188 section 2.1).
inline constexpr std::size_t kWebPushSaltBytes = 16;
// Size of the AES-128-GCM authentication tag closing the record, in bytes.
inline constexpr std::size_t kWebPushTagBytes = 16;
// Size of the aes128gcm header with the sender's public key as key id, in bytes: 86.
inline constexpr std::size_t kWebPushHeaderBytes =
    kWebPushSaltBytes + sizeof(std::uint32_t) + 1 + crypto::kP256PointBytes;
// Largest body a push service must accept, in bytes (RFC 8030 section 7.2).
inline constexpr std::size_t kWebPushMaxBodyBytes = 4096;
// Largest plaintext that fits one record in kWebPushMaxBodyBytes, in bytes: 3993.
inline constexpr std::size_t kWebPushMaxPlaintextBytes =
    kWebPushMaxBodyBytes - kWebPushHeaderBytes - 1 - kWebPushTagBytes;
// The record size Herald writes into the header, in bytes; every record Herald sends fits it.
inline constexpr std::uint32_t kWebPushRecordSizeBytes = 4096;
// Smallest record size a header may declare, in bytes (RFC 8188 section 2.1: smaller values are
// invalid).
inline constexpr std::uint32_t kWebPushMinRecordSizeBytes = 18;

// The keys of one subscription, decoded and checked.
struct WebPushSubscriptionKeys {
  crypto::PublicKey ua_public;  // p256dh
  std::string ua_point;         // p256dh as an uncompressed point (kP256PointBytes)
  std::string auth_secret;      // kWebPushAuthSecretBytes
};

// Decodes a subscription's "p256dh" and "auth" (base64url, as PushSubscription.toJSON() gives
// them). kInvalidArgument unless p256dh is an uncompressed point on P-256 and auth has 16 bytes.
[[nodiscard]] Result<WebPushSubscriptionKeys> parse_subscription_keys(
    std::string_view p256dh_b64url, std::string_view auth_b64url);

// The sender's one-time values: an ephemeral P-256 key and a salt of kWebPushSaltBytes. Never
// reuse them for a second message.
struct WebPushSenderSecrets {
  crypto::PrivateKey ephemeral;
  std::string salt;
};

// Fresh secrets from OpenSSL's CSPRNG; kIOError if it fails.
[[nodiscard]] Result<WebPushSenderSecrets> fresh_sender_secrets();

// Returns the aes128gcm body carrying `plaintext` for the subscription. kResourceExhausted when
// plaintext is longer than kWebPushMaxPlaintextBytes; kInvalidArgument when the secrets are
// malformed (the ephemeral key not P-256, the salt not kWebPushSaltBytes).
[[nodiscard]] Result<std::string> encrypt_webpush(const WebPushSubscriptionKeys& subscription,
                                                  std::string_view plaintext,
                                                  const WebPushSenderSecrets& secrets);

// Like encrypt_webpush(), but seals `record` exactly as given: the caller has appended the
// delimiter and any padding. For test doubles that must build records a sender never sends;
// the bounds are the same (record at most kWebPushMaxPlaintextBytes + 1 bytes).
[[nodiscard]] Result<std::string> encrypt_webpush_record(
    const WebPushSubscriptionKeys& subscription, std::string_view record,
    const WebPushSenderSecrets& secrets);

// The user agent's side: returns the plaintext of `body`, given the subscription's private key
// (P-256) and auth secret. Refuses, with kInvalidArgument naming the reason, a truncated header,
// a key id that is not a 65-byte P-256 point, a declared record size below
// kWebPushMinRecordSizeBytes, a record longer than the declared record size (RFC 8291 sends
// exactly one), a truncated record, a tag that does not authenticate, and padding without the
// final-record delimiter 0x02; kResourceExhausted for a body over kWebPushMaxBodyBytes.
[[nodiscard]] Result<std::string> decrypt_webpush(std::string_view body,
                                                  const crypto::PrivateKey& ua_private,
                                                  std::string_view auth_secret);

}  // namespace herald::push
