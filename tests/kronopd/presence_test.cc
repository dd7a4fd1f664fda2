// Phoenix Presence: every payload is parsed with simdjson and checked against the shape
// phoenix.js's Presence reads (USER -> {"metas":[{"phx_ref","online_at"}]}); batching (joins
// and leaves between flushes, cancellation, state as of the last flush, its cache); empty
// topics erased; user status transitions and the user table's bounds; and track, untrack
// and flush from several threads, replayed diff by diff against the final state.
#include "presence.h"

#include <gtest/gtest.h>
#include <simdjson.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "phoenix.h"

namespace kronop::daemon {
namespace {

using Status = PresenceHub::Status;

// "u<n>", the users of the generated tests. Appended, not `"u" + std::to_string(n)`: GCC 12
// at -O3 (CMake's Release) reports that insertion at the front as an overlapping memcpy, a
// false -Wrestrict (GCC bug 105329).
std::string user_name(uint64_t n) {
  std::string name = "u";
  name += std::to_string(n);
  return name;
}

// One user's metas as (phx_ref, online_at), in the order of the payload.
using Metas = std::vector<std::pair<std::string, uint64_t>>;
// A presences object: USER -> metas.
using PresenceMap = std::map<std::string, Metas>;

// Reads {"USER":{"metas":[{"phx_ref":"REF","online_at":MS},...]},...} strictly: no other
// keys, no empty metas, no duplicate users.
::testing::AssertionResult read_presences(simdjson::dom::element e, PresenceMap &out) {
  simdjson::dom::object users;
  if (e.get_object().get(users)) {
    return ::testing::AssertionFailure() << "not an object: " << simdjson::to_string(e);
  }
  for (const auto field : users) {
    const std::string user(field.key);
    if (out.count(user)) return ::testing::AssertionFailure() << "duplicate key " << user;
    simdjson::dom::object entry;
    simdjson::dom::array metas;
    if (field.value.get_object().get(entry) || entry.size() != 1 ||
        entry["metas"].get_array().get(metas)) {
      return ::testing::AssertionFailure()
             << "not {\"metas\":[...]}: " << simdjson::to_string(field.value);
    }
    if (metas.size() == 0) return ::testing::AssertionFailure() << "no metas for " << user;
    Metas &list = out[user];
    for (const simdjson::dom::element meta : metas) {
      simdjson::dom::object fields;
      std::string_view ref;
      uint64_t online_at = 0;
      if (meta.get_object().get(fields) || fields.size() != 2 ||
          fields["phx_ref"].get_string().get(ref) ||
          fields["online_at"].get_uint64().get(online_at)) {
        return ::testing::AssertionFailure() << "bad meta: " << simdjson::to_string(meta);
      }
      list.emplace_back(std::string(ref), online_at);
    }
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult parse_state(const std::string &text, PresenceMap &out) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(text).get(doc)) return ::testing::AssertionFailure() << "not JSON: " << text;
  return read_presences(doc, out);
}

::testing::AssertionResult parse_diff(const std::string &text, PresenceMap &joins,
                                      PresenceMap &leaves) {
  simdjson::dom::parser parser;
  simdjson::dom::object diff;
  if (parser.parse(text).get_object().get(diff) || diff.size() != 2) {
    return ::testing::AssertionFailure() << "not an object of two members: " << text;
  }
  simdjson::dom::element j;
  simdjson::dom::element l;
  if (diff["joins"].get(j) || diff["leaves"].get(l)) {
    return ::testing::AssertionFailure() << "no joins or leaves: " << text;
  }
  auto r = read_presences(j, joins);
  if (!r) return r;
  return read_presences(l, leaves);
}

PresenceMap state_of(PresenceHub &hub, const std::string &topic) {
  PresenceMap m;
  EXPECT_TRUE(parse_state(*hub.state(topic), m));
  return m;
}

struct ParsedDiff {
  PresenceMap joins;
  PresenceMap leaves;
};
ParsedDiff diff_of(const PresenceHub::Diff &d) {
  ParsedDiff p;
  EXPECT_TRUE(parse_diff(d.payload, p.joins, p.leaves)) << d.payload;
  return p;
}

constexpr uint64_t kT0 = 1'700'000'000'000;

TEST(PresenceHub, TwoUsersJoinInOneDiffAndStateFollowsTheFlush) {
  PresenceHub hub;
  const std::string a = hub.track("reel:1", "alice", kT0);
  const std::string b = hub.track("reel:1", "bob", kT0 + 5);
  EXPECT_EQ(*hub.state("reel:1"), "{}") << "state is as of the last flush";
  EXPECT_EQ(hub.metas(), 2u);
  EXPECT_EQ(hub.topics(), 1u);
  EXPECT_EQ(hub.users_of("reel:1"), 2u);

  std::vector<PresenceHub::Diff> out;
  ASSERT_EQ(hub.flush(out), 1u);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].topic, "reel:1");
  const ParsedDiff d = diff_of(out[0]);
  EXPECT_EQ(d.joins, (PresenceMap{{"alice", {{a, kT0}}}, {"bob", {{b, kT0 + 5}}}}));
  EXPECT_TRUE(d.leaves.empty());
  EXPECT_EQ(hub.diffs(), 1u);

