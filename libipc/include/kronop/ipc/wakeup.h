// The consumer sleep/wake protocol over SegmentHeader::{consumer_sleeping, wake_seq}.
//
// The daemon spins briefly when every ring is empty, then announces that it will sleep and
// checks the rings once more before it blocks on a futex. A producer, after committing a
// record, looks at the announcement and issues a futex wake only when it is set, so a busy
// daemon costs producers no system call.
//
// Why it cannot lose a wake-up: the producer's commit (store write_pos) and its load of
// consumer_sleeping, and the consumer's store of consumer_sleeping and its re-check of
// write_pos, are all seq_cst, so they fall in one total order (the Dekker pattern): either
// the producer sees the announcement, or the consumer's re-check sees the record. And the
// consumer reads wake_seq before announcing, so a wake that lands between its re-check
// and its futex_wait changes wake_seq and makes futex_wait return at once.
#pragma once

#include <cstdint>

#include "kronop/ipc/segment_layout.h"

namespace kronop::ipc {

// Producer side, called after the seq_cst store of write_pos.
inline bool consumer_wants_wake(SegmentHeader *hdr) {
  return hdr->consumer_sleeping.load(std::memory_order_seq_cst) != 0;
}
void wake_consumer(SegmentHeader *hdr);

// Consumer side. Returns the wake_seq to sleep on; then the caller re-checks every ring.
uint32_t announce_sleep(SegmentHeader *hdr);
// Blocks until a producer wakes the consumer, wake_seq moved, or timeout_ms passed.
void sleep_until_woken(SegmentHeader *hdr, uint32_t seen_seq, int timeout_ms);
// Clears the announcement (after waking, or when the re-check found work).
void cancel_sleep(SegmentHeader *hdr);

}  // namespace kronop::ipc
