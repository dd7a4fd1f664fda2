// The producer's publish path. Per record: compute the size, check room against a cached
// copy of the daemon's release position (re-reading the shared one only when short), write
// the record in place, publish it with one store of write_pos, and look once at the
// consumer's sleep flag. No lock, no allocation, no system call unless the daemon sleeps.
//
// The daemon runs on another CPU and reads every line we write, so the cost of a publish
// is mostly waiting for cache lines to come back from the daemon's CPU (the record's lines,
// read by the daemon a lap ago, and write_pos, which it polls). We ask for them early, with
// prefetch-for-write hints, so that the transfers overlap other work instead of stalling the
// commit; the hints change no value and no ordering.
#include "kronop/ipc/producer.h"
#include "kronop/clock.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#include <sys/random.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <thread>

#include "envelope_writer.h"
#include "kronop/ipc/process_identity.h"
#include "kronop/ipc/wakeup.h"
#include "kronop_ipc.h"

namespace kronop::ipc {
namespace {

constexpr std::size_t kMaxTopic = 255;
constexpr std::size_t kMaxEvent = 64;

uint64_t random_id() {
  uint64_t id = 0;
  while (id == 0) {
    if (getrandom(&id, sizeof id, 0) != sizeof id) {
      // getrandom cannot fail for 8 bytes once the pool is initialised; fall back anyway.
      id = realtime_ns() ^ (uint64_t(::getpid()) << 40);
    }
  }
  return id;
}

#if defined(__x86_64__) || defined(__i386__)
// PREFETCHW (CPUID 0x80000001 ECX bit 8: PRFCHW, AMD's 3DNowPrefetch).
bool cpu_has_prefetchw() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(0x80000001, &eax, &ebx, &ecx, &edx) != 0 && (ecx & (1u << 8)) != 0;
}
const bool has_prefetchw = cpu_has_prefetchw();
#endif

// Asks for the cache line holding `p` in the exclusive state, so that a later store to it
// does not wait for another CPU to give it up. Only a hint: it never faults and changes no
// memory. (GCC turns __builtin_prefetch(p, 1) into a read prefetch unless built for a CPU
// with PREFETCHW, hence the check at load time.)
inline void prefetch_for_write(const void *p) {
#if defined(__x86_64__) || defined(__i386__)
  if (has_prefetchw) {
    asm volatile("prefetchw %0" : : "m"(*static_cast<const char *>(p)));
    return;
  }
#endif
  __builtin_prefetch(p, 1, 3);
}

// A JSON object starts with '{' after optional whitespace. This is not validation (the
// daemon validates once); it refuses the common mistake of a bare value at the source.
bool looks_like_json_object(std::string_view s) {
  for (char c : s) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') continue;
    return c == '{';
  }
  return false;
}

}  // namespace

Result<std::unique_ptr<Producer>> Producer::open(std::string_view segment_name) {
  auto segment = Segment::open_as_producer(segment_name);
  if (!segment.ok()) return segment.error();
  auto ticks = process_start_ticks(::getpid());
  if (!ticks) return Error{KRONOP_ESYS, "cannot read this process's start time from /proc"};
  const uint64_t word = make_lease_word(static_cast<uint32_t>(::getpid()), *ticks);
  Segment &seg = *segment.value();
  for (uint32_t i = 0; i < seg.geometry().ring_count; ++i) {
    RingControl *ring = seg.ring(i);
    uint64_t expected = 0;
    // acq_rel: acquire pairs with the release store of 0 by the previous holder (or the
    // daemon's reclaim), so we see the final write_pos; release orders nothing yet.
    if (ring->lease.compare_exchange_strong(expected, word, std::memory_order_acq_rel)) {
      // A previous holder that broke the ring's invariants (misaligned or out-of-range
      // write_pos) would make our padding header land outside the ring: leave that ring to
      // the daemon's corruption handling and take another.
      const uint64_t w = ring->write_pos.load(std::memory_order_relaxed);
      const uint64_t r = ring->release_pos.load(std::memory_order_acquire);
      if ((w & 7) != 0 || w < r || w - r > seg.geometry().ring_capacity) {
        ring->lease.store(0, std::memory_order_release);
        continue;
      }
      uint64_t id = random_id();
      ring->producer_id.store(id, std::memory_order_relaxed);
      ring->leases_granted.fetch_add(1, std::memory_order_relaxed);
      return std::unique_ptr<Producer>(new Producer(std::move(segment).value(), i, id));
    }
  }
  return Error{KRONOP_ENORING, "all " + std::to_string(seg.geometry().ring_count) +
                                   " rings of /dev/shm/" + std::string(segment_name) +
                                   " are leased (raise kronopd --rings)"};
}

Producer::Producer(std::unique_ptr<Segment> segment, uint32_t ring_index, uint64_t producer_id)
    : segment_(std::move(segment)),
      header_(segment_->header()),
      ring_(segment_->ring(ring_index)),
      data_(ring_data(ring_)),
      capacity_(segment_->geometry().ring_capacity),
      mask_(capacity_ - 1),
      max_record_(segment_->geometry().max_record()),
      ring_index_(ring_index),
      producer_id_(producer_id) {
  // The previous holder's last write_pos (acquired through the lease CAS) is where we go on.
  write_pos_ = ring_->write_pos.load(std::memory_order_relaxed);
  cached_release_ = ring_->release_pos.load(std::memory_order_acquire);
}

Producer::~Producer() {
  // Release: the daemon's reclaim check and the next holder see our final write_pos.
  ring_->lease.store(0, std::memory_order_release);
}

