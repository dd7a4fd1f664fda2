// The durable log's blocks (common/log_block.h): what goes in comes out, many messages
// compress together, and a damaged row is refused with a reason, never misread.
#include "log_block.h"

#include <gtest/gtest.h>
#include <zstd.h>

#include <string>
#include <vector>

#include "kronop/v1/log.pb.h"

namespace kronop {
namespace {

StoredMessage message(uint64_t seq, std::string body) {
  StoredMessage m;
  m.seq = seq;
  m.publish_time_ns = 1'700'000'000'000'000'000 + seq;
  m.event = "reel_update";
  m.producer_id = 0xfeedbeefcafe0001;
  m.producer_seq = seq + 10;
  m.priority = seq % 3 == 0 ? -1 : 1;
  m.body_kind = BodyKind::kJson;
  m.body = std::move(body);
  return m;
}

std::vector<const StoredMessage *> refs(const std::vector<StoredMessage> &v) {
  std::vector<const StoredMessage *> out;
  for (const auto &m : v) out.push_back(&m);
  return out;
}

std::vector<StoredMessage> decode_all(LogBlockCodec &codec, LogBlockCodec::Encoded e) {
  std::vector<StoredMessage> out;
  StoredMessage m;
  m.topic = "reel:1";
  const std::string data(e.data);  // the codec's buffer is reused by decode
  auto n = codec.decode(static_cast<int>(e.format), data.data(), data.size(), m,
                        [&](const StoredMessage &r) {
                          out.push_back(r);
                          return true;
                        });
  EXPECT_TRUE(n.ok()) << n.error().message;
  if (n.ok()) {
    EXPECT_EQ(n.value(), out.size());
  }
  return out;
}

TEST(LogBlock, WhatGoesInComesOut) {
  std::vector<StoredMessage> in;
  for (uint64_t i = 1; i <= 300; ++i) {
    in.push_back(message(i, R"({"views":)" + std::to_string(i * 7) + R"(,"likes":3})"));
  }
  in[5].producer_id = 0;  // kronopd's own: no identity
  in[5].producer_seq = 0;
  in[6].body.clear();
  in[7].body_kind = BodyKind::kReelUpdate;
  in[7].body = std::string("\x08\x96\x01\x00\xff", 5);  // bytes, zeros included
  in[8].priority = 0;
  LogBlockCodec codec;
  const auto encoded = codec.encode(refs(in));
  EXPECT_EQ(encoded.format, LogBlockCodec::Format::kZstd);
  // Together they compress: far below the bodies' own size.
  std::size_t bodies = 0;
  for (const auto &m : in) bodies += m.body.size();
  EXPECT_LT(encoded.data.size(), bodies / 2) << encoded.raw.size();
  const auto out = decode_all(codec, encoded);
  ASSERT_EQ(out.size(), in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(out[i].topic, "reel:1");
    EXPECT_EQ(out[i].seq, in[i].seq);
    EXPECT_EQ(out[i].publish_time_ns, in[i].publish_time_ns);
    EXPECT_EQ(out[i].event, in[i].event);
    EXPECT_EQ(out[i].producer_id, in[i].producer_id);
    EXPECT_EQ(out[i].producer_seq, in[i].producer_seq);
    EXPECT_EQ(out[i].priority, in[i].priority);
    EXPECT_EQ(out[i].body_kind, in[i].body_kind);
    EXPECT_EQ(out[i].body, in[i].body);
  }
}

TEST(LogBlock, ABlockUnderAKibibyteIsStoredPlainALargerOneCompressed) {
  // One 200-byte update (a topic that gets a message per transaction): zstd's set-up would
  // cost more than the rest of the block's encoding, for a few bytes at most.
  std::vector<StoredMessage> one{message(1, R"({"views":)" + std::string(180, '1') + "}")};
  LogBlockCodec codec;
  auto encoded = codec.encode(refs(one));
  EXPECT_LT(encoded.raw.size(), LogBlockCodec::kMinCompressed);
  EXPECT_EQ(encoded.format, LogBlockCodec::Format::kPlain);
  EXPECT_EQ(encoded.data.size(), encoded.raw.size());
  ASSERT_EQ(decode_all(codec, encoded).size(), 1u);
  std::vector<StoredMessage> ten;
  for (uint64_t i = 1; i <= 10; ++i) ten.push_back(message(i, one[0].body));
  encoded = codec.encode(refs(ten));
  EXPECT_GE(encoded.raw.size(), LogBlockCodec::kMinCompressed);
  EXPECT_EQ(encoded.format, LogBlockCodec::Format::kZstd);
  EXPECT_EQ(decode_all(codec, encoded).size(), 10u);
}

TEST(LogBlock, TheWriterWritesTheSchemasWireFormat) {
  std::vector<StoredMessage> in{message(3, R"({"a":1})"), message(4, R"({"b":2})")};
  LogBlockCodec codec(1);
  const auto encoded = codec.encode(refs(in));
  std::string raw(encoded.data);
  if (encoded.format == LogBlockCodec::Format::kZstd) {
    raw.resize(ZSTD_getFrameContentSize(encoded.data.data(), encoded.data.size()));
    ASSERT_EQ(ZSTD_decompress(raw.data(), raw.size(), encoded.data.data(), encoded.data.size()),
              raw.size());
  }
  EXPECT_EQ(raw.size(), encoded.raw.size());
  v1::LogBlock block;
  ASSERT_TRUE(block.ParseFromString(raw));
  ASSERT_EQ(block.records_size(), 2);
  EXPECT_EQ(block.records(1).seq(), 4u);
  EXPECT_EQ(block.records(1).producer_seq(), 14u);
  EXPECT_EQ(block.records(1).body(), R"({"b":2})");
  EXPECT_EQ(block.records(1).priority(), 1);
  // And what the generated code writes, the codec reads.
  std::string generated;
  ASSERT_TRUE(block.SerializeToString(&generated));
  EXPECT_EQ(generated, raw);
}

TEST(LogBlock, ADamagedRowIsRefusedWithAReason) {
  std::vector<StoredMessage> in;
  for (uint64_t i = 1; i <= 50; ++i) in.push_back(message(i, R"({"views":1})"));
  LogBlockCodec codec;
  const auto encoded = codec.encode(refs(in));
  ASSERT_EQ(encoded.format, LogBlockCodec::Format::kZstd);
  const std::string good(encoded.data);
  StoredMessage m;
  auto none = [](const StoredMessage &) { return true; };
  auto refused = [&](int format, const std::string &data) {
    auto r = codec.decode(format, data.data(), data.size(), m, none);
    return r.ok() ? std::string() : r.error().message;
  };
  EXPECT_NE(refused(1, good.substr(0, good.size() / 2)), "");
  EXPECT_NE(refused(1, "not zstd at all"), "");
  EXPECT_NE(refused(7, good), "");                                // an unknown format
  EXPECT_NE(refused(0, std::string("\x0a\x05\x08\x01", 4)), "");  // a record cut short
  EXPECT_NE(refused(0, ""), "");                                  // no message
  // Seqs out of order.
  v1::LogBlock block;
  block.add_records()->set_seq(5);
  block.add_records()->set_seq(5);
  EXPECT_NE(refused(0, block.SerializeAsString()), "");
  // Bytes that are no LogBlock's fields parse as unknown fields: no message, refused.
  EXPECT_NE(refused(0, std::string(64, 'x')), "");
  // A frame that claims more than the limit is refused before anything is allocated.
  const std::string big(LogBlockCodec::kMaxDecodedBytes + 1, '\0');
  std::string frame(ZSTD_compressBound(big.size()), '\0');
  frame.resize(ZSTD_compress(frame.data(), frame.size(), big.data(), big.size(), 1));
  EXPECT_NE(refused(1, frame).find("claims"), std::string::npos) << refused(1, frame);
  EXPECT_EQ(refused(1, good), "");
}

TEST(LogBlock, StopsWhenToldTo) {
  std::vector<StoredMessage> in;
  for (uint64_t i = 1; i <= 10; ++i) in.push_back(message(i, "{}"));
  LogBlockCodec codec;
  const auto encoded = codec.encode(refs(in));
  const std::string data(encoded.data);
  StoredMessage m;
  int seen = 0;
  auto n = codec.decode(static_cast<int>(encoded.format), data.data(), data.size(), m,
                        [&](const StoredMessage &) { return ++seen < 4; });
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n.value(), 4u);
  EXPECT_EQ(seen, 4);
}

}  // namespace
}  // namespace kronop
