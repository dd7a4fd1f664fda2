// The Phoenix Channels V2 serializer: the frames a real Phoenix 1.7 server and the official
// client exchanged (captured transcripts, copied into the tests below) parse and encode to the
// same bytes; escaping survives a round trip through simdjson; every parse error; binary
// frames both ways, and their bounds; seq insertion.
#include "phoenix.h"

#include <gtest/gtest.h>
#include <simdjson.h>

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "envelope_validation.h"
#include "kronop_ipc.h"

namespace kronop::daemon::phoenix {
namespace {

using namespace std::string_literals;

// A client push (binary kind 0) laid out as phoenix.js's binaryEncode writes it.
std::string client_push(std::string_view join_ref, std::string_view ref, std::string_view topic,
                        std::string_view event, std::string_view payload) {
  std::string out;
  out.push_back('\0');
  for (std::string_view f : {join_ref, ref, topic, event}) {
    out.push_back(static_cast<char>(f.size()));
  }
  for (std::string_view f : {join_ref, ref, topic, event, payload}) out.append(f);
  return out;
}

std::string unhex(std::string_view hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

// The five elements of a text frame, decoded by a simdjson parser of the test's own: an
// independent reading of what an encoder wrote.
struct Decoded {
  std::vector<std::string> strings;  // "<null>" for null
  std::string payload;
};
Decoded decode_independently(const std::string &text) {
  simdjson::dom::parser parser;
  simdjson::dom::array array;
  Decoded d;
  if (parser.parse(text).get_array().get(array) != simdjson::SUCCESS) {
    ADD_FAILURE() << "not a JSON array: " << text;
    return d;
  }
  std::size_t i = 0;
  for (simdjson::dom::element e : array) {
    if (i++ < 4) {
      std::string_view s;
      d.strings.push_back(e.is_null()                                  ? "<null>"
                          : e.get_string().get(s) == simdjson::SUCCESS ? std::string(s)
                                                                       : "<not a string>");
    } else {
      d.payload = simdjson::to_string(e);
    }
  }
  EXPECT_EQ(i, 5u) << text;
  return d;
}

class PhoenixTest : public ::testing::Test {
 protected:
  MessageParser parser;
  ClientMessage m;

  void parse_ok(std::string_view text) {
    ASSERT_EQ(parser.parse_text(text, m), ParseError::kNone) << text;
  }
};

// ---------------------------------------------------------------------------------------
// The transcripts

TEST_F(PhoenixTest, ParsesTheOfficialClientsJoin) {
  parse_ok(R"(["1","1","reel:123","phx_join",{}])");
  EXPECT_FALSE(m.join_ref.is_null);
  EXPECT_EQ(m.join_ref.value, "1");
  EXPECT_EQ(m.join_ref.json, R"("1")");
  EXPECT_FALSE(m.ref.is_null);
  EXPECT_EQ(m.ref.value, "1");
  EXPECT_EQ(m.topic, "reel:123");
  EXPECT_EQ(m.topic_json, R"("reel:123")");
  EXPECT_EQ(m.event, "phx_join");
  EXPECT_EQ(m.event_json, R"("phx_join")");
  EXPECT_EQ(m.payload_kind, PayloadKind::kObject);
  EXPECT_EQ(m.payload, "{}");
}

TEST_F(PhoenixTest, ParsesTheHeartbeatWithNullJoinRef) {
  parse_ok(R"([null,"2","phoenix","heartbeat",{}])");
  EXPECT_TRUE(m.join_ref.is_null);
  EXPECT_EQ(m.join_ref.value, "");
  EXPECT_EQ(m.join_ref.json, "null");
  EXPECT_EQ(m.ref.value, "2");
  EXPECT_EQ(m.topic, "phoenix");
  EXPECT_EQ(m.event, "heartbeat");
}

// Every client text frame of the V2 sessions: the message's JSON forms put back together
// are the frame's own bytes (the client sends minified JSON).
TEST_F(PhoenixTest, TranscriptClientFramesReencodeToTheSameBytes) {
  for (const char *frame : {
           R"(["1","1","reel:123","phx_join",{}])",
           R"([null,"2","phoenix","heartbeat",{}])",
           R"(["3","3","nope:1","phx_join",{}])",
           R"(["4","4","user:7","phx_join",{"token":"x"}])",
           R"([null,"5","reel:999","some_event",{}])",
           R"(["4","6","user:7","phx_leave",{}])",
           R"(["7","7","reel:123","phx_join",{}])",
           R"(["1","1","reel:5","phx_join",{}])",
           R"(["1","2","reel:5","ping",{"x":1}])",
           R"(["1","1","reel:9","phx_join",{}])",
       }) {
    parse_ok(frame);
    EXPECT_EQ(encode_message(m.join_ref.json, m.ref.json, m.topic_json, m.event_json, m.payload),
              frame);
  }
}

// Phoenix's answers, built from the client messages they answer, as the server will.
TEST_F(PhoenixTest, TranscriptRepliesAreByteExact) {
  parse_ok(R"(["1","1","reel:123","phx_join",{}])");
  EXPECT_EQ(encode_reply(m.join_ref.json, m.ref.json, m.topic_json, ReplyStatus::kOk, "{}"),
            R"(["1","1","reel:123","phx_reply",{"response":{},"status":"ok"}])");

  // The heartbeat reply has a null join_ref whatever the client sent.
  parse_ok(R"([null,"2","phoenix","heartbeat",{}])");
  EXPECT_EQ(encode_reply("null", m.ref.json, m.topic_json, ReplyStatus::kOk, "{}"),
            R"([null,"2","phoenix","phx_reply",{"response":{},"status":"ok"}])");

  // Unmatched topic: also a null join_ref, though the client sent "3".
  parse_ok(R"(["3","3","nope:1","phx_join",{}])");
  EXPECT_EQ(
      encode_reply("null", m.ref.json, m.topic_json, ReplyStatus::kError,
                   R"({"reason":"unmatched topic"})"),
      R"([null,"3","nope:1","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}])");

