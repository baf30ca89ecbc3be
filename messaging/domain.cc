#include "messaging/domain.h"

#include <fmt/format.h>

#include <algorithm>
#include <iterator>
#include <limits>
#include <optional>
#include <utility>

#include "base/log.h"
#include "messaging/delivery.pb.h"
#include "messaging/keys.h"
#include "messaging/providers.h"

namespace herald::messaging {

bool is_message_change(messagingpb::ChangeKind kind) {
  return kind == messagingpb::MESSAGE_NEW || kind == messagingpb::MESSAGE_EDITED ||
         kind == messagingpb::MESSAGE_DELETED;
}

namespace {

using messagingpb::ChangeKind;
using messagingpb::ChangeRecord;
using messagingpb::ChatEntry;
using messagingpb::ConversationPreferences;
using messagingpb::ConversationRecord;
using messagingpb::DeviceMarks;
using messagingpb::DeviceRecord;
using messagingpb::Member;
using messagingpb::MemberState;
using messagingpb::MessageRecord;
using messagingpb::Role;
using messagingpb::UserPreferences;
using messagingpb::UserRecord;

constexpr std::string_view kPlatforms[] = {"ios", "android", "web"};
constexpr std::string_view kPushProviders[] = {kApnsProvider, kFcmProvider, kWebPushProvider, ""};

// Who may do what in a conversation.
enum class Authority : std::uint8_t {
  kMember,   // any member
  kManager,  // the owner or an admin
  kOwner,
};

// ---------------------------------------------------------------- results and checks

rsmpb::CommandResult error_result(const Status& status) {
  rsmpb::CommandResult r;
  r.set_code(static_cast<std::uint32_t>(status.code()));
  r.set_message(status.message());
  return r;
}

rsmpb::CommandResult ok_result() {
  return {};
}

template <typename Message>
rsmpb::CommandResult payload_result(const Message& payload, bool existed = false) {
  rsmpb::CommandResult r;
  r.set_existed(existed);
  r.set_payload(payload.SerializeAsString());
  return r;
}

rsmpb::CommandResult mark_result(std::uint64_t mark) {
  messagingpb::MarkResult result;
  result.set_mark(mark);
  return payload_result(result);
}

// Authorization refusals. Herald has no permission-denied code yet: they are failed
// preconditions, told apart by this message prefix.
Status denied(std::string_view why) {
  return Status::failed_precondition(fmt::format("permission denied: {}", why));
}

bool contains(const auto& set, std::string_view value) {
  return std::find(std::begin(set), std::end(set), value) != std::end(set);
}

bool has_control_byte(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    const auto b = static_cast<unsigned char>(c);
    return b < 0x20U || b == 0x7FU;
  });
}

// Bytes no id holds: control bytes, and those a workflow id escapes (which would lengthen it).
bool has_reserved_byte(std::string_view id) {
  return has_control_byte(id) || id.find_first_of("/%") != std::string_view::npos;
}

Status check_bounded(std::string_view what, std::string_view value, std::size_t max_bytes,
                     bool allow_empty) {
  if ((value.empty() && !allow_empty) || value.size() > max_bytes) {
    return Status::invalid_argument(fmt::format("{} must have {} to {} bytes; it has {}", what,
                                                allow_empty ? 0 : 1, max_bytes, value.size()));
  }
  return Status::ok_status();
}

// A value over its bound is kResourceExhausted (`too_large` to clients); ids use check_bounded,
// whose every failure is kInvalidArgument.
Status check_size(std::string_view what, std::string_view value, std::size_t max_bytes) {
  if (value.size() > max_bytes) {
    return Status::resource_exhausted(
        fmt::format("{} holds at most {} bytes; it has {}", what, max_bytes, value.size()));
  }
  return Status::ok_status();
}

// Free text shown to people: bounded, possibly empty, no control bytes. (UTF-8 is checked by
// the command's decoding.)
Status check_text(std::string_view what, std::string_view value, std::size_t max_bytes) {
  HERALD_RETURN_IF_ERROR(check_size(what, value, max_bytes));
  if (has_control_byte(value)) {
    return Status::invalid_argument(fmt::format("{} holds a control byte", what));
  }
  return Status::ok_status();
}

// User and device ids: 1 to kMaxIdBytes bytes, no ':', '/', '%' or control byte.
Status check_id(std::string_view what, std::string_view id) {
  HERALD_RETURN_IF_ERROR(check_bounded(what, id, kMaxIdBytes, /*allow_empty=*/false));
  if (has_reserved_byte(id) || id.find(':') != std::string_view::npos) {
    return Status::invalid_argument(fmt::format("{} holds ':', '/', '%' or a control byte", what));
  }
  return Status::ok_status();
}

Status check_conversation_id(std::string_view id) {
  HERALD_RETURN_IF_ERROR(
      check_bounded("a conversation id", id, kMaxConversationIdBytes, /*allow_empty=*/false));
  if (has_reserved_byte(id)) {
    return Status::invalid_argument("a conversation id holds '/', '%' or a control byte");
  }
  return Status::ok_status();
}

Status check_client_message_id(std::string_view id) {
  HERALD_RETURN_IF_ERROR(
      check_bounded("a client message id", id, kMaxIdBytes, /*allow_empty=*/false));
  if (has_control_byte(id)) {
    return Status::invalid_argument("a client message id holds a control byte");
  }
  return Status::ok_status();
}

// Empty, or one '@' with text on both sides and no space or control byte.
Status check_email(std::string_view email) {
  HERALD_RETURN_IF_ERROR(check_text("an email address", email, kMaxEmailBytes));
  if (email.empty()) {
    return Status::ok_status();
  }
  const std::size_t at = email.find('@');
  if (at == 0 || at == std::string_view::npos || at + 1 == email.size() ||
      email.find('@', at + 1) != std::string_view::npos ||
      email.find(' ') != std::string_view::npos) {
    return Status::invalid_argument("an email address needs one '@' between two non-empty parts");
  }
  return Status::ok_status();
}

Status check_email_delay(std::int64_t delay_ms) {
  if (delay_ms < kMinEmailDelayMs || delay_ms > kMaxEmailDelayMs) {
    return Status::invalid_argument(fmt::format("an email delay of {} ms is outside [{}, {}] ms",
                                                delay_ms, kMinEmailDelayMs, kMaxEmailDelayMs));
  }
  return Status::ok_status();
}

Status check_body(std::string_view body) {
  if (body.empty()) return Status::invalid_argument("a message body must not be empty");
  return check_size("a message body", body, kMaxMessageBodyBytes);
}

Status check_within(const ConversationRecord& conv, std::uint64_t seq) {
  if (seq > conv.last_seq()) {
    return Status::failed_precondition(
        fmt::format("seq {} is beyond the last message ({}) of conversation \"{}\"", seq,
                    conv.last_seq(), conv.conversation_id()));
  }
  return Status::ok_status();
}

EffectivePreferences effective(const UserPreferences& user, const ConversationPreferences& conv) {
  EffectivePreferences prefs;
  prefs.push_enabled = conv.has_push_enabled() ? conv.push_enabled() : user.push_enabled();
  prefs.email_fallback = conv.has_email_fallback() ? conv.email_fallback() : user.email_fallback();
  prefs.email_delay_ms = conv.has_email_delay_ms() ? conv.email_delay_ms() : user.email_delay_ms();
  prefs.muted = conv.muted();
  prefs.hide_previews = user.hide_previews();
  return prefs;
}

ChangeRecord make_change(ChangeKind kind, std::string_view conversation_id,
                         std::string_view actor_user_id) {
  ChangeRecord change;
  change.set_kind(kind);
  change.set_conversation_id(std::string(conversation_id));
  change.set_actor_user_id(std::string(actor_user_id));
  return change;
}

// ---------------------------------------------------------------- members

// The member's position in the (join-ordered) member list, or -1.
int member_index(const ConversationRecord& conv, std::string_view user_id) {
  for (int i = 0; i < conv.members_size(); ++i) {
    if (conv.members(i).user_id() == user_id) {
      return i;
    }
  }
  return -1;
}

const Member* find_member(const ConversationRecord& conv, std::string_view user_id) {
  const int i = member_index(conv, user_id);
  return i < 0 ? nullptr : &conv.members(i);
}

Member* mutable_member(ConversationRecord& conv, std::string_view user_id) {
  const int i = member_index(conv, user_id);
  return i < 0 ? nullptr : conv.mutable_members(i);
}

void add_member(ConversationRecord& conv, std::string_view user_id, Role role,
                std::int64_t now_ms) {
  Member* member = conv.add_members();
  member->set_user_id(std::string(user_id));
  member->set_role(role);
  member->set_joined_ms(now_ms);
}

void erase_member(ConversationRecord& conv, std::string_view user_id) {
  const int i = member_index(conv, user_id);
  HERALD_ASSERT(i >= 0, "only a member is erased");
  conv.mutable_members()->DeleteSubrange(i, 1);
}

// The member who inherits a group from its leaving owner: the longest-standing admin, else the
// longest-standing member. Precondition: the group has members and no owner.
Member& successor(ConversationRecord& conv) {
  HERALD_ASSERT(!conv.members().empty(), "a successor needs members");
  auto* members = conv.mutable_members();
  const auto admin = std::find_if(members->begin(), members->end(),
                                  [](const Member& m) { return m.role() == messagingpb::ADMIN; });
  return admin != members->end() ? *admin : *members->begin();
}

Status check_authority(const ConversationRecord& conv, std::string_view user_id, Authority needed) {
  const Member* member = find_member(conv, user_id);
  if (member == nullptr) {
    return denied(fmt::format("user \"{}\" is not a member of conversation \"{}\"", user_id,
                              conv.conversation_id()));
  }
  const bool owner = member->role() == messagingpb::OWNER;
  const bool admin = member->role() == messagingpb::ADMIN;
  if (needed == Authority::kOwner && !owner) {
    return denied("only the owner does this");
  }
  if (needed == Authority::kManager && !owner && !admin) {
    return denied("only the owner or an admin does this");
  }
  return Status::ok_status();
}

Status require_group(const ConversationRecord& conv) {
  if (conv.kind() != messagingpb::GROUP) {
    return Status::failed_precondition(fmt::format(
        "conversation \"{}\" is direct: its title and members are fixed", conv.conversation_id()));
  }
  return Status::ok_status();
}

// ---------------------------------------------------------------- loading records

// Works over an ApplyBatch (apply) and a storage::Reader (the readers) alike.
template <typename Message, typename Source>
Result<std::optional<Message>> load(const Source& source, const std::string& key,
                                    std::string_view what) {
  HERALD_ASSIGN_OR_RETURN(auto raw, source.get(storage::Space::kState, key));
  return keys::open_optional<Message>(raw, what);
}

// load(), then kCorruption unless the record names the key it is stored under.
template <typename Message, typename Source, typename Matches>
Result<std::optional<Message>> load_checked(const Source& source, const std::string& key,
                                            std::string_view what, Matches matches) {
  HERALD_ASSIGN_OR_RETURN(auto record, load<Message>(source, key, what));
  if (record && !matches(*record)) {
    return Status::corruption(fmt::format("a {} record is stored under another key", what));
  }
  return record;
}

template <typename Source>
Result<std::optional<UserRecord>> find_user(const Source& source, std::string_view user_id) {
  return load_checked<UserRecord>(source, keys::user_key(user_id), "user",
                                  [&](const UserRecord& r) { return r.user_id() == user_id; });
}

template <typename Source>
Result<std::optional<DeviceRecord>> find_device(const Source& source, std::string_view device_id) {
  return load_checked<DeviceRecord>(
      source, keys::device_key(device_id), "device",
      [&](const DeviceRecord& r) { return r.device_id() == device_id; });
}

template <typename Source>
Result<std::optional<ConversationRecord>> find_conversation(const Source& source,
                                                            std::string_view conversation_id) {
  return load_checked<ConversationRecord>(
      source, keys::conversation_key(conversation_id), "conversation",
      [&](const ConversationRecord& r) { return r.conversation_id() == conversation_id; });
}

template <typename Source>
Result<std::optional<MessageRecord>> find_message(const Source& source,
                                                  std::string_view conversation_id,
                                                  std::uint64_t seq) {
  return load_checked<MessageRecord>(
      source, keys::message_key(conversation_id, seq), "message", [&](const MessageRecord& r) {
        return r.conversation_id() == conversation_id && r.seq() == seq;
      });
}

template <typename Source>
Result<std::optional<MemberState>> find_member_state(const Source& source, std::string_view user_id,
                                                     std::string_view conversation_id) {
  return load_checked<MemberState>(source, keys::member_key(user_id, conversation_id),
                                   "member state", [&](const MemberState& r) {
                                     return r.user_id() == user_id &&
                                            r.conversation_id() == conversation_id;
                                   });
}

