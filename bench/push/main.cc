// herald_pushbench: pushes per second through Herald's APNs client (push/apns.h) against the APNs
// test double (push/apns_mock.h) over one HTTP/2 connection. Driven by bench/push.sh.
//
// Two processes, so that the CPU of each side is measured on its own:
//  - `herald_pushbench --serve --public-key P`: the double on 127.0.0.1 (self-signed TLS, ALPN h2),
//    verifying every request's provider token with the public key in P; prints
//    `PUSHBENCH_SERVE port=<port> ca_file=<path>` and serves until its standard input closes.
//  - `herald_pushbench [options]`: for each run, generates a P-256 provider key, starts the
//    double as a child process (the same binary with --serve), and drives the real ApnsClient:
//    a feeder thread keeps --in-flight pushes outstanding (a new push is sent when one is
//    answered) until --pushes have been sent or --duration-s has passed. The first
//    kWarmupPushes (connection, TLS, first provider token) are not counted.
//
// Per run it reports pushes/s (200 answers only, over the time from the first counted send to
// the last answer), the latency from send() to the result (p50, p99, p99.9, max), errors, and
// CPU per push of the client process (getrusage: the feeder thread and the client's I/O thread)
// and of the double (/proc/<pid>/stat), each over the counted window. A run fails when any push
// failed, or when the client opened more than one connection or signed more than one token.
// Output: one line `PUSHBENCH_RESULT key=value ...` per run, after readable progress on stderr.
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <semaphore>
#include <sstream>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/status.h"
#include "crypto/test_keys.h"
#include "messaging/providers.h"
#include "push/apns.h"
#include "push/apns_mock.h"

namespace herald::bench {
namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr char kKeyId[] = "BENCHKEY01";
constexpr char kTeamId[] = "BENCHTEAM1";
constexpr char kTopic[] = "org.herald.bench";
// A 64-hex-digit device token, the length APNs issues today.
constexpr char kDeviceToken[] = "00fc13adff785122b4ad28809a3420982341241421348097878e577c991de8f0";
// Pushes sent and answered before the counted window: the connection, the TLS handshake and the
// first provider token are paid there.
constexpr std::uint64_t kWarmupPushes = 2000;
// Largest window accepted: the client's own queue bound.
constexpr std::uint64_t kMaxInFlight = push::kApnsMaxQueuedRequests;
// How long the double may take to print its port, in seconds.
constexpr int kServeStartTimeoutS = 10;
// Permits the feeder waits for at most before it checks the duration again.
constexpr std::chrono::milliseconds kFeederPoll{100};

struct Options {
  bool serve = false;
  std::string public_key_path;  // --serve
  std::uint32_t max_streams = push::kApnsMaxConcurrentStreams;
  std::uint64_t pushes = 200'000;
  std::uint64_t in_flight = 500;
  double duration_s = 60;
  int runs = 1;
  std::string body = "Ada: see you at the station at nine, the usual platform";
};

// ---------------------------------------------------------------------------------------------
// The double's side.

int serve(const Options& o) {
  std::ifstream in(o.public_key_path);
  std::stringstream pem;
  pem << in.rdbuf();
  push::testing::ApnsMockOptions options;
  options.provider_public_pem = pem.str();
  options.key_id = kKeyId;
  options.team_id = kTeamId;
  options.topic = kTopic;
  options.max_concurrent_streams = o.max_streams;
  options.record_requests = false;  // millions of requests: count them, keep none
  const SystemClock clock;
  Result<std::unique_ptr<push::testing::ApnsMock>> mock =
      push::testing::ApnsMock::start(options, clock);
  if (!mock.ok()) {
    std::fprintf(stderr, "pushbench serve: %s\n", mock.status().to_string().c_str());
    return 1;
  }
  std::printf("PUSHBENCH_SERVE port=%u ca_file=%s\n", (*mock)->port(), (*mock)->ca_file().c_str());
  std::fflush(stdout);
  char byte = 0;
  while (::read(STDIN_FILENO, &byte, 1) > 0) {
  }
  std::fprintf(stderr, "pushbench serve: %zu requests answered\n", (*mock)->request_count());
  return 0;
}

// ---------------------------------------------------------------------------------------------
// The client's side.

// The double as a child process: its pid, and the pipe whose closing stops it.
struct Server {
  pid_t pid = -1;
  int stdin_fd = -1;
  std::uint16_t port = 0;
  std::string ca_file;
};

Result<Server> spawn_server(const std::string& public_key_path, std::uint32_t max_streams) {
  int to_child[2];
  int from_child[2];
  if (::pipe(to_child) != 0 || ::pipe(from_child) != 0) {
    return Status::io_error("pipe failed");
  }
  const std::string streams = std::to_string(max_streams);
  const pid_t pid = ::fork();
  if (pid < 0) {
    return Status::io_error("fork failed");
  }
  if (pid == 0) {
    ::dup2(to_child[0], STDIN_FILENO);
    ::dup2(from_child[1], STDOUT_FILENO);
    ::close(to_child[1]);
    ::close(from_child[0]);
    ::execl("/proc/self/exe", "herald_pushbench", "--serve", "--public-key",
            public_key_path.c_str(), "--max-streams", streams.c_str(), nullptr);
    std::perror("exec");
    ::_exit(127);
  }
  ::close(to_child[0]);
  ::close(from_child[1]);
  Server server;
  server.pid = pid;
  server.stdin_fd = to_child[1];
  std::string line;
  const auto deadline = SteadyClock::now() + std::chrono::seconds(kServeStartTimeoutS);
  char c = 0;
  while (SteadyClock::now() < deadline && ::read(from_child[0], &c, 1) == 1 && c != '\n') {
    line.push_back(c);
  }
  ::close(from_child[0]);
  unsigned port = 0;
  char ca[4096] = {};
  if (std::sscanf(line.c_str(), "PUSHBENCH_SERVE port=%u ca_file=%4095s", &port, ca) != 2) {
    return Status::io_error("the double did not start: '" + line + "'");
  }
  server.port = static_cast<std::uint16_t>(port);
  server.ca_file = ca;
  return server;
}

void stop_server(Server& server) {
  if (server.stdin_fd >= 0) {
    ::close(server.stdin_fd);
    server.stdin_fd = -1;
  }
  if (server.pid > 0) {
    int status = 0;
    ::waitpid(server.pid, &status, 0);
    server.pid = -1;
  }
}

// CPU time of this process (every thread), in microseconds.
std::int64_t self_cpu_us() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  const auto us = [](const timeval& t) {
    return static_cast<std::int64_t>(t.tv_sec) * 1'000'000 + t.tv_usec;
  };
  return us(usage.ru_utime) + us(usage.ru_stime);
}

