#include "sim/linearizability.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/random.h"

namespace herald::sim {
namespace {

constexpr std::int64_t kUnknown = kUnknownReturnTime;
using Opt = std::optional<std::string>;

CheckResult::Verdict verdict_of(const std::vector<KvOp>& history) {
  return check_kv_history(history).verdict;
}

// --- Hand-written histories -------------------------------------------------------------------

TEST(LinearizabilityTest, EmptyHistoryIsOk) {
  EXPECT_EQ(verdict_of({}), CheckResult::kOk);
}

TEST(LinearizabilityTest, SequentialHistoryIsOk) {
  const std::vector<KvOp> h = {KvOp::get(1, 0, 1, "k", std::nullopt),  KvOp::put(1, 2, 3, "k", "a"),
                               KvOp::get(2, 4, 5, "k", "a"),           KvOp::put(2, 6, 7, "k", "b"),
                               KvOp::get(1, 8, 9, "k", "b"),           KvOp::del(1, 10, 11, "k"),
                               KvOp::get(2, 12, 13, "k", std::nullopt)};
  const CheckResult r = check_kv_history(h);
  EXPECT_EQ(r.verdict, CheckResult::kOk) << r.explanation;
  EXPECT_TRUE(r.illegal_key.empty());
}

TEST(LinearizabilityTest, InputOrderDoesNotMatter) {
  std::vector<KvOp> h = {KvOp::put(1, 0, 1, "k", "a"), KvOp::get(2, 2, 3, "k", "a"),
                         KvOp::put(1, 4, 5, "k", "b"), KvOp::get(2, 6, 7, "k", "b")};
  std::reverse(h.begin(), h.end());
  EXPECT_EQ(verdict_of(h), CheckResult::kOk);
}

TEST(LinearizabilityTest, ConcurrentPutAndGetOkWhenGetSeesOldValue) {
  const std::vector<KvOp> h = {KvOp::put(1, 0, 1, "k", "old"), KvOp::put(1, 2, 10, "k", "new"),
                               KvOp::get(2, 3, 8, "k", "old")};
  EXPECT_EQ(verdict_of(h), CheckResult::kOk);
}

TEST(LinearizabilityTest, ConcurrentPutAndGetOkWhenGetSeesNewValue) {
  const std::vector<KvOp> h = {KvOp::put(1, 0, 1, "k", "old"), KvOp::put(1, 2, 10, "k", "new"),
                               KvOp::get(2, 3, 8, "k", "new")};
  EXPECT_EQ(verdict_of(h), CheckResult::kOk);
}

TEST(LinearizabilityTest, EqualTimestampsCountAsConcurrent) {
  // The Put returns at 5 and the Get is invoked at 5: they may be ordered either way.
  const std::vector<KvOp> h = {KvOp::put(1, 0, 5, "k", "a"), KvOp::get(2, 5, 6, "k", std::nullopt)};
  EXPECT_EQ(verdict_of(h), CheckResult::kOk);
}

TEST(LinearizabilityTest, StaleReadAfterCompletedWriteIsIllegal) {
  const std::vector<KvOp> h = {KvOp::put(1, 0, 1, "k", "a"), KvOp::put(1, 2, 3, "k", "b"),
                               KvOp::get(2, 4, 5, "k", "a")};
  const CheckResult r = check_kv_history(h);
  EXPECT_EQ(r.verdict, CheckResult::kIllegal);
  EXPECT_EQ(r.illegal_key, "k");
}

TEST(LinearizabilityTest, ReadOfValueNeverWrittenIsIllegal) {
  const std::vector<KvOp> h = {KvOp::put(1, 0, 1, "k", "a"), KvOp::get(2, 0, 5, "k", "zzz")};
  EXPECT_EQ(verdict_of(h), CheckResult::kIllegal);
}

TEST(LinearizabilityTest, LostAcknowledgedWriteIsIllegal) {
  // The Put of "new" was acknowledged, yet a read that starts later still sees "old".
  const std::vector<KvOp> h = {KvOp::put(1, 0, 1, "k", "old"), KvOp::put(1, 2, 4, "k", "new"),
                               KvOp::get(2, 3, 5, "k", "new"), KvOp::get(3, 6, 7, "k", "old")};
  EXPECT_EQ(verdict_of(h), CheckResult::kIllegal);
}

TEST(LinearizabilityTest, AcknowledgedWriteThenAbsentReadIsIllegal) {
  const std::vector<KvOp> h = {KvOp::put(1, 0, 1, "k", "a"), KvOp::get(2, 2, 3, "k", std::nullopt)};
  EXPECT_EQ(verdict_of(h), CheckResult::kIllegal);
}

TEST(LinearizabilityTest, ReadsThatDisagreeOnOrderOfTwoWritesAreIllegal) {
  // Two concurrent writes; one reader sees a then b, the other b then a.
  const std::vector<KvOp> h = {KvOp::put(1, 0, 100, "k", "a"), KvOp::put(2, 0, 100, "k", "b"),
                               KvOp::get(3, 10, 11, "k", "a"), KvOp::get(3, 12, 13, "k", "b"),
                               KvOp::get(4, 14, 15, "k", "a")};
  EXPECT_EQ(verdict_of(h), CheckResult::kIllegal);
}

TEST(LinearizabilityTest, UnknownOutcomeWriteThatTookEffectIsOk) {
  const std::vector<KvOp> h = {KvOp::put(1, 0, 1, "k", "old"),
                               KvOp::put(1, 2, kUnknown, "k", "maybe"),
                               KvOp::get(2, 50, 51, "k", "maybe")};
  EXPECT_EQ(verdict_of(h), CheckResult::kOk);
}

TEST(LinearizabilityTest, UnknownOutcomeWriteThatNeverTookEffectIsOk) {
  const std::vector<KvOp> h = {KvOp::put(1, 0, 1, "k", "old"),
                               KvOp::put(1, 2, kUnknown, "k", "maybe"),
                               KvOp::get(2, 50, 51, "k", "old")};
  EXPECT_EQ(verdict_of(h), CheckResult::kOk);
}

TEST(LinearizabilityTest, UnknownOutcomeWriteCannotTakeEffectBeforeItsInvocation) {
  const std::vector<KvOp> h = {KvOp::get(2, 0, 1, "k", "maybe"),
                               KvOp::put(1, 2, kUnknown, "k", "maybe")};
  EXPECT_EQ(verdict_of(h), CheckResult::kIllegal);
}

TEST(LinearizabilityTest, UnknownOutcomeWriteTakesEffectAtMostOnce) {
  // Seen, then overwritten by an acknowledged write, then seen again: it would have applied twice.
  const std::vector<KvOp> h = {
      KvOp::put(1, 0, kUnknown, "k", "maybe"), KvOp::get(2, 10, 11, "k", "maybe"),
      KvOp::put(3, 12, 13, "k", "later"), KvOp::get(2, 14, 15, "k", "maybe")};
  EXPECT_EQ(verdict_of(h), CheckResult::kIllegal);
}

TEST(LinearizabilityTest, UnknownOutcomeGetIsIgnored) {
  const std::vector<KvOp> h = {KvOp::put(1, 0, 1, "k", "a"),
                               KvOp::get(2, 2, kUnknown, "k", "never-written")};
  EXPECT_EQ(verdict_of(h), CheckResult::kOk);
}

TEST(LinearizabilityTest, UnknownOutcomeDeleteMayOrMayNotHaveHappened) {
  const std::vector<KvOp> base = {KvOp::put(1, 0, 1, "k", "a"), KvOp::del(1, 2, kUnknown, "k")};
  std::vector<KvOp> seen = base;
  seen.push_back(KvOp::get(2, 10, 11, "k", std::nullopt));
  std::vector<KvOp> not_seen = base;
  not_seen.push_back(KvOp::get(2, 10, 11, "k", "a"));
  EXPECT_EQ(verdict_of(seen), CheckResult::kOk);
  EXPECT_EQ(verdict_of(not_seen), CheckResult::kOk);
}

TEST(LinearizabilityTest, CasSucceedsWhenExpectedValueMatches) {
  const std::vector<KvOp> h = {KvOp::put(1, 0, 1, "k", "a"),
                               KvOp::cas(1, 2, 3, "k", "a", "b", /*ok=*/true),
                               KvOp::get(2, 4, 5, "k", "b")};
  EXPECT_EQ(verdict_of(h), CheckResult::kOk);
}

TEST(LinearizabilityTest, CasOnAbsentKeyExpectingAbsenceSucceeds) {
  const std::vector<KvOp> h = {KvOp::cas(1, 0, 1, "k", std::nullopt, "a", /*ok=*/true),
                               KvOp::cas(2, 2, 3, "k", std::nullopt, "b", /*ok=*/false),
                               KvOp::get(2, 4, 5, "k", "a")};
  EXPECT_EQ(verdict_of(h), CheckResult::kOk);
}

TEST(LinearizabilityTest, CasReportedOkWhenValueDidNotMatchIsIllegal) {
  const std::vector<KvOp> h = {KvOp::put(1, 0, 1, "k", "a"),
                               KvOp::cas(1, 2, 3, "k", "x", "b", /*ok=*/true)};
  EXPECT_EQ(verdict_of(h), CheckResult::kIllegal);
}

TEST(LinearizabilityTest, CasReportedFailedWhenValueMatchedIsIllegal) {
  const std::vector<KvOp> h = {KvOp::put(1, 0, 1, "k", "a"),
                               KvOp::cas(1, 2, 3, "k", "a", "b", /*ok=*/false)};
  EXPECT_EQ(verdict_of(h), CheckResult::kIllegal);
}

TEST(LinearizabilityTest, FailedCasLeavesValueUnchanged) {
  const std::vector<KvOp> h = {KvOp::put(1, 0, 1, "k", "a"),
                               KvOp::cas(1, 2, 3, "k", "x", "b", /*ok=*/false),
                               KvOp::get(2, 4, 5, "k", "b")};
  EXPECT_EQ(verdict_of(h), CheckResult::kIllegal);
}

TEST(LinearizabilityTest, ConcurrentCasesOnlyOneWins) {
  // Two clients race to move "a" to their own value; both report success: impossible.
  const std::vector<KvOp> h = {KvOp::put(1, 0, 1, "k", "a"),
                               KvOp::cas(1, 2, 10, "k", "a", "b", /*ok=*/true),
                               KvOp::cas(2, 2, 10, "k", "a", "c", /*ok=*/true)};
  EXPECT_EQ(verdict_of(h), CheckResult::kIllegal);
  const std::vector<KvOp> fair = {KvOp::put(1, 0, 1, "k", "a"),
                                  KvOp::cas(1, 2, 10, "k", "a", "b", /*ok=*/true),
                                  KvOp::cas(2, 2, 10, "k", "a", "c", /*ok=*/false)};
  EXPECT_EQ(verdict_of(fair), CheckResult::kOk);
}

TEST(LinearizabilityTest, UnknownOutcomeCasMayOrMayNotHaveSwapped) {
  const std::vector<KvOp> base = {KvOp::put(1, 0, 1, "k", "a"),
                                  KvOp::cas(1, 2, kUnknown, "k", "a", "b", /*ok=*/false)};
  for (const char* seen : {"a", "b"}) {
    std::vector<KvOp> h = base;
    h.push_back(KvOp::get(2, 10, 11, "k", seen));
    EXPECT_EQ(verdict_of(h), CheckResult::kOk) << seen;
  }
}

TEST(LinearizabilityTest, IndependentKeysAreCheckedSeparately) {
  // Each key alone is fine, even though "a" and "b" interleave in time.
  const std::vector<KvOp> ok = {KvOp::put(1, 0, 10, "a", "1"), KvOp::put(2, 0, 10, "b", "1"),
                                KvOp::get(3, 1, 2, "a", "1"), KvOp::get(3, 3, 4, "b", Opt())};
  EXPECT_EQ(verdict_of(ok), CheckResult::kOk);
  // A value written to "a" must not be visible under "b".
  const std::vector<KvOp> bad = {KvOp::put(1, 0, 1, "a", "1"), KvOp::get(2, 2, 3, "a", "1"),
                                 KvOp::get(2, 4, 5, "b", "1")};
  const CheckResult r = check_kv_history(bad);
  EXPECT_EQ(r.verdict, CheckResult::kIllegal);
  EXPECT_EQ(r.illegal_key, "b");
}

TEST(LinearizabilityTest, IllegalExplanationNamesKeyAndBlockedOperations) {
  const std::vector<KvOp> h = {KvOp::put(1, 0, 1, "users/7", "a"),
                               KvOp::put(1, 2, 3, "users/7", "b"),
                               KvOp::get(2, 4, 5, "users/7", "a")};
  const CheckResult r = check_kv_history(h);
  ASSERT_EQ(r.verdict, CheckResult::kIllegal);
  EXPECT_NE(r.explanation.find("\"users/7\""), std::string::npos) << r.explanation;
  EXPECT_NE(r.explanation.find("2 of 3"), std::string::npos) << r.explanation;
  EXPECT_NE(r.explanation.find("#2 client 2 Get(\"users/7\") -> \"a\" @[4, 5]"), std::string::npos)
      << r.explanation;
}

// Many concurrent writes, then two reads after all of them that see different values: illegal,
// but the search must try many orders of the writes before it can tell.
std::vector<KvOp> many_writes_then_two_reads(const std::string& key, int writers) {
  std::vector<KvOp> h;
  h.reserve(static_cast<std::size_t>(writers) + 2);
  for (int i = 0; i < writers; ++i) {
    h.push_back(KvOp::put(i, 0, 100, key, "v" + std::to_string(i)));
  }
  h.push_back(KvOp::get(99, 150, 151, key, "v0"));
  h.push_back(KvOp::get(99, 152, 153, key, "v1"));
  return h;
}

TEST(LinearizabilityTest, StepBoundExceededIsUnknownNotAVerdict) {
  const std::vector<KvOp> h = many_writes_then_two_reads("k", 10);
  CheckOptions tight;
  tight.max_search_steps_per_key = 50;
  const CheckResult r = check_kv_history(h, tight);
  EXPECT_EQ(r.verdict, CheckResult::kUnknown);
  EXPECT_NE(r.explanation.find("step bound"), std::string::npos) << r.explanation;
  // With the default bound the memo keeps the same search small enough to decide.
  const CheckResult full = check_kv_history(h);
  EXPECT_EQ(full.verdict, CheckResult::kIllegal);
  EXPECT_GT(full.search_steps, 50);
}

TEST(LinearizabilityTest, MemoBoundExceededIsUnknown) {
  CheckOptions tight;
  tight.max_memo_bytes_per_key = 1;
  EXPECT_EQ(check_kv_history(many_writes_then_two_reads("k", 10), tight).verdict,
            CheckResult::kUnknown);
}

TEST(LinearizabilityTest, IllegalKeyWinsOverUnknownKey) {
  std::vector<KvOp> h = many_writes_then_two_reads("a", 10);
  h.push_back(KvOp::put(1, 0, 1, "b", "x"));
  h.push_back(KvOp::get(1, 2, 3, "b", std::nullopt));
  CheckOptions tight;
  tight.max_search_steps_per_key = 50;
  const CheckResult r = check_kv_history(h, tight);
  EXPECT_EQ(r.verdict, CheckResult::kIllegal);
  EXPECT_EQ(r.illegal_key, "b");
}

TEST(LinearizabilityTest, ReadOfUnwrittenValueIsIllegalWithoutSearch) {
  // Even where the search would be expensive, a value nobody wrote is rejected up front.
  std::vector<KvOp> h = many_writes_then_two_reads("k", 30);
  h.push_back(KvOp::get(98, 10, 20, "k", "zzz"));
  const CheckResult r = check_kv_history(h);
  ASSERT_EQ(r.verdict, CheckResult::kIllegal);
  EXPECT_EQ(r.search_steps, 0);
  EXPECT_NE(r.explanation.find("Get(\"k\") -> \"zzz\""), std::string::npos) << r.explanation;
  EXPECT_NE(r.explanation.find("no operation on the key writes"), std::string::npos);
}

TEST(LinearizabilityTest, UnobservedLostWritesDoNotBlowUpTheSearch) {
  // Writes whose responses were lost and whose values nobody read, overlapping a stale read.
  constexpr int kLostWrites = 40;
  std::vector<KvOp> h;
  h.reserve(kLostWrites + 3);
  for (int i = 0; i < kLostWrites; ++i) {
    h.push_back(KvOp::put(i, i, kUnknown, "k", "lost" + std::to_string(i)));
  }
  h.push_back(KvOp::put(100, 50, 51, "k", "a"));
  h.push_back(KvOp::put(100, 52, 53, "k", "b"));
  h.push_back(KvOp::get(101, 54, 55, "k", "a"));
  CheckOptions options;
  options.max_search_steps_per_key = 10'000;
  const CheckResult pruned = check_kv_history(h, options);
  EXPECT_EQ(pruned.verdict, CheckResult::kIllegal) << pruned.explanation;
  EXPECT_LT(pruned.search_steps, 100);
  options.prune_unobserved_lost_writes = false;
  EXPECT_EQ(check_kv_history(h, options).verdict, CheckResult::kUnknown);
}

TEST(LinearizabilityTest, LostWriteMayExplainAFailedCas) {
  // The Cas failed although the key held "a": only the lost write of "b" explains it.
  const std::vector<KvOp> h = {KvOp::put(1, 0, 1, "k", "a"), KvOp::put(1, 2, kUnknown, "k", "b"),
                               KvOp::cas(2, 10, 11, "k", "a", "c", /*ok=*/false)};
  EXPECT_EQ(verdict_of(h), CheckResult::kOk);
}

TEST(LinearizabilityTest, DescribeOpShowsUnknownReturn) {
  EXPECT_EQ(describe_op(KvOp::put(3, 7, kUnknown, "k", "v")), "client 3 Put(\"k\", \"v\") @[7, ?]");
  EXPECT_EQ(describe_op(KvOp::cas(1, 1, 2, "k", std::nullopt, "v", true)),
            "client 1 Cas(\"k\", <absent>, \"v\") -> ok @[1, 2]");
}

// --- Randomized histories from a real sequential execution -------------------------------------

struct GenParams {
  int clients = 4;
  int keys = 3;
  int ops = 300;
  double unknown_rate = 0.03;        // Fraction of operations whose response is lost.
  double cas_fraction = 0.2;         // The rest: 45% Put, 50% Get, 5% Delete.
  std::int64_t max_phase_ticks = 6;  // Upper bound of invoke->effect and effect->return delays.
};

// Generates a history by running clients against a real map. Each operation takes effect at one
// instant strictly inside [invoke, return], so the history is linearizable by construction.
// Operations whose response is lost report kUnknownReturnTime; a lost write takes effect or not.
class HistoryGenerator {
 public:
  HistoryGenerator(std::uint64_t seed, GenParams params) : rng_(seed), p_(params) {}

