// Messages and their encodings; see message.h.
#include "message.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <simdjson.h>

#include <cstring>

#include "kronop/clock.h"
#include "kronop/v1/envelope.pb.h"
#include "kronop/v1/presence.pb.h"
#include "kronop/v1/reel.pb.h"
#include "payload_codec.h"
#include "phoenix.h"
#include "websocket.h"

namespace kronop::daemon {
namespace {

SharedFrame frame_of(ws::Opcode opcode, std::string_view payload) {
  auto header = ws::frame_header(opcode, payload.size());
  auto frame = std::make_shared<std::string>();
  frame->reserve(header.size + payload.size());
  frame->append(header.view());
  frame->append(payload);
  return frame;
}

}  // namespace

namespace {
// ReelUpdate.target_users of a JSON body: its top-level "target_users" array of strings.
// Only parsed when the text mentions it, so other messages pay one substring search.
void json_target_users(std::string_view json, std::vector<std::string> *out) {
  if (json.find("\"target_users\"") == std::string_view::npos) return;
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(json.data(), json.size(), true).get(root) != simdjson::SUCCESS) return;
  simdjson::dom::array users;
  if (root["target_users"].get_array().get(users) != simdjson::SUCCESS) return;
  for (simdjson::dom::element u : users) {
    std::string_view name;
    if (u.get_string().get(name) == simdjson::SUCCESS) out->emplace_back(name);
  }
}
// The one frame every JSON Phoenix subscriber gets, written in place after its header.
SharedFrame text_broadcast_frame(std::string_view topic, std::string_view event,
                                 std::string_view payload_json) {
  const std::size_t size = phoenix::text_broadcast_size(topic, event, payload_json);
  const auto header = ws::frame_header(ws::Opcode::kText, size);
  auto frame = std::make_shared<std::string>();
  frame->resize(header.size + size);
  std::memcpy(frame->data(), header.view().data(), header.size);
  phoenix::write_text_broadcast(frame->data() + header.size, topic, event, payload_json);
  return frame;
}
}  // namespace

MessagePtr Message::make(const EnvelopeView &view, uint64_t seq) {
  std::shared_ptr<Message> m(new Message);
  m->topic_.assign(view.topic);
  m->event_.assign(view.event);
  m->seq_ = seq;
  m->priority_ = view.priority;
  m->publish_time_ns_ = view.publish_time_ns;
  m->body_kind_ = view.body_kind;
  m->body_.assign(view.body);
  auto payload = client_payload(view.body_kind, m->body_, seq, &m->target_users_);
  if (!payload) return nullptr;
  m->payload_json_ = std::move(*payload);
  if (view.body_kind == BodyKind::kJson && m->event_ == "reel_update") {
    json_target_users(m->body_, &m->target_users_);
  }
  m->phoenix_text_ = text_broadcast_frame(m->topic_, m->event_, m->payload_json_);
  return m;
}

MessagePtr Message::make_ephemeral(std::string topic, std::string event, std::string payload_json) {
  std::shared_ptr<Message> m(new Message);
  m->topic_ = std::move(topic);
  m->event_ = std::move(event);
  m->publish_time_ns_ = realtime_ns();
  m->body_kind_ = BodyKind::kJson;
  m->payload_json_ = std::move(payload_json);
  m->json_only_ = true;
  m->phoenix_text_ = text_broadcast_frame(m->topic_, m->event_, m->payload_json_);
  return m;
}

const SharedFrame &Message::plain_text() const {
  std::call_once(plain_once_, [this] {
    // Topic and event passed valid_topic/valid_event (safe characters only), so they need
    // no escaping; the payload is a JSON object.
    std::string plain;
    plain.reserve(topic_.size() + event_.size() + payload_json_.size() + 40);
    plain += "{\"topic\":\"";
    plain += topic_;
    plain += "\",\"event\":\"";
    plain += event_;
    plain += "\",\"payload\":";
    plain += payload_json_;
    plain += "}";
    plain_text_ = frame_of(ws::Opcode::kText, plain);
  });
  return plain_text_;
}

const SharedFrame &Message::phoenix_binary() const {
  std::call_once(binary_once_, [this] {
    auto frame = phoenix::encode_binary_broadcast(topic_, event_, client_envelope(*this));
    // Topics and events that pass validation are far shorter than a binary field's 255
    // bytes; should that ever change, the frame stays null and is not sent.
    if (frame.ok()) phoenix_binary_ = frame_of(ws::Opcode::kBinary, frame.value());
  });
  return phoenix_binary_;
}

std::string client_envelope(const Message &m) {
  kronop::v1::Envelope head;
  head.set_topic(m.topic());
  head.set_event(m.event());
  head.set_publish_time_ns(m.publish_time_ns());
  head.set_priority(static_cast<kronop::v1::Priority>(m.priority()));
  head.set_seq(m.seq());
  std::string out = head.SerializeAsString();
  // The body is appended as its oneof field, bytes as they are: a serialized message is a
  // valid length-delimited field value, so a typed body is never parsed and re-encoded.
  BodyKind kind = m.body_kind();
  std::string converted;
  const std::string *body = &m.body();
  if (kind == BodyKind::kJson && json_to_typed(m.event(), m.body(), &kind, &converted)) {
    body = &converted;
  } else if (kind == BodyKind::kNone) {
    return out;
  }
  append_body_field(out, kind, *body);
  return out;
}

void append_body_field(std::string &out, BodyKind kind, std::string_view body) {
  google::protobuf::io::StringOutputStream stream(&out);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.WriteTag(static_cast<uint32_t>(kind) << 3 | 2);  // wire type 2: length-delimited
  coded.WriteVarint32(static_cast<uint32_t>(body.size()));
  coded.WriteRaw(body.data(), static_cast<int>(body.size()));
}

void copy_envelope_head(const EnvelopeView &v, kronop::v1::Envelope &e) {
  e.set_topic(std::string(v.topic));
  e.set_event(std::string(v.event));
  e.set_producer_id(v.producer_id);
  e.set_producer_seq(v.producer_seq);
  e.set_publish_time_ns(v.publish_time_ns);
  e.set_priority(static_cast<kronop::v1::Priority>(v.priority));
}

std::string envelope_bytes(const EnvelopeView &v) {
  kronop::v1::Envelope head;
  copy_envelope_head(v, head);
  std::string out = head.SerializeAsString();
  if (v.body_kind != BodyKind::kNone) append_body_field(out, v.body_kind, v.body);
  return out;
}

}  // namespace kronop::daemon