// The retention windows in force: the stored settings, each unset window at its default.
template <typename Source>
Result<messagingpb::RetentionSettings> retention_of(const Source& source) {
  HERALD_ASSIGN_OR_RETURN(auto stored, load<messagingpb::RetentionSettings>(
                                           source, keys::retention_key(), "retention settings"));
  messagingpb::RetentionSettings settings = stored.value_or(messagingpb::RetentionSettings());
  if (settings.dedup_window_ms() == 0) settings.set_dedup_window_ms(kDefaultDedupWindowMs);
  if (settings.change_retention_ms() == 0) {
    settings.set_change_retention_ms(kDefaultChangeRetentionMs);
  }
  if (settings.delivery_lifetime_ms() == 0) {
    settings.set_delivery_lifetime_ms(kDefaultDeliveryLifetimeMs);
  }
  return settings;
}

// kNotFound when the record is absent: for ids named by the caller.
template <typename Message>
Result<Message> found(Result<std::optional<Message>> record, std::string_view what,
                      std::string_view id) {
  if (!record.ok()) {
    return record.status();
  }
  if (!record->has_value()) {
    return Status::not_found(fmt::format("{} \"{}\" not found", what, id));
  }
  return std::move(**record);
}

// kCorruption when the record is absent: for records another stored record refers to.
template <typename Message>
Result<Message> referenced(Result<std::optional<Message>> record, std::string_view what,
                           std::string_view id) {
  if (!record.ok()) {
    return record.status();
  }
  if (!record->has_value()) {
    return Status::corruption(
        fmt::format("the {} \"{}\" that a record refers to is missing", what, id));
  }
  return std::move(**record);
}

// ---------------------------------------------------------------- applying one command

// One command's application against the apply batch. Not reused across commands.
class Applier {
 public:
  Applier(rsm::ApplyBatch& batch, WorkflowSink& sink, std::int64_t now_ms,
          std::vector<ChangeNotice>& notices)
      : batch_(batch), sink_(sink), now_ms_(now_ms), notices_(notices) {}

  Result<rsmpb::CommandResult> create_user(const messagingpb::CreateUser& op);
  Result<rsmpb::CommandResult> create_device(const messagingpb::CreateDevice& op);
  Result<rsmpb::CommandResult> set_push_token(const messagingpb::SetPushToken& op);
  Result<rsmpb::CommandResult> invalidate_push_target(const messagingpb::InvalidatePushTarget& op);
  Result<rsmpb::CommandResult> remove_device(const messagingpb::RemoveDevice& op);
  Result<rsmpb::CommandResult> revoke_user(const messagingpb::RevokeUser& op);
  Result<rsmpb::CommandResult> create_conversation(const messagingpb::CreateConversation& op);
  Result<rsmpb::CommandResult> rename(const messagingpb::RenameConversation& op);
  Result<rsmpb::CommandResult> add_members(const messagingpb::AddMembers& op);
  Result<rsmpb::CommandResult> remove_member(const messagingpb::RemoveMember& op);
  Result<rsmpb::CommandResult> leave(const messagingpb::LeaveConversation& op);
  Result<rsmpb::CommandResult> set_role(const messagingpb::SetRole& op);
  Result<rsmpb::CommandResult> set_preferences(const messagingpb::SetPreferences& op);
  Result<rsmpb::CommandResult> send(const messagingpb::SendMessage& op);
  Result<rsmpb::CommandResult> edit(const messagingpb::EditMessage& op);
  Result<rsmpb::CommandResult> erase(const messagingpb::DeleteMessage& op);
  Result<rsmpb::CommandResult> ack_delivery(const messagingpb::AckDelivery& op);
  Result<rsmpb::CommandResult> set_read_marker(const messagingpb::SetReadMarker& op);
  Result<rsmpb::CommandResult> restore_read_marker(const messagingpb::RestoreReadMarker& op);
  Result<rsmpb::CommandResult> advance_read_cursor(const messagingpb::AdvanceReadCursor& op);
  Result<rsmpb::CommandResult> publish_receipts(const messagingpb::PublishReadReceipts& op);
  Result<rsmpb::CommandResult> set_retention(const messagingpb::SetRetention& op);
  // MessagingCommand.acting_*: the device a command came from is still an active device of its
  // user. Both empty: an operator or workflow command, nothing to check.
  Status check_acting_device(std::string_view user_id, std::string_view device_id);
  // Deletes up to kMaxMessageExpiriesPerCommand messages from the front of the message queue
  // whose message_retention_ms has passed (none while it is 0), canceling their open deliveries.
  // Run after every command that applied.
  Status expire_messages();
  // Trims the stream at the front of the stream-trim queue once its window has passed: up to
  // kMaxIdleStreamTrimsPerCommand entries past the change retention, never the newest. A stream
  // trimmed as far as it can be leaves the queue, and is queued again when it still holds
  // entries. Run after every command that applied.
  Status trim_idle_streams();

 private:
  template <typename Message>
  void put(const std::string& key, const Message& record) {
    batch_.put(storage::Space::kState, key, keys::seal(record));
  }
  void del(const std::string& key) { batch_.del(storage::Space::kState, key); }

  // The retention windows in force (retention_of), cached for the rest of the command.
  Result<messagingpb::RetentionSettings> retention() {
    if (!retention_) {
      HERALD_ASSIGN_OR_RETURN(retention_, retention_of(batch_));
    }
    return *retention_;
  }

  // ---- Lookups with their errors ----
  Result<UserRecord> require_user(std::string_view user_id);
  Result<ConversationRecord> require_conversation(std::string_view conversation_id);
  // Checks the ids, loads the conversation and checks the user's authority in it.
  Result<ConversationRecord> authorized(std::string_view user_id, std::string_view conversation_id,
                                        Authority needed);
  // As authorized(kMember); an empty user_id is the admin API (no membership needed).
  Result<ConversationRecord> as_member_or_admin(std::string_view user_id,
                                                std::string_view conversation_id);
  Result<DeviceRecord> require_device_of(std::string_view user_id, std::string_view device_id);
  // authorized(kMember) for a command of one of the user's devices.
  Result<ConversationRecord> device_conversation(std::string_view user_id,
                                                 std::string_view device_id,
                                                 std::string_view conversation_id);
  Result<MemberState> member_state(std::string_view user_id, std::string_view conversation_id);
  Result<MessageRecord> stored_message(std::string_view conversation_id, std::uint64_t seq);
  // The conversation and the message `user_id` may edit or delete.
  Result<std::pair<ConversationRecord, MessageRecord>> authored(std::string_view user_id,
                                                                std::string_view conversation_id,
                                                                std::uint64_t seq);

  // ---- Conversations and members ----
  Result<rsmpb::CommandResult> create_direct(const messagingpb::CreateConversation& op);
  Result<rsmpb::CommandResult> create_group(const messagingpb::CreateConversation& op);
  ConversationRecord new_conversation(std::string_view id, messagingpb::ConversationKind kind,
                                      std::string_view title, std::string_view creator) const;
  Result<rsmpb::CommandResult> open_conversation(const ConversationRecord& conv);
  void join(const ConversationRecord& conv, std::string_view user_id);
  Status part(std::string_view user_id, std::string_view conversation_id);
  Status save_membership(ConversationRecord& conv, const ChangeRecord& change);
  Result<rsmpb::CommandResult> set_user_preferences(const messagingpb::SetPreferences& op);
  Result<rsmpb::CommandResult> set_conversation_preferences(const messagingpb::SetPreferences& op);

  // ---- Messages ----
  Status deliver(const ConversationRecord& conv, const MessageRecord& message,
                 std::string_view preview, std::string_view user_id);
  Status start_delivery(const MessageRecord& message, std::string_view preview,
                        const MemberState& state);
  Result<rsmpb::CommandResult> revise(ConversationRecord& conv, const MessageRecord& message,
                                      ChangeKind kind, std::string_view actor_user_id);
  Status refresh_previews(const ConversationRecord& conv, const MessageRecord& message);
  // Requests the cancellation of the message's delivery workflows, one per member but the sender.
  Status cancel_deliveries(const ConversationRecord& conv, const MessageRecord& message,
                           std::string_view reason);
  // Appends the message just stored to the message queue.
  Status enqueue_message(const MessageRecord& message);
  Status expire_message(const messagingpb::MessageExpiry& entry);
  Status signal(std::string_view conversation_id, std::uint64_t seq, std::string_view user_id,
                std::string_view name, std::string_view device_id);

  // ---- Change streams ----
  Status append_change(std::string_view user_id, ChangeRecord change);
  // Drops the user's oldest stream entries past the change retention (at most
  // kMaxChangeTrimsPerAppend, never the newest) and moves first_change_seq past them.
  Status trim_changes(UserRecord& user);
  // Queues the user's stream for trimming once the change retention has passed (a user has at
  // most one queue entry), and marks the record.
  Status queue_stream_trim(UserRecord& user);
  // Queues the send-dedup record just written for expiry, and removes up to
  // kMaxDedupExpiriesPerSend expired ones from the front of the queue.
  Status remember_dedup(const std::string& dedup_key);
  Status fan_out(const ConversationRecord& conv, const ChangeRecord& change);

  // ---- Removed devices ----
  // Queues the device just tombstoned for reclamation; then as reclaim_devices(kTombstones).
  Status enqueue_removed(const DeviceRecord& device);
  enum class Reclaim : std::uint8_t { kMarks, kTombstones };
  // Deletes up to kMaxDeviceMarksSweptPerCommand keys of removed devices' marks, oldest removal
  // first; with kTombstones also up to kMaxDeviceExpiriesPerCommand tombstones whose marks are
  // gone and whose window has passed. Writes the queue only when it changed.
  Status reclaim_devices(Reclaim what);
  Status sweep_marks(messagingpb::DeviceQueue& queue);
  Status expire_tombstones(messagingpb::DeviceQueue& queue);
  Result<messagingpb::DeviceExpiry> queued_device(std::uint64_t n);

  rsm::ApplyBatch& batch_;
  WorkflowSink& sink_;
  const std::int64_t now_ms_;
  // The retention settings, read once per command (a send consults them for every member);
  // set_retention() drops them.
  std::optional<messagingpb::RetentionSettings> retention_;
  std::vector<ChangeNotice>& notices_;
};

// ---------------------------------------------------------------- lookups

Result<UserRecord> Applier::require_user(std::string_view user_id) {
  return found(find_user(batch_, user_id), "user", user_id);
}

Result<ConversationRecord> Applier::require_conversation(std::string_view conversation_id) {
  return found(find_conversation(batch_, conversation_id), "conversation", conversation_id);
}

Result<ConversationRecord> Applier::authorized(std::string_view user_id,
                                               std::string_view conversation_id, Authority needed) {
  HERALD_RETURN_IF_ERROR(check_id("a user id", user_id));
  HERALD_RETURN_IF_ERROR(check_conversation_id(conversation_id));
  HERALD_ASSIGN_OR_RETURN(ConversationRecord conv, require_conversation(conversation_id));
  HERALD_RETURN_IF_ERROR(check_authority(conv, user_id, needed));
  return conv;
}

Result<ConversationRecord> Applier::as_member_or_admin(std::string_view user_id,
                                                       std::string_view conversation_id) {
  if (!user_id.empty()) {
    return authorized(user_id, conversation_id, Authority::kMember);
  }
  HERALD_RETURN_IF_ERROR(check_conversation_id(conversation_id));
  return require_conversation(conversation_id);
}

Result<DeviceRecord> Applier::require_device_of(std::string_view user_id,
                                                std::string_view device_id) {
  HERALD_ASSIGN_OR_RETURN(auto device, find_device(batch_, device_id));
  if (!device || device->removed()) {
    return Status::not_found(fmt::format("device \"{}\" not found", device_id));
  }
  if (device->user_id() != user_id) {
    return denied(fmt::format("device \"{}\" belongs to another user", device_id));
  }
  return std::move(*device);
}

Status Applier::check_acting_device(std::string_view user_id, std::string_view device_id) {
  if (user_id.empty() && device_id.empty()) return Status::ok_status();
  HERALD_RETURN_IF_ERROR(check_id("the acting user id", user_id));
  HERALD_RETURN_IF_ERROR(check_id("the acting device id", device_id));
  return require_device_of(user_id, device_id).status();
}

Result<ConversationRecord> Applier::device_conversation(std::string_view user_id,
                                                        std::string_view device_id,
                                                        std::string_view conversation_id) {
  HERALD_RETURN_IF_ERROR(check_id("a device id", device_id));
  HERALD_ASSIGN_OR_RETURN(ConversationRecord conv,
                          authorized(user_id, conversation_id, Authority::kMember));
  HERALD_RETURN_IF_ERROR(require_device_of(user_id, device_id).status());
  return conv;
}

Result<MemberState> Applier::member_state(std::string_view user_id,
                                          std::string_view conversation_id) {
  return referenced(find_member_state(batch_, user_id, conversation_id), "member state", user_id);
}

Result<MessageRecord> Applier::stored_message(std::string_view conversation_id, std::uint64_t seq) {
  return referenced(find_message(batch_, conversation_id, seq), "message",
                    fmt::format("{}#{}", conversation_id, seq));
}

