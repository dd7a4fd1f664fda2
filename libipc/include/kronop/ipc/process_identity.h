// Telling a live process from a dead one whose pid was reused: a process is identified by
// its pid and its start time (clock ticks after boot, field 22 of /proc/PID/stat).
#pragma once

#include <sys/types.h>
#include <cstdint>
#include <optional>

namespace kronop::ipc {

// The start time of `pid`, or nullopt when no such process exists (or it is a zombie).
std::optional<uint64_t> process_start_ticks(pid_t pid);

// True when the process that took a lease (pid + low 32 bits of its start time) still runs.
bool lease_holder_alive(uint64_t lease_word);

}  // namespace kronop::ipc