  std::vector<KvOp> run() {
    std::vector<Pending> pending(static_cast<std::size_t>(p_.clients));
    std::vector<int> order(pending.size());
    for (std::size_t c = 0; c < order.size(); ++c) order[c] = static_cast<int>(c);
    for (std::int64_t t = 1; issued_ < p_.ops || busy(pending); ++t) {
      shuffle(order);
      for (const int c : order) tick(c, t, pending[static_cast<std::size_t>(c)]);
    }
    return history_;
  }

 private:
  struct Pending {
    bool busy = false;
    KvOp op;
    std::int64_t effect_time = 0;
    std::int64_t return_time = 0;
    bool lost = false;
    bool lost_write_applies = false;
  };

  static bool busy(const std::vector<Pending>& pending) {
    return std::any_of(pending.begin(), pending.end(), [](const Pending& p) { return p.busy; });
  }

  void shuffle(std::vector<int>& v) {
    for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng_.uniform(i)]);
  }

  void tick(int client, std::int64_t t, Pending& p) {
    if (p.busy && p.effect_time == t && (!p.lost || p.lost_write_applies)) apply(p.op);
    if (p.busy && p.return_time == t) {
      p.op.return_time = p.lost ? kUnknownReturnTime : t;
      history_.push_back(p.op);
      p.busy = false;
      return;  // The client issues its next operation on a later tick.
    }
    if (!p.busy && issued_ < p_.ops && rng_.chance(0.5)) start(client, t, p);
  }

