// The fan-out encoder: one set of frames per message, JSON with proto field names and "seq"
// first, and the protobuf Envelope of format=protobuf clients.
#include <gtest/gtest.h>

#include "fanout.h"
#include "kronop/v1/envelope.pb.h"
#include "kronop/v1/reel.pb.h"
#include "phoenix.h"

namespace kronop::daemon {
namespace {

// The payload of one unmasked server frame, checking its first byte (FIN + opcode).
std::string frame_payload(const std::string &frame, uint8_t first_byte) {
  EXPECT_GE(frame.size(), 2u);
  EXPECT_EQ(static_cast<uint8_t>(frame[0]), first_byte);
  std::size_t len = static_cast<uint8_t>(frame[1]) & 0x7f;
  std::size_t at = 2;
  if (len == 126) {
    len = static_cast<std::size_t>(static_cast<uint8_t>(frame[2]) << 8 |
                                   static_cast<uint8_t>(frame[3]));
    at = 4;
  } else if (len == 127) {
    len = 0;
    for (int i = 0; i < 8; ++i) len = len << 8 | static_cast<uint8_t>(frame[2 + i]);
    at = 10;
  }
  EXPECT_EQ(frame.size(), at + len);
  return frame.substr(at);
}

OutboundMessage json_message(std::string topic, std::string event, std::string body) {
  OutboundMessage m;
  m.topic = std::move(topic);
  m.event = std::move(event);
  m.body_kind = BodyKind::kJson;
  m.body = std::move(body);
  m.priority = 2;
  m.publish_time_ns = 1'764'190'000'000'000'000ULL;
  return m;
}

kronop::v1::ReelUpdate sample_update() {
  kronop::v1::ReelUpdate u;
  u.set_id("upd-1");
  u.set_reel_id(123);
  (*u.mutable_update_data())["views"] = "1500";
  u.set_timestamp(1764190000000);
  return u;
}

// Decodes the kind-2 binary broadcast of `encoded` into its Envelope.
kronop::v1::Envelope binary_envelope(const EncodedMessage &encoded, std::string_view topic,
                                     std::string_view event) {
  kronop::v1::Envelope env;
  EXPECT_TRUE(encoded.phoenix_binary);
  if (!encoded.phoenix_binary) return env;
  std::string bytes = frame_payload(*encoded.phoenix_binary, 0x82);
  phoenix::ServerBinaryFrame f;
  EXPECT_EQ(phoenix::decode_server_binary(bytes, f), phoenix::ParseError::kNone);
  EXPECT_EQ(f.kind, phoenix::BinaryKind::kBroadcast);
  EXPECT_EQ(f.topic, topic);
  EXPECT_EQ(f.event, event);
  EXPECT_TRUE(env.ParseFromString(std::string(f.payload)));
  return env;
}

TEST(MessageEncoder, NumbersPerTopic) {
  MessageEncoder enc;
  auto a = json_message("reel:1", "reel_update", "{}");
  auto b = json_message("reel:2", "reel_update", "{}");
  EXPECT_EQ(enc.number(a), 1u);
  EXPECT_EQ(enc.number(a), 2u);
  EXPECT_EQ(enc.number(b), 1u);
  EXPECT_EQ(enc.last_seq("reel:1"), 2u);
  EXPECT_EQ(enc.last_seq("reel:3"), 0u);
}

TEST(MessageEncoder, JsonBodyGetsSeqFirstInEveryTextFrame) {
  MessageEncoder enc;
  auto m = json_message("reel:123", "reel_update", R"( {"views":5,"t":"caf\u00e9"})");
  EncodedMessage out;
  ASSERT_TRUE(enc.encode(m, 7, out));
  EXPECT_EQ(out.seq, 7u);
  EXPECT_EQ(out.payload_json, R"({"seq":7,"views":5,"t":"caf\u00e9"})");
  EXPECT_EQ(frame_payload(*out.phoenix_text, 0x81),
            R"([null,null,"reel:123","reel_update",{"seq":7,"views":5,"t":"caf\u00e9"}])");
  EXPECT_EQ(frame_payload(*out.plain_text, 0x81),
            R"({"topic":"reel:123","event":"reel_update","payload":{"seq":7,"views":5,)"
            R"("t":"caf\u00e9"}})");
  EXPECT_TRUE(out.target_users.empty());
  EXPECT_FALSE(out.phoenix_binary) << "binary frames are built only on demand";
}

TEST(MessageEncoder, TypedBodyBecomesJsonWithProtoFieldNames) {
  MessageEncoder enc;
  OutboundMessage m;
  m.topic = "reel:123";
  m.event = "reel_update";
  m.body_kind = BodyKind::kReelUpdate;
  auto u = sample_update();
  u.add_target_users("alice");
  u.add_target_users("bob");
  m.body = u.SerializeAsString();
  EncodedMessage out;
  ASSERT_TRUE(enc.encode(m, 1, out));
  EXPECT_EQ(out.payload_json.rfind(R"({"seq":1,"id":"upd-1","reel_id":123,)", 0), 0u)
      << out.payload_json;
  EXPECT_NE(out.payload_json.find(R"("update_data":{"views":"1500"})"), std::string::npos);
  EXPECT_NE(out.payload_json.find(R"("timestamp":"1764190000000")"), std::string::npos);
  EXPECT_EQ(out.target_users, (std::vector<std::string>{"alice", "bob"}));
}

TEST(MessageEncoder, TypedBodyThatDoesNotParseIsRefused) {
  MessageEncoder enc;
  OutboundMessage m;
  m.topic = "reel:1";
  m.event = "reel_update";
  m.body_kind = BodyKind::kReelUpdate;
  m.body = "\xff\xff\xff";
  EncodedMessage out;
  EXPECT_FALSE(enc.encode(m, 1, out));
}

TEST(MessageEncoder, BinaryCarriesATypedBodyAsPublished) {
  MessageEncoder enc;
  OutboundMessage m;
  m.topic = "reel:123";
  m.event = "reel_update";
  m.body_kind = BodyKind::kReelUpdate;
  m.priority = 3;
  m.publish_time_ns = 42;
  m.body = sample_update().SerializeAsString();
  EncodedMessage out;
  ASSERT_TRUE(enc.encode(m, 9, out));
  enc.encode_binary(m, out);
  auto env = binary_envelope(out, "reel:123", "reel_update");
  EXPECT_EQ(env.topic(), "reel:123");
  EXPECT_EQ(env.event(), "reel_update");
  EXPECT_EQ(env.seq(), 9u);
  EXPECT_EQ(env.publish_time_ns(), 42u);
  EXPECT_EQ(env.priority(), kronop::v1::PRIORITY_CRITICAL);
  ASSERT_EQ(env.body_case(), kronop::v1::Envelope::kReelUpdate);
  EXPECT_EQ(env.reel_update().SerializeAsString(), m.body);
  EXPECT_EQ(env.producer_id(), 0u) << "producer identity stays inside the daemon";
}

TEST(MessageEncoder, BinaryTypesAJsonBodyThatFitsItsEventsSchema) {
  MessageEncoder enc;
  auto m = json_message("reel:123", "reel_update",
                        R"({"id":"upd-1","reel_id":123,"update_data":{"views":"1500"},)"
                        R"("timestamp":"1764190000000"})");
  EncodedMessage out;
  ASSERT_TRUE(enc.encode(m, 1, out));
  enc.encode_binary(m, out);
  auto env = binary_envelope(out, "reel:123", "reel_update");
  ASSERT_EQ(env.body_case(), kronop::v1::Envelope::kReelUpdate);
  EXPECT_EQ(env.reel_update().SerializeAsString(), sample_update().SerializeAsString());
}

TEST(MessageEncoder, BinaryKeepsJsonThatDoesNotFit) {
  struct Case {
    const char *event;
    const char *body;
  };
  const Case cases[] = {
      {"reel_update", R"({"update_data":{"views":1500}})"},  // numbers in a string map
      {"reel_update", R"({"views":5})"},                     // a field ReelUpdate lacks
      {"interaction", R"({"kind":"KIND_NOPE"})"},            // an unknown enum name
      {"viewers", R"({"count":3})"},                         // an event without a schema
  };
  for (const Case &c : cases) {
    MessageEncoder enc;
    auto m = json_message("reel:5", c.event, c.body);
    EncodedMessage out;
    ASSERT_TRUE(enc.encode(m, 1, out)) << c.body;
    enc.encode_binary(m, out);
    auto env = binary_envelope(out, "reel:5", c.event);
    ASSERT_EQ(env.body_case(), kronop::v1::Envelope::kJson) << c.body;
    EXPECT_EQ(env.json(), c.body) << "the producer's JSON as sent, without seq";
    EXPECT_EQ(env.seq(), 1u);
  }
}

TEST(MessageEncoder, EncodeResetsTheBinaryFrameOfThePreviousMessage) {
  MessageEncoder enc;
  auto m = json_message("reel:1", "viewers", R"({"n":1})");
  EncodedMessage out;
  ASSERT_TRUE(enc.encode(m, 1, out));
  enc.encode_binary(m, out);
  ASSERT_TRUE(out.phoenix_binary);
  ASSERT_TRUE(enc.encode(m, 2, out));
  EXPECT_FALSE(out.phoenix_binary);
}

TEST(ClientEnvelope, ParsesAsAnEnvelopeForEveryTypedKind) {
  const BodyKind kinds[] = {BodyKind::kReelUpdate, BodyKind::kInteraction, BodyKind::kPresence,
                            BodyKind::kUserActivity, BodyKind::kSystemNotice};
  for (BodyKind k : kinds) {
    OutboundMessage m;
    m.topic = "system";
    m.event = "x";
    m.body_kind = k;
    m.body = "";  // an empty message is a valid body of every kind
    kronop::v1::Envelope env;
    ASSERT_TRUE(env.ParseFromString(client_envelope(m, 3)));
    EXPECT_EQ(static_cast<int>(env.body_case()), static_cast<int>(k));
    EXPECT_EQ(env.seq(), 3u);
  }
}

}  // namespace
}  // namespace kronop::daemon
