// kronopd: the Kronop daemon. The main thread runs a libuv loop for signals and the
// control socket; the ingest thread drains the producers' shared-memory rings.
#include <google/protobuf/stubs/logging.h>
#include <sys/stat.h>
#include <uv.h>
#include <CLI/CLI.hpp>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <ctime>

#include "config.h"
#include "control.h"
#include "ingest.h"
#include "kronop/clock.h"
#include "log.h"
#include "server.h"

using namespace kronop;
using namespace kronop::daemon;

namespace {

log::Level parse_level(const std::string &s) {
  if (s == "error") return log::Level::kError;
  if (s == "warning") return log::Level::kWarning;
  if (s == "notice") return log::Level::kNotice;
  if (s == "debug") return log::Level::kDebug;
  return log::Level::kInfo;
}

bool make_dirs(const std::string &path) {
  std::string partial;
  std::size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    partial = path.substr(0, pos);
    if (partial.empty()) continue;
    if (::mkdir(partial.c_str(), 0750) != 0 && errno != EEXIST) return false;
  }
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Protobuf's own log lines (e.g. invalid UTF-8 in a producer's typed body) are one more
// source of producer-controlled noise: keep them at debug level.
void protobuf_log(google::protobuf::LogLevel, const char *file, int line, const std::string &msg) {
  KLOG_DEBUG("protobuf %s:%d: %s", file, line, msg.c_str());
}

void fill_server_stats(const ServerCounters &c, kronop::v1::DaemonStats &s) {
  auto *m = s.mutable_clients();
  m->set_connections(c.connections);
  m->set_connections_total(c.connections_total);
  m->set_frames_in(c.frames_in);
  m->set_frames_out(c.frames_out);
  m->set_bytes_out(c.bytes_out);
  m->set_closed_idle(c.closed_idle);
  m->set_closed_protocol(c.closed_protocol);
  m->set_http_errors(c.http_errors);
  m->set_messages_fanned_out(c.messages_fanned_out);
  m->set_encode_failures(c.encode_failures);
  m->set_dropped_low(c.dropped_low);
  m->set_closed_slow(c.closed_slow);
  m->set_writes(c.writes);
  for (const auto &[kind, n] : c.channels_by_kind) (*m->mutable_channels_by_kind())[kind] = n;
}

void fill_stats(const Config &config, Ingest &ingest, uint64_t started_ms,
                kronop::v1::DaemonStats &s) {
  const IngestCounters &c = ingest.counters();
  ipc::Consumer &consumer = ingest.consumer();
  s.set_pid(static_cast<uint32_t>(::getpid()));
  s.set_uptime_ms(monotonic_ms() - started_ms);
  s.set_shm_name(config.shm_name);
  s.set_segment_epoch(consumer.epoch());
  s.set_records(c.records.load(std::memory_order_relaxed));
  s.set_bytes(c.bytes.load(std::memory_order_relaxed));
  s.set_rejects(c.rejects.load(std::memory_order_relaxed));
  s.set_corrupt_ranges(c.corrupt_ranges.load(std::memory_order_relaxed));
  s.set_producers_attached(c.producers_attached.load(std::memory_order_relaxed));
  s.set_leases_reclaimed(c.leases_reclaimed.load(std::memory_order_relaxed));
  s.set_wakeups(consumer.wake_calls());
  s.set_seq_gaps(c.seq_gaps.load(std::memory_order_relaxed));
  s.set_seq_regressions(c.seq_regressions.load(std::memory_order_relaxed));
  auto lat = c.publish_to_ingest_ns.summarize();
  auto *l = s.mutable_publish_to_ingest();
  l->set_count(lat.count);
  l->set_p50_ns(lat.p50);
  l->set_p90_ns(lat.p90);
  l->set_p99_ns(lat.p99);
  l->set_p999_ns(lat.p999);
  l->set_max_ns(lat.max);
  for (std::size_t i = 1; i < c.rejects_by_reason.size(); ++i) {
    uint64_t n = c.rejects_by_reason[i].load(std::memory_order_relaxed);
    if (n > 0) (*s.mutable_rejects_by_reason())[reject_name(static_cast<Reject>(i))] = n;
  }
  for (const auto &ring : consumer.snapshot()) {
    if (ring.lease == 0 && ring.used_bytes == 0 && ring.records_published == 0) continue;
    auto *r = s.add_rings();
    r->set_index(ring.index);
    r->set_producer_pid(ipc::lease_pid(ring.lease));
    r->set_producer_id(ring.producer_id);
    r->set_capacity_bytes(consumer.segment().geometry().ring_capacity);
    r->set_used_bytes(ring.used_bytes);
    r->set_records_published(ring.records_published);
    r->set_refused_full(ring.refused_full);
    r->set_refused_too_large(ring.refused_too_large);
  }
}

}  // namespace

