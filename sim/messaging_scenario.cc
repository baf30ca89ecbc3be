#include "sim/messaging_scenario.h"

#include <fmt/format.h>
#include <google/protobuf/message_lite.h>
#include <openssl/sha.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <deque>
#include <set>
#include <string_view>
#include <tuple>
#include <utility>

#include "base/assert.h"
#include "messaging/delivery.h"
#include "messaging/host.h"
#include "messaging/read_sync.h"
#include "rsm/kv_state_machine.h"
#include "server/gateway.h"
#include "sim/gateway_world.h"
#include "workflow/engine.h"
#include "workflow/runtime.h"
#include "workflow/saga.h"

namespace herald::sim {

namespace json = boost::json;

// A gateway's answer to a device's request frame: `ok` with its fields, or `error` with its code
// and message. A request that got no answer (its connection dropped, the device's timeout) is
// answered here with code "unavailable" or "timeout".
struct FrameAnswer {
  bool ok = false;
  std::string code;
  std::string message;
  json::object fields;  // the whole frame
};

namespace {

// ---- Time line ----
constexpr MonoMs kTrafficEndMs = 7'000;    // devices plan no new send, delete or read after this
constexpr MonoMs kFaultsEndMs = 8'000;     // final heal; from here every device stays online
constexpr MonoMs kSettleFromMs = 8'500;    // settle checks begin
constexpr MonoMs kSettleLimitMs = 60'000;  // room for read-sync retries and compensations

// ---- The world ----
constexpr std::int64_t kMinDevicesPerUser = 1;
constexpr double kPushTokenChance = 0.7;  // of the devices on a platform with push
constexpr double kEmailFallbackChance = 0.4;
constexpr std::int64_t kMaxSimEmailDelayMs = 3'000;  // short, so that escalations happen in a run
// In this share of the seeds every delivery has a lifetime within the bounds below, so that
// deliveries nobody reads complete under the faults too.
constexpr std::uint64_t kLifetimeSalt = 25;
constexpr double kShortLifetimeChance = 0.3;
constexpr std::int64_t kMinSimLifetimeMs = 1'000;
constexpr std::int64_t kMaxSimLifetimeMs = 6'000;
constexpr char kGroupId[] = "g-all";
constexpr std::array<const char*, 3> kPlatforms = {"ios", "android", "web"};

// ---- Devices ----
constexpr MonoMs kMinOnlineMs = 400;
constexpr MonoMs kMaxOnlineMs = 3'000;
constexpr MonoMs kMinOfflineMs = 100;
constexpr MonoMs kMaxOfflineMs = 1'500;
constexpr MonoMs kMinReconnectMs = 20;  // after a dropped connection
constexpr MonoMs kMaxReconnectMs = 200;
constexpr MonoMs kMinThinkMs = 100;  // between two things a device decides to do
constexpr MonoMs kMaxThinkMs = 600;
constexpr MonoMs kRequestTimeoutMs = 2'000;  // then the device drops its connection
// A `read` is answered when its saga closes, or "timeout" after server::kReadAnswerTimeoutMs.
constexpr MonoMs kReadRequestTimeoutMs = server::kReadAnswerTimeoutMs + kRequestTimeoutMs;
constexpr MonoMs kRetryMs = 100;
constexpr double kSendChance = 0.35;
constexpr double kReadChance = 0.15;
constexpr double kDeleteChance = 0.03;
constexpr double kDuplicateSendChance = 0.1;  // an answered send is sent once more
constexpr double kBeyondReadShare = 0.1;      // of reads: past the conversation's last message
constexpr double kStrayReadShare = 0.1;       // of picks of a conversation the user is not in
constexpr double kOlderReadShare = 0.2;       // of reads: a position before the newest received
constexpr std::uint64_t kBeyondReadGap = 1'000'000;  // far past any seq a run reaches
constexpr std::size_t kMaxOutboxMessages = 4;
constexpr std::size_t kSyncPageLimit = 50;        // small, so that paging happens
constexpr std::uint64_t kMaxPrintedEvents = 200;  // of a saga's history, with verbose

// ---- Replicas and the outside services ----
constexpr std::int64_t kMaxClockSkewMs = 150;
// With MessagingOptions::clock_jumps and leadership_transfers: the time between two of each.
constexpr MonoMs kMinSystemFaultGapMs = 300;
constexpr MonoMs kMaxSystemFaultGapMs = 1'500;
// Seeds of the streams drawn only with MessagingOptions.
constexpr std::uint64_t kWireSalt = 26;
constexpr std::uint64_t kSystemFaultSalt = 27;
constexpr std::uint64_t kMembershipSalt = 28;
constexpr std::uint64_t kReaderSalt = 29;
// With MessagingOptions::membership_changes: the operator's first request.
constexpr MonoMs kFirstMembershipChangeMs = 300;
// Events of a delivery's history read to decide whether its push came after an acknowledgement.
constexpr std::size_t kMaxDeliveryHistoryEvents = 10'000;

// Error codes of docs/protocol.md after which a device simply asks again: nothing was done, or
// the outcome is unknown and the request is idempotent (client message ids, acks, saga ids).
constexpr std::array<std::string_view, 6> kRetryableCodes = {
    "unavailable", "timeout",      "outcome_unknown",
    "overloaded",  "rate_limited", "resource_exhausted"};
// A device's address is 10.0.x.y (x.y its index); its port changes with each connection.
constexpr std::size_t kAddressOctets = 256;
constexpr std::uint64_t kFirstClientPort = 1024;
constexpr std::uint64_t kClientPorts = 60'000;
// The message of a `read` answered "timeout" by the gateway's read waiter: the saga runs on.
constexpr std::string_view kReadStillRunning = "the read-sync saga is still running";

// Error types a normal read may be compensated with when faults outlasted its step's attempts.
constexpr std::array<std::string_view, 3> kTransientReadErrors = {"unavailable", "aborted",
                                                                  "timeout.start_to_close"};

// How a device reads an answer: accepted, worth asking again (not applied, or the outcome is
// unknown), or refused (a definite error the scenario never provokes).
enum class Answer : std::uint8_t { kOk, kRetry, kRefused };

Answer classify(const Result<rsmpb::CommandResult>& r) {
  if (!r.ok()) {
    return Answer::kRetry;
  }
  if (r->code() == 0) {
    return Answer::kOk;
  }
  // kAborted in an applied result: a duplicate copy of a command, refused without effect.
  return static_cast<Code>(r->code()) == Code::kAborted ? Answer::kRetry : Answer::kRefused;
}

std::string describe(const Result<rsmpb::CommandResult>& r) {
  return r.ok() ? Status(static_cast<Code>(r->code()), r->message()).to_string()
                : r.status().to_string();
}

rsmpb::Command module_command(std::string_view module, const google::protobuf::MessageLite& op) {
  rsmpb::Command c;
  c.mutable_module()->set_name(std::string(module));
  c.mutable_module()->set_payload(op.SerializeAsString());
  return c;
}

rsmpb::Command messaging_command(const messagingpb::MessagingCommand& op) {
  return module_command(messaging::kModuleName, op);
}

bool retryable_code(std::string_view code) {
  return std::find(kRetryableCodes.begin(), kRetryableCodes.end(), code) != kRetryableCodes.end();
}

// The secret a device authenticates with; its SHA-256 is the credential setup registers.
std::string credential_secret(std::string_view device_id) {
  return fmt::format("secret of {}", device_id);
}

std::string sha256_of(std::string_view text) {
  std::string digest(SHA256_DIGEST_LENGTH, '\0');
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(),
         reinterpret_cast<unsigned char*>(digest.data()));
  return digest;
}

std::string string_field(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->get_string()) : std::string();
}

std::uint64_t u64_field(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v != nullptr && (v->is_uint64() || (v->is_int64() && v->get_int64() >= 0))
             ? v->to_number<std::uint64_t>()
             : 0;
}

std::int64_t i64_field(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v != nullptr && v->is_int64() ? v->get_int64() : 0;
}

bool bool_field(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v != nullptr && v->is_bool() && v->get_bool();
}

// A `change` frame's "change" (change_json, server/messaging_json.h) back into the fields of the
// SyncEntry a device reads; nullopt for an unknown kind.
std::optional<messagingpb::SyncEntry> decode_change(const json::object& o) {
  messagingpb::SyncEntry entry;
  messagingpb::ChangeRecord& c = *entry.mutable_change();
  std::string kind = string_field(o, "kind");
  std::transform(kind.begin(), kind.end(), kind.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::toupper(ch)); });
  messagingpb::ChangeKind parsed{};
  if (!messagingpb::ChangeKind_Parse(kind, &parsed)) {
    return std::nullopt;
  }
  c.set_kind(parsed);
  c.set_change_seq(u64_field(o, "cursor"));
  c.set_conversation_id(string_field(o, "conversation_id"));
  c.set_seq(u64_field(o, "seq"));
  c.set_actor_user_id(string_field(o, "actor"));
  c.set_time_ms(i64_field(o, "time_ms"));
  c.set_device_id(string_field(o, "device_id"));
  c.set_title(string_field(o, "title"));
  if (const json::value* users = o.if_contains("users"); users != nullptr && users->is_array()) {
    for (const json::value& u : users->get_array()) {
      if (u.is_string()) {
        c.add_user_ids(std::string(u.get_string()));
      }
    }
  }
  const json::value* message = o.if_contains("message");
  if (message != nullptr && message->is_object()) {
    const json::object& m = message->get_object();
    messagingpb::MessageRecord& record = *entry.mutable_message();
    record.set_conversation_id(string_field(m, "conversation_id"));
    record.set_seq(u64_field(m, "seq"));
    record.set_kind(string_field(m, "kind") == "system" ? messagingpb::SYSTEM_MESSAGE
                                                        : messagingpb::USER_MESSAGE);
    record.set_sender_user_id(string_field(m, "sender"));
    record.set_sender_device_id(string_field(m, "sender_device"));
    record.set_client_message_id(string_field(m, "client_message_id"));
    record.set_wall_ms(i64_field(m, "time_ms"));
    record.set_body(string_field(m, "body"));
    record.set_edited(bool_field(m, "edited"));
    record.set_edited_ms(i64_field(m, "edited_ms"));
    record.set_deleted(bool_field(m, "deleted"));
  }
  return entry;
}

// A frame answer as the command result the device's logic reads: ok with `payload`; a code worth
// asking again as a failed status; any other error as an applied refusal that names it.
Result<rsmpb::CommandResult> as_command_result(const FrameAnswer& a, std::string payload) {
  if (!a.ok) {
    const std::string what = fmt::format("{}: {}", a.code, a.message);
    if (retryable_code(a.code)) {
      return Status::unavailable(what);
    }
    rsmpb::CommandResult refused;
    refused.set_code(static_cast<std::uint32_t>(Code::kFailedPrecondition));
    refused.set_message(what);
    return refused;
  }
  rsmpb::CommandResult result;
  result.set_payload(std::move(payload));
  result.set_existed(bool_field(a.fields, "existed"));
  return result;
}

// Every message body names its client id and device, so any device can check what it received.
std::string body_of(std::string_view device_id, std::string_view client_message_id) {
  return fmt::format("hello #{} from {}", client_message_id, device_id);
}

bool is_delivery_state(std::string_view state) {
  return state == messaging::kDeliveryInitiated || state == messaging::kDeliveryStored ||
         state == messaging::kDeliveryPushDispatched || state == messaging::kDeliveryConfirmed ||
         state == messaging::kDeliveryReadAcknowledged;
}

bool is_transient_read_error(std::string_view error_type) {
  return std::find(kTransientReadErrors.begin(), kTransientReadErrors.end(), error_type) !=
         kTransientReadErrors.end();
}

std::uint64_t value_in(const std::map<std::string, std::uint64_t, std::less<>>& m,
                       std::string_view key) {
  auto it = m.find(key);
  return it == m.end() ? 0 : it->second;
}

// A provider of the simulated outside world: every call goes to the scenario.
template <typename Request, typename Interface>
class SimProvider final : public Interface {
 public:
  using CallFn = std::function<void(const Request&, messaging::ProviderDone)>;
  explicit SimProvider(CallFn call) : call_(std::move(call)) {}
  void send(const Request& request, messaging::ProviderDone done) override {
    call_(request, std::move(done));
  }

 private:
  CallFn call_;
};

using SimPushProvider = SimProvider<messaging::PushRequest, messaging::PushProvider>;
using SimEmailProvider = SimProvider<messaging::EmailRequest, messaging::EmailProvider>;

}  // namespace

