// kronopd: the Kronop daemon. The main thread runs a libuv loop for signals and the
// control socket; the ingest thread drains the producers' shared-memory rings.
#include <google/protobuf/stubs/logging.h>
#include <malloc.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <uv.h>
#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <ctime>
#include <future>
#include <optional>
#include <set>
#include <thread>

#include "acceptor.h"
#include "auth.h"
#include "config.h"
#include "control.h"
#include "envelope_validation.h"
#include "fanout.h"
#include "file_limit.h"
#include "ingest.h"
#include "io_loop.h"
#include "kronop/clock.h"
#include "kronop/ipc/producer.h"
#include "kronop/v1/presence.pb.h"
#include "log.h"
#include "log_store.h"
#include "presence.h"
#include "proto_json.h"
#include "publisher.h"
#include "reels.h"
#include "rest_api.h"
#include "server.h"
#include "service_notify.h"
#include "system_api.h"
#include "websocket.h"

using namespace kronop;
using namespace kronop::daemon;

namespace {

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
  KLOG_DEBUG("event=protobuf_log file=%s line=%d message=%s", file, line, log::q(msg).c_str());
}

void fill_server_stats(const ServerCounters &c, const DispatchCounters &d,
                       kronop::v1::DaemonStats &s) {
  auto *m = s.mutable_clients();
  m->set_connections(c[Counter::kConnections]);
  m->set_connections_total(c[Counter::kConnectionsTotal]);
  m->set_frames_in(c[Counter::kFramesIn]);
  m->set_frames_out(c[Counter::kFramesOut]);
  m->set_bytes_out(c[Counter::kBytesOut]);
  m->set_closed_idle(c[Counter::kClosedIdle]);
  m->set_closed_protocol(c[Counter::kClosedProtocol]);
  m->set_http_errors(c[Counter::kHttpErrors]);
  m->set_messages_fanned_out(d.messages.load(std::memory_order_relaxed));
  m->set_encode_failures(d.encode_failures.load(std::memory_order_relaxed));
  m->set_dropped_low(c[Counter::kDroppedLow]);
  m->set_closed_slow(c[Counter::kClosedSlow]);
  m->set_writes(c[Counter::kWrites]);
  m->set_auth_rejected(c[Counter::kAuthRejected]);
  m->set_closed_rate_limited(c[Counter::kRateLimited]);
  m->set_joins_over_limit(c[Counter::kJoinsOverLimit]);
  m->set_interactions(c[Counter::kInteractions]);
  m->set_interactions_invalid(c[Counter::kInteractionsInvalid]);
  m->set_interactions_rate_limited(c[Counter::kInteractionsRateLimited]);
  m->set_recoveries(c[Counter::kRecoveries]);
  m->set_recoveries_failed(c[Counter::kRecoveriesFailed]);
  m->set_recovered_messages(c[Counter::kRecoveredMessages]);
  auto &kinds = *m->mutable_channels_by_kind();
  kinds["reel"] = c[Counter::kChannelsReel];
  kinds["user"] = c[Counter::kChannelsUser];
  kinds["system"] = c[Counter::kChannelsSystem];
}

