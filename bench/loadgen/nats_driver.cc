// The NATS JetStream driver (libnats, the C client), built when libnats-dev is installed.
//
// One stream, BENCH, on subjects bench.>, file storage, Options::replicas replicas. Direct mode:
// sender i publishes on bench.d.<i>; group mode: every sender on bench.g. Each recipient has its
// own durable push consumer (explicit acknowledgement, new messages only) filtered on its subject,
// so in group mode every recipient receives every message.
//
// A sender pipelines publishes with a reply subject (<inbox>.<n>) and reads the stream's publish
// acknowledgements from a synchronous subscription on <inbox>.*: the same window and the same
// one-connection-one-thread loop as the Herald driver. A recipient reads its synchronous consumer
// subscription and acknowledges every message with natsMsg_Ack. libnats runs a reader thread per
// connection of its own; the loops here are the same as the other drivers'.
#include <fmt/format.h>
#include <nats/nats.h>

#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bench/loadgen/driver.h"

namespace herald::bench {
namespace {

constexpr char kStream[] = "BENCH";
constexpr char kStreamSubjects[] = "bench.>";
// How long the stream may take to be created (a fresh cluster elects its meta leader first).
constexpr std::int64_t kStreamReadyMs = 30'000;
constexpr std::int64_t kRetryPauseMs = 250;
// Bound on connecting and on each JetStream API request.
constexpr std::int64_t kConnectTimeoutMs = 5'000;

struct ConnectionDeleter {
  void operator()(natsConnection* c) const { natsConnection_Destroy(c); }
};
struct SubscriptionDeleter {
  void operator()(natsSubscription* s) const { natsSubscription_Destroy(s); }
};
struct JsDeleter {
  void operator()(jsCtx* js) const { jsCtx_Destroy(js); }
};
using Connection = std::unique_ptr<natsConnection, ConnectionDeleter>;
using Subscription = std::unique_ptr<natsSubscription, SubscriptionDeleter>;
using Js = std::unique_ptr<jsCtx, JsDeleter>;

Status nats_error(std::string_view what, natsStatus s,
                  jsErrCode js_error = static_cast<jsErrCode>(0)) {
  return Status::io_error(fmt::format("{}: {} (JetStream error {})", what, natsStatus_GetText(s),
                                      static_cast<int>(js_error)));
}

struct Sender {
  Connection nc;
  Subscription acks;  // <inbox>.*
  std::string inbox;
  std::string subject;
};

struct Recipient {
  Connection nc;
  Js js;
  Subscription sub;
};

class NatsDriver final : public Driver {
 public:
  explicit NatsDriver(Options options) : o_(std::move(options)) {}
  ~NatsDriver() override {
    senders_.clear();
    recipients_.clear();
    nats_Close();
  }

  Status prepare() override {
    HERALD_ASSIGN_OR_RETURN(Connection admin, connect(0));
    HERALD_RETURN_IF_ERROR(create_stream(admin.get()));
    for (int j = 0; j < o_.recipients(); ++j) {
      Recipient r;
      HERALD_ASSIGN_OR_RETURN(r.nc, connect(o_.group_mode() ? j : j + 1));
      jsCtx* js = nullptr;
      if (natsStatus s = natsConnection_JetStream(&js, r.nc.get(), nullptr); s != NATS_OK) {
        return nats_error("JetStream context", s);
      }
      r.js.reset(js);
      jsSubOptions so;
      jsSubOptions_Init(&so);
      so.Stream = kStream;
      so.ManualAck = true;
      const std::string durable = fmt::format("{}-r{}", o_.name_prefix, j);
      so.Config.Durable = durable.c_str();
      so.Config.AckPolicy = js_AckExplicit;
      so.Config.DeliverPolicy = js_DeliverNew;
      const std::string subject = o_.group_mode() ? "bench.g" : fmt::format("bench.d.{}", j);
      natsSubscription* sub = nullptr;
      jsErrCode jerr = static_cast<jsErrCode>(0);
      if (natsStatus s = js_SubscribeSync(&sub, js, subject.c_str(), nullptr, &so, &jerr);
          s != NATS_OK) {
        return nats_error("consumer " + durable, s, jerr);
      }
      r.sub.reset(sub);
      recipients_.push_back(std::move(r));
    }
    for (int i = 0; i < o_.senders(); ++i) {
      Sender snd;
      HERALD_ASSIGN_OR_RETURN(snd.nc, connect(i));
      snd.inbox = fmt::format("_INBOX.{}.s{}", o_.name_prefix, i);
      snd.subject = o_.group_mode() ? "bench.g" : fmt::format("bench.d.{}", i);
      natsSubscription* sub = nullptr;
      if (natsStatus s =
              natsConnection_SubscribeSync(&sub, snd.nc.get(), (snd.inbox + ".*").c_str());
          s != NATS_OK) {
        return nats_error("inbox subscription", s);
      }
      snd.acks.reset(sub);
      senders_.push_back(std::move(snd));
    }
    return Status::ok_status();
  }

