#include "base/metrics_parse.h"

#include <fmt/format.h>

#include <cmath>
#include <cstdlib>
#include <optional>
#include <set>

#include "base/metrics.h"

namespace herald::metrics {

namespace {

Status bad(std::size_t line, std::string_view what) {
  return Status::invalid_argument(fmt::format("line {}: {}", line, what));
}

std::string_view take_name(std::string_view& rest, bool metric) {
  std::size_t n = 0;
  while (n < rest.size()) {
    const char c = rest[n];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                    (metric && c == ':') || (n > 0 && c >= '0' && c <= '9');
    if (!ok) break;
    ++n;
  }
  const std::string_view name = rest.substr(0, n);
  rest.remove_prefix(n);
  return name;
}

Result<double> parse_float(std::string_view text) {
  if (text == "+Inf" || text == "Inf") return HUGE_VAL;
  if (text == "-Inf") return -HUGE_VAL;
  if (text == "NaN") return std::nan("");
  const std::string s(text);
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size() || std::isinf(v) || std::isnan(v)) {
    return Status::invalid_argument(fmt::format("\"{}\" is not a sample value", text));
  }
  return v;
}

// Parses `{a="x",b="y"}` (rest starts after the '{') up to and including the '}'.
Status parse_labels(std::size_t line, std::string_view& rest,
                    std::map<std::string, std::string>& labels) {
  while (true) {
    if (rest.starts_with('}')) {
      rest.remove_prefix(1);
      return Status::ok_status();
    }
    const std::string name(take_name(rest, false));
    if (name.empty() || !valid_label_name(name)) return bad(line, "a bad label name");
    if (!rest.starts_with("=\"")) return bad(line, "a label without =\"");
    rest.remove_prefix(2);
    std::string value;
    while (!rest.empty() && rest[0] != '"') {
      if (rest[0] == '\n') return bad(line, "a raw line feed in a label value");
      if (rest[0] == '\\') {
        if (rest.size() < 2) return bad(line, "a label value ends in a backslash");
        const char e = rest[1];
        if (e != '\\' && e != '"' && e != 'n') return bad(line, "an unknown escape");
        value += e == 'n' ? '\n' : e;
        rest.remove_prefix(2);
        continue;
      }
      value += rest[0];
      rest.remove_prefix(1);
    }
    if (rest.empty()) return bad(line, "an unterminated label value");
    rest.remove_prefix(1);
    if (!labels.emplace(name, std::move(value)).second) return bad(line, "a repeated label");
    if (rest.starts_with(',')) rest.remove_prefix(1);
  }
}

Result<ParsedSample> parse_sample(std::size_t line, std::string_view rest) {
  ParsedSample s;
  s.name = std::string(take_name(rest, true));
  if (s.name.empty() || !valid_metric_name(s.name)) return bad(line, "a bad metric name");
  if (rest.starts_with('{')) {
    rest.remove_prefix(1);
    HERALD_RETURN_IF_ERROR(parse_labels(line, rest, s.labels));
  }
  if (!rest.starts_with(' ')) return bad(line, "no space before the value");
  rest.remove_prefix(1);
  const std::size_t space = rest.find(' ');
  auto value = parse_float(rest.substr(0, space));
  if (!value.ok()) return bad(line, value.status().message());
  s.value = *value;
  if (space != std::string_view::npos) {
    const std::string ts(rest.substr(space + 1));
    char* end = nullptr;
    std::strtoll(ts.c_str(), &end, 10);
    if (ts.empty() || end != ts.c_str() + ts.size()) return bad(line, "a bad timestamp");
  }
  return s;
}

std::string unescape_help(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size() && (text[i + 1] == '\\' || text[i + 1] == 'n')) {
      out += text[i + 1] == 'n' ? '\n' : '\\';
      ++i;
    } else {
      out += text[i];
    }
  }
  return out;
}

// The family a sample belongs to: its name, or for a histogram's samples the name without the
// suffix when that family is a histogram.
std::string family_of(const std::map<std::string, ParsedFamily>& families,
                      const std::string& sample) {
  for (const std::string_view suffix : {"_bucket", "_sum", "_count"}) {
    if (sample.ends_with(suffix)) {
      std::string base = sample.substr(0, sample.size() - suffix.size());
      const auto it = families.find(base);
      if (it != families.end() && it->second.type == "histogram") return base;
    }
  }
  return sample;
}

std::string series_key(const ParsedSample& s) {
  std::string key = s.name;
  for (const auto& [k, v] : s.labels) key += fmt::format("\x1f{}={}", k, v);
  return key;
}

