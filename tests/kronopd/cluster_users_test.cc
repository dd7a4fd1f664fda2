// Users' status across the cluster (cluster_users.h): the scripts run in a real Redis, the
// records they leave read back and merged.
#include "cluster_users.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "support/redis_server.h"

namespace kronop::daemon {
namespace {

using Status = PresenceHub::Status;
constexpr uint64_t kDay = 24ull * 3600 * 1000;

class UsersTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(redis.start()) << redis.error(); }

  // Node `node` now holds `count` sockets of `user`, with `alive` the members it knows.
  std::string sockets(const std::string &user, const std::string &node, uint32_t count,
                      const std::vector<std::string> &alive, uint64_t alive_ttl_ms = 60'000) {
    return redis.command(user_sockets_command(user, node, count, alive, alive_ttl_ms, kDay));
  }
  std::optional<PresenceHub::UserPresence> read(const std::string &user,
                                                const std::unordered_set<std::string> &alive,
                                                uint64_t alive_ttl_ms = 60'000) {
    auto reply = redis.reply(user_read_command(user));
    EXPECT_TRUE(reply) << redis.error();
    if (!reply) return std::nullopt;
    auto r = read_user_record(*reply, user, alive, alive_ttl_ms, 42);
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() ? r.value() : std::nullopt;
  }
  PresenceHub::UserPresence status(const std::string &user, Status s, int32_t reel,
                                   const std::string &activity) {
    PresenceHub::UserPresence p;
    p.user_id = user;
    p.status = s;
    p.current_reel = reel;
    p.activity = activity;
    EXPECT_EQ(redis.command(user_status_command(p, kDay)), "1");
    return p;
  }

  test::RedisServer redis;
};

TEST_F(UsersTest, SocketsOnEveryNodeCountAndTheClusterSLastSocketMakesTheUserOffline) {
  EXPECT_FALSE(read("u1", {"Fa"})) << "never seen";
  const std::vector<std::string> nodes = {"Fa", "Fb"};
  const std::unordered_set<std::string> alive = {"Fa", "Fb"};
  EXPECT_EQ(sockets("u1", "Fa", 1, nodes), "1");
  EXPECT_EQ(sockets("u1", "Fb", 2, nodes), "3");
  auto p = read("u1", alive);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->status, Status::kOnline);
  EXPECT_EQ(p->sockets, 3u);
  EXPECT_EQ(p->last_seen_ms, 42u) << "a user with sockets is seen now";
  // Their choice, made on either node, is the cluster's.
  status("u1", Status::kOnline, 7, "watching");
  p = read("u1", alive);
  EXPECT_EQ(p->current_reel, 7);
  EXPECT_EQ(p->activity, "watching");
  // Writing a count twice changes nothing.
  EXPECT_EQ(sockets("u1", "Fb", 2, nodes), "3");
  EXPECT_EQ(sockets("u1", "Fa", 0, nodes), "2");
  p = read("u1", alive);
  EXPECT_EQ(p->status, Status::kOnline) << "sockets are left on Fb";
  EXPECT_EQ(p->current_reel, 7);
  EXPECT_EQ(sockets("u1", "Fb", 0, nodes), "0");
  p = read("u1", alive);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->status, Status::kOffline);
  EXPECT_EQ(p->sockets, 0u);
  EXPECT_EQ(p->current_reel, 0) << "the last socket clears what the user was doing";
  EXPECT_EQ(p->activity, "");
  EXPECT_GT(p->last_seen_ms, 1'700'000'000'000u) << "Redis's clock at the last change";
}

TEST_F(UsersTest, AwayChosenWithNoSocketOutlivesTheFirstSocket) {
  status("u2", Status::kAway, 0, "brb");
  EXPECT_EQ(sockets("u2", "Fa", 1, {"Fa"}), "1");
  auto p = read("u2", {"Fa"});
  ASSERT_TRUE(p);
  EXPECT_EQ(p->status, Status::kAway);
  EXPECT_EQ(p->activity, "brb");
  EXPECT_EQ(p->sockets, 1u);
  EXPECT_EQ(sockets("u2", "Fa", 0, {"Fa"}), "0");
  EXPECT_EQ(read("u2", {"Fa"})->status, Status::kOffline);
}

TEST_F(UsersTest, ADeadNodeSSocketsDoNotCountAndAreRemovedByTheNextWriter) {
  // Fdead wrote its count, then stopped heartbeating: no longer a member.
  EXPECT_EQ(sockets("u3", "Fdead", 2, {"Fdead"}), "2");
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  // Readers and writers that know the members ignore it once its write is older than the
  // alive TTL (here 50 ms).
  auto p = read("u3", {"Fa"}, 50);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->sockets, 0u);
  EXPECT_EQ(p->status, Status::kOffline) << "its users went with it";
  // Within the TTL a node not listed yet (it joined since the last heartbeat) counts.
  EXPECT_EQ(read("u3", {"Fa"}, 60'000)->sockets, 2u);
  EXPECT_EQ(sockets("u3", "Fa", 1, {"Fa"}, 50), "1");
  EXPECT_EQ(redis.command({"HEXISTS", user_record_key("u3"), "n:Fdead"}), "0");
  EXPECT_EQ(read("u3", {"Fa"})->status, Status::kOnline) << "the first socket of the live cluster";
}

TEST_F(UsersTest, TheRecordExpiresAndRecordsOfTheWrongShapeAreRefusedOrIgnored) {
  redis.command(user_sockets_command("u4", "Fa", 1, {"Fa"}, 60'000, 100'000));
  const long long ttl = std::stoll(redis.command({"PTTL", user_record_key("u4")}));
  EXPECT_GT(ttl, 0);
  EXPECT_LE(ttl, 100'000);
  // A record someone else wrote: what is not understood is ignored.
  redis.command({"HSET", user_record_key("u5"), "n:Fa", "lots", "st", "dancing", "r", "-3", "a",
                 std::string(5000, 'x'), "ls", "never", "zz", "1"});
  auto p = read("u5", {"Fa"});
  ASSERT_TRUE(p);
  EXPECT_EQ(p->status, Status::kOffline);
  EXPECT_EQ(p->sockets, 0u);
  EXPECT_EQ(p->current_reel, 0);
  EXPECT_EQ(p->activity, "");
  for (const auto &argv : std::vector<std::vector<std::string>>{
           {"PING"},
           {"EVAL", "return {}", "0"},
           {"EVAL", "return {'x'}", "0"},
           {"EVAL", "return {'1', 'st'}", "0"},
           {"EVAL", "return redis.error_reply('NOSCRIPT no')", "0"}}) {
    auto reply = redis.reply(argv);
    ASSERT_TRUE(reply);
    EXPECT_FALSE(read_user_record(*reply, "u", {}, 1000, 1).ok()) << argv.back();
  }
}

}  // namespace
}  // namespace kronop::daemon
