#include "workflow/engine.h"

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <set>
#include <tuple>

#include "base/random.h"
#include "storage/mem_engine.h"
#include "workflow/keys.h"
#include "workflow/retry.h"

namespace herald::workflow {
namespace {

using workflowpb::WorkflowCommand;

constexpr std::int64_t kT0 = 1'000'000;  // the test clock's start, ms

// A workflow type whose transition is a test's lambda.
class LambdaType final : public WorkflowType {
 public:
  using Fn = std::function<Decision(std::string_view, std::string_view, const Event&)>;
  LambdaType(std::string name, Fn fn) : name_(std::move(name)), fn_(std::move(fn)) {}
  std::string_view name() const override { return name_; }
  std::string_view initial_state() const override { return "init"; }
  Decision on_event(std::string_view state, std::string_view data,
                    const Event& event) const override {
    return fn_(state, data, event);
  }

 private:
  std::string name_;
  Fn fn_;
};

Decision stay(std::string_view state, std::string_view data, std::vector<Action> actions = {}) {
  return Decision{std::string(state), std::string(data), std::move(actions)};
}

WorkflowCommand start_cmd(std::string id, std::string type, std::string input = {}) {
  WorkflowCommand c;
  c.mutable_start()->set_workflow_id(std::move(id));
  c.mutable_start()->set_type(std::move(type));
  c.mutable_start()->set_input(std::move(input));
  return c;
}

WorkflowCommand signal_cmd(std::string id, std::string name, std::string payload = {}) {
  WorkflowCommand c;
  c.mutable_signal()->set_workflow_id(std::move(id));
  c.mutable_signal()->set_name(std::move(name));
  c.mutable_signal()->set_payload(std::move(payload));
  return c;
}

WorkflowCommand cancel_cmd(std::string id, std::string reason = {}) {
  WorkflowCommand c;
  c.mutable_cancel()->set_workflow_id(std::move(id));
  c.mutable_cancel()->set_reason(std::move(reason));
  return c;
}

WorkflowCommand report_cmd(const ActivityRef& ref, bool ok, std::string output_or_error = {}) {
  WorkflowCommand c;
  auto* r = c.mutable_report();
  r->set_workflow_id(ref.workflow_id);
  r->set_run_id(ref.run_id);
  r->set_activity_id(ref.activity_id);
  r->set_attempt(ref.attempt);
  r->set_ok(ok);
  if (ok) {
    r->set_output(std::move(output_or_error));
  } else {
    r->set_error_type(std::move(output_or_error));
    r->set_error_message("it broke");
  }
  return c;
}

WorkflowCommand heartbeat_cmd(const ActivityRef& ref) {
  WorkflowCommand c;
  auto* h = c.mutable_heartbeat();
  h->set_workflow_id(ref.workflow_id);
  h->set_run_id(ref.run_id);
  h->set_activity_id(ref.activity_id);
  h->set_attempt(ref.attempt);
  return c;
}

WorkflowCommand fire_cmd(const workflowpb::TimerRecord& timer) {
  WorkflowCommand c;
  auto* f = c.mutable_fire_timer();
  f->set_workflow_id(timer.workflow_id());
  f->set_run_id(timer.run_id());
  f->set_timer_id(timer.timer_id());
  f->set_due_ms(timer.due_ms());
  return c;
}

class EngineTest : public ::testing::Test {
 protected:
  // Registers a type under `name`.
  void add_type(std::string name, LambdaType::Fn fn) {
    ASSERT_TRUE(registry_.add(std::make_shared<LambdaType>(std::move(name), std::move(fn))).ok());
  }

  // The two-step order: charge, wait 1 s, ship, complete. Signals "note" append to the data;
  // a cancel request records "escalated" and fails with "canceled_by_user".
  void add_order_type() {
    add_type("order", [this](std::string_view state, std::string_view data, const Event& e) {
      switch (e.kind) {
        case Event::Kind::kStarted:
          return stay("charging", data,
                      {Action::schedule_activity("charge", "charge", e.payload, options_)});
        case Event::Kind::kActivityCompleted:
          if (e.tag == "charge") {
            return stay("cooling", data, {Action::start_timer("cool", 1000)});
          }
          return stay("done", data, {Action::complete("shipped:" + e.payload)});
        case Event::Kind::kTimerFired:
          return stay("shipping", data, {Action::schedule_activity("ship", "ship", {}, options_)});
        case Event::Kind::kActivityFailed:
          return stay("failed", data, {Action::fail(e.error_type, e.error_message)});
        case Event::Kind::kSignal:
          return stay(state, std::string(data) + e.payload, {Action::record("noted", e.payload)});
        case Event::Kind::kCancelRequested:
          return stay("compensating", data,
                      {Action::record("escalated"), Action::fail("canceled_by_user", e.payload)});
      }
      return stay(state, data);
    });
  }

  rsmpb::CommandResult apply(const WorkflowCommand& wc, std::int64_t wall_ms) {
    rsm::ApplyBatch batch(&store_);
    auto result = apply_into(batch, wc, wall_ms);
    EXPECT_TRUE(store_.write(batch.writes(), false).ok());
    if (check_invariants_) {
      check_invariants();
    }
    return result;
  }

  rsmpb::CommandResult apply_into(rsm::ApplyBatch& batch, const WorkflowCommand& wc,
                                  std::int64_t wall_ms) {
    rsmpb::Command c;
    c.set_wall_ms(wall_ms);
    c.mutable_module()->set_name(kModuleName);
    c.mutable_module()->set_payload(wc.SerializeAsString());
    return engine_.apply(++index_, c, batch);
  }

  workflowpb::WorkflowRecord record(std::string_view id) {
    auto r = Engine::read_workflow(store_, id);
    EXPECT_TRUE(r.ok() && r->has_value()) << id;
    return r.ok() && r->has_value() ? **r : workflowpb::WorkflowRecord();
  }

  std::vector<std::string> history_kinds(std::string_view id, std::uint64_t run_id = 1) {
    auto h = Engine::read_history(store_, id, run_id, 0, kMaxHistoryEvents);
    EXPECT_TRUE(h.ok());
    std::vector<std::string> kinds;
    for (const auto& e : *h) {
      kinds.push_back(e.kind());
    }
    return kinds;
  }

  std::vector<workflowpb::TimerRecord> timers(std::int64_t now_ms = kT0 * 1000) {
    auto t = Engine::due_timers(store_, now_ms, 1000);
    EXPECT_TRUE(t.ok());
    return t.ok() ? *t : std::vector<workflowpb::TimerRecord>();
  }

  workflowpb::TimerRecord only_timer(workflowpb::TimerKind kind) {
    std::vector<workflowpb::TimerRecord> found;
    for (const auto& t : timers()) {
      if (t.kind() == kind) {
        found.push_back(t);
      }
    }
    EXPECT_EQ(found.size(), 1U) << workflowpb::TimerKind_Name(kind);
    return found.empty() ? workflowpb::TimerRecord() : found.front();
  }

  ActivityRef only_dispatchable() {
    auto d = Engine::dispatchable_activities(store_, 100);
    EXPECT_TRUE(d.ok());
    EXPECT_EQ(d->size(), 1U);
    if (!d.ok() || d->size() != 1) {
      return {};
    }
    const auto& a = d->front();
    return ActivityRef{a.workflow_id(), a.run_id(), a.activity_id(), a.attempt()};
  }

  // Scans every key under sub-prefix `sub`.
  std::vector<std::pair<std::string, std::string>> scan_sub(char sub) {
    const std::string prefix = keys::sub_prefix(sub);
    std::vector<std::pair<std::string, std::string>> out;
    auto it = store_.scan(storage::Space::kState, prefix, keys::prefix_end(prefix));
    for (; it->valid(); it->next()) {
      out.emplace_back(std::string(it->key()), std::string(it->value()));
    }
    EXPECT_TRUE(it->status().ok());
    return out;
  }

