// Per-reel counters and recent updates; see reels.h.
#include "reels.h"

#include <charconv>

#include "kronop/clock.h"
#include "kronop/v1/envelope.pb.h"
#include "kronop/v1/reel.pb.h"
#include "kronop_ipc.h"
#include "message.h"
#include "payload_codec.h"

namespace kronop::daemon {

namespace {

// A counter update's body. JSON, so that JSON clients get the counts as numbers; protobuf
// clients get it as the ReelUpdate it maps onto (update_data's values as decimal text).
std::string counter_update_json(std::string_view topic, const ReelCounters &c, uint64_t at_ns) {
  const int32_t reel = reel_number(topic);
  std::string json = "{";
  if (reel != 0) json += "\"reel_id\":" + std::to_string(reel) + ",";
  json += "\"update_data\":";
  json += counters_json(c);
  json += ",\"timestamp\":" + std::to_string(at_ns / 1'000'000) + ",\"priority\":\"low\"}";
  return json;
}

// The Interaction an interaction record carries (typed, or a JSON body that maps onto one).
bool read_interaction(const EnvelopeView &view, kronop::v1::Interaction *in) {
  if (view.body_kind == BodyKind::kInteraction) {
    return in->ParseFromArray(view.body.data(), static_cast<int>(view.body.size()));
  }
  return view.body_kind == BodyKind::kJson && json_to_message(view.body, in);
}

}  // namespace

CounterOp counter_op(const EnvelopeView &view) {
  if (!view.topic.starts_with("reel:")) return CounterOp::kNone;
  if (view.event == "reel_update") {
    return view.producer_id == 0 && view.body_kind == BodyKind::kJson ? CounterOp::kTotals
                                                                      : CounterOp::kNone;
  }
  kronop::v1::Interaction in;
  if (view.event != "interaction" || !read_interaction(view, &in)) return CounterOp::kNone;
  switch (in.kind()) {
    case kronop::v1::Interaction::KIND_LIKE:
      return CounterOp::kLike;
    case kronop::v1::Interaction::KIND_COMMENT:
      return CounterOp::kComment;
    case kronop::v1::Interaction::KIND_SHARE:
      return CounterOp::kShare;
    default:
      return CounterOp::kNone;
  }
}

bool with_totals(std::string_view envelope, const ReelCounters &totals, std::string *out) {
  kronop::v1::Envelope e;
  if (!e.ParseFromArray(envelope.data(), static_cast<int>(envelope.size()))) return false;
  if (e.has_interaction()) {
    kronop::v1::Interaction *in = e.mutable_interaction();
    in->set_like_count(totals.likes);
    in->set_comment_count(totals.comments);
    in->set_share_count(totals.shares);
  } else if (e.event() == "reel_update" && e.has_json()) {
    e.set_json(counter_update_json(e.topic(), totals, e.publish_time_ns()));
  } else {
    return false;
  }
  return e.SerializeToString(out);
}

ReelState::ReelState(std::size_t recent_per_reel, std::size_t max_reels)
    : recent_per_reel_(recent_per_reel == 0 ? 1 : recent_per_reel),
      max_reels_(max_reels == 0 ? 1 : max_reels) {}

std::string counters_json(const ReelCounters &c) {
  return "{\"likes\":" + std::to_string(c.likes) + ",\"comments\":" + std::to_string(c.comments) +
         ",\"shares\":" + std::to_string(c.shares) + "}";
}

int32_t reel_number(std::string_view topic) {
  std::string_view id = topic.substr(topic.find(':') + 1);
  int32_t n = 0;
  auto [end, ec] = std::from_chars(id.data(), id.data() + id.size(), n);
  return ec == std::errc() && end == id.data() + id.size() && n > 0 ? n : 0;
}

ReelState::Reel &ReelState::touch(std::string_view topic) {
  auto it = reels_.find(topic);
  if (it != reels_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    return it->second;
  }
  if (reels_.size() >= max_reels_) {
    Reel *oldest = lru_.back();
    lru_.pop_back();
    std::erase(dirty_, oldest->topic);
    reels_.erase(oldest->topic);
  }
  Reel &r = reels_.try_emplace(std::string(topic)).first->second;
  r.topic.assign(topic);
  lru_.push_front(&r);
  r.lru = lru_.begin();
  return r;
}

bool ReelState::count_interaction(const EnvelopeView &view, EnvelopeView *out) {
  if (!view.topic.starts_with("reel:")) return false;
  kronop::v1::Envelope e;
  kronop::v1::Interaction *in = e.mutable_interaction();
  if (!read_interaction(view, in)) return false;
  ReelCounters totals;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    Reel &r = touch(view.topic);
    switch (in->kind()) {
      case kronop::v1::Interaction::KIND_LIKE:
        ++r.counters.likes;
        break;
      case kronop::v1::Interaction::KIND_COMMENT:
        ++r.counters.comments;
        break;
      case kronop::v1::Interaction::KIND_SHARE:
        ++r.counters.shares;
        break;
      default:
        return false;  // not something that is counted: delivered as it came
    }
    if (!r.counters_dirty) {
      r.counters_dirty = true;
      dirty_.push_back(r.topic);
    }
    totals = r.counters;
  }
  in->set_like_count(totals.likes);
  in->set_comment_count(totals.comments);
  in->set_share_count(totals.shares);
  if (in->reel_id() == 0) in->set_reel_id(reel_number(view.topic));
  copy_envelope_head(view, e);
  record_ = e.SerializeAsString();
  return validator_.validate(record_, *out) == Reject::kNone;
}

