#include "workflow/saga.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "workflow/runtime.h"

namespace herald::workflow {
namespace {

constexpr char kInput[] = "order-42";

SagaDefinition three_steps(bool parallel) {
  SagaDefinition def;
  def.name = "test.saga";
  def.parallel_compensation = parallel;
  for (const char* step : {"reserve", "charge", "ship"}) {
    SagaStep s;
    s.name = step;
    s.action_type = std::string("do.") + step;
    s.compensation_type = std::string("undo.") + step;
    s.action_options.mutable_retry()->set_maximum_attempts(3);
    s.compensation_options.mutable_retry()->set_maximum_attempts(5);
    def.steps.push_back(std::move(s));
  }
  return def;
}

Event completed(std::string tag, std::string output) {
  Event e;
  e.kind = Event::Kind::kActivityCompleted;
  e.tag = std::move(tag);
  e.payload = std::move(output);
  return e;
}

Event failed(std::string tag, std::string error_type, std::string message) {
  Event e;
  e.kind = Event::Kind::kActivityFailed;
  e.tag = std::move(tag);
  e.error_type = std::move(error_type);
  e.error_message = std::move(message);
  return e;
}

Event signal(std::string name, std::string payload = {}) {
  Event e;
  e.kind = Event::Kind::kSignal;
  e.name = std::move(name);
  e.payload = std::move(payload);
  return e;
}

Event cancel(std::string reason) {
  Event e;
  e.kind = Event::Kind::kCancelRequested;
  e.payload = std::move(reason);
  return e;
}

// Plays the engine's part: keeps (state, data) between events, as the workflow record does.
class SagaDriver {
 public:
  explicit SagaDriver(bool parallel) : type_(make_saga_type(three_steps(parallel))) {
    state_ = std::string(type_->initial_state());
  }

  Decision on(const Event& event) {
    Decision d = type_->on_event(state_, data_, event);
    state_ = d.state;
    data_ = d.data;
    return d;
  }
  Decision start() {
    Event e;
    e.kind = Event::Kind::kStarted;
    e.payload = kInput;
    return on(e);
  }
  // Starts and completes the actions of the first `steps` steps ("out0", "out1", ...).
  void complete_actions(std::size_t steps) {
    (void)start();
    for (std::size_t i = 0; i < steps; ++i) {
      (void)on(completed("action/" + std::to_string(i), "out" + std::to_string(i)));
    }
  }

  const std::string& state() const { return state_; }
  const std::string& data() const { return data_; }
  const WorkflowType& type() const { return *type_; }

 private:
  std::shared_ptr<const WorkflowType> type_;
  std::string state_;
  std::string data_;
};

std::vector<std::string> outputs(std::size_t count) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < count; ++i) {
    out.push_back("out" + std::to_string(i));
  }
  return out;
}

void expect_schedules(const Decision& d, const std::vector<std::string>& tags) {
  std::vector<std::string> got;
  for (const auto& a : d.actions) {
    if (a.kind == Action::Kind::kScheduleActivity) {
      got.push_back(a.tag);
    }
  }
  EXPECT_EQ(got, tags);
}

const Action* find_action(const Decision& d, Action::Kind kind) {
  for (const auto& a : d.actions) {
    if (a.kind == kind) {
      return &a;
    }
  }
  return nullptr;
}

SagaResult result_of(const Decision& d) {
  const Action* complete = find_action(d, Action::Kind::kComplete);
  EXPECT_NE(complete, nullptr);
  auto result = decode_saga_result(complete == nullptr ? "" : complete->payload);
  EXPECT_TRUE(result.has_value());
  return result.value_or(SagaResult{});
}

TEST(Saga, HappyPathRunsStepsInOrderWithEarlierOutputs) {
  SagaDriver saga(false);
  Decision d = saga.start();
  EXPECT_EQ(d.state, kSagaRunning);
  ASSERT_EQ(d.actions.size(), 1U);
  EXPECT_EQ(d.actions[0].activity_type, "do.reserve");
  EXPECT_EQ(d.actions[0].tag, "action/0");
  EXPECT_EQ(decode_saga_values(d.actions[0].payload), (SagaValues{kInput, {}}));
  for (std::size_t i = 0; i + 1 < 3; ++i) {
    d = saga.on(completed("action/" + std::to_string(i), "out" + std::to_string(i)));
    EXPECT_EQ(d.state, kSagaRunning);
    ASSERT_EQ(d.actions.size(), 1U);
    EXPECT_EQ(d.actions[0].tag, "action/" + std::to_string(i + 1));
    EXPECT_EQ(decode_saga_values(d.actions[0].payload), (SagaValues{kInput, outputs(i + 1)}));
  }
  d = saga.on(completed("action/2", "out2"));
  EXPECT_EQ(d.state, kSagaCompleted);
  ASSERT_EQ(d.actions.size(), 1U);
  EXPECT_EQ(result_of(d), (SagaResult{false, outputs(3), "", "", false}));
}