  void start(int client, std::int64_t t, Pending& p) {
    ++issued_;
    p.busy = true;
    p.effect_time = t + rng_.range(1, p_.max_phase_ticks);
    p.return_time = p.effect_time + rng_.range(1, p_.max_phase_ticks);
    p.lost = rng_.chance(p_.unknown_rate);
    p.lost_write_applies = rng_.chance(0.5);
    const std::string key = "k" + std::to_string(rng_.uniform(static_cast<std::uint64_t>(p_.keys)));
    const std::string value = "c" + std::to_string(client) + "-" + std::to_string(issued_);
    const double roll = rng_.unit();
    if (rng_.chance(p_.cas_fraction)) {
      p.op = KvOp::cas(client, t, 0, key, cas_expectation(key), value, false);
    } else if (roll < 0.45) {
      p.op = KvOp::put(client, t, 0, key, value);
    } else if (roll < 0.95) {
      p.op = KvOp::get(client, t, 0, key, std::nullopt);
    } else {
      p.op = KvOp::del(client, t, 0, key);
    }
  }

  // Usually the current value (so that some swaps succeed), sometimes an older one or absence.
  std::optional<std::string> cas_expectation(const std::string& key) {
    if (rng_.chance(0.6)) return current(key);
    const std::vector<std::string>& old = written_[key];
    if (old.empty() || rng_.chance(0.2)) return std::nullopt;
    return old[rng_.uniform(old.size())];
  }

