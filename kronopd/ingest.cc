// Intake of ring records; see ingest.h.
#include "ingest.h"
#include "kronop/ipc/shrink_guard.h"

#include <unistd.h>

#include "kronop/clock.h"
#include "log.h"

namespace kronop::daemon {
namespace {
constexpr uint64_t kSegmentFindingsMs = 60'000;
}  // namespace

Result<std::unique_ptr<ipc::Consumer>> attach_segment(const Config &config) {
  // Every mapping of the segment kronopd makes from here on (this one, and its own
  // producer's) survives the file being shrunk by a producer.
  ipc::protect_from_shrinking();
  std::string note;
  auto consumer = ipc::Consumer::attach(
      ipc::SegmentOptions{config.shm_name, config.rings, config.ring_size}, &note);
  if (consumer.ok()) {
    KLOG_INFO("event=segment_attached shm=%s note=%s epoch=%llu", log::q(config.shm_name).c_str(),
              log::q(note).c_str(), static_cast<unsigned long long>(consumer.value()->epoch()));
  }
  return consumer;
}

Ingest::Ingest(ipc::Consumer &consumer, std::unordered_map<uint64_t, uint64_t> already_logged)
    : consumer_(consumer),
      already_logged_(std::move(already_logged)),
      // The rings of a retired segment still being read come after the current ones.
      tracks_(2 * std::size_t{consumer.ring_count()}) {}

bool Ingest::take(uint32_t ring, const ipc::RingRecord &record, EnvelopeView &view) {
  Reject r = validator_.validate(record.bytes, view, ipc::kRecordSlack);
  if (r != Reject::kNone) {
    bump_owned(counters_.rejects);
    bump_owned(counters_.rejects_by_reason[static_cast<std::size_t>(r)]);
    KLOG_DEBUG("event=record_rejected ring=%u bytes=%zu reason=%s", ring, record.bytes.size(),
               reject_name(r));
    return false;
  }
  // Per-producer order check: a ring has one producer at a time, so this is an array
  // lookup, not a map. A new producer id starts a new track.
  ProducerTrack &t = tracks_[ring];
  if (t.producer_id != view.producer_id) {
    t.producer_id = view.producer_id;
  } else if (view.producer_seq != t.last_seq + 1) {
    bump_owned(view.producer_seq > t.last_seq ? counters_.seq_gaps : counters_.seq_regressions);
  }
  t.last_seq = view.producer_seq;
  const uint64_t now = realtime_ns();
  counters_.publish_to_ingest_ns.record(now > view.publish_time_ns ? now - view.publish_time_ns
                                                                   : 0);
  if (!already_logged_.empty()) {
    auto it = already_logged_.find(view.producer_id);
    if (it != already_logged_.end()) {
      if (view.producer_seq <= it->second) {
        bump_owned(counters_.already_logged);
        return false;
      }
      // Past what was logged: this producer's later records are all new.
      already_logged_.erase(it);
    }
  }
  bump_owned(counters_.records);
  bump_owned(counters_.bytes, record.bytes.size());
  return true;
}

void Ingest::housekeeping() {
  consumer_.heartbeat();
  if (ipc::Consumer::SegmentCheck c = consumer_.check_segment(); !c.problem.empty()) {
    const uint64_t now = monotonic_ms();
    const uint64_t previous = counters_.segment_repaired_ms.load(std::memory_order_relaxed);
    bump_owned(counters_.segment_repairs);
    counters_.segment_repaired_ms.store(now, std::memory_order_relaxed);
    {
      // One damage often takes more than one check to put right (a lost page is found when
      // it is touched): findings of the last minute are kept together, at most ~1 KiB.
      std::lock_guard<std::mutex> lock(counters_.segment_problem_mutex);
      std::string &p = counters_.segment_problem;
      if (previous == 0 || now - previous > kSegmentFindingsMs) {
        p = c.problem;
      } else if (p.find(c.problem) == std::string::npos && p.size() < 1024) {
        p += "; then " + c.problem;
      }
    }
    uint64_t suppressed = 0;
    if (repair_log_.allow(now, &suppressed)) {
      KLOG_ERROR("event=segment_repaired problem=%s faults=%llu suppressed=%llu",
                 log::q(c.problem).c_str(), static_cast<unsigned long long>(c.faults),
                 static_cast<unsigned long long>(suppressed));
    }
    if (c.recreated && on_recreated_) on_recreated_();
  }
  if (std::size_t n = consumer_.reclaim_dead_leases(); n > 0) {
    bump_owned(counters_.leases_reclaimed, n);
    KLOG_INFO("event=rings_reclaimed rings=%zu reason=\"producer exited without closing\"", n);
  }
  // Other processes' leases: kronopd's own ring (client interactions, REST posts) is not a
  // producer an operator attached.
  uint64_t attached = 0;
  const uint32_t self = static_cast<uint32_t>(::getpid());
  for (const auto &ring : consumer_.snapshot()) {
    attached += ring.lease != 0 && ipc::lease_pid(ring.lease) != self ? 1 : 0;
  }
  counters_.producers_attached.store(attached, std::memory_order_relaxed);
  counters_.corrupt_ranges.store(consumer_.corrupt_ranges(), std::memory_order_relaxed);
}

void Ingest::note_corrupt_ranges() {
  const uint64_t corrupt = consumer_.corrupt_ranges();
  if (corrupt == corrupt_logged_) return;
  counters_.corrupt_ranges.store(corrupt, std::memory_order_relaxed);
  // A producer can corrupt its ring at will: its lines are throttled like a client's
  // faults, and the next line allowed counts every range skipped since the last one.
  uint64_t suppressed = 0;
  if (!corrupt_log_.allow(monotonic_ms(), &suppressed)) return;
  KLOG_WARN("event=corrupt_ranges_skipped ranges=%llu suppressed=%llu",
            static_cast<unsigned long long>(corrupt - corrupt_logged_),
            static_cast<unsigned long long>(suppressed));
  corrupt_logged_ = corrupt;
}

}  // namespace kronop::daemon
