// kronopctl's subcommands that ask the running kronopd over its control socket: stats (and
// stats --watch, with per-second rates), health, presence user/reel, connections. Each sends
// one ControlRequest and prints the matching part of the response, as a table or, with
// --json, as the message's JSON mapping.
#include <chrono>
#include <cstdio>
#include <optional>

#include "commands.h"
#include "control_client.h"
#include "payload_codec.h"
#include "time_format.h"

namespace kronop::ctl {
namespace {

int call(const Globals &g, const v1::ControlRequest &req, v1::ControlResponse &resp) {
  auto r = ctl::call_daemon(g.socket, req);
  if (!r.ok()) {
    std::fprintf(stderr, "kronopctl: %s\n", r.error().message.c_str());
    return kExitFailed;
  }
  resp = std::move(r).value();
  if (!resp.error().empty()) {
    std::fprintf(stderr, "kronopctl: kronopd: %s\n", resp.error().c_str());
    return kExitFailed;
  }
  return kExitOk;
}

// Sends `req` and prints the answer's `result` part: as JSON with --json, else by `print`,
// which returns the exit status.
template <typename Result, typename Print>
int query(const Globals &g, const v1::ControlRequest &req,
          const Result &(v1::ControlResponse::*result)() const, Print print) {
  v1::ControlResponse resp;
  if (int rc = call(g, req, resp); rc != kExitOk) return rc;
  const Result &answer = (resp.*result)();
  if (!g.json) return print(answer);
  std::printf("%s\n", to_json(answer).c_str());
  return kExitOk;
}

void print_stats(const v1::DaemonStats &s) {
  auto u = [](uint64_t v) { return static_cast<unsigned long long>(v); };
  std::printf("kronopd pid %u, up %.1f s, segment /dev/shm/%s (epoch %llu)\n", s.pid(),
              double(s.uptime_ms()) / 1000.0, s.shm_name().c_str(), u(s.segment_epoch()));
  std::printf("%-22s %llu\n", "records", u(s.records()));
  std::printf("%-22s %llu\n", "bytes", u(s.bytes()));
  std::printf("%-22s %llu\n", "rejects", u(s.rejects()));
  for (const auto &[reason, n] : s.rejects_by_reason()) {
    std::printf("  %-20s %llu\n", reason.c_str(), u(n));
  }
  std::printf("%-22s %llu\n", "corrupt ranges", u(s.corrupt_ranges()));
  std::printf("%-22s %llu\n", "sequence gaps", u(s.seq_gaps()));
  std::printf("%-22s %llu\n", "sequence regressions", u(s.seq_regressions()));
  std::printf("%-22s %llu\n", "producers attached", u(s.producers_attached()));
  std::printf("%-22s %llu\n", "leases reclaimed", u(s.leases_reclaimed()));
  std::printf("%-22s %llu\n", "producer wakeups", u(s.wakeups()));
  std::printf("%-22s %llu (%llu found records)\n", "ingest polls", u(s.polled_waits()),
              u(s.polls_caught()));
  const auto &l = s.publish_to_ingest();
  std::printf("%-22s p50 %.1f us, p99 %.1f us, p99.9 %.1f us, max %.1f us\n", "publish->ingest",
              double(l.p50_ns()) / 1e3, double(l.p99_ns()) / 1e3, double(l.p999_ns()) / 1e3,
              double(l.max_ns()) / 1e3);
  const auto &c = s.clients();
  std::printf("\nclients: %llu connected (%llu since start)\n", u(c.connections()),
              u(c.connections_total()));
  for (const auto &[kind, n] : c.channels_by_kind()) {
    std::printf("  %-20s %llu\n", (kind + " channels").c_str(), u(n));
  }
  std::printf("%-22s %llu in, %llu out (%llu bytes out, %llu writes)\n", "frames", u(c.frames_in()),
              u(c.frames_out()), u(c.bytes_out()), u(c.writes()));
  std::printf("%-22s %llu idle, %llu protocol errors, %llu slow, %llu HTTP errors\n", "closed",
              u(c.closed_idle()), u(c.closed_protocol()), u(c.closed_slow()), u(c.http_errors()));
  std::printf("%-22s %llu low-priority messages\n", "dropped", u(c.dropped_low()));
  const auto &w = c.publish_to_delivery();
  std::printf("%-22s p50 %.1f us, p99 %.1f us, p99.9 %.1f us, max %.1f us (%llu messages)\n",
              "publish->delivery", double(w.p50_ns()) / 1e3, double(w.p99_ns()) / 1e3,
              double(w.p999_ns()) / 1e3, double(w.max_ns()) / 1e3, u(w.count()));
  std::printf("%-22s %llu auth, %llu over the per-address limit, %llu rate-limited\n", "refused",
              u(c.auth_rejected()), u(c.refused_per_ip()), u(c.closed_rate_limited()));
  std::printf("%-22s %llu (%llu failed to encode)\n", "messages fanned out",
              u(c.messages_fanned_out()), u(c.encode_failures()));
  if (s.has_log()) {
    const auto &lg = s.log();
    std::printf("\nlog: %s\n", lg.path().c_str());
    std::printf(
        "%-22s %llu in %llu blocks (%llu through the journal), %llu transactions (%llu "
        "duplicates skipped)\n",
        "messages", u(lg.rows()), u(lg.blocks()), u(lg.journaled()), u(lg.transactions()),
        u(lg.duplicates()));
    std::printf("%-22s %llu bodies, %llu stored (%.2fx compression)\n", "bytes",
                u(lg.payload_bytes()), u(lg.stored_bytes()), lg.compression_ratio());
    std::printf("%-22s %llu (%.1f per message, WAL and checkpoints)\n", "written to disk",
                u(lg.disk_bytes()), lg.disk_bytes_per_message());
    std::printf("%-22s %llu batches behind, %llu trimmed, %llu checkpoints, %llu errors\n",
                "writer", u(lg.batches_behind()), u(lg.trimmed()), u(lg.checkpoints()),
                u(lg.errors()));
  }
  if (s.rings_size() > 0) {
    std::printf("\n%5s %8s %16s %8s %12s %10s %10s\n", "ring", "pid", "producer", "fill",
                "published", "full", "too_large");
    for (const auto &r : s.rings()) {
      double fill =
          r.capacity_bytes() ? 100.0 * double(r.used_bytes()) / double(r.capacity_bytes()) : 0;
      std::printf("%5u %8u %016llx %7.1f%% %12llu %10llu %10llu\n", r.index(), r.producer_pid(),
                  u(r.producer_id()), fill, u(r.records_published()), u(r.refused_full()),
                  u(r.refused_too_large()));
    }
  }
}

// Per-second rates between two readings of the counters, timed by the daemon's uptime. The
// first reading (or the first after a restart of the daemon) is compared with the daemon's
// start: its rates are averages since then.
struct Rates {
  double seconds = 0;  // the span the rates are over
  bool since_start = false;
  double records = 0, messages_fanned_out = 0, frames_out = 0;
};

Rates rates_between(const v1::DaemonStats *before, const v1::DaemonStats &now) {
  Rates r;
  r.since_start = before == nullptr || before->pid() != now.pid() ||
                  before->uptime_ms() > now.uptime_ms() || before->records() > now.records();
  const v1::DaemonStats zero;
  const v1::DaemonStats &b = r.since_start ? zero : *before;
  r.seconds = double(now.uptime_ms() - b.uptime_ms()) / 1000.0;
  if (r.seconds <= 0) return r;
  auto per_second = [&](uint64_t then, uint64_t later) {
    return later >= then ? double(later - then) / r.seconds : 0.0;
  };
  r.records = per_second(b.records(), now.records());
  r.messages_fanned_out =
      per_second(b.clients().messages_fanned_out(), now.clients().messages_fanned_out());
  r.frames_out = per_second(b.clients().frames_out(), now.clients().frames_out());
  return r;
}

}  // namespace

int run_stats(const Globals &g, const StatsArgs &a) {
  v1::ControlRequest req;
  req.mutable_stats();
  if (!a.watch) {
    return query(g, req, &v1::ControlResponse::stats, [](const v1::DaemonStats &s) {
      print_stats(s);
      return kExitOk;
    });
  }
  v1::ControlResponse resp;
  stop_on_signals();
  std::optional<v1::DaemonStats> previous;
  for (uint64_t reading = 0; a.count == 0 || reading < a.count; ++reading) {
    if (reading > 0 && !sleep_unless_stopped(a.interval_ms)) break;
    if (int rc = call(g, req, resp); rc != kExitOk) return rc;
    const v1::DaemonStats &s = resp.stats();
    const Rates r = rates_between(previous ? &*previous : nullptr, s);
    const uint64_t now_ms =
        static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count());
    if (g.json) {
      // One object per line: the time, the rates and the whole DaemonStats.
      std::printf(
          "{\"time\":\"%s\",\"rates\":{\"seconds\":%.3f,\"since_start\":%s,"
          "\"records_per_second\":%.1f,\"messages_fanned_out_per_second\":%.1f,"
          "\"frames_out_per_second\":%.1f},\"stats\":%s}\n",
          kronop::rfc3339_ms(now_ms).c_str(), r.seconds, r.since_start ? "true" : "false",
          r.records, r.messages_fanned_out, r.frames_out, to_json(s).c_str());
    } else {
      if (reading > 0) std::printf("\n");
      std::printf("--- %s: %.1f records/s, %.1f messages fanned out/s, %.1f frames out/s (%s)\n",
                  kronop::rfc3339_ms(now_ms).c_str(), r.records, r.messages_fanned_out,
                  r.frames_out, r.since_start ? "average since start" : "since the last reading");
      print_stats(s);
    }
    std::fflush(stdout);
    previous = s;
  }
  return kExitOk;
}

