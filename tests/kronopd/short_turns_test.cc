// The log writer's short turns on a CPU (kronopd/short_turns.h).
#include "short_turns.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

namespace kronop::daemon {
namespace {

using std::chrono::microseconds;

TEST(ShortTurns, NoYieldWithinATurn) {
  ShortTurns turns(microseconds(10'000'000));
  turns.begin();
  for (int i = 0; i < 1000; ++i) turns.step();
  EXPECT_EQ(turns.yields(), 0u);
}

TEST(ShortTurns, YieldsOncePerTurnAndStartsAnother) {
  ShortTurns turns(microseconds(100'000));
  turns.begin();
  std::this_thread::sleep_for(std::chrono::milliseconds(110));
  turns.step();
  EXPECT_EQ(turns.yields(), 1u);
  // A new turn began at the yield: the next steps are within it.
  turns.step();
  turns.step();
  EXPECT_EQ(turns.yields(), 1u);
}

TEST(ShortTurns, BeginStartsAFreshTurn) {
  ShortTurns turns(microseconds(100'000));
  turns.begin();
  std::this_thread::sleep_for(std::chrono::milliseconds(110));
  turns.begin();  // woken: what came before was not a turn on the CPU
  turns.step();
  EXPECT_EQ(turns.yields(), 0u);
}

TEST(ShortTurns, ZeroTurnYieldsAtEveryStep) {
  ShortTurns turns(microseconds(0));
  turns.begin();
  for (int i = 0; i < 10; ++i) turns.step();
  EXPECT_EQ(turns.yields(), 10u);
}

}  // namespace
}  // namespace kronop::daemon
