#include "sim/results_scenario.h"

#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <string_view>
#include <utility>
#include <vector>

#include "messaging/delivery.h"
#include "sim/messaging_scenario.h"

namespace herald::sim {

namespace {

std::string process_name(raft::NodeId replica, std::uint64_t incarnation) {
  return fmt::format("n{}#{}", replica, incarnation);
}

// Watches a messaging scenario run: feeds Herald's ledger and records the trace the baseline
// replays.
class TraceRecorder final : public MessagingObserver {
 public:
  TraceRecorder(ResultsLedger* ledger, WorkloadTrace* trace) : ledger_(ledger), trace_(trace) {}

  void on_world(const MessagingWorld& world) override {
    for (const MessagingWorld::DeviceInfo& d : world.devices) {
      trace_->devices.push_back({d.id, d.user_id, d.push_token});
      user_of_[d.id] = d.user_id;
    }
    for (const MessagingWorld::ConversationInfo& c : world.conversations) {
      trace_->conversations.push_back({c.id, c.member_user_ids});
    }
  }
  void on_connect(MonoMs t_ms, const std::string& device_id, raft::NodeId replica) override {
    trace_->connections.push_back({t_ms, device_id, replica});
    ledger_->device_online(t_ms, device_id, true);
  }
  void on_disconnect(MonoMs t_ms, const std::string& device_id) override {
    trace_->connections.push_back({t_ms, device_id, raft::kNoNode});
    ledger_->device_online(t_ms, device_id, false);
  }
  void on_send_answered(MonoMs first_ms, MonoMs t_ms, const std::string& device_id,
                        const std::string& conversation_id, const std::string& client_message_id,
                        std::uint64_t seq, bool resend) override {
    trace_->sends.push_back({first_ms, device_id, conversation_id, client_message_id});
    if (!resend) {
      ledger_->message_accepted(t_ms, conversation_id, seq, user_of_.at(device_id));
    }
  }
  void on_message_received(MonoMs t_ms, const std::string& device_id,
                           const std::string& conversation_id, std::uint64_t seq) override {
    ledger_->message_received(t_ms, device_id, conversation_id, seq);
  }
  void on_read_cursor(MonoMs t_ms, const std::string& device_id, const std::string& conversation_id,
                      std::uint64_t seq) override {
    ledger_->read_view(t_ms, device_id, conversation_id, seq);
  }
  void on_read_closed(MonoMs first_ms, MonoMs /*t_ms*/, const std::string& device_id,
                      const std::string& conversation_id, std::uint64_t seq,
                      bool completed) override {
    trace_->reads.push_back({first_ms, device_id, conversation_id, seq});
    if (completed) {
      ledger_->read_done(first_ms, device_id, conversation_id, seq);
    }
  }
  void on_push(MonoMs t_ms, raft::NodeId replica, std::uint64_t incarnation,
               const messaging::PushRequest& request, bool accepted, MonoMs answer_ms) override {
    const std::string unit =
        messaging::delivery_workflow_id(request.conversation_id, request.seq, request.user_id);
    ledger_->push_attempt(t_ms, request.conversation_id, request.seq, request.device_id, accepted);
    ledger_->work_step(t_ms, process_name(replica, incarnation), unit);
    calls_.push_back(Call{replica, incarnation, unit, answer_ms});
  }
  void on_replica_life(MonoMs t_ms, raft::NodeId replica, std::uint64_t incarnation,
                       bool up) override {
    trace_->processes.push_back({t_ms, replica, up});
    if (up) {
      return;
    }
    // The work it held: deliveries whose push it sent and had not seen answered.
    std::set<std::string> units;
    for (const Call& c : calls_) {
      if (c.replica == replica && c.incarnation == incarnation && c.answer_ms > t_ms) {
        units.insert(c.unit);
      }
    }
    ledger_->crash(t_ms, process_name(replica, incarnation),
                   std::vector<std::string>(units.begin(), units.end()));
  }

