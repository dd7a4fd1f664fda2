// Client pushes' parsers (client_pushes.h): what they accept, and refusals as domain errors
// that the Phoenix reply and the REST API each put in their own form.
#include "client_pushes.h"

#include <gtest/gtest.h>

#include "rest_api.h"

namespace kronop::daemon {
namespace {

TEST(InteractionPush, KindsTextAndLimits) {
  kronop::v1::Interaction in;
  ASSERT_TRUE(read_interaction("like", "{}", 10, &in).ok());
  EXPECT_EQ(in.kind(), kronop::v1::Interaction::KIND_LIKE);
  ASSERT_TRUE(read_interaction("share", "{}", 10, &in).ok());
  EXPECT_EQ(in.kind(), kronop::v1::Interaction::KIND_SHARE);
  ASSERT_TRUE(read_interaction("comment", R"({"text":"h\u00e9"})", 10, &in).ok());
  EXPECT_EQ(in.kind(), kronop::v1::Interaction::KIND_COMMENT);
  EXPECT_EQ(in.text(), "hé");
  // The limit is in bytes of UTF-8: "é" is two.
  EXPECT_TRUE(read_interaction("comment", R"({"text":"éééééé"})", 12, &in).ok());
  PushError too_long = read_interaction("comment", R"({"text":"ééééééé"})", 12, &in);
  EXPECT_EQ(too_long.fault, PushFault::kTooLong);
  EXPECT_EQ(too_long.reason, "comment too long");

  const std::pair<std::string_view, std::string_view> bad[] = {
      {"like", R"({"a":1})"},
      {"share", R"({"text":"x"})"},
      {"comment", "{}"},
      {"comment", R"({"text":""})"},
      {"comment", R"({"text":1})"},
      {"comment", "[]"},
      {"comment", "not json"},
      {"dislike", "{}"},
  };
  for (auto [event, payload] : bad) {
    PushError e = read_interaction(event, payload, 10, &in);
    EXPECT_EQ(e.fault, PushFault::kInvalid) << event << " " << payload;
    EXPECT_FALSE(e.reason.empty());
  }
}

TEST(StatusChangePush, DomainErrorsAndTheirTwoForms) {
  StatusChange c;
  ASSERT_TRUE(read_status_change(false, R"({"status":"away","current_reel":"7"})", &c).ok());
  EXPECT_EQ(c.status, PresenceHub::Status::kAway);
  EXPECT_EQ(c.current_reel, 7);
  PushError e = read_status_change(false, R"({"status":"busy"})", &c);
  EXPECT_EQ(e.fault, PushFault::kInvalid);
  // The phx_reply's form and the REST API's form of the same refusal.
  EXPECT_EQ(phoenix_reason(e), R"({"reason":"status must be one of online, away, offline"})");
  BodyError rest = parse_status_change("application/json", R"({"status":"busy"})", &c);
  EXPECT_EQ(rest.status, 400);
  EXPECT_EQ(rest.message, e.reason);
  EXPECT_EQ(parse_status_change("text/plain", "{}", &c).status, 415);
  EXPECT_EQ(http_status(PushFault::kTooLong), 413);
  EXPECT_EQ(http_status(PushFault::kRateLimited), 429);
  EXPECT_EQ(http_status(PushFault::kBusy), 503);
}

}  // namespace
}  // namespace kronop::daemon
