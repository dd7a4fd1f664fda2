// Hash slots, CLUSTER SLOTS and redirections (redis_slots.h): the slots of known keys as
// Redis 7.0 computes them (CLUSTER KEYSLOT), replies read through the bounded reader as
// kronopd reads them, good and malformed, and a real 3-master Redis Cluster
// (tests/support/redis_cluster.h) whose map, MOVED and ASK answers are read back.
#include "redis_slots.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <cerrno>
#include <initializer_list>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "redis_reply.h"
#include "support/redis_cluster.h"

namespace kronop::daemon {
namespace {

// RESP2 values, to make the replies a Redis would send.
std::string bulk(std::string_view s) {
  std::string out = "$";
  out.append(std::to_string(s.size())).append("\r\n").append(s).append("\r\n");
  return out;
}
std::string num(long long v) {
  std::string out = ":";
  out.append(std::to_string(v)).append("\r\n");
  return out;
}
std::string arr(std::initializer_list<std::string> items) {
  std::string out = "*";
  out.append(std::to_string(items.size())).append("\r\n");
  for (const std::string &i : items) out.append(i);
  return out;
}
const std::string kNil = "$-1\r\n";
const std::string kId0 = "347baf30edf84d6f5287a99ee4a57aeb42db11f6";
const std::string kId1 = "80fa920d2a504544cfcd0f5f774cc92fc958dca2";
const std::string kId2 = "ddc898c1072def5af6cc1b26d5c309906c803668";

// A master as Redis 7 lists it: endpoint, port, node id, metadata.
std::string node(const std::string &endpoint, long long port, const std::string &id = kId0) {
  return arr({endpoint, num(port), bulk(id), arr({})});
}
std::string range(long long first, long long last, const std::string &master) {
  return arr({num(first), num(last), master});
}

// CLUSTER SLOTS of a Redis 7.0.15 cluster of three masters (cluster-preferred-endpoint-type
// ip, the default), as it came off the wire.
const std::string kRealSlots =
    "*3\r\n*3\r\n:0\r\n:5460\r\n*4\r\n$9\r\n127.0.0.1\r\n:23100\r\n$40\r\n"
    "347baf30edf84d6f5287a99ee4a57aeb42db11f6\r\n*0\r\n*3\r\n:5461\r\n:10922\r\n*4\r\n$9\r\n"
    "127.0.0.1\r\n:23101\r\n$40\r\n80fa920d2a504544cfcd0f5f774cc92fc958dca2\r\n*0\r\n*3\r\n"
    ":10923\r\n:16383\r\n*4\r\n$9\r\n127.0.0.1\r\n:23102\r\n$40\r\n"
    "ddc898c1072def5af6cc1b26d5c309906c803668\r\n*0\r\n";

// The one reply in `resp`, read by kronopd's bounded reader.
RedisReplyPtr read(const std::string &resp) {
  RedisReaderPtr reader = make_redis_reader();
  EXPECT_EQ(redisReaderFeed(reader.get(), resp.data(), resp.size()), REDIS_OK);
  auto next = next_redis_reply(*reader);
  EXPECT_TRUE(next.ok()) << (next.ok() ? "" : next.error().message);
  if (!next.ok()) return nullptr;
  RedisReplyPtr reply = std::move(next).value();
  EXPECT_NE(reply, nullptr) << "not a whole reply: " << resp;
  return reply;
}

SlotMap parsed(const std::string &resp, std::string_view asked_host = "seed.example") {
  RedisReplyPtr reply = read(resp);
  if (!reply) return {};
  auto map = parse_cluster_slots(*reply, asked_host);
  EXPECT_TRUE(map.ok()) << (map.ok() ? "" : map.error().message);
  return map.ok() ? map.value() : SlotMap{};
}

// The error parse_cluster_slots makes of `resp` ("" when it took it).
std::string refused(const std::string &resp) {
  RedisReplyPtr reply = read(resp);
  if (!reply) return "unreadable";
  auto map = parse_cluster_slots(*reply, "seed.example");
  if (map.ok()) return "";
  EXPECT_EQ(map.error().code, -EPROTO);
  return map.error().message;
}

// Slots as Redis 7.0.15 answered CLUSTER KEYSLOT for these keys.
TEST(RedisHashSlot, KnownKeys) {
  EXPECT_EQ(redis_hash_slot("123456789"), 12739);  // 0x31C3: CRC-16/XMODEM's check value
  EXPECT_EQ(redis_hash_slot(""), 0);
  EXPECT_EQ(redis_hash_slot("a"), 15495);
  EXPECT_EQ(redis_hash_slot("foo"), 12182);
  EXPECT_EQ(redis_hash_slot("hello"), 866);
  EXPECT_EQ(redis_hash_slot("bar"), 5061);
  EXPECT_EQ(redis_hash_slot("zap"), 6469);
  EXPECT_EQ(redis_hash_slot("{bar"), 4015);
  EXPECT_EQ(redis_hash_slot("{"), 4092);
  EXPECT_EQ(redis_hash_slot("}"), 12090);
  EXPECT_EQ(redis_hash_slot("{}"), 15257);
}

TEST(RedisHashSlot, HashTags) {
  // The tag alone is hashed: the two keys share a slot.
  EXPECT_EQ(redis_hash_slot("{user1000}.following"), 3443);
  EXPECT_EQ(redis_hash_slot("{user1000}.followers"), 3443);
  EXPECT_EQ(redis_hash_slot("{user1000}"), redis_hash_slot("user1000"));
  // An empty tag is no tag: the whole key.
  EXPECT_EQ(redis_hash_slot("foo{}{bar}"), 8363);
  // The first '{', then the first '}' after it.
  EXPECT_EQ(redis_hash_slot("foo{{bar}}zap"), 4015);
  EXPECT_EQ(redis_hash_slot("foo{{bar}}zap"), redis_hash_slot("{bar"));
  EXPECT_EQ(redis_hash_slot("foo{bar}{zap}"), 5061);
  EXPECT_EQ(redis_hash_slot("foo{bar}{zap}"), redis_hash_slot("bar"));
  // A '{' with no '}' after it: the whole key.
  EXPECT_EQ(redis_hash_slot("}foo{"), 8453);
  EXPECT_EQ(redis_hash_slot("x{foo"), 11351);
  EXPECT_EQ(redis_hash_slot("{reel:42}.likes"), 2516);
  EXPECT_EQ(redis_hash_slot("reel:42"), 2516);
  // Any byte, a NUL included.
  EXPECT_EQ(redis_hash_slot(std::string_view("a{\0}b", 5)), 0);
  EXPECT_EQ(redis_hash_slot(std::string_view("\0\xff{\0}", 5)), 0);
  EXPECT_EQ(redis_hash_slot(std::string_view("\0x", 2)),
            redis_hash_slot(std::string_view("{\0x}", 4)));
}

TEST(ClusterSlots, RealRedis7Reply) {
  const SlotMap map = parsed(kRealSlots);
  ASSERT_EQ(map.ranges.size(), 3u);
  EXPECT_TRUE(map.complete());
  EXPECT_EQ(map.ranges[0].first, 0);
  EXPECT_EQ(map.ranges[0].last, 5460);
  EXPECT_EQ(map.ranges[0].host, "127.0.0.1");
  EXPECT_EQ(map.ranges[0].port, 23100);
  EXPECT_EQ(map.ranges[0].node_id, kId0);
  EXPECT_EQ(map.ranges[2].node_id, kId2);
  const std::vector<std::pair<std::string, uint16_t>> masters = {
      {"127.0.0.1", 23100}, {"127.0.0.1", 23101}, {"127.0.0.1", 23102}};
  EXPECT_EQ(map.masters(), masters);
  for (const auto &[slot, port] :
       std::vector<std::pair<uint16_t, uint16_t>>{{0, 23100},
                                                  {5460, 23100},
                                                  {5461, 23101},
                                                  {10922, 23101},
                                                  {10923, 23102},
                                                  {16383, 23102},
                                                  {redis_hash_slot("foo"), 23102},
                                                  {redis_hash_slot("hello"), 23100}}) {
    const SlotRange *r = map.owner(slot);
    ASSERT_NE(r, nullptr) << slot;
    EXPECT_EQ(r->port, port) << slot;
  }
}

TEST(ClusterSlots, EndpointsThatMeanTheHostAsked) {
  // A node that has met no other does not know its IP: "".
  SlotMap map = parsed(arr({range(0, 100, node(bulk(""), 6379))}), "10.1.2.3");
  ASSERT_EQ(map.ranges.size(), 1u);
  EXPECT_EQ(map.ranges[0].host, "10.1.2.3");
  // cluster-preferred-endpoint-type unknown-endpoint: nil, the IP in the metadata not used.
  map = parsed(
      arr({range(0, 16383,
                 arr({kNil, num(7000), bulk(kId1), arr({bulk("ip"), bulk("192.168.0.9")})}))}),
      "lb.example");
  ASSERT_EQ(map.ranges.size(), 1u);
  EXPECT_EQ(map.ranges[0].host, "lb.example");
  EXPECT_EQ(map.ranges[0].port, 7000);
  EXPECT_TRUE(map.complete());
  // cluster-preferred-endpoint-type hostname without an announced hostname: "?", and the IP
  // in the metadata.
  map = parsed(
      arr({range(0, 16383,
                 arr({bulk("?"), num(7000), bulk(kId1),
                      arr({bulk("hostname"), bulk(""), bulk("ip"), bulk("192.168.0.9")})}))}));
  ASSERT_EQ(map.ranges.size(), 1u);
  EXPECT_EQ(map.ranges[0].host, "192.168.0.9");
  EXPECT_NE(refused(arr({range(0, 16383, arr({bulk("?"), num(7000), bulk(kId1), arr({})}))})), "");
  EXPECT_NE(refused(arr({range(0, 16383, arr({bulk("?"), num(7000)}))})), "");
}

TEST(ClusterSlots, OlderAndOtherShapes) {
  // Redis 4.0 to 6.2: no metadata; 3.x: no node id either.
  SlotMap map = parsed(arr({range(0, 8191, arr({bulk("10.0.0.1"), num(6379), bulk(kId0)})),
                            range(8192, 16383, arr({bulk("10.0.0.2"), num(6379)}))}));
  ASSERT_EQ(map.ranges.size(), 2u);
  EXPECT_TRUE(map.complete());
  EXPECT_EQ(map.ranges[1].node_id, "");
  // Out of order, with a replica (not read), a master with two ranges, an IPv6 address and
  // a hostname.
  map = parsed(arr({arr({num(10001), num(16383), node(bulk("redis-2.example"), 7002, kId2),
                         node(bulk("redis-3.example"), 7003, kId0)}),
                    range(0, 4999, node(bulk("::1"), 7000)),
                    range(5000, 9999, node(bulk("10.0.0.2"), 7001, kId1)),
                    range(10000, 10000, node(bulk("::1"), 7000))}));
  ASSERT_EQ(map.ranges.size(), 4u);
  EXPECT_TRUE(map.complete());
  EXPECT_EQ(map.ranges[0].host, "::1");
  EXPECT_EQ(map.ranges[3].host, "redis-2.example");
  const std::vector<std::pair<std::string, uint16_t>> masters = {
      {"::1", 7000}, {"10.0.0.2", 7001}, {"redis-2.example", 7002}};
  EXPECT_EQ(map.masters(), masters);
  ASSERT_NE(map.owner(10000), nullptr);
  EXPECT_EQ(map.owner(10000)->port, 7000);
  EXPECT_EQ(map.owner(10001)->port, 7002);
  // No slot served (a cluster being set up), and holes: a map, not a complete one.
  map = parsed("*0\r\n");
  EXPECT_TRUE(map.ranges.empty());
  EXPECT_FALSE(map.complete());
  EXPECT_EQ(map.owner(0), nullptr);
  EXPECT_TRUE(map.masters().empty());
  map = parsed(arr({range(1, 16383, node(bulk("h"), 1))}));
  EXPECT_FALSE(map.complete());
  EXPECT_EQ(map.owner(0), nullptr);
  EXPECT_NE(map.owner(1), nullptr);
  map = parsed(arr({range(0, 99, node(bulk("h"), 1)), range(101, 16383, node(bulk("h"), 1))}));
  EXPECT_FALSE(map.complete());
  EXPECT_EQ(map.owner(100), nullptr);
  EXPECT_EQ(map.owner(99)->last, 99);
  EXPECT_EQ(map.owner(101)->first, 101);
  EXPECT_EQ(map.masters().size(), 1u);
  map = parsed(arr({range(0, 16382, node(bulk("h"), 1))}));
  EXPECT_FALSE(map.complete());
  EXPECT_EQ(map.owner(16383), nullptr);
}

TEST(ClusterSlots, CompleteAndOwnerOfMapsMadeByHand) {
  SlotMap map;
  map.ranges = {{0, 8191, "a", 1, ""}, {8192, 16383, "b", 2, ""}};
  EXPECT_TRUE(map.complete());
  map.ranges = {{0, 8191, "a", 1, ""}, {8191, 16383, "b", 2, ""}};  // slot 8191 twice
  EXPECT_FALSE(map.complete());
  map.ranges = {{8192, 16383, "b", 2, ""}, {0, 8191, "a", 1, ""}};  // not sorted
  EXPECT_FALSE(map.complete());
  map.ranges = {{0, 16383, "a", 1, ""}, {5, 4, "b", 2, ""}};  // first > last
  EXPECT_FALSE(map.complete());
  map.ranges = {{0, 0, "a", 1, ""}, {1, 16383, "b", 2, ""}};
  EXPECT_TRUE(map.complete());
  EXPECT_EQ(map.owner(0)->host, "a");
  EXPECT_EQ(map.owner(1)->host, "b");
  EXPECT_EQ(map.owner(16383)->host, "b");
}

TEST(ClusterSlots, MalformedRepliesAreErrors) {
  const std::string good = node(bulk("10.0.0.1"), 6379);
  EXPECT_EQ(refused(arr({range(0, 16383, good)})), "");
  // What Redis answers without cluster mode: the error, said.
  EXPECT_NE(refused("-ERR This instance has cluster support disabled\r\n")
                .find("cluster support disabled"),
            std::string::npos);
  const std::string host256(256, 'h');
  for (const std::string &resp : {
           num(1),
           bulk("slots"),
           kNil,
           std::string("+OK\r\n"),
           arr({num(0)}),                                      // a range not an array
           arr({arr({num(0), num(16383)})}),                   // no master
           arr({range(-1, 5, good)}),                          // below 0
           arr({range(0, 16384, good)}),                       // above 16383
           arr({range(16384, 16384, good)}),                   //
           arr({range(10, 9, good)}),                          // first > last
           arr({arr({bulk("0"), num(16383), good})}),          // a slot as a string
           arr({arr({num(0), kNil, good})}),                   //
           arr({range(0, 16383, bulk("10.0.0.1"))}),           // a master not an array
           arr({range(0, 16383, arr({bulk("10.0.0.1")}))}),    // no port
           arr({range(0, 16383, node(bulk("10.0.0.1"), 0))}),  // port 0
           arr({range(0, 16383, node(bulk("10.0.0.1"), 65536))}),
           arr({range(0, 16383, node(bulk("10.0.0.1"), -6379))}),
           arr({range(0, 16383, arr({bulk("10.0.0.1"), bulk("6379")}))}),  // port as a string
           arr({range(0, 16383, node(num(10), 6379))}),                    // ip as an integer
           arr({range(0, 16383, node(arr({}), 6379))}),
           arr({range(0, 16383, node(bulk(host256), 6379))}),  // longer than 255 bytes
           arr({range(0, 16383, node(bulk("10.0.0.1 x"), 6379))}),
           arr({range(0, 16383, node(bulk(std::string("h\0st", 4)), 6379))}),
           arr({range(0, 16383, node(bulk("h\r\nst"), 6379))}),
           arr({range(0, 16383, node(bulk("[::1]"), 6379))}),
           arr({range(0, 16383, node(bulk("10.0.0.1"), 6379, "abc"))}),  // a short node id
           arr({range(0, 16383, node(bulk("10.0.0.1"), 6379, std::string(40, 'g')))}),
           arr({range(0, 16383, node(bulk("10.0.0.1"), 6379, std::string(41, 'a')))}),
           arr({range(0, 16383, arr({bulk("10.0.0.1"), num(6379), num(1)}))}),
           arr({range(0, 16383, arr({bulk("10.0.0.1"), num(6379), bulk(kId0), bulk("m")}))}),
           arr({range(0, 16383, arr({bulk("10.0.0.1"), num(6379), bulk(kId0), arr({kNil})}))}),
           arr({arr({num(0), num(16383), good, num(1)})}),     // a replica not a node
           arr({range(0, 100, good), range(100, 200, good)}),  // slot 100 twice
           arr({range(0, 100, good), range(0, 100, good)}),
           arr({range(50, 60, good), range(0, 16383, good)}),  // one inside another
       }) {
    EXPECT_NE(refused(resp), "") << resp;
  }
}

TEST(ClusterSlots, AtMostOneRangePerSlot) {
  const std::string master = node(bulk("h"), 1);
  std::string many = "*" + std::to_string(kClusterSlots) + "\r\n";
  for (int slot = 0; slot < kClusterSlots; ++slot) many += range(slot, slot, master);
  const SlotMap map = parsed(many);
  EXPECT_EQ(map.ranges.size(), std::size_t{kClusterSlots});
  EXPECT_TRUE(map.complete());
  EXPECT_EQ(map.masters().size(), 1u);
  // One more range than slots, whatever they say.
  std::string too_many = "*" + std::to_string(kClusterSlots + 1) + "\r\n";
  for (int slot = 0; slot <= kClusterSlots; ++slot) too_many += range(0, 0, master);
  EXPECT_NE(refused(too_many).find("more ranges than slots"), std::string::npos);
}

TEST(Redirect, MovedAndAsk) {
  auto r = parse_redirect("MOVED 3999 127.0.0.1:6381");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->kind, Redirect::Kind::kMoved);
  EXPECT_EQ(r->slot, 3999);
  EXPECT_EQ(r->host, "127.0.0.1");
  EXPECT_EQ(r->port, 6381);
  r = parse_redirect("ASK 3999 127.0.0.1:6381");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->kind, Redirect::Kind::kAsk);
  EXPECT_EQ(r->slot, 3999);
  EXPECT_EQ(r->port, 6381);
  // IPv6: the port follows the last ':'.
  r = parse_redirect("MOVED 1 ::1:6380");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->host, "::1");
  EXPECT_EQ(r->port, 6380);
  r = parse_redirect("MOVED 0 fe80::1%eth0:7000");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->host, "fe80::1%eth0");
  // unknown-endpoint: no host, the caller's.
  r = parse_redirect("MOVED 1 :6380");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->host, "");
  EXPECT_EQ(r->port, 6380);
  r = parse_redirect("MOVED 16383 redis-2.example:65535");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->slot, 16383);
  EXPECT_EQ(r->host, "redis-2.example");
  EXPECT_EQ(r->port, 65535);
}

