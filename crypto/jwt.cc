#include "crypto/jwt.h"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>

#include <array>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <cmath>
#include <limits>

#include "crypto/base64url.h"
#include "crypto/openssl_util.h"

namespace herald::crypto {

namespace json = boost::json;

namespace {

constexpr std::size_t kSha256Bytes = 32;
constexpr std::size_t kEs256ScalarBytes = kEs256SignatureBytes / 2;

JwtAlgorithm algorithm_for(KeyType type) {
  return type == KeyType::kEcP256 ? JwtAlgorithm::kEs256 : JwtAlgorithm::kRs256;
}

Status check_hmac_secret(std::string_view secret) {
  if (secret.size() < kMinHmacSecretBytes) {
    return Status::invalid_argument(
        fmt::format("an HS256 secret has {} bytes; at least {} are "
                    "required",
                    secret.size(), kMinHmacSecretBytes));
  }
  return Status::ok_status();
}

std::string hmac_sha256(std::string_view secret, std::string_view input) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> tag{};
  unsigned int tag_bytes = 0;
  const unsigned char* done = HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
                                   bytes_of(input), input.size(), tag.data(), &tag_bytes);
  HERALD_ASSERT(done != nullptr && tag_bytes == kSha256Bytes, "HMAC-SHA256 failed");
  return {reinterpret_cast<const char*>(tag.data()), tag_bytes};
}

// Prepares `ctx` for SHA-256 signing or verifying with `key`; RSA keys use PKCS #1 v1.5 padding
// (RS256), never PSS.
Status init_digest(EVP_MD_CTX* ctx, EVP_PKEY* key, KeyType type, bool sign) {
  EVP_PKEY_CTX* pctx = nullptr;
  const int ok = sign ? EVP_DigestSignInit(ctx, &pctx, EVP_sha256(), nullptr, key)
                      : EVP_DigestVerifyInit(ctx, &pctx, EVP_sha256(), nullptr, key);
  if (ok != 1) {
    return Status::io_error(openssl_error("preparing a SHA-256 signature"));
  }
  if (type == KeyType::kRsa && EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1) {
    return Status::io_error(openssl_error("selecting PKCS #1 v1.5 padding"));
  }
  return Status::ok_status();
}

// ECDSA's DER signature (SEQUENCE { r INTEGER, s INTEGER }) to the JWS form r || s.
Result<std::string> ecdsa_der_to_raw(std::string_view der) {
  const unsigned char* cursor = bytes_of(der);
  const EcdsaSigPtr sig(d2i_ECDSA_SIG(nullptr, &cursor, static_cast<long>(der.size())));
  if (sig == nullptr) {
    return Status::io_error(openssl_error("decoding an ECDSA signature"));
  }
  std::string raw(kEs256SignatureBytes, '\0');
  if (BN_bn2binpad(ECDSA_SIG_get0_r(sig.get()), bytes_of(raw), kEs256ScalarBytes) !=
          static_cast<int>(kEs256ScalarBytes) ||
      BN_bn2binpad(ECDSA_SIG_get0_s(sig.get()), bytes_of(raw) + kEs256ScalarBytes,
                   kEs256ScalarBytes) != static_cast<int>(kEs256ScalarBytes)) {
    return Status::io_error(openssl_error("encoding an ES256 signature"));
  }
  return raw;
}

// The JWS form r || s to ECDSA's DER. Precondition: raw.size() == kEs256SignatureBytes.
Result<std::string> ecdsa_raw_to_der(std::string_view raw) {
  const EcdsaSigPtr sig(ECDSA_SIG_new());
  BignumPtr r(BN_bin2bn(bytes_of(raw), kEs256ScalarBytes, nullptr));
  BignumPtr s(BN_bin2bn(bytes_of(raw) + kEs256ScalarBytes, kEs256ScalarBytes, nullptr));
  if (sig == nullptr || r == nullptr || s == nullptr ||
      ECDSA_SIG_set0(sig.get(), r.get(), s.get()) != 1) {
    return Status::io_error(openssl_error("building an ECDSA signature"));
  }
  // ECDSA_SIG_set0 took ownership of both numbers.
  static_cast<void>(r.release());
  static_cast<void>(s.release());
  unsigned char* der = nullptr;
  const int der_bytes = i2d_ECDSA_SIG(sig.get(), &der);
  if (der_bytes <= 0) {
    return Status::io_error(openssl_error("encoding an ECDSA signature"));
  }
  std::string out(reinterpret_cast<const char*>(der), static_cast<std::size_t>(der_bytes));
  OPENSSL_free(der);
  return out;
}

