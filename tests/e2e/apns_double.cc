#include "tests/e2e/apns_double.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <utility>

#include "crypto/test_keys.h"
#include "tests/e2e/devices.h"

namespace herald::e2e {

namespace fs = std::filesystem;

std::string private_file(const std::string& name, const std::string& bytes) {
  std::string path = fmt::format("{}/herald-e2e-{}-{}", ::testing::TempDir(), ::getpid(), name);
  std::remove(path.c_str());
  std::ofstream(path, std::ios::binary) << bytes;
  fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write);
  return path;
}

ApnsDouble::ApnsDouble(const Clock& clock, const std::string& key_name,
                       std::function<void(const push::testing::ApnsMockRequest&)> on_request) {
  const std::string key_pem = crypto::testing::ec_private_pem("P-256");
  push::testing::ApnsMockOptions options;
  options.provider_public_pem = crypto::testing::public_pem_of(key_pem);
  options.key_id = kApnsKeyId;
  options.team_id = kApnsTeamId;
  options.topic = kApnsTopic;
  options.on_request = std::move(on_request);
  mock = must(push::testing::ApnsMock::start(options, clock), "starting the APNs mock");
  key_file = private_file(key_name, key_pem);
}

ApnsDouble::~ApnsDouble() {
  std::remove(key_file.c_str());
}

std::string ApnsDouble::toml() const {
  return fmt::format(
      "[apns]\nkey_file = \"{}\"\nkey_id = \"{}\"\nteam_id = \"{}\"\ntopic = \"{}\"\n"
      "endpoint = \"https://127.0.0.1:{}\"\nca_file = \"{}\"\n",
      key_file, kApnsKeyId, kApnsTeamId, kApnsTopic, mock->port(), mock->ca_file());
}

std::uint64_t apns_payload_seq(const std::string& body) {
  boost::system::error_code ec;
  const boost::json::value v = boost::json::parse(body, ec);
  if (ec || !v.is_object()) return 0;
  const boost::json::value* herald = v.as_object().if_contains("herald");
  if (herald == nullptr || !herald->is_object()) return 0;
  const boost::json::value* seq = herald->as_object().if_contains("seq");
  if (seq == nullptr || !seq->is_int64() || seq->as_int64() < 0) return 0;
  return static_cast<std::uint64_t>(seq->as_int64());
}

}  // namespace herald::e2e
