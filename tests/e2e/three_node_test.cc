// End to end on three real `herald serve` processes: devices connected to different nodes, and
// the leader SIGKILLed while alice keeps sending. Every acknowledged message must reach bob's
// devices exactly once, in order and without gaps, and the killed node must catch up after a
// restart.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <boost/json.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "client/admin_client.h"
#include "client/herald_client.h"
#include "server/gateway.h"
#include "tests/e2e/cluster.h"
#include "tests/e2e/devices.h"

namespace herald::e2e {
namespace {

using client::Change;
using client::HeraldClient;

constexpr std::uint32_t kStartupTimeoutMs = 15'000;
// Bound on a new leader after the old one is killed, and on the restarted node serving.
constexpr std::uint32_t kFailoverTimeoutMs = 15'000;
// Messages alice sends while the leader is killed, and after how many the kill comes.
constexpr int kMessages = 40;
constexpr int kKillAfterMessages = 10;
// The kill lands this long after the send that follows message kKillAfterMessages starts, so
// that it usually hits a request in flight.
constexpr std::uint32_t kKillDelayMs = 5;
// One attempt of a send during the failover; retried with the same client_message_id.
constexpr std::uint32_t kAttemptTimeoutMs = 3'000;
// Bound on all the attempts of one message.
constexpr std::uint32_t kSendDeadlineMs = 30'000;
constexpr std::uint32_t kRetryPauseMs = 50;
// Bound on bob's devices receiving every message after the failover.
constexpr std::uint32_t kCatchUpMs = 15'000;
// Changes per sync page read from the restarted node.
constexpr std::uint64_t kSyncPage = 100;
// One wait for an ephemeral event inside a bounded retry loop.
constexpr std::uint32_t kProbeWaitMs = 500;
// Bound on every node's figures reaching every other node (sent every second).
constexpr std::uint32_t kFiguresWaitMs = 10'000;

// Why node `id`'s entry in a GET /v1/cluster answer does not show its own live figures with one
// connected device and latency samples of each kind; empty when it does.
std::string figures_problem(const boost::json::object& view, std::uint64_t id) {
  for (const boost::json::value& n : view.at("nodes").as_array()) {
    const boost::json::object& node = n.as_object();
    if (node.at("id").to_number<std::uint64_t>() != id) continue;
    if (!node.at("figures").is_object()) return "no figures";
    const boost::json::object& f = node.at("figures").as_object();
    if (f.at("stale").as_bool()) return "stale figures";
    if (f.at("devices").to_number<std::uint64_t>() != 1) return "devices != 1";
    for (const char* kind : {"fsync", "commit", "apply"}) {
      const boost::json::object& l = f.at(kind).as_object();
      if (l.at("count").to_number<std::uint64_t>() == 0) return std::string("no ") + kind;
      if (l.at("p99_ms").to_number<double>() < l.at("p50_ms").to_number<double>()) {
        return std::string(kind) + " p99 below p50";
      }
    }
    return {};
  }
  return "not listed";
}

// Alice's device, which moves to another node when hers dies.
class RoamingDevice {
 public:
  RoamingDevice(Cluster* cluster, DeviceCredentials credentials, std::uint64_t node)
      : cluster_(cluster), credentials_(std::move(credentials)), node_(node) {}

  // Sends until the server answers ok, reconnecting to a live node when the connection ends and
  // retrying with the same client_message_id on unavailable or a timeout.
  Result<client::SendResult> send(const std::string& conversation_id, const std::string& client_id,
                                  const std::string& body) {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(kSendDeadlineMs);
    Status last = Status::timeout("no attempt");
    while (std::chrono::steady_clock::now() < deadline) {
      if (Status connected = ensure_connected(); !connected.ok()) {
        last = connected;
        pause();
        continue;
      }
      Result<client::SendResult> sent = device_->send(conversation_id, client_id, body);
      if (sent.ok()) return sent;
      last = sent.status();
      if (!retryable(last)) return last;
      ++retries_;
      if (!device_->is_open()) device_.reset();
      pause();
    }
    return last;
  }

  [[nodiscard]] std::uint64_t node() const { return node_; }
  [[nodiscard]] int reconnects() const { return reconnects_; }
  [[nodiscard]] int retries() const { return retries_; }

