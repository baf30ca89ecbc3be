#include "messaging/read_sync.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "rsm/apply_batch.h"
#include "storage/mem_engine.h"
#include "workflow/engine.h"
#include "workflow/runtime.h"
#include "workflow/saga.h"

namespace herald::messaging {
namespace {

constexpr std::int64_t kT0 = 1'700'000'000'000;  // a stamped wall time, ms
constexpr char kPreviousMarker[] = "41";         // what the marker handler answers in the tests

messagingpb::ReadSyncInput make_input() {
  messagingpb::ReadSyncInput in;
  in.set_user_id("bob");
  in.set_device_id("bob-phone");
  in.set_conversation_id("c1");
  in.set_up_to_seq(42);
  return in;
}

std::vector<std::string> ids(const google::protobuf::RepeatedPtrField<std::string>& field) {
  return {field.begin(), field.end()};
}

// ---------------------------------------------------------------- declaration

TEST(ReadSyncDeclaration, ThreeStepsInOrderWithTheirActivityTypes) {
  const workflow::SagaDefinition def = read_sync_definition();
  EXPECT_EQ(def.name, "messaging.read_sync");
  EXPECT_FALSE(def.parallel_compensation);
  ASSERT_EQ(def.steps.size(), 3U);
  EXPECT_EQ(def.steps[0].name, "record_marker");
  EXPECT_EQ(def.steps[0].action_type, "messaging.read_marker.set");
  EXPECT_EQ(def.steps[0].compensation_type, "messaging.read_marker.restore");
  EXPECT_EQ(def.steps[1].name, "advance_cursor");
  EXPECT_EQ(def.steps[1].action_type, "messaging.read_cursor.advance");
  EXPECT_EQ(def.steps[1].compensation_type, "messaging.read_cursor.keep");
  EXPECT_EQ(def.steps[2].name, "publish_receipts");
  EXPECT_EQ(def.steps[2].action_type, "messaging.read_receipts.publish");
  EXPECT_EQ(def.steps[2].compensation_type, "messaging.read_receipts.keep");
  EXPECT_EQ(make_read_sync_type()->name(), kReadSyncType);
}

TEST(ReadSyncDeclaration, OptionsBoundEveryStepButPublishing) {
  const workflow::SagaDefinition def = read_sync_definition();
  for (const auto& step : def.steps) {
    SCOPED_TRACE(step.name);
    EXPECT_EQ(step.action_options.retry().initial_interval_ms(), kReadRetryInitialIntervalMs);
    EXPECT_EQ(step.action_options.start_to_close_timeout_ms(), kReadStepStartToCloseTimeoutMs);
    EXPECT_EQ(step.compensation_options.retry().maximum_attempts(),
              kReadCompensationMaximumAttempts);
  }
  EXPECT_EQ(def.steps[0].action_options.retry().maximum_attempts(), kReadStepMaximumAttempts);
  EXPECT_EQ(def.steps[1].action_options.retry().maximum_attempts(), kReadStepMaximumAttempts);
  EXPECT_EQ(def.steps[2].action_options.retry().maximum_attempts(), 0U);  // unlimited
  EXPECT_EQ(def.steps[2].action_options.retry().maximum_interval_ms(),
            kReadPublishMaximumIntervalMs);
}

TEST(ReadSyncDeclaration, OnlyTheMarkerAndCursorStepsHaveNonRetryableErrors) {
  const workflow::SagaDefinition def = read_sync_definition();
  EXPECT_EQ(ids(def.steps[0].action_options.retry().non_retryable_error_types()),
            (std::vector<std::string>{"read.not_member"}));
  EXPECT_EQ(ids(def.steps[1].action_options.retry().non_retryable_error_types()),
            (std::vector<std::string>{"read.beyond_last_seq", "read.not_member"}));
  EXPECT_TRUE(def.steps[2].action_options.retry().non_retryable_error_types().empty());
  // The saga adds unknown_activity_type when it schedules (workflow/saga.h).
  workflow::Event start;
  start.kind = workflow::Event::Kind::kStarted;
  start.payload = make_input().SerializeAsString();
  const workflow::Decision d = make_read_sync_type()->on_event(workflow::kSagaRunning, "", start);
  ASSERT_EQ(d.actions.size(), 1U);
  EXPECT_EQ(ids(d.actions[0].options.retry().non_retryable_error_types()),
            (std::vector<std::string>{"read.not_member", workflow::kUnknownActivityType}));
}

TEST(ReadSyncIds, OneSagaPerDeviceReadPosition) {
  EXPECT_EQ(read_sync_workflow_id("bob", "bob-phone", "c1", 42), "read_sync/c1/bob/bob-phone/42");
  EXPECT_NE(read_sync_workflow_id("bob", "bob-phone", "c1", 42),
            read_sync_workflow_id("bob", "bob-phone", "c1", 43));
  EXPECT_NE(read_sync_workflow_id("a/b", "c", "c1", 1), read_sync_workflow_id("a", "b/c", "c1", 1));
}

TEST(ReadSyncStepInput, DecodesTheSagaValues) {
  const std::string bytes = workflow::encode_saga_values(
      workflow::SagaValues{make_input().SerializeAsString(), {kPreviousMarker}});
  auto step = decode_read_sync_step(bytes);
  ASSERT_TRUE(step.ok());
  EXPECT_EQ(step->input.up_to_seq(), 42U);
  EXPECT_EQ(step->outputs, std::vector<std::string>{kPreviousMarker});
  EXPECT_EQ(decode_read_sync_step("junk").status().code(), Code::kInvalidArgument);
}

TEST(ReadSyncOutcomes, FromRecordsOfEveryStatus) {
  workflowpb::WorkflowRecord rec;
  rec.set_workflow_id("r");
  rec.set_type(kReadSyncType);
  rec.set_status(workflowpb::RUNNING);
  EXPECT_EQ(read_sync_outcome(rec).status().code(), Code::kFailedPrecondition);
  rec.set_status(workflowpb::FAILED);
  rec.set_error_type("saga.corrupt_data");
  rec.set_error_message("bad");
  auto outcome = read_sync_outcome(rec);
  ASSERT_TRUE(outcome.ok());
  EXPECT_EQ(*outcome, (ReadSyncOutcome{false, kReadSyncAborted, "saga.corrupt_data: bad"}));
  rec.set_status(workflowpb::COMPLETED);
  rec.set_result("not a saga result");
  EXPECT_EQ(read_sync_outcome(rec).status().code(), Code::kCorruption);
  rec.set_type("messaging.delivery");
  EXPECT_EQ(read_sync_outcome(rec).status().code(), Code::kInvalidArgument);
}

// ---------------------------------------------------------------- through the real engine

// One replica's workflow module over an in-memory store, without raft. The engine (and its
// registry) can be rebuilt over the same store, as a restarted replica would be.
class ReadSyncEngineTest : public ::testing::Test {
 protected:
  ReadSyncEngineTest() { restart(); }

