#include "base/log.h"

#include <fmt/format.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <array>
#include <atomic>
#include <ctime>
#include <memory>
#include <string>

namespace herald {

namespace {

std::atomic<std::uint64_t> g_node{0};
std::atomic<std::uint64_t> g_term{0};
thread_local std::span<const log::Field> t_fields;

// What a text line looks like (unchanged since the first release; operators' tools parse it).
constexpr char kTextPattern[] = "%Y-%m-%dT%H:%M:%S.%e %^%L%$ [%n] %v";
// The Unicode replacement character, written for each byte that is not valid UTF-8.
constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
constexpr unsigned kMillisPerSecond = 1000;

std::string_view level_name(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace: return "trace";
    case spdlog::level::debug: return "debug";
    case spdlog::level::info: return "info";
    case spdlog::level::warn: return "warn";
    case spdlog::level::err: return "error";
    case spdlog::level::critical: return "critical";
    case spdlog::level::off:
    case spdlog::level::n_levels: break;
  }
  return "off";
}

bool in(unsigned char c, unsigned char lo, unsigned char hi) {
  return c >= lo && c <= hi;
}

// The length of the valid UTF-8 sequence at the start of `s` (non-empty), or 0 when its first
// byte does not begin one (Unicode 15, table 3-7: no overlong forms, surrogates or code points
// above U+10FFFF).
std::size_t utf8_sequence_length(std::string_view s) {
  const auto at = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char b0 = at(0);
  if (b0 < 0x80) return 1;
  std::size_t length = 0;
  unsigned char lo = 0x80;
  unsigned char hi = 0xBF;  // the bounds of the second byte
  if (in(b0, 0xC2, 0xDF)) {
    length = 2;
  } else if (in(b0, 0xE0, 0xEF)) {
    length = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (in(b0, 0xF0, 0xF4)) {
    length = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;  // at most U+10FFFF
  } else {
    return 0;
  }
  if (s.size() < length || !in(at(1), lo, hi)) return 0;
  for (std::size_t i = 2; i < length; ++i) {
    if (!in(at(i), 0x80, 0xBF)) return 0;
  }
  return length;
}

void append_time(std::chrono::system_clock::time_point time, std::string& out) {
  const auto since_epoch = time.time_since_epoch();
  const auto seconds = std::chrono::floor<std::chrono::seconds>(since_epoch);
  const auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch - seconds).count();
  const std::time_t t = static_cast<std::time_t>(seconds.count());
  std::tm utc{};
  gmtime_r(&t, &utc);
  std::array<char, 32> date{};
  const std::size_t n = std::strftime(date.data(), date.size(), "%Y-%m-%dT%H:%M:%S", &utc);
  fmt::format_to(std::back_inserter(out), "\"{}.{:03}Z\"", std::string_view(date.data(), n),
                 static_cast<unsigned>(millis) % kMillisPerSecond);
}

void append_value(const log::Field::Value& value, std::string& out) {
  if (const auto* s = std::get_if<std::string_view>(&value)) {
    log::append_json_string(*s, out);
  } else if (const auto* i = std::get_if<std::int64_t>(&value)) {
    fmt::format_to(std::back_inserter(out), "{}", *i);
  } else if (const auto* u = std::get_if<std::uint64_t>(&value)) {
    fmt::format_to(std::back_inserter(out), "{}", *u);
  } else {
    out += std::get<bool>(value) ? "true" : "false";
  }
}

// True when fields[index]'s key was used by an earlier field.
bool repeats_earlier_key(std::span<const log::Field> fields, std::size_t index) {
  for (std::size_t i = 0; i < index; ++i) {
    if (fields[i].key() == fields[index].key()) return true;
  }
  return false;
}

// The JSON line formatter: the record of spdlog's message plus the calling thread's fields.
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    thread_local std::string line;
    line.clear();
    log::append_json_line(
        log::Record{
            .time = msg.time,
            .level = msg.level,
            .node = g_node.load(std::memory_order_relaxed),
            .term = g_term.load(std::memory_order_relaxed),
            .message = std::string_view(msg.payload.data(), msg.payload.size()),
            .fields = log::current_fields(),
        },
        line);
    dest.append(line.data(), line.data() + line.size());
  }

  [[nodiscard]] std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

}  // namespace

std::optional<LogFormat> parse_log_format(std::string_view name) {
  if (name == "text") return LogFormat::kText;
  if (name == "json") return LogFormat::kJson;
  return std::nullopt;
}

void init_logging(std::string_view level, std::uint64_t node_id, LogFormat format) {
  g_node.store(node_id, std::memory_order_relaxed);
  auto logger = spdlog::stderr_color_mt(fmt::format("n{}", node_id));
  if (format == LogFormat::kJson) {
    logger->set_formatter(std::make_unique<JsonFormatter>());
  } else {
    logger->set_pattern(kTextPattern);
  }
  spdlog::set_default_logger(logger);
  auto parsed = spdlog::level::from_str(std::string(level));
  if (parsed == spdlog::level::off && level != "off") {
    parsed = spdlog::level::info;
  }
  spdlog::set_level(parsed);
}

std::unique_ptr<spdlog::formatter> make_json_formatter() {
  return std::make_unique<JsonFormatter>();
}

void set_log_term(std::uint64_t term) {
  g_term.store(term, std::memory_order_relaxed);
}

namespace log {

bool is_reserved_key(std::string_view key) {
  return key == "ts" || key == "level" || key == "node" || key == "msg" || key == kTermKey;
}

std::span<const Field> current_fields() {
  return t_fields;
}

detail::ScopedFields::ScopedFields(std::span<const Field> fields) : previous_(t_fields) {
  t_fields = fields;
}

detail::ScopedFields::~ScopedFields() {
  t_fields = previous_;
}

void append_json_string(std::string_view text, std::string& out) {
  out.push_back('"');
  while (!text.empty()) {
    const auto c = static_cast<unsigned char>(text.front());
    std::size_t used = 1;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          fmt::format_to(std::back_inserter(out), "\\u{:04x}", static_cast<unsigned>(c));
        } else if (const std::size_t n = utf8_sequence_length(text); n > 0) {
          out.append(text.substr(0, n));
          used = n;
        } else {
          out += kReplacement;
        }
    }
    text.remove_prefix(used);
  }
  out.push_back('"');
}

void append_json_line(const Record& record, std::string& out) {
  out += "{\"ts\":";
  append_time(record.time, out);
  out += ",\"level\":\"";
  out += level_name(record.level);
  fmt::format_to(std::back_inserter(out), "\",\"node\":{}", record.node);
  // A call site's own term takes the current term's place (the first one, if several).
  const Field* term_field = nullptr;
  for (const Field& f : record.fields) {
    if (f.key() == kTermKey && term_field == nullptr) term_field = &f;
  }
  out += ",\"term\":";
  if (term_field != nullptr) {
    append_value(term_field->value(), out);
  } else {
    fmt::format_to(std::back_inserter(out), "{}", record.term);
  }
  out += ",\"msg\":";
  append_json_string(record.message, out);
  for (std::size_t i = 0; i < record.fields.size(); ++i) {
    const Field& f = record.fields[i];
    const auto* text = std::get_if<std::string_view>(&f.value());
    if (is_reserved_key(f.key()) || repeats_earlier_key(record.fields, i) ||
        (text != nullptr && text->empty())) {
      continue;
    }
    out.push_back(',');
    append_json_string(f.key(), out);
    out.push_back(':');
    append_value(f.value(), out);
  }
  out += "}\n";
}

}  // namespace log
}  // namespace herald
