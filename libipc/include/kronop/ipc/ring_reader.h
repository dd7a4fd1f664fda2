// The consumer side of one ring, used only by kronopd's ingest thread.
//
// The reader keeps two positions: `read` (how far records have been handed out) and the
// ring's shared `release_pos` (how far the producer may reuse space). A later stage may
// hold records back — durability releases a record only once it is logged — so release()
// is separate from next(). After a daemon restart, reading starts again at release_pos:
// records read but not released before a crash are read again, never lost.
//
// Ring bytes are read once. The producer owns the ring's memory and may rewrite a record
// after committing it (a bug, or on purpose): a consumer that validated the ring bytes and
// then read them again for use would use something it never validated. So next() copies
// each record out of shared memory exactly once, into a buffer the reader owns, and the
// record it hands out points at that copy. Nothing after next() reads the ring's bytes of
// a record; every later stage (validation, numbering, fan-out, the log) sees only the copy.
// The copy is followed by kRecordSlack more readable bytes (of no particular value), so a
// parser that reads its input in blocks, such as simdjson, can use the copy in place
// instead of copying it again.
//
// Ring bytes are untrusted: a record header that does not fit what the producer committed,
// or a write_pos that moved backwards or more than a ring ahead, makes the reader skip to
// write_pos and count a corrupt range; the daemon never reads outside the ring. Skipped
// bytes count as read: release(read_pos()) frees them like any other record.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "kronop/ipc/segment_layout.h"

namespace kronop::ipc {

// Readable bytes after every record the reader hands out.
inline constexpr std::size_t kRecordSlack = 64;

struct RingRecord {
  // The serialized Envelope: the reader's private copy, valid until its next next(), and
  // followed by kRecordSlack readable bytes.
  std::string_view bytes;
  uint64_t end_pos;  // release(end_pos) frees this record and all before it
};

class RingReader {
 public:
  RingReader() = default;
  RingReader(RingControl *ring, uint64_t capacity);

  // The next committed record, copied out of the ring, or false when none is (or the rest
  // was corrupt).
  bool next(RingRecord &out);
  // Frees everything before `pos` for the producer.
  void release(uint64_t pos);
  // True when the producer committed something not yet read. seq_cst: this is the
  // consumer's re-check in the sleep protocol (wakeup.h).
  bool has_pending() const { return ring_->write_pos.load(std::memory_order_seq_cst) != read_pos_; }

  uint64_t read_pos() const { return read_pos_; }
  uint64_t released_pos() const { return released_; }
  uint64_t corrupt_ranges() const { return corrupt_ranges_; }
  RingControl *control() const { return ring_; }

 private:
  void skip_corrupt(uint64_t to);

  RingControl *ring_ = nullptr;
  const uint8_t *data_ = nullptr;
  uint64_t capacity_ = 0;
  uint64_t mask_ = 0;
  uint64_t read_pos_ = 0;
  uint64_t released_ = 0;
  uint64_t cached_write_ = 0;
  uint64_t corrupt_ranges_ = 0;
  uint64_t last_bad_write_ = ~uint64_t{0};
  // The last record handed out (see the top of this file), then kRecordSlack bytes.
  std::unique_ptr<char[]> copy_;
  std::size_t copy_capacity_ = 0;
};

}  // namespace kronop::ipc
