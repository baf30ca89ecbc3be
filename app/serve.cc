#include "app/serve.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "app/demo.h"
#include "app/demo_doubles.h"
#include "base/log.h"
#include "base/metrics.h"
#include "email/smtp.h"
#include "messaging/host.h"
#include "messaging/providers.h"
#include "push/apns.h"
#include "push/common.h"
#include "push/fcm.h"
#include "push/guard.h"
#include "push/webpush.h"
#include "server/chat_page.h"
#include "server/cluster_api.h"
#include "server/damage_report.h"
#include "server/dashboard.h"
#include "server/gateway.h"
#include "server/host_gateway_node.h"
#include "server/http_server.h"
#include "server/kv_api.h"
#include "server/messaging_api.h"
#include "server/node_host.h"
#include "server/operator_gate.h"
#include "server/recording_provider.h"
#include "server/tls.h"
#include "server/workflow_api.h"
#include "webhooks/curl_poster.h"

namespace herald::app {

namespace {

constexpr int kExitConfig = 2;
constexpr int kExitRuntime = 1;
// The data directory failed its checks: restarting cannot help (docs/operations.md).
constexpr int kExitDamagedData = 3;
// A store that cannot open because its disk is full is tried again this often (ms), and the wait
// is logged this often (ms).
constexpr std::int64_t kFullDiskRetryMs = 1'000;
constexpr std::int64_t kFullDiskLogIntervalMs = 60'000;
constexpr std::size_t kHttpIoThreads = 1;
// File descriptors kept for everything but client connections: RocksDB's files, peer
// connections, logs and journals.
constexpr std::size_t kReservedDescriptors = 4096;

// Raises the soft limit on open files so that `wanted` client connections fit beside
// kReservedDescriptors, as far as the hard limit allows, and returns how many connections fit:
// `wanted`, or fewer (with a warning) when the hard limit is lower.
std::size_t fit_connections_to_descriptors(std::size_t wanted) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return wanted;
  }
  const rlim_t need = wanted + kReservedDescriptors;
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < need) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max == RLIM_INFINITY ? need : std::min(limit.rlim_max, need);
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) {
      limit = raised;
    }
  }
  if (limit.rlim_cur == RLIM_INFINITY || limit.rlim_cur >= need) {
    return wanted;
  }
  const std::size_t fits = limit.rlim_cur > 2 * kReservedDescriptors
                               ? limit.rlim_cur - kReservedDescriptors
                               : limit.rlim_cur / 2;
  spdlog::warn(
      "max_connections {} lowered to {}: the open-file limit is {} (raise the hard limit: ulimit "
      "-Hn, or LimitNOFILE= in a systemd unit)",
      wanted, fits, static_cast<std::uint64_t>(limit.rlim_cur));
  return fits;
}

Result<ServeConfig> resolve(const ServeFlags& flags) {
  ServeConfig config;
  if (!flags.config_file.empty()) {
    HERALD_RETURN_IF_ERROR(load_toml(flags.config_file, config));
  }
  if (flags.id) config.id = *flags.id;
  if (flags.data_dir) config.data_dir = *flags.data_dir;
  if (flags.client) config.client = *flags.client;
  if (flags.peer) config.peer = *flags.peer;
  if (flags.cluster) config.cluster = *flags.cluster;
  if (flags.log_level) config.log_level = *flags.log_level;
  if (flags.election_ticks) config.election_ticks = *flags.election_ticks;
  if (flags.heartbeat_ticks) config.heartbeat_ticks = *flags.heartbeat_ticks;
  if (flags.tick_ms) config.tick_ms = *flags.tick_ms;
  if (const char* token = std::getenv("HERALD_ADMIN_TOKEN"); token != nullptr) {
    config.admin_token = token;
  }
  if (flags.admin_token) config.admin_token = *flags.admin_token;
  if (flags.push_journal) config.push_journal = *flags.push_journal;
  if (flags.email_journal) config.email_journal = *flags.email_journal;
  if (const char* file = std::getenv("HERALD_CLUSTER_SECRET_FILE"); file != nullptr) {
    config.cluster_secret_file = file;
  }
  if (flags.cluster_secret_file) config.cluster_secret_file = *flags.cluster_secret_file;
  apply_environment([](const char* name) { return std::getenv(name); }, config);
  if (flags.apns_key_file) config.apns.key_file = *flags.apns_key_file;
  if (flags.fcm_service_account_file) {
    config.fcm.service_account_file = *flags.fcm_service_account_file;
  }
  if (flags.webpush_vapid_key_file) {
    config.webpush.vapid_key_file = *flags.webpush_vapid_key_file;
  }
  if (flags.smtp_password_file) config.smtp.password_file = *flags.smtp_password_file;
  HERALD_RETURN_IF_ERROR(apply_provider_flags(flags.provider_settings, config));
  if (flags.log_format) config.log_format = *flags.log_format;
  if (flags.insecure_peers) config.insecure_peers = true;
  if (flags.join) config.join = true;
  if (flags.min_free_mb) config.min_free_mb = *flags.min_free_mb;
  if (flags.max_connections) config.max_connections = *flags.max_connections;
  if (flags.peers) {
    HERALD_ASSIGN_OR_RETURN(config.peers, parse_peers(*flags.peers));
  }
  HERALD_RETURN_IF_ERROR(finalize(config));
  return config;
}

