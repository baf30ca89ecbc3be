// ServeConfig: everything `herald serve` needs, from flags or a TOML file (--config FILE).
//
// TOML keys mirror the flags (docs/operations.md):
//   id = 1
//   data = "./herald-data"
//   client = "127.0.0.1:7400"
//   peer = "127.0.0.1:7401"
//   peers = "1=127.0.0.1:7401,2=127.0.0.1:7411,3=127.0.0.1:7421"   # or a table { 1 = "..." }
//   cluster = "herald"
//   log_level = "info"
//   log_format = "text"            # or "json" (docs/operations.md, "Logs")
//   tick_ms = 10
//   election_ticks = 6
//   heartbeat_ticks = 2
//   admin_token = "..."            # the messaging admin API's credential; empty disables it
//   push_journal = "push.jsonl"    # platforms without a client: record their pushes as JSON lines
//   email_journal = "email.jsonl"  # without [smtp]: record escalation emails as JSON lines
//   cluster_secret_file = "/etc/herald/cluster-secret"  # the secret peers prove to each other
//   insecure_peers = false         # true: several nodes without a secret (not authenticated)
//   join = false                   # true: a new node joining a running cluster
//   min_free_mb = 1024             # free-space floor of the data disk (docs/operations.md)
//   max_connections = 100000       # open client connections (HTTP and WebSocket) at most
//   [storage]
//   raft_log = "rocksdb"           # or "segments": the raft log in segment files (data/raftlog)
//   apply_while_writing = false    # true: segment-log writes on their own thread, behind apply
//   [devices]                      # limits on device connections (docs/protocol.md, "Limits")
//   requests_per_s = 100           # per device, after auth; 0: unlimited
//   request_burst = 400
//   auths_per_s_per_address = 50   # auth frames per client IP; 0: unlimited
//   auth_burst_per_address = 500
//   max_connections_per_address = 1024   # 0: unlimited
//   max_sessions_per_device = 4
//   auth_deadline_ms = 10000
//   typing_relay_interval_ms = 2000
//   stalled_reader_ms = 30000      # a stream paused on a full queue this long closes (1008)
//   [apns]                         # push to Apple devices (docs/operations.md, "Push and email")
//   key_file = "/etc/herald/apns-key.p8"   # the .p8 signing key; secret, mode 0600
//   key_id = "ABC123DEFG"
//   team_id = "DEF123GHIJ"
//   topic = "com.example.chat"     # the app's bundle id
//   endpoint = "production"        # "production", "sandbox" or an https://host[:port] URL
//   ca_file = ""                   # CAs to trust instead of the system's (test doubles)
//   [fcm]                          # push to Android devices
//   service_account_file = "/etc/herald/fcm-service-account.json"   # secret, mode 0600
//   endpoint = "https://fcm.googleapis.com"   # optional override
//   token_endpoint = ""            # optional: where token_uri's requests connect instead
//   ca_file = ""
//   [webpush]                      # push to browsers (RFC 8030, VAPID, aes128gcm)
//   vapid_key_file = "/etc/herald/vapid-key.pem"   # P-256 PKCS#8 PEM; secret, mode 0600
//   subject = "mailto:ops@example.com"   # the VAPID contact: mailto: or https:
//   ca_file = ""
//   [smtp]                         # escalation emails
//   url = "smtp://mail.example.com:587"   # or host = "..." and port = 587
//   tls = "starttls"               # "starttls" (default), "implicit" or "none"
//   username = "herald"            # AUTH when set
//   password_file = "/etc/herald/smtp-password"   # or HERALD_SMTP_PASSWORD; never inline
//   from = "herald@example.com"
//   from_name = "Herald"
//   ca_file = ""
//   [signin]                       # devices may sign in with the app's own JWTs
//   hs256_secret_file = "/etc/herald/signin-secret"   # or public_key_file, or jwks_file
//   audience = "herald"            # optional: "aud" must name it
//   issuer = "https://app.example" # optional: "iss" must equal it
//   device_claim = "device_id"     # the claim holding the device id
//   clock_skew_s = 60              # tolerance for the issuer's clock, 0..300
//   [tls]                          # HTTPS and WSS on the client port (docs/operations.md, "TLS")
//   cert_file = "/etc/herald/tls/fullchain.pem"   # the certificate, then its intermediates
//   key_file = "/etc/herald/tls/key.pem"          # its private key; not readable by every user
//   min_version = "1.2"            # or "1.3"
//   [webhooks]                     # the HTTP client of webhook deliveries (docs/webhooks.md)
//   timeout_ms = 10000             # one request at most, connect included; 1..25000
//   ca_file = ""                   # CAs to trust for https endpoints instead of the system's
// Flags given on the command line override the file; environment variables (docs/operations.md)
// override the file and are overridden by flags. The providers' keys other than the secret files
// (kProviderSettingNames) each have a flag and an environment variable too.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"
#include "email/smtp.h"
#include "push/apns.h"
#include "push/fcm.h"
#include "push/webpush.h"
#include "server/gateway.h"
#include "server/tls.h"