ClusterOptions messaging_cluster_options(std::uint64_t seed, bool verbose) {
  ClusterOptions options;
  options.seed = seed;
  options.replicas = seed % 2 == 1 ? 3 : 5;
  options.clients = 0;  // no KV traffic: the devices below drive the cluster
  options.faults_end_ms = kFaultsEndMs;
  options.traffic_end_ms = kSettleFromMs;
  options.settle_limit_ms = kSettleLimitMs;
  options.verbose = verbose;
  return options;
}

// ---- Pieces ----

struct MessagingScenario::User {
  std::string id;
  std::vector<std::size_t> devices;
  bool email_fallback = false;
};

struct MessagingScenario::Conversation {
  std::string id;
  std::vector<std::size_t> members;  // user indexes
};

// An acknowledged send.
struct MessagingScenario::Sent {
  std::string conversation_id;
  std::uint64_t seq = 0;
  std::size_t device = 0;
  std::string client_message_id;
  std::string body;
};

enum class MessagingScenario::ReadKind : std::uint8_t { kNormal, kBeyond, kStray };

// A read a device reported: one read-sync saga.
struct MessagingScenario::ReadReport {
  std::string workflow_id;
  std::size_t device = 0;
  std::string conversation_id;
  std::uint64_t seq = 0;
  ReadKind kind = ReadKind::kNormal;
  std::optional<MonoMs> first_ms;                     // when the device first started it
  bool acked = false;                                 // the start was answered with the run
  std::optional<messaging::ReadSyncOutcome> outcome;  // what the device was told when it closed
};

// One simulated phone or browser: its connection, what it holds and what it is waiting for.
struct MessagingScenario::Device {
  struct Outgoing {
    std::string conversation_id;
    std::string client_message_id;
    std::string body;
    std::uint64_t attempts = 0;
    std::optional<MonoMs> first_ms;             // when the device first sent it
    std::optional<std::uint64_t> duplicate_of;  // a resend of an answered send: its seq
  };
  using Marks = std::map<std::string, std::uint64_t, std::less<>>;  // by conversation

  std::string id;
  std::size_t user = 0;
  bool push_token = false;  // registered with a push provider at setup
  // The connection.
  bool online = false;
  raft::NodeId replica = raft::kNoNode;
  std::uint64_t connection = 0;  // bumped on every connect and disconnect
  MonoMs backoff_until_ms = 0;
  // What it holds; survives reconnects.
  std::uint64_t cursor = 0;  // the last change_seq processed
  Marks received;            // the last MESSAGE_NEW seq
  Marks cursor_view;         // the user's read cursor as the changes told it
  Marks acked;               // delivered-up-to, as answered
  Marks marker;              // the read marker its completed reads leave
  std::vector<std::pair<std::string, std::uint64_t>> own;  // its answered sends
  std::set<std::string> read_ids;                          // sagas it started
  std::uint64_t next_client_id = 1;
  // What it is doing.
  std::deque<Outgoing> outbox;
  bool send_busy = false;
  std::deque<std::pair<std::string, std::uint64_t>> deletes;
  bool delete_busy = false;
  std::set<std::string, std::less<>> ack_busy;  // conversations
  std::optional<std::size_t> read;              // in reads_; until the device sees it closed
  bool read_busy = false;                       // its start is in flight
  // Gateway mode: its WebSocket while online, and whether its `auth` was answered ok.
  std::shared_ptr<SimWsConnection> conn;
  bool authed = false;
};

// One replica incarnation's messaging stack, wired as a serving node wires it.
struct MessagingScenario::ReplicaApp final : public rsm::NodeListener {
  MessagingScenario* scenario = nullptr;
  raft::NodeId id = raft::kNoNode;
  std::uint64_t incarnation = 0;
  std::int64_t skew_ms = 0;  // this process's wall clock runs this far off the simulated one
  bool up = false;
  bool gateway_scheduled = false;   // a push of changes to the devices is queued
  raft::Index gateway_applied = 0;  // the applied index the devices were last served from
  rsm::KvStateMachine kv;
  std::unique_ptr<workflow::Engine> engine;
  std::unique_ptr<SimPushProvider> push;
  std::unique_ptr<SimEmailProvider> email;
  std::unique_ptr<messaging::Host> host;
  std::unique_ptr<rsm::StateMachineRouter> router;
  std::unique_ptr<workflow::Runtime> runtime;
  // Gateway mode: the device gateway of this incarnation, on its skewed clock. Declared last, so
  // the gateway goes first.
  std::unique_ptr<SkewedClock> clock;
  std::unique_ptr<SimGatewayNode> gateway_node;
  std::unique_ptr<server::Gateway> gateway;

  void on_applied() override {
    runtime->after_apply();
    scenario->on_replica_applied(id, host->domain()->take_changes());
  }
  void on_leadership(bool leader) override { runtime->on_leadership(leader); }
  void on_snapshot_installed() override {
    if (gateway_node != nullptr) {
      // Every user's stream may have moved: the gateway's notice for it has no user.
      scenario->on_replica_applied(id, {messaging::ChangeNotice{}});
    }
  }
};

// ---- Set-up ----

void MessagingScenario::report_world() {
  if (observer_ == nullptr) {
    return;
  }
  MessagingWorld world;
  for (const Device& d : devices_) {
    world.devices.push_back({d.id, users_[d.user].id, d.push_token});
  }
  for (const Conversation& c : conversations_) {
    MessagingWorld::ConversationInfo info{c.id, {}};
    for (const std::size_t u : c.members) {
      info.member_user_ids.push_back(users_[u].id);
    }
    world.conversations.push_back(std::move(info));
  }
  observer_->on_world(world);
}

MessagingScenario::MessagingScenario(const ClusterOptions& options, const MessagingOptions& extras)
    : options_(options),
      extras_(extras),
      plan_rng_(derive_seed(options.seed, 21)),
      device_rng_(derive_seed(options.seed, 22)),
      provider_rng_(derive_seed(options.seed, 23)),
      skew_rng_(derive_seed(options.seed, 24)),
      wire_rng_(derive_seed(options.seed, kWireSalt)),
      fault_rng_(derive_seed(options.seed, kSystemFaultSalt)),
      reader_rng_(derive_seed(options.seed, kReaderSalt)),
      cluster_(options, this) {
  HERALD_ASSERT(extras.min_users >= 2 && extras.max_users >= extras.min_users &&
                    extras.max_devices_per_user >= kMinDevicesPerUser,
                "a direct conversation needs two users, and each user a device");
  if (extras.membership_changes) {
    membership_ = std::make_unique<MembershipOperator>(
        cluster_, derive_seed(options.seed, kMembershipSalt), kFaultsEndMs);
  }
  for (auto& type : messaging::Host::types()) {
    const Status added = registry_.add(std::move(type));
    HERALD_ASSERT(added.ok(), "each workflow type registers once");
  }
}

MessagingScenario::~MessagingScenario() = default;

rsm::StateMachine* MessagingScenario::open_replica(raft::NodeId id, const storage::Reader* state) {
  states_[id] = state;
  auto app = std::make_unique<ReplicaApp>();
  app->scenario = this;
  app->id = id;
  app->incarnation = ++incarnations_[id];
  app->skew_ms = skew_rng_.range(-kMaxClockSkewMs, kMaxClockSkewMs);
  const std::uint64_t inc = app->incarnation;
  app->engine = std::make_unique<workflow::Engine>(&registry_);
  app->push = std::make_unique<SimPushProvider>(
      [this, id, inc](const messaging::PushRequest& request, messaging::ProviderDone done) {
        record_push(id, request);
        provider_call(id, inc, &request, std::move(done));
      });
  app->email = std::make_unique<SimEmailProvider>(
      [this, id, inc](const messaging::EmailRequest& request, messaging::ProviderDone done) {
        record_email(request);
        provider_call(id, inc, /*push_request=*/nullptr, std::move(done));
      });
  app->host = std::make_unique<messaging::Host>(
      state,
      [this, id, inc](rsmpb::Command command, rsm::ProposeCallback done) {
        propose_later(id, inc, std::move(command), std::move(done));
      },
      [this, id, inc](std::function<void()> fn) { post_later(id, inc, std::move(fn)); },
      app->push.get(), app->email.get(), &cluster_.clock());
  app->host->bind_engine(app->engine.get());
  app->router = std::make_unique<rsm::StateMachineRouter>(&app->kv);
  const Status workflow_added = app->router->add_module(workflow::kModuleName, app->engine.get());
  const Status messaging_added =
      app->router->add_module(messaging::kModuleName, app->host->domain());
  HERALD_ASSERT(workflow_added.ok() && messaging_added.ok(), "one module of each per router");
  app->runtime = std::make_unique<workflow::Runtime>(
      state, app->engine.get(), app->host->handlers(),
      [this, id, inc](const workflowpb::WorkflowCommand& command) {
        // The runtime re-proposes whatever does not take effect, so the answer is not needed.
        propose_later(id, inc, module_command(workflow::kModuleName, command),
                      [](const Result<rsmpb::CommandResult>&) {});
      });
  rsm::StateMachine* router = app->router.get();
  apps_[id] = std::move(app);
  return router;
}

void MessagingScenario::on_replica_up(raft::NodeId id, rsm::Node& node) {
  ReplicaApp& app = *apps_.at(id);
  app.up = true;
  app.gateway_applied = node.applied_index();
  node.set_listener(&app);
  if (extras_.gateway) {
    start_gateway(id);
  }
  if (observer_ != nullptr) {
    observer_->on_replica_life(cluster_.clock().mono_ms(), id, app.incarnation, /*up=*/true);
  }
}

void MessagingScenario::on_replica_down(raft::NodeId id) {
  auto app = apps_.find(id);
  if (observer_ != nullptr && app != apps_.end() && app->second->up) {
    observer_->on_replica_life(cluster_.clock().mono_ms(), id, app->second->incarnation,
                               /*up=*/false);
  }
  apps_.erase(id);
  if (membership_) {
    membership_->on_replica_down(id);
  }
  for (std::size_t i = 0; i < devices_.size(); ++i) {
    if (devices_[i].online && devices_[i].replica == id) {
      ++stats_.dropped_connections;
      disconnect(i, /*voluntary=*/false, "its replica crashed");
    }
  }
}

void MessagingScenario::on_tick(raft::NodeId id) {
  auto it = apps_.find(id);
  if (it == apps_.end() || !it->second->up) {
    return;
  }
  ReplicaApp& app = *it->second;
  app.runtime->tick(wall_ms(id));
  if (app.gateway_node != nullptr) {
    app.gateway_node->changes({});  // the tick: read deadlines, auth deadlines, stalled readers
    return;
  }
  // A snapshot install moves the applied state without on_applied(): serve the devices anyway.
  if (!app.gateway_scheduled && cluster_.node(id)->applied_index() != app.gateway_applied) {
    ++stats_.snapshot_catch_ups;
    push_changes(id);
  }
}

bool MessagingScenario::alive(raft::NodeId id, std::uint64_t incarnation) const {
  auto it = apps_.find(id);
  return it != apps_.end() && it->second->up && it->second->incarnation == incarnation;
}

std::vector<raft::NodeId> MessagingScenario::serving_ids() const {
  std::vector<raft::NodeId> ids = cluster_.up_ids();
  if (!membership_) {
    return ids;
  }
  std::erase_if(ids, [this](raft::NodeId id) {
    const raftpb::ConfState& conf = cluster_.node(id)->conf_state();
    const auto named = [id](const auto& list) {
      return std::find(list.begin(), list.end(), id) != list.end();
    };
    return !named(conf.voters()) && !named(conf.learners());
  });
  return ids;
}

std::int64_t MessagingScenario::wall_ms(raft::NodeId id) const {
  auto it = apps_.find(id);
  const std::int64_t skew = it == apps_.end() ? 0 : it->second->skew_ms;
  return cluster_.clock().wall_ms() + skew;
}

// Never inside the node's Ready loop: the proposal leaves in the next step, stamped by the
// replica's clock as a serving node stamps it.
void MessagingScenario::propose_later(raft::NodeId id, std::uint64_t incarnation,
                                      rsmpb::Command command, rsm::ProposeCallback done) {
  cluster_.schedule_call(
      cluster_.clock().mono_ms(),
      [this, id, incarnation, command = std::move(command), done = std::move(done)] {
        if (!alive(id, incarnation)) {
          return;  // the process that asked is gone, and its callbacks with it
        }
        rsmpb::Command stamped = command;
        stamped.set_wall_ms(wall_ms(id));
        cluster_.node(id)->propose(std::move(stamped), done);
      });
}

