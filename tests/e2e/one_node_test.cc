// End to end on one real `herald serve` process: devices speak the WebSocket protocol
// (docs/protocol.md) and an operator reads delivery timelines through the admin API
// (docs/api-http.md). Users: alice (a-phone, a-laptop), bob (b-phone, with a push token) and
// carol (c-phone); alice and bob share a direct conversation, alice and carol a group.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "base/assert.h"
#include "base/encoding.h"
#include "client/admin_client.h"
#include "client/herald_client.h"
#include "tests/e2e/cluster.h"
#include "tests/e2e/devices.h"

namespace herald::e2e {
namespace {

using client::Answer;
using client::Change;
using client::HeraldClient;

// Bound on a fresh node electing itself and serving.
constexpr std::uint32_t kStartupTimeoutMs = 15'000;
// "Within a few seconds": a push after the socket grace (kPushAfterMs, 1 s), a workflow's state.
constexpr std::uint32_t kDeliveryWaitMs = 5'000;
// Long enough after a send for its push timer (1 s) to have fired, had it not been canceled.
constexpr std::uint32_t kPushGraceElapsedMs = 2'000;
// The server's bound on one incoming message (kMaxWsMessageBytes, 256 KiB).
constexpr std::size_t kMaxFrameBytes = std::size_t{256} * 1024;
constexpr std::uint16_t kCloseMessageTooBig = 1009;
constexpr std::uint16_t kClosePolicyViolation = 1008;
constexpr std::uint16_t kCloseUnsupportedData = 1003;
constexpr int kAuthFailuresBeforeClose = 3;

constexpr char kBobPushToken[] = "apns-token-of-b-phone";
constexpr char kGroupId[] = "g-alice-carol";

class OneNode : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster_ = must(Cluster::create(1), "creating the cluster");
    must(cluster_->start_all(), "starting the node");
    must(cluster_->leader(kStartupTimeoutMs), "waiting for a leader");
    admin_ = std::make_unique<client::AdminClient>(cluster_->admin(1));
    for (const char* user : {"alice", "bob", "carol"}) {
      must(admin_->create_user(user, user), "creating a user");
    }
    a_phone_ = must(provision_device(*admin_, "alice", "a-phone"), "a-phone");
    a_laptop_ = must(provision_device(*admin_, "alice", "a-laptop"), "a-laptop");
    b_phone_ = must(provision_device(*admin_, "bob", "b-phone"), "b-phone");
    c_phone_ = must(provision_device(*admin_, "carol", "c-phone"), "c-phone");
    must(admin_->set_push_token("bob", "b-phone", "apns", kBobPushToken), "bob's push token");
    direct_ = must(admin_->create_conversation({"alice", "direct", {"bob"}, "", ""}),
                   "the direct conversation")
                  .conversation_id;
    must(admin_->create_conversation({"alice", "group", {"carol"}, kGroupId, "alice and carol"}),
         "the group");
  }

  void TearDown() override {
    if (HasFailure() && cluster_ != nullptr) {
      std::fprintf(stderr, "---- node 1 log (tail) ----\n%s\n", cluster_->log_tail(1).c_str());
    }
  }

  std::unique_ptr<HeraldClient> open(const DeviceCredentials& device,
                                     std::optional<std::uint64_t> since = std::nullopt) {
    return must(connect_device(cluster_->node(1).client_port, device, since),
                "connecting " + device.device_id);
  }

  std::unique_ptr<HeraldClient> open_unauthenticated() {
    return must(HeraldClient::connect("127.0.0.1", cluster_->node(1).client_port),
                "connecting without auth");
  }

  // The journaled pushes to `device_id` of message `seq` of the direct conversation. Each line is
  // a push the node would have sent; none is "ok": the journal is no provider.
  std::size_t pushes_to(const std::string& device_id, std::uint64_t seq) {
    std::size_t n = 0;
    for (const PushRecord& p : must(cluster_->pushes(1), "reading the push journal")) {
      if (p.device_id == device_id && p.conversation_id == direct_ && p.seq == seq) ++n;
    }
    return n;
  }

  bool delivery_reaches(std::uint64_t seq, const std::string& state) {
    return eventually([&] { return delivery_state(*admin_, direct_, seq, "bob") == state; },
                      kDeliveryWaitMs);
  }

  // Bob's delivery of `seq` failed its push with push.no_provider (the node journals pushes in
  // place of a provider) and stayed "stored": nothing counts as dispatched.
  bool recorded_not_dispatched(std::uint64_t seq) {
    const Result<client::MessageTimeline> t = admin_->timeline(direct_, seq);
    const client::RecipientTimeline* bob = t.ok() ? t->recipient("bob") : nullptr;
    if (bob == nullptr || bob->state != "stored") return false;
    bool failed = false;
    bool no_provider = false;
    for (const client::TimelineEvent& e : bob->history) {
      failed = failed || e.name == "push_failed";
      no_provider = no_provider || e.error_type == "push.no_provider";
    }
    return failed && no_provider;
  }

  std::uint64_t send(HeraldClient& device, const std::string& client_id, const std::string& body) {
    const client::SendResult sent =
        must(device.send(direct_, client_id, body), "send " + client_id);
    EXPECT_FALSE(sent.existed) << client_id;
    return sent.seq;
  }

