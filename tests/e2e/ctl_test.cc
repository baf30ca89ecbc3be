// `herald ctl` against real herald processes: a three-node cluster (plus a fourth node that
// joins), each command run as its own process, its exit code, stdout and stderr checked
// (docs/operations.md, "herald ctl").
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "server/backup.h"
#include "tests/e2e/cluster.h"
#include "tests/e2e/ctl_runner.h"

namespace herald::e2e {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

constexpr std::uint32_t kLeaderTimeoutMs = 10'000;
constexpr std::uint32_t kCatchUpTimeoutMs = 10'000;
std::vector<std::uint64_t> ids_of(const json::value& v, std::string_view key) {
  std::vector<std::uint64_t> out;
  const json::value* list = v.is_object() ? v.get_object().if_contains(key) : nullptr;
  if (list == nullptr || !list->is_array()) return out;
  for (const json::value& id : list->get_array()) out.push_back(id.to_number<std::uint64_t>());
  return out;
}

Status put(const Cluster& cluster, std::uint64_t id, const std::string& key,
           const std::string& value) {
  auto reply = cluster.admin(id).request("PUT", "/v1/kv/" + key, value);
  if (!reply.ok()) return reply.status();
  return reply->status == 200 ? Status::ok_status() : client::status_of_reply(*reply);
}

// Node `id`'s own applied value of `key` (no leader round trip), or "" when it has none.
std::string stale_get(const Cluster& cluster, std::uint64_t id, const std::string& key) {
  auto reply = cluster.admin(id).request("GET", "/v1/kv/" + key + "?consistency=stale");
  return reply.ok() && reply->status == 200 ? reply->body : std::string();
}

bool wait_for(const std::function<bool()>& done, std::uint32_t timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(kPollIntervalMs));
  }
  return true;
}

// A cluster of four prepared nodes of which 1..3 bootstrap it and run; node 4 may join.
class Ctl : public ::testing::Test {
 protected:
  void SetUp() override {
    auto made = Cluster::create(4);
    ASSERT_TRUE(made.ok()) << made.status().to_string();
    cluster_ = std::move(made).value();
    cluster_->set_initial_members(3);
    for (std::uint64_t id = 1; id <= 3; ++id) ASSERT_TRUE(cluster_->start(id).ok());
    auto leader = cluster_->leader(kLeaderTimeoutMs);
    ASSERT_TRUE(leader.ok()) << leader.status().to_string();
    leader_ = *leader;
  }

  std::uint64_t follower() const { return leader_ == 1 ? 2 : 1; }

  std::unique_ptr<Cluster> cluster_;
  std::uint64_t leader_ = 0;
};

TEST_F(Ctl, ClusterStatusShowsMembersAndLeaderAndFailsClearlyWithoutAccessOrNode) {
  const CtlRun json_run = ctl(*cluster_, follower(), {"cluster", "status", "--json"});
  ASSERT_EQ(json_run.exit_code, 0) << describe(json_run);
  EXPECT_EQ(ids_of(json_run.json, "voters"), (std::vector<std::uint64_t>{1, 2, 3}));
  EXPECT_EQ(json_run.json.at("leader").to_number<std::uint64_t>(), leader_);
  const CtlRun human = ctl(*cluster_, leader_, {"cluster", "status"});
  ASSERT_EQ(human.exit_code, 0) << describe(human);
  EXPECT_NE(human.out.find(fmt::format("sees leader {}", leader_)), std::string::npos) << human.out;
  EXPECT_NE(human.out.find("voters: [1,2,3]"), std::string::npos) << human.out;

  const CtlRun wrong_token = ctl(*cluster_, 1, {"cluster", "status", "--token", "wrong"});
  EXPECT_EQ(wrong_token.exit_code, 1) << describe(wrong_token);
  EXPECT_NE(wrong_token.err.find("unauthorized"), std::string::npos) << wrong_token.err;
  cluster_->kill(3);
  const CtlRun down = ctl(*cluster_, 3, {"cluster", "status"});
  EXPECT_EQ(down.exit_code, 3) << describe(down);
  EXPECT_NE(down.err.find("unreachable"), std::string::npos) << down.err;
  const CtlRun usage = ctl(*cluster_, 1, {"cluster", "frobnicate"});
  EXPECT_EQ(usage.exit_code, 2) << describe(usage);
}