namespace herald::app {

inline constexpr std::uint64_t kDefaultMinFreeMb = 1024;
// The largest floor accepted (1 PiB in MiB): a bigger figure is a typo, not a disk.
inline constexpr std::uint64_t kMaxMinFreeMb = 1ULL << 30U;
// Open client connections at most, by default: a node holds 50,000 connected devices with room
// to spare. Each needs a file descriptor; `herald serve` raises its descriptor limit to fit
// (docs/operations.md, "Connections").
inline constexpr std::size_t kDefaultMaxConnections = 100'000;
// The largest max_connections accepted: beyond it a figure is a typo (the kernel's own ceiling on
// descriptors per process, fs.nr_open, defaults to 1,048,576).
inline constexpr std::size_t kMaxMaxConnections = 1'000'000;
// webhooks.timeout_ms at most (webhooks::kMaxPostTimeoutMs).
inline constexpr std::int64_t kMaxWebhookTimeoutMs = 25'000;

// APNs: where to push Apple devices and with which credentials. Configured when any field is set;
// then key_file, key_id, team_id and topic are required (finalize()).
struct ApnsSettings {
  std::string key_file;  // the .p8 signing key (PKCS#8 PEM, P-256); its bytes are secret
  std::string key_id;
  std::string team_id;
  std::string topic;
  std::string endpoint;  // "production" (when empty), "sandbox" or https://host[:port]
  std::string ca_file;   // CAs to trust instead of the system's; empty: the system's

  [[nodiscard]] bool configured() const;
};

// FCM: configured when any field is set; then service_account_file is required.
struct FcmSettings {
  std::string service_account_file;  // the service-account key JSON; secret
  std::string endpoint;              // https://host[:port]; empty: https://fcm.googleapis.com
  // Where the token endpoint is reached instead of the key's token_uri host and port (the
  // assertion's audience and the request path stay token_uri's); empty: token_uri's.
  std::string token_endpoint;
  std::string ca_file;

  [[nodiscard]] bool configured() const;
};

// Web Push: configured when any field is set; then vapid_key_file and subject are required.
struct WebPushSettings {
  std::string vapid_key_file;  // the application server's VAPID key, PKCS#8 PEM; secret
  std::string subject;         // VAPID "sub": a mailto: or https: URI
  std::string ca_file;         // CAs to trust instead of the system's; empty: the system's
  // Lets subscription endpoints resolve to loopback and private addresses. Not a configuration
  // key: only `herald serve --demo` sets it, for its Web Push double on 127.0.0.1, and the
  // environment variable kWebPushAllowPrivateAddressesEnv, for end-to-end tests that run a node
  // against a double of their own.
  bool allow_private_addresses = false;

