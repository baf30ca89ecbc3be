#include "app/serve_config.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <toml++/toml.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <optional>
#include <sstream>
#include <type_traits>
#include <utility>

#include "base/assert.h"
#include "base/log.h"
#include "push/vapid.h"
#include "server/peer_auth.h"

namespace herald::app {

namespace {

Result<std::uint64_t> parse_id(std::string_view s) {
  std::uint64_t id = 0;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), id);
  if (ec != std::errc() || ptr != s.data() + s.size() || id == 0) {
    return Status::invalid_argument(fmt::format("\"{}\" is not a positive node id", s));
  }
  return id;
}

// The integer at `node`, only when it holds a TOML integer: toml++'s value<integer>() converts
// floats, and a float out of the integer's range is undefined behaviour there.
template <typename NodeView>
std::optional<std::int64_t> integer_of(NodeView node) {
  if (const auto* v = node.as_integer()) return v->get();
  return std::nullopt;
}

// The value at `key` when present: kInvalidArgument naming the key when it has the wrong type or,
// for an integer, is out of T's range.
template <typename T>
Status read_value(const toml::table& table, const char* key, T& out) {
  if (!table.contains(key)) return Status::ok_status();
  const auto node = table[key];
  if constexpr (std::is_same_v<T, std::string>) {
    if (const auto* v = node.as_string()) {
      out = v->get();
      return Status::ok_status();
    }
    return Status::invalid_argument(fmt::format("{} must be a string", key));
  } else if constexpr (std::is_same_v<T, bool>) {
    if (const auto* v = node.as_boolean()) {
      out = v->get();
      return Status::ok_status();
    }
    return Status::invalid_argument(fmt::format("{} must be true or false", key));
  } else {
    static_assert(std::is_integral_v<T>);
    const auto v = integer_of(node);
    if (!v || !std::in_range<T>(*v)) {
      return Status::invalid_argument(fmt::format("{} must be an integer in range", key));
    }
    out = static_cast<T>(*v);
    return Status::ok_status();
  }
}

// A non-negative integer at devices.<key>, when present.
template <typename T>
Status read_count(const toml::table& devices, const char* key, T& out) {
  const auto v = integer_of(devices[key]);
  if (!v) {
    if (devices.contains(key)) {
      return Status::invalid_argument(fmt::format("devices.{} must be an integer", key));
    }
    return Status::ok_status();
  }
  if (*v < 0 || !std::in_range<T>(*v)) {
    return Status::invalid_argument(
        fmt::format("devices.{} must be a non-negative integer in range", key));
  }
  out = static_cast<T>(*v);
  return Status::ok_status();
}

Status read_rate(const toml::table& devices, const char* key, double& out) {
  if (!devices.contains(key)) return Status::ok_status();
  const auto v = devices[key].value<double>();  // integers convert too
  if (!v || *v < 0) {
    return Status::invalid_argument(fmt::format("devices.{} must be a number >= 0", key));
  }
  out = *v;
  return Status::ok_status();
}

Status load_storage(const toml::table& table, bool& segment_log, bool& apply_while_writing) {
  const toml::table* storage = table["storage"].as_table();
  if (storage == nullptr) return Status::ok_status();
  HERALD_RETURN_IF_ERROR(read_value(*storage, "apply_while_writing", apply_while_writing));
  std::string raft_log = segment_log ? "segments" : "rocksdb";
  HERALD_RETURN_IF_ERROR(read_value(*storage, "raft_log", raft_log));
  if (raft_log != "rocksdb" && raft_log != "segments") {
    return Status::invalid_argument(
        fmt::format("storage.raft_log must be \"rocksdb\" or \"segments\" (got \"{}\")", raft_log));
  }
  segment_log = raft_log == "segments";
  if (apply_while_writing && !segment_log) {
    return Status::invalid_argument(
        "storage.apply_while_writing needs storage.raft_log = \"segments\" (the log in the engine "
        "is written by the replica's own thread)");
  }
  return Status::ok_status();
}

Status load_device_limits(const toml::table& table, server::GatewayLimits& limits) {
  const toml::table* devices = table["devices"].as_table();
  if (devices == nullptr) return Status::ok_status();
  HERALD_RETURN_IF_ERROR(read_rate(*devices, "requests_per_s", limits.device_requests.per_second));
  HERALD_RETURN_IF_ERROR(read_count(*devices, "request_burst", limits.device_requests.burst));
  HERALD_RETURN_IF_ERROR(
      read_rate(*devices, "auths_per_s_per_address", limits.address_auths.per_second));
  HERALD_RETURN_IF_ERROR(
      read_count(*devices, "auth_burst_per_address", limits.address_auths.burst));
  HERALD_RETURN_IF_ERROR(
      read_count(*devices, "max_connections_per_address", limits.max_connections_per_address));
  HERALD_RETURN_IF_ERROR(
      read_count(*devices, "max_sessions_per_device", limits.max_sessions_per_device));
  HERALD_RETURN_IF_ERROR(read_count(*devices, "auth_deadline_ms", limits.auth_deadline_ms));
  HERALD_RETURN_IF_ERROR(
      read_count(*devices, "typing_relay_interval_ms", limits.typing_relay_interval_ms));
  HERALD_RETURN_IF_ERROR(read_count(*devices, "stalled_reader_ms", limits.stalled_reader_ms));
  return Status::ok_status();
}

