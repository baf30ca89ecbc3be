#include "app/demo_doubles.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <system_error>
#include <utility>

#include "app/demo.h"
#include "crypto/test_keys.h"
#include "email/smtp_sink.h"
#include "push/apns_mock.h"
#include "push/fcm_mock.h"
#include "push/vapid.h"
#include "push/webpush_mock.h"

namespace herald::app {

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

// The string at `key` of `object`, or "" when there is none.
std::string string_at(const json::object* object, std::string_view key) {
  if (object == nullptr) return {};
  const json::value* v = object->if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string();
}

// The value of header `name` in `data` (up to its line end), or "" when it has none.
std::string header_of(const std::string& data, std::string_view name) {
  const std::string lines = "\r\n" + data;
  const std::string prefix = fmt::format("\r\n{}: ", name);
  std::size_t at = lines.find(prefix);
  if (at == std::string::npos) return {};
  at += prefix.size();
  return lines.substr(at, lines.find("\r\n", at) - at);
}

// Writes `bytes` to `path`, readable by its owner only.
Status write_private_file(const fs::path& path, const std::string& bytes) {
  std::error_code ec;
  fs::remove(path, ec);
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << bytes;
    if (!out.good()) {
      return Status::io_error(fmt::format("cannot write {}", path.string()));
    }
  }
  fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write, ec);
  if (ec) {
    return Status::io_error(fmt::format("cannot restrict {}: {}", path.string(), ec.message()));
  }
  return Status::ok_status();
}

// The directory of the key files, created with mode 0700.
Result<fs::path> doubles_dir(const ServeConfig& config) {
  const fs::path dir = fs::path(config.data_dir) / kDemoDoublesDir;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (!ec) fs::permissions(dir, fs::perms::owner_all, ec);
  if (ec) {
    return Status::io_error(fmt::format("cannot create {}: {}", dir.string(), ec.message()));
  }
  return dir;
}

}  // namespace

std::string describe_demo_apns_push(const std::string& device_token, const std::string& apns_body,
                                    const std::string& apns_id) {
  boost::system::error_code ec;
  const json::value body = json::parse(apns_body, ec);
  const json::object* alert = nullptr;
  if (!ec && body.is_object()) {
    if (const json::value* aps = body.as_object().if_contains("aps");
        aps != nullptr && aps->is_object()) {
      if (const json::value* a = aps->as_object().if_contains("alert");
          a != nullptr && a->is_object()) {
        alert = &a->as_object();
      }
    }
  }
  return fmt::format("demo: APNs mock delivered a push to device token {}: \"{}: {}\" (apns-id {})",
                     device_token, string_at(alert, "title"), string_at(alert, "body"), apns_id);
}

std::string describe_demo_webpush(const std::string& subscription_id,
                                  const std::string& plaintext) {
  boost::system::error_code ec;
  const json::value payload = json::parse(plaintext, ec);
  const json::object* fields = !ec && payload.is_object() ? &payload.as_object() : nullptr;
  return fmt::format("demo: Web Push mock decrypted a push to subscription {}: \"{}: {}\"",
                     subscription_id, string_at(fields, "title"), string_at(fields, "body"));
}

std::string describe_demo_email(const std::string& data) {
  return fmt::format("demo: SMTP sink received an email to {}: \"{}\"", header_of(data, "To"),
                     header_of(data, "Subject"));
}

DemoDoubles::DemoDoubles() = default;
DemoDoubles::~DemoDoubles() = default;

