// The WebSocket codec: the opening handshake (accepted, and each reason it is refused), the
// Phoenix subprotocol and its auth token, the client frame reader case by case along the
// Autobahn testsuite's categories (framing, ping/pong, reserved bits, opcodes,
// fragmentation, UTF-8, close handling, message size), and the server frame writer.
//
// Every frame stream is fed the way the server feeds it (keep the unconsumed tail, append
// the next read) whole, one byte at a time, split at every byte boundary and in random
// chunks; the events must be the same each time.
#include "websocket.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <ostream>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace kronop::daemon::ws {
namespace {

using namespace std::string_literals;

// ---- Client frames, built by hand so that broken ones can be built too --------------------

constexpr uint8_t kFin = 0x80;
constexpr uint8_t kOpCont = 0x0, kOpText = 0x1, kOpBinary = 0x2, kOpClose = 0x8, kOpPing = 0x9,
                  kOpPong = 0xA;

enum class Len { kShortest, k16, k64 };

struct FrameOptions {
  Len len = Len::kShortest;
  bool masked = true;
};

// A client frame: first byte as given (FIN, RSV, opcode), then length, mask key, payload.
std::string frame(uint8_t first_byte, std::string_view payload, FrameOptions opt = {}) {
  std::string out(1, static_cast<char>(first_byte));
  const uint8_t mask_bit = opt.masked ? 0x80 : 0;
  const uint64_t n = payload.size();
  Len len = opt.len;
  if (len == Len::kShortest) len = n < 126 ? Len::kShortest : n <= 0xFFFF ? Len::k16 : Len::k64;
  if (len == Len::kShortest) {
    out += static_cast<char>(mask_bit | n);
  } else {
    const int bytes = len == Len::k16 ? 2 : 8;
    out += static_cast<char>(mask_bit | (len == Len::k16 ? 126 : 127));
    for (int i = bytes - 1; i >= 0; --i) out += static_cast<char>(n >> (8 * i));
  }
  // A different key per payload size, so that no key lines up with the unmasking loop.
  const char key[4] = {0x37, static_cast<char>(0xFA), 0x21, static_cast<char>(0x3D + n % 7)};
  if (opt.masked) out.append(key, 4);
  for (std::size_t i = 0; i < payload.size(); ++i) {
    out += opt.masked ? static_cast<char>(payload[i] ^ key[i % 4]) : payload[i];
  }
  return out;
}

std::string text(std::string_view s, bool fin = true) {
  return frame((fin ? kFin : 0) | kOpText, s);
}
std::string binary(std::string_view s, bool fin = true) {
  return frame((fin ? kFin : 0) | kOpBinary, s);
}
std::string cont(std::string_view s, bool fin) { return frame((fin ? kFin : 0) | kOpCont, s); }
std::string ping(std::string_view s) { return frame(kFin | kOpPing, s); }
std::string pong(std::string_view s) { return frame(kFin | kOpPong, s); }
std::string close_payload(uint16_t code, std::string_view reason = {}) {
  std::string p{static_cast<char>(code >> 8), static_cast<char>(code & 0xFF)};
  return p.append(reason);
}
std::string client_close(uint16_t code, std::string_view reason = {}) {
  return frame(kFin | kOpClose, close_payload(code, reason));
}

// A server frame (unmasked) made into what a client would send: mask bit and key added, so
// the writer's output can be read back by the reader.
std::string as_client_frame(const std::string &server_frame) {
  const auto len7 = static_cast<uint8_t>(server_frame[1]);
  const std::size_t header = len7 == 126 ? 4 : len7 == 127 ? 10 : 2;
  return frame(static_cast<uint8_t>(server_frame[0]),
               std::string_view(server_frame).substr(header));
}

// ---- Recording the reader's events --------------------------------------------------------

struct Event {
  std::string kind;  // text, binary, ping, pong, close, error
  int code = 0;      // close: the code; error: the close code to send
  std::string data;  // message, payload or close reason (not compared for errors)

  bool operator==(const Event &o) const {
    return kind == o.kind && code == o.code && (kind == "error" || data == o.data);
  }
};

std::ostream &operator<<(std::ostream &os, const Event &e) {
  os << e.kind;
  if (e.kind == "close" || e.kind == "error") os << ' ' << e.code;
  os << " \"";
  const std::size_t shown = std::min<std::size_t>(e.data.size(), 40);
  for (std::size_t i = 0; i < shown; ++i) {
    const auto c = static_cast<unsigned char>(e.data[i]);
    if (c >= 0x20 && c < 0x7F) {
      os << static_cast<char>(c);
    } else {
      static const char hex[] = "0123456789abcdef";
      os << "\\x" << hex[c >> 4] << hex[c & 15];
    }
  }
  if (shown < e.data.size()) os << "...(" << e.data.size() << " bytes)";
  return os << '"';
}

Event Text(std::string s) { return {"text", 0, std::move(s)}; }
Event Binary(std::string s) { return {"binary", 0, std::move(s)}; }
Event Ping(std::string s) { return {"ping", 0, std::move(s)}; }
Event Pong(std::string s) { return {"pong", 0, std::move(s)}; }
Event Close(int code, std::string reason = {}) { return {"close", code, std::move(reason)}; }
Event Error(int code) { return {"error", code, {}}; }

using Events = std::vector<Event>;

class Recorder : public FrameSink {
 public:
  Events events;
  // When set: calls reader_to_stop->stop() after the first event of kind stop_on.
  FrameReader *reader_to_stop = nullptr;
  std::string stop_on;

  void on_text(std::string_view m) override { add({"text", 0, std::string(m)}); }
  void on_binary(std::string_view m) override { add({"binary", 0, std::string(m)}); }
  void on_ping(std::string_view p) override { add({"ping", 0, std::string(p)}); }
  void on_pong(std::string_view p) override { add({"pong", 0, std::string(p)}); }
  void on_close(uint16_t code, std::string_view reason) override {
    add({"close", code, std::string(reason)});
  }
  void on_protocol_error(uint16_t code, std::string_view reason) override {
    EXPECT_FALSE(reason.empty()) << "a protocol error needs a reason for the close frame";
    EXPECT_LE(reason.size(), 123u) << "the reason must fit a close frame";
    add({"error", code, std::string(reason)});
  }

