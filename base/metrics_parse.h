// A strict reader of the Prometheus text exposition format 0.0.4, for tests: it checks a whole
// scrape against the format's rules, independently of the writer in base/metrics.h, and returns
// its families for assertions on names and values.
//
// Rules checked (any violation is kInvalidArgument naming the line):
//  - every line is blank, a comment, "# HELP name text", "# TYPE name type" or a sample
//    "name{label="value",...} value [timestamp]";
//  - metric names match [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]*; label
//    values use only the escapes \\, \" and \n; values are floats, +Inf, -Inf or NaN;
//  - a family has at most one HELP and one TYPE line, both before its samples, and its samples
//    are not interleaved with another family's; no series appears twice;
//  - counters are not negative; a histogram's samples are name_bucket (with an "le" label),
//    name_sum and name_count, its buckets are cumulative, end with le="+Inf", and _count equals
//    the +Inf bucket.
// Thread-safety: pure.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace herald::metrics {

struct ParsedSample {
  std::string name;  // as written: for histograms with its _bucket/_sum/_count suffix
  std::map<std::string, std::string> labels;  // unescaped
  double value = 0;
};

struct ParsedFamily {
  std::string name;
  std::string type;  // "counter", "gauge", "histogram", "summary", "untyped"
  std::string help;  // unescaped
  std::vector<ParsedSample> samples;
};

// The families of `text` by name. Errors: kInvalidArgument for any rule above broken.
[[nodiscard]] Result<std::map<std::string, ParsedFamily>> parse_exposition(std::string_view text);

// The value of the sample `name` whose labels include `labels`; the sum over every matching
// series when several match (0 when none does).
[[nodiscard]] double sample_value(const std::map<std::string, ParsedFamily>& families,
                                  std::string_view family, std::string_view name,
                                  const std::map<std::string, std::string>& labels = {});

}  // namespace herald::metrics
