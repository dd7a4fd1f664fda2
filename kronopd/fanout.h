// Fan-out: from the ingest thread to every subscriber of a topic, encoding each message
// once per wire format.
//
// The ingest thread copies each valid record into a FanoutQueue (a mutex-guarded vector
// swapped out whole by the loop, with one coalesced uv_async_send per batch); the loop then
// numbers the message (per-topic seq), builds each frame once, and hands the same
// reference-counted bytes to every subscribed connection. The loop owns the subscriber
// table; nothing else touches it.
#pragma once

#include <uv.h>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "envelope_validation.h"

namespace kronop::daemon {

// The bytes of one WebSocket frame (header included), shared by every connection it goes to.
using SharedFrame = std::shared_ptr<const std::string>;

struct OutboundMessage {
  std::string topic;
  std::string event;
  BodyKind body_kind = BodyKind::kNone;
  std::string body;
  int priority = 0;
};

class FanoutQueue {
 public:
  using BatchHandler = std::function<void(std::vector<OutboundMessage> &)>;
  FanoutQueue(uv_loop_t *loop, BatchHandler handler);
  ~FanoutQueue();
  FanoutQueue(const FanoutQueue &) = delete;
  FanoutQueue &operator=(const FanoutQueue &) = delete;

  // Ingest thread: copies the record out of the ring into the current batch.
  void push(const EnvelopeView &view);
  // Ingest thread: hands the batch to the loop (one lock, one wake-up per batch).
  void flush();
  // Loop thread: stop receiving (closes the async handle).
  void close();

 private:
  static void on_async(uv_async_t *handle);

  BatchHandler handler_;
  uv_async_t async_{};
  std::mutex mutex_;
  std::vector<OutboundMessage> staged_;    // ingest thread only
  std::vector<OutboundMessage> pending_;   // guarded by mutex_
  std::vector<OutboundMessage> draining_;  // loop thread only
  bool closed_ = false;
};

// What a message looks like to JSON clients: the payload object with "seq" first, built
// once per message. Typed bodies are converted to their JSON mapping (proto field names).
struct EncodedMessage {
  uint64_t seq = 0;
  std::string payload_json;
  SharedFrame phoenix_text;               // [null,null,topic,event,payload] in a text frame
  SharedFrame plain_text;                 // {"topic":..,"event":..,"payload":..} in a text frame
  std::vector<std::string> target_users;  // ReelUpdate.target_users: deliver only to them
};

// Numbers messages per topic and encodes them; one per loop.
class MessageEncoder {
 public:
  // Gives the message the topic's next seq. Cheap: no encoding.
  uint64_t number(const OutboundMessage &m) { return ++seq_[m.topic]; }
  // Builds the frames for a numbered message; false when a typed body does not convert
  // (counted by the caller). Only called when the topic has subscribers.
  bool encode(const OutboundMessage &m, uint64_t seq, EncodedMessage &out);
  uint64_t last_seq(const std::string &topic) const;

 private:
  std::unordered_map<std::string, uint64_t> seq_;
};

}  // namespace kronop::daemon
