// Metrics: counters, gauges and fixed-bucket histograms, and their Prometheus text exposition
// (format version 0.0.4), for GET /metrics (docs/metrics.md).
//
// A Registry owns families; a family has a name, a help text, a type and a fixed list of label
// names, and holds one series per combination of label values, created on first use. The number
// of series of a family is bounded (kMaxSeriesPerFamily): once it is full, new combinations share
// one overflow series whose every label value is kOverflowLabelValue, so a label fed from outside
// (an error type, an activity type) can never grow memory or the exposition without bound.
//
// Cost on hot paths: Counter::inc, Gauge::set/add and Histogram::observe are relaxed atomic
// operations, without a lock or an allocation. Family::with() finds an existing series by a
// lock-free scan of at most kMaxSeriesPerFamily entries (no allocation); only creating a series
// takes the family's mutex and allocates. Callers on hot paths keep the reference with() returns
// (series are never removed; references stay valid for the registry's lifetime).
//
// Pure cores (raft/, rsm::Node, the state machines) do not use this: they keep plain counters that
// an adapter copies in (Counter::mirror) or observes from.
//
// Thread-safety: every method of every class here may be called from any thread. Registration
// (Registry::counter() and the like) asserts a valid, unused name and valid label names: these are
// programmer errors.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace herald::metrics {

// Label-value combinations one family holds at most, the overflow series included.
inline constexpr std::size_t kMaxSeriesPerFamily = 64;
// Label names of one family, at most.
inline constexpr std::size_t kMaxLabelsPerFamily = 4;
// Buckets of one histogram, at most (besides the implicit +Inf bucket).
inline constexpr std::size_t kMaxBuckets = 24;
// The value of every label of a family's overflow series.
inline constexpr std::string_view kOverflowLabelValue = "other";

// Bucket upper bounds, in seconds, for work a node does itself: a disk sync, an apply round, a
// command's round trip through the log (0.1 ms to 10 s).
inline constexpr std::array<double, 16> kFastLatencyBucketsSeconds = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   5.0,  10.0};
// Bucket upper bounds, in seconds, for waits on people and devices: delivery to a device, a read
// after delivery (10 ms to 1 day).
inline constexpr std::array<double, 17> kHumanLatencyBucketsSeconds = {
    0.01, 0.05, 0.1,   0.25,  0.5,    1.0,     2.5,     5.0,    10.0,
    30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 43200.0, 86400.0};

