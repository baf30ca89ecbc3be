#include "sim/write_profile.h"

#include <fmt/format.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "messaging/domain.h"
#include "messaging/host.h"
#include "messaging/providers.h"
#include "rsm/kv_state_machine.h"
#include "rsm/node.h"
#include "server/recording_provider.h"
#include "storage/mem_engine.h"
#include "webhooks/delivery.h"
#include "webhooks/emitter.h"
#include "webhooks/endpoints.h"
#include "workflow/engine.h"

namespace herald::sim {

namespace {

constexpr raft::NodeId kReplicaId = 1;
// Ready rounds a single voter needs at most to elect itself and apply one command.
constexpr int kMaxRoundsPerCommand = 64;
constexpr std::int64_t kStartWallMs = ManualClock::kWallEpochMs;
// Timers and activities the push path handles per message, at most (one device: one "push" timer
// and one push activity).
constexpr std::size_t kMaxDuePerMessage = 16;
constexpr char kSender[] = "alice";
constexpr char kSenderDevice[] = "alice-phone";
constexpr char kRecipient[] = "bob";
constexpr char kRecipientDevice[] = "bob-phone";

// People's names of the record kinds, by the first two bytes of their keys (docs/storage-format.md,
// docs/workflow.md and docs/messaging.md, "Key layout").
std::string kind_of(std::string_view key) {
  static const std::map<std::string, std::string, std::less<>> kNames = {
      {"a", "replica applied state"},
      {"s", "replica sessions"},
      {"k", "kv pairs"},
      {"wr", "workflow records"},
      {"wh", "workflow history"},
      {"wa", "workflow activities"},
      {"wd", "workflow dispatch index"},
      {"wt", "workflow timers"},
      {"wv", "workflow visibility"},
      {"wg", "workflow retention"},
      {"wQ", "workflow purge queue"},
      {"wq", "workflow purge queue"},
      {"ws", "workflow summaries"},
      {"mu", "messaging users"},
      {"md", "messaging devices"},
      {"mc", "messaging conversations"},
      {"mm", "messaging messages"},
      {"mi", "messaging send dedup"},
      {"mp", "messaging members"},
      {"mv", "messaging device marks"},
      {"mx", "messaging chat index"},
      {"ms", "messaging change streams"},
      {"mg", "messaging retention"},
      {"mh", "messaging dedup expiry"},
      {"mq", "messaging dedup expiry"},
      {"mk", "messaging device expiry"},
      {"mr", "messaging device expiry"},
      {"me", "messaging message expiry"},
      {"mt", "messaging message expiry"}};
  const std::string_view head = key.substr(0, key.starts_with("w") || key.starts_with("m") ? 2 : 1);
  const auto it = kNames.find(head);
  return it != kNames.end() ? it->second : fmt::format("other ({})", head);
}

// An iterator of the replica's engine, counting the entries it stands on into `steps`.
class CountingIterator final : public storage::Iterator {
 public:
  CountingIterator(std::unique_ptr<storage::Iterator> inner, std::uint64_t* steps)
      : inner_(std::move(inner)), steps_(steps) {
    if (steps_ != nullptr && inner_->valid()) ++*steps_;
  }
  [[nodiscard]] bool valid() const override { return inner_->valid(); }
  void next() override {
    inner_->next();
    if (steps_ != nullptr && inner_->valid()) ++*steps_;
  }
  [[nodiscard]] std::string_view key() const override { return inner_->key(); }
  [[nodiscard]] std::string_view value() const override { return inner_->value(); }
  [[nodiscard]] Status status() const override { return inner_->status(); }

 private:
  std::unique_ptr<storage::Iterator> inner_;
  std::uint64_t* steps_;  // nullptr: not counted
};

// The replica's engine, counting the state writes of each batch by record kind and the state reads
// while asked to.
class CountingEngine final : public storage::Engine {
 public:
  [[nodiscard]] Result<std::optional<std::string>> get(storage::Space space,
                                                       std::string_view key) const override {
    if (counted(space)) ++reads.gets;
    return inner_.get(space, key);
  }
  [[nodiscard]] std::unique_ptr<storage::Iterator> scan(storage::Space space,
                                                        std::string_view begin,
                                                        std::string_view end) const override {
    if (!counted(space)) return inner_.scan(space, begin, end);
    ++reads.iterators;
    return std::make_unique<CountingIterator>(inner_.scan(space, begin, end), &reads.steps);
  }
  [[nodiscard]] std::unique_ptr<storage::Reader> snapshot() const override {
    return inner_.snapshot();
  }
  [[nodiscard]] Status write(const storage::WriteBatch& batch, bool sync) override {
    HERALD_RETURN_IF_ERROR(inner_.write(batch, sync));
    if (!counting) return Status::ok_status();
    for (const storage::WriteBatch::Op& op : batch.ops()) {
      if (op.space != storage::Space::kState) continue;
      WriteTally& tally = by_kind[kind_of(op.key)];
      ++(op.type == storage::WriteBatch::OpType::kPut ? tally.puts : tally.deletes);
      tally.bytes += op.key.size() + op.value.size();
    }
    return Status::ok_status();
  }