 private:
  void add(Event e) {
    EXPECT_FALSE(ended_) << "event after close or error: " << e;
    ended_ = ended_ || e.kind == "close" || e.kind == "error";
    const bool stop = reader_to_stop != nullptr && e.kind == stop_on;
    events.push_back(std::move(e));
    if (stop) reader_to_stop->stop();
  }
  bool ended_ = false;
};

// One connection as the server drives it: the unconsumed tail is kept and the next read is
// appended to it.
class Connection {
 public:
  explicit Connection(uint32_t max_message = FrameReader::kDefaultMaxMessage)
      : reader(max_message) {}

  void receive(std::string_view bytes) {
    pending.append(bytes);
    // Bytes left unconsumed must come back unchanged (still masked). Checked on small
    // tails only: a copy per byte of a 64 KiB frame fed byte by byte would be quadratic.
    const bool check_tail = pending.size() <= 4096;
    const std::string before = check_tail ? pending : std::string();
    const std::size_t used =
        reader.consume(std::span<char>(pending.data(), pending.size()), assembly, sink);
    ASSERT_LE(used, pending.size());
    if (check_tail) {
      EXPECT_EQ(pending.substr(used), before.substr(used)) << "consume() changed the tail";
    }
    pending.erase(0, used);
    EXPECT_EQ(assembly != nullptr, reader.message_in_flight());
    if (reader.finished()) {
      EXPECT_TRUE(pending.empty());
    }
    max_pending = std::max(max_pending, pending.size());
  }

