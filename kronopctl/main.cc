// kronopctl: the operator's command line for kronopd.
//
// Exit codes: 0 success, 1 the operation failed (daemon down, ring full, refused),
// 2 usage or bad input (unknown flag, bad JSON, bad topic).
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <iterator>
#include <thread>

#include "auth.h"
#include "control_client.h"
#include "envelope_validation.h"
#include "kronop/ipc/producer.h"
#include "kronop_ipc.h"
#include "proto_json.h"

using namespace kronop;

namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

struct Globals {
  std::string socket = "./var/kronopd.sock";
  std::string shm_name = "kronop";
  bool json = false;
};

struct PublishArgs {
  std::string topic;
  std::string event;
  std::string json;
  std::string priority = "normal";
  uint64_t count = 1;
  double rate = 0;  // records per second, 0 = as fast as the ring takes them
  int wait_ms = 5000;
};

int priority_value(const std::string &p) {
  if (p == "normal" || p == "0") return KRONOP_PRIORITY_NORMAL;
  if (p == "low" || p == "1") return KRONOP_PRIORITY_LOW;
  if (p == "high" || p == "2") return KRONOP_PRIORITY_HIGH;
  if (p == "critical" || p == "3") return KRONOP_PRIORITY_CRITICAL;
  return -1;
}

struct TokenArgs {
  std::string user;
  bool admin = false;
  std::string ttl = "1h";
  std::string secret_file;
};

// "90", "90s", "15m", "1h", "7d" as seconds; -1 when it is none of those.
int64_t parse_ttl(const std::string &text) {
  if (text.empty()) return -1;
  std::size_t used = 0;
  int64_t n = 0;
  try {
    n = std::stoll(text, &used);
  } catch (...) {
    return -1;
  }
  if (n <= 0) return -1;
  const std::string unit = text.substr(used);
  if (unit.empty() || unit == "s") return n;
  if (unit == "m") return n * 60;
  if (unit == "h") return n * 3600;
  if (unit == "d") return n * 86400;
  return -1;
}

int run_token(const Globals &g, const TokenArgs &a) {
  if (!daemon::valid_topic("user:" + a.user)) {
    std::fprintf(stderr,
                 "kronopctl: invalid user id '%s': 1-128 of letters, digits, '_', '-', '.'\n",
                 a.user.c_str());
    return kExitUsage;
  }
  const int64_t ttl = parse_ttl(a.ttl);
  if (ttl < 0) {
    std::fprintf(stderr, "kronopctl: invalid --ttl '%s': e.g. 90s, 15m, 1h, 7d\n", a.ttl.c_str());
    return kExitUsage;
  }
  std::string warning;
  auto secret = daemon::read_secret_file(a.secret_file, &warning);
  if (!secret.ok()) {
    std::fprintf(stderr, "kronopctl: %s\n", secret.error().message.c_str());
    return kExitFailed;
  }
  if (!warning.empty()) std::fprintf(stderr, "kronopctl: warning: %s\n", warning.c_str());
  const int64_t now = static_cast<int64_t>(std::time(nullptr));
  const std::string token = daemon::mint_token(secret.value(), a.user, a.admin, now, now + ttl);
  if (g.json) {
    std::printf("{\"token\":\"%s\",\"user\":\"%s\",\"admin\":%s,\"exp\":%lld}\n", token.c_str(),
                a.user.c_str(), a.admin ? "true" : "false", static_cast<long long>(now + ttl));
  } else {
    std::printf("%s\n", token.c_str());
  }
  return kExitOk;
}