void MessagingScenario::post_later(raft::NodeId id, std::uint64_t incarnation,
                                   std::function<void()> fn) {
  cluster_.schedule_call(cluster_.clock().mono_ms(), [this, id, incarnation, fn = std::move(fn)] {
    if (alive(id, incarnation)) {
      fn();
    }
  });
}

void MessagingScenario::read_later(raft::NodeId id, std::uint64_t incarnation,
                                   rsm::ReadCallback done) {
  cluster_.schedule_call(
      cluster_.clock().mono_ms(), [this, id, incarnation, done = std::move(done)] {
        if (!alive(id, incarnation)) {
          return;
        }
        cluster_.node(id)->read_barrier([this, id, incarnation, done](const Status& status) {
          cluster_.schedule_call(cluster_.clock().mono_ms(), [this, id, incarnation, done, status] {
            if (alive(id, incarnation)) {
              done(status);
            }
          });
        });
      });
}

rsm::ProposeCallback MessagingScenario::answer_later(raft::NodeId id, std::uint64_t incarnation,
                                                     rsm::ProposeCallback done) {
  return [this, id, incarnation, done = std::move(done)](Result<rsmpb::CommandResult> result) {
    cluster_.schedule_call(cluster_.clock().mono_ms(),
                           [this, id, incarnation, done, result = std::move(result)] {
                             if (alive(id, incarnation)) {
                               done(result);
                             }
                           });
  };
}

// Typing and presence between gateways: best-effort, after a wire latency, to the incarnations
// running when it was sent.
void MessagingScenario::broadcast_ephemeral(raft::NodeId from, const std::string& kind,
                                            const std::string& payload) {
  for (const auto& [id, app] : apps_) {
    if (id == from || !app->up || app->gateway_node == nullptr) {
      continue;
    }
    const raft::NodeId to = id;
    const std::uint64_t incarnation = app->incarnation;
    const MonoMs at =
        cluster_.clock().mono_ms() + wire_rng_.range(kMinWsLatencyMs, kMaxWsLatencyMs);
    cluster_.schedule_call(at, [this, to, incarnation, kind, payload] {
      if (alive(to, incarnation)) {
        apps_.at(to)->gateway_node->ephemeral(kind, payload);
      }
    });
  }
}

// The incarnation's device gateway: the server's Gateway on this replica, its proposals, reads
// and posts queued as events of their own.
void MessagingScenario::start_gateway(raft::NodeId id) {
  ReplicaApp& app = *apps_.at(id);
  const std::uint64_t inc = app.incarnation;
  app.clock = std::make_unique<SkewedClock>(&cluster_.clock(), &app.skew_ms);
  SimGatewayHooks hooks{
      .propose =
          [this, id, inc](rsmpb::Command command, rsm::ProposeCallback done) {
            propose_later(id, inc, std::move(command), answer_later(id, inc, std::move(done)));
          },
      .read_barrier = [this, id,
                       inc](rsm::ReadCallback done) { read_later(id, inc, std::move(done)); },
      .post = [this, id, inc](std::function<void()> fn) { post_later(id, inc, std::move(fn)); },
      .broadcast = [this, id](
                       const std::string& kind,
                       const std::string& payload) { broadcast_ephemeral(id, kind, payload); },
  };
  app.gateway_node =
      std::make_unique<SimGatewayNode>(states_.at(id), app.clock.get(), std::move(hooks));
  server::GatewayLimits limits;
  if (extras_.slow_readers) {
    limits.stream_high_water_bytes = kSimStreamHighWaterBytes;
    limits.stream_low_water_bytes = kSimStreamLowWaterBytes;
    limits.stalled_reader_ms = kSimStalledReaderMs;
  }
  app.gateway = std::make_unique<server::Gateway>(app.gateway_node.get(), limits);
}

// A running replica's wall clock jumps, forwards or backwards; it stays off until the replica
// restarts.
void MessagingScenario::on_clock_jump() {
  if (cluster_.clock().mono_ms() >= kFaultsEndMs) {
    return;
  }
  std::vector<raft::NodeId> running;
  for (const auto& [id, app] : apps_) {
    if (app->up) {
      running.push_back(id);
    }
  }
  if (!running.empty()) {
    const raft::NodeId id = running[fault_rng_.uniform(running.size())];
    const std::int64_t jump = fault_rng_.range(-kMaxClockJumpMs, kMaxClockJumpMs);
    apps_.at(id)->skew_ms += jump;
    ++stats_.clock_jumps;
    if (options_.verbose) {
      cluster_.log_event(fmt::format("clock of replica {} jumps {} ms", id, jump));
    }
  }
  cluster_.schedule_call(
      cluster_.clock().mono_ms() + fault_rng_.range(kMinSystemFaultGapMs, kMaxSystemFaultGapMs),
      [this] { on_clock_jump(); });
}

// The operator asks the leader to hand leadership to another running member.
void MessagingScenario::on_transfer() {
  if (cluster_.clock().mono_ms() >= kFaultsEndMs) {
    return;
  }
  const raft::NodeId leader = cluster_.leader_hint();
  const std::set<raft::NodeId> members = cluster_.leader_members();
  std::vector<raft::NodeId> others;
  for (const raft::NodeId id : cluster_.up_ids()) {
    if (id != leader && members.contains(id)) {
      others.push_back(id);
    }
  }
  if (leader != raft::kNoNode && cluster_.node(leader) != nullptr && !others.empty()) {
    const raft::NodeId to = others[fault_rng_.uniform(others.size())];
    cluster_.node(leader)->transfer_leadership(to);
    ++stats_.transfers;
    if (options_.verbose) {
      cluster_.log_event(fmt::format("leadership transfer from {} to {} asked", leader, to));
    }
  }
  cluster_.schedule_call(
      cluster_.clock().mono_ms() + fault_rng_.range(kMinSystemFaultGapMs, kMaxSystemFaultGapMs),
      [this] { on_transfer(); });
}

// The outside service answers after a seeded latency, sometimes with a transient failure. Its
// answer reaches only the process that called it.
void MessagingScenario::provider_call(raft::NodeId id, std::uint64_t incarnation,
                                      const messaging::PushRequest* push_request,
                                      messaging::ProviderDone done) {
  const bool push = push_request != nullptr;
  const bool timed_out =
      provider_timeout_chance_ > 0 && provider_rng_.chance(provider_timeout_chance_);
  bool fail = timed_out || provider_rng_.chance(kSimProviderFailureChance);
  std::optional<messaging::ProviderResult> refusal;  // a provider fault's own answer
  if (extras_.provider_faults && !timed_out) {
    refusal = provider_fault(push_request, fail);
    fail = fail || refusal.has_value();
  }
  if (push && !fail && accepted_keys_.insert(push_request->idempotency_key).second) {
    received_pushes_.push_back(*push_request);  // a new key: the device is notified
    ++stats_.pushes_received;
  }
  ++(push ? stats_.pushes : stats_.emails);
  stats_.push_failures += push && fail ? 1 : 0;
  stats_.email_failures += !push && fail ? 1 : 0;
  const MonoMs at =
      cluster_.clock().mono_ms() +
      (timed_out ? kSimProviderTimeoutMs
                 : provider_rng_.range(kSimMinProviderLatencyMs, kSimMaxProviderLatencyMs));
  if (push && observer_ != nullptr) {
    observer_->on_push(cluster_.clock().mono_ms(), id, incarnation, *push_request, !fail, at);
  }
  cluster_.schedule_call(
      at, [this, id, incarnation, push, fail, timed_out, refusal, done = std::move(done)] {
        if (!alive(id, incarnation)) {
          return;
        }
        if (refusal) {
          done(*refusal);
          return;
        }
        done(fail ? messaging::ProviderResult::failure(
                        push ? messaging::kPushUnavailable : messaging::kEmailUnavailable,
                        timed_out ? "the simulated service did not answer in time"
                                  : "the simulated service is busy")
                  : messaging::ProviderResult::success());
      });
}

// MessagingOptions::provider_faults: a push for a token that is not the device's registered one,
// or that died, is refused for good; otherwise some calls are answered 429 with a Retry-After.
// `failing`: the call already fails transiently.
std::optional<messaging::ProviderResult> MessagingScenario::provider_fault(
    const messaging::PushRequest* push_request, bool failing) {
  if (push_request != nullptr) {
    const auto dies = token_dies_ms_.find(push_request->device_id);
    if (push_request->token != "token-" + push_request->device_id) {
      ++stats_.permanent_token_errors;
      return messaging::ProviderResult::failure(messaging::kPushInvalidToken,
                                                "400 BadDeviceToken (simulated)");
    }
    if (dies != token_dies_ms_.end() && cluster_.clock().mono_ms() >= dies->second) {
      ++stats_.permanent_token_errors;
      return messaging::ProviderResult::failure(messaging::kPushUnregistered,
                                                "410 Unregistered (simulated)");
    }
  }
  if (failing || !fault_rng_.chance(kSimRateLimitedChance)) {
    return std::nullopt;
  }
  ++stats_.rate_limited_calls;
  messaging::ProviderResult result = messaging::ProviderResult::failure(
      push_request != nullptr ? messaging::kPushUnavailable : messaging::kEmailUnavailable,
      "429 Too Many Requests (simulated)");
  result.retry_after_ms = fault_rng_.range(kSimMinRetryAfterMs, kSimMaxRetryAfterMs);
  return result;
}

// Per device, exactly once: a push is never sent to a device whose push for the same message the
// calling replica has already seen accepted (its delivery workflow says so).
void MessagingScenario::record_push(raft::NodeId id, const messaging::PushRequest& request) {
  pushes_.push_back(request);
  const auto state = states_.find(id);
  if (state == states_.end() || state->second == nullptr) {
    return;
  }
  const std::string workflow_id =
      messaging::delivery_workflow_id(request.conversation_id, request.seq, request.user_id);
  auto record = workflow::Engine::read_workflow(*state->second, workflow_id);
  if (!record.ok() || !record->has_value()) {
    return;
  }
  const auto data = messaging::decode_delivery_data((*record)->data());
  if (!data) {
    return;
  }
  for (const auto& device : data->devices()) {
    if (device.device_id() == request.device_id && device.push_accepted()) {
      violation(fmt::format(
          "device {} pushed again for message {} of {} after its push was "
          "accepted (key {})",
          request.device_id, request.seq, request.conversation_id, request.idempotency_key));
    }
  }
}

void MessagingScenario::record_email(const messaging::EmailRequest& request) {
  emails_.push_back(request);
}

void MessagingScenario::violation(std::string what) {
  if (!violation_) {
    violation_ = std::move(what);
  }
}

std::string MessagingScenario::check_after_event() {
  if (!violation_ && membership_) {
    return membership_->check_after_event();
  }
  return violation_.value_or("");
}

// ---- The world and its setup ----

void MessagingScenario::plan_world() {
  const std::int64_t users = plan_rng_.range(extras_.min_users, extras_.max_users);
  for (std::int64_t u = 0; u < users; ++u) {
    User user;
    user.id = fmt::format("u{}", u);
    user.email_fallback = plan_rng_.chance(kEmailFallbackChance);
    const std::int64_t count = plan_rng_.range(kMinDevicesPerUser, extras_.max_devices_per_user);
    for (std::int64_t k = 0; k < count; ++k) {
      Device d;
      d.id = fmt::format("{}-d{}", user.id, k);
      d.user = users_.size();
      user.devices.push_back(devices_.size());
      device_by_id_.emplace(d.id, devices_.size());
      devices_.push_back(std::move(d));
    }
    users_.push_back(std::move(user));
  }
  Conversation direct;
  direct.id = messaging::direct_conversation_id(users_[0].id, users_[1].id);
  direct.members = {0, 1};
  Conversation group;
  group.id = kGroupId;
  for (std::size_t u = 0; u < users_.size(); ++u) {
    group.members.push_back(u);
  }
  conversations_ = {std::move(direct), std::move(group)};
  stats_.users = users_.size();
  stats_.devices = devices_.size();
}