  parse_ok(R"([null,"5","reel:999","some_event",{}])");
  EXPECT_EQ(
      encode_reply("null", m.ref.json, m.topic_json, ReplyStatus::kError,
                   R"({"reason":"unmatched topic"})"),
      R"([null,"5","reel:999","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}])");

  parse_ok(R"(["4","4","user:7","phx_join",{"token":"x"}])");
  EXPECT_EQ(encode_reply(m.join_ref.json, m.ref.json, m.topic_json, ReplyStatus::kOk, "{}"),
            R"(["4","4","user:7","phx_reply",{"response":{},"status":"ok"}])");

  // Leave: the reply, then phx_close with the channel's join_ref as both refs.
  parse_ok(R"(["4","6","user:7","phx_leave",{}])");
  EXPECT_EQ(encode_reply(m.join_ref.json, m.ref.json, m.topic_json, ReplyStatus::kOk, "{}"),
            R"(["4","6","user:7","phx_reply",{"response":{},"status":"ok"}])");
  EXPECT_EQ(encode_close(m.join_ref.json, m.topic_json), R"(["4","4","user:7","phx_close",{}])");

  // A second join of reel:123 closes the channel joined with join_ref "1".
  EXPECT_EQ(encode_close(R"("1")", R"("reel:123")"), R"(["1","1","reel:123","phx_close",{}])");
  // A crashed channel.
  EXPECT_EQ(encode_error(R"("1")", R"("reel:5")"), R"(["1","1","reel:5","phx_error",{}])");
}

TEST_F(PhoenixTest, TranscriptBroadcastsAreByteExact) {
  EXPECT_EQ(
      encode_text_broadcast("reel:123", "reel_update",
                            R"({"a":[1,2.5,null,true],"msg":"hi","seq":42,"t":1700000000123})"),
      R"([null,null,"reel:123","reel_update",{"a":[1,2.5,null,true],"msg":"hi","seq":42,"t":1700000000123}])");
  EXPECT_EQ(encode_text_broadcast("reel:123", "reel_update", R"({"body":"not-json raw body"})"),
            R"([null,null,"reel:123","reel_update",{"body":"not-json raw body"}])");
}

// The transcripts' raw TCP capture: the WebSocket payloads as hex, with their lengths.
TEST_F(PhoenixTest, RawTcpFramesAreByteExact) {
  parse_ok(R"(["1","1","reel:123","phx_join",{}])");
  std::string reply =
      encode_reply(m.join_ref.json, m.ref.json, m.topic_json, ReplyStatus::kOk, "{}");
  EXPECT_EQ(reply.size(), 62u);
  EXPECT_EQ(reply, unhex("5b2231222c2231222c227265656c3a313233222c227068785f7265706c79222c7b2272"
                         "6573706f6e7365223a7b7d2c22737461747573223a226f6b227d5d"));

  parse_ok(R"([null,"2","phoenix","heartbeat",{}])");
  reply = encode_reply("null", m.ref.json, m.topic_json, ReplyStatus::kOk, "{}");
  EXPECT_EQ(reply.size(), 62u);
  EXPECT_EQ(reply, unhex("5b6e756c6c2c2232222c2270686f656e6978222c227068785f7265706c79222c7b22"
                         "726573706f6e7365223a7b7d2c22737461747573223a226f6b227d5d"));

  const std::string broadcast =
      encode_text_broadcast("reel:123", "reel_update", R"({"seq":42,"t":1700000000123})");
  EXPECT_EQ(broadcast.size(), 65u);
  EXPECT_EQ(broadcast, unhex("5b6e756c6c2c6e756c6c2c227265656c3a313233222c227265656c5f7570646174"
                             "65222c7b22736571223a34322c2274223a313730303030303030303132337d5d"));

  parse_ok(R"(["3","3","nope:1","phx_join",{}])");
  reply = encode_reply("null", m.ref.json, m.topic_json, ReplyStatus::kError,
                       R"({"reason":"unmatched topic"})");
  EXPECT_EQ(reply.size(), 90u);
  EXPECT_EQ(reply, unhex("5b6e756c6c2c2233222c226e6f70653a31222c227068785f7265706c79222c7b2272"
                         "6573706f6e7365223a7b22726561736f6e223a22756e6d61746368656420746f706963"
                         "227d2c22737461747573223a226572726f72227d5d"));

  parse_ok(R"(["1","1","reel:1","phx_join",{}])");
  reply = encode_reply(m.join_ref.json, m.ref.json, m.topic_json, ReplyStatus::kOk, "{}");
  EXPECT_EQ(reply.size(), 60u);

  // R3: a broadcast over 125 bytes.
  const std::string pad(150, 'x');
  const std::string big = encode_text_broadcast("reel:9", "reel_update",
                                                R"({"pad":")" + pad + R"(","t":1700000000000})");
  EXPECT_EQ(big.size(), 213u);
  EXPECT_EQ(big,
            R"([null,null,"reel:9","reel_update",{"pad":")" + pad + R"(","t":1700000000000}])");
}

