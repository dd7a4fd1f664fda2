// libipc in one process: the record format (parsed with the generated Envelope, which keeps
// envelope_writer.cc in step with envelope.proto), ring positions across wrap-around,
// backpressure, leases, the C ABI's argument checks, the reader's distrust of ring bytes,
// and the consumer's sleep/wake protocol. Cross-process behaviour is in multiprocess_test.cc.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <google/protobuf/util/message_differencer.h>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "kronop/clock.h"
#include "kronop/ipc/consumer.h"
#include "kronop/ipc/process_identity.h"
#include "kronop/ipc/producer.h"
#include "kronop/v1/envelope.pb.h"
#include "kronop_ipc.h"
#include "support/test_support.h"

namespace kronop {
namespace {

using namespace std::chrono_literals;
using ipc::Consumer;
using ipc::Producer;
using ipc::RecordHeader;
using ipc::RingControl;
using ipc::RingRecord;

constexpr std::size_t kAll = SIZE_MAX;

// A JSON object carrying its counter, padded to vary record sizes.
std::string counter_json(uint64_t n, std::size_t pad = 0) {
  return R"({"n":)" + std::to_string(n) + R"(,"pad":")" + std::string(pad, 'x') + R"("})";
}

v1::Envelope parse(std::string_view bytes) {
  v1::Envelope env;
  EXPECT_TRUE(env.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())));
  return env;
}

// Writes a record header at the ring's write position and moves write_pos by `advance`, as
// a buggy or hostile producer could.
void scribble(RingControl *ring, uint64_t capacity, RecordHeader hdr, uint64_t advance) {
  const uint64_t w = ring->write_pos.load();
  std::memcpy(ipc::ring_data(ring) + (w & (capacity - 1)), &hdr, sizeof hdr);
  ring->write_pos.store(w + advance);
}

class RingTest : public ::testing::Test {
 protected:
  // Creates the segment, or re-attaches to it as a restarted daemon would.
  void attach(uint32_t rings = 2, uint64_t capacity = 4096) {
    consumer_.reset();
    auto c = Consumer::attach({guard_.name, rings, capacity}, nullptr);
    if (!c.ok()) throw std::runtime_error(c.error().message);
    consumer_ = std::move(c).value();
  }

  std::unique_ptr<Producer> open() {
    auto p = Producer::open(guard_.name);
    if (!p.ok()) throw std::runtime_error(p.error().message);
    return std::move(p).value();
  }

  // Every committed record, parsed; released afterwards unless told otherwise.
  std::vector<v1::Envelope> drain(bool release = true) {
    std::vector<v1::Envelope> out;
    consumer_->drain(kAll, [&](uint32_t, const RingRecord &r) { out.push_back(parse(r.bytes)); });
    if (release) consumer_->release_all_read();
    return out;
  }

  RingControl *ring(uint32_t index) { return consumer_->reader(index).control(); }
  ipc::SegmentHeader *header() { return consumer_->segment().header(); }
  const char *name() const { return guard_.name.c_str(); }

  test::SegmentGuard guard_{test::unique_name("ring-test")};
  std::unique_ptr<Consumer> consumer_;
};

TEST_F(RingTest, PublishedRecordParsesAsEnvelope) {
  attach();
  auto producer = open();
  const uint64_t before = realtime_ns();
  for (int n = 0; n < 3; ++n) {
    ASSERT_EQ(producer->publish("reel:7", "reel_update", counter_json(n), KRONOP_PRIORITY_HIGH),
              KRONOP_OK);
  }
  const uint64_t after = realtime_ns();
  EXPECT_EQ(producer->last_seq(), 3u);

  auto got = drain();
  ASSERT_EQ(got.size(), 3u);
  for (uint64_t n = 0; n < 3; ++n) {
    const v1::Envelope &env = got[n];
    EXPECT_EQ(env.topic(), "reel:7");
    EXPECT_EQ(env.event(), "reel_update");
    EXPECT_EQ(env.body_case(), v1::Envelope::kJson);
    EXPECT_EQ(env.json(), counter_json(n));
    EXPECT_EQ(env.producer_id(), producer->id());
    EXPECT_EQ(env.producer_seq(), n + 1);
    EXPECT_EQ(env.priority(), v1::PRIORITY_HIGH);
    EXPECT_GE(env.publish_time_ns(), before);
    EXPECT_LE(env.publish_time_ns(), after);
  }
}

