// What kronopd reports about itself: one DaemonStats snapshot (kronop.v1, control.proto)
// gathered from every part, for the control socket (kronopctl stats, health), the
// /api/v1/system endpoints and /metrics (system_api.h), and systemd's status line.
//
// Safe from any thread: every figure is an atomic counter written by its owning thread, a
// read of the shared-memory segment, or a call the part makes thread-safe (presence, reels).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "acceptor.h"
#include "config.h"
#include "io_loop.h"
#include "kronop/v1/control.pb.h"
#include "log_store.h"
#include "pipeline.h"
#include "presence.h"
#include "reels.h"
#include "rest_api.h"

namespace kronop::daemon {

class Stats {
 public:
  // The parts it reads; all outlive it. `log` may be null (no durable log).
  struct Parts {
    const Config *config = nullptr;
    Pipeline *pipeline = nullptr;
    const std::vector<std::unique_ptr<IoLoop>> *loops = nullptr;
    const PeerLimit *peer_limit = nullptr;
    const RestApi *rest = nullptr;
    const PresenceHub *presence = nullptr;
    const ReelState *reels = nullptr;
    const LogStore *log = nullptr;
    const ClusterNode *cluster = nullptr;  // null: a single host
  };
  explicit Stats(Parts parts);

  void snapshot(kronop::v1::DaemonStats &s) const;
  // systemd's STATUS= line: connections, and the rates since the previous call (main thread).
  std::string status_line();

 private:
  Parts parts_;
  uint64_t started_ms_;
  struct Reading {
    uint64_t ms = 0, fanned_out = 0, records = 0;
  } last_status_;
};

}  // namespace kronop::daemon
