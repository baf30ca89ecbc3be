#include "tests/e2e/apns_double.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

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

ApnsDouble::ApnsDouble(const Clock& clock, const std::string& key_name) {
  const std::string key_pem = crypto::testing::ec_private_pem("P-256");
  push::testing::ApnsMockOptions options;
  options.provider_public_pem = crypto::testing::public_pem_of(key_pem);
  options.key_id = kApnsKeyId;
  options.team_id = kApnsTeamId;
  options.topic = kApnsTopic;
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

}  // namespace herald::e2e
