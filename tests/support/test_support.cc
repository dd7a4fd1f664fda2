#include "test_support.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "kronop/ipc/segment.h"

namespace kronop::test {

std::string unique_name(const std::string &prefix) {
  static std::atomic<int> counter{0};
  return prefix + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

SegmentGuard::SegmentGuard(std::string n) : name(std::move(n)) { ipc::Segment::remove(name); }
SegmentGuard::~SegmentGuard() { ipc::Segment::remove(name); }

TempDir::TempDir() {
  char tmpl[] = "/tmp/kronop-test-XXXXXX";
  char *p = ::mkdtemp(tmpl);
  path = p != nullptr ? p : "/tmp";
}
TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

pid_t fork_child(const std::function<int()> &fn) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int rc = fn();
    std::fflush(nullptr);
    ::_exit(rc);
  }
  return pid;
}

int wait_child(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

namespace {
std::vector<char *> c_argv(const std::vector<std::string> &argv) {
  std::vector<char *> out;
  for (const auto &a : argv) out.push_back(const_cast<char *>(a.c_str()));
  out.push_back(nullptr);
  return out;
}
}  // namespace

pid_t spawn(const std::vector<std::string> &argv, const std::string &log_path) {
  auto args = c_argv(argv);
  pid_t pid = ::fork();
  if (pid == 0) {
    if (!log_path.empty()) {
      int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
        ::close(fd);
      }
    }
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  return pid;
}

int run_capture(const std::vector<std::string> &argv, std::string *out) {
  int fds[2];
  if (::pipe(fds) != 0) return -1;
  auto args = c_argv(argv);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::close(fds[0]);
    ::close(fds[1]);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) {
    if (out != nullptr) out->append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  return wait_child(pid);
}

bool eventually(const std::function<bool()> &cond, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return cond();
}

}  // namespace kronop::test