// Three phases; the commands of one phase do not depend on each other.
void MessagingScenario::plan_setup_commands() {
  setup_.resize(3);
  Rng lifetime_rng(derive_seed(options_.seed, kLifetimeSalt));
  if (lifetime_rng.chance(kShortLifetimeChance)) {
    delivery_lifetime_ms_ = lifetime_rng.range(kMinSimLifetimeMs, kMaxSimLifetimeMs);
    stats_.delivery_lifetime_ms = delivery_lifetime_ms_;
    messagingpb::MessagingCommand c;
    c.mutable_set_retention()->mutable_settings()->set_delivery_lifetime_ms(delivery_lifetime_ms_);
    setup_[0].push_back(std::move(c));
  }
  for (const User& user : users_) {
    messagingpb::MessagingCommand c;
    c.mutable_create_user()->set_user_id(user.id);
    c.mutable_create_user()->set_display_name("User " + user.id);
    c.mutable_create_user()->set_email(user.id + "@example.com");
    setup_[0].push_back(std::move(c));
    if (user.email_fallback) {
      messagingpb::MessagingCommand p;
      p.mutable_set_preferences()->set_user_id(user.id);
      p.mutable_set_preferences()->set_email_fallback(true);
      p.mutable_set_preferences()->set_email_delay_ms(
          plan_rng_.range(messaging::kMinEmailDelayMs, kMaxSimEmailDelayMs));
      setup_[1].push_back(std::move(p));
    }
  }
  for (std::size_t i = 0; i < devices_.size(); ++i) {
    plan_device_setup(i);
  }
  for (const Conversation& conv : conversations_) {
    const bool direct = conv.id != kGroupId;
    messagingpb::MessagingCommand c;
    auto* op = c.mutable_create_conversation();
    op->set_user_id(users_[conv.members.front()].id);
    op->set_kind(direct ? messagingpb::DIRECT : messagingpb::GROUP);
    if (!direct) {
      op->set_conversation_id(conv.id);
      op->set_title("Everyone");
    }
    for (std::size_t k = 1; k < conv.members.size(); ++k) {
      op->add_member_user_ids(users_[conv.members[k]].id);
    }
    setup_[2].push_back(std::move(c));
  }
}

void MessagingScenario::plan_device_setup(std::size_t device) {
  Device& d = devices_[device];
  const std::string platform = kPlatforms[device % kPlatforms.size()];
  messagingpb::MessagingCommand c;
  auto* op = c.mutable_create_device();
  op->set_user_id(users_[d.user].id);
  op->set_device_id(d.id);
  op->set_platform(platform);
  op->set_credential_sha256(extras_.gateway ? sha256_of(credential_secret(d.id))
                                            : std::string(messaging::kCredentialBytes, 'k'));
  setup_[1].push_back(std::move(c));
  if (platform != "web" && plan_rng_.chance(kPushTokenChance)) {
    d.push_token = true;
    if (extras_.provider_faults && fault_rng_.chance(kSimDeadTokenChance)) {
      token_dies_ms_[d.id] = fault_rng_.range(0, kTrafficEndMs);
      ++stats_.dead_tokens;
    }
    messagingpb::MessagingCommand t;
    auto* token = t.mutable_set_push_token();
    token->set_user_id(users_[d.user].id);
    token->set_device_id(d.id);
    token->set_push_provider(platform == "ios" ? messaging::kApnsProvider
                                               : messaging::kFcmProvider);
    token->set_push_token("token-" + d.id);
    setup_[2].push_back(std::move(t));
  }
}

// The setup client: every command of a phase at once, each on a random running replica and
// again until answered; then the next phase.
void MessagingScenario::run_setup_phase() {
  if (setup_phase_ == setup_.size()) {
    start_devices();
    return;
  }
  setup_pending_ = setup_[setup_phase_].size();
  for (std::size_t i = 0; i < setup_[setup_phase_].size(); ++i) {
    send_setup(i);
  }
}

void MessagingScenario::send_setup(std::size_t index) {
  const std::vector<raft::NodeId> ids = serving_ids();
  if (ids.empty()) {
    cluster_.schedule_call(cluster_.clock().mono_ms() + kRetryMs,
                           [this, index] { send_setup(index); });
    return;
  }
  const raft::NodeId id = ids[device_rng_.uniform(ids.size())];
  request(std::nullopt, id, messaging_command(setup_[setup_phase_][index]),
          [this, index](const Result<rsmpb::CommandResult>& r) { on_setup_answer(index, r); });
}

void MessagingScenario::on_setup_answer(std::size_t index,
                                        const Result<rsmpb::CommandResult>& result) {
  const Answer answer = classify(result);
  // kAlreadyExists answers a retransmission whose first copy was applied.
  const bool existed = result.ok() && static_cast<Code>(result->code()) == Code::kAlreadyExists;
  if (answer == Answer::kRefused && !existed) {
    violation(fmt::format("setup command {} of phase {} refused: {}", index, setup_phase_,
                          describe(result)));
    return;
  }
  if (answer == Answer::kRetry) {
    cluster_.schedule_call(cluster_.clock().mono_ms() + kRetryMs,
                           [this, index] { send_setup(index); });
    return;
  }
  if (--setup_pending_ == 0) {
    ++setup_phase_;
    run_setup_phase();
  }
}

void MessagingScenario::start_devices() {
  cluster_.log_event(
      fmt::format("setup done: {} users, {} devices", users_.size(), devices_.size()));
  const MonoMs now = cluster_.clock().mono_ms();
  for (std::size_t i = 0; i < devices_.size(); ++i) {
    const std::uint64_t connection = devices_[i].connection;
    cluster_.schedule_call(now + device_rng_.range(0, kMaxOfflineMs), [this, i, connection] {
      if (devices_[i].connection == connection) {
        connect(i);
      }
    });
    cluster_.schedule_call(now + device_rng_.range(kMinThinkMs, kMaxThinkMs),
                           [this, i] { on_device_tick(i); });
  }
}

bool MessagingScenario::member(std::size_t user, const Conversation& c) const {
  return std::find(c.members.begin(), c.members.end(), user) != c.members.end();
}

// ---- Requests ----

void MessagingScenario::request(std::optional<std::size_t> device, raft::NodeId id,
                                const rsmpb::Command& command, ResultFn done) {
  const std::uint64_t token = next_request_++;
  requests_.emplace(token, Pending{device, std::move(done), nullptr});
  arm_request_timeout(token, kRequestTimeoutMs);
  rsmpb::Command stamped = command;
  stamped.set_wall_ms(wall_ms(id));
  // Answers are handled in a step of their own, outside the node's Ready loop.
  cluster_.node(id)->propose(
      std::move(stamped), [this, token](const Result<rsmpb::CommandResult>& result) {
        cluster_.schedule_call(cluster_.clock().mono_ms(),
                               [this, token, result] { finish_request(token, result); });
      });
}

void MessagingScenario::arm_request_timeout(std::uint64_t token, MonoMs timeout_ms) {
  cluster_.schedule_call(cluster_.clock().mono_ms() + timeout_ms, [this, token] {
    auto it = requests_.find(token);
    if (it == requests_.end()) {
      return;  // answered already
    }
    const std::optional<std::size_t> device = it->second.device;
    fail_request(token, Status::timeout("no answer within the client's timeout"));
    if (device && devices_[*device].online) {
      ++stats_.dropped_connections;
      // A client that hears nothing tries another node.
      disconnect(*device, /*voluntary=*/false, "a request timed out");
    }
  });
}

void MessagingScenario::finish_request(std::uint64_t token,
                                       const Result<rsmpb::CommandResult>& result) {
  auto it = requests_.find(token);
  if (it == requests_.end()) {
    return;  // answered already, timed out, or its connection was dropped
  }
  HERALD_ASSERT(it->second.done != nullptr, "a command request is answered with a result");
  const ResultFn done = std::move(it->second.done);
  requests_.erase(it);
  done(result);
}

void MessagingScenario::fail_request(std::uint64_t token, const Status& status) {
  auto it = requests_.find(token);
  if (it == requests_.end()) {
    return;
  }
  if (it->second.done != nullptr) {
    finish_request(token, status);
    return;
  }
  finish_frame(token,
               FrameAnswer{.ok = false,
                           .code = status.code() == Code::kTimeout ? "timeout" : "unavailable",
                           .message = status.message(),
                           .fields = {}});
}

void MessagingScenario::frame_request(std::size_t device, json::object frame, FrameFn done,
                                      MonoMs timeout_ms) {
  Device& d = devices_[device];
  HERALD_ASSERT(d.conn != nullptr, "a request frame goes on the device's connection");
  const std::uint64_t token = next_request_++;
  frame["id"] = fmt::format("r{}", token);
  requests_.emplace(token, Pending{device, nullptr, std::move(done)});
  arm_request_timeout(token, timeout_ms);
  ++stats_.frames_sent;
  d.conn->client_send(json::serialize(frame));
}

void MessagingScenario::finish_frame(std::uint64_t token, const FrameAnswer& answer) {
  auto it = requests_.find(token);
  if (it == requests_.end()) {
    return;  // answered already, timed out, or its connection was dropped
  }
  HERALD_ASSERT(it->second.frame_done != nullptr, "a frame request is answered with a frame");
  const FrameFn done = std::move(it->second.frame_done);
  requests_.erase(it);
  done(answer);
}

void MessagingScenario::drop_requests_of(std::size_t device) {
  std::vector<std::uint64_t> tokens;
  for (const auto& [token, pending] : requests_) {
    if (pending.device == device) {
      tokens.push_back(token);
    }
  }
  for (const std::uint64_t token : tokens) {
    fail_request(token, Status::unavailable("the connection was dropped"));
  }
}

// ---- Devices: connections and the gateway ----

void MessagingScenario::connect(std::size_t device) {
  Device& d = devices_[device];
  if (d.online) {
    return;
  }
  const std::vector<raft::NodeId> ids = serving_ids();
  if (ids.empty()) {
    const std::uint64_t connection = d.connection;
    cluster_.schedule_call(cluster_.clock().mono_ms() + kRetryMs, [this, device, connection] {
      if (devices_[device].connection == connection) {
        connect(device);
      }
    });
    return;
  }
  d.online = true;
  d.replica = ids[device_rng_.uniform(ids.size())];
  const std::uint64_t connection = ++d.connection;
  ++stats_.connects;
  if (observer_ != nullptr) {
    observer_->on_connect(cluster_.clock().mono_ms(), d.id, d.replica);
  }
  if (options_.verbose) {
    cluster_.log_event(
        fmt::format("{} connects to replica {} (cursor {})", d.id, d.replica, d.cursor));
  }
  if (extras_.gateway) {
    open_socket(device);
  } else {
    deliver_changes(d);  // the `since` of the protocol: everything after the device's cursor
    pump(device);
  }
  if (!quiesced_) {
    const MonoMs at = cluster_.clock().mono_ms() + device_rng_.range(kMinOnlineMs, kMaxOnlineMs);
    cluster_.schedule_call(at, [this, device, connection] {
      if (devices_[device].connection == connection && !quiesced_) {
        disconnect(device, /*voluntary=*/true, "goes offline");
      }
    });
  }
}

void MessagingScenario::disconnect(std::size_t device, bool voluntary, std::string_view why) {
  Device& d = devices_[device];
  HERALD_ASSERT(d.online, "only a connected device disconnects");
  d.online = false;
  const std::uint64_t connection = ++d.connection;
  if (observer_ != nullptr) {
    observer_->on_disconnect(cluster_.clock().mono_ms(), d.id);
  }
  if (options_.verbose) {
    cluster_.log_event(fmt::format("{} leaves replica {}: {}", d.id, d.replica, why));
  }
  if (d.conn != nullptr) {
    // Counted whether or not the close reached the device before it gave up on its own.
    if (d.conn->server_close_code() == server::kWsClosePolicyViolation) {
      ++stats_.slow_consumer_closes;
    }
    d.conn->client_close();
    d.conn.reset();
  }
  d.authed = false;
  drop_requests_of(device);
  const MonoMs delay = voluntary ? device_rng_.range(kMinOfflineMs, kMaxOfflineMs)
                                 : device_rng_.range(kMinReconnectMs, kMaxReconnectMs);
  cluster_.schedule_call(cluster_.clock().mono_ms() + delay, [this, device, connection] {
    if (devices_[device].connection == connection) {
      connect(device);
    }
  });
}

// Called inside the node's Ready loop: the push to the devices runs in a step of its own. The
// notices are only hints without the gateway: the devices sync from their cursors.
void MessagingScenario::on_replica_applied(raft::NodeId id,
                                           std::vector<messaging::ChangeNotice> notices) {
  ReplicaApp& app = *apps_.at(id);
  if (app.gateway_node != nullptr) {
    const std::uint64_t incarnation = app.incarnation;
    cluster_.schedule_call(cluster_.clock().mono_ms(),
                           [this, id, incarnation, notices = std::move(notices)] {
                             if (alive(id, incarnation)) {
                               apps_.at(id)->gateway_node->changes(notices);
                             }
                           });
    return;
  }
  if (app.gateway_scheduled) {
    return;
  }
  app.gateway_scheduled = true;
  const std::uint64_t incarnation = app.incarnation;
  cluster_.schedule_call(cluster_.clock().mono_ms(), [this, id, incarnation] {
    if (alive(id, incarnation)) {
      apps_.at(id)->gateway_scheduled = false;
      push_changes(id);
    }
  });
}

