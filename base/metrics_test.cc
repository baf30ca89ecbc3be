#include "base/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "base/metrics_parse.h"

namespace herald::metrics {
namespace {

Result<std::map<std::string, ParsedFamily>> parse(const Registry& r) {
  return parse_exposition(r.expose());
}

TEST(MetricsTest, CounterWritesHelpTypeAndItsTotal) {
  Registry r;
  Counter& c = r.counter("herald_things_total", "Things done.");
  c.inc();
  c.inc(4);
  EXPECT_EQ(r.expose(),
            "# HELP herald_things_total Things done.\n"
            "# TYPE herald_things_total counter\n"
            "herald_things_total 5\n");
}

TEST(MetricsTest, LabelValuesEscapeBackslashQuoteAndLineFeed) {
  Registry r;
  CounterFamily& f = r.counter_family("herald_errors_total", "Errors.", {"code"});
  f.with({"a\\b\"c\nd"}).inc();
  const std::string text = r.expose();
  EXPECT_NE(text.find(R"(herald_errors_total{code="a\\b\"c\nd"} 1)"), std::string::npos) << text;
  auto parsed = parse(r);
  ASSERT_TRUE(parsed.ok()) << parsed.status().to_string();
  EXPECT_EQ(parsed->at("herald_errors_total").samples.at(0).labels.at("code"), "a\\b\"c\nd");
}

TEST(MetricsTest, HelpEscapesBackslashAndLineFeedOnly) {
  Registry r;
  r.gauge("herald_g", "a \"quoted\" back\\slash\nsecond line").set(1);
  const std::string text = r.expose();
  EXPECT_NE(text.find("# HELP herald_g a \"quoted\" back\\\\slash\\nsecond line\n"),
            std::string::npos)
      << text;
  auto parsed = parse(r);
  ASSERT_TRUE(parsed.ok()) << parsed.status().to_string();
  EXPECT_EQ(parsed->at("herald_g").help, "a \"quoted\" back\\slash\nsecond line");
}

TEST(MetricsTest, HistogramBucketsAreCumulativeAndEndInInf) {
  static constexpr std::array<double, 3> kBounds = {0.1, 1.0, 10.0};
  Registry r;
  Histogram& h = r.histogram("herald_wait_seconds", "Waits.", kBounds);
  h.observe(0.05);
  h.observe(0.1);  // an observation equal to a bound falls in that bucket (le: less or equal)
  h.observe(0.5);
  h.observe(100);
  EXPECT_EQ(r.expose(),
            "# HELP herald_wait_seconds Waits.\n"
            "# TYPE herald_wait_seconds histogram\n"
            "herald_wait_seconds_bucket{le=\"0.1\"} 2\n"
            "herald_wait_seconds_bucket{le=\"1\"} 3\n"
            "herald_wait_seconds_bucket{le=\"10\"} 3\n"
            "herald_wait_seconds_bucket{le=\"+Inf\"} 4\n"
            "herald_wait_seconds_sum 100.65\n"
            "herald_wait_seconds_count 4\n");
  EXPECT_TRUE(parse(r).ok());
}

TEST(MetricsTest, LabeledHistogramPutsLeAfterItsLabels) {
  Registry r;
  HistogramFamily& f =
      r.histogram_family("herald_step_seconds", "Steps.", {"step"}, kFastLatencyBucketsSeconds);
  f.with({"x"}).observe(0.002);
  const std::string text = r.expose();
  EXPECT_NE(text.find("herald_step_seconds_bucket{step=\"x\",le=\"0.0025\"} 1\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("herald_step_seconds_count{step=\"x\"} 1\n"), std::string::npos);
  EXPECT_TRUE(parse(r).ok());
}

TEST(MetricsTest, WithReturnsTheSameSeriesForTheSameValues) {
  Registry r;
  CounterFamily& f = r.counter_family("herald_a_total", "A.", {"x", "y"});
  Counter& one = f.with({"1", "2"});
  EXPECT_EQ(&one, &f.with({"1", "2"}));
  EXPECT_NE(&one, &f.with({"2", "1"}));
}

TEST(MetricsTest, AFullFamilySendsNewValuesToTheOverflowSeries) {
  Registry r;
  CounterFamily& f = r.counter_family("herald_codes_total", "Codes.", {"code"});
  for (std::size_t i = 0; i < kMaxSeriesPerFamily * 2; ++i) {
    f.with({std::to_string(i)}).inc();
  }
  auto parsed = parse(r);
  ASSERT_TRUE(parsed.ok()) << parsed.status().to_string();
  const ParsedFamily& codes = parsed->at("herald_codes_total");
  EXPECT_EQ(codes.samples.size(), kMaxSeriesPerFamily);
  EXPECT_EQ(sample_value(*parsed, "herald_codes_total", "herald_codes_total",
                         {{"code", std::string(kOverflowLabelValue)}}),
            static_cast<double>(kMaxSeriesPerFamily + 1));
  EXPECT_EQ(sample_value(*parsed, "herald_codes_total", "herald_codes_total"),
            static_cast<double>(kMaxSeriesPerFamily * 2));
}

TEST(MetricsTest, GaugeValuesFormatAsIntegersOrShortestDecimals) {
  EXPECT_EQ(format_value(3), "3");
  EXPECT_EQ(format_value(-2), "-2");
  EXPECT_EQ(format_value(0.25), "0.25");
  EXPECT_EQ(format_value(1e300), "1e+300");
  EXPECT_EQ(format_value(HUGE_VAL), "+Inf");
  EXPECT_EQ(format_value(-HUGE_VAL), "-Inf");
  EXPECT_EQ(format_value(std::nan("")), "NaN");
}

TEST(MetricsTest, NamesFollowTheFormatsGrammar) {
  EXPECT_TRUE(valid_metric_name("herald_raft_term"));
  EXPECT_TRUE(valid_metric_name(":a:b_1"));
  EXPECT_FALSE(valid_metric_name("1abc"));
  EXPECT_FALSE(valid_metric_name("a-b"));
  EXPECT_FALSE(valid_metric_name(""));
  EXPECT_TRUE(valid_label_name("code"));
  EXPECT_FALSE(valid_label_name("__reserved"));
  EXPECT_FALSE(valid_label_name("a:b"));
  EXPECT_FALSE(valid_label_name("9"));
}

TEST(MetricsDeathTest, RegisteringANameTwiceAborts) {
  Registry r;
  static_cast<void>(r.counter("herald_x_total", "X."));
  EXPECT_DEATH(static_cast<void>(r.counter("herald_x_total", "X again.")), "registered once");
}

TEST(MetricsDeathTest, AnInvalidMetricNameAborts) {
  Registry r;
  EXPECT_DEATH(static_cast<void>(r.gauge("herald-bad", "Bad.")), "metric name");
}

TEST(MetricsTest, ConcurrentIncrementsAreAllCounted) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 20'000;
  Registry r;
  CounterFamily& f = r.counter_family("herald_c_total", "C.", {"t"});
  Histogram& h = r.histogram("herald_h_seconds", "H.", kFastLatencyBucketsSeconds);
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&f, &h, t] {
      for (int i = 0; i < kPerThread; ++i) {
        f.with({std::to_string(i % 8)}).inc();  // the series are created by whichever comes first
        h.observe(0.001 * t);
      }
    });
  }
  for (auto& t : threads) t.join();
  auto parsed = parse(r);
  ASSERT_TRUE(parsed.ok()) << parsed.status().to_string();
  EXPECT_EQ(sample_value(*parsed, "herald_c_total", "herald_c_total"), kThreads * kPerThread);
  EXPECT_EQ(parsed->at("herald_c_total").samples.size(), 8U);
  EXPECT_EQ(sample_value(*parsed, "herald_h_seconds", "herald_h_seconds_count"),
            kThreads * kPerThread);
}