TEST_F(PhoenixTest, TranscriptMalformedFramesAreRejected) {
  // Phoenix closes the socket with 1011 on both; Kronop's parser names the problem.
  EXPECT_EQ(parser.parse_text("this is {not json", m), ParseError::kNotJson);
  EXPECT_EQ(parser.parse_text(R"({"topic":"reel:1","event":"phx_join","payload":{},"ref":"1"})", m),
            ParseError::kNotArray);
  // The V1 serializer's messages are objects too.
  EXPECT_EQ(
      parser.parse_text(
          R"({"topic":"reel:123","event":"phx_join","payload":{},"ref":"1","join_ref":"1"})", m),
      ParseError::kNotArray);
}

// ---------------------------------------------------------------------------------------
// Escaping

// Refs and topics the client escaped come back as the same strings, through the server's
// reply, read by an independent JSON parser.
TEST_F(PhoenixTest, EscapedRefsAndTopicsRoundTrip) {
  struct Case {
    const char *json;  // as the client writes it
    std::string value;
  };
  const std::vector<Case> cases = {
      {R"("a\"b")", "a\"b"},
      {R"("back\\slash")", "back\\slash"},
      {R"("nl\n tab\t cr\r")", "nl\n tab\t cr\r"},
      {R"("nul\u0000ctl\u0001\u001f")", "nul\0ctl\x01\x1f"s},
      {R"("del\u007f")", "del\x7f"},
      {R"("caf\u00e9 und café")", "caf\xc3\xa9 und caf\xc3\xa9"},
      {R"("\ud83d\ude00")", "\xf0\x9f\x98\x80"},
      {R"("line\u2028sep")", "line\xe2\x80\xa8sep"},
      {R"("<\/script>")", "</script>"},
      {R"("")", ""},
  };
  for (const Case &c : cases) {
    const std::string frame = "["s + c.json + "," + c.json + "," + c.json + "," + c.json + ",{}]";
    SCOPED_TRACE(frame);
    parse_ok(frame);
    EXPECT_EQ(m.join_ref.value, c.value);
    EXPECT_EQ(m.ref.value, c.value);
    EXPECT_EQ(m.topic, c.value);
    EXPECT_EQ(m.event, c.value);
    const std::string reply =
        encode_reply(m.join_ref.json, m.ref.json, m.topic_json, ReplyStatus::kOk, "{}");
    const Decoded d = decode_independently(reply);
    ASSERT_EQ(d.strings.size(), 4u);
    EXPECT_EQ(d.strings[0], c.value);
    EXPECT_EQ(d.strings[1], c.value);
    EXPECT_EQ(d.strings[2], c.value);
    EXPECT_EQ(d.strings[3], "phx_reply");
    EXPECT_EQ(d.payload, R"({"response":{},"status":"ok"})");
    // And through the server's own parser, as a client message would come back.
    const std::string message =
        encode_message(m.join_ref.json, m.ref.json, m.topic_json, m.event_json, m.payload);
    ClientMessage again;
    ASSERT_EQ(parser.parse_text(message, again), ParseError::kNone);
    EXPECT_EQ(again.topic, c.value);
    EXPECT_EQ(again.event, c.value);
    EXPECT_EQ(again.ref.value, c.value);
  }
}

// Control characters are always escaped in the JSON forms, whatever the client wrote (raw
// control characters are not JSON, so the client had to escape them anyway).
TEST_F(PhoenixTest, JsonFormsAreCanonical) {
  parse_ok(R"(["\u0031","\u0032","reel:\u0031","phx_join",{ "a" : [ 1 , 2 ] }])");
  EXPECT_EQ(m.join_ref.json, R"("1")");
  EXPECT_EQ(m.ref.json, R"("2")");
  EXPECT_EQ(m.topic_json, R"("reel:1")");
  EXPECT_EQ(m.topic, "reel:1");
  EXPECT_EQ(m.payload, R"({"a":[1,2]})");
  parse_ok(R"(["\u0001",null,"t","e",{}])");
  EXPECT_EQ(m.join_ref.json, R"("\u0001")");
}