  std::unique_ptr<Cluster> cluster_;
  std::unique_ptr<client::AdminClient> admin_;
  DeviceCredentials a_phone_;
  DeviceCredentials a_laptop_;
  DeviceCredentials b_phone_;
  DeviceCredentials c_phone_;
  std::string direct_;
};

bool is_new_message(const Change& c, std::uint64_t seq) {
  return c.kind == "message_new" && c.seq == seq;
}

// Sends `frame` as it is and expects the error `code` answering `re` (nullopt: re null); then a
// ping on the same connection must still be answered.
void expect_error_then_usable(HeraldClient& device, const std::string& frame,
                              const std::string& code, const std::optional<std::string>& re) {
  SCOPED_TRACE(frame.substr(0, 80));
  must(device.send_raw(frame), "sending a raw frame");
  const Answer answer = must(device.next_answer(kChangeWaitMs), "the answer to a raw frame");
  EXPECT_EQ(client::protocol_error_code(answer.status), code) << answer.text;
  EXPECT_EQ(answer.re, re) << answer.text;
  EXPECT_TRUE(device.ping().ok()) << "the connection must stay usable";
}

// Reads (and drops) frames until the server closes the connection; returns the close code, or
// nullopt when it stays open for kChangeWaitMs.
std::optional<std::uint16_t> close_code_after(HeraldClient& device) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kChangeWaitMs);
  while (std::chrono::steady_clock::now() < deadline && device.receive_raw(kChangeWaitMs).ok()) {
  }
  return device.close_code();
}

// A ping frame of exactly `bytes` bytes, padded with an unknown field.
std::string ping_of_size(const std::string& id, std::size_t bytes) {
  const std::string head = R"({"type":"ping","id":")" + id + R"(","pad":")";
  const std::string tail = "\"}";
  HERALD_ASSERT(bytes >= head.size() + tail.size(), "too small for a ping");
  return head + std::string(bytes - head.size() - tail.size(), 'x') + tail;
}

TEST_F(OneNode, OperatorSurfacesRefuseCallersWithoutTheAdminToken) {
  const std::uint16_t port = cluster_->node(1).client_port;
  for (const char* token : {"", "not-the-token"}) {
    const client::AdminClient stranger("127.0.0.1", port, token);
    for (const auto& [method, target, body] :
         std::vector<std::tuple<const char*, const char*, const char*>>{
             {"PUT", "/v1/kv/owned", "x"},
             {"GET", "/v1/kv/owned", ""},
             {"GET", "/v1/cluster", ""},
             {"POST", "/v1/workflows", R"({"type":"demo.pipeline","id":"x-1","input":"1"})"},
             {"GET", "/v1/workflows", ""},
             {"POST", "/v1/sagas/s/actions/a/complete", "{}"},
             {"POST", "/v1/admin/users", R"({"user_id":"mallory"})"},
             {"GET", "/v1/admin/users/alice", ""}}) {
      const client::HttpReply reply =
          must(stranger.request(method, target, body), "an unauthenticated operator call");
      EXPECT_EQ(reply.status, 401) << method << " " << target << " with '" << token << "'";
      EXPECT_NE(reply.body.find("\"unauthorized\""), std::string::npos) << reply.body;
    }
    // Devices and load balancers still reach what is meant for them.
    const client::HttpReply health = must(stranger.request("GET", "/v1/health"), "health");
    EXPECT_EQ(health.status, 200) << health.body;
  }
  // Nothing the strangers sent was applied.
  EXPECT_EQ(must(admin_->request("GET", "/v1/kv/owned"), "reading back").status, 404);
  EXPECT_EQ(must(admin_->request("GET", "/v1/admin/users/mallory"), "reading back").status, 404);
  // The device socket needs no admin token: the gateway itself answers, asking for `auth`.
  EXPECT_EQ(client::protocol_error_code(open_unauthenticated()->ping().status()),
            "not_authenticated");
}

TEST_F(OneNode, PastRetentionADeviceResyncsFromHistoryAndARetransmissionIsNew) {
  const client::HttpReply set =
      must(admin_->request("PUT", "/v1/admin/retention",
                           R"({"dedup_window_ms": 1000, "change_retention_ms": 1000})"),
           "shortening retention");
  ASSERT_EQ(set.status, 200) << set.body;
  auto alice = open(a_phone_);
  const std::uint64_t first = send(*alice, "old", "before the window");
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  for (int i = 0; i < 5; ++i) send(*alice, fmt::format("new-{}", i), "after the window");

  // Bob's phone was away since the start: its cursor is below what the node keeps.
  auto bob = must(HeraldClient::connect("127.0.0.1", cluster_->node(1).client_port), "bob");
  const client::AuthInfo info =
      must(bob->auth(b_phone_.user_id, b_phone_.device_id, b_phone_.token, std::uint64_t{0}),
           "auth with since 0");
  EXPECT_TRUE(info.resync_required);
  const client::SyncResult behind = must(bob->sync(0), "sync from 0");
  EXPECT_TRUE(behind.resync_required);
  EXPECT_TRUE(behind.changes.empty());
  EXPECT_EQ(behind.cursor, info.cursor);
  // It rebuilds from history, newest first, and nothing is missing.
  const client::HistoryResult history = must(bob->history(direct_), "history");
  ASSERT_EQ(history.messages.size(), 6U);
  EXPECT_EQ(history.messages.back().seq, first);
  EXPECT_EQ(history.messages.front().seq, first + 5);
  EXPECT_FALSE(must(bob->sync(behind.cursor), "sync from the new cursor").resync_required);

  // The retransmission of a send older than the dedup window is a new message.
  const client::SendResult again = must(alice->send(direct_, "old", "before the window"), "again");
  EXPECT_FALSE(again.existed);
  EXPECT_GT(again.seq, first + 5);
}

