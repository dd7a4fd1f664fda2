// systemd notifications; see service_notify.h.
#include "service_notify.h"

#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "log.h"

namespace kronop::daemon {

void log_ready(const Config &config, const std::string &clients_address, std::size_t io_threads) {
  KLOG_NOTICE(
      "event=ready version=%s clients=ws://%s/ws io_threads=%zu shm=/dev/shm/%s "
      "control_socket=%s",
      KRONOP_VERSION, clients_address.c_str(), io_threads, config.shm_name.c_str(),
      log::q(config.control_socket_path()).c_str());
  KLOG_NOTICE(
      "event=hint try=\"kronopctl publish --shm-name %s --topic reel:123 --event reel_update "
      "--json '{\\\"views\\\":1}'; kronopctl --socket %s stats\"",
      config.shm_name.c_str(), config.control_socket_path().c_str());
}

Result<int> activated_socket() {
  const int n = ::sd_listen_fds(1);
  if (n < 0) return Error{n, std::string("socket activation: ") + std::strerror(-n)};
  if (n == 0) return -1;
  if (n > 1) {
    return Error{-EINVAL, "socket activation passed " + std::to_string(n) +
                              " sockets; kronopd takes one, for the client port "
                              "(one ListenStream= in kronopd.socket)"};
  }
  const int fd = SD_LISTEN_FDS_START;
  if (::sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0) {
    return Error{-EINVAL,
                 "socket activation passed a descriptor that is not a listening stream socket"};
  }
  return fd;
}

ServiceNotifier::ServiceNotifier(uv_loop_t *loop, Hooks hooks, uint64_t status_ms)
    : loop_(loop), hooks_(std::move(hooks)), status_ms_(status_ms) {
  const char *socket = std::getenv("NOTIFY_SOCKET");
  enabled_ = socket != nullptr && socket[0] != '\0';
  uint64_t usec = 0;
  // > 0: WATCHDOG_USEC is set (and WATCHDOG_PID, when set, is this process).
  if (enabled_ && sd_watchdog_enabled(0, &usec) > 0) watchdog_usec_ = usec;
}

ServiceNotifier::~ServiceNotifier() = default;

void ServiceNotifier::send(const std::string &state) {
  if (!enabled_) return;
  int rc = sd_notify(0, state.c_str());
  if (rc < 0) KLOG_WARN("event=sd_notify_failed error=%s", log::q(std::strerror(-rc)).c_str());
}

void ServiceNotifier::ready() {
  if (!enabled_) return;
  std::string state = "READY=1\nMAINPID=" + std::to_string(::getpid());
  if (hooks_.status) state += "\nSTATUS=" + hooks_.status();
  send(state);
  uv_timer_init(loop_, &status_timer_);
  status_timer_.data = this;
  uv_timer_start(&status_timer_, on_status, status_ms_, status_ms_);
  uv_timer_init(loop_, &watchdog_timer_);
  watchdog_timer_.data = this;
  if (watchdog_usec_ > 0) {
    // Half the interval, as sd_watchdog_enabled(3) advises; at least 1 ms.
    const uint64_t ms = std::max<uint64_t>(watchdog_usec_ / 2000, 1);
    if (hooks_.loops_alive) hooks_.loops_alive();  // the first probes
    uv_timer_start(&watchdog_timer_, on_watchdog, ms, ms);
  }
  timers_open_ = true;
  KLOG_INFO("event=systemd_ready notify=READY=1 watchdog_ms=%llu",
            static_cast<unsigned long long>(watchdog_usec_ / 1000));
}

void ServiceNotifier::stopping() { send("STOPPING=1\nSTATUS=stopping"); }

void ServiceNotifier::close() {
  if (!timers_open_) return;
  timers_open_ = false;
  uv_close(reinterpret_cast<uv_handle_t *>(&status_timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t *>(&watchdog_timer_), nullptr);
}

void ServiceNotifier::on_status(uv_timer_t *t) {
  auto *self = static_cast<ServiceNotifier *>(t->data);
  if (self->hooks_.status) self->send("STATUS=" + self->hooks_.status());
}

void ServiceNotifier::on_watchdog(uv_timer_t *t) {
  auto *self = static_cast<ServiceNotifier *>(t->data);
  // This runs on the main loop, so a wedged main loop sends nothing; the I/O loops answer
  // probes posted to them, so a wedged I/O loop stops the pings too.
  if (self->hooks_.loops_alive && !self->hooks_.loops_alive()) {
    if (!self->warned_) {
      KLOG_WARN("event=watchdog_withheld reason=\"an I/O loop has not answered\" for_ms=%llu",
                static_cast<unsigned long long>(self->watchdog_usec_ / 2000));
      self->warned_ = true;
    }
    return;
  }
  self->warned_ = false;
  self->send("WATCHDOG=1");
}

}  // namespace kronop::daemon
