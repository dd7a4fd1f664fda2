// How kronopd uses glibc's allocator: settings made once at start, and the free memory given
// back to the system now and then.
//
// Memory is handed between threads in batches (the ingest thread's log batches are freed by
// the log writer, recovered history by the loops): with glibc's defaults, a large block is
// mmap'ed and munmap'ed each time and freed heap tops are given back with madvise, and every
// one of those unmaps makes the kernel flush the TLBs of the CPUs running the other
// threads, I/O loops included (measured: delivery p99 0.5 ms -> 5-8 ms at 5,000 msg/s once
// logging). So blocks up to 64 MiB stay in the heap, and a heap keeps up to 256 MiB free at
// its top (tune_malloc).
//
// The price: memory freed inside the heaps stays with the process. Under churn (rejoins'
// history reads, connections coming and going) an arena's free chunks grew by ~4 MiB a
// minute while what was in use stayed flat (malloc_info, 15,000 connections, bench/soak),
// and the pages of free chunks are touched again as they are reused. MallocTrim gives the
// free pages back (malloc_trim) every 5 s, from a thread of the pool, as jemalloc's decay
// would: one burst of madvise calls per interval instead of one per batch. Every 30 s
// left RssAnon swinging by up to 35 MiB between trims; every 5 s keeps the swing small.
// A trim is not free: it holds each arena's lock while it walks the free chunks (so the
// I/O threads' allocations wait), and the pages it gives back are faulted in again as the
// heap reuses them. Trimming every 5 s, whatever the heap held, raised the delivery tail
// of a steady fan-out (bench/compare-builds, fanout, 30 s: p99.9 1.17-1.36x, max 1.28x);
// so did asking mallinfo2 first, which walks the same chunks under the same locks. So
// the check costs the allocator nothing: every 5 s the main thread reads the process's
// anonymous resident memory (/proc/self/statm), and only when it has grown by more than a
// sixteenth (at least 8 MiB) since the last trim does the pool trim. A steady load never
// pays; a creeping one is held within that margin.
#pragma once

#include <uv.h>

#include <cstdint>

namespace kronop::daemon {

// Before any thread starts.
void tune_malloc();

class MallocTrim {
 public:
  static constexpr uint64_t kIntervalMs = 5'000;
  static constexpr uint64_t kMinGrowthBytes = 8u << 20;

  explicit MallocTrim(uv_loop_t *loop);
  MallocTrim(const MallocTrim &) = delete;
  MallocTrim &operator=(const MallocTrim &) = delete;

  // The timer (the drain closes it; a trim under way finishes first).
  uv_handle_t *handle() { return reinterpret_cast<uv_handle_t *>(&timer_); }

 private:
  static void on_tick(uv_timer_t *t);

  uv_loop_t *loop_;
  uv_timer_t timer_{};
  uv_work_t work_{};
  bool trimming_ = false;
  uint64_t after_last_trim_ = 0;  // anonymous resident bytes then (0: not read yet)
};

// The process's anonymous resident memory (RssAnon, as /proc/self/status names it) in
// bytes, from /proc/self/statm (resident minus file-backed and shared); 0 when unreadable.
uint64_t anonymous_resident_bytes();

}  // namespace kronop::daemon
