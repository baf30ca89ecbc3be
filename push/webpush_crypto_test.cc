#include "push/webpush_crypto.h"

#include <gtest/gtest.h>

#include "base/encoding.h"
#include "crypto/base64url.h"

namespace herald::push {
namespace {

std::string unb64(std::string_view text) {
  Result<std::string> bytes = crypto::base64url_decode(text);
  EXPECT_TRUE(bytes.ok()) << text;
  return bytes.ok() ? *bytes : std::string();
}

// RFC 8291 Appendix A.
constexpr std::string_view kRfcPlaintext = "When I grow up, I want to be a watermelon";
constexpr std::string_view kRfcAsPrivate = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw";
constexpr std::string_view kRfcUaPrivate = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94";
constexpr std::string_view kRfcUaPublic =
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
constexpr std::string_view kRfcSalt = "DGv6ra1nlYgDCS1FRnbzlw";
constexpr std::string_view kRfcAuth = "BTBZMqHH6r4Tts7J_aSIgg";
constexpr std::string_view kRfcBody =
    "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_"
    "c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6Tl"
    "zAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_"
    "Qulcy4a-"
    "fN";

// A user agent: its key pair and auth secret, and the subscription keys it hands out.
struct UserAgent {
  crypto::PrivateKey key;
  std::string auth;
  WebPushSubscriptionKeys subscription;
};

UserAgent rfc_user_agent() {
  Result<crypto::PrivateKey> key = crypto::PrivateKey::from_p256_scalar(unb64(kRfcUaPrivate));
  EXPECT_TRUE(key.ok());
  Result<WebPushSubscriptionKeys> subscription = parse_subscription_keys(kRfcUaPublic, kRfcAuth);
  EXPECT_TRUE(subscription.ok()) << subscription.status().to_string();
  return {std::move(key).value(), unb64(kRfcAuth), std::move(subscription).value()};
}

UserAgent fresh_user_agent() {
  Result<crypto::PrivateKey> key = crypto::PrivateKey::generate_p256();
  EXPECT_TRUE(key.ok());
  const std::string point = *key->public_key()->p256_point();
  const std::string auth = "0123456789abcdef";
  Result<WebPushSubscriptionKeys> subscription =
      parse_subscription_keys(crypto::base64url_encode(point), crypto::base64url_encode(auth));
  EXPECT_TRUE(subscription.ok());
  return {std::move(key).value(), auth, std::move(subscription).value()};
}

WebPushSenderSecrets rfc_sender_secrets() {
  Result<crypto::PrivateKey> key = crypto::PrivateKey::from_p256_scalar(unb64(kRfcAsPrivate));
  EXPECT_TRUE(key.ok());
  return {std::move(key).value(), unb64(kRfcSalt)};
}

WebPushSenderSecrets fresh_secrets() {
  Result<WebPushSenderSecrets> secrets = fresh_sender_secrets();
  EXPECT_TRUE(secrets.ok());
  return std::move(secrets).value();
}

// A body for `plaintext` to a fresh user agent, and that user agent.
std::pair<std::string, UserAgent> fresh_body(std::string_view plaintext) {
  UserAgent ua = fresh_user_agent();
  Result<std::string> body = encrypt_webpush(ua.subscription, plaintext, fresh_secrets());
  EXPECT_TRUE(body.ok()) << body.status().to_string();
  return {body.ok() ? *body : std::string(), std::move(ua)};
}

// decrypt_webpush's error for `body` sent to `ua`, which must be kInvalidArgument.
std::string rejection(const std::string& body, const UserAgent& ua) {
  const Result<std::string> plaintext = decrypt_webpush(body, ua.key, ua.auth);
  EXPECT_FALSE(plaintext.ok());
  EXPECT_EQ(plaintext.status().code(), Code::kInvalidArgument);
  return plaintext.status().message();
}

TEST(WebPushCrypto, Rfc8291AppendixAIsReproducedByteForByte) {
  const UserAgent ua = rfc_user_agent();
  const Result<std::string> body =
      encrypt_webpush(ua.subscription, kRfcPlaintext, rfc_sender_secrets());
  ASSERT_TRUE(body.ok()) << body.status().to_string();
  EXPECT_EQ(crypto::base64url_encode(*body), kRfcBody);
}

TEST(WebPushCrypto, Rfc8291AppendixABodyDecrypts) {
  const UserAgent ua = rfc_user_agent();
  const Result<std::string> plaintext = decrypt_webpush(unb64(kRfcBody), ua.key, ua.auth);
  ASSERT_TRUE(plaintext.ok()) << plaintext.status().to_string();
  EXPECT_EQ(*plaintext, kRfcPlaintext);
}

TEST(WebPushCrypto, FreshKeysRoundTripEverySize) {
  for (const std::size_t size :
       {std::size_t{0}, std::size_t{1}, std::size_t{200}, kWebPushMaxPlaintextBytes}) {
    const std::string plaintext(size, 'p');
    const auto [body, ua] = fresh_body(plaintext);
    EXPECT_EQ(body.size(), kWebPushHeaderBytes + size + 1 + kWebPushTagBytes);
    const Result<std::string> decrypted = decrypt_webpush(body, ua.key, ua.auth);
    ASSERT_TRUE(decrypted.ok()) << size << ": " << decrypted.status().to_string();
    EXPECT_EQ(*decrypted, plaintext);
  }
}

TEST(WebPushCrypto, TheLargestPlaintextMakesAMaximalBody) {
  const auto [body, ua] = fresh_body(std::string(kWebPushMaxPlaintextBytes, 'x'));
  EXPECT_EQ(body.size(), kWebPushMaxBodyBytes);
  const UserAgent other = fresh_user_agent();
  const Result<std::string> over = encrypt_webpush(
      other.subscription, std::string(kWebPushMaxPlaintextBytes + 1, 'x'), fresh_secrets());
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.status().code(), Code::kResourceExhausted);
}

TEST(WebPushCrypto, HeaderCarriesSaltRecordSizeAndSenderKey) {
  const UserAgent ua = fresh_user_agent();
  const WebPushSenderSecrets secrets = fresh_secrets();
  const Result<std::string> body = encrypt_webpush(ua.subscription, "hello", secrets);
  ASSERT_TRUE(body.ok());
  EXPECT_EQ(body->substr(0, kWebPushSaltBytes), secrets.salt);
  EXPECT_EQ(get_fixed32_be(body->substr(kWebPushSaltBytes)), kWebPushRecordSizeBytes);
  EXPECT_EQ(static_cast<unsigned char>((*body)[kWebPushSaltBytes + 4]), crypto::kP256PointBytes);
  EXPECT_EQ(body->substr(kWebPushSaltBytes + 5, crypto::kP256PointBytes),
            *secrets.ephemeral.public_key()->p256_point());
}

TEST(WebPushCrypto, FreshSecretsNeverRepeat) {
  const UserAgent ua = fresh_user_agent();
  const Result<std::string> a = encrypt_webpush(ua.subscription, "same", fresh_secrets());
  const Result<std::string> b = encrypt_webpush(ua.subscription, "same", fresh_secrets());
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->substr(0, kWebPushSaltBytes), b->substr(0, kWebPushSaltBytes));
  EXPECT_NE(a->substr(kWebPushSaltBytes + 5, crypto::kP256PointBytes),
            b->substr(kWebPushSaltBytes + 5, crypto::kP256PointBytes));
}

