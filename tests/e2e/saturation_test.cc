// A saturated three-node cluster keeps its leader. Senders connected to every node keep
// kSendsInFlight sends each in flight for kLoadMs; their recipients, connected to other nodes,
// acknowledge every message as it arrives. Throughout, no node's term may move (no election) and
// no answer may be `unavailable` or `outcome_unknown`: under load alone, every command must be
// answered with what happened to it. Run alone (RUN_SERIAL): it loads both cores on purpose.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "client/admin_client.h"
#include "client/herald_client.h"
#include "tests/e2e/cluster.h"
#include "tests/e2e/devices.h"

namespace herald::e2e {
namespace {

namespace json = boost::json;

constexpr std::uint32_t kStartupTimeoutMs = 15'000;
// Sender/recipient pairs; each sender keeps this many sends in flight.
constexpr int kPairs = 128;
constexpr int kSendsInFlight = 16;
// How long the load runs, and the bound on draining what is still in flight after it.
constexpr std::uint32_t kLoadMs = 8'000;
constexpr std::uint32_t kDrainMs = 15'000;
// One wait for a frame inside the load loops.
constexpr std::uint32_t kFrameWaitMs = 50;
// Once every sender is done, a recipient that heard nothing for this long has received all.
constexpr std::uint32_t kRecipientQuietMs = 2'000;
// Acknowledgements a recipient keeps in flight at most, well under the server's 64 requests per
// connection; beyond it, one later cumulative `ack` covers the messages in between.
constexpr int kAcksInFlight = 16;
// Bytes of each message body.
constexpr std::size_t kBodyBytes = 64;

// Answers counted by protocol code ("ok" for success), shared by every load thread.
class Tally {
 public:
  void count(const Status& status) {
    const std::string code =
        status.ok() ? "ok"
                    : std::string(client::protocol_error_code(status).empty()
                                      ? "client:" + std::string(code_name(status.code()))
                                      : client::protocol_error_code(status));
    std::lock_guard lock(mu_);
    ++counts_[code];
  }
  [[nodiscard]] std::map<std::string, std::uint64_t> counts() const {
    std::lock_guard lock(mu_);
    return counts_;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::uint64_t> counts_;
};

std::string request(std::string_view type, const std::string& id, json::object fields) {
  fields["type"] = type;
  fields["id"] = id;
  return json::serialize(fields);
}

// Keeps kSendsInFlight sends in flight until `stop`, then collects the answers still due.
void run_sender(client::HeraldClient& device, const std::string& conversation,
                const std::string& prefix, const std::atomic<bool>& stop, Tally& sends) {
  std::uint64_t next = 0;
  int in_flight = 0;
  const std::string body(kBodyBytes, 'x');
  const auto drain_deadline = [] {
    return std::chrono::steady_clock::now() + std::chrono::milliseconds(kDrainMs);
  };
  auto deadline = drain_deadline();
  while (!stop.load() || (in_flight > 0 && std::chrono::steady_clock::now() < deadline)) {
    while (!stop.load() && in_flight < kSendsInFlight) {
      const std::string id = prefix + std::to_string(next++);
      must(device.send_raw(request(
               "send", id,
               {{"conversation_id", conversation}, {"client_message_id", id}, {"body", body}})),
           "sending");
      ++in_flight;
      deadline = drain_deadline();
    }
    Result<client::Answer> answer = device.next_answer(kFrameWaitMs);
    if (!answer.ok()) {
      must(answer.status().code() == Code::kTimeout ? Status::ok_status() : answer.status(),
           "reading answers");
      continue;
    }
    --in_flight;
    sends.count(answer->status);
  }
}

// Acknowledges every new message (cumulatively when kAcksInFlight are unanswered) until every
// sender is done and nothing came for a while.
void run_recipient(client::HeraldClient& device, const std::atomic<int>& senders_left, Tally& acks,
                   std::atomic<std::uint64_t>& received) {
  std::uint64_t next = 0;
  int in_flight = 0;
  std::string conversation;
  std::uint64_t unacked_seq = 0;  // the highest seq received and not yet acknowledged
  auto ack = [&] {
    must(device.send_raw(request("ack", "a-" + std::to_string(next++),
                                 {{"conversation_id", conversation}, {"seq", unacked_seq}})),
         "acknowledging");
    unacked_seq = 0;
    ++in_flight;
  };
  auto quiet_since = std::chrono::steady_clock::now();
  const auto give_up = std::chrono::steady_clock::now() +
                       std::chrono::milliseconds(kLoadMs + kDrainMs + kRecipientQuietMs);
  while (std::chrono::steady_clock::now() < give_up &&
         (senders_left.load() > 0 || std::chrono::steady_clock::now() - quiet_since <
                                         std::chrono::milliseconds(kRecipientQuietMs))) {
    Result<client::Answer> answer = device.next_answer(kFrameWaitMs);
    if (answer.ok()) {
      acks.count(answer->status);
      --in_flight;
      quiet_since = std::chrono::steady_clock::now();
    } else {
      must(answer.status().code() == Code::kTimeout ? Status::ok_status() : answer.status(),
           "reading frames");
    }
    while (device.queued_events() > 0) {
      Result<client::Change> change = device.next_change(0);
      if (!change.ok()) break;  // a typing or presence event
      if (change->kind != "message_new") continue;
      received.fetch_add(1);
      quiet_since = std::chrono::steady_clock::now();
      conversation = change->conversation_id;
      unacked_seq = std::max(unacked_seq, change->seq);
    }
    if (unacked_seq != 0 && in_flight < kAcksInFlight) ack();
  }
}

TEST(Saturation, ThreeNodeClusterUnderLoadKeepsItsLeaderAndAnswersEveryCommand) {
  auto cluster = must(Cluster::create(3), "creating the cluster");
  must(cluster->start_all(), "starting the nodes");
  const std::uint64_t leader = must(cluster->leader(kStartupTimeoutMs), "the first leader");
  const std::vector<std::uint64_t> terms_before = cluster->terms();

  struct Pair {
    std::unique_ptr<client::HeraldClient> sender;
    std::unique_ptr<client::HeraldClient> recipient;
    std::string conversation;
  };
  std::vector<Pair> pairs;
  const client::AdminClient admin = cluster->admin(leader);
  for (int i = 0; i < kPairs; ++i) {
    const std::string s = "s" + std::to_string(i);
    const std::string r = "r" + std::to_string(i);
    must(admin.create_user(s), "creating a sender");
    must(admin.create_user(r), "creating a recipient");
    const DeviceCredentials sd = must(provision_device(admin, s, s + "-phone"), "sender device");
    const DeviceCredentials rd = must(provision_device(admin, r, r + "-phone"), "recipient device");
    Pair p;
    p.conversation =
        must(admin.create_conversation({s, "direct", {r}, "", ""}), "conversation").conversation_id;
    const std::uint64_t sender_node = 1 + (i % 3);
    const std::uint64_t recipient_node = 1 + ((i + 1) % 3);
    p.sender = must(connect_device(cluster->node(sender_node).client_port, sd), "sender");
    p.recipient = must(connect_device(cluster->node(recipient_node).client_port, rd), "recipient");
    pairs.push_back(std::move(p));
  }

  Tally sends;
  Tally acks;
  std::atomic<std::uint64_t> received{0};
  std::atomic<bool> stop{false};
  std::atomic<int> senders_left{kPairs};
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < pairs.size(); ++i) {
    Pair& p = pairs[i];
    const std::string prefix = "p" + std::to_string(i) + "-";
    threads.emplace_back([&, prefix] {
      run_sender(*p.sender, p.conversation, prefix, stop, sends);
      senders_left.fetch_sub(1);
    });
    threads.emplace_back([&] { run_recipient(*p.recipient, senders_left, acks, received); });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(kLoadMs));
  stop.store(true);
  for (auto& t : threads) t.join();