  FrameReader reader;
  std::unique_ptr<std::string> assembly;
  Recorder sink;
  std::string pending;
  std::size_t max_pending = 0;
};

Events feed_in_chunks(const std::string &stream, const std::vector<std::size_t> &chunks,
                      uint32_t max_message) {
  Connection c(max_message);
  std::size_t pos = 0;
  for (std::size_t n : chunks) {
    c.receive(std::string_view(stream).substr(pos, n));
    pos += n;
  }
  if (pos < stream.size()) c.receive(std::string_view(stream).substr(pos));
  return c.sink.events;
}

Events feed_whole(const std::string &stream,
                  uint32_t max_message = FrameReader::kDefaultMaxMessage) {
  return feed_in_chunks(stream, {}, max_message);
}

// The events of `stream`, after checking that every way of splitting it gives the same.
Events events_of(const std::string &stream,
                 uint32_t max_message = FrameReader::kDefaultMaxMessage) {
  const Events whole = feed_whole(stream, max_message);
  if (stream.size() <= 300 * 1024) {
    EXPECT_EQ(feed_in_chunks(stream, std::vector<std::size_t>(stream.size(), 1), max_message),
              whole)
        << "fed one byte at a time";
  }
  if (stream.size() <= 2048) {
    for (std::size_t cut = 1; cut < stream.size(); ++cut) {
      EXPECT_EQ(feed_in_chunks(stream, {cut}, max_message), whole) << "split at " << cut;
    }
  }
  std::mt19937 rng(static_cast<uint32_t>(stream.size()));
  for (int round = 0; round < 20; ++round) {
    std::vector<std::size_t> chunks;
    std::uniform_int_distribution<std::size_t> size(1, round < 10 ? 7 : 300);
    for (std::size_t total = 0; total < stream.size(); total += chunks.back()) {
      chunks.push_back(size(rng));
    }
    EXPECT_EQ(feed_in_chunks(stream, chunks, max_message), whole) << "random chunks " << round;
  }
  return whole;
}

// ---- Handshake ----------------------------------------------------------------------------

HandshakeRequest valid_request() {
  HandshakeRequest r;
  r.method = "GET";
  r.upgrade = "websocket";
  r.connection = "Upgrade";
  r.version = "13";
  r.key = "dGhlIHNhbXBsZSBub25jZQ==";
  return r;
}

HandshakeResult handshake(const HandshakeRequest &r, const HandshakeOptions &o = {}) {
  HandshakeResult result = accept_handshake(r, o);
  if (!result.accepted()) {
    EXPECT_FALSE(result.reason.empty());
    EXPECT_EQ(result.response, http_error_response(result.status, result.reason));
  }
  return result;
}

TEST(WebSocketHandshake, AcceptKeyOfTheRfc6455Example) {
  // RFC 6455 §1.3, and what Phoenix answered for the same key in the reference transcript.
  EXPECT_EQ(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  EXPECT_EQ(accept_key("x3JJHMbDL1EzLkh9GBhXDw=="), "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
}

TEST(WebSocketHandshake, AcceptsAndBuildsThe101) {
  const HandshakeResult r = handshake(valid_request());
  ASSERT_TRUE(r.accepted()) << r.reason;
  EXPECT_EQ(r.status, 101);
  EXPECT_TRUE(r.reason.empty());
  EXPECT_EQ(r.response,
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
            "\r\n");
  EXPECT_FALSE(r.phoenix);
  EXPECT_FALSE(r.auth_token.has_value());
}

TEST(WebSocketHandshake, UpgradeAndConnectionAreCaseInsensitiveTokenLists) {
  for (std::string_view connection :
       {"keep-alive, Upgrade", "Upgrade, keep-alive", "UPGRADE", "upgrade",
        " keep-alive ,\tupgrade ", "keep-alive,,Upgrade"}) {
    HandshakeRequest req = valid_request();
    req.connection = connection;
    EXPECT_TRUE(handshake(req).accepted()) << "Connection: " << connection;
  }
  for (std::string_view upgrade : {"WebSocket", "WEBSOCKET", "h2c, websocket"}) {
    HandshakeRequest req = valid_request();
    req.upgrade = upgrade;
    EXPECT_TRUE(handshake(req).accepted()) << "Upgrade: " << upgrade;
  }
}

TEST(WebSocketHandshake, RefusesBadUpgradeOrConnectionWith400) {
  for (std::string_view connection : {"", "keep-alive", "Upgrades", "upgrade-insecure", "close"}) {
    HandshakeRequest req = valid_request();
    req.connection = connection;
    EXPECT_EQ(handshake(req).status, 400) << "Connection: " << connection;
  }
  for (std::string_view upgrade : {"", "h2c", "websockets", "web socket"}) {
    HandshakeRequest req = valid_request();
    req.upgrade = upgrade;
    EXPECT_EQ(handshake(req).status, 400) << "Upgrade: " << upgrade;
  }
}

TEST(WebSocketHandshake, RefusesOtherMethodsAndOldHttpWith400) {
  for (std::string_view method : {"POST", "HEAD", "get", ""}) {
    HandshakeRequest req = valid_request();
    req.method = method;
    EXPECT_EQ(handshake(req).status, 400) << method;
  }
  HandshakeRequest req = valid_request();
  req.http_minor = 0;
  const HandshakeResult r = handshake(req);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.response.substr(0, 25), "HTTP/1.1 400 Bad Request\r");
  req.http_major = 0;
  req.http_minor = 9;
  EXPECT_EQ(handshake(req).status, 400);
}

TEST(WebSocketHandshake, OtherVersionsGet426NamingVersion13) {
  for (std::string_view version : {"8", "12", "14", "", "13, 8", "thirteen"}) {
    HandshakeRequest req = valid_request();
    req.version = version;
    const HandshakeResult r = handshake(req);
    EXPECT_EQ(r.status, 426) << "version " << version;
    EXPECT_EQ(r.response.rfind("HTTP/1.1 426 Upgrade Required\r\n", 0), 0u);
    EXPECT_NE(r.response.find("\r\nSec-WebSocket-Version: 13\r\n"), std::string::npos);
  }
  HandshakeRequest req = valid_request();
  req.version = " 13 ";  // optional whitespace around a header value
  EXPECT_TRUE(handshake(req).accepted());
}

TEST(WebSocketHandshake, KeyMustBeBase64Of16Bytes) {
  for (std::string_view key : {
           "",
           "dGhlIHNhbXBsZSBub25jZQ",        // padding missing
           "dGhlIHNhbXBsZSBub25jZQ=",       // half the padding
           "AAAAAAAAAAAAAAAAAAAA",          // 15 bytes
           "AAAAAAAAAAAAAAAAAAAAAAAA",      // 18 bytes, same length as a good key
           "AAAAAAAAAAAAAAAAAAAAAAAAAAA=",  // 20 bytes
           "dGhlIHNhbXBsZSBub25jZ!==",      // not base64
           "dGhl=HNhbXBsZSBub25jZQ==",      // padding inside
           "dGhlIHNh bXBsZSBub25jZQ==",     // space inside
           "dGhlIHNhbXBsZSBub25jZQ==, dGhlIHNhbXBsZSBub25jZQ==",  // sent twice
           "dGhlIHNhbXBsZSBub25jZ-==",                            // base64url alphabet
       }) {
    HandshakeRequest req = valid_request();
    req.key = key;
    EXPECT_EQ(handshake(req).status, 400) << "key " << key;
  }
  HandshakeRequest req = valid_request();
  req.key = " dGhlIHNhbXBsZSBub25jZQ==\t";
  const HandshakeResult r = handshake(req);
  ASSERT_TRUE(r.accepted());
  EXPECT_NE(r.response.find("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
            std::string::npos);
}

TEST(WebSocketHandshake, OriginAllowList) {
  HandshakeOptions opts;
  opts.allowed_origins = {"https://app.example.com", "http://localhost:3000"};
  HandshakeRequest req = valid_request();
  for (std::string_view origin :
       {"https://app.example.com", "HTTPS://APP.EXAMPLE.COM", "http://localhost:3000", ""}) {
    req.origin = origin;
    EXPECT_TRUE(handshake(req, opts).accepted()) << "origin " << origin;
  }
  for (std::string_view origin :
       {"https://evil.example.com", "null", "https://app.example.com.evil", "http://localhost:3001",
        "https://app.example.co"}) {
    req.origin = origin;
    const HandshakeResult r = handshake(req, opts);
    EXPECT_EQ(r.status, 403) << "origin " << origin;
    EXPECT_EQ(r.response.rfind("HTTP/1.1 403 Forbidden\r\n", 0), 0u);
  }
  req.origin = "https://evil.example.com";
  EXPECT_TRUE(handshake(req, HandshakeOptions{}).accepted()) << "an empty list allows any";
}

TEST(WebSocketHandshake, ErrorResponseIsCompleteAndCloses) {
  EXPECT_EQ(http_error_response(400, "bad key"),
            "HTTP/1.1 400 Bad Request\r\n"
            "Connection: close\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Length: 8\r\n"
            "\r\n"
            "bad key\n");
  EXPECT_EQ(http_error_response(426, "v"),
            "HTTP/1.1 426 Upgrade Required\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade, close\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Length: 2\r\n"
            "\r\n"
            "v\n");
  EXPECT_EQ(http_error_response(404, "").rfind("HTTP/1.1 404 Not Found\r\n", 0), 0u);
  EXPECT_EQ(http_error_response(599, "x").rfind("HTTP/1.1 599 Error\r\n", 0), 0u);
}

TEST(WebSocketHandshake, PhoenixSubprotocolIsSelectedWhenOffered) {
  HandshakeRequest req = valid_request();
  req.protocol = "phoenix";
  HandshakeResult r = handshake(req);
  ASSERT_TRUE(r.accepted());
  EXPECT_TRUE(r.phoenix);
  EXPECT_FALSE(r.auth_token.has_value());
  EXPECT_EQ(r.response,
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
            "Sec-WebSocket-Protocol: phoenix\r\n"
            "\r\n");

  // Other subprotocols alone: none selected (RFC 6455 §4.2.2), no header.
  req.protocol = "chat, superchat";
  r = handshake(req);
  ASSERT_TRUE(r.accepted());
  EXPECT_FALSE(r.phoenix);
  EXPECT_EQ(r.response.find("Sec-WebSocket-Protocol"), std::string::npos);
}

TEST(WebSocketHandshake, PhoenixAuthTokenIsDecoded) {
  // What phoenix.js 1.8 sends: btoa(token) with the '=' padding stripped.
  const struct {
    std::string_view protocol;
    std::string token;
  } cases[] = {
      {"phoenix, base64url.bearer.phx.c2VjcmV0LXRva2Vu", "secret-token"},
      {"phoenix, base64url.bearer.phx.YWJjZA", "abcd"},    // "==" re-added
      {"phoenix, base64url.bearer.phx.YWJjZGU", "abcde"},  // "=" re-added
      {"phoenix, base64url.bearer.phx.YWJjZA==", "abcd"},  // padding kept: also fine
      {"phoenix,base64url.bearer.phx.+/8", "\xfb\xff"},    // the standard alphabet
      {"base64url.bearer.phx.++///g , phoenix", "\xfb\xef\xff\xfe"},
      {"phoenix, base64url.bearer.phx.U0ZNeU5UWS5nMmdEYlEvQUFBK3g", "SFMyNTY.g2gDbQ/AAA+x"},
      {"phoenix, base64url.bearer.phx.", ""},
  };
  for (const auto &c : cases) {
    HandshakeRequest req = valid_request();
    req.protocol = c.protocol;
    const HandshakeResult r = handshake(req);
    ASSERT_TRUE(r.accepted()) << c.protocol << ": " << r.reason;
    EXPECT_TRUE(r.phoenix) << c.protocol;
    ASSERT_TRUE(r.auth_token.has_value()) << c.protocol;
    EXPECT_EQ(*r.auth_token, c.token) << c.protocol;
    EXPECT_NE(r.response.find("\r\nSec-WebSocket-Protocol: phoenix\r\n"), std::string::npos);
  }

  // A token without "phoenix": handed over, but no subprotocol can be selected.
  HandshakeRequest req = valid_request();
  req.protocol = "base64url.bearer.phx.YWJjZA";
  const HandshakeResult r = handshake(req);
  ASSERT_TRUE(r.accepted());
  EXPECT_FALSE(r.phoenix);
  EXPECT_EQ(r.auth_token, "abcd");
  EXPECT_EQ(r.response.find("Sec-WebSocket-Protocol"), std::string::npos);
}

TEST(WebSocketHandshake, AuthTokenInEitherBase64Alphabet) {
  // phoenix.js writes btoa()'s standard alphabet despite the "base64url" prefix; other
  // clients write the URL-safe one. Both are taken.
  for (std::string_view protocol :
       {"phoenix, base64url.bearer.phx.YWJj-_8", "phoenix, base64url.bearer.phx.YWJj+/8"}) {
    HandshakeRequest req = valid_request();
    req.protocol = protocol;
    auto r = handshake(req);
    EXPECT_EQ(r.status, 101) << protocol;
    ASSERT_TRUE(r.auth_token) << protocol;
    EXPECT_EQ(*r.auth_token, std::string("abc\xfb\xff")) << protocol;
  }
}

TEST(WebSocketHandshake, MalformedAuthTokenIs400) {
  for (std::string_view protocol : {
           "phoenix, base64url.bearer.phx.a",          // 1 character left over
           "phoenix, base64url.bearer.phx.YW$j",       // not base64
           "phoenix, base64url.bearer.phx.YWJjZA===",  // too much padding
           "phoenix, base64url.bearer.phx.YWJj, base64url.bearer.phx.YWJj",  // two tokens
       }) {
    HandshakeRequest req = valid_request();
    req.protocol = protocol;
    EXPECT_EQ(handshake(req).status, 400) << protocol;
  }
}

// ---- Framing (Autobahn 1.x), lengths and partial input ------------------------------------

TEST(WebSocketFrames, TextAndBinaryOfEveryLengthEncoding) {
  constexpr uint32_t kMax = 1 << 20;
  for (std::size_t n : {0, 1, 125, 126, 127, 128, 65535, 65536, 100000}) {
    std::string payload(n, '*');
    for (std::size_t i = 0; i < n; ++i) payload[i] = static_cast<char>('a' + i % 26);
    EXPECT_EQ(events_of(text(payload), kMax), Events{Text(payload)}) << n;
    std::string bytes(n, '\0');
    for (std::size_t i = 0; i < n; ++i) bytes[i] = static_cast<char>(i * 7);
    EXPECT_EQ(feed_whole(binary(bytes), kMax), Events{Binary(bytes)}) << n;
  }
}

TEST(WebSocketFrames, LongerLengthEncodingsThanNeededAreAccepted) {
  EXPECT_EQ(events_of(frame(kFin | kOpText, "hello", {Len::k16})), Events{Text("hello")});
  EXPECT_EQ(events_of(frame(kFin | kOpText, "hello", {Len::k64})), Events{Text("hello")});
  EXPECT_EQ(events_of(frame(kFin | kOpBinary, "", {Len::k64})), Events{Binary("")});
  const std::string big(300, 'b');
  EXPECT_EQ(events_of(frame(kFin | kOpBinary, big, {Len::k64})), Events{Binary(big)});
}

TEST(WebSocketFrames, SixtyFourBitLengthWithHighBitIs1002) {
  // Header only: the reader must not wait for 2^63 bytes.
  const std::string header = "\x82\xff\x80\x00\x00\x00\x00\x00\x00\x05"s;
  EXPECT_EQ(events_of(header), Events{Error(1002)});
}

TEST(WebSocketFrames, ManyFramesInOneRead) {
  const std::string stream = text("a") + binary("bc") + ping("d") + pong("") + text("é");
  EXPECT_EQ(events_of(stream), (Events{Text("a"), Binary("bc"), Ping("d"), Pong(""), Text("é")}));
}

TEST(WebSocketFrames, ConsumesWholeFramesAndLeavesTheTailUntouched) {
  const std::string first = text("hello");
  const std::string second = binary(std::string(300, 'x'));
  for (std::size_t cut = 0; cut < second.size(); ++cut) {
    std::string buffer = first + second.substr(0, cut);
    const std::string original = buffer;
    FrameReader reader;
    std::unique_ptr<std::string> assembly;
    Recorder sink;
    const std::size_t used =
        reader.consume(std::span<char>(buffer.data(), buffer.size()), assembly, sink);
    ASSERT_EQ(used, first.size()) << cut;
    EXPECT_EQ(buffer.substr(used), original.substr(used)) << cut;
    EXPECT_EQ(sink.events, Events{Text("hello")});
  }
  FrameReader reader;
  std::unique_ptr<std::string> assembly;
  Recorder sink;
  std::string one = "\x81"s;
  EXPECT_EQ(reader.consume(std::span<char>(one.data(), one.size()), assembly, sink), 0u);
  EXPECT_EQ(reader.consume(std::span<char>(), assembly, sink), 0u);
  EXPECT_TRUE(sink.events.empty());
}

TEST(WebSocketFrames, EverySplitOfAMixedStreamGivesTheSameEvents) {
  const std::string stream = text("Hello", false) + ping("p1") + cont(", ", false) + pong("x") +
                             cont("wörld", true) + binary(std::string(200, '\x01')) +
                             frame(kFin | kOpText, "16-bit", {Len::k16}) +
                             frame(kFin | kOpBinary, "64", {Len::k64}) + client_close(1000, "bye") +
                             text("ignored after close");
  EXPECT_EQ(events_of(stream),
            (Events{Ping("p1"), Pong("x"), Text("Hello, wörld"), Binary(std::string(200, '\x01')),
                    Text("16-bit"), Binary("64"), Close(1000, "bye")}));
}

TEST(WebSocketFrames, UnmaskedClientFramesAre1002) {
  for (uint8_t first : {kFin | kOpText, kFin | kOpBinary, kFin | kOpPing, kFin | kOpPong,
                        kFin | kOpClose, int{kOpText}}) {
    const std::string stream =
        text("ok") + frame(first, "data", {Len::kShortest, false}) + text("no");
    EXPECT_EQ(events_of(stream), (Events{Text("ok"), Error(1002)})) << int{first};
  }
  // Judged from the first two bytes, before the payload.
  EXPECT_EQ(events_of("\x81\x05"s), Events{Error(1002)});
}

// ---- Ping and pong (Autobahn 2.x) --------------------------------------------------------

TEST(WebSocketPingPong, PingsAreReportedWithTheirPayload) {
  std::string bytes(125, '\0');
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(255 - i);
  EXPECT_EQ(events_of(ping("")), Events{Ping("")});
  EXPECT_EQ(events_of(ping("Hello, world!")), Events{Ping("Hello, world!")});
  EXPECT_EQ(events_of(ping(bytes)), Events{Ping(bytes)});
  std::string ten;
  Events expected;
  for (int i = 0; i < 10; ++i) {
    ten += ping("ping " + std::to_string(i));
    expected.push_back(Ping("ping " + std::to_string(i)));
  }
  EXPECT_EQ(events_of(ten), expected);
  EXPECT_EQ(pong_frame("abc"),
            "\x8a\x03"s
            "abc");  // as in the reference transcript
}

TEST(WebSocketPingPong, PingOver125BytesIs1002) {
  EXPECT_EQ(events_of(ping(std::string(126, 'p'))), Events{Error(1002)});
  // Even a short payload in a longer length encoding: the 7-bit field must hold a control
  // frame's length (as ws and uWebSockets require).
  EXPECT_EQ(events_of(frame(kFin | kOpPing, "abc", {Len::k16})), Events{Error(1002)});
  EXPECT_EQ(events_of("\x89\xfe"s), Events{Error(1002)}) << "judged from the first 2 bytes";
}

TEST(WebSocketPingPong, UnsolicitedPongsAreReportedAndHarmless) {
  EXPECT_EQ(events_of(pong("unsolicited") + text("still open")),
            (Events{Pong("unsolicited"), Text("still open")}));
  EXPECT_EQ(events_of(pong(std::string(126, 'p'))), Events{Error(1002)});
}

// ---- Reserved bits (Autobahn 3.x) and opcodes (Autobahn 4.x) ------------------------------

TEST(WebSocketReservedBits, AnyReservedBitIs1002) {
  for (uint8_t rsv : {0x40, 0x20, 0x10, 0x60, 0x70}) {
    for (uint8_t op : {kOpText, kOpBinary, kOpPing, kOpPong, kOpClose}) {
      const std::string payload = op == kOpClose ? close_payload(1000) : "Hello";
      const std::string stream =
          text("ok") + frame(static_cast<uint8_t>(kFin | rsv | op), payload) + ping("after");
      EXPECT_EQ(events_of(stream), (Events{Text("ok"), Error(1002)}))
          << "rsv " << int{rsv} << " op " << int{op};
    }
    // On a continuation, inside a fragmented message.
    const std::string stream = text("a", false) + frame(static_cast<uint8_t>(kFin | rsv), "b");
    EXPECT_EQ(events_of(stream), Events{Error(1002)});
  }
}

TEST(WebSocketOpcodes, ReservedOpcodesAre1002) {
  for (uint8_t op : {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF}) {
    for (const std::string &payload : {""s, "reserved"s}) {
      const std::string stream = text("ok") + frame(kFin | op, payload) + ping("after");
      EXPECT_EQ(events_of(stream), (Events{Text("ok"), Error(1002)})) << int{op};
    }
    EXPECT_EQ(events_of(frame(op, "x")), Events{Error(1002)}) << "no FIN, op " << int{op};
  }
}

// ---- Fragmentation (Autobahn 5.x) --------------------------------------------------------

TEST(WebSocketFragmentation, FragmentsAreReassembled) {
  EXPECT_EQ(events_of(text("Hel", false) + cont("lo", true)), Events{Text("Hello")});
  EXPECT_EQ(events_of(binary("\x00\x01"s, false) + cont("\x02"s, false) + cont("\x03"s, true)),
            Events{Binary("\x00\x01\x02\x03"s)});
  EXPECT_EQ(events_of(text("", false) + cont("", false) + cont("", true)), Events{Text("")});

  std::string message, stream;
  for (int i = 0; i < 100; ++i) message += static_cast<char>('A' + i % 26);
  for (std::size_t i = 0; i < message.size(); ++i) {
    const bool last = i + 1 == message.size();
    stream += i == 0 ? text(message.substr(0, 1), false) : cont(message.substr(i, 1), last);
  }
  EXPECT_EQ(events_of(stream), Events{Text(message)});

  // One message after another: no state carried over.
  EXPECT_EQ(events_of(text("ab", false) + cont("c", true) + binary("d", false) + cont("e", true) +
                      text("f")),
            (Events{Text("abc"), Binary("de"), Text("f")}));
}

TEST(WebSocketFragmentation, ControlFramesMayInterleave) {
  EXPECT_EQ(events_of(text("fragment1", false) + ping("p") + cont("fragment2", true)),
            (Events{Ping("p"), Text("fragment1fragment2")}));
  EXPECT_EQ(events_of(text("f1", false) + pong("q") + cont("f2", false) + ping("r") + ping("s") +
                      cont("f3", true)),
            (Events{Pong("q"), Ping("r"), Ping("s"), Text("f1f2f3")}));
  // A close inside a message ends everything; the partial message is dropped.
  EXPECT_EQ(events_of(binary("part", false) + client_close(1001) + cont("rest", true)),
            Events{Close(1001)});
}

// on_frame: every complete frame, whatever it makes (the server's rate limit counts these),
// and a sink that stops the reader there refuses the frame.
class FrameCounter : public Recorder {
 public:
  std::string opcodes;  // one hex digit per frame
  std::size_t stop_after = SIZE_MAX;
  FrameReader *reader = nullptr;
  void on_frame(Opcode op) override {
    opcodes += "0123456789abcdef"[static_cast<int>(op)];
    if (opcodes.size() >= stop_after) reader->stop();
  }
};

TEST(WebSocketFragmentation, EveryFrameIsReportedToOnFrame) {
  std::string stream = text("a", false) + cont("", false) + pong("q") + cont("", false) +
                       ping("p") + cont("b", true) + pong("") + binary("c") + client_close(1000);
  FrameReader reader;
  std::unique_ptr<std::string> assembly;
  FrameCounter sink;
  EXPECT_EQ(reader.consume(std::span<char>(stream.data(), stream.size()), assembly, sink),
            stream.size());
  EXPECT_EQ(sink.opcodes, "10a090a28");
  EXPECT_EQ(sink.events,
            (Events{Pong("q"), Ping("p"), Text("ab"), Pong(""), Binary("c"), Close(1000)}));

  // Refused at the third frame (a pong): it makes no event, and nothing after it does.
  stream = text("a") + ping("p") + pong("q") + text("b");
  FrameReader refusing;
  FrameCounter counter;
  counter.reader = &refusing;
  counter.stop_after = 3;
  EXPECT_EQ(refusing.consume(std::span<char>(stream.data(), stream.size()), assembly, counter),
            stream.size());
  EXPECT_EQ(counter.opcodes, "19a");
  EXPECT_EQ(counter.events, (Events{Text("a"), Ping("p")}));
  EXPECT_TRUE(refusing.finished());
}

TEST(WebSocketFragmentation, ContinuationWithoutAMessageIs1002) {
  EXPECT_EQ(events_of(cont("orphan", true)), Events{Error(1002)});
  EXPECT_EQ(events_of(cont("orphan", false) + cont("x", true)), Events{Error(1002)});
  EXPECT_EQ(events_of(text("done") + cont("orphan", true)), (Events{Text("done"), Error(1002)}));
}

TEST(WebSocketFragmentation, NewMessageInsideAFragmentedOneIs1002) {
  EXPECT_EQ(events_of(text("a", false) + text("b")), Events{Error(1002)});
  EXPECT_EQ(events_of(text("a", false) + binary("b", false)), Events{Error(1002)});
  EXPECT_EQ(events_of(binary("a", false) + ping("p") + text("b", true)),
            (Events{Ping("p"), Error(1002)}));
}

TEST(WebSocketFragmentation, FragmentedControlFramesAre1002) {
  EXPECT_EQ(events_of(frame(kOpPing, "fragmented") + cont("ping", true)), Events{Error(1002)});
  EXPECT_EQ(events_of(frame(kOpPong, "x") + cont("y", true)), Events{Error(1002)});
  EXPECT_EQ(events_of(frame(kOpClose, close_payload(1000)) + cont("", true)), Events{Error(1002)});
}

TEST(WebSocketFragmentation, AssemblyBufferExistsOnlyWhileAMessageIsInFlight) {
  Connection c;
  c.receive(text("x"));
  EXPECT_EQ(c.assembly, nullptr) << "an unfragmented message needs no buffer";
  c.receive(text("first ", false));
  ASSERT_NE(c.assembly, nullptr);
  EXPECT_EQ(*c.assembly, "first ");
  EXPECT_TRUE(c.reader.message_in_flight());
  c.receive(ping("p"));
  EXPECT_NE(c.assembly, nullptr);
  c.receive(cont("second", true));
  EXPECT_EQ(c.assembly, nullptr) << "freed once the message is delivered";
  EXPECT_FALSE(c.reader.message_in_flight());
  c.receive(binary("y", false));
  EXPECT_NE(c.assembly, nullptr);
  c.receive(client_close(1000));
  EXPECT_EQ(c.assembly, nullptr) << "freed on close";
  EXPECT_EQ(c.sink.events, (Events{Text("x"), Ping("p"), Text("first second"), Close(1000)}));

  Connection e;
  e.receive(text("a", false));
  e.receive(frame(kFin | 0x40 | kOpCont, "b"));
  EXPECT_EQ(e.assembly, nullptr) << "freed on error";
}

TEST(WebSocketFrames, ReaderStateIsSmall) {
  // A million connections: the per-connection parser state must stay a few words.
  EXPECT_LE(sizeof(FrameReader), 12u);
}

// ---- UTF-8 (Autobahn 6.x) ----------------------------------------------------------------

const std::string kValidUtf8[] = {
    "",
    "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!",
    "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5",  // κόσμε
    "\xc2\x80",                                      // U+0080, first 2-byte
    "\xdf\xbf",                                      // U+07FF, last 2-byte
    "\xe0\xa0\x80",                                  // U+0800, first 3-byte
    "\xed\x9f\xbf",                                  // U+D7FF, before the surrogates
    "\xee\x80\x80",                                  // U+E000, after the surrogates
    "\xef\xbb\xbf",                                  // U+FEFF (BOM)
    "\xef\xbf\xbe",                                  // U+FFFE: a noncharacter, still valid
    "\xef\xbf\xbf",                                  // U+FFFF
    "\xf0\x90\x80\x80",                              // U+10000, first 4-byte
    "\xf4\x8f\xbf\xbf",                              // U+10FFFF, the last code point
    "\xf0\x9f\x98\x80 emoji, \xe2\x82\xac euro",
};

const std::string kInvalidUtf8[] = {
    "\xc0\xaf",                  // overlong '/'
    "\xc1\xbf",                  // overlong
    "\xe0\x80\xaf",              // overlong '/'
    "\xe0\x9f\xbf",              // overlong U+07FF
    "\xf0\x80\x80\xaf",          // overlong '/'
    "\xf0\x8f\xbf\xbf",          // overlong U+FFFF
    "\xf8\x88\x80\x80\x80",      // 5-byte form
    "\xfc\x84\x80\x80\x80\x80",  // 6-byte form
    "\xed\xa0\x80",              // U+D800, a surrogate
    "\xed\xad\xbf",              // U+DB7F
    "\xed\xbf\xbf",              // U+DFFF
    "\xed\xa0\x80\xed\xb0\x80",  // a surrogate pair (CESU-8)
    "\xf4\x90\x80\x80",          // U+110000, beyond Unicode
    "\xf5\x80\x80\x80",
    "\xfe",
    "\xff",
    "\x80",  // lone continuation
    "\xbf",
    "\xc2",  // truncated at the end
    "\xe0\xa0",
    "\xf0\x90\x80",
    "\xe0\xa0"
    "a",  // truncated in the middle
    "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"
    "edited",  // Autobahn 6.3.1
};

TEST(WebSocketUtf8, ValidTextIsDeliveredWholeOrFragmented) {
  for (const std::string &s : kValidUtf8) {
    SCOPED_TRACE(::testing::PrintToString(Text(s)));
    EXPECT_EQ(events_of(text(s)), Events{Text(s)});
    // Split into two fragments at every byte, so every character is cut somewhere.
    for (std::size_t cut = 0; cut <= s.size(); ++cut) {
      EXPECT_EQ(feed_whole(text(s.substr(0, cut), false) + cont(s.substr(cut), true)),
                Events{Text(s)})
          << "cut " << cut;
    }
    // One byte per fragment.
    if (!s.empty()) {
      std::string stream = text(s.substr(0, 1), s.size() == 1);
      for (std::size_t i = 1; i < s.size(); ++i) stream += cont(s.substr(i, 1), i + 1 == s.size());
      EXPECT_EQ(events_of(stream), Events{Text(s)});
    }
  }
}

TEST(WebSocketUtf8, InvalidTextIs1007WholeOrFragmented) {
  for (const std::string &s : kInvalidUtf8) {
    SCOPED_TRACE(::testing::PrintToString(Text(s)));
    EXPECT_EQ(events_of(text(s) + text("after")), Events{Error(1007)});
    for (std::size_t cut = 0; cut <= s.size(); ++cut) {
      EXPECT_EQ(feed_whole(text(s.substr(0, cut), false) + cont(s.substr(cut), true)),
                Events{Error(1007)})
          << "cut " << cut;
    }
    std::string stream = text(s.substr(0, 1), s.size() == 1);
    for (std::size_t i = 1; i < s.size(); ++i) stream += cont(s.substr(i, 1), i + 1 == s.size());
    EXPECT_EQ(events_of(stream), Events{Error(1007)});
  }
  // Binary messages are not text: any bytes go.
  EXPECT_EQ(events_of(binary("\xc0\xaf\xff"s)), Events{Binary("\xc0\xaf\xff"s)});
}

TEST(WebSocketUtf8, FragmentsFailFastButACutCharacterWaits) {
  // Invalid already in the first fragment: refused before the message ends.
  Connection bad;
  bad.receive(text("valid \xc0\xaf", false));
  EXPECT_EQ(bad.sink.events, Events{Error(1007)});

  // A lead byte whose sequence cannot be completed by what follows.
  Connection mismatch;
  mismatch.receive(text("\xe0", false) + cont("a", false));
  EXPECT_EQ(mismatch.sink.events, Events{Error(1007)});

  // A fragment that ends inside a character is not judged until the rest arrives.
  Connection cut;
  cut.receive(text("\xce", false));
  cut.receive(cont("\xba\xe1\xbd", false));
  EXPECT_TRUE(cut.sink.events.empty());
  cut.receive(cont("\xb9", true));
  EXPECT_EQ(cut.sink.events, Events{Text("\xce\xba\xe1\xbd\xb9")});

  // ...and still fails at the end if the rest never completes it.
  Connection truncated;
  truncated.receive(text("ok\xf0\x90", false));
  EXPECT_TRUE(truncated.sink.events.empty());
  truncated.receive(cont("", true));
  EXPECT_EQ(truncated.sink.events, Events{Error(1007)});
}

// ---- Close handling (Autobahn 7.x) -------------------------------------------------------

TEST(WebSocketClose, CloseFramesAreReported) {
  EXPECT_EQ(events_of(frame(kFin | kOpClose, "")), Events{Close(kCloseNoStatus)});
  EXPECT_EQ(events_of(client_close(1000)), Events{Close(1000)});
  EXPECT_EQ(events_of(client_close(1000, "bye")), Events{Close(1000, "bye")});
  EXPECT_EQ(events_of(client_close(4001, "κόσμε")), Events{Close(4001, "κόσμε")});
  const std::string longest(123, 'r');
  EXPECT_EQ(events_of(client_close(1000, longest)), Events{Close(1000, longest)});
}

TEST(WebSocketClose, NothingIsReadAfterAClose) {
  Connection c;
  c.receive(text("before") + client_close(1000) + text("after") + ping("late"));
  EXPECT_EQ(c.sink.events, (Events{Text("before"), Close(1000)}));
  EXPECT_TRUE(c.reader.finished());
  EXPECT_TRUE(c.pending.empty());
  c.receive(text("much later"));  // consumed and dropped
  EXPECT_TRUE(c.pending.empty());
  EXPECT_EQ(c.sink.events.size(), 2u);
}

TEST(WebSocketClose, MalformedClosePayloads) {
  EXPECT_EQ(events_of(frame(kFin | kOpClose, "\x03"s)), Events{Error(1002)});
  EXPECT_EQ(events_of(frame(kFin | kOpClose, close_payload(1000, std::string(124, 'r')))),
            Events{Error(1002)})
      << "126-byte close payload";
  EXPECT_EQ(
      events_of(client_close(1000, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80")),
      Events{Error(1007)});
  EXPECT_EQ(events_of(client_close(1000, "\xff")), Events{Error(1007)});
}

TEST(WebSocketClose, EveryCodeIsJudged) {
  // The codes a close frame may carry, written out independently of valid_close_code().
  std::set<int> valid = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014};
  for (int code = 3000; code <= 4999; ++code) valid.insert(code);
  for (int code = 0; code <= 0xFFFF; ++code) {
    const bool ok = valid.count(code) != 0;
    EXPECT_EQ(valid_close_code(static_cast<uint16_t>(code)), ok) << code;
    const Events events = feed_whole(client_close(static_cast<uint16_t>(code), "r"));
    EXPECT_EQ(events, ok ? Events{Close(code, "r")} : Events{Error(1002)}) << code;
  }
  // Autobahn 7.9.x by name, with the ones only for reports (1005, 1006, 1015).
  for (uint16_t code : {0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535}) {
    EXPECT_EQ(events_of(client_close(code)), Events{Error(1002)}) << code;
  }
}

// ---- Message size limit (Autobahn 9.x scale, close 1009) ----------------------------------

TEST(WebSocketSizeLimit, MessagesOverTheLimitAre1009) {
  EXPECT_EQ(events_of(text(std::string(100, 'a')), 100), Events{Text(std::string(100, 'a'))});
  EXPECT_EQ(events_of(text(std::string(101, 'a')), 100), Events{Error(1009)});
  EXPECT_EQ(events_of(binary(std::string(101, 'a')), 100), Events{Error(1009)});
  EXPECT_EQ(events_of(text(std::string(50, 'a'), false) + cont(std::string(50, 'b'), true), 100),
            Events{Text(std::string(50, 'a') + std::string(50, 'b'))});
  EXPECT_EQ(events_of(text(std::string(50, 'a'), false) + cont(std::string(51, 'b'), true), 100),
            Events{Error(1009)});
  EXPECT_EQ(events_of(binary("", false) + cont(std::string(60, 'a'), false) +
                          cont(std::string(41, 'b'), false),
                      100),
            Events{Error(1009)});
  // Control frames do not count against the message limit.
  EXPECT_EQ(events_of(ping(std::string(125, 'p')), 10), Events{Ping(std::string(125, 'p'))});
  EXPECT_EQ(events_of(text("") + text("a"), 0), (Events{Text(""), Error(1009)}));
}

TEST(WebSocketSizeLimit, DefaultIs64KiB) {
  const std::string limit(64 * 1024, 'x');
  EXPECT_EQ(feed_whole(binary(limit)), Events{Binary(limit)});
  EXPECT_EQ(feed_whole(binary(limit + "x")), Events{Error(1009)});
  EXPECT_EQ(feed_whole(text(limit.substr(1), false) + cont("y", true)),
            Events{Text(limit.substr(1) + "y")});
  EXPECT_EQ(feed_whole(text(limit, false) + cont("y", true)), Events{Error(1009)});
}

TEST(WebSocketSizeLimit, RefusedFromTheHeaderWithoutWaitingForThePayload) {
  // Headers alone: the payloads never come.
  EXPECT_EQ(feed_whole("\x82\xfe\x11\x70"s, 1000), Events{Error(1009)});  // 4,464 > 1,000
  EXPECT_EQ(feed_whole("\x82\xff\x00\x00\x00\x01\x00\x00\x00\x00"s), Events{Error(1009)});
  Connection c(100);
  c.receive(text(std::string(60, 'a'), false));
  c.receive(cont(std::string(41, 'b'), true).substr(0, 2));
  EXPECT_EQ(c.sink.events, Events{Error(1009)});
}

TEST(WebSocketSizeLimit, TheCallerKeepsAtMostOneFrame) {
  // Fed one byte at a time, the tail the caller keeps never exceeds a frame at the limit.
  constexpr uint32_t kMax = 5000;
  Connection c(kMax);
  const std::string stream = binary(std::string(kMax, 'z')) + text(std::string(3000, 'a'), false) +
                             cont(std::string(2000, 'b'), true);
  for (char byte : stream) c.receive(std::string_view(&byte, 1));
  EXPECT_EQ(c.sink.events.size(), 2u);
  EXPECT_LT(c.max_pending, kMax + kMaxClientFrameHeader);
}

// ---- Stopping from a callback -------------------------------------------------------------

TEST(WebSocketFrames, StopFromACallbackEndsReading) {
  std::string stream = text("one") + text("two") + ping("three");
  FrameReader reader;
  std::unique_ptr<std::string> assembly;
  Recorder sink;
  sink.reader_to_stop = &reader;
  sink.stop_on = "text";
  EXPECT_EQ(reader.consume(std::span<char>(stream.data(), stream.size()), assembly, sink),
            stream.size());
  EXPECT_EQ(sink.events, Events{Text("one")});
  EXPECT_TRUE(reader.finished());

  // Stopped inside a fragmented message: the partial message is dropped and freed.
  Connection c;
  c.sink.reader_to_stop = &c.reader;
  c.sink.stop_on = "ping";
  c.receive(text("part", false) + ping("p") + cont("rest", true));
  EXPECT_EQ(c.sink.events, Events{Ping("p")});
  EXPECT_EQ(c.assembly, nullptr);
  EXPECT_FALSE(c.reader.message_in_flight());
  EXPECT_TRUE(c.pending.empty());
}

// ---- Writing ------------------------------------------------------------------------------

TEST(WebSocketWriter, FrameHeadersUseTheShortestLength) {
  EXPECT_EQ(frame_header(Opcode::kText, 0).view(), "\x81\x00"s);
  EXPECT_EQ(frame_header(Opcode::kText, 125).view(), "\x81\x7d"s);
  EXPECT_EQ(frame_header(Opcode::kText, 126).view(), "\x81\x7e\x00\x7e"s);
  EXPECT_EQ(frame_header(Opcode::kText, 213).view(), "\x81\x7e\x00\xd5"s);  // transcript R3
  EXPECT_EQ(frame_header(Opcode::kBinary, 65535).view(), "\x82\x7e\xff\xff"s);
  EXPECT_EQ(frame_header(Opcode::kBinary, 65536).view(),
            "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"s);
  EXPECT_EQ(frame_header(Opcode::kBinary, (uint64_t{1} << 32) + 5).view(),
            "\x82\x7f\x00\x00\x00\x01\x00\x00\x00\x05"s);
  EXPECT_EQ(frame_header(Opcode::kPing, 3).view(), "\x89\x03"s);
}

TEST(WebSocketWriter, WholeFrames) {
  EXPECT_EQ(text_frame("hi"), "\x81\x02hi"s);
  EXPECT_EQ(encode_frame(Opcode::kBinary, "abc"),
            "\x82\x03"
            "abc"s);
  EXPECT_EQ(close_frame(1000), "\x88\x02\x03\xe8"s);  // transcript R2
  EXPECT_EQ(close_frame(1011), "\x88\x02\x03\xf3"s);  // transcript R1
  EXPECT_EQ(close_frame(1009, "too big"), "\x88\x09\x03\xf1too big"s);
  EXPECT_EQ(close_frame(kCloseNoStatus), "\x88\x00"s);
}

TEST(WebSocketWriter, CloseReasonIsCutOnACharacterBoundary) {
  std::string reason;
  for (int i = 0; i < 100; ++i) reason += "é";  // 2 bytes each
  const std::string f = close_frame(1000, reason);
  ASSERT_EQ(static_cast<uint8_t>(f[1]), 2 + 122) << "123 bytes would split an é";
  EXPECT_EQ(feed_whole(as_client_frame(f)), Events{Close(1000, reason.substr(0, 122))});
  const std::string ascii(200, 'a');
  EXPECT_EQ(static_cast<uint8_t>(close_frame(1000, ascii)[1]), 125);
}

TEST(WebSocketWriter, WhatTheWriterWritesTheReaderReads) {
  constexpr uint32_t kMax = 1 << 20;
  for (std::size_t n : {0, 1, 125, 126, 65535, 65536, 70000}) {
    const std::string payload(n, 'q');
    EXPECT_EQ(feed_whole(as_client_frame(text_frame(payload)), kMax), Events{Text(payload)}) << n;
    const FrameHeader h = frame_header(Opcode::kBinary, n);
    EXPECT_EQ(feed_whole(as_client_frame(std::string(h.view()) + payload), kMax),
              Events{Binary(payload)})
        << n;
  }
  EXPECT_EQ(feed_whole(as_client_frame(pong_frame("abc"))), Events{Pong("abc")});
  EXPECT_EQ(feed_whole(as_client_frame(close_frame(4000, "bye"))), Events{Close(4000, "bye")});
}

}  // namespace
}  // namespace kronop::daemon::ws
