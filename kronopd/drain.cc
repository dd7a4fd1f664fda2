// The SIGTERM drain; see drain.h.
#include "drain.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>

#include "kronop/clock.h"
#include "kronop/v1/presence.pb.h"
#include "log.h"
#include "payload_codec.h"
#include "websocket.h"

namespace kronop::daemon {
namespace {

const char *signal_name(int signum) { return signum == SIGTERM ? "SIGTERM" : "SIGINT"; }

// The notice every client gets as the drain begins.
std::string restart_notice_json() {
  kronop::v1::SystemNotice notice;
  const uint64_t now_ns = realtime_ns();
  char id[40];
  std::snprintf(id, sizeof id, "drain-%d-%llx", static_cast<int>(::getpid()),
                static_cast<unsigned long long>(now_ns));
  notice.set_id(id);
  notice.set_level(kronop::v1::SystemNotice::LEVEL_WARNING);
  notice.set_message("service restart");
  notice.set_timestamp(static_cast<int64_t>(now_ns / 1'000'000));
  return to_json(notice);
}

}  // namespace

Drain::Drain(uv_loop_t *loop, Parts parts, uint64_t drain_ms)
    : parts_(std::move(parts)), drain_ms_(drain_ms) {
  uv_timer_init(loop, &batch_timer_);
  batch_timer_.data = this;
  for (auto [sig, handle] : {std::pair{SIGTERM, &term_}, std::pair{SIGINT, &intr_}}) {
    uv_signal_init(loop, handle);
    handle->data = this;
    uv_signal_start(handle, on_signal, sig);
  }
}

uint64_t Drain::elapsed_ms() const { return monotonic_ms() - started_ms_; }

uint64_t Drain::connections() const {
  uint64_t n = 0;
  for (auto &l : *parts_.loops) n += l->counters()[Counter::kConnections];
  return n;
}

void Drain::on_signal(uv_signal_t *handle, int signum) {
  auto *self = static_cast<Drain *>(handle->data);
  if (self->state_ == State::kRunning) {
    self->begin(signum);
  } else {
    KLOG_NOTICE("event=drain_cut signal=%s reason=\"signal again: ending the drain now\"",
                signal_name(signum));
    self->finish();
  }
}

void Drain::begin(int signum) {
  const uint64_t connections = this->connections();
  started_ms_ = monotonic_ms();
  KLOG_NOTICE("event=draining signal=%s connections=%llu drain_ms=%llu", signal_name(signum),
              static_cast<unsigned long long>(connections),
              static_cast<unsigned long long>(drain_ms_));
  state_ = State::kDraining;
  parts_.notifier->stopping();
  parts_.notifier->close();
  parts_.acceptor->close();
  const std::string notice_json = restart_notice_json();
  for (auto &l : *parts_.loops) l->begin_drain(notice_json);
  const uint64_t step = drain_ms_ / 2 / kBatches;
  if (step == 0 || connections == 0) {
    finish();
    return;
  }
  uv_timer_start(
      &batch_timer_,
      [](uv_timer_t *t) {
        auto *self = static_cast<Drain *>(t->data);
        const unsigned done = ++self->batches_done_;
        for (auto &l : *self->parts_.loops) {
          l->close_batch(done, kBatches, ws::kCloseServiceRestart, "service restart");
        }
        // Every batch closed, or every client gone already (they left on their own, or
        // took their close frames): on to the end.
        if (done >= kBatches || self->connections() == 0) self->finish();
      },
      step, step);
}

void Drain::finish() {
  if (state_ == State::kFinished) return;
  state_ = State::kFinished;
  uv_timer_stop(&batch_timer_);
  // The ingest thread first: it is the one that wakes the loops, whose inboxes close next.
  // Everything it submitted is committed before kronopd exits (the log stops after it);
  // what it did not read stays in the rings for the next start, and the positions of what
  // the log holds are released.
  parts_.pipeline->stop();
  // What the ingest thread forwarded goes to Redis before the links close, for at most a
  // second, and before the log stops: Redis's acknowledgements are written as the outbox's
  // marks (what is not taken is in the log, and sent again at the next start).
  if (parts_.cluster != nullptr) parts_.cluster->stop(std::chrono::milliseconds(1000));
  if (parts_.log != nullptr) {
    // What is left of the budget but the reserve, at least kMinLogStopMs: a log that cannot
    // commit it all in time leaves the rest in the rings, read and logged at the next start
    // as after a crash (so the running marker stays).
    const uint64_t elapsed = elapsed_ms(), reserve = drain_ms_ / 5;
    const uint64_t budget = std::max<uint64_t>(
        kMinLogStopMs, drain_ms_ > elapsed + reserve ? drain_ms_ - elapsed - reserve : 0);
    log_complete_ = parts_.log->stop(std::chrono::milliseconds(budget));
    if (!log_complete_) {
      KLOG_WARN(
          "event=log_cut budget_ms=%llu left_in_rings=%llu consequence=\"read and logged at "
          "the next start, as after a crash\"",
          static_cast<unsigned long long>(budget),
          static_cast<unsigned long long>(parts_.log->left_uncommitted()));
    }
    parts_.pipeline->release_logged();
  }
  // Each loop closes what is still open (1012), gives clients what is left of the budget
  // (at most two seconds) to take their close frames, cuts the rest and ends.
  const uint64_t reserve = drain_ms_ / 5, elapsed = elapsed_ms();
  const uint64_t linger =
      std::min<uint64_t>(2000, drain_ms_ > elapsed + reserve ? drain_ms_ - elapsed - reserve : 0);
  for (auto &l : *parts_.loops) l->close(ws::kCloseServiceRestart, "service restart", linger);
  parts_.control->close();
  parts_.answers->close();
  uv_close(reinterpret_cast<uv_handle_t *>(&batch_timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t *>(&term_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t *>(&intr_), nullptr);
  for (uv_handle_t *h : parts_.handles) uv_close(h, nullptr);
}

}  // namespace kronop::daemon
