// A log written before blocks (tests/data/log-v1.sql: the dump of one made by
// tests/data/make-log-v1.sh with the kronopd of that time, loaded into a database here) is read as
// is by kronopctl's reader, migrated in place when kronopd opens it, and then goes on as any log:
// every message kept with its fields, numbering and producers' dedupe resumed. A damaged one is
// refused and left as it was.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "log_reader.h"
#include "log_store.h"
#include "support/test_support.h"

namespace kronop::daemon {
namespace {

using test::eventually;
using test::query;

// What make-log-v1.sh published, as any reader must see it.
void expect_the_v1_messages(const std::string &path) {
  const auto reel1 = test::logged_messages(path, "reel:1");
  ASSERT_EQ(reel1.size(), 1500u);
  for (std::size_t i = 0; i < reel1.size(); ++i) {
    ASSERT_EQ(reel1[i].seq, i + 1);
    ASSERT_EQ(reel1[i].body, R"({"n":)" + std::to_string(i + 1) + "}");
    ASSERT_EQ(reel1[i].event, "reel_update");
    ASSERT_NE(reel1[i].producer_id, 0u);
  }
  const auto reel2 = test::logged_messages(path, "reel:2");
  ASSERT_EQ(reel2.size(), 3u);
  EXPECT_EQ(reel2[2].event, "comment");
  EXPECT_EQ(reel2[2].body.size(), 3971u);  // {"text":"kronop...kronop"}, 660 times
  EXPECT_EQ(reel2[2].body.substr(0, 15), R"({"text":"kronop)");
  const auto system = test::logged_messages(path, "system");
  ASSERT_EQ(system.size(), 2u);
  EXPECT_EQ(system[1].body, R"({"msg":"maintenance"})");
  EXPECT_NE(system[1].priority, 0);
  // A newest-first read (kronopctl tail, REST history) of the last three.
  auto reader = LogReader::open(path);
  ASSERT_TRUE(reader.ok());
  LogQuery q;
  q.topic = "reel:1";
  q.limit = 3;
  q.newest_first = true;
  std::vector<uint64_t> seqs;
  ASSERT_TRUE(reader.value()
                  ->read(q,
                         [&](const StoredMessage &m) {
                           seqs.push_back(m.seq);
                           return true;
                         })
                  .ok());
  EXPECT_EQ(seqs, (std::vector<uint64_t>{1498, 1499, 1500}));
}

class LogMigration : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ifstream in(std::string(KRONOP_TEST_DATA_DIR) + "/log-v1.sql");
    const std::string sql((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ASSERT_FALSE(sql.empty());
    sqlite3 *db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    char *error = nullptr;
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
    const std::string said = error != nullptr ? error : "";
    sqlite3_free(error);
    sqlite3_close(db);
    ASSERT_EQ(rc, SQLITE_OK) << said;
  }
  test::TempDir dir;
  const std::string path = dir.path + "/kronop.db";
};

TEST_F(LogMigration, AVersion1LogIsReadAsIs) {
  ASSERT_EQ(query(path, "PRAGMA user_version"), 1);
  expect_the_v1_messages(path);
  EXPECT_EQ(query(path, "PRAGMA user_version"), 1);  // reading changed nothing
}

TEST_F(LogMigration, OpeningMigratesInPlaceAndTheLogGoesOn) {
  const int64_t epoch = query(path, "SELECT epoch FROM topics WHERE name = 'reel:1'");
  uint64_t producer = 0;
  {
    auto store = LogStore::open(path);
    ASSERT_TRUE(store.ok()) << store.error().message;
    EXPECT_EQ(query(path, "PRAGMA user_version"), LogStore::kSchemaVersion);
    EXPECT_EQ(query(path, "SELECT count(*) FROM sqlite_master WHERE name = 'messages'"), 0);
    EXPECT_EQ(query(path, "SELECT sum(count) FROM blocks"), 1505);
    // Numbering and dedupe resume from what version 1 kept.
    auto topics = store.value()->topics();
    EXPECT_EQ(topics["reel:1"].last_seq, 1500u);
    EXPECT_EQ(topics["reel:1"].epoch, static_cast<uint64_t>(epoch));
    auto producers = store.value()->producers();
    EXPECT_EQ(producers.size(), 1500u + 2);  // a kronopctl run each
    producer = test::logged_messages(path, "reel:1").back().producer_id;
    EXPECT_EQ(producers[producer], 1u);
    auto &s = *store.value();
    s.start();
    std::vector<StoredMessage> batch;
    StoredMessage m;
    m.topic = "reel:1";
    m.epoch = static_cast<uint64_t>(epoch);
    m.event = "reel_update";
    m.body_kind = BodyKind::kJson;
    m.producer_id = producer;
    m.producer_seq = 1;  // logged before the migration: a duplicate
    m.seq = 1501;
    m.body = R"({"n":"again"})";
    batch.push_back(m);
    m.producer_id = 42;
    m.producer_seq = 1;
    m.body = R"({"n":1501})";
    batch.push_back(m);
    const uint64_t id = s.submit(std::move(batch));
    ASSERT_TRUE(eventually([&] { return s.committed() >= id; }));
    s.stop();
    EXPECT_EQ(s.counters().duplicates.load(), 1u);
  }
  // The old messages first, then the new one.
  const auto reel1 = test::logged_messages(path, "reel:1");
  ASSERT_EQ(reel1.size(), 1501u);
  EXPECT_EQ(reel1.back().seq, 1501u);
  EXPECT_EQ(reel1.back().body, R"({"n":1501})");
  // Opening again does nothing more.
  {
    auto store = LogStore::open(path);
    ASSERT_TRUE(store.ok()) << store.error().message;
  }
  EXPECT_EQ(query(path, "SELECT sum(count) FROM blocks"), 1506);
}

TEST_F(LogMigration, EveryMessageKeepsItsFields) {
  { ASSERT_TRUE(LogStore::open(path).ok()); }
  expect_the_v1_messages(path);
}

TEST_F(LogMigration, ADamagedVersion1LogIsRefusedAndLeftAsItWas) {
  // One of reel:2's compressed payloads, cut short.
  {
    sqlite3 *db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db,
                           "UPDATE messages SET payload = substr(payload, 1, 10) WHERE seq = 2 "
                           "AND compressed = 1",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  auto store = LogStore::open(path);
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.error().message.find("damaged"), std::string::npos) << store.error().message;
  EXPECT_NE(store.error().message.find("left as it was"), std::string::npos);
  EXPECT_EQ(query(path, "PRAGMA user_version"), 1);
  EXPECT_EQ(query(path, "SELECT count(*) FROM messages"), 1505);
  EXPECT_EQ(query(path, "SELECT count(*) FROM sqlite_master WHERE name = 'blocks'"), 0);
}

}  // namespace
}  // namespace kronop::daemon
