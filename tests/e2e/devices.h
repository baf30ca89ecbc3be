// Helpers of the end-to-end tests: provisioning devices through the admin API, connecting them,
// and waiting on what they receive. Every wait is bounded by its argument.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"
#include "client/admin_client.h"
#include "client/herald_client.h"

namespace herald::e2e {

// How long a change that is expected at once may take to arrive.
inline constexpr std::uint32_t kChangeWaitMs = 5'000;
// Silence after which a device is taken to have received everything it will.
inline constexpr std::uint32_t kQuietMs = 500;

// The value of `result`; otherwise an exception naming `what` and the error, which ends the
// running test as a failure (gtest reports it).
template <typename T>
T must(Result<T> result, std::string_view what) {
  if (!result.ok()) {
    throw std::runtime_error(fmt::format("{}: {}", what, result.status().to_string()));
  }
  return std::move(result).value();
}
inline void must(const Status& status, std::string_view what) {
  if (!status.ok()) throw std::runtime_error(fmt::format("{}: {}", what, status.to_string()));
}

struct DeviceCredentials {
  std::string user_id;
  std::string device_id;
  std::string token;
};

// Creates device `device_id` of `user_id` (the user must exist) and returns its credentials.
[[nodiscard]] Result<DeviceCredentials> provision_device(const client::AdminClient& admin,
                                                         const std::string& user_id,
                                                         const std::string& device_id);

// Connects to 127.0.0.1:`port` (over TLS with `tls`) and authenticates as `device`.
[[nodiscard]] Result<std::unique_ptr<client::HeraldClient>> connect_device(
    std::uint16_t port, const DeviceCredentials& device,
    std::optional<std::uint64_t> since = std::nullopt,
    const std::optional<client::ClientTls>& tls = std::nullopt);

// Pops changes until none arrives for `quiet_ms`; returns them in arrival order.
[[nodiscard]] std::vector<client::Change> collect_changes(client::HeraldClient& device,
                                                          std::uint32_t quiet_ms = kQuietMs);

// Pops changes until one satisfies `wanted` and returns it; the changes popped before it are
// appended to `skipped` when given. kTimeout when none comes within `timeout_ms`.
[[nodiscard]] Result<client::Change> wait_for_change(
    client::HeraldClient& device, const std::function<bool(const client::Change&)>& wanted,
    std::uint32_t timeout_ms = kChangeWaitMs, std::vector<client::Change>* skipped = nullptr);

// Reads (and drops) frames until the server closes the connection; the close code, or nullopt
// when it stays open for `wait_ms`.
[[nodiscard]] std::optional<std::uint16_t> close_code_within(client::HeraldClient& device,
                                                             std::uint32_t wait_ms);

// Calls `probe` every few milliseconds until it returns true (then true) or `timeout_ms` passes
// (then false).
[[nodiscard]] bool eventually(const std::function<bool()>& probe, std::uint32_t timeout_ms);

// The seqs of the message_new changes of `conversation_id`, in order.
[[nodiscard]] std::vector<std::uint64_t> new_message_seqs(
    const std::vector<client::Change>& changes, const std::string& conversation_id);

// The state of `user_id`'s delivery workflow of message (conversation_id, seq); "" when the
// timeline cannot be read or lists no such recipient.
[[nodiscard]] std::string delivery_state(const client::AdminClient& admin,
                                         const std::string& conversation_id, std::uint64_t seq,
                                         const std::string& user_id);

}  // namespace herald::e2e