TEST_F(RingTest, RecordsOfSeveralProducersKeepTheirOrder) {
  attach(2, 8192);
  auto a = open();
  auto b = open();
  ASSERT_NE(a->ring_index(), b->ring_index());
  std::vector<uint64_t> next(2, 0);  // the counter expected next, per ring
  auto take = [&](uint32_t ring_index, const RingRecord &r) {
    v1::Envelope env = parse(r.bytes);
    Producer &from = ring_index == a->ring_index() ? *a : *b;
    EXPECT_EQ(env.producer_id(), from.id());
    EXPECT_EQ(env.json(), counter_json(next[ring_index]));
    EXPECT_EQ(env.producer_seq(), ++next[ring_index]);
  };
  // Small drains between publishes so reads stop and resume at many different positions.
  for (uint64_t n = 0; n < 1000; ++n) {
    ASSERT_EQ(a->publish("reel:1", "tick", counter_json(n), 0), KRONOP_OK);
    ASSERT_EQ(b->publish("reel:2", "tick", counter_json(n), 0), KRONOP_OK);
    if (n % 4 == 3) {
      consumer_->drain(5, take);
      consumer_->release_all_read();
    }
  }
  consumer_->drain(kAll, take);
  EXPECT_EQ(next, (std::vector<uint64_t>{1000, 1000}));
}

TEST_F(RingTest, WrapAroundKeepsEveryRecordIntactAndInOrder) {
  constexpr uint64_t kCapacity = 4096;
  constexpr uint64_t kRecords = 5000;
  attach(1, kCapacity);
  auto producer = open();
  // Sizes that do not divide the ring, so records keep ending short of its end and the
  // producer has to fill the rest with padding records.
  auto payload = [](uint64_t n) { return counter_json(n, n * 37 % 700); };
  uint64_t next = 0;
  uint64_t record_bytes = 0;
  auto check_and_release = [&] {
    consumer_->drain(kAll, [&](uint32_t, const RingRecord &r) {
      v1::Envelope env = parse(r.bytes);
      EXPECT_EQ(env.producer_seq(), next + 1);
      EXPECT_EQ(env.json(), payload(next));
      record_bytes += ipc::align_record(sizeof(RecordHeader) + r.bytes.size());
      ++next;
    });
    consumer_->release_all_read();
  };
  for (uint64_t n = 0; n < kRecords; ++n) {
    int rc = producer->publish("reel:1", "tick", payload(n), 0);
    if (rc == KRONOP_EFULL) {
      check_and_release();
      rc = producer->publish("reel:1", "tick", payload(n), 0);
    }
    ASSERT_EQ(rc, KRONOP_OK) << "record " << n;
  }
  check_and_release();

  EXPECT_EQ(next, kRecords);
  const uint64_t written = ring(0)->write_pos.load();
  EXPECT_GT(written, 100 * kCapacity);  // wrapped many times
  EXPECT_GT(written, record_bytes);     // the difference is padding, which is never delivered
  EXPECT_EQ(consumer_->corrupt_ranges(), 0u);
}

TEST_F(RingTest, FullRingRefusesAtOnceUntilReleased) {
  attach(1, 4096);
  auto producer = open();
  int accepted = 0;
  while (producer->publish("reel:1", "tick", counter_json(accepted), 0) == KRONOP_OK) ++accepted;
  ASSERT_GT(accepted, 10);

  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(producer->publish("reel:1", "tick", counter_json(accepted), 0), KRONOP_EFULL);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 50ms);  // refused, not waited
  EXPECT_EQ(consumer_->snapshot()[0].refused_full, 2u);       // both refusals are counted

  // Read but not released: the producer may not reuse the space yet.
  EXPECT_EQ(drain(/*release=*/false).size(), static_cast<std::size_t>(accepted));
  EXPECT_EQ(producer->publish("reel:1", "tick", counter_json(accepted), 0), KRONOP_EFULL);
  EXPECT_EQ(producer->publish_wait("reel:1", "tick", counter_json(accepted), 0, 20),
            KRONOP_ETIMEDOUT);

  consumer_->release_all_read();
  EXPECT_EQ(producer->publish("reel:1", "tick", counter_json(accepted), 0), KRONOP_OK);
  auto got = drain();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].json(), counter_json(accepted));
}

