// Fan-out hand-off and encoding; see fanout.h.
#include "fanout.h"

#include <google/protobuf/util/json_util.h>

#include "kronop/v1/presence.pb.h"
#include "kronop/v1/reel.pb.h"
#include "phoenix.h"
#include "websocket.h"

namespace kronop::daemon {
namespace {

SharedFrame text_frame_of(std::string_view text) {
  auto header = ws::frame_header(ws::Opcode::kText, text.size());
  auto frame = std::make_shared<std::string>();
  frame->reserve(header.size + text.size());
  frame->append(header.view());
  frame->append(text);
  return frame;
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
                                    view.body_kind, std::string(view.body), view.priority});
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

uint64_t MessageEncoder::last_seq(const std::string &topic) const {
  auto it = seq_.find(topic);
  return it == seq_.end() ? 0 : it->second;
}

}  // namespace kronop::daemon
