// Protection of a process's segment mappings against the segment file being shrunk.
//
// Any member of the producer group may truncate /dev/shm/<name>. Every page of a mapping
// past the file's new end then faults with SIGBUS on its next access, in whichever thread
// touches it: for kronopd, the ingest thread reading a ring, the I/O threads publishing
// clients' records, the control thread reading counters. A producer must not be able to
// kill the daemon that way.
//
// Choice: contain the fault where it happens, rather than check the file's size before each
// access (a system call per record, and still racy: the file may shrink between the check
// and the access) or map privately (the rings must be shared). Once protect_from_shrinking()
// is called, every Segment the process maps registers its range and file descriptor here.
// A SIGBUS whose address lies in a registered range is answered by growing the file back to
// the mapping's size (ftruncate, async-signal-safe); the faulting access is then retried and
// finds a zero-filled page, which every reader of the segment already treats as untrusted
// (a zero header is a corrupt range, a zero write_pos one that moved backwards). The bytes
// that were cut off are gone: records not yet read from the rings there are lost, which is
// counted and reported by the daemon (Consumer::check_segment), never hidden. A SIGBUS
// anywhere else goes to the handler that was installed before (or the default action).
#pragma once

#include <cstdint>

namespace kronop::ipc {

// Installs the SIGBUS handler (once per process); segments mapped from now on are guarded.
void protect_from_shrinking();
bool shrinking_protected();

// Segment's side: a mapping of `size` bytes at `base` of the file open as `fd`. Up to
// kMaxGuarded mappings at once; false when none is free (the mapping is then unguarded).
inline constexpr int kMaxGuarded = 8;
bool guard_mapping(void *base, uint64_t size, int fd);
void unguard_mapping(void *base);

// Faults contained so far (each one grew the file back once).
uint64_t shrink_faults();

}  // namespace kronop::ipc
