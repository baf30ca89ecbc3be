#include "app/demo.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <boost/json.hpp>
#include <charconv>
#include <chrono>
#include <deque>
#include <filesystem>
#include <map>
#include <random>
#include <system_error>
#include <utility>

#include "base/assert.h"
#include "base/random.h"
#include "client/admin_client.h"
#include "client/herald_client.h"
#include "messaging/delivery.h"
#include "messaging/domain.h"
#include "messaging/providers.h"
#include "server/endpoint.h"

namespace herald::app {

namespace json = boost::json;
using client::Change;
using client::HeraldClient;

namespace {

// Time between two demo steps, drawn uniformly.
constexpr std::int64_t kMinStepMs = 1'000;
constexpr std::int64_t kMaxStepMs = 2'000;
// How long a connected device may take to receive a message or a receipt meant for it.
constexpr std::uint32_t kLiveWaitMs = 1'000;
// Silence after which a device that reconnected is taken to have caught up.
constexpr std::uint32_t kCatchUpQuietMs = 300;
// Changes a reconnecting device takes in while catching up, at most.
constexpr std::size_t kMaxCatchUpChanges = 1'000;
// One poll of a device's socket while draining its events, and the events drained per step.
constexpr std::uint32_t kDrainPollMs = 1;
constexpr std::size_t kMaxDrainedEvents = 1'000;
// Polling for a leader: the interval, and the wait after which the demo says it is waiting.
constexpr std::int64_t kLeaderPollMs = 100;
constexpr std::int64_t kLeaderPatienceMs = 3'000;
// How long someone types before the message goes out.
constexpr std::int64_t kMinTypingMs = 300;
constexpr std::int64_t kMaxTypingMs = 900;
// Chance per step that an action is an edit, a delete, or a send after a typing indicator (in
// percent); the rest are plain sends.
constexpr std::uint64_t kEditPercent = 6;
constexpr std::uint64_t kDeletePercent = 4;
constexpr std::uint64_t kTypingPercent = 20;
constexpr std::uint64_t kPercent = 100;
// Chance that one of the receiving devices reports a read after a message.
constexpr double kReadChance = 0.5;
// A push is looked for in the delivery timeline from this long after the message (the push timer
// fires after kPushAfterMs) ...
constexpr std::int64_t kPushCheckAfterMs = messaging::kPushAfterMs + 500;
// ... an escalation email from this long after it ...
constexpr std::int64_t kEmailCheckAfterMs = kDemoEmailDelayMs + 500;
// ... and neither any more after this long.
constexpr std::int64_t kWatchGiveUpMs = 30'000;
// Watches kept at most; more messages to offline devices are not followed.
constexpr std::size_t kMaxWatches = 64;
// Recent messages kept as candidates for an edit or a delete.
constexpr std::size_t kMaxRecentMessages = 16;
// Device ids tried past the next generation when it is taken (device ids are never reused).
constexpr std::uint64_t kMaxDeviceIdAttempts = 100;
// Browser tabs of the web chat (/chat/) the demo makes devices for, per user (alice and bob).
constexpr int kChatTabsPerUser = 2;
// Largest random suffix of a web chat device id (six hex digits).
constexpr std::int64_t kChatDeviceSuffixMax = 0xffffff;

constexpr char kTeamId[] = "team";
constexpr char kConflictCode[] = "conflict";

struct UserSpec {
  const char* user_id;
  const char* display_name;
  const char* email;
  bool email_fallback;
};

constexpr std::array<UserSpec, 4> kUsers{{
    {"alice", "Alice", "alice@example.com", false},
    {"bob", "Bob", "bob@example.com", false},
    {"carol", "Carol", "carol@example.com", true},
    {"dave", "Dave", "dave@example.com", false},
}};

// A demo device, and how often and how long it goes offline (never when offline_chance is 0).
struct DeviceSpec {
  const char* user_id;
  const char* label;
  const char* platform;
  const char* push_provider;  // "" without a push token
  double offline_chance;      // per step, while online
  std::int64_t min_offline_ms;
  std::int64_t max_offline_ms;
};

constexpr std::array<DeviceSpec, 5> kDevices{{
    {"alice", "alice-phone", "ios", "", 0, 0, 0},
    {"alice", "alice-laptop", "web", "", 0, 0, 0},
    // Long enough offline for a push (after kPushAfterMs).
    {"bob", "bob-phone", "ios", messaging::kApnsProvider, 0.08, 5'000, 12'000},
    // Long enough offline for the email fallback (after kDemoEmailDelayMs).
    {"carol", "carol-phone", "android", messaging::kFcmProvider, 0.06, kDemoEmailDelayMs + 3'000,
     kDemoEmailDelayMs + 10'000},
    // A browser tab subscribed to Web Push; offline long enough for a push.
    {"dave", "dave-browser", "web", messaging::kWebPushProvider, 0.08, 5'000, 12'000},
}};

constexpr std::array<const char*, 10> kDirectLines{
    "are you around?",
    "lunch at noon?",
    "sure, the usual place",
    "running five minutes late",
    "did the deploy go out?",
    "yes, all green",
    "can you review my change?",
    "on it",
    "thanks!",
    "see you tomorrow",
};
constexpr std::array<const char*, 10> kTeamLines{
    "standup in 5 minutes",
    "the release candidate is up",
    "who has the pager this week?",
    "I do",
    "coffee anyone?",
    "the dashboard looks healthy",
    "retro notes are in the doc",
    "nice work everyone",
    "the build is flaky again",
    "fixed it",
};

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// `ms` in whole seconds, rounded to the nearest.
std::int64_t seconds(std::int64_t ms) {
  return (ms + 500) / 1000;
}

const UserSpec& user_spec(std::string_view user_id) {
  const auto* it = std::find_if(kUsers.begin(), kUsers.end(),
                                [&](const UserSpec& u) { return u.user_id == user_id; });
  HERALD_ASSERT(it != kUsers.end(), "not a demo user");
  return *it;
}

bool is_conflict(const Status& status) {
  return client::protocol_error_code(status) == kConflictCode;
}

// One simulated device.
struct Device {
  const DeviceSpec* spec = nullptr;
  std::string device_id;
  std::string token;
  bool push_target = false;              // a push token is registered
  std::unique_ptr<HeraldClient> client;  // null while offline
  std::uint64_t cursor = 0;              // the newest change of the user's stream it processed
  std::int64_t offline_since_ms = 0;     // while offline
  std::int64_t back_at_ms = 0;           // while offline: when it reconnects

  [[nodiscard]] bool online() const { return client != nullptr; }
  [[nodiscard]] std::string_view user() const { return spec->user_id; }
};

struct Conversation {
  std::string id;
  std::vector<std::string> members;
  const std::array<const char*, 10>* lines = nullptr;

  [[nodiscard]] bool has(std::string_view user) const {
    return std::find(members.begin(), members.end(), user) != members.end();
  }
};

// A message the demo sent, a candidate for an edit or a delete.
struct SentMessage {
  std::string conversation_id;
  std::uint64_t seq = 0;
  Device* sender = nullptr;
  std::string body;
};

// A delivery followed in the admin timeline: a push to an offline device, or an email escalation.
struct Watch {
  bool email = false;
  std::string conversation_id;
  std::uint64_t seq = 0;
  std::string user_id;
  std::string device_id;  // push only
  std::int64_t check_at_ms = 0;
  std::int64_t give_up_ms = 0;
};

bool has_leader(const std::string& cluster_body) {
  boost::system::error_code ec;
  const json::value v = json::parse(cluster_body, ec);
  if (ec || !v.is_object()) return false;
  const json::value* leader = v.as_object().if_contains("leader");
  return leader != nullptr && !leader->is_null();
}

bool has_event(const client::RecipientTimeline& r, std::string_view name) {
  return std::any_of(r.history.begin(), r.history.end(),
                     [&](const client::TimelineEvent& e) { return e.name == name; });
}

// `status` with `what` in front of its message, for the log.
Status in_context(Status status, std::string_view what) {
  if (status.ok()) return status;
  return {status.code(), fmt::format("{}: {}", what, status.message())};
}

// "\"body\"", for a narrative line.
std::string in_quotes(std::string_view body) {
  return fmt::format("\"{}\"", body);
}

}  // namespace

// ------------------------------------------------------------------ Demo::Session

class Demo::Session {
 public:
  Session(Demo& demo, Rng& rng);
  // Closes the devices that are online.
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Provisions, connects and runs steps until stop() (ok) or a failure (its error).
  [[nodiscard]] Status run();
  // Steps completed.
  [[nodiscard]] std::uint64_t steps() const { return steps_; }

