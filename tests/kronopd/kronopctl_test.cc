// kronopctl as the operator runs it: every subcommand against a real kronopd, as processes,
// checking what each prints (human and --json) and its exit status; and the failures an
// operator meets (no socket, a dead daemon, a socket they may not use, usage errors).
//
// Clients are real too: the REST API over a raw HTTP request, and WebSocket clients (the
// handshake and masked frames written here) that join reel and user topics with tokens
// minted by kronopctl itself.
#include <gtest/gtest.h>

#include <google/protobuf/util/json_util.h>
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "kronop/v1/control.pb.h"
#include "support/test_support.h"

namespace kronop {
namespace {

using test::connect_to;
using test::eventually;
using test::http_post;
using test::receive;
using test::send_all;

// What a kronopctl run gave: its exit status and both outputs.
struct Outcome {
  int rc = -1;
  std::string out, err;
};

std::string read_file(const std::string &path) {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

std::vector<std::string> lines_of(const std::string &text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

bool contains(const std::string &haystack, const std::string &needle) {
  return haystack.find(needle) != std::string::npos;
}

// A WebSocket client: the opening handshake, then masked text frames out; whatever arrives
// is read only on request.
class WsClient {
 public:
  // `path_and_query`: e.g. "/ws/websocket?vsn=2.0.0&token=T" or "/ws/reel/9".
  bool open(int port, const std::string &path_and_query) {
    fd_ = connect_to(port);
    if (fd_ < 0) return false;
    send_all(fd_, "GET " + path_and_query +
                      " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n");
    const std::string response = receive(fd_, 5000, "\r\n\r\n");
    return response.rfind("HTTP/1.1 101", 0) == 0;
  }
  // One masked text frame (clients must mask).
  bool send_text(const std::string &text) {
    std::string frame("\x81", 1);
    if (text.size() < 126) {
      frame.push_back(static_cast<char>(0x80 | text.size()));
    } else {
      frame.push_back(static_cast<char>(0x80 | 126));
      frame.push_back(static_cast<char>(text.size() >> 8));
      frame.push_back(static_cast<char>(text.size() & 0xff));
    }
    const char mask[4] = {0x3a, 0x5c, 0x11, 0x7e};
    frame.append(mask, 4);
    for (std::size_t i = 0; i < text.size(); ++i) frame.push_back(text[i] ^ mask[i % 4]);
    return send_all(fd_, frame);
  }
  // Phoenix V2 join; true when its ok reply arrives.
  bool join(const std::string &topic, int ref) {
    // Appended: `"\"" + std::to_string(ref)` is a false -Wrestrict of GCC 12 at -O3 (GCC bug
    // 105329).
    std::string r = "\"";
    r += std::to_string(ref);
    r += "\"";
    if (!send_text("[" + r + "," + r + ",\"" + topic + "\",\"phx_join\",{}]")) return false;
    const std::string reply = receive(fd_, 5000, "\"status\":\"ok\"");
    return contains(reply, "\"status\":\"ok\"");
  }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  ~WsClient() { close(); }

 private:
  int fd_ = -1;
};

class KronopctlTest : public ::testing::Test, protected test::Kronopd {
 protected:
  KronopctlTest() : Kronopd("kronopctl-test") {
    std::ofstream(secret) << "kronopctl-test-secret-of-at-least-32-bytes\n";
    ::chmod(secret.c_str(), 0600);
  }

  // Two I/O loops, so that connections are spread over loops 0 and 1; presence flushed
  // every 20 ms; client tokens signed with `secret`.
  void start_daemon() {
    ASSERT_TRUE(
        start({"--io-threads", "2", "--presence-interval-ms", "20", "--auth-secret-file", secret}))
        << output();
    port = test::client_port(output());
    ASSERT_NE(port, 0) << output();
  }
  Outcome ctl(std::vector<std::string> args) {
    args.insert(args.begin(),
                {KRONOPCTL_BIN, "--socket", socket, "--shm-name", shm, "--data-dir", dir.path});
    Outcome r;
    r.rc = test::run_capture(args, &r.out, &r.err);
    return r;
  }
  std::string token(const std::string &user) {
    Outcome r = ctl({"token", "--user", user, "--secret-file", secret});
    EXPECT_EQ(r.rc, 0) << r.err;
    return lines_of(r.out).empty() ? "" : lines_of(r.out)[0];
  }
  // The number of messages of `topic` in the durable log (as replay reads it).
  std::size_t logged(const std::string &topic) {
    return lines_of(ctl({"replay", "--topic", topic}).out).size();
  }

  const std::string secret = dir.path + "/auth-secret";
  int port = 0;
};

TEST_F(KronopctlTest, HealthAndStats) {
  start_daemon();
  Outcome r = ctl({"health"});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out.rfind("ok (pid " + std::to_string(pid) + ", up ", 0), 0u) << r.out;
  r = ctl({"health", "--json"});
  EXPECT_EQ(r.rc, 0);
  v1::Health h;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &h).ok()) << r.out;
  EXPECT_TRUE(h.healthy());
  EXPECT_EQ(h.status(), "ok");
  EXPECT_EQ(h.pid(), static_cast<uint32_t>(pid));

