// The SIGBUS handler that grows a shrunk segment back; see shrink_guard.h.
//
// The handler runs on the faulting thread at any point, so it only reads lock-free atomics
// and calls async-signal-safe functions (ftruncate, sigaction). Slots are claimed with a CAS
// on `base`; a slot's size and fd are written before its base is published (release) and
// read after the base is seen (acquire).
#include "kronop/ipc/shrink_guard.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>

namespace kronop::ipc {
namespace {

struct Slot {
  std::atomic<uintptr_t> base{0};
  std::atomic<uint64_t> size{0};
  std::atomic<int> fd{-1};
};

Slot g_slots[kMaxGuarded];
std::atomic<uint64_t> g_faults{0};
std::atomic<bool> g_installed{false};
struct sigaction g_previous {};

// The previous handler is called through a pointer. Under clang's UBSan that call gets a
// function-type check whose handler lives in the C++ runtime, which a C program linking
// libkronop_ipc (the C ABI) does not have: the check is left out here.
#if defined(__clang__)
__attribute__((no_sanitize("function")))
#endif
void pass_on(int sig, siginfo_t *info, void *context) {
  if ((g_previous.sa_flags & SA_SIGINFO) != 0 && g_previous.sa_sigaction != nullptr) {
    g_previous.sa_sigaction(sig, info, context);
    return;
  }
  if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN &&
      g_previous.sa_handler != nullptr) {
    g_previous.sa_handler(sig);
    return;
  }
  // The default action: returning re-executes the access, which faults again, now fatally.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(SIGBUS, &dfl, nullptr);
}

void on_sigbus(int sig, siginfo_t *info, void *context) {
  const auto addr = reinterpret_cast<uintptr_t>(info->si_addr);
  for (Slot &s : g_slots) {
    const uintptr_t base = s.base.load(std::memory_order_acquire);
    if (base <= 1 || addr < base) continue;  // 1: a slot being claimed
    const uint64_t size = s.size.load(std::memory_order_relaxed);
    if (addr - base >= size) continue;
    const int saved_errno = errno;
    const int rc = ftruncate(s.fd.load(std::memory_order_relaxed), static_cast<off_t>(size));
    errno = saved_errno;
    if (rc != 0) break;  // cannot repair: let it be fatal rather than loop on the fault
    g_faults.fetch_add(1, std::memory_order_relaxed);
    return;  // the access is retried and now finds a (zero-filled) page
  }
  pass_on(sig, info, context);
}

}  // namespace

void protect_from_shrinking() {
  if (g_installed.exchange(true)) return;
  struct sigaction sa {};
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGBUS, &sa, &g_previous);
}

bool shrinking_protected() { return g_installed.load(std::memory_order_acquire); }

bool guard_mapping(void *base, uint64_t size, int fd) {
  for (Slot &s : g_slots) {
    uintptr_t expected = 0;
    // A claimed slot whose base is still being written reads as "claimed" (1) to others.
    if (!s.base.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) continue;
    s.size.store(size, std::memory_order_relaxed);
    s.fd.store(fd, std::memory_order_relaxed);
    s.base.store(reinterpret_cast<uintptr_t>(base), std::memory_order_release);
    return true;
  }
  return false;
}

void unguard_mapping(void *base) {
  for (Slot &s : g_slots) {
    uintptr_t expected = reinterpret_cast<uintptr_t>(base);
    if (s.base.compare_exchange_strong(expected, 0, std::memory_order_acq_rel)) return;
  }
}

uint64_t shrink_faults() { return g_faults.load(std::memory_order_relaxed); }

}  // namespace kronop::ipc