  bool counting = false;
  std::map<std::string, WriteTally> by_kind;
  mutable ReadTally reads;

 private:
  [[nodiscard]] bool counted(storage::Space space) const {
    return counting && space == storage::Space::kState;
  }

  storage::MemEngine inner_;
};

class NoPeers final : public rsm::Transport {
 public:
  bool send(raft::NodeId /*to*/, const rsmpb::PeerEnvelope& /*envelope*/) override { return true; }
  [[nodiscard]] std::uint64_t queued_bytes(raft::NodeId /*to*/) const override { return 0; }
};

rsmpb::Command module_command(std::string_view module, const google::protobuf::MessageLite& op,
                              std::int64_t wall_ms) {
  rsmpb::Command command;
  command.set_wall_ms(wall_ms);
  command.mutable_module()->set_name(std::string(module));
  command.mutable_module()->set_payload(op.SerializeAsString());
  return command;
}

// One replica of the production stack and the driver's clock.
class Replica {
 public:
  Status open() {
    for (auto& type : messaging::Host::types()) {
      HERALD_RETURN_IF_ERROR(registry_.add(std::move(type)));
    }
    HERALD_RETURN_IF_ERROR(registry_.add(webhooks::make_webhook_type()));
    host_ = std::make_unique<messaging::Host>(
        &engine_, [](const rsmpb::Command&, const rsm::ProposeCallback&) {},
        [](const std::function<void()>& fn) { fn(); }, &push_, &email_, &clock_);
    host_->bind_engine(&workflows_);
    // The webhook hooks as a node wires them (server/node_host.cc), with no endpoint registered:
    // the figures are those of a cluster without webhooks (docs/webhooks.md, "Cost").
    host_->set_event_starts(&webhooks::Emitter::starts_for);
    workflows_.set_observer(&emitter_);
    HERALD_RETURN_IF_ERROR(router_.add_module(workflow::kModuleName, &workflows_));
    HERALD_RETURN_IF_ERROR(router_.add_module(messaging::kModuleName, host_->domain()));
    HERALD_RETURN_IF_ERROR(router_.add_module(webhooks::kModuleName, &endpoints_));
    rsm::NodeConfig config;
    config.id = kReplicaId;
    config.initial_voters = {kReplicaId};
    config.seed = 1;
    HERALD_ASSIGN_OR_RETURN(node_, rsm::Node::open(config, &engine_, &transport_, &router_));
    for (int round = 0; round < kMaxRoundsPerCommand && !node_->is_leader(); ++round) {
      node_->tick();
      HERALD_RETURN_IF_ERROR(node_->process());
    }
    return node_->is_leader()
               ? Status::ok_status()
               : Status::failed_precondition("the single voter did not become leader");
  }

  // Proposes `ops` of `module` together, each stamped 1 ms after the one before, runs Ready rounds
  // until every one is answered, and returns their result payloads in order.
  Result<std::vector<std::string>> apply_round(
      std::string_view module, const std::vector<const google::protobuf::MessageLite*>& ops) {
    std::vector<std::optional<Result<rsmpb::CommandResult>>> answers(ops.size());
    for (std::size_t i = 0; i < ops.size(); ++i) {
      node_->propose(module_command(module, *ops[i], wall_ms_++),
                     [&answers, i](Result<rsmpb::CommandResult> r) { answers[i] = std::move(r); });
    }
    const auto answered = [&answers] {
      return std::all_of(answers.begin(), answers.end(),
                         [](const auto& a) { return a.has_value(); });
    };
    for (int round = 0; round < kMaxRoundsPerCommand && !answered(); ++round) {
      HERALD_RETURN_IF_ERROR(node_->process());
      if (!answered()) node_->tick();
    }
    if (!answered()) return Status::failed_precondition("a command was not answered");
    std::vector<std::string> payloads;
    payloads.reserve(answers.size());
    for (auto& answer : answers) {
      HERALD_RETURN_IF_ERROR(answer->status());
      if ((*answer)->code() != 0) {
        return Status::failed_precondition(
            fmt::format("a profiled command failed: {}", (*answer)->message()));
      }
      payloads.push_back(std::move(*(*answer)->mutable_payload()));
    }
    return payloads;
  }