TEST_F(OneNode, PastTheMessageRetentionAMessageLeavesHistoryAndSyncAndCannotBeEdited) {
  const client::HttpReply set =
      must(admin_->request("PUT", "/v1/admin/retention", R"({"message_retention_ms": 1000})"),
           "setting a message retention");
  ASSERT_EQ(set.status, 200) << set.body;
  const client::HttpReply got =
      must(admin_->request("GET", "/v1/admin/retention"), "reading the retention");
  EXPECT_NE(got.body.find(R"("message_retention_ms":1000)"), std::string::npos) << got.body;
  auto alice = open(a_phone_);
  const std::uint64_t old_seq = send(*alice, "old", "soon gone");
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const std::uint64_t new_seq = send(*alice, "new", "still here");  // its apply sweeps "old"

  auto bob = open(b_phone_);
  const client::HistoryResult history = must(bob->history(direct_), "history");
  ASSERT_EQ(history.messages.size(), 1U);
  EXPECT_EQ(history.messages[0].seq, new_seq);
  EXPECT_EQ(history.next_before, 0U);
  const client::SyncResult synced = must(bob->sync(0), "sync from 0");
  for (const Change& c : synced.changes) {
    EXPECT_FALSE(is_new_message(c, old_seq)) << "the expired message's change is skipped";
  }
  EXPECT_TRUE(std::any_of(synced.changes.begin(), synced.changes.end(),
                          [&](const Change& c) { return is_new_message(c, new_seq); }));
  EXPECT_EQ(client::protocol_error_code(alice->edit(direct_, old_seq, "revived")), "not_found");
  EXPECT_EQ(client::protocol_error_code(alice->remove(direct_, old_seq)), "not_found");
}

TEST_F(OneNode, ADeletedMessageIsNotPushedAndClosedDeliveriesArePurgedToASummary) {
  const client::HttpReply set =
      must(admin_->request("PUT", "/v1/admin/retention", R"({"closed_workflow_ms": 1000})"),
           "shortening the closed-workflow retention");
  ASSERT_EQ(set.status, 200) << set.body;
  const client::HttpReply got =
      must(admin_->request("GET", "/v1/admin/retention"), "reading the retention");
  EXPECT_NE(got.body.find(R"("closed_workflow_ms":1000)"), std::string::npos) << got.body;

  // Bob is offline: his delivery waits for the push grace. Alice deletes the message first.
  auto alice = open(a_phone_);
  const std::uint64_t seq = send(*alice, "oops", "sent by mistake");
  const Status deleted = alice->remove(direct_, seq);
  ASSERT_TRUE(deleted.ok()) << deleted.to_string();
  const client::MessageTimeline timeline = must(admin_->timeline(direct_, seq), "the timeline");
  const client::RecipientTimeline* bob = timeline.recipient("bob");
  ASSERT_NE(bob, nullptr);
  EXPECT_EQ(bob->status, "canceled");
  const std::string id = bob->workflow_id;
  std::this_thread::sleep_for(std::chrono::milliseconds(kPushGraceElapsedMs));
  EXPECT_EQ(pushes_to("b-phone", seq), 0U) << "a deleted message must not be pushed";

  // Past the retention the delivery's record and history are gone; a summary stays.
  const std::string path = fmt::format("/v1/admin/conversations/{}/messages/{}", direct_, seq);
  EXPECT_TRUE(eventually(
      [&] {
        auto reply = admin_->request("GET", path);
        return reply.ok() && reply->body.find(R"("purged":true)") != std::string::npos;
      },
      kDeliveryWaitMs));
  const client::HttpReply summary =
      must(admin_->request("GET", "/v1/workflows/" + percent_encode(id)), "the purged workflow");
  EXPECT_EQ(summary.status, 200) << summary.body;
  EXPECT_NE(summary.body.find(R"("status":"CANCELED")"), std::string::npos) << summary.body;
  EXPECT_NE(summary.body.find(R"("kind":"canceled")"), std::string::npos) << summary.body;
}