// A value that only goes up (resets only with the process).
class Counter {
 public:
  void inc(std::uint64_t n = 1) noexcept { value_.fetch_add(n, std::memory_order_relaxed); }
  // Sets the total from a monotonic source kept elsewhere (a pure core's plain counter).
  void mirror(std::uint64_t total) noexcept { value_.store(total, std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t value() const noexcept {
    return value_.load(std::memory_order_relaxed);
  }

 private:
  std::atomic<std::uint64_t> value_{0};
};

// A value that goes up and down.
class Gauge {
 public:
  void set(double v) noexcept { value_.store(v, std::memory_order_relaxed); }
  void add(double delta) noexcept { value_.fetch_add(delta, std::memory_order_relaxed); }
  [[nodiscard]] double value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Counts observations into fixed buckets (upper bounds, inclusive) plus +Inf, and sums them.
class Histogram {
 public:
  // Precondition (asserted): 1..kMaxBuckets finite bounds, strictly increasing. The bounds are
  // borrowed: use the named constants above (static storage).
  explicit Histogram(std::span<const double> bounds);

  // Records one observation (seconds for the latency histograms). NaN is ignored.
  void observe(double value) noexcept;

  struct Snapshot {
    std::vector<std::uint64_t> cumulative;  // per bound, then +Inf (== count)
    std::uint64_t count = 0;
    double sum = 0;
  };
  // A view for the exposition. Concurrent observations may be half seen (in a bucket but not yet
  // in the sum); the count is always the +Inf bucket, as the format requires.
  [[nodiscard]] Snapshot snapshot() const;
  [[nodiscard]] std::span<const double> bounds() const { return bounds_; }

 private:
  std::span<const double> bounds_;
  std::array<std::atomic<std::uint64_t>, kMaxBuckets + 1> counts_{};  // per bucket, not cumulative
  std::atomic<double> sum_{0};
};

enum class Type : std::uint8_t { kCounter, kGauge, kHistogram };

// What every family shares: identity, labels and its part of the exposition.
class FamilyBase {
 public:
  FamilyBase(std::string name, std::string help, Type type, std::vector<std::string> label_names);
  virtual ~FamilyBase() = default;
  FamilyBase(const FamilyBase&) = delete;
  FamilyBase& operator=(const FamilyBase&) = delete;

  [[nodiscard]] const std::string& name() const { return name_; }
  [[nodiscard]] Type type() const { return type_; }
  // Appends the HELP and TYPE lines and every series' samples to `out`.
  void write(std::string& out) const;

 protected:
  struct SeriesBase {
    explicit SeriesBase(std::vector<std::string> v) : values(std::move(v)) {}
    virtual ~SeriesBase() = default;
    SeriesBase(const SeriesBase&) = delete;
    SeriesBase& operator=(const SeriesBase&) = delete;
    std::vector<std::string> values;  // one per label name
  };
  // The series for `values` (one per label name, asserted), created by `make` on first use; the
  // overflow series once the family is full.
  template <class Make>
  SeriesBase& find_or_create(std::initializer_list<std::string_view> values, Make make);

 private:
  [[nodiscard]] SeriesBase* find(std::initializer_list<std::string_view> values, std::size_t from,
                                 std::size_t to) const;
  void write_series(std::string& out, const SeriesBase& series) const;
  virtual void write_samples(std::string& out, const SeriesBase& series,
                             const std::string& labels) const = 0;

  const std::string name_;
  const std::string help_;
  const Type type_;
  const std::vector<std::string> label_names_;
  std::mutex mu_;  // serializes creation; lookups read size_ and slots_ without it
  std::atomic<std::size_t> size_{0};
  std::array<std::unique_ptr<SeriesBase>, kMaxSeriesPerFamily> slots_;  // [0, size_) are set
};

// A family of counters, gauges or histograms.
template <class Metric>
class Family final : public FamilyBase {
 public:
  // For histograms, `bounds` (borrowed, static storage) are every series' buckets.
  Family(std::string name, std::string help, std::vector<std::string> label_names,
         std::span<const double> bounds = {});

  // The series with these label values, in label-name order. Lock-free once it exists.
  Metric& with(std::initializer_list<std::string_view> values);

 private:
  struct Series final : SeriesBase {
    template <class... Args>
    Series(std::vector<std::string> v, Args&&... args)
        : SeriesBase(std::move(v)), metric(std::forward<Args>(args)...) {}
    Metric metric;
  };
  void write_samples(std::string& out, const SeriesBase& series,
                     const std::string& labels) const override;

  std::span<const double> bounds_;
};

using CounterFamily = Family<Counter>;
using GaugeFamily = Family<Gauge>;
using HistogramFamily = Family<Histogram>;

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Registers a family. Preconditions (asserted): a valid metric name not registered before,
  // valid and distinct label names (at most kMaxLabelsPerFamily; "le" is reserved for histogram
  // buckets). The family lives as long as the registry.
  CounterFamily& counter_family(std::string name, std::string help,
                                std::vector<std::string> label_names);
  GaugeFamily& gauge_family(std::string name, std::string help,
                            std::vector<std::string> label_names);
  HistogramFamily& histogram_family(std::string name, std::string help,
                                    std::vector<std::string> label_names,
                                    std::span<const double> bounds);
  // A family without labels, and its only series.
  Counter& counter(std::string name, std::string help);
  Gauge& gauge(std::string name, std::string help);
  Histogram& histogram(std::string name, std::string help, std::span<const double> bounds);

  // Every family in registration order, in the text exposition format 0.0.4.
  [[nodiscard]] std::string expose() const;

 private:
  template <class F>
  F& add(std::unique_ptr<F> family);

  mutable std::mutex mu_;
  std::vector<std::unique_ptr<FamilyBase>> families_;  // guarded by mu_
};

// The Content-Type of the exposition.
inline constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

// ---- The format's rules, exposed for tests ----
// Metric names match [a-zA-Z_:][a-zA-Z0-9_:]*.
[[nodiscard]] bool valid_metric_name(std::string_view name);
// Label names match [a-zA-Z_][a-zA-Z0-9_]* and do not start with "__" (reserved).
[[nodiscard]] bool valid_label_name(std::string_view name);
// A label value with '\' , '"' and line feed escaped as \\, \" and \n.
[[nodiscard]] std::string escape_label_value(std::string_view value);
// A HELP text with '\' and line feed escaped as \\ and \n.
[[nodiscard]] std::string escape_help(std::string_view help);
// A sample value: integers without a fraction, others in the shortest form that reads back
// exactly, and +Inf, -Inf, NaN.
[[nodiscard]] std::string format_value(double value);

// ---- Implementation of the templates ----

template <class Make>
FamilyBase::SeriesBase& FamilyBase::find_or_create(std::initializer_list<std::string_view> values,
                                                   Make make) {
  const std::size_t seen = size_.load(std::memory_order_acquire);
  if (SeriesBase* s = find(values, 0, seen)) return *s;
  const std::lock_guard lock(mu_);
  const std::size_t now = size_.load(std::memory_order_relaxed);
  if (SeriesBase* s = find(values, seen, now)) return *s;
  std::vector<std::string> wanted;
  if (now + 1 < kMaxSeriesPerFamily) {
    wanted.assign(values.begin(), values.end());
  } else {
    // Full but for the overflow series: it takes every new combination.
    wanted.assign(label_names_.size(), std::string(kOverflowLabelValue));
    for (std::size_t i = 0; i < now; ++i) {
      if (slots_[i]->values == wanted) return *slots_[i];
    }
  }
  slots_[now] = make(std::move(wanted));
  size_.store(now + 1, std::memory_order_release);
  return *slots_[now];
}

template <class Metric>
Family<Metric>::Family(std::string name, std::string help, std::vector<std::string> label_names,
                       std::span<const double> bounds)
    : FamilyBase(std::move(name), std::move(help),
                 std::is_same_v<Metric, Counter> ? Type::kCounter
                 : std::is_same_v<Metric, Gauge> ? Type::kGauge
                                                 : Type::kHistogram,
                 std::move(label_names)),
      bounds_(bounds) {}

template <class Metric>
Metric& Family<Metric>::with(std::initializer_list<std::string_view> values) {
  SeriesBase& s = find_or_create(values, [this](std::vector<std::string> v) {
    if constexpr (std::is_same_v<Metric, Histogram>) {
      return std::unique_ptr<SeriesBase>(std::make_unique<Series>(std::move(v), bounds_));
    } else {
      return std::unique_ptr<SeriesBase>(std::make_unique<Series>(std::move(v)));
    }
  });
  return static_cast<Series&>(s).metric;
}

// Defined in metrics.cc.
extern template class Family<Counter>;
extern template class Family<Gauge>;
extern template class Family<Histogram>;

}  // namespace herald::metrics
