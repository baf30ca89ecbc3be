#include "bench/loadgen/workload.h"

#include <fmt/format.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <fstream>
#include <sstream>

#include "base/assert.h"

namespace herald::bench {

Result<Endpoint> parse_endpoint(std::string_view text) {
  const std::size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return Status::invalid_argument(fmt::format("'{}' is not host:port", text));
  }
  unsigned port = 0;
  const std::string_view digits = text.substr(colon + 1);
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
  if (ec != std::errc() || end != digits.data() + digits.size() || port == 0 || port > 65'535) {
    return Status::invalid_argument(fmt::format("'{}' has no valid port", text));
  }
  return Endpoint{std::string(text.substr(0, colon)), static_cast<std::uint16_t>(port)};
}

Status validate(const Options& o) {
  auto bad = [](std::string_view what) { return Status::invalid_argument(std::string(what)); };
  if (o.system != "herald" && o.system != "nats" && o.system != "mosquitto") {
    return bad("--system must be herald, nats or mosquitto");
  }
  if (o.endpoints.empty()) return bad("at least one --endpoint is needed");
  if (o.pairs < 1 || o.pairs > kMaxPairs)
    return bad(fmt::format("--pairs must be 1..{}", kMaxPairs));
  if (o.window < 1 || o.window > kMaxWindow) {
    return bad(fmt::format("--window must be 1..{}", kMaxWindow));
  }
  if (o.body_bytes < kMinBodyBytes || o.body_bytes > kMaxBodyBytes) {
    return bad(fmt::format("--body-bytes must be {}..{}", kMinBodyBytes, kMaxBodyBytes));
  }
  if (o.duration_s < 1 || o.duration_s > kMaxDurationS) {
    return bad(fmt::format("--duration-s must be 1..{}", kMaxDurationS));
  }
  if (o.warmup_s > kMaxWarmupS) return bad(fmt::format("--warmup-s must be 0..{}", kMaxWarmupS));
  if (o.group_mode()) {
    if (o.group_size < 2 || o.group_size > kMaxGroupSize) {
      return bad(fmt::format("--group-size must be 2..{}", kMaxGroupSize));
    }
    if (o.group_senders < 1 || o.group_senders >= o.group_size) {
      return bad("--group-senders must be at least 1 and below --group-size");
    }
  }
  if (o.replicas < 1 || o.replicas > kMaxReplicas) {
    return bad(fmt::format("--replicas must be 1..{}", kMaxReplicas));
  }
  if (o.system == "herald" && (!o.admin.has_value() || o.admin_token.empty())) {
    return bad("herald needs --admin and HERALD_ADMIN_TOKEN in the environment");
  }
  return Status::ok_status();
}

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

bool RunClock::drain_over() const {
  return now_ns() - stop_ns_.load() > std::int64_t{kDrainMs} * 1'000'000;
}

bool RunClock::keep_receiving(std::int64_t last_activity_ns) const {
  if (senders_left_.load() > 0) return !drain_over();
  return now_ns() - last_activity_ns < std::int64_t{kRecipientQuietMs} * 1'000'000 && !drain_over();
}

void ThreadStats::count_send_ok(const RunClock& clock) {
  ++sends_ok;
  if (clock.in_window(now_ns())) ++sends_ok_in_window;
}

std::string encode_body(int sender, std::uint64_t seq, std::int64_t sent_ns, std::size_t bytes) {
  HERALD_ASSERT(bytes >= kMinBodyBytes, "a body too small for its header");
  std::string body = fmt::format("{}:{}:{}|", sender, seq, sent_ns);
  HERALD_ASSERT(body.size() <= bytes, "the header outgrew kMinBodyBytes");
  body.resize(bytes, 'x');
  return body;
}

namespace {

// Reads an unsigned decimal up to `stop`; advances `text` past the stop character.
template <typename T>
bool read_field(std::string_view& text, char stop, T& out) {
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  if (ec != std::errc() || end == text.data() + text.size() || *end != stop) return false;
  text.remove_prefix(static_cast<std::size_t>(end - text.data()) + 1);
  return true;
}

}  // namespace

std::optional<BodyHeader> decode_body(std::string_view body) {
  BodyHeader h;
  if (!read_field(body, ':', h.sender) || !read_field(body, ':', h.seq) ||
      !read_field(body, '|', h.sent_ns) || h.sender < 0 || h.sent_ns < 0) {
    return std::nullopt;
  }
  return h;
}

void record_receipt(ThreadStats& stats, const RunClock& clock, std::string_view body) {
  const std::int64_t now = now_ns();
  const std::optional<BodyHeader> header = decode_body(body);
  if (!header.has_value()) {
    stats.count_error("receive", "malformed_body");
    return;
  }
  ++stats.received;
  if (!clock.in_window(now)) return;
  ++stats.received_in_window;
  if (stats.latency_us.size() < kMaxLatencySamplesPerThread) {
    const std::int64_t us = std::max<std::int64_t>(0, (now - header->sent_ns) / 1'000);
    stats.latency_us.push_back(static_cast<std::uint32_t>(std::min<std::int64_t>(us, UINT32_MAX)));
  }
}

ProcessSample sample_processes(const std::vector<int>& pids) {
  ProcessSample s;
  const double ticks_per_s = static_cast<double>(::sysconf(_SC_CLK_TCK));
  for (const int pid : pids) {
    std::ifstream stat(fmt::format("/proc/{}/stat", pid));
    std::string line;
    if (!std::getline(stat, line)) {
      ++s.missing;
      continue;
    }
    // Fields after the command name (which may hold spaces and parentheses) start at field 3,
    // the state; utime and stime are fields 14 and 15.
    std::istringstream rest(line.substr(line.rfind(')') + 2));
    std::string field;
    double utime = 0;
    double stime = 0;
    for (int n = 3; n <= 15 && rest >> field; ++n) {
      if (n == 14) utime = std::stod(field);
      if (n == 15) stime = std::stod(field);
    }
    s.cpu_s += (utime + stime) / ticks_per_s;
    std::ifstream status(fmt::format("/proc/{}/status", pid));
    while (std::getline(status, line)) {
      if (line.rfind("VmRSS:", 0) == 0) s.rss_mib += std::stod(line.substr(6)) / 1024.0;
    }
  }
  return s;
}

double self_cpu_s() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return seconds(u.ru_utime) + seconds(u.ru_stime);
}

std::uint32_t quantile(std::vector<std::uint32_t>& samples, double q) {
  if (samples.empty()) return 0;
  const auto rank =
      static_cast<std::size_t>(std::llround(q * static_cast<double>(samples.size() - 1)));
  const auto nth =
      samples.begin() + static_cast<std::ptrdiff_t>(std::min(rank, samples.size() - 1));
  std::nth_element(samples.begin(), nth, samples.end());
  return *nth;
}

}  // namespace herald::bench
