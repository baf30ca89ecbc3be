// Domain: Herald's messaging domain as a replicated state machine — users, devices,
// conversations and groups, preferences, messages, the chat index, read state and the per-user
// change streams that devices sync from.
//
// The domain is the "messaging" module of rsm::StateMachineRouter: every replica applies the same
// committed MessagingCommands (messaging/messaging.proto) in log order and stages every write in
// the command's apply batch, under the key prefix "m" of storage::Space::kState (docs/messaging.md,
// "Key layout"). apply() is deterministic: it reads only the batch and the command; time is the
// command's wall_ms. Every apply is a bounded number of point reads and bounded scans (at most
// kMaxDeviceMarksSweptPerCommand keys in all, by rsm::ApplyBatch::scan). Every command that
// applies ends with the message-history sweep (kMaxMessageExpiriesPerCommand).
//
// Semantics other parts rely on (docs/messaging.md, "Commands"):
//  - SendMessage stores the message under the conversation's next seq (strictly increasing, no
//    gaps), moves every member's chat-index entry to the top, appends MESSAGE_NEW to every
//    member's change stream, advances the sender's read cursor to the message, and starts one
//    "messaging.delivery" workflow (messaging/delivery.h) per recipient (every member but the
//    sender; every member for a system message) through the WorkflowSink, in the same batch. Sends
//    are idempotent by (conversation, device, client_message_id): a retransmission answers the
//    original seq with existed = true and changes nothing.
//  - AckDelivery and PublishReadReceipts signal the delivery workflows ("delivered", "read") for
//    at most kMaxSignalsPerCommand messages per command; their results say how far they got, and
//    the caller repeats from there. An AckDelivery that advances the user's delivered mark (the
//    first of the user's devices to reach a seq) appends one DELIVERY_RECEIPT to each other
//    sender of the newly covered messages (at most kMaxDeliveryReceiptsPerAck); a repeated or
//    older ack, another device of the same user behind the mark, or an ack covering only the
//    user's own messages appends none.
//  - A removed device keeps a tombstone that holds its id (CreateDevice: kAlreadyExists) until it
//    is reclaimed, no sooner than max(dedup_window_ms, change_retention_ms) after the removal; the
//    id may then be registered again as a new device. Its marks are deleted sooner (see
//    kMaxDeviceMarksSweptPerCommand) and no reader shows them meanwhile.
//  - With a message retention set, a message is deleted once that long has passed since its send,
//    by the sweep of a later command: oldest first, so a conversation's stored messages are the
//    seqs after ConversationRecord.expired_up_to. Its open deliveries are canceled
//    (kMessageExpiredReason); the conversation's last_seq, read cursors, unread counts and chat
//    entries do not change. Readers skip it; commands naming it answer kNotFound (edit, delete)
//    or pass over it (AckDelivery, PublishReadReceipts).
//  - A result with a non-ok code has no effect: the caller (rsm::Node) rolls the command's writes
//    back. kCorruption means a stored record failed its checksum, did not decode or broke an
//    invariant; it is never built upon and stops the replica.
// Errors: kInvalidArgument (malformed ids, bounds), kNotFound (unknown user, device, conversation
// or message), kAlreadyExists, kResourceExhausted (a named bound), kFailedPrecondition (a state
// precondition; authorization refusals carry the message prefix "permission denied: "),
// kCorruption. Anything the sink returns other than ok fails the command (kNotFound from a signal
// is ignored: the workflow closed or never existed).
// Thread-safety: apply() and take_changes() run on the replica's apply thread; the static readers
// may run on any thread against any storage::Reader (a snapshot gives a consistent view).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "messaging/delivery.h"
#include "messaging/messaging.pb.h"
#include "rsm/state_machine.h"
#include "storage/engine.h"