// The string at <section>.<key> when present; kInvalidArgument naming both when it is not a string.
Status read_section_string(const toml::table& section, std::string_view section_name,
                           const char* key, std::string& out) {
  if (!section.contains(key)) return Status::ok_status();
  if (const auto* v = section[key].as_string()) {
    out = v->get();
    return Status::ok_status();
  }
  return Status::invalid_argument(fmt::format("{}.{} must be a string", section_name, key));
}

// kInvalidArgument naming the first key of `section` not among `known` (a typo would otherwise
// leave a provider silently unconfigured).
Status refuse_unknown_keys(const toml::table& section, std::string_view section_name,
                           std::initializer_list<std::string_view> known) {
  for (const auto& [key, value] : section) {
    if (std::find(known.begin(), known.end(), key.str()) == known.end()) {
      return Status::invalid_argument(fmt::format("{}.{} is not a known key (known: {})",
                                                  section_name, key.str(), fmt::join(known, ", ")));
    }
  }
  return Status::ok_status();
}

// The [<name>] table, or null when the file has none; kInvalidArgument when <name> is not a table.
Result<const toml::table*> section_of(const toml::table& table, const char* name) {
  if (!table.contains(name)) return static_cast<const toml::table*>(nullptr);
  const toml::table* section = table[name].as_table();
  if (section == nullptr) {
    return Status::invalid_argument(fmt::format("{} must be a table ([{}])", name, name));
  }
  return section;
}

Status load_apns(const toml::table& table, ApnsSettings& apns) {
  HERALD_ASSIGN_OR_RETURN(const toml::table* section, section_of(table, "apns"));
  if (section == nullptr) return Status::ok_status();
  HERALD_RETURN_IF_ERROR(refuse_unknown_keys(
      *section, "apns", {"key_file", "key_id", "team_id", "topic", "endpoint", "ca_file"}));
  HERALD_RETURN_IF_ERROR(read_section_string(*section, "apns", "key_file", apns.key_file));
  HERALD_RETURN_IF_ERROR(read_section_string(*section, "apns", "key_id", apns.key_id));
  HERALD_RETURN_IF_ERROR(read_section_string(*section, "apns", "team_id", apns.team_id));
  HERALD_RETURN_IF_ERROR(read_section_string(*section, "apns", "topic", apns.topic));
  HERALD_RETURN_IF_ERROR(read_section_string(*section, "apns", "endpoint", apns.endpoint));
  return read_section_string(*section, "apns", "ca_file", apns.ca_file);
}

Status load_fcm(const toml::table& table, FcmSettings& fcm) {
  HERALD_ASSIGN_OR_RETURN(const toml::table* section, section_of(table, "fcm"));
  if (section == nullptr) return Status::ok_status();
  HERALD_RETURN_IF_ERROR(refuse_unknown_keys(
      *section, "fcm", {"service_account_file", "endpoint", "token_endpoint", "ca_file"}));
  HERALD_RETURN_IF_ERROR(
      read_section_string(*section, "fcm", "service_account_file", fcm.service_account_file));
  HERALD_RETURN_IF_ERROR(read_section_string(*section, "fcm", "endpoint", fcm.endpoint));
  HERALD_RETURN_IF_ERROR(
      read_section_string(*section, "fcm", "token_endpoint", fcm.token_endpoint));
  return read_section_string(*section, "fcm", "ca_file", fcm.ca_file);
}

Status load_webpush(const toml::table& table, WebPushSettings& webpush) {
  HERALD_ASSIGN_OR_RETURN(const toml::table* section, section_of(table, "webpush"));
  if (section == nullptr) return Status::ok_status();
  HERALD_RETURN_IF_ERROR(
      refuse_unknown_keys(*section, "webpush", {"vapid_key_file", "subject", "ca_file"}));
  HERALD_RETURN_IF_ERROR(
      read_section_string(*section, "webpush", "vapid_key_file", webpush.vapid_key_file));
  HERALD_RETURN_IF_ERROR(read_section_string(*section, "webpush", "subject", webpush.subject));
  return read_section_string(*section, "webpush", "ca_file", webpush.ca_file);
}