  std::optional<std::string> current(const std::string& key) const {
    const auto it = store_.find(key);
    if (it == store_.end()) return std::nullopt;
    return it->second;
  }

  void apply(KvOp& op) {
    switch (op.kind) {
      case KvOpKind::kPut: write(op.key, op.value); break;
      case KvOpKind::kDelete: store_.erase(op.key); break;
      case KvOpKind::kGet: op.observed = current(op.key); break;
      case KvOpKind::kCas:
        op.cas_ok = current(op.key) == op.expected;
        if (op.cas_ok) write(op.key, op.value);
        break;
    }
  }

  void write(const std::string& key, const std::string& value) {
    store_[key] = value;
    written_[key].push_back(value);
  }

  Rng rng_;
  GenParams p_;
  int issued_ = 0;
  std::map<std::string, std::string> store_;
  std::map<std::string, std::vector<std::string>> written_;
  std::vector<KvOp> history_;
};

bool is_completed_get(const KvOp& op) {
  return op.kind == KvOpKind::kGet && op.outcome_known();
}

// A write whose effect is certain: an acknowledged Put, Delete or successful Cas.
bool is_certain_write(const KvOp& op) {
  if (!op.outcome_known()) return false;
  return op.kind == KvOpKind::kPut || op.kind == KvOpKind::kDelete ||
         (op.kind == KvOpKind::kCas && op.cas_ok);
}

