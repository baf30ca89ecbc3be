// herald_loadgen: the messaging load generator of bench/messaging.sh. Drives one system (Herald,
// NATS JetStream or Mosquitto) with the workload of bench/loadgen/workload.h and prints what it
// measured, ending with one machine-readable line (and printing LOADGEN_WINDOW_BEGIN, flushed, as
// the measured window begins):
//   LOADGEN_RESULT system=.. label=.. mode=direct|group senders=.. recipients=.. window=..
//     body_bytes=.. duration_s=.. sends_per_s=.. msgs_per_s=.. p50_ms=.. p99_ms=.. p999_ms=..
//     server_cpu_us_per_msg=.. server_rss_mib=.. client_cpu_us_per_msg=.. errors=.. lost=..
// msgs_per_s counts messages received by recipients in the measured window (in group mode each
// recipient's copy counts); server CPU per message divides the server processes' CPU time in the
// window (/proc/<pid>/stat utime + stime) by those messages. `lost`: messages whose send was
// acknowledged but which a recipient never received by the end of the drain.
// Exit status: 0 when the run completed (errors are reported, not fatal), 1 when setup failed,
// 2 on bad options.
#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench/loadgen/driver.h"
#include "bench/loadgen/workload.h"

namespace herald::bench {

#ifndef HERALD_LOADGEN_NATS
Result<std::unique_ptr<Driver>> make_nats_driver(const Options&) {
  return Status::failed_precondition("built without libnats: bash scripts/install-deps.sh --bench");
}
#endif
#ifndef HERALD_LOADGEN_MOSQUITTO
Result<std::unique_ptr<Driver>> make_mosquitto_driver(const Options&) {
  return Status::failed_precondition(
      "built without libmosquitto: bash scripts/install-deps.sh --bench");
}
#endif

namespace {

struct Totals {
  ThreadStats all;
  std::uint64_t lost = 0;
  std::uint64_t errors = 0;
};

// Merges the threads' figures; counts as lost what a recipient should have received (its
// sender's acknowledged sends, or every sender's in group mode) and did not.
Totals merge(const Options& o, std::vector<ThreadStats>& senders,
             std::vector<ThreadStats>& recipients) {
  Totals t;
  std::uint64_t all_sent = 0;
  for (const ThreadStats& s : senders) all_sent += s.sends_ok;
  for (int j = 0; j < static_cast<int>(recipients.size()); ++j) {
    const std::uint64_t expected = o.group_mode() ? all_sent : senders[j].sends_ok;
    if (recipients[j].received < expected) t.lost += expected - recipients[j].received;
  }
  for (auto* group : {&senders, &recipients}) {
    for (ThreadStats& s : *group) {
      t.all.sends_ok += s.sends_ok;
      t.all.sends_ok_in_window += s.sends_ok_in_window;
      t.all.received += s.received;
      t.all.received_in_window += s.received_in_window;
      t.all.acks_ok += s.acks_ok;
      t.all.latency_us.insert(t.all.latency_us.end(), s.latency_us.begin(), s.latency_us.end());
      for (const auto& [kind, n] : s.errors) {
        t.all.errors[kind] += n;
        t.errors += n;
      }
    }
  }
  return t;
}

void report(const Options& o, Totals& t, const ProcessSample& server0, const ProcessSample& server1,
            double client_cpu_s) {
  const double seconds = o.duration_s;
  const double msgs = static_cast<double>(t.all.received_in_window);
  auto per_msg_us = [&](double cpu_s) { return msgs > 0 ? cpu_s * 1e6 / msgs : 0.0; };
  auto ms = [&](double q) { return quantile(t.all.latency_us, q) / 1000.0; };
  const double p50 = ms(0.50);
  const double p99 = ms(0.99);
  const double p999 = ms(0.999);
  std::printf("%s: %llu sends acknowledged, %llu messages received, %llu acknowledgements\n",
              o.label.c_str(), static_cast<unsigned long long>(t.all.sends_ok),
              static_cast<unsigned long long>(t.all.received),
              static_cast<unsigned long long>(t.all.acks_ok));
  for (const auto& [kind, n] : t.all.errors) {
    std::printf("  error %s: %llu\n", kind.c_str(), static_cast<unsigned long long>(n));
  }
  if (server1.missing > 0)
    std::printf("  %d server processes could not be sampled\n", server1.missing);
  std::printf(
      "LOADGEN_RESULT system=%s label=%s mode=%s senders=%d recipients=%d window=%d "
      "body_bytes=%zu duration_s=%u sends_per_s=%.0f msgs_per_s=%.0f p50_ms=%.2f p99_ms=%.2f "
      "p999_ms=%.2f server_cpu_us_per_msg=%.1f server_rss_mib=%.1f client_cpu_us_per_msg=%.1f "
      "errors=%llu lost=%llu\n",
      o.system.c_str(), o.label.c_str(), o.group_mode() ? "group" : "direct", o.senders(),
      o.recipients(), o.window, o.body_bytes, o.duration_s,
      static_cast<double>(t.all.sends_ok_in_window) / seconds, msgs / seconds, p50, p99, p999,
      per_msg_us(server1.cpu_s - server0.cpu_s), server1.rss_mib, per_msg_us(client_cpu_s),
      static_cast<unsigned long long>(t.errors), static_cast<unsigned long long>(t.lost));
}

// Runs the prepared driver: one thread per connection, warm-up, the measured window, the drain.
int run(const Options& o, Driver& driver) {
  RunClock clock(o.senders());
  std::vector<ThreadStats> sender_stats(o.senders());
  std::vector<ThreadStats> recipient_stats(o.recipients());
  std::vector<std::thread> threads;
  threads.reserve(static_cast<std::size_t>(o.recipients()) + static_cast<std::size_t>(o.senders()));
  for (int j = 0; j < o.recipients(); ++j) {
    threads.emplace_back([&, j] { driver.run_recipient(j, clock, recipient_stats[j]); });
  }
  for (int i = 0; i < o.senders(); ++i) {
    threads.emplace_back([&, i] {
      driver.run_sender(i, clock, sender_stats[i]);
      clock.sender_done();
    });
  }
  std::this_thread::sleep_for(std::chrono::seconds(o.warmup_s));
  const ProcessSample server0 = sample_processes(o.server_pids);
  const double client0 = self_cpu_s();
  clock.begin_window();
  // For a profiler that attaches to the servers for the window (bench/messaging.sh, PERF_STAT).
  std::printf("LOADGEN_WINDOW_BEGIN\n");
  std::fflush(stdout);
  std::this_thread::sleep_for(std::chrono::seconds(o.duration_s));
  clock.end_window();
  const ProcessSample server1 = sample_processes(o.server_pids);
  const double client1 = self_cpu_s();
  clock.stop_sending();
  for (std::thread& t : threads) t.join();
  Totals totals = merge(o, sender_stats, recipient_stats);
  report(o, totals, server0, server1, client1 - client0);
  return 0;
}

}  // namespace
}  // namespace herald::bench

