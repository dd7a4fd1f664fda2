// Short turns on a CPU for a background thread (the log's writer).
//
// A niced thread is not preempted at once when a thread of fan-out wakes on its CPU: the
// scheduler lets the running thread finish its slice, and notices the waiting one at the
// next tick (4 ms at HZ=250), even when the other CPU is idle. On a busy 2-core host a
// 3 ms transaction of the writer then held an I/O thread (or a producer) that long: p99
// delivery 4.2 ms against 1.2 ms without the log (bench/RESULTS.md, section (o)). So the
// writer steps aside every `turn` of work: sched_yield(2) hands the CPU to a thread waiting
// for it and returns at once when none is.
#pragma once

#include <sched.h>

#include <chrono>
#include <cstdint>

namespace kronop::daemon {

class ShortTurns {
 public:
  explicit ShortTurns(std::chrono::microseconds turn) : turn_(turn) {}

  // The thread starts a turn (it has just woken).
  void begin() { since_ = std::chrono::steady_clock::now(); }

  // Between two pieces of work: past the turn, yield and start another.
  void step() {
    const auto now = std::chrono::steady_clock::now();
    if (now - since_ < turn_) return;
    ::sched_yield();
    ++yields_;
    since_ = std::chrono::steady_clock::now();
  }

  uint64_t yields() const { return yields_; }

 private:
  std::chrono::microseconds turn_;
  std::chrono::steady_clock::time_point since_{};
  uint64_t yields_ = 0;
};

}  // namespace kronop::daemon
