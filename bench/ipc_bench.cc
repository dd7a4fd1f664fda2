// kronop-ipc-bench: the shared-memory transport measured end to end against the real
// kronopd.
//
// Scenarios (bench/README.md says what each figure means and how to read it):
//   throughput       one producer process publishes N records as fast as the ring takes
//                    them (retrying on KRONOP_EFULL); the rate is N over the time from "go"
//                    until the daemon's `records` counter reaches N.
//   publish-latency  the same flat-out load, with the producer timing every successful
//                    kronop_publish with the TSC (and, as a cross-check, batches of 16).
//   paced-latency    one producer publishes at a fixed rate (default 100K/s); the figure is
//                    the daemon's own publish->ingest histogram, read from its stats.
//   idle             a daemon with nothing to do: its CPU time over a window.
//   machine          no Kronop at all: how often and how long this machine takes a CPU away
//                    from a spinning thread, and what a cache line costs between two CPUs;
//                    the context without which the latency figures cannot be judged.
//
// Every run gets a fresh daemon (daemon_under_test.h), because the daemon's counters and
// histogram cover its whole life. Runs go round-robin over the scenarios, so that a drift of
// the machine during the benchmark spreads over every figure instead of skewing one.
//
// Processes: this driver, kronopd, and one producer per run, forked from the driver (so
// the producer is a process of its own, like a real one, and shares no allocator or cache
// state with the driver). They talk over two pipes: "go" (driver -> producer) and reports
// (producer -> driver, fixed-size structs, each written atomically). While a run measures,
// the driver sleeps: it asks the daemon for stats at most every 100 ms in the throughput
// run, and not at all during the paced run, where a third runnable thread on a two-CPU
// machine would show up as latency.
//
// Nothing here bends a figure to a target: a missed target is printed as MISS.
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>
#include <x86intrin.h>
#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "daemon_under_test.h"
#include "envelope_validation.h"
#include "kronop/clock.h"
#include "kronop_ipc.h"
#include "latency_histogram.h"

namespace kronop::bench {
namespace {

using daemon::LatencyHistogram;
using Clock = std::chrono::steady_clock;
// Named values of one run ("throughput.records_per_s" -> 2.4e6); rows of the report.
using Metrics = std::map<std::string, double>;

// Set by SIGINT/SIGTERM: the current run is cut short and no further run starts.
volatile std::sig_atomic_t interrupted = 0;
// The producer process of the current run, for the signal handler.
std::atomic<pid_t> running_producer{-1};

constexpr const char *kTopic = "reel:42";
constexpr const char *kEvent = "reel_update";
// Different payloads of the same size, used in turn, so that the daemon's JSON parser does
// not see one byte string millions of times.
constexpr std::size_t kPayloadVariants = 64;
constexpr std::size_t kCacheLineBytes = 64;

struct Options {
  std::string kronopd = KRONOPD_DEFAULT_PATH;
  int repeat = 5;
  std::vector<std::string> scenarios = {"throughput", "publish-latency", "paced-latency", "idle",
                                        "machine"};
  std::vector<std::string> daemon_args;
  uint64_t records = 5'000'000;
  uint64_t latency_records = 2'000'000;
  double rate = 100'000;
  double paced_seconds = 5;
  double idle_seconds = 5;
  double machine_seconds = 3;
  std::size_t payload_bytes = 200;
  uint64_t ring_size = 0;
  int producer_cpu = -1;
  int daemon_cpu = -1;
  double quiet_pct = 10;
  double quiet_wait_seconds = 60;
  double max_other_load = 20;
  int busy_retries = 3;
  bool json = false;
  bool keep_dir = false;
};

// ---- time -------------------------------------------------------------------------------

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// TSC reads for timing single calls. The lfences keep the timed call from being reordered
// around the reads; rdtscp waits for the call's instructions to finish.
inline uint64_t ticks_begin() {
  _mm_lfence();
  uint64_t t = __rdtsc();
  _mm_lfence();
  return t;
}
inline uint64_t ticks_end() {
  unsigned aux = 0;
  uint64_t t = __rdtscp(&aux);
  _mm_lfence();
  return t;
}

// Nanoseconds per TSC tick, against CLOCK_MONOTONIC_RAW over 200 ms.
double calibrate_ns_per_tick() {
  timespec a{}, b{};
  clock_gettime(CLOCK_MONOTONIC_RAW, &a);
  const uint64_t t0 = __rdtsc();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  clock_gettime(CLOCK_MONOTONIC_RAW, &b);
  const uint64_t t1 = __rdtsc();
  const double ns = double(b.tv_sec - a.tv_sec) * 1e9 + double(b.tv_nsec - a.tv_nsec);
  return ns / double(t1 - t0);
}

// The median cost of an empty ticks_begin/ticks_end pair: subtracted from every timed call.
uint64_t timer_overhead_ticks() {
  LatencyHistogram h;
  for (int i = 0; i < 200'000; ++i) {
    const uint64_t t0 = ticks_begin();
    h.record(ticks_end() - t0);
  }
  return h.summarize().p50;
}

// ---- other load on the machine ---------------------------------------------------------

// This machine may be shared (builds, tests): every run measures how much CPU the rest of
// the machine used while it ran, so that a figure taken under load can be told apart.

// CPU time every CPU spent busy so far, from the first line of /proc/stat.
uint64_t machine_busy_ns() {
  std::ifstream f("/proc/stat");
  std::string cpu;
  uint64_t user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  f >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
  const double ns_per_tick = 1e9 / double(::sysconf(_SC_CLK_TCK));
  return static_cast<uint64_t>(double(user + nice + system + irq + softirq + steal) * ns_per_tick);
}

uint64_t process_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ULL + uint64_t(ts.tv_nsec);
}

// Opened before a measurement; other_pct() gives what processes other than ours (the
// driver, kronopd, the producer) used meanwhile, in percent of one CPU. /proc/stat counts
// in clock ticks, so short windows are coarse (10 ms per CPU).
class OtherLoad {
 public:
  OtherLoad() : busy0_(machine_busy_ns()), self0_(process_cpu_ns()), t0_(Clock::now()) {}
  double other_pct(uint64_t daemon_and_producer_ns) const {
    const double wall = seconds_between(t0_, Clock::now()) * 1e9;
    const double busy = double(machine_busy_ns() - busy0_);
    const double ours = double(daemon_and_producer_ns + (process_cpu_ns() - self0_));
    return std::max(0.0, 100.0 * (busy - ours) / wall);
  }

