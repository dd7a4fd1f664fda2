// The operators' HTTP endpoints; see system_api.h.
#include "system_api.h"

#include "payload_codec.h"

#include <cinttypes>
#include <cstdio>

namespace kronop::daemon {
namespace {

class Exposition {
 public:
  // A metric family: its HELP and TYPE lines, once.
  void family(const char *name, const char *type, const char *help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  // One sample; `labels` is empty or `key="value",...` with values that need no escaping.
  void sample(const char *name, const std::string &labels, double value) {
    out_ += name;
    if (!labels.empty()) out_ += "{" + labels + "}";
    char buf[64];
    std::snprintf(buf, sizeof buf, " %.15g\n", value);
    out_ += buf;
  }
  void simple(const char *name, const char *type, const char *help, double value) {
    family(name, type, help);
    sample(name, "", value);
  }
  // A latency summary (nanoseconds in, seconds out) with its quantiles and count.
  void summary(const char *name, const char *help, const kronop::v1::LatencySummary &l) {
    family(name, "summary", help);
    const std::pair<const char *, uint64_t> quantiles[] = {
        {"0.5", l.p50_ns()}, {"0.9", l.p90_ns()}, {"0.99", l.p99_ns()}, {"0.999", l.p999_ns()}};
    for (auto [q, ns] : quantiles) {
      sample(name, std::string("quantile=\"") + q + "\"", static_cast<double>(ns) / 1e9);
    }
    sample((std::string(name) + "_count").c_str(), "", static_cast<double>(l.count()));
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

}  // namespace

std::string prometheus_text(const kronop::v1::DaemonStats &s) {
  Exposition e;
  const auto &c = s.clients();
  const auto d = [](uint64_t v) { return static_cast<double>(v); };
  e.simple("kronop_uptime_seconds", "gauge", "Seconds since kronopd started.",
           d(s.uptime_ms()) / 1e3);
  e.simple("kronop_connections", "gauge", "Client connections open now.", d(c.connections()));
  e.simple("kronop_connections_accepted_total", "counter", "Client connections accepted.",
           d(c.connections_total()));
  e.family("kronop_channels", "gauge", "Joined channels now, by topic kind.");
  for (const char *kind : {"reel", "user", "system"}) {
    auto it = c.channels_by_kind().find(kind);
    e.sample("kronop_channels", std::string("kind=\"") + kind + "\"",
             it == c.channels_by_kind().end() ? 0 : d(it->second));
  }
  e.simple("kronop_records_ingested_total", "counter", "Valid records drained from the rings.",
           d(s.records()));
  e.simple("kronop_records_rejected_total", "counter", "Records that failed validation.",
           d(s.rejects()));
  if (s.has_log()) {
    const auto &l = s.log();
    e.simple("kronop_log_messages_total", "counter", "Messages the durable log committed.",
             d(l.rows()));
    e.simple("kronop_log_blocks_total", "counter", "Rows of blocks those messages went into.",
             d(l.blocks()));
    e.simple("kronop_log_journaled_total", "counter",
             "Messages that went into the journal before their blocks.", d(l.journaled()));
    e.simple("kronop_log_payload_bytes_total", "counter", "Body bytes of the messages logged.",
             d(l.payload_bytes()));
    e.simple("kronop_log_stored_bytes_total", "counter",
             "Bytes of the blocks as stored (compressed).", d(l.stored_bytes()));
    e.simple("kronop_log_disk_bytes_total", "counter",
             "Bytes SQLite wrote for the log: WAL frames and checkpoint pages.", d(l.disk_bytes()));
    e.simple("kronop_log_disk_bytes_per_message", "gauge",
             "Bytes written to disk per message logged, since start (write amplification).",
             l.disk_bytes_per_message());
    e.simple("kronop_log_compression_ratio", "gauge", "Body bytes over stored bytes, since start.",
             l.compression_ratio());
    e.simple("kronop_log_batches_behind", "gauge",
             "Drain passes submitted to the log and not yet committed.", d(l.batches_behind()));
  }
  e.simple("kronop_producer_wakeups_total", "counter",
           "Wake-up calls producers made because the ingest thread slept.", d(s.wakeups()));
  e.simple("kronop_ingest_polls_total", "counter",
           "Waits in which the ingest thread polled the rings before sleeping.",
           d(s.polled_waits()));
  e.simple("kronop_ingest_polls_caught_total", "counter",
           "Polls of the rings that found records before the ingest thread slept.",
           d(s.polls_caught()));
  e.simple("kronop_messages_total", "counter", "Messages numbered and dispatched to the loops.",
           d(c.messages_fanned_out()));
  e.simple("kronop_frames_in_total", "counter", "WebSocket messages received from clients.",
           d(c.frames_in()));
  e.simple("kronop_frames_out_total", "counter", "Frames written to clients.", d(c.frames_out()));
  e.simple("kronop_bytes_out_total", "counter", "Bytes written to clients.", d(c.bytes_out()));
  e.simple("kronop_writes_total", "counter", "Write calls that carried the frames.", d(c.writes()));
  e.simple("kronop_dropped_low_priority_total", "counter",
           "Low-priority messages not sent to slow clients.", d(c.dropped_low()));
  e.family("kronop_connections_closed_total", "counter",
           "Connections closed by kronopd, by reason.");
  e.sample("kronop_connections_closed_total", "reason=\"idle\"", d(c.closed_idle()));
  e.sample("kronop_connections_closed_total", "reason=\"protocol\"", d(c.closed_protocol()));
  e.sample("kronop_connections_closed_total", "reason=\"slow_consumer\"", d(c.closed_slow()));
  e.sample("kronop_connections_closed_total", "reason=\"rate_limited\"",
           d(c.closed_rate_limited()));
  e.simple("kronop_auth_rejected_total", "counter",
           "Connections and joins refused for their token.", d(c.auth_rejected()));
  e.simple("kronop_joins_over_limit_total", "counter",
           "Joins refused for a socket's --max-channels.", d(c.joins_over_limit()));
  e.simple("kronop_connections_refused_per_ip_total", "counter",
           "Connections refused over --max-connections-per-ip.", d(c.refused_per_ip()));
  e.simple("kronop_http_errors_total", "counter", "Requests answered with an HTTP error.",
           d(c.http_errors()));
  e.family("kronop_ring_fill_ratio", "gauge",
           "Committed, not yet released bytes of a producer ring over its capacity.");
  for (const auto &r : s.rings()) {
    e.sample("kronop_ring_fill_ratio", "ring=\"" + std::to_string(r.index()) + "\"",
             r.capacity_bytes() ? d(r.used_bytes()) / d(r.capacity_bytes()) : 0);
  }
  e.simple("kronop_producers_attached", "gauge", "Producers holding a ring.",
           d(s.producers_attached()));
  e.summary("kronop_publish_to_ingest_seconds",
            "From a producer's publish to kronopd's validation of the record.",
            s.publish_to_ingest());
  const auto &p = s.presence();
  e.simple("kronop_presence_topics", "gauge", "Reel topics with someone present.", d(p.topics()));
  e.simple("kronop_presences", "gauge", "Sockets tracked by presence on reel topics.",
           d(p.presences()));
  e.simple("kronop_users_online", "gauge", "Users with a socket open.", d(p.users_online()));
  e.simple("kronop_presence_diffs_total", "counter", "presence_diff messages sent.", d(p.diffs()));
  e.family("kronop_interactions_total", "counter",
           "Likes, comments and shares pushed by clients, by outcome.");
  e.sample("kronop_interactions_total", "outcome=\"accepted\"", d(c.interactions()));
  e.sample("kronop_interactions_total", "outcome=\"invalid\"", d(c.interactions_invalid()));
  e.sample("kronop_interactions_total", "outcome=\"rate_limited\"",
           d(c.interactions_rate_limited()));
  e.simple("kronop_rest_requests_total", "counter", "REST API requests (reels, users).",
           d(c.rest_requests()));
  e.family("kronop_recoveries_total", "counter",
           "Joins with last_seq, by outcome (recovered, or told recovered: false).");
  e.sample("kronop_recoveries_total", "outcome=\"recovered\"", d(c.recoveries()));
  e.sample("kronop_recoveries_total", "outcome=\"not_recovered\"", d(c.recoveries_failed()));
  e.simple("kronop_recovered_messages_total", "counter",
           "Missed messages sent to rejoining clients from the log.", d(c.recovered_messages()));
  if (s.has_cluster()) {
    const auto &k = s.cluster();
    e.simple("kronop_cluster_up", "gauge", "1 while both Redis links are up.", k.up() ? 1 : 0);
    e.simple("kronop_cluster_reconnects_total", "counter",
             "Times the Redis links came up again after being lost.", d(k.downs()));
    e.simple("kronop_cluster_forward_waiting", "gauge",
             "Records forwarded to Redis and not yet numbered: the forwarding lag.",
             d(k.waiting()));
    e.simple("kronop_cluster_numbered_total", "counter", "Records Redis numbered.",
             d(k.numbered()));
    e.simple("kronop_cluster_messages_received_total", "counter",
             "Numbered messages received on the node's subscriptions.", d(k.messages_received()));
    e.simple("kronop_cluster_subscriptions", "gauge", "Topics the node subscribes to.",
             d(k.subscriptions()));
    e.simple("kronop_cluster_members", "gauge",
             "Nodes of the cluster as of this node's last heartbeat, this one included.",
             static_cast<double>(k.members_size()));
    e.simple("kronop_cluster_nodes_dropped_total", "counter",
             "Nodes found dead (heartbeats missed): their users left here.", d(k.nodes_dropped()));
    e.family("kronop_cluster_presence_messages_total", "counter",
             "Presence messages between nodes, by direction (refused: malformed or past a bound).");
    e.sample("kronop_cluster_presence_messages_total", "direction=\"sent\"", d(k.presence_sent()));
    e.sample("kronop_cluster_presence_messages_total", "direction=\"received\"",
             d(k.presence_received()));
    e.sample("kronop_cluster_presence_messages_total", "direction=\"refused\"",
             d(k.presence_refused()));
    if (k.has_redis_cluster()) {
      e.simple("kronop_redis_cluster_masters", "gauge",
               "Masters of the Redis Cluster this node links to.", d(k.redis_cluster().masters()));
      e.simple("kronop_redis_cluster_redirects_total", "counter",
               "MOVED and ASK replies followed (slots moving between masters).",
               d(k.redis_cluster().redirects()));
      e.simple("kronop_redis_cluster_map_changes_total", "counter",
               "Slot maps read that moved slots.", d(k.redis_cluster().map_changes()));
    }
    e.family("kronop_cluster_user_records_total", "counter",
             "Users' status records in Redis, by operation (failed: no answer or an error).");
    e.sample("kronop_cluster_user_records_total", "op=\"write\"", d(k.user_writes()));
    e.sample("kronop_cluster_user_records_total", "op=\"read\"", d(k.user_reads()));
    e.sample("kronop_cluster_user_records_total", "op=\"failed\"", d(k.user_failures()));
  }
  e.summary("kronop_delivery_seconds",
            "From a producer's publish to the message's frames queued for every subscriber.",
            c.publish_to_delivery());
  return e.take();
}

kronop::v1::Health assess_health(const kronop::v1::DaemonStats &s) {
  kronop::v1::Health h;
  h.set_pid(s.pid());
  h.set_uptime_ms(s.uptime_ms());
  h.set_log_batches_behind(s.log().batches_behind());
  h.set_disk_free_bytes(s.data_dir_free_bytes());
  if (s.log().batches_behind() > 200) {
    h.add_problems("the durable log is " + std::to_string(s.log().batches_behind()) +
                   " batches behind ingest");
  }
  double max_fill = 0;
  for (const auto &r : s.rings()) {
    if (r.capacity_bytes() == 0) continue;
    const double fill =
        static_cast<double>(r.used_bytes()) / static_cast<double>(r.capacity_bytes());
    max_fill = std::max(max_fill, fill);
    if (fill > 0.9) {
      h.add_problems("ring " + std::to_string(r.index()) + " is " +
                     std::to_string(static_cast<int>(fill * 100)) + " % full");
    }
  }
  h.set_max_ring_fill(max_fill);
  if (s.has_cluster() && !s.cluster().up()) {
    h.add_problems("the cluster's Redis (" + s.cluster().redis() +
                   ") is unreachable: delivery waits for it");
  }
  constexpr uint64_t kMinFree = uint64_t{256} << 20;
  if (s.data_dir_free_bytes() < kMinFree) {
    h.add_problems("the data directory has " + std::to_string(s.data_dir_free_bytes() >> 20) +
                   " MiB free");
  }
  // Someone damaged the segment: producers' records may have been lost, and whoever did it
  // may do it again. Unhealthy for a minute after each repair.
  constexpr uint64_t kSegmentProblemMs = 60'000;
  const bool segment_damaged =
      s.segment_repairs() > 0 && s.segment_problem_age_ms() < kSegmentProblemMs;
  if (segment_damaged) h.add_problems("segment repaired: " + s.segment_problem());
  h.set_healthy(h.problems().empty());
  h.set_status(segment_damaged ? "unhealthy" : h.healthy() ? "ok" : "degraded");
  return h;
}

std::string SystemApi::respond(const http::Request &req) const {
  const std::string &p = req.path;
  kronop::v1::DaemonStats s;
  stats_(s);
  std::string body, type = "application/json";
  int status = 200;
  if (p == "/metrics") {
    body = prometheus_text(s);
    type = "text/plain; version=0.0.4; charset=utf-8";
  } else if (p == "/api/v1/system/health") {
    const kronop::v1::Health h = assess_health(s);
    body = to_json(h);
    // Load balancers and probes read the status code.
    if (!h.healthy()) status = 503;
  } else if (p == "/api/v1/system/stats") {
    body = to_json(s);
  } else if (p == "/api/v1/system/performance") {
    kronop::v1::Performance perf;
    perf.set_uptime_ms(s.uptime_ms());
    perf.set_records(s.records());
    perf.set_messages_fanned_out(s.clients().messages_fanned_out());
    perf.set_frames_out(s.clients().frames_out());
    perf.set_writes(s.clients().writes());
    perf.set_bytes_out(s.clients().bytes_out());
    perf.set_connections(s.clients().connections());
    *perf.mutable_publish_to_ingest() = s.publish_to_ingest();
    *perf.mutable_publish_to_delivery() = s.clients().publish_to_delivery();
    body = to_json(perf);
  } else {
    body = to_json(s.clients());
  }
  std::string r = http::response(status, type, body, {}, true);
  if (req.method == "HEAD") r.resize(r.size() - body.size());
  return r;
}

}  // namespace kronop::daemon
