#include "sim/results_ledger.h"

#include <gtest/gtest.h>

namespace herald::sim {
namespace {

// Two users: alice with phones a1 and a2, bob with b1; one conversation "c" of both.
ResultsLedger two_users() {
  ResultsLedger ledger;
  ledger.add_device("a1", "alice");
  ledger.add_device("a2", "alice");
  ledger.add_device("b1", "bob");
  ledger.add_member("c", "alice");
  ledger.add_member("c", "bob");
  return ledger;
}

void everyone_receives(ResultsLedger& ledger, MonoMs t_ms, std::uint64_t seq) {
  for (const char* device : {"a1", "a2", "b1"}) {
    ledger.message_received(t_ms, device, "c", seq);
  }
}

TEST(ResultsLedgerTest, DuplicateNotificationsAreAcceptancesBeyondTheFirst) {
  ResultsLedger ledger = two_users();
  ledger.message_accepted(10, "c", 1, "alice");
  everyone_receives(ledger, 20, 1);
  ledger.push_attempt(1'000, "c", 1, "b1", /*accepted=*/false);
  ledger.push_attempt(2'000, "c", 1, "b1", /*accepted=*/true);
  ledger.push_attempt(3'000, "c", 1, "b1", /*accepted=*/true);
  ledger.push_attempt(4'000, "c", 1, "b1", /*accepted=*/true);
  const ResultFigures f = ledger.figures(5'000);
  EXPECT_EQ(f.push_attempts, 4U);
  EXPECT_EQ(f.pushes_accepted, 3U);
  EXPECT_EQ(f.duplicate_notifications, 2U);
  EXPECT_EQ(f.check_consistent(), "");
}

TEST(ResultsLedgerTest, DeliveredCountsRecipientsOtherThanTheSender) {
  ResultsLedger ledger = two_users();
  ledger.message_accepted(10, "c", 1, "alice");
  ledger.message_accepted(10, "c", 2, "bob");
  everyone_receives(ledger, 20, 1);
  everyone_receives(ledger, 20, 2);
  ledger.push_attempt(1'000, "c", 1, "b1", true);
  const ResultFigures f = ledger.figures(5'000);
  EXPECT_EQ(f.messages, 2U);
  EXPECT_EQ(f.recipient_deliveries, 2U);  // bob for message 1, alice for message 2
  EXPECT_EQ(f.delivered, 2U);
  EXPECT_DOUBLE_EQ(f.pushes_per_delivered(), 0.5);
  EXPECT_EQ(f.lost_messages, 0U);
}

TEST(ResultsLedgerTest, AMessageOneMemberDeviceNeverReceivedIsLost) {
  ResultsLedger ledger = two_users();
  ledger.message_accepted(10, "c", 1, "alice");
  ledger.message_received(20, "a1", "c", 1);
  ledger.message_received(20, "b1", "c", 1);  // a2, the sender's other phone, never gets it
  const ResultFigures f = ledger.figures(5'000);
  EXPECT_EQ(f.lost_messages, 1U);
  EXPECT_EQ(f.missing_receipts, 1U);
  EXPECT_EQ(f.delivered, 1U);  // bob has it
}

TEST(ResultsLedgerTest, ADeviceBehindLongerThanTheGraceDiverges) {
  ResultsLedger ledger = two_users();
  ledger.device_online(0, "a1", true);
  ledger.device_online(0, "a2", true);
  ledger.read_done(1'000, "a1", "c", 5);
  ledger.read_view(3'500, "a2", "c", 5);  // 2.5 s late
  const ResultFigures f = ledger.figures(10'000);
  EXPECT_EQ(f.reads, 1U);
  EXPECT_EQ(f.diverged_devices, 1U);
  EXPECT_EQ(f.divergence_episodes, 1U);
  EXPECT_EQ(f.divergence_total_ms, 2'500);
  EXPECT_EQ(f.divergence_max_ms, 2'500);
  EXPECT_EQ(f.diverged_at_end, 0U);
}

TEST(ResultsLedgerTest, ALagWithinTheGraceIsNotDivergence) {
  ResultsLedger ledger = two_users();
  ledger.device_online(0, "a1", true);
  ledger.device_online(0, "a2", true);
  ledger.read_done(1'000, "a1", "c", 5);
  ledger.read_view(1'000 + kReadDivergenceGraceMs, "a2", "c", 5);
  const ResultFigures f = ledger.figures(10'000);
  EXPECT_EQ(f.diverged_devices, 0U);
  EXPECT_EQ(f.divergence_episodes, 0U);
}

TEST(ResultsLedgerTest, TimeOfflineIsNotDivergence) {
  ResultsLedger ledger = two_users();
  ledger.device_online(0, "a1", true);
  ledger.read_done(1'000, "a1", "c", 5);  // a2 is offline until 6 s
  ledger.device_online(6'000, "a2", true);
  ledger.read_view(6'500, "a2", "c", 5);  // told half a second after it came online
  const ResultFigures f = ledger.figures(10'000);
  EXPECT_EQ(f.divergence_episodes, 0U);
}

TEST(ResultsLedgerTest, ADeviceNeverToldDivergesUntilTheEnd) {
  ResultsLedger ledger = two_users();
  ledger.device_online(0, "a1", true);
  ledger.device_online(0, "a2", true);
  ledger.read_done(1'000, "a1", "c", 5);
  const ResultFigures f = ledger.figures(10'000);
  EXPECT_EQ(f.diverged_devices, 1U);
  EXPECT_EQ(f.divergence_total_ms, 9'000);
  EXPECT_EQ(f.diverged_at_end, 1U);
}

TEST(ResultsLedgerTest, TheUsersOwnMessageMovesItsReadPosition) {
  ResultsLedger ledger = two_users();
  ledger.device_online(0, "a1", true);
  ledger.device_online(0, "a2", true);
  ledger.message_accepted(1'000, "c", 7, "alice");
  ledger.message_received(1'000, "a1", "c", 7);
  // a2 receives alice's own message 3 s late: until then it shows less than alice's position.
  ledger.message_received(4'000, "a2", "c", 7);
  ledger.message_received(1'000, "b1", "c", 7);
  const ResultFigures f = ledger.figures(10'000);
  EXPECT_EQ(f.divergence_episodes, 1U);
  EXPECT_EQ(f.divergence_total_ms, 3'000);
}

TEST(ResultsLedgerTest, ACrashResumesAtTheFirstStepOfAnotherProcess) {
  ResultsLedger ledger = two_users();
  ledger.work_step(100, "n1#1", "u");
  ledger.crash(150, "n1#1", {"u"});
  ledger.work_step(160, "n1#1", "u");  // the crashed process itself does not count
  ledger.work_step(400, "n2#1", "other");
  ledger.work_step(700, "n2#1", "u");
  ledger.work_step(900, "n3#1", "u");
  ledger.crash(1'000, "n2#1", {});
  const ResultFigures f = ledger.figures(2'000);
  EXPECT_EQ(f.crashes, 2U);
  EXPECT_EQ(f.crashes_with_work, 1U);
  ASSERT_EQ(f.resume_ms.size(), 1U);
  EXPECT_EQ(f.resume_ms[0], 550);
  EXPECT_EQ(f.never_resumed, 0U);
}

TEST(ResultsLedgerTest, ACrashWhoseWorkNeverResumesIsCounted) {
  ResultsLedger ledger = two_users();
  ledger.work_step(50, "n2#1", "u");  // before the crash: not a resumption
  ledger.crash(100, "n1#1", {"u"});
  const ResultFigures f = ledger.figures(2'000);
  EXPECT_EQ(f.never_resumed, 1U);
  EXPECT_TRUE(f.resume_ms.empty());
  EXPECT_EQ(f.resume_quantile_ms(0.5), -1);
  EXPECT_EQ(f.check_consistent(), "");
}

TEST(ResultsLedgerTest, QuantilesAreNearestRank) {
  ResultFigures f;
  f.resume_ms = {40, 10, 30, 20};
  EXPECT_EQ(f.resume_quantile_ms(0.5), 20);
  EXPECT_EQ(f.resume_quantile_ms(0.9), 40);
  EXPECT_EQ(f.resume_quantile_ms(1.0), 40);
  EXPECT_EQ(f.resume_quantile_ms(0.0), 10);
}

TEST(ResultsLedgerTest, ConsistencyCheckNamesCountsThatDisagree) {
  ResultFigures f;
  f.push_attempts = 1;
  f.pushes_accepted = 2;
  EXPECT_NE(f.check_consistent(), "");
  ResultFigures g;
  g.crashes_with_work = 1;  // neither resumed nor never resumed
  g.crashes = 1;
  EXPECT_NE(g.check_consistent(), "");
}

TEST(ResultsLedgerTest, AddSumsAndKeepsTheLongestEpisode) {
  ResultFigures a;
  a.messages = 2;
  a.divergence_max_ms = 300;
  a.resume_ms = {5};
  ResultFigures b;
  b.messages = 3;
  b.divergence_max_ms = 200;
  b.resume_ms = {7};
  a.add(b);
  EXPECT_EQ(a.messages, 5U);
  EXPECT_EQ(a.divergence_max_ms, 300);
  EXPECT_EQ(a.resume_ms.size(), 2U);
}

}  // namespace
}  // namespace herald::sim
