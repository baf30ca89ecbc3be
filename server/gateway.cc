#include "server/gateway.h"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <deque>
#include <functional>
#include <random>
#include <set>
#include <utility>

#include "base/assert.h"
#include "base/clock.h"
#include "base/log.h"
#include "messaging/read_sync.h"
#include "server/messaging_json.h"
#include "workflow/engine.h"

namespace herald::server {

namespace json = boost::json;
using messaging::Domain;

namespace {

std::string sha256(std::string_view secret) {
  std::string digest(SHA256_DIGEST_LENGTH, '\0');
  SHA256(reinterpret_cast<const unsigned char*>(secret.data()), secret.size(),
         reinterpret_cast<unsigned char*>(digest.data()));
  return digest;
}

bool same_secret(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

rsmpb::Command module_command(std::string_view module, const google::protobuf::Message& payload) {
  rsmpb::Command c;
  c.mutable_module()->set_name(std::string(module));
  c.mutable_module()->set_payload(payload.SerializeAsString());
  return c;
}

// A group id for conversation.create without one: "g-" and 16 random hex digits.
std::string random_group_id() {
  thread_local std::mt19937_64 rng(std::random_device{}());
  return fmt::format("g-{:016x}", rng());
}

// Kinds of the ephemeral events relayed between nodes (rsmpb::Ephemeral).
constexpr char kTypingKind[] = "typing";
constexpr char kPresenceKind[] = "presence";

json::object typing_frame(const std::string& conversation_id, const std::string& user_id,
                          bool active) {
  return json::object{{"type", "typing"},
                      {"conversation_id", conversation_id},
                      {"user_id", user_id},
                      {"active", active}};
}

// The address part of "ip:port" or "[ip6]:port": the key of the per-address limits.
std::string address_of(const std::string& endpoint) {
  const auto colon = endpoint.rfind(':');
  return colon == std::string::npos ? endpoint : endpoint.substr(0, colon);
}

constexpr double kMicrosPerSecond = 1e6;
constexpr double kMillisPerSecond = 1e3;
// Conversations whose latest acknowledgement a session remembers; past it the memory starts over.
constexpr std::size_t kMaxAckTimesPerSession = 64;

FrameError read_error(std::string_view error_type, std::string message) {
  if (error_type == messaging::kReadBeyondLastSeq) return {"read_beyond_last_seq", message};
  if (error_type == messaging::kReadNotMember) return {"read_not_member", message};
  return {"internal", fmt::format("{}: {}", error_type, message)};
}

}  // namespace

struct Gateway::Session {
  Session(std::shared_ptr<WsConnection> c, std::string a)
      : conn(std::move(c)), address(std::move(a)) {}

  std::shared_ptr<WsConnection> conn;
  const std::string address;  // the client's IP, without the port
  std::atomic<int> inflight{0};

  std::mutex mu;
  bool authenticating = false;  // guarded by mu
  bool authenticated = false;   // guarded by mu; user_id and device_id are fixed once true
  bool closed = false;          // guarded by mu
  int failed_auths = 0;         // guarded by mu
  // The sign-in token's expiry in wall-clock ms; 0 when the session authenticated with a device
  // secret (it does not expire). Guarded by mu.
  std::int64_t token_expires_ms = 0;
  // UserRecord.revoked_at_ms when the session authenticated: a refresh token issued before it is
  // refused. Guarded by mu.
  std::int64_t revoked_at_ms = 0;
  std::string user_id;
  std::string device_id;

  // Raft thread only.
  bool registered = false;
  bool pump_pending = false;
  std::uint64_t cursor = 0;  // the last change queued to this session
  // DeviceRecord.registered_after_change_seq: a DEVICE_REMOVED at or before it is of an earlier
  // device that had the same id, and does not close this session.
  std::uint64_t device_registered_after = 0;
  // The user's last_change_seq when the session authenticated: a USER_REVOKED after it ends the
  // session, one at or before it was answered by the auth itself.
  std::uint64_t authenticated_after = 0;
  // While the stream waits for the outbound queue to drain: since when (mono ms); 0 otherwise.
  std::int64_t paused_since_ms = 0;
  struct TypingRelay {
    std::int64_t at_ms = 0;
    bool active = false;
  };
  std::unordered_map<std::string, TypingRelay> typing_relays;  // by conversation
  // The latest acknowledgement per conversation, for the delivered-to-read latency.
  struct Ack {
    std::uint64_t seq = 0;
    std::int64_t at_us = 0;  // mono
  };
  std::unordered_map<std::string, Ack> acks;  // by conversation
};

// What an `auth` proved: a device secret (its digest) or a verified sign-in token (its expiry).
struct AuthProof {
  std::string credential_sha256;               // empty for a sign-in token
  std::int64_t token_expires_ms = 0;           // > 0 exactly for a sign-in token
  std::optional<std::int64_t> token_issued_s;  // the token's "iat", when it has one
};

namespace {

AuthProof token_proof(const SignedInDevice& who) {
  return AuthProof{{}, who.expires_s * 1000, who.issued_at_s};
}

// A sign-in token stands against a revocation stamp (UserRecord.revoked_at_ms, 0 = never) only
// when it was issued at or after it: iat in whole seconds, so a token issued in the revocation's
// own second is refused (it may predate it), and a token without "iat" never stands.
bool issued_after_revocation(std::optional<std::int64_t> issued_s, std::int64_t revoked_at_ms) {
  if (revoked_at_ms == 0) return true;
  return issued_s.has_value() && *issued_s * 1000 >= revoked_at_ms;
}

}  // namespace

struct Gateway::Request {
  std::shared_ptr<Session> session;
  json::value re;  // the request's id, or null
  json::object frame;
  std::string user_id;
  std::string device_id;
};

class Gateway::Core : public std::enable_shared_from_this<Core> {
 public:
  Core(GatewayNode* node, const GatewayLimits& limits,
       std::shared_ptr<const SignInVerifier> sign_in)
      : sign_in_(std::move(sign_in)),
        node_(node),
        metrics_(node->metrics()),
        limits_(limits),
        clock_(node->clock()),
        device_limiter_(limits.device_requests, kMaxRateLimitKeys),
        address_auth_limiter_(limits.address_auths, kMaxRateLimitKeys) {}

  void install() {
    std::weak_ptr<Core> weak = weak_from_this();
    node_->set_change_listener(
        [weak](const std::vector<messaging::ChangeNotice>& changes, std::int64_t now_ms) {
          if (auto self = weak.lock()) {
            self->on_changes(changes, now_ms);
          }
        });
    node_->set_ephemeral_listener([weak](const std::string& kind, const std::string& payload) {
      if (auto self = weak.lock()) {
        self->on_ephemeral(kind, payload);
      }
    });
  }
  void uninstall() {
    node_->set_change_listener(nullptr);
    node_->set_ephemeral_listener(nullptr);
  }

  // Nullopt when the connection is accepted; otherwise the refusal.
  std::optional<HttpResponse> open(const std::shared_ptr<WsConnection>& conn) {
    std::string address = address_of(conn->remote_endpoint());
    std::lock_guard lock(mu_);
    std::size_t& open_here = connections_by_address_[address];
    if (limits_.max_connections_per_address > 0 &&
        open_here >= limits_.max_connections_per_address) {
      if (open_here == 0) connections_by_address_.erase(address);
      return HttpResponse::error(429, "rate_limited",
                                 fmt::format("at most {} connections from one address",
                                             limits_.max_connections_per_address));
    }
    ++open_here;
    auto session = std::make_shared<Session>(conn, std::move(address));
    auth_deadlines_.push_back({clock_.mono_ms() + limits_.auth_deadline_ms, session});
    sessions_.emplace(conn->id(), std::move(session));
    metrics_.ws_connections.add(1);
    return std::nullopt;
  }

  void close(const std::shared_ptr<WsConnection>& conn) {
    std::shared_ptr<Session> s;
    {
      std::lock_guard lock(mu_);
      auto it = sessions_.find(conn->id());
      if (it == sessions_.end()) return;
      s = std::move(it->second);
      sessions_.erase(it);
      forget_token_expiry(*s);
      const auto count = connections_by_address_.find(s->address);
      HERALD_ASSERT(count != connections_by_address_.end() && count->second > 0,
                    "every open session is counted under its address");
      if (--count->second == 0) connections_by_address_.erase(count);
    }
    metrics_.ws_connections.add(-1);
    {
      std::lock_guard lock(s->mu);
      s->closed = true;
    }
    node_->post([self = shared_from_this(), s] { self->unregister(s); });
  }

  [[nodiscard]] std::size_t count() const {
    std::lock_guard lock(mu_);
    return sessions_.size();
  }

  void text(const std::shared_ptr<WsConnection>& conn, std::string_view text);

 private:
  using Op = void (Core::*)(Request);

