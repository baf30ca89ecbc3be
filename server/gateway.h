// Gateway: the client WebSocket endpoint (GET /v1/ws) — the JSON protocol of docs/protocol.md on
// top of the replicated messaging domain.
//
// Each accepted WebSocket is a session: it authenticates with a device credential, then sends
// requests that become domain commands (proposed through the node, so a follower forwards them
// to the leader) or reads of the node's applied state after a linearizable read barrier. The
// session's user's change stream is pushed live: after each applied batch the gateway sends every
// connected session of the affected users the changes after that session's cursor, in order and
// once each (the cursor advances as they are queued), so a device connected to a follower sees
// what one connected to the leader sees. Typing and presence never go through the log: they are
// relayed to this node's sessions and, as best-effort peer frames, to the other nodes'.
//
// The node is a GatewayNode (server/gateway_node.h): NodeHost's raft thread under `herald serve`
// (server/host_gateway_node.h), a simulated replica in the simulator's system scenario
// (sim/gateway_world.h), which drives this same code with simulated connections (WsConnection)
// on simulated time. The gateway reads time only through the node's clock.
//
// Threads: on_open/on_text/on_close run on the transport's threads (the HTTP server's io
// threads); stream pumping, reads and command callbacks run on the node's thread, which owns the
// stream registry. A session never blocks a thread; a client that does not read is closed by the
// transport (slow consumer).
// Lifetime: construct after the node, stop the transport before destroying either.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "messaging/domain.h"
#include "server/gateway_node.h"
#include "server/messaging_json.h"
#include "server/node_metrics.h"
#include "server/rate_limiter.h"
#include "server/sign_in.h"
#include "server/websocket.h"

