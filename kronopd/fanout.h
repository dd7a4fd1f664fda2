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
  uint64_t publish_time_ns = 0;
};

// The Envelope that protobuf clients receive for a message (see EncodedMessage); exposed
// for the tests. Returns the serialized bytes.
std::string client_envelope(const OutboundMessage &m, uint64_t seq);

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

// A message's frames, each built at most once per message, whatever the audience.
//
// JSON clients get the payload object with "seq" first; typed bodies are converted to their
// JSON mapping (proto field names).
//
// Protobuf clients (format=protobuf) get a V2 kind-2 binary broadcast whose payload is a
// kronop.v1.Envelope: topic, event, publish_time_ns, priority, seq and the body. A typed body
// is carried as published. A JSON body on an event with a schema (reel_update -> ReelUpdate,
// interaction -> Interaction, user_activity -> UserActivity, presence_update ->
// PresenceUpdate, system_notice -> SystemNotice) is converted to that message when it maps
// onto it exactly (no unknown fields, right types); otherwise it stays JSON (Envelope.json),
// so nothing a producer sent is lost to either audience.
struct EncodedMessage {
  uint64_t seq = 0;
  std::string payload_json;
  SharedFrame phoenix_text;               // [null,null,topic,event,payload] in a text frame
  SharedFrame plain_text;                 // {"topic":..,"event":..,"payload":..} in a text frame
  SharedFrame phoenix_binary;             // kind-2 broadcast of the Envelope; see encode_binary
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
  // Builds out.phoenix_binary for a message encode() accepted; called once per message, and
  // only when a protobuf client subscribes to its topic.
  void encode_binary(const OutboundMessage &m, EncodedMessage &out);
  uint64_t last_seq(const std::string &topic) const;

 private:
  std::unordered_map<std::string, uint64_t> seq_;
};

}  // namespace kronop::daemon
