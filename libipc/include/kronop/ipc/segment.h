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

  // Producer side: opens an existing, ready segment.
  static Result<std::unique_ptr<Segment>> open_as_producer(std::string_view name);

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

 private:
  struct Mapping;
  Segment(std::string name, std::unique_ptr<Mapping> mapping, SegmentGeometry geometry);

  std::string name_;
  std::unique_ptr<Mapping> mapping_;
  SegmentHeader *header_ = nullptr;
  SegmentGeometry geometry_;
};

}  // namespace kronop::ipc
