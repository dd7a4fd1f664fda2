// The token bucket behind the per-connection message rate limit.
#include <gtest/gtest.h>

#include "rate_limit.h"

namespace kronop::daemon {
namespace {

TEST(RateLimiter, BurstThenSteadyRate) {
  RateLimiter r(10, 5, 1000);  // 10/s, bursts of 5
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(r.allow(1000)) << i;
  EXPECT_FALSE(r.allow(1000)) << "the burst is spent";
  EXPECT_FALSE(r.allow(1099)) << "0.99 of a token after 99 ms";
  EXPECT_TRUE(r.allow(1100)) << "one token per 100 ms";
  EXPECT_FALSE(r.allow(1100));
  // Over a long run the average is the rate.
  int allowed = 0;
  for (uint64_t t = 2000; t < 12000; t += 7) allowed += r.allow(t) ? 1 : 0;
  EXPECT_GE(allowed, 100);
  EXPECT_LE(allowed, 106);  // 10 s at 10/s, plus at most the burst
}

TEST(RateLimiter, IdleTimeRefillsOnlyUpToTheBurst) {
  RateLimiter r(100, 3, 0);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(r.allow(0));
  EXPECT_FALSE(r.allow(0));
  // An hour idle is worth 3 tokens, not 360,000.
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(r.allow(3'600'000)) << i;
  EXPECT_FALSE(r.allow(3'600'000));
}

TEST(RateLimiter, ZeroRateMeansNoLimit) {
  RateLimiter r(0, 1, 0);
  for (int i = 0; i < 10000; ++i) ASSERT_TRUE(r.allow(0));
}

TEST(RateLimiter, TimeGoingBackwardsGrantsNothing) {
  RateLimiter r(1, 1, 5000);
  EXPECT_TRUE(r.allow(5000));
  EXPECT_FALSE(r.allow(1000));
  EXPECT_FALSE(r.allow(5999));
  EXPECT_TRUE(r.allow(6000));
}

}  // namespace
}  // namespace kronop::daemon
