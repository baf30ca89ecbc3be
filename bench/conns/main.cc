// herald_connbench: many connected devices on one node, their memory, and a reconnect storm.
// Driven by bench/connections.sh; its header states the workload, the phases and what is
// reported. The client side is one Asio thread, so the server's figures are not shaped by a
// thread per connection on the client.
//
// Phases:
//  1. provision users (D devices each) and groups of G users through the admin API;
//  2. sample the server's resident memory, connect every device (auth without `since`) at
//     --connect-rate per second, wait until all are authenticated and the node is quiet, sample
//     it again: (idle - before) / devices is the memory per idle connected device;
//  3. the storm: drop every connection at once, post one system message into every group while
//     they are away, then reconnect every device within --storm-s seconds with `since` = the
//     last change cursor it processed; each device must receive its group's message. Reports
//     the time until every device is resumed and caught up, errors and missing changes.
// Output: one line `CONNBENCH_RESULT key=value ...` for the script, after readable progress.
#include <netinet/in.h>
#include <sys/socket.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"
#include "client/admin_client.h"

namespace herald::bench {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

// Admin calls in flight while provisioning (each a blocking client on its own thread).
constexpr int kProvisionThreads = 16;
// A connection attempt (TCP, WebSocket handshake, auth answer) must finish within this time.
constexpr std::int64_t kConnectTimeoutMs = 30'000;
// After the last auth answer, wait this long for presence traffic to settle before sampling.
constexpr std::int64_t kSettleMs = 5'000;
// After the storm's last reconnect, every device must have caught up within this time.
constexpr std::int64_t kCatchUpTimeoutMs = 60'000;
// Pause between dropping every connection and posting the missed messages, so the node has
// noticed the drops (its sessions are gone) before the changes happen.
constexpr std::int64_t kDropSettleMs = 3'000;

struct Options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  std::uint16_t admin_port = 0;
  std::string admin_token;
  int devices = 1000;
  int devices_per_user = 2;
  int group_users = 8;
  int source_addresses = 4;  // 127.0.0.2, 127.0.0.3, ...
  int connect_rate = 5000;   // connections started per second in phase 2
  int storm_s = 10;
  int server_pid = 0;
  int hold_s = 0;  // keep every device connected and idle this long after the memory sample
  std::string prefix = "cb";
};

struct DeviceSpec {
  std::string user_id;
  std::string device_id;
  std::string token;
  int group = 0;
};

std::int64_t rss_bytes(int pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      return std::stoll(line.substr(6)) * 1024;
    }
  }
  return -1;
}

std::int64_t ms_since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

std::string user_of(const Options& o, int u) {
  return o.prefix + "-u" + std::to_string(u);
}
std::string group_of(const Options& o, int g) {
  return o.prefix + "-g" + std::to_string(g);
}

// Creates users, devices and groups; fills `devices` (token included). Runs kProvisionThreads
// blocking admin clients over disjoint slices.
Status provision(const Options& o, std::vector<DeviceSpec>& devices) {
  const int users = (o.devices + o.devices_per_user - 1) / o.devices_per_user;
  const int groups = (users + o.group_users - 1) / o.group_users;
  devices.resize(static_cast<std::size_t>(o.devices));
  std::mutex mu;
  Status first;
  std::atomic<int> next_user{0};
  auto fail = [&](const Status& s) {
    std::lock_guard lock(mu);
    if (first.ok()) {
      first = s;
    }
  };
  auto user_worker = [&] {
    client::AdminClient admin(o.host, o.admin_port, o.admin_token);
    for (int u = next_user++; u < users; u = next_user++) {
      if (Status s = admin.create_user(user_of(o, u)); !s.ok()) {
        return fail(s);
      }
      for (int k = 0; k < o.devices_per_user; ++k) {
        const int d = u * o.devices_per_user + k;
        if (d >= o.devices) {
          break;
        }
        DeviceSpec& spec = devices[static_cast<std::size_t>(d)];
        spec.user_id = user_of(o, u);
        spec.device_id = spec.user_id + "-d" + std::to_string(k);
        spec.group = u / o.group_users;
        auto token = admin.create_device(spec.user_id, spec.device_id, "web");
        if (!token.ok()) {
          return fail(token.status());
        }
        spec.token = *token;
      }
    }
  };
  std::atomic<int> next_group{0};
  auto group_worker = [&] {
    client::AdminClient admin(o.host, o.admin_port, o.admin_token);
    for (int g = next_group++; g < groups; g = next_group++) {
      client::AdminConversation spec;
      spec.creator = user_of(o, g * o.group_users);
      spec.conversation_id = group_of(o, g);
      for (int u = g * o.group_users + 1; u < std::min(users, (g + 1) * o.group_users); ++u) {
        spec.members.push_back(user_of(o, u));
      }
      if (auto c = admin.create_conversation(spec); !c.ok()) {
        return fail(c.status());
      }
    }
  };
  std::vector<std::thread> threads;
  threads.reserve(kProvisionThreads);
  for (int i = 0; i < kProvisionThreads; ++i) {
    threads.emplace_back(user_worker);
  }
  for (auto& t : threads) {
    t.join();
  }
  threads.clear();
  if (!first.ok()) {
    return first;
  }
  for (int i = 0; i < kProvisionThreads; ++i) {
    threads.emplace_back(group_worker);
  }
  for (auto& t : threads) {
    t.join();
  }
  return first;
}

