// This node's part of the cluster (DESIGN.md §8): the thread `kronop-cluster`, a libuv loop
// that owns the node's two Redis connections and what runs on them —
//   a commands link: ClusterForwarder (this node's records, numbered by Redis), the stream
//     positions joins are answered with, and history reads for recoveries;
//   a subscriber link: ClusterSubscriptions (the channels of the topics local clients hold);
//   and, given a PresenceHub, ClusterPresence (cluster_presence.h): heartbeats, the members'
//   list, and presence between nodes on the same channels; and ClusterUsers
//   (cluster_users.h): users' status for the whole cluster.
// Other threads talk to it only through a handoff stack and a uv_async: the ingest thread
// forwards records and says which topics are wanted; anyone may ask for history. What the
// cluster sends back for the ingest thread — numbered messages, topics' positions, the link
// going up or down — is queued as ClusterEvents, in the order it happened, and the ingest
// thread is woken to take them (take_events).
//
// Order: the messages of one topic come in seq order (one channel, one connection). A
// topic's position is read after its subscription is confirmed, so every message numbered
// after that position arrives as a message; messages at or below it may arrive too, before
// or after the position, and are the reader's to drop.
//
// Up means both links are up. When either is lost the node is down (one kDown event) until
// both are back (one kUp event, then the positions of every wanted topic again, since what
// was published meanwhile was not received).
#pragma once

#include <uv.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "cluster_forwarder.h"
#include "cluster_history.h"
#include "cluster_numbering.h"
#include "cluster_presence.h"
#include "cluster_users.h"
#include "handoff_stack.h"
#include "owned_counter.h"
#include "redis_cluster_link.h"
#include "redis_link.h"
#include "redis_url.h"

namespace kronop::daemon {

struct ClusterNodeOptions {
  RedisEndpoint endpoint;            // the one Redis, or the first seed
  std::vector<RedisEndpoint> seeds;  // every --redis
  bool redis_cluster = false;        // a Redis Cluster: a link per master
  // For logs and operators: the URL(s) without passwords, "A,B,C" for several seeds.
  std::string redis_display() const {
    std::string out;
    for (const RedisEndpoint &seed : seeds) {
      if (!out.empty()) out += ',';
      out += seed.display();
    }
    return out.empty() ? endpoint.display() : out;
  }
  HistoryLimits history;
  std::size_t max_queued = ClusterForwarder::kDefaultMaxQueued;
  uint64_t unnumbered_ttl_s = 300;  // a stream started for a join and never published to
  uint32_t backoff_min_ms = 100;    // reconnect backoff of both links
  uint32_t backoff_max_ms = 5000;
  uint32_t command_timeout_ms = 5000;
  uint64_t user_record_ttl_ms = 24ull * 3600 * 1000;  // a user's record (cluster_users.h)
  // Presence across the cluster (null: none, e.g. in tests of numbering alone).
  PresenceHub *presence = nullptr;
  ClusterPresenceOptions presence_options;
};

// What the cluster thread hands the ingest thread, oldest first.
struct ClusterEvent {
  enum class Kind : uint8_t {
    kMessage,   // topic, epoch, seq, envelope: a numbered message of a wanted topic
    kPosition,  // topic, epoch, seq: where the topic's stream stood once subscribed
    kUp,        // both links up
    kDown,      // a link lost (reason)
    kCaughtUp,  // topic: a catch_up's messages were all handed over (as kMessage) before it
  };
  Kind kind = Kind::kMessage;
  std::string topic;
  uint64_t epoch = 0;
  uint64_t seq = 0;
  std::string envelope;  // with its reel's totals written in, when it carries them
  bool counted = false;  // the message moved or carries its reel's totals, which are:
  ReelCounters totals;
  std::string reason;
  ClusterEvent *next = nullptr;
};

// Counters: written by the cluster thread, read by any.
struct ClusterCounters {
  std::atomic<uint64_t> up{0};  // 1 while both links are up
  std::atomic<uint64_t> ups{0};
  std::atomic<uint64_t> downs{0};
  std::atomic<uint64_t> forwarded{0};   // records handed to the forwarder
  std::atomic<uint64_t> numbered{0};    // taken by Redis, numbered now
  std::atomic<uint64_t> duplicates{0};  // taken by Redis, numbered before
  std::atomic<uint64_t> refused{0};     // not queued: the forwarder's queue was full
  std::atomic<uint64_t> queued{0};      // waiting for Redis now
  std::atomic<uint64_t> messages{0};    // numbered messages received
  std::atomic<uint64_t> positions{0};   // positions read
  std::atomic<uint64_t> position_failures{0};
  std::atomic<uint64_t> history_reads{0};
  std::atomic<uint64_t> subscriptions{0};  // topics wanted now
  // A Redis Cluster (both connections' together): masters linked, MOVED/ASK followed, slot
  // maps that moved slots.
  std::atomic<uint64_t> masters{0};
  std::atomic<uint64_t> redirects{0};
  std::atomic<uint64_t> map_changes{0};
};

class ClusterNode {
 public:
  // A history read's answer, on the cluster thread: the range, or why there is none.
  using HistoryFn = std::function<void(Result<HistoryRange>)>;
  // A record Redis has taken (seq 0: numbered before), on the cluster thread.
  using TakenFn = std::function<void(const ForwardRecord &record, uint64_t epoch, uint64_t seq)>;

  explicit ClusterNode(ClusterNodeOptions options);
  ~ClusterNode();  // stop()
  ClusterNode(const ClusterNode &) = delete;
  ClusterNode &operator=(const ClusterNode &) = delete;