  // ---- Answers ----
  void send(const std::shared_ptr<Session>& s, const json::object& frame) {
    metrics_.ws_frames_sent.inc();
    const Status sent = s->conn->send_text(json::serialize(frame));
    if (!sent.ok()) {
      spdlog::debug("gateway: dropping a frame to connection {}: {}", s->conn->id(),
                    sent.to_string());
    }
  }
  void reply_error(const std::shared_ptr<Session>& s, const json::value& re, const FrameError& e) {
    metrics_.ws_errors.with({e.code}).inc();
    send(s, json::object{{"type", "error"}, {"re", re}, {"code", e.code}, {"message", e.message}});
  }
  // Answers `r` with resync_required: the changes after its cursor were trimmed by retention;
  // the device rebuilds from `chats` and `history`, then continues from `cursor`.
  void resync_required(const Request& r, std::uint64_t cursor) {
    metrics_.ws_errors.with({"resync_required"}).inc();
    send(r.session, json::object{{"type", "error"},
                                 {"re", r.re},
                                 {"code", "resync_required"},
                                 {"message",
                                  "the changes after this cursor were trimmed; rebuild "
                                  "from chats and history, then sync from cursor"},
                                 {"cursor", cursor}});
    --r.session->inflight;
  }
  // Answers `r` with rate_limited and the wait before a retry can succeed.
  void rate_limited(const Request& r, std::string_view what, std::int64_t retry_after_ms) {
    metrics_.ws_errors.with({"rate_limited"}).inc();
    send(r.session, json::object{{"type", "error"},
                                 {"re", r.re},
                                 {"code", "rate_limited"},
                                 {"message", fmt::format("too many {}; retry later", what)},
                                 {"retry_after_ms", retry_after_ms}});
    --r.session->inflight;
  }
  // Each request is answered exactly once, by ok() or fail(), which end it.
  void ok(const Request& r, json::object fields = {}) {
    fields["type"] = "ok";
    fields["re"] = r.re;
    send(r.session, fields);
    --r.session->inflight;
  }
  void fail(const Request& r, const FrameError& e) {
    reply_error(r.session, r.re, e);
    --r.session->inflight;
  }

  // ---- Plumbing ----
  using CommandDone = std::function<void(Request&, const rsmpb::CommandResult&)>;
  void propose(Request r, rsmpb::Command command, CommandDone done) {
    node_->propose(std::move(command),
                   [self = shared_from_this(), r = std::move(r),
                    done = std::move(done)](const Result<rsmpb::CommandResult>& result) mutable {
                     if (!result.ok()) {
                       self->fail(r, frame_error_of(result.status()));
                     } else if (result->code() != 0) {
                       self->fail(r, frame_error_of(*result));
                     } else {
                       done(r, *result);
                     }
                   });
  }
  // Stamps the session's device as the acting device, so the command is refused when it applies
  // after the device was removed.
  void propose_domain(Request r, messagingpb::MessagingCommand c, CommandDone done) {
    c.set_acting_user_id(r.user_id);
    c.set_acting_device_id(r.device_id);
    propose(std::move(r), module_command(messaging::kModuleName, c), std::move(done));
  }
  // Answers a plain ok once the command is applied.
  void propose_simple(Request r, const messagingpb::MessagingCommand& c) {
    propose_domain(
        std::move(r), c,
        [self = shared_from_this()](Request& req, const rsmpb::CommandResult&) { self->ok(req); });
  }
  using ReadFn = std::function<void(Request&, const storage::Reader&)>;
  // Runs `fn` after a linearizable read barrier; when the barrier fails, runs `on_failure` (if
  // any) and answers the request with the error.
  void read(Request r, ReadFn fn, std::function<void(Request&)> on_failure = {}) {
    node_->read([self = shared_from_this(), r = std::move(r), fn = std::move(fn),
                 on_failure = std::move(on_failure)](const Status& s,
                                                     const storage::Reader& engine) mutable {
      if (!s.ok()) {
        if (on_failure) on_failure(r);
        self->fail(r, frame_error_of(s));
        return;
      }
      fn(r, engine);
    });
  }

  // ---- Requests ----
  void auth(Request r);
  // `auth` with a sign-in token (`jwt`).
  void auth_with_token(Request r);
  // Reads an `auth`'s optional `since`.
  static std::optional<FrameError> auth_since(const Request& r,
                                              std::optional<std::uint64_t>& since);
  // Marks the session as authenticating; the error when it is already authenticated or busy.
  static std::optional<FrameError> begin_auth(const Request& r);
  // Raft thread: signs `who` in, first creating its user and device when they do not exist.
  void sign_in_device(Request r, const storage::Reader& engine, const SignedInDevice& who,
                      std::optional<std::uint64_t> since);
  // Proposes the creation of `who`'s user (create_user) or device, then carries on signing in.
  void provision_signed_in(Request r, const SignedInDevice& who, std::optional<std::uint64_t> since,
                           bool create_user);
  void finish_auth(Request r, const storage::Reader& engine, const AuthProof& proof,
                   std::optional<std::uint64_t> since);
  // Answers a failed `auth` with unauthorized (`why`), and closes the connection after
  // kMaxAuthFailures of them.
  void refuse_auth(const Request& r, const std::string& why);
  // The authenticating flag is cleared: the auth ended without an answer of its own.
  static void auth_ended(Request& r) {
    std::lock_guard lock(r.session->mu);
    r.session->authenticating = false;
  }
  void refresh(Request r);
  // Records (or moves) session `s`'s token expiry in token_expiries_. Caller holds mu_.
  void track_token_expiry(const std::shared_ptr<Session>& s, std::int64_t expires_ms);
  // Drops `s`'s entry from token_expiries_. Caller holds mu_.
  void forget_token_expiry(const Session& s);
  // Closes the sessions whose sign-in token expired without a refresh.
  void expire_tokens();
  void send_message(Request r);
  void edit(Request r);
  void remove(Request r);
  void ack(Request r);
  void ack_from(Request r, const messagingpb::AckDelivery& op);
  void read_up_to(Request r);
  void sync(Request r);
  void history(Request r);
  void chats(Request r);
  void conversation_create(Request r);
  void conversation_get(Request r);
  void conversation_rename(Request r);
  void members_add(Request r);
  void members_remove(Request r);
  void members_role(Request r);
  void conversation_leave(Request r);
  void prefs_get(Request r);
  void prefs_set(Request r);
  void typing(Request r);
  // Sets (or with provider and token empty, clears) the push target of the connection's device.
  void push_register(Request r);
  // Raft thread: whether this typing state is relayed now (it changed, or the last relay for the
  // conversation is kTypingRelayIntervalMs old); records it when it is.
  bool typing_due(Session& s, const std::string& conversation_id, bool active) {
    const std::int64_t now = clock_.mono_ms();
    auto it = s.typing_relays.find(conversation_id);
    if (it != s.typing_relays.end() && it->second.active == active &&
        now - it->second.at_ms < limits_.typing_relay_interval_ms) {
      return false;
    }
    if (it == s.typing_relays.end()) {
      if (s.typing_relays.size() >= kMaxTypingConversationsPerSession) s.typing_relays.clear();
      it = s.typing_relays.emplace(conversation_id, Session::TypingRelay{}).first;
    }
    it->second = {now, active};
    return true;
  }
  void ping(Request r) {
    const Request req = std::move(r);
    ok(req, json::object{{"server_time_ms", clock_.wall_ms()}});
  }

  static const std::map<std::string, Op, std::less<>>& ops();

  // ---- Streams (raft thread) ----
  void on_changes(const std::vector<messaging::ChangeNotice>& changes, std::int64_t now_ms);
  // Raft thread: sends the notice's change to a live session whose cursor is right before it,
  // without reading the stream back. False when the session must pump instead (behind, paused,
  // its queue full, a change that ends the session, or a message that is no longer there).
  bool send_live(const std::shared_ptr<Session>& s, const messaging::ChangeNotice& notice);
  void pump(const std::shared_ptr<Session>& s);
  void unregister(const std::shared_ptr<Session>& s);
  // Tells this node's sessions; `relay` also sends it to the other nodes.
  void presence(const std::string& user_id, bool online, std::int64_t last_seen_ms, bool relay);
  void on_ephemeral(const std::string& kind, const std::string& payload);
  void relay_to_members(const messagingpb::ConversationRecord& conv, const Session* except,
                        const json::object& frame);
  void check_reads(std::int64_t now_ms);
  // Raft thread: a device acknowledged `seq` of `conversation_id`: observes the message's time
  // from stored to delivered and remembers when, for the read that follows.
  void observe_delivered(Session& s, const std::string& conversation_id, std::uint64_t seq) {
    auto m = Domain::get_message(node_->state(), conversation_id, seq);
    if (m.ok() && m->has_value()) {
      const std::int64_t waited_ms = clock_.wall_ms() - (*m)->wall_ms();
      if (waited_ms >= 0) {
        metrics_.stored_to_delivered.observe(static_cast<double>(waited_ms) / kMillisPerSecond);
      }
    }
    if (s.acks.size() >= kMaxAckTimesPerSession) s.acks.clear();
    s.acks[conversation_id] = Session::Ack{seq, clock_.mono_us()};
  }
  // Raft thread: the device read up to `seq`: observes the time since it acknowledged that
  // message on this connection, if it did.
  void observe_read(Session& s, const std::string& conversation_id, std::uint64_t seq) {
    const auto it = s.acks.find(conversation_id);
    if (it == s.acks.end() || it->second.seq < seq) return;
    metrics_.delivered_to_read.observe(static_cast<double>(clock_.mono_us() - it->second.at_us) /
                                       kMicrosPerSecond);
    s.acks.erase(it);
  }
  // Closes the connections whose auth deadline passed without a successful auth.
  void expire_unauthenticated();
  // Raft thread: closes the sessions whose stream stayed paused for kMaxStreamStallMs.
  void close_stalled_readers();
  // Keeps at most max_sessions_per_device sessions of `s`'s device: closes the oldest others.
  void limit_device_sessions(const std::shared_ptr<Session>& s);

