// The numbering script against a real redis-server: numbers, idempotency, a lost meta
// hash, the history's bound, and what the shard channel carries.
#include "cluster_numbering.h"

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <string>
#include <vector>

#include "support/redis_server.h"

namespace kronop::daemon {
namespace {

class NumberingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(redis.start()) << redis.error();
    ASSERT_EQ(redis.command({"SCRIPT", "LOAD", numbering_script()}), numbering_script_sha1());
  }

  // One record's numbering, as a batch of one.
  struct Numbered {
    bool duplicate = false;
    uint64_t epoch = 0;
    uint64_t seq = 0;
  };
  Numbered number(const std::string &topic, uint64_t producer, uint64_t producer_seq,
                  const std::string &envelope, uint64_t new_epoch = 777,
                  HistoryLimits limits = {}) {
    const NumberedBatch b =
        number_batch(topic, {{producer, producer_seq, envelope}}, new_epoch, limits);
    if (b.seqs.size() != 1) return {};
    return {b.seqs[0] == 0, b.epoch, b.seqs[0]};
  }

  NumberedBatch number_batch(const std::string &topic, const std::vector<NumberingRecord> &records,
                             uint64_t new_epoch = 777, HistoryLimits limits = {}) {
    auto reply = redis.reply(numbering_command(topic, records, new_epoch, limits));
    EXPECT_TRUE(reply) << redis.error();
    if (!reply) return {};
    auto b = read_numbering_reply(*reply, records.size());
    EXPECT_TRUE(b.ok()) << b.error().message;
    return b.ok() ? b.value() : NumberedBatch{};
  }

  test::RedisServer redis;
};

TEST_F(NumberingTest, NumbersInOrderAndKeepsTheHistory) {
  for (uint64_t i = 1; i <= 3; ++i) {
    const Numbered n = number("reel:1", 42, i, "env-" + std::to_string(i));
    EXPECT_FALSE(n.duplicate);
    EXPECT_EQ(n.epoch, 777u);
    EXPECT_EQ(n.seq, i);
  }
  // Another producer continues the same stream; another topic has its own.
  EXPECT_EQ(number("reel:1", 43, 1, "other").seq, 4u);
  EXPECT_EQ(number("reel:2", 42, 4, "x", 999).seq, 1u);
  EXPECT_EQ(redis.command({"HGET", "{reel:2}:m", "e"}), "999");
  EXPECT_EQ(redis.command({"XLEN", "{reel:1}:h"}), "4");
  auto range = redis.reply({"XRANGE", "{reel:1}:h", "2-0", "3-0"});
  ASSERT_TRUE(range);
  ASSERT_EQ(range->elements, 2u);
  EXPECT_EQ(std::string(range->element[0]->element[0]->str), "2-0");
  EXPECT_EQ(std::string(range->element[0]->element[1]->element[1]->str), "env-2");
  // Every key expires.
  for (const char *key : {"{reel:1}:m", "{reel:1}:h", "{reel:1}:p:42"}) {
    EXPECT_EQ(redis.command({"TTL", key}), "86400") << key;
  }
}

TEST_F(NumberingTest, ARecordSentAgainIsNumberedOnce) {
  EXPECT_EQ(number("reel:1", 42, 1, "a").seq, 1u);
  EXPECT_EQ(number("reel:1", 42, 2, "b").seq, 2u);
  // Sent again (kronopd restarted before it heard the answer): nothing changes.
  for (uint64_t again : {1, 2}) {
    const Numbered n = number("reel:1", 42, again, "dup");
    EXPECT_TRUE(n.duplicate);
  }
  EXPECT_EQ(redis.command({"XLEN", "{reel:1}:h"}), "2");
  EXPECT_EQ(number("reel:1", 42, 3, "c").seq, 3u);
  // kronopd's own messages (producer 0) are never taken for duplicates.
  EXPECT_EQ(number("reel:1", 0, 0, "own").seq, 4u);
  EXPECT_EQ(number("reel:1", 0, 0, "own").seq, 5u);
}