TEST_F(RingTest, UnreleasedRecordsAreReadAgainAfterReattach) {
  attach(1, 4096);
  auto producer = open();
  uint64_t published = 0;
  while (producer->publish("reel:1", "tick", counter_json(published), 0) == KRONOP_OK) {
    ++published;
  }
  // Read everything, release only the first few: a later stage still holds the rest.
  constexpr uint64_t kReleased = 5;
  std::vector<uint64_t> ends;
  consumer_->drain(kAll, [&](uint32_t, const RingRecord &r) { ends.push_back(r.end_pos); });
  ASSERT_EQ(ends.size(), published);
  EXPECT_EQ(producer->publish("reel:1", "tick", counter_json(published), 0), KRONOP_EFULL)
      << "read but unreleased records must keep their space";
  consumer_->reader(0).release(ends[kReleased - 1]);

  auto expect_unreleased = [&](ipc::RingReader &reader) {
    RingRecord r;
    for (uint64_t n = kReleased; n < published; ++n) {
      ASSERT_TRUE(reader.next(r)) << "record " << n << " was lost";
      EXPECT_EQ(parse(r.bytes).json(), counter_json(n));
    }
    EXPECT_FALSE(reader.next(r));
  };
  ipc::RingReader fresh(ring(0), 4096);
  expect_unreleased(fresh);

  const uint64_t epoch = consumer_->epoch();
  attach(1, 4096);  // the daemon restarts
  EXPECT_EQ(consumer_->epoch(), epoch + 1);
  expect_unreleased(consumer_->reader(0));
  consumer_->release_all_read();

  // The producer never noticed the restart and goes on where it was.
  ASSERT_EQ(producer->publish("reel:1", "tick", counter_json(published), 0), KRONOP_OK);
  auto got = drain();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].producer_seq(), published + 1);
}

// A producer may rewrite a record after committing it. What the reader handed out was
// copied out of the ring once, so a later rewrite changes nothing the daemon validated and
// uses (delivered, logged).
TEST_F(RingTest, RecordRewrittenInTheRingAfterItWasReadIsNotChanged) {
  attach(1, 4096);
  auto producer = open();
  const std::string json = counter_json(7, 64);
  ASSERT_EQ(producer->publish("reel:1", "tick", json, 0), KRONOP_OK);
  uint8_t *data = ipc::ring_data(ring(0));
  std::size_t rewritten = 0;
  consumer_->drain(kAll, [&](uint32_t, const RingRecord &r) {
    const std::string before(r.bytes);
    // The producer flips every byte of what it committed, headers included.
    for (uint64_t i = 0; i < r.end_pos; ++i) data[i] = static_cast<uint8_t>(data[i] ^ 0x5a);
    rewritten = r.end_pos;
    EXPECT_EQ(std::string(r.bytes), before) << "the record must be the reader's own copy";
    EXPECT_EQ(parse(r.bytes).json(), json);
  });
  ASSERT_GT(rewritten, 0u);
}

// Every record handed out is followed by kRecordSlack readable bytes of the reader's copy,
// small and large records alike (the copy grows). Under ASan a read past them would fail.
TEST_F(RingTest, RecordCopiesAreFollowedByTheirSlack) {
  attach(1, 1 << 16);
  auto producer = open();
  const std::size_t sizes[] = {8, 3000, 16, 9000, 100};
  for (std::size_t n : sizes)
    ASSERT_EQ(producer->publish("reel:1", "e", counter_json(1, n), 0), KRONOP_OK);
  std::size_t seen = 0;
  consumer_->drain(kAll, [&](uint32_t, const RingRecord &r) {
    const volatile char *end = r.bytes.data() + r.bytes.size();
    for (std::size_t i = 0; i < ipc::kRecordSlack; ++i) (void)end[i];
    EXPECT_EQ(parse(r.bytes).json(), counter_json(1, sizes[seen]));
    ++seen;
  });
  EXPECT_EQ(seen, std::size(sizes));
}

TEST_F(RingTest, TooLargeRecordIsRefused) {
  attach(1, 4096);
  auto producer = open();
  const std::string topic(64, 't');
  const std::string event(32, 'e');
  const std::size_t max = producer->max_payload(topic.size(), event.size());
  ASSERT_GT(max, 100u);
  // max_payload is a promise: a payload that large does fit.
  EXPECT_EQ(producer->publish(topic, event, counter_json(1, max - counter_json(1).size()), 0),
            KRONOP_OK);
  EXPECT_EQ(producer->publish(topic, event, counter_json(2, 4096), 0), KRONOP_ETOOBIG);
  EXPECT_EQ(consumer_->snapshot()[0].refused_too_large, 1u);
  EXPECT_EQ(drain().size(), 1u);
}

