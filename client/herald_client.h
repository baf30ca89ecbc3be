// HeraldClient: one device's connection to Herald's client protocol — JSON frames over the
// WebSocket at GET /v1/ws (docs/protocol.md) — as blocking, typed calls.
//
// Each request gets a fresh id ("c-1", "c-2", ...); the call sends the frame and waits for the
// answer whose `re` is that id. Events (change, typing, presence) that arrive meanwhile are
// queued in arrival order, never dropped, and next_event() / next_change() pop them. An answer
// that arrives for no call still waiting (its call timed out) is discarded.
//
// Errors. A server error frame becomes a Status whose message is "<code>: <server's message>",
// where <code> is the protocol error code (docs/protocol.md, "Errors"); protocol_error_code()
// extracts it, and the Status code follows it (status_of_error()), so that a caller can retry on
// kUnavailable (not applied) or kTimeout (outcome unknown: `timeout`, `outcome_unknown`; retry
// with the same client message id) without reading strings. Errors of the client itself never start
// with
// "<code>: ": kTimeout when no answer came within the request timeout (the request may still take
// effect; its late answer is discarded), kAborted when the server closed the connection
// (close_code() says how), kIOError when the connection failed otherwise, kCorruption when the
// server sent a frame that is not the protocol's, kResourceExhausted when more than
// kMaxQueuedEvents events are waiting to be popped. After any of these but kTimeout the client is
// done: every later call fails; connect a new one (auth with `since` to miss nothing).
//
// Timeouts: connect() and every send are bounded by the connect timeout; each request waits at
// most request_timeout_ms() (kDefaultRequestTimeoutMs, above the server's own 10 s read-saga
// bound); next_event(), next_change(), next_answer() and receive_raw() by their argument.
// Thread-safety: none; use one client from one thread at a time. The client runs no thread of its
// own, so the server's pings are answered only during calls: a client idle for longer than the
// server's idle timeout (60 s) is closed.
//
// The frame codec (the encode_ and parse_ functions below) is exposed for tests and tools; it
// needs no connection.
#pragma once

#include <boost/json/fwd.hpp>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/status.h"
#include "client/ws_client.h"