std::vector<std::size_t> completed_gets(const std::vector<KvOp>& h) {
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < h.size(); ++i) {
    if (is_completed_get(h[i])) out.push_back(i);
  }
  return out;
}

// Finds a Get `g` and a value it could not possibly read: written by a certain write W that was
// certainly overwritten (by a certain write X with W < X < g in real time). Values are unique.
bool find_definitely_stale(const std::vector<KvOp>& h, Rng& rng, std::size_t* get,
                           std::string* value) {
  const std::vector<std::size_t> gets = completed_gets(h);
  constexpr int kTries = 200;
  for (int attempt = 0; attempt < kTries && !gets.empty(); ++attempt) {
    const KvOp& g = h[gets[rng.uniform(gets.size())]];
    const KvOp& w = h[rng.uniform(h.size())];
    if (w.key != g.key || !is_certain_write(w) || w.kind == KvOpKind::kDelete) continue;
    if (w.return_time >= g.invoke_time || g.observed == w.value) continue;
    const bool overwritten = std::any_of(h.begin(), h.end(), [&](const KvOp& x) {
      return x.key == g.key && is_certain_write(x) && x.invoke_time > w.return_time &&
             x.return_time < g.invoke_time;
    });
    if (!overwritten) continue;
    *get = static_cast<std::size_t>(&g - h.data());
    *value = w.value;
    return true;
  }
  return false;
}

