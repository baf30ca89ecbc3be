#include "server/websocket.h"

namespace herald::server {

namespace {

// Ranges of close codes an endpoint may send (RFC 6455 section 7.4 and the IANA registry);
// 1004-1006 and 1015 are reserved and never appear on the wire.
constexpr std::uint16_t kFirstProtocolCode = 1000;
constexpr std::uint16_t kLastUnreservedLowCode = 1003;
constexpr std::uint16_t kFirstUnreservedHighCode = 1007;
constexpr std::uint16_t kLastProtocolCode = 1014;
constexpr std::uint16_t kFirstApplicationCode = 3000;
constexpr std::uint16_t kLastApplicationCode = 4999;

// True for the second and later bytes of a UTF-8 sequence (10xxxxxx).
bool is_utf8_continuation(char byte) {
  constexpr unsigned kContinuationMask = 0xC0U;
  constexpr unsigned kContinuationBits = 0x80U;
  return (static_cast<unsigned char>(byte) & kContinuationMask) == kContinuationBits;
}

}  // namespace

bool is_sendable_ws_close_code(std::uint16_t code) {
  return (code >= kFirstProtocolCode && code <= kLastUnreservedLowCode) ||
         (code >= kFirstUnreservedHighCode && code <= kLastProtocolCode) ||
         (code >= kFirstApplicationCode && code <= kLastApplicationCode);
}

std::string truncate_ws_close_reason(std::string_view reason) {
  if (reason.size() <= kMaxWsCloseReasonBytes) return std::string(reason);
  std::size_t end = kMaxWsCloseReasonBytes;
  // Cutting before a continuation byte would split a sequence: back up to its lead byte.
  while (end > 0 && is_utf8_continuation(reason[end])) --end;
  return std::string(reason.substr(0, end));
}

}  // namespace herald::server
