// RedisLink against a real redis-server (tests/support/redis_server.h), and against peers
// that are not Redis or do not answer.
#include "redis_link.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "support/loop_runner.h"
#include "support/redis_server.h"

namespace kronop::daemon {
namespace {

// Links on a loop of the test's own (support/loop_runner.h).
class LinkTest : public ::testing::Test {
 protected:
  ~LinkTest() override {
    for (auto &l : links_) {
      bool closed = false;
      l->close([&] { closed = true; });
      runner_.run_until([&] { return closed; });
    }
    links_.clear();
  }

  RedisLink &link(RedisLinkOptions options) {
    links_.push_back(std::make_unique<RedisLink>(runner_.loop(), std::move(options)));
    RedisLink &l = *links_.back();
    l.on_state([this](bool up, const std::string &reason) {
      states_.push_back(up ? "up" : "down: " + reason);
    });
    return l;
  }

  static RedisLinkOptions options_for(const std::string &url) {
    RedisLinkOptions o;
    auto e = parse_redis_url(url);
    EXPECT_TRUE(e.ok());
    if (e.ok()) o.endpoint = e.value();
    return o;
  }

  bool run_until(const std::function<bool()> &cond, int ms = 10000) {
    return runner_.run_until(cond, ms);
  }

  std::string last_state() const { return states_.empty() ? "" : states_.back(); }

