// The durable log as the cluster's outbox (DESIGN.md §8). What this host's producers
// publish is logged before its ring space is released, and forwarded to Redis to be
// numbered; Redis's acknowledgements move the log's per-topic marks (log_store.h). Records
// wait in memory for Redis only up to a bound (--redis-max-waiting); past it, and for
// what a node that died had not handed over, the log is where they wait:
//
// - A topic is BEHIND when some of its records are in the log only: at start, every topic
//   with records above its mark (the last run died, or stopped before Redis took them);
//   at run time, a topic whose record came while the bound was reached (Redis slow or
//   away). A behind topic's new records are not forwarded live: a producer's records must
//   reach Redis in their order (its idempotency key is a high-water mark).
// - Catching up (catch_up, on the ingest thread, while Redis is up and the forwarder has
//   room): a behind topic's records after the last one forwarded are read from the log and
//   forwarded. The records the log has not committed yet cannot be read; so that a busy
//   topic still catches up, the records it gets after a catch-up round are also kept in
//   memory (its tail; at most max_tail records over all topics): once the log's records
//   reach the tail's first, and the round has room for it, the tail follows them and the
//   topic is forwarded live again. A round never gives more than its limit, so what waits
//   in memory for Redis stays bounded.
// - Redis counts each record once (producer id + producer seq), so a record sent twice (its
//   acknowledgement was not written before a crash) is harmless.
//
// kronopd's own records (counter updates) have no producer identity: one sent again after
// a crash may be numbered twice. It carries a reel's totals, so the second says the same.
// Without a durable log (--no-durable-log) there is no outbox: the ingest thread stops
// reading rings at the bound instead, and what Redis had not taken when kronopd died is
// lost to the cluster.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "cluster_forwarder.h"
#include "kronop/result.h"
#include "log_reader.h"
#include "log_store.h"

namespace kronop::daemon {

class ClusterNode;

// Before the node starts: each record Redis takes moves its topic's mark in the log.
void keep_outbox(LogStore &log, ClusterNode &node);

struct OutboxCounters {
  uint64_t kept = 0;         // records left to the log (their topic was behind)
  uint64_t read = 0;         // records read back from the log and forwarded
  uint64_t from_tail = 0;    // records forwarded from a tail
  uint64_t read_errors = 0;  // failed reads of the log (tried again next round)
};

// The ingest thread's.
class ClusterOutbox {
 public:
  // Records read from the log in one catch-up round, at most (a round blocks the ingest
  // thread for about a millisecond per thousand).
  static constexpr std::size_t kMaxReadPerRound = 5'000;

  // `max_tail`: records kept in tails, over all topics (at most half of what may wait for
  // Redis, so that a tail always fits a round that has room).
  ClusterOutbox(LogStore &log, std::size_t max_tail) : log_(log), max_tail_(max_tail) {}

  // At start: the topics the log holds records of above their marks (LogStore::outbox).
  void start_behind(const std::vector<LogStore::OutboxTopic> &topics);
  bool behind() const { return !topics_.empty(); }
  bool behind(const std::string &topic) const { return topics_.contains(topic); }
  // A numbered record that is not forwarded now (its topic is behind, or becomes so): the
  // log has it; its topic's tail may keep it.
  void keep(ForwardRecord record);
  // Records to forward (at most `limit`), in order per topic;
  // topics that caught up are forwarded live again. `last_numbered(topic)`: the local seq
  // of the topic's last numbered record.
  void catch_up(std::size_t limit,
                const std::function<uint64_t(const std::string &)> &last_numbered,
                std::vector<ForwardRecord> &out);
  std::size_t topics() const { return topics_.size(); }
  const OutboxCounters &counters() const { return counters_; }

 private:
  struct Topic {
    uint64_t forwarded = 0;  // local seq of the last record forwarded
    std::vector<ForwardRecord> tail;
    bool tail_open = false;  // every record numbered since the tail began is in it
  };
  void drop_tail(Topic &t);
  void round(std::size_t limit, const std::function<uint64_t(const std::string &)> &last_numbered,
             std::vector<ForwardRecord> &out);

  LogStore &log_;
  std::size_t max_tail_;
  std::unique_ptr<LogReader> reader_;
  std::unordered_map<std::string, Topic> topics_;
  std::size_t tail_records_ = 0;
  OutboxCounters counters_;
  // One line when records start to wait in the log (at most one per kSpillLogMs), and one
  // when every topic caught up after it.
  static constexpr uint64_t kSpillLogMs = 10'000;
  uint64_t next_spill_log_ms_ = 0;
  bool spill_logged_ = false;
};

}  // namespace kronop::daemon
