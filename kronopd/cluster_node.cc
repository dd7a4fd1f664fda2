// The cluster thread; see cluster_node.h.
#include "cluster_node.h"

#include <pthread.h>

#include <cerrno>

#include "cluster_subscriptions.h"
#include "kronop/clock.h"
#include "reels.h"
#include "sequencer.h"

namespace kronop::daemon {

namespace {

constexpr uint64_t kRetryMs = 200;

std::vector<std::string_view> views(const std::vector<std::string> &argv) {
  return {argv.begin(), argv.end()};
}

}  // namespace

ClusterNode::ClusterNode(ClusterNodeOptions options) : options_(std::move(options)) {}

ClusterNode::~ClusterNode() { stop(); }

void ClusterNode::start() {
  if (thread_.joinable()) return;
  uv_loop_init(&loop_);
  uv_async_init(&loop_, &async_,
                [](uv_async_t *a) { static_cast<ClusterNode *>(a->data)->on_requests(); });
  async_.data = this;
  uv_timer_init(&loop_, &retry_timer_);
  retry_timer_.data = this;
  auto link_options = [this](RedisLinkOptions::Kind kind) {
    RedisLinkOptions o;
    o.kind = kind;
    o.endpoint = options_.endpoint;
    o.backoff_min_ms = options_.backoff_min_ms;
    o.backoff_max_ms = options_.backoff_max_ms;
    o.command_timeout_ms = options_.command_timeout_ms;
    return o;
  };
  auto connection = [&](RedisLinkOptions::Kind kind) -> std::unique_ptr<RedisConnection> {
    if (!options_.redis_cluster) return std::make_unique<RedisLink>(&loop_, link_options(kind));
    RedisClusterLinkOptions c;
    c.link = link_options(kind);
    c.seeds = options_.seeds;
    return std::make_unique<RedisClusterLink>(&loop_, std::move(c));
  };
  commands_ = connection(RedisLinkOptions::Kind::kCommands);
  subscriber_ = connection(RedisLinkOptions::Kind::kSubscriber);
  if (options_.redis_cluster) {
    cluster_commands_ = static_cast<RedisClusterLink *>(commands_.get());
    cluster_subscriber_ = static_cast<RedisClusterLink *>(subscriber_.get());
  }
  forwarder_ = std::make_unique<ClusterForwarder>(
      *commands_, options_.history,
      [this](const ForwardRecord &r, uint64_t epoch, uint64_t seq) {
        bump_owned(seq != 0 ? counters_.numbered : counters_.duplicates);
        store(counters_.queued, forwarder_->queued());
        if (on_taken_) on_taken_(r, epoch, seq);
      },
      [] { return new_epoch(); }, [this](bool, const std::string &) { on_link_state(); },
      options_.max_queued);
  subscriptions_ = std::make_unique<ClusterSubscriptions>(
      &loop_, *subscriber_,
      [this](std::string_view topic, const NumberedMessage &m) {
        bump_owned(counters_.messages);
        auto e = std::make_unique<ClusterEvent>();
        e->kind = ClusterEvent::Kind::kMessage;
        e->topic = topic;
        e->epoch = m.epoch;
        e->seq = m.seq;
        e->counted = m.counted;
        e->totals = m.totals;
        if (!m.counted || !with_totals(m.envelope, m.totals, &e->envelope)) {
          e->envelope = m.envelope;
        }
        emit(std::move(e));
      },
      [this](bool, const std::string &) { on_link_state(); });
  subscriptions_->on_subscribed([this](std::string_view topic) {
    read_position(topic);
    if (presence_) presence_->on_subscribed(topic);
  });
  if (options_.presence != nullptr) {
    presence_ = std::make_unique<ClusterPresence>(&loop_, *commands_, *options_.presence,
                                                  options_.presence_options);
    subscriptions_->on_presence([this](std::string_view topic, std::string_view payload) {
      presence_->on_message(topic, payload);
    });
    users_ = std::make_unique<ClusterUsers>(
        *commands_, PresenceHub::node_id(),
        [this] {
          uint64_t as_of = 0;
          std::vector<ClusterMember> members = presence_->members(&as_of);
          std::vector<std::string> alive;
          if (as_of == 0) return alive;
          alive.reserve(members.size() + 1);
          alive.push_back(PresenceHub::node_id());
          for (ClusterMember &m : members) alive.push_back(std::move(m.id));
          return alive;
        },
        options_.presence_options.ttl_ms, options_.user_record_ttl_ms);
  }
  thread_ = std::thread([this] {
    ::pthread_setname_np(::pthread_self(), "kronop-cluster");
    run();
  });
}

void ClusterNode::run() {
  commands_->start();
  subscriber_->start();
  if (presence_) presence_->start();
  uv_timer_start(
      &retry_timer_,
      [](uv_timer_t *t) {
        auto *self = static_cast<ClusterNode *>(t->data);
        self->forwarder_->flush();
        if (self->users_) self->users_->flush();
        store(self->counters_.queued, self->forwarder_->queued());
        self->store_cluster_counters();
        self->send_positions();
      },
      kRetryMs, kRetryMs);
  uv_run(&loop_, UV_RUN_DEFAULT);
  subscriptions_.reset();
  forwarder_.reset();
  users_.reset();
  cluster_commands_ = cluster_subscriber_ = nullptr;
  commands_.reset();
  subscriber_.reset();
  uv_loop_close(&loop_);
}

void ClusterNode::stop(std::chrono::milliseconds flush_for) {
  if (!thread_.joinable()) return;
  const auto deadline = std::chrono::steady_clock::now() + flush_for;
  auto settled = [this] {
    return counters_.numbered.load(std::memory_order_relaxed) +
               counters_.duplicates.load(std::memory_order_relaxed) +
               counters_.refused.load(std::memory_order_relaxed) >=
           handed_.load(std::memory_order_relaxed);
  };
  while (std::chrono::steady_clock::now() < deadline && !settled()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (presence_) {
    // Off the members' list, so that the others drop this node at once, not after the TTL.
    auto r = std::make_unique<Request>();
    r->kind = Request::Kind::kLeave;
    if (requests_.push(std::move(r))) uv_async_send(&async_);
    const auto leave_by = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
    while (std::chrono::steady_clock::now() < leave_by && !left_.load(std::memory_order_acquire)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  stopping_.store(true, std::memory_order_release);
  uv_async_send(&async_);
  thread_.join();
}

void ClusterNode::forward(std::vector<ForwardRecord> records) {
  if (records.empty()) return;
  handed_.fetch_add(records.size(), std::memory_order_relaxed);
  auto r = std::make_unique<Request>();
  r->kind = Request::Kind::kForward;
  r->records = std::move(records);
  if (requests_.push(std::move(r))) uv_async_send(&async_);
}

void ClusterNode::want(std::string topic, bool wanted) {
  auto r = std::make_unique<Request>();
  r->kind = wanted ? Request::Kind::kWant : Request::Kind::kUnwant;
  r->topic = std::move(topic);
  if (requests_.push(std::move(r))) uv_async_send(&async_);
}

void ClusterNode::read_history(std::string topic, uint64_t after, uint64_t until, HistoryFn done) {
  auto r = std::make_unique<Request>();
  r->kind = Request::Kind::kHistory;
  r->topic = std::move(topic);
  r->after = after;
  r->until = until;
  r->done = std::move(done);
  if (requests_.push(std::move(r))) uv_async_send(&async_);
}

void ClusterNode::publish_presence(std::string topic, std::vector<PresenceHub::NodeMeta> joins,
                                   std::vector<PresenceHub::NodeMeta> leaves) {
  auto r = std::make_unique<Request>();
  r->kind = Request::Kind::kPresence;
  r->topic = std::move(topic);
  r->joins = std::move(joins);
  r->leaves = std::move(leaves);
  if (requests_.push(std::move(r))) uv_async_send(&async_);
}

std::vector<ClusterMember> ClusterNode::members(uint64_t *as_of_ms) const {
  if (!presence_) return {};
  return presence_->members(as_of_ms);
}

void ClusterNode::observe_users(PresenceHub &hub) {
  hub.set_cluster_observer([this](const PresenceHub::UserPresence &p, bool explicit_status) {
    if (explicit_status) {
      user_status(p);
    } else {
      user_sockets(p.user_id, p.sockets);
    }
  });
}

void ClusterNode::user_sockets(std::string user, uint32_t count) {
  auto r = std::make_unique<Request>();
  r->kind = Request::Kind::kUserSockets;
  r->user.user_id = std::move(user);
  r->user.sockets = count;
  if (requests_.push(std::move(r))) uv_async_send(&async_);
}

void ClusterNode::user_status(PresenceHub::UserPresence p) {
  auto r = std::make_unique<Request>();
  r->kind = Request::Kind::kUserStatus;
  r->user = std::move(p);
  if (requests_.push(std::move(r))) uv_async_send(&async_);
}

void ClusterNode::read_user(std::string user, ClusterUsers::ReadFn done) {
  if (stopping_.load(std::memory_order_acquire)) {
    done(Error{-ESHUTDOWN, "the cluster node is stopping"});
    return;
  }
  auto r = std::make_unique<Request>();
  r->kind = Request::Kind::kUserRead;
  r->topic = std::move(user);
  r->user_done = std::move(done);
  if (requests_.push(std::move(r))) uv_async_send(&async_);
}

void ClusterNode::catch_up(std::string topic, uint64_t after, uint64_t until) {
  read_history(topic, after, until, [this, topic](Result<HistoryRange> r) {
    if (r.ok()) {
      for (HistoryEntry &h : r.value().entries) {
        auto e = std::make_unique<ClusterEvent>();
        e->kind = ClusterEvent::Kind::kMessage;
        e->topic = topic;
        e->epoch = r.value().epoch;
        e->seq = h.seq;
        e->envelope = std::move(h.envelope);
        e->counted = h.counted;
        e->totals = h.totals;
        emit(std::move(e));
      }
    }
    auto done = std::make_unique<ClusterEvent>();
    done->kind = ClusterEvent::Kind::kCaughtUp;
    done->topic = topic;
    emit(std::move(done));
  });
}

void ClusterNode::on_requests() {
  if (stopping_.load(std::memory_order_acquire)) {
    close_all();
    return;
  }
  const auto list = requests_.take_all();
  bool forwarded = false;
  for (Request *r = list.head(); r != nullptr; r = r->next) {
    switch (r->kind) {
      case Request::Kind::kForward:
        for (ForwardRecord &rec : r->records) {
          bump_owned(forwarder_->forward(std::move(rec)) ? counters_.forwarded : counters_.refused);
        }
        forwarded = true;
        break;
      case Request::Kind::kWant:
        subscriptions_->want(r->topic, true);
        break;
      case Request::Kind::kUnwant:
        subscriptions_->want(r->topic, false);
        positions_wanted_.erase(r->topic);
        if (presence_) presence_->on_unwanted(r->topic);
        break;
      case Request::Kind::kHistory: {
        bump_owned(counters_.history_reads);
        const uint64_t after = r->after, until = r->until;
        commands_->send(
            views(history_command(r->topic, after, until)),
            [done = std::move(r->done), after, until](const redisReply *reply, const Error *error) {
              if (reply == nullptr) {
                done(*error);
              } else {
                done(read_history_reply(*reply, after, until));
              }
            });
        break;
      }
      case Request::Kind::kPresence:
        if (presence_) presence_->publish(r->topic, std::move(r->joins), std::move(r->leaves));
        break;
      case Request::Kind::kLeave:
        presence_->leave([this] { left_.store(true, std::memory_order_release); });
        break;
      case Request::Kind::kUserSockets:
        if (users_) users_->sockets(r->user.user_id, r->user.sockets);
        break;
      case Request::Kind::kUserStatus:
        if (users_) users_->status(r->user);
        break;
      case Request::Kind::kUserRead:
        if (users_) {
          users_->read(r->topic, realtime_ns() / 1'000'000, std::move(r->user_done));
        } else {
          r->user_done(Error{-ENOTSUP, "no presence in this cluster node"});
        }
        break;
    }
  }
  if (forwarded) forwarder_->flush();
  if (users_) users_->flush();
  store(counters_.queued, forwarder_->queued());
  store(counters_.subscriptions, subscriptions_->wanted_count());
}

void ClusterNode::on_link_state() {
  const bool up = commands_->up() && subscriber_->up();
  if (up == was_up_) return;
  was_up_ = up;
  // The map's figures with the state, so that a reader who sees up sees its masters too.
  store_cluster_counters();
  store(counters_.up, up ? 1 : 0);
  bump_owned(up ? counters_.ups : counters_.downs);
  auto e = std::make_unique<ClusterEvent>();
  e->kind = up ? ClusterEvent::Kind::kUp : ClusterEvent::Kind::kDown;
  if (!up) {
    e->reason = !commands_->up() ? commands_->last_error() : subscriber_->last_error();
  }
  emit(std::move(e));
  // Positions asked for while the commands link was away go out now.
  if (up) send_positions();
  if (up && presence_) presence_->on_up(subscriptions_->wanted_topics());
  if (up && users_) users_->on_up();
}

void ClusterNode::read_position(std::string_view topic) {
  positions_wanted_.insert(std::string(topic));
  send_positions();
}

void ClusterNode::send_positions() {
  if (!commands_->up()) return;
  std::vector<std::string> topics(positions_wanted_.begin(), positions_wanted_.end());
  positions_wanted_.clear();
  for (std::string &topic : topics) {
    commands_->send(views(position_command(topic, new_epoch(), options_.unnumbered_ttl_s)),
                    [this, topic](const redisReply *reply, const Error *) {
                      Result<StreamPosition> at =
                          reply != nullptr ? read_position_reply(*reply)
                                           : Result<StreamPosition>(Error{-EIO, "no reply"});
                      if (!at.ok()) {
                        // Tried again at the next retry, while the topic is still wanted.
                        bump_owned(counters_.position_failures);
                        if (subscriptions_ != nullptr && subscriptions_->wanted(topic)) {
                          positions_wanted_.insert(topic);
                        }
                        return;
                      }
                      if (subscriptions_ == nullptr || !subscriptions_->wanted(topic)) return;
                      bump_owned(counters_.positions);
                      auto e = std::make_unique<ClusterEvent>();
                      e->kind = ClusterEvent::Kind::kPosition;
                      e->topic = topic;
                      e->epoch = at.value().epoch;
                      e->seq = at.value().seq;
                      emit(std::move(e));
                    });
  }
}

void ClusterNode::store_cluster_counters() {
  if (cluster_commands_ == nullptr) return;
  const RedisClusterCounters &c = cluster_commands_->counters();
  const RedisClusterCounters &s = cluster_subscriber_->counters();
  store(counters_.masters, cluster_commands_->masters());
  store(counters_.redirects, c.redirects + s.redirects);
  store(counters_.map_changes, c.map_changes + s.map_changes);
}

void ClusterNode::emit(std::unique_ptr<ClusterEvent> e) {
  if (events_.push(std::move(e)) && wake_) wake_();
}

void ClusterNode::close_all() {
  if (closing_) return;
  closing_ = true;
  uv_timer_stop(&retry_timer_);
  uv_close(reinterpret_cast<uv_handle_t *>(&retry_timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t *>(&async_), nullptr);
  if (presence_) presence_->stop();
  // The links' waiting commands fail as they close (history readers are told); the
  // subscriptions' timer closes with them. The loop ends once every handle is closed.
  subscriptions_->close([] {});
  commands_->close([] {});
  subscriber_->close([] {});
}

}  // namespace kronop::daemon