  test::LoopRunner runner_;
  std::vector<std::unique_ptr<RedisLink>> links_;
  std::vector<std::string> states_;
};

// A TCP peer on loopback that is not Redis: it accepts one connection and sends `bytes`
// (then keeps it open until the test ends), or sends nothing at all.
class FakePeer {
 public:
  explicit FakePeer(std::string bytes, std::size_t repeat = 1) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    ::bind(fd_, reinterpret_cast<sockaddr *>(&addr), sizeof(addr));
    ::listen(fd_, 4);
    ::getsockname(fd_, reinterpret_cast<sockaddr *>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this, bytes = std::move(bytes), repeat] {
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      for (std::size_t i = 0; i < repeat && !stop_; ++i) {
        if (!bytes.empty() && ::send(c, bytes.data(), bytes.size(), MSG_NOSIGNAL) < 0) break;
      }
      while (!stop_) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      ::close(c);
    });
  }
  ~FakePeer() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

TEST_F(LinkTest, PipelinedCommandsGetTheirRepliesInOrder) {
  test::RedisServer redis;
  ASSERT_TRUE(redis.start()) << redis.error();
  RedisLink &l = link(options_for(redis.url()));
  l.start();
  ASSERT_TRUE(run_until([&] { return l.up(); })) << last_state();
  constexpr int kCommands = 2000;
  std::vector<long long> got;
  for (int i = 0; i < kCommands; ++i) {
    l.send({"INCR", "counter"}, [&](const redisReply *r, const Error *e) {
      ASSERT_EQ(e, nullptr);
      long long v = 0;
      ASSERT_TRUE(reply_integer(*r, &v));
      got.push_back(v);
    });
  }
  ASSERT_TRUE(run_until([&] { return got.size() == kCommands; }));
  for (int i = 0; i < kCommands; ++i) EXPECT_EQ(got[i], i + 1);
  // An error reply is a reply.
  std::string error;
  l.send({"NOSUCHCOMMAND"},
         [&](const redisReply *r, const Error *) { error = describe_reply(*r); });
  ASSERT_TRUE(run_until([&] { return !error.empty(); }));
  EXPECT_EQ(error.rfind("ERR", 0), 0u) << error;
  EXPECT_TRUE(l.up());
  EXPECT_EQ(redis.command({"GET", "counter"}), std::to_string(kCommands));
}

TEST_F(LinkTest, PasswordAndDatabase) {
  test::RedisServer redis({"pw-123", false});
  ASSERT_TRUE(redis.start()) << redis.error();
  {
    RedisLinkOptions o =
        options_for("redis://:pw-123@127.0.0.1:" + std::to_string(redis.port()) + "/2");
    RedisLink &l = link(o);
    l.start();
    ASSERT_TRUE(run_until([&] { return l.up(); })) << last_state();
    bool done = false;
    l.send({"SET", "k", "v"}, [&](const redisReply *, const Error *) { done = true; });
    ASSERT_TRUE(run_until([&] { return done; }));
    EXPECT_EQ(redis.command({"SELECT", "2"}), "OK");
  }
  // A wrong password, and none: the link says why, and does not come up.
  for (const std::string &url : {"redis://:wrong@127.0.0.1:" + std::to_string(redis.port()),
                                 "redis://127.0.0.1:" + std::to_string(redis.port())}) {
    SCOPED_TRACE(url);
    states_.clear();
    RedisLinkOptions o = options_for(url);
    o.reconnect = false;
    RedisLink &l = link(o);
    l.start();
    ASSERT_TRUE(run_until([&] { return !states_.empty(); }));
    EXPECT_FALSE(l.up());
    const std::string s = last_state();
    EXPECT_TRUE(s.find("WRONGPASS") != std::string::npos || s.find("NOAUTH") != std::string::npos)
        << s;
    EXPECT_EQ(s.find("wrong"), std::string::npos) << "the password is not repeated: " << s;
  }
}

TEST_F(LinkTest, NothingListeningIsRefusedAndCommandsFailAtOnce) {
  test::RedisServer redis;  // only for a port nobody listens on
  ASSERT_TRUE(redis.start());
  const int port = redis.port();
  redis.stop(SIGKILL);
  RedisLinkOptions o = options_for("redis://127.0.0.1:" + std::to_string(port));
  RedisLink &l = link(o);
  l.start();
  ASSERT_TRUE(run_until([&] { return !states_.empty(); }));
  EXPECT_NE(last_state().find("connection refused"), std::string::npos) << last_state();
  const Error *seen = nullptr;
  Error copy;
  l.send({"PING"}, [&](const redisReply *r, const Error *e) {
    EXPECT_EQ(r, nullptr);
    if (e != nullptr) copy = *e;
    seen = &copy;
  });
  ASSERT_NE(seen, nullptr) << "fails before send returns";
  EXPECT_NE(copy.message.find("down"), std::string::npos) << copy.message;
  // It keeps trying, with backoff: once Redis is there it comes up on its own.
  ASSERT_TRUE(run_until([&] { return l.counters().failed_connects >= 2; }));
}

TEST_F(LinkTest, ComesBackAfterRedisRestarts) {
  test::RedisServer redis;
  ASSERT_TRUE(redis.start()) << redis.error();
  RedisLink &l = link(options_for(redis.url()));
  l.start();
  ASSERT_TRUE(run_until([&] { return l.up(); })) << last_state();
  redis.stop(SIGKILL);
  ASSERT_TRUE(run_until([&] { return !l.up(); }));
  EXPECT_NE(last_state().find("down"), std::string::npos);
  ASSERT_TRUE(redis.start()) << redis.error();
  ASSERT_TRUE(run_until([&] { return l.up(); })) << last_state();
  EXPECT_EQ(l.counters().connects, 2u);
  EXPECT_EQ(l.counters().disconnects, 1u);
}

TEST_F(LinkTest, PeersThatAreNotRedisOrNeverAnswer) {
  struct Case {
    std::string bytes;
    std::size_t repeat;
    std::string expect;
  };
  for (const Case &c : std::vector<Case>{
           {"HTTP/1.1 400 Bad Request\r\n\r\n", 1, "not RESP"},
           {"+HELLO\r\n", 1, "not a Redis server"},
           {"", 1, "no connection"},  // silent: the handshake's deadline
           {"$1000000000\r\n" + std::string(1 << 16, 'x'), 64, "longer than 1 MiB"},
           {"*2000000000\r\n", 1, "length"},
           {"*-7\r\n", 1, "length"},  // hiredis's own check, or the reader's bound
       }) {
    SCOPED_TRACE(c.expect);
    states_.clear();
    FakePeer peer(c.bytes, c.repeat);
    RedisLinkOptions o = options_for(peer.url());
    o.reconnect = false;
    o.connect_timeout_ms = 500;
    o.max_reply_bytes = 1 << 20;
    RedisLink &l = link(o);
    l.start();
    ASSERT_TRUE(run_until([&] { return !states_.empty(); }));
    EXPECT_NE(last_state().find(c.expect), std::string::npos) << last_state();
    EXPECT_FALSE(l.up());
  }
}

TEST_F(LinkTest, SubscriberReceivesClassicAndShardMessagesAndNoticesASilentPeer) {
  test::RedisServer redis;
  ASSERT_TRUE(redis.start()) << redis.error();
  RedisLinkOptions o = options_for(redis.url());
  o.kind = RedisLinkOptions::Kind::kSubscriber;
  o.ping_interval_ms = 100;
  o.command_timeout_ms = 1000;
  RedisLink &l = link(o);
  std::vector<std::string> pushes;
  l.on_push([&](const redisReply &reply) {
    const Push p = classify_push(reply);
    std::string kind;
    switch (p.kind) {
      case PushKind::kMessage:
        kind = "message";
        break;
      case PushKind::kShardMessage:
        kind = "smessage";
        break;
      case PushKind::kSubscribed:
        kind = "subscribed";
        break;
      case PushKind::kUnsubscribed:
        kind = "unsubscribed";
        break;
      default:
        kind = "other";
        break;
    }
    pushes.push_back(kind + " " + std::string(p.channel) + " " + std::string(p.payload));
  });
  l.start();
  ASSERT_TRUE(run_until([&] { return l.up(); })) << last_state();
  l.send({"SUBSCRIBE", "{reel:1}"}, nullptr);
  l.send({"SSUBSCRIBE", "{reel:2}"}, nullptr);
  ASSERT_TRUE(run_until([&] { return pushes.size() == 2; }));
  EXPECT_EQ(pushes[0], "subscribed {reel:1} ");
  EXPECT_EQ(pushes[1], "subscribed {reel:2} ");
  EXPECT_EQ(redis.command({"PUBLISH", "{reel:1}", "hello"}), "1");
  EXPECT_EQ(redis.command({"SPUBLISH", "{reel:2}", "sharded"}), "1");
  ASSERT_TRUE(run_until([&] { return pushes.size() == 4; }));
  EXPECT_EQ(pushes[2], "message {reel:1} hello");
  EXPECT_EQ(pushes[3], "smessage {reel:2} sharded");
  // PINGs go on while subscribed (their answers are not pushes).
  const uint64_t replies = l.counters().replies;
  ASSERT_TRUE(run_until([&] { return l.counters().replies >= replies + 3; }));
  EXPECT_EQ(pushes.size(), 4u);
  // A peer that stops answering (SIGSTOP) is noticed by the PING's deadline.
  ::kill(redis.pid(), SIGSTOP);
  ASSERT_TRUE(run_until([&] { return !l.up(); }, 15000));
  ::kill(redis.pid(), SIGCONT);
  EXPECT_NE(last_state().find("PING"), std::string::npos) << last_state();
}

}  // namespace
}  // namespace kronop::daemon
