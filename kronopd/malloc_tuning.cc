// Allocator settings and periodic trimming; see malloc_tuning.h.
#include "malloc_tuning.h"

#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace kronop::daemon {

void tune_malloc() {
  ::mallopt(M_MMAP_THRESHOLD, 64 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 256 << 20);
}

MallocTrim::MallocTrim(uv_loop_t *loop) : loop_(loop) {
  timer_.data = this;
  work_.data = this;
  uv_timer_init(loop, &timer_);
  uv_timer_start(&timer_, on_tick, kIntervalMs, kIntervalMs);
}

void MallocTrim::on_tick(uv_timer_t *t) {
  auto *self = static_cast<MallocTrim *>(t->data);
  if (self->trimming_) return;
  const uint64_t now = anonymous_resident_bytes();
  if (self->after_last_trim_ == 0 || now < self->after_last_trim_) {
    self->after_last_trim_ = now;
    return;
  }
  if (now - self->after_last_trim_ <= std::max(kMinGrowthBytes, self->after_last_trim_ / 16)) {
    return;
  }
  self->trimming_ = true;
  uv_queue_work(
      self->loop_, &self->work_, [](uv_work_t *) { ::malloc_trim(0); },
      [](uv_work_t *w, int) {
        auto *me = static_cast<MallocTrim *>(w->data);
        me->trimming_ = false;
        me->after_last_trim_ = anonymous_resident_bytes();
      });
}

uint64_t anonymous_resident_bytes() {
  std::FILE *f = std::fopen("/proc/self/statm", "re");
  if (f == nullptr) return 0;
  unsigned long long size = 0, resident = 0, shared = 0;
  const int n = std::fscanf(f, "%llu %llu %llu", &size, &resident, &shared);
  std::fclose(f);
  if (n != 3 || resident < shared) return 0;
  return (resident - shared) * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

}  // namespace kronop::daemon
