// A topic's name with its hash, computed once per message.
//
// The ingest thread looks each message's topic up in more than one table (the sequencer's
// streams, the fan-out's interest sets), and hashing the name is the larger part of each
// lookup. A TopicKey carries the hash from the first lookup to the next. The tables keyed by
// topic use TopicHash and TopicEqual, which take a TopicKey or any string-like name; both
// give a name the same hash, so a key and its plain name find the same entry.
#pragma once

#include <cstddef>
#include <functional>
#include <string_view>

namespace kronop::daemon {

struct TopicKey {
  explicit TopicKey(std::string_view topic)
      : name(topic), hash(std::hash<std::string_view>{}(topic)) {}
  std::string_view name;  // not owned: lives as long as the message it names
  std::size_t hash;
};

struct TopicHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view name) const {
    return std::hash<std::string_view>{}(name);
  }
  std::size_t operator()(const TopicKey &key) const { return key.hash; }
};

struct TopicEqual {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const { return a == b; }
  bool operator()(const TopicKey &a, std::string_view b) const { return a.name == b; }
  bool operator()(std::string_view a, const TopicKey &b) const { return a == b.name; }
};

}  // namespace kronop::daemon
