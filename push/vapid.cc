#include "push/vapid.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/json/object.hpp>
#include <cctype>
#include <charconv>
#include <cmath>
#include <optional>

#include "crypto/base64url.h"

namespace herald::push {

namespace {

constexpr std::string_view kSchemeSeparator = "://";
constexpr std::string_view kAuthScheme = "vapid";
constexpr int kMaxPort = 65535;

char lower(char c) {
  return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
}

std::string lowercase(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), lower);
  return out;
}

bool is_host_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '.';
}

bool is_ipv6_char(char c) {
  return std::isxdigit(static_cast<unsigned char>(c)) != 0 || c == ':' || c == '.';
}

// Splits "host[:port]" or "[v6]:port"; checks the host's characters and the port's range.
Result<std::pair<std::string, std::optional<int>>> split_authority(std::string_view authority) {
  std::string_view host = authority;
  std::optional<std::string_view> port;
  if (authority.starts_with('[')) {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos || close < 2 ||
        !std::all_of(authority.begin() + 1, authority.begin() + close, is_ipv6_char)) {
      return Status::invalid_argument("the endpoint's IPv6 host is malformed");
    }
    host = authority.substr(0, close + 1);
    const std::string_view rest = authority.substr(close + 1);
    if (!rest.empty() && !rest.starts_with(':')) {
      return Status::invalid_argument("the endpoint's IPv6 host is malformed");
    }
    if (!rest.empty()) {
      port = rest.substr(1);
    }
  } else {
    const std::size_t colon = authority.rfind(':');
    if (colon != std::string_view::npos) {
      host = authority.substr(0, colon);
      port = authority.substr(colon + 1);
    }
    if (host.empty() || !std::all_of(host.begin(), host.end(), is_host_char)) {
      return Status::invalid_argument("the endpoint's host is empty or has invalid characters");
    }
  }
  if (!port.has_value()) {
    return std::make_pair(lowercase(host), std::optional<int>());
  }
  int value = 0;
  const auto [end, ec] = std::from_chars(port->data(), port->data() + port->size(), value);
  if (port->empty() || ec != std::errc() || end != port->data() + port->size() || value < 1 ||
      value > kMaxPort) {
    return Status::invalid_argument(fmt::format("the endpoint's port \"{}\" is invalid", *port));
  }
  return std::make_pair(lowercase(host), std::optional<int>(value));
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

struct VapidParams {
  std::string_view token;
  std::string_view key;
};

// "vapid t=<jwt>, k=<key>": the scheme case-insensitively, the parameters in either order.
Result<VapidParams> parse_header(std::string_view value) {
  if (value.size() <= kAuthScheme.size() ||
      lowercase(value.substr(0, kAuthScheme.size())) != kAuthScheme ||
      (value[kAuthScheme.size()] != ' ' && value[kAuthScheme.size()] != '\t')) {
    return Status::invalid_argument("the Authorization header does not use the vapid scheme");
  }
  VapidParams params;
  std::string_view rest = value.substr(kAuthScheme.size());
  while (!rest.empty()) {
    const std::size_t comma = rest.find(',');
    const std::string_view param = trim(rest.substr(0, comma));
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    const std::size_t eq = param.find('=');
    if (eq == std::string_view::npos) {
      return Status::invalid_argument(
          fmt::format("the vapid parameter \"{}\" has no value", param));
    }
    const std::string name = lowercase(param.substr(0, eq));
    std::string_view* slot = name == "t" ? &params.token : name == "k" ? &params.key : nullptr;
    if (slot == nullptr || !slot->empty()) {
      return Status::invalid_argument(
          fmt::format("the vapid parameter \"{}\" is unknown or repeated", name));
    }
    *slot = param.substr(eq + 1);
  }
  if (params.token.empty() || params.key.empty()) {
    return Status::invalid_argument("the vapid Authorization header needs both t= and k=");
  }
  return params;
}

}  // namespace

Result<std::string> endpoint_origin(std::string_view endpoint) {
  if (endpoint.size() > kMaxPushEndpointBytes) {
    return Status::resource_exhausted(
        fmt::format("the endpoint has {} bytes; at most {} are accepted", endpoint.size(),
                    kMaxPushEndpointBytes));
  }
  const std::size_t separator = endpoint.find(kSchemeSeparator);
  if (separator == std::string_view::npos) {
    return Status::invalid_argument("the endpoint is not an absolute URL");
  }
  const std::string scheme = lowercase(endpoint.substr(0, separator));
  if (scheme != "https" && scheme != "http") {
    return Status::invalid_argument(
        fmt::format("the endpoint's scheme \"{}\" is not https or http", scheme));
  }
  const std::string_view after = endpoint.substr(separator + kSchemeSeparator.size());
  const std::string_view authority = after.substr(0, after.find_first_of("/?#"));
  if (authority.find('@') != std::string_view::npos) {
    return Status::invalid_argument("the endpoint carries user info");
  }
  HERALD_ASSIGN_OR_RETURN(const auto host_port, split_authority(authority));
  const int default_port = scheme == "https" ? 443 : 80;
  std::string origin = scheme + std::string(kSchemeSeparator) + host_port.first;
  if (host_port.second.has_value() && *host_port.second != default_port) {
    origin += fmt::format(":{}", *host_port.second);
  }
  return origin;
}

