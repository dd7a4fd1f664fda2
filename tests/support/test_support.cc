#include "test_support.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>

#include "kronop/ipc/segment.h"

#include <gtest/gtest.h>

#include <sqlite3.h>

#include "log_reader.h"

namespace kronop::test {

int64_t query(const std::string &path, const std::string &sql) {
  sqlite3 *db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt *st = nullptr;
  int64_t v = -1;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW) {
    v = sqlite3_column_int64(st, 0);
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

std::vector<StoredMessage> logged_messages(const std::string &path, const std::string &topic) {
  std::vector<StoredMessage> out;
  auto reader = LogReader::open(path);
  EXPECT_TRUE(reader.ok()) << reader.error().message;
  if (!reader.ok()) return out;
  LogQuery q;
  q.topic = topic;
  auto n = reader.value()->read(q, [&](const StoredMessage &m) {
    out.push_back(m);
    return true;
  });
  EXPECT_TRUE(n.ok()) << n.error().message;
  return out;
}

int64_t logged_count(const std::string &path, const std::string &topic) {
  const std::string name = "'" + topic + "'";
  const int64_t blocked =
      query(path, "SELECT coalesce(max(blocked_seq), -1) FROM topics WHERE name = " + name);
  if (blocked < 0) return 0;
  const int64_t in_blocks = query(path,
                                  "SELECT coalesce(sum(b.count), 0) FROM blocks b JOIN topics t "
                                  "ON t.id = b.topic_id WHERE t.name = " +
                                      name);
  // The journal's: the reader's messages after blocked_seq (no block holds any).
  auto reader = LogReader::open(path);
  EXPECT_TRUE(reader.ok()) << reader.error().message;
  if (!reader.ok()) return in_blocks;
  LogQuery q;
  q.topic = topic;
  q.after_seq = static_cast<uint64_t>(blocked);
  auto n = reader.value()->read(q, [](const StoredMessage &) { return true; });
  EXPECT_TRUE(n.ok()) << n.error().message;
  return in_blocks + (n.ok() ? static_cast<int64_t>(n.value()) : 0);
}

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
  // Bounded, as run_capture is: a child that hangs fails its test at once, saying so,
  // instead of holding it until ctest's timeout.
  constexpr auto kMostWait = std::chrono::seconds(120);
  const auto give_up = std::chrono::steady_clock::now() + kMostWait;
  int status = 0;
  for (;;) {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) return -1;
    if (std::chrono::steady_clock::now() >= give_up) {
      std::fprintf(stderr, "test: child %d still running after 120 s: killed\n",
                   static_cast<int>(pid));
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      return -2;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
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

// In the child: `path` (appended to) as file descriptor `target`.
void redirect(const std::string &path, int target) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd >= 0) {
    ::dup2(fd, target);
    ::close(fd);
  }
}
}  // namespace