  ASSERT_EQ(ctl({"publish", "--topic", "reel:1", "--event", "reel_update", "--json",
                 R"({"views":1})", "--count", "50"})
                .rc,
            0);
  ASSERT_TRUE(eventually([&] { return logged("reel:1") == 50; }));
  r = ctl({"stats"});
  EXPECT_EQ(r.rc, 0);
  EXPECT_EQ(r.out.rfind("kronopd pid " + std::to_string(pid), 0), 0u) << r.out;
  EXPECT_TRUE(contains(r.out, "\nrecords                50\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "messages fanned out")) << r.out;
  r = ctl({"--json", "stats"});  // --json before the subcommand, as a global option
  EXPECT_EQ(r.rc, 0);
  v1::DaemonStats s;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &s).ok()) << r.out;
  EXPECT_EQ(s.records(), 50u);
  EXPECT_EQ(s.pid(), static_cast<uint32_t>(pid));

  // --watch: a reading, then one every --interval-ms, with rates. The first is an average
  // since start (50 records over the uptime), the second covers the interval, in which
  // nothing was published.
  r = ctl({"stats", "--watch", "--interval-ms", "100", "--count", "2"});
  EXPECT_EQ(r.rc, 0) << r.err;
  auto lines = lines_of(r.out);
  std::vector<std::string> heads;
  for (const auto &l : lines) {
    if (l.rfind("--- ", 0) == 0) heads.push_back(l);
  }
  ASSERT_EQ(heads.size(), 2u) << r.out;
  EXPECT_TRUE(contains(heads[0], "(average since start)")) << heads[0];
  EXPECT_FALSE(contains(heads[0], " 0.0 records/s")) << heads[0];
  EXPECT_TRUE(contains(heads[1],
                       ": 0.0 records/s, 0.0 messages fanned out/s, 0.0 frames out/s "
                       "(since the last reading)"))
      << heads[1];
  EXPECT_GT(std::count(r.out.begin(), r.out.end(), '\n'), 40);  // the stats, twice

  r = ctl({"stats", "--watch", "--json", "--interval-ms", "100", "--count", "2"});
  EXPECT_EQ(r.rc, 0) << r.err;
  lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 2u) << r.out;
  // {"time":...,"rates":{...},"stats":{DaemonStats}}: the head matched, the stats parsed.
  std::regex head_re(
      R"re(\{"time":"20[0-9-]+T[0-9:.]+Z","rates":\{"seconds":[0-9.]+,"since_start":(true|false),)re"
      R"re("records_per_second":([0-9.]+),"messages_fanned_out_per_second":[0-9.]+,)re"
      R"re("frames_out_per_second":[0-9.]+\})re");
  for (std::size_t i = 0; i < 2; ++i) {
    const std::string &line = lines[i];
    const std::size_t split = line.find(",\"stats\":");
    ASSERT_NE(split, std::string::npos) << line;
    std::smatch m;
    const std::string head = line.substr(0, split);
    ASSERT_TRUE(std::regex_match(head, m, head_re)) << head;
    EXPECT_EQ(m[1], i == 0 ? "true" : "false");
    if (i == 0) {
      EXPECT_GT(std::stod(m[2]), 0.0);
    } else {
      EXPECT_EQ(m[2], "0.0");
    }
    ASSERT_EQ(line.back(), '}');
    v1::DaemonStats watched;
    const std::string stats_json = line.substr(split + 9, line.size() - split - 10);
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(stats_json, &watched).ok())
        << stats_json;
    EXPECT_EQ(watched.records(), 50u);
  }

  // --watch until interrupted: SIGINT ends it with status 0.
  const std::string out = dir.path + "/watch.out";
  pid_t watch =
      test::spawn({KRONOPCTL_BIN, "--socket", socket, "stats", "--watch", "--interval-ms", "50"},
                  out, dir.path + "/watch.err");
  ASSERT_TRUE(eventually([&] { return contains(read_file(out), "since the last reading"); }));
  ::kill(watch, SIGINT);
  EXPECT_EQ(test::wait_child(watch), 0);
}

