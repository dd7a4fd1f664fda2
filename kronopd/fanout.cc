// Fan-out hand-off and encoding; see fanout.h.
#include "fanout.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/util/json_util.h>

#include "kronop/v1/envelope.pb.h"
#include "kronop/v1/presence.pb.h"
#include "kronop/v1/reel.pb.h"
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

SharedFrame text_frame_of(std::string_view text) { return frame_of(ws::Opcode::kText, text); }

// The message type an event's JSON body maps onto for protobuf clients, if any.
const google::protobuf::Message *schema_of_event(std::string_view event, BodyKind *kind) {
  struct Entry {
    std::string_view event;
    BodyKind kind;
    const google::protobuf::Message *prototype;
  };
  static const Entry kSchemas[] = {
      {"reel_update", BodyKind::kReelUpdate, &kronop::v1::ReelUpdate::default_instance()},
      {"interaction", BodyKind::kInteraction, &kronop::v1::Interaction::default_instance()},
      {"user_activity", BodyKind::kUserActivity, &kronop::v1::UserActivity::default_instance()},
      {"presence_update", BodyKind::kPresence, &kronop::v1::PresenceUpdate::default_instance()},
      {"system_notice", BodyKind::kSystemNotice, &kronop::v1::SystemNotice::default_instance()},
  };
  for (const Entry &e : kSchemas) {
    if (e.event == event) {
      *kind = e.kind;
      return e.prototype;
    }
  }
  return nullptr;
}

// A JSON body as its event's message, when it maps onto it exactly.
bool json_to_typed(std::string_view event, const std::string &json, BodyKind *kind,
                   std::string *bytes) {
  BodyKind typed = BodyKind::kNone;
  const google::protobuf::Message *prototype = schema_of_event(event, &typed);
  if (prototype == nullptr) return false;
  std::unique_ptr<google::protobuf::Message> m(prototype->New());
  google::protobuf::util::JsonParseOptions opts;
  opts.ignore_unknown_fields = false;
  if (!google::protobuf::util::JsonStringToMessage(json, m.get(), opts).ok()) return false;
  if (!m->SerializeToString(bytes)) return false;
  *kind = typed;
  return true;
}

bool typed_to_json(const google::protobuf::Message &prototype, const std::string &bytes,
                   std::string *json, std::vector<std::string> *targets) {
  std::unique_ptr<google::protobuf::Message> m(prototype.New());
  if (!m->ParseFromString(bytes)) return false;
  if (auto *u = dynamic_cast<kronop::v1::ReelUpdate *>(m.get())) {
    targets->assign(u->target_users().begin(), u->target_users().end());
  }
  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = true;
  return google::protobuf::util::MessageToJsonString(*m, json, opts).ok();
}

}  // namespace

FanoutQueue::FanoutQueue(uv_loop_t *loop, BatchHandler handler) : handler_(std::move(handler)) {
  uv_async_init(loop, &async_, on_async);
  async_.data = this;
}

FanoutQueue::~FanoutQueue() = default;

void FanoutQueue::push(const EnvelopeView &view) {
  staged_.push_back(OutboundMessage{std::string(view.topic), std::string(view.event),
                                    view.body_kind, std::string(view.body), view.priority,
                                    view.publish_time_ns});
}

void FanoutQueue::flush() {
  if (staged_.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closed_) {
      staged_.clear();
      return;
    }
    if (pending_.empty()) {
      pending_.swap(staged_);
    } else {
      for (auto &m : staged_) pending_.push_back(std::move(m));
      staged_.clear();
    }
  }
  // Coalesced by libuv: batches sent before the loop runs cost one wake-up.
  uv_async_send(&async_);
}

void FanoutQueue::close() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ = true;
  }
  if (!uv_is_closing(reinterpret_cast<uv_handle_t *>(&async_))) {
    uv_close(reinterpret_cast<uv_handle_t *>(&async_), nullptr);
  }
}