struct Counters {
  int authed = 0;     // auth answered ok in the current phase
  int errors = 0;     // failed connections and error answers
  int caught_up = 0;  // storm: devices that received their group's missed message
  std::int64_t last_auth_ms = 0;
  std::int64_t last_catch_up_ms = 0;
  std::string first_error;
};

// One device's connection. Reads every frame until dropped; tracks the newest change cursor and
// whether the awaited message (conversation, seq) arrived.
class Device : public std::enable_shared_from_this<Device> {
 public:
  Device(asio::io_context& io, const Options& o, const DeviceSpec& spec, int index,
         Counters& counters, Clock::time_point phase_start)
      : io_(io),
        o_(o),
        spec_(spec),
        index_(index),
        counters_(counters),
        phase_start_(phase_start),
        ws_(io),
        deadline_(io) {}

  std::uint64_t cursor = 0;
  std::string awaited_conversation;
  std::uint64_t awaited_seq = 0;  // 0: nothing awaited

  void start(bool resume) {
    resume_ = resume;
    auto& socket = beast::get_lowest_layer(ws_);
    boost::system::error_code ec;
    socket.open(tcp::v4(), ec);
    if (!ec) {
      // Lets the kernel pick the source port at connect time from the whole 4-tuple space, so
      // each source address carries its own ephemeral range.
      const int one = 1;
      ::setsockopt(socket.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
      const auto source = asio::ip::make_address_v4(
          0x7f000002U + static_cast<std::uint32_t>(index_ % std::max(1, o_.source_addresses)));
      socket.bind(tcp::endpoint(source, 0), ec);
    }
    if (ec) {
      return fail("bind: " + ec.message());
    }
    deadline_.expires_after(std::chrono::milliseconds(kConnectTimeoutMs));
    deadline_.async_wait([self = shared_from_this()](boost::system::error_code e) {
      if (!e && !self->authed_) {
        self->fail("timed out before the auth answer");
      }
    });
    const tcp::endpoint server(asio::ip::make_address(o_.host), o_.port);
    socket.async_connect(server, [self = shared_from_this()](boost::system::error_code e) {
      if (e) {
        return self->fail("connect: " + e.message());
      }
      self->ws_.async_handshake(self->o_.host, "/v1/ws", [self](boost::system::error_code e2) {
        if (e2) {
          return self->fail("handshake: " + e2.message());
        }
        self->send_auth();
        self->read();
      });
    });
  }

  // Drops the TCP connection without a close handshake, as a lost network would.
  void drop() {
    dropped_ = true;
    boost::system::error_code ec;
    beast::get_lowest_layer(ws_).close(ec);
    deadline_.cancel();
  }

 private:
  void send_auth() {
    json::object frame{{"type", "auth"},
                       {"id", "a"},
                       {"user_id", spec_.user_id},
                       {"device_id", spec_.device_id},
                       {"token", spec_.token}};
    if (resume_) {
      frame["since"] = cursor;
    }
    auto text = std::make_shared<std::string>(json::serialize(frame));
    ws_.text(true);
    ws_.async_write(asio::buffer(*text),
                    [self = shared_from_this(), text](boost::system::error_code e, std::size_t) {
                      if (e) {
                        self->fail("write: " + e.message());
                      }
                    });
  }

  void read() {
    ws_.async_read(buffer_, [self = shared_from_this()](boost::system::error_code e, std::size_t) {
      if (e) {
        if (!self->dropped_) {
          self->fail("read: " + e.message());
        }
        return;
      }
      self->on_frame(beast::buffers_to_string(self->buffer_.data()));
      self->buffer_.consume(self->buffer_.size());
      self->read();
    });
  }

  void on_frame(const std::string& text) {
    boost::system::error_code ec;
    json::value v = json::parse(text, ec);
    if (ec || !v.is_object()) {
      return fail("a frame that is not a JSON object");
    }
    const json::object& f = v.as_object();
    const json::string* type = f.if_contains("type") ? f.at("type").if_string() : nullptr;
    if (type == nullptr) {
      return fail("a frame without a type");
    }
    if (*type == "error") {
      return fail("error answer: " + json::serialize(f));
    }
    if (*type == "ok" && !authed_) {
      authed_ = true;
      deadline_.cancel();
      if (!resume_) {
        cursor = f.at("cursor").to_number<std::uint64_t>();
      }
      ++counters_.authed;
      counters_.last_auth_ms = ms_since(phase_start_);
      return;
    }
    if (*type == "change") {
      const json::object& change = f.at("change").as_object();
      cursor = std::max(cursor, change.at("cursor").to_number<std::uint64_t>());
      if (awaited_seq != 0 && change.at("kind").as_string() == "message_new" &&
          change.at("conversation_id").as_string() == awaited_conversation &&
          change.at("seq").to_number<std::uint64_t>() == awaited_seq) {
        awaited_seq = 0;
        ++counters_.caught_up;
        counters_.last_catch_up_ms = ms_since(phase_start_);
      }
    }
  }

  void fail(const std::string& why) {
    if (failed_ || dropped_) {
      return;
    }
    failed_ = true;
    ++counters_.errors;
    if (counters_.first_error.empty()) {
      counters_.first_error = spec_.device_id + ": " + why;
    }
    boost::system::error_code ec;
    beast::get_lowest_layer(ws_).close(ec);
    deadline_.cancel();
  }

  asio::io_context& io_;
  const Options& o_;
  const DeviceSpec& spec_;
  int index_;
  Counters& counters_;
  Clock::time_point phase_start_;
  beast::websocket::stream<tcp::socket> ws_;
  asio::steady_timer deadline_;
  beast::flat_buffer buffer_;
  bool resume_ = false;
  bool authed_ = false;
  bool failed_ = false;
  bool dropped_ = false;
};

// Starts one connection per device, `rate` per second spread evenly, and runs the io_context
// until `done()` holds or `timeout_ms` passes. Returns the connections.
using Devices = std::vector<std::shared_ptr<Device>>;

std::shared_ptr<Devices> connect_all(asio::io_context& io, const Options& o,
                                     const std::vector<DeviceSpec>& specs, const Devices* previous,
                                     double rate, Counters& counters,
                                     Clock::time_point phase_start) {
  auto devices = std::make_shared<Devices>();
  devices->reserve(specs.size());
  for (std::size_t i = 0; i < specs.size(); ++i) {
    auto d = std::make_shared<Device>(io, o, specs[i], static_cast<int>(i), counters, phase_start);
    if (previous != nullptr) {
      d->cursor = (*previous)[i]->cursor;
      d->awaited_conversation = (*previous)[i]->awaited_conversation;
      d->awaited_seq = (*previous)[i]->awaited_seq;
    }
    devices->push_back(d);
  }
  auto timer = std::make_shared<asio::steady_timer>(io);
  auto next = std::make_shared<std::size_t>(0);
  const bool resume = previous != nullptr;
  // Every millisecond, start the connections whose turn has come.
  auto pace = std::make_shared<std::function<void()>>();
  *pace = [timer, next, devices, rate, phase_start, resume, pace] {
    const auto due = static_cast<std::size_t>(
        std::min<double>(static_cast<double>(devices->size()),
                         static_cast<double>(ms_since(phase_start) + 1) * rate / 1000.0));
    while (*next < due) {
      (*devices)[(*next)++]->start(resume);
    }
    if (*next < devices->size()) {
      timer->expires_after(std::chrono::milliseconds(1));
      timer->async_wait([pace](boost::system::error_code e) {
        if (!e) {
          (*pace)();
        }
      });
    } else {
      *pace = nullptr;  // breaks the cycle
    }
  };
  (*pace)();
  return devices;
}

// Runs `io` in slices until `done()` or the deadline.
template <class Done>
bool run_until(asio::io_context& io, Done done, std::int64_t timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!done()) {
    if (Clock::now() > deadline) {
      return false;
    }
    io.run_for(std::chrono::milliseconds(50));
    if (io.stopped()) {
      io.restart();
    }
  }
  return true;
}

