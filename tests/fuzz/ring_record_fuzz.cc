// Fuzz target for the daemon's reader of producer rings: ipc::RingReader::next and release
// over a ring whose bytes and positions are all attacker-controlled, as a producer (or
// anything else with write access to /dev/shm/NAME) controls them.
//
// The ring is laid out as in the segment (segment_layout.h): RingControl, then the data
// area; the data area ends exactly where a PROT_NONE guard page begins, so a read even one
// byte past it faults. (AddressSanitizer alone misses an unaligned 8-byte read that starts
// in the last 8 bytes of an object and ends past it: it checks the first granule only.)
//
// Input layout (little-endian):
//   u64 release_pos   where the previous daemon released up to: a new reader starts here
//   u64 write_delta   write_pos = release_pos + write_delta (wrapping, so any value)
//   u8  flags         bit 0: release each record as soon as it is read (else once per round)
//                     bit 1: never release
//   u8  moves         how many producer moves follow (fewer if the input ends first)
//   moves x { u8 op; u64 delta }
//                     before the next drain round: write_pos += delta (wrapping);
//                     op bit 0: the daemon restarts first (a new reader on the same ring)
//   rest              the data area, laid in from index release_pos % capacity, wrapping
//
// Invariants checked on every record next() returns, and after every call:
//  - the record (its header too) lies inside the data area, where its position says;
//  - it ends at or before write_pos, and at most one ring beyond what was released (the
//    producer may already be rewriting anything further);
//  - the read position, the released position and the ring's release_pos only move
//    forward (a restart goes back to release_pos: unreleased records are read again);
//  - release_pos never passes what was read.
#include <sys/mman.h>
#include <unistd.h>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

#include "fuzz_check.h"
#include "kronop/ipc/ring_reader.h"
#include "kronop/ipc/segment_layout.h"

namespace ipc = kronop::ipc;

namespace {

constexpr uint64_t kCapacity = ipc::SegmentGeometry::kMinCapacity;  // 4096
constexpr uint64_t kMask = kCapacity - 1;

// One ring slot as in the segment, RingControl then the data bytes, mapped once for the
// whole run and reset for each input, with a guard page right after the data.
class GuardedRing {
 public:
  GuardedRing() {
    const auto page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    const uint64_t used = (sizeof(ipc::RingControl) + kCapacity + page - 1) / page * page;
    void *base =
        ::mmap(nullptr, used + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED || ::mprotect(static_cast<uint8_t *>(base) + used, page, PROT_NONE)) {
      std::perror("ring_record_fuzz: mmap");
      std::abort();
    }
    data_ = static_cast<uint8_t *>(base) + used - kCapacity;
    control_ = reinterpret_cast<ipc::RingControl *>(data_ - sizeof(ipc::RingControl));
    reset();
  }

  // A fresh ring: every position and counter 0, the data zeroed.
  void reset() {
    control_ = new (control_) ipc::RingControl();
    std::memset(data_, 0, kCapacity);
  }

  ipc::RingControl &control() { return *control_; }
  uint8_t *data() { return data_; }

 private:
  ipc::RingControl *control_;  // placed right before data_, as ring_data() expects
  uint8_t *data_;
};

// Reads the input front to back; past the end it yields zeros.
class InputCursor {
 public:
  InputCursor(const uint8_t *data, size_t size) : data_(data), size_(size) {}
  uint64_t u64() {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t{u8()} << (8 * i);
    return v;
  }
  uint8_t u8() { return pos_ < size_ ? data_[pos_++] : 0; }
  size_t remaining() const { return size_ - pos_; }
  const uint8_t *here() const { return data_ + pos_; }