Status load_signin(const toml::table& table, SignInSettings& signin) {
  HERALD_ASSIGN_OR_RETURN(const toml::table* section, section_of(table, "signin"));
  if (section == nullptr) return Status::ok_status();
  HERALD_RETURN_IF_ERROR(
      refuse_unknown_keys(*section, "signin",
                          {"hs256_secret_file", "public_key_file", "jwks_file", "audience",
                           "issuer", "device_claim", "clock_skew_s"}));
  HERALD_RETURN_IF_ERROR(
      read_section_string(*section, "signin", "hs256_secret_file", signin.hs256_secret_file));
  HERALD_RETURN_IF_ERROR(
      read_section_string(*section, "signin", "public_key_file", signin.public_key_file));
  HERALD_RETURN_IF_ERROR(read_section_string(*section, "signin", "jwks_file", signin.jwks_file));
  HERALD_RETURN_IF_ERROR(read_section_string(*section, "signin", "audience", signin.audience));
  HERALD_RETURN_IF_ERROR(read_section_string(*section, "signin", "issuer", signin.issuer));
  HERALD_RETURN_IF_ERROR(
      read_section_string(*section, "signin", "device_claim", signin.device_claim));
  if (section->contains("clock_skew_s")) {
    const auto skew = integer_of((*section)["clock_skew_s"]);
    if (!skew || *skew < 0 || *skew > crypto::kMaxJwtClockSkewSeconds) {
      return Status::invalid_argument(fmt::format("signin.clock_skew_s must be an integer of 0..{}",
                                                  crypto::kMaxJwtClockSkewSeconds));
    }
    signin.clock_skew_s = *skew;
  }
  const int key_files = static_cast<int>(!signin.hs256_secret_file.empty()) +
                        static_cast<int>(!signin.public_key_file.empty()) +
                        static_cast<int>(!signin.jwks_file.empty());
  if (key_files != 1) {
    return Status::invalid_argument(
        "[signin] needs exactly one of hs256_secret_file, public_key_file and jwks_file");
  }
  return Status::ok_status();
}

Status load_tls(const toml::table& table, TlsSettings& tls) {
  HERALD_ASSIGN_OR_RETURN(const toml::table* section, section_of(table, "tls"));
  if (section == nullptr) return Status::ok_status();
  HERALD_RETURN_IF_ERROR(
      refuse_unknown_keys(*section, "tls", {"cert_file", "key_file", "min_version"}));
  HERALD_RETURN_IF_ERROR(read_section_string(*section, "tls", "cert_file", tls.cert_file));
  HERALD_RETURN_IF_ERROR(read_section_string(*section, "tls", "key_file", tls.key_file));
  return read_section_string(*section, "tls", "min_version", tls.min_version);
}

Status load_webhooks(const toml::table& table, WebhookSettings& webhooks) {
  HERALD_ASSIGN_OR_RETURN(const toml::table* section, section_of(table, "webhooks"));
  if (section == nullptr) return Status::ok_status();
  HERALD_RETURN_IF_ERROR(refuse_unknown_keys(*section, "webhooks", {"timeout_ms", "ca_file"}));
  HERALD_RETURN_IF_ERROR(read_section_string(*section, "webhooks", "ca_file", webhooks.ca_file));
  if (section->contains("timeout_ms")) {
    const auto timeout = integer_of((*section)["timeout_ms"]);
    if (!timeout || *timeout < 1 || *timeout > kMaxWebhookTimeoutMs) {
      return Status::invalid_argument(
          fmt::format("webhooks.timeout_ms must be an integer of 1..{}", kMaxWebhookTimeoutMs));
    }
    webhooks.timeout_ms = *timeout;
  }
  return Status::ok_status();
}

Status load_smtp(const toml::table& table, SmtpSettings& smtp) {
  HERALD_ASSIGN_OR_RETURN(const toml::table* section, section_of(table, "smtp"));
  if (section == nullptr) return Status::ok_status();
  if (section->contains("password")) {
    return Status::invalid_argument(
        "smtp.password is not read from the configuration file: give smtp.password_file (a "
        "file of mode 0600) or the HERALD_SMTP_PASSWORD environment variable");
  }
  HERALD_RETURN_IF_ERROR(refuse_unknown_keys(
      *section, "smtp",
      {"url", "host", "port", "tls", "username", "password_file", "from", "from_name", "ca_file"}));
  HERALD_RETURN_IF_ERROR(read_section_string(*section, "smtp", "url", smtp.url));
  HERALD_RETURN_IF_ERROR(read_section_string(*section, "smtp", "host", smtp.host));
  if (section->contains("port")) {
    const auto port = integer_of((*section)["port"]);
    if (!port || *port < 1 || *port > 65535) {
      return Status::invalid_argument("smtp.port must be an integer from 1 to 65535");
    }
    smtp.port = static_cast<std::uint16_t>(*port);
  }
  HERALD_RETURN_IF_ERROR(read_section_string(*section, "smtp", "tls", smtp.tls));
  HERALD_RETURN_IF_ERROR(read_section_string(*section, "smtp", "username", smtp.username));
  HERALD_RETURN_IF_ERROR(
      read_section_string(*section, "smtp", "password_file", smtp.password_file));
  HERALD_RETURN_IF_ERROR(read_section_string(*section, "smtp", "from", smtp.from));
  HERALD_RETURN_IF_ERROR(read_section_string(*section, "smtp", "from_name", smtp.from_name));
  return read_section_string(*section, "smtp", "ca_file", smtp.ca_file);
}

