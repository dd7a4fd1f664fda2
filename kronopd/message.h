// One message on its way to subscribers, encoded once per wire format.
//
// A Message is made once per numbered record (on the ingest thread, from the validated copy
// of the record: ring memory is never read here) and is then immutable and shared by
// reference count: every I/O loop, and every connection on it, sends the same frame bytes.
// The JSON Phoenix frame, which nearly every subscriber takes, is encoded at once; the rarer
// formats (the plain endpoints' JSON, format=protobuf's binary frame) on first use, at most
// once whichever loop asks first (std::call_once).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "envelope_validation.h"

namespace kronop::v1 {
class Envelope;
}  // namespace kronop::v1

namespace kronop::daemon {

// The bytes of one WebSocket frame (header included), shared by every connection it goes to.
using SharedFrame = std::shared_ptr<const std::string>;

// One message on its way to subscribers. Immutable once handed to the loops, except for the
// lazily built frames, which are built at most once (thread-safe).
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
class Message {
 public:
  // Copies what it needs out of `view` (ring memory) and encodes the JSON payload and the
  // Phoenix text frame. nullptr when a typed body does not convert to JSON.
  static std::shared_ptr<const Message> make(const EnvelopeView &view, uint64_t seq);
  // A message the daemon makes itself and does not number or log (presence_diff): the
  // payload is sent as given (a JSON object the caller built), to every subscriber as JSON
  // text, protobuf sockets included, since phoenix.js's Presence reads JSON.
  static std::shared_ptr<const Message> make_ephemeral(std::string topic, std::string event,
                                                       std::string payload_json);

  const std::string &topic() const { return topic_; }
  const std::string &event() const { return event_; }
  uint64_t seq() const { return seq_; }
  int priority() const { return priority_; }
  uint64_t publish_time_ns() const { return publish_time_ns_; }
  BodyKind body_kind() const { return body_kind_; }
  const std::string &body() const { return body_; }
  const std::string &payload_json() const { return payload_json_; }
  // ReelUpdate.target_users: deliver only to these users' sockets when not empty.
  const std::vector<std::string> &target_users() const { return target_users_; }
  // JSON text to every socket (see make_ephemeral).
  bool json_only() const { return json_only_; }

  // [null,null,topic,event,payload] in a text frame.
  const SharedFrame &phoenix_text() const { return phoenix_text_; }
  // {"topic":..,"event":..,"payload":..} in a text frame (built on first use).
  const SharedFrame &plain_text() const;
  // The kind-2 binary broadcast of the Envelope (built on first use).
  const SharedFrame &phoenix_binary() const;

 private:
  Message() = default;

  std::string topic_;
  std::string event_;
  uint64_t seq_ = 0;
  int priority_ = 0;
  uint64_t publish_time_ns_ = 0;
  BodyKind body_kind_ = BodyKind::kNone;
  std::string body_;
  std::string payload_json_;
  std::vector<std::string> target_users_;
  bool json_only_ = false;
  SharedFrame phoenix_text_;
  mutable std::once_flag plain_once_;
  mutable std::once_flag binary_once_;
  mutable SharedFrame plain_text_;
  mutable SharedFrame phoenix_binary_;
};
using MessagePtr = std::shared_ptr<const Message>;

// The Envelope that protobuf clients receive for a message (see Message); exposed for the
// tests. Returns the serialized bytes.
std::string client_envelope(const Message &m);

// Envelope's head (topic, event, producer identity, time, priority) from a validated view.
void copy_envelope_head(const EnvelopeView &v, kronop::v1::Envelope &e);
// A validated view as Envelope bytes again (what a cluster node sends Redis): its head, then
// the body as its oneof field, bytes as they are.
std::string envelope_bytes(const EnvelopeView &v);
// Appends `body` to serialized Envelope bytes as the oneof field `kind` (not kNone): a
// serialized message is a valid length-delimited field value, so a typed body is never
// parsed and encoded again.
void append_body_field(std::string &out, BodyKind kind, std::string_view body);

}  // namespace kronop::daemon
