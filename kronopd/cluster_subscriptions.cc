#include "cluster_subscriptions.h"

#include <vector>

#include "cluster_presence.h"
#include "redis_reply.h"

namespace kronop::daemon {

namespace {

// The channel's topic: "{T}" -> "T"; empty when it is not one of ours.
std::string_view topic_of(std::string_view channel) {
  if (channel.size() < 3 || channel.front() != '{' || channel.back() != '}') return {};
  return channel.substr(1, channel.size() - 2);
}

}  // namespace

ClusterSubscriptions::ClusterSubscriptions(uv_loop_t *loop, RedisConnection &link,
                                           MessageFn on_message, RedisConnection::StateFn on_state)
    : link_(link), on_message_(std::move(on_message)), on_state_(std::move(on_state)) {
  uv_timer_init(loop, &flush_timer_);
  flush_timer_.data = this;
  link_.on_push([this](const redisReply &push) { on_push(push); });
  link_.on_state([this](bool up, const std::string &reason) { on_link_state(up, reason); });
}

ClusterSubscriptions::~ClusterSubscriptions() = default;

void ClusterSubscriptions::want(std::string_view topic, bool wanted) {
  const std::string channel = TopicKeys::of(topic).channel;
  if (wanted) {
    if (!wanted_.insert(std::string(topic)).second) return;
    if (to_unsubscribe_.erase(channel) == 0) {
      to_subscribe_.insert(channel);
    } else {
      // Its SSUBSCRIBE still holds: no confirmation will come.
      if (on_subscribed_ && link_.up()) on_subscribed_(topic);
      return;
    }
  } else {
    if (wanted_.erase(std::string(topic)) == 0) return;
    if (to_subscribe_.erase(channel) == 0) to_unsubscribe_.insert(channel);
  }
  schedule_flush();
}

void ClusterSubscriptions::schedule_flush() {
  if (flush_scheduled_) return;
  flush_scheduled_ = true;
  uv_timer_start(
      &flush_timer_,
      [](uv_timer_t *t) {
        auto *self = static_cast<ClusterSubscriptions *>(t->data);
        self->flush_scheduled_ = false;
        self->flush();
      },
      0, 0);
}

void ClusterSubscriptions::flush() {
  // While the link is down the changes wait: coming up subscribes everything wanted anyway.
  if (!link_.up()) return;
  send_batches("SUNSUBSCRIBE", to_unsubscribe_);
  send_batches("SSUBSCRIBE", to_subscribe_);
}

void ClusterSubscriptions::send_batches(const char *command,
                                        std::unordered_set<std::string> &channels) {
  std::vector<std::string_view> argv;
  auto send = [&] {
    if (argv.size() <= 1) return;
    link_.send(argv, nullptr);
    if (argv.front() == std::string_view("SSUBSCRIBE")) {
      ++counters_.subscribe_commands;
    } else {
      ++counters_.unsubscribe_commands;
    }
    argv.resize(1);
  };
  argv.push_back(command);
  for (const std::string &c : channels) {
    argv.push_back(c);
    if (argv.size() > kChannelsPerCommand) send();
  }
  send();
  channels.clear();
}

void ClusterSubscriptions::on_push(const redisReply &push) {
  const Push p = classify_push(push);
  switch (p.kind) {
    case PushKind::kShardMessage:
    case PushKind::kMessage: {
      const std::string_view topic = topic_of(p.channel);
      if (is_presence_message(p.payload)) {
        if (topic.empty() || !on_presence_ || wanted_.count(std::string(topic)) == 0) {
          ++counters_.dropped;
        } else {
          on_presence_(topic, p.payload);
        }
        return;
      }
      auto m = parse_numbered_message(p.payload);
      if (topic.empty() || !m.ok() || wanted_.count(std::string(topic)) == 0) {
        ++counters_.dropped;
        return;
      }
      ++counters_.messages;
      on_message_(topic, m.value());
      return;
    }
    case PushKind::kUnsubscribed: {
      // Asked for, or the channel's slot moved (Redis Cluster): still wanted, subscribe again.
      const std::string_view topic = topic_of(p.channel);
      if (!topic.empty() && wanted_.count(std::string(topic)) > 0 &&
          to_unsubscribe_.count(std::string(p.channel)) == 0) {
        to_subscribe_.insert(std::string(p.channel));
        ++counters_.resubscribed;
        schedule_flush();
      }
      return;
    }
    case PushKind::kSubscribed: {
      const std::string_view topic = topic_of(p.channel);
      if (!topic.empty() && on_subscribed_ && wanted_.count(std::string(topic)) > 0) {
        on_subscribed_(topic);
      }
      return;
    }
    default:
      return;  // other confirmations, and what is not ours
  }
}

void ClusterSubscriptions::on_link_state(bool up, const std::string &reason) {
  if (up) {
    // A new connection holds no subscription: everything wanted is subscribed again, and
    // what waited to be unsubscribed is not subscribed on it anyway.
    to_unsubscribe_.clear();
    to_subscribe_.clear();
    for (const std::string &topic : wanted_) to_subscribe_.insert(TopicKeys::of(topic).channel);
    if (link_.connects() > 1) counters_.resubscribed += wanted_.size();
    flush();
  }
  if (on_state_) on_state_(up, reason);
}

void ClusterSubscriptions::close(std::function<void()> done) {
  on_closed_ = std::move(done);
  uv_close(reinterpret_cast<uv_handle_t *>(&flush_timer_), [](uv_handle_t *h) {
    auto *self = static_cast<ClusterSubscriptions *>(h->data);
    if (self->on_closed_) self->on_closed_();
  });
}

}  // namespace kronop::daemon
