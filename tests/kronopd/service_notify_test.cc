// kronopd under systemd's notify protocol, against a listener socket standing in for the
// service manager (NOTIFY_SOCKET, WATCHDOG_USEC as systemd sets them for Type=notify with
// WatchdogSec=): READY=1 with MAINPID and STATUS once serving, WATCHDOG=1 at half the
// interval while the process runs, none while it is stopped, STOPPING=1 on SIGTERM.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
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
  ASSERT_EQ(::ptrace(PTRACE_SEIZE, io, nullptr, nullptr), 0) << std::strerror(errno);
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

  ASSERT_EQ(::ptrace(PTRACE_DETACH, io, nullptr, nullptr), 0) << std::strerror(errno);
  EXPECT_GE(manager.count("WATCHDOG=1", 1000), 3);
  EXPECT_EQ(stop(SIGTERM), 0) << output();
}

TEST_F(ServiceNotifyTest, OutsideSystemdNothingIsSent) {
  ::unsetenv("NOTIFY_SOCKET");
  ASSERT_TRUE(start()) << output();
  EXPECT_EQ(output().find("event=systemd_ready"), std::string::npos);
  EXPECT_EQ(stop(SIGTERM), 0);
}

}  // namespace
}  // namespace kronop::test
