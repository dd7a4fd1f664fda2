// Phoenix Presence: who is on each topic (a reel's viewers), in the wire format of Phoenix's
// Presence so that the official phoenix.js `Presence` class works unchanged; and each user's
// own status (online / away / offline, the reel they watch), independent of topics.
//
// Topic presence. Each topic maps a user id to the metas of that user's sockets:
//
//   presence_state: {"USER":{"metas":[{"phx_ref":"REF","online_at":MS},...]},...}
//   presence_diff:  {"joins":{"USER":{"metas":[...]}},"leaves":{"USER":{"metas":[...]}}}
//
// One user with several sockets is one key with several metas, each with a phx_ref unique
// across the process (a random per-process prefix, so that a restarted daemon's refs never
// match those a reconnecting client still holds, then a counter in base 36).
//
// Batching. Changes are not sent as they happen: a topic keeps its state as of the last
// flush ("flushed") and the joins and leaves since then ("pending"). flush(), called by a
// timer, turns each topic's pending changes into one presence_diff and applies them to the
// flushed state. A socket that joins and leaves between two flushes is in neither side of
// the diff; a topic left with no metas is erased at the flush (nothing is kept for empty
// topics). So a reel with 10,000 viewers joining over one interval costs one diff per
// interval, not 10,000 broadcasts of a growing message to a growing audience.
//
// state() is the presence_state as of the last flush, not including pending changes, cached
// as one shared string per topic and rebuilt at most once per flush that changed the topic
// (10,000 joins between two flushes, each sent the state, cost one encoding). This is
// consistent with phoenix.js, provided the server subscribes a joining socket to the
// topic's diffs BEFORE it calls state() (or in the same step, under a lock that flush's
// fan-out also takes), and sends each flush's diffs in flush order: the socket then gets a
// state S_k and every diff D_j with j <= k + 1, in order. phoenix.js buffers diffs that
// arrive before the state (pendingDiffs) and applies them after it, and applying an older
// diff to a newer state changes nothing in the end: syncDiff dedups joins by phx_ref, drops
// leaves of unknown keys and refs, and a ref, once left, never joins again, so the last diff
// that mentions a ref decides whether it is there, as it did on the server. (The reverse
// order, state() then subscribe, can lose the diff of a flush that falls in between.)
//
// Cluster (--redis; cluster_presence.h). A topic's presences are the cluster's: this
// node's own metas (tracked here) and other nodes' (remote_changes, remote_state), each
// meta under its node's ref prefix, so that a phx_ref names the node that holds it (the
// prefix is the node's id in the cluster, node_id()). state() and the diffs show them all.
// With Options::replicate, flush() also hands out each topic's own changes (Diff::own_*)
// for the other nodes. A node that dies is dropped (drop_nodes_except): its metas leave.
//
// User status. connected()/disconnected() count a user's authenticated sockets; the first
// one makes the user online (unless they set themselves away), the last one leaving makes
// them offline and clears what they were doing. set_status() is the user's explicit choice.
// The table is bounded: a user with no sockets is forgotten once not seen for 24 h (lazily,
// on later changes), and when it holds max_users entries the user offline longest is
// forgotten first. Users with sockets are never evicted (their sockets bound them).
//
// Strings. Topics and user ids come from valid_topic (envelope_validation.h) and are
// json_safe (phoenix.h): payloads are built by concatenation, with no escaping (asserted in
// debug builds). The activity text of set_status is stored as given; whoever encodes it
// escapes it.
//
// Thread safety: every member function may be called from any thread (the I/O loops, the
// flush timer, the REST API). One mutex guards the tables; the counters for metrics are
// relaxed atomics, read without it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace kronop::daemon {

class PresenceHub {
 public:
  struct Options {
    // Entries of the user table beyond which the users offline longest are forgotten.
    std::size_t max_users = 1'000'000;
    // A user with no sockets not seen for longer than this is forgotten (lazily).
    uint64_t user_ttl_ms = 24ull * 3600 * 1000;
    // Cluster mode: flush() hands out this node's own changes too (Diff::own_joins/leaves).
    bool replicate = false;
    // Cluster mode: other nodes' metas kept per topic, and other nodes known, at most.
    std::size_t max_remote_metas_per_topic = 100'000;
    std::size_t max_remote_nodes = 1024;
  };

