// Which topics' shard channels this node listens to, on its subscriber connection: exactly
// those its clients hold (DESIGN.md §8, "Every node subscribes only to the topics its
// clients hold"). The Dispatcher's interest sets already say when the node gains its
// first subscriber of a topic or loses its last (fanout.h); those changes come here.
//
// - Batched: the changes of one loop turn go out as one SSUBSCRIBE and one SUNSUBSCRIBE
//   (each with up to kChannelsPerCommand channels), not a command per topic.
// - Kept across reconnects: when the link comes up again every wanted channel is
//   subscribed again — Redis forgets a connection's subscriptions with it.
// - Kept across slot moves: in a Redis Cluster a shard channel whose slot moved is
//   unsubscribed by the server (an `sunsubscribe` nobody asked for); a channel still
//   wanted is subscribed again.
// - Messages of channels not wanted (any more) are dropped: between an SUNSUBSCRIBE and its
//   confirmation Redis may still push a few.
//
// Threads: the link's loop only.
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_set>

#include "cluster_numbering.h"
#include "redis_connection.h"

namespace kronop::daemon {

struct SubscriptionCounters {
  uint64_t subscribe_commands = 0;
  uint64_t unsubscribe_commands = 0;
  uint64_t resubscribed = 0;  // channels subscribed again after a reconnect or slot move
  uint64_t messages = 0;      // numbered messages passed on
  uint64_t dropped = 0;       // of channels not wanted, or not EPOCH:SEQ:ENVELOPE
};

class ClusterSubscriptions {
 public:
  static constexpr std::size_t kChannelsPerCommand = 512;
  // A numbered message of topic `topic` arrived (views valid during the call only).
  using MessageFn = std::function<void(std::string_view topic, const NumberedMessage &m)>;

  // `link` must be a subscriber link; this object sets its push and state callbacks and
  // calls `on_state` after its own handling.
  ClusterSubscriptions(uv_loop_t *loop, RedisConnection &link, MessageFn on_message,
                       RedisConnection::StateFn on_state = nullptr);
  ~ClusterSubscriptions();  // close() first, and run the loop until it calls back
  ClusterSubscriptions(const ClusterSubscriptions &) = delete;
  ClusterSubscriptions &operator=(const ClusterSubscriptions &) = delete;

  // Called when a wanted topic's channel is subscribed: messages published from then on
  // arrive (Redis confirmed the SSUBSCRIBE, or it was never unsubscribed). Again after each
  // reconnect, since Redis forgets subscriptions with their connection.
  void on_subscribed(std::function<void(std::string_view topic)> fn) {
    on_subscribed_ = std::move(fn);
  }
  // Called with the presence messages (cluster_presence.h) of wanted topics; without it
  // they are dropped.
  void on_presence(std::function<void(std::string_view topic, std::string_view payload)> fn) {
    on_presence_ = std::move(fn);
  }
  // The node's clients hold `topic` (true) or no longer do (false).
  void want(std::string_view topic, bool wanted);
  void close(std::function<void()> done);

  bool wanted(std::string_view topic) const { return wanted_.count(std::string(topic)) > 0; }
  std::size_t wanted_count() const { return wanted_.size(); }
  const std::unordered_set<std::string> &wanted_topics() const { return wanted_; }
  const SubscriptionCounters &counters() const { return counters_; }

 private:
  void schedule_flush();
  void flush();
  void send_batches(const char *command, std::unordered_set<std::string> &channels);
  void on_push(const redisReply &push);
  void on_link_state(bool up, const std::string &reason);

  RedisConnection &link_;
  MessageFn on_message_;
  RedisConnection::StateFn on_state_;
  std::function<void(std::string_view topic)> on_subscribed_;
  std::function<void(std::string_view topic, std::string_view payload)> on_presence_;
  uv_timer_t flush_timer_{};  // 0 ms: the end of this loop turn
  bool flush_scheduled_ = false;
  std::unordered_set<std::string> wanted_;          // topics
  std::unordered_set<std::string> to_subscribe_;    // channels, sent at the next flush
  std::unordered_set<std::string> to_unsubscribe_;  // channels
  std::function<void()> on_closed_;
  SubscriptionCounters counters_;
};

}  // namespace kronop::daemon
