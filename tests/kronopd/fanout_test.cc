// The fan-out: one set of frames per message (JSON with proto field names and "seq" first,
// and the protobuf Envelope of format=protobuf clients), and the dispatcher that numbers
// messages per topic and hands them to the loops with subscribers.
#include <gtest/gtest.h>

#include <algorithm>

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

EnvelopeView json_view(std::string_view topic, std::string_view event, std::string_view body) {
  EnvelopeView v;
  v.topic = topic;
  v.event = event;
  v.body_kind = BodyKind::kJson;
  v.body = body;
  v.priority = 2;
  v.publish_time_ns = 1'764'190'000'000'000'000ULL;
  return v;
}

EnvelopeView typed_view(std::string_view topic, std::string_view event, BodyKind kind,
                        std::string_view body) {
  EnvelopeView v;
  v.topic = topic;
  v.event = event;
  v.body_kind = kind;
  v.body = body;
  return v;
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
kronop::v1::Envelope binary_envelope(const Message &m, std::string_view topic,
                                     std::string_view event) {
  kronop::v1::Envelope env;
  EXPECT_TRUE(m.phoenix_binary());
  if (!m.phoenix_binary()) return env;
  std::string bytes = frame_payload(*m.phoenix_binary(), 0x82);
  phoenix::ServerBinaryFrame f;
  EXPECT_EQ(phoenix::decode_server_binary(bytes, f), phoenix::ParseError::kNone);
  EXPECT_EQ(f.kind, phoenix::BinaryKind::kBroadcast);
  EXPECT_EQ(f.topic, topic);
  EXPECT_EQ(f.event, event);
  EXPECT_TRUE(env.ParseFromString(std::string(f.payload)));
  return env;
}

TEST(Message, JsonBodyGetsSeqFirstInEveryTextFrame) {
  auto m =
      Message::make(json_view("reel:123", "reel_update", R"( {"views":5,"t":"caf\u00e9"})"), 7);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->seq(), 7u);
  EXPECT_EQ(m->payload_json(), R"({"seq":7,"views":5,"t":"caf\u00e9"})");
  EXPECT_EQ(frame_payload(*m->phoenix_text(), 0x81),
            R"([null,null,"reel:123","reel_update",{"seq":7,"views":5,"t":"caf\u00e9"}])");
  EXPECT_EQ(frame_payload(*m->plain_text(), 0x81),
            R"({"topic":"reel:123","event":"reel_update","payload":{"seq":7,"views":5,)"
            R"("t":"caf\u00e9"}})");
  EXPECT_EQ(m->plain_text().get(), m->plain_text().get()) << "built once";
  EXPECT_TRUE(m->target_users().empty());
}

TEST(Message, TypedBodyBecomesJsonWithProtoFieldNames) {
  auto u = sample_update();
  u.add_target_users("alice");
  u.add_target_users("bob");
  const std::string body = u.SerializeAsString();
  auto m = Message::make(typed_view("reel:123", "reel_update", BodyKind::kReelUpdate, body), 1);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->payload_json().rfind(R"({"seq":1,"id":"upd-1","reel_id":123,)", 0), 0u)
      << m->payload_json();
  EXPECT_NE(m->payload_json().find(R"("update_data":{"views":"1500"})"), std::string::npos);
  EXPECT_NE(m->payload_json().find(R"("timestamp":1764190000000)"), std::string::npos)
      << "64-bit counts and times are JSON numbers";
  EXPECT_EQ(m->target_users(), (std::vector<std::string>{"alice", "bob"}));
}

TEST(Message, JsonReelUpdateNamesItsTargetUsers) {
  auto m = Message::make(
      json_view("reel:1", "reel_update", R"({"views":1,"target_users":["alice","bob",7]})"), 1);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->target_users(), (std::vector<std::string>{"alice", "bob"}))
      << "strings only; anything else names nobody";
  auto other =
      Message::make(json_view("reel:1", "interaction", R"({"target_users":["alice"]})"), 2);
  EXPECT_TRUE(other->target_users().empty()) << "only reel_update has target_users";
  auto nested =
      Message::make(json_view("reel:1", "reel_update", R"({"x":{"target_users":["alice"]}})"), 3);
  EXPECT_TRUE(nested->target_users().empty()) << "only the top-level member counts";
}

