#include "redis_url.h"

#include <gtest/gtest.h>

namespace kronop::daemon {
namespace {

RedisEndpoint ok(const char *url) {
  auto r = parse_redis_url(url);
  EXPECT_TRUE(r.ok()) << url << ": " << (r.ok() ? "" : r.error().message);
  return r.ok() ? r.value() : RedisEndpoint{};
}

TEST(RedisUrl, TcpForms) {
  RedisEndpoint e = ok("redis://127.0.0.1");
  EXPECT_FALSE(e.unix_socket);
  EXPECT_EQ(e.host, "127.0.0.1");
  EXPECT_EQ(e.port, 6379);
  EXPECT_EQ(e.db, 0u);
  EXPECT_TRUE(e.password.empty());

  e = ok("redis://redis.internal:7000/3");
  EXPECT_EQ(e.host, "redis.internal");
  EXPECT_EQ(e.port, 7000);
  EXPECT_EQ(e.db, 3u);

  e = ok("redis://[::1]:6380");
  EXPECT_EQ(e.host, "::1");
  EXPECT_EQ(e.port, 6380);
  EXPECT_EQ(e.display(), "redis://[::1]:6380");
}

TEST(RedisUrl, CredentialsAndTheirDisplay) {
  RedisEndpoint e = ok("redis://:s3cret@localhost:6379/1");
  EXPECT_TRUE(e.user.empty());
  EXPECT_EQ(e.password, "s3cret");
  EXPECT_EQ(e.display(), "redis://:***@localhost:6379/1");

  e = ok("redis://kronop:p%40ss%3Aword@localhost");
  EXPECT_EQ(e.user, "kronop");
  EXPECT_EQ(e.password, "p@ss:word");
  EXPECT_EQ(e.display().find("p@ss"), std::string::npos);

  // One part before '@': the password of the default user, as redis-cli reads it.
  e = ok("redis://onlysecret@localhost");
  EXPECT_TRUE(e.user.empty());
  EXPECT_EQ(e.password, "onlysecret");
}

TEST(RedisUrl, UnixSocket) {
  RedisEndpoint e = ok("unix:///run/redis/redis.sock");
  EXPECT_TRUE(e.unix_socket);
  EXPECT_EQ(e.path, "/run/redis/redis.sock");
  e = ok("unix:///tmp/r.sock?db=2");
  EXPECT_EQ(e.db, 2u);
  EXPECT_EQ(e.display(), "unix:///tmp/r.sock?db=2");
}

TEST(RedisUrl, BadUrlsSayWhatIsWrongWithoutThePassword) {
  for (const char *url : {"",
                          "localhost:6379",
                          "http://localhost",
                          "rediss://localhost",
                          "redis://",
                          "redis://:pw@",
                          "redis://host:0",
                          "redis://host:65536",
                          "redis://host:",
                          "redis://host:x",
                          "redis://host/x",
                          "redis://host/1?x=1",
                          "redis://ho st",
                          "redis://[::1",
                          "redis://[zz]",
                          "redis://[::1]x",
                          "redis://:%zz@host",
                          "unix://relative.sock",
                          "unix:///s?db=x",
                          "unix:///s?foo=1",
                          "redis://:hunter2@bad host"}) {
    auto r = parse_redis_url(url);
    ASSERT_FALSE(r.ok()) << url;
    EXPECT_EQ(r.error().message.rfind("--redis: ", 0), 0u) << r.error().message;
    EXPECT_EQ(r.error().message.find("hunter2"), std::string::npos) << r.error().message;
  }
  EXPECT_FALSE(parse_redis_url("unix:///" + std::string(200, 'a')).ok());
}

}  // namespace
}  // namespace kronop::daemon