  EXPECT_EQ(state_of(hub, "reel:1"), d.joins);
  EXPECT_EQ(*hub.state("reel:2"), "{}");

  out.clear();
  EXPECT_EQ(hub.flush(out), 0u) << "nothing changed since";
  EXPECT_TRUE(out.empty());
}

TEST(PresenceHub, OneUserWithTwoSocketsIsOneKeyWithTwoMetas) {
  PresenceHub hub;
  const std::string r1 = hub.track("reel:1", "alice", kT0);
  const std::string r2 = hub.track("reel:1", "alice", kT0 + 1);
  EXPECT_NE(r1, r2);
  EXPECT_EQ(hub.users_of("reel:1"), 1u);
  EXPECT_EQ(hub.metas_of("reel:1"), 2u);
  std::vector<PresenceHub::Diff> out;
  ASSERT_EQ(hub.flush(out), 1u);
  const PresenceMap expected{{"alice", {{r1, kT0}, {r2, kT0 + 1}}}};
  EXPECT_EQ(diff_of(out[0]).joins, expected);
  EXPECT_EQ(state_of(hub, "reel:1"), expected);

  // One socket leaving leaves the key with the other meta.
  hub.untrack("reel:1", "alice", r1);
  EXPECT_EQ(hub.users_of("reel:1"), 1u);
  EXPECT_EQ(hub.metas_of("reel:1"), 1u);
  out.clear();
  ASSERT_EQ(hub.flush(out), 1u);
  const ParsedDiff d = diff_of(out[0]);
  EXPECT_TRUE(d.joins.empty());
  EXPECT_EQ(d.leaves, (PresenceMap{{"alice", {{r1, kT0}}}}));
  EXPECT_EQ(state_of(hub, "reel:1"), (PresenceMap{{"alice", {{r2, kT0 + 1}}}}));
}

TEST(PresenceHub, LeaveAfterAFlushCarriesItsMeta) {
  PresenceHub hub;
  const std::string a = hub.track("reel:1", "alice", kT0);
  const std::string b = hub.track("reel:1", "bob", kT0 + 1);
  std::vector<PresenceHub::Diff> out;
  ASSERT_EQ(hub.flush(out), 1u);

  hub.untrack("reel:1", "alice", a);
  hub.untrack("reel:1", "alice", a);  // twice: counted once
  EXPECT_EQ(hub.metas(), 1u);
  EXPECT_EQ(hub.metas_of("reel:1"), 1u);
  EXPECT_EQ(hub.users_of("reel:1"), 1u);
  EXPECT_EQ(state_of(hub, "reel:1").size(), 2u) << "alice is in the state until the flush";

  out.clear();
  ASSERT_EQ(hub.flush(out), 1u);
  const ParsedDiff d = diff_of(out[0]);
  EXPECT_TRUE(d.joins.empty());
  EXPECT_EQ(d.leaves, (PresenceMap{{"alice", {{a, kT0}}}}));
  EXPECT_EQ(state_of(hub, "reel:1"), (PresenceMap{{"bob", {{b, kT0 + 1}}}}));
  EXPECT_EQ(hub.metas(), 1u);
}

TEST(PresenceHub, JoinAndLeaveWithinOneIntervalCancelOut) {
  PresenceHub hub;
  const std::string r = hub.track("reel:1", "alice", kT0);
  hub.untrack("reel:1", "alice", r);
  EXPECT_EQ(hub.metas(), 0u);
  EXPECT_EQ(hub.topics(), 0u);
  std::vector<PresenceHub::Diff> out;
  EXPECT_EQ(hub.flush(out), 0u);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(hub.diffs(), 0u);
  EXPECT_EQ(hub.topic_entries(), 0u);

  // The same on a topic with a flushed presence: no diff, and the cached state stays.
  const std::string b = hub.track("reel:1", "bob", kT0);
  ASSERT_EQ(hub.flush(out), 1u);
  const auto before = hub.state("reel:1");
  const std::string c = hub.track("reel:1", "carol", kT0 + 1);
  const std::string b2 = hub.track("reel:1", "bob", kT0 + 2);
  hub.untrack("reel:1", "carol", c);
  hub.untrack("reel:1", "bob", b2);
  out.clear();
  EXPECT_EQ(hub.flush(out), 0u);
  EXPECT_EQ(hub.state("reel:1"), before);
  EXPECT_EQ(state_of(hub, "reel:1"), (PresenceMap{{"bob", {{b, kT0}}}}));
  EXPECT_EQ(hub.users_of("reel:1"), 1u);
}

TEST(PresenceHub, JoinsAndLeavesInOneDiff) {
  PresenceHub hub;
  const std::string a = hub.track("reel:1", "alice", kT0);
  std::vector<PresenceHub::Diff> out;
  ASSERT_EQ(hub.flush(out), 1u);
  hub.untrack("reel:1", "alice", a);
  const std::string a2 = hub.track("reel:1", "alice", kT0 + 9);  // reconnected
  out.clear();
  ASSERT_EQ(hub.flush(out), 1u);
  const ParsedDiff d = diff_of(out[0]);
  EXPECT_EQ(d.joins, (PresenceMap{{"alice", {{a2, kT0 + 9}}}}));
  EXPECT_EQ(d.leaves, (PresenceMap{{"alice", {{a, kT0}}}}));
  EXPECT_EQ(state_of(hub, "reel:1"), (PresenceMap{{"alice", {{a2, kT0 + 9}}}}));
}