TEST(JsonSafe, ExactlyPrintableAsciiWithoutQuoteOrBackslash) {
  for (int c = 0; c < 256; ++c) {
    const char ch = static_cast<char>(c);
    const bool expect = c >= 0x20 && c <= 0x7e && c != '"' && c != '\\';
    EXPECT_EQ(json_safe(std::string_view(&ch, 1)), expect) << c;
  }
  EXPECT_TRUE(json_safe(""));
  EXPECT_TRUE(json_safe("reel:abc-DEF_1.2"));
  EXPECT_FALSE(json_safe("reel:1\xc3\xa9"));
}

// Every topic and event the fan-out may see is json_safe: the unescaped broadcast path
// depends on it.
TEST(JsonSafe, ValidTopicsAndEventsAreSafe) {
  for (int c = 0; c < 256; ++c) {
    const std::string id(1, static_cast<char>(c));
    if (valid_topic("reel:" + id)) {
      EXPECT_TRUE(json_safe("reel:" + id)) << c;
    }
    if (valid_event("e" + id)) {
      EXPECT_TRUE(json_safe("e" + id)) << c;
    }
  }
}

// ---------------------------------------------------------------------------------------
// Parse errors

TEST_F(PhoenixTest, EachTextParseError) {
  const std::vector<std::pair<std::string, ParseError>> cases = {
      {"", ParseError::kNotJson},
      {"   ", ParseError::kNotJson},
      {"[", ParseError::kNotJson},
      {R"(["1","1","t","e",{}] x)", ParseError::kNotJson},
      {R"(["1","1","t","e",{}][])", ParseError::kNotJson},
      {"[\"1\",\"1\",\"t\xff\",\"e\",{}]", ParseError::kNotJson},  // invalid UTF-8
      {"[\"1\",\"1\",\"t\x01\",\"e\",{}]", ParseError::kNotJson},  // raw control character
      {R"(["1","1","t","e",{},])", ParseError::kNotJson},
      {R"(["1","1","t","e",100000000000000000000])", ParseError::kNotJson},  // > 2^64
      {"{}", ParseError::kNotArray},
      {R"("a string")", ParseError::kNotArray},
      {"42", ParseError::kNotArray},
      {"null", ParseError::kNotArray},
      {"[]", ParseError::kWrongArity},
      {R"(["1","1","t","e"])", ParseError::kWrongArity},
      {R"(["1","1","t","e",{},{}])", ParseError::kWrongArity},
      {R"([["1","1","t","e",{}]])", ParseError::kWrongArity},
      {R"([1,"1","t","e",{}])", ParseError::kBadJoinRef},
      {R"([true,"1","t","e",{}])", ParseError::kBadJoinRef},
      {R"([{},"1","t","e",{}])", ParseError::kBadJoinRef},
      {R"(["1",2,"t","e",{}])", ParseError::kBadRef},
      {R"(["1",[],"t","e",{}])", ParseError::kBadRef},
      {R"(["1","1",null,"e",{}])", ParseError::kBadTopic},
      {R"(["1","1",7,"e",{}])", ParseError::kBadTopic},
      {R"(["1","1","t",null,{}])", ParseError::kBadEvent},
      {R"(["1","1","t",false,{}])", ParseError::kBadEvent},
  };
  for (const auto &[text, expected] : cases) {
    EXPECT_EQ(parser.parse_text(text, m), expected) << text;
    // A rejected message leaves nothing behind.
    EXPECT_EQ(m.topic, "");
    uint64_t v = 0;
    EXPECT_EQ(parser.payload_uint("last_seq", v), Lookup::kAbsent);
  }
}

TEST_F(PhoenixTest, AcceptsAnyPayloadValueAndNullRefs) {
  parse_ok(R"([null,null,"t","e",[1,"x"]])");
  EXPECT_TRUE(m.join_ref.is_null);
  EXPECT_TRUE(m.ref.is_null);
  EXPECT_EQ(m.ref.json, "null");
  EXPECT_EQ(m.payload_kind, PayloadKind::kOtherJson);
  EXPECT_EQ(m.payload, R"([1,"x"])");
  parse_ok(R"(["1","1","t","e",null])");
  EXPECT_EQ(m.payload, "null");
  parse_ok(R"(["1","1","t","e","text"])");
  EXPECT_EQ(m.payload, R"("text")");
  parse_ok(" \n[\"1\" , \"1\" ,\"t\",\"e\", 12 ]\r\n ");
  EXPECT_EQ(m.payload, "12");
}