  [[nodiscard]] bool configured() const;
};

// Sign-in with the app's own tokens ([signin], docs/operations.md "Sign-in tokens"): configured
// when any field is set; then exactly one of the three key files is required.
struct SignInSettings {
  std::string hs256_secret_file;  // the HS256 shared secret (its bytes, trailing newline cut)
  std::string public_key_file;    // an RS256 or ES256 public key, PEM
  std::string jwks_file;          // a JWKS document
  std::string audience;           // empty: "aud" is not checked
  std::string issuer;             // empty: "iss" is not checked
  std::string device_claim;       // empty: server::kDefaultDeviceClaim
  std::int64_t clock_skew_s = server::kDefaultSignInClockSkewS;

  [[nodiscard]] bool configured() const;
};

// TLS on the client port ([tls], docs/operations.md "TLS"): configured when any field is set; then
// cert_file and key_file are required. Not configured: the client port speaks plaintext.
struct TlsSettings {
  std::string cert_file;    // PEM chain, the server's certificate first
  std::string key_file;     // PEM private key; refused when every user may read it
  std::string min_version;  // "1.2" (when empty) or "1.3"

  [[nodiscard]] bool configured() const;
};

// The webhook HTTP client ([webhooks], docs/webhooks.md). Endpoints themselves are replicated
// state, registered through the admin API.
struct WebhookSettings {
  std::int64_t timeout_ms = 10'000;  // webhooks::kDefaultPostTimeoutMs
  std::string ca_file;               // empty: the system's CAs
};

// SMTP: configured when any field other than the password is set (or a password given); then a
// server (url or host) and from are required.
struct SmtpSettings {
  std::string url;  // smtp://host[:port] or smtps://host[:port]; excludes host and port
  std::string host;
  std::uint16_t port = 0;  // 0: the TLS mode's usual port (587 STARTTLS, 465 implicit, 25 none)
  std::string tls;         // "starttls" (when empty), "implicit" or "none"
  std::string username;    // AUTH when not empty
  std::string password_file;
  // The password itself, from HERALD_SMTP_PASSWORD (apply_environment()); never from the TOML
  // file, never logged.
  std::string password;
  std::string from;
  std::string from_name = "Herald";
  std::string ca_file;

