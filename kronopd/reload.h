// SIGHUP: read the configuration again and apply, while kronopd runs, what can change.
//
// The same command line is parsed again with the --config file as it is now and the auth
// secret file re-read. A configuration with a fault changes nothing (one error line says
// why). Otherwise the log level, the auth secret and the client limits (set_limits) are
// applied to every I/O loop, and one line names what changed and which changed keys wait
// for a restart (ports, segment geometry, allow-anonymous, per-IP limits...).
#pragma once

#include <uv.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "config.h"
#include "io_loop.h"
#include "kronop/result.h"
#include "server.h"

namespace kronop::daemon {

// The secret --auth-secret-file names ("" when none is set); a doubtful file, e.g. one
// others may read, is logged as a warning.
Result<std::string> load_auth_secret(const Config &config);

// The ServerOptions that SIGHUP may change (ClientServer::reconfigure), from `config`.
void set_limits(const Config &config, const std::string &auth_secret, ServerOptions &o);

class Reloader {
 public:
  // `args`: the command line (without argv[0]); `effective`: the configuration in force, as
  // effective_options() gives it; `limits`: the options the loops run with.
  Reloader(uv_loop_t *loop, std::vector<std::string> args,
           std::vector<std::pair<std::string, std::string>> effective, std::string auth_secret,
           ServerOptions limits, std::vector<std::unique_ptr<IoLoop>> &loops);
  Reloader(const Reloader &) = delete;
  Reloader &operator=(const Reloader &) = delete;

  void reload();
  // The SIGHUP handle (the drain closes it).
  uv_handle_t *handle() { return reinterpret_cast<uv_handle_t *>(&signal_); }

 private:
  std::vector<std::string> args_;
  std::vector<std::pair<std::string, std::string>> effective_;
  std::string auth_secret_;
  ServerOptions limits_;
  std::vector<std::unique_ptr<IoLoop>> &loops_;
  uv_signal_t signal_{};
};

}  // namespace kronop::daemon
