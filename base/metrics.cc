#include "base/metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "base/assert.h"

namespace herald::metrics {

namespace {

bool name_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool name_char(char c) {
  return name_start(c) || (c >= '0' && c <= '9');
}

const char* type_name(Type type) {
  switch (type) {
    case Type::kCounter: return "counter";
    case Type::kGauge: return "gauge";
    case Type::kHistogram: return "histogram";
  }
  return "untyped";
}

// `labels` ("a=\"x\",b=\"y\"", maybe empty) with `extra` appended, in braces; empty when both are.
std::string label_set(const std::string& labels, std::string_view extra = {}) {
  if (labels.empty() && extra.empty()) return {};
  std::string out = "{";
  out += labels;
  if (!labels.empty() && !extra.empty()) out += ',';
  out += extra;
  out += '}';
  return out;
}

}  // namespace

bool valid_metric_name(std::string_view name) {
  if (name.empty() || !(name_start(name[0]) || name[0] == ':')) return false;
  return std::all_of(name.begin(), name.end(), [](char c) { return name_char(c) || c == ':'; });
}

bool valid_label_name(std::string_view name) {
  if (name.empty() || !name_start(name[0]) || name.starts_with("__")) return false;
  return std::all_of(name.begin(), name.end(), name_char);
}

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (const char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string escape_help(std::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (const char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string format_value(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  // Integers up to 2^53 print without a fraction or an exponent.
  constexpr double kExactIntegerLimit = 9007199254740992.0;
  if (value == std::floor(value) && std::fabs(value) < kExactIntegerLimit) {
    return fmt::format("{}", static_cast<std::int64_t>(value));
  }
  return fmt::format("{}", value);
}

// ---------------------------------------------------------------- Histogram

Histogram::Histogram(std::span<const double> bounds) : bounds_(bounds) {
  HERALD_ASSERT(!bounds.empty() && bounds.size() <= kMaxBuckets, "1 to kMaxBuckets buckets");
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    HERALD_ASSERT(std::isfinite(bounds[i]), "bucket bounds are finite (+Inf is implicit)");
    HERALD_ASSERT(i == 0 || bounds[i - 1] < bounds[i], "bucket bounds strictly increase");
  }
}

void Histogram::observe(double value) noexcept {
  if (std::isnan(value)) return;
  // The first bound at or above the value; past the last one, the +Inf bucket.
  const auto bucket = static_cast<std::size_t>(
      std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin());
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  s.cumulative.reserve(bounds_.size() + 1);
  std::uint64_t running = 0;
  for (std::size_t i = 0; i <= bounds_.size(); ++i) {
    running += counts_[i].load(std::memory_order_relaxed);
    s.cumulative.push_back(running);
  }
  s.count = running;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

// ---------------------------------------------------------------- families

FamilyBase::FamilyBase(std::string name, std::string help, Type type,
                       std::vector<std::string> label_names)
    : name_(std::move(name)),
      help_(std::move(help)),
      type_(type),
      label_names_(std::move(label_names)) {
  HERALD_ASSERT(valid_metric_name(name_), "a metric name matches [a-zA-Z_:][a-zA-Z0-9_:]*");
  HERALD_ASSERT(label_names_.size() <= kMaxLabelsPerFamily, "at most kMaxLabelsPerFamily labels");
  for (std::size_t i = 0; i < label_names_.size(); ++i) {
    HERALD_ASSERT(valid_label_name(label_names_[i]), "a label name matches [a-zA-Z_][a-zA-Z0-9_]*");
    HERALD_ASSERT(type_ != Type::kHistogram || label_names_[i] != "le",
                  "\"le\" is the bucket label of histograms");
    for (std::size_t j = 0; j < i; ++j) {
      HERALD_ASSERT(label_names_[i] != label_names_[j], "label names are distinct");
    }
  }
}

FamilyBase::SeriesBase* FamilyBase::find(std::initializer_list<std::string_view> values,
                                         std::size_t from, std::size_t to) const {
  HERALD_ASSERT(values.size() == label_names_.size(), "one value per label name");
  for (std::size_t i = from; i < to; ++i) {
    SeriesBase* s = slots_[i].get();
    if (std::equal(values.begin(), values.end(), s->values.begin())) return s;
  }
  return nullptr;
}

void FamilyBase::write(std::string& out) const {
  fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", name_, escape_help(help_),
                 name_, type_name(type_));
  const std::size_t n = size_.load(std::memory_order_acquire);
  for (std::size_t i = 0; i < n; ++i) {
    write_series(out, *slots_[i]);
  }
}

void FamilyBase::write_series(std::string& out, const SeriesBase& series) const {
  std::string labels;
  for (std::size_t i = 0; i < label_names_.size(); ++i) {
    if (i > 0) labels += ',';
    fmt::format_to(std::back_inserter(labels), "{}=\"{}\"", label_names_[i],
                   escape_label_value(series.values[i]));
  }
  write_samples(out, series, labels);
}

template <class Metric>
void Family<Metric>::write_samples(std::string& out, const SeriesBase& series,
                                   const std::string& labels) const {
  const Metric& m = static_cast<const Series&>(series).metric;
  auto line = [&](std::string_view suffix, std::string_view extra, const std::string& value) {
    fmt::format_to(std::back_inserter(out), "{}{}{} {}\n", name(), suffix, label_set(labels, extra),
                   value);
  };
  if constexpr (std::is_same_v<Metric, Counter>) {
    line("", "", fmt::format("{}", m.value()));
  } else if constexpr (std::is_same_v<Metric, Gauge>) {
    line("", "", format_value(m.value()));
  } else {
    const Histogram::Snapshot snap = m.snapshot();
    const std::span<const double> bounds = m.bounds();
    for (std::size_t i = 0; i < bounds.size(); ++i) {
      line("_bucket", fmt::format("le=\"{}\"", format_value(bounds[i])),
           fmt::format("{}", snap.cumulative[i]));
    }
    line("_bucket", "le=\"+Inf\"", fmt::format("{}", snap.count));
    line("_sum", "", format_value(snap.sum));
    line("_count", "", fmt::format("{}", snap.count));
  }
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

// ---------------------------------------------------------------- Registry

template <class F>
F& Registry::add(std::unique_ptr<F> family) {
  const std::lock_guard lock(mu_);
  for (const auto& f : families_) {
    HERALD_ASSERT(f->name() != family->name(), "a metric name is registered once");
  }
  F& ref = *family;
  families_.push_back(std::move(family));
  return ref;
}

CounterFamily& Registry::counter_family(std::string name, std::string help,
                                        std::vector<std::string> label_names) {
  return add(
      std::make_unique<CounterFamily>(std::move(name), std::move(help), std::move(label_names)));
}

GaugeFamily& Registry::gauge_family(std::string name, std::string help,
                                    std::vector<std::string> label_names) {
  return add(
      std::make_unique<GaugeFamily>(std::move(name), std::move(help), std::move(label_names)));
}

HistogramFamily& Registry::histogram_family(std::string name, std::string help,
                                            std::vector<std::string> label_names,
                                            std::span<const double> bounds) {
  return add(std::make_unique<HistogramFamily>(std::move(name), std::move(help),
                                               std::move(label_names), bounds));
}

Counter& Registry::counter(std::string name, std::string help) {
  return counter_family(std::move(name), std::move(help), {}).with({});
}

Gauge& Registry::gauge(std::string name, std::string help) {
  return gauge_family(std::move(name), std::move(help), {}).with({});
}

Histogram& Registry::histogram(std::string name, std::string help, std::span<const double> bounds) {
  return histogram_family(std::move(name), std::move(help), {}, bounds).with({});
}

std::string Registry::expose() const {
  std::string out;
  const std::lock_guard lock(mu_);
  for (const auto& f : families_) {
    f->write(out);
  }
  return out;
}

}  // namespace herald::metrics
