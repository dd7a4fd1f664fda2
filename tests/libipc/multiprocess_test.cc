// libipc across processes: the test process is the daemon's consumer, forked children are
// producers (or an earlier daemon). Covers concurrent producers, a producer killed
// mid-stream, lease reclaim, and a daemon restart that must lose nothing.
//
// Children are forked before the parent starts any thread (it starts none), since forking a
// threaded process is unsafe. Children report through their exit status, never through
// gtest, and leave with _exit so they run no destructor of the parent's objects.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "kronop/ipc/consumer.h"
#include "kronop/ipc/producer.h"
#include "kronop/v1/envelope.pb.h"
#include "kronop_ipc.h"
#include "support/test_support.h"

namespace kronop {
namespace {

using namespace std::chrono_literals;
using ipc::Consumer;
using ipc::Producer;

// Sanitized builds run several times slower; fewer records keep them within the time budget
// and still wrap every ring many times.
#ifdef KRONOP_TEST_SANITIZED
constexpr uint64_t kRecordsPerProducer = 50000;
#else
constexpr uint64_t kRecordsPerProducer = 200000;
#endif

constexpr uint64_t kRingCapacity = 64 * 1024;

// Child exit codes, so a failing child says why.
constexpr int kChildOk = 0;
constexpr int kChildOpenFailed = 2;
constexpr int kChildPublishFailed = 3;
constexpr int kChildTimedOut = 4;

// Producer `p`'s record number `n`; the padding varies record sizes so rings wrap at
// different offsets and padding records occur.
std::string counter_json(int p, uint64_t n) {
  return R"({"p":)" + std::to_string(p) + R"(,"n":)" + std::to_string(n) + R"(,"pad":")" +
         std::string(n % 97, 'x') + R"("})";
}

struct Counter {
  int producer = -1;
  uint64_t n = 0;
  uint64_t seq = 0;
};

