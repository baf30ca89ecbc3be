// End to end: catch-up that always completes, over real WebSockets against one real node. A
// device reconnecting over a backlog far larger than its outbound queue gets all of it, a reading
// recipient of a burst of large sends is never closed, and a device that truly stops reading is
// closed with 1008 after the stall bound and loses nothing (docs/protocol.md, "Flow control").
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "client/admin_client.h"
#include "client/herald_client.h"
#include "tests/e2e/cluster.h"
#include "tests/e2e/devices.h"

namespace herald::e2e {
namespace {

using client::HeraldClient;

constexpr std::uint32_t kStartupTimeoutMs = 15'000;
constexpr std::size_t kBodyBytes = 60'000;        // below the 64 KiB body bound
constexpr int kBacklog = 150;                     // about 9 MB of changes: many outbound queues
constexpr std::int64_t kStalledReaderMs = 1'500;  // [devices] stalled_reader_ms of the node
constexpr std::uint32_t kCatchUpTimeoutMs = 30'000;
constexpr std::uint16_t kCloseSlowConsumer = 1008;

class CatchUp : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster_ = must(Cluster::create(1), "creating the cluster");
    must(cluster_->set_config(fmt::format("[devices]\nrequests_per_s = 0\nstalled_reader_ms = {}\n",
                                          kStalledReaderMs)),
         "writing the config");
    must(cluster_->start_all(), "starting the node");
    must(cluster_->leader(kStartupTimeoutMs), "waiting for a leader");
    admin_ = std::make_unique<client::AdminClient>(cluster_->admin(1));
    must(admin_->create_user("alice", "alice"), "alice");
    must(admin_->create_user("bob", "bob"), "bob");
    a_phone_ = must(provision_device(*admin_, "alice", "a-phone"), "a-phone");
    b_phone_ = must(provision_device(*admin_, "bob", "b-phone"), "b-phone");
    direct_ = must(admin_->create_conversation({"alice", "direct", {"bob"}, "", ""}), "direct")
                  .conversation_id;
    alice_ = open(a_phone_);
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

  void send_backlog(int count) {
    for (int i = 0; i < count; ++i) {
      const std::string body(kBodyBytes, static_cast<char>('a' + i % 26));
      must(alice_->send(direct_, fmt::format("backlog-{}", i), body), "sending");
    }
  }

  // Reads changes until `want` distinct new messages of the conversation arrived; returns them.
  std::set<std::uint64_t> receive_messages(HeraldClient& device, std::size_t want) {
    std::set<std::uint64_t> seqs;
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(kCatchUpTimeoutMs);
    while (seqs.size() < want && std::chrono::steady_clock::now() < deadline) {
      auto change = device.next_change(kCatchUpTimeoutMs);
      if (!change.ok()) {
        ADD_FAILURE() << "after " << seqs.size() << " messages: " << change.status().to_string()
                      << " (close code " << device.close_code().value_or(0) << ")";
        break;
      }
      if (change->kind == "message_new" && change->conversation_id == direct_) {
        seqs.insert(change->seq);
      }
    }
    return seqs;
  }