  // The engine's invariants, checked against the stored state after every command:
  // the visibility index is exactly what the records say; every open activity exists and is
  // dispatchable iff it is indexed; every timer belongs to the running run that owns it.
  void check_invariants() {
    std::map<std::string, workflowpb::WorkflowRecord> records;
    for (const auto& [key, value] : scan_sub(keys::kRecordSub)) {
      auto r = keys::open<workflowpb::WorkflowRecord>(value, "workflow");
      ASSERT_TRUE(r.ok());
      records[r->workflow_id()] = *r;
    }
    std::set<std::tuple<std::string, int, std::string, std::int64_t>> expected;
    std::set<std::tuple<std::string, int, std::string, std::int64_t>> listed;
    for (const auto& [id, r] : records) {
      expected.emplace(id, r.status(), r.state(), r.state_since_ms());
      EXPECT_EQ(Engine::read_history(store_, id, r.run_id(), 0, kMaxHistoryEvents)->size(),
                r.history_length());
    }
    for (const auto& [key, value] : scan_sub(keys::kVisibilitySub)) {
      auto v = keys::open<workflowpb::WorkflowRecord>(value, "visibility");
      ASSERT_TRUE(v.ok());
      EXPECT_EQ(key,
                keys::visibility_key(v->type(), v->state(), v->state_since_ms(), v->workflow_id()));
      listed.emplace(v->workflow_id(), v->status(), v->state(), v->state_since_ms());
    }
    EXPECT_EQ(listed, expected);
    std::size_t open_activities = 0;
    for (const auto& [id, r] : records) {
      open_activities += r.open_activity_ids_size();
      for (const std::uint64_t a : r.open_activity_ids()) {
        auto act = Engine::read_activity(store_, ActivityRef{id, r.run_id(), a, 0});
        ASSERT_TRUE(act.ok() && act->has_value());
      }
    }
    EXPECT_EQ(scan_sub(keys::kActivitySub).size(), open_activities);
    const auto dispatchable = Engine::dispatchable_activities(store_, 10'000);
    ASSERT_TRUE(dispatchable.ok());
    for (const auto& act : *dispatchable) {
      EXPECT_EQ(act.phase(), workflowpb::DISPATCHABLE);
    }
    for (const auto& t : timers(std::numeric_limits<std::int64_t>::max())) {
      const auto& r = records.at(t.workflow_id());
      EXPECT_EQ(r.status(), workflowpb::RUNNING);
      EXPECT_EQ(r.run_id(), t.run_id());
    }
  }

  storage::MemEngine store_;
  Registry registry_;
  Engine engine_{&registry_};
  raft::Index index_ = 0;
  workflowpb::ActivityOptions options_;
  bool check_invariants_ = true;
};

Code code_of(const rsmpb::CommandResult& r) {
  return static_cast<Code>(r.code());
}

// ---------------------------------------------------------------- start, signals, happy path

TEST_F(EngineTest, TwoActivitySequenceWithTimerCompletes) {
  add_order_type();
  auto r = apply(start_cmd("o1", "order", "card-42"), kT0);
  ASSERT_EQ(code_of(r), Code::kOk) << r.message();
  const auto charge = only_dispatchable();
  EXPECT_EQ(engine_.take_dispatchable().size(), 1U);
  EXPECT_TRUE(engine_.take_dispatchable().empty());
  auto act = Engine::read_activity(store_, charge);
  ASSERT_TRUE(act.ok() && act->has_value());
  EXPECT_EQ((*act)->input(), "card-42");
  EXPECT_EQ((*act)->idempotency_key(), "o1/1/1");
  ASSERT_EQ(code_of(apply(report_cmd(charge, true, "paid"), kT0 + 10)), Code::kOk);
  const auto cool = only_timer(workflowpb::USER);
  EXPECT_EQ(cool.due_ms(), kT0 + 1010);
  ASSERT_EQ(code_of(apply(fire_cmd(cool), kT0 + 1010)), Code::kOk);
  const auto ship = only_dispatchable();
  ASSERT_EQ(code_of(apply(report_cmd(ship, true, "parcel"), kT0 + 2000)), Code::kOk);
  const auto rec = record("o1");
  EXPECT_EQ(rec.status(), workflowpb::COMPLETED);
  EXPECT_EQ(rec.result(), "shipped:parcel");
  EXPECT_EQ(history_kinds("o1"),
            (std::vector<std::string>{"started", "state_changed", "activity_scheduled",
                                      "activity_completed", "state_changed", "timer_started",
                                      "timer_fired", "state_changed", "activity_scheduled",
                                      "activity_completed", "state_changed", "completed"}));
  EXPECT_TRUE(timers().empty());
}

TEST_F(EngineTest, StatsCountEachStateEnteredAndEachTimerFiredOnce) {
  add_order_type();
  ASSERT_EQ(code_of(apply(start_cmd("o1", "order"), kT0)), Code::kOk);
  ASSERT_EQ(code_of(apply(start_cmd("o1", "order"), kT0)), Code::kOk);  // deduped: no transition
  ASSERT_EQ(code_of(apply(report_cmd(only_dispatchable(), true), kT0)), Code::kOk);
  const auto cool = only_timer(workflowpb::USER);
  ASSERT_EQ(code_of(apply(fire_cmd(cool), cool.due_ms() - 1)), Code::kFailedPrecondition);
  ASSERT_EQ(code_of(apply(fire_cmd(cool), cool.due_ms())), Code::kOk);
  ASSERT_EQ(code_of(apply(report_cmd(only_dispatchable(), true), cool.due_ms())), Code::kOk);
  const EngineStats& stats = engine_.stats();
  EXPECT_EQ(stats.transitions,
            (std::map<StateEntered, std::uint64_t>{{{"order", "charging"}, 1},
                                                   {{"order", "cooling"}, 1},
                                                   {{"order", "shipping"}, 1},
                                                   {{"order", "completed"}, 1}}));
  EXPECT_EQ(stats.timers_fired, 1U);
}

TEST_F(EngineTest, StartIsDedupedById) {
  add_order_type();
  auto first = apply(start_cmd("o1", "order", "a"), kT0);
  ASSERT_EQ(code_of(first), Code::kOk);
  EXPECT_FALSE(first.existed());
  auto again = apply(start_cmd("o1", "order", "b"), kT0 + 5);
  EXPECT_EQ(code_of(again), Code::kOk);
  EXPECT_TRUE(again.existed());
  workflowpb::WorkflowRecord existing;
  ASSERT_TRUE(existing.ParseFromString(again.payload()));
  EXPECT_EQ(existing.run_id(), 1U);
  EXPECT_EQ(existing.created_ms(), kT0);
  EXPECT_EQ(Engine::dispatchable_activities(store_, 10)->size(), 1U);  // no second charge
  // A closed workflow id dedups too.
  ASSERT_EQ(code_of(apply(cancel_cmd("o1", "stop"), kT0 + 6)), Code::kOk);
  ASSERT_EQ(record("o1").status(), workflowpb::FAILED);
  auto closed = apply(start_cmd("o1", "order", "c"), kT0 + 7);
  EXPECT_TRUE(closed.existed());
  EXPECT_EQ(record("o1").status(), workflowpb::FAILED);
}

TEST_F(EngineTest, StartRefusesUnknownTypesAndBadIds) {
  add_order_type();
  EXPECT_EQ(code_of(apply(start_cmd("o1", "nope"), kT0)), Code::kInvalidArgument);
  EXPECT_EQ(code_of(apply(start_cmd("", "order"), kT0)), Code::kInvalidArgument);
  EXPECT_EQ(code_of(apply(start_cmd(std::string(kMaxWorkflowIdBytes + 1, 'x'), "order"), kT0)),
            Code::kInvalidArgument);
  EXPECT_EQ(code_of(apply(start_cmd(std::string(kMaxWorkflowIdBytes, 'x'), "order"), kT0)),
            Code::kOk);
  EXPECT_EQ(code_of(apply(start_cmd("o2", "order", std::string(kMaxPayloadBytes + 1, 'i')), kT0)),
            Code::kInvalidArgument);
  EXPECT_FALSE(Engine::read_workflow(store_, "o1")->has_value());
}

TEST_F(EngineTest, SignalsAreDeliveredInCommitOrder) {
  add_order_type();
  ASSERT_EQ(code_of(apply(start_cmd("o1", "order"), kT0)), Code::kOk);
  // Three in one apply batch (read-your-writes), then two more in later batches.
  rsm::ApplyBatch batch(&store_);
  for (const char* p : {"a", "b", "c"}) {
    ASSERT_EQ(code_of(apply_into(batch, signal_cmd("o1", "note", p), kT0 + 1)), Code::kOk);
  }
  ASSERT_TRUE(store_.write(batch.writes(), false).ok());
  ASSERT_EQ(code_of(apply(signal_cmd("o1", "note", "d"), kT0 + 2)), Code::kOk);
  ASSERT_EQ(code_of(apply(signal_cmd("o1", "note", "e"), kT0 + 3)), Code::kOk);
  EXPECT_EQ(record("o1").data(), "abcde");
  auto h = Engine::read_history(store_, "o1", 1, 0, 100);
  std::string signaled;
  for (const auto& e : *h) {
    if (e.kind() == "signaled") {
      signaled += e.payload();
    }
  }
  EXPECT_EQ(signaled, "abcde");
  EXPECT_EQ(code_of(apply(signal_cmd("ghost", "note"), kT0 + 4)), Code::kNotFound);
}

TEST_F(EngineTest, HistoryIsPagedBySeq) {
  add_order_type();
  ASSERT_EQ(code_of(apply(start_cmd("o1", "order"), kT0)), Code::kOk);
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(code_of(apply(signal_cmd("o1", "note", "x"), kT0 + i)), Code::kOk);
  }
  auto page1 = Engine::read_history(store_, "o1", 1, 0, 4);
  ASSERT_TRUE(page1.ok());
  ASSERT_EQ(page1->size(), 4U);
  auto page2 = Engine::read_history(store_, "o1", 1, page1->back().seq(), 100);
  ASSERT_TRUE(page2.ok());
  EXPECT_EQ(page2->front().seq(), 5U);
  EXPECT_EQ(page1->size() + page2->size(), record("o1").history_length());
}

TEST_F(EngineTest, ATransitionStoresItsEventsAsOneValue) {
  add_order_type();
  ASSERT_EQ(code_of(apply(start_cmd("o1", "order"), kT0)), Code::kOk);
  const std::size_t chunks = scan_sub(keys::kHistorySub).size();
  const std::uint64_t events = record("o1").history_length();
  ASSERT_GT(events, 1U);  // started, state_changed, activity_scheduled: one value
  EXPECT_EQ(chunks, 1U);
  ASSERT_EQ(code_of(apply(report_cmd(only_dispatchable(), true), kT0 + 1)), Code::kOk);
  EXPECT_GT(record("o1").history_length(), events + 1);
  EXPECT_EQ(scan_sub(keys::kHistorySub).size(), chunks + 1);
  // Every page boundary, inside a chunk or between two, reads the same events in order.
  const auto all = *Engine::read_history(store_, "o1", 1, 0, 100);
  ASSERT_EQ(all.size(), record("o1").history_length());
  for (std::uint64_t after = 0; after <= all.size(); ++after) {
    const auto page = *Engine::read_history(store_, "o1", 1, after, 2);
    ASSERT_EQ(page.size(), std::min<std::size_t>(2, all.size() - after)) << after;
    for (std::size_t i = 0; i < page.size(); ++i) {
      EXPECT_EQ(page[i].seq(), after + i + 1);
      EXPECT_EQ(page[i].kind(), all[after + i].kind());
    }
  }
}

TEST_F(EngineTest, AHistoryChunkWithAGapIsCorruption) {
  add_order_type();
  ASSERT_EQ(code_of(apply(start_cmd("o1", "order"), kT0)), Code::kOk);
  const auto stored = scan_sub(keys::kHistorySub);
  ASSERT_EQ(stored.size(), 1U);
  auto chunk = keys::open<workflowpb::HistoryChunk>(stored.front().second, "history");
  ASSERT_TRUE(chunk.ok());
  ASSERT_GT(chunk->events_size(), 1);
  chunk->mutable_events(0)->set_seq(0);
  storage::WriteBatch damage;
  damage.put(storage::Space::kState, stored.front().first, keys::seal(*chunk));
  ASSERT_TRUE(store_.write(damage, false).ok());
  EXPECT_EQ(Engine::read_history(store_, "o1", 1, 0, 100).status().code(), Code::kCorruption);
}

// ---------------------------------------------------------------- timers

TEST_F(EngineTest, TimerDoesNotFireEarly) {
  add_order_type();
  ASSERT_EQ(code_of(apply(start_cmd("o1", "order"), kT0)), Code::kOk);
  ASSERT_EQ(code_of(apply(report_cmd(only_dispatchable(), true), kT0)), Code::kOk);
  const auto cool = only_timer(workflowpb::USER);
  EXPECT_TRUE(Engine::due_timers(store_, cool.due_ms() - 1, 10)->empty());
  EXPECT_EQ(Engine::due_timers(store_, cool.due_ms(), 10)->size(), 1U);
  EXPECT_EQ(code_of(apply(fire_cmd(cool), cool.due_ms() - 1)), Code::kFailedPrecondition);
  EXPECT_EQ(record("o1").state(), "cooling");
  EXPECT_EQ(code_of(apply(fire_cmd(cool), cool.due_ms())), Code::kOk);
  EXPECT_EQ(record("o1").state(), "shipping");
}

TEST_F(EngineTest, TimerFiresOnce) {
  add_order_type();
  ASSERT_EQ(code_of(apply(start_cmd("o1", "order"), kT0)), Code::kOk);
  ASSERT_EQ(code_of(apply(report_cmd(only_dispatchable(), true), kT0)), Code::kOk);
  const auto cool = only_timer(workflowpb::USER);
  rsm::ApplyBatch batch(&store_);  // twice in one batch, then once more later
  EXPECT_EQ(code_of(apply_into(batch, fire_cmd(cool), cool.due_ms() + 1)), Code::kOk);
  EXPECT_EQ(code_of(apply_into(batch, fire_cmd(cool), cool.due_ms() + 2)), Code::kOk);
  ASSERT_TRUE(store_.write(batch.writes(), false).ok());
  EXPECT_EQ(code_of(apply(fire_cmd(cool), cool.due_ms() + 3)), Code::kOk);
  const auto kinds = history_kinds("o1");
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), "timer_fired"), 1);
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), "activity_scheduled"), 2);
}

