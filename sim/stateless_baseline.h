// StatelessBaseline: the design Herald's delivery workflows and read-sync sagas replace, simulated
// for comparison only (docs/results.md). It lives in the simulator and nowhere else.
//
// The design: every node runs an API server and a queue worker over one shared database. A send
// inserts the message (the database assigns the conversation's seq and answers a repeated client
// message id with the first seq), then enqueues one "inbox" job per member user. An inbox job
// appends the message to the user's inbox, notifies the user's connected devices (which then pull
// their inbox), and for a recipient other than the sender enqueues a "push" job delayed by
// messaging::kPushAfterMs, the same socket grace Herald gives. A push job calls the push provider
// for each of the recipient's devices that has a push token and does not hold the message yet;
// if any call fails it is retried as a whole after a fixed interval (the job keeps no memory of
// which devices already got their push), at most BaselineOptions::max_attempts receives, then
// dropped. A worker receives a job for a visibility timeout and deletes it when done; a job a
// crashed worker held is received again once its timeout expires. A device reporting a read makes
// its node store the user's read cursor and send a fire-and-forget receipt to each of the user's
// other connected devices; nothing resends a receipt that is lost or that an offline device
// misses, and a reconnecting device pulls its inbox, not its read state.
//
// Queue durability (BaselineOptions::durable_queue): a broker's queue (outside the nodes, it
// survives every crash), or an in-process queue per node (a crash loses every job queued there).
//
// Assumptions in the baseline's favour, stated so the comparison can be judged: the database and
// the broker never fail, lose or delay anything beyond their latency; a push job sees at once
// which devices hold the message (Herald waits for the devices' acknowledgements); and the links
// between a device and its node never lose anything (as in Herald's scenario).
//
// Input: the trace of one Herald run of the messaging scenario (WorkloadTrace): the same world,
// the same device connections (to the same node ids at the same times), the same sends and reads
// at the times the devices first made them, the same process crashes and restarts, and the
// loss rate the seed's network had between nodes, which fire-and-forget notifications between
// nodes suffer. The push provider answers with the same latency and failure chance as in Herald's
// scenario (timeouts included), from a stream of the seed. Everything it does is reported to a
// ResultsLedger.
//
// Determinism: one event queue ordered by (time, sequence); Rngs derived from the seed; ordered
// containers only. Thread-safety: none.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/random.h"
#include "raft/types.h"
#include "sim/results_ledger.h"

namespace herald::sim {

// The baseline's settings (named after what a queue service calls them).
inline constexpr MonoMs kBaselineVisibilityTimeoutMs = 5'000;
inline constexpr MonoMs kBaselineRetryIntervalMs = 1'000;  // fixed: no backoff
inline constexpr std::uint32_t kBaselineMaxReceives = 5;   // then the job is dropped
inline constexpr MonoMs kBaselinePollIntervalMs = 100;     // each worker polls its queue
inline constexpr std::size_t kBaselineMaxJobsPerPoll = 10;
inline constexpr MonoMs kBaselineMinServiceLatencyMs = 1;  // database and broker calls
inline constexpr MonoMs kBaselineMaxServiceLatencyMs = 5;
inline constexpr MonoMs kBaselineMinNodeLatencyMs = 1;  // between two nodes
inline constexpr MonoMs kBaselineMaxNodeLatencyMs = 10;
// The run ends once the trace's end is past and nothing is left to do, or here at the latest.
inline constexpr MonoMs kBaselineEndLimitMs = 60'000;

// One Herald run of the messaging scenario, as the baseline replays it.
struct WorkloadTrace {
  struct Device {
    std::string id;
    std::string user_id;
    bool push_token = false;
  };
  struct Conversation {
    std::string id;
    std::vector<std::string> member_user_ids;
  };
  struct ProcessLife {
    MonoMs t_ms = 0;
    raft::NodeId node = raft::kNoNode;
    bool up = false;
  };
  struct Connection {
    MonoMs t_ms = 0;
    std::string device_id;
    raft::NodeId node = raft::kNoNode;  // kNoNode: the device disconnects
  };
  struct Send {
    MonoMs t_ms = 0;  // when the device first sent it
    std::string device_id;
    std::string conversation_id;
    std::string client_message_id;
  };
  struct Read {
    MonoMs t_ms = 0;  // when the device first reported it
    std::string device_id;
    std::string conversation_id;
    std::uint64_t seq = 0;
  };