void MessagingScenario::push_changes(raft::NodeId id) {
  apps_.at(id)->gateway_applied = cluster_.node(id)->applied_index();
  for (std::size_t i = 0; i < devices_.size(); ++i) {
    if (devices_[i].online && devices_[i].replica == id) {
      deliver_changes(devices_[i]);
      pump(i);
    }
  }
}

// The live stream of the device's connection: its user's changes after its cursor, from its
// replica's applied state.
void MessagingScenario::deliver_changes(Device& d) {
  const storage::Reader& state = *states_.at(d.replica);
  const std::string& user_id = users_[d.user].id;
  bool more = true;
  while (more) {
    auto page = messaging::Domain::sync(state, user_id, d.cursor, kSyncPageLimit);
    if (!page.ok()) {
      violation(fmt::format("sync of {} after {} on replica {} failed: {}", user_id, d.cursor,
                            d.replica, page.status().to_string()));
      return;
    }
    for (const messagingpb::SyncEntry& entry : page->entries) {
      receive(d, entry);
    }
    more = page->has_more;
  }
  poll_read(d);
}

// Gateway mode: the device opens a WebSocket to its replica's gateway and authenticates with its
// secret and its cursor as `since`; the gateway then streams the changes after it.
void MessagingScenario::open_socket(std::size_t device) {
  Device& d = devices_[device];
  const raft::NodeId id = d.replica;
  const auto app = apps_.find(id);
  if (app == apps_.end() || !app->second->up || app->second->gateway == nullptr) {
    disconnect(device, /*voluntary=*/false, "no gateway runs there");
    return;
  }
  const std::uint64_t incarnation = app->second->incarnation;
  const std::uint64_t connection = d.connection;
  SimWsConnection::DeviceSide side{
      .frame =
          [this, device, connection](const std::string& text) {
            if (devices_[device].connection == connection) {
              on_frame(device, text);
            }
          },
      .closed =
          [this, device, connection](std::uint16_t code, const std::string& reason) {
            const Device& dev = devices_[device];
            if (dev.connection != connection || !dev.online) {
              return;
            }
            ++stats_.server_closes;
            disconnect(device, /*voluntary=*/false,
                       fmt::format("the gateway closed the connection: {} {}", code, reason));
          },
  };
  // One address per device: the gateway's per-address limits see each device on its own.
  const std::string endpoint =
      fmt::format("10.0.{}.{}:{}", device / kAddressOctets, device % kAddressOctets,
                  kFirstClientPort + connection % kClientPorts);
  d.conn = std::make_shared<SimWsConnection>(
      [this](MonoMs at_ms, std::function<void()> fn) {
        cluster_.schedule_call(at_ms, std::move(fn));
      },
      &cluster_.clock(), &wire_rng_, next_socket_++, endpoint, app->second->gateway.get(),
      [this, id, incarnation] { return alive(id, incarnation); }, std::move(side));
  if (extras_.slow_readers) {
    d.conn->set_queue_limit(kSimWsQueuedBytes);
  }
  if (!d.conn->open()) {
    disconnect(device, /*voluntary=*/false, "the gateway refused the connection");
    return;
  }
  if (extras_.slow_readers && reader_rng_.chance(kSlowReaderChance)) {
    const MonoMs at = cluster_.clock().mono_ms() + reader_rng_.range(0, kMaxReadPauseStartMs);
    const MonoMs pause_ms = reader_rng_.range(kMinReadPauseMs, kMaxReadPauseMs);
    cluster_.schedule_call(at, [this, weak = std::weak_ptr<SimWsConnection>(d.conn), pause_ms] {
      if (const auto conn = weak.lock()) {
        conn->pause_reading(cluster_.clock().mono_ms() + pause_ms);
        ++stats_.read_pauses;
      }
    });
  }
  json::object auth{{"type", "auth"},
                    {"user_id", users_[d.user].id},
                    {"device_id", d.id},
                    {"token", credential_secret(d.id)},
                    {"since", d.cursor}};
  frame_request(
      device, std::move(auth), [this, device](const FrameAnswer& a) { on_auth_answer(device, a); },
      kRequestTimeoutMs);
}

void MessagingScenario::on_auth_answer(std::size_t device, const FrameAnswer& answer) {
  Device& d = devices_[device];
  if (!answer.ok) {
    if (!retryable_code(answer.code)) {
      violation(fmt::format("device {}: auth refused: {}: {}", d.id, answer.code, answer.message));
      return;
    }
    if (d.online) {
      disconnect(device, /*voluntary=*/false, "its auth failed: " + answer.code);
    }
    return;
  }
  if (bool_field(answer.fields, "resync_required")) {
    violation(fmt::format("device {}: auth since {} answered resync_required", d.id, d.cursor));
    return;
  }
  // The auth reads after a linearizable barrier: the replica holds at least what the device got.
  const std::uint64_t cursor = u64_field(answer.fields, "cursor");
  if (cursor < d.cursor) {
    violation(
        fmt::format("device {}: replica {} answered its auth with cursor {}, behind the {} "
                    "it holds",
                    d.id, d.replica, cursor, d.cursor));
    return;
  }
  d.authed = true;
  pump(device);
}

void MessagingScenario::on_frame(std::size_t device, const std::string& text) {
  const Device& d = devices_[device];
  ++stats_.frames_received;
  boost::system::error_code ec;
  json::value parsed = json::parse(text, ec);
  if (ec || !parsed.is_object()) {
    violation(fmt::format("device {} received a frame that is not a JSON object: {}", d.id, text));
    return;
  }
  const json::object& frame = parsed.get_object();
  const std::string type = string_field(frame, "type");
  if (type == "ok" || type == "error") {
    const std::string re = string_field(frame, "re");
    std::uint64_t token = 0;
    const bool named =
        re.size() > 1 && re.front() == 'r' &&
        std::from_chars(re.data() + 1, re.data() + re.size(), token).ec == std::errc{};
    if (!named) {
      violation(fmt::format("device {} received an answer to no request: {}", d.id, text));
      return;
    }
    finish_frame(token, FrameAnswer{.ok = type == "ok",
                                    .code = string_field(frame, "code"),
                                    .message = string_field(frame, "message"),
                                    .fields = frame});
    return;
  }
  if (type == "change") {
    on_change_frame(device, frame);
    return;
  }
  if (type == "presence" || type == "typing") {
    ++stats_.ephemeral_frames;
    return;
  }
  violation(fmt::format("device {} received an unexpected frame: {}", d.id, text));
}

void MessagingScenario::on_change_frame(std::size_t device, const json::object& frame) {
  Device& d = devices_[device];
  const json::value* change = frame.if_contains("change");
  std::optional<messagingpb::SyncEntry> entry;
  if (change != nullptr && change->is_object()) {
    entry = decode_change(change->get_object());
  }
  if (!entry) {
    violation(fmt::format("device {} received a change frame it cannot read: {}", d.id,
                          json::serialize(frame)));
    return;
  }
  receive(d, *entry);
  pump(device);  // acknowledge what arrived
}

void MessagingScenario::receive(Device& d, const messagingpb::SyncEntry& entry) {
  const messagingpb::ChangeRecord& change = entry.change();
  const std::string& user_id = users_[d.user].id;
  ++stats_.changes_received;
  if (change.change_seq() != d.cursor + 1) {
    violation(fmt::format("device {} received change {} right after change {}", d.id,
                          change.change_seq(), d.cursor));
  }
  d.cursor = change.change_seq();
  const std::string serialized = change.SerializeAsString();
  auto [it, fresh] = changes_.try_emplace({user_id, change.change_seq()}, serialized);
  if (!fresh && it->second != serialized) {
    violation(fmt::format("change {} of user {} reached device {} different from before",
                          change.change_seq(), user_id, d.id));
  }
  if (change.kind() == messagingpb::MESSAGE_NEW) {
    receive_message(d, entry);
  } else if (change.kind() == messagingpb::READ_CURSOR) {
    std::uint64_t& view = d.cursor_view[change.conversation_id()];
    if (change.seq() < view) {
      violation(fmt::format("device {} saw the read cursor of {} go back from {} to {}", d.id,
                            change.conversation_id(), view, change.seq()));
    }
    view = std::max(view, change.seq());
    if (observer_ != nullptr) {
      observer_->on_read_cursor(cluster_.clock().mono_ms(), d.id, change.conversation_id(),
                                change.seq());
    }
  }
}

void MessagingScenario::receive_message(Device& d, const messagingpb::SyncEntry& entry) {
  const messagingpb::ChangeRecord& change = entry.change();
  const messagingpb::MessageRecord& message = entry.message();
  if (!entry.has_message() || message.conversation_id() != change.conversation_id() ||
      message.seq() != change.seq()) {
    violation(fmt::format("device {}: MESSAGE_NEW {} of {} is joined with message {} of \"{}\"",
                          d.id, change.seq(), change.conversation_id(), message.seq(),
                          message.conversation_id()));
    return;
  }
  std::uint64_t& last = d.received[change.conversation_id()];
  if (change.seq() != last + 1) {
    violation(fmt::format("device {} received message {} of {} right after message {}", d.id,
                          change.seq(), change.conversation_id(), last));
  }
  last = std::max(last, change.seq());
  if (observer_ != nullptr) {
    observer_->on_message_received(cluster_.clock().mono_ms(), d.id, change.conversation_id(),
                                   change.seq());
  }
  note_message(message, "device " + d.id);
  if (message.sender_user_id() == users_[d.user].id) {
    std::uint64_t& view = d.cursor_view[change.conversation_id()];
    view = std::max(view, change.seq());  // sending reads everything up to one's own message
  }
}

// A (conversation, seq) names one message for good: the same sender device and client id
// wherever it is seen, with the body its client id gave it (until deleted).
void MessagingScenario::note_message(const messagingpb::MessageRecord& message,
                                     const std::string& where) {
  const std::pair<std::string, std::string> name{message.sender_device_id(),
                                                 message.client_message_id()};
  auto [it, fresh] = messages_.try_emplace({message.conversation_id(), message.seq()}, name);
  if (!fresh && it->second != name) {
    violation(fmt::format("{}: message {} of {} is {}/{}, but was {}/{} before", where,
                          message.seq(), message.conversation_id(), name.first, name.second,
                          it->second.first, it->second.second));
  }
  if (!message.deleted() &&
      message.body() != body_of(message.sender_device_id(), message.client_message_id())) {
    violation(fmt::format("{}: message {} of {} has body \"{}\"", where, message.seq(),
                          message.conversation_id(), message.body()));
  }
}

// ---- Devices: what they do ----

void MessagingScenario::on_device_tick(std::size_t device) {
  if (cluster_.clock().mono_ms() >= kTrafficEndMs) {
    return;  // the device plans nothing more; what it started carries on
  }
  Device& d = devices_[device];
  const double roll = device_rng_.unit();
  if (roll < kSendChance) {
    plan_send(d);
  } else if (roll < kSendChance + kReadChance) {
    plan_read(device);
  } else if (roll < kSendChance + kReadChance + kDeleteChance) {
    plan_delete(d);
  }
  pump(device);
  cluster_.schedule_call(cluster_.clock().mono_ms() + device_rng_.range(kMinThinkMs, kMaxThinkMs),
                         [this, device] { on_device_tick(device); });
}

void MessagingScenario::plan_send(Device& d) {
  if (d.outbox.size() >= kMaxOutboxMessages) {
    return;
  }
  std::vector<const Conversation*> mine;
  for (const Conversation& c : conversations_) {
    if (member(d.user, c)) {
      mine.push_back(&c);
    }
  }
  Device::Outgoing o;
  o.conversation_id = mine[device_rng_.uniform(mine.size())]->id;
  o.client_message_id = fmt::format("c{}", d.next_client_id++);
  o.body = body_of(d.id, o.client_message_id);
  d.outbox.push_back(std::move(o));
}

void MessagingScenario::plan_delete(Device& d) {
  if (d.own.empty()) {
    return;
  }
  const auto target = d.own[device_rng_.uniform(d.own.size())];
  if (delete_issued_.insert(target).second) {
    d.deletes.push_back(target);
  }
}

