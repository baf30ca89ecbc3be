#include "server/rate_limiter.h"

#include <gtest/gtest.h>

#include <string>

namespace herald::server {
namespace {

constexpr RateLimit kTenPerSecondBurstThree{.per_second = 10, .burst = 3};

TEST(TokenBucketTest, BurstThenTheSustainedRate) {
  TokenBucket b(kTenPerSecondBurstThree, 0);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(b.take(kTenPerSecondBurstThree, 0)) << i;
  EXPECT_FALSE(b.take(kTenPerSecondBurstThree, 0));
  EXPECT_EQ(b.wait_ms(kTenPerSecondBurstThree, 0), 100);
  EXPECT_FALSE(b.take(kTenPerSecondBurstThree, 99));
  EXPECT_EQ(b.wait_ms(kTenPerSecondBurstThree, 99), 1);
  EXPECT_TRUE(b.take(kTenPerSecondBurstThree, 100));
  EXPECT_FALSE(b.take(kTenPerSecondBurstThree, 100));
}

TEST(TokenBucketTest, ARefusalCostsNothingAndIdleTimeRefillsOnlyToTheBurst) {
  TokenBucket b(kTenPerSecondBurstThree, 0);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(b.take(kTenPerSecondBurstThree, 0));
  for (int i = 0; i < 50; ++i) EXPECT_FALSE(b.take(kTenPerSecondBurstThree, 50));
  EXPECT_TRUE(b.take(kTenPerSecondBurstThree, 100));  // the refusals did not delay it
  EXPECT_FALSE(b.full(kTenPerSecondBurstThree, 200));
  EXPECT_TRUE(b.full(kTenPerSecondBurstThree, 60'000));
  int taken = 0;
  while (b.take(kTenPerSecondBurstThree, 60'000)) ++taken;
  EXPECT_EQ(taken, 3);
}

TEST(TokenBucketTest, TimeGoingBackwardsGrantsNothing) {
  TokenBucket b(kTenPerSecondBurstThree, 1'000);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(b.take(kTenPerSecondBurstThree, 1'000));
  EXPECT_FALSE(b.take(kTenPerSecondBurstThree, 0));
  EXPECT_FALSE(b.take(kTenPerSecondBurstThree, 1'050));
}

TEST(KeyedLimiterTest, KeysHaveTheirOwnBuckets) {
  KeyedLimiter l(kTenPerSecondBurstThree, 100);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(l.take("a", 0));
  EXPECT_FALSE(l.take("a", 0));
  EXPECT_GT(l.wait_ms("a", 0), 0);
  EXPECT_TRUE(l.take("b", 0));
  EXPECT_EQ(l.wait_ms("unknown", 0), 0);
}

TEST(KeyedLimiterTest, InventedKeysNeverGrowItBeyondItsBound) {
  KeyedLimiter l(kTenPerSecondBurstThree, 16);
  for (int i = 0; i < 10'000; ++i) {
    EXPECT_TRUE(l.take("k" + std::to_string(i), i / 100));
    EXPECT_LE(l.keys(), 16u);
  }
}

TEST(KeyedLimiterTest, ForgettingRefilledBucketsKeepsTheLimitedOnes) {
  KeyedLimiter l(kTenPerSecondBurstThree, 2);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(l.take("busy", 1'000));
  ASSERT_TRUE(l.take("idle", 0));
  // "idle" has refilled by 1000 ms and is forgotten to make room; "busy" keeps its empty bucket.
  EXPECT_TRUE(l.take("new", 1'000));
  EXPECT_FALSE(l.take("busy", 1'000));
}

TEST(KeyedLimiterTest, ADisabledLimitAdmitsEverything) {
  KeyedLimiter l(RateLimit{}, 1);
  for (int i = 0; i < 1'000; ++i) EXPECT_TRUE(l.take("a", 0));
  EXPECT_EQ(l.keys(), 0u);
}

}  // namespace
}  // namespace herald::server