TEST(Redirect, AnythingElseIsNotARedirect) {
  for (std::string_view text : {"",
                                "MOVED",
                                "MOVED ",
                                "MOVED 1",
                                "MOVED 1 ",
                                "ASK",
                                "ERR unknown command",
                                "CLUSTERDOWN Hash slot not served",
                                "TRYAGAIN Multiple keys request during rehashing",
                                "-MOVED 1 h:1",
                                "moved 1 h:1",
                                "Moved 1 h:1",
                                "MOVED  1 h:1",
                                "MOVED 1  h:1",
                                "MOVED 1 h:1 ",
                                " MOVED 1 h:1",
                                "MOVED 1 h:1\r\n",
                                "MOVED\t1 h:1",
                                "MOVED 16384 h:1",
                                "MOVED 99999 h:1",
                                "MOVED 123456 h:1",
                                "MOVED -1 h:1",
                                "MOVED +1 h:1",
                                "MOVED x h:1",
                                "MOVED 1x h:1",
                                "MOVED 1 h",
                                "MOVED 1 h:",
                                "MOVED 1 h:0",
                                "MOVED 1 h:65536",
                                "MOVED 1 h:123456",
                                "MOVED 1 h:-1",
                                "MOVED 1 h:+1",
                                "MOVED 1 h:1x",
                                "MOVED 1 ?:6380",
                                "MOVED 1 h h:1",
                                "MOVED 1 [::1]:6380",
                                "ASK 1 h:0",
                                "ASKING 1 h:1",
                                "MOVED1 h:1"}) {
    EXPECT_FALSE(parse_redirect(text).has_value()) << text;
  }
  EXPECT_FALSE(parse_redirect(std::string_view("MOVED 1 h\0:1", 12)).has_value());
  EXPECT_FALSE(parse_redirect("MOVED 1 " + std::string(256, 'h') + ":1").has_value());
  EXPECT_TRUE(parse_redirect("MOVED 1 " + std::string(255, 'h') + ":1").has_value());
}

