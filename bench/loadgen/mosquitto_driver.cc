// The Mosquitto driver (libmosquitto, MQTT 3.1.1), built when libmosquitto-dev is installed.
//
// QoS 1 both ways. Direct mode: sender i publishes on bench/d/<i>, which recipient i subscribes
// to; group mode: every sender publishes on bench/g, which every recipient subscribes to.
// Recipients keep a persistent session (clean session off), so the broker keeps their queued
// messages as it would for a real device.
//
// Each connection is driven by mosquitto_loop() on its own thread (no libmosquitto thread): a
// sender keeps Options::window QoS 1 publishes unacknowledged, and each PUBACK (the publish
// callback) frees a slot; a recipient's library answers each QoS 1 message with its PUBACK, the
// per-message acknowledgement, as it receives it.
#include <fmt/format.h>
#include <mosquitto.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bench/loadgen/driver.h"

namespace herald::bench {
namespace {

constexpr int kQos = 1;
constexpr int kKeepaliveS = 60;
// How long connecting and subscribing may take (CONNACK, SUBACK).
constexpr std::int64_t kHandshakeMs = 10'000;

struct MosqDeleter {
  void operator()(mosquitto* m) const { mosquitto_destroy(m); }
};
using Mosq = std::unique_ptr<mosquitto, MosqDeleter>;

// What the callbacks of one connection update; owned by the connection's thread once it runs.
struct Link {
  Mosq mosq;
  std::string topic;
  bool connected = false;
  bool subscribed = false;
  int in_flight = 0;
  const RunClock* clock = nullptr;
  ThreadStats* stats = nullptr;
};

void on_connect(mosquitto*, void* obj, int rc) {
  static_cast<Link*>(obj)->connected = (rc == 0);
}
void on_subscribe(mosquitto*, void* obj, int, int, const int*) {
  static_cast<Link*>(obj)->subscribed = true;
}
void on_publish(mosquitto*, void* obj, int) {
  auto* link = static_cast<Link*>(obj);
  --link->in_flight;
  if (link->stats != nullptr) link->stats->count_send_ok(*link->clock);
}
void on_message(mosquitto*, void* obj, const mosquitto_message* m) {
  auto* link = static_cast<Link*>(obj);
  if (link->stats == nullptr) return;  // a message before the run (none is expected)
  record_receipt(*link->stats, *link->clock,
                 std::string_view(static_cast<const char*>(m->payload),
                                  static_cast<std::size_t>(m->payloadlen)));
  ++link->stats->acks_ok;  // the library sends the PUBACK when this returns
}

class MosquittoDriver final : public Driver {
 public:
  explicit MosquittoDriver(Options options) : o_(std::move(options)) { mosquitto_lib_init(); }
  ~MosquittoDriver() override {
    senders_.clear();
    recipients_.clear();
    mosquitto_lib_cleanup();
  }

  Status prepare() override {
    for (int j = 0; j < o_.recipients(); ++j) {
      auto link = std::make_unique<Link>();
      link->topic = o_.group_mode() ? "bench/g" : fmt::format("bench/d/{}", j);
      HERALD_RETURN_IF_ERROR(open(*link, fmt::format("{}-r{}", o_.name_prefix, j),
                                  /*clean_session=*/false, o_.group_mode() ? j : j + 1));
      if (int rc = mosquitto_subscribe(link->mosq.get(), nullptr, link->topic.c_str(), kQos);
          rc != MOSQ_ERR_SUCCESS) {
        return Status::io_error(fmt::format("subscribing: {}", mosquitto_strerror(rc)));
      }
      HERALD_RETURN_IF_ERROR(loop_until(*link, [](const Link& l) { return l.subscribed; }));
      recipients_.push_back(std::move(link));
    }
    for (int i = 0; i < o_.senders(); ++i) {
      auto link = std::make_unique<Link>();
      link->topic = o_.group_mode() ? "bench/g" : fmt::format("bench/d/{}", i);
      HERALD_RETURN_IF_ERROR(
          open(*link, fmt::format("{}-s{}", o_.name_prefix, i), /*clean_session=*/true, i));
      senders_.push_back(std::move(link));
    }
    return Status::ok_status();
  }

