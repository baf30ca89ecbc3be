#include "server/node_figures.h"

#include <fmt/format.h>

#include <algorithm>
#include <string_view>
#include <vector>

#include "base/assert.h"

namespace herald::server {

namespace {

constexpr std::uint64_t kPercentDenominator = 100;

// The nearest-rank p-th percentile of `sorted` (ascending, not empty).
std::uint64_t percentile(const std::vector<std::uint64_t>& sorted, std::uint64_t p) {
  HERALD_ASSERT(!sorted.empty() && p >= 1 && p <= kPercentDenominator,
                "a percentile of some samples");
  const std::size_t rank = (sorted.size() * p + kPercentDenominator - 1) / kPercentDenominator;
  return sorted[rank - 1];
}

void encode_latency(const LatencySummary& s, rsmpb::LatencyFigures& out) {
  out.set_count(s.count);
  out.set_p50_us(s.p50_us);
  out.set_p99_us(s.p99_us);
  out.set_max_us(s.max_us);
}

Result<LatencySummary> decode_latency(std::string_view name, const rsmpb::LatencyFigures& in) {
  const LatencySummary s{in.count(), in.p50_us(), in.p99_us(), in.max_us()};
  if (s.count == 0 && (s.p50_us != 0 || s.p99_us != 0 || s.max_us != 0)) {
    return Status::invalid_argument(fmt::format("{} latency has percentiles but no samples", name));
  }
  if (s.p50_us > s.p99_us || s.p99_us > s.max_us) {
    return Status::invalid_argument(
        fmt::format("{} latency percentiles are out of order (p50 {} us, p99 {} us, max {} us)",
                    name, s.p50_us, s.p99_us, s.max_us));
  }
  if (s.max_us > kMaxFiguresLatencyUs) {
    return Status::invalid_argument(fmt::format("{} latency of {} us is above the bound of {} us",
                                                name, s.max_us, kMaxFiguresLatencyUs));
  }
  return s;
}

}  // namespace

void RecentLatency::observe(MonoMs now_ms, std::int64_t micros) {
  samples_.emplace_back(now_ms, static_cast<std::uint64_t>(std::max<std::int64_t>(micros, 0)));
  if (samples_.size() > kMaxLatencySamples) {
    samples_.pop_front();
  }
}

void RecentLatency::forget_before(MonoMs now_ms) {
  while (!samples_.empty() && samples_.front().first <= now_ms - kLatencyWindowMs) {
    samples_.pop_front();
  }
}

LatencySummary RecentLatency::summary(MonoMs now_ms) {
  forget_before(now_ms);
  LatencySummary s;
  if (samples_.empty()) {
    return s;
  }
  std::vector<std::uint64_t> sorted;
  sorted.reserve(samples_.size());
  for (const auto& [at, micros] : samples_) {
    sorted.push_back(micros);
  }
  std::sort(sorted.begin(), sorted.end());
  s.count = sorted.size();
  s.p50_us = percentile(sorted, 50);
  s.p99_us = percentile(sorted, 99);
  s.max_us = sorted.back();
  return s;
}

rsmpb::NodeFigures encode_node_figures(const NodeFigures& figures) {
  rsmpb::NodeFigures m;
  m.set_version(kNodeFiguresVersion);
  m.set_id(figures.id);
  m.set_window_ms(static_cast<std::uint64_t>(figures.window_ms));
  encode_latency(figures.fsync, *m.mutable_fsync());
  encode_latency(figures.commit, *m.mutable_commit());
  encode_latency(figures.apply, *m.mutable_apply());
  m.set_devices(figures.devices);
  m.set_leader_changes(figures.leader_changes);
  return m;
}

Result<NodeFigures> decode_node_figures(const rsmpb::NodeFigures& message, raft::NodeId from) {
  if (message.version() != kNodeFiguresVersion) {
    return Status::invalid_argument(fmt::format("node figures of version {} (this node reads {})",
                                                message.version(), kNodeFiguresVersion));
  }
  if (const std::size_t bytes = message.ByteSizeLong(); bytes > kMaxNodeFiguresBytes) {
    return Status::invalid_argument(
        fmt::format("node figures of {} bytes (at most {})", bytes, kMaxNodeFiguresBytes));
  }
  if (message.id() != from || from == raft::kNoNode) {
    return Status::invalid_argument(
        fmt::format("node figures of node {} sent by node {}", message.id(), from));
  }
  if (message.window_ms() == 0 || message.window_ms() > kMaxFiguresWindowMs) {
    return Status::invalid_argument(
        fmt::format("node figures over a window of {} ms", message.window_ms()));
  }
  if (message.devices() > kMaxFiguresDevices) {
    return Status::invalid_argument(fmt::format("node figures with {} devices (at most {})",
                                                message.devices(), kMaxFiguresDevices));
  }
  NodeFigures f;
  f.id = message.id();
  f.window_ms = static_cast<MonoMs>(message.window_ms());
  HERALD_ASSIGN_OR_RETURN(f.fsync, decode_latency("fsync", message.fsync()));
  HERALD_ASSIGN_OR_RETURN(f.commit, decode_latency("commit", message.commit()));
  HERALD_ASSIGN_OR_RETURN(f.apply, decode_latency("apply", message.apply()));
  f.devices = message.devices();
  f.leader_changes = message.leader_changes();
  return f;
}

void FiguresBook::record(const NodeFigures& figures, MonoMs now_ms) {
  entries_[figures.id] = Entry{figures, now_ms};
}

}  // namespace herald::server