int run_health(const Globals &g) {
  v1::ControlRequest req;
  req.mutable_health();
  v1::ControlResponse resp;
  if (int rc = call(g, req, resp); rc != kExitOk) {
    if (g.json) std::printf("{\"healthy\":false}\n");
    return rc;
  }
  const auto &h = resp.health();
  if (g.json) {
    std::printf("%s\n", to_json(h).c_str());
  } else {
    std::printf(
        "%s (pid %u, up %.1f s; log %llu batch(es) behind, fullest ring %.0f %%, "
        "%llu MiB free)\n",
        h.status().c_str(), h.pid(), double(h.uptime_ms()) / 1000.0,
        static_cast<unsigned long long>(h.log_batches_behind()), h.max_ring_fill() * 100,
        static_cast<unsigned long long>(h.disk_free_bytes() >> 20));
    for (const auto &p : h.problems()) std::printf("  problem: %s\n", p.c_str());
  }
  return h.healthy() ? kExitOk : kExitFailed;
}

int run_cluster(const Globals &g) {
  v1::ControlRequest req;
  req.mutable_stats();
  v1::ControlResponse resp;
  if (int rc = call(g, req, resp); rc != kExitOk) return rc;
  const v1::DaemonStats &s = resp.stats();
  if (!s.has_cluster()) {
    if (g.json) {
      std::printf("{\"cluster\":false}\n");
    } else {
      std::printf("a single host: kronopd runs without --redis\n");
    }
    return kExitOk;
  }
  const v1::ClusterStats &c = s.cluster();
  if (g.json) {
    std::printf("{\"cluster\":true,\"node\":%s}\n", to_json(c).c_str());
    return c.up() ? kExitOk : kExitFailed;
  }
  const auto u = [](uint64_t v) { return static_cast<unsigned long long>(v); };
  std::printf("%-18s %s\n", "redis", c.redis().c_str());
  std::printf("%-18s %s (up %llu times, lost %llu)\n", "link", c.up() ? "up" : "down", u(c.ups()),
              u(c.downs()));
  std::printf("%-18s %llu record(s) waiting for Redis\n", "forwarding lag", u(c.waiting()));
  std::printf("%-18s %llu forwarded, %llu numbered, %llu duplicate(s)\n", "forwarded",
              u(c.forwarded()), u(c.numbered()), u(c.duplicates()));
  std::printf("%-18s %llu topic(s)\n", "subscriptions", u(c.subscriptions()));
  std::printf("%-18s %llu received, %llu delivered, %llu gap(s), %llu new epoch(s)\n", "messages",
              u(c.messages_received()), u(c.delivered()), u(c.gaps()), u(c.epoch_changes()));
  std::printf("%-18s %llu\n", "history reads", u(c.history_reads()));
  std::printf("%-18s %llu sent, %llu received, %llu refused; %llu node(s) found dead\n", "presence",
              u(c.presence_sent()), u(c.presence_received()), u(c.presence_refused()),
              u(c.nodes_dropped()));
  std::printf("%-18s %llu written, %llu read, %llu failed\n", "user records", u(c.user_writes()),
              u(c.user_reads()), u(c.user_failures()));
  if (c.has_redis_cluster()) {
    const auto &rc = c.redis_cluster();
    std::printf("%-18s %llu master(s); %llu redirect(s) followed, %llu slot map change(s)\n",
                "redis cluster", u(rc.masters()), u(rc.redirects()), u(rc.map_changes()));
  }
  std::printf("%-18s %d\n", "nodes", c.members_size());
  if (c.members_size() > 0) {
    std::printf("  %-10s %-28s %11s  %-24s %s\n", "ID", "ADDRESS", "CONNECTIONS", "LAST HEARTBEAT",
                "AGE");
    for (const auto &m : c.members()) {
      std::printf("  %-10s %-28s %11llu  %-24s %.1f s%s\n", m.id().c_str(), m.address().c_str(),
                  u(m.connections()), m.last_heartbeat().c_str(),
                  static_cast<double>(m.heartbeat_age_ms()) / 1000.0,
                  m.self() ? "  (this node)" : "");
    }
  }
  return c.up() ? kExitOk : kExitFailed;
}