  void run_sender(int index, const RunClock& clock, ThreadStats& stats) override {
    Link& link = *senders_[index];
    link.clock = &clock;
    link.stats = &stats;
    std::uint64_t seq = 0;
    while (!clock.stopping() || (link.in_flight > 0 && !clock.drain_over())) {
      while (!clock.stopping() && link.in_flight < o_.window) {
        const std::string body = encode_body(index, seq, now_ns(), o_.body_bytes);
        const int rc = mosquitto_publish(link.mosq.get(), nullptr, link.topic.c_str(),
                                         static_cast<int>(body.size()), body.data(), kQos, false);
        if (rc != MOSQ_ERR_SUCCESS) {
          stats.count_error("connection", mosquitto_strerror(rc));
          return;
        }
        ++link.in_flight;
        ++seq;
      }
      if (int rc = mosquitto_loop(link.mosq.get(), static_cast<int>(kPollMs), 1);
          rc != MOSQ_ERR_SUCCESS) {
        stats.count_error("connection", mosquitto_strerror(rc));
        return;
      }
    }
  }

  void run_recipient(int index, const RunClock& clock, ThreadStats& stats) override {
    Link& link = *recipients_[index];
    link.clock = &clock;
    link.stats = &stats;
    std::int64_t last_activity = now_ns();
    std::uint64_t seen = 0;
    while (clock.keep_receiving(last_activity)) {
      if (int rc = mosquitto_loop(link.mosq.get(), static_cast<int>(kPollMs), 1);
          rc != MOSQ_ERR_SUCCESS) {
        stats.count_error("connection", mosquitto_strerror(rc));
        return;
      }
      if (stats.received != seen) {
        seen = stats.received;
        last_activity = now_ns();
      }
    }
  }

 private:
  // Connects `link` as `client_id` to endpoint n (modulo their count) and waits for CONNACK.
  Status open(Link& link, const std::string& client_id, bool clean_session, int n) {
    link.mosq.reset(mosquitto_new(client_id.c_str(), clean_session, &link));
    if (!link.mosq) return Status::io_error("mosquitto_new failed");
    mosquitto_int_option(link.mosq.get(), MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    // The client library's own window on unacknowledged QoS 1 publishes: above ours, so ours is
    // the one that applies.
    mosquitto_max_inflight_messages_set(link.mosq.get(), static_cast<unsigned>(o_.window) + 1);
    mosquitto_connect_callback_set(link.mosq.get(), on_connect);
    mosquitto_subscribe_callback_set(link.mosq.get(), on_subscribe);
    mosquitto_publish_callback_set(link.mosq.get(), on_publish);
    mosquitto_message_callback_set(link.mosq.get(), on_message);
    const Endpoint& e = o_.endpoints[static_cast<std::size_t>(n) % o_.endpoints.size()];
    if (int rc = mosquitto_connect(link.mosq.get(), e.host.c_str(), e.port, kKeepaliveS);
        rc != MOSQ_ERR_SUCCESS) {
      return Status::io_error(
          fmt::format("connecting to {}:{}: {}", e.host, e.port, mosquitto_strerror(rc)));
    }
    return loop_until(link, [](const Link& l) { return l.connected; });
  }

  // Runs the connection's loop until `done(link)` or kHandshakeMs pass.
  template <typename Done>
  static Status loop_until(Link& link, Done done) {
    const std::int64_t deadline = now_ns() + kHandshakeMs * 1'000'000;
    while (!done(link)) {
      if (now_ns() > deadline) return Status::timeout("no CONNACK or SUBACK in time");
      if (int rc = mosquitto_loop(link.mosq.get(), static_cast<int>(kPollMs), 1);
          rc != MOSQ_ERR_SUCCESS) {
        return Status::io_error(fmt::format("handshake: {}", mosquitto_strerror(rc)));
      }
    }
    return Status::ok_status();
  }

  Options o_;
  std::vector<std::unique_ptr<Link>> senders_;
  std::vector<std::unique_ptr<Link>> recipients_;
};

}  // namespace

Result<std::unique_ptr<Driver>> make_mosquitto_driver(const Options& options) {
  return std::unique_ptr<Driver>(std::make_unique<MosquittoDriver>(options));
}

}  // namespace herald::bench