TEST_F(OneNode, ADeliveredMessageNobodyReadsCompletesAtTheEndOfItsLifetime) {
  const client::HttpReply set =
      must(admin_->request("PUT", "/v1/admin/retention", R"({"delivery_lifetime_ms": 1500})"),
           "shortening the delivery lifetime");
  ASSERT_EQ(set.status, 200) << set.body;
  const client::HttpReply got =
      must(admin_->request("GET", "/v1/admin/retention"), "reading the retention");
  EXPECT_NE(got.body.find(R"("delivery_lifetime_ms":1500)"), std::string::npos) << got.body;

  auto bob = open(b_phone_);
  auto alice = open(a_phone_);
  const std::uint64_t seq = send(*alice, "unread", "never read");
  must(bob->ack(direct_, seq), "bob acknowledges");
  ASSERT_TRUE(delivery_reaches(seq, "delivery_confirmed"));
  // Nobody reads it: the run completes once its lifetime is over, where it stands.
  const auto completed = [&] {
    auto timeline = admin_->timeline(direct_, seq);
    const client::RecipientTimeline* r = timeline.ok() ? timeline->recipient("bob") : nullptr;
    return r != nullptr && r->status == "completed";
  };
  ASSERT_TRUE(eventually(completed, kDeliveryWaitMs));
  const client::MessageTimeline timeline = must(admin_->timeline(direct_, seq), "the timeline");
  const client::RecipientTimeline* r = timeline.recipient("bob");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->state, "delivery_confirmed");
  EXPECT_EQ(std::count_if(r->history.begin(), r->history.end(),
                          [](const client::TimelineEvent& e) { return e.kind == "expired"; }),
            1);
  // A read afterwards still moves the read state; the closed delivery is left as it was.
  must(bob->read(direct_, seq), "bob reads");
  EXPECT_EQ(delivery_state(*admin_, direct_, seq, "bob"), "delivery_confirmed");
}

TEST_F(OneNode, InternalWorkflowTypesCannotBeStartedThroughTheApi) {
  for (const char* type : {"messaging.delivery", "messaging.read_sync"}) {
    const client::HttpReply reply = must(
        admin_->request("POST", "/v1/workflows",
                        fmt::format(R"({{"type":"{}","id":"forged-{}","input":""}})", type, type)),
        "starting an internal workflow");
    EXPECT_EQ(reply.status, 403) << type << ": " << reply.body;
    EXPECT_NE(reply.body.find("internal_type"), std::string::npos) << reply.body;
  }
  // Other types still start.
  const client::HttpReply demo =
      must(admin_->request("POST", "/v1/workflows",
                           R"({"type":"demo.pipeline","id":"d-1","input":"1"})"),
           "starting a demo workflow");
  EXPECT_LT(demo.status, 300) << demo.body;
}

TEST_F(OneNode, LiveDeliveryIsConfirmedByAckWithoutPush) {
  auto a_phone = open(a_phone_);
  auto a_laptop = open(a_laptop_);
  auto b_phone = open(b_phone_);

  const std::uint64_t seq = send(*a_phone, "m-1", "hello bob");
  EXPECT_EQ(seq, 1U);
  const Change got = must(b_phone->next_change(kChangeWaitMs), "bob's live change");
  ASSERT_TRUE(is_new_message(got, seq)) << got.kind << " " << got.seq;
  ASSERT_TRUE(got.message.has_value());
  EXPECT_EQ(got.message->body, "hello bob");
  EXPECT_EQ(got.message->sender, "alice");
  EXPECT_EQ(got.message->sender_device, "a-phone");
  EXPECT_EQ(must(b_phone->ack(direct_, seq), "bob's ack"), seq);

  // Alice's other device sees her own message: one stream per user.
  const Change own = must(a_laptop->next_change(kChangeWaitMs), "alice's own change");
  EXPECT_TRUE(is_new_message(own, seq)) << own.kind;

  EXPECT_TRUE(delivery_reaches(seq, "delivery_confirmed"));
  std::this_thread::sleep_for(std::chrono::milliseconds(kPushGraceElapsedMs));
  EXPECT_EQ(pushes_to("b-phone", seq), 0U) << "an acknowledged message must not be pushed";
  const client::MessageTimeline timeline = must(admin_->timeline(direct_, seq), "the timeline");
  const client::RecipientTimeline* bob = timeline.recipient("bob");
  ASSERT_NE(bob, nullptr);
  EXPECT_EQ(bob->state, "delivery_confirmed");
  ASSERT_EQ(bob->devices.size(), 1U);
  EXPECT_EQ(bob->devices[0].device_id, "b-phone");
  EXPECT_EQ(bob->devices[0].state, "delivered");
}

TEST_F(OneNode, OfflineDeviceIsPushedAndCatchesUpWithSince) {
  auto a_phone = open(a_phone_);
  auto b_phone = open(b_phone_);
  const std::uint64_t first = send(*a_phone, "m-1", "are you there?");
  const Change seen =
      must(wait_for_change(*b_phone, [&](const Change& c) { return is_new_message(c, first); }),
           "bob's first message");
  must(b_phone->ack(direct_, first), "bob's ack");
  must(b_phone->close(), "bob going offline");

  std::vector<std::uint64_t> missed;
  for (int i = 2; i <= 4; ++i) {
    missed.push_back(send(*a_phone, "m-" + std::to_string(i), "missed " + std::to_string(i)));
  }
  for (const std::uint64_t seq : missed) {
    EXPECT_TRUE(eventually([&] { return pushes_to("b-phone", seq) > 0; }, kDeliveryWaitMs))
        << "no push to b-phone for seq " << seq;
    // The journal stands in for a provider: the timeline says so and the run is not dispatched.
    EXPECT_TRUE(eventually([&] { return recorded_not_dispatched(seq); }, kDeliveryWaitMs)) << seq;
  }
  EXPECT_EQ(pushes_to("b-phone", first), 0U);

  b_phone = open(b_phone_, seen.cursor);
  const std::vector<Change> caught_up = collect_changes(*b_phone);
  EXPECT_EQ(new_message_seqs(caught_up, direct_), missed) << "each missed message once, in order";
  for (std::size_t i = 1; i < caught_up.size(); ++i) {
    EXPECT_LT(caught_up[i - 1].cursor, caught_up[i].cursor);
  }
  EXPECT_EQ(must(b_phone->ack(direct_, missed.back()), "bob's ack after reconnecting"),
            missed.back());
  for (const std::uint64_t seq : missed) {
    EXPECT_TRUE(delivery_reaches(seq, "delivery_confirmed")) << seq;
  }
}

