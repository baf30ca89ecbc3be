// End to end: three real `herald serve` processes writing JSON-lines logs (log_format = "json",
// docs/operations.md, "Logs"). One message is sent, acknowledged and read; its lines are then
// found by its ids (conversation + seq, the delivery workflow's id, the device) in more than one
// node's log, and every line of every log must parse with a strict JSON parser.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <cstdio>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "client/admin_client.h"
#include "client/herald_client.h"
#include "messaging/delivery.h"
#include "tests/e2e/cluster.h"
#include "tests/e2e/devices.h"

namespace herald::e2e {
namespace {

constexpr std::uint32_t kStartupTimeoutMs = 15'000;
// Bound on every node having applied (and logged) the message's last steps.
constexpr std::uint32_t kLogWaitMs = 10'000;

// Debug level: the lines on a message's path are debug lines (docs/operations.md, "Logs").
constexpr char kJsonDebugConfig[] = "log_format = \"json\"\nlog_level = \"debug\"\n";

// Every line of a node's log, parsed. A line that is not one JSON object fails the test.
struct NodeLog {
  std::vector<boost::json::object> lines;
  std::size_t unparsed = 0;
  std::string first_unparsed;
};

NodeLog read_log(const std::string& path) {
  NodeLog log;
  std::ifstream in(path, std::ios::binary);
  std::string line;
  while (std::getline(in, line)) {
    boost::system::error_code ec;
    boost::json::value v = boost::json::parse(line, ec);  // strict: invalid UTF-8 fails too
    if (ec || !v.is_object()) {
      if (log.unparsed++ == 0) log.first_unparsed = line;
      continue;
    }
    log.lines.push_back(std::move(v.as_object()));
  }
  return log;
}

std::string string_field(const boost::json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string();
}

std::uint64_t number_field(const boost::json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  if (v == nullptr) return 0;
  if (v->is_uint64()) return v->as_uint64();
  return v->is_int64() && v->as_int64() > 0 ? static_cast<std::uint64_t>(v->as_int64()) : 0;
}

bool about_message(const boost::json::object& o, const std::string& conversation,
                   std::uint64_t seq) {
  return string_field(o, "conversation") == conversation && number_field(o, "seq") == seq;
}

class JsonLogs : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster_ = must(Cluster::create(3), "creating the cluster");
    must(cluster_->set_config(kJsonDebugConfig), "the JSON log configuration");
    must(cluster_->start_all(), "starting the nodes");
    leader_ = must(cluster_->leader(kStartupTimeoutMs), "the first leader");
  }

  void TearDown() override {
    if (!HasFailure() || cluster_ == nullptr) return;
    for (std::uint64_t id = 1; id <= cluster_->size(); ++id) {
      std::fprintf(stderr, "---- node %lu log (tail) ----\n%s\n", static_cast<unsigned long>(id),
                   cluster_->log_tail(id).c_str());
    }
  }

  std::unique_ptr<Cluster> cluster_;
  std::uint64_t leader_ = 0;
};

