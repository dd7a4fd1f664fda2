#include "control_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <cerrno>
#include <cstring>

#include "control_protocol.h"

namespace kronop::ctl {
namespace {

struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

bool wait_for(int fd, short events, int timeout_ms) {
  pollfd p{fd, events, 0};
  int rc;
  do {
    rc = ::poll(&p, 1, timeout_ms);
  } while (rc < 0 && errno == EINTR);
  return rc > 0;
}

}  // namespace

Result<kronop::v1::ControlResponse> call_daemon(const std::string &socket_path,
                                                const kronop::v1::ControlRequest &request,
                                                int timeout_ms) {
  sockaddr_un addr{};
  if (socket_path.size() >= sizeof addr.sun_path) {
    return Error{1, "control socket path is too long: " + socket_path};
  }
  Fd s{::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)};
  if (s.fd < 0) return Error{1, std::string("socket: ") + std::strerror(errno)};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  if (::connect(s.fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0) {
    const int e = errno;
    if (e == ENOENT) {
      return Error{1, "no control socket at " + socket_path + " (is kronopd running?)"};
    }
    if (e == ECONNREFUSED) {
      // The file is there but nobody listens: a daemon that died without removing it.
      return Error{1, "cannot connect to kronopd at " + socket_path + ": connection refused"};
    }
    if (e == EACCES || e == EPERM) {
      return Error{1, "cannot connect to kronopd at " + socket_path +
                          ": permission denied (run as root, the daemon's user, or a member "
                          "of its group)"};
    }
    return Error{1, "cannot connect to kronopd at " + socket_path + ": " + std::strerror(e)};
  }
  std::string body = request.SerializeAsString();
  uint32_t len = static_cast<uint32_t>(body.size());
  std::string out(reinterpret_cast<const char *>(&len), 4);
  out += body;
  for (std::size_t off = 0; off < out.size();) {
    ssize_t n = ::send(s.fd, out.data() + off, out.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Error{1, std::string("control socket write: ") + std::strerror(errno)};
    off += static_cast<std::size_t>(n);
  }
  std::string in;
  char buf[65536];
  for (;;) {
    if (in.size() >= 4) {
      uint32_t rlen = 0;
      std::memcpy(&rlen, in.data(), 4);
      if (rlen > kMaxControlMessage) return Error{1, "control response too large"};
      if (in.size() >= 4 + std::size_t{rlen}) {
        kronop::v1::ControlResponse response;
        if (!response.ParseFromArray(in.data() + 4, static_cast<int>(rlen))) {
          return Error{1, "malformed control response"};
        }
        return response;
      }
    }
    if (!wait_for(s.fd, POLLIN, timeout_ms)) {
      return Error{1, "kronopd did not answer within " + std::to_string(timeout_ms) + " ms"};
    }
    ssize_t n = ::recv(s.fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) {
      // What kronopd does to a peer that is not root, its user or in its group.
      return Error{1, "kronopd at " + socket_path +
                          " closed the connection without answering: permission denied for "
                          "this user?"};
    }
    if (n < 0) return Error{1, std::string("control socket read: ") + std::strerror(errno)};
    in.append(buf, static_cast<std::size_t>(n));
  }
}

}  // namespace kronop::ctl
