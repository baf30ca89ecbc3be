// Devices signing in with the app's own tokens on a real node ([signin], docs/protocol.md,
// "Signing in with the app's token"): a first sign-in creates the user and the device, refused
// tokens leave the connection able to retry, a token that expires ends the session unless it was
// refreshed, a removed device cannot sign in again, and revoking a user ends its sessions and
// refuses the tokens issued before. Nodes configured with an RS256 or ES256 public key file, or a
// JWKS file, sign in tokens the test signs with OpenSSL directly, and refuse tokens of other keys.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "client/admin_client.h"
#include "client/herald_client.h"
#include "crypto/base64url.h"
#include "crypto/jwt.h"
#include "crypto/openssl_util.h"
#include "crypto/test_keys.h"
#include "server/gateway.h"
#include "tests/e2e/cluster.h"
#include "tests/e2e/devices.h"
#include "tests/e2e/one_node.h"

namespace herald::e2e {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using client::HeraldClient;

constexpr char kSecret[] = "the-app-backends-sign-in-secret-0123456789";
constexpr char kAudience[] = "herald-e2e";
// A token's lifetime when the test does not wait for its end.
constexpr std::int64_t kLongLifetimeS = 3'600;

std::int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A token of the app's backend for (user, device), valid until `exp`.
std::string token(const std::string& user, const std::string& device, std::int64_t exp,
                  const std::string& secret = kSecret, const std::string& audience = kAudience) {
  const json::object claims{{"sub", user},    {"device_id", device}, {"aud", audience},
                            {"iat", now_s()}, {"exp", exp},          {"name", "From the app"}};
  return crypto::JwtSigner::hmac(secret).value().sign(claims).value();
}

// A token issued at `iat`, or without "iat" when it is nullopt.
std::string token_issued(const std::string& user, const std::string& device,
                         std::optional<std::int64_t> iat, std::int64_t exp) {
  json::object claims{{"sub", user}, {"device_id", device}, {"aud", kAudience}, {"exp", exp}};
  if (iat) claims["iat"] = *iat;
  return crypto::JwtSigner::hmac(kSecret).value().sign(claims).value();
}

class SignIn : public OneNodeTest {
 protected:
  void SetUp() override {
    secret_file_ = fmt::format("{}/herald-e2e-{}-signin-secret", ::testing::TempDir(), ::getpid());
    std::ofstream(secret_file_) << kSecret << "\n";
    fs::permissions(secret_file_, fs::perms::owner_read | fs::perms::owner_write);
    start_node(
        fmt::format("[signin]\nhs256_secret_file = \"{}\"\naudience = \"{}\"\nclock_skew_s = 0\n",
                    secret_file_, kAudience));
  }
  void TearDown() override {
    OneNodeTest::TearDown();
    std::remove(secret_file_.c_str());
  }

  std::unique_ptr<HeraldClient> socket() {
    return must(HeraldClient::connect("127.0.0.1", port()), "connecting");
  }

