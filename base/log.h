// Logging: spdlog behind one setup call, so every layer logs the same way.
//
// Two line formats (docs/operations.md, "Logs"):
//   text  "2026-01-02T03:04:05.678 I [n1] message" (the default);
//   json  one JSON object per line: {"ts":"2026-01-02T03:04:05.678Z","level":"info","node":1,
//         "term":7,"msg":"message", ...fields}.
//
// Structured fields: a line about a message, a workflow or a device names them at the call site,
//   log::debug({log::conversation(c), log::seq(s), log::device(d)}, "message {}#{} stored", c, s);
// The JSON format writes each field as its own key; the text format shows only the message, as
// before. The node id (init_logging) and the replica's current term (set_log_term) are on every
// JSON line; a call site's own "term" field replaces the current one on its line.
//
// Deterministic layers may log (logging is output, not input), but must never branch on it.
// Thread-safety: the default spdlog logger is used from every thread. Fields reach the formatter
// through the calling thread, so the logger must stay synchronous (no spdlog async sinks).
#pragma once

#include <spdlog/spdlog.h>

#include <chrono>
#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>

namespace herald {

enum class LogFormat : std::uint8_t { kText, kJson };

// "text" or "json"; nullopt for anything else.
[[nodiscard]] std::optional<LogFormat> parse_log_format(std::string_view name);

// Sets the global log level from a name ("trace", "debug", "info", "warn", "error", "off") and the
// line format; text lines start with the node id, JSON lines carry it as "node". Unknown level
// names fall back to "info".
void init_logging(std::string_view level, std::uint64_t node_id,
                  LogFormat format = LogFormat::kText);

// The raft term JSON lines carry from now on (0 until a replica knows one). Any thread.
void set_log_term(std::uint64_t term);

// The formatter of JSON lines (log::append_json_line), for a logger of one's own (tests).
[[nodiscard]] std::unique_ptr<spdlog::formatter> make_json_formatter();

namespace log {

// One structured field of a log line: a key and a string, an integer or a boolean. Borrows its
// key and string value: a Field lives only as long as the call that logs it.
class Field {
 public:
  using Value = std::variant<std::string_view, std::int64_t, std::uint64_t, bool>;

  Field(std::string_view key, std::string_view value) : key_(key), value_(value) {}
  Field(std::string_view key, const std::string& value) : key_(key), value_(value) {}
  Field(std::string_view key, const char* value) : key_(key), value_(std::string_view(value)) {}
  Field(std::string_view key, bool value) : key_(key), value_(value) {}
  template <std::unsigned_integral T>
  requires(!std::same_as<T, bool>) Field(std::string_view key, T value)
      : key_(key), value_(static_cast<std::uint64_t>(value)) {}
  template <std::signed_integral T>
  Field(std::string_view key, T value) : key_(key), value_(static_cast<std::int64_t>(value)) {}

  [[nodiscard]] std::string_view key() const { return key_; }
  [[nodiscard]] const Value& value() const { return value_; }

 private:
  std::string_view key_;
  Value value_;
};

// The keys lines about messages, workflows and devices use, so that one grep finds them all.
inline constexpr char kConversationKey[] = "conversation";
inline constexpr char kSeqKey[] = "seq";
inline constexpr char kWorkflowKey[] = "workflow";
inline constexpr char kDeviceKey[] = "device";
inline constexpr char kUserKey[] = "user";
inline constexpr char kTermKey[] = "term";

[[nodiscard]] inline Field conversation(std::string_view id) {
  return {kConversationKey, id};
}
[[nodiscard]] inline Field seq(std::uint64_t seq) {
  return {kSeqKey, seq};
}
[[nodiscard]] inline Field workflow(std::string_view id) {
  return {kWorkflowKey, id};
}
[[nodiscard]] inline Field device(std::string_view id) {
  return {kDeviceKey, id};
}
[[nodiscard]] inline Field user(std::string_view id) {
  return {kUserKey, id};
}
[[nodiscard]] inline Field term(std::uint64_t term) {
  return {kTermKey, term};
}

// The keys every JSON line has already; a call-site field must not use them ("term" aside).
[[nodiscard]] bool is_reserved_key(std::string_view key);

// Everything one JSON line holds.
struct Record {
  std::chrono::system_clock::time_point time;
  spdlog::level::level_enum level = spdlog::level::info;
  std::uint64_t node = 0;
  std::uint64_t term = 0;
  std::string_view message;
  std::span<const Field> fields;
};

// Appends `record` to `out` as one JSON object and a '\n'. The time is UTC with milliseconds.
// Strings are escaped for any bytes: quotes, backslashes and control characters as JSON escapes,
// and a byte that is not part of valid UTF-8 (overlong forms and surrogates included) as U+FFFD,
// so a strict parser accepts every line. A "term" field takes the current term's place; a field
// with another reserved key is dropped; a later field with the key of an earlier one is dropped too
// (a line never repeats a key); a string field with an empty value is left out (an id that does not
// apply to this line).
void append_json_line(const Record& record, std::string& out);

// Appends `text` to `out` as a JSON string literal (quotes included), escaped as above.
void append_json_string(std::string_view text, std::string& out);

// The fields of the line the calling thread is logging; empty outside a log call. For formatters.
[[nodiscard]] std::span<const Field> current_fields();

namespace detail {
// Makes `fields` the calling thread's current fields until destroyed (nests).
class ScopedFields {
 public:
  explicit ScopedFields(std::span<const Field> fields);
  ~ScopedFields();
  ScopedFields(const ScopedFields&) = delete;
  ScopedFields& operator=(const ScopedFields&) = delete;

 private:
  std::span<const Field> previous_;
};
}  // namespace detail

// Logs at `level` through the default logger with `fields` attached. Formats nothing when the
// level is off.
template <typename... Args>
void write(spdlog::level::level_enum level, std::initializer_list<Field> fields,
           fmt::format_string<Args...> format, Args&&... args) {
  spdlog::logger* logger = spdlog::default_logger_raw();
  if (!logger->should_log(level)) return;
  const detail::ScopedFields scope(std::span<const Field>(fields.begin(), fields.size()));
  logger->log(level, format, std::forward<Args>(args)...);
}

template <typename... Args>
void debug(std::initializer_list<Field> fields, fmt::format_string<Args...> format,
           Args&&... args) {
  write(spdlog::level::debug, fields, format, std::forward<Args>(args)...);
}
template <typename... Args>
void info(std::initializer_list<Field> fields, fmt::format_string<Args...> format, Args&&... args) {
  write(spdlog::level::info, fields, format, std::forward<Args>(args)...);
}
template <typename... Args>
void warn(std::initializer_list<Field> fields, fmt::format_string<Args...> format, Args&&... args) {
  write(spdlog::level::warn, fields, format, std::forward<Args>(args)...);
}

// True when lines at `level` are written (to skip work that only a log line needs).
[[nodiscard]] inline bool enabled(spdlog::level::level_enum level) {
  return spdlog::default_logger_raw()->should_log(level);
}

}  // namespace log
}  // namespace herald
