// kronopctl: the operator's command line for kronopd.
//
// Three ways to the daemon: the control socket (stats, health, presence, connections), the
// shared-memory rings as a producer (publish, replay --republish), and the durable log,
// read-only, which works with the daemon stopped (replay, tail).
//
// Exit codes: 0 success, 1 the operation failed (daemon down, ring full, refused, unknown
// user), 2 usage or bad input (unknown flag, bad JSON, bad topic).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <iterator>
#include <optional>
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
#include "payload_codec.h"
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
  // The JSON rules of payload_codec.h: seq, epoch (53 bits) and producer_seq are numbers,
  // producer_id (64 random bits) a string, the time RFC 3339, the priority its word.
  const auto *priority = kronop::v1::Priority_descriptor()->FindValueByNumber(m.priority);
  return "{\"topic\":\"" + m.topic + "\",\"seq\":" + std::to_string(m.seq) +
         ",\"epoch\":" + std::to_string(m.epoch) + ",\"time\":\"" + rfc3339_ns(m.publish_time_ns) +
         "\",\"event\":\"" + m.event + "\",\"producer_id\":\"" + std::to_string(m.producer_id) +
         "\",\"producer_seq\":" + std::to_string(m.producer_seq) + ",\"priority\":" +
         (priority != nullptr ? "\"" + enum_word(*priority) + "\"" : std::to_string(m.priority)) +
         ",\"payload\":" + m.payload_json() + "}";
}

// One logged message as replay and tail print it: a `seq time event payload` line, or with
// --json a JSON line.
void print_message(const Globals &g, const daemon::LoggedMessage &m) {
  if (g.json) {
    std::printf("%s\n", json_line(m).c_str());
  } else {
    std::printf("%8llu  %s  %-16s %s\n", static_cast<unsigned long long>(m.seq),
                rfc3339_ns(m.publish_time_ns).c_str(), m.event.c_str(), m.payload_json().c_str());
  }
}

// SIGINT and SIGTERM end the commands that run until interrupted (tail, stats --watch)
// normally: they finish the line they print and exit 0.
volatile std::sig_atomic_t g_stop = 0;

void stop_on_signals() {
  struct sigaction sa {};
  sa.sa_handler = [](int) { g_stop = 1; };
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a sleep is cut short
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

// Sleeps `ms` unless a stop signal comes first; false when one did.
bool sleep_unless_stopped(int64_t ms) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (g_stop == 0) {
    const auto left = until - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) return true;
    // In steps, so that a signal that arrives between the check and the sleep waits 20 ms
    // at most.
    std::this_thread::sleep_for(
        std::min<std::chrono::steady_clock::duration>(left, std::chrono::milliseconds(20)));
  }
  return false;
}

// The record to publish again: the logged Envelope's topic, event, priority and body (the
// producer identity and time are the republisher's).
std::string envelope_of(const daemon::LoggedMessage &m) {
  kronop::v1::Envelope e;
  e.set_topic(m.topic);
  e.set_event(m.event);
  e.set_priority(static_cast<kronop::v1::Priority>(m.priority));
  bool ok = true;
  if (m.body_kind == daemon::BodyKind::kJson) {
    e.set_json(m.body);
  } else if (const TypedBody *t = typed_body(m.body_kind)) {
    ok = e.GetReflection()->MutableMessage(&e, t->field)->ParseFromString(m.body);
  } else {
    ok = false;
  }
  return ok ? e.SerializeAsString() : std::string();
}

// A topic or id from the command line, checked with the daemon's rules; a bad one is
// reported here (the caller exits with kExitUsage).
bool valid_topic_arg(const std::string &topic) {
  if (daemon::valid_topic(topic)) return true;
  std::fprintf(stderr,
               "kronopctl: invalid topic '%s': use reel:<id>, user:<id> or system (ids: "
               "letters, digits, '_', '-', '.')\n",
               topic.c_str());
  return false;
}