TEST_F(OneNode, ReadSyncsReceiptsToTheSenderAndTheReader) {
  auto a_phone = open(a_phone_);
  auto a_laptop = open(a_laptop_);
  auto b_phone = open(b_phone_);
  std::uint64_t last = 0;
  for (int i = 1; i <= 3; ++i) last = send(*a_phone, "m-" + std::to_string(i), "line");
  must(wait_for_change(*b_phone, [&](const Change& c) { return is_new_message(c, last); }),
       "bob's messages");
  must(b_phone->ack(direct_, last), "bob's ack");

  const client::ReadResult read = must(b_phone->read(direct_, 2), "bob's read");
  EXPECT_FALSE(read.saga_id.empty());
  EXPECT_EQ(read.cursor, 2U);
  for (HeraldClient* alice : {a_phone.get(), a_laptop.get()}) {
    const Change receipt =
        must(wait_for_change(*alice, [](const Change& c) { return c.kind == "read_receipt"; }),
             "alice's read receipt");
    EXPECT_EQ(receipt.actor, "bob");
    EXPECT_EQ(receipt.seq, 2U);
    EXPECT_EQ(receipt.conversation_id, direct_);
  }
  const Change cursor =
      must(wait_for_change(*b_phone, [](const Change& c) { return c.kind == "read_cursor"; }),
           "bob's read cursor");
  EXPECT_EQ(cursor.seq, 2U);
  EXPECT_EQ(cursor.device_id, "b-phone");
  EXPECT_TRUE(delivery_reaches(2, "read_acknowledged"));
  EXPECT_TRUE(delivery_reaches(1, "read_acknowledged"));
  EXPECT_EQ(delivery_state(*admin_, direct_, 3, "bob"), "delivery_confirmed");

  const auto beyond = b_phone->read(direct_, last + 10);
  EXPECT_EQ(client::protocol_error_code(beyond.status()), "read_beyond_last_seq")
      << beyond.status().to_string();
  EXPECT_TRUE(b_phone->ping().ok());
}

TEST_F(OneNode, AckTellsTheSenderDeliveredOnceAndResumeReplaysIt) {
  auto a_phone = open(a_phone_);
  auto b_phone = open(b_phone_);
  const std::uint64_t since = must(a_phone->sync(0, 100), "alice's cursor before").cursor;
  const std::uint64_t first = send(*a_phone, "m-1", "one");
  const std::uint64_t second = send(*a_phone, "m-2", "two");
  must(wait_for_change(*b_phone, [&](const Change& c) { return is_new_message(c, second); }),
       "bob's messages");
  EXPECT_EQ(must(b_phone->ack(direct_, first), "bob's first ack"), first);
  const Change receipt =
      must(wait_for_change(*a_phone,
                           [](const Change& c) { return c.kind == client::kDeliveryReceiptKind; }),
           "alice's delivery receipt");
  EXPECT_EQ(receipt.actor, "bob");
  EXPECT_EQ(receipt.seq, first);
  EXPECT_EQ(receipt.conversation_id, direct_);
  EXPECT_TRUE(delivery_reaches(first, "delivery_confirmed"));

  EXPECT_EQ(must(b_phone->ack(direct_, first), "bob's repeated ack"), first);
  EXPECT_EQ(must(b_phone->ack(direct_, second), "bob's second ack"), second);
  const Change later =
      must(wait_for_change(*a_phone,
                           [](const Change& c) { return c.kind == client::kDeliveryReceiptKind; }),
           "alice's second delivery receipt");
  EXPECT_EQ(later.seq, second) << "the repeated ack told alice nothing";
  for (const Change& c : collect_changes(*b_phone)) {
    EXPECT_NE(c.kind, client::kDeliveryReceiptKind) << "bob is not told of his own acks";
  }

  // A device of alice's that was away gets both receipts on resume, in stream order.
  auto a_laptop = open(a_laptop_, since);
  std::vector<std::uint64_t> replayed;
  for (const Change& c : collect_changes(*a_laptop)) {
    if (c.kind == client::kDeliveryReceiptKind) replayed.push_back(c.seq);
  }
  EXPECT_EQ(replayed, (std::vector<std::uint64_t>{first, second}));
}

TEST_F(OneNode, RetransmittedSendKeepsItsSeq) {
  auto a_phone = open(a_phone_);
  auto b_phone = open(b_phone_);
  const client::SendResult first = must(a_phone->send(direct_, "dup-1", "once"), "first send");
  const client::SendResult again = must(a_phone->send(direct_, "dup-1", "once"), "retransmission");
  EXPECT_FALSE(first.existed);
  EXPECT_TRUE(again.existed);
  EXPECT_EQ(again.seq, first.seq);
  EXPECT_EQ(new_message_seqs(collect_changes(*b_phone), direct_),
            std::vector<std::uint64_t>{first.seq});
}

