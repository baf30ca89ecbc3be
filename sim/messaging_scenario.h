// MessagingScenario: Herald's messaging domain — users, devices, conversations, delivery workflows
// and read-sync sagas — on a simulated cluster, under faults, with simulated devices.
//
// It composes a SimCluster (sim/cluster.h: the same replicas, network, disks, fault schedule and
// Raft safety checks as the raft scenario) and gives every replica incarnation what a serving node
// wires (server/node_host.cc): a workflow::Registry with messaging::Host::types(), a
// workflow::Engine, a messaging::Host bound to it, both modules ("workflow" and "messaging") in a
// StateMachineRouter beside the KV state machine, and a workflow::Runtime with the host's activity
// handlers. The node's listener runs the runtime after every apply and on leadership changes, and
// drains the domain's change notices. Every proposal (the runtime's, the host's, the devices') is
// stamped with the replica's skewed wall clock and queued as a simulator event, never proposed
// inside the node's Ready loop. Push and email go to simulated providers that answer after a
// seeded latency and fail transiently by the seed; every call is recorded.
//
// The simulated world: 3 or 4 users with 1 to 3 devices each, a direct conversation between the
// first two users and a group of all of them, created through the log at the start (CreateUser,
// CreateDevice, SetPushToken, SetPreferences, CreateConversation) by a setup client that retries
// until every command is answered. Then every device comes and goes: online it is a WebSocket
// client of one replica (docs/protocol.md): after each apply of that replica (and on connect) it
// receives its user's change stream after its own cursor, read from that replica's applied state
// with Domain::sync; the cursor lives on the device and survives reconnects (the `since` of the
// protocol). It acknowledges what it received (AckDelivery), sends messages (SendMessage with a
// client message id, retransmitted with the same id after an uncertain outcome until answered),
// deletes some of its own, and reports reads by starting read-sync sagas (StartWorkflow of
// messaging::kReadSyncType), one at a time, waiting for each to close: mostly up to what it holds,
// sometimes beyond the conversation's last message or in a conversation its user is not in, which
// must end compensated. A replica crash or a request timeout drops the device's connection; it
// reconnects to a random running replica.
//
// With MessagingOptions::gateway (the system scenario, sim/system_scenario.h) the devices do all of
// this through the server's own Gateway (server/gateway.h), one per replica incarnation on a
// SimGatewayNode (sim/gateway_world.h): a device opens a simulated WebSocket, authenticates with
// its secret and its cursor as `since`, and from then on receives the change stream as the
// gateway's `change` frames (its session cursor, live pump, flow control and snapshot catch-up)
// and sends `send`, `ack`, `delete` and `read` frames; a `read` is answered by the gateway's read
// waiter when the saga closes (or "timeout", and the device asks again), so the device learns the
// outcome from the gateway rather than from the replica's state. The gateway closing a session
// (a replaced or slow session) drops the device's connection like a crash does.
//
// Time line: setup from 0 ms; device traffic until kTrafficEndMs; faults until the final heal at
// kFaultsEndMs, when every device comes online for good; the run settles when every request is
// answered, every saga closed, and every device has received and acknowledged everything.
//
// Checks during the run (a violation fails the seed with a message naming it):
//  - each device's change stream is gap-free (every change_seq once, in order), every device of a
//    user sees the same change at the same change_seq, and each conversation's MESSAGE_NEW
//    changes arrive in seq order 1, 2, 3, ... once each;
//  - a (conversation, seq) always names the same (sender device, client message id), in answers
//    and in what devices receive, and a send's retransmissions are answered with its first seq;
//  - the read cursor a device sees (READ_CURSOR changes, and the user's own messages, which move
//    it) never goes backwards.
//  - with the gateway: every frame is a JSON object of a known type, every answer names a pending
//    request, an `auth` with `since` is never answered with a cursor behind the device's nor with
//    resync_required, and a `read` is answered for its own saga.
// Checks at the end (healed, settled, every replica converged):
//  1. every acknowledged send is stored at its seq with its body on every replica, unless its
//     sender deleted it (and then only if a delete was issued); no two seqs share a client id;
//  2. every conversation holds seqs 1..last_seq with no gap; every device received them all;
//  3. every device's cursor is its user's newest change;
//  4. all of a user's devices see the user's read cursor of the replicated state;
//  5. every acknowledged read-sync saga is closed: completed; or compensated with
//     read.beyond_last_seq (reads beyond the last message), read.not_member (reads of a
//     conversation the user is not in), or a transient error (a normal read whose steps ran out of
//     attempts under faults); never left in compensation_failed. Each device's read marker is the
//     highest seq of its completed reads (a compensated read left it as it was);
//  6. every message has a delivery workflow per recipient in one of the five named states; one
//     acknowledged by a device of the recipient is at least delivery_confirmed, one the recipient
//     read through a completed saga is read_acknowledged; every push went to a device of the
//     delivery's recipient, every email to a recipient with email fallback.
//  7. with MessagingOptions::system_checks: every open delivery workflow has a timer or an
//     activity pending; no device received two pushes for one message (a push
//     is received when the provider accepts a new idempotency key); none went to a device of the
//     message's sender or to a device without a push token; a push was received only for a
//     delivery whose push timer fired before any device acknowledged the message (in its
//     history's order); and every device a delivery marks push_accepted received a push for it.
//
// Determinism: every choice comes from Rngs derived from the seed, every container iterated is
// ordered, nothing reads a real clock. Thread-safety: none.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "messaging/domain.h"
#include "messaging/providers.h"
#include "messaging/read_sync.h"
#include "sim/cluster.h"
#include "sim/membership_operator.h"
#include "workflow/definition.h"

