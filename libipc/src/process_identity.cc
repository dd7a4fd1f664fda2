// Reads process start times from /proc, for lease ownership (see segment_layout.h).
#include "kronop/ipc/process_identity.h"

#include <fcntl.h>
#include <unistd.h>
#include <cstdio>
#include <cstring>

#include "kronop/ipc/segment_layout.h"

namespace kronop::ipc {

std::optional<uint64_t> process_start_ticks(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char buf[1024];
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return std::nullopt;
  buf[n] = '\0';
  // The command name (field 2) is in parentheses and may itself hold ')' or spaces, so
  // fields are counted from the last ')'.
  char *p = std::strrchr(buf, ')');
  if (p == nullptr) return std::nullopt;
  ++p;  // now at " S ppid ..." : field 3 is the state
  int field = 2;
  char state = '?';
  while (*p != '\0') {
    while (*p == ' ') ++p;
    if (*p == '\0') break;
    ++field;
    if (field == 3) state = *p;
    if (field == 22) {
      if (state == 'Z' || state == 'X') return std::nullopt;
      return std::strtoull(p, nullptr, 10);
    }
    while (*p != ' ' && *p != '\0') ++p;
  }
  return std::nullopt;
}

bool lease_holder_alive(uint64_t lease_word) {
  if (lease_word == 0) return false;
  auto ticks = process_start_ticks(static_cast<pid_t>(lease_pid(lease_word)));
  return ticks.has_value() && static_cast<uint32_t>(*ticks) == lease_start(lease_word);
}

}  // namespace kronop::ipc