TEST_F(OneNode, EditAndDeleteShowInSyncAfterReconnect) {
  auto a_phone = open(a_phone_);
  auto b_phone = open(b_phone_);
  const std::uint64_t kept = send(*a_phone, "m-1", "typo");
  const std::uint64_t gone = send(*a_phone, "m-2", "oops");
  const Change seen =
      must(wait_for_change(*b_phone, [&](const Change& c) { return is_new_message(c, gone); }),
           "bob's messages");
  EXPECT_EQ(client::protocol_error_code(b_phone->edit(direct_, kept, "not yours")), "forbidden");
  must(b_phone->close(), "bob going offline");

  must(a_phone->edit(direct_, kept, "fixed"), "alice's edit");
  must(a_phone->remove(direct_, gone), "alice's delete");

  b_phone = open(b_phone_, seen.cursor);
  const Change edited =
      must(wait_for_change(*b_phone, [](const Change& c) { return c.kind == "message_edited"; }),
           "the edit after reconnecting");
  ASSERT_TRUE(edited.message.has_value());
  EXPECT_EQ(edited.seq, kept);
  EXPECT_EQ(edited.message->body, "fixed");
  EXPECT_TRUE(edited.message->edited);
  const Change deleted =
      must(wait_for_change(*b_phone, [](const Change& c) { return c.kind == "message_deleted"; }),
           "the delete after reconnecting");
  ASSERT_TRUE(deleted.message.has_value());
  EXPECT_EQ(deleted.seq, gone);
  EXPECT_TRUE(deleted.message->deleted);

  // sync from the start joins each message change with the message as it is now.
  const client::SyncResult all = must(b_phone->sync(0), "bob's sync");
  EXPECT_FALSE(all.has_more);
  bool saw_kept = false;
  for (const Change& c : all.changes) {
    if (c.kind != "message_new" || !c.message.has_value()) continue;
    if (c.seq == kept) {
      saw_kept = true;
      EXPECT_EQ(c.message->body, "fixed");
    }
    if (c.seq == gone) {
      EXPECT_TRUE(c.message->deleted);
    }
  }
  EXPECT_TRUE(saw_kept);
}

TEST_F(OneNode, BadInputIsAnsweredWithItsCodeAndTheConnectionCarriesOn) {
  auto fresh = open_unauthenticated();
  must(fresh->send_raw(R"({"type":"ping","id":"early"})"), "a request before auth");
  const Answer early = must(fresh->next_answer(kChangeWaitMs), "the answer before auth");
  EXPECT_EQ(client::protocol_error_code(early.status), "not_authenticated");
  EXPECT_EQ(early.re, "early");
  const auto wrong = fresh->auth("bob", "b-phone", "not-the-token");
  EXPECT_EQ(client::protocol_error_code(wrong.status()), "unauthorized");
  must(fresh->auth(b_phone_.user_id, b_phone_.device_id, b_phone_.token), "auth after a failure");
  EXPECT_EQ(client::protocol_error_code(
                fresh->auth(b_phone_.user_id, b_phone_.device_id, b_phone_.token).status()),
            "already_authenticated");

  HeraldClient& bob = *fresh;
  expect_error_then_usable(bob, "{not json", "malformed_json", std::nullopt);
  // Nested deeper than the server's bound (16 levels, docs/protocol.md), and still within the
  // JSON parser's own default limit (32), so only the bound refuses it.
  constexpr std::size_t kTooDeep = 20;
  const std::string deep = R"({"type":"ping","id":"d1","x":)" + std::string(kTooDeep, '[') +
                           std::string(kTooDeep, ']') + "}";
  expect_error_then_usable(bob, deep, "malformed_json", std::nullopt);
  expect_error_then_usable(bob, R"({"type":"teleport","id":"u1"})", "unknown_type", "u1");
  expect_error_then_usable(bob, R"({"id":"u2"})", "unknown_type", "u2");
  expect_error_then_usable(
      bob, R"({"type":"send","id":"f1","conversation_id":"x","body":"no client id"})",
      "missing_field", "f1");
  expect_error_then_usable(
      bob, R"({"type":"send","id":"w1","conversation_id":"x","client_message_id":"c","body":5})",
      "wrong_type", "w1");
  expect_error_then_usable(bob, R"({"type":"sync","id":"w2","since":-3})", "wrong_type", "w2");
  const auto outsider = bob.send(kGroupId, "intrusion-1", "let me in");
  EXPECT_EQ(client::protocol_error_code(outsider.status()), "not_member")
      << outsider.status().to_string();
  EXPECT_TRUE(bob.ping().ok());
}

TEST_F(OneNode, RepeatedWrongTokensCloseWith1008) {
  auto intruder = open_unauthenticated();
  for (int i = 0; i < kAuthFailuresBeforeClose; ++i) {
    const auto refused = intruder->auth("bob", "b-phone", "guess-" + std::to_string(i));
    EXPECT_EQ(client::protocol_error_code(refused.status()), "unauthorized")
        << refused.status().to_string();
  }
  EXPECT_EQ(close_code_after(*intruder), kClosePolicyViolation);
}

TEST_F(OneNode, FrameOfExactlyTheBoundIsServed) {
  auto a_phone = open(a_phone_);
  must(a_phone->send_raw(ping_of_size("edge", kMaxFrameBytes)), "a frame of 256 KiB");
  const Answer answer = must(a_phone->next_answer(kChangeWaitMs), "the answer to the frame");
  EXPECT_TRUE(answer.status.ok()) << answer.status.to_string();
  EXPECT_EQ(answer.re, "edge");
}