 private:
  uint64_t busy0_, self0_;
  Clock::time_point t0_;
};

// Before a run: waits (up to max_wait_s) for a half second in which the machine was busy
// for less than threshold_pct of one CPU. Returns the last measured load.
double wait_for_quiet_machine(double threshold_pct, double max_wait_s) {
  const auto deadline = Clock::now() + std::chrono::duration<double>(max_wait_s);
  for (;;) {
    OtherLoad probe;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    const double pct = probe.other_pct(0);
    if (pct < threshold_pct || Clock::now() >= deadline || interrupted != 0) return pct;
  }
}

// ---- payloads ---------------------------------------------------------------------------

// A reel-update-like JSON object of exactly `size` bytes; `variant` changes its digits.
std::string make_payload(std::size_t size, std::size_t variant) {
  char head[160];
  std::snprintf(head, sizeof head,
                R"({"reel_id":"r%010zu","views":%zu,"likes":%zu,"comments":%zu,)"
                R"("trending":true,"caption":")",
                variant, 1000000 + variant * 7919, 40000 + variant * 31, 100 + variant);
  std::string s = head;
  const std::string tail = "\"}";
  if (size < s.size() + tail.size()) return {};
  static const char kWords[] = "lorem ipsum dolor sit amet consectetur adipiscing elit ";
  for (std::size_t i = 0; s.size() + tail.size() < size; ++i) {
    s += kWords[(i + variant) % (sizeof kWords - 1)];
  }
  return s + tail;
}

// ---- the producer process ---------------------------------------------------------------

enum class LoadMode : int {
  kFlatOut,       // as fast as possible, untimed (throughput)
  kTimedFlatOut,  // as fast as possible, every call timed (publish-latency)
  kPaced,         // one record every 1/rate seconds, every call timed (paced-latency)
};

struct ProducerPlan {
  LoadMode mode = LoadMode::kFlatOut;
  uint64_t records = 0;
  double rate = 0;
  int cpu = -1;
  std::string shm_name;
  const std::vector<std::string> *payloads = nullptr;
};

enum class ReportPhase : int32_t { kReady, kDone, kFailed };

// What the producer tells the driver; written to a pipe in one write (< PIPE_BUF).
struct ProducerReport {
  ReportPhase phase = ReportPhase::kFailed;
  int32_t code = 0;
  char message[160] = {};
  uint64_t published = 0;
  uint64_t full_retries = 0;
  uint64_t elapsed_ns = 0;
  uint64_t timer_overhead_ticks = 0;
  LatencyHistogram::Summary per_call{};  // ticks, timer overhead subtracted
  LatencyHistogram::Summary batch16{};   // ticks per call, over clean batches of 16
  uint64_t batches_discarded = 0;        // batches that hit a full ring
  uint64_t max_behind_ns = 0;            // paced: the most any record started late
  uint64_t cpu_ns = 0;                   // the producer's own CPU time
};
static_assert(std::is_trivially_copyable_v<ProducerReport>);
static_assert(sizeof(ProducerReport) <= PIPE_BUF, "a report must be one atomic pipe write");

bool write_all(int fd, const void *data, std::size_t len) {
  const char *p = static_cast<const char *>(data);
  while (len > 0) {
    ssize_t n = ::write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    len -= static_cast<std::size_t>(n);
  }
  return true;
}

bool read_all(int fd, void *data, std::size_t len) {
  char *p = static_cast<char *>(data);
  while (len > 0) {
    ssize_t n = ::read(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    len -= static_cast<std::size_t>(n);
  }
  return true;
}

// Publishes one record, retrying while the ring is full. Untimed.
inline int publish_retrying(kronop_producer *p, const std::string &payload, uint64_t &full) {
  int rc;
  while ((rc = kronop_publish(p, kTopic, kEvent, payload.data(), payload.size(),
                              KRONOP_PRIORITY_NORMAL)) == KRONOP_EFULL) {
    ++full;
    _mm_pause();
  }
  return rc;
}

// Publishes one record, retrying while full, and records the time of the successful call
// (the refused attempts return at once and are counted, not timed).
inline int publish_timed(kronop_producer *p, const std::string &payload, uint64_t overhead,
                         LatencyHistogram &h, uint64_t &full) {
  for (;;) {
    const uint64_t t0 = ticks_begin();
    const int rc =
        kronop_publish(p, kTopic, kEvent, payload.data(), payload.size(), KRONOP_PRIORITY_NORMAL);
    const uint64_t t1 = ticks_end();
    if (rc == KRONOP_EFULL) {
      ++full;
      _mm_pause();
      continue;
    }
    const uint64_t d = t1 - t0;
    h.record(d > overhead ? d - overhead : 0);
    return rc;
  }
}

// The producer's main loop; fills `r` and returns KRONOP_OK or the first error.
int publish_load(const ProducerPlan &plan, kronop_producer *p, ProducerReport &r) {
  const auto &payloads = *plan.payloads;
  LatencyHistogram per_call, batch16;
  const uint64_t overhead = r.timer_overhead_ticks;
  const uint64_t n = plan.records;
  const uint64_t cpu0 = process_cpu_ns();
  const uint64_t start = monotonic_ns();
  int rc = KRONOP_OK;
  switch (plan.mode) {
    case LoadMode::kFlatOut:
      for (uint64_t i = 0; i < n && rc == KRONOP_OK; ++i) {
        rc = publish_retrying(p, payloads[i % kPayloadVariants], r.full_retries);
        r.published += rc == KRONOP_OK ? 1 : 0;
      }
      break;
    case LoadMode::kTimedFlatOut:
      // Blocks of 1024 records alternate between timing each call (fenced TSC reads around
      // it, overhead subtracted) and timing batches of 16 back-to-back calls (no fences
      // between calls, so calls overlap as they do in a real loop). Both see the same load.
      for (uint64_t i = 0; i < n && rc == KRONOP_OK;) {
        const bool per_call_block = (i / 1024) % 2 == 0;
        if (per_call_block || n - i < 16) {
          rc = publish_timed(p, payloads[i % kPayloadVariants], overhead, per_call, r.full_retries);
          r.published += rc == KRONOP_OK ? 1 : 0;
          ++i;
          continue;
        }
        const uint64_t full_before = r.full_retries;
        const uint64_t t0 = ticks_begin();
        for (int k = 0; k < 16 && rc == KRONOP_OK; ++k, ++i) {
          rc = publish_retrying(p, payloads[i % kPayloadVariants], r.full_retries);
          r.published += rc == KRONOP_OK ? 1 : 0;
        }
        const uint64_t d = ticks_end() - t0;
        if (r.full_retries != full_before) {
          ++r.batches_discarded;  // includes waiting for the daemon: not a call's cost
        } else {
          batch16.record((d > overhead ? d - overhead : 0) / 16);
        }
      }
      break;
    case LoadMode::kPaced: {
      // Open loop: record i is due at start + i/rate whatever happened before, so a stall
      // is followed by a catch-up burst rather than hidden by a shifted schedule.
      const double period_ns = 1e9 / plan.rate;
      for (uint64_t i = 0; i < n && rc == KRONOP_OK; ++i) {
        const uint64_t due = start + static_cast<uint64_t>(double(i) * period_ns);
        uint64_t now;
        while ((now = monotonic_ns()) < due) _mm_pause();
        r.max_behind_ns = std::max(r.max_behind_ns, now - due);
        rc = publish_timed(p, payloads[i % kPayloadVariants], overhead, per_call, r.full_retries);
        r.published += rc == KRONOP_OK ? 1 : 0;
      }
      break;
    }
  }
  r.elapsed_ns = monotonic_ns() - start;
  r.cpu_ns = process_cpu_ns() - cpu0;
  r.per_call = per_call.summarize();
  r.batch16 = batch16.summarize();
  return rc;
}

// The body of the forked producer process. Never returns.
[[noreturn]] void producer_main(const ProducerPlan &plan, int go_fd, int report_fd, pid_t driver) {
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  // A producer left behind by a driver that died would spin on a full ring for ever.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != driver) ::_exit(1);
  ProducerReport r;
  auto fail = [&](int code, const std::string &msg) {
    r.phase = ReportPhase::kFailed;
    r.code = code;
    std::snprintf(r.message, sizeof r.message, "%s", msg.c_str());
    write_all(report_fd, &r, sizeof r);
    ::_exit(1);
  };
  if (plan.cpu >= 0 && !pin_to_cpu(plan.cpu)) {
    fail(0, "cannot pin the producer to CPU " + std::to_string(plan.cpu));
  }
  char err[256] = {};
  kronop_producer *p = kronop_producer_open(plan.shm_name.c_str(), err, sizeof err);
  if (p == nullptr) fail(kronop_last_open_error(), std::string("kronop_producer_open: ") + err);
  r.timer_overhead_ticks = timer_overhead_ticks();
  r.phase = ReportPhase::kReady;
  if (!write_all(report_fd, &r, sizeof r)) ::_exit(1);
  char go = 0;
  if (!read_all(go_fd, &go, 1)) ::_exit(1);  // the driver went away

  const int rc = publish_load(plan, p, r);
  if (rc != KRONOP_OK) {
    fail(rc, "kronop_publish failed after " + std::to_string(r.published) +
                 " record(s): " + kronop_strerror(rc));
  }
  r.phase = ReportPhase::kDone;
  write_all(report_fd, &r, sizeof r);
  kronop_producer_close(p);
  ::_exit(0);
}

// The driver's handle on a forked producer.
class ProducerProcess {
 public:
  ~ProducerProcess() {
    if (go_fd_ >= 0) ::close(go_fd_);
    if (report_fd_ >= 0) ::close(report_fd_);
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      reap();
    }
  }

  // Forks the producer and waits until it holds a ring and is ready to go.
  Result<bool> start(const ProducerPlan &plan) {
    int go[2], report[2];
    if (::pipe2(go, O_CLOEXEC) != 0 || ::pipe2(report, O_CLOEXEC) != 0) {
      return Error{1, std::string("pipe: ") + std::strerror(errno)};
    }
    std::fflush(nullptr);
    const pid_t driver = ::getpid();
    pid_ = ::fork();
    if (pid_ < 0) return Error{1, std::string("fork: ") + std::strerror(errno)};
    if (pid_ > 0) running_producer.store(pid_);
    if (pid_ == 0) {
      ::close(go[1]);
      ::close(report[0]);
      producer_main(plan, go[0], report[1], driver);
    }
    ::close(go[0]);
    ::close(report[1]);
    go_fd_ = go[1];
    report_fd_ = report[0];
    auto ready = read_report();
    if (!ready.ok()) return ready.error();
    if (ready.value().phase != ReportPhase::kReady) return Error{1, "producer not ready"};
    return true;
  }

  bool go() {
    const char g = 'g';
    return write_all(go_fd_, &g, 1);
  }

  // Waits up to timeout_ms for the final report: nullopt while the producer still runs.
  std::optional<Result<ProducerReport>> poll_done(int timeout_ms) {
    pollfd pfd{report_fd_, POLLIN, 0};
    int rc;
    while ((rc = ::poll(&pfd, 1, timeout_ms)) < 0 && errno == EINTR) {
    }
    if (rc == 0) return std::nullopt;
    auto r = read_report();
    reap();
    return r;
  }

 private:
  Result<ProducerReport> read_report() {
    ProducerReport r;
    if (!read_all(report_fd_, &r, sizeof r)) return Error{1, "the producer process died"};
    if (r.phase == ReportPhase::kFailed) {
      return Error{r.code != 0 ? r.code : 1, std::string("producer: ") + r.message};
    }
    return r;
  }
  void reap() {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    running_producer.store(-1);
    pid_ = -1;
  }

  pid_t pid_ = -1;
  int go_fd_ = -1;
  int report_fd_ = -1;
};