TEST(LinearizabilityRandomTest, HistoriesFromSequentialExecutionsAreOk) {
  constexpr int kSeeds = 200;
  for (int seed = 1; seed <= kSeeds; ++seed) {
    const std::vector<KvOp> h = HistoryGenerator(seed, GenParams{}).run();
    const CheckResult r = check_kv_history(h);
    ASSERT_EQ(r.verdict, CheckResult::kOk) << "seed " << seed << ": " << r.explanation;
  }
}

TEST(LinearizabilityRandomTest, ContendedHistoriesWithManyLostResponsesAreOk) {
  // One key, eight clients, long overlaps and one response in ten lost: a hard search.
  GenParams params;
  params.clients = 8;
  params.keys = 1;
  params.ops = 200;
  params.unknown_rate = 0.1;
  params.max_phase_ticks = 10;
  constexpr int kSeeds = 50;
  std::int64_t max_steps = 0;
  for (int seed = 1; seed <= kSeeds; ++seed) {
    const std::vector<KvOp> h = HistoryGenerator(seed, params).run();
    const CheckResult r = check_kv_history(h);
    ASSERT_EQ(r.verdict, CheckResult::kOk) << "seed " << seed << ": " << r.explanation;
    max_steps = std::max(max_steps, r.search_steps);
  }
  std::printf("contended histories: at most %lld search steps\n",
              static_cast<long long>(max_steps));
}

