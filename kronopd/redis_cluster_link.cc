// A connection to a Redis Cluster; see redis_cluster_link.h.
#include "redis_cluster_link.h"

#include <strings.h>

#include <cerrno>
#include <cstring>

#include "kronop/clock.h"
#include "log.h"
#include "redis_reply.h"

namespace kronop::daemon {

namespace {

constexpr uint64_t kTickMs = 100;
constexpr uint64_t kSoonestRefreshMs = 200;  // between two maps asked for (MOVED storms)
constexpr uint64_t kNoMapRefreshMs = 500;    // while there is no map yet

bool is(std::string_view word, const char *name) {
  return word.size() == std::strlen(name) && ::strncasecmp(word.data(), name, word.size()) == 0;
}

void fail(const RedisConnection::ReplyFn &done, std::string why) {
  if (!done) return;
  const Error e{-ENOTCONN, std::move(why)};
  done(nullptr, &e);
}

std::string name_of(const std::string &host, uint16_t port) {
  std::string name = host;
  name += ':';
  name += std::to_string(port);
  return name;
}

log::Throttle &map_log() {
  static thread_local log::Throttle throttle(5, 10'000);
  return throttle;
}

}  // namespace

std::optional<std::string_view> command_key(const std::vector<std::string_view> &argv) {
  if (argv.size() < 2) return std::nullopt;
  const std::string_view command = argv[0];
  if (is(command, "EVAL") || is(command, "EVALSHA")) {
    uint64_t keys = 0;
    if (argv.size() < 4 || !parse_decimal_u64(argv[2], &keys) || keys == 0) return std::nullopt;
    return argv[3];
  }
  if (is(command, "SCRIPT") || is(command, "PING") || is(command, "CLUSTER") ||
      is(command, "INFO")) {
    return std::nullopt;
  }
  return argv[1];
}

RedisClusterLink::RedisClusterLink(uv_loop_t *loop, RedisClusterLinkOptions options)
    : loop_(loop),
      options_(std::move(options)),
      subscriber_(options_.link.kind == RedisLinkOptions::Kind::kSubscriber) {}

RedisClusterLink::~RedisClusterLink() = default;

RedisLinkOptions RedisClusterLink::link_options(const std::string &host, uint16_t port) const {
  RedisLinkOptions o = options_.link;
  o.endpoint = RedisEndpoint{};
  o.endpoint.host = host;
  o.endpoint.port = port;
  if (!options_.seeds.empty()) {
    o.endpoint.user = options_.seeds.front().user;
    o.endpoint.password = options_.seeds.front().password;
  }
  o.endpoint.db = 0;  // a Redis Cluster has only database 0
  return o;
}

void RedisClusterLink::start() {
  if (timer_open_) return;
  uv_timer_init(loop_, &timer_);
  timer_.data = this;
  timer_open_ = true;
  uv_timer_start(
      &timer_, [](uv_timer_t *t) { static_cast<RedisClusterLink *>(t->data)->on_tick(); }, kTickMs,
      kTickMs);
  for (const RedisEndpoint &seed : options_.seeds) {
    RedisLinkOptions o = options_.link;
    o.kind = RedisLinkOptions::Kind::kCommands;
    o.endpoint = seed;
    auto link = std::make_unique<RedisLink>(loop_, o);
    link->on_state([this](bool up, const std::string &reason) {
      if (up && owners_.empty()) refresh();
      if (!up && masters_.empty()) last_error_ = reason;
    });
    link->start();
    seeds_.push_back(std::move(link));
  }
}

void RedisClusterLink::on_tick() {
  std::erase_if(retired_, [](const Retired &r) { return r.closed; });
  if (refreshing_ || closing_) return;
  const uint64_t now = uv_now(loop_);
  const uint64_t every = owners_.empty() ? kNoMapRefreshMs : options_.refresh_ms;
  if ((refresh_wanted_ && now >= last_refresh_ms_ + kSoonestRefreshMs) ||
      now >= last_refresh_ms_ + every) {
    refresh();
  }
}

void RedisClusterLink::refresh() {
  if (refreshing_ || closing_) return;
  RedisLink *asker = nullptr;
  for (auto &seed : seeds_) {
    if (seed->up()) {
      asker = seed.get();
      break;
    }
  }
  if (asker == nullptr && !subscriber_) {
    for (auto &[name, link] : masters_) {
      if (link->up()) {
        asker = link.get();
        break;
      }
    }
  }
  if (asker == nullptr) return;  // asked again once a seed is up
  refreshing_ = true;
  refresh_wanted_ = false;
  last_refresh_ms_ = uv_now(loop_);
  asker->send({"CLUSTER", "SLOTS"}, [this, host = asker->options().endpoint.host](
                                        const redisReply *reply, const Error *) {
    refreshing_ = false;
    if (closing_ || reply == nullptr) return;
    auto map = parse_cluster_slots(*reply, host);
    if (!map.ok()) {
      ++counters_.refused_maps;
      uint64_t suppressed = 0;
      if (map_log().allow(monotonic_ms(), &suppressed)) {
        KLOG_WARN("event=redis_cluster_map_refused error=%s suppressed=%llu",
                  log::q(map.error().message).c_str(), static_cast<unsigned long long>(suppressed));
      }
      if (owners_.empty()) last_error_ = "CLUSTER SLOTS: " + map.error().message;
      return;
    }
    take_map(std::move(map).value());
  });
}

void RedisClusterLink::take_map(SlotMap map) {
  ++counters_.maps;
  const auto masters = map.masters();
  if (masters.empty() || masters.size() > options_.max_masters) {
    ++counters_.refused_maps;
    if (owners_.empty()) {
      last_error_ = masters.empty() ? "the cluster serves no slot"
                                    : "the cluster has more masters than kronopd takes";
    }
    return;
  }
  // New masters first: the old links stay alive while the owners are compared.
  for (const auto &[host, port] : masters) {
    const std::string name = name_of(host, port);
    if (masters_.count(name) != 0) continue;
    auto link = std::make_unique<RedisLink>(loop_, link_options(host, port));
    link->on_state([this, name](bool up, const std::string &reason) {
      if (!up) refresh_wanted_ = true;  // a failover may have moved its slots
      on_member_state(name + ": " + reason);
    });
    if (subscriber_) {
      link->on_push([this](const redisReply &push) {
        const Push p = classify_push(push);
        if (p.kind == PushKind::kError && parse_redirect(p.payload)) refresh_wanted_ = true;
        if (on_push_) on_push_(push);
      });
    }
    link->start();
    masters_.emplace(name, std::move(link));
  }
  std::vector<RedisLink *> owners(kClusterSlots, nullptr);
  for (const SlotRange &r : map.ranges) {
    RedisLink *l = masters_.at(name_of(r.host, r.port)).get();
    for (uint32_t s = r.first; s <= r.last; ++s) owners[s] = l;
  }
  std::size_t moved = 0;
  if (owners_.empty()) {
    moved = kClusterSlots;
  } else {
    for (std::size_t s = 0; s < kClusterSlots; ++s) moved += owners[s] != owners_[s] ? 1 : 0;
  }
  // Channels whose slot moved are subscribed on their new master.
  std::map<RedisLink *, std::map<uint16_t, std::vector<std::string_view>>> resubscribe;
  if (subscriber_ && !owners_.empty()) {
    for (const auto &[channel, slot] : channels_) {
      if (owners[slot] != owners_[slot] && owners[slot] != nullptr) {
        resubscribe[owners[slot]][slot].push_back(channel);
      }
    }
  }
  owners_ = std::move(owners);
  whole_map_ = map.complete();
  // Masters no longer in the map.
  for (auto it = masters_.begin(); it != masters_.end();) {
    bool listed = false;
    for (const auto &[host, port] : masters) listed = listed || it->first == name_of(host, port);
    if (listed) {
      ++it;
      continue;
    }
    retire(std::move(it->second));
    it = masters_.erase(it);
  }
  for (auto &[link, by_slot] : resubscribe) {
    if (!link->up()) continue;  // subscribed with everything once it is up
    for (auto &[slot, channels] : by_slot) subscribe_on(link, "SSUBSCRIBE", channels);
  }
  if (moved > 0) {
    ++counters_.map_changes;
    uint64_t suppressed = 0;
    if (map_log().allow(monotonic_ms(), &suppressed)) {
      KLOG_NOTICE("event=redis_cluster_map masters=%zu slots_moved=%zu whole=%s suppressed=%llu",
                  masters_.size(), moved, whole_map_ ? "yes" : "no",
                  static_cast<unsigned long long>(suppressed));
    }
  }
  on_member_state(whole_map_ ? "" : "the cluster's map leaves slots unserved");
}

void RedisClusterLink::on_member_state(const std::string &reason) {
  if (closing_) return;
  bool all = whole_map_ && !masters_.empty();
  std::string why = reason;
  for (auto &[name, link] : masters_) {
    if (!link->up()) {
      all = false;
      if (why.empty()) why = name + ": " + link->last_error();
    }
  }
  if (all == up_) return;
  up_ = all;
  last_error_ = all ? "" : (why.empty() ? "a master is not connected" : why);
  if (on_state_) on_state_(up_, last_error_);
}

RedisLink *RedisClusterLink::owner(uint16_t slot) const {
  return slot < owners_.size() ? owners_[slot] : nullptr;
}

RedisLink *RedisClusterLink::master_at(const std::string &host, uint16_t port) const {
  const auto it = masters_.find(name_of(host, port));
  return it == masters_.end() ? nullptr : it->second.get();
}

std::string RedisClusterLink::master_of(uint16_t slot) const {
  const RedisLink *l = owner(slot);
  for (const auto &[name, link] : masters_) {
    if (link.get() == l) return name;
  }
  return "";
}

uint64_t RedisClusterLink::connects() const {
  uint64_t n = 0;
  for (const auto &[name, link] : masters_) n += link->connects();
  return n;
}

void RedisClusterLink::send(const std::vector<std::string_view> &argv, ReplyFn done) {
  if (subscriber_) {
    subscribe(argv);
    return;
  }
  if (closing_) return fail(done, "closing");
  const auto key = command_key(argv);
  if (!key) {
    if (!argv.empty() && is(argv[0], "SCRIPT")) return send_everywhere(argv, std::move(done));
    for (auto &[name, link] : masters_) {
      if (link->up()) return link->send(argv, std::move(done));
    }
    return fail(done, "no master of the cluster is connected");
  }
  const uint16_t slot = redis_hash_slot(*key);
  RedisLink *to = owner(slot);
  if (to == nullptr || !to->up()) {
    std::string why = "the master of slot ";
    why += std::to_string(slot);
    why += to == nullptr ? " is not known" : " is not connected";
    return fail(done, std::move(why));
  }
  forward(to, std::make_shared<std::vector<std::string>>(argv.begin(), argv.end()), std::move(done),
          0, false);
}

void RedisClusterLink::forward(RedisLink *to, Argv argv, ReplyFn done, int redirects, bool asking) {
  if (asking) to->send({"ASKING"}, {});
  const std::vector<std::string_view> views(argv->begin(), argv->end());
  to->send(views,
           [this, argv, done = std::move(done), redirects, host = to->options().endpoint.host](
               const redisReply *reply, const Error *error) mutable {
             if (reply != nullptr && reply->type == REDIS_REPLY_ERROR && !closing_ &&
                 redirects < options_.max_redirects) {
               if (auto r = parse_redirect({reply->str, reply->len})) {
                 ++counters_.redirects;
                 const bool moved = r->kind == Redirect::Kind::kMoved;
                 if (moved) refresh_wanted_ = true;
                 RedisLink *next = master_at(r->host.empty() ? host : r->host, r->port);
                 if (next != nullptr && next->up()) {
                   forward(next, std::move(argv), std::move(done), redirects + 1, !moved);
                   return;
                 }
                 // A master not known yet: the caller tries again once the map has it.
                 refresh_wanted_ = true;
               }
             }
             if (done) done(reply, error);
           });
}

void RedisClusterLink::send_everywhere(const std::vector<std::string_view> &argv, ReplyFn done) {
  // `done` hears the first answer; the others are not waited for.
  auto first = std::make_shared<ReplyFn>(std::move(done));
  bool sent = false;
  for (auto &[name, link] : masters_) {
    if (!link->up()) continue;
    sent = true;
    link->send(argv, [first](const redisReply *reply, const Error *error) {
      if (!*first) return;
      ReplyFn take = std::move(*first);
      *first = nullptr;
      take(reply, error);
    });
  }
  if (!sent) fail(*first, "no master of the cluster is connected");
}

void RedisClusterLink::subscribe(const std::vector<std::string_view> &argv) {
  if (argv.empty() || closing_) return;
  const std::string_view command = argv[0];
  if (is(command, "PING")) {
    for (auto &[name, link] : masters_) {
      if (link->up()) link->send(argv, {});
    }
    return;
  }
  const bool subscribing = is(command, "SSUBSCRIBE");
  if (!subscribing && !is(command, "SUNSUBSCRIBE")) return;  // nothing else is sharded
  std::map<uint16_t, std::vector<std::string_view>> by_slot;
  for (std::size_t i = 1; i < argv.size(); ++i) {
    const uint16_t slot = redis_hash_slot(argv[i]);
    if (subscribing) {
      channels_[std::string(argv[i])] = slot;
    } else {
      channels_.erase(std::string(argv[i]));
    }
    by_slot[slot].push_back(argv[i]);
  }
  for (auto &[slot, channels] : by_slot) {
    RedisLink *to = owner(slot);
    // A master not up subscribes everything once it is (the owner hears the state change).
    if (to != nullptr && to->up()) subscribe_on(to, command, channels);
  }
}

void RedisClusterLink::subscribe_on(RedisLink *to, std::string_view command,
                                    const std::vector<std::string_view> &channels) {
  std::vector<std::string_view> argv;
  argv.reserve(channels.size() + 1);
  argv.push_back(command);
  argv.insert(argv.end(), channels.begin(), channels.end());
  to->send(argv, {});
}

void RedisClusterLink::retire(std::unique_ptr<RedisLink> link) {
  RedisLink *l = link.get();
  retired_.push_back({std::move(link), false});
  // Freed at the next tick (or with this object), not inside its own callback.
  l->close([this, l] {
    for (Retired &r : retired_) {
      if (r.link.get() == l) r.closed = true;
    }
    if (closing_) closed_one();
  });
}

void RedisClusterLink::close(std::function<void()> done) {
  if (closing_) return;
  closing_ = true;
  on_closed_ = std::move(done);
  up_ = false;
  std::size_t retiring = 0;
  for (const Retired &r : retired_) retiring += r.closed ? 0 : 1;
  closing_left_ = seeds_.size() + masters_.size() + retiring + (timer_open_ ? 1 : 0) + 1;
  if (timer_open_) {
    uv_timer_stop(&timer_);
    uv_close(reinterpret_cast<uv_handle_t *>(&timer_),
             [](uv_handle_t *h) { static_cast<RedisClusterLink *>(h->data)->closed_one(); });
  }
  for (auto &seed : seeds_) seed->close([this] { closed_one(); });
  for (auto &[name, link] : masters_) link->close([this] { closed_one(); });
  closed_one();  // the extra one: none of the above may finish before all are asked
}

void RedisClusterLink::closed_one() {
  if (closing_left_ == 0 || --closing_left_ > 0) return;
  if (on_closed_) on_closed_();
}

}  // namespace kronop::daemon