server::NodeHostOptions host_options(const ServeConfig& config) {
  server::NodeHostOptions o;
  o.node.id = config.id;
  for (const auto& [id, address] : config.peers) {
    o.node.initial_voters.push_back(id);
  }
  o.node.join = config.join;
  o.node.election_ticks = config.election_ticks;
  o.node.heartbeat_ticks = config.heartbeat_ticks;
  o.node.client_address = config.client;
  o.node.min_free_bytes = config.min_free_mb << 20U;
  o.data_dir = config.data_dir;
  o.segment_log = config.segment_log;
  o.apply_while_writing = config.apply_while_writing;
  o.cluster_name = config.cluster;
  o.peer_listen = config.peer;
  o.peers = config.peers;
  o.insecure_peers = config.insecure_peers;
  o.tick_ms = config.tick_ms;
  return o;
}

// The cluster secret, read from its file; empty when none is configured (a single node, or
// --insecure-peers, which finalize() allows only that way). Logs what the peers will rely on.
Result<std::string> cluster_secret(const ServeConfig& config) {
  if (config.cluster_secret_file.empty()) {
    if (config.insecure_peers) {
      spdlog::warn(
          "--insecure-peers: peer connections are not authenticated; anyone who can "
          "reach the peer port can act as a node of this cluster");
    }
    return std::string();
  }
  HERALD_ASSIGN_OR_RETURN(ClusterSecret secret, load_cluster_secret(config.cluster_secret_file));
  if (secret.readable_by_others) {
    spdlog::warn(
        "cluster secret file {} is readable by other users than its owner; "
        "chmod 600 it",
        config.cluster_secret_file);
  }
  spdlog::info("peers authenticate with the cluster secret in {}", config.cluster_secret_file);
  return std::move(secret.bytes);
}

// The providers the leader's delivery activities call: each service behind its own guard
// (push/guard.h), pushes routed by platform. A platform with a client configured gets it; one
// without gets the recording provider when a journal is configured (nothing leaves the node, the
// journal shows what would have), and none otherwise. Either way its pushes fail with
// push.no_provider and emails with email.no_provider, which the delivery timeline shows (an
// attempt the journal kept has the status "recorded"): nothing is counted as sent.
//
// Shutdown: shutdown_clients() after the node host has stopped (no activity sends any more) and
// before it is destroyed: a client fails its outstanding requests when it goes, and their
// completions reach the host's activities and the guards, which must still exist.
struct Providers {
  // On the heap: the clients and guards keep its address, and Providers is moved.
  std::unique_ptr<SystemClock> clock = std::make_unique<SystemClock>();
  std::unique_ptr<server::RecordingPushProvider> recording_push;    // null: no push journal
  std::unique_ptr<server::RecordingEmailProvider> recording_email;  // null: no email journal
  std::unique_ptr<messaging::EmailProvider> no_email;         // when neither SMTP nor a journal
  std::vector<std::unique_ptr<push::PushGuard>> push_guards;  // one per platform
  std::unique_ptr<push::PushRouter> router;
  std::unique_ptr<push::EmailGuard> email_guard;
  // Declared last, destroyed first (the guards must outlive every completion).
  std::map<std::string, std::unique_ptr<messaging::PushProvider>, std::less<>> push_clients;
  std::unique_ptr<messaging::EmailProvider> email_client;
  std::unique_ptr<webhooks::CurlPoster> webhook_client;  // webhook deliveries' HTTP client

