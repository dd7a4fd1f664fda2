// Counters written by one thread and read by any (docs/ARCHITECTURE.md, "Atomics for
// counters"): the owner adds with a relaxed load and store, no read-modify-write, since no
// other thread writes; readers load them relaxed.
#pragma once

#include <atomic>
#include <cstdint>

namespace kronop::daemon {

// Adds `n` to a counter only the calling thread writes.
inline void bump_owned(std::atomic<uint64_t> &c, uint64_t n = 1) {
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

}  // namespace kronop::daemon
