// SIGTERM (or SIGINT): the drain, a restart that loses nothing.
//
// At once: stop accepting, tell systemd (STOPPING=1), tell every client (a system_notice),
// and go on delivering to those not closed yet. Then close the clients with 1012 "service
// restart" in kBatches batches spread over half of --drain-ms, so that their reconnects to
// the next instance come spread out too. Then stop the ingest thread (what it has not read
// stays in the rings, in shared memory, for the next start), let the log commit everything
// that was fanned out, release the rings' positions of what it committed (durability.h),
// give the clients what is left of the budget to take their close frames, and let the main
// loop end. A second signal skips to the end of the drain.
//
// Budget of --drain-ms: the batches take half; the ingest thread may read on for a tenth
// (PipelineOptions::stop_drain_ms); the log gets what is left but a fifth (at least
// kMinLogStopMs) to commit what was fanned out; the clients' last close frames get what is
// left but that fifth, which is kept for the end of the process (threads joined, files
// closed). A log that runs out of its time is cut: the rest stays in the rings for the next
// start, which reads it as after a crash.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "acceptor.h"
#include "cluster_node.h"
#include "control.h"
#include "control_answers.h"
#include "io_loop.h"
#include "log_store.h"
#include "pipeline.h"
#include "service_notify.h"

namespace kronop::daemon {

class Drain {
 public:
  static constexpr unsigned kBatches = 10;

  struct Parts {
    ControlServer *control = nullptr;
    ControlAnswers *answers = nullptr;
    Pipeline *pipeline = nullptr;
    Acceptor *acceptor = nullptr;
    std::vector<std::unique_ptr<IoLoop>> *loops = nullptr;
    LogStore *log = nullptr;         // null: no durable log
    ClusterNode *cluster = nullptr;  // null: a single host
    ServiceNotifier *notifier = nullptr;
    // The main loop's other handles, closed at the end so that the loop can end.
    std::vector<uv_handle_t *> handles;
  };
  // Installs the SIGTERM and SIGINT handlers on `loop`.
  Drain(uv_loop_t *loop, Parts parts, uint64_t drain_ms);
  Drain(const Drain &) = delete;
  Drain &operator=(const Drain &) = delete;

  // Since the drain began (for the last log line).
  uint64_t elapsed_ms() const;
  // The log committed everything fanned out (false: it was cut at its budget, the rest is
  // read again at the next start, which must know the stop was not clean).
  bool log_complete() const { return log_complete_; }
  // The log's least time to commit what is queued, whatever --drain-ms is left.
  static constexpr uint64_t kMinLogStopMs = 1000;

 private:
  static void on_signal(uv_signal_t *handle, int signum);
  void begin(int signum);
  void finish();
  uint64_t connections() const;

  Parts parts_;
  uint64_t drain_ms_;
  uv_signal_t term_{}, intr_{};
  uv_timer_t batch_timer_{};
  enum class State : uint8_t { kRunning, kDraining, kFinished } state_ = State::kRunning;
  uint64_t started_ms_ = 0;
  unsigned batches_done_ = 0;
  bool log_complete_ = true;
};

}  // namespace kronop::daemon