  std::uint64_t seed = 0;
  int nodes = 3;           // node ids 1..nodes, all up at time 0
  MonoMs end_ms = 0;       // when Herald's run ended
  double node_loss = 0.0;  // share of the messages between nodes the seed's network lost
  double provider_timeout_chance = 0.0;  // as MessagingScenario::set_provider_timeout_chance
  std::vector<Device> devices;
  std::vector<Conversation> conversations;
  std::vector<ProcessLife> processes;  // in time order
  std::vector<Connection> connections;
  std::vector<Send> sends;
  std::vector<Read> reads;
};

struct BaselineOptions {
  bool durable_queue = true;
  MonoMs visibility_timeout_ms = kBaselineVisibilityTimeoutMs;
  MonoMs retry_interval_ms = kBaselineRetryIntervalMs;
  std::uint32_t max_receives = kBaselineMaxReceives;
};

struct BaselineStats {
  std::uint64_t jobs_enqueued = 0;
  std::uint64_t jobs_done = 0;
  std::uint64_t jobs_dropped = 0;      // push jobs past max_receives
  std::uint64_t jobs_lost = 0;         // in an in-process queue when its node crashed
  std::uint64_t jobs_left = 0;         // still queued when the run ended
  std::uint64_t redeliveries = 0;      // jobs received again after a visibility timeout
  std::uint64_t retries = 0;           // push jobs put back for the fixed interval
  std::uint64_t sends_unanswered = 0;  // sends whose device never got an answer
  std::uint64_t receipts_lost = 0;     // read receipts the network or a disconnect dropped
  std::uint64_t receipts_missed = 0;   // read receipts not sent: the device was offline
  MonoMs end_ms = 0;
};

class StatelessBaseline {
 public:
  // `trace` and `ledger` are borrowed for the object's life.
  StatelessBaseline(const WorkloadTrace& trace, const BaselineOptions& options,
                    ResultsLedger* ledger);
  ~StatelessBaseline();
  StatelessBaseline(const StatelessBaseline&) = delete;
  StatelessBaseline& operator=(const StatelessBaseline&) = delete;

  // Replays the trace once. Call once.
  [[nodiscard]] BaselineStats run();

 private:
  enum class JobKind : std::uint8_t { kInbox, kPush };
  struct Job {
    JobKind kind = JobKind::kInbox;
    std::string conversation_id;
    std::uint64_t seq = 0;
    std::string user_id;         // whose inbox, or whose devices to push
    std::string sender_user_id;  // of the message
    std::uint32_t receives = 0;
    MonoMs visible_ms = 0;
    raft::NodeId owner = raft::kNoNode;  // the worker holding it, while it is invisible
    std::uint64_t owner_incarnation = 0;
  };
  struct Process {
    bool up = true;
    std::uint64_t incarnation = 1;
    std::map<std::uint64_t, Job> local_jobs;  // the in-process queue
  };
  struct Device;
  struct Message {
    std::string sender_user_id;
    bool accepted = false;  // the sender was answered
  };

  // The event loop.
  void at(MonoMs t_ms, std::function<void()> fn);
  [[nodiscard]] MonoMs now() const { return clock_.mono_ms(); }
  [[nodiscard]] bool alive(raft::NodeId node, std::uint64_t incarnation) const;
  [[nodiscard]] MonoMs service_latency();
  [[nodiscard]] std::string process_name(raft::NodeId node) const;
  [[nodiscard]] bool idle() const;

  // Processes and devices.
  void process_up(raft::NodeId node);
  void process_down(raft::NodeId node);
  void connect(Device& d, raft::NodeId node);
  void disconnect(Device& d);
  void pull_inbox(Device& d);

  // The API.
  void pump(Device& d);
  void api_send(raft::NodeId node, std::uint64_t incarnation, std::size_t device,
                std::uint64_t connection);
  void api_read(raft::NodeId node, std::uint64_t incarnation, std::size_t device,
                std::uint64_t connection);
  void fan_out_receipt(raft::NodeId from, const Device& reader, const std::string& conversation_id,
                       std::uint64_t seq);

  // The queue and the workers.
  void enqueue(raft::NodeId node, Job job);
  [[nodiscard]] std::map<std::uint64_t, Job>& queue_of(raft::NodeId node);
  void poll(raft::NodeId node, std::uint64_t incarnation);
  void run_inbox_job(raft::NodeId node, std::uint64_t incarnation, std::uint64_t job_id);
  void run_push_job(raft::NodeId node, std::uint64_t incarnation, std::uint64_t job_id);
  void finish_push_job(raft::NodeId node, std::uint64_t incarnation, std::uint64_t job_id,
                       bool all_accepted);
  void delete_job(raft::NodeId node, std::uint64_t incarnation, std::uint64_t job_id);
  [[nodiscard]] Job* held_job(raft::NodeId node, std::uint64_t incarnation, std::uint64_t job_id);

  const WorkloadTrace& trace_;
  BaselineOptions options_;
  ResultsLedger* ledger_;
  ManualClock clock_;
  Rng service_rng_;
  Rng provider_rng_;
  Rng network_rng_;
  std::map<std::pair<MonoMs, std::uint64_t>, std::function<void()>> events_;
  std::uint64_t next_event_ = 0;
  std::map<raft::NodeId, Process> processes_;
  std::vector<Device> devices_;
  std::map<std::string, std::size_t> device_index_;
  std::map<std::string, std::set<std::string>> members_;  // conversation -> users
  // The database.
  std::map<std::string, std::uint64_t> last_seq_;                            // by conversation
  std::map<std::pair<std::string, std::string>, std::uint64_t> client_ids_;  // (device, id)
  std::map<std::pair<std::string, std::uint64_t>, Message> messages_;
  std::map<std::string, std::vector<std::pair<std::string, std::uint64_t>>> inboxes_;
  std::map<std::pair<std::string, std::string>, std::uint64_t> read_cursors_;  // (user, conv)
  // The broker's queue (durable_queue).
  std::map<std::uint64_t, Job> broker_jobs_;
  std::uint64_t next_job_ = 1;
  BaselineStats stats_;
};

}  // namespace herald::sim