namespace herald::client {

// The client WebSocket's path on every node's client port.
inline constexpr char kClientSocketPath[] = "/v1/ws";
// Default bound on connect() and on each send.
inline constexpr std::uint32_t kDefaultConnectTimeoutMs = 5'000;
// Default bound on the wait for one answer; above the server's kReadAnswerTimeoutMs (10 s), so a
// slow `read` is answered "timeout" by the server rather than cut short here.
inline constexpr std::uint32_t kDefaultRequestTimeoutMs = 15'000;
// Events received and not yet popped, at most; one more ends the client with kResourceExhausted.
inline constexpr std::size_t kMaxQueuedEvents = 65'536;

// ------------------------------------------------------------------ protocol objects

// A message as it is now (docs/protocol.md, "Message").
struct Message {
  std::string conversation_id;
  std::uint64_t seq = 0;
  std::string kind;  // "user" or "system"
  std::string sender;
  std::string sender_device;
  std::string client_message_id;
  std::int64_t time_ms = 0;
  std::string body;
  bool edited = false;
  std::int64_t edited_ms = 0;
  bool deleted = false;
};

// Change kinds the client's users look for (docs/protocol.md, "Change"; the full list is there).
// The receipts tell a sender that another member (`actor`) has the conversation up to `seq`:
// received by one of their devices, or read.
inline constexpr char kDeliveryReceiptKind[] = "delivery_receipt";
inline constexpr char kReadReceiptKind[] = "read_receipt";

// One entry of the user's change stream (docs/protocol.md, "Change"). Fields the kind does not
// carry are left empty.
struct Change {
  std::uint64_t cursor = 0;
  std::string kind;  // "message_new", kReadReceiptKind, kDeliveryReceiptKind, ...
  std::string conversation_id;
  std::uint64_t seq = 0;
  std::string actor;
  std::int64_t time_ms = 0;
  std::optional<Message> message;  // message_new, message_edited, message_deleted
  std::vector<std::string> users;  // members_added, member_removed, member_left, role_changed
  std::string role;                // role_changed
  std::string title;               // conversation_created, conversation_renamed
  std::string device_id;           // read_cursor, device_removed
};

struct TypingEvent {
  std::string conversation_id;
  std::string user_id;
  bool active = false;
};

struct PresenceEvent {
  std::string user_id;
  bool online = false;
  std::int64_t last_seen_ms = 0;
};

// The live stream fell behind the server's retention: rebuild from chats() and history(), then
// carry on from `cursor` (the stream continues from there on its own).
struct ResyncEvent {
  std::uint64_t cursor = 0;
};

// A server frame that answers no request.
using Event = std::variant<Change, TypingEvent, PresenceEvent, ResyncEvent>;

struct Member {
  std::string user_id;
  std::string role;  // "owner", "admin" or "member"
  std::int64_t joined_ms = 0;
};

struct Conversation {
  std::string conversation_id;
  std::string kind;  // "direct" or "group"
  std::string title;
  std::string created_by;
  std::int64_t created_ms = 0;
  std::uint64_t last_seq = 0;
  std::vector<Member> members;
};

struct Chat {
  std::string conversation_id;
  std::string kind;
  std::string title;
  std::int64_t activity_ms = 0;
  std::uint64_t last_seq = 0;
  std::string last_sender;
  std::string preview;
  std::uint64_t unread = 0;
  bool muted = false;
};

struct Prefs {
  bool push_enabled = true;
  bool email_fallback = false;
  std::int64_t email_delay_ms = 0;
  bool muted = false;
  bool hide_previews = false;
};

// ------------------------------------------------------------------ call arguments and results

struct AuthInfo {
  std::string user_id;
  std::string device_id;
  std::int64_t server_time_ms = 0;
  std::uint64_t cursor = 0;  // the user's newest change cursor
  // `since` was older than the server keeps: the stream starts at `cursor`; rebuild first.
  bool resync_required = false;
  // Signed in with a token: when the server ends the session (close code 4004) unless a
  // refresh() brings a newer token first; 0 after an auth with a device secret.
  std::int64_t expires_at_ms = 0;
};

struct SendResult {
  std::uint64_t seq = 0;
  bool existed = false;  // a retransmission: seq is the original's
  std::int64_t server_time_ms = 0;
};

struct ReadResult {
  std::string saga_id;
  std::uint64_t cursor = 0;  // the user's read cursor in the conversation after the read
};

struct SyncResult {
  std::vector<Change> changes;
  std::uint64_t cursor = 0;  // pass as `since` next
  bool has_more = false;
  // The changes after `since` were trimmed (the answer was the resync_required error): changes
  // is empty; rebuild from chats() and history(), then sync from `cursor`.
  bool resync_required = false;
};

struct HistoryResult {
  std::vector<Message> messages;  // newest first
  std::uint64_t next_before = 0;  // pass as before_seq for older ones; 0 when there are none
};

struct HistoryAfterResult {
  std::vector<Message> messages;  // oldest first
  std::uint64_t next_after = 0;   // pass as after_seq for newer ones
  bool has_more = false;          // newer messages exist now
};

struct ChatsResult {
  std::vector<Chat> chats;
  std::optional<std::string> next_page;  // nullopt on the last page
};

// conversation.create. A direct conversation names exactly one other member; a group may carry
// its id (generated by the server when empty) and a title.
struct NewConversation {
  std::string kind = "group";  // "direct" or "group"
  std::vector<std::string> members;
  std::string title;
  std::string conversation_id;
};

// prefs.set: only the fields given change.
struct PrefsUpdate {
  std::optional<bool> push_enabled;
  std::optional<bool> email_fallback;
  std::optional<std::int64_t> email_delay_ms;
  std::optional<bool> muted;          // conversation preferences only
  std::optional<bool> hide_previews;  // the user's own preferences only
};

// An answer frame as received (next_answer()).
struct Answer {
  std::optional<std::string> re;  // nullopt when the server answered with `re: null`
  Status status;                  // ok, or the error frame as a Status (see the file comment)
  std::string text;               // the frame's JSON
};

// ------------------------------------------------------------------ frame codec

// The Status an error frame becomes: message "<code>: <message>", code by protocol code —
// kInvalidArgument (malformed_json, unknown_type, missing_field, wrong_type, invalid_argument),
// kResourceExhausted (too_large, overloaded, rate_limited), kNotFound (not_found), kTimeout
// (timeout), kUnavailable (unavailable), kFailedPrecondition (the authentication, membership,
// permission and conflict codes, admin_disabled, resync_required), kIOError (internal and any code
// not listed).
[[nodiscard]] Status status_of_error(std::string_view code, std::string_view message);
// The code a Status's message starts with as "<code>: " (lower-case letters, digits, '_'): the
// protocol error code of a Status from status_of_error() (or AdminClient's "http_<status>").
// "" for any other Status: ok, or an error of the client itself, whose messages never start so.
[[nodiscard]] std::string_view protocol_error_code(const Status& status);

// A request frame: {"type": type, "id": id, ...fields}. `id` empty: no id. Precondition: fields
// holds neither "type" nor "id".
[[nodiscard]] std::string encode_request(std::string_view type, std::string_view id,
                                         const boost::json::object& fields);

// One server frame, classified: an answer (type "ok" or "error") or an event.
struct ServerFrame {
  bool is_answer = false;
  Answer answer;                                      // is_answer
  std::shared_ptr<const boost::json::object> fields;  // is_answer: the whole ok or error frame
  std::optional<Event> event;                         // !is_answer
};
// kCorruption when `text` is not a JSON object of a known frame type with well-typed fields.
[[nodiscard]] Result<ServerFrame> parse_server_frame(std::string_view text);

// The protocol objects out of JSON. kCorruption names the first missing or mistyped field.
// Optional fields (a change's message, users, role, title, device_id) may be absent.
[[nodiscard]] Result<Message> parse_message(const boost::json::value& v);
[[nodiscard]] Result<Change> parse_change(const boost::json::value& v);
[[nodiscard]] Result<Conversation> parse_conversation(const boost::json::value& v);
[[nodiscard]] Result<Chat> parse_chat(const boost::json::value& v);
[[nodiscard]] Result<Prefs> parse_prefs(const boost::json::value& v);

// ---- Reading the server's JSON (shared with AdminClient). A field that is absent or null fails
// with kCorruption naming it when `required`, and leaves `out` as it is otherwise; a field of
// another JSON type, or a number out of range, always fails with kCorruption.
[[nodiscard]] Status read_json_field(const boost::json::object& o, std::string_view key,
                                     std::string& out, bool required = true);
[[nodiscard]] Status read_json_field(const boost::json::object& o, std::string_view key,
                                     std::uint64_t& out, bool required = true);
[[nodiscard]] Status read_json_field(const boost::json::object& o, std::string_view key,
                                     std::int64_t& out, bool required = true);
[[nodiscard]] Status read_json_field(const boost::json::object& o, std::string_view key, bool& out,
                                     bool required = true);
[[nodiscard]] Status read_json_field(const boost::json::object& o, std::string_view key,
                                     std::vector<std::string>& out, bool required = true);
// The value under `key`; nullptr when it is absent or null.
[[nodiscard]] const boost::json::value* json_field(const boost::json::object& o,
                                                   std::string_view key);
// `v` as an object; kCorruption naming `what` when it is not one.
[[nodiscard]] Result<const boost::json::object*> json_object_of(const boost::json::value& v,
                                                                std::string_view what);
// Calls `each` on every item of the array under `key` and stops at its first error. An absent
// array fails when `required` and is empty otherwise.
[[nodiscard]] Status for_each_json_item(
    const boost::json::object& o, std::string_view key,
    const std::function<Status(const boost::json::value&)>& each, bool required = true);
// The array under `key`, each item parsed by `parse` (a Result<T>(const boost::json::value&)).
template <typename T, typename Parse>
[[nodiscard]] Result<std::vector<T>> read_json_array(const boost::json::object& o,
                                                     std::string_view key, Parse parse,
                                                     bool required = true) {
  std::vector<T> out;
  HERALD_RETURN_IF_ERROR(for_each_json_item(
      o, key,
      [&](const boost::json::value& item) -> Status {
        HERALD_ASSIGN_OR_RETURN(T parsed, parse(item));
        out.push_back(std::move(parsed));
        return Status::ok_status();
      },
      required));
  return out;
}

// ------------------------------------------------------------------ server addresses

// The port of a wss:// or https:// URL without one, and of a ws:// or http:// URL without one.
inline constexpr std::uint16_t kDefaultTlsPort = 443;
inline constexpr std::uint16_t kDefaultPlainPort = 80;

// A node's client port as a URL names it.
struct ServerUrl {
  std::string host;  // a name or an IP literal (an IPv6 literal without its brackets)
  std::uint16_t port = 0;
  bool tls = false;  // wss:// or https://
};

// Parses "ws://", "wss://", "http://" or "https://" + host (a name, an IPv4 literal or
// "[IPv6]") + optional ":port", with an optional trailing '/'. kInvalidArgument naming what is
// wrong for another scheme, a path, a query, user info, an empty host or a bad port.
[[nodiscard]] Result<ServerUrl> parse_server_url(std::string_view url);

// ------------------------------------------------------------------ the client

class HeraldClient {
 public:
  // Opens a WebSocket to host:port at kClientSocketPath; with `tls`, over TLS (WSS). Errors as
  // WsClient::connect(): kTimeout, kIOError (also a certificate that does not verify), or the
  // refused upgrade's status.
  [[nodiscard]] static Result<std::unique_ptr<HeraldClient>> connect(
      const std::string& host, std::uint16_t port,
      std::uint32_t timeout_ms = kDefaultConnectTimeoutMs,
      const std::optional<ClientTls>& tls = std::nullopt);
  // connect() to a URL (parse_server_url): wss:// and https:// connect over TLS trusting `tls`'s
  // CAs; ws:// and http:// in plaintext (`tls` unused). kInvalidArgument for a malformed URL.
  [[nodiscard]] static Result<std::unique_ptr<HeraldClient>> connect_url(
      std::string_view url, const ClientTls& tls = {},
      std::uint32_t timeout_ms = kDefaultConnectTimeoutMs);

