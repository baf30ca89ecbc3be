#include "server/tls.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/ssl/context.hpp>
#include <filesystem>
#include <fstream>
#include <string>

#include "crypto/test_keys.h"

namespace herald::server {
namespace {

namespace fs = std::filesystem;
using crypto::testing::self_signed_loopback_certificate;
using crypto::testing::SelfSignedCertificate;

// A directory of its own per test (ctest runs the cases of one binary in parallel).
class TlsServerContextTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    dir_ = (fs::temp_directory_path() /
            ("herald-tls-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++)))
               .string();
    fs::create_directories(dir_);
    files_.cert_file = dir_ + "/cert.pem";
    files_.key_file = dir_ + "/key.pem";
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  void write(const std::string& path, const std::string& bytes,
             fs::perms perms = fs::perms::owner_read | fs::perms::owner_write) const {
    std::ofstream(path, std::ios::trunc) << bytes;
    fs::permissions(path, perms);
  }
  void install(const SelfSignedCertificate& cert) const {
    write(files_.cert_file, cert.cert_pem);
    write(files_.key_file, cert.key_pem);
  }

  std::string dir_;
  TlsServerFiles files_;
};

TEST_F(TlsServerContextTest, LoadsAMatchingChainAndKey) {
  install(self_signed_loopback_certificate("first"));
  auto tls = TlsServerContext::load(files_);
  ASSERT_TRUE(tls.ok()) << tls.status().to_string();
  EXPECT_NE((*tls)->current(), nullptr);
  EXPECT_EQ((*tls)->fingerprint().rfind("sha256:", 0), 0U);
  EXPECT_EQ((*tls)->fingerprint().size(), std::string("sha256:").size() + 64);
}

TEST_F(TlsServerContextTest, RefusesAKeyEveryUserMayRead) {
  install(self_signed_loopback_certificate("first"));
  fs::permissions(files_.key_file, fs::perms::others_read, fs::perm_options::add);
  const auto tls = TlsServerContext::load(files_);
  EXPECT_EQ(tls.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(tls.status().message().find(files_.key_file), std::string::npos);
}

TEST_F(TlsServerContextTest, AGroupReadableKeyIsAccepted) {
  install(self_signed_loopback_certificate("first"));
  fs::permissions(files_.key_file, fs::perms::group_read, fs::perm_options::add);
  EXPECT_TRUE(TlsServerContext::load(files_).ok());
}

TEST_F(TlsServerContextTest, RefusesAKeyOfAnotherCertificate) {
  write(files_.cert_file, self_signed_loopback_certificate("first").cert_pem);
  write(files_.key_file, self_signed_loopback_certificate("second").key_pem);
  const auto tls = TlsServerContext::load(files_);
  EXPECT_EQ(tls.status().code(), Code::kInvalidArgument);
  EXPECT_NE(tls.status().message().find("of the certificate"), std::string::npos)
      << tls.status().to_string();
}

TEST_F(TlsServerContextTest, RefusesMissingEmptyAndMalformedFiles) {
  EXPECT_EQ(TlsServerContext::load(files_).status().code(), Code::kNotFound);
  const SelfSignedCertificate cert = self_signed_loopback_certificate("first");
  write(files_.cert_file, "");
  write(files_.key_file, cert.key_pem);
  EXPECT_EQ(TlsServerContext::load(files_).status().code(), Code::kInvalidArgument);
  write(files_.cert_file, "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n");
  EXPECT_EQ(TlsServerContext::load(files_).status().code(), Code::kInvalidArgument);
  write(files_.cert_file, cert.cert_pem);
  write(files_.key_file, "not a key");
  const auto tls = TlsServerContext::load(files_);
  EXPECT_EQ(tls.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(tls.status().message().find("not a key"), std::string::npos) << "quotes the key";
}

TEST_F(TlsServerContextTest, ReloadSwitchesToTheNewCertificateForNewHandshakes) {
  install(self_signed_loopback_certificate("first"));
  auto tls = TlsServerContext::load(files_).value();
  const auto first_context = tls->current();
  const std::string first = tls->fingerprint();
  install(self_signed_loopback_certificate("second"));
  ASSERT_TRUE(tls->reload().ok());
  EXPECT_NE(tls->fingerprint(), first);
  EXPECT_NE(tls->current(), first_context);
  // Whoever held the first context still holds a usable one.
  EXPECT_NE(first_context->native_handle(), nullptr);
}

TEST_F(TlsServerContextTest, AFailedReloadKeepsTheCurrentCertificate) {
  install(self_signed_loopback_certificate("first"));
  auto tls = TlsServerContext::load(files_).value();
  const auto context = tls->current();
  const std::string first = tls->fingerprint();
  write(files_.key_file, self_signed_loopback_certificate("second").key_pem);
  EXPECT_EQ(tls->reload().code(), Code::kInvalidArgument);
  fs::remove(files_.cert_file);
  EXPECT_EQ(tls->reload().code(), Code::kNotFound);
  EXPECT_EQ(tls->fingerprint(), first);
  EXPECT_EQ(tls->current(), context);
}

TEST(ParseTlsMinVersion, AcceptsTwelveAndThirteenOnly) {
  EXPECT_EQ(parse_tls_min_version("1.2").value(), TlsMinVersion::kTls12);
  EXPECT_EQ(parse_tls_min_version("1.3").value(), TlsMinVersion::kTls13);
  for (const char* bad : {"", "1.1", "1.0", "tls1.3", "1.3 "}) {
    EXPECT_EQ(parse_tls_min_version(bad).status().code(), Code::kInvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace herald::server
