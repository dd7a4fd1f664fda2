// kronopd's log lines: key=value values quoted and escaped, client-controlled text cut short,
// and the throttle that keeps a misbehaving client from flooding the journal.
#include <gtest/gtest.h>

#include "log.h"

namespace kronop::log {
namespace {

TEST(LogQuote, PlainWordsStayAsTheyAre) {
  EXPECT_EQ(q("reel:42"), "reel:42");
  EXPECT_EQ(q("127.0.0.1:5000"), "127.0.0.1:5000");
}

TEST(LogQuote, AnythingElseIsQuotedAndEscaped) {
  EXPECT_EQ(q(""), "\"\"");
  EXPECT_EQ(q("two words"), "\"two words\"");
  EXPECT_EQ(q("a=b"), "\"a=b\"");
  EXPECT_EQ(q("say \"hi\"\\"), "\"say \\\"hi\\\"\\\\\"");
  EXPECT_EQ(q("line\nnext\x01"), "\"line\\nnext\\x01\"");
  EXPECT_EQ(q("caf\xc3\xa9 ok"), "\"caf\xc3\xa9 ok\"");
}

TEST(LogQuote, LongValuesAreCut) {
  const std::string v = q(std::string(10'000, 'x'));
  EXPECT_EQ(v.size(), 256u + 5u);  // the quotes and "..."
  EXPECT_EQ(v.substr(v.size() - 4), "...\"");
}

TEST(LogLevel, ParsesTheFlagsNames) {
  EXPECT_EQ(parse_level("warning"), Level::kWarning);
  EXPECT_EQ(parse_level("debug"), Level::kDebug);
  EXPECT_FALSE(parse_level("verbose").has_value());
}

TEST(LogThrottle, BurstThenOnePerIntervalAndTheCountLeftOut) {
  Throttle t(3, 1000);
  uint64_t suppressed = 99;
  const uint64_t t0 = 50'000;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(t.allow(t0, &suppressed));
    EXPECT_EQ(suppressed, 0u);
  }
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(t.allow(t0 + 10, &suppressed));
  EXPECT_FALSE(t.allow(t0 + 999, &suppressed));
  ASSERT_TRUE(t.allow(t0 + 1000, &suppressed));
  EXPECT_EQ(suppressed, 101u);
  EXPECT_FALSE(t.allow(t0 + 1001, &suppressed));
  // A quiet spell refills the burst, no more.
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(t.allow(t0 + 60'000, &suppressed));
  EXPECT_FALSE(t.allow(t0 + 60'000, &suppressed));
}

}  // namespace
}  // namespace kronop::log
