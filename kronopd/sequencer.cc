// Numbering in memory; see sequencer.h.
#include "sequencer.h"

#include <random>

namespace kronop::daemon {

uint64_t new_epoch() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return (rng() >> 11) | 1;
}

LocalSequencer::Table::iterator LocalSequencer::find_or_add(const TopicKey &topic) {
  auto it = topics_.find(topic);
  if (it == topics_.end())
    it = topics_.emplace(std::string(topic.name), StreamPosition{0, new_epoch()}).first;
  return it;
}

StreamPosition LocalSequencer::next(const TopicKey &topic) {
  StreamPosition &p = find_or_add(topic)->second;
  ++p.seq;
  return p;
}

StreamPosition LocalSequencer::current(std::string_view topic) {
  return find_or_add(TopicKey(topic))->second;
}

void LocalSequencer::seed(const std::string &topic, StreamPosition at) { topics_[topic] = at; }

void LocalSequencer::forget_unnumbered(std::string_view topic) {
  auto it = topics_.find(topic);
  if (it != topics_.end() && it->second.seq == 0) topics_.erase(it);
}

void LocalSequencer::renew_epoch(std::string_view topic) {
  if (renewed_.contains(topic)) return;
  renewed_.emplace(topic);
  auto it = topics_.find(topic);
  if (it == topics_.end()) {
    find_or_add(TopicKey(topic));  // a new stream anyway
    return;
  }
  it->second.epoch = new_epoch();
}

}  // namespace kronop::daemon