  // Drops the connection without a close handshake; call close() first for a clean one.
  ~HeraldClient();
  HeraldClient(const HeraldClient&) = delete;
  HeraldClient& operator=(const HeraldClient&) = delete;

  // Bounds each later request's wait for its answer. Precondition: timeout_ms > 0.
  void set_request_timeout_ms(std::uint32_t timeout_ms);
  [[nodiscard]] std::uint32_t request_timeout_ms() const { return request_timeout_ms_; }

  // ---- Requests (docs/protocol.md, "Requests"); errors: see the file comment.
  [[nodiscard]] Result<AuthInfo> auth(const std::string& user_id, const std::string& device_id,
                                      const std::string& token,
                                      std::optional<std::uint64_t> since = std::nullopt);
  // Signs in with a token the app's backend issued (a JWT naming the user and the device); the
  // first sign-in of a device creates it (docs/protocol.md, "Signing in with the app's token").
  [[nodiscard]] Result<AuthInfo> auth_with_token(const std::string& jwt,
                                                 std::optional<std::uint64_t> since = std::nullopt);
  // Replaces the sign-in token of this connection with a newer one of the same user and device;
  // returns the new expiry (wall-clock ms).
  [[nodiscard]] Result<std::int64_t> refresh(const std::string& jwt);
  // Registers this device's push target ("apns", "fcm" or "webpush" and its token); empty
  // provider and token clear it.
  [[nodiscard]] Status push_register(const std::string& provider, const std::string& token);
  [[nodiscard]] Result<SendResult> send(const std::string& conversation_id,
                                        const std::string& client_message_id,
                                        const std::string& body);
  [[nodiscard]] Status edit(const std::string& conversation_id, std::uint64_t seq,
                            const std::string& body);
  // The `delete` request.
  [[nodiscard]] Status remove(const std::string& conversation_id, std::uint64_t seq);
  // Returns acked_up_to.
  [[nodiscard]] Result<std::uint64_t> ack(const std::string& conversation_id, std::uint64_t seq);
  // Answered when the read-sync saga ends: read_beyond_last_seq or read_not_member when its
  // step 2 was refused, timeout when it is still running after 10 s.
  [[nodiscard]] Result<ReadResult> read(const std::string& conversation_id, std::uint64_t seq);
  [[nodiscard]] Result<SyncResult> sync(std::uint64_t since,
                                        std::optional<std::uint64_t> limit = std::nullopt);
  // The conversation's messages before `before_seq` (none: from the newest), newest first.
  [[nodiscard]] Result<HistoryResult> history(const std::string& conversation_id,
                                              std::optional<std::uint64_t> before_seq = {},
                                              std::optional<std::uint64_t> limit = {});
  // The conversation's messages after `after_seq`, oldest first.
  [[nodiscard]] Result<HistoryAfterResult> history_after(const std::string& conversation_id,
                                                         std::uint64_t after_seq,
                                                         std::optional<std::uint64_t> limit = {});
  [[nodiscard]] Result<ChatsResult> chats(std::optional<std::uint64_t> limit = std::nullopt,
                                          const std::optional<std::string>& page = std::nullopt);
  [[nodiscard]] Result<Conversation> conversation_create(const NewConversation& spec);
  [[nodiscard]] Result<Conversation> conversation_get(const std::string& conversation_id);
  [[nodiscard]] Status conversation_rename(const std::string& conversation_id,
                                           const std::string& title);
  [[nodiscard]] Status members_add(const std::string& conversation_id,
                                   const std::vector<std::string>& members);
  [[nodiscard]] Status members_remove(const std::string& conversation_id,
                                      const std::string& user_id);
  [[nodiscard]] Status members_role(const std::string& conversation_id, const std::string& user_id,
                                    const std::string& role);
  // conversation.leave
  [[nodiscard]] Status leave(const std::string& conversation_id);
  // The user's preferences, or those for `conversation_id`.
  [[nodiscard]] Result<Prefs> prefs_get(const std::optional<std::string>& conversation_id = {});
  [[nodiscard]] Result<Prefs> prefs_set(const std::optional<std::string>& conversation_id,
                                        const PrefsUpdate& update);
  [[nodiscard]] Status typing(const std::string& conversation_id, bool active);
  // Returns the server's time.
  [[nodiscard]] Result<std::int64_t> ping();

