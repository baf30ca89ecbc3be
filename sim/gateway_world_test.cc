#include "sim/gateway_world.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/random.h"

namespace herald::sim {
namespace {

// A gateway that records what the transport calls.
class RecordingHandler final : public server::WsHandler {
 public:
  std::optional<server::HttpResponse> on_open(const std::shared_ptr<server::WsConnection>& conn,
                                              const server::HttpRequest& /*upgrade*/) override {
    ++opened;
    last = conn;
    return std::nullopt;
  }
  void on_text(const std::shared_ptr<server::WsConnection>& /*conn*/, std::string text) override {
    texts.push_back(std::move(text));
  }
  void on_close(const std::shared_ptr<server::WsConnection>& /*conn*/) override { ++closed; }

  int opened = 0;
  int closed = 0;
  std::vector<std::string> texts;
  std::shared_ptr<server::WsConnection> last;
};

// A simulated time line: events in (time, order) order.
class EventLoop {
 public:
  SimScheduler scheduler() {
    return [this](MonoMs at_ms, std::function<void()> fn) {
      events_.emplace(std::pair(at_ms, next_++), std::move(fn));
    };
  }
  void run() {
    while (!events_.empty()) {
      auto first = events_.begin();
      clock.set_ms(std::max(clock.mono_ms(), first->first.first));
      std::function<void()> fn = std::move(first->second);
      events_.erase(first);
      fn();
    }
  }
  ManualClock clock;

 private:
  std::map<std::pair<MonoMs, std::uint64_t>, std::function<void()>> events_;
  std::uint64_t next_ = 0;
};

struct Fixture {
  EventLoop loop;
  Rng rng{7};
  RecordingHandler gateway;
  bool alive = true;
  std::vector<std::string> frames;  // what the device received
  std::vector<std::uint16_t> closes;
  std::shared_ptr<SimWsConnection> conn;