Status check_vapid_subject(std::string_view subject) {
  if (subject.size() > kMaxVapidSubjectBytes) {
    return Status::invalid_argument(fmt::format("the VAPID contact has {} bytes; at most {}",
                                                subject.size(), kMaxVapidSubjectBytes));
  }
  const bool mailto = subject.starts_with("mailto:") && subject.size() > 7;
  const bool https = subject.starts_with("https://") && subject.size() > 8;
  if (!mailto && !https) {
    return Status::invalid_argument(
        "the VAPID contact must be a mailto: or https: URI (RFC 8292 section 2.1)");
  }
  if (std::any_of(subject.begin(), subject.end(),
                  [](char c) { return std::iscntrl(static_cast<unsigned char>(c)) != 0; })) {
    return Status::invalid_argument("the VAPID contact has control characters");
  }
  return Status::ok_status();
}

Result<VapidKey> VapidKey::from_key(crypto::PrivateKey key) {
  if (key.type() != crypto::KeyType::kEcP256) {
    return Status::invalid_argument(fmt::format("a VAPID key is a P-256 key; this one is {}",
                                                crypto::key_type_name(key.type())));
  }
  HERALD_ASSIGN_OR_RETURN(const crypto::PublicKey public_key, key.public_key());
  HERALD_ASSIGN_OR_RETURN(const std::string point, public_key.p256_point());
  return VapidKey(std::move(key), crypto::base64url_encode(point));
}

Result<VapidKey> VapidKey::from_pem(std::string_view private_pem) {
  HERALD_ASSIGN_OR_RETURN(crypto::PrivateKey key, crypto::PrivateKey::from_pem(private_pem));
  return from_key(std::move(key));
}

Result<VapidKey> VapidKey::generate() {
  HERALD_ASSIGN_OR_RETURN(crypto::PrivateKey key, crypto::PrivateKey::generate_p256());
  return from_key(std::move(key));
}

Result<std::string> VapidKey::authorization(std::string_view endpoint, std::string_view subject,
                                            std::int64_t now_s, std::int64_t lifetime_s) const {
  if (lifetime_s <= 0 || lifetime_s > kVapidMaxLifetimeSeconds) {
    return Status::invalid_argument(fmt::format("a VAPID token lives 1 to {} s; asked for {}",
                                                kVapidMaxLifetimeSeconds, lifetime_s));
  }
  HERALD_ASSIGN_OR_RETURN(const std::string origin, endpoint_origin(endpoint));
  HERALD_RETURN_IF_ERROR(check_vapid_subject(subject));
  const boost::json::object claims{{"aud", origin}, {"exp", now_s + lifetime_s}, {"sub", subject}};
  const crypto::JwtSigner signer = crypto::JwtSigner::from_key(key_);
  HERALD_ASSIGN_OR_RETURN(const std::string token, signer.sign(claims));
  return fmt::format("vapid t={}, k={}", token, public_b64url_);
}

Result<VerifiedVapid> verify_vapid_authorization(std::string_view header_value,
                                                 std::string_view origin, std::int64_t now_s,
                                                 std::int64_t clock_skew_s) {
  if (header_value.size() > kMaxVapidHeaderBytes) {
    return Status::resource_exhausted(
        fmt::format("the Authorization header has {} bytes; at most {} are accepted",
                    header_value.size(), kMaxVapidHeaderBytes));
  }
  HERALD_ASSIGN_OR_RETURN(const VapidParams params, parse_header(header_value));
  Result<std::string> point = crypto::base64url_decode(params.key);
  if (!point.ok()) {
    return Status::invalid_argument("the vapid k= parameter: " + point.status().message());
  }
  Result<crypto::PublicKey> key = crypto::PublicKey::from_p256_point(*point);
  if (!key.ok()) {
    return Status::invalid_argument("the vapid k= parameter: " + key.status().message());
  }
  const crypto::JwtVerifier verifier = crypto::JwtVerifier::from_key(std::move(key).value());
  const crypto::JwtChecks checks{
      .now_s = now_s, .clock_skew_s = clock_skew_s, .audience = std::string(origin)};
  HERALD_ASSIGN_OR_RETURN(crypto::VerifiedJwt jwt, verifier.verify(params.token, checks));
  // verify() has checked that exp is present and a NumericDate within int64.
  const boost::json::value& exp = jwt.claims.at("exp");
  const auto exp_s =
      exp.is_int64() ? exp.get_int64() : static_cast<std::int64_t>(std::floor(exp.get_double()));
  if (exp_s > now_s + kVapidMaxLifetimeSeconds + clock_skew_s) {
    return Status::failed_precondition(
        fmt::format("the VAPID token expires at {}, more than {} s after now ({})", exp_s,
                    kVapidMaxLifetimeSeconds, now_s));
  }
  return VerifiedVapid{.public_key_b64url = std::string(params.key), .jwt = std::move(jwt)};
}

}  // namespace herald::push