// ---- scenarios --------------------------------------------------------------------------

struct BenchContext {
  const Options &opt;
  std::string work_dir;
  std::vector<std::string> payloads;
  double ns_per_tick = 1;
  int run_counter = 0;
};

Result<std::unique_ptr<DaemonUnderTest>> start_daemon(BenchContext &ctx) {
  const int n = ctx.run_counter++;
  DaemonOptions d;
  d.kronopd_path = ctx.opt.kronopd;
  d.run_dir = ctx.work_dir + "/run-" + std::to_string(n);
  d.shm_name = "kronop-bench-" + std::to_string(::getpid()) + "-" + std::to_string(n);
  d.cpu = ctx.opt.daemon_cpu;
  d.ring_size = ctx.opt.ring_size;
  d.extra_args = ctx.opt.daemon_args;
  return DaemonUnderTest::start(d);
}

ProducerPlan plan_for(const BenchContext &ctx, const DaemonUnderTest &d, LoadMode mode,
                      uint64_t records) {
  ProducerPlan plan;
  plan.mode = mode;
  plan.records = records;
  plan.rate = ctx.opt.rate;
  plan.cpu = ctx.opt.producer_cpu;
  plan.shm_name = d.shm_name();
  plan.payloads = &ctx.payloads;
  return plan;
}

// Checks that the daemon took exactly `n` records, all valid and in order.
Result<bool> check_ingested_exactly(const kronop::v1::DaemonStats &s, uint64_t n) {
  if (s.records() != n || s.rejects() != 0 || s.seq_gaps() != 0 || s.seq_regressions() != 0 ||
      s.corrupt_ranges() != 0 || s.publish_to_ingest().count() != n) {
    return Error{1, "the daemon did not ingest exactly " + std::to_string(n) +
                        " valid records in order: " + s.ShortDebugString()};
  }
  return true;
}