namespace herald::sim {

struct MessagingStats {
  std::uint64_t users = 0;
  std::uint64_t devices = 0;
  std::uint64_t sends = 0;            // acknowledged sends
  std::uint64_t retransmissions = 0;  // send attempts after the first
  std::uint64_t existed_answers = 0;  // retransmissions answered with the first seq
  std::uint64_t deletes = 0;          // acknowledged deletes
  std::uint64_t acks = 0;             // acknowledged AckDelivery requests
  std::uint64_t reads = 0;            // acknowledged read-sync starts
  std::uint64_t reads_completed = 0;
  std::uint64_t reads_beyond = 0;      // compensated with read.beyond_last_seq
  std::uint64_t reads_not_member = 0;  // compensated with read.not_member
  std::uint64_t reads_transient = 0;   // normal reads compensated after transient failures
  std::uint64_t changes_received = 0;  // change-stream entries devices processed
  std::uint64_t connects = 0;
  std::uint64_t dropped_connections = 0;  // by a crash or a request timeout
  std::uint64_t snapshot_catch_ups = 0;   // gateway pushes after an apply without on_applied
  std::uint64_t pushes = 0;               // push provider calls
  std::uint64_t push_failures = 0;        // of them, answered with a transient failure
  std::uint64_t emails = 0;
  std::uint64_t email_failures = 0;
  std::uint64_t deliveries = 0;            // delivery workflows checked at the end
  std::uint64_t deliveries_confirmed = 0;  // of them, in delivery_confirmed
  std::uint64_t deliveries_read = 0;       // of them, in read_acknowledged
  std::uint64_t deliveries_expired = 0;    // of them, completed unread at the end of their lifetime
  std::int64_t delivery_lifetime_ms = 0;   // the lifetime set in this run; 0 = the default
  // With MessagingOptions::gateway: frames the devices sent and received, sessions the gateway
  // closed, typing and presence frames received.
  std::uint64_t frames_sent = 0;
  std::uint64_t frames_received = 0;
  std::uint64_t server_closes = 0;
  std::uint64_t ephemeral_frames = 0;
  std::uint64_t read_timeouts = 0;  // `read` answered "timeout": the saga was still running
  // With MessagingOptions::provider_faults: 429 answers, permanent token errors, tokens that died.
  std::uint64_t rate_limited_calls = 0;
  std::uint64_t permanent_token_errors = 0;
  std::uint64_t dead_tokens = 0;
  std::uint64_t pushes_received = 0;       // distinct pushes the devices got (accepted, new key)
  std::uint64_t clock_jumps = 0;           // with MessagingOptions::clock_jumps
  std::uint64_t transfers = 0;             // leadership transfers asked (leadership_transfers)
  std::uint64_t read_pauses = 0;           // devices that stopped reading a while (slow_readers)
  std::uint64_t slow_consumer_closes = 0;  // connections the gateway or transport closed 1008
  MembershipStats membership;              // with MessagingOptions::membership_changes
};

struct MessagingRunResult {
  RunResult cluster;
  MessagingStats messaging;
};

// The simulated push and email services: each call is answered after a latency in
// [kSimMinProviderLatencyMs, kSimMaxProviderLatencyMs] and fails transiently with this chance.
inline constexpr MonoMs kSimMinProviderLatencyMs = 1;
inline constexpr MonoMs kSimMaxProviderLatencyMs = 60;
inline constexpr double kSimProviderFailureChance = 0.25;
// With MessagingScenario::set_provider_timeout_chance, that share of the calls times out instead:
// the caller hears a transient failure after this long (its request timeout), and the
// notification or email never arrives.
inline constexpr MonoMs kSimProviderTimeoutMs = 10'000;

// The world a seed planned, as an observer sees it.
struct MessagingWorld {
  struct DeviceInfo {
    std::string id;
    std::string user_id;
    bool push_token = false;  // registered with a push provider
  };
  struct ConversationInfo {
    std::string id;
    std::vector<std::string> member_user_ids;
  };
  std::vector<DeviceInfo> devices;
  std::vector<ConversationInfo> conversations;
};

// What a run shows an observer (the results scenario, sim/results_scenario.h): the world, the
// devices' connections and traffic, what they received, the pushes and the replicas' lives. Every
// hook runs on the simulator's thread at simulated time t_ms, once the thing happened; a hook
// must not call back into the scenario.
class MessagingObserver {
 public:
  virtual ~MessagingObserver() = default;
  virtual void on_world(const MessagingWorld& world) = 0;
  virtual void on_connect(MonoMs t_ms, const std::string& device_id, raft::NodeId replica) = 0;
  virtual void on_disconnect(MonoMs t_ms, const std::string& device_id) = 0;
  // A send was answered. first_ms: when the device first sent it; resend: a send of a client
  // message id that was answered before (the scenario repeats some on purpose).
  virtual void on_send_answered(MonoMs first_ms, MonoMs t_ms, const std::string& device_id,
                                const std::string& conversation_id,
                                const std::string& client_message_id, std::uint64_t seq,
                                bool resend) = 0;
  virtual void on_message_received(MonoMs t_ms, const std::string& device_id,
                                   const std::string& conversation_id, std::uint64_t seq) = 0;
  // The device received a READ_CURSOR change: its user's read cursor.
  virtual void on_read_cursor(MonoMs t_ms, const std::string& device_id,
                              const std::string& conversation_id, std::uint64_t seq) = 0;
  // The device learned that its read-sync saga closed. first_ms: when it first started it.
  virtual void on_read_closed(MonoMs first_ms, MonoMs t_ms, const std::string& device_id,
                              const std::string& conversation_id, std::uint64_t seq,
                              bool completed) = 0;
  // Replica incarnation (replica, incarnation) called the push provider; accepted: the provider
  // takes it; answer_ms: when the answer reaches the caller if it still runs then.
  virtual void on_push(MonoMs t_ms, raft::NodeId replica, std::uint64_t incarnation,
                       const messaging::PushRequest& request, bool accepted, MonoMs answer_ms) = 0;
  // A replica incarnation came up or went down (crashed or stopped).
  virtual void on_replica_life(MonoMs t_ms, raft::NodeId replica, std::uint64_t incarnation,
                               bool up) = 0;
};

// What a run includes beyond the messaging scenario's default. All off (the default), a seed runs
// exactly as the messaging scenario always ran it; the system scenario (sim/system_scenario.h)
// turns them on.
struct MessagingOptions {
  // Devices speak docs/protocol.md JSON frames over simulated WebSockets to the real
  // server::Gateway of their replica's incarnation (sim/gateway_world.h): they authenticate with a
  // device secret and `since`, receive the live change stream as `change` frames, and send
  // `send`, `ack`, `delete` and `read` requests, whose answers they read from `ok` and `error`
  // frames. Without it they propose commands and read the change stream themselves.
  bool gateway = false;
  std::int64_t min_users = 3;
  std::int64_t max_users = 4;
  std::int64_t max_devices_per_user = 3;
  // Providers also answer 429 with a Retry-After (kSimRateLimitedChance), and some devices' push
  // tokens die during the run (kSimDeadTokenChance): every later push to them is answered
  // push.unregistered, a permanent error.
  bool provider_faults = false;
  // Now and then a running replica's wall clock jumps (kMaxClockJumpMs either way) until the
  // final heal; the gateway, the workflow runtime and the proposals read it.
  bool clock_jumps = false;
  // Now and then the leader is asked to hand leadership to another running voter.
  bool leadership_transfers = false;
  // An operator adds, promotes and removes members until the final heal (sim/membership_operator.h,
  // with its checks); the cluster needs ClusterOptions::spares for it to add. Devices, the setup
  // client and the final checks use only the replicas that serve: those that applied a membership
  // naming them.
  bool membership_changes = false;
  // The gateway's flow control and slow-consumer closes are reached: its stream watermarks, its
  // stalled-reader deadline and the transport's queue bound are the small kSim* ones below, and
  // now and then a device stops reading for a while (kSlowReaderChance per connection).
  bool slow_readers = false;
  // At the end, every open delivery workflow has a timer or an activity pending, and the push
  // invariants: at most one distinct push received per device and message;
  // none to a device of the message's sender; none after a device acknowledged the message before
  // the push timer fired; a device marked push_accepted received a push for that message.
  bool system_checks = false;
};

// A simulated push provider that stands for a service honouring idempotency keys answers a
// repeated, already accepted key with success without notifying the device again.
// With MessagingOptions::provider_faults: the share of calls answered 429 and the Retry-After
// they carry, and the share of push devices whose token dies at a random time of the run.
inline constexpr double kSimRateLimitedChance = 0.1;
inline constexpr std::int64_t kSimMinRetryAfterMs = 100;
inline constexpr std::int64_t kSimMaxRetryAfterMs = 2'000;
inline constexpr double kSimDeadTokenChance = 0.2;
// With MessagingOptions::clock_jumps: a replica's wall clock jumps by at most this much.
inline constexpr std::int64_t kMaxClockJumpMs = 2'000;
// With MessagingOptions::slow_readers: the gateway pauses a session's stream past
// kSimStreamHighWaterBytes queued and resumes it at kSimStreamLowWaterBytes, closes a session
// paused for kSimStalledReaderMs, and the transport closes a connection whose queue would pass
// kSimWsQueuedBytes (the production bounds are 512 KiB, 128 KiB, 30 s and 4 MiB, out of reach of
// the simulated traffic). A connection's device stops reading with kSlowReaderChance, within
// kMaxReadPauseStartMs of connecting, for [kMinReadPauseMs, kMaxReadPauseMs].
inline constexpr std::size_t kSimStreamHighWaterBytes = 2 * 1024;
inline constexpr std::size_t kSimStreamLowWaterBytes = 512;
inline constexpr std::int64_t kSimStalledReaderMs = 1'500;
inline constexpr std::size_t kSimWsQueuedBytes = 16 * 1024;
inline constexpr double kSlowReaderChance = 0.3;
inline constexpr MonoMs kMaxReadPauseStartMs = 2'000;
inline constexpr MonoMs kMinReadPauseMs = 100;
inline constexpr MonoMs kMaxReadPauseMs = 3'000;

// A gateway's answer to a device's request frame (MessagingOptions::gateway).
struct FrameAnswer;

// The options of seed `seed` of the messaging scenario: 3 replicas for odd seeds, 5 for even.
[[nodiscard]] ClusterOptions messaging_cluster_options(std::uint64_t seed, bool verbose);

class MessagingScenario final : public ClusterScenario {
 public:
  explicit MessagingScenario(const ClusterOptions& options, const MessagingOptions& extras = {});
  ~MessagingScenario() override;
  MessagingScenario(const MessagingScenario&) = delete;
  MessagingScenario& operator=(const MessagingScenario&) = delete;

