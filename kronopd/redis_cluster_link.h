// A connection to a Redis Cluster (DESIGN.md §8, "Redis Cluster for scale"): one RedisLink
// per master, each command sent to the master serving its key's hash slot, each shard
// channel subscribed on the master serving its slot (sharded pub/sub: SPUBLISH and
// SSUBSCRIBE stay within the shard, so the cluster's pub/sub scales with its masters).
//
// The slot map (redis_slots.h) is asked of the seeds (--redis, given more than once, or one
// seed that is a Redis Cluster) with CLUSTER SLOTS: at start, every refresh_ms, after a
// MOVED, and when a master's link is lost (a failover moves its slots). A map that changes
// opens links to new masters and closes those of masters gone. The seeds are commands links
// of their own, kept for asking; the first one up is asked (for a commands connection,
// any master's link too).
//
// Commands. The key is the command's first (EVAL, EVALSHA: the first of KEYS; everything
// kronopd sends names its key there, and the keys of one script share a hash tag). A reply
// -MOVED sends the command again to the master named (at most max_redirects times) and
// refreshes the map; -ASK sends it there once, behind ASKING. A command without a key goes
// to every master (SCRIPT LOAD: a script is loaded where it will run) or to any (PING).
// A command whose slot has no master up fails at once, like a RedisLink that is down.
//
// Subscribers. SSUBSCRIBE / SUNSUBSCRIBE of many channels are split by slot (Redis refuses
// channels of two slots in one command) and sent to each slot's master. The channels
// subscribed are remembered: when the map moves a slot to another master, its channels are
// subscribed there (the old master unsubscribes them itself, with an `sunsubscribe` the
// owner may answer by subscribing again: harmless). Pushes from every master go to the push
// callback.
//
// Up means a whole map (every slot served) and every master's link up; the state callback
// hears each change, so a master lost makes the whole connection down and then up again,
// as one RedisLink would be: the owner subscribes every channel again and reads what it
// missed (cluster_node.h).
//
// Bounds (the map is outside input): at most max_masters masters; every RedisLink keeps its
// own bounds and deadlines.
//
// Threads: the loop it lives on, callbacks included.
#pragma once

#include <uv.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "redis_connection.h"
#include "redis_link.h"
#include "redis_slots.h"

namespace kronop::daemon {

struct RedisClusterLinkOptions {
  RedisLinkOptions link;  // the kind, timeouts and bounds of every link; endpoints: the map's
  std::vector<RedisEndpoint> seeds;  // credentials (user, password) are the first seed's
  uint32_t refresh_ms = 5000;        // CLUSTER SLOTS asked again at least this often
  std::size_t max_masters = 256;
  int max_redirects = 5;
};

struct RedisClusterCounters {
  uint64_t maps = 0;  // slot maps read
  uint64_t map_changes = 0;
  uint64_t redirects = 0;  // MOVED and ASK followed
  uint64_t refused_maps = 0;
};

// The key a command names (see above), or nullopt.
std::optional<std::string_view> command_key(const std::vector<std::string_view> &argv);

class RedisClusterLink final : public RedisConnection {
 public:
  RedisClusterLink(uv_loop_t *loop, RedisClusterLinkOptions options);
  ~RedisClusterLink() override;  // close() first, and run the loop until it calls back

  void on_state(StateFn fn) override { on_state_ = std::move(fn); }
  void on_push(PushFn fn) override { on_push_ = std::move(fn); }
  void start() override;
  void close(std::function<void()> done) override;
  bool up() const override { return up_; }
  const std::string &last_error() const override { return last_error_; }
  void send(const std::vector<std::string_view> &argv, ReplyFn done) override;
  uint64_t connects() const override;

  // The master serving `slot` ("host:port"), "" when none: for tests and operators.
  std::string master_of(uint16_t slot) const;
  std::size_t masters() const { return masters_.size(); }
  const RedisClusterCounters &counters() const { return counters_; }

 private:
  using Argv = std::shared_ptr<std::vector<std::string>>;

  RedisLinkOptions link_options(const std::string &host, uint16_t port) const;
  void on_tick();
  void refresh();
  void take_map(SlotMap map);
  void on_member_state(const std::string &reason);
  RedisLink *owner(uint16_t slot) const;
  RedisLink *master_at(const std::string &host, uint16_t port) const;
  void forward(RedisLink *to, Argv argv, ReplyFn done, int redirects, bool asking);
  void send_everywhere(const std::vector<std::string_view> &argv, ReplyFn done);
  void subscribe(const std::vector<std::string_view> &argv);
  void subscribe_on(RedisLink *to, std::string_view command,
                    const std::vector<std::string_view> &channels);
  void retire(std::unique_ptr<RedisLink> link);
  void closed_one();

  uv_loop_t *loop_;
  RedisClusterLinkOptions options_;
  bool subscriber_;
  std::vector<std::unique_ptr<RedisLink>> seeds_;
  std::map<std::string, std::unique_ptr<RedisLink>> masters_;  // by "host:port"
  std::vector<RedisLink *> owners_;                            // by slot; empty: no map yet
  bool whole_map_ = false;
  struct Retired {
    std::unique_ptr<RedisLink> link;
    bool closed = false;
  };
  std::vector<Retired> retired_;  // masters gone from the map: closing, then freed
  // Subscribers: the channels subscribed (or to be, once their master is up), by slot.
  std::unordered_map<std::string, uint16_t> channels_;
  uv_timer_t timer_{};
  bool timer_open_ = false;
  bool refreshing_ = false;
  bool refresh_wanted_ = true;
  uint64_t last_refresh_ms_ = 0;
  bool up_ = false;
  bool closing_ = false;
  std::size_t closing_left_ = 0;
  std::function<void()> on_closed_;
  std::string last_error_ = "no slot map yet";
  StateFn on_state_;
  PushFn on_push_;
  RedisClusterCounters counters_;
};

}  // namespace kronop::daemon
