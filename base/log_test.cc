#include "base/log.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <boost/json.hpp>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "base/random.h"

namespace herald::log {
namespace {

// 2026-01-02T03:04:05.678Z
constexpr std::chrono::milliseconds kFixedTime{1767323045678};

std::string json_string(std::string_view text) {
  std::string out;
  append_json_string(text, out);
  return out;
}

std::string line_of(std::string_view message, std::span<const Field> fields, std::uint64_t term) {
  std::string out;
  append_json_line(Record{.time = std::chrono::system_clock::time_point(kFixedTime),
                          .level = spdlog::level::warn,
                          .node = 3,
                          .term = term,
                          .message = message,
                          .fields = fields},
                   out);
  return out;
}

// Parses `line` (one JSON object and its '\n') with Boost.JSON's strict parser: invalid UTF-8,
// raw control characters and bad escapes all fail.
boost::json::object parse_line(const std::string& line) {
  EXPECT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "one line per record";
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(std::string_view(line).substr(0, line.size() - 1), ec);
  EXPECT_FALSE(ec) << ec.message() << " in " << line;
  return v.is_object() ? v.as_object() : boost::json::object();
}

TEST(LogJson, EscapesQuotesBackslashesAndControlCharacters) {
  EXPECT_EQ(json_string("a\"b\\c"), R"("a\"b\\c")");
  EXPECT_EQ(json_string("\b\f\n\r\t"), R"("\b\f\n\r\t")");
  EXPECT_EQ(json_string(std::string_view("\x00\x01\x1f", 3)), R"("\u0000\u0001\u001f")");
  EXPECT_EQ(json_string("\x7f"), "\"\x7f\"");  // DEL needs no escape in JSON
}

TEST(LogJson, KeepsValidMultibyteUtf8AsIs) {
  EXPECT_EQ(json_string("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"),
            "\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\"");
  EXPECT_EQ(json_string("\xF4\x8F\xBF\xBF"), "\"\xF4\x8F\xBF\xBF\"");  // U+10FFFF, the last
}

TEST(LogJson, ReplacesEachInvalidUtf8ByteWithTheReplacementCharacter) {
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(json_string("\xFF"), "\"" + r + "\"");
  EXPECT_EQ(json_string("a\x80z"), "\"a" + r + "z\"");              // a lone continuation byte
  EXPECT_EQ(json_string("\xE2\x82"), "\"" + r + r + "\"");          // cut short at the end
  EXPECT_EQ(json_string("\xE2\x82z"), "\"" + r + r + "z\"");        // cut short mid-text
  EXPECT_EQ(json_string("\xC0\xAF"), "\"" + r + r + "\"");          // overlong '/'
  EXPECT_EQ(json_string("\xE0\x80\xAF"), "\"" + r + r + r + "\"");  // overlong, three bytes
  EXPECT_EQ(json_string("\xED\xA0\x80"), "\"" + r + r + r + "\"");  // a surrogate, U+D800
  EXPECT_EQ(json_string("\xF4\x90\x80\x80"), "\"" + r + r + r + r + "\"");  // above U+10FFFF
}

TEST(LogJson, LineHasTimeLevelNodeTermMessageThenFieldsInOrder) {
  const std::vector<Field> fields{conversation("team"), seq(12), device("bob-phone"),
                                  Field("pushed", true), Field("delta", -4)};
  EXPECT_EQ(line_of("message team#12 stored", fields, 7),
            R"({"ts":"2026-01-02T03:04:05.678Z","level":"warn","node":3,"term":7,)"
            R"("msg":"message team#12 stored","conversation":"team","seq":12,)"
            R"("device":"bob-phone","pushed":true,"delta":-4})"
            "\n");
}

TEST(LogJson, CallSiteTermReplacesTheCurrentTerm) {
  const std::vector<Field> fields{term(9), Field("leader", 2U)};
  const boost::json::object o = parse_line(line_of("leader is now 2", fields, 8));
  EXPECT_EQ(o.at("term").to_number<std::uint64_t>(), 9U);
  EXPECT_EQ(o.at("leader").to_number<std::uint64_t>(), 2U);
  EXPECT_EQ(o.size(), 6U);
  EXPECT_NE(line_of("m", fields, 8).find(R"("node":3,"term":9,"msg":"m","leader":2})"),
            std::string::npos);
}

TEST(LogJson, ReservedAndRepeatedKeysAreDropped) {
  const std::vector<Field> fields{
      Field("msg", "x"), Field("node", 5U), Field("ts", "y"), Field("level", "z"), seq(1), seq(2)};
  const std::string line = line_of("m", fields, 4);
  const boost::json::object o = parse_line(line);
  EXPECT_EQ(o.at("msg").as_string(), "m");
  EXPECT_EQ(o.at("node").to_number<std::uint64_t>(), 3U);
  EXPECT_EQ(o.at("level").as_string(), "warn");
  EXPECT_EQ(o.at("seq").to_number<std::uint64_t>(), 1U);
  EXPECT_EQ(line.find("\"seq\":2"), std::string::npos);
}

TEST(LogJson, EmptyStringFieldsAreLeftOut) {
  const std::vector<Field> fields{device(""), conversation("c"), user("")};
  const boost::json::object o = parse_line(line_of("m", fields, 1));
  EXPECT_FALSE(o.contains("device"));
  EXPECT_FALSE(o.contains("user"));
  EXPECT_EQ(o.at("conversation").as_string(), "c");
}

TEST(LogJson, EverySingleByteMakesAStrictlyValidLine) {
  for (int b = 0; b < 256; ++b) {
    const std::string text(1, static_cast<char>(b));
    const std::vector<Field> fields{Field("k", text)};
    const boost::json::object o = parse_line(line_of(text, fields, 1));
    if (b < 0x80) {
      EXPECT_EQ(o.at("msg").as_string(), text) << "byte " << b;
      EXPECT_EQ(o.at("k").as_string(), text) << "byte " << b;
    }
  }
}

TEST(LogJson, RandomBytesMakeStrictlyValidLinesAndValidUtf8RoundTrips) {
  Rng rng(20261206);
  for (int i = 0; i < 2000; ++i) {
    std::string text(rng.uniform(41), '\0');
    for (char& c : text) c = static_cast<char>(rng.uniform(256));
    const std::vector<Field> fields{conversation(text)};
    const boost::json::object o = parse_line(line_of(text, fields, 1));
    const std::string_view back = o.at("msg").as_string();
    // A text that survives unchanged was valid UTF-8; the replacement shows otherwise.
    if (back != text) {
      EXPECT_NE(back.find("\xEF\xBF\xBD"), std::string_view::npos) << i;
    }
  }
  const std::string valid = "quote \" slash \\ tab \t nl \n \xE2\x82\xAC";
  EXPECT_EQ(parse_line(line_of(valid, {}, 1)).at("msg").as_string(), valid);
}

TEST(LogJson, LoggerWithJsonFormatterWritesCallSiteFields) {
  std::ostringstream sink_out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(sink_out);
  auto logger = std::make_shared<spdlog::logger>("json-test", sink);
  logger->set_formatter(make_json_formatter());
  logger->set_level(spdlog::level::debug);
  const auto previous = spdlog::default_logger();
  spdlog::set_default_logger(logger);
  set_log_term(5);
  debug({conversation("c1"), seq(3), workflow("delivery/c1/3/bob")}, "stored {}#{}", "c1", 3);
  spdlog::info("no fields");
  logger->flush();
  spdlog::set_default_logger(previous);
  set_log_term(0);

  std::istringstream lines(sink_out.str());
  std::string first;
  std::string second;
  ASSERT_TRUE(std::getline(lines, first));
  ASSERT_TRUE(std::getline(lines, second));
  const boost::json::object a = parse_line(first + "\n");
  EXPECT_EQ(a.at("msg").as_string(), "stored c1#3");
  EXPECT_EQ(a.at("level").as_string(), "debug");
  EXPECT_EQ(a.at("term").to_number<std::uint64_t>(), 5U);
  EXPECT_EQ(a.at("conversation").as_string(), "c1");
  EXPECT_EQ(a.at("seq").to_number<std::uint64_t>(), 3U);
  EXPECT_EQ(a.at("workflow").as_string(), "delivery/c1/3/bob");
  const boost::json::object b = parse_line(second + "\n");
  EXPECT_EQ(b.at("msg").as_string(), "no fields");
  EXPECT_FALSE(b.contains("conversation")) << "fields end with their call";
  EXPECT_TRUE(current_fields().empty());
}

TEST(LogFormat, ParsesTextAndJsonOnly) {
  EXPECT_EQ(parse_log_format("text"), LogFormat::kText);
  EXPECT_EQ(parse_log_format("json"), LogFormat::kJson);
  EXPECT_EQ(parse_log_format("JSON"), std::nullopt);
  EXPECT_EQ(parse_log_format(""), std::nullopt);
}

}  // namespace
}  // namespace herald::log
