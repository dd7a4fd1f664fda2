// kronopd under systemd's notify protocol, against a listener socket standing in for the
// service manager (NOTIFY_SOCKET, WATCHDOG_USEC as systemd sets them for Type=notify with
// WatchdogSec=): READY=1 with MAINPID and STATUS once serving, WATCHDOG=1 at half the
// interval while the process runs, none while it is stopped, STOPPING=1 on SIGTERM.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "support/test_support.h"

namespace kronop::test {
namespace {

class NotifyListener {
 public:
  explicit NotifyListener(const std::string &path) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    path.copy(a.sun_path, sizeof a.sun_path - 1);
    ok_ = fd_ >= 0 && ::bind(fd_, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0;
  }
  ~NotifyListener() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool ok() const { return ok_; }
  // The next datagram, or "" after `ms` without one.
  std::string next(int ms) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, ms) != 1) return "";
    char buf[4096];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "";
  }
  // Datagrams received within `ms` that contain `what`.
  int count(const std::string &what, int ms) {
    int n = 0;
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < until) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now());
      std::string m = next(static_cast<int>(std::max<int64_t>(left.count(), 1)));
      if (m.find(what) != std::string::npos) ++n;
    }
    return n;
  }

 private:
  int fd_ = -1;
  bool ok_ = false;
};

class ServiceNotifyTest : public ::testing::Test, public Kronopd {
 public:
  ServiceNotifyTest() : Kronopd("kronop-notify") {}
};

TEST_F(ServiceNotifyTest, ReadyStatusWatchdogAndStopping) {
  const std::string path = dir.path + "/notify.sock";
  NotifyListener manager(path);
  ASSERT_TRUE(manager.ok());
  // As systemd sets them for the service's main process (kronopd reads them at start).
  ::setenv("NOTIFY_SOCKET", path.c_str(), 1);
  ::setenv("WATCHDOG_USEC", "200000", 1);  // pings every 100 ms
  ::unsetenv("WATCHDOG_PID");
  const bool started = start();
  ::unsetenv("NOTIFY_SOCKET");
  ::unsetenv("WATCHDOG_USEC");
  ASSERT_TRUE(started) << output();

  std::string ready;
  for (int i = 0; i < 50 && ready.find("READY=1") == std::string::npos; ++i)
    ready = manager.next(100);
  ASSERT_NE(ready.find("READY=1"), std::string::npos) << ready << output();
  EXPECT_NE(ready.find("MAINPID=" + std::to_string(pid)), std::string::npos) << ready;
  EXPECT_NE(ready.find("STATUS=0 connections"), std::string::npos) << ready;

  // About 10 pings a second while it runs (at least 5 on a busy machine).
  EXPECT_GE(manager.count("WATCHDOG=1", 1000), 5);

  // A process that does not run does not ping: systemd would kill and restart it.
  ASSERT_EQ(::kill(pid, SIGSTOP), 0);
  manager.count("WATCHDOG=1", 150);  // what was sent just before the stop
  EXPECT_EQ(manager.count("WATCHDOG=1", 600), 0);
  ASSERT_EQ(::kill(pid, SIGCONT), 0);
  EXPECT_GE(manager.count("WATCHDOG=1", 1000), 3);

  ::kill(pid, SIGTERM);
  EXPECT_GE(manager.count("STOPPING=1", 3000), 1);
  EXPECT_EQ(stop(SIGTERM), 0) << output();
}

// The thread of `pid` named `name` (/proc/PID/task/TID/comm), or 0.
pid_t thread_named(pid_t pid, const std::string &name) {
  const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
  std::error_code ec;
  for (const auto &task : std::filesystem::directory_iterator(tasks, ec)) {
    std::string comm;
    std::getline(std::ifstream(task.path() / "comm"), comm);
    if (comm == name) return static_cast<pid_t>(std::stol(task.path().filename().string()));
  }
  return 0;
}