Result<std::pair<ConversationRecord, MessageRecord>> Applier::authored(
    std::string_view user_id, std::string_view conversation_id, std::uint64_t seq) {
  HERALD_ASSIGN_OR_RETURN(ConversationRecord conv, as_member_or_admin(user_id, conversation_id));
  HERALD_ASSIGN_OR_RETURN(MessageRecord message,
                          found(find_message(batch_, conversation_id, seq), "message",
                                fmt::format("{}#{}", conversation_id, seq)));
  if (user_id.empty() && message.kind() != messagingpb::SYSTEM_MESSAGE) {
    return denied("the admin API edits and deletes system messages only");
  }
  if (!user_id.empty() && message.sender_user_id() != user_id) {
    return denied("only its sender edits or deletes a message");
  }
  return std::make_pair(std::move(conv), std::move(message));
}

// ---------------------------------------------------------------- users and devices

Result<rsmpb::CommandResult> Applier::create_user(const messagingpb::CreateUser& op) {
  HERALD_RETURN_IF_ERROR(check_id("a user id", op.user_id()));
  HERALD_RETURN_IF_ERROR(check_text("a display name", op.display_name(), kMaxDisplayNameBytes));
  HERALD_RETURN_IF_ERROR(check_email(op.email()));
  HERALD_ASSIGN_OR_RETURN(auto existing, find_user(batch_, op.user_id()));
  if (existing) {
    return Status::already_exists(fmt::format("user \"{}\" exists", op.user_id()));
  }
  UserRecord user;
  user.set_user_id(op.user_id());
  user.set_display_name(op.display_name());
  user.set_email(op.email());
  user.set_created_ms(now_ms_);
  user.mutable_preferences()->set_push_enabled(true);
  user.mutable_preferences()->set_email_fallback(false);
  user.mutable_preferences()->set_email_delay_ms(kDefaultEmailDelayMs);
  put(keys::user_key(op.user_id()), user);
  return ok_result();
}

Result<rsmpb::CommandResult> Applier::create_device(const messagingpb::CreateDevice& op) {
  HERALD_RETURN_IF_ERROR(check_id("a user id", op.user_id()));
  HERALD_RETURN_IF_ERROR(check_id("a device id", op.device_id()));
  if (!contains(kPlatforms, op.platform())) {
    return Status::invalid_argument("a device's platform is \"ios\", \"android\" or \"web\"");
  }
  if (op.credential_sha256().size() != kCredentialBytes) {
    return Status::invalid_argument(
        fmt::format("a device credential is a {}-byte SHA-256", kCredentialBytes));
  }
  HERALD_ASSIGN_OR_RETURN(UserRecord user, require_user(op.user_id()));
  // First, so that an id whose tombstone is due is free again in this very command.
  HERALD_RETURN_IF_ERROR(reclaim_devices(Reclaim::kTombstones));
  HERALD_ASSIGN_OR_RETURN(auto existing, find_device(batch_, op.device_id()));
  if (existing && existing->removed()) {
    return Status::already_exists(
        fmt::format("device id \"{}\" is held by a removed device until the retention windows pass",
                    op.device_id()));
  }
  if (existing) {
    return Status::already_exists(fmt::format("device id \"{}\" is taken", op.device_id()));
  }
  if (static_cast<std::size_t>(user.device_ids_size()) >= kMaxDevicesPerUser) {
    return Status::resource_exhausted(
        fmt::format("user \"{}\" has {} devices, the bound", op.user_id(), kMaxDevicesPerUser));
  }
  DeviceRecord device;
  device.set_device_id(op.device_id());
  device.set_user_id(op.user_id());
  device.set_platform(op.platform());
  device.set_credential_sha256(op.credential_sha256());
  device.set_created_ms(now_ms_);
  device.set_registered_after_change_seq(user.last_change_seq());
  put(keys::device_key(op.device_id()), device);
  user.add_device_ids(op.device_id());
  put(keys::user_key(op.user_id()), user);
  return ok_result();
}

Result<rsmpb::CommandResult> Applier::set_push_token(const messagingpb::SetPushToken& op) {
  HERALD_RETURN_IF_ERROR(check_id("a user id", op.user_id()));
  HERALD_RETURN_IF_ERROR(check_id("a device id", op.device_id()));
  if (!contains(kPushProviders, op.push_provider())) {
    return Status::invalid_argument("a push provider is \"apns\", \"fcm\", \"webpush\" or \"\"");
  }
  // A Web Push token is a whole subscription (an endpoint URL and two keys), so it has a bound of
  // its own.
  const std::size_t max_token_bytes =
      op.push_provider() == kWebPushProvider ? kMaxWebPushTokenBytes : kMaxPushTokenBytes;
  HERALD_RETURN_IF_ERROR(check_text("a push token", op.push_token(), max_token_bytes));
  if (op.push_provider().empty() != op.push_token().empty()) {
    return Status::invalid_argument("a push token needs a provider, and a provider a token");
  }
  HERALD_ASSIGN_OR_RETURN(DeviceRecord device, require_device_of(op.user_id(), op.device_id()));
  device.set_push_provider(op.push_provider());
  device.set_push_token(op.push_token());
  // Registering (or clearing) a token is the app's word that the old mark no longer holds.
  device.clear_push_target_invalid();
  device.clear_push_invalid_error_type();
  device.clear_push_invalid_reason();
  device.clear_push_invalid_ms();
  put(keys::device_key(op.device_id()), device);
  return ok_result();
}

Result<rsmpb::CommandResult> Applier::invalidate_push_target(
    const messagingpb::InvalidatePushTarget& op) {
  HERALD_RETURN_IF_ERROR(check_id("a user id", op.user_id()));
  HERALD_RETURN_IF_ERROR(check_id("a device id", op.device_id()));
  HERALD_RETURN_IF_ERROR(check_size("an error type", op.error_type(), kMaxPushInvalidReasonBytes));
  HERALD_RETURN_IF_ERROR(check_size("a reason", op.reason(), kMaxPushInvalidReasonBytes));
  HERALD_ASSIGN_OR_RETURN(DeviceRecord device, require_device_of(op.user_id(), op.device_id()));
  if (op.push_token().empty() || device.push_token() != op.push_token() ||
      device.push_provider() != op.push_provider() || device.push_target_invalid()) {
    return ok_result();  // a newer token, no token, or marked before: nothing to do
  }
  device.set_push_target_invalid(true);
  device.set_push_invalid_error_type(op.error_type());
  device.set_push_invalid_reason(op.reason());
  device.set_push_invalid_ms(now_ms_);
  put(keys::device_key(op.device_id()), device);
  ChangeRecord change = make_change(messagingpb::PUSH_TARGET_INVALID, "", "");
  change.set_device_id(op.device_id());
  change.set_title(op.error_type());
  HERALD_RETURN_IF_ERROR(append_change(op.user_id(), std::move(change)));
  DomainEvent event;
  event.type = kEventPushTokenInvalidated;
  // A token is marked invalid once (a second report is a no-op above): its device and the time it
  // was marked name the occurrence.
  event.key = fmt::format("{}/{}", op.device_id(), now_ms_);
  event.user_id = op.user_id();
  event.device_id = op.device_id();
  event.detail = op.error_type();
  HERALD_RETURN_IF_ERROR(sink_.emit(batch_, now_ms_, event));
  return ok_result();
}

Result<rsmpb::CommandResult> Applier::remove_device(const messagingpb::RemoveDevice& op) {
  HERALD_RETURN_IF_ERROR(check_id("a user id", op.user_id()));
  HERALD_RETURN_IF_ERROR(check_id("a device id", op.device_id()));
  HERALD_ASSIGN_OR_RETURN(DeviceRecord device, require_device_of(op.user_id(), op.device_id()));
  HERALD_ASSIGN_OR_RETURN(UserRecord user, require_user(op.user_id()));
  device.set_removed(true);
  device.set_removed_ms(now_ms_);
  device.clear_credential_sha256();
  device.clear_push_provider();
  device.clear_push_token();
  put(keys::device_key(op.device_id()), device);
  auto* ids = user.mutable_device_ids();
  ids->erase(std::remove(ids->begin(), ids->end(), op.device_id()), ids->end());
  put(keys::user_key(op.user_id()), user);
  ChangeRecord change = make_change(messagingpb::DEVICE_REMOVED, "", "");
  change.set_device_id(op.device_id());
  HERALD_RETURN_IF_ERROR(append_change(op.user_id(), std::move(change)));
  HERALD_RETURN_IF_ERROR(enqueue_removed(device));
  return ok_result();
}

Result<rsmpb::CommandResult> Applier::revoke_user(const messagingpb::RevokeUser& op) {
  HERALD_RETURN_IF_ERROR(check_id("a user id", op.user_id()));
  HERALD_ASSIGN_OR_RETURN(UserRecord user, require_user(op.user_id()));
  for (const std::string& device_id : user.device_ids()) {
    HERALD_ASSIGN_OR_RETURN(DeviceRecord device, require_device_of(op.user_id(), device_id));
    // An empty digest matches no secret (the gateway compares 32-byte digests).
    device.clear_credential_sha256();
    put(keys::device_key(device_id), device);
  }
  // Never moves back: a command stamped by a proposer whose clock lags keeps the later stamp.
  user.set_revoked_at_ms(std::max(user.revoked_at_ms(), now_ms_));
  put(keys::user_key(op.user_id()), user);
  HERALD_RETURN_IF_ERROR(
      append_change(op.user_id(), make_change(messagingpb::USER_REVOKED, "", "")));
  messagingpb::RevokeResult result;
  result.set_revoked_at_ms(user.revoked_at_ms());
  return payload_result(result);
}

// ---------------------------------------------------------------- conversations

ConversationRecord Applier::new_conversation(std::string_view id,
                                             messagingpb::ConversationKind kind,
                                             std::string_view title,
                                             std::string_view creator) const {
  ConversationRecord conv;
  conv.set_conversation_id(std::string(id));
  conv.set_kind(kind);
  conv.set_title(std::string(title));
  conv.set_created_by(std::string(creator));
  conv.set_created_ms(now_ms_);
  conv.set_updated_ms(now_ms_);
  return conv;
}

Result<rsmpb::CommandResult> Applier::create_conversation(
    const messagingpb::CreateConversation& op) {
  HERALD_RETURN_IF_ERROR(check_id("the creator's user id", op.user_id()));
  if (static_cast<std::size_t>(op.member_user_ids_size()) > kMaxMembersPerCommand) {
    return Status::invalid_argument(
        fmt::format("at most {} members join per command", kMaxMembersPerCommand));
  }
  for (const std::string& member : op.member_user_ids()) {
    HERALD_RETURN_IF_ERROR(check_id("a member's user id", member));
  }
  HERALD_RETURN_IF_ERROR(require_user(op.user_id()).status());
  switch (op.kind()) {
    case messagingpb::DIRECT: return create_direct(op);
    case messagingpb::GROUP: return create_group(op);
    default: break;
  }
  return Status::invalid_argument("a conversation is DIRECT or GROUP");
}

Result<rsmpb::CommandResult> Applier::create_direct(const messagingpb::CreateConversation& op) {
  if (!op.conversation_id().empty() || !op.title().empty()) {
    return Status::invalid_argument("a direct conversation has a derived id and no title");
  }
  if (op.member_user_ids_size() != 1 || op.member_user_ids(0) == op.user_id()) {
    return Status::invalid_argument("a direct conversation names exactly one other user");
  }
  const std::string& peer = op.member_user_ids(0);
  HERALD_RETURN_IF_ERROR(require_user(peer).status());
  const std::string id = direct_conversation_id(op.user_id(), peer);
  HERALD_ASSIGN_OR_RETURN(auto existing, find_conversation(batch_, id));
  if (existing) {
    return payload_result(*existing, /*existed=*/true);
  }
  ConversationRecord conv = new_conversation(id, messagingpb::DIRECT, "", op.user_id());
  add_member(conv, std::min<std::string_view>(op.user_id(), peer), messagingpb::MEMBER, now_ms_);
  add_member(conv, std::max<std::string_view>(op.user_id(), peer), messagingpb::MEMBER, now_ms_);
  return open_conversation(conv);
}

Result<rsmpb::CommandResult> Applier::create_group(const messagingpb::CreateConversation& op) {
  const std::string& id = op.conversation_id();
  HERALD_RETURN_IF_ERROR(check_conversation_id(id));
  if (id.starts_with(kDirectIdPrefix)) {
    return Status::invalid_argument(
        fmt::format("a group id may not start with \"{}\"", kDirectIdPrefix));
  }
  HERALD_RETURN_IF_ERROR(check_text("a title", op.title(), kMaxTitleBytes));
  HERALD_ASSIGN_OR_RETURN(auto existing, find_conversation(batch_, id));
  if (existing) {
    return Status::already_exists(fmt::format("conversation \"{}\" exists", id));
  }
  ConversationRecord conv = new_conversation(id, messagingpb::GROUP, op.title(), op.user_id());
  add_member(conv, op.user_id(), messagingpb::OWNER, now_ms_);
  for (const std::string& member : op.member_user_ids()) {
    if (find_member(conv, member) == nullptr) {
      HERALD_RETURN_IF_ERROR(require_user(member).status());
      add_member(conv, member, messagingpb::MEMBER, now_ms_);
    }
  }
  return open_conversation(conv);
}

