// A private kronopd for one benchmark run.
//
// Every run gets a daemon of its own: its own shared-memory segment, data directory and
// control socket, all named after the run, so that no run sees another's counters or
// histogram (the daemon has no "reset stats" request, and its latency histogram covers its
// whole life). The daemon is the real binary, started as a child process and talked to
// over its control socket exactly as kronopctl does. The destructor kills a daemon that is
// still running and removes its segment, so a failed run leaves nothing in /dev/shm.
#pragma once

#include <sys/types.h>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kronop/result.h"
#include "kronop/v1/control.pb.h"

namespace kronop::bench {

struct DaemonOptions {
  std::string kronopd_path;
  std::string run_dir;     // created here; holds the daemon's log, control socket and data
  std::string shm_name;    // unique per run
  int cpu = -1;            // pin every daemon thread to this CPU; -1: no pinning
  uint64_t ring_size = 0;  // bytes per ring; 0: the daemon's default
  int port = 0;            // the client port; 0: any free one (the kernel picks)
  std::vector<std::string> extra_args;
};

// CPU time a process (all of its threads) has used so far.
struct ProcessCpu {
  uint64_t stat_ticks = 0;        // utime + stime of /proc/PID/stat, in clock ticks
  uint64_t sched_ns = 0;          // sum of /proc/PID/task/*/schedstat run time, nanoseconds
  uint64_t context_switches = 0;  // voluntary + involuntary, summed over threads
};

// The CPU time of any process, from /proc.
Result<ProcessCpu> process_cpu(pid_t pid);
// Its resident set size (VmRSS), in bytes; 0 when it cannot be read.
uint64_t process_rss_bytes(pid_t pid);
// Its proportional set size (Pss of /proc/PID/smaps_rollup: each shared page divided among
// the processes that map it), in bytes; 0 when it cannot be read.
uint64_t process_pss_bytes(pid_t pid);

class DaemonUnderTest {
 public:
  // Starts kronopd and waits until it answers a health request.
  static Result<std::unique_ptr<DaemonUnderTest>> start(const DaemonOptions &options);
  ~DaemonUnderTest();
  DaemonUnderTest(const DaemonUnderTest &) = delete;
  DaemonUnderTest &operator=(const DaemonUnderTest &) = delete;

  Result<kronop::v1::DaemonStats> stats() const;
  Result<ProcessCpu> cpu() const;
  // SIGTERM, then waits; an exit status other than 0 is an error.
  Result<bool> stop();

  pid_t pid() const { return pid_; }
  const std::string &shm_name() const { return options_.shm_name; }
  // The last lines the daemon logged, for error messages.
  std::string log_tail() const;

 private:
  explicit DaemonUnderTest(DaemonOptions options) : options_(std::move(options)) {}
  std::string socket_path() const { return options_.run_dir + "/ctl.sock"; }
  std::string log_path() const { return options_.run_dir + "/kronopd.log"; }

  DaemonOptions options_;
  pid_t pid_ = -1;
};

// For a SIGINT handler: SIGKILLs the daemon that is running (if any) and unlinks its
// segment. Async-signal-safe.
void kill_running_daemon_from_signal_handler();

// Pins the calling thread (and what it later forks or execs) to one CPU; false on failure.
bool pin_to_cpu(int cpu);

}  // namespace kronop::bench