TEST_F(KronopctlTest, PublishTokenAndReplay) {
  start_daemon();
  Outcome r = ctl({"publish", "--topic", "reel:2", "--event", "reel_update", "--json",
                   R"({"views":7})", "--count", "3"});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out.rfind("published 3 record(s) to reel:2 (event reel_update, producer ", 0), 0u)
      << r.out;
  r = ctl({"--json", "publish", "--topic", "reel:2", "--event", "reel_update", "--json",
           R"({"views":8})"});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(std::regex_match(
      r.out,
      std::regex(
          R"re(\{"published":1,"topic":"reel:2","event":"reel_update","producer_id":"[0-9a-f]{16}","last_seq":[0-9]+,"seconds":[0-9.]+\}\n)re")))
      << r.out;

  r = ctl({"token", "--user", "alice", "--secret-file", secret});
  EXPECT_EQ(r.rc, 0);
  EXPECT_TRUE(
      std::regex_match(r.out, std::regex(R"([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\n)")))
      << r.out;
  r = ctl(
      {"token", "--user", "alice", "--admin", "--ttl", "15m", "--secret-file", secret, "--json"});
  EXPECT_EQ(r.rc, 0);
  EXPECT_TRUE(std::regex_match(
      r.out,
      std::regex(
          R"re(\{"token":"[A-Za-z0-9_.-]+","user":"alice","admin":true,"exp":[0-9]+\}\n)re")))
      << r.out;
  EXPECT_EQ(ctl({"token", "--user", "a b", "--secret-file", secret}).rc, 2);
  EXPECT_EQ(ctl({"token", "--user", "alice", "--secret-file", dir.path + "/missing"}).rc, 1);

  ASSERT_TRUE(eventually([&] { return logged("reel:2") == 4; }));
  r = ctl({"replay", "--topic", "reel:2"});
  EXPECT_EQ(r.rc, 0);
  auto lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 4u) << r.out;
  EXPECT_TRUE(std::regex_match(
      lines[0], std::regex(R"(       1  20[0-9-]+T[0-9:.]+Z  reel_update +\{"seq":1,"views":7\})")))
      << lines[0];
  r = ctl({"replay", "--topic", "reel:2", "--since-seq", "3", "--json"});
  EXPECT_EQ(r.rc, 0);
  lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 1u) << r.out;
  EXPECT_TRUE(contains(lines[0], R"("topic":"reel:2","seq":4,)")) << lines[0];
  EXPECT_TRUE(contains(lines[0], R"("payload":{"seq":4,"views":8}})")) << lines[0];
  r = ctl({"replay", "--topic", "reel:2", "--json", "--export", dir.path + "/r.zst"});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "{\"exported\":4}\n");
  r = ctl({"replay", "--topic", "reel:2", "--json", "--republish"});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "{\"republished\":4}\n");
  EXPECT_TRUE(eventually([&] { return logged("reel:2") == 8; }));
  r = ctl({"replay", "--topic", "reel:404"});
  EXPECT_EQ(r.rc, 1);
  EXPECT_TRUE(contains(r.err, "reel:404 has no messages in the log")) << r.err;
}