Result<std::string> sign_with_key(const PrivateKey& key, std::string_view input) {
  const MdCtxPtr ctx(EVP_MD_CTX_new());
  if (ctx == nullptr) {
    return Status::io_error(openssl_error("allocating a digest context"));
  }
  HERALD_RETURN_IF_ERROR(init_digest(ctx.get(), key.native(), key.type(), /*sign=*/true));
  std::size_t size = 0;
  if (EVP_DigestSign(ctx.get(), nullptr, &size, bytes_of(input), input.size()) != 1) {
    return Status::io_error(openssl_error("sizing a signature"));
  }
  std::string signature(size, '\0');
  if (EVP_DigestSign(ctx.get(), bytes_of(signature), &size, bytes_of(input), input.size()) != 1) {
    return Status::io_error(openssl_error("signing"));
  }
  signature.resize(size);
  if (key.type() == KeyType::kEcP256) {
    return ecdsa_der_to_raw(signature);
  }
  return signature;
}

Status verify_with_key(const PublicKey& key, std::string_view input, std::string_view signature) {
  std::string der;
  if (key.type() == KeyType::kEcP256) {
    if (signature.size() != kEs256SignatureBytes) {
      return Status::invalid_argument(
          fmt::format("an ES256 signature has {} bytes (r || s); got {}", kEs256SignatureBytes,
                      signature.size()));
    }
    HERALD_ASSIGN_OR_RETURN(der, ecdsa_raw_to_der(signature));
    signature = der;
  }
  const MdCtxPtr ctx(EVP_MD_CTX_new());
  if (ctx == nullptr) {
    return Status::io_error(openssl_error("allocating a digest context"));
  }
  HERALD_RETURN_IF_ERROR(init_digest(ctx.get(), key.native(), key.type(), /*sign=*/false));
  if (EVP_DigestVerify(ctx.get(), bytes_of(signature), signature.size(), bytes_of(input),
                       input.size()) != 1) {
    // The reason (bad padding, wrong length, mismatch) is not the caller's business.
    static_cast<void>(openssl_error(""));
    return Status::invalid_argument("the token's signature does not verify with this key");
  }
  return Status::ok_status();
}

// `segment` decoded from base64url, with `what` it is named in the error.
Result<std::string> decode_segment(std::string_view segment, std::string_view what) {
  Result<std::string> bytes = base64url_decode(segment);
  if (!bytes.ok()) {
    return Status::invalid_argument(
        fmt::format("the token's {}: {}", what, bytes.status().message()));
  }
  return bytes;
}

Result<json::object> parse_json_object(std::string_view segment, std::string_view what) {
  HERALD_ASSIGN_OR_RETURN(const std::string text, decode_segment(segment, what));
  boost::system::error_code ec;
  json::parse_options options;
  options.max_depth = kMaxJwtJsonDepth;
  json::value value = json::parse(text, ec, json::storage_ptr(), options);
  if (ec == json::error::too_deep) {
    return Status::invalid_argument(
        fmt::format("the token's {} nests deeper than {} levels", what, kMaxJwtJsonDepth));
  }
  if (ec || !value.is_object()) {
    return Status::invalid_argument(fmt::format("the token's {} is not a JSON object", what));
  }
  return std::move(value.get_object());
}

// The NumericDate claim `name` in whole seconds, or nullopt when absent. RFC 7519 allows
// fractions; they are rounded down, a difference of under a second.
Result<std::optional<std::int64_t>> numeric_date(const json::object& claims,
                                                 std::string_view name) {
  const json::value* v = claims.if_contains(name);
  if (v == nullptr) {
    return std::optional<std::int64_t>();
  }
  if (v->is_int64()) {
    return std::optional<std::int64_t>(v->get_int64());
  }
  constexpr double kLimit = 9.0e15;  // well inside int64 and exactly representable
  if (v->is_double() && std::isfinite(v->get_double()) && std::fabs(v->get_double()) < kLimit) {
    return std::optional<std::int64_t>(static_cast<std::int64_t>(std::floor(v->get_double())));
  }
  return Status::invalid_argument(
      fmt::format("the token's \"{}\" claim is not a NumericDate (seconds since the epoch)", name));
}