// CPU time of process `pid` (utime + stime from /proc/<pid>/stat), in microseconds; -1 when
// unreadable. Resolution: one clock tick (10 ms at 100 Hz).
std::int64_t process_cpu_us(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const std::size_t after_name = text.rfind(')');
  if (after_name == std::string::npos) {
    return -1;
  }
  std::istringstream fields(text.substr(after_name + 2));
  std::string field;
  std::int64_t utime = 0;
  std::int64_t stime = 0;
  // Fields 3..13 come before utime (14) and stime (15).
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14) utime = std::stoll(field);
    if (i == 15) stime = std::stoll(field);
  }
  const long ticks = ::sysconf(_SC_CLK_TCK);
  return (utime + stime) * 1'000'000 / ticks;
}

// Sends `count` pushes (ids from `first`) keeping at most `window` outstanding, stopping early
// at `stop_at`. Latencies (microseconds) go to latencies_us[i - first]; returns how many were
// sent. Every sent push has been answered when it returns.
struct Tally {
  std::atomic<std::uint64_t> ok{0};
  std::atomic<std::uint64_t> errors{0};
  std::string first_error;  // written once, by the client's I/O thread
  std::atomic<bool> has_error{false};
};

std::uint64_t drive(push::ApnsClient& client, const Options& o, std::uint64_t first,
                    std::uint64_t count, SteadyClock::time_point stop_at,
                    std::vector<std::int64_t>& latencies_us, Tally& tally) {
  // Shared with the callbacks: the last release() may still be running when drive() returns.
  const auto window =
      std::make_shared<std::counting_semaphore<>>(static_cast<std::ptrdiff_t>(o.in_flight));
  messaging::PushRequest request;
  request.user_id = "u1";
  request.device_id = "d1";
  request.platform = "ios";
  request.provider = messaging::kApnsProvider;
  request.token = kDeviceToken;
  request.conversation_id = "c-bench";
  request.title = "Ada";
  request.body = o.body;
  std::uint64_t sent = 0;
  while (sent < count) {
    if (!window->try_acquire_for(kFeederPoll)) {
      if (SteadyClock::now() >= stop_at) break;
      continue;
    }
    if (SteadyClock::now() >= stop_at) {
      window->release();
      break;
    }
    const std::uint64_t index = sent++;
    request.idempotency_key = "pb-" + std::to_string(first + index);
    request.seq = first + index;
    const SteadyClock::time_point start = SteadyClock::now();
    client.send(request, [&latencies_us, &tally, window, index,
                          start](const messaging::ProviderResult& result) {
      latencies_us[index] =
          std::chrono::duration_cast<std::chrono::microseconds>(SteadyClock::now() - start).count();
      if (result.ok) {
        ++tally.ok;
      } else {
        ++tally.errors;
        if (!tally.has_error.exchange(true)) {
          tally.first_error = result.error_type + ": " + result.error_message;
        }
      }
      window->release();
    });
  }
  for (std::uint64_t i = 0; i < o.in_flight; ++i) {
    window->acquire();  // every permit back: every push answered
  }
  return sent;
}