TEST_F(KronopctlTest, PresenceOfAUser) {
  start_daemon();
  Outcome r = ctl({"presence", "user", "carol"});
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_TRUE(contains(r.err, "no presence for user carol")) << r.err;

  const std::string response =
      http_post(port, "/api/v1/users/carol/presence",
                R"({"status":"away","current_reel":7,"activity":"watching"})");
  ASSERT_EQ(response.rfind("HTTP/1.1 200", 0), 0u) << response;
  r = ctl({"presence", "user", "carol"});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(std::regex_match(r.out, std::regex("user          carol\n"
                                                 "status        away\n"
                                                 "current reel  reel:7\n"
                                                 "activity      watching\n"
                                                 "connections   0\n"
                                                 "last seen     20[0-9-]+T[0-9:.]+Z\n")))
      << r.out;
  r = ctl({"presence", "user", "carol", "--json"});
  EXPECT_EQ(r.rc, 0);
  EXPECT_TRUE(std::regex_match(
      r.out,
      std::regex(
          R"re(\{"user_id":"carol","status":"away","current_reel":7,"activity":"watching","last_seen":"20[0-9-]+T[0-9:.]+Z","connections":0\}\n)re")))
      << r.out;

  // A socket with carol's token: she is connected now (away stays her choice).
  WsClient ws;
  ASSERT_TRUE(ws.open(port, "/ws/websocket?vsn=2.0.0&token=" + token("carol")));
  ASSERT_TRUE(eventually([&] {
    return contains(ctl({"presence", "user", "carol"}).out, "connections   1\n");
  }));
  EXPECT_TRUE(contains(ctl({"presence", "user", "carol"}).out, "(connected now)"));

  EXPECT_EQ(ctl({"presence", "user", "bad id"}).rc, 2);
  EXPECT_EQ(ctl({"presence", "user"}).rc, 2);
  EXPECT_EQ(ctl({"presence"}).rc, 2);
}