// An https://host[:port] URL with no path (or "/"), for an endpoint key named `key`.
Result<push::HttpsUrl> endpoint_url(std::string_view url, std::string_view key) {
  Result<push::HttpsUrl> parsed = push::parse_https_url(url);
  if (!parsed.ok()) {
    return Status::invalid_argument(
        fmt::format("{} \"{}\": {}", key, url, parsed.status().message()));
  }
  if (parsed->path != "/") {
    return Status::invalid_argument(
        fmt::format("{} \"{}\" must be https://host[:port], without a path", key, url));
  }
  return parsed;
}

// The file at `path`, at most `max_bytes` of it (one byte more tells it is too large).
// kNotFound when it cannot be read.
Result<std::string> read_small_file(const std::string& path, std::size_t max_bytes,
                                    std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in.good()) {
    return Status::not_found(fmt::format("{} {} cannot be read", what, path));
  }
  std::string bytes;
  bytes.resize(max_bytes + 1);
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (in.bad()) {
    return Status::not_found(fmt::format("{} {} cannot be read", what, path));
  }
  bytes.resize(static_cast<std::size_t>(in.gcount()));
  return bytes;
}

bool readable_by_others(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::perms perms = fs::status(path, ec).permissions();
  return !ec && (perms & (fs::perms::group_read | fs::perms::others_read)) != fs::perms::none;
}

// finalize()'s checks of the provider settings.
Status check_providers(const ServeConfig& config) {
  if (config.apns.configured()) {
    HERALD_RETURN_IF_ERROR(apns_client_config(config.apns).status());
  }
  if (config.fcm.configured()) {
    HERALD_RETURN_IF_ERROR(fcm_client_config(config.fcm).status());
  }
  if (config.webpush.configured()) {
    HERALD_RETURN_IF_ERROR(webpush_client_config(config.webpush).status());
  }
  if (config.smtp.configured()) {
    HERALD_RETURN_IF_ERROR(smtp_client_config(config.smtp).status());
  }
  return Status::ok_status();
}

}  // namespace

bool ApnsSettings::configured() const {
  return !key_file.empty() || !key_id.empty() || !team_id.empty() || !topic.empty() ||
         !endpoint.empty() || !ca_file.empty();
}

bool FcmSettings::configured() const {
  return !service_account_file.empty() || !endpoint.empty() || !token_endpoint.empty() ||
         !ca_file.empty();
}

bool SignInSettings::configured() const {
  return !hs256_secret_file.empty() || !public_key_file.empty() || !jwks_file.empty() ||
         !audience.empty() || !issuer.empty() || !device_claim.empty();
}

bool WebPushSettings::configured() const {
  return !vapid_key_file.empty() || !subject.empty() || !ca_file.empty();
}

bool SmtpSettings::configured() const {
  return !url.empty() || !host.empty() || port != 0 || !tls.empty() || !username.empty() ||
         !password_file.empty() || !password.empty() || !from.empty() || !ca_file.empty();
}

Result<push::ApnsConfig> apns_client_config(const ApnsSettings& settings) {
  for (const auto& [key, value] :
       {std::pair{"apns.key_file", &settings.key_file}, std::pair{"apns.key_id", &settings.key_id},
        std::pair{"apns.team_id", &settings.team_id}, std::pair{"apns.topic", &settings.topic}}) {
    if (value->empty()) {
      return Status::invalid_argument(fmt::format(
          "{} is missing: APNs needs key_file, key_id, team_id and topic (docs/operations.md)",
          key));
    }
  }
  push::ApnsConfig config;
  if (settings.endpoint.empty() || settings.endpoint == "production") {
    config.host = push::kApnsProductionHost;
  } else if (settings.endpoint == "sandbox") {
    config.host = push::kApnsSandboxHost;
  } else {
    HERALD_ASSIGN_OR_RETURN(const push::HttpsUrl url, endpoint_url(settings.endpoint,
                                                                   "apns.endpoint (\"production\", "
                                                                   "\"sandbox\" or an https URL)"));
    config.host = url.host;
    config.port = url.port;
  }
  config.ca_file = settings.ca_file;
  config.key_pem_path = settings.key_file;
  config.key_id = settings.key_id;
  config.team_id = settings.team_id;
  config.topic = settings.topic;
  return config;
}

Result<push::FcmConfig> fcm_client_config(const FcmSettings& settings) {
  if (settings.service_account_file.empty()) {
    return Status::invalid_argument(
        "fcm.service_account_file is missing: FCM needs the service account's key file");
  }
  push::FcmConfig config;
  config.service_account_path = settings.service_account_file;
  if (!settings.endpoint.empty()) {
    HERALD_ASSIGN_OR_RETURN(const push::HttpsUrl url,
                            endpoint_url(settings.endpoint, "fcm.endpoint"));
    config.host = url.host;
    config.port = url.port;
  }
  if (!settings.token_endpoint.empty()) {
    HERALD_ASSIGN_OR_RETURN(const push::HttpsUrl url,
                            endpoint_url(settings.token_endpoint, "fcm.token_endpoint"));
    config.token_host = url.host;
    config.token_port = url.port;
  }
  config.ca_file = settings.ca_file;
  return config;
}