void MessagingScenario::plan_read(std::size_t device) {
  Device& d = devices_[device];
  if (d.read || !d.online) {
    return;  // one read at a time, reported while connected
  }
  ReadReport r;
  r.device = device;
  const double roll = device_rng_.unit();
  const Conversation& c = conversations_[device_rng_.uniform(conversations_.size())];
  const std::uint64_t held = value_in(d.received, c.id);
  if (!member(d.user, c)) {
    if (roll >= kStrayReadShare) {
      return;
    }
    r.kind = ReadKind::kStray;
    r.seq = 1;
  } else if (roll < kBeyondReadShare) {
    r.kind = ReadKind::kBeyond;
    r.seq = held + kBeyondReadGap;
  } else if (held == 0) {
    return;  // nothing to read yet
  } else {
    r.seq = roll < kBeyondReadShare + kOlderReadShare
                ? static_cast<std::uint64_t>(device_rng_.range(1, static_cast<std::int64_t>(held)))
                : held;
  }
  r.conversation_id = c.id;
  r.workflow_id = messaging::read_sync_workflow_id(users_[d.user].id, d.id, c.id, r.seq);
  if (!d.read_ids.insert(r.workflow_id).second) {
    return;  // reported before: the same saga would answer
  }
  d.read = reads_.size();
  reads_.push_back(std::move(r));
}

// Issues whatever the device has to do and is not already doing, unless it is backing off.
void MessagingScenario::pump(std::size_t device) {
  Device& d = devices_[device];
  if (!d.online || cluster_.clock().mono_ms() < d.backoff_until_ms) {
    return;
  }
  if (extras_.gateway && !d.authed) {
    return;  // its requests follow the auth's answer
  }
  if (!d.send_busy && !d.outbox.empty()) {
    send_head(device);
  }
  if (!d.delete_busy && !d.deletes.empty()) {
    send_delete(device);
  }
  for (const auto& [conversation_id, seq] : d.received) {
    if (seq > value_in(d.acked, conversation_id) && !d.ack_busy.contains(conversation_id)) {
      send_ack(device, conversation_id);
    }
  }
  // Through the gateway a device asks until it hears the saga's outcome; without, it asks until
  // the start is acknowledged, then watches its replica's state.
  if (d.read && !d.read_busy && (extras_.gateway || !reads_[*d.read].acked)) {
    start_read(device);
  }
}

void MessagingScenario::back_off(std::size_t device) {
  Device& d = devices_[device];
  d.backoff_until_ms = cluster_.clock().mono_ms() + kRetryMs;
  cluster_.schedule_call(d.backoff_until_ms, [this, device] { pump(device); });
}

void MessagingScenario::send_head(std::size_t device) {
  Device& d = devices_[device];
  Device::Outgoing& o = d.outbox.front();
  stats_.retransmissions += o.attempts > 0 ? 1 : 0;
  ++o.attempts;
  if (!o.first_ms) {
    o.first_ms = cluster_.clock().mono_ms();
  }
  messagingpb::MessagingCommand c;
  auto* op = c.mutable_send_message();
  op->set_conversation_id(o.conversation_id);
  op->set_sender_user_id(users_[d.user].id);
  op->set_sender_device_id(d.id);
  op->set_client_message_id(o.client_message_id);
  op->set_body(o.body);
  d.send_busy = true;
  if (extras_.gateway) {
    json::object frame{{"type", "send"},
                       {"conversation_id", o.conversation_id},
                       {"client_message_id", o.client_message_id},
                       {"body", o.body}};
    frame_request(
        device, std::move(frame),
        [this, device](const FrameAnswer& a) {
          messagingpb::SendResult sent;
          sent.set_seq(u64_field(a.fields, "seq"));
          on_send_answer(device, as_command_result(a, sent.SerializeAsString()));
        },
        kRequestTimeoutMs);
    return;
  }
  request(device, d.replica, messaging_command(c),
          [this, device](const Result<rsmpb::CommandResult>& r) { on_send_answer(device, r); });
}

void MessagingScenario::on_send_answer(std::size_t device,
                                       const Result<rsmpb::CommandResult>& result) {
  Device& d = devices_[device];
  d.send_busy = false;
  const Answer answer = classify(result);
  messagingpb::SendResult sent;
  if (answer == Answer::kOk && !sent.ParseFromString(result->payload())) {
    violation(fmt::format("device {}: a send answer does not decode", d.id));
    return;
  }
  if (answer != Answer::kOk) {
    if (answer == Answer::kRefused) {
      violation(fmt::format("device {}: send of {} refused: {}", d.id,
                            d.outbox.front().client_message_id, describe(result)));
    }
    back_off(device);
    return;
  }
  const Device::Outgoing o = std::move(d.outbox.front());
  d.outbox.pop_front();
  if (o.duplicate_of && (!result->existed() || sent.seq() != *o.duplicate_of)) {
    violation(fmt::format("device {}: send {} answered seq {} and then seq {} (existed = {})", d.id,
                          o.client_message_id, *o.duplicate_of, sent.seq(), result->existed()));
  }
  stats_.existed_answers += result->existed() ? 1 : 0;
  if (observer_ != nullptr) {
    observer_->on_send_answered(o.first_ms.value_or(cluster_.clock().mono_ms()),
                                cluster_.clock().mono_ms(), d.id, o.conversation_id,
                                o.client_message_id, sent.seq(), o.duplicate_of.has_value());
  }
  messagingpb::MessageRecord named;
  named.set_conversation_id(o.conversation_id);
  named.set_seq(sent.seq());
  named.set_sender_device_id(d.id);
  named.set_client_message_id(o.client_message_id);
  named.set_body(o.body);
  note_message(named, "the answer to device " + d.id);
  if (!o.duplicate_of) {
    ++stats_.sends;
    sent_.push_back(Sent{o.conversation_id, sent.seq(), device, o.client_message_id, o.body});
    d.own.emplace_back(o.conversation_id, sent.seq());
    if (device_rng_.chance(kDuplicateSendChance)) {
      Device::Outgoing again = o;
      again.attempts = 0;
      again.first_ms.reset();
      again.duplicate_of = sent.seq();
      d.outbox.push_back(std::move(again));
    }
  }
  pump(device);
}

void MessagingScenario::send_delete(std::size_t device) {
  Device& d = devices_[device];
  const auto& [conversation_id, seq] = d.deletes.front();
  messagingpb::MessagingCommand c;
  c.mutable_delete_message()->set_user_id(users_[d.user].id);
  c.mutable_delete_message()->set_conversation_id(conversation_id);
  c.mutable_delete_message()->set_seq(seq);
  d.delete_busy = true;
  auto on_answer = [this, device](const Result<rsmpb::CommandResult>& r) {
    Device& dev = devices_[device];
    dev.delete_busy = false;
    const Answer answer = classify(r);
    if (answer == Answer::kRefused) {
      violation(fmt::format("device {}: delete refused: {}", dev.id, describe(r)));
    }
    if (answer != Answer::kOk) {
      back_off(device);
      return;
    }
    ++stats_.deletes;
    dev.deletes.pop_front();
    pump(device);
  };
  if (extras_.gateway) {
    json::object frame{{"type", "delete"}, {"conversation_id", conversation_id}, {"seq", seq}};
    frame_request(
        device, std::move(frame),
        [on_answer](const FrameAnswer& a) { on_answer(as_command_result(a, {})); },
        kRequestTimeoutMs);
    return;
  }
  request(device, d.replica, messaging_command(c), on_answer);
}

void MessagingScenario::send_ack(std::size_t device, const std::string& conversation_id) {
  Device& d = devices_[device];
  messagingpb::MessagingCommand c;
  auto* op = c.mutable_ack_delivery();
  op->set_user_id(users_[d.user].id);
  op->set_device_id(d.id);
  op->set_conversation_id(conversation_id);
  op->set_seq(value_in(d.received, conversation_id));
  d.ack_busy.insert(conversation_id);
  if (extras_.gateway) {
    json::object frame{{"type", "ack"}, {"conversation_id", conversation_id}, {"seq", op->seq()}};
    frame_request(
        device, std::move(frame),
        [this, device, conversation_id](const FrameAnswer& a) {
          messagingpb::MarkResult mark;
          mark.set_mark(u64_field(a.fields, "acked_up_to"));
          on_ack_answer(device, conversation_id, as_command_result(a, mark.SerializeAsString()));
        },
        kRequestTimeoutMs);
    return;
  }
  request(device, d.replica, messaging_command(c),
          [this, device, conversation_id](const Result<rsmpb::CommandResult>& r) {
            on_ack_answer(device, conversation_id, r);
          });
}

void MessagingScenario::on_ack_answer(std::size_t device, const std::string& conversation_id,
                                      const Result<rsmpb::CommandResult>& result) {
  Device& d = devices_[device];
  d.ack_busy.erase(conversation_id);
  const Answer answer = classify(result);
  messagingpb::MarkResult mark;
  if (answer == Answer::kRefused ||
      (answer == Answer::kOk && !mark.ParseFromString(result->payload()))) {
    violation(fmt::format("device {}: acknowledgement in {} refused: {}", d.id, conversation_id,
                          describe(result)));
    return;
  }
  if (answer == Answer::kRetry) {
    back_off(device);
    return;
  }
  ++stats_.acks;
  std::uint64_t& acked = d.acked[conversation_id];
  acked = std::max(acked, mark.mark());
  pump(device);
}

void MessagingScenario::start_read(std::size_t device) {
  Device& d = devices_[device];
  ReadReport& r = reads_[*d.read];
  if (!r.first_ms) {
    r.first_ms = cluster_.clock().mono_ms();
  }
  messagingpb::ReadSyncInput input;
  input.set_user_id(users_[d.user].id);
  input.set_device_id(d.id);
  input.set_conversation_id(r.conversation_id);
  input.set_up_to_seq(r.seq);
  workflowpb::WorkflowCommand c;
  c.mutable_start()->set_workflow_id(r.workflow_id);
  c.mutable_start()->set_type(messaging::kReadSyncType);
  c.mutable_start()->set_input(input.SerializeAsString());
  d.read_busy = true;
  if (extras_.gateway) {
    json::object frame{{"type", "read"}, {"conversation_id", r.conversation_id}, {"seq", r.seq}};
    frame_request(
        device, std::move(frame),
        [this, device](const FrameAnswer& a) { on_read_frame(device, a); }, kReadRequestTimeoutMs);
    return;
  }
  request(device, d.replica, module_command(workflow::kModuleName, c),
          [this, device](const Result<rsmpb::CommandResult>& r) { on_read_answer(device, r); });
}

// Gateway mode: the `read` is answered once the saga closed on the device's replica (ok, or the
// error of its failed step) or, while it runs, "timeout"; the device asks again until it hears
// the outcome (the same saga id: one saga).
void MessagingScenario::on_read_frame(std::size_t device, const FrameAnswer& a) {
  Device& d = devices_[device];
  d.read_busy = false;
  ReadReport& r = reads_[*d.read];
  std::optional<messaging::ReadSyncOutcome> outcome;
  const std::size_t split = a.message.find(": ");
  if (a.ok) {
    if (string_field(a.fields, "saga_id") != r.workflow_id) {
      violation(fmt::format("device {}: read {} answered for saga \"{}\"", d.id, r.workflow_id,
                            string_field(a.fields, "saga_id")));
      return;
    }
    outcome = messaging::ReadSyncOutcome{.ok = true, .error_type = {}, .error_message = {}};
  } else if (a.code == "read_beyond_last_seq" || a.code == "read_not_member") {
    outcome = messaging::ReadSyncOutcome{.ok = false,
                                         .error_type = a.code == "read_not_member"
                                                           ? messaging::kReadNotMember
                                                           : messaging::kReadBeyondLastSeq,
                                         .error_message = a.message};
  } else if (a.code == "internal" && split != std::string::npos) {
    outcome = messaging::ReadSyncOutcome{.ok = false,
                                         .error_type = a.message.substr(0, split),
                                         .error_message = a.message.substr(split + 2)};
  } else if (a.code == "timeout" && a.message.starts_with(kReadStillRunning)) {
    ++stats_.read_timeouts;
    if (!r.acked) {
      r.acked = true;
      ++stats_.reads;
    }
    back_off(device);
    return;
  } else if (retryable_code(a.code)) {
    back_off(device);
    return;
  } else {
    violation(
        fmt::format("device {}: read {} refused: {}: {}", d.id, r.workflow_id, a.code, a.message));
    return;
  }
  if (!r.acked) {
    r.acked = true;
    ++stats_.reads;
  }
  close_read(d, *outcome);
  pump(device);
}

