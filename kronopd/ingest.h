// The ingest stage: one thread drains every producer ring, validates each record once and
// counts what it saw. What passes goes to the IngestSink (the fan-out and durability
// stages plug in there); what fails is counted by reason and skipped.
//
// Counters are atomics written only by the ingest thread (load + store, no RMW) and read
// by the control socket's thread, so reading them costs the hot path nothing.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <unordered_map>
#include <vector>

#include "envelope_validation.h"
#include "kronop/ipc/consumer.h"
#include "latency_histogram.h"
#include "log_store.h"

namespace kronop::daemon {

struct IngestOptions {
  // How long the thread polls empty rings before it sleeps on the futex.
  uint64_t spin_ns = 50'000;
  // Longest sleep: the heartbeat and lease reclaim run at least this often.
  int idle_timeout_ms = 100;
  // Records taken from one ring before moving to the next (fairness between producers).
  std::size_t batch_per_ring = 256;
  // The durable log, when there is one: the positions a drain pass read are released to the
  // producers only once the log has committed what that pass submitted (the batch-end
  // callback submits it), so an accepted record is always in the log or in its ring.
  LogStore *log = nullptr;
  // producer id -> the last producer seq the log holds: records of that producer up to it
  // were logged (and delivered) before a restart, and are skipped when read again.
  std::unordered_map<uint64_t, uint64_t> already_logged;
  // After an unclean stop (kronopd killed), the records the rings held at start may have been
  // fanned out, numbered, by the run that died before logging them. Read again now, each
  // producer's come in the same order, so a topic fed by one producer gets the same seqs;
  // but where records of two producers meet on a topic, the interleaving (and so the
  // numbering) may differ from what clients saw. Until every ring is read past what it held
  // at start, each record is shown to on_replay (`replayed`: it is one of those), and the
  // caller gives such topics a new epoch.
  bool after_unclean_stop = false;
  std::function<void(const EnvelopeView &, bool replayed)> on_replay;
  // On stop(): how long the thread goes on reading records that are already in the rings
  // (what it reads is fanned out and submitted to the log). 0: it stops at once, and what is
  // unread stays in the rings for the next start.
  uint64_t stop_drain_ms = 1000;
  // Called on the ingest thread after a drain pass that found nothing, before it waits:
  // other work the thread does (the dispatcher's answers to the loops). Wake the thread
  // for it with consumer().wake().
  std::function<void()> on_idle;
};

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
  std::atomic<uint64_t> already_logged{0};  // re-read after a restart, skipped
  // Publish (the producer's clock) to validated by ingest, in nanoseconds. Same host, so
  // both sides read the same CLOCK_REALTIME; a record "from the future" counts as 0.
  LatencyHistogram publish_to_ingest_ns;
};

// Called on the ingest thread for every valid record; the view is valid during the call.
using IngestSink = std::function<void(const EnvelopeView &)>;
// Called on the ingest thread after each drain pass that delivered records, so a stage can
// hand them on in one batch (one lock, one wake-up) rather than one by one.
using IngestBatchEnd = std::function<void()>;

class Ingest {
 public:
  Ingest(std::unique_ptr<ipc::Consumer> consumer, IngestOptions options, IngestSink sink,
         IngestBatchEnd batch_end = nullptr);
  ~Ingest();  // stops and joins

  void start();
  void stop();
  // After stop(), once the log has stopped too (it commits everything submitted): releases
  // the ring positions of what it committed, so the next start does not read those records
  // again. Without a log, stop() released them already.
  void release_logged();

  const IngestCounters &counters() const { return counters_; }
  ipc::Consumer &consumer() { return *consumer_; }

 private:
  void run();
  void handle(uint32_t ring, std::string_view record, uint64_t end_pos);
  void housekeeping();
  // After a drain pass: releases what may be released (everything, or with a log, what it
  // has committed).
  void release(bool read_something);
  static void bump(std::atomic<uint64_t> &c, uint64_t n = 1) {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }

  std::unique_ptr<ipc::Consumer> consumer_;
  IngestOptions options_;
  IngestSink sink_;
  IngestBatchEnd batch_end_;
  EnvelopeValidator validator_;
  IngestCounters counters_;
  // Per ring: the producer whose records we last saw, and its last sequence.
  struct ProducerTrack {
    uint64_t producer_id = 0;
    uint64_t last_seq = 0;
  };
  std::vector<ProducerTrack> tracks_;
  // Per ring: where the records written before this start end (after an unclean stop).
  std::vector<uint64_t> written_before_start_;
  bool replaying_ = false;  // some ring is not yet read past written_before_start_
  struct PendingRelease {
    uint64_t batch = 0;              // the log batch that covers these positions
    std::vector<uint64_t> read_pos;  // per ring
  };
  std::vector<PendingRelease> pending_;  // oldest first
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace kronop::daemon