  // Closes the clients: each fails what it has not answered yet and joins its I/O thread.
  void shutdown_clients() {
    if (webhook_client != nullptr) {
      webhook_client.reset();
      spdlog::info("webhooks: HTTP client closed");
    }
    for (auto& [platform, client] : push_clients) {
      client.reset();
      spdlog::info("push: {} client closed", platform);
    }
    if (email_client != nullptr) {
      email_client.reset();
      spdlog::info("email: SMTP client closed");
    }
  }
};

// What escalation emails meet when no SMTP server and no email journal are configured: each fails
// at once with email.no_provider (not retried; the delivery timeline shows it).
class NoEmailProvider final : public messaging::EmailProvider {
 public:
  void send(const messaging::EmailRequest& /*request*/, messaging::ProviderDone done) override {
    done(messaging::ProviderResult::failure(messaging::kEmailNoProvider,
                                            "no email provider configured ([smtp])"));
  }
};

// The push platforms a device may register for (SetPushToken's providers).
const std::vector<std::string>& push_platforms() {
  static const std::vector<std::string> platforms{messaging::kApnsProvider, messaging::kFcmProvider,
                                                  messaging::kWebPushProvider};
  return platforms;
}

// Wraps the providers in their guards and says at start where each platform's pushes go; a
// platform without a provider is named, and its pushes fail with push.no_provider.
void guard_providers(Providers& p) {
  std::map<std::string, messaging::PushProvider*, std::less<>> by_platform;
  for (const std::string& platform : push_platforms()) {
    messaging::PushProvider* inner = p.recording_push.get();
    if (const auto client = p.push_clients.find(platform); client != p.push_clients.end()) {
      inner = client->second.get();
    } else if (inner != nullptr) {
      spdlog::warn(
          "push: {} notifications go to the recording provider (no {} client is configured; "
          "nothing leaves this node, and their delivery timelines say \"no provider "
          "configured\")",
          platform, platform);
    } else {
      continue;  // no provider: the router answers push.no_provider (warned below)
    }
    p.push_guards.push_back(std::make_unique<push::PushGuard>(platform, inner, p.clock.get(),
                                                              messaging::kPushUnavailable));
    by_platform.emplace(platform, p.push_guards.back().get());
  }
  p.router = std::make_unique<push::PushRouter>(std::move(by_platform));
  for (const std::string& platform : p.router->unconfigured(push_platforms())) {
    spdlog::warn(
        "push: no provider configured for {}; its devices are not pushed and their "
        "delivery timelines say \"no provider configured\"",
        platform);
  }
  messaging::EmailProvider* email = p.email_client.get();
  if (email == nullptr && p.recording_email != nullptr) {
    email = p.recording_email.get();
    spdlog::warn(
        "email: escalation emails go to the recording provider (no SMTP server is configured; "
        "nothing leaves this node, and their delivery timelines say \"no provider "
        "configured\")");
  } else if (email == nullptr) {
    p.no_email = std::make_unique<NoEmailProvider>();
    email = p.no_email.get();
    spdlog::warn(
        "email: no SMTP server configured ([smtp]); escalation emails are not sent and their "
        "delivery timelines say \"no provider configured\"");
  }
  p.email_guard = std::make_unique<push::EmailGuard>("email", email, p.clock.get(),
                                                     messaging::kEmailUnavailable);
}

// Checks that a secret file configured under `what` can be read, and warns when others than its
// owner may read it (as for the cluster secret). Does nothing for an empty path.
Status check_secret_file(const std::string& path, std::string_view what) {
  if (path.empty()) return Status::ok_status();
  HERALD_ASSIGN_OR_RETURN(const bool loose, secret_file_readable_by_others(path, what));
  if (loose) {
    spdlog::warn("{} {} is readable by other users than its owner; chmod 600 it", what, path);
  }
  return Status::ok_status();
}

