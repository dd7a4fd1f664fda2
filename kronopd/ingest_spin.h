// Whether the ingest thread polls the rings before it sleeps, learned from how the last waits
// ended. Polling pays when the next record is microseconds away: the thread takes it at once
// and the producer, which finds the thread awake, makes no wake-up system call. It costs a
// core when records come further apart than the poll lasts: every poll then runs to its end
// for nothing, and on a host without an idle core it delays the threads waiting for one (the
// daemon's loops, Redis, the producers). So the thread polls for the whole window while most
// recent waits ended with records inside it, and sleeps at once while they did not.
//
// A wait is judged by how long it lasted: spinning, that is when the record came; sleeping,
// it also holds the wake-up, so a stream whose gaps plus the wake-up fit the window turns
// polling back on. The caller gives the times, so tests drive it directly.
#pragma once

#include <cstdint>

namespace kronop::daemon {

class IngestSpin {
 public:
  // `window_ns`: the longest poll (--ingest-spin-us); 0 never polls.
  explicit IngestSpin(uint64_t window_ns) : window_ns_(window_ns) {}

  // The poll for the next wait: the whole window, or 0.
  uint64_t next_ns() const { return score_ >= kHalf ? window_ns_ : 0; }

  // After a wait that followed a pass with records: it lasted `waited_ns`, and the pass after
  // it found records (`records`) or not (woken for something else, or the timeout).
  void observe(bool records, uint64_t waited_ns) {
    if (window_ns_ == 0) return;
    if (records) {
      move(waited_ns <= window_ns_ ? kFull : 0);
    } else if (waited_ns > window_ns_) {
      move(0);  // nothing came within the window
    }
    // Woken early with nothing to read: says nothing about the next record.
  }

 private:
  // The share of recent waits that ended inside the window, in 1/1024ths, each new wait
  // weighing 1/8.
  static constexpr int32_t kFull = 1024;
  static constexpr int32_t kHalf = kFull / 2;
  void move(int32_t target) { score_ += (target - score_) / 8; }

  uint64_t window_ns_;
  int32_t score_ = kFull;  // starts polling: a stream usually begins with a burst
};

}  // namespace kronop::daemon