// A real cluster: what CLUSTER SLOTS, CLUSTER KEYSLOT, MOVED and ASK say agree with each
// other as read here.
TEST(RealCluster, MapKeySlotsMovedAndAsk) {
  test::RedisCluster cluster;
  ASSERT_TRUE(cluster.start()) << cluster.error();
  std::vector<std::string> ids;
  for (int i = 0; i < cluster.size(); ++i) ids.push_back(cluster.command(i, {"CLUSTER", "MYID"}));

  SlotMap map;
  for (int i = 0; i < cluster.size(); ++i) {
    test::RedisServer::Reply reply = cluster.reply(i, {"CLUSTER", "SLOTS"});
    ASSERT_TRUE(reply) << cluster.node(i).error();
    auto parsed_map = parse_cluster_slots(*reply, "127.0.0.1");
    ASSERT_TRUE(parsed_map.ok()) << parsed_map.error().message;
    map = parsed_map.value();
    EXPECT_TRUE(map.complete()) << "asked node " << i;
    ASSERT_EQ(map.masters().size(), 3u) << "asked node " << i;
    ASSERT_EQ(map.ranges.size(), 3u);
    for (int j = 0; j < cluster.size(); ++j) {
      // The fixture gave node j the j-th third of the slots.
      const SlotRange &r = map.ranges[static_cast<std::size_t>(j)];
      EXPECT_EQ(r.first, cluster.slots(j).first);
      EXPECT_EQ(r.last, cluster.slots(j).second);
      EXPECT_EQ(r.host, "127.0.0.1");
      EXPECT_EQ(r.port, cluster.ports()[static_cast<std::size_t>(j)]);
      EXPECT_EQ(r.node_id, ids[static_cast<std::size_t>(j)]);
    }
  }

  auto index_of = [&](uint16_t port) {
    for (int i = 0; i < cluster.size(); ++i) {
      if (cluster.ports()[static_cast<std::size_t>(i)] == port) return i;
    }
    return -1;
  };
  std::set<int> owners;
  for (const char *key : {"foo", "hello", "bar", "{reel:42}.likes", "a", "kronop:topic:7",
                          "{user1000}.followers", "zap"}) {
    const uint16_t slot = redis_hash_slot(key);
    EXPECT_EQ(cluster.command(0, {"CLUSTER", "KEYSLOT", key}), std::to_string(slot)) << key;
    const SlotRange *owner = map.owner(slot);
    ASSERT_NE(owner, nullptr) << key;
    const int at = index_of(owner->port);
    ASSERT_GE(at, 0);
    owners.insert(at);
    // A key, and a shard channel, sent to another master: MOVED to the owner.
    const int wrong = (at + 1) % cluster.size();
    for (const std::vector<std::string> &argv : {std::vector<std::string>{"SET", key, "v"},
                                                 std::vector<std::string>{"SPUBLISH", key, "m"}}) {
      test::RedisServer::Reply reply = cluster.reply(wrong, argv);
      ASSERT_TRUE(reply);
      ASSERT_EQ(reply->type, REDIS_REPLY_ERROR) << key;
      const auto redirect = parse_redirect({reply->str, reply->len});
      ASSERT_TRUE(redirect.has_value()) << reply->str;
      EXPECT_EQ(redirect->kind, Redirect::Kind::kMoved);
      EXPECT_EQ(redirect->slot, slot);
      EXPECT_EQ(redirect->host, "127.0.0.1");
      EXPECT_EQ(redirect->port, owner->port);
    }
    EXPECT_EQ(cluster.command(at, {"SET", key, "v"}), "OK");
    EXPECT_EQ(cluster.command(at, {"SPUBLISH", key, "m"}), "0");
  }
  EXPECT_EQ(owners.size(), 3u);

  // A slot being migrated: its owner answers ASK for a key it does not hold.
  const uint16_t slot = redis_hash_slot("migrating");
  const int from = index_of(map.owner(slot)->port);
  const int to = (from + 1) % cluster.size();
  EXPECT_EQ(cluster.command(to, {"CLUSTER", "SETSLOT", std::to_string(slot), "IMPORTING",
                                 ids[static_cast<std::size_t>(from)]}),
            "OK");
  EXPECT_EQ(cluster.command(from, {"CLUSTER", "SETSLOT", std::to_string(slot), "MIGRATING",
                                   ids[static_cast<std::size_t>(to)]}),
            "OK");
  test::RedisServer::Reply ask = cluster.reply(from, {"GET", "migrating"});
  ASSERT_TRUE(ask);
  ASSERT_EQ(ask->type, REDIS_REPLY_ERROR);
  const auto redirect = parse_redirect({ask->str, ask->len});
  ASSERT_TRUE(redirect.has_value()) << ask->str;
  EXPECT_EQ(redirect->kind, Redirect::Kind::kAsk);
  EXPECT_EQ(redirect->slot, slot);
  EXPECT_EQ(redirect->port, cluster.ports()[static_cast<std::size_t>(to)]);
}