int run(const Options& o) {
  std::vector<DeviceSpec> specs;
  const auto t0 = Clock::now();
  if (Status s = provision(o, specs); !s.ok()) {
    std::fprintf(stderr, "connbench: provisioning failed: %s\n", s.to_string().c_str());
    return 1;
  }
  std::printf("connbench: provisioned %d devices in %.1f s\n", o.devices, ms_since(t0) / 1000.0);
  const int users = (o.devices + o.devices_per_user - 1) / o.devices_per_user;
  const int groups = (users + o.group_users - 1) / o.group_users;

  asio::io_context io;
  const std::int64_t rss_before = rss_bytes(o.server_pid);
  Counters phase1;
  const auto t1 = Clock::now();
  auto devices = connect_all(io, o, specs, nullptr, o.connect_rate, phase1, t1);
  const std::int64_t connect_timeout =
      kConnectTimeoutMs + static_cast<std::int64_t>(o.devices) * 1000 / o.connect_rate;
  run_until(
      io, [&] { return phase1.authed + phase1.errors >= o.devices; }, connect_timeout);
  const std::int64_t connect_ms = phase1.last_auth_ms;
  std::printf("connbench: %d authenticated, %d errors in %.1f s%s%s\n", phase1.authed,
              phase1.errors, connect_ms / 1000.0,
              phase1.first_error.empty() ? "" : "; first: ", phase1.first_error.c_str());
  const auto settle_end = Clock::now() + std::chrono::milliseconds(kSettleMs);
  run_until(
      io, [&] { return Clock::now() >= settle_end; }, kSettleMs + 1000);
  const std::int64_t rss_idle = rss_bytes(o.server_pid);
  const std::int64_t per_device = phase1.authed > 0 ? (rss_idle - rss_before) / phase1.authed : -1;
  std::printf("connbench: server RSS %.1f MiB before, %.1f MiB with %d idle devices: %lld B each\n",
              rss_before / 1048576.0, rss_idle / 1048576.0, phase1.authed,
              static_cast<long long>(per_device));

  const auto hold_end = Clock::now() + std::chrono::seconds(o.hold_s);
  run_until(
      io, [&] { return Clock::now() >= hold_end; }, o.hold_s * 1000LL + 1000);

  // The storm.
  for (auto& d : *devices) {
    d->drop();
  }
  const auto drop_end = Clock::now() + std::chrono::milliseconds(kDropSettleMs);
  run_until(
      io, [&] { return Clock::now() >= drop_end; }, kDropSettleMs + 1000);
  std::vector<std::uint64_t> group_seq(static_cast<std::size_t>(groups), 0);
  {
    client::AdminClient admin(o.host, o.admin_port, o.admin_token);
    for (int g = 0; g < groups; ++g) {
      auto sent = admin.system_message(group_of(o, g), "while you were away",
                                       o.prefix + "-storm-" + std::to_string(g));
      if (!sent.ok()) {
        std::fprintf(stderr, "connbench: system message failed: %s\n",
                     sent.status().to_string().c_str());
        return 1;
      }
      group_seq[static_cast<std::size_t>(g)] = sent->seq;
    }
  }
  for (std::size_t i = 0; i < devices->size(); ++i) {
    (*devices)[i]->awaited_conversation = group_of(o, specs[i].group);
    (*devices)[i]->awaited_seq = group_seq[static_cast<std::size_t>(specs[i].group)];
  }
  Counters storm;
  const auto t2 = Clock::now();
  const double storm_rate = static_cast<double>(o.devices) / std::max(1, o.storm_s);
  auto resumed = connect_all(io, o, specs, devices.get(), storm_rate, storm, t2);
  run_until(
      io, [&] { return storm.caught_up + storm.errors >= o.devices; },
      static_cast<std::int64_t>(o.storm_s) * 1000 + kCatchUpTimeoutMs);
  const int missing = o.devices - storm.caught_up;
  // Every session of the first generation is gone by now: memory should be back near rss_idle.
  const auto storm_settle_end = Clock::now() + std::chrono::milliseconds(kSettleMs);
  run_until(
      io, [&] { return Clock::now() >= storm_settle_end; }, kSettleMs + 1000);
  const std::int64_t rss_after_storm = rss_bytes(o.server_pid);
  std::printf(
      "connbench: storm: %d resumed (last auth at %.1f s), %d caught up (last at %.1f s), %d "
      "errors, %d missing%s%s\n",
      storm.authed, storm.last_auth_ms / 1000.0, storm.caught_up, storm.last_catch_up_ms / 1000.0,
      storm.errors, missing,
      storm.first_error.empty() ? "" : "; first: ", storm.first_error.c_str());
  std::printf(
      "CONNBENCH_RESULT devices=%d connected=%d connect_s=%.2f connect_errors=%d "
      "rss_before_mib=%.1f rss_idle_mib=%.1f bytes_per_device=%lld storm_s=%d resumed=%d "
      "resume_s=%.2f caught_up=%d catch_up_s=%.2f storm_errors=%d missing=%d "
      "rss_after_storm_mib=%.1f\n",
      o.devices, phase1.authed, connect_ms / 1000.0, phase1.errors, rss_before / 1048576.0,
      rss_idle / 1048576.0, static_cast<long long>(per_device), o.storm_s, storm.authed,
      storm.last_auth_ms / 1000.0, storm.caught_up, storm.last_catch_up_ms / 1000.0, storm.errors,
      missing, rss_after_storm / 1048576.0);
  for (auto& d : *resumed) {
    d->drop();
  }
  io.poll();
  return (phase1.errors == 0 && storm.errors == 0 && missing == 0) ? 0 : 2;
}

}  // namespace
}  // namespace herald::bench