TEST_F(NumberingTest, ABatchIsNumberedInOrderAndItsDuplicatesSkipped) {
  EXPECT_EQ(number("reel:1", 42, 1, "a").seq, 1u);
  const NumberedBatch b = number_batch(
      "reel:1", {{42, 1, "a again"}, {42, 2, "b"}, {43, 1, "c"}, {0, 0, "own"}, {42, 3, "d"}});
  EXPECT_EQ(b.epoch, 777u);
  EXPECT_EQ(b.seqs, (std::vector<uint64_t>{0, 2, 3, 4, 5}));
  auto range = redis.reply({"XRANGE", "{reel:1}:h", "-", "+"});
  ASSERT_TRUE(range);
  ASSERT_EQ(range->elements, 5u);
  EXPECT_EQ(std::string(range->element[3]->element[1]->element[1]->str), "own");
  // The whole batch again: all duplicates but kronopd's own message, which has no key.
  const NumberedBatch again =
      number_batch("reel:1", {{42, 1, "a"}, {42, 2, "b"}, {43, 1, "c"}, {42, 3, "d"}});
  EXPECT_EQ(again.seqs, (std::vector<uint64_t>{0, 0, 0, 0}));
}

TEST_F(NumberingTest, AnswersOfTheWrongShapeAreRefused) {
  auto wrong_count = redis.reply(numbering_command("reel:1", {{42, 1, "a"}}, 777, {}));
  ASSERT_TRUE(wrong_count);
  EXPECT_FALSE(read_numbering_reply(*wrong_count, 2).ok());
  auto error = redis.reply({"EVALSHA", "0000000000000000000000000000000000000000", "0"});
  ASSERT_TRUE(error);
  auto refused = read_numbering_reply(*error, 0);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().message.rfind("NOSCRIPT", 0), 0u) << refused.error().message;
}

TEST_F(NumberingTest, ALostMetaStartsANewStreamWithAnEmptyHistory) {
  EXPECT_EQ(number("reel:1", 42, 1, "a", 111).seq, 1u);
  EXPECT_EQ(number("reel:1", 42, 2, "b", 222).epoch, 111u);
  ASSERT_EQ(redis.command({"DEL", "{reel:1}:m"}), "1");
  const Numbered n = number("reel:1", 42, 3, "c", 333);
  EXPECT_EQ(n.epoch, 333u);
  EXPECT_EQ(n.seq, 1u);
  EXPECT_EQ(redis.command({"XLEN", "{reel:1}:h"}), "1");
}

TEST_F(NumberingTest, TheHistoryIsBounded) {
  HistoryLimits limits;
  limits.size = 100;
  limits.ttl_s = 60;
  for (uint64_t i = 1; i <= 1000; ++i) number("reel:1", 42, i, "m", 777, limits);
  const long long len = std::stoll(redis.command({"XLEN", "{reel:1}:h"}));
  EXPECT_GE(len, 100);
  EXPECT_LE(len, 200);  // MAXLEN ~ trims whole nodes of the stream (100 entries each)
  EXPECT_EQ(redis.command({"TTL", "{reel:1}:m"}), "60");
}

TEST_F(NumberingTest, TheShardChannelCarriesEpochSeqAndTheEnvelope) {
  timeval timeout{2, 0};
  redisContext *sub = redisConnectWithTimeout("127.0.0.1", redis.port(), timeout);
  ASSERT_TRUE(sub != nullptr && sub->err == 0);
  redisSetTimeout(sub, timeout);
  auto *ack = static_cast<redisReply *>(redisCommand(sub, "SSUBSCRIBE %s", "{reel:1}"));
  ASSERT_NE(ack, nullptr);
  freeReplyObject(ack);
  const std::string envelope("\x0a\x06reel:1\x00\xff", 10);  // bytes, not text
  EXPECT_EQ(number("reel:1", 42, 1, envelope, 4242).seq, 1u);
  void *raw = nullptr;
  ASSERT_EQ(redisGetReply(sub, &raw), REDIS_OK);
  auto *push = static_cast<redisReply *>(raw);
  ASSERT_EQ(push->elements, 3u);
  EXPECT_EQ(std::string(push->element[0]->str), "smessage");
  auto m = parse_numbered_message({push->element[2]->str, push->element[2]->len});
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_EQ(m.value().epoch, 4242u);
  EXPECT_EQ(m.value().seq, 1u);
  EXPECT_EQ(m.value().envelope, envelope);
  freeReplyObject(push);
  redisFree(sub);
}

