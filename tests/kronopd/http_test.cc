// HTTP request collection: whole and split requests, pipelining, upgrades, limits and the
// error statuses a bad request gets.
#include "http.h"

#include <gtest/gtest.h>

namespace kronop::daemon::http {
namespace {

constexpr std::string_view kUpgrade =
    "GET /ws/websocket?vsn=2.0.0&token=a%2Bb%3D&format=protobuf HTTP/1.1\r\n"
    "Host: 127.0.0.1:4000\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n";

RequestParser::State feed_all(RequestParser &p, std::string_view data, std::size_t *used) {
  return p.feed(data, used);
}

TEST(HttpTest, UpgradeRequestIsCollected) {
  RequestParser p;
  std::string data(kUpgrade);
  data += "\x81\x85";  // the first bytes of a WebSocket frame, right behind the request
  std::size_t used = 0;
  ASSERT_EQ(feed_all(p, data, &used), RequestParser::State::kComplete);
  EXPECT_EQ(used, kUpgrade.size());
  const Request &r = p.request();
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.path, "/ws/websocket");
  EXPECT_EQ(r.query, "vsn=2.0.0&token=a%2Bb%3D&format=protobuf");
  EXPECT_TRUE(r.upgrade);
  EXPECT_EQ(r.header("upgrade"), "websocket");
  EXPECT_EQ(r.header("sec-websocket-key"), "dGhlIHNhbXBsZSBub25jZQ==");
  EXPECT_EQ(r.header("missing"), "");
  std::string v;
  ASSERT_TRUE(r.query_param("token", &v));
  EXPECT_EQ(v, "a+b=");
  ASSERT_TRUE(r.query_param("vsn", &v));
  EXPECT_EQ(v, "2.0.0");
  EXPECT_FALSE(r.query_param("nope", &v));
}

TEST(HttpTest, ByteByByteGivesTheSameRequest) {
  RequestParser p;
  std::size_t total = 0;
  RequestParser::State st = RequestParser::State::kNeedMore;
  for (std::size_t i = 0; i < kUpgrade.size(); ++i) {
    std::size_t used = 0;
    st = p.feed(kUpgrade.substr(i, 1), &used);
    total += used;
    if (i + 1 < kUpgrade.size()) {
      ASSERT_EQ(st, RequestParser::State::kNeedMore) << i;
    }
  }
  EXPECT_EQ(st, RequestParser::State::kComplete);
  EXPECT_EQ(total, kUpgrade.size());
  EXPECT_EQ(p.request().header("sec-websocket-version"), "13");
}

TEST(HttpTest, PipelinedRequestsOneAtATime) {
  std::string a =
      "POST /api/v1/reels/1/updates HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n{\"views\":1}";
  std::string b = "GET /api/v1/system/health HTTP/1.1\r\nHost: x\r\n\r\n";
  std::string both = a + b;
  RequestParser p;
  std::size_t used = 0;
  ASSERT_EQ(p.feed(both, &used), RequestParser::State::kComplete);
  EXPECT_EQ(used, a.size());
  EXPECT_EQ(p.request().method, "POST");
  EXPECT_EQ(p.request().body, "{\"views\":1}");
  EXPECT_FALSE(p.request().upgrade);
  p.reset();
  std::size_t used2 = 0;
  ASSERT_EQ(p.feed(std::string_view(both).substr(used), &used2), RequestParser::State::kComplete);
  EXPECT_EQ(used2, b.size());
  EXPECT_EQ(p.request().path, "/api/v1/system/health");
}

TEST(HttpTest, ChunkedBodyIsJoined) {
  std::string req =
      "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
      "4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n";
  RequestParser p;
  std::size_t used = 0;
  ASSERT_EQ(p.feed(req, &used), RequestParser::State::kComplete);
  EXPECT_EQ(p.request().body, "{\"a\":1}");
}

TEST(HttpTest, MalformedRequestsGet400) {
  for (std::string_view bad : {std::string_view("GARBAGE\r\n\r\n"),
                               std::string_view("GET / HTTP/1.1\r\nBad Header\r\n\r\n"),
                               std::string_view("GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n"),
                               std::string_view("GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n")}) {
    RequestParser p;
    std::size_t used = 0;
    EXPECT_EQ(p.feed(bad, &used), RequestParser::State::kError) << bad;
    EXPECT_EQ(p.error_status(), 400) << bad;
    EXPECT_FALSE(p.error_reason().empty());
  }
}

// Feeds `req` whole and byte by byte (the parser reports pieces differently then); both must
// end in the same error status.
void expect_refused(std::string_view req, int status, std::string_view reason_part = {}) {
  RequestParser whole;
  std::size_t used = 0;
  EXPECT_EQ(whole.feed(req, &used), RequestParser::State::kError) << req;
  EXPECT_EQ(whole.error_status(), status) << req << " -> " << whole.error_reason();
  EXPECT_NE(whole.error_reason().find(reason_part), std::string::npos) << whole.error_reason();
  RequestParser bytes;
  RequestParser::State st = RequestParser::State::kNeedMore;
  for (std::size_t i = 0; i < req.size() && st == RequestParser::State::kNeedMore; ++i) {
    st = bytes.feed(req.substr(i, 1), &used);
  }
  EXPECT_EQ(st, RequestParser::State::kError) << "byte by byte: " << req;
  EXPECT_EQ(bytes.error_status(), status) << "byte by byte: " << req;
}

RequestParser::State feed_whole(RequestParser &p, std::string_view req) {
  std::size_t used = 0;
  return p.feed(req, &used);
}

// RFC 9112 §5.1: no whitespace between a field name and the colon. The parser would take
// "Content-Length " as Content-Length and read the smuggled request as the body.
TEST(HttpTest, WhitespaceBeforeTheColonGets400) {
  expect_refused(
      "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length : 27\r\n\r\n"
      "GET /admin HTTP/1.1\r\n\r\n...",
      400, "header name");
  expect_refused(
      "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n"
      "3\r\nabc\r\n0\r\n\r\n",
      400, "header name");
  expect_refused("GET / HTTP/1.1\r\nHost\t: x\r\n\r\n", 400);
  expect_refused("GET / HTTP/1.1\r\n Host: x\r\n\r\n", 400, "header name");
}

// RFC 9110 §6.2, RFC 9112 §2.3, §3: only HTTP/1.0 and 1.1 are spoken here; a request line
// without a version is malformed.
TEST(HttpTest, OtherVersionsGet505AndNoVersion400) {
  for (std::string_view version : {"HTTP/9.9", "HTTP/2.0", "HTTP/1.2", "HTTP/0.9"}) {
    expect_refused("GET / " + std::string(version) + "\r\nHost: x\r\n\r\n", 505);
  }
  expect_refused("GET /\r\nHost: x\r\n\r\n", 400, "no HTTP version");
  expect_refused("GET /api/v1/system/health?x=1\n\n", 400, "no HTTP version");
  for (std::string_view ok : {"GET / HTTP/1.0\r\n\r\n", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"}) {
    RequestParser p;
    EXPECT_EQ(feed_whole(p, ok), RequestParser::State::kComplete) << ok;
  }
}

// RFC 9112 §6.1, §6.3: only chunked is decoded, so it must be the only coding (another one
// is 501) and the last (else the body's end is unknown: 400).
TEST(HttpTest, TransferCodingsOtherThanChunkedAreRefused) {
  const std::string head = "POST /x HTTP/1.1\r\nHost: x\r\n";
  const std::string body = "\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
  expect_refused(head + "Transfer-Encoding: gzip, chunked" + body, 501, "\"gzip\"");
  expect_refused(head + "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked" + body, 501);
  expect_refused(head + "Transfer-Encoding: chunked, gzip" + body, 400, "end with chunked");
  expect_refused(head + "Transfer-Encoding: gzip" + body, 400, "end with chunked");
  expect_refused(head + "Transfer-Encoding: chunked, chunked" + body, 400, "more than once");
  expect_refused(head + "Transfer-Encoding: ," + body, 400);
  expect_refused("POST /x HTTP/1.0\r\nTransfer-Encoding: chunked" + body, 400, "HTTP/1.0");
  RequestParser p;
  ASSERT_EQ(feed_whole(p, head + "Transfer-Encoding: Chunked" + body),
            RequestParser::State::kComplete);
  EXPECT_EQ(p.request().body, "abc");
}

// RFC 9112 §3.2, RFC 6455 §11.3.1 and §11.3.5: Host and the WebSocket key and version appear
// once. Other repeated headers are one list, as RFC 9110 §5.3 joins them.
TEST(HttpTest, RepeatedSingleHeadersGet400AndListsAreJoined) {
  const std::string upgrade(kUpgrade.substr(0, kUpgrade.size() - 2));  // without the blank line
  expect_refused(upgrade + "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\n\r\n", 400,
                 "sec-websocket-key");
  expect_refused(upgrade + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", 400,
                 "sec-websocket-key");
  expect_refused(upgrade + "Sec-WebSocket-Version: 8\r\n\r\n", 400, "sec-websocket-version");
  expect_refused(upgrade + "host: evil.example\r\n\r\n", 400, "host");
  RequestParser p;
  ASSERT_EQ(feed_whole(p,
                       "GET / HTTP/1.1\r\nConnection: keep-alive\r\nX: 1\r\n"
                       "connection: Upgrade\r\n\r\n"),
            RequestParser::State::kComplete);
  EXPECT_EQ(p.request().header("connection"), "keep-alive, Upgrade");
  EXPECT_EQ(p.request().headers.size(), 2u);
}

// A parameter whose escapes do not decode is refused by name, not taken as absent (a
// `token=%zz` would otherwise connect anonymously).
TEST(HttpTest, MalformedQueryEscapesGet400NamingTheParameter) {
  expect_refused("GET /api/v1/reels/1/updates?limit=%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400,
                 "query parameter \"limit\"");
  expect_refused("GET /ws/websocket?vsn=2.0.0&token=abc%2 HTTP/1.1\r\nHost: x\r\n\r\n", 400,
                 "\"token\"");
  expect_refused("GET /x?a%g1=1 HTTP/1.1\r\nHost: x\r\n\r\n", 400, "\"a%g1\"");
  RequestParser p;
  ASSERT_EQ(feed_whole(p, "GET /x?limit=%31%30&flag&=&a=b+c HTTP/1.1\r\nHost: x\r\n\r\n"),
            RequestParser::State::kComplete);
  std::string v;
  ASSERT_TRUE(p.request().query_param("limit", &v));
  EXPECT_EQ(v, "10");
  ASSERT_TRUE(p.request().query_param("a", &v));
  EXPECT_EQ(v, "b c");
}

TEST(HttpTest, LimitsGive431And413) {
  Limits limits;
  limits.max_header_bytes = 256;
  limits.max_headers = 4;
  limits.max_body = 8;
  {
    RequestParser p(limits);
    std::size_t used = 0;
    std::string big = "GET / HTTP/1.1\r\nX-Big: " + std::string(300, 'a') + "\r\n\r\n";
    EXPECT_EQ(p.feed(big, &used), RequestParser::State::kError);
    EXPECT_EQ(p.error_status(), 431);
  }
  {
    RequestParser p(limits);
    std::size_t used = 0;
    std::string many = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n";
    EXPECT_EQ(p.feed(many, &used), RequestParser::State::kError);
    EXPECT_EQ(p.error_status(), 431);
  }
  {
    RequestParser p(limits);
    std::size_t used = 0;
    EXPECT_EQ(p.feed("POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\n", &used),
              RequestParser::State::kError);
    EXPECT_EQ(p.error_status(), 413);
  }
  {
    RequestParser p(limits);
    std::size_t used = 0;
    std::string chunked =
        "POST / HTTP/1.1\r\nTransfer-Encoding: "
        "chunked\r\n\r\n5\r\n12345\r\n5\r\n67890\r\n0\r\n\r\n";
    EXPECT_EQ(p.feed(chunked, &used), RequestParser::State::kError);
    EXPECT_EQ(p.error_status(), 413);
  }
}

TEST(HttpTest, ErrorStaysAnError) {
  RequestParser p;
  std::size_t used = 0;
  ASSERT_EQ(p.feed("NOPE\r\n\r\n", &used), RequestParser::State::kError);
  EXPECT_EQ(p.feed("GET / HTTP/1.1\r\n\r\n", &used), RequestParser::State::kError);
  EXPECT_EQ(used, 0u);
}

TEST(HttpTest, PercentDecoding) {
  std::string out;
  EXPECT_TRUE(percent_decode("a%20b+c", &out, false));
  EXPECT_EQ(out, "a b+c");
  EXPECT_TRUE(percent_decode("a%20b+c", &out, true));
  EXPECT_EQ(out, "a b c");
  EXPECT_FALSE(percent_decode("%2", &out, false));
  EXPECT_FALSE(percent_decode("%", &out, false));
  EXPECT_FALSE(percent_decode("%g0", &out, false));
}

TEST(HttpTest, Responses) {
  std::string r = response(200, "application/json", "{}");
  EXPECT_EQ(r, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
  std::string e = error_response(404, "no route \"/x\"", true);
  EXPECT_NE(e.find("HTTP/1.1 404 Not Found\r\n"), std::string::npos);
  EXPECT_NE(e.find("Connection: close\r\n"), std::string::npos);
  EXPECT_NE(e.find(R"("message":"no route \"/x\"")"), std::string::npos) << e;
  EXPECT_NE(e.find(R"("status":404)"), std::string::npos) << e;
}

}  // namespace
}  // namespace kronop::daemon::http