TEST_F(KronopctlTest, PresenceOfAReelAndConnections) {
  start_daemon();
  Outcome r = ctl({"presence", "reel", "7"});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "reel:7: nobody present\n");
  r = ctl({"--json", "presence", "reel", "7"});
  EXPECT_EQ(r.rc, 0);
  EXPECT_EQ(r.out, R"({"topic":"reel:7","users_count":0,"metas_count":0,"users":[]})"
                   "\n");
  r = ctl({"connections"});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "no connections\n");

  // alice on two sockets (one of them also on her user topic, one in protobuf), bob on one,
  // and an anonymous plain socket on another reel.
  WsClient alice1, alice2, bob, plain;
  ASSERT_TRUE(alice1.open(port, "/ws/websocket?vsn=2.0.0&token=" + token("alice")));
  ASSERT_TRUE(alice1.join("reel:7", 1));
  ASSERT_TRUE(alice1.join("user:alice", 2));
  ASSERT_TRUE(alice2.open(port, "/ws/websocket?vsn=2.0.0&format=protobuf&token=" + token("alice")));
  ASSERT_TRUE(alice2.join("reel:7", 1));
  ASSERT_TRUE(bob.open(port, "/ws/websocket?vsn=2.0.0&token=" + token("bob")));
  ASSERT_TRUE(bob.join("reel:7", 1));
  ASSERT_TRUE(plain.open(port, "/ws/reel/9"));

  const std::string expected =
      "reel:7: 2 user(s) present, 3 socket(s)\n"
      "  alice                            2\n"
      "  bob                              1\n";
  ASSERT_TRUE(eventually([&] {
    return ctl({"presence", "reel", "7"}).out == expected;
  })) << ctl({"presence", "reel", "7"}).out;
  r = ctl({"presence", "reel", "7", "--json"});
  EXPECT_EQ(r.rc, 0);
  EXPECT_EQ(
      r.out,
      R"({"topic":"reel:7","users_count":2,"metas_count":3,"users":[{"user_id":"alice","metas":2},{"user_id":"bob","metas":1}]})"
      "\n");
  EXPECT_EQ(ctl({"presence", "reel", "bad id"}).rc, 2);

  r = ctl({"connections"});
  EXPECT_EQ(r.rc, 0) << r.err;
  auto lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 6u) << r.out;
  EXPECT_TRUE(std::regex_match(
      lines[0], std::regex("loop  peer +user +mode +format +unsent +age \\(s\\)  topics")))
      << lines[0];
  EXPECT_EQ(lines[5], "4 connection(s)");
  // Oldest first: alice's first socket, then her second, bob's, the plain one.
  std::regex row(
      R"(   ([01])  127\.0\.0\.1:[0-9]+ +(\S+) +(\S+) +(\S+) +([0-9]+) +[0-9.]+  (\S+))");
  std::smatch m;
  ASSERT_TRUE(std::regex_match(lines[1], m, row)) << lines[1];
  EXPECT_EQ(m[2], "alice");
  EXPECT_EQ(m[3], "phoenix");
  EXPECT_EQ(m[4], "json");
  EXPECT_EQ(m[6], "reel:7,user:alice");
  ASSERT_TRUE(std::regex_match(lines[2], m, row)) << lines[2];
  EXPECT_EQ(m[2], "alice");
  EXPECT_EQ(m[4], "protobuf");
  ASSERT_TRUE(std::regex_match(lines[3], m, row)) << lines[3];
  EXPECT_EQ(m[2], "bob");
  ASSERT_TRUE(std::regex_match(lines[4], m, row)) << lines[4];
  EXPECT_EQ(m[2], "anonymous");
  EXPECT_EQ(m[3], "plain");
  EXPECT_EQ(m[6], "reel:9");

  r = ctl({"connections", "--topic", "reel:9"});
  EXPECT_EQ(r.rc, 0);
  lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 3u) << r.out;
  EXPECT_EQ(lines[2], "1 connection(s)");
  EXPECT_EQ(ctl({"connections", "--topic", "reel:8"}).out, "no connections joined to reel:8\n");

  r = ctl({"connections", "--topic", "reel:7", "--json"});
  EXPECT_EQ(r.rc, 0);
  v1::Connections list;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &list).ok()) << r.out;
  ASSERT_EQ(list.connections_size(), 3);
  EXPECT_EQ(list.total(), 3u);
  std::set<uint32_t> loops;
  for (const auto &c : list.connections()) {
    loops.insert(c.loop());
    EXPECT_EQ(c.mode(), "phoenix");
    EXPECT_TRUE(c.peer().rfind("127.0.0.1:", 0) == 0) << c.peer();
    EXPECT_EQ(c.unsent_bytes(), 0u);
    EXPECT_GE(c.age_seconds(), 0.0);
    EXPECT_LT(c.age_seconds(), 60.0);
  }
  EXPECT_EQ(loops, (std::set<uint32_t>{0, 1}));  // the acceptor hands sockets out in turn
  EXPECT_EQ(list.connections(0).user_id(), "alice");
  EXPECT_EQ(list.connections(0).topics_size(), 2);
  EXPECT_EQ(list.connections(1).format(), "protobuf");
  // The keys are stable: every field is printed, even empty or zero ones.
  EXPECT_TRUE(contains(r.out, "\"unsent_bytes\":0,")) << r.out;
  EXPECT_EQ(ctl({"connections", "--topic", "lobby"}).rc, 2);

  // bob leaves: gone from the reel's presence at the next flush, and from the connections.
  bob.close();
  ASSERT_TRUE(eventually([&] {
    return ctl({"presence", "reel", "7"}).out ==
           "reel:7: 1 user(s) present, 2 socket(s)\n  alice                            2\n";
  }));
  ASSERT_TRUE(eventually([&] { return lines_of(ctl({"connections"}).out).size() == 5; }));
}