  const std::vector<std::uint64_t> terms_after = cluster->terms();
  const auto send_counts = sends.counts();
  const auto ack_counts = acks.counts();
  std::string summary = "sends:";
  for (const auto& [code, n] : send_counts) summary += " " + code + "=" + std::to_string(n);
  summary += "; acks:";
  for (const auto& [code, n] : ack_counts) summary += " " + code + "=" + std::to_string(n);
  summary += "; received=" + std::to_string(received.load());
  std::printf("saturation: %s\n", summary.c_str());

  const std::uint64_t sent_ok = send_counts.contains("ok") ? send_counts.at("ok") : 0;
  EXPECT_GT(sent_ok, static_cast<std::uint64_t>(kPairs * kSendsInFlight)) << summary;
  EXPECT_EQ(terms_after, terms_before) << "an election happened under load; " << summary << "\n"
                                       << cluster->log_tail(leader);
  for (const auto* counts : {&send_counts, &ack_counts}) {
    EXPECT_FALSE(counts->contains("unavailable")) << summary;
    EXPECT_FALSE(counts->contains("outcome_unknown")) << summary;
    EXPECT_EQ(counts->size(), 1u) << "every answer should be ok: " << summary;
  }
  EXPECT_EQ(received.load(), sent_ok) << "each acknowledged send reaches its recipient once";
}

}  // namespace
}  // namespace herald::e2e