bool valid_id_arg(const char *kind, const std::string &id) {
  if (daemon::valid_topic(kind + (":" + id))) return true;
  std::fprintf(stderr, "kronopctl: invalid %s id '%s': 1-128 of letters, digits, '_', '-', '.'\n",
               kind, id.c_str());
  return false;
}

int run_replay(const Globals &g, const ReplayArgs &a) {
  if (!valid_topic_arg(a.topic)) return kExitUsage;
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
    } else if (!a.republish) {
      print_message(g, m);
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
  const auto count = static_cast<unsigned long long>(n.value());
  if (g.json && (zc != nullptr || a.republish)) {
    // The messages went to the file or the rings: the summary is what there is to print.
    std::string summary;
    if (zc != nullptr) summary = "\"exported\":" + std::to_string(count);
    if (a.republish) {
      summary += (summary.empty() ? "\"republished\":" : ",\"republished\":") +
                 std::to_string(republished);
    }
    std::printf("{%s}\n", summary.c_str());
  } else if (zc != nullptr || a.republish) {
    std::fprintf(stderr, "kronopctl: %llu message(s) %s\n", count,
                 a.republish ? "republished" : ("exported to " + a.export_file).c_str());
  }
  return kExitOk;
}

int run_token(const Globals &g, const TokenArgs &a) {
  if (!valid_id_arg("user", a.user)) return kExitUsage;
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
  if (!valid_topic_arg(a.topic)) return kExitUsage;
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

// Sends `req` and prints the answer's `result` part: as JSON with --json, else by `print`,
// which returns the exit status.
template <typename Result, typename Print>
int query(const Globals &g, const v1::ControlRequest &req,
          const Result &(v1::ControlResponse::*result)() const, Print print) {
  v1::ControlResponse resp;
  if (int rc = call(g, req, resp); rc != kExitOk) return rc;
  const Result &answer = (resp.*result)();
  if (!g.json) return print(answer);
  std::printf("%s\n", daemon::proto_to_json(answer).c_str());
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
}

struct StatsArgs {
  bool watch = false;
  int64_t interval_ms = 1000;
  uint64_t count = 0;  // readings in watch mode; 0: until interrupted
};

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
          daemon::rfc3339_ms(now_ms).c_str(), r.seconds, r.since_start ? "true" : "false",
          r.records, r.messages_fanned_out, r.frames_out, daemon::proto_to_json(s).c_str());
    } else {
      if (reading > 0) std::printf("\n");
      std::printf("--- %s: %.1f records/s, %.1f messages fanned out/s, %.1f frames out/s (%s)\n",
                  daemon::rfc3339_ms(now_ms).c_str(), r.records, r.messages_fanned_out,
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

struct TailArgs {
  std::string topic;
  uint64_t since_seq = 0;
  bool since_seq_given = false;
  uint64_t count = 0;      // 0: no bound
  int64_t timeout_ms = 0;  // 0: until interrupted
};

// How often tail looks for new rows: the log commits in batches a few ms apart, so a poll
// costs one indexed query and finds what the last few batches added.
constexpr int64_t kTailPollMs = 50;

int run_tail(const Globals &g, const TailArgs &a) {
  if (!valid_topic_arg(a.topic)) return kExitUsage;
  auto reader = daemon::LogReader::open(g.data_dir + "/kronop.db");
  if (!reader.ok()) {
    std::fprintf(stderr, "kronopctl: %s\n", reader.error().message.c_str());
    return kExitFailed;
  }
  daemon::LogReader &log = *reader.value();
  uint64_t after = a.since_seq;
  if (!a.since_seq_given) {
    auto topic = log.topic(a.topic);
    after = topic ? topic->last_seq : 0;
  }
  // On stderr, so that standard output holds only messages; tests wait for this line.
  std::fprintf(stderr, "kronopctl: following %s in %s/kronop.db after seq %llu\n", a.topic.c_str(),
               g.data_dir.c_str(), static_cast<unsigned long long>(after));
  stop_on_signals();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(a.timeout_ms);
  uint64_t shown = 0;
  for (;;) {
    daemon::LogQuery q;
    q.topic = a.topic;
    q.after_seq = after;
    if (a.count > 0) q.limit = a.count - shown;
    auto n = log.read(q, [&](const daemon::LoggedMessage &m) {
      print_message(g, m);
      after = m.seq;
      ++shown;
      return g_stop == 0;
    });
    std::fflush(stdout);
    if (!n.ok()) {
      std::fprintf(stderr, "kronopctl: %s\n", n.error().message.c_str());
      return kExitFailed;
    }
    if ((a.count > 0 && shown >= a.count) || g_stop != 0) return kExitOk;
    int64_t wait_ms = kTailPollMs;
    if (a.timeout_ms > 0) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                            deadline - std::chrono::steady_clock::now())
                            .count();
      if (left <= 0) return kExitOk;
      wait_ms = std::min<int64_t>(wait_ms, left);
    }
    if (!sleep_unless_stopped(wait_ms)) return kExitOk;
  }
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
  app.add_option("--data-dir", g.data_dir,
                 "kronopd's data directory (replay and tail read its log)")
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

  TailArgs tail_args;
  auto *tail = app.add_subcommand(
      "tail", "Print a topic's messages as they are logged (follows the durable log, read-only)");
  tail->add_option("--topic", tail_args.topic, "reel:<id>, user:<id> or system")->required();
  auto *since_seq = tail->add_option("--since-seq", tail_args.since_seq,
                                     "Start after this seq (default: the topic's last)");
  tail->add_option("--count", tail_args.count, "Exit after this many messages")
      ->check(CLI::PositiveNumber);
  tail->add_option("--timeout-ms", tail_args.timeout_ms,
                   "Exit after this many milliseconds (default: at SIGINT or SIGTERM)")
      ->check(CLI::PositiveNumber);

  StatsArgs st;
  auto *stats = app.add_subcommand("stats", "Show the daemon's counters");
  auto *watch = stats->add_flag("--watch", st.watch,
                                "Show them again every --interval-ms, with per-second rates");
  stats->add_option("--interval-ms", st.interval_ms, "Between readings with --watch")
      ->check(CLI::Range(int64_t{10}, int64_t{3'600'000}))
      ->capture_default_str()
      ->needs(watch);
  stats->add_option("--count", st.count, "Readings to show with --watch (default: until stopped)")
      ->check(CLI::PositiveNumber)
      ->needs(watch);
  auto *health = app.add_subcommand("health", "Check that the daemon answers (exit 1 if not)");

  auto *presence = app.add_subcommand("presence", "Who is online, and who watches a reel");
  presence->require_subcommand(1);
  std::string presence_id;
  auto *presence_user = presence->add_subcommand("user", "A user's status and last-seen time");
  presence_user->add_option("id", presence_id, "The user id")->required();
  auto *presence_reel =
      presence->add_subcommand("reel", "The users present on reel:<id> (Phoenix Presence)");
  presence_reel->add_option("id", presence_id, "The reel id")->required();

  std::string connections_topic;
  auto *connections =
      app.add_subcommand("connections", "The open client connections of every I/O loop");
  connections->add_option("--topic", connections_topic, "Only those joined to this topic");

  // --json is accepted after the subcommands too (publish's --json is its payload).
  for (auto *sub :
       {token, replay, tail, stats, health, presence, presence_user, presence_reel, connections}) {
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
  tail_args.since_seq_given = since_seq->count() > 0;
  if (*publish) return run_publish(g, pub);
  if (*token) return run_token(g, tok);
  if (*replay) return run_replay(g, rep);
  if (*tail) return run_tail(g, tail_args);
  if (*stats) return run_stats(g, st);
  if (*health) return run_health(g);
  if (*presence_user) return run_user_presence(g, presence_id);
  if (*presence_reel) return run_reel_presence(g, presence_id);
  if (*connections) return run_connections(g, connections_topic);
  return kExitUsage;
}