  // Runs the whole scenario once.
  [[nodiscard]] MessagingRunResult run();
  // `observer` (borrowed, may be null) sees the run; set it before run().
  void set_observer(MessagingObserver* observer) { observer_ = observer; }
  // The share of provider calls that time out (kSimProviderTimeoutMs); set before run(). At 0,
  // the default, nothing is drawn for it and the seed runs as it always did.
  void set_provider_timeout_chance(double chance) { provider_timeout_chance_ = chance; }

  // ClusterScenario.
  [[nodiscard]] rsm::StateMachine* open_replica(raft::NodeId id,
                                                const storage::Reader* state) override;
  void on_replica_up(raft::NodeId id, rsm::Node& node) override;
  void on_replica_down(raft::NodeId id) override;
  void on_tick(raft::NodeId id) override;
  [[nodiscard]] std::string check_after_event() override;
  [[nodiscard]] std::string unsettled() const override;
  [[nodiscard]] std::string final_check() override;

 private:
  struct ReplicaApp;
  struct User;
  struct Device;
  struct Conversation;
  struct Sent;
  struct ReadReport;
  enum class ReadKind : std::uint8_t;
  using ResultFn = std::function<void(const Result<rsmpb::CommandResult>&)>;
  using FrameFn = std::function<void(const FrameAnswer&)>;