  // ---- Events.
  // The oldest queued event, or the next to arrive within `timeout_ms` (answers arriving
  // meanwhile for no waiting call are discarded). kTimeout when none comes.
  [[nodiscard]] Result<Event> next_event(std::uint32_t timeout_ms);
  // The oldest queued change event, or the next change to arrive within `timeout_ms`; typing and
  // presence events stay queued for next_event(). kTimeout when none comes.
  [[nodiscard]] Result<Change> next_change(std::uint32_t timeout_ms);
  // Events received and not yet popped.
  [[nodiscard]] std::size_t queued_events() const { return events_.size(); }

  // ---- Raw frames, for tests of malformed input.
  // Sends `text` as one text message, as it is.
  [[nodiscard]] Status send_raw(std::string_view text);
  // The next message from the socket, as it is; the event queue is neither read nor filled.
  [[nodiscard]] Result<std::string> receive_raw(std::uint32_t timeout_ms);
  // Sends a binary message (the server closes with 1003).
  [[nodiscard]] Status send_binary(std::string_view bytes);
  // The next answer frame (ok or error) to arrive within `timeout_ms`, whatever its `re`; events
  // arriving meanwhile are queued.
  [[nodiscard]] Result<Answer> next_answer(std::uint32_t timeout_ms);

  // ---- The connection.
  // A clean close handshake. Errors as WsClient::close().
  [[nodiscard]] Status close();
  [[nodiscard]] bool is_open() const;
  // The close code that ended the connection (1009, 1008, ...), nullopt while open.
  [[nodiscard]] std::optional<std::uint16_t> close_code() const;