void fill_latency(const LatencyHistogram::Summary &lat, kronop::v1::LatencySummary &l) {
  l.set_count(lat.count);
  l.set_p50_ns(lat.p50);
  l.set_p90_ns(lat.p90);
  l.set_p99_ns(lat.p99);
  l.set_p999_ns(lat.p999);
  l.set_max_ns(lat.max);
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
  s.set_already_logged(c.already_logged.load(std::memory_order_relaxed));
  fill_latency(c.publish_to_ingest_ns.summarize(), *s.mutable_publish_to_ingest());
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

// Into `secret`, the secret --auth-secret-file names ("" when none is set; a doubtful file,
// e.g. one others may read, is logged as a warning). Returns the error, empty if none.
std::string load_auth_secret(const Config &config, std::string &secret) {
  secret.clear();
  if (config.auth_secret_file.empty()) return {};
  std::string warning;
  auto read = read_secret_file(config.auth_secret_file, &warning);
  if (!read.ok()) return "--auth-secret-file: " + read.error().message;
  if (!warning.empty()) KLOG_WARN("event=config_warning warning=%s", log::q(warning).c_str());
  secret = std::move(read).value();
  return {};
}

// The ServerOptions that SIGHUP may change (ClientServer::reconfigure), from `config`.
void set_limits(const Config &config, const std::string &auth_secret, ServerOptions &o) {
  o.auth_secret = auth_secret;
  o.allowed_origins = config.allowed_origins;
  o.idle_timeout_ms = config.idle_timeout_ms;
  o.max_unsent_bytes = config.max_unsent_bytes;
  o.max_request_body = config.max_request_body;
  o.max_comment_bytes = config.max_comment_bytes;
  o.max_recovery = config.max_recovery_messages;
  o.max_message = config.max_message;
  o.max_channels = config.max_channels;
  o.max_client_messages_per_second = config.max_client_messages_per_second;
}

// The keys set_limits reads, and the log level: what a SIGHUP applies. Any other key that
// changed is named in the log and waits for a restart.
bool reloadable(const std::string &key) {
  static const std::set<std::string> keys{"log-level",
                                          "auth-secret-file",
                                          "allowed-origin",
                                          "idle-timeout-ms",
                                          "max-unsent-bytes",
                                          "max-request-body",
                                          "max-comment-bytes",
                                          "max-recovery-messages",
                                          "max-message",
                                          "max-channels",
                                          "max-client-messages-per-second"};
  return keys.count(key) != 0;
}

// SIGHUP: reads the configuration again (the same command line, the --config file as it is
// now, the auth secret file) and applies what can change while kronopd runs. A configuration
// with a fault changes nothing.
struct Reloader {
  std::vector<std::string> args;
  // What is in force, key by key as --print-config shows it.
  std::vector<std::pair<std::string, std::string>> effective;
  std::string auth_secret;
  ServerOptions limits;
  std::vector<std::unique_ptr<IoLoop>> *loops = nullptr;
  uv_signal_t signal{};

  void reload() {
    Config next;
    CLI::App app;
    add_options(app, next);
    std::string error;
    try {
      error = parse_options(app, args);
    } catch (const CLI::ParseError &e) {
      error = e.what();
    }
    std::string secret;
    if (error.empty()) error = load_auth_secret(next, secret);
    if (error.empty() && next.auth_secret_file.empty() && !auth_secret.empty()) {
      error = "auth-secret-file: cannot be unset while kronopd runs (its tokens' sockets stay)";
    }
    if (!error.empty()) {
      KLOG_ERROR("event=reload result=refused changed=none error=%s", log::q(error).c_str());
      return;
    }
    std::string changed, restart_needed;
    const auto now = effective_options(app, next);
    for (std::size_t i = 0; i < now.size() && i < effective.size(); ++i) {
      const auto &[key, value] = now[i];
      if (value == effective[i].second) continue;
      if (!reloadable(key)) {
        restart_needed += (restart_needed.empty() ? "" : ",") + key;
        continue;
      }
      changed += (changed.empty() ? "" : " ") + key + "=" + log::q(value);
      effective[i].second = value;
    }
    if (secret != auth_secret) {
      changed += std::string(changed.empty() ? "" : " ") + "auth-secret=replaced";
      auth_secret = secret;
    }
    log::set_max_level(log::parse_level(next.log_level).value_or(log::Level::kInfo));
    set_limits(next, auth_secret, limits);
    for (auto &l : *loops) l->reconfigure(limits);
    KLOG_NOTICE("event=reload result=applied changed=%s restart_needed=%s",
                log::q(changed.empty() ? "none" : changed).c_str(),
                log::q(restart_needed.empty() ? "none" : restart_needed).c_str());
  }
};

// The batches a drain (SIGTERM) closes the clients in.
constexpr unsigned kDrainBatches = 10;

// How long the control socket waits for the I/O loops to describe their connections. The
// main loop (signals, the control socket, presence flushes) blocks meanwhile; a loop answers
// at its next turn, normally within a millisecond.
constexpr auto kLoopAnswerTimeout = std::chrono::seconds(2);
// What lists in a control response may take: kronopctl refuses responses over
// kMaxControlMessage, so a list that would be larger (a reel with 100,000 viewers, as many
// connections) stops short, with its full count beside it.
constexpr std::size_t kListBudget = kMaxControlMessage - 64 * 1024;

void answer_user_presence(const PresenceHub &presence, const std::string &user,
                          kronop::v1::ControlResponse &resp) {
  auto p = presence.user(user, realtime_ns() / 1'000'000);
  if (!p) {
    resp.set_error("no presence for user " + user);
    return;
  }
  *resp.mutable_user_presence() = user_presence_body(*p);
}

void answer_reel_presence(const PresenceHub &presence, const std::string &reel_id,
                          kronop::v1::ControlResponse &resp) {
  const std::string topic = "reel:" + reel_id;
  if (!valid_topic(topic)) {
    resp.set_error("invalid reel id '" + reel_id + "'");
    return;
  }
  auto *r = resp.mutable_reel_presence();
  r->set_topic(topic);
  const auto present = presence.present(topic);
  uint32_t metas = 0;
  std::size_t listed_bytes = 0;
  for (const PresenceHub::Present &p : present) {
    metas += static_cast<uint32_t>(p.metas);
    listed_bytes += p.user_id.size() + 16;  // the id, its tags and lengths, the count
    if (listed_bytes > kListBudget) continue;
    auto *u = r->add_users();
    u->set_user_id(p.user_id);
    u->set_metas(static_cast<uint32_t>(p.metas));
  }
  r->set_users_count(static_cast<uint32_t>(present.size()));
  r->set_metas_count(metas);
}

// Asks every loop at once, then collects the answers: all connections, oldest first.
void answer_connections(std::vector<std::unique_ptr<IoLoop>> &loops, const std::string &topic,
                        kronop::v1::ControlResponse &resp) {
  std::vector<std::optional<std::future<std::vector<ClientServer::ConnectionInfo>>>> answers;
  answers.reserve(loops.size());
  for (auto &l : loops) answers.push_back(l->describe_connections(topic));
  const auto deadline = std::chrono::steady_clock::now() + kLoopAnswerTimeout;
  std::vector<std::pair<uint32_t, ClientServer::ConnectionInfo>> all;
  for (std::size_t i = 0; i < loops.size(); ++i) {
    auto &answer = answers[i];
    const bool ready = answer && answer->wait_until(deadline) == std::future_status::ready;
    if (!ready) {
      resp.clear_result();
      resp.set_error("I/O loop " + std::to_string(i) +
                     (answer ? " did not answer within 2 s" : " is shutting down"));
      return;
    }
    for (ClientServer::ConnectionInfo &info : answer->get()) {
      all.emplace_back(loops[i]->index(), std::move(info));
    }
  }
  std::sort(all.begin(), all.end(), [](const auto &a, const auto &b) {
    return a.second.accepted_ns < b.second.accepted_ns;
  });
  const uint64_t now = monotonic_ns();
  auto *out = resp.mutable_connections();
  out->set_total(static_cast<uint32_t>(all.size()));
  std::size_t listed_bytes = 0;
  for (const auto &[loop, info] : all) {
    kronop::v1::ClientConnection c;
    c.set_loop(loop);
    c.set_peer(info.peer);
    c.set_user_id(info.user_id);
    c.set_mode(info.mode);
    c.set_format(info.protobuf ? "protobuf" : "json");
    for (const std::string &t : info.topics) c.add_topics(t);
    c.set_unsent_bytes(info.unsent_bytes);
    c.set_age_seconds(static_cast<double>(now - info.accepted_ns) / 1e9);
    listed_bytes += c.ByteSizeLong() + 8;  // and its tag and length
    if (listed_bytes > kListBudget) break;
    *out->add_connections() = std::move(c);
  }
}

}  // namespace