TEST(Message, TypedBodyThatDoesNotParseIsRefused) {
  EXPECT_FALSE(
      Message::make(typed_view("reel:1", "reel_update", BodyKind::kReelUpdate, "\xff\xff\xff"), 1));
}

TEST(Message, BinaryCarriesATypedBodyAsPublished) {
  const std::string body = sample_update().SerializeAsString();
  auto v = typed_view("reel:123", "reel_update", BodyKind::kReelUpdate, body);
  v.priority = 3;
  v.publish_time_ns = 42;
  v.producer_id = 77;
  auto m = Message::make(v, 9);
  ASSERT_TRUE(m);
  auto env = binary_envelope(*m, "reel:123", "reel_update");
  EXPECT_EQ(env.topic(), "reel:123");
  EXPECT_EQ(env.event(), "reel_update");
  EXPECT_EQ(env.seq(), 9u);
  EXPECT_EQ(env.publish_time_ns(), 42u);
  EXPECT_EQ(env.priority(), kronop::v1::PRIORITY_CRITICAL);
  ASSERT_EQ(env.body_case(), kronop::v1::Envelope::kReelUpdate);
  EXPECT_EQ(env.reel_update().SerializeAsString(), body);
  EXPECT_EQ(env.producer_id(), 0u) << "producer identity stays inside the daemon";
}

TEST(Message, BinaryTypesAJsonBodyThatFitsItsEventsSchema) {
  auto m = Message::make(json_view("reel:123", "reel_update",
                                   R"({"id":"upd-1","reel_id":123,"update_data":{"views":"1500"},)"
                                   R"("timestamp":"1764190000000"})"),
                         1);
  ASSERT_TRUE(m);
  auto env = binary_envelope(*m, "reel:123", "reel_update");
  ASSERT_EQ(env.body_case(), kronop::v1::Envelope::kReelUpdate);
  EXPECT_EQ(env.reel_update().SerializeAsString(), sample_update().SerializeAsString());
}

TEST(Message, BinaryKeepsJsonThatDoesNotFit) {
  struct Case {
    const char *event;
    const char *body;
  };
  const Case cases[] = {
      {"reel_update", R"({"update_data":{"views":1.5}})"},  // a fraction in a string map
      {"reel_update", R"({"views":5})"},                    // a field ReelUpdate lacks
      {"interaction", R"({"kind":"KIND_NOPE"})"},           // an unknown enum name
      {"viewers", R"({"count":3})"},                        // an event without a schema
  };
  for (const Case &c : cases) {
    auto m = Message::make(json_view("reel:5", c.event, c.body), 1);
    ASSERT_TRUE(m) << c.body;
    auto env = binary_envelope(*m, "reel:5", c.event);
    ASSERT_EQ(env.body_case(), kronop::v1::Envelope::kJson) << c.body;
    EXPECT_EQ(env.json(), c.body) << "the producer's JSON as sent, without seq";
    EXPECT_EQ(env.seq(), 1u);
  }
}

TEST(Message, BinaryTypesEnumWordsAndIntegersInAStringMap) {
  // What the counters' reel_update and JSON clients send: integers where the schema has
  // strings, enum words instead of proto names.
  auto m = Message::make(
      json_view("reel:5", "reel_update", R"({"update_data":{"likes":3},"priority":"low"})"), 1);
  ASSERT_TRUE(m);
  auto env = binary_envelope(*m, "reel:5", "reel_update");
  ASSERT_EQ(env.body_case(), kronop::v1::Envelope::kReelUpdate);
  EXPECT_EQ(env.reel_update().update_data().at("likes"), "3");
  EXPECT_EQ(env.reel_update().priority(), kronop::v1::PRIORITY_LOW);
}