 private:
  // An ok answer's frame.
  using Fields = std::shared_ptr<const boost::json::object>;

  explicit HeraldClient(std::unique_ptr<WsClient> ws);

  // Sends {type, id, ...fields} and waits for the answer to that id: its frame, or its error
  // (whose whole frame goes to `error_frame` when given).
  // Sends an `auth` with `fields` and reads its answer.
  [[nodiscard]] Result<AuthInfo> authenticate(const boost::json::object& fields);
  [[nodiscard]] Result<Fields> call(std::string_view type, const boost::json::object& fields,
                                    Fields* error_frame = nullptr);
  // call() that expects no ok fields.
  [[nodiscard]] Status call_simple(std::string_view type, const boost::json::object& fields);
  // Receives one frame within the time left until `deadline_ms` (steady clock, ms): an answer is
  // returned; an event is queued (at the back) and nullopt returned. kTimeout when nothing came;
  // any other failure ends the client.
  [[nodiscard]] Result<std::optional<ServerFrame>> receive_frame(std::int64_t deadline_ms);
  // Queues an event; kResourceExhausted (and the client ends) when the queue is full.
  [[nodiscard]] Status enqueue(Event event);
  // The next event `pick` accepts (queued first, then arriving) within `timeout_ms`.
  template <typename Pick>
  [[nodiscard]] Result<Event> next_matching(std::uint32_t timeout_ms, Pick pick);
  // Ends the client with `status` (later calls return it); returns it.
  Status fail(Status status);

  std::unique_ptr<WsClient> ws_;
  std::deque<Event> events_;
  std::uint64_t next_request_ = 1;
  std::uint32_t request_timeout_ms_ = kDefaultRequestTimeoutMs;
  std::optional<Status> failed_;  // set once the client has ended
};

}  // namespace herald::client