// Polls the daemon's stats until `records` reaches n. Returns the stats and the time the
// answer arrived (the counter was read before then: the rate derived from it is never
// flattering).
struct Observation {
  kronop::v1::DaemonStats stats;
  Clock::time_point at;
};
Result<Observation> wait_for_records(const DaemonUnderTest &d, uint64_t n, double timeout_s) {
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  for (;;) {
    auto s = d.stats();
    const auto at = Clock::now();
    if (!s.ok()) return s.error();
    if (s.value().records() >= n) return Observation{std::move(s).value(), at};
    if (at > deadline) {
      return Error{1, "the daemon ingested only " + std::to_string(s.value().records()) + " of " +
                          std::to_string(n) + " records"};
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

// One producer-driven run: a fresh daemon, a producer that publishes n records in `mode`,
// and what both sides saw. The clock runs from "go" until the daemon's counter reaches n.
struct LoadRun {
  ProducerReport report;
  kronop::v1::DaemonStats before, after;
  double seconds = 0;          // "go" until the daemon reported all n ingested
  uint64_t daemon_cpu_ns = 0;  // kronopd's CPU time (all threads) over that time
  double other_load_pct = 0;   // other processes on the machine, % of one CPU
  std::vector<std::pair<double, uint64_t>> samples;  // (seconds since go, records)
};

// sample_ms > 0: ask the daemon for its counter that often while the producer runs.
Result<LoadRun> run_load(BenchContext &ctx, LoadMode mode, uint64_t n, int sample_ms) {
  auto daemon = start_daemon(ctx);
  if (!daemon.ok()) return daemon.error();
  DaemonUnderTest &d = *daemon.value();
  ProducerProcess producer;
  if (auto rc = producer.start(plan_for(ctx, d, mode, n)); !rc.ok()) return rc.error();
  LoadRun run;
  auto before = d.stats();
  if (!before.ok()) return before.error();
  run.before = std::move(before).value();
  auto cpu0 = d.cpu();
  if (!cpu0.ok()) return cpu0.error();

  const OtherLoad load;
  const auto t_go = Clock::now();
  if (!producer.go()) return Error{1, "cannot start the producer"};
  const double timeout_s = 60 + double(n) / 1e4;
  for (;;) {
    if (auto done = producer.poll_done(sample_ms > 0 ? sample_ms : 1000)) {
      if (!done->ok()) return done->error();
      run.report = done->value();
      break;
    }
    if (sample_ms > 0) {
      auto s = d.stats();
      if (!s.ok()) return s.error();
      run.samples.emplace_back(seconds_between(t_go, Clock::now()), s.value().records());
    }
    if (seconds_between(t_go, Clock::now()) > timeout_s) {
      return Error{1, "the producer did not finish within " + std::to_string(timeout_s) + " s"};
    }
  }
  auto end = wait_for_records(d, n, 30);
  if (!end.ok()) return end.error();
  auto cpu1 = d.cpu();
  if (!cpu1.ok()) return cpu1.error();
  run.seconds = seconds_between(t_go, end.value().at);
  run.daemon_cpu_ns = cpu1.value().sched_ns - cpu0.value().sched_ns;
  run.other_load_pct = load.other_pct(run.daemon_cpu_ns + run.report.cpu_ns);
  run.after = std::move(end.value().stats);
  if (auto ok = check_ingested_exactly(run.after, n); !ok.ok()) return ok.error();
  if (auto stopped = d.stop(); !stopped.ok()) return stopped.error();
  return run;
}

Result<Metrics> run_throughput(BenchContext &ctx) {
  const uint64_t n = ctx.opt.records;
  auto result = run_load(ctx, LoadMode::kFlatOut, n, 100);
  if (!result.ok()) return result.error();
  const LoadRun &run = result.value();
  const ProducerReport &r = run.report;
  Metrics m;
  m["throughput.records_per_s"] = double(n) / run.seconds;
  m["throughput.seconds"] = run.seconds;
  // Steady state: between the first sample past 10 % and the last one before 90 % of n.
  std::optional<std::pair<double, uint64_t>> a, b;
  for (const auto &s : run.samples) {
    if (!a && s.second >= n / 10) a = s;
    if (s.second <= n - n / 10) b = s;
  }
  if (a && b && b->first > a->first) {
    m["throughput.steady_records_per_s"] = double(b->second - a->second) / (b->first - a->first);
  }
  m["throughput.producer_records_per_s"] = double(n) / (double(r.elapsed_ns) / 1e9);
  m["throughput.full_retries_per_record"] = double(r.full_retries) / double(n);
  m["throughput.daemon_cpu_pct"] = 100.0 * double(run.daemon_cpu_ns) / (run.seconds * 1e9);
  m["throughput.producer_cpu_pct"] =
      100.0 * double(r.cpu_ns) / double(std::max<uint64_t>(r.elapsed_ns, 1));
  m["throughput.mib_per_s"] = double(run.after.bytes()) / run.seconds / (1024.0 * 1024.0);
  m["throughput.other_load_pct"] = run.other_load_pct;
  return m;
}

Result<Metrics> run_publish_latency(BenchContext &ctx) {
  const uint64_t n = ctx.opt.latency_records;
  auto result = run_load(ctx, LoadMode::kTimedFlatOut, n, 0);
  if (!result.ok()) return result.error();
  const LoadRun &run = result.value();
  const ProducerReport &r = run.report;
  const double k = ctx.ns_per_tick;
  Metrics m;
  m["publish.p50_ns"] = double(r.per_call.p50) * k;
  m["publish.p90_ns"] = double(r.per_call.p90) * k;
  m["publish.p99_ns"] = double(r.per_call.p99) * k;
  m["publish.p999_ns"] = double(r.per_call.p999) * k;
  m["publish.max_ns"] = double(r.per_call.max) * k;
  m["publish.batch16_p50_ns"] = double(r.batch16.p50) * k;
  m["publish.batches_discarded_pct"] =
      100.0 * double(r.batches_discarded) /
      double(std::max<uint64_t>(r.batches_discarded + r.batch16.count, 1));
  m["publish.timer_overhead_ns"] = double(r.timer_overhead_ticks) * k;
  m["publish.full_retries_per_record"] = double(r.full_retries) / double(n);
  m["publish.other_load_pct"] = run.other_load_pct;
  return m;
}

Result<Metrics> run_paced_latency(BenchContext &ctx) {
  const uint64_t n = static_cast<uint64_t>(ctx.opt.rate * ctx.opt.paced_seconds);
  // No stats requests while the producer runs: see the comment at the top of the file.
  auto result = run_load(ctx, LoadMode::kPaced, n, 0);
  if (!result.ok()) return result.error();
  const LoadRun &run = result.value();
  const ProducerReport &r = run.report;
  const auto &l = run.after.publish_to_ingest();
  Metrics m;
  m["paced.p50_us"] = double(l.p50_ns()) / 1e3;
  m["paced.p90_us"] = double(l.p90_ns()) / 1e3;
  m["paced.p99_us"] = double(l.p99_ns()) / 1e3;
  m["paced.p999_us"] = double(l.p999_ns()) / 1e3;
  m["paced.max_us"] = double(l.max_ns()) / 1e3;
  m["paced.achieved_records_per_s"] = double(n) / (double(r.elapsed_ns) / 1e9);
  m["paced.max_behind_schedule_us"] = double(r.max_behind_ns) / 1e3;
  m["paced.publish_p50_ns"] = double(r.per_call.p50) * ctx.ns_per_tick;
  m["paced.publish_p99_ns"] = double(r.per_call.p99) * ctx.ns_per_tick;
  m["paced.daemon_wakeups"] = double(run.after.wakeups() - run.before.wakeups());
  m["paced.daemon_cpu_pct"] = 100.0 * double(run.daemon_cpu_ns) / (run.seconds * 1e9);
  m["paced.other_load_pct"] = run.other_load_pct;
  return m;
}

Result<Metrics> run_idle(BenchContext &ctx) {
  auto daemon = start_daemon(ctx);
  if (!daemon.ok()) return daemon.error();
  DaemonUnderTest &d = *daemon.value();
  // Let the start-up (and our health checks) settle before the window opens.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  auto c0 = d.cpu();
  const OtherLoad load;
  const auto t0 = Clock::now();
  if (!c0.ok()) return c0.error();
  std::this_thread::sleep_for(std::chrono::duration<double>(ctx.opt.idle_seconds));
  auto c1 = d.cpu();
  const double secs = seconds_between(t0, Clock::now());
  if (!c1.ok()) return c1.error();
  if (auto stopped = d.stop(); !stopped.ok()) return stopped.error();

  const double tick_s = 1.0 / double(::sysconf(_SC_CLK_TCK));
  Metrics m;
  m["idle.cpu_pct"] = 100.0 * double(c1.value().stat_ticks - c0.value().stat_ticks) * tick_s / secs;
  m["idle.cpu_pct_schedstat"] =
      100.0 * double(c1.value().sched_ns - c0.value().sched_ns) / (secs * 1e9);
  m["idle.wakeups_per_s"] =
      double(c1.value().context_switches - c0.value().context_switches) / secs;
  m["idle.other_load_pct"] = load.other_pct(c1.value().sched_ns - c0.value().sched_ns);
  return m;
}

// The round trip of one cache line between two CPUs: one thread stores, the other sees it
// and answers with a store. A publish pays at least one such transfer when the daemon runs
// on the other CPU (it reads the ring's write_pos and the record lines the producer writes
// next), so this explains much of the publish latency and its changes from run to run
// (where the hypervisor places the two vCPUs). Median over batches, so that a stall of
// either thread does not count.
std::optional<double> core_to_core_round_trip_ns(int cpu_a, int cpu_b) {
  struct alignas(kCacheLineBytes) Line {
    std::atomic<uint64_t> value{0};
  } line;
  constexpr uint64_t kBatch = 2000, kBatches = 100;
  constexpr uint64_t kAbort = ~uint64_t{0};
  std::atomic<bool> pinned_b{true};
  std::thread echo([&] {
    pinned_b = pin_to_cpu(cpu_b);
    for (uint64_t i = 1; i < 2 * kBatch * kBatches; i += 2) {
      uint64_t seen;
      while ((seen = line.value.load(std::memory_order_acquire)) != i) {
        if (seen == kAbort) return;
      }
      line.value.store(i + 1, std::memory_order_release);
    }
  });
  std::vector<double> batch_ns;
  std::thread ping([&] {
    if (!pin_to_cpu(cpu_a)) {
      line.value.store(kAbort, std::memory_order_release);
      return;
    }
    uint64_t v = 0;
    for (uint64_t b = 0; b < kBatches; ++b) {
      const uint64_t t0 = monotonic_ns();
      for (uint64_t i = 0; i < kBatch; ++i, v += 2) {
        line.value.store(v + 1, std::memory_order_release);
        while (line.value.load(std::memory_order_acquire) != v + 2) {
        }
      }
      batch_ns.push_back(double(monotonic_ns() - t0) / double(kBatch));
    }
  });
  ping.join();
  echo.join();
  if (!pinned_b || batch_ns.size() < kBatches) return std::nullopt;
  std::sort(batch_ns.begin(), batch_ns.end());
  return batch_ns[batch_ns.size() / 2];
}

// The machine's own noise, with no Kronop process running: one thread per CPU spins on the
// clock, and every gap of more than 1 us between two reads is time that CPU was taken away
// (interrupts, the hypervisor, other processes). From the gaps follows how long a random
// instant waits until its CPU runs again: a floor under any latency percentile measured on
// this machine, since a record published just as the daemon's CPU stalls waits that long.
Result<Metrics> run_machine(BenchContext &ctx) {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (::sched_getaffinity(0, sizeof allowed, &allowed) != 0) {
    return Error{1, std::string("sched_getaffinity: ") + std::strerror(errno)};
  }
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &allowed)) cpus.push_back(c);
  }
  struct CpuGaps {
    std::vector<uint64_t> gaps;
    uint64_t span_ns = 0;
    bool pinned = false;
  };
  std::vector<CpuGaps> per_cpu(cpus.size());
  const OtherLoad load;  // our own threads count as ours: what remains is the rest
  const uint64_t length_ns = static_cast<uint64_t>(ctx.opt.machine_seconds * 1e9);
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < cpus.size(); ++i) {
    threads.emplace_back([&, i] {
      CpuGaps &g = per_cpu[i];
      g.pinned = pin_to_cpu(cpus[i]);
      g.gaps.reserve(1 << 16);
      const uint64_t start = monotonic_ns();
      uint64_t prev = start;
      for (;;) {
        const uint64_t t = monotonic_ns();
        if (t - prev > 1000) g.gaps.push_back(t - prev);
        prev = t;
        if (t - start >= length_ns) break;
      }
      g.span_ns = prev - start;
    });
  }
  for (auto &t : threads) t.join();
  const double other_load_pct = load.other_pct(0);

  std::vector<uint64_t> gaps;
  double total_ns = 0;
  for (const auto &g : per_cpu) {
    if (!g.pinned) return Error{1, "cannot pin a thread to its CPU"};
    gaps.insert(gaps.end(), g.gaps.begin(), g.gaps.end());
    total_ns += double(g.span_ns);
  }
  // The share of instants that wait more than x: sum over gaps of (gap - x), over all time.
  auto waiting_longer = [&](double x) {
    double sum = 0;
    for (uint64_t g : gaps) sum += double(g) > x ? double(g) - x : 0;
    return sum / total_ns;
  };
  auto stall_quantile = [&](double q) {
    double lo = 0, hi = 1e10;
    for (int i = 0; i < 64; ++i) {
      const double mid = (lo + hi) / 2;
      (waiting_longer(mid) > 1 - q ? lo : hi) = mid;
    }
    return hi;
  };
  const uint64_t over_10us = static_cast<uint64_t>(
      std::count_if(gaps.begin(), gaps.end(), [](uint64_t g) { return g > 10'000; }));
  Metrics m;
  m["machine.stalled_pct"] = 100.0 * waiting_longer(0);
  m["machine.stall_p99_us"] = stall_quantile(0.99) / 1e3;
  m["machine.stall_p999_us"] = stall_quantile(0.999) / 1e3;
  m["machine.gaps_over_10us_per_s"] = double(over_10us) / (total_ns / 1e9);
  m["machine.max_gap_us"] =
      gaps.empty() ? 0 : double(*std::max_element(gaps.begin(), gaps.end())) / 1e3;
  m["machine.other_load_pct"] = other_load_pct;
  if (cpus.size() >= 2) {
    if (auto rtt = core_to_core_round_trip_ns(cpus[0], cpus[1])) {
      m["machine.core_to_core_rtt_ns"] = *rtt;
    }
  }
  return m;
}

struct Scenario {
  const char *name;
  Result<Metrics> (*run)(BenchContext &);
};
constexpr Scenario kScenarios[] = {
    {"throughput", run_throughput},
    {"publish-latency", run_publish_latency},
    {"paced-latency", run_paced_latency},
    {"idle", run_idle},
    {"machine", run_machine},
};

// ---- report -----------------------------------------------------------------------------

struct Target {
  double value;
  bool at_least;  // true: the figure must be >= value; false: <= value
  const char *text;
};

struct Row {
  const char *key;
  const char *label;
  const char *unit;
  double scale;  // printed value = value / scale
  int precision;
  std::optional<Target> target;  // headline figures only
};

const Row kRows[] = {
    {"throughput.records_per_s", "(1) end-to-end throughput", "M rec/s", 1e6, 3,
     Target{3e6, true, ">= 3 M"}},
    {"throughput.steady_records_per_s", "    steady state (10-90 %)", "M rec/s", 1e6, 3, {}},
    {"throughput.producer_records_per_s", "    producer's own publish rate", "M rec/s", 1e6, 3, {}},
    {"throughput.full_retries_per_record", "    EFULL retries per record", "", 1, 2, {}},
    {"throughput.daemon_cpu_pct", "    kronopd CPU during the run", "%", 1, 0, {}},
    {"throughput.producer_cpu_pct", "    producer CPU during the run", "%", 1, 0, {}},
    {"throughput.mib_per_s", "    ingested record bytes", "MiB/s", 1, 0, {}},
    {"throughput.other_load_pct", "    other load on the machine", "% CPU", 1, 0, {}},
    {"publish.p50_ns", "(2) kronop_publish p50, per call", "ns", 1, 0,
     Target{150, false, "<= 150"}},
    {"publish.p90_ns", "    p90", "ns", 1, 0, {}},
    {"publish.p99_ns", "    p99", "ns", 1, 0, {}},
    {"publish.p999_ns", "    p99.9", "ns", 1, 0, {}},
    {"publish.max_ns", "    max", "ns", 1, 0, {}},
    {"publish.batch16_p50_ns", "    p50 per call, batches of 16", "ns", 1, 0, {}},
    {"publish.timer_overhead_ns", "    timer overhead (subtracted)", "ns", 1, 0, {}},
    {"publish.full_retries_per_record", "    EFULL retries per record", "", 1, 2, {}},
    {"publish.other_load_pct", "    other load on the machine", "% CPU", 1, 0, {}},
    {"paced.p99_us", "(3) publish->ingest p99 @ rate", "us", 1, 2, Target{20, false, "<= 20"}},
    {"paced.p50_us", "    p50", "us", 1, 2, {}},
    {"paced.p90_us", "    p90", "us", 1, 2, {}},
    {"paced.p999_us", "    p99.9", "us", 1, 2, {}},
    {"paced.max_us", "    max", "us", 1, 1, {}},
    {"paced.achieved_records_per_s", "    achieved rate", "K rec/s", 1e3, 1, {}},
    {"paced.max_behind_schedule_us", "    producer max behind schedule", "us", 1, 1, {}},
    {"paced.publish_p50_ns", "    kronop_publish p50 at this rate", "ns", 1, 0, {}},
    {"paced.publish_p99_ns", "    kronop_publish p99 at this rate", "ns", 1, 0, {}},
    {"paced.daemon_wakeups", "    futex wake-ups of the daemon", "", 1, 0, {}},
    {"paced.daemon_cpu_pct", "    kronopd CPU during the run", "%", 1, 0, {}},
    {"paced.other_load_pct", "    other load on the machine", "% CPU", 1, 0, {}},
    {"idle.cpu_pct", "(4) idle kronopd CPU (utime+stime)", "%", 1, 3,
     Target{0.5, false, "~0 (<= 0.5)"}},
    {"idle.cpu_pct_schedstat", "    same, from schedstat (ns)", "%", 1, 4, {}},
    {"idle.wakeups_per_s", "    context switches per second", "/s", 1, 1, {}},
    {"idle.other_load_pct", "    other load on the machine", "% CPU", 1, 0, {}},
    {"machine.stall_p99_us", "machine: stall p99 (no kronop)", "us", 1, 1, {}},
    {"machine.stall_p999_us", "    stall p99.9", "us", 1, 1, {}},
    {"machine.stalled_pct", "    time a spinning CPU lost", "%", 1, 2, {}},
    {"machine.gaps_over_10us_per_s", "    gaps > 10 us per CPU-second", "/s", 1, 0, {}},
    {"machine.max_gap_us", "    longest gap", "us", 1, 0, {}},
    {"machine.core_to_core_rtt_ns", "    cache line CPU->CPU->CPU", "ns", 1, 0, {}},
    {"machine.other_load_pct", "    other load on the machine", "% CPU", 1, 0, {}},
};

struct Aggregate {
  std::vector<double> runs;
  double median = 0, min = 0, max = 0;
};

std::map<std::string, Aggregate> aggregate(const std::vector<Metrics> &runs) {
  std::map<std::string, Aggregate> out;
  for (const auto &m : runs) {
    for (const auto &[k, v] : m) out[k].runs.push_back(v);
  }
  for (auto &[k, a] : out) {
    std::vector<double> v = a.runs;
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    a.median = n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    a.min = v.front();
    a.max = v.back();
  }
  return out;
}

bool target_met(const Target &t, double v) { return t.at_least ? v >= t.value : v <= t.value; }

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) == 0) {
      auto at = line.find(':');
      return at == std::string::npos ? line : line.substr(at + 2);
    }
  }
  return "unknown";
}