// The APNs, FCM and Web Push clients the configuration asks for, by platform; each logs where it
// sends.
Status make_push_clients(const ServeConfig& config, Providers& p) {
  if (config.apns.configured()) {
    HERALD_RETURN_IF_ERROR(check_secret_file(config.apns.key_file, "apns.key_file"));
    HERALD_ASSIGN_OR_RETURN(push::ApnsConfig apns, apns_client_config(config.apns));
    apns.seed = std::random_device()();
    const std::string where = describe_apns(apns);
    HERALD_ASSIGN_OR_RETURN(p.push_clients[messaging::kApnsProvider],
                            push::ApnsClient::create(std::move(apns), *p.clock));
    spdlog::info("{}", where);
  }
  if (config.fcm.configured()) {
    HERALD_RETURN_IF_ERROR(
        check_secret_file(config.fcm.service_account_file, "fcm.service_account_file"));
    HERALD_ASSIGN_OR_RETURN(push::FcmConfig fcm, fcm_client_config(config.fcm));
    fcm.seed = std::random_device()();
    const std::string where = describe_fcm(fcm);
    HERALD_ASSIGN_OR_RETURN(p.push_clients[messaging::kFcmProvider],
                            push::FcmClient::create(std::move(fcm), *p.clock));
    spdlog::info("{}", where);
  }
  if (config.webpush.configured()) {
    HERALD_RETURN_IF_ERROR(
        check_secret_file(config.webpush.vapid_key_file, "webpush.vapid_key_file"));
    HERALD_ASSIGN_OR_RETURN(push::WebPushOptions webpush, webpush_client_config(config.webpush));
    const push::WebPushOptions described = webpush;
    HERALD_ASSIGN_OR_RETURN(auto client,
                            push::WebPushProvider::create(std::move(webpush), *p.clock));
    spdlog::info("{}", describe_webpush(described, client->vapid_public_key()));
    p.push_clients[messaging::kWebPushProvider] = std::move(client);
  }
  return Status::ok_status();
}

// The verifier of the app's sign-in tokens when [signin] is configured, else null; logs what it
// trusts (never the secret).
Result<std::shared_ptr<const server::SignInVerifier>> make_sign_in(const ServeConfig& config) {
  const SignInSettings& s = config.signin;
  if (!s.configured()) {
    spdlog::info("signin: devices authenticate with device secrets only ([signin] not configured)");
    return std::shared_ptr<const server::SignInVerifier>();
  }
  server::SignInConfig c;
  if (!s.hs256_secret_file.empty()) {
    HERALD_RETURN_IF_ERROR(check_secret_file(s.hs256_secret_file, "signin.hs256_secret_file"));
    HERALD_ASSIGN_OR_RETURN(c.hs256_secret,
                            push::read_small_file(s.hs256_secret_file, crypto::kMaxJwtBytes));
    while (!c.hs256_secret.empty() &&
           (c.hs256_secret.back() == '\n' || c.hs256_secret.back() == '\r')) {
      c.hs256_secret.pop_back();
    }
  } else if (!s.public_key_file.empty()) {
    HERALD_ASSIGN_OR_RETURN(c.public_key_pem,
                            push::read_small_file(s.public_key_file, crypto::kMaxJwtBytes));
  } else {
    HERALD_ASSIGN_OR_RETURN(c.jwks_json, push::read_small_file(s.jwks_file, server::kMaxJwksBytes));
  }
  if (!s.audience.empty()) c.audience = s.audience;
  if (!s.issuer.empty()) c.issuer = s.issuer;
  if (!s.device_claim.empty()) c.device_claim = s.device_claim;
  c.clock_skew_s = s.clock_skew_s;
  Result<server::SignInVerifier> verifier = server::SignInVerifier::create(c);
  if (!verifier.ok()) {
    return Status::invalid_argument("[signin]: " + verifier.status().message());
  }
  spdlog::info("signin: devices may also sign in with tokens verified by the {}",
               verifier->describe());
  return std::make_shared<const server::SignInVerifier>(std::move(verifier).value());
}