// Stores a new conversation, joins its members and tells each of them.
Result<rsmpb::CommandResult> Applier::open_conversation(const ConversationRecord& conv) {
  put(keys::conversation_key(conv.conversation_id()), conv);
  for (const Member& member : conv.members()) {
    join(conv, member.user_id());
  }
  ChangeRecord change =
      make_change(messagingpb::CONVERSATION_CREATED, conv.conversation_id(), conv.created_by());
  change.set_title(conv.title());
  HERALD_RETURN_IF_ERROR(fan_out(conv, change));
  return payload_result(conv);
}

// A new member's state and chat-index entry. Nothing from before the join counts as unread.
void Applier::join(const ConversationRecord& conv, std::string_view user_id) {
  MemberState state;
  state.set_user_id(std::string(user_id));
  state.set_conversation_id(conv.conversation_id());
  state.set_read_cursor(conv.last_seq());
  state.set_receipted_up_to(conv.last_seq());
  state.set_delivered_up_to(conv.last_seq());
  state.set_index_ms(now_ms_);
  put(keys::member_key(user_id, conv.conversation_id()), state);
  ChatEntry entry;
  entry.set_conversation_id(conv.conversation_id());
  entry.set_activity_ms(now_ms_);
  entry.set_last_seq(conv.last_seq());
  put(keys::chat_key(user_id, now_ms_, conv.conversation_id()), entry);
}

// Removes a former member's state and chat-index entry. (Its devices' marks stay: they are
// found only through a membership and stay valid should the user rejoin.)
Status Applier::part(std::string_view user_id, std::string_view conversation_id) {
  HERALD_ASSIGN_OR_RETURN(MemberState state, member_state(user_id, conversation_id));
  del(keys::chat_key(user_id, state.index_ms(), conversation_id));
  del(keys::member_key(user_id, conversation_id));
  return Status::ok_status();
}

// Stores a conversation whose membership changed and tells every member now in it.
Status Applier::save_membership(ConversationRecord& conv, const ChangeRecord& change) {
  HERALD_ASSERT(conv.members_size() <= static_cast<int>(kMaxGroupMembers), "groups are bounded");
  conv.set_updated_ms(now_ms_);
  put(keys::conversation_key(conv.conversation_id()), conv);
  return fan_out(conv, change);
}

Result<rsmpb::CommandResult> Applier::rename(const messagingpb::RenameConversation& op) {
  HERALD_RETURN_IF_ERROR(check_text("a title", op.title(), kMaxTitleBytes));
  HERALD_ASSIGN_OR_RETURN(ConversationRecord conv,
                          authorized(op.user_id(), op.conversation_id(), Authority::kManager));
  HERALD_RETURN_IF_ERROR(require_group(conv));
  conv.set_title(op.title());
  ChangeRecord change =
      make_change(messagingpb::CONVERSATION_RENAMED, conv.conversation_id(), op.user_id());
  change.set_title(op.title());
  HERALD_RETURN_IF_ERROR(save_membership(conv, change));
  return payload_result(conv);
}

Result<rsmpb::CommandResult> Applier::add_members(const messagingpb::AddMembers& op) {
  if (op.member_user_ids().empty() ||
      static_cast<std::size_t>(op.member_user_ids_size()) > kMaxMembersPerCommand) {
    return Status::invalid_argument(
        fmt::format("AddMembers names 1 to {} users", kMaxMembersPerCommand));
  }
  for (const std::string& member : op.member_user_ids()) {
    HERALD_RETURN_IF_ERROR(check_id("a member's user id", member));
  }
  HERALD_ASSIGN_OR_RETURN(ConversationRecord conv,
                          authorized(op.user_id(), op.conversation_id(), Authority::kManager));
  HERALD_RETURN_IF_ERROR(require_group(conv));
  ChangeRecord change =
      make_change(messagingpb::MEMBERS_ADDED, conv.conversation_id(), op.user_id());
  for (const std::string& member : op.member_user_ids()) {
    if (find_member(conv, member) != nullptr) {
      continue;  // already in (or named twice)
    }
    HERALD_RETURN_IF_ERROR(require_user(member).status());
    if (static_cast<std::size_t>(conv.members_size()) >= kMaxGroupMembers) {
      return Status::resource_exhausted(fmt::format("conversation \"{}\" has {} members, the bound",
                                                    conv.conversation_id(), kMaxGroupMembers));
    }
    add_member(conv, member, messagingpb::MEMBER, now_ms_);
    join(conv, member);
    change.add_user_ids(member);
  }
  if (change.user_ids().empty()) {
    return payload_result(conv);
  }
  HERALD_RETURN_IF_ERROR(save_membership(conv, change));
  return payload_result(conv);
}

Result<rsmpb::CommandResult> Applier::remove_member(const messagingpb::RemoveMember& op) {
  const std::string& member = op.member_user_id();
  HERALD_RETURN_IF_ERROR(check_id("the member's user id", member));
  if (member == op.user_id()) {
    return Status::invalid_argument("to leave a conversation, use LeaveConversation");
  }
  HERALD_ASSIGN_OR_RETURN(ConversationRecord conv,
                          authorized(op.user_id(), op.conversation_id(), Authority::kManager));
  HERALD_RETURN_IF_ERROR(require_group(conv));
  const Member* target = find_member(conv, member);
  if (target == nullptr) {
    return Status::not_found(fmt::format("user \"{}\" is not a member of conversation \"{}\"",
                                         member, conv.conversation_id()));
  }
  if (target->role() == messagingpb::OWNER) {
    return denied("an admin cannot remove the owner");
  }
  ChangeRecord change =
      make_change(messagingpb::MEMBER_REMOVED, conv.conversation_id(), op.user_id());
  change.add_user_ids(member);
  HERALD_RETURN_IF_ERROR(append_change(member, change));  // the removed member's devices learn it
  erase_member(conv, member);
  HERALD_RETURN_IF_ERROR(part(member, conv.conversation_id()));
  HERALD_RETURN_IF_ERROR(save_membership(conv, change));
  return payload_result(conv);
}

Result<rsmpb::CommandResult> Applier::leave(const messagingpb::LeaveConversation& op) {
  HERALD_ASSIGN_OR_RETURN(ConversationRecord conv,
                          authorized(op.user_id(), op.conversation_id(), Authority::kMember));
  HERALD_RETURN_IF_ERROR(require_group(conv));
  const bool was_owner = find_member(conv, op.user_id())->role() == messagingpb::OWNER;
  ChangeRecord left = make_change(messagingpb::MEMBER_LEFT, conv.conversation_id(), op.user_id());
  left.add_user_ids(op.user_id());
  HERALD_RETURN_IF_ERROR(append_change(op.user_id(), left));  // the leaver's other devices
  erase_member(conv, op.user_id());
  HERALD_RETURN_IF_ERROR(part(op.user_id(), conv.conversation_id()));
  std::optional<ChangeRecord> promoted;
  if (was_owner && !conv.members().empty()) {
    Member& heir = successor(conv);
    heir.set_role(messagingpb::OWNER);
    promoted = make_change(messagingpb::ROLE_CHANGED, conv.conversation_id(), op.user_id());
    promoted->add_user_ids(heir.user_id());
    promoted->set_role(messagingpb::OWNER);
  }
  HERALD_RETURN_IF_ERROR(save_membership(conv, left));
  if (promoted) {
    HERALD_RETURN_IF_ERROR(fan_out(conv, *promoted));
  }
  return payload_result(conv);
}

Result<rsmpb::CommandResult> Applier::set_role(const messagingpb::SetRole& op) {
  const std::string& member = op.member_user_id();
  HERALD_RETURN_IF_ERROR(check_id("the member's user id", member));
  if (op.role() != messagingpb::OWNER && op.role() != messagingpb::ADMIN &&
      op.role() != messagingpb::MEMBER) {
    return Status::invalid_argument("a role is OWNER, ADMIN or MEMBER");
  }
  HERALD_ASSIGN_OR_RETURN(ConversationRecord conv,
                          authorized(op.user_id(), op.conversation_id(), Authority::kOwner));
  HERALD_RETURN_IF_ERROR(require_group(conv));
  if (member == op.user_id()) {
    return Status::failed_precondition(
        "the owner keeps the role until making another member OWNER");
  }
  Member* target = mutable_member(conv, member);
  if (target == nullptr) {
    return Status::not_found(fmt::format("user \"{}\" is not a member of conversation \"{}\"",
                                         member, conv.conversation_id()));
  }
  if (target->role() == op.role()) {
    return payload_result(conv);
  }
  target->set_role(op.role());
  const bool hand_over = op.role() == messagingpb::OWNER;
  if (hand_over) {  // the old owner becomes an admin
    mutable_member(conv, op.user_id())->set_role(messagingpb::ADMIN);
  }
  ChangeRecord change =
      make_change(messagingpb::ROLE_CHANGED, conv.conversation_id(), op.user_id());
  change.add_user_ids(member);
  change.set_role(op.role());
  HERALD_RETURN_IF_ERROR(save_membership(conv, change));
  if (hand_over) {
    change.set_user_ids(0, op.user_id());
    change.set_role(messagingpb::ADMIN);
    HERALD_RETURN_IF_ERROR(fan_out(conv, change));
  }
  return payload_result(conv);
}

// ---------------------------------------------------------------- preferences

Result<rsmpb::CommandResult> Applier::set_preferences(const messagingpb::SetPreferences& op) {
  HERALD_RETURN_IF_ERROR(check_id("a user id", op.user_id()));
  if (op.has_email_delay_ms()) {
    HERALD_RETURN_IF_ERROR(check_email_delay(op.email_delay_ms()));
  }
  return op.conversation_id().empty() ? set_user_preferences(op) : set_conversation_preferences(op);
}

Result<rsmpb::CommandResult> Applier::set_user_preferences(const messagingpb::SetPreferences& op) {
  if (op.has_muted() || op.clear_overrides()) {
    return Status::invalid_argument("muting and overrides belong to a conversation");
  }
  HERALD_ASSIGN_OR_RETURN(UserRecord user, require_user(op.user_id()));
  UserPreferences* prefs = user.mutable_preferences();
  if (op.has_hide_previews()) {
    prefs->set_hide_previews(op.hide_previews());
  }
  if (op.has_push_enabled()) {
    prefs->set_push_enabled(op.push_enabled());
  }
  if (op.has_email_fallback()) {
    prefs->set_email_fallback(op.email_fallback());
  }
  if (op.has_email_delay_ms()) {
    prefs->set_email_delay_ms(op.email_delay_ms());
  }
  put(keys::user_key(op.user_id()), user);
  HERALD_RETURN_IF_ERROR(
      append_change(op.user_id(), make_change(messagingpb::PREFERENCES_CHANGED, "", op.user_id())));
  return ok_result();
}

Result<rsmpb::CommandResult> Applier::set_conversation_preferences(
    const messagingpb::SetPreferences& op) {
  if (op.has_hide_previews()) {
    return Status::invalid_argument(
        "hiding previews is a setting of the user, not of a conversation");
  }
  HERALD_ASSIGN_OR_RETURN(ConversationRecord conv,
                          authorized(op.user_id(), op.conversation_id(), Authority::kMember));
  HERALD_ASSIGN_OR_RETURN(MemberState state, member_state(op.user_id(), op.conversation_id()));
  ConversationPreferences* prefs = state.mutable_preferences();
  if (op.clear_overrides()) {
    const bool muted = prefs->muted();
    prefs->Clear();
    prefs->set_muted(muted);
  }
  if (op.has_muted()) {
    prefs->set_muted(op.muted());
  }
  if (op.has_push_enabled()) {
    prefs->set_push_enabled(op.push_enabled());
  }
  if (op.has_email_fallback()) {
    prefs->set_email_fallback(op.email_fallback());
  }
  if (op.has_email_delay_ms()) {
    prefs->set_email_delay_ms(op.email_delay_ms());
  }
  put(keys::member_key(op.user_id(), op.conversation_id()), state);
  HERALD_RETURN_IF_ERROR(append_change(
      op.user_id(),
      make_change(messagingpb::PREFERENCES_CHANGED, conv.conversation_id(), op.user_id())));
  return ok_result();
}

// ---------------------------------------------------------------- messages

Status check_send(const messagingpb::SendMessage& op) {
  HERALD_RETURN_IF_ERROR(check_conversation_id(op.conversation_id()));
  HERALD_RETURN_IF_ERROR(check_body(op.body()));
  if (!op.sender_user_id().empty()) {
    HERALD_RETURN_IF_ERROR(check_id("the sender's user id", op.sender_user_id()));
    HERALD_RETURN_IF_ERROR(check_id("the sender's device id", op.sender_device_id()));
    return check_client_message_id(op.client_message_id());
  }
  if (!op.sender_device_id().empty()) {
    return Status::invalid_argument("a system message has no sender device");
  }
  return op.client_message_id().empty() ? Status::ok_status()
                                        : check_client_message_id(op.client_message_id());
}

