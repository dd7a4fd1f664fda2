// A libuv loop of a test's own, run until a condition holds (for parts that live on a loop:
// the Redis links, the cluster's subscriptions).
#pragma once

#include <uv.h>

#include <chrono>
#include <functional>

namespace kronop::test {

class LoopRunner {
 public:
  LoopRunner() { uv_loop_init(&loop_); }
  // Runs what is left (handles the test closed) and closes the loop.
  ~LoopRunner() {
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
  }
  LoopRunner(const LoopRunner &) = delete;
  LoopRunner &operator=(const LoopRunner &) = delete;

  uv_loop_t *loop() { return &loop_; }

  // Runs the loop until cond() holds (true) or `ms` pass (false). A timer keeps the loop
  // turning, so cond() is asked at least every 10 ms.
  bool run_until(const std::function<bool()> &cond, int ms = 10000) {
    uv_timer_t keep{};
    uv_timer_init(&loop_, &keep);
    uv_timer_start(
        &keep, [](uv_timer_t *) {}, 10, 10);
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    bool ok = cond();
    while (!ok && std::chrono::steady_clock::now() < give_up) {
      uv_run(&loop_, UV_RUN_ONCE);
      ok = cond();
    }
    uv_close(reinterpret_cast<uv_handle_t *>(&keep), nullptr);
    uv_run(&loop_, UV_RUN_NOWAIT);
    return ok;
  }

 private:
  uv_loop_t loop_{};
};

}  // namespace kronop::test