  std::unique_ptr<Cluster> cluster_;
  std::unique_ptr<client::AdminClient> admin_;
  DeviceCredentials a_phone_;
  DeviceCredentials b_phone_;
  std::string direct_;
  std::unique_ptr<HeraldClient> alice_;
};

// A page near each of its bounds (docs/protocol.md, "Limits"): 256 KiB of JSON and 1,000
// entries. Four messages of 64,000 bytes and their JSON fit in one page; four of 65,536 bytes (the
// largest body) do not, so they come three and one.
TEST_F(CatchUp, SyncAndHistoryPagesStopAtEachBound) {
  constexpr std::size_t kFits = 64'000;
  constexpr std::size_t kLargest = 65'536;      // kMaxMessageBodyBytes
  constexpr std::uint64_t kMaxLimit = 1'000;    // kMaxReadLimit
  constexpr std::uint64_t kDefaultLimit = 100;  // kDefaultPageSize
  auto bob = open(b_phone_);
  std::uint64_t start = 0;
  for (bool more = true; more;) {
    const auto page = must(bob->sync(start, kMaxLimit), "syncing what came before");
    start = page.cursor;
    more = page.has_more;
  }
  for (int i = 0; i < 4; ++i) {
    must(alice_->send(direct_, fmt::format("fits-{}", i), std::string(kFits, 'f')), "sending");
  }
  for (int i = 0; i < 4; ++i) {
    must(alice_->send(direct_, fmt::format("largest-{}", i), std::string(kLargest, 'l')),
         "sending");
  }
  const auto seqs_of = [this](const std::vector<client::Change>& changes) {
    std::vector<std::uint64_t> seqs;
    for (const client::Change& c : changes) {
      if (c.kind == "message_new" && c.conversation_id == direct_) seqs.push_back(c.seq);
    }
    return seqs;
  };
  const auto first = must(bob->sync(start, kMaxLimit), "page 1");
  EXPECT_EQ(seqs_of(first.changes), (std::vector<std::uint64_t>{1, 2, 3, 4}));
  EXPECT_TRUE(first.has_more);
  const auto second = must(bob->sync(first.cursor, kMaxLimit), "page 2");
  EXPECT_EQ(seqs_of(second.changes), (std::vector<std::uint64_t>{5, 6, 7}));
  EXPECT_TRUE(second.has_more);
  const auto third = must(bob->sync(second.cursor, kMaxLimit), "page 3");
  EXPECT_EQ(seqs_of(third.changes), (std::vector<std::uint64_t>{8}));
  EXPECT_FALSE(third.has_more);

  // history cuts its pages the same way, in both directions.
  const auto seqs_in = [](const std::vector<client::Message>& messages) {
    std::vector<std::uint64_t> seqs;
    seqs.reserve(messages.size());
    for (const client::Message& m : messages) seqs.push_back(m.seq);
    return seqs;
  };
  const auto forwards = must(bob->history_after(direct_, 0), "history forwards");
  EXPECT_EQ(seqs_in(forwards.messages), (std::vector<std::uint64_t>{1, 2, 3, 4}));
  EXPECT_TRUE(forwards.has_more);
  const auto backwards = must(bob->history(direct_), "history backwards");
  EXPECT_EQ(seqs_in(backwards.messages), (std::vector<std::uint64_t>{8, 7, 6}));
  EXPECT_EQ(backwards.next_before, 6U);

  // The count bound. A message's change is about 330 bytes of JSON, so a page of messages
  // reaches the byte bound before 1,000 entries: the count a client asks for is a ceiling.
  constexpr std::uint64_t kSmall = kMaxLimit + 1;
  constexpr std::uint64_t kHalf = 500;
  for (std::uint64_t i = 0; i < kSmall; ++i) {
    must(alice_->send(direct_, fmt::format("small-{}", i), "s"), "sending a small message");
  }
  const auto half = must(bob->sync(third.cursor, kHalf), "a page of 500");
  EXPECT_EQ(half.changes.size(), kHalf);
  EXPECT_TRUE(half.has_more);
  EXPECT_EQ(must(bob->sync(third.cursor), "a page of the default count").changes.size(),
            kDefaultLimit);
  EXPECT_EQ(client::protocol_error_code(bob->sync(third.cursor, kMaxLimit + 1).status()),
            "wrong_type");
  std::vector<std::uint64_t> small;
  std::uint64_t cursor = third.cursor;
  for (int pages = 0; pages < 10; ++pages) {
    const auto page = must(bob->sync(cursor, kMaxLimit), "a page of small messages");
    ASSERT_FALSE(page.changes.empty());
    if (page.has_more) {
      EXPECT_LT(page.changes.size(), kMaxLimit) << "the byte bound comes first";
    }
    for (std::uint64_t seq : seqs_of(page.changes)) small.push_back(seq);
    cursor = page.cursor;
    if (!page.has_more) break;
  }
  ASSERT_EQ(small.size(), kSmall);
  for (std::uint64_t i = 0; i < kSmall; ++i) EXPECT_EQ(small[i], 9 + i);
  const auto counted = must(bob->history_after(direct_, 8, kHalf), "history of 500");
  EXPECT_EQ(counted.messages.size(), kHalf);
  EXPECT_EQ(counted.next_after, 8 + kHalf);
  EXPECT_TRUE(counted.has_more);
}

TEST_F(CatchUp, ReconnectingOverABacklogOfLargeMessagesCompletesEveryTime) {
  send_backlog(kBacklog);
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto bob = open(b_phone_, 0);
    EXPECT_EQ(receive_messages(*bob, kBacklog).size(), static_cast<std::size_t>(kBacklog))
        << "attempt " << attempt;
    EXPECT_TRUE(bob->is_open()) << "closed with " << bob->close_code().value_or(0);
  }
}

TEST_F(CatchUp, ReconnectingOverManySmallMessagesCompletes) {
  constexpr int kSmall = 2'000;
  for (int i = 0; i < kSmall; ++i) {
    must(alice_->send(direct_, fmt::format("small-{}", i), "hi"), "sending");
  }
  auto bob = open(b_phone_, 0);
  EXPECT_EQ(receive_messages(*bob, kSmall).size(), static_cast<std::size_t>(kSmall));
}

TEST_F(CatchUp, AReadingRecipientOfABurstOfPipelinedLargeSendsIsNotClosed) {
  constexpr int kBurst = 32;
  auto bob = open(b_phone_);
  for (int i = 0; i < kBurst; ++i) {
    const boost::json::object frame{{"type", "send"},
                                    {"id", fmt::format("burst-{}", i)},
                                    {"conversation_id", direct_},
                                    {"client_message_id", fmt::format("burst-{}", i)},
                                    {"body", std::string(kBodyBytes, 'b')}};
    must(alice_->send_raw(boost::json::serialize(frame)), "pipelining a send");
  }
  for (int i = 0; i < kBurst; ++i) {
    auto answer = alice_->next_answer(kCatchUpTimeoutMs);
    ASSERT_TRUE(answer.ok()) << answer.status().to_string();
    EXPECT_TRUE(answer->status.ok()) << answer->status.to_string();
  }
  EXPECT_EQ(receive_messages(*bob, kBurst).size(), static_cast<std::size_t>(kBurst));
  EXPECT_TRUE(bob->is_open());
}

TEST_F(CatchUp, AStalledReaderIsClosedWith1008AndLosesNothingOnReconnect) {
  auto bob = open(b_phone_);
  // Bob reads nothing while the backlog outgrows his queue and the socket buffers.
  send_backlog(kBacklog);
  std::this_thread::sleep_for(std::chrono::milliseconds(3 * kStalledReaderMs));
  // What reached his socket before the close is still readable; then the close code.
  while (bob->receive_raw(kCatchUpTimeoutMs).ok()) {
  }
  EXPECT_EQ(bob->close_code(), kCloseSlowConsumer);
  EXPECT_NE(cluster_->log_tail(1, 20'000).find("read nothing for"), std::string::npos);

  auto again = open(b_phone_, 0);
  EXPECT_EQ(receive_messages(*again, kBacklog).size(), static_cast<std::size_t>(kBacklog));
}

}  // namespace
}  // namespace herald::e2e