TEST_F(Ctl, ANodeJoinsAsLearnerIsPromotedTakesLeadershipAndAnotherIsRemoved) {
  for (int i = 0; i < 20; ++i)
    ASSERT_TRUE(put(*cluster_, leader_, fmt::format("k{}", i), "v").ok());
  ASSERT_TRUE(cluster_->start(4).ok());
  const std::string address = fmt::format("127.0.0.1:{}", cluster_->node(4).peer_port);

  // Asked of a follower: the CLI follows it to the leader.
  const CtlRun add = ctl(*cluster_, follower(), {"member", "add", "4", address, "--json"});
  ASSERT_EQ(add.exit_code, 0) << describe(add);
  EXPECT_EQ(ids_of(add.json, "learners"), (std::vector<std::uint64_t>{4}));
  ASSERT_TRUE(wait_for([&] { return stale_get(*cluster_, 4, "k19") == "v"; }, kCatchUpTimeoutMs))
      << cluster_->log_tail(4);

  const CtlRun again = ctl(*cluster_, leader_, {"member", "add", "4", address});
  EXPECT_EQ(again.exit_code, 1) << describe(again);
  EXPECT_NE(again.err.find("already_exists"), std::string::npos) << again.err;
  const CtlRun unknown = ctl(*cluster_, leader_, {"member", "promote", "9"});
  EXPECT_EQ(unknown.exit_code, 1) << describe(unknown);
  EXPECT_NE(unknown.err.find("not_found"), std::string::npos) << unknown.err;

  const CtlRun promote = ctl(*cluster_, leader_, {"member", "promote", "4", "--json"});
  ASSERT_EQ(promote.exit_code, 0) << describe(promote);
  EXPECT_EQ(ids_of(promote.json, "voters"), (std::vector<std::uint64_t>{1, 2, 3, 4}));

  const CtlRun remove_leader =
      ctl(*cluster_, leader_, {"member", "remove", std::to_string(leader_)});
  EXPECT_EQ(remove_leader.exit_code, 1) << describe(remove_leader);
  EXPECT_NE(remove_leader.err.find("transfer leadership"), std::string::npos) << remove_leader.err;
  const CtlRun transfer_unknown = ctl(*cluster_, leader_, {"leader", "transfer", "9"});
  EXPECT_EQ(transfer_unknown.exit_code, 1) << describe(transfer_unknown);

  const CtlRun transfer = ctl(*cluster_, follower(), {"leader", "transfer", "4", "--json"});
  ASSERT_EQ(transfer.exit_code, 0) << describe(transfer);
  EXPECT_EQ(transfer.json.at("leader").to_number<std::uint64_t>(), 4U);
  const std::uint64_t old_leader = leader_;
  auto leader = cluster_->leader(kLeaderTimeoutMs);
  ASSERT_TRUE(leader.ok());
  EXPECT_EQ(*leader, 4U);

  const CtlRun remove =
      ctl(*cluster_, 4, {"member", "remove", std::to_string(old_leader), "--json"});
  ASSERT_EQ(remove.exit_code, 0) << describe(remove);
  EXPECT_EQ(ids_of(remove.json, "voters").size(), 3U);
  ASSERT_TRUE(cluster_->stop(old_leader).ok());

  // The three remaining voters commit without the removed one. A restarted original member,
  // whose --peers does not name node 4, finds its address in the replicated state.
  const std::uint64_t other = old_leader == 1 ? 2 : 1;
  ASSERT_TRUE(cluster_->stop(other).ok());
  ASSERT_TRUE(cluster_->start(other).ok());
  ASSERT_TRUE(
      wait_for([&] { return put(*cluster_, 4, "after", "removal").ok(); }, kCatchUpTimeoutMs));
  ASSERT_TRUE(wait_for([&] { return stale_get(*cluster_, other, "after") == "removal"; },
                       kCatchUpTimeoutMs))
      << cluster_->log_tail(other);
  const CtlRun status = ctl(*cluster_, other, {"cluster", "status", "--json"});
  ASSERT_EQ(status.exit_code, 0) << describe(status);
  const std::vector<std::uint64_t> voters = ids_of(status.json, "voters");
  EXPECT_EQ(std::count(voters.begin(), voters.end(), old_leader), 0);
  EXPECT_EQ(std::count(voters.begin(), voters.end(), 4), 1);
}

