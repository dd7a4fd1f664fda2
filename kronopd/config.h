// kronopd's configuration: every key is a command-line flag and, with --config FILE, a
// "key = value" line of the same name (CLI11's TOML/INI reader).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

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
  std::size_t max_channels = 100;
  std::size_t max_message = 64 * 1024;
  std::size_t max_unsent_bytes = std::size_t{1} << 20;
  unsigned io_threads = 0;  // 0: one per CPU
  std::string auth_secret_file;
  bool allow_anonymous = true;
  uint32_t max_connections_per_ip = 0;  // 0: no limit
  uint32_t max_client_messages_per_second = 100;
  uint64_t max_connections = 1'000'000;
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
  // Most messages one rejoining client recovers (more missed: {"recovered": false}).
  std::size_t max_recovery_messages = 100'000;
  // SIGTERM: the whole drain (tell clients, close them in batches, flush the log) takes at
  // most this long.
  uint64_t drain_ms = 5000;

  std::string control_socket_path() const {
    return control_socket.empty() ? data_dir + "/kronopd.sock" : control_socket;
  }
};

// Declares every option on `app`, bound to `config`.
void add_options(CLI::App &app, Config &config);

}  // namespace kronop::daemon
