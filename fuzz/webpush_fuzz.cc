// Fuzz target: what Herald decodes of Web Push (push/webpush.h, push/webpush_crypto.h;
// docs/push.md, "Web Push"): a subscription token as a device registers it, and an aes128gcm
// body as the browser's side (the test double) decrypts it.
//
// The input is fed whole to both:
//   parse_subscription(input): when it accepts, the endpoint is https, within its bound, and a
//     message encrypts for the subscription's keys;
//   decrypt_webpush(input) with the RFC 8291 Appendix A user agent's key and auth secret: when it
//     accepts, the plaintext fits one record.
// Asserts: no crash, leak or undefined behaviour, no failed HERALD_ASSERT; every refusal is
// kInvalidArgument (or kResourceExhausted for a body over its bound).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "base/assert.h"
#include "base/status.h"
#include "crypto/keys.h"
#include "fuzz/push_fixture.h"
#include "push/vapid.h"
#include "push/webpush.h"
#include "push/webpush_crypto.h"

namespace {

namespace vectors = herald::fuzz::push_vectors;
using herald::Code;
using herald::crypto::PrivateKey;

const PrivateKey& ua_private() {
  static const PrivateKey key = [] {
    herald::Result<PrivateKey> k =
        PrivateKey::from_p256_scalar(vectors::unb64(vectors::kUaPrivate));
    HERALD_ASSERT(k.ok(), "the RFC 8291 user agent key loads");
    return std::move(k).value();
  }();
  return key;
}

const herald::push::WebPushSenderSecrets& sender_secrets() {
  static const herald::push::WebPushSenderSecrets secrets = [] {
    herald::Result<PrivateKey> k =
        PrivateKey::from_p256_scalar(vectors::unb64(vectors::kAsPrivate));
    HERALD_ASSERT(k.ok(), "the RFC 8291 sender key loads");
    return herald::push::WebPushSenderSecrets{std::move(k).value(), vectors::unb64(vectors::kSalt)};
  }();
  return secrets;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  const herald::Result<herald::push::WebPushSubscription> subscription =
      herald::push::parse_subscription(input);
  if (subscription.ok()) {
    HERALD_ASSERT(subscription->endpoint.size() <= herald::push::kMaxPushEndpointBytes,
                  "an accepted endpoint is within its bound");
    HERALD_ASSERT(subscription->origin.starts_with("https://"), "an accepted endpoint is https");
    const herald::Result<std::string> body =
        herald::push::encrypt_webpush(subscription->keys, "fuzz", sender_secrets());
    HERALD_ASSERT(body.ok(), "accepted keys encrypt");
  } else {
    HERALD_ASSERT(subscription.status().code() == Code::kInvalidArgument,
                  "a refused subscription is kInvalidArgument");
  }

  const herald::Result<std::string> plaintext =
      herald::push::decrypt_webpush(input, ua_private(), vectors::unb64(vectors::kAuth));
  if (plaintext.ok()) {
    HERALD_ASSERT(plaintext->size() <= herald::push::kWebPushMaxPlaintextBytes,
                  "a decrypted record fits one message");
  } else {
    const Code code = plaintext.status().code();
    HERALD_ASSERT(code == Code::kInvalidArgument || code == Code::kResourceExhausted,
                  "a refused body is kInvalidArgument or kResourceExhausted");
  }
  return 0;
}