void FanoutQueue::on_async(uv_async_t *handle) {
  auto *self = static_cast<FanoutQueue *>(handle->data);
  {
    std::lock_guard<std::mutex> lock(self->mutex_);
    self->draining_.swap(self->pending_);
  }
  if (!self->draining_.empty()) self->handler_(self->draining_);
  self->draining_.clear();
}

bool MessageEncoder::encode(const OutboundMessage &m, uint64_t seq, EncodedMessage &out) {
  out.target_users.clear();
  out.phoenix_binary.reset();
  std::string object;
  switch (m.body_kind) {
    case BodyKind::kJson:
      object = m.body;
      break;
    case BodyKind::kReelUpdate:
      if (!typed_to_json(kronop::v1::ReelUpdate::default_instance(), m.body, &object,
                         &out.target_users))
        return false;
      break;
    case BodyKind::kInteraction:
      if (!typed_to_json(kronop::v1::Interaction::default_instance(), m.body, &object,
                         &out.target_users))
        return false;
      break;
    case BodyKind::kPresence:
      if (!typed_to_json(kronop::v1::PresenceUpdate::default_instance(), m.body, &object,
                         &out.target_users))
        return false;
      break;
    case BodyKind::kUserActivity:
      if (!typed_to_json(kronop::v1::UserActivity::default_instance(), m.body, &object,
                         &out.target_users))
        return false;
      break;
    case BodyKind::kSystemNotice:
      if (!typed_to_json(kronop::v1::SystemNotice::default_instance(), m.body, &object,
                         &out.target_users))
        return false;
      break;
    case BodyKind::kNone:
      return false;
  }
  out.seq = seq;
  out.payload_json = phoenix::insert_seq(object, out.seq);
  out.phoenix_text =
      text_frame_of(phoenix::encode_text_broadcast(m.topic, m.event, out.payload_json));
  // Topic and event passed valid_topic/valid_event (safe characters only), so they need no
  // escaping; the payload is a JSON object.
  std::string plain;
  plain.reserve(m.topic.size() + m.event.size() + out.payload_json.size() + 40);
  plain += "{\"topic\":\"";
  plain += m.topic;
  plain += "\",\"event\":\"";
  plain += m.event;
  plain += "\",\"payload\":";
  plain += out.payload_json;
  plain += "}";
  out.plain_text = text_frame_of(plain);
  return true;
}

std::string client_envelope(const OutboundMessage &m, uint64_t seq) {
  kronop::v1::Envelope head;
  head.set_topic(m.topic);
  head.set_event(m.event);
  head.set_publish_time_ns(m.publish_time_ns);
  head.set_priority(static_cast<kronop::v1::Priority>(m.priority));
  head.set_seq(seq);
  std::string out = head.SerializeAsString();
  // The body is appended as its oneof field, bytes as they are: a serialized message is a
  // valid length-delimited field value, so a typed body is never parsed and re-encoded.
  BodyKind kind = m.body_kind;
  std::string converted;
  const std::string *body = &m.body;
  if (kind == BodyKind::kJson && json_to_typed(m.event, m.body, &kind, &converted)) {
    body = &converted;
  } else if (kind == BodyKind::kNone) {
    return out;
  }
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.WriteTag(static_cast<uint32_t>(kind) << 3 | 2);  // wire type 2: length-delimited
    coded.WriteVarint32(static_cast<uint32_t>(body->size()));
    coded.WriteRaw(body->data(), static_cast<int>(body->size()));
  }
  return out;
}

void MessageEncoder::encode_binary(const OutboundMessage &m, EncodedMessage &out) {
  auto frame = phoenix::encode_binary_broadcast(m.topic, m.event, client_envelope(m, out.seq));
  // Topics and events that pass validation are far shorter than a binary field's 255 bytes.
  if (!frame.ok()) return;
  out.phoenix_binary = frame_of(ws::Opcode::kBinary, frame.value());
}

uint64_t MessageEncoder::last_seq(const std::string &topic) const {
  auto it = seq_.find(topic);
  return it == seq_.end() ? 0 : it->second;
}

}  // namespace kronop::daemon
