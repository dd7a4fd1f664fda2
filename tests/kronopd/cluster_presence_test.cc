// Presence between nodes: the messages' format (what parses, what is refused, big changes
// split), and the members' heartbeat script against a real redis-server (listing, a node
// missing its heartbeats evicted on Redis's clock, a clean leave).
#include "cluster_presence.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "cluster_members.h"
#include "support/redis_server.h"

namespace kronop::daemon {
namespace {

using Kind = PresenceMessage::Kind;

TEST(PresenceMessageTest, ChangesStatesAndQueriesReadBackAsWritten) {
  const PresenceMessage changes{
      Kind::kChanges, "Fabc", {{"alice", 7, 1700000000000}, {"b o b", 8, 1}}, {{"carol", 3, 0}}};
  const std::string text = encode_presence(changes);
  EXPECT_EQ(text, "PD\tFabc\n+\talice\t7\t1700000000000\n+\tb o b\t8\t1\n-\tcarol\t3\n");
  auto m = parse_presence_message(text);
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_EQ(m.value().kind, Kind::kChanges);
  EXPECT_EQ(m.value().node, "Fabc");
  ASSERT_EQ(m.value().joins.size(), 2u);
  EXPECT_EQ(m.value().joins[1].user, "b o b");
  EXPECT_EQ(m.value().joins[0].online_at, 1700000000000u);
  ASSERT_EQ(m.value().leaves.size(), 1u);
  EXPECT_EQ(m.value().leaves[0].id, 3u);

  auto q = parse_presence_message("PQ\tFabc\n");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q.value().kind, Kind::kQuery);
  auto s = parse_presence_message("PS\tFabc\n");
  ASSERT_TRUE(s.ok()) << "an empty state: nobody there";
  EXPECT_TRUE(s.value().joins.empty());
  EXPECT_TRUE(is_presence_message("PD\t") && !is_presence_message("12:3:x"));
}

TEST(PresenceMessageTest, MalformedMessagesAreRefused) {
  for (const char *bad :
       {"", "P", "PD", "PX\tF\n", "PD\tF", "PD\t\n", "PDD\tF\n", "PQ\tF\n+\ta\t1\t2\n",
        "PS\tF\n-\ta\t1\n", "PD\tF\n+\ta\t1\n", "PD\tF\n+\ta\t1\t2", "PD\tF\n*\ta\t1\t2\n",
        "PD\tF\n+\ta\tx\t2\n", "PD\tF\n+\ta\t1\t-2\n", "PD\tF\n-\ta\t1\t2\n",
        "PD\tF\n+\ta\t99999999999999999999999\t2\n"}) {
    EXPECT_FALSE(parse_presence_message(bad).ok()) << bad;
  }
}

TEST(PresenceMessageTest, AMessageOfMoreLinesThanTheBoundIsRefused) {
  const std::string three = "PS\tF\n+\ta\t1\t2\n+\tb\t2\t2\n+\tc\t3\t2\n";
  EXPECT_TRUE(parse_presence_message(three, 3).ok());
  EXPECT_FALSE(parse_presence_message(three, 2).ok());
}

TEST(PresenceMessageTest, BigChangesGoOutInSeveralMessages) {
  std::vector<PresenceHub::NodeMeta> joins, leaves;
  for (uint64_t i = 0; i < kMetasPerMessage + 10; ++i) joins.push_back({"u", i, 1});
  for (uint64_t i = 0; i < 20; ++i) leaves.push_back({"v", i, 0});
  const auto messages = encode_changes("Fn", joins, leaves);
  ASSERT_EQ(messages.size(), 2u);
  std::size_t j = 0, l = 0;
  for (const std::string &text : messages) {
    auto m = parse_presence_message(text);
    ASSERT_TRUE(m.ok());
    EXPECT_LE(m.value().joins.size() + m.value().leaves.size(), kMetasPerMessage);
    j += m.value().joins.size();
    l += m.value().leaves.size();
  }
  EXPECT_EQ(j, joins.size());
  EXPECT_EQ(l, leaves.size());
  EXPECT_TRUE(encode_changes("Fn", {}, {}).empty());
}

class MembersTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(redis.start()) << redis.error(); }
  MembersReply beat(const std::string &id, uint64_t ttl_ms, uint64_t connections = 0) {
    auto reply = redis.reply(heartbeat_command(id, "host-" + id + ":4000", connections, ttl_ms));
    EXPECT_TRUE(reply) << redis.error();
    if (!reply) return {};
    auto r = read_heartbeat_reply(*reply);
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() ? r.value() : MembersReply{};
  }
  static std::vector<std::string> ids(const MembersReply &r) {
    std::vector<std::string> out;
    for (const ClusterMember &m : r.members) out.push_back(m.id);
    std::sort(out.begin(), out.end());
    return out;
  }
  test::RedisServer redis;
};

TEST_F(MembersTest, EveryNodeIsListedAndOneMissingItsHeartbeatsIsEvicted) {
  MembersReply a = beat("Fa", 60'000, 3);
  EXPECT_FALSE(a.was_listed) << "a new node";
  EXPECT_GT(a.now_ms, 1'700'000'000'000u) << "Redis's clock, in Unix ms";
  // A node with a 500 ms TTL is evicted once its last heartbeat is 400 ms old.
  beat("Fshort", 500);
  MembersReply b = beat("Fa", 60'000, 4);
  EXPECT_TRUE(b.was_listed);
  EXPECT_EQ(ids(b), (std::vector<std::string>{"Fa", "Fshort"}));
  for (const ClusterMember &m : b.members) {
    if (m.id == "Fa") {
      EXPECT_EQ(m.address, "host-Fa:4000");
      EXPECT_EQ(m.connections, 4u);
      EXPECT_EQ(m.ttl_ms, 60'000u);
      EXPECT_LE(m.heartbeat_ms, b.now_ms);
    }
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(450));
  EXPECT_EQ(ids(beat("Fa", 60'000)), std::vector<std::string>{"Fa"});
  EXPECT_EQ(redis.command({"HEXISTS", std::string(kMembersKey), "Fshort"}), "0");
  // Back after it was taken for dead: not listed before this heartbeat.
  EXPECT_FALSE(beat("Fshort", 500).was_listed);
  // A clean leave.
  redis.command(leave_command("Fshort"));
  EXPECT_EQ(ids(beat("Fa", 60'000)), std::vector<std::string>{"Fa"});
}

TEST_F(MembersTest, EntriesThatAreNotMembersAreEvictedAndAnswersOfTheWrongShapeRefused) {
  redis.command({"HSET", std::string(kMembersKey), "Fjunk", "not a heartbeat"});
  EXPECT_EQ(ids(beat("Fa", 60'000)), std::vector<std::string>{"Fa"});
  for (const auto &argv :
       std::vector<std::vector<std::string>>{{"PING"},
                                             {"ECHO", "x"},
                                             {"EVAL", "return {1}", "0"},
                                             {"EVAL", "return {1, 2, 'a'}", "0"},
                                             {"EVAL", "return {0, 5, 'id', 'x y'}", "0"},
                                             {"EVAL", "return {0, -1}", "0"}}) {
    auto reply = redis.reply(argv);
    ASSERT_TRUE(reply);
    EXPECT_FALSE(read_heartbeat_reply(*reply).ok()) << argv.back();
  }
}

}  // namespace
}  // namespace kronop::daemon
