#include "sim/stateless_baseline.h"

#include <fmt/format.h>

#include <algorithm>
#include <optional>

#include "base/assert.h"
#include "messaging/domain.h"
#include "sim/cluster.h"
#include "sim/messaging_scenario.h"

namespace herald::sim {

namespace {

// Independent random streams of the baseline, from the run's seed.
constexpr std::uint64_t kServiceSalt = 41;
constexpr std::uint64_t kProviderSalt = 42;
constexpr std::uint64_t kNetworkSalt = 43;

}  // namespace

struct StatelessBaseline::Device {
  struct PendingRead {
    WorkloadTrace::Read read;
    std::optional<MonoMs> first_ms;  // when it first left the device
    bool recorded = false;           // its database write happened
  };
  std::size_t index = 0;
  std::string id;
  std::string user_id;
  bool push_token = false;
  raft::NodeId node = raft::kNoNode;                      // connected to, or kNoNode
  std::uint64_t connection = 0;                           // bumped on every connect and disconnect
  std::set<std::pair<std::string, std::uint64_t>> holds;  // messages it received
  std::deque<WorkloadTrace::Send> outbox;
  bool send_busy = false;
  std::deque<PendingRead> reads;
  bool read_busy = false;
};

StatelessBaseline::StatelessBaseline(const WorkloadTrace& trace, const BaselineOptions& options,
                                     ResultsLedger* ledger)
    : trace_(trace),
      options_(options),
      ledger_(ledger),
      service_rng_(derive_seed(trace.seed, kServiceSalt)),
      provider_rng_(derive_seed(trace.seed, kProviderSalt)),
      network_rng_(derive_seed(trace.seed, kNetworkSalt)) {
  HERALD_ASSERT(ledger_ != nullptr, "the baseline reports to a ledger");
  for (const WorkloadTrace::Device& d : trace_.devices) {
    Device device;
    device.index = devices_.size();
    device.id = d.id;
    device.user_id = d.user_id;
    device.push_token = d.push_token;
    device_index_.emplace(d.id, devices_.size());
    devices_.push_back(std::move(device));
  }
  for (const WorkloadTrace::Conversation& c : trace_.conversations) {
    members_[c.id].insert(c.member_user_ids.begin(), c.member_user_ids.end());
  }
}

StatelessBaseline::~StatelessBaseline() = default;

// ---- The event loop ----

void StatelessBaseline::at(MonoMs t_ms, std::function<void()> fn) {
  events_.emplace(std::pair(std::max(t_ms, now()), next_event_++), std::move(fn));
}

bool StatelessBaseline::alive(raft::NodeId node, std::uint64_t incarnation) const {
  auto it = processes_.find(node);
  return it != processes_.end() && it->second.up && it->second.incarnation == incarnation;
}

MonoMs StatelessBaseline::service_latency() {
  return service_rng_.range(kBaselineMinServiceLatencyMs, kBaselineMaxServiceLatencyMs);
}

std::string StatelessBaseline::process_name(raft::NodeId node) const {
  return fmt::format("n{}#{}", node, processes_.at(node).incarnation);
}

namespace {

std::string unit_name(bool inbox, const std::string& conversation_id, std::uint64_t seq,
                      const std::string& user_id) {
  return fmt::format("{}/{}/{}/{}", inbox ? "inbox" : "push", conversation_id, seq, user_id);
}

}  // namespace

bool StatelessBaseline::idle() const {
  if (!broker_jobs_.empty()) {
    return false;
  }
  for (const auto& [node, process] : processes_) {
    if (!process.local_jobs.empty()) {
      return false;
    }
  }
  return std::all_of(devices_.begin(), devices_.end(), [](const Device& d) {
    return d.outbox.empty() && d.reads.empty() && !d.send_busy && !d.read_busy;
  });
}

BaselineStats StatelessBaseline::run() {
  for (raft::NodeId node = 1; node <= static_cast<raft::NodeId>(trace_.nodes); ++node) {
    processes_.emplace(node, Process{});
    at(0, [this, node] { poll(node, 1); });
  }
  for (const WorkloadTrace::ProcessLife& p : trace_.processes) {
    at(p.t_ms, [this, p] {
      if (p.up) {
        process_up(p.node);
      } else {
        process_down(p.node);
      }
    });
  }
  for (const WorkloadTrace::Connection& c : trace_.connections) {
    at(c.t_ms, [this, c] {
      Device& d = devices_[device_index_.at(c.device_id)];
      if (c.node == raft::kNoNode) {
        disconnect(d);
      } else {
        connect(d, c.node);
      }
    });
  }
  for (const WorkloadTrace::Send& s : trace_.sends) {
    at(s.t_ms, [this, s] {
      Device& d = devices_[device_index_.at(s.device_id)];
      d.outbox.push_back(s);
      pump(d);
    });
  }
  for (const WorkloadTrace::Read& r : trace_.reads) {
    at(r.t_ms, [this, r] {
      Device& d = devices_[device_index_.at(r.device_id)];
      d.reads.push_back(Device::PendingRead{r, std::nullopt, false});
      pump(d);
    });
  }
  while (!events_.empty()) {
    auto it = events_.begin();
    if (it->first.first > kBaselineEndLimitMs) {
      break;
    }
    clock_.set_ms(std::max(now(), it->first.first));
    const std::function<void()> fn = std::move(it->second);
    events_.erase(it);
    fn();
    if (now() >= trace_.end_ms && idle()) {
      break;
    }
  }
  stats_.end_ms = now();
  stats_.jobs_left = broker_jobs_.size();
  for (const auto& [node, process] : processes_) {
    stats_.jobs_left += process.local_jobs.size();
  }
  for (const Device& d : devices_) {
    stats_.sends_unanswered += d.outbox.size();
  }
  return stats_;
}

// ---- Processes and devices ----

void StatelessBaseline::process_up(raft::NodeId node) {
  Process& p = processes_[node];
  if (p.up) {
    return;  // the first incarnation, up from the start
  }
  p.up = true;
  ++p.incarnation;
  const std::uint64_t incarnation = p.incarnation;
  at(now(), [this, node, incarnation] { poll(node, incarnation); });
}

// A crash: the process's connections, requests in flight and jobs in hand are gone; an in-process
// queue loses everything queued in it.
void StatelessBaseline::process_down(raft::NodeId node) {
  Process& p = processes_[node];
  if (!p.up) {
    return;
  }
  std::vector<std::string> units;
  for (const auto& [id, job] : queue_of(node)) {
    const bool held = job.owner == node && job.owner_incarnation == p.incarnation;
    if (held || !options_.durable_queue) {
      units.push_back(
          unit_name(job.kind == JobKind::kInbox, job.conversation_id, job.seq, job.user_id));
    }
  }
  ledger_->crash(now(), process_name(node), std::move(units));
  if (!options_.durable_queue) {
    stats_.jobs_lost += p.local_jobs.size();
    p.local_jobs.clear();
  }
  p.up = false;
  for (Device& d : devices_) {
    if (d.node == node) {
      disconnect(d);
    }
  }
}

void StatelessBaseline::connect(Device& d, raft::NodeId node) {
  if (d.node != raft::kNoNode) {
    disconnect(d);
  }
  if (!processes_[node].up) {
    // The trace's node runs in Herald's run at this time, and crashes are the same: this only
    // happens when two events share a time. Any running node serves the device.
    auto up = std::find_if(processes_.begin(), processes_.end(),
                           [](const auto& entry) { return entry.second.up; });
    if (up == processes_.end()) {
      return;
    }
    node = up->first;
  }
  d.node = node;
  ++d.connection;
  ledger_->device_online(now(), d.id, true);
  pull_inbox(d);
  pump(d);
}

void StatelessBaseline::disconnect(Device& d) {
  if (d.node == raft::kNoNode) {
    return;
  }
  d.node = raft::kNoNode;
  ++d.connection;
  d.send_busy = false;  // a request in flight is abandoned; the device asks again on reconnect
  d.read_busy = false;
  ledger_->device_online(now(), d.id, false);
}

void StatelessBaseline::pull_inbox(Device& d) {
  for (const auto& [conversation_id, seq] : inboxes_[d.user_id]) {
    if (d.holds.emplace(conversation_id, seq).second) {
      ledger_->message_received(now(), d.id, conversation_id, seq);
    }
  }
}

// ---- The API ----

void StatelessBaseline::pump(Device& d) {
  if (d.node == raft::kNoNode) {
    return;
  }
  const raft::NodeId node = d.node;
  const std::uint64_t incarnation = processes_.at(node).incarnation;
  const std::size_t device = d.index;
  const std::uint64_t connection = d.connection;
  if (!d.send_busy && !d.outbox.empty()) {
    d.send_busy = true;
    at(now(), [=, this] { api_send(node, incarnation, device, connection); });
  }
  if (!d.read_busy && !d.reads.empty()) {
    d.read_busy = true;
    if (!d.reads.front().first_ms) {
      d.reads.front().first_ms = now();
    }
    at(now(), [=, this] { api_read(node, incarnation, device, connection); });
  }
}

// Insert, then enqueue: two writes with a crash window between them.
void StatelessBaseline::api_send(raft::NodeId node, std::uint64_t incarnation, std::size_t device,
                                 std::uint64_t connection) {
  Device& d = devices_[device];
  if (!alive(node, incarnation) || d.connection != connection || d.outbox.empty()) {
    return;
  }
  const WorkloadTrace::Send s = d.outbox.front();
  auto [it, fresh] = client_ids_.try_emplace({d.id, s.client_message_id}, 0);
  if (fresh) {
    it->second = ++last_seq_[s.conversation_id];
    messages_[{s.conversation_id, it->second}] = Message{d.user_id, false};
  }
  const std::uint64_t seq = it->second;
  const std::string sender = d.user_id;
  at(now() + service_latency(), [=, this] {
    if (!alive(node, incarnation)) {
      return;  // stored without jobs; the device sends again on its next connection
    }
    for (const std::string& user : members_[s.conversation_id]) {
      enqueue(node, Job{JobKind::kInbox, s.conversation_id, seq, user, sender, 0, now(),
                        raft::kNoNode, 0});
    }
    at(now() + service_latency(), [=, this] {
      Device& dev = devices_[device];
      if (!alive(node, incarnation) || dev.connection != connection) {
        return;  // the answer is lost; the device sends again (the same client message id)
      }
      Message& m = messages_.at({s.conversation_id, seq});
      if (!m.accepted) {
        m.accepted = true;
        ledger_->message_accepted(now(), s.conversation_id, seq, m.sender_user_id);
      }
      dev.outbox.pop_front();
      dev.send_busy = false;
      pump(dev);
    });
  });
}

// Store the cursor, then tell the user's other connected devices, once.
void StatelessBaseline::api_read(raft::NodeId node, std::uint64_t incarnation, std::size_t device,
                                 std::uint64_t connection) {
  Device& d = devices_[device];
  if (!alive(node, incarnation) || d.connection != connection || d.reads.empty()) {
    return;
  }
  Device::PendingRead& r = d.reads.front();
  const std::string& conversation_id = r.read.conversation_id;
  const bool accepted =
      members_[conversation_id].contains(d.user_id) && r.read.seq <= last_seq_[conversation_id];
  if (accepted && !r.recorded) {
    r.recorded = true;
    std::uint64_t& cursor = read_cursors_[{d.user_id, conversation_id}];
    cursor = std::max(cursor, r.read.seq);
    ledger_->read_done(r.first_ms.value_or(now()), d.id, conversation_id, r.read.seq);
  }
  const std::uint64_t seq = r.read.seq;
  at(now() + service_latency(), [=, this] {
    if (!alive(node, incarnation)) {
      return;
    }
    if (accepted) {
      fan_out_receipt(node, devices_[device], conversation_id, seq);
    }
    Device& dev = devices_[device];
    if (dev.connection != connection) {
      return;
    }
    dev.reads.pop_front();
    dev.read_busy = false;
    pump(dev);
  });
}

void StatelessBaseline::fan_out_receipt(raft::NodeId from, const Device& reader,
                                        const std::string& conversation_id, std::uint64_t seq) {
  for (Device& e : devices_) {
    if (e.user_id != reader.user_id || e.id == reader.id) {
      continue;
    }
    if (e.node == raft::kNoNode) {
      ++stats_.receipts_missed;
      continue;
    }
    if (e.node != from && network_rng_.chance(trace_.node_loss)) {
      ++stats_.receipts_lost;
      continue;
    }
    const std::size_t device = e.index;
    const std::uint64_t connection = e.connection;
    const MonoMs latency =
        e.node == from ? 0
                       : network_rng_.range(kBaselineMinNodeLatencyMs, kBaselineMaxNodeLatencyMs);
    at(now() + latency, [=, this] {
      Device& dev = devices_[device];
      if (dev.connection != connection) {
        ++stats_.receipts_lost;
        return;
      }
      ledger_->read_view(now(), dev.id, conversation_id, seq);
    });
  }
}

// ---- The queue and the workers ----

std::map<std::uint64_t, StatelessBaseline::Job>& StatelessBaseline::queue_of(raft::NodeId node) {
  return options_.durable_queue ? broker_jobs_ : processes_.at(node).local_jobs;
}

void StatelessBaseline::enqueue(raft::NodeId node, Job job) {
  ++stats_.jobs_enqueued;
  queue_of(node).emplace(next_job_++, std::move(job));
}

StatelessBaseline::Job* StatelessBaseline::held_job(raft::NodeId node, std::uint64_t incarnation,
                                                    std::uint64_t job_id) {
  if (!alive(node, incarnation)) {
    return nullptr;
  }
  auto& queue = queue_of(node);
  auto it = queue.find(job_id);
  if (it == queue.end() || it->second.owner != node ||
      it->second.owner_incarnation != incarnation) {
    return nullptr;  // deleted, or received again by another worker after its timeout
  }
  return &it->second;
}

// Receive the visible jobs (each becomes invisible for the visibility timeout) and start them.
void StatelessBaseline::poll(raft::NodeId node, std::uint64_t incarnation) {
  if (!alive(node, incarnation)) {
    return;
  }
  auto& queue = queue_of(node);
  std::vector<std::uint64_t> taken;
  for (const auto& [id, job] : queue) {
    if (taken.size() == kBaselineMaxJobsPerPoll) {
      break;
    }
    if (job.visible_ms <= now()) {
      taken.push_back(id);
    }
  }
  for (const std::uint64_t id : taken) {
    Job& job = queue.at(id);
    stats_.redeliveries += job.owner != raft::kNoNode ? 1 : 0;  // its holder never finished it
    ++job.receives;
    if (job.kind == JobKind::kPush && job.receives > options_.max_receives) {
      ++stats_.jobs_dropped;  // to a dead-letter queue nobody reads
      queue.erase(id);
      continue;
    }
    job.owner = node;
    job.owner_incarnation = incarnation;
    job.visible_ms = now() + options_.visibility_timeout_ms;
    ledger_->work_step(
        now(), process_name(node),
        unit_name(job.kind == JobKind::kInbox, job.conversation_id, job.seq, job.user_id));
    const bool inbox = job.kind == JobKind::kInbox;
    at(now() + service_latency(), [=, this] {
      if (inbox) {
        run_inbox_job(node, incarnation, id);
      } else {
        run_push_job(node, incarnation, id);
      }
    });
  }
  at(now() + kBaselinePollIntervalMs, [this, node, incarnation] { poll(node, incarnation); });
}

// Append to the inbox (idempotent), notify the user's connected devices, queue the push.
void StatelessBaseline::run_inbox_job(raft::NodeId node, std::uint64_t incarnation,
                                      std::uint64_t job_id) {
  Job* job = held_job(node, incarnation, job_id);
  if (job == nullptr) {
    return;
  }
  const std::pair<std::string, std::uint64_t> message{job->conversation_id, job->seq};
  auto& inbox = inboxes_[job->user_id];
  if (std::find(inbox.begin(), inbox.end(), message) == inbox.end()) {
    inbox.push_back(message);
  }
  for (Device& d : devices_) {
    if (d.user_id != job->user_id || d.node == raft::kNoNode) {
      continue;
    }
    if (d.node != node && network_rng_.chance(trace_.node_loss)) {
      continue;  // the notification is lost; the device pulls on its next notice or connect
    }
    const std::size_t device = d.index;
    const std::uint64_t connection = d.connection;
    const MonoMs latency =
        d.node == node ? 0
                       : network_rng_.range(kBaselineMinNodeLatencyMs, kBaselineMaxNodeLatencyMs);
    at(now() + latency, [this, device, connection] {
      Device& dev = devices_[device];
      if (dev.connection == connection) {
        pull_inbox(dev);
      }
    });
  }
  if (job->user_id != job->sender_user_id) {
    Job push = *job;
    push.kind = JobKind::kPush;
    push.receives = 0;
    push.visible_ms = now() + messaging::kPushAfterMs;
    push.owner = raft::kNoNode;
    push.owner_incarnation = 0;
    enqueue(node, std::move(push));
  }
  at(now() + service_latency(),
     [this, node, incarnation, job_id] { delete_job(node, incarnation, job_id); });
}

// Push every device of the recipient that has a token and does not hold the message; the job
// succeeds only if every call does.
void StatelessBaseline::run_push_job(raft::NodeId node, std::uint64_t incarnation,
                                     std::uint64_t job_id) {
  Job* job = held_job(node, incarnation, job_id);
  if (job == nullptr) {
    return;
  }
  std::vector<const Device*> pending;
  for (const Device& d : devices_) {
    if (d.user_id == job->user_id && d.push_token &&
        !d.holds.contains({job->conversation_id, job->seq})) {
      pending.push_back(&d);
    }
  }
  if (pending.empty()) {
    at(now() + service_latency(),
       [this, node, incarnation, job_id] { delete_job(node, incarnation, job_id); });
    return;
  }
  struct Answers {
    std::size_t remaining = 0;
    bool all_accepted = true;
  };
  auto answers = std::make_shared<Answers>(Answers{pending.size(), true});
  for (const Device* d : pending) {
    const bool timed_out =
        trace_.provider_timeout_chance > 0 && provider_rng_.chance(trace_.provider_timeout_chance);
    const bool accepted = !timed_out && !provider_rng_.chance(kSimProviderFailureChance);
    ledger_->push_attempt(now(), job->conversation_id, job->seq, d->id, accepted);
    const MonoMs answer_ms = now() + (timed_out ? kSimProviderTimeoutMs
                                                : provider_rng_.range(kSimMinProviderLatencyMs,
                                                                      kSimMaxProviderLatencyMs));
    at(answer_ms, [this, node, incarnation, job_id, accepted, answers] {
      if (!alive(node, incarnation)) {
        return;
      }
      answers->all_accepted = answers->all_accepted && accepted;
      if (--answers->remaining == 0) {
        finish_push_job(node, incarnation, job_id, answers->all_accepted);
      }
    });
  }
}

void StatelessBaseline::finish_push_job(raft::NodeId node, std::uint64_t incarnation,
                                        std::uint64_t job_id, bool all_accepted) {
  Job* job = held_job(node, incarnation, job_id);
  if (job == nullptr) {
    return;
  }
  if (all_accepted) {
    at(now() + service_latency(),
       [this, node, incarnation, job_id] { delete_job(node, incarnation, job_id); });
    return;
  }
  // Fixed-interval retry: the whole job becomes visible again after the interval.
  ++stats_.retries;
  job->owner = raft::kNoNode;
  job->owner_incarnation = 0;
  job->visible_ms = now() + options_.retry_interval_ms;
}

void StatelessBaseline::delete_job(raft::NodeId node, std::uint64_t incarnation,
                                   std::uint64_t job_id) {
  if (held_job(node, incarnation, job_id) == nullptr) {
    return;
  }
  queue_of(node).erase(job_id);
  ++stats_.jobs_done;
}

}  // namespace herald::sim
