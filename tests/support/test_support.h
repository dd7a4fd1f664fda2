// Helpers shared by Kronop's tests: unique names, temporary directories, child processes.
#pragma once

#include <sys/types.h>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace kronop::test {

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
// Waits for a child; returns its exit status, or 128 + signal.
int wait_child(pid_t pid);

// Starts a program with arguments; stdout and stderr go to `log_path` (when not empty).
pid_t spawn(const std::vector<std::string> &argv, const std::string &log_path = "");
// Runs a program to completion, capturing stdout; returns the exit status.
int run_capture(const std::vector<std::string> &argv, std::string *out);

// Polls cond() every few milliseconds until it is true or the timeout passes.
bool eventually(const std::function<bool()> &cond,
                std::chrono::milliseconds timeout = std::chrono::seconds(10));

}  // namespace kronop::test