int run_user_presence(const Globals &g, const std::string &user) {
  if (!valid_id_arg("user", user)) return kExitUsage;
  v1::ControlRequest req;
  req.mutable_user_presence()->set_user_id(user);
  return query(g, req, &v1::ControlResponse::user_presence, [](const v1::UserPresenceBody &p) {
    std::printf("%-13s %s\n", "user", p.user_id().c_str());
    std::printf("%-13s %s\n", "status", p.status().c_str());
    if (p.current_reel() != 0) {
      std::printf("%-13s reel:%d\n", "current reel", p.current_reel());
    } else {
      std::printf("%-13s none\n", "current reel");
    }
    std::printf("%-13s %s\n", "activity", p.activity().empty() ? "-" : p.activity().c_str());
    std::printf("%-13s %u\n", "connections", p.connections());
    std::printf("%-13s %s%s\n", "last seen", p.last_seen().c_str(),
                p.connections() > 0 ? " (connected now)" : "");
    return kExitOk;
  });
}

int run_reel_presence(const Globals &g, const std::string &reel) {
  if (!valid_id_arg("reel", reel)) return kExitUsage;
  v1::ControlRequest req;
  req.mutable_reel_presence()->set_reel_id(reel);
  return query(g, req, &v1::ControlResponse::reel_presence, [](const v1::ReelPresence &r) {
    if (r.users_count() == 0) {
      std::printf("%s: nobody present\n", r.topic().c_str());
      return kExitOk;
    }
    std::printf("%s: %u user(s) present, %u socket(s)\n", r.topic().c_str(), r.users_count(),
                r.metas_count());
    for (const auto &u : r.users()) std::printf("  %-32s %u\n", u.user_id().c_str(), u.metas());
    if (static_cast<uint32_t>(r.users_size()) < r.users_count()) {
      std::printf("  (the first %d by user id)\n", r.users_size());
    }
    return kExitOk;
  });
}