int main(int argc, char** argv) {
  using herald::bench::Options;
  Options o;
  std::vector<std::string> endpoints;
  std::string admin;
  CLI::App app{"Herald's messaging load generator (bench/messaging.sh)"};
  app.add_option("--system", o.system, "herald, nats or mosquitto")->required();
  app.add_option("--endpoint", endpoints, "client endpoint host:port (repeat for several nodes)")
      ->required();
  app.add_option("--admin", admin, "herald: admin API host:port (the leader's)");
  app.add_option("--pairs", o.pairs, "direct mode: sender/recipient pairs");
  app.add_option("--window", o.window, "sends in flight per sender");
  app.add_option("--body-bytes", o.body_bytes, "bytes of each message body");
  app.add_option("--duration-s", o.duration_s, "measured window, seconds");
  app.add_option("--warmup-s", o.warmup_s, "warm-up before the window, seconds");
  app.add_option("--group-size", o.group_size, "group mode: members of the one group (0: direct)");
  app.add_option("--group-senders", o.group_senders, "group mode: members that send");
  app.add_option("--replicas", o.replicas, "nats: the stream's replicas");
  app.add_option("--server-pid", o.server_pids, "a server process to sample (repeat)");
  app.add_option("--label", o.label, "name printed with the result");
  app.add_option("--name-prefix", o.name_prefix, "prefix of user ids, client ids and consumers");
  CLI11_PARSE(app, argc, argv);

  for (const std::string& e : endpoints) {
    auto parsed = herald::bench::parse_endpoint(e);
    if (!parsed.ok()) {
      std::fprintf(stderr, "herald_loadgen: %s\n", parsed.status().to_string().c_str());
      return 2;
    }
    o.endpoints.push_back(*parsed);
  }
  if (!admin.empty()) {
    auto parsed = herald::bench::parse_endpoint(admin);
    if (!parsed.ok()) {
      std::fprintf(stderr, "herald_loadgen: %s\n", parsed.status().to_string().c_str());
      return 2;
    }
    o.admin = *parsed;
  }
  if (const char* token = std::getenv("HERALD_ADMIN_TOKEN"); token != nullptr)
    o.admin_token = token;
  if (o.label.empty()) o.label = o.system;
  if (herald::Status valid = herald::bench::validate(o); !valid.ok()) {
    std::fprintf(stderr, "herald_loadgen: %s\n", valid.to_string().c_str());
    return 2;
  }

  herald::Result<std::unique_ptr<herald::bench::Driver>> driver =
      o.system == "herald" ? herald::Result<std::unique_ptr<herald::bench::Driver>>(
                                 herald::bench::make_herald_driver(o))
      : o.system == "nats" ? herald::bench::make_nats_driver(o)
                           : herald::bench::make_mosquitto_driver(o);
  if (!driver.ok()) {
    std::fprintf(stderr, "herald_loadgen: %s\n", driver.status().to_string().c_str());
    return 1;
  }
  if (herald::Status prepared = (*driver)->prepare(); !prepared.ok()) {
    std::fprintf(stderr, "herald_loadgen: setup failed: %s\n", prepared.to_string().c_str());
    return 1;
  }
  std::fprintf(stderr, "herald_loadgen: %s ready: %d senders, %d recipients, pid %d\n",
               o.label.c_str(), o.senders(), o.recipients(), static_cast<int>(::getpid()));
  return herald::bench::run(o, **driver);
}
