// See presence_diffs.h.
#include "presence_diffs.h"

namespace kronop::daemon {

PresenceDiffs::PresenceDiffs(uv_loop_t *loop, PresenceHub &hub,
                             std::vector<std::unique_ptr<IoLoop>> &loops, uint64_t interval_ms,
                             ClusterNode *cluster)
    : hub_(hub), loops_(loops), cluster_(cluster) {
  uv_timer_init(loop, &timer_);
  timer_.data = this;
  uv_timer_start(&timer_, on_tick, interval_ms, interval_ms);
}

void PresenceDiffs::on_tick(uv_timer_t *t) {
  auto *self = static_cast<PresenceDiffs *>(t->data);
  self->diffs_.clear();
  if (self->hub_.flush(self->diffs_) == 0) return;
  std::vector<MessagePtr> messages;
  messages.reserve(self->diffs_.size());
  for (auto &d : self->diffs_) {
    if (self->cluster_ != nullptr && (!d.own_joins.empty() || !d.own_leaves.empty())) {
      self->cluster_->publish_presence(d.topic, std::move(d.own_joins), std::move(d.own_leaves));
    }
    messages.push_back(
        Message::make_ephemeral(std::move(d.topic), "presence_diff", std::move(d.payload)));
  }
  for (auto &l : self->loops_) l->deliver(messages);
}

}  // namespace kronop::daemon