std::string kernel_release() {
  utsname u{};
  return ::uname(&u) == 0 ? u.release : "unknown";
}

std::string describe_pinning(const Options &o) {
  if (o.producer_cpu < 0 && o.daemon_cpu < 0) return "none";
  std::string s;
  if (o.producer_cpu >= 0) s += "producer on CPU " + std::to_string(o.producer_cpu);
  if (o.daemon_cpu >= 0) {
    if (!s.empty()) s += ", ";
    s += "kronopd on CPU " + std::to_string(o.daemon_cpu);
  }
  return s;
}

// How the runs went, besides their figures.
struct RunLog {
  std::map<std::string, int> succeeded;  // per scenario
  std::vector<std::string> errors;
  int busy_discarded = 0;  // runs thrown away because other processes used the CPUs
  int busy_kept = 0;       // runs kept although they did (after --busy-retries)
};

void print_table(const Options &o, const std::map<std::string, Aggregate> &agg, const RunLog &log) {
  std::printf("kronop-ipc-bench: %u CPU(s) (%s), kernel %s\n", std::thread::hardware_concurrency(),
              cpu_model().c_str(), kernel_release().c_str());
  std::string extra;
  for (const auto &a : o.daemon_args) extra += " " + a;
  std::printf("  kronopd %s%s\n", o.kronopd.c_str(), extra.c_str());
  std::printf("  %d run(s) per scenario, round-robin, a fresh kronopd each; pinning: %s\n",
              o.repeat, describe_pinning(o).c_str());
  const std::string ring = o.ring_size ? std::to_string(o.ring_size) + " B" : "kronopd's default";
  std::printf(
      "  payload %zu B JSON; throughput %llu records; publish-latency %llu records; paced %.0f "
      "rec/s for %.1f s; idle %.1f s; machine %.1f s; ring %s\n\n",
      o.payload_bytes, static_cast<unsigned long long>(o.records),
      static_cast<unsigned long long>(o.latency_records), o.rate, o.paced_seconds, o.idle_seconds,
      o.machine_seconds, ring.c_str());
  std::printf("%-38s %-8s %10s %10s %10s  %-16s %s\n", "figure", "unit", "median", "min", "max",
              "target", "runs");
  for (const Row &row : kRows) {
    auto it = agg.find(row.key);
    if (it == agg.end()) continue;
    const Aggregate &a = it->second;
    auto fmt = [&](double v) {
      char b[32];
      std::snprintf(b, sizeof b, "%.*f", row.precision, v / row.scale);
      return std::string(b);
    };
    std::string target;
    if (row.target) {
      target =
          std::string(row.target->text) + (target_met(*row.target, a.median) ? " ok" : " MISS");
    }
    std::string runs;
    for (double v : a.runs) {
      if (!runs.empty()) runs += ' ';
      runs += fmt(v);
    }
    std::printf("%-38s %-8s %10s %10s %10s  %-16s %s\n", row.label, row.unit, fmt(a.median).c_str(),
                fmt(a.min).c_str(), fmt(a.max).c_str(), target.c_str(), runs.c_str());
  }
  std::printf("\n");
  for (const auto &name : o.scenarios) {
    auto it = log.succeeded.find(name);
    const int n = it == log.succeeded.end() ? 0 : it->second;
    if (n < o.repeat)
      std::printf("%s: only %d of %d run(s) succeeded\n", name.c_str(), n, o.repeat);
  }
  std::printf(
      "runs discarded because other processes used more than %.0f %% of a CPU meanwhile: %d; "
      "kept anyway after %d retries: %d\n",
      o.max_other_load, log.busy_discarded, o.busy_retries, log.busy_kept);
}