namespace herald::server {

// Requests of one connection being processed at once, at most; more are answered "overloaded".
inline constexpr int kMaxInflightRequests = 64;
static_assert(messaging::kMaxRecentMarkAnswers >= static_cast<std::size_t>(kMaxInflightRequests),
              "the read-marker idempotency window must cover every read a connection can have "
              "in flight");
// Failed auth attempts on one connection before it is closed.
inline constexpr int kMaxAuthFailures = 3;
// Changes pushed to one session per raft-thread turn; the rest follow on the next turn.
inline constexpr std::size_t kStreamPageSize = 100;
// Live delivery (and the replay after `auth` with `since`) is flow-controlled: the change stream
// to a session pauses while more than kStreamHighWaterBytes wait in its outbound queue and
// resumes once they drained to kStreamLowWaterBytes, so a backlog of large messages never
// overflows the queue (kMaxWsQueuedBytes) of a client that reads (GatewayLimits'
// stream_high_water_bytes and stream_low_water_bytes). A session whose stream stays paused for
// kMaxStreamStallMs (GatewayLimits::stalled_reader_ms) is not reading: it is closed with 1008
// "slow consumer".
inline constexpr std::size_t kStreamHighWaterBytes = 512 * 1024;
inline constexpr std::size_t kStreamLowWaterBytes = 128 * 1024;
inline constexpr std::int64_t kMaxStreamStallMs = 30'000;
// A read that has not been answered by the read-sync saga after this long is answered "timeout".
inline constexpr std::int64_t kReadAnswerTimeoutMs = 10'000;
// Largest client request id echoed back.
inline constexpr std::size_t kMaxRequestIdBytes = 64;
// Deepest nesting of arrays and objects a frame may have (the protocol needs 3); a deeper frame is
// refused as malformed_json before any work, and the connection carries on.
inline constexpr std::size_t kMaxJsonDepth = 16;
// Conversations of a user whose members hear of the user's presence, at most (most recent first).
inline constexpr std::size_t kMaxPresenceConversations = 1000;
// Default and largest page of `sync` and `chats`.
inline constexpr std::uint64_t kDefaultPageSize = 100;
// A `sync` or `history` answer stops adding changes or messages before its list would pass this
// many bytes of JSON (it holds at least one), and says there is more: an answer always fits the
// connection's outbound queue (kMaxWsQueuedBytes) with room for the events queued beside it.
inline constexpr std::size_t kMaxPageBytes = 256 * 1024;
static_assert(kMaxPageBytes * 2 <= kMaxWsQueuedBytes,
              "a full page must leave room in the outbound queue");

// ---- Limits on devices (docs/protocol.md, "Limits"); GatewayLimits carries them. ----
// A connection that has not authenticated this long after it opened is closed (4002).
inline constexpr std::int64_t kAuthDeadlineMs = 10'000;
// Requests of one device after auth, across its connections: sustained per second and burst.
inline constexpr RateLimit kDeviceRequestLimit{.per_second = 100, .burst = 400};
// `auth` frames from one client address (IP, any port): sustained per second and burst.
inline constexpr RateLimit kAddressAuthLimit{.per_second = 50, .burst = 500};
// Open WebSockets from one client address; the next is refused with 429 rate_limited.
inline constexpr std::size_t kMaxConnectionsPerAddress = 1024;
// Authenticated sessions of one device on one node; a newer one closes the oldest (4003).
inline constexpr std::size_t kMaxSessionsPerDevice = 4;
// A device's typing state for one conversation is relayed at most once per this interval,
// unless it changes (active to inactive or back).
inline constexpr std::int64_t kTypingRelayIntervalMs = 2'000;
// Conversations whose typing relay time a session remembers; past it the memory starts over.
inline constexpr std::size_t kMaxTypingConversationsPerSession = 64;
// Devices and addresses whose rate-limit buckets are kept at once (refilled ones are dropped
// first), so the limiters' memory is bounded whatever ids or addresses clients use.
inline constexpr std::size_t kMaxRateLimitKeys = 100'000;

// Close codes of the device socket beyond the RFC 6455 ones.
inline constexpr std::uint16_t kCloseDeviceRemoved = 4001;  // the device was removed
inline constexpr std::uint16_t kCloseAuthDeadline = 4002;   // no successful auth in time
inline constexpr std::uint16_t kCloseReplaced = 4003;  // more than kMaxSessionsPerDevice sessions
inline constexpr std::uint16_t kCloseTokenExpired = 4004;  // the sign-in token expired unrefreshed
inline constexpr std::uint16_t kCloseUserRevoked = 4005;   // the operator revoked the user

struct GatewayLimits {
  std::int64_t auth_deadline_ms = kAuthDeadlineMs;
  RateLimit device_requests = kDeviceRequestLimit;                      // per_second 0: unlimited
  RateLimit address_auths = kAddressAuthLimit;                          // per_second 0: unlimited
  std::size_t max_connections_per_address = kMaxConnectionsPerAddress;  // 0: unlimited
  std::size_t max_sessions_per_device = kMaxSessionsPerDevice;          // at least 1
  std::int64_t typing_relay_interval_ms = kTypingRelayIntervalMs;
  std::int64_t stalled_reader_ms = kMaxStreamStallMs;  // at least 1
  // low <= high, and high well below the transport's queue bound.
  std::size_t stream_high_water_bytes = kStreamHighWaterBytes;
  std::size_t stream_low_water_bytes = kStreamLowWaterBytes;
};

// A request frame as the gateway reads it before doing any work for it.
struct RequestFrame {
  boost::json::object fields;  // the whole frame
  boost::json::value id;       // its "id", echoed as the answer's "re"; null when absent
  std::string type;            // its "type"
  // Set when the frame is refused before any work: answer this error (with "re" = id) and stop.
  std::optional<FrameError> error;
};

// Parses one text frame of a device (docs/protocol.md) the way the gateway does, without a
// connection: JSON nested at most kMaxJsonDepth levels, one object, an optional "id" string of at
// most kMaxRequestIdBytes, a "type" string. Refusals: malformed_json (not JSON, not an object, too
// deep), wrong_type (a bad "id"), unknown_type (no "type" string; the only one that echoes the
// id). Never throws; any bytes are accepted as input. Thread-safety: pure.
[[nodiscard]] RequestFrame parse_request_frame(std::string_view text);

// A typing or presence event another node relayed (rsmpb::Ephemeral of kind "typing" or
// "presence", a JSON payload) for the sessions on this node.
struct RelayedEvent {
  bool typing = false;  // typing (in conversation_id), else presence
  std::string user_id;
  std::string conversation_id;    // typing
  bool flag = false;              // typing: active; presence: online
  std::int64_t last_seen_ms = 0;  // presence
};

// Decodes a relayed event; nullopt (the event is dropped) for another kind, a payload that is not
// a JSON object, or a missing or mistyped field. Any bytes are accepted as input. Thread-safety:
// pure.
[[nodiscard]] std::optional<RelayedEvent> parse_relayed_event(std::string_view kind,
                                                              std::string_view payload);

class Gateway final : public WsHandler {
 public:
  // `node` is borrowed. Installs the gateway as the node's change listener. With `sign_in`,
  // devices may also authenticate with the app's sign-in tokens (server/sign_in.h): a first
  // sign-in creates the user and the device; the session ends when the token expires unless a
  // `refresh` frame brings a newer one. Without it, an `auth` with `jwt` is refused.
  // Precondition (asserted): limits.max_sessions_per_device >= 1.
  explicit Gateway(GatewayNode* node, GatewayLimits limits = {},
                   std::shared_ptr<const SignInVerifier> sign_in = nullptr);
  ~Gateway() override;
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  std::optional<HttpResponse> on_open(const std::shared_ptr<WsConnection>& conn,
                                      const HttpRequest& upgrade_request) override;
  void on_text(const std::shared_ptr<WsConnection>& conn, std::string text) override;
  void on_close(const std::shared_ptr<WsConnection>& conn) override;

  // Open sessions (thread-safe).
  [[nodiscard]] std::size_t sessions() const;

  struct Session;
  struct Request;
  class Core;

 private:
  std::shared_ptr<Core> core_;
};

}  // namespace herald::server