// The SMTP client when the configuration asks for one; it logs where it sends.
Status make_email_client(const ServeConfig& config, Providers& p) {
  if (!config.smtp.configured()) return Status::ok_status();
  HERALD_ASSIGN_OR_RETURN(email::SmtpConfig smtp, smtp_client_config(config.smtp));
  if (!config.smtp.password_file.empty()) {
    HERALD_RETURN_IF_ERROR(check_secret_file(config.smtp.password_file, "smtp.password_file"));
    HERALD_ASSIGN_OR_RETURN(smtp.password, read_smtp_password(config.smtp.password_file));
  }
  const std::string where = describe_smtp(smtp);
  HERALD_ASSIGN_OR_RETURN(p.email_client, email::SmtpClient::create(std::move(smtp), *p.clock));
  spdlog::info("{}", where);
  return Status::ok_status();
}

// The clients the configuration asks for; for the services without one, a recording provider
// when its journal path is set (each call appended to that file as one JSON line).
Result<Providers> make_providers(const ServeConfig& config) {
  Providers p;
  HERALD_RETURN_IF_ERROR(make_push_clients(config, p));
  HERALD_RETURN_IF_ERROR(make_email_client(config, p));
  webhooks::CurlPosterOptions webhook_options;
  webhook_options.timeout_ms = config.webhooks.timeout_ms;
  webhook_options.ca_file = config.webhooks.ca_file;
  HERALD_ASSIGN_OR_RETURN(p.webhook_client,
                          webhooks::CurlPoster::create(std::move(webhook_options)));
  if (p.push_clients.size() < push_platforms().size() && !config.push_journal.empty()) {
    HERALD_ASSIGN_OR_RETURN(p.recording_push,
                            server::RecordingPushProvider::with_journal(
                                config.push_journal, server::RecordingAnswer::kRecordOnly));
    spdlog::info("push: recorded notifications are appended to {}", config.push_journal);
  }
  if (p.email_client == nullptr && !config.email_journal.empty()) {
    HERALD_ASSIGN_OR_RETURN(p.recording_email,
                            server::RecordingEmailProvider::with_journal(
                                config.email_journal, server::RecordingAnswer::kRecordOnly));
    spdlog::info("email: recorded emails are appended to {}", config.email_journal);
  }
  return p;
}

// Blocks SIGTERM, SIGINT and SIGHUP in every thread (call before starting any) and returns the
// set: the main thread waits for them.
sigset_t block_handled_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

// The client port's TLS context ([tls]), or null for plaintext. Errors name the file.
Result<std::shared_ptr<server::TlsServerContext>> make_tls(const ServeConfig& config) {
  if (!config.tls.configured()) return std::shared_ptr<server::TlsServerContext>();
  HERALD_ASSIGN_OR_RETURN(server::TlsServerFiles files, tls_server_files(config.tls));
  HERALD_ASSIGN_OR_RETURN(std::shared_ptr<server::TlsServerContext> tls,
                          server::TlsServerContext::load(std::move(files)));
  spdlog::info("tls: the client port serves HTTPS and WSS with {} (certificate {})",
               config.tls.cert_file, tls->fingerprint());
  return tls;
}

// SIGHUP: reloads the client port's certificate and key. Connections stay open; a reload that
// fails keeps the certificate in use.
void reload_on_hangup(server::TlsServerContext* tls) {
  if (tls == nullptr) {
    spdlog::info("SIGHUP received: no [tls] configured, nothing to reload");
    return;
  }
  if (const Status s = tls->reload(); !s.ok()) {
    spdlog::error("tls: reloading the certificate failed, still serving certificate {}: {}",
                  tls->fingerprint(), s.to_string());
    return;
  }
  spdlog::info("tls: certificate reloaded from {}: new connections get certificate {}",
               tls->files().cert_file, tls->fingerprint());
}

