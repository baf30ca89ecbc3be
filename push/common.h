// Pieces the push providers share: UTF-8-safe cutting of previews to fit a payload limit, the
// Retry-After header, and reading a small secret file. Pure functions, no I/O except
// read_small_file. Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "base/status.h"

namespace herald::push {

// Largest Retry-After honoured, in milliseconds; longer hints are clamped to it.
inline constexpr std::int64_t kMaxRetryAfterMs = 3600LL * 1000;
// Reconnect backoff of the providers' HTTP/2 connections: full jitter over
// min(max, initial * 2^(failures - 1)), in milliseconds.
inline constexpr std::int64_t kReconnectInitialMs = 100;
inline constexpr std::int64_t kReconnectMaxMs = 30'000;
// Appended to a preview cut to fit a payload: U+2026 HORIZONTAL ELLIPSIS.
inline constexpr char kCutMarker[] = "\u2026";

// Longest collapse key the providers send, in bytes (APNs' apns-collapse-id limit).
inline constexpr std::size_t kMaxCollapseKeyBytes = 64;

// A collapse key for a conversation: the id itself when it has 1 to kMaxCollapseKeyBytes
// printable ASCII bytes, else the 64 hex digits of its SHA-256.
[[nodiscard]] std::string collapse_key_for(std::string_view conversation_id);

// The longest prefix of `text` of at most `max_bytes` bytes that does not end inside a UTF-8
// sequence (continuation bytes after the cut are dropped with their lead byte).
[[nodiscard]] std::string_view utf8_prefix(std::string_view text, std::size_t max_bytes);

// The payload build(cut) with the longest cut of `field` (at a UTF-8 boundary, kCutMarker
// appended when anything is cut) whose size is at most `max_bytes`; nullopt when not even an empty
// field fits. `build` must grow with its argument (a longer field never gives a shorter payload):
// a binary search finds the cut in O(log n) calls, so escaping is accounted for exactly.
[[nodiscard]] std::optional<std::string> fit_field(
    std::string_view field, std::size_t max_bytes,
    const std::function<std::string(std::string_view)>& build);

// A parsed Retry-After value (delta-seconds only; an HTTP date is ignored), clamped to
// kMaxRetryAfterMs.
[[nodiscard]] std::optional<std::int64_t> parse_retry_after_ms(std::string_view value);

// The whole file at `path`. kIOError when it cannot be read, kInvalidArgument when it is over
// `max_bytes`. Error messages name the path, never the content (key files are secret).
[[nodiscard]] Result<std::string> read_small_file(const std::string& path, std::size_t max_bytes);

}  // namespace herald::push
