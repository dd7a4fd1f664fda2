// ClusterNode against a real redis-server: two nodes on one Redis, each on its own thread,
// driven from the test's thread as the ingest thread drives them. Records forwarded by one
// reach the other numbered, in order, under the epoch its position said; positions,
// history reads, the subscriptions Redis holds, and the link lost and back.
#include "cluster_node.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "support/redis_server.h"
#include "support/test_support.h"

namespace kronop::daemon {
namespace {

using test::eventually;

// The events a node handed over, taken from the test's thread as the ingest thread would.
struct Seen {
  std::vector<ClusterEvent> events;

  void take(ClusterNode &node) {
    auto list = node.take_events();
    for (ClusterEvent *e = list.head(); e != nullptr; e = e->next) {
      ClusterEvent copy = *e;
      copy.next = nullptr;
      events.push_back(std::move(copy));
    }
  }
  std::vector<const ClusterEvent *> of(ClusterEvent::Kind kind, const std::string &topic = "") {
    std::vector<const ClusterEvent *> out;
    for (const auto &e : events) {
      if (e.kind == kind && (topic.empty() || e.topic == topic)) out.push_back(&e);
    }
    return out;
  }
};

class ClusterNodeTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(redis.start()) << redis.error(); }

  std::unique_ptr<ClusterNode> node() {
    ClusterNodeOptions o;
    o.endpoint = parse_redis_url(redis.url()).value();
    o.backoff_max_ms = 200;
    auto n = std::make_unique<ClusterNode>(o);
    n->start();
    return n;
  }

  // Takes `node`'s events into `seen` until `cond` holds (10 s at most).
  bool until(ClusterNode &node, Seen &seen, const std::function<bool()> &cond) {
    return eventually([&] {
      seen.take(node);
      return cond();
    });
  }

  static std::vector<ForwardRecord> records(const std::string &topic, uint64_t producer,
                                            uint64_t from, uint64_t to) {
    std::vector<ForwardRecord> out;
    for (uint64_t n = from; n <= to; ++n) {
      out.push_back(
          {topic, producer, n, "env-" + std::to_string(producer) + "-" + std::to_string(n)});
    }
    return out;
  }

  test::RedisServer redis;
};