namespace {

Result<std::unique_ptr<push::testing::ApnsMock>> start_apns(const Clock& clock, const fs::path& dir,
                                                            ApnsSettings& apns) {
  const std::string key_pem = crypto::testing::ec_private_pem("P-256");
  push::testing::ApnsMockOptions options;
  options.provider_public_pem = crypto::testing::public_pem_of(key_pem);
  options.key_id = kDemoApnsKeyId;
  options.team_id = kDemoApnsTeamId;
  options.topic = kDemoApnsTopic;
  options.on_request = [](const push::testing::ApnsMockRequest& request) {
    if (request.status != 200) {
      spdlog::warn("demo: APNs mock refused a push to {}: {} {} ({})", request.device_token,
                   request.status, request.reason, request.check_failed);
      return;
    }
    const auto id = request.headers.find("apns-id");
    spdlog::info("{}", describe_demo_apns_push(request.device_token, request.body,
                                               id == request.headers.end() ? "" : id->second));
  };
  HERALD_ASSIGN_OR_RETURN(auto mock, push::testing::ApnsMock::start(std::move(options), clock));
  const fs::path key_file = dir / "apns-key.p8";
  HERALD_RETURN_IF_ERROR(write_private_file(key_file, key_pem));
  apns.key_file = key_file.string();
  apns.key_id = kDemoApnsKeyId;
  apns.team_id = kDemoApnsTeamId;
  apns.topic = kDemoApnsTopic;
  apns.endpoint = fmt::format("https://127.0.0.1:{}", mock->port());
  apns.ca_file = mock->ca_file();
  spdlog::info("demo: APNs mock listening on https://127.0.0.1:{} (HTTP/2, TLS)", mock->port());
  return mock;
}

Result<std::unique_ptr<push::testing::FcmMock>> start_fcm(const Clock& clock, const fs::path& dir,
                                                          FcmSettings& fcm) {
  const std::string key_pem = crypto::testing::rsa_private_pem(kDemoFcmKeyBits);
  push::testing::FcmMockOptions options;
  options.project_id = kDemoFcmProject;
  options.client_email = kDemoFcmClientEmail;
  options.service_account_public_pem = crypto::testing::public_pem_of(key_pem);
  options.on_message = [](const push::testing::FcmMockMessage& message) {
    const auto field = [&](const char* key) {
      const auto it = message.data.find(key);
      return it == message.data.end() ? std::string() : it->second;
    };
    spdlog::info("demo: FCM mock delivered a push to device token {}: \"{}: {}\"",
                 message.device_token, field("title"), field("body"));
  };
  HERALD_ASSIGN_OR_RETURN(auto mock, push::testing::FcmMock::start(std::move(options), clock));
  const json::object key{{"type", "service_account"},
                         {"project_id", kDemoFcmProject},
                         {"private_key", key_pem},
                         {"client_email", kDemoFcmClientEmail},
                         {"token_uri", mock->token_uri()}};
  const fs::path key_file = dir / "fcm-service-account.json";
  HERALD_RETURN_IF_ERROR(write_private_file(key_file, json::serialize(key)));
  fcm.service_account_file = key_file.string();
  fcm.endpoint = fmt::format("https://127.0.0.1:{}", mock->port());
  fcm.ca_file = mock->ca_file();
  spdlog::info("demo: FCM mock listening on https://127.0.0.1:{} (HTTP/2, TLS; OAuth2 at {})",
               mock->port(), mock->token_uri());
  return mock;
}

Result<std::unique_ptr<push::testing::WebPushMock>> start_webpush(const Clock& clock,
                                                                  const fs::path& dir,
                                                                  WebPushSettings& webpush) {
  HERALD_ASSIGN_OR_RETURN(const push::VapidKey key, push::VapidKey::generate());
  HERALD_ASSIGN_OR_RETURN(const std::string key_pem, key.private_pem());
  push::testing::WebPushMockOptions options;
  options.vapid_public_key = key.public_key_b64url();
  options.on_message = [](const push::testing::WebPushMockMessage& message) {
    spdlog::info("{}", describe_demo_webpush(message.subscription_id, message.plaintext));
  };
  HERALD_ASSIGN_OR_RETURN(auto mock, push::testing::WebPushMock::start(std::move(options), clock));
  const fs::path key_file = dir / "webpush-vapid.pem";
  HERALD_RETURN_IF_ERROR(write_private_file(key_file, key_pem));
  webpush.vapid_key_file = key_file.string();
  webpush.subject = kDemoVapidSubject;
  webpush.ca_file = mock->ca_file();
  webpush.allow_private_addresses = true;
  spdlog::info("demo: Web Push mock listening on {} (HTTP/2, TLS; decrypts every push)",
               mock->origin());
  return mock;
}

Result<std::unique_ptr<email::testing::SmtpSink>> start_smtp(SmtpSettings& smtp) {
  email::testing::SmtpSinkOptions options;
  options.username = kDemoSmtpUser;
  options.password = random_admin_token();  // fresh for this process, never logged
  options.on_message = [](const email::testing::SmtpSinkMessage& message) {
    spdlog::info("{}", describe_demo_email(message.data));
  };
  const std::string password = options.password;
  HERALD_ASSIGN_OR_RETURN(auto sink, email::testing::SmtpSink::start(std::move(options)));
  smtp = SmtpSettings{};
  smtp.url = fmt::format("smtp://127.0.0.1:{}", sink->port());
  smtp.tls = "starttls";
  smtp.username = kDemoSmtpUser;
  smtp.password = password;
  smtp.from = kDemoEmailFrom;
  smtp.ca_file = sink->ca_file();
  spdlog::info("demo: SMTP sink listening on 127.0.0.1:{} (STARTTLS, AUTH)", sink->port());
  return sink;
}

}  // namespace

Result<std::unique_ptr<DemoDoubles>> DemoDoubles::start(ServeConfig& config) {
  std::unique_ptr<DemoDoubles> doubles(new DemoDoubles());
  if (config.apns.configured() && config.fcm.configured() && config.webpush.configured() &&
      config.smtp.configured()) {
    return doubles;
  }
  HERALD_ASSIGN_OR_RETURN(const fs::path dir, doubles_dir(config));
  if (!config.apns.configured()) {
    HERALD_ASSIGN_OR_RETURN(doubles->apns_, start_apns(doubles->clock_, dir, config.apns));
  }
  if (!config.fcm.configured()) {
    HERALD_ASSIGN_OR_RETURN(doubles->fcm_, start_fcm(doubles->clock_, dir, config.fcm));
  }
  if (!config.webpush.configured()) {
    HERALD_ASSIGN_OR_RETURN(doubles->webpush_, start_webpush(doubles->clock_, dir, config.webpush));
  }
  if (!config.smtp.configured()) {
    HERALD_ASSIGN_OR_RETURN(doubles->smtp_, start_smtp(config.smtp));
  }
  return doubles;
}

std::function<Result<std::string>()> DemoDoubles::webpush_subscriber() const {
  if (webpush_ == nullptr) return {};
  push::testing::WebPushMock* mock = webpush_.get();
  return [mock]() -> Result<std::string> {
    HERALD_ASSIGN_OR_RETURN(push::testing::WebPushMockSubscription subscription, mock->subscribe());
    return std::move(subscription.token);
  };
}

}  // namespace herald::app
