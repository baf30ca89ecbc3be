// End to end: what the gateway refuses a device, against one real node started with tight limits
// ([devices] in its config file): a removed device's open socket, the auth deadline, request and
// auth rates, connections per address, sessions per device, and the typing relay throttle.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "client/admin_client.h"
#include "client/herald_client.h"
#include "tests/e2e/cluster.h"
#include "tests/e2e/devices.h"

namespace herald::e2e {
namespace {

using client::HeraldClient;

constexpr std::uint32_t kStartupTimeoutMs = 15'000;
// The close codes of docs/protocol.md (server/gateway.h).
constexpr std::uint16_t kCloseDeviceRemoved = 4001;
constexpr std::uint16_t kCloseAuthDeadline = 4002;
constexpr std::uint16_t kCloseReplaced = 4003;

class DeviceLimits : public ::testing::Test {
 protected:
  // Starts one node whose config file holds `devices_toml` under [devices], with alice (two
  // devices), bob (one) and their direct conversation.
  void start(const std::string& devices_toml) {
    cluster_ = must(Cluster::create(1), "creating the cluster");
    must(cluster_->set_config("[devices]\n" + devices_toml), "writing the config");
    must(cluster_->start_all(), "starting the node");
    must(cluster_->leader(kStartupTimeoutMs), "waiting for a leader");
    admin_ = std::make_unique<client::AdminClient>(cluster_->admin(1));
    must(admin_->create_user("alice", "alice"), "alice");
    must(admin_->create_user("bob", "bob"), "bob");
    a_phone_ = must(provision_device(*admin_, "alice", "a-phone"), "a-phone");
    a_laptop_ = must(provision_device(*admin_, "alice", "a-laptop"), "a-laptop");
    b_phone_ = must(provision_device(*admin_, "bob", "b-phone"), "b-phone");
    direct_ = must(admin_->create_conversation({"alice", "direct", {"bob"}, "", ""}), "direct")
                  .conversation_id;
  }

  void TearDown() override {
    if (HasFailure() && cluster_ != nullptr) {
      std::fprintf(stderr, "---- node 1 log (tail) ----\n%s\n", cluster_->log_tail(1).c_str());
    }
  }

  [[nodiscard]] std::uint16_t port() const { return cluster_->node(1).client_port; }

  std::unique_ptr<HeraldClient> open(const DeviceCredentials& device) {
    return must(connect_device(port(), device), "connecting " + device.device_id);
  }