void MessagingScenario::on_read_answer(std::size_t device,
                                       const Result<rsmpb::CommandResult>& result) {
  Device& d = devices_[device];
  d.read_busy = false;
  const Answer answer = classify(result);
  if (answer == Answer::kRefused) {
    violation(fmt::format("device {}: read-sync start refused: {}", d.id, describe(result)));
    return;
  }
  if (answer == Answer::kRetry) {
    back_off(device);  // the same id again: the engine starts at most one run
    return;
  }
  reads_[*d.read].acked = true;
  ++stats_.reads;
  if (options_.verbose) {
    cluster_.log_event(fmt::format("{}: started", reads_[*d.read].workflow_id));
  }
  poll_read(d);
}

// The device learns the outcome of its read once its replica has applied the saga's close.
void MessagingScenario::poll_read(Device& d) {
  if (!d.read || !reads_[*d.read].acked || !d.online) {
    return;
  }
  ReadReport& r = reads_[*d.read];
  auto record = workflow::Engine::read_workflow(*states_.at(d.replica), r.workflow_id);
  if (!record.ok()) {
    violation(fmt::format("{}: unreadable: {}", r.workflow_id, record.status().to_string()));
    return;
  }
  if (!record->has_value() || (*record)->status() == workflowpb::RUNNING) {
    return;  // not applied here yet, or still running
  }
  auto outcome = messaging::read_sync_outcome(**record);
  if (!outcome.ok()) {
    violation(fmt::format("{}: no outcome: {}", r.workflow_id, outcome.status().to_string()));
    return;
  }
  close_read(d, *outcome);
}

void MessagingScenario::close_read(Device& d, const messaging::ReadSyncOutcome& outcome) {
  ReadReport& r = reads_[*d.read];
  r.outcome = outcome;
  if (observer_ != nullptr) {
    observer_->on_read_closed(r.first_ms.value_or(cluster_.clock().mono_ms()),
                              cluster_.clock().mono_ms(), d.id, r.conversation_id, r.seq,
                              outcome.ok);
  }
  if (outcome.ok) {
    std::uint64_t& marker = d.marker[r.conversation_id];
    marker = std::max(marker, r.seq);
  } else if (options_.verbose) {
    cluster_.log_event(fmt::format("{}: compensated: {}: {}", r.workflow_id, outcome.error_type,
                                   outcome.error_message));
  }
  d.read.reset();
}

// ---- Settling ----

const storage::Reader* MessagingScenario::any_state() const {
  const raft::NodeId leader = cluster_.leader_hint();
  if (leader != raft::kNoNode) {
    return states_.at(leader);
  }
  const std::vector<raft::NodeId> ids = serving_ids();
  return ids.empty() ? nullptr : states_.at(ids.front());
}

std::string MessagingScenario::unsettled() const {
  if (membership_) {
    std::string waiting = membership_->unsettled();
    if (!waiting.empty()) {
      return waiting;
    }
  }
  if (setup_phase_ < setup_.size()) {
    return fmt::format("setup: phase {} of {} not answered", setup_phase_ + 1, setup_.size());
  }
  if (!requests_.empty()) {
    return fmt::format("{} requests unanswered", requests_.size());
  }
  const storage::Reader* state = any_state();
  if (state == nullptr) {
    return "no replica runs";
  }
  for (const Device& d : devices_) {
    if (!d.online || !d.outbox.empty() || !d.deletes.empty()) {
      return fmt::format("device {}: {}", d.id, d.online ? "requests to make" : "offline");
    }
    if (extras_.gateway && !d.authed) {
      return fmt::format("device {} is not authenticated", d.id);
    }
    if (d.read) {
      auto record = workflow::Engine::read_workflow(*state, reads_[*d.read].workflow_id);
      const bool known = record.ok() && record->has_value();
      return fmt::format("device {} waits for {} (state \"{}\")", d.id, reads_[*d.read].workflow_id,
                         known ? (*record)->state() : "unknown");
    }
    auto user = messaging::Domain::get_user(*state, users_[d.user].id);
    if (!user.ok() || !user->has_value() || (*user)->last_change_seq() != d.cursor) {
      return fmt::format("device {} has not received every change (cursor {})", d.id, d.cursor);
    }
    for (const Conversation& c : conversations_) {
      auto conv = messaging::Domain::get_conversation(*state, c.id);
      const std::uint64_t last = conv.ok() && conv->has_value() ? (*conv)->last_seq() : 0;
      if (member(d.user, c) && value_in(d.acked, c.id) != last) {
        return fmt::format("device {} acknowledged {} of {} messages in {}", d.id,
                           value_in(d.acked, c.id), last, c.id);
      }
    }
  }
  return {};
}

// ---- Final checks ----

std::string MessagingScenario::final_check() {
  if (violation_) {
    return *violation_;
  }
  if (membership_) {
    std::string problem = membership_->final_check();
    if (!problem.empty()) {
      return problem;
    }
  }
  // With membership changes, only the members hold the state: a spare never added and a removed
  // member stopped for good are left as they were.
  const std::set<raft::NodeId> members = cluster_.leader_members();
  for (const auto& [id, state] : states_) {
    if (membership_ && !members.contains(id)) {
      continue;
    }
    std::string problem = check_sends(id, *state);
    if (!problem.empty()) {
      return problem;
    }
  }
  const storage::Reader* state = any_state();
  HERALD_ASSERT(state != nullptr, "the final checks run on a converged cluster");
  for (const Conversation& c : conversations_) {
    std::string problem = check_conversation(*state, c);
    if (!problem.empty()) {
      return problem;
    }
  }
  for (const std::string& problem :
       {check_devices(*state), check_reads(*state), check_providers(*state),
        extras_.system_checks ? check_pushes(*state) : std::string()}) {
    if (!problem.empty()) {
      return problem;
    }
  }
  return violation_.value_or("");
}

// 1. No acknowledged message is lost, on any replica.
std::string MessagingScenario::check_sends(raft::NodeId id, const storage::Reader& state) const {
  for (const Sent& s : sent_) {
    auto message = messaging::Domain::get_message(state, s.conversation_id, s.seq);
    if (!message.ok() || !message->has_value()) {
      return fmt::format("replica {}: acknowledged message {} of {} ({} from {}) is missing", id,
                         s.seq, s.conversation_id, s.client_message_id, devices_[s.device].id);
    }
    const messagingpb::MessageRecord& m = **message;
    if (m.sender_device_id() != devices_[s.device].id ||
        m.client_message_id() != s.client_message_id) {
      return fmt::format("replica {}: message {} of {} is {}/{}, but {}/{} was acknowledged there",
                         id, s.seq, s.conversation_id, m.sender_device_id(), m.client_message_id(),
                         devices_[s.device].id, s.client_message_id);
    }
    if (m.deleted() ? !delete_issued_.contains({s.conversation_id, s.seq}) : m.body() != s.body) {
      return fmt::format("replica {}: message {} of {} is {} without a delete from its sender", id,
                         s.seq, s.conversation_id, m.deleted() ? "deleted" : "changed");
    }
  }
  return {};
}

// 2. and 6.: seqs 1..last_seq without gaps, each client id once, and the delivery workflows.
std::string MessagingScenario::check_conversation(const storage::Reader& state,
                                                  const Conversation& c) {
  auto conv = messaging::Domain::get_conversation(state, c.id);
  if (!conv.ok() || !conv->has_value()) {
    return fmt::format("conversation {} is missing", c.id);
  }
  const std::uint64_t last = (*conv)->last_seq();
  std::set<std::pair<std::string, std::string>> names;
  for (std::uint64_t seq = 1; seq <= last + 1; ++seq) {
    auto message = messaging::Domain::get_message(state, c.id, seq);
    if (!message.ok() || message->has_value() != (seq <= last)) {
      return fmt::format("conversation {} (last seq {}): message {} is {}", c.id, last, seq,
                         message.ok() ? (seq <= last ? "missing" : "present") : "unreadable");
    }
    if (seq > last) {
      break;
    }
    const messagingpb::MessageRecord& m = **message;
    if (!names.emplace(m.sender_device_id(), m.client_message_id()).second) {
      return fmt::format("conversation {}: client message {}/{} is stored twice (again at {})",
                         c.id, m.sender_device_id(), m.client_message_id(), seq);
    }
    for (const std::size_t recipient : c.members) {
      if (users_[recipient].id == m.sender_user_id()) {
        continue;
      }
      std::string problem = check_delivery(state, c, m, recipient);
      if (!problem.empty()) {
        return problem;
      }
    }
  }
  return {};
}

std::string MessagingScenario::check_delivery(const storage::Reader& state, const Conversation& c,
                                              const messagingpb::MessageRecord& message,
                                              std::size_t recipient) {
  const User& user = users_[recipient];
  const std::string id = messaging::delivery_workflow_id(c.id, message.seq(), user.id);
  auto record = workflow::Engine::read_workflow(state, id);
  if (!record.ok() || !record->has_value() || (*record)->type() != messaging::kDeliveryType) {
    return fmt::format("delivery workflow {} is missing", id);
  }
  const std::string& named = (*record)->state();
  if (!is_delivery_state(named)) {
    return fmt::format("delivery workflow {} is in state \"{}\"", id, named);
  }
  if (extras_.system_checks) {
    std::string stuck = check_not_stuck(state, id);
    if (!stuck.empty()) {
      return stuck;
    }
  }
  if (message.deleted()) {
    // Deleting a message cancels its open deliveries, so acknowledgements and reads after the
    // delete no longer move them: the run must be closed, whatever state it reached.
    const auto status = (*record)->status();
    if (status != workflowpb::CANCELED && status != workflowpb::COMPLETED) {
      return fmt::format("delivery workflow {} of a deleted message is still open in \"{}\"", id,
                         named);
    }
    ++stats_.deliveries;
    return {};
  }
  if ((*record)->status() == workflowpb::COMPLETED &&
      named != messaging::kDeliveryReadAcknowledged) {
    // Completed unread: only at the end of a lifetime, which the run lived in full.
    if (delivery_lifetime_ms_ == 0) {
      return fmt::format("delivery workflow {} completed unread in \"{}\" with no lifetime set", id,
                         named);
    }
    if ((*record)->updated_ms() - (*record)->created_ms() < delivery_lifetime_ms_ ||
        !(*record)->result().empty()) {
      return fmt::format(
          "delivery workflow {} completed unread {} ms after it started (lifetime {} ms), result "
          "\"{}\"",
          id, (*record)->updated_ms() - (*record)->created_ms(), delivery_lifetime_ms_,
          (*record)->result());
    }
    ++stats_.deliveries;
    ++stats_.deliveries_expired;
    return {};
  }
  std::uint64_t acked = 0;
  for (const std::size_t device : user.devices) {
    acked = std::max(acked, value_in(devices_[device].acked, c.id));
  }
  std::uint64_t read = 0;
  for (const ReadReport& r : reads_) {
    if (devices_[r.device].user == recipient && r.conversation_id == c.id && r.outcome &&
        r.outcome->ok) {
      read = std::max(read, r.seq);
    }
  }
  const bool confirmed =
      named == messaging::kDeliveryConfirmed || named == messaging::kDeliveryReadAcknowledged;
  if (acked >= message.seq() && !confirmed) {
    return fmt::format("delivery workflow {} is in \"{}\" although {} acknowledged up to {}", id,
                       named, user.id, acked);
  }
  if (read >= message.seq() && named != messaging::kDeliveryReadAcknowledged) {
    return fmt::format("delivery workflow {} is in \"{}\" although {} read up to {}", id, named,
                       user.id, read);
  }
  ++stats_.deliveries;
  stats_.deliveries_confirmed += named == messaging::kDeliveryConfirmed ? 1 : 0;
  stats_.deliveries_read += named == messaging::kDeliveryReadAcknowledged ? 1 : 0;
  return {};
}

// 2., 3. and 4.: what each device ended with.
std::string MessagingScenario::check_devices(const storage::Reader& state) const {
  for (const Device& d : devices_) {
    const std::string& user_id = users_[d.user].id;
    for (const Conversation& c : conversations_) {
      if (!member(d.user, c)) {
        continue;
      }
      auto conv = messaging::Domain::get_conversation(state, c.id);
      auto cursor = messaging::Domain::read_cursor(state, user_id, c.id);
      auto marks = messaging::Domain::device_marks(state, user_id, c.id);
      if (!conv.ok() || !conv->has_value() || !cursor.ok() || !marks.ok()) {
        return fmt::format("device {}: the state of {} is unreadable", d.id, c.id);
      }
      if (value_in(d.received, c.id) != (*conv)->last_seq()) {
        return fmt::format("device {} received {} of {} messages of {}", d.id,
                           value_in(d.received, c.id), (*conv)->last_seq(), c.id);
      }
      if (value_in(d.cursor_view, c.id) != *cursor) {
        return fmt::format("device {} sees read cursor {} in {}, the replicated state {}", d.id,
                           value_in(d.cursor_view, c.id), c.id, *cursor);
      }
      for (const messaging::DeviceMarkView& view : *marks) {
        if (view.device_id == d.id && view.read_marker != value_in(d.marker, c.id)) {
          print_reads(state, d, c.id);
          return fmt::format("device {} has read marker {} in {}; its completed reads leave {}",
                             d.id, view.read_marker, c.id, value_in(d.marker, c.id));
        }
      }
    }
  }
  return {};
}

