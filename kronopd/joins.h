// Joins and recovery: how a channel join is answered.
//
// An accepted join is answered once the loop knows where the topic's stream stands: a sync
// request through the dispatcher (SyncCallback; the answer comes to on_sync after every
// message numbered before it was fanned out). The ok reply says {"epoch","last_seq"} and,
// for a join with last_seq, whether it "recovered"; then come the presence state, the
// recovered messages and the live messages that arrived meanwhile, which were held on the
// pending join (SubscriberTable::fan_out). So the client sees the reply, then history, then
// live messages, with no gap and no duplicate.
//
// Recovery reads the durable log on libuv's thread pool, and only once the log has committed
// the batch that holds the messages: LogStore::when_committed tells the loop (through its
// command queue, LoopPost), and a loop timer gives up after 10 s ({"recovered": false}). No
// thread sleeps or polls for it.
//
// A pending join is found by its wait id (sync request, commit wait or history read) in
// waits_; a connection that closes, leaves or joins again drops its ids, so a late answer
// finds nothing and is ignored.
#pragma once

#include <uv.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "fanout.h"
#include "phoenix.h"
#include "routes.h"

namespace kronop::daemon {

class ClientServer;
struct Connection;

// Called by a loop to ask where a topic's stream stands (Dispatcher::request_sync); the
// answer comes to JoinTracker::on_sync.
using SyncCallback = std::function<void(const std::string &topic, uint64_t id)>;

// A recovery's read of missed messages (joins.cc).
struct HistoryRead;

// A join not answered yet.
struct PendingJoin {
  uint64_t wait_id = 0;  // the sync request, commit wait or history read it waits for
  std::string topic;
  std::string join_ref_json;
  std::string ref_json;
  std::string topic_json;
  bool recover = false;  // the join gave last_seq
  uint64_t last_seq = 0;
  uint64_t epoch = 0;            // 0: not given
  uint64_t ahead_since_ms = 0;   // first found ahead of the stream (see on_sync)
  SyncReply synced;              // once answered
  std::vector<MessagePtr> held;  // the topic's live messages since the join
  // Once answered: the recovered messages' frames (in chunks), sent as the socket drains.
  bool answered = false;
  std::vector<SharedFrame> history;
  std::size_t next = 0;
};

class JoinTracker {
 public:
  JoinTracker(ClientServer &server, SyncCallback sync, LoopPost post)
      : server_(server), sync_(std::move(sync)), post_(std::move(post)) {}

  void start(uv_loop_t *loop);
  void stop();  // closes the timers

  // false (and an error reply sent) when the join's recovery parameters are malformed.
  bool check_params(Connection *c, const phoenix::ClientMessage &m);
  void begin(Connection *c, const phoenix::ClientMessage &m);
  // The answer to a sync request this tracker made.
  void on_sync(const SyncReply &reply);
  // After a write completed: sends more of answered joins' history.
  void resume_history(Connection *c);
  // The connection left the topic (or joined it again): its pending join is dropped.
  void drop(Connection *c, std::string_view topic);
  // The connection is going away.
  void forget(Connection *c);
  // A reel topic's presence, after an accepted join, and when leaving it.
  void join_presence(Connection *c, const std::string &topic, std::string_view join_ref_json,
                     std::string_view topic_json);
  void leave_presence(Connection *c, const std::string &topic);

 private:
  uint64_t wait_for(Connection *c, PendingJoin *j);
  // The pending join waiting for `id` (removed from waits_), or null.
  std::pair<Connection *, PendingJoin *> take(uint64_t id);
  void ask_sync(uint64_t id, const std::string &topic);
  static void on_resync(uv_timer_t *timer);
  // Recovery: waits for the log to commit `r.durable`, then reads the history off the loop.
  void await_commit(Connection *c, PendingJoin *j, const SyncReply &r);
  void on_committed(uint64_t id);
  static void on_commit_deadline(uv_timer_t *timer);
  void arm_commit_deadline();
  // A history read for `j`'s range, in the client's format (either source).
  std::shared_ptr<HistoryRead> history_read(Connection *c, PendingJoin *j);
  // On the loop, once a history read is done: the join's answer, with the history or not.
  void finish_history(uint64_t id, HistoryRead &h);
  void read_history(Connection *c, PendingJoin *j);
  // Cluster mode: reads the history from Redis (on the cluster thread), builds its frames off
  // the loop, and finishes the join on the loop.
  void read_cluster_history(Connection *c, PendingJoin *j);
  // Sends the reply (recovered: nullopt when recovery was not asked for) and presence, then
  // the history and the held messages (pump_history), and makes the join live.
  void finish(Connection *c, PendingJoin *j, std::optional<bool> recovered,
              std::vector<SharedFrame> history = {}, uint64_t messages = 0);
  // Sends what fits of an answered join's history; when all is sent, the held messages, and
  // the join is live.
  void pump_history(Connection *c, PendingJoin *j);

  ClientServer &server_;
  SyncCallback sync_;
  LoopPost post_;
  uv_loop_t *loop_ = nullptr;
  bool timers_open_ = false;
  uint64_t next_id_ = 0;
  std::unordered_map<uint64_t, Connection *> waits_;
  // Joins asked again shortly (wait id, topic): see on_sync, a client ahead of the stream.
  uv_timer_t resync_{};
  std::vector<std::pair<uint64_t, std::string>> resyncs_;
  // Commit waits in the order they began (deadlines are all 10 s, so also by deadline):
  // (deadline ms, wait id, batch). One timer for the earliest.
  struct CommitWait {
    uint64_t deadline_ms;
    uint64_t id;
    uint64_t batch;
  };
  std::deque<CommitWait> commit_waits_;
  uv_timer_t commit_deadline_{};
};

}  // namespace kronop::daemon
