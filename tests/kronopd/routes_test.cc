// The client port's route table (routes.h): every path to its route, WebSocket upgrades
// included, and 404 / 405 for the rest.
#include "routes.h"

#include <gtest/gtest.h>

namespace kronop::daemon {
namespace {

TEST(Routes, WebSocketUpgradePaths) {
  for (const char *p : {"/ws/websocket", "/ws/websocket/"}) {
    auto r = match_route(p);
    ASSERT_TRUE(r) << p;
    EXPECT_EQ(r->kind, RouteKind::kPhoenixSocket);
    EXPECT_TRUE(r->upgrade());
  }
  const std::pair<const char *, const char *> plain[] = {
      {"/ws/reel/42", "reel:42"}, {"/ws/user/alice", "user:alice"}, {"/ws/system", "system"}};
  for (auto [path, topic] : plain) {
    auto r = match_route(path);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->kind, RouteKind::kPlainSocket);
    EXPECT_EQ(r->param, topic);
    // The handshake decides about methods on upgrade paths.
    EXPECT_FALSE(http_refusal(r, path, "POST"));
  }
}

TEST(Routes, RestAndSystemPaths) {
  auto reel = match_route("/api/v1/reels/7/updates");
  ASSERT_TRUE(reel);
  EXPECT_EQ(reel->kind, RouteKind::kReelUpdates);
  EXPECT_EQ(reel->param, "7");
  EXPECT_FALSE(reel->upgrade());
  auto user = match_route("/api/v1/users/bob/presence");
  ASSERT_TRUE(user);
  EXPECT_EQ(user->kind, RouteKind::kUserPresence);
  EXPECT_EQ(user->param, "bob");
  for (const char *p : {"/metrics", "/api/v1/system/health", "/api/v1/system/stats",
                        "/api/v1/system/performance", "/api/v1/connections/stats"}) {
    auto r = match_route(p);
    ASSERT_TRUE(r) << p;
    EXPECT_EQ(r->kind, RouteKind::kSystem);
  }
}

TEST(Routes, UnknownPathsAre404AndOtherMethods405WithAllow) {
  for (const char *p :
       {"/", "/ws", "/ws/other", "/api/v1/reels/7", "/metrics/x", "/api/v1/users/bob/presence/x"}) {
    EXPECT_FALSE(match_route(p)) << p;
    auto refused = http_refusal(match_route(p), p, "GET");
    ASSERT_TRUE(refused);
    EXPECT_EQ(refused->rfind("HTTP/1.1 404", 0), 0u) << *refused;
  }
  auto rest = http_refusal(match_route("/api/v1/reels/7/updates"), "", "DELETE");
  ASSERT_TRUE(rest);
  EXPECT_EQ(rest->rfind("HTTP/1.1 405", 0), 0u);
  EXPECT_NE(rest->find("\r\nAllow: GET, POST\r\n"), std::string::npos);
  EXPECT_FALSE(http_refusal(match_route("/api/v1/reels/7/updates"), "", "POST"));
  auto system = http_refusal(match_route("/metrics"), "", "POST");
  ASSERT_TRUE(system);
  EXPECT_NE(system->find("\r\nAllow: GET, HEAD\r\n"), std::string::npos);
  EXPECT_FALSE(http_refusal(match_route("/metrics"), "", "HEAD"));
}

}  // namespace
}  // namespace kronop::daemon
