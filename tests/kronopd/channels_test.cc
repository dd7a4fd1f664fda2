// The per-socket router of Phoenix channels: the replies and subscription changes each
// client message causes (the frames compared are those a Phoenix 1.7 server sends).
#include <gtest/gtest.h>

#include "channels.h"

namespace kronop::daemon {
namespace {

class RouterTest : public ::testing::Test {
 protected:
  explicit RouterTest(std::size_t max_channels = 3) : router_(max_channels) {}

  // Routes one client text message; the outcome is in out_.
  void send(std::string_view text) {
    phoenix::ClientMessage m;
    ASSERT_EQ(parser_.parse_text(text, m), phoenix::ParseError::kNone) << text;
    router_.route(m, who_, out_);
  }
  std::vector<std::string> topics() const {
    std::vector<std::string> t;
    for (const auto &ch : router_.channels()) t.push_back(ch.topic);
    return t;
  }

  phoenix::MessageParser parser_;
  ChannelRouter router_;
  RouteOutcome out_;
  Identity who_{"u1", true};  // user u1 with admin rights, unless a test says otherwise
};

using Replies = std::vector<std::string>;

TEST(TopicPolicy, WhoMayJoinWhat) {
  const Identity anonymous;
  const Identity alice{"alice", false};
  const Identity admin{"ops", true};
  EXPECT_EQ(topic_policy("reel:123", anonymous), JoinPolicy::kAllow);
  EXPECT_EQ(topic_policy("reel:123", alice), JoinPolicy::kAllow);
  EXPECT_EQ(topic_policy("user:alice", alice), JoinPolicy::kAllow);
  EXPECT_EQ(topic_policy("user:alice", anonymous), JoinPolicy::kUnauthorized);
  EXPECT_EQ(topic_policy("user:alice", admin), JoinPolicy::kUnauthorized)
      << "not even an admin reads another user's topic";
  EXPECT_EQ(topic_policy("user:alicex", alice), JoinPolicy::kUnauthorized);
  EXPECT_EQ(topic_policy("system", admin), JoinPolicy::kAllow);
  EXPECT_EQ(topic_policy("system", alice), JoinPolicy::kUnauthorized);
  EXPECT_EQ(topic_policy("system", anonymous), JoinPolicy::kUnauthorized);
  EXPECT_EQ(topic_policy("nope:1", admin), JoinPolicy::kUnmatched);
  EXPECT_EQ(topic_policy("reel:", admin), JoinPolicy::kUnmatched);
  EXPECT_EQ(topic_policy("system:1", admin), JoinPolicy::kUnmatched);
  EXPECT_EQ(topic_policy("", admin), JoinPolicy::kUnmatched);
}

TEST_F(RouterTest, HeartbeatIsAnsweredWithANullJoinRef) {
  send(R"([null,"7","phoenix","heartbeat",{}])");
  EXPECT_EQ(out_.replies,
            Replies{R"([null,"7","phoenix","phx_reply",{"response":{},"status":"ok"}])"});
  EXPECT_TRUE(out_.subscribe.empty());
  EXPECT_TRUE(router_.channels().empty());
}

TEST_F(RouterTest, OtherEventsOnPhoenixAreUnmatched) {
  send(R"([null,"8","phoenix","hello",{}])");
  EXPECT_EQ(out_.replies,
            Replies{R"([null,"8","phoenix","phx_reply",)"
                    R"({"response":{"reason":"unmatched topic"},"status":"error"}])"});
}

TEST_F(RouterTest, JoinIsAcceptedAndSubscribesTheServerReplies) {
  send(R"(["3","3","reel:123","phx_join",{}])");
  EXPECT_TRUE(out_.joined);
  EXPECT_TRUE(out_.replies.empty());
  EXPECT_EQ(out_.subscribe, "reel:123");
  EXPECT_TRUE(out_.unsubscribe.empty());
  EXPECT_EQ(topics(), std::vector<std::string>{"reel:123"});
}

TEST_F(RouterTest, TheServerDropsAChannelWhoseStreamChangedAndNamesItsJoinRef) {
  send(R"(["3","3","reel:1","phx_join",{}])");
  send(R"(["4","4","reel:2","phx_join",{}])");
  EXPECT_EQ(router_.drop("reel:1"), std::optional<std::string>(R"("3")"));
  EXPECT_EQ(topics(), std::vector<std::string>{"reel:2"});
  EXPECT_EQ(router_.drop("reel:1"), std::nullopt);
  // Joined again (the client's rejoin): a first join, with a subscription.
  send(R"(["5","5","reel:1","phx_join",{}])");
  EXPECT_TRUE(out_.joined);
  EXPECT_EQ(out_.subscribe, "reel:1");
}

TEST_F(RouterTest, UnmatchedTopicJoinIsRefusedWithANullJoinRef) {
  send(R"(["3","3","nope:1","phx_join",{}])");
  EXPECT_EQ(out_.replies,
            Replies{R"([null,"3","nope:1","phx_reply",)"
                    R"({"response":{"reason":"unmatched topic"},"status":"error"}])"});
  EXPECT_TRUE(out_.subscribe.empty());
  EXPECT_TRUE(router_.channels().empty());
}

TEST_F(RouterTest, AnotherUsersTopicIsUnauthorized) {
  send(R"(["4","4","user:1","phx_join",{}])");
  EXPECT_EQ(out_.replies, Replies{R"(["4","4","user:1","phx_reply",)"
                                  R"({"response":{"reason":"unauthorized"},"status":"error"}])"});
  EXPECT_TRUE(out_.subscribe.empty());
  EXPECT_EQ(out_.unauthorized, 1);
  send(R"(["5","5","user:u1","phx_join",{}])");
  EXPECT_EQ(out_.subscribe, "user:u1");
  EXPECT_EQ(out_.unauthorized, 0);
}

TEST_F(RouterTest, SystemNeedsAnAdmin) {
  who_ = Identity{"u2", false};
  send(R"(["6","6","system","phx_join",{}])");
  EXPECT_EQ(out_.replies, Replies{R"(["6","6","system","phx_reply",)"
                                  R"({"response":{"reason":"unauthorized"},"status":"error"}])"});
  EXPECT_TRUE(out_.subscribe.empty());
}

TEST_F(RouterTest, SecondJoinReplacesTheFirstWithPhxCloseAndNoNewSubscription) {
  send(R"(["3","3","reel:1","phx_join",{}])");
  send(R"(["9","9","reel:1","phx_join",{}])");
  EXPECT_TRUE(out_.joined);
  EXPECT_EQ(out_.replies, (Replies{R"(["3","3","reel:1","phx_close",{}])"}));
  EXPECT_TRUE(out_.subscribe.empty());
  ASSERT_EQ(router_.channels().size(), 1u);
  EXPECT_EQ(router_.channels()[0].join_ref_json, R"("9")");

  // A leave of the replaced join is ignored; the current join's leave counts.
  send(R"(["3","10","reel:1","phx_leave",{}])");
  EXPECT_TRUE(out_.replies.empty());
  EXPECT_TRUE(out_.unsubscribe.empty());
  send(R"(["9","11","reel:1","phx_leave",{}])");
  EXPECT_EQ(out_.replies,
            (Replies{R"(["9","11","reel:1","phx_reply",{"response":{},"status":"ok"}])",
                     R"(["9","9","reel:1","phx_close",{}])"}));
  EXPECT_EQ(out_.unsubscribe, "reel:1");
  EXPECT_TRUE(router_.channels().empty());
}

TEST_F(RouterTest, LeaveOfATopicNotJoinedIsOk) {
  send(R"(["5","6","reel:2","phx_leave",{}])");
  EXPECT_EQ(out_.replies,
            Replies{R"(["5","6","reel:2","phx_reply",{"response":{},"status":"ok"}])"});
  EXPECT_TRUE(out_.unsubscribe.empty());
}

TEST_F(RouterTest, ChannelLimitRefusesNewTopicsButNotRejoins) {
  send(R"(["1","1","reel:1","phx_join",{}])");
  send(R"(["2","2","reel:2","phx_join",{}])");
  send(R"(["3","3","system","phx_join",{}])");
  send(R"(["4","4","reel:4","phx_join",{}])");
  EXPECT_EQ(out_.replies,
            Replies{R"(["4","4","reel:4","phx_reply",)"
                    R"({"response":{"reason":"too many channels joined"},"status":"error"}])"});
  EXPECT_EQ(out_.over_limit, 1);
  EXPECT_FALSE(out_.joined);
  EXPECT_TRUE(out_.subscribe.empty());
  EXPECT_EQ(topics(), (std::vector<std::string>{"reel:1", "reel:2", "system"}));
  // A topic already joined may be joined again at the limit.
  send(R"(["5","5","reel:2","phx_join",{}])");
  EXPECT_TRUE(out_.joined);
  EXPECT_EQ(out_.replies, (Replies{R"(["2","2","reel:2","phx_close",{}])"}));
  // After a leave there is room again.
  send(R"(["1","6","reel:1","phx_leave",{}])");
  send(R"(["7","7","reel:4","phx_join",{}])");
  EXPECT_EQ(out_.subscribe, "reel:4");
}

TEST_F(RouterTest, PushesAreUnmatchedOffChannelAndHandedToTheServerOnIt) {
  send(R"(["1","2","reel:1","like",{}])");
  EXPECT_EQ(out_.replies,
            Replies{R"([null,"2","reel:1","phx_reply",)"
                    R"({"response":{"reason":"unmatched topic"},"status":"error"}])"});
  EXPECT_FALSE(out_.push);
  send(R"(["1","3","reel:1","phx_join",{}])");
  EXPECT_TRUE(out_.joined);
  send(R"(["1","4","reel:1","like",{}])");
  EXPECT_TRUE(out_.replies.empty());
  EXPECT_TRUE(out_.push);
  EXPECT_FALSE(out_.joined);
}

TEST_F(RouterTest, RefsAreEchoedAsTheClientWroteThem) {
  send(R"([null,"a\"b\\c\u00e9","phoenix","heartbeat",{}])");
  ASSERT_EQ(out_.replies.size(), 1u);
  // The same JSON string (simdjson writes \u00e9 as the UTF-8 it stands for).
  EXPECT_EQ(out_.replies[0].rfind(R"([null,"a\"b\\cé","phoenix","phx_reply",)", 0), 0u)
      << out_.replies[0];
}

TEST_F(RouterTest, BinaryPushesRouteLikeTextOnes) {
  const std::string frame = std::string("\x00\x01\x01\x06\x08", 5) + "12reel:1phx_join" + "payload";
  phoenix::ClientMessage m;
  ASSERT_EQ(parser_.parse_binary(frame, m), phoenix::ParseError::kNone);
  router_.route(m, who_, out_);
  EXPECT_TRUE(out_.joined);
  EXPECT_TRUE(out_.replies.empty());
  EXPECT_EQ(out_.subscribe, "reel:1");
}

TEST_F(RouterTest, PlainEndpointChannelIsListedForCleanup) {
  router_.add("reel:9");
  EXPECT_EQ(topics(), std::vector<std::string>{"reel:9"});
  router_.clear();
  EXPECT_TRUE(router_.channels().empty());
}

}  // namespace
}  // namespace kronop::daemon