  // Replicas, and proposals from their services.
  [[nodiscard]] bool alive(raft::NodeId id, std::uint64_t incarnation) const;
  // The running replicas that serve: every running replica, or with membership changes those
  // that applied a membership naming them (not a spare that has not joined yet, nor a removed
  // member that applied its removal).
  [[nodiscard]] std::vector<raft::NodeId> serving_ids() const;
  [[nodiscard]] std::int64_t wall_ms(raft::NodeId id) const;
  void propose_later(raft::NodeId id, std::uint64_t incarnation, rsmpb::Command command,
                     rsm::ProposeCallback done);
  void post_later(raft::NodeId id, std::uint64_t incarnation, std::function<void()> fn);
  // A read barrier on replica `id`, asked in an event of its own; `done` in another.
  void read_later(raft::NodeId id, std::uint64_t incarnation, rsm::ReadCallback done);
  // `done`, wrapped to run in an event of its own while the incarnation lives.
  [[nodiscard]] rsm::ProposeCallback answer_later(raft::NodeId id, std::uint64_t incarnation,
                                                  rsm::ProposeCallback done);
  // The gateway of every other running replica hears the event after a wire latency.
  void broadcast_ephemeral(raft::NodeId from, const std::string& kind, const std::string& payload);
  void start_gateway(raft::NodeId id);
  // The system's own faults, each on a schedule of its own until the final heal.
  void on_clock_jump();
  void on_transfer();
  // push_request: the push being sent, or null for an email.
  void provider_call(raft::NodeId id, std::uint64_t incarnation,
                     const messaging::PushRequest* push_request, messaging::ProviderDone done);
  [[nodiscard]] std::optional<messaging::ProviderResult> provider_fault(
      const messaging::PushRequest* push_request, bool failing);
  void report_world();

