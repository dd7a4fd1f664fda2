// The ingest thread's loop; see ingest.h.
#include "ingest.h"

#include <pthread.h>

#include <unistd.h>
#include "kronop/clock.h"

#include <ctime>

#include "log.h"

namespace kronop::daemon {
Ingest::Ingest(std::unique_ptr<ipc::Consumer> consumer, IngestOptions options, IngestSink sink,
               IngestBatchEnd batch_end)
    : consumer_(std::move(consumer)),
      options_(options),
      sink_(std::move(sink)),
      batch_end_(std::move(batch_end)),
      tracks_(consumer_->ring_count()) {}

Ingest::~Ingest() { stop(); }

void Ingest::start() {
  if (options_.after_unclean_stop) {
    for (uint32_t i = 0; i < consumer_->ring_count(); ++i) {
      written_before_start_.push_back(
          consumer_->reader(i).control()->write_pos.load(std::memory_order_acquire));
    }
    replaying_ = true;
  }
  housekeeping();
  thread_ = std::thread([this] {
    ::pthread_setname_np(::pthread_self(), "kronop-ingest");
    run();
  });
}

void Ingest::stop() {
  if (!thread_.joinable()) return;
  stopping_.store(true, std::memory_order_release);
  consumer_->wake_for_shutdown();
  thread_.join();
}

void Ingest::handle(uint32_t ring, std::string_view record, uint64_t end_pos) {
  EnvelopeView view;
  Reject r = validator_.validate(record, view);
  if (r != Reject::kNone) {
    bump(counters_.rejects);
    bump(counters_.rejects_by_reason[static_cast<std::size_t>(r)]);
    KLOG_DEBUG("event=record_rejected ring=%u bytes=%zu reason=%s", ring, record.size(),
               reject_name(r));
    return;
  }
  // Per-producer order check: a ring has one producer at a time, so this is an array
  // lookup, not a map. A new producer id starts a new track.
  ProducerTrack &t = tracks_[ring];
  if (t.producer_id != view.producer_id) {
    t.producer_id = view.producer_id;
  } else if (view.producer_seq != t.last_seq + 1) {
    bump(view.producer_seq > t.last_seq ? counters_.seq_gaps : counters_.seq_regressions);
  }
  t.last_seq = view.producer_seq;
  const uint64_t now = realtime_ns();
  counters_.publish_to_ingest_ns.record(now > view.publish_time_ns ? now - view.publish_time_ns
                                                                   : 0);
  if (!options_.already_logged.empty()) {
    auto it = options_.already_logged.find(view.producer_id);
    if (it != options_.already_logged.end()) {
      if (view.producer_seq <= it->second) {
        bump(counters_.already_logged);
        return;
      }
      // Past what was logged: this producer's later records are all new.
      options_.already_logged.erase(it);
    }
  }
  if (replaying_ && options_.on_replay) {
    options_.on_replay(view, end_pos <= written_before_start_[ring]);
  }
  bump(counters_.records);
  bump(counters_.bytes, record.size());
  if (sink_) sink_(view);
}

void Ingest::housekeeping() {
  consumer_->heartbeat();
  if (std::size_t n = consumer_->reclaim_dead_leases(); n > 0) {
    bump(counters_.leases_reclaimed, n);
    KLOG_INFO("event=rings_reclaimed rings=%zu reason=\"producer exited without closing\"", n);
  }
  // Other processes' leases: kronopd's own ring (client interactions, REST posts) is not a
  // producer an operator attached.
  uint64_t attached = 0;
  const uint32_t self = static_cast<uint32_t>(::getpid());
  for (const auto &ring : consumer_->snapshot()) {
    attached += ring.lease != 0 && ipc::lease_pid(ring.lease) != self ? 1 : 0;
  }
  counters_.producers_attached.store(attached, std::memory_order_relaxed);
  counters_.corrupt_ranges.store(consumer_->corrupt_ranges(), std::memory_order_relaxed);
}

void Ingest::run() {
  uint64_t next_housekeeping = monotonic_ms() + 100;
  uint64_t corrupt_seen = 0;
  bool had_records = true;
  while (!stopping_.load(std::memory_order_acquire)) {
    std::size_t n = consumer_->drain(options_.batch_per_ring,
                                     [this](uint32_t ring, const ipc::RingRecord &rec) {
                                       handle(ring, rec.bytes, rec.end_pos);
                                     });
    if (n > 0 && batch_end_) batch_end_();
    if (replaying_) {
      replaying_ = false;
      for (uint32_t i = 0; i < written_before_start_.size(); ++i) {
        if (consumer_->reader(i).read_pos() < written_before_start_[i]) replaying_ = true;
      }
    }
    release(n > 0);
    uint64_t corrupt = consumer_->corrupt_ranges();
    if (corrupt != corrupt_seen) {
      KLOG_WARN("event=corrupt_ranges_skipped ranges=%llu",
                static_cast<unsigned long long>(corrupt - corrupt_seen));
      corrupt_seen = corrupt;
      counters_.corrupt_ranges.store(corrupt, std::memory_order_relaxed);
    }
    const uint64_t now = monotonic_ms();
    if (now >= next_housekeeping) {
      housekeeping();
      next_housekeeping = now + 100;
    }
    if (n == 0) {
      if (options_.on_idle) options_.on_idle();
      bump(counters_.idle_waits);
      // Spin only right after records arrived: that is when the next one is likely to be
      // microseconds away. After an idle timeout nothing is coming, so sleep at once.
      // Positions waiting for the log's commit: look again soon, the producers want the room.
      consumer_->wait_for_records(had_records ? options_.spin_ns : 0,
                                  pending_.empty() ? options_.idle_timeout_ms : 1);
    }
    had_records = n > 0;
  }
  // Drain what is already committed so a clean stop leaves nothing read-but-unreleased;
  // bounded, since producers may keep publishing while we stop.
  const uint64_t give_up = monotonic_ms() + options_.stop_drain_ms;
  while (
      monotonic_ms() < give_up &&
      consumer_->drain(options_.batch_per_ring, [this](uint32_t ring, const ipc::RingRecord &rec) {
        handle(ring, rec.bytes, rec.end_pos);
      }) > 0) {
    if (batch_end_) batch_end_();
    release(true);
  }
  if (options_.log == nullptr) consumer_->release_all_read();
  // With a log, what it has not committed stays in the rings for the next start (the log
  // commits what was submitted when it stops, after this thread).
}

void Ingest::release_logged() {
  if (thread_.joinable() || options_.log == nullptr) return;
  const std::size_t waiting = pending_.size();
  release(false);
  if (waiting > 0 && pending_.empty()) {
    KLOG_DEBUG("event=rings_released passes=%zu", waiting);
  }
}

void Ingest::release(bool read_something) {
  if (options_.log == nullptr) {
    consumer_->release_all_read();
    return;
  }
  if (read_something) {
    PendingRelease p;
    p.batch = options_.log->submitted();
    p.read_pos.resize(consumer_->ring_count());
    for (uint32_t i = 0; i < consumer_->ring_count(); ++i) {
      p.read_pos[i] = consumer_->reader(i).read_pos();
    }
    pending_.push_back(std::move(p));
  }
  const uint64_t committed = options_.log->committed();
  std::size_t done = 0;
  while (done < pending_.size() && pending_[done].batch <= committed) ++done;
  if (done == 0) return;
  // The newest committed positions free everything before them.
  const PendingRelease &last = pending_[done - 1];
  for (uint32_t i = 0; i < consumer_->ring_count(); ++i)
    consumer_->reader(i).release(last.read_pos[i]);
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(done));
}

}  // namespace kronop::daemon