TEST(WebPushCrypto, BadTagIsRefused) {
  auto [body, ua] = fresh_body("hello");
  body.back() = static_cast<char>(body.back() ^ 1);
  EXPECT_NE(rejection(body, ua).find("authentication tag"), std::string::npos);
}

TEST(WebPushCrypto, AlteredCiphertextOrSaltIsRefused) {
  const auto [body, ua] = fresh_body("hello");
  std::string ciphertext = body;
  ciphertext[kWebPushHeaderBytes] = static_cast<char>(ciphertext[kWebPushHeaderBytes] ^ 1);
  EXPECT_NE(rejection(ciphertext, ua).find("authentication tag"), std::string::npos);
  std::string salt = body;
  salt[0] = static_cast<char>(salt[0] ^ 1);
  EXPECT_NE(rejection(salt, ua).find("authentication tag"), std::string::npos);
}

TEST(WebPushCrypto, WrongReceiverKeyOrAuthSecretIsRefused) {
  const auto [body, ua] = fresh_body("hello");
  const UserAgent other = fresh_user_agent();
  EXPECT_FALSE(decrypt_webpush(body, other.key, ua.auth).ok());
  EXPECT_FALSE(decrypt_webpush(body, ua.key, "fedcba9876543210").ok());
  EXPECT_FALSE(decrypt_webpush(body, ua.key, "short").ok());
}

TEST(WebPushCrypto, RecordWithoutTheFinalDelimiterIsRefused) {
  const UserAgent ua = fresh_user_agent();
  const auto body_of = [&](std::string_view record) {
    Result<std::string> body = encrypt_webpush_record(ua.subscription, record, fresh_secrets());
    EXPECT_TRUE(body.ok());
    return body.ok() ? *body : std::string();
  };
  EXPECT_NE(rejection(body_of(std::string("hello\x03", 6)), ua).find("0x03"), std::string::npos);
  EXPECT_NE(rejection(body_of(std::string("hello\x01\0\0", 8)), ua).find("not the last"),
            std::string::npos);
  EXPECT_NE(rejection(body_of(std::string(4, '\0')), ua).find("no padding delimiter"),
            std::string::npos);
  EXPECT_NE(rejection(body_of(""), ua).find("truncated"), std::string::npos);
  // Zeros after the delimiter are padding (RFC 8188 section 2), not content.
  const Result<std::string> padded =
      decrypt_webpush(body_of(std::string("hello\x02\0\0\0", 9)), ua.key, ua.auth);
  ASSERT_TRUE(padded.ok()) << padded.status().to_string();
  EXPECT_EQ(*padded, "hello");
}