  // The world and its setup.
  void plan_world();
  void plan_setup_commands();
  void plan_device_setup(std::size_t device);
  void run_setup_phase();
  void send_setup(std::size_t index);
  void on_setup_answer(std::size_t index, const Result<rsmpb::CommandResult>& result);
  void start_devices();
  [[nodiscard]] bool member(std::size_t user, const Conversation& c) const;

  // Requests: a device's on its connection, the setup client's on a random replica.
  void request(std::optional<std::size_t> device, raft::NodeId id, const rsmpb::Command& command,
               ResultFn done);
  void finish_request(std::uint64_t token, const Result<rsmpb::CommandResult>& result);
  // Fails the pending request `token` (no answer): a command request with `status`, a frame
  // request with the protocol's code for it.
  void fail_request(std::uint64_t token, const Status& status);
  void arm_request_timeout(std::uint64_t token, MonoMs timeout_ms);
  void drop_requests_of(std::size_t device);
  // A device's request frame on its connection; `done` gets the `ok` or `error` answer.
  void frame_request(std::size_t device, boost::json::object frame, FrameFn done,
                     MonoMs timeout_ms);
  void finish_frame(std::uint64_t token, const FrameAnswer& answer);

  // Devices: connections and the gateway.
  void connect(std::size_t device);
  void disconnect(std::size_t device, bool voluntary, std::string_view why);
  void on_replica_applied(raft::NodeId id, std::vector<messaging::ChangeNotice> notices);
  // Gateway mode: the device opens its WebSocket and authenticates.
  void open_socket(std::size_t device);
  void on_auth_answer(std::size_t device, const FrameAnswer& answer);
  void on_frame(std::size_t device, const std::string& text);
  void on_change_frame(std::size_t device, const boost::json::object& frame);
  void push_changes(raft::NodeId id);
  void deliver_changes(Device& d);
  void receive(Device& d, const messagingpb::SyncEntry& entry);
  void receive_message(Device& d, const messagingpb::SyncEntry& entry);
  void note_message(const messagingpb::MessageRecord& message, const std::string& where);