TEST(PresenceHub, EmptyTopicIsErased) {
  PresenceHub hub;
  const std::string r = hub.track("reel:1", "alice", kT0);
  std::vector<PresenceHub::Diff> out;
  ASSERT_EQ(hub.flush(out), 1u);
  EXPECT_EQ(hub.topic_entries(), 1u);
  hub.untrack("reel:1", "alice", r);
  EXPECT_EQ(hub.topics(), 0u) << "no live presence";
  EXPECT_EQ(hub.topic_entries(), 1u) << "kept until the flush sends the leave";
  out.clear();
  ASSERT_EQ(hub.flush(out), 1u);
  EXPECT_EQ(diff_of(out[0]).leaves.size(), 1u);
  EXPECT_EQ(hub.topics(), 0u);
  EXPECT_EQ(hub.topic_entries(), 0u);
  EXPECT_EQ(*hub.state("reel:1"), "{}");
  EXPECT_EQ(hub.metas_of("reel:1"), 0u);
  EXPECT_EQ(hub.users_of("reel:1"), 0u);
}

// What kronopctl presence reel shows: the flushed state, user by user, as state() has it.
TEST(PresenceHub, PresentIsTheFlushedStateByUser) {
  PresenceHub hub;
  EXPECT_TRUE(hub.present("reel:1").empty());
  const std::string b = hub.track("reel:1", "bob", kT0);
  hub.track("reel:1", "alice", kT0);
  hub.track("reel:1", "alice", kT0 + 1);
  EXPECT_TRUE(hub.present("reel:1").empty()) << "joins show from the next flush";
  std::vector<PresenceHub::Diff> out;
  ASSERT_EQ(hub.flush(out), 1u);
  auto present = hub.present("reel:1");
  ASSERT_EQ(present.size(), 2u);
  EXPECT_EQ(present[0].user_id, "alice");
  EXPECT_EQ(present[0].metas, 2u);
  EXPECT_EQ(present[1].user_id, "bob");
  EXPECT_EQ(present[1].metas, 1u);
  hub.untrack("reel:1", "bob", b);
  hub.track("reel:1", "carol", kT0 + 2);
  EXPECT_EQ(hub.present("reel:1").size(), 2u) << "bob until the flush, carol after it";
  out.clear();
  ASSERT_EQ(hub.flush(out), 1u);
  present = hub.present("reel:1");
  ASSERT_EQ(present.size(), 2u);
  EXPECT_EQ(present[0].user_id, "alice");
  EXPECT_EQ(present[1].user_id, "carol");
  EXPECT_TRUE(hub.present("reel:2").empty());
}

TEST(PresenceHub, StateIsCachedUntilAFlushChangesTheTopic) {
  PresenceHub hub;
  hub.track("reel:1", "alice", kT0);
  hub.track("reel:2", "zed", kT0);
  std::vector<PresenceHub::Diff> out;
  ASSERT_EQ(hub.flush(out), 2u);
  const auto s1 = hub.state("reel:1");
  const auto s2 = hub.state("reel:1");
  EXPECT_EQ(s1, s2) << "the same object, not a new encoding";

  // Pending changes do not touch it, nor does a flush that changes only another topic.
  const std::string b = hub.track("reel:1", "bob", kT0 + 1);
  hub.track("reel:2", "yan", kT0 + 1);
  EXPECT_EQ(hub.state("reel:1"), s1);
  const auto other = hub.state("reel:2");
  out.clear();
  hub.untrack("reel:1", "bob", b);
  ASSERT_EQ(hub.flush(out), 1u);
  EXPECT_EQ(out[0].topic, "reel:2");
  EXPECT_EQ(hub.state("reel:1"), s1);
  EXPECT_NE(hub.state("reel:2"), other);

  // A flush that changes it does.
  hub.track("reel:1", "bob", kT0 + 2);
  out.clear();
  ASSERT_EQ(hub.flush(out), 1u);
  const auto s3 = hub.state("reel:1");
  EXPECT_NE(s3, s1);
  EXPECT_EQ(hub.state("reel:1"), s3);
  EXPECT_EQ(state_of(hub, "reel:1").size(), 2u);
  EXPECT_EQ(state_of(hub, "reel:1").count("bob"), 1u);

  // Topics with no presences share one "{}".
  EXPECT_EQ(hub.state("reel:8"), hub.state("reel:9"));
}

TEST(PresenceHub, UnknownRefsAreIgnored) {
  PresenceHub hub;
  const std::string r = hub.track("reel:1", "alice", kT0);
  std::vector<PresenceHub::Diff> out;
  ASSERT_EQ(hub.flush(out), 1u);
  std::string upper = r;
  std::transform(upper.begin(), upper.end(), upper.begin(), [](char c) {
    return static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
  });
  std::string leading_zero = r;
  leading_zero.insert(9, "0");
  for (const std::string &bad : {std::string(), std::string("F"), std::string("nope"), r + "0",
                                 r.substr(0, r.size() - 1) + "~", upper, leading_zero}) {
    if (bad == r) continue;
    hub.untrack("reel:1", "alice", bad);
  }
  hub.untrack("reel:1", "bob", r);    // another user's key
  hub.untrack("reel:2", "alice", r);  // another topic
  EXPECT_EQ(hub.metas(), 1u);
  out.clear();
  EXPECT_EQ(hub.flush(out), 0u);
  EXPECT_EQ(hub.topic_entries(), 1u);
}