TEST(MessageParserLimits, RejectsMessagesOverTheMaximum) {
  MessageParser small(32);
  ClientMessage m;
  const std::string fits = R"(["1","1","reel:1","phx_join",{}])";
  ASSERT_EQ(fits.size(), 32u);
  EXPECT_EQ(small.parse_text(fits, m), ParseError::kNone);
  EXPECT_EQ(small.parse_text(fits + " ", m), ParseError::kTooLarge);
  // 9 bytes of header and fields, then the payload.
  EXPECT_EQ(small.parse_binary(client_push("1", "1", "t", "e", std::string(24, 'x')), m),
            ParseError::kTooLarge);
  EXPECT_EQ(small.parse_binary(client_push("1", "1", "t", "e", std::string(23, 'x')), m),
            ParseError::kNone);
  // The default is the WebSocket layer's 64 KiB.
  MessageParser normal;
  std::string big = R"(["1","1","t","e",")" + std::string(kDefaultMaxMessage, 'x') + "\"]";
  EXPECT_EQ(normal.parse_text(big, m), ParseError::kTooLarge);
  big = R"(["1","1","t","e",")" + std::string(kDefaultMaxMessage - 20, 'x') + "\"]";
  EXPECT_EQ(normal.parse_text(big, m), ParseError::kNone);
}