 private:
  // ---- Provisioning.
  [[nodiscard]] Status wait_for_leader();
  [[nodiscard]] Status provision();
  [[nodiscard]] Status provision_user(const UserSpec& spec);
  [[nodiscard]] Status provision_device(const DeviceSpec& spec, Device& device);
  [[nodiscard]] Result<std::string> create_device(const DeviceSpec& spec, std::uint64_t generation,
                                                  std::string& device_id);
  [[nodiscard]] Status remove_device(const std::string& user_id, const std::string& device_id);
  [[nodiscard]] Status set_email_fallback(const UserSpec& spec);
  [[nodiscard]] Status provision_conversations();
  [[nodiscard]] Status complete_team();
  void log_cast() const;
  [[nodiscard]] Status log_chat_links();

  // ---- Devices.
  // Connects and authenticates `d`; without `since`, its cursor becomes the user's newest.
  [[nodiscard]] Status connect(Device& d, std::optional<std::uint64_t> since);
  // Records a change `d` popped; a new message from someone else is acknowledged and told.
  [[nodiscard]] Status note_change(Device& d, const Change& c);
  // Pops `d`'s changes until one satisfies `wanted`; nullopt when none comes within kLiveWaitMs.
  template <typename Wanted>
  [[nodiscard]] Result<std::optional<Change>> wait_for(Device& d, Wanted wanted);
  // Pops every event waiting on every online device.
  [[nodiscard]] Status drain_all();
  [[nodiscard]] Status drain(Device& d);

