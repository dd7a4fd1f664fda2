// The REST and channel-push body parsers (rest_api.h): what is accepted, what it becomes,
// and the status and message of every refusal.
#include "rest_api.h"
#include "system_api.h"

#include <gtest/gtest.h>
#include <simdjson.h>

namespace kronop::daemon {
namespace {

constexpr uint64_t kNow = 1'700'000'000'123'000'000ULL;  // ns

struct ReelResult {
  BodyError error;
  kronop::v1::Envelope envelope;
};

ReelResult reel(std::string_view body, std::string_view type = "application/json",
                std::string_view topic = "reel:123") {
  ReelResult r;
  r.error = parse_reel_update(topic, type, body, kNow, &r.envelope);
  return r;
}

TEST(ReelUpdateBody, SeedBodyKeepsNumbersAndGainsIdReelAndTime) {
  auto r = reel(R"({"update_data":{"type":"view_count","value":1000}})");
  ASSERT_TRUE(r.error.ok()) << r.error.message;
  EXPECT_EQ(r.envelope.topic(), "reel:123");
  EXPECT_EQ(r.envelope.event(), "reel_update");
  EXPECT_EQ(r.envelope.publish_time_ns(), kNow);
  ASSERT_TRUE(r.envelope.has_json());
  simdjson::dom::parser p;
  simdjson::dom::element e = p.parse(r.envelope.json());
  EXPECT_EQ(int64_t(e["update_data"]["value"]), 1000);
  EXPECT_EQ(std::string_view(e["update_data"]["type"]), "view_count");
  EXPECT_EQ(int64_t(e["reel_id"]), 123);
  EXPECT_EQ(int64_t(e["timestamp"]), 1'700'000'000'123);
  EXPECT_EQ(std::string_view(e["id"]).size(), 16u);
}

TEST(ReelUpdateBody, OptionalMembersAndEscapingSurviveExactly) {
  auto r = reel(R"({"update_data":{"caption":"a \"b\" \\ é"},"priority":"low",)"
                R"("target_users":["u1","u2"],"id":"x\"y","timestamp":5})");
  ASSERT_TRUE(r.error.ok()) << r.error.message;
  EXPECT_EQ(r.envelope.priority(), kronop::v1::PRIORITY_LOW);
  simdjson::dom::parser p;
  simdjson::dom::element e = p.parse(r.envelope.json());
  EXPECT_EQ(std::string_view(e["update_data"]["caption"]), "a \"b\" \\ é");
  EXPECT_EQ(std::string_view(e["id"]), "x\"y");
  EXPECT_EQ(int64_t(e["timestamp"]), 5);
  EXPECT_EQ(simdjson::to_string(e["target_users"]), R"(["u1","u2"])");
}

TEST(ReelUpdateBody, NonNumericReelIdIsAString) {
  auto r = reel(R"({"update_data":{}})", "application/json", "reel:abc");
  ASSERT_TRUE(r.error.ok());
  simdjson::dom::parser p;
  EXPECT_EQ(std::string_view(p.parse(r.envelope.json())["reel_id"]), "abc");
}

TEST(ReelUpdateBody, RefusalsSayWhy) {
  const std::pair<std::string_view, std::string_view> cases[] = {
      {"", "not valid JSON"},
      {"{", "not valid JSON"},
      {"[]", "must be a JSON object"},
      {"{}", "update_data is required"},
      {R"({"update_data":[1]})", "update_data must be a JSON object"},
      {R"({"update_data":{},"priority":"urgent"})", "priority must be one of"},
      {R"({"update_data":{},"priority":1})", "priority must be one of"},
      {R"({"update_data":{},"target_users":"u1"})", "target_users must be an array"},
      {R"({"update_data":{},"target_users":["a b"]})", "invalid user id"},
      {R"({"update_data":{},"target_users":[1]})", "invalid user id"},
      {R"({"update_data":{},"id":""})", "id must be a string"},
      {R"({"update_data":{},"timestamp":-1})", "timestamp must be"},
      {R"({"update_data":{},"timestamp":1.5})", "timestamp must be"},
      {R"({"update_data":{},"extra":true})", "unknown member"},
  };
  for (auto [body, message] : cases) {
    auto r = reel(body);
    EXPECT_EQ(r.error.status, 400) << body;
    EXPECT_NE(r.error.message.find(message), std::string::npos) << body << ": " << r.error.message;
  }
  EXPECT_EQ(reel("{}", "text/plain").error.status, 415);
  EXPECT_EQ(reel("a=b", "application/x-www-form-urlencoded").error.status, 415);
  // Parameters and case do not matter; no Content-Type means JSON.
  EXPECT_TRUE(reel(R"({"update_data":{}})", "Application/JSON; charset=utf-8").error.ok());
  EXPECT_TRUE(reel(R"({"update_data":{}})", "").error.ok());
}