TEST_F(OneNode, OversizeFrameClosesWith1009AndOthersCarryOn) {
  auto a_phone = open(a_phone_);
  auto b_phone = open(b_phone_);
  auto a_laptop = open(a_laptop_);
  // One byte over the bound. (A frame far larger races the server's close: it tears the TCP
  // connection down while the rest of the frame is still arriving, and the reset can destroy the
  // close frame before the client reads it.)
  a_laptop->send_raw(ping_of_size("big", kMaxFrameBytes + 1)).ignore();
  EXPECT_EQ(close_code_after(*a_laptop), kCloseMessageTooBig);

  auto c_phone = open(c_phone_);
  must(c_phone->send_binary("\x01\x02"), "a binary frame");
  EXPECT_EQ(close_code_after(*c_phone), kCloseUnsupportedData);

  const std::uint64_t seq = send(*a_phone, "after-big", "still here");
  must(wait_for_change(*b_phone, [&](const Change& c) { return is_new_message(c, seq); }),
       "bob's message after the oversize frame");
  EXPECT_TRUE(a_phone->ping().ok());
}

TEST_F(OneNode, GroupLifecycleThroughTheProtocol) {
  auto a_phone = open(a_phone_);
  auto b_phone = open(b_phone_);
  auto c_phone = open(c_phone_);
  client::NewConversation spec;
  spec.members = {"bob"};
  spec.title = "plans";
  const client::Conversation created = must(a_phone->conversation_create(spec), "create");
  EXPECT_EQ(created.kind, "group");
  EXPECT_EQ(created.title, "plans");
  EXPECT_EQ(created.created_by, "alice");
  ASSERT_EQ(created.members.size(), 2U);
  const std::string id = created.conversation_id;
  auto in_group = [&](const std::string& kind) {
    return [id, kind](const Change& c) { return c.conversation_id == id && c.kind == kind; };
  };
  must(wait_for_change(*b_phone, in_group("conversation_created")), "bob told of the group");

  // A title over its bound (256 bytes, docs/protocol.md "Limits") is too_large and changes
  // nothing; a control character is invalid_argument.
  constexpr std::size_t kTitleBound = 256;
  EXPECT_EQ(client::protocol_error_code(
                a_phone->conversation_rename(id, std::string(kTitleBound + 1, 't'))),
            "too_large");
  EXPECT_EQ(client::protocol_error_code(a_phone->conversation_rename(id, "tab\tbed")),
            "invalid_argument");
  must(a_phone->conversation_rename(id, "new plans"), "rename");
  EXPECT_EQ(must(wait_for_change(*b_phone, in_group("conversation_renamed")), "renamed").title,
            "new plans");
  must(a_phone->members_add(id, {"carol"}), "add carol");
  const Change added = must(wait_for_change(*b_phone, in_group("members_added")), "added");
  EXPECT_EQ(added.users, std::vector<std::string>{"carol"});
  must(a_phone->members_role(id, "carol", "admin"), "make carol admin");
  const Change role = must(wait_for_change(*b_phone, in_group("role_changed")), "role");
  EXPECT_EQ(role.role, "admin");
  EXPECT_EQ(client::protocol_error_code(b_phone->members_remove(id, "carol")), "forbidden");
  EXPECT_EQ(must(b_phone->conversation_get(id), "get").title, "new plans");

  must(a_phone->typing(id, true), "typing");
  std::optional<client::TypingEvent> typing;
  while (!typing.has_value()) {  // presence events may come first
    const client::Event event = must(b_phone->next_event(kChangeWaitMs), "bob's typing event");
    if (const auto* t = std::get_if<client::TypingEvent>(&event)) typing = *t;
  }
  EXPECT_EQ(typing->user_id, "alice");
  EXPECT_EQ(typing->conversation_id, id);
  EXPECT_TRUE(typing->active);

  client::PrefsUpdate mute;
  mute.muted = true;
  EXPECT_TRUE(must(b_phone->prefs_set(id, mute), "mute").muted);
  EXPECT_TRUE(must(b_phone->prefs_get(id), "prefs").muted);
  EXPECT_TRUE(must(b_phone->prefs_get(), "user prefs").push_enabled);
  client::PrefsUpdate hide;
  hide.hide_previews = true;
  EXPECT_TRUE(must(b_phone->prefs_set(std::nullopt, hide), "hide previews").hide_previews);
  EXPECT_TRUE(must(b_phone->prefs_get(), "user prefs").hide_previews);
  EXPECT_FALSE(b_phone->prefs_set(id, hide).ok());  // not a conversation's setting
  const client::ChatsResult chats = must(b_phone->chats(), "bob's chats");
  bool listed = false;
  for (const client::Chat& chat : chats.chats) {
    if (chat.conversation_id != id) continue;
    listed = true;
    EXPECT_TRUE(chat.muted);
    EXPECT_EQ(chat.title, "new plans");
  }
  EXPECT_TRUE(listed);

  must(c_phone->leave(id), "carol leaves");
  const Change left = must(wait_for_change(*b_phone, in_group("member_left")), "left");
  EXPECT_EQ(left.users, std::vector<std::string>{"carol"});
  EXPECT_EQ(client::protocol_error_code(c_phone->conversation_get(id).status()), "not_member");
}