 private:
  struct Call {
    raft::NodeId replica = raft::kNoNode;
    std::uint64_t incarnation = 0;
    std::string unit;
    MonoMs answer_ms = 0;
  };
  ResultsLedger* ledger_;
  WorkloadTrace* trace_;
  std::map<std::string, std::string> user_of_;  // device -> user
  std::vector<Call> calls_;
};

void add_world(ResultsLedger& ledger, const WorkloadTrace& trace) {
  for (const WorkloadTrace::Device& d : trace.devices) {
    ledger.add_device(d.id, d.user_id);
  }
  for (const WorkloadTrace::Conversation& c : trace.conversations) {
    for (const std::string& user : c.member_user_ids) {
      ledger.add_member(c.id, user);
    }
  }
}

void add_stats(BaselineStats& into, const BaselineStats& s) {
  into.jobs_enqueued += s.jobs_enqueued;
  into.jobs_done += s.jobs_done;
  into.jobs_dropped += s.jobs_dropped;
  into.jobs_lost += s.jobs_lost;
  into.jobs_left += s.jobs_left;
  into.redeliveries += s.redeliveries;
  into.retries += s.retries;
  into.sends_unanswered += s.sends_unanswered;
  into.receipts_lost += s.receipts_lost;
  into.receipts_missed += s.receipts_missed;
  into.end_ms = std::max(into.end_ms, s.end_ms);
}

std::string check_baseline(std::string_view name, const ResultFigures& f, const BaselineStats& s,
                           const ResultFigures& herald) {
  if (std::string problem = f.check_consistent(); !problem.empty()) {
    return fmt::format("{}: inconsistent counts: {}", name, problem);
  }
  if (s.jobs_enqueued != s.jobs_done + s.jobs_dropped + s.jobs_lost + s.jobs_left) {
    return fmt::format("{}: {} jobs enqueued, but {} done, {} dropped, {} lost, {} left", name,
                       s.jobs_enqueued, s.jobs_done, s.jobs_dropped, s.jobs_lost, s.jobs_left);
  }
  if (f.crashes != herald.crashes) {
    return fmt::format("{}: {} crashes, Herald's run {}", name, f.crashes, herald.crashes);
  }
  if (f.messages > herald.messages) {
    return fmt::format("{}: {} messages accepted, more than Herald's {}", name, f.messages,
                       herald.messages);
  }
  return {};
}

std::string check_seed(const ResultsSeed& r) {
  if (!r.herald_run.ok) {
    return r.herald_run.failure;
  }
  if (std::string problem = r.herald.check_consistent(); !problem.empty()) {
    return "herald: inconsistent counts: " + problem;
  }
  if (r.herald.lost_messages != 0 || r.herald.missing_receipts != 0) {
    return fmt::format("herald: {} messages lost ({} receipts missing)", r.herald.lost_messages,
                       r.herald.missing_receipts);
  }
  if (r.herald.diverged_at_end != 0) {
    return fmt::format("herald: {} (device, conversation) read states behind at the end",
                       r.herald.diverged_at_end);
  }
  if (std::string problem = check_baseline("broker baseline", r.broker, r.broker_stats, r.herald);
      !problem.empty()) {
    return problem;
  }
  return check_baseline("in-process baseline", r.in_process, r.in_process_stats, r.herald);
}

std::string ms_or_none(MonoMs ms) {
  return ms < 0 ? std::string("n/a") : fmt::format("{}", ms);
}

// Herald's figure against a baseline's, as a relative change; "n/a" when there is nothing to
// compare (the baseline's figure is 0, or a quantile has no sample).
std::string relative_change(double herald, double baseline) {
  if (baseline <= 0 || herald < 0) {
    return "n/a";
  }
  return fmt::format("{:+.0f} %", 100.0 * (herald - baseline) / baseline);
}

std::string baseline_line(std::string_view name, const BaselineStats& s) {
  return fmt::format(
      "{}: {} jobs enqueued, {} done, {} dropped after {} receives, {} lost in crashes, {} left; "
      "{} redelivered after the visibility timeout, {} retried; {} read receipts lost, {} not "
      "sent to offline devices\n",
      name, s.jobs_enqueued, s.jobs_done, s.jobs_dropped, kBaselineMaxReceives, s.jobs_lost,
      s.jobs_left, s.redeliveries, s.retries, s.receipts_lost, s.receipts_missed);
}

}  // namespace

ResultsSeed run_results_seed(std::uint64_t seed, bool verbose, bool segment_log) {
  ResultsSeed out;
  out.seed = seed;
  ClusterOptions options = messaging_cluster_options(seed, verbose);
  options.segment_log = segment_log;
  out.replicas = options.replicas;
  WorkloadTrace trace;
  trace.seed = seed;
  trace.nodes = options.replicas;
  trace.provider_timeout_chance = kResultsProviderTimeoutChance;
  ResultsLedger herald_ledger;
  TraceRecorder recorder(&herald_ledger, &trace);
  {
    MessagingScenario scenario(options);
    scenario.set_observer(&recorder);
    scenario.set_provider_timeout_chance(kResultsProviderTimeoutChance);
    out.herald_run = scenario.run().cluster;
  }
  add_world(herald_ledger, trace);
  trace.end_ms = out.herald_run.stats.end_ms;
  const NetworkCounters& network = out.herald_run.stats.network;
  trace.node_loss = network.sent == 0
                        ? 0.0
                        : static_cast<double>(network.lost) / static_cast<double>(network.sent);
  out.herald = herald_ledger.figures(trace.end_ms);
  for (const bool durable : {true, false}) {
    ResultsLedger ledger;
    add_world(ledger, trace);
    BaselineOptions baseline_options;
    baseline_options.durable_queue = durable;
    StatelessBaseline baseline(trace, baseline_options, &ledger);
    const BaselineStats stats = baseline.run();
    (durable ? out.broker_stats : out.in_process_stats) = stats;
    (durable ? out.broker : out.in_process) = ledger.figures(stats.end_ms);
  }
  out.failure = check_seed(out);
  return out;
}

void ResultsTotals::add(const ResultsSeed& seed) {
  ++seeds;
  herald.add(seed.herald);
  broker.add(seed.broker);
  in_process.add(seed.in_process);
  add_stats(broker_stats, seed.broker_stats);
  add_stats(in_process_stats, seed.in_process_stats);
}

std::string results_seed_line(const ResultsSeed& r) {
  auto part = [](const ResultFigures& f) {
    return fmt::format(
        "{} msgs, {:.2f} pushes/delivered, {} duplicates, {} lost, {} diverged devices, resume "
        "median {} ms",
        f.messages, f.pushes_per_delivered(), f.duplicate_notifications, f.lost_messages,
        f.diverged_devices, ms_or_none(f.resume_quantile_ms(0.5)));
  };
  return fmt::format("sim: seed {} results: herald: {}; broker: {}; in-process: {}\n", r.seed,
                     part(r.herald), part(r.broker), part(r.in_process));
}

std::string results_table(const ResultsTotals& t) {
  using Text = std::function<std::string(const ResultFigures&)>;
  using Value = std::function<double(const ResultFigures&)>;
  std::string out = fmt::format(
      "results over {} seeds\n\n"
      "| measure | Herald | baseline, broker queue | baseline, in-process queue | Herald against "
      "the broker queue |\n"
      "|---|---|---|---|---|\n",
      t.seeds);
  auto row = [&](std::string_view name, const Text& text, const Value& value) {
    out += fmt::format("| {} | {} | {} | {} | {} |\n", name, text(t.herald), text(t.broker),
                       text(t.in_process),
                       value ? relative_change(value(t.herald), value(t.broker)) : "");
  };
  auto count = [](std::uint64_t ResultFigures::*field) {
    return std::pair<Text, Value>(
        [field](const ResultFigures& f) { return fmt::format("{}", f.*field); },
        [field](const ResultFigures& f) { return static_cast<double>(f.*field); });
  };
  row("messages accepted", count(&ResultFigures::messages).first, nullptr);
  row(
      "recipient deliveries delivered",
      [](const ResultFigures& f) {
        return fmt::format("{} of {}", f.delivered, f.recipient_deliveries);
      },
      nullptr);
  row(
      "push attempts per delivered message",
      [](const ResultFigures& f) { return fmt::format("{:.3f}", f.pushes_per_delivered()); },
      [](const ResultFigures& f) { return f.pushes_per_delivered(); });
  row(
      "push attempts (accepted by the provider)",
      [](const ResultFigures& f) {
        return fmt::format("{} ({})", f.push_attempts, f.pushes_accepted);
      },
      nullptr);
  const auto duplicates = count(&ResultFigures::duplicate_notifications);
  row("duplicate notifications", duplicates.first, duplicates.second);
  row(
      "lost messages (device receipts missing)",
      [](const ResultFigures& f) {
        return fmt::format("{} ({})", f.lost_messages, f.missing_receipts);
      },
      count(&ResultFigures::lost_messages).second);
  row("reads that took effect", count(&ResultFigures::reads).first, nullptr);
  const auto diverged = count(&ResultFigures::diverged_devices);
  row("devices whose read state diverged > 1 s", diverged.first, diverged.second);
  row(
      "divergence episodes: count, total s, longest ms",
      [](const ResultFigures& f) {
        return fmt::format("{}, {:.1f}, {}", f.divergence_episodes,
                           static_cast<double>(f.divergence_total_ms) / 1000.0,
                           f.divergence_max_ms);
      },
      [](const ResultFigures& f) { return static_cast<double>(f.divergence_total_ms); });
  const auto at_end = count(&ResultFigures::diverged_at_end);
  row("read states still diverged at the end", at_end.first, at_end.second);
  row(
      "crashes (with delivery work in hand)",
      [](const ResultFigures& f) { return fmt::format("{} ({})", f.crashes, f.crashes_with_work); },
      nullptr);
  row(
      "crash to first resumed delivery: median / p90 / max ms",
      [](const ResultFigures& f) {
        return fmt::format("{} / {} / {}", ms_or_none(f.resume_quantile_ms(0.5)),
                           ms_or_none(f.resume_quantile_ms(0.9)),
                           ms_or_none(f.resume_quantile_ms(1.0)));
      },
      [](const ResultFigures& f) { return static_cast<double>(f.resume_quantile_ms(0.5)); });
  row("crashes whose work never resumed", count(&ResultFigures::never_resumed).first, nullptr);
  out += "\n";
  out += baseline_line("baseline, broker queue", t.broker_stats);
  out += baseline_line("baseline, in-process queue", t.in_process_stats);
  return out;
}

}  // namespace herald::sim
