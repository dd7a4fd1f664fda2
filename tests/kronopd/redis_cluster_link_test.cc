// RedisClusterLink against a real 3-master Redis Cluster (tests/support/redis_cluster.h):
// commands go to the master of their key's slot, a MOVED is followed and the map refreshed,
// shard channels are subscribed on their masters, and a master lost makes the link down
// until it is back.
#include "redis_cluster_link.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "support/loop_runner.h"
#include "support/redis_cluster.h"

namespace kronop::daemon {
namespace {

TEST(CommandKey, IsAScriptSFirstKeyOrTheFirstArgument) {
  using Argv = std::vector<std::string_view>;
  EXPECT_EQ(command_key(Argv{"EVALSHA", "abc", "2", "{reel:1}:m", "{reel:1}:h", "x"}),
            "{reel:1}:m");
  EXPECT_EQ(command_key(Argv{"eval", "return 1", "1", "k"}), "k");
  EXPECT_EQ(command_key(Argv{"EVAL", "return 1", "0", "arg"}), std::nullopt);
  EXPECT_EQ(command_key(Argv{"EVAL", "return 1", "x", "arg"}), std::nullopt);
  EXPECT_EQ(command_key(Argv{"SPUBLISH", "{reel:1}", "m"}), "{reel:1}");
  EXPECT_EQ(command_key(Argv{"HDEL", "kronop:nodes", "Fa"}), "kronop:nodes");
  EXPECT_EQ(command_key(Argv{"SCRIPT", "LOAD", "return 1"}), std::nullopt);
  EXPECT_EQ(command_key(Argv{"PING"}), std::nullopt);
  EXPECT_EQ(command_key(Argv{"CLUSTER", "SLOTS"}), std::nullopt);
}

class ClusterLinkTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(cluster.start()) << cluster.error(); }
  ~ClusterLinkTest() override {
    for (auto &l : links_) {
      bool closed = false;
      l->close([&] { closed = true; });
      runner_.run_until([&] { return closed; });
    }
  }

  // A link whose only seed is the cluster's node `seed`.
  RedisClusterLink &link(RedisLinkOptions::Kind kind, int seed = 0) {
    RedisClusterLinkOptions o;
    o.link.kind = kind;
    o.link.backoff_max_ms = 300;
    auto e = parse_redis_url(cluster.urls().at(static_cast<std::size_t>(seed)));
    EXPECT_TRUE(e.ok());
    o.seeds.push_back(e.value());
    links_.push_back(std::make_unique<RedisClusterLink>(runner_.loop(), std::move(o)));
    RedisClusterLink &l = *links_.back();
    l.on_state([this](bool up, const std::string &reason) {
      states_.push_back(up ? "up" : "down: " + reason);
    });
    l.on_push([this](const redisReply &push) {
      const Push p = classify_push(push);
      if (p.kind == PushKind::kShardMessage) {
        messages_.push_back(std::string(p.channel) + "=" + std::string(p.payload));
      } else if (p.kind == PushKind::kSubscribed) {
        subscribed_.insert(std::string(p.channel));
      }
    });
    l.start();
    return l;
  }

  // The reply to argv through `l`, as text ("ERR ..." for errors, "(none): why" for none).
  std::string ask(RedisClusterLink &l, const std::vector<std::string> &argv) {
    std::string out;
    bool done = false;
    l.send({argv.begin(), argv.end()}, [&](const redisReply *r, const Error *e) {
      done = true;
      if (r == nullptr) {
        out = "(none): " + e->message;
      } else if (r->type == REDIS_REPLY_ERROR || r->type == REDIS_REPLY_STATUS ||
                 r->type == REDIS_REPLY_STRING) {
        out.assign(r->str, r->len);
      } else if (r->type == REDIS_REPLY_INTEGER) {
        out = std::to_string(r->integer);
      }
    });
    EXPECT_TRUE(runner_.run_until([&] { return done; }));
    return out;
  }

  // A key whose slot node `index` was given at start.
  std::string key_on(int index, const std::string &prefix = "k") {
    const auto [first, last] = cluster.slots(index);
    for (int i = 0;; ++i) {
      std::string key = prefix + std::to_string(i);
      const uint16_t s = redis_hash_slot(key);
      if (s >= first && s <= last) return key;
    }
  }

  std::string port_of(int index) { return std::to_string(cluster.ports().at(index)); }

  test::RedisCluster cluster;
  test::LoopRunner runner_;
  std::vector<std::unique_ptr<RedisClusterLink>> links_;
  std::vector<std::string> states_;
  std::vector<std::string> messages_;
  std::set<std::string> subscribed_;
};