  void run_sender(int index, const RunClock& clock, ThreadStats& stats) override {
    Sender& snd = senders_[index];
    int in_flight = 0;
    std::uint64_t seq = 0;
    while (!clock.stopping() || (in_flight > 0 && !clock.drain_over())) {
      while (!clock.stopping() && in_flight < o_.window) {
        const std::string body = encode_body(index, seq, now_ns(), o_.body_bytes);
        const std::string reply = snd.inbox + "." + std::to_string(seq);
        const natsStatus s =
            natsConnection_PublishRequest(snd.nc.get(), snd.subject.c_str(), reply.c_str(),
                                          body.data(), static_cast<int>(body.size()));
        if (s != NATS_OK) {
          stats.count_error("connection", natsStatus_GetText(s));
          return;
        }
        ++in_flight;
        ++seq;
      }
      natsMsg* msg = nullptr;
      const natsStatus s = natsSubscription_NextMsg(&msg, snd.acks.get(), kPollMs);
      if (s == NATS_TIMEOUT) continue;
      if (s != NATS_OK) {
        stats.count_error("connection", natsStatus_GetText(s));
        return;
      }
      --in_flight;
      count_publish_ack(msg, clock, stats);
      natsMsg_Destroy(msg);
    }
  }

  void run_recipient(int index, const RunClock& clock, ThreadStats& stats) override {
    Recipient& r = recipients_[index];
    std::int64_t last_activity = now_ns();
    while (clock.keep_receiving(last_activity)) {
      natsMsg* msg = nullptr;
      const natsStatus s = natsSubscription_NextMsg(&msg, r.sub.get(), kPollMs);
      if (s == NATS_TIMEOUT) continue;
      if (s != NATS_OK) {
        stats.count_error("connection", natsStatus_GetText(s));
        return;
      }
      last_activity = now_ns();
      record_receipt(stats, clock,
                     std::string_view(natsMsg_GetData(msg),
                                      static_cast<std::size_t>(natsMsg_GetDataLength(msg))));
      if (natsStatus a = natsMsg_Ack(msg, nullptr); a == NATS_OK) {
        ++stats.acks_ok;
      } else {
        stats.count_error("ack", natsStatus_GetText(a));
      }
      natsMsg_Destroy(msg);
    }
  }

 private:
  // A connection to endpoint n (modulo their count), writing each publish at once (as the other
  // clients do) and never reconnecting (a lost connection is an error of the run).
  Result<Connection> connect(int n) const {
    const Endpoint& e = o_.endpoints[static_cast<std::size_t>(n) % o_.endpoints.size()];
    natsOptions* opts = nullptr;
    if (natsStatus s = natsOptions_Create(&opts); s != NATS_OK) return nats_error("options", s);
    const std::string url = fmt::format("nats://{}:{}", e.host, e.port);
    natsStatus s = natsOptions_SetURL(opts, url.c_str());
    if (s == NATS_OK) s = natsOptions_SetTimeout(opts, kConnectTimeoutMs);
    if (s == NATS_OK) s = natsOptions_SetSendAsap(opts, true);
    if (s == NATS_OK) s = natsOptions_SetAllowReconnect(opts, false);
    natsConnection* nc = nullptr;
    if (s == NATS_OK) s = natsConnection_Connect(&nc, opts);
    natsOptions_Destroy(opts);
    if (s != NATS_OK) return nats_error("connecting to " + url, s);
    return Connection(nc);
  }

  // Creates the stream, retrying while the cluster is not ready, up to kStreamReadyMs.
  Status create_stream(natsConnection* nc) const {
    jsCtx* raw = nullptr;
    if (natsStatus s = natsConnection_JetStream(&raw, nc, nullptr); s != NATS_OK) {
      return nats_error("JetStream context", s);
    }
    const Js js(raw);
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = kStream;
    const char* subjects[] = {kStreamSubjects};
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    cfg.Replicas = o_.replicas;
    const std::int64_t deadline = now_ns() + kStreamReadyMs * 1'000'000;
    while (true) {
      jsStreamInfo* info = nullptr;
      jsErrCode jerr = static_cast<jsErrCode>(0);
      const natsStatus s = js_AddStream(&info, js.get(), &cfg, nullptr, &jerr);
      if (s == NATS_OK) {
        jsStreamInfo_Destroy(info);
        return Status::ok_status();
      }
      if (now_ns() > deadline) return nats_error("creating the stream", s, jerr);
      std::this_thread::sleep_for(std::chrono::milliseconds(kRetryPauseMs));
    }
  }

  // A publish acknowledgement is {"stream":..,"seq":..}; a failure {"error":{"code":..}} or a
  // no-responders status message.
  static void count_publish_ack(natsMsg* msg, const RunClock& clock, ThreadStats& stats) {
    const std::string_view data(natsMsg_GetData(msg),
                                static_cast<std::size_t>(natsMsg_GetDataLength(msg)));
    if (natsMsg_IsNoResponders(msg)) {
      stats.count_error("send", "no_responders");
    } else if (data.find("\"error\"") != std::string_view::npos) {
      const std::size_t code = data.find("\"err_code\":");
      stats.count_error("send",
                        code == std::string_view::npos
                            ? std::string_view("error")
                            : data.substr(code + 11, data.find_first_of(",}", code) - code - 11));
    } else {
      stats.count_send_ok(clock);
    }
  }

  Options o_;
  std::vector<Sender> senders_;
  std::vector<Recipient> recipients_;
};

}  // namespace

Result<std::unique_ptr<Driver>> make_nats_driver(const Options& options) {
  return std::unique_ptr<Driver>(std::make_unique<NatsDriver>(options));
}

}  // namespace herald::bench