  // This process's ref prefix: "F" and 8 random base-36 characters; its id in a cluster.
  static const std::string &node_id();

  PresenceHub();
  explicit PresenceHub(Options options);
  PresenceHub(const PresenceHub &) = delete;
  PresenceHub &operator=(const PresenceHub &) = delete;

  // ---------------------------------------------------------------------------------------
  // Topic presence

  // A socket of `user` joined `topic` at `now_ms` (Unix ms, the meta's online_at); returns
  // the phx_ref of its meta, which the caller keeps to untrack it. Both strings json_safe.
  std::string track(const std::string &topic, const std::string &user, uint64_t now_ms);
  // That socket left (or disconnected). Unknown refs, and refs already untracked, are
  // ignored.
  void untrack(const std::string &topic, const std::string &user, const std::string &phx_ref);

  // The presence_state payload as of the last flush; never null (a shared "{}" when the
  // topic has no presences). The same object until a flush changes the topic.
  std::shared_ptr<const std::string> state(const std::string &topic);

  // A meta as nodes tell each other (cluster_presence.h): the ref is the node's prefix and
  // `id` in base 36.
  struct NodeMeta {
    std::string user;
    uint64_t id = 0;
    uint64_t online_at = 0;  // joins and states only
  };
  struct Diff {
    std::string topic;
    std::string payload;  // the presence_diff payload ("" when nothing changed for clients)
    // Options::replicate: this node's own joins and leaves in it, for the other nodes.
    std::vector<NodeMeta> own_joins;
    std::vector<NodeMeta> own_leaves;
  };
  // Appends one presence_diff per topic whose presences changed since the last flush (a
  // join cancelled by its leave is no change); returns how many it appended.
  std::size_t flush(std::vector<Diff> &out);

  // ---------------------------------------------------------------------------------------
  // Cluster (presence_remote.cc). `node` is another node's id (its ref prefix), `now_ms` the
  // monotonic time it was heard from. Outside input: users must be json_safe, and what
  // passes the bounds (Options) is ignored; each returns false when something was.

  // Node `node`'s joins and leaves on `topic` (a leave of an unknown meta is ignored, as is
  // a join of a meta already there or gone).
  bool remote_changes(const std::string &topic, std::string_view node,
                      const std::vector<NodeMeta> &joins, const std::vector<NodeMeta> &leaves,
                      uint64_t now_ms);
  // Node `node`'s whole presence on `topic`: what was known of it there is replaced.
  bool remote_state(const std::string &topic, std::string_view node,
                    const std::vector<NodeMeta> &metas, uint64_t now_ms);
  // Every node not in `alive` that was first heard from before `heard_before_ms` is gone:
  // its metas leave every topic. Returns the ids of the nodes dropped.
  std::vector<std::string> drop_nodes_except(const std::vector<std::string> &alive,
                                             uint64_t heard_before_ms);
  // Other nodes' metas on `topic` leave (no local client holds it any more: what the others
  // do there is not heard of), or on every topic when `topic` is null (this node was cut
  // off: what it holds of the others may be stale, and is asked for again). Returns how
  // many left.
  std::size_t forget_remote(const std::string *topic);
  // This node's own live metas on `topic`, and the topics where it has any.
  std::vector<NodeMeta> own_metas(const std::string &topic) const;
  std::vector<std::string> own_topics() const;
  // Other nodes this hub holds metas of.
  std::size_t remote_nodes() const;

  // Metrics, from any thread without the lock. topics: topics with at least one live meta;
  // metas: live metas (flushed + pending joins - pending leaves); diffs: produced since start.
  uint64_t topics() const { return topics_.load(std::memory_order_relaxed); }
  uint64_t metas() const { return metas_.load(std::memory_order_relaxed); }
  uint64_t diffs() const { return diffs_.load(std::memory_order_relaxed); }

