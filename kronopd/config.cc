#include "config.h"

namespace kronop::daemon {

void add_options(CLI::App &app, Config &config) {
  // A misspelt key in the file is an error, not a silently ignored line.
  app.allow_config_extras(CLI::config_extras_mode::error);
  app.set_config("--config", "",
                 "Read options from FILE: one 'key = value' per line, keys as the long flags");
  app.add_option("--data-dir", config.data_dir,
                 "Directory for the daemon's files (created if missing)")
      ->capture_default_str();
  app.add_option("--shm-name", config.shm_name, "Name of the shared-memory segment in /dev/shm")
      ->capture_default_str();
  app.add_option("--control-socket", config.control_socket,
                 "Unix socket for kronopctl (default: DATA_DIR/kronopd.sock)");
  app.add_option("--rings", config.rings, "Producer rings in a new segment (one per producer)")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  app.add_option("--ring-size", config.ring_size,
                 "Bytes per ring in a new segment: a power of two, 4096 to 1073741824")
      ->check([](const std::string &s) -> std::string {
        try {
          uint64_t v = std::stoull(s);
          if (v < 4096 || v > (uint64_t{1} << 30) || (v & (v - 1)) != 0) {
            return "must be a power of two from 4096 to 1073741824";
          }
        } catch (...) {
          return "must be a number";
        }
        return {};
      })
      ->capture_default_str();
  app.add_option("--ingest-spin-us", config.ingest_spin_us,
                 "Microseconds the ingest thread polls empty rings before it sleeps")
      ->check(CLI::Range(0, 100000))
      ->capture_default_str();
  app.add_option("--bind", config.bind, "Address of the client port (WebSocket and HTTP)")
      ->capture_default_str();
  app.add_option("--port", config.port, "Client port")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  app.add_option("--idle-timeout-ms", config.idle_timeout_ms,
                 "Close a client socket that sent nothing (not even a heartbeat) for this long")
      ->check(CLI::Range(uint64_t{100}, uint64_t{86400000}))
      ->capture_default_str();
  app.add_option("--max-channels", config.max_channels, "Channels one socket may join")
      ->check(CLI::Range(std::size_t{1}, std::size_t{100000}))
      ->capture_default_str();
  app.add_option("--max-message", config.max_message,
                 "Largest client WebSocket message in bytes (larger: close 1009)")
      ->check(CLI::Range(std::size_t{1024}, std::size_t{16} << 20))
      ->capture_default_str();
  app.add_option("--max-unsent-bytes", config.max_unsent_bytes,
                 "Bytes a client may leave unread before low-priority messages to it are "
                 "dropped and then the connection is closed (1013)")
      ->check(CLI::Range(std::size_t{4096}, std::size_t{1} << 30))
      ->capture_default_str();
  app.add_option("--io-threads", config.io_threads,
                 "I/O threads (event loops) serving clients; 0: one per CPU")
      ->check(CLI::Range(0u, 64u))
      ->capture_default_str();
  app.add_option("--max-connections", config.max_connections,
                 "Client connections the host is sized for; kronopd warns at start when its "
                 "open file limit is lower")
      ->check(CLI::Range(uint64_t{1}, uint64_t{100'000'000}))
      ->capture_default_str();
  app.add_option("--auth-secret-file", config.auth_secret_file,
                 "File with the secret that client tokens (JWT HS256) are signed with; none: "
                 "no token is accepted");
  app.add_flag("--allow-anonymous,!--no-allow-anonymous", config.allow_anonymous,
               "Let clients without a token connect (they may join reel: topics only)")
      ->capture_default_str();
  app.add_option("--max-connections-per-ip", config.max_connections_per_ip,
                 "Client connections one source address may hold (more: HTTP 429); 0: no "
                 "limit (behind a proxy every client has the proxy's address)")
      ->capture_default_str();
  app.add_option("--max-client-messages-per-second", config.max_client_messages_per_second,
                 "Messages (and pings) a client socket may send per second, with bursts of "
                 "twice that; faster: close 1008. 0: no limit")
      ->capture_default_str();
  app.add_option("--allowed-origin", config.allowed_origins,
                 "Origin allowed to open a WebSocket (repeatable; none given: any)");
  app.add_option("--presence-interval-ms", config.presence_interval_ms,
                 "Presence changes of a reel are sent as one presence_diff per this many ms")
      ->check(CLI::Range(uint64_t{1}, uint64_t{60'000}))
      ->capture_default_str();
  app.add_option("--max-interactions-per-second", config.max_interactions_per_second,
                 "Likes, comments and shares one user may push per second (all sockets), "
                 "with bursts of twice that; more are refused. 0: no limit")
      ->capture_default_str();
  app.add_option("--max-comment-bytes", config.max_comment_bytes,
                 "Longest comment text, in bytes of UTF-8")
      ->check(CLI::Range(std::size_t{1}, std::size_t{16 * 1024}))
      ->capture_default_str();
  app.add_option("--max-request-body", config.max_request_body,
                 "Largest HTTP request body; larger: 413 before it is read")
      ->check(CLI::Range(std::size_t{1}, std::size_t{16} << 20))
      ->capture_default_str();
  app.add_flag("--trust-loopback,!--no-trust-loopback", config.trust_loopback,
               "REST writes from a loopback address need no token")
      ->capture_default_str();
  app.add_option("--recent-updates", config.recent_updates,
                 "reel_update messages kept per reel for GET /api/v1/reels/ID/updates")
      ->check(CLI::Range(std::size_t{1}, std::size_t{10'000}))
      ->capture_default_str();
  app.add_flag("--durable-log,!--no-durable-log", config.durable_log,
               "Log every message in DATA_DIR/kronop.db (without it: nothing survives a "
               "restart, joins recover nothing; for development and for measuring the log)")
      ->capture_default_str();
  app.add_option("--retention-hours", config.retention_hours,
                 "The durable log keeps messages this many hours (0: whatever their age)")
      ->capture_default_str();
  app.add_option("--retention-count", config.retention_count,
                 "The durable log keeps at most this many newest messages per topic (0: no limit)")
      ->capture_default_str();
  app.add_option("--max-recovery-messages", config.max_recovery_messages,
                 "Most missed messages a client joining with last_seq is sent (more: it is "
                 "told {\"recovered\": false})")
      ->check(CLI::Range(std::size_t{1}, std::size_t{10'000'000}))
      ->capture_default_str();
  app.add_option("--drain-ms", config.drain_ms,
                 "On SIGTERM: stop accepting, send clients a system_notice, close them (1012) in "
                 "batches spread over half this time, flush the log, and exit within it")
      ->check(CLI::Range(uint64_t{0}, uint64_t{600'000}))
      ->capture_default_str();
  app.add_option("--log-level", config.log_level, "error, warning, notice, info or debug")
      ->check(CLI::IsMember({"error", "warning", "notice", "info", "debug"}))
      ->capture_default_str();
}

}  // namespace kronop::daemon
