#include "messaging/keys.h"

#include "base/encoding.h"

namespace herald::messaging::keys {

namespace {

constexpr std::uint64_t kSignBit = std::uint64_t{1} << 63U;

std::string start(char sub) {
  std::string out;
  out.push_back(kKeyPrefix);
  out.push_back(sub);
  return out;
}

// One string field under `sub`: "m" sub str(id).
std::string one_string(char sub, std::string_view id) {
  std::string out = start(sub);
  workflow::keys::put_string(out, id);
  return out;
}

// Larger times give smaller keys: the sign-flipped time (which sorts numerically), inverted.
void put_recency(std::string& out, std::int64_t ms) {
  put_fixed64_be(out, ~(static_cast<std::uint64_t>(ms) ^ kSignBit));
}

}  // namespace

std::string user_key(std::string_view user_id) {
  return one_string(kUserSub, user_id);
}

std::string device_key(std::string_view device_id) {
  return one_string(kDeviceSub, device_id);
}

std::string conversation_key(std::string_view conversation_id) {
  return one_string(kConversationSub, conversation_id);
}

std::string message_key(std::string_view conversation_id, std::uint64_t seq) {
  std::string out = one_string(kMessageSub, conversation_id);
  put_fixed64_be(out, seq);
  return out;
}

std::string dedup_key(std::string_view conversation_id, std::string_view device_id,
                      std::string_view client_message_id) {
  std::string out = one_string(kDedupSub, conversation_id);
  workflow::keys::put_string(out, device_id);
  workflow::keys::put_string(out, client_message_id);
  return out;
}

std::string member_key(std::string_view user_id, std::string_view conversation_id) {
  std::string out = one_string(kMemberSub, user_id);
  workflow::keys::put_string(out, conversation_id);
  return out;
}

std::string marks_key(std::string_view user_id, std::string_view device_id,
                      std::string_view conversation_id) {
  std::string out = device_marks_prefix(user_id, device_id);
  workflow::keys::put_string(out, conversation_id);
  return out;
}

std::string device_marks_prefix(std::string_view user_id, std::string_view device_id) {
  std::string out = one_string(kMarksSub, user_id);
  workflow::keys::put_string(out, device_id);
  return out;
}

std::string chat_key(std::string_view user_id, std::int64_t activity_ms,
                     std::string_view conversation_id) {
  std::string out = user_prefix(kChatSub, user_id);
  put_recency(out, activity_ms);
  workflow::keys::put_string(out, conversation_id);
  return out;
}

std::string change_key(std::string_view user_id, std::uint64_t change_seq) {
  std::string out = user_prefix(kChangeSub, user_id);
  put_fixed64_be(out, change_seq);
  return out;
}

std::string user_prefix(char sub, std::string_view user_id) {
  return one_string(sub, user_id);
}

std::string retention_key() {
  return start(kRetentionSub);
}

std::string dedup_queue_key() {
  return start(kDedupQueueSub);
}

std::string dedup_expiry_key(std::uint64_t n) {
  std::string out = start(kDedupExpirySub);
  put_fixed64_be(out, n);
  return out;
}

std::string device_queue_key() {
  return start(kDeviceQueueSub);
}

std::string device_expiry_key(std::uint64_t n) {
  std::string out = start(kDeviceExpirySub);
  put_fixed64_be(out, n);
  return out;
}

std::string message_queue_key() {
  return start(kMessageQueueSub);
}

std::string message_expiry_key(std::uint64_t n) {
  std::string out = start(kMessageExpirySub);
  put_fixed64_be(out, n);
  return out;
}

std::string stream_queue_key() {
  return start(kStreamQueueSub);
}

std::string stream_trim_key(std::uint64_t n) {
  std::string out = start(kStreamTrimSub);
  put_fixed64_be(out, n);
  return out;
}

}  // namespace herald::messaging::keys