void ReelState::remember(const EnvelopeView &view, uint64_t seq) {
  if (view.event != "reel_update" || !view.topic.starts_with("reel:")) return;
  std::lock_guard<std::mutex> lock(mutex_);
  Reel &r = touch(view.topic);
  Reel::Update *u = nullptr;
  if (r.recent.size() < recent_per_reel_) {
    u = &r.recent.emplace_back();
  } else {
    u = &r.recent[r.next];  // the oldest: its body's buffer is reused
    r.next = (r.next + 1) % r.recent.size();
  }
  u->seq = seq;
  u->kind = view.body_kind;
  u->body.assign(view.body);
}

void ReelState::flush_counter_updates(const std::function<void(const EnvelopeView &)> &dispatch) {
  if (dirty_.empty()) return;
  std::vector<std::pair<std::string, ReelCounters>> changed;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const std::string &topic : dirty_) {
      auto it = reels_.find(topic);
      if (it == reels_.end()) continue;
      it->second.counters_dirty = false;
      changed.emplace_back(topic, it->second.counters);
    }
    dirty_.clear();
  }
  const uint64_t now_ns = realtime_ns();
  for (const auto &[topic, c] : changed) {
    kronop::v1::Envelope e;
    e.set_topic(topic);
    e.set_event("reel_update");
    e.set_publish_time_ns(now_ns);
    e.set_priority(kronop::v1::PRIORITY_LOW);  // the next counter update supersedes it
    e.set_json(counter_update_json(topic, c, now_ns));
    std::string bytes = e.SerializeAsString();
    EnvelopeView view;
    if (validator_.validate(bytes, view) == Reject::kNone) dispatch(view);
  }
}

std::optional<ReelState::Snapshot> ReelState::snapshot(std::string_view topic,
                                                       std::size_t limit) const {
  Snapshot s;
  std::vector<Reel::Update> updates;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = reels_.find(topic);
    if (it == reels_.end()) return std::nullopt;
    const Reel &r = it->second;
    s.counters = r.counters;
    const std::size_t n = r.recent.size();
    const std::size_t take = std::min(limit, n);
    // Oldest first: once full, the oldest is at `next`.
    const std::size_t start = n < recent_per_reel_ ? 0 : r.next;
    for (std::size_t i = n - take; i < n; ++i) updates.push_back(r.recent[(start + i) % n]);
  }
  // The JSON clients got for each (with its seq), made outside the lock.
  for (const Reel::Update &u : updates) {
    EnvelopeView view;
    view.topic = topic;
    view.event = "reel_update";
    view.body_kind = u.kind;
    view.body = u.body;
    if (MessagePtr m = Message::make(view, u.seq)) s.updates.emplace_back(u.seq, m->payload_json());
  }
  return s;
}

void ReelState::set_counters(std::string_view topic, const ReelCounters &totals) {
  std::lock_guard<std::mutex> lock(mutex_);
  touch(topic).counters = totals;
}

uint64_t ReelState::reels() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return reels_.size();
}

}  // namespace kronop::daemon