TEST(LinearizabilityRandomTest, InjectedReadOfNeverWrittenValueIsIllegal) {
  constexpr int kSeeds = 100;
  for (int seed = 1; seed <= kSeeds; ++seed) {
    std::vector<KvOp> h = HistoryGenerator(seed, GenParams{}).run();
    Rng rng(static_cast<std::uint64_t>(seed) * 7919);
    const std::vector<std::size_t> gets = completed_gets(h);
    ASSERT_FALSE(gets.empty());
    h[gets[rng.uniform(gets.size())]].observed = "never-written";
    const CheckResult r = check_kv_history(h);
    ASSERT_EQ(r.verdict, CheckResult::kIllegal) << "seed " << seed;
  }
}

TEST(LinearizabilityRandomTest, InjectedDefinitelyStaleReadIsIllegal) {
  constexpr int kSeeds = 100;
  int injected = 0;
  for (int seed = 1; seed <= kSeeds; ++seed) {
    std::vector<KvOp> h = HistoryGenerator(seed, GenParams{}).run();
    Rng rng(static_cast<std::uint64_t>(seed) * 104729);
    std::size_t get = 0;
    std::string stale;
    if (!find_definitely_stale(h, rng, &get, &stale)) continue;
    ++injected;
    h[get].observed = stale;
    const CheckResult r = check_kv_history(h);
    ASSERT_EQ(r.verdict, CheckResult::kIllegal) << "seed " << seed;
    EXPECT_EQ(r.illegal_key, h[get].key);
  }
  std::printf("definitely stale reads injected in %d of %d histories\n", injected, kSeeds);
  EXPECT_GE(injected, kSeeds / 2);
}