WorkflowCommand fire_many_cmd(const std::vector<workflowpb::TimerRecord>& timers) {
  WorkflowCommand c;
  for (const auto& timer : timers) {
    *c.mutable_fire_timers()->add_timers() = fire_cmd(timer).fire_timer();
  }
  return c;
}

TEST_F(EngineTest, FireTimersSkipsTheTimerNotYetDueAndFiresTheRest) {
  add_order_type();
  for (const char* id : {"o1", "o2"}) {
    ASSERT_EQ(code_of(apply(start_cmd(id, "order"), kT0)), Code::kOk);
    ASSERT_EQ(code_of(apply(report_cmd(only_dispatchable(), true), kT0)), Code::kOk);
  }
  ASSERT_EQ(code_of(apply(start_cmd("o3", "order"), kT0 + 500)), Code::kOk);
  ASSERT_EQ(code_of(apply(report_cmd(only_dispatchable(), true), kT0 + 500)), Code::kOk);
  const auto all = timers();
  ASSERT_EQ(all.size(), 3U);  // o1, o2 due at kT0 + 1000; o3 at kT0 + 1500
  (void)engine_.take_applied_fires();
  EXPECT_EQ(code_of(apply(fire_many_cmd(all), kT0 + 1000)), Code::kOk);
  EXPECT_EQ(record("o1").state(), "shipping");
  EXPECT_EQ(record("o2").state(), "shipping");
  EXPECT_EQ(record("o3").state(), "cooling");  // refused alone: not due by the command's time
  const auto fires = engine_.take_applied_fires();
  ASSERT_EQ(fires.size(), 3U);
  EXPECT_TRUE(fires[0].fired && fires[1].fired);
  EXPECT_FALSE(fires[2].fired);
  EXPECT_EQ(timers().size(), 1U);
  // Firing the batch again: the two fired timers are gone (no effect), the third fires now.
  EXPECT_EQ(code_of(apply(fire_many_cmd(all), kT0 + 1500)), Code::kOk);
  EXPECT_EQ(record("o3").state(), "shipping");
  const auto kinds = history_kinds("o1");
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), "timer_fired"), 1);
}

TEST_F(EngineTest, FireTimersRefusesAnEmptyOrOversizeBatch) {
  WorkflowCommand empty;
  empty.mutable_fire_timers();
  EXPECT_EQ(code_of(apply(empty, kT0)), Code::kInvalidArgument);
  std::vector<workflowpb::TimerRecord> many(kMaxTimersPerFireCommand + 1);
  for (std::size_t i = 0; i < many.size(); ++i) {
    many[i].set_workflow_id("w" + std::to_string(i));
    many[i].set_run_id(1);
    many[i].set_due_ms(kT0);
  }
  EXPECT_EQ(code_of(apply(fire_many_cmd(many), kT0)), Code::kInvalidArgument);
}

TEST_F(EngineTest, TimerRestartAndCancelByTag) {
  add_type("alarm", [](std::string_view state, std::string_view data, const Event& e) {
    if (e.kind == Event::Kind::kSignal && e.name == "arm") {
      return stay(state, data, {Action::start_timer("alarm", 1000)});
    }
    if (e.kind == Event::Kind::kSignal && e.name == "disarm") {
      return stay(state, data, {Action::cancel_timer("alarm")});
    }
    if (e.kind == Event::Kind::kTimerFired) {
      return stay("rang", data);
    }
    return stay(state, data);
  });
  ASSERT_EQ(code_of(apply(start_cmd("a1", "alarm"), kT0)), Code::kOk);
  ASSERT_EQ(code_of(apply(signal_cmd("a1", "arm"), kT0)), Code::kOk);
  const auto first = only_timer(workflowpb::USER);
  ASSERT_EQ(code_of(apply(signal_cmd("a1", "arm"), kT0 + 500)), Code::kOk);  // restart
  const auto second = only_timer(workflowpb::USER);
  EXPECT_EQ(second.due_ms(), kT0 + 1500);
  EXPECT_EQ(code_of(apply(fire_cmd(first), kT0 + 1000)), Code::kOk);  // gone: no effect
  EXPECT_EQ(record("a1").state(), "init");
  ASSERT_EQ(code_of(apply(signal_cmd("a1", "disarm"), kT0 + 1200)), Code::kOk);
  EXPECT_TRUE(timers().empty());
  EXPECT_EQ(code_of(apply(fire_cmd(second), kT0 + 1500)), Code::kOk);
  EXPECT_EQ(record("a1").state(), "init");
  const auto kinds = history_kinds("a1");
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), "timer_started"), 2);
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), "timer_canceled"), 1);
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), "timer_fired"), 0);
}

// ---------------------------------------------------------------- activities: retries, timeouts

TEST_F(EngineTest, StaleAttemptReportIsIgnored) {
  add_order_type();
  ASSERT_EQ(code_of(apply(start_cmd("o1", "order"), kT0)), Code::kOk);
  const auto attempt1 = only_dispatchable();
  ASSERT_EQ(code_of(apply(report_cmd(attempt1, false, "unavailable"), kT0 + 1)), Code::kOk);
  const auto retry = only_timer(workflowpb::ACTIVITY_RETRY);
  ASSERT_EQ(code_of(apply(fire_cmd(retry), retry.due_ms())), Code::kOk);
  const auto attempt2 = only_dispatchable();
  EXPECT_EQ(attempt2.attempt, 2U);
  const auto before = record("o1");
  EXPECT_EQ(code_of(apply(report_cmd(attempt1, true, "late"), kT0 + 5000)), Code::kOk);
  EXPECT_EQ(code_of(apply(report_cmd(attempt1, false, "late"), kT0 + 5000)), Code::kOk);
  EXPECT_EQ(code_of(apply(heartbeat_cmd(attempt1), kT0 + 5000)), Code::kOk);
  auto wrong_run = attempt2;
  wrong_run.run_id = 7;
  EXPECT_EQ(code_of(apply(report_cmd(wrong_run, true), kT0 + 5000)), Code::kOk);
  EXPECT_EQ(record("o1").SerializeAsString(), before.SerializeAsString());
  ASSERT_EQ(code_of(apply(report_cmd(attempt2, true, "paid"), kT0 + 5001)), Code::kOk);
  EXPECT_EQ(record("o1").state(), "cooling");
  // A report for a finished activity is ignored as well.
  EXPECT_EQ(code_of(apply(report_cmd(attempt2, true, "again"), kT0 + 5002)), Code::kOk);
  const auto kinds = history_kinds("o1");
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), "activity_completed"), 1);
}

TEST_F(EngineTest, FailedAttemptIsRetriedWithJitteredBackoff) {
  add_order_type();
  options_.mutable_retry()->set_initial_interval_ms(400);
  ASSERT_EQ(code_of(apply(start_cmd("o1", "order"), kT0)), Code::kOk);
  std::int64_t now = kT0;
  for (std::uint32_t attempt = 1; attempt <= 4; ++attempt) {
    const auto ref = only_dispatchable();
    ASSERT_EQ(ref.attempt, attempt);
    now += 3;
    ASSERT_EQ(code_of(apply(report_cmd(ref, false, "unavailable"), now)), Code::kOk);
    auto act = Engine::read_activity(store_, ref);
    EXPECT_EQ((*act)->phase(), workflowpb::BACKOFF);
    EXPECT_TRUE(Engine::dispatchable_activities(store_, 10)->empty());
    const auto retry = only_timer(workflowpb::ACTIVITY_RETRY);
    const auto policy = (*act)->options().retry();
    const auto expected = jittered_delay_ms(policy, attempt, retry_seed("o1", 1, 1, attempt));
    EXPECT_EQ(retry.due_ms(), now + static_cast<std::int64_t>(expected));
    EXPECT_LE(expected, interval_ms(policy, attempt));
    now = retry.due_ms();
    ASSERT_EQ(code_of(apply(fire_cmd(retry), now)), Code::kOk);
  }
  EXPECT_EQ(only_dispatchable().attempt, 5U);
  auto h = Engine::read_history(store_, "o1", 1, 0, 100);
  int retries = 0;
  for (const auto& e : *h) {
    if (e.kind() == "activity_retry_scheduled") {
      ++retries;
      EXPECT_EQ(e.attempt(), static_cast<std::uint32_t>(retries));
      EXPECT_EQ(e.error_type(), "unavailable");
    }
  }
  EXPECT_EQ(retries, 4);
}

TEST_F(EngineTest, AttemptEventsNameTheNodeAndTermThatRanTheAttempt) {
  add_order_type();
  ASSERT_EQ(code_of(apply(start_cmd("o1", "order"), kT0)), Code::kOk);
  WorkflowCommand failed = report_cmd(only_dispatchable(), false, "unavailable");
  failed.mutable_report()->set_node_id(2);
  failed.mutable_report()->set_term(7);
  ASSERT_EQ(code_of(apply(failed, kT0 + 1)), Code::kOk);
  const auto retry = only_timer(workflowpb::ACTIVITY_RETRY);
  ASSERT_EQ(code_of(apply(fire_cmd(retry), retry.due_ms())), Code::kOk);
  WorkflowCommand completed = report_cmd(only_dispatchable(), true, "charged");
  completed.mutable_report()->set_node_id(3);
  completed.mutable_report()->set_term(8);
  ASSERT_EQ(code_of(apply(completed, retry.due_ms() + 1)), Code::kOk);
  auto h = Engine::read_history(store_, "o1", 1, 0, 100);
  ASSERT_TRUE(h.ok());
  int attempts = 0;
  for (const auto& e : *h) {
    if (e.kind() == "activity_retry_scheduled") {
      EXPECT_EQ(e.node_id(), 2U);
      EXPECT_EQ(e.term(), 7U);
      ++attempts;
    } else if (e.kind() == "activity_completed") {
      EXPECT_EQ(e.node_id(), 3U);
      EXPECT_EQ(e.term(), 8U);
      ++attempts;
    } else {
      // Events that are not an attempt's outcome (its scheduling, the timer) name no node.
      EXPECT_EQ(e.node_id(), 0U) << e.kind();
    }
  }
  EXPECT_EQ(attempts, 2);
}