// The counter in a record, or nullopt when the bytes are not a whole, valid record.
std::optional<Counter> parse_counter(std::string_view bytes) {
  v1::Envelope env;
  if (!env.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return std::nullopt;
  Counter c;
  c.seq = env.producer_seq();
  if (std::sscanf(env.json().c_str(), R"({"p":%d,"n":%)" SCNu64, &c.producer, &c.n) != 2 ||
      env.json() != counter_json(c.producer, c.n)) {
    return std::nullopt;
  }
  return c;
}

// One producer's stream as the consumer sees it: counters must arrive as first, first + 1,
// ... each exactly once, with producer_seq = n + 1 (a fresh handle starts at seq 1).
struct Stream {
  uint64_t next = 0;
  uint64_t out_of_order = 0;
  void take(const Counter &c) {
    if (c.n != next || c.seq != c.n + 1) ++out_of_order;
    next = c.n + 1;
  }
};

// A one-way pipe for small numbers between parent and child. receive() times out so that a
// broken child fails the test instead of hanging it.
class Channel {
 public:
  Channel() {
    if (::pipe(fds_) != 0) throw std::runtime_error("pipe failed");
  }
  ~Channel() {
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  void send(uint64_t v) { (void)!::write(fds_[1], &v, sizeof v); }
  std::optional<uint64_t> receive(std::chrono::milliseconds timeout = 15s) {
    pollfd pfd{fds_[0], POLLIN, 0};
    uint64_t v = 0;
    if (::poll(&pfd, 1, static_cast<int>(timeout.count())) != 1) return std::nullopt;
    if (::read(fds_[0], &v, sizeof v) != sizeof v) return std::nullopt;
    return v;
  }

 private:
  int fds_[2];
};

std::unique_ptr<Consumer> attach(const std::string &name, uint32_t rings) {
  auto c = Consumer::attach({name, rings, kRingCapacity}, nullptr);
  if (!c.ok()) throw std::runtime_error(c.error().message);
  return std::move(c).value();
}

// Publishes counters first..last-1, waiting for room whenever the ring is full.
bool publish_range(Producer &producer, int p, uint64_t first, uint64_t last) {
  for (uint64_t n = first; n < last; ++n) {
    int rc =
        producer.publish_wait("reel:" + std::to_string(p), "tick", counter_json(p, n), 0, 15000);
    if (rc != KRONOP_OK) return false;
  }
  return true;
}

// Drains every ring, releasing as it goes, until `want` records arrived or `timeout`
// passed; hands each record to fn(ring, parsed counter or nullopt). Returns the count.
template <class Fn>
uint64_t drain_until(Consumer &consumer, uint64_t want, Fn &&fn,
                     std::chrono::seconds timeout = 20s) {
  uint64_t got = 0;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (got < want && std::chrono::steady_clock::now() < deadline) {
    const std::size_t n = consumer.drain(
        256, [&](uint32_t ring, const ipc::RingRecord &r) { fn(ring, parse_counter(r.bytes)); });
    consumer.release_all_read();
    got += n;
    if (n == 0) consumer.wait_for_records(20000, 10);
  }
  return got;
}

class MultiProcessTest : public ::testing::Test {
 protected:
  // Kills the children a failed test left behind, so that none outlives the test.
  void TearDown() override {
    for (pid_t pid : children_) {
      ::kill(pid, SIGKILL);
      test::wait_child(pid);
    }
  }
  pid_t fork_child(const std::function<int()> &fn) {
    pid_t pid = test::fork_child(fn);
    if (pid < 0) throw std::runtime_error("fork failed");
    children_.push_back(pid);
    return pid;
  }
  int wait_child(pid_t pid) {
    std::erase(children_, pid);
    return test::wait_child(pid);
  }

  test::SegmentGuard guard_{test::unique_name("mp-test")};
  std::vector<pid_t> children_;
};

TEST_F(MultiProcessTest, FourProducersDeliverEveryRecordOnceInOrder) {
  constexpr int kProducers = 4;
  auto consumer = attach(guard_.name, kProducers);
  std::vector<pid_t> pids;
  for (int p = 0; p < kProducers; ++p) {
    pids.push_back(fork_child([&, p] {
      auto producer = Producer::open(guard_.name);
      if (!producer.ok()) return kChildOpenFailed;
      return publish_range(*producer.value(), p, 0, kRecordsPerProducer) ? kChildOk
                                                                         : kChildPublishFailed;
    }));
  }

  std::vector<Stream> streams(kProducers);
  std::vector<int> producer_of_ring(kProducers, -1);
  uint64_t bad = 0;
  auto take = [&](uint32_t ring, const std::optional<Counter> &c) {
    if (!c || c->producer < 0 || c->producer >= kProducers) return void(++bad);
    // A ring holds one producer's records only.
    if (producer_of_ring[ring] < 0) producer_of_ring[ring] = c->producer;
    if (producer_of_ring[ring] != c->producer) ++bad;
    streams[c->producer].take(*c);
  };
  const uint64_t got = drain_until(*consumer, kProducers * kRecordsPerProducer, take);

  EXPECT_EQ(bad, 0u);
  EXPECT_EQ(consumer->corrupt_ranges(), 0u);
  for (int p = 0; p < kProducers; ++p) {
    EXPECT_EQ(streams[p].next, kRecordsPerProducer) << "producer " << p;
    EXPECT_EQ(streams[p].out_of_order, 0u) << "producer " << p;
  }
  // Short of records, producers may be stuck on a full ring: TearDown kills them.
  ASSERT_EQ(got, kProducers * kRecordsPerProducer);
  for (int p = 0; p < kProducers; ++p) {
    EXPECT_EQ(wait_child(pids[p]), kChildOk) << "producer " << p;
  }
  EXPECT_EQ(consumer->reclaim_dead_leases(), 0u) << "closed producers free their own leases";
}

TEST_F(MultiProcessTest, KilledProducerLeavesNoTornRecordAndItsRingIsReclaimed) {
  auto consumer = attach(guard_.name, 1);
  const pid_t pid = fork_child([&] {
    auto producer = Producer::open(guard_.name);
    if (!producer.ok()) return kChildOpenFailed;
    for (uint64_t n = 0;;) {  // as fast as it can, until killed
      if (producer.value()->publish("reel:0", "tick", counter_json(0, n), 0) == KRONOP_OK) ++n;
    }
  });

  Stream stream;
  uint64_t bad = 0;
  auto take = [&](uint32_t, const std::optional<Counter> &c) {
    if (!c) return void(++bad);
    stream.take(*c);
  };
  ASSERT_GE(drain_until(*consumer, 5000, take), 5000u);
  // Stop reading and kill the producer while the ring still has room, so it is most likely
  // in the middle of writing a record, and records it committed are left unread.
  ipc::RingReader &reader = consumer->reader(0);
  ASSERT_TRUE(test::eventually([&] { return reader.has_pending(); }));
  ::kill(pid, SIGKILL);
  EXPECT_EQ(wait_child(pid), 128 + SIGKILL);

  ipc::RingControl *ring = reader.control();
  EXPECT_NE(ring->lease.load(), 0u);
  EXPECT_EQ(consumer->reclaim_dead_leases(), 0u) << "its committed records are not read yet";
  consumer->drain(SIZE_MAX,
                  [&](uint32_t i, const ipc::RingRecord &r) { take(i, parse_counter(r.bytes)); });
  EXPECT_EQ(consumer->reclaim_dead_leases(), 0u) << "its records are read but not released";
  consumer->release_all_read();
  EXPECT_EQ(consumer->reclaim_dead_leases(), 1u);
  EXPECT_EQ(ring->lease.load(), 0u);
  EXPECT_EQ(ring->producer_id.load(), 0u);

  EXPECT_EQ(bad, 0u) << "a record did not parse: the killed producer left it torn";
  EXPECT_EQ(stream.out_of_order, 0u) << "the delivered counters are not a gap-free prefix";
  EXPECT_GT(stream.next, 5000u);
  EXPECT_EQ(consumer->corrupt_ranges(), 0u);

  // The ring is usable again: the next holder writes after the dead one's last record.
  auto next = Producer::open(guard_.name);
  ASSERT_TRUE(next.ok()) << next.error().message;
  ASSERT_EQ(next.value()->publish("reel:1", "tick", counter_json(1, 0), 0), KRONOP_OK);
  Stream after;
  auto take_after = [&](uint32_t, const std::optional<Counter> &c) {
    if (c) after.take(*c);
  };
  EXPECT_EQ(drain_until(*consumer, 1, take_after), 1u);
  EXPECT_EQ(after.next, 1u);
  EXPECT_EQ(consumer->corrupt_ranges(), 0u);
}

TEST_F(MultiProcessTest, LeaseOfALiveProcessIsNeverReclaimed) {
  auto consumer = attach(guard_.name, 1);
  Channel published, may_exit;
  const pid_t pid = fork_child([&] {
    auto producer = Producer::open(guard_.name);
    if (!producer.ok()) return kChildOpenFailed;
    if (producer.value()->publish("reel:0", "tick", counter_json(0, 0), 0) != KRONOP_OK) {
      return kChildPublishFailed;
    }
    published.send(1);
    if (!may_exit.receive()) return kChildTimedOut;
    ::_exit(kChildOk);  // dies holding the lease, as a crashed producer would
  });

  ASSERT_TRUE(published.receive());
  EXPECT_EQ(drain_until(*consumer, 1, [](uint32_t, const std::optional<Counter> &) {}), 1u);
  ipc::RingControl *ring = consumer->reader(0).control();
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(consumer->reclaim_dead_leases(), 0u);
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(ipc::lease_pid(ring->lease.load()), static_cast<uint32_t>(pid));
  auto other = Producer::open(guard_.name);
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.error().code, KRONOP_ENORING);

  may_exit.send(1);
  EXPECT_EQ(wait_child(pid), kChildOk);
  EXPECT_EQ(consumer->reclaim_dead_leases(), 1u);
  EXPECT_TRUE(Producer::open(guard_.name).ok());
}

// An old daemon (a child) reads some records and goes away, cleanly or killed, having
// released only part of them; a producer goes on publishing with no daemon attached; the
// next daemon (this process) must get every record the old one did not release, in order.
class DaemonRestartTest : public MultiProcessTest, public ::testing::WithParamInterface<bool> {};

TEST_P(DaemonRestartTest, NextDaemonGetsEveryUnreleasedRecordInOrder) {
  const bool kill_old_daemon = GetParam();
  constexpr uint64_t kRead = 300;      // records the old daemon reads ...
  constexpr uint64_t kReleased = 100;  // ... of which it releases these
  constexpr uint64_t kTotal = 5000;    // more than a ring holds: the producer must wait
  Channel from_old;
  const pid_t old_daemon = fork_child([&] {
    auto consumer = Consumer::attach({guard_.name, 1, kRingCapacity}, nullptr);
    if (!consumer.ok()) return kChildOpenFailed;
    Consumer &c = *consumer.value();
    from_old.send(c.epoch());
    uint64_t read = 0;
    uint64_t release_at = 0;
    const auto deadline = std::chrono::steady_clock::now() + 15s;
    while (read < kRead) {
      if (std::chrono::steady_clock::now() > deadline) return kChildTimedOut;
      c.drain(kRead - read, [&](uint32_t, const ipc::RingRecord &r) {
        if (++read == kReleased) release_at = r.end_pos;
      });
      c.wait_for_records(20000, 10);
    }
    c.reader(0).release(release_at);
    from_old.send(read);
    if (!kill_old_daemon) return kChildOk;  // a clean exit: ~Consumer runs
    for (;;) ::pause();                     // until SIGKILL
  });
  const auto old_epoch = from_old.receive();
  ASSERT_TRUE(old_epoch.has_value());

  auto refused = Consumer::attach({guard_.name, 1, kRingCapacity}, nullptr);
  EXPECT_FALSE(refused.ok()) << "a second daemon attached while the first one runs";

  // The producer publishes what the old daemon reads, then the rest once it is gone.
  Channel go_on;
  const pid_t producer = fork_child([&] {
    auto p = Producer::open(guard_.name);
    if (!p.ok()) return kChildOpenFailed;
    if (!publish_range(*p.value(), 0, 0, kRead)) return kChildPublishFailed;
    if (!go_on.receive()) return kChildTimedOut;
    return publish_range(*p.value(), 0, kRead, kTotal) ? kChildOk : kChildPublishFailed;
  });
  ASSERT_EQ(from_old.receive(), kRead);
  if (kill_old_daemon) ::kill(old_daemon, SIGKILL);
  EXPECT_EQ(wait_child(old_daemon), kill_old_daemon ? 128 + SIGKILL : kChildOk);

  auto segment = ipc::Segment::open_as_producer(guard_.name);
  ASSERT_TRUE(segment.ok()) << segment.error().message;
  ipc::RingControl *ring = segment.value()->ring(0);
  EXPECT_EQ(ring->refused_full.load(), 0u);
  go_on.send(1);
  EXPECT_TRUE(test::eventually([&] { return ring->refused_full.load() > 0; }))
      << "the producer did not fill the ring while no daemon was attached";

  auto consumer = attach(guard_.name, 1);
  EXPECT_EQ(consumer->epoch(), *old_epoch + 1);
  Stream stream{.next = kReleased};
  uint64_t bad = 0;
  auto take = [&](uint32_t, const std::optional<Counter> &c) {
    if (!c) return void(++bad);
    stream.take(*c);
  };
  const uint64_t got = drain_until(*consumer, kTotal - kReleased, take);
  EXPECT_EQ(bad, 0u);
  EXPECT_EQ(stream.next, kTotal);
  EXPECT_EQ(stream.out_of_order, 0u);
  EXPECT_EQ(consumer->corrupt_ranges(), 0u);
  ASSERT_EQ(got, kTotal - kReleased);  // else TearDown kills the producer
  EXPECT_EQ(wait_child(producer), kChildOk);
}

INSTANTIATE_TEST_SUITE_P(OldDaemon, DaemonRestartTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool> &old) {
                           return old.param ? "Killed" : "ExitedCleanly";
                         });

}  // namespace
}  // namespace kronop