Status check_times(const json::object& claims, const JwtChecks& checks) {
  const std::int64_t now = checks.now_s;
  const std::int64_t skew = checks.clock_skew_s;
  HERALD_ASSIGN_OR_RETURN(const std::optional<std::int64_t> exp, numeric_date(claims, "exp"));
  HERALD_ASSIGN_OR_RETURN(const std::optional<std::int64_t> nbf, numeric_date(claims, "nbf"));
  HERALD_ASSIGN_OR_RETURN(const std::optional<std::int64_t> iat, numeric_date(claims, "iat"));
  if (!exp.has_value() && checks.require_exp) {
    return Status::failed_precondition("the token has no \"exp\" claim; one is required");
  }
  if (exp.has_value() && now - skew >= *exp) {
    return Status::failed_precondition(fmt::format(
        "the token expired at {}; now is {} (clock skew allowed: {} s)", *exp, now, skew));
  }
  if (nbf.has_value() && now + skew < *nbf) {
    return Status::failed_precondition(fmt::format(
        "the token is not valid before {}; now is {} (clock skew allowed: {} s)", *nbf, now, skew));
  }
  if (iat.has_value() && *iat > now + skew) {
    return Status::failed_precondition(fmt::format(
        "the token was issued in the future at {}; now is {} (clock skew allowed: {} s)", *iat, now,
        skew));
  }
  if (checks.max_age_s.has_value()) {
    if (!iat.has_value()) {
      return Status::failed_precondition("the token has no \"iat\" claim; its age is bounded");
    }
    if (now - skew > *iat + *checks.max_age_s) {
      return Status::failed_precondition(fmt::format(
          "the token was issued at {}, more than {} s before now ({}; clock skew allowed: {} s)",
          *iat, *checks.max_age_s, now, skew));
    }
  }
  return Status::ok_status();
}

Status check_audience(const json::object& claims, const std::string& audience) {
  const json::value* aud = claims.if_contains("aud");
  if (aud == nullptr) {
    return Status::invalid_argument(
        fmt::format("the token has no \"aud\" claim; \"{}\" is required", audience));
  }
  if (aud->is_string()) {
    if (aud->get_string() == audience) {
      return Status::ok_status();
    }
  } else if (aud->is_array()) {
    for (const json::value& entry : aud->get_array()) {
      if (entry.is_string() && entry.get_string() == audience) {
        return Status::ok_status();
      }
    }
  } else {
    return Status::invalid_argument("the token's \"aud\" claim is neither a string nor an array");
  }
  return Status::invalid_argument(fmt::format("the token's audience is {}; \"{}\" is required",
                                              json::serialize(*aud), audience));
}

Status check_issuer(const json::object& claims, const std::string& issuer) {
  const json::value* iss = claims.if_contains("iss");
  if (iss == nullptr || !iss->is_string()) {
    return Status::invalid_argument(
        fmt::format("the token has no string \"iss\" claim; \"{}\" is required", issuer));
  }
  if (iss->get_string() != issuer) {
    return Status::invalid_argument(fmt::format("the token's issuer is \"{}\"; \"{}\" is required",
                                                std::string_view(iss->get_string()), issuer));
  }
  return Status::ok_status();
}

// The JOSE header's algorithm must be exactly the one this verifier's key implies, and no
// extension may be critical (RFC 7515 section 4.1.11: Herald understands none).
Status check_header(const json::object& header, JwtAlgorithm expected) {
  const json::value* alg = header.if_contains("alg");
  if (alg == nullptr || !alg->is_string()) {
    return Status::invalid_argument("the token's header has no string \"alg\"");
  }
  const std::string_view name = alg->get_string();
  if (name == "none") {
    return Status::invalid_argument("the token is unsigned (alg \"none\"); it is never accepted");
  }
  if (name != jwt_algorithm_name(expected)) {
    return Status::invalid_argument(
        fmt::format("the token's alg is \"{}\"; this key verifies only {}", name,
                    jwt_algorithm_name(expected)));
  }
  if (header.contains("crit")) {
    return Status::invalid_argument("the token's header marks extensions critical (\"crit\")");
  }
  return Status::ok_status();
}

struct Segments {
  std::string_view header;
  std::string_view payload;
  std::string_view signature;
  std::string_view signing_input;  // header "." payload
};

Result<Segments> split_token(std::string_view token) {
  const std::size_t first = token.find('.');
  const std::size_t second = first == std::string_view::npos ? first : token.find('.', first + 1);
  if (second == std::string_view::npos || token.find('.', second + 1) != std::string_view::npos) {
    return Status::invalid_argument(
        "a compact JWS has exactly three base64url segments separated by '.'");
  }
  Segments s{.header = token.substr(0, first),
             .payload = token.substr(first + 1, second - first - 1),
             .signature = token.substr(second + 1),
             .signing_input = token.substr(0, second)};
  if (s.header.empty() || s.payload.empty()) {
    return Status::invalid_argument("the token's header or claims segment is empty");
  }
  return s;
}

}  // namespace

std::string_view jwt_algorithm_name(JwtAlgorithm algorithm) {
  switch (algorithm) {
    case JwtAlgorithm::kEs256: return "ES256";
    case JwtAlgorithm::kRs256: return "RS256";
    case JwtAlgorithm::kHs256: return "HS256";
  }
  return "unknown";
}

Result<JwtSigner> JwtSigner::from_pem(std::string_view private_pem) {
  HERALD_ASSIGN_OR_RETURN(PrivateKey key, PrivateKey::from_pem(private_pem));
  return from_key(std::move(key));
}