 private:
  static bool retryable(const Status& s) {
    const std::string_view code = client::protocol_error_code(s);
    if (code.empty()) return true;  // the client's own error: a timeout or a lost connection
    return code == "unavailable" || code == "outcome_unknown" || code == "timeout" ||
           code == "internal";
  }
  static void pause() { std::this_thread::sleep_for(std::chrono::milliseconds(kRetryPauseMs)); }

  Status ensure_connected() {
    if (device_ != nullptr && device_->is_open()) return Status::ok_status();
    device_.reset();
    if (!cluster_->alive(node_)) {
      node_ = cluster_->other_live_node(node_);
      ++reconnects_;
    }
    if (node_ == 0) return Status::unavailable("no live node");
    HERALD_ASSIGN_OR_RETURN(device_,
                            connect_device(cluster_->node(node_).client_port, credentials_));
    device_->set_request_timeout_ms(kAttemptTimeoutMs);
    return Status::ok_status();
  }

  Cluster* cluster_;
  DeviceCredentials credentials_;
  std::uint64_t node_;
  std::unique_ptr<HeraldClient> device_;
  int reconnects_ = 0;
  int retries_ = 0;  // attempts that failed and were repeated
};

// What one of bob's devices received, checked against what alice had acknowledged.
void expect_exactly_once_in_order(const std::vector<Change>& changes,
                                  const std::string& conversation_id, std::uint64_t last_seq,
                                  const std::map<std::uint64_t, std::string>& acked,
                                  const std::string& device) {
  SCOPED_TRACE(device);
  for (std::size_t i = 1; i < changes.size(); ++i) {
    ASSERT_LT(changes[i - 1].cursor, changes[i].cursor) << "cursors must strictly increase";
  }
  std::vector<std::uint64_t> expected;
  for (std::uint64_t seq = 1; seq <= last_seq; ++seq) expected.push_back(seq);
  EXPECT_EQ(new_message_seqs(changes, conversation_id), expected) << "each seq once, no gaps";
  std::map<std::uint64_t, std::string> client_ids;
  for (const Change& c : changes) {
    if (c.kind == "message_new" && c.message.has_value()) {
      client_ids[c.seq] = c.message->client_message_id;
    }
  }
  for (const auto& [seq, client_id] : acked) {
    EXPECT_EQ(client_ids[seq], client_id) << "seq " << seq;
  }
}

// Every change of `device`'s stream from the start, page by page.
Result<std::vector<Change>> sync_all(HeraldClient& device) {
  std::vector<Change> all;
  std::uint64_t since = 0;
  while (true) {
    HERALD_ASSIGN_OR_RETURN(client::SyncResult page, device.sync(since, kSyncPage));
    for (Change& c : page.changes) all.push_back(std::move(c));
    since = page.cursor;
    if (!page.has_more) return all;
  }
}

// One of bob's devices and every change it has received so far.
struct Listener {
  std::unique_ptr<HeraldClient> device;
  std::vector<Change> seen;

  // Pops what has arrived, until `quiet_ms` pass without a change.
  void drain(std::uint32_t quiet_ms = 1) {
    for (Change& c : collect_changes(*device, quiet_ms)) seen.push_back(std::move(c));
  }
  // Drains; true once message `seq` of `conversation_id` (or a later one) has arrived.
  bool reached(const std::string& conversation_id, std::uint64_t seq) {
    drain();
    const auto seqs = new_message_seqs(seen, conversation_id);
    return !seqs.empty() && seqs.back() >= seq;
  }
};

class ThreeNodes : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster_ = must(Cluster::create(3), "creating the cluster");
    must(cluster_->start_all(), "starting the nodes");
    leader_ = must(cluster_->leader(kStartupTimeoutMs), "the first leader");
    follower_a_ = leader_ % 3 + 1;
    follower_b_ = follower_a_ % 3 + 1;
    const client::AdminClient admin = cluster_->admin(follower_a_);  // forwarded to the leader
    for (const char* user : {"alice", "bob"}) must(admin.create_user(user), "creating a user");
    a_phone_ = must(provision_device(admin, "alice", "a-phone"), "a-phone");
    b_phone_ = must(provision_device(admin, "bob", "b-phone"), "b-phone");
    b_laptop_ = must(provision_device(admin, "bob", "b-laptop"), "b-laptop");
    conv_ = must(admin.create_conversation({"alice", "direct", {"bob"}, "", ""}), "conversation")
                .conversation_id;
  }