TEST_F(KronopctlTest, TailFollowsTheLog) {
  start_daemon();
  // Two messages before tail starts: it begins after them.
  ASSERT_EQ(ctl({"publish", "--topic", "reel:5", "--event", "reel_update", "--json",
                 R"({"views":1})", "--count", "2"})
                .rc,
            0);
  ASSERT_TRUE(eventually([&] { return logged("reel:5") == 2; }));
  const std::string out = dir.path + "/tail.out", err = dir.path + "/tail.err";
  pid_t tail = test::spawn({KRONOPCTL_BIN, "--data-dir", dir.path, "tail", "--topic", "reel:5",
                            "--count", "3", "--timeout-ms", "20000"},
                           out, err);
  ASSERT_TRUE(eventually([&] { return contains(read_file(err), "following reel:5"); }))
      << read_file(err);
  EXPECT_TRUE(contains(read_file(err), "after seq 2")) << read_file(err);
  ASSERT_EQ(ctl({"publish", "--topic", "reel:5", "--event", "like_burst", "--json",
                 R"({"likes":3})", "--count", "3"})
                .rc,
            0);
  EXPECT_EQ(test::wait_child(tail), 0);
  auto lines = lines_of(read_file(out));
  ASSERT_EQ(lines.size(), 3u) << read_file(out);
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(std::regex_match(
        lines[static_cast<std::size_t>(i)],
        std::regex(" +" + std::to_string(i + 3) + R"(  20[0-9-]+T[0-9:.]+Z  like_burst +\{"seq":)" +
                   std::to_string(i + 3) + R"(,"likes":3\})")))
        << lines[static_cast<std::size_t>(i)];
  }

  // --since-seq reads what is there first; --json prints JSON lines.
  Outcome r = ctl({"tail", "--topic", "reel:5", "--since-seq", "3", "--count", "2", "--json"});
  EXPECT_EQ(r.rc, 0) << r.err;
  lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 2u) << r.out;
  EXPECT_TRUE(contains(lines[0], R"("topic":"reel:5","seq":4,)")) << lines[0];
  EXPECT_TRUE(contains(lines[1], R"("event":"like_burst",)")) << lines[1];
  EXPECT_TRUE(contains(lines[1], R"("payload":{"seq":5,"likes":3}})")) << lines[1];

  // --timeout-ms with nothing new: exits 0 having printed nothing.
  r = ctl({"tail", "--topic", "reel:5", "--timeout-ms", "200"});
  EXPECT_EQ(r.rc, 0);
  EXPECT_EQ(r.out, "");
  // A topic with no messages yet is followed from its start.
  r = ctl({"tail", "--topic", "reel:6", "--timeout-ms", "100"});
  EXPECT_EQ(r.rc, 0);
  EXPECT_TRUE(contains(r.err, "after seq 0")) << r.err;

  // Until interrupted: SIGINT and SIGTERM end it with status 0.
  for (int sig : {SIGINT, SIGTERM}) {
    const std::string e = dir.path + "/tail-" + std::to_string(sig) + ".err";
    pid_t t = test::spawn({KRONOPCTL_BIN, "--data-dir", dir.path, "tail", "--topic", "reel:5"},
                          dir.path + "/tail-sig.out", e);
    ASSERT_TRUE(eventually([&] { return contains(read_file(e), "following"); }));
    ::kill(t, sig);
    EXPECT_EQ(test::wait_child(t), 0) << "signal " << sig;
  }

  // The log is read without the daemon; a directory with no log is a failure.
  EXPECT_EQ(stop(SIGTERM), 0);
  r = ctl({"tail", "--topic", "reel:5", "--since-seq", "0", "--count", "5"});
  EXPECT_EQ(r.rc, 0);
  EXPECT_EQ(lines_of(r.out).size(), 5u);
  test::TempDir empty;
  r = {};
  r.rc = test::run_capture({KRONOPCTL_BIN, "--data-dir", empty.path, "tail", "--topic", "reel:5"},
                           &r.out, &r.err);
  EXPECT_EQ(r.rc, 1);
  EXPECT_TRUE(contains(r.err, "no durable log here")) << r.err;
  EXPECT_EQ(ctl({"tail", "--topic", "lobby"}).rc, 2);
  EXPECT_EQ(ctl({"tail"}).rc, 2);
  EXPECT_EQ(ctl({"tail", "--topic", "reel:5", "--count", "0"}).rc, 2);
}