  std::string secret_file_;
};

TEST_F(SignIn, FirstSignInCreatesTheUserAndDeviceWhichThenChats) {
  must(admin_->create_user("alice", "Alice"), "creating alice");
  const DeviceCredentials a_phone = must(provision_device(*admin_, "alice", "a-phone"), "a-phone");

  auto dana = socket();
  const client::AuthInfo info = must(
      dana->auth_with_token(token("dana", "dana-web", now_s() + kLongLifetimeS)), "signing in");
  EXPECT_EQ(info.user_id, "dana");
  EXPECT_EQ(info.device_id, "dana-web");
  EXPECT_GT(info.expires_at_ms, 0);
  const client::UserInfo user = must(admin_->get_user("dana"), "dana, created by the sign-in");
  EXPECT_EQ(user.display_name, "From the app");
  ASSERT_EQ(user.devices.size(), 1U);
  EXPECT_EQ(user.devices[0].device_id, "dana-web");
  EXPECT_EQ(user.devices[0].platform, "web");

  const std::string direct =
      must(admin_->create_conversation({"alice", "direct", {"dana"}, "", ""}),
           "the direct conversation")
          .conversation_id;
  auto alice = must(connect_device(port(), a_phone), "alice");
  must(dana->send(direct, "d1", "hello from the web"), "dana sends");
  const client::Change got =
      must(wait_for_change(*alice,
                           [&](const client::Change& c) {
                             return c.kind == "message_new" && c.conversation_id == direct;
                           }),
           "alice receives");
  EXPECT_EQ(got.seq, 1U);

  // The device registers its push target over the socket.
  must(dana->push_register("webpush", R"({"endpoint":"https://push.example.net/s/1","keys":{}})"),
       "registering a push target");
  const client::UserInfo pushed = must(admin_->get_user("dana"), "dana");
  ASSERT_EQ(pushed.devices.size(), 1U);
  EXPECT_EQ(pushed.devices[0].push_provider, "webpush");
  EXPECT_EQ(client::protocol_error_code(dana->push_register("carrier-pigeon", "x")),
            "invalid_argument");

  // A second sign-in of the same device (another tab, a new token) finds it and creates nothing.
  auto again = socket();
  must(again->auth_with_token(token("dana", "dana-web", now_s() + kLongLifetimeS)), "again");
  EXPECT_EQ(must(admin_->get_user("dana"), "dana").devices.size(), 1U);
}

TEST_F(SignIn, RefusedTokensLeaveTheConnectionAbleToRetryUntilTheThirdFailure) {
  auto device = socket();
  const auto code = [&](const std::string& jwt) {
    return std::string(client::protocol_error_code(device->auth_with_token(jwt).status()));
  };
  EXPECT_EQ(code(token("erin", "erin-web", now_s() - 5)), "unauthorized") << "expired";
  EXPECT_EQ(code(token("erin", "erin-web", now_s() + 60, "another-secret-of-sufficient-length!!")),
            "unauthorized")
      << "wrong signature";
  // The third failure closes the connection.
  EXPECT_EQ(code(token("erin", "erin-web", now_s() + 60, kSecret, "another-service")),
            "unauthorized")
      << "wrong audience";
  EXPECT_EQ(close_code_within(*device, kChangeWaitMs), 1008);
  EXPECT_EQ(admin_->get_user("erin").status().code(), Code::kNotFound) << "nothing was created";

  // alg none, then a valid token on the same connection.
  auto retry = socket();
  const std::string none =
      crypto::base64url_encode(R"({"alg":"none","typ":"JWT"})") + "." +
      crypto::base64url_encode(json::serialize(json::object{
          {"sub", "erin"}, {"device_id", "erin-web"}, {"aud", kAudience}, {"exp", now_s() + 60}})) +
      ".";
  EXPECT_EQ(client::protocol_error_code(retry->auth_with_token(none).status()), "unauthorized");
  must(retry->auth_with_token(token("erin", "erin-web", now_s() + 60)), "a valid token");
  EXPECT_TRUE(retry->ping().ok());
}

TEST_F(SignIn, AnExpiringTokenEndsTheSessionUnlessRefreshed) {
  // Whole seconds: "exp" is in seconds.
  const std::int64_t start = now_s();
  auto refreshed = socket();
  auto left_alone = socket();
  must(refreshed->auth_with_token(token("fred", "fred-web", start + 2)), "fred signs in");
  must(left_alone->auth_with_token(token("fred", "fred-tab", start + 2)), "fred's tab signs in");
  // A token of another device does not refresh this one.
  EXPECT_EQ(client::protocol_error_code(
                refreshed->refresh(token("fred", "fred-tab", start + 60)).status()),
            "unauthorized");
  const std::int64_t until =
      must(refreshed->refresh(token("fred", "fred-web", start + 60)), "refreshing");
  EXPECT_EQ(until, (start + 60) * 1000);
  // The unrefreshed session is closed once its token expires; the refreshed one stays.
  EXPECT_EQ(close_code_within(*left_alone, 5'000), server::kCloseTokenExpired);
  EXPECT_TRUE(refreshed->ping().ok());
  EXPECT_FALSE(refreshed->close_code().has_value());
}

TEST_F(SignIn, ARemovedDeviceIsClosedAndCannotSignInAgain) {
  auto device = socket();
  must(device->auth_with_token(token("gina", "gina-web", now_s() + kLongLifetimeS)), "signing in");
  must(admin_->request("DELETE", "/v1/admin/users/gina/devices/gina-web"), "removing gina-web");
  EXPECT_EQ(close_code_within(*device, kChangeWaitMs), server::kCloseDeviceRemoved);
  auto again = socket();
  EXPECT_EQ(
      client::protocol_error_code(
          again->auth_with_token(token("gina", "gina-web", now_s() + kLongLifetimeS)).status()),
      "unauthorized");
}

TEST_F(SignIn, RevokingAUserEndsItsSessionsAndRefusesOlderTokens) {
  // One device with a secret, one signed in with a token, and a bystander.
  must(admin_->create_user("hank", "Hank"), "creating hank");
  const DeviceCredentials phone = must(provision_device(*admin_, "hank", "hank-phone"), "phone");
  auto by_secret = must(connect_device(port(), phone), "hank-phone");
  auto by_token = socket();
  const std::string old_token = token("hank", "hank-web", now_s() + kLongLifetimeS);
  must(by_token->auth_with_token(old_token), "hank-web signs in");
  must(admin_->create_user("ivy"), "creating ivy");
  const DeviceCredentials ivy = must(provision_device(*admin_, "ivy", "ivy-phone"), "ivy-phone");
  auto bystander = must(connect_device(port(), ivy), "ivy connects");

  const auto revoked_at = std::chrono::steady_clock::now();
  const std::int64_t stamp_ms = must(admin_->revoke_user("hank"), "revoking hank");
  EXPECT_EQ(close_code_within(*by_secret, kChangeWaitMs), server::kCloseUserRevoked);
  EXPECT_EQ(close_code_within(*by_token, kChangeWaitMs), server::kCloseUserRevoked);
  EXPECT_LT(std::chrono::steady_clock::now() - revoked_at,
            std::chrono::milliseconds(kChangeWaitMs));
  EXPECT_TRUE(bystander->ping().ok());
  EXPECT_FALSE(bystander->close_code().has_value());

  // The device secret no longer works; neither do tokens issued before the stamp, or without iat.
  EXPECT_EQ(client::protocol_error_code(connect_device(port(), phone).status()), "unauthorized");
  const auto refused = [&](const std::string& jwt) {
    return std::string(client::protocol_error_code(socket()->auth_with_token(jwt).status()));
  };
  EXPECT_EQ(refused(old_token), "unauthorized");
  EXPECT_EQ(refused(token_issued("hank", "hank-web", std::nullopt, now_s() + kLongLifetimeS)),
            "unauthorized");
  EXPECT_EQ(
      refused(token_issued("hank", "hank-phone", stamp_ms / 1000 - 1, now_s() + kLongLifetimeS)),
      "unauthorized");

  // A token issued from the stamp's next whole second on signs in again, on either device (the
  // clock skew is 0 here: wait until that second has come).
  const std::int64_t fresh_iat = stamp_ms / 1000 + 1;
  while (now_s() < fresh_iat) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto again = socket();
  must(again->auth_with_token(token_issued("hank", "hank-web", fresh_iat, now_s() + 60)),
       "a fresh token");
  EXPECT_TRUE(again->ping().ok());
  auto phone_again = socket();
  must(phone_again->auth_with_token(token_issued("hank", "hank-phone", fresh_iat, now_s() + 60)),
       "a fresh token for the phone");
  // A refresh with a token from before the revocation is refused; a fresh one is taken.
  EXPECT_EQ(client::protocol_error_code(again->refresh(old_token).status()), "unauthorized");
  must(again->refresh(token_issued("hank", "hank-web", fresh_iat, now_s() + 120)), "refreshing");
  EXPECT_FALSE(again->close_code().has_value());
}

// ---- Public keys and JWKS ----

// The RSA keys of the app's backend, in bits.
constexpr int kRsaBits = 2048;
// Bytes of a P-256 coordinate, and of each half of an ES256 signature (RFC 7518 section 3.4).
constexpr int kP256Bytes = 32;

// Throws (ending the test as a failure) when an OpenSSL call failed.
void openssl_must(bool ok, std::string_view what) {
  if (!ok) throw std::runtime_error(fmt::format("OpenSSL: {} failed", what));
}

// The big-endian bytes of the number `name` of `key`'s public half, left-padded to `pad` bytes
// when pad > 0.
std::string public_number(const EVP_PKEY* key, const char* name, int pad) {
  BIGNUM* raw = nullptr;
  openssl_must(EVP_PKEY_get_bn_param(key, name, &raw) == 1, name);
  const crypto::BignumPtr number(raw);
  const int size = pad > 0 ? pad : BN_num_bytes(number.get());
  std::string out(static_cast<std::size_t>(size), '\0');
  openssl_must(
      BN_bn2binpad(number.get(), reinterpret_cast<unsigned char*>(out.data()), size) == size,
      "BN_bn2binpad");
  return out;
}

// JOSE's form of an ES256 signature (r and s, 32 bytes each) from OpenSSL's DER.
std::string jose_of_der(const std::string& der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  const crypto::EcdsaSigPtr sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
  openssl_must(sig != nullptr, "d2i_ECDSA_SIG");
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(sig.get(), &r, &s);
  std::string out(std::size_t{2} * kP256Bytes, '\0');
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  openssl_must(BN_bn2binpad(r, o, kP256Bytes) == kP256Bytes &&
                   BN_bn2binpad(s, o + kP256Bytes, kP256Bytes) == kP256Bytes,
               "BN_bn2binpad");
  return out;
}

// A signing key of the app's backend: RSA (RS256) or P-256 (ES256). Its tokens are signed with
// OpenSSL directly, not with crypto/jwt.h, so the node's verification is checked against a signer
// that shares no code with it.
class BackendKey {
 public:
  static BackendKey rsa() { return {crypto::testing::rsa_private_pem(kRsaBits), "RS256"}; }
  static BackendKey p256() { return {crypto::testing::ec_private_pem("P-256"), "ES256"}; }

  // The public half as a PEM (SubjectPublicKeyInfo): what public_key_file holds.
  [[nodiscard]] std::string public_pem() const {
    return crypto::testing::public_pem_of(private_pem_);
  }

  // The public half as a JWK (RFC 7517, RFC 7518 section 6) named `kid`, for `use`.
  [[nodiscard]] json::object jwk(const std::string& kid, const std::string& use = "sig") const {
    json::object k{{"kid", kid}, {"use", use}, {"alg", alg_}};
    if (alg_ == "RS256") {
      k["kty"] = "RSA";
      k["n"] = crypto::base64url_encode(public_number(key_.get(), OSSL_PKEY_PARAM_RSA_N, 0));
      k["e"] = crypto::base64url_encode(public_number(key_.get(), OSSL_PKEY_PARAM_RSA_E, 0));
    } else {
      k["kty"] = "EC";
      k["crv"] = "P-256";
      k["x"] =
          crypto::base64url_encode(public_number(key_.get(), OSSL_PKEY_PARAM_EC_PUB_X, kP256Bytes));
      k["y"] =
          crypto::base64url_encode(public_number(key_.get(), OSSL_PKEY_PARAM_EC_PUB_Y, kP256Bytes));
    }
    return k;
  }

  // A JWT of `claims` signed with this key, its header naming `kid` (none when empty). With
  // `der_signature`, an ES256 signature stays in OpenSSL's DER form instead of JOSE's r || s.
  [[nodiscard]] std::string sign(const json::object& claims, const std::string& kid = "",
                                 bool der_signature = false) const {
    json::object header{{"alg", alg_}, {"typ", "JWT"}};
    if (!kid.empty()) header["kid"] = kid;
    const std::string input = crypto::base64url_encode(json::serialize(header)) + "." +
                              crypto::base64url_encode(json::serialize(claims));
    const auto* data = reinterpret_cast<const unsigned char*>(input.data());
    const crypto::MdCtxPtr ctx(EVP_MD_CTX_new());
    std::size_t size = 0;
    openssl_must(
        ctx != nullptr &&
            EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key_.get()) == 1 &&
            EVP_DigestSign(ctx.get(), nullptr, &size, data, input.size()) == 1,
        "EVP_DigestSign (size)");
    std::string signature(size, '\0');
    openssl_must(EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()),
                                &size, data, input.size()) == 1,
                 "EVP_DigestSign");
    signature.resize(size);
    if (alg_ == "ES256" && !der_signature) signature = jose_of_der(signature);
    return input + "." + crypto::base64url_encode(signature);
  }

 private:
  BackendKey(std::string private_pem, std::string alg)
      : private_pem_(std::move(private_pem)), alg_(std::move(alg)) {
    const crypto::BioPtr in(
        BIO_new_mem_buf(private_pem_.data(), static_cast<int>(private_pem_.size())));
    key_.reset(PEM_read_bio_PrivateKey(in.get(), nullptr, nullptr, nullptr));
    openssl_must(key_ != nullptr, "PEM_read_bio_PrivateKey");
  }

  std::string private_pem_;
  std::string alg_;
  crypto::PkeyPtr key_;
};

// The claims of a token for (user, device), issued now, valid for kLongLifetimeS.
json::object claims_for(const std::string& user, const std::string& device) {
  return json::object{{"sub", user},
                      {"device_id", device},
                      {"aud", kAudience},
                      {"iat", now_s()},
                      {"exp", now_s() + kLongLifetimeS}};
}

// A node trusting one key file of the app's backend: public_key_file or jwks_file.
class SignInKeys : public OneNodeTest {
 protected:
  void TearDown() override {
    OneNodeTest::TearDown();
    for (const std::string& file : files_) std::remove(file.c_str());
  }