bool Producer::segment_retired() const {
  return header_->retired.load(std::memory_order_relaxed) != 0;
}

std::size_t Producer::max_payload(std::size_t topic_len, std::size_t event_len) const {
  envelope_writer::Identity id{~uint64_t{0}, ~uint64_t{0}, ~uint64_t{0}};
  std::size_t overhead = sizeof(RecordHeader) + 8 +  // header + alignment slack
                         envelope_writer::json_envelope_size(std::string_view("", 0),
                                                             std::string_view("", 0), "", 3, id) +
                         topic_len + event_len + 3 * 10;
  return max_record_ > overhead ? max_record_ - overhead : 0;
}

template <class WriteBody>
int Producer::commit_record(std::size_t body, WriteBody &&write) {
  if (segment_retired()) return KRONOP_ENODAEMON;
  const uint64_t record = align_record(sizeof(RecordHeader) + body);
  if (record > max_record_) {
    ring_->refused_too_large.store(ring_->refused_too_large.load(std::memory_order_relaxed) + 1,
                                   std::memory_order_relaxed);
    return KRONOP_ETOOBIG;
  }
  uint64_t index = write_pos_ & mask_;
  const uint64_t to_end = capacity_ - index;
  const uint64_t needed = record <= to_end ? record : to_end + record;
  if (write_pos_ + needed - cached_release_ > capacity_) {
    // acquire: the daemon is done reading everything before release_pos, so we may
    // overwrite it.
    cached_release_ = ring_->release_pos.load(std::memory_order_acquire);
    if (write_pos_ + needed - cached_release_ > capacity_) {
      ring_->refused_full.store(ring_->refused_full.load(std::memory_order_relaxed) + 1,
                                std::memory_order_relaxed);
      return KRONOP_EFULL;
    }
  }
  if (record > to_end) {
    // Pad to the end of the data area; records never wrap. to_end >= 8 since both the
    // capacity and every position are multiples of 8.
    RecordHeader pad{static_cast<uint32_t>(to_end - sizeof(RecordHeader)), kRecordPadding};
    std::memcpy(data_ + index, &pad, sizeof pad);
    write_pos_ += to_end;
    index = 0;
  }
  RecordHeader hdr{static_cast<uint32_t>(body), kRecordEnvelope};
  std::memcpy(data_ + index, &hdr, sizeof hdr);
  write(data_ + index + sizeof(RecordHeader));
  write_pos_ += record;
  ++seq_;
  // seq_cst (not just release): besides publishing the record bytes to the daemon's
  // acquire load, this store must be ordered before our load of consumer_sleeping below
  // (see wakeup.h). On x86 it is one xchg.
  ring_->write_pos.store(write_pos_, std::memory_order_seq_cst);
  ring_->records_published.store(ring_->records_published.load(std::memory_order_relaxed) + 1,
                                 std::memory_order_relaxed);
  if (consumer_wants_wake(header_)) wake_consumer(header_);
  // The next record most likely has this one's size: ask for its lines now, while our
  // caller does something else, rather than when writing it. Only space the daemon is known
  // to have released, never lines it may still be reading.
  const uint64_t next = write_pos_ & mask_;
  const uint64_t span = std::min(record, capacity_ - next);
  if (write_pos_ + span - cached_release_ <= capacity_) {
    for (uint64_t line = next & ~uint64_t{kCacheLine - 1}; line < next + span; line += kCacheLine) {
      prefetch_for_write(data_ + line);
    }
  }
  return KRONOP_OK;
}

int Producer::publish(std::string_view topic, std::string_view event, std::string_view json,
                      int priority) {
  if (topic.empty() || topic.size() > kMaxTopic || event.empty() || event.size() > kMaxEvent ||
      priority < KRONOP_PRIORITY_NORMAL || priority > KRONOP_PRIORITY_CRITICAL ||
      !looks_like_json_object(json)) {
    return KRONOP_EINVAL;
  }
  // The daemon polls write_pos, so its line is in the daemon's cache: start taking it back
  // now, so that the commit's store at the end does not wait for the whole transfer.
  prefetch_for_write(&ring_->write_pos);
  envelope_writer::Identity id{producer_id_, seq_ + 1, realtime_ns()};
  std::size_t body = envelope_writer::json_envelope_size(topic, event, json, priority, id);
  return commit_record(body, [&](uint8_t *out) {
    envelope_writer::write_json_envelope(topic, event, json, priority, id, out);
  });
}

int Producer::publish_envelope(std::string_view envelope_pb) {
  if (envelope_pb.empty()) return KRONOP_EINVAL;
  prefetch_for_write(&ring_->write_pos);  // as in publish()
  envelope_writer::Identity id{producer_id_, seq_ + 1, realtime_ns()};
  std::size_t body = envelope_pb.size() + envelope_writer::identity_size(id);
  return commit_record(body, [&](uint8_t *out) {
    std::memcpy(out, envelope_pb.data(), envelope_pb.size());
    envelope_writer::write_identity(id, out + envelope_pb.size());
  });
}

int Producer::publish_wait(std::string_view topic, std::string_view event, std::string_view json,
                           int priority, int timeout_ms) {
  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + std::chrono::milliseconds(timeout_ms < 0 ? 0 : timeout_ms);
  auto pause = std::chrono::microseconds(10);
  for (;;) {
    int rc = publish(topic, event, json, priority);
    if (rc != KRONOP_EFULL) return rc;
    if (clock::now() >= deadline) return KRONOP_ETIMEDOUT;
    // The daemon frees room in batches; back off up to 1 ms rather than spin.
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(1000));
  }
}

}  // namespace kronop::ipc