std::string json_string(const std::string &s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      out += b;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

void print_json(const Options &o, const std::map<std::string, Aggregate> &agg, const RunLog &log) {
  std::printf("{\"machine\":{\"cpus\":%u,\"cpu_model\":%s,\"kernel\":%s},",
              std::thread::hardware_concurrency(), json_string(cpu_model()).c_str(),
              json_string(kernel_release()).c_str());
  std::printf(
      "\"config\":{\"kronopd\":%s,\"repeat\":%d,\"payload_bytes\":%zu,\"records\":%llu,"
      "\"latency_records\":%llu,\"rate\":%.0f,\"paced_seconds\":%g,\"idle_seconds\":%g,"
      "\"machine_seconds\":%g,\"ring_size\":%llu,\"producer_cpu\":%d,\"daemon_cpu\":%d,"
      "\"max_other_load\":%g,\"daemon_args\":[",
      json_string(o.kronopd).c_str(), o.repeat, o.payload_bytes,
      static_cast<unsigned long long>(o.records),
      static_cast<unsigned long long>(o.latency_records), o.rate, o.paced_seconds, o.idle_seconds,
      o.machine_seconds, static_cast<unsigned long long>(o.ring_size), o.producer_cpu, o.daemon_cpu,
      o.max_other_load);
  for (std::size_t i = 0; i < o.daemon_args.size(); ++i) {
    std::printf("%s%s", i ? "," : "", json_string(o.daemon_args[i]).c_str());
  }
  std::printf("]},");
  std::printf("\"figures\":{");
  bool first = true;
  for (const auto &[key, a] : agg) {
    std::printf("%s%s:{\"median\":%.6g,\"min\":%.6g,\"max\":%.6g,\"runs\":[", first ? "" : ",",
                json_string(key).c_str(), a.median, a.min, a.max);
    for (std::size_t i = 0; i < a.runs.size(); ++i) std::printf("%s%.6g", i ? "," : "", a.runs[i]);
    std::printf("]}");
    first = false;
  }
  std::printf("},\"targets\":[");
  first = true;
  for (const Row &row : kRows) {
    if (!row.target) continue;
    auto it = agg.find(row.key);
    std::printf("%s{\"figure\":%s,\"target\":%s,", first ? "" : ",", json_string(row.key).c_str(),
                json_string(row.target->text).c_str());
    if (it == agg.end()) {
      std::printf("\"median\":null,\"met\":null}");
    } else {
      std::printf("\"median\":%.6g,\"met\":%s}", it->second.median,
                  target_met(*row.target, it->second.median) ? "true" : "false");
    }
    first = false;
  }
  std::printf("],\"busy_runs_discarded\":%d,\"busy_runs_kept\":%d,\"errors\":[", log.busy_discarded,
              log.busy_kept);
  for (std::size_t i = 0; i < log.errors.size(); ++i) {
    std::printf("%s%s", i ? "," : "", json_string(log.errors[i]).c_str());
  }
  std::printf("]}\n");
}

// What other processes used during a run, in percent of one CPU (0 when not measured).
double other_load(const Metrics &m) {
  for (const auto &[key, value] : m) {
    if (key.size() > 15 && key.compare(key.size() - 15, 15, ".other_load_pct") == 0) return value;
  }
  return 0;
}

// A one-line summary of a run, for progress on stderr.
std::string headline(const Metrics &m) {
  char b[160] = "";
  if (auto it = m.find("throughput.records_per_s"); it != m.end()) {
    std::snprintf(b, sizeof b, "%.3f M rec/s", it->second / 1e6);
  } else if (auto p = m.find("publish.p50_ns"); p != m.end()) {
    std::snprintf(b, sizeof b, "publish p50 %.0f ns", p->second);
  } else if (auto q = m.find("paced.p99_us"); q != m.end()) {
    std::snprintf(b, sizeof b, "publish->ingest p99 %.2f us", q->second);
  } else if (auto c = m.find("idle.cpu_pct"); c != m.end()) {
    std::snprintf(b, sizeof b, "idle CPU %.3f %%", c->second);
  } else if (auto j = m.find("machine.stall_p99_us"); j != m.end()) {
    auto rtt = m.find("machine.core_to_core_rtt_ns");
    std::snprintf(b, sizeof b, "stall p99 %.1f us, cache line round trip %.0f ns", j->second,
                  rtt != m.end() ? rtt->second : 0.0);
  }
  return b;
}

// First signal: kill the run's processes, so that whatever the driver waits for fails at
// once, and let main() clean up and report what it has. Second signal: leave now.
void on_interrupt(int sig) {
  if (interrupted != 0) ::_exit(128 + sig);
  interrupted = sig;
  kill_running_daemon_from_signal_handler();
  if (pid_t p = running_producer.load(); p > 0) ::kill(p, SIGKILL);
}

}  // namespace
}  // namespace kronop::bench

