// Users' status across the cluster (DESIGN.md §8, "Presence and counters"): GET
// /api/v1/users/:id/presence and `kronopctl presence user` answer for the whole cluster — a
// user whose sockets are on other nodes is online everywhere, with every node's sockets
// counted — where each node's PresenceHub knows only its own sockets.
//
// The record. Each user seen by any node has one hash in Redis, `{user:ID}:u` (the hash
// tag of the user's topic, so a Redis Cluster spreads users over its shards):
//   n:NODE   "COUNT AT_MS"   node NODE's sockets of the user, written at AT_MS
//   st       online | away | offline
//   r        current reel (0: none)
//   a        activity text
//   ls       when it last changed (Unix ms)
// All times are Redis's clock (TIME in the scripts): no two hosts' clocks are compared. The
// hash expires when the user has not changed for the hub's user TTL (24 h), as a node
// forgets an idle user.
//
// Writing. A node writes its own count (not a delta: sending it twice changes nothing)
// with one script call per change, coalesced per user over one turn of the cluster thread.
// The script does in Redis what the hub does on one host: the cluster's first socket makes
// the user online unless they set themselves away; the cluster's last one closing makes them
// offline, with no reel or activity. A set_status is written as it is made (it is the
// user's explicit choice, last writer wins).
//
// Which nodes count. A node's count counts while the node is alive: listed in the members'
// list the writer or reader last heard (cluster_members.h), or written within the presence
// TTL (a node that joined since the last heartbeat). A dead node's counts are ignored by
// readers and removed by the next writer, so its users go offline within the TTL, as their
// metas leave the topics. Counts are written only once this node has heard the members'
// list (it would take every other node for dead otherwise).
//
// Redis lost and back. Counts that could not be written are written once the link is up
// again, and on every reconnection this node writes every count it holds (Redis may have
// restarted without them). A count that drops to zero while Redis is away is remembered
// until written: at most kMaxUnwritten users, beyond which the oldest zeros are dropped
// (those users may read online until they next change; logged once per outage).
//
// Reading. One script call returns Redis's time and the hash; read_user_record merges it.
// The hash is outside input: every field is checked and what is not understood is ignored.
// While this node is cut off from Redis the callers answer with this node's own view
// (rest_api.h).
//
// Threads: the cluster thread (cluster_node.h).
#pragma once

#include <hiredis/hiredis.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "cluster_members.h"
#include "kronop/result.h"
#include "owned_counter.h"
#include "presence.h"
#include "redis_connection.h"

namespace kronop::daemon {

// The user's record: "{user:ID}:u".
std::string user_record_key(std::string_view user);

// Node `node` now holds `count` sockets of `user`; `alive` lists the nodes taken for alive
// (the members' list, this node included); counts written within alive_ttl_ms count too;
// the record expires after record_ttl_ms. Answers the cluster's count after it.
std::vector<std::string> user_sockets_command(std::string_view user, std::string_view node,
                                              uint32_t count, const std::vector<std::string> &alive,
                                              uint64_t alive_ttl_ms, uint64_t record_ttl_ms);
// The user's explicit status.
std::vector<std::string> user_status_command(const PresenceHub::UserPresence &p,
                                             uint64_t record_ttl_ms);
// The record, with Redis's time in front.
std::vector<std::string> user_read_command(std::string_view user);

// The read's answer merged: nullopt when the record does not exist (no node has seen the
// user, or it expired). `alive` as for user_sockets_command; `now_ms` (this host's clock) is
// the last-seen time of a user with sockets.
Result<std::optional<PresenceHub::UserPresence>> read_user_record(
    const redisReply &reply, std::string_view user, const std::unordered_set<std::string> &alive,
    uint64_t alive_ttl_ms, uint64_t now_ms);

struct ClusterUsersCounters {
  std::atomic<uint64_t> writes{0};    // scripts sent (counts and statuses)
  std::atomic<uint64_t> reads{0};     // records read
  std::atomic<uint64_t> dropped{0};   // zero counts dropped over kMaxUnwritten
  std::atomic<uint64_t> failures{0};  // writes and reads that got no answer or an error
};

class ClusterUsers {
 public:
  static constexpr std::size_t kMaxUnwritten = 1'000'000;
  using ReadFn = std::function<void(Result<std::optional<PresenceHub::UserPresence>>)>;
  // The nodes taken for alive now, this one included; empty until the members' list has
  // been heard.
  using AliveFn = std::function<std::vector<std::string>()>;

  ClusterUsers(RedisConnection &commands, std::string node_id, AliveFn alive, uint64_t alive_ttl_ms,
               uint64_t record_ttl_ms);

  // This node now holds `count` sockets of `user` (written at the next flush()).
  void sockets(const std::string &user, uint32_t count);
  // The user's explicit status, written now (after the user's pending count).
  void status(const PresenceHub::UserPresence &p);
  // Reads the user's record; `done` runs on the cluster thread (an error when the link is
  // down or Redis did not answer: the caller answers with its own view).
  void read(const std::string &user, uint64_t now_ms, ReadFn done);
  // Writes the pending counts (when the link is up and the members are known).
  void flush();
  // The link is up again: every count this node holds is written again.
  void on_up();

  const ClusterUsersCounters &counters() const { return counters_; }

 private:
  void write_count(const std::string &user, uint32_t count, const std::vector<std::string> &alive);

  RedisConnection &commands_;
  const std::string node_id_;
  AliveFn alive_;
  const uint64_t alive_ttl_ms_;
  const uint64_t record_ttl_ms_;
  // This node's non-zero counts, by user: what it holds (written again after a
  // reconnection).
  std::unordered_map<std::string, uint32_t> held_;
  // Users whose count is to be written, in the order they changed (zeros included).
  std::deque<std::string> unwritten_;
  std::unordered_set<std::string> unwritten_set_;
  bool dropped_logged_ = false;
  ClusterUsersCounters counters_;
};

}  // namespace kronop::daemon