TEST(PresenceHub, PhxRefsAreUniqueAndJsonSafe) {
  PresenceHub one;
  PresenceHub two;
  std::set<std::string> refs;
  for (int i = 0; i < 5000; ++i) {
    for (PresenceHub *hub : {&one, &two}) {
      const std::string r = hub->track("reel:" + std::to_string(i % 7), user_name(i % 13), kT0);
      ASSERT_TRUE(phoenix::json_safe(r)) << r;
      ASSERT_FALSE(r.empty());
      EXPECT_EQ(r[0], 'F');
      EXPECT_TRUE(refs.insert(r).second) << "duplicate " << r;
    }
  }
  EXPECT_EQ(refs.size(), 10000u);
}

TEST(PresenceHub, SeveralTopicsFlushToOneDiffEach) {
  PresenceHub hub;
  for (int t = 0; t < 5; ++t) {
    for (int u = 0; u < 3; ++u) hub.track("reel:" + std::to_string(t), user_name(u), kT0);
  }
  EXPECT_EQ(hub.topics(), 5u);
  EXPECT_EQ(hub.metas(), 15u);
  std::vector<PresenceHub::Diff> out;
  ASSERT_EQ(hub.flush(out), 5u);
  std::set<std::string> topics;
  for (const auto &d : out) {
    topics.insert(d.topic);
    EXPECT_EQ(diff_of(d).joins.size(), 3u);
  }
  EXPECT_EQ(topics.size(), 5u);
  EXPECT_EQ(hub.diffs(), 5u);
}

// ---------------------------------------------------------------------------------------
// User status

TEST(PresenceHubUsers, ConnectAndDisconnect) {
  PresenceHub hub;
  EXPECT_FALSE(hub.user("alice", kT0).has_value());
  hub.connected("alice", kT0);
  auto p = hub.user("alice", kT0 + 10);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->user_id, "alice");
  EXPECT_EQ(p->status, Status::kOnline);
  EXPECT_EQ(p->sockets, 1u);
  EXPECT_EQ(p->last_seen_ms, kT0 + 10) << "seen now while connected";
  EXPECT_EQ(hub.users_online(), 1u);

  hub.connected("alice", kT0 + 20);
  const auto set = hub.set_status("alice", Status::kAway, 42, "watching", kT0 + 30);
  EXPECT_EQ(set.status, Status::kAway);
  EXPECT_EQ(set.current_reel, 42);
  EXPECT_EQ(set.activity, "watching");
  EXPECT_EQ(set.sockets, 2u);
  EXPECT_EQ(hub.users_online(), 1u) << "one user, two sockets";

  hub.disconnected("alice", kT0 + 40);
  p = hub.user("alice", kT0 + 50);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->status, Status::kAway) << "one socket left";
  EXPECT_EQ(p->current_reel, 42);
  EXPECT_EQ(p->sockets, 1u);

  hub.disconnected("alice", kT0 + 60);
  p = hub.user("alice", kT0 + 1000);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->status, Status::kOffline);
  EXPECT_EQ(p->current_reel, 0);
  EXPECT_EQ(p->activity, "");
  EXPECT_EQ(p->sockets, 0u);
  EXPECT_EQ(p->last_seen_ms, kT0 + 60);
  EXPECT_EQ(hub.users_online(), 0u);

  // Closes with no socket open, and of unknown users, change nothing.
  hub.disconnected("alice", kT0 + 2000);
  hub.disconnected("nobody", kT0 + 2000);
  EXPECT_EQ(hub.user("alice", kT0 + 3000)->last_seen_ms, kT0 + 60);
  EXPECT_FALSE(hub.user("nobody", kT0).has_value());
  EXPECT_EQ(hub.users_online(), 0u);

  // Reconnecting: online again.
  hub.connected("alice", kT0 + 4000);
  EXPECT_EQ(hub.user("alice", kT0 + 4000)->status, Status::kOnline);
}

TEST(PresenceHubUsers, AwayIsKeptOnConnect) {
  PresenceHub hub;
  const auto set = hub.set_status("bob", Status::kAway, 0, "", kT0);
  EXPECT_EQ(set.sockets, 0u);
  EXPECT_EQ(set.last_seen_ms, kT0);
  hub.connected("bob", kT0 + 1);
  const auto p = hub.user("bob", kT0 + 2);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->status, Status::kAway);
  EXPECT_EQ(p->sockets, 1u);
  EXPECT_EQ(hub.users_online(), 1u);
}

TEST(PresenceHubUsers, OfflineWhileConnectedIsAllowed) {
  PresenceHub hub;
  hub.connected("carol", kT0);
  const auto set = hub.set_status("carol", Status::kOffline, 3, "hidden", kT0 + 5);
  EXPECT_EQ(set.status, Status::kOffline);
  EXPECT_EQ(set.sockets, 1u);
  EXPECT_EQ(set.last_seen_ms, kT0 + 5);
  EXPECT_EQ(hub.users_online(), 1u) << "counts sockets, not the status shown";
  hub.connected("carol", kT0 + 6);  // not the first socket: the choice stands
  EXPECT_EQ(hub.user("carol", kT0 + 7)->status, Status::kOffline);
}