TEST(LinearizabilityRandomTest, InjectedWrongReadIsMostlyIllegal) {
  // Replacing a read's value with another value once written to the same key is usually, but not
  // always, detectable: the other value may have been current at some instant of the read.
  constexpr int kSeeds = 100;
  int illegal = 0;
  for (int seed = 1; seed <= kSeeds; ++seed) {
    std::vector<KvOp> h = HistoryGenerator(seed, GenParams{}).run();
    Rng rng(static_cast<std::uint64_t>(seed) * 31337);
    const std::vector<std::size_t> gets = completed_gets(h);
    KvOp& g = h[gets[rng.uniform(gets.size())]];
    std::vector<std::string> others;
    for (const KvOp& op : h) {
      if (op.key == g.key && (op.kind == KvOpKind::kPut || op.kind == KvOpKind::kCas) &&
          g.observed != op.value) {
        others.push_back(op.value);
      }
    }
    if (others.empty()) continue;
    g.observed = others[rng.uniform(others.size())];
    const CheckResult r = check_kv_history(h);
    ASSERT_NE(r.verdict, CheckResult::kUnknown) << "seed " << seed;
    if (r.verdict == CheckResult::kIllegal) ++illegal;
  }
  std::printf("wrong reads detected as illegal: %d of %d\n", illegal, kSeeds);
  EXPECT_GE(illegal, kSeeds * 3 / 4);
}

TEST(LinearizabilityRandomTest, PruningLostWritesNeverChangesAVerdict) {
  // Small, contended histories with many lost writes, some with wrong reads injected: the search
  // with and without the pruning of unobserved lost writes must agree whenever both decide.
  GenParams params;
  params.clients = 4;
  params.keys = 1;
  params.ops = 40;
  params.unknown_rate = 0.25;
  constexpr int kSeeds = 400;
  int decided = 0;
  int illegal = 0;
  for (int seed = 1; seed <= kSeeds; ++seed) {
    params.cas_fraction = seed % 2 == 0 ? 0.0 : 0.2;
    std::vector<KvOp> h = HistoryGenerator(seed, params).run();
    Rng rng(static_cast<std::uint64_t>(seed) * 65537);
    const std::vector<std::size_t> gets = completed_gets(h);
    if (!gets.empty() && rng.chance(0.5)) {
      const KvOp& w = h[rng.uniform(h.size())];
      if (w.kind == KvOpKind::kPut) h[gets[rng.uniform(gets.size())]].observed = w.value;
    }
    CheckOptions unpruned;
    unpruned.prune_unobserved_lost_writes = false;
    const CheckResult a = check_kv_history(h);
    const CheckResult b = check_kv_history(h, unpruned);
    if (a.verdict == CheckResult::kUnknown || b.verdict == CheckResult::kUnknown) continue;
    ++decided;
    if (a.verdict == CheckResult::kIllegal) ++illegal;
    ASSERT_EQ(a.verdict, b.verdict)
        << "seed " << seed << ": " << a.explanation << " / " << b.explanation;
  }
  std::printf("pruning cross-check: %d decided, %d illegal\n", decided, illegal);
  EXPECT_GE(decided, kSeeds * 9 / 10);
  EXPECT_GT(illegal, 0);
}

TEST(LinearizabilityPerfTest, TwoThousandOpsTwentyKeysEightClientsUnderOneSecond) {
  GenParams params;
  params.clients = 8;
  params.keys = 20;
  params.ops = 2000;
  params.unknown_rate = 0.02;
  const std::vector<KvOp> h = HistoryGenerator(42, params).run();
  ASSERT_EQ(h.size(), 2000u);
  const auto start = std::chrono::steady_clock::now();
  const CheckResult r = check_kv_history(h);
  const auto elapsed_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::steady_clock::now() - start)
                              .count();
  EXPECT_EQ(r.verdict, CheckResult::kOk) << r.explanation;
  EXPECT_LT(elapsed_ms, 1000) << "steps " << r.search_steps;
  std::printf("2000 ops / 20 keys / 8 clients: %lld ms, %lld search steps\n",
              static_cast<long long>(elapsed_ms), static_cast<long long>(r.search_steps));
}

}  // namespace
}  // namespace herald::sim