namespace herald::messaging {

inline constexpr char kModuleName[] = "messaging";

// Ids. No id holds '/', '%' or an ASCII control byte, and user and device ids hold no ':' either:
// direct conversation ids are built from user ids, and delivery workflow ids
// (delivery_workflow_id in messaging/delivery.h) from conversation and user ids, which must stay
// within workflow::kMaxWorkflowIdBytes unescaped.
inline constexpr std::size_t kMaxIdBytes = 64;  // users, devices, client message ids
inline constexpr char kDirectIdPrefix[] = "direct:";
// "direct:<a>:<b>" of two maximal user ids; group ids have the same bound.
inline constexpr std::size_t kMaxConversationIdBytes =
    std::string_view(kDirectIdPrefix).size() + kMaxIdBytes + 1 + kMaxIdBytes;

// Text and records.
inline constexpr std::size_t kMaxDisplayNameBytes = 128;
inline constexpr std::size_t kMaxEmailBytes = 254;
inline constexpr std::size_t kMaxTitleBytes = 256;
inline constexpr std::size_t kMaxPushTokenBytes = 512;
// InvalidatePushTarget.reason and error_type (the provider's words), at most.
inline constexpr std::size_t kMaxPushInvalidReasonBytes = 512;
inline constexpr std::size_t kCredentialBytes = 32;  // SHA-256
inline constexpr std::size_t kMaxMessageBodyBytes = 64 * 1024;
inline constexpr std::size_t kMaxPreviewBytes = 120;

// Fan-out.
inline constexpr std::size_t kMaxDevicesPerUser = 16;
inline constexpr std::size_t kMaxGroupMembers = 512;
inline constexpr std::size_t kMaxMembersPerCommand = 64;  // CreateConversation, AddMembers
inline constexpr std::uint64_t kMaxSignalsPerCommand = 256;
// Delivery receipts (DELIVERY_RECEIPT changes) one AckDelivery appends at most: one to each
// distinct other sender of the messages its advance of the user's delivered mark newly covers,
// never to every member. An ack whose range holds more senders stops short, and the caller
// repeats it from its result. A direct conversation's ack appends at most one.
inline constexpr std::size_t kMaxDeliveryReceiptsPerAck = 8;
// SetReadMarker answers remembered per device and conversation (DeviceMarks.recent_answers): at
// least as many as one connection may have reads in flight (the gateway asserts it), so that a
// retried marker step of any of them still finds its first answer.
inline constexpr std::size_t kMaxRecentMarkAnswers = 64;

// Delivery timing and preferences.
inline constexpr std::int64_t kPushAfterMs = 1000;  // socket grace before a push
// What pushes and escalation emails carry instead of the message's words for a user who hides
// previews.
inline constexpr char kHiddenPreviewText[] = "New message";
inline constexpr std::int64_t kDefaultEmailDelayMs = 15 * 60 * 1000;
inline constexpr std::int64_t kMinEmailDelayMs = 1000;
inline constexpr std::int64_t kMaxEmailDelayMs = 7 * 24 * 60 * 60 * 1000;

// Readers.
inline constexpr std::size_t kMaxReadLimit = 1000;

// Retention (docs/messaging.md, "Retention"); SetRetention changes the windows cluster-wide.
// A retransmitted send is answered with its first result for this long after the first applied;
// later it is a new message.
inline constexpr std::int64_t kDefaultDedupWindowMs = 7LL * 24 * 60 * 60 * 1000;
// Change-stream entries older than this are trimmed; a device behind them must resync.
inline constexpr std::int64_t kDefaultChangeRetentionMs = 30LL * 24 * 60 * 60 * 1000;
// An unread message's delivery workflows complete this long after it was sent, or once its push
// and escalation have run if they come later (messaging/delivery.h), so open workflows do not
// pile up.
inline constexpr std::int64_t kDefaultDeliveryLifetimeMs = 30LL * 24 * 60 * 60 * 1000;
inline constexpr std::int64_t kMinRetentionMs = 1000;
inline constexpr std::int64_t kMaxRetentionMs = 3650LL * 24 * 60 * 60 * 1000;
// Expired records one command removes at most: dedup records per send, stream entries per
// appended change. Each adds one, so removal keeps up with any steady rate.
inline constexpr std::size_t kMaxDedupExpiriesPerSend = 8;
inline constexpr std::size_t kMaxChangeTrimsPerAppend = 4;
// Streams nothing is appended to any more: each user's stream is queued once per window
// (UserRecord.trim_queued) and, once the window has passed, trimmed by the sweep that ends every
// applied command, at most this many entries per command (the queue's head stays until its
// stream holds no entry past the window but the newest). An entry is gone between one and two
// windows after it was appended.
inline constexpr std::size_t kMaxIdleStreamTrimsPerCommand = 16;
// Message history (message_retention_ms; 0, the default, keeps every message). Every send queues
// its message; a message older than the window is deleted, oldest first, by the sweep that ends
// every applied command: at most this many per command. A send adds one, so the sweep keeps up
// with any steady rate, and every other command sweeps too. Each expiry cancels the message's
// open deliveries (one cancel per member, as DeleteMessage), hence a small bound.
inline constexpr std::size_t kMaxMessageExpiriesPerCommand = 4;
// Removed devices. Their marks are deleted from their removal on, in removal order, by
// RemoveDevice, CreateDevice and every AckDelivery or SetReadMarker that creates a marks record:
// at most this many keys deleted per command, in scans that read one key more each (a scan that
// deletes nothing counts as one). Each marks record
// is created by one such command, so the deletions keep up with any steady rate.
inline constexpr std::size_t kMaxDeviceMarksSweptPerCommand = 16;
// A removed device's tombstone is deleted, freeing its id, once its marks are gone and the longer
// retention window has passed since its removal (nothing stored then still names it in force):
// at most this many per RemoveDevice or CreateDevice. Each removal adds one.
inline constexpr std::size_t kMaxDeviceExpiriesPerCommand = 4;

// Event types the domain and its workflows report to the app's backend (webhooks,
// docs/webhooks.md).
inline constexpr char kEventMessageSent[] = "message.sent";
inline constexpr char kEventMessageDelivered[] = "message.delivered";
inline constexpr char kEventMessageRead[] = "message.read";
inline constexpr char kEventMessageEscalated[] = "message.escalated";
inline constexpr char kEventPushTokenInvalidated[] = "push_token.invalidated";
inline constexpr char kEventCompensationFailed[] = "saga.compensation_failed";

// Something that happened, as an applied command decided it (every replica alike). `key` tells
// occurrences of one type apart and is the same whenever the same occurrence is decided again;
// the other fields are the event's data, empty (0) when they do not apply.
struct DomainEvent {
  std::string type;  // one of the kEvent* names
  std::string key;
  std::string conversation_id;
  std::uint64_t seq = 0;
  std::string sender_user_id;
  std::string user_id;  // the recipient, the reader, or the device's owner
  std::string device_id;
  std::string detail;  // an error type or reason
};

// Starts and signals workflows in the same apply batch as the command that asks (implemented on
// top of workflow::Engine). Called only from apply(), with the command's batch and time.
class WorkflowSink {
 public:
  virtual ~WorkflowSink() = default;
  // Reports `event` (a webhook delivery may start in the same batch). The default drops it.
  [[nodiscard]] virtual Status emit(rsm::ApplyBatch& batch, std::int64_t now_ms,
                                    const DomainEvent& event) {
    return Status::ok_status();
  }
  [[nodiscard]] virtual Status start(rsm::ApplyBatch& batch, std::int64_t now_ms,
                                     std::string_view workflow_id, std::string_view type,
                                     std::string input) = 0;
  // kNotFound when the workflow is unknown or closed (callers ignore that for signals).
  [[nodiscard]] virtual Status signal(rsm::ApplyBatch& batch, std::int64_t now_ms,
                                      std::string_view workflow_id, std::string_view name,
                                      std::string payload) = 0;
  // Requests cancellation. kNotFound when the workflow is unknown or closed.
  [[nodiscard]] virtual Status cancel(rsm::ApplyBatch& batch, std::int64_t now_ms,
                                      std::string_view workflow_id, std::string_view reason) = 0;
};

// Whether a change of this kind is about one message (a sync entry attaches the message).
[[nodiscard]] bool is_message_change(messagingpb::ChangeKind kind);

// A change appended to a user's stream by an applied command (a hint for live push; the stream
// is the truth). `change` is the entry as appended, so that a live session whose cursor is right
// before it can send it without reading the stream back; a message change carries no message
// (the reader looks up the message's current state, as a sync page does).
struct ChangeNotice {
  std::string user_id;
  std::uint64_t change_seq = 0;
  std::string conversation_id;  // empty for user-level changes
  messagingpb::ChangeRecord change;
};

// A user's preferences for one conversation, overrides resolved.
struct EffectivePreferences {
  bool push_enabled = true;
  bool email_fallback = false;
  std::int64_t email_delay_ms = kDefaultEmailDelayMs;
  bool muted = false;
  bool hide_previews = false;  // the user's own setting; no conversation overrides it
};

// One chat-index entry joined with its conversation and the user's read cursor.
struct ChatSummary {
  messagingpb::ChatEntry entry;
  messagingpb::ConversationKind kind = messagingpb::CONVERSATION_KIND_UNSPECIFIED;
  std::string title;
  std::uint64_t unread = 0;  // the conversation's last_seq - the user's read cursor
  bool muted = false;
};

struct ChatPage {
  std::vector<ChatSummary> entries;  // most recent activity first
  std::string next_page_token;       // empty on the last page
};

struct SyncPage {
  std::vector<messagingpb::SyncEntry> entries;  // change_seq order
  std::uint64_t next_cursor = 0;                // pass as after_change_seq for the next page
  bool has_more = false;
  // The changes right after the cursor were trimmed by retention: entries is empty, and
  // next_cursor is the user's newest cursor, from which the device continues after it has
  // rebuilt its state from the chat index and per-conversation history.
  bool resync_required = false;
};

// A page of one conversation's messages: backwards (history) or forwards (history_after).
struct HistoryPage {
  std::vector<messagingpb::MessageRecord> messages;  // newest first; oldest first when forwards
  std::uint64_t next_before = 0;  // backwards: pass as before_seq next; 0 on the last page
  std::uint64_t next_after = 0;   // forwards: pass as after_seq next (the last seq covered)
  bool has_more = false;          // forwards: newer messages exist beyond next_after
};

struct DeviceMarkView {
  std::string device_id;
  std::uint64_t read_marker = 0;
  std::uint64_t delivered_up_to = 0;
};

// "direct:<a>:<b>" with a < b. Precondition: user_a != user_b.
[[nodiscard]] std::string direct_conversation_id(std::string_view user_a, std::string_view user_b);
// `body` cut to at most kMaxPreviewBytes at a UTF-8 character boundary.
[[nodiscard]] std::string preview_of(std::string_view body);

class Domain final : public rsm::StateMachine {
 public:
  // `sink` is borrowed and must outlive the domain.
  explicit Domain(WorkflowSink* sink);