TEST_F(KronopctlTest, DaemonDownAndSocketMissing) {
  // No socket file at all.
  for (const auto &args :
       std::vector<std::vector<std::string>>{{"health"},
                                             {"stats"},
                                             {"presence", "user", "a"},
                                             {"presence", "reel", "1"},
                                             {"connections"},
                                             {"stats", "--watch", "--count", "2"}}) {
    Outcome r = ctl(args);
    EXPECT_EQ(r.rc, 1) << args[0];
    EXPECT_EQ(r.err, "kronopctl: no control socket at " + socket + " (is kronopd running?)\n")
        << args[0];
  }
  Outcome r = ctl({"health", "--json"});
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(r.out, "{\"healthy\":false}\n");

  // The socket file is left behind by a daemon killed with SIGKILL: nobody listens.
  start_daemon();
  EXPECT_EQ(stop(SIGKILL), 128 + SIGKILL);
  struct stat st {};
  ASSERT_EQ(::stat(socket.c_str(), &st), 0);
  for (const auto &args : std::vector<std::vector<std::string>>{{"health"},
                                                                {"stats"},
                                                                {"presence", "user", "a"},
                                                                {"presence", "reel", "1"},
                                                                {"connections"}}) {
    r = ctl(args);
    EXPECT_EQ(r.rc, 1) << args[0];
    EXPECT_EQ(r.err, "kronopctl: cannot connect to kronopd at " + socket + ": connection refused\n")
        << args[0];
  }
}

TEST_F(KronopctlTest, UsageErrorsExitTwo) {
  for (const auto &args :
       std::vector<std::vector<std::string>>{{},
                                             {"frobnicate"},
                                             {"presence"},
                                             {"presence", "user"},
                                             {"presence", "reel"},
                                             {"presence", "group", "1"},
                                             {"presence", "user", "a", "b"},
                                             {"connections", "--topic", "room:1"},
                                             {"connections", "--frob"},
                                             {"tail"},
                                             {"tail", "--topic", "reel:1", "--timeout-ms", "-5"},
                                             {"stats", "--count", "2"},
                                             {"stats", "--interval-ms", "100"},
                                             {"stats", "--watch", "--interval-ms", "1"},
                                             {"health", "--verbose"},
                                             {"replay"},
                                             {"publish", "--topic", "reel:1", "--event", "e"}}) {
    Outcome r = ctl(args);
    EXPECT_EQ(r.rc, 2) << (args.empty() ? "(none)" : args[0]) << " " << r.err;
    EXPECT_FALSE(r.err.empty());
  }
  EXPECT_EQ(ctl({"--help"}).rc, 0);
  EXPECT_EQ(ctl({"tail", "--help"}).rc, 0);
}

// The value of `key="..."` in a log line, unquoted as log::q quoted it (\" and \\).
std::string quoted_field(const std::string &line, const std::string &key) {
  const std::size_t at = line.find(" " + key + "=\"");
  if (at == std::string::npos) return {};
  std::string value;
  for (std::size_t i = at + key.size() + 3; i < line.size() && line[i] != '"'; ++i) {
    if (line[i] == '\\' && i + 1 < line.size()) ++i;
    value += line[i];
  }
  return value;
}

// kronopd's start line suggests two commands: they work as printed, in a shell, with the
// global options where the hint puts them (--shm-name after publish, --socket before stats).
TEST_F(KronopctlTest, TheStartHintRunsAsPrinted) {
  start_daemon();
  std::string hint;
  for (const std::string &line : lines_of(output())) {
    if (contains(line, " event=hint ")) hint = quoted_field(line, "try");
  }
  ASSERT_TRUE(contains(hint, "kronopctl publish --shm-name " + shm + " ")) << output();
  ASSERT_TRUE(contains(hint, "kronopctl --socket " + socket + " stats")) << hint;
  const std::string bin_dir =
      std::string(KRONOPCTL_BIN).substr(0, std::string(KRONOPCTL_BIN).rfind('/'));
  Outcome r;
  r.rc = test::run_capture(
      {"/usr/bin/env", "PATH=" + bin_dir + ":/usr/bin:/bin", "/bin/sh", "-c", hint}, &r.out,
      &r.err);
  EXPECT_EQ(r.rc, 0) << hint << "\n" << r.err;
  EXPECT_TRUE(contains(r.out, "published 1 record(s) to reel:123 (event reel_update")) << r.out;
  EXPECT_TRUE(contains(r.out, "kronopd pid " + std::to_string(pid))) << r.out;
  ASSERT_TRUE(eventually([&] { return logged("reel:123") == 1; }));
  EXPECT_TRUE(contains(ctl({"replay", "--topic", "reel:123"}).out, R"({"seq":1,"views":1})"));
}