TEST(ReelUpdateBody, ProtobufIsPublishedTyped) {
  kronop::v1::ReelUpdate u;
  (*u.mutable_update_data())["views"] = "7";
  u.set_priority(kronop::v1::PRIORITY_HIGH);
  auto r = reel(u.SerializeAsString(), "application/x-protobuf");
  ASSERT_TRUE(r.error.ok()) << r.error.message;
  ASSERT_TRUE(r.envelope.has_reel_update());
  EXPECT_EQ(r.envelope.reel_update().reel_id(), 123);
  EXPECT_EQ(r.envelope.reel_update().timestamp(), 1'700'000'000'123);
  EXPECT_FALSE(r.envelope.reel_update().id().empty());
  EXPECT_EQ(r.envelope.priority(), kronop::v1::PRIORITY_HIGH);

  u.set_reel_id(9);
  EXPECT_EQ(reel(u.SerializeAsString(), "application/x-protobuf").error.status, 400);
  EXPECT_EQ(reel("\xff\xff\xff", "application/x-protobuf").error.status, 400);
  kronop::v1::ReelUpdate empty;
  EXPECT_EQ(reel(empty.SerializeAsString(), "application/protobuf").error.message,
            "update_data is required");
}

TEST(StatusChangeBody, JsonAndProtobuf) {
  StatusChange c;
  ASSERT_TRUE(parse_status_change("application/json",
                                  R"({"status":"away","current_reel":"12","activity":"x"})", &c)
                  .ok());
  EXPECT_EQ(c.status, PresenceHub::Status::kAway);
  EXPECT_EQ(c.current_reel, 12);
  EXPECT_EQ(c.activity, "x");
  ASSERT_TRUE(parse_status_change("", R"({"status":"offline","current_reel":null})", &c).ok());
  EXPECT_EQ(c.status, PresenceHub::Status::kOffline);
  EXPECT_EQ(c.current_reel, 0);

  const std::string_view bad[] = {
      R"({})",
      R"({"status":"busy"})",
      R"({"status":"online","current_reel":-1})",
      R"({"status":"online","current_reel":4294967296})",
      R"({"status":"online","current_reel":"12a"})",
      R"({"status":"online","current_reel":true})",
      R"({"status":"online","activity":7})",
      R"({"status":"online","mood":"ok"})",
  };
  for (auto body : bad) EXPECT_EQ(parse_status_change("", body, &c).status, 400) << body;
  const std::string long_activity =
      R"({"status":"online","activity":")" + std::string(129, 'a') + "\"}";
  EXPECT_EQ(parse_status_change("", long_activity, &c).status, 400);

  kronop::v1::PresenceUpdate p;
  p.set_status(kronop::v1::PresenceUpdate::STATUS_ONLINE);
  p.set_current_reel(3);
  ASSERT_TRUE(parse_status_change("application/x-protobuf", p.SerializeAsString(), &c).ok());
  EXPECT_EQ(c.status, PresenceHub::Status::kOnline);
  EXPECT_EQ(c.current_reel, 3);
  p.set_status(kronop::v1::PresenceUpdate::STATUS_UNSPECIFIED);
  EXPECT_EQ(parse_status_change("application/x-protobuf", p.SerializeAsString(), &c).status, 400);
}

TEST(UserPresenceJson, Rfc3339LastSeenAndStatusNames) {
  PresenceHub::UserPresence p;
  p.user_id = "u1";
  p.status = PresenceHub::Status::kAway;
  p.current_reel = 4;
  p.activity = "say \"hi\"";
  p.last_seen_ms = 1'700'000'000'123;
  p.sockets = 2;
  simdjson::dom::parser parser;
  const std::string json = user_presence_json(p);
  simdjson::dom::element e = parser.parse(json);
  EXPECT_EQ(std::string_view(e["status"]), "away");
  EXPECT_EQ(std::string_view(e["activity"]), "say \"hi\"");
  EXPECT_EQ(std::string_view(e["last_seen"]), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(int64_t(e["current_reel"]), 4);
  EXPECT_EQ(int64_t(e["connections"]), 2);
}

TEST(Health, DegradedWithEachProblemNamed) {
  kronop::v1::DaemonStats s;
  s.set_pid(7);
  s.set_data_dir_free_bytes(uint64_t{10} << 30);
  auto *r = s.add_rings();
  r->set_index(3);
  r->set_capacity_bytes(1000);
  r->set_used_bytes(500);
  kronop::v1::Health h = assess_health(s);
  EXPECT_TRUE(h.healthy());
  EXPECT_EQ(h.status(), "ok");
  EXPECT_DOUBLE_EQ(h.max_ring_fill(), 0.5);

  r->set_used_bytes(950);
  s.mutable_log()->set_batches_behind(500);
  s.set_data_dir_free_bytes(uint64_t{100} << 20);
  h = assess_health(s);
  EXPECT_FALSE(h.healthy());
  EXPECT_EQ(h.status(), "degraded");
  ASSERT_EQ(h.problems_size(), 3);
  EXPECT_EQ(h.problems(0), "the durable log is 500 batches behind ingest");
  EXPECT_EQ(h.problems(1), "ring 3 is 95 % full");
  EXPECT_EQ(h.problems(2), "the data directory has 100 MiB free");
}

}  // namespace
}  // namespace kronop::daemon
