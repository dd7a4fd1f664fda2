// Cluster mode's numbering on the ingest thread (cluster_node.h has the other side): where
// each wanted topic's cluster stream stands, as this node received it. Redis numbers; this
// table only follows, so that a join is answered with the (epoch, seq) every node uses, and
// each message is staged once, in order, after the position the joiners were told.
//
// A topic is known once its position was read (ClusterEvent::kPosition). Until then the
// Dispatcher holds its joins' sync requests (known()), and messages that arrive early wait
// here (at most kMaxEarly): those at or below the position are dropped when it comes, the
// rest are delivered after it. When the cluster goes down every topic becomes unknown
// again: positions are read again once it is back.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "cluster_node.h"
#include "owned_counter.h"
#include "sequencer.h"
#include "topic_key.h"

namespace kronop::daemon {

// Written by the ingest thread only (load + store), read by any.
struct ClusterStreamCounters {
  std::atomic<uint64_t> delivered{0};
  std::atomic<uint64_t> old{0};             // at or below the position: dropped
  std::atomic<uint64_t> unwanted{0};        // of a topic no local client holds: dropped
  std::atomic<uint64_t> gaps{0};            // a seq skipped (missed while a link was away)
  std::atomic<uint64_t> epoch_changes{0};   // Redis started a topic's stream again
  std::atomic<uint64_t> early_overflow{0};  // dropped: more than kMaxEarly before the position
};

class ClusterSequencer final : public Sequencer {
 public:
  static constexpr std::size_t kMaxEarly = 10'000;
  // A longer catch-up is not tried: its seqs count as a gap.
  static constexpr uint64_t kMaxCatchUp = 100'000;
  using DeliverFn = std::function<void(const ClusterEvent &message)>;

  // Local clients hold `topic` now: its messages are expected, its position will come.
  void expect(std::string_view topic);
  // A message (kMessage) or a position (kPosition) from the cluster thread; `deliver` is
  // called for each message to stage now, in order.
  void on_message(ClusterEvent &&e, const DeliverFn &deliver);
  // A position read again after a link was away, ahead of what was delivered in the same
  // stream: the range (after, until] to catch up on from the history (ClusterNode::
  // catch_up); the topic stays unknown until on_caught_up.
  struct CatchUp {
    uint64_t after = 0;
    uint64_t until = 0;
  };
  std::optional<CatchUp> on_position(const ClusterEvent &e, const DeliverFn &deliver);
  void on_caught_up(const std::string &topic, const DeliverFn &deliver);
  // The cluster went down: every position is to be read again (what was delivered is
  // remembered, to catch up from).
  void on_down();
  // Told (before its first message is delivered) when a topic's live stream changed epoch:
  // Redis lost the topic's keys and started it again, so its clients must join again.
  void on_new_stream(std::function<void(const std::string &topic)> fn) {
    on_new_stream_ = std::move(fn);
  }

  // Sequencer: the Dispatcher's view. next() is never called (Redis numbers).
  StreamPosition next(const TopicKey &topic) override;
  StreamPosition current(std::string_view topic) override;
  bool known(std::string_view topic) const override;
  void seed(const std::string &, StreamPosition) override {}
  void renew_epoch(std::string_view) override {}
  // No local client holds it any more: forgotten (its subscription ends with it).
  void forget_unnumbered(std::string_view topic) override;
  uint64_t topics() const override { return streams_.size(); }

  const ClusterStreamCounters &counters() const { return counters_; }

 private:
  struct Stream {
    StreamPosition at;
    bool known = false;
    bool positioned = false;  // `at` is a position of this stream (read, then advanced)
    std::vector<ClusterEvent> early;
  };
  void apply(Stream &s, ClusterEvent &&e, const DeliverFn &deliver);
  // The topic is known: what waited goes out, in seq order.
  void release_early(Stream &s, const DeliverFn &deliver);

  std::unordered_map<std::string, Stream, TopicHash, TopicEqual> streams_;
  ClusterStreamCounters counters_;
  std::function<void(const std::string &topic)> on_new_stream_;
};

}  // namespace kronop::daemon