TEST(WebPushCrypto, TruncatedHeaderIsRefused) {
  const auto [body, ua] = fresh_body("hello");
  for (const std::size_t size :
       {std::size_t{0}, std::size_t{20}, std::size_t{21}, kWebPushHeaderBytes - 1}) {
    EXPECT_NE(rejection(body.substr(0, size), ua).find("header is truncated"), std::string::npos)
        << size;
  }
  EXPECT_NE(rejection(body.substr(0, kWebPushHeaderBytes + kWebPushTagBytes), ua).find("truncated"),
            std::string::npos);
}

TEST(WebPushCrypto, RecordLongerThanTheDeclaredRecordSizeIsRefused) {
  const auto [body, ua] = fresh_body(std::string(100, 'x'));
  std::string small = body.substr(0, kWebPushSaltBytes);
  put_fixed32_be(small, kWebPushMinRecordSizeBytes);
  small.append(body.substr(kWebPushSaltBytes + 4));
  EXPECT_NE(rejection(small, ua).find("more than the declared record size"), std::string::npos);
  std::string invalid = body.substr(0, kWebPushSaltBytes);
  put_fixed32_be(invalid, kWebPushMinRecordSizeBytes - 1);
  invalid.append(body.substr(kWebPushSaltBytes + 4));
  EXPECT_NE(rejection(invalid, ua).find("below the minimum"), std::string::npos);
}

TEST(WebPushCrypto, KeyIdThatIsNotASenderKeyIsRefused) {
  const auto [body, ua] = fresh_body("hello");
  std::string short_id = body;
  short_id[kWebPushSaltBytes + 4] = static_cast<char>(crypto::kP256PointBytes - 1);
  EXPECT_NE(rejection(short_id, ua).find("key id has 64 bytes"), std::string::npos);
  std::string off_curve = body;
  off_curve[kWebPushHeaderBytes - 1] = static_cast<char>(off_curve[kWebPushHeaderBytes - 1] ^ 1);
  EXPECT_NE(rejection(off_curve, ua).find("key id"), std::string::npos);
}

TEST(WebPushCrypto, OversizeBodyIsRefused) {
  const UserAgent ua = fresh_user_agent();
  const Result<std::string> plaintext =
      decrypt_webpush(std::string(kWebPushMaxBodyBytes + 1, 'b'), ua.key, ua.auth);
  ASSERT_FALSE(plaintext.ok());
  EXPECT_EQ(plaintext.status().code(), Code::kResourceExhausted);
}

TEST(WebPushCrypto, MalformedSubscriptionKeysAreRefused) {
  const std::string point = unb64(kRfcUaPublic);
  EXPECT_FALSE(parse_subscription_keys(kRfcUaPublic.substr(1), kRfcAuth).ok());
  EXPECT_FALSE(parse_subscription_keys(kRfcUaPublic, kRfcAuth.substr(0, 20)).ok());
  // Standard base64 with padding, as some clients send it, is not base64url.
  EXPECT_FALSE(parse_subscription_keys(kRfcUaPublic, "BTBZMqHH6r4Tts7J/aSIgg==").ok());
  const std::string compressed = "\x03" + point.substr(1, crypto::kP256CoordinateBytes);
  const Result<WebPushSubscriptionKeys> bad =
      parse_subscription_keys(crypto::base64url_encode(compressed), kRfcAuth);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message().rfind("p256dh: ", 0), 0U);
  const Result<WebPushSubscriptionKeys> long_auth =
      parse_subscription_keys(kRfcUaPublic, crypto::base64url_encode(std::string(32, 'a')));
  ASSERT_FALSE(long_auth.ok());
  EXPECT_NE(long_auth.status().message().find("32 bytes"), std::string::npos);
}

TEST(WebPushCrypto, MalformedSenderSecretsAreRefused) {
  const UserAgent ua = fresh_user_agent();
  WebPushSenderSecrets secrets = fresh_secrets();
  secrets.salt.pop_back();
  EXPECT_EQ(encrypt_webpush(ua.subscription, "hello", secrets).status().code(),
            Code::kInvalidArgument);
}

}  // namespace
}  // namespace herald::push