TEST(PresenceHubUsers, StatusNames) {
  for (const Status s : {Status::kOnline, Status::kAway, Status::kOffline}) {
    Status parsed = s == Status::kOnline ? Status::kAway : Status::kOnline;
    ASSERT_TRUE(PresenceHub::parse_status(PresenceHub::status_name(s), &parsed));
    EXPECT_EQ(parsed, s);
  }
  EXPECT_STREQ(PresenceHub::status_name(Status::kOnline), "online");
  EXPECT_STREQ(PresenceHub::status_name(Status::kAway), "away");
  EXPECT_STREQ(PresenceHub::status_name(Status::kOffline), "offline");
  Status out = Status::kAway;
  for (const char *bad : {"", "Online", "busy", "online "}) {
    EXPECT_FALSE(PresenceHub::parse_status(bad, &out)) << bad;
  }
  EXPECT_EQ(out, Status::kAway);
}

TEST(PresenceHubUsers, IdleUsersAreForgottenAfterTheTtl) {
  PresenceHub::Options options;
  options.user_ttl_ms = 1000;
  PresenceHub hub(options);
  hub.set_status("old", Status::kAway, 0, "", kT0);
  hub.connected("online", kT0);
  hub.connected("left", kT0);
  hub.disconnected("left", kT0 + 500);
  // Eviction is lazy: reading does not evict.
  EXPECT_TRUE(hub.user("old", kT0 + 5000).has_value());
  hub.connected("someone", kT0 + 1001);
  EXPECT_FALSE(hub.user("old", kT0 + 1001).has_value());
  EXPECT_TRUE(hub.user("left", kT0 + 1001).has_value()) << "seen 501 ms ago";
  hub.set_status("someone", Status::kOnline, 0, "", kT0 + 1501);
  EXPECT_FALSE(hub.user("left", kT0 + 1501).has_value());
  EXPECT_TRUE(hub.user("online", kT0 + 1501).has_value()) << "has a socket";
  EXPECT_EQ(hub.user_entries(), 2u);
}

TEST(PresenceHubUsers, TableIsCappedOfflineLongestFirst) {
  PresenceHub::Options options;
  options.max_users = 3;
  PresenceHub hub(options);
  hub.set_status("a", Status::kOffline, 0, "", kT0 + 1);
  hub.set_status("b", Status::kOffline, 0, "", kT0 + 2);
  hub.connected("c", kT0 + 3);
  hub.set_status("a", Status::kAway, 0, "", kT0 + 4);  // a seen again: b is now the oldest
  hub.set_status("d", Status::kAway, 0, "", kT0 + 5);
  EXPECT_EQ(hub.user_entries(), 3u);
  EXPECT_FALSE(hub.user("b", kT0 + 5).has_value());
  EXPECT_TRUE(hub.user("a", kT0 + 5).has_value());
  hub.connected("e", kT0 + 6);
  EXPECT_FALSE(hub.user("a", kT0 + 6).has_value());
  hub.connected("f", kT0 + 7);
  EXPECT_FALSE(hub.user("d", kT0 + 7).has_value());
  // Only users with sockets are left: they are never evicted, the table goes over.
  hub.connected("g", kT0 + 8);
  EXPECT_EQ(hub.user_entries(), 4u);
  for (const char *u : {"c", "e", "f", "g"}) EXPECT_TRUE(hub.user(u, kT0 + 8).has_value()) << u;
  EXPECT_EQ(hub.users_online(), 4u);
}

// ---------------------------------------------------------------------------------------
// Threads