TEST_F(RingTest, BadArgumentsAreRefused) {
  attach(2, 4096);
  auto producer = open();
  const std::string ok = counter_json(1);
  EXPECT_EQ(producer->publish("", "tick", ok, 0), KRONOP_EINVAL);
  EXPECT_EQ(producer->publish("reel:1", "", ok, 0), KRONOP_EINVAL);
  EXPECT_EQ(producer->publish(std::string(256, 't'), "tick", ok, 0), KRONOP_EINVAL);
  EXPECT_EQ(producer->publish("reel:1", std::string(65, 'e'), ok, 0), KRONOP_EINVAL);
  EXPECT_EQ(producer->publish("reel:1", "tick", ok, 7), KRONOP_EINVAL);
  EXPECT_EQ(producer->publish("reel:1", "tick", ok, -1), KRONOP_EINVAL);
  EXPECT_EQ(producer->publish("reel:1", "tick", "[1]", 0), KRONOP_EINVAL);
  EXPECT_EQ(producer->publish("reel:1", "tick", "  ", 0), KRONOP_EINVAL);
  EXPECT_EQ(producer->publish_envelope(""), KRONOP_EINVAL);
  EXPECT_EQ(producer->publish("reel:1", "tick", " \n{}", 0), KRONOP_OK);

  kronop_producer *p = kronop_producer_open(name(), nullptr, 0);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(kronop_publish(nullptr, "reel:1", "tick", ok.data(), ok.size(), 0), KRONOP_EINVAL);
  EXPECT_EQ(kronop_publish(p, nullptr, "tick", ok.data(), ok.size(), 0), KRONOP_EINVAL);
  EXPECT_EQ(kronop_publish(p, "reel:1", nullptr, ok.data(), ok.size(), 0), KRONOP_EINVAL);
  EXPECT_EQ(kronop_publish(p, "reel:1", "tick", nullptr, ok.size(), 0), KRONOP_EINVAL);
  EXPECT_EQ(kronop_publish_wait(p, "reel:1", "tick", nullptr, 0, 0, 10), KRONOP_EINVAL);
  EXPECT_EQ(kronop_publish_envelope(nullptr, ok.data(), ok.size()), KRONOP_EINVAL);
  EXPECT_EQ(kronop_publish_envelope(p, nullptr, 4), KRONOP_EINVAL);
  EXPECT_EQ(kronop_producer_id(nullptr), 0u);
  kronop_producer_close(p);
  kronop_producer_close(nullptr);

  EXPECT_EQ(drain().size(), 1u) << "only the valid record may reach the ring";
}

TEST_F(RingTest, OpenWithoutDaemonFailsWithAMessage) {
  char err[256] = "";
  EXPECT_EQ(kronop_producer_open(name(), err, sizeof err), nullptr);
  EXPECT_EQ(kronop_last_open_error(), KRONOP_ENODAEMON);
  EXPECT_NE(std::string(err).find(name()), std::string::npos) << err;

  char small[8] = "";
  EXPECT_EQ(kronop_producer_open(name(), small, sizeof small), nullptr);
  EXPECT_EQ(std::strlen(small), sizeof small - 1);  // truncated, still terminated

  auto p = Producer::open(name());
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, KRONOP_ENODAEMON);
}

TEST_F(RingTest, AllRingsLeasedGivesENORING) {
  attach(2, 4096);
  auto a = open();
  auto b = open();
  EXPECT_NE(a->ring_index(), b->ring_index());

  auto c = Producer::open(name());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, KRONOP_ENORING);
  char err[256] = "";
  EXPECT_EQ(kronop_producer_open(name(), err, sizeof err), nullptr);
  EXPECT_EQ(kronop_last_open_error(), KRONOP_ENORING);
  EXPECT_STRNE(err, "");
}

TEST_F(RingTest, ClosedProducerFreesItsRingAndTheNextGoesOn) {
  attach(1, 4096);
  const std::string json = counter_json(0);
  kronop_producer *first = kronop_producer_open(name(), nullptr, 0);
  ASSERT_NE(first, nullptr);
  const uint64_t first_id = kronop_producer_id(first);
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(kronop_publish(first, "reel:1", "tick", json.data(), json.size(), 0), KRONOP_OK);
  }
  EXPECT_NE(ring(0)->lease.load(), 0u);
  kronop_producer_close(first);
  EXPECT_EQ(ring(0)->lease.load(), 0u);

  kronop_producer *second = kronop_producer_open(name(), nullptr, 0);
  ASSERT_NE(second, nullptr);
  EXPECT_NE(kronop_producer_id(second), first_id);
  ASSERT_EQ(kronop_publish(second, "reel:1", "tick", json.data(), json.size(), 0), KRONOP_OK);
  EXPECT_EQ(kronop_producer_last_seq(second), 1u);
  kronop_producer_close(second);

  // One stream in the ring: a holder that restarted at position 0 would look like a
  // write_pos moving backwards and be counted as corrupt.
  auto got = drain();
  ASSERT_EQ(got.size(), 4u);
  for (uint64_t i = 0; i < 3; ++i) {
    EXPECT_EQ(got[i].producer_id(), first_id);
    EXPECT_EQ(got[i].producer_seq(), i + 1);
  }
  EXPECT_NE(got[3].producer_id(), first_id);
  EXPECT_EQ(got[3].producer_seq(), 1u);
  EXPECT_EQ(consumer_->corrupt_ranges(), 0u);
  EXPECT_EQ(ring(0)->leases_granted.load(), 2u);
}