  // Live metas (sockets) of one topic and its distinct users (with at least one live meta).
  std::size_t metas_of(const std::string &topic) const;
  std::size_t users_of(const std::string &topic) const;
  // Entries of the topic table: live topics, plus those emptied since the last flush (which
  // the flush erases). For tests and memory accounting.
  std::size_t topic_entries() const;

  // Who is on `topic` as of the last flush, as state() shows it: each user with the number
  // of their metas (sockets), by user id. Joins since the flush are not in it yet; metas
  // untracked since are still in it (until the next flush). For the operator (kronopctl).
  struct Present {
    std::string user_id;
    std::size_t metas = 0;
  };
  std::vector<Present> present(const std::string &topic) const;

  // ---------------------------------------------------------------------------------------
  // User status

  enum class Status : uint8_t { kOffline, kOnline, kAway };
  struct UserPresence {
    std::string user_id;
    Status status = Status::kOffline;
    int32_t current_reel = 0;  // 0: none
    std::string activity;
    uint64_t last_seen_ms = 0;
    uint32_t sockets = 0;
  };

  // An authenticated socket of `user` opened / closed. The first socket makes the status
  // online, unless it is away; the last one closing makes it offline with current_reel 0
  // and no activity. Both update last_seen_ms. A close with no socket open is ignored.
  // Told of every change of a user's status (first socket, last socket, set_status), after
  // the hub's lock is released; e.g. to keep last-known presence in the durable log. Set
  // before the hub is shared.
  using Observer = std::function<void(const UserPresence &)>;
  void set_observer(Observer observer) { observer_ = std::move(observer); }
  // Cluster mode (cluster_users.h): told, after the lock is released, of every change of a
  // user's socket count (`explicit_status` false; `p.sockets` is the new count) and of every
  // set_status (true). Set before the hub is shared.
  using ClusterObserver = std::function<void(const UserPresence &p, bool explicit_status)>;
  void set_cluster_observer(ClusterObserver observer) { cluster_observer_ = std::move(observer); }
  // At start: a user's last-known presence from before a restart. No socket survives a
  // restart, so "online" becomes offline; away is the user's choice and stays.
  void restore(const UserPresence &p);
  void connected(const std::string &user, uint64_t now_ms);
  void disconnected(const std::string &user, uint64_t now_ms);
  // The user's explicit status (their channel's push, the REST API); updates last_seen_ms
  // and returns the result. kOffline while sockets are open is allowed: the user appears
  // offline (until they set another status or their sockets all close and one reopens).
  UserPresence set_status(const std::string &user, Status s, int32_t current_reel,
                          std::string activity, uint64_t now_ms);
  // nullopt when the user was never seen (or has been forgotten). While the user has
  // sockets, last_seen_ms is reported as now_ms.
  std::optional<UserPresence> user(const std::string &user, uint64_t now_ms) const;
  // Users with at least one socket (any status), without the lock.
  uint64_t users_online() const { return users_online_.load(std::memory_order_relaxed); }
  // Entries of the user table (for tests and memory accounting).
  std::size_t user_entries() const;

  static const char *status_name(Status s);  // "online" / "away" / "offline"
  // The inverse of status_name; false (and *out unchanged) for any other name.
  static bool parse_status(std::string_view name, Status *out);