Result<push::WebPushOptions> webpush_client_config(const WebPushSettings& settings) {
  if (settings.vapid_key_file.empty()) {
    return Status::invalid_argument(
        "webpush.vapid_key_file is missing: Web Push needs the application server's VAPID key");
  }
  if (Status s = push::check_vapid_subject(settings.subject); !s.ok()) {
    return Status::invalid_argument(fmt::format("webpush.subject: {}", s.message()));
  }
  push::WebPushOptions options;
  options.vapid_private_key_path = settings.vapid_key_file;
  options.vapid_subject = settings.subject;
  options.ca_file = settings.ca_file;
  options.allow_private_addresses = settings.allow_private_addresses;
  return options;
}

namespace {

// The TLS mode of smtp.tls: "starttls" (or empty), "implicit" (or "tls", email/smtp.h's word),
// "none".
Result<email::SmtpTls> smtp_tls_of(const std::string& tls) {
  if (tls.empty() || tls == "starttls") return email::SmtpTls::kStartTls;
  if (tls == "implicit" || tls == "tls") return email::SmtpTls::kImplicit;
  if (tls == "none") return email::SmtpTls::kNone;
  return Status::invalid_argument(
      fmt::format("smtp.tls must be \"starttls\", \"implicit\" or \"none\", not \"{}\"", tls));
}

std::uint16_t usual_smtp_port(email::SmtpTls tls) {
  switch (tls) {
    case email::SmtpTls::kStartTls: return email::kSmtpSubmissionPort;
    case email::SmtpTls::kImplicit: return email::kSmtpImplicitTlsPort;
    case email::SmtpTls::kNone: return kSmtpRelayPort;
  }
  return email::kSmtpSubmissionPort;
}

// smtp.url into host, port and the TLS mode its scheme implies (smtps: implicit).
Status apply_smtp_url(const SmtpSettings& settings, email::SmtpConfig& config) {
  if (settings.url.find('@') != std::string::npos) {
    // Not echoed: user info in a URL is where a password would be.
    return Status::invalid_argument(
        "smtp.url must not carry user info: give smtp.username, and the password in "
        "smtp.password_file or " +
        std::string(kSmtpPasswordEnv));
  }
  std::string_view rest = settings.url;
  bool implicit = false;
  if (rest.starts_with("smtps://")) {
    implicit = true;
    rest.remove_prefix(std::string_view("smtps://").size());
  } else if (rest.starts_with("smtp://")) {
    rest.remove_prefix(std::string_view("smtp://").size());
  } else {
    return Status::invalid_argument(fmt::format(
        "smtp.url \"{}\" must be smtp://host[:port] or smtps://host[:port]", settings.url));
  }

  // The authority's grammar is an https URL's: parse it as one.
  HERALD_ASSIGN_OR_RETURN(const push::HttpsUrl url,
                          endpoint_url(fmt::format("https://{}", rest), "smtp.url"));
  if (implicit && config.tls != email::SmtpTls::kImplicit) {
    if (!settings.tls.empty()) {
      return Status::invalid_argument(fmt::format(
          "smtp.url is smtps:// (TLS from the first byte) but smtp.tls is \"{}\"", settings.tls));
    }
    config.tls = email::SmtpTls::kImplicit;
  }
  config.host = url.host;
  const bool port_given = rest.find(':') != std::string_view::npos;
  config.port = port_given ? url.port : usual_smtp_port(config.tls);
  return Status::ok_status();
}

}  // namespace

Result<email::SmtpConfig> smtp_client_config(const SmtpSettings& settings) {
  email::SmtpConfig config;
  HERALD_ASSIGN_OR_RETURN(config.tls, smtp_tls_of(settings.tls));
  if (!settings.url.empty()) {
    if (!settings.host.empty() || settings.port != 0) {
      return Status::invalid_argument("smtp.url excludes smtp.host and smtp.port: give one way");
    }
    HERALD_RETURN_IF_ERROR(apply_smtp_url(settings, config));
  } else if (settings.host.empty()) {
    return Status::invalid_argument("smtp needs a server: smtp.url, or smtp.host (and port)");
  } else {
    config.host = settings.host;
    config.port = settings.port != 0 ? settings.port : usual_smtp_port(config.tls);
  }
  if (settings.from.empty()) {
    return Status::invalid_argument(
        "smtp.from is missing: the address escalation emails come from");
  }
  if (!settings.password_file.empty() && !settings.password.empty()) {
    return Status::invalid_argument(
        fmt::format("the SMTP password is given twice, by smtp.password_file and {}: drop one",
                    kSmtpPasswordEnv));
  }
  const bool password_given = !settings.password_file.empty() || !settings.password.empty();
  if (settings.username.empty() && password_given) {
    return Status::invalid_argument("an SMTP password without smtp.username: give the user name");
  }
  if (!settings.username.empty() && !password_given) {
    return Status::invalid_argument(
        fmt::format("smtp.username needs a password: smtp.password_file or {}", kSmtpPasswordEnv));
  }
  config.username = settings.username;
  config.password = settings.password;
  config.from_address = settings.from;
  config.from_name = settings.from_name;
  config.ca_file = settings.ca_file;
  if (const Status s = email::check_smtp_config(config); !s.ok()) {
    return Status::invalid_argument(fmt::format("smtp: {}", s.message()));
  }
  return config;
}

