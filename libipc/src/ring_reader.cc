// Reading records from one ring; see ring_reader.h for the positions and the trust model.
#include "kronop/ipc/ring_reader.h"

#include <algorithm>
#include <cstring>

namespace kronop::ipc {

RingReader::RingReader(RingControl *ring, uint64_t capacity)
    : ring_(ring),
      data_(ring_data(ring)),
      capacity_(capacity),
      mask_(capacity - 1),
      // acquire: pairs with our own (previous run's) release store; what was released is
      // done with, what was not is read again.
      read_pos_(ring->release_pos.load(std::memory_order_acquire)),
      released_(read_pos_),
      cached_write_(read_pos_) {}

void RingReader::skip_corrupt(uint64_t to) {
  ++corrupt_ranges_;
  read_pos_ = to;
  cached_write_ = to;
}

bool RingReader::next(RingRecord &out) {
  for (;;) {
    if (read_pos_ == cached_write_) {
      // acquire: pairs with the producer's store of write_pos; the record bytes before it
      // are then visible to us.
      cached_write_ = ring_->write_pos.load(std::memory_order_acquire);
      if (read_pos_ == cached_write_) return false;
      // A write_pos behind us, or more than a ring ahead of what we released, is not
      // something a correct producer writes.
      if (cached_write_ < read_pos_) {
        // Moved backwards: stay where we are (never re-read released space) and count it
        // once per bad value.
        if (cached_write_ != last_bad_write_) ++corrupt_ranges_;
        last_bad_write_ = cached_write_;
        cached_write_ = read_pos_;
        return false;
      }
      if (cached_write_ - released_ > capacity_ || (cached_write_ & 7) != 0) {
        skip_corrupt(cached_write_);
        return false;
      }
    }
    const uint64_t index = read_pos_ & mask_;
    const uint64_t to_end = capacity_ - index;
    const uint64_t available = cached_write_ - read_pos_;
    RecordHeader hdr;
    // to_end: a misaligned write_pos, skipped to above, leaves read_pos misaligned too, and
    // a header read at the last few bytes would run past the ring (past the mapping, for
    // the last ring).
    if (available < sizeof hdr || to_end < sizeof hdr) {
      skip_corrupt(cached_write_);
      return false;
    }
    std::memcpy(&hdr, data_ + index, sizeof hdr);  // read once: the producer may scribble
    if (hdr.kind == kRecordPadding) {
      if (uint64_t{hdr.length} + sizeof hdr != to_end || to_end > available) {
        skip_corrupt(cached_write_);
        return false;
      }
      read_pos_ += to_end;
      continue;
    }
    const uint64_t record = align_record(sizeof hdr + uint64_t{hdr.length});
    if (hdr.kind != kRecordEnvelope || record > to_end || record > available) {
      skip_corrupt(cached_write_);
      return false;
    }
    // The one read of the record's bytes: from here on only the copy is used.
    const std::size_t need = std::size_t{hdr.length} + kRecordSlack;
    if (need > copy_capacity_) {
      // Grows to the largest record seen (at most the ring's capacity), then stays.
      copy_capacity_ = std::max(need, copy_capacity_ * 2);
      copy_ = std::make_unique<char[]>(copy_capacity_);  // zeroed: no uninitialized reads
    }
    std::memcpy(copy_.get(), data_ + index + sizeof hdr, hdr.length);
    out.bytes = std::string_view(copy_.get(), hdr.length);
    read_pos_ += record;
    out.end_pos = read_pos_;
    return true;
  }
}

void RingReader::release(uint64_t pos) {
  if (pos <= released_ || pos > read_pos_) return;
  released_ = pos;
  // release: our reads of the freed bytes happen before the producer may overwrite them.
  ring_->release_pos.store(pos, std::memory_order_release);
}

}  // namespace kronop::ipc
