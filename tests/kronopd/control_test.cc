// The control socket's bounds (kronopd/control.h), against a real kronopd over raw sockets:
// a peer that pipelines requests and never reads stalls itself without growing the
// daemon's memory (and gets every answer once it reads); a length prefix over the request
// limit is refused at once; a partial request is closed after the deadline while an idle
// connection stays; other clients are answered all the while.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <thread>

#include "control.h"
#include "kronop/v1/control.pb.h"
#include "support/test_support.h"

namespace kronop {
namespace {

using daemon::kControlRequestDeadlineMs;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

// A raw connection to the control socket.
struct Conn {
  int fd = -1;
  explicit Conn(const std::string &path) {
    fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    if (::connect(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  ~Conn() {
    if (fd >= 0) ::close(fd);
  }
  bool send_all(const std::string &bytes) const {
    for (std::size_t off = 0; off < bytes.size();) {
      const ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<std::size_t>(n);
    }
    return true;
  }
  // Reads until a whole response is in `in`, EOF (nullopt, *eof set) or the timeout (nullopt).
  std::optional<v1::ControlResponse> read_response(std::string &in, milliseconds timeout,
                                                   bool *eof = nullptr) const {
    const auto deadline = steady_clock::now() + timeout;
    for (;;) {
      if (in.size() >= 4) {
        uint32_t len = 0;
        std::memcpy(&len, in.data(), 4);
        if (in.size() >= 4 + std::size_t{len}) {
          v1::ControlResponse r;
          EXPECT_TRUE(r.ParseFromArray(in.data() + 4, static_cast<int>(len)));
          in.erase(0, 4 + std::size_t{len});
          return r;
        }
      }
      const auto left =
          std::chrono::duration_cast<milliseconds>(deadline - steady_clock::now()).count();
      pollfd p{fd, POLLIN, 0};
      if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) return std::nullopt;
      char buf[65536];
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) {
        if (eof != nullptr) *eof = true;
        return std::nullopt;
      }
      in.append(buf, static_cast<std::size_t>(n));
    }
  }
  // True when the daemon closes the connection within `timeout` (what it sent is skipped).
  bool closed_within(milliseconds timeout) const {
    std::string in;
    bool eof = false;
    const auto deadline = steady_clock::now() + timeout;
    while (!eof && steady_clock::now() < deadline) {
      read_response(in, std::chrono::duration_cast<milliseconds>(deadline - steady_clock::now()),
                    &eof);
    }
    return eof;
  }
};

std::string frame(const v1::ControlRequest &req) {
  const std::string body = req.SerializeAsString();
  const uint32_t len = static_cast<uint32_t>(body.size());
  return std::string(reinterpret_cast<const char *>(&len), 4) + body;
}

std::string stats_request() {
  v1::ControlRequest req;
  req.mutable_stats();
  return frame(req);
}

class ControlTest : public ::testing::Test, protected test::Kronopd {
 protected:
  ControlTest() : Kronopd("kronopd-control") {}

