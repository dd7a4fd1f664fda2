// kronopctl's subcommands that read kronopd's durable log (DATA_DIR/kronop.db) read-only,
// whether the daemon runs or not: replay (print, --export to a zstd file, --republish into
// the rings) and tail (follow what is committed).
#include <zstd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <thread>

#include "body_kind.h"
#include "commands.h"
#include "kronop/ipc/producer.h"
#include "kronop/v1/envelope.pb.h"
#include "kronop_ipc.h"

namespace kronop::ctl {
namespace {

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

// The record to publish again: the logged Envelope's topic, event, priority and body (the
// producer identity and time are the republisher's).
std::string envelope_of(const StoredMessage &m) {
  kronop::v1::Envelope e;
  e.set_topic(m.topic);
  e.set_event(m.event);
  e.set_priority(static_cast<kronop::v1::Priority>(m.priority));
  bool ok = true;
  if (m.body_kind == kronop::BodyKind::kJson) {
    e.set_json(m.body);
  } else if (const TypedBody *t = typed_body(m.body_kind)) {
    ok = e.GetReflection()->MutableMessage(&e, t->field)->ParseFromString(m.body);
  } else {
    ok = false;
  }
  return ok ? e.SerializeAsString() : std::string();
}

// How often tail looks for new rows: the log commits in batches a few ms apart, so a poll
// costs one indexed query and finds what the last few batches added.
constexpr int64_t kTailPollMs = 50;

}  // namespace

int run_replay(const Globals &g, const ReplayArgs &a) {
  if (!valid_topic_arg(a.topic)) return kExitUsage;
  kronop::LogQuery q;
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
  auto reader = kronop::LogReader::open(g.data_dir + "/kronop.db");
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
  auto n = reader.value()->read(q, [&](const StoredMessage &m) {
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

int run_tail(const Globals &g, const TailArgs &a) {
  if (!valid_topic_arg(a.topic)) return kExitUsage;
  auto reader = kronop::LogReader::open(g.data_dir + "/kronop.db");
  if (!reader.ok()) {
    std::fprintf(stderr, "kronopctl: %s\n", reader.error().message.c_str());
    return kExitFailed;
  }
  kronop::LogReader &log = *reader.value();
  uint64_t after = a.since_seq;
  if (!a.since_seq_given) {
    auto topic = log.topic(a.topic);
    after = topic ? topic->last_seq : 0;
  }
  // Interruptible before it says it follows: whoever waits for that line may signal at once.
  stop_on_signals();
  // On stderr, so that standard output holds only messages; tests wait for this line.
  std::fprintf(stderr, "kronopctl: following %s in %s/kronop.db after seq %llu\n", a.topic.c_str(),
               g.data_dir.c_str(), static_cast<unsigned long long>(after));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(a.timeout_ms);
  uint64_t shown = 0;
  for (;;) {
    kronop::LogQuery q;
    q.topic = a.topic;
    q.after_seq = after;
    if (a.count > 0) q.limit = a.count - shown;
    auto n = log.read(q, [&](const StoredMessage &m) {
      print_message(g, m);
      after = m.seq;
      ++shown;
      return !stop_requested();
    });
    std::fflush(stdout);
    if (!n.ok()) {
      std::fprintf(stderr, "kronopctl: %s\n", n.error().message.c_str());
      return kExitFailed;
    }
    if ((a.count > 0 && shown >= a.count) || stop_requested()) return kExitOk;
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

}  // namespace kronop::ctl
