#include "server/workflow_overview.h"

#include <gtest/gtest.h>

#include <functional>

#include "storage/mem_engine.h"
#include "workflow/engine.h"

namespace herald::server {
namespace {

using workflow::Action;
using workflow::Decision;
using workflow::Event;
using workflowpb::WorkflowCommand;

constexpr std::int64_t kT0 = 5'000'000;  // the test clock's start, ms

// A type whose first decision is `on_start`; every later event changes nothing.
class StartType final : public workflow::WorkflowType {
 public:
  StartType(std::string name, std::function<Decision()> on_start)
      : name_(std::move(name)), on_start_(std::move(on_start)) {}
  std::string_view name() const override { return name_; }
  std::string_view initial_state() const override { return "init"; }
  Decision on_event(std::string_view state, std::string_view data,
                    const Event& event) const override {
    if (event.kind == Event::Kind::kStarted) return on_start_();
    return Decision{std::string(state), std::string(data), {}};
  }

 private:
  std::string name_;
  std::function<Decision()> on_start_;
};

workflowpb::ActivityOptions retried_options() {
  workflowpb::ActivityOptions options;
  options.mutable_retry()->set_initial_interval_ms(60'000);
  options.mutable_retry()->set_maximum_attempts(5);
  return options;
}

class WorkflowOverviewTest : public ::testing::Test {
 protected:
  void SetUp() override {
    add("idle", [] { return Decision{"waiting", "", {}}; });
    add("flaky", [] {
      return Decision{
          "calling", "", {Action::schedule_activity("call", "call", "", retried_options())}};
    });
    add("broken", [] { return Decision{"init", "", {Action::fail("boom", "it broke")}}; });
    add("saga", [] { return Decision{"compensation_failed", "", {}}; });
  }

  void add(std::string name, std::function<Decision()> on_start) {
    ASSERT_TRUE(
        registry_.add(std::make_shared<StartType>(std::move(name), std::move(on_start))).ok());
  }

  rsmpb::CommandResult apply(const WorkflowCommand& wc, std::int64_t wall_ms) {
    rsm::ApplyBatch batch(&store_);
    rsmpb::Command c;
    c.set_wall_ms(wall_ms);
    c.mutable_module()->set_name(workflow::kModuleName);
    c.mutable_module()->set_payload(wc.SerializeAsString());
    auto result = engine_.apply(++index_, c, batch);
    EXPECT_TRUE(store_.write(batch.writes(), false).ok());
    return result;
  }

  void start(const std::string& id, const std::string& type, std::int64_t at_ms) {
    WorkflowCommand c;
    c.mutable_start()->set_workflow_id(id);
    c.mutable_start()->set_type(type);
    ASSERT_EQ(apply(c, at_ms).code(), 0u) << id;
  }

  // Fails the first attempt of the dispatchable activity (it goes into its backoff).
  void fail_first_attempt(std::int64_t at_ms) {
    const auto refs = engine_.take_dispatchable();
    ASSERT_EQ(refs.size(), 1u);
    WorkflowCommand c;
    auto* r = c.mutable_report();
    r->set_workflow_id(refs[0].workflow_id);
    r->set_run_id(refs[0].run_id);
    r->set_activity_id(refs[0].activity_id);
    r->set_attempt(refs[0].attempt);
    r->set_error_type("provider.unavailable");
    r->set_error_message("503 from the provider");
    ASSERT_EQ(apply(c, at_ms).code(), 0u);
  }

  Result<WorkflowOverview> overview(std::int64_t now_ms, std::int64_t stuck_after_ms) {
    OverviewOptions options;
    options.now_ms = now_ms;
    options.stuck_after_ms = stuck_after_ms;
    return workflow_overview(store_, {"idle", "flaky", "broken", "saga"}, options);
  }

  workflow::Registry registry_;
  workflow::Engine engine_{&registry_};
  storage::MemEngine store_;
  raft::Index index_ = 0;
};

TEST_F(WorkflowOverviewTest, CountsEveryTypeByStateAndListsWhatNeedsAttention) {
  start("idle-old", "idle", kT0);
  start("idle-new", "idle", kT0 + 50'000);
  start("flaky-1", "flaky", kT0);
  fail_first_attempt(kT0 + 1'000);
  start("broken-1", "broken", kT0);
  start("saga-1", "saga", kT0);

  auto view = overview(kT0 + 60'000, 30'000);
  ASSERT_TRUE(view.ok()) << view.status().to_string();
  EXPECT_EQ(view->scanned, 5u);
  EXPECT_FALSE(view->truncated);
  using Key = std::pair<std::string, std::string>;
  EXPECT_EQ(view->counts.at(Key("idle", "waiting")), 2u);
  EXPECT_EQ(view->counts.at(Key("flaky", "calling")), 1u);
  EXPECT_EQ(view->counts.at(Key("broken", "failed")), 1u);
  EXPECT_EQ(view->counts.at(Key("saga", "compensation_failed")), 1u);

  ASSERT_EQ(view->failed.size(), 1u);
  EXPECT_EQ(view->failed[0].workflow_id, "broken-1");
  ASSERT_EQ(view->compensation_failed.size(), 1u);
  EXPECT_EQ(view->compensation_failed[0].workflow_id, "saga-1");

  ASSERT_EQ(view->retrying.size(), 1u);
  const OverviewItem& retry = view->retrying[0];
  EXPECT_EQ(retry.workflow_id, "flaky-1");
  EXPECT_EQ(retry.activity_type, "call");
  EXPECT_EQ(retry.attempt, 1u);
  EXPECT_EQ(retry.error_type, "provider.unavailable");
  EXPECT_EQ(retry.error_message, "503 from the provider");
  EXPECT_GE(retry.next_attempt_ms, kT0 + 1'000);
  EXPECT_LE(retry.next_attempt_ms, kT0 + 61'000);

  // Stuck: running and unchanged for 30 s — not the newer idle one, and never a closed run.
  std::vector<std::string> stuck;
  for (const auto& item : view->stuck) stuck.push_back(item.workflow_id);
  std::sort(stuck.begin(), stuck.end());
  EXPECT_EQ(stuck, (std::vector<std::string>{"flaky-1", "idle-old", "saga-1"}));
}

TEST_F(WorkflowOverviewTest, TheStuckThresholdIsTheCallers) {
  start("idle-old", "idle", kT0);
  auto view = overview(kT0 + 10'000, 60'000);
  ASSERT_TRUE(view.ok());
  EXPECT_TRUE(view->stuck.empty());
  view = overview(kT0 + 10'000, 10'000);
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view->stuck.size(), 1u);
}

TEST_F(WorkflowOverviewTest, AScanPastItsBoundSaysTruncated) {
  for (int i = 0; i < 5; ++i) start("idle-" + std::to_string(i), "idle", kT0);
  OverviewOptions options;
  options.now_ms = kT0;
  options.scan_limit = 3;
  auto view = workflow_overview(store_, {"idle"}, options);
  ASSERT_TRUE(view.ok());
  EXPECT_TRUE(view->truncated);
  EXPECT_EQ(view->scanned, 3u);
  EXPECT_EQ(view->counts.at({"idle", "waiting"}), 3u);
}

TEST_F(WorkflowOverviewTest, AttentionListsAreBoundedByTheLimit) {
  for (int i = 0; i < 4; ++i) start("broken-" + std::to_string(i), "broken", kT0);
  OverviewOptions options;
  options.now_ms = kT0;
  options.list_limit = 2;
  auto view = workflow_overview(store_, {"broken"}, options);
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view->failed.size(), 2u);
  EXPECT_EQ(view->counts.at({"broken", "failed"}), 4u);
}

}  // namespace
}  // namespace herald::server