// The failure's retry hint as a test report: error "unavailable", `retry_after_ms`, `details`.
WorkflowCommand hinted_failure(const ActivityRef& ref, std::uint64_t retry_after_ms,
                               std::string details = {}) {
  WorkflowCommand c = report_cmd(ref, false, "unavailable");
  c.mutable_report()->set_retry_after_ms(retry_after_ms);
  c.mutable_report()->set_details(std::move(details));
  return c;
}

TEST_F(EngineTest, RetryAfterHintHoldsTheNextAttemptBackWhenThePolicyHonoursHints) {
  add_order_type();
  options_.mutable_retry()->set_initial_interval_ms(100);
  options_.mutable_retry()->set_maximum_retry_after_ms(60'000);
  ASSERT_EQ(code_of(apply(start_cmd("o1", "order"), kT0)), Code::kOk);
  ASSERT_EQ(code_of(apply(hinted_failure(only_dispatchable(), 30'000, "who:apns"), kT0 + 5)),
            Code::kOk);
  const auto retry = only_timer(workflowpb::ACTIVITY_RETRY);
  EXPECT_EQ(retry.due_ms(), kT0 + 5 + 30'000);  // the jittered delay is at most 100 ms
  // Durable: the next attempt is refused before the hint has passed.
  EXPECT_EQ(code_of(apply(fire_cmd(retry), kT0 + 5 + 29'999)), Code::kFailedPrecondition);
  auto h = Engine::read_history(store_, "o1", 1, 0, 100);
  ASSERT_TRUE(h.ok());
  const auto& event = h->back();
  EXPECT_EQ(event.kind(), "activity_retry_scheduled");
  EXPECT_EQ(event.next_attempt_ms(), retry.due_ms());
  EXPECT_EQ(event.details(), "who:apns");
}

TEST_F(EngineTest, RetryAfterHintIsCappedByThePolicysMaximum) {
  add_order_type();
  options_.mutable_retry()->set_initial_interval_ms(100);
  options_.mutable_retry()->set_maximum_retry_after_ms(10'000);
  ASSERT_EQ(code_of(apply(start_cmd("o1", "order"), kT0)), Code::kOk);
  ASSERT_EQ(code_of(apply(hinted_failure(only_dispatchable(), 3'600'000), kT0)), Code::kOk);
  EXPECT_EQ(only_timer(workflowpb::ACTIVITY_RETRY).due_ms(), kT0 + 10'000);
}

TEST_F(EngineTest, RetryAfterHintIsIgnoredByAPolicyWithoutAMaximum) {
  add_order_type();
  options_.mutable_retry()->set_initial_interval_ms(100);
  ASSERT_EQ(code_of(apply(start_cmd("o1", "order"), kT0)), Code::kOk);
  const auto ref = only_dispatchable();
  ASSERT_EQ(code_of(apply(hinted_failure(ref, 30'000), kT0)), Code::kOk);
  auto act = Engine::read_activity(store_, ref);
  const auto expected = jittered_delay_ms((*act)->options().retry(), 1, retry_seed("o1", 1, 1, 1));
  EXPECT_EQ(only_timer(workflowpb::ACTIVITY_RETRY).due_ms(),
            kT0 + static_cast<std::int64_t>(expected));
}

TEST_F(EngineTest, AttemptDetailsAreKeptInTheAttemptsHistoryEvents) {
  add_order_type();
  options_.mutable_retry()->add_non_retryable_error_types("gone");
  ASSERT_EQ(code_of(apply(start_cmd("o1", "order"), kT0)), Code::kOk);
  WorkflowCommand ok = report_cmd(only_dispatchable(), true, "out");
  ok.mutable_report()->set_details("first");
  ASSERT_EQ(code_of(apply(ok, kT0 + 1)), Code::kOk);
  ASSERT_EQ(code_of(apply(fire_cmd(only_timer(workflowpb::USER)), kT0 + 1001)), Code::kOk);
  WorkflowCommand gone = report_cmd(only_dispatchable(), false, "gone");
  gone.mutable_report()->set_details("second");
  ASSERT_EQ(code_of(apply(gone, kT0 + 1002)), Code::kOk);
  std::map<std::string, std::string> details;
  auto h = Engine::read_history(store_, "o1", 1, 0, 100);
  ASSERT_TRUE(h.ok());
  for (const auto& e : *h) {
    if (!e.details().empty()) {
      details[e.kind()] = e.details();
    }
  }
  EXPECT_EQ(details, (std::map<std::string, std::string>{{"activity_completed", "first"},
                                                         {"activity_failed", "second"}}));
}

TEST_F(EngineTest, OversizeAttemptDetailsAreRefused) {
  add_order_type();
  ASSERT_EQ(code_of(apply(start_cmd("o1", "order"), kT0)), Code::kOk);
  WorkflowCommand c = report_cmd(only_dispatchable(), true);
  c.mutable_report()->set_details(std::string(kMaxAttemptDetailsBytes + 1, 'x'));
  EXPECT_EQ(code_of(apply(c, kT0 + 1)), Code::kInvalidArgument);
}

TEST_F(EngineTest, NonRetryableErrorTypeStopsRetries) {
  add_order_type();
  options_.mutable_retry()->add_non_retryable_error_types("BadDeviceToken");
  ASSERT_EQ(code_of(apply(start_cmd("o1", "order"), kT0)), Code::kOk);
  ASSERT_EQ(code_of(apply(report_cmd(only_dispatchable(), false, "BadDeviceToken"), kT0 + 1)),
            Code::kOk);
  const auto rec = record("o1");
  EXPECT_EQ(rec.status(), workflowpb::FAILED);
  EXPECT_EQ(rec.error_type(), "BadDeviceToken");
  EXPECT_TRUE(timers().empty());
  EXPECT_TRUE(scan_sub(keys::kActivitySub).empty());
}

TEST_F(EngineTest, MaximumAttemptsCountsAttempts) {
  add_order_type();
  options_.mutable_retry()->set_maximum_attempts(3);
  ASSERT_EQ(code_of(apply(start_cmd("o1", "order"), kT0)), Code::kOk);
  std::int64_t now = kT0;
  for (int attempt = 1; attempt <= 2; ++attempt) {
    ASSERT_EQ(code_of(apply(report_cmd(only_dispatchable(), false, "e"), ++now)), Code::kOk);
    const auto retry = only_timer(workflowpb::ACTIVITY_RETRY);
    now = retry.due_ms();
    ASSERT_EQ(code_of(apply(fire_cmd(retry), now)), Code::kOk);
  }
  const auto third = only_dispatchable();
  EXPECT_EQ(third.attempt, 3U);
  ASSERT_EQ(code_of(apply(report_cmd(third, false, "e"), ++now)), Code::kOk);
  EXPECT_EQ(record("o1").status(), workflowpb::FAILED);
  auto h = Engine::read_history(store_, "o1", 1, 0, 100);
  const auto failed = std::find_if(h->begin(), h->end(),
                                   [](const auto& e) { return e.kind() == "activity_failed"; });
  ASSERT_NE(failed, h->end());
  EXPECT_EQ(failed->attempt(), 3U);
}

TEST_F(EngineTest, StartToCloseTimeoutFailsTheAttempt) {
  add_order_type();
  options_.set_start_to_close_timeout_ms(5000);
  ASSERT_EQ(code_of(apply(start_cmd("o1", "order"), kT0)), Code::kOk);
  const auto attempt1 = only_dispatchable();
  const auto timeout = only_timer(workflowpb::START_TO_CLOSE);
  EXPECT_EQ(timeout.due_ms(), kT0 + 5000);
  EXPECT_EQ(timeout.attempt(), 1U);
  ASSERT_EQ(code_of(apply(fire_cmd(timeout), kT0 + 5000)), Code::kOk);
  auto act = Engine::read_activity(store_, attempt1);
  EXPECT_EQ((*act)->phase(), workflowpb::BACKOFF);
  EXPECT_EQ((*act)->last_error_type(), "timeout.start_to_close");
  const auto retry = only_timer(workflowpb::ACTIVITY_RETRY);
  ASSERT_EQ(code_of(apply(fire_cmd(retry), retry.due_ms())), Code::kOk);
  EXPECT_EQ(only_dispatchable().attempt, 2U);
  EXPECT_EQ(only_timer(workflowpb::START_TO_CLOSE).due_ms(), retry.due_ms() + 5000);
}

TEST_F(EngineTest, HeartbeatTimeoutFailsTheAttempt) {
  add_order_type();
  options_.set_heartbeat_timeout_ms(2000);
  options_.mutable_retry()->add_non_retryable_error_types("timeout.heartbeat");
  ASSERT_EQ(code_of(apply(start_cmd("o1", "order"), kT0)), Code::kOk);
  const auto hb = only_timer(workflowpb::HEARTBEAT);
  EXPECT_EQ(hb.due_ms(), kT0 + 2000);
  ASSERT_EQ(code_of(apply(fire_cmd(hb), kT0 + 2000)), Code::kOk);
  const auto rec = record("o1");
  EXPECT_EQ(rec.status(), workflowpb::FAILED);
  EXPECT_EQ(rec.error_type(), "timeout.heartbeat");
}

TEST_F(EngineTest, HeartbeatsPostponeTheHeartbeatTimeout) {
  add_order_type();
  options_.set_heartbeat_timeout_ms(2000);
  ASSERT_EQ(code_of(apply(start_cmd("o1", "order"), kT0)), Code::kOk);
  const auto ref = only_dispatchable();
  const auto original = only_timer(workflowpb::HEARTBEAT);
  const auto before = record("o1");
  ASSERT_EQ(code_of(apply(heartbeat_cmd(ref), kT0 + 1500)), Code::kOk);
  ASSERT_EQ(code_of(apply(heartbeat_cmd(ref), kT0 + 3000)), Code::kOk);
  const auto moved = only_timer(workflowpb::HEARTBEAT);
  EXPECT_EQ(moved.due_ms(), kT0 + 5000);
  EXPECT_EQ(moved.timer_id(), original.timer_id());
  EXPECT_EQ((*Engine::read_activity(store_, ref))->last_heartbeat_ms(), kT0 + 3000);
  // The original due time passed, but that timer is gone: firing it has no effect.
  EXPECT_EQ(code_of(apply(fire_cmd(original), kT0 + 4000)), Code::kOk);
  EXPECT_EQ(only_dispatchable().attempt, 1U);
  EXPECT_EQ(record("o1").SerializeAsString(), before.SerializeAsString());  // heartbeats are cheap
  ASSERT_EQ(code_of(apply(fire_cmd(moved), kT0 + 5000)), Code::kOk);
  auto act = Engine::read_activity(store_, ref);
  EXPECT_EQ((*act)->last_error_type(), "timeout.heartbeat");
  EXPECT_EQ((*act)->phase(), workflowpb::BACKOFF);
}

TEST_F(EngineTest, ScheduleToCloseTimeoutFailsTheActivity) {
  add_order_type();
  options_.set_schedule_to_close_timeout_ms(10'000);
  options_.mutable_retry()->set_initial_interval_ms(1000);
  options_.mutable_retry()->set_backoff_coefficient(1.0);
  ASSERT_EQ(code_of(apply(start_cmd("o1", "order"), kT0)), Code::kOk);
  const auto deadline = only_timer(workflowpb::SCHEDULE_TO_CLOSE);
  EXPECT_EQ(deadline.due_ms(), kT0 + 10'000);
  ASSERT_EQ(code_of(apply(report_cmd(only_dispatchable(), false, "e"), kT0 + 1)), Code::kOk);
  ASSERT_EQ(code_of(apply(fire_cmd(deadline), kT0 + 10'000)), Code::kOk);
  const auto rec = record("o1");
  EXPECT_EQ(rec.status(), workflowpb::FAILED);
  EXPECT_EQ(rec.error_type(), "timeout.schedule_to_close");
  EXPECT_TRUE(timers().empty());  // the retry timer went with the activity
}

TEST_F(EngineTest, RetryThatWouldPassScheduleToCloseFailsNow) {
  add_order_type();
  options_.set_schedule_to_close_timeout_ms(500);
  options_.mutable_retry()->set_initial_interval_ms(10'000);
  options_.mutable_retry()->set_backoff_coefficient(1.0);
  ASSERT_EQ(code_of(apply(start_cmd("o1", "order"), kT0)), Code::kOk);
  // A retry would have to begin within 1 ms of the failure: the draw from [0, 10 s] for this
  // seed does not, so the attempt's own error fails the activity at once.
  ASSERT_EQ(code_of(apply(report_cmd(only_dispatchable(), false, "e"), kT0 + 499)), Code::kOk);
  const auto rec = record("o1");
  EXPECT_EQ(rec.status(), workflowpb::FAILED);
  EXPECT_EQ(rec.error_type(), "e");
}

// A failed report whose attempt never reached the outside service (e.g. refused by an open
// circuit breaker).
WorkflowCommand refused_cmd(const ActivityRef& ref, std::uint64_t retry_after_ms) {
  WorkflowCommand c = report_cmd(ref, false, "unavailable");
  c.mutable_report()->set_retry_after_ms(retry_after_ms);
  c.mutable_report()->set_not_dispatched(true);
  return c;
}

TEST_F(EngineTest, RefusedAttemptsDoNotUseUpTheScheduleToCloseWindow) {
  add_order_type();
  options_.set_schedule_to_close_timeout_ms(10'000);
  options_.set_maximum_refused_wait_ms(3'600'000);
  options_.mutable_retry()->set_initial_interval_ms(1000);
  options_.mutable_retry()->set_backoff_coefficient(1.0);
  options_.mutable_retry()->set_maximum_retry_after_ms(60'000);
  ASSERT_EQ(code_of(apply(start_cmd("o1", "order"), kT0)), Code::kOk);
  const auto original = only_timer(workflowpb::SCHEDULE_TO_CLOSE);
  // Refused for a minute, five times over: five times the window, and the activity still waits.
  std::int64_t now = kT0;
  for (int refusal = 1; refusal <= 5; ++refusal) {
    ASSERT_EQ(code_of(apply(refused_cmd(only_dispatchable(), 10'000), now + 1)), Code::kOk);
    const auto retry = only_timer(workflowpb::ACTIVITY_RETRY);
    EXPECT_GE(retry.due_ms(), now + 1 + 10'000) << "the hint holds the retry back";
    const auto deadline = only_timer(workflowpb::SCHEDULE_TO_CLOSE);
    EXPECT_EQ(deadline.timer_id(), original.timer_id()) << "the deadline moves, it is not added";
    EXPECT_EQ(deadline.due_ms(), retry.due_ms() + 10'000)
        << "every span of a refused attempt is added to the window";
    now = retry.due_ms();
    ASSERT_EQ(code_of(apply(fire_cmd(retry), now)), Code::kOk);
  }
  EXPECT_GT(now, kT0 + 40'000);
  EXPECT_EQ(record("o1").status(), workflowpb::RUNNING);
  // The original deadline passed while waiting; firing what was its timer changes nothing.
  EXPECT_EQ(code_of(apply(fire_cmd(original), now)), Code::kOk);
  const auto sixth = only_dispatchable();
  EXPECT_EQ(sixth.attempt, 6U);
  EXPECT_EQ((*Engine::read_activity(store_, sixth))->refused_in_a_row(), 5U);
  const auto kinds = history_kinds("o1");
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), "activity_retry_scheduled"), 1)
      << "a streak of refusals is one history event";
  ASSERT_EQ(code_of(apply(report_cmd(sixth, true, "ok"), now + 1)), Code::kOk);
  EXPECT_EQ(record("o1").state(), "cooling");
  EXPECT_FALSE(Engine::read_activity(store_, sixth)->has_value()) << "completed and gone";
}

TEST_F(EngineTest, RefusedWaitsExtendTheWindowOnlyUpToTheirBound) {
  add_order_type();
  options_.set_schedule_to_close_timeout_ms(10'000);
  options_.set_maximum_refused_wait_ms(15'000);
  options_.mutable_retry()->set_initial_interval_ms(1000);
  options_.mutable_retry()->set_backoff_coefficient(1.0);
  options_.mutable_retry()->set_maximum_retry_after_ms(60'000);
  ASSERT_EQ(code_of(apply(start_cmd("o1", "order"), kT0)), Code::kOk);
  std::int64_t now = kT0;
  for (int refusal = 1; refusal <= 10 && record("o1").status() == workflowpb::RUNNING; ++refusal) {
    ASSERT_EQ(code_of(apply(refused_cmd(only_dispatchable(), 8'000), now + 1)), Code::kOk);
    if (record("o1").status() != workflowpb::RUNNING) break;
    const auto deadline = only_timer(workflowpb::SCHEDULE_TO_CLOSE);
    EXPECT_LE(deadline.due_ms(), kT0 + 10'000 + 15'000);
    const auto retry = only_timer(workflowpb::ACTIVITY_RETRY);
    now = retry.due_ms();
    ASSERT_EQ(code_of(apply(fire_cmd(retry), now)), Code::kOk);
  }
  const auto rec = record("o1");
  EXPECT_EQ(rec.status(), workflowpb::FAILED) << "the bound ends the wait";
  EXPECT_EQ(rec.error_type(), "unavailable");
  EXPECT_LE(now, kT0 + 10'000 + 15'000);
}

TEST_F(EngineTest, WithoutARefusedWaitBoundRefusalsUseUpTheWindow) {
  add_order_type();
  options_.set_schedule_to_close_timeout_ms(10'000);
  options_.mutable_retry()->set_initial_interval_ms(1000);
  options_.mutable_retry()->set_backoff_coefficient(1.0);
  ASSERT_EQ(code_of(apply(start_cmd("o1", "order"), kT0)), Code::kOk);
  const ActivityRef first = only_dispatchable();
  ASSERT_EQ(code_of(apply(refused_cmd(first, 0), kT0 + 1)), Code::kOk);
  EXPECT_EQ(only_timer(workflowpb::SCHEDULE_TO_CLOSE).due_ms(), kT0 + 10'000);
  EXPECT_EQ((*Engine::read_activity(store_, first))->refused_wait_ms(), 0);
  EXPECT_EQ((*Engine::read_activity(store_, first))->refused_in_a_row(), 0U);
}

// ---------------------------------------------------------------- cancel, close, continue

TEST_F(EngineTest, CancelDeliversCancelRequested) {
  add_order_type();
  ASSERT_EQ(code_of(apply(start_cmd("o1", "order"), kT0)), Code::kOk);
  auto r = apply(cancel_cmd("o1", "user asked"), kT0 + 1);
  ASSERT_EQ(code_of(r), Code::kOk);
  const auto rec = record("o1");
  EXPECT_TRUE(rec.cancel_requested());
  EXPECT_EQ(rec.status(), workflowpb::FAILED);  // the type chose to fail after escalating
  EXPECT_EQ(rec.error_type(), "canceled_by_user");
  EXPECT_EQ(rec.error_message(), "user asked");
  const auto kinds = history_kinds("o1");
  EXPECT_EQ(std::vector<std::string>(kinds.end() - 4, kinds.end()),
            (std::vector<std::string>{"cancel_requested", "state_changed", "escalated", "failed"}));
  EXPECT_TRUE(timers().empty());
  EXPECT_TRUE(Engine::dispatchable_activities(store_, 10)->empty());
  EXPECT_EQ(code_of(apply(cancel_cmd("o1"), kT0 + 2)), Code::kNotFound);
}

TEST_F(EngineTest, CancelIgnoredByTheTypeCancelsTheRun) {
  add_type("deaf", [](std::string_view state, std::string_view data, const Event& e) {
    if (e.kind == Event::Kind::kStarted) {
      return stay(state, data, {Action::start_timer("t", 60'000)});
    }
    return stay(state, data);
  });
  ASSERT_EQ(code_of(apply(start_cmd("d1", "deaf"), kT0)), Code::kOk);
  ASSERT_EQ(code_of(apply(cancel_cmd("d1", "enough"), kT0 + 1)), Code::kOk);
  EXPECT_EQ(record("d1").status(), workflowpb::CANCELED);
  EXPECT_EQ(history_kinds("d1").back(), "canceled");
  EXPECT_TRUE(timers().empty());
}

TEST_F(EngineTest, ContinueAsNewStartsFreshRun) {
  add_type("counter", [](std::string_view state, std::string_view data, const Event& e) {
    if (e.kind == Event::Kind::kStarted) {
      return stay("counting", e.payload, {Action::start_timer("tick", 1000)});
    }
    if (e.kind == Event::Kind::kSignal) {
      return stay(state, data, {Action::continue_as_new(std::string(data) + "+")});
    }
    return stay(state, data);
  });
  ASSERT_EQ(code_of(apply(start_cmd("c1", "counter", "n"), kT0)), Code::kOk);
  const auto old_timer = only_timer(workflowpb::USER);
  ASSERT_EQ(code_of(apply(signal_cmd("c1", "roll"), kT0 + 10)), Code::kOk);
  const auto rec = record("c1");
  EXPECT_EQ(rec.run_id(), 2U);
  EXPECT_EQ(rec.status(), workflowpb::RUNNING);
  EXPECT_EQ(rec.data(), "n+");
  EXPECT_EQ(rec.state(), "counting");
  EXPECT_EQ(history_kinds("c1", 1).back(), "continued_as_new");
  auto fresh = Engine::read_history(store_, "c1", 2, 0, 100);
  ASSERT_TRUE(fresh.ok());
  ASSERT_FALSE(fresh->empty());
  EXPECT_EQ(fresh->front().kind(), "started");
  EXPECT_EQ(fresh->front().payload(), "n+");
  EXPECT_EQ(fresh->front().seq(), 1U);
  EXPECT_EQ(rec.history_length(), fresh->size());
  // The old run's timer is gone; the new run has its own.
  const auto new_timer = only_timer(workflowpb::USER);
  EXPECT_EQ(new_timer.run_id(), 2U);
  EXPECT_EQ(code_of(apply(fire_cmd(old_timer), kT0 + 5000)), Code::kOk);
  EXPECT_EQ(record("c1").run_id(), 2U);
}

TEST_F(EngineTest, EndlessContinueAsNewIsBounded) {
  add_type("loop", [](std::string_view state, std::string_view data, const Event& e) {
    return stay(state, data, {Action::continue_as_new("again")});
  });
  ASSERT_EQ(code_of(apply(start_cmd("l1", "loop"), kT0)), Code::kOk);
  const auto rec = record("l1");
  EXPECT_EQ(rec.status(), workflowpb::FAILED);
  EXPECT_EQ(rec.error_type(), "invalid_decision");
  EXPECT_GT(rec.run_id(), 1U);
}

TEST_F(EngineTest, HistoryLimitFailsWithContinueAsNewHint) {
  check_invariants_ = false;  // a full scan per command would make this quadratic
  add_order_type();
  ASSERT_EQ(code_of(apply(start_cmd("o1", "order"), kT0)), Code::kOk);
  // Each signal adds "signaled" and "noted"; apply them in batches of 100 commands.
  std::int64_t now = kT0;
  while (record("o1").status() == workflowpb::RUNNING) {
    rsm::ApplyBatch batch(&store_);
    for (int i = 0; i < 100; ++i) {
      const auto r = apply_into(batch, signal_cmd("o1", "note"), ++now);
      ASSERT_TRUE(code_of(r) == Code::kOk || code_of(r) == Code::kNotFound);
    }
    ASSERT_TRUE(store_.write(batch.writes(), false).ok());
    ASSERT_LT(now, kT0 + 20'000);
  }
  const auto rec = record("o1");
  EXPECT_EQ(rec.status(), workflowpb::FAILED);
  EXPECT_EQ(rec.error_type(), "history_limit");
  EXPECT_NE(rec.error_message().find("continue-as-new"), std::string::npos);
  EXPECT_EQ(rec.history_length(), kMaxHistoryEvents);
  auto last = Engine::read_history(store_, "o1", 1, kMaxHistoryEvents - 1, 10);
  ASSERT_EQ(last->size(), 1U);
  EXPECT_EQ(last->front().kind(), "failed");
  EXPECT_TRUE(Engine::dispatchable_activities(store_, 10)->empty());
  check_invariants();
}

TEST_F(EngineTest, InvalidDecisionFailsTheRun) {
  add_type("greedy", [](std::string_view state, std::string_view data, const Event& e) {
    std::vector<Action> actions;
    for (std::size_t i = 0; i <= kMaxActionsPerDecision; ++i) {
      actions.push_back(Action::record("r"));
    }
    return stay(state, data, std::move(actions));
  });
  ASSERT_EQ(code_of(apply(start_cmd("g1", "greedy"), kT0)), Code::kOk);
  const auto rec = record("g1");
  EXPECT_EQ(rec.status(), workflowpb::FAILED);
  EXPECT_EQ(rec.error_type(), "invalid_decision");
  EXPECT_NE(rec.error_message().find("actions"), std::string::npos);
}

// ---------------------------------------------------------------- visibility, corruption

TEST_F(EngineTest, ListPagesInStableOrder) {
  add_order_type();
  for (int i = 0; i < 7; ++i) {
    ASSERT_EQ(code_of(apply(start_cmd("o" + std::to_string(i), "order"), kT0 + 7 - i)), Code::kOk);
  }
  ASSERT_EQ(code_of(apply(cancel_cmd("o3"), kT0 + 100)), Code::kOk);
  ListFilter filter{.type = "order", .state = "charging", .limit = 4, .page_token = {}};
  auto page1 = Engine::list(store_, filter);
  ASSERT_TRUE(page1.ok());
  ASSERT_EQ(page1->entries.size(), 4U);
  ASSERT_FALSE(page1->next_page_token.empty());
  filter.page_token = page1->next_page_token;
  auto page2 = Engine::list(store_, filter);
  ASSERT_TRUE(page2.ok());
  ASSERT_EQ(page2->entries.size(), 2U);
  EXPECT_TRUE(page2->next_page_token.empty());
  std::vector<std::string> ids;
  for (const auto* page : {&*page1, &*page2}) {
    for (const auto& e : page->entries) {
      ids.push_back(e.workflow_id);
      EXPECT_EQ(e.status, workflowpb::RUNNING);
    }
  }
  EXPECT_EQ(ids, (std::vector<std::string>{"o6", "o5", "o4", "o2", "o1", "o0"}));  // by time
  auto all = Engine::list(store_,
                          ListFilter{.type = "order", .state = {}, .limit = 100, .page_token = {}});
  ASSERT_EQ(all->entries.size(), 7U);
  EXPECT_EQ(all->entries.front().state, "charging");
  EXPECT_EQ(all->entries.back().state, "compensating");
  EXPECT_EQ(all->entries.back().status, workflowpb::FAILED);
  filter.page_token = "zz";
  EXPECT_EQ(Engine::list(store_, filter).status().code(), Code::kInvalidArgument);
}

TEST_F(EngineTest, TheVisibilityEntryMovesOnlyWhenItsStateChanges) {
  add_order_type();
  ASSERT_EQ(code_of(apply(start_cmd("o1", "order"), kT0)), Code::kOk);
  const auto first = scan_sub(keys::kVisibilitySub);
  ASSERT_EQ(first.size(), 1U);
  // A signal the type only notes: the record changes, its visibility entry is not written.
  rsm::ApplyBatch batch(&store_);
  ASSERT_EQ(code_of(apply_into(batch, signal_cmd("o1", "note", "x"), kT0 + 5)), Code::kOk);
  for (const auto& op : batch.writes().ops()) {
    EXPECT_FALSE(op.key.starts_with(keys::sub_prefix(keys::kVisibilitySub)));
  }
  ASSERT_TRUE(store_.write(batch.writes(), false).ok());
  EXPECT_EQ(scan_sub(keys::kVisibilitySub), first);
  EXPECT_EQ(record("o1").updated_ms(), kT0 + 5);
  EXPECT_EQ(record("o1").state_since_ms(), kT0);
  // A cancel moves it to the new state, stamped with the time of the change.
  ASSERT_EQ(code_of(apply(cancel_cmd("o1", "r"), kT0 + 9)), Code::kOk);
  const auto moved = scan_sub(keys::kVisibilitySub);
  ASSERT_EQ(moved.size(), 1U);
  EXPECT_NE(moved.front().first, first.front().first);
  auto page =
      Engine::list(store_, ListFilter{.type = "order", .state = {}, .limit = 10, .page_token = {}});
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->entries.size(), 1U);
  EXPECT_EQ(page->entries.front().state, record("o1").state());
  EXPECT_EQ(page->entries.front().state_since_ms, kT0 + 9);
}

TEST_F(EngineTest, VisibilityAlwaysMatchesRecord) {
  add_order_type();
  options_.set_start_to_close_timeout_ms(3000);
  options_.set_heartbeat_timeout_ms(1000);
  options_.mutable_retry()->set_maximum_attempts(3);
  constexpr std::uint64_t kIds = 30;
  Rng rng(20260611);
  std::int64_t now = kT0;
  std::map<Code, int> codes;
  int fired = 0;
  for (int step = 0; step < 1500; ++step) {
    now += rng.range(0, 700);
    const std::string id = "o" + std::to_string(rng.uniform(kIds));
    auto dispatchable = *Engine::dispatchable_activities(store_, 100);
    auto due = *Engine::due_timers(store_, now, 100);
    switch (rng.uniform(7)) {
      case 0: codes[code_of(apply(start_cmd(id, "order"), now))]++; break;
      case 1: codes[code_of(apply(signal_cmd(id, "note", "x"), now))]++; break;
      case 2:
        if (rng.chance(0.2)) {
          (void)apply(cancel_cmd(id, "r"), now);
        }
        break;
      case 3:
      case 4:
        if (!dispatchable.empty()) {
          const auto& a = dispatchable[rng.uniform(dispatchable.size())];
          const ActivityRef ref{a.workflow_id(), a.run_id(), a.activity_id(), a.attempt()};
          const bool ok = rng.chance(0.5);
          codes[code_of(apply(report_cmd(ref, ok, ok ? "out" : "flaky"), now))]++;
          codes[code_of(apply(heartbeat_cmd(ref), now))]++;
        }
        break;
      default:
        if (!due.empty()) {
          codes[code_of(apply(fire_cmd(due[rng.uniform(due.size())]), now))]++;
          ++fired;
        }
        break;
    }
    ASSERT_FALSE(HasFailure()) << "after step " << step;
  }
  // The sequence exercised the engine: runs closed, timers fired, commands were refused.
  EXPECT_GT(fired, 50);
  EXPECT_GT(codes[Code::kOk], 300);
  EXPECT_GT(codes[Code::kNotFound], 10);
  int closed = 0;
  for (std::uint64_t i = 0; i < kIds; ++i) {
    auto r = Engine::read_workflow(store_, "o" + std::to_string(i));
    closed += r.ok() && r->has_value() && (*r)->status() != workflowpb::RUNNING ? 1 : 0;
  }
  EXPECT_GE(closed, 10);
}

TEST_F(EngineTest, CorruptRecordIsDetected) {
  add_order_type();
  ASSERT_EQ(code_of(apply(start_cmd("o1", "order"), kT0)), Code::kOk);
  const auto ref = only_dispatchable();
  ASSERT_TRUE(store_.corrupt(storage::Space::kState, keys::activity_key("o1", 1, 1)));
  EXPECT_EQ(Engine::read_activity(store_, ref).status().code(), Code::kCorruption);
  rsm::ApplyBatch batch(&store_);
  EXPECT_EQ(code_of(apply_into(batch, report_cmd(ref, true), kT0 + 1)), Code::kCorruption);
  ASSERT_TRUE(store_.corrupt(storage::Space::kState, keys::record_key("o1")));
  EXPECT_EQ(Engine::read_workflow(store_, "o1").status().code(), Code::kCorruption);
  rsm::ApplyBatch batch2(&store_);
  EXPECT_EQ(code_of(apply_into(batch2, signal_cmd("o1", "note"), kT0 + 2)), Code::kCorruption);
  EXPECT_TRUE(batch2.writes().empty());
  EXPECT_EQ(
      Engine::list(store_, ListFilter{.type = "order", .state = {}, .limit = 10, .page_token = {}})
          .status()
          .code(),
      Code::kOk);
}

TEST_F(EngineTest, MalformedCommandsAreRefused) {
  rsm::ApplyBatch batch(&store_);
  rsmpb::Command c;
  c.mutable_module()->set_name(kModuleName);
  c.mutable_module()->set_payload("\xff\xff\xff");
  EXPECT_EQ(code_of(engine_.apply(1, c, batch)), Code::kInvalidArgument);
  c.mutable_module()->set_payload("");
  EXPECT_EQ(code_of(engine_.apply(2, c, batch)), Code::kInvalidArgument);
  EXPECT_TRUE(batch.writes().empty());
}

// ---- Retention ----

WorkflowCommand retention_cmd(std::int64_t closed_retention_ms) {
  WorkflowCommand c;
  c.mutable_set_retention()->mutable_settings()->set_closed_retention_ms(closed_retention_ms);
  return c;
}

WorkflowCommand purge_cmd() {
  WorkflowCommand c;
  c.mutable_purge_closed();
  return c;
}

class RetentionTest : public EngineTest {
 protected:
  static constexpr std::int64_t kRetentionMs = 60'000;

  void SetUp() override {
    // A type that waits for a signal "stop" (recording "noted" for every other) and completes.
    add_type("waiter", [](std::string_view state, std::string_view data, const Event& e) {
      if (e.kind == Event::Kind::kSignal && e.name == "stop") {
        return stay("stopped", data, {Action::complete("done")});
      }
      if (e.kind == Event::Kind::kSignal) {
        return stay("waiting", data, {Action::record("noted", e.payload)});
      }
      if (e.kind == Event::Kind::kStarted) {
        return stay("waiting", data);
      }
      return stay(state, data);
    });
    ASSERT_EQ(code_of(apply(retention_cmd(kRetentionMs), kT0)), Code::kOk);
  }

  // Starts `id`, gives it `notes` extra signals and completes it at `at_ms`.
  void run_to_completion(const std::string& id, std::int64_t at_ms, int notes = 0) {
    ASSERT_EQ(code_of(apply(start_cmd(id, "waiter"), at_ms)), Code::kOk);
    for (int i = 0; i < notes; ++i) {
      ASSERT_EQ(code_of(apply(signal_cmd(id, "note", "n"), at_ms)), Code::kOk);
    }
    ASSERT_EQ(code_of(apply(signal_cmd(id, "stop"), at_ms)), Code::kOk);
    ASSERT_EQ(record(id).status(), workflowpb::COMPLETED);
  }

  std::optional<workflowpb::WorkflowSummary> summary(std::string_view id) {
    auto s = Engine::read_summary(store_, id);
    EXPECT_TRUE(s.ok());
    return s.ok() ? *s : std::nullopt;
  }

  bool exists(std::string_view id) {
    auto r = Engine::read_workflow(store_, id);
    EXPECT_TRUE(r.ok());
    return r.ok() && r->has_value();
  }
};

TEST_F(RetentionTest, AClosedRunIsPurgedOnlyAfterItsRetentionAndLeavesASummary) {
  run_to_completion("w1", kT0 + 10);
  ASSERT_EQ(code_of(apply(purge_cmd(), kT0 + 10 + kRetentionMs - 1)), Code::kOk);
  EXPECT_TRUE(exists("w1"));
  EXPECT_FALSE(summary("w1").has_value());
  ASSERT_EQ(Engine::next_purge_due_ms(store_)->value_or(0), kT0 + 10 + kRetentionMs);

  ASSERT_EQ(code_of(apply(purge_cmd(), kT0 + 10 + kRetentionMs)), Code::kOk);
  EXPECT_FALSE(exists("w1"));
  EXPECT_TRUE(history_kinds("w1").empty());
  EXPECT_TRUE(scan_sub(keys::kVisibilitySub).empty());
  EXPECT_TRUE(scan_sub(keys::kPurgeEntrySub).empty());
  EXPECT_FALSE(Engine::next_purge_due_ms(store_)->has_value());
  const auto s = summary("w1");
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->type(), "waiter");
  EXPECT_EQ(s->status(), workflowpb::COMPLETED);
  EXPECT_EQ(s->state(), "stopped");
  EXPECT_EQ(s->run_id(), 1U);
  EXPECT_EQ(s->closed_ms(), kT0 + 10);
  std::vector<std::string> kinds;
  for (const auto& m : s->milestones()) kinds.push_back(m.kind());
  EXPECT_EQ(kinds,
            (std::vector<std::string>{"started", "state_changed", "state_changed", "completed"}));
}

TEST_F(RetentionTest, ALongHistoryIsPurgedOverSeveralCommandsWithBoundedWork) {
  constexpr int kNotes = 200;  // two events each, in one chunk: "signaled" and "noted"
  run_to_completion("long", kT0, kNotes);
  const std::size_t chunks = scan_sub(keys::kHistorySub).size();
  ASSERT_GT(chunks, 2 * kMaxPurgedHistoryChunksPerCommand);
  std::int64_t now = kT0 + kRetentionMs;
  ASSERT_EQ(code_of(apply(purge_cmd(), now)), Code::kOk);
  // The record goes at once; the history trails, at most the budget per command.
  EXPECT_FALSE(exists("long"));
  EXPECT_EQ(scan_sub(keys::kHistorySub).size(), chunks - kMaxPurgedHistoryChunksPerCommand);
  int commands = 1;
  while (!scan_sub(keys::kHistorySub).empty()) {
    ASSERT_EQ(code_of(apply(purge_cmd(), ++now)), Code::kOk);
    ASSERT_LE(++commands, 10);
  }
  EXPECT_EQ(static_cast<std::size_t>(commands),
            (chunks + kMaxPurgedHistoryChunksPerCommand - 1) / kMaxPurgedHistoryChunksPerCommand);
  const auto s = summary("long");
  ASSERT_TRUE(s.has_value());
  // The "noted" records are milestones: the summary keeps the first ones and says so.
  EXPECT_EQ(static_cast<std::size_t>(s->milestones_size()), kMaxSummaryMilestones);
  EXPECT_TRUE(s->milestones_truncated());
  EXPECT_FALSE(Engine::next_purge_due_ms(store_)->has_value());
}

TEST_F(RetentionTest, ClosingARunPurgesTheDueOnesWithoutAPurgeCommand) {
  run_to_completion("old", kT0);
  run_to_completion("new", kT0 + kRetentionMs + 5);
  EXPECT_FALSE(exists("old"));
  EXPECT_TRUE(summary("old").has_value());
  EXPECT_TRUE(exists("new"));
}

TEST_F(RetentionTest, AStartAfterThePurgeBeginsAfterThePurgedRunSoNoKeyRepeats) {
  run_to_completion("again", kT0);
  ASSERT_EQ(code_of(apply(purge_cmd(), kT0 + kRetentionMs)), Code::kOk);
  ASSERT_FALSE(exists("again"));
  ASSERT_EQ(code_of(apply(start_cmd("again", "waiter"), kT0 + kRetentionMs + 1)), Code::kOk);
  EXPECT_EQ(record("again").run_id(), 2U);
  EXPECT_EQ(record("again").status(), workflowpb::RUNNING);
}

TEST_F(RetentionTest, AnOpenWorkflowIsNeverPurged) {
  ASSERT_EQ(code_of(apply(start_cmd("open", "waiter"), kT0)), Code::kOk);
  ASSERT_EQ(code_of(apply(purge_cmd(), kT0 + 100 * kRetentionMs)), Code::kOk);
  EXPECT_TRUE(exists("open"));
  EXPECT_EQ(history_kinds("open").size(), record("open").history_length());
}

TEST_F(RetentionTest, AnOlderRunOfAContinuedWorkflowLosesOnlyItsHistory) {
  add_type("roller", [](std::string_view state, std::string_view data, const Event& e) {
    if (e.kind == Event::Kind::kSignal) {
      return stay(state, data, {Action::continue_as_new("next")});
    }
    return stay("rolling", data);
  });
  ASSERT_EQ(code_of(apply(start_cmd("r1", "roller"), kT0)), Code::kOk);
  ASSERT_EQ(code_of(apply(signal_cmd("r1", "roll"), kT0 + 1)), Code::kOk);
  ASSERT_EQ(code_of(apply(purge_cmd(), kT0 + 1 + kRetentionMs)), Code::kOk);
  EXPECT_TRUE(history_kinds("r1", 1).empty());
  EXPECT_EQ(record("r1").run_id(), 2U);
  EXPECT_EQ(record("r1").status(), workflowpb::RUNNING);
  EXPECT_FALSE(history_kinds("r1", 2).empty());
  EXPECT_FALSE(summary("r1").has_value());
}

TEST_F(RetentionTest, ASummaryIsDeletedItsRetentionAfterThePurgeAndTheIdStartsOver) {
  constexpr std::int64_t kSummaryMs = 30'000;
  WorkflowCommand set = retention_cmd(kRetentionMs);
  set.mutable_set_retention()->mutable_settings()->set_summary_retention_ms(kSummaryMs);
  ASSERT_EQ(code_of(apply(set, kT0)), Code::kOk);
  run_to_completion("s1", kT0 + 10);
  run_to_completion("s2", kT0 + 20);
  const std::int64_t purged_at = kT0 + 20 + kRetentionMs;
  ASSERT_EQ(code_of(apply(purge_cmd(), purged_at)), Code::kOk);
  ASSERT_TRUE(summary("s1").has_value());
  ASSERT_TRUE(summary("s2").has_value());
  // The purged runs' entries wait for their summaries' expiry, which is the next work due.
  EXPECT_EQ(scan_sub(keys::kPurgeEntrySub).size(), 2U);
  EXPECT_EQ(Engine::next_purge_due_ms(store_)->value_or(0), kT0 + 10 + kRetentionMs + kSummaryMs);

  ASSERT_EQ(code_of(apply(purge_cmd(), kT0 + 10 + kRetentionMs + kSummaryMs)), Code::kOk);
  EXPECT_FALSE(summary("s1").has_value());
  EXPECT_TRUE(summary("s2").has_value());
  ASSERT_EQ(code_of(apply(purge_cmd(), kT0 + 20 + kRetentionMs + kSummaryMs)), Code::kOk);
  EXPECT_FALSE(summary("s2").has_value());
  EXPECT_TRUE(scan_sub(keys::kPurgeEntrySub).empty());
  EXPECT_TRUE(scan_sub(keys::kSummarySub).empty());
  EXPECT_FALSE(Engine::next_purge_due_ms(store_)->has_value());

  // Nothing of s1 is left, so a start under its id begins at run 1 again.
  ASSERT_EQ(code_of(apply(start_cmd("s1", "waiter"), kT0 + 30 + kRetentionMs + kSummaryMs)),
            Code::kOk);
  EXPECT_EQ(record("s1").run_id(), 1U);
}

TEST_F(RetentionTest, ASummaryOfALaterRunIsNotDeletedByAnOlderRunsExpiry) {
  constexpr std::int64_t kSummaryMs = 2 * kRetentionMs;
  WorkflowCommand set = retention_cmd(kRetentionMs);
  set.mutable_set_retention()->mutable_settings()->set_summary_retention_ms(kSummaryMs);
  ASSERT_EQ(code_of(apply(set, kT0)), Code::kOk);
  run_to_completion("again", kT0);
  ASSERT_EQ(code_of(apply(purge_cmd(), kT0 + kRetentionMs)), Code::kOk);
  const std::int64_t second_closed = kT0 + kRetentionMs + 1;
  run_to_completion("again", second_closed);  // run 2
  ASSERT_EQ(code_of(apply(purge_cmd(), second_closed + kRetentionMs)), Code::kOk);
  ASSERT_EQ(summary("again")->run_id(), 2U);
  // Run 1's summary window ends first; the summary is run 2's by then and stays.
  ASSERT_EQ(code_of(apply(purge_cmd(), kT0 + kRetentionMs + kSummaryMs)), Code::kOk);
  ASSERT_TRUE(summary("again").has_value());
  EXPECT_EQ(summary("again")->run_id(), 2U);
  ASSERT_EQ(code_of(apply(purge_cmd(), second_closed + kRetentionMs + kSummaryMs)), Code::kOk);
  EXPECT_FALSE(summary("again").has_value());
}

TEST_F(RetentionTest, TurningTheSummaryWindowOffKeepsSummariesAndDropsTheKeptEntries) {
  WorkflowCommand set = retention_cmd(kRetentionMs);
  set.mutable_set_retention()->mutable_settings()->set_summary_retention_ms(kRetentionMs);
  ASSERT_EQ(code_of(apply(set, kT0)), Code::kOk);
  run_to_completion("k1", kT0);
  ASSERT_EQ(code_of(apply(purge_cmd(), kT0 + kRetentionMs)), Code::kOk);
  ASSERT_EQ(scan_sub(keys::kPurgeEntrySub).size(), 1U);
  ASSERT_EQ(code_of(apply(retention_cmd(kRetentionMs), kT0 + kRetentionMs + 1)), Code::kOk);
  run_to_completion("k2", kT0 + kRetentionMs + 2);
  ASSERT_EQ(code_of(apply(purge_cmd(), kT0 + 2 * kRetentionMs + 2)), Code::kOk);
  EXPECT_TRUE(scan_sub(keys::kPurgeEntrySub).empty());
  EXPECT_TRUE(summary("k1").has_value());
  EXPECT_TRUE(summary("k2").has_value());
  EXPECT_FALSE(Engine::next_purge_due_ms(store_)->has_value());
}

TEST_F(RetentionTest, RetentionOutsideItsBoundsIsRefused) {
  EXPECT_EQ(code_of(apply(retention_cmd(kMinClosedRetentionMs - 1), kT0)), Code::kInvalidArgument);
  EXPECT_EQ(code_of(apply(retention_cmd(kMaxClosedRetentionMs + 1), kT0)), Code::kInvalidArgument);
  EXPECT_EQ(Engine::read_retention(store_)->closed_retention_ms(), kRetentionMs);
  ASSERT_EQ(code_of(apply(retention_cmd(0), kT0)), Code::kOk);
  EXPECT_EQ(Engine::read_retention(store_)->closed_retention_ms(), kDefaultClosedRetentionMs);
  WorkflowCommand summary_too_short = retention_cmd(0);
  summary_too_short.mutable_set_retention()->mutable_settings()->set_summary_retention_ms(
      kMinClosedRetentionMs - 1);
  EXPECT_EQ(code_of(apply(summary_too_short, kT0)), Code::kInvalidArgument);
  EXPECT_EQ(Engine::read_retention(store_)->summary_retention_ms(), 0);
}

}  // namespace
}  // namespace herald::workflow

namespace herald::workflow {
namespace {

WorkflowCommand operator_cmd(std::string id, std::string action, std::string name = {},
                             std::string reason = "on call") {
  WorkflowCommand c;
  auto* op = c.mutable_operator_action();
  op->set_workflow_id(std::move(id));
  op->set_action(std::move(action));
  op->set_name(std::move(name));
  op->set_actor("ana");
  op->set_reason(std::move(reason));
  return c;
}

TEST_F(EngineTest, RetryNowAttemptsABackedOffActivityAtOnceAndRecordsWhoAskedFor) {
  add_order_type();
  options_.mutable_retry()->set_initial_interval_ms(60'000);
  ASSERT_EQ(code_of(apply(start_cmd("o1", "order"), kT0)), Code::kOk);
  ASSERT_EQ(code_of(apply(report_cmd(only_dispatchable(), false, "unavailable"), kT0 + 1)),
            Code::kOk);
  const auto retry = only_timer(workflowpb::ACTIVITY_RETRY);
  ASSERT_GT(retry.due_ms(), kT0 + 2);
  ASSERT_EQ(code_of(apply(operator_cmd("o1", "retry_now"), kT0 + 2)), Code::kOk);
  EXPECT_EQ(only_dispatchable().attempt, 2U);
  for (const auto& t : timers()) EXPECT_NE(t.kind(), workflowpb::ACTIVITY_RETRY);
  auto h = Engine::read_history(store_, "o1", 1, 0, 100);
  ASSERT_TRUE(h.ok());
  const auto it = std::find_if(h->begin(), h->end(),
                               [](const auto& e) { return e.kind() == "operator_action"; });
  ASSERT_NE(it, h->end());
  EXPECT_EQ(it->name(), "retry_now");
  EXPECT_EQ(it->payload(), "ana: on call");
  // The engine's own timer fire for the old due time finds its timer gone: no second attempt.
  (void)engine_.take_dispatchable();
  ASSERT_EQ(code_of(apply(fire_cmd(retry), retry.due_ms())), Code::kOk);
  EXPECT_TRUE(engine_.take_dispatchable().empty());
}

TEST_F(EngineTest, RetryNowWithoutABackoffIsRefused) {
  add_order_type();
  ASSERT_EQ(code_of(apply(start_cmd("o1", "order"), kT0)), Code::kOk);
  EXPECT_EQ(code_of(apply(operator_cmd("o1", "retry_now"), kT0 + 1)), Code::kFailedPrecondition);
  EXPECT_EQ(code_of(apply(operator_cmd("nobody", "retry_now"), kT0 + 1)), Code::kNotFound);
  EXPECT_EQ(code_of(apply(operator_cmd("o1", "reboot"), kT0 + 1)), Code::kInvalidArgument);
  WorkflowCommand anonymous = operator_cmd("o1", "cancel");
  anonymous.mutable_operator_action()->clear_actor();
  EXPECT_EQ(code_of(apply(anonymous, kT0 + 1)), Code::kInvalidArgument);
}

TEST_F(EngineTest, FireTimerNowFiresAUserTimerEarly) {
  add_order_type();
  ASSERT_EQ(code_of(apply(start_cmd("o1", "order"), kT0)), Code::kOk);
  ASSERT_EQ(code_of(apply(report_cmd(only_dispatchable(), true, "ok"), kT0 + 1)), Code::kOk);
  EXPECT_EQ(record("o1").state(), "cooling");
  EXPECT_EQ(code_of(apply(operator_cmd("o1", "fire_timer", "warm"), kT0 + 2)),
            Code::kFailedPrecondition);
  ASSERT_EQ(code_of(apply(operator_cmd("o1", "fire_timer", "cool"), kT0 + 2)), Code::kOk);
  EXPECT_EQ(record("o1").state(), "shipping");
  for (const auto& t : timers()) EXPECT_NE(t.kind(), workflowpb::USER);
}

TEST_F(EngineTest, AnOperatorCancelIsRecordedBeforeTheCancelItCauses) {
  add_order_type();
  ASSERT_EQ(code_of(apply(start_cmd("o1", "order"), kT0)), Code::kOk);
  ASSERT_EQ(code_of(apply(operator_cmd("o1", "cancel", {}, "customer asked"), kT0 + 1)), Code::kOk);
  const auto kinds = history_kinds("o1");
  const auto at = std::find(kinds.begin(), kinds.end(), "operator_action");
  ASSERT_NE(at, kinds.end());
  ASSERT_NE(at + 1, kinds.end());
  EXPECT_EQ(*(at + 1), "cancel_requested");
  EXPECT_EQ(record("o1").status(), workflowpb::FAILED);
}

TEST_F(EngineTest, AnOperatorSignalReachesTheTypeWithTheReasonAsPayload) {
  add_order_type();
  ASSERT_EQ(code_of(apply(start_cmd("o1", "order"), kT0)), Code::kOk);
  ASSERT_EQ(code_of(apply(operator_cmd("o1", "signal", "note", "+x"), kT0 + 1)), Code::kOk);
  EXPECT_EQ(record("o1").data(), "+x");
  const auto kinds = history_kinds("o1");
  EXPECT_NE(std::find(kinds.begin(), kinds.end(), "operator_action"), kinds.end());
  EXPECT_NE(std::find(kinds.begin(), kinds.end(), "signaled"), kinds.end());
}

}  // namespace
}  // namespace herald::workflow