  // Writes `content` to a file and starts the node with [signin] `setting` naming it.
  void start_trusting(const std::string& setting, const std::string& content) {
    const std::string file =
        fmt::format("{}/herald-e2e-{}-{}", ::testing::TempDir(), ::getpid(), setting);
    std::ofstream(file) << content;
    files_.push_back(file);
    start_node(fmt::format("[signin]\n{} = \"{}\"\naudience = \"{}\"\n", setting, file, kAudience));
  }

  // True when the node's log says it trusts `what` ("RS256 key", "JWKS of 2 keys", ...).
  [[nodiscard]] bool logged_trust(const std::string& what) const {
    return cluster_->log_tail(1, kWholeLogBytes)
               .find(fmt::format("verified by the {}, audience {}", what, kAudience)) !=
           std::string::npos;
  }

  std::unique_ptr<HeraldClient> socket() {
    return must(HeraldClient::connect("127.0.0.1", port()), "connecting");
  }

  // The error code of an `auth` with `jwt` on a connection of its own; "" when it signed in.
  std::string refusal(const std::string& jwt) {
    const Result<client::AuthInfo> auth = socket()->auth_with_token(jwt);
    return auth.ok() ? std::string() : std::string(client::protocol_error_code(auth.status()));
  }

  // Bytes of the node's log searched for its start-up lines.
  static constexpr std::size_t kWholeLogBytes = 1U << 20U;
  std::vector<std::string> files_;
};

TEST_F(SignInKeys, AnRs256PublicKeyFileSignsInTokensOfThatKeyOnly) {
  const BackendKey key = BackendKey::rsa();
  start_trusting("public_key_file", key.public_pem());
  EXPECT_TRUE(logged_trust("RS256 key")) << cluster_->log_tail(1);

  auto device = socket();
  const client::AuthInfo info =
      must(device->auth_with_token(key.sign(claims_for("kim", "kim-web"))), "kim signs in");
  EXPECT_EQ(info.user_id, "kim");
  EXPECT_EQ(info.device_id, "kim-web");
  EXPECT_TRUE(device->ping().ok());
  const client::UserInfo kim = must(admin_->get_user("kim"), "kim, created by the sign-in");
  ASSERT_EQ(kim.devices.size(), 1U);
  EXPECT_EQ(kim.devices[0].device_id, "kim-web");

  EXPECT_EQ(refusal(BackendKey::rsa().sign(claims_for("kim", "kim-web"))), "unauthorized")
      << "a token of another RSA key";
  EXPECT_EQ(refusal(BackendKey::p256().sign(claims_for("kim", "kim-web"))), "unauthorized")
      << "an ES256 token where an RS256 key is configured";
  const crypto::JwtSigner confused = must(crypto::JwtSigner::hmac(key.public_pem()), "HS256");
  EXPECT_EQ(refusal(must(confused.sign(claims_for("kim", "kim-web")), "HS256 token")),
            "unauthorized")
      << "an HS256 token made with the public key as its secret";
  json::object other_audience = claims_for("kim", "kim-web");
  other_audience["aud"] = "another-service";
  EXPECT_EQ(refusal(key.sign(other_audience)), "unauthorized") << "the audience is still checked";
}

TEST_F(SignInKeys, AnEs256PublicKeyFileSignsInTokensWithJoseSignatures) {
  const BackendKey key = BackendKey::p256();
  start_trusting("public_key_file", key.public_pem());
  EXPECT_TRUE(logged_trust("ES256 key")) << cluster_->log_tail(1);

  auto device = socket();
  must(device->auth_with_token(key.sign(claims_for("lena", "lena-web"))), "lena signs in");
  EXPECT_TRUE(device->ping().ok());
  EXPECT_EQ(must(admin_->get_user("lena"), "lena").devices.size(), 1U);

  EXPECT_EQ(refusal(key.sign(claims_for("lena", "lena-web"), "", /*der_signature=*/true)),
            "unauthorized")
      << "a DER signature is not ES256's r || s";
  EXPECT_EQ(refusal(BackendKey::p256().sign(claims_for("lena", "lena-web"))), "unauthorized")
      << "a token of another P-256 key";
}

TEST_F(SignInKeys, AJwksFileSignsInTokensByKidAndNeverWithAnEncryptionKey) {
  const BackendKey rsa = BackendKey::rsa();
  const BackendKey ec = BackendKey::p256();
  const BackendKey enc = BackendKey::rsa();
  const json::array keys{rsa.jwk("rsa-2026"), ec.jwk("ec-2026"), enc.jwk("enc-2026", "enc")};
  start_trusting("jwks_file", json::serialize(json::object{{"keys", keys}}));
  EXPECT_TRUE(logged_trust("JWKS of 2 keys")) << "the encryption key is skipped\n"
                                              << cluster_->log_tail(1);

  auto web = socket();
  must(web->auth_with_token(rsa.sign(claims_for("mia", "mia-web"), "rsa-2026")), "RS256 by kid");
  auto phone = socket();
  must(phone->auth_with_token(ec.sign(claims_for("mia", "mia-phone"), "ec-2026")), "ES256 by kid");
  EXPECT_TRUE(web->ping().ok());
  EXPECT_TRUE(phone->ping().ok());
  EXPECT_EQ(must(admin_->get_user("mia"), "mia").devices.size(), 2U);

  const json::object claims = claims_for("mia", "mia-tab");
  EXPECT_EQ(refusal(ec.sign(claims, "rsa-2026")), "unauthorized") << "a kid naming another key";
  EXPECT_EQ(refusal(rsa.sign(claims)), "unauthorized") << "no kid, and the set has several keys";
  EXPECT_EQ(refusal(rsa.sign(claims, "rsa-2025")), "unauthorized") << "a kid not in the set";
  EXPECT_EQ(refusal(enc.sign(claims, "enc-2026")), "unauthorized")
      << "a key for encryption never signs anyone in";
  EXPECT_EQ(must(admin_->get_user("mia"), "mia").devices.size(), 2U) << "nothing was created";
}

}  // namespace
}  // namespace herald::e2e
