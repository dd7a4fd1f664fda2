// The layout of Kronop's shared-memory segment, shared by producers (libkronop_ipc) and the
// daemon's consumer.
//
// Segment = SegmentHeader, then ring_count slots of (RingControl, data[ring_capacity]).
// Every ring is a single-producer/single-consumer byte ring addressed by monotonically
// increasing 64-bit byte positions (index = position & (capacity - 1)), so "empty" is
// read == write and "full" is write - release == capacity; positions never wrap in practice.
//
// Invariants (each stated where it is relied on, too):
//  - Only the leaseholder writes write_pos and the bytes in [write_pos, release_pos + cap).
//  - Only the daemon writes release_pos, and only to positions it has finished reading.
//  - A record is visible once write_pos moves past it (release store); bytes past write_pos
//    are never read, so a producer killed mid-write leaves no torn record.
//  - Records are 8-byte aligned: RecordHeader, then `length` bytes, then padding to 8.
//    A record never wraps; when it would not fit before the end of the data area the
//    producer writes a padding record covering the rest and starts again at index 0.
//  - Everything in the segment is untrusted to the daemon: it re-checks every length.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace kronop::ipc {

inline constexpr uint64_t kSegmentMagic = 0x3150494e4f524b4bULL;  // "KKRONIP1"
inline constexpr uint32_t kLayoutVersion = 1;
inline constexpr std::size_t kCacheLine = 64;

inline constexpr uint32_t kRecordEnvelope = 0x45564e45;  // "ENVE"
inline constexpr uint32_t kRecordPadding = 0x44444150;   // "PADD"

struct RecordHeader {
  uint32_t length;  // payload bytes after this header (padding: bytes to the end of data)
  uint32_t kind;    // kRecordEnvelope or kRecordPadding
};
static_assert(sizeof(RecordHeader) == 8);

inline constexpr uint64_t align_record(uint64_t n) { return (n + 7) & ~uint64_t{7}; }

// Lease word: 0 when free, else (pid << 32) | (process start time in clock ticks, low 32
// bits). pid alone would not do: pids are reused, and a reused pid must not inherit a ring.
inline constexpr uint64_t make_lease_word(uint32_t pid, uint64_t start_ticks) {
  return (uint64_t{pid} << 32) | (start_ticks & 0xffffffffULL);
}
inline constexpr uint32_t lease_pid(uint64_t word) { return static_cast<uint32_t>(word >> 32); }
inline constexpr uint32_t lease_start(uint64_t word) { return static_cast<uint32_t>(word); }

struct alignas(kCacheLine) SegmentHeader {
  // Written once by the daemon that creates the segment, before `ready` is set.
  uint64_t magic;
  uint32_t layout_version;
  uint32_t ring_count;
  uint64_t ring_capacity;  // data bytes per ring, a power of two
  uint64_t ring_stride;    // bytes from one RingControl to the next
  uint64_t rings_offset;   // bytes from the segment start to the first RingControl
  uint64_t total_size;
  uint64_t max_record;  // largest record (header included) a producer may write
  // Release-stored 1 once the fields above are written; producers acquire-load it.
  std::atomic<uint32_t> ready;

  // The attached daemon. Written by the daemon only; read by producers and kronopctl.
  alignas(kCacheLine) std::atomic<uint32_t> daemon_pid;
  std::atomic<uint64_t> daemon_start_ticks;
  std::atomic<uint64_t> epoch;         // incremented at each daemon attach
  std::atomic<uint64_t> heartbeat_ns;  // CLOCK_REALTIME, refreshed at least every 100 ms

  // Consumer sleep/wake (see libipc/src/wakeup.h): on its own line because producers read
  // `consumer_sleeping` after every publish and the daemon writes it only when idle.
  alignas(kCacheLine) std::atomic<uint32_t> consumer_sleeping;
  std::atomic<uint32_t> wake_seq;    // the futex word
  std::atomic<uint64_t> wake_calls;  // futex wakes issued by producers (for stats)
  // Set to 1 by a daemon that replaced this segment (incompatible layout): producers that
  // still map it get KRONOP_ENODAEMON and must reopen. Beside consumer_sleeping because
  // producers read both on every publish.
  std::atomic<uint32_t> retired;
};

struct alignas(kCacheLine) RingControl {
  // Lease (cold): see make_lease_word. CAS 0 -> word to lease; store 0 to free.
  std::atomic<uint64_t> lease;
  std::atomic<uint64_t> producer_id;
  std::atomic<uint64_t> leases_granted;

  // Producer's line. write_pos: release-stored after the record bytes are written.
  alignas(kCacheLine) std::atomic<uint64_t> write_pos;
  std::atomic<uint64_t> records_published;  // single writer: load + store, no RMW
  std::atomic<uint64_t> refused_full;
  std::atomic<uint64_t> refused_too_large;

  // Daemon's line. release_pos: release-stored once the daemon no longer needs the bytes
  // before it; the producer acquire-loads it before reusing that space.
  alignas(kCacheLine) std::atomic<uint64_t> release_pos;
};

static_assert(std::atomic<uint64_t>::is_always_lock_free,
              "shared-memory atomics must be lock-free to work across processes");
static_assert(std::atomic<uint32_t>::is_always_lock_free);

inline uint8_t *ring_data(RingControl *ring) {
  return reinterpret_cast<uint8_t *>(ring) + sizeof(RingControl);
}

// Where everything is, computed from ring_count and ring_capacity alone. The daemon never
// takes offsets from the (untrusted) header: it recomputes them here and compares.
struct SegmentGeometry {
  uint32_t ring_count = 0;
  uint64_t ring_capacity = 0;

  static constexpr uint32_t kMaxRings = 4096;
  static constexpr uint64_t kMinCapacity = 4096;
  static constexpr uint64_t kMaxCapacity = uint64_t{1} << 30;

  bool valid() const {
    return ring_count >= 1 && ring_count <= kMaxRings && ring_capacity >= kMinCapacity &&
           ring_capacity <= kMaxCapacity && (ring_capacity & (ring_capacity - 1)) == 0;
  }
  uint64_t rings_offset() const { return sizeof(SegmentHeader); }
  uint64_t ring_stride() const { return sizeof(RingControl) + ring_capacity; }
  uint64_t total_size() const { return rings_offset() + uint64_t{ring_count} * ring_stride(); }
  // A quarter of the ring, so that a full-size record always finds room once the daemon
  // catches up, even behind a padding record at the wrap.
  uint64_t max_record() const { return ring_capacity / 4; }
};

}  // namespace kronop::ipc