// Four threads track and untrack while another flushes; the diffs, replayed in order on an
// empty map the way phoenix.js's syncDiff would, must end at the final state, which must
// hold exactly the metas the threads did not untrack.
TEST(PresenceHub, ConcurrentTrackUntrackFlushStaysConsistent) {
  PresenceHub hub;
  constexpr int kThreads = 4;
  constexpr int kOps = 3000;
  constexpr int kTopics = 3;
  struct Live {
    std::string topic;
    std::string user;
    std::string ref;
  };
  std::vector<std::vector<Live>> live(kThreads);
  std::atomic<bool> done{false};
  std::vector<PresenceHub::Diff> diffs;
  std::thread flusher([&] {
    while (!done.load()) {
      hub.flush(diffs);
      (void)hub.state("reel:0");
      std::this_thread::yield();
    }
  });
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&hub, &live, t] {
      std::mt19937 rng(static_cast<uint32_t>(t + 1));
      std::vector<Live> &mine = live[static_cast<std::size_t>(t)];
      for (int i = 0; i < kOps; ++i) {
        if (mine.empty() || rng() % 3 != 0) {
          Live l{"reel:" + std::to_string(rng() % kTopics),
                 user_name(t) + "-" + std::to_string(rng() % 5), ""};
          l.ref = hub.track(l.topic, l.user, kT0 + static_cast<uint64_t>(i));
          mine.push_back(std::move(l));
        } else {
          const std::size_t k = rng() % mine.size();
          hub.untrack(mine[k].topic, mine[k].user, mine[k].ref);
          mine[k] = std::move(mine.back());
          mine.pop_back();
        }
        if (i % 64 == 0) {
          (void)hub.state("reel:" + std::to_string(rng() % kTopics));
          (void)hub.metas_of("reel:1");
          (void)hub.metas();
        }
      }
    });
  }
  for (auto &w : workers) w.join();
  done.store(true);
  flusher.join();
  hub.flush(diffs);

  // What the threads left tracked: topic -> user -> refs.
  std::map<std::string, std::map<std::string, std::set<std::string>>> expected;
  std::size_t total = 0;
  for (const auto &mine : live) {
    for (const Live &l : mine) expected[l.topic][l.user].insert(l.ref);
    total += mine.size();
  }
  EXPECT_EQ(hub.metas(), total);
  EXPECT_EQ(hub.topics(), expected.size());
  EXPECT_EQ(hub.diffs(), diffs.size());

  // Replay: each ref joins once, and leaves at most once after it joined.
  std::map<std::string, std::map<std::string, std::set<std::string>>> replayed;
  for (const auto &d : diffs) {
    const ParsedDiff p = diff_of(d);
    EXPECT_FALSE(p.joins.empty() && p.leaves.empty()) << "an empty diff";
    for (const auto &[user, metas] : p.leaves) {
      for (const auto &[ref, at] : metas) {
        EXPECT_EQ(replayed[d.topic][user].erase(ref), 1u) << "leave of an unknown ref " << ref;
      }
      if (replayed[d.topic][user].empty()) replayed[d.topic].erase(user);
    }
    for (const auto &[user, metas] : p.joins) {
      for (const auto &[ref, at] : metas) {
        EXPECT_TRUE(replayed[d.topic][user].insert(ref).second) << "joined twice: " << ref;
      }
    }
    if (replayed[d.topic].empty()) replayed.erase(d.topic);
  }
  EXPECT_EQ(replayed, expected);

  for (int t = 0; t < kTopics; ++t) {
    const std::string topic = "reel:" + std::to_string(t);
    std::map<std::string, std::set<std::string>> from_state;
    for (const auto &[user, metas] : state_of(hub, topic)) {
      for (const auto &[ref, at] : metas) from_state[user].insert(ref);
    }
    const auto it = expected.find(topic);
    const auto want = it == expected.end() ? decltype(from_state){} : it->second;
    EXPECT_EQ(from_state, want) << topic;
    EXPECT_EQ(hub.users_of(topic), want.size()) << topic;
    std::size_t metas = 0;
    for (const auto &[user, refs] : want) metas += refs.size();
    EXPECT_EQ(hub.metas_of(topic), metas) << topic;
  }
  EXPECT_EQ(hub.topic_entries(), expected.size());
}

TEST(PresenceHubUsers, RestoredUsersAreOfflineOrAwayAndObservedChangesAreReported) {
  PresenceHub hub;
  std::vector<PresenceHub::UserPresence> seen;
  hub.set_observer([&](const PresenceHub::UserPresence &p) { seen.push_back(p); });
  PresenceHub::UserPresence was;
  was.user_id = "ann";
  was.status = PresenceHub::Status::kOnline;  // online when kronopd stopped
  was.current_reel = 4;
  was.activity = "watching";
  was.last_seen_ms = 1000;
  hub.restore(was);
  was.user_id = "bob";
  was.status = PresenceHub::Status::kAway;
  hub.restore(was);
  EXPECT_TRUE(seen.empty()) << "restoring is not a change";
  auto ann = hub.user("ann", 5000);
  ASSERT_TRUE(ann);
  EXPECT_EQ(ann->status, PresenceHub::Status::kOffline);
  EXPECT_EQ(ann->last_seen_ms, 1000u);
  EXPECT_EQ(ann->activity, "watching");
  EXPECT_EQ(hub.user("bob", 5000)->status, PresenceHub::Status::kAway);
  EXPECT_EQ(hub.users_online(), 0u);

  hub.connected("ann", 6000);
  hub.connected("ann", 6001);  // a second socket: no change
  hub.disconnected("ann", 7000);
  hub.disconnected("ann", 8000);
  hub.set_status("bob", PresenceHub::Status::kOnline, 0, "", 9000);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].status, PresenceHub::Status::kOnline);
  EXPECT_EQ(seen[1].status, PresenceHub::Status::kOffline);
  EXPECT_EQ(seen[1].last_seen_ms, 8000u);
  EXPECT_EQ(seen[2].user_id, "bob");
}

// ---------------------------------------------------------------------------------------
// Cluster: other nodes' metas (presence_remote.cc)

std::string remote_ref(const std::string &node, uint64_t id) {
  static constexpr char kDigits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
  std::string digits;
  do {
    digits.insert(digits.begin(), kDigits[id % 36]);
    id /= 36;
  } while (id != 0);
  return node + digits;
}

ParsedDiff flush_one(PresenceHub &hub) {
  std::vector<PresenceHub::Diff> out;
  EXPECT_EQ(hub.flush(out), 1u);
  return out.empty() ? ParsedDiff{} : diff_of(out[0]);
}

