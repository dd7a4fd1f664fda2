// The ingest thread's adaptive poll (kronopd/ingest_spin.h), driven with given times.
#include "ingest_spin.h"

#include <gtest/gtest.h>

namespace kronop::daemon {
namespace {

constexpr uint64_t kWindow = 50'000;

TEST(IngestSpin, PollsAtFirst) {
  IngestSpin spin(kWindow);
  EXPECT_EQ(spin.next_ns(), kWindow);
}

TEST(IngestSpin, ZeroWindowNeverPolls) {
  IngestSpin spin(0);
  for (int i = 0; i < 100; ++i) spin.observe(true, 1'000);
  EXPECT_EQ(spin.next_ns(), 0u);
}

TEST(IngestSpin, KeepsPollingWhileRecordsComeWithinTheWindow) {
  IngestSpin spin(kWindow);
  for (int i = 0; i < 1000; ++i) {
    spin.observe(true, 10'000);
    ASSERT_EQ(spin.next_ns(), kWindow) << i;
  }
}

TEST(IngestSpin, StopsWhenRecordsComeFurtherApartThanTheWindow) {
  IngestSpin spin(kWindow);
  int waits = 0;
  while (spin.next_ns() != 0) {
    spin.observe(true, 100'000);  // 10,000 records/s, evenly spread
    ASSERT_LT(++waits, 20);
  }
  // A few waits of evidence, not one: a single late record does not stop it.
  EXPECT_GE(waits, 3);
  for (int i = 0; i < 100; ++i) spin.observe(true, 100'000);
  EXPECT_EQ(spin.next_ns(), 0u);
}

TEST(IngestSpin, TimeoutsWithNothingCountAgainstPolling) {
  IngestSpin spin(kWindow);
  for (int i = 0; i < 20; ++i) spin.observe(false, 100'000'000);
  EXPECT_EQ(spin.next_ns(), 0u);
}

TEST(IngestSpin, EarlyWakeWithNothingSaysNothing) {
  IngestSpin spin(kWindow);
  for (int i = 0; i < 20; ++i) spin.observe(false, 100'000'000);
  ASSERT_EQ(spin.next_ns(), 0u);
  for (int i = 0; i < 1000; ++i) spin.observe(false, 5'000);
  EXPECT_EQ(spin.next_ns(), 0u);
}

TEST(IngestSpin, PollsAgainWhenTheStreamQuickens) {
  IngestSpin spin(kWindow);
  for (int i = 0; i < 100; ++i) spin.observe(true, 100'000);
  ASSERT_EQ(spin.next_ns(), 0u);
  // Sleeping, a wait holds the gap and the wake-up: both inside the window turn polling on.
  int waits = 0;
  while (spin.next_ns() == 0) {
    spin.observe(true, 20'000);
    ASSERT_LT(++waits, 20);
  }
  EXPECT_EQ(spin.next_ns(), kWindow);
}

TEST(IngestSpin, MostlyLateRecordsStopPolling) {
  IngestSpin spin(kWindow);
  // One in four records inside the window: polling mostly runs to its end for nothing.
  for (int i = 0; i < 400; ++i) spin.observe(true, i % 4 == 0 ? 10'000 : 80'000);
  EXPECT_EQ(spin.next_ns(), 0u);
  // Three in four inside: it pays.
  for (int i = 0; i < 400; ++i) spin.observe(true, i % 4 == 0 ? 80'000 : 10'000);
  EXPECT_EQ(spin.next_ns(), kWindow);
}

}  // namespace
}  // namespace kronop::daemon