Result<rsmpb::CommandResult> Applier::send(const messagingpb::SendMessage& op) {
  HERALD_RETURN_IF_ERROR(check_send(op));
  const bool system = op.sender_user_id().empty();
  HERALD_ASSIGN_OR_RETURN(ConversationRecord conv, require_conversation(op.conversation_id()));
  // A retransmission answers what the first send did, even if the sender has left since.
  const std::string dedup_key =
      keys::dedup_key(op.conversation_id(), op.sender_device_id(), op.client_message_id());
  messagingpb::SendResult result;
  if (!op.client_message_id().empty()) {
    HERALD_ASSIGN_OR_RETURN(auto dedup, load<messagingpb::SendDedup>(batch_, dedup_key, "dedup"));
    HERALD_ASSIGN_OR_RETURN(const messagingpb::RetentionSettings retention, retention());
    // A record past the window is not swept yet: the send is new, and overwrites it.
    if (dedup && now_ms_ - dedup->wall_ms() < retention.dedup_window_ms()) {
      result.set_seq(dedup->seq());
      return payload_result(result, /*existed=*/true);
    }
  }
  if (!system) {
    HERALD_RETURN_IF_ERROR(check_authority(conv, op.sender_user_id(), Authority::kMember));
    HERALD_RETURN_IF_ERROR(require_device_of(op.sender_user_id(), op.sender_device_id()).status());
  }
  MessageRecord message;
  message.set_conversation_id(op.conversation_id());
  message.set_seq(conv.last_seq() + 1);
  message.set_kind(system ? messagingpb::SYSTEM_MESSAGE : messagingpb::USER_MESSAGE);
  message.set_sender_user_id(op.sender_user_id());
  message.set_sender_device_id(op.sender_device_id());
  message.set_client_message_id(op.client_message_id());
  message.set_wall_ms(now_ms_);
  message.set_body(op.body());
  put(keys::message_key(op.conversation_id(), message.seq()), message);
  HERALD_RETURN_IF_ERROR(enqueue_message(message));
  result.set_seq(message.seq());
  if (!op.client_message_id().empty()) {
    messagingpb::SendDedup dedup;
    dedup.set_seq(message.seq());
    dedup.set_wall_ms(now_ms_);
    put(dedup_key, dedup);
    HERALD_RETURN_IF_ERROR(remember_dedup(dedup_key));
  }
  conv.set_last_seq(message.seq());
  conv.set_last_message_ms(now_ms_);
  conv.set_updated_ms(now_ms_);
  put(keys::conversation_key(conv.conversation_id()), conv);
  const std::string preview = preview_of(op.body());
  for (const Member& member : conv.members()) {
    HERALD_RETURN_IF_ERROR(deliver(conv, message, preview, member.user_id()));
  }
  DomainEvent event;
  event.type = kEventMessageSent;
  event.key = fmt::format("{}/{}", message.conversation_id(), message.seq());
  event.conversation_id = message.conversation_id();
  event.seq = message.seq();
  event.sender_user_id = message.sender_user_id();
  event.device_id = message.sender_device_id();
  HERALD_RETURN_IF_ERROR(sink_.emit(batch_, now_ms_, event));
  log::debug({log::conversation(message.conversation_id()), log::seq(message.seq()),
              log::user(message.sender_user_id()), log::device(message.sender_device_id())},
             "message {}#{} stored (from {}, {} members)", message.conversation_id(), message.seq(),
             system ? std::string_view("the system") : std::string_view(message.sender_user_id()),
             conv.members_size());
  return payload_result(result);
}

// One member's share of a new message: the chat-index entry moves to the top, the change is
// appended, and a recipient's delivery workflow starts. The sender has read their own message.
Status Applier::deliver(const ConversationRecord& conv, const MessageRecord& message,
                        std::string_view preview, std::string_view user_id) {
  HERALD_ASSIGN_OR_RETURN(MemberState state, member_state(user_id, conv.conversation_id()));
  del(keys::chat_key(user_id, state.index_ms(), conv.conversation_id()));
  ChatEntry entry;
  entry.set_conversation_id(conv.conversation_id());
  entry.set_activity_ms(now_ms_);
  entry.set_last_seq(message.seq());
  entry.set_last_sender_user_id(message.sender_user_id());
  entry.set_preview(std::string(preview));
  put(keys::chat_key(user_id, now_ms_, conv.conversation_id()), entry);
  state.set_index_ms(now_ms_);
  const bool own = user_id == message.sender_user_id();
  if (own) {
    state.set_read_cursor(message.seq());
  }
  put(keys::member_key(user_id, conv.conversation_id()), state);
  ChangeRecord change =
      make_change(messagingpb::MESSAGE_NEW, conv.conversation_id(), message.sender_user_id());
  change.set_seq(message.seq());
  HERALD_RETURN_IF_ERROR(append_change(user_id, change));
  return own ? Status::ok_status() : start_delivery(message, preview, state);
}

static_assert(kMaxRetentionMs <= kMaxDeliveryLifetimeMs,
              "every delivery lifetime the domain allows passes check_delivery_input");

Status Applier::start_delivery(const MessageRecord& message, std::string_view preview,
                               const MemberState& state) {
  HERALD_ASSIGN_OR_RETURN(UserRecord user,
                          referenced(find_user(batch_, state.user_id()), "user", state.user_id()));
  const EffectivePreferences prefs = effective(user.preferences(), state.preferences());
  messagingpb::DeliveryInput input;
  input.set_conversation_id(message.conversation_id());
  input.set_seq(message.seq());
  input.set_sender_user_id(message.sender_user_id());
  input.set_sender_device_id(message.sender_device_id());
  input.set_recipient_user_id(user.user_id());
  *input.mutable_device_ids() = user.device_ids();
  input.set_preview(prefs.hide_previews ? std::string(kHiddenPreviewText) : std::string(preview));
  input.set_push_after_ms(kPushAfterMs);
  input.set_escalate_after_ms(prefs.email_delay_ms);
  input.set_push_enabled(prefs.push_enabled && !prefs.muted);
  input.set_email_fallback(prefs.email_fallback && !prefs.muted);
  HERALD_ASSIGN_OR_RETURN(const messagingpb::RetentionSettings retention, retention());
  input.set_close_after_ms(retention.delivery_lifetime_ms());
  return sink_.start(batch_, now_ms_,
                     delivery_workflow_id(message.conversation_id(), message.seq(), user.user_id()),
                     kDeliveryType, input.SerializeAsString());
}

Result<rsmpb::CommandResult> Applier::edit(const messagingpb::EditMessage& op) {
  HERALD_RETURN_IF_ERROR(check_body(op.body()));
  HERALD_ASSIGN_OR_RETURN(auto target, authored(op.user_id(), op.conversation_id(), op.seq()));
  auto& [conv, message] = target;
  if (message.deleted()) {
    return Status::failed_precondition(fmt::format("message {} of conversation \"{}\" is deleted",
                                                   op.seq(), op.conversation_id()));
  }
  message.set_body(op.body());
  message.set_edited(true);
  message.set_edited_ms(now_ms_);
  return revise(conv, message, messagingpb::MESSAGE_EDITED, op.user_id());
}

Result<rsmpb::CommandResult> Applier::erase(const messagingpb::DeleteMessage& op) {
  HERALD_ASSIGN_OR_RETURN(auto target, authored(op.user_id(), op.conversation_id(), op.seq()));
  auto& [conv, message] = target;
  if (message.deleted()) {
    return ok_result();
  }
  message.clear_body();
  message.set_deleted(true);
  message.set_deleted_ms(now_ms_);
  HERALD_RETURN_IF_ERROR(cancel_deliveries(conv, message, kMessageDeletedReason));
  return revise(conv, message, messagingpb::MESSAGE_DELETED, op.user_id());
}

// Nobody is pushed or emailed about a message that no longer exists: its pending deliveries end
// (a delivery that already closed, or never started, is not found, which is no error). They were
// started for the members of the send; one who left since keeps theirs.
Status Applier::cancel_deliveries(const ConversationRecord& conv, const MessageRecord& message,
                                  std::string_view reason) {
  for (const Member& member : conv.members()) {
    if (member.user_id() == message.sender_user_id()) continue;
    Status canceled = sink_.cancel(
        batch_, now_ms_,
        delivery_workflow_id(conv.conversation_id(), message.seq(), member.user_id()), reason);
    if (!canceled.ok() && canceled.code() != Code::kNotFound) return canceled;
  }
  return Status::ok_status();
}

// Stores an edited or deleted message and tells every member.
Result<rsmpb::CommandResult> Applier::revise(ConversationRecord& conv, const MessageRecord& message,
                                             ChangeKind kind, std::string_view actor_user_id) {
  put(keys::message_key(conv.conversation_id(), message.seq()), message);
  conv.set_updated_ms(now_ms_);
  put(keys::conversation_key(conv.conversation_id()), conv);
  if (message.seq() == conv.last_seq()) {
    HERALD_RETURN_IF_ERROR(refresh_previews(conv, message));
  }
  ChangeRecord change = make_change(kind, conv.conversation_id(), actor_user_id);
  change.set_seq(message.seq());
  HERALD_RETURN_IF_ERROR(fan_out(conv, change));
  return ok_result();
}

// The chat-index entries that show `message` show its new text.
Status Applier::refresh_previews(const ConversationRecord& conv, const MessageRecord& message) {
  const std::string preview = preview_of(message.body());
  for (const Member& member : conv.members()) {
    HERALD_ASSIGN_OR_RETURN(MemberState state,
                            member_state(member.user_id(), conv.conversation_id()));
    const std::string key =
        keys::chat_key(member.user_id(), state.index_ms(), conv.conversation_id());
    HERALD_ASSIGN_OR_RETURN(ChatEntry entry, referenced(load<ChatEntry>(batch_, key, "chat entry"),
                                                        "chat entry", member.user_id()));
    if (entry.last_seq() == message.seq()) {
      entry.set_preview(preview);
      put(key, entry);
    }
  }
  return Status::ok_status();
}

// ---------------------------------------------------------------- delivery and read state

// Signals the delivery workflow of (conversation, seq, user). kNotFound (closed, or never
// started, as for the user's own messages) is no error.
Status Applier::signal(std::string_view conversation_id, std::uint64_t seq,
                       std::string_view user_id, std::string_view name,
                       std::string_view device_id) {
  messagingpb::DeviceSignal payload;
  payload.set_device_id(std::string(device_id));
  payload.set_time_ms(now_ms_);
  Status status = sink_.signal(batch_, now_ms_, delivery_workflow_id(conversation_id, seq, user_id),
                               name, payload.SerializeAsString());
  return status.code() == Code::kNotFound ? Status::ok_status() : status;
}

// The device's mark moves first; the user's delivered mark (the furthest of the user's devices)
// follows it, and only its advance over messages of other senders tells those senders.
Result<rsmpb::CommandResult> Applier::ack_delivery(const messagingpb::AckDelivery& op) {
  HERALD_ASSIGN_OR_RETURN(ConversationRecord conv,
                          device_conversation(op.user_id(), op.device_id(), op.conversation_id()));
  HERALD_RETURN_IF_ERROR(check_within(conv, op.seq()));
  const std::string key = keys::marks_key(op.user_id(), op.device_id(), op.conversation_id());
  HERALD_ASSIGN_OR_RETURN(auto stored, load<DeviceMarks>(batch_, key, "device marks"));
  DeviceMarks marks = stored.value_or(DeviceMarks());
  const std::uint64_t previous = marks.delivered_up_to();
  if (op.seq() <= previous) {
    return mark_result(previous);
  }
  HERALD_ASSIGN_OR_RETURN(MemberState state, member_state(op.user_id(), op.conversation_id()));
  const std::uint64_t user_mark = state.delivered_up_to();
  std::uint64_t up_to = std::min(op.seq(), previous + kMaxSignalsPerCommand);
  std::vector<std::string> senders;  // to get a delivery receipt: distinct, in order of first seq
  // Expired messages are gone, and their deliveries were canceled: nothing to signal.
  for (std::uint64_t seq = std::max(previous, conv.expired_up_to()) + 1; seq <= up_to; ++seq) {
    HERALD_ASSIGN_OR_RETURN(MessageRecord message, stored_message(op.conversation_id(), seq));
    const std::string& sender = message.sender_user_id();
    if (seq > user_mark && !sender.empty() && sender != op.user_id() &&
        !contains(senders, sender)) {
      if (senders.size() == kMaxDeliveryReceiptsPerAck) {
        up_to = seq - 1;  // past the first message, since a sender was taken: progress is made
        break;
      }
      senders.push_back(sender);
    }
    if (sender != op.user_id()) {
      HERALD_RETURN_IF_ERROR(
          signal(op.conversation_id(), seq, op.user_id(), kDeliveredSignal, op.device_id()));
    }
  }
  marks.set_delivered_up_to(up_to);
  put(key, marks);
  if (!stored) HERALD_RETURN_IF_ERROR(reclaim_devices(Reclaim::kMarks));  // a new record pays
  if (up_to > user_mark) {
    state.set_delivered_up_to(up_to);
    put(keys::member_key(op.user_id(), op.conversation_id()), state);
    ChangeRecord receipt =
        make_change(messagingpb::DELIVERY_RECEIPT, op.conversation_id(), op.user_id());
    receipt.set_seq(up_to);
    for (const std::string& sender : senders) {
      if (find_member(conv, sender) != nullptr) {  // a sender who left no longer follows it
        HERALD_RETURN_IF_ERROR(append_change(sender, receipt));
      }
    }
  }
  log::debug({log::conversation(op.conversation_id()), log::seq(up_to), log::user(op.user_id()),
              log::device(op.device_id())},
             "device {}/{} acknowledged {} up to #{}", op.user_id(), op.device_id(),
             op.conversation_id(), up_to);
  return mark_result(up_to);
}

