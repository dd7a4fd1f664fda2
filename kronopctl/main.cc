// kronopctl: the operator's command line for kronopd. This file declares the command line
// (CLI11) and runs the subcommand; the subcommands live in *_commands.cc (see commands.h).
//
// Three ways to the daemon: the control socket (stats, health, presence, connections), the
// shared-memory rings as a producer (publish, replay --republish), and the durable log,
// read-only, which works with the daemon stopped (replay, tail).
//
// Global options (--socket, --shm-name, --data-dir, --json) may come before or after the
// subcommand, as with git or systemctl: every subcommand falls through to the top level for
// an option it does not have. A subcommand's own option of the same name wins after it
// (publish --json is the payload).
#include <CLI/CLI.hpp>

#include "commands.h"

using namespace kronop::ctl;

int main(int argc, char **argv) {
  Globals g;
  CLI::App app{"kronopctl - operate kronopd"};
  app.require_subcommand(1);
  // Inherited by every subcommand added below: an option a subcommand does not have is
  // tried on its parent, up to these global ones, wherever it stands on the line.
  app.fallthrough();
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
  auto *cluster = app.add_subcommand(
      "cluster", "This node's part of the cluster: Redis link, forwarding lag, subscriptions");

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

  for (auto *sub :
       {token, replay, tail, stats, health, presence, presence_user, presence_reel, connections}) {
    sub->footer(
        "Global options (--socket, --shm-name, --data-dir, --json) may also follow the "
        "subcommand; see kronopctl --help.");
  }
  publish->footer(
      "Global options (--socket, --shm-name, --data-dir) may also follow the "
      "subcommand. --json after it is the payload: for JSON output, put --json "
      "before publish.");

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
  if (*cluster) return run_cluster(g);
  if (*presence_user) return run_user_presence(g, presence_id);
  if (*presence_reel) return run_reel_presence(g, presence_id);
  if (*connections) return run_connections(g, connections_topic);
  return kExitUsage;
}
