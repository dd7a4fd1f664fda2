// The client port's listening socket. It lives on the main loop and hands each accepted
// socket to the next I/O loop in turn (round robin), so every loop gets an equal share of
// connections and there is exactly one listener per daemon: a second kronopd on the same
// port fails to bind instead of silently sharing the port, as SO_REUSEPORT would allow.
#pragma once

#include <uv.h>
#include <functional>
#include <string>

#include "kronop/result.h"

namespace kronop::daemon {

class Acceptor {
 public:
  using HandOff = std::function<void(int fd)>;
  Acceptor(uv_loop_t *loop, std::string bind, int port, HandOff hand_off);
  ~Acceptor();
  Acceptor(const Acceptor &) = delete;
  Acceptor &operator=(const Acceptor &) = delete;

  Result<bool> listen();
  // Stops accepting and closes the listening socket.
  void close();
  // The bound port (with --port 0, the kernel's choice).
  int port() const { return port_; }
  uint64_t accept_errors() const { return accept_errors_; }

 private:
  static void on_readable(uv_poll_t *poll, int status, int events);
  void accept_some();

  uv_loop_t *loop_;
  std::string bind_;
  int requested_port_;
  int port_ = 0;
  HandOff hand_off_;
  int fd_ = -1;
  uv_poll_t poll_{};
  uv_timer_t backoff_{};
  bool open_ = false;
  uint64_t accept_errors_ = 0;
  uint64_t last_warning_ms_ = 0;
};

}  // namespace kronop::daemon
