// The open-file limit; see file_limit.h.
#include "file_limit.h"

#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "log.h"

namespace kronop::daemon {
namespace {
// --max-connections' own upper bound: a derived value never says more than a flag could.
constexpr uint64_t kMostConnections = 100'000'000;

struct FileLimitPlan {
  uint64_t max_connections;  // the clients kronopd is sized for
  bool too_low;              // an explicit --max-connections the limit cannot meet
};

// The plan for `requested` connections (0: as many as the limit allows) under a soft limit of
// `nofile` descriptors (RLIM_INFINITY: no limit).
FileLimitPlan plan_connections(uint64_t requested, uint64_t nofile) {
  const uint64_t possible =
      nofile == RLIM_INFINITY
          ? kMostConnections
          : std::clamp<uint64_t>(nofile > kReservedFiles ? nofile - kReservedFiles : 1, 1,
                                 kMostConnections);
  if (requested == 0) return {possible, false};
  return {requested, nofile != RLIM_INFINITY && requested > possible};
}

}  // namespace

void fit_file_limit(Config &config) {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return;
  const rlim_t before = lim.rlim_cur;
  if (lim.rlim_cur != lim.rlim_max) {
    rlimit raised{lim.rlim_max, lim.rlim_max};
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) {
      lim = raised;
    } else {
      // A hard limit of "unlimited" is above what the kernel allows (fs.nr_open): the soft
      // limit stays, and the plan below follows it.
      KLOG_DEBUG("event=file_limit_not_raised nofile=%llu hard=%llu error=%s",
                 static_cast<unsigned long long>(lim.rlim_cur),
                 static_cast<unsigned long long>(lim.rlim_max),
                 log::q(std::strerror(errno)).c_str());
    }
  }
  const bool derived = config.max_connections == 0;
  const FileLimitPlan plan = plan_connections(config.max_connections, lim.rlim_cur);
  config.max_connections = plan.max_connections;
  const auto u = [](uint64_t v) { return static_cast<unsigned long long>(v); };
  if (plan.too_low) {
    KLOG_WARN(
        "event=file_limit_low nofile=%llu max_connections=%llu clients_possible=%llu "
        "hint=\"raise LimitNOFILE (systemd) or ulimit -n, or lower --max-connections\"",
        u(lim.rlim_cur), u(plan.max_connections),
        u(lim.rlim_cur > kReservedFiles ? lim.rlim_cur - kReservedFiles : 0));
  } else {
    KLOG_INFO("event=file_limit nofile=%llu raised_from=%llu max_connections=%llu source=%s",
              u(lim.rlim_cur), u(before), u(plan.max_connections),
              derived ? "open_file_limit" : "max-connections");
  }
}

}  // namespace kronop::daemon