TEST(ParseErrorNames, EveryErrorHasADistinctNameAndMessage) {
  std::vector<std::string> names, messages;
  for (int i = 0; i < static_cast<int>(ParseError::kCount); ++i) {
    const auto e = static_cast<ParseError>(i);
    names.emplace_back(parse_error_name(e));
    messages.emplace_back(parse_error_message(e));
    EXPECT_NE(names.back(), "unknown");
    EXPECT_NE(messages.back(), "unknown error");
    EXPECT_LE(messages.back().size(), 123u) << "too long for a WebSocket close reason";
  }
  for (std::size_t i = 0; i < names.size(); ++i) {
    for (std::size_t j = i + 1; j < names.size(); ++j) {
      EXPECT_NE(names[i], names[j]);
      EXPECT_NE(messages[i], messages[j]);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Payload members (the join's recovery parameters)

TEST_F(PhoenixTest, ReadsUnsignedPayloadMembers) {
  parse_ok(R"(["1","1","reel:1","phx_join",{"last_seq":42,"epoch":18446744073709551615,"neg":-1,)"
           R"("dbl":5.0,"frac":1.5,"str":"7","nil":null,"token":"abc\"d"}])");
  uint64_t v = 0;
  EXPECT_EQ(parser.payload_uint("last_seq", v), Lookup::kFound);
  EXPECT_EQ(v, 42u);
  EXPECT_EQ(parser.payload_uint("epoch", v), Lookup::kFound);
  EXPECT_EQ(v, std::numeric_limits<uint64_t>::max());
  v = 99;
  for (const char *key : {"neg", "dbl", "frac", "str", "token"}) {
    EXPECT_EQ(parser.payload_uint(key, v), Lookup::kWrongType) << key;
  }
  EXPECT_EQ(v, 99u);                                          // untouched
  EXPECT_EQ(parser.payload_uint("nil", v), Lookup::kAbsent);  // null: not given
  EXPECT_EQ(parser.payload_uint("missing", v), Lookup::kAbsent);
  EXPECT_EQ(parser.payload_uint("last", v), Lookup::kAbsent);

  std::string_view s;
  EXPECT_EQ(parser.payload_string("token", s), Lookup::kFound);
  EXPECT_EQ(s, "abc\"d");
  EXPECT_EQ(parser.payload_string("last_seq", s), Lookup::kWrongType);
  EXPECT_EQ(parser.payload_string("missing", s), Lookup::kAbsent);

  // Only the payload's top level counts; a payload that is not an object has no members.
  parse_ok(R"(["1","1","reel:1","phx_join",{"p":{"last_seq":1}}])");
  EXPECT_EQ(parser.payload_uint("last_seq", v), Lookup::kAbsent);
  parse_ok(R"(["1","1","reel:1","phx_join",[{"last_seq":1}]])");
  EXPECT_EQ(parser.payload_uint("last_seq", v), Lookup::kAbsent);
  // After a binary message, too.
  parse_ok(R"(["1","1","reel:1","phx_join",{"last_seq":1}])");
  ASSERT_EQ(parser.parse_binary(client_push("1", "1", "t", "e", R"({"last_seq":1})"), m),
            ParseError::kNone);
  EXPECT_EQ(parser.payload_uint("last_seq", v), Lookup::kAbsent);
}

// Where a message's views point: the parser's buffers for a text frame, the frame itself
// for a binary frame's fields and payload.
TEST_F(PhoenixTest, ViewsPointIntoTheParserOrTheFrame) {
  const std::string text = R"(["1","2","reel:1","phx_join",{"a":1}])";
  parse_ok(text);
  for (std::string_view v : {m.join_ref.value, m.join_ref.json, m.ref.value, m.ref.json, m.topic,
                             m.topic_json, m.event, m.event_json, m.payload}) {
    EXPECT_TRUE(parser.owns(v)) << v;
  }
  EXPECT_FALSE(parser.owns(std::string_view(text).substr(1, 3)));

  const std::string frame = client_push("1", "2", "reel:1", "ping", "\x01\x02");
  ASSERT_EQ(parser.parse_binary(frame, m), ParseError::kNone);
  const auto in_frame = [&](std::string_view v) {
    return v.data() >= frame.data() && v.data() + v.size() <= frame.data() + frame.size();
  };
  for (std::string_view v : {m.join_ref.value, m.ref.value, m.topic, m.event, m.payload}) {
    EXPECT_TRUE(in_frame(v)) << v;
  }
  for (std::string_view v : {m.join_ref.json, m.ref.json, m.topic_json, m.event_json}) {
    EXPECT_TRUE(parser.owns(v)) << v;
  }
}

// ---------------------------------------------------------------------------------------
// Binary client pushes

TEST_F(PhoenixTest, ParsesABinaryPush) {
  const std::string payload = "\x00\xff\x01 raw"s;
  const std::string frame = client_push("12", "13", "reel:9", "upload", payload);
  ASSERT_EQ(parser.parse_binary(frame, m), ParseError::kNone);
  EXPECT_FALSE(m.join_ref.is_null);
  EXPECT_EQ(m.join_ref.value, "12");
  EXPECT_EQ(m.join_ref.json, R"("12")");
  EXPECT_EQ(m.ref.value, "13");
  EXPECT_EQ(m.ref.json, R"("13")");
  EXPECT_EQ(m.topic, "reel:9");
  EXPECT_EQ(m.topic_json, R"("reel:9")");
  EXPECT_EQ(m.event, "upload");
  EXPECT_EQ(m.event_json, R"("upload")");
  EXPECT_EQ(m.payload_kind, PayloadKind::kBinary);
  EXPECT_EQ(m.payload, payload);
  // A reply to it, in text, as Phoenix sends for a map response.
  EXPECT_EQ(encode_reply(m.join_ref.json, m.ref.json, m.topic_json, ReplyStatus::kOk, "{}"),
            R"(["12","13","reel:9","phx_reply",{"response":{},"status":"ok"}])");

  // Empty fields and an empty payload: a header alone is a message.
  // (The frames outlive the checks: the message's views point into them.)
  const std::string header_only = client_push("", "", "", "", "");
  ASSERT_EQ(parser.parse_binary(header_only, m), ParseError::kNone);
  EXPECT_FALSE(m.join_ref.is_null);
  EXPECT_EQ(m.join_ref.json, R"("")");
  EXPECT_EQ(m.payload, "");
  // Topic and event of 255 bytes (join_ref and ref are bounded by kMaxRef).
  const std::string f255(255, 'r');
  const std::string ref(kMaxRef, 'r');
  const std::string longest = client_push(ref, ref, f255, f255, "p");
  ASSERT_EQ(parser.parse_binary(longest, m), ParseError::kNone);
  EXPECT_EQ(m.event, f255);
  EXPECT_EQ(m.payload, "p");
}

TEST_F(PhoenixTest, BinaryPushBounds) {
  const std::string frame = client_push("1", "22", "reel:1", "ev", "");
  // Every proper prefix that cuts into the header or the fields is truncated.
  for (std::size_t n = 0; n < frame.size(); ++n) {
    EXPECT_EQ(parser.parse_binary(frame.substr(0, n), m), ParseError::kTruncated) << n;
  }
  EXPECT_EQ(parser.parse_binary(frame, m), ParseError::kNone);
  // Each size pointing past the end.
  for (std::size_t i = 1; i <= 4; ++i) {
    std::string bad = frame;
    bad[i] = static_cast<char>(static_cast<uint8_t>(bad[i]) + frame.size());
    EXPECT_EQ(parser.parse_binary(bad, m), ParseError::kTruncated) << i;
    bad[i] = static_cast<char>(0xff);
    EXPECT_EQ(parser.parse_binary(bad, m), ParseError::kTruncated) << i;
  }
  // Sizes that add up past the end though each alone fits.
  std::string sum = client_push("aaaa", "", "", "", "");
  sum[2] = 4;
  EXPECT_EQ(parser.parse_binary(sum, m), ParseError::kTruncated);
}

// A channel keeps its join_ref (and a pending join its ref): both are bounded.
TEST_F(PhoenixTest, RefsOverKMaxRefAreRefused) {
  const std::string ok(kMaxRef, '7');
  const std::string over(kMaxRef + 1, '7');
  auto text_message = [](const std::string &join_ref, const std::string &ref) {
    return "[\"" + join_ref + "\",\"" + ref + "\",\"reel:1\",\"phx_join\",{}]";
  };
  EXPECT_EQ(parser.parse_text(text_message(ok, ok), m), ParseError::kNone);
  EXPECT_EQ(m.join_ref.value, ok);
  EXPECT_EQ(parser.parse_text(text_message(over, "1"), m), ParseError::kRefTooLong);
  EXPECT_EQ(parser.parse_text(text_message("1", over), m), ParseError::kRefTooLong);
  // The limit is on the JSON text kept and echoed: escapes count as written.
  std::string escaped;
  for (std::size_t i = 0; i < kMaxRef; ++i) escaped += "\\n";  // 2 JSON bytes each
  EXPECT_EQ(parser.parse_text(text_message(escaped, "1"), m), ParseError::kRefTooLong);
  EXPECT_EQ(parser.parse_text(R"([null,null,"phoenix","heartbeat",{}])", m), ParseError::kNone);
  EXPECT_EQ(parser.parse_binary(client_push(ok, ok, "reel:1", "e", ""), m), ParseError::kNone);
  EXPECT_EQ(parser.parse_binary(client_push(over, "1", "reel:1", "e", ""), m),
            ParseError::kRefTooLong);
  EXPECT_EQ(parser.parse_binary(client_push("1", over, "reel:1", "e", ""), m),
            ParseError::kRefTooLong);
  EXPECT_STREQ(parse_error_name(ParseError::kRefTooLong), "ref_too_long");
}

TEST_F(PhoenixTest, BinaryPushKindsAndUnsafeFields) {
  std::string frame = client_push("1", "1", "reel:1", "ev", "x");
  for (int kind : {1, 2, 3, 0x7f, 0xff}) {
    frame[0] = static_cast<char>(kind);
    EXPECT_EQ(parser.parse_binary(frame, m), ParseError::kBadKind) << kind;
  }
  EXPECT_EQ(parser.parse_binary("\x01"s, m), ParseError::kBadKind);
  EXPECT_EQ(parser.parse_binary(""s, m), ParseError::kTruncated);
  for (const std::string &unsafe : {"a\"b"s, "a\\b"s, "a\nb"s, "\0"s, "caf\xc3\xa9"s, "\x7f"s}) {
    EXPECT_EQ(parser.parse_binary(client_push(unsafe, "1", "t", "e", ""), m),
              ParseError::kUnsafeField);
    EXPECT_EQ(parser.parse_binary(client_push("1", unsafe, "t", "e", ""), m),
              ParseError::kUnsafeField);
    EXPECT_EQ(parser.parse_binary(client_push("1", "1", unsafe, "e", ""), m),
              ParseError::kUnsafeField);
    EXPECT_EQ(parser.parse_binary(client_push("1", "1", "t", unsafe, ""), m),
              ParseError::kUnsafeField);
  }
  // The payload is bytes: anything goes.
  EXPECT_EQ(parser.parse_binary(client_push("1", "1", "t", "e", "\"\\\0\xff"s), m),
            ParseError::kNone);
}

// ---------------------------------------------------------------------------------------
// Binary server frames

TEST(BinaryEncode, BroadcastBytes) {
  auto frame = encode_binary_broadcast("reel:1", "reel_update", "\x08\x01"s);
  ASSERT_TRUE(frame.ok());
  EXPECT_EQ(frame.value(), "\x02\x06\x0breel:1reel_update\x08\x01"s);
  ServerBinaryFrame d;
  ASSERT_EQ(decode_server_binary(frame.value(), d), ParseError::kNone);
  EXPECT_EQ(d.kind, BinaryKind::kBroadcast);
  EXPECT_EQ(d.join_ref, "");
  EXPECT_EQ(d.ref, "");
  EXPECT_EQ(d.topic, "reel:1");
  EXPECT_EQ(d.event, "reel_update");
  EXPECT_EQ(d.payload, "\x08\x01"s);
}

TEST(BinaryEncode, ReplyBytes) {
  auto frame = encode_binary_reply("3", "45", "reel:1", ReplyStatus::kError, "\0\1"s);
  ASSERT_TRUE(frame.ok());
  EXPECT_EQ(frame.value(),
            "\x01\x01\x02\x06\x05"
            "345reel:1error\0\1"s);
  ServerBinaryFrame d;
  ASSERT_EQ(decode_server_binary(frame.value(), d), ParseError::kNone);
  EXPECT_EQ(d.kind, BinaryKind::kReply);
  EXPECT_EQ(d.join_ref, "3");
  EXPECT_EQ(d.ref, "45");
  EXPECT_EQ(d.topic, "reel:1");
  EXPECT_EQ(d.event, "error");
  EXPECT_EQ(d.payload, "\0\1"s);
  // A null join_ref (heartbeat, unmatched topic) is the empty string.
  frame = encode_binary_reply("", "7", "phoenix", ReplyStatus::kOk, "");
  ASSERT_TRUE(frame.ok());
  EXPECT_EQ(frame.value(),
            "\x01\x00\x01\x07\x02"
            "7phoenixok"s);
}

// The server's push has no ref: three sizes, not four (phoenix.js's decodePush).
TEST(BinaryEncode, PushHasNoRef) {
  auto frame = encode_binary_push("5", "user:7", "user_activity", "PB");
  ASSERT_TRUE(frame.ok());
  EXPECT_EQ(frame.value(),
            "\x00\x01\x06\x0d"
            "5user:7user_activityPB"s);
  ServerBinaryFrame d;
  ASSERT_EQ(decode_server_binary(frame.value(), d), ParseError::kNone);
  EXPECT_EQ(d.kind, BinaryKind::kPush);
  EXPECT_EQ(d.join_ref, "5");
  EXPECT_EQ(d.ref, "");
  EXPECT_EQ(d.topic, "user:7");
  EXPECT_EQ(d.event, "user_activity");
  EXPECT_EQ(d.payload, "PB");
}

TEST(BinaryEncode, FieldsOver255BytesAreTooBig) {
  const std::string f255(255, 'a'), f256(256, 'a');
  EXPECT_TRUE(encode_binary_broadcast(f255, f255, "").ok());
  EXPECT_TRUE(encode_binary_reply(f255, f255, f255, ReplyStatus::kOk, "").ok());
  EXPECT_TRUE(encode_binary_push(f255, f255, f255, "").ok());
  // A large payload is fine: it has no size byte.
  EXPECT_TRUE(encode_binary_broadcast("t", "e", std::string(100000, 'p')).ok());

  const auto too_big = [](const Result<std::string> &r, const char *field) {
    ASSERT_FALSE(r.ok()) << field;
    EXPECT_EQ(r.error().code, KRONOP_ETOOBIG);
    EXPECT_EQ(r.error().message.rfind(field, 0), 0u) << r.error().message;
  };
  too_big(encode_binary_broadcast(f256, "e", ""), "topic");
  too_big(encode_binary_broadcast("t", f256, ""), "event");
  too_big(encode_binary_reply(f256, "r", "t", ReplyStatus::kOk, ""), "join_ref");
  too_big(encode_binary_reply("j", f256, "t", ReplyStatus::kOk, ""), "ref");
  too_big(encode_binary_reply("j", "r", f256, ReplyStatus::kOk, ""), "topic");
  too_big(encode_binary_push(f256, "t", "e", ""), "join_ref");
  too_big(encode_binary_push("j", f256, "e", ""), "topic");
  too_big(encode_binary_push("j", "t", f256, ""), "event");
}

TEST(BinaryDecode, BoundsOfServerFrames) {
  for (const std::string &frame :
       {encode_binary_broadcast("reel:1", "ev", "").value(),
        encode_binary_reply("1", "2", "reel:1", ReplyStatus::kOk, "").value(),
        encode_binary_push("1", "reel:1", "ev", "").value()}) {
    ServerBinaryFrame d;
    ASSERT_EQ(decode_server_binary(frame, d), ParseError::kNone);
    for (std::size_t n = 0; n < frame.size(); ++n) {
      EXPECT_EQ(decode_server_binary(frame.substr(0, n), d), ParseError::kTruncated) << n;
    }
    std::string bad = frame;
    bad[1] = static_cast<char>(0xff);
    EXPECT_EQ(decode_server_binary(bad, d), ParseError::kTruncated);
  }
  ServerBinaryFrame d;
  EXPECT_EQ(decode_server_binary("\x03\x00\x00"s, d), ParseError::kBadKind);
}

// ---------------------------------------------------------------------------------------
// Broadcast frames and seq

TEST(TextBroadcast, WritesExactlyItsSize) {
  const std::string_view topic = "user:42", event = "user_activity", payload = R"({"seq":1})";
  const std::size_t size = text_broadcast_size(topic, event, payload);
  std::string buf(size + 8, '#');
  char *end = write_text_broadcast(buf.data() + 4, topic, event, payload);
  EXPECT_EQ(end, buf.data() + 4 + size);
  EXPECT_EQ(buf, "####" + encode_text_broadcast(topic, event, payload) + "####");
  EXPECT_EQ(encode_text_broadcast(topic, event, payload),
            R"([null,null,"user:42","user_activity",{"seq":1}])");
  // The frame is a message the parser reads back.
  MessageParser parser;
  ClientMessage m;
  ASSERT_EQ(parser.parse_text(encode_text_broadcast(topic, event, payload), m), ParseError::kNone);
  EXPECT_TRUE(m.join_ref.is_null);
  EXPECT_TRUE(m.ref.is_null);
  EXPECT_EQ(m.topic, topic);
  EXPECT_EQ(m.event, event);
  EXPECT_EQ(m.payload, payload);
}

TEST(TextEncode, PushToOneChannel) {
  EXPECT_EQ(encode_push(R"("3")", R"("reel:1")", "presence_state", "{}"),
            R"(["3",null,"reel:1","presence_state",{}])");
  EXPECT_EQ(encode_message("null", "null", R"("a")", R"("b")", "1"), R"([null,null,"a","b",1])");
  EXPECT_EQ(reply_status_name(ReplyStatus::kOk), "ok");
  EXPECT_EQ(reply_status_name(ReplyStatus::kError), "error");
}

}  // namespace
}  // namespace kronop::daemon::phoenix
