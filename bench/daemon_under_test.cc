// Starting, querying and stopping a private kronopd; see daemon_under_test.h.
#include "daemon_under_test.h"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "control_client.h"
#include "kronop/ipc/segment.h"

namespace kronop::bench {
namespace {

// What the SIGINT handler needs, kept where a signal handler may read it: the running
// daemon's pid and the path of its segment.
std::atomic<pid_t> running_daemon{-1};
char running_segment_path[256];

int wait_status(pid_t pid, int options) {
  int status = 0;
  pid_t rc;
  while ((rc = ::waitpid(pid, &status, options)) < 0 && errno == EINTR) {
  }
  if (rc == 0) return -1;  // WNOHANG: still running
  if (rc < 0) return 255;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 255;
}

std::string read_file(const std::string &path) {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// The value of a "Name:\tvalue" line of /proc/.../status, or 0.
uint64_t status_field(const std::string &status, const char *name) {
  const std::string key = std::string("\n") + name + ":";
  std::size_t at = status.find(key);
  if (at == std::string::npos) return 0;
  return std::strtoull(status.c_str() + at + key.size(), nullptr, 10);
}

}  // namespace

bool pin_to_cpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return ::sched_setaffinity(0, sizeof set, &set) == 0;
}

void kill_running_daemon_from_signal_handler() {
  pid_t pid = running_daemon.load();
  if (pid > 0) ::kill(pid, SIGKILL);
  if (running_segment_path[0] != '\0') ::unlink(running_segment_path);
}

Result<std::unique_ptr<DaemonUnderTest>> DaemonUnderTest::start(const DaemonOptions &options) {
  std::unique_ptr<DaemonUnderTest> d(new DaemonUnderTest(options));
  if (::mkdir(options.run_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Error{1, "cannot create " + options.run_dir + ": " + std::strerror(errno)};
  }
  std::vector<std::string> args = {options.kronopd_path,
                                   "--data-dir",
                                   options.run_dir,
                                   "--shm-name",
                                   options.shm_name,
                                   "--control-socket",
                                   d->socket_path(),
                                   "--log-level",
                                   "warning",
                                   "--port",
                                   std::to_string(options.port)};
  if (options.ring_size != 0) {
    args.insert(args.end(), {"--ring-size", std::to_string(options.ring_size)});
  }
  args.insert(args.end(), options.extra_args.begin(), options.extra_args.end());
  std::vector<char *> argv;
  for (auto &a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string log = d->log_path();
  ipc::Segment::remove(options.shm_name);
  std::snprintf(running_segment_path, sizeof running_segment_path, "/dev/shm/%s",
                options.shm_name.c_str());

  const pid_t driver = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return Error{1, std::string("fork: ") + std::strerror(errno)};
  if (pid == 0) {
    // If the benchmark dies, the daemon stops too (SIGTERM: it shuts down cleanly).
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != driver) ::_exit(1);
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
      ::dup2(fd, STDOUT_FILENO);
      ::dup2(fd, STDERR_FILENO);
    }
    // The affinity mask is inherited by exec and by every thread kronopd starts.
    if (options.cpu >= 0 && !pin_to_cpu(options.cpu)) ::_exit(126);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  d->pid_ = pid;
  running_daemon.store(pid);

  kronop::v1::ControlRequest health;
  health.mutable_health();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    if (int rc = wait_status(pid, WNOHANG); rc >= 0) {
      d->pid_ = -1;
      return Error{1, "kronopd exited with status " + std::to_string(rc) +
                          (rc == 127 ? " (cannot execute " + options.kronopd_path + ")" : "") +
                          "\n" + d->log_tail()};
    }
    auto r = ctl::call_daemon(d->socket_path(), health, 1000);
    if (r.ok() && r.value().has_health() && r.value().health().healthy()) break;
    if (std::chrono::steady_clock::now() > deadline) {
      return Error{1, "kronopd did not become healthy within 10 s\n" + d->log_tail()};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return d;
}

DaemonUnderTest::~DaemonUnderTest() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    wait_status(pid_, 0);
  }
  running_daemon.store(-1);
  running_segment_path[0] = '\0';
  ipc::Segment::remove(options_.shm_name);
}

Result<kronop::v1::DaemonStats> DaemonUnderTest::stats() const {
  kronop::v1::ControlRequest req;
  req.mutable_stats();
  auto r = ctl::call_daemon(socket_path(), req, 5000);
  if (!r.ok()) return r.error();
  if (!r.value().error().empty()) return Error{1, "kronopd: " + r.value().error()};
  return std::move(*r.value().mutable_stats());
}

Result<ProcessCpu> DaemonUnderTest::cpu() const { return process_cpu(pid_); }

uint64_t process_rss_bytes(pid_t pid) {
  std::string status = "\n";
  status += read_file("/proc/" + std::to_string(pid) + "/status");
  return status_field(status, "VmRSS") * 1024;  // reported in kB
}

uint64_t process_pss_bytes(pid_t pid) {
  std::string rollup = "\n";
  rollup += read_file("/proc/" + std::to_string(pid) + "/smaps_rollup");
  return status_field(rollup, "Pss") * 1024;  // reported in kB
}

Result<ProcessCpu> process_cpu(pid_t pid) {
  ProcessCpu out;
  const std::string proc = "/proc/" + std::to_string(pid);
  // Fields 14 and 15 (utime, stime) of /proc/PID/stat; the command name (field 2) may hold
  // spaces, so count from the last ')'.
  const std::string stat = read_file(proc + "/stat");
  std::size_t close = stat.rfind(')');
  if (close == std::string::npos) return Error{1, "cannot read " + proc + "/stat"};
  std::istringstream fields(stat.substr(close + 1));
  std::string field;
  uint64_t utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14) utime = std::strtoull(field.c_str(), nullptr, 10);
    if (i == 15) stime = std::strtoull(field.c_str(), nullptr, 10);
  }
  out.stat_ticks = utime + stime;

  DIR *tasks = ::opendir((proc + "/task").c_str());
  if (tasks == nullptr) return Error{1, "cannot list " + proc + "/task"};
  while (dirent *e = ::readdir(tasks)) {
    if (e->d_name[0] == '.') continue;
    const std::string task = proc + "/task/" + e->d_name;
    out.sched_ns += std::strtoull(read_file(task + "/schedstat").c_str(), nullptr, 10);
    std::string status = "\n";  // so that every field, the first too, follows a newline
    status += read_file(task + "/status");
    out.context_switches += status_field(status, "voluntary_ctxt_switches") +
                            status_field(status, "nonvoluntary_ctxt_switches");
  }
  ::closedir(tasks);
  return out;
}

Result<bool> DaemonUnderTest::stop() {
  if (pid_ <= 0) return Error{1, "kronopd is not running"};
  ::kill(pid_, SIGTERM);
  int rc = wait_status(pid_, 0);
  pid_ = -1;
  running_daemon.store(-1);
  if (rc != 0) {
    return Error{1, "kronopd exited with status " + std::to_string(rc) + "\n" + log_tail()};
  }
  return true;
}

std::string DaemonUnderTest::log_tail() const {
  std::string log = read_file(log_path());
  if (log.size() > 2000) log = "..." + log.substr(log.size() - 2000);
  return log.empty() ? "(kronopd logged nothing)" : "kronopd log:\n" + log;
}

}  // namespace kronop::bench
