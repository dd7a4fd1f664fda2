// The open-file limit and --max-connections: every client connection is a file descriptor,
// so the process's RLIMIT_NOFILE bounds how many clients kronopd can hold.
//
// At start kronopd raises its soft limit to the hard one (as Redis and nginx do: the soft
// limit, often 1024, is a default for programs that never asked, the hard one is what the
// administrator allows, LimitNOFILE= under systemd). With no --max-connections (0, the
// default) kronopd is sized for what that limit allows, less a reserve for its own
// descriptors, and there is nothing to warn about. Only a --max-connections given (flag or
// file) that the limit cannot meet is worth a warning: the operator asked for more than the
// host gives.
#pragma once

#include <cstdint>

#include "config.h"

namespace kronop::daemon {

// Descriptors kronopd keeps for itself beyond its clients: the segment, the durable log's
// files, the control socket and its clients, the loops' epoll and event descriptors, and a
// margin.
inline constexpr uint64_t kReservedFiles = 64;

// Raises the soft RLIMIT_NOFILE to the hard limit, sets config.max_connections (when it is 0)
// to what the limit allows, and logs file_limit_low when an explicit value is above it.
// Called once at start, before the I/O loops accept.
void fit_file_limit(Config &config);

}  // namespace kronop::daemon