  void TearDown() override {
    if (!HasFailure() || cluster_ == nullptr) return;
    for (std::uint64_t id = 1; id <= cluster_->size(); ++id) {
      std::fprintf(stderr, "---- node %lu log (tail) ----\n%s\n", static_cast<unsigned long>(id),
                   cluster_->log_tail(id).c_str());
    }
  }

  Listener listen(std::uint64_t node, const DeviceCredentials& device) {
    return Listener{
        must(connect_device(cluster_->node(node).client_port, device), device.device_id), {}};
  }

  // Alice sends from the leader and bob answers from a follower; each sees the other's message.
  void exchange_both_ways(RoamingDevice& alice, Listener& b_phone, Listener& b_laptop) {
    const client::SendResult hello = must(alice.send(conv_, "hello", "hi bob"), "alice's hello");
    acked_[hello.seq] = "hello";
    EXPECT_TRUE(eventually([&] { return b_laptop.reached(conv_, hello.seq); }, kChangeWaitMs));
    const client::SendResult reply = must(b_phone.device->send(conv_, "reply", "hi"), "reply");
    acked_[reply.seq] = "reply";
    auto alice_view = must(connect_device(cluster_->node(leader_).client_port, a_phone_), "alice");
    const auto seqs = new_message_seqs(must(alice_view->sync(0), "alice's sync").changes, conv_);
    EXPECT_EQ(seqs, (std::vector<std::uint64_t>{hello.seq, reply.seq}));
  }

  // Alice sends kMessages messages; the leader is SIGKILLed from another thread during the send
  // that follows message kKillAfterMessages.
  void send_through_leader_kill(RoamingDevice& alice, Listener& b_phone, Listener& b_laptop) {
    const pid_t leader_pid = cluster_->node(leader_).pid;
    std::jthread killer;
    int answered_existed = 0;  // retries whose first attempt had been committed
    for (int i = 0; i < kMessages; ++i) {
      if (i == kKillAfterMessages) {
        killer = std::jthread([leader_pid] {
          std::this_thread::sleep_for(std::chrono::milliseconds(kKillDelayMs));
          ::kill(leader_pid, SIGKILL);
        });
      }
      const std::string client_id = "m-" + std::to_string(i);
      const client::SendResult sent =
          must(alice.send(conv_, client_id, "message " + client_id), "alice's " + client_id);
      EXPECT_TRUE(acked_.emplace(sent.seq, client_id).second) << "seq " << sent.seq << " reused";
      if (sent.existed) ++answered_existed;
      b_phone.drain();
      b_laptop.drain();
    }
    if (killer.joinable()) killer.join();
    cluster_->kill(leader_);  // reaps it
    EXPECT_NE(alice.node(), leader_) << "alice must have moved off the killed node";
    EXPECT_GE(alice.reconnects(), 1);
    const std::uint64_t new_leader = must(cluster_->leader(kFailoverTimeoutMs), "a new leader");
    EXPECT_NE(new_leader, leader_);
    std::fprintf(stderr,
                 "leader %lu killed after %d messages; new leader %lu; alice retried %d times, "
                 "%d answers said existed\n",
                 static_cast<unsigned long>(leader_), kKillAfterMessages,
                 static_cast<unsigned long>(new_leader), alice.retries(), answered_existed);
  }

  // Restarts the killed node and syncs bob's whole stream through it once it has caught up.
  std::vector<Change> history_from_restarted_node(std::uint64_t last_seq) {
    must(cluster_->start(leader_), "restarting the killed node");
    std::vector<Change> history;
    const bool caught_up = eventually(
        [&] {
          auto device = connect_device(cluster_->node(leader_).client_port, b_laptop_);
          if (!device.ok()) return false;
          auto all = sync_all(**device);
          if (!all.ok()) return false;
          history = std::move(*all);
          const auto seqs = new_message_seqs(history, conv_);
          return !seqs.empty() && seqs.back() >= last_seq;
        },
        kFailoverTimeoutMs);
    EXPECT_TRUE(caught_up) << "the restarted node did not serve the whole history";
    return history;
  }