// With --demo, starts demo traffic against the node's client port, bound at `port`; null
// without --demo.
Result<std::unique_ptr<Demo>> start_demo(const ServeFlags& flags, const ServeConfig& config,
                                         std::uint16_t port, const DemoDoubles* doubles) {
  if (!flags.demo) return std::unique_ptr<Demo>();
  HERALD_ASSIGN_OR_RETURN(DemoOptions options, demo_options(config, port, std::random_device()()));
  if (doubles != nullptr) options.webpush_subscribe = doubles->webpush_subscriber();
  return Demo::start(std::move(options));
}

// GET /metrics: the Prometheus exposition (docs/metrics.md); behind the operator credential like
// every path but the device socket and the health probe.
void serve_metrics(server::NodeHost& host, const server::HttpRequest& request,
                   server::Responder respond) {
  if (request.method != "GET") {
    server::HttpResponse r =
        server::HttpResponse::error(405, "method_not_allowed", "GET /metrics only");
    r.headers.emplace_back("Allow", "GET");
    respond(std::move(r));
    return;
  }
  host.scrape([respond = std::move(respond)](std::string text) {
    server::HttpResponse r;
    r.content_type = std::string(metrics::kContentType);
    r.body = std::move(text);
    respond(std::move(r));
  });
}

}  // namespace