TEST(PresenceHubCluster, OwnChangesAreHandedOutAndOtherNodesMetasJoinTheState) {
  PresenceHub a(PresenceHub::Options{.replicate = true});
  const std::string ref = a.track("reel:1", "alice", kT0);
  std::vector<PresenceHub::Diff> out;
  ASSERT_EQ(a.flush(out), 1u);
  ASSERT_EQ(out[0].own_joins.size(), 1u);
  const PresenceHub::NodeMeta joined = out[0].own_joins[0];
  EXPECT_EQ(joined.user, "alice");
  EXPECT_EQ(remote_ref(PresenceHub::node_id(), joined.id), ref) << "the ref is node id + id";
  EXPECT_EQ(joined.online_at, kT0);

  // Another node takes it in, next to its own user, under the ref the first node gave.
  PresenceHub b;
  const std::string node = "Fother001";
  const std::string bob = b.track("reel:1", "bob", kT0 + 1);
  ASSERT_TRUE(b.remote_changes("reel:1", node, {{"alice", 7, kT0}}, {}, 1));
  EXPECT_EQ(b.remote_nodes(), 1u);
  ParsedDiff d = flush_one(b);
  EXPECT_EQ(d.joins,
            (PresenceMap{{"alice", {{remote_ref(node, 7), kT0}}}, {"bob", {{bob, kT0 + 1}}}}));
  EXPECT_EQ(state_of(b, "reel:1"), d.joins);
  EXPECT_EQ(b.users_of("reel:1"), 2u);
  // Told again (a state after a diff): nothing changes.
  EXPECT_TRUE(b.remote_changes("reel:1", node, {{"alice", 7, kT0}}, {}, 2));
  out.clear();
  EXPECT_EQ(b.flush(out), 0u);
  // Its leave.
  ASSERT_TRUE(b.remote_changes("reel:1", node, {}, {{"alice", 7, 0}}, 3));
  d = flush_one(b);
  EXPECT_EQ(d.leaves, (PresenceMap{{"alice", {{remote_ref(node, 7), kT0}}}}));
  EXPECT_EQ(b.remote_nodes(), 0u) << "a node with no metas left is forgotten";
  // Only this node's own metas go to the others.
  EXPECT_EQ(b.own_topics(), std::vector<std::string>{"reel:1"});
  ASSERT_EQ(b.own_metas("reel:1").size(), 1u);
  EXPECT_EQ(b.own_metas("reel:1")[0].user, "bob");
  out.clear();
  b.untrack("reel:1", "bob", bob);
  ASSERT_EQ(b.flush(out), 1u);
  EXPECT_TRUE(out[0].own_leaves.empty()) << "not replicating: nothing handed out";
}

TEST(PresenceHubCluster, MetasOfSeveralNodesStaySortedAndLeaveByRef) {
  PresenceHub hub;
  const std::string local = hub.track("reel:1", "u", kT0);
  ASSERT_TRUE(hub.remote_changes("reel:1", "Fzz", {{"u", 5, kT0}, {"u", 3, kT0}}, {}, 1));
  ASSERT_TRUE(hub.remote_changes("reel:1", "Faa", {{"u", 9, kT0}}, {}, 1));
  flush_one(hub);
  const std::string later = hub.track("reel:1", "u", kT0 + 1);
  ASSERT_TRUE(hub.remote_changes("reel:1", "Fzz", {{"u", 1, kT0}}, {}, 1));
  flush_one(hub);
  EXPECT_EQ(hub.metas_of("reel:1"), 6u);
  // Each leaves by its own (node, id), wherever the merge put it.
  ASSERT_TRUE(hub.remote_changes("reel:1", "Fzz", {}, {{"u", 3, 0}, {"u", 1, 0}}, 2));
  hub.untrack("reel:1", "u", local);
  const ParsedDiff d = flush_one(hub);
  std::set<std::string> left;
  for (const auto &m : d.leaves.at("u")) left.insert(m.first);
  EXPECT_EQ(left, (std::set<std::string>{local, remote_ref("Fzz", 3), remote_ref("Fzz", 1)}));
  std::set<std::string> still;
  const PresenceMap state = state_of(hub, "reel:1");
  for (const auto &m : state.at("u")) still.insert(m.first);
  EXPECT_EQ(still, (std::set<std::string>{later, remote_ref("Fzz", 5), remote_ref("Faa", 9)}));
}

TEST(PresenceHubCluster, ANodesStateReplacesWhatWasKnownOfIt) {
  PresenceHub hub;
  const std::string node = "Fnode0001";
  ASSERT_TRUE(hub.remote_changes("reel:1", node, {{"a", 1, kT0}, {"b", 2, kT0}}, {}, 1));
  flush_one(hub);
  ASSERT_TRUE(hub.remote_state("reel:1", node, {{"b", 2, kT0}, {"c", 3, kT0}}, 2));
  const ParsedDiff d = flush_one(hub);
  EXPECT_EQ(d.leaves, (PresenceMap{{"a", {{remote_ref(node, 1), kT0}}}}));
  EXPECT_EQ(d.joins, (PresenceMap{{"c", {{remote_ref(node, 3), kT0}}}}));
  // An empty state: the node has nobody there any more.
  ASSERT_TRUE(hub.remote_state("reel:1", node, {}, 3));
  flush_one(hub);
  EXPECT_EQ(hub.metas_of("reel:1"), 0u);
  EXPECT_EQ(hub.topic_entries(), 0u);
  EXPECT_EQ(hub.remote_nodes(), 0u);
}

