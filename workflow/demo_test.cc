#include "workflow/demo.h"

#include <gtest/gtest.h>

#include <string>

namespace herald::workflow {
namespace {

constexpr std::int64_t kNow = 1'700'000'000'000;  // a stamped wall time, ms

Event started(std::string input, std::int64_t time_ms = kNow) {
  Event e;
  e.kind = Event::Kind::kStarted;
  e.payload = std::move(input);
  e.time_ms = time_ms;
  return e;
}

Event timer_fired(std::string tag) {
  Event e;
  e.kind = Event::Kind::kTimerFired;
  e.tag = std::move(tag);
  e.time_ms = kNow + 10;
  return e;
}

Event signal(std::string name) {
  Event e;
  e.kind = Event::Kind::kSignal;
  e.name = std::move(name);
  e.time_ms = kNow;
  return e;
}

TEST(DemoSleep, RelativeDelayStartsOneUserTimer) {
  const auto type = make_demo_sleep_type();
  EXPECT_EQ(type->name(), kDemoSleepType);
  EXPECT_EQ(type->initial_state(), "sleeping");
  const Decision d = type->on_event("sleeping", "", started("250"));
  EXPECT_EQ(d.state, "sleeping");
  ASSERT_EQ(d.actions.size(), 1u);
  EXPECT_EQ(d.actions[0].kind, Action::Kind::kStartTimer);
  EXPECT_EQ(d.actions[0].tag, kDemoSleepTimer);
  EXPECT_EQ(d.actions[0].delay_ms, 250);
}

TEST(DemoSleep, AbsoluteDueTimeUsesTheStampedTime) {
  const auto type = make_demo_sleep_type();
  const Decision d = type->on_event("sleeping", "", started("@" + std::to_string(kNow + 3000)));
  ASSERT_EQ(d.actions.size(), 1u);
  EXPECT_EQ(d.actions[0].delay_ms, 3000);
  // The same input applied later (another replica applies the same command with the same
  // stamped time, so only the stamp matters) gives a shorter delay; a past due time fires now.
  EXPECT_EQ(type->on_event("sleeping", "", started("@" + std::to_string(kNow + 3000), kNow + 1000))
                .actions[0]
                .delay_ms,
            2000);
  EXPECT_EQ(type->on_event("sleeping", "", started("@5", kNow)).actions[0].delay_ms, 0);
}

TEST(DemoSleep, IsDeterministic) {
  const auto type = make_demo_sleep_type();
  const Event e = started("@" + std::to_string(kNow + 777));
  const Decision a = type->on_event("sleeping", "", e);
  const Decision b = type->on_event("sleeping", "", e);
  EXPECT_EQ(a.state, b.state);
  EXPECT_EQ(a.data, b.data);
  ASSERT_EQ(a.actions.size(), b.actions.size());
  EXPECT_EQ(a.actions[0].delay_ms, b.actions[0].delay_ms);
}

TEST(DemoSleep, BadInputFailsTheRun) {
  const auto type = make_demo_sleep_type();
  for (const char* input : {"", "abc", "-5", "12x", "@", "@x", "999999999999999"}) {
    const Decision d = type->on_event("sleeping", "", started(input));
    ASSERT_EQ(d.actions.size(), 1u) << input;
    EXPECT_EQ(d.actions[0].kind, Action::Kind::kFail) << input;
    EXPECT_EQ(d.actions[0].error_type, "invalid_input") << input;
  }
}

TEST(DemoSleep, TimerCompletesSignalsAreIgnored) {
  const auto type = make_demo_sleep_type();
  const Decision d = type->on_event("sleeping", "100", timer_fired(kDemoSleepTimer));
  EXPECT_EQ(d.state, "done");
  ASSERT_EQ(d.actions.size(), 1u);
  EXPECT_EQ(d.actions[0].kind, Action::Kind::kComplete);
  EXPECT_EQ(d.actions[0].payload, "woke");

  const Decision other = type->on_event("sleeping", "100", timer_fired("other"));
  EXPECT_EQ(other.state, "sleeping");
  EXPECT_TRUE(other.actions.empty());
  const Decision s = type->on_event("sleeping", "100", signal("poke"));
  EXPECT_EQ(s.state, "sleeping");
  EXPECT_EQ(s.data, "100");
  EXPECT_TRUE(s.actions.empty());
}

TEST(DemoInbox, CountsSignalsAndFlipsState) {
  const auto type = make_demo_inbox_type();
  EXPECT_EQ(type->name(), kDemoInboxType);
  Decision d = type->on_event("even", "", started(""));
  EXPECT_EQ(d.state, "even");
  EXPECT_EQ(d.data, "0");
  EXPECT_TRUE(d.actions.empty());
  for (int i = 1; i <= 5; ++i) {
    d = type->on_event(d.state, d.data, signal("ping"));
    EXPECT_EQ(d.data, std::to_string(i));
    EXPECT_EQ(d.state, i % 2 == 0 ? "even" : "odd");
    EXPECT_TRUE(d.actions.empty());
  }
}

TEST(DemoInbox, CancelCompletesWithTheCount) {
  const auto type = make_demo_inbox_type();
  Event cancel;
  cancel.kind = Event::Kind::kCancelRequested;
  const Decision d = type->on_event("odd", "41", cancel);
  EXPECT_EQ(d.state, "closed");
  ASSERT_EQ(d.actions.size(), 1u);
  EXPECT_EQ(d.actions[0].kind, Action::Kind::kComplete);
  EXPECT_EQ(d.actions[0].payload, "41");
}

}  // namespace
}  // namespace herald::workflow