// One I/O loop wedged (its thread stopped from outside with ptrace, the rest of kronopd
// running): the main loop still answers, but withholds WATCHDOG=1, so systemd would kill and
// restart kronopd after WatchdogSec. The pings come back once the loop runs again.
TEST_F(ServiceNotifyTest, AWedgedIoLoopStopsTheWatchdogPings) {
  const std::string path = dir.path + "/notify.sock";
  NotifyListener manager(path);
  ASSERT_TRUE(manager.ok());
  ::setenv("NOTIFY_SOCKET", path.c_str(), 1);
  ::setenv("WATCHDOG_USEC", "200000", 1);
  ::unsetenv("WATCHDOG_PID");
  const bool started = start({"--io-threads", "2"});
  ::unsetenv("NOTIFY_SOCKET");
  ::unsetenv("WATCHDOG_USEC");
  ASSERT_TRUE(started) << output();
  EXPECT_GE(manager.count("WATCHDOG=1", 1000), 5);

  pid_t io = 0;
  ASSERT_TRUE(eventually([&] { return (io = thread_named(pid, "kronop-io-1")) != 0; }));
  if (::ptrace(PTRACE_SEIZE, io, nullptr, nullptr) != 0) {
    if (errno == EPERM) GTEST_SKIP() << "ptrace is not allowed here: cannot wedge the loop";
    FAIL() << "ptrace: " << std::strerror(errno);
  }
  ASSERT_EQ(::ptrace(PTRACE_INTERRUPT, io, nullptr, nullptr), 0) << std::strerror(errno);
  int status = 0;
  ASSERT_EQ(::waitpid(io, &status, __WALL), io);
  ASSERT_TRUE(WIFSTOPPED(status));

  manager.count("WATCHDOG=1", 250);  // answers to probes the loop took before it stopped
  EXPECT_EQ(manager.count("WATCHDOG=1", 800), 0);
  EXPECT_TRUE(answers()) << "the main loop (control socket) keeps serving";
  EXPECT_TRUE(eventually([&] {
    return output().find("event=watchdog_withheld") != std::string::npos;
  })) << output();

  // A connections request waits for every loop's part without blocking the main loop:
  // stats answer meanwhile, and the request fails after 2 s naming the wedged loop.
  const std::string conn_err = dir.path + "/connections.err";
  const auto asked = std::chrono::steady_clock::now();
  const pid_t conn = test::spawn({KRONOPCTL_BIN, "--socket", socket, "connections"}, conn_err);
  ::usleep(300'000);  // its request is in
  EXPECT_TRUE(answers()) << "stats while a connections request waits";
  EXPECT_LT(std::chrono::steady_clock::now() - asked, std::chrono::milliseconds(1500))
      << "stats waited for the connections request";
  EXPECT_EQ(test::wait_child(conn), 1);
  std::string err;
  std::getline(std::ifstream(conn_err), err, '\0');
  EXPECT_NE(err.find("I/O loop 1 did not answer within 2 s"), std::string::npos) << err;

  ASSERT_EQ(::ptrace(PTRACE_DETACH, io, nullptr, nullptr), 0) << std::strerror(errno);
  EXPECT_GE(manager.count("WATCHDOG=1", 1000), 3);
  EXPECT_EQ(stop(SIGTERM), 0) << output();
}

// An HTTP request on a new connection to 127.0.0.1:port; the connection.
int request_health(int port) {
  const int fd = test::connect_to(port);
  if (fd < 0) return -1;
  const std::string req = "GET /api/v1/system/health HTTP/1.1\r\nHost: x\r\n\r\n";
  if (::write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// The response's status line on `fd`, within `ms`.
std::string status_line(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  std::string got;
  char buf[512];
  while (got.find("\r\n") == std::string::npos && ::poll(&p, 1, ms) == 1) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, static_cast<std::size_t>(n));
  }
  return got.substr(0, got.find("\r\n"));
}

// Socket activation (kronopd.socket): kronopd serves the listening socket it is passed
// (LISTEN_FDS, LISTEN_PID) instead of binding --bind/--port. The socket outlives the
// daemon, so a client that connects while kronopd restarts waits in the backlog and is
// served by the next one instead of being refused.
TEST_F(ServiceNotifyTest, SocketActivationServesThePassedSocketAcrossARestart) {
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr *>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(listener, 128), 0);
  socklen_t len = sizeof a;
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr *>(&a), &len), 0);
  const int port = ntohs(a.sin_port);
  // As systemd execs the service: the socket as descriptor 3, the variables naming it.
  auto activated = [&] {
    ::dup2(listener, SD_LISTEN_FDS_START);  // dup2 clears FD_CLOEXEC on the copy
    ::setenv("LISTEN_FDS", "1", 1);
    ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
  };
  // --bind 192.0.2.1 (TEST-NET-1) cannot be bound here: kronopd must not try.
  const std::vector<std::string> argv{KRONOPD_BIN, "--data-dir",       dir.path,    "--shm-name",
                                      shm,         "--control-socket", socket,      "--rings",
                                      "8",         "--bind",           "192.0.2.1", "--port",
                                      "4999"};
  pid = spawn(argv, log, "", activated);
  ASSERT_TRUE(eventually([&] { return answers(); })) << output();
  int c = request_health(port);
  ASSERT_GE(c, 0);
  EXPECT_EQ(status_line(c, 5000), "HTTP/1.1 200 OK") << output();
  ::close(c);
  EXPECT_NE(output().find("event=socket_activated fd=3"), std::string::npos) << output();
  EXPECT_NE(output().find("clients=ws://127.0.0.1:" + std::to_string(port)), std::string::npos);

  // Down: a client connects and asks; it waits in the socket's backlog, not refused.
  ASSERT_EQ(stop(SIGTERM), 0) << output();
  c = request_health(port);
  ASSERT_GE(c, 0) << "refused while kronopd was down: " << std::strerror(errno);
  EXPECT_EQ(status_line(c, 300), "");
  pid = spawn(argv, log, "", activated);
  EXPECT_EQ(status_line(c, 10000), "HTTP/1.1 200 OK") << output();
  ::close(c);
  EXPECT_EQ(stop(SIGTERM), 0) << output();
  ::close(listener);
}

// More than one passed socket is refused with a message (exit 1).
TEST_F(ServiceNotifyTest, SocketActivationWithTwoSocketsIsRefused) {
  auto two = [] {
    const int a = ::socket(AF_INET, SOCK_STREAM, 0), b = ::socket(AF_INET, SOCK_STREAM, 0);
    ::listen(a, 1);
    ::listen(b, 1);
    ::dup2(a, SD_LISTEN_FDS_START);
    ::dup2(b, SD_LISTEN_FDS_START + 1);
    ::setenv("LISTEN_FDS", "2", 1);
    ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
  };
  pid = spawn({KRONOPD_BIN, "--data-dir", dir.path, "--shm-name", shm, "--control-socket", socket,
               "--rings", "8", "--port", "0"},
              log, "", two);
  EXPECT_EQ(stop(0), 1);
  EXPECT_NE(output().find("kronopd takes one"), std::string::npos) << output();
}

TEST_F(ServiceNotifyTest, OutsideSystemdNothingIsSent) {
  ::unsetenv("NOTIFY_SOCKET");
  ASSERT_TRUE(start()) << output();
  EXPECT_EQ(output().find("event=systemd_ready"), std::string::npos);
  EXPECT_EQ(stop(SIGTERM), 0);
}

}  // namespace
}  // namespace kronop::test
