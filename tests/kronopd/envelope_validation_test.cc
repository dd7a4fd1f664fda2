// The daemon's validation of ring records: what passes, and each reason a record fails.
#include "envelope_validation.h"

#include <gtest/gtest.h>

#include "kronop/v1/envelope.pb.h"

namespace kronop::daemon {
namespace {

std::string envelope(const std::string &topic, const std::string &event, const std::string &json) {
  v1::Envelope e;
  e.set_topic(topic);
  e.set_event(event);
  e.set_producer_id(42);
  e.set_producer_seq(7);
  e.set_publish_time_ns(123456789);
  e.set_json(json);
  return e.SerializeAsString();
}

class ValidationTest : public ::testing::Test {
 protected:
  EnvelopeValidator validator;
  EnvelopeView view;
};

TEST_F(ValidationTest, AcceptsJsonEnvelopeAndPointsIntoTheRecord) {
  std::string rec = envelope("reel:123", "reel_update", R"({"views":10})");
  ASSERT_EQ(validator.validate(rec, view), Reject::kNone);
  EXPECT_EQ(view.topic, "reel:123");
  EXPECT_EQ(view.event, "reel_update");
  EXPECT_EQ(view.producer_id, 42u);
  EXPECT_EQ(view.producer_seq, 7u);
  EXPECT_EQ(view.publish_time_ns, 123456789u);
  EXPECT_EQ(view.body_kind, BodyKind::kJson);
  EXPECT_EQ(view.body, R"({"views":10})");
  EXPECT_GE(view.body.data(), rec.data());
  EXPECT_LE(view.body.data() + view.body.size(), rec.data() + rec.size());
}

// The ring reader's copies are followed by readable bytes, and a JSON body is then parsed in
// place: whatever those bytes hold, the body alone decides. (Under ASan, a read past them
// would fail here too.)
TEST_F(ValidationTest, JsonBodyParsedInPlaceIsJudgedByItsOwnBytesOnly) {
  for (const char *json : {R"({"views":10})", R"({"a":)", "{}", R"({"a":1})"}) {
    const std::string rec = envelope("reel:1", "e", json);
    for (const char *after : {"", "}", "1}", "\"}}}", " ", "\xff"}) {
      std::string buf = rec;
      while (buf.size() < rec.size() + 64) buf += after[0] == 0 ? std::string(1, '\0') : after;
      buf.resize(rec.size() + 64);
      EnvelopeView in_place;
      EXPECT_EQ(validator.validate(std::string_view(buf.data(), rec.size()), in_place, 64),
                validator.validate(rec, view))
          << json << " followed by " << after;
    }
  }
}

TEST_F(ValidationTest, AcceptsTypedBodies) {
  v1::Envelope e;
  e.set_topic("reel:9");
  e.set_event("reel_update");
  auto *u = e.mutable_reel_update();
  u->set_id("u1");
  u->set_reel_id(9);
  (*u->mutable_update_data())["views"] = "100";
  u->add_target_users("alice");
  u->set_priority(v1::PRIORITY_HIGH);
  const std::string rec = e.SerializeAsString();  // the view points into it
  ASSERT_EQ(validator.validate(rec, view), Reject::kNone);
  EXPECT_EQ(view.body_kind, BodyKind::kReelUpdate);
  v1::ReelUpdate back;
  ASSERT_TRUE(back.ParseFromArray(view.body.data(), static_cast<int>(view.body.size())));
  EXPECT_EQ(back.update_data().at("views"), "100");

  v1::Envelope n;
  n.set_topic("system");
  n.set_event("system_notice");
  n.mutable_system_notice()->set_message("maintenance at 02:00");
  EXPECT_EQ(validator.validate(n.SerializeAsString(), view), Reject::kNone);
  EXPECT_EQ(view.body_kind, BodyKind::kSystemNotice);
}

TEST_F(ValidationTest, TopicRules) {
  for (const char *ok : {"reel:1", "reel:abc-DEF_1.2", "user:42", "system"}) {
    EXPECT_TRUE(valid_topic(ok)) << ok;
  }
  for (const char *bad : {"", "reel:", "reel", "user:", "systemx", "room:1", "reel:a b", "reel:a/b",
                          "REEL:1", "reel:1\n"}) {
    EXPECT_FALSE(valid_topic(bad)) << bad;
  }
  EXPECT_FALSE(valid_topic("reel:" + std::string(129, 'a')));
  EXPECT_EQ(validator.validate(envelope("room:1", "x", "{}"), view), Reject::kBadTopic);
}

TEST_F(ValidationTest, EventRules) {
  EXPECT_TRUE(valid_event("reel_update"));
  EXPECT_TRUE(valid_event("a.b-c_1"));
  EXPECT_FALSE(valid_event(""));
  EXPECT_FALSE(valid_event("phx_reply"));  // reserved for the Phoenix protocol
  EXPECT_FALSE(valid_event("Upper"));
  EXPECT_FALSE(valid_event(std::string(65, 'a')));
  EXPECT_EQ(validator.validate(envelope("reel:1", "phx_join", "{}"), view), Reject::kBadEvent);
}

TEST_F(ValidationTest, JsonBodyMustBeOneObject) {
  EXPECT_EQ(validator.validate(envelope("reel:1", "e", "[1,2]"), view), Reject::kNotJsonObject);
  EXPECT_EQ(validator.validate(envelope("reel:1", "e", "42"), view), Reject::kNotJsonObject);
  EXPECT_EQ(validator.validate(envelope("reel:1", "e", "{\"a\":"), view), Reject::kBadJson);
  EXPECT_EQ(validator.validate(envelope("reel:1", "e", "{} {}"), view), Reject::kBadJson);
  EXPECT_EQ(validator.validate(envelope("reel:1", "e", "{\"a\":\"\xff\"}"), view),
            Reject::kBadJson);
  EXPECT_EQ(validator.validate(envelope("reel:1", "e", ""), view), Reject::kBadJson);
  // "seq" is the daemon's: at the top level it is refused, nested it is the producer's.
  EXPECT_EQ(validator.validate(envelope("reel:1", "e", R"({"a":1,"seq":4})"), view),
            Reject::kReservedKey);
  EXPECT_EQ(validator.validate(envelope("reel:1", "e", R"({"a":{"seq":4}})"), view), Reject::kNone);
}

TEST_F(ValidationTest, MissingBodyAndBadPriority) {
  v1::Envelope e;
  e.set_topic("reel:1");
  e.set_event("e");
  EXPECT_EQ(validator.validate(e.SerializeAsString(), view), Reject::kNoBody);
  e.set_json("{}");
  e.set_priority(static_cast<v1::Priority>(9));
  EXPECT_EQ(validator.validate(e.SerializeAsString(), view), Reject::kBadPriority);
}

TEST_F(ValidationTest, MalformedProtobuf) {
  std::string rec = envelope("reel:1", "e", "{}");
  EXPECT_EQ(validator.validate(rec.substr(0, rec.size() - 1), view), Reject::kMalformed);
  EXPECT_EQ(validator.validate(std::string("\xff\xff\xff\xff\xff\xff", 6), view),
            Reject::kMalformed);
  EXPECT_EQ(validator.validate(std::string("\x00\x00", 2), view), Reject::kMalformed);
  // topic (field 1) sent with the varint wire type
  EXPECT_EQ(validator.validate(std::string("\x08\x01", 2), view), Reject::kMalformed);
}

TEST_F(ValidationTest, TypedBodyThatDoesNotParse) {
  // field 11 (reel_update) holding bytes that are not a ReelUpdate
  std::string rec = envelope("reel:1", "e", "{}");
  rec.clear();
  v1::Envelope e;
  e.set_topic("reel:1");
  e.set_event("e");
  rec = e.SerializeAsString();
  rec += std::string("\x5a\x03\xff\xff\xff", 5);
  EXPECT_EQ(validator.validate(rec, view), Reject::kBadTypedBody);
}

}  // namespace
}  // namespace kronop::daemon
