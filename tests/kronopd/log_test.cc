// The durable log: LogStore on its own (schema, dedupe, what numbering resumes from, the
// files it refuses), and kronopd killed with SIGKILL in the middle of a sustained publish:
// after a restart every accepted record is in the log exactly once, numbered without a gap.
#include "log_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <thread>

#include "cluster_outbox.h"
#include "kronop/ipc/producer.h"
#include "kronop/ipc/segment.h"
#include "kronop/v1/envelope.pb.h"
#include "kronop_ipc.h"
#include "log_reader.h"
#include "support/test_support.h"

namespace kronop::daemon {
namespace {

using test::eventually;
using test::query;
using test::run_capture;

StoredMessage record(const std::string &topic, uint64_t seq, uint64_t producer, uint64_t pseq,
                     std::string body = R"({"views":1})") {
  StoredMessage r;
  r.topic = topic;
  r.seq = seq;
  r.epoch = 77;
  r.publish_time_ns = 1'000 + seq;
  r.event = "reel_update";
  r.producer_id = producer;
  r.producer_seq = pseq;
  r.body_kind = BodyKind::kJson;
  r.body = std::move(body);
  return r;
}

// The messages the log holds, all of them (counted by the blocks' counts).
constexpr const char *kLogged = "SELECT coalesce(sum(count), 0) FROM blocks";

TEST(LogStore, LogsResumesAndDeduplicates) {
  test::TempDir dir;
  const std::string path = dir.path + "/kronop.db";
  {
    LogOptions o;
    o.retention_age_ms = 0;  // the records below are from 1970
    auto store = LogStore::open(path, o);
    ASSERT_TRUE(store.ok()) << store.error().message;
    auto &s = *store.value();
    EXPECT_TRUE(s.topics().empty());
    s.start();
    std::vector<StoredMessage> batch;
    for (uint64_t i = 1; i <= 100; ++i) batch.push_back(record("reel:1", i, 5, i));
    batch.push_back(record("reel:2", 1, 0, 0, std::string(2000, 'x')));  // kronopd's own
    const uint64_t id = s.submit(std::move(batch));
    ASSERT_TRUE(eventually([&] { return s.committed() >= id; }));
    // A re-delivered record (same producer identity) is not logged again.
    std::vector<StoredMessage> again;
    again.push_back(record("reel:1", 101, 5, 100));
    s.submit(std::move(again));
    s.stop();
    EXPECT_EQ(s.counters().rows.load(), 101u);
    EXPECT_EQ(s.counters().duplicates.load(), 1u);
    // The 2,000 repeated bytes are stored compressed; the 11-byte bodies as they are.
    EXPECT_EQ(s.counters().payload_bytes.load(), 100u * 11 + 2000);  // the duplicate's not
    EXPECT_LT(s.counters().compressed_bytes.load(), 101u * 11 + 100);
  }
  auto store = LogStore::open(path);
  ASSERT_TRUE(store.ok()) << store.error().message;
  auto topics = store.value()->topics();
  ASSERT_EQ(topics.size(), 2u);
  EXPECT_EQ(topics["reel:1"].last_seq, 101u);  // numbering resumes after the highest given
  EXPECT_EQ(topics["reel:1"].epoch, 77u);
  auto producers = store.value()->producers();
  ASSERT_EQ(producers.size(), 1u);  // kronopd's own records have no producer identity
  EXPECT_EQ(producers[5], 100u);
  EXPECT_EQ(query(path, kLogged), 101);
  EXPECT_EQ(query(path, "PRAGMA user_version"), LogStore::kSchemaVersion);
  EXPECT_EQ(query(path, "SELECT count(*) FROM pragma_journal_mode WHERE journal_mode = 'wal'"), 1);
}

// The seqs of `topic` a reader finds in the log at `path` for `q`.
std::vector<uint64_t> seqs(const std::string &path, const std::string &topic, LogQuery q = {}) {
  q.topic = topic;
  std::vector<uint64_t> out;
  for (const auto &m : test::logged_messages(path, topic)) {
    if (m.seq > q.after_seq && m.seq <= q.until_seq) out.push_back(m.seq);
  }
  if (q.newest_first && out.size() > q.limit) out.erase(out.begin(), out.end() - q.limit);
  // And the reader's own answer to q, which must agree.
  auto reader = LogReader::open(path);
  EXPECT_TRUE(reader.ok());
  std::vector<uint64_t> read;
  if (reader.ok()) {
    auto n = reader.value()->read(q, [&](const StoredMessage &m) {
      read.push_back(m.seq);
      return true;
    });
    EXPECT_TRUE(n.ok()) << n.error().message;
  }
  EXPECT_EQ(read, out) << topic;
  return read;
}

std::vector<uint64_t> one_to(uint64_t n) {
  std::vector<uint64_t> v(n);
  for (uint64_t i = 0; i < n; ++i) v[i] = i + 1;
  return v;
}

// A transaction's topics with only a few messages each go into one journal row; readers find
// them there (forward, newest first, after or up to a seq). A topic's go into blocks once
// they add up to a block's worth, are journal_ms old, or at a clean stop; a journal row goes
// when none of its frames is left; every message is in one place at every commit. A log left
// with a journal (as by kill -9: a copy of the files taken while kronopd runs) is read back
// at open and moved into blocks from there.
TEST(LogStore, FewMessagesPerTopicGoThroughTheJournal) {
  test::TempDir dir;
  const std::string path = dir.path + "/kronop.db";
  const std::string copy = dir.path + "/copy.db";
  LogOptions o;
  o.retention_age_ms = 0;
  o.journal_ms = 3'600'000;     // not for their age, here
  o.checkpoint_ms = 3'600'000;  // nor a checkpoint while the files are copied
  auto topic = [](int t) { return "reel:" + std::to_string(t); };
  uint64_t pseq = 0;
  {
    auto store = LogStore::open(path, o);
    ASSERT_TRUE(store.ok()) << store.error().message;
    auto &s = *store.value();
    s.start();
    std::vector<StoredMessage> batch;
    for (uint64_t seq = 1; seq <= 3; ++seq) {
      for (int t = 0; t < 100; ++t) batch.push_back(record(topic(t), seq, 5, ++pseq));
    }
    uint64_t id = s.submit(std::move(batch));
    ASSERT_TRUE(eventually([&] { return s.committed() >= id; }));
    EXPECT_EQ(query(path, kLogged), 0);
    EXPECT_EQ(query(path, "SELECT count(*) FROM journal"), 1);
    EXPECT_EQ(s.counters().journaled.load(), 300u);
    EXPECT_EQ(s.counters().rows.load(), 300u);
    EXPECT_EQ(seqs(path, topic(7)), one_to(3));
    LogQuery q;
    q.newest_first = true;
    q.limit = 2;
    EXPECT_EQ(seqs(path, topic(7), q), (std::vector<uint64_t>{2, 3}));
    q = {};
    q.after_seq = 1;
    EXPECT_EQ(seqs(path, topic(7), q), (std::vector<uint64_t>{2, 3}));
    q = {};
    q.until_seq = 2;
    EXPECT_EQ(seqs(path, topic(7), q), (std::vector<uint64_t>{1, 2}));
    // 70 more of one topic: with its 3 waiting, a block's worth; into blocks, all 73.
    batch.clear();
    for (uint64_t seq = 4; seq <= 73; ++seq) batch.push_back(record(topic(7), seq, 5, ++pseq));
    id = s.submit(std::move(batch));
    ASSERT_TRUE(eventually([&] { return s.committed() >= id; }));
    EXPECT_EQ(query(path, kLogged), 73);
    EXPECT_EQ(query(path, "SELECT blocked_seq FROM topics WHERE name = 'reel:7'"), 73);
    EXPECT_EQ(query(path, "SELECT count(*) FROM journal"), 1);  // the other topics' frames
    EXPECT_EQ(seqs(path, topic(7)), one_to(73));
    q = {};
    q.newest_first = true;
    q.limit = 5;
    EXPECT_EQ(seqs(path, topic(7), q), (std::vector<uint64_t>{69, 70, 71, 72, 73}));
    EXPECT_EQ(seqs(path, topic(8)), one_to(3));
    std::filesystem::copy_file(path, copy);
    std::filesystem::copy_file(path + "-wal", copy + "-wal");
  }
  // A clean stop: everything in blocks, the journal empty.
  EXPECT_EQ(query(path, "SELECT count(*) FROM journal"), 0);
  EXPECT_EQ(query(path, kLogged), 370);
  for (int t = 0; t < 100; ++t) EXPECT_EQ(seqs(path, topic(t)), one_to(t == 7 ? 73 : 3));
  // The copy, as a kill -9 leaves it: read back, moved into blocks at the stop.
  EXPECT_EQ(query(copy, "SELECT count(*) FROM journal"), 1);
  {
    auto store = LogStore::open(copy, o);
    ASSERT_TRUE(store.ok()) << store.error().message;
    store.value()->start();
    // Resumed: a record logged already is not logged again, a new one is.
    std::vector<StoredMessage> batch;
    batch.push_back(record(topic(3), 3, 5, 204));  // its producer seq: logged already
    batch.push_back(record(topic(3), 4, 5, ++pseq));
    const uint64_t id = store.value()->submit(std::move(batch));
    ASSERT_TRUE(eventually([&] { return store.value()->committed() >= id; }));
    EXPECT_EQ(store.value()->counters().duplicates.load(), 1u);
    EXPECT_EQ(seqs(copy, topic(3)), one_to(4));
  }
  EXPECT_EQ(query(copy, "SELECT count(*) FROM journal"), 0);
  EXPECT_EQ(query(copy, kLogged), 371);
  for (int t = 0; t < 100; ++t) {
    EXPECT_EQ(seqs(copy, topic(t)), one_to(t == 7 ? 73 : t == 3 ? 4 : 3));
  }
  // For their age: journal_ms after they came, without a stop.
  o.journal_ms = 50;
  auto store = LogStore::open(path, o);
  ASSERT_TRUE(store.ok()) << store.error().message;
  store.value()->start();
  std::vector<StoredMessage> batch;
  for (int t = 0; t < 100; ++t) batch.push_back(record(topic(t), t == 7 ? 74 : 4, 5, ++pseq));
  store.value()->submit(std::move(batch));
  ASSERT_TRUE(eventually([&] { return query(path, kLogged) == 470; })) << query(path, kLogged);
  EXPECT_EQ(query(path, "SELECT count(*) FROM journal"), 0);
  EXPECT_EQ(seqs(path, topic(7)), one_to(74));
}

// stop() with a budget: enough of it, everything is committed (true); too little for what is
// queued, the writer is cut: the transaction under way is rolled back whole, stop() returns
// false at about the budget, says how many records it left, and the file holds whole batches
// only (the records left are the rings' to give again).
TEST(LogStore, AStopWithABudgetCommitsAllOrIsCutBetweenWholeBatches) {
  test::TempDir dir;
  LogOptions o;
  o.retention_age_ms = 0;
  const std::string path = dir.path + "/kronop.db";
  {
    auto store = LogStore::open(path, o);
    ASSERT_TRUE(store.ok()) << store.error().message;
    auto &s = *store.value();
    s.start();
    std::vector<StoredMessage> batch;
    for (uint64_t i = 1; i <= 100; ++i) batch.push_back(record("reel:1", i, 5, i));
    s.submit(std::move(batch));
    EXPECT_TRUE(s.stop(std::chrono::milliseconds(10'000)));
    EXPECT_EQ(s.left_uncommitted(), 0u);
  }
  EXPECT_EQ(query(path, kLogged), 100);
  {
    auto store = LogStore::open(path, o);
    ASSERT_TRUE(store.ok()) << store.error().message;
    auto &s = *store.value();
    s.start();
    // Far more than the writer commits in 20 ms, in several batches, made before any is
    // submitted (the writer keeps pace with a test that builds them one by one).
    constexpr uint64_t kBatches = 4, kPerBatch = 100'000;
    uint64_t seq = 100;
    std::vector<std::vector<StoredMessage>> batches(kBatches);
    for (auto &batch : batches) {
      for (uint64_t i = 0; i < kPerBatch; ++i) {
        ++seq;
        batch.push_back(record("reel:1", seq, 5, seq));
      }
    }
    for (auto &batch : batches) s.submit(std::move(batch));
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_FALSE(s.stop(std::chrono::milliseconds(20)));
    const auto took = std::chrono::steady_clock::now() - t0;
    // Cut: what the writer was filling is rolled back at once, not finished.
    EXPECT_LT(took, std::chrono::seconds(5));
    EXPECT_LT(s.committed(), s.submitted());
    EXPECT_EQ(s.counters().errors.load(), 0u);  // a cut is not a failure
    const uint64_t committed_records = s.committed() * kPerBatch;
    EXPECT_EQ(s.left_uncommitted(), kBatches * kPerBatch - committed_records);
  }
  const int64_t rows = query(path, kLogged);
  EXPECT_EQ((rows - 100) % 100'000, 0) << rows;
  EXPECT_LT(rows, 100 + 4 * 100'000);
}

// when_committed: called once per waiter, after the commit that covers its batch (with
// committed() already there), at once for a batch already committed, and from stop() for a
// batch that never came.
TEST(LogStore, WhenCommittedCallsEachWaiterOnceAfterItsCommit) {
  test::TempDir dir;
  LogOptions o;
  o.retention_age_ms = 0;
  o.batch_ms = 50;  // the first waiter is registered before its batch can be committed
  auto store = LogStore::open(dir.path + "/kronop.db", o);
  ASSERT_TRUE(store.ok()) << store.error().message;
  auto &s = *store.value();
  s.start();
  std::atomic<int> first_calls{0}, later_calls{0}, never_calls{0};
  std::atomic<uint64_t> seen_committed{0};
  std::vector<StoredMessage> batch;
  batch.push_back(record("reel:1", 1, 5, 1));
  const uint64_t id = s.submit(std::move(batch));
  s.when_committed(id, [&] {
    seen_committed = s.committed();
    ++first_calls;
  });
  ASSERT_TRUE(eventually([&] { return first_calls.load() == 1; }));
  EXPECT_GE(seen_committed.load(), id);  // called after the commit, not before
  // Already committed: called at once, on this thread.
  s.when_committed(id, [&] { ++later_calls; });
  EXPECT_EQ(later_calls.load(), 1);
  // A batch that is never submitted: the waiter is called by stop(), and sees it missing.
  bool committed_at_stop = true;
  s.when_committed(id + 5, [&] {
    committed_at_stop = s.committed() >= id + 5;
    ++never_calls;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(never_calls.load(), 0);
  s.stop();
  EXPECT_EQ(never_calls.load(), 1);
  EXPECT_FALSE(committed_at_stop);
  // After stop(): at once.
  s.when_committed(id + 6, [&] { ++never_calls; });
  EXPECT_EQ(never_calls.load(), 2);
  EXPECT_EQ(first_calls.load(), 1);
  EXPECT_EQ(later_calls.load(), 1);
}

TEST(LogStore, CheckpointsTheWalOnItsOwnThread) {
  test::TempDir dir;
  const std::string path = dir.path + "/kronop.db";
  LogOptions o;
  o.retention_age_ms = 0;
  o.checkpoint_ms = 20;
  auto store = LogStore::open(path, o);
  ASSERT_TRUE(store.ok()) << store.error().message;
  auto &s = *store.value();
  s.start();
  std::vector<StoredMessage> batch;
  for (uint64_t i = 1; i <= 2000; ++i) batch.push_back(record("reel:1", i, 5, i));
  const uint64_t id = s.submit(std::move(batch));
  ASSERT_TRUE(eventually([&] { return s.committed() >= id; }));
  // The writer's commits never checkpoint (wal_autocheckpoint=0); the checkpointer does.
  ASSERT_TRUE(eventually([&] { return s.counters().checkpoints.load() >= 2; }));
  s.stop();
  // The rows are in the database file itself, not only in the WAL: opened with the WAL
  // gone (as after a checkpoint a host crash cannot take them), they are all there.
  std::filesystem::remove(path + "-wal");
  std::filesystem::remove(path + "-shm");
  EXPECT_EQ(query(path, kLogged), 2000);
}

// The writer never stops appending and readers (rejoining clients' history; here one that
// never pauses) come and go all the time: the checkpointer's checkpoints never finish, so SQLite
// never writes the WAL from its start again. It grew without end (1 GB in 40 s in bench/soak, next
// to a 44 MB database) until the writer began to restart it itself past wal_restart_pages.
TEST(LogStore, TheWalStaysBoundedWhileWritesAndReadsNeverStop) {
  test::TempDir dir;
  const std::string path = dir.path + "/kronop.db";
  LogOptions o;
  o.retention_age_ms = 0;
  o.checkpoint_ms = 1;
  o.wal_restart_pages = 64;
  auto store = LogStore::open(path, o);
  ASSERT_TRUE(store.ok()) << store.error().message;
  auto &s = *store.value();
  s.start();
  std::atomic<bool> done{false};
  std::thread reader([&] {
    sqlite3 *db = nullptr;
    sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
    sqlite3_busy_timeout(db, 1000);
    while (!done.load()) {
      sqlite3_stmt *st = nullptr;
      if (sqlite3_prepare_v2(db, "SELECT max(last_seq) FROM blocks", -1, &st, nullptr) == SQLITE_OK)
        sqlite3_step(st);
      sqlite3_finalize(st);
    }
    sqlite3_close(db);
  });
  std::uintmax_t largest = 0;
  uint64_t seq = 0;
  for (int b = 0; b < 300; ++b) {
    std::vector<StoredMessage> batch;
    for (int i = 0; i < 50; ++i) {
      ++seq;
      batch.push_back(record("reel:" + std::to_string(seq % 10), seq, 5, seq));
    }
    const uint64_t id = s.submit(std::move(batch));
    ASSERT_TRUE(eventually([&] { return s.committed() >= id; }));
    std::error_code ec;
    largest = std::max(largest, std::filesystem::file_size(path + "-wal", ec));
  }
  done = true;
  reader.join();
  s.stop();
  EXPECT_EQ(query(path, kLogged), 15000);
  // Without the restarts: 25 to 36 MB here. With them, 3 to 7 MB: a reader that never
  // pauses keeps a RESTART waiting, so the WAL overshoots 64 pages between successes.
  EXPECT_LT(largest, 16u << 20) << "the WAL grew to " << largest << " bytes";
}

TEST(LogStore, RetentionTrimsByCountPerTopicAndByAge) {
  test::TempDir dir;
  const std::string path = dir.path + "/kronop.db";
  LogOptions o;
  o.retention_count = 10;
  o.retention_age_ms = 1000;       // 1 s
  o.trim_chunk = 7;                // several rounds
  o.trim_interval_ms = 3'600'000;  // none by the writer thread: trim_all below decides
  auto store = LogStore::open(path, o);
  ASSERT_TRUE(store.ok()) << store.error().message;
  auto &s = *store.value();
  s.start();
  std::vector<StoredMessage> batch;
  for (uint64_t i = 1; i <= 50; ++i) batch.push_back(record("reel:1", i, 1, i));
  for (uint64_t i = 1; i <= 5; ++i) batch.push_back(record("reel:2", i, 2, i));
  // publish_time_ns is 1000 + seq: "now" below decides what is old.
  const uint64_t id = s.submit(std::move(batch));
  ASSERT_TRUE(eventually([&] { return s.committed() >= id; }));
  s.stop();
  // Now = 1 s after the records: none is older than 1 s yet; only the count applies.
  EXPECT_EQ(s.trim_all(1'000'000'000), 40u);
  const std::string count1 =
      "SELECT sum(count) FROM blocks WHERE topic_id = "
      "(SELECT id FROM topics WHERE name = 'reel:1')";
  EXPECT_EQ(query(path, count1), 10);
  EXPECT_EQ(query(path,
                  "SELECT min(first_seq) FROM blocks WHERE topic_id = "
                  "(SELECT id FROM topics WHERE name = 'reel:1')"),
            41);
  EXPECT_EQ(query(path, kLogged), 15);
  // Later, everything is older than 1 s; numbering is kept (topics.last_seq).
  EXPECT_EQ(s.trim_all(10'000'000'000), 15u);
  EXPECT_EQ(query(path, kLogged), 0);
  EXPECT_EQ(query(path, "SELECT last_seq FROM topics WHERE name = 'reel:1'"), 50);
  EXPECT_EQ(s.counters().trimmed.load(), 55u);
}

// A large topic over its count: each retention round deletes blocks in short transactions
// for at most its budget (so the writer, which runs the rounds between its transactions,
// is never held up for long), and the rounds together leave exactly the newest `count`
// messages: the block across the line is cut, not dropped.
TEST(LogStore, RetentionOfALargeTopicGoesInShortRounds) {
  test::TempDir dir;
  const std::string path = dir.path + "/kronop.db";
  LogOptions o;
  o.retention_age_ms = 0;
  o.retention_count = 1000;
  o.trim_interval_ms = 3'600'000;  // the rounds below are the test's
  o.trim_budget_ms = 1;
  o.trim_chunk = 8;  // blocks (of up to 1,024 messages) per transaction
  auto store = LogStore::open(path, o);
  ASSERT_TRUE(store.ok()) << store.error().message;
  auto &s = *store.value();
  s.start();
  constexpr uint64_t kRecords = 400'000;
  uint64_t last = 0;
  for (uint64_t seq = 1; seq <= kRecords;) {
    std::vector<StoredMessage> batch;
    for (int i = 0; i < 4096 && seq <= kRecords; ++i, ++seq) {
      batch.push_back(record("reel:big", seq, 3, seq));
    }
    last = s.submit(std::move(batch));
  }
  ASSERT_TRUE(eventually([&] { return s.committed() >= last; }, std::chrono::seconds(60)));
  s.stop();
  uint64_t trimmed = 0, rounds = 0;
  std::chrono::steady_clock::duration longest{};
  for (uint64_t n = 1; n > 0; ++rounds) {
    const auto t0 = std::chrono::steady_clock::now();
    n = s.trim_round(0);
    longest = std::max(longest, std::chrono::steady_clock::now() - t0);
    trimmed += n;
    ASSERT_LT(rounds, 10'000u);
  }
  EXPECT_EQ(trimmed, kRecords - 1000);
  EXPECT_GT(rounds, 2u);  // not all at once
  // The budget, plus the chunk under way when it ran out (generous: sanitizer builds).
  EXPECT_LT(longest, std::chrono::milliseconds(500));
  const auto kept = test::logged_messages(path, "reel:big");
  ASSERT_EQ(kept.size(), 1000u);
  EXPECT_EQ(kept.front().seq, kRecords - 999);
  EXPECT_EQ(kept.back().seq, kRecords);
}

TEST(LogStore, KeepsEachUsersLastKnownPresence) {
  test::TempDir dir;
  const std::string path = dir.path + "/kronop.db";
  {
    auto store = LogStore::open(path);
    ASSERT_TRUE(store.ok());
    auto &s = *store.value();
    s.start();
    s.submit_user(UserRow{"ann", 1, 5, "watching", 2000});
    s.submit_user(UserRow{"bob", 2, 0, "", 1000});
    s.submit_user(UserRow{"ann", 0, 0, "", 3000});  // the newest of ann's wins
    s.stop();
  }
  auto store = LogStore::open(path);
  ASSERT_TRUE(store.ok());
  auto users = store.value()->users();
  ASSERT_EQ(users.size(), 2u);
  EXPECT_EQ(users[0].user_id, "bob");  // least recently seen first
  EXPECT_EQ(users[0].status, 2);
  EXPECT_EQ(users[1].user_id, "ann");
  EXPECT_EQ(users[1].status, 0);
  EXPECT_EQ(users[1].last_seen_ms, 3000u);
}

// In a cluster the log is the outbox of what Redis has not taken: a topic's mark starts
// below its first record logged in cluster mode and moves up with Redis's acknowledgements
// (never down); the next start is given the records above it, in order. Run as a single
// host, the log drops the marks, and a later cluster run starts them afresh.
TEST(LogStore, KeepsTheClusterOutboxMarksAndDropsThemAsASingleHost) {
  test::TempDir dir;
  const std::string path = dir.path + "/kronop.db";
  LogOptions cluster;
  cluster.retention_age_ms = 0;  // the records below are from 1970
  cluster.cluster_outbox = true;
  auto run = [&](LogOptions o, const std::function<void(LogStore &)> &fn) {
    auto store = LogStore::open(path, o);
    ASSERT_TRUE(store.ok()) << store.error().message;
    store.value()->start();
    fn(*store.value());
    store.value()->stop();
  };
  run(cluster, [](LogStore &s) {
    std::vector<StoredMessage> batch;
    for (uint64_t i = 1; i <= 10; ++i) batch.push_back(record("reel:1", i, 5, i));
    for (uint64_t i = 1; i <= 5; ++i) batch.push_back(record("reel:2", i, 6, i));
    s.submit(std::move(batch));
    s.submit_taken("reel:1", 4);
    s.submit_taken("reel:1", 3);  // an older acknowledgement: the mark stays
    s.submit_taken("reel:2", 5);
  });
  {
    auto store = LogStore::open(path, cluster);
    ASSERT_TRUE(store.ok());
    auto outbox = store.value()->outbox();
    ASSERT_EQ(outbox.size(), 1u);  // reel:2 was taken whole
    EXPECT_EQ(outbox[0].topic, "reel:1");
    EXPECT_EQ(outbox[0].taken_seq, 4u);
    EXPECT_EQ(outbox[0].last_seq, 10u);
    // What the outbox sends again: the records above the mark, as their Envelopes.
    ClusterOutbox o(*store.value(), 100);
    o.start_behind(outbox);
    EXPECT_TRUE(o.behind("reel:1"));
    std::vector<ForwardRecord> records;
    o.catch_up(
        100, [](const std::string &) { return 10u; }, records);
    EXPECT_FALSE(o.behind()) << "caught up: forwarded live again";
    ASSERT_EQ(records.size(), 6u);
    for (std::size_t k = 0; k < 6; ++k) {
      const ForwardRecord &r = records[k];
      EXPECT_EQ(r.topic, "reel:1");
      EXPECT_EQ(r.local_seq, 5 + k);
      EXPECT_EQ(r.producer_id, 5u);
      EXPECT_EQ(r.producer_seq, 5 + k);
      kronop::v1::Envelope e;
      ASSERT_TRUE(e.ParseFromString(r.envelope));
      EXPECT_EQ(e.topic(), "reel:1");
      EXPECT_EQ(e.producer_seq(), 5 + k);
      EXPECT_EQ(e.json(), R"({"views":1})");
    }
  }
  run(LogOptions{.retention_age_ms = 0}, [](LogStore &s) {
    std::vector<StoredMessage> batch;
    batch.push_back(record("reel:1", 11, 5, 11));
    s.submit(std::move(batch));
  });
  EXPECT_EQ(query(path, "SELECT count(*) FROM cluster_outbox"), 0);
  run(cluster, [](LogStore &s) {
    EXPECT_TRUE(s.outbox().empty());
    std::vector<StoredMessage> batch;
    batch.push_back(record("reel:1", 12, 5, 12));
    s.submit(std::move(batch));
  });
  EXPECT_EQ(query(path, "SELECT taken_seq FROM cluster_outbox"), 11);
}

// Records past the bound wait in the log; a busy topic catches up through its tail: the
// records the log has not committed yet come from memory, after those read from the log,
// and the topic is forwarded live again; a round never gives more than its limit.
TEST(ClusterOutbox, ABehindTopicCatchesUpFromTheLogThenItsTailInOrder) {
  test::TempDir dir;
  LogOptions cluster;
  cluster.retention_age_ms = 0;
  cluster.cluster_outbox = true;
  auto store = LogStore::open(dir.path + "/kronop.db", cluster);
  ASSERT_TRUE(store.ok());
  LogStore &log = *store.value();
  log.start();
  ClusterOutbox o(log, 100);
  auto forward_record = [](uint64_t seq) {
    return ForwardRecord{"reel:1", 5, seq, "envelope-" + std::to_string(seq), seq};
  };
  uint64_t numbered = 0;
  auto publish = [&](uint64_t n, bool kept) {
    std::vector<StoredMessage> batch;
    for (uint64_t i = 0; i < n; ++i) {
      ++numbered;
      batch.push_back(record("reel:1", numbered, 5, numbered));
      if (kept) o.keep(forward_record(numbered));
    }
    return log.submit(std::move(batch));
  };
  const auto last = [&](const std::string &) { return numbered; };
  publish(3, false);              // 1..3 forwarded live
  uint64_t b = publish(4, true);  // 4..7 over the bound: the topic is behind, its tail has them
  ASSERT_TRUE(eventually([&] { return log.committed() >= b; }));
  std::vector<ForwardRecord> out;
  o.catch_up(100, last, out);
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[0].envelope, "envelope-4") << "from the tail: nothing to read";
  EXPECT_FALSE(o.behind());

  // Behind from a start (the mark at 7): the log is read; the records numbered meanwhile
  // are read in the next round, and those after it come from the tail.
  o.start_behind({LogStore::OutboxTopic{"reel:1", 7, 7}});
  b = publish(5, true);  // 8..12, in the tail? not yet: the tail opens after a round
  ASSERT_TRUE(eventually([&] { return log.committed() >= b; }));
  out.clear();
  o.catch_up(3, last, out);  // a bounded round: 8..10
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out.back().local_seq, 10u);
  EXPECT_TRUE(o.behind());
  o.catch_up(100, last, out);  // 11..12 from the log; then nothing left
  ASSERT_EQ(out.size(), 5u);
  EXPECT_EQ(out.back().local_seq, 12u);
  EXPECT_FALSE(o.behind());
  for (std::size_t k = 0; k < out.size(); ++k) EXPECT_EQ(out[k].local_seq, 8 + k);
  EXPECT_EQ(out[0].producer_seq, 8u);

  // A round that finds the log short of what is numbered opens the tail.
  o.start_behind({LogStore::OutboxTopic{"reel:1", 12, 12}});
  o.keep(forward_record(++numbered));  // 13: numbered, not yet submitted to the log
  out.clear();
  o.catch_up(100, last, out);
  EXPECT_TRUE(out.empty());
  EXPECT_TRUE(o.behind());
  o.keep(forward_record(++numbered));  // 14: into the tail
  std::vector<StoredMessage> batch{record("reel:1", 13, 5, 13), record("reel:1", 14, 5, 14)};
  b = log.submit(std::move(batch));
  ASSERT_TRUE(eventually([&] { return log.committed() >= b; }));
  o.catch_up(1, last, out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(o.behind()) << "no room for the tail in this round";
  o.catch_up(100, last, out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].local_seq, 13u);
  kronop::v1::Envelope from_log;
  ASSERT_TRUE(from_log.ParseFromString(out[0].envelope)) << "read from the log";
  EXPECT_EQ(from_log.producer_seq(), 13u);
  EXPECT_EQ(out[1].envelope, "envelope-14") << "the tail follows the log's records";
  EXPECT_FALSE(o.behind());
  EXPECT_EQ(o.counters().from_tail, 5u);
  log.stop();
}

TEST(LogStore, RefusesANewerSchemaAndFilesThatAreNotALog) {
  test::TempDir dir;
  const std::string path = dir.path + "/kronop.db";
  { ASSERT_TRUE(LogStore::open(path).ok()); }
  sqlite3 *db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version=99", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto newer = LogStore::open(path);
  ASSERT_FALSE(newer.ok());
  EXPECT_NE(newer.error().message.find("schema version is 99, newer than this kronopd's"),
            std::string::npos)
      << newer.error().message;

  const std::string junk = dir.path + "/junk.db";
  std::ofstream(junk) << std::string(8192, 'j');
  auto bad = LogStore::open(junk);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("not a usable SQLite database"), std::string::npos)
      << bad.error().message;
}

class LogDaemonTest : public ::testing::Test, protected test::Kronopd {
 protected:
  LogDaemonTest() : Kronopd("kronopd-log-test") {}

  void start_daemon() { ASSERT_TRUE(start(extra_args)) << output(); }
  std::vector<std::string> extra_args;
  int64_t logged(const std::string &topic) { return test::logged_count(db, topic); }

  const std::string db = dir.path + "/kronop.db";
};

TEST_F(LogDaemonTest, SigkillDuringSustainedPublishLosesAndDuplicatesNothing) {
  start_daemon();
  constexpr int kRecords = 20'000;
  // The producer: a separate process that publishes without pause and insists on every
  // record being accepted (waiting while the ring is full, e.g. while kronopd is down).
  pid_t producer = test::fork_child([&] {
    auto p = ipc::Producer::open(shm);
    if (!p.ok()) return 3;
    for (int i = 1; i <= kRecords; ++i) {
      const std::string json = R"({"n":)" + std::to_string(i) + "}";
      if (p.value()->publish_wait("reel:kill", "reel_update", json, 0, 20'000) != KRONOP_OK) {
        return 4;
      }
    }
    return 0;
  });
  // Kill kronopd twice, mid-stream.
  for (int64_t at : {3'000, 9'000}) {
    ASSERT_TRUE(eventually([&] { return logged("reel:kill") >= at; }, std::chrono::seconds(20)));
    EXPECT_EQ(stop(SIGKILL), 128 + SIGKILL);
    start_daemon();
  }
  EXPECT_EQ(test::wait_child(producer), 0);
  ASSERT_TRUE(eventually([&] { return logged("reel:kill") == kRecords; }, std::chrono::seconds(20)))
      << logged("reel:kill");
  EXPECT_EQ(stop(SIGTERM), 0);
  const auto messages = test::logged_messages(db, "reel:kill");
  ASSERT_EQ(messages.size(), std::size_t{kRecords});
  // Exactly once: every producer sequence 1..N, each once; numbered 1..N without a gap, in
  // the producer's order, across both restarts.
  for (std::size_t i = 0; i < messages.size(); ++i) {
    ASSERT_EQ(messages[i].producer_seq, i + 1) << i;
    ASSERT_EQ(messages[i].seq, i + 1) << i;
  }
}

// The same at the rate the log now keeps: a producer paced at 500,000 records/s (2 s of
// them; sanitized builds, a tenth), kronopd killed twice while it publishes. Every record is
// in the log once, numbered in the producer's order. The rate the producer reached is
// printed, not asserted (bench/ measures speed).
TEST_F(LogDaemonTest, SigkillAtFullRateLosesAndDuplicatesNothing) {
#ifdef KRONOP_TEST_SANITIZED
  constexpr int kRecords = 100'000;
#else
  constexpr int kRecords = 1'000'000;
#endif
  constexpr double kRate = 500'000;
  // Rings that hold what the producer publishes while a transaction commits (4 MiB: some
  // 15,000 records), and every record kept (retention would trim the topic meanwhile).
  ring_size = "4194304";
  extra_args = {"--retention-count", "0"};
  start_daemon();
  int report[2];
  ASSERT_EQ(::pipe(report), 0);
  pid_t producer = test::fork_child([&] {
    ::close(report[0]);
    auto p = ipc::Producer::open(shm);
    if (!p.ok()) return 3;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 1; i <= kRecords; ++i) {
      // Open loop: record i is due at i / rate; a stall is caught up, not shifted.
      const auto due = t0 + std::chrono::nanoseconds(static_cast<int64_t>(i * 1e9 / kRate));
      while (std::chrono::steady_clock::now() < due) {
      }
      const std::string json = R"({"n":)" + std::to_string(i) + "}";
      if (p.value()->publish_wait("reel:fast", "reel_update", json, 0, 20'000) != KRONOP_OK) {
        return 4;
      }
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const std::string line = std::to_string(kRecords) + " records in " + std::to_string(secs) +
                             " s: " + std::to_string(kRecords / secs) + " records/s\n";
    (void)!::write(report[1], line.data(), line.size());
    return 0;
  });
  ::close(report[1]);
  for (int64_t at : {kRecords / 5, kRecords / 2}) {
    ASSERT_TRUE(eventually([&] { return logged("reel:fast") >= at; }, std::chrono::seconds(60)))
        << logged("reel:fast") << " logged\n"
        << output();
    EXPECT_EQ(stop(SIGKILL), 128 + SIGKILL);
    start_daemon();
  }
  EXPECT_EQ(test::wait_child(producer), 0);
  char buf[256] = {};
  (void)!::read(report[0], buf, sizeof buf - 1);
  ::close(report[0]);
  std::printf("producer: %s", buf);
  ASSERT_TRUE(eventually([&] { return logged("reel:fast") == kRecords; }, std::chrono::seconds(60)))
      << logged("reel:fast");
  EXPECT_EQ(stop(SIGTERM), 0);
  const auto messages = test::logged_messages(db, "reel:fast");
  ASSERT_EQ(messages.size(), std::size_t{kRecords});
  for (std::size_t i = 0; i < messages.size(); ++i) {
    ASSERT_EQ(messages[i].producer_seq, i + 1) << i;
    ASSERT_EQ(messages[i].seq, i + 1) << i;
    ASSERT_EQ(messages[i].body, R"({"n":)" + std::to_string(i + 1) + "}") << i;
  }
}

// The journal's case: a producer publishing round 500 topics (a message or two of each per
// transaction), kronopd killed twice while the journal holds many of them. Every accepted
// record is in the log once, each topic numbered without a gap in the producer's order.
TEST_F(LogDaemonTest, SigkillWhileTheJournalHoldsManyTopicsLosesAndDuplicatesNothing) {
#ifdef KRONOP_TEST_SANITIZED
  constexpr int kRecords = 50'000;
#else
  constexpr int kRecords = 200'000;
#endif
  constexpr int kTopics = 500;
  constexpr double kRate = 100'000;
  ring_size = "4194304";
  extra_args = {"--retention-count", "0"};
  start_daemon();
  pid_t producer = test::fork_child([&] {
    auto p = ipc::Producer::open(shm);
    if (!p.ok()) return 3;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < kRecords; ++i) {
      const auto due = t0 + std::chrono::nanoseconds(static_cast<int64_t>(i * 1e9 / kRate));
      while (std::chrono::steady_clock::now() < due) {
      }
      const std::string topic = "reel:j" + std::to_string(i % kTopics);
      const std::string json = R"({"n":)" + std::to_string(i) + "}";
      if (p.value()->publish_wait(topic, "reel_update", json, 0, 20'000) != KRONOP_OK) return 4;
    }
    return 0;
  });
  // What the log has committed: each topic's last seq (written with its records).
  auto committed = [&] { return query(db, "SELECT coalesce(sum(last_seq), 0) FROM topics"); };
  bool journal_seen = false;
  for (int64_t at : {kRecords / 5, kRecords / 2}) {
    ASSERT_TRUE(eventually(
        [&] {
          journal_seen = journal_seen || query(db, "SELECT count(*) FROM journal") > 0;
          return committed() >= at;
        },
        std::chrono::seconds(60)))
        << committed() << " committed\n"
        << output();
    EXPECT_EQ(stop(SIGKILL), 128 + SIGKILL);
    start_daemon();
  }
  EXPECT_TRUE(journal_seen);
  EXPECT_EQ(test::wait_child(producer), 0);
  ASSERT_TRUE(eventually([&] { return committed() == kRecords; }, std::chrono::seconds(60)))
      << committed();
  EXPECT_EQ(stop(SIGTERM), 0);
  EXPECT_EQ(query(db, "SELECT count(*) FROM journal"), 0);  // a clean stop leaves none
  int64_t total = 0;
  for (int t = 0; t < kTopics; ++t) {
    const auto messages = test::logged_messages(db, "reel:j" + std::to_string(t));
    total += static_cast<int64_t>(messages.size());
    for (std::size_t k = 0; k < messages.size(); ++k) {
      ASSERT_EQ(messages[k].seq, k + 1) << t;
      ASSERT_EQ(messages[k].body, R"({"n":)" + std::to_string(k * kTopics + t) + "}") << t;
    }
  }
  EXPECT_EQ(total, kRecords);
}

TEST_F(LogDaemonTest, NumberingAndEpochSurviveARestart) {
  start_daemon();
  auto p = ipc::Producer::open(shm);
  ASSERT_TRUE(p.ok());
  for (int i = 0; i < 5; ++i) ASSERT_EQ(p.value()->publish("reel:9", "reel_update", "{}", 0), 0);
  ASSERT_TRUE(eventually([&] { return logged("reel:9") == 5; }));
  const int64_t epoch = query(db, "SELECT epoch FROM topics WHERE name = 'reel:9'");
  EXPECT_NE(epoch, 0);
  EXPECT_EQ(stop(SIGTERM), 0);
  start_daemon();
  for (int i = 0; i < 5; ++i) ASSERT_EQ(p.value()->publish("reel:9", "reel_update", "{}", 0), 0);
  ASSERT_TRUE(eventually([&] { return logged("reel:9") == 10; }));
  EXPECT_EQ(test::logged_messages(db, "reel:9").back().seq, 10u);
  EXPECT_EQ(query(db, "SELECT epoch FROM topics WHERE name = 'reel:9'"), epoch);
}

TEST_F(LogDaemonTest, KronopctlReplayReadsTheLogWithKronopdStopped) {
  start_daemon();
  ASSERT_EQ(run_capture({KRONOPCTL_BIN, "--shm-name", shm, "publish", "--topic", "reel:3",
                         "--event", "reel_update", "--json", R"({"views":7})", "--count", "6"},
                        nullptr),
            0);
  ASSERT_TRUE(eventually([&] { return logged("reel:3") == 6; }));
  EXPECT_EQ(stop(SIGTERM), 0);

  const std::vector<std::string> base = {KRONOPCTL_BIN, "--data-dir", dir.path,  "--shm-name",
                                         shm,           "replay",     "--topic", "reel:3"};
  std::string out;
  auto with = [&](std::vector<std::string> extra) {
    out.clear();  // run_capture appends
    std::vector<std::string> v = base;
    v.insert(v.end(), extra.begin(), extra.end());
    return v;
  };
  ASSERT_EQ(run_capture(with({"--json", "--since-seq", "4"}), &out), 0);
  // Two JSON lines, seq 5 and 6, with the payload clients got.
  EXPECT_NE(out.find(R"("seq":5,"epoch":)"), std::string::npos) << out;
  EXPECT_EQ(out.find(R"("epoch":")"), std::string::npos) << "epochs are numbers" << out;
  EXPECT_NE(out.find(R"("priority":"normal")"), std::string::npos) << out;
  EXPECT_NE(out.find(R"("payload":{"seq":6,"views":7}})"), std::string::npos) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 2);
  ASSERT_EQ(run_capture(with({"--until-seq", "2"}), &out), 0);
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 2) << out;
  ASSERT_EQ(run_capture(with({"--since", "1h", "--limit", "3"}), &out), 0);
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 3) << out;
  ASSERT_EQ(run_capture(with({"--until", "2000-01-01T00:00:00Z"}), &out), 0);
  EXPECT_EQ(out, "");

  // --export: zstd-compressed JSON lines, one per message.
  const std::string file = dir.path + "/reel3.jsonl.zst";
  ASSERT_EQ(run_capture(with({"--export", file}), nullptr), 0);
  std::ifstream f(file, std::ios::binary);
  const std::string z(std::istreambuf_iterator<char>(f), {});
  std::string text(1 << 16, '\0');
  const std::size_t n = ZSTD_decompress(text.data(), text.size(), z.data(), z.size());
  ASSERT_FALSE(ZSTD_isError(n));
  text.resize(n);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 6) << text;
  EXPECT_EQ(run_capture(with({"--export", file}), nullptr), 1) << "an existing file is kept";

  // Errors: usage 2, failures 1.
  EXPECT_EQ(run_capture(with({"--since", "yesterday"}), nullptr), 2);
  EXPECT_EQ(run_capture({KRONOPCTL_BIN, "--data-dir", dir.path, "replay", "--topic", "bad topic"},
                        nullptr),
            2);
  EXPECT_EQ(
      run_capture({KRONOPCTL_BIN, "--data-dir", dir.path, "replay", "--topic", "reel:4"}, nullptr),
      1);
  EXPECT_EQ(
      run_capture({KRONOPCTL_BIN, "--data-dir", dir.path + "/none", "replay", "--topic", "reel:3"},
                  nullptr),
      1);

  // --republish: the messages go through the rings again and are numbered after the others.
  start_daemon();
  ASSERT_EQ(run_capture(with({"--republish"}), nullptr), 0);
  ASSERT_TRUE(eventually([&] { return logged("reel:3") == 12; }));
  EXPECT_EQ(test::logged_messages(db, "reel:3").back().seq, 12u);
}

TEST_F(LogDaemonTest, AnUnusableLogStopsKronopdWithAMessage) {
  std::ofstream(db) << std::string(8192, 'j');
  const pid_t refused = test::spawn({KRONOPD_BIN, "--data-dir", dir.path, "--shm-name", shm,
                                     "--control-socket", socket, "--port", "0"},
                                    log);
  EXPECT_EQ(test::wait_child(refused), 1);
  const std::string out = output();
  EXPECT_NE(out.find("level=error event=log_open_failed"), std::string::npos) << out;
  EXPECT_NE(out.find("not a usable SQLite database"), std::string::npos) << out;
}

}  // namespace
}  // namespace kronop::daemon
