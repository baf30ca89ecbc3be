#include "tests/e2e/devices.h"

#include <chrono>
#include <thread>
#include <utility>

#include "tests/e2e/cluster.h"

namespace herald::e2e {

using client::Change;
using client::HeraldClient;

Result<DeviceCredentials> provision_device(const client::AdminClient& admin,
                                           const std::string& user_id,
                                           const std::string& device_id) {
  HERALD_ASSIGN_OR_RETURN(std::string token, admin.create_device(user_id, device_id));
  return DeviceCredentials{user_id, device_id, std::move(token)};
}

Result<std::unique_ptr<HeraldClient>> connect_device(std::uint16_t port,
                                                     const DeviceCredentials& device,
                                                     std::optional<std::uint64_t> since,
                                                     const std::optional<client::ClientTls>& tls) {
  HERALD_ASSIGN_OR_RETURN(
      std::unique_ptr<HeraldClient> c,
      HeraldClient::connect("127.0.0.1", port, client::kDefaultConnectTimeoutMs, tls));
  HERALD_RETURN_IF_ERROR(c->auth(device.user_id, device.device_id, device.token, since).status());
  return c;
}

std::vector<Change> collect_changes(HeraldClient& device, std::uint32_t quiet_ms) {
  std::vector<Change> out;
  while (true) {
    Result<Change> change = device.next_change(quiet_ms);
    if (!change.ok()) return out;
    out.push_back(std::move(*change));
  }
}

Result<Change> wait_for_change(HeraldClient& device,
                               const std::function<bool(const Change&)>& wanted,
                               std::uint32_t timeout_ms, std::vector<Change>* skipped) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return Status::timeout("the awaited change did not come");
    HERALD_ASSIGN_OR_RETURN(Change change,
                            device.next_change(static_cast<std::uint32_t>(left.count())));
    if (wanted(change)) return change;
    if (skipped != nullptr) skipped->push_back(std::move(change));
  }
}

bool eventually(const std::function<bool()>& probe, std::uint32_t timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!probe()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(kPollIntervalMs));
  }
  return true;
}

std::vector<std::uint64_t> new_message_seqs(const std::vector<Change>& changes,
                                            const std::string& conversation_id) {
  std::vector<std::uint64_t> seqs;
  for (const Change& c : changes) {
    if (c.kind == "message_new" && c.conversation_id == conversation_id) seqs.push_back(c.seq);
  }
  return seqs;
}

std::string delivery_state(const client::AdminClient& admin, const std::string& conversation_id,
                           std::uint64_t seq, const std::string& user_id) {
  auto timeline = admin.timeline(conversation_id, seq);
  if (!timeline.ok()) return {};
  const client::RecipientTimeline* r = timeline->recipient(user_id);
  return r == nullptr ? std::string() : r->state;
}

std::optional<std::uint16_t> close_code_within(client::HeraldClient& device,
                                               std::uint32_t wait_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  while (std::chrono::steady_clock::now() < deadline && device.receive_raw(wait_ms).ok()) {
  }
  return device.close_code();
}

}  // namespace herald::e2e