  std::unique_ptr<Cluster> cluster_;
  std::uint64_t leader_ = 0;
  std::uint64_t follower_a_ = 0;
  std::uint64_t follower_b_ = 0;
  DeviceCredentials a_phone_;
  DeviceCredentials b_phone_;
  DeviceCredentials b_laptop_;
  std::string conv_;
  std::map<std::uint64_t, std::string> acked_;  // seq -> client_message_id
};

TEST_F(ThreeNodes, LeaderKillLosesNoAcknowledgedMessageAndTheNodeCatchesUp) {
  // Alice on the leader, bob's devices on the two followers.
  Listener b_phone = listen(follower_a_, b_phone_);
  Listener b_laptop = listen(follower_b_, b_laptop_);
  RoamingDevice alice(cluster_.get(), a_phone_, leader_);
  exchange_both_ways(alice, b_phone, b_laptop);
  send_through_leader_kill(alice, b_phone, b_laptop);

  const std::uint64_t last_seq = acked_.rbegin()->first;
  EXPECT_EQ(acked_.size(), last_seq) << "every message stored once: as many seqs as messages";
  EXPECT_TRUE(eventually([&] { return b_phone.reached(conv_, last_seq); }, kCatchUpMs));
  EXPECT_TRUE(eventually([&] { return b_laptop.reached(conv_, last_seq); }, kCatchUpMs));
  b_phone.drain(kQuietMs);
  b_laptop.drain(kQuietMs);
  expect_exactly_once_in_order(b_phone.seen, conv_, last_seq, acked_, "b-phone");
  expect_exactly_once_in_order(b_laptop.seen, conv_, last_seq, acked_, "b-laptop");

  const std::vector<Change> history = history_from_restarted_node(last_seq);
  expect_exactly_once_in_order(history, conv_, last_seq, acked_, "b-laptop on the restarted node");
}

// Typing and presence do not go through the log: the node a device is connected to relays them
// to the other nodes, which tell their own sessions.
TEST_F(ThreeNodes, AuthThatFindsNoLeaderLeavesTheConnectionAbleToRetry) {
  auto device =
      must(client::HeraldClient::connect("127.0.0.1", cluster_->node(follower_a_).client_port),
           "connecting");
  // Without a quorum the read barrier behind auth fails (unavailable, or timeout).
  cluster_->kill(leader_);
  cluster_->kill(follower_b_);
  auto refused = device->auth(b_phone_.user_id, b_phone_.device_id, b_phone_.token);
  ASSERT_FALSE(refused.ok());
  const std::string_view code = client::protocol_error_code(refused.status());
  EXPECT_TRUE(code == "unavailable" || code == "timeout") << refused.status().to_string();
  must(cluster_->start(leader_), "restarting the old leader");
  must(cluster_->start(follower_b_), "restarting the other follower");
  must(cluster_->leader(kFailoverTimeoutMs), "a leader again");
  // The same connection authenticates once the cluster answers.
  Status last = refused.status();
  const bool authenticated = eventually(
      [&] {
        auto again = device->auth(b_phone_.user_id, b_phone_.device_id, b_phone_.token);
        last = again.status();
        return again.ok();
      },
      kFailoverTimeoutMs);
  EXPECT_TRUE(authenticated) << last.to_string();
}

TEST_F(ThreeNodes, TypingAndPresenceReachDevicesOnOtherNodes) {
  auto bob = must(connect_device(cluster_->node(follower_a_).client_port, b_phone_), "bob");
  auto alice = must(connect_device(cluster_->node(follower_b_).client_port, a_phone_), "alice");
  bool presence_seen = false;
  const bool online = eventually(
      [&] {
        auto event = bob->next_event(kProbeWaitMs);
        if (!event.ok()) return false;
        if (const auto* p = std::get_if<client::PresenceEvent>(&*event)) {
          presence_seen = p->user_id == "alice" && p->online;
        }
        return presence_seen;
      },
      kChangeWaitMs);
  EXPECT_TRUE(online) << "bob, on another node, hears that alice came online";
  ASSERT_TRUE(alice->typing(conv_, true).ok());
  const bool typing = eventually(
      [&] {
        auto event = bob->next_event(kProbeWaitMs);
        if (!event.ok()) return false;
        const auto* t = std::get_if<client::TypingEvent>(&*event);
        return t != nullptr && t->user_id == "alice" && t->conversation_id == conv_ && t->active;
      },
      kChangeWaitMs);
  EXPECT_TRUE(typing) << "bob, on another node, sees alice typing";
}

