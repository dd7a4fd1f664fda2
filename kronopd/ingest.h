// Intake: the pipeline's first stage (pipeline.h). Takes each record the ring readers copied
// out of shared memory (ring_reader.h: the bytes are read from the ring once), validates
// that copy, and passes on only what is valid and new; what fails is counted by reason and
// skipped, so that nothing a producer writes can crash kronopd or reach a client unchecked.
//
// It also keeps, per ring, the producer whose records it last saw and that producer's last
// sequence (a gap or a regression is counted), the publish-to-ingest latency, and, after a
// restart, each producer's last logged sequence: records read again that the log already
// holds are skipped, so nothing is logged or delivered twice.
//
// Counters are atomics written only by the ingest thread (load + store, no RMW) and read
// by the control socket's thread, so reading them costs the hot path nothing.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "config.h"
#include "envelope_validation.h"
#include "kronop/ipc/consumer.h"
#include "latency_histogram.h"
#include "log.h"
#include "owned_counter.h"

namespace kronop::daemon {

// The segment of `config` (--shm-name, --rings, --ring-size), created or re-attached as
// this daemon's; the line that says so names what was found. From here on the process's
// mappings of it are guarded against shrinking (kronop/ipc/shrink_guard.h).
Result<std::unique_ptr<ipc::Consumer>> attach_segment(const Config &config);

struct IngestCounters {
  std::atomic<uint64_t> records{0};  // valid records
  std::atomic<uint64_t> bytes{0};    // their bytes
  std::atomic<uint64_t> rejects{0};
  std::array<std::atomic<uint64_t>, static_cast<std::size_t>(Reject::kCount)> rejects_by_reason{};
  std::atomic<uint64_t> corrupt_ranges{0};
  std::atomic<uint64_t> seq_gaps{0};         // a producer's sequence skipped ahead
  std::atomic<uint64_t> seq_regressions{0};  // a producer's sequence repeated or went back
  std::atomic<uint64_t> producers_attached{0};
  std::atomic<uint64_t> leases_reclaimed{0};
  std::atomic<uint64_t> idle_waits{0};
  // Waits that polled the rings first (ingest_spin.h), and those whose poll found records.
  std::atomic<uint64_t> polled_waits{0};
  std::atomic<uint64_t> polls_caught{0};
  std::atomic<uint64_t> already_logged{0};  // re-read after a restart, skipped
  // Publish (the producer's clock) to validated by ingest, in nanoseconds. Same host, so
  // both sides read the same CLOCK_REALTIME; a record "from the future" counts as 0.
  LatencyHistogram publish_to_ingest_ns;
  // Repairs of the segment (ipc::Consumer::check_segment: shrunk, header overwritten, ring
  // positions changed by someone else): how many, and the last one's finding and time
  // (monotonic ms). Written by the ingest thread; the text is read under the mutex.
  std::atomic<uint64_t> segment_repairs{0};
  std::atomic<uint64_t> segment_repaired_ms{0};
  mutable std::mutex segment_problem_mutex;
  std::string segment_problem;
};

class Ingest {
 public:
  // `already_logged`: producer id -> the last producer seq the durable log holds.
  Ingest(ipc::Consumer &consumer, std::unordered_map<uint64_t, uint64_t> already_logged);

  // Ingest thread: one record read from ring `ring` (the reader's copy). True when it goes
  // on, with `out` pointing into its bytes; false when it was rejected or is already logged.
  bool take(uint32_t ring, const ipc::RingRecord &record, EnvelopeView &out);
  // Ingest thread, about every 100 ms: the segment's heartbeat, its repair when someone
  // damaged it (logged, throttled, and reported by health), dead producers' leases, and the
  // counters read from the segment.
  void housekeeping();
  // Ingest thread, after each drain pass: corrupt ranges the readers skipped, counted and
  // logged (throttled).
  void note_corrupt_ranges();
  void count_idle_wait(bool polled) {
    bump_owned(counters_.idle_waits);
    if (polled) bump_owned(counters_.polled_waits);
  }
  void count_poll_caught() { bump_owned(counters_.polls_caught); }
  // Before the thread starts: called on the ingest thread each time the segment was created
  // again, so that holders of rings in the retired one inside this process let them go.
  void on_segment_recreated(std::function<void()> hook) { on_recreated_ = std::move(hook); }

  const IngestCounters &counters() const { return counters_; }

 private:
  ipc::Consumer &consumer_;
  std::unordered_map<uint64_t, uint64_t> already_logged_;
  EnvelopeValidator validator_;
  IngestCounters counters_;
  // Per ring: the producer whose records we last saw, and its last sequence.
  struct ProducerTrack {
    uint64_t producer_id = 0;
    uint64_t last_seq = 0;
  };
  std::vector<ProducerTrack> tracks_;
  uint64_t corrupt_logged_ = 0;  // corrupt ranges the log lines have reported
  log::Throttle corrupt_log_;
  log::Throttle repair_log_;
  std::function<void()> on_recreated_;
};

}  // namespace kronop::daemon