int run_serve(const ServeFlags& flags) {
  auto config = resolve(flags);
  if (!config.ok()) {
    std::fprintf(stderr, "herald serve: %s\n", config.status().to_string().c_str());
    return kExitConfig;
  }
  init_logging(config->log_level, config->id,
               parse_log_format(config->log_format).value_or(LogFormat::kText));
  if (flags.demo) {
    if (const Status s = prepare_demo(*config); !s.ok()) {
      spdlog::critical("cannot prepare the demo: {}", s.to_string());
      return kExitConfig;
    }
  }
  if (flags.demo && config->tls.configured()) {
    spdlog::warn("--demo serves the client port in plaintext: [tls] is ignored");
    config->tls = TlsSettings{};
  }
  const sigset_t signals = block_handled_signals();

  // With --demo, the provider doubles stand in for every provider not configured; they outlive
  // the clients that reach them (declared before them).
  std::unique_ptr<DemoDoubles> doubles;
  if (flags.demo) {
    auto started = DemoDoubles::start(*config);
    if (!started.ok()) {
      spdlog::critical("cannot start the demo's provider doubles: {}",
                       started.status().to_string());
      return kExitConfig;
    }
    doubles = std::move(started).value();
  }
  auto providers = make_providers(*config);
  if (!providers.ok()) {
    spdlog::critical("cannot set up the push and email providers: {}",
                     providers.status().to_string());
    return kExitConfig;
  }
  auto sign_in = make_sign_in(*config);
  if (!sign_in.ok()) {
    spdlog::critical("cannot set up sign-in tokens: {}", sign_in.status().to_string());
    return kExitConfig;
  }
  auto tls = make_tls(*config);
  if (!tls.ok()) {
    spdlog::critical("cannot set up TLS on the client port: {}", tls.status().to_string());
    return kExitConfig;
  }
  auto secret = cluster_secret(*config);
  if (!secret.ok()) {
    spdlog::critical("cannot load the cluster secret: {}", secret.status().to_string());
    return kExitConfig;
  }
  server::NodeHostOptions options = host_options(*config);
  options.cluster_secret = *std::move(secret);
  guard_providers(*providers);
  options.push = providers->router.get();
  options.email = providers->email_guard.get();
  options.webhook_poster = providers->webhook_client.get();
  auto host = server::NodeHost::start(options);
  // A disk too full to open the store on: wait for space rather than exit, so that a service
  // manager's restarts do not turn a full disk into a crash loop (docs/operations.md, "Disk
  // space"). A signal ends the wait (its default action; no handler is installed yet).
  for (std::int64_t waited_ms = 0; !host.ok() && host.status().code() == Code::kResourceExhausted;
       waited_ms += kFullDiskRetryMs) {
    if (waited_ms % kFullDiskLogIntervalMs == 0) {
      spdlog::critical(
          "node {} cannot open its store, the disk is full ({}): waiting for space, "
          "trying again every {} ms",
          config->id, host.status().to_string(), kFullDiskRetryMs);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(kFullDiskRetryMs));
    host = server::NodeHost::start(options);
  }
  if (!host.ok() && host.status().code() == Code::kCorruption) {
    // Serving from a damaged store could vote twice or lose acknowledged entries; only the
    // operator can bring the member back safely. One line, so it survives log truncation.
    spdlog::critical(
        "node {} refuses to start: its durable state in {} is damaged ({}), so this replica's "
        "votes and log cannot be trusted; remove the member from the cluster and add it back "
        "with an empty data directory, or restore the directory from a backup",
        config->id, config->data_dir, host.status().to_string());
    return kExitDamagedData;
  }
  if (!host.ok()) {
    spdlog::critical("cannot start node {}: {}", config->id, host.status().to_string());
    return kExitRuntime;
  }
  // A client read that finds damaged data makes the replica rebuild (server/damage_report.h).
  server::NodeHost* const node_host = host->get();
  server::set_damage_handler(
      [node_host](const Status& damage) { node_host->report_damage(damage); });
  struct RemoveDamageHandler {
    RemoveDamageHandler() = default;
    RemoveDamageHandler(const RemoveDamageHandler&) = delete;
    RemoveDamageHandler& operator=(const RemoveDamageHandler&) = delete;
    ~RemoveDamageHandler() { server::set_damage_handler(nullptr); }
  } const remove_damage_handler;
  server::KvApi kv_api(host->get());
  std::set<std::string, std::less<>> internal_types;
  for (const auto& type : messaging::Host::types()) {
    internal_types.emplace(type->name());
  }
  server::WorkflowApi workflow_api(host->get(), std::move(internal_types));
  server::MessagingApi messaging_api(host->get());
  server::ClusterApi cluster_api(host->get());
  const server::OperatorGate gate(config->admin_token);
  server::HostGatewayNode gateway_node(host->get());
  server::Gateway gateway(&gateway_node, config->device_limits, *std::move(sign_in));
  server::HttpServerConfig http_config;
  http_config.listen = config->client;
  http_config.max_connections = fit_connections_to_descriptors(config->max_connections);
  http_config.websocket_paths.emplace(std::string(server::kDeviceSocketPath), &gateway);
  http_config.tls = *tls;
  server::HttpServer http(
      http_config, [&](server::HttpRequest&& request, server::Responder respond) {
        if (auto refusal = gate.refuse(request)) {
          respond(*std::move(refusal));
          return;
        }
        if (server::is_dashboard_path(request.path)) {
          respond(server::serve_dashboard(request));
          return;
        }
        if (server::is_chat_path(request.path)) {
          respond(server::serve_chat(request));
          return;
        }
        if (request.path == server::kMetricsPath) {
          serve_metrics(**host, request, std::move(respond));
          return;
        }
        if (!cluster_api.handle(request, respond) && !messaging_api.handle(request, respond) &&
            !workflow_api.handle(request, respond)) {
          kv_api.handle(std::move(request), std::move(respond));
        }
      });
  if (const Status s = http.run(kHttpIoThreads); !s.ok()) {
    spdlog::critical("cannot serve clients on {}: {}", config->client, s.to_string());
    (*host)->stop();
    providers->shutdown_clients();
    return kExitRuntime;
  }
  spdlog::info("node {} serving clients on {} and peers on {}, data in {}", config->id,
               config->client, config->peer, config->data_dir);
  auto demo = start_demo(flags, *config, http.port(), doubles.get());
  if (!demo.ok()) {
    spdlog::critical("cannot start the demo: {}", demo.status().to_string());
    http.stop();
    (*host)->stop();
    providers->shutdown_clients();
    return kExitConfig;
  }

  int signal_number = 0;
  while (sigwait(&signals, &signal_number) == 0 && signal_number == SIGHUP) {
    reload_on_hangup(tls->get());
  }
  spdlog::info("signal {} received: shutting down", signal_number);
  if (*demo != nullptr) (*demo)->stop();  // before the HTTP server: its clients need it
  http.stop();
  (*host)->stop();
  providers->shutdown_clients();
  return 0;
}

}  // namespace herald::app
