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

#include <zstd.h>

#include <cerrno>
#include <cstring>

#include "auth.h"
#include "control_client.h"
#include "envelope_validation.h"
#include "kronop/ipc/producer.h"
#include "kronop/v1/envelope.pb.h"
#include "kronop_ipc.h"
#include "log_reader.h"
#include "proto_json.h"
#include "time_format.h"

using namespace kronop;

namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

struct Globals {
  std::string socket = "./var/kronopd.sock";
  std::string shm_name = "kronop";
  std::string data_dir = "./var";
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

struct ReplayArgs {
  std::string topic;
  std::string since, until;  // RFC 3339 UTC, Unix seconds, or "15m" (that long ago)
  uint64_t since_seq = 0;    // messages after this seq
  uint64_t until_seq = 0;    // 0: no bound
  uint64_t limit = 0;        // 0: no bound
  std::string export_file;
  bool republish = false;
};

// A --since/--until value as Unix nanoseconds; false when it is none of the forms.
bool parse_time(const std::string &text, uint64_t *ns) {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  const uint64_t now_ns =
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(now).count());
  if (!text.empty() && std::isalpha(static_cast<unsigned char>(text.back())) &&
      text.find('-') == std::string::npos) {
    const int64_t ago = parse_ttl(text);
    if (ago <= 0) return false;
    *ns = now_ns - static_cast<uint64_t>(ago) * 1'000'000'000ULL;
    return true;
  }
  if (!text.empty() && text.find_first_not_of("0123456789") == std::string::npos) {
    *ns = std::stoull(text) * 1'000'000'000ULL;
    return true;
  }
  std::tm tm{};
  const char *rest = ::strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (rest == nullptr) return false;
  uint64_t frac_ns = 0;
  if (*rest == '.') {
    uint64_t scale = 100'000'000;
    for (++rest; std::isdigit(static_cast<unsigned char>(*rest)); ++rest, scale /= 10) {
      frac_ns += static_cast<uint64_t>(*rest - '0') * scale;
    }
  }
  if (std::string_view(rest) != "Z" && std::string_view(rest) != "") return false;
  const time_t secs = ::timegm(&tm);
  if (secs < 0) return false;
  *ns = static_cast<uint64_t>(secs) * 1'000'000'000ULL + frac_ns;
  return true;
}

std::string rfc3339_ns(uint64_t ns) { return daemon::rfc3339_ms(ns / 1'000'000); }

// One message as a JSON line. Topic and event passed validation (safe characters); the
// payload is the JSON clients received.
std::string json_line(const daemon::LoggedMessage &m) {
  return "{\"topic\":\"" + m.topic + "\",\"seq\":" + std::to_string(m.seq) + ",\"epoch\":\"" +
         std::to_string(m.epoch) + "\",\"time\":\"" + rfc3339_ns(m.publish_time_ns) +
         "\",\"event\":\"" + m.event + "\",\"producer_id\":\"" + std::to_string(m.producer_id) +
         "\",\"producer_seq\":" + std::to_string(m.producer_seq) +
         ",\"priority\":" + std::to_string(m.priority) + ",\"payload\":" + m.payload_json() + "}";
}

// The record to publish again: the logged Envelope's topic, event, priority and body (the
// producer identity and time are the republisher's).
std::string envelope_of(const daemon::LoggedMessage &m) {
  kronop::v1::Envelope e;
  e.set_topic(m.topic);
  e.set_event(m.event);
  e.set_priority(static_cast<kronop::v1::Priority>(m.priority));
  bool ok = true;
  switch (m.body_kind) {
    case daemon::BodyKind::kJson:
      e.set_json(m.body);
      break;
    case daemon::BodyKind::kReelUpdate:
      ok = e.mutable_reel_update()->ParseFromString(m.body);
      break;
    case daemon::BodyKind::kInteraction:
      ok = e.mutable_interaction()->ParseFromString(m.body);
      break;
    case daemon::BodyKind::kPresence:
      ok = e.mutable_presence()->ParseFromString(m.body);
      break;
    case daemon::BodyKind::kUserActivity:
      ok = e.mutable_user_activity()->ParseFromString(m.body);
      break;
    case daemon::BodyKind::kSystemNotice:
      ok = e.mutable_system_notice()->ParseFromString(m.body);
      break;
    case daemon::BodyKind::kNone:
      ok = false;
      break;
  }
  return ok ? e.SerializeAsString() : std::string();
}

