// A mapping of Kronop's shared-memory segment (/dev/shm/<name>), made with
// Boost.Interprocess. The daemon creates or re-attaches it; producers open it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "kronop/ipc/segment_layout.h"
#include "kronop/result.h"

namespace kronop::ipc {

inline constexpr const char *kDefaultSegmentName = "kronop";

struct SegmentOptions {
  std::string name = kDefaultSegmentName;
  uint32_t ring_count = 64;
  uint64_t ring_capacity = uint64_t{1} << 20;  // 1 MiB per ring
};

class Segment {
 public:
  ~Segment();
  Segment(const Segment &) = delete;
  Segment &operator=(const Segment &) = delete;

  // Daemon side. Re-attaches to an existing segment of a compatible layout (keeping its
  // rings, its records and its geometry, which then wins over `options`), or creates a new
  // one with mode 0660, replacing one of an incompatible layout. Fails when another live
  // daemon is attached. `note` receives a line for the log describing what happened.
  static Result<std::unique_ptr<Segment>> attach_as_daemon(const SegmentOptions &options,
                                                           std::string *note);

  // Daemon side, when the file at /dev/shm/<name> is no longer the one `this` daemon maps
  // (removed, or replaced by someone else's): a new, empty segment of `geometry`, made
  // whole under a temporary name and renamed over /dev/shm/<name>, with `daemon`'s identity
  // and epoch in its header. Refused when what is there now is a segment another live
  // kronopd is attached to.
  struct DaemonIdentity {
    uint32_t pid = 0;
    uint64_t start_ticks = 0;
    uint64_t epoch = 0;
    uint64_t heartbeat_ns = 0;
  };
  static Result<std::unique_ptr<Segment>> create_in_place(const std::string &name,
                                                          const SegmentGeometry &geometry,
                                                          const DaemonIdentity &daemon);

  // Producer side: opens an existing, ready segment.
  static Result<std::unique_ptr<Segment>> open_as_producer(std::string_view name);

  // Daemon side, now and then: puts back what others changed that only the daemon may
  // write. A file shrunk below the mapping is grown back (what was cut off is lost: zeros);
  // a header that no longer says what the daemon wrote (geometry, ready, not retired, the
  // daemon's identity and epoch) is written again. Returns what was found ("" when nothing);
  // never reads past the mapping. See shrink_guard.h for shrinking between two calls.
  std::string restore(uint32_t daemon_pid, uint64_t daemon_start_ticks, uint64_t epoch);

  // What /dev/shm/<name> is now: this mapping's file, nothing, or another file. Producers
  // that open the name reach this mapping only in the first case.
  enum class Named { kThis, kRemoved, kReplaced };
  Named named() const;

  // Removes /dev/shm/<name> (tests, `kronopd --shm-reset`). True if it existed.
  static bool remove(std::string_view name);

  SegmentHeader *header() const { return header_; }
  const SegmentGeometry &geometry() const { return geometry_; }
  RingControl *ring(uint32_t index) const {
    return reinterpret_cast<RingControl *>(reinterpret_cast<uint8_t *>(header_) +
                                           geometry_.rings_offset() +
                                           uint64_t{index} * geometry_.ring_stride());
  }
  const std::string &name() const { return name_; }
  // The segment file, open read-write, and the size of this process's mapping of it.
  int fd() const;
  uint64_t mapped_size() const;

 private:
  struct Mapping;
  Segment(std::string name, std::unique_ptr<Mapping> mapping, SegmentGeometry geometry);
  // Creates /dev/shm/<name> (mode 0660, failing if it exists) of `size` zero bytes, mapped.
  static Result<bool> create_file(Mapping &mapping, const std::string &name, uint64_t size);

  std::string name_;
  std::unique_ptr<Mapping> mapping_;
  SegmentHeader *header_ = nullptr;
  SegmentGeometry geometry_;
};

}  // namespace kronop::ipc