int run_publish(const Globals &g, PublishArgs a) {
  if (!daemon::valid_topic(a.topic)) {
    std::fprintf(stderr,
                 "kronopctl: invalid topic '%s': use reel:<id>, user:<id> or system (ids: "
                 "letters, digits, '_', '-', '.')\n",
                 a.topic.c_str());
    return kExitUsage;
  }
  if (!daemon::valid_event(a.event)) {
    std::fprintf(stderr,
                 "kronopctl: invalid event '%s': 1-64 of [a-z0-9_.-], not starting with phx_\n",
                 a.event.c_str());
    return kExitUsage;
  }
  int priority = priority_value(a.priority);
  if (priority < 0) {
    std::fprintf(stderr, "kronopctl: invalid priority '%s': normal, low, high or critical\n",
                 a.priority.c_str());
    return kExitUsage;
  }
  if (a.json == "-") {
    a.json.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  daemon::EnvelopeValidator validator;
  switch (validator.check_json_object(a.json)) {
    case daemon::Reject::kNone:
      break;
    case daemon::Reject::kReservedKey:
      std::fprintf(stderr,
                   "kronopctl: --json must not have a top-level \"seq\": kronopd adds it\n");
      return kExitUsage;
    case daemon::Reject::kNotJsonObject:
      std::fprintf(stderr, "kronopctl: --json must be a JSON object ({...})\n");
      return kExitUsage;
    default:
      std::fprintf(stderr, "kronopctl: --json is not valid JSON\n");
      return kExitUsage;
  }
  auto producer = ipc::Producer::open(g.shm_name);
  if (!producer.ok()) {
    std::fprintf(stderr, "kronopctl: %s\n", producer.error().message.c_str());
    return kExitFailed;
  }
  auto &p = *producer.value();
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  uint64_t sent = 0;
  for (; sent < a.count; ++sent) {
    if (a.rate > 0) {
      auto due = start + std::chrono::duration_cast<clock::duration>(
                             std::chrono::duration<double>(double(sent) / a.rate));
      std::this_thread::sleep_until(due);
    }
    int rc = p.publish_wait(a.topic, a.event, a.json, priority, a.wait_ms);
    if (rc != KRONOP_OK) {
      std::fprintf(stderr, "kronopctl: publish failed after %llu record(s): %s\n",
                   static_cast<unsigned long long>(sent), kronop_strerror(rc));
      return rc == KRONOP_EINVAL || rc == KRONOP_ETOOBIG ? kExitUsage : kExitFailed;
    }
  }
  double secs = std::chrono::duration<double>(clock::now() - start).count();
  if (g.json) {
    std::printf(
        "{\"published\":%llu,\"topic\":\"%s\",\"event\":\"%s\",\"producer_id\":\"%016llx\","
        "\"last_seq\":%llu,\"seconds\":%.6f}\n",
        static_cast<unsigned long long>(sent), a.topic.c_str(), a.event.c_str(),
        static_cast<unsigned long long>(p.id()), static_cast<unsigned long long>(p.last_seq()),
        secs);
  } else {
    std::printf("published %llu record(s) to %s (event %s, producer %016llx) in %.3f s\n",
                static_cast<unsigned long long>(sent), a.topic.c_str(), a.event.c_str(),
                static_cast<unsigned long long>(p.id()), secs);
  }
  return kExitOk;
}

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

int run_stats(const Globals &g) {
  v1::ControlRequest req;
  req.mutable_stats();
  v1::ControlResponse resp;
  if (int rc = call(g, req, resp); rc != kExitOk) return rc;
  const auto &s = resp.stats();
  if (g.json) {
    std::printf("%s\n", daemon::proto_to_json(s).c_str());
    return kExitOk;
  }
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
    std::printf("%s\n", daemon::proto_to_json(h).c_str());
  } else {
    std::printf("%s (pid %u, up %.1f s)\n", h.status().c_str(), h.pid(),
                double(h.uptime_ms()) / 1000.0);
  }
  return h.healthy() ? kExitOk : kExitFailed;
}

}  // namespace

int main(int argc, char **argv) {
  Globals g;
  CLI::App app{"kronopctl - operate kronopd"};
  app.require_subcommand(1);
  app.add_option("--socket", g.socket, "kronopd's control socket")
      ->capture_default_str()
      ->envname("KRONOP_SOCKET");
  app.add_option("--shm-name", g.shm_name, "Shared-memory segment to publish into")
      ->capture_default_str()
      ->envname("KRONOP_SHM_NAME");
  app.add_flag("--json", g.json, "Machine-readable output");

  PublishArgs pub;
  auto *publish = app.add_subcommand(
      "publish", "Publish an event through the shared-memory rings, as a producer does");
  publish->add_option("--topic", pub.topic, "reel:<id>, user:<id> or system")->required();
  publish->add_option("--event", pub.event, "Event name, e.g. reel_update")->required();
  publish->add_option("--json", pub.json, "Payload: a JSON object, or - to read it from stdin")
      ->required();
  publish->add_option("--priority", pub.priority, "normal, low, high or critical")
      ->capture_default_str();
  publish->add_option("--count", pub.count, "How many copies to publish")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 40))
      ->capture_default_str();
  publish->add_option("--rate", pub.rate, "Records per second (0: as fast as possible)")
      ->check(CLI::NonNegativeNumber);
  publish->add_option("--wait-ms", pub.wait_ms, "How long to wait for room when the ring is full")
      ->check(CLI::Range(0, 3600000))
      ->capture_default_str();

  TokenArgs tok;
  auto *token = app.add_subcommand(
      "token", "Mint a client token (JWT HS256) from kronopd's --auth-secret-file");
  token->add_option("--user", tok.user, "The user id (the token's sub)")->required();
  token->add_flag("--admin", tok.admin, "Grant admin rights (the system topic)");
  token->add_option("--ttl", tok.ttl, "Lifetime: 90s, 15m, 1h, 7d")->capture_default_str();
  token->add_option("--secret-file", tok.secret_file, "The secret kronopd verifies tokens with")
      ->required();
  token->add_flag("--json", g.json, "Machine-readable output");
  auto *stats = app.add_subcommand("stats", "Show the daemon's counters");
  auto *health = app.add_subcommand("health", "Check that the daemon answers (exit 1 if not)");
  // --json is accepted after these subcommands too (publish's --json is its payload).
  for (auto *sub : {stats, health}) {
    sub->add_flag("--json", g.json, "Machine-readable output");
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp &e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp &e) {
    return app.exit(e);
  } catch (const CLI::ParseError &e) {
    app.exit(e);
    return kExitUsage;
  }
  if (*publish) return run_publish(g, pub);
  if (*token) return run_token(g, tok);
  if (*stats) return run_stats(g);
  if (*health) return run_health(g);
  return kExitUsage;
}