TEST(Saga, FailureAtStepTwoCompensatesStepOneThenStepZero) {
  SagaDriver saga(false);
  saga.complete_actions(2);
  Decision d = saga.on(failed("action/2", "carrier_down", "no carrier"));
  EXPECT_EQ(d.state, kSagaCompensating);
  expect_schedules(d, {"compensation/1"});
  EXPECT_EQ(d.actions[0].activity_type, "undo.charge");
  EXPECT_EQ(decode_saga_values(d.actions[0].payload), (SagaValues{kInput, outputs(2)}));
  EXPECT_EQ(d.actions[0].options.retry().maximum_attempts(), 5U);

  d = saga.on(completed("compensation/1", ""));
  EXPECT_EQ(d.state, kSagaCompensating);
  expect_schedules(d, {"compensation/0"});
  EXPECT_EQ(decode_saga_values(d.actions[0].payload), (SagaValues{kInput, outputs(1)}));

  d = saga.on(completed("compensation/0", ""));
  EXPECT_EQ(d.state, kSagaCompensated);
  EXPECT_EQ(result_of(d), (SagaResult{true, outputs(2), "carrier_down", "no carrier", false}));
}

TEST(Saga, FirstStepFailureCompensatesNothing) {
  SagaDriver saga(false);
  (void)saga.start();
  const Decision d = saga.on(failed("action/0", "out_of_stock", "none left"));
  EXPECT_EQ(d.state, kSagaCompensated);
  expect_schedules(d, {});
  EXPECT_EQ(result_of(d), (SagaResult{true, {}, "out_of_stock", "none left", false}));
}

TEST(Saga, ParallelCompensationSchedulesAllAndFinishesInAnyOrder) {
  SagaDriver saga(true);
  saga.complete_actions(2);
  Decision d = saga.on(failed("action/2", "carrier_down", "no carrier"));
  EXPECT_EQ(d.state, kSagaCompensating);
  expect_schedules(d, {"compensation/1", "compensation/0"});

  d = saga.on(completed("compensation/0", ""));
  EXPECT_EQ(d.state, kSagaCompensating);
  EXPECT_TRUE(d.actions.empty());
  d = saga.on(completed("compensation/1", ""));
  EXPECT_EQ(d.state, kSagaCompensated);
  EXPECT_TRUE(result_of(d).compensated);
}

TEST(Saga, RestartInTheMiddleOfParallelCompensationContinuesFromData) {
  SagaDriver saga(true);
  saga.complete_actions(2);
  (void)saga.on(failed("action/2", "carrier_down", "no carrier"));
  (void)saga.on(completed("compensation/1", ""));
  // A new replica (fresh type object) continues from the stored state and data alone.
  const auto fresh = make_saga_type(three_steps(true));
  const Decision d = fresh->on_event(saga.state(), saga.data(), completed("compensation/0", ""));
  EXPECT_EQ(d.state, kSagaCompensated);
  // An outcome for the compensation already done is stale and changes nothing.
  const Decision stale =
      fresh->on_event(saga.state(), saga.data(), completed("compensation/1", ""));
  EXPECT_EQ(stale.state, kSagaCompensating);
  EXPECT_EQ(stale.data, saga.data());
  EXPECT_TRUE(stale.actions.empty());
}

TEST(Saga, CompensationFailureWaitsForOperatorAndRecordsError) {
  SagaDriver saga(false);
  saga.complete_actions(2);
  (void)saga.on(failed("action/2", "carrier_down", "no carrier"));
  const Decision d = saga.on(failed("compensation/1", "refund_refused", "card closed"));
  EXPECT_EQ(d.state, kSagaCompensationFailed);
  expect_schedules(d, {});
  EXPECT_EQ(find_action(d, Action::Kind::kComplete), nullptr);
  const Action* record = find_action(d, Action::Kind::kRecord);
  ASSERT_NE(record, nullptr);
  EXPECT_EQ(record->name, "compensation_failed");
  EXPECT_EQ(record->payload, "1: refund_refused: card closed");
}

