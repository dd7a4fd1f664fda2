// systemd's service manager protocol (sd_notify(3)) for kronopd under a Type=notify unit:
//   READY=1     once kronopd listens on its ports and drains the segment (with MAINPID= and
//               a first STATUS=);
//   STATUS=...  every few seconds: connections, messages fanned out per second, records
//               ingested per second (what `systemctl status kronopd` shows);
//   WATCHDOG=1  every half WatchdogSec= (WATCHDOG_USEC), from the main event loop, and only
//               while every I/O loop has answered a probe since the last ping: a wedged
//               loop (main or I/O) stops the pings and systemd restarts kronopd;
//   STOPPING=1  when a stop begins.
// Outside systemd (no NOTIFY_SOCKET) every call does nothing.
#pragma once

#include <uv.h>
#include <cstdint>
#include <functional>
#include <string>

#include "config.h"
#include "kronop/result.h"

namespace kronop::daemon {

// Socket activation (kronopd.socket): the listening TCP socket systemd passed for the client
// port (LISTEN_FDS=1, LISTEN_PID this process), or -1 when none was passed. Anything else
// passed (more sockets, not a listening stream socket) is an error. The variables are
// unset, so that nothing kronopd starts inherits them.
Result<int> activated_socket();

// The lines that say kronopd is ready: where clients connect, and a first command to try.
void log_ready(const Config &config, const std::string &clients_address, std::size_t io_threads);

class ServiceNotifier {
 public:
  struct Hooks {
    // The status line (called on the main loop every status_ms).
    std::function<std::string()> status;
    // Whether every I/O loop answered since the previous call, and sends them the next
    // probe (called on the main loop at each watchdog tick).
    std::function<bool()> loops_alive;
  };
  ServiceNotifier(uv_loop_t *loop, Hooks hooks, uint64_t status_ms = 5000);
  ~ServiceNotifier();
  ServiceNotifier(const ServiceNotifier &) = delete;
  ServiceNotifier &operator=(const ServiceNotifier &) = delete;

  // Whether a service manager listens (NOTIFY_SOCKET is set).
  bool enabled() const { return enabled_; }
  // The watchdog interval systemd asked for (WATCHDOG_USEC), 0 when none.
  uint64_t watchdog_usec() const { return watchdog_usec_; }

  void ready();
  void stopping();
  // Stops the timers (before the main loop ends).
  void close();

 private:
  static void on_status(uv_timer_t *t);
  static void on_watchdog(uv_timer_t *t);
  void send(const std::string &state);

  uv_loop_t *loop_;
  Hooks hooks_;
  uint64_t status_ms_;
  bool enabled_ = false;
  uint64_t watchdog_usec_ = 0;
  bool timers_open_ = false;
  bool warned_ = false;  // a missed ping was logged (once per stall)
  uv_timer_t status_timer_{};
  uv_timer_t watchdog_timer_{};
};

}  // namespace kronop::daemon
