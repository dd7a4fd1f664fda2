// kronopd's configuration: every key is a command-line flag and, with --config FILE, a
// "key = value" line of the same name (CLI11's TOML/INI reader).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>
#include "kronop/result.h"

namespace kronop::daemon {

struct Config {
  std::string data_dir = "./var";
  std::string shm_name = "kronop";
  std::string control_socket;  // default: <data-dir>/kronopd.sock
  uint32_t rings = 64;
  uint64_t ring_size = uint64_t{1} << 20;
  uint64_t ingest_spin_us = 50;
  std::string log_level = "info";
  // The client port.
  std::string bind = "127.0.0.1";
  int port = 4000;
  uint64_t idle_timeout_ms = 60'000;
  uint64_t header_timeout_ms = 10'000;  // request complete, then first join (connection.h)
  std::size_t max_channels = 100;
  std::size_t max_message = 64 * 1024;
  std::size_t max_unsent_bytes = std::size_t{1} << 20;
  unsigned io_threads = 0;  // 0: one per CPU
  std::string auth_secret_file;
  bool allow_anonymous = true;
  uint32_t max_connections_per_ip = 0;  // 0: no limit
  uint32_t max_client_messages_per_second = 100;
  uint64_t max_connections = 0;  // 0: what the open file limit allows (file_limit.h)
  std::vector<std::string> allowed_origins;
  // Presence, interactions, the REST API.
  uint64_t presence_interval_ms = 50;
  uint32_t max_interactions_per_second = 5;  // per user, bursts of twice that
  std::size_t max_comment_bytes = 1000;
  std::size_t max_request_body = 64 * 1024;
  bool trust_loopback = true;
  std::size_t recent_updates = 100;  // per reel, for GET /api/v1/reels/:id/updates
  // The durable log (DATA_DIR/kronop.db); without it nothing survives a restart.
  bool durable_log = true;
  // The durable log's retention.
  uint64_t retention_hours = 168;
  uint64_t retention_count = 100'000;
  // The log writer's SQLite page cache, in MiB: the most its pages hold in memory.
  uint64_t log_cache_mib = 64;
  // "normal": commits are synced by the checkpoints, about once a second; "full": every
  // commit is synced (survives a host crash).
  std::string log_sync = "normal";
  // Most messages one rejoining client recovers (more missed: {"recovered": false}).
  std::size_t max_recovery_messages = 100'000;
  // The cluster (cluster_node.h): the Redis that joins this node to the others; empty:
  // a single host.
  std::vector<std::string> redis;  // one URL, or a Redis Cluster's seeds
  std::string redis_password_file;
  uint64_t redis_history_size = 10'000;  // messages a topic's history keeps in Redis
  uint64_t redis_history_ttl = 86'400;   // seconds a topic's keys live after its last message
  // This host's records waiting in memory for Redis to number them; past it they wait in
  // the durable log (cluster_outbox.h), or, without one, in the rings.
  uint64_t redis_max_waiting = 50'000;
  // Seconds after its last heartbeat within which a dead node's users leave every node.
  uint64_t redis_presence_ttl = 15;
  // SIGTERM: the whole drain (tell clients, close them in batches, flush the log) takes at
  // most this long.
  uint64_t drain_ms = 5000;
  // Print the effective configuration and exit (not a key of the file).
  bool print_config = false;

  std::string control_socket_path() const {
    return control_socket.empty() ? data_dir + "/kronopd.sock" : control_socket;
  }
};

// Declares every option on `app`, bound to `config`.
void add_options(CLI::App &app, Config &config);

// Parses the command line `args` (without the program name) into the options add_options
// declared on `app`, with the file --config names. A fault in the file names the file and
// line ("kronopd.conf:7: unknown key 'port_'"), and so does a bad value read from it. Flags
// on the command line win over the file's keys. --help and --version throw CLI11's
// CallForHelp / CallForVersion, for app.exit().
Result<bool> parse_options(CLI::App &app, const std::vector<std::string> &args);

// The effective configuration after parse_options, as the file's "key = value" lines would
// give it: every key, in --help's order, with its value (given or default).
std::vector<std::pair<std::string, std::string>> effective_options(const CLI::App &app,
                                                                   const Config &config);
// The text --print-config prints: what kronopd(8) asks of a kronopd facing the internet and
// whether `options` meet it (comments), then a file --config reads back.
std::string format_config(const std::vector<std::pair<std::string, std::string>> &options);

}  // namespace kronop::daemon