// The marker is the device's own report, recorded as reported: the saga's next step (the read
// cursor) is the one that refuses a seq beyond the conversation's last, and compensates this.
Result<rsmpb::CommandResult> Applier::set_read_marker(const messagingpb::SetReadMarker& op) {
  HERALD_RETURN_IF_ERROR(
      device_conversation(op.user_id(), op.device_id(), op.conversation_id()).status());
  const std::string key = keys::marks_key(op.user_id(), op.device_id(), op.conversation_id());
  HERALD_ASSIGN_OR_RETURN(auto stored, load<DeviceMarks>(batch_, key, "device marks"));
  DeviceMarks marks = stored.value_or(DeviceMarks());
  messagingpb::ReadMarkerResult result;
  if (!op.idempotency_key().empty()) {
    for (const auto& answer : marks.recent_answers()) {
      if (answer.idempotency_key() == op.idempotency_key()) {
        result.set_previous(answer.previous());
        result.set_marker(answer.marker());
        return payload_result(result);  // a step run again: its first answer
      }
    }
  }
  result.set_previous(marks.read_marker());
  result.set_marker(std::max(marks.read_marker(), op.seq()));
  marks.set_read_marker(result.marker());
  if (!op.idempotency_key().empty()) {
    auto* answers = marks.mutable_recent_answers();
    if (static_cast<std::size_t>(answers->size()) >= kMaxRecentMarkAnswers) {
      answers->erase(answers->begin());
    }
    auto* answer = answers->Add();
    answer->set_idempotency_key(op.idempotency_key());
    answer->set_previous(result.previous());
    answer->set_marker(result.marker());
  }
  put(key, marks);
  if (!stored) HERALD_RETURN_IF_ERROR(reclaim_devices(Reclaim::kMarks));  // a new record pays
  return payload_result(result);
}

Result<rsmpb::CommandResult> Applier::restore_read_marker(
    const messagingpb::RestoreReadMarker& op) {
  HERALD_RETURN_IF_ERROR(check_id("a user id", op.user_id()));
  HERALD_RETURN_IF_ERROR(check_id("a device id", op.device_id()));
  HERALD_RETURN_IF_ERROR(check_conversation_id(op.conversation_id()));
  if (op.previous() > op.marker()) {
    return Status::invalid_argument("a restored read marker goes back, never forward");
  }
  const std::string key = keys::marks_key(op.user_id(), op.device_id(), op.conversation_id());
  HERALD_ASSIGN_OR_RETURN(auto marks, load<DeviceMarks>(batch_, key, "device marks"));
  if (marks && marks->read_marker() == op.marker()) {
    marks->set_read_marker(op.previous());
    put(key, *marks);
  }
  return ok_result();
}

Result<rsmpb::CommandResult> Applier::advance_read_cursor(
    const messagingpb::AdvanceReadCursor& op) {
  if (!op.device_id().empty()) {
    HERALD_RETURN_IF_ERROR(check_id("a device id", op.device_id()));
  }
  HERALD_ASSIGN_OR_RETURN(ConversationRecord conv,
                          authorized(op.user_id(), op.conversation_id(), Authority::kMember));
  HERALD_RETURN_IF_ERROR(check_within(conv, op.seq()));
  HERALD_ASSIGN_OR_RETURN(MemberState state, member_state(op.user_id(), op.conversation_id()));
  if (op.seq() <= state.read_cursor()) {
    return mark_result(state.read_cursor());
  }
  state.set_read_cursor(op.seq());
  put(keys::member_key(op.user_id(), op.conversation_id()), state);
  ChangeRecord change = make_change(messagingpb::READ_CURSOR, op.conversation_id(), op.user_id());
  change.set_seq(op.seq());
  change.set_device_id(op.device_id());
  HERALD_RETURN_IF_ERROR(append_change(op.user_id(), change));
  return mark_result(op.seq());
}

Result<rsmpb::CommandResult> Applier::publish_receipts(const messagingpb::PublishReadReceipts& op) {
  if (!op.device_id().empty()) {
    HERALD_RETURN_IF_ERROR(check_id("a device id", op.device_id()));
  }
  HERALD_ASSIGN_OR_RETURN(ConversationRecord conv,
                          authorized(op.user_id(), op.conversation_id(), Authority::kMember));
  HERALD_ASSIGN_OR_RETURN(MemberState state, member_state(op.user_id(), op.conversation_id()));
  const std::uint64_t target = std::min(op.up_to_seq(), state.read_cursor());
  messagingpb::ReceiptResult result;
  result.set_receipted_up_to(state.receipted_up_to());
  if (target <= state.receipted_up_to()) {
    result.set_complete(true);
    return payload_result(result);
  }
  const std::uint64_t end = std::min(target, state.receipted_up_to() + kMaxSignalsPerCommand);
  std::vector<std::string> senders;  // distinct, in order of first appearance
  // Expired messages are gone, and their deliveries were canceled: nothing to signal.
  for (std::uint64_t seq = std::max(state.receipted_up_to(), conv.expired_up_to()) + 1; seq <= end;
       ++seq) {
    HERALD_ASSIGN_OR_RETURN(MessageRecord message, stored_message(op.conversation_id(), seq));
    if (message.sender_user_id() == op.user_id()) {
      continue;
    }
    HERALD_RETURN_IF_ERROR(
        signal(op.conversation_id(), seq, op.user_id(), kReadSignal, op.device_id()));
    if (!message.sender_user_id().empty() && !contains(senders, message.sender_user_id())) {
      senders.push_back(message.sender_user_id());
    }
  }
  state.set_receipted_up_to(end);
  put(keys::member_key(op.user_id(), op.conversation_id()), state);
  ChangeRecord receipt = make_change(messagingpb::READ_RECEIPT, op.conversation_id(), op.user_id());
  receipt.set_seq(end);
  for (const std::string& sender : senders) {
    if (find_member(conv, sender) != nullptr) {  // a sender who left no longer follows it
      HERALD_RETURN_IF_ERROR(append_change(sender, receipt));
    }
  }
  result.set_receipted_up_to(end);
  result.set_complete(end == target);
  log::debug({log::conversation(op.conversation_id()), log::seq(end), log::user(op.user_id()),
              log::device(op.device_id())},
             "{} read {} up to #{}: receipts published", op.user_id(), op.conversation_id(), end);
  return payload_result(result);
}

// ---------------------------------------------------------------- change streams

Status Applier::append_change(std::string_view user_id, ChangeRecord change) {
  HERALD_ASSIGN_OR_RETURN(UserRecord user, referenced(find_user(batch_, user_id), "user", user_id));
  const std::uint64_t seq = user.last_change_seq() + 1;
  change.set_change_seq(seq);
  change.set_time_ms(now_ms_);
  put(keys::change_key(user_id, seq), change);
  user.set_last_change_seq(seq);
  HERALD_RETURN_IF_ERROR(trim_changes(user));
  if (!user.trim_queued()) HERALD_RETURN_IF_ERROR(queue_stream_trim(user));
  put(keys::user_key(user_id), user);
  std::string conversation_id = change.conversation_id();
  notices_.push_back(
      ChangeNotice{std::string(user_id), seq, std::move(conversation_id), std::move(change)});
  return Status::ok_status();
}

Status Applier::trim_changes(UserRecord& user) {
  HERALD_ASSIGN_OR_RETURN(const messagingpb::RetentionSettings retention, retention());
  const std::int64_t horizon_ms = now_ms_ - retention.change_retention_ms();
  std::uint64_t first = std::max<std::uint64_t>(user.first_change_seq(), 1);
  // The newest entry always stays, so the stream's cursor is never trimmed away.
  for (std::size_t n = 0; n < kMaxChangeTrimsPerAppend && first < user.last_change_seq(); ++n) {
    const std::string key = keys::change_key(user.user_id(), first);
    HERALD_ASSIGN_OR_RETURN(auto oldest, load<ChangeRecord>(batch_, key, "change"));
    if (oldest && oldest->time_ms() >= horizon_ms) break;
    if (oldest) del(key);
    ++first;
  }
  if (first > 1) user.set_first_change_seq(first);
  return Status::ok_status();
}

Status Applier::queue_stream_trim(UserRecord& user) {
  HERALD_ASSIGN_OR_RETURN(auto stored, load<messagingpb::StreamQueue>(
                                           batch_, keys::stream_queue_key(), "stream queue"));
  messagingpb::StreamQueue queue = stored.value_or(messagingpb::StreamQueue());
  messagingpb::StreamTrim entry;
  entry.set_user_id(user.user_id());
  entry.set_wall_ms(now_ms_);
  put(keys::stream_trim_key(queue.tail()), entry);
  queue.set_tail(queue.tail() + 1);
  put(keys::stream_queue_key(), queue);
  user.set_trim_queued(true);
  return Status::ok_status();
}

// Queue times only grow along the queue (times in the log only grow), so the head is the first
// due. The head's stream is trimmed over as many commands as it needs.
Status Applier::trim_idle_streams() {
  HERALD_ASSIGN_OR_RETURN(auto stored, load<messagingpb::StreamQueue>(
                                           batch_, keys::stream_queue_key(), "stream queue"));
  if (!stored || stored->head() == stored->tail()) return Status::ok_status();
  if (stored->head() > stored->tail()) {
    return Status::corruption("the stream-trim queue's bounds are out of order");
  }
  messagingpb::StreamQueue queue = *stored;
  HERALD_ASSIGN_OR_RETURN(const messagingpb::RetentionSettings retention, retention());
  const std::int64_t horizon_ms = now_ms_ - retention.change_retention_ms();
  const std::string entry_key = keys::stream_trim_key(queue.head());
  HERALD_ASSIGN_OR_RETURN(
      const messagingpb::StreamTrim entry,
      referenced(load<messagingpb::StreamTrim>(batch_, entry_key, "stream trim"), "stream trim",
                 std::to_string(queue.head())));
  if (entry.wall_ms() >= horizon_ms) return Status::ok_status();
  HERALD_ASSIGN_OR_RETURN(UserRecord user,
                          referenced(find_user(batch_, entry.user_id()), "user", entry.user_id()));
  std::uint64_t first = std::max<std::uint64_t>(user.first_change_seq(), 1);
  bool trimmed_all_due = false;
  for (std::size_t n = 0; n < kMaxIdleStreamTrimsPerCommand; ++n) {
    if (first >= user.last_change_seq()) {  // the newest entry always stays
      trimmed_all_due = true;
      break;
    }
    const std::string key = keys::change_key(user.user_id(), first);
    HERALD_ASSIGN_OR_RETURN(auto oldest, load<ChangeRecord>(batch_, key, "change"));
    if (oldest && oldest->time_ms() >= horizon_ms) {
      trimmed_all_due = true;
      break;
    }
    if (oldest) del(key);
    ++first;
  }
  if (first > 1) user.set_first_change_seq(first);
  if (trimmed_all_due) {
    del(entry_key);
    queue.set_head(queue.head() + 1);
    put(keys::stream_queue_key(), queue);
    user.set_trim_queued(false);
    // Entries within the window remain: they are due one window from now at the latest.
    if (first < user.last_change_seq()) HERALD_RETURN_IF_ERROR(queue_stream_trim(user));
  }
  put(keys::user_key(user.user_id()), user);
  return Status::ok_status();
}

Status Applier::remember_dedup(const std::string& dedup_key) {
  HERALD_ASSIGN_OR_RETURN(auto stored,
                          load<messagingpb::DedupQueue>(batch_, keys::dedup_queue_key(), "queue"));
  messagingpb::DedupQueue queue = stored.value_or(messagingpb::DedupQueue());
  messagingpb::DedupExpiry entry;
  entry.set_dedup_key(dedup_key);
  entry.set_wall_ms(now_ms_);
  put(keys::dedup_expiry_key(queue.tail()), entry);
  queue.set_tail(queue.tail() + 1);
  HERALD_ASSIGN_OR_RETURN(const messagingpb::RetentionSettings retention, retention());
  const std::int64_t horizon_ms = now_ms_ - retention.dedup_window_ms();
  for (std::size_t n = 0; n < kMaxDedupExpiriesPerSend && queue.head() < queue.tail(); ++n) {
    const std::string key = keys::dedup_expiry_key(queue.head());
    HERALD_ASSIGN_OR_RETURN(auto expiry, load<messagingpb::DedupExpiry>(batch_, key, "expiry"));
    if (expiry && expiry->wall_ms() >= horizon_ms) break;
    if (expiry) {
      HERALD_ASSIGN_OR_RETURN(auto dedup,
                              load<messagingpb::SendDedup>(batch_, expiry->dedup_key(), "dedup"));
      // A send after the window rewrote the record: it has a queue entry of its own.
      if (dedup && dedup->wall_ms() == expiry->wall_ms()) del(expiry->dedup_key());
      del(key);
    }
    queue.set_head(queue.head() + 1);
  }
  put(keys::dedup_queue_key(), queue);
  return Status::ok_status();
}

