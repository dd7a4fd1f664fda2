// Following the cluster's streams; see cluster_sequencer.h.
#include "cluster_sequencer.h"

#include <algorithm>

namespace kronop::daemon {

void ClusterSequencer::expect(std::string_view topic) { streams_.try_emplace(std::string(topic)); }

void ClusterSequencer::on_message(ClusterEvent &&e, const DeliverFn &deliver) {
  auto it = streams_.find(e.topic);
  if (it == streams_.end()) {
    bump_owned(counters_.unwanted);
    return;
  }
  Stream &s = it->second;
  if (!s.known) {
    if (s.early.size() >= kMaxEarly) {
      bump_owned(counters_.early_overflow);
      return;
    }
    s.early.push_back(std::move(e));
    return;
  }
  apply(s, std::move(e), deliver);
}

void ClusterSequencer::apply(Stream &s, ClusterEvent &&e, const DeliverFn &deliver) {
  if (e.epoch != s.at.epoch) {
    // Redis lost the topic's keys and started its stream again.
    bump_owned(counters_.epoch_changes);
    if (on_new_stream_) on_new_stream_(e.topic);
    s.at = StreamPosition{e.seq - 1, e.epoch};
  }
  if (e.seq <= s.at.seq) {
    bump_owned(counters_.old);
    return;
  }
  if (e.seq != s.at.seq + 1) bump_owned(counters_.gaps);
  s.at.seq = e.seq;
  bump_owned(counters_.delivered);
  deliver(e);
}

std::optional<ClusterSequencer::CatchUp> ClusterSequencer::on_position(const ClusterEvent &e,
                                                                       const DeliverFn &deliver) {
  auto it = streams_.find(e.topic);
  if (it == streams_.end()) return std::nullopt;  // no longer wanted
  Stream &s = it->second;
  if (s.positioned && s.at.epoch == e.epoch && s.at.seq < e.seq &&
      e.seq - s.at.seq <= kMaxCatchUp) {
    // Messages were numbered while the subscription was away: read them from the history
    // first (they come as messages, then on_caught_up).
    return CatchUp{s.at.seq, e.seq};
  }
  if (!s.positioned || s.at.epoch != e.epoch || s.at.seq < e.seq) {
    if (s.positioned && s.at.epoch == e.epoch) bump_owned(counters_.gaps);  // too long to catch up
    s.at = StreamPosition{e.seq, e.epoch};
  }
  s.positioned = true;
  release_early(s, deliver);
  return std::nullopt;
}

void ClusterSequencer::on_caught_up(const std::string &topic, const DeliverFn &deliver) {
  auto it = streams_.find(topic);
  if (it != streams_.end()) release_early(it->second, deliver);
}

void ClusterSequencer::release_early(Stream &s, const DeliverFn &deliver) {
  s.known = true;
  std::vector<ClusterEvent> early;
  early.swap(s.early);
  // Live messages that came during a catch-up are ahead of the history's.
  std::stable_sort(early.begin(), early.end(),
                   [](const ClusterEvent &a, const ClusterEvent &b) { return a.seq < b.seq; });
  for (ClusterEvent &m : early) apply(s, std::move(m), deliver);
}

void ClusterSequencer::on_down() {
  for (auto &[topic, s] : streams_) {
    s.known = false;
    s.early.clear();
  }
}

StreamPosition ClusterSequencer::next(const TopicKey &topic) {
  auto it = streams_.find(topic);
  return it == streams_.end() ? StreamPosition{}
                              : StreamPosition{it->second.at.seq + 1, it->second.at.epoch};
}

StreamPosition ClusterSequencer::current(std::string_view topic) {
  auto it = streams_.find(topic);
  return it == streams_.end() ? StreamPosition{} : it->second.at;
}

bool ClusterSequencer::known(std::string_view topic) const {
  auto it = streams_.find(topic);
  return it != streams_.end() && it->second.known;
}

void ClusterSequencer::forget_unnumbered(std::string_view topic) {
  auto it = streams_.find(topic);
  if (it != streams_.end()) streams_.erase(it);
}

}  // namespace kronop::daemon