  // Applies one command at the driver's time and returns its result payload.
  Result<std::string> apply(std::string_view module, const google::protobuf::MessageLite& op) {
    HERALD_ASSIGN_OR_RETURN(std::vector<std::string> payloads, apply_round(module, {&op}));
    return std::move(payloads.front());
  }

  Status messaging(const messagingpb::MessagingCommand& command) {
    return apply(messaging::kModuleName, command).status();
  }
  Status workflow(const workflowpb::WorkflowCommand& command) {
    return apply(workflow::kModuleName, command).status();
  }

  void advance_ms(std::int64_t ms) { wall_ms_ += ms; }
  [[nodiscard]] std::int64_t wall_ms() const { return wall_ms_; }
  [[nodiscard]] const rsm::NodeStats& stats() const { return node_->stats(); }
  [[nodiscard]] CountingEngine& engine() { return engine_; }

 private:
  ManualClock clock_;
  CountingEngine engine_;
  NoPeers transport_;
  workflow::Registry registry_;
  workflow::Engine workflows_{&registry_};
  webhooks::Emitter emitter_;
  webhooks::Endpoints endpoints_;
  server::RecordingPushProvider push_;
  server::RecordingEmailProvider email_;
  std::unique_ptr<messaging::Host> host_;
  rsm::KvStateMachine kv_;
  rsm::StateMachineRouter router_{&kv_};
  std::unique_ptr<rsm::Node> node_;
  std::int64_t wall_ms_ = kStartWallMs;
};

Status set_up(Replica& replica) {
  for (const auto& [user, device] :
       {std::pair{kSender, kSenderDevice}, std::pair{kRecipient, kRecipientDevice}}) {
    messagingpb::MessagingCommand c;
    c.mutable_create_user()->set_user_id(user);
    HERALD_RETURN_IF_ERROR(replica.messaging(c));
    c.Clear();
    auto* d = c.mutable_create_device();
    d->set_user_id(user);
    d->set_device_id(device);
    d->set_platform("ios");
    d->set_credential_sha256(std::string(messaging::kCredentialBytes, 'k'));
    HERALD_RETURN_IF_ERROR(replica.messaging(c));
    c.Clear();
    auto* t = c.mutable_set_push_token();
    t->set_user_id(user);
    t->set_device_id(device);
    t->set_push_provider(messaging::kApnsProvider);
    t->set_push_token(std::string(user) + "-token");
    HERALD_RETURN_IF_ERROR(replica.messaging(c));
  }
  messagingpb::MessagingCommand c;
  auto* conv = c.mutable_create_conversation();
  conv->set_user_id(kSender);
  conv->set_kind(messagingpb::DIRECT);
  conv->add_member_user_ids(kRecipient);
  return replica.messaging(c);
}

// The push path's middle for a round of `messages`: the socket grace passes, the due timers fire,
// and every dispatchable activity is reported done. The driver's reads are not counted.
Status push(Replica& replica, std::uint64_t messages) {
  replica.advance_ms(messaging::kPushAfterMs);
  const std::size_t limit = kMaxDuePerMessage * messages;
  replica.engine().counting = false;
  auto due = workflow::Engine::due_timers(replica.engine(), replica.wall_ms(), limit);
  replica.engine().counting = true;
  HERALD_RETURN_IF_ERROR(due.status());
  if (!due->empty()) {
    workflowpb::WorkflowCommand fire;
    for (const workflowpb::TimerRecord& t : *due) {
      auto* f = fire.mutable_fire_timers()->add_timers();
      f->set_workflow_id(t.workflow_id());
      f->set_run_id(t.run_id());
      f->set_timer_id(t.timer_id());
      f->set_due_ms(t.due_ms());
    }
    HERALD_RETURN_IF_ERROR(replica.workflow(fire));
  }
  replica.engine().counting = false;
  auto ready = workflow::Engine::dispatchable_activities(replica.engine(), limit);
  replica.engine().counting = true;
  HERALD_RETURN_IF_ERROR(ready.status());
  std::vector<workflowpb::WorkflowCommand> reports(ready->size());
  std::vector<const google::protobuf::MessageLite*> ops;
  for (std::size_t i = 0; i < ready->size(); ++i) {
    const workflowpb::ActivityRecord& a = (*ready)[i];
    auto* r = reports[i].mutable_report();
    r->set_workflow_id(a.workflow_id());
    r->set_run_id(a.run_id());
    r->set_activity_id(a.activity_id());
    r->set_attempt(a.attempt());
    r->set_ok(true);
    ops.push_back(&reports[i]);
  }
  if (ops.empty()) return Status::ok_status();
  return replica.apply_round(workflow::kModuleName, ops).status();
}

// Messages first..first+count-1: their sends in one round, the push path's middle, their
// acknowledgements in one round.
Status deliver(Replica& replica, const std::string& conversation_id, std::uint64_t first,
               std::uint64_t count, const WriteProfileOptions& options) {
  std::vector<messagingpb::MessagingCommand> sends(count);
  std::vector<const google::protobuf::MessageLite*> ops;
  for (std::uint64_t i = 0; i < count; ++i) {
    auto* s = sends[i].mutable_send_message();
    s->set_conversation_id(conversation_id);
    s->set_sender_user_id(kSender);
    s->set_sender_device_id(kSenderDevice);
    s->set_client_message_id(fmt::format("m{}", first + i));
    s->set_body(std::string(options.body_bytes, 'x'));
    ops.push_back(&sends[i]);
  }
  HERALD_ASSIGN_OR_RETURN(const std::vector<std::string> payloads,
                          replica.apply_round(messaging::kModuleName, ops));
  std::vector<messagingpb::MessagingCommand> acks(count);
  ops.clear();
  for (std::uint64_t i = 0; i < count; ++i) {
    messagingpb::SendResult sent;
    if (!sent.ParseFromString(payloads[i])) {
      return Status::failed_precondition("a send's result does not decode");
    }
    auto* a = acks[i].mutable_ack_delivery();
    a->set_user_id(kRecipient);
    a->set_device_id(kRecipientDevice);
    a->set_conversation_id(conversation_id);
    a->set_seq(sent.seq());
    ops.push_back(&acks[i]);
  }
  if (options.push_path) {
    HERALD_RETURN_IF_ERROR(push(replica, count));
  }
  return replica.apply_round(messaging::kModuleName, ops).status();
}

double per(std::uint64_t count, std::uint64_t n) {
  return n == 0 ? 0.0 : static_cast<double>(count) / static_cast<double>(n);
}

}  // namespace

Result<WriteProfile> profile_messaging_writes(const WriteProfileOptions& options) {
  if (options.messages < 1 || options.messages > kMaxProfiledMessages || options.body_bytes < 1 ||
      options.body_bytes > kMaxProfiledBodyBytes || options.round_messages < 1 ||
      options.round_messages > kMaxProfiledRoundMessages) {
    return Status::invalid_argument(
        fmt::format("profile 1 to {} messages of 1 to {} bytes, 1 to {} per round",
                    kMaxProfiledMessages, kMaxProfiledBodyBytes, kMaxProfiledRoundMessages));
  }
  Replica replica;
  HERALD_RETURN_IF_ERROR(replica.open());
  HERALD_RETURN_IF_ERROR(set_up(replica));
  const std::string conversation_id = messaging::direct_conversation_id(kSender, kRecipient);
  const rsm::NodeStats before = replica.stats();
  replica.engine().counting = true;
  for (std::uint64_t n = 1; n <= options.messages; n += options.round_messages) {
    const std::uint64_t count = std::min(options.round_messages, options.messages - n + 1);
    HERALD_RETURN_IF_ERROR(deliver(replica, conversation_id, n, count, options));
  }
  const rsm::NodeStats& after = replica.stats();
  WriteProfile profile;
  profile.messages = options.messages;
  profile.entries = after.entries_applied - before.entries_applied;
  profile.rounds = after.apply_rounds - before.apply_rounds;
  profile.total.puts = after.state_puts - before.state_puts;
  profile.total.deletes = after.state_deletes - before.state_deletes;
  profile.total.bytes = after.state_write_bytes - before.state_write_bytes;
  profile.by_kind = std::move(replica.engine().by_kind);
  profile.reads = replica.engine().reads;
  return profile;
}

std::string format_write_profile(const WriteProfile& p) {
  const std::uint64_t m = p.messages;
  std::string out = fmt::format(
      "{} messages, {} log entries ({:.2f} per message) in {} rounds\n"
      "writes per message {:.2f} ({:.2f} puts, {:.2f} deletes), bytes per message {:.1f}\n"
      "writes per entry {:.2f}, bytes per entry {:.1f}\n"
      "reads per message: {:.2f} point reads, {:.2f} iterators, {:.2f} iterator steps\n\n"
      "{:<28} {:>10} {:>10} {:>12}\n",
      m, p.entries, per(p.entries, m), p.rounds, per(p.total.writes(), m), per(p.total.puts, m),
      per(p.total.deletes, m), per(p.total.bytes, m), per(p.total.writes(), p.entries),
      per(p.total.bytes, p.entries), per(p.reads.gets, m), per(p.reads.iterators, m),
      per(p.reads.steps, m), "per message", "puts", "deletes", "bytes");
  for (const auto& [kind, t] : p.by_kind) {
    out += fmt::format("{:<28} {:>10.2f} {:>10.2f} {:>12.1f}\n", kind, per(t.puts, m),
                       per(t.deletes, m), per(t.bytes, m));
  }
  return out;
}

}  // namespace herald::sim