Result<std::string> read_smtp_password(const std::string& path) {
  HERALD_ASSIGN_OR_RETURN(std::string bytes,
                          read_small_file(path, kMaxPasswordFileBytes, "smtp.password_file"));
  if (bytes.size() > kMaxPasswordFileBytes) {
    return Status::invalid_argument(
        fmt::format("smtp.password_file {} is larger than {} bytes", path, kMaxPasswordFileBytes));
  }
  while (!bytes.empty() && (bytes.back() == '\n' || bytes.back() == '\r')) {
    bytes.pop_back();
  }
  if (bytes.empty()) {
    return Status::invalid_argument(fmt::format("smtp.password_file {} is empty", path));
  }
  return bytes;
}

bool TlsSettings::configured() const {
  return !cert_file.empty() || !key_file.empty() || !min_version.empty();
}

Result<server::TlsServerFiles> tls_server_files(const TlsSettings& settings) {
  if (settings.cert_file.empty() || settings.key_file.empty()) {
    return Status::invalid_argument("[tls] needs both cert_file and key_file");
  }
  server::TlsServerFiles files;
  files.cert_file = settings.cert_file;
  files.key_file = settings.key_file;
  if (!settings.min_version.empty()) {
    HERALD_ASSIGN_OR_RETURN(files.min_version, server::parse_tls_min_version(settings.min_version));
  }
  return files;
}

Result<bool> secret_file_readable_by_others(const std::string& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in.good() || in.peek() == std::ifstream::traits_type::eof() || in.bad()) {
    return Status::not_found(fmt::format("{} {} cannot be read (or is empty)", what, path));
  }
  return readable_by_others(path);
}

namespace {

// The field of `config` that the provider key `key` (kProviderSettingNames) names; null when it
// names none.
std::string* provider_field(std::string_view key, ServeConfig& config) {
  const std::array<std::pair<std::string_view, std::string*>, kProviderSettingNames.size()> fields{{
      {"apns.key_id", &config.apns.key_id},
      {"apns.team_id", &config.apns.team_id},
      {"apns.topic", &config.apns.topic},
      {"apns.endpoint", &config.apns.endpoint},
      {"fcm.endpoint", &config.fcm.endpoint},
      {"fcm.token_endpoint", &config.fcm.token_endpoint},
      {"webpush.subject", &config.webpush.subject},
      {"smtp.url", &config.smtp.url},
      {"smtp.username", &config.smtp.username},
      {"smtp.from", &config.smtp.from},
  }};
  for (const auto& [name, field] : fields) {
    if (name == key) return field;
  }
  return nullptr;
}

}  // namespace

void apply_environment(const EnvLookup& getenv, ServeConfig& config) {
  const auto set = [&](const char* name, std::string& out) {
    const char* value = getenv(name);
    if (value != nullptr && *value != '\0') out = value;
  };
  set(kLogFormatEnv, config.log_format);
  set(kApnsKeyFileEnv, config.apns.key_file);
  set(kFcmServiceAccountFileEnv, config.fcm.service_account_file);
  set(kWebPushVapidKeyFileEnv, config.webpush.vapid_key_file);
  set(kSmtpPasswordFileEnv, config.smtp.password_file);
  set(kSmtpPasswordEnv, config.smtp.password);
  if (const char* allow = getenv(kWebPushAllowPrivateAddressesEnv);
      allow != nullptr && std::string_view(allow) == "1") {
    config.webpush.allow_private_addresses = true;
  }
  for (const ProviderSettingName& name : kProviderSettingNames) {
    std::string* field = provider_field(name.key, config);
    HERALD_ASSERT(field != nullptr, "every provider setting name has its field");
    set(name.env, *field);
  }
}

Status apply_provider_flags(const std::vector<std::pair<std::string, std::string>>& settings,
                            ServeConfig& config) {
  for (const auto& [key, value] : settings) {
    std::string* field = provider_field(key, config);
    if (field == nullptr) {
      return Status::invalid_argument(fmt::format("\"{}\" is not a provider setting", key));
    }
    *field = value;
  }
  return Status::ok_status();
}

std::string describe_apns(const push::ApnsConfig& config) {
  return fmt::format(
      "push: apns notifications go to https://{}:{} (topic {}, key id {}, team {}{})", config.host,
      config.port, config.topic, config.key_id, config.team_id,
      config.ca_file.empty() ? "" : fmt::format(", trusting the CAs in {}", config.ca_file));
}

std::string describe_fcm(const push::FcmConfig& config) {
  return fmt::format(
      "push: fcm notifications go to https://{}:{} (service account in {}{}{})", config.host,
      config.port, config.service_account_path,
      config.token_host.empty()
          ? std::string()
          : fmt::format(", tokens from {}:{}", config.token_host, config.token_port),
      config.ca_file.empty() ? "" : fmt::format(", trusting the CAs in {}", config.ca_file));
}