  void restart() {
    engine_.reset();
    registry_ = std::make_unique<workflow::Registry>();
    EXPECT_TRUE(registry_->add(make_read_sync_type()).ok());
    engine_ = std::make_unique<workflow::Engine>(registry_.get());
  }

  void apply(const workflowpb::WorkflowCommand& wc) {
    rsmpb::Command c;
    c.set_wall_ms(now_ms_ += 10);
    c.mutable_module()->set_name(workflow::kModuleName);
    c.mutable_module()->set_payload(wc.SerializeAsString());
    rsm::ApplyBatch batch(&store_);
    const rsmpb::CommandResult result = engine_->apply(++index_, c, batch);
    ASSERT_EQ(result.code(), 0U) << result.message();
    ASSERT_TRUE(store_.write(batch.writes(), false).ok());
  }

  void start() {
    workflowpb::WorkflowCommand c;
    c.mutable_start()->set_workflow_id(id_);
    c.mutable_start()->set_type(kReadSyncType);
    c.mutable_start()->set_input(make_input().SerializeAsString());
    apply(c);
  }

  // The one activity the leader would run now.
  workflowpb::ActivityRecord next_activity() {
    auto d = workflow::Engine::dispatchable_activities(store_, 100);
    EXPECT_TRUE(d.ok());
    EXPECT_EQ(d.ok() ? d->size() : 0U, 1U);
    return d.ok() && d->size() == 1 ? d->front() : workflowpb::ActivityRecord();
  }

  // Runs the next activity, which must be of `type`, to the given outcome.
  workflowpb::ActivityRecord finish(const std::string& type, bool ok, std::string output = {},
                                    std::string error_type = {}) {
    workflowpb::ActivityRecord a = next_activity();
    EXPECT_EQ(a.activity_type(), type);
    workflowpb::WorkflowCommand c;
    auto* r = c.mutable_report();
    r->set_workflow_id(a.workflow_id());
    r->set_run_id(a.run_id());
    r->set_activity_id(a.activity_id());
    r->set_attempt(a.attempt());
    r->set_ok(ok);
    r->set_output(std::move(output));
    r->set_error_type(std::move(error_type));
    r->set_error_message(ok ? "" : "seq 42 is past the last message 40");
    apply(c);
    return a;
  }

  workflowpb::WorkflowRecord record() {
    auto r = workflow::Engine::read_workflow(store_, id_);
    EXPECT_TRUE(r.ok() && r->has_value());
    return r.ok() && r->has_value() ? **r : workflowpb::WorkflowRecord();
  }

