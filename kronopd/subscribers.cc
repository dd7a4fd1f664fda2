// The subscriber table and fan-out; see subscribers.h.
#include "subscribers.h"

#include <algorithm>

#include "connection.h"
#include "kronop/clock.h"
#include "kronop_ipc.h"
#include "server.h"

namespace kronop::daemon {
namespace {
Counter channel_counter(std::string_view topic) {
  if (topic.starts_with("reel:")) return Counter::kChannelsReel;
  if (topic.starts_with("user:")) return Counter::kChannelsUser;
  return Counter::kChannelsSystem;
}
}  // namespace

const SharedFrame *frame_for(const Message &m, const Audience &a) {
  const auto &targets = m.target_users();
  if (!targets.empty() &&
      (!a.identity->authenticated() ||
       std::find(targets.begin(), targets.end(), a.identity->user_id) == targets.end()))
    return nullptr;
  if (a.plain) return &m.plain_text();
  if (a.protobuf && !m.json_only()) {
    const SharedFrame &f = m.phoenix_binary();
    return f ? &f : nullptr;
  }
  return &m.phoenix_text();
}

void SubscriberTable::subscribe(const std::string &topic, Connection *c) {
  auto &subs = subscribers_[topic];
  subs.push_back(c);
  server_.bump(channel_counter(topic));
  if (subs.size() == 1 && interest_) interest_(topic, true);
}

void SubscriberTable::unsubscribe(const std::string &topic, Connection *c) {
  auto it = subscribers_.find(topic);
  if (it == subscribers_.end()) return;
  auto &v = it->second;
  auto pos = std::find(v.begin(), v.end(), c);
  if (pos != v.end()) {
    *pos = v.back();  // order among subscribers does not matter
    v.pop_back();
    server_.drop(channel_counter(topic));
  }
  if (v.empty()) {
    subscribers_.erase(it);
    if (interest_) interest_(topic, false);
  }
}

void SubscriberTable::fan_out(const std::vector<MessagePtr> &messages) {
  server_.bump(Counter::kMessages, messages.size());
  const std::size_t max_held = server_.options().max_recovery;
  for (const MessagePtr &m : messages) {
    auto it = subscribers_.find(m->topic());
    if (it == subscribers_.end()) continue;  // the last subscriber left since
    // Sending never closes a handle at once (a slow consumer is shut, and closed later), so
    // the subscriber list stays as it is during this loop.
    for (Connection *c : it->second) {
      if (!c->joining.empty()) {
        if (PendingJoin *j = c->joining_on(m->topic())) {
          // Held until the join is answered; a join that waits while more arrive than a
          // recovery may send is given up on, as a slow consumer.
          if (j->held.size() >= max_held && !c->closing) {
            server_.bump(Counter::kClosedSlow);
            server_.log_fault(c, Fault::kSlow, ws::kCloseTryAgainLater, "too far behind");
            c->close_with(ws::kCloseTryAgainLater, "too far behind");
          }
          j->held.push_back(m);
          continue;
        }
      }
      deliver_to(c, *m);
    }
    const uint64_t now = realtime_ns();
    server_.delivery_latency().record(now > m->publish_time_ns() ? now - m->publish_time_ns() : 0);
  }
}

void SubscriberTable::deliver_to(Connection *c, const Message &m) {
  if (c->closing) return;
  if (const SharedFrame *f = frame_for(m, c->audience())) {
    server_.send(c, *f, m.priority() == KRONOP_PRIORITY_LOW ? Send::kDroppable : Send::kNormal);
  }
}

}  // namespace kronop::daemon
