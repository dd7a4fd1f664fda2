// The listening socket; see acceptor.h.
#include "acceptor.h"

#include <fcntl.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "http.h"
#include "kronop/clock.h"
#include "log.h"

namespace kronop::daemon {

namespace {
// Accepted per readiness callback, so one loop turn does not go to a connection storm only.
constexpr int kAcceptsPerWakeup = 128;
// When the process is out of file descriptors, accepting pauses this long: the pending
// connections stay in the kernel's backlog, and the loop does not spin on a listener that
// stays readable.
constexpr uint64_t kBackoffMs = 100;
}  // namespace

PeerLimit::Key PeerLimit::key_of(const sockaddr_storage &addr) {
  Key k{};
  if (addr.ss_family == AF_INET6) {
    std::memcpy(k.data(), &reinterpret_cast<const sockaddr_in6 *>(&addr)->sin6_addr, 16);
  } else if (addr.ss_family == AF_INET) {
    k[10] = 0xff;  // ::ffff:a.b.c.d, as IPv6 writes an IPv4 address
    k[11] = 0xff;
    std::memcpy(k.data() + 12, &reinterpret_cast<const sockaddr_in *>(&addr)->sin_addr, 4);
  }
  return k;
}

bool PeerLimit::admit(const Key &k) {
  if (max_ == 0) return true;
  std::lock_guard<std::mutex> lock(mutex_);
  uint32_t &n = counts_[k];
  if (n >= max_) {
    refused_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  ++n;
  return true;
}

void PeerLimit::release(const Key &k) {
  if (max_ == 0) return;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = counts_.find(k);
  if (it == counts_.end()) return;
  if (--it->second == 0) counts_.erase(it);
}

std::string address_name(const sockaddr_storage &addr) {
  char host[INET6_ADDRSTRLEN] = "";
  uv_ip_name(reinterpret_cast<const sockaddr *>(&addr), host, sizeof host);
  const bool v6 = addr.ss_family == AF_INET6;
  const uint16_t port = ntohs(v6 ? reinterpret_cast<const sockaddr_in6 *>(&addr)->sin6_port
                                 : reinterpret_cast<const sockaddr_in *>(&addr)->sin_port);
  // Appended piece by piece: `"[" + std::string(host)` inserts at the front, which GCC 12
  // at -O3 (CMake's Release) reports as an overlapping memcpy, a false -Wrestrict (GCC bug
  // 105329).
  std::string name = v6 ? "[" : "";
  name += host;
  name += v6 ? "]:" : ":";
  name += std::to_string(port);
  return name;
}

Acceptor::Acceptor(uv_loop_t *loop, std::string bind, int port, HandOff hand_off, PeerLimit *limit)
    : loop_(loop),
      bind_(std::move(bind)),
      requested_port_(port),
      hand_off_(std::move(hand_off)),
      limit_(limit) {}

Acceptor::~Acceptor() {
  if (fd_ >= 0 && !open_) ::close(fd_);
}

Result<bool> Acceptor::listen(int inherited_fd) {
  if (inherited_fd >= 0) {
    const int flags = ::fcntl(inherited_fd, F_GETFL);
    if (flags < 0 || ::fcntl(inherited_fd, F_SETFL, flags | O_NONBLOCK) != 0 ||
        ::fcntl(inherited_fd, F_SETFD, FD_CLOEXEC) != 0) {
      return Error{-errno, std::string("inherited socket: ") + std::strerror(errno)};
    }
    fd_ = inherited_fd;
    return start_polling();
  }
  sockaddr_storage addr{};
  socklen_t addr_len = sizeof(sockaddr_in);
  int rc = uv_ip4_addr(bind_.c_str(), requested_port_, reinterpret_cast<sockaddr_in *>(&addr));
  if (rc != 0) {
    rc = uv_ip6_addr(bind_.c_str(), requested_port_, reinterpret_cast<sockaddr_in6 *>(&addr));
    addr_len = sizeof(sockaddr_in6);
  }
  if (rc != 0) return Error{rc, "invalid --bind address '" + bind_ + "'"};
  const std::string where = bind_ + ":" + std::to_string(requested_port_);
  fd_ = ::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return Error{-errno, "cannot listen on " + where + ": " + std::strerror(errno)};
  int one = 1;
  // A restarted daemon can bind while the old connections sit in TIME_WAIT.
  ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd_, reinterpret_cast<const sockaddr *>(&addr), addr_len) != 0 ||
      ::listen(fd_, 4096) != 0) {
    int err = errno;
    ::close(fd_);
    fd_ = -1;
    return Error{-err, "cannot listen on " + where + ": " + std::strerror(err)};
  }
  return start_polling();
}