  // Devices: what they do.
  void on_device_tick(std::size_t device);
  void plan_send(Device& d);
  void plan_delete(Device& d);
  void plan_read(std::size_t device);
  void pump(std::size_t device);
  void send_head(std::size_t device);
  void on_send_answer(std::size_t device, const Result<rsmpb::CommandResult>& result);
  void send_delete(std::size_t device);
  void send_ack(std::size_t device, const std::string& conversation_id);
  void on_ack_answer(std::size_t device, const std::string& conversation_id,
                     const Result<rsmpb::CommandResult>& result);
  void start_read(std::size_t device);
  void on_read_answer(std::size_t device, const Result<rsmpb::CommandResult>& result);
  void on_read_frame(std::size_t device, const FrameAnswer& answer);
  void poll_read(Device& d);
  // The device learned how its current read ended.
  void close_read(Device& d, const messaging::ReadSyncOutcome& outcome);
  void back_off(std::size_t device);

  // Outside services.
  void record_push(raft::NodeId id, const messaging::PushRequest& request);
  void record_email(const messaging::EmailRequest& request);

  // Final checks.
  [[nodiscard]] const storage::Reader* any_state() const;
  [[nodiscard]] std::string check_sends(raft::NodeId id, const storage::Reader& state) const;
  [[nodiscard]] std::string check_conversation(const storage::Reader& state, const Conversation& c);
  [[nodiscard]] std::string check_devices(const storage::Reader& state) const;
  [[nodiscard]] std::string check_reads(const storage::Reader& state);
  void print_reads(const storage::Reader& state, const Device& d,
                   std::string_view conversation_id) const;
  [[nodiscard]] static std::string first_step_output(const storage::Reader& state,
                                                     const ReadReport& r);
  [[nodiscard]] std::string check_read(const storage::Reader& state, const ReadReport& r);
  [[nodiscard]] std::string check_delivery(const storage::Reader& state, const Conversation& c,
                                           const messagingpb::MessageRecord& message,
                                           std::size_t recipient);
  [[nodiscard]] std::string check_providers(const storage::Reader& state) const;
  // MessagingOptions::system_checks.
  [[nodiscard]] std::string check_pushes(const storage::Reader& state) const;
  [[nodiscard]] static std::string check_not_stuck(const storage::Reader& state,
                                                   const std::string& workflow_id);
  [[nodiscard]] std::string check_push_timing(const storage::Reader& state,
                                              const std::string& delivery_id) const;
  void violation(std::string what);