TEST_F(ClusterLinkTest, CommandsGoToTheMasterOfTheirSlotFromOneSeed) {
  RedisClusterLink &l = link(RedisLinkOptions::Kind::kCommands, 1);
  ASSERT_TRUE(runner_.run_until([&] { return l.up(); })) << l.last_error();
  EXPECT_EQ(l.masters(), 3u);
  EXPECT_EQ(states_, std::vector<std::string>{"up"});
  for (int i = 0; i < 3; ++i) {
    const std::string key = key_on(i);
    EXPECT_EQ(l.master_of(redis_hash_slot(key)), "127.0.0.1:" + port_of(i));
    EXPECT_EQ(ask(l, {"SET", key, "v" + std::to_string(i)}), "OK");
    // On that master itself, not redirected there.
    EXPECT_EQ(cluster.command(i, {"GET", key}), "v" + std::to_string(i));
    // A script's first key decides.
    EXPECT_EQ(ask(l, {"EVAL", "return redis.call('GET', KEYS[1])", "1", key}),
              "v" + std::to_string(i));
  }
  EXPECT_EQ(l.counters().redirects, 0u);
  // Without a key: SCRIPT LOAD everywhere, PING anywhere.
  const std::string sha = ask(l, {"SCRIPT", "LOAD", "return 7"});
  ASSERT_EQ(sha.size(), 40u);
  runner_.run_until([] { return false; }, 100);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(cluster.command(i, {"SCRIPT", "EXISTS", sha}), "1");
  EXPECT_EQ(ask(l, {"PING"}), "PONG");
}

TEST_F(ClusterLinkTest, AMovedSlotIsFollowedAndTheMapRefreshed) {
  RedisClusterLink &l = link(RedisLinkOptions::Kind::kCommands);
  ASSERT_TRUE(runner_.run_until([&] { return l.up(); })) << l.last_error();
  const std::string key = key_on(0, "moving");
  const uint16_t slot = redis_hash_slot(key);
  // The slot (empty) is given to master 2, as a resharding would end.
  const std::string to_id = cluster.command(2, {"CLUSTER", "MYID"});
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(cluster.command(i, {"CLUSTER", "SETSLOT", std::to_string(slot), "NODE", to_id}),
              "OK");
  }
  EXPECT_EQ(l.master_of(slot), "127.0.0.1:" + port_of(0)) << "the link's map is stale";
  EXPECT_EQ(ask(l, {"SET", key, "moved"}), "OK");
  EXPECT_EQ(cluster.command(2, {"GET", key}), "moved");
  EXPECT_GE(l.counters().redirects, 1u);
  ASSERT_TRUE(runner_.run_until([&] { return l.master_of(slot) == "127.0.0.1:" + port_of(2); }))
      << "the map refreshed after the MOVED";
  const uint64_t redirects = l.counters().redirects;
  EXPECT_EQ(ask(l, {"GET", key}), "moved");
  EXPECT_EQ(l.counters().redirects, redirects) << "straight to the new master";
}

TEST_F(ClusterLinkTest, ShardChannelsOfManySlotsAreSubscribedOnTheirMasters) {
  RedisClusterLink &sub = link(RedisLinkOptions::Kind::kSubscriber);
  ASSERT_TRUE(runner_.run_until([&] { return sub.up(); })) << sub.last_error();
  std::vector<std::string> channels;
  for (int i = 0; i < 3; ++i) {
    channels.push_back("{" + key_on(i, "reel:") + "}");
    channels.push_back("{" + key_on(i, "user:") + "}");
  }
  std::vector<std::string_view> argv = {"SSUBSCRIBE"};
  argv.insert(argv.end(), channels.begin(), channels.end());
  sub.send(argv, nullptr);  // one command, six slots on three masters
  ASSERT_TRUE(runner_.run_until([&] { return subscribed_.size() == channels.size(); }));
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(cluster.command(i / 2, {"SPUBLISH", channels[static_cast<std::size_t>(i)], "m"}),
              "1");
  }
  ASSERT_TRUE(runner_.run_until([&] { return messages_.size() == channels.size(); }));
  // Unsubscribed where they are.
  sub.send({"SUNSUBSCRIBE", channels[0], channels[5]}, nullptr);
  runner_.run_until([] { return false; }, 200);
  EXPECT_EQ(cluster.command(0, {"SPUBLISH", channels[0], "m"}), "0");
  EXPECT_EQ(cluster.command(2, {"SPUBLISH", channels[5], "m"}), "0");
  EXPECT_EQ(cluster.command(1, {"SPUBLISH", channels[2], "m"}), "1");
}

TEST_F(ClusterLinkTest, AMasterLostMakesTheLinkDownUntilItIsBack) {
  RedisClusterLink &l = link(RedisLinkOptions::Kind::kCommands);
  ASSERT_TRUE(runner_.run_until([&] { return l.up(); })) << l.last_error();
  cluster.stop(1, SIGKILL);
  ASSERT_TRUE(runner_.run_until([&] { return !l.up(); }));
  EXPECT_NE(l.last_error().find(port_of(1)), std::string::npos) << l.last_error();
  // Keys of the other masters are still served; the lost master's fail at once.
  EXPECT_EQ(ask(l, {"SET", key_on(0), "x"}), "OK");
  EXPECT_EQ(ask(l, {"SET", key_on(1), "x"}).rfind("(none): ", 0), 0u);
  ASSERT_TRUE(cluster.start(1)) << cluster.error();
  ASSERT_TRUE(runner_.run_until([&] { return l.up(); }, 15000)) << l.last_error();
  EXPECT_EQ(states_, (std::vector<std::string>{"up", states_[1], "up"}));
  EXPECT_EQ(ask(l, {"SET", key_on(1), "y"}), "OK");
}

}  // namespace
}  // namespace kronop::daemon
