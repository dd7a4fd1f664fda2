// The producer side of libipc: one Producer leases one SPSC ring and writes Envelope
// records into it in place. Not thread-safe by design (one ring, one writer): give each
// publishing thread its own Producer. The C ABI (kronop_ipc.h) wraps this class.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "kronop/ipc/segment.h"
#include "kronop/result.h"

namespace kronop::ipc {

class Producer {
 public:
  // Opens the segment and leases a free ring (KRONOP_ENORING when none is free).
  static Result<std::unique_ptr<Producer>> open(std::string_view segment_name);
  ~Producer();  // frees the lease; published records stay and are delivered
  Producer(const Producer &) = delete;
  Producer &operator=(const Producer &) = delete;

  // KRONOP_OK or a KRONOP_E* code; never blocks.
  int publish(std::string_view topic, std::string_view event, std::string_view json, int priority);
  int publish_envelope(std::string_view envelope_pb);
  // As publish, retrying while the ring is full, for at most timeout_ms.
  int publish_wait(std::string_view topic, std::string_view event, std::string_view json,
                   int priority, int timeout_ms);

  uint64_t id() const { return producer_id_; }
  uint64_t last_seq() const { return seq_; }
  uint32_t ring_index() const { return ring_index_; }
  // The daemon retired this segment (its file was removed or replaced and created again):
  // publish() answers KRONOP_ENODAEMON from now on; close this Producer and open the name
  // again.
  bool segment_retired() const;
  // The largest JSON payload publish() accepts with a topic and event of these sizes.
  std::size_t max_payload(std::size_t topic_len = 64, std::size_t event_len = 32) const;

 private:
  Producer(std::unique_ptr<Segment> segment, uint32_t ring_index, uint64_t producer_id);

  // Finds room for a record of `body` bytes, lets `write(ptr)` fill it, and commits it.
  template <class WriteBody>
  int commit_record(std::size_t body, WriteBody &&write);

  std::unique_ptr<Segment> segment_;
  SegmentHeader *header_;
  RingControl *ring_;
  uint8_t *data_;
  uint64_t capacity_;
  uint64_t mask_;
  uint64_t max_record_;
  uint32_t ring_index_;
  uint64_t producer_id_;
  uint64_t seq_ = 0;
  uint64_t write_pos_;       // our own copy: we are the ring's only writer
  uint64_t cached_release_;  // last release_pos seen; refreshed only when short of room
};

}  // namespace kronop::ipc
