#include "server/recording_provider.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <boost/json.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace herald::server {
namespace {

namespace json = boost::json;

PushRequest push(std::string key, std::string device = "bob-phone") {
  PushRequest r;
  r.idempotency_key = std::move(key);
  r.user_id = "bob";
  r.device_id = std::move(device);
  r.platform = "ios";
  r.provider = messaging::kApnsProvider;
  r.token = "tok-1";
  r.conversation_id = "c1";
  r.seq = 7;
  r.title = "alice";
  r.body = "lunch?";
  return r;
}

EmailRequest email(std::string key) {
  EmailRequest r;
  r.idempotency_key = std::move(key);
  r.to = "bob@example.org";
  r.subject = "You have an unread message";
  r.body = "lunch?";
  r.user_id = "bob";
  r.conversation_id = "c1";
  r.seq = 7;
  return r;
}

// Sends `request` and returns the result `done` was called with (the recording providers call it
// before send() returns).
template <typename Provider, typename Request>
ProviderResult send_now(Provider& provider, const Request& request) {
  int calls = 0;
  ProviderResult out;
  provider.send(request, [&](ProviderResult r) {
    ++calls;
    out = std::move(r);
  });
  EXPECT_EQ(calls, 1);
  return out;
}

// A journal path of this test's own, removed first.
std::string journal_path(const std::string& name) {
  std::string path = ::testing::TempDir() + "herald_providers_" + std::to_string(::getpid()) + "_" +
                     name + ".jsonl";
  std::remove(path.c_str());
  return path;
}

std::vector<json::object> read_journal(const std::string& path) {
  std::ifstream in(path);
  std::vector<json::object> lines;
  for (std::string line; std::getline(in, line);) {
    boost::system::error_code ec;
    json::value v = json::parse(line, ec);
    EXPECT_FALSE(ec) << line;
    lines.push_back(v.is_object() ? v.as_object() : json::object());
  }
  return lines;
}

TEST(RecordingProvider, RecordsEveryCallAndSucceedsByDefault) {
  RecordingPushProvider provider;
  EXPECT_EQ(send_now(provider, push("k1")), ProviderResult::success());
  EXPECT_EQ(send_now(provider, push("k2", "bob-laptop")), ProviderResult::success());
  EXPECT_EQ(provider.calls(), (std::vector<PushRequest>{push("k1"), push("k2", "bob-laptop")}));
  EXPECT_EQ(provider.call_count(), 2U);
  EXPECT_TRUE(provider.journal_status().ok());
}

TEST(RecordingProvider, RetriesWithTheSameKeyAreOneDistinctSend) {
  RecordingPushProvider provider;
  for (int i = 0; i < 3; ++i) {
    (void)send_now(provider, push("w/1/1"));
  }
  (void)send_now(provider, push("w/1/2"));
  EXPECT_EQ(provider.calls().size(), 4U);
  EXPECT_EQ(provider.distinct_keys(), (std::set<std::string>{"w/1/1", "w/1/2"}));
}

TEST(RecordingProvider, ScriptedFailuresComeFirstInOrderThenSuccess) {
  RecordingPushProvider provider;
  provider.fail_next(2, messaging::kPushUnavailable, "apns is down");
  provider.fail_next(1, messaging::kPushUnregistered);
  EXPECT_EQ(send_now(provider, push("k")),
            ProviderResult::failure(messaging::kPushUnavailable, "apns is down"));
  EXPECT_EQ(send_now(provider, push("k")),
            ProviderResult::failure(messaging::kPushUnavailable, "apns is down"));
  EXPECT_EQ(send_now(provider, push("k")),
            ProviderResult::failure(messaging::kPushUnregistered, ""));
  EXPECT_EQ(send_now(provider, push("k")), ProviderResult::success());
  EXPECT_EQ(provider.calls().size(), 4U);  // failed calls are recorded too
}

TEST(RecordingProvider, EmailProviderRecordsAndScriptsTheSameWay) {
  RecordingEmailProvider provider;
  provider.fail_next(1, messaging::kEmailRejected, "550 no such user");
  EXPECT_EQ(send_now(provider, email("e1")).error_type, messaging::kEmailRejected);
  EXPECT_TRUE(send_now(provider, email("e1")).ok);
  EXPECT_EQ(provider.calls(), (std::vector<EmailRequest>{email("e1"), email("e1")}));
  EXPECT_EQ(provider.distinct_keys().size(), 1U);
}

TEST(RecordingProvider, JournalHasOneEscapedJsonLinePerCall) {
  const std::string path = journal_path("escaped");
  auto provider = RecordingPushProvider::with_journal(path, RecordingAnswer::kAccept);
  ASSERT_TRUE(provider.ok()) << provider.status().to_string();
  PushRequest tricky = push("k1");
  tricky.body = "say \"hi\"\nback\\slash \xc3\xa9 \x01";
  (void)send_now(**provider, tricky);
  (*provider)->fail_next(1, messaging::kPushInvalidToken, "bad token");
  (void)send_now(**provider, push("k2"));
  EXPECT_TRUE((*provider)->journal_status().ok());

  const auto lines = read_journal(path);
  ASSERT_EQ(lines.size(), 2U);
  EXPECT_EQ(lines[0].at("kind").as_string(), "push");
  EXPECT_EQ(lines[0].at("call").to_number<std::uint64_t>(), 1U);
  EXPECT_TRUE(lines[0].at("ok").as_bool());
  EXPECT_FALSE(lines[0].at("recorded").as_bool());
  EXPECT_EQ(lines[0].at("body").as_string(), tricky.body);
  EXPECT_EQ(lines[0].at("idempotency_key").as_string(), "k1");
  EXPECT_EQ(lines[0].at("seq").to_number<std::uint64_t>(), 7U);
  EXPECT_EQ(lines[0].at("provider").as_string(), "apns");
  EXPECT_EQ(lines[1].at("call").to_number<std::uint64_t>(), 2U);
  EXPECT_FALSE(lines[1].at("ok").as_bool());
  EXPECT_EQ(lines[1].at("error_type").as_string(), "push.invalid_token");
  EXPECT_EQ(lines[1].at("error_message").as_string(), "bad token");
}

TEST(RecordingProvider, RecordOnlyAnswersNoProviderAndNeverAccepted) {
  const std::string path = journal_path("record_only");
  auto push_provider = RecordingPushProvider::with_journal(path, RecordingAnswer::kRecordOnly);
  ASSERT_TRUE(push_provider.ok()) << push_provider.status().to_string();
  const ProviderResult pushed = send_now(**push_provider, push("k1"));
  EXPECT_FALSE(pushed.ok);
  EXPECT_TRUE(pushed.recorded);
  EXPECT_FALSE(pushed.refused);
  EXPECT_EQ(pushed.error_type, messaging::kPushNoProvider);
  EXPECT_NE(pushed.error_message.find("no provider configured for \"apns\""), std::string::npos)
      << pushed.error_message;
  EXPECT_EQ((*push_provider)->calls(), std::vector<PushRequest>{push("k1")});

  RecordingEmailProvider email_provider(RecordingAnswer::kRecordOnly);
  const ProviderResult mailed = send_now(email_provider, email("e1"));
  EXPECT_FALSE(mailed.ok);
  EXPECT_TRUE(mailed.recorded);
  EXPECT_EQ(mailed.error_type, messaging::kEmailNoProvider);

  const auto lines = read_journal(path);
  ASSERT_EQ(lines.size(), 1U);
  EXPECT_FALSE(lines[0].at("ok").as_bool());
  EXPECT_TRUE(lines[0].at("recorded").as_bool());
  EXPECT_EQ(lines[0].at("error_type").as_string(), messaging::kPushNoProvider);
  EXPECT_EQ(lines[0].at("idempotency_key").as_string(), "k1");
}

TEST(RecordingProvider, JournalAppendsAcrossProviders) {
  const std::string path = journal_path("append");
  for (int i = 0; i < 2; ++i) {
    auto provider = RecordingEmailProvider::with_journal(path, RecordingAnswer::kAccept);
    ASSERT_TRUE(provider.ok());
    (void)send_now(**provider, email("e" + std::to_string(i)));
  }
  const auto lines = read_journal(path);
  ASSERT_EQ(lines.size(), 2U);
  EXPECT_EQ(lines[0].at("kind").as_string(), "email");
  EXPECT_EQ(lines[1].at("idempotency_key").as_string(), "e1");
  EXPECT_EQ(lines[1].at("to").as_string(), "bob@example.org");
}

TEST(RecordingProvider, AJournalRotatesAtItsBoundKeepingOneOlderFile) {
  const std::string path = journal_path("rotate");
  std::filesystem::remove(path + ".1");
  constexpr std::uint64_t kBound = 2048;
  auto provider = RecordingPushProvider::with_journal(path, RecordingAnswer::kAccept, kBound);
  ASSERT_TRUE(provider.ok());
  constexpr int kSends = 60;  // a few hundred bytes each: several rotations
  for (int i = 1; i <= kSends; ++i) {
    (void)send_now(**provider, push("r" + std::to_string(i)));
  }
  EXPECT_TRUE((*provider)->journal_status().ok());
  EXPECT_LE(std::filesystem::file_size(path), kBound);
  EXPECT_LE(std::filesystem::file_size(path + ".1"), kBound);
  // The newest calls are in the two files, in order, ending with the last one.
  const auto older = read_journal(path + ".1");
  const auto newest = read_journal(path);
  ASSERT_FALSE(older.empty());
  ASSERT_FALSE(newest.empty());
  EXPECT_EQ(older.back().at("call").to_number<std::uint64_t>() + 1,
            newest.front().at("call").to_number<std::uint64_t>());
  EXPECT_EQ(newest.back().at("call").to_number<std::uint64_t>(),
            static_cast<std::uint64_t>(kSends));
  EXPECT_LT(older.size() + newest.size(), static_cast<std::size_t>(kSends));
}

TEST(RecordingProvider, JournalThatCannotBeOpenedIsAnIOError) {
  auto provider = RecordingPushProvider::with_journal("/nonexistent-dir/for/sure/journal.jsonl",
                                                      RecordingAnswer::kAccept);
  ASSERT_FALSE(provider.ok());
  EXPECT_EQ(provider.status().code(), Code::kIOError);
}

TEST(RecordingProvider, ConcurrentSendsAreAllRecordedAndJournaledWhole) {
  constexpr int kThreads = 4;
  constexpr int kSendsPerThread = 250;
  const std::string path = journal_path("concurrent");
  auto provider = RecordingPushProvider::with_journal(path, RecordingAnswer::kAccept);
  ASSERT_TRUE(provider.ok());
  (*provider)->fail_next(10, messaging::kPushUnavailable);
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kSendsPerThread; ++i) {
        (*provider)->send(push(std::to_string(t) + "/" + std::to_string(i)),
                          [&](const ProviderResult& r) { failures += r.ok ? 0 : 1; });
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  EXPECT_EQ((*provider)->call_count(), static_cast<std::uint64_t>(kThreads * kSendsPerThread));
  EXPECT_EQ((*provider)->distinct_keys().size(),
            static_cast<std::size_t>(kThreads * kSendsPerThread));
  EXPECT_EQ(failures.load(), 10);
  EXPECT_EQ(read_journal(path).size(), static_cast<std::size_t>(kThreads * kSendsPerThread));
}

TEST(RecordingProvider, CallsBeyondTheBoundAreCountedButNotKept) {
  RecordingPushProvider provider;
  const PushRequest request = push("k");
  for (std::size_t i = 0; i <= kMaxRecordedCalls; ++i) {
    provider.send(request, [](const ProviderResult&) {});
  }
  EXPECT_EQ(provider.call_count(), kMaxRecordedCalls + 1);
  EXPECT_EQ(provider.calls().size(), kMaxRecordedCalls);
}

}  // namespace
}  // namespace herald::server