  // ---- Steps.
  [[nodiscard]] Status step();
  [[nodiscard]] Status go_offline_maybe();
  [[nodiscard]] Status reconnect_due();
  [[nodiscard]] Status catch_up(Device& d);
  [[nodiscard]] Status check_watches();
  // True when the watch is settled (told, moot or given up).
  [[nodiscard]] Result<bool> check_watch(const Watch& w);
  [[nodiscard]] Status act();
  [[nodiscard]] Status send_message(bool typing);
  // What happened at recipient `d` of message `seq` sent at `sent_ms`: one narrative clause.
  [[nodiscard]] Result<std::string> receive_live(Device& d, const Conversation& conv,
                                                 std::uint64_t seq, const Device& sender,
                                                 std::int64_t sent_ms);
  void watch_offline(const Device& d, const Conversation& conv, std::uint64_t seq);
  [[nodiscard]] Status read_maybe(const Conversation& conv, std::uint64_t seq, Device& sender);
  [[nodiscard]] Status edit_or_delete(bool edit);
  void remember(SentMessage message);

  [[nodiscard]] Device& pick(const std::vector<Device*>& candidates);

  Demo& demo_;
  Rng& rng_;
  client::AdminClient admin_;
  std::vector<Device> devices_;  // kDevices in order; never resized after provisioning
  std::vector<Conversation> conversations_;
  std::vector<Watch> watches_;
  std::deque<SentMessage> recent_;
  std::uint64_t next_message_ = 1;
  std::uint64_t steps_ = 0;
};

Demo::Session::Session(Demo& demo, Rng& rng)
    : demo_(demo),
      rng_(rng),
      admin_(demo.options_.host, demo.options_.port, demo.options_.admin_token,
             kDemoCallTimeoutMs) {}

Demo::Session::~Session() {
  for (Device& d : devices_) {
    if (d.online()) {
      // The device leaves either way: a failed close handshake only means the server drops the
      // connection without one.
      d.client->close().ignore();
    }
  }
}

Status Demo::Session::run() {
  HERALD_RETURN_IF_ERROR(wait_for_leader());
  HERALD_RETURN_IF_ERROR(in_context(provision(), "provisioning"));
  for (Device& d : devices_) {
    HERALD_RETURN_IF_ERROR(in_context(connect(d, std::nullopt), "connecting " + d.device_id));
  }
  HERALD_RETURN_IF_ERROR(in_context(complete_team(), "completing the team"));
  log_cast();
  if (!demo_.chat_links_logged_) {
    HERALD_RETURN_IF_ERROR(in_context(log_chat_links(), "provisioning the web chat's devices"));
    demo_.chat_links_logged_ = true;
  }
  while (demo_.pause_ms(rng_.range(kMinStepMs, kMaxStepMs))) {
    HERALD_RETURN_IF_ERROR(in_context(step(), "traffic"));
    ++steps_;
  }
  return Status::ok_status();
}

// ------------------------------------------------------------------ provisioning

Status Demo::Session::wait_for_leader() {
  const std::int64_t start_ms = now_ms();
  bool told = false;
  while (true) {
    Result<std::string> cluster = admin_.get("/v1/cluster");
    if (cluster.ok() && has_leader(*cluster)) return Status::ok_status();
    if (!told && now_ms() - start_ms >= kLeaderPatienceMs) {
      spdlog::info("demo: waiting for the node to have a leader");
      told = true;
    }
    if (!demo_.pause_ms(kLeaderPollMs)) return Status::aborted("the demo is stopping");
  }
}

Status Demo::Session::provision() {
  for (const UserSpec& spec : kUsers) {
    HERALD_RETURN_IF_ERROR(provision_user(spec));
  }
  devices_.resize(kDevices.size());
  for (std::size_t i = 0; i < kDevices.size(); ++i) {
    HERALD_RETURN_IF_ERROR(provision_device(kDevices[i], devices_[i]));
  }
  return provision_conversations();
}

Status Demo::Session::provision_user(const UserSpec& spec) {
  Status created = admin_.create_user(spec.user_id, spec.display_name, spec.email);
  if (!created.ok() && !is_conflict(created)) return created;  // conflict: from an earlier run
  if (spec.email_fallback) return set_email_fallback(spec);
  return Status::ok_status();
}

Status Demo::Session::set_email_fallback(const UserSpec& spec) {
  const json::object body{{"email_fallback", true}, {"email_delay_ms", kDemoEmailDelayMs}};
  HERALD_ASSIGN_OR_RETURN(client::HttpReply reply,
                          admin_.request("PUT",
                                         fmt::format("/v1/admin/users/{}/preferences",
                                                     client::encode_path_segment(spec.user_id)),
                                         json::serialize(body)));
  return reply.status / 100 == 2 ? Status::ok_status() : client::status_of_reply(reply);
}

// Creates the next generation of the device, then removes the earlier ones still active (in that
// order, so that the active list always names the newest generation).
Status Demo::Session::provision_device(const DeviceSpec& spec, Device& device) {
  HERALD_ASSIGN_OR_RETURN(client::UserInfo user, admin_.get_user(spec.user_id));
  std::vector<std::string> active;
  for (const client::DeviceInfo& d : user.devices) active.push_back(d.device_id);
  const std::uint64_t generation = next_demo_device_generation(spec.label, active);
  device.spec = &spec;
  HERALD_ASSIGN_OR_RETURN(device.token, create_device(spec, generation, device.device_id));
  if (std::string_view(spec.push_provider) == messaging::kWebPushProvider) {
    // A browser's subscription is made by the push service, not chosen: the double makes one.
    if (demo_.options_.webpush_subscribe) {
      HERALD_ASSIGN_OR_RETURN(const std::string subscription, demo_.options_.webpush_subscribe());
      HERALD_RETURN_IF_ERROR(
          admin_.set_push_token(spec.user_id, device.device_id, spec.push_provider, subscription));
      device.push_target = true;
    } else {
      spdlog::info("demo: {} has no Web Push subscription ([webpush] points at a real service)",
                   device.device_id);
    }
  } else if (*spec.push_provider != '\0') {
    HERALD_RETURN_IF_ERROR(
        admin_.set_push_token(spec.user_id, device.device_id, spec.push_provider,
                              demo_push_token(spec.push_provider, device.device_id)));
    device.push_target = true;
  }
  for (const std::string& id : active) {
    if (demo_device_generation(spec.label, id).has_value()) {
      HERALD_RETURN_IF_ERROR(remove_device(spec.user_id, id));
    }
  }
  return Status::ok_status();
}

Result<std::string> Demo::Session::create_device(const DeviceSpec& spec, std::uint64_t generation,
                                                 std::string& device_id) {
  for (std::uint64_t attempt = 0; attempt < kMaxDeviceIdAttempts; ++attempt) {
    device_id = demo_device_id(spec.label, generation + attempt);
    Result<std::string> token = admin_.create_device(spec.user_id, device_id, spec.platform);
    if (token.ok() || !is_conflict(token.status())) return token;  // conflict: the id was used
  }
  return Status::resource_exhausted(
      fmt::format("no free device id for {} after {} attempts", spec.label, kMaxDeviceIdAttempts));
}

Status Demo::Session::remove_device(const std::string& user_id, const std::string& device_id) {
  HERALD_ASSIGN_OR_RETURN(
      client::HttpReply reply,
      admin_.request("DELETE", fmt::format("/v1/admin/users/{}/devices/{}",
                                           client::encode_path_segment(user_id),
                                           client::encode_path_segment(device_id))));
  if (reply.status / 100 != 2) return client::status_of_reply(reply);
  spdlog::debug("demo: removed {}'s device {} of an earlier run", user_id, device_id);
  return Status::ok_status();
}

Status Demo::Session::provision_conversations() {
  HERALD_ASSIGN_OR_RETURN(client::Conversation direct,
                          admin_.create_conversation({"alice", "direct", {"bob"}, "", ""}));
  const Result<client::Conversation> team =
      admin_.create_conversation({"alice", "group", {"bob", "carol", "dave"}, kTeamId, kTeamId});
  if (!team.ok() && !is_conflict(team.status())) return team.status();  // conflict: it exists
  conversations_.push_back({direct.conversation_id, {"alice", "bob"}, &kDirectLines});
  conversations_.push_back({kTeamId, {"alice", "bob", "carol", "dave"}, &kTeamLines});
  return Status::ok_status();
}

// The team may be there from an earlier run and changed since (by hand, say): its owner, alice,
// adds back whoever is missing (members already in are skipped).
Status Demo::Session::complete_team() {
  Device& alice = devices_.front();
  HERALD_ASSERT(alice.user() == "alice", "the first demo device is alice's");
  const Conversation& team = conversations_.back();
  std::vector<std::string> others;
  for (const std::string& member : team.members) {
    if (member != alice.user()) others.push_back(member);
  }
  return alice.client->members_add(team.id, others);
}

void Demo::Session::log_cast() const {
  std::vector<std::string> cast;
  for (const Device& d : devices_) {
    std::string line = fmt::format("{} ({})", d.device_id, d.user());
    if (d.push_target) line += fmt::format(" push via {}", d.spec->push_provider);
    cast.push_back(std::move(line));
  }
  spdlog::info("demo: devices {}; carol is emailed after {} s offline; conversations {} and {}",
               fmt::join(cast, ", "), kDemoEmailDelayMs / 1000, conversations_[0].id,
               conversations_[1].id);
  spdlog::info(
      "demo: follow a message: curl -H 'Authorization: Bearer {}' "
      "http://{}:{}/v1/admin/conversations/{}/messages/<seq>",
      demo_.options_.admin_token, demo_.options_.host, demo_.options_.port, kTeamId);
}

// Makes a device per web chat tab for alice and bob and prints each tab's sign-in link: the
// device secret travels in the address's fragment, which the browser does not send to the node
// (docs/js-client.md, "The web chat"). Demo mode only, like the admin token it prints; each
// process makes new devices, with random ids.
Status Demo::Session::log_chat_links() {
  for (const char* user : {"alice", "bob"}) {
    for (int tab = 1; tab <= kChatTabsPerUser; ++tab) {
      Result<std::string> token = Status::resource_exhausted("no free web chat device id");
      std::string device_id;
      for (std::uint64_t attempt = 0; attempt < kMaxDeviceIdAttempts; ++attempt) {
        device_id = fmt::format("{}-chat{}-{:06x}", user, tab, rng_.range(0, kChatDeviceSuffixMax));
        token = admin_.create_device(user, device_id, "web");
        if (token.ok() || !is_conflict(token.status())) break;
      }
      if (!token.ok()) return token.status();
      spdlog::info("demo: web chat as {} (tab {}): http://{}:{}/chat/#user={}&device={}&token={}",
                   user, tab, demo_.options_.host, demo_.options_.port, user, device_id,
                   client::encode_path_segment(*token));
    }
  }
  return Status::ok_status();
}

// ------------------------------------------------------------------ devices

Status Demo::Session::connect(Device& d, std::optional<std::uint64_t> since) {
  HERALD_ASSIGN_OR_RETURN(d.client, HeraldClient::connect(demo_.options_.host, demo_.options_.port,
                                                          kDemoCallTimeoutMs));
  d.client->set_request_timeout_ms(kDemoCallTimeoutMs);
  Result<client::AuthInfo> auth =
      d.client->auth(std::string(d.user()), d.device_id, d.token, since);
  if (!auth.ok()) {
    d.client.reset();
    return auth.status();
  }
  if (!since.has_value()) d.cursor = auth->cursor;
  return Status::ok_status();
}

Status Demo::Session::note_change(Device& d, const Change& c) {
  d.cursor = std::max(d.cursor, c.cursor);
  if (c.kind != "message_new" || c.actor == d.user()) {
    spdlog::debug("demo: {} got {} for {} #{}", d.device_id, c.kind, c.conversation_id, c.seq);
    return Status::ok_status();
  }
  HERALD_RETURN_IF_ERROR(d.client->ack(c.conversation_id, c.seq).status());
  spdlog::info("demo: {} received {} #{} from {} {}, acked", d.device_id, c.conversation_id, c.seq,
               c.actor.empty() ? "the admin API" : c.actor,
               in_quotes(c.message.has_value() ? c.message->body : ""));
  return Status::ok_status();
}

template <typename Wanted>
Result<std::optional<Change>> Demo::Session::wait_for(Device& d, Wanted wanted) {
  const std::int64_t deadline_ms = now_ms() + kLiveWaitMs;
  while (true) {
    const std::int64_t left_ms = deadline_ms - now_ms();
    if (left_ms <= 0) return std::optional<Change>();
    Result<Change> c = d.client->next_change(static_cast<std::uint32_t>(left_ms));
    if (!c.ok()) {
      if (c.status().code() == Code::kTimeout) return std::optional<Change>();
      return c.status();
    }
    if (wanted(*c)) {
      d.cursor = std::max(d.cursor, c->cursor);
      return std::optional<Change>(std::move(*c));
    }
    HERALD_RETURN_IF_ERROR(note_change(d, *c));
  }
}

Status Demo::Session::drain_all() {
  for (Device& d : devices_) {
    if (d.online()) HERALD_RETURN_IF_ERROR(drain(d));
  }
  return Status::ok_status();
}

Status Demo::Session::drain(Device& d) {
  for (std::size_t i = 0; i < kMaxDrainedEvents; ++i) {
    Result<client::Event> event = d.client->next_event(kDrainPollMs);
    if (!event.ok()) {
      return event.status().code() == Code::kTimeout ? Status::ok_status() : event.status();
    }
    if (const auto* c = std::get_if<Change>(&*event)) {
      HERALD_RETURN_IF_ERROR(note_change(d, *c));
    } else if (const auto* t = std::get_if<client::TypingEvent>(&*event)) {
      spdlog::debug("demo: {} sees {} typing in {}", d.device_id, t->user_id, t->conversation_id);
    } else if (const auto* p = std::get_if<client::PresenceEvent>(&*event)) {
      spdlog::debug("demo: {} sees {} {}", d.device_id, p->user_id,
                    p->online ? "online" : "offline");
    }
  }
  return Status::ok_status();
}

Device& Demo::Session::pick(const std::vector<Device*>& candidates) {
  HERALD_ASSERT(!candidates.empty(), "picking from no device");
  return *candidates[rng_.uniform(candidates.size())];
}

// ------------------------------------------------------------------ steps

Status Demo::Session::step() {
  HERALD_RETURN_IF_ERROR(drain_all());
  // Watches first: a push or an email that went out while a device was offline is told before
  // the device comes back.
  HERALD_RETURN_IF_ERROR(check_watches());
  HERALD_RETURN_IF_ERROR(reconnect_due());
  HERALD_RETURN_IF_ERROR(go_offline_maybe());
  return act();
}

Status Demo::Session::go_offline_maybe() {
  for (Device& d : devices_) {
    if (!d.online() || d.spec->offline_chance <= 0 || !rng_.chance(d.spec->offline_chance)) {
      continue;
    }
    // The device leaves either way; a failed close handshake only skips the ceremony.
    d.client->close().ignore();
    d.client.reset();
    const std::int64_t offline_ms = rng_.range(d.spec->min_offline_ms, d.spec->max_offline_ms);
    d.offline_since_ms = now_ms();
    d.back_at_ms = d.offline_since_ms + offline_ms;
    const bool emailed = user_spec(d.user()).email_fallback;
    spdlog::info("demo: {} goes offline for {} s{}", d.device_id, seconds(offline_ms),
                 emailed ? fmt::format(" (email fallback after {} s)", kDemoEmailDelayMs / 1000)
                         : std::string());
  }
  return Status::ok_status();
}

Status Demo::Session::reconnect_due() {
  const std::int64_t now = now_ms();
  for (Device& d : devices_) {
    if (d.online() || now < d.back_at_ms) continue;
    HERALD_RETURN_IF_ERROR(connect(d, d.cursor));
    HERALD_RETURN_IF_ERROR(catch_up(d));
  }
  return Status::ok_status();
}

// Takes in what the device missed (replayed after `since`), acknowledges the new messages and
// tells what came.
Status Demo::Session::catch_up(Device& d) {
  const std::uint64_t since = d.cursor;
  std::map<std::string, std::vector<std::uint64_t>> missed;  // by conversation, in order
  std::size_t changes = 0;
  for (; changes < kMaxCatchUpChanges; ++changes) {
    Result<Change> c = d.client->next_change(kCatchUpQuietMs);
    if (!c.ok()) {
      if (c.status().code() == Code::kTimeout) break;
      return c.status();
    }
    d.cursor = std::max(d.cursor, c->cursor);
    if (c->kind == "message_new" && c->actor != d.user()) {
      missed[c->conversation_id].push_back(c->seq);
    }
  }
  std::vector<std::string> listed;
  for (const auto& [conversation_id, seqs] : missed) {
    HERALD_RETURN_IF_ERROR(d.client->ack(conversation_id, seqs.back()).status());
    listed.push_back(fmt::format("{} #{}", conversation_id, fmt::join(seqs, " #")));
  }
  const std::int64_t away_s = seconds(now_ms() - d.offline_since_ms);
  if (listed.empty()) {
    spdlog::info(
        "demo: {} back online after {} s; caught up from cursor {}: {} changes, no new "
        "messages",
        d.device_id, away_s, since, changes);
  } else {
    spdlog::info(
        "demo: {} back online after {} s; caught up from cursor {}: {} changes, new {}; "
        "acked",
        d.device_id, away_s, since, changes, fmt::join(listed, ", "));
  }
  return Status::ok_status();
}

Status Demo::Session::check_watches() {
  const std::int64_t now = now_ms();
  std::vector<Watch> open;
  for (const Watch& w : watches_) {
    if (now < w.check_at_ms) {
      open.push_back(w);
      continue;
    }
    HERALD_ASSIGN_OR_RETURN(const bool settled, check_watch(w));
    if (!settled && now < w.give_up_ms) open.push_back(w);
  }
  watches_ = std::move(open);
  return Status::ok_status();
}

Result<bool> Demo::Session::check_watch(const Watch& w) {
  HERALD_ASSIGN_OR_RETURN(client::MessageTimeline timeline,
                          admin_.timeline(w.conversation_id, w.seq));
  const client::RecipientTimeline* r = timeline.recipient(w.user_id);
  if (r == nullptr) return true;  // no longer a recipient (the membership changed)
  // Once delivered, no push or email is due any more.
  const bool delivered =
      r->state == messaging::kDeliveryConfirmed || r->state == messaging::kDeliveryReadAcknowledged;
  if (w.email) {
    if (!r->emailed) return delivered;
    spdlog::info("demo: {} escalated by email for {} #{}", w.user_id, w.conversation_id, w.seq);
    return true;
  }
  if (has_event(*r, messaging::kPushFailedRecord)) {
    spdlog::warn("demo: the push to {} for {} #{} failed", w.device_id, w.conversation_id, w.seq);
    return true;
  }
  if (!has_event(*r, messaging::kPushSentRecord)) return delivered;
  spdlog::info("demo: {} offline; push sent to {} for {} #{}", w.device_id, w.device_id,
               w.conversation_id, w.seq);
  return true;
}

Status Demo::Session::act() {
  const std::uint64_t roll = rng_.uniform(kPercent);
  if (roll < kEditPercent && !recent_.empty()) return edit_or_delete(true);
  if (roll < kEditPercent + kDeletePercent && !recent_.empty()) return edit_or_delete(false);
  return send_message(roll >= kPercent - kTypingPercent);
}

Status Demo::Session::send_message(bool typing) {
  const Conversation& conv = conversations_[rng_.uniform(conversations_.size())];
  std::vector<Device*> senders;
  for (Device& d : devices_) {
    if (d.online() && conv.has(d.user())) senders.push_back(&d);
  }
  if (senders.empty()) return Status::ok_status();
  Device& sender = pick(senders);
  const std::string body = (*conv.lines)[rng_.uniform(conv.lines->size())];
  if (typing) {
    HERALD_RETURN_IF_ERROR(sender.client->typing(conv.id, true));
    spdlog::info("demo: {} is typing in {} ...", sender.user(), conv.id);
    if (!demo_.pause_ms(rng_.range(kMinTypingMs, kMaxTypingMs))) return Status::ok_status();
  }
  const std::int64_t sent_ms = now_ms();
  HERALD_ASSIGN_OR_RETURN(
      client::SendResult sent,
      sender.client->send(conv.id, fmt::format("demo-{}", next_message_++), body));
  if (typing) HERALD_RETURN_IF_ERROR(sender.client->typing(conv.id, false));
  std::vector<std::string> clauses;
  for (Device& d : devices_) {
    if (&d == &sender || !conv.has(d.user())) continue;
    if (d.online()) {
      HERALD_ASSIGN_OR_RETURN(std::string clause, receive_live(d, conv, sent.seq, sender, sent_ms));
      clauses.push_back(std::move(clause));
    } else {
      clauses.push_back(fmt::format("{} is offline", d.device_id));
      watch_offline(d, conv, sent.seq);
    }
  }
  spdlog::info("demo: {} -> {} #{} {}; {}", sender.user(), conv.id, sent.seq, in_quotes(body),
               fmt::join(clauses, "; "));
  remember({conv.id, sent.seq, &sender, body});
  return read_maybe(conv, sent.seq, sender);
}

Result<std::string> Demo::Session::receive_live(Device& d, const Conversation& conv,
                                                std::uint64_t seq, const Device& sender,
                                                std::int64_t sent_ms) {
  HERALD_ASSIGN_OR_RETURN(std::optional<Change> got, wait_for(d, [&](const Change& c) {
                            return c.kind == "message_new" && c.conversation_id == conv.id &&
                                   c.seq == seq;
                          }));
  if (!got.has_value()) {
    return fmt::format("{} has not received it within {} ms", d.device_id, kLiveWaitMs);
  }
  const std::int64_t elapsed_ms = now_ms() - sent_ms;
  if (d.user() == sender.user()) return fmt::format("{} synced in {} ms", d.device_id, elapsed_ms);
  HERALD_RETURN_IF_ERROR(d.client->ack(conv.id, seq).status());
  return fmt::format("{} received in {} ms, acked", d.device_id, elapsed_ms);
}

void Demo::Session::watch_offline(const Device& d, const Conversation& conv, std::uint64_t seq) {
  const std::int64_t now = now_ms();
  const std::string user(d.user());
  if (watches_.size() < kMaxWatches && d.push_target) {
    watches_.push_back(
        {false, conv.id, seq, user, d.device_id, now + kPushCheckAfterMs, now + kWatchGiveUpMs});
  }
  const bool user_offline = std::none_of(devices_.begin(), devices_.end(), [&](const Device& o) {
    return o.user() == d.user() && o.online();
  });
  if (watches_.size() < kMaxWatches && user_offline && user_spec(user).email_fallback) {
    watches_.push_back(
        {true, conv.id, seq, user, {}, now + kEmailCheckAfterMs, now + kWatchGiveUpMs});
  }
}

// Now and then a device that received the message reads it: the read-sync saga records the read,
// advances the user's cursor and sends the sender a receipt.
Status Demo::Session::read_maybe(const Conversation& conv, std::uint64_t seq, Device& sender) {
  std::vector<Device*> readers;
  for (Device& d : devices_) {
    if (d.online() && d.user() != sender.user() && conv.has(d.user())) readers.push_back(&d);
  }
  if (readers.empty() || !rng_.chance(kReadChance)) return Status::ok_status();
  Device& reader = pick(readers);
  const std::int64_t start_ms = now_ms();
  HERALD_ASSIGN_OR_RETURN(client::ReadResult read, reader.client->read(conv.id, seq));
  const std::int64_t saga_ms = now_ms() - start_ms;
  HERALD_ASSIGN_OR_RETURN(std::optional<Change> receipt, wait_for(sender, [&](const Change& c) {
                            return c.kind == "read_receipt" && c.conversation_id == conv.id &&
                                   c.actor == reader.user();
                          }));
  const std::string told =
      receipt.has_value()
          ? fmt::format("{} got the receipt after {} ms", sender.device_id, now_ms() - start_ms)
          : fmt::format("no receipt at {} within {} ms", sender.device_id, kLiveWaitMs);
  spdlog::info("demo: {} read {} up to #{}; read-sync saga {} done in {} ms; {}", reader.device_id,
               conv.id, seq, read.saga_id, saga_ms, told);
  return Status::ok_status();
}

Status Demo::Session::edit_or_delete(bool edit) {
  const auto it = std::find_if(recent_.rbegin(), recent_.rend(),
                               [](const SentMessage& m) { return m.sender->online(); });
  if (it == recent_.rend()) return send_message(false);
  const SentMessage m = *it;
  recent_.erase(std::next(it).base());
  if (edit) {
    const std::string body = m.body + " (edited)";
    HERALD_RETURN_IF_ERROR(m.sender->client->edit(m.conversation_id, m.seq, body));
    spdlog::info("demo: {} edited {} #{} to {}", m.sender->user(), m.conversation_id, m.seq,
                 in_quotes(body));
  } else {
    HERALD_RETURN_IF_ERROR(m.sender->client->remove(m.conversation_id, m.seq));
    spdlog::info("demo: {} deleted {} #{}", m.sender->user(), m.conversation_id, m.seq);
  }
  return Status::ok_status();
}

void Demo::Session::remember(SentMessage message) {
  recent_.push_back(std::move(message));
  if (recent_.size() > kMaxRecentMessages) recent_.pop_front();
}

// ------------------------------------------------------------------ Demo

Demo::Demo(DemoOptions options) : options_(std::move(options)) {}

std::unique_ptr<Demo> Demo::start(DemoOptions options) {
  HERALD_ASSERT(options.port > 0, "the demo needs the node's client port");
  HERALD_ASSERT(!options.admin_token.empty(), "the demo needs the admin token");
  std::unique_ptr<Demo> demo(new Demo(std::move(options)));
  demo->thread_ = std::thread([d = demo.get()] { d->run(); });
  return demo;
}

Demo::~Demo() {
  stop();
}

void Demo::stop() {
  {
    const std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool Demo::pause_ms(std::int64_t ms) {
  std::unique_lock lock(mu_);
  return !wake_.wait_for(lock, std::chrono::milliseconds(ms), [this] { return stopping_; });
}

bool Demo::stopping() const {
  const std::lock_guard lock(mu_);
  return stopping_;
}

void Demo::run() {
  spdlog::info("demo: traffic against {}:{} (seed {})", options_.host, options_.port,
               options_.seed);
  Rng rng(options_.seed);
  std::int64_t restart_delay_ms = kDemoRestartDelayMs;
  while (!stopping()) {
    Status ended;
    std::uint64_t steps = 0;
    {
      Session session(*this, rng);
      ended = session.run();
      steps = session.steps();
    }
    if (stopping()) break;
    // Sessions that fail before any traffic back off, since each creates fresh devices; one that
    // ran starts the back-off afresh.
    if (steps > 0) restart_delay_ms = kDemoRestartDelayMs;
    spdlog::warn("demo: {}; starting over in {} s", ended.to_string(), seconds(restart_delay_ms));
    if (!pause_ms(restart_delay_ms)) break;
    restart_delay_ms = std::min(2 * restart_delay_ms, kDemoMaxRestartDelayMs);
  }
  spdlog::info("demo: stopped");
}

// ------------------------------------------------------------------ configuration

std::string demo_push_token(std::string_view provider, std::string_view device_id) {
  if (provider != messaging::kApnsProvider) return fmt::format("demo-token-{}", device_id);
  std::string hex;
  for (const char c : device_id) hex += fmt::format("{:02x}", static_cast<unsigned char>(c));
  return hex;
}

DemoSetup apply_demo_defaults(ServeConfig& config, const std::string& generated_token) {
  DemoSetup setup;
  const std::filesystem::path data(config.data_dir);
  if (config.admin_token.empty()) {
    config.admin_token = generated_token;
    setup.generated_admin_token = true;
  }
  if (config.push_journal.empty()) {
    config.push_journal = (data / kDemoPushJournal).string();
    setup.default_push_journal = true;
  }
  if (config.email_journal.empty()) {
    config.email_journal = (data / kDemoEmailJournal).string();
    setup.default_email_journal = true;
  }
  return setup;
}

Status prepare_demo(ServeConfig& config) {
  // In a cluster the demo runs on one node; the operator gives the cluster's admin token, since
  // a token generated here would be this node's alone.
  if (config.peers.size() > 1 && config.admin_token.empty()) {
    return Status::invalid_argument(
        "--demo in a cluster needs the cluster's --admin-token (or HERALD_ADMIN_TOKEN); run it on "
        "one node only (demos on several nodes would remove each other's devices)");
  }
  const DemoSetup setup = apply_demo_defaults(config, random_admin_token());
  std::error_code ec;
  std::filesystem::create_directories(config.data_dir, ec);
  if (ec) {
    return Status::io_error(
        fmt::format("cannot create the data directory {}: {}", config.data_dir, ec.message()));
  }
  if (setup.generated_admin_token) {
    spdlog::info(
        "demo: the admin API takes the bearer token {} (generated for this process; set "
        "--admin-token to choose one)",
        config.admin_token);
  }
  return Status::ok_status();
}

Result<DemoOptions> demo_options(const ServeConfig& config, std::uint16_t port,
                                 std::uint64_t seed) {
  HERALD_ASSIGN_OR_RETURN(server::HostPort listen, server::parse_host_port(config.client));
  DemoOptions options;
  if (listen.host.empty() || listen.host == "0.0.0.0") {
    options.host = "127.0.0.1";
  } else if (listen.host == "::") {
    options.host = "::1";
  } else {
    options.host = listen.host;
  }
  options.port = port;
  options.admin_token = config.admin_token;
  options.seed = seed;
  return options;
}

std::string random_admin_token() {
  std::random_device device;
  std::string token;
  for (std::size_t i = 0; i < kDemoAdminTokenBytes; ++i) {
    token += fmt::format("{:02x}", device() & 0xFFU);
  }
  return token;
}

// ------------------------------------------------------------------ device generations

std::string demo_device_id(std::string_view label, std::uint64_t generation) {
  HERALD_ASSERT(generation >= 1, "device generations start at 1");
  return generation == 1 ? std::string(label) : fmt::format("{}-{}", label, generation);
}

std::optional<std::uint64_t> demo_device_generation(std::string_view label,
                                                    std::string_view device_id) {
  if (!device_id.starts_with(label)) return std::nullopt;
  const std::string_view rest = device_id.substr(label.size());
  if (rest.empty()) return 1;
  if (rest.size() < 2 || rest.front() != '-' || rest[1] == '0') return std::nullopt;
  std::uint64_t generation = 0;
  const char* end = rest.data() + rest.size();
  const auto [ptr, ec] = std::from_chars(rest.data() + 1, end, generation);
  if (ec != std::errc() || ptr != end || generation < 2) return std::nullopt;
  return generation;
}

std::uint64_t next_demo_device_generation(std::string_view label,
                                          const std::vector<std::string>& device_ids) {
  std::uint64_t highest = 0;
  for (const std::string& id : device_ids) {
    highest = std::max(highest, demo_device_generation(label, id).value_or(0));
  }
  return highest + 1;
}

}  // namespace herald::app