  std::unique_ptr<Cluster> cluster_;
  std::unique_ptr<client::AdminClient> admin_;
  DeviceCredentials a_phone_;
  DeviceCredentials a_laptop_;
  DeviceCredentials b_phone_;
  std::string direct_;
};

TEST_F(DeviceLimits, RemovingADeviceClosesItsOpenSocketAndItCannotComeBack) {
  start("");
  auto phone = open(a_phone_);
  auto laptop = open(a_laptop_);
  must(admin_->request("DELETE", "/v1/admin/users/alice/devices/a-phone"), "removing a-phone");

  // The removed device hears why, then is closed.
  const client::Change why = must(
      wait_for_change(*phone, [](const client::Change& c) { return c.kind == "device_removed"; }),
      "the removal, on the removed device");
  EXPECT_EQ(why.device_id, "a-phone");
  EXPECT_EQ(close_code_within(*phone, kChangeWaitMs), kCloseDeviceRemoved);
  // The user's other device is told and stays connected.
  must(wait_for_change(*laptop, [](const client::Change& c) { return c.kind == "device_removed"; }),
       "the removal, on the other device");
  EXPECT_TRUE(laptop->ping().ok());
  // Its credential no longer works.
  auto again = must(HeraldClient::connect("127.0.0.1", port()), "reconnecting");
  EXPECT_EQ(client::protocol_error_code(
                again->auth(a_phone_.user_id, a_phone_.device_id, a_phone_.token).status()),
            "unauthorized");
}

TEST_F(DeviceLimits, AConnectionThatDoesNotAuthenticateInTimeIsClosed) {
  start("auth_deadline_ms = 300\n");
  auto silent = must(HeraldClient::connect("127.0.0.1", port()), "an unauthenticated socket");
  auto authed = open(b_phone_);
  EXPECT_EQ(close_code_within(*silent, kChangeWaitMs), kCloseAuthDeadline);
  // An authenticated connection outlives the deadline.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_TRUE(authed->ping().ok());
}

TEST_F(DeviceLimits, ADeviceOverItsRequestRateIsAnsweredRateLimitedAndOthersAreNot) {
  start("requests_per_s = 5\nrequest_burst = 10\n");
  auto phone = open(a_phone_);
  auto bob = open(b_phone_);
  int served = 0;
  int limited = 0;
  for (int i = 0; i < 40; ++i) {
    const auto pong = phone->ping();
    if (pong.ok()) {
      ++served;
    } else {
      EXPECT_EQ(client::protocol_error_code(pong.status()), "rate_limited")
          << pong.status().to_string();
      ++limited;
    }
  }
  // The burst, plus what refilled while the loop ran (5/s; the loop takes well under 2 s).
  EXPECT_GE(served, 10);
  EXPECT_LE(served, 20);
  EXPECT_EQ(served + limited, 40);
  // The raw answer says when to retry.
  must(phone->send_raw(R"({"type":"ping","id":"p"})"), "a raw ping");
  const std::string raw = must(phone->receive_raw(kChangeWaitMs), "its answer");
  EXPECT_NE(raw.find("\"retry_after_ms\""), std::string::npos) << raw;
  // Another device is not limited by alice's phone, and the connection stays usable.
  EXPECT_TRUE(bob->ping().ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  EXPECT_TRUE(phone->ping().ok());
}

TEST_F(DeviceLimits, AuthenticationsFromOneAddressAreRateLimited) {
  start("auths_per_s_per_address = 0.5\nauth_burst_per_address = 3\n");
  std::vector<std::unique_ptr<HeraldClient>> sockets;
  sockets.reserve(3);
  for (int i = 0; i < 3; ++i) sockets.push_back(open(b_phone_));
  auto fourth = must(HeraldClient::connect("127.0.0.1", port()), "a fourth socket");
  const auto refused = fourth->auth(b_phone_.user_id, b_phone_.device_id, b_phone_.token);
  EXPECT_EQ(client::protocol_error_code(refused.status()), "rate_limited");
}

TEST_F(DeviceLimits, ConnectionsFromOneAddressAreBounded) {
  start("max_connections_per_address = 3\n");
  std::vector<std::unique_ptr<HeraldClient>> sockets;
  sockets.reserve(3);
  for (int i = 0; i < 3; ++i) {
    sockets.push_back(must(HeraldClient::connect("127.0.0.1", port()), "a socket"));
  }
  const auto refused = HeraldClient::connect("127.0.0.1", port());
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("429"), std::string::npos)
      << refused.status().to_string();
  // Closing one frees its place.
  must(sockets.back()->close(), "closing a socket");
  sockets.pop_back();
  EXPECT_TRUE(
      eventually([&] { return HeraldClient::connect("127.0.0.1", port()).ok(); }, kChangeWaitMs));
}

TEST_F(DeviceLimits, ANewSessionBeyondTheBoundReplacesTheDevicesOldest) {
  start("max_sessions_per_device = 2\n");
  auto first = open(a_phone_);
  auto second = open(a_phone_);
  auto laptop = open(a_laptop_);  // another device of the same user does not count
  auto third = open(a_phone_);
  EXPECT_EQ(close_code_within(*first, kChangeWaitMs), kCloseReplaced);
  EXPECT_TRUE(second->ping().ok());
  EXPECT_TRUE(third->ping().ok());
  EXPECT_TRUE(laptop->ping().ok());
}

// The typing events `device` receives until it has been quiet for kQuietMs.
std::vector<client::TypingEvent> typing_events(HeraldClient& device) {
  std::vector<client::TypingEvent> out;
  while (true) {
    auto event = device.next_event(kQuietMs);
    if (!event.ok()) return out;
    if (const auto* t = std::get_if<client::TypingEvent>(&*event)) out.push_back(*t);
  }
}

TEST_F(DeviceLimits, RepeatedTypingIsRelayedOncePerIntervalButChangesAlwaysPass) {
  start("typing_relay_interval_ms = 60000\n");
  auto alice = open(a_phone_);
  auto bob = open(b_phone_);
  static_cast<void>(collect_changes(*bob));
  for (int i = 0; i < 10; ++i) must(alice->typing(direct_, true), "typing");
  const auto started = typing_events(*bob);
  ASSERT_EQ(started.size(), 1U);
  EXPECT_TRUE(started[0].active);
  must(alice->typing(direct_, false), "stopped typing");
  const auto stopped = typing_events(*bob);
  ASSERT_EQ(stopped.size(), 1U);
  EXPECT_FALSE(stopped[0].active);
}

}  // namespace
}  // namespace herald::e2e
