// The project's clocks, in one place. CLOCK_REALTIME stamps records (producers and the
// daemon on one host read the same clock, so publish-to-ingest latency is a difference of
// two readings); CLOCK_MONOTONIC measures intervals. Both are vDSO calls: no syscall.
#pragma once

#include <cstdint>
#include <ctime>

namespace kronop {

inline uint64_t clock_ns(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
}
inline uint64_t realtime_ns() { return clock_ns(CLOCK_REALTIME); }
inline uint64_t monotonic_ns() { return clock_ns(CLOCK_MONOTONIC); }
inline uint64_t monotonic_ms() { return monotonic_ns() / 1000000; }

}  // namespace kronop