TEST_F(OneNode, PresenceReachesEachContactOnceAndNotTheUserItself) {
  // A second conversation shared by alice and bob.
  must(admin_->create_conversation({"alice", "group", {"bob"}, "g-alice-bob", "pair"}), "group");
  auto b_phone = open(b_phone_);
  auto a_phone = open(a_phone_);
  std::vector<client::PresenceEvent> to_bob;
  std::vector<client::PresenceEvent> to_alice;
  for (auto [device, into] :
       {std::pair{b_phone.get(), &to_bob}, std::pair{a_phone.get(), &to_alice}}) {
    while (true) {
      auto event = device->next_event(kQuietMs);
      if (!event.ok()) break;
      if (const auto* p = std::get_if<client::PresenceEvent>(&*event)) into->push_back(*p);
    }
  }
  auto listed = [](const std::vector<client::PresenceEvent>& events) {
    std::string out;
    for (const auto& e : events) out += e.user_id + (e.online ? " online; " : " offline; ");
    return out;
  };
  ASSERT_EQ(to_bob.size(), 1U) << "one presence event per contact coming online, got: "
                               << listed(to_bob);
  EXPECT_EQ(to_bob[0].user_id, "alice");
  EXPECT_TRUE(to_bob[0].online);
  EXPECT_TRUE(to_alice.empty()) << "a user's own device is told: " << listed(to_alice);
}

}  // namespace
}  // namespace herald::e2e

namespace herald::e2e {
namespace {

// 30 messages of 60 kB: about 1.8 MB of JSON, more than a connection's outbound queue.
TEST_F(OneNode, SyncAndHistoryOverLargeMessagesAnswerInPagesBoundedInBytes) {
  constexpr int kMessages = 30;
  constexpr std::size_t kBodyBytes = 60'000;
  constexpr std::size_t kPageBytesBound =
      std::size_t{256} * 1024;  // server/gateway.h kMaxPageBytes
  auto alice = open(a_phone_);
  for (int i = 0; i < kMessages; ++i) {
    const std::string body(kBodyBytes, static_cast<char>('a' + i % 26));
    must(alice->send(direct_, "big-" + std::to_string(i), body), "sending a large message");
  }
  auto bob = open(b_phone_);
  std::vector<std::uint64_t> synced;
  std::uint64_t since = 0;
  for (int pages = 0; pages < 2 * kMessages; ++pages) {
    auto page = bob->sync(since);
    ASSERT_TRUE(page.ok()) << page.status().to_string();
    std::size_t page_bytes = 0;
    for (const client::Change& c : page->changes) {
      if (c.kind == "message_new" && c.conversation_id == direct_ && c.message) {
        synced.push_back(c.seq);
        page_bytes += c.message->body.size();
      }
    }
    EXPECT_LE(page_bytes, kPageBytesBound);
    since = page->cursor;
    if (!page->has_more) break;
  }
  ASSERT_EQ(synced.size(), static_cast<std::size_t>(kMessages));
  for (std::size_t i = 0; i < synced.size(); ++i) EXPECT_EQ(synced[i], i + 1);

  std::vector<std::uint64_t> paged;
  std::optional<std::uint64_t> before;
  for (int pages = 0; pages < 2 * kMessages; ++pages) {
    auto page = bob->history(direct_, before);
    ASSERT_TRUE(page.ok()) << page.status().to_string();
    ASSERT_FALSE(page->messages.empty());
    EXPECT_LE(page->messages.size() * kBodyBytes, kPageBytesBound);
    for (const client::Message& m : page->messages) paged.push_back(m.seq);
    if (page->next_before == 0) break;
    before = page->next_before;
  }
  ASSERT_EQ(paged.size(), static_cast<std::size_t>(kMessages));
  for (std::size_t i = 0; i < paged.size(); ++i) EXPECT_EQ(paged[i], kMessages - i);

  // Forwards from the start, as a new device reading a conversation from its beginning.
  std::vector<std::uint64_t> forwards;
  std::uint64_t after = 0;
  for (int pages = 0; pages < 2 * kMessages; ++pages) {
    auto page = bob->history_after(direct_, after);
    ASSERT_TRUE(page.ok()) << page.status().to_string();
    ASSERT_FALSE(page->messages.empty());
    EXPECT_LE(page->messages.size() * kBodyBytes, kPageBytesBound);
    for (const client::Message& m : page->messages) forwards.push_back(m.seq);
    EXPECT_EQ(page->next_after, forwards.back());
    after = page->next_after;
    if (!page->has_more) break;
  }
  ASSERT_EQ(forwards.size(), static_cast<std::size_t>(kMessages));
  for (std::size_t i = 0; i < forwards.size(); ++i) EXPECT_EQ(forwards[i], i + 1);
  const auto at_end = must(bob->history_after(direct_, after), "history at the newest message");
  EXPECT_TRUE(at_end.messages.empty());
  EXPECT_EQ(at_end.next_after, static_cast<std::uint64_t>(kMessages));
  EXPECT_FALSE(at_end.has_more);
  // One direction per request.
  expect_error_then_usable(*bob,
                           R"({"type":"history","id":"h2","conversation_id":")" + direct_ +
                               R"(","before_seq":3,"after_seq":1})",
                           "invalid_argument", "h2");
}

}  // namespace
}  // namespace herald::e2e