TEST_F(RingTest, PublishEnvelopeOverridesIdentityAndKeepsTypedBody) {
  attach(1, 4096);
  v1::Envelope sent;
  sent.set_topic("reel:42");
  sent.set_event("reel_update");
  sent.set_producer_id(0xdeadbeef);  // the handle's identity must win over these
  sent.set_producer_seq(12345);
  sent.set_publish_time_ns(1);
  v1::ReelUpdate *update = sent.mutable_reel_update();
  update->set_id("u-1");
  update->set_reel_id(42);
  (*update->mutable_update_data())["views"] = "1000";
  update->add_target_users("alice");
  update->set_priority(v1::PRIORITY_CRITICAL);
  const std::string bytes = sent.SerializeAsString();

  kronop_producer *p = kronop_producer_open(name(), nullptr, 0);
  ASSERT_NE(p, nullptr);
  const uint64_t before = realtime_ns();
  ASSERT_EQ(kronop_publish_envelope(p, bytes.data(), bytes.size()), KRONOP_OK);
  ASSERT_EQ(kronop_publish_envelope(p, bytes.data(), bytes.size()), KRONOP_OK);
  const uint64_t id = kronop_producer_id(p);
  kronop_producer_close(p);

  auto got = drain();
  ASSERT_EQ(got.size(), 2u);
  for (uint64_t i = 0; i < 2; ++i) {
    EXPECT_EQ(got[i].topic(), "reel:42");
    EXPECT_EQ(got[i].event(), "reel_update");
    EXPECT_EQ(got[i].producer_id(), id);
    EXPECT_EQ(got[i].producer_seq(), i + 1);
    EXPECT_GE(got[i].publish_time_ns(), before);
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(got[i].reel_update(), *update))
        << got[i].reel_update().DebugString();
  }
}

TEST_F(RingTest, SegmentIsCreatedWithMode0660) {
  attach();
  struct stat st {};
  ASSERT_EQ(::stat(("/dev/shm/" + guard_.name).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0660u);
}

TEST_F(RingTest, CorruptRecordsAreCountedAndSkipped) {
  attach(1, 4096);
  const RecordHeader bad[] = {
      {1u << 30, ipc::kRecordEnvelope},  // longer than what was committed
      {8, 0x12345678},                   // unknown kind
      {8, ipc::kRecordPadding},          // padding that does not reach the end of the ring
  };
  uint64_t corrupt = 0;
  for (const RecordHeader &hdr : bad) {
    scribble(ring(0), 4096, hdr, 16);
    EXPECT_TRUE(drain().empty());
    EXPECT_EQ(consumer_->corrupt_ranges(), ++corrupt);
  }
  EXPECT_EQ(consumer_->reader(0).corrupt_ranges(), corrupt);

  // The skipped bytes were released like records: the next holder writes after them.
  auto producer = open();
  ASSERT_EQ(producer->publish("reel:1", "tick", counter_json(1), 0), KRONOP_OK);
  auto got = drain();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].json(), counter_json(1));
  EXPECT_EQ(consumer_->corrupt_ranges(), corrupt);
}

TEST_F(RingTest, BadWritePosIsCountedAndNeverFollowed) {
  constexpr uint64_t kCapacity = 4096;
  attach(1, kCapacity);
  {
    auto producer = open();
    for (int n = 0; n < 3; ++n) {
      ASSERT_EQ(producer->publish("reel:1", "tick", counter_json(n), 0), KRONOP_OK);
    }
  }  // closed: from here on only the test writes write_pos
  ASSERT_EQ(drain().size(), 3u);
  RingControl *r = ring(0);
  ipc::RingReader &reader = consumer_->reader(0);
  const uint64_t w = r->write_pos.load();

  r->write_pos.store(w - 8);  // backwards
  EXPECT_TRUE(drain().empty());
  EXPECT_TRUE(drain().empty());
  EXPECT_EQ(consumer_->corrupt_ranges(), 1u);  // once per bad value, not per look
  EXPECT_EQ(reader.read_pos(), w);             // never re-reads released space

  r->write_pos.store(w + 3 * kCapacity);  // more than a ring ahead of what was released
  EXPECT_TRUE(drain().empty());
  EXPECT_EQ(consumer_->corrupt_ranges(), 2u);

  // Not 8-byte aligned, and then short of a record header.
  r->write_pos.store(reader.read_pos() + 12);
  EXPECT_TRUE(drain().empty());
  r->write_pos.store(reader.read_pos() + 4);
  EXPECT_TRUE(drain().empty());
  EXPECT_EQ(consumer_->corrupt_ranges(), 4u);

  auto producer = open();
  ASSERT_EQ(producer->publish("reel:1", "tick", counter_json(9), 0), KRONOP_OK);
  auto got = drain();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].json(), counter_json(9));
}