int run_replay(const Globals &g, const ReplayArgs &a) {
  if (!daemon::valid_topic(a.topic)) {
    std::fprintf(stderr, "kronopctl: invalid topic '%s' (reel:<id>, user:<id> or system)\n",
                 a.topic.c_str());
    return kExitUsage;
  }
  daemon::LogQuery q;
  q.topic = a.topic;
  q.after_seq = a.since_seq;
  if (a.until_seq > 0) q.until_seq = a.until_seq;
  if (a.limit > 0) q.limit = a.limit;
  if (!a.since.empty() && !parse_time(a.since, &q.since_ns)) {
    std::fprintf(stderr,
                 "kronopctl: invalid --since '%s': e.g. 2026-11-27T10:00:00Z, "
                 "1795737600 or 15m\n",
                 a.since.c_str());
    return kExitUsage;
  }
  if (!a.until.empty() && !parse_time(a.until, &q.until_ns)) {
    std::fprintf(stderr,
                 "kronopctl: invalid --until '%s': e.g. 2026-11-27T10:00:00Z, "
                 "1795737600 or 15m\n",
                 a.until.c_str());
    return kExitUsage;
  }
  auto reader = daemon::LogReader::open(g.data_dir + "/kronop.db");
  if (!reader.ok()) {
    std::fprintf(stderr, "kronopctl: %s\n", reader.error().message.c_str());
    return kExitFailed;
  }
  auto topic = reader.value()->topic(a.topic);
  if (!topic) {
    std::fprintf(stderr, "kronopctl: %s has no messages in the log\n", a.topic.c_str());
    return kExitFailed;
  }
  std::unique_ptr<ipc::Producer> producer;
  if (a.republish) {
    auto p = ipc::Producer::open(g.shm_name);
    if (!p.ok()) {
      std::fprintf(stderr, "kronopctl: %s\n", p.error().message.c_str());
      return kExitFailed;
    }
    producer = std::move(p).value();
  }
  FILE *out = nullptr;
  ZSTD_CCtx *zc = nullptr;
  std::string zbuf;
  if (!a.export_file.empty()) {
    out = std::fopen(a.export_file.c_str(), "wbx");
    if (out == nullptr) {
      std::fprintf(stderr, "kronopctl: cannot create %s: %s\n", a.export_file.c_str(),
                   std::strerror(errno));
      return kExitFailed;
    }
    zc = ZSTD_createCCtx();
    zbuf.resize(ZSTD_CStreamOutSize());
  }
  bool write_failed = false;
  auto compress = [&](std::string_view in, ZSTD_EndDirective mode) {
    ZSTD_inBuffer input{in.data(), in.size(), 0};
    for (;;) {
      ZSTD_outBuffer output{zbuf.data(), zbuf.size(), 0};
      const std::size_t left = ZSTD_compressStream2(zc, &output, &input, mode);
      if (ZSTD_isError(left) || std::fwrite(zbuf.data(), 1, output.pos, out) != output.pos) {
        write_failed = true;
        return;
      }
      if (mode == ZSTD_e_end ? left == 0 : input.pos == input.size) return;
    }
  };
  uint64_t republished = 0;
  int publish_error = KRONOP_OK;
  auto n = reader.value()->read(q, [&](const daemon::LoggedMessage &m) {
    if (zc != nullptr) {
      compress(json_line(m) + "\n", ZSTD_e_continue);
    } else if (g.json) {
      std::printf("%s\n", json_line(m).c_str());
    } else if (!a.republish) {
      std::printf("%8llu  %s  %-16s %s\n", static_cast<unsigned long long>(m.seq),
                  rfc3339_ns(m.publish_time_ns).c_str(), m.event.c_str(), m.payload_json().c_str());
    }
    if (producer) {
      const std::string env = envelope_of(m);
      int rc = KRONOP_EINVAL;
      for (int tries = 0; tries < 5000 && !env.empty(); ++tries) {
        rc = producer->publish_envelope(env);
        if (rc != KRONOP_EFULL) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      if (rc != KRONOP_OK) {
        publish_error = rc;
        return false;
      }
      ++republished;
    }
    return !write_failed;
  });
  if (zc != nullptr) {
    if (!write_failed) compress({}, ZSTD_e_end);
    ZSTD_freeCCtx(zc);
    if (std::fclose(out) != 0) write_failed = true;
  }
  if (!n.ok()) {
    std::fprintf(stderr, "kronopctl: %s\n", n.error().message.c_str());
    return kExitFailed;
  }
  if (write_failed) {
    std::fprintf(stderr, "kronopctl: writing %s failed\n", a.export_file.c_str());
    return kExitFailed;
  }
  if (publish_error != KRONOP_OK) {
    std::fprintf(stderr, "kronopctl: republish stopped after %llu message(s): %s\n",
                 static_cast<unsigned long long>(republished), kronop_strerror(publish_error));
    return kExitFailed;
  }
  if (zc != nullptr || a.republish) {
    std::fprintf(stderr, "kronopctl: %llu message(s) %s\n",
                 static_cast<unsigned long long>(n.value()),
                 a.republish ? "republished" : ("exported to " + a.export_file).c_str());
  }
  return kExitOk;
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
  app.add_option("--data-dir", g.data_dir, "kronopd's data directory (replay reads its log)")
      ->capture_default_str()
      ->envname("KRONOP_DATA_DIR");
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
  ReplayArgs rep;
  auto *replay = app.add_subcommand(
      "replay", "Print a topic's logged messages (read-only; works with kronopd stopped)");
  replay->add_option("--topic", rep.topic, "reel:<id>, user:<id> or system")->required();
  replay->add_option("--since", rep.since,
                     "From this time: 2026-11-27T10:00:00Z, Unix seconds, or 15m (ago)");
  replay->add_option("--until", rep.until, "Before this time (same forms)");
  replay->add_option("--since-seq", rep.since_seq, "Messages after this seq");
  replay->add_option("--until-seq", rep.until_seq, "Messages up to this seq");
  replay->add_option("--limit", rep.limit, "At most this many messages");
  replay->add_option("--export", rep.export_file,
                     "Write them as zstd-compressed JSON lines to FILE.zst (new file)");
  replay->add_flag("--republish", rep.republish,
                   "Publish them again through the rings (--shm-name)");
  replay->add_flag("--json", g.json, "One JSON object per line");
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
  if (*replay) return run_replay(g, rep);
  if (*stats) return run_stats(g);
  if (*health) return run_health(g);
  return kExitUsage;
}