  // kronopd's resident memory, in KiB.
  long rss_kb() const {
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(f, line)) {
      if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    }
    return -1;
  }
};

// 300,000 stats requests pipelined by a peer that does not read: kronopd stops reading them
// once 64 replies wait, so its memory stays flat (it grew by 84 MB before), other clients
// are answered, and the peer gets every answer, in order, once it reads.
TEST_F(ControlTest, PipeliningPeerThatNeverReadsIsHeldBackNotBuffered) {
  ASSERT_TRUE(start()) << output();
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(answers());  // warm: the stats path's allocations
  const long before = rss_kb();
  ASSERT_GT(before, 0);

  constexpr std::size_t kRequests = 300'000;
  std::string all;
  for (std::size_t i = 0; i < kRequests; ++i) all += stats_request();
  Conn hog(socket);
  ASSERT_GE(hog.fd, 0);
  ASSERT_EQ(::fcntl(hog.fd, F_SETFL, O_NONBLOCK), 0);
  // Push as much as the daemon takes, for up to 3 s.
  std::size_t sent = 0;
  const auto until = steady_clock::now() + std::chrono::seconds(3);
  while (sent < all.size() && steady_clock::now() < until) {
    const ssize_t n = ::send(hog.fd, all.data() + sent, all.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
    } else {
      ASSERT_TRUE(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) << std::strerror(errno);
      std::this_thread::sleep_for(milliseconds(5));
    }
  }
  EXPECT_LT(sent, all.size()) << "kronopd read every request of a peer that never reads";
  EXPECT_TRUE(answers()) << "another client is not answered";
  const long after = rss_kb();
  std::printf("kronopd RSS %ld KiB before, %ld KiB with %zu request bytes pipelined\n", before,
              after, sent);
  EXPECT_LT(after - before, 8 * 1024)
      << "RSS grew from " << before << " KiB to " << after << " KiB; sent " << sent << " bytes";
  EXPECT_NE(output().find("event=control_backpressure"), std::string::npos) << output();

  // Reading, the peer gets an answer for every request it sent, and sends the rest.
  std::string in;
  std::size_t answered = 0;
  const std::size_t request_bytes = stats_request().size();
  const auto read_until = steady_clock::now() + std::chrono::seconds(120);
  while (answered < kRequests && steady_clock::now() < read_until) {
    pollfd p{hog.fd, static_cast<short>(POLLIN | (sent < all.size() ? POLLOUT : 0)), 0};
    ASSERT_GT(::poll(&p, 1, 5000), 0) << "stuck after " << answered << " answers";
    if ((p.revents & POLLOUT) != 0) {
      const ssize_t n = ::send(hog.fd, all.data() + sent, all.size() - sent, MSG_NOSIGNAL);
      if (n > 0) sent += static_cast<std::size_t>(n);
    }
    if ((p.revents & POLLIN) != 0) {
      char buf[65536];
      const ssize_t n = ::recv(hog.fd, buf, sizeof buf, 0);
      ASSERT_GT(n, 0) << "closed after " << answered << " answers";
      in.append(buf, static_cast<std::size_t>(n));
      // The whole answers received, then what is left of a partial one moved to the front
      // once (not once per answer: a sanitized build's memmoves are slow).
      std::size_t at = 0;
      while (in.size() - at >= 4) {
        uint32_t len = 0;
        std::memcpy(&len, in.data() + at, 4);
        if (in.size() - at < 4 + std::size_t{len}) break;
        v1::ControlResponse r;
        ASSERT_TRUE(r.ParseFromArray(in.data() + at + 4, static_cast<int>(len)));
        ASSERT_TRUE(r.has_stats()) << r.error();
        at += 4 + std::size_t{len};
        ++answered;
      }
      in.erase(0, at);
    }
  }
  EXPECT_EQ(sent, kRequests * request_bytes);
  EXPECT_EQ(answered, kRequests);
}

// A length prefix over the largest request is answered with an error and the connection
// closed at once, without waiting for a body (a 1 MiB prefix held a connection forever).
TEST_F(ControlTest, OversizedLengthPrefixIsRefusedAtOnce) {
  ASSERT_TRUE(start()) << output();
  for (const uint32_t len : {uint32_t{kMaxControlRequest + 1}, uint32_t{1} << 20, 0xffffffffu}) {
    Conn c(socket);
    ASSERT_GE(c.fd, 0);
    ASSERT_TRUE(c.send_all(std::string(reinterpret_cast<const char *>(&len), 4)));
    std::string in;
    const auto r = c.read_response(in, milliseconds(2000));
    ASSERT_TRUE(r.has_value()) << "no answer to a prefix of " << len << " bytes";
    EXPECT_EQ(r->error(), "control request of " + std::to_string(len) +
                              " bytes is over the limit of 4096 bytes");
    EXPECT_TRUE(c.closed_within(milliseconds(2000)));
  }
  // The largest request allowed is read and answered (a malformed one: an error, the
  // connection kept).
  Conn c(socket);
  const uint32_t len = kMaxControlRequest;
  ASSERT_TRUE(c.send_all(std::string(reinterpret_cast<const char *>(&len), 4) +
                         std::string(kMaxControlRequest, '\xff') + stats_request()));
  std::string in;
  auto r = c.read_response(in, milliseconds(2000));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->error(), "malformed control request");
  r = c.read_response(in, milliseconds(2000));
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->has_stats());
  EXPECT_NE(output().find("event=control_refused peer=\"pid "), std::string::npos) << output();
  EXPECT_TRUE(answers());
}

// A request that stalls halfway is closed after kControlRequestDeadlineMs; a connection
// that sent nothing (between requests) stays and is answered later; so are other clients.
TEST_F(ControlTest, StalledPartialRequestIsClosedAfterTheDeadline) {
  ASSERT_TRUE(start()) << output();
  Conn idle(socket);
  Conn stalled(socket);
  ASSERT_GE(idle.fd, 0);
  ASSERT_GE(stalled.fd, 0);
  // A whole request first: the deadline is per request, not per connection.
  std::string in;
  ASSERT_TRUE(stalled.send_all(stats_request()));
  ASSERT_TRUE(stalled.read_response(in, milliseconds(2000)).has_value());
  const std::string half = stats_request().substr(0, 5);
  ASSERT_TRUE(stalled.send_all(half));
  const auto sent_at = steady_clock::now();
  EXPECT_TRUE(answers());
  ASSERT_TRUE(stalled.closed_within(milliseconds(kControlRequestDeadlineMs + 3000)))
      << "a partial request held its connection";
  const auto waited = std::chrono::duration_cast<milliseconds>(steady_clock::now() - sent_at);
  EXPECT_GE(waited.count(), static_cast<long>(kControlRequestDeadlineMs) - 100);
  EXPECT_NE(output().find("event=control_closed peer=\"pid "), std::string::npos) << output();
  EXPECT_NE(output().find("reason=\"request incomplete after 5000 ms\" bytes=5"), std::string::npos)
      << output();

  // The idle connection is still served.
  ASSERT_TRUE(idle.send_all(stats_request()));
  in.clear();
  const auto r = idle.read_response(in, milliseconds(2000));
  ASSERT_TRUE(r.has_value()) << "the idle connection was closed";
  EXPECT_TRUE(r->has_stats());
  EXPECT_TRUE(answers());
}

}  // namespace
}  // namespace kronop