TEST_F(RingTest, MisalignedWritePosNeverMakesTheReaderReadPastTheRing) {
  // With 63 rings of 4 KiB the last ring's data ends at the segment's end, on a page
  // boundary. An inaccessible page reserved just above where the kernel will most likely
  // map the segment turns a read past that ring into a crash, not a silent over-read.
  constexpr uint32_t kRings = 63;
  constexpr uint64_t kCapacity = 4096;
  const uint64_t size = ipc::SegmentGeometry{kRings, kCapacity}.total_size();
  const auto page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  if (size % page != 0) GTEST_SKIP() << "the segment does not end on a page boundary";
  void *reserved = ::mmap(nullptr, size + page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(reserved, MAP_FAILED);
  ::munmap(reserved, size);  // the segment goes into this hole, below the guard page
  attach(kRings, kCapacity);

  RingControl *last = ring(kRings - 1);
  last->write_pos.store(kCapacity - 4);  // misaligned: the reader skips to it
  EXPECT_TRUE(drain().empty());
  last->write_pos.store(kCapacity + 8);  // 12 bytes on: a header there would cross the end
  EXPECT_TRUE(drain().empty());
  EXPECT_EQ(consumer_->corrupt_ranges(), 2u);
  ::munmap(static_cast<uint8_t *>(reserved) + size, page);
}

TEST_F(RingTest, RandomRingContentNeverLeadsTheReaderOutOfTheRing) {
  constexpr uint64_t kCapacity = 4096;
  attach(1, kCapacity);
  RingControl *r = ring(0);
  const uint8_t *data = ipc::ring_data(r);
  ipc::RingReader &reader = consumer_->reader(0);
  std::mt19937_64 rng(20240601);
  const uint32_t kinds[] = {ipc::kRecordEnvelope, ipc::kRecordPadding, 0};
  uint64_t outside = 0;
  for (int i = 0; i < 20000; ++i) {
    // A few plausible-looking headers where the reader will look, then a write_pos near it.
    for (int h = 0; h < 4; ++h) {
      const uint64_t at = (reader.read_pos() + 8 * (rng() % 64)) & (kCapacity - 8);
      const uint32_t length = static_cast<uint32_t>(rng() % 3 == 0 ? rng() : rng() % kCapacity);
      const RecordHeader hdr{length, kinds[rng() % 3]};
      std::memcpy(ipc::ring_data(r) + at, &hdr, sizeof hdr);
    }
    const int64_t delta = static_cast<int64_t>(rng() % (3 * kCapacity)) - 64;
    r->write_pos.store(reader.read_pos() + static_cast<uint64_t>(delta));
    consumer_->drain(kAll, [&](uint32_t, const RingRecord &rec) {
      // The record is a copy (read once): of bytes that lay inside the ring, where its
      // position says, header included.
      const uint64_t size = ipc::align_record(sizeof(RecordHeader) + rec.bytes.size());
      const uint64_t start = (rec.end_pos - size) & (kCapacity - 1);
      if (size > kCapacity || start + size > kCapacity ||
          std::memcmp(rec.bytes.data(), data + start + sizeof(RecordHeader), rec.bytes.size()) != 0)
        ++outside;
    });
    if (rng() % 2 == 0) consumer_->release_all_read();
  }
  EXPECT_EQ(outside, 0u);
  EXPECT_GT(consumer_->corrupt_ranges(), 0u);
}

// A ring whose write_pos a previous holder left misaligned (or out of range) is not taken:
// the new producer's padding header could otherwise land outside the ring.
TEST_F(RingTest, ProducerSkipsARingWithABrokenWritePos) {
  attach(2, 4096);
  RingControl *ring0 = consumer_->reader(0).control();
  ring0->write_pos.store(4092);  // misaligned, 4 bytes before the end
  auto p = open();
  EXPECT_EQ(p->ring_index(), 1u);
  EXPECT_EQ(ring0->lease.load(), 0u);                        // tried and given back
  ring0->write_pos.store(ring0->release_pos.load() + 8192);  // more than a ring ahead
  auto q = Producer::open(guard_.name);
  ASSERT_FALSE(q.ok());
  EXPECT_EQ(q.error().code, KRONOP_ENORING);
}

TEST_F(RingTest, RetiredSegmentRefusesPublish) {
  attach(2, 4096);
  auto producer = open();
  header()->retired.store(1);
  EXPECT_EQ(producer->publish("reel:1", "tick", counter_json(1), 0), KRONOP_ENODAEMON);
  EXPECT_EQ(kronop_producer_open(name(), nullptr, 0), nullptr);
  EXPECT_EQ(kronop_last_open_error(), KRONOP_ENODAEMON);
  EXPECT_TRUE(drain().empty());
}

// Anyone in the producer group can remove the segment file or put another file in its
// place. The consumer creates it again under the name and reads the old one to its end.
TEST_F(RingTest, RemovedOrReplacedSegmentFileIsCreatedAgainAndTheOldOneReadToItsEnd) {
  attach(2, 4096);
  const std::string path = "/dev/shm/" + guard_.name;
  uint64_t n = 0;
  for (bool replace : {false, true}) {
    SCOPED_TRACE(replace ? "replaced" : "removed");
    auto before = open();
    for (int i = 0; i < 3; ++i) ASSERT_EQ(before->publish("reel:1", "e", counter_json(++n), 0), 0);
    if (replace) {
      ASSERT_EQ(::rename(path.c_str(), (path + ".moved").c_str()), 0);
      std::ofstream(path) << "someone else's file";
    } else {
      ASSERT_EQ(::unlink(path.c_str()), 0);
    }
    const uint64_t generation = consumer_->generation();
    Consumer::SegmentCheck c = consumer_->check_segment();
    EXPECT_TRUE(c.recreated);
    EXPECT_EQ(consumer_->generation(), generation + 1);
    EXPECT_NE(c.problem.find(replace ? "replaced by another file" : "was removed"),
              std::string::npos)
        << c.problem;
    EXPECT_NE(c.problem.find("created it again"), std::string::npos) << c.problem;
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0660u);
    EXPECT_EQ(st.st_size, static_cast<off_t>(consumer_->segment().geometry().total_size()));
    // The producer attached before is told to open the name again; one that does publishes
    // into the new segment, and what the first published before is still read.
    EXPECT_EQ(before->publish("reel:1", "e", counter_json(0), 0), KRONOP_ENODAEMON);
    auto after = open();
    ASSERT_EQ(after->publish("reel:2", "e", counter_json(++n), 0), KRONOP_OK);
    std::vector<std::string> got;
    for (const auto &env : drain()) got.push_back(env.json());
    std::sort(got.begin(), got.end());
    std::vector<std::string> want;
    for (uint64_t k = n - 3; k <= n; ++k) want.push_back(counter_json(k));
    std::sort(want.begin(), want.end());
    EXPECT_EQ(got, want);
    // The old segment is let go once its producer has given its ring back.
    EXPECT_TRUE(consumer_->retiring());
    EXPECT_EQ(consumer_->check_segment().problem, "");
    EXPECT_TRUE(consumer_->retiring());
    before.reset();
    EXPECT_EQ(consumer_->check_segment().problem, "");
    EXPECT_FALSE(consumer_->retiring());
    ::unlink((path + ".moved").c_str());
  }
  // Nothing of the temporary name is left behind.
  EXPECT_NE(::access((path + ".kronopd-new").c_str(), F_OK), 0);
}

