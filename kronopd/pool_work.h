// Work on libuv's thread pool, with its ownership stated once.
//
// run_on_pool(loop, work, done) runs work() on a pool thread, then done() on the loop's
// thread. The request is owned by a std::unique_ptr until uv_queue_work takes it; from then
// on libuv holds it (released into req->data) and the completion callback owns it again, so
// it is freed exactly once, whether or not done() does anything. work() must not touch what
// the loop owns; done() must find out for itself whether what it answers still exists (a
// connection may have closed meanwhile): capture an id or a weak_ptr, not a raw pointer.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <utility>

namespace kronop::daemon {

inline void run_on_pool(uv_loop_t *loop, std::function<void()> work, std::function<void()> done) {
  struct Job {
    uv_work_t req{};
    std::function<void()> work;
    std::function<void()> done;
  };
  auto job = std::make_unique<Job>();
  job->work = std::move(work);
  job->done = std::move(done);
  job->req.data = job.get();
  int rc = uv_queue_work(
      loop, &job->req, [](uv_work_t *req) { static_cast<Job *>(req->data)->work(); },
      [](uv_work_t *req, int) {
        std::unique_ptr<Job> owned(static_cast<Job *>(req->data));
        owned->done();
      });
  if (rc == 0) {
    (void)job.release();  // libuv's until the completion callback
  } else {
    // Not queued (the loop is closing): do the work here rather than lose the answer.
    job->work();
    job->done();
  }
}

}  // namespace kronop::daemon