// With verbose, the history of every read the device reported in the conversation.
void MessagingScenario::print_reads(const storage::Reader& state, const Device& d,
                                    std::string_view conversation_id) const {
  if (!options_.verbose) {
    return;
  }
  for (const ReadReport& r : reads_) {
    if (devices_[r.device].id != d.id || r.conversation_id != conversation_id) {
      continue;
    }
    fmt::print("  history of {} ({}):\n", r.workflow_id, first_step_output(state, r));
    auto events = workflow::Engine::read_history(state, r.workflow_id, 1, 0,
                                                 static_cast<std::size_t>(kMaxPrintedEvents));
    if (!events.ok()) {
      fmt::print("    unreadable: {}\n", events.status().to_string());
      continue;
    }
    for (const workflowpb::HistoryEvent& e : *events) {
      fmt::print("    {:>3} {} ms {} {} #{}/{} {}\n", e.seq(), e.time_ms(), e.kind(), e.name(),
                 e.activity_id(), e.attempt(), e.error_type());
    }
  }
}

// What the saga's first step answered (its output, kept in the result of a closed saga).
std::string MessagingScenario::first_step_output(const storage::Reader& state,
                                                 const ReadReport& r) {
  auto record = workflow::Engine::read_workflow(state, r.workflow_id);
  if (!record.ok() || !record->has_value() || (*record)->status() == workflowpb::RUNNING) {
    return "not closed";
  }
  const std::optional<workflow::SagaResult> result =
      workflow::decode_saga_result((*record)->result());
  messagingpb::ReadMarkerResult marks;
  if (!result || result->outputs.empty() || !marks.ParseFromString(result->outputs.front())) {
    return "no output of the first step";
  }
  return fmt::format("the first step answered previous {}, marker {}", marks.previous(),
                     marks.marker());
}

// 5. Every acknowledged read-sync saga closed the way its kind of read must.
std::string MessagingScenario::check_reads(const storage::Reader& state) {
  for (const ReadReport& r : reads_) {
    if (!r.acked) {
      // Started perhaps, never answered: with system_checks it must not be stuck either.
      std::string problem = extras_.system_checks ? check_not_stuck(state, r.workflow_id) : "";
      if (!problem.empty()) {
        return problem;
      }
      continue;
    }
    std::string problem = check_read(state, r);
    if (!problem.empty()) {
      return fmt::format("read-sync saga {}: {}", r.workflow_id, problem);
    }
  }
  return {};
}

std::string MessagingScenario::check_read(const storage::Reader& state, const ReadReport& r) {
  auto record = workflow::Engine::read_workflow(state, r.workflow_id);
  if (!record.ok() || !record->has_value()) {
    return "acknowledged but has no record";
  }
  if ((*record)->status() == workflowpb::RUNNING) {
    return fmt::format("still running in state \"{}\"", (*record)->state());
  }
  auto outcome = messaging::read_sync_outcome(**record);
  if (!outcome.ok()) {
    return "no outcome: " + outcome.status().to_string();
  }
  if (!r.outcome || *r.outcome != *outcome) {
    return "the device was told another outcome";
  }
  const std::string& error = outcome->error_type;
  switch (r.kind) {
    case ReadKind::kNormal:
      if (outcome->ok || is_transient_read_error(error)) {
        ++(outcome->ok ? stats_.reads_completed : stats_.reads_transient);
        return {};
      }
      break;
    case ReadKind::kBeyond:
      if (!outcome->ok && error == messaging::kReadBeyondLastSeq) {
        ++stats_.reads_beyond;
        return {};
      }
      break;
    case ReadKind::kStray:
      if (!outcome->ok && error == messaging::kReadNotMember) {
        ++stats_.reads_not_member;
        return {};
      }
      break;
  }
  return fmt::format("a {} read of seq {} ended {} ({}: {})",
                     r.kind == ReadKind::kNormal   ? "normal"
                     : r.kind == ReadKind::kBeyond ? "beyond-last-seq"
                                                   : "non-member",
                     r.seq, outcome->ok ? "completed" : "compensated", error,
                     outcome->error_message);
}

// 6. Push only to the recipient's devices, email only to recipients who asked for it.
std::string MessagingScenario::check_providers(const storage::Reader& state) const {
  auto delivery_of = [&](std::string_view conversation_id, std::uint64_t seq,
                         std::string_view user_id) -> std::string {
    const std::string id = messaging::delivery_workflow_id(conversation_id, seq, user_id);
    auto record = workflow::Engine::read_workflow(state, id);
    return record.ok() && record->has_value() ? id : std::string();
  };
  for (const messaging::PushRequest& p : pushes_) {
    auto device = device_by_id_.find(p.device_id);
    const std::string id = delivery_of(p.conversation_id, p.seq, p.user_id);
    if (device == device_by_id_.end() || users_[devices_[device->second].user].id != p.user_id ||
        id.empty() || !p.idempotency_key.starts_with(id + "/")) {
      return fmt::format("push to device {} of {} for message {} of {} (key {}) has no delivery",
                         p.device_id, p.user_id, p.seq, p.conversation_id, p.idempotency_key);
    }
  }
  // One idempotency key per (delivery, device): every attempt of a device's push is the same
  // push, and no device is given a second, distinct push for one message.
  std::map<std::pair<std::string, std::string>, std::string> key_of;
  for (const messaging::PushRequest& p : pushes_) {
    const std::string id = messaging::delivery_workflow_id(p.conversation_id, p.seq, p.user_id);
    const auto [it, added] = key_of.emplace(std::pair(id, p.device_id), p.idempotency_key);
    if (!added && it->second != p.idempotency_key) {
      return fmt::format("device {} got two distinct pushes for message {} of {} ({} and {})",
                         p.device_id, p.seq, p.conversation_id, it->second, p.idempotency_key);
    }
  }
  for (const messaging::EmailRequest& e : emails_) {
    const std::string id = delivery_of(e.conversation_id, e.seq, e.user_id);
    auto user = std::find_if(users_.begin(), users_.end(),
                             [&](const User& u) { return u.id == e.user_id; });
    if (user == users_.end() || !user->email_fallback || id.empty() ||
        !e.idempotency_key.starts_with(id + "/")) {
      return fmt::format("email to {} for message {} of {} (key {}) has no delivery", e.user_id,
                         e.seq, e.conversation_id, e.idempotency_key);
    }
  }
  return {};
}

// MessagingOptions::system_checks: what the devices were notified of (received_pushes_: accepted
// under a new idempotency key) against the messages and their deliveries.
std::string MessagingScenario::check_pushes(const storage::Reader& state) const {
  std::set<std::tuple<std::string, std::uint64_t, std::string>> received;
  for (const messaging::PushRequest& p : received_pushes_) {
    if (!received.emplace(p.conversation_id, p.seq, p.device_id).second) {
      return fmt::format("device {} received two pushes for message {} of {} (the second {})",
                         p.device_id, p.seq, p.conversation_id, p.idempotency_key);
    }
    auto message = messaging::Domain::get_message(state, p.conversation_id, p.seq);
    if (message.ok() && message->has_value() && (*message)->sender_user_id() == p.user_id) {
      return fmt::format("device {} of {} was pushed for its own user's message {} of {}",
                         p.device_id, p.user_id, p.seq, p.conversation_id);
    }
    const auto device = device_by_id_.find(p.device_id);
    if (device == device_by_id_.end() || !devices_[device->second].push_token) {
      return fmt::format("device {} without a push token received a push", p.device_id);
    }
    std::string problem = check_push_timing(
        state, messaging::delivery_workflow_id(p.conversation_id, p.seq, p.user_id));
    if (!problem.empty()) {
      return problem;
    }
  }
  // A device marked push_accepted had a push accepted for that message.
  for (const Conversation& c : conversations_) {
    auto conv = messaging::Domain::get_conversation(state, c.id);
    const std::uint64_t last = conv.ok() && conv->has_value() ? (*conv)->last_seq() : 0;
    for (std::uint64_t seq = 1; seq <= last; ++seq) {
      for (const std::size_t member : c.members) {
        const std::string id = messaging::delivery_workflow_id(c.id, seq, users_[member].id);
        auto record = workflow::Engine::read_workflow(state, id);
        if (!record.ok() || !record->has_value()) {
          continue;  // the sender's own: check_conversation covers the others
        }
        const auto data = messaging::decode_delivery_data((*record)->data());
        if (!data) {
          return fmt::format("delivery {}: its data does not decode", id);
        }
        for (const auto& device : data->devices()) {
          if (device.push_accepted() && !received.contains({c.id, seq, device.device_id()})) {
            return fmt::format("delivery {} marks device {} pushed, but no push reached it", id,
                               device.device_id());
          }
        }
      }
    }
  }
  return {};
}

// Nothing stuck silently: a workflow that exists is closed, or waits on a timer or an activity of
// its own.
std::string MessagingScenario::check_not_stuck(const storage::Reader& state,
                                               const std::string& workflow_id) {
  auto record = workflow::Engine::read_workflow(state, workflow_id);
  if (!record.ok()) {
    return fmt::format("workflow {} is unreadable: {}", workflow_id, record.status().to_string());
  }
  if (!record->has_value() || (*record)->status() != workflowpb::RUNNING ||
      (*record)->open_activity_ids_size() > 0 || (*record)->user_timers_size() > 0) {
    return {};
  }
  return fmt::format("workflow {} is open in \"{}\" with no timer or activity pending", workflow_id,
                     (*record)->state());
}

// A push reached a device for this delivery: the delivery's push timer (the grace for a live
// socket) fired before any device acknowledged the message, as its history records in log order.
std::string MessagingScenario::check_push_timing(const storage::Reader& state,
                                                 const std::string& delivery_id) const {
  auto record = workflow::Engine::read_workflow(state, delivery_id);
  if (!record.ok() || !record->has_value()) {
    return fmt::format("a push reached a device for {}, which does not exist", delivery_id);
  }
  auto events = workflow::Engine::read_history(state, delivery_id, (*record)->run_id(), 0,
                                               kMaxDeliveryHistoryEvents);
  if (!events.ok()) {
    return fmt::format("the history of {} is unreadable: {}", delivery_id,
                       events.status().to_string());
  }
  for (const workflowpb::HistoryEvent& e : *events) {
    if (e.kind() == "timer_fired" && e.name() == messaging::kPushTag) {
      return {};
    }
    if (e.kind() == "signaled" && e.name() == messaging::kDeliveredSignal) {
      return fmt::format(
          "{}: a device acknowledged the message (event {}) before the push timer "
          "fired, yet a push reached a device",
          delivery_id, e.seq());
    }
  }
  return fmt::format("{}: a push reached a device, but the push timer never fired", delivery_id);
}

MessagingRunResult MessagingScenario::run() {
  plan_world();
  plan_setup_commands();
  report_world();
  cluster_.schedule_call(0, [this] { run_setup_phase(); });
  if (extras_.clock_jumps) {
    cluster_.schedule_call(fault_rng_.range(kMinSystemFaultGapMs, kMaxSystemFaultGapMs),
                           [this] { on_clock_jump(); });
  }
  if (extras_.leadership_transfers) {
    cluster_.schedule_call(fault_rng_.range(kMinSystemFaultGapMs, kMaxSystemFaultGapMs),
                           [this] { on_transfer(); });
  }
  // Just after the final heal: every device comes online and stays.
  cluster_.schedule_call(kFaultsEndMs + 1, [this] {
    quiesced_ = true;
    cluster_.log_event("quiesce: every device comes online");
    if (setup_phase_ < setup_.size()) {
      return;  // start_devices() connects them
    }
    for (std::size_t i = 0; i < devices_.size(); ++i) {
      connect(i);
    }
  });
  if (membership_) {
    membership_->start(kFirstMembershipChangeMs);
  }
  MessagingRunResult result;
  result.cluster = cluster_.run();
  result.messaging = stats_;
  if (membership_) {
    result.messaging.membership = membership_->stats();
  }
  return result;
}

}  // namespace herald::sim