TEST_F(NumberingTest, CountedRecordsMoveTheirReelsTotalsOnceAndCarryThem) {
  timeval timeout{2, 0};
  redisContext *sub = redisConnectWithTimeout("127.0.0.1", redis.port(), timeout);
  ASSERT_TRUE(sub != nullptr && sub->err == 0);
  redisSetTimeout(sub, timeout);
  auto *ack = static_cast<redisReply *>(redisCommand(sub, "SSUBSCRIBE %s", "{reel:7}"));
  ASSERT_NE(ack, nullptr);
  freeReplyObject(ack);
  // Two producers' likes, a comment, a like sent again (not counted again), kronopd's own
  // counter update (carries the totals, moves nothing), and a record that is not counted.
  const NumberedBatch b = number_batch("reel:7", {{1, 1, "like-a", CounterOp::kLike},
                                                  {2, 1, "like-b", CounterOp::kLike},
                                                  {2, 2, "comment", CounterOp::kComment},
                                                  {1, 1, "like-a", CounterOp::kLike},
                                                  {0, 0, "update", CounterOp::kTotals},
                                                  {1, 2, "plain", CounterOp::kNone},
                                                  {1, 3, "share", CounterOp::kShare}});
  EXPECT_EQ(b.seqs, (std::vector<uint64_t>{1, 2, 3, 0, 4, 5, 6}));
  struct Expected {
    std::string envelope;
    bool counted;
    ReelCounters totals;
  };
  const std::vector<Expected> expected = {{"like-a", true, {1, 0, 0}},  {"like-b", true, {2, 0, 0}},
                                          {"comment", true, {2, 1, 0}}, {"update", true, {2, 1, 0}},
                                          {"plain", false, {}},         {"share", true, {2, 1, 1}}};
  for (const Expected &e : expected) {
    void *raw = nullptr;
    ASSERT_EQ(redisGetReply(sub, &raw), REDIS_OK);
    auto *push = static_cast<redisReply *>(raw);
    auto m = parse_numbered_message({push->element[2]->str, push->element[2]->len});
    ASSERT_TRUE(m.ok()) << m.error().message;
    EXPECT_EQ(m.value().envelope, e.envelope);
    EXPECT_EQ(m.value().counted, e.counted) << e.envelope;
    EXPECT_EQ(m.value().totals.likes, e.totals.likes) << e.envelope;
    EXPECT_EQ(m.value().totals.comments, e.totals.comments) << e.envelope;
    EXPECT_EQ(m.value().totals.shares, e.totals.shares) << e.envelope;
    freeReplyObject(push);
  }
  redisFree(sub);
  // The history keeps them with the message; a lost meta starts the totals again.
  EXPECT_EQ(redis.command({"HMGET", "{reel:7}:m", "likes", "comments", "shares"}), "2\n1\n1");
  redis.command({"DEL", "{reel:7}:m"});
  number_batch("reel:7", {{1, 9, "like", CounterOp::kLike}});
  EXPECT_EQ(redis.command({"HMGET", "{reel:7}:m", "likes", "comments", "shares"}),
            "1\n(nil)\n(nil)");
}

TEST(NumberedMessage, BadPayloadsAreRefused) {
  for (const char *bad :
       {"", "1:2", ":1:x", "1::x", "0:1:x", "1:0:x", "a:1:x", "1:b:x",
        "99999999999999999999999:1:x", "-1:1:x", "1:2#:x", "1:2#1,2:x", "1:2#1,2,3,4:x",
        "1:2#1,,3:x", "1:2#1,2,-3:x", "1:2#1,2,99999999999999999999:x", "1:2#1,2,3"}) {
    EXPECT_FALSE(parse_numbered_message(bad).ok()) << bad;
  }
  auto m = parse_numbered_message("5:6:");
  ASSERT_TRUE(m.ok());
  EXPECT_TRUE(m.value().envelope.empty());
  EXPECT_FALSE(m.value().counted);
  m = parse_numbered_message("5:6#7,0,9:a:b#");
  ASSERT_TRUE(m.ok());
  EXPECT_TRUE(m.value().counted);
  EXPECT_EQ(m.value().totals.likes, 7);
  EXPECT_EQ(m.value().totals.shares, 9);
  EXPECT_EQ(m.value().envelope, "a:b#");
}

}  // namespace
}  // namespace kronop::daemon