  // rsm::StateMachine. `command` carries module "messaging" and a serialized MessagingCommand.
  [[nodiscard]] rsmpb::CommandResult apply(raft::Index index, const rsmpb::Command& command,
                                           rsm::ApplyBatch& batch) override;
  // Deletions, departures, acknowledgements, read state and retention settings: what frees space
  // or settles messages already stored. New users, devices, conversations, members, messages,
  // edits and settings are refused.
  [[nodiscard]] bool allowed_when_disk_low(const rsmpb::Command& command) const override;

  // Changes appended by the commands applied (with an ok result) since the last call.
  [[nodiscard]] std::vector<ChangeNotice> take_changes();

  // ---- Reads of applied state. kCorruption for a damaged record. ----
  [[nodiscard]] static Result<std::optional<messagingpb::UserRecord>> get_user(
      const storage::Reader& reader, std::string_view user_id);
  // nullopt for an unknown or removed device.
  [[nodiscard]] static Result<std::optional<messagingpb::DeviceRecord>> get_device(
      const storage::Reader& reader, std::string_view device_id);
  [[nodiscard]] static Result<std::optional<messagingpb::ConversationRecord>> get_conversation(
      const storage::Reader& reader, std::string_view conversation_id);
  [[nodiscard]] static Result<std::optional<messagingpb::MessageRecord>> get_message(
      const storage::Reader& reader, std::string_view conversation_id, std::uint64_t seq);
  // The user's preferences, or (conversation_id non-empty) those for the conversation with its
  // overrides applied. kNotFound for an unknown user or a conversation the user is not in.
  [[nodiscard]] static Result<EffectivePreferences> preferences(const storage::Reader& reader,
                                                                std::string_view user_id,
                                                                std::string_view conversation_id);
  // The user's conversations, most recent activity first, at most `limit` (<= kMaxReadLimit)
  // after the page `page_token` ended (empty: from the top). kInvalidArgument for a token that is
  // not this user's.
  [[nodiscard]] static Result<ChatPage> chat_index(const storage::Reader& reader,
                                                   std::string_view user_id, std::size_t limit,
                                                   std::string_view page_token);
  // The user's changes after `after_change_seq`: of the next `limit` (<= kMaxReadLimit) changes,
  // those whose message expired are skipped (next_cursor passes them; the page may be short, even
  // empty, with has_more), and each other message change is joined with the message as it is now.
  [[nodiscard]] static Result<SyncPage> sync(const storage::Reader& reader,
                                             std::string_view user_id,
                                             std::uint64_t after_change_seq, std::size_t limit);
  // The conversation's messages before `before_seq` (0: from the newest), newest first, at most
  // `limit` (clamped to [1, kMaxReadLimit]) seqs; expired messages are skipped, and next_before is
  // 0 once no older message is stored. kNotFound when the user is not a member.
  [[nodiscard]] static Result<HistoryPage> history(const storage::Reader& reader,
                                                   std::string_view user_id,
                                                   std::string_view conversation_id,
                                                   std::uint64_t before_seq, std::size_t limit);
  // The conversation's messages after `after_seq`, oldest first, at most `limit` (clamped to
  // [1, kMaxReadLimit]) seqs; expired messages are skipped. kNotFound when the user is not a
  // member.
  [[nodiscard]] static Result<HistoryPage> history_after(const storage::Reader& reader,
                                                         std::string_view user_id,
                                                         std::string_view conversation_id,
                                                         std::uint64_t after_seq,
                                                         std::size_t limit);
  // The retention windows in force (the defaults until SetRetention).
  [[nodiscard]] static Result<messagingpb::RetentionSettings> retention(
      const storage::Reader& reader);
  // kNotFound when the user is not a member of the conversation.
  [[nodiscard]] static Result<std::uint64_t> read_cursor(const storage::Reader& reader,
                                                         std::string_view user_id,
                                                         std::string_view conversation_id);
  // The marks of each of the user's devices in the conversation (zero when none were recorded).
  [[nodiscard]] static Result<std::vector<DeviceMarkView>> device_marks(
      const storage::Reader& reader, std::string_view user_id, std::string_view conversation_id);

 private:
  WorkflowSink* sink_;  // borrowed
  std::vector<ChangeNotice> changes_;
};

}  // namespace herald::messaging
