// kronopctl's subcommands, and what they share. main.cc declares the command line and calls
// one run_* function; each returns the process's exit status:
//   kExitOk 0 success; kExitFailed 1 the operation failed (daemon down, ring full, refused,
//   unknown user); kExitUsage 2 usage or bad input (unknown flag, bad JSON, bad topic).
//
// The subcommands, by the way they reach kronopd:
//   control_commands.cc   the control socket: stats, health, presence, connections
//   producer_commands.cc  no daemon asked: publish (into the rings, as a producer), token
//   log_commands.cc       the durable log, read-only, daemon running or not: replay, tail
//   output.cc             what they share: argument checks, message lines, interruption
#pragma once

#include <cstdint>
#include <string>

#include "log_reader.h"

namespace kronop::ctl {

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

struct TokenArgs {
  std::string user;
  bool admin = false;
  std::string ttl = "1h";
  std::string secret_file;
};

struct ReplayArgs {
  std::string topic;
  std::string since, until;  // RFC 3339 UTC, Unix seconds, or "15m" (that long ago)
  uint64_t since_seq = 0;    // messages after this seq
  uint64_t until_seq = 0;    // 0: no bound
  uint64_t limit = 0;        // 0: no bound
  std::string export_file;
  bool republish = false;
};

struct TailArgs {
  std::string topic;
  uint64_t since_seq = 0;
  bool since_seq_given = false;
  uint64_t count = 0;      // 0: no bound
  int64_t timeout_ms = 0;  // 0: until interrupted
};

struct StatsArgs {
  bool watch = false;
  int64_t interval_ms = 1000;
  uint64_t count = 0;  // readings in watch mode; 0: until interrupted
};

int run_stats(const Globals &g, const StatsArgs &a);
int run_health(const Globals &g);
// This node's part of the cluster; exit 1 when its Redis links are down.
int run_cluster(const Globals &g);
int run_user_presence(const Globals &g, const std::string &user);
int run_reel_presence(const Globals &g, const std::string &reel);
int run_connections(const Globals &g, const std::string &topic);
int run_publish(const Globals &g, PublishArgs a);
int run_token(const Globals &g, const TokenArgs &a);
int run_replay(const Globals &g, const ReplayArgs &a);
int run_tail(const Globals &g, const TailArgs &a);

// A topic or id from the command line, checked with the daemon's rules; a bad one is
// reported on stderr (the caller exits with kExitUsage).
bool valid_topic_arg(const std::string &topic);
bool valid_id_arg(const char *kind, const std::string &id);

// "90", "90s", "15m", "1h", "7d" as seconds; -1 when it is none of those.
int64_t parse_ttl(const std::string &text);

// One message as a JSON line (replay --export writes them too).
std::string json_line(const StoredMessage &m);
// One logged message as replay and tail print it: a `seq time event payload` line, or with
// --json a JSON line.
void print_message(const Globals &g, const StoredMessage &m);

// SIGINT and SIGTERM end the commands that run until interrupted (tail, stats --watch)
// normally: they finish the line they print and exit 0. stop_on_signals() installs that;
// stop_requested() says whether one came.
void stop_on_signals();
bool stop_requested();
// Sleeps `ms` unless a stop signal comes first; false when one did.
bool sleep_unless_stopped(int64_t ms);

}  // namespace kronop::ctl