// The global options work after the subcommand (and after presence's own subcommands), as
// git's and systemctl's do; after publish, its own --json (the payload) wins.
TEST_F(KronopctlTest, GlobalOptionsAfterTheSubcommand) {
  start_daemon();
  auto run = [](std::vector<std::string> args) {
    args.insert(args.begin(), KRONOPCTL_BIN);
    Outcome r;
    r.rc = test::run_capture(args, &r.out, &r.err);
    return r;
  };
  Outcome r = run({"stats", "--socket", socket, "--json"});
  ASSERT_EQ(r.rc, 0) << r.err;
  v1::DaemonStats s;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &s).ok()) << r.out;
  EXPECT_EQ(s.pid(), static_cast<uint32_t>(pid));
  r = run({"health", "--json", "--socket", socket});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(contains(r.out, R"("healthy":true)")) << r.out;

  ASSERT_EQ(http_post(port, "/api/v1/users/dave/presence", R"({"status":"online"})")
                .rfind("HTTP/1.1 200", 0),
            0u);
  r = run({"presence", "user", "dave", "--socket", socket});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out.rfind("user          dave\nstatus        online\n", 0), 0u) << r.out;
  r = run({"presence", "--socket", socket, "user", "dave", "--json"});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out.rfind(R"({"user_id":"dave","status":"online")", 0), 0u) << r.out;
  r = run({"connections", "--topic", "reel:9", "--socket", socket});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "no connections joined to reel:9\n");

  // publish: --shm-name after it; its --json is the payload, kronopctl's own comes before it.
  r = run({"--json", "publish", "--topic", "reel:6", "--event", "reel_update", "--json",
           R"({"views":6})", "--shm-name", shm});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out.rfind(R"({"published":1,"topic":"reel:6",)", 0), 0u) << r.out;
  r = run({"publish", "--topic", "reel:6", "--event", "reel_update", "--shm-name", shm, "--json",
           R"({"views":7})"});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out.rfind("published 1 record(s) to reel:6", 0), 0u) << r.out;
  // The log, with --data-dir after replay and tail.
  ASSERT_TRUE(eventually([&] { return logged("reel:6") == 2; }));
  r = run({"replay", "--topic", "reel:6", "--data-dir", dir.path, "--json"});
  EXPECT_EQ(r.rc, 0) << r.err;
  ASSERT_EQ(lines_of(r.out).size(), 2u) << r.out;
  EXPECT_TRUE(contains(lines_of(r.out)[1], R"("payload":{"seq":2,"views":7}})")) << r.out;
  r = run(
      {"tail", "--topic", "reel:6", "--since-seq", "0", "--count", "2", "--data-dir", dir.path});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(lines_of(r.out).size(), 2u) << r.out;

  // The option after the subcommand is the one used: a wrong socket there fails.
  r = run({"health", "--socket", dir.path + "/none.sock"});
  EXPECT_EQ(r.rc, 1);
  EXPECT_TRUE(contains(r.err, dir.path + "/none.sock")) << r.err;
}

// The control socket is mode 0660: another user (nobody) is refused by the file system,
// and kronopctl says so, naming the socket.
TEST_F(KronopctlTest, OtherUsersArePermissionDenied) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to switch to an unprivileged user";
  start_daemon();
  ::chmod(dir.path.c_str(), 0755);  // the directory is open, the socket is not
  const std::string expected = "kronopctl: cannot connect to kronopd at " + socket +
                               ": permission denied (run as root, the daemon's user, or a "
                               "member of its group)\n";
  pid_t child = test::fork_child([&] {
    if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) return 10;
    for (const auto &args : std::vector<std::vector<std::string>>{
             {"stats"}, {"health"}, {"presence", "reel", "1"}, {"connections"}}) {
      std::vector<std::string> argv{KRONOPCTL_BIN, "--socket", socket};
      argv.insert(argv.end(), args.begin(), args.end());
      std::string out, err;
      const int rc = test::run_capture(argv, &out, &err);
      if (rc != 1 || err != expected) {
        std::fprintf(stderr, "%s: exit %d, stderr: %s", args[0].c_str(), rc, err.c_str());
        return 11;
      }
    }
    return 0;
  });
  EXPECT_EQ(test::wait_child(child), 0);
  EXPECT_EQ(ctl({"health"}).rc, 0);  // root still may
}

}  // namespace
}  // namespace kronop