  struct ReadWaiter {
    Request request;
    std::string workflow_id;
    std::string conversation_id;
    std::int64_t deadline_ms = 0;
  };

  struct AuthDeadline {
    std::int64_t mono_ms = 0;
    std::weak_ptr<Session> session;
  };

  const std::shared_ptr<const SignInVerifier> sign_in_;  // null: sign-in tokens are refused
  GatewayNode* node_;
  NodeMetrics& metrics_;  // the node's
  const GatewayLimits limits_;
  const Clock& clock_;  // the node's
  mutable std::mutex mu_;
  std::unordered_map<std::uint64_t, std::shared_ptr<Session>> sessions_;  // guarded by mu_
  std::unordered_map<std::string, std::size_t> connections_by_address_;   // guarded by mu_
  KeyedLimiter device_limiter_;                                           // guarded by mu_
  KeyedLimiter address_auth_limiter_;                                     // guarded by mu_
  // In opening order, so in deadline order (the deadline is a fixed delay). Guarded by mu_.
  std::deque<AuthDeadline> auth_deadlines_;
  // Sessions signed in with a token, by its expiry in wall-clock ms: one entry per such session
  // (token_entries_ finds it to move it on a refresh or drop it on close). Guarded by mu_.
  std::multimap<std::int64_t, std::weak_ptr<Session>> token_expiries_;
  std::unordered_map<const Session*, std::multimap<std::int64_t, std::weak_ptr<Session>>::iterator>
      token_entries_;  // guarded by mu_
  // Raft thread only: sessions whose stream paused on a full outbound queue (maybe resumed since).
  std::vector<std::shared_ptr<Session>> paused_;
  // Raft thread only.
  std::unordered_map<std::string, std::vector<std::shared_ptr<Session>>> streams_;  // by user
  std::vector<ReadWaiter> read_waiters_;
};

// ------------------------------------------------------------------ dispatch

const std::map<std::string, Gateway::Core::Op, std::less<>>& Gateway::Core::ops() {
  static const std::map<std::string, Op, std::less<>> table{
      {"send", &Core::send_message},
      {"edit", &Core::edit},
      {"delete", &Core::remove},
      {"ack", &Core::ack},
      {"read", &Core::read_up_to},
      {"sync", &Core::sync},
      {"history", &Core::history},
      {"chats", &Core::chats},
      {"conversation.create", &Core::conversation_create},
      {"conversation.get", &Core::conversation_get},
      {"conversation.rename", &Core::conversation_rename},
      {"members.add", &Core::members_add},
      {"members.remove", &Core::members_remove},
      {"members.role", &Core::members_role},
      {"conversation.leave", &Core::conversation_leave},
      {"prefs.get", &Core::prefs_get},
      {"prefs.set", &Core::prefs_set},
      {"typing", &Core::typing},
      {"push.register", &Core::push_register},
      {"ping", &Core::ping},
      {"refresh", &Core::refresh},
  };
  return table;
}

std::optional<RelayedEvent> parse_relayed_event(std::string_view kind, std::string_view payload) {
  boost::system::error_code ec;
  const json::value v = json::parse(payload, ec);
  if (ec || !v.is_object()) return std::nullopt;
  const json::object& o = v.get_object();
  RelayedEvent event;
  if (get_string(o, "user_id", event.user_id)) return std::nullopt;
  std::optional<bool> flag;
  if (kind == kTypingKind) {
    event.typing = true;
    if (get_string(o, "conversation_id", event.conversation_id) || get_bool(o, "active", flag) ||
        !flag) {
      return std::nullopt;
    }
  } else if (kind == kPresenceKind) {
    std::optional<std::int64_t> last_seen_ms;
    if (get_bool(o, "online", flag) || !flag || get_i64(o, "last_seen_ms", last_seen_ms) ||
        !last_seen_ms) {
      return std::nullopt;
    }
    event.last_seen_ms = *last_seen_ms;
  } else {
    return std::nullopt;
  }
  event.flag = *flag;
  return event;
}

RequestFrame parse_request_frame(std::string_view text) {
  RequestFrame frame;
  boost::system::error_code ec;
  json::parse_options options;
  options.max_depth = kMaxJsonDepth;
  json::value parsed = json::parse(text, ec, json::storage_ptr(), options);
  if (ec == json::error::too_deep) {
    frame.error =
        FrameError{"malformed_json", fmt::format("a frame nests at most {} levels", kMaxJsonDepth)};
    return frame;
  }
  if (ec || !parsed.is_object()) {
    frame.error = FrameError{"malformed_json", "a frame is one JSON object"};
    return frame;
  }
  frame.fields = std::move(parsed.get_object());
  if (const json::value* id = frame.fields.if_contains("id"); id != nullptr && !id->is_null()) {
    if (!id->is_string() || id->get_string().size() > kMaxRequestIdBytes) {
      frame.error = FrameError{
          "wrong_type",
          fmt::format("\"id\" must be a string of at most {} bytes", kMaxRequestIdBytes)};
      return frame;
    }
    frame.id = *id;
  }
  if (get_string(frame.fields, "type", frame.type)) {
    frame.error = FrameError{"unknown_type", "the frame has no \"type\" string"};
  }
  return frame;
}

void Gateway::Core::text(const std::shared_ptr<WsConnection>& conn, std::string_view text) {
  std::shared_ptr<Session> s;
  {
    std::lock_guard lock(mu_);
    auto it = sessions_.find(conn->id());
    if (it == sessions_.end()) return;
    s = it->second;
  }
  metrics_.ws_frames_received.inc();
  RequestFrame parsed = parse_request_frame(text);
  if (parsed.error) {
    reply_error(s, parsed.id, *parsed.error);
    return;
  }
  Request r{s, std::move(parsed.id), std::move(parsed.fields), {}, {}};
  const std::string type = std::move(parsed.type);
  if (++s->inflight > kMaxInflightRequests) {
    fail(r, {"overloaded",
             fmt::format("at most {} requests in flight per connection", kMaxInflightRequests)});
    return;
  }
  if (type == "auth") {
    std::int64_t wait_ms = 0;
    {
      std::lock_guard lock(mu_);
      const std::int64_t now = clock_.mono_ms();
      if (!address_auth_limiter_.take(s->address, now)) {
        wait_ms = std::max<std::int64_t>(1, address_auth_limiter_.wait_ms(s->address, now));
      }
    }
    if (wait_ms > 0) return rate_limited(r, "authentications from this address", wait_ms);
    auth(std::move(r));
    return;
  }
  const auto op = ops().find(type);
  if (op == ops().end()) {
    fail(r, {"unknown_type", fmt::format("unknown request type \"{}\"", type)});
    return;
  }
  {
    std::lock_guard lock(s->mu);
    if (!s->authenticated) {
      fail(r, {"not_authenticated", "authenticate first"});
      return;
    }
    r.user_id = s->user_id;
    r.device_id = s->device_id;
  }
  std::int64_t wait_ms = 0;
  {
    std::lock_guard lock(mu_);
    const std::int64_t now = clock_.mono_ms();
    if (!device_limiter_.take(r.device_id, now)) {
      wait_ms = std::max<std::int64_t>(1, device_limiter_.wait_ms(r.device_id, now));
    }
  }
  if (wait_ms > 0) return rate_limited(r, "requests from this device", wait_ms);
  (this->*(op->second))(std::move(r));
}

// ------------------------------------------------------------------ auth

void Gateway::Core::auth(Request r) {
  if (r.frame.contains("jwt")) {
    auth_with_token(std::move(r));
    return;
  }
  std::string user_id;
  std::string device_id;
  std::string token;
  if (auto e = get_string(r.frame, "user_id", user_id)) return fail(r, *e);
  if (auto e = get_string(r.frame, "device_id", device_id)) return fail(r, *e);
  if (auto e = get_string(r.frame, "token", token)) return fail(r, *e);
  std::optional<std::uint64_t> from;
  if (auto e = auth_since(r, from)) return fail(r, *e);
  if (auto e = begin_auth(r)) return fail(r, *e);
  r.user_id = std::move(user_id);
  r.device_id = std::move(device_id);
  AuthProof proof{sha256(token), 0, std::nullopt};
  read(
      std::move(r),
      [self = shared_from_this(), proof = std::move(proof), from](Request& req,
                                                                  const storage::Reader& engine) {
        self->finish_auth(std::move(req), engine, proof, from);
      },
      // No answer from the cluster (no leader, a timeout): the device may simply try again.
      auth_ended);
}

std::optional<FrameError> Gateway::Core::auth_since(const Request& r,
                                                    std::optional<std::uint64_t>& since) {
  std::uint64_t value = 0;
  if (auto e = get_u64(r.frame, "since", value, false)) return e;
  if (r.frame.contains("since") && !r.frame.at("since").is_null()) since = value;
  return std::nullopt;
}

std::optional<FrameError> Gateway::Core::begin_auth(const Request& r) {
  std::lock_guard lock(r.session->mu);
  if (r.session->authenticated) return FrameError{"already_authenticated", "already authenticated"};
  if (r.session->authenticating) return FrameError{"conflict", "an auth is in progress"};
  r.session->authenticating = true;
  return std::nullopt;
}

void Gateway::Core::auth_with_token(Request r) {
  std::string jwt;
  std::string user_id;
  std::string device_id;
  if (auto e = get_string(r.frame, "jwt", jwt)) return fail(r, *e);
  if (auto e = get_string(r.frame, "user_id", user_id, false)) return fail(r, *e);
  if (auto e = get_string(r.frame, "device_id", device_id, false)) return fail(r, *e);
  std::optional<std::uint64_t> from;
  if (auto e = auth_since(r, from)) return fail(r, *e);
  if (auto e = begin_auth(r)) return fail(r, *e);
  // From here every refusal goes through refuse_auth, which ends the authenticating state.
  if (sign_in_ == nullptr) return refuse_auth(r, "sign-in tokens are not enabled on this node");
  Result<SignedInDevice> who = sign_in_->verify(jwt, clock_.wall_ms() / 1000);
  if (!who.ok()) return refuse_auth(r, "the sign-in token is refused: " + who.status().message());
  // Ids sent beside the token must be the token's own.
  if ((!user_id.empty() && user_id != who->user_id) ||
      (!device_id.empty() && device_id != who->device_id)) {
    return refuse_auth(r, "user_id or device_id differs from the sign-in token's");
  }
  r.user_id = who->user_id;
  r.device_id = who->device_id;
  read(
      std::move(r),
      [self = shared_from_this(), who = *std::move(who), from](Request& req,
                                                               const storage::Reader& engine) {
        self->sign_in_device(std::move(req), engine, who, from);
      },
      auth_ended);
}

void Gateway::Core::sign_in_device(Request r, const storage::Reader& engine,
                                   const SignedInDevice& who, std::optional<std::uint64_t> since) {
  auto user = Domain::get_user(engine, who.user_id);
  auto device = Domain::get_device(engine, who.device_id);
  if (!user.ok() || !device.ok()) {
    auth_ended(r);
    return fail(r, frame_error_of(user.ok() ? device.status() : user.status()));
  }
  if (user->has_value() && device->has_value()) {
    finish_auth(std::move(r), engine, token_proof(who), since);
    return;
  }
  provision_signed_in(std::move(r), who, since, !user->has_value());
}

void Gateway::Core::provision_signed_in(Request r, const SignedInDevice& who,
                                        std::optional<std::uint64_t> since, bool create_user) {
  messagingpb::MessagingCommand c;
  if (create_user) {
    auto* op = c.mutable_create_user();
    op->set_user_id(who.user_id);
    op->set_display_name(who.display_name);
  } else {
    // The device gets a random credential digest: no device secret exists for it, so it signs in
    // with tokens only.
    std::string digest(SHA256_DIGEST_LENGTH, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(digest.data()),
                   static_cast<int>(digest.size())) != 1) {
      auth_ended(r);
      return fail(r, {"internal", "no randomness for the device's credential"});
    }
    auto* op = c.mutable_create_device();
    op->set_user_id(who.user_id);
    op->set_device_id(who.device_id);
    op->set_platform(who.platform);
    op->set_credential_sha256(std::move(digest));
  }
  node_->propose(
      module_command(messaging::kModuleName, c),
      [self = shared_from_this(), r = std::move(r), who, since,
       create_user](const Result<rsmpb::CommandResult>& result) mutable {
        // kAlreadyExists: another sign-in got there first, or the id is held (a device of another
        // user, a removed device's tombstone): the check below decides.
        const bool exists =
            result.ok() && static_cast<Code>(result->code()) == Code::kAlreadyExists;
        if (!result.ok() || (result->code() != 0 && !exists)) {
          auth_ended(r);
          self->fail(r, result.ok() ? frame_error_of(*result) : frame_error_of(result.status()));
          return;
        }
        if (create_user) {
          self->provision_signed_in(std::move(r), who, since, false);
          return;
        }
        const AuthProof proof = token_proof(who);
        self->read(
            std::move(r),
            [self, proof, since](Request& req, const storage::Reader& engine) {
              self->finish_auth(std::move(req), engine, proof, since);
            },
            auth_ended);
      });
}

void Gateway::Core::refuse_auth(const Request& r, const std::string& why) {
  const auto& s = r.session;
  int failures = 0;
  {
    std::lock_guard lock(s->mu);
    s->authenticating = false;
    failures = ++s->failed_auths;
  }
  fail(r, {"unauthorized", why});
  if (failures >= kMaxAuthFailures) {  // after the answer: a closing connection sends nothing
    s->conn->close(kWsClosePolicyViolation, "too many failed authentications");
  }
}

void Gateway::Core::refresh(Request req) {
  const Request r = std::move(req);
  std::string jwt;
  if (auto e = get_string(r.frame, "jwt", jwt)) return fail(r, *e);
  const auto& s = r.session;
  std::int64_t revoked_at_ms = 0;
  {
    std::lock_guard lock(s->mu);
    if (s->token_expires_ms == 0) {
      return fail(r, {"conflict",
                      "this connection authenticated with a device secret; it does not expire"});
    }
    revoked_at_ms = s->revoked_at_ms;
  }
  HERALD_ASSERT(sign_in_ != nullptr, "a session signed in with a token without a verifier");
  Result<SignedInDevice> who = sign_in_->verify(jwt, clock_.wall_ms() / 1000);
  // A refused refresh leaves the session as it was: it still ends when its current token expires.
  if (!who.ok())
    return fail(r, {"unauthorized", "the sign-in token is refused: " + who.status().message()});
  if (who->user_id != r.user_id || who->device_id != r.device_id) {
    return fail(r, {"unauthorized", "the sign-in token names another user or device"});
  }
  if (!issued_after_revocation(who->issued_at_s, revoked_at_ms)) {
    return fail(r, {"unauthorized", "the sign-in token was issued before the user was revoked"});
  }
  std::int64_t expires_ms = who->expires_s * 1000;
  {
    std::lock_guard lock(s->mu);
    expires_ms = std::max(expires_ms, s->token_expires_ms);
    s->token_expires_ms = expires_ms;
  }
  {
    std::lock_guard lock(mu_);
    if (sessions_.contains(s->conn->id())) track_token_expiry(s, expires_ms);
  }
  ok(r, json::object{{"expires_at_ms", expires_ms}});
}

void Gateway::Core::track_token_expiry(const std::shared_ptr<Session>& s, std::int64_t expires_ms) {
  forget_token_expiry(*s);
  token_entries_[s.get()] = token_expiries_.emplace(expires_ms, s);
}

void Gateway::Core::forget_token_expiry(const Session& s) {
  const auto it = token_entries_.find(&s);
  if (it == token_entries_.end()) return;
  token_expiries_.erase(it->second);
  token_entries_.erase(it);
}

void Gateway::Core::expire_tokens() {
  std::vector<std::shared_ptr<Session>> expired;
  {
    std::lock_guard lock(mu_);
    const std::int64_t now = clock_.wall_ms();
    while (!token_expiries_.empty() && token_expiries_.begin()->first <= now) {
      if (auto s = token_expiries_.begin()->second.lock()) {
        token_entries_.erase(s.get());
        expired.push_back(std::move(s));
      }
      token_expiries_.erase(token_expiries_.begin());
    }
  }
  for (const auto& s : expired) {
    spdlog::info("gateway: device {}/{}'s sign-in token expired: closing its session", s->user_id,
                 s->device_id);
    s->conn->close(kCloseTokenExpired, "the sign-in token expired");
  }
}

// Raft thread: checks the credential, then registers the session's stream.
void Gateway::Core::finish_auth(Request r, const storage::Reader& engine, const AuthProof& proof,
                                std::optional<std::uint64_t> since) {
  const auto& s = r.session;
  auto device = Domain::get_device(engine, r.device_id);
  auto user = Domain::get_user(engine, r.user_id);
  const bool signed_in_with_token = proof.token_expires_ms > 0;
  const bool valid = device.ok() && user.ok() && device->has_value() && user->has_value() &&
                     (*device)->user_id() == r.user_id &&
                     (signed_in_with_token ||
                      same_secret((*device)->credential_sha256(), proof.credential_sha256));
  if (!valid) {
    refuse_auth(r, signed_in_with_token
                       ? "the sign-in token's device belongs to another user or was removed"
                       : "unknown user or device, or a wrong token");
    return;
  }
  const std::int64_t revoked_at_ms = (*user)->revoked_at_ms();
  if (signed_in_with_token && !issued_after_revocation(proof.token_issued_s, revoked_at_ms)) {
    refuse_auth(r, "the sign-in token was issued before the user was revoked");
    return;
  }
  bool closed = false;
  {
    std::lock_guard lock(s->mu);
    s->authenticating = false;
    s->authenticated = true;
    s->user_id = r.user_id;
    s->device_id = r.device_id;
    s->token_expires_ms = proof.token_expires_ms;
    s->revoked_at_ms = revoked_at_ms;
    closed = s->closed;
  }
  if (signed_in_with_token) {
    std::lock_guard lock(mu_);
    if (sessions_.contains(s->conn->id())) track_token_expiry(s, proof.token_expires_ms);
  }
  const std::uint64_t last = (*user)->last_change_seq();
  // A `since` below the trimmed floor cannot be streamed from: the device rebuilds instead.
  const bool resync = since && *since + 1 < (*user)->first_change_seq();
  json::object answer{{"user_id", r.user_id},
                      {"device_id", r.device_id},
                      {"server_time_ms", clock_.wall_ms()},
                      {"cursor", last},
                      {"resync_required", resync}};
  if (signed_in_with_token) answer["expires_at_ms"] = proof.token_expires_ms;
  ok(r, answer);
  if (closed) return;  // unregister already ran (or will find nothing)
  s->cursor = since && !resync ? std::min(*since, last) : last;
  s->device_registered_after = (*device)->registered_after_change_seq();
  s->authenticated_after = last;
  s->registered = true;
  auto& list = streams_[r.user_id];
  list.push_back(s);
  if (list.size() == 1) presence(r.user_id, true, clock_.wall_ms(), true);
  limit_device_sessions(s);
  pump(s);
}

void Gateway::Core::limit_device_sessions(const std::shared_ptr<Session>& s) {
  const auto& list = streams_.at(s->user_id);
  std::size_t same_device = 0;
  for (const auto& other : list) {
    if (other->device_id == s->device_id) ++same_device;
  }
  // The list is in authentication order: the first ones are the oldest.
  for (const auto& other : list) {
    if (same_device <= limits_.max_sessions_per_device) break;
    if (other == s || other->device_id != s->device_id) continue;
    other->conn->close(kCloseReplaced, "replaced by a newer session of this device");
    --same_device;  // unregistered when its close completes
  }
}

void Gateway::Core::expire_unauthenticated() {
  std::vector<std::shared_ptr<Session>> expired;
  {
    std::lock_guard lock(mu_);
    const std::int64_t now = clock_.mono_ms();
    while (!auth_deadlines_.empty() && auth_deadlines_.front().mono_ms <= now) {
      if (auto s = auth_deadlines_.front().session.lock()) expired.push_back(std::move(s));
      auth_deadlines_.pop_front();
    }
  }
  for (const auto& s : expired) {
    bool authenticated = false;
    {
      std::lock_guard lock(s->mu);
      authenticated = s->authenticated;
    }
    if (!authenticated) s->conn->close(kCloseAuthDeadline, "no successful auth in time");
  }
}

// ------------------------------------------------------------------ streams

void Gateway::Core::on_changes(const std::vector<messaging::ChangeNotice>& changes,
                               std::int64_t now_ms) {
  for (const auto& change : changes) {
    if (change.user_id.empty()) {  // a snapshot replaced the state: every stream may have moved
      for (const auto& [user, list] : streams_) {
        for (const auto& s : list) pump(s);
      }
      continue;
    }
    const auto it = streams_.find(change.user_id);
    if (it == streams_.end()) continue;
    for (const auto& s : it->second) {
      // A session already past this change (a pump read it with an earlier one) skips it.
      if (change.change_seq > s->cursor && !send_live(s, change)) pump(s);
    }
  }
  if (!read_waiters_.empty()) check_reads(now_ms);
  expire_unauthenticated();
  expire_tokens();
  if (!paused_.empty()) close_stalled_readers();
}

void Gateway::Core::close_stalled_readers() {
  const std::int64_t now = clock_.mono_ms();
  std::vector<std::shared_ptr<Session>> still;
  for (auto& s : paused_) {
    if (!s->registered || s->paused_since_ms == 0) continue;  // gone, or resumed
    if (now - s->paused_since_ms >= limits_.stalled_reader_ms) {
      spdlog::info("gateway: device {}/{} read nothing for {} ms with changes waiting: closing it",
                   s->user_id, s->device_id, now - s->paused_since_ms);
      s->conn->close(kWsClosePolicyViolation, "slow consumer");
      continue;
    }
    still.push_back(std::move(s));
  }
  paused_ = std::move(still);
}

bool Gateway::Core::send_live(const std::shared_ptr<Session>& s,
                              const messaging::ChangeNotice& notice) {
  const messagingpb::ChangeRecord& change = notice.change;
  if (!s->registered || s->pump_pending || s->paused_since_ms != 0) return false;
  if (change.change_seq() != notice.change_seq || notice.change_seq != s->cursor + 1) return false;
  // Changes that end the session, and a full outbound queue, take the pump's way.
  if (change.kind() == messagingpb::DEVICE_REMOVED || change.kind() == messagingpb::USER_REVOKED ||
      s->conn->queued_bytes() > limits_.stream_high_water_bytes) {
    return false;
  }
  messagingpb::SyncEntry entry;
  *entry.mutable_change() = change;
  if (messaging::is_message_change(change.kind())) {
    auto message = Domain::get_message(node_->state(), change.conversation_id(), change.seq());
    if (!message.ok() || !message->has_value()) return false;  // expired or unreadable: the pump
    *entry.mutable_message() = std::move(**message);
  }
  send(s, json::object{{"type", "change"}, {"change", change_json(entry)}});
  s->cursor = notice.change_seq;
  return true;
}

void Gateway::Core::pump(const std::shared_ptr<Session>& s) {
  if (!s->registered || s->pump_pending) return;
  auto page = Domain::sync(node_->state(), s->user_id, s->cursor, kStreamPageSize);
  if (!page.ok()) {
    spdlog::warn("gateway: reading the change stream of {} failed: {}", s->user_id,
                 page.status().to_string());
    return;
  }
  if (page->resync_required) {  // fell behind the retention while connected
    send(s, json::object{{"type", "resync_required"}, {"cursor", page->next_cursor}});
    s->cursor = page->next_cursor;
    return;
  }
  bool removed = false;
  bool revoked = false;
  bool paused = false;
  for (const auto& entry : page->entries) {
    if (s->conn->queued_bytes() > limits_.stream_high_water_bytes) {
      paused = true;  // the rest follows once the client has read what is queued
      break;
    }
    send(s, json::object{{"type", "change"}, {"change", change_json(entry)}});
    s->cursor = entry.change().change_seq();
    removed = removed || (entry.change().kind() == messagingpb::DEVICE_REMOVED &&
                          entry.change().device_id() == s->device_id &&
                          entry.change().change_seq() > s->device_registered_after);
    revoked = revoked || (entry.change().kind() == messagingpb::USER_REVOKED &&
                          entry.change().change_seq() > s->authenticated_after);
  }
  // next_cursor also passes the changes of expired messages, which the page leaves out.
  if (!paused) s->cursor = page->next_cursor;
  if (removed) {  // after the change itself, so the device learns why
    s->conn->close(kCloseDeviceRemoved, "this device was removed");
    return;
  }
  if (revoked) {
    spdlog::info("gateway: user {} was revoked: closing the session of device {}", s->user_id,
                 s->device_id);
    s->conn->close(kCloseUserRevoked, "the user was revoked");
    return;
  }
  if (paused) {
    if (s->paused_since_ms == 0) {
      s->paused_since_ms = clock_.mono_ms();
      paused_.push_back(s);
    }
    s->pump_pending = true;
    s->conn->when_drained(limits_.stream_low_water_bytes, [self = shared_from_this(), s] {
      self->node_->post([self, s] {
        s->pump_pending = false;
        s->paused_since_ms = 0;
        self->pump(s);
      });
    });
    return;
  }
  if (page->has_more) {
    s->pump_pending = true;  // yield the raft thread between pages
    node_->post([self = shared_from_this(), s] {
      s->pump_pending = false;
      self->pump(s);
    });
  }
}

void Gateway::Core::unregister(const std::shared_ptr<Session>& s) {
  if (!s->registered) return;
  s->registered = false;
  auto it = streams_.find(s->user_id);
  if (it == streams_.end()) return;
  std::erase(it->second, s);
  if (it->second.empty()) {
    streams_.erase(it);
    presence(s->user_id, false, clock_.wall_ms(), true);
  }
}

void Gateway::Core::relay_to_members(const messagingpb::ConversationRecord& conv,
                                     const Session* except, const json::object& frame) {
  for (const auto& member : conv.members()) {
    const auto it = streams_.find(member.user_id());
    if (it == streams_.end()) continue;
    for (const auto& s : it->second) {
      if (s.get() != except) send(s, frame);
    }
  }
}

// Tells the sessions on this node of every user who shares a conversation with `user_id` (each
// once, the user itself excepted) that the user's first device connected here, or its last one
// left. Looks at the user's kMaxPresenceConversations most recent conversations.
void Gateway::Core::presence(const std::string& user_id, bool online, std::int64_t last_seen_ms,
                             bool relay) {
  if (relay) {
    node_->broadcast(kPresenceKind, json::serialize(json::object{{"user_id", user_id},
                                                                 {"online", online},
                                                                 {"last_seen_ms", last_seen_ms}}));
  }
  std::set<std::string> contacts;
  std::string page_token;
  std::size_t seen = 0;
  while (seen < kMaxPresenceConversations) {
    auto chats = Domain::chat_index(node_->state(), user_id, kDefaultPageSize, page_token);
    if (!chats.ok()) return;
    for (const auto& chat : chats->entries) {
      auto conv = Domain::get_conversation(node_->state(), chat.entry.conversation_id());
      if (!conv.ok() || !conv->has_value()) continue;
      for (const auto& member : (*conv)->members()) {
        if (member.user_id() != user_id && streams_.contains(member.user_id())) {
          contacts.insert(member.user_id());
        }
      }
    }
    seen += chats->entries.size();
    if (chats->next_page_token.empty()) break;
    page_token = chats->next_page_token;
  }
  const json::object frame{{"type", "presence"},
                           {"user_id", user_id},
                           {"online", online},
                           {"last_seen_ms", last_seen_ms}};
  for (const auto& contact : contacts) {
    for (const auto& s : streams_.at(contact)) send(s, frame);
  }
}

// ------------------------------------------------------------------ messages

void Gateway::Core::send_message(Request r) {
  messagingpb::MessagingCommand c;
  auto* op = c.mutable_send_message();
  std::string conversation_id;
  std::string client_id;
  std::string body;
  if (auto e = get_string(r.frame, "conversation_id", conversation_id)) return fail(r, *e);
  if (auto e = get_string(r.frame, "client_message_id", client_id)) return fail(r, *e);
  if (auto e = get_string(r.frame, "body", body)) return fail(r, *e);
  if (body.size() > messaging::kMaxMessageBodyBytes) {
    return fail(r, {"too_large",
                    fmt::format("a body holds at most {} bytes", messaging::kMaxMessageBodyBytes)});
  }
  op->set_conversation_id(std::move(conversation_id));
  op->set_sender_user_id(r.user_id);
  op->set_sender_device_id(r.device_id);
  op->set_client_message_id(std::move(client_id));
  op->set_body(std::move(body));
  const std::int64_t start_us = clock_.mono_us();
  propose_domain(std::move(r), c,
                 [self = shared_from_this(), conv = op->conversation_id(), start_us](
                     Request& req, const rsmpb::CommandResult& result) {
                   self->metrics_.send_to_stored.observe(
                       static_cast<double>(self->clock_.mono_us() - start_us) / kMicrosPerSecond);
                   messagingpb::SendResult sent;
                   if (!sent.ParseFromString(result.payload())) {
                     return self->fail(req, {"internal", "the send result does not decode"});
                   }
                   std::int64_t time_ms = 0;
                   auto m = Domain::get_message(self->node_->state(), conv, sent.seq());
                   if (m.ok() && m->has_value()) time_ms = (*m)->wall_ms();
                   log::debug({log::conversation(conv), log::seq(sent.seq()),
                               log::user(req.user_id), log::device(req.device_id)},
                              "gateway: device {}/{} sent {}#{}{}", req.user_id, req.device_id,
                              conv, sent.seq(), result.existed() ? " (a retransmission)" : "");
                   self->ok(req, json::object{{"seq", sent.seq()},
                                              {"existed", result.existed()},
                                              {"server_time_ms", time_ms}});
                 });
}

void Gateway::Core::edit(Request r) {
  messagingpb::MessagingCommand c;
  auto* op = c.mutable_edit_message();
  std::string conversation_id;
  std::string body;
  std::uint64_t seq = 0;
  if (auto e = get_string(r.frame, "conversation_id", conversation_id)) return fail(r, *e);
  if (auto e = get_u64(r.frame, "seq", seq)) return fail(r, *e);
  if (auto e = get_string(r.frame, "body", body)) return fail(r, *e);
  if (body.size() > messaging::kMaxMessageBodyBytes) {
    return fail(r, {"too_large", "the body is too large"});
  }
  op->set_user_id(r.user_id);
  op->set_conversation_id(std::move(conversation_id));
  op->set_seq(seq);
  op->set_body(std::move(body));
  propose_simple(std::move(r), c);
}

void Gateway::Core::remove(Request r) {
  messagingpb::MessagingCommand c;
  auto* op = c.mutable_delete_message();
  std::string conversation_id;
  std::uint64_t seq = 0;
  if (auto e = get_string(r.frame, "conversation_id", conversation_id)) return fail(r, *e);
  if (auto e = get_u64(r.frame, "seq", seq)) return fail(r, *e);
  op->set_user_id(r.user_id);
  op->set_conversation_id(std::move(conversation_id));
  op->set_seq(seq);
  propose_simple(std::move(r), c);
}

void Gateway::Core::ack(Request r) {
  messagingpb::AckDelivery op;
  std::string conversation_id;
  std::uint64_t seq = 0;
  if (auto e = get_string(r.frame, "conversation_id", conversation_id)) return fail(r, *e);
  if (auto e = get_u64(r.frame, "seq", seq)) return fail(r, *e);
  op.set_user_id(r.user_id);
  op.set_device_id(r.device_id);
  op.set_conversation_id(std::move(conversation_id));
  op.set_seq(seq);
  ack_from(std::move(r), op);
}

// AckDelivery covers a bounded run of messages per command: repeat until it reaches op.seq.
void Gateway::Core::ack_from(Request r, const messagingpb::AckDelivery& op) {
  messagingpb::MessagingCommand c;
  *c.mutable_ack_delivery() = op;
  propose_domain(std::move(r), c,
                 [self = shared_from_this(), op](Request& req, const rsmpb::CommandResult& res) {
                   messagingpb::MarkResult mark;
                   if (!mark.ParseFromString(res.payload())) {
                     return self->fail(req, {"internal", "the ack result does not decode"});
                   }
                   if (mark.mark() < op.seq()) {
                     return self->ack_from(std::move(req), op);
                   }
                   self->observe_delivered(*req.session, op.conversation_id(), op.seq());
                   log::debug({log::conversation(op.conversation_id()), log::seq(op.seq()),
                               log::user(op.user_id()), log::device(op.device_id())},
                              "gateway: device {}/{} acknowledged {} up to #{}", op.user_id(),
                              op.device_id(), op.conversation_id(), op.seq());
                   self->ok(req, json::object{{"acked_up_to", mark.mark()}});
                 });
}

void Gateway::Core::read_up_to(Request r) {
  std::string conversation_id;
  std::uint64_t seq = 0;
  if (auto e = get_string(r.frame, "conversation_id", conversation_id)) return fail(r, *e);
  if (auto e = get_u64(r.frame, "seq", seq)) return fail(r, *e);
  messagingpb::ReadSyncInput input;
  input.set_user_id(r.user_id);
  input.set_device_id(r.device_id);
  input.set_conversation_id(conversation_id);
  input.set_up_to_seq(seq);
  workflowpb::WorkflowCommand c;
  auto* start = c.mutable_start();
  start->set_workflow_id(
      messaging::read_sync_workflow_id(r.user_id, r.device_id, conversation_id, seq));
  start->set_type(messaging::kReadSyncType);
  start->set_input(input.SerializeAsString());
  const std::string workflow_id = start->workflow_id();
  propose(
      std::move(r), module_command(workflow::kModuleName, c),
      [self = shared_from_this(), workflow_id, conversation_id, seq](Request& req,
                                                                     const rsmpb::CommandResult&) {
        self->observe_read(*req.session, conversation_id, seq);
        log::debug({log::conversation(conversation_id), log::seq(seq), log::workflow(workflow_id),
                    log::user(req.user_id), log::device(req.device_id)},
                   "gateway: device {}/{} read {} up to #{}: read-sync saga {} started",
                   req.user_id, req.device_id, conversation_id, seq, workflow_id);
        self->read_waiters_.push_back(ReadWaiter{std::move(req), workflow_id, conversation_id,
                                                 self->clock_.wall_ms() + kReadAnswerTimeoutMs});
        self->check_reads(self->clock_.wall_ms());
      });
}

// Raft thread: answers the reads whose saga has closed, or whose time is up.
void Gateway::Core::check_reads(std::int64_t now_ms) {
  std::vector<ReadWaiter> waiting;
  for (auto& w : read_waiters_) {
    auto record = workflow::Engine::read_workflow(node_->state(), w.workflow_id);
    if (record.ok() && !record->has_value()) {
      // Purged already (a retention shorter than the answer's wait): the summary tells.
      auto summary = workflow::Engine::read_summary(node_->state(), w.workflow_id);
      if (summary.ok() && summary->has_value() && (*summary)->status() == workflowpb::COMPLETED) {
        auto cursor = Domain::read_cursor(node_->state(), w.request.user_id, w.conversation_id);
        ok(w.request,
           json::object{{"saga_id", w.workflow_id}, {"cursor", cursor.ok() ? *cursor : 0}});
        continue;
      }
    }
    if (!record.ok() || !record->has_value()) {
      fail(w.request, {"internal", "the read-sync saga is missing"});
      continue;
    }
    auto outcome = messaging::read_sync_outcome(**record);
    if (outcome.ok()) {
      if (!outcome->ok) {
        fail(w.request, read_error(outcome->error_type, outcome->error_message));
        continue;
      }
      auto cursor = Domain::read_cursor(node_->state(), w.request.user_id, w.conversation_id);
      ok(w.request,
         json::object{{"saga_id", w.workflow_id}, {"cursor", cursor.ok() ? *cursor : 0}});
      continue;
    }
    if (now_ms >= w.deadline_ms) {
      fail(w.request, {"timeout", "the read-sync saga is still running; its effects follow"});
      continue;
    }
    waiting.push_back(std::move(w));
  }
  read_waiters_ = std::move(waiting);
}

// ------------------------------------------------------------------ reads

void Gateway::Core::sync(Request r) {
  std::uint64_t since = 0;
  std::uint64_t limit = kDefaultPageSize;
  if (auto e = get_u64(r.frame, "since", since)) return fail(r, *e);
  if (auto e = get_u64(r.frame, "limit", limit, false)) return fail(r, *e);
  if (limit == 0 || limit > messaging::kMaxReadLimit) {
    return fail(r,
                {"wrong_type", fmt::format("\"limit\" must be 1 to {}", messaging::kMaxReadLimit)});
  }
  read(std::move(r),
       [self = shared_from_this(), since, limit](Request& req, const storage::Reader& engine) {
         auto page = Domain::sync(engine, req.user_id, since, limit);
         if (!page.ok()) return self->fail(req, frame_error_of(page.status()));
         if (page->resync_required) return self->resync_required(req, page->next_cursor);
         json::array changes;
         std::size_t bytes = 0;
         std::uint64_t cursor = page->next_cursor;  // past expired messages' changes too
         bool cut = false;
         for (const auto& entry : page->entries) {
           json::value change = change_json(entry);
           const std::size_t size = json::serialize(change).size() + 1;
           if (!changes.empty() && bytes + size > kMaxPageBytes) {
             // The next page starts after the last change sent.
             cursor = changes.back().as_object().at("cursor").to_number<std::uint64_t>();
             cut = true;
             break;
           }
           bytes += size;
           changes.push_back(std::move(change));
         }
         self->ok(req, json::object{{"changes", std::move(changes)},
                                    {"cursor", cursor},
                                    {"has_more", page->has_more || cut}});
       });
}

void Gateway::Core::history(Request r) {
  std::string conversation_id;
  std::uint64_t before = 0;
  std::uint64_t after = 0;
  std::uint64_t limit = kDefaultPageSize;
  if (auto e = get_string(r.frame, "conversation_id", conversation_id)) return fail(r, *e);
  if (auto e = get_u64(r.frame, "before_seq", before, false)) return fail(r, *e);
  if (auto e = get_u64(r.frame, "after_seq", after, false)) return fail(r, *e);
  if (auto e = get_u64(r.frame, "limit", limit, false)) return fail(r, *e);
  if (limit == 0 || limit > messaging::kMaxReadLimit) {
    return fail(r,
                {"wrong_type", fmt::format("\"limit\" must be 1 to {}", messaging::kMaxReadLimit)});
  }
  const bool forwards = r.frame.contains("after_seq");
  if (forwards && r.frame.contains("before_seq")) {
    return fail(r, {"invalid_argument", "pass \"before_seq\" or \"after_seq\", not both"});
  }
  read(std::move(r), [self = shared_from_this(), conversation_id, before, after, limit, forwards](
                         Request& req, const storage::Reader& engine) {
    auto page = forwards ? Domain::history_after(engine, req.user_id, conversation_id, after, limit)
                         : Domain::history(engine, req.user_id, conversation_id, before, limit);
    if (!page.ok()) {
      if (page.status().code() == Code::kNotFound) {
        return self->fail(req, {"not_member", "you are not a member"});
      }
      return self->fail(req, frame_error_of(page.status()));
    }
    json::array messages;
    std::size_t bytes = 0;
    bool cut = false;
    for (const auto& m : page->messages) {
      json::value message = message_json(m);
      const std::size_t size = json::serialize(message).size() + 1;
      if (!messages.empty() && bytes + size > kMaxPageBytes) {
        cut = true;  // the next page continues from the last message sent
        break;
      }
      bytes += size;
      messages.push_back(std::move(message));
    }
    const std::uint64_t last_sent =
        messages.empty() ? 0 : messages.back().as_object().at("seq").to_number<std::uint64_t>();
    if (forwards) {
      const std::uint64_t next_after = cut ? last_sent : page->next_after;
      self->ok(req, json::object{{"messages", std::move(messages)},
                                 {"next_after", next_after},
                                 {"has_more", page->has_more || cut}});
      return;
    }
    const std::uint64_t next_before = cut ? last_sent : page->next_before;
    self->ok(req, json::object{{"messages", std::move(messages)}, {"next_before", next_before}});
  });
}

void Gateway::Core::chats(Request r) {
  std::uint64_t limit = kDefaultPageSize;
  std::string page_token;
  if (auto e = get_u64(r.frame, "limit", limit, false)) return fail(r, *e);
  if (auto e = get_string(r.frame, "page", page_token, false)) return fail(r, *e);
  if (limit == 0 || limit > messaging::kMaxReadLimit) {
    return fail(r, {"wrong_type", "\"limit\" is out of range"});
  }
  read(std::move(r),
       [self = shared_from_this(), limit, page_token](Request& req, const storage::Reader& engine) {
         auto page = Domain::chat_index(engine, req.user_id, limit, page_token);
         if (!page.ok()) return self->fail(req, frame_error_of(page.status()));
         json::array chats;
         for (const auto& chat : page->entries) chats.emplace_back(chat_json(chat));
         json::value next = nullptr;
         if (!page->next_page_token.empty()) next = json::string(page->next_page_token);
         self->ok(req, json::object{{"chats", std::move(chats)}, {"next_page", next}});
       });
}

// ------------------------------------------------------------------ conversations

void Gateway::Core::conversation_create(Request r) {
  std::string kind_name;
  std::string title;
  std::string id;
  std::vector<std::string> members;
  if (auto e = get_string(r.frame, "kind", kind_name)) return fail(r, *e);
  if (auto e = get_string(r.frame, "title", title, false)) return fail(r, *e);
  if (auto e = get_string(r.frame, "conversation_id", id, false)) return fail(r, *e);
  if (auto e = get_strings(r.frame, "members", members, messaging::kMaxMembersPerCommand)) {
    return fail(r, *e);
  }
  const auto kind = parse_kind(kind_name);
  if (!kind) return fail(r, {"wrong_type", "\"kind\" must be \"direct\" or \"group\""});
  messagingpb::MessagingCommand c;
  auto* op = c.mutable_create_conversation();
  op->set_user_id(r.user_id);
  op->set_kind(*kind);
  if (*kind == messagingpb::GROUP) {
    op->set_conversation_id(id.empty() ? random_group_id() : id);
    op->set_title(title);
  } else if (members.size() != 1) {
    return fail(r, {"invalid_argument", "a direct conversation names exactly one other member"});
  }
  for (auto& m : members) op->add_member_user_ids(std::move(m));
  const std::string conversation_id =
      *kind == messagingpb::GROUP
          ? op->conversation_id()
          : (r.user_id == op->member_user_ids(0)
                 ? std::string()
                 : messaging::direct_conversation_id(r.user_id, op->member_user_ids(0)));
  if (conversation_id.empty()) {
    return fail(r, {"conflict", "a direct conversation needs another user"});
  }
  propose_domain(
      std::move(r), c,
      [self = shared_from_this(), conversation_id](Request& req, const rsmpb::CommandResult&) {
        auto conv = Domain::get_conversation(self->node_->state(), conversation_id);
        if (!conv.ok() || !conv->has_value()) {
          return self->fail(req, {"internal", "the conversation is missing"});
        }
        self->ok(req, json::object{{"conversation", conversation_json(**conv)}});
      });
}

void Gateway::Core::conversation_get(Request r) {
  std::string id;
  if (auto e = get_string(r.frame, "conversation_id", id)) return fail(r, *e);
  read(std::move(r), [self = shared_from_this(), id](Request& req, const storage::Reader& engine) {
    auto conv = Domain::get_conversation(engine, id);
    if (!conv.ok()) return self->fail(req, frame_error_of(conv.status()));
    if (!conv->has_value()) return self->fail(req, {"not_found", "no such conversation"});
    const auto& members = (*conv)->members();
    const bool member = std::any_of(members.begin(), members.end(),
                                    [&](const auto& m) { return m.user_id() == req.user_id; });
    if (!member) return self->fail(req, {"not_member", "you are not a member"});
    self->ok(req, json::object{{"conversation", conversation_json(**conv)}});
  });
}

void Gateway::Core::conversation_rename(Request r) {
  messagingpb::MessagingCommand c;
  auto* op = c.mutable_rename_conversation();
  std::string id;
  std::string title;
  if (auto e = get_string(r.frame, "conversation_id", id)) return fail(r, *e);
  if (auto e = get_string(r.frame, "title", title)) return fail(r, *e);
  op->set_user_id(r.user_id);
  op->set_conversation_id(std::move(id));
  op->set_title(std::move(title));
  propose_simple(std::move(r), c);
}

void Gateway::Core::members_add(Request r) {
  messagingpb::MessagingCommand c;
  auto* op = c.mutable_add_members();
  std::string id;
  std::vector<std::string> members;
  if (auto e = get_string(r.frame, "conversation_id", id)) return fail(r, *e);
  if (auto e = get_strings(r.frame, "members", members, messaging::kMaxMembersPerCommand)) {
    return fail(r, *e);
  }
  if (members.empty()) return fail(r, {"missing_field", "the field \"members\" is required"});
  op->set_user_id(r.user_id);
  op->set_conversation_id(std::move(id));
  for (auto& m : members) op->add_member_user_ids(std::move(m));
  propose_simple(std::move(r), c);
}

void Gateway::Core::members_remove(Request r) {
  messagingpb::MessagingCommand c;
  auto* op = c.mutable_remove_member();
  std::string id;
  std::string user;
  if (auto e = get_string(r.frame, "conversation_id", id)) return fail(r, *e);
  if (auto e = get_string(r.frame, "user_id", user)) return fail(r, *e);
  op->set_user_id(r.user_id);
  op->set_conversation_id(std::move(id));
  op->set_member_user_id(std::move(user));
  propose_simple(std::move(r), c);
}

void Gateway::Core::members_role(Request r) {
  messagingpb::MessagingCommand c;
  auto* op = c.mutable_set_role();
  std::string id;
  std::string user;
  std::string role_text;
  if (auto e = get_string(r.frame, "conversation_id", id)) return fail(r, *e);
  if (auto e = get_string(r.frame, "user_id", user)) return fail(r, *e);
  if (auto e = get_string(r.frame, "role", role_text)) return fail(r, *e);
  const auto role = parse_role(role_text);
  if (!role) return fail(r, {"wrong_type", "\"role\" must be \"owner\", \"admin\" or \"member\""});
  op->set_user_id(r.user_id);
  op->set_conversation_id(std::move(id));
  op->set_member_user_id(std::move(user));
  op->set_role(*role);
  propose_simple(std::move(r), c);
}

void Gateway::Core::conversation_leave(Request r) {
  messagingpb::MessagingCommand c;
  auto* op = c.mutable_leave_conversation();
  std::string id;
  if (auto e = get_string(r.frame, "conversation_id", id)) return fail(r, *e);
  op->set_user_id(r.user_id);
  op->set_conversation_id(std::move(id));
  propose_simple(std::move(r), c);
}

// ------------------------------------------------------------------ preferences and typing

void Gateway::Core::prefs_get(Request r) {
  std::string id;
  if (auto e = get_string(r.frame, "conversation_id", id, false)) return fail(r, *e);
  read(std::move(r), [self = shared_from_this(), id](Request& req, const storage::Reader& engine) {
    auto prefs = Domain::preferences(engine, req.user_id, id);
    if (!prefs.ok()) return self->fail(req, frame_error_of(prefs.status()));
    self->ok(req, json::object{{"prefs", prefs_json(*prefs)}});
  });
}

void Gateway::Core::prefs_set(Request r) {
  messagingpb::MessagingCommand c;
  auto* op = c.mutable_set_preferences();
  std::string id;
  std::optional<bool> push_enabled;
  std::optional<bool> email_fallback;
  std::optional<bool> muted;
  std::optional<bool> hide_previews;
  std::optional<std::int64_t> delay_ms;
  if (auto e = get_string(r.frame, "conversation_id", id, false)) return fail(r, *e);
  if (auto e = get_bool(r.frame, "push_enabled", push_enabled)) return fail(r, *e);
  if (auto e = get_bool(r.frame, "email_fallback", email_fallback)) return fail(r, *e);
  if (auto e = get_bool(r.frame, "muted", muted)) return fail(r, *e);
  if (auto e = get_bool(r.frame, "hide_previews", hide_previews)) return fail(r, *e);
  if (auto e = get_i64(r.frame, "email_delay_ms", delay_ms)) return fail(r, *e);
  op->set_user_id(r.user_id);
  op->set_conversation_id(id);
  if (push_enabled) op->set_push_enabled(*push_enabled);
  if (email_fallback) op->set_email_fallback(*email_fallback);
  if (muted) op->set_muted(*muted);
  if (hide_previews) op->set_hide_previews(*hide_previews);
  if (delay_ms) op->set_email_delay_ms(*delay_ms);
  propose_domain(std::move(r), c,
                 [self = shared_from_this(), id](Request& req, const rsmpb::CommandResult&) {
                   auto prefs = Domain::preferences(self->node_->state(), req.user_id, id);
                   if (!prefs.ok()) return self->fail(req, frame_error_of(prefs.status()));
                   self->ok(req, json::object{{"prefs", prefs_json(*prefs)}});
                 });
}

void Gateway::Core::push_register(Request r) {
  std::string provider;
  std::string token;
  if (auto e = get_string(r.frame, "provider", provider, false)) return fail(r, *e);
  if (auto e = get_string(r.frame, "token", token, false)) return fail(r, *e);
  messagingpb::MessagingCommand c;
  auto* op = c.mutable_set_push_token();
  op->set_user_id(r.user_id);
  op->set_device_id(r.device_id);  // only the connection's own device
  op->set_push_provider(std::move(provider));
  op->set_push_token(std::move(token));
  propose_simple(std::move(r), c);
}

void Gateway::Core::typing(Request r) {
  std::string id;
  std::optional<bool> active;
  if (auto e = get_string(r.frame, "conversation_id", id)) return fail(r, *e);
  if (auto e = get_bool(r.frame, "active", active)) return fail(r, *e);
  if (!active) return fail(r, {"missing_field", "the field \"active\" is required"});
  node_->post([self = shared_from_this(), r = std::move(r), id, active = *active]() mutable {
    auto conv = Domain::get_conversation(self->node_->state(), id);
    if (!conv.ok()) return self->fail(r, frame_error_of(conv.status()));
    if (!conv->has_value()) return self->fail(r, {"not_found", "no such conversation"});
    const auto& members = (*conv)->members();
    const bool member = std::any_of(members.begin(), members.end(),
                                    [&](const auto& m) { return m.user_id() == r.user_id; });
    if (!member) return self->fail(r, {"not_member", "you are not a member"});
    if (self->typing_due(*r.session, id, active)) {
      self->relay_to_members(**conv, r.session.get(), typing_frame(id, r.user_id, active));
      self->node_->broadcast(kTypingKind, json::serialize(typing_frame(id, r.user_id, active)));
    }
    self->ok(r);
  });
}

// Raft thread: typing and presence relayed by another node, for the sessions here.
void Gateway::Core::on_ephemeral(const std::string& kind, const std::string& payload) {
  const std::optional<RelayedEvent> event = parse_relayed_event(kind, payload);
  if (!event.has_value()) return;
  if (event->typing) {
    auto conv = Domain::get_conversation(node_->state(), event->conversation_id);
    if (conv.ok() && conv->has_value()) {
      relay_to_members(**conv, nullptr,
                       typing_frame(event->conversation_id, event->user_id, event->flag));
    }
  } else {
    presence(event->user_id, event->flag, event->last_seen_ms, false);
  }
}

// ------------------------------------------------------------------ Gateway

Gateway::Gateway(GatewayNode* node, GatewayLimits limits,
                 std::shared_ptr<const SignInVerifier> sign_in)
    : core_(std::make_shared<Core>(node, limits, std::move(sign_in))) {
  HERALD_ASSERT(node != nullptr, "the gateway needs a node");
  HERALD_ASSERT(limits.max_sessions_per_device >= 1, "a device may have a session");
  HERALD_ASSERT(limits.stream_low_water_bytes <= limits.stream_high_water_bytes,
                "a paused stream resumes below where it paused");
  core_->install();
}

Gateway::~Gateway() {
  core_->uninstall();
}

std::optional<HttpResponse> Gateway::on_open(const std::shared_ptr<WsConnection>& conn,
                                             const HttpRequest& /*upgrade_request*/) {
  return core_->open(conn);
}

void Gateway::on_text(const std::shared_ptr<WsConnection>& conn, std::string text) {
  core_->text(conn, text);
}

void Gateway::on_close(const std::shared_ptr<WsConnection>& conn) {
  core_->close(conn);
}

std::size_t Gateway::sessions() const {
  return core_->count();
}

}  // namespace herald::server