// One retired segment at a time: while a live producer still holds a ring of the old one,
// a second removal is reported and put right once that producer has left.
TEST_F(RingTest, SecondRemovalWaitsUntilTheRetiredSegmentIsLetGo) {
  attach(2, 4096);
  const std::string path = "/dev/shm/" + guard_.name;
  auto holder = open();
  ASSERT_EQ(::unlink(path.c_str()), 0);
  ASSERT_TRUE(consumer_->check_segment().recreated);
  ASSERT_EQ(::unlink(path.c_str()), 0);
  Consumer::SegmentCheck c = consumer_->check_segment();
  EXPECT_FALSE(c.recreated);
  EXPECT_NE(c.problem.find("once no producer holds a ring"), std::string::npos) << c.problem;
  EXPECT_NE(::access(path.c_str(), F_OK), 0);
  holder.reset();
  c = consumer_->check_segment();
  EXPECT_TRUE(c.recreated) << c.problem;
  EXPECT_EQ(::access(path.c_str(), F_OK), 0);
  auto producer = open();
  ASSERT_EQ(producer->publish("reel:1", "e", counter_json(1), 0), KRONOP_OK);
  EXPECT_EQ(drain().size(), 1u);
}

// A segment another live kronopd is attached to is not taken from it.
TEST_F(RingTest, SegmentOfAnotherLiveDaemonIsNotReplaced) {
  attach(2, 4096);
  const std::string path = "/dev/shm/" + guard_.name;
  ASSERT_EQ(::unlink(path.c_str()), 0);
  ipc::SegmentHeader other{};
  other.magic = ipc::kSegmentMagic;
  auto init_ticks = ipc::process_start_ticks(1);
  ASSERT_TRUE(init_ticks.has_value());
  other.daemon_pid.store(1);
  other.daemon_start_ticks.store(*init_ticks);
  {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char *>(&other), sizeof other);
  }
  Consumer::SegmentCheck c = consumer_->check_segment();
  EXPECT_FALSE(c.recreated);
  EXPECT_NE(c.problem.find("another kronopd (pid 1)"), std::string::npos) << c.problem;
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, static_cast<off_t>(sizeof other));
}

