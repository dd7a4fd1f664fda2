// The daemon's side of the segment: attaches as the segment's daemon (identity, epoch,
// heartbeat), reads every ring through a RingReader, sleeps when all are empty (wakeup.h),
// and frees the leases of producers that died once their committed records are drained.
//
// When the segment's file is removed or replaced under it, the consumer creates a new
// segment under the name (Segment::create_in_place) and retires the old one: producers
// attached to it get KRONOP_ENODAEMON at their next publish and open the name again, while
// the consumer reads the old rings to their end. The old segment is let go once no live
// producer holds one of its rings and nothing is left to read: what it held is not lost.
//
// Used by one thread (kronopd's ingest thread); wake(), wake_for_shutdown(), snapshot(),
// wake_calls() and ring_capacity() may be called from any.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kronop/ipc/ring_reader.h"
#include "kronop/ipc/segment.h"
#include "kronop/result.h"

namespace kronop::ipc {

struct RingSnapshot {
  uint32_t index;
  uint64_t lease;
  uint64_t producer_id;
  uint64_t used_bytes;  // committed, not yet released
  uint64_t records_published;
  uint64_t refused_full;
  uint64_t refused_too_large;
};

class Consumer {
 public:
  // Creates or re-attaches the segment and records this process as its daemon.
  static Result<std::unique_ptr<Consumer>> attach(const SegmentOptions &options, std::string *note);
  ~Consumer();

  // Reads up to `per_ring` records from every ring in turn, calling fn(ring_index, record).
  // Returns how many records it handed out. Records stay unreleased until release().
  // The rings of a retired segment still being read come after the current ones, as ring
  // ring_count() + i; their records are released as soon as they are handed out (their
  // file is no longer under the name, so no later start could read them again anyway).
  template <class Fn>
  std::size_t drain(std::size_t per_ring, Fn &&fn) {
    std::size_t total = 0;
    RingRecord record;
    for (uint32_t i = 0; i < readers_.size(); ++i) {
      RingReader &reader = readers_[i];
      for (std::size_t n = 0; n < per_ring && reader.next(record); ++n) {
        fn(i, record);
        ++total;
      }
    }
    for (uint32_t i = 0; i < retiring_readers_.size(); ++i) {
      RingReader &reader = retiring_readers_[i];
      for (std::size_t n = 0; n < per_ring && reader.next(record); ++n) {
        fn(ring_count() + i, record);
        ++total;
      }
      if (reader.released_pos() != reader.read_pos()) reader.release(reader.read_pos());
    }
    return total;
  }

  // Frees everything read so far in every ring.
  void release_all_read();
  RingReader &reader(uint32_t index) { return readers_[index]; }
  uint32_t ring_count() const { return static_cast<uint32_t>(readers_.size()); }

  // Waits for work: spins for up to spin_ns checking every ring, then sleeps on the futex
  // for at most timeout_ms. Returns early when wake() or wake_for_shutdown() is called.
  void wait_for_records(uint64_t spin_ns, int timeout_ms);
  // Any thread: the consumer has other work (it returns from, or skips, its next wait once).
  void wake();
  void wake_for_shutdown();

  // Refreshes the heartbeat in the segment header.
  void heartbeat();
  // Frees the rings whose holder died and whose records are all released. Returns how many.
  std::size_t reclaim_dead_leases();

  // Now and then (the ingest thread's housekeeping): restores the segment (Segment::restore)
  // and every ring's release_pos, which only the daemon writes; a ring whose positions were
  // changed under it is emptied from where the daemon read (write_pos = read position). A
  // segment file removed or replaced is created again (see the top of this file), and a
  // retired segment read to its end is let go.
  struct SegmentCheck {
    std::string problem;       // "" when all was well
    uint32_t rings_reset = 0;  // rings whose positions were put back
    uint64_t faults = 0;       // SIGBUSes contained since the last check (shrink_guard.h)
    bool recreated = false;    // the segment file was created again
  };
  SegmentCheck check_segment();

  // Counts the segments created again so far: readers of ring positions (durability.h)
  // drop positions they took from an earlier one.
  uint64_t generation() const { return generation_; }
  // Whether a retired segment is still being read.
  bool retiring() const { return retiring_ != nullptr; }

  std::vector<RingSnapshot> snapshot() const;
  uint64_t corrupt_ranges() const;
  uint64_t wake_calls() const;
  uint64_t epoch() const { return epoch_; }
  uint64_t ring_capacity() const { return capacity_; }
  // The current segment (the ingest thread only: it may be replaced by check_segment()).
  const Segment &segment() const { return *segment_; }

 private:
  explicit Consumer(std::unique_ptr<Segment> segment);
  bool any_pending() const;
  static std::vector<RingReader> readers_of(const Segment &segment);
  std::string recreate(Segment::Named named);
  void let_go_if_drained();

  // The segment and its readers are replaced only by the ingest thread, under swap_mutex_;
  // other threads read them under it.
  mutable std::mutex swap_mutex_;
  std::unique_ptr<Segment> segment_;
  std::vector<RingReader> readers_;
  // A retired segment not yet read to its end, and its readers.
  std::unique_ptr<Segment> retiring_;
  std::vector<RingReader> retiring_readers_;
  uint64_t capacity_ = 0;
  uint64_t generation_ = 0;
  uint64_t corrupt_let_go_ = 0;  // corrupt ranges counted by readers let go since
  uint64_t epoch_ = 0;
  uint64_t start_ticks_ = 0;
  uint64_t faults_seen_ = 0;
  std::atomic<bool> shutdown_{false};
  std::atomic<bool> poked_{false};  // wake() since the last wait
};

}  // namespace kronop::ipc