TEST_F(Ctl, ABackupUnderWriteLoadRestoresIntoAFreshNodeThatServesEveryAcknowledgedWrite) {
  constexpr int kWriters = 3;
  std::atomic<bool> backup_asked{false};
  std::atomic<bool> stop{false};
  std::vector<std::map<std::string, std::string>> required(kWriters);  // acked before the backup
  std::vector<std::thread> writers;
  writers.reserve(kWriters);
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; !stop.load(); ++i) {
        const std::string key = fmt::format("w{}-{}", w, i);
        const std::string value = fmt::format("value-{}-{}", w, i);
        const bool acked = put(*cluster_, 1 + w % 3, key, value).ok();
        if (acked && !backup_asked.load()) required[w][key] = value;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const std::string dir = cluster_->root() + "/backup";
  backup_asked.store(true);
  const CtlRun backup = ctl(*cluster_, follower(), {"backup", dir, "--json"});
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  stop.store(true);
  for (std::thread& t : writers) t.join();
  ASSERT_EQ(backup.exit_code, 0) << describe(backup);
  std::size_t acknowledged = 0;
  for (const auto& r : required) acknowledged += r.size();
  ASSERT_GT(acknowledged, 50U) << "the load wrote too little to be a test";
  EXPECT_GT(backup.json.at("records").to_number<std::uint64_t>(), acknowledged);
  const CtlRun verify = ctl(*cluster_, 1, {"backup", "verify", dir});
  ASSERT_EQ(verify.exit_code, 0) << describe(verify);
  // `snapshot` is the same command; a second backup into a used directory is refused.
  const CtlRun snapshot = ctl(*cluster_, leader_, {"snapshot", dir + "-2", "--json"});
  ASSERT_EQ(snapshot.exit_code, 0) << describe(snapshot);
  EXPECT_GE(snapshot.json.at("index").to_number<std::uint64_t>(),
            backup.json.at("index").to_number<std::uint64_t>());
  const CtlRun reused = ctl(*cluster_, leader_, {"backup", dir});
  EXPECT_EQ(reused.exit_code, 1) << describe(reused);
  EXPECT_NE(reused.err.find("not empty"), std::string::npos) << reused.err;

  // A damaged copy is refused, and nothing is written.
  const std::string damaged = cluster_->root() + "/damaged";
  fs::copy(dir, damaged);
  {
    std::fstream f(damaged + "/" + server::kBackupDataFile,
                   std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x7f');
  }
  auto fresh = Cluster::create(1);
  ASSERT_TRUE(fresh.ok());
  const std::string data = (*fresh)->node(1).data_dir;
  const CtlRun refused = ctl(*cluster_, 1, {"restore", damaged, "--data", data, "--id", "1"});
  EXPECT_EQ(refused.exit_code, 1) << describe(refused);
  EXPECT_NE(refused.err.find("corruption"), std::string::npos) << refused.err;
  EXPECT_FALSE(fs::exists(data));

  const CtlRun restore = ctl(*cluster_, 1, {"restore", dir, "--data", data, "--id", "1", "--json"});
  ASSERT_EQ(restore.exit_code, 0) << describe(restore);
  const CtlRun twice = ctl(*cluster_, 1, {"restore", dir, "--data", data, "--id", "1"});
  EXPECT_EQ(twice.exit_code, 1) << describe(twice);
  EXPECT_NE(twice.err.find("not empty"), std::string::npos) << twice.err;

  ASSERT_TRUE((*fresh)->start(1).ok());
  ASSERT_TRUE((*fresh)->leader(kLeaderTimeoutMs).ok()) << (*fresh)->log_tail(1);
  const client::AdminClient restored = (*fresh)->admin(1);
  std::size_t checked = 0;
  for (const auto& r : required) {
    for (const auto& [key, value] : r) {
      auto got = restored.get("/v1/kv/" + key);
      ASSERT_TRUE(got.ok()) << key << ": " << got.status().to_string();
      EXPECT_EQ(*got, value) << key;
      ++checked;
    }
  }
  EXPECT_EQ(checked, acknowledged);
  // The restored node is a cluster of its own and takes writes.
  EXPECT_TRUE(put(**fresh, 1, "after-restore", "yes").ok());
}

TEST_F(Ctl, WorkflowsMessagesAndSagasWrapTheirHttpApis) {
  const client::AdminClient admin = cluster_->admin(leader_);
  auto started = admin.request("POST", "/v1/workflows",
                               R"({"type": "demo.pipeline", "id": "ctl-w1", "input": "2"})");
  ASSERT_TRUE(started.ok() && started->status == 200) << (started.ok() ? started->body : "");
  const CtlRun list =
      ctl(*cluster_, follower(), {"workflows", "list", "--type", "demo.pipeline", "--json"});
  ASSERT_EQ(list.exit_code, 0) << describe(list);
  EXPECT_NE(list.out.find("ctl-w1"), std::string::npos) << list.out;
  const CtlRun human = ctl(*cluster_, follower(), {"workflows", "list", "--type", "demo.pipeline"});
  ASSERT_EQ(human.exit_code, 0) << describe(human);
  EXPECT_NE(human.out.find("ctl-w1  demo.pipeline"), std::string::npos) << human.out;
  const CtlRun show = ctl(*cluster_, leader_, {"workflows", "show", "ctl-w1", "--json"});
  ASSERT_EQ(show.exit_code, 0) << describe(show);
  EXPECT_EQ(show.json.at("id").as_string(), "ctl-w1");
  const CtlRun history = ctl(*cluster_, leader_, {"workflows", "show", "ctl-w1", "--history"});
  ASSERT_EQ(history.exit_code, 0) << describe(history);
  EXPECT_NE(history.out.find("\"events\""), std::string::npos) << history.out;
  const CtlRun missing = ctl(*cluster_, leader_, {"workflows", "show", "no-such-workflow"});
  EXPECT_EQ(missing.exit_code, 1) << describe(missing);
  EXPECT_NE(missing.err.find("not_found"), std::string::npos) << missing.err;

  ASSERT_TRUE(admin.create_user("alice").ok());
  ASSERT_TRUE(admin.create_user("bob").ok());
  auto conversation = admin.create_conversation({"alice", "group", {"bob"}, "ctl-room", "room"});
  ASSERT_TRUE(conversation.ok()) << conversation.status().to_string();
  auto sent = admin.system_message("ctl-room", "hello", "m1");
  ASSERT_TRUE(sent.ok()) << sent.status().to_string();
  const CtlRun timeline =
      ctl(*cluster_, follower(),
          {"message", "timeline", "ctl-room", std::to_string(sent->seq), "--json"});
  ASSERT_EQ(timeline.exit_code, 0) << describe(timeline);
  EXPECT_TRUE(timeline.json.at("recipients").is_array()) << timeline.out;
  const CtlRun no_message = ctl(*cluster_, follower(), {"message", "timeline", "ctl-room", "99"});
  EXPECT_EQ(no_message.exit_code, 1) << describe(no_message);

  // A saga action on a workflow that is no saga in compensation_failed is refused by the node.
  for (const char* verb : {"retry", "resolve"}) {
    const CtlRun saga = ctl(*cluster_, leader_, {"saga", verb, "ctl-w1", "--json"});
    EXPECT_NE(saga.exit_code, 0) << describe(saga);
    EXPECT_TRUE(saga.json.is_object() && saga.json.get_object().contains("error")) << saga.out;
  }
}

}  // namespace
}  // namespace herald::e2e