  ClusterOptions options_;
  MessagingOptions extras_;
  workflow::Registry registry_;
  Rng plan_rng_;
  Rng device_rng_;
  Rng provider_rng_;
  Rng skew_rng_;
  // Drawn only with the matching MessagingOptions, so the default's seeds replay as before.
  Rng wire_rng_;    // WebSocket latencies
  Rng fault_rng_;   // dead tokens, 429s, clock jumps, transfers
  Rng reader_rng_;  // slow readers' pauses
  std::uint64_t next_socket_ = 1;
  // A short delivery lifetime (SetRetention) in some seeds, drawn from a stream of its own so the
  // rest of the seed's schedule is unchanged; 0 = the default (longer than any run).
  std::int64_t delivery_lifetime_ms_ = 0;
  std::vector<User> users_;
  std::vector<Device> devices_;
  std::vector<Conversation> conversations_;
  std::map<std::string, std::size_t, std::less<>> device_by_id_;
  // The setup client's commands, by phase, and how far it got.
  std::vector<std::vector<messagingpb::MessagingCommand>> setup_;
  std::size_t setup_phase_ = 0;
  std::size_t setup_pending_ = 0;  // commands of the current phase not answered yet
  bool quiesced_ = false;          // faults are over: devices stay online

  std::map<raft::NodeId, std::unique_ptr<ReplicaApp>> apps_;
  std::map<raft::NodeId, const storage::Reader*> states_;  // every replica's engine
  std::map<raft::NodeId, std::uint64_t> incarnations_;
  struct Pending {
    std::optional<std::size_t> device;
    ResultFn done;       // a command request, or
    FrameFn frame_done;  // a frame request (gateway mode)
  };
  std::map<std::uint64_t, Pending> requests_;  // by token: awaiting an answer
  std::uint64_t next_request_ = 1;

  // What devices and answers revealed, across the run.
  std::vector<Sent> sent_;  // every acknowledged send
  // (conversation, seq) -> (sender device, client message id), from the first sighting.
  std::map<std::pair<std::string, std::uint64_t>, std::pair<std::string, std::string>> messages_;
  // (user, change_seq) -> the serialized change, from the first device that received it.
  std::map<std::pair<std::string, std::uint64_t>, std::string> changes_;
  std::set<std::pair<std::string, std::uint64_t>> delete_issued_;  // (conversation, seq)
  std::vector<ReadReport> reads_;  // every read-sync saga a device started
  std::vector<messaging::PushRequest> pushes_;
  // Pushes the provider accepted under a new idempotency key: what devices were notified of.
  std::vector<messaging::PushRequest> received_pushes_;
  std::set<std::string> accepted_keys_;
  std::map<std::string, MonoMs, std::less<>> token_dies_ms_;  // by device id
  std::vector<messaging::EmailRequest> emails_;

  std::optional<std::string> violation_;
  MessagingStats stats_;
  MessagingObserver* observer_ = nullptr;  // borrowed; may be null
  double provider_timeout_chance_ = 0.0;
  // Last but one: destroyed before the services above, so no replica outlives them.
  SimCluster cluster_;
  // With MessagingOptions::membership_changes; borrows the cluster.
  std::unique_ptr<MembershipOperator> membership_;
};

}  // namespace herald::sim