int run_connections(const Globals &g, const std::string &topic) {
  if (!topic.empty() && !valid_topic_arg(topic)) return kExitUsage;
  v1::ControlRequest req;
  req.mutable_connections()->set_topic(topic);
  return query(g, req, &v1::ControlResponse::connections, [&](const v1::Connections &list) {
    if (list.connections_size() == 0) {
      std::printf("no connections%s%s\n", topic.empty() ? "" : " joined to ", topic.c_str());
      return kExitOk;
    }
    std::printf("%4s  %-21s %-16s %-7s %-8s %8s %8s  %s\n", "loop", "peer", "user", "mode",
                "format", "unsent", "age (s)", "topics");
    for (const auto &c : list.connections()) {
      std::string topics;
      for (const auto &t : c.topics()) topics += (topics.empty() ? "" : ",") + t;
      std::printf("%4u  %-21s %-16s %-7s %-8s %8llu %8.1f  %s\n", c.loop(), c.peer().c_str(),
                  c.user_id().empty() ? "anonymous" : c.user_id().c_str(), c.mode().c_str(),
                  c.format().c_str(), static_cast<unsigned long long>(c.unsent_bytes()),
                  c.age_seconds(), topics.empty() ? "-" : topics.c_str());
    }
    if (static_cast<uint32_t>(list.connections_size()) < list.total()) {
      std::printf("%u connection(s), the oldest %d shown\n", list.total(), list.connections_size());
    } else {
      std::printf("%d connection(s)\n", list.connections_size());
    }
    return kExitOk;
  });
}

}  // namespace kronop::ctl