// ---- The reader the e2e test checks a live node's scrape with must itself refuse bad text ----

TEST(MetricsParseTest, RefusesTextThatBreaksTheFormat) {
  std::vector<std::string> bad = {
      "herald_x 1",                                     // no final line feed
      "1bad 1\n",                                       // name
      "herald_x{a=\"b} 1\n",                            // unterminated value
      "herald_x{a=\"\\t\"} 1\n",                        // unknown escape
      "herald_x{__a=\"b\"} 1\n",                        // reserved label name
      "herald_x one\n",                                 // value
      "# TYPE herald_x counter\nherald_x -1\n",         // negative counter
      "herald_x 1\nherald_x 2\n",                       // repeated series
      "herald_x 1\nherald_y 1\nherald_x{a=\"b\"} 1\n",  // interleaved
      "# TYPE herald_x gauge\n# TYPE herald_x gauge\nherald_x 1\n",
  };
  // Histograms: no +Inf bucket; buckets not cumulative; _count different from +Inf.
  const std::string h = "# TYPE herald_h histogram\n";
  bad.push_back(h + "herald_h_bucket{le=\"1\"} 1\nherald_h_sum 1\nherald_h_count 1\n");
  bad.push_back(h + "herald_h_bucket{le=\"1\"} 2\nherald_h_bucket{le=\"+Inf\"} 1\n" +
                "herald_h_sum 1\nherald_h_count 1\n");
  bad.push_back(h + "herald_h_bucket{le=\"+Inf\"} 2\nherald_h_sum 1\nherald_h_count 3\n");
  for (const std::string& text : bad) {
    EXPECT_FALSE(parse_exposition(text).ok()) << text;
  }
  EXPECT_TRUE(
      parse_exposition("# some comment\n\nherald_x{a=\"b\",c=\"\"} 1.5e3 1700000000\n").ok());
}

}  // namespace
}  // namespace herald::metrics