int main(int argc, char **argv) {
  using namespace kronop::bench;
  Options o;
  CLI::App app{
      "kronop-ipc-bench - benchmark of Kronop's shared-memory transport against the real "
      "kronopd.\n\nStarts a private kronopd per run (unique segment and directory in /tmp), "
      "forks one producer process that publishes through the C ABI, and reports the "
      "median, min and max of every figure over --repeat runs:\n"
      "  throughput       N records of --payload-bytes JSON, flat out; rate from the "
      "daemon's records counter\n"
      "  publish-latency  per-call kronop_publish time (TSC) while the daemon drains\n"
      "  paced-latency    the daemon's publish->ingest histogram at --rate records/s\n"
      "  idle             the daemon's CPU time over --idle-seconds with nothing to do\n"
      "  machine          no Kronop at all: how long this machine stalls a spinning CPU (a "
      "floor under any latency percentile measured here), and what a cache line costs "
      "between two CPUs"};
  app.add_option("--kronopd", o.kronopd, "kronopd binary to benchmark")->capture_default_str();
  app.add_option("--repeat,-r", o.repeat, "Runs per scenario (each against a fresh daemon)")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  app.add_option("--scenario,-s", o.scenarios, "Scenarios to run (repeatable)")
      ->check(CLI::IsMember({"throughput", "publish-latency", "paced-latency", "idle", "machine"}))
      ->capture_default_str();
  app.add_option("--records,-n", o.records, "Records per throughput run")
      ->check(CLI::Range(uint64_t{1000}, uint64_t{1} << 40))
      ->capture_default_str();
  app.add_option("--latency-records", o.latency_records, "Records per publish-latency run")
      ->check(CLI::Range(uint64_t{1000}, uint64_t{1} << 40))
      ->capture_default_str();
  app.add_option("--rate", o.rate, "Records per second in the paced-latency run")
      ->check(CLI::Range(1.0, 1e8))
      ->capture_default_str();
  app.add_option("--paced-seconds", o.paced_seconds, "Length of a paced-latency run")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  app.add_option("--idle-seconds", o.idle_seconds, "Length of the idle window")
      ->check(CLI::Range(0.5, 3600.0))
      ->capture_default_str();
  app.add_option("--machine-seconds", o.machine_seconds, "Length of the machine-noise measurement")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  app.add_option("--payload-bytes", o.payload_bytes, "Size of each JSON payload")
      ->check(CLI::Range(std::size_t{120}, std::size_t{1} << 16))
      ->capture_default_str();
  app.add_option("--ring-size", o.ring_size,
                 "Bytes per ring, passed to kronopd --ring-size (default: kronopd's own)");
  app.add_option("--daemon-arg", o.daemon_args,
                 "Extra kronopd argument, for experiments (repeatable; write "
                 "--daemon-arg=--ingest-spin-us=200)");
  app.add_option("--producer-cpu", o.producer_cpu, "Pin the producer process to this CPU")
      ->check(CLI::Range(0, 4095));
  app.add_option("--daemon-cpu", o.daemon_cpu, "Pin every kronopd thread to this CPU")
      ->check(CLI::Range(0, 4095));
  app.add_option("--quiet-pct", o.quiet_pct,
                 "Before each run, wait for the rest of the machine to use less than this "
                 "(percent of one CPU)")
      ->check(CLI::Range(0.0, 100000.0))
      ->capture_default_str();
  app.add_option("--quiet-wait", o.quiet_wait_seconds,
                 "Longest wait for a quiet machine before a run, in seconds (0: never wait)")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  app.add_option("--max-other-load", o.max_other_load,
                 "A run during which other processes used more than this (percent of one CPU) "
                 "is discarded and run again")
      ->check(CLI::Range(0.0, 100000.0))
      ->capture_default_str();
  app.add_option("--busy-retries", o.busy_retries,
                 "How often a run is repeated because the machine was busy; the last one is "
                 "kept (and counted) after that")
      ->check(CLI::Range(0, 100))
      ->capture_default_str();
  app.add_flag("--json", o.json, "Print the results as one JSON object instead of a table");
  app.add_flag("--keep-dir", o.keep_dir, "Keep the temporary directory (daemon logs)");
  app.footer(
      "Progress goes to stderr, results to stdout. Exit status: 0 when every run succeeded "
      "(whether or not the targets were met), 1 when a run failed, 2 on usage errors.\n"
      "See bench/README.md for what each figure means and how it is measured.");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp &e) {
    return app.exit(e);
  } catch (const CLI::ParseError &e) {
    app.exit(e);
    return 2;
  }

  BenchContext ctx{o, {}, {}, 1, 0};
  for (std::size_t i = 0; i < kPayloadVariants; ++i) {
    ctx.payloads.push_back(make_payload(o.payload_bytes, i));
  }
  // The payloads must be what the daemon accepts, or the throughput would be of rejects.
  kronop::EnvelopeValidator validator;
  for (const auto &p : ctx.payloads) {
    if (p.size() != o.payload_bytes || validator.check_json_object(p) != kronop::Reject::kNone) {
      std::fprintf(stderr, "kronop-ipc-bench: cannot build a %zu-byte JSON payload\n",
                   o.payload_bytes);
      return 2;
    }
  }
  if (::access(o.kronopd.c_str(), X_OK) != 0) {
    std::fprintf(stderr, "kronop-ipc-bench: %s is not an executable (use --kronopd)\n",
                 o.kronopd.c_str());
    return 2;
  }
  char tmpl[] = "/tmp/kronop-bench-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    std::fprintf(stderr, "kronop-ipc-bench: mkdtemp: %s\n", std::strerror(errno));
    return 1;
  }
  ctx.work_dir = tmpl;
  std::signal(SIGINT, on_interrupt);
  std::signal(SIGTERM, on_interrupt);
  std::signal(SIGPIPE, SIG_IGN);
  ctx.ns_per_tick = calibrate_ns_per_tick();

  std::vector<Metrics> runs;
  RunLog log;
  for (int r = 1; r <= o.repeat && interrupted == 0; ++r) {
    for (const Scenario &sc : kScenarios) {
      if (std::find(o.scenarios.begin(), o.scenarios.end(), sc.name) == o.scenarios.end()) {
        continue;
      }
      kronop::Result<Metrics> m = kronop::Error{1, "not run"};
      for (int attempt = 0;; ++attempt) {
        std::fprintf(stderr, "run %d/%d %-16s ... ", r, o.repeat, sc.name);
        std::fflush(stderr);
        if (o.quiet_wait_seconds > 0) {
          const double load = wait_for_quiet_machine(o.quiet_pct, o.quiet_wait_seconds);
          if (load >= o.quiet_pct) {
            std::fprintf(stderr, "(machine busy before the run: others used %.0f %% of a CPU) ",
                         load);
          }
        }
        m = sc.run(ctx);
        if (!m.ok() || interrupted != 0) break;
        const double other = other_load(m.value());
        if (other <= o.max_other_load || attempt >= o.busy_retries) {
          if (other > o.max_other_load) ++log.busy_kept;
          break;
        }
        ++log.busy_discarded;
        std::fprintf(stderr, "discarded: others used %.0f %% of a CPU meanwhile\n", other);
      }
      if (interrupted != 0) {
        std::fprintf(stderr, "interrupted\n");
        break;
      }
      if (!m.ok()) {
        std::fprintf(stderr, "FAILED\n%s\n", m.error().message.c_str());
        log.errors.push_back(std::string(sc.name) + " run " + std::to_string(r) + ": " +
                             m.error().message);
        continue;
      }
      std::fprintf(stderr, "%s (others: %.0f %% of a CPU)\n", headline(m.value()).c_str(),
                   other_load(m.value()));
      ++log.succeeded[sc.name];
      runs.push_back(std::move(m).value());
    }
  }
  if (o.keep_dir) {
    std::fprintf(stderr, "daemon logs kept in %s\n", ctx.work_dir.c_str());
  } else {
    std::error_code ec;
    std::filesystem::remove_all(ctx.work_dir, ec);
  }
  const auto agg = aggregate(runs);
  if (o.json) {
    print_json(o, agg, log);
  } else {
    std::printf("\n");
    print_table(o, agg, log);
  }
  if (interrupted != 0) return 128 + interrupted;
  return log.errors.empty() ? 0 : 1;
}