// ---------------------------------------------------------------- removed devices

Result<messagingpb::DeviceExpiry> Applier::queued_device(std::uint64_t n) {
  return referenced(
      load<messagingpb::DeviceExpiry>(batch_, keys::device_expiry_key(n), "device expiry"),
      "device expiry", std::to_string(n));
}

Status Applier::enqueue_removed(const DeviceRecord& device) {
  HERALD_ASSIGN_OR_RETURN(auto stored, load<messagingpb::DeviceQueue>(
                                           batch_, keys::device_queue_key(), "device queue"));
  messagingpb::DeviceQueue queue = stored.value_or(messagingpb::DeviceQueue());
  messagingpb::DeviceExpiry entry;
  entry.set_device_id(device.device_id());
  entry.set_user_id(device.user_id());
  entry.set_removed_ms(device.removed_ms());
  put(keys::device_expiry_key(queue.tail()), entry);
  queue.set_tail(queue.tail() + 1);
  put(keys::device_queue_key(), queue);
  return reclaim_devices(Reclaim::kTombstones);
}

Status Applier::reclaim_devices(Reclaim what) {
  HERALD_ASSIGN_OR_RETURN(auto stored, load<messagingpb::DeviceQueue>(
                                           batch_, keys::device_queue_key(), "device queue"));
  if (!stored || stored->head() == stored->tail()) return Status::ok_status();
  messagingpb::DeviceQueue queue = *stored;
  if (queue.head() > queue.marks_swept() || queue.marks_swept() > queue.tail()) {
    return Status::corruption("the removed-device queue's bounds are out of order");
  }
  HERALD_RETURN_IF_ERROR(sweep_marks(queue));
  if (what == Reclaim::kTombstones) HERALD_RETURN_IF_ERROR(expire_tombstones(queue));
  if (queue.SerializeAsString() != stored->SerializeAsString()) {
    put(keys::device_queue_key(), queue);
  }
  return Status::ok_status();
}

// No marks of a removed device are written after its removal (AckDelivery and SetReadMarker need
// an active device; RestoreReadMarker only rewrites marks that exist), so once a scan of its
// prefix finds no more than it may delete, none are left. Each scan reads one key past what it
// may delete to tell that; a scan that deletes nothing still uses one key of the budget.
Status Applier::sweep_marks(messagingpb::DeviceQueue& queue) {
  std::size_t budget = kMaxDeviceMarksSweptPerCommand;
  while (budget > 0 && queue.marks_swept() < queue.tail()) {
    HERALD_ASSIGN_OR_RETURN(const messagingpb::DeviceExpiry entry,
                            queued_device(queue.marks_swept()));
    const std::string prefix = keys::device_marks_prefix(entry.user_id(), entry.device_id());
    HERALD_ASSIGN_OR_RETURN(const auto marks, batch_.scan(storage::Space::kState, prefix,
                                                          keys::prefix_end(prefix), budget + 1));
    const std::size_t deleted = std::min(marks.size(), budget);
    for (std::size_t i = 0; i < deleted; ++i) del(marks[i].key);
    if (marks.size() <= budget) queue.set_marks_swept(queue.marks_swept() + 1);
    budget -= std::max<std::size_t>(deleted, 1);
  }
  return Status::ok_status();
}

// Send-dedup records name the device (dedup_window_ms) and change-stream entries name device ids
// (change_retention_ms): past both windows from the removal, none of them is in force, and the
// id may start over as a new device.
Status Applier::expire_tombstones(messagingpb::DeviceQueue& queue) {
  HERALD_ASSIGN_OR_RETURN(const messagingpb::RetentionSettings retention, retention());
  const std::int64_t window_ms =
      std::max(retention.dedup_window_ms(), retention.change_retention_ms());
  for (std::size_t n = 0; n < kMaxDeviceExpiriesPerCommand && queue.head() < queue.marks_swept();
       ++n) {
    HERALD_ASSIGN_OR_RETURN(const messagingpb::DeviceExpiry entry, queued_device(queue.head()));
    // Removal times only grow along the queue (times in the log only grow): the rest is younger.
    if (now_ms_ - entry.removed_ms() < window_ms) break;
    HERALD_ASSIGN_OR_RETURN(auto device, find_device(batch_, entry.device_id()));
    if (!device || !device->removed() || device->user_id() != entry.user_id() ||
        device->removed_ms() != entry.removed_ms()) {
      return Status::corruption(
          fmt::format("the removed-device queue names device \"{}\", which is not its tombstone",
                      entry.device_id()));
    }
    del(keys::device_key(entry.device_id()));
    del(keys::device_expiry_key(queue.head()));
    queue.set_head(queue.head() + 1);
  }
  return Status::ok_status();
}

// ---------------------------------------------------------------- message history

// Every message is queued, whatever the retention: a window set later applies to the messages
// sent before it too, and a conversation's messages leave in seq order, so those still stored
// are always the range after ConversationRecord.expired_up_to.
Status Applier::enqueue_message(const MessageRecord& message) {
  HERALD_ASSIGN_OR_RETURN(auto stored, load<messagingpb::MessageQueue>(
                                           batch_, keys::message_queue_key(), "message queue"));
  messagingpb::MessageQueue queue = stored.value_or(messagingpb::MessageQueue());
  messagingpb::MessageExpiry entry;
  entry.set_conversation_id(message.conversation_id());
  entry.set_seq(message.seq());
  entry.set_wall_ms(message.wall_ms());
  put(keys::message_expiry_key(queue.tail()), entry);
  queue.set_tail(queue.tail() + 1);
  put(keys::message_queue_key(), queue);
  return Status::ok_status();
}

// Each entry is checked against the window in force now: shortening it expires the older
// messages in the next commands, lengthening it (or 0) keeps those not yet deleted.
Status Applier::expire_messages() {
  HERALD_ASSIGN_OR_RETURN(const messagingpb::RetentionSettings retention, retention());
  const std::int64_t window_ms = retention.message_retention_ms();
  if (window_ms == 0) return Status::ok_status();  // kept forever: the queue waits
  HERALD_ASSIGN_OR_RETURN(auto stored, load<messagingpb::MessageQueue>(
                                           batch_, keys::message_queue_key(), "message queue"));
  if (!stored || stored->head() == stored->tail()) return Status::ok_status();
  if (stored->head() > stored->tail()) {
    return Status::corruption("the message queue's bounds are out of order");
  }
  messagingpb::MessageQueue queue = *stored;
  for (std::size_t n = 0; n < kMaxMessageExpiriesPerCommand && queue.head() < queue.tail(); ++n) {
    const std::string key = keys::message_expiry_key(queue.head());
    HERALD_ASSIGN_OR_RETURN(
        const messagingpb::MessageExpiry entry,
        referenced(load<messagingpb::MessageExpiry>(batch_, key, "message expiry"),
                   "message expiry", std::to_string(queue.head())));
    // Send times only grow along the queue (times in the log only grow): the rest is younger.
    if (now_ms_ - entry.wall_ms() < window_ms) break;
    HERALD_RETURN_IF_ERROR(expire_message(entry));
    del(key);
    queue.set_head(queue.head() + 1);
  }
  if (queue.head() != stored->head()) put(keys::message_queue_key(), queue);
  return Status::ok_status();
}

// Deletes the message the entry names, which the queue's order makes the oldest one its
// conversation still stores. The conversation's last_seq, the members' read state and chat
// entries stay as they are.
Status Applier::expire_message(const messagingpb::MessageExpiry& entry) {
  const std::string& id = entry.conversation_id();
  HERALD_ASSIGN_OR_RETURN(ConversationRecord conv,
                          referenced(find_conversation(batch_, id), "conversation", id));
  if (entry.seq() != conv.expired_up_to() + 1 || entry.seq() > conv.last_seq()) {
    return Status::corruption(fmt::format(
        "the message queue names message {} of conversation \"{}\", whose oldest stored is {}",
        entry.seq(), id, conv.expired_up_to() + 1));
  }
  HERALD_ASSIGN_OR_RETURN(const MessageRecord message, stored_message(id, entry.seq()));
  if (message.wall_ms() != entry.wall_ms()) {
    return Status::corruption(fmt::format(
        "the message queue's time of message {} of conversation \"{}\" is not the message's",
        entry.seq(), id));
  }
  if (!message.deleted()) {  // a deleted message's deliveries were canceled then
    HERALD_RETURN_IF_ERROR(cancel_deliveries(conv, message, kMessageExpiredReason));
  }
  del(keys::message_key(id, entry.seq()));
  conv.set_expired_up_to(entry.seq());
  put(keys::conversation_key(id), conv);
  return Status::ok_status();
}

Result<rsmpb::CommandResult> Applier::set_retention(const messagingpb::SetRetention& op) {
  const auto& s = op.settings();
  for (const auto& [what, ms] : {std::pair{"dedup_window_ms", s.dedup_window_ms()},
                                 std::pair{"change_retention_ms", s.change_retention_ms()},
                                 std::pair{"message_retention_ms", s.message_retention_ms()},
                                 std::pair{"delivery_lifetime_ms", s.delivery_lifetime_ms()}}) {
    if (ms != 0 && (ms < kMinRetentionMs || ms > kMaxRetentionMs)) {
      return Status::invalid_argument(fmt::format("{} = {} is outside [{}, {}] ms (0: default)",
                                                  what, ms, kMinRetentionMs, kMaxRetentionMs));
    }
  }
  put(keys::retention_key(), s);
  retention_.reset();  // the sweep after this command uses the new windows
  return ok_result();
}

Status Applier::fan_out(const ConversationRecord& conv, const ChangeRecord& change) {
  HERALD_ASSERT(conv.members_size() <= static_cast<int>(kMaxGroupMembers), "fan-out is bounded");
  for (const Member& member : conv.members()) {
    HERALD_RETURN_IF_ERROR(append_change(member.user_id(), change));
  }
  return Status::ok_status();
}

Result<rsmpb::CommandResult> run(Applier& a, const messagingpb::MessagingCommand& c) {
  using C = messagingpb::MessagingCommand;
  switch (c.op_case()) {
    case C::kCreateUser: return a.create_user(c.create_user());
    case C::kCreateDevice: return a.create_device(c.create_device());
    case C::kSetPushToken: return a.set_push_token(c.set_push_token());
    case C::kRemoveDevice: return a.remove_device(c.remove_device());
    case C::kCreateConversation: return a.create_conversation(c.create_conversation());
    case C::kRenameConversation: return a.rename(c.rename_conversation());
    case C::kAddMembers: return a.add_members(c.add_members());
    case C::kRemoveMember: return a.remove_member(c.remove_member());
    case C::kLeaveConversation: return a.leave(c.leave_conversation());
    case C::kSetRole: return a.set_role(c.set_role());
    case C::kSetPreferences: return a.set_preferences(c.set_preferences());
    case C::kSendMessage: return a.send(c.send_message());
    case C::kEditMessage: return a.edit(c.edit_message());
    case C::kDeleteMessage: return a.erase(c.delete_message());
    case C::kAckDelivery: return a.ack_delivery(c.ack_delivery());
    case C::kSetReadMarker: return a.set_read_marker(c.set_read_marker());
    case C::kRestoreReadMarker: return a.restore_read_marker(c.restore_read_marker());
    case C::kAdvanceReadCursor: return a.advance_read_cursor(c.advance_read_cursor());
    case C::kPublishReadReceipts: return a.publish_receipts(c.publish_read_receipts());
    case C::kSetRetention: return a.set_retention(c.set_retention());
    case C::kInvalidatePushTarget: return a.invalidate_push_target(c.invalidate_push_target());
    case C::kRevokeUser: return a.revoke_user(c.revoke_user());
    case C::OP_NOT_SET: break;
  }
  return Status::invalid_argument("a messaging command names no operation");
}

// The command, then the message-history sweep (which rereads what the command staged).
Result<rsmpb::CommandResult> dispatch(Applier& a, const messagingpb::MessagingCommand& c) {
  HERALD_RETURN_IF_ERROR(a.check_acting_device(c.acting_user_id(), c.acting_device_id()));
  HERALD_ASSIGN_OR_RETURN(rsmpb::CommandResult result, run(a, c));
  HERALD_RETURN_IF_ERROR(a.expire_messages());
  HERALD_RETURN_IF_ERROR(a.trim_idle_streams());
  return result;
}

// ---------------------------------------------------------------- readers

// The user's state in the conversation; kNotFound when the user is not a member.
Result<MemberState> membership(const storage::Reader& reader, std::string_view user_id,
                               std::string_view conversation_id) {
  HERALD_ASSIGN_OR_RETURN(auto state, find_member_state(reader, user_id, conversation_id));
  if (!state) {
    return Status::not_found(fmt::format("user \"{}\" is not a member of conversation \"{}\"",
                                         user_id, conversation_id));
  }
  return std::move(*state);
}