  const std::string id_ = read_sync_workflow_id("bob", "bob-phone", "c1", 42);
  storage::MemEngine store_;
  std::unique_ptr<workflow::Registry> registry_;
  std::unique_ptr<workflow::Engine> engine_;
  raft::Index index_ = 0;
  std::int64_t now_ms_ = kT0;
};

TEST_F(ReadSyncEngineTest, AllStepsSucceedAndTheDeviceIsToldOk) {
  start();
  const auto marker = finish(kReadMarkerSetActivity, true, kPreviousMarker);
  auto step = decode_read_sync_step(marker.input());
  ASSERT_TRUE(step.ok());
  EXPECT_EQ(step->input.device_id(), "bob-phone");
  EXPECT_TRUE(step->outputs.empty());

  const auto cursor = finish(kReadCursorAdvanceActivity, true);
  step = decode_read_sync_step(cursor.input());
  ASSERT_TRUE(step.ok());
  EXPECT_EQ(step->outputs, std::vector<std::string>{kPreviousMarker});
  EXPECT_EQ(record().state(), workflow::kSagaRunning);

  (void)finish(kReadReceiptsPublishActivity, true);
  const auto rec = record();
  EXPECT_EQ(rec.status(), workflowpb::COMPLETED);
  EXPECT_EQ(rec.state(), workflow::kSagaCompleted);
  auto outcome = read_sync_outcome(rec);
  ASSERT_TRUE(outcome.ok());
  EXPECT_EQ(*outcome, (ReadSyncOutcome{true, {}, {}}));
}

TEST_F(ReadSyncEngineTest, CursorBeyondLastSeqRestoresTheMarkerAndTellsTheDevice) {
  start();
  (void)finish(kReadMarkerSetActivity, true, kPreviousMarker);
  // Non-retryable: the first failure fails the step; only step 0 completed, so only it is undone.
  (void)finish(kReadCursorAdvanceActivity, false, {}, kReadBeyondLastSeq);
  EXPECT_EQ(record().state(), workflow::kSagaCompensating);
  const auto restore = finish(kReadMarkerRestoreActivity, true);
  const auto values = workflow::decode_saga_values(restore.input());
  ASSERT_TRUE(values.has_value());
  EXPECT_EQ(values->input, make_input().SerializeAsString());
  EXPECT_EQ(values->outputs, std::vector<std::string>{kPreviousMarker});

  const auto rec = record();
  EXPECT_EQ(rec.status(), workflowpb::COMPLETED);
  EXPECT_EQ(rec.state(), workflow::kSagaCompensated);
  auto outcome = read_sync_outcome(rec);
  ASSERT_TRUE(outcome.ok());
  EXPECT_EQ(*outcome,
            (ReadSyncOutcome{false, "read.beyond_last_seq", "seq 42 is past the last message 40"}));
}

TEST_F(ReadSyncEngineTest, TransientCursorFailureIsRetriedNotCompensated) {
  start();
  (void)finish(kReadMarkerSetActivity, true, kPreviousMarker);
  (void)finish(kReadCursorAdvanceActivity, false, {}, "storage.busy");
  EXPECT_EQ(record().state(), workflow::kSagaRunning);
  auto timers = workflow::Engine::due_timers(store_, std::numeric_limits<std::int64_t>::max(), 10);
  ASSERT_TRUE(timers.ok());
  const auto retry = std::find_if(timers->begin(), timers->end(), [](const auto& t) {
    return t.kind() == workflowpb::ACTIVITY_RETRY;
  });
  ASSERT_NE(retry, timers->end());
  workflowpb::WorkflowCommand fire;
  fire.mutable_fire_timer()->set_workflow_id(retry->workflow_id());
  fire.mutable_fire_timer()->set_run_id(retry->run_id());
  fire.mutable_fire_timer()->set_timer_id(retry->timer_id());
  fire.mutable_fire_timer()->set_due_ms(retry->due_ms());
  now_ms_ = std::max(now_ms_, retry->due_ms());
  apply(fire);
  EXPECT_EQ(next_activity().attempt(), 2U);
}

TEST_F(ReadSyncEngineTest, ARestartedReplicaContinuesTheSagaFromTheStore) {
  start();
  (void)finish(kReadMarkerSetActivity, true, kPreviousMarker);
  restart();  // a fresh registry, type and engine over the same applied state
  (void)finish(kReadCursorAdvanceActivity, true);
  restart();
  (void)finish(kReadReceiptsPublishActivity, true);
  auto outcome = read_sync_outcome(record());
  ASSERT_TRUE(outcome.ok());
  EXPECT_TRUE(outcome->ok);
}

}  // namespace
}  // namespace herald::messaging