int main(int argc, char** argv) {
  herald::bench::Options o;
  CLI::App app{"herald_connbench: many idle devices on one node and a reconnect storm"};
  app.add_option("--host", o.host, "the node's IP address");
  app.add_option("--port", o.port, "the node's client port")->required();
  app.add_option("--admin-port", o.admin_port, "the node's admin (operator) port")->required();
  app.add_option("--devices", o.devices, "devices to connect");
  app.add_option("--devices-per-user", o.devices_per_user, "devices of each user");
  app.add_option("--group-users", o.group_users, "users in each group conversation");
  app.add_option("--source-addresses", o.source_addresses,
                 "client source addresses 127.0.0.2 and up (each has its own port range)");
  app.add_option("--connect-rate", o.connect_rate, "connections started per second, phase 2");
  app.add_option("--storm-s", o.storm_s, "seconds over which every device reconnects");
  app.add_option("--server-pid", o.server_pid, "the node's process, for its memory")->required();
  app.add_option("--prefix", o.prefix, "prefix of user, device and group ids");
  app.add_option("--hold-s", o.hold_s, "seconds to stay connected and idle before the storm");
  CLI11_PARSE(app, argc, argv);
  const char* token = std::getenv("HERALD_ADMIN_TOKEN");
  o.admin_token = token != nullptr ? token : "";
  if (o.devices < 1 || o.devices_per_user < 1 || o.group_users < 1 || o.connect_rate < 1) {
    std::fprintf(stderr, "connbench: counts and rates must be positive\n");
    return 1;
  }
  return herald::bench::run(o);
}
