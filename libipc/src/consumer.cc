// The daemon's consumer side of the segment; see consumer.h.
#include "kronop/ipc/consumer.h"
#include "kronop/clock.h"

#include <immintrin.h>
#include <unistd.h>
#include <algorithm>
#include <ctime>

#include "kronop/ipc/process_identity.h"
#include "kronop/ipc/shrink_guard.h"
#include "kronop/ipc/wakeup.h"

namespace kronop::ipc {
namespace {
// How often the ingest thread looks at a retired segment's rings when idle.
constexpr int kRetiringPollMs = 10;
}  // namespace

Result<std::unique_ptr<Consumer>> Consumer::attach(const SegmentOptions &options,
                                                   std::string *note) {
  auto segment = Segment::attach_as_daemon(options, note);
  if (!segment.ok()) return segment.error();
  return std::unique_ptr<Consumer>(new Consumer(std::move(segment).value()));
}

std::vector<RingReader> Consumer::readers_of(const Segment &segment) {
  const auto &g = segment.geometry();
  std::vector<RingReader> readers;
  readers.reserve(g.ring_count);
  for (uint32_t i = 0; i < g.ring_count; ++i)
    readers.emplace_back(segment.ring(i), g.ring_capacity);
  return readers;
}

Consumer::Consumer(std::unique_ptr<Segment> segment)
    : segment_(std::move(segment)),
      readers_(readers_of(*segment_)),
      capacity_(segment_->geometry().ring_capacity) {
  SegmentHeader *hdr = segment_->header();
  start_ticks_ = process_start_ticks(::getpid()).value_or(0);
  hdr->daemon_start_ticks.store(start_ticks_, std::memory_order_relaxed);
  hdr->daemon_pid.store(static_cast<uint32_t>(::getpid()), std::memory_order_release);
  epoch_ = hdr->epoch.fetch_add(1, std::memory_order_acq_rel) + 1;
  hdr->consumer_sleeping.store(0, std::memory_order_relaxed);
  heartbeat();
}

Consumer::~Consumer() {
  // The segment stays (producers keep publishing into it while no daemon runs); only our
  // identity goes, so that the next daemon does not think we are still attached.
  for (Segment *segment : {segment_.get(), retiring_.get()}) {
    if (segment == nullptr) continue;
    segment->header()->daemon_pid.store(0, std::memory_order_release);
    segment->header()->heartbeat_ns.store(0, std::memory_order_relaxed);
  }
}

void Consumer::release_all_read() {
  for (auto &r : readers_) r.release(r.read_pos());
}

bool Consumer::any_pending() const {
  for (const auto &r : readers_) {
    if (r.has_pending()) return true;
  }
  for (const auto &r : retiring_readers_) {
    if (r.has_pending()) return true;
  }
  return false;
}

void Consumer::wait_for_records(uint64_t spin_ns, int timeout_ms) {
  if (shutdown_.load(std::memory_order_acquire) || poked_.exchange(false)) return;
  // Spin first: under steady load the next record is microseconds away and a futex round
  // trip would cost more than it saves. _mm_pause keeps the spin polite to the sibling
  // hyperthread.
  const uint64_t until = monotonic_ns() + spin_ns;
  do {
    if (any_pending()) return;
    if (poked_.load(std::memory_order_relaxed) && poked_.exchange(false)) return;
    for (int i = 0; i < 32; ++i) _mm_pause();
  } while (spin_ns > 0 && monotonic_ns() < until);

  // Producers still writing into a retired segment wake its futex, not this one's: while
  // there is one, look again soon.
  if (retiring_ != nullptr) timeout_ms = std::min(timeout_ms, kRetiringPollMs);
  SegmentHeader *hdr = segment_->header();
  uint32_t seen = announce_sleep(hdr);
  // seq_cst on both sides: either wake() sees the sleep announced and bumps the futex word,
  // or this sees its flag.
  if (any_pending() || shutdown_.load(std::memory_order_acquire) || poked_.exchange(false)) {
    cancel_sleep(hdr);
    return;
  }
  sleep_until_woken(hdr, seen, timeout_ms);
}

void Consumer::wake() {
  poked_.store(true, std::memory_order_seq_cst);
  std::lock_guard<std::mutex> lock(swap_mutex_);
  wake_consumer(segment_->header());
}

void Consumer::wake_for_shutdown() {
  shutdown_.store(true, std::memory_order_release);
  std::lock_guard<std::mutex> lock(swap_mutex_);
  SegmentHeader *hdr = segment_->header();
  hdr->consumer_sleeping.store(1, std::memory_order_seq_cst);
  wake_consumer(hdr);
}

void Consumer::heartbeat() {
  segment_->header()->heartbeat_ns.store(realtime_ns(), std::memory_order_relaxed);
}

std::size_t Consumer::reclaim_dead_leases() {
  std::size_t reclaimed = 0;
  for (auto &r : readers_) {
    RingControl *ring = r.control();
    uint64_t word = ring->lease.load(std::memory_order_acquire);
    if (word == 0 || lease_holder_alive(word)) continue;
    // Deliver what the dead producer committed before handing its ring to someone else;
    // its uncommitted bytes past write_pos are simply overwritten by the next holder.
    if (r.has_pending() || r.released_pos() != r.read_pos()) continue;
    if (ring->lease.compare_exchange_strong(word, 0, std::memory_order_acq_rel)) {
      ring->producer_id.store(0, std::memory_order_relaxed);
      ++reclaimed;
    }
  }
  return reclaimed;
}

Consumer::SegmentCheck Consumer::check_segment() {
  SegmentCheck c;
  c.problem = segment_->restore(static_cast<uint32_t>(::getpid()), start_ticks_, epoch_);
  const uint64_t faults = shrink_faults();
  c.faults = faults - faults_seen_;
  faults_seen_ = faults;
  if (c.faults > 0 && c.problem.find("shrunk") == std::string::npos) {
    c.problem =
        "the segment file was shrunk, and grown back when kronopd touched a lost page "
        "(records not yet read there are lost)" +
        (c.problem.empty() ? "" : "; " + c.problem);
  }
  const uint64_t capacity = segment_->geometry().ring_capacity;
  for (auto &r : readers_) {
    RingControl *ring = r.control();
    const uint64_t release = ring->release_pos.load(std::memory_order_relaxed);
    const uint64_t write = ring->write_pos.load(std::memory_order_acquire);
    // Only the daemon writes release_pos, and a producer's write_pos never falls behind it
    // nor runs more than a ring ahead of it.
    if (release == r.released_pos() && write >= release && write - release <= capacity) continue;
    ring->release_pos.store(r.released_pos(), std::memory_order_release);
    if (write < r.released_pos() || write - r.released_pos() > capacity) {
      ring->write_pos.store(r.read_pos(), std::memory_order_release);
    }
    ++c.rings_reset;
  }
  if (c.rings_reset > 0) {
    if (!c.problem.empty()) c.problem += "; ";
    c.problem += std::to_string(c.rings_reset) + " ring(s) had their positions changed (reset)";
  }
  if (retiring_ != nullptr) let_go_if_drained();
  if (const Segment::Named named = segment_->named(); named != Segment::Named::kThis) {
    const uint64_t before = generation_;
    if (!c.problem.empty()) c.problem += "; ";
    c.problem += recreate(named);
    c.recreated = generation_ != before;
  }
  return c;
}

std::string Consumer::recreate(Segment::Named named) {
  std::string found =
      "/dev/shm/" + segment_->name() +
      (named == Segment::Named::kRemoved ? " was removed" : " was replaced by another file");
  if (retiring_ != nullptr) {
    // One retired segment at a time: what it holds is read first.
    return found +
           ": it is created again once no producer holds a ring of the one retired before "
           "(producers that open the name until then do not reach kronopd)";
  }
  auto fresh = Segment::create_in_place(
      segment_->name(), segment_->geometry(),
      {static_cast<uint32_t>(::getpid()), start_ticks_, epoch_, realtime_ns()});
  if (!fresh.ok()) return found + ": cannot create it again: " + fresh.error().message;
  {
    std::lock_guard<std::mutex> lock(swap_mutex_);
    // Producers attached to the old one get KRONOP_ENODAEMON from now on and open the name
    // again. What was read of it is released now: its positions mean nothing to the new one.
    segment_->header()->retired.store(1, std::memory_order_release);
    for (auto &r : readers_) r.release(r.read_pos());
    retiring_ = std::move(segment_);
    retiring_readers_ = std::move(readers_);
    segment_ = std::move(fresh).value();
    readers_ = readers_of(*segment_);
    ++generation_;
  }
  return found +
         ": created it again (producers attached before get KRONOP_ENODAEMON and must open "
         "it again; what they published before is still delivered)";
}

void Consumer::let_go_if_drained() {
  for (const auto &r : retiring_readers_) {
    // acquire: a lease given back publishes the holder's last write_pos.
    const uint64_t lease = r.control()->lease.load(std::memory_order_acquire);
    if ((lease != 0 && lease_holder_alive(lease)) || r.has_pending()) return;
  }
  std::lock_guard<std::mutex> lock(swap_mutex_);
  for (const auto &r : retiring_readers_) corrupt_let_go_ += r.corrupt_ranges();
  retiring_readers_.clear();
  retiring_.reset();
}

std::vector<RingSnapshot> Consumer::snapshot() const {
  std::lock_guard<std::mutex> lock(swap_mutex_);
  std::vector<RingSnapshot> out;
  out.reserve(readers_.size());
  for (uint32_t i = 0; i < readers_.size(); ++i) {
    const RingControl *ring = readers_[i].control();
    uint64_t write = ring->write_pos.load(std::memory_order_relaxed);
    uint64_t release = ring->release_pos.load(std::memory_order_relaxed);
    out.push_back({i, ring->lease.load(std::memory_order_relaxed),
                   ring->producer_id.load(std::memory_order_relaxed),
                   write >= release ? write - release : 0,
                   ring->records_published.load(std::memory_order_relaxed),
                   ring->refused_full.load(std::memory_order_relaxed),
                   ring->refused_too_large.load(std::memory_order_relaxed)});
  }
  return out;
}

uint64_t Consumer::corrupt_ranges() const {
  uint64_t n = corrupt_let_go_;
  for (const auto &r : readers_) n += r.corrupt_ranges();
  for (const auto &r : retiring_readers_) n += r.corrupt_ranges();
  return n;
}

uint64_t Consumer::wake_calls() const {
  std::lock_guard<std::mutex> lock(swap_mutex_);
  return segment_->header()->wake_calls.load(std::memory_order_relaxed);
}

}  // namespace kronop::ipc