pid_t spawn(const std::vector<std::string> &argv, const std::string &log_path,
            const std::string &err_path, const std::function<void()> &in_child) {
  auto args = c_argv(argv);
  pid_t pid = ::fork();
  if (pid == 0) {
    if (!log_path.empty()) {
      redirect(log_path, 1);
      redirect(err_path.empty() ? log_path : err_path, 2);
    }
    if (in_child) in_child();
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  return pid;
}

int run_capture(const std::vector<std::string> &argv, std::string *out, std::string *err) {
  int fds[2], err_fds[2] = {-1, -1};
  if (::pipe(fds) != 0) return -1;
  if (err != nullptr && ::pipe(err_fds) != 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return -1;
  }
  auto args = c_argv(argv);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], 1);
    if (err != nullptr) ::dup2(err_fds[1], 2);
    for (int fd : {fds[0], fds[1], err_fds[0], err_fds[1]}) {
      if (fd >= 0) ::close(fd);
    }
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  if (err != nullptr) ::close(err_fds[1]);
  // Both pipes at once: a child blocked writing one while we wait on the other never ends.
  std::vector<pollfd> open_fds{{fds[0], POLLIN, 0}};
  if (err != nullptr) open_fds.push_back({err_fds[0], POLLIN, 0});
  char buf[4096];
  // A program that hangs fails its test instead of holding up the whole run.
  const auto deadline = std::chrono::steady_clock::now() + kRunCaptureTimeout;
  while (!open_fds.empty()) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    const int ready = left.count() > 0
                          ? ::poll(open_fds.data(), open_fds.size(), static_cast<int>(left.count()))
                          : 0;
    if (ready == 0) {
      ::kill(pid, SIGKILL);
      std::fprintf(stderr, "run_capture: %s still running after %lld s: killed\n", args[0],
                   static_cast<long long>(kRunCaptureTimeout.count()));
      break;
    }
    if (ready < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (std::size_t i = open_fds.size(); i-- > 0;) {
      if (open_fds[i].revents == 0) continue;
      const ssize_t n = ::read(open_fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        std::string *to = open_fds[i].fd == fds[0] ? out : err;
        if (to != nullptr) to->append(buf, static_cast<std::size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        ::close(open_fds[i].fd);
        open_fds.erase(open_fds.begin() + static_cast<std::ptrdiff_t>(i));
      }
    }
  }
  for (const pollfd &p : open_fds) ::close(p.fd);
  return wait_child(pid);
}

Kronopd::Kronopd(const std::string &name_prefix)
    : shm(unique_name(name_prefix)),
      socket(dir.path + "/ctl.sock"),
      log(dir.path + "/kronopd.log") {
  ipc::Segment::remove(shm);
}

Kronopd::~Kronopd() {
  stop(SIGKILL);
  ipc::Segment::remove(shm);
}

bool Kronopd::start(const std::vector<std::string> &extra, const std::function<void()> &in_child) {
  std::vector<std::string> argv{KRONOPD_BIN, "--data-dir",       dir.path,  "--shm-name",
                                shm,         "--control-socket", socket,    "--rings",
                                "8",         "--ring-size",      ring_size, "--port",
                                "0"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  pid = spawn(argv, log, "", in_child);
  return pid > 0 && eventually([&] { return answers(); });
}

int Kronopd::stop(int sig) {
  if (pid <= 0) return -1;
  ::kill(pid, sig);
  const int rc = wait_child(pid);
  pid = -1;
  return rc;
}

bool Kronopd::answers() const {
  return run_capture({KRONOPCTL_BIN, "--socket", socket, "stats"}, nullptr) == 0;
}

std::string Kronopd::output() const {
  std::ifstream f(log);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

bool eventually(const std::function<bool()> &cond, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return cond();
}

// A TCP connection to the daemon's client port on 127.0.0.1.
int connect_to(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool send_all(int fd, const std::string &bytes) {
  for (std::size_t off = 0; off < bytes.size();) {
    ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<std::size_t>(n);
  }
  return true;
}

// Reads what arrives within `ms` (until the peer closes, or `until` is in what was read).
std::string receive(int fd, int ms, const std::string &until) {
  std::string in;
  char buf[4096];
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (until.empty() || in.find(until) == std::string::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    pollfd p{fd, POLLIN, 0};
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) break;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    in.append(buf, static_cast<std::size_t>(n));
  }
  return in;
}

// POST a JSON body on the client port (REST API); the whole response.
std::string http_post(int port, const std::string &path, const std::string &body) {
  int fd = connect_to(port);
  if (fd < 0) return {};
  send_all(fd, "POST " + path +
                   " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
                   "Content-Length: " + std::to_string(body.size()) +
                   "\r\nConnection: close\r\n\r\n" + body);
  std::string response = receive(fd, 5000);
  ::close(fd);
  return response;
}

int client_port(const std::string &output) {
  const std::string marker = "clients=ws://";
  const std::size_t at = output.find(marker);
  if (at == std::string::npos) return 0;
  const std::size_t colon = output.find(':', at + marker.size());
  if (colon == std::string::npos) return 0;
  return std::atoi(output.c_str() + colon + 1);
}

}  // namespace kronop::test