TEST_F(ClusterNodeTest, ANodeReceivesWhatAnotherForwardsNumberedInOrderUnderItsPosition) {
  auto a = node(), b = node();
  Seen sa, sb;
  ASSERT_TRUE(until(*a, sa, [&] { return a->up(); }));
  ASSERT_TRUE(until(*b, sb, [&] { return b->up(); }));
  EXPECT_EQ(sb.of(ClusterEvent::Kind::kUp).size(), 1u);
  b->want("reel:1", true);
  ASSERT_TRUE(until(*b, sb, [&] { return !sb.of(ClusterEvent::Kind::kPosition).empty(); }));
  const ClusterEvent p = *sb.of(ClusterEvent::Kind::kPosition).front();
  EXPECT_EQ(p.topic, "reel:1");
  EXPECT_EQ(p.seq, 0u);  // a stream started for the join: its epoch is the first message's
  EXPECT_NE(p.epoch, 0u);
  // Only B listens to the topic's channel.
  EXPECT_EQ(redis.command({"PUBSUB", "SHARDNUMSUB", "{reel:1}"}), "{reel:1}\n1");
  // Two producers on A, forwarded in two passes.
  a->forward(records("reel:1", 7, 1, 60));
  a->forward(records("reel:1", 8, 1, 40));
  ASSERT_TRUE(until(*b, sb, [&] { return sb.of(ClusterEvent::Kind::kMessage).size() >= 100; }));
  const auto got = sb.of(ClusterEvent::Kind::kMessage);
  ASSERT_EQ(got.size(), 100u);
  uint64_t next7 = 1, next8 = 1;
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i]->seq, i + 1);
    EXPECT_EQ(got[i]->epoch, p.epoch);
    // Each producer's records in their order.
    if (got[i]->envelope.rfind("env-7-", 0) == 0) {
      EXPECT_EQ(got[i]->envelope, "env-7-" + std::to_string(next7++));
    } else {
      EXPECT_EQ(got[i]->envelope, "env-8-" + std::to_string(next8++));
    }
  }
  ASSERT_TRUE(eventually([&] { return a->counters().numbered.load() == 100; }));
  EXPECT_TRUE(eventually([&] { return a->counters().queued.load() == 0; }));
  // A does not hold the topic: it received nothing.
  sa.take(*a);
  EXPECT_TRUE(sa.of(ClusterEvent::Kind::kMessage).empty());
  // Sent again (a restart without the answers): counted once, delivered once.
  a->forward(records("reel:1", 7, 55, 60));
  ASSERT_TRUE(eventually([&] { return a->counters().duplicates.load() == 6; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  sb.take(*b);
  EXPECT_EQ(sb.of(ClusterEvent::Kind::kMessage).size(), 100u);
  // Let go: the channel is unsubscribed.
  b->want("reel:1", false);
  ASSERT_TRUE(eventually([&] {
    return redis.command({"PUBSUB", "SHARDNUMSUB", "{reel:1}"}) == "{reel:1}\n0";
  }));
}

TEST_F(ClusterNodeTest, AJoinAfterMessagesIsToldWhereTheStreamStandsAndGetsWhatFollows) {
  auto a = node(), b = node();
  Seen sa, sb;
  a->forward(records("reel:2", 1, 1, 50));
  ASSERT_TRUE(eventually([&] { return a->counters().numbered.load() == 50; }));
  b->want("reel:2", true);
  ASSERT_TRUE(until(*b, sb, [&] { return !sb.of(ClusterEvent::Kind::kPosition).empty(); }));
  const ClusterEvent p = *sb.of(ClusterEvent::Kind::kPosition).front();
  EXPECT_EQ(p.seq, 50u);
  a->forward(records("reel:2", 1, 51, 60));
  ASSERT_TRUE(until(*b, sb, [&] { return sb.of(ClusterEvent::Kind::kMessage).size() >= 10; }));
  const auto got = sb.of(ClusterEvent::Kind::kMessage);
  EXPECT_EQ(got.front()->seq, 51u);
  EXPECT_EQ(got.back()->seq, 60u);
  EXPECT_EQ(got.back()->epoch, p.epoch);
}

TEST_F(ClusterNodeTest, HistoryIsReadWithItsEpochOnAnyNode) {
  auto a = node(), b = node();
  a->forward(records("reel:3", 1, 1, 30));
  ASSERT_TRUE(eventually([&] { return a->counters().numbered.load() == 30; }));
  std::mutex m;
  std::vector<Result<HistoryRange>> answers;
  auto ask = [&](const std::string &topic, uint64_t after, uint64_t until) {
    b->read_history(topic, after, until, [&](Result<HistoryRange> r) {
      std::lock_guard<std::mutex> lock(m);
      answers.push_back(std::move(r));
    });
  };
  ASSERT_TRUE(eventually([&] { return b->up(); }));
  ask("reel:3", 10, 30);
  ask("reel:404", 0, 5);
  ask("reel:3", 25, 40);  // past the end: what there is
  ASSERT_TRUE(eventually([&] {
    std::lock_guard<std::mutex> lock(m);
    return answers.size() == 3;
  }));
  std::lock_guard<std::mutex> lock(m);
  ASSERT_TRUE(answers[0].ok()) << answers[0].error().message;
  const HistoryRange &h = answers[0].value();
  EXPECT_NE(h.epoch, 0u);
  ASSERT_EQ(h.entries.size(), 20u);
  EXPECT_EQ(h.entries.front().seq, 11u);
  EXPECT_EQ(h.entries.front().envelope, "env-1-11");
  EXPECT_EQ(h.entries.back().seq, 30u);
  ASSERT_TRUE(answers[1].ok());
  EXPECT_EQ(answers[1].value().epoch, 0u);  // no stream
  ASSERT_TRUE(answers[2].ok());
  EXPECT_EQ(answers[2].value().entries.size(), 5u);
  EXPECT_EQ(answers[2].value().epoch, h.epoch);
}

TEST_F(ClusterNodeTest, RedisLostAndBackIsOneDownOneUpAndThePositionsAgain) {
  auto a = node(), b = node();
  Seen sb;
  b->want("reel:4", true);
  ASSERT_TRUE(until(*b, sb, [&] { return sb.of(ClusterEvent::Kind::kPosition).size() == 1; }));
  redis.stop(SIGKILL);
  ASSERT_TRUE(until(*b, sb, [&] { return !sb.of(ClusterEvent::Kind::kDown).empty(); }));
  EXPECT_FALSE(b->up());
  // Forwarded while Redis is away: waits in A's queue.
  a->forward(records("reel:4", 1, 1, 5));
  ASSERT_TRUE(eventually([&] { return a->counters().queued.load() == 5; }));
  ASSERT_TRUE(redis.start()) << redis.error();
  ASSERT_TRUE(eventually([&] { return a->counters().numbered.load() == 5; }));
  // Subscribed again, the topic's position again (Redis lost everything: a new stream). A's
  // records were numbered before or after it: the position and the messages after it
  // cover them.
  auto covered = [&] {
    const auto positions = sb.of(ClusterEvent::Kind::kPosition);
    const auto messages = sb.of(ClusterEvent::Kind::kMessage);
    return positions.size() == 2 &&
           (positions[1]->seq == 5 || (!messages.empty() && messages.back()->seq == 5));
  };
  ASSERT_TRUE(until(*b, sb, covered));
  EXPECT_EQ(sb.of(ClusterEvent::Kind::kUp).size(), 2u);
  EXPECT_EQ(sb.of(ClusterEvent::Kind::kDown).size(), 1u);
  const auto positions = sb.of(ClusterEvent::Kind::kPosition);
  EXPECT_NE(positions[1]->epoch, positions[0]->epoch);
  for (const ClusterEvent *m : sb.of(ClusterEvent::Kind::kMessage)) {
    EXPECT_EQ(m->epoch, positions[1]->epoch);
  }
}

}  // namespace
}  // namespace kronop::daemon
