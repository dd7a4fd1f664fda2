// Fan-out: from the ingest thread to the I/O loops that have subscribers.
//
// The Dispatcher keeps, per topic, the set of I/O loops with subscribers to it (its
// interest set, a bit per loop). For every numbered message the pipeline stages (stage()),
// it builds one immutable Message when some loop is interested (message.h: the JSON text
// frame encoded once) and hands the same reference-counted object to each interested loop.
// Nothing on that path takes a lock: each loop has an inbox (a lock-free stack of batches,
// one push per loop per drain pass, then one coalesced uv_async_send), and loops report
// interest changes (a topic's first subscriber on the loop, or its last leaving) and sync
// requests (where does a topic's stream stand, for a join) through another lock-free stack
// that the ingest thread reads before each message.
//
// Owned and called by the ingest thread (pipeline.h), except report_interest() and
// request_sync(), which the I/O loops call.
#pragma once

#include <uv.h>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "handoff_stack.h"
#include "message.h"
#include "owned_counter.h"
#include "sequencer.h"

namespace kronop::daemon {

// The answer to a loop's sync request (Dispatcher::request_sync): where a topic's stream
// stood when the loop's interest in it was in force. Every message of the topic numbered
// after `last_seq` reaches the loop after this answer; those up to it reached it before (if
// it was interested then) and are readable from the durable log once its committed batch
// reaches `durable`.
struct SyncReply {
  uint64_t id = 0;
  uint64_t last_seq = 0;
  uint64_t epoch = 0;
  uint64_t durable = 0;
  // The stream is this host's own numbering (a cluster node cut off from Redis): what the
  // client missed is in the local log, not in Redis.
  bool local = false;
};

// Messages for one loop from one drain pass; then the topics whose stream changed after
// those messages (their channels are told to rejoin); then the sync answers of that pass.
struct MessageBatch {
  using Stack = HandoffStack<MessageBatch>;
  std::vector<MessagePtr> messages;
  std::vector<std::string> resets;
  std::vector<SyncReply> syncs;
  MessageBatch *next = nullptr;
};

// A loop's report that it gained its first subscriber of a topic, or lost its last; or,
// with a sync_id, its request for a SyncReply on the topic.
struct InterestChange {
  std::string topic;
  uint32_t loop = 0;
  bool interested = false;
  uint64_t sync_id = 0;
  InterestChange *next = nullptr;
};

// Where a loop receives its batches: the stack, and the async handle that wakes the loop.
struct LoopInbox {
  HandoffStack<MessageBatch> batches;
  uv_async_t *wake = nullptr;  // set by the loop before the ingest thread starts
};

struct DispatchCounters {
  std::atomic<uint64_t> messages{0};          // numbered messages staged
  std::atomic<uint64_t> without_audience{0};  // no loop interested: not encoded
  std::atomic<uint64_t> encode_failures{0};
  std::atomic<uint64_t> resets{0};  // topics whose subscribers were told their stream changed
};

class Dispatcher {
 public:
  static constexpr std::size_t kMaxLoops = 64;
  // `sequencer` answers the loops' sync requests (where a topic's stream stands).
  Dispatcher(std::vector<LoopInbox *> inboxes, Sequencer &sequencer);
  ~Dispatcher();
  Dispatcher(const Dispatcher &) = delete;
  Dispatcher &operator=(const Dispatcher &) = delete;

  // Ingest thread: the message numbered `seq` (a validated record, never ring memory), for
  // every loop interested in its topic.
  void stage(const EnvelopeView &view, const TopicKey &topic, uint64_t seq);
  // Ingest thread: applies the loops' reports, answers their sync requests and hands each
  // loop its staged batch (after a drain pass, or when a request is waiting). `durable`: the
  // id of the durable log's batch that holds everything staged so far (0: no log).
  void end_batch(uint64_t durable);
  // Whether loops have reports or requests waiting (the ingest thread checks when idle).
  bool has_requests() const { return !interest_.empty(); }
  // Ingest thread: the topic's stream changed (a cluster node cut off from Redis, or back;
  // Redis started the stream again): every loop with subscribers gets what was staged, then
  // the reset, which tells each channel of the topic to rejoin (phx_error). What is staged
  // after it is of the new stream.
  void reset(std::string_view topic);
  // Ingest thread: reset() of every topic some loop has subscribers of.
  void reset_all();
  // Ingest thread: the sequencer that answers sync requests from now on (a cluster node
  // switches between Redis's streams and its own, `local`, while cut off).
  void use_sequencer(Sequencer &sequencer, bool local) {
    sequencer_ = &sequencer;
    local_ = local;
  }

  // Loop threads: report a topic's first subscriber on `loop` (true) or its last (false).
  void report_interest(uint32_t loop, std::string topic, bool interested);
  // Loop threads: ask for a SyncReply `id` on `topic` (after reporting interest in it); it
  // comes in the loop's inbox, after every message numbered before it.
  void request_sync(uint32_t loop, std::string topic, uint64_t id);

  // Before the ingest thread starts: how to wake it for a sync request.
  void set_waker(std::function<void()> wake) { wake_ = std::move(wake); }
  // Before the ingest thread starts: told (on the ingest thread) when the host gains its
  // first subscriber of a topic (true) or loses its last (false) — where a cluster node
  // subscribes to the topic's channel, or lets it go.
  void on_interest(std::function<void(const std::string &topic, bool interested)> fn) {
    on_interest_ = std::move(fn);
  }

  const DispatchCounters &counters() const { return counters_; }

 private:
  void apply_interest();
  // Hands loop i what is staged for it (and `resets` after the messages), and wakes it.
  void push_batch(std::size_t i, std::vector<std::string> resets);

  std::vector<LoopInbox *> inboxes_;
  Sequencer *sequencer_;
  bool local_ = false;  // sequencer_ numbers a cluster node's records while cut off
  // topic -> bit i set: loop i has subscribers. Topics leave when no loop is interested.
  std::unordered_map<std::string, uint64_t, TopicHash, TopicEqual> interest_sets_;
  std::vector<std::vector<MessagePtr>> staged_;  // per loop
  HandoffStack<InterestChange> interest_;
  struct PendingSync {
    uint32_t loop;
    std::string topic;
    uint64_t id;
  };
  std::vector<PendingSync> pending_syncs_;            // taken by apply_interest
  std::vector<std::vector<SyncReply>> staged_syncs_;  // per loop, sent by end_batch
  std::function<void()> wake_;
  std::function<void(const std::string &topic, bool interested)> on_interest_;
  DispatchCounters counters_;
};

}  // namespace kronop::daemon