int main(int argc, char **argv) {
  // Memory is handed between threads in batches (the ingest thread's log batches are freed
  // by the log writer, recovered history by the loops): with glibc's defaults, a large block
  // is mmap'ed and munmap'ed each time and freed heap tops are given back with madvise, and
  // every one of those unmaps makes the kernel flush the TLBs of the CPUs running the other
  // threads, I/O loops included (measured: delivery p99 0.5 ms -> 5-8 ms at 5,000 msg/s
  // once logging). Keep blocks up to 64 MiB in the heap, and the heap's free memory up to
  // 256 MiB.
  ::mallopt(M_MMAP_THRESHOLD, 64 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 256 << 20);
  Config config;
  CLI::App app{"kronopd - Kronop real-time fan-out daemon"};
  app.set_version_flag("--version", std::string("kronopd ") + KRONOP_VERSION);
  add_options(app, config);
  const std::vector<std::string> args(argv + 1, argv + argc);
  try {
    if (std::string error = parse_options(app, args); !error.empty()) {
      std::fprintf(stderr, "kronopd: %s\nRun with --help for more information.\n", error.c_str());
      return 2;
    }
  } catch (const CLI::ParseError &e) {
    return app.exit(e);  // --help, --version
  }
  if (config.print_config) {
    std::fputs(format_config(effective_options(app, config)).c_str(), stdout);
    return 0;
  }
  log::set_max_level(log::parse_level(config.log_level).value_or(log::Level::kInfo));
  google::protobuf::SetLogHandler(protobuf_log);
  std::signal(SIGPIPE, SIG_IGN);
  // Before any thread starts: it unsets LISTEN_FDS and LISTEN_PID.
  auto activated = activated_socket();
  if (!activated.ok()) {
    KLOG_ERROR("event=config_error error=%s", log::q(activated.error().message).c_str());
    return 1;
  }
  const int activated_fd = activated.value();

  // The auth secret before anything is created: a bad configuration leaves nothing behind.
  std::string auth_secret;
  if (!config.auth_secret_file.empty()) {
    if (std::string error = load_auth_secret(config, auth_secret); !error.empty()) {
      KLOG_ERROR("event=config_error key=auth-secret-file error=%s", log::q(error).c_str());
      return 1;
    }
  } else if (!config.allow_anonymous) {
    KLOG_ERROR(
        "event=config_error key=allow-anonymous error=\"--no-allow-anonymous without "
        "--auth-secret-file: no client could ever connect\"");
    return 2;
  }
  if (!make_dirs(config.data_dir)) {
    KLOG_ERROR("event=data_dir_failed path=%s error=%s", log::q(config.data_dir).c_str(),
               log::q(std::strerror(errno)).c_str());
    return 1;
  }
  // The durable log before the segment: a log that cannot be used stops kronopd before it
  // takes any producer's records.
  LogOptions log_options;
  log_options.retention_age_ms = config.retention_hours * 3600 * 1000;
  log_options.retention_count = config.retention_count;
  std::unique_ptr<LogStore> log_store;
  if (config.durable_log) {
    auto opened_log = LogStore::open(config.data_dir + "/kronop.db", log_options);
    if (!opened_log.ok()) {
      KLOG_ERROR("event=log_open_failed error=%s", log::q(opened_log.error().message).c_str());
      return 1;
    }
    log_store = std::move(opened_log).value();
  } else {
    KLOG_WARN(
        "event=durable_log_off consequence=\"nothing is kept across restarts, joins recover "
        "nothing\"");
  }
  // DATA_DIR/kronopd.running exists while kronopd runs: found at start, the last run did not
  // stop cleanly (see IngestOptions::on_replayed).
  const std::string running_marker = config.data_dir + "/kronopd.running";
  struct stat marker_stat {};
  const bool after_unclean_stop = log_store && ::stat(running_marker.c_str(), &marker_stat) == 0;
  if (after_unclean_stop) {
    KLOG_WARN(
        "event=unclean_stop_found consequence=\"topics whose unlogged records the last run may "
        "have fanned out get a new epoch\"");
  }
  std::string note;
  auto consumer = ipc::Consumer::attach(
      ipc::SegmentOptions{config.shm_name, config.rings, config.ring_size}, &note);
  if (!consumer.ok()) {
    KLOG_ERROR("event=segment_failed error=%s", log::q(consumer.error().message).c_str());
    return 1;
  }
  KLOG_INFO("event=segment_attached shm=%s note=%s epoch=%llu", log::q(config.shm_name).c_str(),
            log::q(note).c_str(), static_cast<unsigned long long>(consumer.value()->epoch()));

  // The daemon's own producer: client interactions and REST posts enter the rings like any
  // producer's records.
  auto own_producer = ipc::Producer::open(config.shm_name);
  if (!own_producer.ok()) {
    KLOG_ERROR("event=segment_failed what=\"lease a ring for kronopd's own publishing\" error=%s",
               log::q(own_producer.error().message).c_str());
    return 1;
  }
  Publisher publisher(std::move(own_producer).value());
  ReelState reels(config.recent_updates);
  PresenceHub presence;
  // Last-known presence survives restarts: restored now, kept up to date by the log.
  for (const UserRow &r : log_store ? log_store->users() : std::vector<UserRow>{}) {
    PresenceHub::UserPresence p;
    p.user_id = r.user_id;
    p.status = static_cast<PresenceHub::Status>(r.status);
    p.current_reel = r.current_reel;
    p.activity = r.activity;
    p.last_seen_ms = r.last_seen_ms;
    presence.restore(p);
  }
  if (log_store) {
    presence.set_observer([store = log_store.get()](const PresenceHub::UserPresence &p) {
      store->submit_user(UserRow{p.user_id, static_cast<int>(p.status), p.current_reel, p.activity,
                                 p.last_seen_ms});
    });
  }
  KeyedRateLimiter interaction_limiter(config.max_interactions_per_second,
                                       2 * config.max_interactions_per_second);
  RestApi rest(RestOptions{config.trust_loopback, config.allow_anonymous,
                           log_store ? log_store->path() : std::string()},
               &publisher, &reels, &presence);

  uv_loop_t *loop = uv_default_loop();
  ServerOptions server_options;
  server_options.presence = &presence;
  server_options.rest = &rest;
  server_options.publisher = &publisher;
  server_options.interaction_limiter = &interaction_limiter;
  server_options.log = log_store.get();
  server_options.reels = &reels;
  server_options.allow_anonymous = config.allow_anonymous;
  set_limits(config, auth_secret, server_options);
  PeerLimit peer_limit(config.max_connections_per_ip);
  if (peer_limit.enabled()) server_options.peer_limit = &peer_limit;
  // The I/O loops, and the dispatcher that feeds them from the ingest thread.
  unsigned io_threads = config.io_threads;
  if (io_threads == 0) io_threads = std::max(1u, std::thread::hardware_concurrency());
  io_threads = std::min<unsigned>(io_threads, Dispatcher::kMaxLoops);
  std::vector<std::unique_ptr<IoLoop>> loops;
  std::vector<LoopInbox *> inboxes;
  for (unsigned i = 0; i < io_threads; ++i) {
    loops.push_back(std::make_unique<IoLoop>(i, server_options, nullptr));
    inboxes.push_back(loops.back()->inbox());
  }
  Dispatcher dispatcher(inboxes);
  for (auto &l : loops) l->set_dispatcher(&dispatcher);
  // Numbering continues where the log left it.
  if (log_store) {
    auto logged_topics = log_store->topics();
    for (const auto &[topic, state] : logged_topics)
      dispatcher.seed(topic, state.last_seq, state.epoch);
    KLOG_INFO("event=log_opened path=%s topics=%zu", log::q(log_store->path()).c_str(),
              logged_topics.size());
  }

  IngestOptions ingest_options;
  ingest_options.spin_ns = config.ingest_spin_us * 1000;
  ingest_options.log = log_store.get();
  if (log_store) ingest_options.already_logged = log_store->producers();
  ingest_options.after_unclean_stop = after_unclean_stop;
  // At a drain's end the ingest thread may read on for a tenth of --drain-ms (at most a
  // second): what it reads then goes to no client but into the log, where the clients'
  // rejoins find it. Without a log it stops at once, and what it has not read stays in the
  // rings for the next start to deliver.
  ingest_options.stop_drain_ms = log_store ? std::min<uint64_t>(1000, config.drain_ms / 10) : 0;
  // Per topic while the rings' old records are read again: the producer seen, whether two
  // were, whether one of its records was an old one. Both: a new epoch.
  struct ReplayTrack {
    uint64_t producer = 0;
    bool mixed = false;
    bool replayed = false;
  };
  std::unordered_map<std::string, ReplayTrack> replay_tracks;
  ingest_options.on_replay = [&](const EnvelopeView &v, bool replayed) {
    auto [it, fresh] = replay_tracks.try_emplace(std::string(v.topic));
    ReplayTrack &t = it->second;
    if (fresh) t.producer = v.producer_id;
    t.mixed = t.mixed || t.producer != v.producer_id;
    t.replayed = t.replayed || replayed;
    if (t.mixed && t.replayed) dispatcher.renew_epoch(v.topic);
  };
  std::vector<LogRecord> to_log;  // the drain pass's records (ingest thread)
  ingest_options.on_idle = [&dispatcher] {
    if (dispatcher.has_requests()) dispatcher.end_batch();
  };
  // The pass's records are submitted right after fan-out (below), as the next batch.
  dispatcher.set_durable_position([&]() -> uint64_t {
    return log_store ? log_store->submitted() + (to_log.empty() ? 0 : 1) : 0;
  });
  Ingest ingest(
      std::move(consumer).value(), ingest_options,
      [&](const EnvelopeView &view) {
        // Interactions are counted here, where each passes once, and go out with the totals.
        EnvelopeView counted;
        const EnvelopeView &v =
            view.event == "interaction" && reels.count_interaction(view, &counted) ? counted : view;
        uint64_t epoch = 0;
        const uint64_t seq = dispatcher.on_record(v, &epoch);
        reels.remember(v, seq);
        if (log_store) to_log.push_back(LogRecord::of(v, seq, epoch));
      },
      [&] {
        reels.flush_counter_updates([&](const EnvelopeView &v) {
          uint64_t epoch = 0;
          const uint64_t seq = dispatcher.on_record(v, &epoch);
          if (log_store) to_log.push_back(LogRecord::of(v, seq, epoch));
        });
        // Fan-out first: the log never delays delivery.
        dispatcher.end_batch();
        if (!to_log.empty()) {
          log_store->submit(std::move(to_log));
          to_log.clear();
        }
      });

  dispatcher.set_waker([&ingest] { ingest.consumer().wake(); });

  std::size_t next_loop = 0;
  Acceptor acceptor(
      loop, config.bind, config.port,
      [&](int fd, const PeerLimit::Key &peer) {
        loops[next_loop]->adopt(fd, peer);
        next_loop = (next_loop + 1) % loops.size();
      },
      peer_limit.enabled() ? &peer_limit : nullptr);

  const uint64_t started_ms = monotonic_ms();
  // One stats snapshot for the control socket and the HTTP endpoints. Safe from any thread:
  // every figure is an atomic counter or a read of the segment.
  auto snapshot = [&](kronop::v1::DaemonStats &s) {
    fill_stats(config, ingest, started_ms, s);
    ServerCounters sum;
    for (const auto &l : loops) sum += l->counters();
    fill_server_stats(sum, dispatcher.counters(), s);
    s.mutable_clients()->set_refused_per_ip(peer_limit.refused());
    std::array<uint64_t, LatencyHistogram::kBuckets> counts{};
    uint64_t max = 0;
    for (const auto &l : loops) l->delivery_latency().add_to(counts, max);
    fill_latency(LatencyHistogram::summarize(counts, max),
                 *s.mutable_clients()->mutable_publish_to_delivery());
    s.mutable_clients()->set_rest_requests(rest.requests());
    auto *p = s.mutable_presence();
    p->set_topics(presence.topics());
    p->set_presences(presence.metas());
    p->set_users_online(presence.users_online());
    p->set_diffs(presence.diffs());
    p->set_reels(reels.reels());
    if (log_store) {
      const LogCounters &lc = log_store->counters();
      auto *l = s.mutable_log();
      l->set_path(log_store->path());
      l->set_rows(lc.rows.load(std::memory_order_relaxed));
      l->set_duplicates(lc.duplicates.load(std::memory_order_relaxed));
      l->set_transactions(lc.transactions.load(std::memory_order_relaxed));
      l->set_payload_bytes(lc.payload_bytes.load(std::memory_order_relaxed));
      l->set_stored_bytes(lc.compressed_bytes.load(std::memory_order_relaxed));
      l->set_errors(lc.errors.load(std::memory_order_relaxed));
      l->set_batches_behind(log_store->submitted() - log_store->committed());
      l->set_trimmed(lc.trimmed.load(std::memory_order_relaxed));
      l->set_checkpoints(lc.checkpoints.load(std::memory_order_relaxed));
    }
    struct statvfs fs {};
    if (::statvfs(config.data_dir.c_str(), &fs) == 0) {
      s.set_data_dir_free_bytes(static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize);
    }
  };
  SystemApi system_api(snapshot);

  // systemd (Type=notify): the status line, and the watchdog's liveness of the I/O loops.
  struct StatusReading {
    uint64_t ms = 0, fanned_out = 0, records = 0;
  } last_status;
  std::vector<std::optional<std::future<bool>>> probes(loops.size());
  ServiceNotifier notifier(
      loop, {[&] {
               kronop::v1::DaemonStats s;
               snapshot(s);
               const uint64_t now = monotonic_ms();
               const double secs = last_status.ms != 0 ? double(now - last_status.ms) / 1000 : 0;
               const uint64_t fanned = s.clients().messages_fanned_out(), records = s.records();
               char line[200];
               std::snprintf(line, sizeof line,
                             "%llu connections, %.0f messages/s fanned out, %.0f records/s in",
                             static_cast<unsigned long long>(s.clients().connections()),
                             secs > 0 ? double(fanned - last_status.fanned_out) / secs : 0.0,
                             secs > 0 ? double(records - last_status.records) / secs : 0.0);
               last_status = {now, fanned, records};
               return std::string(line);
             },
             [&] {
               // Alive: every loop answered the probe sent at the previous tick; then the next.
               bool alive = true;
               for (std::size_t i = 0; i < loops.size(); ++i) {
                 auto &p = probes[i];
                 if (p && p->wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
                   alive = false;
                   continue;
                 }
                 p = loops[i]->ask([] { return true; });
               }
               return alive;
             }});
  for (auto &l : loops) {
    l->set_http_routes([&system_api](const http::Request &r) { return system_api.handle(r); });
  }
  ControlServer control(
      loop, config.control_socket_path(),
      [&](const kronop::v1::ControlRequest &req, kronop::v1::ControlResponse &resp) {
        if (req.has_stats()) {
          snapshot(*resp.mutable_stats());
        } else if (req.has_health()) {
          kronop::v1::DaemonStats s;
          snapshot(s);
          *resp.mutable_health() = assess_health(s);
        } else if (req.has_user_presence()) {
          answer_user_presence(presence, req.user_presence().user_id(), resp);
        } else if (req.has_reel_presence()) {
          answer_reel_presence(presence, req.reel_presence().reel_id(), resp);
        } else if (req.has_connections()) {
          answer_connections(loops, req.connections().topic(), resp);
        } else {
          resp.set_error("unknown control request");
        }
      });
  if (activated_fd >= 0) {
    KLOG_INFO("event=socket_activated fd=%d note=\"--bind and --port are not used\"", activated_fd);
  }
  if (auto rc = acceptor.listen(activated_fd); !rc.ok()) {
    KLOG_ERROR("event=listen_failed what=client_port error=%s", log::q(rc.error().message).c_str());
    return 1;
  }
  if (auto rc = control.listen(); !rc.ok()) {
    KLOG_ERROR("event=listen_failed what=control_socket error=%s",
               log::q(rc.error().message).c_str());
    return 1;
  }
  fit_file_limit(config);
  for (auto &l : loops) l->start();
  if (log_store) {
    log_store->start();
    if (FILE *f = std::fopen(running_marker.c_str(), "w")) {
      std::fprintf(f, "%d\n", static_cast<int>(::getpid()));
      std::fclose(f);
    }
  }
  ingest.start();

  // Presence diffs: every --presence-interval-ms, one presence_diff per reel whose viewers
  // changed, to every loop (each writes it to its own subscribers of the topic).
  struct PresenceFlush {
    PresenceHub *hub;
    std::vector<std::unique_ptr<IoLoop>> *loops;
    std::vector<PresenceHub::Diff> diffs;
    uv_timer_t timer{};
  } presence_flush{&presence, &loops, {}, {}};
  uv_timer_init(loop, &presence_flush.timer);
  presence_flush.timer.data = &presence_flush;
  uv_timer_start(
      &presence_flush.timer,
      [](uv_timer_t *t) {
        auto *f = static_cast<PresenceFlush *>(t->data);
        f->diffs.clear();
        if (f->hub->flush(f->diffs) == 0) return;
        std::vector<MessagePtr> messages;
        messages.reserve(f->diffs.size());
        for (auto &d : f->diffs) {
          messages.push_back(
              Message::make_ephemeral(std::move(d.topic), "presence_diff", std::move(d.payload)));
        }
        for (auto &l : *f->loops) l->deliver(messages);
      },
      config.presence_interval_ms, config.presence_interval_ms);

  Reloader reloader{args, effective_options(app, config), auth_secret, server_options, &loops};
  uv_signal_init(loop, &reloader.signal);
  reloader.signal.data = &reloader;
  uv_signal_start(
      &reloader.signal,
      [](uv_signal_t *handle, int) { static_cast<Reloader *>(handle->data)->reload(); }, SIGHUP);

  // SIGTERM (or SIGINT): the drain. At once: stop accepting, tell every client (a
  // system_notice), and go on delivering to those not closed yet. Then close the clients
  // with 1012 in kDrainBatches batches spread over half of --drain-ms, so that their
  // reconnects to the next instance come spread out too. Then stop the ingest thread
  // (what it has not read stays in the rings, in shared memory, for the next start), let the
  // log commit everything that was fanned out, release the rings' positions of what it
  // committed, give the clients what is left of the budget to take their close frames, and
  // exit. A second signal skips to the end of the drain.
  struct Stopper {
    ControlServer *control;
    Ingest *ingest;
    Acceptor *acceptor;
    std::vector<std::unique_ptr<IoLoop>> *loops;
    uv_timer_t *presence_timer;
    LogStore *log;
    ServiceNotifier *notifier;
    uint64_t drain_ms;
    uv_signal_t *hup;
    uv_signal_t term{}, intr{};
    uv_timer_t batch_timer{};
    enum class State : uint8_t { kRunning, kDraining, kFinished } state = State::kRunning;
    uint64_t drain_started_ms = 0;
    unsigned batches_done = 0;

    // Of --drain-ms: the batches take half; the ingest thread may read on for a tenth (see
    // IngestOptions::stop_drain_ms); the clients' last close frames get what is left but a
    // fifth, which is kept for the end of the process (threads joined, files closed).
    uint64_t spread_ms() const { return drain_ms / 2; }
    uint64_t elapsed_ms() const { return monotonic_ms() - drain_started_ms; }
    uint64_t connections() const {
      uint64_t n = 0;
      for (auto &l : *loops) n += l->counters()[Counter::kConnections];
      return n;
    }

    void begin(int signum) {
      const uint64_t connections = this->connections();
      drain_started_ms = monotonic_ms();
      KLOG_NOTICE("event=draining signal=%s connections=%llu drain_ms=%llu",
                  signum == SIGTERM ? "SIGTERM" : "SIGINT",
                  static_cast<unsigned long long>(connections),
                  static_cast<unsigned long long>(drain_ms));
      state = State::kDraining;
      notifier->stopping();
      notifier->close();
      acceptor->close();
      kronop::v1::SystemNotice notice;
      const uint64_t now_ns = realtime_ns();
      char id[40];
      std::snprintf(id, sizeof id, "drain-%d-%llx", static_cast<int>(::getpid()),
                    static_cast<unsigned long long>(now_ns));
      notice.set_id(id);
      notice.set_level(kronop::v1::SystemNotice::LEVEL_WARNING);
      notice.set_message("service restart");
      notice.set_timestamp(static_cast<int64_t>(now_ns / 1'000'000));
      const std::string notice_json = proto_to_json(notice);
      for (auto &l : *loops) l->begin_drain(notice_json);
      const uint64_t step = spread_ms() / kDrainBatches;
      if (step == 0 || connections == 0) {
        finish();
        return;
      }
      uv_timer_start(
          &batch_timer,
          [](uv_timer_t *t) {
            auto *self = static_cast<Stopper *>(t->data);
            const unsigned done = ++self->batches_done;
            for (auto &l : *self->loops) {
              l->close_batch(done, kDrainBatches, ws::kCloseServiceRestart, "service restart");
            }
            // Every batch closed, or every client gone already (they left on their own, or
            // took their close frames): on to the end.
            if (done >= kDrainBatches || self->connections() == 0) self->finish();
          },
          step, step);
    }

    void finish() {
      if (state == State::kFinished) return;
      state = State::kFinished;
      uv_timer_stop(&batch_timer);
      // The ingest thread first: it is the one that wakes the loops, whose inboxes close
      // next. Everything it submitted is committed before kronopd exits (the log stops
      // after it); what it did not read stays in the rings for the next start, and the
      // positions of what the log holds are released.
      ingest->stop();
      if (log != nullptr) {
        log->stop();
        ingest->release_logged();
      }
      // Each loop closes what is still open (1012), gives clients what is left of the
      // budget (at most two seconds) to take their close frames, cuts the rest and ends.
      const uint64_t reserve = drain_ms / 5, elapsed = elapsed_ms();
      const uint64_t linger =
          std::min<uint64_t>(2000, drain_ms > elapsed + reserve ? drain_ms - elapsed - reserve : 0);
      for (auto &l : *loops) l->close(ws::kCloseServiceRestart, "service restart", linger);
      control->close();
      uv_close(reinterpret_cast<uv_handle_t *>(&batch_timer), nullptr);
      uv_close(reinterpret_cast<uv_handle_t *>(presence_timer), nullptr);
      uv_close(reinterpret_cast<uv_handle_t *>(&term), nullptr);
      uv_close(reinterpret_cast<uv_handle_t *>(&intr), nullptr);
      uv_close(reinterpret_cast<uv_handle_t *>(hup), nullptr);
    }
  } stopper{&control,        &ingest,   &acceptor,       &loops,          &presence_flush.timer,
            log_store.get(), &notifier, config.drain_ms, &reloader.signal};
  uv_timer_init(loop, &stopper.batch_timer);
  stopper.batch_timer.data = &stopper;
  auto on_signal = [](uv_signal_t *handle, int signum) {
    auto *s = static_cast<Stopper *>(handle->data);
    if (s->state == Stopper::State::kRunning) {
      s->begin(signum);
    } else {
      KLOG_NOTICE("event=drain_cut signal=%s reason=\"signal again: ending the drain now\"",
                  signum == SIGTERM ? "SIGTERM" : "SIGINT");
      s->finish();
    }
  };
  for (auto [sig, handle] : {std::pair{SIGTERM, &stopper.term}, std::pair{SIGINT, &stopper.intr}}) {
    uv_signal_init(loop, handle);
    handle->data = &stopper;
    uv_signal_start(handle, on_signal, sig);
  }

  KLOG_NOTICE(
      "event=ready version=%s clients=ws://%s/ws io_threads=%u shm=/dev/shm/%s "
      "control_socket=%s",
      KRONOP_VERSION, acceptor.address().c_str(), io_threads, config.shm_name.c_str(),
      log::q(config.control_socket_path()).c_str());
  KLOG_NOTICE(
      "event=hint try=\"kronopctl publish --shm-name %s --topic reel:123 --event reel_update "
      "--json '{\\\"views\\\":1}'; kronopctl --socket %s stats\"",
      config.shm_name.c_str(), config.control_socket_path().c_str());
  notifier.ready();
  uv_run(loop, UV_RUN_DEFAULT);
  for (auto &l : loops) l->join();
  uv_loop_close(loop);
  // Everything fanned out is logged (the log stopped after the ingest thread): a clean stop.
  if (log_store) ::unlink(running_marker.c_str());
  KLOG_NOTICE("event=stopped drained_ms=%llu",
              static_cast<unsigned long long>(stopper.elapsed_ms()));
  return 0;
}
