// Presence across the cluster (DESIGN.md §8, "Presence and counters"): each node tells the
// others who is on its topics, over the topics' own shard channels, and a node that dies is
// dropped by everyone within --redis-presence-ttl (cluster_members.h).
//
// Who holds what. Each node is the only source of its own metas (its clients' sockets); the
// others keep a copy (PresenceHub, presence.h, "Cluster"), so Presence.list() on any node
// shows every node's users, and a join, a leave or a node's death reaches every client as
// the batched presence_diff it is on one host. Nothing of it is stored in Redis: a node that
// subscribes to a topic asks the others for their states, and a node's death is learnt
// from the members' list.
//
// On the topic's shard channel {T}, next to its numbered messages (which start with a
// digit), presence messages start with 'P':
//   "PD\tNODE\n" + lines   a node's changes since its last flush: "+\tUSER\tID\tONLINE_AT\n"
//                          for a join, "-\tUSER\tID\n" for a leave
//   "PS\tNODE\n" + lines   a node's whole presence on T ("+" lines): what the others knew of
//                          it there is replaced
//   "PQ\tNODE\n"           a node asks the others for their states on T (it has just
//                          subscribed): each node with presences there answers with a PS
// NODE is the node's id (PresenceHub::node_id, its phx_ref prefix); ID the meta's number
// (decimal), so that the meta's phx_ref is NODE followed by ID in base 36; users are
// json_safe (no tab or newline). Changes go out in PDs of at most kMetasPerMessage lines; a
// state is one PS, whole (it replaces), of at most max_remote_metas_per_topic lines that a
// receiver takes. A node that comes back to Redis says its states again (others may have
// dropped it, or missed its changes meanwhile), and asks again.
//
// Order: one node's messages on one topic come in the order it sent them (one connection,
// one channel), so a state followed by changes ends as the node has it. Messages a node
// missed (subscribed late, or a lost link) are made good by the next state it receives.
//
// Threads: the cluster thread (cluster_node.h). The hub is thread-safe.
#pragma once

#include <uv.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "cluster_members.h"
#include "kronop/result.h"
#include "log.h"
#include "presence.h"
#include "redis_connection.h"

namespace kronop::daemon {

struct PresenceMessage {
  enum class Kind : char { kChanges = 'D', kState = 'S', kQuery = 'Q' };
  Kind kind = Kind::kChanges;
  std::string node;
  std::vector<PresenceHub::NodeMeta> joins;   // changes and states
  std::vector<PresenceHub::NodeMeta> leaves;  // changes
};

inline constexpr std::size_t kMetasPerMessage = 5000;

bool is_presence_message(std::string_view payload);
std::string encode_presence(const PresenceMessage &m);
// What another node sent (outside input): refused unless every line is well formed, and
// when it has more than `max_lines` lines (a state is at most what a receiver keeps of a
// topic, PresenceHub::Options::max_remote_metas_per_topic).
Result<PresenceMessage> parse_presence_message(std::string_view payload,
                                               std::size_t max_lines = 100'000);
// `node`'s changes as PD messages of at most kMetasPerMessage lines each.
std::vector<std::string> encode_changes(const std::string &node,
                                        std::vector<PresenceHub::NodeMeta> joins,
                                        std::vector<PresenceHub::NodeMeta> leaves);

struct ClusterPresenceOptions {
  uint64_t ttl_ms = 15'000;               // --redis-presence-ttl
  std::string address;                    // this node's, as operators see it ("host:port")
  std::function<uint64_t()> connections;  // this node's client connections now (any thread)
};

// Counters: written by the cluster thread, read by any.
struct ClusterPresenceCounters {
  std::atomic<uint64_t> heartbeats{0};  // answered
  std::atomic<uint64_t> sent{0};        // presence messages published
  std::atomic<uint64_t> received{0};    // other nodes' presence messages taken
  std::atomic<uint64_t> refused{0};     // malformed, or past a bound
  std::atomic<uint64_t> nodes_dropped{0};
};

// This node's presence agent on the cluster thread: the heartbeats, the members' list, and
// the presence messages of the topics it subscribes to.
class ClusterPresence {
 public:
  ClusterPresence(uv_loop_t *loop, RedisConnection &commands, PresenceHub &hub,
                  ClusterPresenceOptions options);
  ClusterPresence(const ClusterPresence &) = delete;
  ClusterPresence &operator=(const ClusterPresence &) = delete;

  // Starts the heartbeat timer.
  void start();
  // This node stops: its entry is removed from the members (the others drop it at their
  // next heartbeat), then `done` runs (at once when the link is down).
  void leave(std::function<void()> done);
  // Closes the timer.
  void stop();

  // A presence message on `topic`'s channel (the subscriptions' wanted topics only).
  void on_message(std::string_view topic, std::string_view payload);
  // `topic`'s subscription is confirmed: the other nodes are asked for their states.
  void on_subscribed(std::string_view topic);
  // Both links are up: a heartbeat at once, this node's states said again, and, since what
  // the others did meanwhile was not heard of, what is known of them is forgotten and asked
  // for again on every topic in `wanted`.
  void on_up(const std::unordered_set<std::string> &wanted);
  // No local client holds `topic` any more: the others' presences there are forgotten (the
  // subscription ends, and with it their news).
  void on_unwanted(const std::string &topic);
  // This node's own changes on `topic` (PresenceHub::flush), for the others.
  void publish(const std::string &topic, std::vector<PresenceHub::NodeMeta> joins,
               std::vector<PresenceHub::NodeMeta> leaves);

  // Any thread: the members as of the last heartbeat answered, and Redis's time then.
  std::vector<ClusterMember> members(uint64_t *as_of_ms = nullptr) const;
  const ClusterPresenceCounters &counters() const { return counters_; }

 private:
  void heartbeat();
  void send(std::string_view topic, const std::string &payload);
  void say_states();
  void refuse(std::string_view topic, const std::string &why);

  uv_loop_t *loop_;
  RedisConnection &commands_;
  PresenceHub &hub_;
  ClusterPresenceOptions options_;
  uv_timer_t timer_{};
  bool timer_open_ = false;
  bool heartbeat_in_flight_ = false;
  bool ever_listed_ = false;
  mutable std::mutex members_mu_;
  std::vector<ClusterMember> members_;
  uint64_t members_as_of_ms_ = 0;
  log::Throttle refused_log_{3, 10'000};
  ClusterPresenceCounters counters_;
};

}  // namespace kronop::daemon
