// The operators' HTTP endpoints on the client port:
//
//   GET /metrics                    Prometheus text exposition format (version 0.0.4)
//   GET /api/v1/system/health       {"healthy":true,"status":"ok","pid":N,"uptime_ms":"N"}
//   GET /api/v1/system/stats        the DaemonStats of `kronopctl stats --json`
//   GET /api/v1/system/performance  totals and latency summaries (kronop.v1.Performance)
//   GET /api/v1/connections/stats   its "clients" part
//
// Everything is built from one kronop.v1.DaemonStats snapshot (the control socket's), so
// the three views cannot disagree. The paths and methods are in the client port's route
// table (routes.h), which answers other methods with 405 and Allow. Responses close the
// connection.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "http.h"
#include "kronop/v1/control.pb.h"

namespace kronop::daemon {

class SystemApi {
 public:
  // Fills a stats snapshot; called on the I/O loop thread that got the request, so it may
  // only read what is safe to read from any thread (atomic counters, the segment).
  using StatsSource = std::function<void(kronop::v1::DaemonStats &)>;
  explicit SystemApi(StatsSource stats) : stats_(std::move(stats)) {}

  // The complete HTTP response for a GET or HEAD the route table sent here (routes.h).
  std::string respond(const http::Request &req) const;

 private:
  StatsSource stats_;
};

// The Prometheus text for a snapshot (exposed for the tests).
std::string prometheus_text(const kronop::v1::DaemonStats &s);

// Whether kronopd is healthy, from a snapshot (the control socket's `health` and GET
// /api/v1/system/health agree): degraded when the durable log is more than 200 batches
// (about a second) behind, a producer ring is over 90 % full, or the data directory has less
// than 256 MiB free; each problem is named.
kronop::v1::Health assess_health(const kronop::v1::DaemonStats &s);

}  // namespace kronop::daemon
