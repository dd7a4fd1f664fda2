#include "log.h"

#include <unistd.h>
#include <atomic>
#include <cstdio>

namespace kronop::log {
namespace {
std::atomic<int> max_level{static_cast<int>(Level::kInfo)};
}

void set_max_level(Level level) { max_level.store(static_cast<int>(level)); }

void write(Level level, const char *fmt, ...) {
  if (static_cast<int>(level) > max_level.load(std::memory_order_relaxed)) return;
  char line[2048];
  int n = std::snprintf(line, sizeof line, "<%d>", static_cast<int>(level));
  va_list ap;
  va_start(ap, fmt);
  int m = std::vsnprintf(line + n, sizeof line - static_cast<std::size_t>(n) - 1, fmt, ap);
  va_end(ap);
  std::size_t len = static_cast<std::size_t>(n) +
                    std::min<std::size_t>(m < 0 ? 0 : static_cast<std::size_t>(m),
                                          sizeof line - static_cast<std::size_t>(n) - 2);
  line[len++] = '\n';
  // One write per line keeps lines from different threads whole.
  ssize_t ignored = ::write(STDERR_FILENO, line, len);
  (void)ignored;
}

}  // namespace kronop::log