  Fixture() {
    conn = std::make_shared<SimWsConnection>(
        loop.scheduler(), &loop.clock, &rng, 1, "10.0.0.1:1024", &gateway, [this] { return alive; },
        SimWsConnection::DeviceSide{
            .frame = [this](const std::string& text) { frames.push_back(text); },
            .closed = [this](std::uint16_t code, const std::string&) { closes.push_back(code); }});
  }
};

TEST(SimWsConnectionTest, FramesArriveInOrderAndDrainTheQueue) {
  Fixture f;
  ASSERT_TRUE(f.conn->open());
  for (const char* text : {"one", "two", "three"}) {
    ASSERT_TRUE(f.conn->send_text(text).ok());
  }
  EXPECT_EQ(f.conn->queued_bytes(), 11U);
  f.loop.run();
  EXPECT_EQ(f.frames, (std::vector<std::string>{"one", "two", "three"}));
  EXPECT_EQ(f.conn->queued_bytes(), 0U);
  EXPECT_GE(f.loop.clock.mono_ms(), kMinWsLatencyMs);
}

TEST(SimWsConnectionTest, TheDevicesFramesReachTheGatewayInOrder) {
  Fixture f;
  ASSERT_TRUE(f.conn->open());
  f.conn->client_send("a");
  f.conn->client_send("b");
  f.loop.run();
  EXPECT_EQ(f.gateway.texts, (std::vector<std::string>{"a", "b"}));
}

TEST(SimWsConnectionTest, AQueueBeyondTheLimitClosesTheConnectionAsASlowConsumer) {
  Fixture f;
  ASSERT_TRUE(f.conn->open());
  const std::string half(server::kMaxWsQueuedBytes / 2 + 1, 'x');
  ASSERT_TRUE(f.conn->send_text(half).ok());
  EXPECT_EQ(f.conn->send_text(half).code(), Code::kResourceExhausted);
  EXPECT_EQ(f.conn->send_text("late").code(), Code::kFailedPrecondition);
  f.loop.run();
  EXPECT_TRUE(f.frames.empty());  // the queued frame is dropped with the connection
  EXPECT_EQ(f.closes, (std::vector<std::uint16_t>{server::kWsClosePolicyViolation}));
  EXPECT_EQ(f.gateway.closed, 1);
}

// A slow reader: what the gateway sends while the device does not read stays queued (and counts
// toward the bound, here a smaller one) until the pause ends, then arrives in order.
TEST(SimWsConnectionTest, APausedReaderKeepsFramesQueuedUntilItReadsAgain) {
  Fixture f;
  f.conn->set_queue_limit(64);
  ASSERT_TRUE(f.conn->open());
  f.conn->pause_reading(500);
  ASSERT_TRUE(f.conn->send_text(std::string(30, 'a')).ok());
  ASSERT_TRUE(f.conn->send_text(std::string(30, 'b')).ok());
  bool drained = false;
  f.conn->when_drained(0, [&drained] { drained = true; });
  f.loop.run();
  EXPECT_EQ(f.frames.size(), 2U);
  EXPECT_TRUE(drained);
  EXPECT_GE(f.loop.clock.mono_ms(), 500);
  // Past the smaller bound the connection closes as a slow consumer.
  f.conn->pause_reading(f.loop.clock.mono_ms() + 500);
  ASSERT_TRUE(f.conn->send_text(std::string(40, 'c')).ok());
  EXPECT_EQ(f.conn->send_text(std::string(40, 'd')).code(), Code::kResourceExhausted);
  f.loop.run();
  EXPECT_EQ(f.frames.size(), 2U);
  EXPECT_EQ(f.closes, (std::vector<std::uint16_t>{server::kWsClosePolicyViolation}));
}

TEST(SimWsConnectionTest, AFrameLargerThanTheQueueIsRefusedAndTheConnectionCarriesOn) {
  Fixture f;
  ASSERT_TRUE(f.conn->open());
  EXPECT_EQ(f.conn->send_text(std::string(server::kMaxWsQueuedBytes + 1, 'x')).code(),
            Code::kInvalidArgument);
  EXPECT_TRUE(f.conn->send_text("small").ok());
  f.loop.run();
  EXPECT_EQ(f.frames, (std::vector<std::string>{"small"}));
  EXPECT_TRUE(f.closes.empty());
}

TEST(SimWsConnectionTest, CloseDeliversQueuedFramesFirstAndCallsOnCloseOnce) {
  Fixture f;
  ASSERT_TRUE(f.conn->open());
  ASSERT_TRUE(f.conn->send_text("first").ok());
  ASSERT_TRUE(f.conn->send_text("second").ok());
  f.conn->close(4003, "replaced");
  f.conn->close(1000, "again");  // no effect: already closing
  f.loop.run();
  EXPECT_EQ(f.frames, (std::vector<std::string>{"first", "second"}));
  EXPECT_EQ(f.closes, (std::vector<std::uint16_t>{4003}));
  f.conn->client_close();
  f.loop.run();
  EXPECT_EQ(f.gateway.closed, 1);
}

TEST(SimWsConnectionTest, WhenDrainedRunsOnceTheDeviceReadTheQueue) {
  Fixture f;
  ASSERT_TRUE(f.conn->open());
  ASSERT_TRUE(f.conn->send_text(std::string(1000, 'x')).ok());
  int drained = 0;
  f.conn->when_drained(10, [&] { ++drained; });
  EXPECT_EQ(drained, 0);
  f.loop.run();
  EXPECT_EQ(drained, 1);
  f.conn->when_drained(10, [&] { ++drained; });  // already drained: at once
  EXPECT_EQ(drained, 2);
}

TEST(SimWsConnectionTest, ClientCloseDropsFramesOnTheirWayAndTellsTheGatewayOnce) {
  Fixture f;
  ASSERT_TRUE(f.conn->open());
  ASSERT_TRUE(f.conn->send_text("lost").ok());
  f.conn->client_close();
  f.conn->client_close();
  f.loop.run();
  EXPECT_TRUE(f.frames.empty());
  EXPECT_TRUE(f.closes.empty());
  EXPECT_EQ(f.gateway.closed, 1);
  EXPECT_EQ(f.conn->queued_bytes(), 0U);
}

TEST(SimWsConnectionTest, NothingReachesAGatewayWhoseIncarnationIsGone) {
  Fixture f;
  ASSERT_TRUE(f.conn->open());
  f.alive = false;
  f.conn->client_send("hello");
  f.conn->client_close();
  f.loop.run();
  EXPECT_TRUE(f.gateway.texts.empty());
  EXPECT_EQ(f.gateway.closed, 0);
}

TEST(SimWsConnectionTest, AGatewayThatIsGoneRefusesTheUpgrade) {
  Fixture f;
  f.alive = false;
  EXPECT_FALSE(f.conn->open());
  EXPECT_EQ(f.gateway.opened, 0);
}

}  // namespace
}  // namespace herald::sim
