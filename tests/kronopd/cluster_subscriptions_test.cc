// ClusterSubscriptions against a real redis-server: a node listens exactly to the topics
// its clients hold, in batches, and again after Redis restarts.
#include "cluster_subscriptions.h"
#include "redis_link.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <string>
#include <vector>

#include "support/loop_runner.h"
#include "support/redis_server.h"

namespace kronop::daemon {
namespace {

class SubscriptionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(redis.start()) << redis.error();
    ASSERT_EQ(redis.command({"SCRIPT", "LOAD", numbering_script()}), numbering_script_sha1());
    RedisLinkOptions o;
    o.kind = RedisLinkOptions::Kind::kSubscriber;
    o.endpoint = parse_redis_url(redis.url()).value();
    link = std::make_unique<RedisLink>(runner.loop(), o);
    subs = std::make_unique<ClusterSubscriptions>(
        runner.loop(), *link, [this](std::string_view topic, const NumberedMessage &m) {
          got.push_back(std::string(topic) + " " + std::to_string(m.epoch) + ":" +
                        std::to_string(m.seq) + " " + std::string(m.envelope));
        });
    link->start();
    ASSERT_TRUE(runner.run_until([&] { return link->up(); }));
  }

  void TearDown() override {
    int closed = 0;
    subs->close([&] { ++closed; });
    link->close([&] { ++closed; });
    runner.run_until([&] { return closed == 2; });
  }

  void publish(const std::string &topic, uint64_t n) {
    const std::string envelope = "m" + std::to_string(n);
    auto reply = redis.reply(numbering_command(topic, {{1, n, envelope}}, 7, {}));
    ASSERT_TRUE(reply) << redis.error();
    ASSERT_TRUE(read_numbering_reply(*reply, 1).ok());
  }

  // Subscribers of the topic's shard channel, as Redis counts them.
  std::string subscribers(const std::string &topic) {
    const std::string r = redis.command({"PUBSUB", "SHARDNUMSUB", TopicKeys::of(topic).channel});
    return r.substr(r.find('\n') + 1);
  }

  test::RedisServer redis;
  test::LoopRunner runner;
  std::unique_ptr<RedisLink> link;
  std::unique_ptr<ClusterSubscriptions> subs;
  std::vector<std::string> got;
};

TEST_F(SubscriptionsTest, ListensExactlyToTheTopicsItsClientsHoldInOneCommand) {
  for (int i = 0; i < 1000; ++i) subs->want("reel:" + std::to_string(i), true);
  subs->want("reel:999", false);  // left again before the batch went out
  ASSERT_TRUE(runner.run_until([&] { return subscribers("reel:998") == "1"; }));
  EXPECT_EQ(subs->counters().subscribe_commands, 2u);  // 999 channels, 512 per command
  EXPECT_EQ(subscribers("reel:999"), "0");
  EXPECT_EQ(subscribers("reel:1000"), "0");
  publish("reel:5", 1);
  publish("reel:999", 1);  // no client here holds it
  publish("reel:5", 2);
  ASSERT_TRUE(runner.run_until([&] { return got.size() == 2; }));
  EXPECT_EQ(got[0], "reel:5 7:1 m1");
  EXPECT_EQ(got[1], "reel:5 7:2 m2");
  // The last client leaves: the node stops listening.
  subs->want("reel:5", false);
  ASSERT_TRUE(runner.run_until([&] { return subscribers("reel:5") == "0"; }));
  publish("reel:5", 3);
  runner.run_until([] { return false; }, 200);
  EXPECT_EQ(got.size(), 2u);
  EXPECT_EQ(subs->wanted_count(), 998u);
}

TEST_F(SubscriptionsTest, SubscribesAgainWhenRedisComesBack) {
  subs->want("reel:1", true);
  subs->want("reel:2", true);
  ASSERT_TRUE(runner.run_until([&] { return subscribers("reel:2") == "1"; }));
  redis.stop(SIGKILL);
  ASSERT_TRUE(runner.run_until([&] { return !link->up(); }));
  subs->want("reel:3", true);  // while Redis is away
  subs->want("reel:1", false);
  ASSERT_TRUE(redis.start()) << redis.error();
  ASSERT_EQ(redis.command({"SCRIPT", "LOAD", numbering_script()}), numbering_script_sha1());
  ASSERT_TRUE(runner.run_until([&] { return subscribers("reel:3") == "1"; }, 15000));
  EXPECT_EQ(subscribers("reel:2"), "1");
  EXPECT_EQ(subscribers("reel:1"), "0");
  EXPECT_EQ(subs->counters().resubscribed, 2u);
  publish("reel:3", 1);
  ASSERT_TRUE(runner.run_until([&] { return got.size() == 1; }));
  EXPECT_EQ(got[0], "reel:3 7:1 m1");
}

TEST_F(SubscriptionsTest, WhatIsNotANumberedMessageIsDropped) {
  subs->want("reel:1", true);
  ASSERT_TRUE(runner.run_until([&] { return subscribers("reel:1") == "1"; }));
  EXPECT_EQ(redis.command({"SPUBLISH", "{reel:1}", "garbage"}), "1");
  EXPECT_EQ(redis.command({"SPUBLISH", "{reel:1}", "0:1:zero epoch"}), "1");
  ASSERT_TRUE(runner.run_until([&] { return subs->counters().dropped == 2; }));
  EXPECT_TRUE(got.empty());
  EXPECT_TRUE(link->up());
}

}  // namespace
}  // namespace kronop::daemon