JwtSigner JwtSigner::from_key(PrivateKey key) {
  const JwtAlgorithm algorithm = algorithm_for(key.type());
  return {algorithm, std::move(key)};
}

Result<JwtSigner> JwtSigner::hmac(std::string_view secret) {
  HERALD_RETURN_IF_ERROR(check_hmac_secret(secret));
  return JwtSigner(JwtAlgorithm::kHs256, std::string(secret));
}

Result<std::string> JwtSigner::sign(const json::object& claims,
                                    const json::object& header_fields) const {
  if (header_fields.contains("alg") || header_fields.contains("typ")) {
    return Status::invalid_argument("the signer sets the header's \"alg\" and \"typ\" itself");
  }
  json::object header;
  header["alg"] = jwt_algorithm_name(algorithm_);
  header["typ"] = "JWT";
  for (const auto& field : header_fields) {
    header[field.key()] = field.value();
  }
  std::string token = base64url_encode(json::serialize(header));
  token.push_back('.');
  token.append(base64url_encode(json::serialize(claims)));
  std::string signature;
  if (const auto* secret = std::get_if<std::string>(&key_)) {
    signature = hmac_sha256(*secret, token);
  } else {
    HERALD_ASSIGN_OR_RETURN(signature, sign_with_key(std::get<PrivateKey>(key_), token));
  }
  HERALD_ASSERT(algorithm_ != JwtAlgorithm::kEs256 || signature.size() == kEs256SignatureBytes,
                "an ES256 signature is r || s");
  token.push_back('.');
  token.append(base64url_encode(signature));
  if (token.size() > kMaxJwtBytes) {
    // What verify() would refuse is not handed out.
    return Status::resource_exhausted(fmt::format(
        "the signed token has {} bytes; at most {} are accepted", token.size(), kMaxJwtBytes));
  }
  return token;
}

Result<JwtVerifier> JwtVerifier::from_pem(std::string_view public_pem) {
  HERALD_ASSIGN_OR_RETURN(PublicKey key, PublicKey::from_pem(public_pem));
  return from_key(std::move(key));
}

JwtVerifier JwtVerifier::from_key(PublicKey key) {
  const JwtAlgorithm algorithm = algorithm_for(key.type());
  return {algorithm, std::move(key)};
}

Result<JwtVerifier> JwtVerifier::hmac(std::string_view secret) {
  HERALD_RETURN_IF_ERROR(check_hmac_secret(secret));
  return JwtVerifier(JwtAlgorithm::kHs256, std::string(secret));
}

Status JwtVerifier::check_signature(std::string_view signing_input,
                                    std::string_view signature) const {
  if (const auto* secret = std::get_if<std::string>(&key_)) {
    const std::string expected = hmac_sha256(*secret, signing_input);
    if (signature.size() != expected.size() ||
        CRYPTO_memcmp(signature.data(), expected.data(), expected.size()) != 0) {
      return Status::invalid_argument("the token's signature does not verify with this secret");
    }
    return Status::ok_status();
  }
  return verify_with_key(std::get<PublicKey>(key_), signing_input, signature);
}

Result<VerifiedJwt> JwtVerifier::verify(std::string_view token, const JwtChecks& checks) const {
  HERALD_ASSERT(checks.clock_skew_s >= 0 && checks.clock_skew_s <= kMaxJwtClockSkewSeconds,
                "clock skew out of bounds");
  if (token.size() > kMaxJwtBytes) {
    return Status::resource_exhausted(
        fmt::format("the token has {} bytes; at most {} are accepted", token.size(), kMaxJwtBytes));
  }
  HERALD_ASSIGN_OR_RETURN(const Segments segments, split_token(token));
  HERALD_ASSIGN_OR_RETURN(json::object header, parse_json_object(segments.header, "header"));
  HERALD_RETURN_IF_ERROR(check_header(header, algorithm_));
  if (segments.signature.empty()) {
    return Status::invalid_argument("the token's signature segment is empty");
  }
  HERALD_ASSIGN_OR_RETURN(const std::string signature,
                          decode_segment(segments.signature, "signature"));
  HERALD_RETURN_IF_ERROR(check_signature(segments.signing_input, signature));
  // The claims are read only once the signature says who wrote them.
  HERALD_ASSIGN_OR_RETURN(json::object claims, parse_json_object(segments.payload, "claims"));
  HERALD_RETURN_IF_ERROR(check_times(claims, checks));
  if (checks.audience.has_value()) {
    HERALD_RETURN_IF_ERROR(check_audience(claims, *checks.audience));
  }
  if (checks.issuer.has_value()) {
    HERALD_RETURN_IF_ERROR(check_issuer(claims, *checks.issuer));
  }
  return VerifiedJwt{.header = std::move(header), .claims = std::move(claims)};
}

}  // namespace herald::crypto