  [[nodiscard]] bool configured() const;
};

struct ServeConfig {
  std::uint64_t id = 1;
  std::string data_dir = "./herald-data";
  std::string client = "127.0.0.1:7400";
  std::string peer = "127.0.0.1:7401";
  std::map<std::uint64_t, std::string> peers;  // empty: a single node made of just this one
  std::string cluster = "herald";
  std::string log_level = "info";
  std::string log_format = "text";  // "text" or "json" (base/log.h)
  int tick_ms = 10;
  int election_ticks = 6;
  int heartbeat_ticks = 2;
  std::string admin_token;    // empty: the admin API answers 403
  std::string push_journal;   // empty: pushes are kept in memory only
  std::string email_journal;  // empty: emails are kept in memory only
  // The file holding the cluster secret (docs/operations.md). Required with more than one voter
  // unless insecure_peers; a single node needs none.
  std::string cluster_secret_file;
  bool insecure_peers = false;
  // A brand-new node that joins a running cluster instead of bootstrapping one: `peers` names
  // the running members (and this node), and an operator adds it as a learner (docs/operations.md,
  // "Membership"). Ignored once the data directory holds state.
  bool join = false;
  // Below this much free space on the data disk (MiB), the cluster refuses new content.
  std::uint64_t min_free_mb = kDefaultMinFreeMb;
  std::size_t max_connections = kDefaultMaxConnections;  // 1..kMaxMaxConnections
  // [storage] raft_log: true for "segments" (the raft log in segment files under
  // <data>/raftlog, docs/storage-format.md; the default), false for "rocksdb" (the log in the
  // engine). A data directory whose log is in the engine moves it to segments when it opens.
  bool segment_log = true;
  // [storage] apply_while_writing: with segments, a round's log write runs on a thread of its
  // own while the replica applies entries already durable (NodeHostOptions::apply_while_writing).
  bool apply_while_writing = false;
  server::GatewayLimits device_limits;
  ApnsSettings apns;
  FcmSettings fcm;
  WebPushSettings webpush;
  SmtpSettings smtp;
  SignInSettings signin;
  TlsSettings tls;
  WebhookSettings webhooks;
};

// The cluster secret read from its file, and whether the file's mode lets others than its owner
// read it (worth a warning, not a refusal).
struct ClusterSecret {
  std::string bytes;
  bool readable_by_others = false;
};

// Parses "1=host:port,2=host:port". kInvalidArgument names the offending item.
[[nodiscard]] Result<std::map<std::uint64_t, std::string>> parse_peers(const std::string& spec);
// Loads a TOML file over `config`. kInvalidArgument / kNotFound with the file's error.
[[nodiscard]] Status load_toml(const std::string& path, ServeConfig& config);
// Loads TOML text over `config`, as load_toml() does with a file's bytes; `source` names the text
// in errors. kInvalidArgument for text that is not TOML or a key of the wrong type or range. Any
// bytes are accepted as input; never throws.
[[nodiscard]] Status load_toml_text(std::string_view text, const std::string& source,
                                    ServeConfig& config);
// Checks the combination (id among peers, sane timings, a secret file or insecure_peers with
// more than one voter, not both, a known log format). Fills peers for a single node.
[[nodiscard]] Status finalize(ServeConfig& config);
// Reads the secret from `path`: the file's bytes, without trailing whitespace (so that a line
// written by `base64` works). Errors: kNotFound when the file cannot be read; kInvalidArgument,
// naming the file, when it is larger than kMaxClusterSecretFileBytes or the secret is shorter
// than server::kMinClusterSecretBytes.
[[nodiscard]] Result<ClusterSecret> load_cluster_secret(const std::string& path);

// A secret file larger than this is refused (it is not a secret file).
inline constexpr std::size_t kMaxClusterSecretFileBytes = 4096;
// The port of an SMTP relay without TLS (smtp.tls = "none" and no port given).
inline constexpr std::uint16_t kSmtpRelayPort = 25;
// An SMTP password file larger than this is refused.
inline constexpr std::size_t kMaxPasswordFileBytes = 4096;

// The environment variables the providers read (apply_environment()).
inline constexpr char kApnsKeyFileEnv[] = "HERALD_APNS_KEY_FILE";
inline constexpr char kFcmServiceAccountFileEnv[] = "HERALD_FCM_SERVICE_ACCOUNT_FILE";
inline constexpr char kWebPushVapidKeyFileEnv[] = "HERALD_WEBPUSH_VAPID_KEY_FILE";
inline constexpr char kSmtpPasswordFileEnv[] = "HERALD_SMTP_PASSWORD_FILE";
inline constexpr char kSmtpPasswordEnv[] = "HERALD_SMTP_PASSWORD";
// Set to exactly "1", lets Web Push endpoints resolve to loopback and private addresses
// (WebPushSettings::allow_private_addresses): for tests of a node against a Web Push double on
// 127.0.0.1, never in production. No configuration key or flag sets it.
inline constexpr char kWebPushAllowPrivateAddressesEnv[] = "HERALD_WEBPUSH_ALLOW_PRIVATE_ADDRESSES";
// The log line format, "text" or "json" (apply_environment()).
inline constexpr char kLogFormatEnv[] = "HERALD_LOG_FORMAT";

// A provider key that the environment and a flag may give besides the file: its TOML key, its
// environment variable and its `herald serve` flag. None is a secret (key bytes and passwords
// stay in files, or in kSmtpPasswordEnv), so each may appear in the start-up lines.
struct ProviderSettingName {
  std::string_view key;
  const char* env;
  std::string_view flag;
};
// FCM's project id has no setting: it is the service account key's project_id.
inline constexpr std::array<ProviderSettingName, 10> kProviderSettingNames{{
    {"apns.key_id", "HERALD_APNS_KEY_ID", "--apns-key-id"},
    {"apns.team_id", "HERALD_APNS_TEAM_ID", "--apns-team-id"},
    {"apns.topic", "HERALD_APNS_TOPIC", "--apns-topic"},
    {"apns.endpoint", "HERALD_APNS_ENDPOINT", "--apns-endpoint"},
    {"fcm.endpoint", "HERALD_FCM_ENDPOINT", "--fcm-endpoint"},
    {"fcm.token_endpoint", "HERALD_FCM_TOKEN_ENDPOINT", "--fcm-token-endpoint"},
    {"webpush.subject", "HERALD_WEBPUSH_SUBJECT", "--webpush-subject"},
    {"smtp.url", "HERALD_SMTP_URL", "--smtp-url"},
    {"smtp.username", "HERALD_SMTP_USERNAME", "--smtp-username"},
    {"smtp.from", "HERALD_SMTP_FROM", "--smtp-from"},
}};

// Reads one environment variable: its value, or null when it is not set (std::getenv in
// production, a map in tests).
using EnvLookup = std::function<const char*(const char*)>;

// Sets the keys the environment gives over those of the file: the log format (kLogFormatEnv), the
// provider key files' paths (kApnsKeyFileEnv, kFcmServiceAccountFileEnv, kWebPushVapidKeyFileEnv,
// kSmtpPasswordFileEnv), the SMTP password itself (kSmtpPasswordEnv) and every key of
// kProviderSettingNames. An empty variable counts as unset. kWebPushAllowPrivateAddressesEnv = "1"
// turns webpush.allow_private_addresses on; any other value leaves it as it is.
void apply_environment(const EnvLookup& getenv, ServeConfig& config);

// Sets the provider keys given by flags, (TOML key, value) in the order given, over the file and
// the environment. kInvalidArgument naming the key when it is not one of kProviderSettingNames.
[[nodiscard]] Status apply_provider_flags(
    const std::vector<std::pair<std::string, std::string>>& settings, ServeConfig& config);

// Whether a file's mode lets others than its owner read it: kNotFound naming `what` and the path
// when the file cannot be opened for reading.
[[nodiscard]] Result<bool> secret_file_readable_by_others(const std::string& path,
                                                          std::string_view what);

// The clients' configurations. Each checks its settings' combination (finalize() calls them) and
// reads no file: the clients read their key files when they are created. kInvalidArgument naming
// the key ("apns.endpoint", "smtp.tls", ...), never a secret.
[[nodiscard]] Result<push::ApnsConfig> apns_client_config(const ApnsSettings& settings);
[[nodiscard]] Result<push::FcmConfig> fcm_client_config(const FcmSettings& settings);
// Endpoints come from each device's subscription, so only the key, the contact and the CAs are
// configured; private addresses stay refused (push/webpush.h).
[[nodiscard]] Result<push::WebPushOptions> webpush_client_config(const WebPushSettings& settings);
// The files and version of [tls] (server/tls.h); reads no file. kInvalidArgument naming the key
// when cert_file or key_file is missing or min_version is neither "1.2" nor "1.3".
[[nodiscard]] Result<server::TlsServerFiles> tls_server_files(const TlsSettings& settings);
// Without the password: the caller reads password_file (read_smtp_password) or takes the
// environment's.
[[nodiscard]] Result<email::SmtpConfig> smtp_client_config(const SmtpSettings& settings);

// The password in `path`: its bytes without a trailing line break. kNotFound when the file cannot
// be read, kInvalidArgument when it is empty or larger than kMaxPasswordFileBytes. The error
// names the file, never its content.
[[nodiscard]] Result<std::string> read_smtp_password(const std::string& path);

// One line each, for the start-up log: where the provider sends, never a credential (the key id,
// team id, service account's file and SMTP user name are named; key bytes and passwords never).
[[nodiscard]] std::string describe_apns(const push::ApnsConfig& config);
[[nodiscard]] std::string describe_fcm(const push::FcmConfig& config);
// Names the key file and the public key browsers subscribe with (applicationServerKey).
[[nodiscard]] std::string describe_webpush(const push::WebPushOptions& options,
                                           const std::string& vapid_public_key);
[[nodiscard]] std::string describe_smtp(const email::SmtpConfig& config);

}  // namespace herald::app