 private:
  // A socket's meta. Its phx_ref is the process prefix + `id` in base 36, so a meta needs no
  // string of its own, and untrack finds it by binary search: ids grow with each track
  // (taken under the lock), so every user's metas are sorted by id, and pending joins all
  // come after the flushed metas.
  // Cluster mode: metas are sorted by (node, id) — node 0 is this one, whose ids grow, so
  // its metas still go at the end — and other nodes' carry their node's index in nodes_.
  struct Meta {
    uint64_t id = 0;
    uint64_t online_at = 0;
    uint32_t node = 0;     // 0: this node's; else the index of a RemoteNode
    bool leaving = false;  // flushed, untracked since: in the next diff's leaves
    bool before(const Meta &o) const { return node != o.node ? node < o.node : id < o.id; }
  };
  struct UserMetas {
    std::vector<Meta> flushed;  // as of the last flush (leaving ones included)
    std::vector<Meta> joins;    // tracked since the last flush
    uint32_t leaving = 0;       // flushed metas marked leaving
    bool dirty = false;         // listed in its topic's dirty_users
    std::size_t live() const { return flushed.size() - leaving + joins.size(); }
  };
  using UserNode = std::pair<const std::string, UserMetas>;
  struct Topic {
    std::unordered_map<std::string, UserMetas> users;
    // Users with pending changes; map nodes do not move, and are erased only by flush.
    std::vector<UserNode *> dirty_users;
    std::shared_ptr<const std::string> state;  // cached presence_state; null: to rebuild
    std::size_t live_metas = 0;
    std::size_t live_users = 0;
    std::size_t remote_metas = 0;  // Meta structs of other nodes (leaving ones included)
    bool dirty = false;            // listed in dirty_topics_
  };
  using TopicNode = std::pair<const std::string, Topic>;

  struct UserEntry;
  using UserEntryNode = std::pair<const std::string, UserEntry>;
  struct UserEntry {
    Status status = Status::kOffline;
    int32_t current_reel = 0;
    std::string activity;
    uint64_t last_seen_ms = 0;
    uint32_t sockets = 0;
    // Position in idle_ while sockets == 0.
    bool idle = false;
    std::list<UserEntryNode *>::iterator idle_pos;
  };

  // Adds a meta (pending join) to `user` on the topic; false when (node, id) is there
  // already. Another node's meta that left since the last flush is back (not in its leaves).
  bool add_meta_locked(TopicNode &tn, const std::string &user, const Meta &meta);
  // Removes the live meta (node, id) of `user` from the topic: a pending join is cancelled,
  // a flushed one marked leaving. False when there is none.
  bool remove_meta_locked(TopicNode &tn, const std::string &user, uint32_t node, uint64_t id);
  void mark_dirty_locked(TopicNode &tn, UserNode &un);
  // Removes the live metas of the nodes `which` selects from the topic; returns how many.
  std::size_t remove_remote_locked(TopicNode &tn, const std::function<bool(uint32_t node)> &which);
  // A remote meta struct erased: its node's slot is freed with its last.
  void release_node_locked(uint32_t node);
  // The index of node `id`, added (heard from at now_ms) if new; 0 when the table is full
  // or `id` is not a node id.
  uint32_t node_index_locked(std::string_view id, uint64_t now_ms);
  void append_metas(std::string &out, const std::string &user, const Meta *begin, const Meta *end,
                    bool only_leaving) const;
  std::string encode_state(const Topic &t) const;

  UserEntryNode &find_or_add_user_locked(const std::string &user);
  void touch_idle_locked(UserEntryNode &node);
  void expire_users_locked(uint64_t now_ms);
  static UserPresence snapshot(const UserEntryNode &node, uint64_t now_ms);

  const Options options_;

  // Cluster mode: other nodes whose metas this hub holds; index 0 is unused (this node).
  struct RemoteNode {
    std::string id;  // "" for a free slot
    uint64_t first_heard_ms = 0;
    std::size_t metas = 0;  // Meta structs of it in the tables (leaving ones included)
  };
  std::vector<RemoteNode> nodes_{1};
  std::vector<uint32_t> free_nodes_;
  std::unordered_map<std::string, uint32_t> node_index_;

  Observer observer_;
  ClusterObserver cluster_observer_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Topic> topic_table_;
  std::vector<TopicNode *> dirty_topics_;  // topics with pending changes
  std::unordered_map<std::string, UserEntry> users_;
  // Users with no sockets, least recently seen first: the eviction order.
  std::list<UserEntryNode *> idle_;

  std::atomic<uint64_t> topics_{0};
  std::atomic<uint64_t> metas_{0};
  std::atomic<uint64_t> diffs_{0};
  std::atomic<uint64_t> users_online_{0};
};

}  // namespace kronop::daemon