TEST_F(RingTest, LeaseOfAReusedPidIsReclaimed) {
  attach(2, 4096);
  auto ticks = ipc::process_start_ticks(::getpid());
  ASSERT_TRUE(ticks.has_value());
  const auto pid = static_cast<uint32_t>(::getpid());
  // Our pid with another start time: the process that took the lease is gone and its pid
  // now belongs to us. The other lease really is ours.
  ring(0)->lease.store(ipc::make_lease_word(pid, *ticks + 1));
  ring(1)->lease.store(ipc::make_lease_word(pid, *ticks));
  EXPECT_EQ(consumer_->reclaim_dead_leases(), 1u);
  EXPECT_EQ(ring(0)->lease.load(), 0u);
  EXPECT_NE(ring(1)->lease.load(), 0u);
}

TEST_F(RingTest, SleepingConsumerWakesPromptlyOnPublish) {
  attach(1, 4096);
  auto producer = open();
  const uint64_t wakes = consumer_->wake_calls();
  std::chrono::steady_clock::duration waited{};
  std::thread consumer_thread([&] {
    const auto start = std::chrono::steady_clock::now();
    consumer_->wait_for_records(0, 5000);
    waited = std::chrono::steady_clock::now() - start;
  });
  // Publish only once the consumer announced its sleep, so that the wake path is tested.
  EXPECT_TRUE(test::eventually([&] { return header()->consumer_sleeping.load() != 0; }));
  EXPECT_EQ(producer->publish("reel:1", "tick", counter_json(1), 0), KRONOP_OK);
  consumer_thread.join();
  EXPECT_LT(waited, 1s);
  EXPECT_EQ(consumer_->wake_calls(), wakes + 1);
  EXPECT_EQ(drain().size(), 1u);

  // A busy consumer costs producers no wake-up.
  EXPECT_EQ(producer->publish("reel:1", "tick", counter_json(2), 0), KRONOP_OK);
  EXPECT_EQ(consumer_->wake_calls(), wakes + 1);
}

TEST_F(RingTest, ProducerAndConsumerThreadsAgreeOnEveryRecord) {
  // A small ring makes the producer wait for room and the consumer sleep over and over.
  // ThreadSanitizer cannot judge the ring's memory orders here: the producer maps the
  // segment at another address, so to TSan the two sides touch unrelated memory.
  constexpr uint64_t kRecords = 20000;
  attach(1, 4096);
  auto producer = open();
  auto payload = [](uint64_t n) { return counter_json(n, n % 300); };
  std::thread producer_thread([&] {
    for (uint64_t n = 0; n < kRecords; ++n) {
      if (producer->publish_wait("reel:1", "tick", payload(n), 0, 10000) != KRONOP_OK) return;
    }
  });
  uint64_t next = 0;
  uint64_t mismatched = 0;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (next < kRecords && std::chrono::steady_clock::now() < deadline) {
    const std::size_t n = consumer_->drain(kAll, [&](uint32_t, const RingRecord &r) {
      if (parse(r.bytes).json() != payload(next++)) ++mismatched;
    });
    consumer_->release_all_read();
    if (n == 0) consumer_->wait_for_records(10000, 10);
  }
  producer_thread.join();
  EXPECT_EQ(next, kRecords);
  EXPECT_EQ(mismatched, 0u);
}

TEST_F(RingTest, WaitWithNothingPublishedReturnsAfterItsTimeout) {
  attach(1, 4096);
  const auto start = std::chrono::steady_clock::now();
  consumer_->wait_for_records(1000000, 300);
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_GE(waited, 250ms);
  EXPECT_LT(waited, 2s);
  EXPECT_EQ(header()->consumer_sleeping.load(), 0u);  // the announcement is withdrawn
}

TEST_F(RingTest, WakeForShutdownEndsTheWait) {
  attach(1, 4096);
  std::chrono::steady_clock::duration waited{};
  std::thread consumer_thread([&] {
    const auto start = std::chrono::steady_clock::now();
    consumer_->wait_for_records(0, 5000);
    waited = std::chrono::steady_clock::now() - start;
  });
  EXPECT_TRUE(test::eventually([&] { return header()->consumer_sleeping.load() != 0; }));
  consumer_->wake_for_shutdown();
  consumer_thread.join();
  EXPECT_LT(waited, 1s);

  const auto start = std::chrono::steady_clock::now();
  consumer_->wait_for_records(0, 5000);  // after shutdown: no more sleeping
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
}

}  // namespace
}  // namespace kronop