// A histogram's rules, series by series (series differ by their labels other than "le").
Status check_histogram(const ParsedFamily& f) {
  struct Series {
    std::vector<std::pair<double, double>> buckets;  // (le, cumulative count)
    std::optional<double> count;
    bool sum = false;
  };
  std::map<std::string, Series> series;
  for (const ParsedSample& s : f.samples) {
    std::map<std::string, std::string> rest = s.labels;
    rest.erase("le");
    std::string key;
    for (const auto& [k, v] : rest) key += fmt::format("\x1f{}={}", k, v);
    Series& h = series[key];
    if (s.name == f.name + "_bucket") {
      const auto le = s.labels.find("le");
      if (le == s.labels.end()) return bad(0, f.name + ": a bucket without le");
      HERALD_ASSIGN_OR_RETURN(const double bound, parse_float(le->second));
      h.buckets.emplace_back(bound, s.value);
    } else if (s.name == f.name + "_count") {
      h.count = s.value;
    } else if (s.name == f.name + "_sum") {
      h.sum = true;
    } else {
      return bad(0, f.name + ": a histogram sample named " + s.name);
    }
  }
  for (const auto& [key, h] : series) {
    if (h.buckets.empty() || !std::isinf(h.buckets.back().first) || !h.count || !h.sum) {
      return bad(0, f.name + ": a series lacks its +Inf bucket, _sum or _count");
    }
    for (std::size_t i = 1; i < h.buckets.size(); ++i) {
      if (h.buckets[i].first <= h.buckets[i - 1].first ||
          h.buckets[i].second < h.buckets[i - 1].second) {
        return bad(0, f.name + ": buckets are not increasing and cumulative");
      }
    }
    if (*h.count != h.buckets.back().second) return bad(0, f.name + ": _count != +Inf bucket");
  }
  return Status::ok_status();
}

// Applies a "# HELP" or "# TYPE" line.
Status parse_descriptor(std::size_t line, std::string_view rest,
                        std::map<std::string, ParsedFamily>& families,
                        const std::set<std::string>& closed) {
  const bool help = rest.starts_with("# HELP ");
  rest.remove_prefix(7);
  const std::string name(take_name(rest, true));
  if (name.empty() || !valid_metric_name(name)) return bad(line, "a bad metric name");
  if (closed.contains(name)) return bad(line, "a descriptor after the family's samples");
  ParsedFamily& f = families[name];
  f.name = name;
  const std::string_view text = rest.starts_with(' ') ? rest.substr(1) : rest;
  if (help) {
    if (!f.help.empty()) return bad(line, "a second HELP");
    f.help = unescape_help(text);
    return Status::ok_status();
  }
  if (!f.type.empty()) return bad(line, "a second TYPE");
  if (!f.samples.empty()) return bad(line, "TYPE after samples");
  if (text != "counter" && text != "gauge" && text != "histogram" && text != "summary" &&
      text != "untyped") {
    return bad(line, "an unknown type");
  }
  f.type = std::string(text);
  return Status::ok_status();
}

}  // namespace

Result<std::map<std::string, ParsedFamily>> parse_exposition(std::string_view text) {
  std::map<std::string, ParsedFamily> families;
  std::set<std::string> closed;  // families whose samples ended
  std::set<std::string> series;
  std::string current;
  std::size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const std::size_t eol = text.find('\n');
    if (eol == std::string_view::npos) return bad(line_no, "the last line has no line feed");
    const std::string_view line = text.substr(0, eol);
    text.remove_prefix(eol + 1);
    if (line.empty()) continue;
    if (line.starts_with("# HELP ") || line.starts_with("# TYPE ")) {
      HERALD_RETURN_IF_ERROR(parse_descriptor(line_no, line, families, closed));
      continue;
    }
    if (line.starts_with('#')) continue;
    HERALD_ASSIGN_OR_RETURN(ParsedSample s, parse_sample(line_no, line));
    const std::string family = family_of(families, s.name);
    if (family != current) {
      if (!current.empty()) closed.insert(current);
      if (closed.contains(family)) return bad(line_no, "the family's samples are interleaved");
      current = family;
    }
    if (!series.insert(series_key(s)).second) return bad(line_no, "a repeated series");
    ParsedFamily& f = families[family];
    f.name = family;
    if (f.type == "counter" && s.value < 0) return bad(line_no, "a negative counter");
    f.samples.push_back(std::move(s));
  }
  for (const auto& [name, f] : families) {
    if (f.type == "histogram") HERALD_RETURN_IF_ERROR(check_histogram(f));
  }
  return families;
}

double sample_value(const std::map<std::string, ParsedFamily>& families, std::string_view family,
                    std::string_view name, const std::map<std::string, std::string>& labels) {
  const auto f = families.find(std::string(family));
  if (f == families.end()) return 0;
  double total = 0;
  for (const ParsedSample& s : f->second.samples) {
    if (s.name != name) continue;
    bool match = true;
    for (const auto& [k, v] : labels) {
      const auto it = s.labels.find(k);
      match = match && it != s.labels.end() && it->second == v;
    }
    if (match) total += s.value;
  }
  return total;
}

}  // namespace herald::metrics
