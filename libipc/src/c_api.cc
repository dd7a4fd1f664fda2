// The C ABI of kronop_ipc.h over kronop::ipc::Producer. No exception crosses it: every
// entry point that can allocate catches and returns a code.
#include <cstdio>
#include <cstring>
#include <new>
#include <string_view>

#include "kronop/ipc/producer.h"
#include "kronop_ipc.h"

struct kronop_producer {
  std::unique_ptr<kronop::ipc::Producer> impl;
};

namespace {

thread_local int last_open_error = KRONOP_OK;

void set_error(char *err, size_t errlen, const std::string &msg) {
  if (err != nullptr && errlen > 0) std::snprintf(err, errlen, "%s", msg.c_str());
}

}  // namespace

extern "C" {

kronop_producer *kronop_producer_open(const char *segment_name, char *err, size_t errlen) {
  try {
    auto producer = kronop::ipc::Producer::open(
        segment_name != nullptr ? segment_name : kronop::ipc::kDefaultSegmentName);
    if (!producer.ok()) {
      last_open_error = producer.error().code;
      set_error(err, errlen, producer.error().message);
      return nullptr;
    }
    last_open_error = KRONOP_OK;
    return new kronop_producer{std::move(producer).value()};
  } catch (const std::exception &e) {
    last_open_error = KRONOP_ESYS;
    set_error(err, errlen, e.what());
    return nullptr;
  }
}

int kronop_last_open_error(void) { return last_open_error; }

int kronop_publish(kronop_producer *p, const char *topic, const char *event, const void *payload,
                   size_t len, int priority) {
  if (p == nullptr || topic == nullptr || event == nullptr || payload == nullptr) {
    return KRONOP_EINVAL;
  }
  return p->impl->publish(topic, event, {static_cast<const char *>(payload), len}, priority);
}

int kronop_publish_envelope(kronop_producer *p, const void *envelope_pb, size_t len) {
  if (p == nullptr || envelope_pb == nullptr) return KRONOP_EINVAL;
  return p->impl->publish_envelope({static_cast<const char *>(envelope_pb), len});
}

int kronop_publish_wait(kronop_producer *p, const char *topic, const char *event,
                        const void *payload, size_t len, int priority, int timeout_ms) {
  if (p == nullptr || topic == nullptr || event == nullptr || payload == nullptr) {
    return KRONOP_EINVAL;
  }
  return p->impl->publish_wait(topic, event, {static_cast<const char *>(payload), len}, priority,
                               timeout_ms);
}

void kronop_producer_close(kronop_producer *p) { delete p; }

uint64_t kronop_producer_id(const kronop_producer *p) { return p != nullptr ? p->impl->id() : 0; }

uint64_t kronop_producer_last_seq(const kronop_producer *p) {
  return p != nullptr ? p->impl->last_seq() : 0;
}

size_t kronop_max_payload(const kronop_producer *p) {
  return p != nullptr ? p->impl->max_payload() : 0;
}

const char *kronop_strerror(int code) {
  switch (code) {
    case KRONOP_OK:
      return "ok";
    case KRONOP_EFULL:
      return "ring full: the daemon is behind or not running";
    case KRONOP_ETOOBIG:
      return "record too large for the ring";
    case KRONOP_ENODAEMON:
      return "no kronopd segment (is kronopd running?)";
    case KRONOP_EINVAL:
      return "invalid argument";
    case KRONOP_ENORING:
      return "no free ring in the segment";
    case KRONOP_EACCES:
      return "permission denied on the segment";
    case KRONOP_ELAYOUT:
      return "incompatible segment layout";
    case KRONOP_ETIMEDOUT:
      return "timed out waiting for room in the ring";
    case KRONOP_ESYS:
      return "system error";
    default:
      return "unknown error";
  }
}

}  // extern "C"