Result<bool> Acceptor::start_polling() {
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  if (::getsockname(fd_, reinterpret_cast<sockaddr *>(&bound), &len) == 0) {
    port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6 *>(&bound)->sin6_port
                                              : reinterpret_cast<sockaddr_in *>(&bound)->sin_port);
    address_ = address_name(bound);
  }
  uv_poll_init(loop_, &poll_, fd_);
  poll_.data = this;
  uv_timer_init(loop_, &backoff_);
  backoff_.data = this;
  uv_poll_start(&poll_, UV_READABLE, on_readable);
  open_ = true;
  return true;
}

void Acceptor::close() {
  if (!open_) return;
  open_ = false;
  uv_close(reinterpret_cast<uv_handle_t *>(&backoff_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t *>(&poll_), [](uv_handle_t *h) {
    auto *self = static_cast<Acceptor *>(h->data);
    ::close(self->fd_);
    self->fd_ = -1;
  });
}

void Acceptor::on_readable(uv_poll_t *poll, int status, int) {
  auto *self = static_cast<Acceptor *>(poll->data);
  if (status < 0) {
    KLOG_WARN("event=accept_failed error=%s", log::q(uv_strerror(status)).c_str());
    return;
  }
  self->accept_some();
}

void Acceptor::accept_some() {
  for (int i = 0; i < kAcceptsPerWakeup; ++i) {
    sockaddr_storage peer{};
    socklen_t peer_len = sizeof peer;
    int fd = ::accept4(fd_, reinterpret_cast<sockaddr *>(&peer), &peer_len,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      const PeerLimit::Key key = PeerLimit::key_of(peer);
      if (limit_ != nullptr && !limit_->admit(key)) {
        // Over --max-connections-per-ip: say so in HTTP (every client starts with a request)
        // and hang up. Best effort: a full socket buffer just gets the close.
        static const std::string refusal =
            http::error_response(429, "too many connections from your address", true);
        (void)!::send(fd, refusal.data(), refusal.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
        ::close(fd);
        continue;
      }
      hand_off_(fd, key);
      continue;
    }
    const int err = errno;
    if (err == EAGAIN || err == EWOULDBLOCK) return;
    if (err == EINTR || err == ECONNABORTED || err == EPROTO) continue;
    ++accept_errors_;
    const uint64_t now = monotonic_ms();
    if (now - last_warning_ms_ >= 10'000 || last_warning_ms_ == 0) {
      last_warning_ms_ = now;
      KLOG_WARN("event=accept_failed error=%s%s", log::q(std::strerror(err)).c_str(),
                err == EMFILE || err == ENFILE
                    ? " hint=\"file descriptor limit reached: raise LimitNOFILE / ulimit -n\""
                    : "");
    }
    // Pause, and try again later: the connections wait in the backlog meanwhile.
    uv_poll_stop(&poll_);
    uv_timer_start(
        &backoff_,
        [](uv_timer_t *t) {
          auto *self = static_cast<Acceptor *>(t->data);
          if (self->open_) uv_poll_start(&self->poll_, UV_READABLE, on_readable);
        },
        kBackoffMs, 0);
    return;
  }
}

}  // namespace kronop::daemon
