#include "config.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include "kronop_ipc.h"

namespace kronop::daemon {
namespace {

// Options that are not keys of the file.
bool file_key(const CLI::Option &opt) {
  const std::string name = opt.get_single_name();
  return opt.get_configurable() && !name.empty() && name != "help" && name != "version" &&
         name != "config" && name != "print-config";
}

struct FileKey {
  std::string name;  // the option's long name (as in --help)
  int line;
};

// The keys of the file --config names, with their lines; or the first fault: a line that is
// neither a comment nor "key = value" (CLI11 reads a bare key as "key = true"), a section, an
// unknown key, a key given twice. CLI11 would take some of these silently.
std::string scan_config_file(const CLI::App &app, const std::string &path,
                             std::vector<FileKey> &keys) {
  std::ifstream in(path);
  if (!in) return path + ": cannot read: " + std::strerror(errno);
  std::string raw;
  for (int line = 1; std::getline(in, raw); ++line) {
    const std::string text = CLI::detail::trim_copy(raw);
    const std::string where = path + ":" + std::to_string(line) + ": ";
    // A NUL or another control character: not a text file, and a value holding one could
    // not be printed back (--print-config) or passed on a command line. A carriage return
    // may end the line (a file written on Windows), nowhere else (found by config_fuzz: one
    // inside a value was accepted, and the value printed back did not read the same).
    const auto end = raw.end() - (!raw.empty() && raw.back() == '\r' ? 1 : 0);
    if (std::any_of(raw.begin(), end,
                    [](char ch) { return (ch >= 0 && ch < ' ' && ch != '\t') || ch == 0x7f; })) {
      return where + "control character in the line (the file must be text)";
    }
    if (text.empty() || text.front() == '#' || text.front() == ';') continue;
    if (text.front() == '[') return where + "sections are not used: every key is at the top";
    // The key as CLI11's reader takes it.
    std::string key = CLI::detail::trim_copy(text.substr(0, text.find('=')));
    CLI::detail::remove_quotes(key);
    if (key.empty()) return where + "expected 'key = value'";
    const CLI::Option *opt = app.get_option_no_throw("--" + key);
    if (opt == nullptr || !file_key(*opt)) {
      std::string hint;
      if (key.find('_') != std::string::npos) {
        hint = " (keys are the long options without their dashes, spelt with '-', not '_')";
      }
      return where + "unknown key '" + key + "'" + hint;
    }
    // "key =" (or "key = ,", or "key = \"\"") sets nothing: CLI11 would keep the default
    // silently, which the command line refuses and --print-config shows as "(not set)".
    if (const auto eq = text.find('='); eq != std::string::npos) {
      std::string value = text.substr(eq + 1, text.find('#', eq) - eq - 1);
      CLI::detail::trim(value);
      if (value == "\"\"" || value == "''") value.clear();
      if (value.find_first_not_of(" \t,") == std::string::npos) {
        return where + "'" + key + "' has no value";
      }
      // A '"' inside a value (not one pair around it, not a [list]): CLI11 read such a value
      // one way, and the quoted form --print-config writes it back in another (found by
      // config_fuzz: a data-dir with quotes became nine values).
      std::string inner = value;
      if (inner.size() >= 2 && (inner.front() == '"' || inner.front() == '\'') &&
          inner.back() == inner.front()) {
        inner = inner.substr(1, inner.size() - 2);
      }
      if (!inner.empty() && inner.front() != '[' && inner.find('"') != std::string::npos) {
        return where + "'" + key + "': a '\"' inside a value is not supported";
      }
      // A [list] not closed on its line: CLI11 would read on into the next lines, comments
      // included, as more of the list (found by config_fuzz: "#" lines became an origin).
      if (value.front() == '[' && value.back() != ']') {
        return where + "'" + key + "': a [list] must end with ']' on its line";
      }
    }
    const std::string name = opt->get_single_name();
    auto seen =
        std::find_if(keys.begin(), keys.end(), [&](const FileKey &k) { return k.name == name; });
    if (seen != keys.end() && opt->get_expected_max() <= 1) {
      return where + "'" + key + "' is already set on line " + std::to_string(seen->line);
    }
    keys.push_back({name, line});
  }
  return {};
}

// Whether `args` gives the option itself (--name or --name=...).
bool given_on_command_line(const std::vector<std::string> &args, const CLI::Option &opt) {
  return std::any_of(args.begin(), args.end(), [&](const std::string &a) {
    if (a.size() < 3 || a.compare(0, 2, "--") != 0) return false;
    const auto eq = a.find('=');
    return opt.check_lname(a.substr(2, eq == std::string::npos ? std::string::npos : eq - 2));
  });
}

// scheme "://" host [":" port], or "null": the scheme a letter then letters, digits, '+',
// '-' or '.'; the host a name of letters, digits, '-' and '.', or an IPv6 literal in
// brackets; the port 1 to 5 digits.
bool valid_origin(std::string_view o) {
  if (o == "null") return true;
  const std::size_t sep = o.find("://");
  if (sep == std::string_view::npos || sep == 0 || !std::isalpha(static_cast<unsigned char>(o[0])))
    return false;
  for (const char ch : o.substr(0, sep)) {
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '+' && ch != '-' && ch != '.')
      return false;
  }
  std::string_view rest = o.substr(sep + 3);
  std::string_view host = rest;
  if (!rest.empty() && rest.front() == '[') {
    const std::size_t close = rest.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    for (const char ch : rest.substr(1, close - 1)) {
      if (!std::isxdigit(static_cast<unsigned char>(ch)) && ch != ':' && ch != '.') return false;
    }
    host = rest.substr(0, close + 1);
    rest = rest.substr(close + 1);
  } else {
    host = rest.substr(0, rest.find(':'));
    if (host.empty()) return false;
    for (const char ch : host) {
      if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '-' && ch != '.') return false;
    }
    rest = rest.substr(host.size());
  }
  if (rest.empty()) return true;
  const std::string_view port = rest.substr(1);
  return rest.front() == ':' && !port.empty() && port.size() <= 5 &&
         std::all_of(port.begin(), port.end(),
                     [](char ch) { return std::isdigit(static_cast<unsigned char>(ch)) != 0; });
}

}  // namespace

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
                 "Microseconds the ingest thread polls empty rings before it sleeps, while "
                 "records come within that of each other (0: never)")
      ->check(CLI::Range(0, 100000))
      ->capture_default_str();
  app.add_option("--bind", config.bind,
                 "Address of the client port (WebSocket and HTTP): an IPv4 or IPv6 address")
      // The acceptor binds an address literal (uv_ip4_addr, uv_ip6_addr): anything else is
      // refused here, naming the line, rather than at listen.
      ->check(CLI::Validator(
          [](std::string &address) -> std::string {
            in6_addr scratch{};
            if (::inet_pton(AF_INET, address.c_str(), &scratch) == 1 ||
                ::inet_pton(AF_INET6, address.c_str(), &scratch) == 1)
              return "";
            return "not an IPv4 or IPv6 address: '" + address + "'";
          },
          "ADDRESS"))
      ->capture_default_str();
  app.add_option("--port", config.port, "Client port")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  app.add_option("--idle-timeout-ms", config.idle_timeout_ms,
                 "Close a client socket that sent no complete message (not even a "
                 "heartbeat) for this long")
      ->check(CLI::Range(uint64_t{100}, uint64_t{86400000}))
      ->capture_default_str();
  app.add_option("--header-timeout-ms", config.header_timeout_ms,
                 "A client's HTTP request must be complete within this long of its connect "
                 "(else 408), and a Phoenix socket's first join accepted within this long "
                 "of its upgrade (else close 1008)")
      ->check(CLI::Range(uint64_t{100}, uint64_t{3600000}))
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
                 "open file limit (raised to the hard limit) is lower. 0: what that limit "
                 "allows")
      ->check(CLI::Range(uint64_t{0}, uint64_t{100'000'000}))
      ->capture_default_str();
  app.add_option("--auth-secret-file", config.auth_secret_file,
                 "File with the secret that client tokens (JWT HS256) are signed with; none: "
                 "no token is accepted");
  app.add_flag("--allow-anonymous,!--no-allow-anonymous", config.allow_anonymous,
               "Let clients without a token connect (they may join reel: topics only)")
      ->default_str(config.allow_anonymous ? "true" : "false");
  app.add_option("--max-connections-per-ip", config.max_connections_per_ip,
                 "Client connections one source address may hold (more: HTTP 429); 0: no "
                 "limit (behind a proxy every client has the proxy's address)")
      ->capture_default_str();
  app.add_option("--max-client-messages-per-second", config.max_client_messages_per_second,
                 "WebSocket frames (messages, pings, pongs, continuations) a client socket "
                 "may send per second, with bursts of twice that; faster: close 1008. 0: no "
                 "limit")
      ->capture_default_str();
  app.add_option("--allowed-origin", config.allowed_origins,
                 "Origin allowed to open a WebSocket (repeatable; none given: any)")
      // An Origin as browsers send it (RFC 6454: scheme://host[:port], or "null"), nothing
      // else: anything else could never match, and --print-config could not always write it
      // back (found by config_fuzz: a list element with a backslash).
      ->check(CLI::Validator(
          [](std::string &origin) -> std::string {
            return valid_origin(origin)
                       ? ""
                       : "not an origin (scheme://host[:port], or null): '" + origin + "'";
          },
          "ORIGIN"));
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
      ->default_str(config.trust_loopback ? "true" : "false");
  app.add_option("--recent-updates", config.recent_updates,
                 "reel_update messages kept per reel for GET /api/v1/reels/ID/updates")
      ->check(CLI::Range(std::size_t{1}, std::size_t{10'000}))
      ->capture_default_str();
  app.add_flag("--durable-log,!--no-durable-log", config.durable_log,
               "Log every message in DATA_DIR/kronop.db (without it: nothing survives a "
               "restart, joins recover nothing; for development and for measuring the log)")
      ->default_str(config.durable_log ? "true" : "false");
  app.add_option("--retention-hours", config.retention_hours,
                 "The durable log keeps messages this many hours (0: whatever their age)")
      ->capture_default_str();
  app.add_option("--retention-count", config.retention_count,
                 "The durable log keeps at most this many newest messages per topic (0: no limit)")
      ->capture_default_str();
  app.add_option("--log-cache-mib", config.log_cache_mib,
                 "The durable log writer's page cache, in MiB: the most of the log kronopd "
                 "keeps in memory")
      ->check(CLI::Range(uint64_t{1}, uint64_t{65'536}))
      ->capture_default_str();
  app.add_option("--log-sync", config.log_sync,
                 "When the durable log reaches the disk: normal (its checkpoints sync it, about "
                 "once a second: a host crash may take the last second) or full (every commit "
                 "is synced)")
      ->check(CLI::IsMember({"normal", "full"}))
      ->capture_default_str();
  app.add_option("--max-recovery-messages", config.max_recovery_messages,
                 "Most missed messages a client joining with last_seq is sent (more: it is "
                 "told {\"recovered\": false})")
      ->check(CLI::Range(std::size_t{1}, std::size_t{10'000'000}))
      ->capture_default_str();
  app.add_option("--redis", config.redis,
                 "Join the cluster through this Redis (7 or later): redis://[[USER]:PASSWORD@]"
                 "HOST[:PORT][/DB] or unix:///PATH[?db=N]. Messages are numbered by Redis and "
                 "delivered on every node; none: a single host. Given more than once (or naming "
                 "a Redis Cluster): the seeds of a Redis Cluster, whose masters share the "
                 "topics by hash slot")
      ->take_all()
      ->expected(1);
  app.add_option("--redis-password-file", config.redis_password_file,
                 "File with the Redis password (instead of one in the URL)");
  app.add_option("--redis-history-size", config.redis_history_size,
                 "Messages a topic's history keeps in Redis, for recoveries on any node")
      ->check(CLI::Range(uint64_t{1}, uint64_t{10'000'000}))
      ->capture_default_str();
  app.add_option("--redis-history-ttl", config.redis_history_ttl,
                 "Seconds a topic's keys (history, sequence) live in Redis after its last "
                 "message")
      ->check(CLI::Range(uint64_t{1}, uint64_t{365} * 86'400))
      ->capture_default_str();
  app.add_option("--redis-max-waiting", config.redis_max_waiting,
                 "This host's records waiting in memory for Redis (slow or away); past it "
                 "they wait in the durable log (without one, in the producers' rings)")
      ->check(CLI::Range(uint64_t{1}, uint64_t{10'000'000}))
      ->capture_default_str();
  app.add_option("--redis-presence-ttl", config.redis_presence_ttl,
                 "Seconds within which a node that dies (kill -9, a lost host) has its users "
                 "leave the presences of every other node; nodes heartbeat 5 times in it")
      ->check(CLI::Range(uint64_t{2}, uint64_t{3600}))
      ->capture_default_str();
  app.add_option("--drain-ms", config.drain_ms,
                 "On SIGTERM: stop accepting, send clients a system_notice, close them (1012) in "
                 "batches spread over half this time, flush the log, and exit within it")
      ->check(CLI::Range(uint64_t{0}, uint64_t{600'000}))
      ->capture_default_str();
  app.add_option("--log-level", config.log_level, "error, warning, notice, info or debug")
      ->check(CLI::IsMember({"error", "warning", "notice", "info", "debug"}))
      ->capture_default_str();
  app.add_flag("--print-config", config.print_config,
               "Print the effective configuration (defaults, the --config file, these flags) "
               "as a file --config reads, and exit")
      ->configurable(false);
}

Result<bool> parse_options(CLI::App &app, const std::vector<std::string> &args) {
  // The file's path, to name its lines: CLI11 reads it, but its errors say neither where.
  std::string path;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--config" && i + 1 < args.size()) path = args[i + 1];
    if (args[i].rfind("--config=", 0) == 0) path = args[i].substr(9);
  }
  std::vector<FileKey> keys;
  if (!path.empty()) {
    if (std::string fault = scan_config_file(app, path, keys); !fault.empty()) {
      return Error{KRONOP_EINVAL, fault};
    }
  }
  std::vector<std::string> reversed(args.rbegin(), args.rend());
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError &e) {
    if (e.get_exit_code() == 0) throw;  // --help, --version
    std::string message = e.what();
    // "--port: Value 70000 not in range ...": a value from the file names its line.
    for (const FileKey &k : keys) {
      const CLI::Option *opt = app.get_option_no_throw("--" + k.name);
      const std::string flag = "--" + k.name;
      const auto at = message.find(flag);
      const char after = at == std::string::npos || at + flag.size() >= message.size()
                             ? '\0'
                             : message[at + flag.size()];
      if (at == std::string::npos || after == '-' ||
          std::isalnum(static_cast<unsigned char>(after)))
        continue;
      if (given_on_command_line(args, *opt)) continue;
      return Error{KRONOP_EINVAL, path + ":" + std::to_string(k.line) + ": " + message};
    }
    return Error{KRONOP_EINVAL, message};
  } catch (const std::out_of_range &e) {
    // CLI11 2.1 reads a negated flag's value with std::stoll and lets its out_of_range out
    // (found by config_fuzz: "no-trust-loopback = 0444...", 60 digits).
    return Error{KRONOP_EINVAL, (path.empty() ? std::string() : path + ": ") +
                                    "a flag's value is out of range (a flag takes true or "
                                    "false): " +
                                    e.what()};
  }
  return true;
}

std::vector<std::pair<std::string, std::string>> effective_options(const CLI::App &app,
                                                                   const Config &config) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const CLI::Option *opt : app.get_options()) {
    if (!file_key(*opt)) continue;
    const std::string name = opt->get_single_name();
    std::string value;
    if (name == "control-socket") {
      value = config.control_socket_path();
    } else if (opt->get_expected_max() > 1) {
      std::vector<std::string> items =
          opt->count() > 0 ? opt->as<std::vector<std::string>>() : std::vector<std::string>{};
      // TOML's array, which CLI11 reads back.
      for (std::size_t i = 0; i < items.size(); ++i) {
        value += (i ? ", \"" : "[\"") + items[i] + "\"";
      }
      if (!items.empty()) value += "]";
    } else {
      value = opt->count() > 0 ? opt->as<std::string>() : opt->get_default_str();
    }
    out.emplace_back(name, std::move(value));
  }
  return out;
}

namespace {

// What kronopd(8) asks of a kronopd facing the internet, and whether `options` meet it.
std::string internet_checklist(const std::vector<std::pair<std::string, std::string>> &options) {
  auto value = [&](std::string_view key) -> std::string {
    for (const auto &[k, v] : options) {
      if (k == key) return v;
    }
    return "";
  };
  auto number = [&](std::string_view key) {
    return std::strtoull(value(key).c_str(), nullptr, 10);
  };
  struct Item {
    bool met;
    const char *what;
  };
  const Item items[] = {
      {!value("auth-secret-file").empty() && value("allow-anonymous") == "false",
       "auth-secret-file, and allow-anonymous = false: every client needs a token"},
      {number("max-connections-per-ip") > 0,
       "max-connections-per-ip (e.g. 64): one address cannot take every connection"},
      {number("header-timeout-ms") > 0 && number("header-timeout-ms") <= 10000,
       "header-timeout-ms at most 10000: slow requests are closed"},
      {!value("allowed-origin").empty(),
       "allowed-origin: pages of other sites cannot connect from a browser"},
      {value("trust-loopback") == "false",
       "trust-loopback = false: behind a proxy on this host, every request comes from loopback"},
  };
  std::string out =
      "# Facing the internet, kronopd(8) asks for (\"yes\": this configuration has it):\n";
  for (const Item &i : items)
    out += std::string("#   ") + (i.met ? "yes " : "no  ") + i.what + "\n";
  return out;
}

}  // namespace

std::string format_config(const std::vector<std::pair<std::string, std::string>> &options) {
  std::ostringstream out;
  out << internet_checklist(options);
  for (const auto &[key, value] : options) {
    if (value.empty()) {
      out << "# " << key << " = (not set)\n";
    } else if (value.front() != '[' && value.find_first_of(" #;[]=\"',") != std::string::npos) {
      out << key << " = \"" << value << "\"\n";
    } else {
      out << key << " = " << value << "\n";
    }
  }
  return out.str();
}

}  // namespace kronop::daemon
