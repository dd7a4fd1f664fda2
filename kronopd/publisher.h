// The daemon's own producer: what clients push (likes, comments, shares, status) and what
// REST callers post enters the rings like any producer's record, so it is validated,
// numbered, fanned out (and, with the durable log, logged) by the same path as everything
// else. One ring lease for the whole daemon, shared by the I/O threads under a mutex: these
// are client-paced writes, far from the rate that would make the lock matter.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "kronop/ipc/producer.h"
#include "kronop/result.h"
#include "kronop/v1/envelope.pb.h"
#include "kronop_ipc.h"

namespace kronop::daemon {

class Publisher {
 public:
  Publisher(std::unique_ptr<ipc::Producer> producer, std::string shm_name)
      : producer_(std::move(producer)), shm_name_(std::move(shm_name)) {}

  // The daemon's own lease of a ring in segment `shm_name`.
  static Result<std::unique_ptr<Publisher>> open(const std::string &shm_name) {
    auto producer = ipc::Producer::open(shm_name);
    if (!producer.ok()) {
      return Error{producer.error().code,
                   "lease a ring for kronopd's own publishing: " + producer.error().message};
    }
    return std::make_unique<Publisher>(std::move(producer).value(), shm_name);
  }

  // Any thread. KRONOP_OK, or a KRONOP_E* code (KRONOP_EFULL when the ring has no room:
  // never waits, since the caller is an event loop).
  int publish(const kronop::v1::Envelope &envelope) {
    std::string bytes;
    if (!envelope.SerializeToString(&bytes)) return KRONOP_EINVAL;
    std::lock_guard<std::mutex> lock(mutex_);
    int rc = producer_ ? producer_->publish_envelope(bytes) : KRONOP_ENODAEMON;
    if (rc != KRONOP_ENODAEMON) return rc;
    // The segment was retired (its file was removed or replaced, and kronopd created it
    // again): give the old ring back, so that the old segment can be let go, and lease one
    // in the segment now under the name.
    producer_.reset();
    auto again = ipc::Producer::open(shm_name_);
    if (!again.ok()) return again.error().code;
    producer_ = std::move(again).value();
    return producer_->publish_envelope(bytes);
  }

  // Any thread (the ingest thread, as it creates the segment again): gives back a ring of a
  // retired segment now rather than at the next publish, which may be long in coming, so
  // that the old segment can be let go. The next publish leases a ring in the new one.
  void let_go_if_retired() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (producer_ && producer_->segment_retired()) producer_.reset();
  }

 private:
  std::mutex mutex_;
  std::unique_ptr<ipc::Producer> producer_;
  const std::string shm_name_;
};

}  // namespace kronop::daemon