TEST(Saga, RetrySignalReschedulesFailedCompensationAndContinues) {
  SagaDriver saga(false);
  saga.complete_actions(2);
  (void)saga.on(failed("action/2", "carrier_down", "no carrier"));
  (void)saga.on(failed("compensation/1", "refund_refused", "card closed"));
  Decision d = saga.on(signal(kSagaRetrySignal));
  EXPECT_EQ(d.state, kSagaCompensating);
  expect_schedules(d, {"compensation/1"});
  d = saga.on(completed("compensation/1", ""));
  expect_schedules(d, {"compensation/0"});
  d = saga.on(completed("compensation/0", ""));
  EXPECT_EQ(d.state, kSagaCompensated);
  EXPECT_FALSE(result_of(d).resolved_by_operator);
}

TEST(Saga, ResolveSignalOnLastCompensationFinishesAsCompensated) {
  SagaDriver saga(false);
  saga.complete_actions(1);
  (void)saga.on(failed("action/1", "declined", "card declined"));
  (void)saga.on(failed("compensation/0", "release_failed", "stock service down"));
  const Decision d = saga.on(signal(kSagaResolveSignal, "released by hand, ticket 7"));
  EXPECT_EQ(d.state, kSagaCompensated);
  const Action* record = find_action(d, Action::Kind::kRecord);
  ASSERT_NE(record, nullptr);
  EXPECT_EQ(record->name, "resolved_by_operator");
  EXPECT_EQ(record->payload, "released by hand, ticket 7");
  EXPECT_EQ(result_of(d), (SagaResult{true, outputs(1), "declined", "card declined", true}));
}

TEST(Saga, ResolveSignalContinuesWithRemainingCompensations) {
  SagaDriver saga(false);
  saga.complete_actions(2);
  (void)saga.on(failed("action/2", "carrier_down", "no carrier"));
  (void)saga.on(failed("compensation/1", "refund_refused", "card closed"));
  Decision d = saga.on(signal(kSagaResolveSignal));
  EXPECT_EQ(d.state, kSagaCompensating);
  expect_schedules(d, {"compensation/0"});
  d = saga.on(completed("compensation/0", ""));
  EXPECT_EQ(d.state, kSagaCompensated);
  EXPECT_TRUE(result_of(d).resolved_by_operator);
}

TEST(Saga, ParallelFailureKeepsAccountingForOtherCompensations) {
  SagaDriver saga(true);
  saga.complete_actions(2);
  (void)saga.on(failed("action/2", "carrier_down", "no carrier"));
  Decision d = saga.on(failed("compensation/1", "refund_refused", "card closed"));
  EXPECT_EQ(d.state, kSagaCompensationFailed);
  d = saga.on(completed("compensation/0", ""));
  EXPECT_EQ(d.state, kSagaCompensationFailed);
  d = saga.on(signal(kSagaRetrySignal));
  expect_schedules(d, {"compensation/1"});
  d = saga.on(completed("compensation/1", ""));
  EXPECT_EQ(d.state, kSagaCompensated);
}

TEST(Saga, CancelWhileRunningWaitsForActionThenCompensatesIt) {
  SagaDriver saga(false);
  saga.complete_actions(1);
  Decision d = saga.on(cancel("user gave up"));
  EXPECT_EQ(d.state, kSagaCompensating);
  expect_schedules(d, {});
  const Action* record = find_action(d, Action::Kind::kRecord);
  ASSERT_NE(record, nullptr);
  EXPECT_EQ(record->name, "cancel_accepted");
  // The action in flight completed after all: it is compensated first, then step 0.
  d = saga.on(completed("action/1", "out1"));
  expect_schedules(d, {"compensation/1"});
  d = saga.on(completed("compensation/1", ""));
  expect_schedules(d, {"compensation/0"});
  d = saga.on(completed("compensation/0", ""));
  EXPECT_EQ(d.state, kSagaCompensated);
  EXPECT_EQ(result_of(d), (SagaResult{true, outputs(2), "canceled", "user gave up", false}));
}

TEST(Saga, CancelThenFailedActionCompensatesOnlyCompletedSteps) {
  SagaDriver saga(false);
  saga.complete_actions(1);
  (void)saga.on(cancel("user gave up"));
  Decision d = saga.on(failed("action/1", "declined", "card declined"));
  expect_schedules(d, {"compensation/0"});
  d = saga.on(completed("compensation/0", ""));
  EXPECT_EQ(d.state, kSagaCompensated);
  EXPECT_EQ(result_of(d).error_type, "canceled");
}

