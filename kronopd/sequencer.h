// The sequencer: the one place that numbers a topic's messages.
//
// Every message of a topic gets the next sequence number of the topic's stream, and every
// stream has an epoch: a random identity that changes when the stream's history is lost (a
// topic never seen before, a log that was deleted, a crash after which a topic's records may
// be numbered differently). A client that saw (epoch E, seq N) and rejoins with them is owed
// exactly the messages after N of stream E, so a (topic, epoch, seq) triple must never name
// two different messages. Epochs have 53 random bits (never 0), so that they are exact as
// JSON numbers in every client.
//
// Single host, the sequencer is LocalSequencer: a table in memory, used by the ingest thread
// only (pipeline.h), seeded from the durable log at start so that numbering continues across
// restarts. In a cluster (docs/ARCHITECTURE.md, "The cluster (Redis)") Redis numbers: one
// server-side script per topic and pass numbers messages for every node, and the
// Dispatcher's sequencer is ClusterSequencer (cluster_sequencer.h), which follows the
// streams as the node receives them.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "topic_key.h"

namespace kronop::daemon {

// Where a topic's stream stands: the seq given last (0: none yet) and the stream's epoch.
struct StreamPosition {
  uint64_t seq = 0;
  uint64_t epoch = 0;
};

class Sequencer {
 public:
  virtual ~Sequencer() = default;

  // The next number of `topic`, and the epoch of the stream it belongs to.
  virtual StreamPosition next(const TopicKey &topic) = 0;
  // Where `topic` stands now. A topic never seen starts here: seq 0 of a new stream, whose
  // epoch its first message will carry (a join may be told it before anything is published).
  virtual StreamPosition current(std::string_view topic) = 0;
  // Before numbering starts: `topic` continues after `at.seq` in stream `at.epoch`.
  virtual void seed(const std::string &topic, StreamPosition at) = 0;
  // The topic's stream gets a new epoch, at most once per run: its history from here on is
  // not the one its clients may have seen (see durability.h, ReplayEpochs).
  virtual void renew_epoch(std::string_view topic) = 0;
  // No I/O loop has subscribers to `topic` any more. A stream with no message numbered yet
  // is forgotten: its epoch was told only to joiners, who saw nothing of it, and a join
  // with last_seq 0 takes whichever stream there is then (joins.cc). So joins of topics no
  // one publishes to leave nothing behind, however many an outsider makes up.
  virtual void forget_unnumbered(std::string_view topic) = 0;
  // Topics known.
  virtual uint64_t topics() const = 0;
  // Whether current(topic) can be answered now. Always, on one host; in a cluster only once
  // the topic's position was read (cluster_sequencer.h): until then joins wait.
  virtual bool known(std::string_view /*topic*/) const { return true; }
};

// Numbering in memory, for one thread.
class LocalSequencer final : public Sequencer {
 public:
  StreamPosition next(const TopicKey &topic) override;
  StreamPosition current(std::string_view topic) override;
  void seed(const std::string &topic, StreamPosition at) override;
  void renew_epoch(std::string_view topic) override;
  void forget_unnumbered(std::string_view topic) override;
  uint64_t topics() const override { return topics_.size(); }

 private:
  using Table = std::unordered_map<std::string, StreamPosition, TopicHash, TopicEqual>;
  Table::iterator find_or_add(const TopicKey &topic);

  Table topics_;
  std::unordered_set<std::string, TopicHash, TopicEqual> renewed_;
};

// An epoch no earlier stream of a topic had (53 random bits, not 0).
uint64_t new_epoch();

}  // namespace kronop::daemon
