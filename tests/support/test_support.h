// Helpers shared by Kronop's tests: unique names, temporary directories, child processes.
#pragma once

#include <sys/types.h>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "stored_message.h"

// Defined in the sanitized builds (ASan, TSan), which run several times slower: tests that
// move many records use fewer there.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define KRONOP_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define KRONOP_TEST_SANITIZED 1
#endif
#endif

namespace kronop::test {

// A topic's messages in the durable log at `path`, in seq order, as kronopctl reads them
// (a failure to read is a test failure).
std::vector<StoredMessage> logged_messages(const std::string &path, const std::string &topic);
// How many messages of `topic` the log holds, in blocks and in the journal (cheaper than
// logged_messages: only the journal's are decoded).
int64_t logged_count(const std::string &path, const std::string &topic);
// One integer from the SQLite database at `path` (the first column of the first row; -1:
// none), read as kronopctl or an operator would (another connection, read-only).
int64_t query(const std::string &path, const std::string &sql);

// A segment name no other test (or test run) uses; removed by the SegmentGuard.
std::string unique_name(const std::string &prefix);

struct SegmentGuard {
  std::string name;
  explicit SegmentGuard(std::string n);
  ~SegmentGuard();
};

// A fresh directory under /tmp, removed (recursively) when destroyed.
struct TempDir {
  std::string path;
  TempDir();
  ~TempDir();
};

// Runs fn() in a forked child that exits with fn's return value.
pid_t fork_child(const std::function<int()> &fn);
// Waits for a child, at most 120 s; returns its exit status, or 128 + signal, or -2 when it
// was still running then (it is killed, and a line says so).
int wait_child(pid_t pid);

// Starts a program with arguments; stdout and stderr go to `log_path` (when not empty), or
// stderr to `err_path` when that is given. `in_child` runs in the child just before exec
// (e.g. to pass it a descriptor).
pid_t spawn(const std::vector<std::string> &argv, const std::string &log_path = "",
            const std::string &err_path = "", const std::function<void()> &in_child = {});
// Runs a program to completion, capturing stdout (and stderr, when `err` is not null);
// returns the exit status (128 + SIGKILL for one still running after kRunCaptureTimeout,
// which is then killed).
inline constexpr std::chrono::seconds kRunCaptureTimeout{120};
int run_capture(const std::vector<std::string> &argv, std::string *out, std::string *err = nullptr);

// A TCP connection to port `port` on 127.0.0.1 (-1 when refused).
int connect_to(int port);
bool send_all(int fd, const std::string &bytes);
// Reads what arrives within `ms` (until the peer closes, or `until` is in what was read).
std::string receive(int fd, int ms, const std::string &until = "");
// POST a JSON body on a kronopd's client port (REST API); the whole response.
std::string http_post(int port, const std::string &path, const std::string &body);
// The client port a kronopd's output names ("clients=ws://ADDR:PORT/ws"); 0 when none.
int client_port(const std::string &output);

// Polls cond() every few milliseconds until it is true or the timeout passes.
bool eventually(const std::function<bool()> &cond,
                std::chrono::milliseconds timeout = std::chrono::seconds(10));

// A kronopd of one test's own, as a process: its own segment (a unique name), data directory,
// control socket (DIR/ctl.sock) and output (DIR/kronopd.log). Killed with SIGKILL, and its
// segment removed, when destroyed. Test fixtures derive from it (with ::testing::Test).
struct Kronopd {
  explicit Kronopd(const std::string &name_prefix);
  ~Kronopd();
  Kronopd(const Kronopd &) = delete;
  Kronopd &operator=(const Kronopd &) = delete;

  // Starts kronopd with 8 rings of ring_size bytes, an ephemeral client port and `extra`
  // arguments;
  // true once it answers on its control socket (answers, not necessarily healthy: right
  // after a restart under load the rings are full, which health rightly calls degraded).
  // `in_child` runs in the child before exec (e.g. to set its resource limits).
  bool start(const std::vector<std::string> &extra = {},
             const std::function<void()> &in_child = {});
  // Sends `sig` and waits; the exit status (128 + signal when killed), -1 when not running.
  int stop(int sig);
  // `kronopctl stats` succeeds.
  bool answers() const;
  // What kronopd wrote so far.
  std::string output() const;

  TempDir dir;
  std::string shm, socket, log;
  std::string ring_size = "65536";  // before the first start (the segment keeps its size)
  pid_t pid = -1;
};

}  // namespace kronop::test
