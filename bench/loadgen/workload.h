// The reference messaging workload of bench/messaging.sh, shared by every system's driver, so that
// Herald, NATS JetStream and Mosquitto get the same client-side work: one thread per connection,
// blocking calls, the same in-flight window per sender, the same body size, one acknowledgement
// per received message.
//
// Shape. Direct mode: `pairs` senders, each with its own recipient (sender i to recipient i).
// Group mode: one group of `group_size` members; the first `group_senders` members send and the
// other members receive every message (a send fans out to group_size - group_senders recipients).
// Each sender keeps `window` sends in flight: the next send goes when an answer comes back.
//
// Timing. Bodies carry "<sender>:<seq>:<send time in steady-clock ns>|" padded to `body_bytes`;
// a recipient's latency sample is its steady-clock receipt time minus that send time (same
// process, same clock). Only receipts inside the measured window (after the warm-up, for
// `duration_s`) count toward throughput and latency; sends, errors and losses count over the run.
//
// Thread-safety: RunClock is shared by every load thread (atomics); each ThreadStats belongs to one
// thread until the threads are joined.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace herald::bench {

// Bounds on the options (checked by validate()).
inline constexpr int kMaxPairs = 4096;
// Herald refuses more than 64 requests in flight on one connection (`overloaded`).
inline constexpr int kMaxWindow = 64;
// The smallest body that holds the timing header.
inline constexpr std::size_t kMinBodyBytes = 48;
inline constexpr std::size_t kMaxBodyBytes = 64 * 1024;
// Herald's kMaxGroupMembers.
inline constexpr int kMaxGroupSize = 512;
inline constexpr std::uint32_t kMaxDurationS = 3'600;
inline constexpr std::uint32_t kMaxWarmupS = 600;
inline constexpr int kMaxReplicas = 5;

// One wait for a frame inside a load loop; bounds how late a thread notices a change of phase.
inline constexpr std::uint32_t kPollMs = 20;
// After the senders stop, the bound on collecting their outstanding answers and on recipients
// receiving what was sent.
inline constexpr std::uint32_t kDrainMs = 15'000;
// Once every sender is done, a recipient that received nothing for this long has received all.
inline constexpr std::uint32_t kRecipientQuietMs = 1'000;
// Latency samples one thread keeps (4 bytes each); later receipts are counted, not sampled.
inline constexpr std::size_t kMaxLatencySamplesPerThread = 4'000'000;

struct Endpoint {
  std::string host;
  std::uint16_t port = 0;
};
// "host:port"; kInvalidArgument otherwise.
[[nodiscard]] Result<Endpoint> parse_endpoint(std::string_view text);

struct Options {
  std::string system;               // "herald", "nats" or "mosquitto"
  std::vector<Endpoint> endpoints;  // client endpoints; connections are spread over them in turn
  std::optional<Endpoint> admin;    // Herald: a node's admin API (the leader's, for setup)
  std::string admin_token;          // Herald: the operator credential (HERALD_ADMIN_TOKEN)
  int pairs = 32;
  int window = 16;
  std::size_t body_bytes = 64;
  std::uint32_t duration_s = 10;
  std::uint32_t warmup_s = 3;
  int group_size = 0;  // 0: direct mode
  int group_senders = 1;
  int replicas = 1;               // JetStream: the stream's replicas
  std::vector<int> server_pids;   // sampled for CPU and resident memory
  std::string label;              // printed with the result, e.g. "herald-3"
  std::string name_prefix = "b";  // prefix of user ids, client ids and consumer names

  [[nodiscard]] bool group_mode() const { return group_size > 0; }
  [[nodiscard]] int senders() const { return group_mode() ? group_senders : pairs; }
  [[nodiscard]] int recipients() const { return group_mode() ? group_size - group_senders : pairs; }
};
// kInvalidArgument naming the first option out of its bounds.
[[nodiscard]] Status validate(const Options& options);

// Nanoseconds of the steady clock.
[[nodiscard]] std::int64_t now_ns();

// The phases of a run, set by the main thread and read by the load threads.
class RunClock {
 public:
  explicit RunClock(int senders) : senders_left_(senders) {}

  void begin_window() { window_start_ns_.store(now_ns()); }
  void end_window() { window_end_ns_.store(now_ns()); }
  // Senders stop sending and collect their outstanding answers until drain_over().
  void stop_sending() {
    stop_ns_.store(now_ns());
    stopping_.store(true);
  }
  void sender_done() { senders_left_.fetch_sub(1); }

  [[nodiscard]] bool stopping() const { return stopping_.load(); }
  // True kDrainMs after stop_sending().
  [[nodiscard]] bool drain_over() const;
  // Whether a time (now_ns()) falls inside the measured window.
  [[nodiscard]] bool in_window(std::int64_t t_ns) const {
    return t_ns >= window_start_ns_.load() && t_ns < window_end_ns_.load();
  }
  // Whether a recipient whose last receipt (or answer) was at `last_activity_ns` should go on:
  // while senders run, and then until it has been quiet for kRecipientQuietMs or the drain is over.
  [[nodiscard]] bool keep_receiving(std::int64_t last_activity_ns) const;

 private:
  static constexpr std::int64_t kNever = std::numeric_limits<std::int64_t>::max();
  std::atomic<std::int64_t> window_start_ns_{kNever};
  std::atomic<std::int64_t> window_end_ns_{kNever};
  std::atomic<std::int64_t> stop_ns_{kNever};
  std::atomic<bool> stopping_{false};
  std::atomic<int> senders_left_;
};

// What one load thread saw.
struct ThreadStats {
  std::uint64_t sends_ok = 0;
  std::uint64_t sends_ok_in_window = 0;
  std::uint64_t received = 0;
  std::uint64_t received_in_window = 0;
  std::uint64_t acks_ok = 0;
  std::vector<std::uint32_t> latency_us;        // receipts in the window, up to the per-thread cap
  std::map<std::string, std::uint64_t> errors;  // "<what>:<code>" -> count

  void count_send_ok(const RunClock& clock);
  void count_error(std::string_view what, std::string_view code) {
    ++errors[std::string(what) + ":" + std::string(code)];
  }
};

// A message body: "<sender>:<seq>:<sent_ns>|" then 'x' up to `bytes`. Precondition (asserted):
// bytes >= kMinBodyBytes.
[[nodiscard]] std::string encode_body(int sender, std::uint64_t seq, std::int64_t sent_ns,
                                      std::size_t bytes);
struct BodyHeader {
  int sender = 0;
  std::uint64_t seq = 0;
  std::int64_t sent_ns = 0;
};
// nullopt when `body` does not start with the header encode_body() writes.
[[nodiscard]] std::optional<BodyHeader> decode_body(std::string_view body);

// Counts one received message: its latency when it falls inside the window, or a
// "receive:malformed_body" error.
void record_receipt(ThreadStats& stats, const RunClock& clock, std::string_view body);

// CPU time (user + system) and resident memory of a set of processes, from /proc.
struct ProcessSample {
  double cpu_s = 0;
  double rss_mib = 0;
  int missing = 0;  // pids that could not be read (gone)
};
[[nodiscard]] ProcessSample sample_processes(const std::vector<int>& pids);
// CPU time of this process (every thread), from getrusage.
[[nodiscard]] double self_cpu_s();

// The value at quantile q (0..1) of `samples`, which it reorders; 0 when empty.
[[nodiscard]] std::uint32_t quantile(std::vector<std::uint32_t>& samples, double q);

}  // namespace herald::bench
