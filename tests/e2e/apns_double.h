// The APNs test double (push/apns_mock.h) as the end-to-end tests run it beside a real node: a
// fresh ES256 signing key, the mock started to verify it, and the [apns] table that points a
// node's APNs client at the mock (over TLS, trusting the mock's certificate). Shared by the
// provider and webhook tests. Ownership: the double owns the mock and the key file, removed by
// the destructor. Thread-safety: none; the mock's own members may be used from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "base/clock.h"
#include "push/apns_mock.h"

namespace herald::e2e {

inline constexpr char kApnsKeyId[] = "E2EKEY0001";
inline constexpr char kApnsTeamId[] = "E2ETEAM001";
inline constexpr char kApnsTopic[] = "org.herald.e2e";

// `bytes` written to a fresh file of mode 0600 under the test's temporary directory, named after
// the test process and `name`; returns its path.
[[nodiscard]] std::string private_file(const std::string& name, const std::string& bytes);

struct ApnsDouble {
  std::unique_ptr<push::testing::ApnsMock> mock;
  std::string key_file;

  // Starts the mock on `clock` (which must outlive it) and writes the key to a private file
  // named `key_name`. `on_request`, when given, is the mock's ApnsMockOptions::on_request: it runs
  // on the mock's I/O thread with every request as it arrives, so what it touches must outlive
  // the double. Fails the test binary when the mock cannot start.
  ApnsDouble(const Clock& clock, const std::string& key_name,
             std::function<void(const push::testing::ApnsMockRequest&)> on_request = {});
  ~ApnsDouble();
  ApnsDouble(const ApnsDouble&) = delete;
  ApnsDouble& operator=(const ApnsDouble&) = delete;

  // The [apns] table of a node's configuration that reaches the mock.
  [[nodiscard]] std::string toml() const;
};

// The `herald.seq` of an APNs request body (push/apns.cc), or 0 when the body has none.
[[nodiscard]] std::uint64_t apns_payload_seq(const std::string& body);

}  // namespace herald::e2e
