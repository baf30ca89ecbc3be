#include "workflow/keys.h"

#include "base/assert.h"

namespace herald::workflow::keys {

namespace {

constexpr char kEscapeByte = '\x00';
constexpr char kEscapedZero = '\xFF';
constexpr char kStringEnd = '\x01';
constexpr std::uint64_t kSignBit = std::uint64_t{1} << 63U;
constexpr char kHexDigits[] = "0123456789abcdef";

std::string start(char sub) {
  std::string out;
  out.push_back(kKeyPrefix);
  out.push_back(sub);
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  return -1;
}

}  // namespace

// Appends the runs between escape bytes whole (ids rarely hold one), not a byte at a time.
void put_string(std::string& out, std::string_view s) {
  out.reserve(out.size() + s.size() + 2);
  for (std::size_t at = s.find(kEscapeByte); at != std::string_view::npos;
       at = s.find(kEscapeByte)) {
    out.append(s.substr(0, at + 1));
    out.push_back(kEscapedZero);
    s.remove_prefix(at + 1);
  }
  out.append(s);
  out.push_back(kEscapeByte);
  out.push_back(kStringEnd);
}

void put_time(std::string& out, std::int64_t ms) {
  put_fixed64_be(out, static_cast<std::uint64_t>(ms) ^ kSignBit);
}

std::string record_key(std::string_view workflow_id) {
  std::string out = start(kRecordSub);
  out.append(workflow_id);
  return out;
}

std::string run_prefix(char sub, std::string_view workflow_id, std::uint64_t run_id) {
  std::string out = start(sub);
  put_string(out, workflow_id);
  put_fixed64_be(out, run_id);
  return out;
}

std::string history_key(std::string_view workflow_id, std::uint64_t run_id,
                        std::uint64_t last_seq) {
  std::string out = run_prefix(kHistorySub, workflow_id, run_id);
  put_fixed64_be(out, last_seq);
  return out;
}

std::string activity_key(std::string_view workflow_id, std::uint64_t run_id,
                         std::uint64_t activity_id) {
  std::string out = run_prefix(kActivitySub, workflow_id, run_id);
  put_fixed64_be(out, activity_id);
  return out;
}

std::string dispatch_key(std::string_view workflow_id, std::uint64_t run_id,
                         std::uint64_t activity_id) {
  std::string out = run_prefix(kDispatchSub, workflow_id, run_id);
  put_fixed64_be(out, activity_id);
  return out;
}

std::string timer_key(std::int64_t due_ms, std::string_view workflow_id, std::uint64_t run_id,
                      std::uint64_t timer_id) {
  std::string out = timer_bound(due_ms);
  put_string(out, workflow_id);
  put_fixed64_be(out, run_id);
  put_fixed64_be(out, timer_id);
  return out;
}

std::string timer_bound(std::int64_t due_ms) {
  std::string out = start(kTimerSub);
  put_time(out, due_ms);
  return out;
}

std::string visibility_prefix(std::string_view type, const std::optional<std::string>& state) {
  std::string out = start(kVisibilitySub);
  put_string(out, type);
  if (state) {
    put_string(out, *state);
  }
  return out;
}

std::string visibility_key(std::string_view type, std::string_view state,
                           std::int64_t state_since_ms, std::string_view workflow_id) {
  std::string out = start(kVisibilitySub);
  put_string(out, type);
  put_string(out, state);
  put_time(out, state_since_ms);
  put_string(out, workflow_id);
  return out;
}

std::string settings_key() {
  return start(kSettingsSub);
}

std::string purge_queue_key() {
  return start(kPurgeQueueSub);
}

std::string purge_entry_key(std::uint64_t n) {
  std::string out = start(kPurgeEntrySub);
  put_fixed64_be(out, n);
  return out;
}

std::string summary_key(std::string_view workflow_id) {
  std::string out = start(kSummarySub);
  out.append(workflow_id);
  return out;
}

std::string sub_prefix(char sub) {
  return start(sub);
}

std::string prefix_end(std::string_view prefix) {
  std::string out(prefix);
  while (!out.empty() && out.back() == '\xFF') {
    out.pop_back();
  }
  HERALD_ASSERT(!out.empty(), "a key prefix needs a byte below 0xFF");
  out.back() = static_cast<char>(static_cast<unsigned char>(out.back()) + 1U);
  return out;
}

std::string hex_encode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const char c : bytes) {
    const auto b = static_cast<unsigned char>(c);
    out.push_back(kHexDigits[b >> 4U]);
    out.push_back(kHexDigits[b & 0x0FU]);
  }
  return out;
}

bool hex_decode(std::string_view hex, std::string& out) {
  if (hex.size() % 2 != 0) {
    return false;
  }
  std::string decoded;
  decoded.reserve(hex.size() / 2);
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const int hi = hex_value(hex[i]);
    const int lo = hex_value(hex[i + 1]);
    if (hi < 0 || lo < 0) {
      return false;
    }
    decoded.push_back(static_cast<char>((hi << 4) | lo));
  }
  out = std::move(decoded);
  return true;
}

}  // namespace herald::workflow::keys