TEST(Saga, CancelWhileCompensatingIsIgnored) {
  SagaDriver saga(false);
  saga.complete_actions(2);
  (void)saga.on(failed("action/2", "carrier_down", "no carrier"));
  const std::string data = saga.data();
  const Decision d = saga.on(cancel("again"));
  EXPECT_EQ(d.state, kSagaCompensating);
  EXPECT_EQ(d.data, data);
  ASSERT_EQ(d.actions.size(), 1U);
  EXPECT_EQ(d.actions[0].name, "cancel_ignored");
}

TEST(Saga, SignalInWrongStateIsIgnored) {
  SagaDriver saga(false);
  saga.complete_actions(1);
  const std::string data = saga.data();
  Decision d = saga.on(signal(kSagaRetrySignal));
  EXPECT_EQ(d.state, kSagaRunning);
  EXPECT_EQ(d.data, data);
  ASSERT_EQ(d.actions.size(), 1U);
  EXPECT_EQ(d.actions[0].kind, Action::Kind::kRecord);
  EXPECT_EQ(d.actions[0].name, "signal_ignored");
  EXPECT_EQ(d.actions[0].payload, kSagaRetrySignal);

  (void)saga.on(failed("action/1", "declined", "card declined"));
  (void)saga.on(failed("compensation/0", "release_failed", "down"));
  d = saga.on(signal("bogus"));
  EXPECT_EQ(d.state, kSagaCompensationFailed);
  EXPECT_EQ(d.actions[0].name, "signal_ignored");
}

TEST(Saga, StaleActionOutcomeIsIgnored) {
  SagaDriver saga(false);
  saga.complete_actions(1);
  const std::string data = saga.data();
  const Decision d = saga.on(completed("action/0", "again"));
  EXPECT_EQ(d.state, kSagaRunning);
  EXPECT_EQ(d.data, data);
  EXPECT_TRUE(d.actions.empty());
}

TEST(Saga, UnreadableDataFailsTheRun) {
  const auto type = make_saga_type(three_steps(false));
  const Decision d = type->on_event(kSagaRunning, "garbage", completed("action/0", ""));
  const Action* fail = find_action(d, Action::Kind::kFail);
  ASSERT_NE(fail, nullptr);
  EXPECT_EQ(fail->error_type, "saga.corrupt_data");
}

TEST(Saga, UnknownActivityTypeIsNonRetryableForActionsAndCompensations) {
  SagaDriver saga(false);
  Decision d = saga.start();
  const auto& types = d.actions[0].options.retry().non_retryable_error_types();
  ASSERT_EQ(types.size(), 1);
  EXPECT_EQ(types[0], kUnknownActivityType);
  d = saga.on(completed("action/0", "out0"));
  d = saga.on(failed("action/1", "declined", ""));
  const auto& undo = d.actions[0].options.retry().non_retryable_error_types();
  ASSERT_EQ(undo.size(), 1);
  EXPECT_EQ(undo[0], kUnknownActivityType);
}

TEST(Saga, DecisionsAreDeterministic) {
  SagaDriver a(true);
  SagaDriver b(true);
  a.complete_actions(2);
  b.complete_actions(2);
  const Decision da = a.on(failed("action/2", "x", "y"));
  const Decision db = b.on(failed("action/2", "x", "y"));
  EXPECT_EQ(da.state, db.state);
  EXPECT_EQ(da.data, db.data);
  ASSERT_EQ(da.actions.size(), db.actions.size());
  for (std::size_t i = 0; i < da.actions.size(); ++i) {
    EXPECT_EQ(da.actions[i].tag, db.actions[i].tag);
    EXPECT_EQ(da.actions[i].payload, db.actions[i].payload);
  }
}

TEST(Saga, ValuesAndResultRoundTrip) {
  const SagaValues values{"in", {"a", "", std::string("\0b", 2)}};
  EXPECT_EQ(decode_saga_values(encode_saga_values(values)), values);
  EXPECT_EQ(decode_saga_values("x"), std::nullopt);
  const SagaResult result{true, {"a"}, "t", "m", true};
  EXPECT_EQ(decode_saga_result(encode_saga_result(result)), result);
  EXPECT_EQ(decode_saga_result(encode_saga_result(result) + "!"), std::nullopt);
}

}  // namespace
}  // namespace herald::workflow