Result<ChatSummary> summarize(const storage::Reader& reader, std::string_view user_id,
                              ChatEntry entry) {
  HERALD_ASSIGN_OR_RETURN(ConversationRecord conv,
                          referenced(find_conversation(reader, entry.conversation_id()),
                                     "conversation", entry.conversation_id()));
  HERALD_ASSIGN_OR_RETURN(MemberState state,
                          referenced(find_member_state(reader, user_id, entry.conversation_id()),
                                     "member state", user_id));
  ChatSummary summary;
  summary.kind = conv.kind();
  summary.title = conv.title();
  summary.unread = conv.last_seq() - std::min(state.read_cursor(), conv.last_seq());
  summary.muted = state.preferences().muted();
  summary.entry = std::move(entry);
  return summary;
}

// ok when the conversation's message `seq` expired under the message retention, else (a change
// names a message that should be stored) kCorruption.
Status check_expired(const storage::Reader& reader, std::string_view conversation_id,
                     std::uint64_t seq) {
  HERALD_ASSIGN_OR_RETURN(
      const ConversationRecord conv,
      referenced(find_conversation(reader, conversation_id), "conversation", conversation_id));
  if (seq > conv.expired_up_to()) {
    return Status::corruption(
        fmt::format("message {} of conversation \"{}\", which a change names, is missing", seq,
                    conversation_id));
  }
  return Status::ok_status();
}

}  // namespace

// ---------------------------------------------------------------- public

std::string direct_conversation_id(std::string_view user_a, std::string_view user_b) {
  HERALD_ASSERT(user_a != user_b, "a direct conversation has two different users");
  return fmt::format("{}{}:{}", kDirectIdPrefix, std::min(user_a, user_b),
                     std::max(user_a, user_b));
}

std::string preview_of(std::string_view body) {
  if (body.size() <= kMaxPreviewBytes) {
    return std::string(body);
  }
  std::size_t end = kMaxPreviewBytes;
  while (end > 0 && (static_cast<unsigned char>(body[end]) >> 6U) == 0x2U) {
    --end;  // body[end] continues a character: cut before the character starts
  }
  return std::string(body.substr(0, end));
}

Domain::Domain(WorkflowSink* sink) : sink_(sink) {
  HERALD_ASSERT(sink_ != nullptr, "the messaging domain needs a workflow sink");
}

bool Domain::allowed_when_disk_low(const rsmpb::Command& command) const {
  messagingpb::MessagingCommand mc;
  const std::string& payload = command.module().payload();
  if (!mc.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return false;
  }
  using C = messagingpb::MessagingCommand;
  switch (mc.op_case()) {
    case C::kRemoveDevice:
    case C::kRevokeUser:
    case C::kRemoveMember:
    case C::kLeaveConversation:
    case C::kDeleteMessage:
    case C::kAckDelivery:
    case C::kSetReadMarker:
    case C::kRestoreReadMarker:
    case C::kAdvanceReadCursor:
    case C::kPublishReadReceipts:
    case C::kInvalidatePushTarget:
    case C::kSetRetention: return true;
    default: return false;
  }
}

rsmpb::CommandResult Domain::apply(raft::Index /*index*/, const rsmpb::Command& command,
                                   rsm::ApplyBatch& batch) {
  if (command.op_case() != rsmpb::Command::kModule || command.module().name() != kModuleName) {
    return error_result(Status::invalid_argument("not a messaging command"));
  }
  messagingpb::MessagingCommand mc;
  const std::string& payload = command.module().payload();
  if (!mc.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return error_result(Status::invalid_argument(
        "the messaging command does not decode (malformed, or text that is not UTF-8)"));
  }
  std::vector<ChangeNotice> notices;
  Applier applier(batch, *sink_, command.wall_ms(), notices);
  auto result = dispatch(applier, mc);
  if (!result.ok()) {
    return error_result(result.status());  // the caller rolls the writes back: no notices
  }
  changes_.insert(changes_.end(), std::make_move_iterator(notices.begin()),
                  std::make_move_iterator(notices.end()));
  return std::move(result).value();
}

std::vector<ChangeNotice> Domain::take_changes() {
  return std::exchange(changes_, {});
}

Result<std::optional<UserRecord>> Domain::get_user(const storage::Reader& reader,
                                                   std::string_view user_id) {
  return find_user(reader, user_id);
}

Result<std::optional<DeviceRecord>> Domain::get_device(const storage::Reader& reader,
                                                       std::string_view device_id) {
  HERALD_ASSIGN_OR_RETURN(auto device, find_device(reader, device_id));
  if (device && device->removed()) {
    return std::optional<DeviceRecord>();
  }
  return device;
}

Result<std::optional<ConversationRecord>> Domain::get_conversation(
    const storage::Reader& reader, std::string_view conversation_id) {
  return find_conversation(reader, conversation_id);
}

Result<std::optional<MessageRecord>> Domain::get_message(const storage::Reader& reader,
                                                         std::string_view conversation_id,
                                                         std::uint64_t seq) {
  return find_message(reader, conversation_id, seq);
}

Result<EffectivePreferences> Domain::preferences(const storage::Reader& reader,
                                                 std::string_view user_id,
                                                 std::string_view conversation_id) {
  HERALD_ASSIGN_OR_RETURN(UserRecord user, found(find_user(reader, user_id), "user", user_id));
  if (conversation_id.empty()) {
    return effective(user.preferences(), ConversationPreferences());
  }
  HERALD_ASSIGN_OR_RETURN(MemberState state, membership(reader, user_id, conversation_id));
  return effective(user.preferences(), state.preferences());
}

Result<ChatPage> Domain::chat_index(const storage::Reader& reader, std::string_view user_id,
                                    std::size_t limit, std::string_view page_token) {
  const std::string prefix = keys::user_prefix(keys::kChatSub, user_id);
  std::string begin = prefix;
  if (!page_token.empty()) {
    if (!keys::hex_decode(page_token, begin) || !begin.starts_with(prefix)) {
      return Status::invalid_argument("the page token does not belong to this chat index");
    }
    begin.push_back('\0');  // the smallest key after the previous page's last
  }
  limit = std::clamp<std::size_t>(limit, 1, kMaxReadLimit);
  ChatPage page;
  std::string last_key;
  auto it = reader.scan(storage::Space::kState, begin, keys::prefix_end(prefix));
  for (; it->valid(); it->next()) {
    if (page.entries.size() == limit) {
      page.next_page_token = keys::hex_encode(last_key);
      break;
    }
    HERALD_ASSIGN_OR_RETURN(ChatEntry entry, keys::open<ChatEntry>(it->value(), "chat entry"));
    HERALD_ASSIGN_OR_RETURN(ChatSummary summary, summarize(reader, user_id, std::move(entry)));
    page.entries.push_back(std::move(summary));
    last_key = std::string(it->key());
  }
  HERALD_RETURN_IF_ERROR(it->status());
  return page;
}

Result<SyncPage> Domain::sync(const storage::Reader& reader, std::string_view user_id,
                              std::uint64_t after_change_seq, std::size_t limit) {
  SyncPage page;
  page.next_cursor = after_change_seq;
  if (after_change_seq == std::numeric_limits<std::uint64_t>::max()) {
    return page;
  }
  limit = std::clamp<std::size_t>(limit, 1, kMaxReadLimit);
  HERALD_ASSIGN_OR_RETURN(auto user, find_user(reader, user_id));
  if (user && after_change_seq + 1 < user->first_change_seq()) {
    page.resync_required = true;
    page.next_cursor = user->last_change_seq();
    return page;
  }
  auto it = reader.scan(storage::Space::kState, keys::change_key(user_id, after_change_seq + 1),
                        keys::prefix_end(keys::user_prefix(keys::kChangeSub, user_id)));
  // `limit` counts the changes read, those of expired messages (skipped) too.
  for (std::size_t read = 0; it->valid(); it->next(), ++read) {
    if (read == limit) {
      page.has_more = true;
      break;
    }
    messagingpb::SyncEntry entry;
    HERALD_ASSIGN_OR_RETURN(*entry.mutable_change(),
                            keys::open<ChangeRecord>(it->value(), "change"));
    const ChangeRecord& change = entry.change();
    page.next_cursor = change.change_seq();
    if (is_message_change(change.kind())) {
      HERALD_ASSIGN_OR_RETURN(auto message,
                              find_message(reader, change.conversation_id(), change.seq()));
      if (!message) {
        HERALD_RETURN_IF_ERROR(check_expired(reader, change.conversation_id(), change.seq()));
        continue;
      }
      *entry.mutable_message() = std::move(*message);
    }
    page.entries.push_back(std::move(entry));
  }
  HERALD_RETURN_IF_ERROR(it->status());
  return page;
}

namespace {

// The conversation, when `user_id` is a member of it (kNotFound otherwise).
Result<ConversationRecord> member_conversation(const storage::Reader& reader,
                                               std::string_view user_id,
                                               std::string_view conversation_id) {
  HERALD_RETURN_IF_ERROR(membership(reader, user_id, conversation_id).status());
  return referenced(find_conversation(reader, conversation_id), "conversation", conversation_id);
}

// The stored messages with seqs in [begin, end), oldest first. The callers start past the
// conversation's expired messages, so every seq in the range is there.
Result<std::vector<MessageRecord>> messages_between(const storage::Reader& reader,
                                                    std::string_view conversation_id,
                                                    std::uint64_t begin, std::uint64_t end) {
  std::vector<MessageRecord> messages;
  auto it = reader.scan(storage::Space::kState, keys::message_key(conversation_id, begin),
                        keys::message_key(conversation_id, end));
  for (; it->valid(); it->next()) {
    HERALD_ASSIGN_OR_RETURN(MessageRecord m, keys::open<MessageRecord>(it->value(), "message"));
    messages.push_back(std::move(m));
  }
  HERALD_RETURN_IF_ERROR(it->status());
  return messages;
}

}  // namespace

Result<HistoryPage> Domain::history(const storage::Reader& reader, std::string_view user_id,
                                    std::string_view conversation_id, std::uint64_t before_seq,
                                    std::size_t limit) {
  HERALD_ASSIGN_OR_RETURN(const ConversationRecord conv,
                          member_conversation(reader, user_id, conversation_id));
  limit = std::clamp<std::size_t>(limit, 1, kMaxReadLimit);
  const std::uint64_t end =
      before_seq == 0 ? conv.last_seq() + 1 : std::min(before_seq, conv.last_seq() + 1);
  const std::uint64_t oldest = conv.expired_up_to() + 1;  // the oldest message stored
  const std::uint64_t begin = std::max(end > limit ? end - limit : 1, oldest);
  HistoryPage page;
  if (end <= oldest) return page;
  HERALD_ASSIGN_OR_RETURN(page.messages, messages_between(reader, conversation_id, begin, end));
  std::reverse(page.messages.begin(), page.messages.end());
  page.next_before = begin > oldest ? begin : 0;
  return page;
}

Result<HistoryPage> Domain::history_after(const storage::Reader& reader, std::string_view user_id,
                                          std::string_view conversation_id, std::uint64_t after_seq,
                                          std::size_t limit) {
  HERALD_ASSIGN_OR_RETURN(const ConversationRecord conv,
                          member_conversation(reader, user_id, conversation_id));
  limit = std::clamp<std::size_t>(limit, 1, kMaxReadLimit);
  HistoryPage page;
  page.next_after = after_seq;
  if (after_seq >= conv.last_seq()) return page;
  const std::uint64_t from = std::max(after_seq, conv.expired_up_to());  // skips expired seqs
  const std::uint64_t last = std::min(conv.last_seq(), from + limit);
  HERALD_ASSIGN_OR_RETURN(page.messages,
                          messages_between(reader, conversation_id, from + 1, last + 1));
  page.next_after = last;
  page.has_more = last < conv.last_seq();
  return page;
}

Result<messagingpb::RetentionSettings> Domain::retention(const storage::Reader& reader) {
  return retention_of(reader);
}

Result<std::uint64_t> Domain::read_cursor(const storage::Reader& reader, std::string_view user_id,
                                          std::string_view conversation_id) {
  HERALD_ASSIGN_OR_RETURN(MemberState state, membership(reader, user_id, conversation_id));
  return state.read_cursor();
}

Result<std::vector<DeviceMarkView>> Domain::device_marks(const storage::Reader& reader,
                                                         std::string_view user_id,
                                                         std::string_view conversation_id) {
  HERALD_ASSIGN_OR_RETURN(UserRecord user, found(find_user(reader, user_id), "user", user_id));
  std::vector<DeviceMarkView> views;
  for (const std::string& device_id : user.device_ids()) {
    HERALD_ASSIGN_OR_RETURN(
        auto marks, load<DeviceMarks>(reader, keys::marks_key(user_id, device_id, conversation_id),
                                      "device marks"));
    const DeviceMarks m = marks.value_or(DeviceMarks());
    views.push_back(DeviceMarkView{device_id, m.read_marker(), m.delivered_up_to()});
  }
  return views;
}

}  // namespace herald::messaging
