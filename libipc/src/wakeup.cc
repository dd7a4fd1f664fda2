// Futex-based consumer wake-up; the protocol and its ordering argument are in wakeup.h.
#include "kronop/ipc/wakeup.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <cerrno>
#include <climits>
#include <ctime>

namespace kronop::ipc {
namespace {

// The segment is a MAP_SHARED mapping used by several processes, so the futex must not be
// FUTEX_PRIVATE: the kernel keys it by the physical page.
long futex(std::atomic<uint32_t> *word, int op, uint32_t val, const timespec *timeout) {
  static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t));
  return ::syscall(SYS_futex, reinterpret_cast<uint32_t *>(word), op, val, timeout, nullptr, 0);
}

}  // namespace

void wake_consumer(SegmentHeader *hdr) {
  // Only the producer that flips the flag pays for the system call; the others see 0.
  if (hdr->consumer_sleeping.exchange(0, std::memory_order_seq_cst) == 0) return;
  hdr->wake_seq.fetch_add(1, std::memory_order_seq_cst);
  hdr->wake_calls.fetch_add(1, std::memory_order_relaxed);
  futex(&hdr->wake_seq, FUTEX_WAKE, INT_MAX, nullptr);
}

uint32_t announce_sleep(SegmentHeader *hdr) {
  uint32_t seq = hdr->wake_seq.load(std::memory_order_seq_cst);
  hdr->consumer_sleeping.store(1, std::memory_order_seq_cst);
  return seq;
}

void sleep_until_woken(SegmentHeader *hdr, uint32_t seen_seq, int timeout_ms) {
  timespec ts{timeout_ms / 1000, static_cast<long>(timeout_ms % 1000) * 1000000L};
  // EAGAIN (wake_seq already moved), EINTR and ETIMEDOUT all mean: go and look again.
  futex(&hdr->wake_seq, FUTEX_WAIT, seen_seq, &ts);
  hdr->consumer_sleeping.store(0, std::memory_order_relaxed);
}

void cancel_sleep(SegmentHeader *hdr) {
  hdr->consumer_sleeping.store(0, std::memory_order_relaxed);
}

}  // namespace kronop::ipc