std::int64_t percentile(const std::vector<std::int64_t>& sorted, double p) {
  if (sorted.empty()) {
    return 0;
  }
  const auto rank =
      static_cast<std::size_t>(std::lround(p * static_cast<double>(sorted.size() - 1)));
  return sorted[std::min(rank, sorted.size() - 1)];
}

struct KeyFiles {
  std::filesystem::path dir;
  std::string private_path;
  std::string public_path;
  ~KeyFiles() {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
};

std::unique_ptr<KeyFiles> write_keys() {
  auto keys = std::make_unique<KeyFiles>();
  keys->dir =
      std::filesystem::temp_directory_path() / ("herald-pushbench-" + std::to_string(::getpid()));
  std::filesystem::create_directories(keys->dir);
  const std::string private_pem = crypto::testing::ec_private_pem("P-256");
  keys->private_path = (keys->dir / "provider.p8").string();
  keys->public_path = (keys->dir / "provider.pub").string();
  std::ofstream(keys->private_path) << private_pem;
  std::ofstream(keys->public_path) << crypto::testing::public_pem_of(private_pem);
  return keys;
}

int run_once(const Options& o, int run) {
  const std::unique_ptr<KeyFiles> keys = write_keys();
  Result<Server> spawned = spawn_server(keys->public_path, o.max_streams);
  if (!spawned.ok()) {
    std::fprintf(stderr, "pushbench: %s\n", spawned.status().to_string().c_str());
    return 1;
  }
  Server server = std::move(spawned).value();
  const SystemClock clock;
  push::ApnsConfig config;
  config.host = "127.0.0.1";
  config.port = server.port;
  config.ca_file = server.ca_file;
  config.key_pem_path = keys->private_path;
  config.key_id = kKeyId;
  config.team_id = kTeamId;
  config.topic = kTopic;
  config.max_concurrent_streams = o.max_streams;
  Result<std::unique_ptr<push::ApnsClient>> created = push::ApnsClient::create(config, clock);
  if (!created.ok()) {
    std::fprintf(stderr, "pushbench: %s\n", created.status().to_string().c_str());
    stop_server(server);
    return 1;
  }
  std::unique_ptr<push::ApnsClient> client = std::move(created).value();

  std::vector<std::int64_t> warmup_latencies(kWarmupPushes);
  Tally warmup;
  drive(*client, o, 0, kWarmupPushes, SteadyClock::time_point::max(), warmup_latencies, warmup);
  if (warmup.errors > 0) {
    std::fprintf(stderr, "pushbench: warm-up failed: %s\n", warmup.first_error.c_str());
    client.reset();
    stop_server(server);
    return 1;
  }

  std::vector<std::int64_t> latencies(o.pushes);
  Tally tally;
  const std::int64_t client_cpu_before = self_cpu_us();
  const std::int64_t server_cpu_before = process_cpu_us(server.pid);
  const SteadyClock::time_point start = SteadyClock::now();
  const auto stop_at =
      start + std::chrono::duration_cast<SteadyClock::duration>(
                  std::chrono::duration<double>(o.duration_s > 0 ? o.duration_s : 1e9));
  const std::uint64_t sent = drive(*client, o, kWarmupPushes, o.pushes, stop_at, latencies, tally);
  const double seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
  const std::int64_t client_cpu = self_cpu_us() - client_cpu_before;
  const std::int64_t server_cpu = process_cpu_us(server.pid) - server_cpu_before;
  const push::ApnsStats stats = client->stats();
  client.reset();
  stop_server(server);

  latencies.resize(sent);
  std::sort(latencies.begin(), latencies.end());
  const auto per_push = [&](std::int64_t cpu_us) {
    return sent == 0 ? 0.0 : static_cast<double>(cpu_us) / static_cast<double>(sent);
  };
  std::printf(
      "PUSHBENCH_RESULT run=%d pushes=%llu ok=%llu errors=%llu in_flight=%llu seconds=%.3f "
      "pushes_per_s=%.0f p50_us=%lld p99_us=%lld p999_us=%lld max_us=%lld "
      "client_cpu_us_per_push=%.2f server_cpu_us_per_push=%.2f client_cpu_pct=%.0f "
      "server_cpu_pct=%.0f connections=%llu tokens_signed=%llu\n",
      run, static_cast<unsigned long long>(sent), static_cast<unsigned long long>(tally.ok.load()),
      static_cast<unsigned long long>(tally.errors.load()),
      static_cast<unsigned long long>(o.in_flight), seconds,
      static_cast<double>(tally.ok.load()) / seconds,
      static_cast<long long>(percentile(latencies, 0.50)),
      static_cast<long long>(percentile(latencies, 0.99)),
      static_cast<long long>(percentile(latencies, 0.999)),
      static_cast<long long>(latencies.empty() ? 0 : latencies.back()), per_push(client_cpu),
      per_push(server_cpu), 100.0 * static_cast<double>(client_cpu) / 1e6 / seconds,
      100.0 * static_cast<double>(server_cpu) / 1e6 / seconds,
      static_cast<unsigned long long>(stats.connections_opened),
      static_cast<unsigned long long>(stats.tokens_signed));
  std::fflush(stdout);
  std::fprintf(stderr, "pushbench: %llu streams opened, %llu resent\n",
               static_cast<unsigned long long>(stats.requests_sent),
               static_cast<unsigned long long>(stats.requests_retried));
  if (tally.errors > 0) {
    std::fprintf(
        stderr, "pushbench: %llu pushes failed (sent %llu streams, %llu retried), the first: %s\n",
        static_cast<unsigned long long>(tally.errors.load()),
        static_cast<unsigned long long>(stats.requests_sent),
        static_cast<unsigned long long>(stats.requests_retried), tally.first_error.c_str());
    return 1;
  }
  if (stats.connections_opened != 1 || stats.tokens_signed != 1) {
    std::fprintf(stderr, "pushbench: expected one connection and one token\n");
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace herald::bench

int main(int argc, char** argv) {
  herald::bench::Options o;
  CLI::App app{"herald_pushbench: pushes/s through the APNs client against the APNs double"};
  app.add_flag("--serve", o.serve, "run the APNs double (child process mode)");
  app.add_option("--public-key", o.public_key_path, "--serve: the provider's public key PEM");
  app.add_option("--max-streams", o.max_streams,
                 "SETTINGS_MAX_CONCURRENT_STREAMS of the double and the client's own bound");
  app.add_option("--pushes", o.pushes, "pushes per run, after the warm-up");
  app.add_option("--in-flight", o.in_flight, "pushes outstanding at once");
  app.add_option("--duration-s", o.duration_s, "stop sending after this many seconds (0: never)");
  app.add_option("--runs", o.runs, "runs, each with a fresh double and client");
  app.add_option("--body", o.body, "the notification's body text");
  CLI11_PARSE(app, argc, argv);
  ::signal(SIGPIPE, SIG_IGN);
  if (o.serve) {
    return herald::bench::serve(o);
  }
  if (o.pushes < 1 || o.in_flight < 1 || o.in_flight > herald::bench::kMaxInFlight || o.runs < 1 ||
      o.max_streams < 1 || o.max_streams > herald::push::kApnsMaxConcurrentStreams) {
    std::fprintf(stderr,
                 "pushbench: --pushes, --runs >= 1; --in-flight 1..%llu; --max-streams "
                 "1..%u\n",
                 static_cast<unsigned long long>(herald::bench::kMaxInFlight),
                 herald::push::kApnsMaxConcurrentStreams);
    return 1;
  }
  int failed = 0;
  for (int run = 1; run <= o.runs; ++run) {
    failed |= herald::bench::run_once(o, run);
  }
  return failed;
}
