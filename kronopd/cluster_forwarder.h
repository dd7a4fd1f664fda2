// Sends this node's records to Redis to be numbered (cluster_numbering.h), on the commands
// connection, and says which ones Redis has taken.
//
// - Per topic, in order, one call in flight: a topic's queued records go out together as
//   one numbering call; the next call for that topic waits for the answer to this one.
//   The script's idempotency key is a high-water mark per producer, so a producer's records
//   must be taken in their order: two calls in flight for one topic could be taken out of
//   order (the first refused, the second not), and the first, sent again, would be counted
//   as a duplicate and lost. Calls of different topics are pipelined: one write per loop
//   turn, and the round trip is paid once however many topics a pass touched.
// - The script is loaded (SCRIPT LOAD) first on every new connection, so the EVALSHAs
//   behind it on the same connection find it.
// - At least once, counted once: a call whose answer did not come (the link was lost,
//   Redis restarted) or that Redis refused (NOSCRIPT after a SCRIPT FLUSH, OOM, ...) is sent
//   again, with the same records in the same order. Redis counts each record once; an
//   answer of "duplicate" means it was numbered before.
// - Bounded: at most max_queued records wait in memory; past that, forward() refuses and
//   the caller keeps the record in its durable log, the outbox, to offer it again later.
//
// Threads: the link's loop only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "cluster_numbering.h"
#include "redis_connection.h"

namespace kronop::daemon {

struct ForwardRecord {
  std::string topic;
  uint64_t producer_id = 0;  // 0: kronopd's own message (never sent twice by a producer)
  uint64_t producer_seq = 0;
  std::string envelope;    // the record's Envelope bytes
  uint64_t local_seq = 0;  // its seq in this host's log (the outbox's mark; 0: not logged)
  CounterOp counter = CounterOp::kNone;  // what it does to its reel's totals (reels.h)
};

struct ForwarderCounters {
  uint64_t calls = 0;        // numbering calls written (a call sent again counts again)
  uint64_t numbered = 0;     // records numbered now
  uint64_t duplicates = 0;   // records numbered before
  uint64_t calls_again = 0;  // calls sent again after a lost link or a refusal
  uint64_t refusals = 0;     // error answers (NOSCRIPT, OOM, ...)
  uint64_t script_loads = 0;
  uint64_t queue_full = 0;  // records forward() refused
};

class ClusterForwarder {
 public:
  static constexpr std::size_t kDefaultMaxQueued = 100'000;
  static constexpr std::size_t kMaxRecordsPerCall = 1'000;
  // A record Redis has taken: numbered now under (epoch, seq), or before (seq 0).
  using TakenFn = std::function<void(const ForwardRecord &record, uint64_t epoch, uint64_t seq)>;

  // `link` must be a commands link; this object sets its state callback and calls
  // `on_state` after its own handling. `new_epoch` proposes the epoch of a new stream.
  ClusterForwarder(RedisConnection &link, HistoryLimits limits, TakenFn on_taken,
                   std::function<uint64_t()> new_epoch, RedisConnection::StateFn on_state = nullptr,
                   std::size_t max_queued = kDefaultMaxQueued);

  // Queues `record` after the topic's earlier ones. False, with nothing queued, when
  // max_queued records wait already.
  bool forward(ForwardRecord record);
  // Sends a call for every topic with records queued and none in flight (after a drain
  // pass's records were forwarded, and now and then: what Redis refused is tried again at
  // the next flush, not at once).
  void flush();

  // Records not yet taken by Redis.
  std::size_t queued() const { return queued_; }
  const ForwarderCounters &counters() const { return counters_; }

 private:
  struct Topic {
    std::deque<ForwardRecord> records;  // oldest first; the first `in_flight` are in the call
    std::size_t in_flight = 0;
    uint64_t call = 0;         // the call in flight (0: none)
    uint64_t new_epoch = 0;    // proposed for this topic until a call is answered
    bool sent_before = false;  // the records at the front were in a call already
    bool waiting = false;      // listed in waiting_
  };
  void on_link_state(bool up, const std::string &reason);
  void send(const std::string &name, Topic &topic);
  void on_answer(const std::string &name, uint64_t call, const redisReply *reply,
                 const Error *error);

  RedisConnection &link_;
  HistoryLimits limits_;
  TakenFn on_taken_;
  std::function<uint64_t()> new_epoch_;
  RedisConnection::StateFn on_state_;
  std::size_t max_queued_;
  std::unordered_map<std::string, Topic> topics_;  // topics with records queued
  std::vector<std::string> waiting_;               // topics with records and no call in flight
  std::size_t queued_ = 0;
  uint64_t next_call_ = 1;
  ForwarderCounters counters_;
};

}  // namespace kronop::daemon