TEST(PresenceHubCluster, ADeadNodesMetasLeaveEveryTopic) {
  PresenceHub hub;
  ASSERT_TRUE(hub.remote_changes("reel:1", "Fdead", {{"a", 1, kT0}}, {}, 10));
  ASSERT_TRUE(hub.remote_changes("reel:2", "Fdead", {{"b", 2, kT0}}, {}, 10));
  ASSERT_TRUE(hub.remote_changes("reel:2", "Flive", {{"c", 3, kT0}}, {}, 10));
  ASSERT_TRUE(hub.remote_changes("reel:3", "Fnew", {{"d", 4, kT0}}, {}, 50));
  std::vector<PresenceHub::Diff> out;
  hub.flush(out);
  // A node first heard from after the list was asked for may not be in it yet: kept.
  EXPECT_EQ(hub.drop_nodes_except({"Flive"}, 20), std::vector<std::string>{"Fdead"});
  out.clear();
  ASSERT_EQ(hub.flush(out), 2u);
  EXPECT_EQ(hub.metas_of("reel:1"), 0u);
  EXPECT_EQ(hub.users_of("reel:2"), 1u);
  EXPECT_EQ(hub.metas_of("reel:3"), 1u);
  EXPECT_EQ(hub.remote_nodes(), 2u);
  EXPECT_EQ(hub.drop_nodes_except({"Flive"}, 60), std::vector<std::string>{"Fnew"});
}

TEST(PresenceHubCluster, WhatOtherNodesSendIsBounded) {
  PresenceHub hub(PresenceHub::Options{.max_remote_metas_per_topic = 3, .max_remote_nodes = 2});
  std::vector<PresenceHub::NodeMeta> five;
  for (uint64_t i = 1; i <= 5; ++i) five.push_back({user_name(i), i, kT0});
  EXPECT_FALSE(hub.remote_changes("reel:1", "Fa", five, {}, 1));
  EXPECT_EQ(hub.metas_of("reel:1"), 3u);
  // Users that are not json_safe, node ids that are not ids (or this node's own).
  EXPECT_FALSE(hub.remote_changes("reel:2", "Fa", {{"a\"b", 1, 0}, {"", 2, 0}}, {}, 1));
  EXPECT_EQ(hub.topic_entries(), 1u) << "no topic kept for nothing";
  for (const std::string &bad :
       std::vector<std::string>{"", "F a", "F\"", "F0123456789abcdef", PresenceHub::node_id()}) {
    EXPECT_FALSE(hub.remote_changes("reel:1", bad, {{"x", 1, 0}}, {}, 1)) << bad;
  }
  // Two other nodes at most; a slot is free again once its node's metas are all gone.
  EXPECT_TRUE(hub.remote_changes("reel:3", "Fb", {{"x", 1, 0}}, {}, 1));
  EXPECT_FALSE(hub.remote_changes("reel:3", "Fc", {{"y", 1, 0}}, {}, 1));
  EXPECT_TRUE(hub.remote_changes("reel:3", "Fb", {}, {{"x", 1, 0}}, 1));
  std::vector<PresenceHub::Diff> out;
  hub.flush(out);
  EXPECT_TRUE(hub.remote_changes("reel:3", "Fc", {{"y", 1, 0}}, {}, 1));
}

TEST(PresenceHubCluster, ForgottenNodesMetasLeaveUnlessToldAgainBeforeTheFlush) {
  PresenceHub hub;
  const std::string mine = hub.track("reel:1", "me", kT0);
  ASSERT_TRUE(hub.remote_changes("reel:1", "Fa", {{"a", 1, kT0}, {"b", 2, kT0}}, {}, 1));
  ASSERT_TRUE(hub.remote_changes("reel:2", "Fa", {{"c", 3, kT0}}, {}, 1));
  std::vector<PresenceHub::Diff> out;
  ASSERT_EQ(hub.flush(out), 2u);
  // This node was cut off: everything of the others is forgotten, then their states come
  // back before the next flush. Only what was not told again leaves; nothing joins again.
  EXPECT_EQ(hub.forget_remote(nullptr), 3u);
  EXPECT_EQ(hub.metas_of("reel:1"), 1u);
  ASSERT_TRUE(hub.remote_state("reel:1", "Fa", {{"a", 1, kT0}}, 2));
  out.clear();
  ASSERT_EQ(hub.flush(out), 2u);
  for (const auto &d : out) {
    const ParsedDiff p = diff_of(d);
    EXPECT_TRUE(p.joins.empty()) << d.payload;
    const PresenceMap left = d.topic == "reel:1" ? PresenceMap{{"b", {{remote_ref("Fa", 2), kT0}}}}
                                                 : PresenceMap{{"c", {{remote_ref("Fa", 3), kT0}}}};
    EXPECT_EQ(p.leaves, left) << d.topic;
  }
  EXPECT_EQ(state_of(hub, "reel:1"),
            (PresenceMap{{"a", {{remote_ref("Fa", 1), kT0}}}, {"me", {{mine, kT0}}}}));
  // One topic forgotten (no local client holds it any more).
  const std::string topic = "reel:1";
  EXPECT_EQ(hub.forget_remote(&topic), 1u);
  EXPECT_EQ(hub.metas_of("reel:1"), 1u);
  EXPECT_EQ(hub.forget_remote(&topic), 0u);
}

}  // namespace
}  // namespace kronop::daemon