// The fixture's restart of one master: it comes back with its nodes.conf, on its port, and
// serves the same slots.
TEST(RealCluster, MasterRestartsWithItsSlots) {
  test::RedisCluster cluster;
  ASSERT_TRUE(cluster.start()) << cluster.error();
  const std::string id = cluster.command(2, {"CLUSTER", "MYID"});
  cluster.stop(2, SIGKILL);
  ASSERT_TRUE(cluster.start(2)) << cluster.error();
  EXPECT_EQ(cluster.command(2, {"CLUSTER", "MYID"}), id);
  test::RedisServer::Reply reply = cluster.reply(0, {"CLUSTER", "SLOTS"});
  ASSERT_TRUE(reply);
  auto map = parse_cluster_slots(*reply, "127.0.0.1");
  ASSERT_TRUE(map.ok()) << map.error().message;
  EXPECT_TRUE(map.value().complete());
  ASSERT_NE(map.value().owner(kClusterSlots - 1), nullptr);
  EXPECT_EQ(map.value().owner(kClusterSlots - 1)->node_id, id);
  EXPECT_EQ(map.value().owner(kClusterSlots - 1)->port, cluster.ports()[2]);
}

// The other endpoint types, as a real Redis 7 sends them.
TEST(RealCluster, UnknownEndpointAndMissingHostname) {
  test::RedisCluster cluster;
  ASSERT_TRUE(cluster.start()) << cluster.error();
  const uint16_t slot = redis_hash_slot("foo");
  int wrong = 0;
  while (wrong < cluster.size() && cluster.slots(wrong).first <= slot &&
         slot <= cluster.slots(wrong).second) {
    ++wrong;
  }
  ASSERT_LT(wrong, cluster.size());

  // unknown-endpoint: nil in CLUSTER SLOTS, ":PORT" in MOVED.
  ASSERT_EQ(cluster.command(
                wrong, {"CONFIG", "SET", "cluster-preferred-endpoint-type", "unknown-endpoint"}),
            "OK");
  test::RedisServer::Reply reply = cluster.reply(wrong, {"CLUSTER", "SLOTS"});
  ASSERT_TRUE(reply);
  auto map = parse_cluster_slots(*reply, "seed.example");
  ASSERT_TRUE(map.ok()) << map.error().message;
  EXPECT_TRUE(map.value().complete());
  for (const SlotRange &r : map.value().ranges) EXPECT_EQ(r.host, "seed.example");
  reply = cluster.reply(wrong, {"SET", "foo", "v"});
  ASSERT_TRUE(reply);
  auto redirect = parse_redirect({reply->str, reply->len});
  ASSERT_TRUE(redirect.has_value()) << reply->str;
  EXPECT_EQ(redirect->host, "");
  EXPECT_EQ(redirect->port, map.value().owner(slot)->port);

  // hostname, none announced: "?" in CLUSTER SLOTS (the IP is in the metadata), "?:PORT" in
  // MOVED, which is no redirection to follow.
  ASSERT_EQ(
      cluster.command(wrong, {"CONFIG", "SET", "cluster-preferred-endpoint-type", "hostname"}),
      "OK");
  reply = cluster.reply(wrong, {"CLUSTER", "SLOTS"});
  ASSERT_TRUE(reply);
  map = parse_cluster_slots(*reply, "seed.example");
  ASSERT_TRUE(map.ok()) << map.error().message;
  EXPECT_TRUE(map.value().complete());
  for (const SlotRange &r : map.value().ranges) EXPECT_EQ(r.host, "127.0.0.1");
  reply = cluster.reply(wrong, {"SET", "foo", "v"});
  ASSERT_TRUE(reply);
  EXPECT_EQ(std::string(reply->str, reply->len).rfind("MOVED ", 0), 0u) << reply->str;
  EXPECT_FALSE(parse_redirect({reply->str, reply->len}).has_value()) << reply->str;
}

}  // namespace
}  // namespace kronop::daemon