int main(int argc, char **argv) {
  Config config;
  CLI::App app{"kronopd - Kronop real-time fan-out daemon"};
  app.set_version_flag("--version", std::string("kronopd ") + KRONOP_VERSION);
  add_options(app, config);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp &e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp &e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion &e) {
    return app.exit(e);
  } catch (const CLI::ParseError &e) {
    app.exit(e);
    return 2;
  }
  log::set_max_level(parse_level(config.log_level));
  google::protobuf::SetLogHandler(protobuf_log);
  std::signal(SIGPIPE, SIG_IGN);

  if (!make_dirs(config.data_dir)) {
    KLOG_ERROR("cannot create data directory %s: %s", config.data_dir.c_str(),
               std::strerror(errno));
    return 1;
  }
  std::string note;
  auto consumer = ipc::Consumer::attach(
      ipc::SegmentOptions{config.shm_name, config.rings, config.ring_size}, &note);
  if (!consumer.ok()) {
    KLOG_ERROR("shared memory: %s", consumer.error().message.c_str());
    return 1;
  }
  KLOG_INFO("shared memory: %s, epoch %llu", note.c_str(),
            static_cast<unsigned long long>(consumer.value()->epoch()));

  uv_loop_t *loop = uv_default_loop();
  ServerOptions server_options;
  server_options.bind = config.bind;
  server_options.port = config.port;
  server_options.idle_timeout_ms = config.idle_timeout_ms;
  server_options.max_channels = config.max_channels;
  server_options.max_message = config.max_message;
  server_options.max_unsent_bytes = config.max_unsent_bytes;
  server_options.allowed_origins = config.allowed_origins;
  ClientServer server(loop, server_options);
  FanoutQueue fanout(loop, [&](std::vector<OutboundMessage> &batch) { server.fan_out(batch); });

  IngestOptions ingest_options;
  ingest_options.spin_ns = config.ingest_spin_us * 1000;
  Ingest ingest(
      std::move(consumer).value(), ingest_options,
      [&](const EnvelopeView &view) { fanout.push(view); }, [&] { fanout.flush(); });

  const uint64_t started_ms = monotonic_ms();
  ControlServer control(
      loop, config.control_socket_path(),
      [&](const kronop::v1::ControlRequest &req, kronop::v1::ControlResponse &resp) {
        if (req.has_stats()) {
          fill_stats(config, ingest, started_ms, *resp.mutable_stats());
          fill_server_stats(server.counters(), *resp.mutable_stats());
        } else if (req.has_health()) {
          auto *h = resp.mutable_health();
          h->set_healthy(true);
          h->set_status("ok");
          h->set_pid(static_cast<uint32_t>(::getpid()));
          h->set_uptime_ms(monotonic_ms() - started_ms);
        } else {
          resp.set_error("unknown control request");
        }
      });
  if (auto rc = server.listen(); !rc.ok()) {
    KLOG_ERROR("client port: %s", rc.error().message.c_str());
    return 1;
  }
  if (auto rc = control.listen(); !rc.ok()) {
    KLOG_ERROR("control socket: %s", rc.error().message.c_str());
    return 1;
  }
  ingest.start();

  struct Stopper {
    ControlServer *control;
    Ingest *ingest;
    FanoutQueue *fanout;
    ClientServer *server;
    uv_signal_t term{}, intr{};
    uv_timer_t deadline{};
  } stopper{&control, &ingest, &fanout, &server};
  auto on_signal = [](uv_signal_t *handle, int signum) {
    auto *s = static_cast<Stopper *>(handle->data);
    KLOG_NOTICE("%s: stopping", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    s->ingest->stop();
    s->fanout->close();
    s->server->close(1012, "service restart");
    s->control->close();
    uv_close(reinterpret_cast<uv_handle_t *>(&s->term), nullptr);
    uv_close(reinterpret_cast<uv_handle_t *>(&s->intr), nullptr);
    // Clients get two seconds to take their close frames; then the rest is cut.
    uv_timer_init(handle->loop, &s->deadline);
    s->deadline.data = s;
    uv_timer_start(
        &s->deadline,
        [](uv_timer_t *t) {
          static_cast<Stopper *>(t->data)->server->force_close();
          uv_close(reinterpret_cast<uv_handle_t *>(t), nullptr);
        },
        2000, 0);
    uv_unref(reinterpret_cast<uv_handle_t *>(&s->deadline));
  };
  for (auto [sig, handle] : {std::pair{SIGTERM, &stopper.term}, std::pair{SIGINT, &stopper.intr}}) {
    uv_signal_init(loop, handle);
    handle->data = &stopper;
    uv_signal_start(handle, on_signal, sig);
  }

  KLOG_NOTICE(
      "kronopd %s ready: clients on ws://%s:%d/ws (Phoenix) and /ws/reel/ID, producers "
      "publish into /dev/shm/%s, control socket %s",
      KRONOP_VERSION, config.bind.c_str(), server.port(), config.shm_name.c_str(),
      config.control_socket_path().c_str());
  KLOG_NOTICE(
      "try: kronopctl publish --shm-name %s --topic reel:123 --event reel_update "
      "--json '{\"views\":1}'  and  kronopctl --socket %s stats",
      config.shm_name.c_str(), config.control_socket_path().c_str());
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  KLOG_NOTICE("stopped");
  return 0;
}
