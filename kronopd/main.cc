// kronopd: the Kronop daemon. main() reads the configuration and wires the parts; the
// pipeline (pipeline.h) is the path of every record and lists every thread.
#include <uv.h>
#include <CLI/CLI.hpp>
#include <csignal>

#include "acceptor.h"
#include "cluster_node.h"
#include "cluster_outbox.h"
#include "cluster_setup.h"
#include "config.h"
#include "control.h"
#include "control_answers.h"
#include "drain.h"
#include "durability.h"
#include "file_limit.h"
#include "io_loop.h"
#include "log.h"
#include "malloc_tuning.h"
#include "payload_codec.h"
#include "pipeline.h"
#include "presence_diffs.h"
#include "reload.h"
#include "service_notify.h"
#include "stats.h"
#include "system_api.h"

using namespace kronop;
using namespace kronop::daemon;

int main(int argc, char **argv) {
  tune_malloc();
  Config config;
  CLI::App app{"kronopd - Kronop real-time fan-out daemon"};
  app.set_version_flag("--version", std::string("kronopd ") + KRONOP_VERSION);
  add_options(app, config);
  const std::vector<std::string> args(argv + 1, argv + argc);
  try {
    if (auto parsed = parse_options(app, args); !parsed.ok()) {
      std::fprintf(stderr, "kronopd: %s\nRun with --help for more information.\n",
                   parsed.error().message.c_str());
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
  log::route_protobuf_logs();
  load_schema();  // before any thread starts
  std::signal(SIGPIPE, SIG_IGN);
  // Before any thread starts: it unsets LISTEN_FDS and LISTEN_PID.
  auto activated = activated_socket();
  if (!activated.ok()) {
    KLOG_ERROR("event=config_error error=%s", log::q(activated.error().message).c_str());
    return 1;
  }
  // The auth secret before anything is created: a bad configuration leaves nothing behind.
  auto auth_secret = load_auth_secret(config);
  if (!auth_secret.ok()) {
    KLOG_ERROR("event=config_error key=auth-secret-file error=%s",
               log::q(auth_secret.error().message).c_str());
    return 1;
  }
  if (config.auth_secret_file.empty() && !config.allow_anonymous) {
    KLOG_ERROR(
        "event=config_error key=allow-anonymous error=\"--no-allow-anonymous without "
        "--auth-secret-file: no client could ever connect\"");
    return 2;
  }
  // The cluster before anything is created: a node that cannot join the cluster it was
  // told to join stops at once rather than serve as an island.
  std::unique_ptr<ClusterNode> cluster;
  if (!config.redis.empty()) {
    auto options = cluster_options(config);
    if (!options.ok()) {
      KLOG_ERROR("event=config_error key=redis error=%s", log::q(options.error().message).c_str());
      return 2;
    }
    auto checked = check_seeds(options.value());
    if (!checked.ok()) {
      KLOG_ERROR("event=cluster_unusable redis=%s error=%s",
                 log::q(options.value().redis_display()).c_str(),
                 log::q(checked.error().message).c_str());
      return 3;
    }
    KLOG_INFO("event=cluster_redis redis=%s version=%s redis_cluster=%s",
              log::q(options.value().redis_display()).c_str(), checked.value().version.c_str(),
              options.value().redis_cluster ? "yes" : "no");
    cluster = std::make_unique<ClusterNode>(std::move(options).value());
  }
  if (auto made = make_data_dir(config.data_dir); !made.ok()) {
    KLOG_ERROR("event=data_dir_failed path=%s error=%s", log::q(config.data_dir).c_str(),
               log::q(made.error().message).c_str());
    return 1;
  }
  // The durable log before the segment: a log that cannot be used stops kronopd before it
  // takes any producer's records.
  auto opened_log = open_durable_log(config);
  if (!opened_log.ok()) {
    KLOG_ERROR("event=log_open_failed error=%s", log::q(opened_log.error().message).c_str());
    return 1;
  }
  std::unique_ptr<LogStore> log_store = std::move(opened_log).value();
  const RunningMarker running(config.data_dir);
  const bool after_unclean_stop = log_store && running.found();
  auto consumer = attach_segment(config);
  // The daemon's own producer: client interactions and REST posts enter the rings like any
  // producer's records.
  auto own_producer = consumer.ok() ? Publisher::open(config.shm_name) : consumer.error();
  if (!own_producer.ok()) {
    KLOG_ERROR("event=segment_failed error=%s", log::q(own_producer.error().message).c_str());
    return 1;
  }
  Publisher &publisher = *own_producer.value();
  ReelState reels(config.recent_updates);
  // In a cluster the hub also holds other nodes' presences, and hands out its own changes.
  PresenceHub presence(PresenceHub::Options{.replicate = cluster != nullptr});
  if (log_store) keep_presence_in_log(*log_store, presence);
  if (cluster) cluster->observe_users(presence);
  KeyedRateLimiter interaction_limiter(config.max_interactions_per_second,
                                       2 * config.max_interactions_per_second);
  RestApi rest(RestOptions{config.trust_loopback, config.allow_anonymous,
                           log_store ? log_store->path() : std::string()},
               &publisher, &reels, &presence);
  if (cluster) {
    rest.set_user_reader([node = cluster.get()](std::string user, ClusterUsers::ReadFn done) {
      node->read_user(std::move(user), std::move(done));
    });
  }
  ServerOptions server_options;
  server_options.presence = &presence;
  server_options.rest = &rest;
  server_options.publisher = &publisher;
  server_options.interaction_limiter = &interaction_limiter;
  // In a cluster the local log holds this host's numbering, not the cluster's: recovery
  // reads Redis's history, and the log only for the host's own streams while cut off.
  server_options.log = log_store.get();
  server_options.cluster = cluster.get();
  server_options.reels = &reels;
  server_options.allow_anonymous = config.allow_anonymous;
  set_limits(config, auth_secret.value(), server_options);
  PeerLimit peer_limit(config.max_connections_per_ip);
  if (peer_limit.enabled()) server_options.peer_limit = &peer_limit;

  // The I/O loops, and the pipeline that feeds them from the ingest thread.
  auto loops = make_io_loops(config.io_threads, server_options);
  std::vector<LoopInbox *> inboxes;
  for (auto &l : loops) inboxes.push_back(l->inbox());
  Pipeline pipeline(std::move(consumer).value(),
                    PipelineOptions::of(config, log_store != nullptr, after_unclean_stop),
                    std::make_unique<LocalSequencer>(), inboxes, reels, log_store.get(),
                    cluster.get());
  // Redis's acknowledgements become the log's outbox marks (what Redis had not taken when
  // kronopd last stopped, the pipeline sends again).
  if (cluster && log_store) keep_outbox(*log_store, *cluster);

  for (auto &l : loops) l->set_dispatcher(&pipeline.dispatcher());
  // kronopd's own ring in a retired segment is given back at once, not at its next publish.
  pipeline.on_segment_recreated([&publisher] { publisher.let_go_if_retired(); });

  uv_loop_t *loop = uv_default_loop();
  std::size_t next_loop = 0;
  Acceptor acceptor(
      loop, config.bind, config.port,
      [&](int fd, const PeerLimit::Key &peer) {
        loops[next_loop]->adopt(fd, peer);
        next_loop = (next_loop + 1) % loops.size();
      },
      peer_limit.enabled() ? &peer_limit : nullptr);
  Stats stats({&config, &pipeline, &loops, &peer_limit, &rest, &presence, &reels, log_store.get(),
               cluster.get()});
  SystemApi system_api([&stats](kronop::v1::DaemonStats &s) { stats.snapshot(s); });
  for (auto &l : loops) l->set_system_api(&system_api);
  // systemd (Type=notify): the status line, and the watchdog's view of the I/O loops.
  LoopProbes probes(loops);
  ServiceNotifier notifier(
      loop, {[&] { return stats.status_line(); }, [&] { return probes.all_answered(); }});
  ControlAnswers answers(loop, stats, presence, rest, loops);
  ControlServer control(loop, config.control_socket_path(),
                        [&answers](const kronop::v1::ControlRequest &req, ControlReply reply) {
                          answers.answer(req, std::move(reply));
                        });
  if (activated.value() >= 0) {
    KLOG_INFO("event=socket_activated fd=%d note=\"--bind and --port are not used\"",
              activated.value());
  }
  if (auto rc = acceptor.listen(activated.value()); !rc.ok()) {
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
    running.create();
  }
  if (cluster) {
    cluster->use_presence(
        &presence,
        [&loops] {
          uint64_t n = 0;
          for (auto &l : loops) n += l->counters()[Counter::kConnections];
          return n;
        },
        acceptor.port());
    cluster->start();
  }
  pipeline.start();

  PresenceDiffs presence_diffs(loop, presence, loops, config.presence_interval_ms, cluster.get());
  MallocTrim trimmer(loop);
  Reloader reloader(loop, args, effective_options(app, config), auth_secret.value(), server_options,
                    loops);
  Drain drain(loop,
              {&control,
               &answers,
               &pipeline,
               &acceptor,
               &loops,
               log_store.get(),
               cluster.get(),
               &notifier,
               {presence_diffs.handle(), reloader.handle(), trimmer.handle()}},
              config.drain_ms);
  log_ready(config, acceptor.address(), loops.size());
  notifier.ready();
  uv_run(loop, UV_RUN_DEFAULT);
  for (auto &l : loops) l->join();
  uv_loop_close(loop);
  // Everything fanned out is logged (the log stopped after the ingest thread): a clean stop.
  // A log cut at its budget is not: the next start reads the rest as after a crash.
  if (log_store && drain.log_complete()) running.remove();
  KLOG_NOTICE("event=stopped drained_ms=%llu log=%s",
              static_cast<unsigned long long>(drain.elapsed_ms()),
              !log_store             ? "none"
              : drain.log_complete() ? "complete"
                                     : "cut");
  return 0;
}