TEST_F(JsonLogs, OneMessageIsFollowedAcrossNodesByItsIds) {
  const std::uint64_t alice_node = leader_ % 3 + 1;  // devices on the two followers
  const std::uint64_t bob_node = alice_node % 3 + 1;
  const client::AdminClient admin = cluster_->admin(alice_node);
  for (const char* user : {"alice", "bob"}) must(admin.create_user(user), "creating a user");
  const DeviceCredentials a_phone = must(provision_device(admin, "alice", "a-phone"), "a-phone");
  const DeviceCredentials b_phone = must(provision_device(admin, "bob", "b-phone"), "b-phone");
  const std::string conv =
      must(admin.create_conversation({"alice", "direct", {"bob"}, "", ""}), "conversation")
          .conversation_id;
  auto alice = must(connect_device(cluster_->node(alice_node).client_port, a_phone), "alice");
  auto bob = must(connect_device(cluster_->node(bob_node).client_port, b_phone), "bob");

  const std::uint64_t seq =
      must(alice->send(conv, "m1", "say \"hi\" \\ to\nbob \xE2\x82\xAC"), "send").seq;
  must(wait_for_change(*bob,
                       [&](const client::Change& c) {
                         return c.kind == "message_new" && c.conversation_id == conv &&
                                c.seq == seq;
                       })
           .status(),
       "bob receives the message");
  must(bob->ack(conv, seq).status(), "bob acknowledges");
  must(bob->read(conv, seq).status(), "bob reads");
  const std::string workflow = messaging::delivery_workflow_id(conv, seq, "bob");

  // Every node applies the message, its delivery workflow's transitions and the read; their
  // lines carry the ids. Wait until each node has logged the read's transition.
  const auto read_logged = [&](std::uint64_t id) {
    for (const auto& o : read_log(cluster_->node(id).log_path).lines) {
      if (string_field(o, "workflow") == workflow && string_field(o, "device") == "b-phone" &&
          string_field(o, "msg").find("-> read_acknowledged") != std::string::npos) {
        return true;
      }
    }
    return false;
  };
  for (std::uint64_t id = 1; id <= 3; ++id) {
    EXPECT_TRUE(eventually([&] { return read_logged(id); }, kLogWaitMs))
        << "node " << id << " logged the read of " << workflow;
  }

  std::set<std::uint64_t> nodes_with_message;
  std::set<std::uint64_t> nodes_with_stored;
  std::set<std::uint64_t> nodes_with_workflow;
  bool sender_gateway_line = false;
  bool ack_gateway_line = false;
  bool leader_line = false;
  for (std::uint64_t id = 1; id <= 3; ++id) {
    const NodeLog log = read_log(cluster_->node(id).log_path);
    SCOPED_TRACE(testing::Message() << "node " << id);
    EXPECT_EQ(log.unparsed, 0U) << "first line that is not a JSON object: " << log.first_unparsed;
    EXPECT_FALSE(log.lines.empty());
    for (const auto& o : log.lines) {
      // The fields every line has.
      ASSERT_FALSE(string_field(o, "ts").empty());
      ASSERT_FALSE(string_field(o, "level").empty());
      ASSERT_TRUE(o.contains("msg") && o.at("msg").is_string());
      ASSERT_EQ(number_field(o, "node"), id);
      ASSERT_TRUE(o.contains("term"));
      const std::string msg = string_field(o, "msg");
      if (about_message(o, conv, seq)) {
        nodes_with_message.insert(id);
        EXPECT_GT(number_field(o, "term"), 0U) << msg;
        if (msg.find("stored") != std::string::npos && string_field(o, "device") == "a-phone" &&
            string_field(o, "user") == "alice") {
          nodes_with_stored.insert(id);
        }
        if (string_field(o, "workflow") == workflow) nodes_with_workflow.insert(id);
        if (msg.starts_with("gateway: device alice/a-phone sent")) {
          EXPECT_EQ(id, alice_node);
          sender_gateway_line = true;
        }
        if (msg.starts_with("gateway: device bob/b-phone acknowledged")) {
          EXPECT_EQ(id, bob_node);
          ack_gateway_line = true;
        }
      }
      if (msg.find("leader") != std::string::npos && o.contains("leader") &&
          number_field(o, "leader") == leader_ && number_field(o, "term") > 0) {
        leader_line = true;
      }
    }
  }
  EXPECT_EQ(nodes_with_stored.size(), 3U) << "every replica logs the stored message";
  EXPECT_GE(nodes_with_workflow.size(), 2U) << "the delivery workflow on more than one node";
  EXPECT_GE(nodes_with_message.size(), 2U);
  EXPECT_TRUE(sender_gateway_line);
  EXPECT_TRUE(ack_gateway_line);
  EXPECT_TRUE(leader_line) << "a leader line names leader " << leader_ << " and its term";
}

}  // namespace
}  // namespace herald::e2e