TEST(ClientEnvelope, ParsesAsAnEnvelopeForEveryTypedKind) {
  const BodyKind kinds[] = {BodyKind::kReelUpdate, BodyKind::kInteraction, BodyKind::kPresence,
                            BodyKind::kUserActivity, BodyKind::kSystemNotice};
  for (BodyKind k : kinds) {
    // An empty message is a valid body of every kind.
    auto m = Message::make(typed_view("system", "x", k, ""), 3);
    ASSERT_TRUE(m);
    kronop::v1::Envelope env;
    ASSERT_TRUE(env.ParseFromString(client_envelope(*m)));
    EXPECT_EQ(static_cast<int>(env.body_case()), static_cast<int>(k));
    EXPECT_EQ(env.seq(), 3u);
  }
}

// Two loops' inboxes on a private libuv loop (only the wake-up handles are needed).
class DispatcherTest : public ::testing::Test {
 protected:
  DispatcherTest() {
    uv_loop_init(&loop_);
    for (auto &a : asyncs_) uv_async_init(&loop_, &a, [](uv_async_t *) {});
    for (std::size_t i = 0; i < 2; ++i) inboxes_[i].wake = &asyncs_[i];
  }
  ~DispatcherTest() override {
    for (auto &a : asyncs_) uv_close(reinterpret_cast<uv_handle_t *>(&a), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
  }
  // Topic and seq of everything delivered to loop `i` so far, in order.
  std::vector<std::pair<std::string, uint64_t>> delivered(std::size_t i) {
    std::vector<std::pair<std::string, uint64_t>> out;
    const auto list = inboxes_[i].batches.take_all();
    for (MessageBatch *b = list.head(); b != nullptr; b = b->next) {
      for (const auto &m : b->messages) out.emplace_back(m->topic(), m->seq());
    }
    return out;
  }
  // Numbers a message as the pipeline does, then stages it.
  void publish(Dispatcher &d, std::string_view topic) {
    const TopicKey key(topic);
    d.stage(json_view(topic, "reel_update", "{}"), key, seq_.next(key).seq);
  }

  LocalSequencer seq_;
  uv_loop_t loop_{};
  uv_async_t asyncs_[2]{};
  LoopInbox inboxes_[2];
};

using Delivered = std::vector<std::pair<std::string, uint64_t>>;

TEST_F(DispatcherTest, NumbersEveryTopicButDeliversOnlyToInterestedLoops) {
  Dispatcher d({&inboxes_[0], &inboxes_[1]}, seq_);
  publish(d, "reel:1");  // nobody listens: numbered, not delivered
  d.report_interest(0, "reel:1", true);
  d.report_interest(1, "reel:2", true);
  publish(d, "reel:1");
  publish(d, "reel:2");
  publish(d, "reel:3");
  EXPECT_TRUE(delivered(0).empty()) << "nothing before the batch ends";
  d.end_batch(0);
  EXPECT_EQ(delivered(0), (Delivered{{"reel:1", 2}}));
  EXPECT_EQ(delivered(1), (Delivered{{"reel:2", 1}}));
  EXPECT_EQ(seq_.current("reel:3").seq, 1u);
  EXPECT_EQ(d.counters().messages.load(), 4u);
  EXPECT_EQ(d.counters().without_audience.load(), 2u);
}

TEST(SequencerTest, EveryStreamHasAnEpochAndSeededOnesContinue) {
  LocalSequencer seq;
  seq.seed("reel:7", {41, 1234});
  const uint64_t e8 = seq.current("reel:8").epoch;  // a topic first seen through a join
  EXPECT_EQ(seq.next(TopicKey("reel:7")).seq, 42u);
  EXPECT_EQ(seq.next(TopicKey("reel:7")).epoch, 1234u);
  const StreamPosition p8 = seq.next(TopicKey("reel:8")), p9 = seq.next(TopicKey("reel:9"));
  EXPECT_EQ(p8.seq, 1u);
  EXPECT_EQ(p8.epoch, e8) << "the epoch a join was told is the one its messages carry";
  EXPECT_EQ(p9.seq, 1u);
  EXPECT_NE(p8.epoch, 0u);
  EXPECT_NE(p9.epoch, 0u);
  EXPECT_NE(p8.epoch, p9.epoch);
  EXPECT_LT(p9.epoch, uint64_t{1} << 53) << "exact as a JSON number";
  EXPECT_EQ(seq.topics(), 3u);
}

TEST(SequencerTest, ARenewedEpochKeepsNumberingAndIsRenewedOncePerRun) {
  LocalSequencer seq;
  seq.seed("reel:1", {10, 77});
  seq.renew_epoch("reel:1");
  const StreamPosition renewed = seq.next(TopicKey("reel:1"));
  EXPECT_EQ(renewed.seq, 11u);
  EXPECT_NE(renewed.epoch, 77u);
  seq.renew_epoch("reel:1");
  EXPECT_EQ(seq.next(TopicKey("reel:1")).epoch, renewed.epoch);
}

TEST_F(DispatcherTest, SyncRepliesSayWhereTheStreamStandsAndWhichBatchHoldsIt) {
  Dispatcher d({&inboxes_[0], &inboxes_[1]}, seq_);
  d.report_interest(1, "reel:5", true);
  publish(d, "reel:5");
  d.request_sync(1, "reel:5", 99);
  publish(d, "reel:5");
  d.end_batch(7);
  const auto list = inboxes_[1].batches.take_all();
  const MessageBatch *b = list.head();
  ASSERT_NE(b, nullptr);
  ASSERT_EQ(b->syncs.size(), 1u);
  EXPECT_EQ(b->syncs[0].id, 99u);
  EXPECT_EQ(b->syncs[0].last_seq, 2u);
  EXPECT_EQ(b->syncs[0].epoch, seq_.current("reel:5").epoch);
  EXPECT_EQ(b->syncs[0].durable, 7u);
  EXPECT_EQ(b->messages.size(), 2u);
}

// A stream change (a cluster node cut off from Redis, or back): what was staged goes first,
// then the reset, to the loops with subscribers only; what is staged after it, and the
// syncs answered after it, are of the sequencer now in force, and say whether it is local.
TEST_F(DispatcherTest, AResetComesAfterWhatWasStagedAndBeforeTheNewStream) {
  LocalSequencer other;
  other.seed("reel:1", {500, 4242});
  Dispatcher d({&inboxes_[0], &inboxes_[1]}, seq_);
  d.report_interest(0, "reel:1", true);
  d.report_interest(0, "reel:2", true);
  d.report_interest(1, "reel:2", true);
  publish(d, "reel:1");
  d.reset("reel:1");
  d.reset("reel:9");  // no subscriber: nothing to tell
  d.use_sequencer(other, true);
  d.request_sync(0, "reel:1", 5);
  d.end_batch(0);
  const auto list = inboxes_[0].batches.take_all();
  const MessageBatch *first = list.head();
  ASSERT_NE(first, nullptr);
  ASSERT_EQ(first->messages.size(), 1u);
  EXPECT_EQ(first->resets, (std::vector<std::string>{"reel:1"}));
  const MessageBatch *second = first->next;
  ASSERT_NE(second, nullptr);
  EXPECT_TRUE(second->resets.empty());
  ASSERT_EQ(second->syncs.size(), 1u);
  EXPECT_EQ(second->syncs[0].epoch, 4242u);
  EXPECT_EQ(second->syncs[0].last_seq, 500u);
  EXPECT_TRUE(second->syncs[0].local);
  EXPECT_TRUE(delivered(1).empty());
  d.reset_all();  // one batch per loop, every topic it has subscribers of
  std::vector<std::string> r0, r1;
  for (auto [i, out] : {std::pair{0, &r0}, std::pair{1, &r1}}) {
    const auto l = inboxes_[i].batches.take_all();
    ASSERT_NE(l.head(), nullptr);
    EXPECT_EQ(l.head()->next, nullptr);
    *out = l.head()->resets;
  }
  std::sort(r0.begin(), r0.end());
  EXPECT_EQ(r0, (std::vector<std::string>{"reel:1", "reel:2"}));
  EXPECT_EQ(r1, (std::vector<std::string>{"reel:2"}));
  EXPECT_EQ(d.counters().resets.load(), 3u);  // topics reset (reel:9 had no subscriber)
}

// Joins of topics no one publishes to (an outsider can make up any number) leave nothing
// behind once their subscribers leave; a topic with messages keeps its stream.
TEST_F(DispatcherTest, StreamsWithoutMessagesAreForgottenWhenTheirLastSubscriberLeaves) {
  Dispatcher d({&inboxes_[0], &inboxes_[1]}, seq_);
  for (int i = 0; i < 1000; ++i) {
    const std::string topic = "reel:" + std::to_string(i);
    d.report_interest(i % 2, topic, true);
    d.request_sync(i % 2, topic, static_cast<uint64_t>(i + 1));
    d.end_batch(0);
    d.report_interest(i % 2, topic, false);
  }
  // Joined and gone before the answer: the question made no lasting stream either.
  d.report_interest(0, "reel:late", true);
  d.request_sync(0, "reel:late", 5000);
  d.report_interest(0, "reel:late", false);
  d.end_batch(0);
  EXPECT_EQ(seq_.topics(), 0u);

  d.report_interest(0, "reel:kept", true);
  d.report_interest(1, "reel:kept", true);
  publish(d, "reel:kept");
  const uint64_t epoch = seq_.current("reel:kept").epoch;
  d.report_interest(0, "reel:kept", false);
  d.end_batch(0);
  d.report_interest(1, "reel:kept", false);
  d.end_batch(0);
  EXPECT_EQ(seq_.topics(), 1u);
  EXPECT_EQ(seq_.current("reel:kept").seq, 1u);
  EXPECT_EQ(seq_.current("reel:kept").epoch, epoch);
}

TEST_F(DispatcherTest, BothLoopsShareOneMessageObject) {
  Dispatcher d({&inboxes_[0], &inboxes_[1]}, seq_);
  d.report_interest(0, "system", true);
  d.report_interest(1, "system", true);
  publish(d, "system");
  d.end_batch(0);
  const auto la = inboxes_[0].batches.take_all(), lb = inboxes_[1].batches.take_all();
  const MessageBatch *a = la.head(), *b = lb.head();
  ASSERT_TRUE(a && b);
  ASSERT_EQ(a->messages.size(), 1u);
  ASSERT_EQ(b->messages.size(), 1u);
  EXPECT_EQ(a->messages[0].get(), b->messages[0].get()) << "encoded once, shared";
}

TEST_F(DispatcherTest, BatchesArriveInOrderAndInterestCanBeWithdrawn) {
  Dispatcher d({&inboxes_[0], &inboxes_[1]}, seq_);
  d.report_interest(0, "reel:1", true);
  for (int batch = 0; batch < 3; ++batch) {
    publish(d, "reel:1");
    publish(d, "reel:1");
    d.end_batch(0);
  }
  EXPECT_EQ(delivered(0), (Delivered{{"reel:1", 1},
                                     {"reel:1", 2},
                                     {"reel:1", 3},
                                     {"reel:1", 4},
                                     {"reel:1", 5},
                                     {"reel:1", 6}}));
  d.report_interest(0, "reel:1", false);
  publish(d, "reel:1");
  d.end_batch(0);
  EXPECT_TRUE(delivered(0).empty());
  EXPECT_EQ(seq_.current("reel:1").seq, 7u) << "numbering goes on without an audience";
}

TEST_F(DispatcherTest, AMessageThatCannotBeEncodedIsCountedAndSkipped) {
  Dispatcher d({&inboxes_[0], &inboxes_[1]}, seq_);
  d.report_interest(1, "reel:1", true);
  const TopicKey key("reel:1");
  d.stage(typed_view("reel:1", "reel_update", BodyKind::kReelUpdate, "\xff\xff"), key,
          seq_.next(key).seq);
  publish(d, "reel:1");
  d.end_batch(0);
  EXPECT_EQ(delivered(1), (Delivered{{"reel:1", 2}}));
  EXPECT_EQ(d.counters().encode_failures.load(), 1u);
}

}  // namespace
}  // namespace kronop::daemon
