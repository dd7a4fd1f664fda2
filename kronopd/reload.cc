// SIGHUP; see reload.h.
#include "reload.h"

#include <CLI/CLI.hpp>
#include <csignal>
#include <set>

#include "auth.h"
#include "log.h"

namespace kronop::daemon {
namespace {

// The keys set_limits reads, and the log level: what a SIGHUP applies. Any other key that
// changed is named in the log and waits for a restart.
bool reloadable(const std::string &key) {
  static const std::set<std::string> keys{
      "log-level",        "auth-secret-file",  "allowed-origin",
      "idle-timeout-ms",  "header-timeout-ms", "max-unsent-bytes",
      "max-request-body", "max-comment-bytes", "max-recovery-messages",
      "max-message",      "max-channels",      "max-client-messages-per-second",
  };
  return keys.count(key) != 0;
}

}  // namespace

Result<std::string> load_auth_secret(const Config &config) {
  if (config.auth_secret_file.empty()) return std::string();
  std::string warning;
  auto read = read_secret_file(config.auth_secret_file, &warning);
  if (!read.ok()) return Error{read.error().code, "--auth-secret-file: " + read.error().message};
  if (!warning.empty()) KLOG_WARN("event=config_warning warning=%s", log::q(warning).c_str());
  return read;
}

void set_limits(const Config &config, const std::string &auth_secret, ServerOptions &o) {
  o.auth_secret = auth_secret;
  o.allowed_origins = config.allowed_origins;
  o.idle_timeout_ms = config.idle_timeout_ms;
  o.header_timeout_ms = config.header_timeout_ms;
  o.max_unsent_bytes = config.max_unsent_bytes;
  o.max_request_body = config.max_request_body;
  o.max_comment_bytes = config.max_comment_bytes;
  o.max_recovery = config.max_recovery_messages;
  o.max_message = config.max_message;
  o.max_channels = config.max_channels;
  o.max_client_messages_per_second = config.max_client_messages_per_second;
}

Reloader::Reloader(uv_loop_t *loop, std::vector<std::string> args,
                   std::vector<std::pair<std::string, std::string>> effective,
                   std::string auth_secret, ServerOptions limits,
                   std::vector<std::unique_ptr<IoLoop>> &loops)
    : args_(std::move(args)),
      effective_(std::move(effective)),
      auth_secret_(std::move(auth_secret)),
      limits_(std::move(limits)),
      loops_(loops) {
  uv_signal_init(loop, &signal_);
  signal_.data = this;
  uv_signal_start(
      &signal_, [](uv_signal_t *h, int) { static_cast<Reloader *>(h->data)->reload(); }, SIGHUP);
}

void Reloader::reload() {
  Config next;
  CLI::App app;
  add_options(app, next);
  std::string error;
  std::string secret;
  try {
    if (auto parsed = parse_options(app, args_); !parsed.ok()) error = parsed.error().message;
  } catch (const CLI::ParseError &e) {
    error = e.what();
  }
  if (error.empty()) {
    auto loaded = load_auth_secret(next);
    if (loaded.ok()) {
      secret = std::move(loaded).value();
    } else {
      error = loaded.error().message;
    }
  }
  if (error.empty() && next.auth_secret_file.empty() && !auth_secret_.empty()) {
    error = "auth-secret-file: cannot be unset while kronopd runs (its tokens' sockets stay)";
  }
  if (!error.empty()) {
    KLOG_ERROR("event=reload result=refused changed=none error=%s", log::q(error).c_str());
    return;
  }
  std::string changed, restart_needed;
  const auto now = effective_options(app, next);
  for (std::size_t i = 0; i < now.size() && i < effective_.size(); ++i) {
    const auto &[key, value] = now[i];
    if (value == effective_[i].second) continue;
    if (!reloadable(key)) {
      restart_needed += (restart_needed.empty() ? "" : ",") + key;
      continue;
    }
    changed += (changed.empty() ? "" : " ") + key + "=" + log::q(value);
    effective_[i].second = value;
  }
  if (secret != auth_secret_) {
    changed += std::string(changed.empty() ? "" : " ") + "auth-secret=replaced";
    auth_secret_ = secret;
  }
  log::set_max_level(log::parse_level(next.log_level).value_or(log::Level::kInfo));
  set_limits(next, auth_secret_, limits_);
  for (auto &l : loops_) l->reconfigure(limits_);
  KLOG_NOTICE("event=reload result=applied changed=%s restart_needed=%s",
              log::q(changed.empty() ? "none" : changed).c_str(),
              log::q(restart_needed.empty() ? "none" : restart_needed).c_str());
}

}  // namespace kronop::daemon
