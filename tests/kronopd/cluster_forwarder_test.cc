// ClusterForwarder against a real redis-server: per topic in order, sent again after a
// lost link or a flushed script, counted once, bounded.
#include "cluster_forwarder.h"
#include "redis_link.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <map>
#include <string>
#include <vector>

#include "support/loop_runner.h"
#include "support/redis_server.h"

namespace kronop::daemon {
namespace {

class ForwarderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(redis.start()) << redis.error();
    start_link();
  }

  void start_link(std::size_t max_queued = ClusterForwarder::kDefaultMaxQueued) {
    RedisLinkOptions o;
    o.endpoint = parse_redis_url(redis.url()).value();
    o.backoff_max_ms = 200;
    link = std::make_unique<RedisLink>(runner.loop(), o);
    forwarder = std::make_unique<ClusterForwarder>(
        *link, HistoryLimits{},
        [this](const ForwardRecord &r, uint64_t epoch, uint64_t seq) {
          taken[r.topic].push_back(r.envelope + "@" + std::to_string(epoch) + ":" +
                                   std::to_string(seq));
        },
        [this] { return ++epochs; }, nullptr, max_queued);
    link->start();
    ASSERT_TRUE(runner.run_until([&] { return link->up(); }));
  }

  void TearDown() override {
    bool closed = false;
    link->close([&] { closed = true; });
    runner.run_until([&] { return closed; });
  }

  static ForwardRecord record(const std::string &topic, uint64_t producer, uint64_t seq) {
    return {topic, producer, seq, "p" + std::to_string(producer) + "-" + std::to_string(seq)};
  }

  bool drained() {
    return runner.run_until([&] {
      forwarder->flush();
      return forwarder->queued() == 0;
    });
  }

  test::RedisServer redis;
  test::LoopRunner runner;
  std::unique_ptr<RedisLink> link;
  std::unique_ptr<ClusterForwarder> forwarder;
  std::map<std::string, std::vector<std::string>> taken;
  uint64_t epochs = 1000;
};

TEST_F(ForwarderTest, EachTopicsRecordsAreNumberedInTheOrderForwarded) {
  // 3 producers on 5 topics, interleaved.
  for (uint64_t n = 1; n <= 200; ++n) {
    for (uint64_t p = 1; p <= 3; ++p) {
      ASSERT_TRUE(forwarder->forward(record("reel:" + std::to_string((n + p) % 5), p, n)));
    }
  }
  forwarder->flush();
  ASSERT_TRUE(drained());
  for (auto &[topic, got] : taken) {
    SCOPED_TRACE(topic);
    ASSERT_EQ(got.size(), 120u);
    for (std::size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].substr(got[i].find(':') + 1), std::to_string(i + 1)) << got[i];
    }
    // The history holds them in the same order.
    auto range = redis.reply({"XRANGE", TopicKeys::of(topic).history, "-", "+"});
    ASSERT_TRUE(range);
    ASSERT_EQ(range->elements, 120u);
    for (std::size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(std::string(range->element[i]->element[1]->element[1]->str),
                got[i].substr(0, got[i].find('@')));
    }
  }
  EXPECT_EQ(forwarder->counters().numbered, 600u);
  // One call per topic at first, then one per answer while records were queued behind it.
  EXPECT_LT(forwarder->counters().calls, 600u / 10);
}

TEST_F(ForwarderTest, RecordsSentAgainAreCountedOnce) {
  // A run before ours had these numbered, and died before it heard so.
  std::vector<NumberingRecord> before;
  std::vector<ForwardRecord> records;
  for (uint64_t n = 1; n <= 50; ++n) records.push_back(record("reel:1", 7, n));
  for (std::size_t i = 0; i < 30; ++i) {
    before.push_back({records[i].producer_id, records[i].producer_seq, records[i].envelope});
  }
  ASSERT_EQ(redis.command({"SCRIPT", "LOAD", numbering_script()}), numbering_script_sha1());
  auto reply = redis.reply(numbering_command("reel:1", before, 55, {}));
  ASSERT_TRUE(reply && read_numbering_reply(*reply, 30).ok());
  for (const auto &r : records) ASSERT_TRUE(forwarder->forward(r));
  ASSERT_TRUE(drained());
  EXPECT_EQ(forwarder->counters().duplicates, 30u);
  EXPECT_EQ(forwarder->counters().numbered, 20u);
  EXPECT_EQ(taken["reel:1"][29], "p7-30@55:0");
  EXPECT_EQ(taken["reel:1"][30], "p7-31@55:31");
  EXPECT_EQ(redis.command({"XLEN", "{reel:1}:h"}), "50");
}

TEST_F(ForwarderTest, AFlushedScriptIsLoadedAgainAndTheCallSentAgain) {
  ASSERT_TRUE(forwarder->forward(record("reel:1", 1, 1)));
  ASSERT_TRUE(drained());
  EXPECT_EQ(redis.command({"SCRIPT", "FLUSH"}), "OK");
  for (uint64_t n = 2; n <= 10; ++n) ASSERT_TRUE(forwarder->forward(record("reel:1", 1, n)));
  ASSERT_TRUE(drained());
  EXPECT_EQ(forwarder->counters().refusals, 1u);
  EXPECT_EQ(forwarder->counters().calls_again, 1u);
  EXPECT_EQ(forwarder->counters().numbered, 10u);
  EXPECT_EQ(taken["reel:1"].back(), "p1-10@1001:10");
}

TEST_F(ForwarderTest, WhatWaitedWhileRedisWasAwayIsSentWhenItIsBack) {
  redis.stop(SIGKILL);
  ASSERT_TRUE(runner.run_until([&] { return !link->up(); }));
  for (uint64_t n = 1; n <= 10; ++n) ASSERT_TRUE(forwarder->forward(record("reel:9", 3, n)));
  forwarder->flush();  // nothing goes out while the link is down
  EXPECT_EQ(forwarder->counters().calls, 0u);
  ASSERT_TRUE(redis.start()) << redis.error();
  ASSERT_TRUE(drained());
  ASSERT_EQ(taken["reel:9"].size(), 10u);
  EXPECT_EQ(taken["reel:9"][9], "p3-10@1001:10");
  EXPECT_EQ(forwarder->counters().script_loads, 2u);
}

TEST_F(ForwarderTest, TheQueueIsBounded) {
  TearDown();
  start_link(10);
  for (uint64_t n = 1; n <= 10; ++n) ASSERT_TRUE(forwarder->forward(record("reel:1", 1, n)));
  EXPECT_FALSE(forwarder->forward(record("reel:1", 1, 11)));
  EXPECT_EQ(forwarder->counters().queue_full, 1u);
  ASSERT_TRUE(drained());
  EXPECT_TRUE(forwarder->forward(record("reel:1", 1, 11)));
  ASSERT_TRUE(drained());
  EXPECT_EQ(taken["reel:1"].size(), 11u);
}

}  // namespace
}  // namespace kronop::daemon
