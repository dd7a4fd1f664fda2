// Allocator settings and periodic trimming; see malloc_tuning.h.
#include "malloc_tuning.h"

#include <malloc.h>

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
  self->trimming_ = true;
  uv_queue_work(
      self->loop_, &self->work_, [](uv_work_t *) { ::malloc_trim(0); },
      [](uv_work_t *w, int) { static_cast<MallocTrim *>(w->data)->trimming_ = false; });
}

}  // namespace kronop::daemon
