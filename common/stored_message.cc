// See stored_message.h.
#include "stored_message.h"

#include "payload_codec.h"

namespace kronop {

StoredMessage StoredMessage::of(const EnvelopeView &view, uint64_t seq, uint64_t epoch) {
  StoredMessage m;
  m.topic.assign(view.topic);
  m.seq = seq;
  m.epoch = epoch;
  m.publish_time_ns = view.publish_time_ns;
  m.event.assign(view.event);
  m.producer_id = view.producer_id;
  m.producer_seq = view.producer_seq;
  m.priority = view.priority;
  m.body_kind = view.body_kind;
  m.body.assign(view.body);
  return m;
}

EnvelopeView StoredMessage::view() const {
  EnvelopeView v;
  v.topic = topic;
  v.event = event;
  v.producer_id = producer_id;
  v.producer_seq = producer_seq;
  v.publish_time_ns = publish_time_ns;
  v.priority = priority;
  v.body_kind = body_kind;
  v.body = body;
  return v;
}

std::string StoredMessage::payload_json() const {
  return client_payload(body_kind, body, seq).value_or("{}");
}

}  // namespace kronop