 private:
  const uint8_t *data_;
  size_t size_;
  size_t pos_ = 0;
};

struct Move {
  uint8_t op;
  uint64_t delta;
};

constexpr uint8_t kReleaseEach = 1;
constexpr uint8_t kNeverRelease = 2;
constexpr uint8_t kRestart = 1;

// Drains everything next() hands out, checking each record; releases as `flags` say.
void drain_round(ipc::RingReader &reader, GuardedRing &ring, uint8_t flags) {
  const uint64_t write_pos = ring.control().write_pos.load(std::memory_order_relaxed);

  ipc::RingRecord rec;
  uint64_t records = 0;
  uint64_t last_read = reader.read_pos();
  uint64_t last_released = reader.released_pos();
  for (;;) {
    const bool got = reader.next(rec);
    FUZZ_CHECK(reader.read_pos() >= last_read);
    FUZZ_CHECK(reader.released_pos() == last_released);  // next() never releases
    last_read = reader.read_pos();
    if (!got) break;

    // Where the record sits in the ring follows from its position and size: it must lie
    // inside the data area, header included, without wrapping.
    const uint64_t record_size = ipc::align_record(sizeof(ipc::RecordHeader) + rec.bytes.size());
    FUZZ_CHECK(rec.end_pos == reader.read_pos());
    FUZZ_CHECK(rec.end_pos <= write_pos);
    FUZZ_CHECK(rec.end_pos - reader.released_pos() <= kCapacity);
    FUZZ_CHECK(record_size <= kCapacity);
    const uint64_t start = (rec.end_pos - record_size) & kMask;
    FUZZ_CHECK(start + record_size <= kCapacity);
    // The record handed out is the reader's own copy of those bytes (ring bytes are read
    // once, ring_reader.h), not a view into the ring. Addresses as integers: a view
    // outside the ring must be reported, not be UB here.
    const auto begin = reinterpret_cast<uintptr_t>(ring.data());
    const auto bytes = reinterpret_cast<uintptr_t>(rec.bytes.data());
    FUZZ_CHECK(bytes + rec.bytes.size() <= begin || bytes >= begin + kCapacity);
    FUZZ_CHECK(std::memcmp(rec.bytes.data(), ring.data() + start + sizeof(ipc::RecordHeader),
                           rec.bytes.size()) == 0);
    // Touch every byte, so that a bad copy is reported even if the checks above are wrong.
    uint8_t sum = 0;
    for (char c : rec.bytes) sum = static_cast<uint8_t>(sum + static_cast<uint8_t>(c));
    volatile uint8_t sink = sum;
    (void)sink;

    // Every record takes at least 8 bytes of a ring the reader may be at most one
    // capacity ahead in: more records than that in one round means next() looped.
    FUZZ_CHECK(++records <= kCapacity / sizeof(ipc::RecordHeader));
    if ((flags & (kReleaseEach | kNeverRelease)) == kReleaseEach) {
      reader.release(rec.end_pos);
      FUZZ_CHECK(reader.released_pos() == rec.end_pos);
      last_released = reader.released_pos();
    }
  }
  if ((flags & kNeverRelease) == 0) reader.release(reader.read_pos());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  InputCursor in(data, size);
  const uint64_t release_pos = in.u64();
  const uint64_t write_delta = in.u64();
  const uint8_t flags = in.u8();
  uint8_t move_count = in.u8();
  Move moves[255];
  for (uint8_t i = 0; i < move_count; ++i) {
    if (in.remaining() < 9) {
      move_count = i;
      break;
    }
    moves[i].op = in.u8();
    moves[i].delta = in.u64();
  }

  static GuardedRing ring;
  ring.reset();
  const size_t fill = in.remaining() < kCapacity ? in.remaining() : kCapacity;
  for (size_t i = 0; i < fill; ++i) ring.data()[(release_pos + i) & kMask] = in.here()[i];
  ipc::RingControl &control = ring.control();
  control.release_pos.store(release_pos, std::memory_order_relaxed);
  control.write_pos.store(release_pos + write_delta, std::memory_order_relaxed);
  FUZZ_CHECK(ipc::ring_data(&control) == ring.data());

  auto reader = std::make_unique<ipc::RingReader>(&control, kCapacity);
  FUZZ_CHECK(reader->read_pos() == release_pos);
  uint64_t ring_release = release_pos;
  for (uint8_t round = 0;; ++round) {
    drain_round(*reader, ring, flags);
    const uint64_t now_release = control.release_pos.load(std::memory_order_relaxed);
    FUZZ_CHECK(now_release >= ring_release);
    FUZZ_CHECK(now_release <= reader->read_pos());
    FUZZ_CHECK(now_release == reader->released_pos());
    ring_release = now_release;
    if (round == move_count) break;

    const Move &m = moves[round];
    if (m.op & kRestart) {
      reader = std::make_unique<ipc::RingReader>(&control, kCapacity);
      FUZZ_CHECK(reader->read_pos() == ring_release);
    }
    const uint64_t write_pos = control.write_pos.load(std::memory_order_relaxed);
    control.write_pos.store(write_pos + m.delta, std::memory_order_relaxed);
  }
  return 0;
}