std::string describe_webpush(const push::WebPushOptions& options,
                             const std::string& vapid_public_key) {
  return fmt::format(
      "push: webpush notifications go to each subscription's endpoint (VAPID key in {}, "
      "applicationServerKey {}, subject {}{}{})",
      options.vapid_private_key_path, vapid_public_key, options.vapid_subject,
      options.ca_file.empty() ? "" : fmt::format(", trusting the CAs in {}", options.ca_file),
      options.allow_private_addresses ? ", private addresses allowed" : "");
}

std::string describe_smtp(const email::SmtpConfig& config) {
  return fmt::format(
      "email: escalation emails go to SMTP server {}:{} (tls {}, {}, from {}{})", config.host,
      config.port, email::smtp_tls_name(config.tls),
      config.username.empty() ? std::string("no AUTH") : fmt::format("AUTH as {}", config.username),
      config.from_address,
      config.ca_file.empty() ? "" : fmt::format(", trusting the CAs in {}", config.ca_file));
}

Result<std::map<std::uint64_t, std::string>> parse_peers(const std::string& spec) {
  std::map<std::uint64_t, std::string> peers;
  std::string_view rest = spec;
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    const auto eq = item.find('=');
    if (eq == std::string_view::npos || eq + 1 >= item.size()) {
      return Status::invalid_argument(fmt::format("peer \"{}\" is not ID=HOST:PORT", item));
    }
    HERALD_ASSIGN_OR_RETURN(const std::uint64_t id, parse_id(item.substr(0, eq)));
    if (!peers.emplace(id, std::string(item.substr(eq + 1))).second) {
      return Status::invalid_argument(fmt::format("peer id {} appears twice", id));
    }
  }
  return peers;
}

Status load_toml(const std::string& path, ServeConfig& config) {
  std::ifstream in(path, std::ios::binary);
  if (!in.good()) {
    return Status::not_found(fmt::format("config file {} cannot be read", path));
  }
  // peek() turns a failed read (a directory, say) into badbit rather than an exception.
  std::ostringstream text;
  if (in.peek() != std::ifstream::traits_type::eof()) {
    text << in.rdbuf();
  }
  if (in.bad()) {
    return Status::not_found(fmt::format("config file {} cannot be read", path));
  }
  return load_toml_text(text.str(), path, config);
}

Status load_toml_text(std::string_view text, const std::string& source, ServeConfig& config) {
  toml::table table;
  try {
    table = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    return Status::invalid_argument(fmt::format("{}: {}", source, e.description()));
  }
  if (table.contains("id")) {
    const auto id = integer_of(table["id"]);
    if (!id) {
      return Status::invalid_argument("id must be an integer");
    }
    if (*id <= 0) {
      return Status::invalid_argument("id must be positive");
    }
    config.id = static_cast<std::uint64_t>(*id);
  }
  HERALD_RETURN_IF_ERROR(read_value(table, "data", config.data_dir));
  HERALD_RETURN_IF_ERROR(read_value(table, "client", config.client));
  HERALD_RETURN_IF_ERROR(read_value(table, "peer", config.peer));
  HERALD_RETURN_IF_ERROR(read_value(table, "cluster", config.cluster));
  HERALD_RETURN_IF_ERROR(read_value(table, "log_level", config.log_level));
  HERALD_RETURN_IF_ERROR(read_value(table, "log_format", config.log_format));
  HERALD_RETURN_IF_ERROR(read_value(table, "tick_ms", config.tick_ms));
  HERALD_RETURN_IF_ERROR(read_value(table, "admin_token", config.admin_token));
  HERALD_RETURN_IF_ERROR(read_value(table, "push_journal", config.push_journal));
  HERALD_RETURN_IF_ERROR(read_value(table, "email_journal", config.email_journal));
  HERALD_RETURN_IF_ERROR(read_value(table, "election_ticks", config.election_ticks));
  HERALD_RETURN_IF_ERROR(read_value(table, "heartbeat_ticks", config.heartbeat_ticks));
  HERALD_RETURN_IF_ERROR(read_value(table, "cluster_secret_file", config.cluster_secret_file));
  HERALD_RETURN_IF_ERROR(read_value(table, "insecure_peers", config.insecure_peers));
  HERALD_RETURN_IF_ERROR(read_value(table, "join", config.join));
  if (table.contains("min_free_mb")) {
    const auto mb = integer_of(table["min_free_mb"]);
    if (!mb || *mb < 0) {
      return Status::invalid_argument("min_free_mb must be a non-negative integer (MiB)");
    }
    config.min_free_mb = static_cast<std::uint64_t>(*mb);
  }
  if (table.contains("max_connections")) {
    const auto n = integer_of(table["max_connections"]);
    if (!n || *n < 1) {
      return Status::invalid_argument("max_connections must be a positive integer");
    }
    config.max_connections = static_cast<std::size_t>(*n);
  }
  HERALD_RETURN_IF_ERROR(load_storage(table, config.segment_log, config.apply_while_writing));
  HERALD_RETURN_IF_ERROR(load_device_limits(table, config.device_limits));
  HERALD_RETURN_IF_ERROR(load_apns(table, config.apns));
  HERALD_RETURN_IF_ERROR(load_fcm(table, config.fcm));
  HERALD_RETURN_IF_ERROR(load_webpush(table, config.webpush));
  HERALD_RETURN_IF_ERROR(load_smtp(table, config.smtp));
  HERALD_RETURN_IF_ERROR(load_signin(table, config.signin));
  HERALD_RETURN_IF_ERROR(load_tls(table, config.tls));
  HERALD_RETURN_IF_ERROR(load_webhooks(table, config.webhooks));
  if (auto spec = table["peers"].value<std::string>()) {
    HERALD_ASSIGN_OR_RETURN(config.peers, parse_peers(*spec));
  } else if (const auto* peers = table["peers"].as_table()) {
    config.peers.clear();
    for (const auto& [key, value] : *peers) {
      HERALD_ASSIGN_OR_RETURN(const std::uint64_t id, parse_id(key.str()));
      const auto address = value.value<std::string>();
      if (!address) {
        return Status::invalid_argument(fmt::format("peers.{} must be a string", key.str()));
      }
      config.peers[id] = *address;
    }
  }
  return Status::ok_status();
}