  // Before start(): called on the cluster thread when events wait to be taken (once per
  // empty-to-not-empty change of the queue).
  void on_events(std::function<void()> wake) { wake_ = std::move(wake); }
  // Before start(): presence across the cluster through `hub` (which must replicate, see
  // PresenceHub::Options); `connections` counts this node's client connections (any thread);
  // `port`, the client port, is added to the address the members' list shows.
  void use_presence(PresenceHub *hub, std::function<uint64_t()> connections, int port) {
    options_.presence = hub;
    options_.presence_options.connections = std::move(connections);
    options_.presence_options.address += ':';
    options_.presence_options.address += std::to_string(port);
  }
  // Before start(): told of each record Redis took (the outbox's acknowledgements).
  void on_taken(TakenFn fn) { on_taken_ = std::move(fn); }

  void start();
  // Waits up to `flush_for` for Redis to take what was forwarded, then closes the links and
  // ends the thread; records not taken by then are dropped here (the durable log has them).
  void stop(std::chrono::milliseconds flush_for = std::chrono::milliseconds(0));

  // One thread (the ingest thread): records to number, in their order per producer.
  void forward(std::vector<ForwardRecord> records);
  // One thread (the ingest thread): local clients now hold `topic` (true), or none does.
  void want(std::string topic, bool wanted);
  // The ingest thread: what happened, oldest first.
  HandoffStack<ClusterEvent>::List take_events() { return events_.take_all(); }
  // Any thread: the topic's messages numbered after..until, with the stream's epoch;
  // `done` runs on the cluster thread.
  void read_history(std::string topic, uint64_t after, uint64_t until, HistoryFn done);
  // Any thread (the presence timer): this node's own presence changes on `topic`, for the
  // other nodes.
  void publish_presence(std::string topic, std::vector<PresenceHub::NodeMeta> joins,
                        std::vector<PresenceHub::NodeMeta> leaves);
  // Any thread: the cluster's members as of the last heartbeat (empty without presence),
  // and Redis's time then.
  std::vector<ClusterMember> members(uint64_t *as_of_ms = nullptr) const;
  // Presence counters; null without presence.
  const ClusterPresenceCounters *presence_counters() const {
    return presence_ ? &presence_->counters() : nullptr;
  }
  // Before `hub` is shared (before use_presence): the hub tells this node of its users'
  // socket counts and statuses (PresenceHub::set_cluster_observer), for the cluster's view.
  void observe_users(PresenceHub &hub);
  // Any thread (the hub's cluster observer): this node now holds
  // `count` sockets of `user`, or the user chose a status.
  void user_sockets(std::string user, uint32_t count);
  void user_status(PresenceHub::UserPresence p);
  // Any thread: the user's status for the whole cluster; `done` runs on the cluster thread,
  // with an error when Redis cannot say (the link is down, or presence is off).
  void read_user(std::string user, ClusterUsers::ReadFn done);
  const ClusterUsersCounters *users_counters() const {
    return users_ ? &users_->counters() : nullptr;
  }
  // The ingest thread: what a topic's subscription missed while a link was away, read from
  // its history and handed over as kMessage events (what the history still holds), then one
  // kCaughtUp.
  void catch_up(std::string topic, uint64_t after, uint64_t until);

  bool up() const { return counters_.up.load(std::memory_order_relaxed) != 0; }
  const ClusterNodeOptions &options() const { return options_; }
  const ClusterCounters &counters() const { return counters_; }

 private:
  struct Request {
    enum class Kind : uint8_t {
      kForward,
      kWant,
      kUnwant,
      kHistory,
      kPresence,
      kLeave,
      kUserSockets,
      kUserStatus,
      kUserRead
    };
    Kind kind = Kind::kForward;
    std::vector<ForwardRecord> records;
    std::string topic;
    uint64_t after = 0;
    uint64_t until = 0;
    HistoryFn done;
    std::vector<PresenceHub::NodeMeta> joins;  // kPresence
    std::vector<PresenceHub::NodeMeta> leaves;
    PresenceHub::UserPresence user;  // kUserSockets (user_id, sockets), kUserStatus
    ClusterUsers::ReadFn user_done;  // kUserRead (topic: the user)
    Request *next = nullptr;
  };

  void run();
  void on_requests();
  void on_link_state();
  // A wanted topic's position is to be read (its subscription holds); sent when the
  // commands link is up, again at the next retry after a failure.
  void read_position(std::string_view topic);
  void send_positions();
  void emit(std::unique_ptr<ClusterEvent> e);
  void store_cluster_counters();
  void close_all();
  static void store(std::atomic<uint64_t> &c, uint64_t v) { c.store(v, std::memory_order_relaxed); }

  ClusterNodeOptions options_;
  std::function<void()> wake_;
  TakenFn on_taken_;
  uv_loop_t loop_{};
  uv_async_t async_{};
  uv_timer_t retry_timer_{};  // the forwarder's refused calls, tried again
  std::unique_ptr<RedisConnection> commands_;
  std::unique_ptr<RedisConnection> subscriber_;
  // The same two, when they are a Redis Cluster's (null otherwise): their counters.
  RedisClusterLink *cluster_commands_ = nullptr;
  RedisClusterLink *cluster_subscriber_ = nullptr;
  std::unique_ptr<ClusterForwarder> forwarder_;
  std::unique_ptr<class ClusterSubscriptions> subscriptions_;
  std::unique_ptr<ClusterPresence> presence_;  // kept until destruction (members, counters)
  std::unique_ptr<ClusterUsers> users_;        // with presence_
  HandoffStack<Request> requests_;
  HandoffStack<ClusterEvent> events_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> left_{false};    // this node's entry is off the members' list
  std::atomic<uint64_t> handed_{0};  // records forward() was given
  bool closing_ = false;
  bool was_up_ = false;
  std::unordered_set<std::string> positions_wanted_;
  std::thread thread_;
  ClusterCounters counters_;
};

}  // namespace kronop::daemon
