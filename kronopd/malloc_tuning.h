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
//
// What it costs, and what did not do better (bench/compare-builds, fanout, 10,000
// subscribers, 30 s, against the build without trimming): the delivery tail p99.9 rose
// 1.17-1.36x, within reach of the run-to-run noise there (about 1.15x). Trimming only when
// mallinfo2 reports much free memory was no better (it walks the same chunks under the same
// locks); trimming only when RssAnon (/proc/self/statm) had grown since the last trim
// failed the soak's memory bound (170 -> 201 MiB), because a trim at a burst's peak finds
// the memory still in use and what the burst frees later is never given back.
#pragma once

#include <uv.h>

#include <cstdint>

namespace kronop::daemon {

// Before any thread starts.
void tune_malloc();

class MallocTrim {
 public:
  static constexpr uint64_t kIntervalMs = 5'000;

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
};

}  // namespace kronop::daemon