Status finalize(ServeConfig& config) {
  if (config.id == 0) {
    return Status::invalid_argument("--id must be positive");
  }
  if (!parse_log_format(config.log_format)) {
    return Status::invalid_argument(
        fmt::format("log_format \"{}\" is neither \"text\" nor \"json\"", config.log_format));
  }
  if (config.peers.empty()) {
    config.peers[config.id] = config.peer;
  }
  if (!config.peers.contains(config.id)) {
    return Status::invalid_argument(
        fmt::format("--peers does not list this node's id {}", config.id));
  }
  if (config.join && config.peers.size() < 2) {
    return Status::invalid_argument(
        "--join needs --peers naming at least one running member besides this node");
  }
  if (config.peers.size() > 1 && config.cluster_secret_file.empty() && !config.insecure_peers) {
    return Status::invalid_argument(fmt::format(
        "a cluster of {} nodes needs a cluster secret so that peers authenticate each other: "
        "give --cluster-secret-file FILE (or HERALD_CLUSTER_SECRET_FILE); --insecure-peers runs "
        "without one, unauthenticated (see docs/operations.md)",
        config.peers.size()));
  }
  if (!config.cluster_secret_file.empty() && config.insecure_peers) {
    return Status::invalid_argument(
        "--insecure-peers and a cluster secret file exclude each other: drop one");
  }
  const server::GatewayLimits& limits = config.device_limits;
  if ((limits.device_requests.per_second > 0 && limits.device_requests.burst < 1) ||
      (limits.address_auths.per_second > 0 && limits.address_auths.burst < 1)) {
    return Status::invalid_argument("a device rate limit above 0 needs a burst of at least 1");
  }
  if (limits.max_sessions_per_device < 1 || limits.auth_deadline_ms < 1 ||
      limits.stalled_reader_ms < 1) {
    return Status::invalid_argument(
        "devices.max_sessions_per_device, devices.auth_deadline_ms and devices.stalled_reader_ms "
        "must be at least 1");
  }
  if (config.min_free_mb > kMaxMinFreeMb) {
    return Status::invalid_argument(fmt::format("min_free_mb {} is above the largest floor, {}",
                                                config.min_free_mb, kMaxMinFreeMb));
  }
  if (config.max_connections < 1 || config.max_connections > kMaxMaxConnections) {
    return Status::invalid_argument(fmt::format("max_connections {} is outside 1..{}",
                                                config.max_connections, kMaxMaxConnections));
  }
  if (config.tick_ms <= 0 || config.heartbeat_ticks <= 0 ||
      config.election_ticks <= config.heartbeat_ticks) {
    return Status::invalid_argument("need tick_ms > 0 and 0 < heartbeat_ticks < election_ticks");
  }
  if (config.tls.configured()) {
    HERALD_RETURN_IF_ERROR(tls_server_files(config.tls).status());
  }
  return check_providers(config);
}

Result<ClusterSecret> load_cluster_secret(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in.good()) {
    return Status::not_found(fmt::format("cluster secret file {} cannot be read", path));
  }
  std::string bytes;
  bytes.resize(kMaxClusterSecretFileBytes + 1);
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  bytes.resize(static_cast<std::size_t>(in.gcount()));
  if (bytes.size() > kMaxClusterSecretFileBytes) {
    return Status::invalid_argument(fmt::format("cluster secret file {} is larger than {} bytes",
                                                path, kMaxClusterSecretFileBytes));
  }
  while (!bytes.empty() && (bytes.back() == '\n' || bytes.back() == '\r' || bytes.back() == ' ' ||
                            bytes.back() == '\t')) {
    bytes.pop_back();
  }
  if (const Status s = server::check_cluster_secret(bytes); !s.ok()) {
    return Status::invalid_argument(fmt::format(
        "cluster secret file {}: {} (generate one with `head -c 32 /dev/urandom | base64`)", path,
        s.message()));
  }
  ClusterSecret secret{.bytes = std::move(bytes)};
  secret.readable_by_others = readable_by_others(path);
  return secret;
}

}  // namespace herald::app