// One device on each node, each sending: GET /v1/cluster on every node shows all three nodes'
// own figures (node figures travel between the nodes as peer frames): one device each, and
// fsync, commit and apply latency samples each.
TEST_F(ThreeNodes, ClusterViewOnAnyNodeShowsEveryNodesLatenciesAndDevices) {
  auto alice = must(connect_device(cluster_->node(follower_a_).client_port, a_phone_), "alice");
  auto phone = must(connect_device(cluster_->node(follower_b_).client_port, b_phone_), "phone");
  auto laptop = must(connect_device(cluster_->node(leader_).client_port, b_laptop_), "laptop");
  must(alice->send(conv_, "f-1", "from a follower").status(), "alice's send");
  must(phone->send(conv_, "f-2", "from the other follower").status(), "the phone's send");
  must(laptop->send(conv_, "f-3", "from the leader").status(), "the laptop's send");
  std::string problem;
  const bool shown = eventually(
      [&] {
        for (std::uint64_t asked = 1; asked <= 3; ++asked) {
          auto body = cluster_->admin(asked).get("/v1/cluster");
          if (!body.ok()) {
            problem = body.status().to_string();
            return false;
          }
          const boost::json::object view = boost::json::parse(*body).as_object();
          for (std::uint64_t id = 1; id <= 3; ++id) {
            problem = figures_problem(view, id);
            if (!problem.empty()) {
              problem = fmt::format("node {} shows node {}: {}", asked, id, problem);
              return false;
            }
          }
        }
        return true;
      },
      kFiguresWaitMs);
  EXPECT_TRUE(shown) << problem;
}

// Removing a device and revoking a user are replicated changes that every node applies to its own
// sessions (docs/protocol.md, "Revocation"): asked of the leader, they close the sessions
// connected to the followers, and leave everyone else's open.
TEST_F(ThreeNodes, RemovingADeviceAndRevokingAUserEndTheirSessionsOnEveryNode) {
  auto phone = must(connect_device(cluster_->node(follower_a_).client_port, b_phone_), "phone");
  auto laptop = must(connect_device(cluster_->node(follower_b_).client_port, b_laptop_), "laptop");
  auto laptop_on_leader =
      must(connect_device(cluster_->node(leader_).client_port, b_laptop_), "laptop on the leader");
  auto alice = must(connect_device(cluster_->node(follower_a_).client_port, a_phone_), "alice");
  const client::AdminClient admin = cluster_->admin(leader_);

  const client::HttpReply removed =
      must(admin.request("DELETE", "/v1/admin/users/bob/devices/b-phone"), "removing b-phone");
  ASSERT_EQ(removed.status, 200U) << removed.body;
  EXPECT_EQ(close_code_within(*phone, kChangeWaitMs), server::kCloseDeviceRemoved)
      << "the removed device's session on a follower";
  for (HeraldClient* other : {laptop.get(), laptop_on_leader.get(), alice.get()}) {
    EXPECT_TRUE(other->ping().ok()) << "another device's session stays";
    EXPECT_FALSE(other->close_code().has_value());
  }
  EXPECT_EQ(client::protocol_error_code(
                connect_device(cluster_->node(follower_b_).client_port, b_phone_).status()),
            "unauthorized")
      << "the removed device cannot authenticate on another follower";

  must(admin.revoke_user("bob"), "revoking bob");
  EXPECT_EQ(close_code_within(*laptop, kChangeWaitMs), server::kCloseUserRevoked)
      << "bob's session on a follower";
  EXPECT_EQ(close_code_within(*laptop_on_leader, kChangeWaitMs), server::kCloseUserRevoked)
      << "bob's session on the leader";
  EXPECT_TRUE(alice->ping().ok()) << "alice's session stays";
  EXPECT_FALSE(alice->close_code().has_value());
  EXPECT_EQ(client::protocol_error_code(
                connect_device(cluster_->node(follower_a_).client_port, b_laptop_).status()),
            "unauthorized")
      << "the revoked user's device secret no longer works on any node";
}

}  // namespace
}  // namespace herald::e2e
