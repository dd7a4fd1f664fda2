// The JSON payload codec (common/payload_codec.h): numbers vs strings, enum words, escaping,
// the body-kind table, and JSON -> typed -> JSON round trips.
#include "payload_codec.h"

#include <gtest/gtest.h>

#include <simdjson.h>
#include <cmath>
#include <limits>

#include "body_kind.h"
#include "kronop/v1/control.pb.h"
#include "kronop/v1/envelope.pb.h"
#include "kronop/v1/presence.pb.h"
#include "kronop/v1/reel.pb.h"

namespace kronop {
namespace {

// The text parses as JSON (simdjson is strict: bad escapes and raw control characters fail).
simdjson::dom::element parse(simdjson::dom::parser &p, const std::string &json) {
  simdjson::dom::element e;
  EXPECT_EQ(p.parse(json).get(e), simdjson::SUCCESS) << json;
  return e;
}

TEST(BodyKindTable, ReadsEveryTypedMemberOfTheOneof) {
  ASSERT_EQ(typed_bodies().size(), 5u);
  struct Want {
    BodyKind kind;
    const char *event;
    const google::protobuf::Descriptor *type;
  };
  const Want want[] = {
      {BodyKind::kReelUpdate, "reel_update", kronop::v1::ReelUpdate::descriptor()},
      {BodyKind::kInteraction, "interaction", kronop::v1::Interaction::descriptor()},
      {BodyKind::kPresence, "presence_update", kronop::v1::PresenceUpdate::descriptor()},
      {BodyKind::kUserActivity, "user_activity", kronop::v1::UserActivity::descriptor()},
      {BodyKind::kSystemNotice, "system_notice", kronop::v1::SystemNotice::descriptor()},
  };
  for (const Want &w : want) {
    const TypedBody *t = typed_body(w.kind);
    ASSERT_NE(t, nullptr) << w.event;
    EXPECT_EQ(t->event, w.event);
    EXPECT_EQ(t->prototype->GetDescriptor(), w.type);
    EXPECT_EQ(t->field->number(), static_cast<int>(w.kind));
    EXPECT_EQ(typed_body_of_event(w.event), t);
  }
  EXPECT_EQ(typed_body(BodyKind::kJson), nullptr);
  EXPECT_EQ(typed_body(BodyKind::kNone), nullptr);
  EXPECT_EQ(typed_body_of_event("viewers"), nullptr);
}

TEST(PayloadJson, CountsAreNumbersAndEnumsWords) {
  kronop::v1::Interaction in;
  in.set_id("i-1");
  in.set_reel_id(123);
  in.set_user_id("alice");
  in.set_kind(kronop::v1::Interaction::KIND_LIKE);
  in.set_like_count(1);
  in.set_timestamp(1764190000000);
  EXPECT_EQ(payload_to_json(in),
            R"({"id":"i-1","reel_id":123,"user_id":"alice","kind":"like","like_count":1,)"
            R"("timestamp":1764190000000})");
}

TEST(PayloadJson, EveryEnumIsItsLowerCaseWord) {
  kronop::v1::PresenceUpdate p;
  p.set_status(kronop::v1::PresenceUpdate::STATUS_ONLINE);
  EXPECT_EQ(payload_to_json(p), R"({"status":"online"})");
  kronop::v1::SystemNotice n;
  n.set_level(kronop::v1::SystemNotice::LEVEL_WARNING);
  EXPECT_EQ(payload_to_json(n), R"({"level":"warning"})");
  kronop::v1::ReelUpdate u;
  u.set_priority(kronop::v1::PRIORITY_HIGH);
  EXPECT_EQ(payload_to_json(u), R"({"priority":"high"})");
  // A number the enum has no name for (proto3 enums are open) prints as the number.
  u.set_priority(static_cast<kronop::v1::Priority>(9));
  EXPECT_EQ(payload_to_json(u), R"({"priority":9})");
}

TEST(OperatorJson, PrintsEveryFieldAndKeepsIdentifiersStrings) {
  kronop::v1::RingStats r;
  r.set_producer_id(0xFFFFFFFFFFFFFFFFull);  // above 2^53: a number would be rounded
  r.set_records_published(3);
  const std::string json = to_json(r);
  EXPECT_EQ(json, R"({"index":0,"producer_pid":0,"producer_id":"18446744073709551615",)"
                  R"("capacity_bytes":0,"used_bytes":0,"records_published":3,"refused_full":0,)"
                  R"("refused_too_large":0})");
  kronop::v1::Envelope e;
  e.set_producer_id(7);
  e.set_seq(5);
  EXPECT_NE(to_json(e).find(R"("producer_id":"7")"), std::string::npos);
  EXPECT_NE(to_json(e).find(R"("seq":5,)"), std::string::npos);
  EXPECT_NE(to_json(e).find(R"("priority":"normal")"), std::string::npos) << to_json(e);
}

TEST(OperatorJson, MapsSortedRepeatedAndNestedMessages) {
  kronop::v1::DaemonStats s;
  (*s.mutable_rejects_by_reason())["malformed"] = 2;
  (*s.mutable_rejects_by_reason())["bad_json"] = 1;
  s.mutable_clients()->set_connections(4);
  s.add_rings()->set_index(1);
  const std::string json = to_json(s);
  EXPECT_NE(json.find(R"("rejects_by_reason":{"bad_json":1,"malformed":2})"), std::string::npos)
      << json;
  EXPECT_NE(json.find(R"("rings":[{"index":1,)"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("connections":4,)"), std::string::npos) << json;
  EXPECT_EQ(json.find("\"presence\""), std::string::npos) << "an unset sub-message is left out";
  simdjson::dom::parser p;
  EXPECT_EQ(uint64_t(parse(p, json)["clients"]["connections"]), 4u);
}

TEST(OperatorJson, DoublesShortestAndNonFiniteAsStrings) {
  kronop::v1::Health h;
  h.set_max_ring_fill(0.25);
  EXPECT_NE(to_json(h).find(R"("max_ring_fill":0.25)"), std::string::npos);
  h.set_max_ring_fill(std::numeric_limits<double>::infinity());
  EXPECT_NE(to_json(h).find(R"("max_ring_fill":"Infinity")"), std::string::npos);
  h.set_max_ring_fill(std::nan(""));
  EXPECT_NE(to_json(h).find(R"("max_ring_fill":"NaN")"), std::string::npos);
}

TEST(JsonString, EscapesQuotesBackslashesAndControlsAndKeepsUtf8) {
  std::string out;
  append_json_string(out, std::string("a\"b\\c\n\t\x01\x1f\x7f é ✓ 😀"));
  EXPECT_EQ(out, "\"a\\\"b\\\\c\\n\\t\\u0001\\u001f\x7f é ✓ 😀\"");
  simdjson::dom::parser p;
  EXPECT_EQ(std::string_view(parse(p, out)), std::string_view("a\"b\\c\n\t\x01\x1f\x7f é ✓ 😀"));
  std::string nul;
  append_json_string(nul, std::string_view("x\0y", 3));
  EXPECT_EQ(nul, R"("x\u0000y")");
  std::string bad;
  append_json_string(bad, "ok\xff");
  EXPECT_EQ(bad, R"("ok\ufffd")") << "invalid UTF-8 still makes valid JSON";
  parse(p, bad);
}

TEST(JsonString, MessagesWithAwkwardStringsAreValidJson) {
  kronop::v1::UserActivity a;
  a.set_user_id("u\"1");
  (*a.mutable_data())["k\n"] = "v\\\x02";
  simdjson::dom::parser p;
  auto root = parse(p, payload_to_json(a));
  EXPECT_EQ(std::string_view(root["user_id"]), "u\"1");
  EXPECT_EQ(std::string_view(root["data"]["k\n"]), "v\\\x02");
}

TEST(JsonToMessage, AcceptsWordsNamesNumbersAndQuotedIntegers) {
  kronop::v1::Interaction in;
  ASSERT_TRUE(json_to_message(R"({"kind":"like","like_count":"12","reel_id":5})", &in));
  EXPECT_EQ(in.kind(), kronop::v1::Interaction::KIND_LIKE);
  EXPECT_EQ(in.like_count(), 12);
  EXPECT_EQ(in.reel_id(), 5);
  ASSERT_TRUE(json_to_message(R"({"kind":"KIND_COMMENT","likeCount":3})", &in));
  EXPECT_EQ(in.kind(), kronop::v1::Interaction::KIND_COMMENT);
  EXPECT_EQ(in.like_count(), 3) << "lowerCamel names, as protobuf's parser";
  ASSERT_TRUE(json_to_message(R"({"kind":3,"text":null})", &in));
  EXPECT_EQ(in.kind(), kronop::v1::Interaction::KIND_SHARE);
  kronop::v1::ReelUpdate u;
  ASSERT_TRUE(json_to_message(R"({"update_data":{"likes":3,"caption":"x"},"priority":"low"})", &u));
  EXPECT_EQ(u.update_data().at("likes"), "3") << "an integer in a string field is its text";
  EXPECT_EQ(u.priority(), kronop::v1::PRIORITY_LOW);
}

TEST(JsonToMessage, RefusesWhatDoesNotFit) {
  kronop::v1::Interaction in;
  std::string why;
  const char *bad[] = {
      R"({"kind":"KIND_NOPE"})",
      R"({"kind":"Like"})",
      R"({"views":5})",
      R"({"reel_id":4294967296})",
      R"({"reel_id":1.5})",
      R"({"text":true})",
      R"({"like_count":"12x"})",
      R"([1])",
      R"({"text":)",
      R"({"kind":7})",
  };
  for (const char *b : bad) {
    EXPECT_FALSE(json_to_message(b, &in, &why)) << b;
    EXPECT_FALSE(why.empty()) << b;
    why.clear();
  }
  kronop::v1::ReelUpdate u;
  EXPECT_FALSE(json_to_message(R"({"update_data":{"v":1.5}})", &u)) << "only integers as text";
  EXPECT_FALSE(json_to_message(R"({"update_data":{"v":true}})", &u));
}

TEST(JsonToTyped, MapsEventsOntoTheirMessages) {
  BodyKind kind = BodyKind::kNone;
  std::string bytes;
  ASSERT_TRUE(json_to_typed("interaction", R"({"kind":"share"})", &kind, &bytes));
  EXPECT_EQ(kind, BodyKind::kInteraction);
  kronop::v1::Interaction in;
  ASSERT_TRUE(in.ParseFromString(bytes));
  EXPECT_EQ(in.kind(), kronop::v1::Interaction::KIND_SHARE);
  EXPECT_FALSE(json_to_typed("viewers", R"({"count":3})", &kind, &bytes));
}

TEST(RoundTrip, JsonToTypedToJsonIsTheSameObject) {
  const struct {
    BodyKind kind;
    const char *json;
  } cases[] = {
      {BodyKind::kInteraction,
       R"({"id":"i-1","reel_id":7,"user_id":"bob","kind":"comment","text":"nice \"one\"\n",)"
       R"("like_count":4,"comment_count":2,"share_count":9007199254740993,"timestamp":1764190000000})"},
      {BodyKind::kReelUpdate,
       R"({"id":"u","reel_id":1,"update_data":{"a":"1","b":"é"},"target_users":["x","y"],)"
       R"("timestamp":1,"priority":"critical"})"},
      {BodyKind::kPresence, R"({"user_id":"u1","status":"away","current_reel":3,"activity":"w"})"},
      {BodyKind::kUserActivity, R"({"user_id":"u1","activity_type":"t","data":{"k":"v"}})"},
      {BodyKind::kSystemNotice, R"({"id":"n","level":"critical","message":"m","timestamp":2})"},
  };
  for (const auto &c : cases) {
    const TypedBody *t = typed_body(c.kind);
    BodyKind kind = BodyKind::kNone;
    std::string bytes;
    ASSERT_TRUE(json_to_typed(t->event, c.json, &kind, &bytes)) << c.json;
    EXPECT_EQ(kind, c.kind);
    auto m = parse_typed_body(kind, bytes);
    ASSERT_TRUE(m);
    EXPECT_EQ(payload_to_json(*m), c.json);
  }
  EXPECT_FALSE(parse_typed_body(BodyKind::kReelUpdate, "\xff\xff\xff"));
  EXPECT_FALSE(parse_typed_body(BodyKind::kJson, "{}"));
}

TEST(EnumWords, BothWaysForEveryValue) {
  const google::protobuf::EnumDescriptor *types[] = {
      kronop::v1::Priority_descriptor(), kronop::v1::Interaction::Kind_descriptor(),
      kronop::v1::PresenceUpdate::Status_descriptor(),
      kronop::v1::SystemNotice::Level_descriptor()};
  for (const auto *t : types) {
    for (int i = 0; i < t->value_count(); ++i) {
      const auto *v = t->value(i);
      const std::string w = enum_word(*v);
      EXPECT_EQ(w.find_first_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ"), std::string::npos) << w;
      EXPECT_EQ(enum_value_of(*t, w), v) << w;
      EXPECT_EQ(enum_value_of(*t, v->name()), v);
    }
  }
  EXPECT_EQ(enum_word(*kronop::v1::Priority_descriptor()->FindValueByName("PRIORITY_LOW")), "low");
  EXPECT_EQ(enum_value_of(*kronop::v1::Priority_descriptor(), "urgent"), nullptr);
}

TEST(InsertSeq, Cases) {
  EXPECT_EQ(*insert_seq("{}", 1), R"({"seq":1})");
  EXPECT_EQ(*insert_seq(R"({"a":1})", 7), R"({"seq":7,"a":1})");
  EXPECT_EQ(*insert_seq(" \t\r\n{}", 0), R"({"seq":0})");
  EXPECT_EQ(*insert_seq("  {\"a\":1}", 12), R"({"seq":12,"a":1})");
  EXPECT_EQ(*insert_seq("{ }", 3), R"({"seq":3 })");
  EXPECT_EQ(*insert_seq("{\n}\n", 3), "{\"seq\":3\n}\n");
  EXPECT_EQ(*insert_seq(R"({ "a" : {"b":{}} })", 5), R"({"seq":5, "a" : {"b":{}} })");
  EXPECT_EQ(*insert_seq(R"({"}":"{"})", 9), R"({"seq":9,"}":"{"})");
  EXPECT_EQ(*insert_seq("{}", std::numeric_limits<uint64_t>::max()),
            R"({"seq":18446744073709551615})");
  // The result is an object whose first member is seq, with the others after it.
  simdjson::dom::parser parser;
  for (const char *object : {"{}", R"({"a":[1,{"b":2}],"c":"d"})", "\n { \"x\" : null } "}) {
    const std::string with = insert_seq(object, 99).value_or("");
    simdjson::dom::object o;
    ASSERT_EQ(parser.parse(with).get_object().get(o), simdjson::SUCCESS) << with;
    auto it = o.begin();
    ASSERT_NE(it, o.end());
    EXPECT_EQ(it.key(), "seq");
    uint64_t seq = 0;
    EXPECT_EQ(it.value().get_uint64().get(seq), simdjson::SUCCESS);
    EXPECT_EQ(seq, 99u);
    simdjson::dom::parser other;
    simdjson::dom::object original;
    ASSERT_EQ(other.parse(std::string(object)).get_object().get(original), simdjson::SUCCESS);
    EXPECT_EQ(o.size(), original.size() + 1);
  }
}

// Not an object (a corrupt log row, say): nothing to put seq into, in every build.
TEST(InsertSeq, NotAnObjectIsRefused) {
  EXPECT_EQ(insert_seq("[1]", 1), std::nullopt);
  EXPECT_EQ(insert_seq("  ", 1), std::nullopt);
  EXPECT_EQ(client_payload(BodyKind::kJson, "[1]", 1), std::nullopt);
  EXPECT_EQ(client_payload(BodyKind::kReelUpdate, "\xff\xff", 1), std::nullopt);
  EXPECT_EQ(client_payload(BodyKind::kJson, R"({"a":1})", 4), R"({"seq":4,"a":1})");
}

}  // namespace
}  // namespace kronop
